# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What each kind of snapshot costs, on each stack of the lab, against plain virsh (see benchmarks/README.md).

    python3 benchmarks/kinds.py                          # both stacks, 2 repetitions
    python3 benchmarks/kinds.py --stack trixie --repeat 1 --no-save   # a quick look at one stack

On a real Debian guest (512 MiB RAM by default, part of it filled with random data in a tmpfs so that
the memory has something to save), for three kinds of snapshot:

* internal with memory (BIOS guest, ``location: internal``),
* external with memory (UEFI guest with a raw NVRAM and ``location: auto`` on libvirt 9.9 or later,
  where auto picks it; ``location: external`` on a BIOS guest before 9.9, where auto refuses),
* disk-only external, quiesced (``disk_only: true, quiesce: true``: the guest agent freezes the file
  systems),

it times create, revert and delete twice in the same repetition: with the collection's module (the
module file run by Python with its arguments, as Ansible runs it, without ansible-playbook around it)
and with the plain ``virsh snapshot-create-as`` / ``snapshot-revert`` / ``snapshot-delete`` that does
the same. Each is the wall-clock time of the whole command. Which of the two goes first alternates
between repetitions. The guest's stall is read from libvirt's lifecycle events (SUSPENDED or STOPPED
to the last RESUMED or STARTED); for the quiesced snapshot, a writer in the guest also records how
long a write to its root file system waited (the freeze). Every step is checked, untimed, with
libvirt-python (the snapshot is there with the expected location and memory, the domain is in the
expected state, the snapshot is gone after the delete).

Writes a markdown report to benchmarks/results/<UTC time>-kinds.md and results/latest-kinds.md, and
puts it into benchmarks/README.md and the top-level README.md between the "snapshot kinds" markers.
Needs root and the lab (tests/lab/lab.py up); every domain and file it makes is named
``kslab-bkind-<random>-...`` and removed at the end, also when it fails.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import xml.etree.ElementTree as ET

REPO = pathlib.Path(__file__).resolve().parents[1]
HERE = REPO / 'benchmarks'
START = '<!-- snapshot kinds: start (written by benchmarks/kinds.py) -->'
END = '<!-- snapshot kinds: end -->'
READMES = (HERE / 'README.md', REPO / 'README.md')

sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)

import _results  # noqa: E402  (benchmarks/_results.py, beside this script)

EXTERNAL_REVERT = 9_009_000
EVENT_NAMES = {0: 'defined', 1: 'undefined', 2: 'started', 3: 'suspended', 4: 'resumed', 5: 'stopped',
               6: 'shutdown', 7: 'pmsuspended', 8: 'crashed'}
STOPS = (3, 5, 6)    # SUSPENDED, STOPPED, SHUTDOWN (QEMU ended: a revert that restarts it)
RUNS = (2, 4)        # STARTED, RESUMED
OPS = ('create', 'revert', 'delete')
TOOLS = ('module', 'virsh')

KINDS = {
    'internal': 'internal with memory (BIOS guest)',
    'external': 'external with memory',
    'disk_only': 'disk-only external, quiesced',
}


def log(msg: str) -> None:
    print(f'[kinds {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


class BenchError(Exception):
    """A step failed or did not do what it should; the run is not valid."""


class Unsupported(Exception):
    """The operation is not supported on this libvirt (a cell of the table, not a failure)."""


class Events:
    """Lifecycle events of every domain on one connection, with the host's clock."""

    def __init__(self, libvirt: t.Any, uri: str) -> None:
        self.libvirt = libvirt
        self.conn = libvirt.open(uri)
        self.seen: list[tuple[float, str, int, int]] = []
        self.callback = self.conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            lambda _c, dom, event, detail, _o: self.seen.append((time.perf_counter(), dom.name(), event, detail)),
            None)

    def since(self, mark: int, domain: str) -> list[tuple[float, int, int]]:
        return [(ts, ev, det) for ts, name, ev, det in self.seen[mark:] if name == domain]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.domainEventDeregisterAny(self.callback)
        with contextlib.suppress(Exception):
            self.conn.close()


def stopped_seconds(events: list[tuple[float, int, int]]) -> float | None:
    """From the first SUSPENDED/STOPPED/SHUTDOWN to the last RESUMED/STARTED after it; 0 without a stop; None when the
    guest did not run again."""
    stops = [ts for ts, ev, _d in events if ev in STOPS]
    if not stops:
        return 0.0
    runs = [ts for ts, ev, _d in events if ev in RUNS and ts >= stops[0]]
    last_stop = max(stops)
    if not runs or max(runs) < last_stop:
        return None
    return max(runs) - stops[0]


class KindBench:
    def __init__(self, args: argparse.Namespace, libvirt: t.Any) -> None:
        self.args = args
        self.libvirt = libvirt
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix='kvm-snapshots-kinds-'))
        collections = self.tmp / 'collections' / 'ansible_collections' / 'kvm'
        collections.mkdir(parents=True)
        (collections / 'snapshots').symlink_to(REPO)
        self.collections_root = self.tmp / 'collections'
        self._runs = 0
        # (stack, kind, op, tool) -> list of {'seconds', 'stopped', 'events', 'write_stall', ...}
        self.data: dict[tuple[str, str, str, str], list[dict[str, t.Any]]] = {}
        self.facts: dict[str, t.Any] = {'stacks': {}}

    # -- the two ways of doing it, timed ---------------------------------------------------

    def module(self, uri: str, module: str, args: dict[str, t.Any],
               changed: bool = True) -> tuple[float, dict[str, t.Any]]:
        self._runs += 1
        args_file = self.tmp / f'args-{self._runs}.json'
        args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, uri=uri)}))
        env = dict(os.environ, PYTHONPATH=str(self.collections_root))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, '-m', f'ansible_collections.kvm.snapshots.plugins.modules.{module}',
                               str(args_file)], env=env, cwd=str(self.tmp), capture_output=True, text=True,
                              check=False, timeout=900)
        seconds = time.perf_counter() - start
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            result = {'failed': True, 'msg': proc.stdout[-2000:] + proc.stderr[-2000:]}
        if proc.returncode != 0 or result.get('failed') or bool(result.get('changed')) != changed:
            raise BenchError(f'{module} {args}: rc={proc.returncode}, changed={result.get("changed")}: '
                             f'{result.get("msg")}')
        return seconds, result

    @staticmethod
    def virsh(uri: str, *argv: str) -> float:
        start = time.perf_counter()
        proc = subprocess.run(['virsh', '-c', uri, *argv], capture_output=True, text=True, check=False, timeout=900)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise BenchError(f'virsh {" ".join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}')
        return seconds

    # -- one stack ----------------------------------------------------------------------------

    def stack(self, name: str) -> None:
        st = lab_tool.stack(name)
        if st.root is None:
            lab_tool.start_daemons(st.uri)
        else:
            lab_tool.start_stack(name)
        lab = lab_tool.Lab(stack=st, prefix=f'kslab-bkind-{os.urandom(2).hex()}-')
        events = Events(self.libvirt, st.uri)
        try:
            version = lab.conn.getLibVersion()
            facts = self.facts['stacks'].setdefault(name, {})
            facts['libvirt'] = _version(version)
            facts['qemu'] = _version(lab.conn.getVersion())
            facts['load'] = [os.getloadavg()[0]]
            facts['start'] = time.perf_counter()
            if version >= EXTERNAL_REVERT:
                # BIOS guest for internal snapshots; UEFI with a raw NVRAM for the external ones (auto picks them)
                plans = [('bios', ['internal']), ('efi', ['external', 'disk_only'])]
            else:
                # libvirt < 9.9: auto refuses a UEFI guest with a raw NVRAM (nothing revertable): location external
                plans = [('bios', ['internal', 'external', 'disk_only'])]
            for firmware, kinds in plans:
                guest = self.boot(lab, firmware, facts)
                try:
                    for kind in kinds:
                        facts.setdefault('firmware', {})[kind] = firmware
                        self.kind(lab, events, name, version, guest, firmware, kind)
                finally:
                    lab.remove(guest)
            facts['load'].append(os.getloadavg()[0])
            facts['seconds'] = time.perf_counter() - facts['start']
        finally:
            events.close()
            lab.cleanup()
            lab.close()

    def boot(self, lab: t.Any, firmware: str, facts: dict[str, t.Any]) -> str:
        log(f'{lab.stack.name}: booting a {firmware} Debian guest ({self.args.memory} MiB) and waiting for its agent')
        start = time.perf_counter()
        guest = lab.guest_domain(f'{firmware}', memory_mib=self.args.memory, firmware=firmware)
        lab.wait_agent(guest, timeout=600)
        facts.setdefault('boot', {})[firmware] = time.perf_counter() - start
        if self.args.fill:
            script = (f'mkdir -p /run/bench-fill && mount -t tmpfs -o size={self.args.fill + 16}m tmpfs /run/bench-fill'
                      f' && head -c 16M /dev/urandom > /run/bench-fill/seed && for i in $(seq {self.args.fill // 16});'
                      ' do cat /run/bench-fill/seed; done > /run/bench-fill/data && rm /run/bench-fill/seed')
            code, _out, err = lab.guest_exec(guest, ['sh', '-c', script], timeout=600)
            if code != 0:
                raise BenchError(f'filling the guest\'s memory failed: {err}')
        facts.setdefault('memory', {})[firmware] = self.meminfo(lab, guest)
        log(f'  agent after {facts["boot"][firmware]:.0f} s; memory: {facts["memory"][firmware]}')
        return guest

    @staticmethod
    def meminfo(lab: t.Any, guest: str) -> dict[str, int]:
        code, out, err = lab.guest_exec(guest, ['cat', '/proc/meminfo'])
        if code != 0:
            raise BenchError(f'reading /proc/meminfo in the guest: {err}')
        info = {line.split(':')[0]: int(line.split()[1]) // 1024 for line in out.splitlines() if line.strip()}
        return {'total_mib': info['MemTotal'], 'used_mib': info['MemTotal'] - info['MemFree'],
                'available_mib': info['MemAvailable'], 'shmem_mib': info.get('Shmem', 0)}

    # -- one kind on one guest --------------------------------------------------------------

    def kind(self, lab: t.Any, events: Events, stack: str, version: int, guest: str, firmware: str,
             kind: str) -> None:
        uri = lab.uri
        run_dir = lab.run_dir
        if kind == 'disk_only':
            self.facts['stacks'][stack]['writer_floor'] = self.writer_floor(lab, guest)
        for rep in range(1, self.args.repeat + 1):
            order = TOOLS if rep % 2 else tuple(reversed(TOOLS))
            for tool in order:
                snap = f'{kind.replace("_", "")[:4]}-{tool[0]}{rep}'
                overlay = os.path.join(run_dir, f'{guest}.vda.{snap}')
                log(f'{stack}: {kind}, repetition {rep}, {tool}: snapshot {snap}')
                disk_before = lab.disk_paths(guest)[0]
                reverted = False
                for op in OPS:
                    time.sleep(1.0)
                    self.facts['stacks'][stack]['load'].append(os.getloadavg()[0])
                    entry: dict[str, t.Any] = {}
                    writer = self.start_writer(lab, guest) if kind == 'disk_only' and op == 'create' else None
                    mark = len(events.seen)
                    try:
                        entry['seconds'] = self.do(uri, guest, kind, op, tool, snap, overlay, firmware, version)
                    except Unsupported as exc:
                        entry['unsupported'] = str(exc)
                    time.sleep(0.5)
                    got = events.since(mark, guest)
                    entry['stopped'] = stopped_seconds(got)
                    entry['events'] = [EVENT_NAMES.get(ev, str(ev)) for _ts, ev, _d in got]
                    if writer is not None:
                        entry['write_stall'] = self.stop_writer(lab, guest, writer)
                    self.check(lab, guest, kind, op, snap, entry)
                    if op == 'create' and tool == 'module':
                        # the same task again, a no-op: what the module costs before it does anything
                        # (Python starting, the imports, the connection, the look-ups)
                        seconds = self.module(uri, 'snapshot', self.create_args(guest, kind, snap, firmware),
                                              changed=False)[0]
                        self.data.setdefault((stack, kind, 'noop', 'module'), []).append({'seconds': seconds})
                    reverted = reverted or (op == 'revert' and 'unsupported' not in entry)
                    if op == 'delete' and kind != 'internal':
                        # the overlay was merged back (block commit): without a revert in between, the guest runs
                        # on the image it ran on before the snapshot again
                        disk_after = lab.disk_paths(guest)[0]
                        entry['disk'] = f'{os.path.basename(disk_before)} -> {os.path.basename(disk_after)}'
                        if not reverted and disk_after != disk_before:
                            raise BenchError(f'after the delete of {snap}, vda is {disk_after}, not {disk_before}')
                    self.data.setdefault((stack, kind, op, tool), []).append(entry)
                    shown = ('not supported' if 'unsupported' in entry else f'{entry["seconds"]:.2f} s')
                    stopped = entry['stopped']
                    log(f'  {op:<6} {shown}, guest stopped '
                        f'{"(left shut off)" if stopped is None else f"{stopped * 1000:.0f} ms"} '
                        f'{"/".join(entry["events"])}'
                        + (f', writes waited {entry["write_stall"]:.0f} ms' if 'write_stall' in entry else ''))
                    if op == 'revert' and lab.state(guest) == 'shutoff':
                        start = time.perf_counter()
                        lab.lookup(guest).create()
                        lab.wait_agent(guest, timeout=600)
                        entry['boot'] = time.perf_counter() - start
                        log(f'  started again, agent after {entry["boot"]:.0f} s')

    def do(self, uri: str, guest: str, kind: str, op: str, tool: str, snap: str, overlay: str,
           firmware: str, version: int) -> float:
        if op == 'revert' and kind != 'internal' and version < EXTERNAL_REVERT:
            raise Unsupported('not supported (libvirt < 9.9)')
        if tool == 'module':
            if op == 'create':
                seconds, result = self.module(uri, 'snapshot', self.create_args(guest, kind, snap, firmware))
                want = 'internal' if kind == 'internal' else 'external'
                if result.get('snapshot', {}).get('location') != want:
                    raise BenchError(f'the module made a {result.get("snapshot", {}).get("location")} snapshot, '
                                     f'not {want}: {result.get("kind")}')
                return seconds
            if op == 'revert':
                return self.module(uri, 'snapshot_revert', {'domain': guest, 'name': snap})[0]
            return self.module(uri, 'snapshot', {'domain': guest, 'name': snap, 'state': 'absent'})[0]
        if op == 'create':
            if kind == 'internal':
                return self.virsh(uri, 'snapshot-create-as', guest, snap)
            if kind == 'external':
                return self.virsh(uri, 'snapshot-create-as', guest, snap, '--atomic',
                                  '--memspec', f'file={overlay}.memory,snapshot=external',
                                  '--diskspec', f'vda,snapshot=external,file={overlay}')
            return self.virsh(uri, 'snapshot-create-as', guest, snap, '--disk-only', '--quiesce', '--atomic',
                              '--diskspec', f'vda,snapshot=external,file={overlay}')
        if op == 'revert':
            return self.virsh(uri, 'snapshot-revert', guest, snap)
        return self.virsh(uri, 'snapshot-delete', guest, snap)

    @staticmethod
    def create_args(guest: str, kind: str, snap: str, firmware: str) -> dict[str, t.Any]:
        args: dict[str, t.Any] = {'domain': guest, 'name': snap}
        if kind == 'internal':
            args['location'] = 'internal'
        elif kind == 'external':
            # auto picks external on a UEFI guest with a raw NVRAM (libvirt >= 9.9); before 9.9 it refuses
            args['location'] = 'auto' if firmware == 'efi' else 'external'
        else:
            args.update(disk_only=True, quiesce=True)
        return args

    def check(self, lab: t.Any, guest: str, kind: str, op: str, snap: str, entry: dict[str, t.Any]) -> None:
        """Untimed: what the step should have done, seen with libvirt-python."""
        dom = lab.lookup(guest)
        names = [s.getName() for s in dom.listAllSnapshots(0)]
        state = lab.state(guest)
        if op == 'delete':
            if snap in names:
                raise BenchError(f'{snap} still exists after the delete')
            if state != 'running':
                raise BenchError(f'{guest} is {state} after the delete of {snap}')
            return
        if snap not in names:
            raise BenchError(f'{snap} missing after the {op}')
        root = ET.fromstring(dom.snapshotLookupByName(snap, 0).getXMLDesc(0))
        memory = root.find('memory')
        disk = root.find('./disks/disk')
        location = disk.get('snapshot') if disk is not None else None
        want_memory = {'internal': 'internal', 'external': 'external', 'disk_only': 'no'}[kind]
        want_location = 'internal' if kind == 'internal' else 'external'
        if (memory.get('snapshot') if memory is not None else None) != want_memory or location != want_location:
            raise BenchError(f'{snap}: memory {memory.get("snapshot") if memory is not None else None}, disk '
                             f'{location}; expected {want_memory}, {want_location}')
        expected = 'shutoff' if op == 'revert' and kind == 'disk_only' else 'running'
        if 'unsupported' in entry:
            expected = 'running'
        if state != expected:
            raise BenchError(f'{guest} is {state} after the {op} of {snap}, expected {expected}')
        if op == 'revert' and 'unsupported' not in entry and dom.snapshotCurrent(0).getName() != snap:
            raise BenchError(f'{snap} is not the current snapshot after the revert')

    # -- the file systems' freeze, seen by a writer in the guest ------------------------------

    WRITER = (
        'import os, sys, time\n'
        "fd = os.open('/var/tmp/bench-writer', os.O_WRONLY | os.O_CREAT | os.O_TRUNC)\n"
        'end = time.monotonic() + 300\n'
        "os.pwrite(fd, b'.', 0)\n"
        "open(sys.argv[1] + '.ready', 'w').close()\n"
        'prev = time.monotonic(); most = 0.0; n = 0\n'
        'while not os.path.exists(sys.argv[1]) and prev < end:\n'
        "    os.pwrite(fd, b'.', 0); n += 1\n"
        '    time.sleep(0.001)\n'
        '    now = time.monotonic(); most = max(most, now - prev); prev = now\n'
        'print(round(most * 1000, 1), n)\n')

    def start_writer(self, lab: t.Any, guest: str) -> tuple[int, str]:
        stop = f'/run/bench-writer-stop-{os.urandom(3).hex()}'
        pid = lab.agent_command(guest, {'execute': 'guest-exec', 'arguments': {
            'path': 'python3', 'arg': ['-c', self.WRITER, stop], 'capture-output': True}})['pid']
        deadline = time.perf_counter() + 120
        while lab.guest_exec(guest, ['test', '-e', stop + '.ready'])[0] != 0:  # Python may take seconds to start
            if time.perf_counter() > deadline:
                raise BenchError('the writer in the guest did not start')
            time.sleep(0.5)
        time.sleep(1.0)
        return pid, stop

    @staticmethod
    def stop_writer(lab: t.Any, guest: str, writer: tuple[int, str]) -> float:
        pid, stop = writer
        lab.guest_exec(guest, ['touch', stop])
        deadline = time.perf_counter() + 60
        while True:
            status = lab.agent_command(guest, {'execute': 'guest-exec-status', 'arguments': {'pid': pid}})
            if status.get('exited'):
                break
            if time.perf_counter() > deadline:
                raise BenchError('the writer in the guest did not stop')
            time.sleep(0.3)
        out = base64.b64decode(status.get('out-data', '')).decode().split()
        if status.get('exitcode') != 0 or len(out) != 2 or int(out[1]) < 100:
            raise BenchError(f'the writer in the guest failed or hardly wrote ({out}): '
                             f'{base64.b64decode(status.get("err-data", ""))!r}')
        return float(out[0])

    def writer_floor(self, lab: t.Any, guest: str) -> float:
        writer = self.start_writer(lab, guest)
        time.sleep(2.0)
        return self.stop_writer(lab, guest, writer)

    # -- the report --------------------------------------------------------------------------------

    def report(self, stacks: list[str], started: datetime.datetime, seconds: float) -> str:
        out = [f'### Snapshot kinds, run of {started:%Y-%m-%d %H:%M} UTC', '']
        out.append(
            f'{os.cpu_count()} CPUs shared with colleagues running tests (load average '
            + '; '.join(f'{s}: {self.facts["stacks"][s]["load"][0]:.1f} at the start, '
                        f'{self.facts["stacks"][s]["load"][-1]:.1f} at the end, '
                        f'{min(self.facts["stacks"][s]["load"]):.1f} to {max(self.facts["stacks"][s]["load"]):.1f} '
                        'before each step' for s in stacks)
            + f'), TCG, one guest at a time. Python {platform.python_version()}. Median of {self.args.repeat} '
            f'runs of each; "module" is the collection\'s module run alone (Python running the module file with its '
            f'arguments; ansible-playbook adds about 0.8 s of start-up to a task), "virsh" the plain virsh command '
            f'doing the same, timed in the same repetition; the ratio is module / virsh. "Guest stopped": from '
            f'libvirt\'s SUSPENDED, STOPPED or SHUTDOWN event to the last RESUMED or STARTED (the vCPUs stopped, or '
            f'QEMU replaced by a new one). Whole run: {seconds / 60:.0f} min.')
        out.append('')
        for stack in stacks:
            facts = self.facts['stacks'][stack]
            mem = '; '.join(f'{fw}: {m["total_mib"]} MiB, {m["used_mib"]} MiB in use (not free; {m["shmem_mib"]} MiB '
                            'of it a tmpfs of random data, 16 MiB repeated: QEMU skips only zero pages)'
                            for fw, m in facts['memory'].items())
            out.append(f'**{stack}**: libvirt {facts["libvirt"]}, QEMU {facts["qemu"]}. Guest memory: {mem}.')
            out.append('')
            out.append('| kind | operation | module | virsh | module / virsh | guest stopped (module; virsh) |')
            out.append('|---|---|---:|---:|---:|---|')
            for kind, label in KINDS.items():
                if (stack, kind, 'create', 'module') not in self.data:
                    continue
                if kind != 'internal':
                    label += (', UEFI guest, raw NVRAM' + (' (`location: auto`)' if kind == 'external' else '')
                              if facts['firmware'][kind] == 'efi' else ', BIOS guest'
                              + (' (`location: external`)' if kind == 'external' else ''))
                for op in OPS:
                    mod = self.data[(stack, kind, op, 'module')]
                    vir = self.data[(stack, kind, op, 'virsh')]
                    if any('unsupported' in e for e in mod + vir):
                        text = next(e['unsupported'] for e in mod + vir if 'unsupported' in e)
                        out.append(f'| {label} | {op} | {text} | {text} | | |')
                        continue
                    m = statistics.median(e['seconds'] for e in mod)
                    v = statistics.median(e['seconds'] for e in vir)
                    stall = f'{_stall(mod)}; {_stall(vir)}'
                    if kind == 'disk_only' and op == 'create':
                        floor = facts.get('writer_floor')
                        stall += (' (vCPUs); a write in the guest waited up to '
                                  f'{statistics.median(e["write_stall"] for e in mod):.0f} ms; '
                                  f'{statistics.median(e["write_stall"] for e in vir):.0f} ms (the freeze, plus the '
                                  f'CPU the command takes on 2 busy cores; without a snapshot: {floor:.0f} ms)')
                    if kind == 'disk_only' and op == 'revert':
                        boots = [e['boot'] for e in mod + vir if 'boot' in e]
                        stall = ('left shut off, as libvirt does; started again, the agent answered after '
                                 f'{statistics.median(boots):.0f} s (median, not timed in the revert)')
                    out.append(f'| {label} | {op} | {m:.2f} s | {v:.2f} s | {m / v:.2f}× | {stall} |')
            noop = [e['seconds'] for (s_, _k, op, _t), entries in self.data.items()
                    if s_ == stack and op == 'noop' for e in entries]
            out.append('')
            if noop:
                out.append(f'Of each module time, about {statistics.median(noop):.2f} s (median of {len(noop)}) is the '
                           'module before it does anything: the same create task run again, a no-op (Python '
                           'starting, imports, the connection, the look-ups and checks).')
                out.append('')
        out.append('<details><summary>Every run</summary>')
        out.append('')
        for (stack, kind, op, tool), entries in self.data.items():
            if op == 'noop':
                out.append(f'- {stack}, {kind}, no-op re-run of the create, module: '
                           + ', '.join(f'{e["seconds"]:.2f} s' for e in entries))
                continue
            parts = []
            for e in entries:
                if 'unsupported' in e:
                    parts.append(e['unsupported'])
                    continue
                part = f'{e["seconds"]:.2f} s, stopped {_ms(e["stopped"])} [{"/".join(e["events"]) or "no events"}]'
                if 'write_stall' in e:
                    part += f', writes waited {e["write_stall"]:.0f} ms'
                if 'disk' in e:
                    part += f', vda {e["disk"]}'
                if 'boot' in e:
                    part += f', started again: agent after {e["boot"]:.0f} s'
                parts.append(part)
            out.append(f'- {stack}, {kind}, {op}, {tool}: ' + '; '.join(parts))
        for stack in stacks:
            facts = self.facts['stacks'][stack]
            floor = facts.get('writer_floor')
            boots = ', '.join(f'{fw} {s:.0f} s' for fw, s in facts['boot'].items())
            out.append(f'- {stack}: guest boot to agent {boots}'
                       + (f'; longest write gap in the guest in 2 s without a snapshot (noise floor): {floor:.0f} ms'
                          if floor is not None else '') + f'; stack measured in {facts["seconds"] / 60:.1f} min')
        out.append('')
        out.append('</details>')
        return '\n'.join(out) + '\n'


def _ms(value: float | None) -> str:
    return 'left shut off' if value is None else f'{value * 1000:.0f} ms'


def _stall(entries: list[dict[str, t.Any]]) -> str:
    values = [e['stopped'] for e in entries]
    if any(v is None for v in values):
        return 'left shut off'
    return f'{statistics.median(values) * 1000:.0f} ms'


def _version(number: int) -> str:
    return f'{number // 1000000}.{number // 1000 % 1000}.{number % 1000}'


def save(report: str, started: datetime.datetime) -> pathlib.Path:
    path = _results.save(report, started, '-kinds')
    summary = report.split('<details>', 1)[0].rstrip() + '\n\nEvery run: ' + \
        '[benchmarks/results/latest-kinds.md](benchmarks/results/latest-kinds.md).\n'
    for readme, text in zip(READMES, (report, summary)):
        _results.update_readme(readme, START, END, text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--stack', default='bookworm,trixie',
                        help='lab stacks, comma-separated, measured one after the other (%(default)s)')
    parser.add_argument('--repeat', type=int, default=2, help='repetitions; the median counts (%(default)s)')
    parser.add_argument('--memory', type=int, default=512, help='MiB of RAM of the guest, 384 or more (%(default)s)')
    parser.add_argument('--fill', type=int, default=192,
                        help='MiB of random data the guest keeps in a tmpfs, so its memory is in use (%(default)s)')
    parser.add_argument('--no-save', action='store_true', help='print only; write no results file')
    args = parser.parse_args(argv)
    stacks = [s.strip() for s in args.stack.split(',') if s.strip()]
    if os.geteuid() != 0:
        parser.error('the lab needs root')
    if args.memory < 384:
        parser.error('--memory: 384 MiB or more')
    import libvirt  # pylint: disable=import-outside-toplevel
    libvirt.virEventRegisterDefaultImpl()
    loop_stop = threading.Event()
    timer = libvirt.virEventAddTimeout(100, lambda *_args: None, None)

    def event_loop() -> None:
        while not loop_stop.is_set():
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=event_loop, name='libvirt-events', daemon=True).start()
    bench = KindBench(args, libvirt)
    started = datetime.datetime.now(datetime.timezone.utc)
    begin = time.perf_counter()
    try:
        for stack in stacks:
            bench.stack(stack)
    except (BenchError, lab_tool.LabError) as exc:
        print(f'benchmark failed: {exc}', file=sys.stderr)
        return 1
    finally:
        loop_stop.set()
        with contextlib.suppress(Exception):
            libvirt.virEventRemoveTimeout(timer)
        shutil.rmtree(bench.tmp, ignore_errors=True)
    report = bench.report(stacks, started, time.perf_counter() - begin)
    print(report)
    if not args.no_save:
        path = save(report, started)
        log(f'written to {path.relative_to(REPO)}, results/latest-kinds.md and the READMEs')
    return 0


if __name__ == '__main__':
    sys.exit(main())
