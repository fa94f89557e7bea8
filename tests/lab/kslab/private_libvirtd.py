# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A private libvirtd to kill, restart and freeze, and the OS-less domains the fault tests run on it.

``PrivateLibvirtd`` is an unprivileged session daemon run as ``nobody`` with its own runtime, config and cache
directories, started and stopped by pid. The system libvirtd, shared with other test runs, is never signalled.

``domain_xml`` makes a domain with no OS and one qcow2 disk; a "heavy" one loads a file of random data into guest
RAM at start (QEMU's generic loader device), so that a snapshot with memory has incompressible memory to write and
takes a noticeable time.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import typing as t
import xml.etree.ElementTree as ET

from .common import _libvirt, libvirt_answers
from .probes import Independent, run
from .processes import owner, pid_alive, wait_until

QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
RAM_MIB = 320          # guest memory of a heavy domain
BLOB_MIB = 256         # random data loaded into it


def domain_xml(name: str, disk: str, memory_mib: int = 64, ram_blob: str | None = None) -> str:
    """A domain with no OS and one qcow2 disk; with ram_blob, that file is loaded into guest RAM at start."""
    ET.register_namespace('qemu', QEMU_NS)
    root = ET.Element('domain', type='qemu')
    ET.SubElement(root, 'name').text = name
    ET.SubElement(root, 'memory', unit='MiB').text = str(memory_mib)
    ET.SubElement(root, 'vcpu').text = '1'
    os_ = ET.SubElement(root, 'os')
    ET.SubElement(os_, 'type', arch='x86_64', machine='pc').text = 'hvm'
    ET.SubElement(os_, 'boot', dev='hd')
    devices = ET.SubElement(root, 'devices')
    disk_el = ET.SubElement(devices, 'disk', type='file', device='disk')
    ET.SubElement(disk_el, 'driver', name='qemu', type='qcow2')
    ET.SubElement(disk_el, 'source', file=disk)
    ET.SubElement(disk_el, 'target', dev='vda', bus='virtio')
    ET.SubElement(devices, 'memballoon', model='none')
    if ram_blob:
        cmdline = ET.SubElement(root, f'{{{QEMU_NS}}}commandline')
        for value in ('-device', f'loader,file={ram_blob},addr=0x1000000,force-raw=on'):
            ET.SubElement(cmdline, f'{{{QEMU_NS}}}arg', value=value)
    return ET.tostring(root, encoding='unicode')


def write_ram_blob(path: str, mib: int = BLOB_MIB) -> str:
    """mib MiB of random data at path, readable by every QEMU user."""
    with open(path, 'wb') as handle:
        for _mib in range(mib):
            handle.write(os.urandom(1 << 20))
    os.chmod(path, 0o644)
    return path


class PrivateLibvirtd:
    """An unprivileged libvirtd in session mode, run as ``nobody`` with its own directories.

    Its URI is ``qemu+unix:///session?socket=...``; root may use that socket. Its QEMU
    processes run as ``nobody`` too, so their files live in its own directory, owned by nobody.
    """

    def __init__(self) -> None:
        self.user = pwd.getpwnam('nobody')
        try:
            self.gid = grp.getgrnam('nogroup').gr_gid
        except KeyError:
            self.gid = self.user.pw_gid
        self.base = pathlib.Path(tempfile.mkdtemp(prefix='kslab-faults-libvirtd-'))
        self.images = self.base / 'images'
        for sub in ('home', 'run', 'config', 'cache', 'images'):
            (self.base / sub).mkdir()
        for path in [self.base, *self.base.iterdir()]:
            os.chown(path, self.user.pw_uid, self.gid)
        os.chmod(self.base, 0o711)
        self.pidfile = self.base / 'run' / 'libvirtd.pid'
        self.socket = self.base / 'run' / 'libvirt' / 'libvirt-sock'
        self.uri = f'qemu+unix:///session?socket={self.socket}'
        #: the probes of this libvirtd
        self.check = Independent(uri=self.uri)
        self.env = {
            'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': str(self.base / 'home'),
            'XDG_RUNTIME_DIR': str(self.base / 'run'), 'XDG_CONFIG_HOME': str(self.base / 'config'),
            'XDG_CACHE_HOME': str(self.base / 'cache'),
        }
        self._conn: t.Any = None

    @property
    def pid(self) -> int:
        try:
            return int(self.pidfile.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        subprocess.run(['libvirtd', '-d', '-p', str(self.pidfile)], env=self.env, user=self.user.pw_uid,
                       group=self.gid, extra_groups=[], cwd=str(self.base), check=True, timeout=60)
        wait_until(lambda: libvirt_answers(self.uri, timeout=5), 30, 'the private libvirtd', 0.2)

    def send(self, sig: int) -> int:
        pid = self.pid
        assert pid and pid_alive(pid), 'the private libvirtd does not run'
        with open(f'/proc/{pid}/comm', encoding='utf-8') as handle:
            assert handle.read().strip() == 'libvirtd'
        os.kill(pid, sig)
        return pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> None:
        """Stop the daemon by its pid and wait until it is gone."""
        pid = self.send(sig)
        wait_until(lambda: not pid_alive(pid), timeout, f'libvirtd {pid} to exit', 0.05)
        self.close()

    @property
    def conn(self) -> t.Any:
        if self._conn is None:
            self._conn = _libvirt().open(self.uri)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def make(self, name: str, blob: str) -> tuple[str, str]:
        """A running heavy domain whose disk belongs to nobody; returns (name, disk)."""
        full = f'kslab-faults-{name}'
        disk = str(self.images / f'{full}.vda.qcow2')
        run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'])
        os.chown(disk, self.user.pw_uid, self.gid)
        self.conn.defineXML(domain_xml(full, disk, RAM_MIB, blob)).create()
        return full, disk

    def qemu_pid(self, full: str) -> int:
        return int((self.base / 'run' / 'libvirt' / 'qemu' / 'run' / f'{full}.pid').read_text().strip())

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of every log libvirtd and QEMU wrote (for a failed test's output)."""
        text = []
        for log in sorted((self.base / 'cache' / 'libvirt').rglob('*.log')):
            with contextlib.suppress(OSError):
                text += [f'===== the last lines of {log}', *log.read_text(errors='replace').splitlines()[-lines:]]
        return '\n'.join(text)

    def cleanup(self) -> None:
        """Remove its domains, stop it and its virtlogd (by pid), and delete its directory."""
        libvirt = _libvirt()
        qemu_pids = []
        for pidfile in (self.base / 'run' / 'libvirt' / 'qemu' / 'run').glob('*.pid'):
            with contextlib.suppress(OSError, ValueError):
                qemu_pids.append(int(pidfile.read_text().strip()))
        if self.pid and pid_alive(self.pid):
            with contextlib.suppress(Exception):
                for dom in self.conn.listAllDomains(0):
                    if dom.isActive():
                        dom.destroy()
                    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            with contextlib.suppress(Exception):
                self.send(signal.SIGCONT)  # in case a test left it frozen
                self.stop()
        self.close()
        for pid in qemu_pids:  # QEMU processes the daemon could not destroy any more
            if pid_alive(pid) and owner(pid) == self.user.pw_uid:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        logd = self.base / 'run' / 'libvirt' / 'virtlogd.pid'
        with contextlib.suppress(OSError, ValueError):
            pid = int(logd.read_text().strip())
            if pid_alive(pid) and owner(pid) == self.user.pw_uid:
                os.kill(pid, signal.SIGTERM)
        shutil.rmtree(self.base, ignore_errors=True)
