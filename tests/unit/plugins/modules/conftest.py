# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for the module unit tests: run a module in-process against libvirt's test driver.

The test driver (test:///default) keeps its state in this process and every
connection opened to it here shares that state, so a domain made by a
fixture is seen by the module under test. Each fixture removes what it made.
"""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

TEST_URI = 'test:///default'


class ModuleFailed(Exception):
    def __init__(self, result):
        super().__init__(result.get('msg'))
        self.result = result


@pytest.fixture
def run_module(capsys):
    """run_module(module, args, check=False, diff=False) -> result dict; raises ModuleFailed on failure."""

    def run(module, args, check=False, diff=False):
        args = dict({'uri': TEST_URI}, **args, _ansible_check_mode=check, _ansible_diff=diff)
        with patch_module_args(args):
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
