# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""hypervisor_jobs in the modules that run snapshot jobs: a job that gets no turn changes nothing, and
check mode, look-ups and runs that change nothing never wait for one."""

from __future__ import annotations

import time

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _jobs
from ansible_collections.kvm.snapshots.plugins.modules import snapshot, snapshot_prune, snapshot_revert

TEST_URI = 'test:///default'
BASE_EPOCH = 1795161600


@pytest.fixture
def held(tmp_path, monkeypatch):
    """The one slot of test:///default under hypervisor_jobs=1, held by "another run" for the test."""
    monkeypatch.setattr(_jobs, 'lock_dir', lambda: str(tmp_path))
    jobs = _jobs.HypervisorJobs(TEST_URI, 1, 5, directory=str(tmp_path))
    with jobs.slot('another run'):
        yield


LIMIT = {'hypervisor_jobs': 1, 'hypervisor_jobs_timeout': 1}


def names(dom):
    return sorted(s.getName() for s in dom.listAllSnapshots(0))


def test_snapshot_waits_then_fails_and_takes_nothing(run_failing, make_domain, held):
    dom = make_domain('running')
    started = time.monotonic()
    result = run_failing(snapshot, dict(LIMIT, domain=dom.name(), name='n'))
    assert 0.5 <= time.monotonic() - started < 10  # it waited for its turn, about the timeout
    assert 'hypervisor_jobs=1' in result['msg'] and 'Nothing was changed' in result['msg'], result['msg']
    assert result['msg'].startswith(f'Snapshot "n" of domain "{dom.name()}"')
    assert names(dom) == []


def test_check_mode_and_no_op_runs_do_not_wait(run_module, make_domain, add_snapshot, held):
    dom = make_domain('running')
    add_snapshot(dom, 'n', BASE_EPOCH)
    started = time.monotonic()
    assert run_module(snapshot, dict(LIMIT, domain=dom.name(), name='new'), check=True)['changed'] is True
    assert run_module(snapshot, dict(LIMIT, domain=dom.name(), name='n'))['changed'] is False
    assert run_module(snapshot, dict(LIMIT, domain=dom.name(), name='gone', state='absent'))['changed'] is False
    assert run_module(snapshot_prune, dict(LIMIT, domain=dom.name(), match='other-*', keep_last=0))['changed'] is False
    assert run_module(snapshot_revert, dict(LIMIT, domain=dom.name(), name='n'), check=True)['changed'] is True
    assert time.monotonic() - started < 1
    assert names(dom) == ['n']


def test_delete_and_prune_get_no_turn_and_delete_nothing(run_failing, make_domain, add_snapshot, held):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'old-1', BASE_EPOCH)
    add_snapshot(dom, 'old-2', BASE_EPOCH + 1, parent='old-1', current=True)
    deleted = run_failing(snapshot, dict(LIMIT, domain=dom.name(), name='old-2', state='absent'))
    assert deleted['msg'].startswith(f'Deleting snapshot "old-2" of domain "{dom.name()}"')
    pruned = run_failing(snapshot_prune, dict(LIMIT, domain=dom.name(), match='old-*', keep_last=0))
    assert pruned['msg'].startswith(f'Pruning the snapshots of domain "{dom.name()}"')
    assert pruned['deleted'] == []
    assert names(dom) == ['old-1', 'old-2']


def test_revert_gets_no_turn_and_takes_no_safety_snapshot(run_failing, make_domain, add_snapshot, held):
    dom = make_domain('running')
    add_snapshot(dom, 'n', BASE_EPOCH, current=True)
    result = run_failing(snapshot_revert, dict(LIMIT, domain=dom.name(), name='n', safety_snapshot='safety'))
    assert result['msg'].startswith(f'Reverting domain "{dom.name()}" to snapshot "n"')
    assert names(dom) == ['n']
    assert dom.state(0)[0] == 1  # still running


def test_batch_counts_its_own_workers(run_module, make_domain, tmp_path, monkeypatch):
    """With the slot free, a batch with parallel 4 under hypervisor_jobs=1 takes every snapshot, one at a time."""
    monkeypatch.setattr(_jobs, 'lock_dir', lambda: str(tmp_path))
    doms = [make_domain('running') for _count in range(4)]
    result = run_module(snapshot, dict(LIMIT, hypervisor_jobs_timeout=30, domains=[d.name() for d in doms],
                                       name='n', parallel=4))
    assert [r['changed'] for r in result['results']] == [True] * 4
    assert all(names(d) == ['n'] for d in doms)
