# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Debian guest image: its recipe (debootstrap, customize.sh, mkfs), the recipe hash that keys the cache,
and the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import tempfile
import time

from .common import (CACHE_DIR, LOG, RUN_DIR, LabError, _locked, _makedirs, _mounts_below, _pid_alive, _read_pidfile, _rmtree, _run,
                     _recipe_script)


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
#: root file system for a quick, headless boot to qemu-guest-agent (kslab/customize.sh).
CUSTOMIZE_SH = _recipe_script('customize.sh')
GUEST_CMDLINE = ('root=/dev/vda rw console=ttyS0 quiet systemd.show_status=0 '
                 'fsck.mode=skip systemd.unit=multi-user.target mitigations=off')


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
