#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the initramfs that boots the stock kernel on the package
# test's Debian rootfs (scripts/kbp-test, tier "deb").  The host exports
# the rootfs over virtio-9p (mount tag kbproot); the modules for that
# come from the rootfs' own kernel package.  The rootfs' /kbp holds the
# guest scripts and the plan: switch to the rootfs and run them there,
# so that modprobe, depmod's search order and DKMS's modules are the
# installed system's own.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
# Those built into the kernel (6.12: virtio_pci) are not loaded.
for m in virtio_pci 9pnet_virtio 9p; do
	grep -q "/$m\.ko" "/lib/modules/$(uname -r)/modules.builtin" ||
		modprobe "$m"
done
mkdir -p /newroot
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 kbproot /newroot; then
	echo "kvm-backport: cannot mount the rootfs (virtio-9p tag kbproot)"
	echo b >/proc/sysrq-trigger
fi
umount /dev /proc
exec switch_root /newroot /kbp/guest-init.sh
