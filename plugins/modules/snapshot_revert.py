#!/usr/bin/python
# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_revert
short_description: Revert a libvirt domain to a snapshot
version_added: 0.1.0
description:
  - Brings a KVM/QEMU domain back to the state saved in a snapshot, as C(virsh snapshot-revert) does (the
    disks, and for a full snapshot memory and CPU state too).
  - A revert throws the present state of the domain away. Set O(safety_snapshot) to keep it as a snapshot first.
  - The domain is left in the power state O(state_after) asks for.
author:
  - kvm.snapshots contributors (@kvm-snapshots)
extends_documentation_fragment:
  - kvm.snapshots._libvirt
  - kvm.snapshots._libvirt.jobs
  - kvm.snapshots._libvirt.attributes
  - kvm.snapshots._attributes
attributes:
  check_mode:
    support: full
    details: Reports the revert that would happen (and the safety snapshot that would be taken); changes nothing.
  diff_mode:
    support: full
    details: Shows the current snapshot and the power state of the domain before and after.
  idempotent:
    support: none
    details:
      - Every run reverts and reports C(changed=true). A domain drifts from its snapshot the moment it runs
        (its clock, memory and disks change), so "already at the snapshot" cannot be told apart from
        "changed since"; reverting again is what makes the state known.
      - A re-run is safe. An existing O(safety_snapshot) is kept as it is, not taken again.
options:
  domain:
    description:
      - The libvirt name of the domain to revert.
    type: str
    required: true
  name:
    description:
      - The snapshot to revert to.
      - Left out, the domain's current snapshot (as in C(virsh snapshot-info --current)).
      - Reverting a running or paused domain to an internal snapshot with memory whose name holds C(") or C(\\) is
        refused before anything changes; libvirt 9.0 hands the name to QEMU's monitor (C(loadvm)) unescaped. A
        snapshot without memory is reverted with the domain stopped, through qemu-img, and any name works.
    type: str
  state_after:
    description:
      - The power state to leave the domain in after the revert.
      - V(as_snapshot) restores the state the snapshot was taken in (a snapshot of a running domain
        comes back running, of a shut-off domain shut off).
      - V(running) and V(paused) start the domain (from its saved memory when the snapshot has one,
        by booting otherwise).
      - V(shutoff) reverts and then powers the domain off; of a full snapshot only the disks are kept then,
        as after pulling the plug.
    type: str
    choices: [as_snapshot, running, paused, shutoff]
    default: as_snapshot
  force:
    description:
      - Revert even when libvirt calls the revert risky and refuses it.
      - Needed for example when the snapshot holds no domain configuration (it was redefined without one),
        or when a running domain must be reverted to a snapshot whose saved configuration cannot be
        applied to the running QEMU process, which then has to be restarted.
      - Leave it off unless a revert failed with a message that suggests it.
    type: bool
    default: false
  safety_snapshot:
    description:
      - Name of a snapshot to take of the present state before reverting, so that the state
        thrown away by the revert can be examined or restored later.
      - If a snapshot of that name exists already (for example from an earlier run of the same task),
        it is kept and not taken again.
      - It is taken as M(kvm.snapshots.snapshot) takes one with O(kvm.snapshots.snapshot#module:location=auto),
        internal where libvirt can revert that, else external (for example of a UEFI guest with a raw NVRAM, or
        of a domain whose snapshots are external). The same name rules apply (no C(/), no leading C(.)).
    type: str
  safety_description:
    description:
      - Description stored with the safety snapshot.
    type: str
    default: State before a revert by kvm.snapshots.snapshot_revert
notes:
  - Reverting to an external snapshot needs libvirt 9.9 or later; with an older libvirt the module says so before
    changing anything. libvirt then puts every disk on a new overlay (C(<image>.<epoch seconds>)) on top of the
    snapshot's image and removes the overlay of the previous revert to it, so reverts do not pile up files; a
    second revert within the same second is retried in the next one. An external snapshot with memory comes back
    running; a disk-only one shut off (O(state_after=running) boots it).
  - Reverting a running domain restarts its QEMU process.
  - Reverting to an internal snapshot of a domain that has external (disk-only) snapshots is refused before
    anything is changed; libvirt would put the disks back under the overlays, and their data would be lost.
seealso:
  - module: kvm.snapshots.snapshot
  - module: kvm.snapshots.snapshot_info
'''

EXAMPLES = r'''
- name: Roll web1 back to its pre-upgrade snapshot, keeping the broken state for the post-mortem
  kvm.snapshots.snapshot_revert:
    domain: web1
    name: pre-upgrade
    safety_snapshot: broken-upgrade
    state_after: running

- name: Revert to the current snapshot, as it was taken
  kvm.snapshots.snapshot_revert:
    domain: web1

- name: Revert and leave the VM powered off
  kvm.snapshots.snapshot_revert:
    domain: web1
    name: pre-upgrade
    state_after: shutoff
'''

RETURN = r'''
domain:
  description: The domain reverted.
  returned: always
  type: str
  sample: web1
snapshot:
  description: The snapshot reverted to, in the format of M(kvm.snapshots.snapshot_info).
  returned: always
  type: dict
  sample:
    name: pre-upgrade
    domain: web1
    state: running
    current: true
    location: internal
    memory: internal
state:
  description: The power state of the domain after the revert (in check mode, the one expected).
  returned: always
  type: str
  sample: running
safety_snapshot:
  description: The safety snapshot (taken now, or found from an earlier run), V(null) without O(safety_snapshot).
  returned: always
  type: dict
  sample:
    name: broken-upgrade
    state: running
    location: internal
safety_snapshot_created:
  description: Whether this run took the safety snapshot (V(false) when it existed already).
  returned: always
  type: bool
  sample: true
'''

import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._batch import DomainResult, run_domains
from ansible_collections.kvm.snapshots.plugins.module_utils._domain import domain_state
from ansible_collections.kvm.snapshots.plugins.module_utils._guards import (
    check_monitor_name,
    check_revert_possible,
    validate_name,
    validate_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import JOBS_OPTIONS, job_slot
from ansible_collections.kvm.snapshots.plugins.module_utils._kind import (
    EXTERNAL_REVERT,
    preflight_snapshot,
    version_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._uri import is_local_uri
from ansible_collections.kvm.snapshots.plugins.module_utils._revert import revert_snapshot
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import (
    create_snapshot,
    current_snapshot_name,
    list_snapshots,
    lookup_snapshot,
    snapshot_facts,
)

_POWER_STATE_OF_SNAPSHOT = {'running': 'running', 'paused': 'paused'}


class RevertManager:
    """Reverts one domain, taking the safety snapshot first when asked to."""

    def __init__(self, client: AnsibleLibvirtModule) -> None:
        self.client = client
        self.params = client.params
        self.domain_name = self.params['domain']
        self.safety_name = self.params['safety_snapshot']
        if self.params['name'] is not None:
            validate_name(self.params['name'])
        if self.safety_name is not None:
            validate_name(self.safety_name, 'safety snapshot name')
            validate_text(self.params['safety_description'], 'safety description')

    def run(self) -> dict[str, t.Any]:
        return run_domains(self.client, self.revert)

    def revert(self, domain: str) -> DomainResult:
        dom = self.client.lookup_domain(domain)
        snap = self._target(dom)
        target = snapshot_facts(snap, self.domain_name)
        self._check_revertable(target)
        check_revert_possible(dom, target)
        if target['location'] == 'internal' and target['state'] in ('running', 'paused'):
            # loadvm; to a snapshot without memory libvirt stops QEMU and runs qemu-img (any name works)
            check_monitor_name(dom, target['name'], 'revert')
        if self.safety_name == target['name']:
            raise SnapshotError(f'safety_snapshot "{self.safety_name}" is the snapshot to revert to; '
                                'give the safety snapshot another name.', domain=self.domain_name)

        before = {'current': current_snapshot_name(dom), 'state': domain_state(dom)}
        expected = self._expected_state(target)
        with job_slot(self.client, f'Reverting domain "{self.domain_name}" to snapshot "{target["name"]}"'):
            safety, created = self._safety(dom)
            data: dict[str, t.Any] = {'snapshot': dict(target, current=True), 'state': expected,
                                      'safety_snapshot': safety, 'safety_snapshot_created': created}
            if not self.client.check_mode:
                self._revert(dom, snap)
                data['snapshot'] = snapshot_facts(lookup_snapshot(dom, target['name']) or snap, self.domain_name)
                data['state'] = domain_state(dom)
        return DomainResult(True, data, before, {'current': target['name'], 'state': data['state']})

    def _target(self, dom: t.Any) -> t.Any:
        name = self.params['name']
        if name is None:
            if not dom.hasCurrentSnapshot(0):
                raise SnapshotError(f'Domain "{self.domain_name}" has no current snapshot to revert to; '
                                    'name the snapshot with the name option.', domain=self.domain_name)
            return dom.snapshotCurrent(0)
        snap = lookup_snapshot(dom, name)
        if snap is None:
            existing = [s['name'] for s in list_snapshots(dom)]
            raise SnapshotError(
                f'Snapshot "{name}" of domain "{self.domain_name}" does not exist; nothing was changed. '
                f'Existing snapshots: {", ".join(existing) if existing else "none"}.',
                domain=self.domain_name, snapshots=existing)
        return snap

    def _check_revertable(self, target: dict[str, t.Any]) -> None:
        if target['location'] != 'external':
            return
        version = self.client.libvirt_version
        if version < EXTERNAL_REVERT:
            raise SnapshotError(
                f'Snapshot "{target["name"]}" of domain "{self.domain_name}" is external; reverting external '
                f'snapshots needs libvirt 9.9 or later and this hypervisor has {version_text(version)}. '
                'Nothing was changed. Use internal snapshots (location: internal) for snapshots you may revert to, '
                'or upgrade libvirt.', domain=self.domain_name)

    def _expected_state(self, target: dict[str, t.Any]) -> str:
        wanted = self.params['state_after']
        if wanted != 'as_snapshot':
            return wanted
        return _POWER_STATE_OF_SNAPSHOT.get(target['state'], 'shutoff')

    def _safety(self, dom: t.Any) -> tuple[dict[str, t.Any] | None, bool]:
        if self.safety_name is None:
            return None, False
        existing = lookup_snapshot(dom, self.safety_name)
        # warned at once, not in the DomainResult: they matter also when the revert then fails
        if existing is not None:
            self.client.module.warn(f'Safety snapshot "{self.safety_name}" of "{self.domain_name}" exists already '
                                    '(an earlier run took it); it is kept and not taken again.')
            return snapshot_facts(existing, self.domain_name), False
        local = is_local_uri(self.client.uri)
        preflight = preflight_snapshot(dom, self.safety_name, self.client.libvirt_version, local)
        plan, disks = preflight.plan, preflight.disks
        for warning in plan.warnings:
            self.client.module.warn(warning)
        if self.client.check_mode:
            return {'name': self.safety_name, 'domain': self.domain_name,
                    'description': self.params['safety_description'], 'location': plan.location,
                    'memory': plan.memory}, True
        return create_snapshot(dom, self.safety_name, self.params['safety_description'], plan, local=local,
                               busy_timeout=self.params['busy_timeout'], disks=disks)

    def _revert(self, dom: t.Any, snap: t.Any) -> None:
        revert_snapshot(dom, snap, self.params['state_after'], self.params['busy_timeout'],
                        self.client.libvirt_version, force=self.params['force'], domain=self.domain_name)


def main() -> None:
    argument_spec = {
        'domain': {'type': 'str', 'required': True},
        'name': {'type': 'str'},
        'state_after': {'type': 'str', 'default': 'as_snapshot',
                        'choices': ['as_snapshot', 'running', 'paused', 'shutoff']},
        'force': {'type': 'bool', 'default': False},
        'safety_snapshot': {'type': 'str'},
        'safety_description': {'type': 'str', 'default': 'State before a revert by kvm.snapshots.snapshot_revert'},
    }
    client = AnsibleLibvirtModule(argument_spec, (JOBS_OPTIONS,), supports_check_mode=True)
    try:
        result = RevertManager(client).run()
    except (SnapshotError, LibvirtError) as exc:
        client.fail(exc)
    client.exit(**result)


if __name__ == '__main__':
    main()
