# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_group killed inside its window (both stacks): its release guard thaws or resumes the
members all the same; what libvirt finished of the group is either whole or refused by the next run.

The run is a real ``ansible`` process (fault_fixtures.ModuleRun). QEMU of the shared Debian guest is stopped
(SIGSTOP) while libvirt takes the guest's snapshot, inside the window (the members frozen or paused, so the module
cannot get to its own thaw); then every process of the run is SIGKILLed but the
guard, as a kill of the module and its parents, or of their process groups, leaves it; then QEMU goes on. Checked
with virsh and the guest agent (guest-fsfreeze-status).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal

import libvirt
import pytest

from conftest import STACK, URI
from fault_fixtures import failed, ok
from kslab.processes import frozen_mid_job, job_active, pid_alive, wait_until
# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, guest, independent  # noqa: F401  # pylint: disable=unused-import

GUARD_NAME = 'kvmsnap-guard'  # the release guard's name in ps (_release.GUARD_NAME)


def guard_of(run) -> int | None:
    """The pid of the release guard the module forked (named kvmsnap-guard), once it runs."""
    for pid in run.tree():
        with contextlib.suppress(OSError):
            if pathlib.Path(f'/proc/{pid}/comm').read_text().strip() == GUARD_NAME:
                return pid
    return None


@pytest.mark.parametrize('freeze', ['agent', 'pause'])
def test_killed_inside_the_window_releases_every_member(freeze, guest, blank, independent, lab, module):
    # agent: the guest's file systems are frozen for real (a shut-off member beside it); pause: both running
    # members are paused. location external: the kind a running member gets with freeze agent on both stacks.
    other = blank('kill-other', state='shutoff' if freeze == 'agent' else 'running')
    args = {'name': 'killed', 'uri': URI, 'freeze': freeze, 'members': [{'domain': guest}, {'domain': other}]}
    if freeze == 'agent':
        args['location'] = 'external'
    running = [guest] if freeze == 'agent' else [guest, other]
    conn = libvirt.open(URI)
    dom = conn.lookupByName(guest)
    qemu = int(open(STACK.host_path(f'/run/libvirt/qemu/{guest}.pid'), encoding='ascii').read().strip())

    overlay = os.path.splitext(lab.disk_paths(guest)[0])[0] + '.killed'

    def in_the_window() -> bool:
        # inside the window: the guest paused by the module (pause), or libvirt making the overlay of its snapshot,
        # which the module asks for only once every member is frozen (agent)
        inside = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED if freeze == 'pause' else os.path.exists(overlay)
        return guard_of(run) is not None and inside

    run = module('snapshot_group', args)
    with frozen_mid_job(qemu, dom, 'the group snapshot of the guest', in_the_window):
        guard = guard_of(run)
        assert guard is not None and os.getsid(guard) == guard  # a session of its own
        # parents first (ansible, its worker, then the module), so that none is left to report the others' end
        doomed = [pid for pid in reversed(run.tree()) if pid != guard]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        run.wait(timeout=30)
        # killed: no result, or (when ansible printed before its own kill landed) the module's death by SIGKILL
        assert run.rc == -signal.SIGKILL, run
        assert run.status == '' or (run.status == 'FAILED' and run.result.get('rc') == 128 + signal.SIGKILL), run
        wait_until(lambda: not [pid for pid in doomed if pid_alive(pid)], 10, f'the killed processes {doomed} to go')
        assert pid_alive(guard) and job_active(dom)
    # QEMU goes on: libvirt finishes the snapshot, then the guard releases the members and exits
    wait_until(lambda: not pid_alive(guard), 120, 'the release guard to release the members and exit', 0.2)
    for name in running:
        assert independent.domstate(name) == 'running', name
    if freeze == 'agent':
        assert lab.agent_command(guest, {'execute': 'guest-fsfreeze-status'}) == 'thawed'
        lab.guest_exec(guest, ['/bin/sh', '-c', 'echo written > /root/after-kill && sync'], timeout=60)
    # What libvirt finished stays. Every member has it: a whole group, which a new run finds and leaves as it is.
    # Some have it (libvirt 11 can drop an external snapshot with memory whose client died): a new run refuses the
    # part, changing nothing, and says to delete it. None: a new run takes the group.
    have = [name for name in (guest, other) if independent.snapshot_names(name) == ['killed']]
    assert all(independent.snapshot_names(name) in ([], ['killed']) for name in (guest, other))
    print(f'{freeze}: the members that hold the group after the kill: {have}')
    if len(have) == 2:
        again = ok(module('snapshot_group', args))
        assert not again['changed'] and {m['status'] for m in again['members']} == {'exists'}, again
    elif have:
        msg = failed(module('snapshot_group', args))
        assert 'a group is taken at one point or not at all, so nothing was changed' in msg, msg
        assert 'Delete it (state: absent) and take it again' in msg, msg
        assert [name for name in (guest, other) if independent.snapshot_names(name) == ['killed']] == have
    else:
        assert ok(module('snapshot_group', args))['changed']
    gone = ok(module('snapshot_group', dict(args, state='absent')))
    assert gone['changed'], gone
    for name in (guest, other):
        assert independent.snapshot_names(name) == [], name
    assert independent.blklist(guest) == {'vda': f'{lab.run_dir}/{guest}.vda.qcow2'}
