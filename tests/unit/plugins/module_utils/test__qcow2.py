# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The qcow2 snapshot-table reader, checked against qemu-img on real images."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ansible_collections.kvm.snapshots.plugins.module_utils import _qcow2 as q

needs_qemu_img = pytest.mark.skipif(shutil.which('qemu-img') is None, reason='qemu-img is not installed')

NAMES = ['plain', "it's", 'say "hi"', 'back\\slash', 'x\\\\', ' lead', 'ünïcødé-名前', '\U0001f600', '7', 'a' * 247]


def qemu_img(*args):
    return subprocess.run(['qemu-img', *args], capture_output=True, text=True, check=True).stdout


@needs_qemu_img
def test_names_as_qemu_img_lists_them(tmp_path):
    image = str(tmp_path / 'disk.qcow2')
    qemu_img('create', '-q', '-f', 'qcow2', image, '16M')
    assert q.read_snapshot_names(image) == []
    for name in NAMES:
        qemu_img('snapshot', '-c', name, image)
    qemu_img('snapshot', '-d', 'plain', image)  # a hole in the ids, a table rewritten
    listed = [s['name'] for s in json.loads(qemu_img('info', '--output=json', image))['snapshots']]
    assert q.read_snapshot_names(image) == listed == NAMES[1:]


def test_not_qcow2(tmp_path):
    raw = tmp_path / 'disk.raw'
    raw.write_bytes(b'\0' * 4096)
    with pytest.raises(q.Qcow2Error, match='not a qcow2 image'):
        q.read_snapshot_names(str(raw))
    with pytest.raises(q.Qcow2Error):
        q.read_snapshot_names(str(tmp_path / 'missing.qcow2'))


@needs_qemu_img
def test_truncated_table(tmp_path):
    image = tmp_path / 'disk.qcow2'
    qemu_img('create', '-q', '-f', 'qcow2', str(image), '16M')
    qemu_img('snapshot', '-c', 'one', str(image))
    data = image.read_bytes()
    offset = int.from_bytes(data[64:72], 'big')
    image.write_bytes(data[:offset + 20])
    with pytest.raises(q.Qcow2Error, match='ends early'):
        q.read_snapshot_names(str(image))


def test_compare_internal():
    listed = [{'name': 'a', 'location': 'internal'}, {'name': 'b', 'location': 'internal'},
              {'name': 'x\\', 'location': 'internal'}]
    images = {'/vda': ['a', 'b', 'x\\\\'], '/vdb': ['a', 'x\\\\', 'x\\'], '/vdc': None}
    missing, extra = q.compare_internal(listed, images)
    assert missing == {'b': ['/vdb'], 'x\\': ['/vda']}
    assert extra == ['x\\\\']
