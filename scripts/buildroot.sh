#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# buildroot.sh: a Debian 13 (trixie) root file system in which make check
# builds and checks the modules for Debian 13's own 6.12 kernel, with
# Debian 13's compiler (gcc-14), headers and linux-source-6.12, as a
# Debian 13 machine would.  The test VM that runs them stays on the host.
#
#   buildroot.sh create    build/debian13/root: debootstrap from the Debian
#                          archive once (kept until this script changes),
#                          then on every call the build's packages brought
#                          up to date, so a new Debian 13 kernel is picked
#                          up; the stock kernel image comes with its headers
#   buildroot.sh run CMD   run the shell command CMD in it as root, with
#                          this checkout at the same path and /proc, /sys,
#                          /dev; KBP_* variables pass through
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

MIRROR=${KBP_MIRROR:-http://deb.debian.org/debian}
SECURITY=${KBP_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
SUITE=trixie
DIR=$TOP/build/debian13
ROOT=$DIR/root
# What the build needs in it (scripts/lib.sh build_pkgs and selftests.sh;
# git for the version, python3 for the runner's checks), besides the
# kernel's own packages.
PKGS="make gcc patch rsync xz-utils kmod libc6-dev python3 git"

# Unmount everything under the root, deepest first, so that nothing of
# the host's /dev, /sys or checkout is reachable through it afterwards.
release() {
	findmnt -rn -o TARGET | awk -v d="$ROOT/" 'index($0, d) == 1' |
		sort -r | while read -r m; do
		umount "$m" || umount -l "$m" || die "cannot unmount $m"
	done
}

run() {
	local rc=0 env=() v
	mkdir -p "$ROOT$TOP"
	trap release EXIT
	trap 'exit 130' INT TERM
	if ! { mount -t proc proc "$ROOT/proc" &&
		mount --rbind /sys "$ROOT/sys" && mount --make-rslave "$ROOT/sys" &&
		mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev" &&
		mount --bind "$TOP" "$ROOT$TOP"; }; then
		die "cannot mount /proc, /sys, /dev and $TOP in $ROOT"
	fi
	for v in $(compgen -e); do
		case $v in KBP_* | KERNELRELEASE | CI) env+=("$v=${!v}") ;; esac
	done
	chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "${env[@]}" \
		/bin/bash -c "cd '$TOP' && $*" || rc=$?
	release
	trap - EXIT INT TERM
	return $rc
}

create() {
	local key t
	key=$(cat "$TOP/scripts/buildroot.sh" - <<<"$MIRROR $SECURITY" | sha256sum | cut -d' ' -f1)
	mkdir -p "$DIR"
	release
	if [ "$(cat "$DIR/root.stamp" 2>/dev/null)" != "$key" ] || [ ! -d "$ROOT" ]; then
		need_pkgs debootstrap
		rm -rf --one-file-system "$ROOT" "$ROOT.new"
		t=$(date +%s)
		log "debootstrap: a minimal Debian 13 root from $MIRROR (about 30 s)"
		debootstrap --variant=minbase "$SUITE" "$ROOT.new" "$MIRROR" \
			>"$DIR/debootstrap.log" 2>&1 ||
			die "debootstrap of Debian 13 failed (log: $DIR/debootstrap.log)"
		cat >"$ROOT.new/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
SOURCES
		printf 'Acquire::Check-Valid-Until "false";\n' \
			>"$ROOT.new/etc/apt/apt.conf.d/99kvm-backport"
		mv "$ROOT.new" "$ROOT"
		echo "$key" >"$DIR/root.stamp"
		log "Debian 13 root created in $(( $(date +%s) - t ))s"
	fi
	# Every call: the current Debian 13 kernel's headers (which bring its
	# image) and source, and the build tools, as apt has them today.
	log "Debian 13 root: installing the build's packages and the current 6.12 kernel's headers and source (about a minute the first time)"
	run "apt-get -q update && apt-get -q -y --no-install-recommends install $PKGS linux-headers-amd64 linux-source-6.12 &&
		{ git config --global --get-all safe.directory | grep -qxF '$TOP' ||
			git config --global --add safe.directory '$TOP'; }" \
		>"$DIR/apt.log" 2>&1 ||
		die "installing into the Debian 13 root failed (log: $DIR/apt.log)"
}

[ "$(id -u)" -eq 0 ] || die "the Debian 13 build root needs root (debootstrap, chroot, mount)"
case ${1:-} in
create)
	create
	;;
run)
	shift
	[ -d "$ROOT/usr" ] || die "no Debian 13 root in ${ROOT#"$TOP"/}: run scripts/buildroot.sh create"
	run "$*"
	;;
*)
	die "usage: buildroot.sh create | run CMD"
	;;
esac
