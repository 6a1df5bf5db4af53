#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# load.sh load|unload: on a real test host, replace the running kernel's
# stock KVM modules with ours, or put the stock ones back.  Refuses while
# anything holds /dev/kvm or a VM (the modules could not be removed, and a
# VMM would lose its VMs).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

ACTION=$1
[ "$(id -u)" -eq 0 ] || die "make $ACTION needs root"
KERNELRELEASE=${KERNELRELEASE:-$(uname -r)}
[ "$KERNELRELEASE" = "$(uname -r)" ] ||
	die "modules for $KERNELRELEASE cannot be loaded into the running $(uname -r)"
resolve_target

vendor=$(kvm_vendor_module)
[ "$vendor" != none ] ||
	die "this CPU has neither VMX nor SVM (or it is disabled in the firmware)"
vmod=${vendor//-/_}

restore_stock() {
	remove_kvm
	modprobe "$vmod"
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
	kvm_idle_or_die "make load"
	signed_or_die "$BUILD/modules/kvm.ko" "sign them first (README.md, Secure Boot without the package)"
	remove_kvm
	modprobe irqbypass
	[ "$vendor" = kvm-amd ] && modprobe ccp
	# shellcheck disable=SC2086 # parameter lists
	if ! insmod "$BUILD/modules/kvm.ko" ${KVM_PARAMS:-} ||
		! insmod "$BUILD/modules/$vendor.ko" ${VENDOR_PARAMS:-}; then
		restore_stock
		die "our modules did not load (see dmesg); the stock ones are back"
	fi
	ours_loaded || die "the loaded kvm is not ours"
	log "loaded $(cat /sys/module/kvm/version) ($vendor)"
	;;
unload)
	kvm_idle_or_die "make unload"
	ours_loaded || log "our modules are not loaded"
	restore_stock
	log "stock kvm and $vendor restored"
	;;
*)
	die "usage: load.sh load|unload"
	;;
esac
