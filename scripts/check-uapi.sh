#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check-uapi.sh: the numbers our patches add to <linux/kvm.h> must not
# collide with any that the target's pristine header, Debian's other
# supported kernel (6.12, trixie) or the newest upstream Debian has (sid)
# defines.  The reference headers come from those releases'
# linux-libc-dev packages, fetched with a private apt configuration (the
# system's sources are not touched) and cached in build/uapi.
#
# Prints the table of our numbers.  Exit status: 0 clean, 1 collision,
# 2 the check could not run.  With --control, also check that a header
# with a planted collision is refused, i.e. that the check can fail.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

resolve_target
UAPI=$BUILD/uapi
OURS=$BUILD/kvm/include/uapi/linux/kvm.h
[ -r "$OURS" ] || die "no prepared tree in $BUILD/kvm: run make first"
mkdir -p "$UAPI"

# The pristine header of the tree the modules are built from.
BASE=$UAPI/base-kvm.h
if [ -n "${KSRC:-}" ] && [ -d "$KSRC" ]; then
	cp "$KSRC/include/uapi/linux/kvm.h" "$BASE"
else
	tarball=${KSRC:-/usr/src/linux-source-$KSERIES.tar.xz}
	if [ ! -s "$BASE" ] || [ "$tarball" -nt "$BASE" ]; then
		tar -xOf "$tarball" --wildcards '*/include/uapi/linux/kvm.h' \
			>"$BASE.tmp" && mv "$BASE.tmp" "$BASE"
	fi
fi

# fetch SUITE: unpack that suite's linux-libc-dev; print "header,label".
APT=$UAPI/apt
apt_opts=(-o "Dir::Etc::sourcelist=$APT/sources.list"
	  -o "Dir::Etc::sourceparts=-" -o "Dir::State::Lists=$APT/lists"
	  -o "Dir::Cache=$APT/cache" -o "APT::Sandbox::User=root" -q)
fetch() {
	local suite=$1 ver dir
	ver=$(apt-cache "${apt_opts[@]}" madison linux-libc-dev |
		awk -v s="$suite" '$0 ~ "/debian " s "/" { print $3; exit }')
	[ -n "$ver" ] || return 1
	dir=$UAPI/$suite-$ver
	if [ ! -s "$dir/kvm.h" ]; then
		rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
		(cd "$dir.tmp" && apt-get "${apt_opts[@]}" download \
			"linux-libc-dev=$ver" >/dev/null 2>&1) || return 1
		dpkg-deb -x "$dir.tmp"/linux-libc-dev_*.deb "$dir.tmp/root"
		rm -rf "$dir" && mkdir -p "$dir"
		cp "$dir.tmp/root/usr/include/linux/kvm.h" "$dir/kvm.h"
		rm -rf "$dir.tmp"
	fi
	echo "$dir/kvm.h,$ver"
}

mkdir -p "$APT/lists/partial" "$APT/cache"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
{
	echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie main"
	echo "deb [signed-by=$keyring] http://deb.debian.org/debian sid main"
} >"$APT/sources.list"
apt-get "${apt_opts[@]}" update >/dev/null 2>&1 ||
	log "apt-get update of trixie/sid failed; using cached headers"

refs=("$BASE,$(pkg_version "$HDR_PKG")")
for suite in trixie sid; do
	if ref=$(fetch "$suite"); then
		refs+=("$ref")
	else
		# The last cached one in glob (ls) order; none leaves it empty.
		cached=
		for c in "$UAPI/$suite"-*/kvm.h; do
			[ ! -e "$c" ] || cached=$c
		done
		[ -n "$cached" ] || { log "no linux-libc-dev from $suite"; exit 2; }
		refs+=("$cached,$(basename "$(dirname "$cached")") (cached)")
	fi
done

# One uAPI: the patched header of every other series prepared here is a
# reference too, in which each name of ours must have the number it has
# here.  make check prepares 6.1 (the selftests' series) first.
for s in $(supported_series); do
	[ "$s" != "$KSERIES" ] || continue
	for h in "$TOP"/build/*/kvm/include/uapi/linux/kvm.h; do
		d=${h%/kvm/include/uapi/linux/kvm.h}
		if [ -e "$h" ] && [ "$(krel_series "${d##*/}")" = "$s" ]; then
			refs+=("$h,$s-ours")
			break
		fi
	done
done

rc=0
"$TOP/scripts/uapi-numbers.sh" "$OURS" "$BASE" "${refs[@]}" || rc=$?

if [ "${1:-}" = --control ] && [ $rc -eq 0 ]; then
	# A planted capability that reuses KVM_CAP_ASYNC_PF's number and an
	# ioctl that reuses KVM_SET_USER_MEMORY_REGION's must be refused; so
	# must, with another series' header to compare, a number of ours
	# that differs from that series'.
	want=2
	{
		cat "$OURS"
		echo '#define KVM_CAP_PLANTED_COLLISION 59'
		echo '#define KVM_PLANTED_COLLISION _IO(KVMIO, 0x46)'
		if [[ ${refs[*]} == *-ours* ]]; then
			echo '#define KVM_MEM_USERFAULT (1UL << 14)'
			want=3
		fi
	} >"$UAPI/control-kvm.h"
	"$TOP/scripts/uapi-numbers.sh" "$UAPI/control-kvm.h" "$BASE" \
		"${refs[@]}" >"$UAPI/control.out" || true
	found=$(grep -c COLLISION "$UAPI/control.out" || true)
	if [ "$found" -ne "$want" ]; then
		log "the check found $found of $want planted collisions"
		rc=3
	else
		echo "control: planted collisions found: $found"
	fi
fi
exit $rc
