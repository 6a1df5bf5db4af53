// SPDX-License-Identifier: GPL-2.0-only
/*
 * userfault_pt_test: page tables that are themselves marked pages of the
 * userfault slot: KVM must not read one before the VMM provided it.
 * Documentation/userfault.rst.
 *
 *   userfault_pt_test pt [pages [async]]
 *	The guest reads the marked pages through a guest page table that is
 *	itself a marked page of the slot: the first exit must name the page
 *	table (whether the hardware or KVM's own walker walks the guest's
 *	tables, i.e. with TDP or shadow paging), then each data page.  With
 *	"async", the data pages go through userspace async #PF, and at the
 *	second page's exit the VMM marks the table again (as not fetched):
 *	the guest's retry must exit on the table once more, a synchronous
 *	exit with no token when KVM walks the tables itself.
 *
 *   userfault_pt_test nested [pages]
 *	An L2 guest on nested paging (SVM's NPT, set up by L1) reads the
 *	marked pages; the last-level table of L1's nested page tables for
 *	them is itself a marked page.  KVM walks L1's tables itself here:
 *	the first exit must name that table, then each data page.
 *
 * pages defaults to 32.  The guest, the VM and the resolver are in
 * userfault_lib.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_util.h"
#include "processor.h"
#include "svm_util.h"
#include "apf_guest.h"
#include "backport_util.h"
#include "userfault_lib.h"

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

int main(int argc, char *argv[])
{
	const char *mode = argc > 1 ? argv[1] : "";

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_USERFAULT) == 1);

	if (!strcmp(mode, "pt") && argc <= 4 &&
	    (argc < 4 || !strcmp(argv[3], "async")))
		return test_pt(arg_u64(argc, argv, 2, 32), argc == 4);
	if (!strcmp(mode, "nested") && argc <= 3)
		return test_nested(arg_u64(argc, argv, 2, 32));

	fprintf(stderr, "usage: %s pt [pages [async]]\n"
		"       %s nested [pages]\n", argv[0], argv[0]);
	return 1;
}
