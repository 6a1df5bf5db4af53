// SPDX-License-Identifier: GPL-2.0-only
/*
 * Exitless userspace async #PF: the ring of KVM_ASYNC_PF_USER_RING.
 *
 * With a ring, a userfault that can go async does not leave KVM_RUN: the
 * vCPU appends (gpa, token, vCPU) to the VM's ring, signals the VMM's
 * eventfd, and runs on, telling the guest "page not present" at its next
 * entry as after an async exit.  A VMM thread reads the entries from its
 * read-only mapping of the ring, takes them with
 * KVM_ASYNC_PF_USER_RING_ACCEPT, provides the pages and completes the
 * tokens with KVM_ASYNC_PF_USER_READY.  A full ring, or a fault that cannot
 * go async, exits as without a ring.  Documentation/userfault.rst.
 *
 * KVM alone writes the shared memory, so nothing KVM reads back from it
 * can be stale or forged: the producer and consumer counts KVM works
 * with are its own copies in struct kvm_async_pf_ring.
 *
 * Lifetime: the ring belongs to its file.  The file holds a reference to
 * the VM, so the VM outlives it; a mapping holds the file.  kvm->
 * async_pf_ring points to the ring from creation until the file is
 * released, and kvm->async_pf_ring_lock covers the pointer and the
 * ring's counts.  Lock order: kvm->lock, then async_pf_ring_lock, then
 * the eventfd's wait queue lock (eventfd_signal()).
 */
#include <linux/anon_inodes.h>
#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/kvm_host.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/vmalloc.h>

#include "kvm_backport_compat.h"

#ifdef KVM_HAVE_ASYNC_PF_USER

struct kvm_async_pf_ring {
	struct kvm *kvm;
	struct eventfd_ctx *eventfd;
	/* Shared with userspace, read-only there: header, then entries[]. */
	struct kvm_async_pf_user_ring *shared;
	size_t bytes;			/* of the mapping, page aligned */
	u32 size;			/* entries, a power of two */
	u32 producer, consumer;		/* free running; under the lock */
	atomic_t maps;			/* VMAs of the ring */
};

static size_t ring_bytes(u32 size)
{
	return PAGE_ALIGN(struct_size((struct kvm_async_pf_user_ring *)NULL,
				      entries, size));
}

/*
 * Called by the vCPU for a user item it just queued, instead of the exit:
 * false if the VM has no ring or the ring is full, and the caller exits.
 * Runs in the fault path, without mmu_lock.
 */
bool kvm_async_pf_ring_push(struct kvm_vcpu *vcpu, gpa_t gpa, u64 token,
			    u64 flags)
{
	struct kvm *kvm = vcpu->kvm;
	struct kvm_async_pf_user_ring_entry *e;
	struct kvm_async_pf_ring *ring;
	bool pushed = false;

	/* A lockless peek for VMs without a ring; rechecked under the lock. */
	if (!READ_ONCE(kvm->async_pf_ring))
		return false;

	spin_lock(&kvm->async_pf_ring_lock);
	ring = kvm->async_pf_ring;
	if (ring && ring->producer - ring->consumer < ring->size) {
		e = &ring->shared->entries[ring->producer & (ring->size - 1)];
		e->gpa = gpa;
		e->token = token;
		e->flags = flags;
		e->vcpu_id = vcpu->vcpu_id;
		e->pad = 0;
		ring->producer++;
		/* The entry is written before userspace can see it counted. */
		smp_store_release(&ring->shared->producer, ring->producer);
		/*
		 * Every push signals: the VMM reads the eventfd once for any
		 * number of them, so there is nothing to gain by suppressing.
		 */
		kvm_backport_eventfd_signal(ring->eventfd);
		pushed = true;
	}
	spin_unlock(&kvm->async_pf_ring_lock);
	return pushed;
}

/* KVM_ASYNC_PF_USER_RING_ACCEPT: userspace took the entries up to @cons. */
static long ring_accept(struct kvm_async_pf_ring *ring, unsigned long cons)
{
	struct kvm *kvm = ring->kvm;
	long r = -ERANGE;

	if (upper_32_bits(cons))
		return -EINVAL;

	spin_lock(&kvm->async_pf_ring_lock);
	/* Forward, and not past the producer, in free-running counts. */
	if ((u32)cons - ring->consumer <= ring->producer - ring->consumer) {
		ring->consumer = cons;
		WRITE_ONCE(ring->shared->consumer, cons);
		r = 0;
	}
	spin_unlock(&kvm->async_pf_ring_lock);
	return r;
}

static long ring_ioctl(struct file *file, unsigned int ioctl,
		       unsigned long arg)
{
	struct kvm_async_pf_ring *ring = file->private_data;

	if (ring->kvm->mm != current->mm)
		return -EIO;
	if (ioctl == KVM_ASYNC_PF_USER_RING_ACCEPT)
		return ring_accept(ring, arg);
	return -ENOTTY;
}

static void ring_vma_open(struct vm_area_struct *vma)
{
	struct kvm_async_pf_ring *ring = vma->vm_file->private_data;

	atomic_inc(&ring->maps);
}

static void ring_vma_close(struct vm_area_struct *vma)
{
	struct kvm_async_pf_ring *ring = vma->vm_file->private_data;

	atomic_dec(&ring->maps);
}

/* The ring's pages, as the VMM touches them (like kvm_run's). */
static vm_fault_t ring_vma_fault(struct vm_fault *vmf)
{
	struct kvm_async_pf_ring *ring = vmf->vma->vm_file->private_data;
	struct page *page;

	if (vmf->pgoff >= ring->bytes >> PAGE_SHIFT)
		return VM_FAULT_SIGBUS;
	page = vmalloc_to_page((void *)ring->shared +
			       (vmf->pgoff << PAGE_SHIFT));
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct ring_vm_ops = {
	.open = ring_vma_open,
	.close = ring_vma_close,
	.fault = ring_vma_fault,
};

/*
 * One read-only, whole mapping at a time: userspace has nothing to write
 * or run there, and a second mapping is most likely a VMM bug (two
 * consumers).  The VMAs a split or mremap() of it makes, or a fork()
 * after MADV_DOFORK, count as that one mapping.
 */
static int ring_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct kvm_async_pf_ring *ring = file->private_data;

	if (vma->vm_pgoff || vma->vm_end - vma->vm_start != ring->bytes)
		return -EINVAL;
	if (vma->vm_flags & (VM_WRITE | VM_EXEC))
		return -EACCES;
	if (atomic_cmpxchg(&ring->maps, 0, 1))
		return -EBUSY;

	kvm_backport_vm_flags_mod(vma, VM_DONTCOPY | VM_DONTEXPAND,
				  VM_MAYWRITE | VM_MAYEXEC);
	vma->vm_ops = &ring_vm_ops;
	return 0;
}

/*
 * The last reference to the file: no mapping is left and no ioctl runs.
 * The entries userspace never accepted may never have been read, and the
 * guest may wait for their "page ready" for ever: complete them, as READY
 * would.  The guest's retry then finds the page, or exits (there is no
 * ring any more).  Entries it accepted stay with userspace, whose READY
 * completes them as before; READY on a token completed here fails like a
 * second completion (EALREADY or ESTALE).
 */
static int ring_release(struct inode *inode, struct file *file)
{
	struct kvm_async_pf_ring *ring = file->private_data;
	struct kvm_async_pf_user_ring_entry *e;
	struct kvm *kvm = ring->kvm;
	struct kvm_vcpu *vcpu;
	u32 n;

	spin_lock(&kvm->async_pf_ring_lock);
	if (!WARN_ON_ONCE(kvm->async_pf_ring != ring))
		WRITE_ONCE(kvm->async_pf_ring, NULL);
	spin_unlock(&kvm->async_pf_ring_lock);

	/*
	 * No vCPU can push any more.  KVM alone wrote the entries (the
	 * mapping is read-only), so they name its own vCPUs and tokens.
	 */
	for (n = ring->consumer; n != ring->producer; n++) {
		e = &ring->shared->entries[n & (ring->size - 1)];
		vcpu = kvm_get_vcpu_by_id(kvm, e->vcpu_id);
		if (vcpu)
			kvm_async_pf_user_ready(vcpu, e->token);
	}

	eventfd_ctx_put(ring->eventfd);
	vfree(ring->shared);
	kfree(ring);
	kvm_put_kvm(kvm);
	return 0;
}

static const struct file_operations ring_fops = {
	.owner = THIS_MODULE,
	.release = ring_release,
	.unlocked_ioctl = ring_ioctl,
	.compat_ioctl = ring_ioctl,
	.mmap = ring_mmap,
	.llseek = noop_llseek,
};

/* KVM_ASYNC_PF_USER_RING: a VM ioctl; returns the ring's file descriptor. */
int kvm_vm_ioctl_async_pf_user_ring(struct kvm *kvm,
				    struct kvm_async_pf_user_ring_setup __user *argp)
{
	struct kvm_async_pf_user_ring_setup setup;
	struct kvm_async_pf_ring *ring;
	struct eventfd_ctx *eventfd;
	struct file *file;
	int fd, r;

	if (copy_from_user(&setup, argp, sizeof(setup)))
		return -EFAULT;
	if (setup.flags || setup.pad || setup.pad2[0] || setup.pad2[1] ||
	    !is_power_of_2(setup.entries) ||
	    setup.entries > KVM_ASYNC_PF_USER_RING_MAX)
		return -EINVAL;
	if (!kvm_arch_async_pf_user_enabled(kvm))
		return -ENXIO;

	eventfd = eventfd_ctx_fdget(setup.eventfd);
	if (IS_ERR(eventfd))
		return PTR_ERR(eventfd);

	r = -ENOMEM;
	ring = kzalloc(sizeof(*ring), GFP_KERNEL_ACCOUNT);
	if (!ring)
		goto put_eventfd;
	ring->kvm = kvm;
	ring->eventfd = eventfd;
	ring->size = setup.entries;
	ring->bytes = ring_bytes(setup.entries);
	ring->shared = __vmalloc(ring->bytes, GFP_KERNEL_ACCOUNT | __GFP_ZERO);
	if (!ring->shared)
		goto free_ring;
	ring->shared->size = setup.entries;

	/*
	 * One ring per VM.  The pointer is set before the fd is installed,
	 * so that release, which clears it, cannot run first.
	 */
	mutex_lock(&kvm->lock);
	r = -EEXIST;
	if (kvm->async_pf_ring)
		goto unlock;
	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		r = fd;
		goto unlock;
	}
	file = anon_inode_getfile("kvm-async-pf-ring", &ring_fops, ring,
				  O_RDONLY);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		r = PTR_ERR(file);
		goto unlock;
	}
	kvm_get_kvm(kvm);
	spin_lock(&kvm->async_pf_ring_lock);
	WRITE_ONCE(kvm->async_pf_ring, ring);
	spin_unlock(&kvm->async_pf_ring_lock);
	mutex_unlock(&kvm->lock);
	fd_install(fd, file);
	return fd;

unlock:
	mutex_unlock(&kvm->lock);
	vfree(ring->shared);
free_ring:
	kfree(ring);
put_eventfd:
	eventfd_ctx_put(eventfd);
	return r;
}

#endif /* KVM_HAVE_ASYNC_PF_USER */
