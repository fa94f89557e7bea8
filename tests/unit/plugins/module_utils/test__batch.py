# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch mode: resolving names and globs of domains, and running work on them in parallel."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils._batch import (
    DomainResult,
    batch_summary,
    is_glob,
    resolve_domains,
    run_domains,
    run_parallel,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
from ansible_collections.kvm.snapshots.tests.unit.helpers import BARE_DOMAIN_XML


@pytest.fixture
def fleet(conn):
    """web-1, web-2, web-10 and db-1 under a random prefix; returns the prefix."""
    prefix = f'batch-{uuid.uuid4().hex[:6]}'
    doms = [conn.defineXML(BARE_DOMAIN_XML.format(name=f'{prefix}-{n}')) for n in ('web-1', 'web-2', 'web-10', 'db-1')]
    yield prefix
    for dom in doms:
        dom.undefine()


class _NoListing:
    """A connection that must not be asked for its domains."""

    def listAllDomains(self, flags=0):
        raise AssertionError('plain names need no listing of domains')


@pytest.mark.parametrize('pattern, glob', [('web-*', True), ('web-?', True), ('web-[12]', True),
                                           ('web-1', False), ('web.1', False)])
def test_is_glob(pattern, glob):
    assert is_glob(pattern) is glob


def test_plain_names_are_kept_in_order_without_listing():
    names, unmatched = resolve_domains(_NoListing(), ['b', 'a', 'b', 'missing'])
    assert names == ['b', 'a', 'missing']  # a missing one is kept: its own run reports it
    assert unmatched == []


def test_globs_expand_in_name_order(conn, fleet):
    names, unmatched = resolve_domains(conn, [f'{fleet}-web-*'])
    assert names == [f'{fleet}-web-1', f'{fleet}-web-10', f'{fleet}-web-2']
    assert unmatched == []


def test_globs_and_names_mix_without_repeats(conn, fleet):
    names, unmatched = resolve_domains(conn, [f'{fleet}-db-1', f'{fleet}-web-?', f'{fleet}-*', 'nothing-*'])
    assert names == [f'{fleet}-db-1', f'{fleet}-web-1', f'{fleet}-web-2', f'{fleet}-web-10']
    assert unmatched == ['nothing-*']


def test_glob_is_case_sensitive(conn, fleet):
    names, unmatched = resolve_domains(conn, [f'{fleet}-WEB-*'])
    assert names == []
    assert unmatched == [f'{fleet}-WEB-*']


def test_run_parallel_keeps_the_order_of_names():
    def work(name):
        time.sleep(0.02 if name == 'slow' else 0)
        return {'changed': name != 'same', 'value': name.upper()}

    results = run_parallel(['slow', 'fast', 'same'], work, parallel=3)
    assert results == [
        {'domain': 'slow', 'changed': True, 'failed': False, 'value': 'SLOW'},
        {'domain': 'fast', 'changed': True, 'failed': False, 'value': 'FAST'},
        {'domain': 'same', 'changed': False, 'failed': False, 'value': 'SAME'},
    ]


def test_run_parallel_runs_at_once():
    barrier = threading.Barrier(3, timeout=5)  # breaks unless three workers wait at the same time

    def work(name):
        barrier.wait()
        return {'changed': False}

    results = run_parallel(['a', 'b', 'c'], work, parallel=3)
    assert [r['failed'] for r in results] == [False, False, False]


def test_run_parallel_never_exceeds_parallel():
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def work(name):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return {'changed': False}

    run_parallel([str(i) for i in range(8)], work, parallel=2)
    assert peak[0] == 2


def test_run_parallel_one_at_a_time_runs_in_the_calling_thread():
    seen = []

    def work(name):
        seen.append((name, threading.current_thread()))
        return {'changed': False}

    run_parallel(['a', 'b'], work, parallel=1)
    assert seen == [('a', threading.current_thread()), ('b', threading.current_thread())]


def test_run_parallel_isolates_failures(conn):
    def work(name):
        if name == 'refused':
            raise SnapshotError('refused for a reason', domain=name)
        if name == 'libvirt':
            conn.lookupByName('batch-no-such-domain')  # a real libvirt error
        return {'changed': True}

    results = run_parallel(['ok-1', 'refused', 'libvirt', 'ok-2'], work, parallel=4)
    assert [r['domain'] for r in results] == ['ok-1', 'refused', 'libvirt', 'ok-2']
    assert [r['failed'] for r in results] == [False, True, True, False]
    assert results[0]['changed'] is True and results[3]['changed'] is True
    assert results[1] == {'domain': 'refused', 'changed': False, 'failed': True, 'msg': 'refused for a reason'}
    assert results[2]['changed'] is False
    assert results[2]['msg'].startswith('Domain "libvirt" failed: Domain not found')
    assert results[2]['msg'].endswith('[libvirt error 42]')


def test_run_parallel_keeps_a_failed_result_that_work_returns():
    results = run_parallel(['a'], lambda name: {'changed': True, 'failed': True, 'msg': 'half done'}, parallel=2)
    assert results == [{'domain': 'a', 'changed': True, 'failed': True, 'msg': 'half done'}]


def test_run_parallel_with_no_names():
    assert run_parallel([], lambda name: {'changed': True}, parallel=4) == []


def test_batch_summary():
    results = [
        {'domain': 'a', 'changed': False, 'failed': False},
        {'domain': 'b', 'changed': True, 'failed': False},
        {'domain': 'c', 'changed': False, 'failed': True, 'msg': 'gone'},
    ]
    assert batch_summary(results) == (True, ['c: gone'])
    assert batch_summary(results[:1]) == (False, [])


# run_domains: the one path for one domain and for many

class _Module:
    def __init__(self):
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)


class Client:
    """What run_domains uses of AnsibleLibvirtModule: the options, --diff, warnings and the connection."""

    def __init__(self, conn=None, diff=True, **params):
        self.params, self.diff_mode, self.conn, self.module = params, diff, conn, _Module()


def work(name):
    """A domain's work: "fail-*" raise, "half-*" fail after some work, the others change what their name says."""
    if name.startswith('fail-'):
        raise SnapshotError(f'{name} refused')
    return DomainResult(changed=name.startswith('changed-'), data={'said': name.upper()}, before=[name],
                        after=[], warnings=[f'{name} warns'],
                        failure=f'{name} stopped half-way' if name.startswith('half-') else None)


def test_one_domain_is_the_result_of_the_task():
    client = Client(domain='changed-a', domains=None, parallel=4)
    assert run_domains(client, work) == {'domain': 'changed-a', 'changed': True, 'said': 'CHANGED-A',
                                         'diff': {'before': ['changed-a'], 'after': []}}
    assert client.module.warnings == ['changed-a warns']
    keyed = run_domains(Client(domain='a', domains=None, parallel=4), work, diff_by_domain=True)
    assert keyed['diff'] == {'before': {'a': ['a']}, 'after': {'a': []}} and keyed['changed'] is False
    assert 'diff' not in run_domains(Client(domain='a', domains=None, parallel=4, diff=False), work)


def test_one_domain_without_a_domains_option():
    """A module that acts on one domain only (snapshot_revert) has no domains option."""
    assert run_domains(Client(domain='a', diff=False), work) == {'domain': 'a', 'changed': False, 'said': 'A'}


def test_one_domain_that_fails_fails_the_task_with_what_it_did():
    client = Client(domain='half-a', domains=None, parallel=4)
    with pytest.raises(SnapshotError) as raised:
        run_domains(client, work)
    assert raised.value.msg == 'half-a stopped half-way'
    assert raised.value.details == {'domain': 'half-a', 'changed': False, 'said': 'HALF-A'}
    assert client.module.warnings == ['half-a warns']
    with pytest.raises(SnapshotError, match='^fail-a refused$'):
        run_domains(Client(domain='fail-a', domains=None, parallel=4), work)


def test_many_domains_give_one_entry_each_and_one_diff(conn, fleet):
    client = Client(conn, domain=None, domains=['changed-b', f'{fleet}-web-?', 'none-*', 'a'], parallel=2)
    result = run_domains(client, work)
    names = ['changed-b', f'{fleet}-web-1', f'{fleet}-web-2', 'a']
    assert result['results'] == [{'domain': n, 'changed': n == 'changed-b', 'said': n.upper(), 'failed': False}
                                 for n in names]
    assert result['changed'] is True and result['unmatched'] == ['none-*']
    assert result['diff'] == {'before': {n: [n] for n in names}, 'after': {n: [] for n in names}}
    assert client.module.warnings == [f'{n} warns' for n in names]  # in the order of the domains


def test_many_domains_with_failures_fail_the_task_with_every_result():
    client = Client(domain=None, domains=['a', 'fail-b', 'half-c', 'changed-d'], parallel=4)
    with pytest.raises(SnapshotError) as raised:
        run_domains(client, work)
    assert raised.value.msg == '2 of 4 domains failed: fail-b: fail-b refused; half-c: half-c stopped half-way'
    results = raised.value.details['results']
    assert [(r['domain'], r['failed'], r['changed']) for r in results] == [
        ('a', False, False), ('fail-b', True, False), ('half-c', True, False), ('changed-d', False, True)]
    assert results[2] == {'domain': 'half-c', 'changed': False, 'said': 'HALF-C', 'failed': True,
                          'msg': 'half-c stopped half-way'}
    assert raised.value.details['changed'] is True and raised.value.details['unmatched'] == []
    assert client.module.warnings == ['a warns', 'half-c warns', 'changed-d warns']  # of those whose work returned


def test_many_domains_refuse_null_and_empty_names_and_warn_on_none():
    with pytest.raises(SnapshotError, match='domain is null'):
        run_domains(Client(domain=None, domains=None, parallel=4), work)
    with pytest.raises(SnapshotError, match='domains holds 2 empty name'):
        run_domains(Client(domain=None, domains=['a', ' ', None], parallel=4), work)
    client = Client(domain=None, domains=[], parallel=4)
    assert run_domains(client, work) == {'changed': False, 'results': [], 'unmatched': [],
                                         'diff': {'before': {}, 'after': {}}}
    assert client.module.warnings[0].startswith('domains is an empty list')
