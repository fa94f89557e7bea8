# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Connection URIs: the password found whatever characters it holds, and masked in every message and in
``invocation.module_args``; an empty URI, a driver, transport or port libvirt does not have refused up front
with what is wrong, before libvirt is asked."""

from __future__ import annotations

import json

import libvirt
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.kvm.snapshots.plugins.module_utils import _libvirt as lv
from ansible_collections.kvm.snapshots.plugins.modules import snapshot_info

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
    assert lv.redact_uri(uri) == shown
    assert lv.uri_password(uri) == password
    assert password in lv.uri_secrets(uri)
    assert password not in lv.mask_secrets(f'Unable to parse URI {uri}', lv.uri_secrets(uri))


@pytest.mark.parametrize('uri', [
    'qemu:///system', 'test:///default', 'qemu+ssh://root@hv1/system?keyfile=/root/.ssh/id&no_tty=1',
    'qemu+ssh://hv1/system', 'qemu+tcp://[::1]:16509/system', 'qemu+ssh://user@corp@hv1/system',
])
def test_no_password_no_change(uri):
    assert lv.redact_uri(uri) == uri
    assert lv.uri_password(uri) is None
    assert lv.uri_secrets(uri) == ()


def test_at_sign_in_the_query_masks_every_reading():
    """An "@" in the query makes two readings possible; both passwords are masked, neither is shown."""
    uri = 'qemu+ssh://root:pw1@hv1/system?keyfile=/home/me@corp/key'
    secrets = lv.uri_secrets(uri)
    assert 'pw1' in secrets
    assert 'pw1' not in lv.redact_uri(uri)


def test_percent_encoded_password_masked_decoded_too():
    uri = 'qemu+tcp://admin:S3c%2Fret@hv1/system'
    assert {'S3c%2Fret', 'S3c/ret'} <= set(lv.uri_secrets(uri))


def _error(code, text, domain=0):
    error = libvirt.libvirtError(text)
    error.get_error_code = lambda: code
    error.get_error_domain = lambda: domain
    error.get_error_message = lambda: text
    return error


@pytest.mark.parametrize('password', HOSTILE)
def test_libvirt_parse_error_is_masked(password):
    uri = f'qemu+ssh://root:{password}@hv1/system'
    msg = lv.connect_failure(_error(45, f'internal error: Unable to parse URI {uri}', 45), uri)
    assert password not in msg
    assert 'qemu+ssh://root:********@hv1/system' in msg
    assert 'percent-encoded' in msg


def test_ssh_error_naming_the_user_part_is_masked():
    uri = 'qemu+ssh://root:Hunter2@hv1/system'
    error = _error(38, 'Cannot recv data: root:Hunter2@hv1: Permission denied (publickey).: Connection reset by peer',
                   lv.FROM_RPC)
    msg = lv.connect_failure(error, uri)
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
    problem = lv.uri_problem(uri)
    assert problem is not None and says in problem


@pytest.mark.parametrize('uri', ['qemu:///system', 'qemu:/system', 'test:///default', 'qemu+ssh://root@hv1/system',
                                 'qemu+ssh://root@hv1:2222/system?keyfile=/k&no_tty=1', 'QEMU+SSH://hv1/system',
                                 'qemu+tcp://[fe80::1]:16509/system', 'qemu+unix:///system?socket=/run/x.sock',
                                 'qemu+ext:///system?command=/bin/true', 'qemu+libssh2://hv1/system'])
def test_uri_accepted(uri):
    assert lv.uri_problem(uri) is None


def test_bad_port_password_masked():
    problem = lv.uri_problem('qemu+tcp://admin:S3c/ret@hv1:99x/system')
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

    monkeypatch.setattr(lv.libvirt, 'open', no_open)
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
    assert lv.redact_uri(uri) == shown
    assert lv.uri_password(uri) == password
    assert password in lv.uri_secrets(uri)
    # libvirt's text repeats the URI: nothing of the password is left in it once masked (the masks themselves aside)
    masked = lv.mask_secrets(f'Unable to parse URI {uri}', lv.uri_secrets(uri))
    assert password not in masked.replace(lv.MASK, '\0')
