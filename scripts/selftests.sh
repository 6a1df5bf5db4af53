#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build the upstream KVM selftests of the target's source tree (with our
# series applied, so they see our uAPI) and our own selftests, as static
# binaries, into build/<release>/selftests/.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

resolve_target
# shellcheck disable=SC2046 # package lists
need_pkgs $(build_pkgs) libc6-dev
need_headers

SRC=$BUILD/src
"$TOP/scripts/prepare-tree.sh" full "$SRC"

log "installing uapi headers into the selftest tree"
kmake -s -C "$SRC" headers >"$BUILD/selftests-headers.log" 2>&1 ||
	die "make headers failed (log: $BUILD/selftests-headers.log)"

KST=$SRC/tools/testing/selftests/kvm
# Our selftests and the reference VMM are built once, on the selftest
# library and patched uAPI of SELFTEST_SERIES, and the same binaries run
# on every series: one uAPI, the same numbers and semantics everywhere.
# Another series builds only its own upstream selftests here.
MK=()
if [ "$KSERIES" = "$SELFTEST_SERIES" ]; then
	mkdir -p "$KST/backport"
	rsync -rc --delete "$TOP/tools/selftests/" "$KST/backport/"
	MK=(-f backport/Makefile)
	log "building KVM selftests (upstream and ours)"
else
	rm -rf "$KST/backport"
	MK=(-f Makefile)
	log "building the upstream KVM selftests of $KSERIES"
fi
# -k: some upstream tests do not build as shipped; they are accounted for
# in tools/selftests/$KSERIES/nobuild.list and checked below.
kmake -k -j"$(nproc)" -C "$KST" "${MK[@]}" \
	EXTRA_CFLAGS=-static LDFLAGS=-static >"$BUILD/selftests-build.log" 2>&1 || true

# Every test the Makefile knows of must have been built or be listed as
# not building, with a reason; our own tests must always build.
OUT=$BUILD/selftests
rm -rf "$OUT"
mkdir -p "$OUT/upstream" "$OUT/backport"
mapfile -t ALL < <(cd "$KST" && kmake -s "${MK[@]}" -f - print-tests <<'MK'
print-tests:
	@printf '%s\n' $(TEST_GEN_PROGS) $(TEST_GEN_PROGS_EXTENDED)
MK
)
nobuild=$(list_entries "$TOP/tools/selftests/$KSERIES/nobuild.list" | awk '{ print $1 }')
bad=0
built=0
own=0
for t in "${ALL[@]}"; do
	rel=${t#"$KST"/}
	name=$(basename "$rel")
	if [ -x "$t" ]; then
		case $rel in
		backport/*) cp "$t" "$OUT/backport/"; own=$((own + 1)) ;;
		*) cp "$t" "$OUT/upstream/"; built=$((built + 1)) ;;
		esac
		if grep -qx "$name" <<<"$nobuild"; then
			log "note: $name builds now; drop it from $KSERIES/nobuild.list"
		fi
	elif [[ $rel == backport/* ]]; then
		grep -m 20 "^backport/$name\.c:.*\(error\|warning\)" "$BUILD/selftests-build.log" >&2 || true
		log "our selftest $name failed to build"
		bad=1
	elif ! grep -qx "$name" <<<"$nobuild"; then
		log "upstream selftest $name failed to build and is not in $KSERIES/nobuild.list"
		bad=1
	fi
done
[ $bad -eq 0 ] || die "selftest build failed (log: $BUILD/selftests-build.log)"

if [ "$KSERIES" != "$SELFTEST_SERIES" ]; then
	log "our selftests and the reference VMM: the binaries built for $SELFTEST_SERIES"
	# KBP_OURS_FROM: where they are, for a build root that cannot build
	# them (Debian 13 has no linux-source-6.1).
	OURS=${KBP_OURS_FROM:-}
	if [ -z "$OURS" ]; then
		OURS=$(KERNELRELEASE='' KBP_SERIES=$SELFTEST_SERIES "$TOP/scripts/selftests.sh" |
			sed -n 's/^kvm-backport: built .* into //p')
		[ -z "$OURS" ] || OURS=$TOP/$OURS/backport
	fi
	if [ -z "$OURS" ] || [ ! -d "$OURS" ]; then
		die "no selftests of $SELFTEST_SERIES${OURS:+ in $OURS}: building them failed"
	fi
	cp -a "$OURS/." "$OUT/backport/"
	"$TOP/scripts/our-functions.sh" "$KSERIES" >"$OUT/backport/uapi_fuzz.functions"
	log "built $built upstream selftests into ${OUT#"$TOP"/}, ours are $SELFTEST_SERIES's"
	exit 0
fi

# The reference VMM, on the same uAPI headers, beside our selftests.
log "building the reference VMM (tools/vmm)"
make -s -C "$TOP/tools/vmm" UAPI="$SRC/usr/include" OUT="$OUT/backport" \
	>"$BUILD/vmm-build.log" 2>&1 ||
	{ cat "$BUILD/vmm-build.log" >&2; die "the reference VMM failed to build"; }
# The functions of ours whose reach the uAPI fuzzer reports.
"$TOP/scripts/our-functions.sh" "$KSERIES" >"$OUT/backport/uapi_fuzz.functions"
log "built $built upstream and $own own selftests into ${OUT#"$TOP"/}"
