# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The proof of kvm.snapshots.snapshot_group: two guests on two hypervisors, cut at one point.

Two real Debian guests (the lab's image, with qemu-guest-agent) live on two hypervisors: two loopback
addresses of a private sshd (tests/lab/sshd.py), reached by ``qemu+ssh://`` URIs from the controller, as
in test_remote.py (both land on the stack's one libvirtd). In each guest a writer, started through the
guest agent, appends its clock (``time.time_ns()``) to a file, one line at a time, each made durable with
fsync before the next (what a database's log does), some 20 to 100 lines a second.

For each ``freeze`` (``agent``, ``pause``), on the same pair of guests:

1. the clock offset of each guest against the host is read through the agent (``guest-get-time``
   between two host clock readings, the best of several), twice, a second apart;
2. ``snapshot_group`` takes the group snapshot (``state: present``) and reports ``window_ms``;
3. the guests run on for a few seconds, then each file is read through the agent (A);
4. ``snapshot_group`` rolls the group back (``state: reverted``); each file is read again (B);
5. the lines written before the cut are the common prefix of A and B: the lines A has past it were
   written after the snapshot and the revert threw them away (checked: no two of them stand together in B, as a
   revert that kept some would leave them); what B has past it, if anything, the writer wrote after the revert (a
   snapshot with memory brings the writer back, and with it the guest's clock of the cut, so one of its new lines
   may carry the time of a lost one: such lines are counted, not refused).
   The last line before the cut of each guest, moved to the host's clock with that guest's offset, must be
   within ``window_ms`` + tolerance of the other guest's.

The tolerance is measured in the same run, not assumed: the largest interval between two lines of each
writer in the 5 seconds before its cut (a guest's last line can be that much older than the moment it was
frozen or paused), plus, for each guest, half the round trip of its best clock reading and the drift of
its offset between the two readings. The result of the module is checked independently: the snapshot
is in ``virsh snapshot-list`` of both domains, each domain runs after the revert (``virsh domstate``)
with its file systems thawed, and the files are read through the guest agent, not through the module.
Both cuts must also fall inside the run of the module (host clock), and the group is deleted at the end.

Its time is mostly the boot of the pair after the revert of ``freeze: agent`` (disk-only, so the guests boot from
their disks); the pair itself is started from the lab's saved template guest in seconds (Lab.guest_domain).
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import subprocess
import sys
import time
import typing as t
import xml.etree.ElementTree as ET

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)
import sshd as sshd_tool  # noqa: E402  (tests/lab/sshd.py)

STACK = lab_tool.stack()

# the two hypervisors: loopback addresses of the test's own sshd (test_remote.py uses .2 to .7)
HYPERVISORS = {'hv1': '127.0.0.12', 'hv2': '127.0.0.13'}
GROUP_MODULE = 'ansible_collections.kvm.snapshots.plugins.modules.snapshot_group'

# Appends the guest's clock in nanoseconds, one line per write, each line on disk before the next.
WRITER = '''
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
while True:
    os.write(fd, b'%d\\n' % time.time_ns())
    os.fsync(fd)
'''
#: seconds of writing before the snapshot (once the writers run), and after it before the revert
RUN_BEFORE = 4
RUN_AFTER = 3
#: the part of the writer's record before the cut whose largest interval is the writer's share of the tolerance
GAP_SPAN_NS = 5_000_000_000
CLOCK_SOURCE = '/sys/devices/system/clocksource/clocksource0/current_clocksource'


class Hypervisors(t.NamedTuple):
    uris: list[str]
    env: dict[str, str]


@pytest.fixture(scope='module')
def hypervisors(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Hypervisors]:
    """The private sshd on two loopback addresses, and the environment in which libvirt's ssh finds its keys."""
    work = tmp_path_factory.mktemp('group')
    server = sshd_tool.LoopbackSshd(list(HYPERVISORS.values()), root=STACK.root).start()
    try:
        known_hosts = server.known_hosts(work / 'known_hosts', right=HYPERVISORS.values())
        shim = server.ssh_shim(work / 'bin', known_hosts)
        env = dict(os.environ)
        env['PATH'] = f'{shim}{os.pathsep}{env.get("PATH", "")}'
        uris = [f'qemu+ssh://root@{address}:{server.port}/system?no_tty=1&keyfile={server.client_key}'
                for address in HYPERVISORS.values()]
        yield Hypervisors(uris, env)
    finally:
        server.stop()


@pytest.fixture(scope='module')
def pair(lab: t.Any) -> t.Iterator[list[str]]:
    """Two running Debian guests whose agents answer and whose boot is done (restored or booted side by side)."""
    start = time.monotonic()
    guests = [lab.guest_domain(f'grp-{side}') for side in ('a', 'b')]
    try:
        for guest in guests:
            lab.wait_agent(guest, timeout=600)
        for guest in guests:
            lab.guest_exec(guest, ['/usr/bin/systemctl', 'is-system-running', '--wait'], timeout=300)
        print(f'\n{STACK.name}: two guests ready in {time.monotonic() - start:.0f} s (load {os.getloadavg()[0]:.1f})')
        yield guests
    finally:
        for guest in guests:
            lab.remove(guest)


class Offset(t.NamedTuple):
    """A guest's clock minus the host's (ns), and half the round trip of the reading (its uncertainty)."""
    offset: float
    half_rtt: float


def clock_offset(dom: t.Any, readings: int = 7) -> Offset:
    """guest-get-time between two host clock readings, in process (libvirt_qemu); the reading with the shortest
    round trip wins. The guest's time is taken somewhere inside the round trip: offset +- half of it."""
    # libvirt_qemu comes with libvirt-python, which the lab needs
    import libvirt_qemu  # pylint: disable=import-outside-toplevel
    best = None
    for _reading in range(readings):
        before = time.time_ns()
        guest = json.loads(libvirt_qemu.qemuAgentCommand(dom, '{"execute": "guest-get-time"}', 10, 0))['return']
        after = time.time_ns()
        reading = Offset(guest - (before + after) / 2, (after - before) / 2)
        if best is None or reading.half_rtt < best.half_rtt:
            best = reading
    assert best is not None
    return best


def read_lines(lab: t.Any, guest: str, path: str) -> list[str]:
    """The complete lines of a file in the guest, read through the agent (cat)."""
    code, out, err = lab.guest_exec(guest, ['/usr/bin/cat', path], timeout=180)
    assert code == 0, (guest, path, err)
    return out.split('\n')[:-1]


def start_writer(lab: t.Any, guest: str, path: str) -> int:
    return lab.agent_command(guest, {'execute': 'guest-exec', 'arguments': {
        'path': '/usr/bin/python3', 'arg': ['-c', WRITER, path]}})['pid']


def wait_lines(lab: t.Any, guest: str, path: str, count: int = 50, timeout: float = 300) -> None:
    """Wait until the writer has written ``count`` lines (Python starts slowly in a guest on a busy host)."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, _err = lab.guest_exec(guest, ['/usr/bin/wc', '-l', path])
        if code == 0 and int(out.split()[0]) >= count:
            return
        assert time.monotonic() < deadline, f'the writer of {guest} wrote fewer than {count} lines in {timeout} s'
        time.sleep(1)


# kill the writer if that pid is still it (after a revert that booted the guest, it may be another process)
STOP = 'tr "\\0" "\\n" < /proc/$1/cmdline 2>/dev/null | grep -qxF "$2" && kill -9 "$1"; true'


def stop_writer(lab: t.Any, guest: str, pid: int, path: str) -> None:
    lab.guest_exec(guest, ['/bin/sh', '-c', STOP, 'stop', pid, path], timeout=300)


def run_group(env: dict[str, str], tmp_path: pathlib.Path, collections_path: pathlib.Path,
              **args: t.Any) -> tuple[dict[str, t.Any], int, int]:
    """Run the module as Ansible runs it (the module file with its arguments), on the controller.

    Returns its result and the host's clock (ns) just before and just after."""
    args_file = tmp_path / f'group-{len(list(tmp_path.glob("group-*.json")))}.json'
    args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    started = time.time_ns()
    proc = subprocess.run([sys.executable, '-m', GROUP_MODULE, str(args_file)], capture_output=True, text=True,
                          env=dict(env, PYTHONPATH=str(collections_path)), cwd=str(tmp_path), timeout=900,
                          check=False)
    ended = time.time_ns()
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        result = {'failed': True, 'msg': f'no JSON: {proc.stdout[-3000:]} {proc.stderr[-3000:]}'}
    assert proc.returncode == 0 and not result.get('failed'), (result.get('msg'), result)
    return result, started, ended


def cut(before_revert: list[str], after_revert: list[str]) -> int:
    """The number of lines before the cut: the common prefix of the file read before and after the revert."""
    common = 0
    for one, other in zip(before_revert, after_revert):
        if one != other:
            break
        common += 1
    return common


def survivors(lost: list[str], after_revert: list[str]) -> list[tuple[int, str, str]]:
    """The pairs of consecutive lost lines (written after the cut) that stand together in the file after the revert
    too, with the index in ``lost`` of the first: what a revert that kept some of them leaves. A single lost line
    seen again is not one: the writer's new lines carry the restored clock's times, and one may equal a lost one."""
    together = set(zip(after_revert, after_revert[1:]))
    return [(i, one, other) for i, (one, other) in enumerate(zip(lost, lost[1:])) if (one, other) in together]


def guest_clock(lab: t.Any, guest: str) -> str:
    """The guest's clock source and its kernel's last words on clock sources (why a clock may be coarse)."""
    _code, source, _err = lab.guest_exec(guest, ['/usr/bin/cat', CLOCK_SOURCE])
    _code, log, _err = lab.guest_exec(guest, ['/usr/bin/dmesg'])
    return f'{source.strip()}; ' + ' | '.join(line for line in log.splitlines() if 'clocksource' in line)[-2000:]


def largest_gap_before(stamps: list[int], span: int) -> int:
    """The largest interval between consecutive lines in the last ``span`` ns of ``stamps``."""
    recent = [stamp for stamp in stamps if stamp >= stamps[-1] - span]
    return max(later - earlier for earlier, later in zip(recent, recent[1:]))


def domstate(lab: t.Any, guest: str) -> str:
    cp = lab.virsh('domstate', guest)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout.strip()


def revert_disk_only_by_hand(lab: t.Any, guest: str, name: str) -> None:
    """What libvirt 9.9 and later do for a disk-only external snapshot, for libvirt 9.0 (which cannot): stop the
    guest, give it a new overlay on the image the snapshot froze (the overlay's backing file), boot it."""
    root = ET.fromstring(lab.virsh('snapshot-dumpxml', guest, name).stdout)
    overlay = root.find("./disks/disk[@name='vda']/source").get('file')
    frozen = json.loads(subprocess.run(['qemu-img', 'info', '-U', '--output=json', overlay], capture_output=True,
                                       text=True, check=True).stdout)['backing-filename']
    fresh = f'{lab.run_dir}/{guest}.vda.reverted-{name}.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-b', frozen, '-F', 'qcow2', fresh], check=True)
    dom = lab.lookup(guest)
    dom.destroy()
    xml = ET.fromstring(dom.XMLDesc(lab_tool.libvirt_flags_inactive()))
    xml.find("./devices/disk/target[@dev='vda']/..").find('source').set('file', fresh)
    dom = lab.conn.defineXML(ET.tostring(xml, encoding='unicode'))
    dom.create()


@pytest.mark.parametrize('freeze', ['pause', 'agent'])  # pause first: its revert keeps the guests running
def test_group_cut_is_consistent(freeze, lab, pair, hypervisors, collections_path, tmp_path):
    """Both guests' last lines before the cut are within the reported window (+ measured tolerance)."""
    name = f'group-{freeze}'
    ticks = f'/var/tmp/ticks-{freeze}'
    members = [{'domain': guest, 'uri': uri} for guest, uri in zip(pair, hypervisors.uris)]
    doms = [lab.lookup(guest) for guest in pair]
    # freeze: agent takes disk-only (external) snapshots; libvirt 9.0 makes them but cannot revert them, so
    # location: auto would pause instead there: ask for external ones, and revert them by hand below
    old = lab.conn.getLibVersion() < 9_009_000
    location = 'external' if freeze == 'agent' and old else 'auto'
    safety: set[str | None] = set()
    writers = [start_writer(lab, guest, ticks) for guest in pair]
    try:
        for guest in pair:
            wait_lines(lab, guest, ticks)
        time.sleep(RUN_BEFORE / 2)
        first = [clock_offset(dom) for dom in doms]
        time.sleep(RUN_BEFORE / 2)
        offsets = [clock_offset(dom) for dom in doms]

        taken, started, ended = run_group(hypervisors.env, tmp_path, collections_path, name=name, members=members,
                                          state='present', freeze=freeze, location=location)
        window_ns = taken['window_ms'] * 1_000_000
        assert taken['changed'] is True and taken['freeze_used'] == freeze, taken
        assert [m['status'] for m in taken['members']] == ['taken', 'taken'], taken
        for guest in pair:
            assert name in lab.virsh('snapshot-list', guest, '--name').stdout.split(), (guest, taken)
            info = lab.virsh('snapshot-info', guest, name).stdout
            assert ('disk-snapshot' in info) == (freeze == 'agent'), (guest, info)
            assert domstate(lab, guest) == 'running', taken

        time.sleep(RUN_AFTER)
        before_revert = [read_lines(lab, guest, ticks) for guest in pair]

        if freeze == 'agent' and old:
            for guest in pair:
                revert_disk_only_by_hand(lab, guest, name)
        else:
            reverted, _r0, _r1 = run_group(hypervisors.env, tmp_path, collections_path, name=name,
                                           members=members, state='reverted')
            assert [m['status'] for m in reverted['members']] == ['reverted', 'reverted'], reverted
            safety = {m['safety_snapshot'] for m in reverted['members']}
        back = time.monotonic()
        for guest in pair:
            lab.wait_agent(guest, timeout=600)
            assert domstate(lab, guest) == 'running'
            assert lab.agent_command(guest, {'execute': 'guest-fsfreeze-status'}) == 'thawed'
        after_revert = [read_lines(lab, guest, ticks) for guest in pair]

        facts: dict[str, t.Any] = {'window_ms': taken['window_ms'], 'location': location,
                                   'agents_back_s': round(time.monotonic() - back, 1), 'guests': []}
        last_on_host = []
        tolerance = 0.0
        gaps = []
        for guest, one, other, offset, early in zip(pair, before_revert, after_revert, offsets, first):
            count = cut(one, other)
            stamps = [int(line) for line in one]
            # the writer ran before the snapshot, ran on after it, and the revert threw those lines away
            assert count >= 20, (guest, count, facts)
            assert len(one) - count >= 10, (guest, len(one), count, facts)
            kept = survivors(one[count:], other)
            assert not kept, (guest, 'lines written after the snapshot survived the revert', count, len(one), len(other),
                              kept[:10], guest_clock(lab, guest))
            last = stamps[count - 1]
            gap = largest_gap_before(stamps[:count], GAP_SPAN_NS)
            drift = abs(offset.offset - early.offset)
            gaps.append(gap)
            tolerance += offset.half_rtt + drift
            last_on_host.append(last - offset.offset)
            facts['guests'].append({
                'guest': guest, 'member_window_ms': taken['members'][len(gaps) - 1]['window_ms'],
                'lines_before_cut': count, 'lines_after_cut_lost': len(one) - count,
                'lines_after_revert': len(other) - count, 'lost_times_seen_again': len(set(one[count:]) & set(other)),
                'offset_ms': round(offset.offset / 1e6, 3),
                'half_rtt_ms': round(offset.half_rtt / 1e6, 3), 'drift_ms': round(drift / 1e6, 3),
                'largest_gap_ms': round(gap / 1e6, 3),
                'cut_after_module_start_ms': round((last - offset.offset - started) / 1e6, 3)})
        tolerance += max(gaps)
        apart = abs(last_on_host[0] - last_on_host[1])
        facts.update(apart_ms=round(apart / 1e6, 3), tolerance_ms=round(tolerance / 1e6, 3))
        print(f'\n{STACK.name} freeze={freeze}: {json.dumps(facts)}')
        # each cut inside the run of the module, as the host's clock saw it
        for when in last_on_host:
            assert started - tolerance <= when <= ended + tolerance, facts
        # the proof: the two cuts are no further apart than the window the module reported
        assert apart <= window_ns + tolerance, facts
    finally:
        for guest, pid in zip(pair, writers):
            # a guest left frozen (the test failed) refuses guest-exec: thaw it first
            with contextlib.suppress(lab_tool.AgentError):
                lab.agent_command(guest, {'execute': 'guest-fsfreeze-thaw'})
            stop_writer(lab, guest, pid, ticks)
        if not (freeze == 'agent' and old):
            # the safety group the revert took, then the group, also after a failure (one kind of snapshot per
            # domain: the next test's external snapshots need the internal ones gone; an external snapshot goes
            # after its children); a failure here does not hide the test's own, and the check below finds it
            for group in (*sorted(g for g in safety if g), name):
                with contextlib.suppress(AssertionError):
                    run_group(hypervisors.env, tmp_path, collections_path, name=group, members=members,
                              state='absent')
    if not (freeze == 'agent' and old):
        assert len(safety) == 1 and None not in safety, reverted
        for guest in pair:
            assert lab.virsh('snapshot-list', guest, '--name').stdout.split() == []
