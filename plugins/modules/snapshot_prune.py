#!/usr/bin/python
# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: snapshot_prune
short_description: Delete old snapshots of libvirt domains that match a pattern
version_added: 0.1.0
description:
  - Retention for snapshots. Of the snapshots whose name matches O(match), keeps those that a keep rule keeps
    and deletes the others, or only those of them older than O(older_than).
  - The keep rules are O(keep_last) (the newest N) and the tiers O(keep_hourly), O(keep_daily), O(keep_weekly),
    O(keep_monthly) and O(keep_yearly) (the newest snapshot of each of the last N hours, days, weeks, months or
    years that have one, as restic's C(forget --keep-*) and Sanoid's tiers).
  - How they combine. Each rule looks at all the matching snapshots on its own; the keeps are a union. A matching
    snapshot is deleted only if no keep rule keeps it and, when O(older_than) is set, it is older than that.
    So O(older_than) only narrows the deletions, and a snapshot that a keep rule keeps stays whatever its age.
  - Tier periods are UTC hours, days, ISO weeks (Monday to Sunday), months and years, taken from the creation
    time libvirt recorded for each snapshot. UTC, not the local time zone, so that the same snapshots give the
    same result wherever the module runs (the hypervisor, or a controller in another time zone) and every day
    has 24 hours (no daylight saving time).
  - A snapshot whose name does not match O(match) is never touched, and counts for no rule.
  - RV(kept) says which rules keep each survivor, RV(deleted) why each snapshot goes (or would go, in check mode).
  - Snapshots are deleted one at a time, oldest first, without their children; libvirt attaches the children
    of a deleted snapshot to its parent, so snapshots taken after a pruned one survive.
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
    details: Reports in RV(deleted) what would be deleted and why, in RV(kept) which rules keep the others;
      nothing is deleted.
  diff_mode:
    support: full
    details: The names of the snapshots of each domain before and after.
  idempotent:
    support: full
    details:
      - A second run with the same options deletes nothing, unless snapshots have aged past O(older_than)
        in the meantime.
options:
  match:
    description:
      - Shell glob on snapshot names (V(nightly-*), V(pre-change-20??-*)); case-sensitive.
      - Only snapshots whose name matches are counted for O(keep_last) and may be deleted.
      - V(*) matches every snapshot.
    type: str
    required: true
  keep_last:
    description:
      - Keep the newest O(keep_last) matching snapshots (by creation time), whatever their age.
      - V(0) keeps none of them for their rank (the other rules still apply).
      - At least one of O(keep_last), O(keep_hourly), O(keep_daily), O(keep_weekly), O(keep_monthly),
        O(keep_yearly) and O(older_than) is required.
    type: int
  keep_hourly:
    description:
      - Keep the newest matching snapshot of each of the last O(keep_hourly) hours (UTC) that have one.
      - Hours without a matching snapshot are skipped, so with snapshots every 4 hours, V(24) keeps 24 of them
        (four days back).
      - V(0) keeps none for this rule.
    type: int
  keep_daily:
    description:
      - Keep the newest matching snapshot of each of the last O(keep_daily) days (UTC) that have one.
      - Days without a matching snapshot are skipped, not counted.
      - V(0) keeps none for this rule.
    type: int
  keep_weekly:
    description:
      - Keep the newest matching snapshot of each of the last O(keep_weekly) ISO weeks (Monday to Sunday, UTC)
        that have one.
      - Weeks without a matching snapshot are skipped, not counted.
      - V(0) keeps none for this rule.
    type: int
  keep_monthly:
    description:
      - Keep the newest matching snapshot of each of the last O(keep_monthly) calendar months (UTC) that have one.
      - Months without a matching snapshot are skipped, not counted.
      - V(0) keeps none for this rule.
    type: int
  keep_yearly:
    description:
      - Keep the newest matching snapshot of each of the last O(keep_yearly) calendar years (UTC) that have one.
      - Years without a matching snapshot are skipped, not counted.
      - V(0) keeps none for this rule.
    type: int
  older_than:
    description:
      - Delete only matching snapshots older than this, of those that no keep rule keeps.
      - A duration such as V(12h), V(7d), V(1d12h), V(2w) or V(90m), or a number of seconds (ASCII digits), at most
        1000 years.
      - Left out, every matching snapshot that no keep rule keeps is deleted.
      - A snapshot of unknown creation time is never older than this.
    type: str
notes:
  - A snapshot that another run deleted while this one was working is not an error.
  - On a running or paused domain, a domain whose internal snapshots to delete include a name with C(") or
    C(\\) fails before anything is deleted (libvirt 9.0 would hand the name to QEMU's monitor unescaped, and
    QEMU would delete another snapshot, or none). Prune it with the domain shut off, or narrow O(match).
  - When the current snapshot is deleted, libvirt makes its parent the current one.
  - Age ranks by creation time; two snapshots made in the same second rank the child after its parent. A
    snapshot of unknown creation time ranks oldest and is in no tier period.
  - Deleting an external (disk-only) snapshot merges its overlay back, which takes time in proportion
    to the data written since.
seealso:
  - module: kvm.snapshots.snapshot
  - module: kvm.snapshots.snapshot_info
'''

EXAMPLES = r'''
- name: Keep the last 7 nightly snapshots of web1
  kvm.snapshots.snapshot_prune:
    domain: web1
    match: nightly-*
    keep_last: 7

- name: Delete pre-change snapshots older than two weeks on every web VM
  kvm.snapshots.snapshot_prune:
    domains:
      - web-*
    match: pre-change-*
    older_than: 14d

- name: Delete nightly snapshots older than 3 days, but always keep the newest 2
  kvm.snapshots.snapshot_prune:
    domain: db1
    match: nightly-*
    keep_last: 2
    older_than: 3d

- name: Show what would be deleted, without deleting anything
  kvm.snapshots.snapshot_prune:
    domain: web1
    match: '*'
    keep_last: 3
  check_mode: true
  register: would_prune

- name: Keep 24 hourly, 7 daily, 4 weekly and 6 monthly auto snapshots of every VM, and the newest 3 whatever
  kvm.snapshots.snapshot_prune:
    domains:
      - '*'
    match: auto-*
    keep_last: 3
    keep_hourly: 24
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
  check_mode: true
  register: tiers

- name: Say which rules keep each snapshot and why the others would go
  ansible.builtin.debug:
    msg:
      - "{{ item.domain }} keeps {{ item.kept | map(attribute='name') | zip(item.kept | map(attribute='rules')) }}"
      - "{{ item.domain }} would delete {{ item.deleted | items2dict(key_name='name', value_name='reason') }}"
  loop: "{{ tiers.results }}"
  loop_control:
    label: "{{ item.domain }}"
'''

RETURN = r'''
domain:
  description: The domain worked on (single-domain mode).
  returned: when O(domain) is given
  type: str
  sample: web1
deleted:
  description:
    - The matching snapshots deleted (in check mode, that would be deleted), oldest first, with their
      creation time (ISO 8601, UTC) and the reason they go.
  returned: when O(domain) is given
  type: list
  elements: dict
  contains:
    name:
      description: The name of the snapshot.
      type: str
    creation_time:
      description: When it was taken (ISO 8601, UTC), or null if libvirt recorded no time.
      type: str
    reason:
      description:
        - Why no rule keeps it, one part a rule separated by C(; ), such as C(older than 7d),
          C(not among the newest 3 (keep_last)), C(a newer snapshot is kept for day 2026-11-20 (keep_daily)),
          C(week 2026-W40 is older than the last 4 weeks that have one (keep_weekly)).
        - Periods are written C(2026-11-20T14Z) (hour), C(2026-11-20) (day), C(2026-W47) (ISO week), C(2026-11)
          (month) and C(2026) (year), in UTC.
      type: str
  sample:
    - name: nightly-2026-11-22
      creation_time: '2026-11-22T02:00:00Z'
      reason: not among the newest 2 (keep_last); day 2026-11-22 is older than the last 3 days that have one (keep_daily)
    - name: nightly-2026-11-23-early
      creation_time: '2026-11-23T01:00:00Z'
      reason: not among the newest 2 (keep_last); a newer snapshot is kept for day 2026-11-23 (keep_daily)
kept:
  description:
    - The matching snapshots kept, oldest first, with their creation time (ISO 8601, UTC) and the rules that
      keep them.
  returned: when O(domain) is given
  type: list
  elements: dict
  contains:
    name:
      description: The name of the snapshot.
      type: str
    creation_time:
      description: When it was taken (ISO 8601, UTC), or null if libvirt recorded no time.
      type: str
    rules:
      description:
        - Every option that keeps it, in this order; C(keep_last), C(keep_hourly), C(keep_daily), C(keep_weekly),
          C(keep_monthly), C(keep_yearly), C(older_than).
        - C(older_than) keeps a snapshot that is not older than O(older_than) (or whose creation time is unknown).
        - Never empty.
      type: list
      elements: str
  sample:
    - name: nightly-2026-11-23
      creation_time: '2026-11-23T02:00:00Z'
      rules: [keep_daily]
    - name: nightly-2026-11-24
      creation_time: '2026-11-24T02:00:00Z'
      rules: [keep_daily]
    - name: nightly-2026-11-25
      creation_time: '2026-11-25T02:00:00Z'
      rules: [keep_last, keep_daily]
results:
  description:
    - Batch mode, one entry a domain, in the order the domains were resolved, with the keys C(domain),
      C(changed), C(failed), RV(deleted) and RV(kept), and C(msg) for a domain that failed.
    - A domain that failed after some deletions lists them in RV(deleted).
  returned: when O(domains) is given
  type: list
  elements: dict
  sample:
    - domain: web-1
      changed: true
      failed: false
      deleted: [{name: nightly-2026-11-20, creation_time: '2026-11-20T02:00:00Z', reason: not among the newest 1 (keep_last)}]
      kept: [{name: nightly-2026-11-25, creation_time: '2026-11-25T02:00:00Z', rules: [keep_last]}]
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

import time
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._batch import BATCH_OPTIONS, DomainResult, run_domains
from ansible_collections.kvm.snapshots.plugins.module_utils._guards import check_monitor_names
from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import JOBS_OPTIONS, job_slot
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
    libvirt_errors,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._retention import (
    KEEP_OPTIONS,
    Decision,
    Policy,
    parse_duration,
    plan,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import delete_snapshot, list_snapshots


def read_snapshots(dom: t.Any) -> list[dict[str, t.Any]]:
    with libvirt_errors(f'Reading the snapshots of domain "{dom.name()}"', domain=dom.name()):
        return list_snapshots(dom)


def brief(decision: Decision) -> dict[str, t.Any]:
    """A snapshot as RV(deleted) (with its reason) or RV(kept) (with the rules that keep it) list it."""
    snap = decision.snapshot
    item: dict[str, t.Any] = {'name': snap['name'], 'creation_time': snap['creation_time']}
    if decision.rules:
        item['rules'] = list(decision.rules)
    else:
        item['reason'] = decision.reason
    return item


class PruneManager:
    """Applies the retention rules to the matching snapshots of each domain."""

    def __init__(self, client: AnsibleLibvirtModule) -> None:
        self.client = client
        self.params = client.params
        match: str = self.params['match']
        if not match:
            raise SnapshotError('match must not be empty; use "*" to prune every snapshot.')
        keep = {option: self.params[option] for option in KEEP_OPTIONS if self.params[option] is not None}
        for option, count in keep.items():
            if count < 0:
                raise SnapshotError(f'{option} must be 0 or more, not {count}.')
        cutoff: float | None = None
        if self.params['older_than'] is not None:
            cutoff = time.time() - parse_duration(self.params['older_than'])
        self.policy = Policy(match=match, keep=keep, cutoff=cutoff,
                             older_than=str(self.params['older_than']).strip() if cutoff is not None else None)

    def run(self) -> dict[str, t.Any]:
        return run_domains(self.client, self.prune, diff_by_domain=True)

    def prune(self, domain: str) -> DomainResult:
        """Prune one domain. A refused deletion comes back as a failure that lists what was deleted before it."""
        dom = self.client.lookup_domain(domain)
        snapshots = read_snapshots(dom)
        to_delete, to_keep = plan(snapshots, self.policy)
        deleted: list[dict[str, t.Any]] = []
        gone: set[str] = set()
        failure = None
        if to_delete:
            try:
                # before any deletion: a name QEMU's monitor would misread fails the domain with nothing deleted
                check_monitor_names(dom, [d.snapshot['name'] for d in to_delete
                                          if d.snapshot['location'] == 'internal'], 'prune')
                with job_slot(self.client, f'Pruning the snapshots of domain "{domain}"'):
                    failure = self._delete_each(dom, to_delete, deleted, gone)
            except SnapshotError as exc:  # refused, or no turn under hypervisor_jobs: nothing was deleted
                failure = exc.msg
        before = [s['name'] for s in snapshots]
        return DomainResult(bool(deleted), {'deleted': deleted, 'kept': [brief(s) for s in to_keep]},
                            before, [n for n in before if n not in gone], failure=failure)

    def _delete_each(self, dom: t.Any, to_delete: list[Decision], deleted: list[dict[str, t.Any]],
                     gone: set[str]) -> str | None:
        """Delete the snapshots in order (check mode: only count them), adding to ``deleted`` and ``gone``;
        stops at the first refusal and returns its message, which lists what was deleted before it."""
        for decision in to_delete:
            snap = decision.snapshot
            if not self.client.check_mode:
                try:
                    if not delete_snapshot(dom, snap['name'], self.params['busy_timeout']):
                        gone.add(snap['name'])  # another run deleted it meanwhile: nothing to do
                        continue
                except SnapshotError as exc:
                    if deleted:
                        return (f'{exc.msg} (deleted before that: {", ".join(d["name"] for d in deleted)};'
                                ' a re-run continues from here)')
                    return exc.msg
            deleted.append(brief(decision))
            gone.add(snap['name'])
        return None


def main() -> None:
    argument_spec = dict(
        match={'type': 'str', 'required': True},
        keep_last={'type': 'int'},
        keep_hourly={'type': 'int'},
        keep_daily={'type': 'int'},
        keep_weekly={'type': 'int'},
        keep_monthly={'type': 'int'},
        keep_yearly={'type': 'int'},
        older_than={'type': 'str'},
    )
    client = AnsibleLibvirtModule(argument_spec, (BATCH_OPTIONS, JOBS_OPTIONS), supports_check_mode=True,
                                  required_one_of=[(*KEEP_OPTIONS, 'older_than')])
    try:
        result = PruneManager(client).run()
    except (SnapshotError, LibvirtError) as exc:
        client.fail(exc)
    client.exit(**result)


if __name__ == '__main__':
    main()
