# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""Storage: the files a snapshot leaves on this machine, and the room under them.

Free bytes on the file system of a path, the image that holds the memory of an internal snapshot,
the modes of overlays and memory files (readable by their owner only), and the note added to a
failed memory snapshot when the storage under it ran full. Used only where the module runs on the
hypervisor (a local URI), since the paths are the hypervisor's. _sizes.py estimates what a snapshot
will write; this file looks at the files themselves.
"""

from __future__ import annotations

import os
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import domain_disks

# Less free space than this under the image after a failed memory snapshot: the storage ran full.
STORAGE_FULL = 16 << 20


def memory_disk(dom: t.Any, disks: list[dict[str, t.Any]] | None = None) -> dict[str, t.Any] | None:
    """The disk QEMU writes the memory of an internal snapshot into: the first one that takes part."""
    for disk in domain_disks(dom) if disks is None else disks:
        if disk['snapshot'] != 'no' and disk['type'] == 'file' and disk['file']:
            return disk
    return None


def free_bytes(path: str) -> int | None:
    """Bytes free for unprivileged users on the file system of ``path`` (None when it cannot be read here)."""
    try:
        stats = os.statvfs(os.path.dirname(path) or '.')
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def storage_full_note(dom: t.Any) -> str:
    """After a failed memory snapshot: what is left when the storage under the memory image is (nearly) full."""
    disk = memory_disk(dom)
    free = free_bytes(disk['file']) if disk else None
    if disk is None or free is None or free >= STORAGE_FULL:
        return ''
    return (f' The file system of {disk["file"]} is full ({free >> 20} MiB free): the memory ran out of room. '
            'No snapshot was recorded and the image is intact, but QEMU keeps what it wrote of the memory '
            'allocated in it (a later snapshot reuses that room): free space there now, a guest that cannot '
            'write to its disk is paused.')


def tighten_modes(facts: dict[str, t.Any]) -> None:
    """Overlays and memory files hold guest data: readable by their owner only.

    libvirt before 11.10 makes the overlays of offline external snapshots 0644 (CVE-2025-13193).
    """
    paths = [d.get('file') for d in facts['disks'] if d.get('snapshot') == 'external'] + [facts.get('memory_file')]
    for path in paths:
        if path and os.path.isfile(path):
            mode = os.stat(path).st_mode & 0o777
            if mode & 0o077:
                os.chmod(path, mode & 0o700)


def hide_memory(dom: t.Any, disks: list[dict[str, t.Any]] | None = None) -> None:
    """The image that now holds the guest's memory (a full internal snapshot): not readable by other users.

    Only the permissions of others are removed; the owner and group (which QEMU may need) keep theirs.
    ``disks``: as domain_disks, when already read (an internal snapshot does not change them).
    """
    disk = memory_disk(dom, disks)
    if disk is None or not os.path.isfile(disk['file']):
        return
    try:
        mode = os.stat(disk['file']).st_mode & 0o7777
        if mode & 0o007:
            os.chmod(disk['file'], mode & ~0o007)
    except OSError:
        pass  # not ours to change (another owner, a read-only mount): the file keeps the mode it had
