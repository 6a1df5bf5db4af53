#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# /init of the test VM's initramfs (built by scripts/check.sh).
#
# Kernel messages go to the console (ttyS0); test results go to ttyS1, so
# the host reads them without kernel noise in between.  The kernel command
# line selects the run:
#   kbp.mode=default  load our modules, run lists/backport.list and
#                     lists/upstream.list
#   kbp.mode=parity   run lists/backport.list and lists/upstream.list on
#                     the stock modules, then on ours, in the same boot
#   kbp.mode=bench    the same with lists/backport.list only (the host
#                     put tools/selftests/bench.list there)
#   kbp.mode=probe    run nothing: the host only checks that the VM boots
#                     to the end, and with which vendor, under -accel kvm
#   kbp.mode=debug    our debug kernel (make check-debug), KVM built in:
#                     run lists/backport.list, then a kmemleak scan
#   kbp.mode=debug-params  the same for lists/params.list, the entries
#                     that need KVM module parameters, which the host put
#                     on the kernel command line
# The last lines on ttyS1 are the kernel log and "@@done".
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug
exec 3>/dev/ttyS1
. /guest-lib.sh

out() { echo "$*" >&3; }

mode=default
KBP_SKIP=0
for arg in $(cat /proc/cmdline); do
	case $arg in
	kbp.mode=*) mode=${arg#kbp.mode=} ;;
	kbp.skip=*) KBP_SKIP=${arg#kbp.skip=} ;;
	esac
done
# When an earlier boot of this run wedged in a test, skip what it ran.
export KBP_SKIP KBP_COUNTER=/tmp/kbp-counter
vendor=$(kvm_vendor_module)
vendor_mod=$(echo "$vendor" | tr - _)
out "# mode $mode, kernel $(uname -r), $(nproc) CPUs, vendor $vendor, resuming after $KBP_SKIP"

# The stock modules KVM depends on stay loaded throughout (the debug
# kernel has everything built in).
case $mode in
debug*) ;;
*)	insmod /modules/stock/irqbypass.ko
	[ "$vendor" = kvm-amd ] && insmod /modules/stock/ccp.ko ;;
esac

# load SET: load kvm and the vendor module of SET (stock or ours) and
# check that what got loaded is that set.
load() {
	export KBP_MODULE_DIR=/modules/$1
	# The host splits the kernel log at these lines to judge each set.
	echo "kvm-backport: testing $1 modules" >/dev/kmsg
	insmod "/modules/$1/kvm.ko" && insmod "/modules/$1/$vendor.ko"
	loaded=$(cat /sys/module/kvm/version 2>/dev/null || echo none)
	if [ "$1" = ours ]; then
		want=$(cat /modules/ours/version)
	else
		want=none
	fi
	if [ "$loaded" = "$want" ] && [ -d "/sys/module/$vendor_mod" ]; then
		result "$1 modules-loaded pass 0 kvm $loaded, $vendor"
	else
		result "$1 modules-loaded fail 0 kvm version '$loaded', expected '$want' ($vendor)"
		return 1
	fi
}

# result LINE: report a result of our own, counted like a test so that a
# resumed boot does not report it again.
result() {
	count_item || out "RESULT $*"
}

unload() {
	rmmod "$vendor_mod" kvm
}

run() {
	/run-tests.sh "$1" "$2" "$3" "${4:-300}" >&3 2>&1
}

case $mode in
default)
	if load ours; then
		run ours/backport /lists/backport.list /tests/backport
		run ours/upstream /lists/upstream.list /tests/upstream
		# kmem_cache_destroy() reports objects our tests leaked.
		unload
	fi
	;;
bench)
	# Benchmarks, stock modules then ours; they print their figures.
	for set in stock ours; do
		if load $set; then
			run $set/bench /lists/backport.list /tests/backport 900
		fi
		unload
	done
	;;
parity)
	for set in stock ours; do
		if load $set; then
			run $set/backport /lists/backport.list /tests/backport 180
			run $set/upstream /lists/upstream.list /tests/upstream 180
		fi
		unload
	done
	;;
debug|debug-params)
	# KVM is built into this kernel, with our series: check that it is
	# there and initialised, instead of loading modules.
	echo "kvm-backport: testing builtin modules" >/dev/kmsg
	list=/lists/backport.list
	[ "$mode" = debug ] || list=/lists/params.list
	if [ -c /dev/kvm ] && [ -d "/sys/module/$vendor_mod" ] &&
	   [ ! -e /sys/module/kvm/initstate ]; then
		result "$mode kvm-built-in pass 0 $vendor, $(uname -r)"
		# Tests that measure freed memory cannot on KASAN's quarantine.
		export KBP_KASAN=1
		# The host put the parameters the tests need on the command
		# line: one that does not hold is a failure, not a skip.
		[ "$mode" = debug ] || export KBP_PARAMS_ON_CMDLINE=1
		run "$mode/backport" "$list" /tests/backport 900
	else
		result "$mode kvm-built-in fail 0 no built-in KVM with $vendor (/dev/kvm, /sys/module/$vendor_mod)"
	fi
	;;
esac

out "@@dmesg"
dmesg >&3
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
out "@@done"
# The last close of the port waits for its output to drain.
exec 3>&-
sync
# Our debug kernel has no ACPI power-off; QEMU runs with -no-reboot, so a
# reboot ends the VM just as well.
case $mode in
debug*) reboot -f ;;
esac
poweroff -f
