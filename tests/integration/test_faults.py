# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults, concurrency and data safety: what the modules do when things go wrong mid-run.

Every module run here is a real ``ansible`` process (ad-hoc, one task) started in
its own process group, so a test can kill it, or run several at once. Every outcome
is checked with clients other than the collection: ``virsh``, ``qemu-img``,
``qemu-io``, the process table and the file system.

Daemon faults (killed, restarted, frozen) are played on a private libvirtd: an
unprivileged session daemon run as ``nobody`` with its own runtime, config and
cache directories, started and stopped by pid by this file. The system libvirtd,
shared with other test runs, is never signalled. Everything else runs on the
system libvirtd of the lab.

To hold a libvirt job "in the middle" for as long as a test needs, the test
freezes the domain's QEMU process (SIGSTOP) while libvirt waits for it, and thaws
it (SIGCONT) when the other side of the race is in place.

Domains have no OS. The "heavy" ones load 256 MiB of random data into guest RAM
at start (QEMU's generic loader device), so that a snapshot with memory has
incompressible memory to write and takes a noticeable time.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import xml.etree.ElementTree as ET

import pytest

import lab as lab_tool  # tests/lab/lab.py (conftest.py puts tests/lab on sys.path)

libvirt = lab_tool._libvirt()  # pylint: disable=protected-access

ANSIBLE = str(pathlib.Path(sys.executable).with_name('ansible')) \
    if pathlib.Path(sys.executable).with_name('ansible').exists() else 'ansible'
SYSTEM_URI = 'qemu:///system'
QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0'
RAM_MIB = 320          # guest memory of a heavy domain
BLOB_MIB = 256         # random data loaded into it
CONTROL_OK = 0         # virDomainControlState: no job


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
        parents = {}
        for pid in _pids():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f'/proc/{pid}/stat', encoding='utf-8') as handle:
                    parents[pid] = int(handle.read().rsplit(')', 1)[1].split()[1])
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(child for child, parent in parents.items() if parent == pid)
        return list(reversed(found))

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


def _pids() -> list[int]:
    return [int(p) for p in os.listdir('/proc') if p.isdigit()]


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None when the process is gone."""
    try:
        with open(f'/proc/{pid}/stat', encoding='utf-8') as handle:
            return handle.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None


def _proc_state(pid: int | str) -> str | None:
    fields = _proc_stat(pid)
    return fields[0] if fields else None


def _cpu_ticks(pid: int) -> int:
    fields = _proc_stat(pid)
    assert fields, f'process {pid} is gone'
    return int(fields[11]) + int(fields[12])  # utime + stime


def process_idle(pid: int, window: float = 1.0) -> bool:
    """Whether a process used no CPU for ``window`` seconds and waits for no disk (state D) at its end."""
    before = _cpu_ticks(pid)
    time.sleep(window)
    return _cpu_ticks(pid) == before and _proc_state(pid) != 'D'


def pid_alive(pid: int) -> bool:
    """A live process (a zombie that its parent did not reap yet counts as gone)."""
    return _proc_state(pid) not in (None, 'Z', 'X')


@pytest.fixture
def module(ansible_env):
    """module(name, args, verbosity=0) -> a started ModuleRun; every run still going at the end is killed."""
    runs: list[ModuleRun] = []

    def start(name: str, args: dict[str, t.Any], verbosity: int = 0) -> ModuleRun:
        run = ModuleRun(ansible_env, name, args, verbosity)
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.rc is None:
            run.kill()


def ok(run: ModuleRun, timeout: float = 300) -> dict[str, t.Any]:
    """Wait for a run that must succeed; its result."""
    run.wait(timeout)
    assert run.rc == 0 and run.status in ('SUCCESS', 'CHANGED'), repr(run)
    return run.result


def failed(run: ModuleRun, timeout: float = 300) -> str:
    """Wait for a run that must fail cleanly; its message (never a traceback)."""
    run.wait(timeout)
    assert run.rc != 0 and run.status == 'FAILED', repr(run)
    msg = run.result['msg']
    assert 'Traceback' not in msg and 'Unexpected error' not in msg, msg
    return msg


def wait_until(predicate: t.Callable[[], t.Any], timeout: float, what: str, step: float = 0.02) -> t.Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(step)


# --------------------------------------------------------------------------
# Independent checks: virsh, qemu-img, qemu-io
# --------------------------------------------------------------------------

def sh(argv: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f'{argv}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}'
    return proc


def virsh(uri: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return sh(['virsh', '-c', uri, *args], check=check)


def snapshot_names(uri: str, dom: str) -> list[str]:
    """``virsh snapshot-list --name``, sorted (names are one a line, whatever they hold)."""
    return sorted(n for n in virsh(uri, 'snapshot-list', dom, '--name').stdout.split('\n') if n)


def current_snapshot(uri: str, dom: str) -> str | None:
    proc = virsh(uri, 'snapshot-current', dom, '--name', check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def snapshot_xml(uri: str, dom: str, name: str) -> ET.Element:
    return ET.fromstring(virsh(uri, 'snapshot-dumpxml', dom, '--snapshotname', name).stdout)


def domstate(uri: str, dom: str) -> str:
    """``virsh domstate --reason``: 'running (unpaused)', 'paused (saving)', ..."""
    return virsh(uri, 'domstate', dom, '--reason').stdout.strip()


def blklist(uri: str, dom: str) -> dict[str, str]:
    lines = virsh(uri, 'domblklist', dom).stdout.splitlines()[2:]
    return dict(line.split(None, 1) for line in lines if line.strip())


def image_tags(path: str) -> list[str]:
    """Names of the internal snapshots in a qcow2 image, exactly as stored (qemu-img info, JSON)."""
    info = json.loads(sh(['qemu-img', 'info', '-U', '--output=json', path]).stdout)
    return sorted(s['name'] for s in info.get('snapshots', []))


def image_intact(path: str) -> str:
    """``qemu-img check -U`` finds no corruption. A running QEMU keeps refcount updates in its cache, so an
    image in use may show leaked clusters (exit code 3, "no harm to data"); errors are never accepted."""
    proc = sh(['qemu-img', 'check', '-U', path], check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode in (0, 3) and 'ERROR' not in output and 'corrupt' not in output.lower(), output
    return output


def has_pattern(path: str, pattern: int, length: str = '1M') -> bool:
    proc = sh(['qemu-io', '-U', '-r', '-f', 'qcow2', '-c', f'read -P {pattern:#x} 0 {length}', path], check=False)
    return proc.returncode == 0 and 'Pattern verification failed' not in proc.stdout + proc.stderr


def mode(path: str) -> int:
    return os.stat(path).st_mode & 0o777


# --------------------------------------------------------------------------
# Domains
# --------------------------------------------------------------------------

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


@pytest.fixture(scope='module')
def ram_blob(lab) -> t.Iterator[str]:
    """256 MiB of random data, readable by every QEMU user (the lab's cleanup also removes it)."""
    path = os.path.join(lab.run_dir, f'{lab.prefix}faults-ram.bin')
    with open(path, 'wb') as handle:
        for _mib in range(BLOB_MIB):
            handle.write(os.urandom(1 << 20))
    os.chmod(path, 0o644)
    yield path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class SystemDomains:
    """Domains on the system libvirtd, named with the lab's prefix (the lab's cleanup is the safety net)."""

    def __init__(self, lab: t.Any) -> None:
        self.lab = lab
        self.uri = SYSTEM_URI
        self.made: list[str] = []

    def make(self, name: str, state: str = 'running', heavy_blob: str | None = None,
             disk_dir: str | None = None, disk_size: str = '64M') -> tuple[str, str]:
        full = self.lab.full_name(f'faults-{name}')
        disk = os.path.join(disk_dir or self.lab.run_dir, f'{full}.vda.qcow2')
        self.made.append(full)
        sh(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, disk_size])
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


def job_active(dom: t.Any) -> bool:
    """Whether a libvirt job holds the domain (virsh domcontrol); works while the job runs."""
    try:
        return dom.controlInfo(0)[0] != CONTROL_OK
    except libvirt.libvirtError:
        return False


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of a process has stopped: SIGSTOP returns at once, the group stop lands thread by
    thread."""
    try:
        tids = os.listdir(f'/proc/{pid}/task')
    except OSError:
        return True  # gone
    return all(_proc_state(f'{pid}/task/{tid}') in ('T', 't', None) for tid in tids)


def _stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    wait_until(lambda: _all_threads_stopped(pid), 10, f'process {pid} to stop', 0.001)


@contextlib.contextmanager
def frozen(pid: int) -> t.Iterator[None]:
    """SIGSTOP a QEMU process for the block (every thread stopped when it starts), SIGCONT at its end (also when
    the test fails)."""
    try:
        _stop(pid)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def frozen_mid_job(pid: int, dom: t.Any, what: str, in_the_middle: t.Callable[[], bool] | None = None,
                   timeout: float = 120) -> t.Iterator[None]:
    """Freeze QEMU while libvirt runs a job on ``dom`` that needs it, for the block.

    Each try stops QEMU first and only then looks at the job (and at ``in_the_middle``), so the job cannot
    get past what was seen before the block runs, however fast the machine. A try that finds no job (not
    started yet, or already over) thaws QEMU and tries again; missing the job altogether fails after
    ``timeout`` instead of testing something else."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _stop(pid)
            if job_active(dom) and (in_the_middle is None or in_the_middle()):
                break
        except BaseException:
            os.kill(pid, signal.SIGCONT)
            raise
        os.kill(pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            raise AssertionError(f'never caught {what} in progress within {timeout} s')
        time.sleep(0.005)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# --------------------------------------------------------------------------
# A private libvirtd to kill and restart
# --------------------------------------------------------------------------

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
        wait_until(lambda: lab_tool.libvirt_answers(self.uri, timeout=5), 30, 'the private libvirtd', 0.2)

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
            self._conn = libvirt.open(self.uri)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def make(self, name: str, blob: str, snapshots: int = 0) -> tuple[str, str]:
        """A running heavy domain whose disk belongs to nobody; returns (name, disk)."""
        full = f'kslab-faults-{name}'
        disk = str(self.images / f'{full}.vda.qcow2')
        sh(['qemu-img', 'create', '-q', '-f', 'qcow2', disk, '64M'])
        os.chown(disk, self.user.pw_uid, self.gid)
        self.conn.defineXML(domain_xml(full, disk, RAM_MIB, blob)).create()
        return full, disk

    def qemu_pid(self, full: str) -> int:
        return int((self.base / 'run' / 'libvirt' / 'qemu' / 'run' / f'{full}.pid').read_text().strip())

    def cleanup(self) -> None:
        """Remove its domains, stop it and its virtlogd (by pid), and delete its directory."""
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
            if pid_alive(pid) and _owner(pid) == self.user.pw_uid:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
        logd = self.base / 'run' / 'libvirt' / 'virtlogd.pid'
        with contextlib.suppress(OSError, ValueError):
            pid = int(logd.read_text().strip())
            if pid_alive(pid) and _owner(pid) == self.user.pw_uid:
                os.kill(pid, signal.SIGTERM)
        shutil.rmtree(self.base, ignore_errors=True)


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f'/proc/{pid}').st_uid
    except OSError:
        return None


@pytest.fixture(scope='module')
def private_libvirtd(lab) -> t.Iterator[PrivateLibvirtd]:
    """The private daemon, started once for this file. ``lab`` makes sure QEMU and virtlogd are installed."""
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
    assert mode(ram_blob) & 0o004 and mode(os.path.dirname(ram_blob)) & 0o001
    yield ram_blob
    for log in sorted((private_libvirtd.base / 'cache' / 'libvirt').rglob('*.log')):
        with contextlib.suppress(OSError):
            lines = log.read_text(errors='replace').splitlines()
            print(f'===== the last lines of {log}', *lines[-40:], sep='\n')


# --------------------------------------------------------------------------
# libvirtd faults
# --------------------------------------------------------------------------

UNREACHABLE_PLAYBOOK = """
- name: Snapshot through a URI with a password, where no libvirtd listens
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Take the snapshot
      kvm.snapshots.snapshot:
        uri: "{{ secret_uri }}"
        domain: web1
        name: pre
        connect_timeout: 10
      register: attempt
      failed_when: false

    - name: It failed at once, with a plain message that names the URI without its password
      ansible.builtin.assert:
        that:
          - attempt.msg is search('libvirtd does not run there or does not accept connections')
          - attempt.msg is search('qemu[+]tcp://admin:[*]{8}@127[.]0[.]0[.]1:1/system')
          - attempt.msg is not search('Traceback')
"""


def test_libvirtd_not_reachable_and_uri_password_masked(run_playbook, tmp_path):
    """No libvirtd at the URI: a plain message at once, and a password in the URI shown nowhere,
    not even with -vvv (which prints the module's arguments)."""
    secret = 'S3cret-Pa55word'
    playbook = tmp_path / 'unreachable.yml'
    playbook.write_text(UNREACHABLE_PLAYBOOK)
    started = time.monotonic()
    run = run_playbook(playbook, {'secret_uri': f'qemu+tcp://admin:{secret}@127.0.0.1:1/system'}, args=['-vvv'])
    assert time.monotonic() - started < 120
    assert 'admin:********@127.0.0.1' in run.stdout
    assert secret not in run.stdout + run.stderr


@pytest.mark.parametrize('how', ['SIGKILL', 'restart'])
def test_libvirtd_dies_during_a_full_snapshot(how, private_libvirtd, private_blob, module):
    """libvirtd killed (or restarted) while it writes a memory snapshot: a clear failure, QEMU keeps the guest,
    and a re-run converges to exactly one complete snapshot, recorded by libvirt and in the image."""
    daemon = private_libvirtd
    dom_name, disk = daemon.make(f'die-{how.lower()}', private_blob)
    qemu = daemon.qemu_pid(dom_name)
    dom = daemon.conn.lookupByName(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': daemon.uri}

    run = module('snapshot', args)
    # caught once libvirt has paused the guest for the snapshot, with QEMU stopped: it cannot finish (and libvirt
    # cannot record) the snapshot before the signal lands
    # (libvirt 9.0 gives the reason "save" for that pause)
    with frozen_mid_job(qemu, dom, 'the snapshot job', lambda: dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED):
        if how == 'SIGKILL':
            daemon.stop(signal.SIGKILL)
        else:
            pid = daemon.send(signal.SIGTERM)  # libvirtd lets the running job finish before it exits
            time.sleep(0.5)
            assert pid_alive(pid), 'libvirtd exited before the snapshot job was over'
    if how == 'restart':
        wait_until(lambda: not pid_alive(pid), 60, f'libvirtd {pid} to exit', 0.05)
        daemon.close()
    msg = failed(run)
    assert 'connection to libvirtd was lost' in msg and 'a re-run of this task finds out' in msg, msg
    assert pid_alive(qemu), 'QEMU died with libvirtd'
    if how == 'SIGKILL':
        # libvirtd comes back once QEMU is done with what it was asked (the guest's memory may still be on its
        # way into the image): one CI run that restarted libvirtd at once found the guest shut off
        wait_until(lambda: process_idle(qemu), 120, 'QEMU to finish the snapshot libvirtd left it', 0.1)

    daemon.start()
    state_after_fault = domstate(daemon.uri, dom_name)
    names_after_fault = snapshot_names(daemon.uri, dom_name)
    if how == 'SIGKILL':
        # libvirtd died before it recorded the snapshot; QEMU may have it in the image, unrecorded,
        # and libvirt 9.0 leaves the guest paused
        assert names_after_fault == [], names_after_fault
        assert image_tags(disk) in ([], ['before-change'])
    rerun = module('snapshot', args)
    result = ok(rerun)
    if names_after_fault:
        assert not result['changed']  # libvirt finished the job on its way down
    else:
        assert result['changed']
    if state_after_fault.startswith('paused'):
        # ansible shows the module's warnings as [WARNING] lines
        assert 'was resumed' in rerun.stdout + rerun.stderr, repr(rerun)
    # exactly one snapshot, in libvirt and in the image, of the running guest; the same QEMU all along
    assert snapshot_names(daemon.uri, dom_name) == ['before-change']
    assert image_tags(disk) == ['before-change']
    assert snapshot_xml(daemon.uri, dom_name, 'before-change').findtext('state') == 'running'
    assert domstate(daemon.uri, dom_name) == 'running (unpaused)'
    assert daemon.qemu_pid(dom_name) == qemu and pid_alive(qemu)
    image_intact(disk)


def test_libvirtd_freezes_during_a_snapshot(private_libvirtd, private_blob, module):
    """libvirtd stops answering (SIGSTOP) mid-snapshot: the module gives up after about connect_timeout with a
    message instead of hanging; once libvirtd runs again, a re-run converges."""
    daemon = private_libvirtd
    dom_name, disk = daemon.make('freeze', private_blob)
    dom = daemon.conn.lookupByName(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': daemon.uri, 'connect_timeout': 6}

    run = module('snapshot', args)
    with frozen_mid_job(daemon.qemu_pid(dom_name), dom, 'the snapshot job'):  # libvirtd stops before it is done
        daemon.send(signal.SIGSTOP)
    frozen_at = time.monotonic()
    try:
        msg = failed(run, timeout=120)
        gave_up_after = time.monotonic() - frozen_at
    finally:
        daemon.send(signal.SIGCONT)
    assert 'keepalive' in msg and 'stopped answering' in msg, msg
    assert gave_up_after < 30, gave_up_after
    daemon.close()

    result = ok(module('snapshot', args))
    assert not result['changed']  # libvirtd finished the snapshot once it ran again
    assert snapshot_names(daemon.uri, dom_name) == ['before-change']
    assert image_tags(disk) == ['before-change']
    assert domstate(daemon.uri, dom_name) == 'running (unpaused)'
    image_intact(disk)


def test_interrupted_delete_is_finished_by_a_rerun(system, module):
    """The state a delete leaves when libvirtd dies between QEMU dropping the snapshot and libvirt dropping
    its record (made here with the monitor's delvm): a re-run of the delete finishes the job."""
    dom_name, disk = system.make('half-deleted')
    args = {'domain': dom_name, 'name': 'old', 'uri': system.uri}
    ok(module('snapshot', args))
    virsh(system.uri, 'qemu-monitor-command', '--hmp', dom_name, 'delvm old')
    assert image_tags(disk) == [] and snapshot_names(system.uri, dom_name) == ['old']

    result = ok(module('snapshot', dict(args, state='absent')))
    assert result['changed'] and result['deleted'] == ['old']
    assert snapshot_names(system.uri, dom_name) == [] and image_tags(disk) == []
    assert domstate(system.uri, dom_name) == 'running (unpaused)'
    image_intact(disk)


# --------------------------------------------------------------------------
# The module process killed
# --------------------------------------------------------------------------

def test_module_killed_during_create(system, ram_blob, module):
    """The ansible run is SIGKILLed while libvirt takes its snapshot: libvirt finishes it, and the next run
    finds it complete and reports no change."""
    dom_name, disk = system.make('kill-create', heavy_blob=ram_blob)
    dom, qemu = system.dom(dom_name), system.qemu_pid(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': system.uri}

    run = module('snapshot', args)
    with frozen_mid_job(qemu, dom, 'the snapshot job'):  # the snapshot cannot finish before the kill
        assert run.module_running()
        killed = run.kill()
        wait_until(lambda: not [(pid, _proc_state(pid)) for pid in killed if pid_alive(pid)], 10,
                   f'the killed processes {killed} to be gone', 0.1)
        assert job_active(dom)
    wait_until(lambda: not job_active(dom), 120, 'libvirt to finish the snapshot')

    result = ok(module('snapshot', args))
    assert not result['changed'] and result['snapshot']['state'] == 'running'
    assert snapshot_names(system.uri, dom_name) == ['before-change']
    assert image_tags(disk) == ['before-change']
    assert domstate(system.uri, dom_name) == 'running (unpaused)'
    assert system.qemu_pid(dom_name) == qemu
    image_intact(disk)


def test_module_killed_during_delete(system, module):
    """The ansible run is SIGKILLed while libvirt merges a disk-only snapshot back (block commit of 384 MiB):
    libvirt finishes, the next run reports nothing left to do, and the data is in the image."""
    dom_name, disk = system.make('kill-delete', state='shutoff', disk_size='512M')
    args = {'domain': dom_name, 'name': 'overlay', 'uri': system.uri, 'disk_only': True}
    ok(module('snapshot', args))
    overlay = blklist(system.uri, dom_name)['vda']
    assert overlay != disk
    sh(['qemu-io', '-f', 'qcow2', '-c', 'write -P 0x5a 0 384M', overlay])
    dom = system.dom(dom_name)
    dom.create()
    qemu = system.qemu_pid(dom_name)

    run = module('snapshot', dict(args, state='absent'))
    # caught before libvirt pivots back to the base image: the rest of the job needs QEMU
    with frozen_mid_job(qemu, dom, 'the block commit of the delete',
                        lambda: blklist(system.uri, dom_name) == {'vda': overlay}):
        assert run.module_running()
        killed = run.kill()
        wait_until(lambda: not [(pid, _proc_state(pid)) for pid in killed if pid_alive(pid)], 10,
                   f'the killed processes {killed} to be gone', 0.1)
        # killed in the middle: the commit cannot have finished while QEMU is frozen
        assert snapshot_names(system.uri, dom_name) == ['overlay'] and blklist(system.uri, dom_name) == {'vda': overlay}
    # the block commit of an external delete is an asynchronous job that control info does not always show:
    # watch for its end itself
    wait_until(lambda: not snapshot_names(system.uri, dom_name) and not os.path.exists(overlay), 120,
               'libvirt to finish the delete', 0.2)

    result = ok(module('snapshot', dict(args, state='absent')))
    assert not result['changed']
    assert snapshot_names(system.uri, dom_name) == []
    assert blklist(system.uri, dom_name) == {'vda': disk}
    assert not os.path.exists(overlay)
    assert has_pattern(disk, 0x5a, '384M')
    assert domstate(system.uri, dom_name).startswith('running')
    image_intact(disk)


# --------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------

class BusyWatch:
    """Counts, from libvirt directly (a thread polling virDomainGetControlInfo), how many of some domains have a
    libvirt job at the same time; the most seen is ``most``."""

    def __init__(self, doms: list[t.Any]) -> None:
        self.doms = doms
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.most = max(self.most, sum(1 for dom in self.doms if job_active(dom)))
            time.sleep(0.005)

    def __enter__(self) -> BusyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize('limit', [0, 1])
def test_hypervisor_jobs_limit_separate_runs(limit, system, ram_blob, module):
    """Three runs at once, one heavy domain each. The QEMU of the first domain whose snapshot starts is frozen
    in the middle of it: with hypervisor_jobs=1 the other two runs wait for their turn (libvirt shows no other
    job) and take their snapshots once it is over; without a limit their jobs run meanwhile (which shows that
    the watch sees jobs at the same time)."""
    doms = [system.make(f'jobs{limit}-{i}', heavy_blob=ram_blob) for i in range(3)]
    handles = [system.dom(name) for name, _disk in doms]
    with BusyWatch(handles) as watch:
        runs = [module('snapshot', {'domain': name, 'name': 'nightly', 'uri': system.uri, 'hypervisor_jobs': limit})
                for name, _disk in doms]
        first = wait_until(lambda: next((h for h in handles if job_active(h)), None), 120, 'a first snapshot job')
        others = [run for run, handle in zip(runs, handles) if handle is not first]
        with frozen_mid_job(system.qemu_pid(first.name()), first, 'the first snapshot job'):
            if limit:
                wait_until(lambda: all(run.module_running() for run in others), 60, 'the other runs to reach the module',
                           0.1)
                time.sleep(2)
                assert watch.most == 1, f'{watch.most} snapshot jobs ran at once under hypervisor_jobs=1'
                assert all(run.rc is None for run in others)
            else:
                wait_until(lambda: watch.most >= 2, 120, 'another snapshot job while the first one is frozen')
        results = [ok(run) for run in runs]
    assert all(result['changed'] for result in results)
    if limit:
        assert watch.most == 1, f'{watch.most} snapshot jobs ran at once under hypervisor_jobs=1'
    for name, disk in doms:
        assert snapshot_names(system.uri, name) == ['nightly']
        assert image_tags(disk) == ['nightly']
        assert domstate(system.uri, name) == 'running (unpaused)'
        image_intact(disk)


def test_concurrent_runs_on_one_domain(system, ram_blob, module):
    """While one run takes a snapshot, a second run asking for the same name waits for it and reports no change
    (libvirt lists the snapshot from the start, so it must not answer before the first is done), and a run for
    another name waits for the busy domain for busy_timeout, then fails saying what holds it."""
    dom_name, disk = system.make('same-name', heavy_blob=ram_blob)
    dom, qemu = system.dom(dom_name), system.qemu_pid(dom_name)
    args = {'domain': dom_name, 'name': 'nightly', 'uri': system.uri}

    first = module('snapshot', args)
    with frozen_mid_job(qemu, dom, 'the first snapshot job'):
        second = module('snapshot', args)
        other = module('snapshot', dict(args, name='other', busy_timeout=1))
        wait_until(second.module_running, 60, 'the second run to reach the module', 0.1)
        busy_msg = failed(other, timeout=120)  # libvirt gives up on the lock after 30 s
        assert second.rc is None and first.rc is None
        thawed = time.monotonic()
    created = ok(first)
    waited = ok(second)
    assert created['changed'] and not waited['changed']
    assert second.ended > thawed, 'the second run answered before the first snapshot was done'
    assert 'another job holds the domain' in busy_msg and 'cannot acquire state change lock' in busy_msg, busy_msg
    assert snapshot_names(system.uri, dom_name) == ['nightly']
    assert image_tags(disk) == ['nightly']
    assert snapshot_xml(system.uri, dom_name, 'nightly').findtext('state') == 'running'
    assert domstate(system.uri, dom_name) == 'running (unpaused)'
    image_intact(disk)


def test_batch_overlapping_a_single_run(system, module):
    """A batch over three domains and a single-domain run on the middle one, both in flight at once
    (the middle domain's QEMU frozen until both wait for it): one snapshot per domain, both runs succeed,
    and exactly one of them made the middle one."""
    doms = [system.make(f'batch-{i}') for i in range(3)]
    middle, middle_disk = doms[1]
    qemu = system.qemu_pid(middle)
    with frozen(qemu):
        batch = module('snapshot', {'domains': [lab_name for lab_name, _disk in doms], 'name': 'nightly',
                                    'uri': system.uri})
        single = module('snapshot', {'domain': middle, 'name': 'nightly', 'uri': system.uri})
        wait_until(lambda: batch.module_running() and single.module_running(), 60, 'both runs to reach the module',
                   0.1)
        time.sleep(2)
        assert batch.rc is None and single.rc is None
    batch_result, single_result = ok(batch), ok(single)
    by_domain = {r['domain']: r for r in batch_result['results']}
    assert by_domain[doms[0][0]]['changed'] and by_domain[doms[2][0]]['changed']
    assert [by_domain[middle]['changed'], single_result['changed']].count(True) == 1
    for dom_name, disk in doms:
        assert snapshot_names(system.uri, dom_name) == ['nightly']
        assert image_tags(disk) == ['nightly']
        assert domstate(system.uri, dom_name) == 'running (unpaused)'
        image_intact(disk)
    assert system.qemu_pid(middle) == qemu


def test_revert_while_a_create_is_in_progress(system, ram_blob, module):
    """A revert started while a snapshot is being written waits for it; both succeed, the new snapshot is
    complete and the domain ends at the snapshot it was reverted to."""
    dom_name, disk = system.make('revert-race', heavy_blob=ram_blob)
    dom = system.dom(dom_name)
    base = {'domain': dom_name, 'uri': system.uri}
    ok(module('snapshot', dict(base, name='old')))
    qemu = system.qemu_pid(dom_name)

    create = module('snapshot', dict(base, name='new'))
    with frozen_mid_job(qemu, dom, 'the snapshot job'):
        revert = module('snapshot_revert', dict(base, name='old'))
        wait_until(revert.module_running, 60, 'the revert to reach the module', 0.1)
        time.sleep(2)
        assert revert.rc is None and create.rc is None
    assert ok(create)['changed']
    reverted = ok(revert)
    assert reverted['changed'] and reverted['state'] == 'running'
    assert snapshot_names(system.uri, dom_name) == ['new', 'old']
    assert image_tags(disk) == ['new', 'old']
    assert snapshot_xml(system.uri, dom_name, 'new').findtext('state') == 'running'
    assert current_snapshot(system.uri, dom_name) == 'old'
    assert domstate(system.uri, dom_name).startswith('running')
    image_intact(disk)


# --------------------------------------------------------------------------
# Full storage
# --------------------------------------------------------------------------

@pytest.fixture
def small_fs() -> t.Iterator[str]:
    """A 440 MiB tmpfs, unmounted at the end (the test removes its domain first)."""
    mnt = tempfile.mkdtemp(prefix='kslab-faults-fs-')
    os.chmod(mnt, 0o755)
    sh(['mount', '-t', 'tmpfs', '-o', 'size=440m,mode=0755', 'tmpfs', mnt])
    try:
        yield mnt
    finally:
        sh(['umount', mnt], check=False)
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


def test_storage_full_during_a_memory_snapshot(system, ram_blob, small_fs, module):
    """A memory snapshot on a file system too small for it is refused before anything is written; one whose
    file system fills up while the memory is written fails with a clear message, the guest keeps running,
    libvirt records nothing, the image is intact, and a re-run after space was freed converges."""
    try:
        storage_full_scenario(system, ram_blob, small_fs, module)
    finally:
        system.remove_all()  # QEMU must let go of the image before the file system is unmounted


def storage_full_scenario(system: SystemDomains, ram_blob: str, small_fs: str, module: t.Callable) -> None:
    dom_name, disk = system.make('full', heavy_blob=ram_blob, disk_dir=small_fs)
    dom, qemu = system.dom(dom_name), system.qemu_pid(dom_name)
    args = {'domain': dom_name, 'name': 'before-change', 'uri': system.uri}

    # 1. not enough room for the guest's memory (320 MiB, and 64 MiB for device state): refused up front
    filler = fill(small_fs, 'filler', 100)
    size_before = os.path.getsize(disk)
    msg = failed(module('snapshot', args))
    assert 'a snapshot with memory needs up to 384 MiB' in msg and 'Nothing was changed' in msg, msg
    assert os.path.getsize(disk) == size_before and image_tags(disk) == []
    os.unlink(filler)

    # 2. room enough at the start, then something else fills the file system while the memory is written
    run = module('snapshot', args)
    with frozen_mid_job(qemu, dom, 'the snapshot job'):
        filler = fill(small_fs, 'filler')
        assert shutil.disk_usage(small_fs).free < (1 << 20)
    msg = failed(run)
    assert 'is full' in msg and 'No snapshot was recorded' in msg, msg
    assert domstate(system.uri, dom_name) == 'running (unpaused)'
    assert system.qemu_pid(dom_name) == qemu
    assert snapshot_names(system.uri, dom_name) == []
    assert image_tags(disk) == []
    image_intact(disk)

    # 3. space freed: the re-run takes the snapshot
    os.unlink(filler)
    assert ok(module('snapshot', args))['changed']
    assert snapshot_names(system.uri, dom_name) == ['before-change'] and image_tags(disk) == ['before-change']
    image_intact(disk)


# --------------------------------------------------------------------------
# Files, names, mixed snapshot trees
# --------------------------------------------------------------------------

def test_file_modes(system, module):
    """A full snapshot writes the memory into the image and makes no other file; the image holding it is
    not readable by others. Overlays of disk-only snapshots are readable by their owner only (libvirt 9.0
    makes offline ones 0644)."""
    full, full_disk = system.make('modes-full')
    running, running_disk = system.make('modes-running')
    shutoff, shutoff_disk = system.make('modes-shutoff', state='shutoff')
    run_dir = os.path.dirname(full_disk)
    os.chmod(full_disk, 0o644)
    before = set(os.listdir(run_dir))
    ok(module('snapshot', {'domain': full, 'name': 'full', 'uri': system.uri}))
    new_files = {f for f in set(os.listdir(run_dir)) - before if f.startswith(full)}
    assert new_files == set(), new_files
    assert image_tags(full_disk) == ['full']
    assert mode(full_disk) & 0o007 == 0, oct(mode(full_disk))

    for dom_name, disk in ((running, running_disk), (shutoff, shutoff_disk)):
        ok(module('snapshot', {'domain': dom_name, 'name': 'overlay', 'uri': system.uri, 'disk_only': True}))
        overlay = blklist(system.uri, dom_name)['vda']
        assert overlay != disk and os.path.isfile(overlay)
        assert mode(overlay) & 0o077 == 0, (dom_name, oct(mode(overlay)))


HOSTILE_NAMES = [
    "it's <b>&amp; ;| <!-- x -->",
    '-d',
    '--help',
    'with  space ',
    'ünïcødé-名前',
]
# libvirt 9.0 puts these into QEMU monitor commands unescaped (savevm "NAME"): fine offline only
MONITOR_UNSAFE_NAMES = ['say "hi"', 'back\\slash']


def test_hostile_names_and_descriptions(system, run_playbook, tmp_path):
    """Names and descriptions full of XML, shell and option syntax are stored exactly as given, on a running
    domain (libvirt talks to QEMU's monitor) and a shut-off one (libvirt runs qemu-img), and can be reverted
    to and deleted; nothing is executed and no XML is injected. Names with " or \\, which libvirt 9.0 would
    put into a monitor command unescaped (QEMU then saves nothing while libvirt records a snapshot), are
    refused for a running domain and work for a shut-off one."""
    canary = tmp_path / 'canary'
    # names cannot hold "/": a relative canary, looked for where a shell of libvirtd, QEMU or the module would run
    name_canary = 'kslab-faults-canary'
    names = HOSTILE_NAMES + [f'$(touch {name_canary})`touch {name_canary}`']
    shell_dirs = ('/', os.getcwd(), os.path.expanduser('~'), '/var/lib/libvirt', '/var/lib/libvirt/qemu')
    name_canary_places = [pathlib.Path(d, name_canary) for d in shell_dirs]
    description = (f"</description><memory snapshot='external' file='{tmp_path}/mem'/><description>"
                   f"<![CDATA[ ]]> &amp; $(touch {canary}) \"'\\")
    running, running_disk = system.make('names-running')
    shutoff, shutoff_disk = system.make('names-shutoff', state='shutoff')
    out = tmp_path / 'results.json'
    play_vars = {'running': running, 'shutoff': shutoff, 'names': names, 'unsafe': MONITOR_UNSAFE_NAMES,
                 'description': description, 'out': str(out)}

    run_playbook('faults_names.yml', dict(play_vars, phase='create'))
    results = json.loads(out.read_text())
    made = [r['snapshot']['name'] for r in results['created_running']['results'] + results['created_shutoff']['results']
            if r['changed']]
    assert made == names + names + MONITOR_UNSAFE_NAMES
    for dom_name, disk, dom_names in ((running, running_disk, names),
                                      (shutoff, shutoff_disk, names + MONITOR_UNSAFE_NAMES)):
        assert snapshot_names(system.uri, dom_name) == sorted(dom_names)
        assert image_tags(disk) == sorted(dom_names)
        for name in dom_names:
            xml = snapshot_xml(system.uri, dom_name, name)
            assert xml.findtext('name') == name and xml.findtext('description') == description
            assert xml.find('memory').get('snapshot') in ('internal', 'no') and xml.find('memory').get('file') is None
    for refusal in results['refused']['results']:
        # failed_when: false keeps the play going; the module's failure shows in its message
        assert not refusal['changed'] and "QEMU's monitor without escaping it" in refusal['msg'], refusal
        assert 'Nothing was changed' in refusal['msg'] and 'Traceback' not in refusal['msg']

    run_playbook('faults_names.yml', dict(play_vars, phase='delete'))
    results = json.loads(out.read_text())
    assert results['reverted']['changed'] and results['reverted']['snapshot']['name'] == names[0]
    assert [r['deleted'] for r in results['deleted']['results']] == [[name] for name in names]
    assert snapshot_names(system.uri, running) == [] and image_tags(running_disk) == []
    assert domstate(system.uri, running).startswith('running')
    assert not canary.exists() and not (tmp_path / 'mem').exists()
    assert not any(place.exists() for place in name_canary_places)


def test_mixed_internal_and_external_refused(system, module):
    """Internal and external snapshots of one domain do not mix where libvirt 9.0 would lose data or get
    stuck: each refusal says why, and nothing changes (checked with virsh)."""
    dom_name, disk = system.make('mixed')
    base = {'domain': dom_name, 'uri': system.uri}
    ok(module('snapshot', dict(base, name='internal-1')))

    # external on top of internal: libvirt could not delete it again
    msg = failed(module('snapshot', dict(base, name='external-1', disk_only=True)))
    assert 'has internal snapshots (internal-1)' in msg and 'cannot delete an external snapshot' in msg, msg
    assert snapshot_names(system.uri, dom_name) == ['internal-1'] and blklist(system.uri, dom_name) == {'vda': disk}

    # another tool makes the mix anyway
    virsh(system.uri, 'snapshot-create-as', dom_name, 'external-1', '--disk-only', '--atomic')
    overlay = blklist(system.uri, dom_name)['vda']
    assert overlay != disk

    # internal on top of external (libvirt < 11.0 loses data)
    msg = failed(module('snapshot', dict(base, name='internal-2')))
    assert 'has external snapshots (external-1)' in msg and 'loses data' in msg, msg
    # revert to the internal one: libvirt would put the disk back under the overlay
    msg = failed(module('snapshot_revert', dict(base, name='internal-1')))
    assert 'reverting to the internal snapshot "internal-1" is refused' in msg and 'Nothing was changed' in msg, msg

    assert snapshot_names(system.uri, dom_name) == ['external-1', 'internal-1']
    assert current_snapshot(system.uri, dom_name) == 'external-1'
    assert blklist(system.uri, dom_name) == {'vda': overlay}
    assert image_tags(disk) == ['internal-1'] and image_tags(overlay) == []
    assert domstate(system.uri, dom_name) == 'running (unpaused)'
