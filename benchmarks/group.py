# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The window of a group snapshot (kvm.snapshots.snapshot_group) against two plain virsh calls (benchmarks/README.md).

    python3 benchmarks/group.py                            # the current stack ($KSLAB_STACK, else bookworm), 3 times
    python3 benchmarks/group.py --stack trixie --repeat 1 --no-save   # a quick look

Two real Debian guests (BIOS, so that internal snapshots can be made on both stacks; 384 MiB) on two hypervisors:
two loopback addresses of a private sshd (tests/lab/sshd.py), reached by ``qemu+ssh://`` URIs, both landing on the
stack's libvirtd, as in tests/integration/test_group_consistency.py. For each cell, ``snapshot_group`` takes a group
snapshot of both (the module file run by Python with its arguments, as Ansible runs it) and reports ``window_ms``:
from the first freeze or pause to the last thaw or resume. The cells:

* ``freeze: pause`` x ``location: internal`` (memory in the qcow2 images) and ``external`` (memory and overlay files);
* ``freeze: agent`` x ``external`` (disk-only, file systems frozen by the guest agent); ``agent`` x ``internal`` is
  refused by the module (an internal snapshot of a running guest holds its memory, and the memory would hold frozen
  file systems): the table says so;
* the baseline, in the same run and over the same URIs: two plain ``virsh snapshot-create-as`` one after the other,
  the first domain then the second, internal (virsh's default for a running guest: with memory) and external
  (``--disk-only --atomic``): the window is from the start of the first command to the end of the second, the
  time between the two cuts you get without the module.

Every snapshot is checked (``virsh snapshot-list`` of both domains has it) and deleted before the next one (the
module's ``state: absent``; ``virsh snapshot-delete`` for the baseline's). Internal cells run before external ones
(one kind of snapshot per domain). Writes benchmarks/results/<UTC time>-group.md and results/latest-group.md and puts
the report into benchmarks/README.md between the "group window" markers. Needs root and the lab (tests/lab/lab.py
up); every domain it makes is named ``kslab-bgrp-<random>-...`` and removed at the end, also when it fails.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t

REPO = pathlib.Path(__file__).resolve().parents[1]
HERE = REPO / 'benchmarks'
START = '<!-- group window: start (written by benchmarks/group.py) -->'
END = '<!-- group window: end -->'

sys.path.insert(0, str(REPO / 'tests' / 'lab'))
import lab as lab_tool  # noqa: E402  (tests/lab/lab.py)
import sshd as sshd_tool  # noqa: E402  (tests/lab/sshd.py)

import _results  # noqa: E402  (benchmarks/_results.py, beside this script)

ADDRESSES = ('127.0.0.14', '127.0.0.15')
MODULE = 'ansible_collections.kvm.snapshots.plugins.modules.snapshot_group'
#: (freeze, location) in the order they run: internal before external
CELLS = (('pause', 'internal'), ('agent', 'internal'), ('pause', 'external'), ('agent', 'external'))
BASELINES = {
    'internal': [],                           # virsh's default for a running guest: internal, with memory
    'external': ['--disk-only', '--atomic'],  # the plainest external one: overlays, no memory
}


def log(msg: str) -> None:
    print(f'[group {time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


class BenchError(Exception):
    """A step failed or did not do what it should; the run is not valid."""


class GroupBench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix='kvm-snapshots-group-'))
        collections = self.tmp / 'collections' / 'ansible_collections' / 'kvm'
        collections.mkdir(parents=True)
        (collections / 'snapshots').symlink_to(REPO)
        self.collections_root = self.tmp / 'collections'
        self._runs = 0
        self.env: dict[str, str] = {}
        self.uris: list[str] = []
        # (stack, freeze or 'virsh', location) -> [{'window_ms', 'members_ms', 'seconds', 'load'} or {'refused'}]
        self.data: dict[tuple[str, str, str], list[dict[str, t.Any]]] = {}
        self.facts: dict[str, dict[str, t.Any]] = {}

    # -- the two ways -----------------------------------------------------------------------------

    def module(self, args: dict[str, t.Any], refusal_ok: bool = False) -> tuple[float, dict[str, t.Any]]:
        self._runs += 1
        args_file = self.tmp / f'args-{self._runs}.json'
        args_file.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
        env = dict(self.env, PYTHONPATH=str(self.collections_root))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, '-m', MODULE, str(args_file)], env=env, cwd=str(self.tmp),
                              capture_output=True, text=True, check=False, timeout=900)
        seconds = time.perf_counter() - start
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            result = {'failed': True, 'msg': proc.stdout[-2000:] + proc.stderr[-2000:]}
        if (proc.returncode != 0 or result.get('failed')) and not refusal_ok:
            raise BenchError(f'snapshot_group {args.get("state")} {args.get("name")}: {result.get("msg")}')
        return seconds, result

    def virsh(self, uri: str, *argv: str) -> float:
        start = time.perf_counter()
        proc = subprocess.run(['virsh', '-c', uri, *argv], env=self.env, capture_output=True, text=True,
                              check=False, timeout=900)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise BenchError(f'virsh {" ".join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}')
        return seconds

    # -- one stack --------------------------------------------------------------------------------

    def stack(self, name: str) -> None:
        st = lab_tool.stack(name)
        if st.root is None:
            lab_tool.start_daemons(st.uri)
        else:
            lab_tool.start_stack(name)
        lab = lab_tool.Lab(stack=st, prefix=f'kslab-bgrp-{os.urandom(2).hex()}-')
        server = sshd_tool.LoopbackSshd(list(ADDRESSES), root=st.root)
        facts = self.facts.setdefault(name, {'load': [os.getloadavg()[0]]})
        begin = time.perf_counter()
        try:
            facts['libvirt'] = _version(lab.conn.getLibVersion())
            facts['qemu'] = _version(lab.conn.getVersion())
            server.start()
            known_hosts = server.known_hosts(self.tmp / f'known_hosts-{name}', right=ADDRESSES)
            shim = server.ssh_shim(self.tmp / f'bin-{name}', known_hosts)
            self.env = dict(os.environ, PATH=f'{shim}{os.pathsep}{os.environ.get("PATH", "")}')
            self.uris = [f'qemu+ssh://root@{address}:{server.port}/system?no_tty=1&keyfile={server.client_key}'
                         for address in ADDRESSES]
            log(f'{name}: booting two BIOS Debian guests ({self.args.memory} MiB) and waiting for their agents')
            guests = [lab.guest_domain(f'g{i}', memory_mib=self.args.memory, firmware='bios') for i in (1, 2)]
            for guest in guests:
                lab.wait_agent(guest, timeout=900)
            for guest in guests:
                lab.guest_exec(guest, ['/usr/bin/systemctl', 'is-system-running', '--wait'], timeout=600)
            facts['boot'] = time.perf_counter() - begin
            log(f'  booted in {facts["boot"]:.0f} s')
            for location in ('internal', 'external'):
                for rep in range(1, self.args.repeat + 1):
                    for freeze, where in CELLS:
                        if where == location:
                            self.cell(lab, name, guests, freeze, location, rep)
                    self.baseline(lab, name, guests, location, rep)
            facts['load'].append(os.getloadavg()[0])
            facts['seconds'] = time.perf_counter() - begin
        finally:
            server.stop()
            lab.cleanup()
            lab.close()

    def members(self, guests: list[str]) -> list[dict[str, str]]:
        return [{'domain': guest, 'uri': uri} for guest, uri in zip(guests, self.uris)]

    def check_listed(self, lab: t.Any, guests: list[str], snap: str, present: bool) -> None:
        for guest in guests:
            names = lab.virsh('snapshot-list', guest, '--name').stdout.split()
            if (snap in names) != present:
                raise BenchError(f'{guest}: snapshot {snap} {"missing" if present else "still there"}: {names}')

    def cell(self, lab: t.Any, stack: str, guests: list[str], freeze: str, location: str, rep: int) -> None:
        snap = f'grp-{freeze}-{location[:3]}-{rep}'
        entries = self.data.setdefault((stack, freeze, location), [])
        if any('refused' in e for e in entries):
            return
        time.sleep(1.0)
        load = os.getloadavg()[0]
        seconds, result = self.module({'name': snap, 'members': self.members(guests), 'freeze': freeze,
                                       'location': location}, refusal_ok=True)
        if result.get('failed'):
            if freeze == 'agent' and location == 'internal':
                entries.append({'refused': result.get('msg', '')})
                log(f'{stack}: {freeze} x {location}: refused, as documented: {result.get("msg", "")[:160]}')
                self.check_listed(lab, guests, snap, present=False)
                return
            raise BenchError(f'snapshot_group {freeze} x {location}: {result.get("msg")}')
        if result.get('freeze_used') != freeze:
            raise BenchError(f'{freeze} x {location}: freeze_used {result.get("freeze_used")}: '
                             f'{result.get("warnings")}')
        self.check_listed(lab, guests, snap, present=True)
        entries.append({'window_ms': result['window_ms'], 'seconds': seconds, 'load': load,
                        'members_ms': [m['window_ms'] for m in result['members']],
                        'kind': result['members'][0].get('kind')})
        log(f'{stack}: {freeze} x {location} #{rep}: window {result["window_ms"]} ms '
            f'(members {[m["window_ms"] for m in result["members"]]}), module {seconds:.1f} s, load {load:.1f}')
        self.module({'name': snap, 'members': self.members(guests), 'state': 'absent'})
        self.check_listed(lab, guests, snap, present=False)

    def baseline(self, lab: t.Any, stack: str, guests: list[str], location: str, rep: int) -> None:
        snap = f'virsh-{location[:3]}-{rep}'
        time.sleep(1.0)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        calls = [self.virsh(uri, 'snapshot-create-as', guest, snap, *BASELINES[location])
                 for guest, uri in zip(guests, self.uris)]
        window = time.perf_counter() - start
        self.check_listed(lab, guests, snap, present=True)
        self.data.setdefault((stack, 'virsh', location), []).append(
            {'window_ms': round(window * 1000), 'seconds': window, 'load': load,
             'members_ms': [round(c * 1000) for c in calls]})
        log(f'{stack}: two virsh snapshot-create-as, {location} #{rep}: {window * 1000:.0f} ms '
            f'({", ".join(f"{c * 1000:.0f}" for c in calls)}), load {load:.1f}')
        for guest, uri in zip(guests, self.uris):
            self.virsh(uri, 'snapshot-delete', guest, snap)
        self.check_listed(lab, guests, snap, present=False)

    # -- the report ------------------------------------------------------------------------------

    def report(self, stacks: list[str], started: datetime.datetime, seconds: float) -> str:
        out = [f'Measured {started:%Y-%m-%d %H:%M} UTC by `benchmarks/group.py --repeat {self.args.repeat}` '
               f'in {seconds / 60:.1f} min on {os.cpu_count()} CPUs, two {self.args.memory} MiB BIOS guests over '
               'two `qemu+ssh://` URIs (software emulation, TCG). Window: from the first freeze or pause to the last '
               'thaw or resume (`window_ms`); for the baseline, from the start of the first `virsh '
               'snapshot-create-as` to the end of the second. Median (min-max) of the repetitions.', '']
        for stack in stacks:
            facts = self.facts[stack]
            out.append(f'**{stack}** (libvirt {facts["libvirt"]}, QEMU {facts["qemu"]}; load average '
                       f'{min(facts["load"]):.1f}-{max(facts["load"]):.1f}; '
                       f'the guests booted in {facts["boot"]:.0f} s)')
            out.append('')
            out.append('| how | internal | external |')
            out.append('|---|---:|---:|')
            rows = (('pause', '`freeze: pause` (vCPUs stopped; snapshots with memory)'),
                    ('agent', '`freeze: agent` (file systems frozen; disk-only)'),
                    ('virsh', 'no module: two `virsh snapshot-create-as` in a row (baseline)'))
            for how, label in rows:
                cells = [self.cell_text(stack, how, location) for location in ('internal', 'external')]
                out.append(f'| {label} | {cells[0]} | {cells[1]} |')
            out.append('')
        out.append('<details><summary>Every run</summary>')
        out.append('')
        for (stack, how, location), entries in self.data.items():
            parts = [e['refused'] if 'refused' in e else
                     f'{e["window_ms"]} ms (members {", ".join(map(str, e["members_ms"]))}; '
                     f'{e["seconds"]:.1f} s in all; load {e["load"]:.1f})' for e in entries]
            out.append(f'- {stack}, {how}, {location}: ' + '; '.join(parts))
        out.append('')
        out.append('</details>')
        return '\n'.join(out) + '\n'

    def cell_text(self, stack: str, how: str, location: str) -> str:
        entries = self.data.get((stack, how, location), [])
        if not entries:
            return 'not measured'
        if any('refused' in e for e in entries):
            return 'refused by the module (memory would hold frozen file systems)'
        windows = [e['window_ms'] for e in entries]
        return f'{statistics.median(windows):.0f} ms ({min(windows)}-{max(windows)})'


def _version(number: int) -> str:
    return f'{number // 1000000}.{number // 1000 % 1000}.{number % 1000}'


def save(report: str, started: datetime.datetime) -> pathlib.Path:
    path = _results.save(report, started, '-group')
    _results.update_readme(HERE / 'README.md', START, END, report)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--stack', default=os.environ.get('KSLAB_STACK') or 'bookworm',
                        help='lab stacks, comma-separated, measured one after the other (%(default)s: $KSLAB_STACK)')
    parser.add_argument('--repeat', type=int, default=3, help='repetitions; the median counts (%(default)s)')
    parser.add_argument('--memory', type=int, default=384, help='MiB of RAM of each guest (%(default)s)')
    parser.add_argument('--no-save', action='store_true', help='print only; write no results file')
    args = parser.parse_args(argv)
    stacks = [s.strip() for s in args.stack.split(',') if s.strip()]
    if os.geteuid() != 0:
        parser.error('the lab needs root')
    bench = GroupBench(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    begin = time.perf_counter()
    try:
        for stack in stacks:
            bench.stack(stack)
    except (BenchError, lab_tool.LabError, sshd_tool.SshdError) as exc:
        print(f'benchmark failed: {exc}', file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    report = bench.report(stacks, started, time.perf_counter() - begin)
    print(report)
    if not args.no_save:
        path = save(report, started)
        log(f'written to {path.relative_to(REPO)}, results/latest-group.md and benchmarks/README.md')
    return 0


if __name__ == '__main__':
    sys.exit(main())
