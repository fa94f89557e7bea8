# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module_utils is PRIVATE to the kvm.snapshots collection.
# It may change without notice; do not use it from other collections.

"""One domain or many: run_domains is the one path of a module for ``domain`` and for ``domains`` (batch mode: one
module run acting on many domains, in parallel); the work on one domain returns a DomainResult.

One libvirt connection is shared by the worker threads (libvirt connections
are thread-safe and libvirt-python releases the GIL during calls). A
domain's failure is recorded in its own result and never stops the others.
"""

from __future__ import annotations

import concurrent.futures
import fnmatch
import typing as t

from ansible_collections.kvm.snapshots.plugins.module_utils._libvirt import (
    LibvirtError,
    OptionGroup,
    SnapshotError,
    describe,
)

BATCH_ARGUMENT_SPEC: dict[str, dict[str, t.Any]] = {
    'domain': {'type': 'str'},
    'domains': {'type': 'list', 'elements': 'str'},
    'parallel': {'type': 'int', 'default': 4},
}
BATCH_MODULE_KWARGS: dict[str, t.Any] = {
    'mutually_exclusive': [('domain', 'domains')],
    'required_one_of': [('domain', 'domains')],
}
BATCH_OPTIONS = OptionGroup(BATCH_ARGUMENT_SPEC, BATCH_MODULE_KWARGS)  # documented by kvm.snapshots._libvirt.batch

_GLOB_CHARS = frozenset('*?[')


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def resolve_domains(conn: t.Any, patterns: list[str]) -> tuple[list[str], list[str]]:
    """Domain names for a list of names and shell globs, in the order given, without repeats.

    A plain name is kept even when no such domain exists (its run then
    reports that), a glob expands to the domains it matches. A pattern that
    is the exact name of a domain names that domain, even when it holds
    ``*``, ``?`` or ``[``; in a glob, ``[*]``, ``[?]`` and ``[[]`` match
    those characters themselves. Returns the names and the globs that
    matched nothing.
    """
    existing: list[str] | None = None
    names: list[str] = []
    unmatched: list[str] = []
    for pattern in patterns:
        if is_glob(pattern):
            if existing is None:
                existing = sorted(d.name() for d in conn.listAllDomains(0))
            # exact names first: a domain called "web[1]" is named by "web[1]"
            matches = [pattern] if pattern in existing else fnmatch.filter(existing, pattern)
            if not matches:
                unmatched.append(pattern)
            names.extend(m for m in matches if m not in names)
        elif pattern not in names:
            names.append(pattern)
    return names, unmatched


def run_parallel(names: list[str], work: t.Callable[[str], dict[str, t.Any]],
                 parallel: int) -> list[dict[str, t.Any]]:
    """``work(name)`` for every name, at most ``parallel`` at once; results in the order of ``names``.

    An exception becomes ``{'domain': name, 'failed': True, 'changed': False, 'msg': ...}``.
    """
    def guarded(name: str) -> dict[str, t.Any]:
        try:
            result = work(name)
        except SnapshotError as exc:
            result = {'changed': False, 'failed': True, 'msg': exc.msg}
        except LibvirtError as exc:
            result = {'changed': False, 'failed': True, 'msg': describe(exc, f'Domain "{name}"')}
        except Exception as exc:  # pylint: disable=broad-exception-caught
            # a bug must not hide the other domains' results: report it on this domain
            result = {'changed': False, 'failed': True,
                      'msg': f'Domain "{name}": unexpected error: {exc.__class__.__name__}: {exc}'}
        result.setdefault('failed', False)
        return {'domain': name, **result}

    if len(names) <= 1 or parallel <= 1:
        return [guarded(name) for name in names]
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(parallel, len(names))) as pool:
        return list(pool.map(guarded, names))


def batch_summary(results: list[dict[str, t.Any]]) -> tuple[bool, list[str]]:
    """Whether anything changed, and the failed domains' messages."""
    changed = any(r.get('changed') for r in results)
    failures = [f'{r["domain"]}: {r["msg"]}' for r in results if r.get('failed')]
    return changed, failures


def with_diff(client: t.Any, result: dict[str, t.Any], before: t.Any, after: t.Any) -> dict[str, t.Any]:
    """Add ``diff: {before, after}`` to a result when the user asked for --diff."""
    if client.diff_mode:
        result['diff'] = {'before': before, 'after': after}
    return result


class DomainResult(t.NamedTuple):
    """What the work on one domain gives back to run_domains.

    ``data``: the module's own keys of the domain's result (run_domains adds ``domain`` and ``changed``);
    ``before`` and ``after``: the domain's state for --diff; ``warnings``: given once the work is done;
    ``failure``: the message of a domain that failed after work worth reporting (its ``data`` is still returned).
    """

    changed: bool
    data: dict[str, t.Any]
    before: t.Any = None
    after: t.Any = None
    warnings: t.Sequence[str] = ()
    failure: str | None = None


def _batch_names(client: t.Any) -> tuple[list[str], list[str]]:
    """The domains that ``domains`` names or matches, and its globs that matched nothing; refuses empty entries."""
    patterns = client.params['domains']
    if patterns is None:  # domain: null passes Ansible's one-of check
        raise SnapshotError('One of domain and domains is required, and domain is null: give the name of a domain '
                            '(a variable that came out empty, such as "{{ none }}"?).')
    bad = [p for p in patterns if not isinstance(p, str) or not p.strip()]
    if bad:
        raise SnapshotError(f'domains holds {len(bad)} empty name(s): every entry must be a domain name or a glob '
                            '(such as "web-*"). Nothing was changed.')
    if not patterns:
        client.module.warn('domains is an empty list: no domain was named, so nothing was done. '
                           'Name domains or globs, such as "*" for every domain of the hypervisor.')
    return resolve_domains(client.conn, patterns)


def run_domains(client: t.Any, work: t.Callable[[str], DomainResult], diff_by_domain: bool = False) -> dict[str, t.Any]:
    """The one path of a module for one domain (``domain``) and for many (``domains``, batch mode): ``work(name)``
    does one domain; this owns the fork, the warnings and the diff.

    One domain: the task's result is the domain's (``domain``, ``changed`` and its data); its failure fails the
    task, with that data. --diff shows its ``before`` and ``after`` (keyed by its name with ``diff_by_domain``).
    Many: ``results`` has an entry per domain, in the order the domains were resolved, with ``failed`` and ``msg``
    for a domain that failed (work that raised, or a result with a ``failure``), and ``unmatched`` the globs that
    matched nothing; any failure fails the task with every result. --diff shows each domain's state keyed by name.
    The warnings of every domain whose work returned are given, in the order of the domains.
    """
    name = client.params['domain']
    if name is not None or 'domains' not in client.params:
        done = work(name)
        result = {'domain': name, 'changed': done.changed, **done.data}
        for warning in done.warnings:
            client.module.warn(warning)
        if done.failure is not None:
            raise SnapshotError(done.failure, **result)
        if diff_by_domain:
            return with_diff(client, result, {name: done.before}, {name: done.after})
        return with_diff(client, result, done.before, done.after)

    names, unmatched = _batch_names(client)
    finished: dict[str, DomainResult] = {}

    def entry(domain: str) -> dict[str, t.Any]:
        finished[domain] = done = work(domain)
        item = {'changed': done.changed, **done.data}
        if done.failure is not None:
            item.update(failed=True, msg=done.failure)
        return item

    results = run_parallel(names, entry, client.params['parallel'])
    for domain in (n for n in names if n in finished):
        for warning in finished[domain].warnings:
            client.module.warn(warning)
    changed, failures = batch_summary(results)
    if failures:
        raise SnapshotError(f'{len(failures)} of {len(results)} domains failed: ' + '; '.join(failures),
                            changed=changed, results=results, unmatched=unmatched)
    return with_diff(client, {'changed': changed, 'results': results, 'unmatched': unmatched},
                     {n: finished[n].before for n in names}, {n: finished[n].after for n in names})
