/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What our new files in virt/ and arch/ need from the kernel that differs
 * between the series we build for, under one name; this is Debian's 6.1.
 * Each series has its own copy (patches/<series>/files/).
 */
#ifndef __KVM_BACKPORT_COMPAT_H
#define __KVM_BACKPORT_COMPAT_H

#include <linux/eventfd.h>
#include <linux/mm.h>

/* One event for the eventfd's reader (6.8 dropped the count argument). */
static inline void kvm_backport_eventfd_signal(struct eventfd_ctx *ctx)
{
	eventfd_signal(ctx, 1);
}

/*
 * vm_flags of a VMA being set up by an mmap handler (6.3 made them
 * read-only outside vm_flags_*()).
 */
static inline void kvm_backport_vm_flags_mod(struct vm_area_struct *vma,
					     vm_flags_t set, vm_flags_t clear)
{
	vma->vm_flags = (vma->vm_flags | set) & ~clear;
}

/* An mm's RSS counter, exact (6.2 made the plain read approximate). */
static inline unsigned long kvm_backport_mm_counter_sum(struct mm_struct *mm,
							int member)
{
	return get_mm_counter(mm, member);
}

#endif /* __KVM_BACKPORT_COMPAT_H */
