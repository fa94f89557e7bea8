# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ``Lab`` class: disposable domains (blank ones and Debian guests) on one stack's libvirtd, their guest agent,
and their removal.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import xml.etree.ElementTree as ET

from .common import (AGENT_CHANNEL, DISK_FORMATS, DOMAIN_STATES, FIRMWARES, GLOBAL_PREFIX, LOG, RUN_DIR, STATE_DIR,
                     AgentError, LabError, _libvirt, _locked, _makedirs, _run)
from .image import GUEST_CMDLINE, build_image
from .removal import _domain_disk_files, _remove_domain, _state_name, _check_prefix, cleanup
from . import savefile
from .stack import DEFAULT_STACK, STACKS, Stack, stack as _stack_from_env


def libvirt_flags_inactive():
    return _libvirt().VIR_DOMAIN_XML_INACTIVE


def _sub(parent, tag, text=None, **attrs):
    elem = ET.SubElement(parent, tag, {k.rstrip('_'): str(v) for k, v in attrs.items()})
    if text is not None:
        elem.text = str(text)
    return elem


#: keys of templates that failed in this process (their guests boot cold from then on)
_BROKEN_TEMPLATES = set()


class GuestTemplate:
    """Paths of one saved template guest in the image's cache (see Lab.guest_template)."""

    def __init__(self, directory, key):
        self.dir = directory
        self.key = key
        self.disk = os.path.join(directory, 'vda.qcow2')
        self.state = os.path.join(directory, 'state.save')
        self.console = os.path.join(directory, 'console.log')
        #: written last: the template is complete
        self.info = os.path.join(directory, 'template.json')

    def nvram_path(self, qcow2):
        return os.path.join(self.dir, 'nvram.qcow2' if qcow2 else 'nvram.fd')

    @property
    def nvram(self):
        with open(self.info, encoding='utf-8') as fh:
            return json.load(fh)['nvram']

    def valid(self):
        try:
            with open(self.info, encoding='utf-8') as fh:
                info = json.load(fh)
        except (OSError, ValueError):
            return False
        return (info.get('key') == self.key and os.path.isfile(self.disk) and os.path.isfile(self.state)
                and (info.get('nvram') is None or os.path.isfile(info['nvram'])))

    def __repr__(self):
        return 'GuestTemplate(%r)' % self.dir


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
                     firmware=None, boot=None):
        """Define a Debian guest (linked clone of the cached image) in ``state``; return its full name.

        Its disk ``vda`` is ``RUN_DIR/<full>.vda.qcow2``, a qcow2 overlay whose
        backing file is the shared ``base.qcow2``.  Builds the image first
        if the cache lacks it.  With wait_agent, also waits for the guest
        agent (state 'running' only).

        boot (default $KSLAB_GUEST_BOOT, else 'restore'): 'cold' boots the
        guest (firmware, kernel, systemd: 25-140 s under TCG); 'restore'
        starts a running guest from the saved state of a booted template
        guest (a few seconds; see _restore_guest) and falls back to a cold
        boot when it cannot.  Use 'cold' where a test is about the boot
        itself.  Other states than 'running' always define the guest cold.
        """
        img = build_image()
        firmware = firmware or self.guest_firmware
        boot = boot or os.environ.get('KSLAB_GUEST_BOOT') or 'restore'
        if boot not in ('restore', 'cold'):
            raise LabError("boot must be 'restore' or 'cold', not %r" % boot)
        full = self.full_name(name)
        if boot == 'restore' and state == 'running':
            template = self.guest_template(firmware, memory_mib)
            if template is not None and self._restore_guest(full, template, img, firmware, memory_mib):
                return full
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

    # -- guests from a saved template ---------------------------------------
    #
    # A cold boot of a Debian guest under TCG costs 25-40 s of CPU (minutes of wall time on the loaded lab).
    # Instead, once per (image, stack, firmware, memory, domain XML shape, libvirt and QEMU versions), a
    # template guest is booted to a settled system (agent answers, `systemctl is-system-running --wait`)
    # and saved with virDomainSave; its directory in the image's cache keeps the saved state, its disk
    # overlay (backing file base.qcow2) and NVRAM as they were at the save.  Each guest then gets copies of
    # that overlay and NVRAM (the saved memory refers to exactly that disk content: a fresh overlay would
    # corrupt the guest's file system) and is restored from a copy of the save file whose header XML is its
    # own (savefile.py: libvirt's restore refuses another UUID), after its persistent definition, the
    # same as a cold-booted guest's.  The guest's clock is set through its agent and its kernel RNG gets
    # fresh bytes, so guests from one template differ there; their disks, names, UUIDs, NVRAM and console
    # logs are their own.  Anything wrong with the template: a cold boot, and the template is rebuilt.

    #: bump when the template's recipe (what the template directory holds, how it is made) changes
    TEMPLATE_VERSION = 1

    def _template_key(self, img, firmware, memory_mib):
        """The template's cache key: everything that makes a saved guest valid for this lab's guests."""
        conn = self.conn
        recipe = {
            'version': self.TEMPLATE_VERSION,
            'image': os.path.basename(img.dir),
            'stack': self.stack.name,
            'uri': self.uri,
            'firmware': firmware,
            'memory_mib': memory_mib,
            # the shape of the guests' XML (names and paths are placeholders)
            'xml': self._domain_xml(GLOBAL_PREFIX + 'template', memory_mib, [('vda', '/vda.qcow2', 'qcow2')], True,
                                    kernel=img, rng=True, firmware=firmware),
            'libvirt': conn.getLibVersion(),
            'hypervisor': conn.getVersion(),
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]

    def guest_template(self, firmware, memory_mib, rebuild=False):
        """The GuestTemplate for these guests, built now unless cached; None (logged) if it cannot be built."""
        img = build_image()
        try:
            key = self._template_key(img, firmware, memory_mib)
        except Exception as exc:  # noqa: BLE001  (no template: the caller boots cold)
            LOG.warning('guest template: no key (%s); cold boot', exc)
            return None
        if key in _BROKEN_TEMPLATES:
            return None
        parent = os.path.join(img.dir, 'templates')
        template = GuestTemplate(os.path.join(parent, '%s-%s-%d-%s' % (self.stack.name, firmware, memory_mib, key)),
                                 key)
        _makedirs(parent)
        with _locked(os.path.join(parent, '.lock-%s' % key)):
            if template.valid() and not rebuild:
                return template
            # older templates of the same guests (another key) are of no use any more
            for entry in os.listdir(parent):
                if (entry.startswith('%s-%s-%d-' % (self.stack.name, firmware, memory_mib))
                        and entry != os.path.basename(template.dir)):
                    shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
            try:
                self._build_template(template, img, firmware, memory_mib)
            except Exception as exc:  # noqa: BLE001  (no template: the caller boots cold)
                LOG.warning('guest template %s: build failed (%s); cold boots', template.dir, exc)
                _BROKEN_TEMPLATES.add(key)
                shutil.rmtree(template.dir, ignore_errors=True)
                return None
        return template

    def _build_template(self, template, img, firmware, memory_mib):
        """Cold-boot the template guest (transient), let its boot settle, save it, record it."""
        shutil.rmtree(template.dir, ignore_errors=True)
        _makedirs(template.dir)
        start = time.monotonic()
        name = '%stemplate-%s' % (GLOBAL_PREFIX, template.key[:12])
        _run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', img.base, '-F', 'qcow2', template.disk])
        root = ET.fromstring(self._domain_xml(name, memory_mib, [('vda', template.disk, 'qcow2')], True,
                                              kernel=img, rng=True, firmware=firmware))
        for elem in root.findall('./devices/serial/source'):
            elem.set('path', template.console)
        nvram = root.find('./os/nvram')
        if nvram is not None:
            nvram.text = template.nvram_path(nvram.get('format') == 'qcow2')
            if nvram.get('format') == 'qcow2':    # as _make_qcow2_nvram, before the domain starts
                _run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', self.stack.host_path(nvram.get('template')),
                      nvram.text])
        dom = self.conn.createXML(ET.tostring(root, encoding='unicode'), 0)   # transient: gone once saved
        try:
            self.wait_agent(name, timeout=900)
            # a settled system: no boot job left to race the tests of the guests made from it
            self.guest_exec(name, ['/usr/bin/systemctl', 'is-system-running', '--wait'], timeout=600)
            self.guest_exec(name, ['/usr/bin/sync'], timeout=120)
            dom.save(template.state)
        except Exception:
            with contextlib.suppress(Exception):
                dom.destroy()
            raise
        header = savefile.read_header(template.state)   # complete, raw, with an XML the guests can take
        savefile.retarget_xml(header.xml, name, dom.UUIDString(), template.disk, template.console,
                              None if nvram is None else nvram.text)
        if header.compressed:
            raise LabError('libvirt saved the template compressed (save_image_format in qemu.conf)')
        with open(template.info + '.tmp', 'w', encoding='utf-8') as fh:
            json.dump({'key': template.key, 'stack': self.stack.name, 'firmware': firmware,
                       'memory_mib': memory_mib, 'nvram': None if nvram is None else nvram.text,
                       'built_at': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                       'seconds': round(time.monotonic() - start, 1)}, fh, indent=1)
        os.replace(template.info + '.tmp', template.info)
        LOG.info('guest template %s built in %.0f s', template.dir, time.monotonic() - start)

    def _restore_guest(self, full, template, img, firmware, memory_mib):
        """Make guest full from template (see above); True if it runs and its agent answers, else False (removed)."""
        overlay = os.path.join(self.run_dir, full + '.vda.qcow2')
        save = os.path.join(self.run_dir, full + '.save')
        start = time.monotonic()
        try:
            shutil.copyfile(template.disk, overlay)
            shutil.copyfile(template.console, self.console_log(full))   # the log shows the boot, as a cold one's
            xml = self._domain_xml(full, memory_mib, [('vda', overlay, 'qcow2')], True, kernel=img, rng=True,
                                   firmware=firmware)
            nvram_elem = ET.fromstring(xml).find('./os/nvram')
            nvram = None if nvram_elem is None else nvram_elem.text
            if nvram is not None:
                shutil.copyfile(template.nvram, nvram)
            dom = self.conn.defineXML(xml)
            header = savefile.read_header(template.state)
            savefile.copy_with_xml(template.state, save, savefile.retarget_xml(
                header.xml, full, dom.UUIDString(), overlay, self.console_log(full), nvram))
            self.conn.restore(save)
            os.unlink(save)
            self.wait_agent(full, timeout=120)
            # the saved clock is behind by the template's age; the kernel RNG is the template's
            self.agent_command(full, {'execute': 'guest-set-time', 'arguments': {'time': time.time_ns()}})
            handle = self.agent_command(full, {'execute': 'guest-file-open',
                                               'arguments': {'path': '/dev/urandom', 'mode': 'w'}})
            self.agent_command(full, {'execute': 'guest-file-write', 'arguments': {
                'handle': handle, 'buf-b64': base64.b64encode(os.urandom(64)).decode()}})
            self.agent_command(full, {'execute': 'guest-file-close', 'arguments': {'handle': handle}})
        except Exception as exc:  # noqa: BLE001  (a cold boot instead; the template is rebuilt next time)
            LOG.warning('%s: restore from %s failed (%s); cold boot instead', full, template.dir, exc)
            self.remove(full)
            _BROKEN_TEMPLATES.add(template.key)
            with contextlib.suppress(OSError):
                os.unlink(template.info)
            return False
        LOG.info('%s restored from %s in %.1f s', full, template.dir, time.monotonic() - start)
        return True

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
