# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The release guard of snapshot_group's window (_release.py), a real process each time.

libvirt's test driver keeps its state in each process, so the guard's own connection sees the domains of a node
file (a paused one, made with the test driver's runstate) but the test cannot see what the guard changed: these
tests read what the guard says it did (its stderr; syslog in a run). tests/integration/test_group_killed.py
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


def _said(path: pathlib.Path, guard: _release.ReleaseGuard) -> str:
    assert guard.proc is not None
    guard.proc.wait(timeout=30)
    return path.read_text()


def test_done_releases_nothing(tmp_path, node_uri):
    """The module released every member: the guard exits at once, and touches nothing."""
    log = tmp_path / 'guard.log'
    with log.open('w') as err:
        guard = _release.ReleaseGuard('g', 'pause', [(node_uri, 'held')], 30, stderr=err)
        guard.start()
        guard.done()
    assert _said(log, guard) == ''
    assert guard.proc is not None and guard.proc.returncode == 0
    guard.abandon()  # after done: nothing more
    guard.done()


@pytest.mark.parametrize('mode, says', [('pause', 'domain held: done (running)'), ('agent', 'domain held: done (thawed)')])
def test_abandoned_releases_every_member(tmp_path, node_uri, mode, says):
    """A window that ended without every member released: the guard thaws or resumes each one, and says so."""
    log = tmp_path / 'guard.log'
    with log.open('w') as err:
        guard = _release.ReleaseGuard('g', mode, [(node_uri, 'held'), (node_uri, 'moving')], 30, stderr=err)
        guard.start()
        guard.abandon()
    said = _said(log, guard)
    assert guard.proc is not None and guard.proc.returncode == 0
    action = 'thaw' if mode == 'agent' else 'resume'
    assert f'kvm.snapshots.snapshot_group "g": the module did not {action} every member itself' in said, said
    assert says in said and says.replace('held', 'moving') in said, said


def test_an_unreadable_member_is_tried_again_then_named_and_the_others_released(tmp_path, node_uri, monkeypatch):
    """A member that cannot be looked up (libvirtd restarting, say) is tried again until the guard gives up.
    Also: a window already over (timeout 0) with no libvirt job left is no cause for a warning."""
    monkeypatch.setattr(_release, 'RELEASE_TRIES_SECONDS', 1)
    log = tmp_path / 'guard.log'
    with log.open('w') as err:
        guard = _release.ReleaseGuard('g', 'pause', [(node_uri, 'gone'), (node_uri, 'held')], 0, stderr=err)
        guard.start()
        guard.abandon()
    said = _said(log, guard)
    assert 'domain gone: gave up: Domain not found' in said and 'domain held: done (running)' in said, said
    assert said.index('domain held: done') < said.index('domain gone: gave up'), said  # not held up by the other
    assert 'still running' not in said, said


def test_killed_module_leaves_the_guard_to_release(tmp_path, node_uri):
    """The process that started the guard is SIGKILLed inside its window: the guard, in a session of its own,
    outlives it and releases the members; the URI went through the pipe, not onto a command line."""
    log = tmp_path / 'guard.log'
    ready = tmp_path / 'ready'
    module = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-c', textwrap.dedent(f'''
            import pathlib, sys, time
            sys.path[:0] = {sys.path!r}
            from ansible_collections.kvm.snapshots.plugins.module_utils._release import ReleaseGuard
            guard = ReleaseGuard('g', 'pause', [({node_uri!r}, 'held')], 30, stderr=open({str(log)!r}, 'w'))
            guard.start()
            pathlib.Path({str(ready)!r}).write_text(str(guard.proc.pid))
            time.sleep(600)  # inside the window
        ''')], start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() or not ready.read_text():
            assert module.poll() is None and time.monotonic() < deadline, 'the module never started its guard'
            time.sleep(0.02)
        guard_pid = int(ready.read_text())
        with open(f'/proc/{guard_pid}/cmdline', 'rb') as handle:
            assert node_uri.encode() not in handle.read()
        assert os.getsid(guard_pid) == guard_pid != os.getsid(module.pid)
    finally:
        os.killpg(module.pid, signal.SIGKILL)  # the module's whole process group
        module.wait(timeout=30)
    deadline = time.monotonic() + 30
    while 'done (running)' not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    assert 'the module did not resume every member itself (it was killed' in log.read_text()


def test_a_guard_that_cannot_start_fails_before_anything_is_frozen(monkeypatch):
    monkeypatch.setattr(_release.sys, 'executable', '/nonexistent/python')
    guard = _release.ReleaseGuard('g', 'agent', [('test:///default', 'test')], 30)
    with pytest.raises(SnapshotError, match=r'Group snapshot "g": the process that would thaw or resume the members '
                                            r'if this one died cannot be started .*Nothing was changed\.'):
        guard.start()
    guard.done()
    guard.abandon()
