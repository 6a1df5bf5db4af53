#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# guest-run.sh PLAN [SKIP]: carry out a test plan that scripts/kbp-test
# wrote, reporting on stdout in the protocol of Documentation/testing.rst
# ("The host/guest protocol").  POSIX sh: it runs under busybox in the
# test VM, and as root on a real test host for make check-host.
#
# Plan lines, fields separated by single spaces:
#
#   deps DIR                  insmod irqbypass.ko and, on AMD, ccp.ko from
#                             DIR (the stock modules KVM depends on)
#   load ITEM SET DIR VERSION insmod kvm and the vendor module from DIR and
#                             check that kvm says VERSION ("none": the
#                             stock modules carry no version)
#   loaded ITEM SET DIR VERSION  the same check for modules loaded already
#   modprobe ITEM SET VERSION WHERE
#                             modprobe the vendor module as the installed
#                             system has it, check that modprobe finds kvm
#                             in a path that contains WHERE and that kvm
#                             says VERSION
#   builtin ITEM              check that KVM is built into this kernel
#   client ITEM MODULE        modprobe MODULE, a module of the distro that
#                             uses KVM's exports, from /lib/modules; it
#                             must load and hold kvm; then rmmod what
#                             the modprobe loaded
#   unload                    rmmod the vendor module and kvm
#   test ITEM TIMEOUT SKIPEXITS RETRIES OUTPUT PARAMS BINARY [ARGS...]
#
# A test's SKIPEXITS are the exit statuses that mean "skipped" (comma
# separated), RETRIES how many more times a failed run (not a timeout)
# is repeated before it counts, OUTPUT says which of its output to
# report ("all", or "failures": the last 40 lines of a failure) and
# PARAMS the KVM module parameters it needs ("kvm_amd.npt=0,...", "-"
# for none).  Items up to
# SKIP were reported by an earlier boot of the same run: tests among them
# are not run again, loads are done but not reported.
# No globbing: plan fields and parameters are words, never patterns.
set -uf
PLAN=$1
SKIP=${2:-0}
LOG=$(mktemp) || exit 1
# shellcheck source=scripts/guest-lib.sh
. "$(dirname "$0")/guest-lib.sh"

vendor=$(kvm_vendor_module)
vmod=$(echo "$vendor" | tr - _)
# The directory KVM's modules were loaded from; "none" when built in.
moddir=none

now() { cut -d. -f1 /proc/uptime; }

# result ITEM STATUS SECS [NOTE...]
result() {
	item=$1
	shift
	[ "$item" -le "$SKIP" ] || echo "RESULT $item $*"
}

# check_loaded ITEM SET VERSION [NOTE]: KVM and this CPU's vendor module
# are loaded and kvm is the one expected.
check_loaded() {
	have=$(cat /sys/module/kvm/version 2>/dev/null || echo none)
	if [ "$have" = "$3" ] && [ -d "/sys/module/$vmod" ]; then
		result "$1" pass 0 "kvm $have, $vendor${4:+, $4}"
	else
		result "$1" fail 0 "kvm version '$have', expected '$3' ($vendor)"
	fi
}

# mark SET: the host splits the kernel log at this line to judge each
# module set on its own.
mark() {
	echo "kvm-backport: testing $1 modules" >/dev/kmsg
}

# params_hold "mod.param=value ...": whether the loaded KVM already has
# these values (booleans as sysfs shows them, Y or N).
params_hold() {
	for p in $1; do
		mod=${p%%.*}
		rest=${p#*.}
		cur=$(cat "/sys/module/$mod/parameters/${rest%%=*}" 2>/dev/null)
		want=${rest#*=}
		case $want in
		0|n|N) [ "$cur" = N ] && want=N ;;
		1|y|Y) [ "$cur" = Y ] && want=Y ;;
		esac
		[ "$cur" = "$want" ] || return 1
	done
}

# reload_kvm "mod.param=value ...": load kvm and the vendor module again
# from $moddir with these parameters on top of $KVM_PARAMS and
# $VENDOR_PARAMS (make check-host's; none in the test VM); "" loads
# them as they were.  Says why when it cannot.
reload_kvm() {
	kvm_args=${KVM_PARAMS:-}
	vendor_args=${VENDOR_PARAMS:-}
	for p in $1; do
		case ${p%%.*} in
		kvm) kvm_args="$kvm_args ${p#*.}" ;;
		"$vmod") vendor_args="$vendor_args ${p#*.}" ;;
		esac
	done
	if [ "$moddir" = none ]; then
		echo "KVM is built in and its parameters do not hold (the kernel command line was to set them)"
		return 1
	fi
	for m in "$vmod" kvm; do
		if [ -d "/sys/module/$m" ] && ! rmmod "$m"; then
			echo "cannot load KVM with '$1': $m does not unload"
			return 1
		fi
	done
	# shellcheck disable=SC2086 # one word per parameter
	if insmod "$moddir/kvm.ko" $kvm_args &&
	   insmod "$moddir/$vendor.ko" $vendor_args; then
		return 0
	fi
	echo "cannot load KVM with '$1'"
	return 1
}

# run_test ITEM TIMEOUT SKIPEXITS RETRIES OUTPUT PARAMS BINARY [ARGS...]
run_test() {
	item=$1 limit=$2 skips=$3 retries=$4 output=$5 params=$6 bin=$7
	shift 7
	[ "$item" -gt "$SKIP" ] || return 0
	echo "@@run $item"
	[ "$params" != - ] || params=
	params=$(echo "$params" | tr , ' ')
	if [ ! -x "$bin" ]; then
		result "$item" fail 0 "$bin not built"
		return 0
	fi
	# A parameter of the other vendor's module: not this CPU's test
	# (checked first: a built-in kernel shows both vendors' parameters).
	for p in $params; do
		case ${p%%.*} in
		kvm|"$vmod") ;;
		*) result "$item" skip 0 "needs $p: this CPU runs $vendor"
		   return 0 ;;
		esac
	done
	reloaded=
	if [ -n "$params" ] && ! params_hold "$params"; then
		if ! why=$(reload_kvm "$params"); then
			result "$item" fail 0 "needs $params: $why"
			[ "$moddir" = none ] || reload_kvm "" >/dev/null
			return 0
		fi
		reloaded=1
	fi
	attempt=1 failed='' secs=0
	while :; do
		start=$(now)
		timeout -s KILL "$limit" "$bin" "$@" </dev/null >"$LOG" 2>&1
		rc=$?
		# All attempts' time: the result's is the test's cost.
		secs=$(( secs + $(now) - start ))
		note=
		case ",$skips," in
		*",$rc,"*)
			status=skip
			# kselftest's skip line says why ("1..0 # SKIP
			# reason" or "...: Requirement not met: ...").
			note=$(grep -i -m 1 -e 'skip' -e 'requirement not met' "$LOG" |
				sed -e 's/^.*SKIP *//' -e 's/^[[:space:]-]*//' | cut -c1-120) ;;
		*)	case $rc in
			0)	status=pass ;;
			137)	status=timeout; note="killed after ${limit}s" ;;
			*)	status=fail; note="exit $rc" ;;
			esac ;;
		esac
		case $output:$status in
		all:*) cut -c1-300 "$LOG" | sed 's/^/#   /' ;;
		*:fail|*:timeout) cut -c1-300 "$LOG" | tail -n 40 | sed 's/^/#   /' ;;
		esac
		# A known defect of the test bed, not of KVM, fails the test
		# now and then (settings.conf says which and why): run it
		# again, and say so in the result, never silently.
		if [ "$status" != fail ] || [ "$attempt" -gt "$retries" ]; then
			break
		fi
		echo "# attempt $attempt failed ($note), running it again"
		failed="$failed${failed:+, }attempt $attempt: $note"
		attempt=$((attempt + 1))
	done
	if [ -n "$failed" ]; then
		note="${note:+$note; }after $failed"
	fi
	# Back to the parameters the tests after this one expect; if that
	# fails, so does this test.
	if [ -n "$reloaded" ] && ! why=$(reload_kvm ""); then
		note="$why (after the test, which gave $status${note:+: $note})"
		status=fail
	fi
	result "$item" "$status" "$secs" "$note"
}

# system_load ITEM SET VERSION WHERE: load KVM the way the installed
# system does, through depmod's search order.
system_load() {
	mark "$2"
	path=$(modinfo -n kvm 2>&1)
	case $path in
	*"$4"*) ;;
	*)	result "$1" fail 0 "modprobe would load kvm from '$path', expected $4"
		return 0 ;;
	esac
	if ! out=$(modprobe "$vendor" 2>&1); then
		result "$1" fail 0 "modprobe $vendor: $out"
		return 0
	fi
	moddir=$(dirname "$path")
	check_loaded "$1" "$2" "$3" "$path"
}

# client ITEM MODULE: with MODVERSIONS, MODULE loads only if every KVM
# export it uses has the CRC it was built against; holding kvm shows it
# bound to the KVM the plan loaded.
client() {
	before=$(cut -d' ' -f1 /proc/modules)
	if out=$(modprobe "$2" 2>&1) && [ -e "/sys/module/kvm/holders/$2" ]; then
		result "$1" pass 0 "$2 loaded on kvm $(cat /sys/module/kvm/version 2>/dev/null || echo stock)"
	else
		why=$(dmesg | grep -e "$2" -e disagrees -e 'Unknown symbol' | tail -n 2 | tr '\n' ' ')
		result "$1" fail 0 "modprobe $2: ${out:-it does not hold kvm} $why"
	fi
	# /proc/modules lists the newest first: remove in that order what
	# the modprobe added.
	cut -d' ' -f1 /proc/modules | while read -r m; do
		echo "$before" | grep -qx "$m" || rmmod "$m"
	done
}

# shellcheck disable=SC2086 # plan fields are single words
while read -r op args; do
	set -- $args
	case $op in
	deps)
		insmod "$1/irqbypass.ko"
		[ "$vendor" != kvm-amd ] || insmod "$1/ccp.ko" ;;
	load)
		moddir=$3
		mark "$2"
		insmod "$3/kvm.ko" && insmod "$3/$vendor.ko"
		check_loaded "$1" "$2" "$4" ;;
	loaded)
		moddir=$3
		mark "$2"
		check_loaded "$1" "$2" "$4" ;;
	modprobe)
		system_load "$@" ;;
	builtin)
		moddir=none
		mark builtin
		# A built-in kvm has a /sys/module entry but no initstate.
		if [ -c /dev/kvm ] && [ -d "/sys/module/$vmod" ] &&
		   [ ! -e /sys/module/kvm/initstate ]; then
			result "$1" pass 0 "$vendor, $(uname -r)"
		else
			result "$1" fail 0 "no built-in KVM with $vendor (/dev/kvm, /sys/module/$vmod)"
		fi ;;
	unload)
		# kmem_cache_destroy() reports objects the tests leaked.  One
		# module at a time: a test killed while it reloaded KVM may have
		# left kvm without its vendor module, and kvm must still go.
		for m in "$vmod" kvm; do
			[ ! -d "/sys/module/$m" ] || rmmod "$m"
		done ;;
	client)
		client "$@" ;;
	test)
		run_test "$@" ;;
	*)
		echo "# guest-run.sh: unknown plan line '$op $args'" ;;
	esac
done <"$PLAN"
rm -f "$LOG"
