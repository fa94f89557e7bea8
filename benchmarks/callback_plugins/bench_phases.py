# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark helper (not part of the collection): when each task of a play starts and ends, and its module runs.

Enabled by benchmarks/fleet.py (ANSIBLE_CALLBACK_PLUGINS, ANSIBLE_CALLBACKS_ENABLED=bench_phases); writes one JSON
document to $BENCH_PHASES_FILE at the end of the playbook: for every task (in the order they started) its name, role,
module, the perf_counter() of its start and of its last result, and how many of its host results were not skipped.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: bench_phases
type: aggregate
short_description: task timings for benchmarks/fleet.py
description: Writes the start and end of every task, its role and its module runs to $BENCH_PHASES_FILE.
requirements: [enabled in the configuration]
'''


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'bench_phases'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[dict] = []
        self.by_uuid: dict[str, dict] = {}

    def v2_playbook_on_task_start(self, task, is_conditional):  # noqa: ARG002
        role = task._role.get_name(include_role_fqcn=False) if task._role else None
        row = {'name': task.name, 'role': role, 'action': task.action, 'start': time.perf_counter(),
               'end': time.perf_counter(), 'runs': 0, 'results': 0}
        self.tasks.append(row)
        self.by_uuid[task._uuid] = row

    def _result(self, result, ran: bool) -> None:
        row = self.by_uuid.get(result._task._uuid)
        if row is not None:
            row['end'] = time.perf_counter()
            row['results'] += 1
            row['runs'] += int(ran)

    def v2_runner_on_ok(self, result):
        self._result(result, True)

    def v2_runner_on_failed(self, result, ignore_errors=False):  # noqa: ARG002
        self._result(result, True)

    def v2_runner_on_unreachable(self, result):
        self._result(result, True)

    def v2_runner_on_skipped(self, result):
        self._result(result, False)

    def v2_playbook_on_stats(self, stats):  # noqa: ARG002
        path = os.environ.get('BENCH_PHASES_FILE')
        if path:
            with open(path, 'w', encoding='utf-8') as out:
                json.dump({'tasks': self.tasks, 'end': time.perf_counter()}, out)
