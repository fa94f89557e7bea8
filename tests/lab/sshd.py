"""A private sshd on loopback addresses, for tests that reach "remote" hypervisors over SSH.

Test tooling, not part of the collection. ``LoopbackSshd`` runs the system's
``/usr/sbin/sshd`` (Debian's openssh-server, installed with apt-get when it is
missing) as a separate daemon with its own configuration file, host key,
client keys, ``authorized_keys``, log and pid, all in a temporary directory:

* it listens on the given loopback addresses only (``127.0.0.2``,
  ``127.0.0.3``, ...: Linux routes all of 127.0.0.0/8 to ``lo``), on one
  port that was free on all of them;
* root logs in with the client key the helper made (``PermitRootLogin
  prohibit-password``, no passwords, no PAM);
* ``known_hosts()`` writes a known_hosts file for chosen addresses, with the
  right host key, or on purpose a wrong one;
* ``ssh_shim()`` writes an ``ssh`` wrapper to put first in ``PATH``: it makes
  every ssh client started from there (Ansible's connection, libvirt's
  ``qemu+ssh://`` transport) verify host keys strictly against that
  known_hosts file, the way ``UserKnownHostsFile`` in ``~/.ssh/config`` would,
  without touching the user's own ssh files;
* ``stop()`` ends the daemon and the sessions it forked, by their pids.

A system sshd (port 22, ``/etc/ssh``) is never used, started or touched.

With ``root`` (the chroot of a lab stack, tests/lab/lab.py ``Stack.root``), the sshd is the chroot's own,
started with ``chroot ROOT /usr/sbin/sshd``: its files are in a temporary directory under ``ROOT/tmp``
and a login lands inside the chroot, where the modules run with the chroot's Python and libvirt-python
and ``qemu:///system`` is the chroot's libvirtd. The stack must be up (its /proc, /dev and /run mounted).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import typing as t

SSHD = '/usr/sbin/sshd'
SSH = shutil.which('ssh') or '/usr/bin/ssh'
PACKAGE = 'openssh-server'
#: sshd refuses to start without its privilege separation directory (Debian's package makes it at boot).
PRIVSEP_DIR = '/run/sshd'


class SshdError(Exception):
    pass


def install() -> None:
    """Install openssh-server when /usr/sbin/sshd is missing (Debian; its service is not started here)."""
    if os.path.exists(SSHD):
        return
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    subprocess.run(['apt-get', 'update', '-q'], env=env, check=True, capture_output=True, timeout=600)
    subprocess.run(['apt-get', 'install', '-y', '-q', PACKAGE], env=env, check=True, capture_output=True, timeout=600)


def free_port(addresses: t.Sequence[str], tries: int = 50) -> int:
    """A TCP port that is free on every one of ``addresses``."""
    for _attempt in range(tries):
        with socket.socket() as probe:
            probe.bind((addresses[0], 0))
            port = probe.getsockname()[1]
        try:
            for address in addresses:
                with socket.socket() as other:
                    other.bind((address, port))
        except OSError:
            continue
        return port
    raise SshdError(f'no port is free on all of {", ".join(addresses)}')


def _keygen(path: pathlib.Path) -> str:
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', path.name, '-f', str(path)],
                   check=True, capture_output=True, timeout=60)
    return path.with_suffix('.pub').read_text(encoding='utf-8').strip()


class LoopbackSshd:
    """sshd listening on ``addresses`` (loopback only) at one port; see the module docstring."""

    def __init__(self, addresses: t.Sequence[str], root: str | None = None) -> None:
        for address in addresses:
            if not address.startswith('127.'):
                raise SshdError(f'{address} is not a loopback address')
        self.addresses = list(addresses)
        self.root = root
        if root is not None and not os.path.exists(os.path.join(root, SSHD.lstrip('/'))):
            raise SshdError(f'{root} has no {SSHD}')
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix='kvm-snapshots-sshd-',
                                                 dir=None if root is None else os.path.join(root, 'tmp')))
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.host_key = self.dir / 'ssh_host_ed25519_key'
        self.client_key = self.dir / 'id_root'        # authorised for root
        self.wrong_key = self.dir / 'id_stranger'     # not authorised anywhere
        self.config = self.dir / 'sshd_config'
        self.log = self.dir / 'sshd.log'

    # -- set up ---------------------------------------------------------------

    def _inner(self, path: pathlib.Path | str) -> str:
        """A path of this machine as the sshd sees it (inside the chroot, if any)."""
        if self.root is None:
            return str(path)
        return '/' + os.path.relpath(str(path), self.root)

    def _argv(self, *args: str) -> list[str]:
        return ([SSHD] if self.root is None else ['chroot', self.root, SSHD]) + list(args)

    def start(self, timeout: float = 30) -> 'LoopbackSshd':
        if self.root is None:
            install()
        os.makedirs(PRIVSEP_DIR if self.root is None else os.path.join(self.root, PRIVSEP_DIR.lstrip('/')),
                    mode=0o755, exist_ok=True)
        _keygen(self.host_key)
        (self.dir / 'authorized_keys').write_text(_keygen(self.client_key) + '\n', encoding='utf-8')
        _keygen(self.wrong_key)
        self.port = free_port(self.addresses)
        lines = [f'ListenAddress {address}:{self.port}' for address in self.addresses] + [
            f'HostKey {self._inner(self.host_key)}',
            f'AuthorizedKeysFile {self._inner(self.dir / "authorized_keys")}',
            f'PidFile {self._inner(self.dir / "sshd.pid")}',
            'PermitRootLogin prohibit-password',
            'PubkeyAuthentication yes',
            'PasswordAuthentication no',
            'KbdInteractiveAuthentication no',
            'UsePAM no',
            # the key files live under /tmp (world-writable), which strict mode refuses
            'StrictModes no',
            'Subsystem sftp internal-sftp',
            # "Connection from A port P on ADDRESS port PORT": which address each login came to
            'LogLevel VERBOSE',
        ]
        self.config.write_text('\n'.join(lines) + '\n', encoding='utf-8')
        check = subprocess.run(self._argv('-t', '-f', self._inner(self.config)), capture_output=True, text=True,
                               timeout=60, check=False)
        if check.returncode != 0:
            raise SshdError(f'sshd -t refused {self.config}: {check.stderr.strip()}')
        # chroot execs sshd: self.proc.pid is the sshd's pid either way
        self.proc = subprocess.Popen(self._argv('-D', '-f', self._inner(self.config), '-E', self._inner(self.log)),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        waiting = set(self.addresses)
        while waiting:
            if self.proc.poll() is not None:
                raise SshdError(f'sshd exited with {self.proc.returncode}: {self.log_text()[-2000:]}')
            for address in list(waiting):
                with contextlib.suppress(OSError), socket.create_connection((address, self.port), timeout=1) as conn:
                    if conn.recv(64).startswith(b'SSH-'):
                        waiting.discard(address)
            if waiting and time.monotonic() > deadline:
                self.stop()
                raise SshdError(f'sshd does not answer on {", ".join(sorted(waiting))} port {self.port}')
            if waiting:
                time.sleep(0.2)
        return self

    def host_key_line(self) -> str:
        """``TYPE BASE64`` of the host key."""
        return ' '.join(self.host_key.with_suffix('.pub').read_text(encoding='utf-8').split()[:2])

    def known_hosts(self, path: pathlib.Path, right: t.Iterable[str] = (), wrong: t.Iterable[str] = ()) -> pathlib.Path:
        """A known_hosts file: the host key for the ``right`` addresses, another key for the ``wrong`` ones."""
        stranger = ' '.join(self.wrong_key.with_suffix('.pub').read_text(encoding='utf-8').split()[:2])
        lines = [f'[{address}]:{self.port} {self.host_key_line()}' for address in right]
        lines += [f'[{address}]:{self.port} {stranger}' for address in wrong]
        path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
        return path

    def ssh_shim(self, directory: pathlib.Path, known_hosts: pathlib.Path) -> pathlib.Path:
        """Write ``directory/ssh``: the real ssh with strict host key checking against ``known_hosts`` only.

        ssh takes the first value it gets for an option, so these win over what callers add
        (Ansible's StrictHostKeyChecking=no when host key checking is off, for example).
        """
        directory.mkdir(parents=True, exist_ok=True)
        shim = directory / 'ssh'
        shim.write_text(
            '#!/bin/sh\n'
            '# test shim: strict host keys from the test\'s own known_hosts (see tests/lab/sshd.py)\n'
            f'exec {SSH} -o UserKnownHostsFile={known_hosts} -o GlobalKnownHostsFile=/dev/null '
            '-o StrictHostKeyChecking=yes -o UpdateHostKeys=no "$@"\n', encoding='utf-8')
        shim.chmod(0o755)
        return directory

    # -- looking at it --------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding='utf-8', errors='replace')
        except OSError:
            return ''

    def connections(self, since: int = 0) -> dict[str, int]:
        """Connections per listening address in the log, from character ``since`` of it on."""
        counts = {address: 0 for address in self.addresses}
        for line in self.log_text()[since:].splitlines():
            if line.startswith('Connection from ') and f' port {self.port}' in line:
                address = line.split(' on ', 1)[1].split(' port ', 1)[0]
                if address in counts:
                    counts[address] += 1
        return counts

    # -- tear down ------------------------------------------------------------

    def _children(self, pid: int) -> list[int]:
        """The pids of the processes whose parent is ``pid`` (sshd forks one per connection)."""
        found = []
        for entry in pathlib.Path('/proc').iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / 'stat').read_text(encoding='utf-8')
                if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Stop the daemon, then the sessions it forked (by pid); remove the directory."""
        if self.proc is not None and self.proc.poll() is None:
            sessions = self._children(self.proc.pid)
            sessions += [grandchild for child in sessions for grandchild in self._children(child)]
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            for pid in sessions:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> 'LoopbackSshd':
        return self.start()

    def __exit__(self, *exc: t.Any) -> None:
        self.stop()
