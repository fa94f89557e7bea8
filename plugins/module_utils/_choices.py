# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The words an option that takes a boolean or auto accepts (the snapshot module's disk_only and quiesce): one rule
for the module and for the early checks of the pre_change role and hypervisor_snapshots.yml, which use it through
the filter kvm.snapshots.true_false_auto. Light on purpose: filter files import it in every worker."""

from __future__ import annotations

import typing as t

from ansible.module_utils.parsing.convert_bool import boolean


def true_false_auto(value: t.Any) -> bool | str | None:
    """True, False or 'auto' (any case, blanks around it), as Ansible's strict booleans read true and false
    (yes/no, on/off, y/n, t/f, 1/0 too); None for anything else."""
    if isinstance(value, str) and value.strip().lower() == 'auto':
        return 'auto'
    try:
        return boolean(value.strip() if isinstance(value, str) else value, strict=True)
    except TypeError:
        return None
