// SPDX-License-Identifier: GPL-2.0-only
/*
 * async_pf_test: paravirtual async #PF, end to end
 * (Documentation/async-pf.rst).
 *
 *   async_pf_test [pages [delay_ms]]
 *	pages (default 32) test pages backed by userfaultfd, which a
 *	resolver thread answers each after delay_ms (default 20).
 *
 * The guest enables async #PF with interrupt-based "page ready"
 * (MSR_KVM_ASYNC_PF_EN/_INT/_ACK) and has its own #PF and "page ready"
 * handlers (async_pf_lib.h, apf_guest.h).  It must see "page not present",
 * keep doing other work while it waits, get "page ready" with the same
 * token, and read the right data.
 *
 * What happens to async #PF work when the VMM dies is tested by
 * async_pf_exit_race_test and async_pf_unload_test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "async_pf_lib.h"
#include "backport_util.h"
#include "kvm_trace.h"
#include "test_util.h"

struct resolver {
	int uffd;
	void *base;
	unsigned int delay_ms;
	bool stop;
	uint64_t faults;
};

static void *resolver_thread(void *arg)
{
	struct resolver *r = arg;
	struct pollfd pfd = { .fd = r->uffd, .events = POLLIN };
	uint64_t *src = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	struct uffd_msg msg;

	TEST_ASSERT(src, "out of memory");
	while (!READ_ONCE(r->stop)) {
		struct uffdio_copy copy = { 0 };
		uint64_t page, i;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		if (read(r->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		TEST_ASSERT(msg.event == UFFD_EVENT_PAGEFAULT,
			    "unexpected userfault event %u", msg.event);

		/* The slow part of a real fault: network, disk, ... */
		usleep(r->delay_ms * 1000);

		page = (msg.arg.pagefault.address - (uint64_t)r->base) / PAGE_SIZE;
		for (i = 0; i < PAGE_SIZE / sizeof(*src); i++)
			src[i] = page_value(page);
		copy.dst = (uint64_t)r->base + page * PAGE_SIZE;
		copy.src = (uint64_t)src;
		copy.len = PAGE_SIZE;
		if (ioctl(r->uffd, UFFDIO_COPY, &copy))
			TEST_ASSERT(errno == EEXIST, "UFFDIO_COPY failed: %s",
				    strerror(errno));
		r->faults++;
	}
	free(src);
	return NULL;
}

/*
 * A guest that stops making progress waits for a "page ready" that never
 * comes, inside KVM_RUN, until the harness kills the test.  Make that a
 * failure that says where the guest and KVM were instead: the guest's
 * counters (read live from its memory) and KVM's async #PF trace events.
 */
#define STALL_SECONDS	60

static const char * const apf_events[] = {
	"kvm_try_async_get_page", "kvm_async_pf_repeated_fault",
	"kvm_async_pf_not_present", "kvm_async_pf_ready",
	"kvm_async_pf_completed",
};

static void apf_trace(const char *val)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(apf_events); i++)
		if (trace_set(apf_events[i], val))
			pr_info("cannot set %s to %s\n", apf_events[i], val);
}

static void apf_trace_off(void)
{
	apf_trace("0");
}

struct watchdog {
	struct kvm_vm *vm;
	struct resolver *r;
	bool stop;
};

static void *watchdog_thread(void *arg)
{
	struct watchdog *w = arg;
	uint64_t seen = ~0ULL, now;
	uint32_t *tokens;
	int idle = 0, i;

	while (!READ_ONCE(w->stop)) {
		sleep(1);
		now = guest_u64_live(w->vm, &nr_not_present) +
		      guest_u64_live(w->vm, &nr_ready) + READ_ONCE(w->r->faults);
		idle = now == seen ? idle + 1 : 0;
		seen = now;
		if (idle < STALL_SECONDS)
			continue;

		tokens = addr_gva2hva(w->vm, (vm_vaddr_t)ready_tokens);
		pr_info("no progress for %d s: guest %lu not present, %lu ready, %lu nested, depth %lu, %lu lost; resolver %lu faults\n",
			idle, guest_u64_live(w->vm, &nr_not_present),
			guest_u64_live(w->vm, &nr_ready),
			guest_u64_live(w->vm, &nr_nested),
			guest_u64_live(w->vm, &apf_depth),
			guest_u64_live(w->vm, &nr_ready_overflow), w->r->faults);
		for (i = 0; i < APF_MAX_READY; i++)
			if (tokens[i])
				pr_info("ready, not taken: token %#x\n", tokens[i]);
		trace_lines("", "", true);
		TEST_FAIL("the guest stopped making progress");
	}
	return NULL;
}

static int test_basic(uint64_t nr_pages, unsigned int delay_ms)
{
	struct resolver r = { .delay_ms = delay_ms };
	struct watchdog w = { .r = &r };
	pthread_t thread, watcher;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	/* A fresh trace buffer with the async #PF events, if tracing is on. */
	if (!trace_clear()) {
		apf_trace("1");
		atexit(apf_trace_off);
	}

	r.uffd = uffd_create();
	vm = apf_vm_create(&vcpu, r.uffd, nr_pages, false, &r.base);
	pthread_create(&thread, NULL, resolver_thread, &r);
	w.vm = vm;
	pthread_create(&watcher, NULL, watchdog_thread, &w);

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_IO,
			    "unexpected exit %s",
			    exit_reason_str(vcpu->run->exit_reason));
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT_2(uc, "values 0x%lx, 0x%lx");
		case UCALL_DONE:
			goto done;
		default:
			TEST_FAIL("unexpected ucall %lu", uc.cmd);
		}
	}
done:
	WRITE_ONCE(w.stop, true);
	pthread_join(watcher, NULL);
	WRITE_ONCE(r.stop, true);
	pthread_join(thread, NULL);

	apf_guest_sync_counters(vm);
	sync_global_from_guest(vm, nr_sync);
	sync_global_from_guest(vm, nr_worked);
	sync_global_from_guest(vm, min_work);
	sync_global_from_guest(vm, total_work);

	pr_info("%lu pages, resolver delay %u ms, %lu userfaults resolved\n",
		nr_pages, delay_ms, r.faults);
	pr_info("async #PFs taken: %lu, synchronous faults: %lu\n",
		nr_not_present, nr_sync);
	pr_info("page ready: %lu (+%lu broadcast, %lu without a token), guest work while waiting: %lu iterations (min %lu per fault, %lu faults with work)\n",
		nr_ready, nr_broadcast, nr_ready_spurious, total_work,
		nr_not_present ? min_work : 0, nr_worked);

	/* A nested async #PF is for a page the handler touched. */
	TEST_ASSERT(nr_not_present - nr_nested + nr_sync == nr_pages,
		    "%lu async (%lu nested) + %lu sync faults for %lu pages",
		    nr_not_present, nr_nested, nr_sync, nr_pages);
	TEST_ASSERT(nr_not_present >= nr_pages / 2,
		    "only %lu of %lu faults went async", nr_not_present,
		    nr_pages);
	if (nr_nested)
		pr_info("%lu async #PFs came while the guest waited for another\n",
			nr_nested);
	TEST_ASSERT(nr_ready == nr_not_present && !nr_ready_overflow &&
		    !apf_ready_left(),
		    "%lu page ready for %lu page not present, %lu lost, %d never taken",
		    nr_ready, nr_not_present, nr_ready_overflow,
		    apf_ready_left());
	/*
	 * Not every wait: when the host deschedules the vCPU for longer than
	 * the resolver's delay, "page ready" is due as soon as it is back.
	 */
	TEST_ASSERT(nr_worked * 2 >= nr_not_present,
		    "the guest did other work during only %lu of %lu waits",
		    nr_worked, nr_not_present);
	TEST_ASSERT(nr_broadcast == 1, "%lu broadcast wakeups", nr_broadcast);

	kvm_vm_free(vm);
	close(r.uffd);
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc > 3) {
		fprintf(stderr, "usage: %s [pages [delay_ms]]\n", argv[0]);
		return 1;
	}
	__TEST_REQUIRE(kvm_has_cap(KVM_CAP_ASYNC_PF_INT),
		       "KVM does not support interrupt-based async #PF");

	return test_basic(arg_u64(argc, argv, 1, 32),
			  arg_u64(argc, argv, 2, 20));
}
