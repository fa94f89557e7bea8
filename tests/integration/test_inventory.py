# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tier for the inventory plugin kvm.snapshots.guests, on the lab's libvirtd of this run's stack.

Two inventory hypervisors are the one libvirtd of the stack reached by two URIs: ``hvlocal`` by the stack's own URI
(qemu:///system on bookworm, the chroot's socket by qemu+unix on trixie) and ``hvssh`` by qemu+ssh through a private
sshd on a loopback address (tests/lab/sshd.py; on trixie the chroot's sshd, whose logins land in the chroot, so
that its qemu:///system is the same Debian 13 libvirtd). Each owns two shut-off blank domains, told apart by the
entries' own ``include`` globs (the libvirtd is shared with other tests). Nothing boots.

``ansible-inventory --list`` is checked against ``virsh list --all`` and ``virsh snapshot-current``; then the
inventory as the plugin made it drives ``snapshot_now.yml`` (guests; the modules run on each guest's hypervisor:
locally, and over Ansible's SSH login made from the URI) and ``hypervisor_snapshots.yml`` in check mode (the
hypervisors), and virsh checks what they did.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import typing as t

import pytest
import yaml

from test_modules_common import snapshot_names

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / 'playbooks'
ANSIBLE_INVENTORY = str(pathlib.Path(sys.executable).with_name('ansible-inventory')) \
    if pathlib.Path(sys.executable).with_name('ansible-inventory').exists() else 'ansible-inventory'

sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)
import sshd as sshd_tool  # noqa: E402  (tests/lab/sshd.py)

STACK = lab_tool.stack()
ADDRESS = '127.0.0.12'  # hvssh


class Ssh(t.NamedTuple):
    sshd: t.Any
    env: dict[str, str]


@pytest.fixture(scope='module')
def ssh(ansible_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Ssh]:
    """A private sshd on ADDRESS, and the environment of Ansible with an ssh that knows its host key only."""
    work = tmp_path_factory.mktemp('inventory-ssh')
    server = sshd_tool.LoopbackSshd([ADDRESS], root=STACK.root).start()
    try:
        known_hosts = server.known_hosts(work / 'known_hosts', right=[ADDRESS])
        env = dict(ansible_env)
        env.update({'PATH': f'{server.ssh_shim(work / "bin", known_hosts)}{os.pathsep}{env.get("PATH", "")}',
                    'ANSIBLE_SSH_CONTROL_PATH_DIR': str(work / 'cp')})
        yield Ssh(server, env)
    finally:
        server.stop()


@pytest.fixture(scope='module')
def fleet(lab: t.Any) -> dict[str, list[str]]:
    """hypervisor -> its two shut-off blank domains (full names)."""
    return {hv: [lab.blank_domain(f'{hv}-vm{n}', state='shutoff') for n in (1, 2)] for hv in ('hvlocal', 'hvssh')}


def write_source(directory: pathlib.Path, lab: t.Any, ssh: Ssh, mode: str) -> str:
    """The plugin's configuration file, and host_vars beside it (what the playbooks need that no URI says)."""
    directory.mkdir(parents=True, exist_ok=True)
    ssh_uri = (f'qemu+ssh://root@{ADDRESS}:{ssh.sshd.port}/system?no_tty=1&keyfile={ssh.sshd.client_key}')
    config = {
        'plugin': 'kvm.snapshots.guests',
        'connection_mode': mode,
        'hypervisors': [
            {'name': 'hvlocal', 'uri': lab.uri, 'include': [f'{lab.prefix}hvlocal-*']},
            {'name': 'hvssh', 'uri': ssh_uri, 'include': [f'{lab.prefix}hvssh-*']},
        ],
        'parallel': 2,
        'compose': {'kvm_label': 'kvm_hypervisor ~ ":" ~ kvm_domain'},
    }
    path = directory / 'fleet.kvm_guests.yml'
    path.write_text(yaml.safe_dump(config))
    (directory / 'host_vars').mkdir(exist_ok=True)
    # the Python with libvirt-python on the SSH hypervisor (the chroot's on trixie); hypervisor_snapshots.yml
    # takes each hypervisor's domains from kvm_domains (the libvirtd holds others' domains too)
    (directory / 'host_vars' / 'hvssh.yml').write_text(yaml.safe_dump(
        {'ansible_python_interpreter': STACK.hypervisor_python, 'kvm_domains': [f'{lab.prefix}hvssh-*']}))
    (directory / 'host_vars' / 'hvlocal.yml').write_text(yaml.safe_dump({'kvm_domains': [f'{lab.prefix}hvlocal-*']}))
    return str(path)


def inventory_list(source: str, env: dict[str, str]) -> dict[str, t.Any]:
    proc = subprocess.run([ANSIBLE_INVENTORY, '-i', source, '--list'], env=env, capture_output=True, text=True,
                          timeout=300, check=False, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    assert 'WARNING' not in proc.stderr, proc.stderr
    return json.loads(proc.stdout, object_hook=_plain)


def _plain(value: dict[str, t.Any]) -> t.Any:
    """A string as it is: ansible-inventory marks the strings of an inventory plugin as unsafe (never templated)."""
    return value['__ansible_unsafe'] if set(value) == {'__ansible_unsafe'} else value


def virsh_domains(lab: t.Any) -> set[str]:
    """The domains virsh lists that the entries' include globs name (other tests' lab domains share the prefix)."""
    listed = lab.virsh('list', '--all', '--name')
    assert listed.returncode == 0, listed.stderr
    ours = tuple(f'{lab.prefix}{hv}-' for hv in ('hvlocal', 'hvssh'))
    return {name for name in listed.stdout.split() if name.startswith(ours)}


def test_inventory_of_two_hypervisors(lab, fleet, ssh, tmp_path, run_playbook):
    # a snapshot of one domain beforehand, for the snapshot facts
    taken = lab.virsh('snapshot-create-as', fleet['hvssh'][0], 'inv-before')
    assert taken.returncode == 0, taken.stderr
    source = write_source(tmp_path / 'hv', lab, ssh, 'hypervisor')
    listed = inventory_list(source, ssh.env)
    hostvars = listed['_meta']['hostvars']

    # every domain virsh lists (of this test) is a guest, on the hypervisor whose include names it
    assert set(listed['kvm_guests']['hosts']) == virsh_domains(lab) == {d for ds in fleet.values() for d in ds}
    for hv, domains in fleet.items():
        assert set(listed[f'kvm_hv_{hv}']['hosts']) == set(domains)
        for dom in domains:
            guest = hostvars[dom]
            assert guest['kvm_hypervisor'] == hv and guest['kvm_domain'] == dom
            assert guest['kvm_connection_mode'] == 'hypervisor'
            assert guest['kvm_state'] == lab.state(dom) == 'shutoff'
            assert guest['kvm_firmware'] == 'bios' and guest['kvm_memory_mib'] == 64
            assert guest['kvm_agent_channel'] is True
            assert guest['kvm_label'] == f'{hv}:{dom}'
            current = lab.virsh('snapshot-current', '--name', dom).stdout.strip() or None
            assert guest['kvm_current_snapshot'] == current
            assert guest['kvm_snapshot_count'] == len(snapshot_names(lab, dom))
    assert hostvars[fleet['hvssh'][0]]['kvm_snapshot_count'] == 1
    assert 0 <= hostvars[fleet['hvssh'][0]]['kvm_oldest_snapshot_age'] < 600
    assert hostvars[fleet['hvlocal'][0]]['kvm_oldest_snapshot_age'] is None
    assert set(listed['kvm_state_shutoff']['hosts']) >= set(listed['kvm_guests']['hosts'])
    assert set(listed['kvm_firmware_bios']['hosts']) == set(listed['kvm_guests']['hosts'])
    # the hypervisors: the URI each is seen by from itself, and the SSH login taken from the URI
    assert set(listed['hypervisors']['hosts']) == {'hvlocal', 'hvssh'}
    assert hostvars['hvlocal']['kvm_uri'] == lab.uri and hostvars['hvlocal']['ansible_connection'] == 'local'
    assert hostvars['hvssh']['kvm_uri'] == 'qemu:///system'
    login = ('ansible_host', 'ansible_port', 'ansible_user', 'ansible_ssh_private_key_file')
    assert {k: hostvars['hvssh'][k] for k in login} == {
        'ansible_host': ADDRESS, 'ansible_port': ssh.sshd.port, 'ansible_user': 'root',
        'ansible_ssh_private_key_file': str(ssh.sshd.client_key)}
    for dom in fleet['hvlocal']:
        assert hostvars[dom]['kvm_uri'] == lab.uri
    for dom in fleet['hvssh']:
        assert hostvars[dom]['kvm_uri'] == 'qemu:///system'

    # the same in the uri mode: kvm_uri is the URI the plugin read with
    uri_mode = inventory_list(write_source(tmp_path / 'uri', lab, ssh, 'uri'), ssh.env)['_meta']['hostvars']
    assert uri_mode[fleet['hvssh'][1]]['kvm_uri'].startswith(f'qemu+ssh://root@{ADDRESS}:{ssh.sshd.port}/system')
    assert uri_mode[fleet['hvssh'][1]]['kvm_connection_mode'] == 'uri'
    assert uri_mode['hvssh']['kvm_delegate_to'] == 'localhost'

    # snapshot_now.yml over a guest of each hypervisor, as the plugin made them: each snapshot taken on its
    # hypervisor (delegate_to kvm_hypervisor, with its kvm_uri), the other guests untouched
    chosen = {'hvlocal': fleet['hvlocal'][0], 'hvssh': fleet['hvssh'][1]}
    log_mark = len(ssh.sshd.log_text())
    result = run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=source, env=ssh.env, kvm_uri=None, timeout=600,
                          args=['--limit', ','.join(chosen.values())], extra_vars={'kvm_change_id': 'inventory'})
    for hv, domains in fleet.items():
        for dom in domains:
            if dom == chosen[hv]:
                assert f'[{dom} -> {hv}' in result.stdout, result
                assert 'pre-change-inventory' in snapshot_names(lab, dom), dom
            else:
                assert 'pre-change-inventory' not in snapshot_names(lab, dom), dom
    assert ssh.sshd.connections(log_mark).get(ADDRESS, 0) > 0  # Ansible logged in to hvssh

    # hypervisor_snapshots.yml over the hypervisors, in check mode: each predicts its own two domains
    checked = run_playbook(PLAYBOOKS / 'hypervisor_snapshots.yml', inventory=source, env=ssh.env, kvm_uri=None,
                           timeout=600, check=True, extra_vars={'kvm_action': 'snapshot',
                                                                'kvm_snapshot_name': 'inv-nightly'})
    recap = checked.recap()
    assert recap['hvlocal']['failed'] == 0 and recap['hvssh']['failed'] == 0, checked
    for hv, domains in fleet.items():
        assert f'would change: {", ".join(sorted(domains))}' in checked.stdout, checked
        for dom in domains:
            assert 'inv-nightly' not in snapshot_names(lab, dom)
