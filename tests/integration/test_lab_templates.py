# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's guests restored from a saved template (tests/lab/kslab/domains.py, savefile.py) are guests of their own.

Lab.guest_domain starts its guests from the saved state of a booted template guest instead of booting them. The
tests below check, with other clients than the lab (virsh, qemu-img, the guest itself), what the other tests rely on:
each guest has its own name, UUID, disk (an overlay of base.qcow2, as a cold-booted guest's), NVRAM and console log;
what one guest writes the other does not see; the guest's clock is the host's; and the save-file copy keeps the QEMU
stream byte for byte with the new XML in its header.
"""

from __future__ import annotations

import json
import struct
import time
import typing as t
import xml.etree.ElementTree as ET

import pytest

import lab as lab_tool  # tests/lab/lab.py (conftest puts it on the path)
from kslab import savefile  # tests/lab/kslab (conftest puts tests/lab on the path)


def _save_file(path: t.Any, xml: str, cookie: str | None, stream: bytes, compressed: int = 0) -> None:
    """A save file laid out as libvirt writes one (header, XML, NUL, cookie, NUL, padding, stream)."""
    data = xml.encode() + b'\0'
    cookie_offset = 0
    if cookie is not None:
        cookie_offset = len(data)
        data += cookie.encode() + b'\0'
    data += b'\0' * 100
    path.write_bytes(struct.pack('=16s5I56x', b'LibvirtQemudSave', 2, len(data), 1, compressed, cookie_offset)
                     + data + stream)


def test_save_file_copy_has_the_new_xml_and_the_same_stream(tmp_path: t.Any) -> None:
    """copy_with_xml: the header has the new XML, the old cookie and flags; the stream after it is unchanged."""
    stream = bytes(range(256)) * 1000 + b'QEVM-end'
    src, dst = tmp_path / 'src.save', tmp_path / 'dst.save'
    _save_file(src, '<domain><name>old</name></domain>', '<cookie><cpu/></cookie>', stream)
    savefile.copy_with_xml(str(src), str(dst), '<domain><name>a-much-longer-new-name</name></domain>')
    header = savefile.read_header(str(dst))
    assert header.xml == '<domain><name>a-much-longer-new-name</name></domain>'
    assert header.cookie == '<cookie><cpu/></cookie>'
    assert (header.version, header.was_running, header.compressed) == (2, 1, 0)
    assert dst.read_bytes()[header.stream_offset:] == stream
    # the header's own fields, read here without the lab's parser
    magic, version, data_len, _running, _compressed, cookie_offset = struct.unpack('=16s5I', dst.read_bytes()[:36])
    assert (magic, version, 92 + data_len) == (b'LibvirtQemudSave', 2, header.stream_offset)
    assert dst.read_bytes()[92 + cookie_offset:].startswith(b'<cookie><cpu/></cookie>\0')


def test_save_file_without_cookie(tmp_path: t.Any) -> None:
    src, dst = tmp_path / 'src.save', tmp_path / 'dst.save'
    _save_file(src, '<domain/>', None, b'QEVM')
    savefile.copy_with_xml(str(src), str(dst), '<domain><name>n</name></domain>')
    header = savefile.read_header(str(dst))
    assert (header.xml, header.cookie) == ('<domain><name>n</name></domain>', None)
    assert dst.read_bytes()[header.stream_offset:] == b'QEVM'


@pytest.mark.parametrize('damage, message', [
    (lambda b: b'LibvirtQemudPart' + b[16:], 'not a complete'),   # libvirt's mark of a save being written
    (lambda b: b[:16] + struct.pack('=I', 3) + b[20:], 'version 3'),
    (lambda b: b[:100], 'truncated'),
    (lambda b: b[:60], 'too short'),
])
def test_save_file_damaged_is_refused(tmp_path: t.Any, damage: t.Callable[[bytes], bytes], message: str) -> None:
    """A half-written, newer or truncated save file raises LabError (guest_domain then boots cold)."""
    src = tmp_path / 'src.save'
    _save_file(src, '<domain/>', '<cookie/>', b'QEVM')
    src.write_bytes(damage(src.read_bytes()))
    with pytest.raises(lab_tool.LabError, match=message):
        savefile.copy_with_xml(str(src), str(tmp_path / 'dst.save'), '<domain/>')


def test_compressed_save_file_is_refused(tmp_path: t.Any) -> None:
    src = tmp_path / 'src.save'
    _save_file(src, '<domain/>', None, b'\x1f\x8b', compressed=1)
    with pytest.raises(lab_tool.LabError, match='compressed'):
        savefile.copy_with_xml(str(src), str(tmp_path / 'dst.save'), '<domain/>')


def test_retarget_xml_changes_only_the_guests_own_parts() -> None:
    xml = ("<domain><name>t</name><uuid>u0</uuid><os><nvram template='/v.fd'>/c/nvram.fd</nvram></os><devices>"
           "<disk><source file='/c/vda.qcow2'/><target dev='vda'/><address slot='0x03'/></disk>"
           "<serial><source path='/c/console.log'/></serial><console><source path='/c/console.log'/></console>"
           "</devices></domain>")
    root = ET.fromstring(savefile.retarget_xml(xml, 'g', 'u1', '/r/g.vda.qcow2', '/r/g.console.log', '/r/g.nvram.fd'))
    assert (root.findtext('name'), root.findtext('uuid'), root.findtext('os/nvram')) == ('g', 'u1', '/r/g.nvram.fd')
    assert root.find('os/nvram').get('template') == '/v.fd'
    assert root.find('devices/disk/source').get('file') == '/r/g.vda.qcow2'
    assert root.find('devices/disk/address').get('slot') == '0x03'
    assert {e.get('path') for e in root.iter('source') if e.get('path')} == {'/r/g.console.log'}
    with pytest.raises(lab_tool.LabError, match='NVRAM'):
        savefile.retarget_xml(xml, 'g', 'u1', '/d', '/c', None)


def _host_view(lab: t.Any, guest: str) -> dict[str, t.Any]:
    """What virsh and qemu-img (not the lab) say about a guest: UUID, disk, its backing file, NVRAM, console log."""
    root = ET.fromstring(lab.virsh('dumpxml', guest).stdout)
    disk = root.find('./devices/disk/source').get('file')
    info = json.loads(lab_tool._run(['qemu-img', 'info', '-U', '--output=json', disk]).stdout)  # pylint: disable=protected-access
    return {'uuid': lab.virsh('domuuid', guest).stdout.strip(), 'disk': disk,
            'backing': info.get('full-backing-filename') or info.get('backing-filename'),
            'nvram': root.findtext('./os/nvram'), 'console': root.find('./devices/serial/source').get('path'),
            'persistent': 'yes' in lab.virsh('dominfo', guest).stdout.split('Persistent:')[1].split('\n')[0]}


def test_guests_restored_from_the_template_are_their_own(lab: t.Any) -> None:
    """Two guests from one template: own UUID, disk over base.qcow2, NVRAM, console log; persistent; the host's
    time; a file one writes is not on the other's disk; both are fresh (not the template's) kernel RNG streams."""
    guests = [lab.guest_domain(f'tpl-{side}') for side in ('a', 'b')]
    try:
        views = [_host_view(lab, g) for g in guests]
        base = lab_tool.image_paths().base
        for guest, view in zip(guests, views):
            assert lab.state(guest) == 'running'
            assert view['disk'] == f'{lab.run_dir}/{guest}.vda.qcow2'
            assert view['backing'] == base
            assert view['console'] == f'{lab.run_dir}/{guest}.console.log'
            assert view['persistent']
            if lab.guest_firmware != 'bios':
                assert view['nvram'].startswith(f'{lab.run_dir}/{guest}.nvram.')
            before = time.time()
            rc, out, _err = lab.guest_exec(guest, ['/usr/bin/date', '+%s'])
            assert rc == 0 and before - 2 <= int(out) <= time.time() + 2, (out, before)
        assert views[0]['uuid'] != views[1]['uuid']
        rc, _out, err = lab.guest_exec(guests[0], ['/bin/sh', '-c', 'echo a > /root/only-a && sync'])
        assert rc == 0, err
        assert lab.guest_exec(guests[1], ['/usr/bin/test', '-e', '/root/only-a'])[0] == 1
        assert lab.guest_exec(guests[0], ['/usr/bin/test', '-e', '/root/only-a'])[0] == 0
        streams = [lab.guest_exec(g, ['/usr/bin/od', '-An', '-tx1', '-N16', '/dev/urandom'])[1] for g in guests]
        assert streams[0] != streams[1]
    finally:
        for guest in guests:
            lab.remove(guest)
