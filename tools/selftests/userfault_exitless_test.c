// SPDX-License-Identifier: GPL-2.0-only
/*
 * userfault_exitless_test: exitless userspace async #PF: KVM publishes
 * async faults to a KVM_ASYNC_PF_USER_RING ring instead of exiting; a
 * full ring (entries read but not accepted) falls back to exits.
 * Documentation/userfault.rst.
 *
 *   userfault_exitless_test async [pages [delay_ms [entries [hold]]]]
 *	The flow of userfault_test async with a ring of that many entries
 *	(default 64): no fault that can go async may exit.  With "hold" the
 *	VMM reads entries but never accepts them: once the ring is full the
 *	faults must exit.  pages defaults to 32, delay_ms to 20.
 *
 *   userfault_exitless_test bad-input
 *	Every bad ring request and mapping gets its errno; the VM then runs
 *	the exitless flow to the end.
 *
 *   userfault_exitless_test teardown [vms]
 *	The ring closed with an entry read, and with one unread (KVM must
 *	complete that one), async #PF turned off and VMs destroyed with
 *	entries outstanding (vms of them, 20 by default).
 *
 * The guest, the VM and the resolver are in userfault_lib.h, the VMM's
 * side of the ring in userfault_ring.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "backport_util.h"
#include "userfault_lib.h"
#include "userfault_ring.h"

/*
 * userfault_exitless_test async [pages [delay_ms [entries [hold]]]]: the
 * async flow with a ring, where every fault that can go async must not exit,
 * and the eventfd must count one signal per entry.
 * With a ring smaller than the number of pages and "hold" (entries read
 * but not accepted), the ring fills and the rest must exit as before.
 */
static int test_exitless(uint64_t nr_pages, unsigned int delay_ms,
			 uint32_t entries, bool hold)
{
	struct run_stats s = { 0 };
	struct ring_vmm rv;
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	bool guest_ok;
	uint64_t via_ring;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER_RING) > 0);

	uf_vm_create(&u, nr_pages, G_APF | G_MASKED);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	ring_open(&u, &rv, entries);
	rv.hold = hold;
	resolver_start(&r, &thread, &u, delay_ms);
	ring_thread_start(&rv, &r);
	uf_run_guest(&u, &r, &s);
	ring_thread_stop(&rv);
	resolver_stop(&r, thread);
	uf_guest_counters(u.vm);

	via_ring = hold ? entries : nr_pages;
	pr_info("%lu pages, ring of %u%s: %lu from the ring, %lu async exits, %lu sync (%lu with IF=0)\n",
		nr_pages, entries, hold ? ", held" : "", rv.taken,
		s.async_exits, s.sync_exits, s.masked_exits);
	pr_info("guest: %lu not present, %lu ready (+%lu broadcast, %lu without a token), work during %lu waits\n",
		nr_not_present, nr_ready, nr_broadcast, nr_ready_spurious,
		nr_worked);

	TEST_ASSERT(rv.taken == via_ring && rv.signalled == via_ring &&
		    s.async_exits == nr_pages - via_ring &&
		    r.resolved == nr_pages + 1,
		    "%lu ring entries (%lu signalled), %lu async exits, %lu resolved, for %lu pages",
		    rv.taken, rv.signalled, s.async_exits, r.resolved, nr_pages);
	TEST_ASSERT(s.masked_exits == 1 && s.sync_exits == 1,
		    "IF=0 access: %lu exits, %lu sync", s.masked_exits,
		    s.sync_exits);
	guest_ok = nr_not_present == nr_pages && nr_ready == nr_pages &&
		   !nr_ready_overflow && !apf_ready_left() &&
		   nr_ready_spurious * 4 <= nr_ready;
	if (!guest_ok)
		async_failure_dump(u.vm);
	TEST_ASSERT(guest_ok,
		    "guest saw %lu not present, %lu ready, %lu lost, %d never taken, %lu without a token",
		    nr_not_present, nr_ready, nr_ready_overflow,
		    apf_ready_left(), nr_ready_spurious);
	TEST_ASSERT(nr_worked * 2 >= nr_pages,
		    "the guest did other work during only %lu of %lu waits",
		    nr_worked, nr_pages);
	if (hold) {
		/* Past the producer: refused, and the ring stays as it was. */
		EXPECT_ERRNO(ioctl(rv.fd, KVM_ASYNC_PF_USER_RING_ACCEPT,
				   (unsigned long)rv.consumer + 1), ERANGE);
		TEST_ASSERT(!rv.ring->consumer, "a refused accept moved the consumer");
		TEST_ASSERT(!ioctl(rv.fd, KVM_ASYNC_PF_USER_RING_ACCEPT,
				   (unsigned long)rv.consumer) &&
			    rv.ring->consumer == rv.consumer,
			    "accepting the held entries failed");
		/* Backwards: refused too. */
		EXPECT_ERRNO(ioctl(rv.fd, KVM_ASYNC_PF_USER_RING_ACCEPT,
				   (unsigned long)rv.consumer - 1), ERANGE);
	}

	ring_close(&rv);
	uf_vm_free(&u);
	return 0;
}

/*
 * userfault_exitless_test bad-input: every bad ring request gets its
 * errno, then the VM runs the exitless flow to the end.
 */
static int test_exitless_bad_input(void)
{
	struct kvm_async_pf_user_ring_setup setup = { .entries = 8 };
	struct run_stats s = { 0 };
	struct ring_vmm rv;
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	int efd, pipefd[2], fd;
	/* Big enough for a mapping of several pages, to split. */
	size_t bytes = ring_bytes(256);
	long page = getpagesize();
	void *p;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER_RING) > 0);
	efd = eventfd(0, EFD_CLOEXEC);
	TEST_ASSERT(efd >= 0 && !pipe(pipefd), "eventfd or pipe failed");

	uf_vm_create(&u, 4, G_APF);
	/* A VM without userspace async #PF has nothing to feed a ring. */
	EXPECT_ERRNO(ring_create(u.vm, 8, efd, 0), ENXIO);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);

	EXPECT_ERRNO(ring_create(u.vm, 8, efd, 1), EINVAL);
	EXPECT_ERRNO(ring_create(u.vm, 0, efd, 0), EINVAL);
	EXPECT_ERRNO(ring_create(u.vm, 12, efd, 0), EINVAL);
	EXPECT_ERRNO(ring_create(u.vm,
				 2 * kvm_check_cap(KVM_CAP_ASYNC_PF_USER_RING),
				 efd, 0), EINVAL);
	setup.eventfd = efd;
	setup.pad2[1] = 1;
	EXPECT_ERRNO(__vm_ioctl(u.vm, KVM_ASYNC_PF_USER_RING, &setup), EINVAL);
	EXPECT_ERRNO(ring_create(u.vm, 8, -1, 0), EBADF);
	EXPECT_ERRNO(ring_create(u.vm, 8, pipefd[0], 0), EINVAL);

	fd = ring_create(u.vm, 256, efd, 0);
	TEST_ASSERT(fd >= 0, "KVM_ASYNC_PF_USER_RING failed: %s",
		    strerror(errno));
	EXPECT_ERRNO(ring_create(u.vm, 8, efd, 0), EEXIST);

	/* Only the whole ring, from offset 0, read-only, once. */
	p = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, page);
	EXPECT_ERRNO(p == MAP_FAILED ? -1 : 0, EINVAL);
	p = mmap(NULL, bytes + page, PROT_READ, MAP_SHARED, fd, 0);
	EXPECT_ERRNO(p == MAP_FAILED ? -1 : 0, EINVAL);
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	EXPECT_ERRNO(p == MAP_FAILED ? -1 : 0, EACCES);
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	EXPECT_ERRNO(p == MAP_FAILED ? -1 : 0, EACCES);
	p = mmap(NULL, bytes, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
	EXPECT_ERRNO(p == MAP_FAILED ? -1 : 0, EACCES);
	p = mmap(NULL, bytes, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
	EXPECT_ERRNO(p == MAP_FAILED ? -1 : 0, EACCES);
	p = mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0);
	TEST_ASSERT(p != MAP_FAILED, "mmap of the ring failed: %s",
		    strerror(errno));
	EXPECT_ERRNO(mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0) ==
		     MAP_FAILED ? -1 : 0, EBUSY);
	EXPECT_ERRNO(mprotect(p, bytes, PROT_READ | PROT_WRITE), EACCES);
	EXPECT_ERRNO(mprotect(p, bytes, PROT_READ | PROT_EXEC), EACCES);
	/* Half of it unmapped, the rest still counts as the mapping. */
	if (bytes > page) {
		TEST_ASSERT(!munmap(p, page), "munmap of the ring's first page");
		EXPECT_ERRNO(mmap(NULL, bytes, PROT_READ, MAP_SHARED, fd, 0) ==
			     MAP_FAILED ? -1 : 0, EBUSY);
		p = (char *)p + page;
		bytes -= page;
	}

	/* The consumer moves only forward, and not past the producer. */
	EXPECT_ERRNO(ioctl(fd, KVM_ASYNC_PF_USER_RING_ACCEPT, 1UL), ERANGE);
	EXPECT_ERRNO(ioctl(fd, KVM_ASYNC_PF_USER_RING_ACCEPT, 1UL << 32),
		     EINVAL);
	EXPECT_ERRNO(ioctl(fd, KVM_ASYNC_PF_USER_READY, NULL), ENOTTY);
	TEST_ASSERT(!ioctl(fd, KVM_ASYNC_PF_USER_RING_ACCEPT, 0UL),
		    "accepting nothing failed: %s", strerror(errno));

	/* The fd closed, the mapping holds the ring: still one per VM. */
	close(fd);
	EXPECT_ERRNO(ring_create(u.vm, 8, efd, 0), EEXIST);
	/* Unmapped and closed, the ring is gone: a new one can be made. */
	munmap(p, bytes);
	close(pipefd[0]);
	close(pipefd[1]);
	close(efd);
	pr_info("every bad ring request refused with its errno\n");

	ring_open(&u, &rv, 8);
	resolver_start(&r, &thread, &u, 0);
	ring_thread_start(&rv, &r);
	uf_run_guest(&u, &r, &s);
	ring_thread_stop(&rv);
	resolver_stop(&r, thread);
	TEST_ASSERT(rv.taken == u.nr_pages - 1 && !s.async_exits,
		    "%lu ring entries, %lu async exits after the bad input",
		    rv.taken, s.async_exits);
	pr_info("the guest ran to the end exitless (%lu ring entries)\n",
		rv.taken);
	ring_close(&rv);
	uf_vm_free(&u);
	return 0;
}

static void on_alarm(int sig)
{
}

/*
 * Run until the guest's first fault is in the ring and the guest was told
 * "not present" for it; return its token.  The guest then waits in its
 * handler for "page ready", and KVM_RUN does not return by itself: a
 * periodic timer signal ends each try (periodic, so that one landing
 * before the vCPU enters KVM_RUN cannot leave it there for good).
 */
static uint64_t first_ring_token(struct uf_vm *u, struct ring_vmm *rv)
{
	struct itimerval it = {
		.it_value.tv_usec = 50 * 1000,
		.it_interval.tv_usec = 50 * 1000,
	};
	struct itimerval off = { 0 };
	struct sigaction sa = { .sa_handler = on_alarm };
	uint64_t token = 0;
	int i;

	sigaction(SIGALRM, &sa, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	for (i = 0; i < 400; i++) {
		if (__atomic_load_n(&rv->ring->producer, __ATOMIC_ACQUIRE))
			token = rv->ring->entries[0].token;
		sync_global_from_guest(u->vm, last_token);
		if (token && last_token == token)
			break;
		TEST_ASSERT(__vcpu_run(u->vcpu) == -1 && errno == EINTR,
			    "KVM_RUN returned before the timer: exit %s",
			    exit_reason_str(u->vcpu->run->exit_reason));
	}
	setitimer(ITIMER_REAL, &off, NULL);
	TEST_ASSERT(token && last_token == token,
		    "no fault in the ring delivered after %d tries (token %#lx)",
		    i, token);
	return token;
}

/*
 * userfault_exitless_test teardown: entries outstanding when the ring is
 * closed (READY still completes their tokens, later faults exit), when
 * async #PF is turned off (READY gets ESTALE) and when the VM goes with
 * the ring still mapped (the mapping holds the VM until munmap).  The
 * debug tier's kmemleak scan and kvm.ko's unload check for leaks.
 */
static int test_exitless_teardown(int vms)
{
	struct run_stats s = { 0 };
	struct ring_vmm rv;
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	uint64_t token;
	int iter;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER_RING) > 0);

	/*
	 * The ring closed under the VMM's feet, with a fault outstanding:
	 * the resolver still completes it, and the other three exit.
	 */
	uf_vm_create(&u, 4, G_APF);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	ring_open(&u, &rv, 8);
	resolver_start(&r, &thread, &u, 0);
	rv.r = &r;
	first_ring_token(&u, &rv);
	ring_drain(&u, &rv);
	ring_close(&rv);
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	TEST_ASSERT(rv.taken == 1 && s.async_exits == 3 && r.completed == 4,
		    "ring closed after its first entry: %lu entries, %lu async exits, %u completed",
		    rv.taken, s.async_exits, r.completed);
	uf_vm_free(&u);
	pr_info("ring closed with an entry outstanding: its token completed, the other faults exited\n");

	/*
	 * The ring closed with an entry never read: KVM completes it, so the
	 * guest is told "page ready" (it asserts it within 30 s), retries,
	 * and the fault exits now that there is no ring.
	 */
	uf_vm_create(&u, 4, G_APF);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	wait_limit_tsc = 30000ULL * __vcpu_ioctl(u.vcpu, KVM_GET_TSC_KHZ, NULL);
	sync_global_to_guest(u.vm, wait_limit_tsc);
	ring_open(&u, &rv, 8);
	token = first_ring_token(&u, &rv);
	ring_close(&rv);
	/* Completed by the release, "page ready" not delivered yet. */
	EXPECT_ERRNO(async_pf_ready(u.vcpu, token, 0), EALREADY);
	memset(&s, 0, sizeof(s));
	resolver_start(&r, &thread, &u, 0);
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	TEST_ASSERT(s.async_exits == 4 && r.completed == 4,
		    "ring closed with its entry unread: %lu async exits, %u completed",
		    s.async_exits, r.completed);
	uf_vm_free(&u);
	wait_limit_tsc = 0;
	pr_info("ring closed with an entry unread: KVM completed it, the retry exited\n");

	/* Async #PF turned off with an entry outstanding. */
	uf_vm_create(&u, 4, G_APF);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	ring_open(&u, &rv, 8);
	token = first_ring_token(&u, &rv);
	vcpu_set_msr(u.vcpu, MSR_KVM_ASYNC_PF_EN, 0);
	EXPECT_ERRNO(async_pf_ready(u.vcpu, token, 0), ESTALE);
	ring_close(&rv);
	uf_vm_free(&u);
	pr_info("async #PF turned off with an entry outstanding: READY gets ESTALE\n");

	/* VMs destroyed with entries outstanding, the ring still mapped. */
	for (iter = 0; iter < vms; iter++) {
		uf_vm_create(&u, 4, G_APF);
		vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
		ring_open(&u, &rv, 8);
		first_ring_token(&u, &rv);
		close(rv.fd);
		uf_vm_free(&u);
		/*
		 * The ring is still there: the mapping holds it, and the VM.
		 * Dropped pages make the read fault the ring in again.
		 */
		TEST_ASSERT(!madvise(rv.ring, rv.bytes, MADV_DONTNEED),
			    "MADV_DONTNEED on the ring failed");
		TEST_ASSERT(__atomic_load_n(&rv.ring->producer,
					    __ATOMIC_ACQUIRE) == 1,
			    "the ring's mapping changed under the VMM");
		munmap(rv.ring, rv.bytes);
		close(rv.efd);
	}
	pr_info("%d VMs destroyed with an entry outstanding and the ring mapped\n",
		vms);
	return 0;
}

int main(int argc, char *argv[])
{
	const char *mode = argc > 1 ? argv[1] : "";

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_USERFAULT) == 1);

	if (!strcmp(mode, "async") && argc <= 6 &&
	    (argc < 6 || !strcmp(argv[5], "hold")))
		return test_exitless(arg_u64(argc, argv, 2, 32),
				     arg_u64(argc, argv, 3, 20),
				     arg_u64(argc, argv, 4, 64), argc == 6);
	if (!strcmp(mode, "bad-input") && argc == 2)
		return test_exitless_bad_input();
	if (!strcmp(mode, "teardown") && argc <= 3)
		return test_exitless_teardown(arg_u64(argc, argv, 2, 20));

	fprintf(stderr, "usage: %s async [pages [delay_ms [entries [hold]]]]\n"
		"       %s bad-input\n"
		"       %s teardown [vms]\n", argv[0], argv[0], argv[0]);
	return 1;
}
