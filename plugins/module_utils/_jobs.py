# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""A limit on the jobs that run at once against one hypervisor, across module runs.

Ansible's ``throttle`` counts the tasks of a play's batch, whatever hypervisor
each guest is on. This limit counts the jobs (snapshot, revert, delete) that
kvm.snapshots modules run at once against one hypervisor: each job holds one
of ``limit`` slots, lock files on the machine that runs the modules (the
hypervisor itself, or the controller that reaches it by a remote URI), named
after the hypervisor of the URI. ``flock`` locks go with the process that holds
them, so a module that is killed frees its slot at once: nothing is ever left
locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
import tempfile
import time
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    OptionGroup,
    SnapshotError,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._uri import parse_uri

JOBS_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    'hypervisor_jobs': {'type': 'int', 'default': 0},
    'hypervisor_jobs_timeout': {'type': 'int', 'default': 3600},
}
JOBS_OPTIONS = OptionGroup(JOBS_ARGUMENT_SPEC)  # documented by kvm.snapshots._libvirt.jobs

# Where the slots live: /run/lock for root (the usual user of a hypervisor's libvirt), else a folder of
# the user's own in the temporary directory. Runs of different users do not count against each other.
SYSTEM_LOCK_DIR = '/run/lock/kvm.snapshots'


def hypervisor_key(uri: str) -> str:
    """What names the hypervisor of a URI: its host (empty for this machine) and path, without the
    transport, user, port or query, so that qemu+ssh:// and qemu+tls:// to one host count together."""
    parts = parse_uri(uri)  # not urlsplit: it takes a password holding "/", "#", "?" or "@" for the host
    host = parts.host.lower()
    if host == 'localhost':
        host = ''
    driver = (parts.scheme or '').split('+', 1)[0].lower()
    path = parts.rest.split('?', 1)[0].split('#', 1)[0]
    return f'{driver}://{host}{path or "/"}'


def _is_root() -> bool:
    return os.geteuid() == 0


def lock_dir() -> str:
    """The folder of the slot files, made on first use (mode 0700 when it is the user's own)."""
    if _is_root() and os.path.isdir(os.path.dirname(SYSTEM_LOCK_DIR)):
        path, mode = SYSTEM_LOCK_DIR, 0o755
    else:
        path, mode = os.path.join(tempfile.gettempdir(), f'kvm.snapshots-{os.geteuid()}'), 0o700
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise SnapshotError(f'Cannot make the folder {path} for the hypervisor_jobs limit: {exc.strerror}. '
                            'Leave hypervisor_jobs at 0, or make the folder writable.') from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        # in a shared temporary directory, another user may have made it first
        raise SnapshotError(f'{path}, the folder for the hypervisor_jobs limit, is not a folder of this user '
                            f'(uid {os.geteuid()}); remove it, or leave hypervisor_jobs at 0.')
    return path


class HypervisorJobs:
    """At most ``limit`` jobs at once against the hypervisor of ``uri``; ``limit`` 0 or less: no limit.

    ``slot()`` waits, for up to ``timeout`` seconds, until fewer than ``limit`` jobs hold one.
    """

    POLL_MIN = 0.05
    POLL_MAX = 1.0

    def __init__(self, uri: str, limit: int, timeout: float, directory: str | None = None) -> None:
        self.uri = uri
        self.limit = limit
        self.timeout = timeout
        self.key = hypervisor_key(uri)
        self._directory = directory

    def _paths(self) -> list[str]:
        directory = self._directory or lock_dir()
        digest = hashlib.sha256(self.key.encode('utf-8')).hexdigest()[:16]
        return [os.path.join(directory, f'{digest}.{index}.lock') for index in range(self.limit)]

    @staticmethod
    def _try_lock(path: str) -> int | None:
        """An open, locked descriptor of ``path``; None when another job holds it."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return None
            raise
        return fd

    def _try_take(self, count: int) -> list[int] | None:
        """``count`` slots, locked, when so many are free; else None, holding nothing."""
        held: list[int] = []
        for path in self._paths():
            if len(held) == count:
                break
            try:
                fd = self._try_lock(path)
            except OSError as exc:
                _release(held)
                raise SnapshotError(f'Cannot use {path} for the hypervisor_jobs limit: {exc.strerror}. '
                                    'Leave hypervisor_jobs at 0, or make the file usable.') from None
            if fd is not None:
                held.append(fd)
        if len(held) < count:
            _release(held)
            return None
        return held

    def slot(self, what: str) -> t.ContextManager[float]:
        """Hold a slot for the block; yields the seconds waited for it. ``what``: the job, for messages."""
        return hold_slots([(self, 1)], what)


def _release(fds: list[int]) -> None:
    for fd in fds:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def hold_slots(wanted: list[tuple[HypervisorJobs, int]], what: str) -> t.Iterator[float]:
    """Hold, for the block, ``count`` slots of each hypervisor in ``wanted`` (at most its limit; none where it has
    no limit), all at once or none: a run that needs slots of two hypervisors never holds one while it waits for
    the other, so two such runs cannot wait for each other. Yields the seconds waited; gives up after the first
    hypervisor's timeout."""
    wanted = [(jobs, min(count, jobs.limit)) for jobs, count in wanted if jobs.limit > 0 and count > 0]
    if not wanted:
        yield 0.0
        return
    started = time.monotonic()
    delay = HypervisorJobs.POLL_MIN
    while True:
        held: list[int] = []
        busy = None
        for jobs, count in wanted:
            fds = jobs._try_take(count)  # pylint: disable=protected-access  # the one user beside the class
            if fds is None:
                busy = jobs
                break
            held += fds
        if busy is None:
            try:
                yield time.monotonic() - started
            finally:
                _release(held)
            return
        _release(held)
        waited = time.monotonic() - started
        if waited + delay > wanted[0][0].timeout:
            raise SnapshotError(
                f'{what}: {busy.limit} other job(s) of kvm.snapshots modules kept the hypervisor of '
                f'{busy.key} busy for {waited:.0f} seconds (hypervisor_jobs={busy.limit}), so this one was not '
                f'started. Nothing was changed. Re-run when they are done, or raise hypervisor_jobs or '
                'hypervisor_jobs_timeout.')
        time.sleep(delay)
        delay = min(delay * 2, HypervisorJobs.POLL_MAX)


def job_slot(client: t.Any, what: str) -> t.ContextManager[float]:
    """A slot under the module's ``hypervisor_jobs`` limit for one job that changes something; no wait in
    check mode, or when the module has no limit."""
    params = client.params
    limit = params.get('hypervisor_jobs') or 0
    if client.check_mode or limit <= 0:
        return contextlib.nullcontext(0.0)
    return HypervisorJobs(client.uri, limit, params.get('hypervisor_jobs_timeout') or 0).slot(what)
