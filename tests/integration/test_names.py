# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Generated snapshot names on real libvirt and QEMU: taken, listed, reverted, deleted and pruned on a running
and a shut-off blank domain, with libvirt's list (virsh snapshot-list --name) and the image's own (qemu-img
info -U, the table QEMU's "info snapshots" shows) compared after every step.

The names mix quotes, backslashes, spaces, digits, non-ASCII letters and emoji, and lengths around libvirt's
limit of 247 UTF-8 bytes. What the collection promises:

* a name over the limit is refused on every domain, before anything is made;
* a name QEMU would misread is refused wherever libvirt would hand it to QEMU's monitor (taking, deleting or
  pruning an internal snapshot of a running domain), before anything is made or deleted, and works with the
  domain shut off: a name with " or \\ on libvirt before 10.9 (the monitor's savevm "NAME"), any name with
  more than letters, digits, '.', '-' and '_' from 10.9 on (a QMP job id made of the name);
* everything else works everywhere, and libvirt and the image always agree.
"""

from __future__ import annotations

import json
import random
import re
import typing as t

import pytest

import lab as lab_tool  # tests/lab/lab.py (conftest puts it on the path)

# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import blank, independent  # noqa: F401  # pylint: disable=unused-import
from test_modules_common import run

LIMIT = 247  # bytes: libvirt's <name>.xml.new under NAME_MAX
MONITOR = ('"', '\\')


def generated_names(seed: int = 11, count: int = 3) -> list[str]:
    """Fixed hostile names, then ``count`` random ones drawn from quotes, backslashes, blanks, digits and
    non-ASCII letters (the same on every run: a fixed seed). No "{", which Ansible would template."""
    names = [
        "it's", 'say "hi"', 'back\\slash', 'x\\', 'x\\\\', ' lead and trail ', 'ünïcødé-名前', '\U0001f600 emoji',
        '7', 'semi;colon,comma#%$', 'plain-name_1.0', 'UPPER.lower-9',  # QMP job id characters only
        'a' * LIMIT, '\u00e9' * 123 + 'c',   # exactly at the limit (ASCII, two-byte letters)
        'b' * (LIMIT + 1), '\u00e9' * 124,   # one byte over
    ]
    alphabet = 'abcXYZ019 -_.,;:\'"\\\u00e9\u00fc\u540d\U0001f600'
    rnd = random.Random(seed)
    fixed = len(names)
    while len(names) < fixed + count:
        name = ''.join(rnd.choice(alphabet) for _index in range(rnd.randint(1, 24)))
        if name.strip() and not name.startswith('.') and name not in names:
            names.append(name)
    return names


def refused(result: dict[str, t.Any]) -> bool:
    """Whether the module failed (failed_when: false turns "failed" off; a failure still has its msg)."""
    return bool(result.get('msg'))


def too_long(name: str) -> bool:
    return len(name.encode('utf-8')) > LIMIT


def monitor_unsafe(name: str, qmp_jobs: bool) -> bool:
    """Whether the QEMU of a running domain would misread (libvirt < 10.9) or refuse (>= 10.9) the name."""
    if qmp_jobs:
        return not re.fullmatch(r'[A-Za-z0-9._-]*', name)
    return any(c in name for c in MONITOR)


class Step:
    """Runs one step of names_generated.yml and compares libvirt with the images afterwards."""

    def __init__(self, run_playbook: t.Callable[..., t.Any], independent: t.Any, tmp_path: t.Any,
                 disks: dict[str, str]) -> None:
        self.run_playbook = run_playbook
        self.independent = independent
        self.out = tmp_path / 'results.json'
        self.disks = disks

    def __call__(self, step: str, ops: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
        self.run_playbook('names_generated.yml', {'step': step, 'ops': ops, 'out': str(self.out)})
        results = json.loads(self.out.read_text())
        assert len(results) == len(ops), results
        for result in results:
            assert 'Traceback' not in result.get('msg', ''), result
            assert 'MODULE FAILURE' not in result.get('msg', ''), result
        self.agree()
        return results

    def names(self, dom: str) -> list[str]:
        return self.names_of(self.independent, dom)

    @staticmethod
    def names_of(independent: t.Any, dom: str) -> list[str]:
        """``virsh snapshot-list --name``: one name a line, exactly as stored (blanks kept), sorted."""
        return sorted(n for n in independent.virsh('snapshot-list', dom, '--name').stdout.split('\n') if n)

    def agree(self) -> None:
        """libvirt lists exactly the internal snapshots the image holds, on every domain."""
        for dom, disk in self.disks.items():
            listed = self.names(dom)
            info = json.loads(run(['qemu-img', 'info', '-U', '--output=json', disk]).stdout)
            held = sorted(s['name'] for s in info.get('snapshots', []))
            assert listed == held, (dom, listed, held)


def check_created(name: str, result: dict[str, t.Any], on_running: bool, qmp_jobs: bool) -> None:
    if on_running and monitor_unsafe(name, qmp_jobs):
        why = 'runs it as a QEMU job named after the snapshot' if qmp_jobs else "QEMU's monitor without escaping it"
        assert refused(result) and why in result['msg'], result
        assert 'Nothing was changed' in result['msg'], result
    else:
        assert not refused(result) and result['changed'], result


def current(independent: t.Any, dom: str) -> str:
    """``virsh snapshot-current --name``, blanks kept."""
    return independent.virsh('snapshot-current', dom, '--name').stdout[:-1]


def test_generated_names_on_running_and_shut_off_domains(blank, independent, run_playbook, tmp_path):
    names = generated_names()
    qmp_jobs = lab_tool.libvirt_version(independent.lab.uri) >= (10, 9, 0)
    running = blank('names-running')
    shutoff = blank('names-shutoff', state='shutoff')
    disks = {d: independent.lab.disk_paths(d)[0] for d in (running, shutoff)}
    step = Step(run_playbook, independent, tmp_path, disks)

    # take every name on both domains (batch mode: one run a name)
    results = step('create', [{'domains': [running, shutoff], 'name': n} for n in names])
    for name, batch in zip(names, results):
        if too_long(name):  # refused before any domain is looked at
            assert refused(batch) and f'limits names to {LIMIT} bytes' in batch['msg'], batch
            assert 'Nothing was changed' in batch['msg'] and 'results' not in batch, batch
            continue
        assert [r['domain'] for r in batch['results']] == [running, shutoff], batch
        for result in batch['results']:
            check_created(name, result, result['domain'] == running, qmp_jobs)
    made_running = sorted(n for n in names if not too_long(n) and not monitor_unsafe(n, qmp_jobs))
    made_shutoff = sorted(n for n in names if not too_long(n))
    assert step.names(running) == made_running
    assert step.names(shutoff) == made_shutoff

    # list: snapshot_info finds libvirt and the images in agreement
    results = step('info', [{'domain': running}, {'domain': shutoff}])
    for result, made in zip(results, (made_running, made_shutoff)):
        assert sorted(s['name'] for s in result['snapshots']) == made
        assert all(s['consistent'] is True for s in result['snapshots']), result['snapshots']
        assert list(result['domains'].values())[0]['image_only'] == []

    # revert: the running domain to a snapshot with memory (loadvm), the shut-off one to a " name (qemu-img)
    quoted = next(n for n in made_shutoff if '"' in n)
    results = step('revert', [{'domain': running, 'name': '7'}, {'domain': shutoff, 'name': quoted}])
    assert not any(refused(r) for r in results), results
    assert current(independent, running) == '7' and current(independent, shutoff) == quoted
    assert independent.domstate(running) == 'running' and independent.domstate(shutoff) == 'shutoff'

    # start the shut-off domain: its " and \ names can no longer be deleted (delvm), the others can
    independent.virsh('start', shutoff)
    unsafe = [n for n in made_shutoff if monitor_unsafe(n, qmp_jobs)]
    safe = [n for n in made_shutoff if not monitor_unsafe(n, qmp_jobs)]
    ops = [{'domain': shutoff, 'name': n, 'state': 'absent'} for n in unsafe + safe[:2]]
    ops += [{'domain': running, 'name': n, 'state': 'absent'} for n in made_running[:2]]
    results = step('delete', ops)
    for op, result in zip(ops, results):
        if op['domain'] == shutoff and monitor_unsafe(op['name'], qmp_jobs):
            assert refused(result) and 'Shut the domain off and delete it then' in result['msg'], result
        else:
            assert not refused(result) and result['deleted'] == [op['name']], result
    assert step.names(shutoff) == sorted(unsafe + safe[2:])
    assert step.names(running) == made_running[2:]

    # prune while it runs: refused as a whole, nothing deleted
    results = step('prune', [{'domain': shutoff, 'match': '*', 'keep_last': 0}])
    assert refused(results[0]) and 'or narrow match' in results[0]['msg'] and results[0]['deleted'] == []
    assert step.names(shutoff) == sorted(unsafe + safe[2:])

    # a revert of the running domain to a snapshot without memory under a " name works: libvirt stops QEMU and
    # runs qemu-img (no monitor); the domain is shut off afterwards, as the snapshot was
    results = step('revert', [{'domain': shutoff, 'name': quoted}])
    assert not refused(results[0]), results
    assert current(independent, shutoff) == quoted and independent.domstate(shutoff) == 'shutoff'

    # shut off, the prune deletes them all; the running domain keeps its newest one
    results = step('prune', [{'domain': shutoff, 'match': '*', 'keep_last': 0},
                             {'domain': running, 'match': '*', 'keep_last': 1}])
    assert not any(refused(r) for r in results), results
    assert step.names(shutoff) == []
    assert len(step.names(running)) == 1
    independent.qemu_img_check(disks[shutoff])


@pytest.mark.libvirt(below=(10, 9), reason='from 10.9 libvirt refuses such a name (a QMP job id) instead of mixing it up')
def test_info_flags_a_record_without_data(blank, independent, run_playbook, tmp_path):
    """The mix-up of issue 11, made with virsh (which hands the name to QEMU's delvm unescaped): snapshot_info
    flags the libvirt record whose data is gone and the image snapshot libvirt no longer lists."""
    dom = blank('names-mixup', state='shutoff')
    disk = independent.lab.disk_paths(dom)[0]
    for name in ('x\\', 'x\\\\', 'fine'):
        independent.virsh('snapshot-create-as', dom, name)
    independent.virsh('start', dom)
    independent.virsh('snapshot-delete', dom, 'x\\\\')  # QEMU deletes x\ instead
    assert Step.names_of(independent, dom) == ['fine', 'x\\']
    held = sorted(s['name'] for s in json.loads(run(['qemu-img', 'info', '-U', '--output=json', disk]).stdout)
                  ['snapshots'])
    assert held == ['fine', 'x\\\\']

    out = tmp_path / 'results.json'
    played = run_playbook('names_generated.yml', {'step': 'info', 'ops': [{'domain': dom}], 'out': str(out)})
    info = json.loads(out.read_text())[0]
    consistent = {s['name']: s['consistent'] for s in info['snapshots']}
    assert consistent == {'fine': True, 'x\\': False}, consistent
    assert info['domains'][dom]['image_only'] == ['x\\\\']
    said = played.stdout + played.stderr  # Ansible prints warnings on stderr
    assert 'do not hold it' in said and 'that libvirt does not list' in said, said
