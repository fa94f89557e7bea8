# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Concurrency: runs at once on separate domains (hypervisor_jobs), on one domain, a batch overlapping a single
run, and a revert while a snapshot is written. The QEMU of a domain is frozen in the middle of a libvirt job
(kslab.processes.frozen_mid_job) until the other side of the race is in place.

Every module run is a real ``ansible`` process (``module``, from fault_fixtures.py), checked with virsh, qemu-img,
qemu-io (kslab.probes), the process table and the file system. The fault tests drive the host's own libvirtd
(its pids, a private libvirtd beside it): bookworm stack only.
"""

from __future__ import annotations

import time

import pytest

from kslab.probes import Independent
from kslab.processes import BusyWatch, frozen, frozen_mid_job, job_active, wait_until

from fault_fixtures import failed, ok


@pytest.mark.parametrize('limit', [0, 1])
def test_hypervisor_jobs_limit_separate_runs(limit, system, ram_blob, module):
    """Three runs at once, one heavy domain each. The QEMU of the first domain whose snapshot starts is frozen
    in the middle of it: with hypervisor_jobs=1 the other two runs wait for their turn (libvirt shows no other
    job) and take their snapshots once it is over; without a limit their jobs run meanwhile (which shows that
    the watch sees jobs at the same time)."""
    doms = [system.make(f'jobs{limit}-{i}', heavy_blob=ram_blob) for i in range(3)]
    handles = [system.dom(name) for name, _disk in doms]
    with BusyWatch(handles) as watch:
        runs = [module('snapshot', {'domain': name, 'name': 'nightly', 'uri': system.uri, 'hypervisor_jobs': limit})
                for name, _disk in doms]
        first = wait_until(lambda: next((h for h in handles if job_active(h)), None), 120, 'a first snapshot job')
        others = [run for run, handle in zip(runs, handles) if handle is not first]
        with frozen_mid_job(system.qemu_pid(first.name()), first, 'the first snapshot job'):
            if limit:
                wait_until(lambda: all(run.module_running() for run in others), 60, 'the other runs to reach the module',
                           0.1)
                time.sleep(2)
                assert watch.most == 1, f'{watch.most} snapshot jobs ran at once under hypervisor_jobs=1'
                assert all(run.rc is None for run in others)
            else:
                wait_until(lambda: watch.most >= 2, 120, 'another snapshot job while the first one is frozen')
        results = [ok(run) for run in runs]
    assert all(result['changed'] for result in results)
    if limit:
        assert watch.most == 1, f'{watch.most} snapshot jobs ran at once under hypervisor_jobs=1'
    for name, disk in doms:
        assert system.check.snapshot_names(name) == ['nightly']
        assert Independent.qemu_img_snapshots(disk) == ['nightly']
        assert system.check.domstate_reason(name) == 'running (unpaused)'
        Independent.qemu_img_check(disk, in_use=True)


def test_concurrent_runs_on_one_domain(system, ram_blob, module):
    """While one run takes a snapshot, a second run asking for the same name waits for it and reports no change
    (libvirt lists the snapshot from the start, so it must not answer before the first is done), and a run for
    another name waits for the busy domain for busy_timeout, then fails saying what holds it."""
    dom_name, disk = system.make('same-name', heavy_blob=ram_blob)
    dom, qemu = system.dom(dom_name), system.qemu_pid(dom_name)
    args = {'domain': dom_name, 'name': 'nightly', 'uri': system.uri}

    first = module('snapshot', args)
    with frozen_mid_job(qemu, dom, 'the first snapshot job'):
        second = module('snapshot', args)
        other = module('snapshot', dict(args, name='other', busy_timeout=1))
        wait_until(second.module_running, 60, 'the second run to reach the module', 0.1)
        busy_msg = failed(other, timeout=120)  # libvirt gives up on the lock after 30 s
        assert second.rc is None and first.rc is None
        thawed = time.monotonic()
    created = ok(first)
    waited = ok(second)
    assert created['changed'] and not waited['changed']
    assert second.ended > thawed, 'the second run answered before the first snapshot was done'
    assert 'another job holds the domain' in busy_msg and 'cannot acquire state change lock' in busy_msg, busy_msg
    assert system.check.snapshot_names(dom_name) == ['nightly']
    assert Independent.qemu_img_snapshots(disk) == ['nightly']
    assert system.check.snapshot_xml(dom_name, 'nightly').findtext('state') == 'running'
    assert system.check.domstate_reason(dom_name) == 'running (unpaused)'
    Independent.qemu_img_check(disk, in_use=True)


def test_batch_overlapping_a_single_run(system, module):
    """A batch over three domains and a single-domain run on the middle one, both in flight at once
    (the middle domain's QEMU frozen until both wait for it): one snapshot per domain, both runs succeed,
    and exactly one of them made the middle one."""
    doms = [system.make(f'batch-{i}') for i in range(3)]
    middle, middle_disk = doms[1]
    qemu = system.qemu_pid(middle)
    with frozen(qemu):
        batch = module('snapshot', {'domains': [lab_name for lab_name, _disk in doms], 'name': 'nightly',
                                    'uri': system.uri})
        single = module('snapshot', {'domain': middle, 'name': 'nightly', 'uri': system.uri})
        wait_until(lambda: batch.module_running() and single.module_running(), 60, 'both runs to reach the module',
                   0.1)
        time.sleep(2)
        assert batch.rc is None and single.rc is None
    batch_result, single_result = ok(batch), ok(single)
    by_domain = {r['domain']: r for r in batch_result['results']}
    assert by_domain[doms[0][0]]['changed'] and by_domain[doms[2][0]]['changed']
    assert [by_domain[middle]['changed'], single_result['changed']].count(True) == 1
    for dom_name, disk in doms:
        assert system.check.snapshot_names(dom_name) == ['nightly']
        assert Independent.qemu_img_snapshots(disk) == ['nightly']
        assert system.check.domstate_reason(dom_name) == 'running (unpaused)'
        Independent.qemu_img_check(disk, in_use=True)
    assert system.qemu_pid(middle) == qemu


def test_revert_while_a_create_is_in_progress(system, ram_blob, module):
    """A revert started while a snapshot is being written waits for it; both succeed, the new snapshot is
    complete and the domain ends at the snapshot it was reverted to."""
    dom_name, disk = system.make('revert-race', heavy_blob=ram_blob)
    dom = system.dom(dom_name)
    base = {'domain': dom_name, 'uri': system.uri}
    ok(module('snapshot', dict(base, name='old')))
    qemu = system.qemu_pid(dom_name)

    create = module('snapshot', dict(base, name='new'))
    with frozen_mid_job(qemu, dom, 'the snapshot job'):
        revert = module('snapshot_revert', dict(base, name='old'))
        wait_until(revert.module_running, 60, 'the revert to reach the module', 0.1)
        time.sleep(2)
        assert revert.rc is None and create.rc is None
    assert ok(create)['changed']
    reverted = ok(revert)
    assert reverted['changed'] and reverted['state'] == 'running'
    assert system.check.snapshot_names(dom_name) == ['new', 'old']
    assert Independent.qemu_img_snapshots(disk) == ['new', 'old']
    assert system.check.snapshot_xml(dom_name, 'new').findtext('state') == 'running'
    assert system.check.current(dom_name) == 'old'
    assert system.check.domstate_reason(dom_name).startswith('running')
    Independent.qemu_img_check(disk, in_use=True)
