# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The harness of the fault tests (test_faults_*.py; this file holds no tests; conftest.py registers its fixtures).

Every module run of ``module`` is a real ``ansible`` process (ad-hoc, one task) started in its own process
group, so a test can kill it, or run several at once (``ok`` and ``failed`` wait for one). Domains are OS-less
(kslab.private_libvirtd.domain_xml): ``system`` makes them on the system libvirtd of the lab,
``private_libvirtd`` is a daemon of the tests' own to kill, restart and freeze. Outcomes are checked with the
lab's probes (kslab.probes), the process table and the file system (kslab.processes).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

import pytest

from kslab.private_libvirtd import RAM_MIB, PrivateLibvirtd, domain_xml, write_ram_blob
from kslab.probes import Independent, run
from kslab.processes import pid_alive, process_tree

ANSIBLE = str(pathlib.Path(sys.executable).with_name('ansible')) \
    if pathlib.Path(sys.executable).with_name('ansible').exists() else 'ansible'
SYSTEM_URI = 'qemu:///system'


# --------------------------------------------------------------------------
# Module runs
# --------------------------------------------------------------------------

class ModuleRun:
    """One ``ansible localhost -m kvm.snapshots.<module>`` run.

    Ansible's workers call setsid(), so the module does not run in the process group of the
    ``ansible`` command: killing "the run" means killing its whole process tree.
    """

    def __init__(self, env: dict[str, str], module: str, args: dict[str, t.Any], verbosity: int = 0) -> None:
        self.argv = [ANSIBLE, 'localhost', '-i', 'localhost,', '-c', 'local',
                     '-m', f'kvm.snapshots.{module}', '-a', json.dumps(args)]
        if verbosity:
            self.argv.append('-' + 'v' * verbosity)
        self.proc = subprocess.Popen(self.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.started = time.monotonic()
        self.ended: float | None = None
        self.stdout = self.stderr = ''
        self.result: dict[str, t.Any] = {}
        self.status = ''

    def wait(self, timeout: float = 300) -> ModuleRun:
        self.stdout, self.stderr = self.proc.communicate(timeout=timeout)
        self.ended = time.monotonic()
        match = re.search(r'^localhost \| ([A-Z]+)!? => ', self.stdout, re.M)
        if match:
            self.status = match.group(1)  # SUCCESS, CHANGED or FAILED
            self.result = json.JSONDecoder().raw_decode(self.stdout[match.end():])[0]
        return self

    @property
    def rc(self) -> int | None:
        return self.proc.returncode

    def tree(self) -> list[int]:
        """The pids of ansible, its workers and the module (children before parents)."""
        return process_tree(self.proc.pid)

    def module_pid(self) -> int | None:
        """The pid of the module itself (python running AnsiballZ_<module>.py), once it runs."""
        for pid in self.tree():
            with contextlib.suppress(OSError):
                with open(f'/proc/{pid}/cmdline', 'rb') as handle:
                    if b'AnsiballZ_' in handle.read() and pid_alive(pid):
                        return pid
        return None

    def module_running(self) -> bool:
        return self.module_pid() is not None

    def kill(self) -> list[int]:
        """SIGKILL the whole run (the module first, then its parents); the pids killed."""
        pids = self.tree()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.wait(timeout=30)
        return pids

    def __repr__(self) -> str:
        return (f'<ansible rc={self.rc}>\n$ {" ".join(self.argv)}\n--- stdout ---\n{self.stdout[-8000:]}'
                f'\n--- stderr ---\n{self.stderr[-3000:]}')


@pytest.fixture
def module(ansible_env):
    """module(name, args, verbosity=0) -> a started ModuleRun; every run still going at the end is killed."""
    runs: list[ModuleRun] = []

    def start(name: str, args: dict[str, t.Any], verbosity: int = 0) -> ModuleRun:
        started = ModuleRun(ansible_env, name, args, verbosity)
        runs.append(started)
        return started

    yield start
    for started in runs:
        if started.rc is None:
            started.kill()


def ok(started: ModuleRun, timeout: float = 300) -> t.Mapping[str, t.Any]:
    """Wait for a run that must succeed; its result."""
    started.wait(timeout)
    assert started.rc == 0 and started.status in ('SUCCESS', 'CHANGED'), repr(started)
    return started.result


def failed(started: ModuleRun, timeout: float = 300) -> str:
    """Wait for a run that must fail cleanly, having changed nothing; its message (never a traceback)."""
    started.wait(timeout)
    assert started.rc != 0 and started.status == 'FAILED' and not started.result.get('changed'), repr(started)
    msg = started.result['msg']
    assert 'Traceback' not in msg and 'Unexpected error' not in msg, msg
    return msg


# --------------------------------------------------------------------------
# Domains on the system libvirtd
# --------------------------------------------------------------------------

@pytest.fixture(scope='session')
def ram_blob(lab) -> t.Iterator[str]:
    """256 MiB of random data, readable by every QEMU user (the lab's cleanup also removes it)."""
    path = write_ram_blob(os.path.join(lab.run_dir, f'{lab.prefix}faults-ram.bin'))
    yield path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class SystemDomains:
    """Domains on the system libvirtd, named with the lab's prefix (the lab's cleanup is the safety net)."""

    def __init__(self, lab: t.Any) -> None:
        self.lab = lab
        self.uri = SYSTEM_URI
        #: the probes of the system libvirtd
        self.check = Independent(lab, uri=SYSTEM_URI)
        self.made: list[str] = []

    def make(self, name: str, state: str = 'running', heavy_blob: str | None = None,
             disk_dir: str | None = None, disk_size: str = '64M') -> tuple[str, str]:
        full = self.lab.full_name(f'faults-{name}')
        disk = os.path.join(disk_dir or self.lab.run_dir, f'{full}.vda.qcow2')
        self.made.append(full)
        run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, disk_size])
        xml = domain_xml(full, disk, RAM_MIB if heavy_blob else 64, heavy_blob)
        dom = self.lab.conn.defineXML(xml)
        if state != 'shutoff':
            dom.create()
        return full, disk

    def dom(self, full: str) -> t.Any:
        return self.lab.conn.lookupByName(full)

    def qemu_pid(self, full: str) -> int:
        return int(pathlib.Path(f'/run/libvirt/qemu/{full}.pid').read_text().strip())

    def remove_all(self) -> None:
        for full in self.made:
            self.lab.remove(full)


@pytest.fixture
def system(lab) -> t.Iterator[SystemDomains]:
    domains = SystemDomains(lab)
    yield domains
    domains.remove_all()


# --------------------------------------------------------------------------
# A private libvirtd to kill and restart
# --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def private_libvirtd(lab) -> t.Iterator[PrivateLibvirtd]:
    """The private daemon, started once for a test file. ``lab`` makes sure QEMU and virtlogd are installed."""
    del lab
    daemon = PrivateLibvirtd()
    try:
        daemon.start()
    except (subprocess.SubprocessError, AssertionError, OSError) as exc:
        daemon.cleanup()
        pytest.fail(f'cannot start a private libvirtd (session mode as nobody): {exc}')
    yield daemon
    daemon.cleanup()


@pytest.fixture
def private_blob(private_libvirtd, ram_blob) -> t.Iterator[str]:
    """The random RAM blob where QEMU running as nobody can read it. At the end of the test, the last lines
    libvirtd and QEMU logged are printed: pytest shows them when the test failed."""
    assert Independent.mode(ram_blob) & 0o004 and Independent.mode(os.path.dirname(ram_blob)) & 0o001
    yield ram_blob
    print(private_libvirtd.log_tails())


# --------------------------------------------------------------------------
# A small file system
# --------------------------------------------------------------------------

@pytest.fixture
def small_fs() -> t.Iterator[str]:
    """A 440 MiB tmpfs, unmounted at the end (the test removes its domain first)."""
    mnt = tempfile.mkdtemp(prefix='kslab-faults-fs-')
    os.chmod(mnt, 0o755)
    run(['mount', '-t', 'tmpfs', '-o', 'size=440m,mode=0755', 'tmpfs', mnt])
    try:
        yield mnt
    finally:
        run(['umount', mnt], check=False)
        with contextlib.suppress(OSError):
            os.rmdir(mnt)


def fill(directory: str, name: str, mib: int | None = None) -> str:
    """Write a file of mib MiB (None: until the file system is full)."""
    path = os.path.join(directory, name)
    with open(path, 'wb') as handle:
        written = 0
        chunk = b'\xff' * (1 << 20)
        while mib is None or written < mib:
            try:
                handle.write(chunk)
                handle.flush()
            except OSError:
                break
            written += 1
    return path
