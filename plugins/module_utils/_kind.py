# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""Which kind of snapshot a domain can take, and revert, on the libvirt that runs it.

One place decides between an internal snapshot (inside the qcow2 images) and an external one
(new overlay files, and a memory file for a running domain), from what the running libvirt, the
domain's firmware and disks and its existing snapshots allow. Every rule below names the libvirt
release that brought or fixed the behaviour it guards; docs/support-matrix.md lists them.
"""

from __future__ import annotations

import os
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import (
    DOMAIN_STATES,
    AgentUnsupported,
    domain_disks,
    domain_root,
    domain_state,
    has_agent_channel,
    agent_freeze_problem,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._guards import (
    check_free_space,
    check_monitor_name,
    check_quiesce,
    check_room,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import LibvirtError, SnapshotError, version_text
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import (
    LIST_EXTERNAL,
    LIST_INTERNAL,
    list_snapshots,
)

# libvirt versions as getLibVersion() reports them: major * 1,000,000 + minor * 1,000 + micro
EXTERNAL_REVERT = 9_009_000  # reverting external snapshots (9.9)
PFLASH_INTERNAL = 10_010_000  # internal snapshots of running UEFI guests with qcow2 NVRAM (10.9; revert/delete fixed in 10.10)
# Upstream 11.2 and 11.3 fail every revert to an internal snapshot with memory ("Device ... is writable but does
# not support snapshots", fixed in 11.4); Debian 13's 11.3.0-3+deb13u3 and RHEL carry the fix, so the version alone
# does not tell. snapshot_revert explains the error when it meets it.
INTERNAL_REVERT_BROKEN = (11_002_000, 11_004_000)

LOCATIONS = ('auto', 'internal', 'external')
NAME_MAX = 255  # bytes of one file name on Linux file systems


def firmware(xml: str | ET.Element) -> dict[str, t.Any]:
    """The firmware of a domain from its XML (or its parsed tree):
    ``{'firmware': 'efi'|'bios', 'pflash': bool, 'nvram', 'nvram_format'}``.

    UEFI firmware is loaded as pflash (a writable NVRAM beside the read-only code). libvirt makes the NVRAM a raw
    file unless the domain asks for qcow2 (``<nvram format='qcow2'>``, libvirt 10.9 or later).
    """
    os_node = domain_root(None, xml).find('os')  # the tree as given, or parsed from the text
    if os_node is None:
        return {'firmware': 'bios', 'pflash': False, 'nvram': None, 'nvram_format': None}
    loader = os_node.find('loader')
    nvram = os_node.find('nvram')
    efi = os_node.get('firmware') == 'efi' or (loader is not None and loader.get('type') == 'pflash')
    pflash = efi and (loader is None or loader.get('type') in (None, 'pflash'))
    nvram_format = None
    if pflash:
        nvram_format = (nvram.get('format') if nvram is not None else None) or 'raw'
    return {
        'firmware': 'efi' if efi else 'bios',
        'pflash': pflash,
        'nvram': nvram.text.strip() if nvram is not None and nvram.text else None,
        'nvram_format': nvram_format,
    }


def overlay_path(source: str, snapshot: str) -> str:
    """The overlay file libvirt makes for a disk when an external snapshot names none.

    libvirt drops the last suffix of the disk's present file and appends ``.<snapshot name>``:
    ``web1.qcow2`` becomes ``web1.pre-upgrade``, and after it ``web1.nightly``.
    """
    head, tail = os.path.split(source)
    stem = tail.rsplit('.', 1)[0] if '.' in tail else tail
    return os.path.join(head, f'{stem}.{snapshot}')


def memory_path(disks: list[dict[str, t.Any]], snapshot: str) -> str | None:
    """Where the memory of an external snapshot goes: beside the first disk's overlay, ``<overlay>.memory``."""
    for disk in disks:
        if disk['snapshot'] != 'no' and disk['type'] == 'file' and disk['file']:
            return overlay_path(disk['file'], snapshot) + '.memory'
    return None


def names_at(dom: t.Any, location: str) -> list[str]:
    """The names of the ``location`` ('internal' or 'external') snapshots of ``dom`` (one call, no XML read)."""
    flags = LIST_INTERNAL if location == 'internal' else LIST_EXTERNAL
    try:
        return sorted(s.getName() for s in dom.listAllSnapshots(flags))
    except LibvirtError:  # drivers without these filters: read every snapshot
        return sorted(s['name'] for s in list_snapshots(dom) if s['location'] == location)


class Plan(t.NamedTuple):
    """The snapshot to take: ``location`` internal/external, ``memory`` internal/external/no, and why."""
    location: str
    memory: str
    reason: str
    overlays: list[dict[str, str]]
    memory_file: str | None
    warnings: list[str]


class KindPlanner:
    """Decides the kind of a new snapshot of one domain. Raises SnapshotError, before anything is made, where
    the kind asked for cannot be made, or (for ``auto``) where no snapshot that can be reverted can be made."""

    def __init__(self, dom: t.Any, xml: str | ET.Element, disks: list[dict[str, t.Any]], state: str, version: int,
                 local: bool) -> None:
        self.dom = dom
        self.domain = dom.name()
        self.disks = [d for d in disks if d['snapshot'] != 'no']
        self.excluded = [d['name'] for d in disks if d['snapshot'] == 'no']
        self.state = state
        self.running = state in ('running', 'paused')
        self.version = version
        self.firmware = firmware(xml)
        self.local = local
        self._names: dict[str, list[str]] = {}

    # Each list is read when a rule needs it, once: an internal snapshot that can be made asks only whether there
    # are external ones, an external one only whether there are internal ones (one libvirt call a new snapshot)

    @property
    def internal_snapshots(self) -> list[str]:
        if 'internal' not in self._names:
            self._names['internal'] = names_at(self.dom, 'internal')
        return self._names['internal']

    @property
    def external_snapshots(self) -> list[str]:
        if 'external' not in self._names:
            self._names['external'] = names_at(self.dom, 'external')
        return self._names['external']

    # Why each kind cannot be made (None: it can)

    def why_not_internal(self, disk_only: bool) -> str | None:
        if disk_only and self.running:
            return ('an internal snapshot of a running domain always holds its memory (libvirt refuses an internal '
                    'disk-only one)')
        for disk in self.disks:
            if disk['format'] != 'qcow2':
                return (f'disk {disk["name"]} ({disk["file"]}) is {disk["format"] or "of unknown format"}, and an '
                        'internal snapshot needs every disk in qcow2 format')
        if self.running and self.excluded:
            return (f'disk {", ".join(self.excluded)} is left out of snapshots (snapshot="no"), and libvirt takes a '
                    'snapshot with memory only of every disk')
        fw = self.firmware
        if self.running and fw['pflash'] and (fw['nvram_format'] != 'qcow2' or self.version < PFLASH_INTERNAL):
            if fw['nvram_format'] != 'qcow2':
                return (f'the domain boots with UEFI and its NVRAM{" " + fw["nvram"] if fw["nvram"] else ""} is raw: '
                        'libvirt takes internal snapshots of a running UEFI guest only with a qcow2 NVRAM '
                        '(libvirt 10.10 or later)')
            return (f'the domain boots with UEFI: libvirt {version_text(self.version)} cannot take internal '
                    'snapshots of a running UEFI guest (libvirt 10.10 or later can, with a qcow2 NVRAM)')
        if self.external_snapshots:
            return (f'the domain has external snapshots ({", ".join(self.external_snapshots)}), and internal '
                    'snapshots on top of external overlays are the mix in which libvirt before 11.0 loses data')
        return None

    def why_not_external(self, snapshot: str, memory: bool) -> str | None:
        if self.internal_snapshots:
            return (f'the domain has internal snapshots ({", ".join(self.internal_snapshots)}), and libvirt cannot '
                    'delete an external snapshot whose parent is internal, nor revert between the two kinds without '
                    'leaving overlays out of step with their images')
        if self._has_checkpoints():
            return ('the domain has checkpoints (incremental backups), and libvirt refuses external snapshots '
                    'of a domain with checkpoints')
        for disk in self.disks:
            if disk['type'] != 'file' or not disk['file']:
                return (f'disk {disk["name"]} is not a plain file ({disk["type"]}); the collection lets libvirt name '
                        'the overlay files, which it does only for files')
        files = [overlay_path(d['file'], snapshot) for d in self.disks]
        mem = memory_path(self.disks, snapshot) if memory else None
        if memory and mem is None:
            return 'no disk is a file that the memory file could be put beside'
        for path in files + ([mem] if mem else []):
            if len(os.path.basename(path).encode()) > NAME_MAX:
                return (f'the file {path} would have a name longer than {NAME_MAX} bytes (the disk file name, a dot '
                        'and the snapshot name); choose a shorter snapshot name')
            if self.local and os.path.lexists(path):
                return f'the file {path} exists already (another snapshot, or a file left behind)'
        if len(set(files)) != len(files):
            return 'two disks would get the same overlay file name (their files differ only in the suffix)'
        return None

    def _has_checkpoints(self) -> bool:
        try:
            return bool(self.dom.listAllCheckpoints(0))
        except (LibvirtError, AttributeError):  # drivers (the test driver) or bindings without checkpoints
            return False

    # The decision

    def plan(self, snapshot: str, location: str, disk_only: bool) -> Plan:
        revertable = self.version >= EXTERNAL_REVERT
        warnings: list[str] = []
        internal_problem = self.why_not_internal(disk_only)
        if location == 'internal':
            if internal_problem:
                self._refuse(snapshot, f'an internal snapshot cannot be made: {internal_problem}', location)
            return self._internal('asked for (location: internal)')
        if location == 'auto' and not disk_only and internal_problem is None:
            return self._internal('internal snapshots work for this domain and libvirt')
        memory = self.running and not disk_only
        external_problem = self.why_not_external(snapshot, memory)
        if external_problem:
            if location == 'external' or disk_only:
                self._refuse(snapshot, f'an external snapshot cannot be made: {external_problem}', location)
            self._refuse(snapshot, f'no snapshot that can be reverted can be made. Internal: {internal_problem}. '
                                   f'External: {external_problem}', location)
        if not revertable:
            text = (f'libvirt {version_text(self.version)} cannot revert external snapshots (9.9 or later can); '
                    'this one can be deleted (its overlays are merged back) but not reverted to')
            if location == 'auto' and not disk_only:
                self._refuse(snapshot, f'no snapshot that can be reverted can be made. Internal: {internal_problem}. '
                                       f'External: {text}', location)
            warnings.append(f'Snapshot "{snapshot}" of domain "{self.domain}": {text}.')
        if location == 'external':
            reason = 'asked for (location: external)'
        elif disk_only:
            reason = 'asked for (disk_only: true)'
        else:
            reason = f'an internal snapshot cannot be made: {internal_problem}'
        return Plan('external', 'external' if memory else 'no', reason,
                    [{'disk': d['name'], 'file': overlay_path(d['file'], snapshot), 'backing_file': d['file']}
                     for d in self.disks],
                    memory_path(self.disks, snapshot) if memory else None, warnings)

    def _internal(self, reason: str) -> Plan:
        return Plan('internal', 'internal' if self.running else 'no', reason, [], None, [])

    def _refuse(self, snapshot: str, why: str, location: str) -> t.NoReturn:
        fixes = []
        fw = self.firmware
        if any(d['format'] != 'qcow2' for d in self.disks):
            fixes.append('convert the disks to qcow2 (qemu-img convert -O qcow2) for internal snapshots')
        if fw['pflash'] and fw['nvram_format'] != 'qcow2':
            fixes.append('on libvirt 10.10 or later, give the domain a qcow2 NVRAM (<nvram format="qcow2">) for '
                         'internal snapshots')
        if self.version < EXTERNAL_REVERT and location != 'internal':
            # an upgrade makes external snapshots revertable; it does nothing for an internal one
            fixes.append('upgrade libvirt to 9.9 or later, which reverts external snapshots')
        if self.running and fw['pflash']:
            fixes.append('take the snapshot while the domain is shut off')
        if location != 'auto':
            fixes.append('leave location at auto, which picks a kind that works')
        elif self.version < EXTERNAL_REVERT:
            fixes.append('location: external, to take a snapshot that this libvirt can delete but not revert')
        hint = f' What would work: {"; ".join(fixes)}.' if fixes else ''
        raise SnapshotError(f'Snapshot "{snapshot}" of domain "{self.domain}": {why}. Nothing was made.{hint}',
                            domain=self.domain)


def choose_disk_only(planner: KindPlanner, root: ET.Element, name: str, location: str,
                     agent_timeout: int) -> tuple[bool, str]:
    """disk_only: auto. A disk-only snapshot (quiesced: the guest stalls for milliseconds) where it can be reverted and
    the guest agent answers, else one with memory (the guest is paused while its memory is written). Whether, and
    why. The agent is asked last: only a domain that could take a revertable disk-only snapshot waits for it."""
    if planner.state != 'running':
        return False, 'the domain is not running'
    if location == 'internal':
        return False, 'location: internal was asked for'
    if planner.version < EXTERNAL_REVERT:
        return False, f'libvirt {version_text(planner.version)} cannot revert a disk-only snapshot (9.9 or later can)'
    if not has_agent_channel(planner.dom, root):
        return False, 'the domain has no guest agent channel'
    problem = planner.why_not_external(name, memory=False)
    if problem:
        return False, f'a disk-only snapshot cannot be made: {problem}'
    try:
        problem = agent_freeze_problem(planner.dom, agent_timeout)
    except AgentUnsupported as exc:
        problem = f'does not answer (this connection cannot ask it: {exc})'
    if problem is not None:
        return False, f'the guest agent {problem}'
    return True, 'the guest agent answers: a quiesced disk-only snapshot stalls the guest least'


def freeze_failed(msg: str) -> bool:
    """Whether libvirt's message of a failed quiesced snapshot says the guest agent did not freeze the file systems
    (it made nothing then)."""
    return "'guest-fsfreeze-freeze'" in msg or 'Guest agent is not responding' in msg


class Preflight(t.NamedTuple):
    """A new snapshot that passed every check: its plan, the domain's state and disks as read for it, whether it is
    quiesced, why it is disk-only or not (with disk_only: auto, else None), and the disk files whose free space could
    not be read (check_room, with a margin; else None)."""
    plan: Plan
    state: str
    disks: list[dict[str, t.Any]]
    quiesce: bool = False
    choice: str | None = None
    unchecked: dict[str, t.Any] | None = None


def preflight_snapshot(dom: t.Any, name: str, version: int, local: bool, location: str = 'auto',
                       disk_only: bool | str = False, quiesce: bool | str = False, agent_timeout: int = 2,
                       margin_mb: int | None = None) -> Preflight:
    """The one preflight of a new snapshot (the snapshot module's, and snapshot_revert's safety snapshot): reads the
    domain once (state, XML, disks), chooses disk-only or not for ``disk_only='auto'`` (and quiesces exactly then for
    ``quiesce='auto'``), refuses a quiesce that cannot work, then plans it: the kind, the name QEMU would get, and the
    room on the disks' file systems (the memory's, or with ``margin_mb`` every disk's, check_room). Raises
    SnapshotError before anything is made."""
    root = ET.fromstring(dom.XMLDesc(0))  # read and parsed once for every check
    # the XML of a domain that runs carries its id; one that does not is shut off (no libvirt call for its state)
    memory_kib = None
    if root.get('id') is None:
        state = 'shutoff'
    elif local:  # its state and its memory in one call: the room for a snapshot with memory is checked here
        info = dom.info()
        state, memory_kib = DOMAIN_STATES.get(info[0], 'unknown'), info[2]
    else:
        state = domain_state(dom)
    disks = domain_disks(dom, root)
    planner = KindPlanner(dom, root, disks, state, version, local)
    choice = None
    if disk_only == 'auto':
        disk_only, choice = choose_disk_only(planner, root, name, location, agent_timeout)
    if quiesce == 'auto':
        quiesce = disk_only
    elif quiesce and choice is not None and not disk_only:
        quiesce = False  # quiesce: true applies to the disk-only snapshot that disk_only: auto did not choose
    if quiesce:
        check_quiesce(dom, state, root)
    plan = planner.plan(name, location, bool(disk_only))
    if state in ('running', 'paused') and plan.location == 'internal':
        check_monitor_name(dom, name)
    unchecked = None
    if margin_mb is not None:
        unchecked = check_room(dom, name, disks, plan.memory, memory_kib, local, margin_mb)
    elif local and plan.memory != 'no':
        check_free_space(dom, disks, memory_kib)
    return Preflight(plan, state, disks, bool(quiesce), choice, unchecked)
