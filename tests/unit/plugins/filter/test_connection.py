# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' connection filters: hypervisor_uri, module_host, read_failure, batch_groups, application_members and
application_refusal, called directly and through Jinja as a role calls them (the URI made from the host vars the old
template of the three roles' defaults read, the message of a local URI in the mode "uri", the groups of a batch, the
members of an application and why one group run cannot serve them)."""

from __future__ import annotations

import jinja2
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.snapshots.plugins.filter.connection import (
    FilterModule,
    application_members,
    application_refusal,
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


def _member(host, module_host='hv1', **more):
    return dict({'application': 'shop', 'host': host, 'module_host': module_host,
                 'member': {'domain': host, 'uri': 'qemu:///system'}}, **more)


# hostvars as a play has them: a fact on the members, another application, a host that failed before noting itself
_HOSTVARS = {
    'web1': {'_m': _member('web1', target='pre-change-1')},
    'cache1': {'_m': dict(_member('cache1'), application='cache')},
    'broken': {'other': 1},
    'db1': {'_m': _member('db1', target='pre-change-2')},
    'web2': {'_m': _member('web2', target='pre-change-1')},
}


def test_application_members_in_batch_order():
    batch = ['db1', 'cache1', 'broken', 'web1', 'web2']
    assert [m['host'] for m in application_members(batch, _HOSTVARS, '_m', 'shop')] == ['db1', 'web1', 'web2']
    assert [m['host'] for m in application_members(batch, _HOSTVARS, '_m', 'cache')] == ['cache1']
    # only those with the snapshot to delete
    assert [m['host'] for m in application_members(batch, _HOSTVARS, '_m', 'shop', target='pre-change-1')] == [
        'web1', 'web2']
    # a host of the batch missing from hostvars (not in the inventory) is no member, and the batch's other hosts are
    assert application_members(['ghost', 'web1'], _HOSTVARS, '_m', 'shop')[0]['host'] == 'web1'
    assert application_members(batch, _HOSTVARS, '_m', 'none') == []


@pytest.mark.parametrize('batch, hostvars', [('web1', _HOSTVARS), (['web1'], ['web1'])])
def test_application_members_refuses_what_is_not_a_batch(batch, hostvars):
    with pytest.raises(AnsibleFilterError, match='batch'):
        application_members(batch, hostvars, '_m', 'shop')


def test_application_refusal_when_one_run_serves_the_members():
    for action, key in (('take', 'name'), ('revert', 'target'), ('delete', 'target')):
        members = [_member('web1', **{key: 's1'}), _member('db1', **{key: 's1'})]
        assert application_refusal(members, 'shop', action) == ''


@pytest.mark.parametrize('action, done, outcome', [
    ('take', 'Their group snapshot is taken', 'changed'),
    ('revert', 'Their group is reverted', 'changed'),
    ('delete', 'Their group snapshot is deleted', 'deleted'),
])
def test_application_refusal_of_members_on_two_hypervisors(action, done, outcome):
    key = 'name' if action == 'take' else 'target'
    members = [_member('web1', 'hv1', **{key: 's1'}), _member('db1', 'hv2', **{key: 's1'})]
    said = application_refusal(members, 'shop', action)
    assert said.startswith('The members of application shop (web1, db1) are reached from hv1 and hv2. ' + done)
    assert 'set kvm_connection_mode=uri for the application' in said
    assert said.endswith(f'Nothing was {outcome}.')


def test_application_refusal_of_two_change_ids():
    members = [_member('web1', name='pre-change-a'), _member('db1', name='pre-change-b')]
    said = application_refusal(members, 'shop', 'take')
    assert ('are reached from hv1 and would get different snapshot names (pre-change-a, pre-change-b): give them one'
            ' change id.') in said


@pytest.mark.parametrize('targets, listed', [(['', ''], 'none'), (['s1', ''], 's1'), (['s1', 's2'], 's1, s2')])
def test_application_refusal_of_a_revert_without_one_snapshot(targets, listed):
    members = [_member('web1', target=targets[0]), _member('db1', 'hv2', target=targets[1])]
    said = application_refusal(members, 'shop', 'revert')
    assert said == (f'The members of application shop (web1, db1) have no snapshot to go back to, or not the same one'
                    f' ({listed}): name it with rollback_change_id (kvm_change_id) or rollback_snapshot. Nothing was'
                    ' changed.')


@pytest.mark.parametrize('members, action', [([], 'take'), ([_member('web1', name='s')], 'snapshot'), ('x', 'take')])
def test_application_refusal_refuses_bad_input(members, action):
    with pytest.raises(AnsibleFilterError, match='take, revert or delete'):
        application_refusal(members, 'shop', action)


def test_application_filters_through_jinja():
    env = jinja2.Environment()
    env.filters.update({f'kvm.snapshots.{name}': f for name, f in FilterModule().filters().items()})
    found = env.from_string("{{ batch | kvm.snapshots.application_members(hostvars, '_m', app, target=t)"
                            " | kvm.snapshots.application_refusal(app, 'delete') }}")
    assert found.render(batch=['web1', 'web2'], hostvars=_HOSTVARS, app='shop', t='pre-change-1') == ''
    hostvars = dict(_HOSTVARS, web2={'_m': _member('web2', 'hv2', target='pre-change-1')})
    assert 'are reached from hv1 and hv2' in found.render(batch=['web1', 'web2'], hostvars=hostvars, app='shop',
                                                          t='pre-change-1')
