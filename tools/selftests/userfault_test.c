// SPDX-License-Identifier: GPL-2.0-only
/*
 * userfault_test: VM-exit userfaults (KVM_MEM_USERFAULT) and userspace
 * async #PF (KVM_CAP_ASYNC_PF_USER).  Documentation/userfault.rst.
 *
 * The test memory is a userfault slot whose bitmap has every page marked;
 * its pages hold zeroes until the VMM "fetches" them, so a guest that read
 * a marked page without an exit would see the wrong data.  The guest, the
 * VM and the resolver are in userfault_lib.h.
 *
 *   userfault_test sync [pages]
 *	Every first access exits with KVM_EXIT_MEMORY_FAULT, the page's gpa
 *	and KVM_MEMORY_EXIT_FLAG_USERFAULT; the VMM fills the page and clears
 *	the bit.  A second pass over the cleared pages makes no exit.  Dirty
 *	logging is turned on first with the plain KVM_SET_USER_MEMORY_REGION,
 *	which must leave the slot a userfault slot.
 *
 *   userfault_test async [pages [delay_ms]]
 *	The guest has paravirtual async #PF and the VM KVM_CAP_ASYNC_PF_USER.
 *	Each exit carries a token; the VMM runs the vCPU again at once and a
 *	resolver thread fills the page after delay_ms and completes the token
 *	with KVM_ASYNC_PF_USER_READY.  The guest must get "page not present",
 *	do other work until "page ready" for that token, and read the right
 *	data; the trace events must name the async #PFs "user".  An access
 *	with interrupts masked must still exit synchronously.
 *
 *   userfault_test bad-input
 *	Every invalid request gets its documented errno, and the VM then
 *	runs the sync flow to the end.
 *
 *   userfault_test teardown [vms]
 *	Tokens outstanding when async #PF is turned off, when the VMM exits
 *	and when the VM is destroyed (vms times, 20 by default): READY
 *	fails afterwards, nothing WARNs, and nothing leaks (the harness
 *	boots with slub_nomerge and unloads kvm.ko at the end, whose
 *	kmem_cache_destroy() reports any async #PF item left over).
 *
 * pages defaults to 32, delay_ms to 20.  The other userfault tests:
 * userfault_state_test (vCPU state operations at an async exit),
 * userfault_pt_test (marked guest and nested page tables),
 * userfault_exitless_test (KVM_ASYNC_PF_USER_RING) and userfault_bench.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "backport_util.h"
#include "fd_passing.h"
#include "kvm_trace.h"
#include "userfault_lib.h"

/* ---- sync ------------------------------------------------------------ */

static int test_sync(uint64_t nr_pages)
{
	struct run_stats s = { 0 };
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_USERFAULT) == 1);

	uf_vm_create(&u, nr_pages, 0);
	vm_mem_region_set_flags(u.vm, TEST_SLOT, KVM_MEM_LOG_DIRTY_PAGES);
	resolver_start(&r, &thread, &u, 0);
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);

	pr_info("%lu pages: %lu synchronous userfault exits, %lu on the second pass\n",
		nr_pages, s.sync_exits, s.pass2_exits);
	TEST_ASSERT(s.sync_exits == nr_pages && !s.async_exits,
		    "%lu sync + %lu async exits for %lu marked pages",
		    s.sync_exits, s.async_exits, nr_pages);
	TEST_ASSERT(!s.pass2_exits, "%lu exits for cleared pages",
		    s.pass2_exits);

	uf_vm_free(&u);
	return 0;
}

/* ---- a vCPU id the token cannot hold ---------------------------------- */

/* Above the 12 bits a token has for its vCPU. */
#define HIGH_VCPU_ID	4097

/*
 * A vCPU whose id does not fit in the token (6.12 allows ids up to
 * 16383) gets synchronous exits only: its tokens would name another
 * vCPU, or collide with its own (ids 4097, sequences 2 and 3: both
 * 0x3001).  6.1 allows no such id, so this skips there.
 */
static int test_high_id(uint64_t nr_pages)
{
	struct run_stats s = { 0 };
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_MAX_VCPU_ID) > HIGH_VCPU_ID);

	uf_vm_create_vcpu(&u, nr_pages, G_APF, HIGH_VCPU_ID);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	resolver_start(&r, &thread, &u, 0);
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);

	pr_info("vCPU %u, %lu pages: %lu synchronous exits, %lu async\n",
		HIGH_VCPU_ID, nr_pages, s.sync_exits, s.async_exits);
	TEST_ASSERT(s.sync_exits == nr_pages && !s.async_exits,
		    "vCPU %u: %lu sync + %lu async exits for %lu marked pages",
		    HIGH_VCPU_ID, s.sync_exits, s.async_exits, nr_pages);

	uf_vm_free(&u);
	return 0;
}

/* ---- async ----------------------------------------------------------- */

static int test_async(uint64_t nr_pages, unsigned int delay_ms)
{
	struct run_stats s = { 0 };
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	bool traced, guest_ok;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);

	traced = !trace_set("kvm_async_pf_completed", "1") &&
		 !trace_set("kvm_async_pf_not_present", "1");
	/* Only for the trace printed on a failure. */
	trace_set("kvm_async_pf_ready", "1");
	trace_set("kvm_async_pf_user_dropped", "1");
	TEST_ASSERT(traced, "cannot enable the async #PF trace events");
	TEST_ASSERT(!trace_clear(), "cannot clear " TRACE_DIR "/trace");

	uf_vm_create(&u, nr_pages, G_APF | G_MASKED);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	resolver_start(&r, &thread, &u, delay_ms);
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	uf_guest_counters(u.vm);

	pr_info("%lu pages, resolver delay %u ms: %lu async exits, %lu sync, %lu with IF=0, %lu on the second pass\n",
		nr_pages, delay_ms, s.async_exits, s.sync_exits,
		s.masked_exits, s.pass2_exits);
	pr_info("guest: %lu not present, %lu ready (+%lu broadcast, %lu without a token), work during %lu waits\n",
		nr_not_present, nr_ready, nr_broadcast, nr_ready_spurious,
		nr_worked);

	TEST_ASSERT(s.async_exits == nr_pages && r.resolved == nr_pages + 1,
		    "%lu async exits, %lu pages resolved, for %lu pages",
		    s.async_exits, r.resolved, nr_pages);
	TEST_ASSERT(s.masked_exits == 1 && s.sync_exits == 1,
		    "IF=0 access: %lu exits, %lu sync", s.masked_exits,
		    s.sync_exits);
	TEST_ASSERT(!s.pass2_exits, "%lu exits for cleared pages",
		    s.pass2_exits);
	guest_ok = nr_not_present == nr_pages && nr_ready == nr_pages &&
		   !nr_ready_overflow && !apf_ready_left() &&
		   nr_broadcast == 1 && nr_ready_spurious * 4 <= nr_ready;
	if (!guest_ok)
		async_failure_dump(u.vm);
	TEST_ASSERT(guest_ok,
		    "guest saw %lu not present, %lu ready, %lu lost, %d never taken, %lu broadcast, %lu without a token",
		    nr_not_present, nr_ready, nr_ready_overflow,
		    apf_ready_left(), nr_broadcast, nr_ready_spurious);
	/* Not every wait: a descheduled vCPU may find "ready" due at once. */
	TEST_ASSERT(nr_worked * 2 >= nr_pages,
		    "the guest did other work during only %lu of %lu waits",
		    nr_worked, nr_pages);

	/* (The "wake all" at enable is a kernel item: it is only "ready".) */
	TEST_ASSERT(trace_count("kvm_async_pf_not_present", "type user") == nr_pages &&
		    trace_count("kvm_async_pf_completed", "type user") == nr_pages &&
		    !trace_count("kvm_async_pf_not_present", "type kernel") &&
		    !trace_count("kvm_async_pf_completed", "type kernel"),
		    "trace: %lu user not-present, %lu user completed, %lu+%lu kernel",
		    trace_count("kvm_async_pf_not_present", "type user"),
		    trace_count("kvm_async_pf_completed", "type user"),
		    trace_count("kvm_async_pf_not_present", "type kernel"),
		    trace_count("kvm_async_pf_completed", "type kernel"));
	trace_set("kvm_async_pf_completed", "0");
	trace_set("kvm_async_pf_not_present", "0");
	trace_set("kvm_async_pf_ready", "0");
	trace_set("kvm_async_pf_user_dropped", "0");

	uf_vm_free(&u);
	return 0;
}

/* ---- one async exit, for the error and teardown cases ---------------- */

/*
 * Run until the guest's first access exits with a token, and return it.
 * The guest is then in its "not present" handler once it runs again.
 */
static uint64_t first_token(struct uf_vm *u)
{
	struct kvm_run *run = u->vcpu->run;
	int ret;

	ret = _vcpu_run(u->vcpu);
	TEST_ASSERT(ret == -1 && errno == EFAULT &&
		    run->exit_reason == KVM_EXIT_MEMORY_FAULT &&
		    (run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_ASYNC_PF_USER),
		    "KVM_RUN %d (%s), exit %s, flags %#llx: no async exit",
		    ret, strerror(errno), exit_reason_str(run->exit_reason),
		    run->memory_fault.flags);
	TEST_ASSERT(fault_page(run) == 0, "first fault on page %lu",
		    fault_page(run));
	return run->memory_fault.token;
}

/* ---- bad-input -------------------------------------------------------- */

static void bad_regions(struct uf_vm *u)
{
	struct kvm_userfault_memory_region uf;
	struct kvm_userspace_memory_region plain;
	void *gone;

	uf = uf_region(u);
	uf.flags = 1;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EINVAL);
	uf = uf_region(u);
	uf.pad2[3] = 1;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EINVAL);
	uf = uf_region(u);
	uf.userfault_bitmap = 0;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EINVAL);
	uf = uf_region(u);
	uf.region.flags &= ~KVM_MEM_USERFAULT;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EINVAL);
	uf = uf_region(u);
	uf.region.slot = 32767;		/* >= KVM_USER_MEM_SLOTS */
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EINVAL);

	/* A bitmap that does not cover the slot. */
	uf = uf_region(u);
	uf.userfault_bitmap_size = DIV_ROUND_UP(u->nr_pages, 8) - 1;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), ENOBUFS);

	/*
	 * An unknown region flag is EINVAL, after the bitmap's own checks:
	 * the same errno for the same call on every series.
	 */
	uf = uf_region(u);
	uf.region.flags |= 1u << 14;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EINVAL);
	uf.userfault_bitmap_size = DIV_ROUND_UP(u->nr_pages, 8) - 1;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), ENOBUFS);

	/* Bitmaps that cannot be read: unmapped, and a kernel address. */
	gone = mmap(NULL, PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	TEST_ASSERT(gone != MAP_FAILED, "mmap failed");
	munmap(gone, PAGE_SIZE);
	uf = uf_region(u);
	uf.userfault_bitmap = (uint64_t)gone;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EFAULT);
	uf.userfault_bitmap = 0xffff888000000000ULL;
	EXPECT_ERRNO(set_userfault_region(u->vm, &uf), EFAULT);

	/* The flag needs the bitmap, i.e. the new ioctl. */
	plain = memslot2region(u->vm, TEST_SLOT)->region;
	plain.flags |= KVM_MEM_USERFAULT;
	EXPECT_ERRNO(__vm_ioctl(u->vm, KVM_SET_USER_MEMORY_REGION, &plain),
		     EINVAL);
}

static int test_bad_input(void)
{
	struct kvm_userfault_memory_region uf;
	struct kvm_enable_cap cap = { .cap = KVM_CAP_ASYNC_PF_USER };
	struct run_stats s = { 0 };
	struct kvm_vcpu *other;
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	uint8_t *moved;
	uint64_t token;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);

	uf_vm_create(&u, 4, G_APF);
	other = vm_vcpu_add(u.vm, 1, guest_code);

	bad_regions(&u);

	/* READY before the VM enabled the feature. */
	EXPECT_ERRNO(async_pf_ready(u.vcpu, 1 << 12, 0), EOPNOTSUPP);

	cap.args[0] = 1;
	EXPECT_ERRNO(__vm_ioctl(u.vm, KVM_ENABLE_CAP, &cap), EINVAL);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);

	token = first_token(&u);
	pr_info("token %#lx for vCPU 0\n", token);

	EXPECT_ERRNO(async_pf_ready(u.vcpu, token, 1), EINVAL);
	/* Never issued: 0, above 32 bits, a later sequence number. */
	EXPECT_ERRNO(async_pf_ready(u.vcpu, 0, 0), ENOENT);
	EXPECT_ERRNO(async_pf_ready(u.vcpu, token | 1ULL << 40, 0), ENOENT);
	EXPECT_ERRNO(async_pf_ready(u.vcpu, token + (100 << 12), 0), ENOENT);
	/* vCPU 0's token on vCPU 1, and a token of a vCPU that does not exist. */
	EXPECT_ERRNO(async_pf_ready(other, token, 0), EXDEV);
	EXPECT_ERRNO(async_pf_ready(u.vcpu, (token & ~0xfffULL) | 7, 0), ENOENT);

	/* Completed once; again before the guest was told: EALREADY. */
	resolve_page(&u, 0);
	TEST_ASSERT(!async_pf_ready(u.vcpu, token, 0), "READY failed: %s",
		    strerror(errno));
	EXPECT_ERRNO(async_pf_ready(u.vcpu, token, 0), EALREADY);

	/*
	 * A bitmap that went away: KVM_RUN fails with EFAULT and not with
	 * a memory fault exit; a readable bitmap again, and the VM goes on.
	 */
	moved = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(moved != MAP_FAILED, "mmap failed");
	memcpy(moved, u.bitmap, DIV_ROUND_UP(u.nr_pages, 8));
	uf = uf_region(&u);
	uf.userfault_bitmap = (uint64_t)moved;
	TEST_ASSERT(!set_userfault_region(u.vm, &uf), "new bitmap: %s",
		    strerror(errno));
	munmap(moved, PAGE_SIZE);
	EXPECT_ERRNO(_vcpu_run(u.vcpu), EFAULT);
	TEST_ASSERT(u.vcpu->run->exit_reason != KVM_EXIT_MEMORY_FAULT,
		    "unreadable bitmap reported as a memory fault exit");
	uf = uf_region(&u);
	TEST_ASSERT(!set_userfault_region(u.vm, &uf), "old bitmap: %s",
		    strerror(errno));

	/* The VM still works: finish the guest, async exits and all. */
	resolver_start(&r, &thread, &u, 1);
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	uf_guest_counters(u.vm);
	TEST_ASSERT(nr_ready == nr_not_present && !nr_ready_overflow &&
		    !apf_ready_left(),
		    "after the bad inputs: %lu not present, %lu ready, %d never taken",
		    nr_not_present, nr_ready, apf_ready_left());

	/* Delivered and freed: stale. */
	EXPECT_ERRNO(async_pf_ready(u.vcpu, token, 0), ESTALE);
	pr_info("every bad input refused with its errno; the guest ran to the end (%lu async, %lu sync exits)\n",
		s.async_exits, s.sync_exits);

	uf_vm_free(&u);
	return 0;
}

/* ---- teardown --------------------------------------------------------- */

static int test_teardown(int vms)
{
	uint64_t token;
	struct uf_vm u;
	int sv[2], vcpu_fd, status, iter;
	pid_t child;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);

	/* The guest turns async #PF off... here the VMM does it for it. */
	uf_vm_create(&u, 4, G_APF);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	token = first_token(&u);
	vcpu_set_msr(u.vcpu, MSR_KVM_ASYNC_PF_EN, 0);
	EXPECT_ERRNO(async_pf_ready(u.vcpu, token, 0), ESTALE);
	uf_vm_free(&u);
	pr_info("async #PF turned off with a token outstanding: READY gets ESTALE\n");

	/* VMs destroyed with tokens outstanding, over and over. */
	for (iter = 0; iter < vms; iter++) {
		uf_vm_create(&u, 4, G_APF);
		vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
		first_token(&u);
		uf_vm_free(&u);
	}
	pr_info("%d VMs destroyed with a token outstanding\n", vms);

	/*
	 * A VMM that exits with a token outstanding, while another process
	 * holds its vCPU: READY from there fails (not the VM's owner), and
	 * the VM goes with the last fd.
	 */
	TEST_ASSERT(!socketpair(AF_UNIX, SOCK_STREAM, 0, sv), "socketpair");
	child = fork();
	TEST_ASSERT(child >= 0, "fork failed");
	if (!child) {
		close(sv[0]);
		uf_vm_create(&u, 4, G_APF);
		vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
		token = first_token(&u);
		send_fds(sv[1], &u.vcpu->fd, 1);
		TEST_ASSERT(write(sv[1], &token, sizeof(token)) == sizeof(token),
			    "write failed");
		_exit(0);
	}
	close(sv[1]);
	recv_fds(sv[0], &vcpu_fd, 1);
	TEST_ASSERT(read(sv[0], &token, sizeof(token)) == sizeof(token),
		    "read failed");
	TEST_ASSERT(waitpid(child, &status, 0) == child &&
		    WIFEXITED(status) && !WEXITSTATUS(status),
		    "VMM child failed, status %#x", status);
	{
		struct kvm_async_pf_user_ready ready = { .token = token };

		EXPECT_ERRNO(ioctl(vcpu_fd, KVM_ASYNC_PF_USER_READY, &ready),
			     EIO);
	}
	close(vcpu_fd);
	close(sv[0]);
	pr_info("VMM gone with a token outstanding: READY from another process gets EIO\n");
	return 0;
}

int main(int argc, char *argv[])
{
	const char *mode = argc > 1 ? argv[1] : "sync";

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_USERFAULT) == 1);

	if (!strcmp(mode, "sync") && argc <= 3)
		return test_sync(arg_u64(argc, argv, 2, 32));
	if (!strcmp(mode, "async") && argc <= 4)
		return test_async(arg_u64(argc, argv, 2, 32),
				  arg_u64(argc, argv, 3, 20));
	if (!strcmp(mode, "high-id") && argc <= 3)
		return test_high_id(arg_u64(argc, argv, 2, 16));
	if (!strcmp(mode, "bad-input") && argc == 2)
		return test_bad_input();
	if (!strcmp(mode, "teardown") && argc <= 3)
		return test_teardown(arg_u64(argc, argv, 2, 20));

	fprintf(stderr, "usage: %s sync [pages]\n"
		"       %s async [pages [delay_ms]]\n"
		"       %s high-id [pages]\n"
		"       %s bad-input\n"
		"       %s teardown [vms]\n", argv[0], argv[0], argv[0], argv[0],
		argv[0]);
	return 1;
}
