#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# kunit.sh build|exec [JSON]
#
# Our self-built test kernel: the target's source tree with our series
# applied and our files added (build/<release>/kunit-src, a clean copy:
# kunit.py refuses a tree that was built in or had "make headers"), built
# by tools/testing/kunit/kunit.py with tests/kunit/.kunitconfig into
# build/<release>/kunit-obj.  The same kernel is the debug kernel of make
# check-debug (KASAN, lockdep, work-object debugging, kmemleak).
#
#   build  build the kernel, unless its inputs (source version, series
#          and patches, our files, the kunitconfig, this script) are those
#          of the last build
#   exec   run the suites of the last build in QEMU (-cpu max, so the
#          built-in kvm-amd initialises on SVM with NPT); JSON: kunit.py's
#          results as JSON into that file, as well as its output
#   bench  build, then run the TDP MMU zap scale benchmark (suite
#          kvm_tdp_mmu_zap_bench) at the VM sizes of KBP_ZAP_BENCH_MIB
#          (MiB, comma-separated; default 1536,6144,24576,65536) on two
#          vCPUs with multi-threaded TCG, KBP_ZAP_BENCH_RUNS times (default
#          3), and print each run's table and their median (make bench)
#
# make kunit (scripts/kbp-test check --tier kunit) does both and judges
# the results and the kernel's log.
#
# Environment: KBP_KUNIT_ARGS (more kunit.py exec arguments, e.g. a
# filter glob "kvm_async_pf.*").
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

ACTION=${1:-}
resolve_target
# shellcheck disable=SC2046 # package lists
need_pkgs $(build_pkgs) $(kernel_build_pkgs) qemu-system-x86
need_headers

KSRC_TREE=$BUILD/kunit-src
OBJ=$BUILD/kunit-obj
# What every series' test kernel has, then the series' own suites.
KUNITCONFIG=$TOP/tests/kunit
SUITES=$TOP/patches/$KSERIES/kunitconfig
[ -f "$SUITES" ] || die "no KUnit suites for series $KSERIES ($SUITES)"
mkdir -p "$BUILD"

kunit_py() {
	(cd "$KSRC_TREE" && python3 tools/testing/kunit/kunit.py "$@" \
		--arch=x86_64 --kunitconfig="$KUNITCONFIG" \
		--kunitconfig="$SUITES" --build_dir="$OBJ")
}

build() {
	local key
	"$TOP/scripts/prepare-tree.sh" full "$KSRC_TREE"
	key=$(cat "$KSRC_TREE.stamp" "$KUNITCONFIG/.kunitconfig" "$SUITES" "$0" | sha256sum | cut -d' ' -f1)
	if [ -f "$OBJ.stamp" ] && [ "$(cat "$OBJ.stamp")" = "$key" ] &&
	   [ -f "$OBJ/$TEST_KERNEL" ]; then
		log "test kernel ${OBJ#"$TOP"/}/$TEST_KERNEL is up to date"
		return 0
	fi
	rm -f "$OBJ.stamp"
	log "building the KUnit and debug kernel in ${OBJ#"$TOP"/} (log: ${BUILD#"$TOP"/}/kunit-build.log)"
	if ! nice -n 10 bash -c "$(declare -f kunit_py); KSRC_TREE='$KSRC_TREE' \
		KUNITCONFIG='$KUNITCONFIG' SUITES='$SUITES' OBJ='$OBJ' \
		kunit_py build --jobs=$(nproc)" \
		>"$BUILD/kunit-build.log" 2>&1; then
		tail -n 40 "$BUILD/kunit-build.log" >&2
		die "the KUnit kernel did not build (log: $BUILD/kunit-build.log)"
	fi
	echo "$key" >"$OBJ.stamp"
}

# exec [JSON]: run the suites of the kernel built last; with JSON, also
# store kunit.py's results there.
exec_suites() {
	local json=()
	[ -z "${1:-}" ] || json=(--json="$1")
	[ -f "$OBJ/$TEST_KERNEL" ] || die "no test kernel in $OBJ; run $0 build"
	# The kernel's log is in $OBJ/test.log; scripts/kbp-test judges it.
	# shellcheck disable=SC2086 # extra arguments are split on purpose
	kunit_py exec --timeout=600 --qemu_args='-cpu max -smp 2' \
		"${json[@]}" ${KBP_KUNIT_ARGS:-}
}

# The zap benchmark needs two CPUs that really run at once: one QEMU
# thread per vCPU.  It runs KBP_ZAP_BENCH_RUNS times (3 by default), one
# boot each, at every size: under TCG one run's figures move by tens of
# percent (the test VM's CPUs are host threads that the host schedules),
# and a figure of 1 or 2 ms by more, so the table's rows, targets and
# estimate are printed for each run and then as the median of the runs,
# figure by figure.  The logs: build/<release>/kunit-bench.<run>.log,
# and each run's table beside its log (kunit-bench.<run>.log.table).
bench_once() {
	local sizes=$1 log=$2

	# The kernel's output as it comes: the cases say what they are doing.
	if ! kunit_py exec --timeout=7200 --raw_output=all \
		--qemu_args='-cpu max -smp 2 -accel tcg,thread=multi -m 2048' \
		--kernel_args="kvm.tdp_zap_bench_mib=$sizes" \
		'kvm_tdp_mmu_zap_bench' 2>&1 | tee "$log" |
		grep --line-buffered -E '# tdp_zap_bench_run: |^ *(not )?ok [0-9]+ [0-9]'; then
		tail -n 20 "$log" >&2
		die "the zap benchmark did not run (log: $log)"
	fi
	if grep -q '^ *not ok' "$log" || ! grep -q '^ok [0-9]* kvm_tdp_mmu_zap_bench' "$log"; then
		grep -E '^ *(not ok|# .*(Expected|ASSERT|EXPECT|skip))' "$log" >&2 || true
		die "the zap benchmark failed (log: $log)"
	fi
}

# The median over the runs' tables (files "$@") of each number in the
# lines that have the same words in every run: the table's title and
# rows, the targets and the 64 TB estimate (not the lines of CPUs, whose
# numbers name CPUs).  A ratio column is the median of each run's ratio,
# not the ratio of the medians; with an even number of runs a median is
# the lower of the middle two, i.e. one run's figure.  A line whose words
# differ between runs (a ratio printed as "-") is printed as run 1 has
# it, marked; runs whose tables do not have the same rows fail it.
bench_median() {
	python3 - "$@" <<'PY'
import re
import statistics
import sys

keep = ("TDP MMU zap at scale", "|", "targets:", "64 TB")
runs = [[ln for ln in open(f).read().splitlines() if ln.startswith(keep)]
        for f in sys.argv[1:]]
rows = [[ln.split("|")[1].strip() for ln in r if ln.startswith("|")]
        for r in runs]
if not runs[0] or any(len(r) != len(runs[0]) for r in runs) or \
        any(r != rows[0] for r in rows):
    sys.exit("the runs' tables do not have the same rows (%s): no median"
             % ", ".join(sys.argv[1:]))
for lines in zip(*runs):
    parts = [re.split(r"(\d+(?:\.\d+)?)", ln) for ln in lines]
    words = [[w.strip() for w in p[0::2]] for p in parts]
    if any(w != words[0] for w in words):
        print("(not the same words in every run; run 1:) " + lines[0])
        continue
    out = parts[0][:]
    for i in range(1, len(out), 2):
        med = statistics.median_low(float(p[i]) for p in parts)
        tok = out[i]
        dec = len(tok.split(".")[1]) if "." in tok else 0
        # Right-aligned in the room of run 1's number and the spaces
        # before it, so that the table's columns stay where they are.
        pad = len(out[i - 1]) - len(out[i - 1].rstrip(" "))
        num = "%.*f" % (dec, med)
        out[i - 1] = out[i - 1].rstrip(" ")
        out[i] = num.rjust(pad + len(tok)) if pad > len(num) - len(tok) \
            else " " * min(pad, 1) + num
    print("".join(out))
PY
}

bench() {
	local sizes=${KBP_ZAP_BENCH_MIB:-1536,6144,24576,65536}
	local runs=${KBP_ZAP_BENCH_RUNS:-3} r log tables=()

	[[ $sizes =~ ^[0-9]+(,[0-9]+)*$ ]] ||
		die "KBP_ZAP_BENCH_MIB=$sizes: give VM sizes in MiB separated by commas, e.g. 1536,6144"
	[[ $runs =~ ^[1-9][0-9]*$ ]] ||
		die "KBP_ZAP_BENCH_RUNS=$runs: give a whole number of runs, 1 or more, e.g. 3"
	build
	for ((r = 1; r <= runs; r++)); do
		log=$BUILD/kunit-bench.$r.log
		log "TDP MMU zap scale benchmark, run $r of $runs, at $sizes MiB of 4 KiB SPTEs, 2 vCPUs, multi-threaded TCG (log: ${log#"$TOP"/})"
		bench_once "$sizes" "$log"
		# The table: what tdp_zap_bench_table printed, without kunit's prefix.
		sed -n 's/^.*# tdp_zap_bench_table: //p' "$log" >"$log.table"
		echo "Run $r of $runs:"
		cat "$log.table"
		tables+=("$log.table")
	done
	if ((runs > 1)); then
		echo "Median of the $runs runs, figure by figure:"
		bench_median "${tables[@]}"
	fi
}

case $ACTION in
build)
	build
	;;
bench)
	bench
	;;
exec)
	exec_suites "${2:-}"
	;;
*)
	die "say build, exec [JSON] (make kunit runs both) or bench (make bench)"
	;;
esac
