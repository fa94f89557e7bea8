# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filter kvm.snapshots.true_false_auto: 'true', 'false' or 'auto' for what the snapshot module's disk_only and
quiesce accept, '' for anything else (module_utils/_choices.py holds the rule)."""

from __future__ import annotations

import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._choices import true_false_auto as _choice


def true_false_auto(value: t.Any) -> str:
    choice = _choice(value)
    return '' if choice is None else choice if isinstance(choice, str) else str(choice).lower()


class FilterModule:
    """kvm.snapshots filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'true_false_auto': true_false_auto}
