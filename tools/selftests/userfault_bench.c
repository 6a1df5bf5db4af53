// SPDX-License-Identifier: GPL-2.0-only
/*
 * userfault_bench: not a pass/fail test.  Prints, per fault, the exits,
 * the vCPU's time out of guest mode and the share of the fault-wait time
 * the guest spent on other work, for synchronous userfault exits,
 * userspace async #PF with exits, and exitless (a KVM_ASYNC_PF_USER_RING
 * ring).  Documentation/userfault.rst.
 *
 *   userfault_bench [pages [delay_ms]]
 *	The guest reads pages (default 32) marked pages, each of which the
 *	resolver provides after delay_ms (default 20).
 *
 * The guest, the VM and the resolver are in userfault_lib.h, the VMM's
 * side of the ring in userfault_ring.h.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "backport_util.h"
#include "userfault_lib.h"
#include "userfault_ring.h"

enum bench_mode { BENCH_SYNC, BENCH_ASYNC, BENCH_EXITLESS };

static void bench_one(const char *name, uint64_t nr_pages,
		      unsigned int delay_ms, enum bench_mode mode,
		      uint64_t tsc_khz)
{
	struct run_stats s = { 0 };
	struct ring_vmm rv;
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	uint64_t out_tsc;

	uf_vm_create(&u, nr_pages, G_APF);
	if (mode != BENCH_SYNC)
		vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	resolver_start(&r, &thread, &u, delay_ms);
	if (mode == BENCH_EXITLESS) {
		ring_open(&u, &rv, 64);
		ring_thread_start(&rv, &r);
	}
	uf_run_guest(&u, &r, &s);
	if (mode == BENCH_EXITLESS) {
		ring_thread_stop(&rv);
		ring_close(&rv);
	}
	resolver_stop(&r, thread);
	uf_guest_counters(u.vm);

	TEST_ASSERT(r.resolved == nr_pages && access_tsc,
		    "%lu of %lu pages resolved", r.resolved, nr_pages);
	/*
	 * Out of guest mode per fault: a synchronous fault keeps the vCPU
	 * out for all of its access; an async one from the access until the
	 * guest's "not present" handler runs.
	 */
	out_tsc = mode == BENCH_SYNC ? access_tsc : not_present_tsc;
	printf("%-22s %6lu %6.2f %10.1f %10.1f %10.1f %12lu %7.1f%%\n", name,
	       nr_pages, (double)(s.async_exits + s.sync_exits) / nr_pages,
	       1000.0 * out_tsc / tsc_khz / nr_pages,
	       (double)access_tsc / tsc_khz / nr_pages,
	       (double)busy_tsc / tsc_khz, work_done,
	       100.0 * busy_tsc / access_tsc);
	uf_vm_free(&u);
}

/*
 * The guest reads @nr_pages marked pages, one after another; each takes
 * the resolver @delay_ms to provide.  Its TSC says how long the accesses
 * took in all, how long each kept the vCPU out of guest mode, and how
 * much of the wait it spent in its "not present" handler's work loop,
 * i.e. running other guest work.
 */
static int bench(uint64_t nr_pages, unsigned int delay_ms)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int tsc_khz;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	tsc_khz = __vcpu_ioctl(vcpu, KVM_GET_TSC_KHZ, NULL);
	TEST_ASSERT(tsc_khz > 0, "KVM_GET_TSC_KHZ failed");
	kvm_vm_free(vm);

	printf("userfault_bench: %lu pages, resolver latency %u ms per fault\n",
	       nr_pages, delay_ms);
	printf("out of guest = vCPU time out of guest mode per fault, until the guest\n"
	       "runs again (guest TSC)\n");
	printf("share = guest work during the fault waits / fault-wait time\n");
	printf("%-22s %6s %6s %10s %10s %10s %12s %8s\n", "mode", "pages",
	       "exits", "out of", "wait", "work", "work loop", "share");
	printf("%-22s %6s %6s %10s %10s %10s %12s %8s\n", "", "",
	       "/fault", "guest us", "ms/fault", "ms", "iterations", "");
	bench_one("synchronous exits", nr_pages, delay_ms, BENCH_SYNC, tsc_khz);
	bench_one("async #PF, exits", nr_pages, delay_ms, BENCH_ASYNC,
		  tsc_khz);
	if (kvm_check_cap(KVM_CAP_ASYNC_PF_USER_RING) > 0)
		bench_one("async #PF, exitless", nr_pages, delay_ms,
			  BENCH_EXITLESS, tsc_khz);
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc > 3) {
		fprintf(stderr, "usage: %s [pages [delay_ms]]\n", argv[0]);
		return 1;
	}
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_USERFAULT) == 1);

	return bench(arg_u64(argc, argv, 1, 32), arg_u64(argc, argv, 2, 20));
}
