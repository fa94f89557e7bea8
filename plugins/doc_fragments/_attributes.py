# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This doc fragment is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

from __future__ import annotations


class ModuleDocFragment:

    # What the attributes mean; each module says how far it supports them (support, details), and Ansible merges
    # the two attribute by attribute.
    DOCUMENTATION = r'''
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return the changed status prediction without modifying the target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the domains and snapshots it acts on have not been changed by anything else meanwhile.
'''
