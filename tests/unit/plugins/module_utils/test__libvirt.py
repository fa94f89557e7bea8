# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The error mapping and the busy-domain retry of module_utils/_libvirt.py."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _libvirt


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


def fake_error(code, text, domain=0):
    error = libvirt.libvirtError(text)
    error.get_error_code = lambda: code
    error.get_error_domain = lambda: domain
    error.get_error_message = lambda: text
    return error


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
