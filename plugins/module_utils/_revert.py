# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""Reverting one domain to one of its snapshots and leaving it in the power state asked for.

The one place for it: kvm.snapshots.snapshot_revert reverts one domain (or a batch) with it, and
kvm.snapshots.snapshot_group reverts every member of a group with it.
"""

from __future__ import annotations

import time
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._domain import domain_state
from ansible_collections.kvm.snapshots.plugins.module_utils._kind import INTERNAL_REVERT_BROKEN
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    ERR_INVALID_ARG,
    LibvirtError,
    error_code,
    libvirt_errors,
    retry_busy,
    version_text,
)
from ansible_collections.kvm.snapshots.plugins.module_utils._snapshot import (
    REVERT_FORCE,
    REVERT_PAUSED,
    REVERT_RUNNING,
    snapshot_facts,
)

# What libvirt says when a revert would need a file that exists: its new overlays are named after the second
# of the revert (<image>.<epoch seconds>), so two reverts within one second collide.
_OVERLAY_EXISTS = 'already exists'
# What QEMU says when libvirt 11.2 or 11.3 hands it the wrong block nodes for an internal revert.
_BROKEN_INTERNAL_REVERT = 'is writable but does not support snapshots'

START_PAUSED = 1  # VIR_DOMAIN_START_PAUSED

# The power states a revert can leave a domain in; as_snapshot (or None) leaves it as libvirt does.
WANTED_STATES = ('running', 'paused', 'shutoff')


def known_bug(exc: BaseException, version: int) -> str:
    """What a failed revert owes to a known libvirt bug, if anything (words to append to its message)."""
    if _BROKEN_INTERNAL_REVERT not in str(exc) or not INTERNAL_REVERT_BROKEN[0] <= version < INTERNAL_REVERT_BROKEN[1]:
        return ''
    return (f'. This is a known bug of libvirt 11.2 and 11.3 (this hypervisor has {version_text(version)}), '
            'fixed in 11.4: upgrade libvirt to revert internal snapshots, and check the domain\'s state. '
            'New snapshots taken with location: auto are external on these releases, and revert.')


def revert_snapshot(dom: t.Any, snap: t.Any, wanted: str | None, busy_timeout: float, version: int,
                    force: bool = False, **details: t.Any) -> None:
    """Revert ``dom`` to ``snap``, then bring it to ``wanted`` (running, paused, shutoff; None or as_snapshot:
    as libvirt leaves it). ``version`` is the hypervisor's libvirt version, for the known-bug note. Raises
    SnapshotError (with ``details`` as extra result keys)."""
    name = dom.name()
    flags = REVERT_FORCE if force else 0
    if wanted == 'running':
        flags |= REVERT_RUNNING
    elif wanted == 'paused':
        flags |= REVERT_PAUSED
    with libvirt_errors(f'Reverting domain "{name}" to snapshot "{snap.getName()}"',
                        lambda exc: known_bug(exc, version), **details):
        try:
            retry_busy(lambda: dom.revertToSnapshot(snap, flags), busy_timeout)
        except LibvirtError as exc:
            if _OVERLAY_EXISTS not in str(exc) or snapshot_facts(snap, name)['location'] != 'external':
                raise
            # the overlays of the previous revert of this second: the next second gets new names
            time.sleep(1.1 - time.time() % 1)
            retry_busy(lambda: dom.revertToSnapshot(snap, flags), busy_timeout)
    if wanted in WANTED_STATES:
        with libvirt_errors(f'Bringing domain "{name}" to {wanted} after the revert', **details):
            settle(dom, wanted)


def settle(dom: t.Any, wanted: str) -> None:
    """Make sure the power state is the one asked for, whatever the driver did with the revert's flags."""
    state = domain_state(dom)
    if wanted == 'shutoff' and state != 'shutoff':
        dom.destroy()
    elif wanted == 'running' and state == 'shutoff':
        dom.create()
    elif wanted == 'paused' and state == 'shutoff':
        start_paused(dom)
    elif wanted == 'running' and state == 'paused':
        dom.resume()
    elif wanted == 'paused' and state == 'running':
        dom.suspend()


def start_paused(dom: t.Any) -> None:
    try:
        dom.createWithFlags(START_PAUSED)
    except LibvirtError as exc:
        if error_code(exc) != ERR_INVALID_ARG:
            raise
        dom.create()  # drivers without START_PAUSED (the test driver): start, then pause at once
        dom.suspend()
