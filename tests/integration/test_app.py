# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Applications in guarded_change.yml (issue 15 part 3): the guests with the same kvm_application are one batch, get
one group snapshot (kvm.snapshots.snapshot_group), and are rolled back together when the change fails on any of them.

Blank running domains (no OS, no guest agent, no boot): the group snapshot pauses them (freeze agent falls back to
pause) and holds their memory, so a rollback brings them back running. The change (targets/roles_fleet/app_change.yml)
notes its batch in a file and shuts its domain off (virsh destroy); the results are read with virsh: the power state,
the current snapshot and the snapshots of every domain. Two playbook runs (docs/groups.md gives their cost).
"""

from __future__ import annotations

import json
import sys
import typing as t

from test_modules_common import current_snapshot, snapshot_names
from test_roles import FLEET, PLAYBOOKS, write_inventory


def task_output(stdout: str, task: str) -> str:
    """What ansible-playbook printed for the task (its lines up to the next task)."""
    start = stdout.find(f'TASK [{task}]')
    assert start >= 0, f'task {task} did not run'
    end = stdout.find('\nTASK [', start + 1)
    return stdout[start:end if end >= 0 else len(stdout)]


def test_application_rolled_back_together_batched_and_cleaned_up(lab: t.Any, run_playbook: t.Any, tmp_path: t.Any):
    """The inventory lists c1, web1, solo, db1, c2: c1 and c2 are application cache, web1 and db1 application shop,
    solo has none. The batches are cache, then shop, then solo: each application whole, its guests adjacent, the
    canary batch the first application, the guests without one after the applications.

    cache's change works: its group snapshot is deleted from both members by one run of snapshot_group, and the change
    is kept. web1's change fails: web1 and db1 (whose change worked) are both reverted to their group snapshot, by one
    run of snapshot_group, and both fail; every guest of the batch failed, so Ansible ends the run there, before solo.
    Then rollback_now.yml reverts the application shop by hand, as one group.
    """
    c1, web, solo, db, c2 = (lab.blank_domain(n, state='running') for n in ('appc1', 'appweb', 'appsolo', 'appdb',
                                                                            'appc2'))
    # each member's check after the group revert leaves a mark; the blank domains have an agent channel but no agent,
    # so the wait and the check go through the guest's connection (local here)
    shop = {'kvm_application': 'shop', 'kvm_application_order': [db], 'rollback_wait_for': 'connection'}
    checked = {host: tmp_path / f'checked-{host}' for host in ('web1', 'db1')}
    inventory = write_inventory(tmp_path / 'apps.yml', {
        'c1': {'kvm_domain': c1, 'kvm_application': 'cache'},
        'web1': dict(shop, kvm_domain=web, kvm_change_fails=True,
                     rollback_check_command=['/usr/bin/touch', str(checked['web1'])]),
        'solo': {'kvm_domain': solo},
        'db1': dict(shop, kvm_domain=db, rollback_check_command=['/usr/bin/touch', str(checked['db1'])]),
        'c2': {'kvm_domain': c2, 'kvm_application': 'cache'},
    })
    log = tmp_path / 'batches.log'
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2, extra_vars={
        'kvm_change_tasks': str(FLEET / 'app_change.yml'), 'kvm_change_id': 'app1', 'kvm_batch_log': str(log)})
    assert log.read_text().split() == ['c1,c2', 'web1,db1'], result
    recap = result.recap()
    assert [h for h in recap if recap[h]['failed']] == ['db1', 'web1'], result
    assert 'The change failed on db1 (the change failed on web1 of application shop)' in result.stdout, result
    assert 'The change failed on web1 (Fail where the change is to fail' in result.stdout, result
    assert 'pre-change-app1 is the group snapshot of application cache (c1, c2), taken now' in result.stdout, result
    assert 'TASK [kvm.snapshots.cleanup : Delete the group snapshot from every member, on the leader]' in result.stdout

    # after the group revert, each member was checked as a guest alone: power state, current and safety snapshot,
    # then its own check command
    for host in ('web1', 'db1'):
        assert f'ok: [{host}]' in task_output(result.stdout, 'kvm.snapshots.rollback : Check the power state and the '
                                                             'current snapshot'), result
        assert checked[host].exists(), host
    for dom in (db, web):
        assert lab.state(dom) == 'running', dom  # the change shut both off; the group revert brought both back
        assert current_snapshot(lab, dom) == 'pre-change-app1', dom
        names = snapshot_names(lab, dom)
        safety = [n for n in names if n.startswith('pre-change-app1-safety-')]
        assert len(names) == 2 and 'pre-change-app1' in names and len(safety) == 1, names
    for dom in (c1, c2):
        assert lab.state(dom) == 'shutoff', dom  # the change is kept
        assert snapshot_names(lab, dom) == set(), dom  # the group snapshot deleted
    assert 'solo' not in recap and lab.state(solo) == 'running' and snapshot_names(lab, solo) == set()

    # By hand: rollback_now.yml with the change id reverts the application again, as one group (another safety
    # snapshot on each member); the inventory's order puts db1 first.
    for dom in (db, web):
        assert lab.virsh('destroy', dom).returncode == 0
    again = run_playbook(PLAYBOOKS / 'rollback_now.yml', inventory=inventory, args=['--limit', 'web1,db1'],
                         extra_vars={'kvm_change_id': 'app1'})
    assert 'TASK [kvm.snapshots.rollback : Revert the application to its group snapshot, on its leader]' in again.stdout
    for dom in (db, web):
        assert lab.state(dom) == 'running' and current_snapshot(lab, dom) == 'pre-change-app1', dom
        assert len([n for n in snapshot_names(lab, dom) if n.startswith('pre-change-app1-safety-')]) == 2, dom

    # cleanup_now.yml with the change id deletes the group snapshot from both members by one snapshot_group run on
    # the application's leader: check mode deletes nothing, the real run deletes pre-change-app1 (the safety
    # snapshots, its children, stay), a re-run has nothing left to delete
    safety = {dom: {n for n in snapshot_names(lab, dom) if n.startswith('pre-change-app1-safety-')} for dom in (db, web)}
    cleanup = {'inventory': inventory, 'args': ['--limit', 'web1,db1'], 'extra_vars': {'kvm_change_id': 'app1'}}
    checked_run = run_playbook(PLAYBOOKS / 'cleanup_now.yml', check=True, **cleanup)
    group_task = 'TASK [kvm.snapshots.cleanup : Delete the group snapshot from every member, on the leader]'
    assert group_task in checked_run.stdout, checked_run
    assert all(snapshot_names(lab, dom) == safety[dom] | {'pre-change-app1'} for dom in (db, web)), checked_run
    deleted = run_playbook(PLAYBOOKS / 'cleanup_now.yml', **cleanup)
    group_part = task_output(deleted.stdout, group_task[len('TASK ['):-1])
    assert group_part.count('changed: [') == 1 and 'skipping: [' in group_part, deleted  # one run, on the leader
    assert f'{web}: deleted pre-change-app1' in deleted.stdout and f'{db}: deleted pre-change-app1' in deleted.stdout
    for dom in (db, web):
        assert snapshot_names(lab, dom) == safety[dom] and lab.state(dom) == 'running', dom
    again = run_playbook(PLAYBOOKS / 'cleanup_now.yml', **cleanup)
    assert f'{web}: deleted nothing' in again.stdout and f'{db}: deleted nothing' in again.stdout, again
    assert all(again.recap()[h]['changed'] == 0 for h in ('web1', 'db1')), again


def test_application_on_two_hypervisors_needs_the_uri_mode(run_playbook: t.Any, tmp_path: t.Any):
    """An application whose guests are on two hypervisors in the connection mode "hypervisor" cannot be snapshotted by
    one module run: pre_change refuses it before anything is read or made, and says to set kvm_connection_mode=uri.
    No lab domain is needed (the domains named do not exist: nothing reaches libvirt)."""
    inventory = tmp_path / 'two.yml'
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
    inventory.write_text(json.dumps({'all': {'children': {
        'hypervisors': {'hosts': {'hv1': local, 'hv2': local}},
        'kvm_guests': {'vars': dict(local, kvm_application='split'), 'hosts': {
            'g1': {'kvm_hypervisor': 'hv1', 'kvm_domain': 'no-such-domain-1'},
            'g2': {'kvm_hypervisor': 'hv2', 'kvm_domain': 'no-such-domain-2'}}},
    }}}))
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=str(inventory), expect_rc=2, kvm_uri=None,
                          extra_vars={'kvm_change_tasks': str(FLEET / 'app_change.yml'), 'kvm_change_id': 'split1'})
    recap = result.recap()
    assert recap['g1']['failed'] == 1 and recap['g2']['failed'] == 1, result
    assert 'are reached from hv1 and hv2' in result.stdout, result
    assert 'set kvm_connection_mode=uri for the application' in result.stdout, result
    assert 'changed: [g1' not in result.stdout, result


def test_check_mode_of_a_failing_change_changes_nothing(lab: t.Any, run_playbook: t.Any, tmp_path: t.Any):
    """guarded_change.yml --check where the change fails: on an application (web1 fails, db1 with it) and on a guest
    alone (solo, another run: a batch that fails whole ends the run). The pre-change snapshots are only predicted, so
    each rollback is predicted against the pre_change role's record instead of failing on a snapshot that is not
    there; every guest fails saying what would be done, and virsh finds every domain running, without snapshots."""
    web, db, solo = (lab.blank_domain(n, state='running') for n in ('chkweb', 'chkdb', 'chksolo'))
    shop = {'kvm_application': 'shop', 'rollback_wait_for': 'connection'}
    inventories = {
        'shop': {'web1': dict(shop, kvm_domain=web, kvm_change_fails=True), 'db1': dict(shop, kvm_domain=db)},
        'solo': {'solo': {'kvm_domain': solo, 'kvm_change_fails': True, 'rollback_wait_for': 'connection'}},
    }
    would = 'Check mode: it would be rolled back to pre-change-chk1; nothing was changed.'
    for name, hosts in inventories.items():
        result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=write_inventory(tmp_path / f'{name}.yml', hosts),
                              check=True, expect_rc=2, extra_vars={
                                  'kvm_change_tasks': str(FLEET / 'app_change.yml'), 'kvm_change_id': 'chk1',
                                  'kvm_batch_log': str(tmp_path / 'batches.log')})
        assert {h for h, r in result.recap().items() if r['failed']} == set(hosts), result
        if name == 'shop':
            assert f'The change failed on web1 (Fail where the change is to fail: the change of web1 broke it). {would}' \
                in result.stdout, result
            assert f'The change failed on db1 (the change failed on web1 of application shop). {would}' in result.stdout
            assert 'pre-change-chk1 is the group snapshot of application shop (web1, db1), would be taken (check mode)' \
                in result.stdout, result
        else:
            assert f'The change failed on solo (Fail where the change is to fail: the change of solo broke it). {would}' \
                in result.stdout, result
            assert 'skipping: [solo]' in task_output(result.stdout, 'kvm.snapshots.rollback : Revert to the pre-change '
                                                                    'snapshot'), result
    for dom in (web, db, solo):
        assert lab.state(dom) == 'running' and snapshot_names(lab, dom) == set(), dom
