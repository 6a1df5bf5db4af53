#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check-host.sh: run the make check lists directly on this machine, a real
# test host with VMX or SVM, with our modules swapped in by load.sh.  The
# stock modules are put back at the end (KBP_KEEP_LOADED=1 keeps ours).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "make check-host needs root (it loads kernel modules)"
grep -qwE 'vmx|svm' /proc/cpuinfo ||
	die "make check-host needs a usable /dev/kvm: this CPU shows neither VMX nor SVM"
KERNELRELEASE=$(uname -r)
export KERNELRELEASE
resolve_target
build_for_tests

phase "load modules"
"$TOP/scripts/load.sh" load
# Whatever happens from here on, put the stock modules back.
[ -n "${KBP_KEEP_LOADED:-}" ] || trap '"$TOP/scripts/load.sh" unload' EXIT
[ -c /dev/kvm ] || die "no usable /dev/kvm after loading our modules"
vendor=$(kvm_vendor_module)
# The unload test reloads the modules from here.
export KBP_MODULE_DIR=$BUILD/modules
log "running on $vendor, kvm $(cat /sys/module/kvm/version)"
phase_end

phase "run tests"
marker="kvm-backport check-host $$ $(date +%s)"
echo "$marker" >/dev/kmsg
RES=$BUILD/results.host
: >"$RES"
echo "TAP version 13"
{
	echo "RESULT host modules-loaded pass 0 kvm $(cat /sys/module/kvm/version), $vendor"
	"$TOP/scripts/run-tests.sh" ours/backport "$TOP/tools/selftests/backport.list" \
		"$BUILD/selftests/backport"
	"$TOP/scripts/run-tests.sh" ours/upstream "$TOP/tools/selftests/$KSERIES/upstream.list" \
		"$BUILD/selftests/upstream"
	bad=$(dmesg | sed -n "/$marker/,\$p" | "$TOP/scripts/scan-kernel-log.sh" || true)
	if [ -z "$bad" ]; then
		echo "RESULT host kernel-log-clean pass 0"
	else
		printf '%s\n' "$bad" | sed -n '1,40s/^/#   /p'
		echo "RESULT host kernel-log-clean fail 0 kernel problem reports in dmesg"
	fi
} | tap
phase_end

echo "1..$(wc -l <"$RES")"
phase_summary
echo "vendor module: $vendor"
summarize "$RES"
