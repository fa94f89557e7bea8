# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reverting one domain (module_utils/_revert.py), on libvirt's test driver; the integration tests revert real guests."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _revert as r
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
from ansible_collections.kvm.snapshots.tests.unit.helpers import fake_error

RUNNING, PAUSED, SHUTOFF = libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTOFF
BROKEN = 'Failed to load snapshot: Device \'libvirt-1-format\' is writable but does not support snapshots'


def snapshot_of(dom, name='s'):
    return dom.snapshotCreateXML(f'<domainsnapshot><name>{name}</name></domainsnapshot>', 0)


@pytest.mark.parametrize('wanted, state', [('running', RUNNING), ('paused', PAUSED), ('shutoff', SHUTOFF)])
@pytest.mark.parametrize('taken', ['running', 'shutoff'])
def test_the_domain_ends_in_the_state_asked_for(make_domain, taken, wanted, state):
    dom = make_domain(taken)
    snap = snapshot_of(dom)
    r.revert_snapshot(dom, snap, wanted, 0, 9_000_000)
    assert dom.state(0)[0] == state
    assert dom.snapshotCurrent(0).getName() == 's'


def test_as_snapshot_leaves_the_state_to_libvirt(make_domain):
    dom = make_domain('shutoff')
    snap = snapshot_of(dom)
    dom.create()
    r.revert_snapshot(dom, snap, 'as_snapshot', 0, 9_000_000)
    assert dom.state(0)[0] == SHUTOFF  # the snapshot was taken shut off


@pytest.mark.parametrize('version, noted', [(11_003_000, True), (11_004_000, False), (9_000_000, False)])
def test_the_known_internal_revert_bug_is_named_only_where_it_is(version, noted):
    note = r.known_bug(fake_error(1, BROKEN), version)
    assert ('known bug of libvirt 11.2 and 11.3' in note) is noted
    assert r.known_bug(fake_error(1, 'some other failure'), version) == ''


def test_a_failed_revert_is_a_clear_error_with_the_note(make_domain, monkeypatch):
    dom = make_domain('running')
    snap = snapshot_of(dom)

    def refuse(_snap, _flags):
        raise fake_error(1, BROKEN)

    monkeypatch.setattr(dom, 'revertToSnapshot', refuse)
    with pytest.raises(SnapshotError) as raised:
        r.revert_snapshot(dom, snap, 'running', 0, 11_003_000, domain=dom.name())
    assert raised.value.msg.startswith(f'Reverting domain "{dom.name()}" to snapshot "s"')
    assert 'fixed in 11.4' in raised.value.msg
    assert raised.value.details == {'domain': dom.name()}
