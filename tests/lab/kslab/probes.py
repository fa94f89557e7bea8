# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one set of independent probes of the tests: ``virsh``, ``qemu-img`` and ``qemu-io``.

What a test checks after a module ran, it reads with these clients, never with the collection's own code.
``Independent(lab)`` probes the libvirtd of a lab (``lab.uri``), ``Independent(uri=URI)`` any other one (the
fault tests' private libvirtd). Every probe asserts that its client succeeded, with the client's output.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import typing as t
import xml.etree.ElementTree as ET


def run(argv: list[str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run argv (text output captured); with check, assert that it exited 0."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f'{argv}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}'
    return proc


class Independent:
    """virsh, qemu-img and qemu-io, for checking what the modules did."""

    def __init__(self, lab: t.Any = None, uri: str | None = None) -> None:
        self.lab = lab
        self.uri = uri or lab.uri

    # virsh

    def virsh(self, *args: t.Any, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(['virsh', '-c', self.uri, *(str(a) for a in args)], check=check, timeout=timeout)

    def snapshot_names(self, dom: str) -> list[str]:
        """``virsh snapshot-list DOM --name``, sorted (one name a line, whatever it holds)."""
        return sorted(line for line in self.virsh('snapshot-list', dom, '--name').stdout.split('\n') if line)

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

    def domstate_reason(self, dom: str) -> str:
        """``virsh domstate --reason``: 'running (unpaused)', 'paused (saving)', ..."""
        return self.virsh('domstate', dom, '--reason').stdout.strip()

    def blklist(self, dom: str) -> dict[str, str]:
        """``virsh domblklist``: target -> source file."""
        lines = self.virsh('domblklist', dom).stdout.splitlines()[2:]
        return dict(line.split(None, 1) for line in lines if line.strip())

    def domain_names(self) -> list[str]:
        return sorted(line for line in self.virsh('list', '--all', '--name').stdout.splitlines() if line)

    # qemu-img / qemu-io

    @staticmethod
    def qemu_img_snapshots(path: str) -> list[str]:
        """The internal snapshots of a qcow2 image, sorted, exactly as stored (``qemu-img info -U``, JSON)."""
        return sorted(s['name'] for s in Independent.image_info(path).get('snapshots', []))

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
    def has_pattern(path: str, pattern: int, length: str = '64k') -> bool:
        """Whether the first ``length`` bytes of the image read back as ``pattern`` (shared read, works while
        it runs)."""
        proc = run(['qemu-io', '-U', '-r', '-f', 'qcow2', '-c', f'read -P {pattern:#x} 0 {length}', path],
                   check=False)
        output = proc.stdout + proc.stderr
        assert re.search(r'read (\d+)/\1 bytes', output), output  # the read itself worked
        return proc.returncode == 0 and 'Pattern verification failed' not in output

    @staticmethod
    def mode(path: str) -> int:
        return os.stat(path).st_mode & 0o777
