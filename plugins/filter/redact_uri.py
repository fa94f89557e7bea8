# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filter kvm.snapshots.redact_uri: a libvirt URI with its password masked, for messages and facts."""

from __future__ import annotations

import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._uri import redact_uri


class FilterModule:
    """kvm.snapshots filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'redact_uri': redact_uri}
