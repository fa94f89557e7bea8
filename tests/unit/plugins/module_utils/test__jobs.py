# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hypervisor_jobs limit: slots held with flock, counted per hypervisor, across threads and processes; and the
modules under it, on libvirt's test driver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _jobs
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
from ansible_collections.kvm.snapshots.plugins.modules import snapshot, snapshot_prune, snapshot_revert
from ansible_collections.kvm.snapshots.tests.unit.helpers import TEST_URI, snapshot_names


@pytest.mark.parametrize('uri, key', [
    ('qemu:///system', 'qemu:///system'),
    ('qemu://localhost/system', 'qemu:///system'),
    ('qemu+ssh://root@HV1:2222/system?keyfile=/k&no_tty=1', 'qemu://hv1/system'),
    ('qemu+tls://hv1/system', 'qemu://hv1/system'),
    ('qemu+ssh://admin:secret@hv2/system', 'qemu://hv2/system'),
    ('qemu:///session', 'qemu:///session'),
    ('test:///default', 'test:///default'),
    # a password urllib cannot read: the host is still hv1, and nothing of the password is in the key
    ('qemu+ssh://root:S3c/ret@hv1/system', 'qemu://hv1/system'),
    ('qemu+tcp://root:a@b#c?d@HV1:16509/system?x=1', 'qemu://hv1/system'),
])
def test_hypervisor_key(uri, key):
    assert _jobs.hypervisor_key(uri) == key


def test_no_limit_takes_no_slot(tmp_path):
    jobs = _jobs.HypervisorJobs('qemu:///system', 0, 1, directory=str(tmp_path))
    with jobs.slot('job') as waited:
        assert waited == 0.0
    assert not list(tmp_path.iterdir())


def _run_jobs(tmp_path, uris, limit, hold=0.15):
    """One thread per URI, each holding a slot for ``hold`` seconds; the most jobs seen at once per key."""
    lock = threading.Lock()
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    errors: list[BaseException] = []

    def job(uri):
        jobs = _jobs.HypervisorJobs(uri, limit, 30, directory=str(tmp_path))
        try:
            with jobs.slot('job'):
                with lock:
                    running[jobs.key] = running.get(jobs.key, 0) + 1
                    most[jobs.key] = max(most.get(jobs.key, 0), running[jobs.key])
                time.sleep(hold)
                with lock:
                    running[jobs.key] -= 1
        except BaseException as exc:  # pylint: disable=broad-exception-caught
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(uri,)) for uri in uris]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return most


def test_at_most_limit_jobs_at_once(tmp_path):
    most = _run_jobs(tmp_path, ['qemu:///system'] * 6, limit=2)
    assert most == {'qemu:///system': 2}


def test_hypervisors_count_apart(tmp_path):
    uris = ['qemu+ssh://hv1/system'] * 3 + ['qemu+tls://hv2/system'] * 3
    most = _run_jobs(tmp_path, uris, limit=1, hold=0.3)
    # one at a time on each hypervisor, and the two hypervisors at the same time
    assert most == {'qemu://hv1/system': 1, 'qemu://hv2/system': 1}


def test_waiting_too_long_fails_with_a_message(tmp_path):
    holder = _jobs.HypervisorJobs('qemu+ssh://root@hv1/system', 1, 30, directory=str(tmp_path))
    waiter = _jobs.HypervisorJobs('qemu+ssh://hv1/system', 1, 0.5, directory=str(tmp_path))
    with holder.slot('the first job'):
        started = time.monotonic()
        with pytest.raises(SnapshotError) as failed:
            with waiter.slot('Snapshot "n" of domain "web1"'):
                pytest.fail('got a slot that another job holds')
        assert time.monotonic() - started < 5
    msg = failed.value.msg
    assert msg.startswith('Snapshot "n" of domain "web1": 1 other job(s)')
    assert 'qemu://hv1/system' in msg and 'hypervisor_jobs=1' in msg and 'Nothing was changed' in msg
    # free again once the holder is done
    with waiter.slot('again') as waited:
        assert waited < 0.5


def test_a_killed_process_frees_its_slot(tmp_path):
    """flock goes with the process: a module killed while it holds a slot leaves nothing locked."""
    path = _jobs.HypervisorJobs('qemu:///system', 1, 0, directory=str(tmp_path))._paths()[0]
    holder = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-c', 'import fcntl, os, sys, time\n'
         f'fd = os.open({path!r}, os.O_RDWR | os.O_CREAT, 0o600)\n'
         'fcntl.flock(fd, fcntl.LOCK_EX)\nprint("locked", flush=True)\ntime.sleep(60)\n'],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(SnapshotError):
            with _jobs.HypervisorJobs('qemu:///system', 1, 0.2, directory=str(tmp_path)).slot('job'):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        with _jobs.HypervisorJobs('qemu:///system', 1, 0.2, directory=str(tmp_path)).slot('job') as waited:
            assert waited < 0.2
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        holder.stdout.close()


def test_slot_files_are_private(tmp_path):
    with _jobs.HypervisorJobs('qemu:///system', 2, 1, directory=str(tmp_path)).slot('job'):
        pass
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert len(modes) == 1 and set(modes.values()) == {0o600}, modes


def test_lock_dir_of_root(tmp_path, monkeypatch):
    monkeypatch.setattr(_jobs, 'SYSTEM_LOCK_DIR', str(tmp_path / 'lock' / 'kvm.snapshots'))
    monkeypatch.setattr(_jobs, '_is_root', lambda: True)
    (tmp_path / 'lock').mkdir()
    assert _jobs.lock_dir() == str(tmp_path / 'lock' / 'kvm.snapshots')


def test_lock_dir_of_an_unprivileged_user(tmp_path, monkeypatch):
    # /run/lock is writable by everyone on Debian, but root's folder in it is not: others use their own
    monkeypatch.setattr(_jobs, 'SYSTEM_LOCK_DIR', str(tmp_path / 'lock' / 'kvm.snapshots'))
    monkeypatch.setattr(_jobs, '_is_root', lambda: False)
    monkeypatch.setattr(_jobs.tempfile, 'gettempdir', lambda: str(tmp_path))
    (tmp_path / 'lock').mkdir()
    path = _jobs.lock_dir()
    assert path == str(tmp_path / f'kvm.snapshots-{os.geteuid()}')
    assert os.stat(path).st_mode & 0o777 == 0o700


def test_lock_dir_made_by_someone_else_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(_jobs, 'SYSTEM_LOCK_DIR', str(tmp_path / 'lock' / 'kvm.snapshots'))
    monkeypatch.setattr(_jobs, '_is_root', lambda: False)
    monkeypatch.setattr(_jobs.tempfile, 'gettempdir', lambda: str(tmp_path))
    (tmp_path / 'elsewhere').mkdir()
    (tmp_path / f'kvm.snapshots-{os.geteuid()}').symlink_to(tmp_path / 'elsewhere')
    with pytest.raises(SnapshotError, match='is not a folder of this user'):
        _jobs.lock_dir()


# hypervisor_jobs in the modules that run snapshot jobs: a job that gets no turn
# changes nothing, and check mode, look-ups and runs that change nothing never wait for one.

BASE_EPOCH = 1795161600


@pytest.fixture
def held(tmp_path, monkeypatch):
    """The one slot of test:///default under hypervisor_jobs=1, held by "another run" for the test."""
    monkeypatch.setattr(_jobs, 'lock_dir', lambda: str(tmp_path))
    jobs = _jobs.HypervisorJobs(TEST_URI, 1, 5, directory=str(tmp_path))
    with jobs.slot('another run'):
        yield


LIMIT = {'hypervisor_jobs': 1, 'hypervisor_jobs_timeout': 1}


def test_snapshot_waits_then_fails_and_takes_nothing(run_failing, make_domain, held):
    dom = make_domain('running')
    started = time.monotonic()
    result = run_failing(snapshot, dict(LIMIT, domain=dom.name(), name='n'))
    assert 0.5 <= time.monotonic() - started < 10  # it waited for its turn, about the timeout
    assert 'hypervisor_jobs=1' in result['msg'] and 'Nothing was changed' in result['msg'], result['msg']
    assert result['msg'].startswith(f'Snapshot "n" of domain "{dom.name()}"')
    assert snapshot_names(dom) == []


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
    assert snapshot_names(dom) == ['n']


def test_delete_and_prune_get_no_turn_and_delete_nothing(run_failing, make_domain, add_snapshot, held):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'old-1', BASE_EPOCH)
    add_snapshot(dom, 'old-2', BASE_EPOCH + 1, parent='old-1', current=True)
    deleted = run_failing(snapshot, dict(LIMIT, domain=dom.name(), name='old-2', state='absent'))
    assert deleted['msg'].startswith(f'Deleting snapshot "old-2" of domain "{dom.name()}"')
    pruned = run_failing(snapshot_prune, dict(LIMIT, domain=dom.name(), match='old-*', keep_last=0))
    assert pruned['msg'].startswith(f'Pruning the snapshots of domain "{dom.name()}"')
    assert pruned['deleted'] == []
    assert snapshot_names(dom) == ['old-1', 'old-2']


def test_revert_gets_no_turn_and_takes_no_safety_snapshot(run_failing, make_domain, add_snapshot, held):
    dom = make_domain('running')
    add_snapshot(dom, 'n', BASE_EPOCH, current=True)
    result = run_failing(snapshot_revert, dict(LIMIT, domain=dom.name(), name='n', safety_snapshot='safety'))
    assert result['msg'].startswith(f'Reverting domain "{dom.name()}" to snapshot "n"')
    assert snapshot_names(dom) == ['n']
    assert dom.state(0)[0] == 1  # still running


def test_batch_counts_its_own_workers(run_module, make_domain, tmp_path, monkeypatch):
    """With the slot free, a batch with parallel 4 under hypervisor_jobs=1 takes every snapshot, one at a time."""
    monkeypatch.setattr(_jobs, 'lock_dir', lambda: str(tmp_path))
    doms = [make_domain('running') for _count in range(4)]
    result = run_module(snapshot, dict(LIMIT, hypervisor_jobs_timeout=30, domains=[d.name() for d in doms],
                                       name='n', parallel=4))
    assert [r['changed'] for r in result['results']] == [True] * 4
    assert all(snapshot_names(d) == ['n'] for d in doms)


def test_slots_of_two_hypervisors_are_taken_all_at_once_or_not_at_all(tmp_path):
    """A group run that needs a slot of hv1 and one of hv2 does not sit on hv1's while hv2's is busy (two such runs
    would wait for each other); it gets both once hv2's is free."""
    hv1, hv2 = (_jobs.HypervisorJobs(f'qemu+ssh://root@{hv}/system', 1, 30, directory=str(tmp_path))
                for hv in ('hv1', 'hv2'))
    got = threading.Event()
    waits: list[float] = []

    def group_run():
        with _jobs.hold_slots([(hv1, 2), (hv2, 1)], 'Group snapshot "g"') as waited:  # 2: at most the limit, 1
            waits.append(waited)
            got.set()

    with hv2.slot('another run on hv2'):
        runner = threading.Thread(target=group_run)
        runner.start()
        time.sleep(0.3)
        # meanwhile hv1's one slot is free for others (a look between two of the group run's tries)
        with _jobs.HypervisorJobs('qemu+ssh://root@hv1/system', 1, 2, directory=str(tmp_path)).slot('a run on hv1'):
            assert not got.is_set()
    runner.join(10)
    assert got.is_set() and waits[0] > 0.3


def test_slots_without_a_limit_are_not_taken(tmp_path):
    unlimited = _jobs.HypervisorJobs('qemu:///system', 0, 1, directory=str(tmp_path))
    with _jobs.hold_slots([(unlimited, 3)], 'job') as waited:
        assert waited == 0.0
    assert not list(tmp_path.iterdir())
