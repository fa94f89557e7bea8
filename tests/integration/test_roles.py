# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Integration tier for the roles and the playbooks: a small fleet of real Debian guests.

The guests are inventory hosts with the local connection whose hypervisor is ``localhost``; the lab
guests have no network, so the change of the test acts inside them through the guest agent
(targets/roles_fleet/change.yml). Results are checked from inside the guests (lab.guest_exec) and
with virsh and qemu-img, besides the play's own checks. (ansible-lint is tests/run.sh's lint stage.)
"""

from __future__ import annotations

import base64
import json
import pathlib
import shutil
import sys
import threading
import time
import typing as t
import xml.etree.ElementTree as ET

import pytest

import lab as lab_tool  # tests/lab/lab.py (conftest puts it on the path)
from test_modules_common import current_snapshot, snapshot_names

REPO = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / 'playbooks'
FLEET = pathlib.Path(__file__).resolve().parent / 'targets' / 'roles_fleet'


def write_inventory(path: pathlib.Path, guests: dict[str, dict[str, t.Any]]) -> str:
    """An inventory of guests (name -> host vars, with kvm_domain) whose hypervisor is localhost."""
    local = {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}
    inventory = {'all': {'children': {
        'hypervisors': {'hosts': {'localhost': local}},
        'kvm_guests': {'hosts': guests, 'vars': dict(local, kvm_hypervisor='localhost')},
    }}}
    path.write_text(json.dumps(inventory, indent=2))  # JSON is YAML
    return str(path)


def in_guest(lab: t.Any, domain: str, *argv: str) -> tuple[int, str, str]:
    return lab.guest_exec(domain, list(argv), timeout=60)


def reverts_external(lab: t.Any) -> bool:
    """libvirt 9.9 or later: external snapshots can be reverted, so pre_change takes disk-only ones where the agent
    answers (the trixie stack, UEFI guests); before (bookworm, BIOS guests) it takes internal ones with memory."""
    return lab_tool.libvirt_version(lab.uri) >= (9, 9, 0)


def kind(lab: t.Any, domain: str, name: str) -> tuple[str, str]:
    """(location, memory) of a snapshot, read from virsh snapshot-dumpxml: internal/external, and the memory's."""
    cp = lab.virsh('snapshot-dumpxml', domain, name)
    assert cp.returncode == 0, cp.stderr
    root = ET.fromstring(cp.stdout)
    memory = root.find('memory')
    if memory is not None:
        mem = memory.get('snapshot')
    else:
        mem = 'no' if root.findtext('state') == 'disk-snapshot' else 'internal'
    disks = [d.get('snapshot') for d in root.findall('disks/disk') if d.get('snapshot') != 'no']
    return ('external' if 'external' in disks or mem == 'external' else 'internal'), mem


def revert_by_hand(lab: t.Any, domain: str, name: str) -> None:
    """virsh snapshot-revert to ``name``, running, and wait for the agent: a disk-only snapshot reverts to a shut-off
    domain, which virsh start then boots from its disks."""
    disk_only = kind(lab, domain, name)[1] == 'no'
    cp = lab.virsh('snapshot-revert', domain, name, *([] if disk_only else ['--running']))
    assert cp.returncode == 0, cp.stderr
    if disk_only:
        assert lab.state(domain) == 'shutoff'
        assert lab.virsh('start', domain).returncode == 0
    lab.wait_agent(domain, timeout=300)


@pytest.fixture
def fleet(lab: t.Any) -> t.Iterator[dict[str, str]]:
    """Three real guests, booted together, with a working guest agent: inventory name -> domain. Removed after the
    test, so that the guests of the later tests never run beside them (at most three guests at once)."""
    domains = {name: lab.guest_domain(name, memory_mib=384) for name in ('g1', 'g2', 'g3')}
    try:
        for domain in domains.values():
            lab.wait_agent(domain, timeout=300)
        yield domains
    finally:
        for domain in domains.values():
            lab.remove(domain)


@pytest.fixture(scope='module')
def solo(lab: t.Any) -> str:
    """One real guest with a working guest agent, for the scenarios below (each leaves it without snapshots)."""
    domain = lab.guest_domain('solo', memory_mib=384)
    lab.wait_agent(domain, timeout=300)
    return domain


def test_guarded_change_rolls_back_only_the_broken_guest(lab, fleet, run_playbook, tmp_path):
    """g1 is the canary, then g2 and g3 together; the change breaks g2 (rm -rf /usr/bin/* inside it).

    Decided behaviour: the failed guest makes ansible-playbook exit 2 (it is rescued, rolled back, then
    failed at the end of its batch); after its rollback its pre-change snapshot is kept (the known good
    state, current snapshot) next to the safety snapshot of the broken state.
    """
    inventory = write_inventory(tmp_path / 'fleet.yml', {name: {'kvm_domain': dom} for name, dom in fleet.items()})
    disks_before = {dom: lab.disk_paths(dom) for dom in fleet.values()}
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2, extra_vars={
        'kvm_change_tasks': str(FLEET / 'change.yml'),
        'kvm_change_id': 'fleet1',
        'roles_break': 'g2',
        'kvm_serial': [1, '100%'],
        'kvm_snapshot_jobs': 2,
        'kvm_answer_agent': True,
        'rollback_check_command': ['/usr/bin/ls', '/usr/bin'],
        'rollback_wait_timeout': 300,
    })
    recap = result.recap()
    assert recap['g2']['failed'] == 1 and recap['g2']['rescued'] == 1, result
    for name in ('g1', 'g3'):
        assert recap[name]['failed'] == 0 and recap[name]['rescued'] == 0 and recap[name]['unreachable'] == 0, result
    assert 'The change failed on g2' in result.stdout

    g1, g2, g3 = fleet['g1'], fleet['g2'], fleet['g3']
    external = reverts_external(lab)
    # the kind pre_change chose: disk-only (quiesced, the agent answers) where libvirt reverts it, else with memory
    assert kind(lab, g2, 'pre-change-fleet1') == (('external', 'no') if external else ('internal', 'internal'))
    assert ('disk-only (a rollback boots the guest from its disks)' if external else
            'with memory (a rollback brings the guest back as it was)') in result.stdout, result
    # the safety snapshot keeps the broken guest as it ran: with memory, of the domain's kind
    assert kind(lab, g2, 'rollback-safety-fleet1') == ((('external', 'external') if external
                                                        else ('internal', 'internal')))
    # g2: whole and running again (booted from its disks after a disk-only snapshot), its change undone
    assert lab.state(g2) == 'running'
    rc, out, _err = in_guest(lab, g2, '/usr/bin/ls', '/usr/bin')
    assert rc == 0 and 'ls' in out.split()
    assert in_guest(lab, g2, '/usr/bin/test', '-e', '/root/changed')[0] == 1
    assert snapshot_names(lab, g2) == {'pre-change-fleet1', 'rollback-safety-fleet1'}
    assert current_snapshot(lab, g2) == 'pre-change-fleet1'
    if not external:
        assert set(lab.qemu_img_snapshots(lab.disk_paths(g2)[0])) == {'pre-change-fleet1', 'rollback-safety-fleet1'}
    # g1 and g3: the change kept, no pre-change snapshot left (an external one merged back into the disk it was on)
    for dom in (g1, g3):
        assert lab.state(dom) == 'running'
        rc, out, _err = in_guest(lab, dom, '/usr/bin/cat', '/root/changed')
        assert (rc, out.strip()) == (0, 'fleet1')
        assert snapshot_names(lab, dom) == set()
        assert lab.disk_paths(dom) == disks_before[dom]
        assert lab.qemu_img_snapshots(lab.disk_paths(dom)[0]) == []

    # The safety snapshot holds the broken state: go there with virsh, look, and come back.
    revert_by_hand(lab, g2, 'rollback-safety-fleet1')
    assert in_guest(lab, g2, '/usr/bin/ls', '/usr/bin')[0] == 127
    revert_by_hand(lab, g2, 'pre-change-fleet1')
    assert in_guest(lab, g2, '/usr/bin/ls', '/usr/bin')[0] == 0


def test_single_steps_snapshot_rollback_twice_cleanup(lab, solo, run_playbook, tmp_path):
    """snapshot_now, break the guest, rollback_now twice (the second reverts again, keeping what it throws away), cleanup_now."""
    dom = solo
    inventory = write_inventory(tmp_path / 'one.yml', {'g3': {'kvm_domain': dom}})
    before = snapshot_names(lab, dom)

    external = reverts_external(lab)
    run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, extra_vars={'kvm_change_id': 'step1'})
    assert snapshot_names(lab, dom) == before | {'pre-change-step1'}
    # pre_change_disk_only=auto: disk-only where libvirt reverts it (the agent answers), else with memory
    assert kind(lab, dom, 'pre-change-step1') == (('external', 'no') if external else ('internal', 'internal'))
    # a second change is refused while step1's snapshot is there, and nothing is taken
    refused = run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, expect_rc=2,
                           extra_vars={'kvm_change_id': 'step2'})
    assert 'still has the pre-change snapshot(s) pre-change-step1' in refused.stdout
    assert snapshot_names(lab, dom) == before | {'pre-change-step1'}

    assert in_guest(lab, dom, '/bin/sh', '-c', 'rm -rf /usr/bin/*')[0] in (0, 1)
    assert in_guest(lab, dom, '/usr/bin/ls', '/')[0] == 127

    rollback_vars = {'kvm_change_id': 'step1', 'rollback_check_command': ['/usr/bin/ls', '/usr/bin'],
                     'rollback_wait_timeout': 300}
    first = run_playbook(PLAYBOOKS / 'rollback_now.yml', inventory=inventory, extra_vars=rollback_vars)
    assert first.recap()['g3']['changed'] >= 1
    assert 'reverted to pre-change-step1' in first.stdout
    assert in_guest(lab, dom, '/usr/bin/ls', '/usr/bin')[0] == 0
    assert snapshot_names(lab, dom) == before | {'pre-change-step1', 'rollback-safety-step1'}

    # a second run reverts again (the guest may have changed since the first: here it has), and keeps what it
    # throws away, the mark made after the first rollback, in a safety snapshot of its own
    assert in_guest(lab, dom, '/bin/sh', '-c', 'echo after > /root/after-rollback')[0] == 0
    second = run_playbook(PLAYBOOKS / 'rollback_now.yml', inventory=inventory, extra_vars=rollback_vars)
    assert second.recap()['g3']['changed'] >= 1, second
    assert 'reverted to pre-change-step1' in second.stdout and 'kept as rollback-safety-step1-2.' in second.stdout
    assert in_guest(lab, dom, '/usr/bin/test', '-e', '/root/after-rollback')[0] == 1
    assert lab.state(dom) == 'running'
    assert snapshot_names(lab, dom) == before | {'pre-change-step1', 'rollback-safety-step1', 'rollback-safety-step1-2'}
    assert current_snapshot(lab, dom) == 'pre-change-step1'

    # accept the change: only its pre-change snapshot goes (an external one with the safety snapshots below it is
    # kept, saying why: libvirt deletes it only after them); then prune everything the roles made, children first
    accepted = run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, extra_vars={'kvm_change_id': 'step1'})
    if external:
        assert 'Kept pre-change-step1 of' in accepted.stdout, accepted
        assert snapshot_names(lab, dom) == before | {'pre-change-step1', 'rollback-safety-step1',
                                                     'rollback-safety-step1-2'}
    else:
        assert snapshot_names(lab, dom) == before | {'rollback-safety-step1', 'rollback-safety-step1-2'}
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory)
    assert snapshot_names(lab, dom) == {n for n in before if not n.startswith(('pre-change-', 'rollback-safety-'))}
    assert lab.state(dom) == 'running' and in_guest(lab, dom, '/usr/bin/ls', '/usr/bin')[0] == 0


def test_unreachable_guest_is_rolled_back_and_soak_keeps_the_snapshot(lab, run_playbook, tmp_path):
    """u1 cannot be reached during its change: it is rolled back like a failed guest.

    s1's change works and it has a soak period (kvm_soak as a host var): its pre-change snapshot is kept
    until cleanup_now with kvm_older_than deletes it. A snapshot the roles did not make is never touched.
    """
    unreachable = lab.blank_domain('unreach', state='running')
    soaking = lab.blank_domain('soak', state='running')
    assert lab.virsh('snapshot-create-as', unreachable, 'not-ours').returncode == 0
    inventory = write_inventory(tmp_path / 'unreachable.yml', {
        'u1': {'kvm_domain': unreachable, 'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': 1},
        's1': {'kvm_domain': soaking, 'kvm_soak': '1d'},
    })
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2, extra_vars={
        'kvm_change_tasks': str(FLEET / 'unreachable.yml'), 'kvm_change_id': 'unreach1', 'kvm_serial': ['100%'],
        'kvm_answer_timeout': 5, 'rollback_wait_for': 'none'})
    recap = result.recap()
    assert recap['u1']['unreachable'] == 0 and recap['u1']['rescued'] == 1 and recap['u1']['failed'] == 1, result
    assert recap['s1']['failed'] == 0 and recap['s1']['rescued'] == 0, result
    assert 'The change failed on u1 (Check that Ansible still reaches the guest' in result.stdout
    assert 'pre-change-unreach1 is kept for the soak period of 1d' in result.stdout
    assert snapshot_names(lab, unreachable) == {'not-ours', 'pre-change-unreach1', 'rollback-safety-unreach1'}
    assert current_snapshot(lab, unreachable) == 'pre-change-unreach1'
    assert snapshot_names(lab, soaking) == {'pre-change-unreach1'}

    # the soak period is not over: nothing goes; once it is (1 s here), the roles' snapshots go, not the others
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, extra_vars={'kvm_older_than': '1d'})
    assert snapshot_names(lab, soaking) == {'pre-change-unreach1'}
    assert len(snapshot_names(lab, unreachable)) == 3
    time.sleep(1.5)
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, extra_vars={'kvm_older_than': '1s'})
    assert snapshot_names(lab, soaking) == set()
    assert snapshot_names(lab, unreachable) == {'not-ours'}


def test_preflight_refuses_before_changing_anything(lab, run_playbook, tmp_path):
    """A missing domain and a full disk each stop pre_change with a message; nothing is made. A raw disk gets what
    the snapshot module's check mode says: refused with its reason before libvirt 9.9 (no revertable kind), an
    external snapshot with memory from 9.9 on (the blank domain's agent channel has no agent: no disk-only one)."""
    raw = lab.blank_domain('rawdisk', state='running', disk_format='raw')
    small = lab.blank_domain('nospace', state='running')
    inventory = write_inventory(tmp_path / 'preflight.yml', {
        'raw1': {'kvm_domain': raw},
        'gone1': {'kvm_domain': lab.prefix + 'does-not-exist'},
        'full1': {'kvm_domain': small, 'pre_change_free_space_margin_mb': 1 << 40},
    })
    result = run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, expect_rc=2,
                          extra_vars={'kvm_change_id': 'pf1'})
    reverts_external = lab_tool.libvirt_version(lab.uri) >= (9, 9, 0)
    assert {name: counts['failed'] for name, counts in result.recap().items() if name != 'localhost'} == \
        {'raw1': 0 if reverts_external else 1, 'gone1': 1, 'full1': 1}, result
    assert 'is not known to' in result.stdout
    assert f'Not enough free space for snapshot "pre-change-pf1" of domain "{small}"' in result.stdout, result
    assert snapshot_names(lab, small) == set()
    if reverts_external:
        assert snapshot_names(lab, raw) == {'pre-change-pf1'}
        xml = lab.virsh('snapshot-dumpxml', raw, 'pre-change-pf1').stdout
        assert "<memory snapshot='external'" in xml and "snapshot='external'" in xml, xml
        assert 'the guest agent does not answer' in result.stdout, result
    else:
        assert 'The pre-change snapshot pre-change-pf1 of raw1 was not taken: Snapshot "pre-change-pf1" of domain' \
            in result.stdout, result
        assert 'no snapshot that can be reverted can be made' in result.stdout and 'is raw' in result.stdout, result
        assert snapshot_names(lab, raw) == set()


@pytest.mark.libvirt(at_least=(9, 9), reason='the setup reverts to an external snapshot, which libvirt does from 9.9')
def test_replace_keeps_the_new_snapshot_when_the_old_cannot_be_deleted(lab, run_playbook, tmp_path):
    """pre_change_replace deletes the other changes' pre-change snapshots once the new one is there. libvirt refuses
    to delete an external snapshot with two children ("multiple children snapshots not supported"): here the old
    pre-change snapshot was reverted to after a later snapshot (x), so the new one becomes its second child. The
    guest fails alone and says that its new snapshot is there; nothing is lost (virsh: all three snapshots stay,
    the new one is current)."""
    dom = lab.blank_domain('replace', state='running')
    for argv in (('snapshot-create-as', dom, 'pre-change-old', '--disk-only', '--atomic'),
                 ('snapshot-create-as', dom, 'x', '--disk-only', '--atomic'),
                 ('snapshot-revert', dom, 'pre-change-old', '--running')):
        assert lab.virsh(*argv).returncode == 0, argv
    inventory = write_inventory(tmp_path / 'replace.yml', {'repl1': {'kvm_domain': dom}})
    result = run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, expect_rc=2,
                          extra_vars={'kvm_change_id': 'new', 'pre_change_replace': True})
    assert result.recap()['repl1']['failed'] == 1, result
    assert ('The pre-change snapshot pre-change-new of repl1 is there, but a pre-change snapshot of another change '
            'could not be deleted: ') in result.stdout, result
    assert 'multiple children' in result.stdout, result
    assert snapshot_names(lab, dom) == {'pre-change-old', 'x', 'pre-change-new'}
    assert current_snapshot(lab, dom) == 'pre-change-new' and lab.state(dom) == 'running'


def read_guest_file(lab: t.Any, domain: str, path: str) -> str:
    """A file of the guest, read by its agent alone (works with /usr/bin deleted)."""
    handle = lab.agent_command(domain, {'execute': 'guest-file-open', 'arguments': {'path': path, 'mode': 'r'}})
    try:
        read = lab.agent_command(domain, {'execute': 'guest-file-read', 'arguments': {'handle': handle, 'count': 4096}})
    finally:
        lab.agent_command(domain, {'execute': 'guest-file-close', 'arguments': {'handle': handle}})
    return base64.b64decode(read['buf-b64']).decode()


def drop_snapshots(lab: t.Any, domain: str) -> None:
    """Delete every snapshot of the domain, leaves first (libvirt deletes external ones only children first)."""
    for _round in range(20):
        leaves = [n.strip() for n in lab.virsh('snapshot-list', domain, '--leaves', '--name').stdout.splitlines()
                  if n.strip()]
        if not leaves:
            return
        for name in leaves:
            assert lab.virsh('snapshot-delete', domain, name).returncode == 0
    assert snapshot_names(lab, domain) == set()


def test_guarded_change_failing_twice_with_one_change_id(lab, solo, run_playbook, tmp_path):
    """The same change (one kvm_change_id) fails twice on a guest: both failures are rolled back.

    The second run reuses the pre-change snapshot of the first (and says so); its rollback reverts although the
    target is the current snapshot and a safety snapshot of the change exists, and keeps the second broken state as
    rollback-safety-twice-2 next to the first one's rollback-safety-twice.
    """
    dom = solo
    drop_snapshots(lab, dom)
    inventory = write_inventory(tmp_path / 'solo.yml', {'r1': {'kvm_domain': dom}})
    external = reverts_external(lab)
    # with memory on purpose (the rollback brings the guest back running as it was): on libvirt >= 9.9 with a UEFI
    # guest an external snapshot with memory, before it an internal one
    common = {'pre_change_disk_only': False,
              'kvm_change_tasks': str(FLEET / 'change.yml'), 'kvm_change_id': 'twice', 'roles_break': 'r1',
              'kvm_serial': ['100%'], 'kvm_answer_agent': True, 'rollback_check_command': ['/usr/bin/ls', '/usr/bin'],
              'rollback_wait_timeout': 300}

    def whole_and_unchanged() -> None:
        assert lab.state(dom) == 'running'
        assert in_guest(lab, dom, '/usr/bin/ls', '/usr/bin')[0] == 0
        assert in_guest(lab, dom, '/usr/bin/test', '-e', '/root/changed')[0] == 1

    first = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2,
                         extra_vars=dict(common, roles_mark='-first'))
    assert 'The change failed on r1' in first.stdout and 'kept as rollback-safety-twice.' in first.stdout, first
    whole_and_unchanged()

    second = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, expect_rc=2,
                          extra_vars=dict(common, roles_mark='-second'))
    assert second.recap()['r1']['rescued'] == 1, second
    assert 'exists from an earlier run of change twice' in second.stdout, second
    assert 'kept as rollback-safety-twice-2.' in second.stdout, second
    whole_and_unchanged()  # before the fix: the second change (and its rm -rf) stayed, "rolled back" all the same
    names = {'pre-change-twice', 'rollback-safety-twice', 'rollback-safety-twice-2'}
    assert snapshot_names(lab, dom) == names
    assert current_snapshot(lab, dom) == 'pre-change-twice'
    for name in names:
        assert kind(lab, dom, name) == (('external', 'external') if external else ('internal', 'internal')), name
    if not external:
        assert set(lab.qemu_img_snapshots(lab.disk_paths(dom)[0])) == names

    # each safety snapshot holds the broken state of its own failure
    for name, mark in (('rollback-safety-twice', 'twice-first'), ('rollback-safety-twice-2', 'twice-second')):
        revert_by_hand(lab, dom, name)
        assert read_guest_file(lab, dom, '/root/changed').strip() == mark
        assert in_guest(lab, dom, '/usr/bin/ls', '/usr/bin')[0] == 127
    revert_by_hand(lab, dom, 'pre-change-twice')
    whole_and_unchanged()

    # done with the change: cleanup_now takes every snapshot the roles made
    run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory)
    assert snapshot_names(lab, dom) == set()


class ArgvRecorder:
    """The command line of every process of the machine, sampled while a playbook runs, and of every virsh run.

    virsh is a wrapper first on PATH that logs its argv before it runs the real one; everything else is read from
    /proc/*/cmdline every few milliseconds (short processes may be missed there, virsh never is).
    """

    def __init__(self, directory: pathlib.Path) -> None:
        self.bin = directory / 'bin'
        self.bin.mkdir()
        self.virsh_log = directory / 'virsh-argv.log'
        real = shutil.which('virsh') or '/usr/bin/virsh'
        wrapper = self.bin / 'virsh'
        wrapper.write_text(f'#!/bin/sh\nprintf "%s\\0" "$@" >> {self.virsh_log}\necho >> {self.virsh_log}\n'
                           f'exec {real} "$@"\n')
        wrapper.chmod(0o755)
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for cmdline in pathlib.Path('/proc').glob('[0-9]*/cmdline'):
                try:
                    self.seen.add(cmdline.read_bytes().replace(b'\0', b' ').decode(errors='replace'))
                except OSError:
                    pass
            time.sleep(0.005)

    def __enter__(self) -> ArgvRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: t.Any) -> None:
        self._stop.set()
        self._thread.join()

    def everything(self) -> str:
        virsh = self.virsh_log.read_text(errors='replace') if self.virsh_log.exists() else ''
        return '\n'.join(sorted(self.seen)) + '\n' + virsh


def test_uri_password_never_shown_kept_or_on_a_command_line(lab, solo, ansible_env, run_playbook, tmp_path):
    """A URI with a password (libvirt ignores it on a local socket, so the roles really work through it):
    snapshot_now, rollback_now (waiting for the agent and a check command through it), cleanup_now and a
    guarded change with the agent check, all with -vvv and a jsonfile fact cache. The password (as written,
    percent-encoded, and decoded) is in no output, no cached fact and no command line of any process;
    the messages and facts show user:********@. A failure (a missing domain) and a URI libvirt cannot parse
    (its "Unable to parse URI" repeats the URI) are masked too."""
    dom = solo
    drop_snapshots(lab, dom)
    marker = 'Pw!S3c'
    written = marker + '%2Fr%40t%23%3F%5B'  # decoded: Pw!S3c/r@t#?[
    # with the stack's socket (the trixie stack's libvirtd listens on its own)
    uri = f'qemu+unix://root:{written}@/system' + (lab.uri[lab.uri.index('?'):] if '?' in lab.uri else '')
    facts = tmp_path / 'facts'
    env = dict(ansible_env, PATH=f'{tmp_path / "bin"}:{ansible_env["PATH"]}', ANSIBLE_CACHE_PLUGIN='jsonfile',
               ANSIBLE_CACHE_PLUGIN_CONNECTION=str(facts))
    inventory = write_inventory(tmp_path / 'secret.yml', {
        'r1': {'kvm_domain': dom, 'kvm_uri': uri},
        'ghost': {'kvm_domain': lab.prefix + 'no-such-guest', 'kvm_uri': uri},
        # "/" and "@" unencoded: libvirt cannot read it and says so with the whole URI
        'garbled': {'kvm_domain': dom, 'kvm_uri': f'qemu+unix://root:{marker}/r@t@/system'},
    })
    runs = []
    with ArgvRecorder(tmp_path) as recorder:
        taken = run_playbook(PLAYBOOKS / 'snapshot_now.yml', inventory=inventory, env=env, kvm_uri=None,
                             expect_rc=2, args=['-vvv'], extra_vars={'kvm_change_id': 'sec1'})
        runs.append(taken)
        assert taken.recap()['r1']['failed'] == 0 and taken.recap()['ghost']['failed'] == 1, taken
        assert taken.recap()['garbled']['failed'] == 1, taken
        assert 'is not known to qemu+unix://root:********@/system' in taken.stdout, taken
        assert 'Unable to parse URI qemu+unix://root:********@/system' in taken.stdout, taken
        assert snapshot_names(lab, dom) == {'pre-change-sec1'}
        runs.append(run_playbook(PLAYBOOKS / 'rollback_now.yml', inventory=inventory, env=env, kvm_uri=None,
                                 args=['-vvv', '--limit', 'r1'], extra_vars={
                                     'kvm_change_id': 'sec1', 'rollback_wait_for': 'agent',
                                     'rollback_check_command': ['/usr/bin/true'], 'rollback_wait_timeout': 300}))
        assert 'reverted to pre-change-sec1' in runs[-1].stdout
        runs.append(run_playbook(PLAYBOOKS / 'cleanup_now.yml', inventory=inventory, env=env, kvm_uri=None,
                                 args=['-vvv', '--limit', 'r1']))
        assert snapshot_names(lab, dom) == set()
        runs.append(run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=inventory, env=env, kvm_uri=None,
                                 args=['-vvv', '--limit', 'r1'], extra_vars={
                                     'kvm_change_tasks': str(FLEET / 'noop.yml'), 'kvm_change_id': 'sec2',
                                     'kvm_answer_agent': True}))
        assert runs[-1].recap()['r1']['failed'] == 0 and snapshot_names(lab, dom) == set()
    # the agent tasks ran through the module: the guest-ping of guarded_change and the rollback's wait and check
    assert 'guest-ping' in runs[-1].stdout and 'guest-exec-status' in runs[1].stdout

    cached = {path.name: path.read_text() for path in facts.iterdir()}  # <prefix><host name> each
    r1_facts = next(text for name, text in cached.items() if name.endswith('r1'))
    # pre_change_snapshot, rollback_result and cleanup_result keep the URI, masked (the cache's JSON format changes
    # with the Ansible version: the text is looked at, not its structure)
    assert r1_facts.count('qemu+unix://root:********@/system') == 3, r1_facts
    everything = '\n'.join([run.stdout + run.stderr for run in runs] + list(cached.values()) + [recorder.everything()])
    for secret in (marker, 'S3c%2F', 'S3c/r@t'):
        assert secret not in everything, [line for line in everything.splitlines() if secret in line][:5]
    assert recorder.seen, 'no command line was sampled'
