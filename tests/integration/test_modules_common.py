# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers of the integration tests (this file holds no tests).

``Independent`` reads the outcome of a test with clients other than the
collection's own modules: ``virsh`` (through the lab), ``qemu-img`` and
``qemu-io``. The fixtures ``independent``, ``blank`` (tiny OS-less domains,
removed after each test) and ``guest`` (one real Debian guest shared by the
session) are imported by the test files that use them.
"""

from __future__ import annotations

import json
import os
import subprocess
import typing as t
import xml.etree.ElementTree as ET

import pytest


def run(argv: list[str], check: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, f'{argv}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}'
    return proc


def snapshot_names(lab: t.Any, domain: str) -> set[str]:
    """The snapshot names of a domain, as ``virsh snapshot-list --name`` gives them (a set)."""
    cp = lab.virsh('snapshot-list', domain, '--name')
    assert cp.returncode == 0, cp.stderr
    return {line.strip() for line in cp.stdout.splitlines() if line.strip()}


def current_snapshot(lab: t.Any, domain: str) -> str:
    """``virsh snapshot-current --name``: the current snapshot of a domain."""
    cp = lab.virsh('snapshot-current', domain, '--name')
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


class Independent:
    """virsh, qemu-img and qemu-io, for checking what the modules did."""

    def __init__(self, lab: t.Any) -> None:
        self.lab = lab

    # virsh

    def virsh(self, *args: t.Any, check: bool = True) -> subprocess.CompletedProcess:
        proc = self.lab.virsh(*args)
        if check:
            assert proc.returncode == 0, f'virsh {args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}'
        return proc

    def snapshot_names(self, dom: str) -> list[str]:
        """``virsh snapshot-list DOM --name``, sorted."""
        return sorted(line for line in self.virsh('snapshot-list', dom, '--name').stdout.splitlines() if line)

    def snapshot_info(self, dom: str, name: str) -> dict[str, str]:
        """``virsh snapshot-info DOM NAME`` as a dict (Name, State, Location, Current, Parent, Children ...)."""
        out = self.virsh('snapshot-info', dom, '--snapshotname', name).stdout
        return {k.strip(): v.strip() for k, v in (line.split(':', 1) for line in out.splitlines() if ':' in line)}

    def snapshot_xml(self, dom: str, name: str) -> ET.Element:
        """``virsh snapshot-dumpxml DOM NAME``, parsed."""
        return ET.fromstring(self.virsh('snapshot-dumpxml', dom, '--snapshotname', name).stdout)

    def current(self, dom: str) -> str | None:
        """``virsh snapshot-current DOM --name``; None when the domain has no current snapshot."""
        proc = self.virsh('snapshot-current', dom, '--name', check=False)
        if proc.returncode != 0:
            assert 'no current snapshot' in proc.stderr or 'no domain snapshot' in proc.stderr, proc.stderr
            return None
        return proc.stdout.strip()

    def parent(self, dom: str, name: str) -> str | None:
        """``virsh snapshot-parent DOM NAME``; None for a root."""
        proc = self.virsh('snapshot-parent', dom, '--snapshotname', name, check=False)
        if proc.returncode != 0:
            assert 'has no parent' in proc.stderr, proc.stderr
            return None
        return proc.stdout.strip()

    def domstate(self, dom: str) -> str:
        """``virsh domstate``: running, paused or shutoff (virsh says "shut off")."""
        return self.virsh('domstate', dom).stdout.strip().replace('shut off', 'shutoff')

    def blklist(self, dom: str) -> dict[str, str]:
        """``virsh domblklist``: target -> source file."""
        lines = self.virsh('domblklist', dom).stdout.splitlines()[2:]
        return dict(line.split(None, 1) for line in lines if line.strip())

    def domain_names(self) -> list[str]:
        return sorted(line for line in self.virsh('list', '--all', '--name').stdout.splitlines() if line)

    # qemu-img / qemu-io

    @staticmethod
    def qemu_img_snapshots(path: str) -> list[str]:
        """Tags listed by ``qemu-img snapshot -l -U PATH`` (our test names hold no blanks)."""
        out = run(['qemu-img', 'snapshot', '-l', '-U', path]).stdout
        tags = []
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0].isdigit():
                tags.append(words[1])
        return sorted(tags)

    @staticmethod
    def qemu_img_check(path: str, in_use: bool = False) -> str:
        """``qemu-img check -U PATH`` must find no corruption; returns its output.

        A running QEMU keeps refcount updates in its cache, so an image in use
        may show leaked clusters (exit code 3: "no harm to data"); only an image
        nobody has open must be spotless.
        """
        proc = run(['qemu-img', 'check', '-U', path], check=False)
        output = proc.stdout + proc.stderr
        if in_use and proc.returncode == 3:
            assert 'leaked clusters were found' in output and 'ERROR' not in output, output
        else:
            assert proc.returncode == 0 and 'No errors were found' in output, output
        return output

    @staticmethod
    def image_info(path: str) -> dict[str, t.Any]:
        """``qemu-img info --output=json -U PATH``."""
        return json.loads(run(['qemu-img', 'info', '--output=json', '-U', path]).stdout)

    @staticmethod
    def write_pattern(path: str, pattern: int) -> None:
        """Write 64 KiB of ``pattern`` at offset 0 of a qcow2 image nobody has open (shut-off domain)."""
        run(['qemu-io', '-f', 'qcow2', '-c', f'write -P {pattern:#x} 0 64k', path])

    @staticmethod
    def has_pattern(path: str, pattern: int) -> bool:
        """Whether the first 64 KiB of the image read back as ``pattern`` (shared read, works while it runs)."""
        proc = run(['qemu-io', '-U', '-r', '-f', 'qcow2', '-c', f'read -P {pattern:#x} 0 64k', path], check=False)
        output = proc.stdout + proc.stderr
        assert 'read 65536/65536 bytes' in output, output  # the read itself worked
        return proc.returncode == 0 and 'Pattern verification failed' not in output

    @staticmethod
    def mode(path: str) -> int:
        return os.stat(path).st_mode & 0o777


def write_inventory(directory: t.Any, hosts: dict[str, dict[str, t.Any]]) -> str:
    """An inventory file of local-connection hosts with their variables; returns its path.

    One host per domain lets one ansible-playbook run handle several domains in
    parallel (Ansible's forks), which is much quicker than one run per domain.
    """
    inventory = {'all': {'hosts': {name: dict(hostvars, ansible_connection='local')
                                   for name, hostvars in hosts.items()}}}
    path = os.path.join(str(directory), f'inventory-{len(os.listdir(str(directory)))}.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(inventory, handle)
    return path


@pytest.fixture
def independent(lab: t.Any) -> Independent:
    return Independent(lab)


@pytest.fixture
def blank(lab: t.Any) -> t.Iterator[t.Callable[..., str]]:
    """blank(name, **lab.blank_domain options) -> full name; the domains are removed after the test."""
    made: list[str] = []

    def make(name: str, **options: t.Any) -> str:
        full = lab.blank_domain(name, **options)
        made.append(full)
        return full

    yield make
    for dom in made:
        lab.remove(dom)


# One real Debian guest for the whole session: booting one costs 20-90 s of a 2-core machine.
# test_disaster.py and test_modules_quiesce.py use it in turn; each leaves it as it found it
# (running, no snapshots, its own disk), and the fixture makes a new one when it is not.
_SHARED_GUEST: dict[str, t.Any] = {'name': None, 'made': 0}


def _guest_fit(lab: t.Any, name: str) -> bool:
    try:
        if lab.state(name) != 'running' or Independent(lab).snapshot_names(name):
            return False
        disk = f'{lab.run_dir}/{name}.vda.qcow2'
        if Independent(lab).blklist(name) != {'vda': disk}:
            return False
        lab.wait_agent(name, timeout=30)
        return lab.guest_exec(name, ['/usr/bin/true'], timeout=30)[0] == 0
    except Exception:  # noqa: BLE001  (any doubt: boot a new one)
        return False


@pytest.fixture
def guest(lab: t.Any) -> str:
    """A running Debian guest whose agent answers, with no snapshots (shared; removed with the lab)."""
    name = _SHARED_GUEST['name']
    if name is not None and not _guest_fit(lab, name):
        lab.remove(name)
        name = None
    if name is None:
        _SHARED_GUEST['made'] += 1
        name = lab.guest_domain(f'guest-{_SHARED_GUEST["made"]}')
        lab.wait_agent(name, timeout=600)
        # let the boot finish (mounts, journald) so that it does not race the test
        lab.guest_exec(name, ['/usr/bin/systemctl', 'is-system-running', '--wait'], timeout=300)
        _SHARED_GUEST['name'] = name
    return name
