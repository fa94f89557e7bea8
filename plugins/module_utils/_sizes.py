# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""What snapshots hold on disk, the disks' sizes and the storage their files live on; read only.

Nothing here writes, locks or runs a program, so it is safe while a domain runs:

- a disk's virtual and allocated size come from libvirt (virDomainGetBlockInfo: QEMU's own numbers for a
  running domain, the file and its header for a shut-off one; also through a remote URI);
- the VM state size of an internal snapshot comes from the qcow2 snapshot table (_qcow2, header only,
  read-only: only with a local URI);
- a file's allocated bytes are ``st_blocks * 512`` (local URI) or the allocation of the storage volume
  libvirt knows the file as (remote URI, when the file is in a storage pool);
- free and total space from ``os.statvfs`` of the file system (local URI), or from the storage pool
  (remote URI).

Every number that cannot be read is None, never an error; the reasons go to ``warn`` (once each).
"""

from __future__ import annotations

import os
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import LibvirtError
from ansible_collections.kvm.snapshots.plugins.module_utils._qcow2 import Qcow2Error, read_snapshot_table

ALLOCATION_UNIT = 512  # st_blocks counts 512-byte units on Linux, whatever the file system's block size


def mount_point(path: str) -> str:
    """The mount point of the file system that holds ``path`` (which must exist)."""
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


class SizeReader:
    """Reads sizes for one connection; caches what several domains or snapshots share.

    ``local``: the URI names this machine, so the domain's files are this machine's files.
    ``warn``: called with a message for each number that cannot be read (each message once).
    """

    def __init__(self, conn: t.Any, local: bool, warn: t.Callable[[str], None]) -> None:
        self.conn = conn
        self.local = local
        self._warn = warn
        self._warned: set[str] = set()
        self._tables: dict[str, dict[str, int] | None] = {}
        self._storage: dict[str, dict[str, t.Any]] = {}  # directory -> storage entry (without snapshot_bytes)

    def warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self._warn(message)

    # single files

    def allocated_bytes(self, path: str) -> int | None:
        """Bytes the file ``path`` takes on its storage; None when it cannot be read here."""
        if self.local:
            try:
                return os.stat(path).st_blocks * ALLOCATION_UNIT
            except OSError as exc:
                self.warn(f'Cannot read the size of {path}: {exc.strerror or exc}; its size is reported as null.')
                return None
        volume = self._volume(path)
        if volume is None:
            return None  # not in a storage pool: libvirt has no way to tell its size
        try:
            return int(volume.info()[2])
        except LibvirtError:
            return None

    def vm_state_sizes(self, image: str) -> dict[str, int] | None:
        """Snapshot name -> VM state size in the qcow2 image ``image``; None when it cannot be read here."""
        if image not in self._tables:
            table: dict[str, int] | None = None
            if self.local:
                try:
                    table = {}
                    for entry in read_snapshot_table(image):
                        table[entry.name] = table.get(entry.name, 0) + entry.vm_state_size
                except Qcow2Error as exc:
                    table = None
                    self.warn(f'Cannot read the snapshot table of image {exc}; the VM state sizes of its internal '
                              'snapshots are reported as null.')
            self._tables[image] = table
        return self._tables[image]

    def block_info(self, dom: t.Any, disk: dict[str, t.Any], busy: bool = False) -> tuple[int | None, int | None]:
        """(capacity, allocation) of a disk of ``dom`` by libvirt's block info; (None, None) when unknown.

        ``busy``: a libvirt job is talking to QEMU for the domain (an internal snapshot being taken holds its
        monitor for the whole save); libvirt's block info would wait for it, so it is not asked.
        """
        if not disk.get('file') or not disk.get('name'):
            return None, None  # an empty drive
        if busy:
            self.warn(f'Domain "{dom.name()}" is busy (a libvirt job, such as a snapshot being taken, is talking to '
                      'QEMU): the sizes of its disks are reported as null rather than waiting; run again later.')
            return None, None
        try:
            capacity, allocation, _physical = dom.blockInfo(disk['name'], 0)
        except LibvirtError as exc:
            self.warn(f'Cannot read the size of disk {disk["name"]} ({disk["file"]}) of domain "{dom.name()}": '
                      f'{exc}; '
                      'its sizes are reported as null.')
            return None, None
        return int(capacity), int(allocation)

    # storage

    def storage(self, path: str) -> dict[str, t.Any]:
        """The storage that holds ``path``: {path, pool, free_bytes, total_bytes}; values unknown are None."""
        directory = os.path.dirname(path) or '/'
        if directory not in self._storage:
            self._storage[directory] = self._local_storage(directory) if self.local else self._pool_storage(path)
        return self._storage[directory]

    def _local_storage(self, directory: str) -> dict[str, t.Any]:
        try:
            stats = os.statvfs(directory)
            mount = mount_point(directory)
        except OSError:
            return {'path': directory, 'pool': None, 'free_bytes': None, 'total_bytes': None}
        return {'path': mount, 'pool': None, 'free_bytes': stats.f_bavail * stats.f_frsize,
                'total_bytes': stats.f_blocks * stats.f_frsize}

    def _pool_storage(self, path: str) -> dict[str, t.Any]:
        unknown = {'path': os.path.dirname(path) or '/', 'pool': None, 'free_bytes': None, 'total_bytes': None}
        volume = self._volume(path)
        if volume is None:
            return unknown
        try:
            pool = volume.storagePoolLookupByVolume()
            _state, capacity, _allocation, available = pool.info()
            target = ET.fromstring(pool.XMLDesc(0)).findtext('target/path')
            return {'path': target or unknown['path'], 'pool': pool.name(), 'free_bytes': int(available),
                    'total_bytes': int(capacity)}
        except (LibvirtError, ET.ParseError):
            return unknown

    def _volume(self, path: str) -> t.Any:
        try:
            return self.conn.storageVolLookupByPath(path)
        except LibvirtError:
            return None  # not in any storage pool libvirt knows


def snapshot_sizes(snap: dict[str, t.Any], images: list[str], reader: SizeReader) -> tuple[
        dict[str, t.Any], dict[str, int]]:
    """The size keys of one snapshot (memory_bytes, overlay_bytes, size_bytes, size_exact), and the bytes it
    holds by file (for the storage totals).

    ``images``: the domain's qcow2 disk images that internal snapshots live in.
    """
    held: dict[str, int] = {}
    if snap['location'] == 'internal':
        memory = None
        if snap['memory'] == 'internal' and images:
            tables = {image: reader.vm_state_sizes(image) for image in images}
            if all(table is not None for table in tables.values()):
                found = {image: table[snap['name']] for image, table in tables.items()
                         if table is not None and snap['name'] in table}
                if found:  # QEMU saves the VM state in one image (the first disk); the others record 0
                    memory = sum(found.values())
                    held = {image: size for image, size in found.items() if size}
        size = memory if snap['memory'] == 'internal' else 0
        # the disk clusters only this snapshot still references are not counted: a lower bound
        return {'memory_bytes': memory, 'overlay_bytes': None, 'size_bytes': size, 'size_exact': False}, held
    parts: list[int | None] = []
    memory = None
    if snap['memory'] == 'external' and snap.get('memory_file'):
        memory = reader.allocated_bytes(snap['memory_file'])
        parts.append(memory)
        if memory is not None:
            held[snap['memory_file']] = memory
    overlays: list[int | None] = []
    for disk in snap['disks']:
        if disk['snapshot'] == 'external' and disk.get('file'):
            size = reader.allocated_bytes(disk['file'])
            overlays.append(size)
            if size is not None:
                held[disk['file']] = held.get(disk['file'], 0) + size
    overlay = sum(o for o in overlays if o is not None) if overlays and None not in overlays else None
    parts.extend(overlays)
    known = [p for p in parts if p is not None]
    return {
        'memory_bytes': memory,
        'overlay_bytes': overlay,
        'size_bytes': sum(known) if known else None,
        'size_exact': bool(parts) and len(known) == len(parts),
    }, held


def domain_files(disks: list[dict[str, t.Any]], snapshots: list[dict[str, t.Any]]) -> list[str]:
    """Every file of a domain that takes space: its disks' files, and its snapshots' overlays, backing files
    and memory files (each once, in that order)."""
    files = [d['file'] for d in disks if d['type'] == 'file' and d['file']]
    for snap in snapshots:
        if snap.get('memory_file'):
            files.append(snap['memory_file'])
        for disk in snap['disks']:
            files.extend(f for f in (disk.get('file'), disk.get('backing_file')) if f)
    return list(dict.fromkeys(files))


def storage_summary(files: list[str], held: dict[str, int], reader: SizeReader) -> list[dict[str, t.Any]]:
    """One entry per storage (file system or pool) that holds one of ``files``, ordered by path, with the bytes
    of snapshots (``held``: file -> bytes) on it."""
    entries: dict[str, dict[str, t.Any]] = {}
    for path in list(files) + [p for p in held if p not in files]:
        where = reader.storage(path)
        entry = entries.get(where['path'])
        if entry is None:
            entry = entries[where['path']] = dict(where, snapshot_bytes=0)
        elif entry['free_bytes'] is None and where['free_bytes'] is not None:
            entry.update(where)  # a pool's directory first met through a file the pool does not list
        entry['snapshot_bytes'] += held.get(path, 0)
    return [entries[key] for key in sorted(entries)]
