# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""The domain: its state, the disks a snapshot covers, its guest-agent channel, and the libvirt jobs that hold it.

Read from the domain's XML and libvirt's state and control info: whether another job (a snapshot,
revert or save by another run or tool) is talking to QEMU for it, waiting until it is idle, and
resuming a domain that an interrupted snapshot or save job left paused. No snapshot XML here.
"""

from __future__ import annotations

import json
import time
import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    LibvirtError,
    SnapshotError,
    error_code,
    libvirt_errors,
    retry_busy,
)

try:
    import libvirt_qemu
except ImportError:  # comes with libvirt-python; AnsibleLibvirtModule reports a missing binding
    libvirt_qemu = None

ERR_NO_SUPPORT = 3  # VIR_ERR_NO_SUPPORT: the driver has no such call (the test driver and the agent)

# virDomainState -> the words virsh uses
DOMAIN_STATES = {
    0: 'nostate', 1: 'running', 2: 'blocked', 3: 'paused',
    4: 'shutdown', 5: 'shutoff', 6: 'crashed', 7: 'pmsuspended',
}


def domain_state(dom: t.Any) -> str:
    return DOMAIN_STATES.get(dom.state(0)[0], 'unknown')


AGENT_CHANNEL = 'org.qemu.guest_agent.0'


def domain_root(dom: t.Any, xml: str | ET.Element | None = None) -> ET.Element:
    """The domain's XML as a tree: ``xml`` itself when the caller has parsed it already, else parsed from ``xml``
    (its XML, if read) or from the domain's XML read now. A caller that reads several things of one domain parses
    its XML once and hands the tree on."""
    if isinstance(xml, ET.Element):
        return xml
    return ET.fromstring(xml or dom.XMLDesc(0))


def has_agent_channel(dom: t.Any, xml: str | ET.Element | None = None) -> bool:
    """Whether the domain has the virtio channel qemu-guest-agent talks through (``xml``: its XML or its tree, if
    read)."""
    targets = domain_root(dom, xml).findall('devices/channel/target')
    return any(target.get('name') == AGENT_CHANNEL for target in targets)


class AgentUnsupported(Exception):
    """The connection cannot send guest agent commands (a driver without them)."""


# What qemu-guest-agent needs to freeze the file systems and thaw them again; its configuration can disable them
# (qemu-ga --block-rpcs, or block-rpcs in qemu-ga.conf), and libvirt's freeze then fails.
FREEZE_COMMANDS = ('guest-fsfreeze-freeze', 'guest-fsfreeze-thaw')


def agent_freeze_problem(dom: t.Any, timeout: int) -> str | None:
    """Why the guest agent of ``dom`` cannot freeze its file systems now, to follow "the guest agent ...": it does not
    answer guest-info within ``timeout`` seconds, or it has the freeze or the thaw disabled; None when it can.
    Raises AgentUnsupported where this connection cannot send agent commands at all (the test driver)."""
    if libvirt_qemu is None:
        raise AgentUnsupported('libvirt-python has no libvirt_qemu here')
    try:
        answer = libvirt_qemu.qemuAgentCommand(dom, '{"execute": "guest-info"}', timeout, 0)
    except LibvirtError as exc:
        if error_code(exc) == ERR_NO_SUPPORT:
            raise AgentUnsupported(exc.get_error_message()) from None
        return f'does not answer ({exc.get_error_message()})'
    try:
        enabled = {c['name']: c.get('enabled', True) for c in json.loads(answer)['return']['supported_commands']}
    except (ValueError, KeyError, TypeError):
        return None  # an answer this code cannot read: the freeze itself will tell
    disabled = [name for name in FREEZE_COMMANDS if not enabled.get(name, False)]
    if disabled:
        return (f'cannot freeze the file systems: {" and ".join(disabled)} '
                f'{"is" if len(disabled) == 1 else "are"} disabled or missing in it (qemu-ga --block-rpcs)')
    return None


def domain_disks(dom: t.Any, xml: str | ET.Element | None = None) -> list[dict[str, t.Any]]:
    """The disks of a domain that a snapshot would cover: target, format, file (``xml``: its XML or its tree, if
    read)."""
    root = domain_root(dom, xml)
    disks = []
    for disk in root.findall('devices/disk'):
        if disk.get('device', 'disk') != 'disk' or disk.find('readonly') is not None:
            continue  # CD-ROMs and read-only disks are never snapshotted
        driver = disk.find('driver')
        source = disk.find('source')
        target = disk.find('target')
        disks.append({
            'name': target.get('dev') if target is not None else None,
            'type': disk.get('type'),
            'format': driver.get('type') if driver is not None else None,
            'file': (source.get('file') or source.get('dev') or source.get('name')) if source is not None else None,
            'snapshot': disk.get('snapshot'),
        })
    return disks


# virDomainState PAUSED, and the virDomainPausedReason values libvirt uses while a job writes the memory
STATE_PAUSED = 3
_JOB_PAUSE_REASONS = {3: 'save', 9: 'snapshot'}
CONTROL_OK = 0  # virDomainControlState: no job holds the domain


def domain_busy(dom: t.Any) -> bool:
    """Whether a libvirt job is talking to QEMU for the domain right now (libvirt's control info).

    An internal snapshot or a revert shows for its whole length (one long monitor command);
    an asynchronous job (a save, the block commit of an external snapshot's deletion) shows
    only while it calls QEMU, not while it waits for QEMU's progress.
    """
    try:
        return dom.controlInfo(0)[0] != CONTROL_OK
    except LibvirtError:
        return False  # drivers without control info (the test driver) run no jobs in the background


def wait_idle(dom: t.Any, busy_timeout: float) -> None:
    """Wait, up to ``busy_timeout`` seconds, until no libvirt job holds ``dom``."""
    deadline = time.monotonic() + busy_timeout
    delay = 0.1
    while domain_busy(dom):
        if time.monotonic() + delay > deadline:
            raise SnapshotError(
                f'Domain "{dom.name()}" is still busy with another job (a snapshot, revert or save by another '
                f'run or tool) after {busy_timeout:g} seconds; "virsh domcontrol {dom.name()}" shows how long it '
                'has been running. Re-run when it is done, or raise busy_timeout.', domain=dom.name())
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def resume_interrupted(dom: t.Any, busy_timeout: float) -> str | None:
    """Resume a domain left paused by a snapshot or save job that libvirtd did not finish.

    libvirt pauses a running domain while an internal snapshot writes its memory (paused
    reason "save") and resumes it at the end. If libvirtd is killed meanwhile, QEMU finishes
    writing, but libvirt 9.0 does not resume the domain when it comes back: the guest stays
    paused for ever. A domain paused for such a reason while no job holds it can only be that;
    resuming it restores the state it was in. While a job still holds it, it is another run's
    snapshot or save in progress: libvirt resumes the domain itself when that ends. Returns a
    warning when the domain was resumed.
    """
    state, reason = dom.state(0)
    if state != STATE_PAUSED or reason not in _JOB_PAUSE_REASONS or domain_busy(dom):
        return None
    with libvirt_errors(f'Resuming domain "{dom.name()}", left paused by an unfinished {_JOB_PAUSE_REASONS[reason]} '
                        'job', domain=dom.name()):
        try:
            # libvirt's job lock makes this wait for an asynchronous job that still runs (a save)
            retry_busy(dom.resume, busy_timeout)
        except LibvirtError:
            if domain_state(dom) != 'paused':
                return None  # a job was still running after all, and its end settled the state (a save shuts off)
            raise
    return (f'Domain "{dom.name()}" was paused (reason: {_JOB_PAUSE_REASONS[reason]}) with no libvirt job running: '
            'left so by a snapshot or save that libvirtd did not finish (it stopped or restarted during it). '
            'It was resumed.')
