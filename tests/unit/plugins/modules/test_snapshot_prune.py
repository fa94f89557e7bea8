# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_prune against libvirt's test driver, checked with libvirt directly.

Snapshots are defined with REDEFINE and an explicit creationTime relative to
now, so ages are known without waiting.
"""

from __future__ import annotations

import calendar
import time
import uuid
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.modules import snapshot_prune

DAY = 86400
NOW = int(time.time())


def add_chain(add_snapshot, dom, items, parent=None):
    """Snapshots one on top of the other, as a VM that is snapshotted now and then gets them.

    ``items``: (name, age in days), oldest first. The last one is current.
    """
    for i, (name, age) in enumerate(items):
        add_snapshot(dom, name, NOW - int(age * DAY), parent=parent, current=i == len(items) - 1)
        parent = name


def names(dom):
    return sorted(s.getName() for s in dom.listAllSnapshots(0))


def parent_of(dom, name):
    root = ET.fromstring(dom.snapshotLookupByName(name, 0).getXMLDesc(0))
    return root.findtext('parent/name')


def deleted_names(result):
    return [d['name'] for d in result['deleted']]


def kept_names(result):
    return [k['name'] for k in result['kept']]


# base, manual-fix and pre-upgrade never match nightly-*
HISTORY = [
    ('base', 30),
    ('nightly-6', 6),
    ('nightly-5', 5),
    ('manual-fix', 4.5),
    ('nightly-4', 4),
    ('nightly-2', 2),
    ('nightly-1', 1),
    ('pre-upgrade', 0.5),
]
NON_MATCHING = ['base', 'manual-fix', 'pre-upgrade']


@pytest.fixture
def history_domain(make_domain, add_snapshot):
    dom = make_domain('shutoff', prefix='prune')
    add_chain(add_snapshot, dom, HISTORY)
    return dom


def test_keep_last(run_module, history_domain):
    args = {'domain': history_domain.name(), 'match': 'nightly-*', 'keep_last': 2}
    result = run_module(snapshot_prune, args)

    assert result['changed'] is True
    assert result['domain'] == history_domain.name()
    assert deleted_names(result) == ['nightly-6', 'nightly-5', 'nightly-4']  # oldest first
    assert kept_names(result) == ['nightly-2', 'nightly-1']
    assert result['kept'][1]['creation_time'].endswith('Z')
    assert names(history_domain) == sorted(NON_MATCHING + ['nightly-2', 'nightly-1'])


def test_re_run_deletes_nothing(run_module, history_domain):
    args = {'domain': history_domain.name(), 'match': 'nightly-*', 'keep_last': 2, 'older_than': '1h'}
    first = run_module(snapshot_prune, args)
    assert first['changed'] is True
    left = names(history_domain)

    second = run_module(snapshot_prune, args)
    assert second['changed'] is False
    assert second['deleted'] == []
    assert second['kept'] == first['kept']
    assert names(history_domain) == left


def test_older_than(run_module, history_domain):
    result = run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'nightly-*',
                                         'older_than': '3d'})
    assert deleted_names(result) == ['nightly-6', 'nightly-5', 'nightly-4']
    assert kept_names(result) == ['nightly-2', 'nightly-1']
    assert names(history_domain) == sorted(NON_MATCHING + ['nightly-2', 'nightly-1'])


def test_keep_last_protects_old_ones_from_older_than(run_module, history_domain):
    result = run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'nightly-*',
                                         'keep_last': 4, 'older_than': '1d12h'})
    # the newest 4 are kept although 3 of them are older than 36 h; only nightly-6 goes
    assert deleted_names(result) == ['nightly-6']
    assert kept_names(result) == ['nightly-5', 'nightly-4', 'nightly-2', 'nightly-1']
    assert 'nightly-6' not in names(history_domain)


def test_keep_last_zero_deletes_every_match_and_nothing_else(run_module, history_domain):
    result = run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'nightly-*',
                                         'keep_last': 0})
    assert len(result['deleted']) == 5
    assert result['kept'] == []
    assert names(history_domain) == sorted(NON_MATCHING)


def test_glob_that_matches_nothing(run_module, history_domain):
    result = run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'weekly-*',
                                         'keep_last': 0}, diff=True)
    assert result['changed'] is False
    assert result['deleted'] == [] and result['kept'] == []
    assert len(names(history_domain)) == len(HISTORY)
    assert result['diff']['before'] == result['diff']['after']


def test_match_is_case_sensitive(run_module, history_domain):
    result = run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'NIGHTLY-*',
                                         'keep_last': 0})
    assert result['changed'] is False
    assert len(names(history_domain)) == len(HISTORY)


def test_check_mode_reports_and_deletes_nothing(run_module, history_domain):
    args = {'domain': history_domain.name(), 'match': 'nightly-*', 'keep_last': 1}
    predicted = run_module(snapshot_prune, args, check=True, diff=True)

    assert predicted['changed'] is True
    assert deleted_names(predicted) == ['nightly-6', 'nightly-5', 'nightly-4', 'nightly-2']
    assert len(names(history_domain)) == len(HISTORY)
    name = history_domain.name()
    assert predicted['diff'] == {
        'before': {name: ['base', 'nightly-6', 'nightly-5', 'manual-fix', 'nightly-4', 'nightly-2',
                          'nightly-1', 'pre-upgrade']},
        'after': {name: ['base', 'manual-fix', 'nightly-1', 'pre-upgrade']},
    }

    real = run_module(snapshot_prune, args, diff=True)
    assert real['deleted'] == predicted['deleted']
    assert real['diff'] == predicted['diff']
    assert names(history_domain) == sorted(predicted['diff']['after'][name])


def test_children_of_pruned_snapshots_survive(run_module, history_domain):
    run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'nightly-*', 'keep_last': 0})
    # manual-fix was the child of nightly-5, pre-upgrade the grandchild of nightly-4
    assert parent_of(history_domain, 'manual-fix') == 'base'
    assert parent_of(history_domain, 'pre-upgrade') == 'manual-fix'
    assert history_domain.snapshotCurrent(0).getName() == 'pre-upgrade'


def test_pruning_the_current_snapshot_moves_current_to_its_parent(run_module, make_domain, add_snapshot):
    dom = make_domain('shutoff', prefix='prune')
    add_chain(add_snapshot, dom, [('keep', 3), ('tmp-1', 2), ('tmp-2', 1)])
    result = run_module(snapshot_prune, {'domain': dom.name(), 'match': 'tmp-*', 'keep_last': 0})
    assert deleted_names(result) == ['tmp-1', 'tmp-2']
    assert names(dom) == ['keep']
    assert dom.hasCurrentSnapshot(0)  # not left without a current snapshot
    assert dom.snapshotCurrent(0).getName() == 'keep'


def test_same_second_ranks_children_after_parents(run_module, make_domain, add_snapshot):
    dom = make_domain('shutoff', prefix='prune')
    # names sort the other way round from their age, and all share one creation second
    for name, parent in [('nightly-c', None), ('nightly-b', 'nightly-c'), ('nightly-a', 'nightly-b')]:
        add_snapshot(dom, name, NOW - DAY, parent=parent)
    result = run_module(snapshot_prune, {'domain': dom.name(), 'match': 'nightly-*', 'keep_last': 1})
    assert deleted_names(result) == ['nightly-c', 'nightly-b']
    assert kept_names(result) == ['nightly-a']


@pytest.mark.parametrize('older_than', ['7 days', '1.5d', '-1d', 'soon'])
def test_bad_duration_fails_and_deletes_nothing(run_failing, history_domain, older_than):
    result = run_failing(snapshot_prune, {'domain': history_domain.name(), 'match': '*',
                                          'older_than': older_than})
    assert 'Cannot read the duration' in result['msg']
    assert '12h, 7d or 1d12h' in result['msg']
    assert len(names(history_domain)) == len(HISTORY)


@pytest.mark.parametrize('args, message', [
    ({'match': '*'}, 'one of the following is required: keep_last, keep_hourly, keep_daily, keep_weekly, '
                     'keep_monthly, keep_yearly, older_than'),
    ({'match': '*', 'keep_last': -1}, 'keep_last must be 0 or more, not -1'),
    ({'match': '*', 'keep_daily': 3, 'keep_weekly': -2}, 'keep_weekly must be 0 or more, not -2'),
    ({'match': '', 'keep_last': 1}, 'match must not be empty'),
])
def test_bad_options_fail_and_delete_nothing(run_failing, history_domain, args, message):
    result = run_failing(snapshot_prune, {'domain': history_domain.name(), **args})
    assert message in result['msg']
    assert len(names(history_domain)) == len(HISTORY)


def test_unknown_domain(run_failing):
    result = run_failing(snapshot_prune, {'domain': 'prune-no-such-domain', 'match': '*', 'keep_last': 1})
    assert result['msg'].startswith('Domain "prune-no-such-domain" does not exist')


def test_snapshot_deleted_meanwhile_is_not_an_error(run_module, history_domain, monkeypatch):
    real = snapshot_prune.read_snapshots

    def read_then_lose_one(dom):
        listed = real(dom)
        dom.snapshotLookupByName('nightly-5', 0).delete(0)  # another run is faster
        return listed

    monkeypatch.setattr(snapshot_prune, 'read_snapshots', read_then_lose_one)
    result = run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'nightly-*',
                                         'keep_last': 2}, diff=True)
    assert deleted_names(result) == ['nightly-6', 'nightly-4']
    assert 'nightly-5' not in result['diff']['after'][history_domain.name()]
    assert names(history_domain) == sorted(NON_MATCHING + ['nightly-2', 'nightly-1'])


def test_failure_halfway_reports_what_was_deleted(run_module, run_failing, history_domain, monkeypatch):
    with pytest.raises(libvirt.libvirtError) as refused:
        history_domain.undefine()  # refused: it has snapshots
    refusal = refused.value  # a real libvirt error (not "no such snapshot") to raise in place of a deletion
    assert refusal.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID
    real_delete = libvirt.virDomainSnapshot.delete

    def delete(snap, flags=0):
        if snap.getName() == 'nightly-4':
            raise refusal
        return real_delete(snap, flags)

    monkeypatch.setattr(libvirt.virDomainSnapshot, 'delete', delete)
    result = run_failing(snapshot_prune, {'domain': history_domain.name(), 'match': 'nightly-*',
                                          'keep_last': 1})
    assert result['msg'].startswith(f'Deleting snapshot "nightly-4" of domain "{history_domain.name()}" failed: '
                                    'Requested operation is not valid')
    assert 'deleted before that: nightly-6, nightly-5; a re-run continues from here' in result['msg']
    assert result['changed'] is True
    assert deleted_names(result) == ['nightly-6', 'nightly-5']
    assert names(history_domain) == sorted(NON_MATCHING + ['nightly-4', 'nightly-2', 'nightly-1'])

    monkeypatch.undo()
    rerun = run_module(snapshot_prune, {'domain': history_domain.name(), 'match': 'nightly-*', 'keep_last': 1})
    assert deleted_names(rerun) == ['nightly-4', 'nightly-2']
    assert names(history_domain) == sorted(NON_MATCHING + ['nightly-1'])


@pytest.fixture
def batch(make_domain, add_snapshot):
    """Three domains with a common random prefix, each with the same history."""
    prefix = f'prunebatch-{uuid.uuid4().hex[:6]}'
    doms = [make_domain('shutoff', prefix=prefix) for count in range(3)]
    for dom in doms:
        add_chain(add_snapshot, dom, HISTORY)
    return prefix, sorted(doms, key=lambda d: d.name())


def test_batch_with_a_glob_and_a_missing_domain(run_failing, batch):
    prefix, doms = batch
    missing = f'{prefix}-missing'
    result = run_failing(snapshot_prune, {'domains': [f'{prefix}-*', missing, 'prune-nothing-*'],
                                          'match': 'nightly-*', 'keep_last': 2, 'parallel': 3})

    assert result['msg'].startswith(f'1 of 4 domains failed: {missing}: Domain "{missing}" does not exist')
    assert result['changed'] is True
    assert result['unmatched'] == ['prune-nothing-*']
    assert [r['domain'] for r in result['results']] == [d.name() for d in doms] + [missing]
    for res, dom in zip(result['results'], doms):
        assert res['failed'] is False and res['changed'] is True
        assert deleted_names(res) == ['nightly-6', 'nightly-5', 'nightly-4']
        assert names(dom) == sorted(NON_MATCHING + ['nightly-2', 'nightly-1'])
    assert result['results'][-1]['failed'] is True
    assert result['results'][-1]['changed'] is False


def test_batch_check_diff_then_real(run_module, batch):
    prefix, doms = batch
    args = {'domains': [f'{prefix}-*'], 'match': 'nightly-[0-4]', 'older_than': '1d12h'}
    predicted = run_module(snapshot_prune, args, check=True, diff=True)

    assert predicted['changed'] is True
    assert predicted['unmatched'] == []
    assert all(deleted_names(r) == ['nightly-4', 'nightly-2'] for r in predicted['results'])
    assert all(len(names(d)) == len(HISTORY) for d in doms)
    assert sorted(predicted['diff']['before']) == [d.name() for d in doms]
    assert all(after == ['base', 'nightly-6', 'nightly-5', 'manual-fix', 'nightly-1', 'pre-upgrade']
               for after in predicted['diff']['after'].values())

    real = run_module(snapshot_prune, args)
    assert [r['deleted'] for r in real['results']] == [r['deleted'] for r in predicted['results']]
    assert 'diff' not in real
    again = run_module(snapshot_prune, args)
    assert again['changed'] is False
    assert all(r['deleted'] == [] for r in again['results'])


# tiers: creation times on fixed UTC dates (the periods do not depend on now)

def utc(text):
    return calendar.timegm(time.strptime(text, '%Y-%m-%dT%H:%M:%S'))


# parent before child, oldest first; manual-* never matches auto-*
TIERED = [
    ('auto-2025-06', '2025-06-15T12:00:00'),
    ('auto-2025-12', '2025-12-31T23:00:00'),
    ('auto-10-10', '2026-10-10T08:00:00'),
    ('manual-1', '2026-11-15T00:00:00'),
    ('auto-11-16', '2026-11-16T09:00:00'),
    ('auto-11-20', '2026-11-20T10:00:00'),
    ('auto-11-22', '2026-11-22T10:00:00'),
    ('auto-11-23-0800', '2026-11-23T08:00:00'),
    ('auto-11-23-0830', '2026-11-23T08:30:00'),
    ('manual-2', '2026-11-23T08:45:00'),
    ('auto-11-23-0915', '2026-11-23T09:15:00'),
]
TIER_ARGS = {'match': 'auto-*', 'keep_last': 1, 'keep_hourly': 2, 'keep_daily': 3, 'keep_weekly': 2,
             'keep_monthly': 3, 'keep_yearly': 2}
TIER_KEPT = [
    {'name': 'auto-2025-12', 'creation_time': '2025-12-31T23:00:00Z', 'rules': ['keep_monthly', 'keep_yearly']},
    {'name': 'auto-10-10', 'creation_time': '2026-10-10T08:00:00Z', 'rules': ['keep_monthly']},
    {'name': 'auto-11-20', 'creation_time': '2026-11-20T10:00:00Z', 'rules': ['keep_daily']},
    {'name': 'auto-11-22', 'creation_time': '2026-11-22T10:00:00Z', 'rules': ['keep_daily', 'keep_weekly']},
    {'name': 'auto-11-23-0830', 'creation_time': '2026-11-23T08:30:00Z', 'rules': ['keep_hourly']},
    {'name': 'auto-11-23-0915', 'creation_time': '2026-11-23T09:15:00Z',
     'rules': ['keep_last', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly']},
]
TIER_DELETED = ['auto-2025-06', 'auto-11-16', 'auto-11-23-0800']


@pytest.fixture
def tiered_domain(make_domain, add_snapshot):
    dom = make_domain('shutoff', prefix='prune')
    parent = None
    for i, (name, when) in enumerate(TIERED):
        add_snapshot(dom, name, utc(when), parent=parent, current=i == len(TIERED) - 1)
        parent = name
    return dom


def test_tiers_check_mode_says_why_then_real_run_deletes_that(run_module, tiered_domain):
    args = {'domain': tiered_domain.name(), **TIER_ARGS}
    predicted = run_module(snapshot_prune, args, check=True, diff=True)

    assert predicted['changed'] is True
    assert predicted['kept'] == TIER_KEPT
    assert deleted_names(predicted) == TIER_DELETED
    assert predicted['deleted'][0] == {
        'name': 'auto-2025-06', 'creation_time': '2025-06-15T12:00:00Z',
        'reason': 'not among the newest 1 (keep_last); '
                  'hour 2025-06-15T12Z is older than the last 2 hours that have one (keep_hourly); '
                  'day 2025-06-15 is older than the last 3 days that have one (keep_daily); '
                  'week 2025-W24 is older than the last 2 weeks that have one (keep_weekly); '
                  'month 2025-06 is older than the last 3 months that have one (keep_monthly); '
                  'a newer snapshot is kept for year 2025 (keep_yearly)'}
    assert len(names(tiered_domain)) == len(TIERED)  # check mode deleted nothing

    real = run_module(snapshot_prune, args, diff=True)
    assert real['deleted'] == predicted['deleted'] and real['kept'] == predicted['kept']
    assert real['diff'] == predicted['diff']
    survivors = sorted([k['name'] for k in TIER_KEPT] + ['manual-1', 'manual-2'])
    assert names(tiered_domain) == survivors
    assert real['diff']['after'][tiered_domain.name()] == [n for n, _when in TIERED if n not in TIER_DELETED]

    again = run_module(snapshot_prune, args)
    assert again['changed'] is False and again['deleted'] == []
    assert again['kept'] == TIER_KEPT
    assert names(tiered_domain) == survivors


def test_tiers_with_older_than(run_module, tiered_domain):
    # everything here is older than 1 day: older_than keeps nothing, the tiers keep what they keep
    result = run_module(snapshot_prune, {'domain': tiered_domain.name(), 'match': 'auto-*', 'keep_daily': 1,
                                         'older_than': '1d'}, check=True)
    assert kept_names(result) == ['auto-11-23-0915']
    assert result['kept'][0]['rules'] == ['keep_daily']
    assert all(d['reason'].startswith('older than 1d; ') for d in result['deleted'])
    # older_than longer than their age: it keeps them all
    spared = run_module(snapshot_prune, {'domain': tiered_domain.name(), 'match': 'auto-*', 'keep_daily': 0,
                                         'older_than': f'{NOW - utc("2025-01-01T00:00:00")}'}, check=True)
    assert spared['changed'] is False and spared['deleted'] == []
    assert {tuple(k['rules']) for k in spared['kept']} == {('older_than',)}


def test_tiers_in_batch_mode(run_module, make_domain, add_snapshot):
    prefix = f'prunetier-{uuid.uuid4().hex[:6]}'
    doms = sorted((make_domain('shutoff', prefix=prefix) for count in range(2)), key=lambda d: d.name())
    for dom in doms:
        parent = None
        for name, when in TIERED:
            add_snapshot(dom, name, utc(when), parent=parent)
            parent = name
    result = run_module(snapshot_prune, {'domains': [f'{prefix}-*'], **TIER_ARGS})
    assert [r['domain'] for r in result['results']] == [d.name() for d in doms]
    for res, dom in zip(result['results'], doms):
        assert res['kept'] == TIER_KEPT
        assert deleted_names(res) == TIER_DELETED and all(d['reason'] for d in res['deleted'])
        assert names(dom) == sorted([k['name'] for k in TIER_KEPT] + ['manual-1', 'manual-2'])
