# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The guards: what is refused before anything is sent to libvirt, and why.

Snapshot names and descriptions that libvirt or QEMU would store wrongly or not at all; names that
the QEMU of a running domain would misread (its human monitor, libvirt before 10.9) or refuse (a
QMP job id, libvirt 10.9 and later); a revert to an internal snapshot that would lose external ones;
a snapshot with memory that may not fit on the storage of its image. Each check raises a
SnapshotError that says what was refused and what to do instead; none changes anything.
"""

from __future__ import annotations

import re
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import has_agent_channel
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    SnapshotError,
    version_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import (
    list_snapshots,
    parse_snapshot_xml,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._storage import (
    free_bytes,
    memory_disk,
)

# Control characters cannot be stored in XML 1.0 and make no sense in a name.
_CONTROL = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


# libvirt keeps the record of a snapshot in the file "<name>.xml", written as "<name>.xml.new" first; a file
# name has at most 255 bytes (NAME_MAX), so a longer name fails after QEMU or qemu-img made the snapshot
# ("unable to save metadata"), leaving it unrecorded in the image [seen, libvirt 9.0: 247 bytes work, 248 fail,
# on a running and on a shut-off domain]. QEMU keeps at most 255 bytes of an internal snapshot's tag and cuts a
# longer one silently [seen: savevm and qemu-img snapshot -c with 300 bytes stored 255], so this limit covers it.
NAME_MAX_BYTES = 255 - len('.xml.new')


def validate_name(name: t.Any, what: str = 'snapshot name') -> str:
    """Check a snapshot name before anything is sent to libvirt (every domain state; see also check_monitor_names)."""
    if not isinstance(name, str) or not name.strip():
        raise SnapshotError(f'The {what} must not be empty.')
    try:
        size = len(name.encode('utf-8'))
    except UnicodeEncodeError:
        raise SnapshotError(f'The {what} {name!r} is not valid Unicode text (it holds a lone surrogate).') from None
    if size > NAME_MAX_BYTES:
        raise SnapshotError(
            f'The {what} "{name[:40]}..." is {size} bytes long in UTF-8; libvirt stores a snapshot in a file named '
            f'after it, which limits names to {NAME_MAX_BYTES} bytes (a longer one would be made in the disk images '
            'and then fail to be recorded). Nothing was changed. Choose a shorter name.')
    if '/' in name:
        raise SnapshotError(f'The {what} "{name}" contains "/"; QEMU rejects such names '
                            '(they would become part of overlay file paths).')
    if name.startswith('.'):
        raise SnapshotError(f'The {what} "{name}" starts with "."; QEMU rejects such names.')
    if _CONTROL.search(name) or '\n' in name or '\r' in name or '\t' in name:
        raise SnapshotError(f'The {what} {name!r} contains control characters.')
    return name


def validate_text(text: str | None, what: str = 'description') -> str | None:
    """Descriptions may hold any printable text, tabs and newlines, but nothing XML cannot carry exactly.

    XML parsers turn a carriage return into a newline, so a description with one
    would not come back as it was stored: it is refused rather than changed.
    """
    if text is not None and _CONTROL.search(text):
        raise SnapshotError(f'The {what} {text!r} contains control characters that XML cannot carry.')
    if text is not None and '\r' in text:
        raise SnapshotError(f'The {what} {text!r} contains carriage returns ("\\r"), which libvirt stores as '
                            'newlines; use "\\n" line ends so the text is kept exactly.')
    return text


# The one rule for names that reach QEMU's monitor, used by create, revert, delete and prune.
#
# While a domain's QEMU runs (running or paused), libvirt 9.0 (before 10.x moved to QMP jobs) hands the name of
# an internal snapshot to QEMU's human monitor as savevm/loadvm/delvm "NAME" without escaping it. QEMU reads
# \" and \\ inside the quotes as escapes and stops at a bare ": it saves, loads or deletes another snapshot,
# or none, while libvirt reports success and records or drops the snapshot [seen, libvirt 9.0 / QEMU 7.2:
# savevm of 'x\' and 'q"' saved nothing; delvm of 'x\\' deleted 'x\'; every other printable character,
# quotes ', spaces, ',;#$%{}', digits and non-ASCII letters, worked].
# With the domain shut off libvirt runs qemu-img with the name as one argument, and every name works (create,
# revert and delete, seen); reverting a running domain to a snapshot without memory also stops QEMU first.
MONITOR_UNSAFE = ('"', '\\')

# From libvirt 10.9 on, internal snapshots of a running domain are QMP jobs (snapshot-save, snapshot-load,
# snapshot-delete) whose job id libvirt makes from the name ("internal-snapshot-save-NAME"). The name itself
# travels as a JSON string, safe whatever it holds, but QEMU accepts a job id only of letters, digits, '.', '-'
# and '_' ("Invalid job ID 'internal-snapshot-save-<b>'" [seen, libvirt 11.3 / QEMU 10.0]): it refuses any
# other name before anything is made.
QMP_JOBS_VERSION = 10_009_000
_QMP_ID_CHARS = re.compile(r'[A-Za-z0-9._-]*')

_MONITOR_ADVICE = {
    'create': 'Choose a name without " and \\.',
    'revert': ('Revert to another snapshot, or shut the domain off first: libvirt then starts QEMU with the name '
               'on its command line instead of the monitor (untried: libvirt 9.0 cannot take a snapshot with '
               'memory under such a name).'),
    'delete': ('Shut the domain off and delete it then: libvirt then runs qemu-img, which takes the name exactly '
               '(state: absent with the domain shut off).'),
    'prune': ('Shut the domain off and prune then (libvirt then runs qemu-img, which takes the name exactly), '
              'or narrow match so that these snapshots are left out.'),
}
_QMP_ADVICE = {
    'create': ('Choose a name of letters, digits, ".", "-" and "_", or take an external snapshot '
               '(location: external), whose name only becomes part of file names.'),
    'revert': 'Shut the domain off first: libvirt then reverts with qemu-img, which takes any name.',
    'delete': _MONITOR_ADVICE['delete'],
    'prune': _MONITOR_ADVICE['prune'],
}
_MONITOR_WORDS = {'create': 'taking', 'revert': 'reverting to', 'delete': 'deleting', 'prune': 'deleting'}


def monitor_unsafe(name: str, version: int = 0) -> list[str]:
    """The characters of ``name`` that the QEMU of a running domain would misread (libvirt before 10.9: passed to
    its monitor unescaped) or refuse (libvirt 10.9 and later: not allowed in a QMP job id)."""
    if version >= QMP_JOBS_VERSION:
        return sorted({c for c in name if not _QMP_ID_CHARS.fullmatch(c)})
    return [c for c in MONITOR_UNSAFE if c in name]


def check_monitor_names(dom: t.Any, names: t.Iterable[str], action: str) -> None:
    """Refuse, before anything is done, an ``action`` ('create', 'revert', 'delete', 'prune') on internal snapshots
    ``names`` of a running or paused domain whose QEMU would misread or refuse one of the names (monitor_unsafe).
    Other drivers (the test driver) and shut-off domains do not use the monitor."""
    names = [n for n in names if not _QMP_ID_CHARS.fullmatch(n)]  # safe on every version: nothing to ask
    if not names or dom.connect().getType() != 'QEMU' or not dom.isActive():
        return
    version = dom.connect().getLibVersion()
    bad = [n for n in names if monitor_unsafe(n, version)]
    if not bad:
        return
    domain = dom.name()
    chars = sorted({c for n in bad for c in monitor_unsafe(n, version)})
    listed = ', '.join(repr(n) for n in bad)
    what = (f'{_MONITOR_WORDS[action].capitalize()} the internal snapshot{"s" if len(bad) > 1 else ""} {listed} of '
            f'the running or paused domain "{domain}" is refused: the name contains {" and ".join(repr(c) for c in chars)}')
    if version >= QMP_JOBS_VERSION:
        raise SnapshotError(
            f'{what}, and libvirt {version_text(version)} runs it as a QEMU job named after the '
            'snapshot (internal-snapshot-save-NAME and the like), which QEMU refuses unless the name holds only '
            f'letters, digits, ".", "-" and "_". Nothing was changed. {_QMP_ADVICE[action]}', domain=domain,
            snapshots=bad)
    raise SnapshotError(
        f'{what}, and while the domain runs libvirt passes the name to QEMU\'s monitor without escaping it (savevm/'
        'loadvm/delvm "NAME"), so QEMU would act on another snapshot, or none, while libvirt reports success. '
        f'Nothing was changed. {_MONITOR_ADVICE[action]}', domain=domain, snapshots=bad)


def check_monitor_delete(dom: t.Any, snaps: list[t.Any]) -> None:
    """check_monitor_names for deleting libvirt snapshot objects (the internal ones among them reach the monitor)."""
    if any(not _QMP_ID_CHARS.fullmatch(s.getName()) for s in snaps):
        check_monitor_names(dom, [s.getName() for s in snaps
                                  if parse_snapshot_xml(s.getXMLDesc(0))['location'] == 'internal'], 'delete')


def check_monitor_name(dom: t.Any, name: str, action: str = 'create') -> None:
    """check_monitor_names for one name (a snapshot to take, by default)."""
    check_monitor_names(dom, [name], 'revert' if action == 'a revert' else action)


def check_quiesce(dom: t.Any, state: str, xml: str | ET.Element | None = None) -> None:
    """Refuse quiesce where qemu-guest-agent cannot freeze the file systems: a guest that does not run, or a domain
    without the agent's channel (``xml``: the domain's XML or its tree, if read)."""
    if state != 'running':
        raise SnapshotError(f'Domain "{dom.name()}" is {state}; quiesce needs a running guest '
                            'with qemu-guest-agent.', domain=dom.name())
    if not has_agent_channel(dom, xml):
        raise SnapshotError(
            f'Domain "{dom.name()}" has no guest agent channel, so quiesce cannot reach qemu-guest-agent. '
            'Nothing was changed. Add <channel type="unix"><target type="virtio" '
            'name="org.qemu.guest_agent.0"/></channel> to the domain, or leave quiesce off.',
            domain=dom.name())


def check_revert_possible(dom: t.Any, target: dict[str, t.Any]) -> None:
    """Refuse to revert to an internal snapshot while the domain has external ones.

    libvirt 9.0 does it: it puts the disks back on the images the internal snapshot lives in,
    under the overlays of the external snapshots, which then no longer match their backing files
    (their data, and the external snapshots, are lost).
    """
    if target['location'] != 'internal':
        return
    external = sorted(s['name'] for s in list_snapshots(dom) if s['location'] == 'external')
    if external:
        raise SnapshotError(
            f'Domain "{dom.name()}" has external (disk-only) snapshots ({", ".join(external)}); reverting to the '
            f'internal snapshot "{target["name"]}" is refused because libvirt would put the disks back on the '
            'images below their overlays, and the overlays with the data written since would be lost. '
            'Nothing was changed. Delete the external snapshots first (that merges the overlays back), '
            'then revert.', domain=dom.name())


# Room needed besides the guest's memory by a snapshot with memory: device memory (video RAM, ROMs) and
# device state are saved with it.
MEMORY_SNAPSHOT_MARGIN = 64 << 20


def check_free_space(dom: t.Any, disks: list[dict[str, t.Any]] | None = None, memory_kib: int | None = None) -> None:
    """Refuse a snapshot with memory that may not fit on the file system of the image that would hold it.

    A memory snapshot that runs out of space fails, and what QEMU wrote of the memory until then
    stays allocated in the image: the file system is full afterwards, and QEMU pauses the guest at
    its next write that needs room. Call only when the disks are this machine's files (local URI).
    ``disks``: as domain_disks, when already read; ``memory_kib``: the guest's current memory (dom.info), when read.
    """
    disk = memory_disk(dom, disks)
    free = free_bytes(disk['file']) if disk else None
    if disk is None or free is None:
        return
    memory = (dom.info()[2] if memory_kib is None else memory_kib) * 1024  # the guest's current memory, KiB
    needed = memory + MEMORY_SNAPSHOT_MARGIN
    if free < needed:
        raise SnapshotError(
            f'Domain "{dom.name()}": a snapshot with memory needs up to {needed >> 20} MiB (the guest\'s '
            f'{memory >> 20} MiB of memory and {MEMORY_SNAPSHOT_MARGIN >> 20} MiB of device state) on the file '
            f'system of {disk["file"]}, and it has {free >> 20} MiB free. Nothing was changed: a memory snapshot '
            'that runs out of space leaves the file system full, and the guest is paused at its next write. '
            'Free space there, or take a disk-only snapshot (disk_only: true).',
            domain=dom.name(), needed=needed, free=free)


def check_room(dom: t.Any, snapshot: str, disks: list[dict[str, t.Any]], memory: str, memory_kib: int | None,
               local: bool, margin_mb: int) -> dict[str, t.Any] | None:
    """Refuse a new snapshot unless the file system of every file disk it covers has room for what the snapshot
    writes there plus ``margin_mb`` MiB: the guest's memory and its device state (MEMORY_SNAPSHOT_MARGIN) where the
    memory goes (memory_disk: the first file disk, whose image or overlay holds it), nothing more for the others
    (an overlay starts empty, an internal snapshot adds only metadata).

    ``memory``: where the plan puts the memory (internal, external or no); ``memory_kib``: the guest's current
    memory, when read. Free space is read from this machine's file systems, so only with a ``local`` URI; otherwise
    returns ``{'files': [...], 'needed_mib': N}``, the files left unchecked and the most any of them needs
    (None when every file was checked)."""
    covered = [d for d in disks if d['snapshot'] != 'no' and d['type'] == 'file' and d['file']]
    if not covered:
        return None
    share = 0
    if memory != 'no':
        share = (dom.info()[2] if memory_kib is None else memory_kib) * 1024 + MEMORY_SNAPSHOT_MARGIN
    margin = margin_mb << 20
    holder = memory_disk(dom, disks)
    needs = {d['file']: margin + (share if d is holder else 0) for d in covered}
    unchecked = []
    short = []
    for path, needed in needs.items():
        free = free_bytes(path) if local else None
        if free is None:
            unchecked.append(path)
        elif free < needed:
            short.append(f'{path} needs {needed >> 20} MiB and has {free >> 20} MiB')
    if short:
        raise SnapshotError(
            f'Not enough free space for snapshot "{snapshot}" of domain "{dom.name()}" (memory {memory}): '
            f'{"; ".join(short)} (what the snapshot writes there, plus free_space_margin_mb={margin_mb}). '
            'Nothing was changed. Free some space, or lower the margin.', domain=dom.name())
    if unchecked:
        return {'files': unchecked, 'needed_mib': max(needs[p] for p in unchecked) >> 20}
    return None
