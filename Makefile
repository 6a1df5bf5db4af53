# SPDX-License-Identifier: GPL-2.0
#
# kvm-backport: KVM for distro kernels, rebuilt from the distro's own KVM
# source with our patch series.  See README.md.
#
#   make                 build kvm.ko, kvm-intel.ko, kvm-amd.ko
#   make check           the README's test command: style, uapi numbers, the
#                        distro's module ABI, our modules in QEMU on the
#                        stock distro kernel, the reference VMM with a
#                        Linux guest, the package on a Debian 12
#                        rootfs, our KUnit suites, the debug kernel tier
#   make kunit           our KUnit suites on a kernel built from the same source
#   make check-debug     our selftests on that kernel (KASAN, lockdep, kmemleak)
#   make check-parity    every upstream selftest, stock modules vs ours
#   make check-vmm       the reference VMM (tools/vmm) with a real Linux
#                        guest, every memory mode (make check's vmm tier)
#   make check-host      the same lists on this machine (needs root, VT)
#   make bench           benchmarks (tools/selftests/bench.list), stock vs ours
#   make fuzz            the uAPI fuzzer's full campaign and the fault cycles
#                        on the debug kernel (tools/selftests/fuzz.list);
#                        SEED=<n> CALLS=<n> for the fuzzer (default 1, 100000)
#   make check-abi       our exports' CRCs against the distro's (Module.symvers),
#                        the layouts of KVM's structures against the stock BTF
#   make deb             build/deb/kvm-backport-dkms_<version>_all.deb (DKMS)
#   make install         install our modules in /lib/modules/<release>/updates
#                        (hosts without the package), depmod, load them
#   make uninstall       remove them; the stock modules again
#   make load / unload   swap the stock modules for ours and back, until
#                        the next boot
#   make clean           remove build/ (sources, objects, kernels, logs)
#   make help            this text; scripts/kbp-test --help for the runner
#
# Variables (environment or make VAR=value):
#   ARGS="..."               more scripts/kbp-test options for the test
#                            targets, e.g. ARGS="--test 'userfault_*'"
#   KERNELRELEASE=<release>  another installed Debian kernel as target
#   SERIES=<series>          that series' current Debian kernel as target,
#                            e.g. SERIES=6.12 on Debian 12
#   KSRC=<tree or tarball>   source instead of linux-source-<series>
#   KBP_TIERS="modules kunit debug"  tiers of make check (default: style
#                            uapi abi modules vmm deb kunit debug); --tier
#   NO_KUNIT=1, NO_VMM=1, NO_DEB=1, NO_DEBUG=1  make check without that tier
#   KBP_ONLY=<list file>     only that list of our selftests, no upstream; --list
#   KBP_ACCEL=tcg|kvm        test VM accelerator (default: kvm if it works); --accel
#   KBP_TIMEOUT=<seconds>    limit for the whole VM run of a tier; --timeout
#   KBP_TCG_THREADS=multi    multi-threaded TCG; --tcg-threads
#   KBP_KUNIT_ARGS="..."     more kunit.py exec arguments (a suite glob)
#   DESTDIR=<root>           make install/uninstall into another root
#   KVM_PARAMS, VENDOR_PARAMS  module parameters for make load/check-host
#   KBP_KEEP_LOADED=1        make check-host leaves our modules loaded;
#                            --keep-loaded

SHELL := /bin/bash

ifdef SERIES
export KBP_SERIES := $(SERIES)
endif

.PHONY: all modules check kunit check-debug check-parity check-vmm check-host bench \
	fuzz check-abi deb install uninstall load unload clean help

all: modules

modules:
	@scripts/build.sh

RUNNER := scripts/kbp-test

check:
	@$(RUNNER) check $(ARGS)

kunit:
	@$(RUNNER) check --tier kunit $(ARGS)

check-debug:
	@$(RUNNER) check --tier debug $(ARGS)

check-parity:
	@$(RUNNER) parity $(ARGS)

check-vmm:
	@$(RUNNER) check --tier vmm $(ARGS)

check-host:
	@$(RUNNER) host $(ARGS)

bench:
	@$(RUNNER) bench $(ARGS)

fuzz:
	@KBP_FUZZ_SEED='$(SEED)' KBP_FUZZ_CALLS='$(CALLS)' $(RUNNER) fuzz $(ARGS)

check-abi:
	@$(RUNNER) check --tier abi $(ARGS)

deb:
	@scripts/make-deb.sh

install: modules
	@scripts/install.sh install

uninstall:
	@scripts/install.sh uninstall

load:
	@scripts/load.sh load

unload:
	@scripts/load.sh unload

clean:
	@[ ! -d build ] || [ "$$(id -u)" -ne 0 ] || [ ! -x scripts/rootfs.sh ] || \
		scripts/rootfs.sh release
	rm -rf --one-file-system build

help:
	@sed -n -e 's/^#   //p' -e 's/^# \(Variables.*\)/\n\1/p' Makefile
