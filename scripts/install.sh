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
fi

reload() {
	[ -n "$running" ] && [ "$vendor" != none ] && [ -d /sys/module/kvm ] || return 0
	modprobe -r "$vmod" kvm || die "cannot unload kvm; see dmesg"
	modprobe "$vmod" || die "modprobe $vmod failed; see dmesg"
	log "loaded: kvm $(cat /sys/module/kvm/version 2>/dev/null || echo "(stock)")"
}

case $ACTION in
install)
	for m in kvm kvm-intel kvm-amd; do
		[ -f "$BUILD/modules/$m.ko" ] || die "no $m.ko for $KREL; run make first"
	done
	mkdir -p "$DIR"
	install -m 644 "$BUILD"/modules/kvm{,-intel,-amd}.ko "$DIR/"
	depmod ${ROOT:+-b "$ROOT"} "$KREL"
	log "installed $(backport_version) in $DIR"
	reload
	;;
uninstall)
	[ -d "$DIR" ] || { log "nothing installed in $DIR"; exit 0; }
	rm -rf "$DIR"
	depmod ${ROOT:+-b "$ROOT"} "$KREL"
	log "removed $DIR; modprobe loads the stock modules of $KREL again"
	reload
	;;
esac
