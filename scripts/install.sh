#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# install.sh install|uninstall: our modules for a host without the
# kvm-backport-dkms package.  install copies the modules make built into
# /lib/modules/<release>/updates/kvm-backport, where depmod's search
# order puts them before the kernel's own, runs depmod and, when the
# target kernel is running with the stock KVM loaded and idle, loads
# ours; uninstall removes them and brings the stock ones back the same
# way.  Both refuse while a VM runs: its VMM would lose it.
#
# DESTDIR=<root> installs into another root file system (no loading).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

ACTION=${1:-}
case $ACTION in
install|uninstall) ;;
*) die "usage: install.sh install|uninstall" ;;
esac
[ "$(id -u)" -eq 0 ] || die "make $ACTION needs root"
resolve_target
ROOT=${DESTDIR:-}
DIR=$ROOT/lib/modules/$KREL/updates/$PROJECT
[ -d "$ROOT/lib/modules/$KREL" ] ||
	die "no /lib/modules/$KREL${ROOT:+ in $ROOT}: install the kernel first"
# The package installs the same modules in updates/dkms: one of the two.
if [ -z "$ROOT" ] && dpkg-query -W -f='${db:Status-Abbrev}' kvm-backport-dkms 2>/dev/null | grep -q '^ii'; then
	die "the kvm-backport-dkms package is installed; remove it first (apt-get remove kvm-backport-dkms) or keep using it"
fi

running=
[ -n "$ROOT" ] || [ "$KREL" != "$(uname -r)" ] || running=1
vendor=$(kvm_vendor_module)
vmod=${vendor//-/_}
# A VM or an open /dev/kvm holds the vendor module: moving KVM's
# modules under it is refused before anything changes.
if [ -n "$running" ] && [ -d /sys/module/kvm ]; then
	refs=0
	[ ! -d "/sys/module/$vmod" ] || refs=$(cat "/sys/module/$vmod/refcnt")
	[ "$refs" -eq 0 ] ||
		die "kvm is in use ($refs open /dev/kvm or VM reference(s)); stop the VMs, then make $ACTION"
	# Another module on kvm (kvmgt) would keep it from unloading.
	held=$(find /sys/module/kvm/holders -mindepth 1 -maxdepth 1 -printf '%f\n' |
		grep -vx "$vmod" | tr '\n' ' ') || true
	[ -z "$held" ] || die "kvm is used by module(s) $held; unload them, then make $ACTION"
fi

# reload: load KVM again from where modprobe now finds it, if the target
# kernel runs with KVM loaded; 1 if that failed (nothing is loaded then).
reload() {
	[ -n "$running" ] && [ "$vendor" != none ] && [ -d /sys/module/kvm ] || return 0
	modprobe -r "$vmod" kvm || return 1
	modprobe "$vmod"
}

case $ACTION in
install)
	for m in kvm kvm-intel kvm-amd; do
		[ -f "$BUILD/modules/$m.ko" ] || die "no $m.ko for $KREL; run make first"
	done
	# Under lockdown (Secure Boot) or module.sig_enforce, unsigned
	# modules would be refused at every boot from now on: refuse here.
	# This host's state stands for the next kernel's.
	if [ -z "$ROOT" ] && [ -z "$(modinfo -F sig_id "$BUILD/modules/kvm.ko" 2>/dev/null)" ] &&
		{ { [ -r /sys/kernel/security/lockdown ] &&
		    ! grep -q '\[none\]' /sys/kernel/security/lockdown; } ||
		  grep -qx Y /sys/module/module/parameters/sig_enforce 2>/dev/null; }; then
		die "this kernel accepts signed modules only and ours are unsigned: use the package, whose DKMS signs them (README.md, Secure Boot)"
	fi
	mkdir -p "$DIR"
	install -m 644 "$BUILD"/modules/kvm{,-intel,-amd}.ko "$DIR/"
	depmod ${ROOT:+-b "$ROOT"} "$KREL"
	log "installed $(backport_version) in $DIR"
	if ! reload; then
		# Never leave the host without KVM: back to the stock modules.
		# Our kvm.ko must be gone first: the stock vendor module on it
		# would allocate a struct kvm of the stock size.
		rm -rf --one-file-system "$DIR"
		depmod "$KREL"
		modprobe -r "$vmod" kvm 2>/dev/null || true
		[ ! -d /sys/module/kvm ] ||
			die "our modules did not load and kvm does not unload (see dmesg); removed them from disk, reboot for the stock ones"
		modprobe "$vmod" ||
			die "our modules did not load, nor did the stock ones (see dmesg); removed ours from disk"
		die "our modules did not load (see dmesg); removed them, the stock ones are back"
	fi
	[ -z "$running" ] || [ ! -d /sys/module/kvm ] ||
		log "loaded: kvm $(cat /sys/module/kvm/version 2>/dev/null || echo "(stock)")"
	;;
uninstall)
	[ -d "$DIR" ] || { log "nothing installed in $DIR"; exit 0; }
	rm -rf --one-file-system "$DIR"
	depmod ${ROOT:+-b "$ROOT"} "$KREL"
	log "removed $DIR; modprobe loads the stock modules of $KREL again"
	reload || die "the stock modules did not load (see dmesg)"
	;;
esac
