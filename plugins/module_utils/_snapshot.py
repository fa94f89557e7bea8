# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The snapshot model: libvirt snapshot XML to and from plain dicts, and the snapshots of a domain.

Builds and parses ``<domainsnapshot>`` documents, reads one snapshot's facts, looks a snapshot up,
lists a domain's snapshots as a tree (parents before children), tells whether a snapshot is still
being taken, and creates and deletes snapshots (a tree of them, too). The libvirt flag values of
snapshot calls are named here.

All XML is built and parsed with ``xml.etree``: a name or description is a
text node, never a piece of formatted markup, so nothing a user types can
reach the XML structure.
"""

from __future__ import annotations

import datetime
import time
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import (
    CONTROL_OK,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    ERR_NO_DOMAIN_SNAPSHOT,
    LibvirtError,
    SnapshotError,
    connection_lost,
    error_code,
    libvirt_errors,
    retry_busy,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._storage import (
    hide_memory,
    storage_full_note,
    tighten_modes,
)

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
    with libvirt_errors(f'Looking up snapshot "{name}" of domain "{dom.name()}"'):
        try:
            return dom.snapshotLookupByName(name, 0)
        except LibvirtError as exc:
            if error_code(exc) == ERR_NO_DOMAIN_SNAPSHOT:
                return None
            raise


def current_snapshot_name(dom: t.Any) -> str | None:
    """The name of the current snapshot of ``dom`` (the one a revert without a name goes to), or None."""
    return dom.snapshotCurrent(0).getName() if dom.hasCurrentSnapshot(0) else None


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

    def note(exc: BaseException) -> str:
        if connection_lost(exc):
            return ('. libvirtd may have finished the snapshot, or left it in the disk images only, unrecorded; '
                    'a re-run of this task finds out and finishes the job (it takes an unrecorded internal snapshot '
                    'again, which replaces it, and resumes a guest left paused).')
        return storage_full_note(dom) if local and not external else ''

    xml = build_snapshot_xml(name, description, plan)
    existing = None
    with libvirt_errors(f'Creating snapshot "{name}" of domain "{dom.name()}"', note, domain=dom.name()):
        try:
            snap = retry_busy(lambda: dom.snapshotCreateXML(xml, flags), busy_timeout)
        except LibvirtError as exc:
            # refused because another run made the same name meanwhile: that one is the snapshot
            existing = None if connection_lost(exc) else lookup_snapshot(dom, name)
            if existing is None:
                raise
    if existing is not None:
        return snapshot_facts(existing, dom.name()), False
    facts = snapshot_facts(snap, dom.name(), new=True)
    if local and facts['location'] == 'external':
        tighten_modes(facts)
    elif local and facts['memory'] == 'internal':
        hide_memory(dom, disks)
    return facts, True


def set_description(dom: t.Any, snap: t.Any, description: str, current: bool,
                    busy_timeout: float = 0) -> dict[str, t.Any]:
    """Give snapshot ``snap`` of ``dom`` another description, in place (libvirt's REDEFINE; ``current``: it is the
    current snapshot, and stays so). Returns its facts as they are then."""
    name = snap.getName()
    flags = CREATE_REDEFINE | (CREATE_CURRENT if current else 0)
    xml = replace_description(snap.getXMLDesc(0), description)
    with libvirt_errors(f'Updating the description of snapshot "{name}"', domain=dom.name()):
        retry_busy(lambda: dom.snapshotCreateXML(xml, flags), busy_timeout)
    return snapshot_facts(lookup_snapshot(dom, name), dom.name())


def delete_snapshot(dom: t.Any, name: str, busy_timeout: float = 0, snap: t.Any = None) -> bool:
    """Delete snapshot ``name`` of ``dom`` alone (its children go to its parent; an external one is merged into
    the image below it by a block commit). Returns False when it no longer exists (another run deleted it).
    ``snap``: its libvirt object, when the caller has just looked it up (one libvirt call less); deleted meanwhile,
    it is reported as gone all the same."""
    if snap is None:
        snap = lookup_snapshot(dom, name)
    if snap is None:
        return False
    with libvirt_errors(f'Deleting snapshot "{name}" of domain "{dom.name()}"', domain=dom.name()):
        try:
            retry_busy(lambda: snap.delete(0), busy_timeout)
        except LibvirtError as exc:
            if error_code(exc) == ERR_NO_DOMAIN_SNAPSHOT or lookup_snapshot(dom, name) is None:
                return False  # gone meanwhile (another run deleted it): as wanted
            text = str(exc)
            if 'external' in text and ('not a leaf' in text or 'non-leaf' in text or 'children' in text):
                raise SnapshotError(
                    f'Deleting snapshot "{name}" of domain "{dom.name()}" failed: libvirt deletes an external '
                    'snapshot that has children only while the domain runs on its branch of the tree, and a revert '
                    'to another snapshot has moved the domain off it. Nothing was deleted. Delete the snapshots below '
                    f'it first, newest first, or delete it with children: true. (libvirt said: {text})',
                    domain=dom.name()) from None
            raise
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
        with libvirt_errors(f'Deleting snapshot "{name}" of domain "{dom.name()}" and its descendants',
                            domain=dom.name()):
            try:
                retry_busy(lambda: snap.delete(DELETE_CHILDREN), busy_timeout)
            except LibvirtError:
                if lookup_snapshot(dom, name) is not None:
                    raise
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
