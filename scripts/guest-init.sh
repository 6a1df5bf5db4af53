#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the test VM's initramfs (built by scripts/kbp-test), or, in
# the package test, /kbp/guest-init.sh of the Debian rootfs that
# scripts/rootfs-init.sh switches to: the guest scripts and the plan are
# beside it.
#
# Kernel messages go to the console (ttyS0); the protocol of
# Documentation/testing.rst ("The host/guest protocol") goes to ttyS1, so
# the host reads it without kernel noise in between.  What to run is in
# /plan, which the host wrote (scripts/guest-run.sh carries it out);
# "kbp.skip=N" on the kernel command line says that an earlier boot of
# the same run reported everything up to item N.  The last lines on ttyS1
# are the kernel log and "@@done".
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
KBP=$(dirname "$0")
# The initramfs has busybox alone; a Debian rootfs has the real tools.
[ -e /bin/mount ] || /bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug
exec 3>/dev/ttyS1
# shellcheck source=scripts/guest-lib.sh
. "$KBP/guest-lib.sh"

skip=0
read -r cmdline </proc/cmdline
for arg in $cmdline; do
	case $arg in
	kbp.skip=*) skip=${arg#kbp.skip=} ;;
	esac
done
echo "@@hello kernel=$(uname -r) cpus=$(nproc) vendor=$(kvm_vendor_module) skip=$skip" >&3
sh "$KBP/guest-run.sh" "$KBP/plan" "$skip" >&3 2>&1

echo "@@dmesg" >&3
# util-linux's dmesg (a Debian rootfs) colours a terminal; busybox's
# knows no --color.
dmesg --color=never >&3 2>/dev/null || dmesg >&3
# kmemleak reports only what a scan found: scan now (twice, as an object
# must look unreferenced for a while) and add its reports to the log.
# Objects allocated before the first task existed (pid 0, start_kernel)
# are left out: kmemleak takes ACPI's early caches for leaks, whose only
# references are in memory it does not scan.  The KUnit suites, which run
# at boot, and everything after run as other tasks and are reported.
if [ -w /sys/kernel/debug/kmemleak ]; then
	echo scan >/sys/kernel/debug/kmemleak
	sleep 6
	echo scan >/sys/kernel/debug/kmemleak
	awk '
		/^unreferenced object / { obj = $0; pid = ""; next }
		obj != "" && pid == "" && /^  comm / {
			pid = $0
			sub(/.*, pid /, "", pid)
			sub(/,.*/, "", pid)
			if (pid == 0)
				early++
			else
				print obj
		}
		pid != "" && pid != 0 { print }
		END { printf "kvm-backport: kmemleak: %d early boot (pid 0) objects left out\n", early }
	' /sys/kernel/debug/kmemleak >&3
fi
echo "@@done" >&3
# The last close of the port waits for its output to drain.
exec 3>&-
sync
# QEMU runs with -no-reboot, so a reboot ends the VM (our debug kernel
# has no ACPI power-off; a minimal Debian rootfs has no reboot command).
reboot -f 2>/dev/null
echo b >/proc/sysrq-trigger
