// SPDX-License-Identifier: GPL-2.0-only
/*
 * guest_memory_test: the smallest end-to-end proof that a KVM module set
 * works: a guest writes and reads back memory that the host also reads and
 * writes, across a memslot deletion and re-creation.
 *
 *  1. The guest fills a test memslot with a pattern; the host checks every
 *     word through its own mapping.
 *  2. The host rewrites the slot with a second pattern; the guest checks it
 *     (host writes must be visible to the guest, no stale copy).
 *  3. The host deletes the slot and re-creates it at the same GPA on fresh
 *     memory holding a third pattern; the guest checks it.  A guest that
 *     still saw the old pages would mean SPTEs of the deleted slot survived.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"

#define TEST_SLOT	1
#define TEST_GPA	0x40000000ULL
#define TEST_PAGES	512
#define TEST_WORDS	((uint64_t)(TEST_PAGES * PAGE_SIZE / sizeof(uint64_t)))

static uint64_t pattern(int round, uint64_t i)
{
	return ((uint64_t)round << 56) ^ (i * 0x9e3779b97f4a7c15ULL);
}

static void guest_check(uint64_t *mem, int round)
{
	uint64_t i;

	for (i = 0; i < TEST_WORDS; i++)
		GUEST_ASSERT_2(mem[i] == pattern(round, i), i, mem[i]);
}

static void guest_code(uint64_t *mem)
{
	uint64_t i;

	for (i = 0; i < TEST_WORDS; i++)
		mem[i] = pattern(1, i);
	GUEST_SYNC(1);

	guest_check(mem, 2);
	GUEST_SYNC(2);

	guest_check(mem, 3);
	GUEST_DONE();
}

static void run_to_ucall(struct kvm_vcpu *vcpu, uint64_t want_cmd,
			 uint64_t want_stage)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_IO,
		    "unexpected exit reason %u (%s)", vcpu->run->exit_reason,
		    exit_reason_str(vcpu->run->exit_reason));

	switch (get_ucall(vcpu, &uc)) {
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT_2(uc, "index %lu, value 0x%lx");
		break;
	case UCALL_SYNC:
		TEST_ASSERT(want_cmd == UCALL_SYNC && uc.args[1] == want_stage,
			    "guest reached stage %lu, expected %lu",
			    uc.args[1], want_stage);
		break;
	case UCALL_DONE:
		TEST_ASSERT(want_cmd == UCALL_DONE, "guest finished early");
		break;
	default:
		TEST_FAIL("unexpected ucall %lu", uc.cmd);
	}
}

static void host_fill(uint64_t *mem, int round)
{
	uint64_t i;

	for (i = 0; i < TEST_WORDS; i++)
		mem[i] = pattern(round, i);
}

int main(int argc, char *argv[])
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t *mem, i;

	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, TEST_GPA,
				    TEST_SLOT, TEST_PAGES, 0);
	virt_map(vm, TEST_GPA, TEST_GPA, TEST_PAGES);
	vcpu_args_set(vcpu, 1, TEST_GPA);

	run_to_ucall(vcpu, UCALL_SYNC, 1);
	mem = addr_gpa2hva(vm, TEST_GPA);
	for (i = 0; i < TEST_WORDS; i++)
		TEST_ASSERT(mem[i] == pattern(1, i),
			    "host read 0x%lx at word %lu, guest wrote 0x%lx",
			    mem[i], i, pattern(1, i));
	pr_info("stage 1: host saw all %lu guest-written words\n", TEST_WORDS);

	host_fill(mem, 2);
	run_to_ucall(vcpu, UCALL_SYNC, 2);
	pr_info("stage 2: guest saw all host-written words\n");

	vm_mem_region_delete(vm, TEST_SLOT);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, TEST_GPA,
				    TEST_SLOT, TEST_PAGES, 0);
	mem = addr_gpa2hva(vm, TEST_GPA);
	host_fill(mem, 3);
	run_to_ucall(vcpu, UCALL_DONE, 0);
	pr_info("stage 3: guest saw the re-created slot's memory\n");

	kvm_vm_free(vm);
	return 0;
}
