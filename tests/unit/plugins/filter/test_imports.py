# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the filter plugins import: Python's standard library and ansible.errors, nothing heavier.

Each of Ansible's worker processes (one a host and task) loads every filter file of the collection anew when a
template names one of its filters (the role defaults do, for every guest), so libvirt-python or AnsibleModule
imported there cost every guest's task tens of milliseconds (about 4 s a task over 195 guests, measured), and the
fleet report's code (plugin_utils/_snapshot_report.py, imported at the call) about 0.7 s a task over 200 guests.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

from ansible_collections.kvm.snapshots.plugins.filter import connection

FILTERS = [p.stem for p in pathlib.Path(connection.__file__).parent.glob('*.py') if not p.stem.startswith('_')]


def test_loading_the_filters_imports_neither_libvirt_nor_ansible_module_utils_basic_nor_the_report():
    assert {'connection', 'redact_uri', 'snapshot_report'} <= set(FILTERS)
    root = pathlib.Path(connection.__file__).parents[5]  # the directory that holds ansible_collections/
    imports = '; '.join(f'import ansible_collections.kvm.snapshots.plugins.filter.{name}' for name in FILTERS)
    heavy = ['libvirt', 'ansible.module_utils.basic', 'ansible_collections.kvm.snapshots.plugins.plugin_utils._snapshot_report']
    probe = subprocess.run(
        [sys.executable, '-c', f'import sys; {imports}; print(sorted(m for m in {heavy!r} if m in sys.modules))'],
        env={'PYTHONPATH': str(root)}, capture_output=True, text=True, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == '[]', probe.stdout
