# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Listing and removing lab domains by name prefix, with their files in RUN_DIR.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import re
import shutil
import time
import xml.etree.ElementTree as ET

from .common import DEFAULT_URI, GLOBAL_PREFIX, LOG, RUN_DIR, LabError, _libvirt


# --------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------

def _check_prefix(prefix):
    if not prefix.startswith(GLOBAL_PREFIX) or not re.fullmatch(r'[A-Za-z0-9_.-]+', prefix):
        raise LabError('lab prefixes must start with %r and use [A-Za-z0-9_.-]: %r' % (GLOBAL_PREFIX, prefix))


def _domain_disk_files(dom):
    """Files behind the domain's disks (persistent and live XML)."""
    libvirt = _libvirt()
    files = set()
    for flags in (0, libvirt.VIR_DOMAIN_XML_INACTIVE):
        with contextlib.suppress(libvirt.libvirtError):
            root = ET.fromstring(dom.XMLDesc(flags))
            for src in root.findall('./devices/disk/source'):
                if src.get('file'):
                    files.add(src.get('file'))
    return files


def _remove_domain(dom):
    """Destroy and undefine dom, with its snapshot/checkpoint metadata, managed save and NVRAM."""
    libvirt = _libvirt()
    flags = (libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
             | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
    for attempt in range(5):
        try:
            if dom.isActive():
                dom.destroy()
            if dom.isPersistent():
                dom.undefineFlags(flags)
            return
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return
            if attempt == 4:
                raise LabError('cannot remove domain %s: %s' % (dom.name(), exc)) from exc
            time.sleep(1)   # e.g. a job still holds the state-change lock


def cleanup(prefix=GLOBAL_PREFIX, uri=DEFAULT_URI):
    """Remove every domain named prefix* and every RUN_DIR entry named prefix*.

    With the default prefix this clears the leftovers of all earlier runs.
    Returns (removed domain names, removed file names).
    """
    _check_prefix(prefix)
    libvirt = _libvirt()
    conn = libvirt.open(uri)
    try:
        doms = [d for d in conn.listAllDomains(0) if d.name().startswith(prefix)]
        removed = [d.name() for d in doms]
        files = set()
        for dom in doms:
            files |= {f for f in _domain_disk_files(dom)
                      if os.path.dirname(os.path.realpath(f)) == os.path.realpath(RUN_DIR)}
        # Destroying a QEMU process takes 1-2 s: do them side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            for future in [pool.submit(_remove_domain, d) for d in doms]:
                future.result()
    finally:
        conn.close()
    if os.path.isdir(RUN_DIR):
        files |= {os.path.join(RUN_DIR, f) for f in os.listdir(RUN_DIR) if f.startswith(prefix)}
    for path in sorted(files):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    if removed or files:
        LOG.info('cleanup %s*: removed %d domain(s), %d file(s)', prefix, len(removed), len(files))
    return removed, sorted(os.path.basename(f) for f in files)


def lab_domains(prefix=GLOBAL_PREFIX, uri=DEFAULT_URI):
    """[(name, state)] of the domains named prefix*."""
    libvirt = _libvirt()
    conn = libvirt.open(uri)
    try:
        return sorted((d.name(), _state_name(d)) for d in conn.listAllDomains(0)
                      if d.name().startswith(prefix))
    finally:
        conn.close()


def _state_name(dom):
    libvirt = _libvirt()
    state = dom.state()[0]
    return {libvirt.VIR_DOMAIN_RUNNING: 'running', libvirt.VIR_DOMAIN_PAUSED: 'paused',
            libvirt.VIR_DOMAIN_SHUTOFF: 'shutoff', libvirt.VIR_DOMAIN_SHUTDOWN: 'shutdown',
            libvirt.VIR_DOMAIN_CRASHED: 'crashed', libvirt.VIR_DOMAIN_PMSUSPENDED: 'pmsuspended',
            libvirt.VIR_DOMAIN_BLOCKED: 'blocked'}.get(state, 'nostate')
