# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tier for the roles and the playbooks: a small fleet of real Debian guests.

The guests are inventory hosts with the local connection whose hypervisor is ``localhost``; the lab
guests have no network, so the change of the test acts inside them through the guest agent
(targets/roles_fleet/change.yml). Results are checked from inside the guests (lab.guest_exec) and
with virsh and qemu-img, besides the play's own checks. ansible-lint's production profile on roles/
and playbooks/ runs here too.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
import typing as t

import pytest

from test_modules_common import current_snapshot, snapshot_names

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / 'playbooks'
FLEET = pathlib.Path(__file__).resolve().parent / 'targets' / 'roles_fleet'


def write_inventory(path: pathlib.Path, guests: dict[str, dict[str, t.Any]]) -> str:
    """An inventory of guests (name -> host vars, with kvm_domain) whose hypervisor is localhost."""
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
    inventory = {'all': {'children': {
        'hypervisors': {'hosts': {'localhost': local}},
        'kvm_guests': {'hosts': guests, 'vars': dict(local, kvm_hypervisor='localhost')},
    }}}
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    return str(path)


def in_guest(lab: t.Any, domain: str, *argv: str) -> tuple[int, str, str]:
    return lab.guest_exec(domain, list(argv), timeout=60)


@pytest.fixture(scope='module')
def fleet(lab: t.Any) -> dict[str, str]:
    """Three real guests, booted together, with a working guest agent: inventory name -> domain."""
    domains = {name: lab.guest_domain(name, memory_mib=384) for name in ('g1', 'g2', 'g3')}
    for domain in domains.values():
        lab.wait_agent(domain, timeout=300)
    return domains


def test_guarded_change_rolls_back_only_the_broken_guest(lab, fleet, run_playbook, tmp_path):
    """g1 is the canary, then g2 and g3 together; the change breaks g2 (rm -rf /usr/bin/* inside it).

    Decided behaviour: the failed guest makes ansible-playbook exit 2 (it is rescued, rolled back, then
    failed at the end of its batch); after its rollback its pre-change snapshot is kept (the known good
    state, current snapshot) next to the safety snapshot of the broken state.
    """
    inventory = write_inventory(tmp_path / 'fleet.yml', {name: {'kvm_domain': dom} for name, dom in fleet.items()})
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2, extra_vars={
        'kvm_change_tasks': str(FLEET / 'change.yml'),
        'kvm_change_id': 'fleet1',
        'roles_break': 'g2',
        'kvm_serial': [1, '100%'],
        'kvm_snapshot_jobs': 2,
        'kvm_answer_agent': True,
        'rollback_check_command': ['/usr/bin/ls', '/usr/bin'],
        'rollback_wait_timeout': 180,
    })
    recap = result.recap()
    assert recap['g2']['failed'] == 1 and recap['g2']['rescued'] == 1, result
    for name in ('g1', 'g3'):
        assert recap[name]['failed'] == 0 and recap[name]['rescued'] == 0 and recap[name]['unreachable'] == 0, result
    assert 'The change failed on g2' in result.stdout

    g1, g2, g3 = fleet['g1'], fleet['g2'], fleet['g3']
    # g2: whole and running again, its change undone, its broken state kept
    assert lab.state(g2) == 'running'
    rc, out, _err = in_guest(lab, g2, '/usr/bin/ls', '/usr/bin')
    assert rc == 0 and 'ls' in out.split()
    assert in_guest(lab, g2, '/usr/bin/test', '-e', '/root/changed')[0] == 1
    assert snapshot_names(lab, g2) == {'pre-change-fleet1', 'rollback-safety-fleet1'}
    assert current_snapshot(lab, g2) == 'pre-change-fleet1'
    assert set(lab.qemu_img_snapshots(lab.disk_paths(g2)[0])) == {'pre-change-fleet1', 'rollback-safety-fleet1'}
    # g1 and g3: the change kept, no pre-change snapshot left
    for dom in (g1, g3):
        assert lab.state(dom) == 'running'
        rc, out, _err = in_guest(lab, dom, '/usr/bin/cat', '/root/changed')
        assert (rc, out.strip()) == (0, 'fleet1')
        assert snapshot_names(lab, dom) == set()
        assert lab.qemu_img_snapshots(lab.disk_paths(dom)[0]) == []

    # The safety snapshot holds the broken state: go there with virsh, look, and come back.
    assert lab.virsh('snapshot-revert', g2, 'rollback-safety-fleet1', '--running').returncode == 0
    lab.wait_agent(g2, timeout=60)
    assert in_guest(lab, g2, '/usr/bin/ls', '/usr/bin')[0] == 127
    assert lab.virsh('snapshot-revert', g2, 'pre-change-fleet1', '--running').returncode == 0
    lab.wait_agent(g2, timeout=60)
    assert in_guest(lab, g2, '/usr/bin/ls', '/usr/bin')[0] == 0


def test_single_steps_snapshot_rollback_twice_cleanup(lab, fleet, run_playbook, tmp_path):
    """snapshot_now, break the guest, rollback_now twice (the second does not revert), cleanup_now."""
    dom = fleet['g3']
    inventory = write_inventory(tmp_path / 'one.yml', {'g3': {'kvm_domain': dom}})
    before = snapshot_names(lab, dom)

    run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, extra_vars={'kvm_change_id': 'step1'})
    assert snapshot_names(lab, dom) == before | {'pre-change-step1'}
    # a second change is refused while step1's snapshot is there, and nothing is taken
    refused = run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, expect_rc=2,
                           extra_vars={'kvm_change_id': 'step2'})
    assert 'still has the pre-change snapshot(s) pre-change-step1' in refused.stdout
    assert snapshot_names(lab, dom) == before | {'pre-change-step1'}

    assert in_guest(lab, dom, '/bin/sh', '-c', 'rm -rf /usr/bin/*')[0] in (0, 1)
    assert in_guest(lab, dom, '/usr/bin/ls', '/')[0] == 127

    rollback_vars = {'kvm_change_id': 'step1', 'rollback_check_command': ['/usr/bin/ls', '/usr/bin'],
                     'rollback_wait_timeout': 180}
    first = run_playbook(PLAYBOOKS / 'rollback_now.yml', inventory=inventory, extra_vars=rollback_vars)
    assert first.recap()['g3']['changed'] >= 1
    assert 'reverted to pre-change-step1' in first.stdout
    assert in_guest(lab, dom, '/usr/bin/ls', '/usr/bin')[0] == 0
    assert snapshot_names(lab, dom) == before | {'pre-change-step1', 'rollback-safety-step1'}

    # a mark made after the first rollback survives the second: it does not revert again
    assert in_guest(lab, dom, '/bin/sh', '-c', 'echo after > /root/after-rollback')[0] == 0
    second = run_playbook(PLAYBOOKS / 'rollback_now.yml', inventory=inventory, extra_vars=rollback_vars)
    assert second.recap()['g3']['changed'] == 0, second
    assert 'already rolled back to pre-change-step1' in second.stdout
    assert in_guest(lab, dom, '/usr/bin/cat', '/root/after-rollback')[1].strip() == 'after'
    assert lab.state(dom) == 'running'
    assert snapshot_names(lab, dom) == before | {'pre-change-step1', 'rollback-safety-step1'}

    # accept the change: only its pre-change snapshot goes; then prune everything the roles made
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, extra_vars={'kvm_change_id': 'step1'})
    assert snapshot_names(lab, dom) == before | {'rollback-safety-step1'}
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory)
    assert snapshot_names(lab, dom) == {n for n in before if not n.startswith(('pre-change-', 'rollback-safety-'))}


def test_unreachable_guest_is_rolled_back_and_soak_keeps_the_snapshot(lab, run_playbook, tmp_path):
    """u1 cannot be reached during its change: it is rolled back like a failed guest.

    s1's change works and it has a soak period (kvm_soak as a host var): its pre-change snapshot is kept
    until cleanup_now with kvm_older_than deletes it. A snapshot the roles did not make is never touched.
    """
    unreachable = lab.blank_domain('unreach', state='running')
    soaking = lab.blank_domain('soak', state='running')
    assert lab.virsh('snapshot-create-as', unreachable, 'not-ours').returncode == 0
    inventory = write_inventory(tmp_path / 'unreachable.yml', {
        'u1': {'kvm_domain': unreachable, 'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': 1},
        's1': {'kvm_domain': soaking, 'kvm_soak': '1d'},
    })
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2, extra_vars={
        'kvm_change_tasks': str(FLEET / 'unreachable.yml'), 'kvm_change_id': 'unreach1', 'kvm_serial': ['100%'],
        'kvm_answer_timeout': 5, 'rollback_wait_for': 'none'})
    recap = result.recap()
    assert recap['u1']['unreachable'] == 0 and recap['u1']['rescued'] == 1 and recap['u1']['failed'] == 1, result
    assert recap['s1']['failed'] == 0 and recap['s1']['rescued'] == 0, result
    assert 'The change failed on u1 (Check that Ansible still reaches the guest' in result.stdout
    assert 'pre-change-unreach1 is kept for the soak period of 1d' in result.stdout
    assert snapshot_names(lab, unreachable) == {'not-ours', 'pre-change-unreach1', 'rollback-safety-unreach1'}
    assert current_snapshot(lab, unreachable) == 'pre-change-unreach1'
    assert snapshot_names(lab, soaking) == {'pre-change-unreach1'}

    # the soak period is not over: nothing goes; once it is (1 s here), the roles' snapshots go, not the others
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, extra_vars={'kvm_older_than': '1d'})
    assert snapshot_names(lab, soaking) == {'pre-change-unreach1'}
    assert len(snapshot_names(lab, unreachable)) == 3
    time.sleep(1.5)
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, extra_vars={'kvm_older_than': '1s'})
    assert snapshot_names(lab, soaking) == set()
    assert snapshot_names(lab, unreachable) == {'not-ours'}


def test_preflight_refuses_before_changing_anything(lab, run_playbook, tmp_path):
    """A raw disk, a missing domain and a full disk each stop pre_change with a message; nothing is made."""
    raw = lab.blank_domain('rawdisk', state='running', disk_format='raw')
    small = lab.blank_domain('nospace', state='running')
    inventory = write_inventory(tmp_path / 'preflight.yml', {
        'raw1': {'kvm_domain': raw},
        'gone1': {'kvm_domain': lab.prefix + 'does-not-exist'},
        'full1': {'kvm_domain': small, 'pre_change_free_space_margin_mb': 1 << 40},
    })
    result = run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, expect_rc=2,
                          extra_vars={'kvm_change_id': 'pf1'})
    assert {name: counts['failed'] for name, counts in result.recap().items() if name != 'localhost'} == \
        {'raw1': 1, 'gone1': 1, 'full1': 1}
    assert 'has disk(s) vda that are not in qcow2 format' in result.stdout
    assert 'is not known to' in result.stdout
    assert 'Not enough free space for the pre-change snapshot' in result.stdout
    assert snapshot_names(lab, raw) == set() and snapshot_names(lab, small) == set()


def test_ansible_lint_production(ansible_env):
    """ansible-lint, production profile (.ansible-lint), on the roles and the playbooks."""
    proc = subprocess.run([sys.executable, '-m', 'ansiblelint', '--nocolor', 'roles', 'playbooks'],
                          cwd=str(REPO), env=ansible_env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-8000:]
