/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The guest side of paravirtual async #PF with interrupt-based "page
 * ready", shared by our selftests: the shared data area, enabling, and
 * the "page ready" handler.  Each test has its own "page not present"
 * handler, which waits until ready_token is its token.
 *
 * The handlers update the counters behind the guest's main flow, which
 * reads them with READ_ONCE(); the host reads them back with
 * sync_global_from_guest().
 */
#ifndef SELFTEST_BACKPORT_APF_GUEST_H
#define SELFTEST_BACKPORT_APF_GUEST_H

#include <asm/kvm_para.h>

#include "processor.h"
#include "apic.h"

#define APF_VECTOR	0xec

static struct kvm_vcpu_pv_apf_data apf_data __aligned(64);
static uint32_t ready_token;
static uint64_t nr_ready, nr_broadcast, nr_token_mismatch;

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

static void guest_ready_handler(struct ex_regs *regs)
{
	uint32_t token = apf_data.token;

	apf_data.token = 0;
	if (token == ~0U) {
		/* Sent once when async #PF is enabled: "wake everything". */
		nr_broadcast++;
	} else {
		if (READ_ONCE(ready_token))
			nr_token_mismatch++;
		WRITE_ONCE(ready_token, token);
		nr_ready++;
	}
	wrmsr(MSR_KVM_ASYNC_PF_ACK, 1);
	x2apic_write_reg(APIC_EOI, 0);
}

#endif
