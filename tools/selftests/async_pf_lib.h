/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the async_pf tests (kernel async #PF: async_pf_test,
 * async_pf_exit_race_test, async_pf_unload_test) share: the guest, which
 * reads its test pages with paravirtual async #PF on, and a VM whose test
 * memory is backed by userfaultfd.  KVM cannot fault such a page in
 * without sleeping, so it injects "page not present" and lets an async
 * #PF worker fault the page in, which waits until the test answers the
 * userfault.
 */
#ifndef SELFTEST_BACKPORT_ASYNC_PF_LIB_H
#define SELFTEST_BACKPORT_ASYNC_PF_LIB_H

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "backport_util.h"
#include "test_util.h"

#define TEST_SLOT	1
#define TEST_GPA	0x40000000ULL
/* The guest's GUEST_SYNC() when its first "not present" came. */
#define STAGE_QUEUED	1

/*
 * Guest counters besides apf_guest.h's: accesses that did not go async,
 * and the other work the guest did while it waited for "page ready".
 */
static uint64_t nr_sync, nr_worked, min_work, total_work;
/* Tell the host when the first async #PF is queued (the killed VMM). */
static bool sync_on_queue;

/*
 * "Page not present": remember the token and do other work, with
 * interrupts on, until "page ready" for that token arrives.  Returning
 * then retries the access, which now finds the page.
 */
static void guest_pf_handler(struct ex_regs *regs)
{
	uint32_t token = guest_apf_token();
	uint64_t work = 0;

	GUEST_ASSERT_2(apf_data.flags == KVM_PV_REASON_PAGE_NOT_PRESENT,
		       apf_data.flags, regs->rip);
	apf_data.flags = 0;
	nr_not_present++;
	guest_apf_wait_begin();

	if (sync_on_queue)
		GUEST_SYNC(STAGE_QUEUED);

	asm volatile("sti");
	while (!guest_apf_take_ready(token)) {
		work++;
		cpu_relax();
	}
	asm volatile("cli");
	guest_apf_wait_end();

	total_work += work;
	if (work)
		nr_worked++;
	if (work < min_work)
		min_work = work;
}

static void guest_code(uint64_t apf_gpa, uint64_t nr_pages)
{
	uint64_t i, before, val;

	min_work = ~0ULL;
	guest_apf_enable(apf_gpa);

	/* KVM only goes async while the guest can take an interrupt. */
	asm volatile("sti");
	for (i = 0; i < nr_pages; i++) {
		before = READ_ONCE(nr_not_present);
		val = READ_ONCE(*(uint64_t *)(TEST_GPA + i * PAGE_SIZE));
		GUEST_ASSERT_2(val == page_value(i), i, val);
		if (READ_ONCE(nr_not_present) == before)
			nr_sync++;
	}
	asm volatile("cli");
	wrmsr(MSR_KVM_ASYNC_PF_EN, 0);
	GUEST_DONE();
}

/* A non-blocking userfaultfd, so that a test can poll it. */
static inline int uffd_create(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int uffd;

	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	TEST_ASSERT(uffd >= 0, "userfaultfd() failed: %s", strerror(errno));
	TEST_ASSERT(!ioctl(uffd, UFFDIO_API, &api), "UFFDIO_API failed");
	return uffd;
}

/*
 * A VM whose @nr_pages test pages are registered with @uffd (created
 * beforehand, so that an exiting VMM closes it before the VM and wakes
 * any worker blocked on it before KVM flushes that worker).  With
 * @queue_sync the guest stops at its first async #PF (STAGE_QUEUED).
 * The host's address of the test memory goes to @test_hva.
 */
static inline struct kvm_vm *apf_vm_create(struct kvm_vcpu **vcpu, int uffd,
					   uint64_t nr_pages, bool queue_sync,
					   void **test_hva)
{
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(vcpu, guest_code);
	vm_init_descriptor_tables(vm);
	vcpu_init_descriptor_tables(*vcpu);
	vm_install_exception_handler(vm, PF_VECTOR, guest_pf_handler);
	vm_install_exception_handler(vm, APF_VECTOR, guest_ready_handler);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, TEST_GPA,
				    TEST_SLOT, nr_pages, 0);
	virt_map(vm, TEST_GPA, TEST_GPA, nr_pages);
	*test_hva = addr_gpa2hva(vm, TEST_GPA);

	reg.range.start = (uint64_t)*test_hva;
	reg.range.len = nr_pages * PAGE_SIZE;
	TEST_ASSERT(!ioctl(uffd, UFFDIO_REGISTER, &reg),
		    "UFFDIO_REGISTER failed: %s", strerror(errno));

	sync_on_queue = queue_sync;
	sync_global_to_guest(vm, sync_on_queue);
	vcpu_args_set(*vcpu, 2, addr_gva2gpa(vm, (vm_vaddr_t)&apf_data),
		      nr_pages);
	return vm;
}

#endif
