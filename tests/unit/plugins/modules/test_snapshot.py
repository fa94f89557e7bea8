# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot against libvirt's test driver, checked with libvirt directly."""

from __future__ import annotations

import socket
import threading
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _domain, _libvirt, _storage
from ansible_collections.kvm.snapshots.plugins.modules import snapshot
from ansible_collections.kvm.snapshots.tests.unit.helpers import (
    DOMAIN_XML,
    Agent,
    Proxy,
    fake_error,
    guest_info,
    snapshot_names,
    statvfs_with,
)


def stored_xml(dom, name):
    return ET.fromstring(dom.snapshotLookupByName(name, 0).getXMLDesc(0))


@pytest.mark.parametrize('state, snap_state, memory', [
    ('running', 'running', 'internal'),
    ('paused', 'paused', 'internal'),
    ('shutoff', 'shutoff', 'no'),
])
def test_create_check_real_check_real(run_module, make_domain, state, snap_state, memory):
    dom = make_domain(state)
    args = {'domain': dom.name(), 'name': 'pre-change', 'description': 'before the change'}

    predicted = run_module(snapshot, args, check=True, diff=True)
    assert predicted['changed'] is True
    assert predicted['snapshot']['state'] == snap_state
    assert predicted['diff'] == {'before': {'state': 'absent'},
                                 'after': {'state': 'present', 'name': 'pre-change',
                                           'description': 'before the change', 'location': 'internal',
                                           'reason': 'internal snapshots work for this domain and libvirt'}}
    assert predicted['kind'] == {'location': 'internal', 'memory': memory,
                                 'reason': 'internal snapshots work for this domain and libvirt'}
    assert snapshot_names(dom) == []

    made = run_module(snapshot, args)
    assert made['changed'] is True
    assert snapshot_names(dom) == ['pre-change']
    xml = stored_xml(dom, 'pre-change')
    assert xml.findtext('state') == snap_state
    assert xml.findtext('description') == 'before the change'
    assert made['snapshot']['state'] == snap_state
    assert made['snapshot']['memory'] == memory
    assert made['snapshot']['current'] is True and made['snapshot']['children'] == []
    assert dom.snapshotCurrent(0).getName() == 'pre-change'
    # what the module reports of the snapshot it just made is what libvirt reports of it afterwards
    read_back = run_module(snapshot, args)['snapshot']
    assert made['snapshot'] == read_back

    assert run_module(snapshot, args, check=True)['changed'] is False
    again = run_module(snapshot, args, diff=True)
    assert again['changed'] is False
    assert again['diff']['before'] == again['diff']['after']
    assert snapshot_names(dom) == ['pre-change']


def test_description_is_updated_in_place(run_module, make_domain):
    dom = make_domain('running')
    run_module(snapshot, {'domain': dom.name(), 'name': 's1', 'description': 'old'})
    created = dom.snapshotLookupByName('s1', 0).getXMLDesc(0)
    args = {'domain': dom.name(), 'name': 's1', 'description': 'new'}

    checked = run_module(snapshot, args, check=True, diff=True)
    assert checked['changed'] is True
    assert checked['diff']['before']['description'] == 'old'
    assert checked['diff']['after']['description'] == 'new'
    assert stored_xml(dom, 's1').findtext('description') == 'old'

    assert run_module(snapshot, args)['changed'] is True
    after = stored_xml(dom, 's1')
    assert after.findtext('description') == 'new'
    # Only the description changed: same creation time, still current, same saved state.
    assert after.findtext('creationTime') == ET.fromstring(created).findtext('creationTime')
    assert dom.snapshotCurrent(0).getName() == 's1'
    assert run_module(snapshot, args)['changed'] is False
    # Leaving the description out never touches it.
    assert run_module(snapshot, {'domain': dom.name(), 'name': 's1'})['changed'] is False
    assert stored_xml(dom, 's1').findtext('description') == 'new'


HOSTILE = [
    'a<b>&c"d\'e',
    ']]><evil/>',
    'naïve snapshot ☃ 快照',
    '$(touch /tmp/pwned); `id` | rm -rf /',
]


@pytest.mark.parametrize('text', HOSTILE)
def test_hostile_names_and_descriptions_round_trip(run_module, make_domain, text):
    dom = make_domain('running')
    name = text.replace('/', '|')  # "/" is refused in names (see test_bad_names...), welcome in descriptions
    description = text + '\n  second line </description><memory snapshot="external" file="/tmp/x"/>'
    result = run_module(snapshot, {'domain': dom.name(), 'name': name, 'description': description})
    assert result['snapshot']['name'] == name
    assert result['snapshot']['description'] == description
    xml = stored_xml(dom, name)
    assert xml.findtext('name') == name
    assert xml.findtext('description') == description
    # Nothing was injected into the structure of the snapshot XML.
    assert xml.find('memory') is None or xml.find('memory').get('file') != '/tmp/x'
    assert run_module(snapshot, {'domain': dom.name(), 'name': name, 'description': description})['changed'] is False


@pytest.mark.parametrize('bad, words', [
    ('', 'must not be empty'),
    ('   ', 'must not be empty'),
    ('a/b', 'contains "/"'),
    ('.hidden', 'starts with "."'),
    ('tab\there', 'control characters'),
    ('new\nline', 'control characters'),
])
def test_bad_names_fail_and_change_nothing(run_failing, make_domain, bad, words):
    dom = make_domain('running')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': bad})
    assert words in failed['msg']
    assert 'Traceback' not in failed['msg']
    assert snapshot_names(dom) == []


def test_description_with_control_characters_is_refused(run_failing, run_module, make_domain):
    dom = make_domain('running')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 'ok', 'description': 'bell\x07'})
    assert 'control characters' in failed['msg']
    assert snapshot_names(dom) == []


def test_description_with_carriage_returns_is_refused(run_failing, make_domain):
    """libvirt's XML turns "\\r" into "\\n": such a description could not be kept exactly."""
    dom = make_domain('running')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 'ok', 'description': 'line 1\r\nline 2'})
    assert 'carriage returns' in failed['msg']
    assert snapshot_names(dom) == []


def test_raw_disk_names_the_disk_and_changes_nothing(run_failing, run_module, make_domain):
    dom = make_domain('running', fmt='raw')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 's'})
    msg = failed['msg']
    assert 'disk vda' in msg and 'raw' in msg and 'qcow2' in msg and 'location: external' in msg
    assert snapshot_names(dom) == []


def test_unknown_domain(run_failing, run_module):
    failed = run_failing(snapshot, {'domain': 'no-such-domain', 'name': 's'})
    assert failed['msg'].startswith('Domain "no-such-domain" does not exist on test:///default')


def test_quiesce_needs_disk_only(run_failing, run_module, make_domain):
    dom = make_domain('running')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 's', 'quiesce': True})
    assert 'quiesce: true needs disk_only: true' in failed['msg']
    assert snapshot_names(dom) == []


def test_quiesce_needs_a_running_domain(run_failing, run_module, make_domain):
    dom = make_domain('shutoff')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 's', 'quiesce': True, 'disk_only': True})
    assert 'is shutoff; quiesce needs a running guest' in failed['msg']
    assert snapshot_names(dom) == []


def test_quiesce_needs_a_guest_agent_channel(run_failing, make_domain):
    dom = make_domain('running')  # the fixture's domains have no guest agent channel
    for check in (True, False):  # check mode predicts the refusal too
        failed = run_failing(snapshot, {'domain': dom.name(), 'name': 's', 'quiesce': True, 'disk_only': True},
                             check=check)
        assert 'has no guest agent channel' in failed['msg']
    assert snapshot_names(dom) == []


def test_delete_keeps_children_unless_asked(run_module, make_domain):
    dom = make_domain('running')
    for name in ('a', 'b', 'c'):
        run_module(snapshot, {'domain': dom.name(), 'name': name})
    # a <- b <- c: deleting b re-attaches c to a
    args = {'domain': dom.name(), 'name': 'b', 'state': 'absent'}
    checked = run_module(snapshot, args, check=True, diff=True)
    assert checked['changed'] is True and checked['deleted'] == ['b']
    assert checked['diff'] == {'before': {'state': 'present', 'name': 'b', 'description': None,
                                          'location': 'internal'}, 'after': {'state': 'absent'}}
    assert snapshot_names(dom) == ['a', 'b', 'c']

    assert run_module(snapshot, args)['deleted'] == ['b']
    assert snapshot_names(dom) == ['a', 'c']
    assert dom.snapshotLookupByName('c', 0).getParent(0).getName() == 'a'
    again = run_module(snapshot, args)
    assert again['changed'] is False and again['deleted'] == [] and again['snapshot'] is None


def test_delete_with_children(run_module, make_domain):
    dom = make_domain('running')
    for name in ('root', 'mid', 'leaf'):
        run_module(snapshot, {'domain': dom.name(), 'name': name})
    args = {'domain': dom.name(), 'name': 'mid', 'state': 'absent', 'children': True}
    assert sorted(run_module(snapshot, args, check=True)['deleted']) == ['leaf', 'mid']
    assert snapshot_names(dom) == ['leaf', 'mid', 'root']
    result = run_module(snapshot, args)
    assert sorted(result['deleted']) == ['leaf', 'mid']
    assert snapshot_names(dom) == ['root']


def test_batch_globs_and_failure_isolation(run_failing, run_module, make_domain):
    doms = [make_domain('running', prefix='batchweb') for _count in range(3)]
    args = {'domains': ['batchweb-*', 'missing-vm', 'nomatch-*'], 'name': 'nightly', 'parallel': 2}
    result = run_failing(snapshot, args)
    assert result['changed'] is True
    assert '1 of 4 domains failed' in result['msg']
    by_domain = {r['domain']: r for r in result['results']}
    assert by_domain['missing-vm']['failed'] is True
    assert 'does not exist' in by_domain['missing-vm']['msg']
    assert result['unmatched'] == ['nomatch-*']
    for dom in doms:
        assert by_domain[dom.name()]['changed'] is True
        assert by_domain[dom.name()]['snapshot']['name'] == 'nightly'
        assert snapshot_names(dom) == ['nightly']

    ok = run_module(snapshot, {'domains': ['batchweb-*'], 'name': 'nightly'})
    assert ok['changed'] is False
    assert [r['changed'] for r in ok['results']] == [False, False, False]


class _ExternalCapable(Proxy):
    """A test-driver domain that also records disk-only creation (the test driver rejects DISK_ONLY)."""

    def __init__(self, dom):
        super().__init__(dom)
        self.calls = []

    def snapshotCreateXML(self, xml, flags):
        self.calls.append((xml, flags))
        if flags & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY:
            # record as the driver would, through REDEFINE of an external snapshot
            root = ET.fromstring(xml)  # the module names the overlays itself
            ET.SubElement(root, 'state').text = 'disk-snapshot'
            ET.SubElement(root, 'creationTime').text = '1795635615'
            root.append(ET.fromstring(self.wrapped.XMLDesc(0)))
            return self.wrapped.snapshotCreateXML(ET.tostring(root, encoding='unicode'),
                                                  libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
        return self.wrapped.snapshotCreateXML(xml, flags)


def test_disk_only_and_quiesce_flags(run_failing, run_module, make_domain, monkeypatch, conn):
    dom = make_domain('running', agent=True)
    proxy = _ExternalCapable(dom)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    result = run_module(snapshot, {'domain': dom.name(), 'name': 'ext', 'disk_only': True, 'quiesce': True})
    xml, flags = proxy.calls[0]
    assert flags == (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
                     | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE)
    assert ET.fromstring(xml).find('memory').get('snapshot') == 'no'
    assert result['snapshot']['location'] == 'external'
    assert result['snapshot']['disks'] == [{'name': 'vda', 'snapshot': 'external', 'file': f'/guest/{dom.name()}.ext',
                                            'backing_file': f'/guest/{dom.name()}.img'}]
    assert result['kind'] == {'location': 'external', 'memory': 'no', 'reason': 'asked for (disk_only: true)'}

    # An internal snapshot on top of the external one is refused: the mix libvirt < 11.0 loses data in.
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 'internal-on-top', 'location': 'internal'})
    assert 'has external snapshots (ext)' in failed['msg']
    assert 'loses data' in failed['msg']
    assert snapshot_names(dom) == ['ext']


class _LosesTheRace(Proxy):
    """A domain on which another run takes the same snapshot name just before this run does."""

    def snapshotCreateXML(self, xml, flags):
        self.wrapped.snapshotCreateXML(xml, flags)  # the other run wins
        error = libvirt.libvirtError("domain snapshot 'race' already exists")
        error.get_error_code = lambda: libvirt.VIR_ERR_OPERATION_INVALID
        raise error


def test_losing_a_create_race_reports_no_change(run_module, make_domain, monkeypatch):
    dom = make_domain('running')
    proxy = _LosesTheRace(dom)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    result = run_module(snapshot, {'domain': dom.name(), 'name': 'race'})
    assert result['changed'] is False  # the snapshot exists, but this run did not make it
    assert result['snapshot']['name'] == 'race'
    assert snapshot_names(dom) == ['race']


def test_missing_libvirt_binding_names_the_interpreter(run_failing, run_module, monkeypatch):
    monkeypatch.setattr(_libvirt, 'libvirt', None)
    monkeypatch.setattr(_libvirt, 'LIBVIRT_IMPORT_ERROR', 'ModuleNotFoundError: No module named libvirt')
    failed = run_failing(snapshot, {'domain': 'x', 'name': 's'})
    msg = failed['msg']
    import sys
    assert sys.executable in msg
    assert 'python3-libvirt' in msg and 'pip install libvirt-python' in msg


def test_unreachable_uri_is_a_clear_error(run_failing, run_module):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    failed = run_failing(snapshot, {'domain': 'x', 'name': 's', 'uri': f'qemu+tcp://127.0.0.1:{port}/system'})
    msg = failed['msg']
    assert msg.startswith(f'Connecting to libvirt at qemu+tcp://127.0.0.1:{port}/system failed')
    assert 'Check that libvirtd runs' in msg


def test_silent_uri_times_out(run_failing, run_module):
    """A peer that accepts the connection and never answers: fail after connect_timeout, do not hang."""
    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    try:
        failed = run_failing(snapshot, {'domain': 'x', 'name': 's', 'connect_timeout': 1,
                                        'uri': f'qemu+tcp://127.0.0.1:{port}/system'})
        assert 'within 1 seconds' in failed['msg']
    finally:
        for sock, _addr in accepted:
            sock.close()
        server.close()


class _CountsCurrent(Proxy):
    """A domain that counts the reads of its current snapshot (hasCurrentSnapshot, snapshotCurrent)."""

    def __init__(self, dom):
        super().__init__(dom)
        self.current_reads = 0

    def hasCurrentSnapshot(self, flags):
        self.current_reads += 1
        return self.wrapped.hasCurrentSnapshot(flags)

    def snapshotCurrent(self, flags):
        self.current_reads += 1
        return self.wrapped.snapshotCurrent(flags)


def test_check_mode_predicts_the_parent_and_a_real_run_reads_no_current_snapshot_before_it(
        run_module, make_domain, monkeypatch):
    dom = make_domain('shutoff')
    run_module(snapshot, {'domain': dom.name(), 'name': 'first'})
    proxy = _CountsCurrent(dom)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    args = {'domain': dom.name(), 'name': 'second'}

    predicted = run_module(snapshot, args, check=True)
    assert predicted['changed'] is True and predicted['snapshot']['parent'] == 'first'
    assert proxy.current_reads > 0  # check mode reads the current snapshot: it predicts the parent
    proxy.current_reads = 0

    made = run_module(snapshot, args)
    # the parent comes from the new snapshot's own XML; the current snapshot before it is not read (batch mode
    # spares one or two libvirt calls a domain)
    assert made['changed'] is True and made['snapshot']['parent'] == 'first'
    assert proxy.current_reads == 0
    assert made['snapshot'] == run_module(snapshot, args)['snapshot']


# The libvirt calls that need the daemon (names and connections are kept by the client)
_LOCAL_CALLS = frozenset({'name', 'connect', 'getName', 'getDomain', 'getConnect', 'UUID', 'UUIDString'})


class _Counting:
    """A real libvirt object (connection, domain, snapshot) that counts the calls made through it, by kind and
    method; the domains and snapshots it hands out count into the same tally."""

    def __init__(self, obj, kind, tally):
        self._obj, self._kind, self._tally = obj, kind, tally

    def __getattr__(self, attr):
        value = getattr(self._obj, attr)
        if not callable(value) or attr in _LOCAL_CALLS:
            return value

        def call(*args):
            self._tally[f'{self._kind}.{attr}'] = self._tally.get(f'{self._kind}.{attr}', 0) + 1
            return self._wrap(value(*args))
        return call

    def _wrap(self, value):
        if isinstance(value, list):
            return [self._wrap(item) for item in value]
        for cls, kind in ((libvirt.virDomain, 'dom'), (libvirt.virDomainSnapshot, 'snap')):
            if isinstance(value, cls):
                return _Counting(value, kind, self._tally)
        return value


def test_libvirt_calls_of_a_batch_create_and_delete_per_domain(run_module, make_domain, add_snapshot, monkeypatch):
    """What a batch costs per domain in libvirt calls, pinned: a new snapshot reads the domain's XML (its state too
    when it runs, with its memory on a local URI: the XML of a shut-off domain has no id), looks for snapshots of the other kind once (an internal
    one asks only whether there are external ones), takes it and reads it back; a deletion reads the facts it
    reports (XML, current, children) and deletes the object it looked up. Every check and result stays as tested
    above; a new libvirt call a domain must show here."""
    tally = {}
    opened = _libvirt.AnsibleLibvirtModule._open
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, '_open', lambda self: _Counting(opened(self), 'conn', tally))
    doms = {state: [make_domain(state, prefix=f'count{state}') for _index in range(3)]
            for state in ('shutoff', 'running', 'paused')}
    add_snapshot(doms['shutoff'][0], 'older', 100)  # a domain with snapshots costs the same

    def per_domain(state, args):
        tally.clear()
        result = run_module(snapshot, dict(args, domains=[d.name() for d in doms[state]], parallel=2))
        assert [r['failed'] for r in result['results']] == [False] * 3
        once = {key: tally.pop(key) for key in ('conn.getLibVersion', 'conn.close') if key in tally}
        assert set(once.values()) <= {1}  # per run, not per domain
        assert all(count % 3 == 0 for count in tally.values()), tally
        return result, {key: count // 3 for key, count in sorted(tally.items())}

    found = {'conn.lookupByName': 1, 'dom.snapshotLookupByName': 1}
    create = dict(found, **{'dom.XMLDesc': 1, 'dom.listAllSnapshots': 1, 'dom.snapshotCreateXML': 1,
                            'snap.getXMLDesc': 1})
    made, calls = per_domain('shutoff', {'name': 'nightly'})
    assert [r['changed'] for r in made['results']] == [True] * 3
    assert calls == create  # 6 (was 9: the state twice, both kinds' lists)
    # test:/// is a local URI: the state of a running domain comes with its memory (dom.info), which the room for
    # a snapshot with memory is checked against
    assert per_domain('running', {'name': 'nightly'})[1] == dict(create, **{'dom.info': 1})  # 7 (was 10)
    # a paused domain is read once more: one left paused by an interrupted job would be resumed
    assert per_domain('paused', {'name': 'nightly'})[1] == dict(create, **{'dom.info': 1, 'dom.state': 1})

    # a no-op asks whether a job still takes the snapshot, and reads its facts
    again, calls = per_domain('shutoff', {'name': 'nightly'})
    assert [r['changed'] for r in again['results']] == [False] * 3
    assert calls == dict(found, **{'dom.controlInfo': 1, 'snap.getXMLDesc': 1, 'snap.isCurrent': 1,
                                   'snap.listAllChildren': 1})

    gone, calls = per_domain('shutoff', {'name': 'nightly', 'state': 'absent'})
    assert [r['deleted'] for r in gone['results']] == [['nightly']] * 3
    assert calls == dict(found, **{'snap.getXMLDesc': 1, 'snap.isCurrent': 1, 'snap.listAllChildren': 1,
                                   'snap.delete': 1})  # 6
    assert [snapshot_names(d) for d in doms['shutoff']] == [['older'], [], []]


# One run for a pre-change snapshot: disk_only auto, conflicts, free_space_margin_mb

def _libvirt_at(monkeypatch, version):
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'libvirt_version', property(lambda self: version))


def test_disk_only_auto_takes_memory_where_disk_only_cannot_be_had(run_module, make_domain, monkeypatch):
    shutoff, no_channel, silent = make_domain('shutoff'), make_domain('running'), make_domain('running', agent=True)
    _libvirt_at(monkeypatch, 9_000_000)
    old = run_module(snapshot, {'domain': no_channel.name(), 'name': 'old', 'disk_only': 'auto', 'quiesce': 'auto'})
    assert old['kind']['choice'] == 'libvirt 9.0.0 cannot revert a disk-only snapshot (9.9 or later can)'
    _libvirt_at(monkeypatch, 9_009_000)
    result = run_module(snapshot, {'domains': [shutoff.name(), no_channel.name(), silent.name()], 'name': 'pre',
                                   'disk_only': 'auto', 'quiesce': True})
    by_domain = {r['domain']: r for r in result['results']}
    assert by_domain[shutoff.name()]['kind']['choice'] == 'the domain is not running'
    assert by_domain[shutoff.name()]['power_state'] == 'shutoff'
    assert by_domain[no_channel.name()]['kind']['choice'] == 'the domain has no guest agent channel'
    # the test driver sends no agent commands: that counts as an agent that does not answer
    assert by_domain[silent.name()]['kind']['choice'].startswith('the guest agent does not answer (this connection '
                                                                 'cannot ask it')
    for dom, memory in ((shutoff, 'no'), (no_channel, 'internal'), (silent, 'internal')):
        assert by_domain[dom.name()]['kind']['memory'] == memory
        assert stored_xml(dom, 'pre').find('memory').get('snapshot') == memory  # libvirt's own record


def test_disk_only_auto_takes_a_quiesced_disk_only_snapshot_where_the_agent_answers(
        run_module, make_domain, monkeypatch):
    dom = make_domain('running', agent=True)
    proxy = _ExternalCapable(dom)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    _libvirt_at(monkeypatch, 9_009_000)
    agent = Agent(guest_info())
    monkeypatch.setattr(_domain, 'libvirt_qemu', agent)
    result = run_module(snapshot, {'domain': dom.name(), 'name': 'pre', 'disk_only': 'auto', 'quiesce': 'auto',
                                   'agent_timeout': 7})
    assert agent.asked == [('guest-info', 7)]
    assert proxy.calls[0][1] & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
    assert proxy.calls[0][1] & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    assert result['kind']['choice'] == 'the guest agent answers: a quiesced disk-only snapshot stalls the guest least'
    assert (result['kind']['location'], result['kind']['memory'], result['power_state']) == ('external', 'no', 'running')
    assert stored_xml(dom, 'pre').findtext('state') == 'disk-snapshot'


def test_disk_only_auto_takes_memory_where_the_agent_has_freezing_disabled(run_module, make_domain, monkeypatch):
    """An agent that answers but whose configuration disables the freeze (qemu-ga --block-rpcs): libvirt's quiesce
    would fail, so auto takes a snapshot with memory, and says why."""
    dom = make_domain('running', agent=True)
    proxy = _ExternalCapable(dom)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    _libvirt_at(monkeypatch, 9_009_000)
    monkeypatch.setattr(_domain, 'libvirt_qemu', Agent(guest_info(disabled=['guest-fsfreeze-freeze'])))
    result = run_module(snapshot, {'domain': dom.name(), 'name': 'pre', 'disk_only': 'auto', 'quiesce': 'auto'})
    assert result['kind']['choice'] == ('the guest agent cannot freeze the file systems: guest-fsfreeze-freeze is '
                                        'disabled or missing in it (qemu-ga --block-rpcs)')
    assert result['kind']['memory'] != 'no'
    assert not proxy.calls[0][1] & (libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE
                                    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY)


class _FreezeFails(_ExternalCapable):
    """An external-capable domain whose quiesced snapshot fails as libvirt reports a failed freeze of the guest
    agent, having made nothing."""

    FAILURE = ("internal error: unable to execute QEMU agent command 'guest-fsfreeze-freeze': fsfreeze hook has "
               "failed with status 1")

    def snapshotCreateXML(self, xml, flags):
        if flags & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE:
            self.calls.append((xml, flags))
            raise fake_error(1, self.FAILURE)
        return super().snapshotCreateXML(xml, flags)


@pytest.mark.parametrize('disk_only, fallback', [('auto', True), (True, False)])
def test_a_failed_freeze_falls_back_to_memory_only_where_auto_chose(
        run_module, run_failing, make_domain, monkeypatch, disk_only, fallback):
    """disk_only auto chose a quiesced disk-only snapshot and the agent failed to freeze: a snapshot with memory,
    saying why; disk_only true with quiesce true fails with libvirt's message, and nothing is made."""
    dom = make_domain('running', agent=True)
    proxy = _FreezeFails(dom)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    _libvirt_at(monkeypatch, 9_009_000)
    monkeypatch.setattr(_domain, 'libvirt_qemu', Agent(guest_info()))
    args = {'domain': dom.name(), 'name': 'pre', 'disk_only': disk_only, 'quiesce': 'auto' if fallback else True}
    if not fallback:
        assert _FreezeFails.FAILURE in run_failing(snapshot, args)['msg']
        assert snapshot_names(dom) == []
        return
    result = run_module(snapshot, args)
    assert [flags & libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE for _xml, flags in proxy.calls] == \
        [libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_QUIESCE, 0]
    assert result['kind']['choice'].startswith('the guest agent failed to freeze the file systems (Creating snapshot')
    assert result['kind']['choice'].endswith('): a snapshot with memory') and 'fsfreeze hook' in result['kind']['choice']
    assert result['kind']['memory'] != 'no' and stored_xml(dom, 'pre').find('memory').get('snapshot') != 'no'


@pytest.mark.parametrize('value', ['maybe', 2, 'autox'])
def test_disk_only_takes_true_false_or_auto(run_failing, make_domain, value):
    dom = make_domain('running')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 's', 'disk_only': value})
    assert f'disk_only must be true, false or auto, not {value!r}' in failed['msg']
    assert snapshot_names(dom) == []


def test_conflicts_refuse_by_default_and_change_nothing(run_failing, run_module, make_domain, add_snapshot):
    busy, free = make_domain('running'), make_domain('running')
    add_snapshot(busy, 'pre-change-a', 1795635615)
    add_snapshot(busy, 'nightly', 1795635616)
    args = {'domains': [busy.name(), free.name()], 'name': 'pre-change-b', 'conflicts': 'pre-change-*'}
    for check in (True, False):
        failed = run_failing(snapshot, args, check=check)
        by_domain = {r['domain']: r for r in failed['results']}
        assert by_domain[busy.name()]['failed'] is True and by_domain[busy.name()]['changed'] is False
        assert by_domain[busy.name()]['conflicts'] == ['pre-change-a']
        assert f'Domain "{busy.name()}" still has the snapshot(s) pre-change-a, which conflicts ("pre-change-*") ' \
               'matches. Nothing was changed.' in by_domain[busy.name()]['msg']
        assert by_domain[free.name()]['failed'] is False and by_domain[free.name()]['conflicts'] == []
    assert snapshot_names(busy) == ['nightly', 'pre-change-a']
    # the snapshot of this change itself is never refused for the others
    add_snapshot(busy, 'pre-change-b', 1795635617)
    again = run_module(snapshot, dict(args, domains=[busy.name()]))
    assert again['changed'] is False and again['results'][0]['conflicts'] == ['pre-change-a']
    assert again['results'][0]['deleted'] == []


def test_conflicts_deleted_once_the_new_snapshot_is_there(run_module, make_domain, add_snapshot):
    dom = make_domain('running')
    add_snapshot(dom, 'pre-change-a', 1795635615)
    add_snapshot(dom, 'pre-change-b', 1795635616, parent='pre-change-a')
    args = {'domain': dom.name(), 'name': 'pre-change-c', 'conflicts': 'pre-change-*', 'conflicts_action': 'delete'}
    predicted = run_module(snapshot, args, check=True)
    assert predicted['changed'] is True and predicted['deleted'] == ['pre-change-a', 'pre-change-b']
    assert snapshot_names(dom) == ['pre-change-a', 'pre-change-b']
    done = run_module(snapshot, args)
    assert done['changed'] is True and done['snapshot']['name'] == 'pre-change-c'
    assert done['conflicts'] == done['deleted'] == ['pre-change-a', 'pre-change-b']
    assert snapshot_names(dom) == ['pre-change-c']
    again = run_module(snapshot, args)
    assert again['changed'] is False and again['conflicts'] == [] and again['deleted'] == []


def test_free_space_margin_refuses_before_anything_is_made(run_failing, run_module, make_domain, monkeypatch,
                                                           tmp_path):
    dom = make_domain('running', xml=lambda name: DOMAIN_XML.format(name=name, fmt='qcow2', channel='').replace(
        f'/guest/{name}.img', str(tmp_path / f'{name}.img')))
    monkeypatch.setattr(_storage.os, 'statvfs', statvfs_with(2048 << 20))
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 'pre', 'free_space_margin_mb': 4096})
    assert f'Not enough free space for snapshot "pre" of domain "{dom.name()}" (memory internal): ' in failed['msg']
    assert 'has 2048 MiB' in failed['msg'] and 'free_space_margin_mb=4096' in failed['msg']
    assert snapshot_names(dom) == []
    made = run_module(snapshot, {'domain': dom.name(), 'name': 'pre', 'free_space_margin_mb': 512})
    assert made['changed'] is True and 'free_space_unchecked' not in made
    assert snapshot_names(dom) == ['pre']


def test_free_space_margin_names_the_files_it_cannot_read(run_module, make_domain):
    dom = make_domain('shutoff')  # its disk /guest/<name>.img is on no file system here
    made = run_module(snapshot, {'domain': dom.name(), 'name': 'pre', 'free_space_margin_mb': 10})
    assert made['free_space_unchecked'] == {'files': [f'/guest/{dom.name()}.img'], 'needed_mib': 10}


@pytest.mark.parametrize('args, words', [
    ({'agent_timeout': 0}, 'agent_timeout is 0; it must be from 1 to 3600'),
    ({'free_space_margin_mb': -1}, 'free_space_margin_mb is -1; it must be at least 0 (MiB)'),
    ({'conflicts': ' '}, 'conflicts is empty'),
])
def test_pre_change_options_out_of_range_change_nothing(run_failing, make_domain, args, words):
    dom = make_domain('running')
    failed = run_failing(snapshot, {'domain': dom.name(), 'name': 's', 'disk_only': 'auto', **args})
    assert words in failed['msg'] and 'Nothing was changed' in failed['msg']
    assert snapshot_names(dom) == []


def test_without_conflicts_the_result_has_no_conflict_keys(run_module, make_domain):
    dom = make_domain('running')
    made = run_module(snapshot, {'domain': dom.name(), 'name': 's'})
    assert 'conflicts' not in made and 'deleted' not in made and 'choice' not in made['kind']
    assert made['power_state'] == 'running'


class _StuckSnapshot(Proxy):
    """A snapshot whose deletion libvirt refuses (an error the module does not explain itself)."""

    def delete(self, _flags):
        raise fake_error(libvirt.VIR_ERR_OPERATION_FAILED, 'operation failed: the disk is busy')


class _StuckConflict(Proxy):
    """A domain whose snapshot "pre-change-a" cannot be deleted."""

    def snapshotLookupByName(self, name, flags):
        snap = self.wrapped.snapshotLookupByName(name, flags)
        return _StuckSnapshot(snap) if name == 'pre-change-a' else snap


def test_a_conflict_that_cannot_be_deleted_fails_the_domain_and_keeps_the_new_snapshot(
        run_failing, make_domain, add_snapshot, monkeypatch):
    dom = make_domain('running')
    add_snapshot(dom, 'pre-change-a', 1795635615)
    add_snapshot(dom, 'pre-change-b', 1795635616)
    proxy = _StuckConflict(dom)
    monkeypatch.setattr(_libvirt.AnsibleLibvirtModule, 'lookup_domain', lambda self, name: proxy)
    failed = run_failing(snapshot, {'domains': [dom.name()], 'name': 'pre-change-c', 'conflicts': 'pre-change-*',
                                    'conflicts_action': 'delete'})
    result = failed['results'][0]
    assert result['failed'] is True and result['changed'] is True  # the new snapshot was taken
    assert result['msg'].startswith(f'Snapshot "pre-change-c" of domain "{dom.name()}" is there, but "pre-change-a", '
                                    'which conflicts matches, could not be deleted: ')
    assert 'the disk is busy' in result['msg']
    assert result['snapshot']['name'] == 'pre-change-c' and result['deleted'] == []
    # the new snapshot is kept, and so is every conflict after the one that failed (nothing more is tried)
    assert snapshot_names(dom) == ['pre-change-a', 'pre-change-b', 'pre-change-c']


def test_disk_only_auto_takes_memory_where_a_disk_only_snapshot_cannot_be_made(
        run_module, make_domain, add_snapshot, monkeypatch):
    dom = make_domain('running', agent=True)
    add_snapshot(dom, 'internal-one', 1795635615)  # an external snapshot on top of internal ones is refused
    _libvirt_at(monkeypatch, 9_009_000)
    monkeypatch.setattr(_domain, 'libvirt_qemu', Agent(AssertionError('the agent is asked for nothing')))
    result = run_module(snapshot, {'domain': dom.name(), 'name': 'pre', 'disk_only': 'auto', 'quiesce': 'auto'})
    assert result['kind']['choice'].startswith('a disk-only snapshot cannot be made: the domain has internal '
                                               'snapshots (internal-one)')
    assert (result['kind']['location'], result['kind']['memory']) == ('internal', 'internal')
    assert stored_xml(dom, 'pre').find('memory').get('snapshot') == 'internal'
