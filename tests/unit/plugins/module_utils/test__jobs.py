# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hypervisor_jobs limit: slots held with flock, counted per hypervisor, across threads and processes."""

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
