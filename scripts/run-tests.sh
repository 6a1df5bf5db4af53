#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# run-tests.sh SET LIST BINDIR [TIMEOUT]
#
# Run the selftests named in LIST from BINDIR, each under a timeout
# (seconds, default 300).  LIST has one test per line, "binary [args...]",
# or "name: binary [args...]" to run one binary under several names; '#'
# starts a comment.  Prints one machine-readable line per test:
#
#   RESULT <set> <name> <pass|fail|skip|timeout> <seconds> <note>
#
# preceded by "# run <set>/<name> (<timeout>s): <binary> <args>" and
# followed by the test's output as "# " comment lines (all of it for our
# own tests, the last 40 lines of a failure; long lines cut).  POSIX sh: it runs under busybox in
# the test VM and under bash on a real host (make check-host);
# scripts/tap.awk turns the lines into TAP.
#
# Resuming after a test wedged the VM: with KBP_COUNTER naming a counter
# file shared by all runs of one boot, the first KBP_SKIP tests (counted
# across runs) are skipped silently; an earlier boot ran them.
set -u
SET=$1
LIST=$2
BINDIR=$3
TIMEOUT=${4:-300}
LOG=${TMPDIR:-/tmp}/run-tests.$$
. "$(dirname "$0")/guest-lib.sh"

now() { cut -d. -f1 /proc/uptime; }

list_entries "$LIST" | while read -r name args; do
	case $name in
	*:)	name=${name%:}
		bin=${args%% *}
		args=${args#"$bin"} ;;
	*)	bin=$name ;;
	esac
	count_item && continue
	echo "# run $SET/$name (${TIMEOUT}s): $bin$args"
	if [ ! -x "$BINDIR/$bin" ]; then
		echo "RESULT $SET $name fail 0 $bin not built"
		continue
	fi
	start=$(now)
	# shellcheck disable=SC2086 # args are split on purpose
	timeout -s KILL "$TIMEOUT" "$BINDIR/$bin" $args </dev/null >"$LOG" 2>&1
	rc=$?
	secs=$(( $(now) - start ))
	note=
	case $rc in
	0)	status=pass ;;
	4)	status=skip
		# kselftest's skip line says why ("1..0 # SKIP reason" or
		# "...: Requirement not met: ...").
		note=$(grep -i -m 1 -e 'skip' -e 'requirement not met' "$LOG" |
			sed -e 's/^.*SKIP *//' -e 's/^[[:space:]-]*//' | cut -c1-120) ;;
	137)	status=timeout; note="killed after ${TIMEOUT}s" ;;
	*)	status=fail; note="exit $rc" ;;
	esac
	case "$SET:$status" in
	*/backport:*|backport:*|*/bench:*)
		cut -c1-300 "$LOG" | sed 's/^/#   /' ;;
	*:fail|*:timeout)
		cut -c1-300 "$LOG" | tail -n 40 | sed 's/^/#   /' ;;
	esac
	echo "RESULT $SET $name $status $secs ${note:-}"
done
rm -f "$LOG"
