#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# uapi-numbers.sh OURS BASE REF...
#
# Check the numbers our patches add to the uapi <linux/kvm.h> against the
# uapi headers of other kernels.  OURS is the patched header, BASE the
# distro's pristine one: every KVM_* name that OURS defines and BASE does
# not is ours.  REF... are the headers of every other kernel we must not
# collide with (each may be followed by a comma and a label).
#
# Each of our names is put in its number space: capabilities (KVM_CAP_*),
# exit reasons (KVM_EXIT_*), memslot flags (KVM_MEM_*), memory fault exit
# flags (KVM_MEMORY_EXIT_FLAG_*) and ioctls (_IO*(KVMIO, nr, ...), by nr,
# whatever their size and direction).  A reference header that uses the
# same number in the same space under another name is a collision; one
# that defines the same name must give it the same number (that is how
# KVM_EXIT_MEMORY_FAULT keeps upstream's, and how our numbers stay the
# same on every series: the other series' patched headers are references
# too).  Prints a table of our numbers and exits non-zero on any
# collision.
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 OURS BASE REF[,label]..." >&2; exit 2; }
OURS=$1 BASE=$2
shift 2

# defs FILE: "space name value" for every KVM_* number the header defines,
# with continuation lines joined and values evaluated to decimal.
defs() {
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1" | awk '
	function num(v,   i, n) {	# decimal or 0x hex, in any awk
		gsub(/[ \t]/, "", v)
		if (v !~ /^0[xX]/)
			return v + 0
		n = 0
		for (i = 3; i <= length(v); i++)
			n = n * 16 + index("0123456789abcdef", tolower(substr(v, i, 1))) - 1
		return n
	}
	function val(v,   m) {
		gsub(/[()]/, " ", v)
		if (match(v, /1U?L?L? *<< *[0-9]+/)) {
			m = substr(v, RSTART, RLENGTH)
			sub(/.*<< */, "", m)
			return 2 ^ m
		}
		if (v ~ /^ *(0x[0-9a-fA-F]+|[0-9]+) *$/)
			return num(v)
		return ""
	}
	$1 == "#define" && $2 ~ /^KVM_/ {
		name = $2
		rest = $0
		sub(/^#define[ \t]+[A-Z0-9_]+[ \t]*/, "", rest)
		sub(/[ \t]*\/\*.*$/, "", rest)
		if (rest ~ /_IO[RW]*[ \t]*\([ \t]*KVMIO[ \t]*,/) {
			nr = rest
			sub(/^[^,]*,[ \t]*/, "", nr)
			sub(/[ \t]*[,)].*$/, "", nr)
			printf "ioctl %s %d\n", name, num(nr)
			next
		}
		v = val(rest)
		if (v == "")
			next
		if (name ~ /^KVM_CAP_/)
			space = "cap"
		else if (name ~ /^KVM_MEMORY_EXIT_FLAG_/)
			space = "memory_fault.flags"
		else if (name ~ /^KVM_EXIT_/ && rest !~ /<</)
			space = "exit_reason"
		else if (name ~ /^KVM_MEM_/ && rest ~ /<</)
			space = "memslot_flags"
		else
			next
		printf "%s %s %.0f\n", space, name, v
	}'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

defs "$OURS" | sort -u >"$tmp/ours"
defs "$BASE" | awk '{ print $2 }' | sort -u >"$tmp/base"
awk 'NR == FNR { base[$1] = 1; next } !($2 in base)' "$tmp/base" "$tmp/ours" \
	>"$tmp/new"
[ -s "$tmp/new" ] || { echo "uapi-numbers: $OURS adds no KVM numbers"; exit 0; }

labels=()
i=0
for ref in "$@"; do
	file=${ref%%,*}
	label=${ref#*,}
	[ "$label" != "$ref" ] || label=$(basename "$(dirname "$file")")
	[ -r "$file" ] || { echo "uapi-numbers: cannot read $file" >&2; exit 2; }
	defs "$file" | sed "s/^/$i /" >>"$tmp/refs"
	labels+=("$label")
	i=$((i + 1))
done

printf '%-36s %-20s %-10s %s\n' name space number "checked against: ${labels[*]}"
rc=0
while read -r space name value; do
	verdict=$(awk -v s="$space" -v n="$name" -v v="$value" '
		$2 == s && $3 == n && $4 != v { bad = bad " " $1 ":" n "=" $4 }
		$2 == s && $3 == n && $4 == v { same = same " " $1 ":" }
		$2 == s && $3 != n && $4 == v { bad = bad " " $1 ":" $3 }
		END {
			if (bad != "")
				print "COLLISION" bad
			else if (same != "")
				print "same in" same
			else
				print "unused"
		}' "$tmp/refs")
	case $verdict in
	COLLISION* | same*)
		case $verdict in COLLISION*) rc=1 ;; esac
		for j in "${!labels[@]}"; do
			verdict=${verdict// $j:/ ${labels[$j]}:}
		done
		verdict=${verdict//: / }
		verdict=${verdict%:}
		;;
	esac
	case $space in
	ioctl) shown=$(printf '0x%02x' "$value") ;;
	*flags) shown=$(awk -v v="$value" 'BEGIN { printf "1<<%d", log(v) / log(2) + 0.5 }') ;;
	*) shown=$value ;;
	esac
	printf '%-36s %-20s %-10s %s\n' "$name" "$space" "$shown" "$verdict"
done <"$tmp/new"
exit $rc
