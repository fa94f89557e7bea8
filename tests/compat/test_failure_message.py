# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A module's failure, as ansible-playbook shows it, is its plain message on every ansible-core the collection
supports (tests/compat/run.sh runs this with 2.16 and the newest release; the unit stage's Python has 2.19).

ansible-core before 2.19 prints any ``exception`` of a failed result as "An exception occurred during task
execution. To see the full traceback, use -vvv. The error was: ...SnapshotError: ..." above the message,
whatever the verbosity. Each module runs for real here, through ansible-playbook and the default callback,
against libvirt's test driver (test:///default, in the module's own process) with a domain that does not
exist, and against a socket that does not exist (a libvirt error while connecting).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import sysconfig

import ansible
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = os.path.join(sysconfig.get_path('scripts'), 'ansible-playbook')
MISSING = 'ks-compat-missing'
NO_SOCKET = 'qemu+unix:///system?socket=/nonexistent/ks-compat/libvirt-sock'

# module, its arguments: each fails on its first libvirt call with both URIs
TASKS = [
    ('snapshot', {'domain': MISSING, 'name': 'before'}),
    ('snapshot_info', {'domain': MISSING}),
    ('snapshot_revert', {'domain': MISSING, 'name': 'before'}),
    ('snapshot_prune', {'domain': MISSING, 'match': 'nightly-*', 'keep_last': 1}),
    ('guest_agent', {'domain': MISSING, 'command': {'execute': 'guest-ping'}}),
]

# what a traceback or an exception shown as such would leave in the output
EXCEPTION_TEXTS = ('An exception occurred', 'Traceback', 'The error was', 'SnapshotError', 'libvirtError',
                   'To see the full traceback')


def run_failing_tasks(tmp_path: pathlib.Path, uri: str) -> tuple[str, list[dict]]:
    """Run every module of TASKS with ``uri`` in one play (ignore_errors); return the output and the results
    of the "fatal: ... FAILED! => {...}" lines of the default callback, in task order."""
    colls = tmp_path / 'collections' / 'ansible_collections' / 'kvm'
    colls.mkdir(parents=True)
    (colls / 'snapshots').symlink_to(REPO)
    tasks = [{'name': f'{module} fails', f'kvm.snapshots.{module}': dict(args, uri=uri), 'ignore_errors': True}
             for module, args in TASKS]
    playbook = tmp_path / 'fail.yml'
    playbook.write_text(json.dumps([{'name': 'Failures', 'hosts': 'localhost', 'gather_facts': False,
                                     'tasks': tasks}]))
    (tmp_path / 'ansible.cfg').write_text('[defaults]\n')  # no configuration of the machine or the user
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(tmp_path / 'collections'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='default', ANSIBLE_LOAD_CALLBACK_PLUGINS='0', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_CONFIG=str(tmp_path / 'ansible.cfg'))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-c', 'local', str(playbook),
                           '-e', f'ansible_python_interpreter={sys.executable}'],
                          env=env, cwd=str(tmp_path), capture_output=True, text=True, timeout=300, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output  # every failure ignored
    results = [json.loads(line.split(' => ', 1)[1]) for line in proc.stdout.splitlines()
               if line.startswith('fatal: [localhost]: FAILED! => ')]
    assert len(results) == len(TASKS), output
    return output, results


@pytest.mark.parametrize('uri, expected', [
    ('test:///default', f'Domain "{MISSING}" does not exist on test:///default'),
    (NO_SOCKET, '/nonexistent/ks-compat/libvirt-sock'),
], ids=['missing-domain', 'no-socket'])
def test_a_failure_is_a_plain_message(tmp_path: pathlib.Path, uri: str, expected: str) -> None:
    output, results = run_failing_tasks(tmp_path, uri)
    for (module, _args), result in zip(TASKS, results):
        assert expected in result['msg'], (module, ansible.__version__, result)
        assert 'exception' not in result, (module, ansible.__version__, result)
    for text in EXCEPTION_TEXTS:
        assert text not in output, (text, ansible.__version__, output)
