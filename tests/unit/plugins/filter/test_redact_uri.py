# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter kvm.snapshots.redact_uri (plugins/filter/redact_uri.py): what a play gets is the URI with its password
masked, the same text the modules show (module_utils/_libvirt.py's redact_uri, tested in test__libvirt.py)."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.snapshots.plugins.filter.redact_uri import FilterModule


@pytest.mark.parametrize('uri, shown', [
    ('qemu+ssh://root:S3c/r@t@hv1/system?keyfile=/k', 'qemu+ssh://root:********@hv1/system?keyfile=/k'),
    ('qemu+tcp://admin:pw@hv1:16509/system', 'qemu+tcp://admin:********@hv1:16509/system'),
    ('qemu+ssh://root@hv1/system', 'qemu+ssh://root@hv1/system'),
    ('qemu:///system', 'qemu:///system'),
])
def test_redact_uri_filter(uri, shown):
    redact = FilterModule().filters()['redact_uri']
    assert redact(uri) == shown
    assert 'S3c' not in redact(uri) and ':pw@' not in redact(uri)
