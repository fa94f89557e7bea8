# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the filter kvm.snapshots.snapshot_report does: the fleet report's data (docs/report.md) from the module results.

plugins/filter/snapshot_report.py imports this module when the filter is first called, not when Ansible loads the
filter files (see there why).

Input: one entry per hypervisor, as playbooks/snapshot_report.yml collects them::

    {'hypervisor': 'hv1', 'uri': 'qemu:///system', 'domains': ['*'],
     'info': <result of kvm.snapshots.snapshot_info without domain, or a failed/unreachable result>,
     'prune': <result of kvm.snapshots.snapshot_prune in check mode with domains, or None>}

Everything the report shows is computed here (ages, stale snapshots, totals, alerts), so that the
templates only lay it out and the unit tests can check every number.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
import time
import typing as t

from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.snapshots.plugins.module_utils._errors import SnapshotError
from ansible_collections.kvm.snapshots.plugins.module_utils._retention import parse_duration

SCHEMA_VERSION = 1

#: the names the collection's roles give their snapshots (roles/*/defaults: pre_change_snapshot_prefix,
#: rollback_safety_prefix); any other name that no prune rule matches was made by hand
MANAGED_NAMES = ('pre-change-*', 'rollback-safety-*')

DAY = 86400
#: the buckets of the age chart: (label, lower bound in seconds, upper bound or None)
AGE_BUCKETS = (
    ('< 1 day', 0, DAY),
    ('1-7 days', DAY, 7 * DAY),
    ('7-30 days', 7 * DAY, 30 * DAY),
    ('30-90 days', 30 * DAY, 90 * DAY),
    ('90-365 days', 90 * DAY, 365 * DAY),
    ('> 1 year', 365 * DAY, None),
)
LEVELS = ('OK', 'WARN', 'CRIT')


def human_bytes(value: int | None) -> str:
    """1536 -> '1.5 KiB'; None -> 'unknown'."""
    if value is None:
        return 'unknown'
    size = float(value)
    for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB'):
        if abs(size) < 1024 or unit == 'TiB':
            return f'{int(size)} B' if unit == 'B' else f'{size:.1f} {unit}'
        size /= 1024
    raise AssertionError('unreachable')  # pragma: no cover


def human_age(seconds: float | None) -> str:
    """Seconds -> '3.2 days', '5.0 hours', '12 minutes'; None -> 'unknown'."""
    if seconds is None:
        return 'unknown'
    if seconds >= DAY:
        return f'{seconds / DAY:.1f} days'
    if seconds >= 3600:
        return f'{seconds / 3600:.1f} hours'
    return f'{max(0, int(seconds // 60))} minutes'


def _duration(value: t.Any, name: str) -> int | None:
    """A threshold duration ('7d', '12h', seconds); None, '' or 0: the threshold is off."""
    if value is None or value == '' or value == 0 or value == '0':
        return None
    try:
        return parse_duration(str(value), name)
    except SnapshotError as exc:
        raise AnsibleFilterError(str(exc)) from None


def _number(value: t.Any, name: str) -> float | None:
    """A count or percent threshold; None or '': off (0 is a real threshold only for counts)."""
    if value is None or value == '':
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f'The threshold {name} must be a number, not {value!r}.') from None
    if number < 0:
        raise AnsibleFilterError(f'The threshold {name} must be 0 or more, not {value!r}.')
    return number


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _sum(values: t.Iterable[int | None]) -> int | None:
    """The sum, or None when any of the values is unknown."""
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


def _percent(part: int | None, whole: int | None) -> float | None:
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 1)


def _failure(result: t.Any, key: str) -> str | None:
    """Why a registered result holds no data (no ``key``): None when it does.

    The playbook registers with ``failed_when: false`` (a hypervisor that fails must not stop the report), which
    sets ``failed`` to false: a result without its data is a failure whatever ``failed`` says.
    """
    if not isinstance(result, dict):
        return 'no result'
    if result.get('unreachable'):
        return 'unreachable: ' + str(result.get('msg') or 'the hypervisor did not answer')
    if result.get('skipped'):
        return 'not read (skipped: ' + str(result.get('skip_reason') or 'a condition was false') + ')'
    if result.get('failed') or key not in result:
        return str(result.get('msg') or 'the module failed')
    return None


class _Report:
    """Builds the report dict; see docs/report.md for every key."""

    def __init__(self, hosts: list[dict[str, t.Any]], now: float | None, options: dict[str, t.Any]) -> None:
        self.hosts = hosts
        self.now = time.time() if now is None else float(now)
        self.th = {
            'age_warn_seconds': _duration(options.get('age_warn'), 'kvm_report_age_warn'),
            'age_crit_seconds': _duration(options.get('age_crit'), 'kvm_report_age_crit'),
            'count_warn': _number(options.get('count_warn'), 'kvm_report_count_warn'),
            'count_crit': _number(options.get('count_crit'), 'kvm_report_count_crit'),
            'held_warn_percent': _number(options.get('held_warn'), 'kvm_report_held_warn'),
            'held_crit_percent': _number(options.get('held_crit'), 'kvm_report_held_crit'),
            'free_warn_percent': _number(options.get('free_warn'), 'kvm_report_free_warn'),
            'free_crit_percent': _number(options.get('free_crit'), 'kvm_report_free_crit'),
        }
        stale_age = options.get('stale_age')
        self.stale_seconds = (_duration(stale_age, 'kvm_report_stale_age') if stale_age not in (None, '')
                              else self.th['age_warn_seconds'])
        managed = options.get('managed')
        self.managed = list(MANAGED_NAMES if managed is None else ([managed] if isinstance(managed, str) else managed))
        self.prune_match = options.get('prune_match') or None
        self.fail_on = str(options.get('fail_on') or 'warn').upper()
        if self.fail_on not in ('WARN', 'CRIT', 'NEVER'):
            raise AnsibleFilterError(f'fail_on must be warn, crit or never, not {options.get("fail_on")!r}.')
        self.alerts: list[dict[str, t.Any]] = []
        self.errors: list[dict[str, t.Any]] = []

    # ---- helpers

    def is_managed(self, name: str) -> bool:
        globs = self.managed + ([self.prune_match] if self.prune_match else [])
        return any(fnmatch.fnmatchcase(name, glob) for glob in globs)

    def alert(self, level: str, kind: str, where: dict[str, t.Any], value: t.Any, threshold: t.Any,
              message: str) -> None:
        self.alerts.append(dict({'level': level, 'kind': kind, 'hypervisor': None, 'domain': None, 'storage': None,
                                 'value': value, 'threshold': threshold, 'text': message,
                                 'message': f'{level} {kind} {message}'},
                                **where))

    def check(self, kind: str, where: dict[str, t.Any], value: float | None, warn: float | None,
              crit: float | None, message: t.Callable[[str, float], str], below: bool = False) -> None:
        """One alert at the highest level crossed (``value`` >= threshold, or <= with ``below``)."""
        if value is None:
            return
        for level, limit in (('CRIT', crit), ('WARN', warn)):
            if limit is not None and (value <= limit if below else value >= limit):
                self.alert(level, kind, where, value, limit, message(level.lower(), limit))
                return

    # ---- the report

    def build(self) -> dict[str, t.Any]:
        hypervisors, domains, snapshots, storage, preview = [], [], [], [], []
        for entry in self.hosts:
            hv = self.hypervisor(entry, domains, snapshots, storage, preview)
            hypervisors.append(hv)
        if not self.hosts:  # a report of nothing must not pass for a quiet fleet (a kvm_target that matches no host)
            self.errors.append({'hypervisor': None, 'domain': None, 'message': 'no hypervisor to read'})
            self.alert('CRIT', 'unread', {}, None, None, 'no hypervisor to read (does kvm_target match any host?)')
        snapshots.sort(key=lambda s: (-(s['age_seconds'] or 0), s['hypervisor'], s['domain'], s['name']))
        stale = [s for s in snapshots if s['stale']]
        histogram = []
        for label, low, high in AGE_BUCKETS:
            histogram.append({'label': label, 'min_seconds': low, 'max_seconds': high, 'count': sum(
                1 for s in snapshots if s['age_seconds'] is not None and s['age_seconds'] >= low
                and (high is None or s['age_seconds'] < high))})
        unknown_age = sum(1 for s in snapshots if s['age_seconds'] is None)
        if unknown_age:
            histogram.append({'label': 'unknown', 'min_seconds': None, 'max_seconds': None, 'count': unknown_age})
        order = {'CRIT': 0, 'WARN': 1}
        self.alerts.sort(key=lambda a: (order[a['level']], a['kind'], a['hypervisor'] or '', a['domain'] or '',
                                        a['storage'] or ''))
        counts = {'crit': sum(1 for a in self.alerts if a['level'] == 'CRIT'),
                  'warn': sum(1 for a in self.alerts if a['level'] == 'WARN')}
        status = 'CRIT' if counts['crit'] else 'WARN' if counts['warn'] else 'OK'
        failing = [a for a in self.alerts if self.fail_on != 'NEVER' and order[a['level']] <= order[self.fail_on]]
        return {
            'schema_version': SCHEMA_VERSION,
            'generated_at': _iso(self.now),
            'generated_epoch': int(self.now),
            'status': status,
            'headline': self.headline(status, counts, hypervisors, domains, snapshots, stale),
            'fail': bool(failing),
            'fail_on': self.fail_on.lower(),
            'thresholds': dict(self.th, stale_age_seconds=self.stale_seconds),
            'managed_names': self.managed,
            'prune_match': self.prune_match,
            'totals': {
                'hypervisors': len(hypervisors),
                'hypervisors_unread': sum(1 for h in hypervisors if not h['ok']),
                'domains': len(domains),
                'snapshots': len(snapshots),
                'snapshot_bytes': _sum(d['snapshot_bytes'] for d in domains),
                'stale': len(stale),
                'manual': sum(1 for s in snapshots if not s['managed']),
                'prune_would_delete': len(preview),
                'prune_would_free_bytes': _sum(p['size_bytes'] for p in preview),
                'alerts_crit': counts['crit'],
                'alerts_warn': counts['warn'],
                'errors': len(self.errors),
            },
            'hypervisors': hypervisors,
            'storage': storage,
            'domains': sorted(domains, key=lambda d: (-(d['snapshot_bytes'] or 0), -d['snapshots'],
                                                      d['hypervisor'], d['name'])),
            'snapshots': snapshots,
            'stale': [{k: s[k] for k in ('hypervisor', 'domain', 'name', 'creation_time', 'age_seconds', 'size_bytes',
                                         'stale_reasons')} for s in stale],
            'prune_preview': preview,
            'age_histogram': histogram,
            'alerts': self.alerts,
            'errors': self.errors,
        }

    def headline(self, status: str, counts: dict[str, int], hypervisors: list[t.Any], domains: list[t.Any],
                 snapshots: list[t.Any], stale: list[t.Any]) -> str:
        unread = sum(1 for h in hypervisors if not h['ok'])
        parts = [f'{status}: {counts["crit"]} critical, {counts["warn"]} warning',
                 f'{len(snapshots)} snapshots of {len(domains)} VMs on {len(hypervisors)} hypervisors'
                 + (f' ({unread} not read)' if unread else ''),
                 f'{len(stale)} stale']
        return ', '.join(parts)

    def hypervisor(self, entry: dict[str, t.Any], domains: list[t.Any], snapshots: list[t.Any],
                   storage: list[t.Any], preview: list[t.Any]) -> dict[str, t.Any]:
        name = str(entry.get('hypervisor'))
        info = entry.get('info')
        globs = entry.get('domains') or ['*']
        globs = [globs] if isinstance(globs, str) else list(globs)
        hv: dict[str, t.Any] = {'name': name, 'uri': entry.get('uri'), 'ok': True, 'error': None,
                                'libvirt_version': None, 'domains': 0, 'snapshots': 0, 'snapshot_bytes': 0,
                                'oldest_age_seconds': None, 'unmatched': [], 'storage': []}
        failure = _failure(info, 'domains')
        if failure is not None:
            hv.update(ok=False, error=failure, snapshot_bytes=None)
            self.errors.append({'hypervisor': name, 'domain': None, 'message': failure})
            self.alert('CRIT', 'unread', {'hypervisor': name}, None, None, f'{name}: not read: {failure}')
            return hv
        hv['libvirt_version'] = info.get('libvirt_version')
        for dom_name, message in sorted((info.get('errors') or {}).items()):  # snapshot_info with domains
            self.errors.append({'hypervisor': name, 'domain': dom_name, 'message': str(message)})
            self.alert('CRIT', 'unread', {'hypervisor': name, 'domain': dom_name}, None, None,
                       f'{name}/{dom_name}: not read: {message}')
        all_domains: dict[str, t.Any] = info.get('domains') or {}
        chosen = sorted(d for d in all_domains if any(fnmatch.fnmatchcase(d, g) for g in globs))
        hv['unmatched'] = [g for g in globs if not any(fnmatch.fnmatchcase(d, g) for d in all_domains)]
        by_domain: dict[str, list[dict[str, t.Any]]] = {d: [] for d in chosen}
        for snap in info.get('snapshots') or []:
            if snap.get('domain') in by_domain:
                by_domain[snap['domain']].append(snap)
        would_prune = self.prune(name, entry.get('prune'), set(chosen), preview)
        stores: dict[str, dict[str, t.Any]] = {}
        for dom_name in chosen:
            dom = self.domain(name, dom_name, all_domains[dom_name], by_domain[dom_name], would_prune, snapshots,
                              stores)
            domains.append(dom)
        hv_doms = [d for d in domains if d['hypervisor'] == name]
        rows = {(s['domain'], s['name']): s for s in snapshots if s['hypervisor'] == name}
        for item in preview:  # the preview's ages and sizes: those of the snapshots read
            row = rows.get((item['domain'], item['name'])) if item['hypervisor'] == name else None
            if row is not None:
                item.update(age_seconds=row['age_seconds'], size_bytes=row['size_bytes'])
        hv['domains'] = len(hv_doms)
        hv['snapshots'] = sum(d['snapshots'] for d in hv_doms)
        hv['snapshot_bytes'] = _sum(d['snapshot_bytes'] for d in hv_doms)
        ages = [d['oldest_age_seconds'] for d in hv_doms if d['oldest_age_seconds'] is not None]
        hv['oldest_age_seconds'] = max(ages) if ages else None
        for path in sorted(stores):
            store = stores[path]
            store['free_percent'] = _percent(store['free_bytes'], store['total_bytes'])
            store['held_percent'] = _percent(store['snapshot_bytes'], store['total_bytes'])
            storage.append(store)
            label = f'{name}:{path}'
            self.check('free', {'hypervisor': name, 'storage': path}, store['free_percent'],
                       self.th['free_warn_percent'], self.th['free_crit_percent'],
                       lambda lvl, lim, s=store, label=label: (
                           f'{label}: {s["free_percent"]:g}% free, {human_bytes(s["free_bytes"])} of '
                           f'{human_bytes(s["total_bytes"])} (snapshots hold {human_bytes(s["snapshot_bytes"])}; '
                           f'{lvl} at {lim:g}% free or less)'), below=True)
        hv['storage'] = sorted(stores)
        return hv

    def prune(self, hv: str, result: t.Any, chosen: set[str], preview: list[t.Any]) -> set[tuple[str, str]]:
        """The prune preview of one hypervisor; returns the (domain, name) pairs it would delete."""
        doomed: set[tuple[str, str]] = set()
        if result is None or (isinstance(result, dict) and result.get('skipped')):
            return doomed
        failure = _failure(result, 'results')
        items = result.get('results') if isinstance(result, dict) else None
        if failure is not None and not items:
            self.errors.append({'hypervisor': hv, 'domain': None, 'message': f'prune preview: {failure}'})
            return doomed
        for item in items or []:
            dom = item.get('domain')
            if item.get('failed'):
                self.errors.append({'hypervisor': hv, 'domain': dom,
                                    'message': f'prune preview: {item.get("msg") or "failed"}'})
            if dom not in chosen:
                continue
            for gone in item.get('deleted') or []:
                doomed.add((dom, gone.get('name')))
                preview.append({'hypervisor': hv, 'domain': dom, 'name': gone.get('name'),
                                'creation_time': gone.get('creation_time'), 'age_seconds': None, 'size_bytes': None,
                                'reason': gone.get('reason')})
        return doomed

    def domain(self, hv: str, name: str, facts: dict[str, t.Any], snaps: list[dict[str, t.Any]],
               would_prune: set[tuple[str, str]], out: list[t.Any], stores: dict[str, dict[str, t.Any]]) -> dict:
        rows = []
        for snap in snaps:
            epoch = snap.get('creation_time_epoch')
            age = max(0, int(self.now - epoch)) if epoch is not None else None
            managed = self.is_managed(snap['name'])
            reasons = []
            if self.stale_seconds is not None and age is not None and age >= self.stale_seconds:
                reasons.append('old')
            if not managed:
                reasons.append('manual')
            row = {
                'hypervisor': hv, 'domain': name, 'name': snap['name'], 'description': snap.get('description'),
                'creation_time': snap.get('creation_time'), 'creation_time_epoch': epoch, 'age_seconds': age,
                'state': snap.get('state'), 'location': snap.get('location'), 'memory': snap.get('memory'),
                'current': bool(snap.get('current')), 'parent': snap.get('parent'),
                'memory_bytes': snap.get('memory_bytes'), 'overlay_bytes': snap.get('overlay_bytes'),
                'size_bytes': snap.get('size_bytes'), 'size_exact': snap.get('size_exact'),
                'consistent': snap.get('consistent'), 'managed': managed, 'stale': bool(reasons),
                'stale_reasons': reasons, 'would_prune': (name, snap['name']) in would_prune,
            }
            rows.append(row)
            out.append(row)
        disks = facts.get('disks') or []
        sizes = [r['size_bytes'] for r in rows]
        held = facts.get('snapshot_bytes')
        if held is None:
            held = _sum(sizes)
        capacity = _sum(d.get('capacity_bytes') for d in disks) if disks else None
        allocation = _sum(d.get('allocation_bytes') for d in disks) if disks else None
        ages = [r['age_seconds'] for r in rows if r['age_seconds'] is not None]
        unknown = [d.get('name') for d in disks if d.get('type') == 'file' and d.get('allocation_bytes') is None]
        dom = {
            'hypervisor': hv, 'name': name, 'state': facts.get('state'), 'snapshots': len(rows),
            'current': facts.get('current'), 'snapshot_bytes': held,
            'size_exact': all(r['size_exact'] for r in rows) if rows else True,
            'disk_capacity_bytes': capacity, 'disk_allocation_bytes': allocation,
            'held_percent': _percent(held, capacity),
            'oldest_age_seconds': max(ages) if ages else None,
            'newest_age_seconds': min(ages) if ages else None,
            'stale': sum(1 for r in rows if r['stale']), 'manual': sum(1 for r in rows if not r['managed']),
            'would_prune': sum(1 for r in rows if r['would_prune']),
            'image_only': list(facts.get('image_only') or []),
            'inconsistent': [r['name'] for r in rows if r['consistent'] is False],
            'sizes_unknown': unknown,
        }
        self.storage(hv, name, facts, disks, stores)
        self.domain_alerts(dom, rows)
        return dom

    def storage(self, hv: str, name: str, facts: dict[str, t.Any], disks: list[dict[str, t.Any]],
                stores: dict[str, dict[str, t.Any]]) -> None:
        """Add the domain's storage (``domains.<name>.storage`` of snapshot_info; else the directories of its disk
        files with their free space) to ``stores``, by path."""
        listed = facts.get('storage')
        if listed is None:
            listed = [{'path': os.path.dirname(d['file']), 'free_bytes': d.get('free_bytes'), 'total_bytes': None,
                       'snapshot_bytes': None} for d in disks if d.get('type') == 'file' and d.get('file')]
        seen = set()
        for item in listed:
            path = item.get('path')
            if path is None or path in seen:
                continue
            seen.add(path)
            store = stores.setdefault(path, {'hypervisor': hv, 'path': path, 'free_bytes': None, 'total_bytes': None,
                                             'snapshot_bytes': 0, 'domains': []})
            for key in ('free_bytes', 'total_bytes'):
                if store[key] is None and item.get(key) is not None:
                    store[key] = item[key]
            store['domains'].append(name)
            held = item.get('snapshot_bytes')
            store['snapshot_bytes'] = None if held is None or store['snapshot_bytes'] is None \
                else store['snapshot_bytes'] + held

    def domain_alerts(self, dom: dict[str, t.Any], rows: list[dict[str, t.Any]]) -> None:
        where = {'hypervisor': dom['hypervisor'], 'domain': dom['name']}
        label = f'{dom["hypervisor"]}/{dom["name"]}'
        oldest = dom['oldest_age_seconds']
        warn, crit = self.th['age_warn_seconds'], self.th['age_crit_seconds']

        def age_message(level: str, limit: float) -> str:
            older = [r for r in rows if r['age_seconds'] is not None and r['age_seconds'] >= limit]
            first = max(older, key=lambda r: r['age_seconds'])
            return (f'{label}: {len(older)} snapshot{"s" if len(older) != 1 else ""} older than {human_age(limit)}, '
                    f'oldest "{first["name"]}" {human_age(first["age_seconds"])}')
        self.check('age', where, oldest, warn, crit, age_message)
        self.check('count', where, dom['snapshots'], self.th['count_warn'], self.th['count_crit'],
                   lambda lvl, lim: f'{label}: {dom["snapshots"]} snapshots ({lvl} at {lim:g})')
        self.check('held', where, dom['held_percent'], self.th['held_warn_percent'], self.th['held_crit_percent'],
                   lambda lvl, lim: (f'{label}: snapshots hold {human_bytes(dom["snapshot_bytes"])}, '
                                     f'{dom["held_percent"]:g}% of its {human_bytes(dom["disk_capacity_bytes"])} '
                                     f'of disks ({lvl} at {lim:g}%)'))


def snapshot_report(hosts: t.Any, now: float | None = None, age_warn: t.Any = None, age_crit: t.Any = None,
                    count_warn: t.Any = None, count_crit: t.Any = None, held_warn: t.Any = None,
                    held_crit: t.Any = None, free_warn: t.Any = None, free_crit: t.Any = None,
                    stale_age: t.Any = None, managed: t.Any = None, prune_match: t.Any = None,
                    fail_on: t.Any = 'warn') -> dict[str, t.Any]:
    """The fleet report's data from the collected module results (see the module docstring)."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f'snapshot_report expects a list of hypervisor entries, not {type(hosts).__name__}.')
    entries = []
    for entry in hosts:
        if not isinstance(entry, dict) or not entry.get('hypervisor'):
            raise AnsibleFilterError('Each entry of snapshot_report needs a "hypervisor" key and the "info" result.')
        entries.append(entry)
    options = {'age_warn': age_warn, 'age_crit': age_crit, 'count_warn': count_warn, 'count_crit': count_crit,
               'held_warn': held_warn, 'held_crit': held_crit, 'free_warn': free_warn, 'free_crit': free_crit,
               'stale_age': stale_age, 'managed': managed, 'prune_match': prune_match, 'fail_on': fail_on}
    return _Report(sorted(entries, key=lambda e: str(e['hypervisor'])), now, options).build()
