# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tier: the real modules, run by ansible-playbook, against the real libvirtd of the lab.

Each test makes its domains with the lab (names carry the run's prefix),
runs one of the playbooks in targets/ with those names as extra vars, and
checks the outcome with independent clients (virsh, qemu-img) besides the
assertions inside the playbook. Everything the lab made is removed at the
end of the session, also when a test fails.

The stack the tests run against is chosen by the environment variable
``KSLAB_STACK``: ``bookworm`` (the default: this machine's libvirtd, Debian 12's
libvirt 9.0) or ``trixie`` (Debian 13's libvirt 11.3 in the lab's chroot, reached
by a ``qemu+unix`` URI; ``python3 tests/lab/lab.py stack`` brings it up). ``STACK``
and ``URI`` are that stack and its URI; ``LIBVIRT_VERSION`` is its libvirtd's
version, for tests whose expectation depends on it (the ``libvirt`` mark).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import typing as t

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGETS = pathlib.Path(__file__).resolve().parent / 'targets'
# the ansible-playbook installed beside this Python (pip's console script), else the one on PATH
ANSIBLE_PLAYBOOK = str(pathlib.Path(sys.executable).with_name('ansible-playbook')) \
    if pathlib.Path(sys.executable).with_name('ansible-playbook').exists() else 'ansible-playbook'

sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py, the disposable lab)
# the fixtures of the fault tests (test_faults_*.py): module runs, domains, a private libvirtd, a small file system
from fault_fixtures import module, private_blob, private_libvirtd, ram_blob, small_fs, system  # noqa: E402,F401  # pylint: disable=unused-import

#: the lab stack of this run (KSLAB_STACK) and the URI of its libvirtd
STACK = lab_tool.stack()
URI = STACK.uri


def _libvirt_version() -> tuple[int, int, int]:
    if not lab_tool.libvirt_answers(URI):
        pytest.exit(f'KSLAB_STACK={STACK.name}: nothing answers at {URI} '
                    f'(bring the lab up: python3 tests/lab/lab.py {"up" if STACK.root is None else "stack"})',
                    returncode=3)
    return lab_tool.libvirt_version(URI)


#: (major, minor, micro) of the stack's libvirtd, read once per session
LIBVIRT_VERSION: tuple[int, int, int] = (0, 0, 0)


def pytest_sessionstart(session: pytest.Session) -> None:  # pylint: disable=unused-argument
    global LIBVIRT_VERSION  # pylint: disable=global-statement
    LIBVIRT_VERSION = _libvirt_version()


def pytest_report_header() -> str:
    return f'kslab stack: {STACK.name}, {URI}, libvirt {".".join(map(str, LIBVIRT_VERSION))}'


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        'markers', 'libvirt(below=None, at_least=None, reason=""): the expectation of this test holds only for '
                   'those libvirt versions of the stack (e.g. below=(9, 9)); skipped on the others, saying why')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The fault tests drive this machine's own libvirtd (its pids, a private libvirtd beside it): bookworm only."""
    if STACK.root is None:
        return
    for item in items:
        if item.path.name.startswith('test_faults_'):
            item.add_marker(pytest.mark.skip(reason=f'the fault tests run on the host\'s stack, not {STACK.name}'))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test marked ``libvirt(below=(9, 9), reason=...)`` (or ``at_least=``) on a stack outside that range."""
    for mark in item.iter_markers('libvirt'):
        below, at_least = mark.kwargs.get('below'), mark.kwargs.get('at_least')
        reason = mark.kwargs.get('reason', '')
        shown = '.'.join(map(str, LIBVIRT_VERSION))
        if below is not None and LIBVIRT_VERSION[:2] >= tuple(below):
            pytest.skip(f'expects libvirt < {below[0]}.{below[1]} ({reason}); stack {STACK.name} has {shown}')
        if at_least is not None and LIBVIRT_VERSION[:2] < tuple(at_least):
            pytest.skip(f'expects libvirt >= {at_least[0]}.{at_least[1]} ({reason}); stack {STACK.name} has {shown}')


@pytest.fixture(scope='session')
def lab() -> t.Iterator[t.Any]:
    """The lab on this run's stack (KSLAB_STACK); everything made here removed at the end."""
    the_lab = lab_tool.Lab(stack=STACK)
    try:
        yield the_lab
    finally:
        the_lab.cleanup()


@pytest.fixture(scope='session')
def collections_path() -> t.Iterator[pathlib.Path]:
    """A collections path in which kvm.snapshots is this working tree."""
    root = pathlib.Path(tempfile.mkdtemp(prefix='kvm-snapshots-collections-'))
    target = root / 'ansible_collections' / 'kvm'
    target.mkdir(parents=True)
    (target / 'snapshots').symlink_to(REPO)
    yield root
    shutil.rmtree(root)


class PlaybookRun:
    """The outcome of one ansible-playbook run."""

    def __init__(self, proc: subprocess.CompletedProcess, argv: list[str]) -> None:
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.argv = argv

    def __repr__(self) -> str:
        return (f'<ansible-playbook rc={self.rc}>\n$ {" ".join(self.argv)}\n--- stdout ---\n{self.stdout[-12000:]}'
                f'\n--- stderr ---\n{self.stderr[-4000:]}')

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host."""
        hosts: dict[str, dict[str, int]] = {}
        in_recap = False
        for line in self.stdout.splitlines():
            if line.startswith('PLAY RECAP'):
                in_recap = True
                continue
            if in_recap and ':' in line and '=' in line:
                host, counters = line.split(':', 1)
                hosts[host.strip()] = {k: int(v) for k, v in (c.split('=') for c in counters.split())}
        return hosts


@pytest.fixture(scope='session')
def ansible_env(collections_path: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        'ANSIBLE_COLLECTIONS_PATH': str(collections_path),
        'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
        'ANSIBLE_HOST_KEY_CHECKING': 'false',
        'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_FORCE_COLOR': '0',
        'ANSIBLE_DEPRECATION_WARNINGS': 'false',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
        'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
        'ANSIBLE_ROLES_PATH': str(REPO / 'roles'),
    })
    return env


@pytest.fixture
def run_playbook(ansible_env: dict[str, str], tmp_path: pathlib.Path) -> t.Callable[..., PlaybookRun]:
    """run_playbook(playbook, extra_vars={}, check=False, diff=False, inventory=None, expect_rc=0, args=(),
    timeout=900, env=None, kvm_uri=URI).

    ``playbook`` is a file name under tests/integration/targets/ or a path.
    ``inventory`` defaults to localhost with the local connection and this Python
    (which has libvirt-python). ``env`` replaces the environment of ansible_env;
    ``kvm_uri`` is passed as an extra variable unless None (the inventory or the
    roles choose it then). Fails the test, with the whole output, when the
    return code is not ``expect_rc`` (None: any).
    """

    def run(playbook: str | os.PathLike, extra_vars: dict[str, t.Any] | None = None, check: bool = False,
            diff: bool = False, inventory: str | None = None, expect_rc: int | None = 0,
            args: t.Sequence[str] = (), timeout: int = 900, env: dict[str, str] | None = None,
            kvm_uri: str | None = URI) -> PlaybookRun:
        path = pathlib.Path(playbook)
        if not path.is_absolute():
            path = TARGETS / path
        vars_file = tmp_path / f'vars-{len(list(tmp_path.iterdir()))}.json'
        uri_var = {'kvm_uri': kvm_uri} if kvm_uri is not None else {}
        vars_file.write_text(json.dumps(dict(uri_var, **(extra_vars or {}))))
        argv = [ANSIBLE_PLAYBOOK, str(path), '-e', f'@{vars_file}']
        if inventory is None:
            argv += ['-i', 'localhost,', '-c', 'local']
        else:
            argv += ['-i', inventory]
        if check:
            argv.append('--check')
        if diff:
            argv.append('--diff')
        argv += list(args)
        proc = subprocess.run(argv, env=ansible_env if env is None else env, cwd=str(REPO), capture_output=True,
                              text=True, timeout=timeout, check=False)
        result = PlaybookRun(proc, argv)
        if expect_rc is not None:
            assert result.rc == expect_rc, repr(result)
        return result

    return run
