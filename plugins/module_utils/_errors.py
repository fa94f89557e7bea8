# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The collection's one error type. Python's standard library alone, as _uri.py: the controller-side plugins
(the roles' filters) import it, in each of Ansible's worker processes anew."""

from __future__ import annotations

import typing as t


class SnapshotError(Exception):
    """An error with a message meant for the person running the playbook.

    ``details`` are returned as extra keys of the failed result.
    """

    def __init__(self, msg: str, **details: t.Any) -> None:
        super().__init__(msg)
        self.msg = msg
        self.details = details
