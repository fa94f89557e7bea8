# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Applications in guarded_change.yml (issue 15 part 3): the guests with the same kvm_application are one batch, get
one group snapshot (kvm.snapshots.snapshot_group), and are rolled back together when the change fails on any of them.

Blank running domains (no OS, no guest agent, no boot): the group snapshot pauses them (freeze agent falls back to
pause) and holds their memory, so a rollback brings them back running. The change (targets/roles_fleet/app_change.yml)
notes its batch in a file and shuts its domain off (virsh destroy); the results are read with virsh: the power state,
the current snapshot and the snapshots of every domain. About 40 s on the lab (two runs of the playbook).
"""

from __future__ import annotations

import typing as t

from test_modules_common import current_snapshot, snapshot_names
from test_roles import FLEET, PLAYBOOKS, write_inventory


def test_application_rolled_back_together_batched_and_cleaned_up(lab: t.Any, run_playbook: t.Any, tmp_path: t.Any):
    """Run 1: web1 and db1 are application shop, listed apart in the inventory with solo (no application) between
    them; web1's change fails: both members are rolled back together (db1, whose change worked, too) and both fail;
    the run stops there (max_fail_percentage 0), before solo.

    Run 2 (another change id): shop works now, x1 is application cache; the batches are shop, then cache, then
    solo: the canary batch is one whole application. Every group snapshot of the run is deleted, the change kept.
    """
    db, web, solo, cache = (lab.blank_domain(n, state='running') for n in ('appdb', 'appweb', 'appsolo', 'appx'))
    shop = {'kvm_application': 'shop', 'kvm_application_order': [db]}
    guests = {
        'web1': dict(shop, kvm_domain=web, kvm_change_fails=True),
        'solo': {'kvm_domain': solo},
        'db1': dict(shop, kvm_domain=db),
    }
    log = tmp_path / 'batches-1.log'
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=write_inventory(tmp_path / 'apps1.yml', guests),
                          expect_rc=2, extra_vars={'kvm_change_tasks': str(FLEET / 'app_change.yml'),
                                                   'kvm_change_id': 'app1', 'kvm_batch_log': str(log)})
    recap = result.recap()
    assert log.read_text().split() == ['web1,db1'], result  # one batch, the application; solo never ran
    assert recap['web1']['failed'] == 1 and recap['db1']['failed'] == 1, result
    assert 'solo' not in recap, result
    assert 'The change failed on db1 (the change failed on web1 of application shop)' in result.stdout, result
    assert 'The change failed on web1 (Fail where the change is to fail' in result.stdout, result
    for dom in (db, web):
        assert lab.state(dom) == 'running', dom  # the change shut both off; the group revert brought both back
        assert current_snapshot(lab, dom) == 'pre-change-app1', dom
        names = snapshot_names(lab, dom)
        safety = [n for n in names if n.startswith('pre-change-app1-safety-')]
        assert len(names) == 2 and 'pre-change-app1' in names and len(safety) == 1, names
    assert snapshot_names(lab, solo) == set() and lab.state(solo) == 'running'

    guests['web1']['kvm_change_fails'] = False
    guests['x1'] = {'kvm_domain': cache, 'kvm_application': 'cache'}
    log = tmp_path / 'batches-2.log'
    result = run_playbook(PLAYBOOKS / 'guarded_change.yml', inventory=write_inventory(tmp_path / 'apps2.yml', guests),
                          extra_vars={'kvm_change_tasks': str(FLEET / 'app_change.yml'), 'kvm_change_id': 'app2',
                                      'kvm_batch_log': str(log)})
    assert log.read_text().split() == ['web1,db1', 'x1', 'solo'], result
    assert 'pre-change-app2 is the group snapshot of application shop (web1, db1), taken now' in result.stdout
    for dom in (db, web, solo, cache):
        assert lab.state(dom) == 'shutoff', dom  # the change is kept
        assert not [n for n in snapshot_names(lab, dom) if n.startswith('pre-change-app2')], dom
