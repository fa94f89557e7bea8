# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kvm.snapshots.snapshot_info against libvirt's test driver.

Snapshots are made with libvirt directly (REDEFINE with an explicit
creationTime and parent), so the expected order and tree are known exactly.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _libvirt, _sizes
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import list_snapshots
from ansible_collections.kvm.snapshots.plugins.modules import snapshot_info

BASE_EPOCH = 1795161600  # 2026-11-20T08:00:00Z


def summary(domain_entry):
    """The snapshot summary of an entry of ``domains`` (without the facts of the domain itself)."""
    return {key: domain_entry[key] for key in ('current', 'tree', 'count')}


@pytest.fixture
def tree_domain(make_domain, add_snapshot):
    """A domain whose snapshots form   base -> (a -> c, b)   with c current.

    a and b are siblings with b older, and a's name sorts first, so an order
    by name and an order by age differ.
    """
    dom = make_domain('shutoff', prefix='info')
    add_snapshot(dom, 'base', BASE_EPOCH)
    add_snapshot(dom, 'b', BASE_EPOCH + 100, parent='base')
    add_snapshot(dom, 'a', BASE_EPOCH + 200, parent='base', description='first try')
    add_snapshot(dom, 'c', BASE_EPOCH + 300, parent='a', current=True)
    return dom


def test_one_domain_lists_parents_before_children(run_module, tree_domain):
    name = tree_domain.name()
    result = run_module(snapshot_info, {'domain': name})

    assert result['changed'] is False
    assert [s['name'] for s in result['snapshots']] == ['base', 'b', 'a', 'c']
    by_name = {s['name']: s for s in result['snapshots']}
    assert by_name['base']['children'] == ['b', 'a']  # oldest first
    assert by_name['base']['parent'] is None
    assert by_name['c']['parent'] == 'a'
    assert by_name['a'] == {
        'name': 'a', 'domain': name, 'description': 'first try', 'state': 'shutoff',
        'creation_time': '2026-11-20T08:03:20Z', 'creation_time_epoch': BASE_EPOCH + 200,
        'parent': 'base', 'children': ['c'], 'current': False, 'location': 'internal',
        'memory': 'no', 'memory_file': None, 'disks': [{'name': 'vda', 'snapshot': 'internal', 'file': None, 'backing_file': None}],
        'consistent': None,  # the test driver's images are not files to read
        # a disk-only internal snapshot: no VM state; the clusters only it holds are not counted (a lower bound)
        'memory_bytes': None, 'overlay_bytes': None, 'size_bytes': 0, 'size_exact': False,
        'group': None,  # not taken by snapshot_group
    }
    assert [s['name'] for s in result['snapshots'] if s['current']] == ['c']


def test_one_domain_current_tree_and_summary(run_module, tree_domain):
    name = tree_domain.name()
    result = run_module(snapshot_info, {'domain': name})

    tree = [
        {'name': 'base', 'depth': 0, 'parent': None, 'children': ['b', 'a']},
        {'name': 'b', 'depth': 1, 'parent': 'base', 'children': []},
        {'name': 'a', 'depth': 1, 'parent': 'base', 'children': ['c']},
        {'name': 'c', 'depth': 2, 'parent': 'a', 'children': []},
    ]
    assert result['current'] == 'c'
    assert result['tree'] == tree
    assert list(result['domains']) == [name]
    assert summary(result['domains'][name]) == {'current': 'c', 'tree': tree, 'count': 4}
    assert 'state' not in result and 'disks' not in result  # the domain's facts stay in domains


def test_domain_without_snapshots(run_module, make_domain):
    dom = make_domain('running', prefix='info')
    result = run_module(snapshot_info, {'domain': dom.name()})
    assert result['snapshots'] == []
    assert result['current'] is None
    assert result['tree'] == []
    assert list(result['domains']) == [dom.name()]
    assert summary(result['domains'][dom.name()]) == {'current': None, 'tree': [], 'count': 0}


def test_all_domains_in_name_order(run_module, make_domain, add_snapshot):
    first, second = sorted((make_domain('shutoff', prefix='info'), make_domain('running', prefix='info')),
                           key=lambda d: d.name())
    add_snapshot(second, 's2-root', BASE_EPOCH)
    add_snapshot(second, 's2-child', BASE_EPOCH + 1, parent='s2-root', current=True)
    add_snapshot(first, 's1', BASE_EPOCH + 50)
    ours = {first.name(), second.name()}

    result = run_module(snapshot_info, {})

    assert 'current' not in result and 'tree' not in result
    assert [(s['domain'], s['name']) for s in result['snapshots'] if s['domain'] in ours] == [
        (first.name(), 's1'), (second.name(), 's2-root'), (second.name(), 's2-child')]
    assert summary(result['domains'][first.name()]) == {'current': None, 'count': 1,
                                                        'tree': [{'name': 's1', 'depth': 0, 'parent': None,
                                                                  'children': []}]}
    assert result['domains'][second.name()]['current'] == 's2-child'
    assert result['domains'][second.name()]['count'] == 2
    # the test driver's own domain is read too
    assert summary(result['domains']['test']) == {'current': None, 'tree': [], 'count': 0}
    domain_order = [s['domain'] for s in result['snapshots']]
    assert domain_order == sorted(domain_order)


def test_by_name(run_module, tree_domain):
    result = run_module(snapshot_info, {'domain': tree_domain.name(), 'name': 'a'})
    assert [s['name'] for s in result['snapshots']] == ['a']
    assert result['snapshots'][0]['children'] == ['c']
    # current, tree and domains still describe the whole domain
    assert result['current'] == 'c'
    assert result['domains'][tree_domain.name()]['count'] == 4


def test_missing_name_is_an_empty_list(run_module, tree_domain):
    result = run_module(snapshot_info, {'domain': tree_domain.name(), 'name': 'no-such-snapshot'})
    assert result['snapshots'] == []
    assert result['current'] == 'c'
    assert 'failed' not in result


def test_name_without_domain_reads_every_domain(run_module, make_domain, add_snapshot):
    with_it = [make_domain('shutoff', prefix='info'), make_domain('shutoff', prefix='info')]
    without_it = make_domain('shutoff', prefix='info')
    for dom in with_it:
        add_snapshot(dom, 'nightly', BASE_EPOCH)
    add_snapshot(without_it, 'other', BASE_EPOCH)

    result = run_module(snapshot_info, {'name': 'nightly'})

    assert [(s['domain'], s['name']) for s in result['snapshots']] == sorted((d.name(), 'nightly') for d in with_it)
    assert result['domains'][without_it.name()]['count'] == 1


HOSTILE = [
    ('a<b>&c"d\'e', 'description with <tag attr="x"/> & &amp; entities'),
    ('x]]>y', '<![CDATA[ not markup ]]>'),
    ('ünïcödé ✓ 快照 🐧', 'émoji 🐧 and 中文'),
    ('<!-- comment -->', 'two\nlines\tand a tab'),
]


def test_xml_hostile_names_and_descriptions_round_trip(run_module, make_domain, add_snapshot):
    dom = make_domain('shutoff', prefix='info')
    for i, (name, description) in enumerate(HOSTILE):
        add_snapshot(dom, name, BASE_EPOCH + i, description=description)

    result = run_module(snapshot_info, {'domain': dom.name()})
    assert [(s['name'], s['description']) for s in result['snapshots']] == HOSTILE

    for name, description in HOSTILE:
        one = run_module(snapshot_info, {'domain': dom.name(), 'name': name})
        assert [(s['name'], s['description']) for s in one['snapshots']] == [(name, description)]


def test_unknown_domain_fails_with_a_plain_message(run_failing):
    result = run_failing(snapshot_info, {'domain': 'info-no-such-domain'})
    assert result['msg'].startswith('Domain "info-no-such-domain" does not exist on test:///default')
    assert result['domain'] == 'info-no-such-domain'


def test_check_mode_reads_the_same(run_module, tree_domain):
    normal = run_module(snapshot_info, {'domain': tree_domain.name()})
    checked = run_module(snapshot_info, {'domain': tree_domain.name()}, check=True)
    assert checked == normal
    assert len(tree_domain.listAllSnapshots(0)) == 4


def test_snapshot_deleted_while_read_is_left_out(make_domain, monkeypatch, add_snapshot):
    dom = make_domain('shutoff', prefix='info')
    add_snapshot(dom, 'stays', BASE_EPOCH)
    stale = add_snapshot(dom, 'goes', BASE_EPOCH + 1, parent='stays')
    stale.delete(0)  # another run deletes it between the listing and the reading
    real = dom.listAllSnapshots
    calls = []

    def listing(flags=0):
        calls.append(flags)
        return real(flags) + ([stale] if len(calls) == 1 else [])

    monkeypatch.setattr(dom, 'listAllSnapshots', listing)
    assert [s['name'] for s in list_snapshots(dom)] == ['stays']
    assert len(calls) == 2


def test_snapshot_that_keeps_vanishing_is_an_error(make_domain, monkeypatch, add_snapshot):
    dom = make_domain('shutoff', prefix='info')
    stale = add_snapshot(dom, 'goes', BASE_EPOCH)
    stale.delete(0)
    monkeypatch.setattr(dom, 'listAllSnapshots', lambda flags=0: [stale])
    with pytest.raises(libvirt.libvirtError) as raised:
        list_snapshots(dom)
    assert raised.value.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT


def test_domain_undefined_while_all_are_read_is_skipped(run_module, make_domain, monkeypatch, add_snapshot):
    kept = make_domain('shutoff', prefix='info')
    add_snapshot(kept, 'k', BASE_EPOCH)
    gone = make_domain('shutoff', prefix='info')
    gone_name = gone.name()
    gone.undefine()
    real = libvirt.virConnect.listAllDomains

    def listing(self, flags=0):
        return real(self, flags) + [gone]  # listed just before another client undefined it

    monkeypatch.setattr(libvirt.virConnect, 'listAllDomains', listing)
    result = run_module(snapshot_info, {})
    assert gone_name not in result['domains']
    assert result['domains'][kept.name()]['count'] == 1


FACTS_XML = """<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>96</memory>
  <currentMemory unit='MiB'>80</currentMemory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{directory}/{name}.vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk' snapshot='no'>
      <driver name='qemu' type='raw'/>
      <source file='{directory}/{name}.vdb.raw'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{directory}/{name}.iso'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/nonexistent-{name}/vdc.raw'/>
      <target dev='vdc' bus='virtio'/>
    </disk>
    {channel}
  </devices>
</domain>"""

AGENT_CHANNEL_XML = ("<channel type='unix'><source mode='bind'/>"
                     "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>")


@pytest.fixture
def facts_domain(make_domain, tmp_path):
    """facts_domain(state, channel=True) -> a domain with a qcow2 disk, a raw disk left out of snapshots,
    a CD-ROM, a disk in a directory that does not exist, and (with channel) a guest agent channel."""

    def make(state='running', channel=True):
        return make_domain(state, prefix='facts', xml=lambda name: FACTS_XML.format(
            name=name, directory=tmp_path, channel=AGENT_CHANNEL_XML if channel else ''))

    return make


@pytest.mark.parametrize('state', ['running', 'paused', 'shutoff'])
def test_domain_facts_for_a_preflight(run_module, facts_domain, tmp_path, state):
    dom = facts_domain(state)
    name = dom.name()
    result = run_module(snapshot_info, {'domain': name})

    facts = result['domains'][name]
    assert facts['state'] == state
    assert facts['memory_mib'] == 80  # the current memory, not the maximum
    assert facts['agent_channel'] is True
    assert [d['name'] for d in facts['disks']] == ['vda', 'vdb', 'vdc']  # no CD-ROM
    vda, vdb, vdc = facts['disks']
    assert vda == {'name': 'vda', 'type': 'file', 'format': 'qcow2', 'file': f'{tmp_path}/{name}.vda.qcow2',
                   'snapshot': None, 'free_bytes': vda['free_bytes'],
                   # what libvirt's block info says (the test driver's made-up numbers)
                   'allocation_bytes': dom.blockInfo('vda')[1], 'capacity_bytes': dom.blockInfo('vda')[0]}
    # the local file system under the disk: what statvfs says for unprivileged users
    stats = os.statvfs(tmp_path)
    assert abs(vda['free_bytes'] - stats.f_bavail * stats.f_frsize) < 64 << 20
    assert (vdb['format'], vdb['snapshot']) == ('raw', 'no')
    assert vdc['free_bytes'] is None  # its directory cannot be read
    assert result['libvirt_version'] == '{}.{}.{}'.format(*divmod(libvirt.getVersion() // 1000, 1000),
                                                          libvirt.getVersion() % 1000)


def test_domain_without_agent_channel(run_module, facts_domain):
    dom = facts_domain('shutoff', channel=False)
    assert run_module(snapshot_info, {'domain': dom.name()})['domains'][dom.name()]['agent_channel'] is False


def test_free_space_is_not_read_through_a_remote_uri(run_module, facts_domain, monkeypatch):
    """Through qemu+ssh:// the disk files are the hypervisor's: the controller's file systems say nothing of them."""
    dom = facts_domain('running')
    monkeypatch.setattr(snapshot_info, 'is_local_uri', lambda uri: False)
    facts = run_module(snapshot_info, {'domain': dom.name()})['domains'][dom.name()]
    assert [d['free_bytes'] for d in facts['disks']] == [None, None, None]
    assert facts['state'] == 'running' and facts['disks'][0]['format'] == 'qcow2'


def test_is_local_uri_decides_where_free_space_is_read():
    assert snapshot_info.is_local_uri('qemu:///system')
    assert snapshot_info.is_local_uri('qemu+ssh://root@localhost/system')
    assert not snapshot_info.is_local_uri('qemu+ssh://root@hv1.example.com/system?keyfile=/k&no_tty=1')
    assert not snapshot_info.is_local_uri('qemu+ssh://root@127.0.0.2:2222/system')


def test_libvirt_version_text():
    assert _libvirt.version_text(9000000) == '9.0.0'
    assert _libvirt.version_text(10010002) == '10.10.2'


def test_facts_of_every_domain(run_module, facts_domain):
    running, off = facts_domain('running'), facts_domain('shutoff', channel=False)
    result = run_module(snapshot_info, {})
    assert result['domains'][running.name()]['state'] == 'running'
    assert result['domains'][off.name()]['state'] == 'shutoff'
    assert result['domains'][off.name()]['agent_channel'] is False
    assert result['domains']['test']['state'] == 'running'  # the test driver's own domain


def external_snapshot_xml(dom, name, memory_file, overlay, epoch):
    """An external snapshot with memory of ``dom``'s vda, for REDEFINE (the test driver cannot take one)."""
    root = ET.Element('domainsnapshot')
    ET.SubElement(root, 'name').text = name
    ET.SubElement(root, 'state').text = 'running'
    ET.SubElement(root, 'creationTime').text = str(epoch)
    ET.SubElement(root, 'memory', snapshot='external', file=memory_file)
    disks = ET.SubElement(root, 'disks')
    ET.SubElement(ET.SubElement(disks, 'disk', name='vda', snapshot='external', type='file'), 'source', file=overlay)
    ET.SubElement(disks, 'disk', name='vdb', snapshot='no')
    ET.SubElement(disks, 'disk', name='vdc', snapshot='no')
    root.append(ET.fromstring(dom.XMLDesc(0)))
    return ET.tostring(root, encoding='unicode')


def test_sizes_of_an_external_snapshot_and_the_storage(run_module, facts_domain, tmp_path):
    """The sizes wired into the result: real files in tmp_path, libvirt's block info, the file system's space."""
    dom = facts_domain('running')
    name = dom.name()
    memory, overlay = tmp_path / f'{name}.snap.mem', tmp_path / f'{name}.vda.snap'
    memory.write_bytes(b'\x01' * 3 * 65536)
    overlay.write_bytes(b'\x02' * 65536)
    dom.snapshotCreateXML(external_snapshot_xml(dom, 'snap', str(memory), str(overlay), BASE_EPOCH),
                          libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
    mem_bytes, overlay_bytes = os.stat(memory).st_blocks * 512, os.stat(overlay).st_blocks * 512

    result = run_module(snapshot_info, {'domain': name})
    [snap] = result['snapshots']
    assert {k: snap[k] for k in ('memory_bytes', 'overlay_bytes', 'size_bytes', 'size_exact')} == {
        'memory_bytes': mem_bytes, 'overlay_bytes': overlay_bytes, 'size_bytes': mem_bytes + overlay_bytes,
        'size_exact': True}
    facts = result['domains'][name]
    assert facts['snapshot_bytes'] == mem_bytes + overlay_bytes
    capacity, allocation, _physical = dom.blockInfo('vda', 0)
    assert (facts['disks'][0]['capacity_bytes'], facts['disks'][0]['allocation_bytes']) == (capacity, allocation)
    # tmp_path's file system holds the disks and the snapshot's files; vdc's directory does not exist
    mount = _sizes.mount_point(str(tmp_path))
    stats = os.statvfs(tmp_path)
    assert [s['path'] for s in facts['storage']] == sorted([f'/nonexistent-{name}', mount])
    storage = {s['path']: s for s in facts['storage']}
    assert storage[f'/nonexistent-{name}'] == {'path': f'/nonexistent-{name}', 'pool': None, 'free_bytes': None,
                                               'total_bytes': None, 'snapshot_bytes': 0}
    assert storage[mount]['snapshot_bytes'] == mem_bytes + overlay_bytes
    assert storage[mount]['total_bytes'] == stats.f_blocks * stats.f_frsize
