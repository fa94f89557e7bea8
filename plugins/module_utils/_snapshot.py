# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The snapshot model: libvirt snapshot XML to and from plain dicts.

All XML is built and parsed with ``xml.etree``: a name or description is a
text node, never a piece of formatted markup, so nothing a user types can
reach the XML structure.
"""

from __future__ import annotations

import datetime
import os
import re
import time
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    ERR_NO_DOMAIN_SNAPSHOT,
    LibvirtError,
    SnapshotError,
    connection_lost,
    describe,
    error_code,
    parse_uri,
    retry_busy,
    version_text,
)

# virDomainState -> the words virsh uses
DOMAIN_STATES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused',
    4: 'shutdown', 5: 'shutoff', 6: 'crashed', 7: 'pmsuspended',
}

# libvirt flag values (libvirt-domain-snapshot.h), named here so the code reads without the binding
CREATE_REDEFINE = 1
CREATE_CURRENT = 2
CREATE_DISK_ONLY = 16
CREATE_QUIESCE = 64
CREATE_ATOMIC = 128
DELETE_CHILDREN = 1
LIST_INTERNAL = 256
LIST_EXTERNAL = 512
REVERT_RUNNING = 1
REVERT_PAUSED = 2
REVERT_FORCE = 4

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


def build_snapshot_xml(name: str, description: str | None = None, plan: t.Any = None) -> str:
    """The ``<domainsnapshot>`` document for a new snapshot (``plan``: a _kind.Plan; None: internal).

    For an external snapshot every overlay and the memory file are named here, as planned (the names
    libvirt would pick itself), so that what check mode predicts is what is made.
    """
    root = ET.Element('domainsnapshot')
    ET.SubElement(root, 'name').text = name
    if description is not None:
        ET.SubElement(root, 'description').text = description
    if plan is not None and plan.location == 'external':
        if plan.memory_file:
            ET.SubElement(root, 'memory', snapshot='external', file=plan.memory_file)
        else:
            ET.SubElement(root, 'memory', snapshot='no')
        disks = ET.SubElement(root, 'disks')
        for overlay in plan.overlays:
            disk = ET.SubElement(disks, 'disk', name=overlay['disk'], snapshot='external')
            ET.SubElement(disk, 'source', file=overlay['file'])
    return ET.tostring(root, encoding='unicode')


def replace_description(xml: str, description: str) -> str:
    """The same snapshot XML with another description (for a REDEFINE)."""
    root = ET.fromstring(xml)
    node = root.find('description')
    if node is None:
        node = ET.Element('description')
        root.insert(1, node)
    node.text = description
    return ET.tostring(root, encoding='unicode')


def iso_utc(epoch: int | None) -> str | None:
    """``epoch`` as ISO 8601 UTC; None when there is none, or when it is past what a date can hold (year 9999:
    libvirt accepts any creationTime in a redefined snapshot)."""
    if epoch is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
    except (OverflowError, OSError, ValueError):
        return None


def parse_snapshot_xml(xml: str) -> dict[str, t.Any]:
    """The facts of one snapshot, from its XML description."""
    root = ET.fromstring(xml)
    epoch_text = root.findtext('creationTime')
    epoch = int(epoch_text) if epoch_text and epoch_text.isdigit() else None
    memory_node = root.find('memory')
    memory = memory_node.get('snapshot') if memory_node is not None else None
    memory_file = memory_node.get('file') if memory_node is not None else None
    # the domain as it was when the snapshot was taken: its disks' files then hold the snapshot's own state
    taken_from = {}
    for disk in root.findall('domain/devices/disk'):
        target, source = disk.find('target'), disk.find('source')
        if target is not None and source is not None:
            taken_from[target.get('dev')] = source.get('file')
    disks = []
    for disk in root.findall('disks/disk'):
        source = disk.find('source')
        kind = disk.get('snapshot') or 'internal'
        disks.append({
            'name': disk.get('name'),
            'snapshot': kind,
            'file': source.get('file') if source is not None else None,
            'backing_file': taken_from.get(disk.get('name')) if kind == 'external' else None,
        })
    state = root.findtext('state')
    if memory is None:
        memory = 'no' if state in ('shutoff', 'disk-snapshot') else 'internal'
    external = memory == 'external' or any(d['snapshot'] == 'external' for d in disks)
    return {
        'name': root.findtext('name'),
        'description': root.findtext('description'),
        'state': state,
        'creation_time': iso_utc(epoch),
        'creation_time_epoch': epoch,
        'parent': root.findtext('parent/name'),
        'location': 'external' if external else 'internal',
        'memory': memory,
        'memory_file': memory_file or None,
        'disks': disks,
    }


def snapshot_facts(snap: t.Any, domain_name: str, new: bool = False) -> dict[str, t.Any]:
    """All facts of a libvirt snapshot object (children and current included).

    ``new``: the snapshot was just made by this run, so libvirt made it the current one and it
    has no children yet; its XML is all there is to read (one call instead of three).
    """
    facts = parse_snapshot_xml(snap.getXMLDesc(0))
    facts['domain'] = domain_name
    if new:
        facts['current'], facts['children'] = True, []
    else:
        facts['current'] = bool(snap.isCurrent(0))
        facts['children'] = sorted(c.getName() for c in snap.listAllChildren(0))
    return facts


def lookup_snapshot(dom: t.Any, name: str) -> t.Any | None:
    """The snapshot ``name`` of ``dom``, or None. One call, whatever the number of snapshots."""
    try:
        return dom.snapshotLookupByName(name, 0)
    except LibvirtError as exc:
        if error_code(exc) == ERR_NO_DOMAIN_SNAPSHOT:
            return None
        raise SnapshotError(describe(exc, f'Looking up snapshot "{name}" of domain "{dom.name()}"')) from None


# How often to read a domain's snapshots again when one disappears while they are read.
READ_ATTEMPTS = 3


def _read_all(dom: t.Any, domain_name: str) -> dict[str, dict[str, t.Any]]:
    """Facts of every snapshot of ``dom`` by name (children still empty)."""
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            facts = {}
            for snap in dom.listAllSnapshots(0):
                item = parse_snapshot_xml(snap.getXMLDesc(0))
                item['domain'] = domain_name
                item['current'] = bool(snap.isCurrent(0))
                item['children'] = []
                facts[item['name']] = item
            return facts
        except LibvirtError as exc:
            # another run deleted a snapshot between the listing and its reading: read again
            if error_code(exc) != ERR_NO_DOMAIN_SNAPSHOT or attempt == READ_ATTEMPTS:
                raise
    raise AssertionError('unreachable')  # pragma: no cover


def list_snapshots(dom: t.Any) -> list[dict[str, t.Any]]:
    """Every snapshot of ``dom``, parents before children, siblings oldest first."""
    domain_name = dom.name()
    facts = _read_all(dom, domain_name)
    roots = []
    for item in facts.values():
        parent = facts.get(item['parent']) if item['parent'] else None
        if parent is None:
            roots.append(item)
        else:
            parent['children'].append(item['name'])

    def sort_key(item: dict[str, t.Any]) -> tuple[int, str]:
        return (item['creation_time_epoch'] or 0, item['name'])

    ordered: list[dict[str, t.Any]] = []
    stack = sorted(roots, key=sort_key, reverse=True)
    while stack:
        item = stack.pop()
        ordered.append(item)
        children = [facts[c] for c in item['children']]
        stack.extend(sorted(children, key=sort_key, reverse=True))
    for item in ordered:
        item['children'].sort(key=lambda n: sort_key(facts[n]))
    return ordered


def snapshot_tree(snapshots: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    """The tree of the snapshots of one domain as a flat list: ``{name, depth, parent, children}`` nodes in
    depth-first order (each parent right before its descendants), siblings in the order of ``snapshots``
    (``list_snapshots`` gives them oldest first).

    Flat, so that a chain of hundreds of snapshots stays a shallow structure: nested nodes would be
    two levels deeper per generation, beyond what Ansible can pass around in a result. A snapshot whose
    parent is not in ``snapshots`` is a root (``parent`` None); ``children`` are names.
    """
    nodes = {snap['name']: {'name': snap['name'], 'depth': 0, 'parent': None, 'children': []} for snap in snapshots}
    roots = []
    for snap in snapshots:
        if snap['parent'] in nodes:
            nodes[snap['name']]['parent'] = snap['parent']
            nodes[snap['parent']]['children'].append(snap['name'])
        else:
            roots.append(snap['name'])
    ordered = []
    stack = [(name, 0) for name in reversed(roots)]
    while stack:
        name, depth = stack.pop()
        node = nodes[name]
        node['depth'] = depth
        ordered.append(node)
        stack.extend((child, depth + 1) for child in reversed(node['children']))
    return ordered


def domain_state(dom: t.Any) -> str:
    return DOMAIN_STATES.get(dom.state(0)[0], 'unknown')


AGENT_CHANNEL = 'org.qemu.guest_agent.0'


def has_agent_channel(dom: t.Any, xml: str | None = None) -> bool:
    """Whether the domain has the virtio channel qemu-guest-agent talks through (``xml``: its XML, if read)."""
    targets = ET.fromstring(xml or dom.XMLDesc(0)).findall('devices/channel/target')
    return any(target.get('name') == AGENT_CHANNEL for target in targets)


def domain_disks(dom: t.Any, xml: str | None = None) -> list[dict[str, t.Any]]:
    """The disks of a domain that a snapshot would cover: target, format, file (``xml``: its XML, if read)."""
    root = ET.fromstring(xml or dom.XMLDesc(0))
    disks = []
    for disk in root.findall('devices/disk'):
        if disk.get('device', 'disk') != 'disk' or disk.find('readonly') is not None:
            continue  # CD-ROMs and read-only disks are never snapshotted
        driver = disk.find('driver')
        source = disk.find('source')
        target = disk.find('target')
        disks.append({
            'name': target.get('dev') if target is not None else None,
            'type': disk.get('type'),
            'format': driver.get('type') if driver is not None else None,
            'file': (source.get('file') or source.get('dev') or source.get('name')) if source is not None else None,
            'snapshot': disk.get('snapshot'),
        })
    return disks


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


# virDomainState PAUSED, and the virDomainPausedReason values libvirt uses while a job writes the memory
STATE_PAUSED = 3
_JOB_PAUSE_REASONS = {3: 'save', 9: 'snapshot'}
CONTROL_OK = 0  # virDomainControlState: no job holds the domain


def domain_busy(dom: t.Any) -> bool:
    """Whether a libvirt job is talking to QEMU for the domain right now (libvirt's control info).

    An internal snapshot or a revert shows for its whole length (one long monitor command);
    an asynchronous job (a save, the block commit of an external snapshot's deletion) shows
    only while it calls QEMU, not while it waits for QEMU's progress.
    """
    try:
        return dom.controlInfo(0)[0] != CONTROL_OK
    except LibvirtError:
        return False  # drivers without control info (the test driver) run no jobs in the background


def in_progress(dom: t.Any, snap: t.Any) -> bool:
    """Whether ``snap`` is still being taken: libvirt lists a snapshot from the start of its creation.

    It is when a job holds the domain that started no earlier than the snapshot was created
    (a few seconds of slack: libvirt stamps the snapshot just before it pauses the guest).
    An older snapshot under an unrelated job (a backup, a migration) is not waited for.
    """
    try:
        control, _details, elapsed_ms = dom.controlInfo(0)
    except LibvirtError:
        return False  # drivers without control info (the test driver) run no jobs in the background
    if control == CONTROL_OK:
        return False
    created = parse_snapshot_xml(snap.getXMLDesc(0))['creation_time_epoch']
    return created is not None and created >= time.time() - elapsed_ms / 1000 - IN_PROGRESS_SLACK


IN_PROGRESS_SLACK = 5


def wait_idle(dom: t.Any, busy_timeout: float) -> None:
    """Wait, up to ``busy_timeout`` seconds, until no libvirt job holds ``dom``."""
    deadline = time.monotonic() + busy_timeout
    delay = 0.1
    while domain_busy(dom):
        if time.monotonic() + delay > deadline:
            raise SnapshotError(
                f'Domain "{dom.name()}" is still busy with another job (a snapshot, revert or save by another '
                f'run or tool) after {busy_timeout:g} seconds; "virsh domcontrol {dom.name()}" shows how long it '
                'has been running. Re-run when it is done, or raise busy_timeout.', domain=dom.name())
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def resume_interrupted(dom: t.Any, busy_timeout: float) -> str | None:
    """Resume a domain left paused by a snapshot or save job that libvirtd did not finish.

    libvirt pauses a running domain while an internal snapshot writes its memory (paused
    reason "save") and resumes it at the end. If libvirtd is killed meanwhile, QEMU finishes
    writing, but libvirt 9.0 does not resume the domain when it comes back: the guest stays
    paused for ever. A domain paused for such a reason while no job holds it can only be that;
    resuming it restores the state it was in. While a job still holds it, it is another run's
    snapshot or save in progress: libvirt resumes the domain itself when that ends. Returns a
    warning when the domain was resumed.
    """
    state, reason = dom.state(0)
    if state != STATE_PAUSED or reason not in _JOB_PAUSE_REASONS or domain_busy(dom):
        return None
    try:
        # libvirt's job lock makes this wait for an asynchronous job that still runs (a save)
        retry_busy(dom.resume, busy_timeout)
    except LibvirtError as exc:
        if domain_state(dom) != 'paused':
            return None  # a job was still running after all, and its end settled the state (a save shuts off)
        raise SnapshotError(describe(exc, f'Resuming domain "{dom.name()}", left paused by an unfinished '
                                          f'{_JOB_PAUSE_REASONS[reason]} job'), domain=dom.name()) from None
    return (f'Domain "{dom.name()}" was paused (reason: {_JOB_PAUSE_REASONS[reason]}) with no libvirt job running: '
            'left so by a snapshot or save that libvirtd did not finish (it stopped or restarted during it). '
            'It was resumed.')


# Room needed besides the guest's memory by a snapshot with memory: device memory (video RAM, ROMs) and
# device state are saved with it.
MEMORY_SNAPSHOT_MARGIN = 64 << 20
# Less free space than this under the image after a failed memory snapshot: the storage ran full.
STORAGE_FULL = 16 << 20


def _memory_disk(dom: t.Any, disks: list[dict[str, t.Any]] | None = None) -> dict[str, t.Any] | None:
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


def check_free_space(dom: t.Any, disks: list[dict[str, t.Any]] | None = None) -> None:
    """Refuse a snapshot with memory that may not fit on the file system of the image that would hold it.

    A memory snapshot that runs out of space fails, and what QEMU wrote of the memory until then
    stays allocated in the image: the file system is full afterwards, and QEMU pauses the guest at
    its next write that needs room. Call only when the disks are this machine's files (local URI).
    ``disks``: as domain_disks, when already read.
    """
    disk = _memory_disk(dom, disks)
    free = free_bytes(disk['file']) if disk else None
    if disk is None or free is None:
        return
    memory = dom.info()[2] * 1024  # the guest's current memory, KiB
    needed = memory + MEMORY_SNAPSHOT_MARGIN
    if free < needed:
        raise SnapshotError(
            f'Domain "{dom.name()}": a snapshot with memory needs up to {needed >> 20} MiB (the guest\'s '
            f'{memory >> 20} MiB of memory and {MEMORY_SNAPSHOT_MARGIN >> 20} MiB of device state) on the file '
            f'system of {disk["file"]}, and it has {free >> 20} MiB free. Nothing was changed: a memory snapshot '
            'that runs out of space leaves the file system full, and the guest is paused at its next write. '
            'Free space there, or take a disk-only snapshot (disk_only: true).',
            domain=dom.name(), needed=needed, free=free)


def storage_full_note(dom: t.Any) -> str:
    """After a failed memory snapshot: what is left when the storage under the memory image is (nearly) full."""
    disk = _memory_disk(dom)
    free = free_bytes(disk['file']) if disk else None
    if disk is None or free is None or free >= STORAGE_FULL:
        return ''
    return (f' The file system of {disk["file"]} is full ({free >> 20} MiB free): the memory ran out of room. '
            'No snapshot was recorded and the image is intact, but QEMU keeps what it wrote of the memory '
            'allocated in it (a later snapshot reuses that room): free space there now, a guest that cannot '
            'write to its disk is paused.')


def is_local_uri(uri: str) -> bool:
    """Whether the URI names libvirt on this machine (so its files are this machine's files)."""
    return parse_uri(uri).host.lower() in ('', 'localhost')  # not urlsplit: a password may hold "/", "#", "@"


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
    disk = _memory_disk(dom, disks)
    if disk is None or not os.path.isfile(disk['file']):
        return
    try:
        mode = os.stat(disk['file']).st_mode & 0o7777
        if mode & 0o007:
            os.chmod(disk['file'], mode & ~0o007)
    except OSError:
        pass  # not ours to change (another owner, a read-only mount): the file keeps the mode it had


def create_snapshot(dom: t.Any, name: str, description: str | None = None, plan: t.Any = None,
                    quiesce: bool = False, local: bool = True, busy_timeout: float = 0,
                    disks: list[dict[str, t.Any]] | None = None) -> tuple[dict[str, t.Any], bool]:
    """Take snapshot ``name`` of ``dom``; returns its facts and whether this call made it.

    ``plan``: the kind to take (a _kind.Plan; None: libvirt's default, internal).
    When libvirt refuses because another run made the same name meanwhile,
    that snapshot is returned: one snapshot per name is the goal.
    ``local``: the module runs where the disks are, so overlay modes can be fixed.
    ``busy_timeout``: how long to keep trying while another job holds the domain.
    ``disks``: the domain's disks as domain_disks, when already read before the snapshot.
    """
    external = plan is not None and plan.location == 'external'
    flags = 0
    if external:
        flags = CREATE_ATOMIC | (CREATE_DISK_ONLY if plan.memory == 'no' else 0)
    if quiesce:
        flags |= CREATE_QUIESCE
    try:
        xml = build_snapshot_xml(name, description, plan)
        snap = retry_busy(lambda: dom.snapshotCreateXML(xml, flags), busy_timeout)
    except LibvirtError as exc:
        if connection_lost(exc):
            raise SnapshotError(
                describe(exc, f'Creating snapshot "{name}" of domain "{dom.name()}"')
                + '. libvirtd may have finished the snapshot, or left it in the disk images only, unrecorded; '
                'a re-run of this task finds out and finishes the job (it takes an unrecorded internal snapshot '
                'again, which replaces it, and resumes a guest left paused).',
                domain=dom.name()) from None
        existing = lookup_snapshot(dom, name)
        if existing is None:
            note = storage_full_note(dom) if local and not external else ''
            raise SnapshotError(describe(exc, f'Creating snapshot "{name}" of domain "{dom.name()}"') + note,
                                domain=dom.name()) from None
        return snapshot_facts(existing, dom.name()), False
    facts = snapshot_facts(snap, dom.name(), new=True)
    if local and facts['location'] == 'external':
        tighten_modes(facts)
    elif local and facts['memory'] == 'internal':
        hide_memory(dom, disks)
    return facts, True


def delete_snapshot(dom: t.Any, name: str, busy_timeout: float = 0) -> bool:
    """Delete snapshot ``name`` of ``dom`` alone (its children go to its parent; an external one is merged into
    the image below it by a block commit). Returns False when it no longer exists (another run deleted it)."""
    snap = lookup_snapshot(dom, name)
    if snap is None:
        return False
    try:
        retry_busy(lambda: snap.delete(0), busy_timeout)
    except LibvirtError as exc:
        if error_code(exc) == ERR_NO_DOMAIN_SNAPSHOT or lookup_snapshot(dom, name) is None:
            return False
        text = str(exc)
        if 'external' in text and ('not a leaf' in text or 'non-leaf' in text or 'children' in text):
            raise SnapshotError(
                f'Deleting snapshot "{name}" of domain "{dom.name()}" failed: libvirt deletes an external snapshot '
                'that has children only while the domain runs on its branch of the tree, and a revert to another '
                'snapshot has moved the domain off it. Nothing was deleted. Delete the snapshots below it first, '
                f'newest first, or delete it with children: true. (libvirt said: {text})', domain=dom.name()) from None
        raise SnapshotError(describe(exc, f'Deleting snapshot "{name}" of domain "{dom.name()}"'),
                            domain=dom.name()) from None
    return True


def delete_with_descendants(dom: t.Any, name: str, descendants: list[str], busy_timeout: float = 0) -> None:
    """Delete snapshot ``name`` and its ``descendants``. libvirt deletes a tree of internal snapshots in one call,
    but refuses that for external ones ("deletion of external children disk snapshots not supported"): those are
    deleted one at a time, every child before its parent, so each block commit has one overlay to merge."""
    snap = lookup_snapshot(dom, name)
    if snap is None:
        return
    tree = [s for s in list_snapshots(dom) if s['name'] in set(descendants) | {name}]
    if all(s['location'] == 'internal' for s in tree):
        try:
            retry_busy(lambda: snap.delete(DELETE_CHILDREN), busy_timeout)
        except LibvirtError as exc:
            if lookup_snapshot(dom, name) is not None:
                raise SnapshotError(describe(exc, f'Deleting snapshot "{name}" of domain "{dom.name()}" and its '
                                                  'descendants'), domain=dom.name()) from None
        return
    for item in reversed(tree):  # list_snapshots puts parents before children
        delete_snapshot(dom, item['name'], busy_timeout)


def summary(facts: dict[str, t.Any] | None) -> dict[str, t.Any]:
    """What --diff shows of a snapshot: its existence and the user-settable fields."""
    if facts is None:
        return {'state': 'absent'}
    return {
        'state': 'present',
        'name': facts['name'],
        'description': facts.get('description'),
        'location': facts.get('location'),
    }


_DURATION = re.compile(r'([0-9]+)\s*([smhdw])', re.ASCII)
_ASCII_DIGITS = re.compile('[0-9]+', re.ASCII)


def _bounded_int(digits: str) -> int:
    """int(digits), or more than DURATION_MAX for a number too long to be a duration (no huge int is made)."""
    return int(digits) if len(digits) <= 20 else DURATION_MAX + 1


_UNIT_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}


# The longest duration taken: 1000 years (longer ones reach before the epoch, and beyond what a float holds).
DURATION_MAX = 1000 * 366 * 86400


def parse_duration(text: str, what: str = 'older_than') -> int:
    """``'12h'``, ``'7d'``, ``'1d12h'``, ``'90m'``, ``'3600'`` -> seconds (ASCII digits only).

    ``what``: the option, for messages.
    """
    text = str(text).strip().lower()
    pos = 0
    total = 0
    if _ASCII_DIGITS.fullmatch(text):
        total, pos = _bounded_int(text), len(text)
    else:
        for match in _DURATION.finditer(text):
            if match.start() != pos and text[pos:match.start()].strip():
                break
            total += _bounded_int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
    if not text or pos == 0 or text[pos:].strip():
        raise SnapshotError(f'Cannot read the duration "{text[:40]}" of {what}: use a number of seconds or '
                            'units s, m, h, d, w such as 12h, 7d or 1d12h.')
    if total > DURATION_MAX:
        raise SnapshotError(f'The duration "{text[:40]}" of {what} is longer than 1000 years; '
                            'use a number of seconds or units s, m, h, d, w such as 12h, 7d or 1d12h.')
    return total
