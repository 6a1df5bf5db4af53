#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# load.sh load|unload: on a real test host, replace the running kernel's
# stock KVM modules with ours, or put the stock ones back.  Refuses while
# anything holds /dev/kvm or a VM (the modules could not be removed, and a
# VMM would lose its VMs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ACTION=$1
[ "$(id -u)" -eq 0 ] || die "make $ACTION needs root"
KERNELRELEASE=${KERNELRELEASE:-$(uname -r)}
[ "$KERNELRELEASE" = "$(uname -r)" ] ||
	die "modules for $KERNELRELEASE cannot be loaded into the running $(uname -r)"
resolve_target

if grep -qw vmx /proc/cpuinfo; then
	vendor=kvm-intel
elif grep -qw svm /proc/cpuinfo; then
	vendor=kvm-amd
else
	die "this CPU has neither VMX nor SVM (or it is disabled in the firmware)"
fi
vmod=${vendor//-/_}

# References to kvm.ko beyond those of the vendor modules are open
# /dev/kvm, VM or vCPU file descriptors.
check_idle() {
	[ -d /sys/module/kvm ] || return 0
	local refs holders users
	refs=$(cat /sys/module/kvm/refcnt)
	holders=$(find /sys/module/kvm/holders -mindepth 1 -maxdepth 1 | wc -l)
	[ $((refs - holders)) -gt 0 ] || return 0
	users=$(find /proc/[0-9]*/fd -lname '/dev/kvm' -o -lname 'anon_inode:kvm-*' 2>/dev/null |
		cut -d/ -f3 | sort -un | tr '\n' ' ')
	die "kvm is in use ($((refs - holders)) open /dev/kvm, VM or vCPU file(s); processes: ${users:-unknown}); stop the VMs first"
}

ours_loaded() {
	[ -f /sys/module/kvm/version ] &&
		grep -q "^$PROJECT-" /sys/module/kvm/version
}

remove_kvm() {
	local m
	for m in kvm_intel kvm_amd kvm; do
		[ -d "/sys/module/$m" ] && rmmod "$m"
	done
	return 0
}

case $ACTION in
load)
	for m in kvm "$vendor"; do
		[ -f "$BUILD/modules/$m.ko" ] || die "no $m.ko for $KREL; run make first"
	done
	check_idle
	remove_kvm
	modprobe irqbypass
	[ "$vendor" = kvm-amd ] && modprobe ccp
	insmod "$BUILD/modules/kvm.ko" ${KVM_PARAMS:-}
	insmod "$BUILD/modules/$vendor.ko" ${VENDOR_PARAMS:-} || {
		rmmod kvm
		die "$vendor.ko did not load (see dmesg); the stock modules can be restored with make unload"
	}
	ours_loaded || die "the loaded kvm is not ours"
	log "loaded $(cat /sys/module/kvm/version) ($vendor)"
	;;
unload)
	check_idle
	ours_loaded || log "our modules are not loaded"
	remove_kvm
	modprobe "$vmod"
	log "stock kvm and $vendor restored"
	;;
*)
	die "usage: load.sh load|unload"
	;;
esac
