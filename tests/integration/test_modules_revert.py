# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_revert on real libvirt: every state_after from snapshots of running,
paused and shut-off domains, the current snapshot, safety snapshots, force.

Reverting to an external snapshot (refused on libvirt < 9.9) is in
test_modules_snapshot.py (modules_snapshot_disk_only.yml); memory state
coming back is shown on a real guest in test_disaster.py.
"""

from __future__ import annotations

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent, write_inventory  # noqa: F401  # pylint: disable=unused-import

STATES = ['running', 'paused', 'shutoff']


def test_revert_to_every_state_after(blank, independent, run_playbook, tmp_path):
    doms = {state: blank(f'revert-{state}', state=state) for state in STATES}
    disks = {state: independent.lab.disk_paths(dom)[0] for state, dom in doms.items()}
    inventory = write_inventory(tmp_path, {
        state: {'dom': doms[state], 'dom_state': state, 'disk': disks[state]} for state in STATES})
    run = run_playbook('modules_revert.yml', inventory=inventory, diff=True)

    for state in STATES:
        dom, disk = doms[state], disks[state]
        # the snapshot, then 4 x (drift, check-mode revert, revert)
        assert run.recap()[state]['changed'] == 1 + 4 * 3, state
        # the last case was state_after: shutoff
        assert independent.domstate(dom) == 'shutoff', state
        assert independent.snapshot_names(dom) == ['base'], state
        assert independent.current(dom) == 'base', state
        assert independent.snapshot_info(dom, 'base')['State'] == state
        assert independent.qemu_img_snapshots(disk) == ['base'], state
        assert independent.has_pattern(disk, 0), state  # the zeroes of the snapshot, not the drift's 0x5a
        independent.qemu_img_check(disk, in_use=True)  # QEMU was killed by the revert to shutoff


def test_revert_to_current_with_safety_snapshot(blank, independent, run_playbook):
    dom = blank('revert-safety')
    disk = independent.lab.disk_paths(dom)[0]
    run_playbook('modules_revert_safety.yml', {'dom': dom, 'disk': disk}, diff=True)

    assert independent.snapshot_names(dom) == ['base', 'broken']
    assert independent.parent(dom, 'broken') == 'base'
    assert independent.current(dom) == 'broken'
    assert independent.snapshot_xml(dom, 'broken').findtext('description') == 'The drifted state'
    assert independent.qemu_img_snapshots(disk) == ['base', 'broken']
    assert independent.domstate(dom) == 'shutoff'
    assert independent.has_pattern(disk, 0x5a)  # the state the first revert threw away, kept by "broken"
    independent.qemu_img_check(disk, in_use=True)  # QEMU was killed by the revert to shutoff
