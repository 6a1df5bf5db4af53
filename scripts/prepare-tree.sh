#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# prepare-tree.sh MODE DEST
#
# Lay out a KVM source tree for the target kernel in DEST: the pristine
# sources from the distro's source package (or KSRC), our patch series
# applied in order, our own files added.
#
# MODE "kvm":  only what the KVM modules need (plus Documentation/virt/kvm
#              and whatever the series touches), with our Kbuild installed
#              in arch/x86/kvm so kbuild can build it with M=.
# MODE "full": the whole source tree (selftests, KUnit, debug kernels).
# MODE "check": only check that the source is there and matches the
#              target's headers (dkms.conf skips a kernel that fails
#              this); DEST is unused.
#
# The tree is rebuilt only when its inputs change, and files are updated
# in place only when their contents differ, so kbuild rebuilds only what
# a change really touches.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

MODE=$1
DEST=$2
resolve_target
# shellcheck disable=SC2046 # package lists
need_pkgs $(build_pkgs)
need_headers

SERIES_DIR=$TOP/patches/$KSERIES
[ -f "$SERIES_DIR/series" ] || die "no patch series for $KSERIES ($SERIES_DIR/series)"
mapfile -t PATCHES < <(list_entries "$SERIES_DIR/series")

# Where the pristine source comes from.
HDR_VER=$(headers_version)
if [ -n "${KSRC:-}" ]; then
	[ -e "$KSRC" ] || die "KSRC=$KSRC does not exist"
	SRC=$(realpath "$KSRC")
	# A tree changes inside: key on its newest file, a tarball on itself.
	if [ -d "$SRC" ]; then
		SRC_ID="ksrc:$SRC:$(find "$SRC" -type f -printf '%T@\n' | sort -n | tail -n 1)"
	else
		SRC_ID="ksrc:$SRC:$(stat -c '%s %Y' "$SRC")"
	fi
else
	SRC_PKG=linux-source-$KSERIES
	SRC=/usr/src/$SRC_PKG.tar.xz
	src_deb=$(pkg_version "$SRC_PKG")
	hdr_deb=$(pkg_version "$HDR_PKG")
	# A kernel update may arrive before its source: build nothing then.
	if [ "$src_deb" != "$hdr_deb" ]; then
		if [ -n "${KBP_DKMS:-}" ]; then
			# Not an error: dkms.conf skips this kernel.
			log "$KREL skipped: it needs $SRC_PKG $hdr_deb, installed is ${src_deb:-none}: apt-get install $SRC_PKG=$hdr_deb, and DKMS builds for it" >&2
			exit 1
		fi
		die "$KREL needs $SRC_PKG $hdr_deb, installed is ${src_deb:-none}: apt-get install $SRC_PKG=$hdr_deb, or set KSRC"
	fi
	SRC_ID="pkg:$SRC_PKG:$src_deb"
fi
if [ "$MODE" = check ]; then
	log "source for $KREL: ${SRC_ID#*:}"
	exit 0
fi

# Inputs that decide the tree's contents.
inputs_key() {
	{
		echo "$MODE $SRC_ID $KREL"
		cat "$TOP/scripts/prepare-tree.sh" "$TOP/Kbuild"
		for p in "${PATCHES[@]}"; do
			echo "$p"
			cat "$SERIES_DIR/$p"
		done
		(cd "$TOP" && for d in virt arch include "patches/$KSERIES/files"; do
			[ ! -d "$d" ] || find "$d" -type f
		done | LC_ALL=C sort | xargs -r sha256sum)
	} | sha256sum | cut -d' ' -f1
}
KEY=$(inputs_key)
if [ -f "$DEST.stamp" ] && [ "$(cat "$DEST.stamp")" = "$KEY" ] && [ -d "$DEST" ]; then
	log "source tree $DEST is up to date"
	exit 0
fi

NEW=$DEST.new
rm -rf "$NEW"
mkdir -p "$NEW"

# Paths of the source tree that the KVM modules are built from.
KVM_PATHS=(
	Makefile
	virt/kvm
	arch/x86/kvm
	include/kvm
	include/trace/events/kvm.h
	Documentation/virt/kvm
)
KVM_GLOBS=(
	'include/linux/kvm*.h'
	'include/uapi/linux/kvm*.h'
	'arch/x86/include/asm/kvm*.h'
	'arch/x86/include/uapi/asm/kvm*.h'
)
# Files our patches touch must be in the tree too.
mapfile -t TOUCHED < <(for p in "${PATCHES[@]}"; do
	sed -n 's|^+++ b/\([^[:space:]]*\).*|\1|p' "$SERIES_DIR/$p"
done | LC_ALL=C sort -u)

log "extracting $MODE sources from $SRC"
if [ -d "$SRC" ]; then
	[ -f "$SRC/Makefile" ] || die "KSRC=$SRC has no Makefile"
	if [ "$MODE" = full ]; then
		cp -a "$SRC/." "$NEW/"
	else
		# shellcheck disable=SC2068 # the globs expand here, in $SRC
		(cd "$SRC" && for g in "${KVM_PATHS[@]}" ${KVM_GLOBS[@]} "${TOUCHED[@]}"; do
			[ ! -e "$g" ] || cp -r --parents "$g" "$NEW/"
		done)
	fi
else
	top=$(tar -tf "$SRC" 2>/dev/null | head -n 1 | cut -d/ -f1) || true
	[ -n "$top" ] || die "cannot read $SRC"
	if [ "$MODE" = full ]; then
		tar -xf "$SRC" -C "$NEW" --strip-components=1
	else
		members=()
		for g in "${KVM_PATHS[@]}" "${KVM_GLOBS[@]}" "${TOUCHED[@]}"; do
			members+=("$top/$g")
		done
		# A patch may create a file: a missing member is not an error here,
		# a patch that does not apply is (below).
		tar -xf "$SRC" -C "$NEW" --strip-components=1 --wildcards \
			--ignore-failed-read "${members[@]}" 2>/dev/null || true
	fi
fi
[[ -f $NEW/Makefile && -d $NEW/virt/kvm ]] ||
	die "$SRC does not look like a Linux source tree"

src_ver=$(sed -n -e 's/^VERSION = //p' -e 's/^PATCHLEVEL = //p' -e 's/^SUBLEVEL = //p' \
	"$NEW/Makefile" | paste -sd.)
[ "$src_ver" = "$HDR_VER" ] ||
	die "source is Linux $src_ver but the headers for $KREL are $HDR_VER: use the matching source"

for p in "${PATCHES[@]}"; do
	patch -d "$NEW" -p1 --batch --forward --no-backup-if-mismatch -s \
		<"$SERIES_DIR/$p" >"$NEW.patch.log" 2>&1 || {
		cat "$NEW.patch.log" >&2
		die "patch $KSERIES/$p does not apply"
	}
done
rm -f "$NEW.patch.log"
log "applied ${#PATCHES[@]} patch(es) from patches/$KSERIES"

# Our own files, at the paths they have in the kernel tree: those of
# every series, then the series' own (patches/<series>/files/), which
# give the shared ones what differs between kernels under one name
# (kvm_backport_compat.h).
for d in virt arch include; do
	[ -d "$TOP/$d" ] && cp -r "$TOP/$d" "$NEW/"
done
[ ! -d "$SERIES_DIR/files" ] || cp -r "$SERIES_DIR/files/." "$NEW/"

if [ "$MODE" = kvm ]; then
	# kbuild reads Kbuild in preference to Makefile: ours wraps the
	# distro's (patched) arch/x86/kvm/Makefile, which is written for an
	# in-tree build and refers to the KVM sources as $(srctree).
	# shellcheck disable=SC2016 # $(srctree) and $(kvm-tree) are make's, not ours
	sed 's/\$(srctree)/$(kvm-tree)/g' "$NEW/arch/x86/kvm/Makefile" \
		>"$NEW/arch/x86/kvm/Makefile.distro"
	cp "$TOP/Kbuild" "$NEW/arch/x86/kvm/Kbuild"
fi

# Update DEST in place, touching only files whose contents changed.
mkdir -p "$DEST"
rsync -rlc "$NEW/" "$DEST/"
rm -rf "$NEW"
echo "$KEY" >"$DEST.stamp"
log "source tree ready in $DEST"
