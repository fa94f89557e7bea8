# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where a benchmark's report goes, for run.py, kinds.py and fleet.py: a dated file and a latest file under
benchmarks/results/, and the part of a README between a pair of markers."""

from __future__ import annotations

import datetime
import pathlib

RESULTS = pathlib.Path(__file__).resolve().parent / 'results'


def save(report: str, started: datetime.datetime, suffix: str = '') -> pathlib.Path:
    """results/<start time><suffix>.md and results/latest<suffix>.md; the path of the first."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f'{started:%Y-%m-%d-%H%M}{suffix}.md'
    path.write_text(report)
    (RESULTS / f'latest{suffix}.md').write_text(report)
    return path


def put_between_markers(text: str, start: str, end: str, report: str) -> str:
    """text with the part between start and end replaced by report (unchanged without the markers)."""
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    _old, tail = rest.split(end, 1)
    return f'{head}{start}\n{report}{end}{tail}'


def update_readme(readme: pathlib.Path, start: str, end: str, report: str) -> None:
    """Put report between the markers of readme, if it exists and has them."""
    if readme.exists():
        readme.write_text(put_between_markers(readme.read_text(), start, end, report))
