#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# our-functions.sh SERIES: the kernel functions our series SERIES defines,
# one name a line, sorted: those its patches add and those of our own
# source files that the modules build (virt/, arch/, patches/SERIES/files/),
# without the KUnit suites' (*_test.c).  The uAPI fuzzer reports which of
# them its campaign reached (tools/selftests/uapi_fuzz.c --functions).
#
# A definition is a line, added by a patch or in a file, that starts in
# column 0 with a type and then "name(", and has no ";": kernel style.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

SERIES=${1:-}
[[ -n $SERIES && -f $TOP/patches/$SERIES/series ]] ||
	die "say which series: $0 SERIES (one of: $(cd "$TOP/patches" && echo */ | tr -d /))"

mapfile -t PATCHES < <(list_entries "$TOP/patches/$SERIES/series")
mapfile -t FILES < <(cd "$TOP" && find virt arch "patches/$SERIES/files" \
	-name '*.c' ! -name '*_test.c' 2>/dev/null | LC_ALL=C sort)

# Patches: added lines of the files that are not KUnit suites.
for p in "${PATCHES[@]}"; do
	awk '/^\+\+\+ / { skip = ($2 ~ /_test\.c$/) } /^\+[^+]/ && !skip { print substr($0, 2) }' \
		"$TOP/patches/$SERIES/$p"
done >"${TMPDIR:-/tmp}/our-functions.$$"
for f in "${FILES[@]}"; do
	cat "$TOP/$f"
done >>"${TMPDIR:-/tmp}/our-functions.$$"

# "static inline bool name(", "struct foo *name(", "int __init name(":
# words of a type, then the name.
grep -E '^[a-z_][a-z0-9_]*( [a-z_][a-z0-9_]*)*[ *]+[a-z_][a-z0-9_]*\(' \
	"${TMPDIR:-/tmp}/our-functions.$$" | grep -v ';' |
	sed -E 's/^[^(]*[ *]([a-z_][a-z0-9_]*)\(.*/\1/' |
	grep -vxE 'if|for|while|switch|return|sizeof|defined' | LC_ALL=C sort -u
rm -f "${TMPDIR:-/tmp}/our-functions.$$"
