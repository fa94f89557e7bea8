# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_info (the tree, by name, all domains) and kvm.snapshots.snapshot_prune
(by count, by age, batch, by tiers) on real libvirt, checked with virsh and qemu-img."""

from __future__ import annotations

import calendar
import time
import xml.etree.ElementTree as ET

import libvirt

# the helpers of the hypervisor playbook's tests (a module import: pytest collects no test of it here)
import test_batch as batch_helpers
# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent  # noqa: F401  # pylint: disable=unused-import

PLAYBOOK = batch_helpers.PLAYBOOK


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


# Tiered retention through playbooks/hypervisor_snapshots.yml (batch mode, the kvm_prune_keep_* variables).
# Snapshots are taken for real on shut-off blank domains (no guest boots), then back-dated by redefining their XML
# with another <creationTime> (virsh snapshot-create --redefine), which is all libvirt lets a client change.
TIERED = [  # name, UTC creation time; parent before child, oldest first; manual-* never matches auto-*
    ('auto-a', '2025-06-15T12:00:00'),
    ('auto-b', '2025-12-31T23:00:00'),  # ISO week 2026-W01, month 2025-12, year 2025
    ('auto-c', '2026-10-10T08:00:00'),
    ('manual-1', '2026-11-15T00:00:00'),
    ('auto-d', '2026-11-16T09:00:00'),  # Monday of 2026-W47
    ('auto-e', '2026-11-20T10:00:00'),
    ('auto-f', '2026-11-22T10:00:00'),  # Sunday of 2026-W47
    ('auto-g', '2026-11-23T08:00:00'),  # Monday of 2026-W48
    ('auto-h', '2026-11-23T08:30:00'),  # the same hour as auto-g
    ('manual-2', '2026-11-23T08:45:00'),
    ('auto-i', '2026-11-23T09:15:00'),
]
# worked by hand (tests/unit/plugins/module_utils/test__retention.py explains each)
TIERED_KEPT = {
    'auto-b': ['keep_monthly', 'keep_yearly'],
    'auto-c': ['keep_monthly'],
    'auto-e': ['keep_daily'],
    'auto-f': ['keep_daily', 'keep_weekly'],
    'auto-h': ['keep_hourly'],
    'auto-i': ['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly'],
}
TIERED_DELETED = ['auto-a', 'auto-d', 'auto-g']


def utc(when):
    return calendar.timegm(time.strptime(when, '%Y-%m-%dT%H:%M:%S'))


def back_date(lab, dom):
    """Take the TIERED snapshots of ``dom``, then redefine each with its creation time (libvirt-python: the
    set-up; virsh checks the outcome)."""
    domain = lab.lookup(dom)
    for name, _when in TIERED:
        root = ET.Element('domainsnapshot')
        ET.SubElement(root, 'name').text = name
        domain.snapshotCreateXML(ET.tostring(root, encoding='unicode'), 0)
    for name, when in TIERED:
        xml = ET.fromstring(domain.snapshotLookupByName(name, 0).getXMLDesc(0))
        xml.find('creationTime').text = str(utc(when))
        domain.snapshotCreateXML(ET.tostring(xml, encoding='unicode'), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)


def test_prune_tiers_through_the_hypervisor_playbook(blank, independent, lab, run_playbook):
    """Check mode, then the real run (a re-run deleting nothing more is proven by the unit tests: it costs
    another ansible-playbook start here)."""
    doms = sorted(blank(f'tiers-{i}', state='shutoff') for i in (1, 2))
    for dom in doms:
        back_date(lab, dom)
    assert [independent.snapshot_xml(dom, 'auto-a').findtext('creationTime') for dom in doms] \
        == [str(utc('2025-06-15T12:00:00'))] * 2
    prune = {'kvm_target': 'all', 'kvm_action': 'prune', 'kvm_domains': f'{lab.prefix}tiers-*',
             'kvm_prune_match': 'auto-*', 'kvm_prune_keep_last': 1, 'kvm_prune_keep_hourly': 2,
             'kvm_prune_keep_daily': 3, 'kvm_prune_keep_weekly': 2, 'kvm_prune_keep_monthly': 3,
             'kvm_prune_keep_yearly': 2, 'kvm_prune_older_than': '1h'}
    every = sorted(name for name, _when in TIERED)
    survivors = sorted([*TIERED_KEPT, 'manual-1', 'manual-2'])

    # check mode: says which rule keeps each survivor and why the others would go; deletes nothing
    predicted = batch_helpers.result_of(run_playbook(PLAYBOOK, prune, check=True, args=['-v']),
                                        batch_helpers.PRUNE_TASK)
    assert predicted['changed'] and [r['domain'] for r in predicted['results']] == doms
    for res in predicted['results']:
        assert {k['name']: k['rules'] for k in res['kept']} == TIERED_KEPT
        assert [d['name'] for d in res['deleted']] == TIERED_DELETED
        assert all(d['reason'].startswith('older than 1h; not among the newest 1 (keep_last); ')
                   for d in res['deleted'])
        assert res['kept'][0]['creation_time'] == '2025-12-31T23:00:00Z'
    assert [independent.snapshot_names(d) for d in doms] == [every, every]

    # real run: exactly the predicted snapshots go, on each domain, checked with virsh snapshot-list
    real = batch_helpers.result_of(run_playbook(PLAYBOOK, prune, args=['-v']), batch_helpers.PRUNE_TASK)
    assert real['changed'] and real['results'] == predicted['results']
    assert [independent.snapshot_names(d) for d in doms] == [survivors, survivors]
    assert [sorted(independent.qemu_img_snapshots(lab.disk_paths(d)[0])) for d in doms] == [survivors, survivors]
