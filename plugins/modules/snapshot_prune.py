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
  - Retention for snapshots. Of the snapshots whose name matches O(match), keeps the newest O(keep_last)
    and deletes the others, or only those of them older than O(older_than).
  - A snapshot whose name does not match O(match) is never touched.
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
attributes:
  check_mode:
    description: Can run in check mode and return the changed status prediction without modifying the target.
    support: full
    details: Reports in RV(deleted) what would be deleted; nothing is deleted.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
    details: The names of the snapshots of each domain before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second run indicates no change.
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
      - V(0) keeps none of them for their rank (O(older_than) still applies).
      - At least one of O(keep_last) and O(older_than) is required.
    type: int
  older_than:
    description:
      - Delete only matching snapshots older than this, of those that O(keep_last) does not keep.
      - A duration such as V(12h), V(7d), V(1d12h), V(2w) or V(90m), or a number of seconds (ASCII digits), at most
        1000 years.
      - Left out, every matching snapshot that O(keep_last) does not keep is deleted.
      - At least one of O(keep_last) and O(older_than) is required.
    type: str
notes:
  - A snapshot that another run deleted while this one was working is not an error.
  - On a running or paused domain, a domain whose internal snapshots to delete include a name with C(") or
    C(\\) fails before anything is deleted (libvirt 9.0 would hand the name to QEMU's monitor unescaped, and
    QEMU would delete another snapshot, or none). Prune it with the domain shut off, or narrow O(match).
  - When the current snapshot is deleted, libvirt makes its parent the current one.
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
      creation time (ISO 8601, UTC).
  returned: when O(domain) is given
  type: list
  elements: dict
  sample:
    - name: nightly-2026-11-20
      creation_time: '2026-11-20T02:00:00Z'
    - name: nightly-2026-11-21
      creation_time: '2026-11-21T02:00:00Z'
kept:
  description: The matching snapshots kept, oldest first, with their creation time (ISO 8601, UTC).
  returned: when O(domain) is given
  type: list
  elements: dict
  sample:
    - name: nightly-2026-11-24
      creation_time: '2026-11-24T02:00:00Z'
    - name: nightly-2026-11-25
      creation_time: '2026-11-25T02:00:00Z'
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
      deleted: [{name: nightly-2026-11-20, creation_time: '2026-11-20T02:00:00Z'}]
      kept: [{name: nightly-2026-11-25, creation_time: '2026-11-25T02:00:00Z'}]
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
import time
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._batch import (
    BATCH_ARGUMENT_SPEC,
    BATCH_MODULE_KWARGS,
    run_batch,
    with_diff,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import JOBS_ARGUMENT_SPEC, job_slot
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
    describe,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import (
    check_monitor_names,
    delete_snapshot,
    list_snapshots,
    parse_duration,
)


def read_snapshots(dom: t.Any) -> list[dict[str, t.Any]]:
    try:
        return list_snapshots(dom)
    except LibvirtError as exc:
        raise SnapshotError(describe(exc, f'Reading the snapshots of domain "{dom.name()}"'),
                            domain=dom.name()) from None


def brief(snap: dict[str, t.Any]) -> dict[str, t.Any]:
    return {'name': snap['name'], 'creation_time': snap['creation_time']}


class PruneManager:
    """Applies the retention rule to the matching snapshots of each domain."""

    def __init__(self, client: AnsibleLibvirtModule) -> None:
        self.client = client
        self.params = client.params
        self.match: str = self.params['match']
        if not self.match:
            raise SnapshotError('match must not be empty; use "*" to prune every snapshot.')
        self.keep_last: int | None = self.params['keep_last']
        if self.keep_last is not None and self.keep_last < 0:
            raise SnapshotError(f'keep_last must be 0 or more, not {self.keep_last}.')
        self.cutoff: float | None = None
        if self.params['older_than'] is not None:
            self.cutoff = time.time() - parse_duration(self.params['older_than'])

    def run(self) -> dict[str, t.Any]:
        if self.params['domain'] is not None:
            result = self.prune(self.params['domain'])
            before, after = result.pop('_before'), result.pop('_after')
            if result.pop('failed', False):
                raise SnapshotError(result.pop('msg'), **result)
            return with_diff(self.client, result, {result['domain']: before}, {result['domain']: after})
        return run_batch(self.client, self.prune)

    def plan(self, snapshots: list[dict[str, t.Any]]) -> tuple[list[dict[str, t.Any]], list[dict[str, t.Any]]]:
        """The matching snapshots to delete and to keep, both oldest first.

        Age ranks by creation time; within the same second, a snapshot after its ancestors
        (``snapshots`` is in parent-before-child order).
        """
        rank = {s['name']: (s['creation_time_epoch'] or 0, i) for i, s in enumerate(snapshots)}
        matching = [s for s in snapshots if fnmatch.fnmatchcase(s['name'], self.match)]
        newest_first = sorted(matching, key=lambda s: rank[s['name']], reverse=True)
        candidates = newest_first[self.keep_last:] if self.keep_last is not None else newest_first
        if self.cutoff is not None:
            # a snapshot of unknown age is never old enough
            candidates = [s for s in candidates
                          if s['creation_time_epoch'] is not None and s['creation_time_epoch'] < self.cutoff]
        doomed = {s['name'] for s in candidates}

        def oldest_first(items: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
            return sorted(items, key=lambda s: rank[s['name']])

        return oldest_first(candidates), oldest_first([s for s in matching if s['name'] not in doomed])

    def prune(self, domain: str) -> dict[str, t.Any]:
        """Prune one domain. A refused deletion comes back as a failed result that lists what was deleted before it."""
        dom = self.client.lookup_domain(domain)
        snapshots = read_snapshots(dom)
        to_delete, to_keep = self.plan(snapshots)
        deleted: list[dict[str, t.Any]] = []
        gone: set[str] = set()
        failure = None
        if to_delete:
            try:
                # before any deletion: a name QEMU's monitor would misread fails the domain with nothing deleted
                check_monitor_names(dom, [s['name'] for s in to_delete if s['location'] == 'internal'], 'prune')
                with job_slot(self.client, f'Pruning the snapshots of domain "{domain}"'):
                    failure = self._delete_each(dom, to_delete, deleted, gone)
            except SnapshotError as exc:  # refused, or no turn under hypervisor_jobs: nothing was deleted
                failure = exc.msg
        before = [s['name'] for s in snapshots]
        result: dict[str, t.Any] = {
            'domain': domain,
            'changed': bool(deleted),
            'deleted': deleted,
            'kept': [brief(s) for s in to_keep],
            '_before': before,
            '_after': [n for n in before if n not in gone],
        }
        if failure is not None:
            result.update(failed=True, msg=failure)
        return result

    def _delete_each(self, dom: t.Any, to_delete: list[dict[str, t.Any]], deleted: list[dict[str, t.Any]],
                     gone: set[str]) -> str | None:
        """Delete the snapshots in order (check mode: only count them), adding to ``deleted`` and ``gone``;
        stops at the first refusal and returns its message, which lists what was deleted before it."""
        for snap in to_delete:
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
            deleted.append(brief(snap))
            gone.add(snap['name'])
        return None


def main() -> None:
    argument_spec = dict(
        BATCH_ARGUMENT_SPEC,
        **JOBS_ARGUMENT_SPEC,
        match={'type': 'str', 'required': True},
        keep_last={'type': 'int'},
        older_than={'type': 'str'},
    )
    kwargs = dict(BATCH_MODULE_KWARGS)
    kwargs['required_one_of'] = [*BATCH_MODULE_KWARGS['required_one_of'], ('keep_last', 'older_than')]
    client = AnsibleLibvirtModule(argument_spec, supports_check_mode=True, **kwargs)
    try:
        result = PruneManager(client).run()
    except (SnapshotError, LibvirtError) as exc:
        client.fail(exc)
    client.exit(**result)


if __name__ == '__main__':
    main()
