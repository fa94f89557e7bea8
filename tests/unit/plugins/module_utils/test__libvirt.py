# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""module_utils/_libvirt.py: the error mapping, the busy-domain retry, the local-URI check, the connection's faults
(lost, silent) and its URIs (passwords masked everywhere, problems said before libvirt is asked)."""

from __future__ import annotations

import json

import libvirt
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvm.snapshots.plugins.module_utils import _libvirt, _uri
from ansible_collections.kvm.snapshots.plugins.modules import snapshot_info
from ansible_collections.kvm.snapshots.tests.unit.helpers import fake_error


def real_error(uri='test:///default', name='no-such-domain'):
    """A libvirtError as libvirt really raises it (not a hand-made one)."""
    conn = libvirt.open(uri)
    try:
        conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError('lookup of a missing domain did not fail')


def test_describe_a_real_error_names_action_hint_and_code():
    msg = _libvirt.describe(real_error(), 'Looking up x')
    assert msg.startswith('Looking up x failed: ')
    assert "Domain not found" in msg
    assert 'virsh list --all' in msg
    assert msg.endswith('[libvirt error 42]')


def test_connection_lost_is_explained():
    error = fake_error(1, 'internal error: client socket is closed', domain=_libvirt.FROM_RPC)
    assert _libvirt.connection_lost(error)
    msg = _libvirt.describe(error, 'Creating snapshot "s"')
    assert 'connection to libvirtd was lost' in msg and 'Running guests keep running' in msg
    assert not _libvirt.connection_lost(real_error())


def test_full_storage_is_explained():
    error = fake_error(1, "internal error: unable to execute QEMU command 'savevm': No space left on device")
    assert 'storage under the domain is full' in _libvirt.describe(error, 'Creating snapshot "s"')


def test_retry_busy_waits_for_the_lock_then_succeeds():
    calls = []

    def call():
        calls.append(1)
        if len(calls) < 3:
            raise fake_error(_libvirt.ERR_OPERATION_TIMEOUT, 'cannot acquire state change lock')
        return 'done'

    assert _libvirt.retry_busy(call, busy_timeout=10) == 'done'
    assert len(calls) == 3


def test_retry_busy_gives_up_with_the_last_error():
    def call():
        raise fake_error(_libvirt.ERR_OPERATION_TIMEOUT, 'cannot acquire state change lock (held by monitor=x)')

    with pytest.raises(libvirt.libvirtError) as raised:
        _libvirt.retry_busy(call, busy_timeout=0.5)
    assert 'held by monitor=x' in str(raised.value)


def test_retry_busy_does_not_retry_other_errors():
    calls = []

    def call():
        calls.append(1)
        raise fake_error(_libvirt.ERR_NO_DOMAIN_SNAPSHOT, 'no snapshot')

    with pytest.raises(libvirt.libvirtError):
        _libvirt.retry_busy(call, busy_timeout=10)
    assert len(calls) == 1


SSH_URI = 'qemu+ssh://root@hv1.example.com:2222/system?keyfile=/root/.ssh/id_ed25519&no_tty=1'

# What libvirt 9.0 really raised on Debian 12 for each case (ssh transport: ssh's stderr inside an RPC error;
# libssh transport: libssh's own words).
SSH_CASES = [
    ('Cannot recv data: ssh: connect to host hv1.example.com port 2222: Connection refused: Connection reset by peer',
     38, 'nothing accepts SSH connections at hv1.example.com:2222 (connection refused)'),
    ("unable to connect to server at 'hv1.example.com:2222': Connection refused",
     38, 'nothing accepts SSH connections at hv1.example.com:2222'),
    ('Cannot recv data: root@hv1.example.com: Permission denied (publickey).: Connection reset by peer',
     38, 'the SSH login to hv1.example.com:2222 was refused'),
    ('authentication failed: All provided authentication methods with credentials were rejected by the server',
     45, 'the SSH login to hv1.example.com:2222 was refused'),
    ('Cannot recv data: Warning: Identity file /nonexistent not accessible: No such file or directory.\n'
     'root@hv1.example.com: Permission denied (publickey).: Connection reset by peer',
     38, 'the SSH key file named in the URI (keyfile=) cannot be read'),
    ('Cannot recv data: No ED25519 host key is known for [hv1.example.com]:2222 and you have requested strict '
     'checking.\r\nHost key verification failed.: Connection reset by peer',
     38, 'the SSH host key of hv1.example.com:2222 could not be verified'),
    ('Cannot recv data: @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n'
     '@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n'
     '@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n'
     'Host key for [hv1.example.com]:2222 has changed and you have requested strict checking.\r\n'
     'Host key verification failed.: Connection reset by peer',
     38, 'the SSH host key of hv1.example.com:2222 could not be verified'),
    ("authentication failed: !!! SSH HOST KEY VERIFICATION FAILED !!!: Identity of host 'hv1.example.com:2222' "
     'differs from stored identity.', 45, 'the SSH host key of hv1.example.com:2222 could not be verified'),
    ("libssh transport error: No user interaction callback provided: Can't verify the session host key",
     98, 'the SSH host key of hv1.example.com:2222 could not be verified'),
    ('Cannot recv data: ssh: Could not resolve hostname hv1.example.com: Name or service not known: '
     'Connection reset by peer', 38, 'the host name of the URI (hv1.example.com:2222) does not resolve'),
    ('Cannot recv data: ssh: connect to host hv1.example.com port 2222: No route to host: Connection reset by peer',
     38, 'hv1.example.com:2222 cannot be reached over the network'),
    ('End of file while reading data: sh: 1: nc: not found: Input/output error',
     38, 'neither virt-ssh-helper'),
    ("End of file while reading data: nc: unix connect failed: Permission denied: Input/output error",
     38, 'may not use libvirtd there'),
    ('Cannot recv data: kex_exchange_identification: read: Connection reset by peer: Connection reset by peer',
     38, 'closed the connection before the login'),
]


@pytest.mark.parametrize('text,code,problem', SSH_CASES)
def test_ssh_connection_problems_are_named(text, code, problem):
    msg = _libvirt.connect_failure(fake_error(code, text, domain=_libvirt.FROM_RPC), SSH_URI)
    assert msg.startswith(f'Could not connect to libvirt at {SSH_URI}: ')
    assert problem in msg.split('. Nothing was changed.')[0]
    assert 'Nothing was changed.' in msg and msg.endswith(f'[libvirt error {code}]')
    # not mistaken for a libvirtd that stopped in the middle of the work
    assert 'connection to libvirtd was lost' not in msg
    # ssh's own words are kept, without libvirt's wrapping and without banners
    said = msg[msg.index('(ssh said: '):]
    assert 'Cannot recv data' not in said and 'Input/output error' not in said and '@@@' not in said


def test_ssh_said_keeps_the_last_lines_of_a_long_warning():
    text = ('Cannot recv data: @@@@\r\n@ WARNING @\r\n@@@@\r\nline 1\r\nline 2\r\nline 3\r\nline 4\r\nline 5\r\n'
            'line 6: Connection reset by peer')
    assert _libvirt._ssh_said(text) == 'line 2 / line 3 / line 4 / line 5 / line 6'


def test_ssh_markers_count_only_for_ssh_uris():
    """A local socket that refuses a user is not an SSH login problem."""
    error = fake_error(38, "Failed to connect socket to '/var/run/libvirt/libvirt-sock': Permission denied",
                       domain=_libvirt.FROM_RPC)
    msg = _libvirt.connect_failure(error, 'qemu:///system')
    assert msg.startswith('Connecting to libvirt at qemu:///system failed: ')
    assert 'SSH' not in msg and 'Check that libvirtd runs on the hypervisor' in msg


def test_unknown_ssh_failure_falls_back_to_the_libvirt_error():
    error = fake_error(38, 'Cannot recv data: something new: Connection reset by peer', domain=_libvirt.FROM_RPC)
    msg = _libvirt.connect_failure(error, SSH_URI)
    assert msg.startswith(f'Connecting to libvirt at {SSH_URI} failed: Cannot recv data: something new')


def test_connecting_to_a_refused_port_fails_fast_with_a_plain_message():
    """A real libvirt client and a real ssh: a local port on which nothing listens."""
    import socket  # pylint: disable=import-outside-toplevel
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    uri = f'qemu+ssh://root@127.0.0.1:{port}/system?no_tty=1'
    with pytest.raises(libvirt.libvirtError) as raised:
        libvirt.open(uri)
    msg = _libvirt.connect_failure(raised.value, uri)
    assert f'nothing accepts SSH connections at 127.0.0.1:{port} (connection refused)' in msg


def test_is_local_uri():
    assert _uri.is_local_uri('qemu:///system')
    assert _uri.is_local_uri('qemu+ssh://localhost/system')
    assert not _uri.is_local_uri('qemu+ssh://root@hv1.example.com/system')


# libvirt_errors: the one place a libvirt error becomes the collection's

def test_libvirt_errors_turns_a_real_error_into_a_snapshot_error():
    with pytest.raises(_libvirt.SnapshotError) as raised:
        with _libvirt.libvirt_errors('Looking up x', domain='x'):
            raise real_error()
    assert raised.value.msg == _libvirt.describe(real_error(), 'Looking up x')
    assert raised.value.details == {'domain': 'x'}
    assert raised.value.__suppress_context__  # the libvirt traceback is not chained onto the message


def test_libvirt_errors_adds_the_note_of_the_error():
    error = fake_error(_libvirt.ERR_OPERATION_FAILED, 'boom')
    with pytest.raises(_libvirt.SnapshotError) as raised:
        with _libvirt.libvirt_errors('Doing y', note=lambda exc: f'; noted {exc.get_error_code()}'):
            raise error
    assert raised.value.msg == 'Doing y failed: boom [libvirt error 9]; noted 9'
    assert raised.value.details == {}


def test_libvirt_errors_lets_other_errors_and_values_through():
    with pytest.raises(_libvirt.SnapshotError, match='^already plain$'):
        with _libvirt.libvirt_errors('Doing z'):
            raise _libvirt.SnapshotError('already plain')
    with pytest.raises(KeyError):
        with _libvirt.libvirt_errors('Doing z'):
            raise KeyError('a bug stays a bug')

    def looked_up():
        with _libvirt.libvirt_errors('Doing z'):
            return 'found'
    assert looked_up() == 'found'


def test_libvirt_errors_takes_what_the_block_re_raises():
    def lookup(name):
        with _libvirt.libvirt_errors(f'Looking up "{name}"'):
            try:
                raise real_error(name=name)
            except libvirt.libvirtError as exc:
                if name == 'missing-is-fine':
                    return None
                raise
    assert lookup('missing-is-fine') is None
    with pytest.raises(_libvirt.SnapshotError, match=r'^Looking up "other" failed: .*\[libvirt error 42\]$'):
        lookup('other')


# merge_options: the one way a module's options are put together

def test_merge_options_connection_first_then_the_groups_then_the_module():
    from ansible_collections.kvm.snapshots.plugins.module_utils._batch import BATCH_MODULE_KWARGS, BATCH_OPTIONS
    from ansible_collections.kvm.snapshots.plugins.module_utils._jobs import JOBS_OPTIONS

    own = {'match': {'type': 'str', 'required': True}}
    spec, rules = _libvirt.merge_options((BATCH_OPTIONS, JOBS_OPTIONS), own,
                                         {'supports_check_mode': True, 'required_one_of': [('keep', 'older_than')]})
    assert list(spec) == ['uri', 'connect_timeout', 'busy_timeout', 'domain', 'domains', 'parallel',
                          'hypervisor_jobs', 'hypervisor_jobs_timeout', 'match']
    assert spec['uri'] == _libvirt.COMMON_ARGUMENT_SPEC['uri'] and spec['match'] == own['match']
    assert rules == {'mutually_exclusive': [('domain', 'domains')],
                     'required_one_of': [('domain', 'domains'), ('keep', 'older_than')],
                     'supports_check_mode': True}
    assert BATCH_MODULE_KWARGS['required_one_of'] == [('domain', 'domains')]  # the group itself is left as it was


def test_merge_options_lets_a_module_replace_a_shared_option():
    spec, rules = _libvirt.merge_options((), {'busy_timeout': {'type': 'int', 'default': 5}}, {})
    assert spec['busy_timeout'] == {'type': 'int', 'default': 5} and list(spec)[0] == 'uri' and rules == {}


# URIs with passwords

@pytest.mark.parametrize('uri, shown', [
    ('qemu+tcp://admin:s3cret@hv1:16509/system', 'qemu+tcp://admin:********@hv1:16509/system'),
    ('qemu+ssh://root:p@ss:w0rd@hv1/system?keyfile=/k', 'qemu+ssh://root:********@hv1/system?keyfile=/k'),
    ('qemu+ssh://root@hv1/system', 'qemu+ssh://root@hv1/system'),
    ('qemu:///system', 'qemu:///system'),
    ('test:///default', 'test:///default'),
    ('qemu+tcp://[::1/system', 'qemu+tcp://[::1/system'),  # not readable by urllib: left to libvirt
])
def test_redact_uri(uri, shown):
    assert _uri.redact_uri(uri) == shown


def test_uri_password():
    assert _uri.uri_password('qemu+tcp://admin:s3cret@hv1/system') == 's3cret'
    assert _uri.uri_password('qemu+ssh://root@hv1/system') is None
    assert _uri.uri_password('qemu+tcp://[::1/system') is None


# connection faults

def test_keepalive_follows_connect_timeout():
    assert _libvirt.keepalive_for(30) == (5, 5)  # libvirt's own default: silent for about 30 s
    assert _libvirt.keepalive_for(6) == (1, 5)
    assert _libvirt.keepalive_for(1) == (1, 5)
    assert _libvirt.keepalive_for(0) is None  # wait for ever
    assert _libvirt.keepalive_for(-1) is None


@pytest.mark.parametrize('text', ["Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory",
                                  "unable to connect to server at 'hv1:16509': Connection refused"])
def test_cannot_connect_is_not_a_lost_connection(text):
    msg = _libvirt.describe(fake_error(38, text, _libvirt.FROM_RPC), 'Connecting to libvirt at qemu:///system')
    assert 'libvirtd does not run there or does not accept connections' in msg
    assert 'was lost' not in msg


def test_keepalive_timeout_is_a_lost_connection():
    error = fake_error(1, 'internal error: connection closed due to keepalive timeout', _libvirt.FROM_RPC)
    assert _libvirt.connection_lost(error)
    msg = _libvirt.describe(error, 'Creating snapshot "s"')
    assert 'stopped answering' in msg and 'Running guests keep running' in msg


# the module wrapper: the password never reaches the output

def test_module_masks_the_uri_password(monkeypatch, capsys):

    def refuse(uri):
        raise fake_error(38, "unable to connect to server at 'hv1:16509': Connection refused", _libvirt.FROM_RPC)

    monkeypatch.setattr(_libvirt.libvirt, 'open', refuse)
    with patch_module_args({'uri': 'qemu+tcp://admin:s3cret-pw@hv1:16509/system', 'connect_timeout': 5}):
        client = _libvirt.AnsibleLibvirtModule({})
        with pytest.raises(SystemExit):
            try:
                client.conn  # pylint: disable=pointless-statement
            except _libvirt.SnapshotError as exc:
                client.fail(exc)
    out = capsys.readouterr().out
    assert 's3cret-pw' not in out
    assert 'qemu+tcp://admin:********@hv1:16509/system' in out


# URIs: the password found whatever characters it holds, and masked in every message and in
# ``invocation.module_args``; an empty URI, a driver, transport or port libvirt does not have refused up front
# with what is wrong, before libvirt is asked

# Passwords with every character urllib takes for the end of the authority, and some more.
HOSTILE = ['S3c/ret', 'S3c#ret', 'S3c?ret', 'S3c[ret', 'S3c]ret', 'S3c@ret', 'p@ss:w0rd', 'a/b?c#d[e]f@g',
           '@/@', 'x:y:z', 'ümlaut-ß', 'with space', '%2F-encoded%40', 'qemu+ssh://evil@hv2/']


def _cases():
    for password in HOSTILE:
        yield f'qemu+ssh://root:{password}@hv1/system', 'qemu+ssh://root:********@hv1/system'
        yield f'qemu+tcp://admin:{password}@hv1:16509/system?x=1', 'qemu+tcp://admin:********@hv1:16509/system?x=1'
        yield f'qemu+libssh://u:{password}@[fe80::1]:2222/system', 'qemu+libssh://u:********@[fe80::1]:2222/system'
        yield f'qemu+unix://root:{password}@/system', 'qemu+unix://root:********@/system'


@pytest.mark.parametrize('uri, shown', list(_cases()))
def test_redact_uri_hostile(uri, shown):
    password = uri.split(':', 2)[2].rsplit('@', 1)[0]
    assert _uri.redact_uri(uri) == shown
    assert _uri.uri_password(uri) == password
    assert password in _uri.uri_secrets(uri)
    assert password not in _uri.mask_secrets(f'Unable to parse URI {uri}', _uri.uri_secrets(uri))


@pytest.mark.parametrize('uri', [
    'qemu:///system', 'test:///default', 'qemu+ssh://root@hv1/system?keyfile=/root/.ssh/id&no_tty=1',
    'qemu+ssh://hv1/system', 'qemu+tcp://[::1]:16509/system', 'qemu+ssh://user@corp@hv1/system',
])
def test_no_password_no_change(uri):
    assert _uri.redact_uri(uri) == uri
    assert _uri.uri_password(uri) is None
    assert _uri.uri_secrets(uri) == ()


def test_at_sign_in_the_query_masks_every_reading():
    """An "@" in the query makes two readings possible; both passwords are masked, neither is shown."""
    uri = 'qemu+ssh://root:pw1@hv1/system?keyfile=/home/me@corp/key'
    secrets = _uri.uri_secrets(uri)
    assert 'pw1' in secrets
    assert 'pw1' not in _uri.redact_uri(uri)


def test_percent_encoded_password_masked_decoded_too():
    uri = 'qemu+tcp://admin:S3c%2Fret@hv1/system'
    assert {'S3c%2Fret', 'S3c/ret'} <= set(_uri.uri_secrets(uri))


@pytest.mark.parametrize('password', HOSTILE)
def test_libvirt_parse_error_is_masked(password):
    uri = f'qemu+ssh://root:{password}@hv1/system'
    msg = _libvirt.connect_failure(fake_error(45, f'internal error: Unable to parse URI {uri}', 45), uri)
    assert password not in msg
    assert 'qemu+ssh://root:********@hv1/system' in msg
    assert 'percent-encoded' in msg


def test_ssh_error_naming_the_user_part_is_masked():
    uri = 'qemu+ssh://root:Hunter2@hv1/system'
    error = fake_error(38, 'Cannot recv data: root:Hunter2@hv1: Permission denied (publickey).: Connection reset by peer',
                       _libvirt.FROM_RPC)
    msg = _libvirt.connect_failure(error, uri)
    assert 'Hunter2' not in msg and 'SSH login to hv1 was refused' in msg


# The module: nothing of the password in its output, whatever fails

def _run(args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            snapshot_info.main()
    out = capsys.readouterr().out
    return out, json.loads(out)


@pytest.mark.parametrize('password', HOSTILE)
def test_module_output_never_holds_the_password(password, capsys):
    # libvirt cannot even read most of these: its "Unable to parse URI ..." names the whole URI
    out, result = _run({'uri': f'qemu+tcp://admin:{password}@127.0.0.1:1/system', 'connect_timeout': 10}, capsys)
    assert result['failed']
    assert password not in out and json.dumps(password)[1:-1] not in out
    assert 'admin:********@127.0.0.1:1' in result['msg']
    if 'invocation' in result:  # not returned since ansible-core 2.21 (the whole output is checked above)
        assert result['invocation']['module_args']['uri'] == 'qemu+tcp://admin:********@127.0.0.1:1/system'


@pytest.mark.parametrize('password', ['S3c/ret', 'S3c@ret', 'a/b?c#d[e]f@g'])
def test_password_masked_when_another_option_is_refused(password, capsys):
    """Argument validation fails before the module's own code runs: the password is masked all the same."""
    out, result = _run({'libvirt_uri': f'qemu+ssh://root:{password}@hv1/system', 'connect_timeout': 'soon'}, capsys)
    assert result['failed'] and 'connect_timeout' in result['msg']
    assert password not in out


def test_module_works_through_a_uri_with_a_password(capsys):
    """A password libvirt ignores (the test driver): the module works, and shows the URI masked."""
    out, result = _run({'uri': 'test://root:Pa55/w@rd@/default'.replace('/w@', '%2Fw%40'),
                        'domain': 'test'}, capsys)
    assert not result.get('failed'), result
    assert 'Pa55' not in out
    if 'invocation' in result:  # not returned since ansible-core 2.21
        assert result['invocation']['module_args']['uri'] == 'test://root:********@/default'


# Item 6: what is wrong with the URI, said before libvirt is asked

@pytest.mark.parametrize('uri, says', [
    ('', 'uri is empty'),
    ('   ', 'uri is empty'),
    (None, 'uri is empty'),
    (' qemu:///system', 'blanks around it'),
    ('qemu', 'names no driver'),
    ('bogus:///system', 'names the driver "bogus"'),
    ('kvm+ssh://root@hv1/system', 'names the driver "kvm"'),
    ('qemu+bogus://hv1/system', 'names the transport "bogus"'),
    ('qemu+sssh://hv1/system', 'names the transport "sssh"'),
    ('qemu+ssh://hv1:99999/system', 'port "99999"'),
    ('qemu+ssh://hv1:0/system', 'port "0"'),
    ('qemu+tcp://hv1:22x/system', 'port "22x"'),
    ('qemu+tcp://hv1:-1/system', 'port "-1"'),
    ('qemu+tcp://[::1/system', 'closing "]"'),
    ('qemu:system', 'no "//"'),
])
def test_uri_problem(uri, says):
    problem = _uri.uri_problem(uri)
    assert problem is not None and says in problem


@pytest.mark.parametrize('uri', ['qemu:///system', 'qemu:/system', 'test:///default', 'qemu+ssh://root@hv1/system',
                                 'qemu+ssh://root@hv1:2222/system?keyfile=/k&no_tty=1', 'QEMU+SSH://hv1/system',
                                 'qemu+tcp://[fe80::1]:16509/system', 'qemu+unix:///system?socket=/run/x.sock',
                                 'qemu+ext:///system?command=/bin/true', 'qemu+libssh2://hv1/system'])
def test_uri_accepted(uri):
    assert _uri.uri_problem(uri) is None


def test_bad_port_password_masked():
    problem = _uri.uri_problem('qemu+tcp://admin:S3c/ret@hv1:99x/system')
    assert 'S3c/ret' not in problem and 'admin:********@hv1:99x' in problem


@pytest.mark.parametrize('uri, says', [
    ('', 'uri is empty'),
    ('bogus+ssh://hv1/system', 'names the driver "bogus"'),
    ('qemu+ssh://hv1:99999/system', 'port "99999"'),
])
def test_module_refuses_the_uri_before_libvirt(uri, says, capsys, monkeypatch):
    """Refused with what is wrong with the URI, not as a lost connection, and libvirt is never asked."""
    def no_open(_uri):
        raise AssertionError('libvirt.open was called')

    monkeypatch.setattr(_libvirt.libvirt, 'open', no_open)
    _out, result = _run({'uri': uri}, capsys)
    assert result['failed'] and says in result['msg'] and 'Nothing was changed' in result['msg']
    assert 'was lost' not in result['msg']


def test_module_without_a_driver_for_the_scheme_says_so(capsys):
    """A driver libvirt knows but this libvirt cannot open (no such daemon here): not "connection lost"."""
    _out, result = _run({'uri': 'vbox:///session', 'connect_timeout': 10}, capsys)
    assert result['failed'] and 'was lost' not in result['msg'], result
    assert 'vbox' in result['msg']


def test_redact_uri_filter():
    """The roles' filter is the modules' redact_uri."""
    from ansible_collections.kvm.snapshots.plugins.filter.redact_uri import FilterModule  # pylint: disable=import-outside-toplevel

    redact = FilterModule().filters()['redact_uri']
    assert redact('qemu+ssh://root:a/b?c#d[e]f@g@hv1/system') == 'qemu+ssh://root:********@hv1/system'
    assert redact('qemu:///system') == 'qemu:///system'


# Generated passwords: any characters but the control ones, "@" and "/" included

from hypothesis import given, settings, strategies as st  # noqa: E402  pylint: disable=wrong-import-position

_PASSWORDS = st.text(st.characters(blacklist_categories=('Cc', 'Cs')), min_size=1, max_size=40)
_HOSTS = st.sampled_from(['hv1', 'hv1.example.com:2222', '[fe80::1]', '10.0.0.1:16509', ''])
_TAILS = st.sampled_from(['/system', '/system?keyfile=/root/.ssh/id&no_tty=1', '/session', ''])


@settings(max_examples=400, deadline=None)
@given(password=_PASSWORDS, host=_HOSTS, tail=_TAILS)
def test_any_password_is_found_and_masked(password, host, tail):
    uri = f'qemu+ssh://root:{password}@{host}{tail}'
    shown = f'qemu+ssh://root:********@{host}{tail}'
    assert _uri.redact_uri(uri) == shown
    assert _uri.uri_password(uri) == password
    assert password in _uri.uri_secrets(uri)
    # libvirt's text repeats the URI: nothing of the password is left in it once masked (the masks themselves aside)
    masked = _uri.mask_secrets(f'Unable to parse URI {uri}', _uri.uri_secrets(uri))
    assert password not in masked.replace(_uri.MASK, '\0')
