# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""What thaws or resumes the members of a group snapshot when the module's process dies inside the window.

snapshot_group freezes (or pauses) every running member, snapshots them all, then thaws (resumes) them. If its
process dies in between (``kill -9``, the out-of-memory killer, a signal to its process group), the guest agent
keeps the file systems frozen, and libvirt the vCPUs paused, until somebody acts. So the module forks a release
guard when it starts (before it has a thread or a libvirt connection: a fork of a process with threads can deadlock
in libvirt): a copy of itself in a session of its own (a signal to the module's process group does not reach it),
named ``kvmsnap-guard`` (``ps -C kvmsnap-guard``), which waits on a pipe. Before the first freeze the module writes
what to release (the members and their URIs: never on a command line, they may hold a password), and ``done`` once
it has thawed or resumed every member itself; the guard then exits. If the pipe closes after a window began and
without ``done``, the module is gone (the kernel closes a dead process's pipes, whatever killed it) or its own thaw
failed: the guard waits for the members' libvirt jobs (a snapshot in progress) to end, at most until the group's
``timeout`` after the freeze, then thaws or resumes every member, through libvirt-python like the module, and logs
what it did to syslog.
"""

from __future__ import annotations

import json
import os
import syslog
import time
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError, libvirt

# How long the guard keeps trying to thaw or resume a member after the module died (a member's libvirt job, a
# snapshot with memory of a large guest, can hold a resume for minutes; libvirtd may be restarting).
RELEASE_TRIES_SECONDS = 600
GUARD_NAME = 'kvmsnap-guard'  # its /proc/PID/comm, what ps shows


class ReleaseGuard:
    """The release guard of one module run: ``start`` it before anything else, ``window`` before the first freeze
    or pause, ``done`` once every member is thawed or resumed; ``close`` at the end. ``log``: a file the guard also
    writes its messages to (the tests read it)."""

    def __init__(self, name: str, log: str | None = None) -> None:
        self.name = name
        self.log = log
        self.pid: int | None = None
        self._pipe: int | None = None

    def start(self) -> None:
        """Fork the guard; one that cannot be forked fails the run before anything is read or changed."""
        try:
            read_end, write_end = os.pipe()
            pid = os.fork()
        except OSError as exc:
            raise SnapshotError(f'Group snapshot "{self.name}": the process that would thaw or resume the members if '
                                f'this one died cannot be started ({exc.strerror}). Nothing was changed.') from None
        if pid == 0:  # the guard: never back into the module
            try:
                os.close(write_end)
                _guard(read_end, self.name, self.log)
            finally:
                os._exit(0)  # pylint: disable=protected-access  # no atexit of the module's, no output of its own
        os.close(read_end)
        self.pid, self._pipe = pid, write_end

    def window(self, mode: str, members: list[tuple[str, str]], timeout: int) -> None:
        """The window begins: what the guard releases if it gets no ``done``."""
        self._write(json.dumps({'mode': mode, 'members': members, 'window_ends': time.time() + timeout}) + '\n')

    def done(self) -> None:
        """Every member is released: the guard exits without touching them."""
        self._write('done')
        self.close()

    def close(self) -> None:
        """No more to say: after ``window`` and without ``done`` (a thaw failed, an error of the module), the guard
        releases the members; else it just exits."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None

    def _write(self, text: str) -> None:
        if self._pipe is not None:
            try:
                os.write(self._pipe, text.encode())
            except OSError:
                pass  # a guard that is gone already


def _guard(pipe: int, name: str, log: str | None) -> None:
    """The guard's life: detach, wait for the module's word, release the members when it does not come."""
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the module's output is Ansible's; the guard says nothing there
        os.dup2(devnull, fd)
    try:
        with open('/proc/self/comm', 'w', encoding='ascii') as comm:
            comm.write(GUARD_NAME)
    except OSError:
        pass  # not Linux: the guard only looks like the module in ps
    said = b''
    while True:
        chunk = os.read(pipe, 65536)
        if not chunk:
            break
        said += chunk
    job_line, _newline, rest = said.decode().partition('\n')
    if not job_line or rest == 'done':
        return  # no window, or one the module closed itself
    Release(name, json.loads(job_line), log).run()


class Release:
    """What the guard does after a window the module did not close: wait out the snapshots in progress, then thaw
    or resume every member, looking each one up again after an error (libvirtd may be restarting)."""

    def __init__(self, name: str, job: dict[str, t.Any], log: str | None) -> None:
        self.name = name
        self.mode = job['mode']
        self.members = [tuple(member) for member in job['members']]
        self.window_ends = job['window_ends']
        self.log = log
        self.found: dict[tuple[str, str], t.Any] = {}
        self.action = 'thaw' if self.mode == 'agent' else 'resume'

    def say(self, text: str) -> None:
        line = f'kvm.snapshots.snapshot_group "{self.name}": {text}'
        syslog.openlog('kvm.snapshots', syslog.LOG_PID, syslog.LOG_USER)
        syslog.syslog(syslog.LOG_WARNING, line)
        if self.log:
            with open(self.log, 'a', encoding='utf-8') as handle:
                handle.write(line + '\n')

    def lookup(self, uri: str, domain: str) -> t.Any:
        if (uri, domain) not in self.found:
            self.found[(uri, domain)] = libvirt.open(uri).lookupByName(domain)
        return self.found[(uri, domain)]

    def busy(self) -> bool:
        for uri, domain in self.members:
            try:
                if self.lookup(uri, domain).controlInfo(0)[0] != libvirt.VIR_DOMAIN_CONTROL_OK:
                    return True
            except libvirt.libvirtError:
                self.found.pop((uri, domain), None)
        return False

    def run(self) -> None:
        self.say(f'the module did not {self.action} every member itself (it was killed, or its own {self.action} '
                 f'failed); its release guard will {self.action} {", ".join(d for _u, d in self.members)}')
        # a snapshot still being taken finishes first, inside the freeze, so that it holds the group's point in time;
        # no longer than the group's timeout allows
        while self.busy():
            if time.time() >= self.window_ends:
                self.say('a libvirt job of a member was still running when the window ran out: the group snapshot may '
                         'not hold one point in time; delete it (state: absent) and take it again')
                break
            time.sleep(0.1)
        give_up = time.time() + RELEASE_TRIES_SECONDS
        pending = list(self.members)
        while pending:
            left = []
            for uri, domain in pending:
                try:
                    dom = self.lookup(uri, domain)
                    if self.mode == 'agent':
                        dom.fsThaw(None, 0)
                    elif dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                        dom.resume()
                    self.say(f'domain {domain}: done ({"thawed" if self.mode == "agent" else "running"})')
                except libvirt.libvirtError as exc:
                    self.found.pop((uri, domain), None)
                    if time.time() > give_up:
                        self.say(f'domain {domain}: gave up: {exc.get_error_message()}')
                    else:
                        left.append((uri, domain))
            pending = left
            if pending:
                time.sleep(0.5)
