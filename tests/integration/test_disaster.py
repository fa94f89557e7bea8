# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The disaster, end to end, on a real Debian guest: the demo playbook (demo/disaster.yml) snapshots
the running guest, runs rm -rf /usr/bin inside it through the guest agent, shows that commands fail,
reverts with kvm.snapshots.snapshot_revert, shows the files back, and deletes the snapshot.

Besides the playbook's own checks (virsh, qemu-img, commands in the guest), this test checks from
outside, with the lab's guest agent client, virsh and qemu-img, that the guest works, did not
reboot (its memory came back with the snapshot), and that no snapshot is left in the image.
"""

from __future__ import annotations

import pathlib
import re

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import guest, independent  # noqa: F401  # pylint: disable=unused-import

DEMO = pathlib.Path(__file__).resolve().parents[2] / 'demo' / 'disaster.yml'


def test_rm_rf_disaster_rolled_back(guest, independent, lab, run_playbook):
    disk = lab.disk_paths(guest)[0]
    rc, boot_id, _err = lab.guest_exec(guest, ['/usr/bin/cat', '/proc/sys/kernel/random/boot_id'])
    assert rc == 0
    rc, programs, _err = lab.guest_exec(guest, ['/usr/bin/ls', '/usr/bin'])
    assert rc == 0 and 'ls' in programs.split()

    run = run_playbook(DEMO, {'kvm_domain': guest})

    # the steps the operator reads
    out = run.stdout
    assert re.search(r'rm -rf /usr/bin exited with 0', out), out
    assert re.search(r'ls / +-> exit 127: Failed to execute child process ./usr/bin/ls. \(No such file', out), out
    assert 'is back at snapshot before-disaster and running' in out, out
    assert f'/usr/bin holds {len(programs.split())} programs again' in out, out
    assert 'the same boot: the guest did not restart' in out, out
    assert 'no snapshot in the image' in out, out
    assert run.recap()['localhost']['changed'] == 3  # snapshot, revert, delete

    # from outside: the guest works, on the same boot, with every program back
    rc, programs_after, _err = lab.guest_exec(guest, ['/usr/bin/ls', '/usr/bin'])
    assert rc == 0 and programs_after == programs
    assert lab.guest_exec(guest, ['/usr/bin/python3', '-c', 'print(6 * 7)'])[:2] == (0, '42\n')
    assert lab.guest_exec(guest, ['/usr/bin/cat', '/proc/sys/kernel/random/boot_id'])[1] == boot_id
    # no snapshot left, in libvirt or in the image, and the image is sound
    assert independent.snapshot_names(guest) == []
    assert independent.qemu_img_snapshots(disk) == []
    independent.qemu_img_check(disk, in_use=True)
    assert independent.domstate(guest) == 'running'
