#!/usr/bin/env bash
# shellcheck disable=SC2115  # "$root"/boot/*: root is $1, checked by the caller; a ${root:?} here would change the hash
# The guest image's customisation (kslab/image.py), run on the host after debootstrap as
#   bash -c SCRIPT customize ROOTFS OUTDIR HOSTNAME
# where SCRIPT is this file from its `set -euo pipefail` line on: that text is part of the image's recipe
# hash (changing it builds a new image); these header lines are not. It copies the kernel and initrd to
# OUTDIR and prepares the root file system for a quick, headless boot to qemu-guest-agent.
set -euo pipefail
root=$1 out=$2 hostname=$3

kver=$(ls "$root/usr/lib/modules")
if [ "$(printf '%s\n' "$kver" | wc -l)" != 1 ]; then
    echo "expected exactly one kernel in the image, found: $kver" >&2; exit 1
fi

# -- Initrd: only what mounts /dev/vda (virtio-pci, virtio-blk, ext4), and no
#    udev in it (devtmpfs makes /dev/vda appear): Debian's MODULES=most
#    initrd with udev coldplug costs ~7 s more CPU under software emulation.
printf 'MODULES=list\nBUSYBOX=n\nRESUME=none\n' > "$root/etc/initramfs-tools/conf.d/kslab"
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic > "$root/etc/initramfs-tools/modules"
rm -f "$root"/usr/share/initramfs-tools/hooks/udev \
      "$root"/usr/share/initramfs-tools/scripts/init-top/udev \
      "$root"/usr/share/initramfs-tools/scripts/init-bottom/udev
chroot "$root" mkinitramfs -o "/boot/initrd.img-$kver" "$kver"

# -- Boot artefacts go outside the image (direct kernel boot).
install -m 0644 "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
install -m 0644 "$root/boot/initrd.img-$kver" "$out/initrd.img"
test "$(stat -c %s "$out/initrd.img")" -gt 1000000   # mkinitramfs can fail quietly
rm -rf "$root"/boot/* "$root"/vmlinuz* "$root"/initrd.img*

# -- Identity.  debootstrap wrote a machine-id; a non-empty one also keeps
#    systemd from treating each boot as a first boot.
test -s "$root/etc/machine-id"
echo "$hostname" > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$hostname" > "$root/etc/hosts"
printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t0\n' > "$root/etc/fstab"
chroot "$root" passwd -d root >/dev/null

# -- qemu-guest-agent.  Debian's unit has no [Install] section: a udev rule
#    (SYSTEMD_WANTS) starts it when the virtio port org.qemu.guest_agent.0
#    appears, and it BindsTo= that device.  Do not depend on that alone:
#    load virtio_console early, let multi-user.target want the service,
#    and drop the default dependencies so it starts as soon as the port
#    exists instead of after sysinit.target (saves ~5 s under emulation).
mkdir -p "$root/etc/systemd/system/multi-user.target.wants" \
         "$root/etc/systemd/system/qemu-guest-agent.service.d"
ln -sf /lib/systemd/system/qemu-guest-agent.service \
    "$root/etc/systemd/system/multi-user.target.wants/qemu-guest-agent.service"
printf '[Unit]\nDefaultDependencies=no\nConflicts=shutdown.target\nBefore=shutdown.target\n' \
    > "$root/etc/systemd/system/qemu-guest-agent.service.d/kslab.conf"
echo virtio_console > "$root/etc/modules-load.d/kslab-guest-agent.conf"

# -- Boot speed: mask what a headless, throw-away test guest does not need
#    (timers, maintenance, pseudo file systems, utmp, gettys on VTs).
for unit in apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
        e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-pstore.service \
        getty@tty1.service getty-static.service systemd-binfmt.service \
        proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
        dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount \
        sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount \
        modprobe@loop.service modprobe@fuse.service modprobe@dm_mod.service \
        modprobe@configfs.service modprobe@drm.service modprobe@efi_pstore.service \
        systemd-journal-flush.service systemd-sysusers.service systemd-update-utmp.service \
        systemd-update-utmp-runlevel.service kmod-static-nodes.service \
        systemd-remount-fs.service systemd-firstboot.service; do
    rm -f "$root"/etc/systemd/system/*.wants/"$unit"
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -f "$root"/etc/systemd/system/*.wants/remote-fs.target

# -- Shrink: package caches, documentation, translations ...
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/log/apt/*
mkdir -p "$root/var/lib/apt/lists/partial"
# ... and every kernel module a virtio guest on ext4 does not load.
keep='^kernel/(drivers/virtio/|drivers/block/virtio_blk|drivers/char/virtio_console|'
keep+='drivers/char/hw_random/virtio-rng|drivers/net/(virtio_net|net_failover)|net/core/failover|'
keep+='fs/(ext4|jbd2|autofs)/|fs/mbcache|lib/(crc|libcrc32c)|crypto/crc|arch/x86/crypto/crc)'
(cd "$root/usr/lib/modules/$kver" && find kernel -name '*.ko*' | { grep -Ev "$keep" || true; } | xargs -r rm -f)
find "$root/usr/lib/modules/$kver/kernel" -type d -empty -delete
chroot "$root" depmod "$kver"
