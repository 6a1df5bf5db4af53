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
#
# Variables: KERNELRELEASE=<release> (another installed Debian kernel),
# KSRC=<tree or tarball> (source instead of linux-source-<series>),
# KBP_TIERS="modules kunit" (tiers of make check; default: all three,
# modules kunit debug), NO_KUNIT=1 and NO_DEBUG=1 (make check without
# that tier).

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
	@sed -n 's/^#   //p' Makefile
