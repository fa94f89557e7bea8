# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's chroot stack itself (KSLAB_STACK=trixie: Debian 13's libvirt 11.3, QEMU 10.0, OVMF).

* The lab's guest boots to its agent with each firmware the lab makes (SeaBIOS; OVMF with a raw NVRAM; OVMF with
  a qcow2 NVRAM), checked from inside the guest (/sys/firmware/efi) and with qemu-img (the NVRAM's format).
* kvm_connection_mode=hypervisor on that stack: Ansible logs in over SSH to the chroot's own sshd, so the modules
  run inside the chroot with its Python 3.13 and python3-libvirt and reach its libvirtd by qemu:///system. The
  result is read with virsh through the chroot's socket from this machine.

On the bookworm stack the same connection mode is covered by test_remote.py; these tests are skipped there.
"""

from __future__ import annotations

import json
import pathlib
import sys
import typing as t

import pytest

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, snapshot_names  # noqa: F401  # pylint: disable=unused-import

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)
import sshd as sshd_tool  # noqa: E402  (tests/lab/sshd.py)

STACK = lab_tool.stack()
#: the chroot's sshd listens here (test_remote.py uses 127.0.0.2 to 127.0.0.7)
STACK_ADDRESS = '127.0.0.8'

pytestmark = pytest.mark.skipif(STACK.root is None, reason='tests the chroot stack (KSLAB_STACK=trixie)')


@pytest.mark.parametrize('firmware', lab_tool.FIRMWARES)
def test_guest_boots_with_each_firmware(lab, firmware):
    """A guest per firmware reaches its guest agent; UEFI guests see EFI and have the NVRAM format asked for."""
    # a cold boot: the test is about booting with each firmware, not about a guest restored from a saved one
    dom = lab.guest_domain(f'fw-{firmware}', firmware=firmware, boot='cold')
    try:
        lab.wait_agent(dom)
        assert lab.firmware(dom) == firmware
        rc, out, err = lab.guest_exec(dom, ['cat', '/etc/os-release'])
        assert rc == 0 and 'bookworm' in out, (rc, out, err)
        rc, _out, _err = lab.guest_exec(dom, ['test', '-d', '/sys/firmware/efi'])
        assert rc == (1 if firmware == 'bios' else 0), firmware
        if firmware != 'bios':
            info = json.loads(lab_tool._run(['qemu-img', 'info', '-U', '--output=json',  # pylint: disable=protected-access
                                             lab.nvram_path(dom)]).stdout)
            assert info['format'] == {'efi': 'raw', 'efi-qcow2': 'qcow2'}[firmware]
    finally:
        lab.remove(dom)


@pytest.mark.parametrize('firmware', lab_tool.FIRMWARES)
def test_blank_domain_with_each_firmware(lab, blank, firmware):
    """Blank domains start with each firmware; libvirt reports the NVRAM the lab asked for, in that format."""
    dom = blank(f'blank-{firmware}', firmware=firmware)
    assert lab.state(dom) == 'running'
    assert lab.firmware(dom) == firmware
    nvram = lab.nvram_path(dom)
    if firmware == 'bios':
        assert nvram is None
    else:
        assert nvram == f'{lab.run_dir}/{dom}.nvram.{"fd" if firmware == "efi" else "qcow2"}'
        info = json.loads(lab_tool._run(['qemu-img', 'info', '-U', '--output=json', nvram]).stdout)  # pylint: disable=protected-access
        assert info['format'] == {'efi': 'raw', 'efi-qcow2': 'qcow2'}[firmware]


@pytest.fixture(scope='module')
def stack_sshd() -> t.Iterator[t.Any]:
    """The chroot's own sshd on STACK_ADDRESS (root logs in with the key it made)."""
    server = sshd_tool.LoopbackSshd([STACK_ADDRESS], root=STACK.root).start()
    try:
        yield server
    finally:
        server.stop()


def test_modules_run_on_the_chroot_hypervisor(lab, blank, stack_sshd, ansible_env, run_playbook, tmp_path):
    """snapshot_info and snapshot run inside the chroot (Python 3.13, its python3-libvirt, qemu:///system there):
    the snapshot is seen by virsh through the chroot's socket, and the host's own libvirtd has no such domain."""
    dom = blank('hv-vm')
    known_hosts = stack_sshd.known_hosts(tmp_path / 'known_hosts', right=[STACK_ADDRESS])
    env = dict(ansible_env)
    env['PATH'] = f'{stack_sshd.ssh_shim(tmp_path / "bin", known_hosts)}:{env.get("PATH", "")}'
    env['ANSIBLE_SSH_CONTROL_PATH_DIR'] = str(tmp_path / 'cp')
    inventory = tmp_path / 'hypervisor.json'
    inventory.write_text(json.dumps({'all': {'children': {'hypervisors': {'hosts': {'trixie': {
        'ansible_connection': 'ssh', 'ansible_host': STACK_ADDRESS, 'ansible_port': stack_sshd.port,
        'ansible_user': 'root', 'ansible_ssh_private_key_file': str(stack_sshd.client_key),
        'ansible_python_interpreter': STACK.hypervisor_python}}}}}}))
    result_file = tmp_path / 'result.json'
    run_playbook('stack_hypervisor.yml', inventory=str(inventory), env=env, kvm_uri=None,
                 extra_vars={'stack_domain': dom, 'stack_snapshot': 'on-the-hypervisor',
                             'stack_result': str(result_file)})
    seen = json.loads(result_file.read_text())

    assert seen['executable'] == STACK.hypervisor_python
    assert (seen['python']['major'], seen['python']['minor']) == (3, 13), seen['python']
    assert seen['distribution_major_version'] == '13'
    assert seen['info']['libvirt_version'] == '.'.join(map(str, lab_tool.libvirt_version(STACK.uri)))
    assert seen['made']['changed'] is True
    assert stack_sshd.connections()[STACK_ADDRESS] > 0
    # independent: virsh through the chroot's socket from this machine
    assert snapshot_names(lab, dom) == {'on-the-hypervisor'}
    host = lab_tool._run(['virsh', '-c', lab_tool.DEFAULT_URI, 'dominfo', dom], check=False)  # pylint: disable=protected-access
    assert host.returncode != 0 and 'failed to get domain' in host.stderr, host
