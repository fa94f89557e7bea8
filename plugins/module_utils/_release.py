# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""What thaws or resumes the members of a group snapshot when the module's process dies inside the window.

snapshot_group freezes (or pauses) every running member, snapshots them all, then thaws (resumes) them. If its
process dies in between (``kill -9``, the out-of-memory killer, a signal to its process group), the guest agent
keeps the file systems frozen, and libvirt the vCPUs paused, until somebody acts. So before the first freeze the
module starts a release guard: a small Python process in a session of its own (a signal to the module's process
group does not reach it), which reads what to release from a pipe and then waits on that pipe. The module writes
``done`` once it has thawed or resumed every member itself; the guard then exits. If the pipe closes without it,
the module is gone (the kernel closes a dead process's pipes, whatever killed it), and the guard waits for the
members' libvirt jobs (a snapshot in progress) to end, at most until the group's ``timeout`` after the freeze, then
thaws or resumes every member, and logs what it did to syslog.

The guard's code is self-contained (the standard library and libvirt-python): the module's own code lives in
Ansible's payload, which is not on disk for another process. The URIs go through the pipe, never on a command
line (they may hold a password).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError

# How long the guard keeps trying to thaw or resume a member after the module died (a member's libvirt job, a
# snapshot with memory of a large guest, can hold a resume for minutes).
RELEASE_TRIES_SECONDS = 600

# The first line names the guard in ps's output.
GUARD_CODE = r'''# kvm.snapshots release guard: thaws or resumes the members of a group snapshot if snapshot_group dies
import json, sys, syslog, time

job = json.loads(sys.stdin.readline())
if sys.stdin.read() == 'done':
    sys.exit(0)


def say(text):
    line = 'kvm.snapshots.snapshot_group "%s": %s' % (job['name'], text)
    syslog.openlog('kvm.snapshots', syslog.LOG_PID, syslog.LOG_USER)
    syslog.syslog(syslog.LOG_WARNING, line)
    sys.stderr.write(line + '\n')
    sys.stderr.flush()


import libvirt

libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
action = 'thaw' if job['mode'] == 'agent' else 'resume'
say('the module did not %s every member itself (it was killed, or its own %s failed); its release guard will %s %s'
    % (action, action, action, ', '.join(domain for _uri, domain in job['members'])))
found = {}  # (uri, domain) -> the domain, looked up again after an error (libvirtd may have restarted)


def lookup(uri, domain):
    if (uri, domain) not in found:
        found[(uri, domain)] = libvirt.open(uri).lookupByName(domain)
    return found[(uri, domain)]


def busy():
    for uri, domain in job['members']:
        try:
            if lookup(uri, domain).controlInfo(0)[0] != libvirt.VIR_DOMAIN_CONTROL_OK:
                return True
        except libvirt.libvirtError:
            found.pop((uri, domain), None)
    return False


# A snapshot still being taken finishes first, inside the freeze, so that it holds the group's point in time; no
# longer than the group's timeout allows.
while busy():
    if time.time() >= job['window_ends']:
        say('a libvirt job of a member was still running when the window ran out: the group snapshot may not hold '
            'one point in time; delete it (state: absent) and take it again')
        break
    time.sleep(0.1)

give_up = time.time() + job['tries_seconds']
pending = [tuple(member) for member in job['members']]
while pending:
    left = []
    for uri, domain in pending:
        try:
            dom = lookup(uri, domain)
            if job['mode'] == 'agent':
                dom.fsThaw(None, 0)
            elif dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
            say('domain %s: done (%s)' % (domain, 'thawed' if job['mode'] == 'agent' else 'running'))
        except libvirt.libvirtError as exc:
            found.pop((uri, domain), None)
            if time.time() > give_up:
                say('domain %s: gave up: %s' % (domain, exc.get_error_message()))
            else:
                left.append((uri, domain))
    pending = left
    if pending:
        time.sleep(0.5)
'''


class ReleaseGuard:
    """The guard of one window: ``start`` before the first freeze or pause, ``done`` once every member is thawed
    or resumed. A window that ends any other way (an exception, the process killed) leaves the guard to do it."""

    def __init__(self, name: str, mode: str, members: list[tuple[str, str]], timeout: int,
                 stderr: t.Any = subprocess.DEVNULL) -> None:
        self.job = {'name': name, 'mode': mode, 'members': members, 'timeout': timeout,
                    'tries_seconds': RELEASE_TRIES_SECONDS}
        self.stderr = stderr
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the guard; a guard that cannot be started fails the run before anything is frozen."""
        self.job['window_ends'] = time.time() + self.job['timeout']
        try:
            self.proc = subprocess.Popen(  # pylint: disable=consider-using-with  # it outlives this call by design
                [sys.executable, '-c', GUARD_CODE], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                stderr=self.stderr, start_new_session=True, close_fds=True, text=True)
            if self.proc.stdin is None:
                raise OSError('no pipe to the guard')
            self.proc.stdin.write(json.dumps(self.job) + '\n')
            self.proc.stdin.flush()
        except OSError as exc:
            raise SnapshotError(f'Group snapshot "{self.job["name"]}": the process that would thaw or resume the '
                                f'members if this one died cannot be started ({exc}). Nothing was changed.') from None

    def done(self) -> None:
        """Every member is released: the guard exits, without touching them, once it reads this (not waited for:
        it may still be starting, and the module has no more need of it)."""
        if self.proc is None or self.proc.stdin is None or self.proc.stdin.closed:
            return
        try:
            self.proc.stdin.write('done')
            self.proc.stdin.close()
        except OSError:
            pass  # a guard that is gone already

    def abandon(self) -> None:
        """Not every member is released (a thaw or resume failed, or an error of the module itself): the guard
        keeps trying. Nothing after ``done``."""
        if self.proc is not None and self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
