# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab itself leaves the stack's QEMU able to use KVM (tests/lab/lab.py make_kvm_usable).

libvirtd probes QEMU's capabilities as root and caches them; before each use of the cache it checks whether its QEMU
user (libvirt-qemu) may open /dev/kvm. Where it may not (the device's group is not that user's kvm group), it throws
the cache away and probes again (four QEMU start-ups, seconds) before every snapshot of a shut-off domain, logging
"KVM was enabled when probing ..., but it is not available now". The kernel is asked (runuser as that user, inside
the stack's root), and a re-probe is looked for where libvirtd writes it: its capabilities cache files.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import typing as t

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, snapshot_names  # noqa: F401  # pylint: disable=unused-import

import lab as lab_tool  # tests/lab/lab.py (conftest puts it on the path)

STACK = lab_tool.stack()
#: the user Debian's libvirt runs QEMU as (qemu.conf's default there)
QEMU_USER = 'libvirt-qemu'


def as_qemu_user(*argv: str) -> subprocess.CompletedProcess:
    """Run argv as the stack's QEMU user (in the stack's root for a chroot stack, with that root's users and groups)."""
    command = ['runuser', '-u', QEMU_USER, '--', *argv]
    if STACK.root is not None:
        command = ['chroot', STACK.root, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def capabilities_cache() -> dict[str, int]:
    """{file: mtime in ns} of the stack's libvirtd's QEMU capabilities cache (rewritten by every probe)."""
    directory = pathlib.Path(STACK.host_path('/var/cache/libvirt/qemu/capabilities'))
    return {path.name: path.stat().st_mtime_ns for path in directory.glob('*.xml')}


def test_qemu_user_can_open_dev_kvm():
    """The stack's libvirt-qemu may read and write /dev/kvm, as the kernel sees it."""
    assert os.path.exists('/dev/kvm'), 'no /dev/kvm on this machine: the lab runs QEMU without KVM'
    proc = as_qemu_user('test', '-r', '/dev/kvm', '-a', '-w', '/dev/kvm')
    assert proc.returncode == 0, (f'{QEMU_USER} of stack {STACK.name} cannot open /dev/kvm '
                                  f'({oct(os.stat("/dev/kvm").st_mode & 0o777)}): {proc.stderr}')


def test_snapshot_of_a_shut_off_domain_does_not_reprobe_qemu(lab: t.Any, blank: t.Callable[..., str]):
    """Snapshots of a shut-off domain leave the QEMU capabilities cache as it is: libvirtd trusts it."""
    dom = blank('noprobe', state='shutoff')
    # a first lookup, so that a cache made stale by something else (a new QEMU) is rewritten before we look
    assert lab.virsh('domcapabilities').returncode == 0
    before = capabilities_cache()
    assert before, 'libvirtd has no QEMU capabilities cache'
    for name in ('p1', 'p2'):
        cp = lab.virsh('snapshot-create-as', dom, name)
        assert cp.returncode == 0, cp.stderr
    assert snapshot_names(lab, dom) == {'p1', 'p2'}
    assert capabilities_cache() == before, 'libvirtd probed QEMU again for a snapshot of a shut-off domain'
