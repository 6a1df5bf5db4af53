/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The guest side of paravirtual async #PF with interrupt-based "page
 * ready", shared by our selftests: the shared data area, enabling, and
 * the "page ready" handler.  Each test has its own "page not present"
 * handler, which waits until guest_apf_take_ready() takes its token.
 *
 * The handlers update the counters behind the guest's main flow, which
 * reads them with READ_ONCE(); the host reads them back with
 * apf_guest_sync_counters().
 */
#ifndef SELFTEST_BACKPORT_APF_GUEST_H
#define SELFTEST_BACKPORT_APF_GUEST_H

#include <asm/kvm_para.h>

#include "kvm_util.h"
#include "processor.h"
#include "apic.h"

#define APF_VECTOR	0xec

static struct kvm_vcpu_pv_apf_data apf_data __aligned(64);
/*
 * Tokens whose "page ready" arrived and whose "page not present" handler
 * has not taken them yet.  More than one can be outstanding: a handler
 * waits with interrupts on, so the host may send "not present" for any
 * page the handler itself touches (its stack, these variables), and the
 * nested handler's "page ready" may come before or after the outer one's.
 * A single "ready token" variable then loses the outer token and the
 * outer handler waits forever.
 */
#define APF_MAX_READY	8

static uint32_t ready_tokens[APF_MAX_READY];
static uint64_t nr_ready, nr_broadcast, nr_ready_overflow;
/*
 * "Page ready" interrupts that found no token in the data area.  KVM
 * writes the token before it raises the interrupt, once per item, so the
 * handler can only see 0 if the interrupt was delivered twice: the first
 * run took the token.  Seen under software emulation twice in 56 runs
 * of userfault_test async on the debug tier, each time right after a
 * delivered "page ready" that KVM's trace shows once, and in
 * async_pf_test (kernel async #PF) on our modules; a Linux guest
 * survives it (its wakeup of token 0 leaves a dummy entry no sleeper
 * matches).  Counted apart and printed, so that the tests still see every
 * real one exactly once; they allow one for every four real ones, far
 * from what a systematic double injection (one for each) would give.
 */
static uint64_t nr_ready_spurious;
/* Every token "page ready" carried, in order, for a failing test to print. */
#define APF_READY_LOG	64
static uint32_t ready_log[APF_READY_LOG];

/*
 * "Not present" exceptions taken (each test's handler counts them), the
 * handlers running, and how many started inside another.
 */
static uint64_t nr_not_present, apf_depth, nr_nested;

/* Enable async #PF, "page ready" as interrupt APF_VECTOR, in any mode. */
static inline void guest_apf_enable(uint64_t apf_gpa)
{
	x2apic_enable();
	wrmsr(MSR_KVM_ASYNC_PF_INT, APF_VECTOR);
	wrmsr(MSR_KVM_ASYNC_PF_EN, apf_gpa | KVM_ASYNC_PF_ENABLED |
	      KVM_ASYNC_PF_SEND_ALWAYS | KVM_ASYNC_PF_DELIVERY_AS_INT);
}

/* In "page not present", the token is where CR2 has the address. */
static inline uint32_t guest_apf_token(void)
{
	uint64_t cr2;

	asm volatile("mov %%cr2, %0" : "=r"(cr2));
	return cr2;
}

/*
 * Take "page ready" for @token if it arrived.  Called with interrupts on:
 * the ready handler only fills free (zero) slots, so it never writes the
 * slot that holds @token while this clears it.
 */
static inline bool guest_apf_take_ready(uint32_t token)
{
	int i;

	for (i = 0; i < APF_MAX_READY; i++) {
		if (READ_ONCE(ready_tokens[i]) == token) {
			WRITE_ONCE(ready_tokens[i], 0);
			return true;
		}
	}
	return false;
}

/* Bracket a "not present" handler's wait, to count nesting. */
static inline void guest_apf_wait_begin(void)
{
	if (apf_depth++)
		nr_nested++;
}

static inline void guest_apf_wait_end(void)
{
	apf_depth--;
}

static void guest_ready_handler(struct ex_regs *regs)
{
	uint32_t token = apf_data.token;
	int i;

	apf_data.token = 0;
	if (nr_ready + nr_broadcast + nr_ready_spurious < APF_READY_LOG)
		ready_log[nr_ready + nr_broadcast + nr_ready_spurious] = token;
	if (!token) {
		nr_ready_spurious++;
	} else if (token == ~0U) {
		/* Sent once when async #PF is enabled: "wake everything". */
		nr_broadcast++;
	} else {
		for (i = 0; i < APF_MAX_READY; i++) {
			if (!READ_ONCE(ready_tokens[i])) {
				WRITE_ONCE(ready_tokens[i], token);
				break;
			}
		}
		if (i == APF_MAX_READY)
			nr_ready_overflow++;
		nr_ready++;
	}
	wrmsr(MSR_KVM_ASYNC_PF_ACK, 1);
	x2apic_write_reg(APIC_EOI, 0);
}

/*
 * Host side: copy the counters above, and the ready tokens, from the guest
 * into the host's variables of the same names.
 */
static inline void apf_guest_sync_counters(struct kvm_vm *vm)
{
	sync_global_from_guest(vm, nr_not_present);
	sync_global_from_guest(vm, nr_nested);
	sync_global_from_guest(vm, nr_ready);
	sync_global_from_guest(vm, nr_broadcast);
	sync_global_from_guest(vm, nr_ready_spurious);
	sync_global_from_guest(vm, nr_ready_overflow);
	sync_global_from_guest(vm, ready_tokens);
}

/*
 * Host side: after apf_guest_sync_counters(), the tokens
 * whose "page ready" arrived but that no handler took.
 */
static inline int apf_ready_left(void)
{
	int i, n = 0;

	for (i = 0; i < APF_MAX_READY; i++)
		n += !!ready_tokens[i];
	return n;
}

#endif
