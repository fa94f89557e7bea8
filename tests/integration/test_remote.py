# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tier for remote hypervisors: over SSH, and by remote libvirt URI.

A private sshd (tests/lab/sshd.py) listens on loopback addresses only, with a key made here. Three
inventory hypervisors, hv1 to hv3, are 127.0.0.2 to 127.0.0.4 at its port: distinct hosts to Ansible
and to libvirt's ssh transport, all on this machine and its one libvirtd. Each hypervisor owns its own
domains (``<prefix>hv1-vm1``, ...). The fleet is the guests of those domains.

* kvm_connection_mode=hypervisor: Ansible logs in to each hypervisor over SSH and the modules run there
  (delegate_to), with the Python that has libvirt-python.
* kvm_connection_mode=uri: the same inventory; the modules run on the controller and reach each
  hypervisor by ``qemu+ssh://root@127.0.0.X:PORT/system?no_tty=1&keyfile=...`` made by the roles from
  the hypervisor's inventory entry. The hypervisors' Python is then one without libvirt-python
  (/usr/bin/python3 of Debian): nothing may run there.

Host keys are checked strictly against a known_hosts file made here: an ``ssh`` shim first in PATH
(sshd.py) gives every ssh client of the run that file, as ``~/.ssh/config`` would, without touching
the user's own ssh files. Results are checked with virsh and qemu-img, and the sshd log shows which
addresses were logged in to.

On the trixie stack (KSLAB_STACK=trixie) the sshd is the chroot's own (tests/lab/sshd.py with ``root``): a login
lands inside the chroot, whose Python 3.13 has python3-libvirt and whose qemu:///system is Debian 13's libvirtd;
the Python without the binding is a venv the lab made there.
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
import socket
import subprocess
import sys
import typing as t

import pytest

from test_modules_common import current_snapshot, snapshot_names

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / 'playbooks'
TARGETS = pathlib.Path(__file__).resolve().parent / 'targets'

sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)
import sshd as sshd_tool  # noqa: E402  (tests/lab/sshd.py)

STACK = lab_tool.stack()

# inventory hypervisor -> its loopback address
HYPERVISORS = {'hv1': '127.0.0.2', 'hv2': '127.0.0.3', 'hv3': '127.0.0.4'}
BAD_HOST_KEY = '127.0.0.5'      # listed in known_hosts with another key
UNKNOWN_HOST_KEY = '127.0.0.6'  # not in known_hosts
BLACK_HOLE = '127.0.0.7'        # a listener that never answers (not sshd)
# the hypervisors' Python with libvirt-python (bookworm: this one; trixie: the chroot's /usr/bin/python3)
HYPERVISOR_PYTHON = STACK.hypervisor_python
# a Python there without it (bookworm: Debian's own /usr/bin/python3; trixie: a venv in the chroot), checked by
# the fixture
PYTHON_WITHOUT_LIBVIRT = STACK.python_without_libvirt
# power state of the domains of every hypervisor
VMS = {'vm1': 'running', 'vm2': 'shutoff'}


class Remote(t.NamedTuple):
    sshd: t.Any
    known_hosts: pathlib.Path
    env: dict[str, str]


@pytest.fixture(scope='module')
def remote(ansible_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Remote]:
    """The private sshd, the known_hosts of the test and the environment of ansible-playbook (ssh shim in PATH)."""
    inside = [] if STACK.root is None else ['chroot', STACK.root]
    if subprocess.run(inside + [PYTHON_WITHOUT_LIBVIRT, '-c', 'import libvirt'], capture_output=True,
                      check=False).returncode == 0:
        pytest.skip(f'{PYTHON_WITHOUT_LIBVIRT} has libvirt-python: no Python without it to show the missing binding')
    work = tmp_path_factory.mktemp('remote')
    server = sshd_tool.LoopbackSshd(list(HYPERVISORS.values()) + [BAD_HOST_KEY, UNKNOWN_HOST_KEY],
                                    root=STACK.root).start()
    try:
        known_hosts = server.known_hosts(work / 'known_hosts', right=HYPERVISORS.values(), wrong=[BAD_HOST_KEY])
        shim = server.ssh_shim(work / 'bin', known_hosts)
        env = dict(ansible_env)
        env.update({
            'PATH': f'{shim}{os.pathsep}{env.get("PATH", "")}',
            # Ansible's ControlPersist sockets of this test stay in the test's own directory
            'ANSIBLE_SSH_CONTROL_PATH_DIR': str(work / 'cp'),
        })
        yield Remote(server, known_hosts, env)
    finally:
        server.stop()


@pytest.fixture(scope='module')
def fleet(lab: t.Any) -> dict[str, str]:
    """Two blank domains per hypervisor, one running, one shut off: guest name (hv1-vm1) -> domain."""
    return {f'{hv}-{vm}': lab.blank_domain(f'{hv}-{vm}', state=state)
            for hv in HYPERVISORS for vm, state in VMS.items()}


def hypervisor_vars(remote: Remote, address: str, python: str = HYPERVISOR_PYTHON) -> dict[str, t.Any]:
    return {
        'ansible_connection': 'ssh',
        'ansible_host': address,
        'ansible_port': remote.sshd.port,
        'ansible_user': 'root',
        'ansible_ssh_private_key_file': str(remote.sshd.client_key),
        'ansible_python_interpreter': python,
    }


def write_inventory(path: pathlib.Path, remote: Remote, guests: dict[str, dict[str, t.Any]],
                    hypervisors: dict[str, dict[str, t.Any]]) -> str:
    """Guests (local connection: blank domains have no network) and the hypervisors they name."""
    inventory = {'all': {'children': {
        'hypervisors': {'hosts': hypervisors},
        'kvm_guests': {'hosts': guests,
                       'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}},
    }}}
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    return str(path)


def fleet_inventory(path: pathlib.Path, remote: Remote, fleet: dict[str, str], hypervisor_python: str) -> str:
    return write_inventory(
        path, remote,
        guests={guest: {'kvm_domain': dom, 'kvm_hypervisor': guest.split('-')[0]} for guest, dom in fleet.items()},
        hypervisors={hv: hypervisor_vars(remote, address, hypervisor_python) for hv, address in HYPERVISORS.items()})


@pytest.fixture
def run(run_playbook: t.Callable[..., t.Any], remote: Remote) -> t.Callable[..., t.Any]:
    """run_playbook with the remote environment and no kvm_uri of its own: the roles choose it."""
    return functools.partial(run_playbook, env=remote.env, kvm_uri=None, timeout=600)


@pytest.mark.parametrize('mode', ['hypervisor', 'uri'])
def test_fleet_guarded_change(mode, lab, fleet, remote, tmp_path, run):
    """guarded_change.yml over the fleet of three hypervisors, 6 forks, in one connection mode; one guest breaks.

    The broken guest is rolled back (its pre-change snapshot current, its broken state kept as the safety
    snapshot, its power state back); the others keep their change and lose their pre-change snapshot. Then
    cleanup_now.yml, in the same mode, removes what the roles left. All checked with virsh and qemu-img.
    """
    broken = {'hypervisor': 'hv2-vm1', 'uri': 'hv3-vm2'}[mode]
    change = f'remote-{mode}'
    # with the URI mode nothing may run on the hypervisors: give them a Python without libvirt-python
    inventory = fleet_inventory(tmp_path / 'fleet.yml', remote, fleet,
                                HYPERVISOR_PYTHON if mode == 'hypervisor' else PYTHON_WITHOUT_LIBVIRT)
    states = {guest: lab.state(dom) for guest, dom in fleet.items()}
    assert all(snapshot_names(lab, dom) == set() for dom in fleet.values())
    log_mark = len(remote.sshd.log_text())

    result = run(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2, args=['--forks', '6'],
                 extra_vars={'kvm_connection_mode': mode, 'kvm_change_tasks': str(TARGETS / 'remote_fleet' / 'change.yml'),
                             'kvm_change_id': change, 'remote_break': broken, 'kvm_serial': ['100%'],
                             'kvm_snapshot_jobs': 6, 'rollback_wait_for': 'none'})

    recap = result.recap()
    assert recap[broken]['failed'] == 1 and recap[broken]['rescued'] == 1, result
    for guest in fleet:
        if guest != broken:
            assert recap[guest]['failed'] == 0 and recap[guest]['rescued'] == 0, result
        assert recap[guest]['unreachable'] == 0, result
    assert f'The change failed on {broken}' in result.stdout
    # where the modules ran: the guest's hypervisor over SSH, or the controller
    for guest in fleet:
        where = 'localhost' if mode == 'uri' else guest.split('-')[0]
        assert f'[{guest} -> {where}' in result.stdout, result
    # every hypervisor address was logged in to (by Ansible, or by libvirt's ssh transport)
    logins = remote.sshd.connections(log_mark)
    assert all(logins[address] > 0 for address in HYPERVISORS.values()), logins

    for guest, dom in fleet.items():
        assert lab.state(dom) == states[guest], guest
        disk = lab.disk_paths(dom)[0]
        if guest == broken:
            expected = {f'pre-change-{change}', f'rollback-safety-{change}'}
            assert snapshot_names(lab, dom) == expected
            assert current_snapshot(lab, dom) == f'pre-change-{change}'
            assert set(lab.qemu_img_snapshots(disk)) == expected
        else:
            assert snapshot_names(lab, dom) == set(), guest
            assert lab.qemu_img_snapshots(disk) == [], guest

    cleaned = run(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, args=['--forks', '6'],
                  extra_vars={'kvm_connection_mode': mode})
    assert f'{fleet[broken]}: deleted ' in cleaned.stdout
    assert all(snapshot_names(lab, dom) == set() for dom in fleet.values())
    assert lab.qemu_img_snapshots(lab.disk_paths(fleet[broken])[0]) == []


def test_application_across_two_hypervisors_in_uri_mode(lab, fleet, remote, tmp_path, run):
    """An application with a guest on hv1 and one on hv2, kvm_connection_mode=uri, the hypervisors' Python without
    libvirt-python (nothing may run there): one snapshot_group run on the controller takes the group snapshot over
    the two qemu+ssh:// URIs; the change breaks one member, and both are reverted together, over SSH, and fail;
    cleanup_now.yml then deletes what the run left from both. Checked with virsh and the sshd's log."""
    members = {guest: fleet[guest] for guest in ('hv1-vm1', 'hv2-vm1')}
    inventory = write_inventory(
        tmp_path / 'app.yml', remote,
        guests={guest: {'kvm_domain': dom, 'kvm_hypervisor': guest.split('-')[0], 'kvm_application': 'split'}
                for guest, dom in members.items()},
        hypervisors={hv: hypervisor_vars(remote, HYPERVISORS[hv], PYTHON_WITHOUT_LIBVIRT) for hv in ('hv1', 'hv2')})
    log_mark = len(remote.sshd.log_text())

    result = run(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2,
                 extra_vars={'kvm_connection_mode': 'uri', 'kvm_change_tasks': str(TARGETS / 'remote_fleet' / 'change.yml'),
                             'kvm_change_id': 'remote-app', 'remote_break': 'hv2-vm1', 'rollback_wait_for': 'none'})
    recap = result.recap()
    assert all(recap[guest]['failed'] == 1 and recap[guest]['unreachable'] == 0 for guest in members), result
    assert 'pre-change-remote-app is the group snapshot of application split (hv1-vm1, hv2-vm1), taken now' \
        in result.stdout, result
    assert 'The change failed on hv1-vm1 (the change failed on hv2-vm1 of application split)' in result.stdout, result
    # one module run for each group step, on the controller
    for task in ('kvm.snapshots.pre_change : Take the group snapshot of the application, on its leader',
                 'kvm.snapshots.rollback : Revert the application to its group snapshot, on its leader'):
        part = result.stdout[result.stdout.index(f'TASK [{task}]'):].split('\nTASK [')[0]
        assert part.count('[hv1-vm1 -> localhost]') == 1 and 'hv2-vm1 ->' not in part, (task, result)
    logins = remote.sshd.connections(log_mark)
    assert logins[HYPERVISORS['hv1']] > 0 and logins[HYPERVISORS['hv2']] > 0, logins
    for dom in members.values():
        names = snapshot_names(lab, dom)
        assert 'pre-change-remote-app' in names and len(names) == 2, names  # the group snapshot and a safety one
        assert current_snapshot(lab, dom) == 'pre-change-remote-app' and lab.state(dom) == 'running', dom

    cleaned = run(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory,
                  extra_vars={'kvm_connection_mode': 'uri', 'kvm_change_id': 'remote-app'})
    assert 'TASK [kvm.snapshots.cleanup : Delete the group snapshot from every member, on the leader]' in cleaned.stdout
    for dom in members.values():
        left = snapshot_names(lab, dom)
        assert 'pre-change-remote-app' not in left and len(left) == 1, left  # the safety snapshot stays
        assert lab.virsh('snapshot-delete', dom, left.pop()).returncode == 0
        assert snapshot_names(lab, dom) == set() and lab.state(dom) == 'running', dom


def test_hypervisors_over_ssh_and_a_missing_binding(lab, fleet, remote, tmp_path, run):
    """A play over the hypervisors themselves (Ansible over SSH, the module on each one), and a hypervisor
    whose Python lacks libvirt-python: the module's message names that interpreter and the fix, and the
    pre_change role passes it on, having changed nothing."""
    hypervisors = {hv: hypervisor_vars(remote, address) for hv, address in HYPERVISORS.items()}
    hypervisors['hvnolib'] = hypervisor_vars(remote, HYPERVISORS['hv1'], PYTHON_WITHOUT_LIBVIRT)
    inventory = write_inventory(tmp_path / 'hypervisors.yml', remote, guests={
        'nolib-vm': {'kvm_domain': fleet['hv1-vm1'], 'kvm_hypervisor': 'hvnolib'},
    }, hypervisors=hypervisors)
    owned = {hv: {fleet[f'{hv}-{vm}']: state for vm, state in VMS.items()} for hv in HYPERVISORS}
    owned['hvnolib'] = {}

    result = run(TARGETS / 'remote_hypervisors.yml', inventory=inventory, expect_rc=2, args=['--forks', '4'],
                 extra_vars={'remote_domains': owned})
    recap = result.recap()
    assert all(recap[hv]['failed'] == 0 and recap[hv]['ok'] >= 2 for hv in HYPERVISORS), result
    assert recap['hvnolib']['failed'] == 1, result
    for needed in (f"Python {PYTHON_WITHOUT_LIBVIRT}", f'the module ran with {PYTHON_WITHOUT_LIBVIRT}',
                   'python3-libvirt', f'{PYTHON_WITHOUT_LIBVIRT} -m pip install libvirt-python'):
        assert needed in result.stdout, (needed, result)
    assert 'Traceback' not in result.stdout.split('fatal: [hvnolib]')[1].split('\n')[0]

    role = run(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, expect_rc=2,
               extra_vars={'kvm_change_id': 'nolib'})
    assert 'cannot be read through qemu:///system (from hvnolib)' in role.stdout, role
    assert 'python3-libvirt' in role.stdout
    assert snapshot_names(lab, fleet['hv1-vm1']) == set()


@pytest.fixture
def black_hole() -> t.Iterator[int]:
    """A TCP port on BLACK_HOLE that takes connections (the kernel's backlog) and never says a word."""
    listener = socket.socket()
    listener.bind((BLACK_HOLE, 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()  # the ssh clients still waiting there get a reset and end


def test_connection_failures_are_clear_and_bounded(lab, fleet, remote, black_hole, tmp_path, run):
    """From the controller, through remote URIs: nothing listening, a refused login, a host key that is wrong
    and one that is unknown (ssh and libssh transports), and a host that never answers. Each fails with a plain
    message naming the problem; none waits longer than it should (the black hole: connect_timeout)."""
    port = remote.sshd.port
    key = remote.sshd.client_key
    closed = sshd_tool.free_port([HYPERVISORS['hv1']])
    cases = [
        {'name': 'refused', 'uri': f'qemu+ssh://root@{HYPERVISORS["hv1"]}:{closed}/system?no_tty=1&keyfile={key}'},
        {'name': 'login', 'uri': f'qemu+ssh://root@{HYPERVISORS["hv1"]}:{port}/system?no_tty=1'
                                 f'&keyfile={remote.sshd.wrong_key}'},
        {'name': 'host_key_changed', 'uri': f'qemu+ssh://root@{BAD_HOST_KEY}:{port}/system?no_tty=1&keyfile={key}'},
        {'name': 'host_key_unknown', 'uri': f'qemu+ssh://root@{UNKNOWN_HOST_KEY}:{port}/system?no_tty=1&keyfile={key}'},
        {'name': 'host_key_libssh', 'uri': f'qemu+libssh://root@{BAD_HOST_KEY}:{port}/system?keyfile={key}'
                                           f'&known_hosts={remote.known_hosts}'},
        {'name': 'black_hole', 'uri': f'qemu+ssh://root@{BLACK_HOLE}:{black_hole}/system?no_tty=1&keyfile={key}',
         'connect_timeout': 8},
    ]
    inventory = write_inventory(tmp_path / 'none.yml', remote, guests={}, hypervisors={})
    results = tmp_path / 'failures.json'
    run(TARGETS / 'remote_failures.yml', inventory=inventory,
        extra_vars={'remote_cases': cases, 'remote_results': str(results)})
    outcome = json.loads(results.read_text())

    expected = {
        'refused': f'nothing accepts SSH connections at {HYPERVISORS["hv1"]}:{closed} (connection refused)',
        'login': f'the SSH login to {HYPERVISORS["hv1"]}:{port} was refused',
        'host_key_changed': f'the SSH host key of {BAD_HOST_KEY}:{port} could not be verified',
        'host_key_unknown': f'the SSH host key of {UNKNOWN_HOST_KEY}:{port} could not be verified',
        'host_key_libssh': f'the SSH host key of {BAD_HOST_KEY}:{port} could not be verified',
        'black_hole': 'within 8 seconds',
    }
    for name, words in expected.items():
        case = outcome[name]
        assert case['failed'], (name, case)
        assert words in case['msg'], (name, case)
        assert case['msg'].startswith('Could not connect to libvirt at '), (name, case)
        assert 'Traceback' not in case['msg'] and 'connection to libvirtd was lost' not in case['msg'], (name, case)
    # the changed key is named as such, with ssh's own words
    assert 'has changed' in outcome['host_key_changed']['msg']
    assert 'No ED25519 host key is known' in outcome['host_key_unknown']['msg']
    for name in expected:
        if name != 'black_hole':
            assert outcome[name]['seconds'] < 20, (name, outcome[name])
    assert 7.5 <= outcome['black_hole']['seconds'] < 40, outcome['black_hole']

    # The same through the roles: a guest whose hypervisor's host key is wrong stops at the preflight (in
    # --check, which reads as a real run would), and the guest of a good hypervisor next to it is not held up.
    hypervisors = {'hv1': hypervisor_vars(remote, HYPERVISORS['hv1']),
                   'hvbadkey': hypervisor_vars(remote, BAD_HOST_KEY)}
    inventory = write_inventory(tmp_path / 'badkey.yml', remote, hypervisors=hypervisors, guests={
        'hv1-vm1': {'kvm_domain': fleet['hv1-vm1'], 'kvm_hypervisor': 'hv1'},
        'badkey-vm': {'kvm_domain': fleet['hv1-vm2'], 'kvm_hypervisor': 'hvbadkey'},
    })
    role = run(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, expect_rc=2, args=['--check'],
               extra_vars={'kvm_connection_mode': 'uri', 'kvm_change_id': 'badkey'})
    recap = role.recap()
    assert recap['badkey-vm']['failed'] == 1 and recap['hv1-vm1']['failed'] == 0, role
    assert f'cannot be read through qemu+ssh://root@{BAD_HOST_KEY}:{port}/system?no_tty=1&keyfile=' in role.stdout
    assert f'the SSH host key of {BAD_HOST_KEY}:{port} could not be verified' in role.stdout
    assert snapshot_names(lab, fleet['hv1-vm1']) == set() and snapshot_names(lab, fleet['hv1-vm2']) == set()
