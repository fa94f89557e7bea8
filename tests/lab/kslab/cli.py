# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The command line of ``python3 tests/lab/lab.py``: status, the smoke checks, and ``main``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import time

from .common import (DEFAULT_URI, FIRMWARES, GLOBAL_PREFIX, LOG, RUN_DIR, LabError, _mounts_below, _pid_alive,
                     _read_pidfile, _run, libvirt_answers, libvirt_version)
from .daemons import daemon_status, install_deps, start_daemons, stop_daemons
from .domains import Lab
from .image import build_image, image_paths, recipe_hash
from .removal import cleanup, lab_domains
from .stack import DEFAULT_STACK, STACK_DAEMONS, STACKS, Stack, _stack_running, build_stack, start_stack, stop_stack


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
        # the saved, booted guests that Lab.guest_domain restores its guests from (kept by cleanup)
        templates = os.path.join(img.dir, 'templates')
        for entry in sorted(os.listdir(templates)) if os.path.isdir(templates) else []:
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(templates, entry, 'template.json'), encoding='utf-8') as fh:
                    info = json.load(fh)
                print('  template   %s built %s in %s s' % (entry, info.get('built_at'), info.get('seconds')))
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
            guest = lab.guest_domain('guest-' + firmware, firmware=firmware, boot='cold')   # times the boot
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
        guest = lab.guest_domain('guest', boot='cold')   # times the boot
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
    parser = argparse.ArgumentParser(prog='lab.py', description=sys.modules[__package__].__doc__.split('\n', 1)[0])
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
