# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The retention plan of snapshot_prune (keep_last, the keep_* tiers, older_than) on hand-built creation times,
and the durations it reads (parse_duration)."""

from __future__ import annotations

import calendar
import time

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.kvm.snapshots.plugins.module_utils import _retention as r
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError


def epoch(text):
    """'2026-11-23T08:30:00' (UTC) -> seconds since the epoch, computed apart from the code under test."""
    return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%S'))


def snap(name, when):
    """A snapshot dict as list_snapshots gives it (only what the plan reads); ``when``: text, epoch or None."""
    value = epoch(when) if isinstance(when, str) else when
    return {'name': name, 'creation_time_epoch': value, 'creation_time': when if isinstance(when, str) else None}


def run(snapshots, match='*', cutoff=None, older_than=None, **keep):
    """(deleted names, {kept name: rules}, {deleted name: reason}) of a plan."""
    delete, kept = r.plan(snapshots, r.Policy(match=match, keep=keep, cutoff=cutoff, older_than=older_than))
    return ([d.snapshot['name'] for d in delete], {k.snapshot['name']: k.rules for k in kept},
            {d.snapshot['name']: d.reason for d in delete})


# period

@pytest.mark.parametrize('when, unit, label', [
    ('2026-11-23T08:30:00', 'hour', '2026-11-23T08Z'),
    ('2026-11-23T08:30:00', 'day', '2026-11-23'),
    ('2026-11-23T08:30:00', 'week', '2026-W48'),  # a Monday
    ('2026-11-22T23:59:59', 'week', '2026-W47'),  # the Sunday before
    ('2026-11-23T08:30:00', 'month', '2026-11'),
    ('2026-11-23T08:30:00', 'year', '2026'),
    ('2025-12-31T23:00:00', 'week', '2026-W01'),  # ISO: the week of 1 January 2026 (a Thursday)
    ('2027-01-01T00:00:00', 'week', '2026-W53'),  # ISO: 2026 has 53 weeks; 1 January 2027 is a Friday
    ('2024-12-30T00:00:00', 'week', '2025-W01'),
    ('1970-01-01T00:00:00', 'day', '1970-01-01'),
])
def test_period_is_utc(when, unit, label):
    assert r.period(epoch(when), unit) == label


@pytest.mark.parametrize('value', [None, 10 ** 15, 10 ** 30])
def test_period_of_an_unknown_or_impossible_time_is_none(value):
    assert all(r.period(value, unit) is None for _option, unit in r.TIERS)


def test_period_refuses_an_unknown_unit():
    with pytest.raises(ValueError):
        r.period(0, 'fortnight')


# boundaries: the last second of a period and the first of the next are in two periods

@pytest.mark.parametrize('option, before, after', [
    ('keep_hourly', '2026-11-23T08:59:59', '2026-11-23T09:00:00'),
    ('keep_daily', '2026-11-22T23:59:59', '2026-11-23T00:00:00'),
    ('keep_weekly', '2026-11-22T23:59:59', '2026-11-23T00:00:00'),  # Sunday, Monday
    ('keep_monthly', '2026-10-31T23:59:59', '2026-11-01T00:00:00'),
    ('keep_yearly', '2025-12-31T23:59:59', '2026-01-01T00:00:00'),
])
def test_one_second_apart_across_a_boundary_are_two_periods(option, before, after):
    snaps = [snap('s-old', before), snap('s-new', after)]
    assert run(snaps, **{option: 2})[:2] == ([], {'s-old': [option], 's-new': [option]})
    deleted, kept, reasons = run(snaps, **{option: 1})
    assert deleted == ['s-old'] and kept == {'s-new': [option]}
    unit = dict(r.TIERS)[option]
    label = r.period(epoch(before), unit)
    assert reasons['s-old'] == f'{unit} {label} is older than the last 1 {unit} that has one ({option})'


@pytest.mark.parametrize('option, first, last', [
    ('keep_hourly', '2026-11-23T08:00:00', '2026-11-23T08:59:59'),
    ('keep_daily', '2026-11-23T00:00:00', '2026-11-23T23:59:59'),
    ('keep_weekly', '2026-11-23T00:00:00', '2026-11-29T23:59:59'),  # Monday to Sunday
    ('keep_monthly', '2026-02-01T00:00:00', '2026-02-28T23:59:59'),
    ('keep_yearly', '2026-01-01T00:00:00', '2026-12-31T23:59:59'),
])
def test_first_and_last_second_of_a_period_are_one_period(option, first, last):
    deleted, kept, reasons = run([snap('s-1', first), snap('s-2', last)], **{option: 5})
    assert deleted == ['s-1'] and kept == {'s-2': [option]}
    assert reasons['s-1'].startswith('a newer snapshot is kept for ')
    assert reasons['s-1'].endswith(f'({option})')


def test_two_in_the_same_hour_keep_the_newer():
    snaps = [snap('h-1', '2026-11-23T08:05:00'), snap('h-2', '2026-11-23T08:55:00'), snap('h-3', '2026-11-23T09:01:00')]
    deleted, kept, reasons = run(snaps, keep_hourly=24)
    assert deleted == ['h-1']
    assert kept == {'h-2': ['keep_hourly'], 'h-3': ['keep_hourly']}
    assert reasons == {'h-1': 'a newer snapshot is kept for hour 2026-11-23T08Z (keep_hourly)'}


def test_gaps_are_skipped_not_counted():
    # daily snapshots with a week missing: the last 3 days that have one reach back over the gap
    snaps = [snap(f'd-{day:02d}', f'2026-11-{day:02d}T02:00:00') for day in (1, 2, 3, 4, 12, 13)]
    deleted, kept, reasons = run(snaps, keep_daily=3)
    assert deleted == ['d-01', 'd-02', 'd-03']
    assert kept == {'d-04': ['keep_daily'], 'd-12': ['keep_daily'], 'd-13': ['keep_daily']}
    assert reasons['d-03'] == 'day 2026-11-03 is older than the last 3 days that have one (keep_daily)'


def test_monthly_over_a_sparse_year():
    snaps = [snap('m-jan', '2026-01-15T00:00:00'), snap('m-mar-a', '2026-03-01T00:00:00'),
             snap('m-mar-b', '2026-03-31T12:00:00'), snap('m-nov', '2026-11-02T00:00:00')]
    deleted, kept, _reasons = run(snaps, keep_monthly=2)
    assert deleted == ['m-jan', 'm-mar-a']
    assert kept == {'m-mar-b': ['keep_monthly'], 'm-nov': ['keep_monthly']}


@pytest.mark.parametrize('option', r.KEEP_OPTIONS)
def test_zero_keeps_nothing_for_that_rule(option):
    snaps = [snap('z-1', '2026-11-01T00:00:00'), snap('z-2', '2026-11-02T00:00:00')]
    deleted, kept, reasons = run(snaps, **{option: 0})
    assert deleted == ['z-1', 'z-2'] and kept == {}
    assert reasons == {'z-1': f'{option} is 0', 'z-2': f'{option} is 0'}


def test_zero_tier_beside_other_rules_changes_nothing():
    snaps = [snap(f'z-{day}', f'2026-11-0{day}T00:00:00') for day in range(1, 6)]
    assert run(snaps, keep_last=2)[:2] == run(snaps, keep_last=2, keep_daily=0, keep_yearly=0)[:2]


# all the rules together, worked by hand:
#   rule           kept (newest first)                       not kept
#   keep_last 1    i
#   keep_hourly 2  i (2026-11-23T09Z), h (T08Z)                g (h is newer in T08Z)
#   keep_daily 3   i (11-23), f (11-22), e (11-20)             d (a 4th day)
#   keep_weekly 2  i (W48), f (W47)                            e, d (f is newer in W47); c (a 3rd week)
#   keep_monthly 3 i (2026-11), c (2026-10), b (2025-12)       a (a 4th month)
#   keep_yearly 2  i (2026), b (2025)                          a (b is newer in 2025)
ALL = [
    snap('auto-a', '2025-06-15T12:00:00'),
    snap('auto-b', '2025-12-31T23:00:00'),  # ISO week 2026-W01, but month 2025-12 and year 2025
    snap('auto-c', '2026-10-10T08:00:00'),
    snap('manual-1', '2026-11-15T00:00:00'),  # matches nothing: counts for no rule
    snap('auto-d', '2026-11-16T09:00:00'),  # Monday of W47
    snap('auto-e', '2026-11-20T10:00:00'),
    snap('auto-f', '2026-11-22T10:00:00'),  # Sunday of W47
    snap('auto-g', '2026-11-23T08:00:00'),  # Monday of W48
    snap('auto-h', '2026-11-23T08:30:00'),
    snap('manual-2', '2026-11-23T08:45:00'),  # newer than h in its hour, but does not match
    snap('auto-i', '2026-11-23T09:15:00'),
]
ALL_RULES = {'keep_last': 1, 'keep_hourly': 2, 'keep_daily': 3, 'keep_weekly': 2, 'keep_monthly': 3, 'keep_yearly': 2}


def test_all_rules_together():
    deleted, kept, reasons = run(ALL, match='auto-*', **ALL_RULES)
    assert deleted == ['auto-a', 'auto-d', 'auto-g']  # oldest first
    assert kept == {
        'auto-b': ['keep_monthly', 'keep_yearly'],
        'auto-c': ['keep_monthly'],
        'auto-e': ['keep_daily'],
        'auto-f': ['keep_daily', 'keep_weekly'],
        'auto-h': ['keep_hourly'],
        'auto-i': ['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly'],
    }
    assert list(kept) == ['auto-b', 'auto-c', 'auto-e', 'auto-f', 'auto-h', 'auto-i']  # oldest first
    assert reasons['auto-g'] == '; '.join([
        'not among the newest 1 (keep_last)',
        'a newer snapshot is kept for hour 2026-11-23T08Z (keep_hourly)',
        'a newer snapshot is kept for day 2026-11-23 (keep_daily)',
        'a newer snapshot is kept for week 2026-W48 (keep_weekly)',
        'a newer snapshot is kept for month 2026-11 (keep_monthly)',
        'a newer snapshot is kept for year 2026 (keep_yearly)',
    ])
    assert reasons['auto-a'] == '; '.join([
        'not among the newest 1 (keep_last)',
        'hour 2025-06-15T12Z is older than the last 2 hours that have one (keep_hourly)',
        'day 2025-06-15 is older than the last 3 days that have one (keep_daily)',
        'week 2025-W24 is older than the last 2 weeks that have one (keep_weekly)',
        'month 2025-06 is older than the last 3 months that have one (keep_monthly)',
        'a newer snapshot is kept for year 2025 (keep_yearly)',
    ])


def test_all_rules_with_older_than():
    cutoff = epoch('2026-11-21T00:00:00')
    deleted, kept, reasons = run(ALL, match='auto-*', cutoff=cutoff, older_than='2d', **ALL_RULES)
    # g is younger than the cutoff: older_than keeps it; i is kept by every rule and older_than
    assert deleted == ['auto-a', 'auto-d']
    assert kept['auto-g'] == ['older_than']
    assert kept['auto-i'][-1] == 'older_than' and len(kept['auto-i']) == 7
    assert kept['auto-e'] == ['keep_daily']  # older than the cutoff, kept by a rule all the same
    assert reasons['auto-d'].startswith('older than 2d; not among the newest 1 (keep_last); ')


def test_older_than_alone():
    snaps = [snap('o-1', '2026-11-01T00:00:00'), snap('o-2', '2026-11-20T00:00:00')]
    deleted, kept, reasons = run(snaps, cutoff=epoch('2026-11-10T00:00:00'), older_than='7d')
    assert deleted == ['o-1'] and kept == {'o-2': ['older_than']}
    assert reasons == {'o-1': 'older than 7d'}


def test_a_snapshot_exactly_at_the_cutoff_is_not_older():
    at = epoch('2026-11-10T00:00:00')
    assert run([snap('o-1', at)], cutoff=at, older_than='1d')[:2] == ([], {'o-1': ['older_than']})
    assert run([snap('o-1', at - 1)], cutoff=at, older_than='1d')[0] == ['o-1']


def test_nothing_matching():
    assert run(ALL, match='nightly-*', **ALL_RULES) == ([], {}, {})
    assert run([], keep_daily=1) == ([], {}, {})


def test_non_matching_snapshots_are_in_no_period():
    # manual-2 is the newest of hour 08 and of the day, and still auto-h is the newest *matching* one of its hour
    _deleted, kept, _reasons = run(ALL, match='auto-*', keep_hourly=2)
    assert kept == {'auto-h': ['keep_hourly'], 'auto-i': ['keep_hourly']}
    assert not any(name.startswith('manual') for name in run(ALL, match='auto-*', keep_last=0)[0])


def test_unknown_creation_time_is_in_no_period_and_never_old_enough():
    snaps = [snap('u-1', None), snap('u-2', '2026-11-02T00:00:00')]
    deleted, kept, reasons = run(snaps, keep_daily=5)
    assert deleted == ['u-1'] and kept == {'u-2': ['keep_daily']}
    assert reasons['u-1'] == 'no known creation time (keep_daily)'
    deleted, kept, _reasons = run(snaps, keep_daily=5, cutoff=epoch('2026-11-30T00:00:00'), older_than='1d')
    assert deleted == [] and kept == {'u-1': ['older_than'], 'u-2': ['keep_daily']}


def test_same_second_ranks_the_child_after_its_parent():
    at = '2026-11-23T08:00:00'
    # list_snapshots' order: parents before children; names sort the other way round
    snaps = [snap('s-c', at), snap('s-b', at), snap('s-a', at)]
    assert run(snaps, keep_hourly=1)[:2] == (['s-c', 's-b'], {'s-a': ['keep_hourly']})
    assert run(snaps, keep_last=1)[:2] == (['s-c', 's-b'], {'s-a': ['keep_last']})


def test_no_rule_given_deletes_every_match_with_a_reason():
    deleted, kept, reasons = run([snap('n-1', '2026-11-01T00:00:00')])
    assert deleted == ['n-1'] and kept == {} and reasons == {'n-1': 'no keep rule keeps it'}


# properties

BASE = epoch('2026-11-23T12:00:00')
NAMES = st.lists(st.sampled_from([f'{p}-{i}' for p in ('a', 'b') for i in range(12)]), unique=True, max_size=14)
# creation times clustered so that many share an hour, a day or a week; some unknown
TIMES = st.one_of(st.none(), st.integers(min_value=BASE - 800 * 86400, max_value=BASE),
                  st.integers(min_value=BASE - 3 * 86400, max_value=BASE),
                  st.sampled_from([BASE, BASE - 1, BASE - 3600, BASE - 86400]))
COUNT = st.one_of(st.none(), st.integers(min_value=0, max_value=6))


@st.composite
def histories(draw):
    names = draw(NAMES)
    return [{'name': n, 'creation_time_epoch': draw(TIMES), 'creation_time': None} for n in names]


@st.composite
def policies(draw):
    keep = {option: count for option in r.KEEP_OPTIONS if (count := draw(COUNT)) is not None}
    cutoff = draw(st.one_of(st.none(), st.integers(min_value=BASE - 900 * 86400, max_value=BASE + 1)))
    return r.Policy(match='a-*', keep=keep, cutoff=cutoff, older_than='x' if cutoff is not None else None)


def deleted_set(snapshots, policy):
    return {d.snapshot['name'] for d in r.plan(snapshots, policy)[0]}


PROPERTY = settings(max_examples=300, deadline=None)


@PROPERTY
@given(snapshots=histories(), policy=policies())
def test_plan_properties(snapshots, policy):
    delete, keep = r.plan(snapshots, policy)
    by_name = {s['name']: s for s in snapshots}
    matching = {n for n in by_name if n.startswith('a-')}
    deleted = [d.snapshot['name'] for d in delete]
    kept = [k.snapshot['name'] for k in keep]
    # never a name that does not match; every match is either deleted or kept
    assert set(deleted) | set(kept) == matching and not set(deleted) & set(kept)
    order = list(r.KEEP_OPTIONS) + ['older_than']
    for decision in keep:
        epoch_ = decision.snapshot['creation_time_epoch']
        assert decision.rules and decision.reason is None
        assert decision.rules == sorted(decision.rules, key=order.index)  # listed once each, in order
        if 'older_than' in decision.rules:
            assert policy.cutoff is not None and (epoch_ is None or epoch_ >= policy.cutoff)
        assert all(rule in policy.keep for rule in decision.rules if rule != 'older_than')
    for decision in delete:
        epoch_ = decision.snapshot['creation_time_epoch']
        assert decision.rules == [] and decision.reason
        # older_than set: only what is older than it goes
        assert policy.cutoff is None or (epoch_ is not None and epoch_ < policy.cutoff)
    # oldest first
    rank = {s['name']: (s['creation_time_epoch'] or 0, i) for i, s in enumerate(snapshots)}
    assert deleted == sorted(deleted, key=rank.get) and kept == sorted(kept, key=rank.get)


@PROPERTY
@given(snapshots=histories(), policy=policies())
def test_tiers_keep_the_newest_of_the_last_n_periods(snapshots, policy):
    """Each tier, against its definition written another way: the periods that have a matching snapshot,
    the newest N of them, and the newest snapshot of each."""
    rank = {s['name']: (s['creation_time_epoch'] or 0, i) for i, s in enumerate(snapshots)}
    _delete, keep = r.plan(snapshots, policy)
    for option, unit in r.TIERS:
        newest: dict[str, str] = {}
        for s in snapshots:
            label = r.period(s['creation_time_epoch'], unit)
            if s['name'].startswith('a-') and label is not None:
                if label not in newest or rank[s['name']] > rank[newest[label]]:
                    newest[label] = s['name']
        expected = {newest[p] for p in sorted(newest, reverse=True)[:policy.keep.get(option, 0)]}
        assert {k.snapshot['name'] for k in keep if option in k.rules} == expected, option
    expected_last = sorted((n for n in rank if n.startswith('a-')), key=rank.get, reverse=True)
    assert ({k.snapshot['name'] for k in keep if 'keep_last' in k.rules}
            == set(expected_last[:policy.keep.get('keep_last', 0)]))


@PROPERTY
@given(snapshots=histories(), policy=policies(), option=st.sampled_from(r.KEEP_OPTIONS),
       more=st.integers(min_value=1, max_value=5))
def test_deleting_is_monotone(snapshots, policy, option, more):
    """A larger N, a new keep rule or an earlier cutoff never deletes more."""
    before = deleted_set(snapshots, policy)
    keep = dict(policy.keep)
    keep[option] = keep.get(option, 0) + more
    assert deleted_set(snapshots, policy._replace(keep=keep)) <= before
    added = dict(policy.keep)
    added.setdefault(option, 0)
    assert deleted_set(snapshots, policy._replace(keep=added)) <= before
    earlier = (policy.cutoff if policy.cutoff is not None else BASE + 1) - more * 86400
    assert deleted_set(snapshots, policy._replace(cutoff=earlier, older_than='x')) <= before


@PROPERTY
@given(snapshots=histories(), policy=policies())
def test_a_second_run_deletes_nothing(snapshots, policy):
    gone = deleted_set(snapshots, policy)
    left = [s for s in snapshots if s['name'] not in gone]
    assert deleted_set(left, policy) == set()


# parse_duration

@pytest.mark.parametrize('text, seconds', [
    ('12h', 12 * 3600),
    ('7d', 7 * 86400),
    ('1d12h', 36 * 3600),
    ('1d 12h', 36 * 3600),
    ('90m', 5400),
    ('30s', 30),
    ('2w', 14 * 86400),
    ('3600', 3600),
    (' 2W ', 14 * 86400),
    ('1w2d3h4m5s', 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
    ('0', 0),
    (3600, 3600),
])
def test_parse_duration(text, seconds):
    assert r.parse_duration(text) == seconds


@pytest.mark.parametrize('text', ['', '  ', 'abc', 'd', '12x', '12 days', '1.5h', '-5', '-1d', '1d-2h',
                                  'x12h', '12h junk', '1d12', '12h x3d'])
def test_parse_duration_refuses(text):
    with pytest.raises(SnapshotError, match='Cannot read the duration') as raised:
        r.parse_duration(text)
    assert '12h, 7d or 1d12h' in raised.value.msg and 'older_than' in raised.value.msg


@pytest.mark.parametrize('text', ['\u00b2', '\u00b2d', '\u0661\u0662h', '\u0663', '\uff11\uff12'])
def test_parse_duration_ascii_digits_only(text):
    """str.isdigit() and \\d accept superscripts and other scripts' digits that int() cannot read, or reads."""
    with pytest.raises(SnapshotError, match='Cannot read the duration'):
        r.parse_duration(text)


@pytest.mark.parametrize('text', ['9' * 400, '9' * 400 + 'd', '1' * 25 + 's', '60000w'])
def test_parse_duration_too_long(text):
    with pytest.raises(SnapshotError, match='longer than 1000 years') as raised:
        r.parse_duration(text, 'keep_for')
    assert 'keep_for' in raised.value.msg
