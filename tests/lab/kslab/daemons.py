# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Packages (``deps``) and the host's own daemons (``daemons``, ``daemons-stop``): virtlogd and libvirtd, started
only when nothing serves them yet and stopped only when the lab started them (by the pid in their pidfile).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time

from .common import (DEFAULT_URI, GLOBAL_PREFIX, LIBVIRT_IMAGES_DIR, LOG, RUN_DIR, STATE_DIR, DAEMON_STATE_FILE,
                     LabError, _makedirs, _pid_alive, _read_pidfile, _run, _socket_answers, libvirt_answers)
from .removal import cleanup


APT_PACKAGES = (
    'qemu-system-x86', 'qemu-utils', 'libvirt-daemon-system', 'libvirt-clients',
    'libvirt-dev', 'debootstrap', 'pkg-config',
    'openssh-server',  # tests/lab/sshd.py: a private sshd on loopback for the remote-hypervisor tests
)

#: (daemon, pidfile, socket it serves); started in this order, stopped reversed.
DAEMONS = (
    ('virtlogd', '/run/virtlogd.pid', '/run/libvirt/virtlogd-sock'),
    ('libvirtd', '/run/libvirtd.pid', '/run/libvirt/libvirt-sock'),
)


# --------------------------------------------------------------------------
# deps
# --------------------------------------------------------------------------

def _dpkg_installed(package):
    cp = _run(['dpkg-query', '-W', '-f=${db:Status-Abbrev}', package], check=False)
    return cp.returncode == 0 and cp.stdout.startswith('ii')


def install_deps():
    """Install the missing Debian packages and libvirt-python; quick when all are there."""
    missing = [p for p in APT_PACKAGES if not _dpkg_installed(p)]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
        LOG.info('apt-get install %s', ' '.join(missing))
        _run(['apt-get', 'update', '-q'], env=env)
        _run(['apt-get', 'install', '-y', '-q'] + missing, env=env)
    else:
        LOG.info('Debian packages: all present')
    if importlib.util.find_spec('libvirt') is None:
        requirement = _pinned('libvirt-python')
        LOG.info('pip install %s (builds against libvirt-dev)', requirement)
        _run([sys.executable, '-m', 'pip', 'install', requirement])


def _pinned(package):
    """``package==X`` as pinned in the repository's requirements-test.txt, else the bare name."""
    pins = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'requirements-test.txt')
    try:
        with open(pins, encoding='utf-8') as handle:
            for line in handle:
                if line.split('#')[0].strip().lower().startswith(package + '=='):
                    return line.split('#')[0].strip()
    except OSError:
        pass
    return package


# --------------------------------------------------------------------------
# daemons
# --------------------------------------------------------------------------

def _load_daemon_state():
    try:
        with open(DAEMON_STATE_FILE, encoding='utf-8') as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _save_daemon_state(state):
    _makedirs(STATE_DIR)
    tmp = DAEMON_STATE_FILE + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as fh:
        json.dump(state, fh, indent=2, sort_keys=True)
    os.replace(tmp, DAEMON_STATE_FILE)


def daemon_status():
    """{daemon: {'pid': int or 0, 'started_by_lab': bool}} for virtlogd and libvirtd."""
    state = _load_daemon_state()
    result = {}
    for name, pidfile, _sock in DAEMONS:
        pid = _read_pidfile(pidfile)
        pid = pid if _pid_alive(pid, name) else 0
        ours = bool(pid) and state.get(name, {}).get('pid') == pid
        result[name] = {'pid': pid, 'started_by_lab': ours}
    return result


KVM_DEVICE = '/dev/kvm'


def make_kvm_usable(device=KVM_DEVICE):
    """Make /dev/kvm readable and writable by every user (0666), as both stacks' QEMU users need it.

    libvirtd probes QEMU's capabilities as root (KVM works) and caches them, then, before each use of the cache,
    checks whether its QEMU user (libvirt-qemu) may open /dev/kvm. Where it may not (the device's group is not the
    kvm group of that user: ``root:993 0660`` on a host whose kvm group is 107), libvirt logs "KVM was enabled when
    probing '/usr/bin/qemu-system-x86_64', but it is not available now" and probes again (four QEMU start-ups)
    before every snapshot of a shut-off domain: 8 to 23 s each instead of tens of milliseconds. One group cannot
    suit both stacks (kvm is 107 on the host, 993 in the trixie chroot), so the lab makes the device 0666.
    Returns True when it changed the mode (False: it was right already, or there is no such device).
    """
    try:
        mode = os.stat(device).st_mode & 0o777
    except OSError:
        return False
    if mode & 0o666 == 0o666:
        return False
    LOG.info('chmod 0666 %s (it was %04o: libvirt-qemu of each stack must open it, or libvirtd re-probes QEMU '
             'before every snapshot of a shut-off domain)', device, mode)
    os.chmod(device, mode | 0o666)
    return True


def start_daemons(uri=DEFAULT_URI, timeout=30):
    """Start virtlogd and libvirtd unless running (with /dev/kvm usable by QEMU: make_kvm_usable); wait until uri
    accepts connections."""
    make_kvm_usable()
    _makedirs(LIBVIRT_IMAGES_DIR, 0o711)
    _makedirs(RUN_DIR)
    state = _load_daemon_state()
    for name, pidfile, sock in DAEMONS:
        pid = _read_pidfile(pidfile)
        if _pid_alive(pid, name):
            LOG.info('%s already running (pid %d%s)', name, pid,
                     ', started by the lab' if state.get(name, {}).get('pid') == pid else '')
            continue
        state.pop(name, None)
        if _socket_answers(sock):
            LOG.info('%s: %s is served by something else (systemd or split daemons)', name, sock)
            continue
        LOG.info('starting %s -d', name)
        _run([name, '-d'])
        deadline = time.monotonic() + 10
        while not _pid_alive(_read_pidfile(pidfile), name):
            if time.monotonic() > deadline:
                raise LabError('%s -d started but wrote no live pid to %s' % (name, pidfile))
            time.sleep(0.1)
        state[name] = {'pid': _read_pidfile(pidfile), 'started_at': time.time()}
        _save_daemon_state(state)
    _save_daemon_state(state)
    deadline = time.monotonic() + timeout
    while not libvirt_answers(uri):
        if time.monotonic() > deadline:
            raise LabError('%s does not accept connections after %d s' % (uri, timeout))
        time.sleep(0.5)
    LOG.info('%s answers', uri)


def stop_daemons(uri=DEFAULT_URI, timeout=20):
    """Remove all lab domains, then stop the daemons the lab started (by pidfile pid)."""
    state = _load_daemon_state()
    if not state:
        LOG.info('the lab started no daemons; nothing to stop')
        return
    if libvirt_answers(uri):
        cleanup(GLOBAL_PREFIX, uri)
    for name, pidfile, _sock in reversed(DAEMONS):
        rec = state.pop(name, None)
        if not rec:
            continue
        pid = _read_pidfile(pidfile)
        if pid != rec.get('pid') or not _pid_alive(pid, name):
            LOG.info('%s (pid %s) started by the lab no longer runs', name, rec.get('pid'))
            continue
        LOG.info('stopping %s (pid %d)', name, pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid, name):
            if time.monotonic() > deadline:
                _save_daemon_state(dict(state, **{name: rec}))
                raise LabError('%s (pid %d) did not stop within %d s' % (name, pid, timeout))
            time.sleep(0.1)
    _save_daemon_state(state)
