# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmarks of kvm.snapshots on the lab's real libvirtd + QEMU (see benchmarks/README.md).

    python3 benchmarks/run.py                     # the full run: N = 10, 30, 60, 3 repetitions, guest pauses
    python3 benchmarks/run.py --sizes 10 --repeat 1 --no-guest --no-save   # a quick look

One run measures, side by side on the same disposable running domains:

* a ``virsh snapshot-create-as`` loop over N domains (the baseline: what an operator types),
* one Ansible task run per domain (``loop:``),
* batch mode (``domains:``) in one task,
* the no-op re-run of batch mode with 1 and with 100 snapshots on every domain,
* ``snapshot_info`` on a domain with 200 snapshots (against ``virsh snapshot-list --parent``),
* how long a real Debian guest is stalled by a full and by a disk-only snapshot.

Every time is the wall-clock time (``time.perf_counter``) of a whole command:
``bash`` running the virsh loop, or ``ansible-playbook`` with its start-up.
The median of ``--repeat`` runs is shown; within a repetition the methods
run one after the other on the same domains, whose snapshots are deleted
between runs, so that a load change on the machine hits all of them alike.
Each run's outcome is checked (not timed) with libvirt-python: the
snapshots are there, the no-op made nothing.

Prints a markdown report, writes it to benchmarks/results/<UTC time>.md and
benchmarks/results/latest.md, and puts its tables into benchmarks/README.md.
Needs root and the lab (tests/lab/lab.py); removes everything it made,
also when interrupted.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import datetime
import json
import os
import pathlib
import platform
import re
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
PLAYBOOKS = HERE / 'playbooks'
README = HERE / 'README.md'
README_START = '<!-- latest results: start (written by benchmarks/run.py) -->'
README_END = '<!-- latest results: end -->'
URI = 'qemu:///system'
SNAP = 'bench'
FILLER = 'filler-'
ANSIBLE_PLAYBOOK = str(pathlib.Path(sys.executable).with_name('ansible-playbook')) \
    if pathlib.Path(sys.executable).with_name('ansible-playbook').exists() else 'ansible-playbook'

sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)

import _results  # noqa: E402  (benchmarks/_results.py, beside this script)

# libvirt flag values (libvirt-domain-snapshot.h; docs/support-matrix.md lists what each kind needs)
REDEFINE = 1
CURRENT = 2
DELETE_METADATA_ONLY = 2
LIST_TOPOLOGICAL = 1024
EVENT_SUSPENDED = 3
EVENT_RESUMED = 4

# issue 13: batch mode at least this many times quicker than one task per domain, in every repetition at the
# largest N
BATCH_TARGET = 12

ROWS = {
    'virsh': '`virsh snapshot-create-as` loop, one virsh per domain (baseline)',
    'loop': 'Ansible, one task run per domain (`loop:`)',
    'batch': 'Ansible, batch mode: one task (`domains:`)',
    'noop1': 'batch mode re-run, no-op, 1 snapshot per domain',
    'noop100': 'batch mode re-run, no-op, 100 snapshots per domain',
    'mod1': 'the same no-op, module run alone (no ansible-playbook), 1 snapshot per domain',
    'mod100': 'the same no-op, module run alone (no ansible-playbook), 100 snapshots per domain',
}


def log(msg: str) -> None:
    print(f'[bench {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values)


class BenchError(Exception):
    """A measured command failed or did not do what it should; the run is not valid."""


class Bench:
    """One benchmark run: the lab's domains, the Ansible environment, the measurements."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lab = lab_tool.Lab(uri=URI, prefix=f'kslab-bench-{os.urandom(2).hex()}-')
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix='kvm-snapshots-bench-'))
        collections = self.tmp / 'collections' / 'ansible_collections' / 'kvm'
        collections.mkdir(parents=True)
        (collections / 'snapshots').symlink_to(REPO)
        self.collections_root = self.tmp / 'collections'
        self.env = dict(os.environ)
        self.env.update({
            'ANSIBLE_COLLECTIONS_PATH': str(self.collections_root),
            'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
            'ANSIBLE_PYTHON_INTERPRETER': sys.executable,
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_RETRY_FILES_ENABLED': 'false',
            'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
            'ANSIBLE_DEPRECATION_WARNINGS': 'false',
        })
        self.times: dict[tuple[str, int], list[float]] = {}
        self.single: dict[str, t.Any] = {}
        self.pause: dict[str, t.Any] = {}
        self.calls: dict[tuple[int, int], list[float]] = {}
        self.facts: dict[str, t.Any] = {}
        self._runs = 0

    # -- running and timing commands -------------------------------------------------------

    def timed(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
        """Seconds the command took, and its output; BenchError unless it exits 0."""
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=1800)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise BenchError(f'{" ".join(argv[:6])} ... exited with {proc.returncode}:\n'
                             f'{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}')
        return seconds, proc.stdout

    def playbook(self, name: str, extra_vars: dict[str, t.Any], changed: bool | None) -> tuple[float, str]:
        """Run benchmarks/playbooks/<name>.yml on localhost; check the recap says changed or not."""
        self._runs += 1
        vars_file = self.tmp / f'vars-{self._runs}.json'
        vars_file.write_text(json.dumps(dict({'bench_uri': URI}, **extra_vars)))
        argv = [ANSIBLE_PLAYBOOK, '-i', 'localhost,', '-c', 'local', str(PLAYBOOKS / f'{name}.yml'),
                '-e', f'@{vars_file}']
        seconds, out = self.timed(argv, self.env)
        recap = re.search(r'localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', out)
        if not recap or recap.group(4) != '0' or recap.group(3) != '0':
            raise BenchError(f'{name}.yml did not succeed:\n{out[-4000:]}')
        if changed is not None and (recap.group(2) != '0') != changed:
            raise BenchError(f'{name}.yml reported changed={recap.group(2)}, expected {"some" if changed else 0}:\n'
                             f'{out[-4000:]}')
        return seconds, out

    def module_alone(self, module: str, args: dict[str, t.Any], changed: bool) -> float:
        """Seconds of one run of a module by Python alone, as AnsiballZ would run it but without Ansible around it."""
        self._runs += 1
        args_file = self.tmp / f'args-{self._runs}.json'
        args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
        env = dict(os.environ, PYTHONPATH=str(self.collections_root))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, '-m', f'ansible_collections.kvm.snapshots.plugins.modules.{module}',
                               str(args_file)], env=env, cwd=str(self.tmp), capture_output=True, text=True,
                              check=False, timeout=600)
        seconds = time.perf_counter() - start
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            result = {'failed': True, 'msg': proc.stdout[-2000:] + proc.stderr[-2000:]}
        if proc.returncode != 0 or result.get('failed') or result.get('changed') != changed:
            raise BenchError(f'the {module} module alone: rc={proc.returncode}, changed={result.get("changed")} '
                             f'(expected {changed}): {result.get("msg")}')
        return seconds

    def record(self, row: str, size: int, seconds: float) -> None:
        self.times.setdefault((row, size), []).append(seconds)
        log(f'  N={size:<3} {row:<8} {seconds:7.2f} s')

    # -- domains and their snapshots (set up and checked with libvirt-python, never timed) --

    def make_domains(self, count: int, letter: str = 'n') -> list[str]:
        log(f'making {count} blank running domains ({self.args.memory} MiB RAM, 1 vCPU, blank 64 MiB qcow2 disk)')
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            names = list(pool.map(lambda i: self.lab.blank_domain(f'{letter}{i:02d}', memory_mib=self.args.memory),
                                  range(count)))
        log(f'  made in {time.perf_counter() - start:.1f} s')
        return names

    def each(self, doms: list[str], work: t.Callable[[t.Any], t.Any]) -> list[t.Any]:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(lambda name: work(self.lab.conn.lookupByName(name)), doms))

    def snapshot_names(self, doms: list[str]) -> list[list[str]]:
        return self.each(doms, lambda dom: sorted(s.getName() for s in dom.listAllSnapshots(0)))

    def expect(self, doms: list[str], count: int, what: str) -> None:
        """Every domain runs and holds the snapshot ``bench`` and ``count`` snapshots in all."""
        for name, (names, state) in zip(doms, self.each(
                doms, lambda dom: (sorted(s.getName() for s in dom.listAllSnapshots(0)), dom.state(0)[0]))):
            if SNAP not in names or len(names) != count or state != 1:
                raise BenchError(f'after {what}: {name} has {len(names)} snapshots ({names[:3]}...), '
                                 f'state {state}; expected "{SNAP}" among {count}, running')

    def reset(self, doms: list[str]) -> None:
        """Delete every snapshot of the domains: the fillers as metadata only, the real ones for real."""
        def clear(dom: t.Any) -> None:
            for snap in reversed(dom.listAllSnapshots(LIST_TOPOLOGICAL)):
                snap.delete(DELETE_METADATA_ONLY if snap.getName().startswith(FILLER) else 0)
        self.each(doms, clear)
        if any(self.snapshot_names(doms)):
            raise BenchError('snapshots left after the reset')

    def add_fillers(self, doms: list[str], count: int) -> None:
        """``count`` more snapshots on each domain, as a chain after ``bench``, the newest current.

        They are copies of ``bench``'s own XML (domain definition included) defined with REDEFINE:
        real libvirt snapshot metadata, which is all a lookup by name reads, made in a millisecond
        or two instead of a QEMU savevm each. Only a revert would notice that the qcow2 image
        does not hold them, and the reset deletes them as metadata.
        """
        def fill(dom: t.Any) -> None:
            base = dom.snapshotLookupByName(SNAP, 0).getXMLDesc(0)
            created = int(ET.fromstring(base).findtext('creationTime') or 0)
            parent = SNAP
            for i in range(1, count + 1):
                root = ET.fromstring(base)
                root.find('name').text = f'{FILLER}{i:03d}'
                root.find('creationTime').text = str(created + i)
                node = root.find('parent')
                if node is None:
                    node = ET.SubElement(root, 'parent')
                    ET.SubElement(node, 'name')
                node.find('name').text = parent
                parent = f'{FILLER}{i:03d}'
                dom.snapshotCreateXML(ET.tostring(root, encoding='unicode'), REDEFINE | (CURRENT if i == count else 0))
        self.each(doms, fill)

    # -- the measurements ---------------------------------------------------------------------

    def virsh_loop(self, doms: list[str]) -> float:
        script = f'for d in "$@"; do virsh -c {URI} snapshot-create-as "$d" {SNAP} >/dev/null || exit 1; done'
        seconds, _out = self.timed(['bash', '-c', script, 'loop', *doms])
        return seconds

    def make_twins(self, count: int) -> list[str]:
        """``count`` more domains like the others, each with the snapshot ``bench`` and 99 more; then paused.

        They are the "100 snapshots per domain" side of the no-op comparison: both sides exist at the
        same time, so the no-op re-runs of the two can alternate (paused, they cost no CPU meanwhile).
        """
        twins = self.make_domains(count, 't')
        self.each(twins, lambda dom: dom.snapshotCreateXML(f'<domainsnapshot><name>{SNAP}</name></domainsnapshot>', 0))
        log(f'adding 99 snapshots to each of the {count} twins')
        self.add_fillers(twins, 99)
        self.expect(twins, 100, 'adding 99 snapshots')
        self.each(twins, lambda dom: dom.suspend())
        return twins

    def many_domains(self, all_doms: list[str], twins: list[str]) -> None:
        for size in self.args.sizes:
            doms = all_doms[:size]
            batch_vars: dict[str, t.Any] = {'bench_domains': doms, 'bench_name': SNAP}
            if self.args.parallel:
                batch_vars['bench_parallel'] = self.args.parallel
            for rep in range(1, self.args.repeat + 1):
                log(f'N={size}, repetition {rep} of {self.args.repeat}')
                self.reset(doms)
                self.record('virsh', size, self.virsh_loop(doms))
                self.expect(doms, 1, 'the virsh loop')
                self.reset(doms)

                seconds, _out = self.playbook('loop', {'bench_domains': doms, 'bench_name': SNAP}, changed=True)
                self.record('loop', size, seconds)
                self.expect(doms, 1, 'one task per domain')
                self.reset(doms)

                seconds, _out = self.playbook('batch', batch_vars, changed=True)
                self.record('batch', size, seconds)
                self.expect(doms, 1, 'batch mode')
            # the last batch run left one snapshot on each domain: the no-op re-runs alternate between
            # these domains and as many twins with 100 snapshots each
            self.noop(size, {1: doms, 100: twins[:size]})
            self.reset(doms)

    def noop(self, size: int, sides: dict[int, list[str]]) -> None:
        log(f'N={size}, no-op re-runs, alternating 1 and 100 snapshots per domain')
        self.each(sides[100], lambda dom: dom.resume())
        self.settle()
        try:
            for run in range(self.args.noop_runs):
                for count in (1, 100) if run % 2 == 0 else (100, 1):
                    batch_vars: dict[str, t.Any] = {'bench_domains': sides[count], 'bench_name': SNAP}
                    module_args: dict[str, t.Any] = {'uri': URI, 'domains': sides[count], 'name': SNAP}
                    if self.args.parallel:
                        batch_vars['bench_parallel'] = module_args['parallel'] = self.args.parallel
                    self.record(f'noop{count}', size, self.playbook('batch', batch_vars, changed=False)[0])
                    self.record(f'mod{count}', size, self.module_alone('snapshot', module_args, changed=False))
            self.lookup_calls(size, sides)
            for count, doms in sides.items():
                self.expect(doms, count, f'the no-op re-runs with {count} snapshots')
        finally:
            self.each(sides[100], lambda dom: dom.suspend())

    @staticmethod
    def settle() -> None:
        """Let the writes of the set-up (thousands of metadata files) reach the disk before a no-op is timed."""
        os.sync()
        time.sleep(2)

    def lookup_calls(self, size: int, sides: dict[int, list[str]]) -> None:
        """Time, in this process, what the module's no-op does for one domain: look it up, look the snapshot
        up by name (lookup_snapshot), read its facts (snapshot_facts): five libvirt calls.

        One domain of each side in turn, so that both sides are timed under the same load.
        """
        lookup_snapshot, snapshot_facts = self.module_utils('lookup_snapshot', 'snapshot_facts')
        conn = self.lab.conn
        for turn in range(5):
            for pair in zip(sides[1], sides[100]):
                for count, name in zip((1, 100), pair) if turn % 2 == 0 else zip((100, 1), reversed(pair)):
                    start = time.perf_counter()
                    dom = conn.lookupByName(name)
                    facts = snapshot_facts(lookup_snapshot(dom, SNAP), name)
                    self.calls.setdefault((size, count), []).append(time.perf_counter() - start)
                    if facts['name'] != SNAP:
                        raise BenchError(f'lookup_snapshot found {facts["name"]} on {name}')

    def module_utils(self, *names: str) -> list[t.Any]:
        """Functions of the collection's _snapshot module_utils, imported from this working tree."""
        if str(self.collections_root) not in sys.path:
            sys.path.insert(0, str(self.collections_root))
        # pylint: disable-next=import-outside-toplevel
        from ansible_collections.kvm.snapshots.plugins.module_utils import _snapshot
        return [getattr(_snapshot, name) for name in names]

    def ansible_startup(self) -> None:
        runs = [self.playbook('startup', {}, changed=False)[0] for _run in range(self.args.repeat)]
        self.single['startup'] = runs
        log(f'ansible-playbook start-up: {median(runs):.2f} s')

    def snapshot_info(self, count: int = 200) -> None:
        dom_name = self.lab.blank_domain('info', memory_mib=self.args.memory)
        dom = self.lab.conn.lookupByName(dom_name)
        log(f'taking {count} internal snapshots of a running domain for snapshot_info')
        start = time.perf_counter()
        for i in range(count):
            dom.snapshotCreateXML(f'<domainsnapshot><name>info-{i:03d}</name></domainsnapshot>', 0)
        self.single['info_setup'] = time.perf_counter() - start
        # once, untimed, to check what the module returns
        self.playbook('info_check', {'bench_domain': dom_name, 'bench_count': count}, changed=False)
        module, virsh = [], []
        for _run in range(self.args.repeat):
            module.append(self.playbook('info', {'bench_domain': dom_name}, changed=False)[0])
            virsh.append(self.timed(['virsh', '-c', URI, 'snapshot-list', dom_name, '--parent'])[0])
        self.single['info'] = module
        self.single['info_virsh'] = virsh
        log(f'snapshot_info on {count} snapshots: {median(module):.2f} s; virsh snapshot-list: {median(virsh):.2f} s')
        self.lab.remove(dom_name)

    def guest_pause(self) -> None:
        """How long a real guest is stalled by a full and by a disk-only snapshot (see README: method)."""
        import libvirt  # pylint: disable=import-outside-toplevel
        [create_snapshot] = self.module_utils('create_snapshot')
        # the module's own preflight makes the plan (the kind) that create_snapshot takes
        # pylint: disable-next=import-outside-toplevel
        from ansible_collections.kvm.snapshots.plugins.module_utils._kind import preflight_snapshot

        log('booting the Debian guest (384 MiB) and waiting for its agent')
        start = time.perf_counter()
        guest = self.lab.guest_domain('guest')
        self.lab.wait_agent(guest, timeout=400)
        log(f'  guest agent answers after {time.perf_counter() - start:.0f} s')

        libvirt.virEventRegisterDefaultImpl()
        loop_stop = threading.Event()

        def event_loop() -> None:
            while not loop_stop.is_set():
                libvirt.virEventRunDefaultImpl()

        # a timer keeps virEventRunDefaultImpl from blocking for ever, so the loop can end
        timer = libvirt.virEventAddTimeout(100, lambda *_args: None, None)
        threading.Thread(target=event_loop, name='libvirt-events', daemon=True).start()
        conn = libvirt.open(URI)
        events: list[tuple[float, int]] = []
        callback = conn.domainEventRegisterAny(
            conn.lookupByName(guest), libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
            lambda _c, _d, event, _detail, _o: events.append((time.perf_counter(), event)), None)

        console = self.lab.console_log(guest)
        beats: list[float] = []
        watch_stop = threading.Event()

        def watch() -> None:
            size = os.stat(console).st_size
            while not watch_stop.is_set():
                now_size = os.stat(console).st_size
                if now_size != size:
                    beats.append(time.perf_counter())
                    size = now_size
                time.sleep(0.0005)

        threading.Thread(target=watch, name='heartbeat-watch', daemon=True).start()
        program = (
            'import os, time\n'
            "fd = os.open('/dev/ttyS0', os.O_WRONLY | os.O_NOCTTY)\n"
            'end = time.monotonic() + 600\n'
            'prev = time.monotonic(); most = 0.0; n = 0\n'
            "while not os.path.exists('/run/bench-stop') and prev < end:\n"
            "    os.write(fd, b'.'); n += 1\n"
            '    time.sleep(0.001)\n'
            '    now = time.monotonic(); most = max(most, now - prev); prev = now\n'
            "print(round(most * 1000, 1), n)\n")
        pid = self.lab.agent_command(guest, {'execute': 'guest-exec', 'arguments': {
            'path': 'python3', 'arg': ['-c', program], 'capture-output': True}})['pid']

        def max_gap(begin: float, end: float) -> float:
            points = [begin] + [b for b in beats if begin <= b <= end] + [end]
            return max(b - a for a, b in zip(points, points[1:]))

        deadline = time.perf_counter() + 120
        while len([b for b in beats if b > time.perf_counter() - 1]) < 100:
            if time.perf_counter() > deadline:
                raise BenchError('the guest heartbeat on its serial console did not start')
            time.sleep(0.2)
        time.sleep(1)
        dom = conn.lookupByName(guest)
        results: dict[str, dict[str, list[float]]] = {}
        try:
            quiet = []
            for _window in range(3):
                begin = time.perf_counter()
                time.sleep(1.0)
                quiet.append(max_gap(begin, time.perf_counter()))
            results['quiet'] = {'gap': quiet}
            for kind, disk_only in (('full', False), ('disk_only', True)):
                made = []
                for rep in range(1, self.args.pause_repeat + 1):
                    time.sleep(1.0)
                    name = f'pause-{kind.replace("_", "-")}-{rep}'
                    # planned untimed, as the module plans it: a full snapshot of the kind auto picks (internal
                    # for the lab's guest), a disk-only one external
                    plan, _state, disks = preflight_snapshot(dom, name, conn.getLibVersion(), True, 'auto', disk_only)
                    seen = len(events)
                    begin = time.perf_counter()
                    facts, _new = create_snapshot(dom, name, None, plan, False, True, 60, disks)
                    end = time.perf_counter()
                    time.sleep(0.5)
                    made.append(facts['name'])
                    mine = events[seen:]
                    stopped = [ts for ts, ev in mine if ev == EVENT_SUSPENDED]
                    resumed = [ts for ts, ev in mine if ev == EVENT_RESUMED]
                    item = results.setdefault(kind, {'gap': [], 'call': [], 'vcpus_stopped': []})
                    item['gap'].append(max_gap(begin - 0.05, end + 0.3))
                    item['call'].append(end - begin)
                    item['vcpus_stopped'].append(resumed[-1] - stopped[0] if stopped and resumed else 0.0)
                    log(f'  {kind} snapshot: guest stalled {item["gap"][-1] * 1000:.0f} ms, vCPUs stopped '
                        f'{item["vcpus_stopped"][-1] * 1000:.0f} ms (events), call {item["call"][-1] * 1000:.0f} ms')
                if not disk_only:
                    for name in made:  # no internal snapshots under the external overlays that follow
                        dom.snapshotLookupByName(name, 0).delete(0)
            self.lab.guest_exec(guest, ['touch', '/run/bench-stop'])
            deadline = time.perf_counter() + 60
            while True:
                status = self.lab.agent_command(guest, {'execute': 'guest-exec-status', 'arguments': {'pid': pid}})
                if status.get('exited') or time.perf_counter() > deadline:
                    break
                time.sleep(0.5)
            out = base64.b64decode(status.get('out-data', '')).decode().split()
            results['guest_clock_max_gap_ms'] = float(out[0]) if out else None
        finally:
            watch_stop.set()
            with contextlib.suppress(Exception):
                conn.domainEventDeregisterAny(callback)
            loop_stop.set()
            with contextlib.suppress(Exception):
                libvirt.virEventRemoveTimeout(timer)
            del dom
            conn.close()
        self.pause = results

    # -- the whole run --------------------------------------------------------------------------

    def run(self) -> str:
        started = datetime.datetime.now(datetime.timezone.utc)
        self.facts['load_start'] = os.getloadavg()
        self.facts['started'] = started
        lab_tool.start_daemons(URI)
        try:
            conn = self.lab.conn
            self.facts['libvirt'] = _version(conn.getLibVersion())
            self.facts['qemu'] = _version(conn.getVersion())
            doms = self.make_domains(max(self.args.sizes))
            twins = self.make_twins(max(self.args.sizes))
            self.ansible_startup()
            self.many_domains(doms, twins)
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(self.lab.remove, doms + twins))
            self.snapshot_info()
            if not self.args.no_guest:
                self.guest_pause()
        finally:
            log('removing the benchmark domains')
            self.lab.cleanup()
            self.lab.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.facts['load_end'] = os.getloadavg()
        self.facts['seconds'] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
        return self.report()

    # -- the report -------------------------------------------------------------------------------

    def report(self) -> str:
        sizes = self.args.sizes
        biggest = max(sizes)
        base = {n: median(self.times[('virsh', n)]) for n in sizes}

        def cell(row: str, size: int) -> str:
            value = median(self.times[(row, size)])
            return f'{value:.2f} s ({value / base[size]:.2f}×)'

        out = []
        facts = self.facts
        out.append(f'### Run of {facts["started"]:%Y-%m-%d %H:%M} UTC')
        out.append('')
        out.append(f'{os.cpu_count()} CPUs, {_mem_gib():.0f} GiB RAM, libvirt {facts["libvirt"]}, QEMU {facts["qemu"]} '
                   f'(TCG), ansible-core {_ansible_version()}, Python {platform.python_version()}; load average '
                   f'{facts["load_start"][0]:.1f} at the start, {facts["load_end"][0]:.1f} at the end '
                   f'(the machine is shared). Domains: blank, running, {self.args.memory} MiB RAM, one 64 MiB qcow2 '
                   f'disk, full (internal) snapshots. Batch `parallel`: '
                   f'{self.args.parallel or "the default (4)"}. Median of {self.args.repeat} runs; '
                   f'in parentheses the ratio to the virsh loop of the same N. Whole run: {facts["seconds"] / 60:.0f} min.')
        out.append('')
        out.append('| one snapshot on each of N running domains | ' + ' | '.join(f'N = {n}' for n in sizes) + ' |')
        out.append('|---|' + '---:|' * len(sizes))
        for row, label in ROWS.items():
            out.append(f'| {label} | ' + ' | '.join(cell(row, n) for n in sizes) + ' |')
        out.append('')
        startup = median(self.single['startup'])
        info, info_virsh = median(self.single['info']), median(self.single['info_virsh'])
        out.append('| one domain | time | compared with |')
        out.append('|---|---:|---|')
        out.append(f'| `snapshot_info` on a domain with 200 snapshots (ansible-playbook, one task) | {info:.2f} s | '
                   f'`virsh snapshot-list --parent`: {info_virsh:.2f} s ({info / info_virsh:.1f}×) |')
        out.append(f'| ansible-playbook itself: start-up and one task that runs no module | {startup:.2f} s | '
                   f'part of every Ansible row above |')
        calls = {count: median(self.calls[(biggest, count)]) * 1000 for count in (1, 100)}
        out.append(f'| the no-op check of one domain inside the module (5 libvirt calls: domain and snapshot '
                   f'looked up by name, its XML, current, children), in-process, N = {biggest} | '
                   f'{calls[1]:.2f} ms with 1 snapshot | '
                   f'{calls[100]:.2f} ms with 100 snapshots ({(calls[100] / calls[1] - 1) * 100:+.0f} %) |')
        pause = self.pause
        if pause:
            for kind, label in (('full', 'full snapshot (memory + disks, internal)'),
                                ('disk_only', 'disk-only snapshot (`disk_only: true`, external)')):
                item = pause[kind]
                out.append(f'| guest stalled by a {label}, 384 MiB Debian guest | {median(item["gap"]) * 1000:.0f} ms | '
                           f'vCPUs stopped (libvirt events): {median(item["vcpus_stopped"]) * 1000:.0f} ms; '
                           f'the snapshot call: {median(item["call"]) * 1000:.0f} ms |')
            out.append(f'| same guest, no snapshot: longest heartbeat gap in 1 s (noise floor) | '
                       f'{max(pause["quiet"]["gap"]) * 1000:.0f} ms | |')
        out.append('')
        out.append('Targets:')
        out.append('')
        batch, loop, virsh = (median(self.times[(r, biggest)]) for r in ('batch', 'loop', 'virsh'))
        runs = {r: self.times[(r, biggest)] for r in ('batch', 'loop', 'virsh')}
        lines = [
            (batch < virsh, f'N = {biggest}: batch mode ({batch:.2f} s) takes less time than the virsh loop ({virsh:.2f} s); '
                            'batch / virsh loop in each repetition: '
                            + ', '.join(f'{b / v:.2f}' for b, v in zip(runs['batch'], runs['virsh']))),
            (all(lo / b >= BATCH_TARGET for lo, b in zip(runs['loop'], runs['batch'])),
             f'N = {biggest}: batch mode is at least {BATCH_TARGET}× quicker than one task per domain in every '
             'repetition (issue 13); in each repetition: '
             + ', '.join(f'{lo / b:.1f}×' for lo, b in zip(runs['loop'], runs['batch']))
             + f' (medians: {loop:.2f} s / {batch:.2f} s = {loop / batch:.1f}×)'),
        ]
        growth = {n: median(self.times[('noop100', n)]) / median(self.times[('noop1', n)]) - 1 for n in sizes}
        lines.append((growth[biggest] < 0.10, f'N = {biggest}: the no-op re-run grows by less than 10 % from 1 to 100 '
                      'snapshots per domain (' + ', '.join(f'N = {n}: {growth[n] * 100:+.1f} %' for n in sizes) + ')'))
        if pause:
            gap = median(pause['disk_only']['gap']) * 1000
            lines.append((gap < 50, f'a disk-only snapshot stalls a real guest for under 50 ms ({gap:.0f} ms)'))
        for met, text in lines:
            out.append(f'- {"met" if met else "**MISSED**"}: {text}')
        out.append('')
        out.append('Where the time goes:')
        out.append('')
        per_task = (loop - startup) / biggest
        fixed = median(self.times[('noop1', biggest)])
        per_domain = (batch - fixed) / biggest
        out.append(f'- N = {biggest}: one task per domain costs {per_task:.2f} s a domain (the loop without '
                   f'ansible-playbook\'s start-up, divided by N); batch mode costs a fixed {fixed:.2f} s (its no-op '
                   f're-run: ansible-playbook, one module run, the look-ups) plus {per_domain * 1000:.0f} ms a domain '
                   f'for taking the snapshots, {self.args.parallel or 4} at a time. Their ratio, '
                   f'{per_task / per_domain:.0f}×, is what the speed-up tends to as N grows.')
        mod = {n: median(self.times[('mod100', n)]) / median(self.times[('mod1', n)]) - 1 for n in sizes}
        out.append('- the no-op re-run without ansible-playbook (the module run alone), 1 to 100 snapshots per domain: '
                   + ', '.join(f'N = {n}: {mod[n] * 100:+.1f} %' for n in sizes) + f'; of its '
                   f'{median(self.times[("mod1", biggest)]):.2f} s at N = {biggest}, the look-ups take '
                   f'{calls[1] * biggest / 1000:.2f} s of calls (4 at a time), the rest is Python starting and '
                   f'importing; the look-up of one domain: {calls[1]:.2f} ms with 1 snapshot, {calls[100]:.2f} ms '
                   'with 100')
        out.append('')
        out.append('<details><summary>Every run (seconds)</summary>')
        out.append('')
        for (row, size), values in sorted(self.times.items(), key=lambda kv: (kv[0][1], list(ROWS).index(kv[0][0]))):
            out.append(f'- N = {size}, {row}: ' + ', '.join(f'{v:.2f}' for v in values))
        for (size, count), values in sorted(self.calls.items()):
            out.append(f'- N = {size}, no-op check of one domain in-process, {count} snapshot(s) per domain: median '
                       f'{median(values) * 1000:.2f} ms, slowest {max(values) * 1000:.2f} ms of {len(values)}')
        out.append('- ansible-playbook start-up: ' + ', '.join(f'{v:.2f}' for v in self.single['startup']))
        out.append('- snapshot_info, 200 snapshots: ' + ', '.join(f'{v:.2f}' for v in self.single['info'])
                   + '; virsh snapshot-list: ' + ', '.join(f'{v:.2f}' for v in self.single['info_virsh'])
                   + f'; taking the 200 snapshots took {self.single["info_setup"]:.1f} s')
        if pause:
            for kind in ('full', 'disk_only'):
                item = pause[kind]
                out.append(f'- {kind}: guest stalled ' + ', '.join(f'{v * 1000:.0f}' for v in item['gap'])
                           + ' ms; vCPUs stopped ' + ', '.join(f'{v * 1000:.0f}' for v in item['vcpus_stopped'])
                           + ' ms; call ' + ', '.join(f'{v * 1000:.0f}' for v in item['call']) + ' ms')
            out.append('- no snapshot, longest heartbeat gap per second: '
                       + ', '.join(f'{v * 1000:.0f}' for v in pause['quiet']['gap']) + ' ms')
            out.append(f'- the guest\'s own monotonic clock saw at most {pause["guest_clock_max_gap_ms"]} ms between '
                       'two heartbeats during the whole measurement, full snapshots included: under TCG the '
                       'guest clock stops with its vCPUs, so a pause cannot be timed from inside the guest')
        out.append('')
        out.append('</details>')
        return '\n'.join(out) + '\n'


def _version(number: int) -> str:
    return f'{number // 1000000}.{number // 1000 % 1000}.{number % 1000}'


def _mem_gib() -> float:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30


def _ansible_version() -> str:
    try:
        from ansible.release import __version__  # pylint: disable=import-outside-toplevel
    except ImportError:
        return 'unknown'
    return __version__


def save(report: str, started: datetime.datetime) -> pathlib.Path:
    path = _results.save(report, started)
    _results.update_readme(README, README_START, README_END, report)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--sizes', default='10,30,60', help='numbers of domains, comma-separated (%(default)s)')
    parser.add_argument('--repeat', type=int, default=3, help='runs of each measurement; the median counts (%(default)s)')
    parser.add_argument('--memory', type=int, default=64, help='MiB of RAM of each blank domain (%(default)s)')
    parser.add_argument('--parallel', type=int, default=0, help="batch mode's parallel (default: the module's)")
    parser.add_argument('--noop-runs', type=int, default=8,
                        help='no-op re-runs of each kind for each N, alternating (%(default)s)')
    parser.add_argument('--pause-repeat', type=int, default=5, help='snapshots of the guest of each kind (%(default)s)')
    parser.add_argument('--no-guest', action='store_true', help='skip the pause measurement on a real guest')
    parser.add_argument('--no-save', action='store_true', help='print only; write no results file')
    args = parser.parse_args(argv)
    args.sizes = sorted({int(s) for s in args.sizes.split(',') if s.strip()})
    if os.geteuid() != 0:
        parser.error('the lab needs root')
    bench = Bench(args)
    try:
        report = bench.run()
    except (BenchError, lab_tool.LabError) as exc:
        print(f'benchmark failed: {exc}', file=sys.stderr)
        return 1
    print(report)
    if not args.no_save:
        path = save(report, bench.facts['started'])
        log(f'written to {path.relative_to(REPO)}, results/latest.md and README.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
