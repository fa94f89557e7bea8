# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Sizes of snapshots, disks and storage: real files in tmp_path (qcow2 images QEMU saved VM state into),
libvirt's test driver for block info and storage pools (what a remote URI gives)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _sizes as s

needs_qemu = pytest.mark.skipif(shutil.which('qemu-img') is None or shutil.which('qemu-system-x86_64') is None,
                                reason='qemu-img and qemu-system-x86_64 are needed')


class Warnings(list):
    def __call__(self, message):
        self.append(message)


def reader(conn, local=True):
    warnings = Warnings()
    return s.SizeReader(conn, local, warnings), warnings


def internal(name, memory='internal'):
    return {'name': name, 'location': 'internal', 'memory': memory, 'memory_file': None,
            'disks': [{'name': 'vda', 'snapshot': 'internal', 'file': None, 'backing_file': None}]}


def external(name, memory_file=None, overlays=()):
    return {'name': name, 'location': 'external', 'memory': 'external' if memory_file else 'no',
            'memory_file': memory_file,
            'disks': [{'name': f'vd{chr(97 + i)}', 'snapshot': 'external', 'file': path, 'backing_file': f'{path}.b'}
                      for i, path in enumerate(overlays)]}


def write(path, data_bytes, apparent=0):
    """A file with ``data_bytes`` written at its start and a hole up to ``apparent`` bytes."""
    with open(path, 'wb') as handle:
        handle.write(b'\x5a' * data_bytes)
        if apparent > data_bytes:
            handle.truncate(apparent)
    return str(path)


@needs_qemu
def test_internal_memory_is_the_vm_state_qemu_recorded(conn, tmp_path):
    image = str(tmp_path / 'vda.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '16M'], check=True)
    subprocess.run(['qemu-img', 'snapshot', '-c', 'off', image], check=True)
    subprocess.run(['qemu-system-x86_64', '-machine', 'none', '-nodefaults', '-display', 'none', '-S', '-monitor',
                    'stdio', '-drive', f'file={image},if=none,id=d0,format=qcow2'],
                   input='savevm on\nquit\n', capture_output=True, text=True, check=True, timeout=60)
    info = json.loads(subprocess.run(['qemu-img', 'info', '--force-share', '--output=json', image],
                                     capture_output=True, text=True, check=True).stdout)
    vm_state = {snap['name']: snap['vm-state-size'] for snap in info['snapshots']}
    assert vm_state['on'] > 0
    sizes, warnings = reader(conn)

    assert s.snapshot_sizes(internal('on'), [image], sizes) == (
        {'memory_bytes': vm_state['on'], 'overlay_bytes': None, 'size_bytes': vm_state['on'], 'size_exact': False},
        {image: vm_state['on']})
    # disk-only: no VM state; the clusters it alone holds are not counted, so 0 is a lower bound
    assert s.snapshot_sizes(internal('off', memory='no'), [image], sizes) == (
        {'memory_bytes': None, 'overlay_bytes': None, 'size_bytes': 0, 'size_exact': False}, {})
    # a second image (a second disk) with the snapshot but no VM state: the sum stays QEMU's number
    other = str(tmp_path / 'vdb.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', other, '16M'], check=True)
    subprocess.run(['qemu-img', 'snapshot', '-c', 'on', other], check=True)
    assert s.snapshot_sizes(internal('on'), [image, other], sizes)[0]['memory_bytes'] == vm_state['on']
    # a name no image holds (an inconsistent record): unknown
    assert s.snapshot_sizes(internal('gone'), [image], sizes)[0]['memory_bytes'] is None
    assert warnings == []


def test_unreadable_image_is_a_warning_and_null(conn, tmp_path):
    sizes, warnings = reader(conn)
    missing = str(tmp_path / 'missing.qcow2')
    not_qcow2 = write(tmp_path / 'raw.img', 4096)
    for image in (missing, not_qcow2):
        assert s.snapshot_sizes(internal('on'), [image], sizes)[0] == {
            'memory_bytes': None, 'overlay_bytes': None, 'size_bytes': None, 'size_exact': False}
    s.snapshot_sizes(internal('again'), [missing], sizes)
    assert len(warnings) == 2  # once per image, however many snapshots ask
    assert missing in warnings[0] and 'null' in warnings[0]
    assert 'not a qcow2 image' in warnings[1]


def test_remote_internal_memory_is_unknown(conn, tmp_path):
    sizes, warnings = reader(conn, local=False)
    assert s.snapshot_sizes(internal('on'), [str(tmp_path / 'vda.qcow2')], sizes)[0]['memory_bytes'] is None
    assert warnings == []  # nothing to read through a remote URI: no reason to warn


def test_external_sizes_are_allocated_bytes(conn, tmp_path):
    memory = write(tmp_path / 'web.snap.mem', 3 * 65536, apparent=64 << 20)  # sparse: allocation, not length
    overlay_a = write(tmp_path / 'web.snap.vda', 65536)
    overlay_b = write(tmp_path / 'web.snap.vdb', 0, apparent=1 << 20)
    allocated = {p: os.stat(p).st_blocks * 512 for p in (memory, overlay_a, overlay_b)}
    assert allocated[memory] < os.stat(memory).st_size
    sizes, warnings = reader(conn)

    result, held = s.snapshot_sizes(external('snap', memory, [overlay_a, overlay_b]), [], sizes)
    assert result == {'memory_bytes': allocated[memory], 'overlay_bytes': allocated[overlay_a] + allocated[overlay_b],
                      'size_bytes': sum(allocated.values()), 'size_exact': True}
    assert held == allocated
    # disk-only external
    result, _held = s.snapshot_sizes(external('disk', None, [overlay_a]), [], sizes)
    assert result == {'memory_bytes': None, 'overlay_bytes': allocated[overlay_a], 'size_bytes': allocated[overlay_a],
                      'size_exact': True}
    assert warnings == []


def test_external_with_a_missing_file_is_a_lower_bound(conn, tmp_path):
    overlay = write(tmp_path / 'x.vda', 65536)
    gone = str(tmp_path / 'x.vdb')
    sizes, warnings = reader(conn)
    result, held = s.snapshot_sizes(external('x', str(tmp_path / 'x.mem'), [overlay, gone]), [], sizes)
    assert result == {'memory_bytes': None, 'overlay_bytes': None, 'size_bytes': os.stat(overlay).st_blocks * 512,
                      'size_exact': False}
    assert held == {overlay: os.stat(overlay).st_blocks * 512}
    assert len(warnings) == 2 and all('null' in w for w in warnings)


@pytest.fixture
def pool_volumes(conn):
    """pool_volumes(name, capacity, allocation) -> path of a volume in the test driver's default pool."""
    pool = conn.storagePoolLookupByName('default-pool')
    made = []

    def make(name, capacity, allocation):
        volume = pool.createXML(f'<volume><name>{name}</name><capacity>{capacity}</capacity>'
                                f'<allocation>{allocation}</allocation></volume>', 0)
        made.append(volume)
        return volume.path()

    yield make
    for volume in made:
        volume.delete(0)


def test_remote_files_through_the_storage_pool(conn, pool_volumes):
    memory = pool_volumes('r.mem', 1 << 30, 300 << 20)
    overlay = pool_volumes('r.vda', 10 << 30, 2 << 20)
    sizes, warnings = reader(conn, local=False)

    result, held = s.snapshot_sizes(external('r', memory, [overlay, '/elsewhere/r.vdb']), [], sizes)
    assert result == {'memory_bytes': 300 << 20, 'overlay_bytes': None, 'size_bytes': (300 << 20) + (2 << 20),
                      'size_exact': False}  # the file outside any pool: unknown
    _state, capacity, _allocation, available = conn.storagePoolLookupByName('default-pool').info()
    storage = s.storage_summary([memory, overlay, '/elsewhere/r.vdb'], held, sizes)
    assert storage == [
        {'path': '/default-pool', 'pool': 'default-pool', 'free_bytes': available, 'total_bytes': capacity,
         'snapshot_bytes': (300 << 20) + (2 << 20)},
        {'path': '/elsewhere', 'pool': None, 'free_bytes': None, 'total_bytes': None, 'snapshot_bytes': 0},
    ]
    assert warnings == []


def test_local_storage_is_the_file_system(conn, tmp_path):
    disk = write(tmp_path / 'vda.qcow2', 65536)
    overlay = write(tmp_path / 'vda.snap', 8192)
    sizes, warnings = reader(conn)
    storage = s.storage_summary([disk, overlay, '/no/such/dir/file'], {overlay: 8192}, sizes)
    stats = os.statvfs(tmp_path)
    mount = s.mount_point(str(tmp_path))
    assert os.path.ismount(mount) and str(tmp_path).startswith(mount)
    by_path = {entry['path']: entry for entry in storage}
    assert by_path[mount]['total_bytes'] == stats.f_blocks * stats.f_frsize
    assert abs(by_path[mount]['free_bytes'] - stats.f_bavail * stats.f_frsize) < 64 << 20
    assert by_path[mount]['snapshot_bytes'] == 8192
    assert by_path['/no/such/dir'] == {'path': '/no/such/dir', 'pool': None, 'free_bytes': None,
                                       'total_bytes': None, 'snapshot_bytes': 0}
    assert warnings == []


def test_block_info_and_its_failure(conn, make_domain):
    dom = make_domain('running')
    sizes, warnings = reader(conn)
    capacity, allocation, _physical = dom.blockInfo('vda', 0)
    assert sizes.block_info(dom, {'name': 'vda', 'file': f'/guest/{dom.name()}.img'}) == (capacity, allocation)
    assert sizes.block_info(dom, {'name': 'vdz', 'file': '/guest/none.img'}) == (None, None)
    assert sizes.block_info(dom, {'name': 'hdc', 'file': None}) == (None, None)  # an empty drive: no question
    assert len(warnings) == 1 and 'vdz' in warnings[0] and dom.name() in warnings[0]
    # a domain a job holds (an internal snapshot being taken): not asked, since libvirt would wait for the job
    assert sizes.block_info(dom, {'name': 'vda', 'file': f'/guest/{dom.name()}.img'}, busy=True) == (None, None)
    assert len(warnings) == 2 and 'busy' in warnings[1] and dom.name() in warnings[1]


def test_domain_files_each_once():
    disks = [{'type': 'file', 'file': '/i/web.qcow2'}, {'type': 'network', 'file': 'pool/vol'},
             {'type': 'file', 'file': None}]
    snaps = [external('a', '/i/a.mem', ['/i/web.a']), internal('b')]
    snaps[0]['disks'][0]['backing_file'] = '/i/web.qcow2'
    assert s.domain_files(disks, snaps) == ['/i/web.qcow2', '/i/a.mem', '/i/web.a']


def test_mount_point_of_root():
    assert s.mount_point('/') == '/'
    assert os.path.ismount(s.mount_point('/proc/self'))


def test_reader_is_libvirt_only_through_the_connection(conn):
    """The remote reader asks libvirt only: a path libvirt does not know is None without touching the file."""
    sizes, _warnings = reader(conn, local=False)
    assert sizes.allocated_bytes('/etc/hostname') is None
    assert reader(conn)[0].allocated_bytes('/etc/hostname') == os.stat('/etc/hostname').st_blocks * 512
    with pytest.raises(libvirt.libvirtError):
        conn.storageVolLookupByPath('/etc/hostname')
