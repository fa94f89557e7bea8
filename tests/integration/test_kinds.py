# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The support matrix on the stack's real libvirt: which kind of snapshot location: auto takes for each
firmware, disk format and power state, that it reverts (twice in a row) and deletes without leftovers,
and that where nothing revertable can be made nothing is made.

docs/support-matrix.md lists the cells; each row of CASES is one of them, and the expectation depends on
the stack's libvirt version as the collection's rules say (external reverts from 9.9, internal snapshots
of running UEFI guests with a qcow2 NVRAM from 10.10).
"""

from __future__ import annotations

import pytest

import lab as lab_tool  # tests/lab/lab.py (conftest puts it on the path)
# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent, write_inventory  # noqa: F401  # pylint: disable=unused-import


def expected_cases(version: tuple[int, int, int]) -> dict[str, dict]:
    """case -> the lab domain to make and what location: auto must do with it on libvirt ``version``."""
    reverts_external = version >= (9, 9, 0)
    external = {'expect': 'external', 'memory': 'external'} if reverts_external else {'expect': 'refused'}
    cases = {
        'bios': {'domain': {'firmware': 'bios'}, 'expect': 'internal', 'memory': 'internal'},
        'disk-only': {'domain': {'firmware': 'efi'}, 'disk_only': True, 'after': 'shutoff', 'expect': 'external',
                      'memory': 'no'},
        'efi-raw': {'domain': {'firmware': 'efi'}, **external},
        'raw-disk': {'domain': {'disk_format': 'raw'}, **external},
        'efi-off': {'domain': {'firmware': 'efi', 'state': 'shutoff'}, 'after': 'shutoff', 'expect': 'internal',
                    'memory': 'no'},
    }
    if not reverts_external:
        del cases['disk-only']  # made and deleted on 9.0 (test_modules_snapshot.py), not reverted
    if version >= (10, 10, 0):
        cases['efi-qcow2'] = {'domain': {'firmware': 'efi-qcow2'}, 'expect': 'internal', 'memory': 'internal'}
    return cases


def test_default_kind_by_firmware_and_disk(blank, independent, run_playbook, tmp_path):
    version = lab_tool.libvirt_version(independent.lab.uri)
    cases = expected_cases(version)
    hosts = {}
    for case, spec in cases.items():
        dom = blank(f'kind-{case}', **spec['domain'])
        hosts[case] = {'dom': dom, 'disk': independent.lab.disk_paths(dom)[0], 'expect': spec['expect'],
                       'memory': spec.get('memory'), 'disk_only': spec.get('disk_only', False),
                       'after': spec.get('after', 'running')}
    run = run_playbook('kinds.yml', inventory=write_inventory(tmp_path, hosts))

    recap = run.recap()
    for case, host in hosts.items():
        assert recap[case]['failed'] == 0, case
        # from outside once more: no snapshot left, in libvirt or in the image; the disk is the domain's own
        assert independent.snapshot_names(host['dom']) == [], case
        assert independent.blklist(host['dom']) == {'vda': host['disk']}, case
        if host['disk'].endswith('.qcow2'):
            assert independent.qemu_img_snapshots(host['disk']) == [], case
        # the power state of the last revert (a refused domain was never touched: still running)
        assert independent.domstate(host['dom']) == (host['after'] if host['expect'] != 'refused' else 'running'), case
        if host['expect'] == 'refused':
            assert recap[case]['ignored'] == 2, case  # check mode and the real run, both refused


@pytest.mark.libvirt(at_least=(9, 9), reason='reverting external snapshots needs libvirt 9.9')
def test_external_tree_reverted_and_deleted_leaves_first(blank, independent, run_playbook):
    """A chain of external snapshots with memory, a revert with a safety snapshot to the first (a new branch),
    then deleting the first with children: true: libvirt deletes external snapshots one at a time only, and
    after the revert only children before parents; nothing may be left behind."""
    dom = blank('kind-tree', firmware='efi')
    disk = independent.lab.disk_paths(dom)[0]
    run_playbook('kinds_tree.yml', {'dom': dom, 'disk': disk})
    assert independent.snapshot_names(dom) == []
    assert independent.blklist(dom) == {'vda': disk}
    assert independent.domstate(dom) == 'running'
