# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The libvirt connection wrapper and the error mapping shared by every module.

``AnsibleLibvirtModule`` plays the role that ``AnsibleDockerClient`` plays in
community.docker: it merges the common options into the argument spec,
guards the ``libvirt`` import, opens (with a timeout) and closes the
connection, and turns a ``libvirt.libvirtError`` into a message a person
can act on.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
import typing as t

from ansible.module_utils.basic import AnsibleModule, _load_params, missing_required_lib
from ansible.module_utils.common.validation import check_type_int

from ansible_collections.kvm.snapshots.plugins.module_utils._errors import SnapshotError
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
    LIBVIRT_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    LIBVIRT_IMPORT_ERROR = None


DEFAULT_URI = 'qemu:///system'

COMMON_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    'uri': {'type': 'str', 'default': DEFAULT_URI, 'aliases': ['libvirt_uri']},
    'connect_timeout': {'type': 'int', 'default': 30},
    'busy_timeout': {'type': 'int', 'default': 120},
}


class OptionGroup(t.NamedTuple):
    """Options that several modules share: their argument spec, and the AnsibleModule rules that go with them
    (``mutually_exclusive``, ``required_one_of``, ...). A module names the groups it has; AnsibleLibvirtModule
    merges them, the connection options first, then the groups in order, then the module's own options and rules.
    The doc fragments of kvm.snapshots._libvirt document each group."""

    spec: dict[str, dict[str, t.Any]]
    rules: dict[str, list[t.Any]] | None = None


CONNECTION_OPTIONS = OptionGroup(COMMON_ARGUMENT_SPEC)


def merge_options(groups: t.Iterable[OptionGroup], argument_spec: dict[str, t.Any],
                  rules: dict[str, t.Any]) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """The argument spec and AnsibleModule keywords of a module: the connection options, ``groups`` and the
    module's own; a rule list (``required_one_of``, ...) is the groups' entries followed by the module's."""
    spec: dict[str, t.Any] = {}
    merged: dict[str, t.Any] = {}
    for group in (CONNECTION_OPTIONS, *groups, OptionGroup(argument_spec, rules)):
        spec.update(group.spec)
        for key, value in (group.rules or {}).items():
            merged[key] = [*merged[key], *value] if isinstance(value, list) and key in merged else value
    return spec, merged


# libvirt error codes (virErrorNumber) this collection gives a meaning to.
ERR_INTERNAL = 1
ERR_INVALID_ARG = 8
ERR_OPERATION_FAILED = 9
ERR_XML_ERROR = 27
ERR_XML_DETAIL = 35
ERR_SYSTEM_ERROR = 38
ERR_NO_DOMAIN = 42
ERR_AUTH_FAILED = 45
ERR_OPERATION_INVALID = 55
ERR_CONFIG_UNSUPPORTED = 67
ERR_OPERATION_TIMEOUT = 68
ERR_NO_DOMAIN_SNAPSHOT = 72
ERR_ARGUMENT_UNSUPPORTED = 74
ERR_SNAPSHOT_REVERT_RISKY = 77
ERR_OPERATION_UNSUPPORTED = 84
ERR_AGENT_UNRESPONSIVE = 86
ERR_XML_INVALID_SCHEMA = 92
ERR_AGENT_UNSYNCED = 97

# What to do about an error, keyed by libvirt error code.
_HINTS: dict[int, str] = {
    ERR_NO_DOMAIN: 'check the domain name with "virsh list --all" on that hypervisor',
    ERR_NO_DOMAIN_SNAPSHOT: 'list the existing ones with kvm.snapshots.snapshot_info or "virsh snapshot-list"',
    ERR_OPERATION_INVALID: 'the domain is not in a state that allows this (it may be busy, '
                           'being migrated, or in the wrong power state)',
    ERR_CONFIG_UNSUPPORTED: 'the domain configuration does not allow this (for a new snapshot: internal '
                            'snapshots need qcow2 disks; location: external makes external ones)',
    ERR_OPERATION_UNSUPPORTED: 'this libvirt/QEMU does not support the operation for this domain',
    ERR_OPERATION_TIMEOUT: 'another job holds the domain; wait for it to finish and re-run',
    ERR_SNAPSHOT_REVERT_RISKY: 'libvirt considers this revert risky; set force: true to revert anyway',
    ERR_ARGUMENT_UNSUPPORTED: "quiesce and guest agent commands need a guest agent channel: <channel type='unix'>"
                              "<target type='virtio' name='org.qemu.guest_agent.0'/></channel>",
    ERR_AGENT_UNRESPONSIVE: 'quiesce and guest agent commands need qemu-guest-agent running inside the guest; '
                            'start it there (for a snapshot, or leave quiesce off)',
    ERR_AGENT_UNSYNCED: 'the guest agent did not answer in time; check qemu-guest-agent inside the guest',
    ERR_AUTH_FAILED: 'check the credentials for the libvirt URI',
    ERR_XML_DETAIL: 'check the snapshot name and description',
}


if libvirt is not None:
    LibvirtError: type[Exception] = libvirt.libvirtError
else:  # pragma: no cover - exercised only without the binding
    class LibvirtError(Exception):  # type: ignore[no-redef]
        """Stands in for libvirt.libvirtError when the binding is missing."""


FROM_RPC = 7  # virErrorDomain of errors of the connection itself

_CONNECTION_LOST = ('End of file while reading data', 'client socket is closed', 'Cannot write data',
                    'Cannot recv data', 'no connection driver available', 'Broken pipe', 'keepalive timeout')
# the connection could not be made at all (not lost on the way)
_CANNOT_CONNECT = ('Failed to connect socket', 'unable to connect to server')


def version_text(number: int) -> str:
    """libvirt's version number (major * 1000000 + minor * 1000 + micro, as getLibVersion gives it) as X.Y.Z."""
    return f'{number // 1000000}.{number // 1000 % 1000}.{number % 1000}'


def error_code(exc: BaseException) -> int | None:
    """Return the libvirt error code of an exception, or None."""
    get = getattr(exc, 'get_error_code', None)
    return get() if get else None


def connection_lost(exc: BaseException) -> bool:
    """Whether the error says the connection to libvirtd broke (the daemon stopped or restarted)."""
    get_domain = getattr(exc, 'get_error_domain', None)
    text = str(exc)
    return (get_domain is not None and get_domain() == FROM_RPC
            and error_code(exc) in (ERR_INTERNAL, ERR_SYSTEM_ERROR, ERR_OPERATION_INVALID)) \
        or any(marker in text for marker in _CONNECTION_LOST)


def describe(exc: BaseException, action: str) -> str:
    """Turn a libvirt error into one plain sentence: what failed, why, what to do."""
    get_message = getattr(exc, 'get_error_message', None)
    text = (get_message() if get_message else None) or str(exc)
    code = error_code(exc)
    msg = f'{action} failed: {text}'
    if any(marker in text for marker in _CANNOT_CONNECT):
        hint = 'libvirtd does not run there or does not accept connections'
    elif connection_lost(exc):
        hint = ('the connection to libvirtd was lost: the daemon stopped, restarted or stopped answering. '
                'Running guests keep running (QEMU does not need libvirtd); re-run the task once libvirtd '
                'answers again, it carries on from the state the host is in')
    elif 'No space left on device' in text:
        hint = ('the storage under the domain is full; nothing was recorded as a snapshot. '
                'Free space there (a full snapshot needs about the guest\'s used memory) or use disk_only: true')
    else:
        hint = _HINTS.get(code) if code is not None else None
    if hint:
        msg += f' ({hint})'
    if code is not None:
        msg += f' [libvirt error {code}]'
    return msg


def retry_busy(call: t.Callable[[], t.Any], busy_timeout: float) -> t.Any:
    """``call()``, again while libvirt says another job holds the domain, for up to ``busy_timeout`` seconds.

    libvirt itself waits about 30 seconds for a domain's job lock before it
    gives up with error 68; this waits for further rounds, backing off, and
    then lets the last error (which names the job holding the lock) through.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.2
    while True:
        try:
            return call()
        except LibvirtError as exc:
            if error_code(exc) != ERR_OPERATION_TIMEOUT or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


@contextlib.contextmanager
def libvirt_errors(action: str, note: t.Callable[[BaseException], str] | None = None,
                   **details: t.Any) -> t.Iterator[None]:
    """Turn a libvirt error raised in the block into the collection's: a SnapshotError whose message is
    ``describe(exc, action)`` followed by ``note(exc)`` (words that depend on the error), with ``details`` as extra
    keys of the failed result. ``action`` says what was being done ("Deleting snapshot "x" of domain "y"").

    Code in the block that knows what an error means (a snapshot deleted meanwhile) catches it itself and re-raises
    the others, which come here.
    """
    try:
        yield
    except LibvirtError as exc:
        raise SnapshotError(describe(exc, action) + (note(exc) if note else ''), **details) from None


# What the SSH side of a remote URI (qemu+ssh://: the ssh binary, whose stderr libvirt hands back;
# qemu+libssh://: libssh) says when it cannot reach libvirtd, and what that means for the person running
# the task. First match wins; {host} is the host (and port) of the URI.
_SSH_PROBLEMS: tuple[tuple[tuple[str, ...], str], ...] = (
    (('Host key verification failed', 'REMOTE HOST IDENTIFICATION HAS CHANGED', 'HOST KEY VERIFICATION FAILED',
      "Can't verify the session host key"),
     'the SSH host key of {host} could not be verified (it is unknown, or not the one in known_hosts) and ssh '
     'cannot ask here. Check the key, then record it in the known_hosts of the user that runs the module '
     '(ssh-keyscan, or one login by hand; after a reinstall first ssh-keygen -R); qemu+libssh:// URIs read the '
     'file named by known_hosts= in the URI'),
    (('not accessible',),
     'the SSH key file named in the URI (keyfile=) cannot be read by the user that runs the module, and no other '
     'key was accepted by {host}'),
    (("-sock': Permission denied", 'connect failed: Permission denied'),
     'the SSH login to {host} worked, but that user may not use libvirtd there (its socket refused the user): '
     'use root in the URI, or a user in the libvirt group of the hypervisor'),
    (('Permission denied (', 'authentication failed', 'Authentication failed', 'Too many authentication failures'),
     'the SSH login to {host} was refused. Check the user in the URI (root, or a member of the libvirt group on the '
     'hypervisor) and the key (keyfile= in the URI; its public key must be in that user\'s authorized_keys there, '
     'and it must need no passphrase, or be in an ssh-agent)'),
    (('Connection refused',),
     'nothing accepts SSH connections at {host} (connection refused). Check the host and port in the URI and that '
     'sshd runs on the hypervisor'),
    (('Could not resolve hostname', 'Name or service not known', 'Temporary failure in name resolution'),
     'the host name of the URI ({host}) does not resolve'),
    (('No route to host', 'Network is unreachable', 'Connection timed out', 'Operation timed out'),
     '{host} cannot be reached over the network'),
    (('Connection closed by', 'kex_exchange_identification'),
     'the SSH server at {host} closed the connection before the login (too many logins at once for its '
     'MaxStartups, or a firewall or tcp wrapper); retry with fewer forks or ask for a higher MaxStartups'),
    (('nc: not found', 'virt-ssh-helper: not found', 'command not found'),
     'the login to {host} worked, but the hypervisor has neither virt-ssh-helper (part of libvirt\'s daemon '
     'packages, libvirt-daemon on Debian) nor nc (netcat-openbsd) to reach libvirtd with'),
    (('cannot execute binary',),
     'the ssh client could not be started on the machine that runs the module (openssh-client is needed there for '
     'qemu+ssh:// URIs)'),
)

# Text libvirt wraps around the ssh client's stderr
_SSH_WRAPPERS = ('Cannot recv data: ', 'End of file while reading data: ', 'Cannot write data: ')
_SSH_TAILS = (': Connection reset by peer', ': Input/output error', ': Broken pipe')


def _ssh_said(text: str) -> str:
    """The ssh client's own words in a libvirt error: the last few lines, without banners."""
    for wrapper in _SSH_WRAPPERS:
        if text.startswith(wrapper):
            text = text[len(wrapper):]
    for tail in _SSH_TAILS:
        if text.endswith(tail):
            text = text[:-len(tail)]
    lines = [line.strip() for line in text.splitlines() if line.strip() and set(line.strip()) != {'@'}]
    return ' / '.join(lines[-5:])


def _uri_host(uri: str) -> str:
    parts = parse_uri(uri)
    host = parts.host or '?'
    return f'{host}:{parts.port}' if parts.port else host


def connect_failure(exc: BaseException, uri: str) -> str:
    """The message for a connection to ``uri`` that failed with ``exc``.

    For an SSH transport, what went wrong (host key, login, nothing listening, ...) in plain words first,
    then what ssh said; for anything else the libvirt error with its hint. A password of ``uri`` is masked,
    also where libvirt's own text repeats the URI ("Unable to parse URI ...") or ssh the user part.
    """
    secrets = uri_secrets(uri)
    shown = redact_uri(uri)
    get_message = getattr(exc, 'get_error_message', None)
    text = mask_secrets((get_message() if get_message else None) or str(exc), secrets)
    code = error_code(exc)
    scheme = parse_uri(uri).scheme or ''
    if 'ssh' in scheme:
        for markers, problem in _SSH_PROBLEMS:
            if any(marker in text for marker in markers):
                return (f'Could not connect to libvirt at {shown}: {problem.format(host=_uri_host(shown))}. '
                        f'Nothing was changed. (ssh said: {_ssh_said(text)})'
                        + (f' [libvirt error {code}]' if code is not None else ''))
    if 'no connection driver available' in text:
        return (f'Could not connect to libvirt at {shown}: libvirt on the machine that runs the module has no '
                f'driver for "{scheme}" (not installed there, or its daemon does not run). Nothing was changed.'
                + (f' [libvirt error {code}]' if code is not None else ''))
    if 'Unable to parse URI' in text or 'invalid URI' in text:
        return (f'Could not connect to libvirt at {shown}: libvirt cannot read this URI ({text}). Nothing was '
                'changed. Characters such as "/", "?", "#", "@" or "[" in the user or password part must be written '
                'percent-encoded (%2F, %3F, %23, %40, %5B).'
                + (f' [libvirt error {code}]' if code is not None else ''))
    return mask_secrets(describe(exc, f'Connecting to libvirt at {shown}'), secrets) \
        + ' Check that libvirtd runs on the hypervisor and that this user may use the URI.'


def _ignore_libvirt_error(_ctx: t.Any, _err: t.Any) -> None:
    """Keep libvirt from printing errors on stderr: we report them ourselves."""


_EVENT_LOOP: list[threading.Thread] = []


def _start_event_loop() -> None:
    """Run libvirt's default event loop in a thread, once per process.

    The client sends keepalive messages only while an event loop runs; without them a call
    to a libvirtd that stopped answering (hung, frozen, or a host that dropped off the network)
    would wait for ever.
    """
    if _EVENT_LOOP:
        return
    libvirt.virEventRegisterDefaultImpl()

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    worker = threading.Thread(target=loop, name='libvirt-events', daemon=True)
    worker.start()
    _EVENT_LOOP.append(worker)


def keepalive_for(timeout: int) -> tuple[int, int] | None:
    """(interval, count) of libvirt keepalive so that a silent libvirtd is given up after about ``timeout`` s."""
    if not timeout or timeout <= 0:
        return None
    return max(1, timeout // 6), 5


class _LongestFirst(set):
    """A set of no_log values that ansible-core reads longest first: before 2.19 it masks them in the order the
    set gives them, and a reading of a password that is part of a longer one (a password holding "@") masked
    first would leave the rest of the longer one in the output."""

    def __iter__(self) -> t.Iterator[t.Any]:
        return iter(sorted(set.__iter__(self), key=lambda value: len(str(value)), reverse=True))


class _MaskingModule(AnsibleModule):
    """AnsibleModule that knows the password of the ``uri`` option before it validates anything.

    ``uri`` is not ``no_log``: that would hide the hypervisor in every message and result. Its password (every
    reading of it, as written and percent-decoded) becomes a no_log value as soon as the arguments are read, so
    that Ansible masks it everywhere in the output, ``invocation.module_args`` included, also when the
    validation of another option fails.
    """

    def _load_params(self) -> None:
        super()._load_params()
        self.no_log_values = _LongestFirst(self.no_log_values)
        params = self.params if isinstance(self.params, dict) else {}
        for key in ('uri', 'libvirt_uri'):
            self.no_log_values.update(uri_secrets(params.get(key)))


# The integer options' bounds (None: no bound). Past them a value cannot mean anything useful and would break
# something below: a thread join or libvirt keepalive that cannot take the number, one lock file per slot.
OPTION_RANGES: dict[str, tuple[int | None, int | None, str]] = {
    'connect_timeout': (0, 86400, 'seconds, 0 for no limit'),
    'busy_timeout': (0, 86400, 'seconds'),
    'hypervisor_jobs': (None, 1024, 'jobs at once, 0 for no limit'),
    'hypervisor_jobs_timeout': (0, 31 * 86400, 'seconds'),
    'agent_timeout': (1, 3600, 'seconds the guest agent has to answer'),
    'free_space_margin_mb': (0, None, 'MiB'),
}


def _not_finite(value: t.Any) -> bool:
    """Whether ansible-core's int conversion would raise something else than the TypeError or ValueError that
    AnsibleModule turns into a message: OverflowError for "inf", "-Infinity" or an infinite float, and for a list
    such as [9223372036854775808, "", ""] (which it hands to decimal.Decimal as a tuple of digits)."""
    try:
        check_type_int(value)
    except (TypeError, ValueError):
        return False
    except Exception:  # pylint: disable=broad-exception-caught
        return True
    return False


def infinite_int_options(spec: dict[str, t.Any]) -> dict[str, t.Any]:
    """The int options given an infinite value (raw module arguments), which AnsibleModule cannot report."""
    try:
        raw = _load_params()
    except Exception:  # pylint: disable=broad-exception-caught
        return {}  # AnsibleModule reports unreadable arguments itself
    if not isinstance(raw, dict):
        return {}  # nothing read (ansible-test's argument-spec introspection stands in a _load_params that returns None)
    return {k: v for k, v in raw.items() if k in spec and spec[k].get('type') == 'int' and _not_finite(v)}


def option_range_problem(params: dict[str, t.Any]) -> str | None:
    """A message for the first integer option outside OPTION_RANGES, or None."""
    for option, (low, high, unit) in OPTION_RANGES.items():
        value = params.get(option)
        if not isinstance(value, int) or (low is None or value >= low) and (high is None or value <= high):
            continue
        shown = str(value) if len(str(value)) <= 20 else f'{str(value)[:12]}... ({len(str(value))} digits)'
        if low is None:
            limits = f'at most {high}'
        else:
            limits = f'from {low} to {high}' if high is not None else f'at least {low}'
        return f'{option} is {shown}; it must be {limits} ({unit}). Nothing was changed.'
    return None


class AnsibleLibvirtModule:
    """AnsibleModule plus a libvirt connection for the kvm.snapshots modules."""

    def __init__(self, argument_spec: dict[str, t.Any], groups: t.Iterable[OptionGroup] = (), **kwargs: t.Any) -> None:
        spec, kwargs = merge_options(groups, argument_spec, kwargs)
        # ansible-core lets an OverflowError (a traceback) out for an int option given "inf": taken as raw here,
        # and refused with a message below
        infinite = infinite_int_options(spec)
        spec.update({k: dict(spec[k], type='raw') for k in infinite})
        self.module = _MaskingModule(argument_spec=spec, **kwargs)
        if infinite:
            self.module.fail_json(msg=f'{", ".join(sorted(infinite))}: must be a whole number, not '
                                      f'{", ".join(repr(v)[:60] for v in infinite.values())}. Nothing was changed.')
        self.params = self.module.params
        self.module.no_log_values.update(uri_secrets(self.params['uri']))  # masked wherever it would appear
        problem = uri_problem(self.params['uri'])
        if problem:
            self.module.fail_json(msg=f'{problem} Nothing was changed.')
        self.check_mode = self.module.check_mode
        self.diff_mode = self.module._diff
        self._conn: t.Any = None
        self._libvirt_version: int | None = None
        # the connection and the version are made once, also when a batch's threads ask for them at the same time
        self._once = threading.RLock()
        out_of_range = option_range_problem(self.params)
        if out_of_range:
            self.module.fail_json(msg=out_of_range)
        if libvirt is None:
            self.module.fail_json(
                msg=missing_required_lib(
                    'libvirt-python',
                    reason=f'to talk to libvirt (the module ran with {sys.executable})',
                ) + ' On Debian/Ubuntu install the package python3-libvirt, elsewhere '
                    f'"{sys.executable} -m pip install libvirt-python" (it builds against libvirt-dev); '
                    'or run the module from a machine that has it and reach the hypervisor '
                    'with a remote uri such as qemu+ssh://root@hypervisor/system.',
                # the import's traceback for -vvv only: ansible-core before 2.19 shows a result's exception at
                # every verbosity, above the message
                **({'exception': LIBVIRT_IMPORT_ERROR} if self.module._verbosity >= 3 else {}),
            )
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)

    @property
    def uri(self) -> str:
        return self.params['uri']

    @property
    def display_uri(self) -> str:
        """The URI as messages show it (without a password)."""
        return redact_uri(self.uri)

    @property
    def libvirt_version(self) -> int:
        """The libvirt version of the daemon (as getLibVersion gives it; version_text makes X.Y.Z), read once."""
        with self._once:
            if self._libvirt_version is None:
                self._libvirt_version = self.conn.getLibVersion()
        return self._libvirt_version

    @property
    def conn(self) -> t.Any:
        """The libvirt connection, opened on first use."""
        with self._once:
            if self._conn is None:
                self._conn = self._open()
        return self._conn

    def _open(self) -> t.Any:
        timeout = self.params['connect_timeout']
        outcome: dict[str, t.Any] = {}
        keepalive = keepalive_for(timeout)
        if keepalive:
            _start_event_loop()

        def opener() -> None:
            try:
                outcome['conn'] = libvirt.open(self.uri)
            except Exception as exc:  # handed to the calling thread
                outcome['error'] = exc

        worker = threading.Thread(target=opener, name='libvirt-open', daemon=True)
        worker.start()
        worker.join(timeout if timeout and timeout > 0 else None)
        if worker.is_alive():
            raise SnapshotError(
                f'Could not connect to libvirt at {self.display_uri} within {timeout} seconds '
                '(the host does not answer, or an SSH prompt is waiting for input); '
                'check that libvirtd runs there and that the connection needs no interaction, '
                'or raise connect_timeout.')
        if 'error' in outcome:
            raise SnapshotError(connect_failure(outcome['error'], self.uri))
        conn = outcome['conn']
        if keepalive:
            try:
                conn.setKeepAlive(*keepalive)
            except LibvirtError:
                pass  # drivers without keepalive (test:///, qemu:///embed) talk to no daemon that could hang
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except LibvirtError:
                pass  # the daemon may already be gone; nothing is left to release
            self._conn = None

    def lookup_domain(self, name: str) -> t.Any:
        """Return the domain called ``name`` or raise a SnapshotError saying it does not exist."""
        if not isinstance(name, str) or not name.strip():
            # domain: "{{ none }}" passes Ansible's required and one-of checks as null
            raise SnapshotError(f'The domain option is {"null" if name is None else "empty"}: give the name of a '
                                'domain (a variable that came out empty?). Nothing was changed.')
        if '\x00' in name:  # libvirt-python cannot pass it on (ValueError), and no domain has one
            raise SnapshotError(f'The domain name {name!r} holds a NUL character; no domain is called so. '
                                'Nothing was changed.', domain=name)
        with libvirt_errors(f'Looking up domain "{name}"', domain=name):
            try:
                return self.conn.lookupByName(name)
            except LibvirtError as exc:
                if error_code(exc) == ERR_NO_DOMAIN:
                    raise SnapshotError(
                        f'Domain "{name}" does not exist on {self.display_uri} '
                        '(check the name with "virsh list --all" on that hypervisor).',
                        domain=name) from None
                raise

    def fail(self, exc: BaseException, **extra: t.Any) -> t.NoReturn:
        """Fail the task with the message of ``exc``; fail_json adds the traceback of the exception being handled
        where ansible-core shows it (-vvv before 2.19, its traceback setting since). An ``exception`` given here
        would make ansible-core before 2.19 print "An exception occurred during task execution" above the
        message at every verbosity."""
        self.close()
        if isinstance(exc, SnapshotError):
            msg, details = exc.msg, exc.details
        elif isinstance(exc, LibvirtError):
            msg, details = describe(exc, 'libvirt call'), {}
        else:
            msg, details = f'Unexpected error: {exc.__class__.__name__}: {exc}', {}
        details.update(extra)
        self.module.fail_json(msg=mask_secrets(msg, uri_secrets(self.uri)), **details)

    def exit(self, **result: t.Any) -> t.NoReturn:
        self.close()
        self.module.exit_json(**result)
