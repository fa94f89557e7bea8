# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fault handling of module_utils: lost and silent connections, URIs with passwords, interrupted
jobs, full storage, monitor-unsafe names and mixed internal/external snapshot trees.

The behaviour on the real thing (libvirtd killed, frozen, storage filling up) is in
tests/integration/test_faults.py; these tests pin the logic, on the test driver and with
stand-ins where the test driver cannot go (jobs, external snapshots, the QEMU driver).
"""

from __future__ import annotations

import os
import stat
import time
from types import SimpleNamespace

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _libvirt as lv
from ansible_collections.kvm.snapshots.plugins.module_utils import _domain as d
from ansible_collections.kvm.snapshots.plugins.module_utils import _guards as g
from ansible_collections.kvm.snapshots.plugins.module_utils import _snapshot as s
from ansible_collections.kvm.snapshots.plugins.module_utils import _storage as sto
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError

TEST_URI = 'test:///default'


def fake_error(code, text, domain=0):
    error = libvirt.libvirtError(text)
    error.get_error_code = lambda: code
    error.get_error_domain = lambda: domain
    error.get_error_message = lambda: text
    return error


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
    assert lv.redact_uri(uri) == shown


def test_uri_password():
    assert lv.uri_password('qemu+tcp://admin:s3cret@hv1/system') == 's3cret'
    assert lv.uri_password('qemu+ssh://root@hv1/system') is None
    assert lv.uri_password('qemu+tcp://[::1/system') is None


# connection faults

def test_keepalive_follows_connect_timeout():
    assert lv.keepalive_for(30) == (5, 5)  # libvirt's own default: silent for about 30 s
    assert lv.keepalive_for(6) == (1, 5)
    assert lv.keepalive_for(1) == (1, 5)
    assert lv.keepalive_for(0) is None  # wait for ever
    assert lv.keepalive_for(-1) is None


@pytest.mark.parametrize('text', ["Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory",
                                  "unable to connect to server at 'hv1:16509': Connection refused"])
def test_cannot_connect_is_not_a_lost_connection(text):
    msg = lv.describe(fake_error(38, text, lv.FROM_RPC), 'Connecting to libvirt at qemu:///system')
    assert 'libvirtd does not run there or does not accept connections' in msg
    assert 'was lost' not in msg


def test_keepalive_timeout_is_a_lost_connection():
    error = fake_error(1, 'internal error: connection closed due to keepalive timeout', lv.FROM_RPC)
    assert lv.connection_lost(error)
    msg = lv.describe(error, 'Creating snapshot "s"')
    assert 'stopped answering' in msg and 'Running guests keep running' in msg


class _LostConnection:
    """A domain whose connection breaks in the middle of snapshotCreateXML (libvirtd killed)."""

    def __init__(self):
        self.lookups = 0

    def name(self):
        return 'web1'

    def snapshotCreateXML(self, _xml, _flags):
        raise fake_error(1, 'End of file while reading data: Input/output error', lv.FROM_RPC)

    def snapshotLookupByName(self, _name, _flags=0):
        self.lookups += 1
        raise fake_error(1, 'client socket is closed', lv.FROM_RPC)


def test_create_on_a_lost_connection_says_what_may_be_left():
    dom = _LostConnection()
    with pytest.raises(SnapshotError) as raised:
        s.create_snapshot(dom, 'pre')
    msg = raised.value.msg
    assert msg.startswith('Creating snapshot "pre" of domain "web1" failed: End of file')
    assert 'connection to libvirtd was lost' in msg and 'a re-run of this task finds out' in msg
    assert dom.lookups == 0  # no second call on a dead connection


# the module wrapper: the password never reaches the output

def test_module_masks_the_uri_password(monkeypatch, capsys):
    from ansible.module_utils.testing import patch_module_args  # pylint: disable=import-outside-toplevel

    def refuse(uri):
        raise fake_error(38, "unable to connect to server at 'hv1:16509': Connection refused", lv.FROM_RPC)

    monkeypatch.setattr(lv.libvirt, 'open', refuse)
    with patch_module_args({'uri': 'qemu+tcp://admin:s3cret-pw@hv1:16509/system', 'connect_timeout': 5}):
        client = lv.AnsibleLibvirtModule({})
        with pytest.raises(SystemExit):
            try:
                client.conn  # pylint: disable=pointless-statement
            except SnapshotError as exc:
                client.fail(exc)
    out = capsys.readouterr().out
    assert 's3cret-pw' not in out
    assert 'qemu+tcp://admin:********@hv1:16509/system' in out


# jobs: interrupted, running

class _JobDomain:
    """A domain in a given state; controlInfo reports a job while ``busy`` says so."""

    def __init__(self, state, reason, busy=(False,)):
        self._state = [state, reason]
        self._busy = list(busy)
        self.resumed = 0

    def name(self):
        return 'web1'

    def state(self, _flags=0):
        return list(self._state)

    def controlInfo(self, _flags=0):
        busy = self._busy.pop(0) if len(self._busy) > 1 else self._busy[0]
        return [1 if busy else 0, 0, 1500 if busy else 0]

    def resume(self):
        self.resumed += 1
        self._state = [1, 2]


def test_resume_a_domain_left_paused_by_an_interrupted_snapshot():
    dom = _JobDomain(d.STATE_PAUSED, 3)  # paused, reason "save", no job
    warning = d.resume_interrupted(dom, busy_timeout=5)
    assert dom.resumed == 1
    assert 'was paused (reason: save) with no libvirt job running' in warning and 'It was resumed' in warning


def test_a_save_that_was_still_running_settles_the_state():
    """The lock made resume wait for a save, which shut the domain off: nothing to resume, no error."""
    dom = _JobDomain(d.STATE_PAUSED, 3)

    def save_ended():
        dom._state = [5, 2]  # pylint: disable=protected-access
        raise fake_error(55, 'Requested operation is not valid: domain is not running')

    dom.resume = save_ended
    assert d.resume_interrupted(dom, busy_timeout=5) is None


def test_resume_that_fails_for_another_reason_says_so():
    dom = _JobDomain(d.STATE_PAUSED, 3)

    def broken():
        raise fake_error(1, 'internal error: unable to execute QEMU command cont')

    dom.resume = broken
    with pytest.raises(SnapshotError, match=r'Resuming domain "web1", left paused by an unfinished save job failed'):
        d.resume_interrupted(dom, busy_timeout=5)


@pytest.mark.parametrize('state, reason', [(1, 1), (3, 1), (3, 2), (5, 1)])
def test_leave_other_states_alone(state, reason):
    """Running, paused by the user, paused for a migration, shut off: nothing to do."""
    dom = _JobDomain(state, reason)
    assert d.resume_interrupted(dom, busy_timeout=5) is None
    assert dom.resumed == 0


def test_a_running_job_is_not_interrupted():
    """Paused for a snapshot that is still being taken (another run): libvirt resumes it at the end."""
    dom = _JobDomain(d.STATE_PAUSED, 9, busy=(True,))
    assert d.resume_interrupted(dom, busy_timeout=5) is None
    assert dom.resumed == 0


def test_wait_idle_waits_for_the_job():
    dom = _JobDomain(1, 1, busy=(True, True, False))
    d.wait_idle(dom, busy_timeout=10)
    assert not d.domain_busy(dom)


def test_wait_idle_gives_up_and_says_what_is_busy():
    dom = _JobDomain(1, 1, busy=(True,))
    with pytest.raises(SnapshotError, match=r'still busy with another job .* after 0\.3 seconds.*busy_timeout'):
        d.wait_idle(dom, busy_timeout=0.3)


def test_domain_busy_on_a_driver_without_control_info():
    conn = libvirt.open(TEST_URI)
    try:
        dom = conn.lookupByName('test')  # the test driver's own domain
        assert d.domain_busy(dom) is False
    finally:
        conn.close()


# full storage

class _DiskDomain:
    """A domain with one qcow2 disk at ``path`` and ``memory_mib`` of memory."""

    def __init__(self, path, memory_mib=1024, excluded=False):
        self.path = str(path)
        self.memory_kib = memory_mib * 1024
        self.excluded = excluded

    def name(self):
        return 'web1'

    def info(self):
        return [1, self.memory_kib, self.memory_kib, 1, 0]

    def XMLDesc(self, _flags=0):
        snapshot = " snapshot='no'" if self.excluded else ''
        return (f"<domain><devices><disk type='file' device='disk'{snapshot}><driver type='qcow2'/>"
                f"<source file='{self.path}'/><target dev='vda'/></disk></devices></domain>")


def _statvfs_with(free_bytes):
    def fake(_path):
        return SimpleNamespace(f_bavail=free_bytes // 4096, f_frsize=4096)
    return fake


def test_memory_snapshot_refused_without_room(monkeypatch, tmp_path):
    monkeypatch.setattr(sto.os, 'statvfs', _statvfs_with(500 << 20))
    with pytest.raises(SnapshotError) as raised:
        g.check_free_space(_DiskDomain(tmp_path / 'web1.qcow2', memory_mib=1024))
    msg = raised.value.msg
    assert 'needs up to 1088 MiB' in msg and 'has 500 MiB free' in msg and 'Nothing was changed' in msg
    assert 'disk_only: true' in msg
    assert raised.value.details == {'domain': 'web1', 'needed': 1088 << 20, 'free': 500 << 20}


def test_memory_snapshot_with_room(monkeypatch, tmp_path):
    monkeypatch.setattr(sto.os, 'statvfs', _statvfs_with(1088 << 20))
    g.check_free_space(_DiskDomain(tmp_path / 'web1.qcow2', memory_mib=1024))


def test_free_space_not_checked_where_it_cannot_be_read(monkeypatch, tmp_path):
    def unreadable(_path):
        raise FileNotFoundError(_path)

    monkeypatch.setattr(sto.os, 'statvfs', unreadable)
    g.check_free_space(_DiskDomain(tmp_path / 'web1.qcow2'))  # a remote host's path, say
    g.check_free_space(_DiskDomain(tmp_path / 'web1.qcow2', excluded=True))  # no disk takes part


def test_storage_full_note(monkeypatch, tmp_path):
    dom = _DiskDomain(tmp_path / 'web1.qcow2')
    monkeypatch.setattr(sto.os, 'statvfs', _statvfs_with(1 << 20))
    note = sto.storage_full_note(dom)
    assert 'is full (1 MiB free)' in note and 'No snapshot was recorded' in note
    monkeypatch.setattr(sto.os, 'statvfs', _statvfs_with(10 << 30))
    assert sto.storage_full_note(dom) == ''


def test_hide_memory(tmp_path):
    image = tmp_path / 'web1.qcow2'
    image.write_bytes(b'')
    os.chmod(image, 0o664)
    sto.hide_memory(_DiskDomain(image))
    assert stat.S_IMODE(os.stat(image).st_mode) == 0o660  # others lose access, owner and group keep theirs
    sto.hide_memory(_DiskDomain(tmp_path / 'gone.qcow2'))  # nothing to do, no error


# names libvirt 9.0 passes to QEMU's monitor unescaped, and names libvirt 10.9 and later make QMP job ids of

class _Driver:
    def __init__(self, kind, active=True, version=9_000_000):
        self.kind = kind
        self.active = active
        self.version = version

    def name(self):
        return 'web1'

    def isActive(self):
        return self.active

    def connect(self):
        return SimpleNamespace(getType=lambda: self.kind, getLibVersion=lambda: self.version)


@pytest.mark.parametrize('name', ['say "hi"', 'back\\slash', '"'])
def test_monitor_unsafe_names_refused_on_qemu(name):
    with pytest.raises(SnapshotError, match="QEMU's monitor without escaping it") as raised:
        g.check_monitor_name(_Driver('QEMU'), name)
    assert 'Nothing was changed' in raised.value.msg
    g.check_monitor_name(_Driver('Test'), name)  # other drivers do not use the monitor


@pytest.mark.parametrize('name', ["it's <b>&amp;", '-d', '$(id)', 'ünïcødé', 'with space'])
def test_other_names_pass(name):
    g.check_monitor_name(_Driver('QEMU'), name)


@pytest.mark.parametrize('action, advice', [
    ('create', 'Choose a name without'),
    ('revert', 'shut the domain off first'),
    ('delete', 'Shut the domain off and delete it then'),
    ('prune', 'or narrow match'),
])
def test_one_monitor_rule_for_every_action(action, advice):
    """create, revert, delete and prune share the rule; each refusal names every unsafe snapshot and what to do."""
    with pytest.raises(SnapshotError) as raised:
        g.check_monitor_names(_Driver('QEMU'), ['fine', 'x\\', 'q"'], action)
    msg = raised.value.msg
    assert "'x\\\\'" in msg and """'q"'""" in msg and "'fine'" not in msg, msg
    assert advice in msg and 'Nothing was changed' in msg, msg
    assert raised.value.details['snapshots'] == ['x\\', 'q"']
    g.check_monitor_names(_Driver('QEMU', active=False), ['x\\'], action)  # shut off: qemu-img takes any name
    g.check_monitor_names(_Driver('QEMU'), ['fine', "it's"], action)


@pytest.mark.parametrize('name', ['with space', 'ünïcødé', "it's", 'a:b', 'x+y', 'say "hi"', 'back\\slash'])
def test_names_that_are_no_qmp_job_id_refused_from_libvirt_10_9(name):
    with pytest.raises(SnapshotError) as raised:
        g.check_monitor_name(_Driver('QEMU', version=11_003_000), name)
    msg = raised.value.msg
    assert 'runs it as a QEMU job named after the snapshot' in msg and 'Nothing was changed' in msg, msg
    assert 'letters, digits, ".", "-" and "_"' in msg and 'location: external' in msg, msg
    g.check_monitor_name(_Driver('QEMU', active=False, version=11_003_000), name)  # shut off: qemu-img


@pytest.mark.parametrize('name', ['pre-change-20261130T010203Z', 'nightly_1.2', '-d', '9'])
def test_qmp_job_id_names_pass_on_every_version(name):
    for version in (9_000_000, 10_009_000, 11_003_000):
        g.check_monitor_name(_Driver('QEMU', version=version), name)


# reverting between the kinds

def _facts(name, location):
    return {'name': name, 'location': location}


def test_revert_to_internal_refused_while_external_exist(monkeypatch):
    dom = SimpleNamespace(name=lambda: 'web1')
    snapshots = [_facts('internal-1', 'internal'), _facts('external-2', 'external'), _facts('external-1', 'external')]
    monkeypatch.setattr(g, 'list_snapshots', lambda _dom: snapshots)
    with pytest.raises(SnapshotError) as raised:
        g.check_revert_possible(dom, _facts('internal-1', 'internal'))
    assert 'has external (disk-only) snapshots (external-1, external-2)' in raised.value.msg
    assert 'reverting to the internal snapshot "internal-1" is refused' in raised.value.msg
    g.check_revert_possible(dom, _facts('external-1', 'external'))  # refused elsewhere (needs libvirt 9.9)


def test_revert_to_internal_without_external(monkeypatch):
    dom = SimpleNamespace(name=lambda: 'web1')
    monkeypatch.setattr(g, 'list_snapshots', lambda _dom: [_facts('internal-1', 'internal')])
    g.check_revert_possible(dom, _facts('internal-1', 'internal'))


# a snapshot listed while another run still takes it

class _Busy:
    def __init__(self, control, elapsed_ms):
        self.info = [control, 0, elapsed_ms]

    def controlInfo(self, _flags=0):
        return list(self.info)


class _Snap:
    def __init__(self, epoch):
        self.epoch = epoch

    def getXMLDesc(self, _flags=0):
        return f'<domainsnapshot><name>s</name><creationTime>{self.epoch}</creationTime></domainsnapshot>'


def test_a_snapshot_made_by_the_running_job_is_in_progress():
    now = int(time.time())
    assert s.in_progress(_Busy(1, 3000), _Snap(now - 3))  # stamped as its job began
    assert s.in_progress(_Busy(2, 500), _Snap(now - 2))  # the monitor entered a little after the stamp


def test_an_older_snapshot_under_another_job_is_not_waited_for():
    now = int(time.time())
    assert not s.in_progress(_Busy(1, 10_000), _Snap(now - 3600))  # a backup started long after it
    assert not s.in_progress(_Busy(0, 0), _Snap(now))  # no job at all
