# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The filter kvm.snapshots.snapshot_report: the fleet report's data (docs/report.md) from the module results.

The report's code is in plugins/plugin_utils/_snapshot_report.py and imported at the filter's first call. Every worker
process of Ansible (one a host and task) loads all the filter files of the collection when a template names any of
its filters, as the roles' defaults do for every guest; the report's code there cost each of those tasks about 0.7 s
over 200 guests (measured), for a filter that only playbooks/snapshot_report.yml calls, once.
"""

from __future__ import annotations

import typing as t


def snapshot_report(hosts: t.Any, *args: t.Any, **kwargs: t.Any) -> dict[str, t.Any]:
    """See plugins/plugin_utils/_snapshot_report.py and snapshot_report.yml beside this file."""
    from ansible_collections.kvm.snapshots.plugins.plugin_utils._snapshot_report import snapshot_report as report

    return report(hosts, *args, **kwargs)


class FilterModule:
    """kvm.snapshots filters."""

    def filters(self) -> dict[str, t.Callable[..., t.Any]]:
        return {'snapshot_report': snapshot_report}
