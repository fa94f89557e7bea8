# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet report (playbooks/snapshot_report.yml) on real lab domains, checked with virsh, qemu-img and Chromium.

Three shut-off blank domains (no guest boots): one with internal snapshots of the collection's names and of a
prune rule, one backdated to 2020 and one made "by hand" with a foreign name, one with an external snapshot.
The inventory has the lab's hypervisor, one that cannot be reached (SSH to a closed port) and one whose
libvirt URI leads nowhere: the report is written all the same and lists both. snapshots.json is checked
against ``virsh snapshot-list`` and ``qemu-img info``; thresholds make the run fail (rc 2) with one line per
problem; without them it passes. index.html is rendered by headless Chromium to a PNG (not blank) and to
its DOM, whose numbers must be those of virsh.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import sys
import typing as t
import zlib
from html.parser import HTMLParser

import pytest
from conftest import URI
from test_modules_common import blank, independent, write_inventory  # noqa: F401  # pylint: disable=unused-import

PLAYBOOK = pathlib.Path(__file__).resolve().parents[2] / 'playbooks' / 'snapshot_report.yml'
OLD_EPOCH = 1577836800  # 2020-01-01T00:00:00Z
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


def backdate(independent: t.Any, lab: t.Any, dom: str, name: str) -> None:
    """Make ``name`` of ``dom`` look taken on 2020-01-01 (redefine its metadata with that creation time)."""
    xml = independent.virsh('snapshot-dumpxml', dom, '--snapshotname', name).stdout
    xml = re.sub(r'<creationTime>\d+</creationTime>', f'<creationTime>{OLD_EPOCH}</creationTime>', xml)
    path = os.path.join(lab.run_dir, f'{dom}.{name}.xml')
    pathlib.Path(path).write_text(xml, encoding='utf-8')
    try:
        independent.virsh('snapshot-create', dom, path, '--redefine')
    finally:
        os.unlink(path)


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def png_pixels(path: pathlib.Path, rows: int = 400) -> tuple[int, int, set[bytes]]:
    """Width, height and the distinct colours (RGB) of the first ``rows`` rows of an 8-bit RGB/RGBA PNG (what
    Chromium writes): the top of the page, decoded in pure Python (every 4th pixel of every 4th row)."""
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    pos, idat, header = 8, b'', None
    while pos < len(data):
        length, kind = struct.unpack('>I4s', data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b'IHDR':
            header = struct.unpack('>IIBBBBB', body)
        elif kind == b'IDAT':
            idat += body
        pos += 12 + length
    assert header is not None
    width, height, depth, color = header[:4]
    assert depth == 8 and color in (2, 6), header
    channels = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    pixels: set[bytes] = set()
    prev = bytearray(stride)
    for row in range(min(rows, height)):
        kind = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):  # undo the PNG filter of the row
            left = line[i - channels] if i >= channels else 0
            up, up_left = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 0xFF
        if row % 4 == 0:
            pixels.update(bytes(line[i:i + 3]) for i in range(0, stride, channels * 4))
        prev = line
    return width, height, pixels


class Cells(HTMLParser):
    """The DOM Chromium dumped: elements by id, and rows (data-* attributes and cell texts) by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: dict[str, dict[str, t.Any]] = {}
        self.rows: dict[str, list[dict[str, t.Any]]] = {}
        self._table: str | None = None
        self._row: dict[str, t.Any] | None = None
        self._open: list[dict[str, t.Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == 'table':
            self._table = attr.get('id')
            self.rows.setdefault(self._table or '', [])
        elif tag == 'tr' and self._table is not None:
            self._row = {'attrs': attr, 'cells': []}
            self.rows[self._table].append(self._row)
        elif tag in ('td', 'th') and self._row is not None:
            self._row['cells'].append({'attrs': attr, 'text': ''})
        if attr.get('id'):
            node = {'attrs': attr, 'text': ''}
            self.ids[attr['id']] = node
            self._open.append(node)

    def handle_endtag(self, tag: str) -> None:
        if tag == 'table':
            self._table = None
        elif tag == 'tr':
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._row['cells']:
            self._row['cells'][-1]['text'] += data
        for node in self._open:
            node['text'] += data
        if self._open and self._open[-1]['attrs'].get('id', '').startswith('total-'):
            self._open.pop()


def human(value: int | None) -> str:
    """A size as the page shows it."""
    if value is None:
        return 'unknown'
    if value < 1024:
        return f'{value} B'
    for unit, size in (('TiB', 1024 ** 4), ('GiB', 1024 ** 3), ('MiB', 1024 ** 2), ('KiB', 1024)):
        if value >= size:
            return f'{value / size:.1f} {unit}'
    raise AssertionError(value)


@pytest.fixture
def fleet(lab, blank, independent):
    """The three domains with their snapshots; the names virsh lists for each."""
    internal = blank('rep-int', state='shutoff')
    for name in ('nightly-1', 'nightly-2', 'pre-change-OPS-1'):
        independent.virsh('snapshot-create-as', internal, name)
    hand = blank('rep-hand', state='shutoff')
    independent.virsh('snapshot-create-as', hand, 'before-my-fix')
    backdate(independent, lab, hand, 'before-my-fix')
    independent.virsh('snapshot-create-as', hand, 'nightly-1')
    external = blank('rep-ext', state='shutoff')
    independent.virsh('snapshot-create-as', external, 'nightly-ext', '--disk-only')
    return {dom: independent.snapshot_names(dom) for dom in (internal, hand, external)}


def inventory(tmp_path: pathlib.Path, broken: bool) -> str:
    hosts: dict[str, dict[str, t.Any]] = {'hv-lab': {'kvm_uri': URI, 'ansible_python_interpreter': sys.executable}}
    path = write_inventory(tmp_path, hosts)
    if broken:
        inv = json.loads(pathlib.Path(path).read_text(encoding='utf-8'))
        inv['all']['hosts']['hv-down'] = {'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1',
                                          'ansible_port': closed_port(), 'ansible_user': 'nobody',
                                          'ansible_ssh_common_args': '-o ConnectTimeout=5 -o BatchMode=yes'}
        inv['all']['hosts']['hv-nolibvirt'] = {
            'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable,
            'kvm_uri': f'qemu+unix:///system?socket={tmp_path}/no-such-socket'}
        pathlib.Path(path).write_text(json.dumps(inv), encoding='utf-8')
    return path


def test_report_numbers_thresholds_and_page(lab, fleet, independent, run_playbook, tmp_path):
    report_dir = tmp_path / 'report'
    settings = {'kvm_target': 'all', 'kvm_domains': [f'{lab.prefix}rep-*'], 'kvm_report_dir': str(report_dir),
                'kvm_prune_match': 'nightly-*', 'kvm_prune_keep_last': 1,
                'kvm_report_age_warn': '365d', 'kvm_report_age_crit': '', 'kvm_report_count_crit': 3,
                'kvm_report_free_warn': '', 'kvm_report_free_crit': ''}
    internal, hand, external = fleet

    # thresholds crossed and two hypervisors that cannot be read: the report is written, the run fails (rc 2)
    run = run_playbook(PLAYBOOK, settings, inventory=inventory(tmp_path, broken=True), kvm_uri=None, expect_rc=2)
    assert 'TASK [Fail when thresholds are crossed]' in run.stdout and 'fatal: [localhost]: FAILED!' in run.stdout
    report = json.loads((report_dir / 'snapshots.json').read_text(encoding='utf-8'))
    assert report['schema_version'] == 1 and report['status'] == 'CRIT' and report['fail']
    hvs = {h['name']: h for h in report['hypervisors']}
    assert hvs['hv-lab']['ok'] and hvs['hv-lab']['error'] is None
    assert not hvs['hv-down']['ok'] and hvs['hv-down']['error'].startswith('unreachable')
    assert not hvs['hv-nolibvirt']['ok'] and 'no-such-socket' in hvs['hv-nolibvirt']['error']

    # the snapshots, as virsh lists them
    mine = {d['name']: d for d in report['domains']}
    assert sorted(mine) == sorted(fleet)
    for dom, names in fleet.items():
        assert sorted(s['name'] for s in report['snapshots'] if s['domain'] == dom) == names
        assert mine[dom]['snapshots'] == len(names)
    assert report['totals']['snapshots'] == sum(len(n) for n in fleet.values()) == hvs['hv-lab']['snapshots'] == 6
    assert report['totals']['domains'] == 3 and report['totals']['hypervisors'] == 3
    # stale: the backdated one (old, and made by hand); the prune preview: the older nightlies of each domain
    assert [(s['domain'], s['name'], sorted(s['stale_reasons'])) for s in report['stale']] == [
        (hand, 'before-my-fix', ['manual', 'old'])]
    [old] = [s for s in report['snapshots'] if s['name'] == 'before-my-fix']
    assert old['creation_time_epoch'] == OLD_EPOCH and old['age_seconds'] >= report['generated_epoch'] - OLD_EPOCH
    assert sorted((p['domain'], p['name']) for p in report['prune_preview']) == [(internal, 'nightly-1')]
    assert all(independent.snapshot_names(d) == n for d, n in fleet.items())  # the preview deleted nothing

    # sizes against qemu-img: the external snapshot's overlay, every disk's virtual and allocated size
    for dom in fleet:
        disk = independent.blklist(dom)['vda']
        info = independent.image_info(disk)
        domain_disks = mine[dom]['disk_capacity_bytes']
        if domain_disks is not None:  # snapshot_info's sizes (issue 14 part 1)
            assert domain_disks == info['virtual-size'] == 64 * 1048576
            assert mine[dom]['disk_allocation_bytes'] == info['actual-size']
    tags = {t['name']: t for t in independent.image_info(independent.blklist(internal)['vda'])['snapshots']}
    for row in report['snapshots']:
        if row['domain'] == internal and row['memory_bytes'] is not None:  # the VM state of a shut-off domain
            assert row['memory_bytes'] == tags[row['name']]['vm-state-size'] == 0
    [ext] = [s for s in report['snapshots'] if s['domain'] == external]
    assert ext['location'] == 'external'
    overlay = independent.image_info(independent.blklist(external)['vda'])['actual-size']
    if ext['overlay_bytes'] is not None:
        assert ext['overlay_bytes'] == ext['size_bytes'] == mine[external]['snapshot_bytes'] == overlay

    # one line per problem, in the output and in summary.md
    lines = sorted(a['message'] for a in report['alerts'])
    assert lines == sorted([
        f'CRIT count hv-lab/{internal}: 3 snapshots (crit at 3)',
        f'WARN age hv-lab/{hand}: 1 snapshot older than 365.0 days, oldest "before-my-fix" '
        f'{(report["generated_epoch"] - OLD_EPOCH) / 86400:.1f} days',
        f'CRIT unread hv-down: not read: {hvs["hv-down"]["error"]}',
        f'CRIT unread hv-nolibvirt: not read: {hvs["hv-nolibvirt"]["error"]}',
    ])
    for line in lines:
        assert json.dumps(line)[1:-1] in run.stdout, line
    summary = (report_dir / 'summary.md').read_text(encoding='utf-8')
    assert summary.startswith('# Snapshot report: CRIT\n') and all(f'- {line}' in summary for line in lines)

    # the page in a real browser: a screenshot that is not blank, and the DOM's numbers
    assert CHROMIUM, 'chromium is not installed (tests/run.sh installs it)'
    page = report_dir / 'index.html'
    png = tmp_path / 'report.png'
    browser = [CHROMIUM, '--headless', '--disable-gpu', '--no-sandbox', '--no-first-run', '--disable-extensions',
               f'--user-data-dir={tmp_path / "chromium"}']
    shot = subprocess.run(browser + [f'--screenshot={png}', '--window-size=1280,2000', page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert shot.returncode == 0 and png.exists(), shot.stderr
    width, height, colours = png_pixels(png)
    assert (width, height) == (1280, 2000) and len(colours) > 8, (width, height, len(colours))
    assert b'\xff\xff\xff' in colours and b'\xc6\x28\x28' in colours  # the white page, the red CRIT banner
    dom_dump = subprocess.run(browser + ['--dump-dom', page.as_uri()], capture_output=True, text=True, timeout=120,
                              check=False)
    assert dom_dump.returncode == 0 and '</html>' in dom_dump.stdout, dom_dump.stderr
    cells = Cells()
    cells.feed(dom_dump.stdout)
    assert cells.ids['status']['attrs']['data-status'] == 'CRIT'
    assert cells.ids['status']['text'].startswith('CRIT: 3 critical, 1 warning, 6 snapshots of 3 VMs')
    assert cells.ids['total-snapshots']['text'].strip() == '6' and cells.ids['total-stale']['text'].strip() == '1'
    assert cells.ids['total-prune']['text'].strip() == '1'
    shown = {row['attrs']['data-domain']: row['cells'] for row in cells.rows['domains'] if 'data-domain' in row['attrs']}
    assert sorted(shown) == sorted(fleet)
    for dom, names in fleet.items():
        assert shown[dom][3]['text'].strip() == str(len(names))  # the snapshots column
        held = mine[dom]['snapshot_bytes']
        assert shown[dom][4]['attrs']['data-bytes'] == ('' if held is None else str(held))
        assert shown[dom][4]['text'].startswith(human(held))  # the space held, in the page's units
    if ext['overlay_bytes'] is not None:  # the external snapshot's overlay, as qemu-img sees it
        assert shown[external][4]['attrs']['data-bytes'] == str(overlay)
        assert shown[external][4]['text'].strip() == human(overlay)
    stale_rows = [row['attrs'].get('data-snapshot') for row in cells.rows['stale'] if 'data-snapshot' in row['attrs']]
    assert stale_rows == ['before-my-fix']
    prune_rows = [row['attrs'].get('data-snapshot') for row in cells.rows['prune'] if 'data-snapshot' in row['attrs']]
    assert prune_rows == ['nightly-1']
    alerts = [row['cells'][2]['text'] for row in cells.rows['alerts'] if row['cells'] and row['cells'][0]['text']
              in ('CRIT', 'WARN')]
    assert len(alerts) == 4 and f'hv-lab/{internal}: 3 snapshots (crit at 3)' in alerts

    # no threshold crossed, every hypervisor read: the run passes and says nothing of problems
    quiet = {k: v for k, v in settings.items() if not k.startswith('kvm_prune_')}
    quiet.update(kvm_report_count_crit='', kvm_report_age_warn='', kvm_report_dir=str(tmp_path / 'ok'),
                 kvm_report_managed_names=['pre-change-*', 'nightly-*'])
    run = run_playbook(PLAYBOOK, quiet, inventory=inventory(tmp_path, broken=False), kvm_uri=None)
    assert 'Fail when thresholds are crossed' in run.stdout and 'FAILED' not in run.stdout
    report = json.loads((tmp_path / 'ok' / 'snapshots.json').read_text(encoding='utf-8'))
    assert report['status'] == 'OK' and report['alerts'] == [] and not report['fail']
    assert report['totals']['snapshots'] == 6 and report['totals']['stale'] == 1 and report['prune_preview'] == []
