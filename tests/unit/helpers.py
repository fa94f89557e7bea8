# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the unit tests share, written once: the test driver's URI, domain XML, a hand-made libvirt error, the
snapshot names of a domain, a stand-in domain with one disk on a file system of a chosen free space, and the base of
the proxies that make a test-driver object do what the test driver cannot.

Import as ``from ansible_collections.kvm.snapshots.tests.unit.helpers import ...``; the fixtures built on these
(``conn``, ``make_domain``, ``add_snapshot``) are in tests/unit/conftest.py.
"""

from __future__ import annotations

import json

from types import SimpleNamespace

import libvirt

TEST_URI = 'test:///default'

#: a domain of the test driver with one disk (``name``, ``fmt``, ``channel``: AGENT_CHANNEL_XML or '')
DOMAIN_XML = """<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='{fmt}'/>
      <source file='/guest/{name}.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>{channel}
  </devices>
</domain>"""

#: a domain of the test driver without devices (``name``)
BARE_DOMAIN_XML = """<domain type='test'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>"""

AGENT_CHANNEL_XML = """
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>"""


def fake_error(code, text, domain=0):
    """A libvirtError with the code, message and error domain given, where the test driver cannot make it."""
    error = libvirt.libvirtError(text)
    error.get_error_code = lambda: code
    error.get_error_domain = lambda: domain
    error.get_error_message = lambda: text
    return error


def snapshot_names(dom):
    """The names of a domain's snapshots, sorted, as libvirt lists them."""
    return sorted(snap.getName() for snap in dom.listAllSnapshots(0))


class Proxy:
    """A libvirt object of the test driver (a domain, a snapshot) whose methods a subclass replaces where the test
    driver cannot do what a test needs (refuse, race, count the calls); every other attribute is the wrapped
    object's (``self.wrapped``)."""

    def __init__(self, wrapped):
        self.wrapped = wrapped

    def __getattr__(self, attr):
        return getattr(self.wrapped, attr)


class DiskDomain:
    """A stand-in domain with one qcow2 disk at ``path`` and ``memory_mib`` of memory."""

    def __init__(self, path, memory_mib=1024, excluded=False):
        self.path = str(path)
        self.memory_kib = memory_mib * 1024
        self.excluded = excluded

    def name(self):
        return 'web1'

    def info(self):
        return [1, self.memory_kib, self.memory_kib, 1, 0]

    def XMLDesc(self, _flags=0):  # libvirt's name
        snapshot = " snapshot='no'" if self.excluded else ''
        return (f"<domain><devices><disk type='file' device='disk'{snapshot}><driver type='qcow2'/>"
                f"<source file='{self.path}'/><target dev='vda'/></disk></devices></domain>")


def statvfs_with(free_bytes):
    """A stand-in for os.statvfs that reports free_bytes free."""
    def fake(_path):
        return SimpleNamespace(f_bavail=free_bytes // 4096, f_frsize=4096)
    return fake


# The guest agent, where libvirt's test driver cannot go: it sends no agent commands.

def guest_info(disabled=(), missing=()):
    """guest-info as qemu-ga 7.2 answers it; its --block-rpcs marks the commands it disables "enabled": false."""
    commands = ['guest-ping', 'guest-info', 'guest-fsfreeze-status', 'guest-fsfreeze-freeze',
                'guest-fsfreeze-freeze-list', 'guest-fsfreeze-thaw']
    return json.dumps({'return': {'version': '7.2.22', 'supported_commands': [
        {'name': name, 'enabled': name not in disabled, 'success-response': True}
        for name in commands if name not in missing]}})


class Agent:
    """libvirt_qemu with qemuAgentCommand answering ``answer`` (a string), or raising it (an exception)."""

    def __init__(self, answer):
        self.answer = answer
        self.asked = []

    def qemuAgentCommand(self, dom, command, timeout, flags):  # pylint: disable=invalid-name  # libvirt's name
        self.asked.append((json.loads(command)['execute'], timeout))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer
