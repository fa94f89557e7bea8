# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot on real libvirt: full and disk-only snapshots in every power state,
descriptions, deletion with and without children, batch mode.

Each test runs one playbook of targets/ (which checks every step with virsh
and qemu-img itself) and then checks the end state again from here with
virsh, qemu-img and qemu-io. Domains in the three power states are the
hosts of one inventory, so one ansible-playbook run covers all three.
"""

from __future__ import annotations

import os

import lab as lab_tool  # tests/lab/lab.py (conftest puts it on the path)
# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent, write_inventory  # noqa: F401  # pylint: disable=unused-import

STATES = ['running', 'paused', 'shutoff']


def test_full_snapshot_in_each_power_state(blank, independent, run_playbook, tmp_path):
    doms = {state: blank(f'full-{state}', state=state) for state in STATES}
    disks = {state: independent.lab.disk_paths(dom)[0] for state, dom in doms.items()}
    inventory = write_inventory(tmp_path, {
        state: {'dom': doms[state], 'dom_state': state, 'disk': disks[state]} for state in STATES})
    run = run_playbook('modules_snapshot_full.yml', inventory=inventory, diff=True)

    for state in STATES:
        dom, disk = doms[state], disks[state]
        # create and description, each in check mode and for real; nothing else
        assert run.recap()[state]['changed'] == 4, state
        assert independent.snapshot_names(dom) == ['full-1'], state
        info = independent.snapshot_info(dom, 'full-1')
        assert (info['State'], info['Location'], info['Current'], info['Parent']) == (state, 'internal', 'yes', '-')
        xml = independent.snapshot_xml(dom, 'full-1')
        assert xml.findtext('description') == 'Before the change'
        assert xml.find('memory').get('snapshot') == ('no' if state == 'shutoff' else 'internal')
        assert independent.qemu_img_snapshots(disk) == ['full-1'], state
        independent.qemu_img_check(disk, in_use=state != 'shutoff')
        assert independent.domstate(dom) == state
    # what --diff printed: the snapshot appears, then its description changes
    assert '-    "state": "absent"' in run.stdout, run.stdout
    assert '+    "description": "Before the change",' in run.stdout, run.stdout


def test_disk_only_snapshot_in_each_power_state(blank, independent, run_playbook, tmp_path):
    doms = {state: blank(f'disk-only-{state}', state=state) for state in STATES}
    disks = {state: independent.lab.disk_paths(dom)[0] for state, dom in doms.items()}
    inventory = write_inventory(tmp_path, {
        state: {'dom': doms[state], 'dom_state': state, 'disk': disks[state]} for state in STATES})
    run = run_playbook('modules_snapshot_disk_only.yml', inventory=inventory, diff=True)
    # internal on top of it is refused everywhere; reverting to it only before libvirt 9.9
    refusals = 2 if lab_tool.libvirt_version(independent.lab.uri) < (9, 9, 0) else 1

    for state in STATES:
        dom, disk = doms[state], disks[state]
        # create and delete, each in check mode and for real (+ the qemu-io write on the shut-off one)
        assert run.recap()[state]['changed'] == (5 if state == 'shutoff' else 4), state
        assert run.recap()[state]['ignored'] == refusals, state
        assert independent.snapshot_names(dom) == [], state
        assert independent.blklist(dom) == {'vda': disk}, state
        assert not os.path.exists(os.path.splitext(disk)[0] + '.disk-1'), state  # the overlay is gone
        assert independent.image_info(disk).get('backing-filename') is None, state
        assert independent.qemu_img_snapshots(disk) == [], state
        independent.qemu_img_check(disk, in_use=state != 'shutoff')
        assert independent.domstate(dom) == state
    assert independent.has_pattern(disks['shutoff'], 0x5a)  # the overlay's data was merged into the image


def test_delete_without_and_with_children(blank, independent, run_playbook):
    dom = blank('delete')
    disk = independent.lab.disk_paths(dom)[0]
    run_playbook('modules_snapshot_delete.yml', {'dom': dom, 'disk': disk})  # without --diff

    assert independent.snapshot_names(dom) == ['a']
    assert independent.parent(dom, 'a') is None
    assert independent.current(dom) == 'a'  # the current snapshot (d) went: libvirt made a current
    assert independent.qemu_img_snapshots(disk) == ['a']
    independent.qemu_img_check(disk, in_use=True)
    assert independent.domstate(dom) == 'running'


def test_batch_mode(blank, independent, lab, run_playbook):
    doms = sorted(blank(f'batch-{state}', state=state) for state in STATES)
    run_playbook('modules_snapshot_batch.yml', {
        'batch_glob': f'{lab.prefix}batch-*', 'batch_doms': doms,
        'missing': f'{lab.prefix}no-such-domain', 'nomatch': f'{lab.prefix}nomatch-*',
    }, diff=True)

    for dom in doms:
        assert independent.snapshot_names(dom) == [], dom
        assert independent.qemu_img_snapshots(independent.lab.disk_paths(dom)[0]) == [], dom
    assert f'{lab.prefix}no-such-domain' not in independent.domain_names()
