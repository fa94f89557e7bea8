# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter kvm.snapshots.true_false_auto (plugins/filter/true_false_auto.py), with which the pre_change role and
hypervisor_snapshots.yml check disk_only and quiesce: it accepts exactly what the snapshot module accepts."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from ansible_collections.kvm.snapshots.plugins.filter.true_false_auto import FilterModule
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
from ansible_collections.kvm.snapshots.plugins.modules.snapshot import true_false_auto as module_reads

choice = FilterModule().filters()['true_false_auto']


@pytest.mark.parametrize('value, meant', [
    (True, 'true'), (False, 'false'), ('auto', 'auto'), (' AUTO ', 'auto'), ('yes', 'true'), ('Off', 'false'),
    ('1', 'true'), (0, 'false'), ('y', 'true'), ('f', 'false'), (' true ', 'true'),
    ('maybe', ''), ('', ''), (None, ''), (2, ''), ('autom', ''), (['auto'], ''),
])
def test_words(value, meant):
    assert choice(value) == meant


def _module_accepts(value: object) -> bool:
    try:
        module_reads(value, 'disk_only')
    except SnapshotError as exc:
        assert exc.msg.startswith('disk_only must be true, false or auto, not ')
        return False
    return True


@given(st.one_of(st.text(max_size=8), st.sampled_from(['auto', 'Yes', 'n', 'ON', '0', 't', 'False']),
                 st.booleans(), st.integers(-2, 3), st.none(), st.floats(allow_nan=False)))
def test_the_filter_accepts_what_the_module_accepts(value):
    assert bool(choice(value)) == _module_accepts(value), value
