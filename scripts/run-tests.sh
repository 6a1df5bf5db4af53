#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# run-tests.sh SET LIST BINDIR [TIMEOUT]
#
# Run the selftests named in LIST from BINDIR, each under a timeout
# (seconds, default 300).  LIST has one test per line, "binary [args...]",
# or "name: [module.param=value...] binary [args...]" to run one binary
# under several names, optionally with KVM module parameters; '#' starts
# a comment.  Prints one machine-readable line per test:
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

# param_value MODULE PARAM: the parameter's value as sysfs shows it, or
# nothing if the module is not there.
param_value() {
	cat "/sys/module/$1/parameters/$2" 2>/dev/null
}

# params_hold "mod.param=value ...": whether the loaded modules already
# have these values (booleans as sysfs shows them, Y or N).  Only kvm's
# and this CPU's vendor module count: a built-in kernel shows the other
# vendor's parameters too.
params_hold() {
	vmod=$(kvm_vendor_module | tr - _)
	for p in $1; do
		mod=${p%%.*}
		case $mod in
		kvm|"$vmod") ;;
		*) return 1 ;;
		esac
		rest=${p#*.}
		cur=$(param_value "$mod" "${rest%%=*}")
		want=${rest#*=}
		case $want in
		0|n|N) [ "$cur" = N ] && want=N ;;
		1|y|Y) [ "$cur" = Y ] && want=Y ;;
		esac
		[ "$cur" = "$want" ] || return 1
	done
}

# reload_kvm "mod.param=value ...": load kvm and the vendor module again
# from $KBP_MODULE_DIR, with these parameters on top of the ones they
# were loaded with ($KVM_PARAMS and $VENDOR_PARAMS, as scripts/load.sh
# takes them; none in the test VM).  "": back to those.  Prints why it
# cannot, and fails, when KVM is built in or there is no module directory.
reload_kvm() {
	vendor=$(kvm_vendor_module)
	vmod=$(echo "$vendor" | tr - _)
	kvm_args=${KVM_PARAMS:-}
	vendor_args=${VENDOR_PARAMS:-}
	for p in $1; do
		case ${p%%.*} in
		kvm) kvm_args="$kvm_args ${p#*.}" ;;
		"$vmod") vendor_args="$vendor_args ${p#*.}" ;;
		*) echo "${p%%.*} is not loaded here ($vendor)"; return 1 ;;
		esac
	done
	# The debug tier's second boot: the kernel command line had them.
	if [ -n "${KBP_PARAMS_ON_CMDLINE:-}" ]; then
		echo "cannot load KVM with '$1': the kernel command line did not set them"
		return 1
	fi
	# A built-in kvm has a /sys/module entry but no initstate.
	if [ -z "${KBP_MODULE_DIR:-}" ] ||
	   { [ -d /sys/module/kvm ] && [ ! -e /sys/module/kvm/initstate ]; }; then
		echo "KVM is built in (the debug tier runs this again with the parameters on its command line), or KBP_MODULE_DIR does not name its modules"
		return 1
	fi
	for m in "$vmod" kvm; do
		if [ -d "/sys/module/$m" ] && ! rmmod "$m"; then
			echo "cannot load KVM with '$1': $m does not unload"
			return 1
		fi
	done
	# shellcheck disable=SC2086 # one word per parameter
	if insmod "$KBP_MODULE_DIR/kvm.ko" $kvm_args &&
	   insmod "$KBP_MODULE_DIR/$vendor.ko" $vendor_args; then
		return 0
	fi
	echo "cannot load KVM with '$1'"
	return 1
}

list_entries "$LIST" | while read -r name args; do
	params=
	case $name in
	*:)	name=${name%:}
		# Leading "module.param=value" words are module parameters.
		while :; do
			bin=${args%% *}
			case $bin in
			[a-z]*.*=*) params="$params $bin"
				    args=${args#"$bin"}
				    args=${args# } ;;
			*) break ;;
			esac
		done
		args=${args#"$bin"} ;;
	*)	bin=$name ;;
	esac
	count_item && continue
	echo "# run $SET/$name (${TIMEOUT}s):$params $bin$args"
	if [ ! -x "$BINDIR/$bin" ]; then
		echo "RESULT $SET $name fail 0 $bin not built"
		continue
	fi
	reloaded=
	if [ -n "$params" ] && ! params_hold "$params"; then
		if ! why=$(reload_kvm "$params"); then
			# Not this machine's fault or the test's: say why.
			case $why in
			"cannot load"*)
				status=fail
				# Back to the defaults for the tests after this one.
				reload_kvm "" >/dev/null ;;
			*) status=skip ;;
			esac
			echo "RESULT $SET $name $status 0 needs$params: $why"
			continue
		fi
		reloaded=1
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
	# Back to the defaults; if that fails, so does the test that
	# changed them, as the ones after it would run on the wrong KVM.
	if [ -n "$reloaded" ] && ! why=$(reload_kvm ""); then
		note="$why (after the test, which gave $status${note:+: $note})"
		status=fail
	fi
	echo "RESULT $SET $name $status $secs ${note:-}"
done
rm -f "$LOG"
