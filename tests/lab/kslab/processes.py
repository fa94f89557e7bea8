# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Processes, read from /proc, and libvirt jobs held in the middle: what the fault tests race against.

To hold a libvirt job "in the middle" for as long as a test needs, a test freezes the domain's QEMU process
(SIGSTOP) while libvirt waits for it (``frozen_mid_job``), and thaws it (SIGCONT) when the other side of the race
is in place. ``BusyWatch`` counts, from libvirt directly, how many domains have a job at the same time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import typing as t

from .common import _libvirt

CONTROL_OK = 0  # virDomainControlState: no job


def wait_until(predicate: t.Callable[[], t.Any], timeout: float, what: str, step: float = 0.02) -> t.Any:
    """Poll predicate until it returns something true (returned); AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(step)


# /proc

def pids() -> list[int]:
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None when the process is gone."""
    try:
        with open(f'/proc/{pid}/stat', encoding='utf-8') as handle:
            return handle.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_state(pid: int | str) -> str | None:
    fields = proc_stat(pid)
    return fields[0] if fields else None


def cpu_ticks(pid: int) -> int:
    fields = proc_stat(pid)
    assert fields, f'process {pid} is gone'
    return int(fields[11]) + int(fields[12])  # utime + stime


def process_idle(pid: int, window: float = 1.0) -> bool:
    """Whether a process used no CPU for ``window`` seconds and waits for no disk (state D) at its end."""
    before = cpu_ticks(pid)
    time.sleep(window)
    return cpu_ticks(pid) == before and proc_state(pid) != 'D'


def pid_alive(pid: int) -> bool:
    """A live process (a zombie that its parent did not reap yet counts as gone)."""
    return proc_state(pid) not in (None, 'Z', 'X')


def owner(pid: int) -> int | None:
    """The uid owning a process; None when it is gone."""
    try:
        return os.stat(f'/proc/{pid}').st_uid
    except OSError:
        return None


def process_tree(root: int) -> list[int]:
    """The pids of root and all its descendants (children before parents)."""
    parents = {}
    for pid in pids():
        fields = proc_stat(pid)
        with contextlib.suppress(IndexError, ValueError, TypeError):
            parents[pid] = int(fields[1])  # type: ignore[index]
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return list(reversed(found))


# freezing QEMU in the middle of a libvirt job

def job_active(dom: t.Any) -> bool:
    """Whether a libvirt job holds the domain (virsh domcontrol); works while the job runs."""
    try:
        return dom.controlInfo(0)[0] != CONTROL_OK
    except _libvirt().libvirtError:
        return False


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of a process has stopped: SIGSTOP returns at once, the group stop lands thread by
    thread."""
    try:
        tids = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return True  # gone
    return all(proc_state(f'{pid}/task/{tid}') in ('T', 't', None) for tid in tids)


def stop(pid: int) -> None:
    """SIGSTOP a process and wait until every thread of it has stopped."""
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: _all_threads_stopped(pid), 10, f'process {pid} to stop', 0.001)


@contextlib.contextmanager
def frozen(pid: int) -> t.Iterator[None]:
    """SIGSTOP a QEMU process for the block (every thread stopped when it starts), SIGCONT at its end (also when
    the test fails)."""
    try:
        stop(pid)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen_mid_job(pid: int, dom: t.Any, what: str, in_the_middle: t.Callable[[], bool] | None = None,
                   timeout: float = 120) -> t.Iterator[None]:
    """Freeze QEMU while libvirt runs a job on ``dom`` that needs it, for the block.

    Each try stops QEMU first and only then looks at the job (and at ``in_the_middle``), so the job cannot
    get past what was seen before the block runs, however fast the machine. A try that finds no job (not
    started yet, or already over) thaws QEMU and tries again; missing the job altogether fails after
    ``timeout`` instead of testing something else."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stop(pid)
            if job_active(dom) and (in_the_middle is None or in_the_middle()):
                break
        except BaseException:
            os.kill(pid, signal.SIGCONT)
            raise
        os.kill(pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            raise AssertionError(f'never caught {what} in progress within {timeout} s')
        time.sleep(0.005)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


class BusyWatch:
    """Counts, from libvirt directly (a thread polling virDomainGetControlInfo), how many of some domains have a
    libvirt job at the same time; the most seen is ``most``."""

    def __init__(self, doms: list[t.Any]) -> None:
        self.doms = doms
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, sum(1 for dom in self.doms if job_active(dom)))
            time.sleep(0.005)

    def __enter__(self) -> BusyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self._stop.set()
        self._thread.join(10)
