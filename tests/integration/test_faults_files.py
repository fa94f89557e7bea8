# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Files, names and mixed snapshot trees: the modes of what a snapshot writes, hostile names and descriptions,
and internal and external snapshots of one domain.

Every module run is a real ``ansible`` process (``module``, from fault_fixtures.py), checked with virsh, qemu-img,
qemu-io (kslab.probes), the process table and the file system. The fault tests drive the host's own libvirtd
(its pids, a private libvirtd beside it): bookworm stack only.
"""

from __future__ import annotations

import json
import os
import pathlib

from kslab.probes import Independent

from fault_fixtures import failed, ok


def test_file_modes(system, module):
    """A full snapshot writes the memory into the image and makes no other file; the image holding it is
    not readable by others. Overlays of disk-only snapshots are readable by their owner only (libvirt 9.0
    makes offline ones 0644)."""
    full, full_disk = system.make('modes-full')
    running, running_disk = system.make('modes-running')
    shutoff, shutoff_disk = system.make('modes-shutoff', state='shutoff')
    run_dir = os.path.dirname(full_disk)
    os.chmod(full_disk, 0o644)
    before = set(os.listdir(run_dir))
    ok(module('snapshot', {'domain': full, 'name': 'full', 'uri': system.uri}))
    new_files = {f for f in set(os.listdir(run_dir)) - before if f.startswith(full)}
    assert new_files == set(), new_files
    assert Independent.qemu_img_snapshots(full_disk) == ['full']
    assert Independent.mode(full_disk) & 0o007 == 0, oct(Independent.mode(full_disk))

    for dom_name, disk in ((running, running_disk), (shutoff, shutoff_disk)):
        ok(module('snapshot', {'domain': dom_name, 'name': 'overlay', 'uri': system.uri, 'disk_only': True}))
        overlay = system.check.blklist(dom_name)['vda']
        assert overlay != disk and os.path.isfile(overlay)
        assert Independent.mode(overlay) & 0o077 == 0, (dom_name, oct(Independent.mode(overlay)))


HOSTILE_NAMES = [
    "it's <b>&amp; ;| <!-- x -->",
    '-d',
    '--help',
    'with  space ',
    'ünïcødé-名前',
]
# libvirt 9.0 puts these into QEMU monitor commands unescaped (savevm "NAME"): fine offline only
MONITOR_UNSAFE_NAMES = ['say "hi"', 'back\\slash']


def test_hostile_names_and_descriptions(system, run_playbook, tmp_path):
    """Names and descriptions full of XML, shell and option syntax are stored exactly as given, on a running
    domain (libvirt talks to QEMU's monitor) and a shut-off one (libvirt runs qemu-img), and can be reverted
    to and deleted; nothing is executed and no XML is injected. Names with " or \\, which libvirt 9.0 would
    put into a monitor command unescaped (QEMU then saves nothing while libvirt records a snapshot), are
    refused for a running domain and work for a shut-off one."""
    canary = tmp_path / 'canary'
    # names cannot hold "/": a relative canary, looked for where a shell of libvirtd, QEMU or the module would run
    name_canary = 'kslab-faults-canary'
    names = HOSTILE_NAMES + [f'$(touch {name_canary})`touch {name_canary}`']
    shell_dirs = ('/', os.getcwd(), os.path.expanduser('~'), '/var/lib/libvirt', '/var/lib/libvirt/qemu')
    name_canary_places = [pathlib.Path(d, name_canary) for d in shell_dirs]
    description = (f"</description><memory snapshot='external' file='{tmp_path}/mem'/><description>"
                   f"<![CDATA[ ]]> &amp; $(touch {canary}) \"'\\")
    running, running_disk = system.make('names-running')
    shutoff, shutoff_disk = system.make('names-shutoff', state='shutoff')
    out = tmp_path / 'results.json'
    play_vars = {'running': running, 'shutoff': shutoff, 'names': names, 'unsafe': MONITOR_UNSAFE_NAMES,
                 'description': description, 'out': str(out)}

    run_playbook('faults_names.yml', dict(play_vars, phase='create'))
    results = json.loads(out.read_text())
    made = [r['snapshot']['name'] for r in results['created_running']['results'] + results['created_shutoff']['results']
            if r['changed']]
    assert made == names + names + MONITOR_UNSAFE_NAMES
    for dom_name, disk, dom_names in ((running, running_disk, names),
                                      (shutoff, shutoff_disk, names + MONITOR_UNSAFE_NAMES)):
        assert system.check.snapshot_names(dom_name) == sorted(dom_names)
        assert Independent.qemu_img_snapshots(disk) == sorted(dom_names)
        for name in dom_names:
            xml = system.check.snapshot_xml(dom_name, name)
            assert xml.findtext('name') == name and xml.findtext('description') == description
            assert xml.find('memory').get('snapshot') in ('internal', 'no') and xml.find('memory').get('file') is None
    for refusal in results['refused']['results']:
        # failed_when: false keeps the play going; the module's failure shows in its message
        assert not refusal['changed'] and "QEMU's monitor without escaping it" in refusal['msg'], refusal
        assert 'Nothing was changed' in refusal['msg'] and 'Traceback' not in refusal['msg']

    run_playbook('faults_names.yml', dict(play_vars, phase='delete'))
    results = json.loads(out.read_text())
    assert results['reverted']['changed'] and results['reverted']['snapshot']['name'] == names[0]
    assert [r['deleted'] for r in results['deleted']['results']] == [[name] for name in names]
    assert system.check.snapshot_names(running) == [] and Independent.qemu_img_snapshots(running_disk) == []
    assert system.check.domstate_reason(running).startswith('running')
    assert not canary.exists() and not (tmp_path / 'mem').exists()
    assert not any(place.exists() for place in name_canary_places)


def test_mixed_internal_and_external_refused(system, module):
    """Internal and external snapshots of one domain do not mix where libvirt 9.0 would lose data or get
    stuck: each refusal says why, and nothing changes (checked with virsh)."""
    dom_name, disk = system.make('mixed')
    base = {'domain': dom_name, 'uri': system.uri}
    ok(module('snapshot', dict(base, name='internal-1')))

    # external on top of internal: libvirt could not delete it again
    msg = failed(module('snapshot', dict(base, name='external-1', disk_only=True)))
    assert 'has internal snapshots (internal-1)' in msg and 'cannot delete an external snapshot' in msg, msg
    assert system.check.snapshot_names(dom_name) == ['internal-1'] and system.check.blklist(dom_name) == {'vda': disk}

    # another tool makes the mix anyway
    system.check.virsh('snapshot-create-as', dom_name, 'external-1', '--disk-only', '--atomic')
    overlay = system.check.blklist(dom_name)['vda']
    assert overlay != disk

    # internal on top of external (libvirt < 11.0 loses data)
    msg = failed(module('snapshot', dict(base, name='internal-2')))
    assert 'has external snapshots (external-1)' in msg and 'loses data' in msg, msg
    # revert to the internal one: libvirt would put the disk back under the overlay
    msg = failed(module('snapshot_revert', dict(base, name='internal-1')))
    assert 'reverting to the internal snapshot "internal-1" is refused' in msg and 'Nothing was changed' in msg, msg

    assert system.check.snapshot_names(dom_name) == ['external-1', 'internal-1']
    assert system.check.current(dom_name) == 'external-1'
    assert system.check.blklist(dom_name) == {'vda': overlay}
    assert Independent.qemu_img_snapshots(disk) == ['internal-1'] and Independent.qemu_img_snapshots(overlay) == []
    assert system.check.domstate_reason(dom_name) == 'running (unpaused)'
