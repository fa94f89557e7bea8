# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage (module_utils/_storage.py): the modes of the files a snapshot leaves, the note on full storage and the
memory image's mode (the free-space check itself is in test__guards.py)."""

from __future__ import annotations

import os
import stat

from ansible_collections.kvm.snapshots.plugins.module_utils import _storage as sto
from ansible_collections.kvm.snapshots.tests.unit.helpers import DiskDomain, statvfs_with


def test_tighten_modes(tmp_path):
    overlay = tmp_path / 'web1.pre'
    overlay.write_bytes(b'')
    os.chmod(overlay, 0o644)
    internal = tmp_path / 'web1.qcow2'
    internal.write_bytes(b'')
    os.chmod(internal, 0o644)
    sto.tighten_modes({'disks': [
        {'name': 'vda', 'snapshot': 'external', 'file': str(overlay)},
        {'name': 'vdb', 'snapshot': 'internal', 'file': str(internal)},
        {'name': 'vdc', 'snapshot': 'external', 'file': str(tmp_path / 'not-there')},
    ]})
    assert stat.S_IMODE(os.stat(overlay).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(internal).st_mode) == 0o644


# full storage

def test_storage_full_note(monkeypatch, tmp_path):
    dom = DiskDomain(tmp_path / 'web1.qcow2')
    monkeypatch.setattr(sto.os, 'statvfs', statvfs_with(1 << 20))
    note = sto.storage_full_note(dom)
    assert 'is full (1 MiB free)' in note and 'No snapshot was recorded' in note
    monkeypatch.setattr(sto.os, 'statvfs', statvfs_with(10 << 30))
    assert sto.storage_full_note(dom) == ''


def test_hide_memory(tmp_path):
    image = tmp_path / 'web1.qcow2'
    image.write_bytes(b'')
    os.chmod(image, 0o664)
    sto.hide_memory(DiskDomain(image))
    assert stat.S_IMODE(os.stat(image).st_mode) == 0o660  # others lose access, owner and group keep theirs
    sto.hide_memory(DiskDomain(tmp_path / 'gone.qcow2'))  # nothing to do, no error
