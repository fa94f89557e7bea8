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
      - Take an external, disk-only snapshot (no memory state, no pause of the guest).
      - Reverting to an external snapshot needs libvirt 9.9 or later; deleting one merges the overlay
        back into its backing image.
    type: bool
    default: false
  quiesce:
    description:
      - Freeze the guest's file systems through qemu-guest-agent while the snapshot is taken,
        so the disks are consistent as after a clean sync.
      - Needs O(disk_only=true), a running domain with a guest agent channel, and qemu-guest-agent
        running in the guest; otherwise the task fails and nothing is made.
    type: bool
    default: false
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
  returned: when O(domain) is given, O(state=present) and a snapshot is made
  type: dict
  sample:
    location: external
    memory: external
    reason: >-
      an internal snapshot cannot be made: the domain boots with UEFI and its NVRAM is raw: libvirt takes internal
      snapshots of a running UEFI guest only with a qcow2 NVRAM (libvirt 10.10 or later)
deleted:
  description: Names of the snapshots deleted (or that would be, in check mode).
  returned: when O(domain) is given and O(state=absent)
  type: list
  elements: str
  sample: [pre-upgrade, after-upgrade]
results:
  description: Batch mode, one entry a domain, in the order the domains were resolved.
  returned: when O(domains) is given
  type: list
  elements: dict
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

import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._batch import BATCH_OPTIONS, DomainResult, run_domains
from ansible_collections.kvm.snapshots.plugins.module_utils._domain import resume_interrupted, wait_idle
from ansible_collections.kvm.snapshots.plugins.module_utils._guards import (
    check_monitor_delete,
    validate_name,
    validate_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import JOBS_OPTIONS, job_slot
from ansible_collections.kvm.snapshots.plugins.module_utils._kind import LOCATIONS, Plan, preflight_snapshot
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
    is_local_uri,
)
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
        if self.params['quiesce'] and not self.params['disk_only']:
            raise SnapshotError('quiesce: true needs disk_only: true; QEMU freezes the guest file systems '
                                'only for disk-only snapshots.')

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
        if snap is not None:
            return self._update(dom, snap)
        plan, state, disks = preflight_snapshot(
            dom, self.name, self.client.libvirt_version, is_local_uri(self.client.uri), self.params['location'],
            self.params['disk_only'], self.params['quiesce'])  # raises where it cannot be made
        kind = {'location': plan.location, 'memory': plan.memory, 'reason': plan.reason}
        if self.client.check_mode:
            predicted = self._predict(dom, plan, state)
            return DomainResult(True, {'snapshot': predicted, 'kind': kind}, summary(None),
                                dict(summary(predicted), reason=plan.reason), plan.warnings)
        # only a paused domain can have been left so by an interrupted job (the state just read by the preflight:
        # no second libvirt call for a domain that runs or is shut off)
        resumed = resume_interrupted(dom, self.params['busy_timeout']) if state == 'paused' else None
        with job_slot(self.client, f'Snapshot "{self.name}" of domain "{dom.name()}"'):
            facts, made = create_snapshot(dom, self.name, self.description, plan, self.params['quiesce'],
                                          is_local_uri(self.client.uri), self.params['busy_timeout'], disks)
        # made is False when another run took the same name meanwhile: this run changed nothing
        return DomainResult(made, {'snapshot': facts, 'kind': kind}, summary(None if made else facts),
                            dict(summary(facts), reason=plan.reason) if made else summary(facts),
                            [*plan.warnings, resumed] if resumed else plan.warnings)

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
        asked = 'external' if self.params['disk_only'] else self.params['location']
        if asked not in ('auto', facts['location']):
            option = 'disk_only' if self.params['disk_only'] else 'location'
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


def main() -> None:
    argument_spec = dict(
        name={'type': 'str', 'required': True},
        state={'type': 'str', 'default': 'present', 'choices': ['present', 'absent']},
        description={'type': 'str'},
        disk_only={'type': 'bool', 'default': False},
        quiesce={'type': 'bool', 'default': False},
        location={'type': 'str', 'default': 'auto', 'choices': list(LOCATIONS)},
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
