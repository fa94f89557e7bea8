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
"""

from __future__ import annotations

import re
import typing as t
from collections.abc import Mapping
from urllib.parse import quote

from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import redact_uri

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


class FilterModule:
    """kvm.snapshots filters of the roles' connection setup."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'hypervisor_uri': hypervisor_uri, 'module_host': module_host, 'read_failure': read_failure,
                'batch_groups': batch_groups}
