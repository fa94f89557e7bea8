# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guards (module_utils/_guards.py): snapshot names and descriptions refused before libvirt sees them, free
space for a memory snapshot, names QEMU's monitor or QMP job ids cannot take, reverts between the kinds."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _guards as g
from ansible_collections.kvm.snapshots.plugins.module_utils import _storage as sto
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
from ansible_collections.kvm.snapshots.tests.unit.helpers import DiskDomain, statvfs_with
from ansible_collections.kvm.snapshots.tests.unit.plugins.module_utils.texts import HOSTILE_TEXT


# validate_name / validate_text

@pytest.mark.parametrize('name', ['', '   ', None, 42])
def test_validate_name_refuses_empty(name):
    with pytest.raises(SnapshotError, match='must not be empty'):
        g.validate_name(name)


@pytest.mark.parametrize('name', ['a/b', '/', 'pre/', '../x'])
def test_validate_name_refuses_slash(name):
    with pytest.raises(SnapshotError, match='contains "/"'):
        g.validate_name(name)


@pytest.mark.parametrize('name', ['.hidden', '.'])
def test_validate_name_refuses_leading_dot(name):
    with pytest.raises(SnapshotError, match=r'starts with "\."'):
        g.validate_name(name)


@pytest.mark.parametrize('name', ['a\x00b', 'bell\x07', 'tab\tname', 'new\nline', 'cr\r', 'del\x7f', 'esc\x1b[0m'])
def test_validate_name_refuses_control_characters(name):
    with pytest.raises(SnapshotError, match='control characters') as raised:
        g.validate_name(name)
    assert repr(name) in raised.value.msg  # shown escaped, so the person sees what is wrong


@pytest.mark.parametrize('name', HOSTILE_TEXT + ['pre-upgrade', 'a.b', 'with space', 'trailing.'])
def test_validate_name_accepts_anything_else(name):
    assert g.validate_name(name) == name


def test_validate_name_says_what_was_checked():
    with pytest.raises(SnapshotError, match='The safety snapshot name must not be empty'):
        g.validate_name('', 'safety snapshot name')


def test_validate_text():
    assert g.validate_text(None) is None
    assert g.validate_text('two\nlines\tand <xml> & "quotes"') == 'two\nlines\tand <xml> & "quotes"'
    with pytest.raises(SnapshotError, match='control characters'):
        g.validate_text('nul\x00')


def test_name_limit_in_utf8_bytes():
    assert g.validate_name('a' * g.NAME_MAX_BYTES) and g.NAME_MAX_BYTES == 247
    assert g.validate_name('\u00e9' * 123 + 'c')  # 247 bytes
    for name in ('a' * 248, '\u00e9' * 124, '\U0001f600' * 62):
        with pytest.raises(SnapshotError, match='limits names to 247 bytes') as raised:
            g.validate_name(name)
        assert 'Nothing was changed' in raised.value.msg
    with pytest.raises(SnapshotError, match='not valid Unicode'):
        g.validate_name('x\ud800')


# full storage

def test_memory_snapshot_refused_without_room(monkeypatch, tmp_path):
    monkeypatch.setattr(sto.os, 'statvfs', statvfs_with(500 << 20))
    with pytest.raises(SnapshotError) as raised:
        g.check_free_space(DiskDomain(tmp_path / 'web1.qcow2', memory_mib=1024))
    msg = raised.value.msg
    assert 'needs up to 1088 MiB' in msg and 'has 500 MiB free' in msg and 'Nothing was changed' in msg
    assert 'disk_only: true' in msg
    assert raised.value.details == {'domain': 'web1', 'needed': 1088 << 20, 'free': 500 << 20}


class _InfoRead(DiskDomain):
    def info(self):
        raise AssertionError('the memory was read already')


def test_memory_snapshot_refused_without_room_by_the_memory_read_before(monkeypatch, tmp_path):
    monkeypatch.setattr(sto.os, 'statvfs', statvfs_with(500 << 20))
    with pytest.raises(SnapshotError, match='needs up to 1088 MiB'):
        g.check_free_space(_InfoRead(tmp_path / 'web1.qcow2'), memory_kib=1024 << 10)
    g.check_free_space(_InfoRead(tmp_path / 'web1.qcow2'), memory_kib=256 << 10)  # 320 MiB fit


def test_memory_snapshot_with_room(monkeypatch, tmp_path):
    monkeypatch.setattr(sto.os, 'statvfs', statvfs_with(1088 << 20))
    g.check_free_space(DiskDomain(tmp_path / 'web1.qcow2', memory_mib=1024))


def test_free_space_not_checked_where_it_cannot_be_read(monkeypatch, tmp_path):
    def unreadable(_path):
        raise FileNotFoundError(_path)

    monkeypatch.setattr(sto.os, 'statvfs', unreadable)
    g.check_free_space(DiskDomain(tmp_path / 'web1.qcow2'))  # a remote host's path, say
    g.check_free_space(DiskDomain(tmp_path / 'web1.qcow2', excluded=True))  # no disk takes part


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


# check_room: every disk's file system, with a margin (free_space_margin_mb)

def _two_disks(tmp_path):
    def disk(name, path, snapshot=None):
        return {'name': name, 'type': 'file', 'format': 'qcow2', 'file': str(tmp_path / path), 'snapshot': snapshot}
    return [disk('vda', 'a/web1.qcow2'), disk('vdb', 'b/data.qcow2'), disk('vdc', 'c/skip.qcow2', 'no')]


def _free_by_dir(free):
    """os.statvfs that reports free[last directory name] bytes free."""
    def fake(path):
        return SimpleNamespace(f_bavail=free[os.path.basename(path)] // 4096, f_frsize=4096)
    return fake


def test_room_memory_goes_to_the_first_disk_and_the_margin_to_every_disk(monkeypatch, tmp_path):
    disks = _two_disks(tmp_path)
    dom = DiskDomain(tmp_path / 'a' / 'web1.qcow2', memory_mib=1024)
    # the first disk needs 1024 + 64 + 100 MiB, the second 100 MiB, the excluded one nothing
    monkeypatch.setattr(sto.os, 'statvfs', _free_by_dir({'a': 1188 << 20, 'b': 100 << 20}))
    assert g.check_room(dom, 'pre', disks, 'internal', None, True, 100) is None
    monkeypatch.setattr(sto.os, 'statvfs', _free_by_dir({'a': 1187 << 20, 'b': 99 << 20}))
    with pytest.raises(SnapshotError) as raised:
        g.check_room(dom, 'pre', disks, 'internal', None, True, 100)
    msg = raised.value.msg
    assert msg.startswith('Not enough free space for snapshot "pre" of domain "web1" (memory internal): ')
    assert f'{disks[0]["file"]} needs 1188 MiB and has 1187 MiB' in msg
    assert f'{disks[1]["file"]} needs 100 MiB and has 99 MiB' in msg
    assert 'free_space_margin_mb=100' in msg and 'Nothing was changed' in msg and 'skip.qcow2' not in msg


def test_room_of_a_disk_only_snapshot_is_the_margin(monkeypatch, tmp_path):
    disks = _two_disks(tmp_path)
    monkeypatch.setattr(sto.os, 'statvfs', _free_by_dir({'a': 100 << 20, 'b': 100 << 20}))
    # no memory: the guest's memory is not read (info would raise)
    assert g.check_room(_InfoRead(disks[0]['file']), 'pre', disks, 'no', None, True, 100) is None
    with pytest.raises(SnapshotError, match='needs 101 MiB and has 100 MiB'):
        g.check_room(_InfoRead(disks[0]['file']), 'pre', disks, 'no', None, True, 101)


def test_room_unchecked_through_a_remote_uri_or_an_unreadable_file_system(monkeypatch, tmp_path):
    disks = _two_disks(tmp_path)
    monkeypatch.setattr(sto.os, 'statvfs', _free_by_dir({'a': 0, 'b': 0}))
    remote = g.check_room(DiskDomain(disks[0]['file'], memory_mib=512), 'pre', disks, 'external', 512 << 10, False, 10)
    assert remote == {'files': [disks[0]['file'], disks[1]['file']], 'needed_mib': 512 + 64 + 10}

    def unreadable(path):
        if path.endswith('b'):
            raise FileNotFoundError(path)
        return SimpleNamespace(f_bavail=1 << 30, f_frsize=4096)

    monkeypatch.setattr(sto.os, 'statvfs', unreadable)
    local = g.check_room(DiskDomain(disks[0]['file']), 'pre', disks, 'internal', None, True, 10)
    assert local == {'files': [disks[1]['file']], 'needed_mib': 10}
