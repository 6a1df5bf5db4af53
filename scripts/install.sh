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
# Moving KVM's modules under a running VM is refused before anything
# changes.
[ -z "$running" ] || kvm_idle_or_die "make $ACTION"

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
	# Refused at every boot from now on, not only now: this host's state
	# stands for the next kernel's.
	[ -n "$ROOT" ] || signed_or_die "$BUILD/modules/kvm.ko" \
		"use the package, whose DKMS signs them (README.md, Secure Boot)"
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
