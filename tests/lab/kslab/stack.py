# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hypervisor stacks: ``bookworm`` (this machine's libvirtd) and ``trixie`` (Debian 13's libvirt, QEMU and OVMF in a
cached chroot with daemons of its own): the chroot's build, mounts and daemons.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sys
import tempfile
import time

from .common import (CACHE_DIR, DEFAULT_URI, GLOBAL_PREFIX, LOG, RUN_DIR, STATE_DIR, LabError, _locked, _makedirs,
                     _mounts_below, _pid_alive, _read_pidfile, _rmtree, _run, _recipe_script,
                     libvirt_answers, libvirt_version)
from .daemons import make_kvm_usable, start_daemons
from .image import _stop_orphaned_build, debian_mirror
from .removal import cleanup


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
#: Run on the host as ``bash -c STACK_SETUP_SH setup ROOT`` once the packages are in (kslab/stack_setup.sh).
STACK_SETUP_SH = _recipe_script('stack_setup.sh')
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
