# SPDX-License-Identifier: GPL-2.0
# shellcheck shell=sh
# Helpers shared by the test VM's scripts (busybox sh) and the host's
# (bash, through lib.sh).  POSIX sh only.  Source it, do not run it.

# list_entries FILE: the entries of a test or patch list, without '#'
# comments and blank lines.
list_entries() {
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1"
}

# kvm_vendor_module: kvm-intel or kvm-amd, by what this CPU offers, or
# none.
kvm_vendor_module() {
	if grep -qw vmx /proc/cpuinfo; then
		echo kvm-intel
	elif grep -qw svm /proc/cpuinfo; then
		echo kvm-amd
	else
		echo none
	fi
}

# count_item: count one test item in $KBP_COUNTER (when set) and succeed
# when an earlier boot of the same run already ran it (the first
# $KBP_SKIP items): the guest resumes after a test that wedged the VM.
count_item() {
	[ -n "${KBP_COUNTER:-}" ] || return 1
	n=$(( $(cat "$KBP_COUNTER" 2>/dev/null || echo 0) + 1 ))
	echo "$n" >"$KBP_COUNTER"
	[ "$n" -le "${KBP_SKIP:-0}" ]
}
