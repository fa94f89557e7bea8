# Copyright (c) 2026, kvm.snapshots contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Disposable libvirt/QEMU test lab for the ``kvm.snapshots`` collection.

This is test tooling, not part of the collection: it may shell out to
``apt-get``, ``virsh``, ``qemu-img`` and ``debootstrap``.  It needs root,
Python 3.11 and (for the ``Lab`` class) libvirt-python.

What the lab provides
=====================

* **Packages** (``deps``): the Debian packages for libvirt + QEMU + the image
  build, installed with apt-get only when missing; libvirt-python with pip
  only when it cannot be imported.
* **Daemons** (``daemons``): ``virtlogd -d`` and ``libvirtd -d`` (there is no
  systemd on these machines), started only when nothing serves them yet.
  The lab records in ``STATE_DIR/daemons.json`` which daemons *it* started,
  and ``daemons-stop`` stops only those, by the pid in their pidfile (after
  removing every ``kslab-`` domain, so no QEMU process is left behind).
* **Guest image** (``image``): a small Debian bookworm root file system made
  with debootstrap (on a tmpfs, with ``INITRD=No`` so Debian's big initrd is
  not built), customised by ``customize.sh`` (small udev-less initrd, guest
  agent at boot, unneeded units masked, docs/locales/most kernel modules
  removed: ~155 MiB), put into a 2G ext4 file system (``mkfs.ext4 -d``) and
  converted to ``base.qcow2``; the kernel and initrd are copied next to it
  for direct kernel boot.  It is cached in ``CACHE_DIR/<recipe-hash>/``; the
  hash covers the debootstrap command and environment, the package list,
  the customisation script and the mkfs step, so changing the recipe
  builds a new image (and removes the old one once nothing uses it).
  Builds happen in ``CACHE_DIR/.build-*`` under a lock and are renamed into
  place at the end, so an interrupted build never leaves a half image; the
  next build kills what a SIGKILLed one left running and removes it.  A
  build takes about 2 min (1.5 min CPU); a cached image is found in 0.2 s.
* **Guest agent**: Debian starts qemu-guest-agent from a udev rule when the
  virtio port ``org.qemu.guest_agent.0`` appears.  The image also has it in
  ``multi-user.target.wants`` and a drop-in with ``DefaultDependencies=no``,
  so it starts as soon as the port exists, before ``sysinit.target`` is
  reached: ``wait_agent`` returning means the agent works, not that every
  boot job is done (``systemctl is-system-running --wait`` via
  ``guest_exec`` waits for that).
* **Domains** (class ``Lab``): every domain and file the lab makes is named
  with a prefix, ``kslab-<run id>-`` by default.  All start with
  ``GLOBAL_PREFIX`` (``kslab-``), so ``cleanup`` (no arguments) removes the
  leftovers of any earlier, interrupted run.  Two kinds:

  - ``blank_domain``: a tiny VM (64 MiB, SeaBIOS, no OS) with blank qcow2 or
    raw disks; starts in a fraction of a second and snapshots quickly.
  - ``guest_domain``: a real Debian guest, a linked clone (qcow2 overlay with
    the cached ``base.qcow2`` as backing file), direct kernel boot,
    qemu-guest-agent channel, virtio-rng, serial console written to
    ``RUN_DIR/<name>.console.log``.  It reaches a working guest agent after
    about 20 s of QEMU CPU time under software emulation (wall time grows
    with the machine's load).  So by default (``boot='restore'``) a guest is
    not booted but restored from the saved state of a booted template guest
    (3-6 s): the template (its disk overlay, NVRAM and ``virsh save`` state)
    is built once per image, stack, firmware, memory size, domain XML shape
    and libvirt/QEMU version, in ``CACHE_DIR/<recipe-hash>/templates/``
    (kept by ``cleanup``; ``lab.py status`` lists them); each guest gets
    copies of the disk and NVRAM and a copy of the save file under its own
    name, UUID and paths (``savefile``), its clock set and RNG reseeded by
    the agent.  Anything wrong there means a cold boot.  ``boot='cold'`` (or
    ``KSLAB_GUEST_BOOT=cold``) boots, for tests about the boot itself.

  All domains are ``<domain type='qemu'>`` (TCG): nested KVM hangs on this
  kind of machine.  ``firmware`` is ``bios`` (SeaBIOS, machine ``pc``),
  ``efi`` (``<os firmware='efi'>``, machine ``q35``: libvirt picks OVMF and
  makes a raw NVRAM, what virt-install does) or ``efi-qcow2`` (the same with
  a qcow2 NVRAM); NVRAM files are ``RUN_DIR/<full>.nvram.fd|.qcow2``.
  Disks, console logs and anything else the tests put
  there live in ``RUN_DIR`` (``/var/lib/kvm-snapshots-lab/run``), never in
  the repository.

CLI (``python3 tests/lab/lab.py CMD``)
======================================

``deps``, ``daemons``, ``daemons-stop`` (also the stacks' daemons and mounts),
``image [--rebuild]``, ``stack [--rebuild]``, ``stack-stop``,
``cleanup [--prefix P]`` (on every stack that runs), ``up`` (deps + daemons +
image + the trixie stack), ``status``, ``smoke [--keep] [--stack trixie]``
(end-to-end self check with timings).

Python use
==========

Import as ``import lab`` (``tests/lab`` on ``sys.path``; tests/lab/lab.py
re-exports this package) or ``import kslab``::

    with lab.Lab() as L:                       # cleanup() on exit
        dom = L.guest_domain('g1')
        L.wait_agent(dom)
        rc, out, err = L.guest_exec(dom, ['cat', '/etc/os-release'])

The directories can be moved with the environment variables
``KSLAB_STATE_DIR`` and ``KSLAB_CACHE_DIR``.

Stacks
======

``Lab(stack='bookworm')`` (the default, or ``$KSLAB_STACK``) uses this
machine's libvirtd (Debian 12: libvirt 9.0, QEMU 7.2) at ``qemu:///system``.
``Lab(stack='trixie')`` uses Debian 13's (libvirt 11.3, QEMU 10.0, OVMF):

* **Chroot** (``stack``): ``debootstrap --variant=minbase trixie`` from the
  host's Debian mirror, then ``apt-get install --no-install-recommends``
  ``STACK_PACKAGES`` inside (with /proc, /sys, /dev, /dev/pts bind-mounted and
  a ``policy-rc.d`` that starts nothing), then ``stack_setup.sh``
  (``namespaces = []`` in its qemu.conf: libvirtd cannot make per-VM mount
  namespaces in a chroot; no autostarted network).  Cached in
  ``CACHE_DIR/trixie-<recipe hash>/root``, built in ``.stack-build-*`` under a
  lock and renamed into place like the image; about 1-4 min (mirror speed),
  475 MiB.
* **Daemons**: ``chroot ROOT virtlogd -d`` and ``chroot ROOT libvirtd -d``,
  pids from ROOT/run, recorded in ``STATE_DIR/stack-trixie.json`` and stopped
  by ``stack-stop``/``daemons-stop`` by those pids only.  Before they start,
  the lab mounts (private, nothing propagates) /proc, /sys, /dev, /dev/pts,
  a tmpfs of its own on ROOT/run (the host's /run, where the host's libvirtd
  lives, is never shared), and STATE_DIR and CACHE_DIR at the same paths
  inside, so a disk path means the same file on both sides.  ``stack-stop``
  removes the stack's lab domains, stops the daemons, and unmounts all that.
  Both libvirtds use /dev/kvm, whose group differs between them (kvm is 107
  on the host, 993 in the chroot): the lab makes it 0666, else libvirt
  re-probes QEMU before each operation (seconds each).
* **URI** from this machine: ``qemu+unix:///system?socket=ROOT/run/libvirt/libvirt-sock``
  (``Stack.uri``; the host's 9.0 client library talks to 11.3 fine).  On the
  hypervisor itself (``kvm_connection_mode=hypervisor``): the chroot's own
  sshd (tests/lab/sshd.py with ``root``) lands in the chroot, whose
  ``/usr/bin/python3`` is 3.13 with python3-libvirt and whose
  ``qemu:///system`` is this libvirtd; ``STACK_PYTHON_WITHOUT_LIBVIRT`` is a
  venv there without the binding.
* Guests: ``guest_domain`` makes UEFI guests by default there (raw NVRAM,
  the common case; ``$KSLAB_GUEST_FIRMWARE`` chooses), ``blank_domain``
  SeaBIOS ones unless ``firmware`` is given.  A qcow2 NVRAM is made from the
  raw template with qemu-img (Debian's ovmf has no qcow2 build, and libvirt
  11.3 refuses to convert a template itself).  ``libvirt_version(uri)`` gives
  the version of a stack's libvirtd.

Layout
======

``common`` (paths, errors, helpers), ``removal`` (listing and removing lab
domains), ``daemons`` (packages, the host's virtlogd and libvirtd), ``image``
(the guest image's recipe and build; ``customize.sh``), ``stack`` (the
trixie chroot and its daemons; ``stack_setup.sh``), ``savefile`` (libvirt's
save files, for the guest templates), ``domains`` (``Lab``),
``cli`` (``lab.py``'s commands and smoke checks); each imports only those
before it.  What the tests check with other clients lives beside them:
``probes`` (virsh, qemu-img, qemu-io), ``processes`` (/proc, freezing QEMU
mid-job), ``private_libvirtd`` (a libvirtd of its own, for the fault tests).
"""

from __future__ import annotations

from .common import (
    LOG, DEFAULT_URI, GLOBAL_PREFIX, STATE_DIR, RUN_DIR, DAEMON_STATE_FILE, CACHE_DIR, LIBVIRT_IMAGES_DIR,
    DOMAIN_STATES, FIRMWARES, DISK_FORMATS, AGENT_CHANNEL, LabError, AgentError, _run, _libvirt,
    libvirt_answers, libvirt_version,
)
from .removal import (
    cleanup, lab_domains,
)
from .daemons import (
    APT_PACKAGES, DAEMONS, install_deps, daemon_status, KVM_DEVICE, make_kvm_usable, start_daemons,
    stop_daemons,
)
from .image import (
    GUEST_SUITE, GUEST_PACKAGES, GUEST_HOSTNAME, IMAGE_SIZE, DEBOOTSTRAP_ARGV, DEBOOTSTRAP_ENV, MKFS_ARGV,
    CUSTOMIZE_SH, GUEST_CMDLINE, recipe_hash, GuestImage, image_paths, debian_mirror, build_image,
    prune_images,
)
from .stack import (
    STACK_SUITE, STACK_PACKAGES, STACK_DEBOOTSTRAP_ARGV, STACK_SETUP_SH, STACK_PYTHON,
    STACK_PYTHON_WITHOUT_LIBVIRT, STACK_DAEMONS, STACKS, DEFAULT_STACK, stack_recipe_hash, Stack, stack,
    build_stack, stack_running, stack_mounts, start_stack, stop_stack,
)
from .domains import (
    libvirt_flags_inactive, Lab,
)
from .cli import (
    smoke_stack, smoke, main,
)

__all__ = [
    'LOG', 'DEFAULT_URI', 'GLOBAL_PREFIX', 'STATE_DIR', 'RUN_DIR', 'DAEMON_STATE_FILE', 'CACHE_DIR',
    'LIBVIRT_IMAGES_DIR', 'DOMAIN_STATES', 'FIRMWARES', 'DISK_FORMATS', 'AGENT_CHANNEL', 'LabError',
    'AgentError', '_run', '_libvirt', 'libvirt_answers', 'libvirt_version', 'cleanup', 'lab_domains',
    'APT_PACKAGES', 'DAEMONS', 'install_deps', 'daemon_status', 'KVM_DEVICE', 'make_kvm_usable',
    'start_daemons', 'stop_daemons', 'GUEST_SUITE', 'GUEST_PACKAGES', 'GUEST_HOSTNAME', 'IMAGE_SIZE',
    'DEBOOTSTRAP_ARGV', 'DEBOOTSTRAP_ENV', 'MKFS_ARGV', 'CUSTOMIZE_SH', 'GUEST_CMDLINE', 'recipe_hash',
    'GuestImage', 'image_paths', 'debian_mirror', 'build_image', 'prune_images', 'STACK_SUITE',
    'STACK_PACKAGES', 'STACK_DEBOOTSTRAP_ARGV', 'STACK_SETUP_SH', 'STACK_PYTHON',
    'STACK_PYTHON_WITHOUT_LIBVIRT', 'STACK_DAEMONS', 'STACKS', 'DEFAULT_STACK', 'stack_recipe_hash', 'Stack',
    'stack', 'build_stack', 'stack_running', 'stack_mounts', 'start_stack', 'stop_stack',
    'libvirt_flags_inactive', 'Lab', 'smoke_stack', 'smoke', 'main',
]
