# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guards (module_utils/_guards.py): snapshot names and descriptions refused before libvirt sees them."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _guards as g
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
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
