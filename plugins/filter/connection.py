# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filters of the roles' connection setup, in one place for the three roles and the playbooks.

kvm.snapshots.hypervisor_uri: the qemu+ssh:// URI of a hypervisor made from its inventory entry.
kvm.snapshots.module_host: where the modules of a guest run (its hypervisor, or the controller in the connection
mode "uri"), refusing a local URI where it would not reach the hypervisor.
kvm.snapshots.read_failure: the message of a guest whose domain cannot be read.
kvm.snapshots.batch_groups: the guests of a play's batch grouped by where their modules run, each group with its
leader (the guest that runs the modules for the group).
kvm.snapshots.application_members: the member records of an application among the guests of a play's batch.
kvm.snapshots.application_refusal: why one run of kvm.snapshots.snapshot_group cannot serve those members ('' when
it can).
"""

from __future__ import annotations

import re
import typing as t
from collections.abc import Mapping
from urllib.parse import quote

from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.snapshots.plugins.module_utils._uri import redact_uri

# a URI that names a host: driver[+transport]://host...
_REMOTE = re.compile(r'^[^:/]+://[^/]')
_LOCAL_HYPERVISORS = ('localhost', '127.0.0.1')


def _given(hostvars: Mapping[str, t.Any], key: str) -> t.Any:
    value = hostvars.get(key)
    return None if value is None or value == '' else value


def hypervisor_uri(hostvars: t.Any, name: str) -> str:
    """qemu+ssh://[ansible_user@]ansible_host[:ansible_port]/system?no_tty=1[&keyfile=ansible_ssh_private_key_file]."""
    if not isinstance(name, str) or not name:
        raise AnsibleFilterError(f'kvm.snapshots.hypervisor_uri needs the hypervisor\'s inventory name, not {name!r}')
    hv = hostvars if isinstance(hostvars, Mapping) else {}
    host = str(_given(hv, 'ansible_host') or name)
    user = _given(hv, 'ansible_user')
    port = _given(hv, 'ansible_port')
    keyfile = _given(hv, 'ansible_ssh_private_key_file')
    return ''.join([
        'qemu+ssh://',
        f'{user}@' if user is not None else '',
        f'[{host}]' if ':' in host else host,
        f':{port}' if port is not None else '',
        '/system?no_tty=1',
        f'&keyfile={quote(str(keyfile), safe="/")}' if keyfile is not None else '',
    ])


def module_host(hypervisor: str, mode: str, uri: str, guest: str = 'this guest') -> str:
    """'localhost' in the connection mode "uri", else the hypervisor; a local URI in mode "uri" is an error."""
    if mode not in ('hypervisor', 'uri'):
        raise AnsibleFilterError(f'The connection mode of {guest} is "{mode}"; it must be hypervisor or uri. '
                                 'Nothing was changed.')
    if mode == 'hypervisor':
        return hypervisor
    if not _REMOTE.match(str(uri)) and hypervisor not in _LOCAL_HYPERVISORS:
        raise AnsibleFilterError(
            f'With the connection mode "uri" the modules run on the controller, so the libvirt URI of {guest} '
            f'must reach its hypervisor {hypervisor} from there (qemu+ssh://root@HOST/system?keyfile=...&no_tty=1), '
            f'and "{redact_uri(str(uri))}" is local. Leave kvm_uri unset to have it made from the inventory entry of '
            f'{hypervisor}, or set a remote one. Nothing was changed.')
    return 'localhost'


def read_failure(error: t.Any, domain: str, guest: str, uri: str, module_host: str) -> str:  # pylint: disable=redefined-outer-name
    """The message of a domain that snapshot_info could not read (``error``: its message, or none)."""
    said = str(error) if error not in (None, '') else 'no answer'
    how = 'is not known to' if 'does not exist' in said else 'cannot be read through'
    return (f'Domain "{domain}" of {guest} {how} {redact_uri(str(uri))} (from {module_host}): {said} '
            'Nothing was changed. Check kvm_domain, kvm_uri, kvm_hypervisor and kvm_connection_mode of this host.')


def batch_groups(guests: t.Any) -> dict[str, dict[str, t.Any]]:
    """{key: {leader, hosts, domains}} of guests given as [{key, host, domain}, ...], in their order."""
    if not isinstance(guests, (list, tuple)):
        raise AnsibleFilterError('kvm.snapshots.batch_groups takes a list of {key, host, domain} dicts')
    groups: dict[str, dict[str, t.Any]] = {}
    for guest in guests:
        if not isinstance(guest, Mapping) or not all(k in guest for k in ('key', 'host', 'domain')):
            raise AnsibleFilterError(f'kvm.snapshots.batch_groups: {guest!r} is not a {{key, host, domain}} dict')
        group = groups.setdefault(str(guest['key']), {'leader': guest['host'], 'hosts': [], 'domains': []})
        group['hosts'].append(guest['host'])
        group['domains'].append(guest['domain'])
    return groups


def application_members(batch: t.Any, hostvars: t.Any, fact: str, application: t.Any,
                        target: t.Any = None) -> list[dict[str, t.Any]]:
    """The records (host fact ``fact``) of the hosts of ``batch`` in ``application``, in batch order.

    Each role notes a member as a fact ``{application, host, member, module_host, ...}``; a host without that fact is
    not in an application (or failed before it noted itself). With ``target``, only the members whose record has that
    snapshot name (the clean-up deletes one group snapshot at a time).
    """
    if not isinstance(batch, (list, tuple)) or not isinstance(hostvars, Mapping):
        raise AnsibleFilterError('kvm.snapshots.application_members takes the batch (a list of hosts) and hostvars')
    members = []
    for host in batch:
        record = hostvars[host].get(fact) if host in hostvars else None
        if not isinstance(record, Mapping) or str(record.get('application')) != str(application):
            continue
        if target is not None and record.get('target') != target:
            continue
        members.append(dict(record))
    return members


# What each action of snapshot_group does to the group, for the refusal.
_GROUP_ACTIONS = {
    'take': ('Their group snapshot is taken', 'changed'),
    'revert': ('Their group is reverted', 'changed'),
    'delete': ('Their group snapshot is deleted', 'deleted'),
}


def application_refusal(members: t.Any, application: t.Any, action: str) -> str:
    """Why one snapshot_group run cannot ``action`` (take, revert, delete) these members, or '' when it can.

    One run reaches every member from one place (the members' module host: one hypervisor, or the controller with
    kvm_connection_mode=uri) and names one snapshot (``name`` of a member to take, ``target`` to revert or delete).
    """
    if action not in _GROUP_ACTIONS or not isinstance(members, (list, tuple)) or not members:
        raise AnsibleFilterError('kvm.snapshots.application_refusal takes the member records, the application and '
                                 f'take, revert or delete (not {action!r})')
    done, outcome = _GROUP_ACTIONS[action]
    hosts = ', '.join(str(m['host']) for m in members)
    places = list(dict.fromkeys(str(m['module_host']) for m in members))
    names = list(dict.fromkeys(str(m.get('name' if action == 'take' else 'target') or '') for m in members))
    if action == 'revert' and (len(names) != 1 or not names[0]):
        return (f'The members of application {application} ({hosts}) have no snapshot to go back to, or not the same '
                f'one ({", ".join(n for n in names if n) or "none"}): name it with rollback_change_id (kvm_change_id) '
                'or rollback_snapshot. Nothing was changed.')
    if len(places) == 1 and len(names) == 1:
        return ''
    # pre_change: the members' change ids may differ too (each guest makes its own when none is given)
    names_differ = (f' and would get different snapshot names ({", ".join(names)}): give them one change id'
                    if len(names) > 1 else '')
    return (f'The members of application {application} ({hosts}) are reached from {" and ".join(places)}{names_differ}.'
            f' {done} by one run of kvm.snapshots.snapshot_group, which must reach every member: on one hypervisor,'
            ' use the connection mode "hypervisor" (the module runs there); on several, set kvm_connection_mode=uri'
            " for the application's guests (the module runs on the controller and reaches each member by its"
            f' qemu+ssh:// URI). Nothing was {outcome}.')


class FilterModule:
    """kvm.snapshots filters of the roles' connection setup."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'hypervisor_uri': hypervisor_uri, 'module_host': module_host, 'read_failure': read_failure,
                'batch_groups': batch_groups, 'application_members': application_members,
                'application_refusal': application_refusal}
