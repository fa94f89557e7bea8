# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Storage (module_utils/_storage.py): the modes of the files a snapshot leaves.

Free space, full storage and the memory image's mode are in test__faults.py.
"""

from __future__ import annotations

import os
import stat

from ansible_collections.kvm.snapshots.plugins.module_utils import _storage as sto


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
