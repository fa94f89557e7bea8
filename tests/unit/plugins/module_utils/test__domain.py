# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The domain (module_utils/_domain.py): the disks a snapshot covers, read on libvirt's test driver.

Busy domains, interrupted jobs and waiting for idle are in test__faults.py.
"""

from __future__ import annotations

from ansible_collections.kvm.snapshots.plugins.module_utils import _domain as d


# readers, on the test driver (make_domain: tests/unit/conftest.py)

def scratch_and_cdrom_xml(name):
    """A shut-off domain with a qcow2 disk, a raw scratch disk left out of snapshots and a CD-ROM."""
    return f"""<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='/guest/{name}.img'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk' snapshot='no'>
      <driver name='qemu' type='raw'/><source file='/guest/{name}-scratch.raw'/><target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='/guest/install.iso'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
  </devices>
</domain>"""


def test_domain_disks_skips_cdroms(make_domain):
    dom = make_domain('shutoff', xml=scratch_and_cdrom_xml)
    disks = d.domain_disks(dom)
    assert [(d['name'], d['format'], d['snapshot']) for d in disks] == [('vda', 'qcow2', None), ('vdb', 'raw', 'no')]
    assert disks[0]['file'] == f'/guest/{dom.name()}.img'
