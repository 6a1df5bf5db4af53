# SPDX-License-Identifier: GPL-2.0
#
# kvm-backport: KVM for distro kernels, rebuilt from the distro's own KVM
# source with our patch series.  See README.md.
#
#   make                 build kvm.ko, kvm-intel.ko, kvm-amd.ko
#   make check           our modules in QEMU on the stock distro kernel,
#                        then our KUnit suites, then the debug kernel tier
#   make kunit           our KUnit suites on a kernel built from the same source
#   make check-debug     our selftests on that kernel (KASAN, lockdep, kmemleak)
#   make check-parity    every upstream selftest, stock modules vs ours
#   make check-host      the same lists on this machine (needs root, VT)
#   make bench           benchmarks (tools/selftests/bench.list), stock vs ours
#   make load / unload   swap the stock modules for ours and back
#   make clean           remove build/ (sources, objects, kernels, logs)
#
# Variables (environment or make VAR=value):
#   KERNELRELEASE=<release>  another installed Debian kernel as target
#   KSRC=<tree or tarball>   source instead of linux-source-<series>
#   KBP_TIERS="modules kunit debug"  tiers of make check (default: all)
#   NO_KUNIT=1, NO_DEBUG=1   make check without that tier
#   KBP_ONLY=<list file>     only that list of our selftests, no upstream
#   KBP_ACCEL=tcg|kvm        test VM accelerator (default: kvm if it works)
#   KBP_TIMEOUT=<seconds>    limit for the whole VM run of a tier
#   KBP_TCG_THREADS=multi    make bench on multi-threaded TCG
#   KVM_PARAMS, VENDOR_PARAMS  module parameters for make load/check-host
#   KBP_KEEP_LOADED=1        make check-host leaves our modules loaded

SHELL := /bin/bash

.PHONY: all modules check kunit check-debug check-parity check-host bench \
	load unload clean help

all: modules

modules:
	@scripts/build.sh

check:
	@scripts/check.sh default

kunit:
	@scripts/kunit.sh run

check-debug:
	@scripts/check.sh debug

check-parity:
	@scripts/check.sh parity

check-host:
	@scripts/check-host.sh

bench:
	@scripts/check.sh bench

load:
	@scripts/load.sh load

unload:
	@scripts/load.sh unload

clean:
	rm -rf build

help:
	@sed -n -e 's/^#   //p' -e 's/^# \(Variables.*\)/\n\1/p' Makefile
