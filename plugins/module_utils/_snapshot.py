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
import typing as t
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    ERR_NO_DOMAIN_SNAPSHOT,
    LibvirtError,
    SnapshotError,
    describe,
    error_code,
    retry_busy,
)

# virDomainState -> the words virsh uses
DOMAIN_STATES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused',
    4: 'shutdown', 5: 'shutoff', 6: 'crashed', 7: 'pmsuspended',
}

# libvirt flag values (LIBVIRT_NOTES.md); named here so the code reads without the binding
CREATE_REDEFINE = 1
CREATE_CURRENT = 2
CREATE_DISK_ONLY = 16
CREATE_QUIESCE = 64
CREATE_ATOMIC = 128
DELETE_CHILDREN = 1
LIST_EXTERNAL = 512
REVERT_RUNNING = 1
REVERT_PAUSED = 2
REVERT_FORCE = 4

# Control characters cannot be stored in XML 1.0 and make no sense in a name.
_CONTROL = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def validate_name(name: t.Any, what: str = 'snapshot name') -> str:
    """Check a snapshot name before anything is sent to libvirt."""
    if not isinstance(name, str) or not name.strip():
        raise SnapshotError(f'The {what} must not be empty.')
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


def build_snapshot_xml(name: str, description: str | None = None, disk_only: bool = False) -> str:
    """The ``<domainsnapshot>`` document for a new snapshot."""
    root = ET.Element('domainsnapshot')
    ET.SubElement(root, 'name').text = name
    if description is not None:
        ET.SubElement(root, 'description').text = description
    if disk_only:
        # libvirt picks overlay files next to each disk: <image>.<snapshot name>
        ET.SubElement(root, 'memory', snapshot='no')
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
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def parse_snapshot_xml(xml: str) -> dict[str, t.Any]:
    """The facts of one snapshot, from its XML description."""
    root = ET.fromstring(xml)
    epoch_text = root.findtext('creationTime')
    epoch = int(epoch_text) if epoch_text and epoch_text.isdigit() else None
    memory_node = root.find('memory')
    memory = memory_node.get('snapshot') if memory_node is not None else None
    disks = []
    for disk in root.findall('disks/disk'):
        source = disk.find('source')
        disks.append({
            'name': disk.get('name'),
            'snapshot': disk.get('snapshot') or 'internal',
            'file': source.get('file') if source is not None else None,
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
        'disks': disks,
    }


def snapshot_facts(snap: t.Any, domain_name: str) -> dict[str, t.Any]:
    """All facts of a libvirt snapshot object (children and current included)."""
    facts = parse_snapshot_xml(snap.getXMLDesc(0))
    facts['domain'] = domain_name
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
    """Nested ``{name, children}`` nodes from the ordered list of ``list_snapshots``."""
    nodes = {s['name']: {'name': s['name'], 'children': []} for s in snapshots}
    roots = []
    for snap in snapshots:
        node = nodes[snap['name']]
        if snap['parent'] in nodes:
            nodes[snap['parent']]['children'].append(node)
        else:
            roots.append(node)
    return roots


def domain_state(dom: t.Any) -> str:
    return DOMAIN_STATES.get(dom.state(0)[0], 'unknown')


def domain_disks(dom: t.Any) -> list[dict[str, t.Any]]:
    """The disks of a domain that a snapshot would cover: target, format, file."""
    root = ET.fromstring(dom.XMLDesc(0))
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


def check_internal_possible(dom: t.Any) -> None:
    """Refuse an internal snapshot where libvirt would refuse it or lose data.

    * every disk must be qcow2 (raw disks cannot hold internal snapshots);
    * no external snapshot may exist: internal snapshots on top of external
      overlays are the mix in which libvirt before 11.0 loses data.
    """
    name = dom.name()
    for disk in domain_disks(dom):
        if disk['snapshot'] == 'no':
            continue
        if disk['format'] != 'qcow2':
            raise SnapshotError(
                f'Domain "{name}": disk {disk["name"]} ({disk["file"]}) is {disk["format"] or "of unknown format"}; '
                'an internal snapshot needs every disk in qcow2 format. Convert the disk '
                '(qemu-img convert -O qcow2) or take an external snapshot with disk_only: true.',
                domain=name, disk=disk['name'])
    try:
        external = dom.listAllSnapshots(LIST_EXTERNAL)
    except LibvirtError:
        external = []  # drivers without the filter (the test driver) have no external snapshots
    if external:
        raise SnapshotError(
            f'Domain "{name}" has external (disk-only) snapshots ({", ".join(sorted(s.getName() for s in external))}); '
            'an internal snapshot on top of external overlays is refused because libvirt before 11.0 '
            'can lose data with that mix. Delete the external snapshots first, or use disk_only: true.',
            domain=name)


def is_local_uri(uri: str) -> bool:
    """Whether the URI names libvirt on this machine (so its files are this machine's files)."""
    return urlsplit(uri).hostname in (None, '', 'localhost')


def tighten_modes(facts: dict[str, t.Any]) -> None:
    """Overlays hold guest data: readable by their owner only (libvirt < 11.10 makes offline ones 0644)."""
    for disk in facts['disks']:
        path = disk.get('file')
        if disk.get('snapshot') == 'external' and path and os.path.isfile(path):
            mode = os.stat(path).st_mode & 0o777
            if mode & 0o077:
                os.chmod(path, mode & 0o700)


def create_snapshot(dom: t.Any, name: str, description: str | None = None, disk_only: bool = False,
                    quiesce: bool = False, local: bool = True,
                    busy_timeout: float = 0) -> tuple[dict[str, t.Any], bool]:
    """Take snapshot ``name`` of ``dom``; returns its facts and whether this call made it.

    When libvirt refuses because another run made the same name meanwhile,
    that snapshot is returned: one snapshot per name is the goal.
    ``local``: the module runs where the disks are, so overlay modes can be fixed.
    ``busy_timeout``: how long to keep trying while another job holds the domain.
    """
    flags = CREATE_DISK_ONLY | CREATE_ATOMIC if disk_only else 0
    if quiesce:
        flags |= CREATE_QUIESCE
    try:
        xml = build_snapshot_xml(name, description, disk_only)
        snap = retry_busy(lambda: dom.snapshotCreateXML(xml, flags), busy_timeout)
    except LibvirtError as exc:
        existing = lookup_snapshot(dom, name)
        if existing is None:
            raise SnapshotError(describe(exc, f'Creating snapshot "{name}" of domain "{dom.name()}"'),
                                domain=dom.name()) from None
        return snapshot_facts(existing, dom.name()), False
    facts = snapshot_facts(snap, dom.name())
    if local and facts['location'] == 'external':
        tighten_modes(facts)
    return facts, True


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


_DURATION = re.compile(r'(\d+)\s*([smhdw])')
_UNIT_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}


def parse_duration(text: str) -> int:
    """``'12h'``, ``'7d'``, ``'1d12h'``, ``'90m'``, ``'3600'`` -> seconds."""
    text = str(text).strip().lower()
    if text.isdigit():
        return int(text)
    pos = 0
    total = 0
    for match in _DURATION.finditer(text):
        if match.start() != pos and text[pos:match.start()].strip():
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos == 0 or text[pos:].strip():
        raise SnapshotError(f'Cannot read the duration "{text}": use a number of seconds or '
                            'units s, m, h, d, w such as 12h, 7d or 1d12h.')
    return total
