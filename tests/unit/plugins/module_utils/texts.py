# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Texts shared by the unit tests of the model and of the guards."""

from __future__ import annotations

# markup, entities and non-ASCII: kept exactly through snapshot XML, and accepted as names
HOSTILE_TEXT = [
    'a<b>&c"d\'e',
    'x]]>y',
    '<![CDATA[ x ]]>',
    '&amp; &#x41; &lt;',
    'ünïcödé ✓ 快照 🐧',
    '<!-- c --><?pi x?>',
]
