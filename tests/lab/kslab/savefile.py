# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt's QEMU save files (``virsh save``): read the domain XML of one, and copy one under another domain's XML.

Why: the lab starts guests from a saved, booted template (``Lab.guest_domain``).  libvirt's own way to restore
under another XML (``virDomainRestoreFlags(path, dxml)``, ``virsh restore --xml``) checks ABI stability, and that
check refuses another UUID ("Target domain uuid ... does not match source ...", libvirt 9.0 and 11.3); two guests
restored from one template at once need two UUIDs.  So each guest gets a copy of the save file whose header XML
is the guest's own (name, UUID, disk, NVRAM, console); the QEMU migration stream is copied byte for byte.

The format (libvirt src/qemu/qemu_saveimage.h, the same in 9.0 and 11.3), in host byte order::

    char     magic[16]       "LibvirtQemudSave" ("LibvirtQemudPart" while being written)
    uint32   version         2
    uint32   data_len        length of the data block that follows the header
    uint32   was_running     1: restore runs the guest unless told to pause it
    uint32   compressed      0: raw migration stream (the lab only copies raw ones)
    uint32   cookie_offset   where the cookie starts inside the data block (0: no cookie)
    uint32   unused[14]
    data:    domain XML, NUL, cookie XML, NUL, zero padding (room for save-image-define)
    then     QEMU's migration stream ("QEVM...") up to the end of the file

libvirt reads the XML up to its NUL and the cookie at cookie_offset, and hands QEMU the rest of the file from
92 + data_len on, so a new header only has to keep these fields consistent.
"""

from __future__ import annotations

import shutil
import struct
import xml.etree.ElementTree as ET

from .common import LabError

MAGIC = b'LibvirtQemudSave'
VERSION = 2
#: magic, version, data_len, was_running, compressed, cookie_offset, 14 unused uint32
HEADER = struct.Struct('=16s5I56x')
#: zero padding after the cookie, as libvirt leaves (virsh save-image-define may grow the XML into it)
PADDING = 64 * 1024


class SaveHeader:
    """The header of a save file: its fields, domain XML and cookie."""

    def __init__(self, version, was_running, compressed, xml, cookie, stream_offset):
        self.version = version
        self.was_running = was_running
        self.compressed = compressed
        self.xml = xml
        self.cookie = cookie
        #: where QEMU's migration stream starts in the file
        self.stream_offset = stream_offset


def parse_header(blob_head, read_data):
    """Parse a header: blob_head holds its first HEADER.size bytes, read_data(n) returns the next n bytes."""
    if len(blob_head) < HEADER.size:
        raise LabError('save file too short for a libvirt header')
    magic, version, data_len, was_running, compressed, cookie_offset = HEADER.unpack(blob_head[:HEADER.size])
    if magic != MAGIC:
        raise LabError('not a complete libvirt QEMU save file (magic %r)' % magic)
    if version != VERSION:
        raise LabError('libvirt save file version %d, the lab knows %d' % (version, VERSION))
    data = read_data(data_len)
    if len(data) != data_len:
        raise LabError('save file truncated in its header (%d of %d bytes)' % (len(data), data_len))
    xml_end = data.find(b'\0')
    if xml_end < 0 or (cookie_offset and cookie_offset <= xml_end):
        raise LabError('save file header: no NUL after its domain XML')
    xml = data[:xml_end].decode()
    cookie = None
    if cookie_offset:
        cookie_end = data.find(b'\0', cookie_offset)
        cookie = data[cookie_offset:cookie_end if cookie_end >= 0 else len(data)].decode()
    return SaveHeader(version, was_running, compressed, xml, cookie, HEADER.size + data_len)


def read_header(path):
    """The SaveHeader of the save file at path."""
    with open(path, 'rb') as fh:
        return parse_header(fh.read(HEADER.size), fh.read)


def build_header(header, xml):
    """The bytes of a header like header's, with xml as its domain XML (and header's cookie)."""
    data = xml.encode() + b'\0'
    cookie_offset = 0
    if header.cookie is not None:
        cookie_offset = len(data)
        data += header.cookie.encode() + b'\0'
    data += b'\0' * PADDING
    return HEADER.pack(MAGIC, header.version, len(data), header.was_running, header.compressed,
                       cookie_offset) + data


def copy_with_xml(src, dst, xml):
    """Write dst: the save file src with xml as its domain XML; the migration stream is copied unchanged."""
    header = read_header(src)
    if header.compressed:
        raise LabError('%s: compressed save image (format %d); the lab copies raw ones only'
                       % (src, header.compressed))
    with open(src, 'rb') as fin, open(dst, 'wb') as fout:
        fout.write(build_header(header, xml))
        fin.seek(header.stream_offset)
        shutil.copyfileobj(fin, fout, 4 * 1024 * 1024)


def retarget_xml(xml, name, uuid, disk, console, nvram=None):
    """The live domain XML of a saved template, made another guest's: name, UUID, vda's file, console, NVRAM.

    Everything else (machine type, devices and their addresses, CPU) stays: it describes the saved QEMU.
    """
    root = ET.fromstring(xml)
    root.find('name').text = name
    root.find('uuid').text = uuid
    disks = [d for d in root.findall('./devices/disk') if d.find('target').get('dev') == 'vda']
    if len(disks) != 1:
        raise LabError('template XML has %d vda disks' % len(disks))
    disks[0].find('source').set('file', disk)
    # <serial> and the <console> that mirrors it both name the log file
    for elem in root.findall('./devices/serial/source') + root.findall('./devices/console/source'):
        elem.set('path', console)
    nvram_elem = root.find('./os/nvram')
    if (nvram_elem is None) != (nvram is None):
        raise LabError('template XML and guest disagree about an NVRAM')
    if nvram_elem is not None:
        nvram_elem.text = nvram
    return ET.tostring(root, encoding='unicode')
