/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Small helpers that more than one of our selftests needs and that the
 * upstream selftest library does not have.
 */
#ifndef SELFTEST_BACKPORT_UTIL_H
#define SELFTEST_BACKPORT_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "kvm_util.h"
#include "test_util.h"

/*
 * kvm.nx_huge_pages: a write that changes it zaps every VM's TDP MMU
 * roots, i.e. queues their zap to the VMs' zap workers.
 */
#define NX_HUGE_PAGES_PARAM	"/sys/module/kvm/parameters/nx_huge_pages"

/*
 * What the host puts in every word of test page @page before the guest
 * may read it: never zero, so that a read of a page the host has not
 * provided yet (still zero) fails the guest's check, and different for
 * every page, so that a page mapped at the wrong place fails it too.
 */
static inline uint64_t page_value(uint64_t page)
{
	return 0x5af0000000000000ULL | page;
}

/* Monotonic time in milliseconds, with the fraction for short intervals. */
static inline double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * A 64-bit guest variable at @gva read while the guest runs: straight from
 * guest memory, once, unlike sync_global_from_guest(), which copies it
 * into the host's variable of the same name.
 */
static inline uint64_t guest_u64_live(struct kvm_vm *vm, void *gva)
{
	return READ_ONCE(*(uint64_t *)addr_gva2hva(vm, (vm_vaddr_t)gva));
}

/*
 * Command-line argument @i as a number (decimal, or 0x... hex), @def if the
 * command line is shorter.  Anything else fails the test: a word where a
 * number belongs is a wrong command line, which must not run as 0.
 */
static inline uint64_t arg_u64(int argc, char *argv[], int i, uint64_t def)
{
	uint64_t val;
	char *end;

	if (i >= argc)
		return def;
	errno = 0;
	val = strtoull(argv[i], &end, 0);
	TEST_ASSERT(!errno && end != argv[i] && !*end && argv[i][0] != '-',
		    "argument %d, '%s', is not a number", i, argv[i]);
	return val;
}

#endif
