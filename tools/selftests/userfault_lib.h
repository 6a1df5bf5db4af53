/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the userfault tests (userfault_test, userfault_state_test,
 * userfault_pt_test, userfault_exitless_test, userfault_bench) share:
 * the guest, the VM with its userfault slot, the resolver thread that
 * provides pages and completes tokens, and the loop that runs the guest.
 * Documentation/userfault.rst.
 *
 * The test memory is a userfault slot whose bitmap has every page marked;
 * its pages hold zeroes until the VMM "fetches" them, so a guest that read
 * a marked page without an exit would see the wrong data.
 *
 * The guest (guest_code()) reads each test page, checks its value, reads
 * them all again once the host has cleared their bits (STAGE_PASS2), and,
 * as its flags say, enables paravirtual async #PF first, reads one more
 * page with interrupts masked (STAGE_MASKED) and takes a genuine #PF at
 * the end.  Its "not present" handler does other work until "page ready".
 */
#ifndef SELFTEST_BACKPORT_USERFAULT_LIB_H
#define SELFTEST_BACKPORT_USERFAULT_LIB_H

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "backport_util.h"
#include "kvm_trace.h"

#define TEST_SLOT	1
#define TEST_GPA	0x40000000ULL

/* guest_code()'s flags */
#define G_APF		BIT(0)	/* enable paravirtual async #PF */
#define G_MASKED	BIT(1)	/* touch one more page with IF=0 */
#define G_GENUINE	BIT(2)	/* take a genuine #PF at the end */

/* Mapped nowhere in the guest's page tables: a read there is a #PF. */
#define GENUINE_PF_GVA	0x7f0000000000ULL

#define STAGE_PASS2	1
#define STAGE_MASKED	2

/*
 * Guest state besides apf_guest.h's; the host reads it through
 * addr_gva2hva() or syncs it.
 */
static uint64_t nr_worked, work_done;
/*
 * TSC cycles the first pass spent in its accesses to marked pages, and the
 * part of them the guest spent doing other work, i.e. in the "not present"
 * handler's work loop.
 */
static uint64_t access_tsc, busy_tsc;
/*
 * When the current access started, and the TSC cycles from the accesses
 * to their "not present" handlers: the vCPU was out of guest mode then.
 */
static uint64_t access_start, not_present_tsc;
/*
 * The last token a "not present" carried (the host resets it when it
 * moves the vCPU to a new VM, whose tokens start over), and how long a
 * handler may wait for "page ready" before the guest gives up (0: for
 * ever).
 */
static uint64_t last_token, wait_limit_tsc;
/* What the genuine #PF saw: the async #PF flags, and CR2. */
static uint64_t nr_genuine, genuine_flags, genuine_cr2;
/*
 * Where the guest reads its test pages: TEST_GPA, or userfault_pt_test's
 * PT_GVA.
 */
static uint64_t read_base = TEST_GPA;

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
	uint64_t before = READ_ONCE(work_done), start, cr2;

	asm volatile("mov %%cr2, %0" : "=r"(cr2));
	if (cr2 == GENUINE_PF_GVA) {
		/*
		 * The guest's own #PF, from KVM_ASM_SAFE: a stale "not
		 * present" left in the data area would show here, where a
		 * Linux guest would take this #PF for an async one.
		 */
		genuine_flags = apf_data.flags;
		genuine_cr2 = cr2;
		nr_genuine++;
		GUEST_ASSERT_2(regs->r9 == KVM_EXCEPTION_MAGIC &&
			       regs->rip == regs->r10, regs->rip, genuine_cr2);
		regs->rip = regs->r11;
		regs->r9 = regs->vector;
		return;
	}

	GUEST_ASSERT_2(apf_data.flags == KVM_PV_REASON_PAGE_NOT_PRESENT,
		       apf_data.flags, regs->rip);
	/* A new token of this vCPU (0): not one delivered before. */
	GUEST_ASSERT_2(token > last_token && !(token & 0xfff), token,
		       last_token);
	last_token = token;
	apf_data.flags = 0;
	nr_not_present++;
	not_present_tsc += rdtsc() - access_start;
	guest_apf_wait_begin();

	start = rdtsc();
	asm volatile("sti");
	while (!guest_apf_take_ready(token)) {
		guest_work();
		GUEST_ASSERT_2(!wait_limit_tsc ||
			       rdtsc() - start < wait_limit_tsc, token,
			       regs->rip);
	}
	asm volatile("cli");
	busy_tsc += rdtsc() - start;
	guest_apf_wait_end();

	if (READ_ONCE(work_done) != before)
		nr_worked++;
}

static uint64_t guest_read(uint64_t page)
{
	return READ_ONCE(*(uint64_t *)(read_base + page * PAGE_SIZE));
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
		WRITE_ONCE(access_start, start);
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

	if (flags & G_GENUINE) {
		uint8_t vector;

		vector = kvm_asm_safe("cmpb $0, (%[gva])",
				      [gva] "r"(GENUINE_PF_GVA));
		GUEST_ASSERT_2(vector == PF_VECTOR && nr_genuine == 1, vector,
			       nr_genuine);
		GUEST_ASSERT_2(!genuine_flags && genuine_cr2 == GENUINE_PF_GVA,
			       genuine_flags, genuine_cr2);
	}

	if (flags & G_APF)
		wrmsr(MSR_KVM_ASYNC_PF_EN, 0);
	GUEST_DONE();
}

/* ---- the VMM side --------------------------------------------------- */

struct fault;

struct uf_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	uint64_t nr_pages;	/* the guest's pages, plus one for G_MASKED */
	uint8_t *bitmap;
	uint8_t *mem;		/* host view of the slot */
	/*
	 * Called at every async exit before the vCPU runs again; false if
	 * the token is not to be completed (the item was dropped).
	 */
	bool (*at_async_exit)(struct uf_vm *u, struct fault *f);
	/* Called at every synchronous exit, before the page is provided. */
	void (*at_sync_exit)(struct uf_vm *u, struct fault *f);
	/* userfault_pt_test: the slot's page that is a page table, or ~0. */
	uint64_t pt_page;
	uint64_t pt_flags;	/* of its entries */
};

static inline int set_userfault_region(struct kvm_vm *vm,
				       struct kvm_userfault_memory_region *uf)
{
	return __vm_ioctl(vm, KVM_SET_USERFAULT_MEMORY_REGION, uf);
}

/* The test slot's region, as KVM_SET_USERFAULT_MEMORY_REGION wants it. */
static inline struct kvm_userfault_memory_region uf_region(struct uf_vm *u)
{
	struct kvm_userfault_memory_region uf = {
		.region = memslot2region(u->vm, TEST_SLOT)->region,
		.userfault_bitmap = (uint64_t)u->bitmap,
		.userfault_bitmap_size = DIV_ROUND_UP(u->nr_pages, 8),
	};

	uf.region.flags |= KVM_MEM_USERFAULT;
	return uf;
}

/*
 * A VM whose one vCPU, of id @vcpu_id, runs @code, with the userfault slot
 * of @nr_pages pages (and one more for G_MASKED), all marked, at TEST_GPA.
 */
static inline void uf_vm_create_id(struct uf_vm *u, uint64_t nr_pages,
				   void *code, uint32_t vcpu_id)
{
	struct kvm_userfault_memory_region uf;

	memset(u, 0, sizeof(*u));
	u->nr_pages = nr_pages + 1;
	u->pt_page = ~0ULL;
	u->pt_flags = PTE_PRESENT_MASK | PTE_WRITABLE_MASK;
	if (vcpu_id) {
		u->vm = vm_create(1);
		u->vcpu = vm_vcpu_add(u->vm, vcpu_id, code);
	} else {
		u->vm = vm_create_with_one_vcpu(&u->vcpu, code);
	}
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
}

static inline void uf_vm_create_code(struct uf_vm *u, uint64_t nr_pages,
				     void *code)
{
	uf_vm_create_id(u, nr_pages, code, 0);
}

/*
 * The VM of guest_code(), with G_* @flags, reading @nr_pages pages, on a
 * vCPU of id @vcpu_id.
 */
static inline void uf_vm_create_vcpu(struct uf_vm *u, uint64_t nr_pages,
				     uint64_t flags, uint32_t vcpu_id)
{
	uf_vm_create_id(u, nr_pages, guest_code, vcpu_id);
	vcpu_args_set(u->vcpu, 3, addr_gva2gpa(u->vm, (vm_vaddr_t)&apf_data),
		      nr_pages, flags);
}

static inline void uf_vm_create(struct uf_vm *u, uint64_t nr_pages,
				uint64_t flags)
{
	uf_vm_create_vcpu(u, nr_pages, flags, 0);
}

static inline void uf_vm_free(struct uf_vm *u)
{
	kvm_vm_free(u->vm);
	free(u->bitmap);
}

/*
 * "Fetch" page @page: fill it, then let the guest at it.  The page that is
 * a page table (userfault_pt_test) gets entries that map the data pages.
 */
static inline void resolve_page(struct uf_vm *u, uint64_t page)
{
	uint64_t *p = (uint64_t *)(u->mem + page * PAGE_SIZE);
	size_t i;

	for (i = 0; i < PAGE_SIZE / sizeof(*p); i++)
		p[i] = page != u->pt_page ? page_value(page) :
		       i >= u->pt_page ? 0 :
		       (TEST_GPA + i * PAGE_SIZE) | u->pt_flags;
	__atomic_fetch_and(&u->bitmap[page / 8], (uint8_t)~(1u << (page % 8)),
			   __ATOMIC_RELEASE);
}

static inline int async_pf_ready(struct kvm_vcpu *vcpu, uint64_t token,
				 uint64_t flags)
{
	struct kvm_async_pf_user_ready ready = {
		.token = token,
		.flags = flags,
	};

	return __vcpu_ioctl(vcpu, KVM_ASYNC_PF_USER_READY, &ready);
}

static inline uint64_t fault_page(struct kvm_run *run)
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
	unsigned int completed;	/* tokens READY was called for */
};

static inline void resolver_push(struct resolver *r, struct fault *f)
{
	pthread_mutex_lock(&r->lock);
	TEST_ASSERT(r->tail - r->head < ARRAY_SIZE(r->queue),
		    "more than %zu tokens outstanding", ARRAY_SIZE(r->queue));
	r->queue[r->tail++ % ARRAY_SIZE(r->queue)] = *f;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

/* The slow part of a real fault (network, disk), then the page. */
static inline void resolve_after_delay(struct resolver *r, struct fault *f)
{
	usleep(r->delay_ms * 1000);
	resolve_page(r->u, f->page);

	/* The vCPU thread resolves synchronous exits, the resolver the rest. */
	pthread_mutex_lock(&r->lock);
	r->resolved++;
	pthread_mutex_unlock(&r->lock);
}

/*
 * Wait (up to 20 s) until the guest was told "not present" for @token.
 * A READY that came before the vCPU's next entry would make KVM drop the
 * item instead, which is right but not what these flows test: how long
 * the vCPU thread takes to get back into KVM_RUN is up to the host's
 * scheduler, under software emulation more than ever.
 * userfault_state_test ready-first tests that path on purpose.
 */
static inline void resolver_wait_delivered(struct resolver *r, uint64_t token)
{
	int i;

	for (i = 0; i < 20000 && guest_u64_live(r->u->vm, &last_token) != token;
	     i++)
		usleep(1000);
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
		resolver_wait_delivered(r, f.token);
		ret = async_pf_ready(r->u->vcpu, f.token, 0);
		TEST_ASSERT(!ret, "KVM_ASYNC_PF_USER_READY(%#lx) failed: %s",
			    f.token, strerror(errno));

		pthread_mutex_lock(&r->lock);
		r->completed++;
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static inline void resolver_start(struct resolver *r, pthread_t *thread,
				  struct uf_vm *u, unsigned int delay_ms)
{
	memset(r, 0, sizeof(*r));
	r->u = u;
	r->delay_ms = delay_ms;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	pthread_create(thread, NULL, resolver_thread, r);
}

static inline void resolver_stop(struct resolver *r, pthread_t thread)
{
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(thread, NULL);
}

/* Wait until the resolver has completed every token it was given. */
static inline void resolver_wait_idle(struct resolver *r)
{
	bool idle;

	for (;;) {
		pthread_mutex_lock(&r->lock);
		idle = r->completed == r->tail;
		pthread_mutex_unlock(&r->lock);
		if (idle)
			return;
		usleep(1000);
	}
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
static inline void uf_run_guest(struct uf_vm *u, struct resolver *r,
				struct run_stats *s)
{
	bool pass2 = false, masked = false;
	struct kvm_run *run;
	struct ucall uc;
	struct fault f;
	int ret;

	for (;;) {
		/* at_async_exit() may have moved the vCPU to another VM. */
		run = u->vcpu->run;
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
				if (!u->at_async_exit || u->at_async_exit(u, &f))
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
			if (u->at_sync_exit)
				u->at_sync_exit(u, &f);
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

/* @call must fail with errno @err. */
#define EXPECT_ERRNO(call, err)						\
do {									\
	int __r = (call), __e = (err);					\
	TEST_ASSERT(__r == -1 && errno == __e,				\
		    "%s: %d (%s), expected %s", #call, __r,		\
		    __r ? strerror(errno) : "success", strerror(__e));	\
} while (0)

/* The guest's counters, into the host's variables of the same names. */
static inline void uf_guest_counters(struct kvm_vm *vm)
{
	apf_guest_sync_counters(vm);
	sync_global_from_guest(vm, nr_worked);
	sync_global_from_guest(vm, work_done);
	sync_global_from_guest(vm, access_tsc);
	sync_global_from_guest(vm, busy_tsc);
	sync_global_from_guest(vm, not_present_tsc);
}

/* What the guest and the trace saw, before a failing async check. */
static inline void async_failure_dump(struct kvm_vm *vm)
{
	uint64_t i;

	sync_global_from_guest(vm, ready_log);
	for (i = 0; i < nr_ready + nr_broadcast + nr_ready_spurious &&
	     i < APF_READY_LOG; i++)
		pr_info("guest: page ready %lu: token %#x\n", i, ready_log[i]);
	trace_lines("kvm_async_pf", "", true);
}

#endif
