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
    batch_summary,
    is_glob,
    resolve_domains,
    run_parallel,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError

TEST_URI = 'test:///default'

DOMAIN_XML = """<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""


@pytest.fixture
def fleet(conn):
    """web-1, web-2, web-10 and db-1 under a random prefix; returns the prefix."""
    prefix = f'batch-{uuid.uuid4().hex[:6]}'
    doms = [conn.defineXML(DOMAIN_XML.format(name=f'{prefix}-{n}')) for n in ('web-1', 'web-2', 'web-10', 'db-1')]
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
