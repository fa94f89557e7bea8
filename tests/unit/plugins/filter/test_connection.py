# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' connection filters: hypervisor_uri, module_host, read_failure and batch_groups, called directly and
through Jinja as a role calls them (the URI made from the host vars the old template of the three roles' defaults
read, the message of a local URI in the mode "uri", the groups of a batch)."""

from __future__ import annotations

import jinja2
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.snapshots.plugins.filter.connection import (
    FilterModule,
    batch_groups,
    hypervisor_uri,
    module_host,
    read_failure,
)


@pytest.mark.parametrize('hostvars, name, uri', [
    ({}, 'hv1', 'qemu+ssh://hv1/system?no_tty=1'),
    ({'ansible_host': '192.0.2.10'}, 'hv1', 'qemu+ssh://192.0.2.10/system?no_tty=1'),
    ({'ansible_host': '192.0.2.10', 'ansible_user': 'root', 'ansible_port': 2222}, 'hv1',
     'qemu+ssh://root@192.0.2.10:2222/system?no_tty=1'),
    ({'ansible_host': '2001:db8::7', 'ansible_port': '22'}, 'hv1', 'qemu+ssh://[2001:db8::7]:22/system?no_tty=1'),
    ({'ansible_user': 'ops', 'ansible_ssh_private_key_file': '/home/ops/.ssh/id key&x=1#'}, 'hv2',
     'qemu+ssh://ops@hv2/system?no_tty=1&keyfile=/home/ops/.ssh/id%20key%26x%3D1%23'),
    ({'ansible_host': '', 'ansible_user': None, 'ansible_port': None}, 'hv3', 'qemu+ssh://hv3/system?no_tty=1'),
    (None, 'hv4', 'qemu+ssh://hv4/system?no_tty=1'),
])
def test_hypervisor_uri(hostvars, name, uri):
    assert hypervisor_uri(hostvars, name) == uri


def test_hypervisor_uri_needs_the_name():
    with pytest.raises(AnsibleFilterError, match='inventory name'):
        hypervisor_uri({}, '')


def test_module_host_by_mode():
    assert module_host('hv1', 'hypervisor', 'qemu:///system', 'web1') == 'hv1'
    assert module_host('hv1', 'uri', 'qemu+ssh://root@hv1/system', 'web1') == 'localhost'
    # a local URI is fine where the hypervisor is the controller itself
    assert module_host('localhost', 'uri', 'qemu:///system', 'web1') == 'localhost'
    assert module_host('127.0.0.1', 'uri', 'qemu:///system', 'web1') == 'localhost'


@pytest.mark.parametrize('uri', ['qemu:///system', 'qemu+unix:///system?socket=/run/x', 'test:///default'])
def test_module_host_refuses_a_local_uri_in_uri_mode(uri):
    with pytest.raises(AnsibleFilterError) as err:
        module_host('hv1', 'uri', uri, 'web1')
    msg = str(err.value)
    assert 'the libvirt URI of web1 must reach its hypervisor hv1' in msg
    assert f'"{uri}" is local' in msg and msg.endswith('Nothing was changed.')


def test_module_host_refuses_a_bad_mode():
    # a URI with a user part names a host: it counts as remote, and the modules run on the controller
    assert module_host('hv1', 'uri', 'qemu+unix://root:S3cret@/system', 'web1') == 'localhost'
    with pytest.raises(AnsibleFilterError, match='must be hypervisor or uri'):
        module_host('hv1', 'ssh', 'qemu:///system', 'web1')


def test_read_failure():
    gone = read_failure('Domain "web9" does not exist', 'web9', 'web9', 'qemu+ssh://u:pw@hv1/system', 'localhost')
    assert gone.startswith('Domain "web9" of web9 is not known to qemu+ssh://u:********@hv1/system (from localhost): ')
    assert 'pw@' not in gone and gone.endswith('kvm_connection_mode of this host.')
    assert 'cannot be read through qemu:///system (from hv1): no answer' in read_failure(None, 'd', 'g', 'qemu:///system', 'hv1')


def test_batch_groups_keeps_the_order_and_the_first_guest_leads():
    guests = [{'key': 'k1', 'host': 'a1', 'domain': 'da1'}, {'key': 'k2', 'host': 'b1', 'domain': 'db1'},
              {'key': 'k1', 'host': 'a2', 'domain': 'da2'}]
    assert batch_groups(guests) == {
        'k1': {'leader': 'a1', 'hosts': ['a1', 'a2'], 'domains': ['da1', 'da2']},
        'k2': {'leader': 'b1', 'hosts': ['b1'], 'domains': ['db1']},
    }
    assert batch_groups([]) == {}


@pytest.mark.parametrize('bad', ['a1', [{'key': 'k', 'host': 'a1'}], [None]])
def test_batch_groups_refuses_what_is_not_a_list_of_guests(bad):
    with pytest.raises(AnsibleFilterError):
        batch_groups(bad)


def test_through_jinja_as_the_roles_call_them():
    env = jinja2.Environment()
    env.filters.update({f'kvm.snapshots.{name}': f for name, f in FilterModule().filters().items()})
    hostvars = {'hv1': {'ansible_host': '10.0.0.5', 'ansible_user': 'root'}}
    uri = env.from_string("{{ hostvars[hv] | default({}) | kvm.snapshots.hypervisor_uri(hv) }}")
    assert uri.render(hostvars=hostvars, hv='hv1') == 'qemu+ssh://root@10.0.0.5/system?no_tty=1'
    assert uri.render(hostvars=hostvars, hv='hv9') == 'qemu+ssh://hv9/system?no_tty=1'  # not in the inventory
    where = env.from_string("{{ hv | kvm.snapshots.module_host(mode, uri, 'web1') }}")
    assert where.render(hv='hv1', mode='uri', uri='qemu+ssh://root@10.0.0.5/system') == 'localhost'
