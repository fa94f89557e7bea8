# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The playbooks run by ansible-runner, the library AWX / Automation Controller run jobs with.

Each run is laid out as AWX lays out a job: a private data directory with a project whose playbook imports the
collection's playbook by its FQCN (``import_playbook: kvm.snapshots.guarded_change``), an inventory (the
collection's inventory contract) and extra vars; the collection is found on the collections path, as in an
execution environment. What an operator sees in AWX is read from the job events alone (runner_on_ok,
runner_on_failed, playbook_on_stats and its artifact_data, AWX's job artifacts); virsh checks the result.

Cheap on purpose: blank domains (no guest boots), running ones for the guarded change (Ansible reaches the guests
with the local connection; the change itself is a task that fails on one guest), shut-off ones for the hypervisor
playbook.
"""

from __future__ import annotations

import json
import pathlib
import sys
import typing as t

import ansible_runner
import pytest

from conftest import URI
# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, current_snapshot, snapshot_names  # noqa: F401  # pylint: disable=unused-import

pytestmark = pytest.mark.filterwarnings('ignore::DeprecationWarning')

LOCAL = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}


class Job:
    """One ansible-runner run and its job events."""

    def __init__(self, runner: t.Any) -> None:
        self.runner = runner
        self.status = runner.status
        self.rc = runner.rc
        self.events = list(runner.events)
        self.stdout = runner.stdout.read()

    def __repr__(self) -> str:
        return f'<ansible-runner {self.status} rc={self.rc}>\n{self.stdout[-12000:]}'

    def results(self, event: str, task: str) -> dict[str, dict[str, t.Any]]:
        """{host: res} of the events of one kind (runner_on_ok, runner_on_failed) for one task."""
        found = {}
        for ev in self.events:
            data = ev.get('event_data', {})
            if ev['event'] == event and data.get('task') == task:
                assert data['host'] not in found, f'two {event} events of {task!r} for {data["host"]}'
                found[data['host']] = data['res']
        return found

    def stats(self) -> dict[str, t.Any]:
        """The event_data of the run's playbook_on_stats event (counters per host, artifact_data)."""
        stats = [ev['event_data'] for ev in self.events if ev['event'] == 'playbook_on_stats']
        assert len(stats) == 1, self
        return stats[0]


@pytest.fixture
def run_job(ansible_env: dict[str, str], tmp_path: pathlib.Path) -> t.Callable[..., Job]:
    """run_job(playbook FQCN, inventory dict, extravars, files={}): one AWX-like job. Its project holds ``files``
    (path: text) and site.yml, which imports the playbook (as the README shows)."""

    def run(playbook: str, inventory: dict[str, t.Any], extravars: dict[str, t.Any],
            files: dict[str, str] | None = None) -> Job:
        private = tmp_path / f'job-{len(list(tmp_path.glob("job-*")))}'
        project = private / 'project'
        project.mkdir(parents=True)
        for name, text in (files or {}).items():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            (project / name).write_text(text)
        # what an AWX project holds to run a playbook of the collection (JSON is YAML)
        (project / 'site.yml').write_text(json.dumps([{'name': f'Run {playbook}',
                                                       'ansible.builtin.import_playbook': playbook}]))
        # the collection on the collections path (an execution environment has it installed), this Python first
        env = dict(ansible_env, PATH=f'{pathlib.Path(sys.executable).parent}:{ansible_env["PATH"]}')
        runner = ansible_runner.run(private_data_dir=str(private), playbook='site.yml', inventory=inventory,
                                    extravars=dict({'kvm_uri': URI}, **extravars), envvars=env, quiet=True,
                                    timeout=600)
        return Job(runner)

    return run


def test_guarded_change_per_guest_results_in_job_events(lab, blank, run_job):
    """ok1's change works (accepted, its snapshot deleted), soak1's too (snapshot kept: kvm_soak), bad1's change
    fails (rolled back, then failed), gone1's domain does not exist (failed before any snapshot)."""
    doms = {name: blank(f'rn-{name}', state='running') for name in ('ok1', 'soak1', 'bad1')}
    # the change lives in the project, named by a path relative to it (the job's working directory; $PWD is not)
    change = ('---\n- name: Change the guest\n  ansible.builtin.fail:\n'
              "    msg: the change broke {{ inventory_hostname }}\n  when: inventory_hostname == 'bad1'\n")
    guests = {name: {'kvm_domain': dom} for name, dom in doms.items()}
    guests['soak1']['kvm_soak'] = '1d'
    guests['gone1'] = {'kvm_domain': lab.prefix + 'rn-no-such-domain'}
    inventory = {'all': {'children': {
        'hypervisors': {'hosts': {'localhost': LOCAL}},
        'kvm_guests': {'hosts': guests, 'vars': dict(LOCAL, kvm_hypervisor='localhost')},
    }}}
    job = run_job('kvm.snapshots.guarded_change', inventory, {
        'kvm_change_tasks': 'changes/break_bad1.yml', 'kvm_change_id': 'awx1', 'kvm_serial': ['100%'],
        'kvm_max_fail_percentage': 100, 'kvm_answer_timeout': 5, 'rollback_wait_for': 'none'},
        files={'changes/break_bad1.yml': change})
    assert (job.status, job.rc) == ('failed', 2), job

    # per guest, in the job events: the record task of each guest that got that far ...
    record = "Record the result of the guest for the job's stats"
    recorded = {host: res['ansible_stats']['data']['kvm_guarded_change'][host]
                for host, res in job.results('runner_on_ok', record).items()}
    assert set(recorded) == {'ok1', 'soak1', 'bad1'}, job
    for host, dom in doms.items():
        assert recorded[host]['domain'] == dom and recorded[host]['snapshot'] == 'pre-change-awx1'
        assert recorded[host]['taken'] is True, recorded[host]
    assert {h: r['result'] for h, r in recorded.items()} == {'ok1': 'accepted', 'soak1': 'soaking',
                                                             'bad1': 'rolled_back'}
    assert {h: (r['rolled_back'], r['failed'], r['snapshot_kept']) for h, r in recorded.items()} == {
        'ok1': (False, False, False), 'soak1': (False, False, True), 'bad1': (True, True, True)}
    assert recorded['bad1']['safety_snapshot'] == 'rollback-safety-awx1'
    assert 'the change broke bad1' in recorded['bad1']['failure']
    # ... and the failures, each with its reason
    failed = job.results('runner_on_failed', 'Fail the guest whose change was rolled back')
    assert set(failed) == {'bad1'} and 'rolled back to pre-change-awx1' in failed['bad1']['msg'], job
    gone = job.results('runner_on_failed',
                       'Fail when the domain cannot be read or its pre-change snapshot cannot be taken')
    assert set(gone) == {'gone1'} and 'is not known to' in gone['gone1']['msg'], job

    # the run's stats: counters per guest, and the results gathered over the guests (AWX's job artifacts)
    stats = job.stats()
    assert stats['failures'] == {'bad1': 1, 'gone1': 1}, stats
    assert stats['rescued'] == {'bad1': 1}, stats
    assert stats['artifact_data'] == {'kvm_guarded_change': recorded}, stats

    # virsh: what the events say
    assert snapshot_names(lab, doms['ok1']) == set()
    assert snapshot_names(lab, doms['soak1']) == {'pre-change-awx1'}
    assert snapshot_names(lab, doms['bad1']) == {'pre-change-awx1', 'rollback-safety-awx1'}
    assert current_snapshot(lab, doms['bad1']) == 'pre-change-awx1'
    assert lab.state(doms['bad1']) == 'running'


def test_hypervisor_snapshots_per_domain_results_in_job_events(lab, blank, run_job):
    """Two hypervisors (both this machine, each with its own domains): hv1's domains are all snapshotted; hv2 names
    one that does not exist, so its task fails after its other domain was done, and both show in its failed event.
    The blank fixture removes the domains with their snapshots."""
    d1, d2, d3 = (blank(f'rn-hv-{n}', state='shutoff') for n in ('a', 'b', 'c'))
    missing = lab.prefix + 'rn-hv-missing'
    inventory = {'all': {'children': {'hypervisors': {'hosts': {
        'hv1': dict(LOCAL, kvm_domains=[d1, d2]),
        'hv2': dict(LOCAL, kvm_domains=[d3, missing]),
    }}}}}
    task = 'Take the snapshot of every matching VM'
    job = run_job('kvm.snapshots.hypervisor_snapshots', inventory,
                  {'kvm_action': 'snapshot', 'kvm_snapshot_name': 'nightly-awx'})
    assert (job.status, job.rc) == ('failed', 2), job

    ok = job.results('runner_on_ok', task)
    assert set(ok) == {'hv1'}, job
    assert {r['domain']: (r['changed'], r['failed']) for r in ok['hv1']['results']} == {
        d1: (True, False), d2: (True, False)}
    failed = job.results('runner_on_failed', task)
    assert set(failed) == {'hv2'}, job
    per_domain = {r['domain']: r for r in failed['hv2']['results']}
    assert set(per_domain) == {d3, missing}, failed['hv2']
    assert (per_domain[d3]['changed'], per_domain[d3]['failed']) == (True, False)
    assert per_domain[missing]['failed'] is True and per_domain[missing]['msg'], per_domain[missing]
    assert '1 of 2 domains failed' in failed['hv2']['msg']
    stats = job.stats()
    assert stats['failures'] == {'hv2': 1} and stats['changed'] == {'hv1': 1}, stats
    for dom in (d1, d2, d3):
        assert snapshot_names(lab, dom) == {'nightly-awx'}, dom
