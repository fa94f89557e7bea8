# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""Retention: which matching snapshots of one domain a prune keeps, which it deletes, and why.

Pure selection logic (no libvirt), on the snapshot dicts of ``_snapshot.list_snapshots``
(``name``, ``creation_time_epoch``), in the order that function gives (parents before children).

The keep rules, each applied on its own to the matching snapshots, newest first:

- ``keep_last``: the newest N.
- ``keep_hourly``, ``keep_daily``, ``keep_weekly``, ``keep_monthly``, ``keep_yearly``: the newest
  snapshot of each of the last N hours (days, ISO weeks, months, years) that have one; periods with
  no matching snapshot are skipped, not counted (as restic's ``forget --keep-*`` and Sanoid).
  Periods are in UTC, from the creation time libvirt recorded (seconds since the epoch).
- ``older_than``: when set, a snapshot not older than that (or whose age is unknown) is kept.

A matching snapshot is deleted when no rule keeps it: the keeps are a union. So older_than only
narrows the deletions (a snapshot must be older than it to go), and the keep_* rules protect
snapshots whatever their age. A snapshot whose name does not match is never kept nor deleted:
it is left out of the plan entirely.

``parse_duration`` reads a duration such as ``older_than`` (12h, 7d, 1d12h) into seconds; the
snapshot_report filter reads its ages with it too.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._errors import SnapshotError

# the tier options, newest-grained first, with the name of their period
TIERS: tuple[tuple[str, str], ...] = (
    ('keep_hourly', 'hour'),
    ('keep_daily', 'day'),
    ('keep_weekly', 'week'),
    ('keep_monthly', 'month'),
    ('keep_yearly', 'year'),
)
TIER_OPTIONS: tuple[str, ...] = tuple(option for option, _unit in TIERS)
# every option that keeps snapshots, in the order a survivor's rules are listed (then older_than)
KEEP_OPTIONS: tuple[str, ...] = ('keep_last',) + TIER_OPTIONS


def period(epoch: int | None, unit: str) -> str | None:
    """The UTC period (``hour``, ``day``, ``week``, ``month``, ``year``) a creation time falls in, as a label
    that sorts and compares like the period: ``2026-11-20T14Z``, ``2026-11-20``, ``2026-W47`` (ISO week,
    Monday to Sunday), ``2026-11``, ``2026``. None for an unknown time or one a date cannot hold."""
    if epoch is None:
        return None
    try:
        when = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    if unit == 'hour':
        return when.strftime('%Y-%m-%dT%HZ')
    if unit == 'day':
        return when.strftime('%Y-%m-%d')
    if unit == 'week':
        year, week, _day = when.isocalendar()
        return f'{year:04d}-W{week:02d}'
    if unit == 'month':
        return when.strftime('%Y-%m')
    if unit == 'year':
        return when.strftime('%Y')
    raise ValueError(f'unknown period {unit!r}')


def _plural(count: int, unit: str) -> str:
    return f'{count} {unit}' if count == 1 else f'{count} {unit}s'


class Policy(t.NamedTuple):
    """What to keep. ``keep``: option -> N for the keep options given (keep_last and the tiers);
    ``cutoff``: epoch before which a snapshot is old enough to delete (None: older_than not set);
    ``older_than``: the duration as the user wrote it, for the reasons."""

    match: str
    keep: t.Mapping[str, int]
    cutoff: float | None = None
    older_than: str | None = None


class Decision(t.NamedTuple):
    """One matching snapshot: the rules that keep it (empty: it is deleted) and, for a deleted one, why."""

    snapshot: dict[str, t.Any]
    rules: list[str]
    reason: str | None


def plan(snapshots: list[dict[str, t.Any]], policy: Policy) -> tuple[list[Decision], list[Decision]]:
    """The matching snapshots to delete and those to keep, both oldest first.

    Age ranks by creation time; within the same second, a snapshot after its ancestors (``snapshots``
    is in parent-before-child order). A snapshot of unknown creation time ranks oldest and is in no period.
    """
    rank = {s['name']: (s['creation_time_epoch'] or 0, i) for i, s in enumerate(snapshots)}
    matching = [s for s in snapshots if fnmatch.fnmatchcase(s['name'], policy.match)]
    newest_first = sorted(matching, key=lambda s: rank[s['name']], reverse=True)
    rules: dict[str, list[str]] = {s['name']: [] for s in matching}
    misses: dict[str, list[str]] = {s['name']: [] for s in matching}  # why each rule did not keep it

    keep_last = policy.keep.get('keep_last')
    if keep_last is not None:
        for i, snap in enumerate(newest_first):
            if i < keep_last:
                rules[snap['name']].append('keep_last')
            else:
                misses[snap['name']].append('keep_last is 0' if keep_last == 0
                                            else f'not among the newest {keep_last} (keep_last)')

    for option, unit in TIERS:
        count = policy.keep.get(option)
        if count is None:
            continue
        kept_periods = 0
        last: str | None = None  # the period of the newest snapshot this tier kept
        for snap in newest_first:
            name = snap['name']
            label = period(snap['creation_time_epoch'], unit)
            if count == 0:
                misses[name].append(f'{option} is 0')
            elif label is None:
                misses[name].append(f'no known creation time ({option})')
            elif label == last:
                misses[name].append(f'a newer snapshot is kept for {unit} {label} ({option})')
            elif kept_periods < count:
                rules[name].append(option)
                kept_periods += 1
                last = label
            else:
                misses[name].append(f'{unit} {label} is older than the last {_plural(count, unit)} '
                                    f'that {"has" if count == 1 else "have"} one ({option})')

    if policy.cutoff is not None:
        for snap in newest_first:
            epoch = snap['creation_time_epoch']
            # a snapshot of unknown age is never old enough
            if epoch is None or epoch >= policy.cutoff:
                rules[snap['name']].append('older_than')

    delete: list[Decision] = []
    keep: list[Decision] = []
    for snap in sorted(matching, key=lambda s: rank[s['name']]):
        name = snap['name']
        if rules[name]:
            keep.append(Decision(snap, rules[name], None))
        else:
            parts = [f'older than {policy.older_than}'] if policy.cutoff is not None else []
            parts += misses[name]
            delete.append(Decision(snap, [], '; '.join(parts) or 'no keep rule keeps it'))
    return delete, keep


_DURATION = re.compile(r'([0-9]+)\s*([smhdw])', re.ASCII)
_ASCII_DIGITS = re.compile('[0-9]+', re.ASCII)


def _bounded_int(digits: str) -> int:
    """int(digits), or more than DURATION_MAX for a number too long to be a duration (no huge int is made)."""
    return int(digits) if len(digits) <= 20 else DURATION_MAX + 1


_UNIT_SECONDS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}


# The longest duration taken: 1000 years (longer ones reach before the epoch, and beyond what a float holds).
DURATION_MAX = 1000 * 366 * 86400


def parse_duration(text: str, what: str = 'older_than') -> int:
    """``'12h'``, ``'7d'``, ``'1d12h'``, ``'90m'``, ``'3600'`` -> seconds (ASCII digits only).

    ``what``: the option, for messages.
    """
    text = str(text).strip().lower()
    pos = 0
    total = 0
    if _ASCII_DIGITS.fullmatch(text):
        total, pos = _bounded_int(text), len(text)
    else:
        for match in _DURATION.finditer(text):
            if match.start() != pos and text[pos:match.start()].strip():
                break
            total += _bounded_int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
    if not text or pos == 0 or text[pos:].strip():
        raise SnapshotError(f'Cannot read the duration "{text[:40]}" of {what}: use a number of seconds or '
                            'units s, m, h, d, w such as 12h, 7d or 1d12h.')
    if total > DURATION_MAX:
        raise SnapshotError(f'The duration "{text[:40]}" of {what} is longer than 1000 years; '
                            'use a number of seconds or units s, m, h, d, w such as 12h, 7d or 1d12h.')
    return total
