// SPDX-License-Identifier: GPL-2.0-only
/*
 * userfault_state_test: vCPU state operations a VMM does between an async
 * userfault exit and the next KVM_RUN; the guest must never see a stale
 * "not present".  Documentation/userfault.rst.
 *
 *   userfault_state_test OP [pages]
 *	As userfault_test async (pages default 4, resolver delay 1 ms), with
 *	the VMM doing OP to the vCPU at every page's first async exit,
 *	before it runs the vCPU again: regs (GET and SET of the same REGS),
 *	sregs, events (SREGS and VCPU_EVENTS saved and restored in QEMU's
 *	order, without KVM_CAP_EXCEPTION_PAYLOAD), msrs (the async #PF MSRs
 *	written back), apf-cycle (MSR_KVM_ASYNC_PF_EN off and on again: the
 *	token is dropped, READY gets ESTALE), fpu (FPU and XSAVE), lapic,
 *	migrate and migrate-payload (the vCPU saved and loaded into a fresh
 *	VM on the same memory, without and with exception payload), smm (the
 *	vCPU put into SMM with KVM_SET_VCPU_EVENTS: the token is dropped, the
 *	access exits synchronously, and the VMM takes the vCPU out of SMM
 *	again there), ready-first (the page provided and READY called before
 *	the vCPU runs again: the guest is told nothing).
 *
 * On 6.1 sregs, events, msrs, fpu and lapic did not lose the pending
 * "not present" even before it was deferred to the entry; they stay as
 * checks that it is delivered, once, whatever the VMM does.
 *
 * The guest (userfault_lib.h) asserts that every "not present" carries a
 * new token of its own, that it gets "page ready" for each within a time
 * limit, and that a genuine #PF taken afterwards sees no async #PF flag
 * and its own address in CR2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "backport_util.h"
#include "kvm_trace.h"
#include "userfault_lib.h"

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
	TEST_ASSERT(!trace_clear(), "cannot clear " TRACE_DIR "/trace");

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
	uf_guest_counters(u.vm);
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

int main(int argc, char *argv[])
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s OP [pages]\n"
			"  OP: regs, sregs, events, msrs, apf-cycle, fpu, lapic,\n"
			"      migrate, migrate-payload, smm or ready-first\n",
			argv[0]);
		return 1;
	}
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_USERFAULT) == 1);

	return test_state(argv[1], arg_u64(argc, argv, 2, 4));
}
