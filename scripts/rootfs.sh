#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# rootfs.sh: the real Debian 12 root file system the package test of
# make check (scripts/kbp-test, tier "deb") installs kvm-backport-dkms
# into and boots the stock kernel on.
#
#   rootfs.sh base            create build/<release>/rootfs/base once (debootstrap
#                             from the Debian archive, then the target's kernel
#                             image and headers, linux-source-<series>, dkms);
#                             kept until its inputs change
#   rootfs.sh mount DIR       DIR/merged: a writable overlay on the base, so
#                             that every run starts from the same rootfs
#   rootfs.sh umount DIR      undo mount
#   rootfs.sh chroot ROOT CMD run the shell command CMD in ROOT with /proc,
#                             /sys and /dev, as dpkg's scripts expect
#   rootfs.sh release         unmount whatever is mounted under build/
#
# apt's cache in the base also holds, downloaded, not installed, the
# headers of the newest older kernel of the series in the archive and
# the linux-source it was built from, and the headers of the target's
# cloud flavour (which we build for) and rt flavour (which we do not):
# the package test installs them as kernel updates would arrive.
# base/.kbp-second says "<release> <version>" of the older kernel
# (empty: none).
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

MIRROR=${KBP_MIRROR:-http://deb.debian.org/debian}
SECURITY=${KBP_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# release_mounts DIR: unmount everything mounted under DIR, deepest
# first, so that no rm -rf of DIR ever reaches the host's /dev or /sys
# through a chroot's bind mount left by an interrupted run.
release_mounts() {
	local d
	d=$(realpath -m "$1")
	findmnt -rn -o TARGET | awk -v d="$d" 'index($0, d "/") == 1' |
		sort -r | while read -r m; do
		umount "$m" || umount -l "$m" ||
			die "cannot unmount $m; unmount it before removing $d"
	done
}

in_root() {
	local rc=0
	IN_ROOT=$1
	shift
	# Unmounted however this script ends.
	trap 'release_mounts "$IN_ROOT"' EXIT
	trap 'exit 130' INT TERM
	# Slaves: nothing unmounted in the chroot's view reaches the host's.
	if ! { mount -t proc proc "$IN_ROOT/proc" &&
		mount --bind /sys "$IN_ROOT/sys" &&
		mount --make-rslave "$IN_ROOT/sys" &&
		mount --bind /dev "$IN_ROOT/dev" &&
		mount --make-rslave "$IN_ROOT/dev"; }; then
		release_mounts "$IN_ROOT"
		trap - EXIT INT TERM
		log "cannot mount /proc, /sys and /dev in $IN_ROOT" >&2
		return 1
	fi
	chroot "$IN_ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
		/bin/sh -c "$*" || rc=$?
	release_mounts "$IN_ROOT" || return 1
	trap - EXIT INT TERM
	return $rc
}

apt_in() {
	local root=$1
	shift
	in_root "$root" "apt-get -q -y --no-install-recommends -o Dpkg::Use-Pty=0 $*"
}

# second_kernel: the newest older kernel of the target's series and
# Debian release that the archive has headers for, and its Debian
# version: an older ABI of 6.1 (6.1.0-<abi>-amd64), an older upstream
# release of 6.12 (6.12.<sub>+deb<N>-amd64).
second_kernel() {
	local cur ere bre fmt best deb rel
	case $KSERIES in
	6.1)
		cur=${KREL#6.1.0-}
		cur=${cur%-amd64}
		ere='6\.1\.0-[0-9]+-amd64'
		bre='6\.1\.0-\([0-9]*\)-amd64'
		fmt='6.1.0-%s-amd64'
		;;
	*)
		deb=${KREL#*+}
		deb=${deb%-amd64}
		cur=${KREL#"$KSERIES".}
		cur=${cur%%+*}
		ere="${KSERIES//./\\.}\\.[0-9]+\\+$deb-amd64"
		bre="${KSERIES//./\\.}\\.\\([0-9]*\\)+$deb-amd64"
		fmt="$KSERIES.%s+$deb-amd64"
		;;
	esac
	best=$(apt-cache search --names-only "^linux-headers-$ere\$" |
		sed -n "s/^linux-headers-$bre .*/\1/p" |
		awk -v cur="$cur" '$1 < cur' | sort -n | tail -n 1)
	[ -n "$best" ] || return 0
	# shellcheck disable=SC2059 # the format is one of the two above
	rel=$(printf "$fmt" "$best")
	printf '%s %s' "$rel" "$(apt-cache policy "linux-headers-$rel" |
		awk '/Candidate:/ { print $2 }')"
}

base() {
	local dir=$BUILD/rootfs base key ver second rel2 ver2 t img
	base=$dir/base
	ver=$(pkg_version "$HDR_PKG")
	[ -n "$ver" ] || die "no version of $HDR_PKG in apt's lists; run apt-get update"
	second=$(second_kernel)
	key=$(printf '%s\n' "$KREL $ver" "$second" "$MIRROR $SECURITY" |
		cat - "$TOP/scripts/rootfs.sh" | sha256sum | cut -d' ' -f1)
	if [ "$(cat "$dir/base.stamp" 2>/dev/null)" = "$key" ] && [ -d "$base" ]; then
		log "Debian 12 rootfs ${base#"$TOP"/} is up to date"
		return
	fi
	need_pkgs debootstrap
	release_mounts "$dir"
	rm -rf --one-file-system "$base" "$base.new"
	mkdir -p "$dir"
	t=$(date +%s)
	log "debootstrap: a minimal Debian 12 rootfs from $MIRROR (about a minute)"
	debootstrap --variant=minbase bookworm "$base.new" "$MIRROR" \
		>"$dir/debootstrap.log" 2>&1 ||
		die "debootstrap failed (log: $dir/debootstrap.log)"
	cat >"$base.new/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
SOURCES
	# The archive's Release files may be past their Valid-Until.
	printf 'Acquire::Check-Valid-Until "false";\n' \
		>"$base.new/etc/apt/apt.conf.d/99kvm-backport"
	echo kbp-rootfs >"$base.new/etc/hostname"
	# The package test boots the rootfs' kernel with an initramfs of its
	# own (scripts/rootfs-init.sh): the initramfs that each kernel's
	# installation would make here, of every module, takes most of a
	# minute per kernel and is never used.  Everything else about the
	# installation is Debian's.
	in_root "$base.new" "dpkg-divert --local --rename --add /usr/sbin/update-initramfs &&
		ln -s /bin/true /usr/sbin/update-initramfs" >"$dir/apt.log" 2>&1 ||
		die "cannot divert update-initramfs in the rootfs (log: $dir/apt.log)"
	log "installing into the rootfs: linux-image-$KREL, $HDR_PKG, linux-source-$KSERIES ($ver), dkms (about 2 minutes)"
	# The signed image where the archive has it, as a host would install.
	img=linux-image-$KREL
	{
		apt_in "$base.new" update &&
		{ in_root "$base.new" "apt-cache show $img=$ver" >/dev/null ||
			img=$img-unsigned; } &&
		apt_in "$base.new" install "$img=$ver" "$HDR_PKG=$ver" \
			"linux-source-$KSERIES=$ver" dkms openssl kmod &&
		apt_in "$base.new" install --download-only \
			"linux-headers-${KREL%-amd64}-cloud-amd64=$ver" \
			"linux-headers-${KREL%-amd64}-rt-amd64=$ver"
	} >>"$dir/apt.log" 2>&1 || die "installing into the rootfs failed (log: $dir/apt.log)"
	if [ -n "$second" ]; then
		read -r rel2 ver2 <<<"$second"
		log "second kernel of the series: headers of $rel2 ($ver2) and its linux-source in apt's cache"
		apt_in "$base.new" install --download-only --allow-downgrades \
			"linux-headers-$rel2=$ver2" "linux-source-$KSERIES=$ver2" \
			>>"$dir/apt.log" 2>&1 ||
			die "installing $rel2's headers into the rootfs failed (log: $dir/apt.log)"
	fi
	echo "$second" >"$base.new/.kbp-second"
	mv "$base.new" "$base"
	echo "$key" >"$dir/base.stamp"
	log "rootfs ready in $(( $(date +%s) - t ))s: $(du -sh "$base" | cut -f1)"
}

case ${1:-} in
base)
	[ "$(id -u)" -eq 0 ] || die "the rootfs test needs root (debootstrap, chroot, mount)"
	resolve_target
	base
	;;
mount)
	resolve_target
	d=$2
	release_mounts "$d"
	rm -rf --one-file-system "$d/upper" "$d/work"
	mkdir -p "$d/upper" "$d/work" "$d/merged"
	mount -t overlay kbp-rootfs -o "lowerdir=$BUILD/rootfs/base,upperdir=$d/upper,workdir=$d/work" \
		"$d/merged" || die "cannot mount an overlay on the rootfs (needs overlayfs)"
	;;
umount)
	release_mounts "$2"
	rm -rf --one-file-system "$2/upper" "$2/work"
	;;
release)
	# make clean: nothing mounted may be left under build/.
	release_mounts "$TOP/build"
	;;
chroot)
	root=$2
	shift 2
	in_root "$root" "$*"
	;;
*)
	die "usage: rootfs.sh base | mount DIR | umount DIR | chroot ROOT CMD | release"
	;;
esac
