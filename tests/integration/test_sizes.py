# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sizes snapshot_info reports, checked against qemu-img, virsh, stat and df on the stack's real libvirt.

Cheap on purpose: blank SeaBIOS domains (nothing to boot, they idle and write nothing, so the numbers hold
still between the module's read and the independent one), made running for the snapshots with memory, which
are taken with virsh; the module reads them while the domains run.
"""

from __future__ import annotations

import json
import os
import subprocess

import yaml

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent  # noqa: F401  # pylint: disable=unused-import

PLAYBOOK = [{
    'name': 'Read the sizes',
    'hosts': 'localhost',
    'gather_facts': False,
    'tasks': [
        {'name': 'Read each domain', 'kvm.snapshots.snapshot_info': {'domain': '{{ item }}', 'uri': '{{ kvm_uri }}'},
         'loop': '{{ doms }}', 'register': 'info'},
        {'name': 'Keep the results',
         'ansible.builtin.copy': {'content': '{{ info.results | to_json }}', 'dest': '{{ out }}', 'mode': '0600'}},
    ],
}]


def domblkinfo(independent, dom, disk):  # noqa: F811
    """``virsh domblkinfo DOM DISK --bytes``: Capacity, Allocation, Physical."""
    out = independent.virsh('domblkinfo', dom, disk).stdout
    return {k.strip(): int(v) for k, v in (line.split(':', 1) for line in out.splitlines() if ':' in line)}


def df(path):
    """``df -B1 --output=target,size,avail PATH``: the mount point, its size and what is free (GNU df)."""
    out = subprocess.run(['df', '-B1', '--output=target,size,avail', path], capture_output=True, text=True,
                         check=True).stdout.splitlines()[1].split()
    return out[0], int(out[1]), int(out[2])


def allocated(path):
    """``stat -c %b*%B``: the bytes a file takes on its file system."""
    blocks, unit = subprocess.run(['stat', '-c', '%b %B', path], capture_output=True, text=True,
                                  check=True).stdout.split()
    return int(blocks) * int(unit)


def test_sizes_of_internal_and_external_snapshots(blank, independent, run_playbook, tmp_path):  # noqa: F811
    run_dir = independent.lab.run_dir
    internal = blank('sizes-int')  # running, SeaBIOS, one qcow2 disk
    external = blank('sizes-ext')
    broken = blank('sizes-gone', state='shutoff')
    int_disk = independent.lab.disk_paths(internal)[0]
    ext_disk = independent.lab.disk_paths(external)[0]
    independent.virsh('snapshot-create-as', internal, 'with-memory', '--memspec', 'snapshot=internal',
                      '--diskspec', 'vda,snapshot=internal')
    memory_file, overlay = f'{run_dir}/{external}.ext.mem', f'{run_dir}/{external}.vda.ext'
    independent.virsh('snapshot-create-as', external, 'ext', '--memspec', f'file={memory_file},snapshot=external',
                      '--diskspec', f'vda,snapshot=external,file={overlay}')
    independent.virsh('snapshot-create-as', broken, 'off')  # shut off: internal, disks only
    os.unlink(independent.lab.disk_paths(broken)[0])  # an image that cannot be read: reported, not fatal
    out = tmp_path / 'info.json'
    playbook = tmp_path / 'sizes.yml'
    playbook.write_text(yaml.safe_dump(PLAYBOOK))
    run = run_playbook(playbook, {'doms': [internal, external, broken], 'out': str(out)})
    results = {r['item']: r for r in json.loads(out.read_text())}
    assert all(not r.get('failed') for r in results.values())

    # internal with memory: the VM state size QEMU recorded, as qemu-img reads it (shared, the domain runs)
    info = independent.image_info(int_disk)
    vm_state = {s['name']: s['vm-state-size'] for s in info['snapshots']}
    snaps = {s['name']: s for s in results[internal]['snapshots']}
    assert vm_state['with-memory'] > 0
    assert snaps['with-memory']['memory_bytes'] == vm_state['with-memory']
    assert snaps['with-memory']['size_bytes'] == vm_state['with-memory']
    assert (snaps['with-memory']['overlay_bytes'], snaps['with-memory']['size_exact']) == (None, False)
    facts = results[internal]['domains'][internal]
    disk = facts['disks'][0]
    blk = domblkinfo(independent, internal, 'vda')
    assert disk['capacity_bytes'] == blk['Capacity'] == info['virtual-size']
    assert disk['allocation_bytes'] == blk['Allocation']
    assert facts['snapshot_bytes'] == vm_state['with-memory']

    # external with memory: allocated bytes of the memory file and of the overlay (stat)
    snap = results[external]['snapshots'][0]
    assert snap['memory_file'] == memory_file and snap['disks'][0]['file'] == overlay
    assert snap['memory_bytes'] == allocated(memory_file) > 0
    assert snap['overlay_bytes'] == allocated(overlay) > 0
    assert (snap['size_bytes'], snap['size_exact']) == (allocated(memory_file) + allocated(overlay), True)
    facts = results[external]['domains'][external]
    assert facts['disks'][0]['file'] == overlay
    blk = domblkinfo(independent, external, 'vda')
    assert facts['disks'][0]['capacity_bytes'] == blk['Capacity'] == independent.image_info(overlay)['virtual-size']
    assert facts['disks'][0]['allocation_bytes'] == blk['Allocation']
    assert facts['snapshot_bytes'] == snap['size_bytes']
    # the storage: the file system of the lab's run directory, as df sees it
    target, size, avail = df(run_dir)
    assert [s['path'] for s in facts['storage']] == [target]
    storage = facts['storage'][0]
    assert storage['total_bytes'] == size
    assert abs(storage['free_bytes'] - avail) < 256 << 20  # others write on the same file system meanwhile
    assert storage['snapshot_bytes'] == snap['size_bytes']
    assert ext_disk in [s['disks'][0]['backing_file'] for s in results[external]['snapshots']]

    # the image that is gone: a warning and null sizes, the task did not fail
    gone = results[broken]['domains'][broken]['disks'][0]
    assert (gone['allocation_bytes'], gone['capacity_bytes']) == (None, None)
    # its internal disk-only snapshot: no VM state, and the clusters it alone holds are not counted
    [off] = results[broken]['snapshots']
    assert independent.snapshot_info(broken, 'off')['Location'] == 'internal'
    assert (off['memory_bytes'], off['overlay_bytes'], off['size_bytes'], off['size_exact']) == (None, None, 0, False)
    shown = ' '.join(run.stdout.split() + run.stderr.split())  # the warning as Ansible prints it (wrapped)
    assert f'Cannot read the size of disk vda ({independent.lab.run_dir}/{broken}.vda.qcow2) of domain "{broken}"' \
        in shown, shown
