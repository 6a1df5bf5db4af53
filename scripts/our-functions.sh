#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# our-functions.sh SERIES: the kernel functions our series SERIES defines
# or changes, one name a line, sorted: those whose definitions its patches
# add, those its patches change (the function a hunk header names), and
# those of our own source files that the modules build (virt/, arch/,
# patches/SERIES/files/), without the KUnit suites' (*_test.c).
# paging_tmpl.h's FNAME(name) stands for its three expansions.  The uAPI
# fuzzer reports which of them its campaign reached
# (tools/selftests/uapi_fuzz.c --functions).
#
# A definition is a line, added by a patch, in a hunk header or in a file,
# that starts in column 0 with a type and then "name(", and has no ";":
# kernel style.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

SERIES=${1:-}
[[ -n $SERIES && -f $TOP/patches/$SERIES/series ]] ||
	die "say which series: $0 SERIES (one of: $(cd "$TOP/patches" && echo */ | tr -d /))"

mapfile -t PATCHES < <(list_entries "$TOP/patches/$SERIES/series")
mapfile -t FILES < <(cd "$TOP" && find virt arch "patches/$SERIES/files" \
	-name '*.c' ! -name '*_test.c' 2>/dev/null | LC_ALL=C sort)
LINES=$(mktemp)
trap 'rm -f "$LINES"' EXIT

# Patches: added lines and hunk headers of the files that are not KUnit
# suites.
for p in "${PATCHES[@]}"; do
	awk '/^\+\+\+ / { skip = ($2 ~ /_test\.c$/); next }
	     skip { next }
	     /^@@ / { sub(/^@@ [^@]* @@ ?/, ""); print; next }
	     /^\+/ { print substr($0, 2) }' "$TOP/patches/$SERIES/$p"
done >"$LINES"
for f in "${FILES[@]}"; do
	cat "$TOP/$f"
done >>"$LINES"

# "static inline bool name(", "struct foo *name(", "int __init name(",
# "static int FNAME(name)(": words of a type, then the name.
sed -E 's/FNAME\(([a-z_][a-z0-9_]*)\)\(/FNAME__\1(/' "$LINES" |
	grep -E '^[a-z_][a-z0-9_]*( [a-z_][a-z0-9_]*)*[ *]+[A-Za-z_][A-Za-z0-9_]*\(' |
	grep -v ';' |
	sed -E 's/^[^(]*[ *]([A-Za-z_][A-Za-z0-9_]*)\(.*/\1/' |
	grep -vxE 'if|for|while|switch|return|sizeof|defined' |
	sed -E 's/^FNAME__(.*)/paging64_\1\npaging32_\1\nept_\1/' |
	grep -E '^[a-z_][a-z0-9_]*$' | LC_ALL=C sort -u
