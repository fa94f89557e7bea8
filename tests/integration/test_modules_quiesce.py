# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""quiesce: true through a real guest agent (a Debian guest of the lab).

The agent logs each request in the guest's journal: the test reads it there to see that the real
run froze the file systems exactly once and check mode not at all. Quiesce without an agent channel,
with a silent agent and of a shut-off domain is in test_modules_errors.py.
"""

from __future__ import annotations

import os

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import guest, independent  # noqa: F401  # pylint: disable=unused-import


def freezes(lab, dom: str) -> int:
    """How often the guest agent was asked to freeze the file systems since the guest booted."""
    rc, out, err = lab.guest_exec(dom, ['/usr/bin/journalctl', '--no-pager', '-b', '-o', 'cat', '-t', 'qemu-ga'])
    assert rc == 0, err
    return sum(1 for line in out.splitlines() if line.strip() == 'info: guest-fsfreeze called')


def test_quiesced_disk_only_snapshot(guest, independent, lab, run_playbook):
    disk = lab.disk_paths(guest)[0]
    frozen_before = freezes(lab, guest)

    run_playbook('modules_quiesce.yml', {'dom': guest, 'disk': disk})

    assert freezes(lab, guest) == frozen_before + 1  # the real run froze once; check mode did not
    # the file systems are thawed: the guest writes and syncs
    rc, _out, err = lab.guest_exec(guest, ['/usr/bin/sh', '-c', 'echo ok > /root/after-quiesce && sync'])
    assert rc == 0, err
    assert independent.snapshot_names(guest) == []
    assert independent.blklist(guest) == {'vda': disk}
    assert not os.path.exists(os.path.splitext(disk)[0] + '.quiesced')
    assert independent.image_info(disk)['backing-filename'].endswith('base.qcow2')  # still the linked clone
    independent.qemu_img_check(disk, in_use=True)
    assert independent.domstate(guest) == 'running'
