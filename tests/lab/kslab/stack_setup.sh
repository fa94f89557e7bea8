#!/usr/bin/env bash
# The trixie chroot's setup (kslab/stack.py), run on the host once its packages are in, as
#   bash -c SCRIPT setup ROOT
# where SCRIPT is this file from its `set -euo pipefail` line on: that text is part of the stack's recipe
# hash (changing it builds a new chroot); these header lines are not.
set -euo pipefail
root=$1
# libvirtd in a chroot cannot make its per-VM mount namespace
# ("Failed disable mount propagation out of the root filesystem").
printf '\n# kslab: no per-VM mount namespace in a chroot\nnamespaces = []\n' >> "$root/etc/libvirt/qemu.conf"
# the default network would make virbr0 in the host's network namespace
rm -f "$root"/etc/libvirt/qemu/networks/autostart/*.xml
# a Python without python3-libvirt (the remote tests show the module's message for a missing binding)
chroot "$root" python3 -m venv --without-pip /opt/kslab-python-without-libvirt
if chroot "$root" /opt/kslab-python-without-libvirt/bin/python3 -c 'import libvirt' 2>/dev/null; then
    echo "stack_setup.sh: /opt/kslab-python-without-libvirt imports libvirt; it must not (the missing-binding tests)" >&2
    exit 1
fi
# nothing in the chroot starts services; sshd's host keys are made per run by StackSshd
rm -f "$root"/etc/ssh/ssh_host_*
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
mkdir -p "$root/var/lib/apt/lists/partial"
