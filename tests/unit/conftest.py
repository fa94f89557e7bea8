# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by every unit test (the plain helpers they build on are in helpers.py).

``conn``, ``make_domain`` and ``add_snapshot`` make what a test needs on libvirt's test driver (test:///default),
which keeps its state in this process: every connection opened to it here shares that state, so a domain made by a
fixture is seen by a module run in-process with ``run_module`` (``run_failing`` for a run that must fail). Each
fixture removes what it made.
"""

from __future__ import annotations

import contextlib
import json
import sys
import types
import uuid
import xml.etree.ElementTree as ET
from unittest import mock

import libvirt
import pytest
from ansible.module_utils import basic

try:
    from ansible.module_utils import testing  # noqa: F401  # pylint: disable=unused-import
except ImportError:  # ansible-core before 2.19: the tests' one way to give module args, by the older means

    @contextlib.contextmanager
    def patch_module_args(args=None):
        """ansible.module_utils.testing.patch_module_args of ansible-core 2.19, for 2.16 to 2.18."""
        with mock.patch.object(basic, '_ANSIBLE_ARGS', json.dumps({'ANSIBLE_MODULE_ARGS': args or {}}).encode()):
            yield

    testing = types.ModuleType('ansible.module_utils.testing')
    testing.patch_module_args = patch_module_args
    sys.modules[testing.__name__] = testing

# tests/unit/helpers.py by its file name: pytest puts this directory on sys.path to import this conftest, before
# pytest-ansible makes the ansible_collections path (the test files import it by that path)
from helpers import AGENT_CHANNEL_XML, DOMAIN_XML, TEST_URI  # pylint: disable=import-error


@pytest.fixture
def conn():
    """A connection to libvirt's test driver, which keeps its state while a connection is open in the process."""
    connection = libvirt.open(TEST_URI)
    yield connection
    connection.close()


def redefine_snapshot(dom, name, epoch, parent=None, description=None, current=False):
    """Define snapshot ``name`` of ``dom`` as if taken at ``epoch`` under ``parent`` (libvirt's REDEFINE)."""
    root = ET.Element('domainsnapshot')
    ET.SubElement(root, 'name').text = name
    if description is not None:
        ET.SubElement(root, 'description').text = description
    ET.SubElement(root, 'state').text = 'shutoff'
    ET.SubElement(root, 'creationTime').text = str(epoch)
    if parent is not None:
        ET.SubElement(ET.SubElement(root, 'parent'), 'name').text = parent
    root.append(ET.fromstring(dom.XMLDesc(0)))
    flags = libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE
    if current:
        flags |= libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_CURRENT
    return dom.snapshotCreateXML(ET.tostring(root, encoding='unicode'), flags)


@pytest.fixture
def add_snapshot():
    """add_snapshot(dom, name, epoch, parent=None, description=None, current=False) -> the snapshot, defined
    with an explicit creation time (so ages and orders are known without waiting); make_domain removes it."""
    return redefine_snapshot


@pytest.fixture
def make_domain(conn):
    """make_domain(state='running'|'paused'|'shutoff', fmt='qcow2', prefix='unit', agent=False, xml=None) -> libvirt
    domain with a unique name; ``xml(name)``, when given, makes its XML instead of the one-disk default."""
    made = []

    def make(state='running', fmt='qcow2', prefix='unit', agent=False, xml=None):
        name = f'{prefix}-{uuid.uuid4().hex[:8]}'
        if xml is None:
            dom = conn.defineXML(DOMAIN_XML.format(name=name, fmt=fmt, channel=AGENT_CHANNEL_XML if agent else ''))
        else:
            dom = conn.defineXML(xml(name))
        made.append(name)
        if state in ('running', 'paused'):
            dom.create()
        if state == 'paused':
            dom.suspend()
        return dom

    yield make
    for name in made:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


class ModuleFailed(Exception):
    def __init__(self, result):
        super().__init__(result.get('msg'))
        self.result = result


@pytest.fixture
def run_module(capsys):
    """run_module(module, args, check=False, diff=False) -> result dict; raises ModuleFailed on failure."""

    def run(module, args, check=False, diff=False):
        args = dict({'uri': TEST_URI}, **args, _ansible_check_mode=check, _ansible_diff=diff)
        with testing.patch_module_args(args):
            with pytest.raises(SystemExit):
                module.main()
        out = capsys.readouterr().out
        result = json.loads(out)
        if result.get('failed'):
            raise ModuleFailed(result)
        return result

    return run


@pytest.fixture
def run_failing(run_module):
    """run_failing(module, args, ...) -> the result of a run that must fail; its message must be plain."""

    def run(module, args, **kwargs):
        with pytest.raises(ModuleFailed) as failed:
            run_module(module, args, **kwargs)
        result = failed.value.result
        assert result['msg'] and 'Traceback' not in result['msg']
        return result

    return run
