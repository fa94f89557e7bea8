# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad inputs on real libvirt: unknown domain or snapshot, bad names, XML metacharacters, raw disks,
quiesce without a guest agent, unreachable and refusing URIs. Each fails with a plain message and
changes nothing; a name and a description full of XML metacharacters are stored exactly."""

from __future__ import annotations

import os
import socket
import typing as t

import pytest

import lab as lab_tool  # tests/lab/lab.py (conftest puts it on the path)

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent  # noqa: F401  # pylint: disable=unused-import

XML_NAME = "<b>&'x]]>"
QUOTE_NAME = 'q"<&>"'
XML_DESCRIPTION = ("  lead\n</description><memory snapshot='external'/><!-- c --> &amp; ]]> "
                   "<![CDATA[x]]> \"q\" 'a' \ttab\nline  ")


@pytest.fixture
def silent_uri() -> t.Iterator[str]:
    """A qemu+tcp URI whose server accepts connections (the kernel does) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(('127.0.0.1', 0))
        server.listen(8)
        yield f'qemu+tcp://127.0.0.1:{server.getsockname()[1]}/system'


def test_bad_inputs_fail_clearly_and_change_nothing(blank, independent, lab, run_playbook, silent_uri):
    doms = {
        'dom': blank('err'),
        'raw_dom': blank('err-raw', disk_format='raw', disks=2),
        'noagent_dom': blank('err-noagent', agent_channel=False),
        'silent_dom': blank('err-silent'),
        'off_dom': blank('err-off', state='shutoff'),
    }
    disks = {key: independent.lab.disk_paths(dom) for key, dom in doms.items()}
    missing = f'{lab.prefix}no-such-domain'
    run_playbook('modules_errors.yml', dict(
        doms, raw_disk=disks['raw_dom'][0], missing=missing, xml_name=XML_NAME, xml_description=XML_DESCRIPTION,
        quote_name=QUOTE_NAME,
        silent_uri=silent_uri))

    # the metacharacters went in as text and come back exactly (parsed from virsh's XML): with memory on the running
    # domain before libvirt 10.9; from 10.9 on (QEMU job ids take no such name) on the shut-off one
    qmp_jobs = lab_tool.libvirt_version(independent.lab.uri) >= (10, 9, 0)
    xml_key = 'off_dom' if qmp_jobs else 'dom'
    xml = independent.snapshot_xml(doms[xml_key], XML_NAME)
    assert xml.findtext('name') == XML_NAME
    assert xml.findtext('description') == XML_DESCRIPTION
    assert [m.get('snapshot') for m in xml.findall('memory')] == ['no' if qmp_jobs else 'internal']
    assert len(xml.findall('description')) == 1
    made = {'dom': ['keep']}
    made[xml_key] = sorted(made.get(xml_key, []) + [XML_NAME])
    for key, names in made.items():
        assert independent.snapshot_names(doms[key]) == names, key
        assert independent.qemu_img_snapshots(disks[key][0]) == names, key

    # nothing else was made: no snapshots, no overlays, no domain
    for key in ('raw_dom', 'noagent_dom', 'silent_dom', 'off_dom'):
        assert independent.snapshot_names(doms[key]) == made.get(key, []), key
        assert independent.blklist(doms[key]) == dict(zip(('vda', 'vdb'), disks[key])), key
        run_dir = os.path.dirname(disks[key][0])
        assert sorted(f for f in os.listdir(run_dir) if f.startswith(doms[key] + '.vd')) == \
            sorted(os.path.basename(d) for d in disks[key]), key
    for disk in disks['raw_dom']:
        assert independent.image_info(disk)['format'] == 'raw'
    for key in ('noagent_dom', 'silent_dom', 'off_dom'):
        assert independent.qemu_img_snapshots(disks[key][0]) == made.get(key, []), key
    assert {k: independent.domstate(d) for k, d in doms.items()} == {
        'dom': 'running', 'raw_dom': 'running', 'noagent_dom': 'running', 'silent_dom': 'running',
        'off_dom': 'shutoff'}
    assert missing not in independent.domain_names()


def test_description_with_carriage_returns_is_refused(blank, independent, run_playbook):
    dom = blank('err-cr', state='shutoff')
    disk = independent.lab.disk_paths(dom)[0]
    run_playbook('modules_description_cr.yml', {'dom': dom, 'cr_description': 'line 1\r\nline 2\rline 3'})

    assert independent.snapshot_names(dom) == []
    assert independent.qemu_img_snapshots(disk) == []
