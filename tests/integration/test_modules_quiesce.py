# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""quiesce: true through a real guest agent (a Debian guest of the lab); and an agent with the freeze disabled.

The agent logs each request in the guest's journal: the test reads it there to see that the real
run froze the file systems exactly once and check mode not at all. Quiesce without an agent channel,
with a silent agent and of a shut-off domain is in test_modules_errors.py.
"""

from __future__ import annotations

import os
import typing as t

import pytest

from conftest import LIBVIRT_VERSION, URI
from fault_fixtures import ok
from kslab.common import AgentError
from kslab.processes import wait_until
# pytest finds fixtures by name in the test module: import the shared ones
from test_modules_common import guest, independent  # noqa: F401  # pylint: disable=unused-import


def freezes(lab, dom: str) -> int:
    """How often the guest agent was asked to freeze the file systems since the guest booted."""
    rc, out, err = lab.guest_exec(dom, ['/usr/bin/journalctl', '--no-pager', '-b', '-o', 'cat', '-t', 'qemu-ga'])
    assert rc == 0, err
    return sum(1 for line in out.splitlines() if line.strip() == 'info: guest-fsfreeze called')


def test_quiesced_disk_only_snapshot(guest, independent, lab, run_playbook):
    disk = lab.disk_paths(guest)[0]
    frozen_before = freezes(lab, guest)

    run_playbook('modules_quiesce.yml', {'dom': guest, 'disk': disk})

    assert freezes(lab, guest) == frozen_before + 1  # the real run froze once; check mode did not
    # the file systems are thawed: the guest writes and syncs
    rc, _out, err = lab.guest_exec(guest, ['/usr/bin/sh', '-c', 'echo ok > /root/after-quiesce && sync'])
    assert rc == 0, err
    assert independent.snapshot_names(guest) == []
    assert independent.blklist(guest) == {'vda': disk}
    assert not os.path.exists(os.path.splitext(disk)[0] + '.quiesced')
    assert independent.image_info(disk)['backing-filename'].endswith('base.qcow2')  # still the linked clone
    independent.qemu_img_check(disk, in_use=True)
    assert independent.domstate(guest) == 'running'


BLOCKED = 'guest-fsfreeze-freeze,guest-fsfreeze-freeze-list,guest-fsfreeze-thaw'


def restart_agent(lab, dom: str, options: str, ready: t.Callable[[dict[str, t.Any]], bool], setup: str = '') -> None:
    """Restart the guest's qemu-ga with ``options`` (after the shell commands ``setup``), and wait until its
    guest-info answer is ``ready``."""
    rc, _out, err = lab.guest_exec(dom, ['/bin/sh', '-c', setup +
                                         'printf "[Service]\\nExecStart=\\nExecStart=-/usr/sbin/qemu-ga %s\\n" '
                                         '> /etc/systemd/system/qemu-guest-agent.service.d/options.conf '
                                         '&& systemctl daemon-reload' % options])
    assert rc == 0, err
    # the restart ends the agent that runs it: not waited for through guest-exec-status
    lab.agent_command(dom, {'execute': 'guest-exec', 'arguments': {
        'path': '/bin/systemctl', 'arg': ['--no-block', 'restart', 'qemu-guest-agent']}})

    def answers() -> bool:
        try:
            # the agent that answers is the new one (its command line), and says what is asked
            _rc, running, _err = lab.guest_exec(dom, ['/bin/sh', '-c', 'for p in /proc/[0-9]*; do '
                                                      '[ "$(cat $p/comm)" = qemu-ga ] && tr "\\0" " " < $p/cmdline; '
                                                      'done; true'])
            return f'qemu-ga {options}' in running and ready(lab.agent_command(dom, {'execute': 'guest-info'}))
        except AgentError:
            return False  # restarting

    wait_until(answers, 120, f'the guest agent to come back with {options}', 0.5)


def freeze_enabled(info: dict[str, t.Any]) -> bool:
    return {c['name']: c['enabled'] for c in info['supported_commands']}['guest-fsfreeze-freeze']


def test_an_agent_with_freezing_disabled(lab, independent, module):
    """qemu-ga answers but its configuration disables the freeze: disk_only auto takes a snapshot with memory
    (libvirt's quiesce would fail: "Command guest-fsfreeze-freeze has been disabled"), and snapshot_group's
    freeze agent pauses the members instead, each saying why; checked with virsh."""
    dom = lab.guest_domain('nofreeze', wait_agent=True)
    try:
        # the freeze and the thaw disabled, as some hardened images ship qemu-ga
        restart_agent(lab, dom, f'-b {BLOCKED}', lambda info: not freeze_enabled(info))
        taken = ok(module('snapshot', {'domain': dom, 'name': 'auto', 'uri': URI, 'disk_only': 'auto',
                                       'quiesce': 'auto'}))
        if LIBVIRT_VERSION >= (9, 9):
            assert taken['kind']['choice'] == ('the guest agent cannot freeze the file systems: guest-fsfreeze-freeze '
                                               'and guest-fsfreeze-thaw are disabled or missing in it (qemu-ga '
                                               '--block-rpcs)'), taken
        assert independent.snapshot_xml(dom, 'auto').find('memory').get('snapshot') != 'no'
        ok(module('snapshot', {'domain': dom, 'name': 'auto', 'uri': URI, 'state': 'absent'}))

        group = {'name': 'grp', 'uri': URI, 'members': [{'domain': dom}], 'freeze': 'agent', 'location': 'external'}
        run = module('snapshot_group', group)
        grouped = ok(run)
        assert grouped['freeze_used'] == 'pause', grouped
        assert 'cannot freeze the file systems: guest-fsfreeze-freeze' in run.stdout + run.stderr, run
        assert independent.snapshot_xml(dom, 'grp').find('memory').get('snapshot') != 'no'
        assert independent.domstate(dom) == 'running'
        ok(module('snapshot_group', dict(group, state='absent')))
        assert independent.snapshot_names(dom) == []
    finally:
        lab.remove(dom)


@pytest.mark.libvirt(at_least=(9, 9),
                     reason='disk_only auto chooses a quiesced disk-only snapshot only where libvirt can revert it')
def test_a_freeze_that_fails_falls_back_to_memory(lab, independent, module):
    """The agent has the freeze enabled but fails it (its fsfreeze hook fails, as with a file system that cannot
    freeze): disk_only auto, which chose a quiesced disk-only snapshot, takes one with memory instead and says why;
    libvirt made nothing of the failed attempt (one snapshot, at most one overlay, on the original disk); checked
    with virsh and qemu-img."""
    dom = lab.guest_domain('freezefails', wait_agent=True)
    try:
        # qemu-ga runs this hook before it freezes, and fails the freeze when the hook fails
        restart_agent(lab, dom, '--fsfreeze-hook=/etc/qemu/fail-hook', freeze_enabled, setup=(
            'printf "#!/bin/sh\\n[ \\"\\$1\\" = freeze ] && exit 1\\nexit 0\\n" > /etc/qemu/fail-hook '
            '&& chmod 755 /etc/qemu/fail-hook && '))
        disk = lab.disk_paths(dom)[0]
        taken = ok(module('snapshot', {'domain': dom, 'name': 'auto', 'uri': URI, 'disk_only': 'auto',
                                       'quiesce': 'auto'}))
        choice = taken['kind']['choice']
        assert choice.startswith('the guest agent failed to freeze the file systems (Creating snapshot "auto"'), taken
        assert 'fsfreeze hook has failed' in choice and choice.endswith('): a snapshot with memory'), taken
        assert independent.snapshot_names(dom) == ['auto']
        memory = independent.snapshot_xml(dom, 'auto').find('memory').get('snapshot')
        overlay = os.path.splitext(disk)[0] + '.auto'
        if memory == 'external':
            # with memory and external (a UEFI guest with a raw NVRAM): its overlay, right on the original disk
            assert independent.blklist(dom) == {'vda': overlay}
            assert independent.image_info(overlay)['backing-filename'] == disk
        else:
            assert memory == 'internal' and independent.blklist(dom) == {'vda': disk} and not os.path.exists(overlay)
        assert independent.domstate(dom) == 'running'
    finally:
        lab.remove(dom)
