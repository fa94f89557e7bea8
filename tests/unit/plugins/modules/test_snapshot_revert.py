# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_revert against libvirt's test driver, checked with libvirt directly."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _libvirt
from ansible_collections.kvm.snapshots.plugins.modules import snapshot, snapshot_revert
from ansible_collections.kvm.snapshots.tests.unit.helpers import Proxy

RUNNING, PAUSED, SHUTOFF = libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTOFF


def names(dom):
    return sorted(s.getName() for s in dom.listAllSnapshots(0))


def current(dom):
    return dom.snapshotCurrent(0).getName() if dom.hasCurrentSnapshot(0) else None


@pytest.fixture
def snapped(run_module, make_domain):
    """A running domain with snapshots a (running) <- b (running), current b."""
    dom = make_domain('running')
    for name in ('a', 'b'):
        run_module(snapshot, {'domain': dom.name(), 'name': name})
    return dom


def test_revert_by_name_check_then_real(run_module, snapped):
    dom = snapped
    dom.suspend()  # the present differs from the snapshot: paused
    args = {'domain': dom.name(), 'name': 'a'}

    checked = run_module(snapshot_revert, args, check=True, diff=True)
    assert checked['changed'] is True
    assert checked['state'] == 'running'
    assert checked['diff'] == {'before': {'current': 'b', 'state': 'paused'},
                               'after': {'current': 'a', 'state': 'running'}}
    assert current(dom) == 'b' and dom.state(0)[0] == PAUSED

    reverted = run_module(snapshot_revert, args)
    assert reverted['changed'] is True
    assert reverted['snapshot']['name'] == 'a' and reverted['snapshot']['current'] is True
    assert reverted['state'] == 'running'
    assert current(dom) == 'a' and dom.state(0)[0] == RUNNING
    assert names(dom) == ['a', 'b']  # a revert deletes nothing
    # Every run reverts: documented as changed every time.
    assert run_module(snapshot_revert, args)['changed'] is True


def test_revert_without_name_uses_the_current_snapshot(run_module, snapped):
    result = run_module(snapshot_revert, {'domain': snapped.name()})
    assert result['snapshot']['name'] == 'b'
    assert current(snapped) == 'b'


def test_no_current_snapshot(run_failing, make_domain):
    dom = make_domain('running')
    failed = run_failing(snapshot_revert, {'domain': dom.name()})
    assert 'has no current snapshot' in failed['msg']


@pytest.mark.parametrize('state_after, expected', [
    ('running', RUNNING), ('paused', PAUSED), ('shutoff', SHUTOFF), ('as_snapshot', RUNNING),
])
def test_state_after_from_a_running_snapshot(run_module, snapped, state_after, expected):
    result = run_module(snapshot_revert, {'domain': snapped.name(), 'name': 'a', 'state_after': state_after})
    assert snapped.state(0)[0] == expected
    assert result['state'] == {RUNNING: 'running', PAUSED: 'paused', SHUTOFF: 'shutoff'}[expected]


@pytest.mark.parametrize('state_after, expected', [
    ('as_snapshot', SHUTOFF), ('running', RUNNING), ('paused', PAUSED),
])
def test_state_after_from_a_shutoff_snapshot(run_module, make_domain, state_after, expected):
    dom = make_domain('shutoff')
    run_module(snapshot, {'domain': dom.name(), 'name': 'cold'})
    dom.create()
    result = run_module(snapshot_revert, {'domain': dom.name(), 'name': 'cold', 'state_after': state_after})
    assert dom.state(0)[0] == expected
    assert result['snapshot']['state'] == 'shutoff'


def test_safety_snapshot_keeps_the_present_and_a_rerun_is_safe(run_module, snapped):
    dom = snapped
    args = {'domain': dom.name(), 'name': 'a', 'safety_snapshot': 'broken <state>', 'safety_description': 'post-mortem'}

    checked = run_module(snapshot_revert, args, check=True)
    assert checked['safety_snapshot']['name'] == 'broken <state>' and checked['safety_snapshot_created'] is True
    assert names(dom) == ['a', 'b']

    first = run_module(snapshot_revert, args)
    assert first['safety_snapshot_created'] is True
    assert names(dom) == ['a', 'b', 'broken <state>']
    safety = dom.snapshotLookupByName('broken <state>', 0)
    assert ET.fromstring(safety.getXMLDesc(0)).findtext('description') == 'post-mortem'
    assert safety.getParent(0).getName() == 'b'  # taken of the state after b, before the revert
    assert current(dom) == 'a'

    second = run_module(snapshot_revert, args)
    assert second['safety_snapshot_created'] is False
    assert names(dom) == ['a', 'b', 'broken <state>']
    assert current(dom) == 'a'


def test_unknown_snapshot_changes_nothing(run_failing, snapped):
    dom = snapped
    dom.suspend()
    failed = run_failing(snapshot_revert, {'domain': dom.name(), 'name': 'nope', 'safety_snapshot': 'safe'})
    assert failed['msg'] == (f'Snapshot "nope" of domain "{dom.name()}" does not exist; nothing was changed. '
                             'Existing snapshots: a, b.')
    assert names(dom) == ['a', 'b']  # no safety snapshot either
    assert current(dom) == 'b' and dom.state(0)[0] == PAUSED


def test_unknown_domain(run_failing):
    failed = run_failing(snapshot_revert, {'domain': 'ghost', 'name': 'a'})
    assert 'Domain "ghost" does not exist' in failed['msg']


def test_safety_snapshot_must_differ_from_the_target(run_failing, snapped):
    failed = run_failing(snapshot_revert, {'domain': snapped.name(), 'name': 'a', 'safety_snapshot': 'a'})
    assert 'give the safety snapshot another name' in failed['msg']
    assert current(snapped) == 'b'


def test_bad_safety_name(run_failing, snapped):
    failed = run_failing(snapshot_revert, {'domain': snapped.name(), 'name': 'a', 'safety_snapshot': '../x'})
    assert 'safety snapshot name' in failed['msg']
    assert names(snapped) == ['a', 'b']


def _redefine(dom, name, state, extra='', domain_xml=None):
    xml = (f"<domainsnapshot><name>{name}</name><state>{state}</state><creationTime>1700000000</creationTime>"
           f"{extra}{domain_xml or dom.XMLDesc(0)}</domainsnapshot>")
    return dom.snapshotCreateXML(xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)


def test_external_snapshot_needs_libvirt_9_9(run_failing, make_domain, monkeypatch):
    dom = make_domain('running')
    _redefine(dom, 'ext', 'disk-snapshot',
              "<memory snapshot='no'/><disks><disk name='vda' snapshot='external'>"
              "<source file='/guest/ext.qcow2'/></disk></disks>")
    monkeypatch.setattr(libvirt.virConnect, 'getLibVersion', lambda self: 9000000)
    failed = run_failing(snapshot_revert, {'domain': dom.name(), 'name': 'ext'})
    assert 'needs libvirt 9.9 or later and this hypervisor has 9.0.0' in failed['msg']
    assert 'Nothing was changed' in failed['msg']
    assert dom.state(0)[0] == RUNNING


class _RiskyRevert(Proxy):
    """The test driver has no risky reverts: a domain whose revert libvirt refuses unless forced."""

    def __init__(self, dom):
        super().__init__(dom)
        self.flags = []

    def revertToSnapshot(self, snap, flags):
        self.flags.append(flags)
        if not flags & libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE:
            error = libvirt.libvirtError('revert requires force: target domain cpu does not match source')
            error.get_error_code = lambda: libvirt.VIR_ERR_SNAPSHOT_REVERT_RISKY
            raise error
        return self.wrapped.revertToSnapshot(snap, flags & ~libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE)


def test_risky_revert_needs_force(run_failing, run_module, snapped, monkeypatch):
    proxy = _RiskyRevert(snapped)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    failed = run_failing(snapshot_revert, {'domain': snapped.name(), 'name': 'a'})
    assert 'set force: true' in failed['msg']
    assert '[libvirt error 77]' in failed['msg']
    assert current(snapped) == 'b'
    result = run_module(snapshot_revert, {'domain': snapped.name(), 'name': 'a', 'force': True})
    assert result['changed'] is True and current(snapped) == 'a'
    assert proxy.flags == [0, libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_FORCE]
