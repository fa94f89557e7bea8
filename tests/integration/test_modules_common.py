# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared helpers of the integration tests (this file holds no tests).

``Independent`` (tests/lab/kslab/probes.py, the one set of probes of every
test) reads the outcome of a test with clients other than the collection's own
modules: ``virsh``, ``qemu-img`` and ``qemu-io``. The fixtures ``independent``,
``blank`` (tiny OS-less domains, removed after each test) and ``guest`` (one real Debian guest shared by the
session) are imported by the test files that use them.
"""

from __future__ import annotations

import json
import os
import typing as t

import pytest

# the one set of probes (run: for the files that import it from here)
from kslab.probes import Independent, run  # noqa: F401  # pylint: disable=unused-import


def snapshot_names(lab: t.Any, domain: str) -> set[str]:
    """The snapshot names of a domain, as ``virsh snapshot-list --name`` gives them (a set)."""
    return {name.strip() for name in Independent(lab).snapshot_names(domain) if name.strip()}


def current_snapshot(lab: t.Any, domain: str) -> str:
    """``virsh snapshot-current --name``: the current snapshot of a domain."""
    return Independent(lab).virsh('snapshot-current', domain, '--name').stdout.strip()


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
