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
