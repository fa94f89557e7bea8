# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The release guard of snapshot_group's window (_release.py), a real forked process each time.

libvirt's test driver keeps its state in each process, so the guard's own connection sees the domains of a node
file (a paused one, made with the test driver's runstate) but the test cannot see what the guard changed: these
tests read what the guard says it did (its log file; syslog in a run). tests/integration/test_group_killed.py
kills a real run inside its window and checks the guests with virsh.
"""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _release
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError

NODE = """<node>
  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>held</name><memory>8192</memory><os><type>hvm</type></os><test:runstate>3</test:runstate>
  </domain>
  <domain type='test'>
    <name>moving</name><memory>8192</memory><os><type>hvm</type></os>
  </domain>
</node>
"""


@pytest.fixture
def node_uri(tmp_path: pathlib.Path) -> str:
    node = tmp_path / 'node.xml'
    node.write_text(NODE)
    return f'test://{node}'


def _ended(guard: _release.ReleaseGuard, log: pathlib.Path) -> str:
    """Wait for the guard (a child of this process) to exit 0; what it logged."""
    assert guard.pid is not None
    deadline = time.monotonic() + 30
    while True:
        pid, status = os.waitpid(guard.pid, os.WNOHANG)
        if pid:
            break
        assert time.monotonic() < deadline, 'the guard did not end'
        time.sleep(0.02)
    assert os.waitstatus_to_exitcode(status) == 0
    return log.read_text() if log.exists() else ''


def test_done_or_no_window_releases_nothing(tmp_path, node_uri):
    """The module released every member, or opened no window: the guard exits, and touches nothing."""
    log = tmp_path / 'guard.log'
    released = _release.ReleaseGuard('g', str(log))
    released.start()
    released.window('pause', [(node_uri, 'held')], 30)
    released.done()
    idle = _release.ReleaseGuard('g', str(log))
    idle.start()
    idle.close()
    assert _ended(released, log) == '' and _ended(idle, log) == ''
    released.close()  # after done: nothing more
    released.done()


@pytest.mark.parametrize('mode, says', [('pause', 'domain held: done (running)'), ('agent', 'domain held: done (thawed)')])
def test_a_window_left_open_releases_every_member(tmp_path, node_uri, mode, says):
    """A window that ended without done: the guard thaws or resumes each member, and says so."""
    log = tmp_path / 'guard.log'
    guard = _release.ReleaseGuard('g', str(log))
    guard.start()
    guard.window(mode, [(node_uri, 'held'), (node_uri, 'moving')], 30)
    guard.close()
    said = _ended(guard, log)
    action = 'thaw' if mode == 'agent' else 'resume'
    assert f'kvm.snapshots.snapshot_group "g": the module did not {action} every member itself' in said, said
    assert says in said and says.replace('held', 'moving') in said, said


def test_an_unreadable_member_is_tried_again_then_named_and_the_others_released(tmp_path, node_uri, monkeypatch):
    """A member that cannot be looked up (libvirtd restarting, say) is tried again until the guard gives up.
    Also: a window already over (timeout 0) with no libvirt job left is no cause for a warning."""
    monkeypatch.setattr(_release, 'RELEASE_TRIES_SECONDS', 1)
    log = tmp_path / 'guard.log'
    guard = _release.ReleaseGuard('g', str(log))
    guard.start()
    guard.window('pause', [(node_uri, 'gone'), (node_uri, 'held')], 0)
    guard.close()
    said = _ended(guard, log)
    assert 'domain gone: gave up: Domain not found' in said and 'domain held: done (running)' in said, said
    assert said.index('domain held: done') < said.index('domain gone: gave up'), said  # not held up by the other
    assert 'still running' not in said, said


def test_killed_module_leaves_the_guard_to_release(tmp_path, node_uri):
    """The process that started the guard is SIGKILLed inside its window, with its whole process group: the guard,
    in a session of its own and named kvmsnap-guard, outlives it and releases the members."""
    log = tmp_path / 'guard.log'
    ready = tmp_path / 'ready'
    module = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-c', textwrap.dedent(f'''
            import pathlib, sys, time
            sys.path[:0] = {sys.path!r}
            from ansible_collections.kvm.snapshots.plugins.module_utils._release import ReleaseGuard
            guard = ReleaseGuard('g', {str(log)!r})
            guard.start()
            guard.window('pause', [({node_uri!r}, 'held')], 30)
            pathlib.Path({str(ready)!r}).write_text(str(guard.pid))
            time.sleep(600)  # inside the window
        ''')], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            assert module.poll() is None and time.monotonic() < deadline, 'the module never started its guard'
            time.sleep(0.02)
        guard_pid = int(ready.read_text())
        deadline = time.monotonic() + 10
        while pathlib.Path(f'/proc/{guard_pid}/comm').read_text().strip() != _release.GUARD_NAME:
            assert time.monotonic() < deadline, 'the guard never took its name'
            time.sleep(0.02)
        assert os.getsid(guard_pid) == guard_pid != os.getsid(module.pid)
    finally:
        os.killpg(module.pid, signal.SIGKILL)  # the module's whole process group
        module.wait(timeout=30)
    deadline = time.monotonic() + 30
    while 'done (running)' not in (log.read_text() if log.exists() else ''):
        assert time.monotonic() < deadline, log.read_text() if log.exists() else 'nothing logged'
        time.sleep(0.05)
    assert 'the module did not resume every member itself (it was killed' in log.read_text()


def test_a_guard_that_cannot_be_forked_fails_before_anything_is_done(monkeypatch):
    def no_fork():
        raise OSError(11, 'Resource temporarily unavailable')

    monkeypatch.setattr(_release.os, 'fork', no_fork)  # fork cannot be made to fail otherwise
    guard = _release.ReleaseGuard('g')
    with pytest.raises(SnapshotError, match=r'Group snapshot "g": the process that would thaw or resume the members '
                                            r'if this one died cannot be started \(Resource temporarily unavailable\)'
                                            r'\. Nothing was changed\.'):
        guard.start()
    guard.window('agent', [('test:///default', 'test')], 30)  # nothing to write to: no error
    guard.done()
