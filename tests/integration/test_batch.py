# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch mode through the hypervisor playbook (playbooks/hypervisor_snapshots.yml) on real lab domains.

The play's host is the hypervisor (this machine, local connection); it
snapshots, prunes and cleans up every matching domain in one task each.
Each step runs the real playbook with ``-v``, reads the module's result
from the output, and checks the domains with ``virsh snapshot-list``:
check mode predicts and changes nothing, the real run makes the change, a
re-run changes nothing; a missing domain fails the task while the other
domains are done and reported; globs pick only the matching domains.
"""

from __future__ import annotations

import json
import pathlib
import re
import typing as t

import pytest

import lab as lab_tool  # tests/lab/lab.py (on the path through conftest.py)
from test_modules_common import blank, independent  # noqa: F401  # pylint: disable=unused-import

PLAYBOOK = pathlib.Path(__file__).resolve().parents[2] / 'playbooks' / 'hypervisor_snapshots.yml'
SNAPSHOT_TASK = 'Take the snapshot of every matching VM'
PRUNE_TASK = 'Prune old snapshots of every matching VM'
CLEANUP_TASK = 'Delete the snapshot from every matching VM'
REPORT_TASK = 'Show what was done on each VM'


def task_results(run: t.Any, task: str) -> list[dict[str, t.Any]]:
    """The results that ``ansible-playbook -v`` printed for the task called ``task``, one a host."""
    found = []
    for block in run.stdout.split('\nTASK [')[1:]:
        title, _sep, body = block.partition(']')
        if title != task:
            continue
        for match in re.finditer(r'^(?:ok|changed|fatal|failed): \[[^\]]+\](?:: FAILED!)? => ', body, re.M):
            found.append(json.JSONDecoder().raw_decode(body[match.end():])[0])
    assert found, f'no result of task "{task}" in the output:\n{run!r}'
    return found


def result_of(run: t.Any, task: str) -> dict[str, t.Any]:
    [result] = task_results(run, task)
    return result


def by_domain(result: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    return {r['domain']: r for r in result['results']}


def test_snapshot_then_cleanup_check_real_rerun(lab, blank, independent, run_playbook):
    web = [blank(f'hv-web-{i}') for i in (1, 2, 3)]
    other = blank('hv-db-1')
    snapshot = {'kvm_target': 'all', 'kvm_action': 'snapshot', 'kvm_domains': [f'{lab.prefix}hv-web-*'],
                'kvm_snapshot_name': 'nightly-1', 'kvm_snapshot_description': 'Before <the> "patch" & reboot'}

    # check mode: predicts a snapshot of each matching domain, makes none
    run = run_playbook(PLAYBOOK, snapshot, check=True, args=['-v'])
    result = result_of(run, SNAPSHOT_TASK)
    assert result['changed'] and result['unmatched'] == []
    assert sorted(by_domain(result)) == sorted(web)
    assert all(r['changed'] and not r['failed'] and r['snapshot']['name'] == 'nightly-1' for r in result['results'])
    assert [independent.snapshot_names(d) for d in web + [other]] == [[], [], [], []]
    assert 'would change: ' in run.stdout

    # the real run: each matching domain, and only those, has the snapshot
    result = result_of(run_playbook(PLAYBOOK, snapshot, args=['-v']), SNAPSHOT_TASK)
    assert result['changed'] and all(r['changed'] for r in result['results'])
    for dom in web:
        assert independent.snapshot_names(dom) == ['nightly-1']
        assert independent.snapshot_xml(dom, 'nightly-1').findtext('description') == snapshot['kvm_snapshot_description']
        assert by_domain(result)[dom]['snapshot']['state'] == 'running'
    assert independent.snapshot_names(other) == []

    # re-runs, in check mode and for real: nothing to do
    for check in (True, False):
        run = run_playbook(PLAYBOOK, snapshot, check=check, args=['-v'])
        result = result_of(run, SNAPSHOT_TASK)
        assert not result['changed'] and not any(r['changed'] for r in result['results']), check
        assert run.recap()['localhost']['changed'] == 0
    assert [independent.snapshot_names(d) for d in web] == [['nightly-1']] * 3

    # cleanup: check mode predicts, the real run deletes, the re-run has nothing left to delete
    cleanup = dict(snapshot, kvm_action='cleanup')
    result = result_of(run_playbook(PLAYBOOK, cleanup, check=True, args=['-v']), CLEANUP_TASK)
    assert result['changed'] and all(r['deleted'] == ['nightly-1'] for r in result['results'])
    assert [independent.snapshot_names(d) for d in web] == [['nightly-1']] * 3
    result = result_of(run_playbook(PLAYBOOK, cleanup, args=['-v']), CLEANUP_TASK)
    assert result['changed'] and all(r['deleted'] == ['nightly-1'] for r in result['results'])
    assert [independent.snapshot_names(d) for d in web + [other]] == [[], [], [], []]
    run = run_playbook(PLAYBOOK, cleanup, args=['-v'])
    result = result_of(run, CLEANUP_TASK)
    assert not result['changed'] and all(r['deleted'] == [] for r in result['results'])
    assert 'snapshots deleted: 0' in json.dumps(result_of(run, REPORT_TASK))


def test_missing_domain_fails_the_task_after_the_others(lab, blank, independent, run_playbook):
    doms = [blank('hv-some-1'), blank('hv-some-2')]
    missing, nomatch = f'{lab.prefix}hv-missing', f'{lab.prefix}hv-nomatch-*'
    run = run_playbook(PLAYBOOK, {
        'kvm_target': 'all', 'kvm_action': 'snapshot', 'kvm_snapshot_name': 'nightly-1',
        'kvm_domains': [doms[0], missing, doms[1], nomatch]}, args=['-v'], expect_rc=2)
    result = result_of(run, SNAPSHOT_TASK)  # the callback leaves 'failed' out of a failed task's result
    assert 'fatal: [localhost]: FAILED!' in run.stdout and result['changed']
    assert result['msg'].startswith('1 of 3 domains failed') and missing in result['msg']
    assert result['unmatched'] == [nomatch]
    results = by_domain(result)
    assert list(results) == [doms[0], missing, doms[1]]
    assert results[missing]['failed'] and 'does not exist' in results[missing]['msg']
    for dom in doms:
        assert results[dom]['changed'] and not results[dom]['failed']
        assert independent.snapshot_names(dom) == ['nightly-1']
    assert run.recap()['localhost']['failed'] == 1


def test_disk_only_auto_takes_memory_where_no_disk_only_snapshot_fits_and_says_why(
        lab, blank, independent, run_playbook):
    # blank domains: SeaBIOS idles, so a running one has an agent channel but no agent that answers
    running, shutoff = blank('hv-auto-run'), blank('hv-auto-off', state='shutoff')
    extra = {'kvm_target': 'all', 'kvm_action': 'snapshot', 'kvm_snapshot_name': 'auto-1',
             'kvm_domains': [f'{lab.prefix}hv-auto-*'], 'kvm_disk_only': 'auto', 'kvm_agent_timeout': 1}
    run = run_playbook(PLAYBOOK, extra, args=['-v'])
    results = by_domain(result_of(run, SNAPSHOT_TASK))
    why_running = ('cannot revert a disk-only snapshot' if lab_tool.libvirt_version(lab.uri)[:2] < (9, 9)
                   else 'the guest agent does not answer')
    assert why_running in results[running]['kind']['choice']
    assert results[shutoff]['kind']['choice'] == 'the domain is not running'
    # what libvirt holds (virsh): the running domain's memory is in the snapshot, no disk got an overlay
    for dom, state in ((running, 'running'), (shutoff, 'shutoff')):
        assert results[dom]['changed'] and independent.snapshot_names(dom) == ['auto-1']
        xml = independent.snapshot_xml(dom, 'auto-1')
        assert xml.findtext('state') == state
        assert [disk.get('snapshot') for disk in xml.find('disks')] == ['internal']
    assert independent.snapshot_xml(running, 'auto-1').find('memory').get('snapshot') == 'internal'
    report = json.dumps(result_of(run, REPORT_TASK))
    assert f'{shutoff} internal, memory {results[shutoff]["kind"]["memory"]} (the domain is not running)' in report
    assert f'{running} internal, memory internal ({results[running]["kind"]["choice"]})' in report
    # without kvm_disk_only the playbook does as before: no choice, no kind in the report
    plain = {k: v for k, v in extra.items() if k != 'kvm_disk_only'}
    run = run_playbook(PLAYBOOK, dict(plain, kvm_snapshot_name='plain-1'), args=['-v'])
    assert 'choice' not in by_domain(result_of(run, SNAPSHOT_TASK))[running]['kind']
    assert ', memory ' not in json.dumps(result_of(run, REPORT_TASK))


def test_prune_in_batch(lab, blank, independent, run_playbook):
    doms = [blank(f'hv-prune-{i}') for i in (1, 2, 3)]
    for dom in doms:
        for name in ('nightly-1', 'nightly-2', 'nightly-3', 'keep-me'):
            independent.virsh('snapshot-create-as', dom, name)
    prune = {'kvm_target': 'all', 'kvm_action': 'prune', 'kvm_domains': f'{lab.prefix}hv-prune-*',
             'kvm_prune_match': 'nightly-*', 'kvm_prune_keep_last': 1}

    result = result_of(run_playbook(PLAYBOOK, prune, check=True, args=['-v']), PRUNE_TASK)
    assert result['changed'] and sorted(by_domain(result)) == sorted(doms)
    for res in result['results']:
        assert [d['name'] for d in res['deleted']] == ['nightly-1', 'nightly-2']
        assert [k['name'] for k in res['kept']] == ['nightly-3']
    assert [independent.snapshot_names(d) for d in doms] == [['keep-me', 'nightly-1', 'nightly-2', 'nightly-3']] * 3

    result = result_of(run_playbook(PLAYBOOK, prune, args=['-v']), PRUNE_TASK)
    assert result['changed'] and all(len(r['deleted']) == 2 for r in result['results'])
    assert [independent.snapshot_names(d) for d in doms] == [['keep-me', 'nightly-3']] * 3

    run = run_playbook(PLAYBOOK, prune, args=['-v'])
    result = result_of(run, PRUNE_TASK)
    assert not result['changed'] and all(r['deleted'] == [] for r in result['results'])
    assert run.recap()['localhost']['changed'] == 0
    assert [independent.snapshot_names(d) for d in doms] == [['keep-me', 'nightly-3']] * 3


@pytest.mark.parametrize(('extra', 'message'), [
    ({'kvm_action': 'prune', 'kvm_prune_match': 'nightly-*'},
     "kvm_action=prune needs kvm_prune_match (a glob of snapshot names, '*' for all) and at least one of "
     'kvm_prune_keep_last, kvm_prune_keep_hourly'),
    ({'kvm_action': 'snap'}, "Set kvm_action to snapshot, prune or cleanup (-e kvm_action=snapshot), not 'snap'."),
    ({'kvm_action': 'cleanup'}, 'kvm_action=cleanup needs the snapshot name: -e kvm_snapshot_name=NAME.'),
    ({'kvm_action': 'snapshot', 'kvm_snapshot_name': 'n', 'kvm_domains': []},
     "kvm_domains is empty; give names or globs of VMs ('*' for every VM)."),
    ({'kvm_action': 'snapshot', 'kvm_snapshot_name': 'n', 'kvm_disk_only': 'sometimes'},
     'kvm_disk_only ("sometimes") and kvm_quiesce ("false") must each be true, false or auto.'),
    ({'kvm_action': 'snapshot', 'kvm_snapshot_name': 'n', 'kvm_disk_only': 'auto', 'kvm_quiesce': 'maybe'},
     'kvm_disk_only ("auto") and kvm_quiesce ("maybe") must each be true, false or auto.'),
], ids=['prune-rule', 'action', 'name', 'domains', 'disk-only', 'quiesce'])
def test_variables_are_checked_before_anything_runs(run_playbook, extra, message):
    run = run_playbook(PLAYBOOK, {'kvm_target': 'all', **extra}, expect_rc=2)
    assert message in run.stdout, run
    for task in (SNAPSHOT_TASK, PRUNE_TASK, CLEANUP_TASK):
        assert f'TASK [{task}]' not in run.stdout
