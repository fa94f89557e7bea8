# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``Lab`` class: disposable domains (blank ones and Debian guests) on one stack's libvirtd, their guest agent,
and their removal.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import time
import xml.etree.ElementTree as ET

from .common import (AGENT_CHANNEL, DISK_FORMATS, DOMAIN_STATES, FIRMWARES, GLOBAL_PREFIX, RUN_DIR, STATE_DIR, AgentError,
                     LabError, _libvirt, _makedirs, _run)
from .image import GUEST_CMDLINE, build_image
from .removal import _domain_disk_files, _remove_domain, _state_name, _check_prefix, cleanup
from .stack import DEFAULT_STACK, STACKS, Stack, stack as _stack_from_env


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
