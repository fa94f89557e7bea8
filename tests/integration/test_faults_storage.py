# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Full storage: a memory snapshot on a file system too small for it, or one that fills up while the memory is
written.

Every module run is a real ``ansible`` process (``module``, from fault_fixtures.py), checked with virsh, qemu-img,
qemu-io (kslab.probes), the process table and the file system. The fault tests drive the host's own libvirtd
(its pids, a private libvirtd beside it): bookworm stack only.
"""

from __future__ import annotations

import os
import shutil
import typing as t

from kslab.probes import Independent
from kslab.processes import frozen_mid_job

from fault_fixtures import SystemDomains, failed, fill, ok


def test_storage_full_during_a_memory_snapshot(system, ram_blob, small_fs, module):
    """A memory snapshot on a file system too small for it is refused before anything is written; one whose
    file system fills up while the memory is written fails with a clear message, the guest keeps running,
    libvirt records nothing, the image is intact, and a re-run after space was freed converges."""
    try:
        storage_full_scenario(system, ram_blob, small_fs, module)
    finally:
        system.remove_all()  # QEMU must let go of the image before the file system is unmounted


def storage_full_scenario(system: SystemDomains, ram_blob: str, small_fs: str, module: t.Callable) -> None:
    dom_name, disk = system.make('full', heavy_blob=ram_blob, disk_dir=small_fs)
    dom, qemu = system.dom(dom_name), system.qemu_pid(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': system.uri}

    # 1. not enough room for the guest's memory (320 MiB, and 64 MiB for device state): refused up front
    filler = fill(small_fs, 'filler', 100)
    size_before = os.path.getsize(disk)
    msg = failed(module('snapshot', args))
    assert 'a snapshot with memory needs up to 384 MiB' in msg and 'Nothing was changed' in msg, msg
    assert os.path.getsize(disk) == size_before and Independent.qemu_img_snapshots(disk) == []
    os.unlink(filler)

    # 2. room enough at the start, then something else fills the file system while the memory is written
    run = module('snapshot', args)
    with frozen_mid_job(qemu, dom, 'the snapshot job'):
        filler = fill(small_fs, 'filler')
        assert shutil.disk_usage(small_fs).free < (1 << 20)
    msg = failed(run)
    assert 'is full' in msg and 'No snapshot was recorded' in msg, msg
    assert system.check.domstate_reason(dom_name) == 'running (unpaused)'
    assert system.qemu_pid(dom_name) == qemu
    assert system.check.snapshot_names(dom_name) == []
    assert Independent.qemu_img_snapshots(disk) == []
    Independent.qemu_img_check(disk, in_use=True)

    # 3. space freed: the re-run takes the snapshot
    os.unlink(filler)
    assert ok(module('snapshot', args))['changed']
    assert system.check.snapshot_names(dom_name) == ['before-change'] and Independent.qemu_img_snapshots(disk) == ['before-change']
    Independent.qemu_img_check(disk, in_use=True)
