# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_group against libvirt's test driver, checked with libvirt directly."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import libvirt
import pytest
from ansible.module_utils.basic import AnsibleModule

from ansible_collections.kvm.snapshots.plugins.module_utils import _group, _jobs, _kind, _libvirt
from ansible_collections.kvm.snapshots.plugins.modules import snapshot, snapshot_group, snapshot_info
from ansible_collections.kvm.snapshots.tests.unit.helpers import TEST_URI, Proxy, snapshot_names

RUNNING, PAUSED, SHUTOFF = libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_SHUTOFF


def marker_of(dom, name):
    return _group.parse_group(ET.fromstring(dom.snapshotLookupByName(name, 0).getXMLDesc(0)).findtext('description'))


def members(*doms):
    return [{'domain': d.name()} for d in doms]


class Recorder(Proxy):
    """A test-driver domain that records freeze, thaw, pause and resume in one shared log (and can fail one)."""

    def __init__(self, dom, log, fail=None):
        super().__init__(dom)
        self.log = log
        self.fail = fail or {}

    def _call(self, what, call, *args):
        self.log.append((what, self.wrapped.name()))
        if what in self.fail:
            raise libvirt.libvirtError(self.fail[what])
        return call(*args)

    def fsFreeze(self, mountpoints=None, flags=0):
        return self._call('freeze', self.wrapped.fsFreeze, mountpoints, flags)

    def fsThaw(self, mountpoints=None, flags=0):
        return self._call('thaw', self.wrapped.fsThaw, mountpoints, flags)

    def suspend(self):
        return self._call('pause', self.wrapped.suspend)

    def resume(self):
        return self._call('resume', self.wrapped.resume)

    def snapshotCreateXML(self, xml, flags):
        self.log.append(('snapshot', self.wrapped.name()))
        if 'slow' in self.fail:
            time.sleep(self.fail['slow'])
            self.log.append(('snapshot done', self.wrapped.name()))
        if 'snapshot' in self.fail:
            raise libvirt.libvirtError(self.fail['snapshot'])
        if flags & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY:
            # the test driver rejects DISK_ONLY: record it as the driver would, through REDEFINE
            root = ET.fromstring(xml)
            ET.SubElement(root, 'state').text = 'disk-snapshot'
            ET.SubElement(root, 'creationTime').text = '1795635615'
            root.append(ET.fromstring(self.wrapped.XMLDesc(0)))
            return self.wrapped.snapshotCreateXML(ET.tostring(root, encoding='unicode'),
                                                  libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        return self.wrapped.snapshotCreateXML(xml, flags)


@pytest.fixture
def warned(monkeypatch):
    """The warnings the module gives (in-process the controller's display would swallow them)."""
    said = []
    monkeypatch.setattr(AnsibleModule, 'warn', lambda self, text: said.append(text))
    return said


@pytest.fixture
def recorded(monkeypatch):
    """recorded(fail={domain: {what: message}}) -> the shared log; lookup_domain returns Recorders."""
    log = []

    def install(fail=None):
        real = _libvirt.AnsibleLibvirtModule.lookup_domain

        def lookup(self, name):
            return Recorder(real(self, name), log, (fail or {}).get(name))

        monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lookup)
        return log

    return install


def test_pause_check_then_real_then_idempotent(run_module, make_domain, recorded):
    a, b, off = make_domain('running'), make_domain('running'), make_domain('shutoff')
    log = recorded()
    args = {'name': 'g1', 'members': members(a, b, off), 'freeze': 'pause', 'description': 'Before'}

    checked = run_module(snapshot_group, args, check=True, diff=True)
    assert checked['changed'] is True and [m['status'] for m in checked['members']] == ['taken'] * 3
    assert snapshot_names(a) == snapshot_names(b) == snapshot_names(off) == [] and log == []
    assert checked['diff']['before'] == {f'{d.name()} on test:///default': 'absent' for d in (a, b, off)}

    taken = run_module(snapshot_group, args)
    assert taken['changed'] is True and taken['freeze_used'] == 'pause'
    assert [m['status'] for m in taken['members']] == ['taken'] * 3
    # order: every running member paused before the first snapshot, resumed after the last
    kinds = [w for w, _d in log]
    assert kinds.index('snapshot') > max(i for i, w in enumerate(kinds) if w == 'pause')
    assert min(i for i, w in enumerate(kinds) if w == 'resume') > max(i for i, w in enumerate(kinds) if w == 'snapshot')
    assert sorted(d for w, d in log if w == 'pause') == sorted([a.name(), b.name()])
    assert a.state(0)[0] == RUNNING and b.state(0)[0] == RUNNING and off.state(0)[0] == SHUTOFF
    assert taken['window_ms'] >= max(m['window_ms'] for m in taken['members'])
    assert [m['window_ms'] > 0 for m in taken['members']] == [True, True, False] or taken['window_ms'] >= 0
    groups = [marker_of(d, 'g1') for d in (a, b, off)]
    assert groups[0]['name'] == 'g1' and len({g['id'] for g in groups}) == 1
    assert groups[0]['members'] == [{'domain': d.name(), 'uri': 'test:///default', 'state': s}
                                    for d, s in ((a, 'running'), (b, 'running'), (off, 'shutoff'))]
    desc = ET.fromstring(a.snapshotLookupByName('g1', 0).getXMLDesc(0)).findtext('description')
    assert desc.split('\n')[0] == 'Before' and _group.user_description(desc) == 'Before'

    again = run_module(snapshot_group, args, check=True)
    assert again['changed'] is False and [m['status'] for m in again['members']] == ['exists'] * 3
    assert run_module(snapshot_group, args)['changed'] is False
    assert snapshot_names(a) == snapshot_names(b) == snapshot_names(off) == ['g1']


def test_agent_freeze_takes_disk_only_snapshots_and_thaws(run_module, make_domain, recorded, monkeypatch):
    monkeypatch.setattr(_kind, 'EXTERNAL_REVERT', 0)  # the test driver says 9.0; as if it could revert them
    a, b = make_domain('running', agent=True), make_domain('running', agent=True)
    log = recorded()
    result = run_module(snapshot_group, {'name': 'g', 'members': members(a, b)})
    assert result['freeze_used'] == 'agent'
    assert [m['kind'] for m in result['members']] == [{'location': 'external', 'memory': 'no'}] * 2
    kinds = [w for w, _d in log]
    assert kinds[:2] == ['freeze', 'freeze'] and kinds[2:4] == ['snapshot', 'snapshot'] \
        and kinds[4:] == ['thaw', 'thaw'], log
    assert snapshot_names(a) == snapshot_names(b) == ['g']


def test_agent_freeze_where_external_cannot_be_reverted_pauses(run_module, make_domain, recorded, warned):
    a = make_domain('running', agent=True)
    log = recorded()
    result = run_module(snapshot_group, {'name': 'g', 'members': members(a)})  # the test driver says 9.0
    assert result['freeze_used'] == 'pause' and ('freeze', a.name()) not in log
    assert any('cannot revert' in w and 'paused instead' in w for w in warned), warned
    assert result['members'][0]['kind'] == {'location': 'internal', 'memory': 'internal'}


def test_agent_freeze_where_disk_only_cannot_be_made_pauses(run_module, make_domain, recorded, warned, monkeypatch):
    monkeypatch.setattr(_kind, 'EXTERNAL_REVERT', 0)
    a = make_domain('running', agent=True)
    run_module(snapshot, {'domain': a.name(), 'name': 'internal-one'})  # no external snapshot on top of it
    log = recorded()
    result = run_module(snapshot_group, {'name': 'g', 'members': members(a)})
    assert result['freeze_used'] == 'pause' and ('freeze', a.name()) not in log and ('pause', a.name()) in log
    assert any('has internal snapshots' in w and 'paused instead' in w for w in warned), warned
    assert result['members'][0]['kind'] == {'location': 'internal', 'memory': 'internal'}


def test_location_internal_with_agent_freeze_is_refused(run_failing, make_domain, recorded):
    a = make_domain('running', agent=True)
    log = recorded()
    failed = run_failing(snapshot_group, {'name': 'g', 'members': members(a), 'location': 'internal'})
    assert 'always holds its memory' in failed['msg'] and 'freeze: pause' in failed['msg']
    assert log == [] and snapshot_names(a) == []


def test_no_agent_channel_pauses_everyone_with_a_warning(run_module, make_domain, recorded, warned):
    a, b = make_domain('running', agent=True), make_domain('running', agent=False)
    log = recorded()
    result = run_module(snapshot_group, {'name': 'g', 'members': members(a, b)})
    assert result['freeze_used'] == 'pause'
    assert any('has no guest agent channel' in w and 'paused instead' in w for w in warned), warned
    assert {w for w, _d in log} == {'pause', 'snapshot', 'resume'}
    assert [m['kind']['memory'] for m in result['members']] == ['internal'] * 2


def test_a_failure_inside_the_window_leaves_nothing(run_failing, make_domain, recorded):
    a, b, c = make_domain('running'), make_domain('running'), make_domain('shutoff')
    log = recorded({b.name(): {'snapshot': 'disk full'}})
    failed = run_failing(snapshot_group, {'name': 'g', 'members': members(a, b, c), 'freeze': 'pause'})
    assert b.name() in failed['msg'] and 'disk full' in failed['msg'] and 'deleted' in failed['msg']
    assert snapshot_names(a) == snapshot_names(b) == snapshot_names(c) == []
    assert a.state(0)[0] == RUNNING and b.state(0)[0] == RUNNING  # resumed
    assert sorted(d for w, d in log if w == 'resume') == sorted([a.name(), b.name()])
    status = {m['domain']: m['status'] for m in failed['members']}
    assert status == {a.name(): 'absent', b.name(): 'failed', c.name(): 'absent'}
    assert failed['changed'] is False


def test_a_window_longer_than_timeout_is_undone(run_failing, make_domain, recorded):
    a, b = make_domain('running'), make_domain('running')
    log = recorded({b.name(): {'slow': 1.5}})
    failed = run_failing(snapshot_group, {'name': 'g', 'members': members(a, b), 'freeze': 'pause', 'timeout': 1})
    assert 'within timeout (1 s)' in failed['msg'] and b.name() in failed['msg'], failed['msg']
    # resumed when the time was up, before b's snapshot was done; then b's snapshot was deleted too
    assert log.index(('resume', a.name())) < log.index(('snapshot done', b.name()))
    assert a.state(0)[0] == RUNNING and b.state(0)[0] == RUNNING
    assert snapshot_names(a) == snapshot_names(b) == []
    assert {m['domain']: m['status'] for m in failed['members']} == {a.name(): 'absent', b.name(): 'failed'}


def test_a_freeze_that_fails_thaws_the_others(run_failing, make_domain, recorded, monkeypatch):
    monkeypatch.setattr(_kind, 'EXTERNAL_REVERT', 0)
    a, b = make_domain('running', agent=True), make_domain('running', agent=True)
    log = recorded({b.name(): {'freeze': 'agent said no'}})
    failed = run_failing(snapshot_group, {'name': 'g', 'members': members(a, b)})
    assert 'agent said no' in failed['msg'] and 'while freezing' in failed['msg']
    assert ('thaw', a.name()) in log and ('snapshot', a.name()) not in log
    assert snapshot_names(a) == snapshot_names(b) == []


def test_a_half_group_fails_clearly(run_module, run_failing, make_domain):
    a, b = make_domain('shutoff'), make_domain('shutoff')
    run_module(snapshot, {'domain': a.name(), 'name': 'g'})
    failed = run_failing(snapshot_group, {'name': 'g', 'members': members(a, b)})
    assert f'exists on {a.name()}' in failed['msg'] and f'not on {b.name()}' in failed['msg']
    assert snapshot_names(b) == []
    # on every member, but not one group: also refused
    run_module(snapshot, {'domain': b.name(), 'name': 'g'})
    failed = run_failing(snapshot_group, {'name': 'g', 'members': members(a, b)})
    assert 'not as one group' in failed['msg'] and 'not a group snapshot' in failed['msg']


def test_absent_with_and_without_members(run_module, make_domain):
    a, b = make_domain('shutoff'), make_domain('shutoff')
    run_module(snapshot_group, {'name': 'g', 'members': members(a, b)})
    checked = run_module(snapshot_group, {'name': 'g', 'state': 'absent'}, check=True)
    assert checked['changed'] is True and snapshot_names(a) == snapshot_names(b) == ['g']
    assert {m['domain']: m['status'] for m in checked['members']} == {a.name(): 'deleted', b.name(): 'deleted'}
    gone = run_module(snapshot_group, {'name': 'g', 'state': 'absent'})  # members read from the marker
    assert gone['changed'] is True and snapshot_names(a) == snapshot_names(b) == []
    again = run_module(snapshot_group, {'name': 'g', 'state': 'absent', 'members': members(a, b)})
    assert again['changed'] is False and [m['status'] for m in again['members']] == ['absent'] * 2


def test_absent_refuses_a_snapshot_that_is_not_the_group(run_module, run_failing, make_domain):
    a = make_domain('shutoff')
    run_module(snapshot, {'domain': a.name(), 'name': 'g'})
    failed = run_failing(snapshot_group, {'name': 'g', 'state': 'absent', 'members': members(a)})
    assert 'not a group snapshot' in failed['msg'] and snapshot_names(a) == ['g']


def test_revert_in_order_to_the_recorded_states(run_module, make_domain, monkeypatch):
    a, b, c = make_domain('running'), make_domain('shutoff'), make_domain('running')
    args = {'name': 'g', 'members': members(a, b, c), 'freeze': 'pause'}
    run_module(snapshot_group, args)
    a.destroy()
    b.create()
    reverts = []
    real = _group.revert_snapshot
    monkeypatch.setattr(_group, 'revert_snapshot',
                        lambda dom, snap, *args: (reverts.append(dom.name()), real(dom, snap, *args)))
    checked = run_module(snapshot_group, dict(args, state='reverted', order=[c.name()]), check=True, diff=True)
    assert reverts == [] and snapshot_names(a) == ['g']
    assert [m['state_after'] for m in checked['members']] == ['running', 'shutoff', 'running']
    result = run_module(snapshot_group, dict(args, state='reverted', order=[c.name()]))
    assert reverts == [c.name(), a.name(), b.name()]
    assert [m['status'] for m in result['members']] == ['reverted'] * 3
    assert (a.state(0)[0], b.state(0)[0], c.state(0)[0]) == (RUNNING, SHUTOFF, RUNNING)
    safety = result['members'][0]['safety_snapshot']
    assert safety.startswith('g-safety-') and all(safety in snapshot_names(d) for d in (a, b, c))
    assert marker_of(a, safety)['members'][0]['state'] == 'shutoff'  # a was shut off when the safety was taken


@pytest.mark.parametrize('policy', ['all_or_none', 'best_effort'])
def test_a_member_that_cannot_be_reverted(run_module, run_failing, make_domain, monkeypatch, policy):
    a, b, c = make_domain('shutoff'), make_domain('shutoff'), make_domain('shutoff')
    args = {'name': 'g', 'members': members(a, b, c)}
    run_module(snapshot_group, args)
    for dom in (a, b, c):
        dom.create()  # the present state differs from the snapshot
    real = _group.revert_snapshot

    def revert(dom, snap, *args):
        if dom.name() == b.name() and snap.getName() == 'g':
            raise _libvirt.SnapshotError('b refuses')
        return real(dom, snap, *args)

    monkeypatch.setattr(_group, 'revert_snapshot', revert)
    failed = run_failing(snapshot_group, dict(args, state='reverted', failure_policy=policy))
    status = [m['status'] for m in failed['members']]
    assert 'b refuses' in failed['msg'] and policy in failed['msg']
    if policy == 'all_or_none':
        assert status == ['restored', 'failed', 'untouched']
        assert a.state(0)[0] == RUNNING  # back to its safety snapshot (taken running)
    else:
        assert status == ['reverted', 'failed', 'reverted']
        assert a.state(0)[0] == SHUTOFF and c.state(0)[0] == SHUTOFF
    assert b.state(0)[0] == RUNNING


def test_inputs_refused_before_anything(run_failing, make_domain):
    a = make_domain('shutoff')
    assert 'listed twice' in run_failing(snapshot_group, {'name': 'g', 'members': members(a, a)})['msg']
    assert 'not among the members' in run_failing(
        snapshot_group, {'name': 'g', 'members': members(a), 'state': 'reverted', 'order': ['nope']})['msg']
    assert 'needs safety_snapshot' in run_failing(
        snapshot_group, {'name': 'g', 'members': members(a), 'state': 'reverted', 'safety_snapshot': False})['msg']
    missing = run_failing(snapshot_group, {'name': 'g', 'members': [{'domain': 'nope-x'}, {'domain': a.name()}]})
    assert 'nope-x' in missing['msg'] and 'nothing was changed' in missing['msg'] and snapshot_names(a) == []
    assert 'must not be empty' in run_failing(snapshot_group, {'name': ' ', 'members': members(a)})['msg']
    assert 'members' in run_failing(snapshot_group, {'name': 'g'})['msg']


def test_member_password_is_masked(run_failing, make_domain):
    a = make_domain('shutoff')
    failed = run_failing(snapshot_group, {'name': 'g', 'members': [
        {'domain': a.name()}, {'domain': 'x', 'uri': 'qemu+ssh://root:s3cretpw@127.0.0.1:1/system'}]})
    assert 's3cretpw' not in str(failed)


def test_snapshot_info_shows_the_group(run_module, make_domain):
    a, b = make_domain('shutoff'), make_domain('shutoff')
    run_module(snapshot_group, {'name': 'g', 'members': members(a, b), 'description': 'two\nlines'})
    run_module(snapshot, {'domain': a.name(), 'name': 'plain', 'description': '[kvm.snapshots.group] {not json'})
    listed = {s['name']: s for s in run_module(snapshot_info, {'domain': a.name()})['snapshots']}
    group = listed['g']['group']
    assert group['name'] == 'g' and len(group['id']) == 32
    assert group['members'] == [{'domain': d.name(), 'uri': 'test:///default', 'state': 'shutoff'} for d in (a, b)]
    assert listed['g']['description'].startswith('two\nlines\n[kvm.snapshots.group] {')
    assert listed['plain']['group'] is None
    other = run_module(snapshot_info, {'domain': b.name(), 'name': 'g'})['snapshots'][0]['group']
    assert other == group


def test_one_connection_per_uri(run_module, make_domain, monkeypatch):
    a, b, c = make_domain('shutoff'), make_domain('shutoff'), make_domain('shutoff')
    other = 'test:///default?member=2'  # the same test driver state, another connection
    opened = []
    real_open = libvirt.open
    monkeypatch.setattr(_libvirt.libvirt, 'open', lambda uri: (opened.append(uri), real_open(uri))[1])
    result = run_module(snapshot_group, {'name': 'g', 'members': [
        {'domain': a.name()}, {'domain': b.name(), 'uri': other}, {'domain': c.name(), 'uri': other}]})
    assert sorted(opened) == ['test:///default', other]
    assert [m['uri'] for m in result['members']] == ['test:///default', other, other]
    assert [m['uri'] for m in marker_of(c, 'g')['members']] == ['test:///default', other, other]


# hypervisor_jobs: the group's snapshots hold slots of their hypervisors, taken all at once before the window; a
# revert or a delete holds one for each job.

JOBS = {'hypervisor_jobs': 1, 'hypervisor_jobs_timeout': 1}


@pytest.fixture
def slots(tmp_path, monkeypatch):
    """The slot files of the test, in its own folder; slots.hold() holds the one slot of test:///default."""
    monkeypatch.setattr(_jobs, 'lock_dir', lambda: str(tmp_path))

    class Slots:
        @staticmethod
        def hold():
            return _jobs.HypervisorJobs(TEST_URI, 1, 5, directory=str(tmp_path)).slot('another run')

    return Slots


def test_group_without_a_turn_changes_nothing(run_module, run_failing, make_domain, recorded, slots):
    a, b = make_domain('running'), make_domain('running')
    log = recorded()
    args = dict(JOBS, name='g', members=members(a, b), freeze='pause')
    with slots.hold():
        started = time.monotonic()
        result = run_failing(snapshot_group, args)
        assert 0.5 <= time.monotonic() - started < 10  # it waited for its turn, about the timeout
    assert result['msg'].startswith('Group snapshot "g": 1 other job(s) of kvm.snapshots modules kept the hypervisor')
    assert 'hypervisor_jobs=1' in result['msg'] and 'Nothing was changed' in result['msg'], result['msg']
    assert log == [] and snapshot_names(a) == snapshot_names(b) == []  # nothing paused, nothing taken
    assert a.state(0)[0] == b.state(0)[0] == RUNNING

    assert run_module(snapshot_group, args)['changed']  # the slot free again
    for state, what in (('reverted', 'Safety snapshot "g-safety-'), ('absent', 'Deleting snapshot "g"')):
        with slots.hold():
            result = run_failing(snapshot_group, dict(args, state=state))
        assert what in result['msg'] and 'hypervisor_jobs=1' in result['msg'], result['msg']
        assert snapshot_names(a) == snapshot_names(b) == ['g']  # no safety snapshot left, nothing deleted
    with slots.hold():
        result = run_failing(snapshot_group, dict(args, state='reverted', safety_snapshot=False,
                                                  failure_policy='best_effort'))
    assert result['msg'].startswith('Group revert to "g" failed on ') and 'Reverting domain' in result['msg']
    assert {m['status'] for m in result['members']} == {'failed'}, result


def test_group_snapshots_take_turns_under_the_limit(run_module, make_domain, recorded, slots):
    """hypervisor_jobs=1 with three running members on one hypervisor: one slot for the group, and the snapshots
    inside the window one at a time; every member is taken, paused and resumed."""
    doms = [make_domain('running') for _count in range(3)]
    log = recorded({d.name(): {'slow': 0.2} for d in doms})
    result = run_module(snapshot_group, dict(JOBS, hypervisor_jobs_timeout=30, name='g', members=members(*doms),
                                             freeze='pause'))
    assert result['changed'] and {m['status'] for m in result['members']} == {'taken'}, result
    steps = [what for what, _name in log if what in ('snapshot', 'snapshot done')]
    assert steps == ['snapshot', 'snapshot done'] * 3, log  # never two at once
    assert all(snapshot_names(d) == ['g'] and d.state(0)[0] == RUNNING for d in doms)
