# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The snapshot model (module_utils/_snapshot.py): pure functions, and the few readers checked on libvirt's test driver."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _snapshot as s
from ansible_collections.kvm.snapshots.plugins.module_utils._kind import Plan
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import FROM_RPC, SnapshotError
from ansible_collections.kvm.snapshots.tests.unit.helpers import Proxy, fake_error
from ansible_collections.kvm.snapshots.tests.unit.plugins.module_utils.texts import HOSTILE_TEXT


# build_snapshot_xml / replace_description

@pytest.mark.parametrize('text', HOSTILE_TEXT)
def test_build_xml_keeps_hostile_text_as_text(text):
    root = ET.fromstring(s.build_snapshot_xml(text, description=text))
    assert [child.tag for child in root] == ['name', 'description']
    assert root.findtext('name') == text
    assert root.findtext('description') == text
    assert list(root.find('name')) == []  # no markup made it into the structure


def test_build_xml_without_description():
    root = ET.fromstring(s.build_snapshot_xml('n'))
    assert root.find('description') is None
    assert root.find('memory') is None


def test_build_xml_external_names_every_file():
    disk_only = Plan('external', 'no', 'asked for', [{'disk': 'vda', 'file': '/i/a.n'}], None, [])
    root = ET.fromstring(s.build_snapshot_xml('n', plan=disk_only))
    assert root.find('memory').attrib == {'snapshot': 'no'}
    assert [(d.get('name'), d.get('snapshot'), d.find('source').get('file')) for d in root.findall('disks/disk')] == [
        ('vda', 'external', '/i/a.n')]
    with_memory = disk_only._replace(memory='external', memory_file='/i/a.n.memory')
    root = ET.fromstring(s.build_snapshot_xml('n', plan=with_memory))
    assert root.find('memory').attrib == {'snapshot': 'external', 'file': '/i/a.n.memory'}
    internal = ET.fromstring(s.build_snapshot_xml('n', plan=disk_only._replace(location='internal')))
    assert internal.find('memory') is None and internal.find('disks') is None  # libvirt's default: internal


def test_replace_description():
    original = s.build_snapshot_xml('n', description='old')
    replaced = ET.fromstring(s.replace_description(original, 'new <&> ]]>'))
    assert replaced.findtext('description') == 'new <&> ]]>'
    assert len(replaced.findall('description')) == 1

    added = ET.fromstring(s.replace_description(s.build_snapshot_xml('n'), 'added'))
    assert [child.tag for child in added] == ['name', 'description']
    assert added.findtext('description') == 'added'


# parse_snapshot_xml

RUNNING_XML = """<domainsnapshot>
  <name>pre-upgrade</name>
  <description>Before &lt;upgrade&gt; &amp; more</description>
  <state>running</state>
  <parent><name>base</name></parent>
  <creationTime>1795635615</creationTime>
  <memory snapshot='internal'/>
  <disks><disk name='vda' snapshot='internal'/><disk name='hdc' snapshot='no'/></disks>
  <domain type='kvm'><name>web1</name><devices><disk type='file' device='disk'>
    <source file='/images/web1.qcow2'/><target dev='vda'/></disk></devices></domain>
</domainsnapshot>"""

EXTERNAL_XML = """<domainsnapshot>
  <name>pre-migration</name>
  <state>disk-snapshot</state>
  <creationTime>1795635615</creationTime>
  <memory snapshot='no'/>
  <disks>
    <disk name='vda' snapshot='external' type='file'>
      <driver type='qcow2'/><source file='/images/db1.pre-migration'/>
    </disk>
  </disks>
  <domain type='kvm'><name>db1</name><devices>
    <disk type='file' device='disk'><source file='/images/db1.qcow2'/><target dev='vda' bus='virtio'/></disk>
  </devices></domain>
</domainsnapshot>"""


def test_parse_running_internal():
    facts = s.parse_snapshot_xml(RUNNING_XML)
    assert facts == {
        'name': 'pre-upgrade',  # not the <domain>'s name
        'description': 'Before <upgrade> & more',
        'state': 'running',
        'creation_time': '2026-11-25T19:40:15Z',
        'creation_time_epoch': 1795635615,
        'parent': 'base',
        'location': 'internal',
        'memory': 'internal',
        'memory_file': None,
        'disks': [{'name': 'vda', 'snapshot': 'internal', 'file': None, 'backing_file': None},
                  {'name': 'hdc', 'snapshot': 'no', 'file': None, 'backing_file': None}],  # not the <domain>'s disks
    }


def test_parse_external_disk_only():
    facts = s.parse_snapshot_xml(EXTERNAL_XML)
    assert facts['location'] == 'external'
    assert facts['memory'] == 'no'
    # file: the overlay written to since; backing_file: the image holding the snapshot (a delete merges one into the other)
    assert facts['disks'] == [{'name': 'vda', 'snapshot': 'external', 'file': '/images/db1.pre-migration',
                               'backing_file': '/images/db1.qcow2'}]
    assert facts['parent'] is None and facts['description'] is None


def test_parse_external_memory_is_external():
    xml = "<domainsnapshot><name>m</name><state>running</state><memory snapshot='external' file='/m'/></domainsnapshot>"
    assert s.parse_snapshot_xml(xml)['location'] == 'external'


@pytest.mark.parametrize('state, memory', [('shutoff', 'no'), ('disk-snapshot', 'no'), ('running', 'internal')])
def test_parse_guesses_memory_when_not_stated(state, memory):
    xml = f'<domainsnapshot><name>n</name><state>{state}</state></domainsnapshot>'
    facts = s.parse_snapshot_xml(xml)
    assert facts['memory'] == memory
    assert facts['creation_time'] is None and facts['creation_time_epoch'] is None


@pytest.mark.parametrize('text', HOSTILE_TEXT)
def test_build_then_parse_round_trips(text):
    facts = s.parse_snapshot_xml(s.build_snapshot_xml(text, description=text))
    assert (facts['name'], facts['description']) == (text, text)


def test_iso_utc():
    assert s.iso_utc(None) is None
    assert s.iso_utc(0) == '1970-01-01T00:00:00Z'
    assert s.iso_utc(1795635615) == '2026-11-25T19:40:15Z'


def test_summary():
    assert s.summary(None) == {'state': 'absent'}
    facts = s.parse_snapshot_xml(RUNNING_XML)
    assert s.summary(facts) == {'state': 'present', 'name': 'pre-upgrade',
                                'description': 'Before <upgrade> & more', 'location': 'internal'}


# snapshot_tree

def _flat(name, parent):
    return {'name': name, 'parent': parent}


def _node(name, depth, parent, children):
    return {'name': name, 'depth': depth, 'parent': parent, 'children': children}


def test_snapshot_tree():
    ordered = [_flat('base', None), _flat('a', 'base'), _flat('a1', 'a'), _flat('b', 'base'), _flat('other', None)]
    assert s.snapshot_tree(ordered) == [
        _node('base', 0, None, ['a', 'b']),
        _node('a', 1, 'base', ['a1']),
        _node('a1', 2, 'a', []),
        _node('b', 1, 'base', []),
        _node('other', 0, None, []),
    ]


def test_snapshot_tree_is_depth_first_whatever_the_order_given():
    # siblings keep the order given; descendants follow their parent at once
    given = [_flat('r', None), _flat('x', 'r'), _flat('y', 'r'), _flat('x1', 'x'), _flat('y1', 'y')]
    assert [(n['name'], n['depth']) for n in s.snapshot_tree(given)] == [
        ('r', 0), ('x', 1), ('x1', 2), ('y', 1), ('y1', 2)]


def test_snapshot_tree_of_a_long_chain_stays_flat():
    chain = [_flat('s0', None)] + [_flat(f's{i}', f's{i - 1}') for i in range(1, 2000)]
    tree = s.snapshot_tree(chain)
    assert [n['depth'] for n in tree] == list(range(2000))
    assert tree[-1] == _node('s1999', 1999, 's1998', [])
    assert all(isinstance(child, str) for n in tree for child in n['children'])


def test_snapshot_tree_of_a_part_makes_orphans_roots():
    # only part of the snapshots (a parent that is not in the list): the child becomes a root
    assert s.snapshot_tree([_flat('child', 'gone')]) == [_node('child', 0, None, [])]
    assert s.snapshot_tree([]) == []


# readers, on the test driver (make_domain: tests/unit/conftest.py)

def test_list_snapshots_parents_first_siblings_oldest_first(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    # defined in an order that is neither by age nor by name
    add_snapshot(dom, 'root', 100)
    add_snapshot(dom, 'z-old', 200, 'root')
    add_snapshot(dom, 'a-new', 300, 'root')
    add_snapshot(dom, 'z-old-child', 400, 'z-old')
    add_snapshot(dom, 'second-root', 50)
    listed = s.list_snapshots(dom)
    assert [x['name'] for x in listed] == ['second-root', 'root', 'z-old', 'z-old-child', 'a-new']
    by_name = {x['name']: x for x in listed}
    assert by_name['root']['children'] == ['z-old', 'a-new']
    assert by_name['z-old-child']['parent'] == 'z-old'
    assert all(x['domain'] == dom.name() for x in listed)


def test_lookup_snapshot_and_facts(make_domain):
    dom = make_domain('shutoff')
    assert s.lookup_snapshot(dom, 'missing') is None
    created = dom.snapshotCreateXML(s.build_snapshot_xml('first', 'd <&>'), 0)
    dom.snapshotCreateXML(s.build_snapshot_xml('second'), 0)
    assert s.lookup_snapshot(dom, 'first').getName() == created.getName()
    facts = s.snapshot_facts(s.lookup_snapshot(dom, 'first'), dom.name())
    assert facts['description'] == 'd <&>'
    assert facts['children'] == ['second']
    assert facts['current'] is False
    assert s.snapshot_facts(s.lookup_snapshot(dom, 'second'), dom.name())['current'] is True


def test_current_snapshot_name(make_domain):
    dom = make_domain('shutoff')
    assert s.current_snapshot_name(dom) is None
    dom.snapshotCreateXML(s.build_snapshot_xml('first'), 0)
    dom.snapshotCreateXML(s.build_snapshot_xml('second'), 0)
    assert s.current_snapshot_name(dom) == 'second'


def test_lookup_snapshot_error_other_than_missing_is_plain(make_domain, conn):
    dom = make_domain('shutoff')
    name = dom.name()
    dom.undefine()  # the domain object outlives its domain: libvirt answers "domain not found"
    with pytest.raises(SnapshotError, match=rf'^Looking up snapshot "x" of domain "{name}" failed: .*\[libvirt error 42\]$'):
        s.lookup_snapshot(dom, 'x')


# delete_snapshot, delete_with_descendants: on the test driver, with a busy lock or a rival run stood in


class Rival(Proxy):
    """A domain whose snapshots' delete first meets ``busy`` busy-lock errors (another job holds the domain), or
    finds the snapshot deleted by another run (``rival``); everything else is the test driver's."""

    def __init__(self, dom, busy=0, rival=False):
        super().__init__(dom)
        self.busy, self.rival, self.calls = busy, rival, 0

    def snapshotLookupByName(self, name, flags):
        snap = self.wrapped.snapshotLookupByName(name, flags)
        outer = self

        class Snap(Proxy):
            def delete(self, flags):
                outer.calls += 1
                if outer.calls <= outer.busy:
                    raise fake_error(68, 'Timed out during operation: cannot acquire state change lock '
                                         '(held by monitor=remoteDispatchDomainSnapshotCreateXML)')
                if outer.rival:
                    outer.wrapped.snapshotLookupByName(name, 0).delete(flags)  # the other run was faster
                return snap.delete(flags)
        return Snap(snap)


def names(dom):
    return [x['name'] for x in s.list_snapshots(dom)]


def test_set_description_in_place_keeps_what_is_current(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'old', 100, description='first')
    add_snapshot(dom, 'new', 200, 'old', current=True)
    facts = s.set_description(dom, s.lookup_snapshot(dom, 'old'), 'second <&>', current=False)
    assert (facts['name'], facts['description'], facts['current']) == ('old', 'second <&>', False)
    assert facts['children'] == ['new']
    facts = s.set_description(dom, s.lookup_snapshot(dom, 'new'), 'now', current=True)
    assert (facts['description'], facts['current'], facts['parent']) == ('now', True, 'old')
    assert s.current_snapshot_name(dom) == 'new'
    assert s.lookup_snapshot(dom, 'old').getXMLDesc(0).count('<description>') == 1


def test_delete_snapshot_deletes_it_alone(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'root', 100)
    add_snapshot(dom, 'mid', 200, 'root')
    add_snapshot(dom, 'leaf', 300, 'mid')
    assert s.delete_snapshot(dom, 'mid') is True
    assert names(dom) == ['root', 'leaf']
    assert s.list_snapshots(dom)[1]['parent'] == 'root'  # libvirt hands the children to the parent
    assert s.delete_snapshot(dom, 'mid') is False  # nothing left to delete


def test_delete_snapshot_retries_while_another_job_holds_the_domain(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'old', 100)
    rival = Rival(dom, busy=2)
    assert s.delete_snapshot(rival, 'old', busy_timeout=60) is True
    assert rival.calls == 3
    assert names(dom) == []


def test_delete_snapshot_busy_past_busy_timeout_says_what_holds_the_domain(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'old', 100)
    with pytest.raises(SnapshotError) as raised:
        s.delete_snapshot(Rival(dom, busy=100), 'old', busy_timeout=0)
    assert raised.value.msg.startswith(f'Deleting snapshot "old" of domain "{dom.name()}" failed: Timed out')
    assert 'another job holds the domain' in raised.value.msg and 'remoteDispatch' in raised.value.msg
    assert raised.value.details == {'domain': dom.name()}
    assert names(dom) == ['old']


def test_delete_snapshot_gone_meanwhile_is_not_an_error(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'old', 100)
    add_snapshot(dom, 'kept', 200, 'old')
    assert s.delete_snapshot(Rival(dom, rival=True), 'old') is False
    assert names(dom) == ['kept']


class NoLookup(Proxy):
    """A domain whose snapshots must not be looked up (the caller passed the snapshot object)."""

    def snapshotLookupByName(self, name, flags):
        raise AssertionError(f'{name} looked up again')


def test_delete_snapshot_of_a_snapshot_looked_up_before(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'old', 100)
    add_snapshot(dom, 'kept', 200, 'old')
    assert s.delete_snapshot(NoLookup(dom), 'old', snap=dom.snapshotLookupByName('old', 0)) is True
    assert names(dom) == ['kept']
    # looked up, then deleted by another run before this one deletes it: gone, as wanted
    snap = dom.snapshotLookupByName('kept', 0)
    dom.snapshotLookupByName('kept', 0).delete(0)
    assert s.delete_snapshot(dom, 'kept', snap=snap) is False
    assert names(dom) == []


def test_delete_with_descendants_of_internal_snapshots(make_domain, add_snapshot):
    dom = make_domain('shutoff')
    add_snapshot(dom, 'root', 100)
    add_snapshot(dom, 'mid', 200, 'root')
    add_snapshot(dom, 'leaf', 300, 'mid')
    add_snapshot(dom, 'other', 400, 'root')
    s.delete_with_descendants(dom, 'mid', ['leaf'])
    assert names(dom) == ['root', 'other']
    s.delete_with_descendants(Rival(dom, rival=True), 'root', ['other'])  # gone meanwhile: as wanted
    assert names(dom) == []


@pytest.mark.parametrize('epoch', [253402300800, 10 ** 15])  # 10000-01-01 and far beyond
def test_creation_time_past_year_9999_is_none_not_a_traceback(epoch):
    """libvirt takes any creationTime in a redefined snapshot; a date cannot hold it: no ISO time, the epoch kept."""
    facts = s.parse_snapshot_xml(
        f'<domainsnapshot><name>far</name><creationTime>{epoch}</creationTime><state>shutoff</state></domainsnapshot>')
    assert facts['creation_time'] is None
    assert facts['creation_time_epoch'] == epoch
    assert s.iso_utc(253402300799) == '9999-12-31T23:59:59Z'


# connection faults

class _LostConnection:
    """A domain whose connection breaks in the middle of snapshotCreateXML (libvirtd killed)."""

    def __init__(self):
        self.lookups = 0

    def name(self):
        return 'web1'

    def snapshotCreateXML(self, _xml, _flags):
        raise fake_error(1, 'End of file while reading data: Input/output error', FROM_RPC)

    def snapshotLookupByName(self, _name, _flags=0):
        self.lookups += 1
        raise fake_error(1, 'client socket is closed', FROM_RPC)


def test_create_on_a_lost_connection_says_what_may_be_left():
    dom = _LostConnection()
    with pytest.raises(SnapshotError) as raised:
        s.create_snapshot(dom, 'pre')
    msg = raised.value.msg
    assert msg.startswith('Creating snapshot "pre" of domain "web1" failed: End of file')
    assert 'connection to libvirtd was lost' in msg and 'a re-run of this task finds out' in msg
    assert dom.lookups == 0  # no second call on a dead connection


# a snapshot listed while another run still takes it

class _Busy:
    def __init__(self, control, elapsed_ms):
        self.info = [control, 0, elapsed_ms]

    def controlInfo(self, _flags=0):
        return list(self.info)


class _Snap:
    def __init__(self, epoch):
        self.epoch = epoch

    def getXMLDesc(self, _flags=0):
        return f'<domainsnapshot><name>s</name><creationTime>{self.epoch}</creationTime></domainsnapshot>'


def test_a_snapshot_made_by_the_running_job_is_in_progress():
    now = int(time.time())
    assert s.in_progress(_Busy(1, 3000), _Snap(now - 3))  # stamped as its job began
    assert s.in_progress(_Busy(2, 500), _Snap(now - 2))  # the monitor entered a little after the stamp


def test_an_older_snapshot_under_another_job_is_not_waited_for():
    now = int(time.time())
    assert not s.in_progress(_Busy(1, 10_000), _Snap(now - 3600))  # a backup started long after it
    assert not s.in_progress(_Busy(0, 0), _Snap(now))  # no job at all
