# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_info (the tree, by name, all domains) and kvm.snapshots.snapshot_prune
(by count, by age, batch) on real libvirt, checked with virsh and qemu-img."""

from __future__ import annotations

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent  # noqa: F401  # pylint: disable=unused-import


def test_info_tree_by_name_and_all_domains(blank, independent, run_playbook):
    dom = blank('info')
    other = blank('info-other', state='shutoff')
    run = run_playbook('modules_info.yml', {'dom': dom, 'other': other})

    assert run.recap()['localhost']['failed'] == 0
    # snapshot_info changed nothing: the playbook's own snapshots are all there is
    assert independent.snapshot_names(dom) == ['a', 'b', 'c', 'd']
    assert independent.current(dom) == 'd'
    assert [independent.parent(dom, n) for n in 'abcd'] == [None, 'a', 'b', 'a']
    assert independent.snapshot_names(other) == ['a']
    assert independent.qemu_img_snapshots(independent.lab.disk_paths(dom)[0]) == ['a', 'b', 'c', 'd']


def test_prune_by_count_by_age_and_batch(blank, independent, lab, run_playbook):
    dom = blank('prune-a')
    other = blank('prune-b', state='shutoff')
    paused = blank('prune-c', state='paused')
    disks = [independent.lab.disk_paths(d)[0] for d in (dom, other, paused)]
    run_playbook('modules_prune.yml', {'dom': dom, 'other': other, 'paused': paused, 'dom_disk': disks[0],
                                       'prune_glob': f'{lab.prefix}prune-*'}, diff=True)

    for name, disk in zip((dom, other, paused), disks):
        assert independent.snapshot_names(name) == [], name
        assert independent.qemu_img_snapshots(disk) == [], name
        independent.qemu_img_check(disk, in_use=name != other)
    assert [independent.domstate(d) for d in (dom, other, paused)] == ['running', 'shutoff', 'paused']


def test_info_on_a_long_chain_of_snapshots(blank, independent, run_playbook):
    """A chain of 200 snapshots (each the child of the one before): snapshot_info returns them all and
    Ansible prints the result at -v; a nested tree would be too deep for Ansible to pass on."""
    dom = blank('info-chain', state='shutoff')
    names = [f's{i:03d}' for i in range(200)]
    # one virsh process for the whole chain: each snapshot becomes the current one, the next one's parent
    independent.virsh(' ; '.join(f'snapshot-create-as {dom} {name}' for name in names))
    assert independent.snapshot_names(dom) == names
    assert independent.parent(dom, names[-1]) == names[-2]

    run = run_playbook('modules_info_chain.yml', {'dom': dom, 'chain_length': len(names)}, args=['-v'])

    assert run.recap()['localhost']['failed'] == 0
    output = run.stdout + run.stderr
    assert 'recursion' not in output.lower(), output[-3000:]
    # the whole result was printed: its last node is in the output
    assert '"name": "s199"' in run.stdout and '"depth": 199' in run.stdout, run.stdout[-3000:]
    assert independent.snapshot_names(dom) == names  # read, not changed
