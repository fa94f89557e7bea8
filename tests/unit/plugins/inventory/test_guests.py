# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kvm.snapshots.guests inventory plugin against libvirt's test driver (test:///default).

The driver keeps its state in this process while a connection is open (the ``conn`` fixture), so the domains
made here are what the plugin reads through its own connections. Inventories are built by Ansible's own
InventoryManager and DataLoader from a configuration file, as ``ansible-inventory -i x.kvm_guests.yml`` does;
the tests that expect the source to fail call the plugin's parse with the real InventoryData, to read its error.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
import yaml
from ansible.errors import AnsibleParserError
from ansible.inventory.data import InventoryData
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader

from ansible_collections.kvm.snapshots.plugins.inventory import guests as plugin_module
from ansible_collections.kvm.snapshots.plugins.inventory.guests import connection_vars, group_name, local_uri_of

TEST_URI = 'test:///default'
# a URI whose daemon does not exist: the connection fails at once
NO_SOCKET = 'qemu+unix:///system?socket=/nonexistent/kvm-snapshots-unit/libvirt-sock'
# a URI with a password, to a port nothing listens on (ssh is refused at once; no_tty: nothing asks)
PASSWORD = 'Pa55-w0rd-unit'
PASSWORD_URI = f'qemu+ssh://ops:{PASSWORD}@127.0.0.1:1/system?no_tty=1&keyfile=/nonexistent/id_unit'

EFI_XML = """<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>2</vcpu>
  <os firmware='efi'><type arch='x86_64'>hvm</type></os>
  <devices/>
</domain>"""


@pytest.fixture
def prefix() -> str:
    """A name prefix of this test's domains (others of the process are left out with include)."""
    return f'inv{uuid.uuid4().hex[:6]}'


@pytest.fixture
def write_config(tmp_path):
    """write_config(options, name='test.kvm_guests.yml') -> path of a configuration file of the plugin."""

    def write(options: dict, name: str = 'test.kvm_guests.yml') -> str:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(dict({'plugin': 'kvm.snapshots.guests'}, **options)))
        return str(path)

    return write


def manager(path: str, cache: bool = True) -> InventoryManager:
    return InventoryManager(loader=DataLoader(), sources=[path], cache=cache)


def hostvars(inventory: InventoryManager, host: str) -> dict:
    return inventory.get_host(host).get_vars()


def group_hosts(inventory: InventoryManager, group: str) -> set[str]:
    return {h.name for h in inventory.groups[group].get_hosts()} if group in inventory.groups else set()


def parse_directly(path: str) -> InventoryData:
    """The plugin's parse with the real InventoryData and DataLoader: its own exception comes out."""
    plugin = inventory_loader.get('kvm.snapshots.guests')
    data = InventoryData()
    plugin.parse(data, DataLoader(), path, cache=False)
    return data


def test_guests_with_the_contract_facts_and_groups(conn, make_domain, add_snapshot, prefix, write_config):
    running = make_domain('running', prefix=prefix, agent=True)
    shutoff = make_domain('shutoff', prefix=prefix)
    paused = make_domain('paused', prefix=prefix)
    efi = make_domain('shutoff', prefix=prefix, xml=lambda name: EFI_XML.format(name=name))
    now = int(time.time())
    add_snapshot(shutoff, 'old', now - 5000)
    add_snapshot(shutoff, 'newer', now - 100, parent='old', current=True)
    add_snapshot(shutoff, 'other-root', now - 2000)
    inventory = manager(write_config({'hypervisors': [{'name': 'hv.test-1', 'uri': TEST_URI}],
                                      'include': [f'{prefix}-*']}))

    names = {d.name() for d in (running, shutoff, paused, efi)}
    assert group_hosts(inventory, 'kvm_guests') == names
    assert group_hosts(inventory, 'kvm_hv_hv_test_1') == names
    assert group_hosts(inventory, 'hypervisors') == {'hv.test-1'}
    assert group_hosts(inventory, 'kvm_state_running') == {running.name()}
    assert group_hosts(inventory, 'kvm_state_paused') == {paused.name()}
    assert group_hosts(inventory, 'kvm_state_shutoff') == {shutoff.name(), efi.name()}
    assert group_hosts(inventory, 'kvm_firmware_efi') == {efi.name()}
    assert group_hosts(inventory, 'kvm_firmware_bios') == names - {efi.name()}
    assert 'kvm_unread' not in inventory.groups

    snap = hostvars(inventory, shutoff.name())
    assert {k: snap[k] for k in ('kvm_hypervisor', 'kvm_domain', 'kvm_uri', 'kvm_connection_mode')} == {
        'kvm_hypervisor': 'hv.test-1', 'kvm_domain': shutoff.name(), 'kvm_uri': TEST_URI,
        'kvm_connection_mode': 'hypervisor'}
    assert snap['kvm_state'] == 'shutoff' and snap['kvm_firmware'] == 'bios'
    assert snap['kvm_snapshot_count'] == 3 and snap['kvm_has_snapshots'] is True
    assert snap['kvm_current_snapshot'] == 'newer'
    assert snap['kvm_oldest_snapshot'] == 'old'
    assert 5000 <= snap['kvm_oldest_snapshot_age'] < 5000 + 600
    assert snap['kvm_memory_mib'] == 64 and snap['kvm_uuid'] == shutoff.UUIDString()
    assert snap['kvm_agent_channel'] is False

    run = hostvars(inventory, running.name())
    assert run['kvm_state'] == 'running' and run['kvm_agent_channel'] is True
    assert run['kvm_snapshot_count'] == 0 and run['kvm_has_snapshots'] is False
    assert run['kvm_oldest_snapshot_age'] is None and run['kvm_current_snapshot'] is None
    assert hostvars(inventory, efi.name())['kvm_memory_mib'] == 256
    assert hostvars(inventory, efi.name())['kvm_vcpus'] == 2


def test_filters_and_running_only(conn, make_domain, prefix, write_config):
    web = [make_domain('running', prefix=f'{prefix}-web'), make_domain('running', prefix=f'{prefix}-web')]
    web_off = make_domain('shutoff', prefix=f'{prefix}-web')
    db = make_domain('running', prefix=f'{prefix}-db')
    template = make_domain('running', prefix=f'{prefix}-web-template')
    config = {'hypervisors': [TEST_URI], 'include': [f'{prefix}-web-*', f'{prefix}-db-*'],
              'exclude': [f'{prefix}-web-template-*']}

    every = manager(write_config(config))
    assert group_hosts(every, 'kvm_guests') == {d.name() for d in web + [web_off, db]}
    assert template.name() not in group_hosts(every, 'kvm_guests')
    # a URI alone: the hypervisor is named after its host, localhost for this machine's
    assert group_hosts(every, 'hypervisors') == {'localhost'}
    assert hostvars(every, 'localhost')['ansible_connection'] == 'local'

    running = manager(write_config(dict(config, running_only=True), name='running.kvm_guests.yml'))
    assert group_hosts(running, 'kvm_guests') == {d.name() for d in web + [db]}

    # include/exclude of one hypervisor entry instead of the global ones (one glob: a list of one)
    per_entry = manager(write_config({'hypervisors': [{'name': 'hv1', 'uri': TEST_URI,
                                                       'include': f'{prefix}-db-*'}],
                                      'include': [f'{prefix}-web-*']}, name='entry.kvm_guests.yml'))
    assert group_hosts(per_entry, 'kvm_guests') == {db.name()}


def test_hostname_and_clashes(conn, make_domain, prefix, write_config):
    dom = make_domain('shutoff', prefix=prefix)
    two = [{'name': 'hva', 'uri': TEST_URI}, {'name': 'hvb', 'uri': TEST_URI}]

    # the same domain seen through two hypervisors: two hosts with {hypervisor}_{domain}
    inventory = manager(write_config({'hypervisors': two, 'include': [dom.name()],
                                      'hostname': '{hypervisor}_{domain}'}))
    assert group_hosts(inventory, 'kvm_guests') == {f'hva_{dom.name()}', f'hvb_{dom.name()}'}
    assert hostvars(inventory, f'hvb_{dom.name()}')['kvm_hypervisor'] == 'hvb'
    assert hostvars(inventory, f'hvb_{dom.name()}')['kvm_domain'] == dom.name()
    assert group_hosts(inventory, 'kvm_hv_hva') == {f'hva_{dom.name()}'}

    # one name for both: refused, naming both guests and the fix
    with pytest.raises(AnsibleParserError) as clash:
        parse_directly(write_config({'hypervisors': two, 'include': [dom.name()]}, name='clash.kvm_guests.yml'))
    assert f'"{dom.name()}"' in str(clash.value)
    assert 'hypervisor hva' in str(clash.value) and 'hypervisor hvb' in str(clash.value)
    assert "hostname: '{hypervisor}_{domain}'" in str(clash.value)

    # a guest named like a hypervisor
    with pytest.raises(AnsibleParserError, match='which is the name of a hypervisor'):
        parse_directly(write_config({'hypervisors': [{'name': dom.name(), 'uri': TEST_URI}],
                                     'include': [dom.name()]}, name='same.kvm_guests.yml'))
    with pytest.raises(AnsibleParserError, match='cannot be filled in'):
        parse_directly(write_config({'hypervisors': [TEST_URI], 'include': [dom.name()], 'hostname': '{name}'},
                                    name='bad.kvm_guests.yml'))


def test_uri_template_and_connection_mode_uri(conn, make_domain, prefix, write_config):
    dom = make_domain('running', prefix=prefix)
    inventory = manager(write_config({'hypervisors': ['default'], 'uri_template': 'test:///{hypervisor}',
                                      'connection_mode': 'uri', 'include': [dom.name()]}))
    guest = hostvars(inventory, dom.name())
    assert guest['kvm_hypervisor'] == 'default' and guest['kvm_uri'] == TEST_URI
    assert guest['kvm_connection_mode'] == 'uri'
    # hypervisor_snapshots.yml runs the modules on the controller with the hypervisor's URI
    assert hostvars(inventory, 'default')['kvm_delegate_to'] == 'localhost'
    assert hostvars(inventory, 'default')['kvm_uri'] == TEST_URI


def test_compose_groups_keyed_groups(conn, make_domain, add_snapshot, prefix, write_config):
    old = make_domain('shutoff', prefix=prefix)
    add_snapshot(old, 'ancient', int(time.time()) - 30 * 86400)
    fresh = make_domain('running', prefix=prefix)
    inventory = manager(write_config({
        'hypervisors': [{'name': 'hv1', 'uri': TEST_URI}], 'include': [f'{prefix}-*'],
        'compose': {'ansible_host': 'kvm_domain ~ ".guests.example.com"', 'label': 'kvm_hypervisor ~ "/" ~ kvm_state'},
        'groups': {'stale': 'kvm_oldest_snapshot_age is not none and kvm_oldest_snapshot_age > 7 * 86400'},
        'keyed_groups': [{'key': 'kvm_memory_mib | string', 'prefix': 'mem'}],
    }))
    assert hostvars(inventory, old.name())['ansible_host'] == f'{old.name()}.guests.example.com'
    assert hostvars(inventory, fresh.name())['label'] == 'hv1/running'
    assert group_hosts(inventory, 'stale') == {old.name()}
    assert group_hosts(inventory, 'mem_64') == {old.name(), fresh.name()}


def test_cache(conn, make_domain, add_snapshot, prefix, write_config, tmp_path):
    first = make_domain('shutoff', prefix=prefix)
    taken = int(time.time()) - 5000
    add_snapshot(first, 'old', taken)
    cache_dir = tmp_path / 'cache'
    path = write_config({'hypervisors': [{'name': 'hv1', 'uri': TEST_URI}], 'include': [f'{prefix}-*'],
                         'cache': True, 'cache_plugin': 'ansible.builtin.jsonfile',
                         'cache_connection': str(cache_dir)})
    assert group_hosts(manager(path), 'kvm_guests') == {first.name()}
    files = list(cache_dir.iterdir())
    assert len(files) == 1
    cached = files[0].read_text()  # JSON, in an envelope of the cache plugin's that depends on ansible-core
    assert 'hv1' in cached and first.name() in cached and str(taken) in cached
    assert 'test:///' not in cached  # no URI in the cache

    second = make_domain('shutoff', prefix=prefix)
    cached_inventory = manager(path)
    assert group_hosts(cached_inventory, 'kvm_guests') == {first.name()}  # from the cache
    # the age is counted now, from the creation time in the cache
    assert hostvars(cached_inventory, first.name())['kvm_oldest_snapshot_time'] == taken
    assert 5000 <= hostvars(cached_inventory, first.name())['kvm_oldest_snapshot_age'] < 5600
    assert group_hosts(manager(path, cache=False), 'kvm_guests') == {first.name(), second.name()}  # --flush-cache
    assert second.name() in files[0].read_text()


def test_unreachable_warn_and_fail(conn, make_domain, prefix, write_config, tmp_path, capsys):
    dom = make_domain('shutoff', prefix=prefix)
    hypervisors = [{'name': 'good', 'uri': TEST_URI}, {'name': 'gone', 'uri': NO_SOCKET}]
    cache_dir = tmp_path / 'cache'
    path = write_config({'hypervisors': hypervisors, 'include': [dom.name()], 'cache': True,
                         'cache_plugin': 'ansible.builtin.jsonfile', 'cache_connection': str(cache_dir)})
    inventory = manager(path)
    assert group_hosts(inventory, 'kvm_guests') == {dom.name()}
    assert group_hosts(inventory, 'hypervisors') == {'good', 'gone'}
    assert group_hosts(inventory, 'kvm_unread') == {'gone'}
    error = hostvars(inventory, 'gone')['kvm_inventory_error']
    assert '/nonexistent/kvm-snapshots-unit/libvirt-sock' in error and 'libvirtd does not run there' in error
    assert 'hypervisor gone skipped' in capsys.readouterr().err
    assert not cache_dir.exists() or not list(cache_dir.iterdir())  # a partial read is not cached

    with pytest.raises(AnsibleParserError) as failed:
        parse_directly(write_config({'hypervisors': hypervisors, 'include': [dom.name()], 'unreachable': 'fail'},
                                    name='fail.kvm_guests.yml'))
    assert 'hypervisor gone:' in str(failed.value) and 'Failed to connect socket' in str(failed.value)
    assert 'good' not in str(failed.value)


@pytest.mark.parametrize('mode', ['hypervisor', 'uri'])
def test_no_password_anywhere(conn, make_domain, prefix, write_config, capsys, mode):
    dom = make_domain('shutoff', prefix=prefix)
    path = write_config({'hypervisors': [{'name': 'good', 'uri': TEST_URI}, {'name': 'secret', 'uri': PASSWORD_URI}],
                         'include': [dom.name()], 'connection_mode': mode, 'connect_timeout': 20})
    inventory = manager(path)
    assert group_hosts(inventory, 'kvm_unread') == {'secret'}
    everything = json.dumps({h.name: h.get_vars() for h in inventory.get_hosts()}, default=str)
    err = capsys.readouterr().err
    assert PASSWORD not in everything and PASSWORD not in err
    assert 'qemu+ssh://ops:********@127.0.0.1:1/system' in hostvars(inventory, 'secret')['kvm_inventory_error']
    secret = hostvars(inventory, 'secret')
    # the SSH login of the hypervisor, from its URI
    assert {k: secret[k] for k in ('ansible_host', 'ansible_port', 'ansible_user', 'ansible_ssh_private_key_file')} == {
        'ansible_host': '127.0.0.1', 'ansible_port': 1, 'ansible_user': 'ops',
        'ansible_ssh_private_key_file': '/nonexistent/id_unit'}
    if mode == 'uri':
        # ansible-core before 2.19 wraps a warning at the terminal's width
        assert 'kvm_uri' not in secret and 'holds a password, which is not put in the inventory' in ' '.join(err.split())
    else:
        assert secret['kvm_uri'] == 'qemu:///system'

    with pytest.raises(AnsibleParserError) as failed:
        parse_directly(write_config({'hypervisors': [PASSWORD_URI], 'unreachable': 'fail', 'connect_timeout': 20},
                                    name='fail.kvm_guests.yml'))
    assert PASSWORD not in str(failed.value) and 'ops:********@' in str(failed.value)


def test_bad_configuration(write_config):
    cases = [
        ({'hypervisors': []}, 'not empty'),
        ({'hypervisors': [{'name': 'hv1', 'url': TEST_URI}]}, 'unknown keys url'),
        ({'hypervisors': [42]}, 'hypervisor #1 is neither a URI'),
        ({'hypervisors': [{'include': ['x']}]}, 'neither name nor uri'),
        ({'hypervisors': [{'name': 'hv1', 'uri': TEST_URI, 'exclude': {'a': 1}}]}, 'exclude of hypervisor hv1 must'),
        ({'hypervisors': ['hv1.example.com']}, 'names no driver'),
        ({'hypervisors': [f'qemu+ssh://root:{PASSWORD}@hv1:99999/system']}, 'not a TCP port'),
        ({'hypervisors': [TEST_URI, {'name': 'localhost', 'uri': TEST_URI}]}, 'two hypervisors are named "localhost"'),
    ]
    for number, (options, words) in enumerate(cases):
        with pytest.raises(AnsibleParserError) as failed:
            parse_directly(write_config(options, name=f'bad{number}.kvm_guests.yml'))
        assert words in str(failed.value), (options, str(failed.value))
        assert PASSWORD not in str(failed.value)


def test_file_names(write_config):
    plugin = inventory_loader.get('kvm.snapshots.guests')
    assert plugin.verify_file(write_config({'hypervisors': [TEST_URI]}, name='fleet.kvm_guests.yaml'))
    assert plugin.verify_file(write_config({'hypervisors': [TEST_URI]}, name='kvm_guests.yml'))
    assert not plugin.verify_file(write_config({'hypervisors': [TEST_URI]}, name='fleet.yml'))


def test_missing_libvirt_python(write_config, monkeypatch):
    monkeypatch.setattr(plugin_module, 'libvirt', None)
    monkeypatch.setattr(plugin_module, 'LIBVIRT_IMPORT_ERROR', "ModuleNotFoundError: No module named 'libvirt'\n")
    with pytest.raises(AnsibleParserError) as failed:
        parse_directly(write_config({'hypervisors': [TEST_URI]}))
    assert 'needs libvirt-python' in str(failed.value) and 'python3-libvirt' in str(failed.value)


def test_uri_helpers():
    assert local_uri_of('qemu+ssh://root@hv1:2222/system?no_tty=1&keyfile=/k') == 'qemu:///system'
    assert local_uri_of('qemu+ssh://hv1/session') == 'qemu:///session'
    assert local_uri_of(f'qemu+ssh://u:{PASSWORD}@hv1/system') == 'qemu:///system'
    assert local_uri_of('qemu+unix:///system?socket=/x/sock') == 'qemu+unix:///system?socket=/x/sock'
    assert connection_vars('qemu+ssh://root@[fd00::1]:22/system', 'hv1') == {
        'ansible_host': 'fd00::1', 'ansible_port': 22, 'ansible_user': 'root'}
    assert connection_vars('qemu+ssh://hv1/system', 'hv1') == {}
    # libvirtd's own TCP port is no SSH port
    assert connection_vars('qemu+tls://hv1.example.com:16514/system', 'hv1') == {'ansible_host': 'hv1.example.com'}
    assert connection_vars('qemu:///system', 'localhost') == {'ansible_connection': 'local'}
    assert group_name('kvm_hv_', 'hv-1.example.com') == 'kvm_hv_hv_1_example_com'
