# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""guest_agent on the test driver, which has no guest agent: what is refused before anything is sent, check mode,
and the message when the agent cannot be asked. The real agent is asked in tests/integration/test_roles.py."""

from __future__ import annotations

import pytest

from ansible_collections.kvm.snapshots.plugins.modules import guest_agent


@pytest.mark.parametrize('command, says', [
    ('not json', 'not valid JSON'),
    ('[1, 2]', 'must be a mapping with "execute"'),
    ({'arguments': {}}, 'must be a mapping with "execute"'),
    ({'execute': ''}, 'must be a mapping with "execute"'),
    ({'execute': 'guest-exec', 'arguments': [1]}, '"arguments" must be a mapping'),
])
def test_bad_command_is_refused(run_failing, make_domain, command, says):
    result = run_failing(guest_agent, {'domain': make_domain().name(), 'command': command})
    assert says in result['msg'] and 'Nothing was sent' in result['msg']


def test_bad_timeout_is_refused(run_failing, make_domain):
    result = run_failing(guest_agent, {'domain': make_domain().name(), 'command': {'execute': 'guest-ping'}, 'timeout': 0})
    assert 'timeout must be 1 second or more' in result['msg']


def test_check_mode_does_not_send_a_command_that_changes(run_module, make_domain):
    result = run_module(guest_agent, {'domain': make_domain().name(), 'command': '{"execute": "guest-exec", "arguments": '
                                      '{"path": "/bin/rm"}}'}, check=True)
    assert result['changed'] and result['answer'] is None and 'would be sent' in result['msg']


def test_agent_that_cannot_be_asked_fails_with_a_message(run_failing, make_domain):
    """The test driver has no agent: a plain message that names the command and the domain."""
    domain = make_domain().name()
    result = run_failing(guest_agent, {'domain': domain, 'command': {'execute': 'guest-ping'}}, check=True)
    assert f'Sending "guest-ping" to the guest agent of "{domain}" failed' in result['msg']


def test_missing_domain(run_failing):
    result = run_failing(guest_agent, {'domain': 'no-such-domain', 'command': {'execute': 'guest-ping'}})
    assert 'does not exist' in result['msg']
