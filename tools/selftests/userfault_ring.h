/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Exitless userspace async #PF (KVM_ASYNC_PF_USER_RING) from the VMM's
 * side, for userfault_exitless_test and userfault_bench: the ring KVM
 * publishes async faults to instead of exiting, and a fault thread that
 * waits on the ring's eventfd and hands the faults to the resolver of
 * userfault_lib.h.  Documentation/userfault.rst.
 */
#ifndef SELFTEST_BACKPORT_USERFAULT_RING_H
#define SELFTEST_BACKPORT_USERFAULT_RING_H

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "userfault_lib.h"

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

/* The size of a ring of @entries entries, as KVM maps it: whole pages. */
static inline size_t ring_bytes(uint32_t entries)
{
	size_t bytes = sizeof(struct kvm_async_pf_user_ring) +
		       entries * sizeof(struct kvm_async_pf_user_ring_entry);

	return (bytes + getpagesize() - 1) & ~(size_t)(getpagesize() - 1);
}

/* KVM_ASYNC_PF_USER_RING: the ring's fd, or -1 with errno. */
static inline int ring_create(struct kvm_vm *vm, uint32_t entries, int efd,
			      uint32_t flags)
{
	struct kvm_async_pf_user_ring_setup setup = {
		.flags = flags,
		.entries = entries,
		.eventfd = efd,
	};

	return __vm_ioctl(vm, KVM_ASYNC_PF_USER_RING, &setup);
}

/* A ring of @entries entries for @u's VM, mapped, with its eventfd. */
static inline void ring_open(struct uf_vm *u, struct ring_vmm *rv,
			     uint32_t entries)
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

static inline void ring_close(struct ring_vmm *rv)
{
	munmap(rv->ring, rv->bytes);
	close(rv->fd);
	close(rv->efd);
}

/*
 * Read the entries KVM published (the acquire pairs with KVM's release
 * of the producer count), hand them to the resolver, and accept them.
 */
static inline void ring_drain(struct uf_vm *u, struct ring_vmm *rv)
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

static inline void ring_thread_start(struct ring_vmm *rv, struct resolver *r)
{
	rv->r = r;
	pthread_create(&rv->thread, NULL, ring_thread, rv);
}

static inline void ring_thread_stop(struct ring_vmm *rv)
{
	WRITE_ONCE(rv->stop, true);
	pthread_join(rv->thread, NULL);
}

#endif
