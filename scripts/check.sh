#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check.sh [default|parity|debug|bench]
#
# Test our KVM in QEMU and report TAP.  Three tiers (Documentation/
# testing.rst):
#
#   modules  the target's stock Debian kernel with our modules and the KVM
#            selftests in an initramfs: our selftests
#            (tools/selftests/backport.list) and the upstream regression
#            list (tools/selftests/<series>/upstream.list)
#   kunit    our KUnit suites (tests/kunit/), on a kernel built from the
#            same source with our series in tree (scripts/kunit.sh)
#   debug    that same kernel, which has KASAN, lockdep, work-object
#            debugging and kmemleak and our KVM built in, running our
#            selftests
#
# Modes:
#   default  the tiers in KBP_TIERS (default: all three)
#   debug    the debug tier only (make check-debug)
#   parity   every upstream selftest that builds, on the stock modules and
#            then on ours in the same boot, and a side-by-side table
#   bench    the benchmarks of tools/selftests/bench.list (our selftest
#            binaries with benchmark arguments), on the stock modules and
#            then on ours in the same boot; their "BENCH ..." lines are
#            printed at the end.  Figures, not pass/fail: a benchmark fails
#            only if it cannot run.
#
# Exits non-zero on any failed test, a guest that does not finish, or a
# guest kernel log with an oops, BUG, WARN, lockdep, KASAN, ODEBUG or
# kmemleak report or KVM bug.
#
# Environment: KBP_TIERS (tiers of the default mode, e.g. "modules
# debug"; NO_KUNIT=1 and NO_DEBUG=1 drop one), KBP_ACCEL=tcg|kvm (default:
# kvm when /dev/kvm boots the test VM, else tcg), KBP_TIMEOUT (seconds for the
# whole VM run of a tier), KBP_ONLY=<list file> (only that list of our
# selftests, no upstream ones), KBP_TCG_THREADS=multi (make bench on
# multi-threaded TCG).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The tiers of make check: all three (the debug tier boots the kernel
# the KUnit tier built, so it adds only its own run).
DEFAULT_TIERS="modules kunit debug"

MODE=${1:-default}
case $MODE in
default)
	TIERS=" $(echo "${KBP_TIERS:-$DEFAULT_TIERS}" | tr ',' ' ') "
	[ -z "${NO_KUNIT:-}" ] || TIERS=${TIERS/ kunit / }
	[ -z "${NO_DEBUG:-}" ] || TIERS=${TIERS/ debug / }
	for t in $TIERS; do
		case $t in
		modules|kunit|debug) ;;
		*) die "unknown tier '$t' in KBP_TIERS (modules, kunit, debug)" ;;
		esac
	done
	;;
parity|bench) TIERS=" modules " ;;
debug) TIERS=" debug " ;;
*) die "unknown check mode '$MODE'" ;;
esac
tier() { [[ $TIERS == *" $1 "* ]]; }

resolve_target
log "target: $KREL, mode: $MODE, tiers:$TIERS"
mkdir -p "$BUILD"
exec 9>"$BUILD/.check.lock"
flock -n 9 || die "another make check runs on $BUILD; wait for it to end"
build_for_tests
if tier kunit || tier debug; then
	# shellcheck disable=SC2046 # package lists
	need_pkgs $(kernel_build_pkgs)
	phase "build test kernel"
	"$TOP/scripts/kunit.sh" build
	phase_end
fi

phase "style"
# The target tree's checkpatch judges our patches and new files (run from
# that tree, not from our git checkout, where it would take the patch
# files for source files).
mapfile -t PATCH_FILES < <(ls "$TOP/patches/$KSERIES/"*.patch 2>/dev/null)
mapfile -t NEW_FILES < <(cd "$TOP" && find virt arch include tools/selftests \
	-name '*.[ch]' 2>/dev/null | sed "s|^|$TOP/|")
STYLE_OUT=$(cd "$BUILD/src" && {
	rc=0
	[ ${#PATCH_FILES[@]} -eq 0 ] ||
		scripts/checkpatch.pl --strict -q --no-tree "${PATCH_FILES[@]}" || rc=1
	scripts/checkpatch.pl --strict -q --no-tree -f "${NEW_FILES[@]}" || rc=1
	exit $rc
} 2>&1) && STYLE=pass || STYLE=fail
log "checkpatch --strict: ${#PATCH_FILES[@]} patches, ${#NEW_FILES[@]} new files: $STYLE"
[ "$STYLE" = pass ] || printf '%s\n' "$STYLE_OUT" | sed -n 1,60p
phase_end

phase "uapi numbers"
# Our additions to <linux/kvm.h> against the pristine header, Debian's
# 6.12 and the newest upstream Debian has; and a planted collision that
# the check must refuse.
UAPI_OUT=$("$TOP/scripts/check-uapi.sh" --control 2>&1) && UAPI_RC=0 || UAPI_RC=$?
printf '%s\n' "$UAPI_OUT"
phase_end

fetch_stock() {
	phase "fetch stock kernel"
	STOCK=$BUILD/stock
	ver=$(pkg_version "$HDR_PKG")
	if [ "$(cat "$STOCK/.version" 2>/dev/null)" != "$ver" ]; then
		rm -rf "$STOCK"
		mkdir -p "$STOCK"
		log "downloading linux-image-$KREL $ver (not installed)"
		dl() {
			(cd "$STOCK" && apt-get download -q -o APT::Sandbox::User=root \
				"linux-image-$KREL=$ver" >/dev/null 2>&1)
		}
		if ! dl; then
			[ "$(id -u)" -eq 0 ] || die "apt-get download linux-image-$KREL=$ver failed; run apt-get update"
			apt-get update -qq >/dev/null 2>&1
			dl || die "apt-get download linux-image-$KREL=$ver failed"
		fi
		dpkg-deb -x "$STOCK"/linux-image-*.deb "$STOCK/root"
		rm -f "$STOCK"/linux-image-*.deb
		echo "$ver" >"$STOCK/.version"
	fi
	KMOD=$STOCK/root/lib/modules/$KREL/kernel
	VMLINUZ=$STOCK/root/boot/vmlinuz-$KREL
	phase_end
}

# make_initramfs MODE: the initramfs of a run, and EXPECTED, the number
# of results the guest owes us.
make_initramfs() {
	local mode=$1
	phase "initramfs"
	LISTS=$TOP/tools/selftests
	RD=$BUILD/initramfs
	rm -rf "$RD"
	mkdir -p "$RD"/{bin,dev,proc,sys,tmp,modules/stock,modules/ours,tests/upstream,tests/backport,lists}
	cp /bin/busybox "$RD/bin/busybox"
	ln -s busybox "$RD/bin/sh"
	cp "$TOP/scripts/guest-init.sh" "$RD/init"
	cp "$TOP/scripts/run-tests.sh" "$TOP/scripts/guest-lib.sh" "$RD/"
	for m in virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm \
		 arch/x86/kvm/kvm-amd arch/x86/kvm/kvm-intel; do
		f=$KMOD/$m.ko
		[ -f "$f" ] || f=$f.xz
		case $f in
		*.xz) xz -dc "$f" >"$RD/modules/stock/$(basename "$m").ko" ;;
		*) cp "$f" "$RD/modules/stock/" ;;
		esac
	done
	cp "$BUILD"/modules/*.ko "$RD/modules/ours/"
	modinfo -F version "$RD/modules/ours/kvm.ko" >"$RD/modules/ours/version"

	# KBP_ONLY=<list>: run just that list of our tests (for development).
	if [ "$mode" = bench ]; then
		cp "${KBP_ONLY:-$LISTS/bench.list}" "$RD/lists/backport.list"
	else
		cp "${KBP_ONLY:-$LISTS/backport.list}" "$RD/lists/backport.list"
	fi
	cp "$BUILD"/selftests/backport/* "$RD/tests/backport/"
	# The entries that need KVM module parameters (see run-tests.sh): the
	# debug tier, whose KVM is built in, runs them in a boot of their own
	# with the parameters on the kernel command line.
	grep -E '^[^#:]+:[[:space:]]+[a-z0-9_]+\.[a-z0-9_]+=' "$RD/lists/backport.list" \
		>"$RD/lists/params.list" || true
	UPSTREAM_LIST=$RD/lists/upstream.list
	if [ -n "${KBP_ONLY:-}" ] || [ "$mode" = debug ] || [ "$mode" = bench ]; then
		: >"$UPSTREAM_LIST"
	elif [ "$mode" = parity ]; then
		# Every upstream test that built, with the arguments of the default
		# list where it has some (sized for software emulation).
		defaults=$(list_entries "$LISTS/$KSERIES/upstream.list")
		for t in "$BUILD"/selftests/upstream/*; do
			n=$(basename "$t")
			grep -m 1 "^$n\([[:space:]]\|$\)" <<<"$defaults" || echo "$n"
		done >"$UPSTREAM_LIST"
	else
		list_entries "$LISTS/$KSERIES/upstream.list" >"$UPSTREAM_LIST"
	fi
	while read -r n _; do
		[ -x "$BUILD/selftests/upstream/$n" ] ||
			die "$n is in $KSERIES/upstream.list but was not built"
		cp "$BUILD/selftests/upstream/$n" "$RD/tests/upstream/"
	done <"$UPSTREAM_LIST"
	# Results the guest owes us: per module set, the load check and one per
	# listed test.  Fewer means a list was cut short.
	per_set=$(( 1 + $(list_entries "$RD/lists/backport.list" | wc -l) + $(wc -l <"$UPSTREAM_LIST") ))
	case $mode in
	parity|bench) EXPECTED=$((2 * per_set)) ;;
	*) EXPECTED=$per_set ;;
	esac
	(cd "$RD" && find . | cpio -o -H newc --quiet) >"$BUILD/initramfs.cpio"
	log "initramfs: $(du -m "$BUILD/initramfs.cpio" | cut -f1) MiB"
	phase_end
}

# qemu_boot ACCEL APPEND TIMEOUT: one boot of the test VM, its console
# (kernel log) in console.log and its results (ttyS1) in results.log.  It
# is killed when it runs past TIMEOUT seconds or when its results stop
# moving for longer than the running test's own timeout allows (a test
# that wedged the whole VM, which the guest cannot time out itself).
qemu_boot() {
	local accel=$1 append=$2 timeout=$3 qpid start idle limit mon=$BUILD/monitor
	: >"$BUILD/console.log"
	rm -f "$mon.in" "$mon.out"
	mkfifo "$mon.in" "$mon.out"
	# slub_nomerge keeps KVM's slab caches apart from others, so that
	# kmem_cache_destroy() at rmmod reports any object a test leaked.
	qemu-system-x86_64 \
		-machine q35 -accel "$accel" -cpu max -smp 2 -m 4G \
		-kernel "$VMLINUZ" -initrd "$BUILD/initramfs.cpio" \
		-append "console=ttyS0 panic=-1 oops=panic sysrq_always_enabled slub_nomerge $append" \
		-display none -monitor "pipe:$mon" -no-reboot \
		-serial "file:$BUILD/console.log" \
		-serial "file:$BUILD/results.log" </dev/null &
	qpid=$!
	# Hold both ends of the monitor pipes so QEMU never blocks on them.
	exec 7<>"$mon.in" 8<>"$mon.out"
	start=$(date +%s)
	while kill -0 "$qpid" 2>/dev/null; do
		sleep 2
		idle=$(( $(date +%s) - $(stat -c %Y "$BUILD/results.log") ))
		limit=$(sed -n 's/^# run .* (\([0-9]*\)s):.*/\1/p' "$BUILD/results.log" | tail -n 1)
		limit=$(( ${limit:-120} + 90 ))
		if [ "$idle" -gt "$limit" ] || [ $(( $(date +%s) - start )) -gt "$timeout" ]; then
			# Wedged: have the kernel show what every CPU and every
			# blocked task is doing before the VM goes.
			printf 'sendkey alt-sysrq-l\n' >&7 || true
			sleep 5
			printf 'sendkey alt-sysrq-w\n' >&7 || true
			sleep 5
			kill -9 "$qpid" 2>/dev/null || true
			break
		fi
	done
	wait "$qpid" 2>/dev/null || true
	exec 7>&- 8<&-
	rm -f "$mon.in" "$mon.out"
}

# pick_accel: the accelerator of the test VMs (ACCEL), once; it probes
# with the stock kernel and the initramfs, which must be there.
pick_accel() {
	[ -z "${ACCEL_PICKED:-}" ] || return 0
	ACCEL_PICKED=1
	ACCEL=${KBP_ACCEL:-}
	if [ -z "$ACCEL" ]; then
		ACCEL=tcg
		if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
			log "probing whether /dev/kvm can run the test VM"
			: >"$BUILD/results.log"
			qemu_boot kvm "kbp.mode=probe" 60 >/dev/null 2>&1
			# Only if the guest got to the end and has VMX or SVM to test.
			if grep -q '^@@done' "$BUILD/results.log" &&
				grep -q '^# mode .* vendor kvm-' "$BUILD/results.log"; then
				ACCEL=kvm
			fi
		fi
	fi
	# Multi-threaded TCG was seen to wedge the whole VM (no sysrq answer)
	# when a SCHED_FIFO vCPU thread is killed while its nested guest spins,
	# and, in benchmarks, to triple-fault nested guests on the stock
	# modules as on ours and to reset the whole VM; one host thread for
	# both guest CPUs is slower but dependable.  KBP_TCG_THREADS=multi
	# lets benchmarks try it anyway.
	if [ "$ACCEL" = tcg ]; then
		ACCEL=tcg,thread=single
		[ "$MODE" != bench ] || [ "${KBP_TCG_THREADS:-}" != multi ] ||
			ACCEL=tcg,thread=multi
	fi
}

# run_vm KERNEL MODE PREFIX TIMEOUT: boot KERNEL with the initramfs as
# often as it takes to run MODE's tests (see below), then add the closing
# results of the run, named under PREFIX ("" or e.g. "debug/").
run_vm() {
	local kernel=$1 mode=$2 prefix=$3 timeout=$4 append=${5:-}
	local deadline base boot finished done_items bpid hung got f part set bad

	deadline=$(( $(date +%s) + timeout ))
	base=$(wc -l <"$RES")
	: >"$KLOG"
	# A test that wedges the VM is reported as "hang" and the VM rebooted
	# to go on with the tests after it (at most 8 times).
	boot=0
	finished=
	while [ $boot -lt 8 ] && [ "$(date +%s)" -lt "$deadline" ]; do
		boot=$((boot + 1))
		done_items=$(( $(wc -l <"$RES") - base ))
		log "boot $boot: ${kernel#"$TOP"/} in QEMU ($ACCEL, 2 vCPUs, -cpu max), $done_items results so far"
		: >"$BUILD/results.log"
		VMLINUZ=$kernel qemu_boot "$ACCEL" "kbp.mode=$mode kbp.skip=$done_items $append" \
			$((deadline - $(date +%s))) &
		bpid=$!
		stdbuf -oL tail -n +1 -F --pid=$bpid "$BUILD/results.log" 2>/dev/null | tap
		wait $bpid || true
		# The kernel log the guest dumped, or the console of a guest that
		# died before it could.
		if grep -q '^@@dmesg' "$BUILD/results.log"; then
			sed -n '/^@@dmesg/,/^@@done/p' "$BUILD/results.log" | tr -d '\r'
		else
			cat "$BUILD/console.log"
		fi >>"$KLOG"
		if grep -q '^@@done' "$BUILD/results.log"; then
			finished=1
			break
		fi
		hung=$(awk '/^# run /{ r = $3 } /^RESULT /{ r = "" } END { print r }' "$BUILD/results.log")
		[ -n "$hung" ] || break
		echo "RESULT ${hung%/*} ${hung##*/} hang 0 the VM stopped responding in this test; rebooted to go on" | tap
	done

	# What the test lists did not say: whether the guest finished and
	# reported on every test, and whether its kernel log is clean.
	got=$(( $(wc -l <"$RES") - base ))
	{
		if [ -n "$finished" ]; then
			echo "RESULT ${prefix}vm finished pass 0"
		else
			echo "RESULT ${prefix}vm finished fail 0 the guest did not finish (timeout or crash); console: ${BUILD#"$TOP"/}/console.log"
		fi
		if [ "$got" -eq "$EXPECTED" ]; then
			echo "RESULT ${prefix}vm all-results pass 0 $got"
		else
			echo "RESULT ${prefix}vm all-results fail 0 $got results for $EXPECTED tests and load checks"
		fi
		# The guest marks in its kernel log which module set is loaded;
		# judge each part on its own ("vm" is boot, before any set), so
		# that in a parity run a report under the stock modules is not
		# held against ours, and one under ours is a regression.
		rm -f "$KLOG".part.*
		awk -v out="$KLOG.part." '
			/kvm-backport: testing [a-z]+ modules/ {
				for (i = 1; i <= NF; i++)
					if ($i == "testing")
						part = $(i + 1)
			}
			/Linux version/ { part = "" }
			{ print > (out (part == "" ? "vm" : part)) }
		' "$KLOG"
		for f in "$KLOG".part.*; do
			part=${f##*.part.}
			set=$prefix$part
			[ "$part" = vm ] || set=$prefix$part/vm
			bad=$("$TOP/scripts/scan-kernel-log.sh" <"$f" || true)
			if [ -z "$bad" ]; then
				echo "RESULT $set kernel-log-clean pass 0"
			else
				printf '%s\n' "$bad" | sort -u | sed -n '1,40s/^/#   /p'
				echo "RESULT $set kernel-log-clean fail 0 $(printf '%s\n' "$bad" | wc -l) report line(s) in the guest kernel log"
			fi
		done
	} | tap
}

# kunit_results JSON STATUS: kunit.py's results as result lines, one per
# test case, and one for the run (its exit STATUS, and that it ran any
# test at all).
kunit_results() {
	python3 - "$1" "$2" <<'PY'
import json, sys

status = {"PASS": "pass", "SKIP": "skip"}
cases = 0

def walk(group, suite):
    global cases
    for case in group.get("test_cases", []):
        cases += 1
        print("RESULT kunit/%s %s %s 0" % (suite, case["name"],
              status.get(case["status"], "fail")))
    for sub in group.get("sub_groups", []):
        walk(sub, sub["name"])

try:
    with open(sys.argv[1]) as f:
        walk(json.load(f), "top")
except (OSError, ValueError) as e:
    print("# no KUnit results: %s" % e)
rc = int(sys.argv[2])
if rc == 0 and cases:
    print("RESULT kunit run pass 0 %d test cases" % cases)
elif rc == 3:
    print("RESULT kunit run fail 0 kernel reports (KASAN, lockdep, WARN...) "
          "in the test kernel's log while %d test cases ran" % cases)
else:
    print("RESULT kunit run fail 0 kunit.py exit status %d, %d test cases"
          % (rc, cases))
PY
}

RES=$BUILD/results.$MODE
KLOG=$BUILD/kernel.log
: >"$RES"
echo "TAP version 13"

if tier modules; then
	fetch_stock
	make_initramfs "$MODE"
	pick_accel
	phase "boot and run tests"
	run_vm "$VMLINUZ" "$MODE" "" \
		"${KBP_TIMEOUT:-$([ "$MODE" = parity ] && echo 5000 || echo 2400)}"
	phase_end
fi

if tier kunit; then
	phase "kunit"
	krc=0
	"$TOP/scripts/kunit.sh" exec "$BUILD/kunit.json" >"$BUILD/kunit.log" 2>&1 || krc=$?
	# kunit.py's own report, as TAP comments.
	sed 's/^/# /' "$BUILD/kunit.log"
	kunit_results "$BUILD/kunit.json" "$krc" | tap
	phase_end
fi

if tier debug; then
	# The kernel of the KUnit tier, whose suites run once more at boot,
	# under the same checks.
	[ -n "${KMOD:-}" ] || fetch_stock
	make_initramfs debug
	pick_accel
	phase "debug kernel tests"
	KLOG=$BUILD/kernel-debug.log
	run_vm "$BUILD/kunit-obj/$TEST_KERNEL" debug debug/ "${KBP_TIMEOUT:-2400}"
	phase_end
	# The tests that need KVM module parameters, skipped above: once more
	# with every parameter they name on the kernel command line (one boot
	# for all: each vendor's tests skip on the other's CPUs).
	params=$(sed -n 's/^[^:]*:[[:space:]]*//p' "$BUILD/initramfs/lists/params.list" |
		 { grep -oE '^([a-z0-9_]+\.[a-z0-9_]+=[^[:space:]]+[[:space:]]*)+' || true; } |
		 tr -s '[:space:]' '\n' | sed '/^$/d' | sort -u | paste -sd ' ')
	# One boot for all: two values for one parameter cannot both hold.
	# shellcheck disable=SC2086 # one word per parameter
	dup=$(printf '%s\n' $params | sed 's/=.*//' | uniq -d)
	[ -z "$dup" ] || die "backport.list sets $dup to two values; the debug tier cannot run both in one boot"
	if [ -n "$params" ]; then
		phase "debug kernel tests with $params"
		EXPECTED=$(( 1 + $(wc -l <"$BUILD/initramfs/lists/params.list") ))
		KLOG=$BUILD/kernel-debug-params.log
		run_vm "$BUILD/kunit-obj/$TEST_KERNEL" debug-params debug-params/ \
			"${KBP_TIMEOUT:-2400}" "$params"
		phase_end
	fi
fi

{
	if [ "$STYLE" = pass ]; then
		echo "RESULT style checkpatch pass 0"
	else
		echo "RESULT style checkpatch fail 0 checkpatch --strict found problems (printed above)"
	fi
	case $UAPI_RC in
	0) echo "RESULT uapi numbers pass 0" ;;
	1) echo "RESULT uapi numbers fail 0 our uapi numbers collide (table above)" ;;
	3) echo "RESULT uapi numbers fail 0 the check missed a planted collision" ;;
	*) echo "RESULT uapi numbers fail 0 the reference headers could not be had" ;;
	esac
} | tap

echo "1..$(wc -l <"$RES")"

if [ "$MODE" = parity ]; then
	"$TOP/scripts/parity-table.sh" "$RES" || PARITY_BAD=1
fi
if [ "$MODE" = bench ]; then
	echo "# benchmark figures (stock modules, then ours):"
	sed -n 's/^#   BENCH /# BENCH /p' "$BUILD/results.log"
fi

phase_summary
summarize "$RES" "$MODE"
