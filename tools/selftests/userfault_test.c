// SPDX-License-Identifier: GPL-2.0-only
/*
 * userfault_test: VM-exit userfaults (KVM_MEM_USERFAULT) and userspace
 * async #PF (KVM_CAP_ASYNC_PF_USER).  Documentation/userfault.rst.
 *
 * The test memory is a userfault slot whose bitmap has every page marked;
 * its pages hold zeroes until the VMM "fetches" them, so a guest that read
 * a marked page without an exit would see the wrong data.
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
 *   userfault_test teardown
 *	Tokens outstanding when async #PF is turned off, when the VMM exits
 *	and when the VM is destroyed: READY fails afterwards, nothing WARNs,
 *	and nothing leaks (the harness boots with slub_nomerge and unloads
 *	kvm.ko at the end, whose kmem_cache_destroy() reports any async #PF
 *	item left over).
 *
 *   userfault_test bench [pages [delay_ms]]
 *	Not a test: prints the share of fault-wait time the vCPU spent
 *	running guest work, synchronous exits vs userspace async #PF.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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
#include "fd_passing.h"
#include "kvm_trace.h"

#define TEST_SLOT	1
#define TEST_GPA	0x40000000ULL

/* guest_code()'s flags */
#define G_APF		BIT(0)	/* enable paravirtual async #PF */
#define G_MASKED	BIT(1)	/* touch one more page with IF=0 */

#define STAGE_PASS2	1
#define STAGE_MASKED	2

/* Guest state; the host reads it through addr_gva2hva() or syncs it. */
static uint64_t nr_not_present;
static uint64_t nr_worked, work_done;
/*
 * TSC cycles the first pass spent in its accesses to marked pages, and the
 * part of them the guest spent doing other work, i.e. in the "not present"
 * handler's work loop.
 */
static uint64_t access_tsc, busy_tsc;

static uint64_t page_value(uint64_t page)
{
	return 0x5af0000000000000ULL | page;
}

static inline void guest_work(void)
{
	WRITE_ONCE(work_done, work_done + 1);
	cpu_relax();
}

/*
 * "Page not present": do other work, interrupts on, until "page ready"
 * for this token arrives; returning retries the access.
 */
static void guest_pf_handler(struct ex_regs *regs)
{
	uint32_t token = guest_apf_token();
	uint64_t before = READ_ONCE(work_done), start;

	GUEST_ASSERT_2(apf_data.flags == KVM_PV_REASON_PAGE_NOT_PRESENT,
		       apf_data.flags, regs->rip);
	apf_data.flags = 0;
	nr_not_present++;
	guest_apf_wait_begin();

	start = rdtsc();
	asm volatile("sti");
	while (!guest_apf_take_ready(token))
		guest_work();
	asm volatile("cli");
	busy_tsc += rdtsc() - start;
	guest_apf_wait_end();

	if (READ_ONCE(work_done) != before)
		nr_worked++;
}

static uint64_t guest_read(uint64_t page)
{
	return READ_ONCE(*(uint64_t *)(TEST_GPA + page * PAGE_SIZE));
}

static void guest_code(uint64_t apf_gpa, uint64_t nr_pages, uint64_t flags)
{
	uint64_t i, val, start;

	if (flags & G_APF)
		guest_apf_enable(apf_gpa);
	/* KVM only goes async while the guest can take an interrupt. */
	asm volatile("sti");
	for (i = 0; i < nr_pages; i++) {
		start = rdtsc();
		val = guest_read(i);
		access_tsc += rdtsc() - start;
		GUEST_ASSERT_2(val == page_value(i), i, val);
	}
	asm volatile("cli");

	/* The bits are clear now: no more exits. */
	GUEST_SYNC(STAGE_PASS2);
	for (i = 0; i < nr_pages; i++) {
		val = guest_read(i);
		GUEST_ASSERT_2(val == page_value(i), i, val);
	}

	if (flags & G_MASKED) {
		/* IF=0: async #PF cannot be delivered, the exit is sync. */
		GUEST_SYNC(STAGE_MASKED);
		val = guest_read(nr_pages);
		GUEST_ASSERT_2(val == page_value(nr_pages), nr_pages, val);
	}

	if (flags & G_APF)
		wrmsr(MSR_KVM_ASYNC_PF_EN, 0);
	GUEST_DONE();
}

/* ---- the VMM side --------------------------------------------------- */

struct uf_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	uint64_t nr_pages;	/* the guest's pages, plus one for G_MASKED */
	uint8_t *bitmap;
	uint8_t *mem;		/* host view of the slot */
};

static int set_userfault_region(struct kvm_vm *vm,
				struct kvm_userfault_memory_region *uf)
{
	return __vm_ioctl(vm, KVM_SET_USERFAULT_MEMORY_REGION, uf);
}

/* The test slot's region, as KVM_SET_USERFAULT_MEMORY_REGION wants it. */
static struct kvm_userfault_memory_region uf_region(struct uf_vm *u)
{
	struct kvm_userfault_memory_region uf = {
		.region = memslot2region(u->vm, TEST_SLOT)->region,
		.userfault_bitmap = (uint64_t)u->bitmap,
		.userfault_bitmap_size = DIV_ROUND_UP(u->nr_pages, 8),
	};

	uf.region.flags |= KVM_MEM_USERFAULT;
	return uf;
}

static void uf_vm_create(struct uf_vm *u, uint64_t nr_pages, uint64_t flags)
{
	struct kvm_userfault_memory_region uf;

	memset(u, 0, sizeof(*u));
	u->nr_pages = nr_pages + 1;
	u->vm = vm_create_with_one_vcpu(&u->vcpu, guest_code);
	vm_init_descriptor_tables(u->vm);
	vcpu_init_descriptor_tables(u->vcpu);
	vm_install_exception_handler(u->vm, PF_VECTOR, guest_pf_handler);
	vm_install_exception_handler(u->vm, APF_VECTOR, guest_ready_handler);

	vm_userspace_mem_region_add(u->vm, VM_MEM_SRC_ANONYMOUS, TEST_GPA,
				    TEST_SLOT, u->nr_pages, 0);
	virt_map(u->vm, TEST_GPA, TEST_GPA, u->nr_pages);
	u->mem = addr_gpa2hva(u->vm, TEST_GPA);

	u->bitmap = calloc(1, DIV_ROUND_UP(u->nr_pages, 8));
	TEST_ASSERT(u->bitmap, "out of memory");
	memset(u->bitmap, 0xff, DIV_ROUND_UP(u->nr_pages, 8));

	uf = uf_region(u);
	TEST_ASSERT(!set_userfault_region(u->vm, &uf),
		    "KVM_SET_USERFAULT_MEMORY_REGION failed: %s",
		    strerror(errno));

	vcpu_args_set(u->vcpu, 3, addr_gva2gpa(u->vm, (vm_vaddr_t)&apf_data),
		      nr_pages, flags);
}

static void uf_vm_free(struct uf_vm *u)
{
	kvm_vm_free(u->vm);
	free(u->bitmap);
}

/* "Fetch" page @page: fill it, then let the guest at it. */
static void resolve_page(struct uf_vm *u, uint64_t page)
{
	uint64_t *p = (uint64_t *)(u->mem + page * PAGE_SIZE);
	size_t i;

	for (i = 0; i < PAGE_SIZE / sizeof(*p); i++)
		p[i] = page_value(page);
	__atomic_fetch_and(&u->bitmap[page / 8], (uint8_t)~(1u << (page % 8)),
			   __ATOMIC_RELEASE);
}

static int async_pf_ready(struct kvm_vcpu *vcpu, uint64_t token,
			  uint64_t flags)
{
	struct kvm_async_pf_user_ready ready = {
		.token = token,
		.flags = flags,
	};

	return __vcpu_ioctl(vcpu, KVM_ASYNC_PF_USER_READY, &ready);
}

static uint64_t fault_page(struct kvm_run *run)
{
	uint64_t page = (run->memory_fault.gpa - TEST_GPA) / PAGE_SIZE;

	TEST_ASSERT(run->memory_fault.gpa >= TEST_GPA &&
		    !(run->memory_fault.gpa & (PAGE_SIZE - 1)) &&
		    run->memory_fault.size == PAGE_SIZE,
		    "memory fault at gpa 0x%llx size 0x%llx",
		    run->memory_fault.gpa, run->memory_fault.size);
	return page;
}

/* ---- the resolver: fills pages and completes tokens ------------------ */

struct fault {
	uint64_t token, page;
};

struct resolver {
	struct uf_vm *u;
	unsigned int delay_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fault queue[64];
	unsigned int head, tail;
	bool stop;
	uint64_t resolved;
};

static void resolver_push(struct resolver *r, struct fault *f)
{
	pthread_mutex_lock(&r->lock);
	TEST_ASSERT(r->tail - r->head < ARRAY_SIZE(r->queue),
		    "more than %zu tokens outstanding", ARRAY_SIZE(r->queue));
	r->queue[r->tail++ % ARRAY_SIZE(r->queue)] = *f;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* The slow part of a real fault (network, disk), then the page. */
static void resolve_after_delay(struct resolver *r, struct fault *f)
{
	usleep(r->delay_ms * 1000);
	resolve_page(r->u, f->page);

	/* The vCPU thread resolves synchronous exits, the resolver the rest. */
	pthread_mutex_lock(&r->lock);
	r->resolved++;
	pthread_mutex_unlock(&r->lock);
}

static void *resolver_thread(void *arg)
{
	struct resolver *r = arg;
	struct fault f;
	int ret;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (r->head == r->tail && !r->stop)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->head == r->tail)
			break;
		f = r->queue[r->head++ % ARRAY_SIZE(r->queue)];
		pthread_mutex_unlock(&r->lock);

		resolve_after_delay(r, &f);
		ret = async_pf_ready(r->u->vcpu, f.token, 0);
		TEST_ASSERT(!ret, "KVM_ASYNC_PF_USER_READY(%#lx) failed: %s",
			    f.token, strerror(errno));

		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* ---- running the guest ----------------------------------------------- */

struct run_stats {
	uint64_t sync_exits, async_exits, pass2_exits, masked_exits;
};

/*
 * Run the guest to GUEST_DONE.  Synchronous userfault exits are resolved
 * here, after @r's delay; async ones go to the resolver and the vCPU
 * runs again at once.
 */
static void run_guest(struct uf_vm *u, struct resolver *r,
		      struct run_stats *s)
{
	struct kvm_run *run = u->vcpu->run;
	bool pass2 = false, masked = false;
	struct ucall uc;
	struct fault f;
	int ret;

	for (;;) {
		ret = _vcpu_run(u->vcpu);
		if (ret) {
			TEST_ASSERT(errno == EFAULT &&
				    run->exit_reason == KVM_EXIT_MEMORY_FAULT,
				    "KVM_RUN: %s, exit reason %s",
				    strerror(errno),
				    exit_reason_str(run->exit_reason));
			f.page = fault_page(run);
			f.token = run->memory_fault.token;
			TEST_ASSERT(f.page < u->nr_pages,
				    "fault on page %lu of %lu", f.page,
				    u->nr_pages);
			if (pass2)
				s->pass2_exits++;
			if (masked)
				s->masked_exits++;

			if (run->memory_fault.flags ==
			    (KVM_MEMORY_EXIT_FLAG_USERFAULT |
			     KVM_MEMORY_EXIT_FLAG_ASYNC_PF_USER)) {
				TEST_ASSERT(f.token, "async exit without token");
				s->async_exits++;
				resolver_push(r, &f);
				continue;
			}
			TEST_ASSERT(run->memory_fault.flags ==
				    KVM_MEMORY_EXIT_FLAG_USERFAULT &&
				    !f.token,
				    "memory fault flags %#llx token %#llx",
				    run->memory_fault.flags,
				    run->memory_fault.token);
			s->sync_exits++;
			resolve_after_delay(r, &f);
			continue;
		}

		TEST_ASSERT(run->exit_reason == KVM_EXIT_IO,
			    "unexpected exit %s",
			    exit_reason_str(run->exit_reason));
		switch (get_ucall(u->vcpu, &uc)) {
		case UCALL_SYNC:
			if (uc.args[1] == STAGE_PASS2) {
				pass2 = true;
			} else if (uc.args[1] == STAGE_MASKED) {
				pass2 = false;
				masked = true;
			}
			break;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT_2(uc, "values 0x%lx, 0x%lx");
		case UCALL_DONE:
			return;
		default:
			TEST_FAIL("unexpected ucall %lu", uc.cmd);
		}
	}
}

static void resolver_start(struct resolver *r, pthread_t *thread,
			   struct uf_vm *u, unsigned int delay_ms)
{
	memset(r, 0, sizeof(*r));
	r->u = u;
	r->delay_ms = delay_ms;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_create(thread, NULL, resolver_thread, r);
}

static void resolver_stop(struct resolver *r, pthread_t thread)
{
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(thread, NULL);
}

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
	run_guest(&u, &r, &s);
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

/* ---- async ----------------------------------------------------------- */

/* Count the lines of the trace buffer that have all of @words. */
static uint64_t trace_count(const char *w1, const char *w2)
{
	FILE *f = fopen(TRACE_DIR "/trace", "r");
	char line[512];
	uint64_t n = 0;

	TEST_ASSERT(f, "cannot read " TRACE_DIR "/trace");
	while (fgets(line, sizeof(line), f))
		if (strstr(line, w1) && strstr(line, w2))
			n++;
	fclose(f);
	return n;
}

static void trace_clear(void)
{
	int fd = open(TRACE_DIR "/trace", O_WRONLY | O_TRUNC);

	TEST_ASSERT(fd >= 0, "cannot clear " TRACE_DIR "/trace");
	close(fd);
}

static void guest_counters(struct kvm_vm *vm)
{
	sync_global_from_guest(vm, nr_not_present);
	sync_global_from_guest(vm, nr_ready);
	sync_global_from_guest(vm, nr_broadcast);
	sync_global_from_guest(vm, nr_ready_overflow);
	sync_global_from_guest(vm, ready_tokens);
	sync_global_from_guest(vm, nr_nested);
	sync_global_from_guest(vm, nr_worked);
	sync_global_from_guest(vm, work_done);
	sync_global_from_guest(vm, access_tsc);
	sync_global_from_guest(vm, busy_tsc);
}

static int test_async(uint64_t nr_pages, unsigned int delay_ms)
{
	struct run_stats s = { 0 };
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	bool traced;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);

	traced = !trace_set("kvm_async_pf_completed", "1") &&
		 !trace_set("kvm_async_pf_not_present", "1");
	TEST_ASSERT(traced, "cannot enable the async #PF trace events");
	trace_clear();

	uf_vm_create(&u, nr_pages, G_APF | G_MASKED);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	resolver_start(&r, &thread, &u, delay_ms);
	run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	guest_counters(u.vm);

	pr_info("%lu pages, resolver delay %u ms: %lu async exits, %lu sync, %lu with IF=0, %lu on the second pass\n",
		nr_pages, delay_ms, s.async_exits, s.sync_exits,
		s.masked_exits, s.pass2_exits);
	pr_info("guest: %lu not present, %lu ready (+%lu broadcast), work during %lu waits\n",
		nr_not_present, nr_ready, nr_broadcast, nr_worked);

	TEST_ASSERT(s.async_exits == nr_pages && r.resolved == nr_pages + 1,
		    "%lu async exits, %lu pages resolved, for %lu pages",
		    s.async_exits, r.resolved, nr_pages);
	TEST_ASSERT(s.masked_exits == 1 && s.sync_exits == 1,
		    "IF=0 access: %lu exits, %lu sync", s.masked_exits,
		    s.sync_exits);
	TEST_ASSERT(!s.pass2_exits, "%lu exits for cleared pages",
		    s.pass2_exits);
	TEST_ASSERT(nr_not_present == nr_pages && nr_ready == nr_pages &&
		    !nr_ready_overflow && !apf_ready_left() &&
		    nr_broadcast == 1,
		    "guest saw %lu not present, %lu ready, %lu lost, %d never taken, %lu broadcast",
		    nr_not_present, nr_ready, nr_ready_overflow,
		    apf_ready_left(), nr_broadcast);
	/* Not every wait: a descheduled vCPU may find "ready" due at once. */
	TEST_ASSERT(nr_worked * 2 >= nr_pages,
		    "the guest did other work during only %lu of %lu waits",
		    nr_worked, nr_pages);

	TEST_ASSERT(trace_count("kvm_async_pf_not_present", "type user") == nr_pages &&
		    trace_count("kvm_async_pf_completed", "type user") == nr_pages &&
		    !trace_count("kvm_async_pf", "type kernel"),
		    "trace: %lu user not-present, %lu user completed, %lu kernel",
		    trace_count("kvm_async_pf_not_present", "type user"),
		    trace_count("kvm_async_pf_completed", "type user"),
		    trace_count("kvm_async_pf", "type kernel"));
	trace_set("kvm_async_pf_completed", "0");
	trace_set("kvm_async_pf_not_present", "0");

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

#define EXPECT_ERRNO(call, err)						\
do {									\
	int __r = (call), __e = (err);					\
	TEST_ASSERT(__r == -1 && errno == __e,				\
		    "%s: %d (%s), expected %s", #call, __r,		\
		    __r ? strerror(errno) : "success", strerror(__e));	\
} while (0)

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
	run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	guest_counters(u.vm);
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

static int test_teardown(void)
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
	for (iter = 0; iter < 20; iter++) {
		uf_vm_create(&u, 4, G_APF);
		vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
		first_token(&u);
		uf_vm_free(&u);
	}
	pr_info("20 VMs destroyed with a token outstanding\n");

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

/* ---- bench ------------------------------------------------------------ */

static void bench_one(const char *name, uint64_t nr_pages,
		      unsigned int delay_ms, bool async, uint64_t tsc_khz)
{
	struct run_stats s = { 0 };
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;

	uf_vm_create(&u, nr_pages, G_APF);
	if (async)
		vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	resolver_start(&r, &thread, &u, delay_ms);
	run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	guest_counters(u.vm);

	TEST_ASSERT(r.resolved == nr_pages && access_tsc,
		    "%lu of %lu pages resolved", r.resolved, nr_pages);
	printf("%-22s %6lu %6lu %6lu %10.1f %10.1f %12lu %7.1f%%\n", name,
	       nr_pages, s.async_exits, s.sync_exits,
	       (double)access_tsc / tsc_khz / nr_pages,
	       (double)busy_tsc / tsc_khz, work_done,
	       100.0 * busy_tsc / access_tsc);
	uf_vm_free(&u);
}

/*
 * The guest reads @nr_pages marked pages, one after another; each takes
 * the resolver @delay_ms to provide.  Its TSC says how long the accesses
 * took in all, and how much of that it spent in its "not present"
 * handler's work loop, i.e. running other guest work.
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
	printf("share = guest work during the fault waits / fault-wait time (guest TSC)\n");
	printf("%-22s %6s %6s %6s %10s %10s %12s %8s\n", "mode", "pages",
	       "async", "sync", "wait/page", "work", "work loop", "share");
	printf("%-22s %6s %6s %6s %10s %10s %12s %8s\n", "", "", "exits",
	       "exits", "ms", "ms", "iterations", "");
	bench_one("synchronous exits", nr_pages, delay_ms, false, tsc_khz);
	bench_one("userspace async #PF", nr_pages, delay_ms, true, tsc_khz);
	return 0;
}

int main(int argc, char *argv[])
{
	const char *mode = argc > 1 ? argv[1] : "sync";
	uint64_t pages = argc > 2 ? strtoull(argv[2], NULL, 0) : 32;
	unsigned int delay = argc > 3 ? strtoul(argv[3], NULL, 0) : 20;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_USERFAULT) == 1);

	if (!strcmp(mode, "sync"))
		return test_sync(pages);
	if (!strcmp(mode, "async"))
		return test_async(pages, delay);
	if (!strcmp(mode, "bad-input"))
		return test_bad_input();
	if (!strcmp(mode, "teardown"))
		return test_teardown();
	if (!strcmp(mode, "bench"))
		return bench(pages, delay);

	fprintf(stderr, "usage: %s sync|async|bad-input|teardown|bench [pages [delay_ms]]\n",
		argv[0]);
	return 1;
}
