# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter kvm.snapshots.snapshot_report on hand-built module results: ages, stale and hand-made snapshots,
totals per hypervisor, storage and VM, the prune preview, every kind of alert at its boundary, hypervisors that
could not be read, results without the size keys, bad thresholds; and the page and summary templates rendered
from its output (escaping, the numbers shown)."""

from __future__ import annotations

import json
import pathlib

import jinja2
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.kvm.snapshots.plugins.filter.snapshot_report import FilterModule
from ansible_collections.kvm.snapshots.plugins.plugin_utils._snapshot_report import (
    human_age,
    human_bytes,
    snapshot_report,
)

NOW = 1_800_000_000
DAY = 86400
GIB = 1024 ** 3
TEMPLATES = pathlib.Path(__file__).resolve().parents[4] / 'playbooks' / 'templates'


def snap(domain, name, age_days, **extra):
    epoch = NOW - int(age_days * DAY)
    return dict({'domain': domain, 'name': name, 'creation_time_epoch': epoch, 'creation_time': f'T{epoch}',
                 'state': 'shutoff', 'location': 'internal', 'memory': 'no', 'current': False, 'parent': None,
                 'consistent': True}, **extra)


def domain(*disks, storage=None, **extra):
    facts = dict({'current': None, 'count': 0, 'state': 'running', 'image_only': [],
                  'disks': [dict({'name': f'vd{chr(97 + i)}', 'type': 'file', 'format': 'qcow2'}, **d)
                            for i, d in enumerate(disks)]}, **extra)
    if storage is not None:
        facts['storage'] = storage
    return facts


def info(domains, snapshots, version='9.0.0'):
    return {'changed': False, 'libvirt_version': version, 'domains': domains, 'snapshots': snapshots}


def hv(name, result, prune=None, domains=None):
    return {'hypervisor': name, 'uri': 'qemu:///system', 'domains': domains or ['*'], 'info': result, 'prune': prune}


@pytest.fixture
def fleet():
    """hv1: web1 (3 snapshots, sizes known), db1 (a hand-made old one); hv2 unreachable."""
    store = {'path': '/var/lib/libvirt/images', 'free_bytes': 15 * GIB, 'total_bytes': 100 * GIB}
    hv1 = info({
        'web1': domain({'file': '/var/lib/libvirt/images/web1.qcow2', 'capacity_bytes': 20 * GIB,
                        'allocation_bytes': 8 * GIB}, storage=[dict(store, snapshot_bytes=3 * GIB)],
                       snapshot_bytes=3 * GIB, current='nightly-3'),
        'db1': domain({'file': '/var/lib/libvirt/images/db1.qcow2', 'capacity_bytes': 10 * GIB,
                       'allocation_bytes': 2 * GIB}, storage=[dict(store, snapshot_bytes=GIB)], snapshot_bytes=GIB),
        'other': domain({'file': '/srv/other.qcow2'}),
    }, [
        snap('web1', 'nightly-1', 40, size_bytes=GIB, size_exact=True),
        snap('web1', 'nightly-2', 2, size_bytes=GIB, size_exact=True),
        snap('web1', 'pre-change-OPS-1', 0.5, size_bytes=GIB, size_exact=False),
        snap('db1', 'before <my> "fix"', 10, size_bytes=GIB, size_exact=True),
        snap('other', 'x', 1),
    ])
    prune = {'changed': True, 'unmatched': [], 'results': [
        {'domain': 'web1', 'changed': True, 'failed': False,
         'deleted': [{'name': 'nightly-1', 'creation_time': 'x', 'reason': 'older than 7d'}], 'kept': []},
        {'domain': 'db1', 'changed': False, 'failed': False, 'deleted': [], 'kept': []}]}
    down = {'unreachable': True, 'changed': False, 'msg': 'Failed to connect to the host via ssh'}
    return [hv('hv2', down), hv('hv1', hv1, prune, domains=['web*', 'db1', 'nomatch-*'])]


def report(hosts, **options):
    return snapshot_report(hosts, now=NOW, **options)


def test_registered_under_its_name_and_passes_everything_on(fleet):
    registered = FilterModule().filters()['snapshot_report']
    assert registered(fleet, now=NOW, age_warn='7d', fail_on='crit') == report(fleet, age_warn='7d', fail_on='crit')
    with pytest.raises(AnsibleFilterError, match='expects a list'):
        registered('hv1')


def test_numbers_of_a_fleet(fleet):
    rep = report(fleet, age_warn='7d', age_crit='30d', prune_match='nightly-*')
    assert rep['schema_version'] == 1 and rep['generated_epoch'] == NOW
    assert rep['generated_at'] == '2027-01-15T08:00:00Z'
    # hypervisors sorted by name; globs choose the VMs (other is left out), the glob that matched nothing said
    hv1, hv2 = rep['hypervisors']
    assert (hv1['name'], hv1['ok'], hv1['domains'], hv1['snapshots'], hv1['snapshot_bytes']) == \
        ('hv1', True, 2, 4, 4 * GIB)
    assert hv1['unmatched'] == ['nomatch-*'] and hv1['oldest_age_seconds'] == 40 * DAY
    assert (hv2['ok'], hv2['snapshots'], hv2['snapshot_bytes']) == (False, 0, None)
    assert hv2['error'] == 'unreachable: Failed to connect to the host via ssh'
    assert rep['totals'] == {
        'hypervisors': 2, 'hypervisors_unread': 1, 'domains': 2, 'snapshots': 4, 'snapshot_bytes': 4 * GIB,
        'stale': 2, 'manual': 1, 'prune_would_delete': 1, 'prune_would_free_bytes': GIB,
        'alerts_crit': 2, 'alerts_warn': 1, 'errors': 1}
    # VMs: most space first, with their share of their disks
    assert [(d['name'], d['snapshots'], d['snapshot_bytes'], d['held_percent']) for d in rep['domains']] == [
        ('web1', 3, 3 * GIB, 15.0), ('db1', 1, GIB, 10.0)]
    web1 = rep['domains'][0]
    assert (web1['disk_capacity_bytes'], web1['disk_allocation_bytes'], web1['size_exact']) == \
        (20 * GIB, 8 * GIB, False)
    assert (web1['oldest_age_seconds'], web1['newest_age_seconds'], web1['would_prune']) == (40 * DAY, DAY // 2, 1)
    # snapshots oldest first; stale: old (>= age_warn) or made by hand
    assert [s['name'] for s in rep['snapshots']] == ['nightly-1', 'before <my> "fix"', 'nightly-2',
                                                     'pre-change-OPS-1']
    assert [(s['name'], s['stale_reasons']) for s in rep['stale']] == [
        ('nightly-1', ['old']), ('before <my> "fix"', ['old', 'manual'])]
    assert [s['managed'] for s in rep['snapshots']] == [True, False, True, True]
    # the storage both VMs share: free space from snapshot_info, space held summed over the VMs
    [store] = rep['storage']
    assert store == {'hypervisor': 'hv1', 'path': '/var/lib/libvirt/images', 'free_bytes': 15 * GIB,
                     'total_bytes': 100 * GIB, 'snapshot_bytes': 4 * GIB, 'domains': ['db1', 'web1'],
                     'free_percent': 15.0, 'held_percent': 4.0}
    # the preview, with age and size of the snapshot it would delete, and the module's reason
    assert rep['prune_preview'] == [{'hypervisor': 'hv1', 'domain': 'web1', 'name': 'nightly-1',
                                     'creation_time': 'x', 'age_seconds': 40 * DAY, 'size_bytes': GIB,
                                     'reason': 'older than 7d'}]
    assert [(b['label'], b['count']) for b in rep['age_histogram']] == [
        ('< 1 day', 1), ('1-7 days', 1), ('7-30 days', 1), ('30-90 days', 1), ('90-365 days', 0), ('> 1 year', 0)]
    # alerts: CRIT first; one line each; the default free thresholds are the playbook's, not the filter's
    assert [a['message'] for a in rep['alerts']] == [
        'CRIT age hv1/web1: 1 snapshot older than 30.0 days, oldest "nightly-1" 40.0 days',
        'CRIT unread hv2: not read: unreachable: Failed to connect to the host via ssh',
        'WARN age hv1/db1: 1 snapshot older than 7.0 days, oldest "before <my> "fix"" 10.0 days',
    ]
    assert rep['status'] == 'CRIT' and rep['fail']
    assert rep['headline'] == 'CRIT: 2 critical, 1 warning, 4 snapshots of 2 VMs on 2 hypervisors (1 not read), 2 stale'
    json.dumps(rep)  # the JSON file is this dict as it is


@pytest.mark.parametrize('count, expected', [(4, None), (5, 'WARN'), (9, 'WARN'), (10, 'CRIT'), (11, 'CRIT')])
def test_count_alert_at_its_boundaries(count, expected):
    snaps = [snap('vm', f'pre-change-{i}', 0) for i in range(count)]
    hosts = [hv('hv', info({'vm': domain({'file': '/i/vm.qcow2'})}, snaps))]
    rep = report(hosts, count_warn=5, count_crit='10')
    levels = [a['level'] for a in rep['alerts']]
    assert levels == ([] if expected is None else [expected])
    assert rep['status'] == (expected or 'OK')
    if expected:
        limit = 10 if expected == 'CRIT' else 5
        assert rep['alerts'][0]['message'] == f'{expected} count hv/vm: {count} snapshots ({expected.lower()} at {limit})'


@pytest.mark.parametrize('free, expected', [(21, None), (20, 'WARN'), (11, 'WARN'), (10, 'CRIT'), (0, 'CRIT')])
def test_free_alert_at_its_boundaries(free, expected):
    store = [{'path': '/pool', 'free_bytes': free * GIB, 'total_bytes': 100 * GIB, 'snapshot_bytes': 5 * GIB}]
    hosts = [hv('hv', info({'vm': domain({'file': '/pool/vm.qcow2'}, storage=store)}, []))]
    rep = report(hosts, free_warn=20, free_crit=10)
    assert [a['level'] for a in rep['alerts']] == ([] if expected is None else [expected])
    if expected:
        assert rep['alerts'][0]['storage'] == '/pool'
        assert rep['alerts'][0]['message'].startswith(f'{expected} free hv:/pool: {free}% free, ')
        assert 'snapshots hold 5.0 GiB' in rep['alerts'][0]['message']


def test_held_alert_and_age_exactly_at_the_threshold():
    hosts = [hv('hv', info({'vm': domain({'file': '/i/vm.qcow2', 'capacity_bytes': 10 * GIB,
                                          'allocation_bytes': GIB}, snapshot_bytes=5 * GIB)},
                           [snap('vm', 'pre-change-1', 7, size_bytes=5 * GIB, size_exact=True)]))]
    rep = report(hosts, held_warn=50, held_crit=80, age_warn='7d', age_crit='1w1d')
    assert [a['message'] for a in rep['alerts']] == [
        'WARN age hv/vm: 1 snapshot older than 7.0 days, oldest "pre-change-1" 7.0 days',
        'WARN held hv/vm: snapshots hold 5.0 GiB, 50% of its 10.0 GiB of disks (warn at 50%)']
    assert not report(hosts, held_warn=51, age_warn='8d')['alerts']


def test_fail_on_levels(fleet):
    assert report(fleet, age_warn='7d', age_crit='', fail_on='crit')['fail']  # the unreachable hypervisor: CRIT
    ok_fleet = fleet[1:]
    assert report(ok_fleet, age_warn='7d', age_crit='', fail_on='warn')['fail']
    rep = report(ok_fleet, age_warn='7d', age_crit='', fail_on='crit')
    assert rep['status'] == 'WARN' and not rep['fail']
    assert not report(fleet, age_warn='1d', age_crit='2d', fail_on='never')['fail']
    rep = report(ok_fleet, age_warn='', age_crit='')
    assert rep['status'] == 'OK' and not rep['fail'] and rep['alerts'] == []
    with pytest.raises(AnsibleFilterError, match='fail_on must be warn, crit or never'):
        report(fleet, fail_on='sometimes')


def test_stale_age_and_managed_names(fleet):
    rep = report(fleet, stale_age='1d', managed=['pre-change-*', 'nightly-*', 'before*'])
    assert [(s['name'], s['stale_reasons']) for s in rep['stale']] == [
        ('nightly-1', ['old']), ('before <my> "fix"', ['old']), ('nightly-2', ['old'])]
    # without a prune rule nor the name in the managed globs, a nightly is made by hand
    rep = report(fleet, managed='pre-change-*')
    assert [s['name'] for s in rep['snapshots'] if not s['managed']] == ['nightly-1', 'before <my> "fix"',
                                                                         'nightly-2']
    assert rep['thresholds']['stale_age_seconds'] is None  # no age_warn, no stale_age: only names make stale


def test_results_without_sizes_say_unknown():
    """Before snapshot_info reports sizes: nulls, the free space of each disk's directory, no held alert."""
    hosts = [hv('hv', info({'vm': domain({'file': '/pool/vm.qcow2', 'free_bytes': 7 * GIB},
                                         {'file': '/pool/vm-data.qcow2', 'free_bytes': 7 * GIB},
                                         {'type': 'block', 'file': '/dev/sdb'})},
                           [snap('vm', 'pre-change-1', 1)]))]
    rep = report(hosts, held_warn=1, free_warn=50)
    [dom] = rep['domains']
    assert (dom['snapshot_bytes'], dom['disk_capacity_bytes'], dom['held_percent']) == (None, None, None)
    assert dom['sizes_unknown'] == ['vda', 'vdb']
    assert rep['totals']['snapshot_bytes'] is None and rep['hypervisors'][0]['snapshot_bytes'] is None
    assert rep['storage'] == [{'hypervisor': 'hv', 'path': '/pool', 'free_bytes': 7 * GIB, 'total_bytes': None,
                               'snapshot_bytes': None, 'domains': ['vm'], 'free_percent': None,
                               'held_percent': None}]
    assert rep['alerts'] == []


def test_failed_reads_are_reported_not_fatal():
    good = hv('good', info({'vm': domain({'file': '/i/vm.qcow2'})}, [snap('vm', 'pre-change-1', 1)]))
    failed = hv('bad', {'changed': False, 'failed': False, 'failed_when_result': False,
                        'msg': 'Connecting to libvirt at qemu:///system failed'})  # failed_when: false
    errors = hv('partial', dict(info({'vm2': domain()}, []), errors={'vm3': 'Domain "vm3" cannot be read'}))
    prune_failed = hv('prunefail', info({'vm4': domain()}, []),
                      prune={'failed': True, 'msg': '1 of 1 domains failed', 'results': [
                          {'domain': 'vm4', 'failed': True, 'changed': False, 'msg': 'refused', 'deleted': []}]})
    refused = {'failed': False, 'changed': False, 'msg': 'Unsupported parameters: keep_hourly'}  # failed_when
    prune_refused = hv('pruneopt', info({}, []), prune=refused)
    rep = report([good, failed, errors, prune_failed, prune_refused,
                  hv('skipped', {'skipped': True, 'changed': False})])
    by_name = {h['name']: h for h in rep['hypervisors']}
    assert by_name['good']['ok'] and by_name['partial']['ok'] and by_name['prunefail']['ok']
    assert by_name['bad']['error'] == 'Connecting to libvirt at qemu:///system failed'
    assert by_name['skipped']['error'].startswith('not read (skipped')
    assert rep['errors'] == [
        {'hypervisor': 'bad', 'domain': None, 'message': 'Connecting to libvirt at qemu:///system failed'},
        {'hypervisor': 'partial', 'domain': 'vm3', 'message': 'Domain "vm3" cannot be read'},
        {'hypervisor': 'prunefail', 'domain': 'vm4', 'message': 'prune preview: refused'},
        {'hypervisor': 'pruneopt', 'domain': None, 'message': 'prune preview: Unsupported parameters: keep_hourly'},
        {'hypervisor': 'skipped', 'domain': None, 'message': 'not read (skipped: a condition was false)'}]
    assert [a['message'] for a in rep['alerts']] == [
        'CRIT unread bad: not read: Connecting to libvirt at qemu:///system failed',
        'CRIT unread partial/vm3: not read: Domain "vm3" cannot be read',
        'CRIT unread skipped: not read: not read (skipped: a condition was false)']
    assert rep['totals']['snapshots'] == 1 and rep['status'] == 'CRIT'


def test_unknown_age_and_empty_fleet():
    hosts = [hv('hv', info({'vm': domain()}, [dict(snap('vm', 'x', 0), creation_time_epoch=None)]))]
    rep = report(hosts, age_warn='1s', stale_age='1s')
    assert rep['snapshots'][0]['age_seconds'] is None and rep['stale'][0]['stale_reasons'] == ['manual']
    assert rep['age_histogram'][-1] == {'label': 'unknown', 'min_seconds': None, 'max_seconds': None, 'count': 1}
    empty = report([])  # a host pattern that matched nothing: not a quiet fleet
    assert empty['status'] == 'CRIT' and empty['totals']['hypervisors'] == 0 and empty['domains'] == []
    assert [a['message'] for a in empty['alerts']] == [
        'CRIT unread no hypervisor to read (does kvm_target match any host?)']
    assert empty['headline'] == 'CRIT: 1 critical, 0 warning, 0 snapshots of 0 VMs on 0 hypervisors, 0 stale'


@pytest.mark.parametrize('options, message', [
    ({'age_warn': 'soon'}, 'Cannot read the duration "soon" of kvm_report_age_warn'),
    ({'count_crit': 'many'}, 'kvm_report_count_crit must be a number'),
    ({'free_warn': -1}, 'kvm_report_free_warn must be 0 or more'),
])
def test_bad_thresholds(options, message):
    with pytest.raises(AnsibleFilterError, match=message):
        report([], **options)


@pytest.mark.parametrize('hosts', ['hv1', [{'info': {}}], ['hv1']])
def test_bad_input(hosts):
    with pytest.raises(AnsibleFilterError):
        report(hosts)


def test_human_units():
    assert [human_bytes(v) for v in (None, 0, 1023, 1536, 5 * 1024 ** 2, 3 * GIB // 2, 2 * 1024 ** 4)] == [
        'unknown', '0 B', '1023 B', '1.5 KiB', '5.0 MiB', '1.5 GiB', '2.0 TiB']
    assert [human_age(v) for v in (None, 59, 120, 5400, DAY, 36 * DAY)] == [
        'unknown', '0 minutes', '2 minutes', '1.5 hours', '1.0 days', '36.0 days']


def render(name, rep):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template(name).render(kvm_rep=rep)


def test_page_escapes_names_and_shows_the_numbers(fleet):
    hostile = '<script>alert(1)</script>'
    fleet[1]['info']['snapshots'].append(snap('db1', hostile, 100))
    rep = report(fleet, age_warn='7d', age_crit='30d', prune_match='nightly-*')
    page = render('snapshot_report.html.j2', rep)
    assert hostile not in page and '&lt;script&gt;alert(1)&lt;/script&gt;' in page
    assert '<script' not in page and 'http://' not in page and 'https://' not in page  # no script, no network
    assert 'id="status" class="status CRIT" data-status="CRIT"' in page
    assert '<div class="v" id="total-snapshots" data-value="5">5</div>' in page
    assert '<td class="num" data-bytes="3221225472">3.0 GiB (estimate)</td>' in page  # web1, one size estimated
    assert page.count('<svg') >= 3 and '<g class="bar" data-label="30-90 days" data-value="1">' in page
    assert 'not read: unreachable: Failed to connect to the host via ssh' in page
    summary = render('snapshot_report.md.j2', rep)
    assert summary.startswith('# Snapshot report: CRIT\n')
    assert '- CRIT unread hv2: not read: unreachable: Failed to connect to the host via ssh' in summary
    assert '| hv1 | /var/lib/libvirt/images | 15.0 GiB (15 %) | 100.0 GiB | 4.0 GiB |' in summary


def test_page_of_an_empty_fleet():
    page = render('snapshot_report.html.j2', report([]))
    assert 'no hypervisor to read' in page and 'No stale snapshot.' in page and 'No VM.' in page
