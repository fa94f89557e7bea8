# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The group marker of _group: written, read back, and never mistaken."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _group

MEMBERS = [{'domain': 'db1', 'uri': 'qemu+ssh://root:********@hv1/system', 'state': 'running'},
           {'domain': 'web\n"1"', 'uri': 'qemu:///system', 'state': 'shutoff'}]


def test_marker_round_trip_on_one_line():
    marker = _group.group_marker('pre-change', 'a' * 32, MEMBERS)
    assert '\n' not in marker and marker.startswith('[kvm.snapshots.group] {')
    description = _group.with_marker('Before\nthe change', marker)
    assert _group.parse_group(description) == {'name': 'pre-change', 'id': 'a' * 32, 'members': MEMBERS}
    assert _group.user_description(description) == 'Before\nthe change'
    assert _group.parse_group(marker)['name'] == 'pre-change' and _group.user_description(marker) is None


@pytest.mark.parametrize('text', [
    None, '', 'plain text', '[kvm.snapshots.group] {not json', '[kvm.snapshots.group] []',
    '[kvm.snapshots.group] {"name": "g", "id": "x"}', '[kvm.snapshots.group] {"name": "g", "id": "x", "members": [1]}',
    '[kvm.snapshots.group] {"name": "g", "id": "x", "members": []}\nwritten after the marker',
    ' [kvm.snapshots.group] {"name": "g", "id": "x", "members": []}',
])
def test_anything_else_is_no_group(text):
    assert _group.parse_group(text) is None
    assert _group.user_description(text) == text


def test_members_with_missing_fields_read_as_null():
    group = _group.parse_group('[kvm.snapshots.group] {"name": "g", "id": "x", "members": [{"domain": "a"}]}')
    assert group['members'] == [{'domain': 'a', 'uri': None, 'state': None}]
