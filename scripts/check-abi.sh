#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check-abi.sh [OUR_SYMVERS [STOCK_SYMVERS]]
#
# Compare the symbols our kvm.ko, kvm-intel.ko and kvm-amd.ko export with
# the ones the distro's modules export, by the Module.symvers of both.
#
# Other modules of the distro kernel (kvmgt.ko first of all) were built
# against the stock KVM headers and carry the CRC of every KVM symbol they
# use.  The module loader refuses them, or worse, a module whose CRC was
# matched by accident reads a struct whose layout moved, unless every
# symbol the stock modules export is still exported by ours with the same
# CRC.  So a stock export that is missing, or whose CRC differs, fails the
# check; new exports are fine and only counted.
#
# OUR_SYMVERS defaults to the Module.symvers that scripts/build.sh leaves
# in the prepared tree (build/<release>/kvm/arch/x86/kvm/), STOCK_SYMVERS
# to the one of the target's kbuild tree.  Prints a table of the
# differences and exits 1 if there is any, 0 if there is none, 2 on bad
# input.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
	echo "usage: $0 [OUR_SYMVERS [STOCK_SYMVERS]]" >&2
	exit 2
}
# Bad input is not an ABI difference: say so on one line, exit 2.
bad() {
	printf '%s: error: %s\n' "$PROJECT" "$*" >&2
	exit 2
}

case "${1:-}" in
-h | --help) usage ;;
-*) bad "unknown option $1 (usage: $0 [OUR_SYMVERS [STOCK_SYMVERS]])" ;;
esac
[ $# -le 2 ] || bad "too many arguments (usage: $0 [OUR_SYMVERS [STOCK_SYMVERS]])"

# Resolve the target only for a default: with both files given, the check
# runs anywhere, without apt or a kbuild tree.
if [ $# -lt 2 ]; then
	resolve_target
	need_headers
fi
OURS=${1:-$BUILD/kvm/arch/x86/kvm/Module.symvers}
STOCK=${2:-$HDR/Module.symvers}

for f in "$OURS" "$STOCK"; do
	[ -e "$f" ] || bad "$f does not exist"
	[ -f "$f" ] || bad "$f is not a file"
	[ -r "$f" ] || bad "$f is not readable"
	[ -s "$f" ] || bad "$f is empty"
done

# check_format FILE: every line of a Module.symvers is
# "CRC<TAB>symbol<TAB>module<TAB>export type[<TAB>namespace]".  Anything
# else means the wrong file was given, and comparing it would report
# nonsense.
check_format() {
	local bad_line
	bad_line=$(awk -F'\t' '
		!(NF >= 4 && NF <= 5 && $1 ~ /^0x[0-9a-fA-F]+$/ && $2 != "" &&
		  $3 != "" && $4 ~ /^EXPORT_SYMBOL/) { print NR; exit }' "$1")
	[ -z "$bad_line" ] ||
		bad "$1:$bad_line: not a Module.symvers line (CRC, symbol, module, export type)"
}
check_format "$OURS"
check_format "$STOCK"

# kvm_exports FILE STRICT: "symbol<TAB>crc<TAB>module<TAB>CRC" for the symbols
# exported by kvm, kvm-intel and kvm-amd.  The stock file names the modules
# by their path in the kernel tree (arch/x86/kvm/kvm); an M= build names
# them by the absolute path of the module in the build tree, so ours are
# matched by the module's basename only.  crc is lowercased without
# leading zeros, so that only values are compared; CRC is as written.
kvm_exports() {
	awk -F'\t' -v strict="$2" '
		{
			mod = $3
			if (strict && mod !~ /(^|\/)arch\/x86\/kvm\/kvm(-intel|-amd)?$/)
				next
			sub(/.*\//, "", mod)
			if (mod != "kvm" && mod != "kvm-intel" && mod != "kvm-amd")
				next
			crc = tolower(substr($1, 3))
			sub(/^0+/, "", crc)
			print $2 "\t" (crc == "" ? "0" : crc) "\t" mod "\t" $1
		}' "$1" | LC_ALL=C sort -t "$(printf '\t')" -k1,1 -u
}

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
kvm_exports "$STOCK" 1 >"$TMP/stock"
kvm_exports "$OURS" 0 >"$TMP/ours"
[ -s "$TMP/stock" ] ||
	bad "$STOCK lists no export of arch/x86/kvm/kvm, kvm-intel or kvm-amd"
[ -s "$TMP/ours" ] ||
	bad "$OURS lists no export of kvm, kvm-intel or kvm-amd"

# One row per stock export that is missing or differs: symbol, stock
# module, stock CRC, our CRC ("-" when missing), what is wrong.
LC_ALL=C join -t "$(printf '\t')" -a 1 -e - -o 1.1,1.3,1.4,2.4,1.2,2.2 \
	"$TMP/stock" "$TMP/ours" |
	awk -F'\t' '
		$6 == "-"  { print $1 "\t" $2 "\t" $3 "\t-\tmissing"; next }
		$5 != $6   { print $1 "\t" $2 "\t" $3 "\t" $4 "\tCRC differs" }' >"$TMP/diff"
nnew=$(LC_ALL=C join -t "$(printf '\t')" -v 2 "$TMP/stock" "$TMP/ours" | wc -l)
nstock=$(wc -l <"$TMP/stock")
ncrc=$(grep -c 'CRC differs$' "$TMP/diff" || true)
nmiss=$(grep -c 'missing$' "$TMP/diff" || true)

log "ABI: ${OURS} against ${STOCK}"
if [ -s "$TMP/diff" ]; then
	{
		printf '%-40s %-10s %-10s %-10s %s\n' SYMBOL MODULE STOCK OURS PROBLEM
		awk -F'\t' '{
			printf "%-40s %-10s %-10s %-10s %s\n", $1, $2, $3, $4, $5
		}' "$TMP/diff"
	}
fi
log "ABI: $nstock stock exports: $((nstock - ncrc - nmiss)) same, $ncrc CRC differ, $nmiss missing; $nnew new export(s)"
if [ -s "$TMP/diff" ]; then
	log "ABI: FAIL: modules built against the stock KVM (kvmgt.ko) would not load, or would misread moved fields"
	exit 1
fi
log "ABI: OK"
