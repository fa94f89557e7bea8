# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The batched snapshot phase of guarded_change.yml (pre_change_batch): one module run per hypervisor.

Four shut-off blank domains are the guests of two inventory hypervisors, hva and hvb (both this machine, local
connection: two groups to the role, as two real hypervisors would be), and a fifth on hva whose options are wrong. A
callback plugin written by the test records every task result Ansible makes (the task's module, the host it ran for,
the host it was delegated to, skipped or not, changed or not, the stats a task sets), so the test counts the runs of
each module, independently of the play's own output. The facts go to a jsonfile fact cache, which the test reads.
Results are checked with virsh. No guest boots.
"""

from __future__ import annotations

import json
import pathlib
import sys
import typing as t

import pytest

from test_modules_common import snapshot_names

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / 'playbooks'

# inventory guest -> its hypervisor
GUESTS = {'a1': 'hva', 'a2': 'hva', 'b1': 'hvb', 'b2': 'hvb'}

RECORDER = '''
from __future__ import annotations
import json, os
from ansible.plugins.callback import CallbackBase

class CallbackModule(CallbackBase):
    """Writes one JSON line per task result: module, host, delegated host, status."""
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'record_runs'
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, status):
        task = result._task
        delegated = (result._result.get('_ansible_delegated_vars') or {}).get('ansible_host')
        role = task._role.get_name(include_role_fqcn=False) if task._role else None
        row = {'action': task.action, 'name': task.name, 'role': role, 'host': result._host.get_name(),
               'delegate_to': task.delegate_to, 'delegated_host': delegated, 'status': status,
               'domains': (result._result.get('invocation') or {}).get('module_args', {}).get('domains'),
               'changed': bool(result._result.get('changed')), 'stats': result._result.get('ansible_stats')}
        with open(os.environ['RECORD_RUNS_FILE'], 'a', encoding='utf-8') as out:
            out.write(json.dumps(row) + '\\n')

    def v2_runner_on_ok(self, result):
        self._write(result, 'ok')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, 'failed')

    def v2_runner_on_skipped(self, result):
        self._write(result, 'skipped')

    def v2_runner_on_unreachable(self, result):
        self._write(result, 'unreachable')
'''

# The change: fails on the guest named by batch_break, does nothing elsewhere (no connection to the guests needed).
CHANGE = '''---
- name: Change nothing, or fail where asked
  ansible.builtin.fail:
    msg: the change failed on {{ inventory_hostname }}
  when: inventory_hostname == batch_break | default('')
'''


@pytest.fixture
def recorder(ansible_env: dict[str, str], tmp_path: pathlib.Path) -> tuple[dict[str, str], pathlib.Path]:
    plugins = tmp_path / 'callback_plugins'
    plugins.mkdir()
    (plugins / 'record_runs.py').write_text(RECORDER)
    runs = tmp_path / 'runs.jsonl'
    env = dict(ansible_env, ANSIBLE_CALLBACK_PLUGINS=str(plugins), ANSIBLE_CALLBACKS_ENABLED='record_runs',
               RECORD_RUNS_FILE=str(runs), ANSIBLE_CACHE_PLUGIN='jsonfile',
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(tmp_path / 'facts'), ANSIBLE_CACHE_PLUGIN_PREFIX='facts_')
    return env, runs


def task_results(path: pathlib.Path, name: str) -> dict[str, dict[str, t.Any]]:
    """{host: its result row} of the task ``name``."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {r['host']: r for r in rows if r['name'] == name}


def cached_facts(tmp_path: pathlib.Path, hosts: t.Iterable[str]) -> dict[str, dict[str, t.Any]]:
    """{host: its facts} of those of ``hosts`` that are in the jsonfile fact cache of the recorder fixture (a file
    each, named ``facts_`` + a marker of the cache's format + ``_<host>``)."""
    files = list((tmp_path / 'facts').iterdir())
    found = {host: [path for path in files if path.name.startswith('facts_') and path.name.endswith('_' + host)]
             for host in hosts}
    return {host: plain(json.loads(paths[0].read_text())) for host, paths in found.items() if len(paths) == 1}


def plain(value: t.Any) -> t.Any:
    """A cached value as plain JSON data: ansible-core 2.19 keeps the facts as a JSON document in ``__payload__``,
    each value tagged (``{"value": ..., "tags": ..., "__ansible_type": ...}``); 2.16 as they are."""
    if isinstance(value, dict):
        if '__payload__' in value:
            return plain(json.loads(value['__payload__']))
        if '__ansible_type' in value and 'value' in value:
            return plain(value['value'])
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def module_runs(path: pathlib.Path, action: str) -> list[dict[str, t.Any]]:
    """The runs of ``action`` that were not skipped."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if r['action'] == action and r['status'] != 'skipped']


def write_inventory(path: pathlib.Path, guests: dict[str, dict[str, t.Any]]) -> str:
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
    inventory = {'all': {'children': {
        'hypervisors': {'hosts': {'hva': local, 'hvb': local}},
        'kvm_guests': {'hosts': guests, 'vars': local},
    }}}
    path.write_text(json.dumps(inventory, indent=2))
    return str(path)


def test_one_module_run_per_hypervisor_and_each_guest_fails_alone(lab, run_playbook, recorder, tmp_path):
    """Batch of four guests on two hypervisors: one module run per hypervisor preflights and snapshots its domains.

    b2's disk image is gone (libvirt still lists the domain): its preflight passes, its snapshot fails in hvb's run,
    and b2 alone fails, with its own message; b1 of the same run goes on. a3's pre_change_disk_only
    is wrong: it is left out of hva's runs and fails alone with its message. a2's change fails: a2 is rolled back to
    its own pre-change snapshot (the fact the rollback role reads). The others are cleaned up.

    Each guest that went on has its own pre_change_snapshot fact (its own domain), set for the whole batch by one
    task (delegate_facts): in the play (the stats each guest records from it) and in the fact cache; each guest's
    recap counts its own new snapshot (the per-guest check reports it changed).
    """
    env, runs = recorder
    domains = {guest: lab.blank_domain(f'bp-{guest}', state='shutoff') for guest in [*GUESTS, 'a3']}
    try:
        disk = lab.disk_paths(domains['b2'])[0]
        pathlib.Path(disk).unlink()
        guests = {guest: {'kvm_domain': domains[guest], 'kvm_hypervisor': hv} for guest, hv in GUESTS.items()}
        guests['a3'] = {'kvm_domain': domains['a3'], 'kvm_hypervisor': 'hva', 'pre_change_disk_only': 'sometimes'}
        inventory = write_inventory(tmp_path / 'fleet.yml', guests)
        (tmp_path / 'change.yml').write_text(CHANGE)
        result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, env=env, expect_rc=2,
                              extra_vars={'kvm_change_tasks': str(tmp_path / 'change.yml'), 'kvm_change_id': 'bp1',
                                          'kvm_serial': ['100%'], 'kvm_max_fail_percentage': 75,
                                          'batch_break': 'a2'})
        recap = result.recap()

        # per-guest accounting: b2 (snapshot), a3 (options) and a2 (change, rolled back) failed, each alone
        assert {h for h, r in recap.items() if r['failed']} == {'a2', 'a3', 'b2'}, result
        check = task_results(runs, 'Fail when the domain cannot be read or its pre-change snapshot cannot be taken')
        assert {h: (r['status'], r['changed']) for h, r in check.items()} == {
            'a1': ('ok', True), 'a2': ('ok', True), 'b1': ('ok', True), 'b2': ('failed', False),
            'a3': ('failed', False)}, check
        assert 'The pre-change snapshot pre-change-bp1 of b2 was not taken' in result.stdout, result
        assert f'Domain "{domains["b2"]}"' in result.stdout or domains['b2'] in result.stdout, result
        assert 'pre_change_disk_only ("sometimes") and pre_change_quiesce ("auto") must each be auto, true or false.' \
            ' Nothing was changed.' in result.stdout, result

        # each guest that went on has its own fact: in the play (the stats it records from it) and in the cache
        stats = task_results(runs, "Record the result of the guest for the job's stats")
        assert sorted(stats) == ['a1', 'a2', 'b1'], stats
        facts = cached_facts(tmp_path, [*GUESTS, 'a3'])
        for guest in ('a1', 'a2', 'b1'):
            own = stats[guest]['stats']['data']['kvm_guarded_change'][guest]
            assert (own['domain'], own['snapshot'], own['taken']) == (domains[guest], 'pre-change-bp1', True), own
            cached = facts[guest]['pre_change_snapshot']
            assert (cached['domain'], cached['name'], cached['hypervisor'], cached['taken_now']) == \
                (domains[guest], 'pre-change-bp1', GUESTS[guest], True), cached
        assert 'pre_change_snapshot' not in facts.get('b2', {}) and 'pre_change_snapshot' not in facts.get('a3', {})

        # the pre-change phase runs one module, once on each of hva and hvb, with the domains of its guests (a3's
        # left out), and no other: no read before it, no per-guest run
        pre_change = [r for r in module_runs(runs, 'kvm.snapshots.snapshot') + module_runs(runs, 'kvm.snapshots.snapshot_info')
                      + module_runs(runs, 'kvm.snapshots.guest_agent') if r['role'] == 'pre_change']
        assert sorted((r['name'], r['delegate_to']) for r in pre_change) == [
            ('Take the pre-change snapshots of the group', 'hva'),
            ('Take the pre-change snapshots of the group', 'hvb')], pre_change
        for row in pre_change:
            hv_domains = sorted(domains[g] for g, hv in GUESTS.items() if hv == row['delegate_to'])
            assert sorted(row['domains']) == hv_domains, row

        # checked with virsh: rolled back a2 keeps its pre-change snapshot (and the safety snapshot of the broken
        # state); b2 has none; the others were cleaned up
        assert 'pre-change-bp1' in snapshot_names(lab, domains['a2']), snapshot_names(lab, domains['a2'])
        assert snapshot_names(lab, domains["b2"]) == set()
        assert snapshot_names(lab, domains['a3']) == set()
        for guest in ('a1', 'b1'):
            assert snapshot_names(lab, domains[guest]) == set(), guest
        assert 'rolled back to pre-change-bp1' in result.stdout, result
    finally:
        for dom in domains.values():
            lab.remove(dom)
