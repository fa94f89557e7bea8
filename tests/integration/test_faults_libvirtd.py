# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults of libvirtd: not reachable, killed or restarted, frozen mid-snapshot, and the half-done delete it
leaves behind.

Daemon faults are played on a private libvirtd (kslab.private_libvirtd: a session daemon run as ``nobody``,
started and stopped by pid); the system libvirtd, shared with other test runs, is never signalled.

Every module run is a real ``ansible`` process (``module``, from fault_fixtures.py), checked with virsh, qemu-img,
qemu-io (kslab.probes), the process table and the file system. The fault tests drive the host's own libvirtd
(its pids, a private libvirtd beside it): bookworm stack only.
"""

from __future__ import annotations

import signal
import time

import pytest

from kslab.common import _libvirt
from kslab.probes import Independent
from kslab.processes import frozen_mid_job, pid_alive, process_idle, wait_until

from fault_fixtures import failed, ok

libvirt = _libvirt()

UNREACHABLE_PLAYBOOK = """
- name: Snapshot through a URI with a password, where no libvirtd listens
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Take the snapshot
      kvm.snapshots.snapshot:
        uri: "{{ secret_uri }}"
        domain: web1
        name: pre
        connect_timeout: 10
      register: attempt
      failed_when: false

    - name: It failed at once, with a plain message that names the URI without its password
      ansible.builtin.assert:
        that:
          - attempt.msg is search('libvirtd does not run there or does not accept connections')
          - attempt.msg is search('qemu[+]tcp://admin:[*]{8}@127[.]0[.]0[.]1:1/system')
          - attempt.msg is not search('Traceback')
"""


def test_libvirtd_not_reachable_and_uri_password_masked(run_playbook, tmp_path):
    """No libvirtd at the URI: a plain message at once, and a password in the URI shown nowhere,
    not even with -vvv (which prints the module's arguments)."""
    secret = 'S3cret-Pa55word'
    playbook = tmp_path / 'unreachable.yml'
    playbook.write_text(UNREACHABLE_PLAYBOOK)
    started = time.monotonic()
    run = run_playbook(playbook, {'secret_uri': f'qemu+tcp://admin:{secret}@127.0.0.1:1/system'}, args=['-vvv'])
    assert time.monotonic() - started < 120
    assert 'admin:********@127.0.0.1' in run.stdout
    assert secret not in run.stdout + run.stderr


@pytest.mark.parametrize('how', ['SIGKILL', 'restart'])
def test_libvirtd_dies_during_a_full_snapshot(how, private_libvirtd, private_blob, module):
    """libvirtd killed (or restarted) while it writes a memory snapshot: a clear failure, QEMU keeps the guest,
    and a re-run converges to exactly one complete snapshot, recorded by libvirt and in the image."""
    daemon = private_libvirtd
    dom_name, disk = daemon.make(f'die-{how.lower()}', private_blob)
    qemu = daemon.qemu_pid(dom_name)
    dom = daemon.conn.lookupByName(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': daemon.uri}

    run = module('snapshot', args)
    # caught once libvirt has paused the guest for the snapshot, with QEMU stopped: it cannot finish (and libvirt
    # cannot record) the snapshot before the signal lands
    # (libvirt 9.0 gives the reason "save" for that pause)
    with frozen_mid_job(qemu, dom, 'the snapshot job', lambda: dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED):
        if how == 'SIGKILL':
            daemon.stop(signal.SIGKILL)
        else:
            pid = daemon.send(signal.SIGTERM)  # libvirtd lets the running job finish before it exits
            time.sleep(0.5)
            assert pid_alive(pid), 'libvirtd exited before the snapshot job was over'
    if how == 'restart':
        wait_until(lambda: not pid_alive(pid), 60, f'libvirtd {pid} to exit', 0.05)
        daemon.close()
    msg = failed(run)
    assert 'connection to libvirtd was lost' in msg and 'a re-run of this task finds out' in msg, msg
    assert pid_alive(qemu), 'QEMU died with libvirtd'
    if how == 'SIGKILL':
        # libvirtd comes back once QEMU is done with what it was asked (the guest's memory may still be on its
        # way into the image): one CI run that restarted libvirtd at once found the guest shut off
        wait_until(lambda: process_idle(qemu), 120, 'QEMU to finish the snapshot libvirtd left it', 0.1)

    daemon.start()
    state_after_fault = daemon.check.domstate_reason(dom_name)
    names_after_fault = daemon.check.snapshot_names(dom_name)
    if how == 'SIGKILL':
        # libvirtd died before it recorded the snapshot; QEMU may have it in the image, unrecorded,
        # and libvirt 9.0 leaves the guest paused
        assert names_after_fault == [], names_after_fault
        assert Independent.qemu_img_snapshots(disk) in ([], ['before-change'])
    rerun = module('snapshot', args)
    result = ok(rerun)
    if names_after_fault:
        assert not result['changed']  # libvirt finished the job on its way down
    else:
        assert result['changed']
    if state_after_fault.startswith('paused'):
        # ansible shows the module's warnings as [WARNING] lines
        assert 'was resumed' in rerun.stdout + rerun.stderr, repr(rerun)
    # exactly one snapshot, in libvirt and in the image, of the running guest; the same QEMU all along
    assert daemon.check.snapshot_names(dom_name) == ['before-change']
    assert Independent.qemu_img_snapshots(disk) == ['before-change']
    assert daemon.check.snapshot_xml(dom_name, 'before-change').findtext('state') == 'running'
    assert daemon.check.domstate_reason(dom_name) == 'running (unpaused)'
    assert daemon.qemu_pid(dom_name) == qemu and pid_alive(qemu)
    Independent.qemu_img_check(disk, in_use=True)


def test_libvirtd_freezes_during_a_snapshot(private_libvirtd, private_blob, module):
    """libvirtd stops answering (SIGSTOP) mid-snapshot: the module gives up after about connect_timeout with a
    message instead of hanging; once libvirtd runs again, a re-run converges."""
    daemon = private_libvirtd
    dom_name, disk = daemon.make('freeze', private_blob)
    dom = daemon.conn.lookupByName(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': daemon.uri, 'connect_timeout': 6}

    run = module('snapshot', args)
    with frozen_mid_job(daemon.qemu_pid(dom_name), dom, 'the snapshot job'):  # libvirtd stops before it is done
        daemon.send(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        msg = failed(run, timeout=120)
        gave_up_after = time.monotonic() - frozen_at
    finally:
        daemon.send(signal.SIGCONT)
    assert 'keepalive' in msg and 'stopped answering' in msg, msg
    assert gave_up_after < 30, gave_up_after
    daemon.close()

    result = ok(module('snapshot', args))
    assert not result['changed']  # libvirtd finished the snapshot once it ran again
    assert daemon.check.snapshot_names(dom_name) == ['before-change']
    assert Independent.qemu_img_snapshots(disk) == ['before-change']
    assert daemon.check.domstate_reason(dom_name) == 'running (unpaused)'
    Independent.qemu_img_check(disk, in_use=True)


def test_interrupted_delete_is_finished_by_a_rerun(system, module):
    """The state a delete leaves when libvirtd dies between QEMU dropping the snapshot and libvirt dropping
    its record (made here with the monitor's delvm): a re-run of the delete finishes the job."""
    dom_name, disk = system.make('half-deleted')
    args = {'domain': dom_name, 'name': 'old', 'uri': system.uri}
    ok(module('snapshot', args))
    system.check.virsh('qemu-monitor-command', '--hmp', dom_name, 'delvm old')
    assert Independent.qemu_img_snapshots(disk) == [] and system.check.snapshot_names(dom_name) == ['old']

    result = ok(module('snapshot', dict(args, state='absent')))
    assert result['changed'] and result['deleted'] == ['old']
    assert system.check.snapshot_names(dom_name) == [] and Independent.qemu_img_snapshots(disk) == []
    assert system.check.domstate_reason(dom_name) == 'running (unpaused)'
    Independent.qemu_img_check(disk, in_use=True)


def test_libvirtd_killed_inside_a_group_window(private_libvirtd, private_blob, module):
    """libvirtd killed while snapshot_group has both members paused and their snapshots under way: the run fails
    with a plain message, and its release guard, which cannot reach libvirtd meanwhile, resumes both members once
    libvirtd is back; a re-run takes the group whole."""
    daemon = private_libvirtd
    names = [daemon.make(f'grp-{n}', private_blob)[0] for n in ('a', 'b')]
    doms = [daemon.conn.lookupByName(n) for n in names]
    qemus = [daemon.qemu_pid(n) for n in names]
    args = {'name': 'grp', 'uri': daemon.uri, 'freeze': 'pause', 'members': [{'domain': n} for n in names]}

    run = module('snapshot_group', args)

    def guard() -> int | None:
        return next((pid for pid in run.tree() if _has_guard_mark(pid)), None)

    # caught with both members paused by the module and QEMU of the first stopped mid-snapshot
    with frozen_mid_job(qemus[0], doms[0], 'the group snapshot',
                        lambda: guard() is not None and all(d.state()[0] == libvirt.VIR_DOMAIN_PAUSED for d in doms)):
        guard_pid = guard()
        daemon.stop(signal.SIGKILL)
    msg = failed(run)
    assert 'connection to libvirtd was lost' in msg, msg
    assert pid_alive(guard_pid), 'the release guard ended with libvirtd gone'
    for qemu in qemus:
        assert pid_alive(qemu), 'QEMU died with libvirtd'
        wait_until(lambda q=qemu: process_idle(q), 120, 'QEMU to finish the snapshot libvirtd left it', 0.1)

    daemon.start()
    wait_until(lambda: not pid_alive(guard_pid), 60, 'the release guard to resume the members and exit', 0.2)
    for name in names:
        assert daemon.check.domstate_reason(name) == 'running (unpaused)', name
    result = ok(module('snapshot_group', args))
    assert result['changed'] and {m['status'] for m in result['members']} == {'taken'}, result
    assert all(daemon.check.snapshot_names(n) == ['grp'] for n in names)
    assert all(daemon.check.domstate_reason(n) == 'running (unpaused)' for n in names)


def _has_guard_mark(pid: int) -> bool:
    """Whether pid is the release guard snapshot_group forked (named kvmsnap-guard)."""
    try:
        with open(f'/proc/{pid}/comm', encoding='ascii') as handle:
            return handle.read().strip() == 'kvmsnap-guard'
    except OSError:
        return False
