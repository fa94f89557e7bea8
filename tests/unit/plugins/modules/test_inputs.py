# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inputs of issue 11 that ended in a traceback or were taken silently, on libvirt's test driver."""

from __future__ import annotations

import json
import uuid

import pytest
from ansible.module_utils.ansible_release import __version__ as ansible_version
from ansible.module_utils.testing import patch_module_args
from ansible.utils.display import Display

from ansible_collections.kvm.snapshots.plugins.module_utils._batch import resolve_domains
from ansible_collections.kvm.snapshots.plugins.modules import snapshot, snapshot_info, snapshot_prune, snapshot_revert
from ansible_collections.kvm.snapshots.tests.unit.helpers import BARE_DOMAIN_XML, snapshot_names

ANSIBLE_CORE = tuple(int(part) for part in ansible_version.split('.')[:2])


@pytest.fixture
def odd_names(conn):
    """Domains whose names hold glob characters, and one that a glob of them would match."""
    prefix = f'odd-{uuid.uuid4().hex[:6]}'
    made = [conn.defineXML(BARE_DOMAIN_XML.format(name=f'{prefix}-{n}')) for n in ('web[1]', 'web1', 'a*b', 'axb', 'q?')]
    yield prefix
    for dom in made:
        dom.undefine()


def test_exact_names_before_globs(conn, odd_names):
    p = odd_names
    assert resolve_domains(conn, [f'{p}-web[1]']) == ([f'{p}-web[1]'], [])
    assert resolve_domains(conn, [f'{p}-a*b']) == ([f'{p}-a*b'], [])
    assert resolve_domains(conn, [f'{p}-q?']) == ([f'{p}-q?'], [])
    # a glob that is no domain's name still expands; [*] [?] [[] match the characters themselves
    assert resolve_domains(conn, [f'{p}-a?b']) == ([f'{p}-a*b', f'{p}-axb'], [])
    assert resolve_domains(conn, [f'{p}-a[*]b', f'{p}-web[[]1]']) == ([f'{p}-a*b', f'{p}-web[1]'], [])


def test_batch_snapshot_of_a_domain_named_like_a_glob(run_module, conn, odd_names):
    target = conn.lookupByName(f'{odd_names}-web[1]')
    target.create()
    try:
        result = run_module(snapshot, {'domains': [target.name()], 'name': 'n1'})
        assert [r['domain'] for r in result['results']] == [target.name()]
        assert snapshot_names(target) == ['n1'] and snapshot_names(conn.lookupByName(f'{odd_names}-web1')) == []
    finally:
        for snap in target.listAllSnapshots(0):
            snap.delete(0)
        target.destroy()


@pytest.mark.parametrize('module, args', [
    (snapshot, {'name': 'n'}),
    (snapshot_prune, {'match': '*', 'keep_last': 0}),
])
def test_empty_domains_warns_and_does_nothing(capsys, make_domain, module, args):
    dom = make_domain()
    Display()._warns.clear()  # pylint: disable=protected-access  # the controller shows a warning once a process
    with patch_module_args(dict(args, uri='test:///default', domains=[])):
        with pytest.raises(SystemExit):
            module.main()
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result['changed'] is False and result['results'] == [] and not result.get('failed')
    # in-process the controller's Display prints module warnings (on stderr); in a play they are in the result
    assert 'domains is an empty list' in err + str(result.get('warnings')), (out, err)
    assert snapshot_names(dom) == []


NULL_DOMAIN_CASES = [
    (module, args, domain)
    for module, args in ((snapshot, {'name': 'n'}), (snapshot, {'name': 'n', 'state': 'absent'}),
                         (snapshot_prune, {'match': '*', 'keep_last': 0}), (snapshot_revert, {'name': 'n'}),
                         (snapshot_info, {}))
    for domain in (None, '', '  ')
    if not (module is snapshot_info and domain is None)  # snapshot_info without a domain reads them all
]


@pytest.mark.parametrize('module, args, domain', NULL_DOMAIN_CASES)
def test_null_or_empty_domain_is_a_message(run_failing, module, args, domain):
    """domain: "{{ none }}" passes Ansible's required and one-of checks as null."""
    result = run_failing(module, dict(args, domain=domain))
    assert 'domain' in result['msg'], result['msg']


def test_batch_refuses_empty_entries(run_failing, make_domain):
    dom = make_domain()
    result = run_failing(snapshot, {'domains': [dom.name(), ''], 'name': 'n'})
    assert 'domains holds 1 empty name' in result['msg'] and 'Nothing was changed' in result['msg']
    assert snapshot_names(dom) == []


@pytest.mark.parametrize('older_than', ['\u00b2', '\u00b2d', '9' * 400, 'inf'])
def test_older_than_is_a_message(run_failing, make_domain, add_snapshot, older_than):
    dom = make_domain()
    add_snapshot(dom, 'old', 1_000_000_000)
    result = run_failing(snapshot_prune, {'domain': dom.name(), 'match': '*', 'older_than': older_than})
    assert 'older_than' in result['msg'], result['msg']
    assert snapshot_names(dom) == ['old']


@pytest.mark.parametrize('option, value, says', [
    ('hypervisor_jobs', 10 ** 12, 'at most 1024'),
    ('hypervisor_jobs', 'inf', 'whole number'),
    ('connect_timeout', 10 ** 400, 'from 0 to 86400'),
    ('connect_timeout', -1, 'from 0 to 86400'),
    ('busy_timeout', '-Infinity', 'whole number'),
    ('keep_last', float('inf'), 'whole number'),
    ('keep_last', [2 ** 63, '', ''], 'whole number'),  # found by test_properties: Decimal takes it as digits
])
def test_integer_options_out_of_range(run_failing, make_domain, add_snapshot, option, value, says):
    dom = make_domain()
    add_snapshot(dom, 'old', 1_000_000_000)
    result = run_failing(snapshot_prune, {'domain': dom.name(), 'match': '*', 'keep_last': 0, option: value})
    if says == 'whole number' and ANSIBLE_CORE < (2, 19):
        says = 'unable to convert to int'  # ansible-core before 2.19 refuses infinite values itself, with a message
    assert option in result['msg'] and says in result['msg'], result['msg']
    assert snapshot_names(dom) == ['old']
