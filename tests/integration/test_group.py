# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_group on real libvirt (both stacks).

Each test runs the steps it needs in one ansible-playbook run (targets/group/steps.yml writes what each step
returned to a JSON file) and checks them, and the end state, with virsh and qemu-img.

Members are spread over two URIs that reach the stack's one libvirtd by two spellings (the second with a query
parameter libvirt ignores), so that the module opens one connection per URI as it does for two hypervisors.
Most tests use shut-off blank domains (no guest boots); one uses the session's shared Debian guest, whose
agent freezes for real, and a running blank domain, whose agent never answers.
"""

from __future__ import annotations

import json
import subprocess
import typing as t

from conftest import URI
# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, guest, independent  # noqa: F401  # pylint: disable=unused-import

URI2 = URI + ('&' if '?' in URI else '?') + 'no_tty=1'  # the same libvirtd, another connection


def run_steps(run_playbook: t.Callable[..., t.Any], tmp_path: t.Any, steps: list[dict[str, t.Any]]) -> dict[str, t.Any]:
    out = tmp_path / 'steps.json'
    run_playbook('group/steps.yml', {'steps': steps, 'out': str(out)})
    results = json.loads(out.read_text())
    assert [r['label'] for r in results] == [s['label'] for s in steps]
    return {r['label']: r['result'] for r in results}


def lines(result: dict[str, t.Any]) -> list[str]:
    return sorted(line for line in result['stdout_lines'] if line.strip())


def status(result: dict[str, t.Any]) -> dict[str, str]:
    return {m['domain']: m['status'] for m in result['members']}


def test_take_idempotent_absent_and_a_failure_in_the_window(blank, independent, run_playbook, tmp_path):
    b1, b2, bad = blank('grp-b1', state='shutoff'), blank('grp-b2', state='shutoff'), blank('grp-bad', state='shutoff')
    # bad's disk is declared qcow2 but is raw: preflight passes, its snapshot fails inside the window
    bad_disk = independent.lab.disk_paths(bad)[0]
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'raw', bad_disk, '16M'], check=True)
    members = [{'domain': b1}, {'domain': b2, 'uri': URI2}]
    group = {'name': 'g1', 'members': members, 'description': 'Before the change'}
    virsh = ['virsh', '-c', URI]
    steps = [
        {'label': 'check', 'group': group, 'check': True, 'diff': True},
        {'label': 'list after check', 'argv': virsh + ['snapshot-list', b1, '--name']},
        {'label': 'take', 'group': group},
        {'label': 'again', 'group': group},
        {'label': 'info', 'info': {'domain': b2}},
        {'label': 'half', 'group': dict(group, members=members + [{'domain': bad}])},
        {'label': 'absent check', 'group': {'name': 'g1', 'state': 'absent'}, 'check': True},
        {'label': 'list after absent check', 'argv': virsh + ['snapshot-list', b2, '--name']},
        {'label': 'absent', 'group': {'name': 'g1', 'state': 'absent', 'members': members}},
        {'label': 'absent again', 'group': {'name': 'g1', 'state': 'absent', 'members': members}},
        {'label': 'window failure', 'group': dict(group, name='g2', members=members + [{'domain': bad}])},
    ]
    r = run_steps(run_playbook, tmp_path, steps)

    assert r['check']['changed'] and set(status(r['check']).values()) == {'taken'}, r['check']
    assert lines(r['list after check']) == []
    assert r['take']['changed'] and not r['take'].get('failed'), r['take']
    assert r['take']['freeze_used'] == 'none' and status(r['take']) == {b1: 'taken', b2: 'taken'}
    assert [m['uri'] for m in r['take']['members']] == [URI, URI2]
    assert not r['again']['changed'] and status(r['again']) == {b1: 'exists', b2: 'exists'}, r['again']
    group_info = [s for s in r['info']['snapshots'] if s['name'] == 'g1'][0]['group']
    assert group_info['name'] == 'g1' and group_info['members'] == [
        {'domain': b1, 'uri': URI, 'state': 'shutoff'}, {'domain': b2, 'uri': URI2, 'state': 'shutoff'}]
    # a member without the snapshot: refused, nothing made on it
    assert r['half']['failed'] and f'not on {bad}' in r['half']['msg'], r['half']
    assert r['absent check']['changed'] and lines(r['list after absent check']) == ['g1']
    assert r['absent']['changed'] and status(r['absent']) == {b1: 'deleted', b2: 'deleted'}, r['absent']
    assert not r['absent again']['changed']
    # the failure inside the window names the member and leaves nothing behind
    failed = r['window failure']
    assert failed['failed'] and bad in failed['msg'] and 'were deleted' in failed['msg'], failed
    assert status(failed) == {b1: 'absent', b2: 'absent', bad: 'failed'}
    for dom in (b1, b2, bad):
        assert independent.snapshot_names(dom) == [], dom
        assert independent.domstate(dom) == 'shutoff'
    for dom in (b1, b2):
        assert independent.qemu_img_snapshots(independent.lab.disk_paths(dom)[0]) == [], dom


def test_revert_order_and_failure_policies(blank, independent, run_playbook, tmp_path):
    b1, b2, b3 = (blank(f'grp-r{i}', state='shutoff') for i in (1, 2, 3))
    members = [{'domain': b1}, {'domain': b2}, {'domain': b3, 'uri': URI2}]
    virsh = ['virsh', '-c', URI]
    # b2's image loses the snapshot behind libvirt's back: its revert fails (qemu-img cannot apply it)
    b2_disk = independent.lab.disk_paths(b2)[0]
    steps = [
        {'label': 'take', 'group': {'name': 'g', 'members': members}},
        {'label': 'start b1', 'argv': virsh + ['start', b1]},
        {'label': 'start b3', 'argv': virsh + ['start', b3]},
        {'label': 'break b2', 'argv': ['qemu-img', 'snapshot', '-d', 'g', b2_disk]},
        {'label': 'check', 'group': {'name': 'g', 'members': members, 'state': 'reverted', 'order': [b3, b2]},
         'check': True},
        {'label': 'all_or_none', 'group': {'name': 'g', 'members': members, 'state': 'reverted', 'order': [b3, b2]}},
        {'label': 'b3 after all_or_none', 'argv': virsh + ['domstate', b3]},
        {'label': 'best_effort', 'group': {'name': 'g', 'members': members, 'state': 'reverted',
                                           'failure_policy': 'best_effort'}},
    ]
    r = run_steps(run_playbook, tmp_path, steps)
    assert r['take']['changed'] and r['break b2']['rc'] == 0, r
    assert r['check']['changed'] and set(status(r['check']).values()) == {'reverted'}
    # all_or_none, b3 first: b3 reverted, then put back (its safety snapshot was taken running); b1 never touched
    failed = r['all_or_none']
    assert failed['failed'] and b2 in failed['msg'] and 'all_or_none' in failed['msg'], failed
    assert status(failed) == {b3: 'restored', b2: 'failed', b1: 'untouched'}, failed
    assert lines(r['b3 after all_or_none']) == ['running']
    safety = {m['domain']: m['safety_snapshot'] for m in failed['members']}
    assert all(safety.values()) and len(set(safety.values())) == 1
    # best_effort: the others are reverted to the group's (shut-off) state
    failed = r['best_effort']
    assert failed['failed'] and status(failed) == {b1: 'reverted', b2: 'failed', b3: 'reverted'}, failed
    assert {m['domain']: m['state_after'] for m in failed['members']} == {b1: 'shutoff', b2: 'shutoff', b3: 'shutoff'}
    for dom in (b1, b3):
        assert independent.domstate(dom) == 'shutoff'
        assert independent.current(dom) == 'g'
        # two safety snapshots, one per run, each of the running state
        names = [n for n in independent.snapshot_names(dom) if n.startswith('g-safety-')]
        assert len(names) == 2 and all(independent.snapshot_info(dom, n)['State'] == 'running' for n in names)


def test_agent_freeze_and_pause_with_a_real_guest(guest, blank, independent, lab, run_playbook, tmp_path):
    off = blank('grp-off', state='shutoff')
    mute = blank('grp-mute', state='running')  # an agent channel, and no agent behind it
    # location external: the one kind a running member gets with freeze agent on both stacks (auto would pause
    # on libvirt 9.0, which cannot revert external snapshots)
    agent = {'name': 'ga', 'members': [{'domain': guest}, {'domain': off, 'uri': URI2}], 'location': 'external'}
    paused = {'name': 'gp', 'members': [{'domain': guest}, {'domain': mute}]}
    steps = [
        {'label': 'agent', 'group': agent},
        {'label': 'agent absent', 'group': dict(agent, state='absent')},
        {'label': 'fallback', 'group': paused},
        {'label': 'fallback absent', 'group': dict(paused, state='absent')},
    ]
    r = run_steps(run_playbook, tmp_path, steps)
    frozen = r['agent']
    assert frozen['changed'] and not frozen.get('failed') and frozen['freeze_used'] == 'agent', frozen
    by_domain = {m['domain']: m for m in frozen['members']}
    assert by_domain[guest]['kind'] == {'location': 'external', 'memory': 'no'}
    assert 0 < by_domain[guest]['window_ms'] <= frozen['window_ms'] and by_domain[off]['window_ms'] == 0
    assert not r['agent absent'].get('failed') and status(r['agent absent']) == {guest: 'deleted', off: 'deleted'}
    fallback = r['fallback']
    assert fallback['freeze_used'] == 'pause' and not fallback.get('failed'), fallback
    assert any(mute in w and 'paused instead' in w for w in fallback.get('warnings', [])), fallback
    assert all(m['window_ms'] > 0 and m['state_after'] == 'running' for m in fallback['members']), fallback
    assert all(m['kind']['memory'] != 'no' for m in fallback['members'])
    assert not r['fallback absent'].get('failed'), r['fallback absent']
    # everything thawed and resumed, nothing left
    assert lab.agent_command(guest, {'execute': 'guest-fsfreeze-status'}) == 'thawed'
    for dom in (guest, mute):
        assert independent.domstate(dom) == 'running'
    for dom in (guest, off, mute):
        assert independent.snapshot_names(dom) == [], dom
    assert independent.blklist(guest) == {'vda': f'{lab.run_dir}/{guest}.vda.qcow2'}
