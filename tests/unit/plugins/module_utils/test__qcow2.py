# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The qcow2 snapshot-table reader, checked against qemu-img on real images."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.kvm.snapshots.plugins.module_utils import _qcow2 as q

needs_qemu_img = pytest.mark.skipif(shutil.which('qemu-img') is None, reason='qemu-img is not installed')

NAMES = ['plain', "it's", 'say "hi"', 'back\\slash', 'x\\\\', ' lead', 'ünïcødé-名前', '\U0001f600', '7', 'a' * 247]


def qemu_img(*args):
    return subprocess.run(['qemu-img', *args], capture_output=True, text=True, check=True).stdout


@needs_qemu_img
def test_names_as_qemu_img_lists_them(tmp_path):
    image = str(tmp_path / 'disk.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', image, '16M')
    assert q.read_snapshot_names(image) == []
    for name in NAMES:
        qemu_img('snapshot', '-c', name, image)
    qemu_img('snapshot', '-d', 'plain', image)  # a hole in the ids, a table rewritten
    listed = [s['name'] for s in json.loads(qemu_img('info', '--output=json', image))['snapshots']]
    assert q.read_snapshot_names(image) == listed == NAMES[1:]


def test_not_qcow2(tmp_path):
    raw = tmp_path / 'disk.raw'
    raw.write_bytes(b'\0' * 4096)
    with pytest.raises(q.Qcow2Error, match='not a qcow2 image'):
        q.read_snapshot_names(str(raw))
    with pytest.raises(q.Qcow2Error):
        q.read_snapshot_names(str(tmp_path / 'missing.qcow2'))


@needs_qemu_img
def test_truncated_table(tmp_path):
    image = tmp_path / 'disk.qcow2'
    qemu_img('create', '-q', '-f', 'qcow2', str(image), '16M')
    qemu_img('snapshot', '-c', 'one', str(image))
    data = image.read_bytes()
    offset = int.from_bytes(data[64:72], 'big')
    image.write_bytes(data[:offset + 20])
    with pytest.raises(q.Qcow2Error, match='ends early'):
        q.read_snapshot_names(str(image))


def test_compare_internal():
    listed = [{'name': 'a', 'location': 'internal'}, {'name': 'b', 'location': 'internal'},
              {'name': 'x\\', 'location': 'internal'}]
    images = {'/vda': ['a', 'b', 'x\\\\'], '/vdb': ['a', 'x\\\\', 'x\\'], '/vdc': None}
    missing, extra = q.compare_internal(listed, images)
    assert missing == {'b': ['/vdb'], 'x\\': ['/vda']}
    assert extra == ['x\\\\']


def savevm(image, *names):
    """Have QEMU itself save VM state into ``image`` (a machine with no devices: a few hundred bytes each)."""
    commands = ''.join(f'savevm {name}\n' for name in names) + 'quit\n'
    subprocess.run(['qemu-system-x86_64', '-machine', 'none', '-nodefaults', '-display', 'none', '-S',
                    '-monitor', 'stdio', '-drive', f'file={image},if=none,id=d0,format=qcow2'],
                   input=commands, capture_output=True, text=True, check=True, timeout=60)


@needs_qemu_img
@pytest.mark.skipif(shutil.which('qemu-system-x86_64') is None, reason='qemu-system-x86_64 is not installed')
def test_vm_state_sizes_as_qemu_img_reports_them(tmp_path):
    image = str(tmp_path / 'disk.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', image, '16M')
    qemu_img('snapshot', '-c', 'disk-only', image)
    savevm(image, 'with-state', 'again')
    info = json.loads(qemu_img('info', '--force-share', '--output=json', image))
    expected = [(s['id'], s['name'], s['vm-state-size']) for s in info['snapshots']]
    assert q.read_snapshot_table(image) == expected
    sizes = {name: size for _id, name, size in expected}
    assert sizes['disk-only'] == 0 and sizes['with-state'] > 0 and sizes['again'] > 0


def encode_entry(name: str, vm_state: int, extra: bytes, id_str: str) -> bytes:
    """One snapshot table entry as docs/interop/qcow2.txt lays it out (padded to 8 bytes)."""
    raw_name, raw_id = name.encode(), id_str.encode()
    entry = q._ENTRY.pack(0, 0, len(raw_id), len(raw_name), 0, 0, 0, vm_state & 0xFFFFFFFF, len(extra))
    entry += extra + raw_id + raw_name
    return entry + b'\0' * (-len(entry) % 8)


@given(st.lists(st.tuples(st.text(min_size=1, max_size=40),
                          st.integers(0, (1 << 64) - 1), st.sampled_from([0, 8, 16, 24])), max_size=8))
def test_table_entries_round_trip(entries):
    """VM state sizes: the 32-bit field alone in an entry without extra data (images of old QEMUs), the 64-bit
    one of the extra data when there is one (above 4 GiB the 32-bit field is cut)."""
    table = b''
    expected = []
    for index, (name, size, extra_size) in enumerate(entries):
        extra = (size.to_bytes(8, 'big') + b'\xaa' * 16)[:extra_size]
        table += encode_entry(name, size, extra, str(index + 1))
        expected.append(q.Qcow2Snapshot(str(index + 1), name, size if extra_size else size & 0xFFFFFFFF))
    assert q._parse_table(table, len(entries), 'x') == expected
