# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The module process killed (SIGKILL of the whole ansible run) while libvirt takes or deletes a snapshot:
libvirt finishes the job and the next run converges.

Every module run is a real ``ansible`` process (``module``, from fault_fixtures.py), checked with virsh, qemu-img,
qemu-io (kslab.probes), the process table and the file system. The fault tests drive the host's own libvirtd
(its pids, a private libvirtd beside it): bookworm stack only.
"""

from __future__ import annotations

import os

from kslab.probes import Independent, run as sh
from kslab.processes import frozen_mid_job, job_active, pid_alive, proc_state, wait_until

from fault_fixtures import ok


def test_module_killed_during_create(system, ram_blob, module):
    """The ansible run is SIGKILLed while libvirt takes its snapshot: libvirt finishes it, and the next run
    finds it complete and reports no change."""
    dom_name, disk = system.make('kill-create', heavy_blob=ram_blob)
    dom, qemu = system.dom(dom_name), system.qemu_pid(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': system.uri}

    run = module('snapshot', args)
    with frozen_mid_job(qemu, dom, 'the snapshot job'):  # the snapshot cannot finish before the kill
        assert run.module_running()
        killed = run.kill()
        wait_until(lambda: not [(pid, proc_state(pid)) for pid in killed if pid_alive(pid)], 10,
                   f'the killed processes {killed} to be gone', 0.1)
        assert job_active(dom)
    wait_until(lambda: not job_active(dom), 120, 'libvirt to finish the snapshot')

    result = ok(module('snapshot', args))
    assert not result['changed'] and result['snapshot']['state'] == 'running'
    assert system.check.snapshot_names(dom_name) == ['before-change']
    assert Independent.qemu_img_snapshots(disk) == ['before-change']
    assert system.check.domstate_reason(dom_name) == 'running (unpaused)'
    assert system.qemu_pid(dom_name) == qemu
    Independent.qemu_img_check(disk, in_use=True)


def test_module_killed_during_delete(system, module):
    """The ansible run is SIGKILLed while libvirt merges a disk-only snapshot back (block commit of 384 MiB):
    libvirt finishes, the next run reports nothing left to do, and the data is in the image."""
    dom_name, disk = system.make('kill-delete', state='shutoff', disk_size='512M')
    args = {'domain': dom_name, 'name': 'overlay', 'uri': system.uri, 'disk_only': True}
    ok(module('snapshot', args))
    overlay = system.check.blklist(dom_name)['vda']
    assert overlay != disk
    sh(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 384M', overlay])
    dom = system.dom(dom_name)
    dom.create()
    qemu = system.qemu_pid(dom_name)

    run = module('snapshot', dict(args, state='absent'))
    # caught before libvirt pivots back to the base image: the rest of the job needs QEMU
    with frozen_mid_job(qemu, dom, 'the block commit of the delete',
                        lambda: system.check.blklist(dom_name) == {'vda': overlay}):
        assert run.module_running()
        killed = run.kill()
        wait_until(lambda: not [(pid, proc_state(pid)) for pid in killed if pid_alive(pid)], 10,
                   f'the killed processes {killed} to be gone', 0.1)
        # killed in the middle: the commit cannot have finished while QEMU is frozen
        assert system.check.snapshot_names(dom_name) == ['overlay'] and system.check.blklist(dom_name) == {'vda': overlay}
    # the block commit of an external delete is an asynchronous job that control info does not always show:
    # watch for its end itself
    wait_until(lambda: not system.check.snapshot_names(dom_name) and not os.path.exists(overlay), 120,
               'libvirt to finish the delete', 0.2)

    result = ok(module('snapshot', dict(args, state='absent')))
    assert not result['changed']
    assert system.check.snapshot_names(dom_name) == []
    assert system.check.blklist(dom_name) == {'vda': disk}
    assert not os.path.exists(overlay)
    assert Independent.has_pattern(disk, 0x5a, '384M')
    assert system.check.domstate_reason(dom_name).startswith('running')
    Independent.qemu_img_check(disk, in_use=True)
