# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's paths and names, its errors, and the small helpers every part uses (processes, pids, mounts, locks,
whether a libvirtd answers).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess

LOG = logging.getLogger('kslab')
#: the directory of this package (its script files)
HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

DEFAULT_URI = 'qemu:///system'
#: Every domain and run-dir file the lab makes starts with this.
GLOBAL_PREFIX = 'kslab-'

STATE_DIR = os.environ.get('KSLAB_STATE_DIR', '/var/lib/kvm-snapshots-lab')
RUN_DIR = os.path.join(STATE_DIR, 'run')
DAEMON_STATE_FILE = os.path.join(STATE_DIR, 'daemons.json')
CACHE_DIR = os.environ.get('KSLAB_CACHE_DIR', '/var/cache/kvm-snapshots-lab')
LIBVIRT_IMAGES_DIR = '/var/lib/libvirt/images'


DOMAIN_STATES = ('running', 'paused', 'shutoff')
#: bios: SeaBIOS, machine pc.  efi: OVMF chosen by libvirt (<os firmware='efi'>, machine q35) with a raw
#: NVRAM file, what virt-install makes.  efi-qcow2: the same with a qcow2 NVRAM (internal snapshots of
#: pflash guests need it, libvirt >= 10.9).  The NVRAM is RUN_DIR/<full>.nvram.fd or .qcow2.
FIRMWARES = ('bios', 'efi', 'efi-qcow2')
DISK_FORMATS = ('qcow2', 'raw')
AGENT_CHANNEL = 'org.qemu.guest_agent.0'


class LabError(Exception):
    """Something in the lab failed; the message says what and where to look."""


class AgentError(LabError):
    """The guest agent answered with an error or did not answer."""


# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------

def _run(argv, check=True, timeout=None, env=None, pidfile=None):
    """Run argv with text output captured; raise LabError on failure if check.

    The child gets its own process group, and the whole group is killed if
    we are interrupted or time out, so no debootstrap/dpkg keeps running in
    a build directory that is being removed.  With pidfile, the child's pid
    (= its process group) is written there while it runs, so that a later
    run can stop it if this process is killed outright (SIGKILL).
    """
    argv = [str(a) for a in argv]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                start_new_session=True)
    except FileNotFoundError as exc:
        raise LabError('%s: command not found (run "lab.py deps")' % argv[0]) from exc
    try:
        if pidfile:
            with open(pidfile, 'w', encoding='utf-8') as fh:
                fh.write('%d\n' % proc.pid)
        out, err = proc.communicate(timeout=timeout)
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise LabError('%s did not finish within %s s' % (' '.join(argv), timeout)) from exc
        raise
    cp = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and cp.returncode != 0:
        raise LabError('%s failed with exit code %d:\n%s' % (
            ' '.join(argv), cp.returncode, ((cp.stderr or '') + (cp.stdout or '')).strip()[-4000:]))
    return cp


def _libvirt():
    """Import libvirt-python lazily (``deps`` must work before it is installed)."""
    try:
        import libvirt  # pylint: disable=import-outside-toplevel
    except ImportError as exc:
        raise LabError('libvirt-python is not installed (run "lab.py deps")') from exc
    # libvirt prints every error to stderr by default; we raise them instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt


def _pid_alive(pid, name=None):
    """True if pid runs (and, when name is given, its /proc comm is name)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if name is None:
        return True
    try:
        with open('/proc/%d/comm' % pid, encoding='utf-8') as fh:
            return fh.read().strip() == name[:15]
    except OSError:
        return False


def _read_pidfile(path):
    try:
        with open(path, encoding='utf-8') as fh:
            return int(fh.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _socket_answers(path):
    """True if something accepts connections on the unix socket path."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _mounts_below(path):
    """Mount points at or below path, deepest first."""
    path = os.path.realpath(path)
    found = []
    with open('/proc/self/mounts', encoding='utf-8') as fh:
        for line in fh:
            mnt = line.split()[1].encode().decode('unicode_escape')
            if mnt == path or mnt.startswith(path + '/'):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)


def _rmtree(path):
    """Remove a build tree, unmounting what a killed debootstrap left mounted."""
    for mnt in _mounts_below(path):
        _run(['umount', '-l', mnt], check=False)
    if _mounts_below(path):
        raise LabError('cannot unmount everything below %s; remove it by hand' % path)
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive flock on path for the duration of the block."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'a', encoding='utf-8') as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _makedirs(path, mode=0o755):
    """mkdir -p, with a mode the unprivileged QEMU user can traverse."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)


def libvirt_answers(uri=DEFAULT_URI, timeout=10):
    """True if ``virsh -c uri version`` answers."""
    try:
        cp = subprocess.run(['virsh', '-c', uri, 'version'], capture_output=True,
                            text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return cp.returncode == 0


def libvirt_version(uri=DEFAULT_URI):
    """(major, minor, micro) of the libvirtd at uri (getLibVersion)."""
    conn = _libvirt().open(uri)
    try:
        version = conn.getLibVersion()
    finally:
        conn.close()
    return (version // 1000000, version // 1000 % 1000, version % 1000)


def _recipe_script(name):
    """The script file ``kslab/<name>`` from its ``set -euo pipefail`` line on, after a newline.

    That is the script exactly as it was embedded in lab.py before it became a file, so the recipe hashes
    (and the cached image and chroot they key) did not change with the move. The lines above it (shebang,
    shellcheck directives, what it is) are not part of the recipe.
    """
    with open(os.path.join(HERE, name), encoding='utf-8') as fh:
        text = fh.read()
    return '\n' + text[text.index('set -euo pipefail\n'):]
