# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""libvirt connection URIs: their parts, whether one is local, and its password masked for messages.

Python's standard library alone: the controller-side plugins (the roles' filters) import this, and each of
Ansible's worker processes imports a filter anew, so it must not pull in libvirt-python or AnsibleModule.
"""

from __future__ import annotations

import re
import typing as t
from urllib.parse import unquote

# The authority of a URI is parsed here, not with urllib: a password may hold any character ("/", "#", "?",
# "[", "@"), which urlsplit takes for the end of the authority, and then neither finds nor masks it.
# scheme://[user[:password]@]host[:port]/path?query: the user part is up to the first ":", the password
# runs to an "@" that is followed by something that can be a host[:port] (then "/", "?", "#" or the end).
_URI_START = re.compile(r'^([A-Za-z][A-Za-z0-9+.-]*)://')
_HOST_PORT = re.compile(r'^(\[[^\]]*\]?|[^/?#@\[\]:]*)(?::([^/?#@]*))?$')
_USER = re.compile(r'^[^/?#@:\[\]]*$')
MASK = '********'


class UriParts(t.NamedTuple):
    """A libvirt URI taken apart (``authority`` False: no ``//`` after the scheme)."""

    scheme: str | None
    authority: bool
    user: str | None
    password: str | None
    host: str
    port: str | None
    rest: str  # path, query and fragment, as written
    # every string that may be the password: with an "@" also in the path or the query, more than one reading
    # of the URI is possible, and every one is masked
    secrets: tuple[str, ...]


def _end_of_authority(text: str) -> int:
    return min((i for i in (text.find(c) for c in '/?#') if i >= 0), default=len(text))


def parse_uri(uri: str) -> UriParts:
    """Take ``uri`` apart the way libvirt reads it, with a password of any characters."""
    start = _URI_START.match(uri)
    if start is None:
        scheme, sep, rest = uri.partition(':')
        return UriParts(scheme if sep and scheme else None, False, None, None, '', None, rest if sep else uri, ())
    rest = uri[start.end():]
    readings = []
    for at, char in enumerate(rest):
        if char != '@':
            continue
        after = rest[at + 1:]
        end = _end_of_authority(after)
        userinfo = rest[:at]
        user = userinfo.split(':', 1)[0]
        if _HOST_PORT.match(after[:end]) and _USER.match(user):
            readings.append((userinfo, after[:end], after[end:]))
    if readings:
        userinfo, hostport, tail = readings[-1]  # the password runs to the last "@" that can end it
        user, colon, password = userinfo.partition(':')
    else:
        end = _end_of_authority(rest)
        user, colon, password, hostport, tail = None, '', '', rest[:end], rest[end:]
    secrets: list[str] = []
    for reading in readings:
        candidate = reading[0].partition(':')[2]
        if ':' in reading[0] and candidate:
            secrets += [candidate, unquote(candidate)]
    host_port = _HOST_PORT.match(hostport)
    host, port = (host_port.group(1), host_port.group(2)) if host_port else (hostport, None)
    return UriParts(start.group(1), True, user, password if colon else None, host, port, tail,
                    tuple(sorted({s for s in secrets if s}, key=len, reverse=True)))


def is_local_uri(uri: str) -> bool:
    """Whether the URI names libvirt on this machine (so its files are this machine's files)."""
    return parse_uri(uri).host.lower() in ('', 'localhost')  # not urlsplit: a password may hold "/", "#", "@"


def redact_uri(uri: str) -> str:
    """``uri`` for messages: a password in its user part (``user:password@host``) becomes ``********``."""
    if not isinstance(uri, str):
        return uri
    parts = parse_uri(uri)
    if parts.password is None:
        return mask_secrets(uri, parts.secrets)
    port = f':{parts.port}' if parts.port is not None else ''
    return f'{parts.scheme}://{parts.user}:{MASK}@{parts.host}{port}{parts.rest}'


def uri_password(uri: str) -> str | None:
    """The password in the user part of ``uri``, if any."""
    if not isinstance(uri, str):
        return None
    return parse_uri(uri).password or None


def uri_secrets(uri: t.Any) -> tuple[str, ...]:
    """Every string of ``uri`` that may be a password (as written and percent-decoded), longest first."""
    return parse_uri(uri).secrets if isinstance(uri, str) else ()


def mask_secrets(text: str, secrets: t.Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``********`` (longest first)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


# libvirt's transports, and the drivers of libvirt 9 that a connection URI can name
URI_TRANSPORTS = ('unix', 'ssh', 'libssh', 'libssh2', 'tcp', 'tls', 'ext')
URI_DRIVERS = ('qemu', 'test', 'xen', 'lxc', 'ch', 'bhyve', 'vz', 'parallels', 'openvz', 'vbox', 'vmwareplayer',
               'vmwarews', 'vmwarefusion', 'esx', 'gsx', 'vpx', 'hyperv', 'remote')


def uri_problem(uri: t.Any) -> str | None:
    """What is wrong with ``uri`` as a libvirt connection URI, in a sentence; None when nothing is.

    Checked before libvirt sees the URI: libvirt opens its default hypervisor for an empty one, and reports a bad
    transport or port as a connection that broke or as "Unable to parse URI" with the password in it.
    """
    if uri is None or (isinstance(uri, str) and not uri.strip()):
        return ('uri is empty. libvirt would then connect to a default hypervisor of its own choosing '
                '(LIBVIRT_DEFAULT_URI, uri_default in libvirt.conf, or the first driver that answers), which may '
                'not be the one meant, so it is refused. Name it, e.g. qemu:///system or '
                'qemu+ssh://root@hv1/system.')
    shown = redact_uri(uri)
    if uri != uri.strip():
        return f'uri "{shown}" has blanks around it; libvirt cannot read it. Remove them.'
    parts = parse_uri(uri)
    if parts.scheme is None:
        return (f'uri "{shown}" is not a libvirt URI: it names no driver. Write it as driver[+transport]://'
                '[user@][host][:port]/path, e.g. qemu:///system or qemu+ssh://root@hv1/system.')
    driver, _plus, transport = parts.scheme.lower().partition('+')
    if driver not in URI_DRIVERS:
        return (f'uri "{shown}" names the driver "{driver}", which libvirt does not have (known: '
                f'{", ".join(URI_DRIVERS)}); for KVM it is qemu, as in qemu:///system.')
    if _plus and transport not in URI_TRANSPORTS:
        return (f'uri "{shown}" names the transport "{transport}", which libvirt does not have (known: '
                f'{", ".join(URI_TRANSPORTS)}), as in qemu+ssh://root@hv1/system.')
    if not parts.authority:
        if parts.rest.startswith('/'):
            return None  # qemu:/system: libvirt reads it as qemu:///system
        return (f'uri "{shown}" has no "//" after "{parts.scheme}:"; write {parts.scheme}:///system for the '
                f'local hypervisor or {parts.scheme}+ssh://root@HOST/system for a remote one.')
    if parts.port is not None and parts.port != '':
        if not parts.port.isascii() or not parts.port.isdigit() or not 0 < int(parts.port) < 65536:
            return (f'uri "{shown}" has the port "{mask_secrets(parts.port, parts.secrets)}", which is not a '
                    'TCP port number (1 to 65535).')
    if parts.host.startswith('[') and not parts.host.endswith(']'):
        return f'uri "{shown}" has an IPv6 address without its closing "]".'
    return None
