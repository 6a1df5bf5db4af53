# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=bash
# Shared helpers for the build and test scripts.  Source it, do not run it.
#
# Every script prints its progress as "kvm-backport: ..." lines so that a
# long step always says what it is doing.

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PROJECT=kvm-backport
. "$TOP/scripts/guest-lib.sh"

log() { printf '%s: %s\n' "$PROJECT" "$*"; }
die() { printf '%s: error: %s\n' "$PROJECT" "$*" >&2; exit 1; }

# phase NAME: start timing a phase; phase_end prints how long it took and
# remembers it for phase_summary.
PHASES=()
phase() {
	PHASE_NAME=$1
	PHASE_START=$(date +%s)
	log "[$PHASE_NAME] ..."
}
phase_end() {
	local t=$(( $(date +%s) - PHASE_START ))
	PHASES+=("$(printf '%-22s %5ss' "$PHASE_NAME" "$t")")
	log "[$PHASE_NAME] done in ${t}s"
}
phase_summary() {
	local p
	log "phase timings:"
	for p in "${PHASES[@]}"; do
		printf '  %s\n' "$p"
	done
}

# need_pkgs PKG...: make sure Debian packages are installed.  As root on
# Debian they are installed (and we say so); otherwise print the one
# apt-get line that is needed and stop.
need_pkgs() {
	local missing=() p ok='^ii'
	# Under DKMS, a kernel's hooks may run while the packages of the
	# same upgrade are unpacked but not yet configured: their files are
	# there, which is all the build needs.
	[ -z "${KBP_DKMS:-}" ] || ok='^i[iUFWt]'
	for p in "$@"; do
		dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q "$ok" ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	# Under DKMS we run inside dpkg, which holds the package database.
	if [ -n "${KBP_DKMS:-}" ] || [ "$(id -u)" -ne 0 ] ||
		! command -v apt-get >/dev/null; then
		die "missing packages; run: sudo apt-get install ${missing[*]}"
	fi
	log "installing missing packages: ${missing[*]}"
	if [ -z "${APT_UPDATED:-}" ]; then
		apt-get update -qq >/dev/null || die "apt-get update failed"
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# Series of Debian kernels we carry patches for, by upstream major.minor.
supported_series() {
	local d
	for d in "$TOP"/patches/*/series; do
		basename "$(dirname "$d")"
	done
}

# pkg_version PKG: the installed version of a package, or the candidate
# apt would install when it is not installed.
pkg_version() {
	local v
	v=$(dpkg-query -W -f='${Version}' "$1" 2>/dev/null)
	if [ -z "$v" ]; then
		# apt-cache takes a name with a dot for a regex too: on Debian
		# 13, "linux-source-6.1" matches linux-source-6.12.  Only the
		# package's own block counts.
		v=$(apt-cache policy "$1" 2>/dev/null | awk -v p="$1:" '
			/^[^ ]/ { this = ($1 == p) }
			this && /Candidate:/ { print $2; exit }')
		[ "$v" = "(none)" ] && v=
	fi
	printf '%s' "$v"
}

# Debian kernel releases by series: 6.1 is Debian 12's own kernel
# (6.1.0-<abi>-<flavour>), 6.12 both Debian 13's and the one Debian 12
# carries (6.12.<sub>+deb<12|13>-<flavour>).  Flavours: amd64 and
# cloud-amd64 (what Debian's cloud images run).
krel_pattern() {
	case $1 in
	6.1) echo '^6\.1\.0-[0-9]+-(cloud-)?amd64$' ;;
	*) echo "^${1//./\\.}\.[0-9]+\+deb[0-9]+-(cloud-)?amd64$" ;;
	esac
}

# krel_samples SERIES: release names of SERIES' kernels as Debian has
# them, in the flavours we build for, for checking patterns against.
krel_samples() {
	case $1 in
	6.1) echo "$1.0-99-amd64 $1.0-99-cloud-amd64" ;;
	*) echo "$1.99+deb12-amd64 $1.99+deb13-amd64 $1.99+deb12-cloud-amd64" \
		"$1.99+deb13-cloud-amd64" ;;
	esac
}

# krel_series RELEASE: the series (major.minor) of a release.
krel_series() {
	[[ $1 =~ ^([0-9]+\.[0-9]+)[.-] ]] && echo "${BASH_REMATCH[1]}"
}

# default_krel [SERIES]: the current Debian kernel release of SERIES (by
# default this Debian's own: 6.1 on Debian 12), amd64 flavour.  Never
# hard-coded: the ABI number changes with every Debian kernel update.
# This Debian's own series: the release linux-headers-amd64 depends on.
# Another one (the 6.12 that Debian 12 carries beside 6.1): the release
# of the version linux-source-<series> has, which decides what can be
# built; its headers metapackage may lag behind the source for a while.
default_krel() {
	local series=${1:-} dep ver
	if [ -z "${APT_UPDATED:-}" ] && [ "$(id -u)" -eq 0 ] &&
		! apt-cache show linux-headers-amd64 >/dev/null 2>&1; then
		apt-get update -qq >/dev/null 2>&1 && APT_UPDATED=1
	fi
	dep=$(dpkg-query -W -f='${Depends}' linux-headers-amd64 2>/dev/null)
	[ -n "$dep" ] || dep=$(apt-cache show linux-headers-amd64 2>/dev/null |
		sed -n 's/^Depends: //p' | head -n 1)
	dep=$(printf '%s' "$dep" | grep -o 'linux-headers-[0-9][^ ,]*-amd64' | head -n 1)
	dep=${dep#linux-headers-}
	if [ -n "$series" ] && [ "$(krel_series "$dep")" != "$series" ]; then
		ver=$(pkg_version "linux-source-$series")
		[ -n "$ver" ] ||
			die "no linux-source-$series in the apt sources: run apt-get update, or set KERNELRELEASE"
		dep=$(apt-cache pkgnames "linux-headers-${ver%%-*}+" 2>/dev/null |
			sed 's/^linux-headers-//' | grep -E "$(krel_pattern "$series")" |
			grep -v cloud | sort -V | tail -n 1)
		[ -n "$dep" ] ||
			die "no amd64 headers for linux-source-$series $ver in the apt sources; set KERNELRELEASE"
	fi
	[ -n "$dep" ] || die "cannot resolve the default kernel from linux-headers-amd64 (is this Debian with apt sources?)"
	printf '%s' "$dep"
}

# resolve_target: set KREL (kernel release), KSERIES (patch series, e.g.
# 6.1), HDR (where the kbuild headers go), HDR_PKG and BUILD.  Installs
# nothing: callers ask need_pkgs for what they need, then need_headers.
# KERNELRELEASE picks the release, KBP_SERIES the series whose current
# release (or the running kernel, when it is of that series) is the
# target.
resolve_target() {
	local running
	running=$(uname -r)
	if [ -n "${KERNELRELEASE:-}" ]; then
		KREL=$KERNELRELEASE
	elif [ -n "${KBP_SERIES:-}" ]; then
		[ -f "$TOP/patches/$KBP_SERIES/series" ] ||
			die "series $KBP_SERIES is not supported (supported: $(supported_series | tr '\n' ' '))"
		if is_supported_krel "$running" && [ -d "/lib/modules/$running/build" ] &&
			[ "$(krel_series "$running")" = "$KBP_SERIES" ]; then
			KREL=$running
		else
			KREL=$(default_krel "$KBP_SERIES")
		fi
	elif is_supported_krel "$running" && [ -d "/lib/modules/$running/build" ]; then
		KREL=$running
	else
		KREL=$(default_krel)
	fi
	is_supported_krel "$KREL" ||
		die "kernel $KREL is not supported (supported: Debian 6.1.0-<abi>-amd64 and 6.12.<n>+deb<n>-amd64, also -cloud-amd64, for series: $(supported_series | tr '\n' ' '))"
	KSERIES=$(krel_series "$KREL")
	HDR_PKG=linux-headers-$KREL
	HDR=/usr/src/linux-headers-$KREL
	BUILD=$TOP/build/$KREL
	export KREL KSERIES HDR HDR_PKG BUILD
}

# The series whose selftest library and patched uAPI headers our own
# selftests and the reference VMM are built on, once, for every series
# (scripts/selftests.sh).
# shellcheck disable=SC2034 # used by the scripts that source this
SELFTEST_SERIES=6.1

# Debian packages needed to build the modules, and to test them.
build_pkgs() {
	# Under DKMS the headers' package may be the one being configured
	# (its postinst runs DKMS); DKMS itself checks the kernel's tree.
	[ -n "${KBP_DKMS:-}" ] || echo "$HDR_PKG"
	echo "make gcc patch rsync xz-utils"
	[ -n "${KSRC:-}" ] || echo "linux-source-$KSERIES"
}
test_pkgs() {
	echo "qemu-system-x86 busybox-static cpio kmod libc6-dev"
}
# ...and to build our own test kernel (scripts/kunit.sh) with kunit.py.
kernel_build_pkgs() {
	echo "python3 flex bison bc libelf-dev libssl-dev"
}
# The self-built KUnit and debug kernel, in build/<release>/kunit-obj.
# shellcheck disable=SC2034 # used by the scripts that source this
TEST_KERNEL=arch/x86/boot/bzImage

# need_headers: the target's kbuild tree, which must be installed by now.
need_headers() {
	[ -f "$HDR/Makefile" ] || HDR=/lib/modules/$KREL/build
	[ -f "$HDR/Makefile" ] ||
		die "no kbuild tree for $KREL (install $HDR_PKG)"
}

is_supported_krel() {
	local s
	for s in $(supported_series); do
		[[ $1 =~ $(krel_pattern "$s") ]] && return 0
	done
	return 1
}

# headers_version: upstream version (e.g. 6.1.192) of the kbuild tree.
headers_version() {
	kmake -s -C "$HDR" kernelversion 2>/dev/null ||
		die "cannot read the kernel version of $HDR"
}

# project_version: the version of this source: 0.<commits>+g<hash> in a
# git checkout (".dirty" with uncommitted changes), which orders as the
# history does and so serves as the Debian package version; elsewhere
# (a DKMS source tree) the VERSION file that make deb wrote.
project_version() {
	local v
	if [ "$(git -C "$TOP" rev-parse --show-toplevel 2>/dev/null)" = "$TOP" ]; then
		v=0.$(git -C "$TOP" rev-list --count HEAD)+g$(git -C "$TOP" rev-parse --short=7 HEAD)
		# make deb packs untracked files too: they make it dirty.
		[ -z "$(git -C "$TOP" status --porcelain 2>/dev/null)" ] || v=$v.dirty
	elif [ -f "$TOP/VERSION" ]; then
		v=$(cat "$TOP/VERSION")
	else
		v=unknown
	fi
	printf '%s' "$v"
}

# backport_version: the version tag our modules carry.
backport_version() {
	printf '%s-%s+%s' "$PROJECT" "$(project_version)" "$KREL"
}

# kvm_idle_or_die WHAT: refuse WHAT while KVM is in use on this host.
# /dev/kvm and every VM hold a reference to the vendor module (its
# kvm_chardev_ops.owner); other references to kvm are its holders', and
# a holder other than the vendor module (kvmgt) keeps kvm from unloading.
kvm_idle_or_die() {
	local vmod refs=0 holders users held
	vmod=$(kvm_vendor_module)
	vmod=${vmod//-/_}
	# Built in, KVM has a /sys/module entry but no refcnt, and nothing
	# to unload.
	[ ! -f "/sys/module/$vmod/refcnt" ] || refs=$(cat "/sys/module/$vmod/refcnt")
	[ -f /sys/module/kvm/refcnt ] || return 0
	holders=$(find /sys/module/kvm/holders -mindepth 1 -maxdepth 1 | wc -l)
	refs=$((refs + $(cat /sys/module/kvm/refcnt) - holders))
	if [ "$refs" -gt 0 ]; then
		users=$(find /proc/[0-9]*/fd -lname '/dev/kvm' -o -lname 'anon_inode:kvm-*' 2>/dev/null |
			cut -d/ -f3 | sort -un | tr '\n' ' ')
		die "kvm is in use ($refs open /dev/kvm, VM or vCPU reference(s); processes: ${users:-unknown}); stop the VMs, then $1"
	fi
	held=$(find /sys/module/kvm/holders -mindepth 1 -maxdepth 1 -printf '%f\n' |
		grep -vx "$vmod" | tr '\n' ' ') || true
	[ -z "$held" ] || die "kvm is used by module(s) $held; unload them, then $1"
}

# signed_or_die KO HINT: refuse an unsigned KO where this kernel takes
# signed modules only (lockdown, as under Secure Boot, or
# module.sig_enforce), saying HINT.  Checked before the stock modules go.
signed_or_die() {
	local f=/sys/kernel/security/lockdown
	[ -z "$(modinfo -F sig_id "$1" 2>/dev/null)" ] || return 0
	if { [ -r $f ] && ! grep -q '\[none\]' $f; } ||
		grep -qx Y /sys/module/module/parameters/sig_enforce 2>/dev/null; then
		die "this kernel takes signed modules only and ours are unsigned: $2"
	fi
}

# kmake ARGS...: make in a kernel tree without leaking our own make's
# command line (KERNELRELEASE in particular) into it.
kmake() {
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u KERNELRELEASE make "$@"
}
