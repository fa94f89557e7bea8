# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The domain (module_utils/_domain.py): the disks a snapshot covers, read on libvirt's test driver; busy
domains, interrupted jobs and waiting for idle, with stand-ins where the test driver cannot go."""

from __future__ import annotations

import libvirt
import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _domain as d
from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import SnapshotError
from ansible_collections.kvm.snapshots.tests.unit.helpers import TEST_URI, Agent, fake_error, guest_info


# readers, on the test driver (make_domain: tests/unit/conftest.py)

def scratch_and_cdrom_xml(name):
    """A shut-off domain with a qcow2 disk, a raw scratch disk left out of snapshots and a CD-ROM."""
    return f"""<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='/guest/{name}.img'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk' snapshot='no'>
      <driver name='qemu' type='raw'/><source file='/guest/{name}-scratch.raw'/><target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='/guest/install.iso'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
  </devices>
</domain>"""


def test_domain_disks_skips_cdroms(make_domain):
    dom = make_domain('shutoff', xml=scratch_and_cdrom_xml)
    disks = d.domain_disks(dom)
    assert [(d['name'], d['format'], d['snapshot']) for d in disks] == [('vda', 'qcow2', None), ('vdb', 'raw', 'no')]
    assert disks[0]['file'] == f'/guest/{dom.name()}.img'


def test_domain_root_reads_parses_or_keeps_the_tree(make_domain):
    dom = make_domain('running', agent=True)
    xml = dom.XMLDesc(0)
    tree = d.domain_root(dom, xml)
    assert d.domain_root(dom, tree) is tree
    assert d.domain_root(dom).findtext('name') == tree.findtext('name') == dom.name()
    assert d.has_agent_channel(dom, tree) and d.has_agent_channel(dom, xml) and d.has_agent_channel(dom)


# jobs: interrupted, running

class _JobDomain:
    """A domain in a given state; controlInfo reports a job while ``busy`` says so."""

    def __init__(self, state, reason, busy=(False,)):
        self._state = [state, reason]
        self._busy = list(busy)
        self.resumed = 0

    def name(self):
        return 'web1'

    def state(self, _flags=0):
        return list(self._state)

    def controlInfo(self, _flags=0):
        busy = self._busy.pop(0) if len(self._busy) > 1 else self._busy[0]
        return [1 if busy else 0, 0, 1500 if busy else 0]

    def resume(self):
        self.resumed += 1
        self._state = [1, 2]


def test_resume_a_domain_left_paused_by_an_interrupted_snapshot():
    dom = _JobDomain(d.STATE_PAUSED, 3)  # paused, reason "save", no job
    warning = d.resume_interrupted(dom, busy_timeout=5)
    assert dom.resumed == 1
    assert 'was paused (reason: save) with no libvirt job running' in warning and 'It was resumed' in warning


def test_a_save_that_was_still_running_settles_the_state():
    """The lock made resume wait for a save, which shut the domain off: nothing to resume, no error."""
    dom = _JobDomain(d.STATE_PAUSED, 3)

    def save_ended():
        dom._state = [5, 2]  # pylint: disable=protected-access
        raise fake_error(55, 'Requested operation is not valid: domain is not running')

    dom.resume = save_ended
    assert d.resume_interrupted(dom, busy_timeout=5) is None


def test_resume_that_fails_for_another_reason_says_so():
    dom = _JobDomain(d.STATE_PAUSED, 3)

    def broken():
        raise fake_error(1, 'internal error: unable to execute QEMU command cont')

    dom.resume = broken
    with pytest.raises(SnapshotError, match=r'Resuming domain "web1", left paused by an unfinished save job failed'):
        d.resume_interrupted(dom, busy_timeout=5)


@pytest.mark.parametrize('state, reason', [(1, 1), (3, 1), (3, 2), (5, 1)])
def test_leave_other_states_alone(state, reason):
    """Running, paused by the user, paused for a migration, shut off: nothing to do."""
    dom = _JobDomain(state, reason)
    assert d.resume_interrupted(dom, busy_timeout=5) is None
    assert dom.resumed == 0


def test_a_running_job_is_not_interrupted():
    """Paused for a snapshot that is still being taken (another run): libvirt resumes it at the end."""
    dom = _JobDomain(d.STATE_PAUSED, 9, busy=(True,))
    assert d.resume_interrupted(dom, busy_timeout=5) is None
    assert dom.resumed == 0


def test_wait_idle_waits_for_the_job():
    dom = _JobDomain(1, 1, busy=(True, True, False))
    d.wait_idle(dom, busy_timeout=10)
    assert not d.domain_busy(dom)


def test_wait_idle_gives_up_and_says_what_is_busy():
    dom = _JobDomain(1, 1, busy=(True,))
    with pytest.raises(SnapshotError, match=r'still busy with another job .* after 0\.3 seconds.*busy_timeout'):
        d.wait_idle(dom, busy_timeout=0.3)


def test_domain_busy_on_a_driver_without_control_info():
    conn = libvirt.open(TEST_URI)
    try:
        dom = conn.lookupByName('test')  # the test driver's own domain
        assert d.domain_busy(dom) is False
    finally:
        conn.close()


# agent_freeze_problem: libvirt's test driver sends no agent commands, so these hand it a stand-in for
# libvirt_qemu (helpers.Agent) that answers guest-info as qemu-ga 7.2 does.

@pytest.mark.parametrize('answer, problem', [
    (guest_info(), None),
    (guest_info(disabled=['guest-fsfreeze-freeze', 'guest-fsfreeze-freeze-list', 'guest-fsfreeze-thaw']),
     'cannot freeze the file systems: guest-fsfreeze-freeze and guest-fsfreeze-thaw are disabled or missing in it '
     '(qemu-ga --block-rpcs)'),
    (guest_info(disabled=['guest-fsfreeze-thaw']),
     'cannot freeze the file systems: guest-fsfreeze-thaw is disabled or missing in it (qemu-ga --block-rpcs)'),
    (guest_info(missing=['guest-fsfreeze-freeze']),
     'cannot freeze the file systems: guest-fsfreeze-freeze is disabled or missing in it (qemu-ga --block-rpcs)'),
    ('not json', None),  # an answer it cannot read: the freeze itself will tell
    (fake_error(86, 'Guest agent is not responding: QEMU guest agent is not connected'),
     'does not answer (Guest agent is not responding: QEMU guest agent is not connected)'),
])
def test_agent_freeze_problem(monkeypatch, answer, problem):
    agent = Agent(answer)
    monkeypatch.setattr(d, 'libvirt_qemu', agent)
    assert d.agent_freeze_problem(object(), 3) == problem
    assert agent.asked == [('guest-info', 3)]


def test_agent_freeze_problem_without_agent_commands(monkeypatch):
    monkeypatch.setattr(d, 'libvirt_qemu', Agent(fake_error(d.ERR_NO_SUPPORT, 'this function is not supported')))
    with pytest.raises(d.AgentUnsupported):
        d.agent_freeze_problem(object(), 3)
