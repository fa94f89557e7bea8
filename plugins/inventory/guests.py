# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: guests
short_description: The guests of a list of libvirt hypervisors, with the kvm.snapshots inventory contract filled in
version_added: 0.2.0
description:
  - Reads the domains of each hypervisor through libvirt, read-only (O(parallel) hypervisors at the same time), and
    adds every domain as a host of group C(kvm_guests), with the variables the collection's roles and playbooks use
    (C(kvm_hypervisor), C(kvm_domain), C(kvm_uri), C(kvm_connection_mode)) and facts to filter on (power state,
    firmware, snapshots).
  - Adds each hypervisor as a host of group C(hypervisors) (what C(playbooks/hypervisor_snapshots.yml) targets), with
    C(ansible_host), C(ansible_port), C(ansible_user) and C(ansible_ssh_private_key_file) taken from an SSH URI
    (C(qemu+ssh://user@host:port/system?keyfile=...)), and C(ansible_connection=local) for a URI of this machine.
  - "Groups: C(kvm_guests) (every guest), C(hypervisors), C(kvm_hv_<hypervisor>) (the guests of one hypervisor),
    C(kvm_state_<state>) (running, paused, shutoff, ...), C(kvm_firmware_<bios|efi>), C(kvm_unread) (hypervisors that
    could not be read, with O(unreachable=warn)). Every character of a group name that is not a letter, a digit or
    C(_) becomes C(_): hypervisor C(hv1.example.com) gives group C(kvm_hv_hv1_example_com)."
  - A password in a URI (C(user:password@host)) is never shown in a message, cached or put in a variable.
  - The configuration file's name must end in C(kvm_guests.yml) or C(kvm_guests.yaml).
requirements:
  - libvirt-python on the controller (Debian/Ubuntu C(python3-libvirt), elsewhere C(pip install libvirt-python)).
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
options:
  plugin:
    description: The name of this plugin; it must be there for Ansible to use this file.
    type: str
    required: true
    choices: [kvm.snapshots.guests]
  hypervisors:
    description:
      - The hypervisors to read. Each is a libvirt URI (C(qemu+ssh://root@hv1.example.com/system)), or with
        O(uri_template) the inventory name of the hypervisor, or a dictionary.
      - "A dictionary has C(name) (the inventory name of the hypervisor), C(uri) (default: O(uri_template) with the
        name, else C(qemu:///system)), and may have C(include) and C(exclude) (globs of domain names for this
        hypervisor alone, instead of O(include) and O(exclude)) and C(local_uri) (the URI the modules use on the
        hypervisor itself in the C(hypervisor) connection mode)."
      - A hypervisor given by a URI alone is named after the URI's host, or C(localhost) for a URI of this machine.
    type: list
    elements: raw
    required: true
  uri_template:
    description:
      - The URI of a hypervisor given by its name, with C({hypervisor}) standing for the name, for example
        C(qemu+ssh://root@{hypervisor}/system?no_tty=1).
    type: str
  connection_mode:
    description:
      - Where the collection's modules run for these guests; becomes C(kvm_connection_mode) of every guest.
      - C(hypervisor) (the default of the roles), on the hypervisor, over Ansible's connection; C(kvm_uri) is then the
        hypervisor's own URI (C(qemu:///system) for C(qemu+ssh://root@hv1/system), or the entry's C(local_uri)).
      - C(uri), on the controller; C(kvm_uri) is then the URI the plugin read the hypervisor with, and the
        hypervisors get C(kvm_delegate_to=localhost) for C(playbooks/hypervisor_snapshots.yml).
    type: str
    choices: [hypervisor, uri]
    default: hypervisor
  include:
    description: Globs of the domain names to add (shell globs, case sensitive).
    type: list
    elements: str
    default: ['*']
  exclude:
    description: Globs of the domain names to leave out, even when O(include) matches them.
    type: list
    elements: str
    default: []
  running_only:
    description: Add only the domains that run (or are paused); shut-off domains are left out.
    type: bool
    default: false
  unreachable:
    description:
      - What a hypervisor that cannot be read does. C(warn) leaves its guests out with a warning (the hypervisor stays
        in C(hypervisors), in group C(kvm_unread) with the reason in C(kvm_inventory_error)); C(fail) fails the
        inventory source.
    type: str
    choices: [warn, fail]
    default: warn
  parallel:
    description: How many hypervisors are read at the same time.
    type: int
    default: 8
  connect_timeout:
    description: Seconds to wait for the connection to a hypervisor (0 for no limit).
    type: int
    default: 30
  hostname:
    description:
      - The inventory name of a guest, with C({domain}) (its libvirt name), C({hypervisor}) (the hypervisor's
        inventory name) and C({uuid}).
      - Two guests that get the same name (the same domain name on two hypervisors with C({domain})), or a guest named
        like a hypervisor, fail the inventory source with both named; use C({hypervisor}_{domain}) then.
    type: str
    default: '{domain}'
  hypervisor_connection_vars:
    description:
      - Whether the hypervisors get C(ansible_host), C(ansible_port), C(ansible_user), C(ansible_ssh_private_key_file)
        from an SSH URI and C(ansible_connection=local) for a URI of this machine. Turn it off when another
        inventory source describes the hypervisors. Variables of C(host_vars/) files win anyway.
    type: bool
    default: true
notes:
  - Host variables of every guest, for C(compose), C(groups), C(keyed_groups) and plays
    C(kvm_hypervisor), C(kvm_domain), C(kvm_uri) (left out when the URI holds a password), C(kvm_connection_mode),
    C(kvm_uuid), C(kvm_state) (running, paused, shutoff, ...), C(kvm_firmware) (bios or efi), C(kvm_memory_mib),
    C(kvm_vcpus), C(kvm_agent_channel) (the domain has a qemu-guest-agent channel), C(kvm_snapshot_count),
    C(kvm_has_snapshots), C(kvm_current_snapshot) (name or null), C(kvm_oldest_snapshot_age) (seconds since the
    oldest root snapshot was taken, null without snapshots; counted when the inventory is made, also from the cache),
    C(kvm_oldest_snapshot) (its name), C(kvm_oldest_snapshot_time) (its creation time, seconds since the epoch).
  - With O(cache=true), what was read is cached without any URI; a run in which a hypervisor could not be read
    writes nothing to the cache, so that the next run reads them all again. C(--flush-cache) reads anew.
seealso:
  - name: community.libvirt.libvirt inventory
    description: Guests reached through the community.libvirt.libvirt_qemu connection; see the README for when to use which.
    link: https://docs.ansible.com/ansible/latest/collections/community/libvirt/libvirt_inventory.html
'''

EXAMPLES = r'''
# web.kvm_guests.yml: the web VMs of 20 hypervisors, named hvNN_web..., cached for an hour.
# (One document: a file of its own per inventory source. A hypervisor is a name, made a URI by uri_template,
# a URI, or a dictionary with its own URI.)
plugin: kvm.snapshots.guests
uri_template: qemu+ssh://root@{hypervisor}.example.com/system?no_tty=1
hypervisors: [hv01, hv02, hv03, hv04, hv05, hv06, hv07, hv08, hv09, hv10,
              hv11, hv12, hv13, hv14, hv15, hv16, hv17, hv18, hv19,
              {name: hv20, uri: 'qemu+ssh://root@192.0.2.20/system?no_tty=1&keyfile=/home/ops/.ssh/id_ed25519'}]
include: ['web-*']
exclude: ['*-template']
hostname: '{hypervisor}_{domain}'
unreachable: fail
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/kvm_guests
cache_timeout: 3600
groups:
  # guests with snapshots older than a week
  stale_snapshots: kvm_oldest_snapshot_age is not none and kvm_oldest_snapshot_age > 7 * 86400
keyed_groups:
  - key: (kvm_memory_mib // 1024) | string
    prefix: memory_gib
'''

import concurrent.futures
import fnmatch
import re
import threading
import time
import typing as t
import xml.etree.ElementTree as ET
from urllib.parse import parse_qsl, unquote

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import DOMAIN_STATES, has_agent_channel
from ansible_collections.kvm.snapshots.plugins.module_utils._kind import firmware
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    DEFAULT_URI,
    LIBVIRT_IMPORT_ERROR,
    LibvirtError,
    connect_failure,
    describe,
    error_code,
    ERR_NO_DOMAIN,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._uri import (
    mask_secrets,
    parse_uri,
    redact_uri,
    uri_problem,
    uri_secrets,
)

try:
    import libvirt
except ImportError:
    libvirt = None

GUESTS_GROUP = 'kvm_guests'
HYPERVISORS_GROUP = 'hypervisors'
UNREAD_GROUP = 'kvm_unread'
LIST_ROOTS = 1  # VIR_DOMAIN_SNAPSHOT_LIST_ROOTS
_SSH_TRANSPORTS = ('ssh', 'libssh', 'libssh2')
_NOT_GROUP_CHARS = re.compile(r'[^A-Za-z0-9_]')


def group_name(prefix: str, value: str) -> str:
    """``prefix`` + ``value`` with every character that is not a letter, digit or _ made _."""
    return _NOT_GROUP_CHARS.sub('_', f'{prefix}{value}')


class Hypervisor(t.NamedTuple):
    """One entry of the hypervisors option, resolved."""
    name: str
    uri: str
    local_uri: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]


class ReadError(Exception):
    """A hypervisor that could not be read; the message holds no password."""


def local_uri_of(uri: str) -> str:
    """The URI of the same libvirtd seen from the hypervisor itself: driver and path of a remote URI
    (qemu+ssh://root@hv1/system -> qemu:///system); a URI of this machine as it is."""
    parts = parse_uri(uri)
    if not parts.authority or parts.host.lower() in ('', 'localhost'):
        return uri
    driver = (parts.scheme or 'qemu').split('+', 1)[0]
    path = re.split(r'[?#]', parts.rest, maxsplit=1)[0] or '/system'
    return f'{driver}://{path}'


def connection_vars(uri: str, name: str) -> dict[str, t.Any]:
    """ansible_* variables of the hypervisor reached by ``uri``: its SSH login, or the local connection."""
    parts = parse_uri(uri)
    if not parts.authority or parts.host.lower() in ('', 'localhost'):
        return {'ansible_connection': 'local'} if name in ('localhost', '127.0.0.1') or not parts.host else {}
    transport = (parts.scheme or '').partition('+')[2].lower()
    if transport not in _SSH_TRANSPORTS:
        return {'ansible_host': parts.host.strip('[]')} if parts.host.strip('[]') != name else {}
    found: dict[str, t.Any] = {}
    if parts.host.strip('[]') != name:
        found['ansible_host'] = parts.host.strip('[]')
    if parts.port:
        found['ansible_port'] = int(parts.port)
    if parts.user:
        found['ansible_user'] = unquote(parts.user)
    query = parts.rest.partition('?')[2].partition('#')[0]
    for key, value in parse_qsl(query):
        if key == 'keyfile' and value:
            found['ansible_ssh_private_key_file'] = value
    return found


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """The guests of a list of libvirt hypervisors."""

    NAME = 'kvm.snapshots.guests'

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(('kvm_guests.yml', 'kvm_guests.yaml'))

    # -- configuration ------------------------------------------------------------------------------------------

    def _hypervisors(self) -> list[Hypervisor]:
        entries = self.get_option('hypervisors')
        if not isinstance(entries, list) or not entries:
            raise AnsibleParserError('kvm.snapshots.guests: hypervisors must be a list of URIs, names or '
                                     'dictionaries with name and uri, and not empty.')
        template = self.get_option('uri_template')
        include, exclude = tuple(self.get_option('include')), tuple(self.get_option('exclude'))
        found: list[Hypervisor] = []
        for number, entry in enumerate(entries, 1):
            if isinstance(entry, str):
                entry = {'name': entry} if template else {'uri': entry}
            if not isinstance(entry, dict):
                raise AnsibleParserError(f'kvm.snapshots.guests: hypervisor #{number} is neither a URI, a name (with '
                                         'uri_template) nor a dictionary with name and uri.')
            unknown = set(entry) - {'name', 'uri', 'include', 'exclude', 'local_uri'}
            if unknown:
                raise AnsibleParserError(f'kvm.snapshots.guests: hypervisor #{number} has unknown keys '
                                         f'{", ".join(sorted(map(str, unknown)))} (known: name, uri, include, '
                                         'exclude, local_uri).')
            name = entry.get('name')
            uri = entry.get('uri')
            if uri is None:
                if name is None:
                    raise AnsibleParserError(f'kvm.snapshots.guests: hypervisor #{number} has neither name nor uri.')
                uri = template.replace('{hypervisor}', str(name)) if template else DEFAULT_URI
            uri = str(uri)
            problem = uri_problem(uri)
            if problem:
                raise AnsibleParserError(f'kvm.snapshots.guests: hypervisor #{number}: {problem}')
            if name is None:
                name = parse_uri(uri).host.strip('[]') or 'localhost'
            name = str(name)
            if not name.strip():
                raise AnsibleParserError(f'kvm.snapshots.guests: hypervisor #{number} ({redact_uri(uri)}) has an '
                                         'empty name.')
            if any(h.name == name for h in found):
                raise AnsibleParserError(f'kvm.snapshots.guests: two hypervisors are named "{name}"; give each its own '
                                         'name (name: in a dictionary entry).')
            globs = {}
            for key, default in (('include', include), ('exclude', exclude)):
                value = entry.get(key)
                value = [value] if isinstance(value, str) else value
                if value is not None and not (isinstance(value, list) and all(isinstance(g, str) for g in value)):
                    raise AnsibleParserError(f'kvm.snapshots.guests: {key} of hypervisor {name} must be a list of '
                                             'globs of domain names.')
                globs[key] = tuple(value) if value is not None else default
            found.append(Hypervisor(
                name=name, uri=uri, local_uri=str(entry.get('local_uri') or local_uri_of(uri)), **globs))
        return found

    # -- reading libvirt ----------------------------------------------------------------------------------------

    def _open(self, hv: Hypervisor) -> t.Any:
        timeout = self.get_option('connect_timeout')
        outcome: dict[str, t.Any] = {}

        def opener() -> None:
            try:
                outcome['conn'] = libvirt.openReadOnly(hv.uri)
            except Exception as exc:  # handed to the calling thread
                outcome['error'] = exc

        worker = threading.Thread(target=opener, name=f'libvirt-open-{hv.name}', daemon=True)
        worker.start()
        worker.join(timeout if timeout and timeout > 0 else None)
        if worker.is_alive():
            raise ReadError(f'Could not connect to libvirt at {redact_uri(hv.uri)} within {timeout} seconds (the host '
                            'does not answer, or an SSH prompt waits for input: use no_tty=1 and a key); raise '
                            'connect_timeout if it is only slow.')
        if 'error' in outcome:
            # the modules' message, less their promise about changes (an inventory changes nothing)
            raise ReadError(connect_failure(outcome['error'], hv.uri).replace(' Nothing was changed.', ''))
        return outcome['conn']

    @staticmethod
    def _wanted(name: str, hv: Hypervisor) -> bool:
        return (any(fnmatch.fnmatchcase(name, g) for g in hv.include)
                and not any(fnmatch.fnmatchcase(name, g) for g in hv.exclude))

    @staticmethod
    def _domain_facts(dom: t.Any) -> dict[str, t.Any]:
        state, max_kib, _mem, vcpus, _cpu = dom.info()
        xml = dom.XMLDesc(0)
        count = dom.snapshotNum(0)
        oldest, oldest_name, current = None, None, None
        if count:
            for snap in dom.listAllSnapshots(LIST_ROOTS):
                text = ET.fromstring(snap.getXMLDesc(0)).findtext('creationTime') or ''
                if text.isdigit() and (oldest is None or int(text) < oldest):
                    oldest, oldest_name = int(text), snap.getName()
            if dom.hasCurrentSnapshot(0):
                current = dom.snapshotCurrent(0).getName()
        return {
            'kvm_uuid': dom.UUIDString(),
            'kvm_state': DOMAIN_STATES.get(state, 'unknown'),
            'kvm_firmware': firmware(xml)['firmware'],
            'kvm_memory_mib': max_kib // 1024,
            'kvm_vcpus': vcpus,
            'kvm_agent_channel': has_agent_channel(dom, xml),
            'kvm_snapshot_count': count,
            'kvm_has_snapshots': count > 0,
            'kvm_current_snapshot': current,
            'kvm_oldest_snapshot': oldest_name,
            'kvm_oldest_snapshot_time': oldest,
        }

    def _read(self, hv: Hypervisor) -> dict[str, dict[str, t.Any]]:
        """domain name -> facts, for the wanted domains of ``hv``. Raises ReadError."""
        conn = self._open(hv)
        secrets = uri_secrets(hv.uri)
        try:
            flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE if self.get_option('running_only') else 0
            try:
                domains = conn.listAllDomains(flags)
            except LibvirtError as exc:
                raise ReadError(mask_secrets(describe(exc, f'Listing the domains of {redact_uri(hv.uri)}'),
                                             secrets)) from None
            guests = {}
            for dom in domains:
                name = dom.name()
                if not self._wanted(name, hv):
                    continue
                try:
                    guests[name] = self._domain_facts(dom)
                except LibvirtError as exc:
                    if error_code(exc) == ERR_NO_DOMAIN:
                        continue  # undefined while it was read
                    raise ReadError(mask_secrets(describe(exc, f'Reading domain "{name}" of {redact_uri(hv.uri)}'),
                                                 secrets)) from None
            return guests
        finally:
            try:
                conn.close()
            except LibvirtError:
                pass  # the daemon may already be gone; nothing is left to release

    def _read_all(self, hypervisors: list[Hypervisor]) -> tuple[dict[str, t.Any], dict[str, str]]:
        """hypervisor name -> {domain: facts}, and hypervisor name -> why it could not be read."""
        results: dict[str, t.Any] = {}
        errors: dict[str, str] = {}
        workers = max(1, min(self.get_option('parallel') or 1, len(hypervisors)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix='kvm-guests') as pool:
            futures = {pool.submit(self._read, hv): hv for hv in hypervisors}
            for future in concurrent.futures.as_completed(futures):
                hv = futures[future]
                try:
                    results[hv.name] = future.result()
                except ReadError as exc:
                    errors[hv.name] = str(exc)
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    errors[hv.name] = mask_secrets(f'Reading {redact_uri(hv.uri)} failed: '
                                                   f'{exc.__class__.__name__}: {to_native(exc)}', uri_secrets(hv.uri))
        return results, errors

    # -- the inventory ------------------------------------------------------------------------------------------

    def parse(self, inventory: t.Any, loader: t.Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        if libvirt is None:
            raise AnsibleParserError(
                'kvm.snapshots.guests needs libvirt-python in the Python that runs Ansible on the controller '
                '(Debian/Ubuntu: apt install python3-libvirt; elsewhere: pip install libvirt-python, which builds '
                f'against libvirt-dev). Import error: {LIBVIRT_IMPORT_ERROR.strip().splitlines()[-1]}')
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)  # errors are reported here, not on stderr
        hypervisors = self._hypervisors()

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option('cache') and cache
        update_cache = self.get_option('cache') and not cache
        results = None
        if use_cache:
            try:
                cached = self._cache[cache_key]
                if set(cached) == {hv.name for hv in hypervisors}:
                    results = cached
                else:
                    update_cache = True  # the list of hypervisors changed since
            except KeyError:
                update_cache = True
        errors: dict[str, str] = {}
        if results is None:
            results, errors = self._read_all(hypervisors)
            if errors and self.get_option('unreachable') == 'fail':
                raise AnsibleParserError('kvm.snapshots.guests: could not read ' + '; '.join(
                    f'hypervisor {name}: {errors[name]}' for name in sorted(errors)))
        if update_cache and not errors:
            self._cache[cache_key] = results
        self._populate(hypervisors, results, errors)

    def _populate(self, hypervisors: list[Hypervisor], results: dict[str, t.Any], errors: dict[str, str]) -> None:
        mode = self.get_option('connection_mode')
        pattern = self.get_option('hostname')
        strict = self.get_option('strict')
        hv_names = {hv.name for hv in hypervisors}
        now = time.time()
        # inventory name -> (hypervisor, domain), to report clashes before anything is added
        names: dict[str, tuple[str, str]] = {}
        for hv in hypervisors:
            for domain, facts in results.get(hv.name, {}).items():
                try:
                    host = pattern.format(domain=domain, hypervisor=hv.name, uuid=facts['kvm_uuid'])
                except (KeyError, IndexError, ValueError) as exc:
                    raise AnsibleParserError(f'kvm.snapshots.guests: hostname "{pattern}" cannot be filled in '
                                             f'({exc!r}); it may use {{domain}}, {{hypervisor}} and {{uuid}}.') from None
                if host in names:
                    other = names[host]
                    raise AnsibleParserError(
                        f'kvm.snapshots.guests: two guests would both be the inventory host "{host}": domain '
                        f'"{other[1]}" of hypervisor {other[0]} and domain "{domain}" of hypervisor {hv.name}. '
                        "Set hostname: '{hypervisor}_{domain}' (or narrow include/exclude).")
                if host in hv_names:
                    raise AnsibleParserError(
                        f'kvm.snapshots.guests: domain "{domain}" of hypervisor {hv.name} would be the inventory host '
                        f'"{host}", which is the name of a hypervisor. Set hostname: \'{{hypervisor}}_{{domain}}\'.')
                names[host] = (hv.name, domain)

        self.inventory.add_group(GUESTS_GROUP)
        self.inventory.add_group(HYPERVISORS_GROUP)
        for hv in hypervisors:
            self.inventory.add_host(hv.name, group=HYPERVISORS_GROUP)
            password = bool(uri_secrets(hv.uri))
            if self.get_option('hypervisor_connection_vars'):
                for key, value in connection_vars(hv.uri, hv.name).items():
                    self.inventory.set_variable(hv.name, key, value)
            # what hypervisor_snapshots.yml uses on the hypervisor hosts
            if mode == 'uri':
                if not password:
                    self.inventory.set_variable(hv.name, 'kvm_uri', hv.uri)
                self.inventory.set_variable(hv.name, 'kvm_delegate_to', 'localhost')
            else:
                self.inventory.set_variable(hv.name, 'kvm_uri', hv.local_uri)
            if mode == 'uri' and password:
                self.display.warning(
                    f'kvm.snapshots.guests: the URI of hypervisor {hv.name} ({redact_uri(hv.uri)}) holds a password, '
                    'which is not put in the inventory: kvm_uri of its guests is left unset. Set kvm_uri for them '
                    '(e.g. from a vaulted variable in group_vars/' + group_name('kvm_hv_', hv.name) + '.yml).')
            if hv.name in errors:
                self.inventory.add_group(UNREAD_GROUP)
                self.inventory.add_host(hv.name, group=UNREAD_GROUP)
                self.inventory.set_variable(hv.name, 'kvm_inventory_error', errors[hv.name])
                self.display.warning(f'kvm.snapshots.guests: hypervisor {hv.name} skipped, its guests are not in the '
                                     f'inventory: {errors[hv.name]}')
                continue
            hv_group = self.inventory.add_group(group_name('kvm_hv_', hv.name))
            for domain, facts in sorted(results.get(hv.name, {}).items()):
                host = pattern.format(domain=domain, hypervisor=hv.name, uuid=facts['kvm_uuid'])
                self.inventory.add_host(host, group=GUESTS_GROUP)
                self.inventory.add_host(host, group=hv_group)
                self.inventory.add_host(host, group=self.inventory.add_group(group_name('kvm_state_', facts['kvm_state'])))
                self.inventory.add_host(host, group=self.inventory.add_group(
                    group_name('kvm_firmware_', facts['kvm_firmware'])))
                hostvars = dict(facts, kvm_hypervisor=hv.name, kvm_domain=domain, kvm_connection_mode=mode)
                # from the creation time, now: right also when the facts come from the cache
                oldest = facts.get('kvm_oldest_snapshot_time')
                hostvars['kvm_oldest_snapshot_age'] = max(0, int(now - oldest)) if oldest is not None else None
                if mode == 'hypervisor':
                    hostvars['kvm_uri'] = hv.local_uri
                elif not password:
                    hostvars['kvm_uri'] = hv.uri
                for key, value in hostvars.items():
                    self.inventory.set_variable(host, key, value)
                self._set_composite_vars(self.get_option('compose'), hostvars, host, strict=strict)
                self._add_host_to_composed_groups(self.get_option('groups'), hostvars, host, strict=strict)
                self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, host, strict=strict)
