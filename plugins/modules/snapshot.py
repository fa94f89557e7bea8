#!/usr/bin/python
# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot
short_description: Create or delete a named snapshot of a libvirt domain
version_added: 0.1.0
description:
  - Takes a snapshot named O(name) of a KVM/QEMU domain, or deletes it. This is what C(virsh snapshot-create-as)
    and C(virsh snapshot-delete) do, made idempotent, checkable and safe.
  - A running domain gets a full snapshot (memory, CPU and disks), which O(kvm.snapshots.snapshot_revert#module:)
    brings back running as it was; the guest is paused while its memory is written. A shut-off domain gets a disk
    snapshot.
  - The kind is chosen by O(location). By default (V(auto)) the snapshot is internal (inside the qcow2 images)
    where libvirt can take and revert that, and external otherwise (UEFI guests with a raw NVRAM, raw disks),
    where libvirt 9.9 or later can revert it. The choice and its reason are in the result (RV(kind)) and the diff.
  - An external snapshot switches every disk to a new overlay file beside it (C(<image without suffix>.<snapshot
    name>)), and keeps the memory of a running domain in C(<overlay of the first disk>.memory).
  - With O(disk_only=true) the snapshot is external and disk-only; the guest is not paused.
  - Acts on one domain (O(domain)) or on many in one run (O(domains), batch mode).
  - For a snapshot before a change, one run can also choose the kind that stalls each guest least
    (O(disk_only=auto)), check the free space with a margin (O(free_space_margin_mb)) and refuse or replace the
    snapshot of an earlier change (O(conflicts)); these act only with O(state=present). The
    R(kvm.snapshots.pre_change role,ansible_collections.kvm.snapshots.pre_change_role) runs it so, once per
    hypervisor for a batch of guests.
author:
  - kvm.snapshots contributors (@kvm-snapshots)
extends_documentation_fragment:
  - kvm.snapshots._libvirt
  - kvm.snapshots._libvirt.jobs
  - kvm.snapshots._libvirt.batch
  - kvm.snapshots._libvirt.attributes
  - kvm.snapshots._attributes
attributes:
  check_mode:
    support: full
    details: Predicts C(changed) and the snapshot that would be made; nothing is created or deleted.
  diff_mode:
    support: full
  idempotent:
    support: full
    details:
      - O(state=present) on an existing name changes nothing (only a different O(description) is updated).
      - O(state=absent) on a missing name changes nothing.
options:
  name:
    description:
      - The snapshot name. Must not be empty, contain C(/) or start with C(.) (QEMU refuses those), hold control
        characters, or be longer than 247 bytes in UTF-8 (libvirt stores the snapshot in a file named after it).
      - Names with C(") or C(\\) work only while the domain is shut off. With the domain running or paused,
        libvirt 9.0 hands the name to QEMU's monitor unescaped, and QEMU would save, load or delete another
        snapshot, or none. So taking an internal snapshot of a running or paused domain under such a name is
        refused, and so is deleting one (O(state=absent), also a descendant with O(children=true)); shut the
        domain off and delete it then.
      - From libvirt 10.9 on, the same operations run as QEMU jobs named after the snapshot, and QEMU takes only
        letters, digits, C(.), C(-) and C(_) there; other names are refused for internal snapshots of a running
        or paused domain. External snapshots (O(location=external)) take any name.
      - Every other character is stored as XML text and never interpreted.
    type: str
    required: true
  state:
    description:
      - V(present) takes the snapshot unless one of that name exists.
      - V(absent) deletes it; its children are kept (attached to its parent) unless O(children=true).
    type: str
    choices: [present, absent]
    default: present
  description:
    description:
      - Free text stored with the snapshot. Any characters, stored exactly.
      - When the snapshot exists with another description, the description is updated in place.
      - Left out, an existing snapshot's description is not touched.
    type: str
  location:
    description:
      - Where the snapshot is kept.
      - V(internal) inside the qcow2 images of the disks (every disk must be qcow2; a running UEFI guest needs a
        qcow2 NVRAM and libvirt 10.10 or later).
      - V(external) in new overlay files beside the disks (any disk format), and for a running domain its memory
        in a file; reverting one needs libvirt 9.9 or later.
      - V(auto) picks internal where it can be taken and reverted on this libvirt, else external where that can be
        reverted, else fails before anything is made, saying why and what would work. On libvirt 11.2 and 11.3,
        whose internal reverts can fail, it picks external.
      - A domain keeps to one kind; internal snapshots on top of external ones (or the reverse) are refused.
      - Ignored for a snapshot that exists already.
    type: str
    choices: [auto, internal, external]
    default: auto
  disk_only:
    description:
      - V(true) takes an external, disk-only snapshot (no memory state, no pause of the guest).
      - V(auto) chooses for each domain, and says why in C(choice) of RV(kind) - a disk-only snapshot where the domain runs,
        libvirt can revert it (9.9 or later), O(location) is not V(internal), an external one can be made (no internal
        snapshots, every disk a file), the domain has a guest agent channel and its agent answers C(guest-info) within
        O(agent_timeout) seconds with the freeze and the thaw enabled (not disabled by qemu-ga's C(--block-rpcs));
        elsewhere a snapshot with memory (of a shut-off domain, of its disks). With
        O(quiesce=auto) the disk-only one is quiesced, so the guest stalls for milliseconds instead of being paused
        while its memory is written; if the agent then fails to freeze (a file system that cannot freeze, a failing
        fsfreeze hook), libvirt makes nothing and a snapshot with memory is taken instead, saying why.
      - Reverting to an external snapshot needs libvirt 9.9 or later; deleting one merges the overlay
        back into its backing image.
      - V(true), V(false) or V(auto) (any of Ansible's boolean words for the first two).
    type: raw
    default: false
  quiesce:
    description:
      - Freeze the guest's file systems through qemu-guest-agent while the snapshot is taken,
        so the disks are consistent as after a clean sync.
      - Needs a disk-only snapshot (O(disk_only=true), or V(auto) where it chooses one), a running domain with a
        guest agent channel, and qemu-guest-agent running in the guest; otherwise the task fails and nothing is made.
      - V(auto) quiesces exactly when the snapshot is disk-only. With O(disk_only=auto), V(true) applies only where a
        disk-only snapshot is chosen.
      - V(true), V(false) or V(auto).
    type: raw
    default: false
  agent_timeout:
    description:
      - Seconds the guest agent has to answer C(guest-info) when O(disk_only=auto) asks it whether it can freeze.
    type: int
    default: 2
  free_space_margin_mb:
    description:
      - Refuse the new snapshot, before anything is made, unless the file system under every file disk it covers
        has this many MiB free beyond what the snapshot writes there (the guest's memory and device state beside
        the first disk for a snapshot with memory; an overlay or internal snapshot starts empty).
      - Left out, only a snapshot with memory is checked, for the room its memory needs.
      - Free space is read where the module runs, so only with a local O(uri); through a remote URI the result
        names the files left unchecked (RV(results[].free_space_unchecked)).
    type: int
  conflicts:
    description:
      - A shell glob of snapshot names that must not be there beside O(name), such as V(pre-change-*) (the snapshot of
        an earlier change that was never accepted or rolled back).
      - What happens to them is O(conflicts_action). They are listed in RV(results[].conflicts).
      - An existing snapshot O(name) is never refused for them.
    type: str
  conflicts_action:
    description:
      - V(refuse) fails the domain, and makes nothing, while it has snapshots that O(conflicts) matches.
      - V(delete) deletes them once the snapshot O(name) is there (taken now or found), so that the domain always
        keeps one of them; they are listed in RV(results[].deleted).
    type: str
    choices: [refuse, delete]
    default: refuse
  children:
    description:
      - With O(state=absent), also delete every descendant of the snapshot.
    type: bool
    default: false
notes:
  - Internal snapshots (the default) need every disk of the domain in qcow2 format; a raw disk is named in the error.
  - An internal snapshot of a domain that already has external snapshots is refused; libvirt before 11.0 can
    lose data with that mix. An external (disk-only) snapshot of a domain that has internal snapshots is refused
    too; libvirt cannot delete it again, and a revert to an internal snapshot would leave its overlay behind.
  - If libvirtd stops during a snapshot, the task fails with a message saying so; a re-run finishes the job
    (it resumes a guest that the interrupted snapshot left paused, and takes the snapshot again if libvirt
    did not record it). A snapshot that another run is still taking is waited for, up to O(busy_timeout).
  - Overlay files of external snapshots are made readable by their owner only when the module runs on the
    hypervisor itself (a local O(uri)).
seealso:
  - module: kvm.snapshots.snapshot_info
  - module: kvm.snapshots.snapshot_revert
  - module: kvm.snapshots.snapshot_prune
'''

EXAMPLES = r'''
- name: Take a snapshot of web1 before the upgrade
  kvm.snapshots.snapshot:
    domain: web1
    name: pre-upgrade
    description: Before the kernel upgrade of ticket OPS-1234

- name: Take a disk-only snapshot with the file systems frozen by the guest agent
  kvm.snapshots.snapshot:
    domain: db1
    name: pre-migration
    disk_only: true
    quiesce: true

- name: Snapshot every web VM of this hypervisor in one task
  kvm.snapshots.snapshot:
    domains:
      - web-*
      - db1
    name: nightly-2026-11-25
    parallel: 8

- name: Take the snapshot that stalls each guest least, and delete the last change's once it is there
  kvm.snapshots.snapshot:
    domains: [web-1, web-2, db1]
    name: pre-change-OPS-1235
    disk_only: auto
    quiesce: auto
    free_space_margin_mb: 1024
    conflicts: pre-change-*
    conflicts_action: delete

- name: Delete the snapshot and everything taken after it
  kvm.snapshots.snapshot:
    domain: web1
    name: pre-upgrade
    state: absent
    children: true

- name: Snapshot a VM on a remote hypervisor from the controller
  kvm.snapshots.snapshot:
    uri: qemu+ssh://root@hv1.example.com/system
    domain: web1
    name: pre-upgrade

# A play over the guests, each on its hypervisor (kvm_hypervisor): Ansible runs many at once,
# but no hypervisor ever has more than two of these snapshots in progress.
- name: Snapshot each guest on its hypervisor, two at a time per hypervisor
  kvm.snapshots.snapshot:
    domain: "{{ inventory_hostname }}"
    name: pre-upgrade
    hypervisor_jobs: 2
  delegate_to: "{{ kvm_hypervisor }}"
'''

RETURN = r'''
domain:
  description: The domain worked on (single-domain mode).
  returned: when O(domain) is given
  type: str
  sample: web1
snapshot:
  description:
    - The snapshot after the task (for O(state=absent), the one that was deleted), in the format of
      M(kvm.snapshots.snapshot_info). In check mode, what would be made.
    - V(null) when there was nothing to delete.
  returned: when O(domain) is given
  type: dict
  sample:
    name: pre-upgrade
    domain: web1
    description: Before the kernel upgrade
    state: running
    creation_time: '2026-11-25T19:40:15Z'
    creation_time_epoch: 1795635615
    parent: null
    children: []
    current: true
    location: internal
    memory: internal
    disks: [{name: vda, snapshot: internal, file: null, backing_file: null}]
kind:
  description:
    - The kind of the snapshot made (or that would be, in check mode) and why it was chosen (see O(location)).
    - C(choice) (with O(disk_only=auto)) says why it is disk-only or not.
  returned: when O(domain) is given, O(state=present) and a snapshot is made
  type: dict
  sample:
    location: external
    memory: external
    reason: >-
      an internal snapshot cannot be made: the domain boots with UEFI and its NVRAM is raw: libvirt takes internal
      snapshots of a running UEFI guest only with a qcow2 NVRAM (libvirt 10.10 or later)
    choice: the guest agent does not answer (Guest agent is not responding)
power_state:
  description: The state of the domain when the snapshot was planned (V(running), V(paused), V(shutoff), ...).
  returned: when O(domain) is given, O(state=present) and a snapshot is made
  type: str
  sample: running
conflicts:
  description: The snapshots of the domain that O(conflicts) matches (besides O(name)), as found before the task.
  returned: when O(domain) and O(conflicts) are given, O(state=present)
  type: list
  elements: str
  sample: [pre-change-OPS-1234]
free_space_unchecked:
  description:
    - The disk files whose free space could not be read (through a remote URI), and the most MiB any of them needs.
  returned: when O(domain) and O(free_space_margin_mb) are given and a file was left unchecked
  type: dict
  sample: {files: [/var/lib/libvirt/images/web1.qcow2], needed_mib: 3136}
deleted:
  description:
    - Names of the snapshots deleted (or that would be, in check mode); with O(state=present), those O(conflicts)
      matched and O(conflicts_action=delete) deleted.
  returned: when O(domain) is given and O(state=absent), or O(conflicts) with O(state=present)
  type: list
  elements: str
  sample: [pre-upgrade, after-upgrade]
results:
  description: Batch mode, one entry a domain, in the order the domains were resolved.
  returned: when O(domains) is given
  type: list
  elements: dict
  contains:
    domain:
      description: The domain.
      type: str
    changed:
      description: Whether the task changed it.
      type: bool
    failed:
      description: Whether it failed.
      type: bool
    msg:
      description: Why it failed.
      type: str
    conflicts:
      description: As RV(conflicts).
      type: list
      elements: str
    deleted:
      description: As RV(deleted).
      type: list
      elements: str
    free_space_unchecked:
      description: As RV(free_space_unchecked).
      type: dict
  sample:
    - domain: web-1
      changed: true
      failed: false
      snapshot: {name: nightly, location: internal}
    - domain: web-2
      changed: false
      failed: true
      msg: Domain "web-2" does not exist on qemu:///system
unmatched:
  description: Globs of O(domains) that matched no domain.
  returned: when O(domains) is given
  type: list
  elements: str
  sample: ['db-*']
'''

import fnmatch
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._batch import BATCH_OPTIONS, DomainResult, run_domains
from ansible_collections.kvm.snapshots.plugins.module_utils._choices import true_false_auto as read_true_false_auto
from ansible_collections.kvm.snapshots.plugins.module_utils._domain import resume_interrupted, wait_idle
from ansible_collections.kvm.snapshots.plugins.module_utils._guards import (
    check_monitor_delete,
    validate_name,
    validate_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import JOBS_OPTIONS, job_slot
from ansible_collections.kvm.snapshots.plugins.module_utils._kind import (
    LOCATIONS,
    Plan,
    Preflight,
    freeze_failed,
    preflight_snapshot,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
    describe,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._uri import is_local_uri
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import (
    create_snapshot,
    current_snapshot_name,
    delete_snapshot,
    delete_with_descendants,
    in_progress,
    lookup_snapshot,
    set_description,
    snapshot_facts,
    summary,
)


class SnapshotManager:
    """Brings one named snapshot of each domain to the state asked for."""

    def __init__(self, client: AnsibleLibvirtModule) -> None:
        self.client = client
        self.params = client.params
        self.name = validate_name(self.params['name'])
        self.description = validate_text(self.params['description'])
        self.disk_only = true_false_auto(self.params['disk_only'], 'disk_only')
        self.quiesce = true_false_auto(self.params['quiesce'], 'quiesce')
        if self.quiesce is True and self.disk_only is False:
            raise SnapshotError('quiesce: true needs disk_only: true (or auto); QEMU freezes the guest file systems '
                                'only for disk-only snapshots.')
        self.conflicts = self.params['conflicts']
        if self.conflicts is not None and not self.conflicts.strip():
            raise SnapshotError('conflicts is empty: give a glob of snapshot names, such as "pre-change-*", or leave '
                                'it out. Nothing was changed.')

    def run(self) -> dict[str, t.Any]:
        return run_domains(self.client, self.ensure)

    def ensure(self, domain: str) -> DomainResult:
        dom = self.client.lookup_domain(domain)
        snap = lookup_snapshot(dom, self.name)
        if self.params['state'] == 'present':
            return self._present(dom, snap)
        return self._absent(dom, snap)

    # state=present

    def _present(self, dom: t.Any, snap: t.Any) -> DomainResult:
        if snap is not None and in_progress(dom, snap):
            # another run is still taking it, and may yet fail: wait for that job, then look again
            wait_idle(dom, self.params['busy_timeout'])
            snap = lookup_snapshot(dom, self.name)
        others = self._conflicting(dom)
        if snap is not None:
            return self._delete_conflicts(dom, self._update(dom, snap), others)
        if others and self.params['conflicts_action'] == 'refuse':
            return DomainResult(False, {'conflicts': others}, failure=(
                f'Domain "{dom.name()}" still has the snapshot(s) {", ".join(others)}, which conflicts '
                f'("{self.conflicts}") matches. Nothing was changed. Delete them first, or let this task delete them '
                f'once "{self.name}" is taken (conflicts_action: delete).'))
        pre = self._preflight(dom, self.disk_only, self.quiesce)  # raises where it cannot be made
        plan = pre.plan
        if self.client.check_mode:
            predicted = self._predict(dom, plan, pre.state)
            done = DomainResult(True, {'snapshot': predicted, **self._kind_data(pre)}, summary(None),
                                dict(summary(predicted), reason=plan.reason), plan.warnings)
            return self._delete_conflicts(dom, done, others)
        # only a paused domain can have been left so by an interrupted job (the state just read by the preflight:
        # no second libvirt call for a domain that runs or is shut off)
        resumed = resume_interrupted(dom, self.params['busy_timeout']) if pre.state == 'paused' else None
        with job_slot(self.client, f'Snapshot "{self.name}" of domain "{dom.name()}"'):
            try:
                facts, made = create_snapshot(dom, self.name, self.description, plan, pre.quiesce,
                                              is_local_uri(self.client.uri), self.params['busy_timeout'], pre.disks)
            except SnapshotError as exc:
                # disk_only auto chose a quiesced disk-only snapshot and the guest agent failed to freeze (a file
                # system that cannot freeze, a failing fsfreeze hook): libvirt made nothing, and a snapshot with
                # memory is the kind that works
                if pre.choice is None or not pre.quiesce or not freeze_failed(exc.msg) \
                        or lookup_snapshot(dom, self.name) is not None:
                    raise
                pre = self._preflight(dom, False, False)._replace(
                    choice=f'the guest agent failed to freeze the file systems ({exc.msg}): a snapshot with memory')
                plan = pre.plan
                facts, made = create_snapshot(dom, self.name, self.description, plan, False,
                                              is_local_uri(self.client.uri), self.params['busy_timeout'], pre.disks)
        data = self._kind_data(pre)
        # made is False when another run took the same name meanwhile: this run changed nothing
        done = DomainResult(made, {'snapshot': facts, **data}, summary(None if made else facts),
                            dict(summary(facts), reason=plan.reason) if made else summary(facts),
                            [*plan.warnings, resumed] if resumed else plan.warnings)
        return self._delete_conflicts(dom, done, others)

    def _preflight(self, dom: t.Any, disk_only: bool | str, quiesce: bool | str) -> Preflight:
        return preflight_snapshot(
            dom, self.name, self.client.libvirt_version, is_local_uri(self.client.uri), self.params['location'],
            disk_only, quiesce, self.params['agent_timeout'], self.params['free_space_margin_mb'])

    @staticmethod
    def _kind_data(pre: Preflight) -> dict[str, t.Any]:
        """The result's kind of a new snapshot (its choice with disk_only auto), its power state, and the files whose
        free space could not be read."""
        kind = {'location': pre.plan.location, 'memory': pre.plan.memory, 'reason': pre.plan.reason}
        if pre.choice is not None:
            kind['choice'] = pre.choice
        data = {'kind': kind, 'power_state': pre.state}
        if pre.unchecked is not None:
            data['free_space_unchecked'] = pre.unchecked
        return data

    def _conflicting(self, dom: t.Any) -> list[str]:
        """The names of the snapshots of ``dom`` that ``conflicts`` matches, other than ``name`` (none without it)."""
        if self.conflicts is None:
            return []
        return sorted(n for n in fnmatch.filter((s.getName() for s in dom.listAllSnapshots(0)), self.conflicts)
                      if n != self.name)

    def _delete_conflicts(self, dom: t.Any, done: DomainResult, others: list[str]) -> DomainResult:
        """With conflicts_action: delete, delete the conflicting snapshots of ``dom`` now that ``name`` is there
        (so that the domain always has one of them); ``deleted`` lists them (in check mode, those it would)."""
        if self.conflicts is None:
            return done
        data = dict(done.data, conflicts=others, deleted=[])
        if self.params['conflicts_action'] != 'delete' or not others:
            return done._replace(data=data)
        for other in others:
            if not self.client.check_mode:
                try:
                    snap = lookup_snapshot(dom, other)
                    if snap is not None:
                        check_monitor_delete(dom, [snap])
                        with job_slot(self.client, f'Deleting snapshot "{other}" of domain "{dom.name()}"'):
                            delete_snapshot(dom, other, self.params['busy_timeout'], snap)
                except (SnapshotError, LibvirtError) as exc:
                    why = exc.msg if isinstance(exc, SnapshotError) else describe(exc, f'Deleting "{other}"')
                    return done._replace(data=data, failure=(
                        f'Snapshot "{self.name}" of domain "{dom.name()}" is there, but "{other}", which conflicts '
                        f'matches, could not be deleted: {why}'))
            data['deleted'].append(other)
        return done._replace(changed=True, data=data)

    def _predict(self, dom: t.Any, plan: Plan, state: str) -> dict[str, t.Any]:
        """The facts of the snapshot that ``plan`` would make of ``dom`` (in ``state``), for check mode: only there,
        so that a real run reads no current snapshot it does not report (a libvirt call or two a domain less)."""
        if plan.memory != 'no':
            snap_state = state
        elif plan.location == 'external' and state != 'shutoff':
            snap_state = 'disk-snapshot'
        else:
            snap_state = 'shutoff'  # libvirt records a snapshot of a shut-off domain as 'shutoff'
        return {
            'name': self.name, 'domain': dom.name(), 'description': self.description,
            'state': snap_state, 'creation_time': None, 'creation_time_epoch': None,
            'parent': current_snapshot_name(dom),
            'children': [], 'current': True, 'location': plan.location, 'memory': plan.memory,
            'memory_file': plan.memory_file,
            'disks': [{'name': o['disk'], 'snapshot': 'external', 'file': o['file'], 'backing_file': o['backing_file']}
                      for o in plan.overlays],
        }

    def _update(self, dom: t.Any, snap: t.Any) -> DomainResult:
        facts = snapshot_facts(snap, dom.name())
        before = summary(facts)
        warnings = []
        asked = 'external' if self.disk_only is True else self.params['location']
        if asked not in ('auto', facts['location']):
            option = 'disk_only' if self.disk_only is True else 'location'
            warnings.append(f'Snapshot "{self.name}" of "{dom.name()}" exists as an {facts["location"]} '
                            f'snapshot; {option} does not change an existing snapshot.')
        changed = self.description is not None and self.description != (facts['description'] or '')
        if changed:
            if not self.client.check_mode:
                facts = set_description(dom, snap, self.description, facts['current'], self.params['busy_timeout'])
            else:
                facts = dict(facts, description=self.description)
        return DomainResult(changed, {'snapshot': facts}, before, summary(facts), warnings)

    # state=absent

    def _absent(self, dom: t.Any, snap: t.Any) -> DomainResult:
        if snap is None:
            return DomainResult(False, {'snapshot': None, 'deleted': []}, summary(None), summary(None))
        facts = snapshot_facts(snap, dom.name())
        descendants = list(snap.listAllChildren(1)) if self.params['children'] else []  # 1: all descendants
        deleted = [self.name] + sorted(c.getName() for c in descendants)
        check_monitor_delete(dom, [snap, *descendants])
        if not self.client.check_mode:
            with job_slot(self.client, f'Deleting snapshot "{self.name}" of domain "{dom.name()}"'):
                if descendants:
                    delete_with_descendants(dom, self.name, deleted[1:], self.params['busy_timeout'])
                else:
                    # False: gone meanwhile, as wanted; snap: looked up above, not looked up again
                    delete_snapshot(dom, self.name, self.params['busy_timeout'], snap)
        return DomainResult(True, {'snapshot': facts, 'deleted': deleted}, summary(facts), summary(None))


def true_false_auto(value: t.Any, option: str) -> bool | str:
    """An option that takes a boolean or auto: True, False or 'auto' (module_utils/_choices.py has the rule)."""
    choice = read_true_false_auto(value)
    if choice is None:
        raise SnapshotError(f'{option} must be true, false or auto, not {value!r}. Nothing was changed.')
    return choice


def main() -> None:
    argument_spec = dict(
        name={'type': 'str', 'required': True},
        state={'type': 'str', 'default': 'present', 'choices': ['present', 'absent']},
        description={'type': 'str'},
        disk_only={'type': 'raw', 'default': False},
        quiesce={'type': 'raw', 'default': False},
        agent_timeout={'type': 'int', 'default': 2},
        location={'type': 'str', 'default': 'auto', 'choices': list(LOCATIONS)},
        free_space_margin_mb={'type': 'int'},
        conflicts={'type': 'str'},
        conflicts_action={'type': 'str', 'default': 'refuse', 'choices': ['refuse', 'delete']},
        children={'type': 'bool', 'default': False},
    )
    client = AnsibleLibvirtModule(argument_spec, (BATCH_OPTIONS, JOBS_OPTIONS), supports_check_mode=True)
    try:
        result = SnapshotManager(client).run()
    except (SnapshotError, LibvirtError) as exc:
        client.fail(exc)
    client.exit(**result)


if __name__ == '__main__':
    main()
