# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The choice of snapshot kind, on libvirt's test driver with the libvirt version given to the planner.

The planner reads the domain (its XML, snapshots, checkpoints) from libvirt and takes the libvirt
version as a number, so every version of the support matrix is decided here in-process; the
integration tests prove the decisions on the real Debian 12 and Debian 13 stacks.
"""

from __future__ import annotations

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _kind as k
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
from ansible_collections.kvm.snapshots.plugins.module_utils._domain import domain_disks, domain_state
from ansible_collections.kvm.snapshots.tests.unit.helpers import Proxy

V9_0, V9_9, V10_10, V11_3, V11_4 = 9_000_000, 9_009_000, 10_010_000, 11_003_000, 11_004_000

OS_BIOS = "<os><type arch='x86_64'>hvm</type></os>"
OS_EFI_RAW = ("<os firmware='efi'><type arch='x86_64'>hvm</type>"
              "<nvram>/var/lib/libvirt/qemu/nvram/{name}_VARS.fd</nvram></os>")
OS_EFI_QCOW2 = ("<os firmware='efi'><type arch='x86_64'>hvm</type>"
                "<nvram format='qcow2'>/var/lib/libvirt/qemu/nvram/{name}_VARS.qcow2</nvram></os>")
OS_PFLASH_LOADER = ("<os><type arch='x86_64'>hvm</type>"
                    "<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader></os>")


def domain_xml(os_xml, fmt='qcow2', disks=('vda',)):
    def make(name):
        devices = ''.join(f"""<disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>
            <source file='/guest/{name}-{dev}.qcow2'/><target dev='{dev}' bus='virtio'/></disk>""" for dev in disks)
        return (f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
                f"{os_xml.format(name=name)}<devices>{devices}</devices></domain>")
    return make


def plan(dom, version, location='auto', disk_only=False, name='pre', xml=None):
    xml = xml or dom.XMLDesc(0)
    planner = k.KindPlanner(dom, xml, domain_disks(dom, xml), domain_state(dom), version, local=False)
    return planner.plan(name, location, disk_only)


def test_firmware_read_from_the_domain_xml():
    assert k.firmware(domain_xml(OS_BIOS)('a')) == {
        'firmware': 'bios', 'pflash': False, 'nvram': None, 'nvram_format': None}
    assert k.firmware(domain_xml(OS_EFI_RAW)('a')) == {
        'firmware': 'efi', 'pflash': True, 'nvram': '/var/lib/libvirt/qemu/nvram/a_VARS.fd', 'nvram_format': 'raw'}
    assert k.firmware(domain_xml(OS_EFI_QCOW2)('a'))['nvram_format'] == 'qcow2'
    assert k.firmware(domain_xml(OS_PFLASH_LOADER)('a'))['pflash'] is True


@pytest.mark.parametrize('source, expected', [
    ('/images/web1.qcow2', '/images/web1.pre'),
    ('/images/web1.nightly', '/images/web1.pre'),  # the next snapshot of an overlay replaces its suffix
    ('/images/web1', '/images/web1.pre'),
    ('/images.d/web1', '/images.d/web1.pre'),  # a dot in a folder name is not a suffix
])
def test_overlay_names_are_libvirts(source, expected):
    assert k.overlay_path(source, 'pre') == expected


def test_bios_qcow2_gets_internal_on_every_release(make_domain):
    dom = make_domain(xml=domain_xml(OS_BIOS))
    for version in (V9_0, V9_9, V10_10, V11_3, V11_4):
        chosen = plan(dom, version)
        assert (chosen.location, chosen.memory, chosen.warnings) == ('internal', 'internal', [])
        assert chosen.reason == 'internal snapshots work for this domain and libvirt'
    assert plan(dom, V11_4, location='external').location == 'external'


def test_shut_off_domain_gets_a_disk_snapshot(make_domain):
    dom = make_domain(state='shutoff', xml=domain_xml(OS_EFI_RAW))
    chosen = plan(dom, V9_0)  # offline internal snapshots of UEFI guests work (libvirt 9.3 made sure)
    assert (chosen.location, chosen.memory) == ('internal', 'no')


def test_uefi_raw_nvram_running_gets_external_with_memory_where_it_reverts(make_domain):
    dom = make_domain(xml=domain_xml(OS_EFI_RAW, disks=('vda', 'vdb')))
    chosen = plan(dom, V11_4)
    assert (chosen.location, chosen.memory) == ('external', 'external')
    assert 'NVRAM /var/lib/libvirt/qemu/nvram/' in chosen.reason and 'is raw' in chosen.reason
    name = dom.name()
    assert chosen.overlays == [
        {'disk': 'vda', 'file': f'/guest/{name}-vda.pre', 'backing_file': f'/guest/{name}-vda.qcow2'},
        {'disk': 'vdb', 'file': f'/guest/{name}-vdb.pre', 'backing_file': f'/guest/{name}-vdb.qcow2'}]
    assert chosen.memory_file == f'/guest/{name}-vda.pre.memory'


def test_uefi_raw_nvram_on_libvirt_9_0_is_refused_before_anything_is_made(make_domain):
    dom = make_domain(xml=domain_xml(OS_EFI_RAW))
    with pytest.raises(SnapshotError) as raised:
        plan(dom, V9_0)
    msg = raised.value.msg
    assert 'no snapshot that can be reverted can be made' in msg
    assert 'NVRAM' in msg and 'libvirt 9.0.0 cannot revert external snapshots' in msg
    assert 'Nothing was made' in msg
    assert 'qcow2 NVRAM' in msg and '9.9 or later' in msg and 'shut off' in msg
    assert dom.snapshotNum(0) == 0
    # asked for explicitly, the external snapshot is made, with a warning that it cannot be reverted here
    external = plan(dom, V9_0, location='external')
    assert external.location == 'external' and 'cannot revert external snapshots' in external.warnings[0]


def test_uefi_qcow2_nvram_gets_internal_from_10_10(make_domain):
    dom = make_domain(xml=domain_xml(OS_EFI_QCOW2))
    xml = domain_xml(OS_EFI_QCOW2)(dom.name())  # as libvirt 10.10 shows it (the test driver's 9.0 drops format=)
    assert plan(dom, V10_10, xml=xml).location == 'internal'
    older = plan(dom, V9_9, xml=xml)
    assert older.location == 'external' and 'cannot take internal snapshots of a running UEFI guest' in older.reason
    with pytest.raises(SnapshotError, match='an internal snapshot cannot be made'):
        plan(dom, V9_9, location='internal', xml=xml)


def test_raw_disk_gets_external(make_domain):
    dom = make_domain(fmt='raw')
    chosen = plan(dom, V9_9)
    assert chosen.location == 'external' and 'is raw, and an internal snapshot needs every disk in qcow2' in chosen.reason
    with pytest.raises(SnapshotError, match=r'disk vda \(/guest/.*\) is raw'):
        plan(dom, V9_9, location='internal')


def test_disk_only_is_external_without_memory(make_domain):
    dom = make_domain()
    chosen = plan(dom, V11_4, disk_only=True)
    assert (chosen.location, chosen.memory, chosen.memory_file) == ('external', 'no', None)
    assert chosen.reason == 'asked for (disk_only: true)'
    with pytest.raises(SnapshotError, match='always holds its memory'):
        plan(dom, V11_4, location='internal', disk_only=True)


def test_one_kind_per_domain(make_domain, add_snapshot):
    dom = make_domain()
    add_snapshot(dom, 'old-internal', 100)  # the test driver's snapshots are internal
    with pytest.raises(SnapshotError) as raised:
        plan(dom, V11_4, location='external')
    assert 'has internal snapshots (old-internal)' in raised.value.msg
    assert plan(dom, V11_4).location == 'internal'


class _WithExternal(Proxy):
    """A domain of the test driver that also reports external snapshots (the test driver makes none)."""

    def __init__(self, dom, names):
        super().__init__(dom)
        self._names = names

    def listAllSnapshots(self, flags=0):
        if flags & k.LIST_EXTERNAL:
            return [_Named(n) for n in self._names]
        if flags & k.LIST_INTERNAL:
            return []
        return self.wrapped.listAllSnapshots(flags)


class _Named:
    def __init__(self, name):
        self._name = name

    def getName(self):
        return self._name


def test_after_external_snapshots_the_next_ones_are_external_too(make_domain):
    dom = _WithExternal(make_domain(), ['ext-2', 'ext-1'])
    chosen = plan(dom, V11_4)
    assert chosen.location == 'external' and 'has external snapshots (ext-1, ext-2)' in chosen.reason
    with pytest.raises(SnapshotError, match='libvirt before 11.0 loses data'):
        plan(dom, V11_4, location='internal')


def test_overlay_names_longer_than_a_file_name_are_refused(make_domain):
    dom = make_domain(fmt='raw')
    with pytest.raises(SnapshotError, match='longer than 255 bytes'):
        plan(dom, V11_4, name='é' * 125)  # 250 bytes, and the disk's file name before it


def test_existing_overlay_file_is_refused_on_a_local_uri(make_domain, tmp_path):
    def xml(name):
        return (f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>{OS_BIOS}<devices>"
                f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{tmp_path}/d.img'/>"
                "<target dev='vda' bus='virtio'/></disk></devices></domain>")
    dom = make_domain(xml=xml)
    (tmp_path / 'd.pre').write_bytes(b'')
    disks = domain_disks(dom)
    planner = k.KindPlanner(dom, dom.XMLDesc(0), disks, 'running', V11_4, local=True)
    with pytest.raises(SnapshotError, match=f'the file {tmp_path}/d.pre exists already'):
        planner.plan('pre', 'auto', False)
    assert planner.plan('other', 'auto', False).location == 'external'


# preflight_snapshot: the one preflight of a new snapshot (snapshot, and snapshot_revert's safety snapshot)

def test_preflight_reads_the_domain_once_and_plans(make_domain):
    dom = make_domain('running')
    pre = k.preflight_snapshot(dom, 'pre', V9_0, local=False)
    assert pre.state == 'running'
    assert pre.disks == domain_disks(dom)
    assert pre.plan == plan(dom, V9_0)
    assert (pre.plan.location, pre.plan.memory) == ('internal', 'internal')
    disk_only = k.preflight_snapshot(dom, 'pre', V9_9, local=False, disk_only=True)
    assert (disk_only.plan.location, disk_only.plan.memory) == ('external', 'no')


def test_preflight_parses_the_domain_xml_once(make_domain, monkeypatch):
    # its id (the state), the disks, the firmware and the agent channel are read from one tree
    parsed = []
    fromstring = k.ET.fromstring
    monkeypatch.setattr(k.ET, 'fromstring', lambda text, *args: parsed.append(text) or fromstring(text, *args))
    dom = make_domain('running', agent=True)
    pre = k.preflight_snapshot(dom, 'pre', V9_9, local=False, disk_only=True, quiesce=True)
    assert pre.plan.location == 'external'
    assert parsed == [dom.XMLDesc(0)]


def test_firmware_and_disks_from_a_parsed_tree_as_from_the_text(make_domain):
    dom = make_domain('running', xml=domain_xml(OS_EFI_RAW, disks=('vda', 'vdb')))
    xml = dom.XMLDesc(0)
    tree = k.ET.fromstring(xml)
    assert k.firmware(tree) == k.firmware(xml)
    assert domain_disks(dom, tree) == domain_disks(dom, xml) == domain_disks(dom)


def test_preflight_refuses_a_quiesce_that_cannot_work(make_domain):
    with pytest.raises(SnapshotError, match='is shutoff; quiesce needs a running guest'):
        k.preflight_snapshot(make_domain('shutoff', agent=True), 'pre', V9_9, False, disk_only=True, quiesce=True)
    with pytest.raises(SnapshotError, match='has no guest agent channel'):
        k.preflight_snapshot(make_domain('running'), 'pre', V9_9, False, disk_only=True, quiesce=True)
    with_agent = k.preflight_snapshot(make_domain('running', agent=True), 'pre', V9_9, False, disk_only=True,
                                      quiesce=True)
    assert with_agent.plan.location == 'external'


def test_preflight_refuses_what_the_planner_refuses(make_domain):
    dom = make_domain('running', xml=domain_xml(OS_EFI_RAW))
    with pytest.raises(SnapshotError, match='Nothing was made'):
        k.preflight_snapshot(dom, 'pre', V9_0, local=False, location='internal')


def test_an_internal_disk_only_refusal_does_not_suggest_an_upgrade(make_domain):
    # location internal with a running domain and no memory (snapshot_group's freeze: agent): no libvirt
    # release makes that possible, so "upgrade to 9.9" (which makes external snapshots revertable) is no fix
    dom = make_domain('running')
    with pytest.raises(SnapshotError) as raised:
        plan(dom, V9_0, location='internal', disk_only=True)
    assert 'always holds its memory' in raised.value.msg and '9.9' not in raised.value.msg
    with pytest.raises(SnapshotError) as raised:
        plan(make_domain('running', xml=domain_xml(OS_EFI_RAW)), V9_0)
    assert 'upgrade libvirt to 9.9' in raised.value.msg  # location auto: the upgrade would help there
