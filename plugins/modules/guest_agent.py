#!/usr/bin/python
# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: guest_agent
short_description: Send one command to the QEMU guest agent of a libvirt domain
version_added: 0.2.0
description:
  - Sends a command to qemu-guest-agent inside a running domain through libvirt, as
    C(virsh qemu-agent-command) does, and returns the agent's answer as data.
  - The roles use it to wait until a guest answers after a rollback (C(guest-ping)) and to run a check command
    inside it (C(guest-exec), C(guest-exec-status)) without a network path to the guest, and without C(virsh).
    The connection URI goes through the module's arguments (where its password is masked), never on a command line
    that the process list shows.
author:
  - kvm.snapshots contributors (@kvm-snapshots)
extends_documentation_fragment:
  - kvm.snapshots._libvirt
  - kvm.snapshots._libvirt.attributes
attributes:
  check_mode:
    description: Can run in check mode and return the changed status prediction without modifying the target.
    support: partial
    details: In check mode only commands that read (V(guest-ping), V(guest-info), V(guest-exec-status),
      V(guest-get-*), V(guest-network-get-interfaces)) are sent; any other is reported as a change and not sent.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second run indicates no change.
    support: N/A
    details: Whether a command changes the guest depends on the command; one that only reads reports no change.
options:
  domain:
    description: The libvirt name of the running domain whose agent is asked.
    type: str
    required: true
  command:
    description:
      - 'The agent command, a mapping with C(execute) and optionally C(arguments), or the same as a JSON string,
        for example V({"execute": "guest-ping"}).'
    type: raw
    required: true
  timeout:
    description: Seconds to wait for the agent's answer before failing.
    type: int
    default: 5
notes:
  - The domain needs a guest agent channel (C(org.qemu.guest_agent.0)) and qemu-guest-agent running inside.
seealso:
  - module: kvm.snapshots.snapshot_info
  - module: kvm.snapshots.snapshot_revert
'''

EXAMPLES = r'''
- name: Wait until the guest agent of web1 answers
  kvm.snapshots.guest_agent:
    domain: web1
    command: {execute: guest-ping}
  register: ping
  until: ping is succeeded
  retries: 20
  delay: 3

- name: Start a command inside web1
  kvm.snapshots.guest_agent:
    domain: web1
    command:
      execute: guest-exec
      arguments: {path: /usr/bin/systemctl, arg: [is-system-running], capture-output: true}
  register: started
'''

RETURN = r'''
answer:
  description: The agent's answer, decoded from JSON (V(null) for a command not sent in check mode).
  type: dict
  returned: always
  sample: {return: {pid: 1234}}
'''

import json
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    AnsibleLibvirtModule,
    LibvirtError,
    SnapshotError,
    libvirt_errors,
)

try:
    import libvirt_qemu
except ImportError:  # comes with libvirt-python; AnsibleLibvirtModule reports a missing binding
    libvirt_qemu = None

# Commands that only read; the others may change the guest.
READ_ONLY = ('guest-ping', 'guest-info', 'guest-exec-status', 'guest-network-get-interfaces', 'guest-sync')


def read_command(command: t.Any) -> dict[str, t.Any]:
    """The agent command as a mapping with ``execute``, from a mapping or a JSON string."""
    if isinstance(command, str):
        try:
            command = json.loads(command)
        except ValueError as exc:
            raise SnapshotError(f'command is not valid JSON ({exc}); give a mapping such as '
                                '{"execute": "guest-ping"}. Nothing was sent.') from None
    if not isinstance(command, dict) or not isinstance(command.get('execute'), str) or not command['execute']:
        raise SnapshotError('command must be a mapping with "execute" naming the agent command (and "arguments" '
                            'when it takes some), such as {"execute": "guest-ping"}. Nothing was sent.')
    if 'arguments' in command and not isinstance(command['arguments'], dict):
        raise SnapshotError('command "arguments" must be a mapping. Nothing was sent.')
    return command


def main() -> None:
    argument_spec = {
        'domain': {'type': 'str', 'required': True},
        'command': {'type': 'raw', 'required': True},
        'timeout': {'type': 'int', 'default': 5},
    }
    client = AnsibleLibvirtModule(argument_spec, supports_check_mode=True)
    params = client.params
    try:
        command = read_command(params['command'])
        if params['timeout'] < 1:
            raise SnapshotError(f'timeout must be 1 second or more, not {params["timeout"]}. Nothing was sent.')
        name = command['execute']
        reads = name in READ_ONLY or name.startswith('guest-get-')
        if client.check_mode and not reads:
            client.exit(changed=True, answer=None, msg=f'Check mode: "{name}" would be sent to the agent.')
        dom = client.lookup_domain(params['domain'])
        with libvirt_errors(f'Sending "{name}" to the guest agent of "{params["domain"]}"', domain=params['domain']):
            text = libvirt_qemu.qemuAgentCommand(dom, json.dumps(command), params['timeout'], 0)
        try:
            answer = json.loads(text) if text else {}
        except ValueError:
            answer = {'text': text}
    except (SnapshotError, LibvirtError) as exc:
        client.fail(exc)
    client.exit(changed=not reads, answer=answer)


if __name__ == '__main__':
    main()
