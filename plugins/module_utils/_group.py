# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""Application groups: one named snapshot of several domains, taken at one point, reverted and deleted together.

libvirt has no call that covers several domains, and a snapshot has no field for metadata of our own. So the
group is recorded in the description of each member's snapshot: its last line is the group marker,

    [kvm.snapshots.group] {"name": "pre-change", "id": "<32 hex>", "members": [{"domain": "db1",
    "uri": "qemu+ssh://root@hv1/system", "state": "running"}, ...]}

(one line of compact JSON after the prefix). ``id`` is new for every group taken, so that two snapshots of the
same name taken at different times are never mistaken for one group; ``uri`` is the member's URI with any
password masked; ``state`` is the member's power state just before the group was taken, the one a group revert
brings it back to. Whatever the user wrote as description comes before the marker line.

``GroupManager`` does the work of the module kvm.snapshots.snapshot_group (states present, absent, reverted).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime
import json
import threading
import time
import typing as t
import uuid

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import (
    AgentUnsupported,
    domain_state,
    has_agent_channel,
    agent_freeze_problem,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._guards import (
    check_monitor_delete,
    check_monitor_name,
    check_revert_possible,
    validate_name,
    validate_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import (
    HypervisorJobs,
    hold_slots,
    hypervisor_key,
    job_slot,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._kind import EXTERNAL_REVERT, preflight_snapshot
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
    describe,
    retry_busy,
    version_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._uri import (
    MASK,
    is_local_uri,
    redact_uri,
    uri_problem,
    uri_secrets,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._release import ReleaseGuard
from ansible_collections.kvm.snapshots.plugins.module_utils._revert import revert_snapshot
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import (
    create_snapshot,
    delete_snapshot,
    lookup_snapshot,
    snapshot_facts,
)

MARKER = '[kvm.snapshots.group] '

FREEZES = ('agent', 'pause')
FAILURE_POLICIES = ('all_or_none', 'best_effort')
STATES = ('present', 'absent', 'reverted')

AGENT_TIMEOUT = 5  # seconds a guest agent has to answer guest-info before the group is paused instead

GROUP_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    'name': {'type': 'str', 'required': True},
    'members': {'type': 'list', 'elements': 'dict', 'options': {
        'domain': {'type': 'str', 'required': True},
        'uri': {'type': 'str'},
    }},
    'state': {'type': 'str', 'default': 'present', 'choices': list(STATES)},
    'freeze': {'type': 'str', 'default': 'agent', 'choices': list(FREEZES)},
    'timeout': {'type': 'int', 'default': 30},
    'location': {'type': 'str', 'default': 'auto', 'choices': ['auto', 'internal', 'external']},
    'description': {'type': 'str'},
    'order': {'type': 'list', 'elements': 'str', 'default': []},
    'safety_snapshot': {'type': 'bool', 'default': True},
    'failure_policy': {'type': 'str', 'default': 'all_or_none', 'choices': list(FAILURE_POLICIES)},
}
GROUP_MODULE_KWARGS: dict[str, t.Any] = {
    'required_if': [('state', 'present', ('members',)), ('state', 'reverted', ('members',))],
}


# The marker

def group_marker(name: str, group_id: str, members: list[dict[str, t.Any]]) -> str:
    """The marker line of a group snapshot (``members``: ``{domain, uri, state}``, uri already redacted)."""
    record = {'name': name, 'id': group_id,
              'members': [{'domain': m['domain'], 'uri': m['uri'], 'state': m['state']} for m in members]}
    return MARKER + json.dumps(record, separators=(',', ':'), sort_keys=False)


def with_marker(description: str | None, marker: str) -> str:
    """The description stored with a group snapshot: the user's text, then the marker on a line of its own."""
    return f'{description}\n{marker}' if description else marker


def parse_group(description: str | None) -> dict[str, t.Any] | None:
    """``{name, id, members}`` of the group a snapshot belongs to, from its description; None when it has no
    (valid) marker. Never raises: any text a user stored is read as "no group"."""
    if not description:
        return None
    line = description.rsplit('\n', 1)[-1]
    if not line.startswith(MARKER):
        return None
    try:
        record = json.loads(line[len(MARKER):])
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get('name'), str) \
            or not isinstance(record.get('id'), str) or not isinstance(record.get('members'), list):
        return None
    members = []
    for item in record['members']:
        if not isinstance(item, dict) or not isinstance(item.get('domain'), str):
            return None
        members.append({'domain': item['domain'], 'uri': item.get('uri') if isinstance(item.get('uri'), str) else None,
                        'state': item.get('state') if isinstance(item.get('state'), str) else None})
    return {'name': record['name'], 'id': record['id'], 'members': members}


def user_description(description: str | None) -> str | None:
    """The description without the group marker line (None when nothing else is left)."""
    if parse_group(description) is None:
        return description
    head, _sep, _marker = (description or '').rpartition('\n')
    return head or None


# Connections: one per URI

class UriClient(AnsibleLibvirtModule):
    """The module's client for another URI: same module, options and error handling, its own connection."""

    def __init__(self, parent: AnsibleLibvirtModule, uri: str) -> None:  # pylint: disable=super-init-not-called
        self.__dict__.update(parent.__dict__)  # the module, its options and modes, whatever the wrapper keeps
        self.params = dict(parent.params, uri=uri)
        self._conn = None  # what belongs to the connection is this URI's own
        self._libvirt_version = None


class Member:
    """One domain of the group, and what happened to it."""

    def __init__(self, domain: str, uri: str, client: AnsibleLibvirtModule) -> None:
        self.domain = domain
        self.uri = uri
        self.client = client
        self.dom: t.Any = None
        self.snap: t.Any = None
        self.group: dict[str, t.Any] | None = None
        self.state_before: str | None = None
        self.state_after: str | None = None
        self.status = 'untouched'
        self.error: str | None = None
        self.plan: t.Any = None
        self.disks: list[dict[str, t.Any]] = []
        self.frozen = False
        self.frozen_at: float | None = None
        self.thawed_at: float | None = None
        self.made = False
        self.facts: dict[str, t.Any] | None = None
        self.safety: str | None = None
        self.safety_snap: t.Any = None
        self.safety_plan: t.Any = None
        self.target_state: str | None = None

    @property
    def shown_uri(self) -> str:
        return redact_uri(self.uri)

    @property
    def label(self) -> str:
        return f'{self.domain} on {self.shown_uri}'

    @property
    def hypervisor(self) -> str:
        """What names the member's hypervisor for the hypervisor_jobs limit."""
        return hypervisor_key(self.uri)

    @property
    def window_ms(self) -> int:
        if self.frozen_at is None or self.thawed_at is None:
            return 0
        return int(round((self.thawed_at - self.frozen_at) * 1000))

    def result(self, name: str) -> dict[str, t.Any]:
        return {
            'domain': self.domain, 'uri': self.shown_uri, 'snapshot': name, 'status': self.status,
            'window_ms': self.window_ms, 'state_before': self.state_before, 'state_after': self.state_after,
            'safety_snapshot': self.safety, 'error': self.error,
            'kind': {'location': self.plan.location, 'memory': self.plan.memory} if self.plan is not None else None,
        }


def _parallel(members: list[Member], work: t.Callable[[Member], t.Any]) -> dict[str, str]:
    """``work(member)`` for every member at once; the members whose work failed, with the message."""
    errors: dict[str, str] = {}
    if not members:
        return errors

    def guarded(member: Member) -> None:
        try:
            work(member)
        except SnapshotError as exc:
            errors[member.label] = exc.msg
        except LibvirtError as exc:
            errors[member.label] = describe(exc, f'Domain "{member.domain}"')
        except Exception as exc:  # pylint: disable=broad-exception-caught
            errors[member.label] = f'unexpected error: {exc.__class__.__name__}: {exc}'

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(members)) as pool:
        list(pool.map(guarded, members))
    return errors


def _say(errors: dict[str, str]) -> str:
    return '; '.join(f'{label}: {msg}' for label, msg in errors.items())


def utc_stamp() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')


class GroupManager:
    """Brings the group snapshot ``name`` of ``members`` to the state asked for."""

    def __init__(self, client: AnsibleLibvirtModule) -> None:
        self.client = client
        self.params = client.params
        self.name = validate_name(self.params['name'])
        self.description = validate_text(self.params['description'])
        self.busy_timeout = self.params['busy_timeout']
        self.warnings: list[str] = []
        if self.params['timeout'] < 1:
            raise SnapshotError(f'timeout must be 1 second or more, not {self.params["timeout"]}. Nothing was changed.')
        self.clients: dict[str, AnsibleLibvirtModule] = {client.uri: client}
        # forked in present() before anything else (_release.py); it thaws or resumes the members of a window
        # this process does not close
        self.guard = ReleaseGuard(self.name)
        self.members = self._members(self.params['members'] or [])
        names = [m.domain for m in self.members]
        unknown = [n for n in self.params['order'] if n not in names]
        if unknown:
            raise SnapshotError(f'order names {", ".join(unknown)}, which {"is" if len(unknown) == 1 else "are"} not '
                                'among the members. Nothing was changed.')

    def _members(self, given: list[dict[str, t.Any]]) -> list[Member]:
        members: list[Member] = []
        seen: set[tuple[str, str]] = set()
        for item in given:
            domain, uri = item.get('domain'), item.get('uri') or self.client.uri
            self.client.module.no_log_values.update(uri_secrets(uri))
            if not isinstance(domain, str) or not domain.strip():
                raise SnapshotError('Every member needs a domain name; one has an empty one. Nothing was changed.')
            problem = uri_problem(uri)
            if problem:
                raise SnapshotError(f'Member {domain}: {problem} Nothing was changed.')
            if (domain, uri) in seen:
                raise SnapshotError(f'Member {domain} on {redact_uri(uri)} is listed twice. Nothing was changed.')
            seen.add((domain, uri))
            members.append(Member(domain, uri, self._client(uri)))
        return members

    def _client(self, uri: str) -> AnsibleLibvirtModule:
        if uri not in self.clients:
            self.clients[uri] = UriClient(self.client, uri)
        return self.clients[uri]

    def close(self) -> None:
        for uri, client in self.clients.items():
            if uri != self.client.uri:
                client.close()

    def run(self) -> dict[str, t.Any]:
        try:
            if self.params['state'] == 'present':
                result = self.present()
            elif self.params['state'] == 'absent':
                result = self.absent()
            else:
                result = self.reverted()
        finally:
            self.guard.close()
            self.close()
        result['warnings'] = self.warnings
        return result

    def _result(self, changed: bool, freeze_used: str = 'none', window_ms: int = 0) -> dict[str, t.Any]:
        return {'changed': changed, 'name': self.name, 'window_ms': window_ms, 'freeze_used': freeze_used,
                'members': [m.result(self.name) for m in self.members]}

    def _fail(self, msg: str, result: dict[str, t.Any]) -> t.NoReturn:
        raise SnapshotError(msg, **{k: v for k, v in result.items() if k not in ('warnings',)})

    def _diff(self, result: dict[str, t.Any], before: dict[str, t.Any], after: dict[str, t.Any]) -> dict[str, t.Any]:
        if self.client.diff_mode:
            result['diff'] = {'before': before, 'after': after}
        return result

    # Preflight shared by every state

    def _lookup(self, missing_ok: bool = False) -> None:
        errors: dict[str, str] = {}
        for member in self.members:
            try:
                member.dom = member.client.lookup_domain(member.domain)
                member.state_before = member.state_after = domain_state(member.dom)
                member.snap = lookup_snapshot(member.dom, self.name)
                if member.snap is not None:
                    member.facts = snapshot_facts(member.snap, member.domain)
                    member.group = parse_group(member.facts['description'])
            except SnapshotError as exc:
                if missing_ok and member.dom is None and 'does not exist' in exc.msg:
                    member.status, member.error = 'absent', exc.msg
                    continue
                errors[member.label] = exc.msg
            except LibvirtError as exc:
                errors[member.label] = describe(exc, f'Reading domain "{member.domain}"')
        if errors:
            self._fail(f'Group snapshot "{self.name}": preflight failed, nothing was changed. {_say(errors)}',
                       self._result(False))

    def _one_group(self, have: list[Member]) -> str | None:
        """The id of the group that ``have`` (members with the snapshot) share, or None when they do not."""
        ids = {m.group['id'] if m.group and m.group['name'] == self.name else None for m in have}
        return ids.pop() if len(ids) == 1 and None not in ids else None

    # state=present

    def present(self) -> dict[str, t.Any]:
        if not self.client.check_mode:
            self.guard.start()  # now, while this process has no thread and no libvirt connection
        self._lookup()
        have = [m for m in self.members if m.snap is not None]
        if have:
            return self._existing(have)
        mode = self._freeze_mode()
        try:
            self._plan(mode)
        except SnapshotError as exc:
            if mode != 'agent' or self.params['location'] != 'auto':
                raise
            # location auto: a kind that works. A disk-only snapshot is external, which a domain with internal
            # snapshots (or a disk that is not a file) cannot take; with memory it can be internal
            self.warnings.append(f'freeze: agent takes disk-only (external) snapshots of running members, and one '
                                 f'cannot be made ({exc.msg}); every member is paused instead, and snapshots with '
                                 'memory are taken.')
            mode = 'pause'
            self._plan(mode)
        if mode == 'agent' and self.params['location'] == 'auto' and any(m.plan.warnings for m in self.members):
            self.warnings.append(
                'freeze: agent takes disk-only (external) snapshots of running members, and libvirt '
                f'{self._old_versions()} cannot revert those; every member is paused instead, and snapshots that can '
                'be reverted (with memory) are taken.')
            mode = 'pause'
            self._plan(mode)
        for member in self.members:
            self.warnings.extend(member.plan.warnings)
        freeze_used = mode if any(m.state_before == 'running' for m in self.members) else 'none'
        before = {m.label: 'absent' for m in self.members}
        after = {m.label: f'present ({m.plan.location}, memory {m.plan.memory})' for m in self.members}
        if self.client.check_mode:
            for member in self.members:
                member.status = 'taken'
            return self._diff(self._result(True, freeze_used), before, after)
        with self._group_slots():
            window_ms = self._take(mode)
        return self._diff(self._result(True, freeze_used, window_ms), before, after)

    def _group_slots(self) -> t.ContextManager[float]:
        """The slots of the group's snapshots under hypervisor_jobs, taken all at once before the window: as many of
        each hypervisor as it has members, at most its limit (the snapshots then take turns in the window)."""
        limit = self.params.get('hypervisor_jobs') or 0
        timeout = self.params.get('hypervisor_jobs_timeout') or 0
        uris = {m.hypervisor: m.uri for m in self.members}
        return hold_slots([(HypervisorJobs(uris[key], limit, timeout), count)
                           for key, count in self._per_hypervisor().items()], f'Group snapshot "{self.name}"')

    def _per_hypervisor(self) -> collections.Counter[str]:
        """How many members each hypervisor has (by hypervisor_jobs' key)."""
        return collections.Counter(m.hypervisor for m in self.members)

    def _old_versions(self) -> str:
        versions = sorted({m.client.libvirt_version for m in self.members})
        return ', '.join(version_text(v) for v in versions if v < EXTERNAL_REVERT) or 'before 9.9'

    def _existing(self, have: list[Member]) -> dict[str, t.Any]:
        missing = [m for m in self.members if m.snap is None]
        group_id = self._one_group(have)
        if not missing and group_id is not None:
            recorded = {(m['domain'], m['uri']) for m in have[0].group['members']}
            asked = {(m.domain, m.shown_uri) for m in self.members}
            if recorded != asked:
                self.warnings.append(f'Group snapshot "{self.name}" was taken of other members than listed now '
                                     f'({", ".join(sorted(d for d, _u in recorded))}); it is left as it is.')
            for member in self.members:
                member.status = 'exists'
            state = {m.label: 'present' for m in self.members}
            return self._diff(self._result(False), state, state)
        for member in self.members:
            member.status = 'exists' if member.snap is not None else 'absent'
        if missing:
            msg = (f'Group snapshot "{self.name}" exists on {", ".join(m.label for m in have)} but not on '
                   f'{", ".join(m.label for m in missing)}: a group is taken at one point or not at all, so nothing '
                   f'was changed. Delete it (state: absent) and take it again, or choose another name.')
        else:
            msg = (f'Snapshot "{self.name}" exists on every member, but not as one group snapshot of that name '
                   f'({"; ".join(self._group_text(m) for m in have)}). Nothing was changed. Choose another name, '
                   'or delete those snapshots first.')
        self._fail(msg, self._result(False))

    @staticmethod
    def _group_text(member: Member) -> str:
        if member.group is None:
            return f'{member.label}: not a group snapshot'
        return f'{member.label}: group "{member.group["name"]}" id {member.group["id"][:8]}'

    def _freeze_mode(self) -> str:
        running = [m for m in self.members if m.state_before == 'running']
        if self.params['freeze'] == 'pause' or not running:
            return 'pause'
        silent = {}
        for member in running:
            why = self._agent_cannot_freeze(member)
            if why:
                silent[member.label] = why
        if silent:
            self.warnings.append(f'freeze: agent, but the guest agent of {_say(silent)}; every running member is '
                                 'paused instead (freeze_used: pause).')
            return 'pause'
        return 'agent'

    @staticmethod
    def _agent_cannot_freeze(member: Member) -> str | None:
        """Why the guest agent of a running member cannot freeze its file systems; None when it can."""
        if not has_agent_channel(member.dom):
            return 'has no guest agent channel'
        try:
            return agent_freeze_problem(member.dom, AGENT_TIMEOUT)
        except AgentUnsupported:
            return None  # a driver without agent commands (the test driver): the freeze itself will tell

    def _plan(self, mode: str) -> None:
        errors: dict[str, str] = {}
        for member in self.members:
            disk_only = mode == 'agent' and member.state_before == 'running'
            try:
                preflight = preflight_snapshot(
                    member.dom, self.name, member.client.libvirt_version, is_local_uri(member.uri),
                    self.params['location'], disk_only)
                member.plan, member.disks = preflight.plan, preflight.disks
            except SnapshotError as exc:
                hint = (' (freeze: agent takes disk-only snapshots of running members; freeze: pause takes them '
                        'with memory)') if disk_only else ''
                errors[member.label] = exc.msg + hint
            except LibvirtError as exc:
                errors[member.label] = describe(exc, f'Reading domain "{member.domain}"')
        if errors:
            self._fail(f'Group snapshot "{self.name}" cannot be taken, nothing was changed. {_say(errors)}',
                       self._result(False))

    def _take(self, mode: str) -> int:
        """Freeze or pause, snapshot, thaw or resume every member; undo everything on a failure. The window."""
        group_id = uuid.uuid4().hex
        marker = group_marker(self.name, group_id, [
            {'domain': m.domain, 'uri': m.shown_uri, 'state': m.state_before} for m in self.members])
        description = with_marker(self.description, marker)
        running = [m for m in self.members if m.state_before == 'running']
        timeout = self.params['timeout']
        started = time.monotonic()

        def freeze(member: Member) -> None:
            member.frozen_at = time.monotonic()
            try:
                if mode == 'agent':
                    member.dom.fsFreeze(None, 0)
                else:
                    member.dom.suspend()
            except LibvirtError as exc:
                what = 'Freezing the file systems' if mode == 'agent' else 'Pausing'
                raise SnapshotError(describe(exc, f'{what} of domain "{member.domain}"')) from None
            member.frozen = True

        # hypervisor_jobs: no more snapshots at once on a hypervisor than the slots _group_slots took for it
        limit = self.params.get('hypervisor_jobs') or 0
        turns = {key: threading.BoundedSemaphore(min(count, limit))
                 for key, count in self._per_hypervisor().items()} if limit > 0 else {}

        def snapshot(member: Member) -> None:
            with turns.get(member.hypervisor) or contextlib.nullcontext():
                facts, made = create_snapshot(member.dom, self.name, description, member.plan,
                                              local=is_local_uri(member.uri), busy_timeout=0, disks=member.disks)
            member.facts, member.made = facts, made
            if not made:
                raise SnapshotError(f'another run took snapshot "{self.name}" of domain "{member.domain}" meanwhile')

        # if this process dies inside the window, the guard thaws or resumes the members (_release.py)
        guard = self.guard
        if running:
            guard.window(mode, [(m.uri, m.domain) for m in running], timeout)
        try:
            errors = _parallel(running, freeze)
            stage = 'freezing' if mode == 'agent' else 'pausing'
            thawed = False
            if not errors:
                stage = 'taking the snapshots'
                remaining = max(0.0, timeout - (time.monotonic() - started))
                pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(self.members))
                futures = {pool.submit(snapshot, m): m for m in self.members}
                done, not_done = concurrent.futures.wait(futures, timeout=remaining)
                if not_done:
                    first = 'freeze' if mode == 'agent' else 'pause' if running else 'snapshot'
                    for future in not_done:
                        errors[futures[future].label] = (f'its snapshot was not taken within timeout ({timeout} s) '
                                                         f'after the first {first}')
                    # bound the window first; the snapshots finish meanwhile
                    self._thaw_all(running, mode, errors, guard)
                    thawed = True
                pool.shutdown(wait=True)
                for future in futures:
                    exc = future.exception()
                    if exc is not None:
                        member = futures[future]
                        errors[member.label] = exc.msg if isinstance(exc, SnapshotError) else \
                            describe(exc, f'Snapshot of "{member.domain}"') if isinstance(exc, LibvirtError) \
                            else str(exc)
            if not thawed:
                self._thaw_all(running, mode, errors, guard)
        finally:
            guard.close()  # nothing after done(); else (a thaw failed, an error here) the guard releases them
        ends = [m.thawed_at for m in running if m.thawed_at] or [time.monotonic()]
        window_ms = int(round((max(ends) - min([m.frozen_at for m in running if m.frozen_at] or [started])) * 1000))
        if not errors and window_ms > timeout * 1000:
            errors['timeout'] = f'the window was {window_ms} ms, more than timeout ({timeout} s)'
        for member in self.members:
            member.state_after = self._state(member)
        if errors:
            self._undo(errors, stage, window_ms, mode, 'none' if not running else mode)
        for member in self.members:
            member.status = 'taken'
        return window_ms

    def _thaw_all(self, running: list[Member], mode: str, errors: dict[str, str], guard: ReleaseGuard) -> None:
        def thaw(member: Member) -> None:
            if not member.frozen:
                return
            try:
                if mode == 'agent':
                    retry_busy(lambda: member.dom.fsThaw(None, 0), 5)
                else:
                    retry_busy(member.dom.resume, self.busy_timeout)
            except LibvirtError as exc:
                what = 'Thawing the file systems' if mode == 'agent' else 'Resuming'
                raise SnapshotError(describe(exc, f'{what} of domain "{member.domain}"') + ' (it may still be '
                                    + ('frozen: check with guest-fsfreeze-status' if mode == 'agent' else 'paused')
                                    + ')') from None
            finally:
                member.thawed_at = time.monotonic()
            member.frozen = False

        failed = _parallel(running, thaw)
        if not failed:
            guard.done()
        errors.update({f'{label} (thaw)' if mode == 'agent' else f'{label} (resume)': msg
                       for label, msg in failed.items()})

    def _undo(self, errors: dict[str, str], stage: str, window_ms: int, mode: str, freeze_used: str) -> t.NoReturn:
        left: list[str] = []
        for member in self.members:
            member.status = 'absent'
            if member.made:
                try:
                    delete_snapshot(member.dom, self.name, self.busy_timeout)
                except SnapshotError as exc:
                    member.status, member.error = 'failed', exc.msg
                    left.append(member.label)
            member.state_after = self._state(member)
            mine = [msg for key, msg in errors.items() if key == member.label or key.startswith(member.label + ' (')]
            if mine:
                member.status, member.error = 'failed', '; '.join(mine + ([member.error] if member.error else []))
        released = 'thawed' if mode == 'agent' else 'resumed'
        msg = (f'Group snapshot "{self.name}" failed while {stage}: {_say(errors)}. Every member was {released} '
               f'and the snapshots taken in this attempt were deleted'
               + (f', except on {", ".join(left)} (delete them by hand)' if left else '') + '.')
        self._fail(msg, self._result(False, freeze_used, window_ms))

    @staticmethod
    def _state(member: Member) -> str | None:
        try:
            return domain_state(member.dom) if member.dom is not None else None
        except LibvirtError:
            return None

    # state=absent

    def absent(self) -> dict[str, t.Any]:
        if not self.members:
            self.members = self._discover()
        self._lookup(missing_ok=True)
        have = [m for m in self.members if m.snap is not None]
        strangers = [m for m in have if m.group is None or m.group['name'] != self.name]
        if strangers or (have and self._one_group(have) is None):
            self._fail(f'Snapshot "{self.name}" is not one group snapshot on every member that has it '
                       f'({"; ".join(self._group_text(m) for m in have)}). Nothing was deleted: delete those with '
                       'kvm.snapshots.snapshot, or name the members of one group.', self._result(False))
        errors: dict[str, str] = {}
        for member in have:
            try:
                check_monitor_delete(member.dom, [member.snap])
            except SnapshotError as exc:
                errors[member.label] = exc.msg
        if errors:
            self._fail(f'Group snapshot "{self.name}": nothing was deleted. {_say(errors)}', self._result(False))
        for member in self.members:
            if member.snap is None:
                member.status = 'absent'
                continue
            member.status = 'deleted'
            if not self.client.check_mode:
                try:
                    with job_slot(member.client, f'Deleting snapshot "{self.name}" of domain "{member.domain}"'):
                        delete_snapshot(member.dom, self.name, self.busy_timeout)
                except SnapshotError as exc:
                    member.status, member.error = 'failed', exc.msg
                    errors[member.label] = exc.msg
        result = self._result(bool(have))
        if errors:
            self._fail(f'Group snapshot "{self.name}": deleting failed on {_say(errors)}', result)
        return self._diff(result, {m.label: 'present' if m.snap else 'absent' for m in self.members},
                          {m.label: 'absent' for m in self.members})

    def _discover(self) -> list[Member]:
        """The members of group ``name`` found on the module's URI: every domain there with a group snapshot of
        that name, and the members its marker lists (on other URIs too)."""
        found: list[Member] = []
        conn = self.client.conn
        for dom in conn.listAllDomains(0):
            snap = lookup_snapshot(dom, self.name)
            group = parse_group(snapshot_facts(snap, dom.name()).get('description')) if snap is not None else None
            if group is None or group['name'] != self.name:
                continue
            for item in group['members']:
                uri = item['uri']
                if uri is None or uri == redact_uri(self.client.uri):
                    uri = self.client.uri
                elif MASK in uri:
                    raise SnapshotError(f'Group snapshot "{self.name}" has a member on {uri}, whose password is not '
                                        'recorded; list the members (members option). Nothing was deleted.')
                if all((m.domain, m.uri) != (item['domain'], uri) for m in found):
                    found.append(Member(item['domain'], uri, self._client(uri)))
        if not found:
            self.warnings.append(f'No domain on {self.client.display_uri} has a group snapshot "{self.name}" and no '
                                 'members were given: nothing to delete.')
        return found

    # state=reverted

    def reverted(self) -> dict[str, t.Any]:
        policy = self.params['failure_policy']
        if policy == 'all_or_none' and not self.params['safety_snapshot']:
            raise SnapshotError('failure_policy: all_or_none needs safety_snapshot: true (the members already '
                                'reverted are put back to their safety snapshots when another fails). Nothing was '
                                'changed.')
        self._lookup()
        missing = [m for m in self.members if m.snap is None]
        if missing or self._one_group(self.members) is None:
            for member in self.members:
                member.status = 'untouched'
            why = (f'{", ".join(m.label for m in missing)} {"has" if len(missing) == 1 else "have"} no snapshot of '
                   'that name') if missing else '; '.join(self._group_text(m) for m in self.members)
            self._fail(f'Group snapshot "{self.name}" cannot be reverted: {why}. Nothing was changed.',
                       self._result(False))
        safety_name = f'{self.name}-safety-{utc_stamp()}' if self.params['safety_snapshot'] else None
        if safety_name is not None:
            validate_name(safety_name, 'safety snapshot name')
        self._preflight_revert(safety_name)
        ordered = [m for n in self.params['order'] for m in self.members if m.domain == n]
        ordered += [m for m in self.members if m not in ordered]
        before = {m.label: {'state': m.state_before} for m in self.members}
        after = {m.label: {'current': self.name, 'state': m.target_state} for m in self.members}
        if self.client.check_mode:
            for member in self.members:
                member.status, member.state_after = 'reverted', member.target_state
            return self._diff(self._result(True), before, after)
        if safety_name is not None:
            self._take_safety(safety_name)
        failed: list[Member] = []
        for member in ordered:
            if failed and policy == 'all_or_none':
                break
            try:
                with job_slot(member.client, f'Reverting domain "{member.domain}" to snapshot "{self.name}"'):
                    revert_snapshot(member.dom, member.snap, member.target_state, self.busy_timeout,
                                    member.client.libvirt_version)
                member.status = 'reverted'
            except SnapshotError as exc:
                member.status, member.error = 'failed', exc.msg
                failed.append(member)
            member.state_after = self._state(member)
        if failed and policy == 'all_or_none':
            for member in reversed([m for m in ordered if m.status == 'reverted']):
                try:
                    with job_slot(member.client, f'Reverting domain "{member.domain}" to snapshot "{safety_name}"'):
                        revert_snapshot(member.dom, member.safety_snap, member.state_before, self.busy_timeout,
                                        member.client.libvirt_version)
                    member.status = 'restored'
                except SnapshotError as exc:
                    member.error = f'put back to safety snapshot "{safety_name}" failed: {exc.msg}'
                member.state_after = self._state(member)
        result = self._result(True)
        if failed:
            where = ', '.join(f'{m.domain} {m.status}' for m in ordered)
            what = ('the members reverted before it were put back to their safety snapshots'
                    if policy == 'all_or_none' else 'the other members were reverted')
            self._fail(f'Group revert to "{self.name}" failed on {_say({m.label: m.error for m in failed})}; '
                       f'{what} (failure_policy: {policy}). Where each member stands: {where}.', result)
        return self._diff(result, before, after)

    def _preflight_revert(self, safety_name: str | None) -> None:
        errors: dict[str, str] = {}
        marker = self.members[0].group
        for member in self.members:
            try:
                target = member.facts
                if target['location'] == 'external' and member.client.libvirt_version < EXTERNAL_REVERT:
                    raise SnapshotError(f'snapshot "{self.name}" is external, and libvirt '
                                        f'{version_text(member.client.libvirt_version)} cannot revert external '
                                        'snapshots (9.9 or later can)')
                check_revert_possible(member.dom, target)
                if target['location'] == 'internal' and target['state'] in ('running', 'paused'):
                    check_monitor_name(member.dom, self.name, 'revert')
                recorded = next((r['state'] for r in marker['members']
                                 if r['domain'] == member.domain and r['uri'] == member.shown_uri), None)
                if recorded not in ('running', 'paused'):
                    recorded = target['state'] if target['state'] in ('running', 'paused') else 'shutoff'
                member.target_state = recorded
                if safety_name is not None:
                    if lookup_snapshot(member.dom, safety_name) is not None:
                        raise SnapshotError(f'a snapshot "{safety_name}" exists already')
                    preflight = preflight_snapshot(
                        member.dom, safety_name, member.client.libvirt_version, is_local_uri(member.uri))
                    member.safety_plan, member.disks = preflight.plan, preflight.disks
                    member.safety = safety_name
            except SnapshotError as exc:
                errors[member.label] = exc.msg
            except LibvirtError as exc:
                errors[member.label] = describe(exc, f'Reading domain "{member.domain}"')
        if errors:
            self._fail(f'Group snapshot "{self.name}" cannot be reverted, nothing was changed. {_say(errors)}',
                       self._result(False))

    def _take_safety(self, safety_name: str) -> None:
        marker = group_marker(safety_name, uuid.uuid4().hex, [
            {'domain': m.domain, 'uri': m.shown_uri, 'state': m.state_before} for m in self.members])
        description = with_marker(f'State before a revert of group "{self.name}" by kvm.snapshots.snapshot_group',
                                  marker)
        errors: dict[str, str] = {}
        for member in self.members:
            try:
                with job_slot(member.client, f'Safety snapshot "{safety_name}" of domain "{member.domain}"'):
                    _facts, made = create_snapshot(member.dom, safety_name, description, member.safety_plan,
                                                   local=is_local_uri(member.uri), busy_timeout=self.busy_timeout,
                                                   disks=member.disks)
                member.made = made
                member.safety_snap = lookup_snapshot(member.dom, safety_name)
            except SnapshotError as exc:
                errors[member.label] = exc.msg
                break
        if errors:
            for member in self.members:
                if member.made:
                    try:
                        with job_slot(member.client, f'Deleting snapshot "{safety_name}" of domain "{member.domain}"'):
                            delete_snapshot(member.dom, safety_name, self.busy_timeout)
                    except SnapshotError:
                        pass  # named in the message below
                member.safety = None
            self._fail(f'Group revert to "{self.name}": the safety snapshot "{safety_name}" failed on {_say(errors)}; '
                       'the safety snapshots already taken were deleted, and no member was reverted.',
                       self._result(False))
