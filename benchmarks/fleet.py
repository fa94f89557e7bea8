# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fleet benchmark of kvm.snapshots: many hypervisors over SSH, many domains, against the floor (see README.md).

    python3 benchmarks/fleet.py                                   # both stacks, 20 hypervisors x 50 domains, 200 guests
    python3 benchmarks/fleet.py --stack bookworm --per-hypervisor 5 --guests 40 --no-save     # a quick look
    python3 benchmarks/fleet.py --guarded-only --per-hypervisor 5 --guests 95 --per-guest-guests 0   # the guest workflow

A lab fleet per stack: H "hypervisors" (inventory hosts at 127.1.0.1, 127.1.0.2, ... on the port of a private sshd,
tests/lab/sshd.py; on the trixie stack the chroot's own sshd, so the modules run in the chroot against its libvirtd),
sharing the stack's one libvirtd, each owning the domains named ``<prefix>hvNN-…``: P blank domains each, shut off,
a few running (--running, spread over the hypervisors).

Measured in each repetition, on the same domains, one after the other:

* ``playbooks/hypervisor_snapshots.yml`` snapshot, prune and cleanup (one module run per hypervisor, over SSH),
* the floor: libvirt-python in this process, a thread pool over the same domains (no Ansible, no SSH),
* a ``virsh`` loop (one virsh per domain and step, what an operator types),

each doing one snapshot operation per domain per step: take ``fleet-1``; (untimed: take ``fleet-2`` with the
floor's code) prune ``fleet-*`` keeping the newest 1 (deletes ``fleet-1``); clean up ``fleet-2``.

Then the guest-level workflow: ``playbooks/guarded_change.yml`` over G of the shut-off domains registered as guests
(local connection, a change that does nothing), one batch (``kvm_serial: ['100%']``), ``kvm_soak`` set so that the
snapshots stay, ``kvm_snapshot_jobs: 0`` (the lab's hypervisors share one machine's job slots); its pre-change phase
(the pre_change role's tasks, timed by benchmarks/callback_plugins) against
``hypervisor_snapshots.yml`` snapshot of the same G domains; with the batched phase (the default) and, on at most
--per-guest-guests guests, with one run per guest (kvm_snapshot_batch=false).

Every outcome is checked (untimed) with libvirt-python. Prints a markdown report, writes it to
benchmarks/results/<UTC time>-fleet.md and results/latest-fleet.md, and puts it in benchmarks/README.md.
Needs root and the lab (tests/lab/lab.py up); removes everything it made, also when interrupted.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import fnmatch
import json
import os
import pathlib
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t

REPO = pathlib.Path(__file__).resolve().parents[1]
HERE = REPO / 'benchmarks'
README = HERE / 'README.md'
README_START = '<!-- fleet results: start (written by benchmarks/fleet.py) -->'
README_END = '<!-- fleet results: end -->'
PLAYBOOKS = REPO / 'playbooks'
ANSIBLE_PLAYBOOK = str(pathlib.Path(sys.executable).with_name('ansible-playbook')) \
    if pathlib.Path(sys.executable).with_name('ansible-playbook').exists() else 'ansible-playbook'

sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)

import _results  # noqa: E402  (benchmarks/_results.py, beside this script)
import sshd as sshd_tool  # noqa: E402  (tests/lab/sshd.py)

STEPS = ('snapshot', 'prune', 'cleanup')
METHODS = {
    'floor': 'libvirt-python, thread pool, no Ansible (the floor)',
    'playbook': '`hypervisor_snapshots.yml` (one module run per hypervisor, over SSH)',
    'virsh': '`virsh` loop, one virsh per domain',
}
CHANGE = '''---
- name: Change nothing
  ansible.builtin.debug:
    msg: nothing to change on {{ inventory_hostname }}
'''


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has been busy since boot, summed over its CPUs (every process: libvirtd, QEMU,
    qemu-img, sshd, the modules' Pythons, Ansible), from the first line of /proc/stat."""
    fields = [int(v) for v in pathlib.Path('/proc/stat').read_text().split('\n', 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf('SC_CLK_TCK')


def log(msg: str) -> None:
    print(f'[fleet {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


class BenchError(Exception):
    """A measured command failed or did not do what it should; the run is not valid."""


class Fleet:
    """The fleet of one stack: domains, sshd, inventories, and the measurements."""

    def __init__(self, args: argparse.Namespace, stack: str) -> None:
        self.args = args
        self.stack = lab_tool.Stack(stack)
        self.lab = lab_tool.Lab(stack=self.stack, prefix=f'kslab-fleet-{os.urandom(2).hex()}-')
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix='kvm-snapshots-fleet-'))
        self.hypervisors = {f'hv{i + 1:02d}': f'127.1.0.{i + 1}' for i in range(args.hypervisors)}
        self.domains: dict[str, list[str]] = {}  # hypervisor -> its domains
        self.running: list[str] = []
        self.sshds: list[t.Any] = []
        self.sshd_of: dict[str, t.Any] = {}  # address -> its sshd
        self.times: dict[tuple[str, str], list[float]] = {}
        self.cpu: dict[tuple[str, str], list[float]] = {}  # (step, method) -> busy CPU seconds of the machine
        self.split: dict[str, list[dict[str, float]]] = {}  # step -> where each playbook run's time went
        self.phase: dict[str, list[dict[str, float]]] = {}
        self.notes: list[str] = []
        collections = self.tmp / 'collections' / 'ansible_collections' / 'kvm'
        collections.mkdir(parents=True)
        (collections / 'snapshots').symlink_to(REPO)
        self.env = dict(os.environ)
        self.env.update({
            'ANSIBLE_COLLECTIONS_PATH': str(self.tmp / 'collections'),
            'ANSIBLE_COLLECTIONS_SCAN_SYS_PATH': 'false',
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_RETRY_FILES_ENABLED': 'false',
            'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
            'ANSIBLE_DEPRECATION_WARNINGS': 'false',
            'ANSIBLE_FORKS': str(args.forks),
            'ANSIBLE_CALLBACK_PLUGINS': str(HERE / 'callback_plugins'),
            'ANSIBLE_CALLBACKS_ENABLED': 'bench_phases',
            'ANSIBLE_SSH_CONTROL_PATH_DIR': str(self.tmp / 'cp'),
        })
        self._runs = 0

    # -- the fleet ---------------------------------------------------------------------------

    def methods(self) -> list[str]:
        return [m for m in METHODS if not (m == 'virsh' and self.args.no_virsh)]

    def all_domains(self) -> list[str]:
        return [d for doms in self.domains.values() for d in doms]

    def make(self) -> None:
        per, count = self.args.per_hypervisor, self.args.hypervisors * self.args.per_hypervisor
        running = set()
        for i in range(min(self.args.running, count)):  # spread over the hypervisors: vm001 of hv01, hv02, ...
            running.add((i % self.args.hypervisors, i // self.args.hypervisors))
        log(f'{self.stack.name}: making {count} blank domains ({len(running)} running), {per} on each of '
            f'{self.args.hypervisors} hypervisors')
        start = time.perf_counter()
        jobs = [(h, v) for h in range(self.args.hypervisors) for v in range(per)]

        def make_one(job: tuple[int, int]) -> str:
            h, v = job
            return self.lab.blank_domain(f'hv{h + 1:02d}-vm{v + 1:03d}', state='running' if job in running else 'shutoff')

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            names = list(pool.map(make_one, jobs))
        for (h, _v), name in zip(jobs, names):
            self.domains.setdefault(f'hv{h + 1:02d}', []).append(name)
        self.running = [name for job, name in zip(jobs, names) if job in running]
        log(f'  made in {time.perf_counter() - start:.1f} s')
        # one sshd for each 10 hypervisors: sshd listens on at most 16 addresses (MAX_LISTEN_SOCKS), and beyond 10
        # logins in progress at once (MaxStartups 10:30:100) it drops some
        addresses = list(self.hypervisors.values())
        lines = []
        for first in range(0, len(addresses), 10):
            chunk = addresses[first:first + 10]
            server = sshd_tool.LoopbackSshd(chunk, root=self.stack.root).start()
            self.sshds.append(server)
            for address in chunk:
                self.sshd_of[address] = server
            lines.append(server.known_hosts(self.tmp / f'known_hosts-{first}', right=chunk).read_text())
        known_hosts = self.tmp / 'known_hosts'
        known_hosts.write_text(''.join(lines))
        shim = self.sshds[0].ssh_shim(self.tmp / 'bin', known_hosts)
        self.env['PATH'] = f'{shim}{os.pathsep}{self.env.get("PATH", "")}'

    def hypervisor_vars(self, address: str) -> dict[str, t.Any]:
        server = self.sshd_of[address]
        return {'ansible_connection': 'ssh', 'ansible_host': address, 'ansible_port': server.port,
                'ansible_user': 'root', 'ansible_ssh_private_key_file': str(server.client_key),
                'ansible_python_interpreter': self.stack.hypervisor_python}

    def inventory(self, name: str, domains: dict[str, list[str]], guests: dict[str, str] | None = None) -> str:
        """Hypervisors with their kvm_domains (exact names); guests (name -> hypervisor) for guarded_change."""
        hosts = {hv: dict(self.hypervisor_vars(addr), kvm_domains=domains.get(hv, []))
                 for hv, addr in self.hypervisors.items() if domains.get(hv)}
        inventory: dict[str, t.Any] = {'all': {'children': {'hypervisors': {'hosts': hosts}}}}
        if guests:
            inventory['all']['children']['kvm_guests'] = {
                'hosts': {dom: {'kvm_hypervisor': hv} for dom, hv in guests.items()},
                'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable}}
        path = self.tmp / f'{name}.json'
        path.write_text(json.dumps(inventory, indent=1))
        return str(path)

    def cleanup(self) -> None:
        for server in self.sshds:
            server.stop()
        log(f'{self.stack.name}: removing the fleet')
        self.lab.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- libvirt-python: the floor, the untimed steps, the checks --------------------------------

    def pool_each(self, doms: list[str], work: t.Callable[[t.Any], t.Any], threads: int | None = None) -> list[t.Any]:
        conn = self.lab.conn
        with concurrent.futures.ThreadPoolExecutor(threads or self.args.threads) as pool:
            return list(pool.map(lambda name: work(conn.lookupByName(name)), doms))

    @staticmethod
    def take(dom: t.Any, name: str) -> None:
        dom.snapshotCreateXML(f'<domainsnapshot><name>{name}</name></domainsnapshot>', 0)

    @staticmethod
    def prune(dom: t.Any, match: str, keep: int) -> None:
        # parents before children (LIST_TOPOLOGICAL = 1024), then oldest first: two taken in the same second keep
        # their order
        snaps = [s for s in dom.listAllSnapshots(1024) if fnmatch.fnmatchcase(s.getName(), match)]
        snaps.sort(key=lambda s: int(s.getXMLDesc(0).split('<creationTime>')[1].split('<')[0]))
        for snap in snaps[:len(snaps) - keep]:
            snap.delete(0)

    def floor(self, step: str, doms: list[str]) -> None:
        if step == 'snapshot':
            self.pool_each(doms, lambda d: self.take(d, 'fleet-1'))
        elif step == 'prune':
            self.pool_each(doms, lambda d: self.prune(d, 'fleet-*', 1))
        else:
            self.pool_each(doms, lambda d: d.snapshotLookupByName('fleet-2', 0).delete(0))

    def names(self, doms: list[str]) -> dict[str, list[str]]:
        return dict(zip(doms, self.pool_each(doms, lambda d: sorted(s.getName() for s in d.listAllSnapshots(0)), 8)))

    def expect(self, doms: list[str], want: list[str], what: str) -> None:
        wrong = {d: n for d, n in self.names(doms).items() if n != want}
        if wrong:
            some = dict(list(wrong.items())[:3])
            raise BenchError(f'{what}: {len(wrong)} of {len(doms)} domains do not hold {want}, e.g. {some}')

    def drop_all(self, doms: list[str]) -> None:
        self.pool_each(doms, lambda d: [s.delete(0) for s in d.listAllSnapshots(0)], 8)

    # -- commands ------------------------------------------------------------------------------------

    def timed(self, argv: list[str], env: dict[str, str] | None = None, expect_rc: int = 0) -> tuple[float, str]:
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=3600)
        seconds = time.perf_counter() - start
        if proc.returncode != expect_rc:
            raise BenchError(f'{" ".join(argv[:5])} ... exited with {proc.returncode}:\n'
                             f'{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}')
        return seconds, proc.stdout

    def playbook(self, playbook: str, inventory: str, extra_vars: dict[str, t.Any]) -> tuple[float, dict[str, t.Any]]:
        """Seconds of the whole ansible-playbook, and the task timings of the callback (``started``: the
        perf_counter() when the command started; the callback's clock is the same, CLOCK_MONOTONIC)."""
        self._runs += 1
        vars_file = self.tmp / f'vars-{self._runs}.json'
        vars_file.write_text(json.dumps(extra_vars))
        phases = self.tmp / f'phases-{self._runs}.json'
        env = dict(self.env, BENCH_PHASES_FILE=str(phases))
        started = time.perf_counter()
        seconds, out = self.timed([ANSIBLE_PLAYBOOK, '-i', inventory, str(PLAYBOOKS / playbook), '-e',
                                   f'@{vars_file}'], env)
        if ' failed=0 ' not in out or any(f' failed={n}' in out for n in range(1, 10)):
            raise BenchError(f'{playbook} reported failures:\n{out[-4000:]}')
        if self.args.keep_timings:  # the callback's task timings, for a closer look at where the time goes
            keep = pathlib.Path(self.args.keep_timings)
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(phases, keep / f'{self.stack.name}-{self._runs}-{pathlib.Path(playbook).stem}.json')
        return seconds, dict(json.loads(phases.read_text()), started=started)

    @staticmethod
    def split_run(seconds: float, phases: dict[str, t.Any]) -> dict[str, float]:
        """Where one run of hypervisor_snapshots.yml spent its time: ansible-playbook's start (to the first task)
        and end (after the last), the tasks before the module task (the checks), the module task (first start to
        last result: SSH, the module runs on all hypervisors), the tasks after it (the report)."""
        tasks = phases['tasks']
        module = [r for r in tasks if r['action'].startswith('kvm.snapshots.') and r['runs']]
        if not tasks or len(module) != 1:
            return {}
        first, last = tasks[0]['start'], max(r['end'] for r in tasks)
        mod = module[0]
        return {'start_end': seconds - (last - first), 'before': mod['start'] - first, 'module': mod['end'] - mod['start'],
                'after': last - mod['end'], 'tasks': len(tasks)}

    def virsh_loop(self, step: str, doms: list[str]) -> None:
        uri = self.stack.uri
        scripts = {
            'snapshot': 'for d in "$@"; do virsh -q -c "$U" snapshot-create-as "$d" fleet-1 >/dev/null || exit 1; done',
            'prune': ('for d in "$@"; do for s in $(virsh -q -c "$U" snapshot-list "$d" --name --topological | grep "^fleet-" '
                      '| head -n -1); do virsh -q -c "$U" snapshot-delete "$d" "$s" >/dev/null || exit 1; done; done'),
            'cleanup': 'for d in "$@"; do virsh -q -c "$U" snapshot-delete "$d" fleet-2 >/dev/null || exit 1; done',
        }
        self.timed(['bash', '-c', scripts[step], 'loop', *doms], dict(os.environ, U=uri))

    def record(self, key: tuple[str, str], seconds: float) -> None:
        self.times.setdefault(key, []).append(seconds)
        log(f'  {self.stack.name} {key[0]:<9} {key[1]:<20} {seconds:7.2f} s')

    # -- the measurements --------------------------------------------------------------------------

    def hypervisor_steps(self, rep: int) -> None:
        doms = self.all_domains()
        inventory = self.inventory('fleet', self.domains)
        methods = self.methods()
        methods = methods[rep % len(methods):] + methods[:rep % len(methods)]  # which goes first turns with the repetition
        for method in methods:
            for step in STEPS:
                if step == 'prune':  # the second snapshot, untimed, with the floor's code
                    self.pool_each(doms, lambda d: self.take(d, 'fleet-2'))
                start, cpu_start = time.perf_counter(), busy_cpu_seconds()
                if method == 'floor':
                    self.floor(step, doms)
                    seconds = time.perf_counter() - start
                elif method == 'virsh':
                    self.virsh_loop(step, doms)
                    seconds = time.perf_counter() - start
                else:
                    extra = {'kvm_action': step, 'kvm_parallel': self.args.parallel}
                    extra.update({'snapshot': {'kvm_snapshot_name': 'fleet-1'},
                                  'prune': {'kvm_prune_match': 'fleet-*', 'kvm_prune_keep_last': 1},
                                  'cleanup': {'kvm_snapshot_name': 'fleet-2'}}[step])
                    seconds, phases = self.playbook('hypervisor_snapshots.yml', inventory, extra)
                    self.split.setdefault(step, []).append(self.split_run(seconds, phases))
                self.cpu.setdefault((step, method), []).append(busy_cpu_seconds() - cpu_start)
                self.record((step, method), seconds)
                self.expect(doms, {'snapshot': ['fleet-1'], 'prune': ['fleet-2'], 'cleanup': []}[step],
                            f'{method} {step}')

    def guarded(self, count: int, batch: bool) -> None:
        """guarded_change.yml over ``count`` shut-off domains as guests, and hypervisor_snapshots.yml on them."""
        running = set(self.running)
        chosen: dict[str, list[str]] = {}
        per_hv = {hv: [d for d in doms if d not in running] for hv, doms in self.domains.items()}
        i = 0
        while sum(len(v) for v in chosen.values()) < count and any(per_hv.values()):
            hv = list(per_hv)[i % len(per_hv)]
            if per_hv[hv]:
                chosen.setdefault(hv, []).append(per_hv[hv].pop(0))
            i += 1
        guests = {d: hv for hv, doms in chosen.items() for d in doms}
        doms = list(guests)
        label = f'{len(doms)} guests, ' + ('batched' if batch else 'one run per guest')
        inventory = self.inventory(f'guests-{len(doms)}', chosen, guests)
        change = self.tmp / 'change.yml'
        change.write_text(CHANGE)
        change_id = f'b{self._runs}'
        seconds, phases = self.playbook('guarded_change.yml', inventory, {
            'kvm_change_tasks': str(change), 'kvm_change_id': change_id, 'kvm_serial': ['100%'], 'kvm_soak': '1d',
            'kvm_snapshot_batch': batch, 'kvm_connection_mode': 'hypervisor',
            # no job-slot limit: the slots are lock files of the machine the modules run on, and the lab's hypervisors
            # are one machine, so the default 4 a hypervisor would be 4 for the whole fleet (hypervisor_snapshots.yml,
            # which it is compared with, has no such limit); each leader then takes its guests' snapshots all at once
            'kvm_snapshot_jobs': 0})
        pre = [r for r in phases['tasks'] if r['role'] == 'pre_change']
        phase = max(r['end'] for r in pre) - min(r['start'] for r in pre)
        runs = sum(r['runs'] for r in pre if r['action'].startswith('kvm.snapshots.'))
        self.expect(doms, [f'pre-change-{change_id}'], f'guarded_change {label}')
        self.drop_all(doms)
        hv_seconds, hv_phases = self.playbook('hypervisor_snapshots.yml', self.inventory('same', chosen), {
            'kvm_action': 'snapshot', 'kvm_snapshot_name': 'fleet-g', 'kvm_parallel': self.args.parallel})
        hv_task = sum(r['end'] - r['start'] for r in hv_phases['tasks'] if r['action'] == 'kvm.snapshots.snapshot')
        self.expect(doms, ['fleet-g'], f'hypervisor_snapshots on the {label}')
        self.drop_all(doms)
        self.phase.setdefault(label, []).append({
            'phase': phase, 'whole': seconds, 'runs': runs, 'hv_whole': hv_seconds, 'hv_task': hv_task,
            'hypervisors': len(chosen)})
        log(f'  {self.stack.name} guarded_change {label}: pre-change phase {phase:.2f} s ({runs} module runs), '
            f'whole {seconds:.2f} s; hypervisor_snapshots.yml {hv_seconds:.2f} s (its snapshot task {hv_task:.2f} s)')

    def run(self) -> None:
        self.make()
        self.facts = {'libvirt': lab_tool.libvirt_version(self.stack.uri), 'load_start': os.getloadavg()[0]}
        self.drop_all(self.all_domains())
        for rep in range(self.args.repeat):
            log(f'{self.stack.name}: repetition {rep + 1} of {self.args.repeat}')
            if not self.args.guarded_only:
                self.hypervisor_steps(rep)
            if self.args.guests:
                self.guarded(self.args.guests, batch=True)
                if self.args.per_guest_guests:
                    self.guarded(min(self.args.guests, self.args.per_guest_guests), batch=False)
        self.facts['load_end'] = os.getloadavg()[0]

    # -- the report --------------------------------------------------------------------------------

    def report(self) -> str:
        med = statistics.median
        n = len(self.all_domains())
        lines = [f'**{self.stack.name}**: libvirt {".".join(map(str, self.facts["libvirt"]))}; {self.args.hypervisors} '
                 f'hypervisors over SSH x {self.args.per_hypervisor} domains = {n} ({len(self.running)} running); '
                 f'load average {self.facts["load_start"]:.1f} at the start, {self.facts["load_end"]:.1f} at the end.']
        if self.times:
            lines += ['', '| step, all domains | ' + ' | '.join(METHODS[m] for m in self.methods())
                      + ' | playbook / floor |', '|---|' + '---:|' * (len(self.methods()) + 1)]
        for step in STEPS if self.times else ():
            floor = med(self.times[(step, 'floor')])
            cells = [f'{med(self.times[(step, m)]):.2f} s ({med(self.times[(step, m)]) / floor:.2f}x)'
                     for m in self.methods()]
            ratios = ', '.join(f'{p / f:.2f}x' for p, f in zip(self.times[(step, 'playbook')], self.times[(step, 'floor')]))
            lines.append(f'| {step} | ' + ' | '.join(cells) + f' | {ratios} |')
        if self.cpu:
            cpus = os.cpu_count() or 1
            lines += ['', f'| CPU time the machine used during each step (all {cpus} CPUs, every process) | '
                      + ' | '.join(f'{m}: CPU seconds (wall time at least CPU / {cpus})' for m in self.methods())
                      + ' | playbook CPU / floor CPU |', '|---|' + '---:|' * (len(self.methods()) + 1)]
            for step in STEPS:
                cpu = {m: med(self.cpu[(step, m)]) for m in self.methods()}
                lines.append(f'| {step} | ' + ' | '.join(f'{cpu[m]:.1f} s ({cpu[m] / cpus:.1f} s)' for m in self.methods())
                             + f' | {cpu["playbook"] / cpu["floor"]:.2f}x |')
        if self.split:
            lines += ['', '| `hypervisor_snapshots.yml`, where its time goes | ansible-playbook start and end | tasks '
                      'before the module task (checks) | the module task (SSH, module runs on all hypervisors) '
                      '| tasks after it (report) | module task / floor |', '|---|---:|---:|---:|---:|---:|']
            for step, rows in self.split.items():
                rows = [r for r in rows if r]
                if not rows:
                    continue
                cells = [f'{med([r[k] for r in rows]):.2f} s' for k in ('start_end', 'before', 'module', 'after')]
                ratio = ', '.join(f'{r["module"] / f:.2f}x' for r, f in zip(rows, self.times[(step, 'floor')]))
                lines.append(f'| {step} ({rows[0]["tasks"]:.0f} tasks) | ' + ' | '.join(cells) + f' | {ratio} |')
        if self.phase:
            lines += ['', '| guarded_change.yml, guests | pre-change phase (pre_change role, timed by the callback) '
                      '| module runs | whole playbook | `hypervisor_snapshots.yml` snapshot, same domains '
                      '| phase / hypervisor_snapshots.yml |', '|---|---:|---:|---:|---:|---:|']
            for label, rows in self.phase.items():
                ratio = ', '.join(f'{r["phase"] / r["hv_whole"]:.2f}x' for r in rows)
                lines.append(f'| {label} on {rows[0]["hypervisors"]} hypervisors | {med([r["phase"] for r in rows]):.2f} s '
                             f'| {rows[0]["runs"]} | {med([r["whole"] for r in rows]):.2f} s '
                             f'| {med([r["hv_whole"] for r in rows]):.2f} s (its module task '
                             f'{med([r["hv_task"] for r in rows]):.2f} s) | {ratio} |')
        lines += ['', '<details><summary>Every run</summary>', '']
        for (step, method), values in self.times.items():
            lines.append(f'- {step}, {method}: ' + ', '.join(f'{v:.2f}' for v in values)
                         + ' s; CPU ' + ', '.join(f'{v:.1f}' for v in self.cpu.get((step, method), [])) + ' s')
        for label, rows in self.phase.items():
            for r in rows:
                lines.append(f'- {label}: phase {r["phase"]:.2f} s, whole {r["whole"]:.2f} s, {r["runs"]} module runs; '
                             f'hypervisor_snapshots.yml {r["hv_whole"]:.2f} s, its module task {r["hv_task"]:.2f} s')
        lines += ['', '</details>', '']
        return '\n'.join(lines)


def save(report: str, started: datetime.datetime) -> pathlib.Path:
    path = _results.save(report, started, '-fleet')
    _results.update_readme(README, README_START, README_END, report)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--stack', default='bookworm,trixie', help='lab stacks, comma-separated (%(default)s)')
    parser.add_argument('--hypervisors', type=int, default=20, help='inventory hypervisors (%(default)s)')
    parser.add_argument('--per-hypervisor', type=int, default=50, help='domains of each hypervisor (%(default)s)')
    parser.add_argument('--running', type=int, default=5, help='of them running, the others shut off (%(default)s)')
    parser.add_argument('--guests', type=int, default=200, help='guests of guarded_change.yml, 0: none (%(default)s)')
    parser.add_argument('--per-guest-guests', type=int, default=40,
                        help='guests of guarded_change.yml with one run per guest, 0: not measured (%(default)s)')
    parser.add_argument('--repeat', type=int, default=1, help='repetitions; the median counts (%(default)s)')
    parser.add_argument('--parallel', type=int, default=4, help='kvm_parallel of hypervisor_snapshots.yml (%(default)s)')
    parser.add_argument('--threads', type=int, default=8, help="the floor's thread pool (%(default)s)")
    parser.add_argument('--forks', type=int, default=20, help="Ansible's forks (%(default)s)")
    parser.add_argument('--guarded-only', action='store_true',
                        help='measure only the guest-level workflow (guarded_change.yml against hypervisor_snapshots.yml)')
    parser.add_argument('--no-virsh', action='store_true',
                        help='leave out the virsh loop (at 1,000 domains it takes minutes a step)')
    parser.add_argument('--no-save', action='store_true', help='print only; write no results file')
    parser.add_argument('--keep-timings', metavar='DIR',
                        help="keep each playbook run's task timings (the callback's JSON) in DIR")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error('the lab needs root')
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the fleet is removed (finally) on a kill
    started = datetime.datetime.now(datetime.timezone.utc)
    parts = []
    for stack in [s.strip() for s in args.stack.split(',') if s.strip()]:
        fleet = Fleet(args, stack)
        try:
            fleet.run()
            parts.append(fleet.report())
        except (BenchError, lab_tool.LabError, sshd_tool.SshdError) as exc:
            print(f'benchmark failed on {stack}: {exc}', file=sys.stderr)
            return 1
        finally:
            fleet.cleanup()
    minutes = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds() / 60
    import ansible  # noqa: PLC0415  (only for its version)
    report = '\n'.join([
        f'### Fleet run of {started:%Y-%m-%d %H:%M} UTC', '',
        f'{os.cpu_count()} CPUs shared with colleagues, ansible-core {ansible.__version__}, Python '
        f'{platform.python_version()}; forks {args.forks}, kvm_parallel {args.parallel}, floor threads {args.threads}; '
        f'{args.repeat} repetition(s), the median shown, ratios to the floor of the same repetition. Whole run: '
        f'{minutes:.0f} min.', '', *parts])
    print(report)
    if not args.no_save:
        path = save(report, started)
        log(f'written to {path.relative_to(REPO)}, results/latest-fleet.md and README.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
