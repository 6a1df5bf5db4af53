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
 *   userfault_test state OP [pages]
 *	As async, with the VMM doing OP to the vCPU at every page's first
 *	async exit, before it runs the vCPU again: regs (GET and SET of the
 *	same REGS), sregs, events (SREGS and VCPU_EVENTS saved and restored
 *	in QEMU's order, without KVM_CAP_EXCEPTION_PAYLOAD), msrs (the async
 *	#PF MSRs written back), apf-cycle (MSR_KVM_ASYNC_PF_EN off and on
 *	again: the token is dropped, READY gets ESTALE), fpu (FPU and XSAVE),
 *	lapic, migrate and migrate-payload (the vCPU saved and loaded into a
 *	fresh VM on the same memory, without and with exception payload),
 *	smm (the vCPU put into SMM with KVM_SET_VCPU_EVENTS: the token is
 *	dropped, the access exits synchronously, and the VMM takes the vCPU
 *	out of SMM again there), ready-first (the page provided and READY
 *	called before the vCPU runs again: the guest is told nothing).
 *	On 6.1 sregs, events, msrs, fpu and lapic did not lose the pending
 *	"not present" even before it was deferred to the entry; they stay
 *	as checks that it is delivered, once, whatever the VMM does.
 *	The guest asserts that every "not present" carries a new token of
 *	its own, that it gets "page ready" for each within a time limit, and
 *	that a genuine #PF taken afterwards sees no async #PF flag and its
 *	own address in CR2.
 *
 *   userfault_test pt [pages [async]]
 *	The guest reads the marked pages through a guest page table that is
 *	itself a marked page of the slot: the first exit must name the page
 *	table (KVM must not read it before the VMM provided it, whether the
 *	hardware or KVM's own walker walks the guest's tables, i.e. with
 *	TDP or shadow paging), then each data page.  With "async", the data
 *	pages go through userspace async #PF, and at the second page's exit
 *	the VMM marks the table again (as not fetched): the guest's retry
 *	must exit on the table once more, a synchronous exit with no token
 *	when KVM walks the tables itself.
 *
 *   userfault_test nested [pages]
 *	An L2 guest on nested paging (SVM's NPT, set up by L1) reads the
 *	marked pages; the last-level table of L1's nested page tables for
 *	them is itself a marked page.  KVM walks L1's tables itself here:
 *	the first exit must name that table, then each data page.
 *
 *   userfault_test exitless [pages [delay_ms [entries [hold]]]]
 *	The async flow with a KVM_ASYNC_PF_USER_RING ring: no fault that can
 *	go async may exit.  With "hold" the VMM reads entries but never
 *	accepts them: once the ring is full the faults must exit.
 *
 *   userfault_test exitless-bad-input
 *	Every bad ring request and mapping gets its errno; the VM then runs
 *	the exitless flow to the end.
 *
 *   userfault_test exitless-teardown
 *	The ring closed with an entry read, and with one unread (KVM must
 *	complete that one), async #PF turned off and VMs destroyed with
 *	entries outstanding.
 *
 *   userfault_test bench [pages [delay_ms]]
 *	Not a test: prints, per fault, the exits, the vCPU's time out of
 *	guest mode and the share of the fault-wait time the guest spent on
 *	other work, for synchronous exits, userspace async #PF with exits,
 *	and exitless (a ring).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "kvm_util.h"
#include "processor.h"
#include "svm_util.h"
#include "apf_guest.h"
#include "fd_passing.h"
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

/* Guest state; the host reads it through addr_gva2hva() or syncs it. */
static uint64_t nr_not_present;
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
/* Where the guest reads its test pages: TEST_GPA, or PT_GVA in pt mode. */
static uint64_t read_base = TEST_GPA;

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
	/* pt and nested modes: the slot's page that is a page table, or ~0. */
	uint64_t pt_page;
	uint64_t pt_flags;	/* of its entries */
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

static void uf_vm_create_code(struct uf_vm *u, uint64_t nr_pages,
			      void *code)
{
	struct kvm_userfault_memory_region uf;

	memset(u, 0, sizeof(*u));
	u->nr_pages = nr_pages + 1;
	u->pt_page = ~0ULL;
	u->pt_flags = PTE_PRESENT_MASK | PTE_WRITABLE_MASK;
	u->vm = vm_create_with_one_vcpu(&u->vcpu, code);
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

static void uf_vm_create(struct uf_vm *u, uint64_t nr_pages, uint64_t flags)
{
	uf_vm_create_code(u, nr_pages, guest_code);
	vcpu_args_set(u->vcpu, 3, addr_gva2gpa(u->vm, (vm_vaddr_t)&apf_data),
		      nr_pages, flags);
}

static void uf_vm_free(struct uf_vm *u)
{
	kvm_vm_free(u->vm);
	free(u->bitmap);
}

/*
 * "Fetch" page @page: fill it, then let the guest at it.  In pt mode the
 * page table's contents map the data pages.
 */
static void resolve_page(struct uf_vm *u, uint64_t page)
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
	unsigned int completed;	/* tokens READY was called for */
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

/*
 * Wait (up to 20 s) until the guest was told "not present" for @token.
 * A READY that came before the vCPU's next entry would make KVM drop the
 * item instead, which is right but not what these flows test: how long
 * the vCPU thread takes to get back into KVM_RUN is up to the host's
 * scheduler, under software emulation more than ever.  The state mode's
 * ready-first case tests that path on purpose.
 */
static void resolver_wait_delivered(struct resolver *r, uint64_t token)
{
	uint64_t *last = addr_gva2hva(r->u->vm, (vm_vaddr_t)&last_token);
	int i;

	for (i = 0; i < 20000 && READ_ONCE(*last) != token; i++)
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

/* ---- running the guest ----------------------------------------------- */

struct run_stats {
	uint64_t sync_exits, async_exits, pass2_exits, masked_exits;
};

/*
 * Run the guest to GUEST_DONE.  Synchronous userfault exits are resolved
 * here, after @r's delay; async ones go to the resolver and the vCPU
 * runs again at once.
 */
static void uf_run_guest(struct uf_vm *u, struct resolver *r,
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

/* Wait until the resolver has completed every token it was given. */
static void resolver_wait_idle(struct resolver *r)
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

/* ---- async ----------------------------------------------------------- */

/* Count the lines of the trace buffer that have all of @words. */
/*
 * ... and print them if @print, for a failure; then a trace buffer that
 * cannot be read is no reason to fail differently.
 */
static uint64_t trace_lines(const char *w1, const char *w2, bool print)
{
	FILE *f = fopen(TRACE_DIR "/trace", "r");
	char line[512];
	uint64_t n = 0;

	if (!f && print)
		return 0;
	TEST_ASSERT(f, "cannot read " TRACE_DIR "/trace");
	while (fgets(line, sizeof(line), f)) {
		if (!strstr(line, w1) || !strstr(line, w2))
			continue;
		n++;
		if (print)
			pr_info("trace: %s", line);
	}
	fclose(f);
	return n;
}

static uint64_t trace_count(const char *w1, const char *w2)
{
	return trace_lines(w1, w2, false);
}

/* What the guest and the trace saw, before a failing async check. */
static void async_failure_dump(struct kvm_vm *vm)
{
	uint64_t i;

	sync_global_from_guest(vm, ready_log);
	for (i = 0; i < nr_ready + nr_broadcast + nr_ready_spurious &&
	     i < APF_READY_LOG; i++)
		pr_info("guest: page ready %lu: token %#x\n", i, ready_log[i]);
	trace_lines("kvm_async_pf", "", true);
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
	sync_global_from_guest(vm, nr_ready_spurious);
	sync_global_from_guest(vm, nr_ready_overflow);
	sync_global_from_guest(vm, ready_tokens);
	sync_global_from_guest(vm, nr_nested);
	sync_global_from_guest(vm, nr_worked);
	sync_global_from_guest(vm, work_done);
	sync_global_from_guest(vm, access_tsc);
	sync_global_from_guest(vm, busy_tsc);
	sync_global_from_guest(vm, not_present_tsc);
}

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
	trace_clear();

	uf_vm_create(&u, nr_pages, G_APF | G_MASKED);
	vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	resolver_start(&r, &thread, &u, delay_ms);
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	guest_counters(u.vm);

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
	uf_run_guest(&u, &r, &s);
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

/* ---- pt: a guest page table in the userfault slot -------------------- */

/* A 2 MiB region of guest virtual addresses, mapped by pt mode only. */
#define PT_GVA	0xc0000000ULL

static uint64_t *pt_entry(struct kvm_vm *vm, uint64_t table_gpa, int level)
{
	uint64_t *table = addr_gpa2hva(vm, table_gpa);

	return &table[(PT_GVA >> (PAGE_SHIFT + 9 * (level - 1))) & 511];
}

/*
 * Point the page directory entry of PT_GVA at page @page of the slot, as
 * the last-level table of the region.  The library builds the levels
 * above it (4-level paging) when it maps one page there.
 */
static void pt_install(struct uf_vm *u, uint64_t page)
{
	uint64_t table = u->vm->pgd, *e;
	int level;

	virt_pg_map(u->vm, PT_GVA, TEST_GPA);
	for (level = 4; level > 2; level--) {
		e = pt_entry(u->vm, table, level);
		TEST_ASSERT(*e & PTE_PRESENT_MASK, "no level %d entry", level);
		table = *e & PHYSICAL_PAGE_MASK;
	}
	e = pt_entry(u->vm, table, 2);
	*e = (TEST_GPA + page * PAGE_SIZE) | PTE_PRESENT_MASK |
	     PTE_WRITABLE_MASK;
	u->pt_page = page;
}

static struct {
	struct resolver *r;
	uint64_t first_exit;
	unsigned int table_exits;
	bool remarked;
} pt_run;

static void pt_at_sync_exit(struct uf_vm *u, struct fault *f)
{
	if (pt_run.first_exit == ~0ULL)
		pt_run.first_exit = f->page;
	pt_run.table_exits += f->page == u->pt_page;
}

/*
 * Mark the page table again, as a VMM that lost it would: a new bitmap
 * with its bit set, which makes KVM drop the slot's mappings, so that the
 * guest's next walk of the table faults again.
 */
static void pt_remark(struct uf_vm *u)
{
	size_t size = DIV_ROUND_UP(u->nr_pages, 8);
	struct kvm_userfault_memory_region uf;
	uint8_t *old = u->bitmap;

	/* Not while the resolver may clear a bit in the old bitmap. */
	resolver_wait_idle(pt_run.r);
	u->bitmap = malloc(size);
	TEST_ASSERT(u->bitmap, "out of memory");
	memcpy(u->bitmap, old, size);
	u->bitmap[u->pt_page / 8] |= 1u << (u->pt_page % 8);
	uf = uf_region(u);
	TEST_ASSERT(!set_userfault_region(u->vm, &uf),
		    "KVM_SET_USERFAULT_MEMORY_REGION: %s", strerror(errno));
	free(old);
	pt_run.remarked = true;
}

static bool pt_at_async_exit(struct uf_vm *u, struct fault *f)
{
	pt_at_sync_exit(u, f);
	if (f->page == 1 && !pt_run.remarked)
		pt_remark(u);
	return true;
}

static int test_pt(uint64_t nr_pages, bool async)
{
	unsigned int table_exits = async ? 2 : 1;
	struct run_stats s = { 0 };
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;

	if (async)
		TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);
	memset(&pt_run, 0, sizeof(pt_run));
	pt_run.first_exit = ~0ULL;

	/* The extra page of the slot is the page table. */
	uf_vm_create(&u, nr_pages, async ? G_APF : 0);
	pt_install(&u, nr_pages);
	u.at_sync_exit = pt_at_sync_exit;
	if (async) {
		u.at_async_exit = pt_at_async_exit;
		vm_enable_cap(u.vm, KVM_CAP_ASYNC_PF_USER, 0);
	}
	read_base = PT_GVA;
	sync_global_to_guest(u.vm, read_base);

	resolver_start(&r, &thread, &u, 0);
	pt_run.r = &r;
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);

	pr_info("%lu pages through a marked page table, %s: %lu sync and %lu async exits, %u at the table (page %lu), the first at page %lu\n",
		nr_pages, kvm_is_tdp_enabled() ? "TDP" : "shadow paging",
		s.sync_exits, s.async_exits, pt_run.table_exits, u.pt_page,
		pt_run.first_exit);
	TEST_ASSERT(pt_run.first_exit == u.pt_page,
		    "first exit at page %lu, not at the page table (%lu)",
		    pt_run.first_exit, u.pt_page);
	TEST_ASSERT(pt_run.table_exits == table_exits &&
		    s.sync_exits + s.async_exits == nr_pages + table_exits &&
		    (async || !s.async_exits) && !s.pass2_exits,
		    "%lu sync, %lu async exits (%u at the table), %lu on the second pass, for %lu pages",
		    s.sync_exits, s.async_exits, pt_run.table_exits,
		    s.pass2_exits, nr_pages);
	/*
	 * KVM's own walk exits synchronously even where the data pages go
	 * async (uf_run_guest() checks that such an exit has no token).
	 */
	TEST_ASSERT(!async || kvm_is_tdp_enabled() ||
		    s.sync_exits == table_exits,
		    "shadow paging: %lu sync exits, expected %u at the table",
		    s.sync_exits, table_exits);

	uf_vm_free(&u);
	return 0;
}

/* ---- nested: L1's nested page table in the userfault slot ------------ */

#define NPT_FLAGS	(PTE_PRESENT_MASK | PTE_WRITABLE_MASK | PTE_USER_MASK)
#define L2_STACK_WORDS	256

static uint64_t l2_nr_pages;

static void l2_read_pages(void)
{
	uint64_t i, val;

	for (i = 0; i < l2_nr_pages; i++) {
		val = guest_read(i);
		GUEST_ASSERT_2(val == page_value(i), i, val);
	}
	asm volatile("vmmcall");
}

static void l1_nested_code(struct svm_test_data *svm, uint64_t npt_gpa)
{
	unsigned long l2_stack[L2_STACK_WORDS];

	generic_svm_setup(svm, l2_read_pages, &l2_stack[L2_STACK_WORDS]);
	svm->vmcb->control.nested_ctl |= SVM_NESTED_CTL_NP_ENABLE;
	svm->vmcb->control.nested_cr3 = npt_gpa;
	run_guest(svm->vmcb, svm->vmcb_gpa);
	GUEST_ASSERT_1(svm->vmcb->control.exit_code == SVM_EXIT_VMMCALL,
		       svm->vmcb->control.exit_code);
	GUEST_DONE();
}

static uint64_t *npt_table(struct kvm_vm *vm, vm_paddr_t *gpa)
{
	*gpa = vm_phy_page_alloc(vm, KVM_GUEST_PAGE_TABLE_MIN_PADDR, 0);
	return addr_gpa2hva(vm, *gpa);
}

/*
 * L1's nested page tables: L2's physical addresses are L1's.  The first
 * GiB (L1's code, data and page tables) in 2 MiB pages; the slot at
 * TEST_GPA (the second GiB) through a last-level table that is page
 * @table of the slot, which the VMM has not provided yet.
 */
static vm_paddr_t npt_build(struct uf_vm *u, uint64_t table)
{
	vm_paddr_t pml4_gpa, pdpt_gpa, pd0_gpa, pd1_gpa;
	uint64_t *pml4 = npt_table(u->vm, &pml4_gpa);
	uint64_t *pdpt = npt_table(u->vm, &pdpt_gpa);
	uint64_t *pd0 = npt_table(u->vm, &pd0_gpa);
	uint64_t *pd1 = npt_table(u->vm, &pd1_gpa);
	int i;

	TEST_ASSERT(TEST_GPA == 1ULL << 30, "the tables assume TEST_GPA = 1 GiB");
	pml4[0] = pdpt_gpa | NPT_FLAGS;
	pdpt[0] = pd0_gpa | NPT_FLAGS;
	for (i = 0; i < 512; i++)
		pd0[i] = ((uint64_t)i << 21) | NPT_FLAGS | PTE_LARGE_MASK;
	pdpt[1] = pd1_gpa | NPT_FLAGS;
	pd1[0] = (TEST_GPA + table * PAGE_SIZE) | NPT_FLAGS;
	u->pt_page = table;
	u->pt_flags = NPT_FLAGS;
	return pml4_gpa;
}

static int test_nested(uint64_t nr_pages)
{
	struct run_stats s = { 0 };
	struct resolver r;
	vm_vaddr_t svm_gva;
	pthread_t thread;
	struct uf_vm u;

	TEST_REQUIRE(kvm_cpu_has(X86_FEATURE_SVM));
	memset(&pt_run, 0, sizeof(pt_run));
	pt_run.first_exit = ~0ULL;

	uf_vm_create_code(&u, nr_pages, l1_nested_code);
	vcpu_alloc_svm(u.vm, &svm_gva);
	/* The extra page of the slot is the table. */
	vcpu_args_set(u.vcpu, 2, svm_gva, npt_build(&u, nr_pages));
	l2_nr_pages = nr_pages;
	sync_global_to_guest(u.vm, l2_nr_pages);
	u.at_sync_exit = pt_at_sync_exit;

	resolver_start(&r, &thread, &u, 0);
	pt_run.r = &r;
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);

	pr_info("L2 read %lu pages through L1's marked nested page table: %lu exits, %u at the table (page %lu), the first at page %lu\n",
		nr_pages, s.sync_exits, pt_run.table_exits, u.pt_page,
		pt_run.first_exit);
	TEST_ASSERT(pt_run.first_exit == u.pt_page && pt_run.table_exits == 1,
		    "first exit at page %lu, %u at the table (page %lu)",
		    pt_run.first_exit, pt_run.table_exits, u.pt_page);
	TEST_ASSERT(s.sync_exits == nr_pages + 1 && !s.async_exits,
		    "%lu sync and %lu async exits for %lu pages and their table",
		    s.sync_exits, s.async_exits, nr_pages);

	uf_vm_free(&u);
	return 0;
}

/* ---- vCPU state operations between an async exit and the next entry --- */

/*
 * What a VMM may do to a vCPU while it handles an exit: the guest must
 * not be able to tell, whatever the VMM does, that an async exit happened
 * before the vCPU runs again.  Done at each page's first async exit.
 */
static struct {
	const char *op;
	uint64_t last_page;	/* the page the op was last done at, +1 */
	bool payload;		/* KVM_CAP_EXCEPTION_PAYLOAD on every VM */
	struct resolver *r;
	unsigned int dropped, migrated, smm_sync_exits, early;
	uint64_t smm_page;
} state_run;

#define SMM_ADDRESS_SPACE	BIT(16)

/*
 * SMM sees memory through address space 1: give it the same slots as the
 * normal address space, the userfault slot with the same bitmap.
 */
static void state_smm_memslots(struct uf_vm *u)
{
	struct kvm_userfault_memory_region uf = uf_region(u);
	struct userspace_mem_region *region;
	struct kvm_userspace_memory_region mem;
	int bkt;

	hash_for_each(u->vm->regions.slot_hash, bkt, region, slot_node) {
		if (region->region.slot == TEST_SLOT)
			continue;
		mem = region->region;
		mem.slot |= SMM_ADDRESS_SPACE;
		vm_ioctl(u->vm, KVM_SET_USER_MEMORY_REGION, &mem);
	}
	uf.region.slot |= SMM_ADDRESS_SPACE;
	TEST_ASSERT(!set_userfault_region(u->vm, &uf),
		    "userfault slot in SMM's address space: %s",
		    strerror(errno));
}

static void state_set_smm(struct kvm_vcpu *vcpu, bool smm)
{
	struct kvm_vcpu_events events;

	vcpu_events_get(vcpu, &events);
	events.flags = KVM_VCPUEVENT_VALID_SMM;
	events.smi.smm = smm;
	vcpu_events_set(vcpu, &events);
}

/* The synchronous exit from SMM: check it, and leave SMM. */
static void state_smm_sync_exit(struct uf_vm *u, struct fault *f)
{
	struct kvm_vcpu_events events;

	vcpu_events_get(u->vcpu, &events);
	TEST_ASSERT(events.smi.smm && f->page == state_run.smm_page,
		    "synchronous exit at page %lu, %sin SMM", f->page,
		    events.smi.smm ? "" : "not ");
	state_set_smm(u->vcpu, false);
	state_run.smm_sync_exits++;
}

static void state_enable_caps(struct uf_vm *u)
{
	if (state_run.payload)
		vm_enable_cap(u->vm, KVM_CAP_EXCEPTION_PAYLOAD, 1);
	vm_enable_cap(u->vm, KVM_CAP_ASYNC_PF_USER, 0);
}

/*
 * Save the vCPU, destroy its VM and load the state into a fresh VM on the
 * same memory, as a VMM restoring a snapshot does.  The old VM's tokens
 * mean nothing there: the guest's access faults again in the new VM.
 */
static void state_migrate(struct uf_vm *u)
{
	struct kvm_userfault_memory_region uf;
	struct kvm_lapic_state lapic;
	struct kvm_x86_state *state;
	uint64_t zero = 0;

	/* The resolver must not be in a READY on the vCPU that goes away. */
	resolver_wait_idle(state_run.r);

	/*
	 * The library's state leaves out the local APIC, which a VMM saves
	 * too: "page ready" is an interrupt the APIC must take.
	 */
	state = vcpu_save_state(u->vcpu);
	vcpu_ioctl(u->vcpu, KVM_GET_LAPIC, &lapic);
	kvm_vm_release(u->vm);
	u->vcpu = vm_recreate_with_one_vcpu(u->vm);
	uf = uf_region(u);
	TEST_ASSERT(!set_userfault_region(u->vm, &uf),
		    "KVM_SET_USERFAULT_MEMORY_REGION on the new VM: %s",
		    strerror(errno));
	state_enable_caps(u);
	vcpu_load_state(u->vcpu, state);
	vcpu_ioctl(u->vcpu, KVM_SET_LAPIC, &lapic);
	kvm_x86_state_cleanup(state);

	/* The new VM's tokens start over. */
	memcpy(addr_gva2hva(u->vm, (vm_vaddr_t)&last_token), &zero,
	       sizeof(zero));
	state_run.migrated++;
}

static bool state_at_async_exit(struct uf_vm *u, struct fault *f)
{
	struct kvm_vcpu *vcpu = u->vcpu;
	const char *op = state_run.op;
	bool dropped = false;

	/* Once per page: an op that drops the token gets the page's next exit. */
	if (state_run.last_page == f->page + 1)
		return true;
	state_run.last_page = f->page + 1;

	if (!strcmp(op, "regs")) {
		struct kvm_regs regs;

		vcpu_regs_get(vcpu, &regs);
		vcpu_regs_set(vcpu, &regs);
	} else if (!strcmp(op, "sregs")) {
		struct kvm_sregs sregs;

		vcpu_sregs_get(vcpu, &sregs);
		vcpu_sregs_set(vcpu, &sregs);
	} else if (!strcmp(op, "events")) {
		struct kvm_vcpu_events events;
		struct kvm_sregs sregs;

		/* QEMU's order: SREGS (CR2) is saved before VCPU_EVENTS. */
		vcpu_sregs_get(vcpu, &sregs);
		vcpu_events_get(vcpu, &events);
		vcpu_sregs_set(vcpu, &sregs);
		vcpu_events_set(vcpu, &events);
	} else if (!strcmp(op, "msrs")) {
		static const uint32_t msrs[] = {
			MSR_KVM_ASYNC_PF_EN, MSR_KVM_ASYNC_PF_INT,
			MSR_IA32_CR_PAT, MSR_EFER,
		};
		uint64_t val;
		int i;

		for (i = 0; i < ARRAY_SIZE(msrs); i++) {
			val = vcpu_get_msr(vcpu, msrs[i]);
			vcpu_set_msr(vcpu, msrs[i], val);
		}
	} else if (!strcmp(op, "apf-cycle")) {
		uint64_t en = vcpu_get_msr(vcpu, MSR_KVM_ASYNC_PF_EN);

		vcpu_set_msr(vcpu, MSR_KVM_ASYNC_PF_EN, 0);
		vcpu_set_msr(vcpu, MSR_KVM_ASYNC_PF_EN, en);
		/* Turning async #PF off dropped the item. */
		EXPECT_ERRNO(async_pf_ready(vcpu, f->token, 0), ESTALE);
		dropped = true;
	} else if (!strcmp(op, "fpu")) {
		int size = vm_check_cap(vcpu->vm, KVM_CAP_XSAVE2);
		struct kvm_xsave *xsave;
		struct kvm_fpu fpu;

		vcpu_fpu_get(vcpu, &fpu);
		vcpu_fpu_set(vcpu, &fpu);
		xsave = calloc(1, size > sizeof(*xsave) ? size : sizeof(*xsave));
		TEST_ASSERT(xsave, "out of memory");
		if (size)
			vcpu_xsave2_get(vcpu, xsave);
		else
			vcpu_xsave_get(vcpu, xsave);
		vcpu_xsave_set(vcpu, xsave);
		free(xsave);
	} else if (!strcmp(op, "lapic")) {
		struct kvm_lapic_state lapic;

		vcpu_ioctl(vcpu, KVM_GET_LAPIC, &lapic);
		vcpu_ioctl(vcpu, KVM_SET_LAPIC, &lapic);
	} else if (!strcmp(op, "migrate") || !strcmp(op, "migrate-payload")) {
		state_migrate(u);
		dropped = true;
	} else if (!strcmp(op, "ready-first")) {
		/*
		 * The page and READY before the vCPU runs again: KVM drops
		 * the item at the entry, the guest is told nothing and finds
		 * the page.
		 */
		resolve_after_delay(state_run.r, f);
		TEST_ASSERT(!async_pf_ready(vcpu, f->token, 0),
			    "READY before the entry: %s", strerror(errno));
		EXPECT_ERRNO(async_pf_ready(vcpu, f->token, 0), EALREADY);
		state_run.early++;
		return false;
	} else if (!strcmp(op, "smm")) {
		/* Once: the exits of the other pages stay async. */
		if (state_run.smm_page == ~0ULL) {
			state_run.smm_page = f->page;
			state_set_smm(vcpu, true);
			dropped = true;
		}
	} else {
		TEST_FAIL("unknown vCPU state operation '%s'", op);
	}
	state_run.dropped += dropped;
	return !dropped;
}

static int test_state(const char *op, uint64_t nr_pages)
{
	struct run_stats s = { 0 };
	struct resolver r;
	pthread_t thread;
	struct uf_vm u;
	int tsc_khz;
	bool traced;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_ASYNC_PF_USER) == 1);
	memset(&state_run, 0, sizeof(state_run));
	state_run.op = op;
	state_run.payload = !strcmp(op, "migrate-payload");
	if (state_run.payload)
		TEST_REQUIRE(kvm_has_cap(KVM_CAP_EXCEPTION_PAYLOAD));
	state_run.smm_page = ~0ULL;
	if (!strcmp(op, "smm"))
		TEST_REQUIRE(kvm_has_cap(KVM_CAP_X86_SMM) &&
			     kvm_check_cap(KVM_CAP_MULTI_ADDRESS_SPACE) > 1);

	/* Checked after the run, so that its outcome is reported first. */
	traced = !trace_set("kvm_async_pf_user_dropped", "1");
	trace_clear();

	uf_vm_create(&u, nr_pages, G_APF | G_GENUINE);
	u.at_async_exit = state_at_async_exit;
	if (!strcmp(op, "smm")) {
		state_smm_memslots(&u);
		u.at_sync_exit = state_smm_sync_exit;
	}
	state_enable_caps(&u);
	/* A lost "page ready" fails the guest instead of hanging it. */
	tsc_khz = __vcpu_ioctl(u.vcpu, KVM_GET_TSC_KHZ, NULL);
	TEST_ASSERT(tsc_khz > 0, "KVM_GET_TSC_KHZ failed");
	wait_limit_tsc = 30000ULL * tsc_khz;
	sync_global_to_guest(u.vm, wait_limit_tsc);

	resolver_start(&r, &thread, &u, 1);
	state_run.r = &r;
	uf_run_guest(&u, &r, &s);
	resolver_stop(&r, thread);
	guest_counters(u.vm);
	sync_global_from_guest(u.vm, nr_genuine);

	pr_info("%s: %lu pages, %lu async exits (%u tokens dropped, %u moves to a new VM), %lu sync\n",
		op, nr_pages, s.async_exits, state_run.dropped,
		state_run.migrated, s.sync_exits);
	pr_info("guest: %lu not present, %lu ready (+%lu broadcast, %lu without a token), %lu genuine #PF\n",
		nr_not_present, nr_ready, nr_broadcast, nr_ready_spurious,
		nr_genuine);

	/*
	 * Every page is resolved once.  A dropped token makes its page exit
	 * again: async, or in SMM synchronously, after which the guest gets
	 * no "not present" for that page.
	 */
	TEST_ASSERT(s.async_exits + s.sync_exits == nr_pages + state_run.dropped &&
		    s.sync_exits == state_run.smm_sync_exits &&
		    r.resolved == nr_pages,
		    "%lu async and %lu sync exits (%u in SMM), %lu pages resolved, for %lu pages and %u dropped tokens",
		    s.async_exits, s.sync_exits, state_run.smm_sync_exits,
		    r.resolved, nr_pages, state_run.dropped);
	TEST_ASSERT(strcmp(op, "smm") || state_run.smm_sync_exits == 1,
		    "a fault in SMM exited asynchronously");
	/*
	 * Only the SMM and ready-first cases drop their items at the entry;
	 * apf-cycle drops them with the MSR write, migrate with the old VM.
	 */
	TEST_ASSERT(traced, "no kvm_async_pf_user_dropped trace event");
	TEST_ASSERT(trace_count("kvm_async_pf_user_dropped", "type user") ==
		    state_run.smm_sync_exits + state_run.early,
		    "%lu items dropped at entry, expected %u",
		    trace_count("kvm_async_pf_user_dropped", "type user"),
		    state_run.smm_sync_exits + state_run.early);
	trace_set("kvm_async_pf_user_dropped", "0");
	TEST_ASSERT(nr_not_present == nr_pages - s.sync_exits - state_run.early &&
		    nr_ready == nr_not_present && !nr_ready_overflow &&
		    !apf_ready_left() && nr_genuine == 1,
		    "guest saw %lu not present, %lu ready, %lu lost, %d never taken, %lu genuine #PF",
		    nr_not_present, nr_ready, nr_ready_overflow,
		    apf_ready_left(), nr_genuine);

	uf_vm_free(&u);
	return 0;
}

/* ---- exitless: KVM_ASYNC_PF_USER_RING ---------------------------------- */

/* The VMM's side of the ring: its fd, mapping, eventfd and consumer. */
struct ring_vmm {
	int fd, efd;
	struct kvm_async_pf_user_ring *ring;
	size_t bytes;
	uint32_t size, consumer;
	uint64_t taken;		/* entries read */
	uint64_t signalled;	/* the eventfd's counts read */
	bool hold;		/* read entries but do not accept them */
	bool stop;
	struct resolver *r;
	pthread_t thread;
};

static size_t ring_bytes(uint32_t entries)
{
	size_t bytes = sizeof(struct kvm_async_pf_user_ring) +
		       entries * sizeof(struct kvm_async_pf_user_ring_entry);

	return (bytes + getpagesize() - 1) & ~(size_t)(getpagesize() - 1);
}

static int ring_create(struct kvm_vm *vm, uint32_t entries, int efd,
		       uint32_t flags)
{
	struct kvm_async_pf_user_ring_setup setup = {
		.flags = flags,
		.entries = entries,
		.eventfd = efd,
	};

	return __vm_ioctl(vm, KVM_ASYNC_PF_USER_RING, &setup);
}

static void ring_open(struct uf_vm *u, struct ring_vmm *rv, uint32_t entries)
{
	memset(rv, 0, sizeof(*rv));
	rv->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	TEST_ASSERT(rv->efd >= 0, "eventfd failed");
	rv->fd = ring_create(u->vm, entries, rv->efd, 0);
	TEST_ASSERT(rv->fd >= 0, "KVM_ASYNC_PF_USER_RING failed: %s",
		    strerror(errno));
	rv->size = entries;
	rv->bytes = ring_bytes(entries);
	rv->ring = mmap(NULL, rv->bytes, PROT_READ, MAP_SHARED, rv->fd, 0);
	TEST_ASSERT(rv->ring != MAP_FAILED, "mmap of the ring failed: %s",
		    strerror(errno));
	TEST_ASSERT(rv->ring->size == entries && !rv->ring->producer,
		    "new ring: size %u, producer %u", rv->ring->size,
		    rv->ring->producer);
}

static void ring_close(struct ring_vmm *rv)
{
	munmap(rv->ring, rv->bytes);
	close(rv->fd);
	close(rv->efd);
}

/*
 * Read the entries KVM published (the acquire pairs with KVM's release
 * of the producer count), hand them to the resolver, and accept them.
 */
static void ring_drain(struct uf_vm *u, struct ring_vmm *rv)
{
	uint32_t prod = __atomic_load_n(&rv->ring->producer, __ATOMIC_ACQUIRE);
	struct kvm_async_pf_user_ring_entry *e;
	struct fault f;

	while (rv->consumer != prod) {
		e = &rv->ring->entries[rv->consumer & (rv->size - 1)];
		TEST_ASSERT(e->flags == (KVM_MEMORY_EXIT_FLAG_USERFAULT |
					 KVM_MEMORY_EXIT_FLAG_ASYNC_PF_USER) &&
			    e->token && e->vcpu_id == u->vcpu->id &&
			    e->gpa >= TEST_GPA &&
			    e->gpa < TEST_GPA + u->nr_pages * PAGE_SIZE,
			    "ring entry %u: gpa %#llx token %#llx flags %#llx vcpu %u",
			    rv->consumer, e->gpa, e->token, e->flags,
			    e->vcpu_id);
		f.token = e->token;
		f.page = (e->gpa - TEST_GPA) / PAGE_SIZE;
		rv->consumer++;
		rv->taken++;
		resolver_push(rv->r, &f);
	}
	if (!rv->hold)
		TEST_ASSERT(!ioctl(rv->fd, KVM_ASYNC_PF_USER_RING_ACCEPT,
				   (unsigned long)rv->consumer),
			    "KVM_ASYNC_PF_USER_RING_ACCEPT(%u) failed: %s",
			    rv->consumer, strerror(errno));
}

/* The VMM's fault thread: wait on the eventfd, drain the ring. */
static void *ring_thread(void *arg)
{
	struct ring_vmm *rv = arg;
	struct pollfd pfd = { .fd = rv->efd, .events = POLLIN };
	uint64_t count;

	while (!READ_ONCE(rv->stop)) {
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		TEST_ASSERT(read(rv->efd, &count, sizeof(count)) ==
			    sizeof(count), "eventfd read failed");
		rv->signalled += count;
		ring_drain(rv->r->u, rv);
	}
	/* Signals of entries the last drain took may still be pending. */
	if (read(rv->efd, &count, sizeof(count)) == sizeof(count))
		rv->signalled += count;
	return NULL;
}

static void ring_thread_start(struct ring_vmm *rv, struct resolver *r)
{
	rv->r = r;
	pthread_create(&rv->thread, NULL, ring_thread, rv);
}

static void ring_thread_stop(struct ring_vmm *rv)
{
	WRITE_ONCE(rv->stop, true);
	pthread_join(rv->thread, NULL);
}

/*
 * userfault_test exitless [pages [delay_ms [entries [hold]]]]: the async
 * flow with a ring, where every fault that can go async must not exit,
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
	guest_counters(u.vm);

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
 * userfault_test exitless-bad-input: every bad ring request gets its
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
 * userfault_test exitless-teardown: entries outstanding when the ring is
 * closed (READY still completes their tokens, later faults exit), when
 * async #PF is turned off (READY gets ESTALE) and when the VM goes with
 * the ring still mapped (the mapping holds the VM until munmap).  The
 * debug tier's kmemleak scan and kvm.ko's unload check for leaks.
 */
static int test_exitless_teardown(void)
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
	for (iter = 0; iter < 20; iter++) {
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
	pr_info("20 VMs destroyed with an entry outstanding and the ring mapped\n");
	return 0;
}

/* ---- bench ------------------------------------------------------------ */

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
	guest_counters(u.vm);

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
	if (!strcmp(mode, "exitless"))
		return test_exitless(pages, delay,
				     argc > 4 ? strtoul(argv[4], NULL, 0) : 64,
				     argc > 5 && !strcmp(argv[5], "hold"));
	if (!strcmp(mode, "exitless-bad-input"))
		return test_exitless_bad_input();
	if (!strcmp(mode, "exitless-teardown"))
		return test_exitless_teardown();
	if (!strcmp(mode, "nested"))
		return test_nested(pages);
	if (!strcmp(mode, "pt"))
		return test_pt(pages, argc > 3 && !strcmp(argv[3], "async"));
	if (!strcmp(mode, "state") && argc > 2)
		return test_state(argv[2], argc > 3 ? strtoull(argv[3], NULL, 0) : 4);

	fprintf(stderr, "usage: %s sync|async|bad-input|teardown|bench [pages [delay_ms]]\n"
		"       %s pt [pages [async]] | nested [pages]\n"
		"       %s exitless [pages [delay_ms [entries [hold]]]] | exitless-bad-input | exitless-teardown\n"
		"       %s state regs|sregs|events|msrs|apf-cycle|fpu|lapic|migrate|migrate-payload|smm|ready-first [pages]\n",
		argv[0], argv[0], argv[0], argv[0]);
	return 1;
}
