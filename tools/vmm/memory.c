// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest RAM served lazily from a snapshot image (Documentation/vmm.rst,
 * "Using the uAPI from a VMM").
 *
 * Every lazy mode registers guest RAM with userfaultfd (MISSING) and
 * installs pages with UFFDIO_COPY, which is atomic: a page is either
 * missing or whole.  userfaultfd alone is the uffd mode.  It is also
 * needed under KVM_MEM_USERFAULT, because KVM reads and writes some guest
 * memory directly (kvmclock, the async #PF data area, steal time, the
 * instruction emulator), past the userfault bitmap.
 *
 * The userfault modes mark every page in the bitmap.  A page's bit is
 * cleared only after the page is installed, so a guest access that finds
 * the bit clear finds the page (Documentation/userfault.rst).
 *
 * Threads and what they share:
 * - vCPU threads take KVM_EXIT_MEMORY_FAULT: a synchronous one they serve
 *   themselves, an async one (a token) they queue and run the guest on;
 * - the uffd thread reads userfaultfd events and queues them;
 * - the ring thread (exitless) drains the ring and queues its entries;
 * - fault threads take requests off the queue, install the page, clear
 *   its bit and complete the token with KVM_ASYNC_PF_USER_READY.
 * - prefetch threads (--prefetch-ws) install the pages of a working set
 *   recorded on an earlier restore, in the order they were needed then.
 * @state says per page whether it is missing, being fetched or present;
 * a page is fetched once (the thread that moves it out of "missing"), the
 * others wait for "present" (a prefetch thread goes on to its next page
 * instead).  The queue is under @lock.
 *
 * The working set (--record-ws) is the pages a VMM thread stalled on,
 * in the order it first did: synchronous exits with the guest in kernel
 * mode, which async #PF cannot cover because Linux takes it in user mode
 * only, and userfaultfd faults raised by the main or a vCPU thread (KVM's
 * own accesses, and every fault KVM did not make async in uffd mode).  A
 * fault an async #PF worker raises comes from a kernel thread and is not
 * recorded, although in uffd mode KVM may halt the vCPU until it is
 * done (its own async #PF for the guest's kernel mode): record in
 * userfault-sync mode to see those.  Fetched first on the next restore
 * of the same snapshot, these pages no longer stop a vCPU for a whole
 * fetch (Documentation/vmm.rst, "The guest kernel's working set").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "vmm.h"

#define MAX_FAULT_THREADS	64

enum { PAGE_MISSING, PAGE_FETCHING, PAGE_PRESENT };

struct request {
	uint64_t page;
	uint64_t token;		/* 0: no token to complete */
	int vcpu;
};

struct lazy {
	struct vm *vm;
	int uffd;
	const uint8_t *image;	/* the snapshot's RAM, read-only */
	uint8_t *bitmap;	/* KVM_MEM_USERFAULT's, NULL in uffd mode */
	uint8_t *state;		/* PAGE_*, per page */
	uint64_t pages;
	unsigned int fetch_us;

	pthread_mutex_t lock;
	pthread_cond_t more;
	struct request *queue;	/* ring of @cap requests, under @lock */
	uint64_t head, tail, cap;
	bool stop;		/* under @lock; read without it by the pollers */

	int nr_threads;
	pthread_t threads[MAX_FAULT_THREADS], uffd_thread, ring_thread;

	/* Exitless mode. */
	int ring_fd, efd;
	struct kvm_async_pf_user_ring *ring;
	size_t ring_bytes;
	uint32_t ring_size, consumer;

	/*
	 * --record-ws: @ws[0..@nr_ws) in the order the pages were first
	 * stalled on; @ws_seen says a page is in it.  Appended by any thread,
	 * written out to @ws_fd (opened at setup, so that a path that cannot
	 * be written fails before the run) after they all stopped.
	 */
	uint64_t *ws, nr_ws;
	uint8_t *ws_seen;
	int ws_fd;
	/* --prefetch-ws: the pages to fetch ahead; the next one to take. */
	uint64_t *pre, nr_pre, pre_next;
	int nr_pre_threads, pre_done;
	pthread_t pre_threads[MAX_FAULT_THREADS];
};

/* A working-set file: this header, then @nr page numbers (uint64_t). */
#define WS_MAGIC	0x31535750424bULL	/* "KBPWS1" */

struct ws_header {
	uint64_t magic;
	uint64_t id;		/* the snapshot's (struct snap_header) */
	uint64_t mem_size;
	uint64_t nr;
};

bool lazy_present(struct vm *vm, uint64_t page)
{
	return __atomic_load_n(&vm->lazy->state[page], __ATOMIC_ACQUIRE) ==
	       PAGE_PRESENT;
}

const uint8_t *lazy_image(struct vm *vm)
{
	return vm->lazy->image;
}

/* A VMM thread stalled on @page: the working set has it from now on. */
static void ws_note(struct lazy *l, uint64_t page)
{
	uint8_t no = 0;

	if (!l->ws || !__atomic_compare_exchange_n(&l->ws_seen[page], &no, 1,
						   false, __ATOMIC_RELAXED,
						   __ATOMIC_RELAXED))
		return;
	l->ws[__atomic_fetch_add(&l->nr_ws, 1, __ATOMIC_RELAXED)] = page;
}

/*
 * Make @page present: fetch it (the --fetch-us wait stands for the
 * network) and UFFDIO_COPY it from the image, then clear its userfault
 * bit.  If another thread is fetching it, wait for that instead, unless
 * !@wait.  Returns true if this call installed the page.
 */
static bool fetch(struct lazy *l, uint64_t page, bool wait)
{
	struct uffdio_copy copy = {
		.dst = (uintptr_t)l->vm->mem + page * PAGE_SIZE,
		.src = (uintptr_t)l->image + page * PAGE_SIZE,
		.len = PAGE_SIZE,
	};
	uint8_t expect = PAGE_MISSING;

	if (!__atomic_compare_exchange_n(&l->state[page], &expect,
					 PAGE_FETCHING, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		while (wait && __atomic_load_n(&l->state[page], __ATOMIC_ACQUIRE) !=
		       PAGE_PRESENT)
			usleep(20);
		return false;
	}
	if (l->fetch_us)
		usleep(l->fetch_us);
	if (ioctl(l->uffd, UFFDIO_COPY, &copy) == 0)
		__atomic_add_fetch(&l->vm->st.served, 1, __ATOMIC_RELAXED);
	else if (errno != EEXIST)
		die(EXIT_GUEST_FAILED, "UFFDIO_COPY of guest page %#llx failed: %s",
		    (unsigned long long)page * PAGE_SIZE, strerror(errno));
	/* The bit first: whoever sees "present" finds the bit clear too. */
	if (l->bitmap)
		__atomic_and_fetch(&l->bitmap[page / 8], ~(1u << (page % 8)),
				   __ATOMIC_RELEASE);
	__atomic_store_n(&l->state[page], PAGE_PRESENT, __ATOMIC_RELEASE);
	return true;
}

static void push(struct lazy *l, uint64_t page, uint64_t token, int vcpu)
{
	pthread_mutex_lock(&l->lock);
	if (l->tail - l->head == l->cap)
		die(EXIT_GUEST_FAILED, "more than %llu faults queued",
		    (unsigned long long)l->cap);
	l->queue[l->tail++ % l->cap] = (struct request){ page, token, vcpu };
	pthread_cond_signal(&l->more);
	pthread_mutex_unlock(&l->lock);
}

/*
 * KVM_ASYNC_PF_USER_READY.  ESTALE and EALREADY are races a VMM must
 * take (the token was dropped at the next entry, or the VM is going);
 * anything else is a bug of ours.
 */
static void complete(struct lazy *l, struct request *r)
{
	struct kvm_async_pf_user_ready ready = { .token = r->token };

	__atomic_add_fetch(&l->vm->st.ready, 1, __ATOMIC_RELAXED);
	if (!ioctl(l->vm->vcpus[r->vcpu].fd, KVM_ASYNC_PF_USER_READY, &ready))
		return;
	if (errno == ESTALE || errno == EALREADY)
		__atomic_add_fetch(&l->vm->st.ready_stale, 1, __ATOMIC_RELAXED);
	else
		die(EXIT_GUEST_FAILED, "KVM_ASYNC_PF_USER_READY(%#llx) on vCPU %d: %s",
		    (unsigned long long)r->token, r->vcpu, strerror(errno));
}

static void *fault_thread(void *arg)
{
	struct lazy *l = arg;
	struct request r;

	for (;;) {
		pthread_mutex_lock(&l->lock);
		while (l->head == l->tail && !l->stop)
			pthread_cond_wait(&l->more, &l->lock);
		if (l->stop) {
			pthread_mutex_unlock(&l->lock);
			return NULL;
		}
		r = l->queue[l->head++ % l->cap];
		pthread_mutex_unlock(&l->lock);
		/*
		 * A stopping VM is not sent "page ready" for the tokens still
		 * queued (one whose fetch is under way when the stop comes
		 * may still be completed): a snapshot now keeps the guest
		 * waiting on them, which the restore's "wake all" ends.
		 * Faults of KVM itself (no token) are still served: a vCPU
		 * thread may wait on one inside KVM_RUN.
		 */
		if (r.token && __atomic_load_n(&l->vm->stop, __ATOMIC_SEQ_CST))
			continue;
		fetch(l, r.page, true);
		if (r.token && !__atomic_load_n(&l->vm->stop, __ATOMIC_SEQ_CST))
			complete(l, &r);
	}
}

/* Did a VMM thread raise this fault, i.e. stall on it? */
static bool vmm_thread(struct vm *vm, pid_t tid)
{
	int i;

	for (i = 0; i < vm->nr_vcpus; i++)
		if (tid == __atomic_load_n(&vm->vcpus[i].tid, __ATOMIC_RELAXED))
			return true;
	return tid == vm->main_tid;
}

/* userfaultfd: faults of the guest (uffd mode) and of KVM itself. */
static void *uffd_thread(void *arg)
{
	struct lazy *l = arg;
	struct pollfd pfd = { .fd = l->uffd, .events = POLLIN };
	struct uffd_msg msg;
	uint64_t off;

	while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) {
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if (read(l->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		off = msg.arg.pagefault.address - (uintptr_t)l->vm->mem;
		if (off >= l->vm->mem_size)
			die(EXIT_GUEST_FAILED, "userfault outside guest RAM at %#llx",
			    (unsigned long long)msg.arg.pagefault.address);
		if (vmm_thread(l->vm, msg.arg.pagefault.feat.ptid))
			ws_note(l, off / PAGE_SIZE);
		push(l, off / PAGE_SIZE, 0, 0);
	}
	return NULL;
}

/* --prefetch-ws: fetch the recorded pages in order, beside the faults. */
static void *prefetch_thread(void *arg)
{
	struct lazy *l = arg;
	uint64_t i;

	while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) {
		i = __atomic_fetch_add(&l->pre_next, 1, __ATOMIC_RELAXED);
		if (i >= l->nr_pre)
			break;
		if (fetch(l, l->pre[i], false))
			__atomic_add_fetch(&l->vm->st.prefetched, 1,
					   __ATOMIC_RELAXED);
	}
	if (__atomic_add_fetch(&l->pre_done, 1, __ATOMIC_ACQ_REL) ==
	    l->nr_pre_threads)
		l->vm->st.t_prefetched_ns = now_ns();
	return NULL;
}

/*
 * Read the working set @path for this snapshot.  Every misuse ends the
 * run with one line: not a working set, another snapshot's, damaged.
 */
static void ws_load(struct lazy *l, const char *path)
{
	struct ws_header h;
	struct stat st;
	size_t bytes;
	uint64_t i;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(EXIT_USAGE, "cannot open the working set %s: %s", path,
		    strerror(errno));
	if (fstat(fd, &st) < 0 || pread(fd, &h, sizeof(h), 0) != sizeof(h) ||
	    h.magic != WS_MAGIC)
		die(EXIT_USAGE,
		    "%s is not a kbp-vmm working set (restore --record-ws FILE makes one)",
		    path);
	if (h.id != l->vm->snap_id || h.mem_size != l->vm->mem_size)
		die(EXIT_USAGE,
		    "%s was recorded on another snapshot than this one; record it again with --record-ws",
		    path);
	if (h.nr > l->pages ||
	    (uint64_t)st.st_size != sizeof(h) + h.nr * sizeof(uint64_t))
		die(EXIT_USAGE, "%s is damaged (%llu pages, %lld bytes)", path,
		    (unsigned long long)h.nr, (long long)st.st_size);
	bytes = h.nr * sizeof(uint64_t);
	l->pre = malloc(bytes + 1);
	if (!l->pre)
		die(EXIT_USAGE, "out of memory");
	if (pread(fd, l->pre, bytes, sizeof(h)) != (ssize_t)bytes)
		die(EXIT_USAGE, "cannot read the working set %s", path);
	for (i = 0; i < h.nr; i++)
		if (l->pre[i] >= l->pages)
			die(EXIT_USAGE, "%s is damaged (page %#llx is past guest RAM)",
			    path, (unsigned long long)l->pre[i]);
	l->nr_pre = h.nr;
	close(fd);
}

/* --record-ws: write what was recorded, after every thread stopped. */
void lazy_save_ws(struct vm *vm)
{
	struct lazy *l = vm->lazy;
	struct ws_header h = {
		.magic = WS_MAGIC,
		.id = vm->snap_id,
		.mem_size = vm->mem_size,
		.nr = l->nr_ws,
	};
	size_t bytes = l->nr_ws * sizeof(l->ws[0]);

	vm->st.ws_recorded = l->nr_ws;
	if (pwrite(l->ws_fd, &h, sizeof(h), 0) != sizeof(h) ||
	    pwrite(l->ws_fd, l->ws, bytes, sizeof(h)) != (ssize_t)bytes ||
	    close(l->ws_fd))
		die(EXIT_USAGE, "cannot write the working set %s: %s",
		    vm->record_ws, strerror(errno));
	note("working set: %llu pages a VMM thread stalled on, saved to %s",
	     (unsigned long long)l->nr_ws, vm->record_ws);
}

/*
 * Exitless mode: read the entries KVM appended (the acquire pairs with
 * its release of @producer), queue them, and accept them so KVM can
 * reuse their slots.
 */
static void *ring_thread(void *arg)
{
	struct lazy *l = arg;
	struct pollfd pfd = { .fd = l->efd, .events = POLLIN };
	struct kvm_async_pf_user_ring_entry *e;
	uint32_t prod;
	uint64_t n;

	while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED)) {
		if (poll(&pfd, 1, 50) <= 0 ||
		    read(l->efd, &n, sizeof(n)) != sizeof(n))
			continue;
		prod = __atomic_load_n(&l->ring->producer, __ATOMIC_ACQUIRE);
		while (l->consumer != prod) {
			e = &l->ring->entries[l->consumer & (l->ring_size - 1)];
			if (e->gpa >= l->vm->mem_size ||
			    e->vcpu_id >= (uint32_t)l->vm->nr_vcpus)
				die(EXIT_GUEST_FAILED, "ring entry %u names gpa %#llx of vCPU %u",
				    l->consumer, (unsigned long long)e->gpa,
				    e->vcpu_id);
			push(l, e->gpa / PAGE_SIZE, e->token, e->vcpu_id);
			l->consumer++;
			n = __atomic_add_fetch(&l->vm->st.async_ring, 1,
					       __ATOMIC_RELAXED) +
			    __atomic_load_n(&l->vm->st.async_exits,
					    __ATOMIC_RELAXED);
			if (l->vm->stop_after_async >= 0 &&
			    n >= (uint64_t)l->vm->stop_after_async)
				vm_stop(l->vm, STOP_SNAPSHOT);
		}
		if (ioctl(l->ring_fd, KVM_ASYNC_PF_USER_RING_ACCEPT,
			  (unsigned long)l->consumer) < 0)
			die(EXIT_GUEST_FAILED, "KVM_ASYNC_PF_USER_RING_ACCEPT(%u): %s",
			    l->consumer, strerror(errno));
	}
	return NULL;
}

static void ring_setup(struct lazy *l)
{
	struct kvm_async_pf_user_ring_setup setup = { .entries = 256 };

	l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->efd < 0)
		die(EXIT_USAGE, "eventfd: %s", strerror(errno));
	setup.eventfd = l->efd;
	l->ring_fd = ioctl(l->vm->fd, KVM_ASYNC_PF_USER_RING, &setup);
	if (l->ring_fd < 0)
		die(EXIT_UNSUPPORTED, "KVM_ASYNC_PF_USER_RING failed: %s",
		    strerror(errno));
	l->ring_size = setup.entries;
	l->ring_bytes = sizeof(*l->ring) + l->ring_size * sizeof(l->ring->entries[0]);
	l->ring_bytes = (l->ring_bytes + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	l->ring = mmap(NULL, l->ring_bytes, PROT_READ, MAP_SHARED, l->ring_fd, 0);
	if (l->ring == MAP_FAILED)
		die(EXIT_UNSUPPORTED, "mmap of the async #PF ring failed: %s",
		    strerror(errno));
}

void lazy_setup(struct vm *vm, int image_fd, unsigned int fetch_us,
		unsigned int threads)
{
	struct uffdio_api api = {
		.api = UFFD_API,
		/* Which thread faulted: a VMM thread's is a stall (--record-ws). */
		.features = UFFD_FEATURE_THREAD_ID,
	};
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)vm->mem, .len = vm->mem_size },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	struct kvm_enable_cap cap = { .cap = KVM_CAP_ASYNC_PF_USER };
	struct lazy *l = calloc(1, sizeof(*l));
	unsigned int i;

	if (!l)
		die(EXIT_USAGE, "out of memory");
	vm->lazy = l;
	l->vm = vm;
	l->fetch_us = fetch_us;
	l->pages = vm->mem_size / PAGE_SIZE;
	l->cap = 4096;
	l->queue = calloc(l->cap, sizeof(*l->queue));
	l->state = calloc(l->pages, 1);
	if (!l->queue || !l->state)
		die(EXIT_USAGE, "out of memory");
	if (vm->prefetch_ws)
		ws_load(l, vm->prefetch_ws);
	if (vm->record_ws) {
		l->ws = malloc(l->pages * sizeof(l->ws[0]));
		l->ws_seen = calloc(l->pages, 1);
		if (!l->ws || !l->ws_seen)
			die(EXIT_USAGE, "out of memory");
		l->ws_fd = open(vm->record_ws,
				O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (l->ws_fd < 0)
			die(EXIT_USAGE, "cannot write the working set %s: %s",
			    vm->record_ws, strerror(errno));
	}
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->more, NULL);

	l->image = mmap(NULL, vm->mem_size, PROT_READ, MAP_PRIVATE, image_fd,
			PAGE_SIZE);
	if (l->image == MAP_FAILED)
		die(EXIT_USAGE, "cannot map the snapshot image: %s", strerror(errno));

	l->uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (l->uffd < 0)
		die(EXIT_UNSUPPORTED, "userfaultfd: %s%s", strerror(errno),
		    errno == EPERM ? " (set vm.unprivileged_userfaultfd=1 or run as root)" : "");
	if (ioctl(l->uffd, UFFDIO_API, &api) < 0 ||
	    ioctl(l->uffd, UFFDIO_REGISTER, &reg) < 0)
		die(EXIT_UNSUPPORTED, "userfaultfd registration of guest RAM: %s",
		    strerror(errno));
	if (vm->share_uffd)
		share_uffd(vm->share_uffd, l->uffd, (uint64_t)vm->mem,
			   vm->mem_size);

	if (vm->mode >= MODE_USERFAULT_SYNC) {
		l->bitmap = malloc(l->pages / 8 + 1);
		if (!l->bitmap)
			die(EXIT_USAGE, "out of memory");
		memset(l->bitmap, 0xff, l->pages / 8 + 1);
		vm_set_memory(vm, true, l->bitmap);
	} else {
		vm_set_memory(vm, false, NULL);
	}
	if (vm->mode >= MODE_USERFAULT_ASYNC &&
	    ioctl(vm->fd, KVM_ENABLE_CAP, &cap) < 0)
		die(EXIT_UNSUPPORTED, "KVM_ENABLE_CAP(KVM_CAP_ASYNC_PF_USER): %s",
		    strerror(errno));
	if (vm->mode == MODE_EXITLESS)
		ring_setup(l);

	/* Before the state goes in: KVM_SET_MSRS writes guest memory. */
	l->nr_threads = threads;
	for (i = 0; i < threads; i++)
		if (pthread_create(&l->threads[i], NULL, fault_thread, l))
			die(EXIT_USAGE, "cannot create a fault thread");
	if (pthread_create(&l->uffd_thread, NULL, uffd_thread, l) ||
	    (l->ring && pthread_create(&l->ring_thread, NULL, ring_thread, l)))
		die(EXIT_USAGE, "cannot create a thread");
	/* As many fetches ahead as the faults may have in flight. */
	if (l->nr_pre) {
		note("prefetching %llu pages of the working set %s",
		     (unsigned long long)l->nr_pre, vm->prefetch_ws);
		l->nr_pre_threads = threads;
		for (i = 0; i < threads; i++)
			if (pthread_create(&l->pre_threads[i], NULL,
					   prefetch_thread, l))
				die(EXIT_USAGE, "cannot create a prefetch thread");
	}
}

/* The guest's CPL at this exit: did the fault come from its kernel? */
static bool vcpu_in_kernel(struct vcpu *v)
{
	struct kvm_sregs sregs;

	return !ioctl(v->fd, KVM_GET_SREGS, &sregs) && sregs.cs.dpl == 0;
}

/*
 * A KVM_EXIT_MEMORY_FAULT on vCPU @v.  Returns false if it is not ours
 * to handle (the caller reports it).
 */
bool lazy_exit(struct vcpu *v, int run_errno)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;
	struct lazy *l = vm->lazy;
	uint64_t page = run->memory_fault.gpa / PAGE_SIZE, n;

	if (run_errno != EFAULT || !l->bitmap ||
	    !(run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_USERFAULT) ||
	    page >= l->pages)
		return false;
	if (run->memory_fault.flags & KVM_MEMORY_EXIT_FLAG_ASYNC_PF_USER) {
		/*
		 * The guest is told "page not present" when the vCPU runs
		 * again, which it must do now: a fault thread fetches.
		 */
		n = __atomic_add_fetch(&vm->st.async_exits, 1, __ATOMIC_RELAXED);
		if (vcpu_in_kernel(v))
			__atomic_add_fetch(&vm->st.async_kernel, 1, __ATOMIC_RELAXED);
		push(l, page, run->memory_fault.token, v->id);
		n += __atomic_load_n(&vm->st.async_ring, __ATOMIC_RELAXED);
		if (vm->stop_after_async >= 0 &&
		    n >= (uint64_t)vm->stop_after_async)
			vm_stop(vm, STOP_SNAPSHOT);
		return true;
	}
	if (vcpu_in_kernel(v)) {
		v->sync_kernel++;
		ws_note(l, page);
	} else {
		v->sync_user++;
	}
	fetch(l, page, true);
	return true;
}

/* Where a lazy restore stands, for a run that takes long. */
void lazy_report(struct vm *vm)
{
	struct lazy *l = vm->lazy;
	uint64_t n[3] = { 0, 0, 0 }, p;

	for (p = 0; p < l->pages; p++)
		n[__atomic_load_n(&l->state[p], __ATOMIC_RELAXED)]++;
	pthread_mutex_lock(&l->lock);
	note("pages missing %llu, fetching %llu, present %llu; %llu queued; %llu READY",
	     (unsigned long long)n[PAGE_MISSING],
	     (unsigned long long)n[PAGE_FETCHING],
	     (unsigned long long)n[PAGE_PRESENT],
	     (unsigned long long)(l->tail - l->head),
	     (unsigned long long)vm->st.ready);
	pthread_mutex_unlock(&l->lock);
}

void lazy_stop(struct vm *vm)
{
	struct lazy *l = vm->lazy;
	int i;

	pthread_mutex_lock(&l->lock);
	__atomic_store_n(&l->stop, true, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&l->more);
	pthread_mutex_unlock(&l->lock);
	for (i = 0; i < l->nr_threads; i++)
		pthread_join(l->threads[i], NULL);
	for (i = 0; i < l->nr_pre_threads; i++)
		pthread_join(l->pre_threads[i], NULL);
	pthread_join(l->uffd_thread, NULL);
	if (l->ring)
		pthread_join(l->ring_thread, NULL);
}
