# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every relative link of the project's Markdown files reaches a file, and every #anchor a heading of it
(as GitHub makes anchors: lower case, punctuation dropped, blanks to hyphens). A section that moved or was lost
(benchmarks/README.md's group section once was) fails here."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SKIP = {'.git', '.ansible', 'collections', 'output', 'changelogs', 'node_modules'}
DOCS = sorted(p for p in ROOT.rglob('*.md') if not SKIP & set(p.relative_to(ROOT).parts))


def anchor(heading: str) -> str:
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(path: pathlib.Path) -> set[str]:
    text = re.sub(r'^```.*?^```', '', path.read_text(), flags=re.M | re.S)  # no headings inside code blocks
    return {anchor(m.group(1)) for m in re.finditer(r'^#+\s+(.*)$', text, re.M)}


def test_the_docs_are_found():
    names = {str(p.relative_to(ROOT)) for p in DOCS}
    assert {'README.md', 'docs/groups.md', 'benchmarks/README.md'} <= names, names


@pytest.mark.parametrize('doc', DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(doc):
    broken = []
    for match in re.finditer(r'\]\(([^)\s]+)\)', doc.read_text()):
        link = match.group(1)
        if re.match(r'^[a-z]+:', link):
            continue  # http(s), mailto: not checked here (no network)
        path, _hash, fragment = link.partition('#')
        target = (doc.parent / path).resolve() if path else doc
        if not target.exists():
            broken.append(f'{link}: no such file')
        elif fragment and target.suffix == '.md' and fragment not in anchors(target):
            broken.append(f'{link}: no heading #{fragment} in {target.relative_to(ROOT)}')
    assert not broken, broken
