#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# kbp-vmm-test: the reference VMM (kbp-vmm) with a real Linux guest, as
# make check runs it in the test VM of its vmm tier
# (tools/selftests/vmm.list).  Runs with busybox; needs the stock kernel image as
# "vmlinuz", kbp-vmm and kbp-vmm-guest.cpio next to this script.
#
#   kbp-vmm-test boot            boot the guest, snapshot it when it asks
#   kbp-vmm-test restore MODE    restore that snapshot with MODE; the guest
#                                must verify every byte
#   kbp-vmm-test smp MODE        the same with a guest of 2 vCPUs, booted
#                                to a snapshot of its own
#   kbp-vmm-test ws MODE         restore in MODE fetching the guest kernel's
#                                working set ahead (recorded by "restore
#                                MODE"): most of its stalls are gone
#   kbp-vmm-test outstanding     snapshot a restored VM while async #PFs
#                                are outstanding, restore that
#   kbp-vmm-test kill MODE       SIGKILL the VMM in the middle of a restore
#   kbp-vmm-test errors          misuse gets one line and its exit status
#   kbp-vmm-test unsupported     (stock modules) the modes they lack
#   kbp-vmm-test bench [FETCH_US]  make bench: every mode this KVM has,
#                                with FETCH_US per page (default 2000);
#                                one BENCH line per mode, and on our
#                                modules the table with the stock rows of
#                                the same boot
#
# The first command that needs the snapshot makes it, so each entry also
# runs alone.  Exit 0 passes; every failure says why on its last line.

DIR=$(cd "$(dirname "$0")" && pwd)
VMM=$DIR/kbp-vmm
WORK=${KBP_VMM_WORK:-/tmp/kbp-vmm}
BASE=$WORK/base
TRACE=/sys/kernel/debug/tracing
# Sized for software emulation: a 16 MiB buffer in a 192 MiB guest.
# noxsave: under QEMU's software emulation the nested guest's XSETBV does
# not reach KVM (CPUID 0xd keeps the size of x87 state only), so Linux's
# XSAVE size check WARNs at boot; with noxsave it uses FXSAVE.
BOOT_ARGS="--mem 192 --buf 16 --vcpus 1 --append noxsave"

fail() {
	echo "kbp-vmm-test: FAIL: $*"
	exit 1
}

# After a run that did not finish: the test VM's blocked tasks.
blocked() {
	grep -q "did not finish in time" "$1" || return 0
	echo 1 >/proc/sys/kernel/sysrq
	echo w >/proc/sysrq-trigger
	dmesg | tail -n 80
}

say() {
	echo "kbp-vmm-test: $*"
}

# field NAME FILE: NAME=value of the VMM's result line in FILE.
field() {
	sed -n "s/^kbp-vmm: result .* $1=\([^ ]*\).*/\1/p" "$2" | tail -n 1
}

# The guest's console must show no kernel problem; the VMM checks the
# same patterns and fails, this names the lines.
console_clean() {
	if grep -E '^\| .*(Kernel panic|Oops|WARNING:|BUG:|blocked for more than|soft lockup|Call Trace:)' "$1"; then
		fail "the guest's kernel log shows a problem (above)"
	fi
}

trace_on() {
	[ -d $TRACE/events/kvm ] || return 0
	echo 0 >$TRACE/tracing_on
	echo >$TRACE/trace
	echo 8192 >$TRACE/buffer_size_kb
	for e in kvm_async_pf_not_present kvm_async_pf_ready \
		 kvm_async_pf_completed kvm_async_pf_user_dropped; do
		[ ! -e $TRACE/events/kvm/$e/enable ] ||
			echo 1 >$TRACE/events/kvm/$e/enable
	done
	echo 1 >$TRACE/tracing_on
}

trace_off() {
	[ -d $TRACE/events/kvm ] || return 0
	echo 0 >$TRACE/tracing_on
	echo 0 >$TRACE/events/kvm/enable
}

# trace_count EVENT WORD: events of that name whose line has WORD.
trace_count() {
	trace_lines "$1" "$2" | grep -c ""
}

# trace_lines EVENT WORD: those events' lines.
trace_lines() {
	grep -v '^#' $TRACE/trace | grep -F "$1:" | grep -F "$2"
}

# boot_to PREFIX LOG [kbp-vmm options]: boot the guest until it asks for
# its snapshot, saved to PREFIX.  A boot that hangs or panics before the
# workload starts is booted again, at most twice: under software
# emulation the nested guest's kernel was seen to spin for good with
# interrupts off, and once, on the stock modules, to crash in
# start_kernel() with a reserved EFLAGS bit set (Documentation/vmm.rst,
# "The test bed"); the VMM's dump or the guest's panic stays in the log.
boot_to() {
	prefix=$1 blog=$2
	shift 2
	rc=0
	for attempt in 1 2 3; do
		say "booting the guest to its snapshot (attempt $attempt; about 30 s under TCG)"
		"$VMM" boot --kernel "$DIR/vmlinuz" --initrd "$DIR/kbp-vmm-guest.cpio" \
			--snapshot "$prefix" --quiet --timeout 120 "$@" >"$blog" 2>&1
		rc=$?
		cat "$blog"
		[ $rc -ne 4 ] || break
		if ! grep -q -e "did not finish in time" \
			-e "the guest reset itself" "$blog" ||
			grep -q "kbp-guest:" "$blog"; then
			fail "boot: kbp-vmm exited $rc, not 4 (snapshot saved)"
		fi
		say "the guest hung or panicked in its early boot; booting it again"
	done
	[ "$rc" -eq 4 ] ||
		fail "boot: the guest hung or panicked in its early boot $attempt times"
	console_clean "$blog"
	grep -q "kbp-guest: filled" "$blog" ||
		fail "boot: the guest did not fill its buffer before the snapshot"
}

base() {
	[ -f "$BASE.state" ] && [ -f "$BASE.mem" ] && return 0
	mkdir -p "$WORK"
	# shellcheck disable=SC2086
	boot_to "$BASE" "$BASE-boot.log" $BOOT_ARGS
}

# restore MODE LOG [kbp-vmm options]: a restore that must verify.
restore() {
	mode=$1 log=$2
	shift 2
	say "restoring in mode $mode"
	"$VMM" restore --snapshot "$BASE" --mode "$mode" --quiet --timeout 180 \
		"$@" >"$log" 2>&1
	rc=$?
	cat "$log"
	blocked "$log"
	[ $rc -eq 0 ] || fail "$mode: kbp-vmm exited $rc: the guest did not verify"
	console_clean "$log"
	grep -q "kbp-guest: verified .* ok" "$log" ||
		fail "$mode: no verification report from the guest"
}

# restore_check MODE: restore the snapshot at $BASE (booted with
# $BOOT_ARGS) in MODE; the guest verifies, and in the async modes the
# trace shows what the real guest took.  A lazy mode also records the
# guest kernel's working set to $BASE-MODE.ws (for "ws MODE").
restore_check() {
	mode=$1
	log=$BASE-$mode.log
	ws=""
	[ "$mode" = eager ] || ws="--record-ws $BASE-$mode.ws"
	base
	trace_on
	# shellcheck disable=SC2086 # $ws is empty or two words
	restore "$mode" "$log" $ws
	trace_off
	served=$(field served "$log")
	async=$(field async "$log")
	akern=$(field async_kernel "$log")
	skern=$(field sync_kernel "$log")
	say "$mode: pages served $served, async #PFs $async (at CPL 0: $akern), synchronous exits in guest kernel mode $skern"
	[ "${served:-0}" -gt 0 ] || fail "$mode: no page was served"
	if [ -n "$ws" ]; then
		rec=$(field ws_recorded "$log")
		say "$mode: working set (pages a VMM thread stalled on) $rec"
		[ "${rec:-0}" -gt 0 ] || fail "$mode: no stall recorded to $BASE-$mode.ws"
	fi
	case $mode in
	userfault-async|exitless)
		[ -d $TRACE/events/kvm ] || fail "no tracefs in the test VM"
		np=$(trace_count kvm_async_pf_not_present "type user")
		rd=$(trace_count kvm_async_pf_ready "type user")
		dr=$(trace_count kvm_async_pf_user_dropped "")
		say "$mode: trace: 'not present' (type user) $np, 'page ready' (type user) $rd, dropped $dr"
		[ "$async" -gt 0 ] || fail "$mode: the guest took no async #PF"
		[ "$np" -gt 0 ] || fail "$mode: no kvm_async_pf_not_present type user in the trace"
		[ "$akern" -eq 0 ] || fail "$mode: $akern async #PFs at guest CPL 0"
		[ "$skern" -gt 0 ] || fail "$mode: no fault of the guest kernel went synchronous"
		if [ "$mode" = exitless ]; then
			ring=$(field async_ring "$log")
			[ "$ring" -gt 0 ] || fail "exitless: no fault came on the ring"
		fi
		;;
	userfault-sync)
		[ "$async" -eq 0 ] || fail "userfault-sync: $async async #PFs"
		[ "$(field sync "$log")" -gt 0 ] || fail "userfault-sync: no exits"
		;;
	esac
}

case $1 in
boot)
	# A working set recorded on an earlier snapshot would be refused.
	rm -f "$BASE.state" "$BASE.mem" "$BASE"-*.ws
	base
	;;
restore)
	restore_check "$2"
	;;
smp)
	# Two vCPUs: the guest's tasks wait on tokens on either, and "page
	# ready" goes to the vCPU that took the fault.
	if [ "$(nproc)" -lt 2 ]; then
		echo "SKIP a guest of 2 vCPUs needs 2 CPUs in the test VM; TCG hangs on one (vmm.rst, The test bed)"
		exit 4
	fi
	BASE=$WORK/smp
	BOOT_ARGS="--mem 192 --buf 16 --vcpus 2 --append noxsave"
	restore_check "$2"
	case $2 in
	userfault-async|exitless)
		# The trace names the vCPU thread that took each fault.
		n=$(trace_lines kvm_async_pf_not_present "type user" |
			awk '{ print $1 }' | sort -u | wc -l)
		say "$2: vCPU threads that took async #PFs: $n"
		[ "$n" -ge 2 ] || fail "$2: async #PFs on $n vCPU thread(s), want both"
		;;
	esac
	;;
ws)
	# The working set the plain restore in MODE recorded, fetched ahead
	# by as many threads as serve faults: the pages a VMM thread still
	# stalls on (recorded again) must drop to under half.  Then misuse.
	mode=$2
	[ -f "$BASE-$mode.ws" ] || restore_check "$mode"
	rec=$(field ws_recorded "$BASE-$mode.log")
	restore "$mode" "$WORK/ws-$mode.log" --prefetch-ws "$BASE-$mode.ws" \
		--record-ws "$WORK/ws-$mode-left.ws"
	pre=$(field prefetched "$WORK/ws-$mode.log")
	left=$(field ws_recorded "$WORK/ws-$mode.log")
	say "$mode: stalled pages $rec without prefetch, $left with $pre pages prefetched in $(field prefetch_ms "$WORK/ws-$mode.log") ms; synchronous exits at CPL 0 $(field sync_kernel "$BASE-$mode.log") and $(field sync_kernel "$WORK/ws-$mode.log")"
	[ "${pre:-0}" -gt 0 ] || fail "$mode: nothing was prefetched"
	if [ -z "$left" ] || [ -z "$rec" ]; then
		fail "$mode: no working set figures in the result lines"
	fi
	[ $((left * 2)) -lt "$rec" ] ||
		fail "$mode: $left pages stalled with the working set prefetched, $rec without: want under half"
	# A working set of another snapshot (its id, bytes 8-15, changed),
	# one that is not a working set, one cut short: refused in one line.
	t=$WORK/ws-errors
	cp "$BASE-$mode.ws" "$t.ws"
	dd if=/dev/zero of="$t.ws" bs=1 seek=8 count=8 conv=notrunc 2>/dev/null
	for c in "another snapshot:$t.ws" "not a kbp-vmm working set:$BASE.state" \
		"restore --record-ws FILE makes one:/dev/null" "damaged:$t.cut"; do
		# The header and half a page number: no count fits that size.
		head -c 36 "$BASE-$mode.ws" >"$t.cut"
		"$VMM" restore --snapshot "$BASE" --mode "$mode" \
			--prefetch-ws "${c#*:}" >"$t.out" 2>"$t.err"
		rc=$?
		if ! { [ $rc -eq 2 ] && [ "$(wc -l <"$t.err")" -eq 1 ] &&
			grep -q "${c%%:*}" "$t.err"; }; then
			cat "$t.out" "$t.err"
			fail "--prefetch-ws ${c#*:}: exit $rc (want 2), or not one line with '${c%%:*}'"
		fi
		say "--prefetch-ws ${c#*:}: $(cat "$t.err")"
	done
	;;
outstanding)
	# A restore snapshotted again while the guest waits on tokens: the
	# fetches are slow (20 ms a page) and the VMM stops after 4 async
	# #PFs.  The second restore must wake the waiting guest tasks.
	base
	say "restoring with slow fetches, snapshot again after 4 async #PFs"
	"$VMM" restore --snapshot "$BASE" --mode userfault-async \
		--fetch-us 20000 --resnapshot "$WORK/mid" --after-async 4 --quiet \
		>"$WORK/mid.log" 2>&1
	rc=$?
	cat "$WORK/mid.log"
	[ $rc -eq 4 ] || fail "kbp-vmm exited $rc, not 4 (second snapshot saved)"
	out=$(field outstanding "$WORK/mid.log")
	[ "${out:-0}" -gt 0 ] || fail "no async #PF was outstanding at the second snapshot"
	for mode in eager exitless; do
		say "restoring the second snapshot in mode $mode"
		"$VMM" restore --snapshot "$WORK/mid" --mode "$mode" --quiet \
			>"$WORK/mid-$mode.log" 2>&1
		rc=$?
		cat "$WORK/mid-$mode.log"
		[ $rc -eq 0 ] || fail "second snapshot, $mode: kbp-vmm exited $rc"
		console_clean "$WORK/mid-$mode.log"
	done
	;;
kill)
	mode=$2
	base
	trace_on
	say "restoring in mode $mode with 20 ms fetches, SIGKILL during the verification"
	share="" obs=""
	# Not a previous run's lines: the loops below may read these files
	# before the jobs started in the background have opened them.
	rm -f "$WORK/kill-$mode.log" "$WORK/observe.log"
	if [ "$mode" = uffd ]; then
		# An observer holds the VMM's userfaultfd across its death,
		# as async_pf_exit_race_test's does (tools/vmm/observe.c).
		"$VMM" observe --socket "$WORK/observe.sock" >"$WORK/observe.log" 2>&1 &
		obs=$!
		# shellcheck disable=SC2064 # $obs is meant to expand now
		trap "kill $obs 2>/dev/null" EXIT
		i=0
		while ! grep -qs "listening" "$WORK/observe.log"; do
			i=$((i + 1))
			[ $i -lt 100 ] || { cat "$WORK/observe.log"; fail "kbp-vmm observe did not start"; }
			sleep 0.1
		done
		share="--share-uffd $WORK/observe.sock"
	fi
	# shellcheck disable=SC2086 # $share is empty or two words
	"$VMM" restore --snapshot "$BASE" --mode "$mode" --fetch-us 20000 --quiet \
		$share >"$WORK/kill-$mode.log" 2>&1 &
	pid=$!
	i=0
	while ! grep -qs "kbp-guest: verifying" "$WORK/kill-$mode.log"; do
		i=$((i + 1))
		[ $i -lt 600 ] || { cat "$WORK/kill-$mode.log"; fail "the guest never started verifying"; }
		kill -0 $pid 2>/dev/null || { cat "$WORK/kill-$mode.log"; fail "kbp-vmm ended before the kill"; }
		sleep 0.1
	done
	sleep 1
	[ ! -e $TRACE/trace_marker ] || echo "kbp-vmm-test: SIGKILL" >$TRACE/trace_marker
	kill -9 $pid
	[ -z "$obs" ] || kill -USR1 "$obs"
	i=0
	while [ -d /proc/$pid ] && [ "$(cut -d' ' -f3 /proc/$pid/stat 2>/dev/null)" != Z ]; do
		i=$((i + 1))
		[ $i -lt 300 ] || fail "kbp-vmm did not die within 30 s of SIGKILL (state $(cut -d' ' -f3 /proc/$pid/stat))"
		sleep 0.1
	done
	wait $pid
	cat "$WORK/kill-$mode.log"
	if [ -n "$obs" ]; then
		# It ends once the VMM is gone and no fault came for a second.
		wait "$obs"
		orc=$?
		trap - EXIT
		cat "$WORK/observe.log"
	fi
	# Every kernel async #PF the dead VMM's vCPUs started has a worker;
	# each must finish (completed), none may be left waiting.
	sleep 2
	trace_off
	if [ -d $TRACE/events/kvm ]; then
		np=$(trace_count kvm_async_pf_not_present "type kernel")
		cp=$(trace_count kvm_async_pf_completed "type kernel")
		say "$mode: after the kill: kernel async #PFs started $np, workers completed $cp"
		[ "$cp" -ge "$np" ] || fail "$mode: $((np - cp)) async #PF workers of the dead VMM did not complete"
	fi
	if [ -n "$obs" ]; then
		# Workers that completed after the kill, and the faults they
		# took on the dead VMM's memory: a worker in flight at the kill
		# holds its address space on either module set; one that starts
		# after the VMM is gone pins it only on the stock modules
		# (Documentation/vmm.rst, "Tests").
		ran=$(awk '/kbp-vmm-test: SIGKILL/ { m = 1 } m && /kvm_async_pf_completed:/' $TRACE/trace | wc -l)
		after=$(sed -n 's/.* faults_after_kill=\([0-9]*\).*/\1/p' "$WORK/observe.log")
		say "$mode: after the kill: $ran async #PF workers completed, $after faults on the dead VMM's memory"
		[ "$orc" -eq 0 ] || fail "$mode: the dead VMM did not exit, or its address space outlived it and its workers (observer, above)"
	fi
	;;
errors)
	base
	t=$WORK/errors
	mkdir -p "$t"
	# expect STATUS WORDS... -- ARGS: kbp-vmm ARGS exits STATUS with one
	# line on stderr that contains WORDS.
	expect() {
		st=$1 words=$2
		shift 3
		"$VMM" "$@" >"$t/out" 2>"$t/err"
		rc=$?
		lines=$(wc -l <"$t/err")
		if ! { [ $rc -eq "$st" ] && [ "$lines" -eq 1 ] &&
			grep -q -- "$words" "$t/err"; }; then
			cat "$t/out" "$t/err"
			fail "kbp-vmm $*: exit $rc (want $st), $lines line(s) on stderr, wanted '$words'"
		fi
		say "kbp-vmm $*: $(cat "$t/err") (exit $rc)"
	}
	expect 2 "cannot read" -- boot --kernel /nonexistent --initrd "$DIR/kbp-vmm-guest.cpio"
	expect 2 "not a bzImage" -- boot --kernel "$DIR/kbp-vmm-guest.cpio" --initrd "$DIR/kbp-vmm-guest.cpio"
	expect 2 "unknown --mode" -- restore --snapshot "$BASE" --mode lazy
	expect 2 "restore needs" -- restore --mode eager
	expect 2 "from 1 to" -- boot --vcpus 9 --kernel "$DIR/vmlinuz" --initrd "$DIR/kbp-vmm-guest.cpio"
	expect 2 "say boot, restore or observe" --
	expect 2 "needs a lazy --mode" -- restore --snapshot "$BASE" --mode eager --prefetch-ws "$t/ws"
	# A state and an image of different snapshots: the image's id
	# (bytes 24-31 of its header) changed.
	cp "$BASE.state" "$t/mixed.state"
	cp "$BASE.mem" "$t/mixed.mem"
	dd if="$t/mixed.mem" bs=1 skip=24 count=1 2>/dev/null | od -An -tu1 >"$t/byte"
	octal=$(printf %o $(( ($(cat "$t/byte") + 1) % 256 )))
	# shellcheck disable=SC2059 # the format is the byte, as an octal escape
	printf "\\$octal" | dd of="$t/mixed.mem" bs=1 seek=24 conv=notrunc 2>/dev/null
	expect 2 "not from the same snapshot" -- restore --snapshot "$t/mixed" --mode eager
	dd if=/dev/zero of="$t/mixed.mem" bs=4096 count=1 2>/dev/null
	expect 2 "not a kbp-vmm snapshot image" -- restore --snapshot "$t/mixed" --mode eager
	head -c 4096 "$BASE.mem" >"$t/mixed.mem"
	expect 2 "truncated" -- restore --snapshot "$t/mixed" --mode eager
	rm -f "$t/mixed.state" "$t/mixed.mem"
	# --timeout ends a run that cannot finish in time (20 ms a page)
	# with where the vCPU stood: registers and the calls on its stack.
	# Stopped in the guest kernel, its stack holds the calls that led
	# there; in user mode the stack is the task's own.  At the very
	# entry of an exception from user mode the kernel stack holds only
	# the user frame: up to 3 runs, one must stop elsewhere.
	for try in 1 2 3; do
		"$VMM" restore --snapshot "$BASE" --mode uffd --fetch-us 20000 \
			--timeout 3 --quiet >"$t/out" 2>"$t/err"
		rc=$?
		grep -E "vCPU 0: rip|stack" "$t/out"
		if ! { [ $rc -eq 1 ] && grep -q "did not finish in time" "$t/err" &&
			grep -q "vCPU 0: rip 0x" "$t/out" && grep -q "stack:" "$t/out"; }; then
			cat "$t/out" "$t/err"
			fail "--timeout: exit $rc (want 1), or no registers and stack of the vCPU"
		fi
		if ! grep -q "vCPU 0: rip .* cpl 0 " "$t/out" ||
			grep -Eq "stack:( 0x[0-9a-f]+)+$" "$t/out"; then
			break
		fi
		[ "$try" -lt 3 ] ||
			fail "--timeout: 3 times the vCPU stood at CPL 0 and no kernel text address came from its stack"
		echo "kbp-vmm-test: --timeout stopped at a kernel entry with only a user frame on the stack; again"
	done
	;;
unsupported)
	# On KVM without our uAPI: the modes that need it are refused with
	# exit 3, naming the loaded KVM.
	base
	for mode in userfault-sync userfault-async exitless; do
		"$VMM" restore --snapshot "$BASE" --mode $mode >"$WORK/u.out" 2>"$WORK/u.err"
		rc=$?
		cat "$WORK/u.err"
		if ! { [ $rc -eq 3 ] && grep -q "lacks" "$WORK/u.err"; }; then
			fail "$mode on this KVM: exit $rc, want 3 and the capability named"
		fi
	done
	;;
bench)
	fetch=${2:-2000}
	# "+ws": the same mode fetching the guest kernel's working set
	# ahead (--prefetch-ws), as recorded on this snapshot below.
	if grep -q kvm-backport /sys/module/kvm/version 2>/dev/null; then
		set=ours modes="eager uffd userfault-sync userfault-async exitless uffd+ws userfault-async+ws exitless+ws"
		recmode=userfault-sync
	else
		set=stock modes="eager uffd uffd+ws" recmode=uffd
	fi
	# A snapshot of its own: an 8 MiB buffer, 2 verifier threads.
	if [ ! -f "$WORK/bench.state" ]; then
		mkdir -p "$WORK"
		boot_to "$WORK/bench" "$WORK/bench-boot.log" --buf 8 \
			--verifiers 2 --mem 192 --append noxsave
	fi
	# Its working set, recorded once per module set with no fetch time,
	# in the mode that sees the most of it there: userfault-sync exits
	# name every fault of the guest kernel; in uffd mode the faults KVM
	# takes on its async #PF worker while it halts the vCPU (its own
	# async #PF for the guest's kernel mode) come from a kernel thread
	# and are missed (Documentation/vmm.rst).
	ws=$WORK/bench-$set.ws
	if [ ! -f "$ws" ]; then
		say "bench: recording the guest kernel's working set ($recmode mode, about 10 s)"
		"$VMM" restore --snapshot "$WORK/bench" --mode $recmode --quiet \
			--record-ws "$ws" --timeout 300 >"$WORK/bench-record.log" 2>&1 ||
			{ cat "$WORK/bench-record.log"; fail "bench: recording the working set failed"; }
		grep "working set" "$WORK/bench-record.log"
	fi
	# Rows per set and fetch time: the stock rows of this boot go in
	# front of ours, each benchmark's own.
	rows=$WORK/bench-$set-$fetch.txt
	: >"$rows"
	for mode in $modes; do
		say "bench: $set modules, mode $mode, $fetch us per page"
		log=$WORK/bench-$set-$mode-$fetch.log
		pre=""
		[ "${mode%+ws}" = "$mode" ] || pre="--prefetch-ws $ws"
		# shellcheck disable=SC2086 # $pre is empty or two words
		"$VMM" restore --snapshot "$WORK/bench" --mode "${mode%+ws}" \
			--quiet --fetch-us "$fetch" --timeout 300 $pre >"$log" 2>&1
		rc=$?
		grep -v '^| count' "$log" | tail -n 3
		[ $rc -eq 0 ] || fail "bench $mode: kbp-vmm exited $rc"
		printf '%-6s %-18s %8s %9s %7s %8s %6s %6s %7s %6s\n' "$set" "$mode" \
			"$(field first_report_ms "$log")" "$(field verified_ms "$log")" \
			"$(field served "$log")" "$(field prefetched "$log")" \
			"$(field async "$log")" \
			"$(field sync "$log")" "$(field sync_kernel "$log")" \
			"$(field share "$log")" >>"$rows"
	done
	# One table; on our modules with the stock rows of this boot.
	echo "BENCH vmm-restore $fetch us per page fetch, 8 MiB verified by 2 guest threads, 1 vCPU"
	for f in stock ours; do
		[ ! -f "$WORK/bench-$f.ws" ] ||
			echo "BENCH working set of the +ws rows, $f modules: $(od -An -tu8 -j24 -N8 "$WORK/bench-$f.ws" | tr -d ' ') pages"
	done
	printf 'BENCH %-6s %-18s %8s %9s %7s %8s %6s %6s %7s %6s\n' modules mode \
		first_ms verify_ms served prefetch async sync sync_k0 share%
	for f in "$WORK/bench-stock-$fetch.txt" "$WORK/bench-ours-$fetch.txt"; do
		[ "$set" = ours ] || [ "$f" = "$rows" ] || continue
		[ ! -f "$f" ] || sed 's/^/BENCH /' "$f"
	done
	;;
*)
	echo "usage: kbp-vmm-test boot|restore MODE|smp MODE|ws MODE|outstanding|kill MODE|errors|unsupported|bench [FETCH_US]" >&2
	exit 2
	;;
esac
say "ok"
