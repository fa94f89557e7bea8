"""Disposable libvirt/QEMU test lab for the ``kvm.snapshots`` collection.

This is test tooling, not part of the collection: it may shell out to
``apt-get``, ``virsh``, ``qemu-img`` and ``debootstrap``.  It needs root,
Python 3.11 and (for the ``Lab`` class) libvirt-python.

What the lab provides
=====================

* **Packages** (``deps``): the Debian packages for libvirt + QEMU + the image
  build, installed with apt-get only when missing; libvirt-python with pip
  only when it cannot be imported.
* **Daemons** (``daemons``): ``virtlogd -d`` and ``libvirtd -d`` (there is no
  systemd on these machines), started only when nothing serves them yet.
  The lab records in ``STATE_DIR/daemons.json`` which daemons *it* started,
  and ``daemons-stop`` stops only those, by the pid in their pidfile (after
  removing every ``kslab-`` domain, so no QEMU process is left behind).
* **Guest image** (``image``): a small Debian bookworm root file system made
  with debootstrap (on a tmpfs, with ``INITRD=No`` so Debian's big initrd is
  not built), customised by ``CUSTOMIZE_SH`` (small udev-less initrd, guest
  agent at boot, unneeded units masked, docs/locales/most kernel modules
  removed: ~155 MiB), put into a 2G ext4 file system (``mkfs.ext4 -d``) and
  converted to ``base.qcow2``; the kernel and initrd are copied next to it
  for direct kernel boot.  It is cached in ``CACHE_DIR/<recipe-hash>/``; the
  hash covers the debootstrap command and environment, the package list,
  the customisation script and the mkfs step, so changing the recipe
  builds a new image (and removes the old one once nothing uses it).
  Builds happen in ``CACHE_DIR/.build-*`` under a lock and are renamed into
  place at the end, so an interrupted build never leaves a half image; the
  next build kills what a SIGKILLed one left running and removes it.  A
  build takes about 2 min (1.5 min CPU); a cached image is found in 0.2 s.
* **Guest agent**: Debian starts qemu-guest-agent from a udev rule when the
  virtio port ``org.qemu.guest_agent.0`` appears.  The image also has it in
  ``multi-user.target.wants`` and a drop-in with ``DefaultDependencies=no``,
  so it starts as soon as the port exists, before ``sysinit.target`` is
  reached: ``wait_agent`` returning means the agent works, not that every
  boot job is done (``systemctl is-system-running --wait`` via
  ``guest_exec`` waits for that).
* **Domains** (class ``Lab``): every domain and file the lab makes is named
  with a prefix, ``kslab-<run id>-`` by default.  All start with
  ``GLOBAL_PREFIX`` (``kslab-``), so ``cleanup`` (no arguments) removes the
  leftovers of any earlier, interrupted run.  Two kinds:

  - ``blank_domain``: a tiny VM (64 MiB, SeaBIOS, no OS) with blank qcow2 or
    raw disks; starts in a fraction of a second and snapshots quickly.
  - ``guest_domain``: a real Debian guest, a linked clone (qcow2 overlay with
    the cached ``base.qcow2`` as backing file), direct kernel boot,
    qemu-guest-agent channel, virtio-rng, serial console written to
    ``RUN_DIR/<name>.console.log``.  It reaches a working guest agent after
    about 20 s of QEMU CPU time under software emulation (wall time grows
    with the machine's load).

  All domains are ``<domain type='qemu'>`` (TCG): nested KVM hangs on this
  kind of machine.  ``firmware`` is ``bios`` (SeaBIOS, machine ``pc``),
  ``efi`` (``<os firmware='efi'>``, machine ``q35``: libvirt picks OVMF and
  makes a raw NVRAM, what virt-install does) or ``efi-qcow2`` (the same with
  a qcow2 NVRAM); NVRAM files are ``RUN_DIR/<full>.nvram.fd|.qcow2``.
  Disks, console logs and anything else the tests put
  there live in ``RUN_DIR`` (``/var/lib/kvm-snapshots-lab/run``), never in
  the repository.

CLI (``python3 tests/lab/lab.py CMD``)
======================================

``deps``, ``daemons``, ``daemons-stop`` (also the stacks' daemons and mounts),
``image [--rebuild]``, ``stack [--rebuild]``, ``stack-stop``,
``cleanup [--prefix P]`` (on every stack that runs), ``up`` (deps + daemons +
image + the trixie stack), ``status``, ``smoke [--keep] [--stack trixie]``
(end-to-end self check with timings).

Python use
==========

Import as ``from tests.lab import lab`` (repository root on ``sys.path``) or
``import lab`` (``tests/lab`` on ``sys.path``)::

    with lab.Lab() as L:                       # cleanup() on exit
        dom = L.guest_domain('g1')
        L.wait_agent(dom)
        rc, out, err = L.guest_exec(dom, ['cat', '/etc/os-release'])

The directories can be moved with the environment variables
``KSLAB_STATE_DIR`` and ``KSLAB_CACHE_DIR``.

Stacks
======

``Lab(stack='bookworm')`` (the default, or ``$KSLAB_STACK``) uses this
machine's libvirtd (Debian 12: libvirt 9.0, QEMU 7.2) at ``qemu:///system``.
``Lab(stack='trixie')`` uses Debian 13's (libvirt 11.3, QEMU 10.0, OVMF):

* **Chroot** (``stack``): ``debootstrap --variant=minbase trixie`` from the
  host's Debian mirror, then ``apt-get install --no-install-recommends``
  ``STACK_PACKAGES`` inside (with /proc, /sys, /dev, /dev/pts bind-mounted and
  a ``policy-rc.d`` that starts nothing), then ``STACK_SETUP_SH``
  (``namespaces = []`` in its qemu.conf: libvirtd cannot make per-VM mount
  namespaces in a chroot; no autostarted network).  Cached in
  ``CACHE_DIR/trixie-<recipe hash>/root``, built in ``.stack-build-*`` under a
  lock and renamed into place like the image; about 1-4 min (mirror speed),
  475 MiB.
* **Daemons**: ``chroot ROOT virtlogd -d`` and ``chroot ROOT libvirtd -d``,
  pids from ROOT/run, recorded in ``STATE_DIR/stack-trixie.json`` and stopped
  by ``stack-stop``/``daemons-stop`` by those pids only.  Before they start,
  the lab mounts (private, nothing propagates) /proc, /sys, /dev, /dev/pts,
  a tmpfs of its own on ROOT/run (the host's /run, where the host's libvirtd
  lives, is never shared), and STATE_DIR and CACHE_DIR at the same paths
  inside, so a disk path means the same file on both sides.  ``stack-stop``
  removes the stack's lab domains, stops the daemons, and unmounts all that.
  Both libvirtds use /dev/kvm, whose group differs between them (kvm is 107
  on the host, 993 in the chroot): the lab makes it 0666, else libvirt
  re-probes QEMU before each operation (seconds each).
* **URI** from this machine: ``qemu+unix:///system?socket=ROOT/run/libvirt/libvirt-sock``
  (``Stack.uri``; the host's 9.0 client library talks to 11.3 fine).  On the
  hypervisor itself (``kvm_connection_mode=hypervisor``): the chroot's own
  sshd (tests/lab/sshd.py with ``root``) lands in the chroot, whose
  ``/usr/bin/python3`` is 3.13 with python3-libvirt and whose
  ``qemu:///system`` is this libvirtd; ``STACK_PYTHON_WITHOUT_LIBVIRT`` is a
  venv there without the binding.
* Guests: ``guest_domain`` makes UEFI guests by default there (raw NVRAM,
  the common case; ``$KSLAB_GUEST_FIRMWARE`` chooses), ``blank_domain``
  SeaBIOS ones unless ``firmware`` is given.  A qcow2 NVRAM is made from the
  raw template with qemu-img (Debian's ovmf has no qcow2 build, and libvirt
  11.3 refuses to convert a template itself).  ``libvirt_version(uri)`` gives
  the version of a stack's libvirtd.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

LOG = logging.getLogger('kslab')

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

DOMAIN_STATES = ('running', 'paused', 'shutoff')
#: bios: SeaBIOS, machine pc.  efi: OVMF chosen by libvirt (<os firmware='efi'>, machine q35) with a raw
#: NVRAM file, what virt-install makes.  efi-qcow2: the same with a qcow2 NVRAM (internal snapshots of
#: pflash guests need it, libvirt >= 10.9).  The NVRAM is RUN_DIR/<full>.nvram.fd or .qcow2.
FIRMWARES = ('bios', 'efi', 'efi-qcow2')
DISK_FORMATS = ('qcow2', 'raw')
AGENT_CHANNEL = 'org.qemu.guest_agent.0'

# --------------------------------------------------------------------------
# Guest image recipe.  Everything in this block goes into the recipe hash.
# --------------------------------------------------------------------------

GUEST_SUITE = 'bookworm'
GUEST_PACKAGES = (
    'linux-image-amd64', 'qemu-guest-agent', 'systemd-sysv', 'python3-minimal',
    'udev', 'kmod', 'coreutils',
)
GUEST_HOSTNAME = 'kslab-guest'
IMAGE_SIZE = '2G'
#: ``{rootfs}`` and ``{mirror}`` are filled in at build time; the mirror is
#: deliberately not part of the hash (any Debian mirror gives the same suite).
DEBOOTSTRAP_ARGV = (
    'debootstrap', '--variant=minbase', '--include=' + ','.join(GUEST_PACKAGES),
    GUEST_SUITE, '{rootfs}', '{mirror}',
)
#: Environment for debootstrap: INITRD=No makes the kernel's postinst skip
#: Debian's big MODULES=most initrd (the customisation builds a small one).
DEBOOTSTRAP_ENV = {'INITRD': 'No'}
MKFS_ARGV = ('mkfs.ext4', '-q', '-F', '-L', 'kslab-root', '-d', '{rootfs}', '{raw}', IMAGE_SIZE)

#: Run on the host as ``bash -c CUSTOMIZE_SH customize ROOTFS OUTDIR HOSTNAME`` after
#: debootstrap.  It copies the kernel and initrd to OUTDIR and prepares the
#: root file system for a quick, headless boot to qemu-guest-agent.
CUSTOMIZE_SH = r'''
set -euo pipefail
root=$1 out=$2 hostname=$3

kver=$(ls "$root/usr/lib/modules")
if [ "$(printf '%s\n' "$kver" | wc -l)" != 1 ]; then
    echo "expected exactly one kernel in the image, found: $kver" >&2; exit 1
fi

# -- Initrd: only what mounts /dev/vda (virtio-pci, virtio-blk, ext4), and no
#    udev in it (devtmpfs makes /dev/vda appear): Debian's MODULES=most
#    initrd with udev coldplug costs ~7 s more CPU under software emulation.
printf 'MODULES=list\nBUSYBOX=n\nRESUME=none\n' > "$root/etc/initramfs-tools/conf.d/kslab"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic > "$root/etc/initramfs-tools/modules"
rm -f "$root"/usr/share/initramfs-tools/hooks/udev \
      "$root"/usr/share/initramfs-tools/scripts/init-top/udev \
      "$root"/usr/share/initramfs-tools/scripts/init-bottom/udev
chroot "$root" mkinitramfs -o "/boot/initrd.img-$kver" "$kver"

# -- Boot artefacts go outside the image (direct kernel boot).
install -m 0644 "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
install -m 0644 "$root/boot/initrd.img-$kver" "$out/initrd.img"
test "$(stat -c %s "$out/initrd.img")" -gt 1000000   # mkinitramfs can fail quietly
rm -rf "$root"/boot/* "$root"/vmlinuz* "$root"/initrd.img*

# -- Identity.  debootstrap wrote a machine-id; a non-empty one also keeps
#    systemd from treating each boot as a first boot.
test -s "$root/etc/machine-id"
echo "$hostname" > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$hostname" > "$root/etc/hosts"
printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n' > "$root/etc/fstab"
chroot "$root" passwd -d root >/dev/null

# -- qemu-guest-agent.  Debian's unit has no [Install] section: a udev rule
#    (SYSTEMD_WANTS) starts it when the virtio port org.qemu.guest_agent.0
#    appears, and it BindsTo= that device.  Do not depend on that alone:
#    load virtio_console early, let multi-user.target want the service,
#    and drop the default dependencies so it starts as soon as the port
#    exists instead of after sysinit.target (saves ~5 s under emulation).
mkdir -p "$root/etc/systemd/system/multi-user.target.wants" \
         "$root/etc/systemd/system/qemu-guest-agent.service.d"
ln -sf /lib/systemd/system/qemu-guest-agent.service \
    "$root/etc/systemd/system/multi-user.target.wants/qemu-guest-agent.service"
printf '[Unit]\nDefaultDependencies=no\nConflicts=shutdown.target\nBefore=shutdown.target\n' \
    > "$root/etc/systemd/system/qemu-guest-agent.service.d/kslab.conf"
echo virtio_console > "$root/etc/modules-load.d/kslab-guest-agent.conf"

# -- Boot speed: mask what a headless, throw-away test guest does not need
#    (timers, maintenance, pseudo file systems, utmp, gettys on VTs).
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-pstore.service \
        getty@tty1.service getty-static.service systemd-binfmt.service \
        proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
        dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount \
        sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount \
        modprobe@loop.service modprobe@fuse.service modprobe@dm_mod.service \
        modprobe@configfs.service modprobe@drm.service modprobe@efi_pstore.service \
        systemd-journal-flush.service systemd-sysusers.service systemd-update-utmp.service \
        systemd-update-utmp-runlevel.service kmod-static-nodes.service \
        systemd-remount-fs.service systemd-firstboot.service; do
    rm -f "$root"/etc/systemd/system/*.wants/"$unit"
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -f "$root"/etc/systemd/system/*.wants/remote-fs.target

# -- Shrink: package caches, documentation, translations ...
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/log/apt/*
mkdir -p "$root/var/lib/apt/lists/partial"
# ... and every kernel module a virtio guest on ext4 does not load.
keep='^kernel/(drivers/virtio/|drivers/block/virtio_blk|drivers/char/virtio_console|'
keep+='drivers/char/hw_random/virtio-rng|drivers/net/(virtio_net|net_failover)|net/core/failover|'
keep+='fs/(ext4|jbd2|autofs)/|fs/mbcache|lib/(crc|libcrc32c)|crypto/crc|arch/x86/crypto/crc)'
(cd "$root/usr/lib/modules/$kver" && find kernel -name '*.ko*' | { grep -Ev "$keep" || true; } | xargs -r rm -f)
find "$root/usr/lib/modules/$kver/kernel" -type d -empty -delete
chroot "$root" depmod "$kver"
'''

#: Guest kernel command line.  ``fsck.mode=skip``: the root is mounted
#: read-write by the initramfs; ``systemd.show_status=0`` and ``quiet`` keep the
#: (slow, emulated) serial console short.
GUEST_CMDLINE = ('root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 '
                 'fsck.mode=skip systemd.unit=multi-user.target mitigations=off')


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
    pins = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'requirements-test.txt')
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


def libvirt_answers(uri=DEFAULT_URI, timeout=10):
    """True if ``virsh -c uri version`` answers."""
    try:
        cp = subprocess.run(['virsh', '-c', uri, 'version'], capture_output=True,
                            text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return cp.returncode == 0


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


# --------------------------------------------------------------------------
# image
# --------------------------------------------------------------------------

def recipe_hash():
    """Short hash of everything that determines the guest image's content."""
    recipe = {
        'debootstrap': list(DEBOOTSTRAP_ARGV),
        'debootstrap_env': DEBOOTSTRAP_ENV,
        'customize': CUSTOMIZE_SH,
        'hostname': GUEST_HOSTNAME,
        'mkfs': list(MKFS_ARGV),
        'convert': 'qemu-img convert -O qcow2',
    }
    blob = json.dumps(recipe, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


class GuestImage:
    """Paths of one cached guest image (``base``, ``kernel``, ``initrd``)."""

    def __init__(self, directory):
        self.dir = directory
        self.base = os.path.join(directory, 'base.qcow2')
        self.kernel = os.path.join(directory, 'vmlinuz')
        self.initrd = os.path.join(directory, 'initrd.img')
        self.info = os.path.join(directory, 'recipe.json')

    def exists(self):
        """True if all files of a complete build are there."""
        return all(os.path.isfile(p) for p in (self.base, self.kernel, self.initrd, self.info))

    def __repr__(self):
        return 'GuestImage(%r)' % self.dir


def image_paths():
    """The GuestImage for the current recipe (it may not be built yet)."""
    return GuestImage(os.path.join(CACHE_DIR, recipe_hash()))


def debian_mirror():
    """The Debian mirror the host's apt uses (one-line and deb822 sources)."""
    candidates = []
    paths = ['/etc/apt/sources.list']
    with contextlib.suppress(OSError):
        paths += sorted(os.path.join('/etc/apt/sources.list.d', f)
                        for f in os.listdir('/etc/apt/sources.list.d')
                        if f.endswith(('.list', '.sources')))
    for path in paths:
        with contextlib.suppress(OSError):
            with open(path, encoding='utf-8') as fh:
                text = fh.read()
            if path.endswith('.sources'):
                for stanza in re.split(r'\n\s*\n', text):
                    fields = dict(re.findall(r'^([A-Za-z-]+):\s*(.*)$', stanza, re.M))
                    if 'deb' in fields.get('Types', '').split():
                        for uri in fields.get('URIs', '').split():
                            candidates.append((uri, fields.get('Suites', '').split()))
            else:
                for line in text.splitlines():
                    words = re.sub(r'\[[^]]*\]', ' ', line.split('#')[0]).split()
                    if len(words) >= 3 and words[0] == 'deb':
                        candidates.append((words[1], [words[2]]))
    for uri, suites in candidates:
        if 'security' not in uri and any(s.split('-')[0] in ('bookworm', 'trixie', 'stable', GUEST_SUITE)
                                         for s in suites):
            return uri.rstrip('/')
    return 'http://deb.debian.org/debian'


def build_image(rebuild=False):
    """Build the guest image unless the cache has it; return its GuestImage.

    Takes ~2-3 min (debootstrap dominates).  Concurrent callers wait on a
    lock; an interrupted build leaves only a ``.build-*`` directory that the
    next build removes.
    """
    img = image_paths()
    if img.exists() and not rebuild:
        LOG.info('guest image cached: %s', img.dir)
        return img
    _makedirs(CACHE_DIR)
    with _locked(os.path.join(CACHE_DIR, '.lock')):
        if img.exists() and not rebuild:
            LOG.info('guest image cached: %s (built by a concurrent run)', img.dir)
            return img
        for entry in os.listdir(CACHE_DIR):
            if entry.startswith('.build-'):
                LOG.info('removing interrupted build %s', entry)
                _stop_orphaned_build(os.path.join(CACHE_DIR, entry))
                _rmtree(os.path.join(CACHE_DIR, entry))
        tmp = tempfile.mkdtemp(prefix='.build-%s-' % recipe_hash(), dir=CACHE_DIR)
        try:
            _build_into(tmp)
            os.chmod(tmp, 0o755)
            if os.path.exists(img.dir):
                old = tempfile.mkdtemp(prefix='.build-old-', dir=CACHE_DIR)
                os.rename(img.dir, os.path.join(old, 'img'))
                os.rename(tmp, img.dir)
                _rmtree(old)
            else:
                os.rename(tmp, img.dir)
        except BaseException:
            _rmtree(tmp)
            raise
        prune_images()
    LOG.info('guest image ready: %s', img.dir)
    return img


def _stop_orphaned_build(build_dir):
    """Kill the process group a SIGKILLed build left running in build_dir.

    Only the group recorded in build_dir/child.pid, and only if its leader
    still runs with build_dir on its command line or as its root directory
    (``chroot DIR cmd`` execs cmd, whose command line no longer names DIR).
    """
    pid = _read_pidfile(os.path.join(build_dir, 'child.pid'))
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as fh:
            cmdline = fh.read().decode(errors='replace')
        root = os.readlink('/proc/%d/root' % pid)
    except OSError:
        return
    if build_dir not in cmdline and not (root + '/').startswith(build_dir.rstrip('/') + '/'):
        return
    LOG.info('stopping the orphaned build process group %d', pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def prune_images():
    """Remove cached images of other recipes that no qcow2 file in RUN_DIR uses as backing."""
    current = image_paths().dir
    in_use = set()
    if os.path.isdir(RUN_DIR):
        for name in os.listdir(RUN_DIR):
            cp = _run(['qemu-img', 'info', '-U', '--output=json', os.path.join(RUN_DIR, name)], check=False)
            with contextlib.suppress(ValueError):
                backing = json.loads(cp.stdout).get('full-backing-filename')
                if backing:
                    in_use.add(os.path.dirname(os.path.realpath(backing)))
    for entry in os.listdir(CACHE_DIR):
        path = os.path.join(CACHE_DIR, entry)
        if re.fullmatch(r'[0-9a-f]{16}', entry) and path != current and path not in in_use:
            LOG.info('removing the image of an older recipe: %s', path)
            _rmtree(path)


def _build_into(tmp):
    rootfs = os.path.join(tmp, 'rootfs')
    raw = os.path.join(tmp, 'img.raw')
    mirror = debian_mirror()
    start = time.monotonic()
    timings = {}

    def step(name, argv, note='', env=None):
        t0 = time.monotonic()
        LOG.info('image: %s%s ...', name, note)
        _run(argv, env=env, pidfile=os.path.join(tmp, 'child.pid'))
        timings[name] = round(time.monotonic() - t0, 1)
        LOG.info('image: %s done in %.1f s', name, timings[name])

    debs = os.path.join(CACHE_DIR, 'debs')   # downloaded .debs, reused across recipes
    _makedirs(debs)
    # dpkg fsyncs every file it unpacks; on a tmpfs that costs nothing.
    os.mkdir(rootfs)
    on_tmpfs = _run(['mount', '-t', 'tmpfs', '-o', 'size=3g,mode=0755', 'kslab-build', rootfs],
                    check=False).returncode == 0
    if not on_tmpfs:
        LOG.info('image: no tmpfs for the build, building on disk (slower)')
    argv = [a.format(rootfs=rootfs, mirror=mirror) for a in DEBOOTSTRAP_ARGV]
    argv.insert(1, '--cache-dir=' + debs)
    step('debootstrap', argv, ' from %s (about 2 min)' % mirror, env=dict(os.environ, **DEBOOTSTRAP_ENV))
    step('customize', ['bash', '-c', CUSTOMIZE_SH, 'customize', rootfs, tmp, GUEST_HOSTNAME])
    if _mounts_below(rootfs) != ([rootfs] if on_tmpfs else []):
        raise LabError('file systems still mounted below %s' % rootfs)
    step('mkfs.ext4 %s' % IMAGE_SIZE, [a.format(rootfs=rootfs, raw=raw) for a in MKFS_ARGV])
    used = _run(['du', '-sm', rootfs]).stdout.split()[0]
    if on_tmpfs:
        _run(['umount', rootfs])
    _rmtree(rootfs)
    step('qemu-img convert', ['qemu-img', 'convert', '-O', 'qcow2', raw, os.path.join(tmp, 'base.qcow2')])
    os.unlink(raw)
    for name in ('base.qcow2', 'vmlinuz', 'initrd.img'):
        os.chmod(os.path.join(tmp, name), 0o644)
    os.unlink(os.path.join(tmp, 'child.pid'))
    info = {
        'recipe_hash': recipe_hash(), 'mirror': mirror, 'built_at': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
        'rootfs_mib': int(used), 'seconds': round(time.monotonic() - start, 1), 'steps': timings,
        'kernel_cmdline': GUEST_CMDLINE,
    }
    with open(os.path.join(tmp, 'recipe.json'), 'w', encoding='utf-8') as fh:
        json.dump(info, fh, indent=2)


# --------------------------------------------------------------------------
# Stacks: the hypervisor the tests run against.  "bookworm" is this
# machine's own libvirtd (Debian 12: libvirt 9.0, QEMU 7.2); "trixie" is
# Debian 13's libvirtd (11.3), QEMU (10.0) and OVMF in a cached chroot with
# daemons of its own.
# --------------------------------------------------------------------------

#: Everything in this block goes into the stack's recipe hash.
STACK_SUITE = 'trixie'
STACK_PACKAGES = (
    'libvirt-daemon-system', 'libvirt-clients', 'qemu-system-x86', 'qemu-utils', 'python3-libvirt', 'ovmf',
    'procps',
    'openssh-server',   # StackSshd: Ansible's ssh lands in the chroot (its Python 3.13 + python3-libvirt)
    'python3-venv',     # STACK_PYTHON_WITHOUT_LIBVIRT: a Python without the binding, for the remote tests
)
STACK_DEBOOTSTRAP_ARGV = ('debootstrap', '--variant=minbase', STACK_SUITE, '{root}', '{mirror}')
#: Run on the host as ``bash -c STACK_SETUP_SH setup ROOT`` once the packages are in.
STACK_SETUP_SH = r'''
set -euo pipefail
root=$1
# libvirtd in a chroot cannot make its per-VM mount namespace
# ("Failed disable mount propagation out of the root filesystem").
printf '\n# kslab: no per-VM mount namespace in a chroot\nnamespaces = []\n' >> "$root/etc/libvirt/qemu.conf"
# the default network would make virbr0 in the host's network namespace
rm -f "$root"/etc/libvirt/qemu/networks/autostart/*.xml
# a Python without python3-libvirt (the remote tests show the module's message for a missing binding)
chroot "$root" python3 -m venv --without-pip /opt/kslab-python-without-libvirt
chroot "$root" /opt/kslab-python-without-libvirt/bin/python3 -c 'import sys; sys.exit("libvirt" in sys.modules)'
! chroot "$root" /opt/kslab-python-without-libvirt/bin/python3 -c 'import libvirt' 2>/dev/null
# nothing in the chroot starts services; sshd's host keys are made per run by StackSshd
rm -f "$root"/etc/ssh/ssh_host_*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
mkdir -p "$root/var/lib/apt/lists/partial"
'''
STACK_PYTHON = '/usr/bin/python3'
STACK_PYTHON_WITHOUT_LIBVIRT = '/opt/kslab-python-without-libvirt/bin/python3'
#: (daemon, its pidfile inside the chroot); started in this order, stopped reversed.
STACK_DAEMONS = (('virtlogd', '/run/virtlogd.pid'), ('libvirtd', '/run/libvirtd.pid'))
STACKS = ('bookworm', 'trixie')
DEFAULT_STACK = 'bookworm'


def stack_recipe_hash():
    """Short hash of everything that determines the trixie chroot's content."""
    recipe = {'debootstrap': list(STACK_DEBOOTSTRAP_ARGV), 'packages': list(STACK_PACKAGES),
              'setup': STACK_SETUP_SH}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


class Stack:
    """One hypervisor stack of the lab: its name, URI and (for a chroot) its root.

    ``uri`` reaches its libvirtd from this machine; ``hypervisor_python`` is the
    Python that runs the modules *on* that hypervisor (Ansible's
    ``ansible_python_interpreter`` there); ``python_without_libvirt`` one
    without libvirt-python there.  ``root`` is None for the host's own stack.
    """

    def __init__(self, name):
        if name not in STACKS:
            raise LabError('unknown stack %r (stacks: %s)' % (name, ', '.join(STACKS)))
        self.name = name
        if name == 'bookworm':
            self.root = None
            self.dir = None
            self.uri = DEFAULT_URI
            self.hypervisor_python = sys.executable
            self.python_without_libvirt = '/usr/bin/python3'
        else:
            self.dir = os.path.join(CACHE_DIR, '%s-%s' % (name, stack_recipe_hash()))
            self.root = os.path.join(self.dir, 'root')
            self.uri = 'qemu+unix:///system?socket=%s' % self.host_path('/run/libvirt/libvirt-sock')
            self.hypervisor_python = STACK_PYTHON
            self.python_without_libvirt = STACK_PYTHON_WITHOUT_LIBVIRT
        self.info = os.path.join(self.dir, 'stack.json') if self.dir else None
        self.state_file = os.path.join(STATE_DIR, 'stack-%s.json' % name)

    def host_path(self, path):
        """Where a path of this stack's file system is on this machine."""
        return path if self.root is None else self.root + path

    def built(self):
        return self.root is None or os.path.isfile(self.info)

    def __repr__(self):
        return 'Stack(%r)' % self.name


def stack(name=None):
    """The Stack called name (default: $KSLAB_STACK, else bookworm)."""
    return Stack(name or os.environ.get('KSLAB_STACK') or DEFAULT_STACK)


_stack_from_env = stack   # for Lab.__init__, whose argument is called stack


def libvirt_version(uri=DEFAULT_URI):
    """(major, minor, micro) of the libvirtd at uri (getLibVersion)."""
    conn = _libvirt().open(uri)
    try:
        version = conn.getLibVersion()
    finally:
        conn.close()
    return (version // 1000000, version // 1000 % 1000, version % 1000)


def build_stack(name='trixie', rebuild=False):
    """Build the chroot of stack name unless the cache has it; return the Stack.

    ``debootstrap --variant=minbase``, then ``apt-get install
    --no-install-recommends STACK_PACKAGES`` inside (with /proc, /sys, /dev,
    /dev/pts bind-mounted and a policy-rc.d that starts nothing), then
    STACK_SETUP_SH.  About 4 min and 650 MB.  Built in ``CACHE_DIR/.stack-build-*``
    under a lock and renamed into place, like the guest image.
    """
    st = Stack(name)
    if st.root is None:
        return st
    if st.built() and not rebuild:
        LOG.info('stack %s cached: %s', name, st.dir)
        return st
    _makedirs(CACHE_DIR)
    with _locked(os.path.join(CACHE_DIR, '.stack-lock')):
        if st.built() and not rebuild:
            LOG.info('stack %s cached: %s (built by a concurrent run)', name, st.dir)
            return st
        if rebuild and os.path.exists(st.dir):
            if _stack_running(st):
                raise LabError('stack %s runs: "lab.py stack-stop" first' % name)
        for entry in os.listdir(CACHE_DIR):
            if entry.startswith('.stack-build-'):
                LOG.info('removing interrupted stack build %s', entry)
                _stop_orphaned_build(os.path.join(CACHE_DIR, entry))
                _rmtree(os.path.join(CACHE_DIR, entry))
        tmp = tempfile.mkdtemp(prefix='.stack-build-%s-' % name, dir=CACHE_DIR)
        try:
            _build_stack_into(tmp)
            os.chmod(tmp, 0o755)
            if os.path.exists(st.dir):
                old = tempfile.mkdtemp(prefix='.stack-build-old-', dir=CACHE_DIR)
                os.rename(st.dir, os.path.join(old, 'stack'))
                os.rename(tmp, st.dir)
                _rmtree(old)
            else:
                os.rename(tmp, st.dir)
        except BaseException:
            _rmtree(tmp)
            raise
        _prune_stacks(st)
    LOG.info('stack %s ready: %s', name, st.dir)
    return st


def _prune_stacks(current):
    """Remove chroots of older recipes of the same stack (unless something is mounted in them)."""
    for entry in os.listdir(CACHE_DIR):
        path = os.path.join(CACHE_DIR, entry)
        if re.fullmatch(r'%s-[0-9a-f]{16}' % current.name, entry) and path != current.dir:
            if _mounts_below(path):
                LOG.info('keeping the older stack %s: it is in use', path)
                continue
            LOG.info('removing the stack of an older recipe: %s', path)
            _rmtree(path)


def _bind(source, target, fstype=None, options=None):
    """Mount source on target (a bind, or fstype), private so nothing propagates to or from the host."""
    os.makedirs(target, exist_ok=True)
    if fstype:
        _run(['mount', '-t', fstype, '-o', options or 'defaults', source, target])
    else:
        _run(['mount', '--bind', source, target])
    _run(['mount', '--make-private', target])


def _umount_below(path):
    """Unmount everything at or below path, deepest first; LabError if something stays."""
    for mnt in _mounts_below(path):
        if _run(['umount', mnt], check=False).returncode != 0:
            LOG.info('umount %s: busy, detaching it lazily', mnt)
            _run(['umount', '-l', mnt], check=False)
    left = _mounts_below(path)
    if left:
        raise LabError('still mounted: %s' % ', '.join(left))


def _build_stack_into(tmp):
    root = os.path.join(tmp, 'root')
    mirror = debian_mirror()
    start = time.monotonic()
    timings = {}
    pidfile = os.path.join(tmp, 'child.pid')

    def step(what, argv, env=None):
        t0 = time.monotonic()
        LOG.info('stack: %s ...', what)
        _run(argv, env=env, pidfile=pidfile)
        timings[what] = round(time.monotonic() - t0, 1)
        LOG.info('stack: %s done in %.1f s', what, timings[what])

    debs = os.path.join(CACHE_DIR, 'debs-%s' % STACK_SUITE)
    _makedirs(debs)
    os.mkdir(root)
    step('debootstrap %s' % STACK_SUITE,
         [STACK_DEBOOTSTRAP_ARGV[0], '--cache-dir=' + debs]
         + [a.format(root=root, mirror=mirror) for a in STACK_DEBOOTSTRAP_ARGV[1:]])
    with open(os.path.join(root, 'usr/sbin/policy-rc.d'), 'w', encoding='utf-8') as fh:
        fh.write('#!/bin/sh\n# kslab: nothing starts services in this chroot\nexit 101\n')
    os.chmod(os.path.join(root, 'usr/sbin/policy-rc.d'), 0o755)
    # dpkg's fsync per unpacked file costs minutes on a busy disk; a failed build is thrown away anyway
    with open(os.path.join(root, 'etc/dpkg/dpkg.cfg.d/kslab-unsafe-io'), 'w', encoding='utf-8') as fh:
        fh.write('force-unsafe-io\n')
    try:
        for src in ('/proc', '/sys', '/dev', '/dev/pts'):
            _bind(src, root + src)
        env = dict(os.environ, DEBIAN_FRONTEND='noninteractive', LC_ALL='C.UTF-8')
        step('apt-get install', ['chroot', root, 'apt-get', 'install', '-y', '-q', '--no-install-recommends']
             + list(STACK_PACKAGES), env=env)
        step('setup', ['bash', '-c', STACK_SETUP_SH, 'setup', root])
    finally:
        _umount_below(root)
    os.unlink(os.path.join(root, 'etc/dpkg/dpkg.cfg.d/kslab-unsafe-io'))
    os.unlink(pidfile)
    versions = {}
    for pkg in ('libvirt-daemon', 'qemu-system-x86', 'ovmf', 'python3'):
        cp = _run(['chroot', root, 'dpkg-query', '-W', '-f=${Version}', pkg], check=False)
        versions[pkg] = cp.stdout.strip()
    info = {'recipe_hash': stack_recipe_hash(), 'suite': STACK_SUITE, 'mirror': mirror,
            'built_at': time.strftime('%Y-%m-%dT%H:%M:%S%z'), 'seconds': round(time.monotonic() - start, 1),
            'steps': timings, 'versions': versions,
            'mib': int(_run(['du', '-sm', '-x', root]).stdout.split()[0])}
    with open(os.path.join(tmp, 'stack.json'), 'w', encoding='utf-8') as fh:
        json.dump(info, fh, indent=2)


def _load_stack_state(st):
    try:
        with open(st.state_file, encoding='utf-8') as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return {}


def _save_stack_state(st, state):
    _makedirs(STATE_DIR)
    tmp = st.state_file + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as fh:
        json.dump(state, fh, indent=2, sort_keys=True)
    os.replace(tmp, st.state_file)


def stack_running(name='trixie'):
    """True if the chroot stack's virtlogd or libvirtd runs."""
    st = Stack(name)
    return st.root is not None and _stack_running(st)


def _stack_running(st):
    return any(_pid_alive(_read_pidfile(st.host_path(pidfile)), name) for name, pidfile in STACK_DAEMONS)


def stack_mounts(st):
    """(source, target on the host, fstype, options) of what the stack's daemons need mounted, in order."""
    r = st.root
    return [
        ('/proc', r + '/proc', None, None),
        ('/sys', r + '/sys', None, None),
        ('/dev', r + '/dev', None, None),
        ('/dev/pts', r + '/dev/pts', None, None),
        # a /run of its own, empty at each start (the host's /run is never shared: its libvirtd lives there)
        ('kslab-%s-run' % st.name, r + '/run', 'tmpfs', 'mode=0755,size=64m'),
        # the same paths on both sides: a disk path libvirt reports means the same file here and there
        (STATE_DIR, r + STATE_DIR, None, None),
        (CACHE_DIR, r + CACHE_DIR, None, None),
    ]


def start_stack(name='trixie', timeout=60):
    """Build the stack unless cached, mount what it needs, start its virtlogd and libvirtd unless running."""
    st = build_stack(name)
    if st.root is None:
        start_daemons()
        return st
    _makedirs(RUN_DIR)
    make_kvm_usable()
    with _locked(st.state_file + '.lock'):
        state = _load_stack_state(st)
        mounted = set(_mounts_below(st.root))
        for source, target, fstype, options in stack_mounts(st):
            if os.path.realpath(target) in mounted:
                continue
            LOG.info('stack %s: mount %s on %s', name, source, target)
            _bind(source, target, fstype, options)
            state.setdefault('mounts', [])
            if target not in state['mounts']:
                state['mounts'].append(target)
            _save_stack_state(st, state)
        for daemon, pidfile in STACK_DAEMONS:
            pid = _read_pidfile(st.host_path(pidfile))
            if _pid_alive(pid, daemon):
                LOG.info('stack %s: %s already running (pid %d)', name, daemon, pid)
                continue
            LOG.info('stack %s: starting chroot %s %s -d', name, st.root, daemon)
            _run(['chroot', st.root, daemon, '-d'])
            deadline = time.monotonic() + 10
            while not _pid_alive(_read_pidfile(st.host_path(pidfile)), daemon):
                if time.monotonic() > deadline:
                    raise LabError('stack %s: %s -d started but wrote no live pid to %s'
                                   % (name, daemon, st.host_path(pidfile)))
                time.sleep(0.1)
            state.setdefault('daemons', {})[daemon] = {'pid': _read_pidfile(st.host_path(pidfile)),
                                                       'started_at': time.time()}
            _save_stack_state(st, state)
    deadline = time.monotonic() + timeout
    while not libvirt_answers(st.uri):
        if time.monotonic() > deadline:
            raise LabError('%s does not accept connections after %d s' % (st.uri, timeout))
        time.sleep(0.5)
    LOG.info('stack %s: %s answers (libvirt %s)', name, st.uri, '.'.join(map(str, libvirt_version(st.uri))))
    return st


def stop_stack(name='trixie', timeout=30):
    """Remove the stack's lab domains, stop the daemons the lab started there (by pid), undo its mounts."""
    st = Stack(name)
    if st.root is None or not os.path.isdir(st.root):
        return
    with _locked(st.state_file + '.lock'):
        state = _load_stack_state(st)
        if _stack_running(st) and libvirt_answers(st.uri):
            cleanup(GLOBAL_PREFIX, st.uri)
        for daemon, pidfile in reversed(STACK_DAEMONS):
            rec = state.get('daemons', {}).pop(daemon, None)
            pid = _read_pidfile(st.host_path(pidfile))
            if not rec or pid != rec.get('pid') or not _pid_alive(pid, daemon):
                if _pid_alive(pid, daemon):
                    LOG.info('stack %s: %s (pid %d) was not started by the lab: left alone', name, daemon, pid)
                continue
            LOG.info('stack %s: stopping %s (pid %d)', name, daemon, pid)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid, daemon):
                if time.monotonic() > deadline:
                    raise LabError('stack %s: %s (pid %d) did not stop within %d s' % (name, daemon, pid, timeout))
                time.sleep(0.1)
        _save_stack_state(st, state)
        if _stack_running(st):
            LOG.info('stack %s: daemons the lab did not start still run: mounts left in place', name)
            return
        _umount_below(st.root)
        state.pop('mounts', None)
        _save_stack_state(st, state)
    LOG.info('stack %s stopped; nothing mounted below %s', name, st.root)


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


def libvirt_flags_inactive():
    return _libvirt().VIR_DOMAIN_XML_INACTIVE


def _sub(parent, tag, text=None, **attrs):
    elem = ET.SubElement(parent, tag, {k.rstrip('_'): str(v) for k, v in attrs.items()})
    if text is not None:
        elem.text = str(text)
    return elem


class Lab:
    """Make and remove disposable domains on a real libvirtd.

    Every domain and file made by one Lab is named ``<prefix><name>``; the
    prefix defaults to ``kslab-<random run id>-``.  Methods that take a
    ``domain`` accept the short name or the full name.
    """

    def __init__(self, uri=None, prefix=None, stack=None):
        if stack is not None and not isinstance(stack, Stack):
            stack = Stack(stack)
        if stack is None and uri is None:
            stack = _stack_from_env()     # $KSLAB_STACK, else bookworm
        elif stack is None:
            stack = next((Stack(n) for n in STACKS if Stack(n).uri == uri), None) or Stack(DEFAULT_STACK)
        #: the Stack whose libvirtd this lab uses (``stack.uri`` unless another uri was given)
        self.stack = stack
        self.uri = uri or stack.uri
        #: the firmware of guest_domain's guests unless given: $KSLAB_GUEST_FIRMWARE, else the common case
        #: of the stack (bookworm: bios; trixie: efi with a raw NVRAM, what virt-install makes)
        self.guest_firmware = os.environ.get('KSLAB_GUEST_FIRMWARE') or ('bios' if stack.root is None else 'efi')
        if self.guest_firmware not in FIRMWARES:
            raise LabError('KSLAB_GUEST_FIRMWARE must be one of %s, not %r' % (FIRMWARES, self.guest_firmware))
        self.prefix = prefix or '%s%s-' % (GLOBAL_PREFIX, secrets.token_hex(3))
        _check_prefix(self.prefix)
        self.run_dir = RUN_DIR
        self._conn = None
        _makedirs(STATE_DIR)
        _makedirs(RUN_DIR)

    # -- plumbing ---------------------------------------------------------

    @property
    def conn(self):
        """The lab's libvirt connection (opened on first use)."""
        if self._conn is None:
            self._conn = _libvirt().open(self.uri)
        return self._conn

    def close(self):
        """Close the libvirt connection (domains stay)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.cleanup()
        finally:
            self.close()

    def full_name(self, name):
        """Full domain name for name (unchanged if it already has a lab prefix)."""
        if name.startswith(GLOBAL_PREFIX):
            return name
        if not re.fullmatch(r'[A-Za-z0-9_.-]+', name):
            raise LabError('bad lab domain name %r (use [A-Za-z0-9_.-])' % name)
        return self.prefix + name

    def lookup(self, domain):
        """The virDomain for domain."""
        return self.conn.lookupByName(self.full_name(domain))

    def state(self, domain):
        """'running', 'paused', 'shutoff', ... of domain."""
        return _state_name(self.lookup(domain))

    def virsh(self, *args, timeout=120):
        """Run ``virsh -c URI args...``; CompletedProcess with text output, never raises on rc."""
        return _run(['virsh', '-c', self.uri] + [str(a) for a in args], check=False, timeout=timeout)

    @staticmethod
    def qemu_img_snapshots(path):
        """Names of the internal snapshots in a qcow2 file (works on running images: -U)."""
        cp = _run(['qemu-img', 'info', '-U', '--output=json', path])
        return [s['name'] for s in json.loads(cp.stdout).get('snapshots', [])]

    def disk_paths(self, domain):
        """Source files of the domain's disks, in target order (vda, vdb, ...)."""
        root = ET.fromstring(self.lookup(domain).XMLDesc(0))
        disks = [(d.find('target').get('dev'), d.find('source'))
                 for d in root.findall('./devices/disk') if d.get('device', 'disk') == 'disk']
        return [src.get('file') or src.get('dev') for _dev, src in sorted(disks, key=lambda x: x[0])
                if src is not None]

    def console_log(self, domain):
        """Path of the domain's serial console log."""
        return os.path.join(self.run_dir, self.full_name(domain) + '.console.log')

    def console_tail(self, domain, lines=30):
        """The last lines of the serial console log ('' if none)."""
        try:
            with open(self.console_log(domain), encoding='utf-8', errors='replace') as fh:
                return ''.join(fh.readlines()[-lines:])
        except OSError:
            return ''

    # -- making domains ---------------------------------------------------

    def _domain_xml(self, full, memory_mib, disks, agent_channel, kernel=None, rng=False, firmware='bios'):
        if firmware not in FIRMWARES:
            raise LabError('firmware must be one of %s, not %r' % (FIRMWARES, firmware))
        root = ET.Element('domain', type='qemu')
        _sub(root, 'name', full)
        _sub(root, 'memory', memory_mib, unit='MiB')
        _sub(root, 'vcpu', 1)
        if firmware == 'bios':
            os_ = _sub(root, 'os')
            _sub(os_, 'type', 'hvm', arch='x86_64', machine='pc')
        else:
            # what virt-install makes for a UEFI guest: libvirt picks OVMF from the firmware descriptors
            os_ = _sub(root, 'os', firmware='efi')
            _sub(os_, 'type', 'hvm', arch='x86_64', machine='q35')
            nvram = os.path.join(self.run_dir, '%s.nvram.%s' % (full, 'qcow2' if firmware == 'efi-qcow2' else 'fd'))
            if firmware == 'efi-qcow2':
                # Debian's ovmf has raw builds only, so <loader format='qcow2'/> finds no firmware. libvirt
                # 11.3 accepts a raw loader with a qcow2 NVRAM when told the template's format, but cannot
                # convert the template itself ("conversion of the nvram template to another target format
                # is not supported"): _define_and_set_state makes the qcow2 NVRAM with qemu-img first.
                _sub(os_, 'loader', format='raw')
                _sub(os_, 'nvram', nvram, format='qcow2', templateFormat='raw')
            else:
                _sub(os_, 'nvram', nvram)
        if kernel:
            _sub(os_, 'kernel', kernel.kernel)
            _sub(os_, 'initrd', kernel.initrd)
            _sub(os_, 'cmdline', GUEST_CMDLINE)
        else:
            _sub(os_, 'boot', dev='hd')
        features = _sub(root, 'features')
        _sub(features, 'acpi')
        _sub(root, 'clock', offset='utc')
        _sub(root, 'on_poweroff', 'destroy')
        _sub(root, 'on_reboot', 'restart')
        _sub(root, 'on_crash', 'destroy')
        devices = _sub(root, 'devices')
        for dev, path, fmt in disks:
            disk = _sub(devices, 'disk', type='file', device='disk')
            _sub(disk, 'driver', name='qemu', type=fmt)
            _sub(disk, 'source', file=path)
            _sub(disk, 'target', dev=dev, bus='virtio')
        if agent_channel:
            channel = _sub(devices, 'channel', type='unix')
            _sub(channel, 'target', type='virtio', name=AGENT_CHANNEL)
        serial = _sub(devices, 'serial', type='file')
        _sub(serial, 'source', path=self.console_log(full), append='on')
        _sub(serial, 'target', port=0)
        if rng:
            rng_el = _sub(devices, 'rng', model='virtio')
            _sub(rng_el, 'backend', '/dev/urandom', model='random')
        _sub(devices, 'memballoon', model='none')
        return ET.tostring(root, encoding='unicode')

    def firmware(self, domain):
        """'bios', 'efi' (raw NVRAM) or 'efi-qcow2' for a domain, from its live XML."""
        root = ET.fromstring(self.lookup(domain).XMLDesc(0))
        nvram = root.find('./os/nvram')
        if root.find('./os/loader') is None and nvram is None:
            return 'bios'
        return 'efi-qcow2' if nvram is not None and nvram.get('format') == 'qcow2' else 'efi'

    def nvram_path(self, domain):
        """The NVRAM file of a UEFI domain (None for BIOS)."""
        nvram = ET.fromstring(self.lookup(domain).XMLDesc(0)).find('./os/nvram')
        return None if nvram is None else nvram.text

    def _make_qcow2_nvram(self, dom):
        """For a domain with a qcow2 NVRAM and a raw template: qemu-img convert the template into it."""
        nvram = ET.fromstring(dom.XMLDesc(libvirt_flags_inactive())).find('./os/nvram')
        if nvram is None or nvram.get('format') != 'qcow2' or nvram.get('templateFormat') != 'raw':
            return
        if os.path.exists(nvram.text):
            return
        _run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', self.stack.host_path(nvram.get('template')),
              nvram.text])

    def _define_and_set_state(self, full, xml, state):
        if state not in DOMAIN_STATES:
            raise LabError('state must be one of %s, not %r' % (DOMAIN_STATES, state))
        try:
            dom = self.conn.defineXML(xml)
            self._make_qcow2_nvram(dom)
            if state in ('running', 'paused'):
                dom.create()
            if state == 'paused':
                dom.suspend()
        except Exception:
            self.remove(full)
            raise
        return full

    def blank_domain(self, name, state='running', disk_format='qcow2', memory_mib=64, disks=1,
                     agent_channel=True, disk_size='64M', firmware='bios'):
        """Define a tiny OS-less domain with blank disks in ``state``; return its full name.

        Disks are ``RUN_DIR/<full>.vda.<format>``, ``.vdb.``, ...  SeaBIOS finds
        nothing to boot and idles, which is all snapshot tests of the VM's
        state need.
        """
        if disk_format not in DISK_FORMATS:
            raise LabError('disk_format must be one of %s' % (DISK_FORMATS,))
        full = self.full_name(name)
        disk_specs = []
        try:
            for i in range(disks):
                dev = 'vd' + 'abcdefghijklmnopqrstuvwxyz'[i]
                path = os.path.join(self.run_dir, '%s.%s.%s' % (full, dev, disk_format))
                _run(['qemu-img', 'create', '-q', '-f', disk_format, path, disk_size])
                disk_specs.append((dev, path, disk_format))
        except Exception:
            self.remove(full)
            raise
        xml = self._domain_xml(full, memory_mib, disk_specs, agent_channel, firmware=firmware)
        return self._define_and_set_state(full, xml, state)

    def guest_domain(self, name, state='running', memory_mib=384, wait_agent=False, agent_timeout=180,
                     firmware=None):
        """Define a Debian guest (linked clone of the cached image) in ``state``; return its full name.

        Its disk ``vda`` is ``RUN_DIR/<full>.vda.qcow2``, a qcow2 overlay whose
        backing file is the shared ``base.qcow2``.  Builds the image first
        if the cache lacks it.  With wait_agent, also waits for the guest
        agent (state 'running' only).
        """
        img = build_image()
        firmware = firmware or self.guest_firmware
        full = self.full_name(name)
        overlay = os.path.join(self.run_dir, full + '.vda.qcow2')
        try:
            _run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', img.base, '-F', 'qcow2', overlay])
        except Exception:
            self.remove(full)
            raise
        xml = self._domain_xml(full, memory_mib, [('vda', overlay, 'qcow2')], True, kernel=img, rng=True,
                               firmware=firmware)
        self._define_and_set_state(full, xml, state)
        if wait_agent and state == 'running':
            self.wait_agent(full, timeout=agent_timeout)
        return full

    # -- guest agent ------------------------------------------------------

    def agent_command(self, domain, command, timeout=10):
        """Send one guest-agent command (a dict) with virsh; return its 'return' value."""
        cp = self.virsh('qemu-agent-command', '--timeout', max(1, int(timeout)),
                        self.full_name(domain), json.dumps(command), timeout=timeout + 30)
        if cp.returncode != 0:
            raise AgentError('%s on %s: %s' % (command.get('execute'), self.full_name(domain),
                                               cp.stderr.strip() or cp.stdout.strip()))
        return json.loads(cp.stdout).get('return')

    def wait_agent(self, domain, timeout=180):
        """Poll guest-ping until the agent answers; return the seconds waited."""
        start = time.monotonic()
        last = None
        while True:
            try:
                self.agent_command(domain, {'execute': 'guest-ping'}, timeout=3)
                return time.monotonic() - start
            except AgentError as exc:
                last = exc
            if time.monotonic() - start > timeout:
                raise AgentError('guest agent of %s silent after %d s (%s); console tail:\n%s' % (
                    self.full_name(domain), timeout, last, self.console_tail(domain)))
            time.sleep(1)

    def guest_exec(self, domain, argv, timeout=60, input_data=None):
        """Run argv in the guest (no shell); return (exitcode, stdout, stderr) as text.

        A program that cannot be started (e.g. it was deleted) gives exit
        code 127 with the agent's message as stderr, like a shell would.
        A program killed by a signal gives -signal.  input_data (str or
        bytes) is sent to its stdin.
        """
        args = {'path': argv[0], 'arg': [str(a) for a in argv[1:]], 'capture-output': True}
        if input_data is not None:
            if isinstance(input_data, str):
                input_data = input_data.encode()
            args['input-data'] = base64.b64encode(input_data).decode()
        try:
            pid = self.agent_command(domain, {'execute': 'guest-exec', 'arguments': args})['pid']
        except AgentError as exc:
            if 'Failed to execute child process' in str(exc):
                return 127, '', str(exc)
            raise
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            status = self.agent_command(domain, {'execute': 'guest-exec-status', 'arguments': {'pid': pid}})
            if status.get('exited'):
                break
            if time.monotonic() > deadline:
                raise AgentError('%s still running in %s after %d s (guest pid %d)' % (
                    argv, self.full_name(domain), timeout, pid))
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        code = status.get('exitcode')
        if code is None:
            code = -int(status.get('signal', 0))

        def text(key):
            return base64.b64decode(status.get(key, '')).decode('utf-8', errors='replace')
        return code, text('out-data'), text('err-data')

    # -- removing ---------------------------------------------------------

    def remove(self, domain):
        """Destroy and undefine one domain and delete its RUN_DIR files (<full>.*)."""
        libvirt = _libvirt()
        full = self.full_name(domain)
        files = set()
        try:
            dom = self.conn.lookupByName(full)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            files |= {f for f in _domain_disk_files(dom)
                      if os.path.dirname(os.path.realpath(f)) == os.path.realpath(self.run_dir)}
            _remove_domain(dom)
        files |= {os.path.join(self.run_dir, f) for f in os.listdir(self.run_dir) if f.startswith(full + '.')}
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def cleanup(self):
        """Remove every domain and RUN_DIR file with this lab's prefix."""
        return cleanup(self.prefix, self.uri)


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _cmd_status(_args):
    print('recipe hash  %s' % recipe_hash())
    img = image_paths()
    print('guest image  %s %s' % (img.dir, 'built' if img.exists() else 'NOT built'))
    if img.exists():
        with open(img.info, encoding='utf-8') as fh:
            info = json.load(fh)
        print('             built %s in %s s, base.qcow2 %d MiB' % (
            info.get('built_at'), info.get('seconds'), os.path.getsize(img.base) >> 20))
    for name, st in daemon_status().items():
        print('%-12s %s' % (name, ('pid %d%s' % (st['pid'], ' (started by the lab)' if st['started_by_lab'] else ''))
                            if st['pid'] else 'not running'))
    up = libvirt_answers()
    print('%-12s %s' % (DEFAULT_URI, 'answers' if up else 'does NOT answer'))
    if up:
        doms = lab_domains()
        print('lab domains  %d' % len(doms))
        for name, state in doms:
            print('  %-40s %s' % (name, state))
    for name in STACKS:
        st = Stack(name)
        if st.root is None:
            continue
        if not st.built():
            print('stack %-7s %s NOT built' % (name, st.dir))
            continue
        with open(st.info, encoding='utf-8') as fh:
            info = json.load(fh)
        print('stack %-7s %s built %s in %s s, %s MiB' % (
            name, st.dir, info.get('built_at'), info.get('seconds'), info.get('mib')))
        for daemon, pidfile in STACK_DAEMONS:
            pid = _read_pidfile(st.host_path(pidfile))
            print('  %-10s %s' % (daemon, 'pid %d' % pid if _pid_alive(pid, daemon) else 'not running'))
        print('  mounts     %d below %s' % (len(_mounts_below(st.root)), st.root))
        if libvirt_answers(st.uri):
            print('  %s answers: libvirt %s, %d lab domain(s)' % (
                st.uri, '.'.join(map(str, libvirt_version(st.uri))), len(lab_domains(uri=st.uri))))
    files = sorted(os.listdir(RUN_DIR)) if os.path.isdir(RUN_DIR) else []
    print('run dir      %s: %d file(s)' % (RUN_DIR, len(files)))
    for f in files:
        print('  ' + f)


def _qemu_cpu_seconds(full_name, st=None):
    """CPU seconds the domain's QEMU process has used (a load-independent boot cost)."""
    pid = _read_pidfile((st or Stack(DEFAULT_STACK)).host_path('/run/libvirt/qemu/%s.pid' % full_name))
    with open('/proc/%d/stat' % pid, encoding='utf-8') as fh:
        fields = fh.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def smoke_stack(name='trixie', keep=False):
    """Self check of a chroot stack: blank domains and a guest per firmware booted to its agent; timings."""
    times = {}
    st = Stack(name)
    lab = Lab(stack=st)
    try:
        LOG.info('stack %s: %s, libvirt %s', name, lab.uri, '.'.join(map(str, libvirt_version(lab.uri))))
        for firmware in ('bios', 'efi'):
            t0 = time.monotonic()
            dom = lab.blank_domain('blank-' + firmware, firmware=firmware)
            times['blank running domain, %s' % firmware] = time.monotonic() - t0
            if lab.state(dom) != 'running' or lab.firmware(dom) != firmware:
                raise LabError('%s: %s, firmware %s' % (dom, lab.state(dom), lab.firmware(dom)))
        for firmware in FIRMWARES:
            t0 = time.monotonic()
            guest = lab.guest_domain('guest-' + firmware, firmware=firmware)
            lab.wait_agent(guest)
            times['guest boot to agent, %s' % firmware] = time.monotonic() - t0
            times['guest boot to agent, %s, QEMU CPU time' % firmware] = _qemu_cpu_seconds(guest, st)
            rc, out, _err = lab.guest_exec(guest, ['cat', '/etc/os-release'])
            if rc != 0 or 'bookworm' not in out:
                raise LabError('cat /etc/os-release: rc=%s out=%r' % (rc, out))
            if lab.firmware(guest) != firmware:
                raise LabError('%s has firmware %s, not %s' % (guest, lab.firmware(guest), firmware))
            if firmware != 'bios':
                # booted through OVMF: the guest sees EFI runtime services
                rc, _out, _err = lab.guest_exec(guest, ['test', '-d', '/sys/firmware/efi'])
                if rc != 0:
                    raise LabError('%s: no /sys/firmware/efi in the guest' % guest)
                fmt = json.loads(_run(['qemu-img', 'info', '-U', '--output=json',
                                       lab.nvram_path(guest)]).stdout)['format']
                if fmt != {'efi': 'raw', 'efi-qcow2': 'qcow2'}[firmware]:
                    raise LabError('%s: NVRAM %s is %s' % (guest, lab.nvram_path(guest), fmt))
            LOG.info('guest %s (%s) answers', guest, firmware)
            if not keep:
                lab.remove(guest)
    finally:
        if not keep:
            lab.cleanup()
        lab.close()
    for what, secs in times.items():
        LOG.info('timing: %-50s %6.2f s', what, secs)
    return times


def smoke(keep=False):
    """End-to-end self check of the lab; logs timings and returns them as a dict."""
    times = {}
    lab = Lab()
    try:
        t0 = time.monotonic()
        blank = lab.blank_domain('blank')
        times['blank running domain'] = time.monotonic() - t0
        raw = lab.blank_domain('raw', disk_format='raw', disks=2)
        paused = lab.blank_domain('paused', state='paused')
        off = lab.blank_domain('off', state='shutoff')
        for dom, want in ((blank, 'running'), (raw, 'running'), (paused, 'paused'), (off, 'shutoff')):
            if lab.state(dom) != want:
                raise LabError('%s is %s, expected %s' % (dom, lab.state(dom), want))
        LOG.info('blank domains ok: %s', ', '.join('%s=%s' % (d, lab.state(d)) for d in (blank, raw, paused, off)))

        t0 = time.monotonic()
        guest = lab.guest_domain('guest')
        lab.wait_agent(guest)
        times['guest boot to agent'] = time.monotonic() - t0
        times['guest boot to agent, QEMU CPU time'] = _qemu_cpu_seconds(guest, lab.stack)
        rc, out, _err = lab.guest_exec(guest, ['cat', '/etc/os-release'])
        if rc != 0 or 'bookworm' not in out:
            raise LabError('cat /etc/os-release: rc=%s out=%r' % (rc, out))
        rc, out, _err = lab.guest_exec(guest, ['python3', '-c', 'print(6*7)'])
        if (rc, out.strip()) != (0, '42'):
            raise LabError('python3 in guest: rc=%s out=%r' % (rc, out))

        t0 = time.monotonic()
        cp = lab.virsh('snapshot-create-as', guest, 'before-damage')
        times['snapshot-create-as (running, internal)'] = time.monotonic() - t0
        if cp.returncode:
            raise LabError(cp.stderr)
        if lab.qemu_img_snapshots(lab.disk_paths(guest)[0]) != ['before-damage']:
            raise LabError('qemu-img does not list the snapshot')
        lab.guest_exec(guest, ['/bin/sh', '-c', 'rm -rf /usr/bin/*'])
        rc, _out, _err = lab.guest_exec(guest, ['/usr/bin/ls', '/'])
        if rc == 0:
            raise LabError('/usr/bin/ls still works after rm -rf /usr/bin/*')
        LOG.info('guest damaged: /usr/bin/ls gives rc %d', rc)
        t0 = time.monotonic()
        cp = lab.virsh('snapshot-revert', guest, 'before-damage')
        times['snapshot-revert'] = time.monotonic() - t0
        if cp.returncode:
            raise LabError(cp.stderr)
        lab.wait_agent(guest, timeout=60)
        rc, out, _err = lab.guest_exec(guest, ['/usr/bin/ls', '/usr/bin'])
        if rc != 0 or 'ls' not in out.split():
            raise LabError('/usr/bin/ls after revert: rc=%s' % rc)
        LOG.info('revert brought /usr/bin back (%d entries)', len(out.split()))
    finally:
        if not keep:
            lab.cleanup()
            left = lab_domains(lab.prefix) + [f for f in os.listdir(RUN_DIR) if f.startswith(lab.prefix)]
            if left:
                raise LabError('cleanup left %s' % left)
        lab.close()
    LOG.info('load average %.1f on %d CPUs', os.getloadavg()[0], os.cpu_count())
    for what, secs in times.items():
        LOG.info('timing: %-40s %6.2f s', what, secs)
    return times


def main(argv=None):
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog='lab.py', description=__doc__.split('\n', 1)[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('deps', help='apt-get install what is missing (and libvirt-python)')
    sub.add_parser('daemons', help='start virtlogd and libvirtd unless running')
    sub.add_parser('daemons-stop', help='remove lab domains, stop the daemons the lab started')
    p = sub.add_parser('image', help='build the Debian guest image unless cached')
    p.add_argument('--rebuild', action='store_true', help='build even if cached')
    p = sub.add_parser('cleanup', help='remove lab domains and their files')
    p.add_argument('--prefix', default=GLOBAL_PREFIX, help='name prefix (default %(default)s: all runs)')
    p = sub.add_parser('stack', help='build (unless cached) and start the chroot stack (Debian 13: libvirt 11)')
    p.add_argument('--name', default='trixie', choices=[n for n in STACKS if n != 'bookworm'])
    p.add_argument('--rebuild', action='store_true', help='build even if cached (the stack must be stopped)')
    p = sub.add_parser('stack-stop', help='remove the stack\'s lab domains, stop its daemons, undo its mounts')
    p.add_argument('--name', default='trixie', choices=[n for n in STACKS if n != 'bookworm'])
    sub.add_parser('up', help='deps + daemons + image + the trixie stack')
    sub.add_parser('status', help='show daemons, image, lab domains, run dir')
    p = sub.add_parser('smoke', help='end-to-end self check with timings')
    p.add_argument('--keep', action='store_true', help='keep the domains for inspection')
    p.add_argument('--stack', default=DEFAULT_STACK, choices=STACKS,
                   help='the stack to check (trixie: blank domains and a guest per firmware)')
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format='[lab %(relativeCreated)7.0f ms] %(message)s',
                        stream=sys.stderr)
    if os.geteuid() != 0:
        parser.error('the lab needs root')
    # Turn SIGTERM into KeyboardInterrupt so an interrupted build still
    # removes its temporary directory (and kills its debootstrap).
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.cmd in ('deps', 'up'):
            install_deps()
        if args.cmd in ('daemons', 'up'):
            start_daemons()
        if args.cmd in ('image', 'up'):
            img = build_image(rebuild=getattr(args, 'rebuild', False))
            print(img.dir)
        if args.cmd == 'stack':
            if args.rebuild:
                build_stack(args.name, rebuild=True)
            print(start_stack(args.name).uri)
        if args.cmd == 'up':
            print(start_stack('trixie').uri)
        if args.cmd == 'stack-stop':
            stop_stack(args.name)
        if args.cmd == 'daemons-stop':
            stop_daemons()
            for name in STACKS:
                stop_stack(name)
        if args.cmd == 'cleanup':
            # the domains of every stack that runs (their files share RUN_DIR)
            doms, files = [], []
            for name in STACKS:
                st = Stack(name)
                if st.root is None or (_stack_running(st) and libvirt_answers(st.uri)):
                    more_doms, more_files = cleanup(args.prefix, st.uri)
                    doms += more_doms
                    files += more_files
            print('removed %d domain(s), %d file(s)' % (len(doms), len(files)))
        if args.cmd == 'status':
            _cmd_status(args)
        if args.cmd == 'smoke':
            if args.stack == DEFAULT_STACK:
                smoke(keep=args.keep)
            else:
                smoke_stack(args.stack, keep=args.keep)
    except LabError as exc:
        print('lab.py %s: %s' % (args.cmd, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('lab.py %s: interrupted' % args.cmd, file=sys.stderr)
        return 130
    return 0


def _interrupt(signum, _frame):
    raise KeyboardInterrupt('signal %d' % signum)


if __name__ == '__main__':
    sys.exit(main())
