# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The internal snapshots a qcow2 image holds, read from its header (read-only, no qemu-img, no shell).

QEMU's own list (``qemu-img snapshot -l``, ``info snapshots``) comes from the same table: the header
gives its offset and count, each entry gives the snapshot's id and name (QEMU's docs/interop/qcow2.txt),
and the size of the VM state (memory and devices) QEMU saved with it: a 32-bit field in the entry, and a
64-bit one in the entry's extra data when that is at least 8 bytes long (QEMU writes both; it reads the
64-bit one when it is there).
QEMU rewrites the table in one piece and then points the header at it, so a reader sees the old or the
new table; the file is opened read-only and never locked, which works while QEMU has it open.
"""

from __future__ import annotations

import struct
import typing as t

QCOW2_MAGIC = b'QFI\xfb'
# header: magic, version, backing_file_offset, backing_file_size, cluster_bits, size, crypt_method, l1_size,
# l1_table_offset, refcount_table_offset, refcount_table_clusters, nb_snapshots, snapshots_offset
_HEADER = struct.Struct('>4sIQIIQIIQQIIQ')
# snapshot table entry: l1_table_offset, l1_size, id_str_size, name_size, date_sec, date_nsec, vm_clock_nsec,
# vm_state_size, extra_data_size; then extra data, id, name, padding to 8 bytes
_ENTRY = struct.Struct('>QIHHIIQII')
_VM_STATE_LARGE = struct.Struct('>Q')  # the first field of the extra data: the 64-bit VM state size
QCOW_MAX_SNAPSHOTS = 65536
_MAX_TABLE = 64 << 20  # QEMU's own limit on the size of the snapshot table


class Qcow2Error(Exception):
    """The file is not a qcow2 image this reader understands, or cannot be read."""


class Qcow2Snapshot(t.NamedTuple):
    """One entry of the snapshot table."""

    id: str
    name: str
    vm_state_size: int  # bytes of VM state saved with the snapshot; 0 for a disk-only one


def read_snapshot_names(path: str) -> list[str]:
    """The names (tags) of the internal snapshots of the qcow2 image ``path``, in table order.

    Raises Qcow2Error when the file cannot be read or is not a qcow2 image.
    """
    return [entry.name for entry in read_snapshot_table(path)]


def read_snapshot_table(path: str) -> list[Qcow2Snapshot]:
    """The entries of the snapshot table of the qcow2 image ``path`` (id, name, VM state size), in table order.

    Raises Qcow2Error when the file cannot be read or is not a qcow2 image.
    """
    try:
        with open(path, 'rb') as image:
            header = image.read(_HEADER.size)
            if len(header) < _HEADER.size or header[:4] != QCOW2_MAGIC:
                raise Qcow2Error(f'{path} is not a qcow2 image')
            fields = _HEADER.unpack(header)
            count, offset = fields[11], fields[12]
            if count == 0:
                return []
            if count > QCOW_MAX_SNAPSHOTS:
                raise Qcow2Error(f'{path}: the header counts {count} snapshots, more than qcow2 allows')
            image.seek(offset)
            table = image.read(_MAX_TABLE)
    except OSError as exc:
        raise Qcow2Error(f'{path}: {exc.strerror or exc}') from None
    return _parse_table(table, count, path)


def _parse_table(table: bytes, count: int, path: str) -> list[Qcow2Snapshot]:
    entries = []
    pos = 0
    for _index in range(count):
        if pos + _ENTRY.size > len(table):
            raise Qcow2Error(f'{path}: the snapshot table ends early')
        entry = _ENTRY.unpack_from(table, pos)
        id_size, name_size, vm_state_size, extra_size = entry[2], entry[3], entry[7], entry[8]
        extra = pos + _ENTRY.size
        start = extra + extra_size + id_size
        end = start + name_size
        if end > len(table):
            raise Qcow2Error(f'{path}: the snapshot table ends early')
        if extra_size >= _VM_STATE_LARGE.size:
            vm_state_size = _VM_STATE_LARGE.unpack_from(table, extra)[0]
        entries.append(Qcow2Snapshot(
            id=table[extra + extra_size:start].decode('utf-8', errors='surrogateescape'),
            name=table[start:end].decode('utf-8', errors='surrogateescape'),
            vm_state_size=vm_state_size,
        ))
        pos = (end + 7) & ~7  # entries are aligned to 8 bytes
    return entries


def compare_internal(listed: list[dict[str, t.Any]], images: dict[str, list[str] | None]) -> tuple[
        dict[str, list[str]], list[str]]:
    """Match libvirt's internal snapshots with the images' tables.

    ``listed``: snapshot facts (as list_snapshots) of one domain; ``images``: file -> the names in its table
    (None when it could not be read). Returns, by snapshot name, the images that miss it (its record has no
    data there) and the names that images hold but libvirt does not list.
    """
    readable = {path: set(names) for path, names in images.items() if names is not None}
    internal = [s['name'] for s in listed if s['location'] == 'internal']
    missing = {name: sorted(p for p, names in readable.items() if name not in names) for name in internal}
    known = {s['name'] for s in listed}
    extra = sorted({n for names in readable.values() for n in names} - known)
    return {n: paths for n, paths in missing.items() if paths}, extra
