// SPDX-License-Identifier: GPL-2.0-only
/*
 * uapi_fuzz: a seeded fuzzer over the userfault and userspace async #PF
 * uAPI (Documentation/userfault.rst) and the ioctls it shares state with,
 * judged by the errno each call is documented to give, by the guest's view
 * of its memory, and by the kernel's log (the debug tier's judge: KASAN,
 * lockdep, ODEBUG, kmemleak, WARN, hung tasks).
 *
 *   uapi_fuzz [--seed N] [--calls N] [--threads N] [--procs N]
 *             [--seconds N] [--world-calls N] [--kill PERCENT]
 *             [--functions FILE]
 *
 * --seconds bounds the run; given, a run it cuts short fails.  --functions
 * names kernel functions whose function tracer hits the run reports.
 *
 * The run is a sequence of "worlds", --procs of them alive at a time,
 * each a child process with its own VM: FZ_VCPUS vCPUs whose guests turn
 * paravirtual async #PF on and off, mask and unmask interrupts and read
 * pages of a userfault slot, run by a thread each, which handles their
 * exits, saves and restores their state between exits, and completes
 * tokens; and --threads threads calling the uAPI at random: READY with
 * live, stale, completed, random and other vCPUs' tokens; userfault and
 * plain memslot changes, with bitmaps that are swapped, unmapped or too
 * small while the vCPUs run; a scratch slot created, moved and deleted;
 * the exitless ring with random sizes, mappings and consumer counts;
 * nx_huge_pages toggles.  A world ends after --world-calls calls, by
 * exiting with or without freeing its VM, or by the parent's SIGKILL at a
 * random moment; the parent holds each world's VM and vCPU fds (passed
 * over a socket), checks that its ioctls on them fail with EIO, and closes
 * them after the world's mm is gone, with work of both kinds in flight.
 *
 * Every world's seed derives from --seed, and every thread's from its
 * world's, so a failure names the seed and world to replay; the run is
 * not deterministic beyond that (threads race, as they are meant to).
 * On a failure the thread prints its last calls.  At the end: calls,
 * calls per second, and the errno histogram of each call.
 */
#define _GNU_SOURCE /* pthread_tryjoin_np(), strerrorname_np() */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <asm/kvm_para.h>

#include "kvm_util.h"
#include "processor.h"
#include "apic.h"
#include "backport_util.h"
#include "fd_passing.h"

#define FZ_VCPUS	2
#define FZ_SLOT		1
#define FZ_GPA		0x40000000ULL
#define FZ_PAGES	64
#define FZ_BITMAP_BYTES	(FZ_PAGES / 8)
#define FZ_SCRATCH_SLOT	2
#define FZ_SCRATCH_SIZE	(2UL << 20)
#define FZ_SCRATCH_GPA0	0x80000000ULL
#define FZ_SCRATCH_GPA1	0xc0000000ULL
#define FZ_APF_VECTOR	0xec
/* How long a "not present" handler waits for "page ready", in spins. */
#define FZ_WAIT_SPINS	20000
#define FZ_NR_ERRNO	134
#define FZ_POOL		64
#define FZ_LOG		16
#define FZ_RING_MAX	4096

/* ---- the guest ------------------------------------------------------- */

/*
 * Each vCPU's async #PF data area: MSR_KVM_ASYNC_PF_EN takes a 64-byte
 * aligned address, and the structure is 68 bytes long.
 */
struct fz_apf_area {
	struct kvm_vcpu_pv_apf_data d;
} __aligned(128);

static struct fz_apf_area fz_apf[FZ_VCPUS];
/* The last "page ready" token of each vCPU. */
static uint32_t fz_ready[FZ_VCPUS];

static uint64_t fz_next(uint64_t *s)
{
	/* xorshift64*: the guest's and the host's generator. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static uint32_t guest_me(void)
{
	return x2apic_read_reg(APIC_ID);
}

/*
 * Only "page not present" may come here: the guest reads mapped pages
 * only.  It waits a while for "page ready", interrupts on, and returns,
 * which retries the access whether the page is ready or not.
 */
static void fz_pf_handler(struct ex_regs *regs)
{
	uint32_t me = guest_me(), token;
	uint64_t cr2, i;

	asm volatile("mov %%cr2, %0" : "=r"(cr2));
	GUEST_ASSERT_2(me < FZ_VCPUS &&
		       fz_apf[me].d.flags == KVM_PV_REASON_PAGE_NOT_PRESENT,
		       cr2, regs->rip);
	token = cr2;
	fz_apf[me].d.flags = 0;
	asm volatile("sti");
	for (i = 0; i < FZ_WAIT_SPINS && READ_ONCE(fz_ready[me]) != token; i++)
		cpu_relax();
	asm volatile("cli");
}

static void fz_ready_handler(struct ex_regs *regs)
{
	uint32_t me = guest_me();

	if (me < FZ_VCPUS) {
		WRITE_ONCE(fz_ready[me], fz_apf[me].d.token);
		fz_apf[me].d.token = 0;
	}
	wrmsr(MSR_KVM_ASYNC_PF_ACK, 1);
	x2apic_write_reg(APIC_EOI, 0);
}

static void fz_guest(uint64_t me, uint64_t seed, uint64_t apf_gpa)
{
	uint64_t s = seed | 1, r, page, val, i;

	x2apic_enable();
	for (i = 0;; i++) {
		r = fz_next(&s);
		switch (r % 16) {
		case 0:
			wrmsr(MSR_KVM_ASYNC_PF_INT, FZ_APF_VECTOR);
			wrmsr(MSR_KVM_ASYNC_PF_EN, apf_gpa |
			      KVM_ASYNC_PF_ENABLED |
			      KVM_ASYNC_PF_DELIVERY_AS_INT |
			      ((r >> 8) & 1 ? KVM_ASYNC_PF_SEND_ALWAYS : 0));
			break;
		case 1:
			wrmsr(MSR_KVM_ASYNC_PF_EN, 0);
			break;
		case 2:
			asm volatile("sti");
			break;
		case 3:
			asm volatile("cli");
			break;
		default:
			/*
			 * Whatever the bitmap, the slot and the ring go
			 * through, a read sees the page's own value.
			 */
			page = (r >> 8) % FZ_PAGES;
			val = READ_ONCE(*(uint64_t *)(FZ_GPA + page * PAGE_SIZE +
						      ((r >> 20) % 512) * 8));
			GUEST_ASSERT_2(val == page_value(page), page, val);
			break;
		}
		if (!(i % 256))
			GUEST_SYNC(i);
	}
}

/* ---- what the run counts, in memory shared by all its processes ------ */

enum fz_op {
	OP_RUN, OP_READY, OP_UF_REGION, OP_PLAIN_REGION, OP_SCRATCH,
	OP_ENABLE_CAP, OP_CHECK_EXT, OP_RING_CREATE, OP_RING_MMAP,
	OP_RING_ACCEPT, OP_RING_CLOSE, OP_VCPU_STATE, OP_NX_TOGGLE,
	OP_FOREIGN, OP_DEBUGFS, FZ_NR_OPS
};

static const char * const fz_op_name[FZ_NR_OPS] = {
	"KVM_RUN", "KVM_ASYNC_PF_USER_READY", "KVM_SET_USERFAULT_MEMORY_REGION",
	"KVM_SET_USER_MEMORY_REGION", "scratch slot", "KVM_ENABLE_CAP",
	"KVM_CHECK_EXTENSION", "KVM_ASYNC_PF_USER_RING", "ring mmap",
	"KVM_ASYNC_PF_USER_RING_ACCEPT", "ring close/munmap",
	"vCPU state", "nx_huge_pages", "ioctl from another process",
	"debugfs tdp_mmu_zap_cpus",
};

#define FZ_MAX_FUNCS	1024
#define FZ_MAX_PROCS	8

struct fz_shared {
	uint64_t calls;
	uint64_t hist[FZ_NR_OPS][FZ_NR_ERRNO + 1];
	/* The calls of the world in each of the parent's slots. */
	uint64_t world_calls[FZ_MAX_PROCS];
	/*
	 * What the world's VM held for userspace when the world last
	 * looked: tokens it has not completed, and ring entries it has not
	 * accepted; the parent counts the worlds it kills with some out.
	 */
	uint32_t world_tokens[FZ_MAX_PROCS], world_ring[FZ_MAX_PROCS];
	/* Function tracer hits of --functions' names, by the guardian. */
	uint64_t hits[FZ_MAX_FUNCS];
	bool done;	/* the parent's run is over */
};

static struct fz_shared *shared;

/* ---- options, and the failure report --------------------------------- */

static uint64_t opt_seed = 1, opt_calls = 10000, opt_seconds = 600;
static uint64_t opt_world_calls = 2000, opt_kill = 33;
static int opt_threads = 2, opt_procs = 2;
static const char *opt_functions;

/* The calls a thread made last, for the report of a failure. */
struct fz_log {
	char line[FZ_LOG][120];
	unsigned int n;
};

static __thread struct fz_log fz_log;
static __thread char fz_who[16] = "main";
static uint64_t world_seed;
static int world_nr, world_slot = -1;

static pid_t guardian, parent;

static void fz_parent_cleanup(void);
static void fz_finish(void);

static void fz_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(fz_log.line[fz_log.n++ % FZ_LOG], sizeof(fz_log.line[0]),
		  fmt, ap);
	va_end(ap);
}

static __noreturn __printf(1, 2) void fz_fail(const char *fmt, ...)
{
	unsigned int i;
	va_list ap;

	fprintf(stderr, "uapi_fuzz: FAIL: --seed %lu, world %d (seed %#lx), %s: ",
		opt_seed, world_nr, world_seed, fz_who);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	for (i = fz_log.n > FZ_LOG ? fz_log.n - FZ_LOG : 0; i < fz_log.n; i++)
		fprintf(stderr, "  call %u: %s\n", i, fz_log.line[i % FZ_LOG]);
	fflush(stderr);
	if (world_slot < 0)
		fz_parent_cleanup();
	_exit(1);
}

#define FZ_OK(...)	((const int[]){ __VA_ARGS__, -1 })

/*
 * Count the result of the call fz_note() named last (ret < 0 and errno
 * as a system call gives them) and fail unless its errno, 0 for success,
 * is one of @ok.
 */
static void fz_check(enum fz_op op, int ret, const int *ok)
{
	int e = ret < 0 ? errno : 0, i;

	__atomic_fetch_add(&shared->calls, 1, __ATOMIC_RELAXED);
	if (world_slot >= 0)
		__atomic_fetch_add(&shared->world_calls[world_slot], 1,
				   __ATOMIC_RELAXED);
	__atomic_fetch_add(&shared->hist[op][e < FZ_NR_ERRNO ? e : FZ_NR_ERRNO],
			   1, __ATOMIC_RELAXED);
	for (i = 0; ok[i] >= 0; i++)
		if (ok[i] == e)
			return;
	fz_fail("%s gave %s (%d), which the documentation does not allow there",
		fz_op_name[op], e ? strerror(e) : "success", e);
}

/* ---- a world: one VM and the threads that use it --------------------- */

struct fz_ring {
	int fd, efd;
	void *map;
	size_t bytes;
	uint32_t entries, consumer;
	uint32_t unaccepted;	/* producer - consumer when last read */
};

struct fz_world {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu[FZ_VCPUS];
	uint8_t *mem;		/* the host's view of the userfault slot */
	bool cap;		/* KVM_CAP_ASYNC_PF_USER enabled */
	uint32_t ring_max;	/* KVM_CAP_ASYNC_PF_USER_RING */
	bool stop;

	/* The slots, the bitmap, the ring and the token pool: under @lock. */
	pthread_mutex_t lock;
	uint8_t *bitmap;	/* a page of its own, or NULL when unmapped */
	bool uf, dirty_log;
	bool scratch;
	uint64_t scratch_gpa;
	void *scratch_mem;
	struct fz_ring ring;
	uint64_t unmaps;	/* bitmaps unmapped while in use */
	void *no_access;	/* a PROT_NONE page: a bitmap KVM cannot read */
	uint64_t pool[FZ_POOL];	/* token | vCPU index << 32 */
	unsigned int nr_pool;
	uint64_t done[FZ_POOL];	/* tokens READY completed */
	unsigned int nr_done;
};

static struct fz_world w;

/* Under w.lock. */
static void fz_count_out(void)
{
	if (world_slot < 0)
		return;
	WRITE_ONCE(shared->world_tokens[world_slot], w.nr_pool);
	WRITE_ONCE(shared->world_ring[world_slot],
		   w.ring.fd >= 0 ? w.ring.unaccepted : 0);
}

static void fz_pool_add(uint64_t token, uint32_t vi)
{
	if (w.nr_pool < FZ_POOL)
		w.pool[w.nr_pool++] = token | (uint64_t)vi << 32;
	fz_count_out();
}

static uint8_t *fz_bitmap_new(uint64_t *s)
{
	uint8_t *b = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int i;

	TEST_ASSERT(b != MAP_FAILED, "mmap of a bitmap failed");
	for (i = 0; i < FZ_BITMAP_BYTES; i++)
		b[i] = fz_next(s);
	return b;
}

static struct kvm_userspace_memory_region fz_slot1(void)
{
	struct kvm_userspace_memory_region r = {
		.slot = FZ_SLOT,
		.flags = w.dirty_log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = FZ_GPA,
		.memory_size = FZ_PAGES * PAGE_SIZE,
		.userspace_addr = (uint64_t)w.mem,
	};

	return r;
}

static int fz_uf_region(struct kvm_userfault_memory_region *uf)
{
	return ioctl(w.vm->fd, KVM_SET_USERFAULT_MEMORY_REGION, uf);
}

/* A readable bitmap for slot 1, after one was unmapped under it. */
static void fz_repair_bitmap(uint64_t *s)
{
	struct kvm_userfault_memory_region uf = { 0 };

	pthread_mutex_lock(&w.lock);
	if (!w.bitmap)
		w.bitmap = fz_bitmap_new(s);
	uf.region = fz_slot1();
	uf.region.flags |= KVM_MEM_USERFAULT;
	uf.userfault_bitmap = (uint64_t)w.bitmap;
	uf.userfault_bitmap_size = FZ_BITMAP_BYTES;
	fz_note("repair: userfault on, new bitmap");
	fz_check(OP_UF_REGION, fz_uf_region(&uf), FZ_OK(0));
	w.uf = true;
	pthread_mutex_unlock(&w.lock);
}

/* ---- the vCPU threads -------------------------------------------------- */

struct fz_vcpu {
	int i;
	uint64_t seed;
	pthread_t thread;
};

static struct fz_vcpu fz_vcpus[FZ_VCPUS];

static int fz_ready_ioctl(struct kvm_vcpu *vcpu, uint64_t token, uint64_t flags)
{
	struct kvm_async_pf_user_ready ready = {
		.token = token,
		.flags = flags,
	};

	return ioctl(vcpu->fd, KVM_ASYNC_PF_USER_READY, &ready);
}

/* What a VMM does between exits: save and restore, or turn async #PF off. */
static void fz_vcpu_state(struct kvm_vcpu *vcpu, uint64_t *s)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} msrs = { .h.nmsrs = 1, .e.index = MSR_KVM_ASYNC_PF_EN };
	struct kvm_vcpu_events events;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int ret;

	switch (fz_next(s) % 4) {
	case 0:
		fz_note("GET/SET_REGS vcpu %u", vcpu->id);
		ret = ioctl(vcpu->fd, KVM_GET_REGS, &regs);
		if (!ret)
			ret = ioctl(vcpu->fd, KVM_SET_REGS, &regs);
		break;
	case 1:
		fz_note("GET/SET_SREGS vcpu %u", vcpu->id);
		ret = ioctl(vcpu->fd, KVM_GET_SREGS, &sregs);
		if (!ret)
			ret = ioctl(vcpu->fd, KVM_SET_SREGS, &sregs);
		break;
	case 2:
		fz_note("GET/SET_VCPU_EVENTS vcpu %u", vcpu->id);
		ret = ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &events);
		if (!ret)
			ret = ioctl(vcpu->fd, KVM_SET_VCPU_EVENTS, &events);
		break;
	default:
		/* Turning async #PF off drops the vCPU's items: documented. */
		fz_note("GET/SET_MSRS MSR_KVM_ASYNC_PF_EN vcpu %u", vcpu->id);
		/* Each returns how many MSRs it did: 1. */
		ret = ioctl(vcpu->fd, KVM_GET_MSRS, &msrs);
		if (ret == 1) {
			if (fz_next(s) & 1)
				msrs.e.data = 0;
			ret = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
		}
		if (ret == 1)
			ret = 0;
		else if (!ret)
			fz_fail("KVM_GET/SET_MSRS of MSR_KVM_ASYNC_PF_EN did none");
		break;
	}
	fz_check(OP_VCPU_STATE, ret, FZ_OK(0));
}

static void fz_memory_fault(struct fz_vcpu *v, struct kvm_run *run,
			    uint64_t *s)
{
	uint64_t gpa = run->memory_fault.gpa, flags = run->memory_fault.flags;
	uint64_t token = run->memory_fault.token, page;
	bool async = flags & KVM_MEMORY_EXIT_FLAG_ASYNC_PF_USER;

	if (gpa < FZ_GPA || gpa >= FZ_GPA + FZ_PAGES * PAGE_SIZE ||
	    gpa % PAGE_SIZE || run->memory_fault.size != PAGE_SIZE ||
	    !(flags & KVM_MEMORY_EXIT_FLAG_USERFAULT) ||
	    (async ? !token || (token & 0xfff) != (uint64_t)v->i ||
		     token >> 32 : token))
		fz_fail("memory fault exit: gpa %#lx size %#llx flags %#lx token %#lx",
			gpa, run->memory_fault.size, flags, token);
	page = (gpa - FZ_GPA) / PAGE_SIZE;

	pthread_mutex_lock(&w.lock);
	/* Mostly provide the page; leaving it marked makes it exit again. */
	if (w.bitmap && fz_next(s) % 4)
		__atomic_fetch_and(&w.bitmap[page / 8],
				   (uint8_t)~(1u << (page % 8)), __ATOMIC_RELEASE);
	if (async && !(fz_next(s) % 2)) {
		pthread_mutex_unlock(&w.lock);
		fz_note("READY vcpu %d token %#lx (its own exit's)", v->i, token);
		/* Queued until the vCPU enters again: nothing can drop it. */
		fz_check(OP_READY, fz_ready_ioctl(w.vcpu[v->i], token, 0),
			 FZ_OK(0, EALREADY));
		return;
	}
	if (async)
		fz_pool_add(token, v->i);
	pthread_mutex_unlock(&w.lock);
}

static void fz_sigusr1(int sig)
{
}

static void *fz_vcpu_thread(void *arg)
{
	struct fz_vcpu *v = arg;
	struct kvm_vcpu *vcpu = w.vcpu[v->i];
	struct kvm_run *run = vcpu->run;
	uint64_t s = v->seed, unmaps;
	struct ucall uc;
	bool unmapped;
	int ret, e;

	snprintf(fz_who, sizeof(fz_who), "vcpu %d", v->i);
	while (!READ_ONCE(w.stop)) {
		if (!(fz_next(&s) % 8))
			fz_vcpu_state(vcpu, &s);
		pthread_mutex_lock(&w.lock);
		unmapped = !w.bitmap && w.uf;
		unmaps = w.unmaps;
		pthread_mutex_unlock(&w.lock);
		fz_note("KVM_RUN vcpu %d", v->i);
		ret = __vcpu_run(vcpu);
		e = errno;
		if (!ret && run->exit_reason == KVM_EXIT_IO) {
			switch (get_ucall(vcpu, &uc)) {
			case UCALL_SYNC:
				break;
			case UCALL_ABORT:
				/* 6.1's layout: text, file, line, values. */
				fz_fail("%s at %s:%ld: values %#lx, %#lx",
					(const char *)uc.args[0],
					(const char *)uc.args[1], uc.args[2],
					uc.args[3], uc.args[4]);
			default:
				fz_fail("guest: ucall %lu (%#lx, %#lx, %#lx): unhandled exception?",
					uc.cmd, uc.args[0], uc.args[1],
					uc.args[2]);
			}
			errno = 0;
			fz_check(OP_RUN, 0, FZ_OK(0));
			continue;
		}
		errno = e;
		if (ret && e == EFAULT && run->exit_reason == KVM_EXIT_MEMORY_FAULT) {
			fz_check(OP_RUN, ret, FZ_OK(EFAULT));
			fz_memory_fault(v, run, &s);
			continue;
		}
		/*
		 * The unmap of a bitmap in use counts itself only after its
		 * munmap(), both under w.lock: read the count under it too,
		 * or an EFAULT from an unmap in progress looks like none.
		 */
		if (ret && e == EFAULT && !unmapped) {
			pthread_mutex_lock(&w.lock);
			unmapped = w.unmaps != unmaps;
			pthread_mutex_unlock(&w.lock);
		}
		if (ret && e == EFAULT && unmapped) {
			/* The bitmap was unmapped under the slot: documented. */
			fz_check(OP_RUN, ret, FZ_OK(EFAULT));
			fz_repair_bitmap(&s);
			continue;
		}
		if (ret && e == EINTR) {
			fz_check(OP_RUN, ret, FZ_OK(EINTR));
			continue;
		}
		/* The world ends in fz_fail(): the lock is never released. */
		pthread_mutex_lock(&w.lock);
		fz_fail("KVM_RUN: %d (%s), exit %u (%s); userfault %s, bitmap %p, %lu unmaps",
			ret, strerror(e), run->exit_reason,
			exit_reason_str(run->exit_reason), w.uf ? "on" : "off",
			w.bitmap, w.unmaps);
	}
	return NULL;
}

/* ---- the fuzzing threads ------------------------------------------------ */

/* Where a READY's token came from, which decides the errnos it may get. */
enum fz_token_src { TOK_POOL, TOK_DONE, TOK_RANDOM, TOK_UNKNOWN };

static void fz_op_ready(uint64_t *s)
{
	uint32_t vi = fz_next(s) % FZ_VCPUS, owner;
	uint64_t token = 0, flags = 0, r = fz_next(s);
	enum fz_token_src src = TOK_UNKNOWN;
	unsigned int k;
	int ret;

	pthread_mutex_lock(&w.lock);
	switch (r % 8) {
	case 0:
	case 1:
	case 2:
		/* A token an exit or the ring gave, on its vCPU or another. */
		if (w.nr_pool) {
			k = (r >> 8) % w.nr_pool;
			token = (uint32_t)w.pool[k];
			if (r & BIT(20))
				vi = w.pool[k] >> 32;
			src = TOK_POOL;
		}
		break;
	case 3:
		/* One READY completed. */
		if (w.nr_done) {
			token = w.done[(r >> 8) % w.nr_done];
			src = TOK_DONE;
		}
		break;
	case 4:
		token = 0;
		break;
	case 5:
		token = (uint32_t)(r >> 16);
		src = TOK_RANDOM;
		break;
	case 6:
		token = (r >> 16) | BIT_ULL(32 + (r & 15));
		break;
	default:
		/* A vCPU that does not exist. */
		token = (r >> 32) << 12 | (FZ_VCPUS + (r >> 8) % 64);
		break;
	}
	pthread_mutex_unlock(&w.lock);
	if (!(r >> 60))
		flags = BIT_ULL((r >> 8) % 64);

	fz_note("READY vcpu %u token %#lx flags %#lx", vi, token, flags);
	ret = fz_ready_ioctl(w.vcpu[vi], token, flags);
	owner = token & 0xfff;
	/*
	 * In the kernel's order: flags, the cap, the lookup; then why a
	 * token that is not queued is not (Documentation/userfault.rst).
	 */
	if (flags)
		fz_check(OP_READY, ret, FZ_OK(EINVAL));
	else if (!w.cap)
		fz_check(OP_READY, ret, FZ_OK(EOPNOTSUPP));
	else if (!(token >> 12) || token >> 32 || owner >= FZ_VCPUS)
		fz_check(OP_READY, ret, FZ_OK(ENOENT));
	else if (owner != vi)
		fz_check(OP_READY, ret, FZ_OK(EXDEV));
	else if (src == TOK_POOL)
		/* Issued: live, or completed or dropped since. */
		fz_check(OP_READY, ret, FZ_OK(0, EALREADY, ESTALE));
	else if (src == TOK_DONE)
		fz_check(OP_READY, ret, FZ_OK(EALREADY, ESTALE));
	else
		fz_check(OP_READY, ret,
			 FZ_OK(0, ENOENT, EALREADY, ESTALE, EPERM));
	if (ret || !token)
		return;

	pthread_mutex_lock(&w.lock);
	for (k = 0; k < w.nr_pool; k++) {
		if ((uint32_t)w.pool[k] == token) {
			w.pool[k] = w.pool[--w.nr_pool];
			break;
		}
	}
	fz_count_out();
	w.done[w.nr_done < FZ_POOL ? w.nr_done++ : fz_next(s) % FZ_POOL] = token;
	pthread_mutex_unlock(&w.lock);
}

static void fz_op_uf_region(uint64_t *s)
{
	struct kvm_userfault_memory_region uf = { 0 };
	uint64_t r = fz_next(s);
	uint8_t *old = NULL;
	int ret;

	pthread_mutex_lock(&w.lock);
	uf.region = fz_slot1();
	uf.region.flags |= KVM_MEM_USERFAULT;
	uf.userfault_bitmap = (uint64_t)w.bitmap;
	uf.userfault_bitmap_size = FZ_BITMAP_BYTES;
	switch (r % 10) {
	case 0:
		/* On, with the bitmap it has, some pages marked again. */
		if (!w.bitmap)
			w.bitmap = fz_bitmap_new(s);
		w.bitmap[(r >> 8) % FZ_BITMAP_BYTES] |= r >> 16;
		uf.userfault_bitmap = (uint64_t)w.bitmap;
		fz_note("USERFAULT_REGION on, bitmap %p", w.bitmap);
		ret = fz_uf_region(&uf);
		fz_check(OP_UF_REGION, ret, FZ_OK(0));
		w.uf = true;
		break;
	case 1:
		/* A new bitmap while the vCPUs run; the old one goes away. */
		old = w.bitmap;
		w.bitmap = fz_bitmap_new(s);
		uf.userfault_bitmap = (uint64_t)w.bitmap;
		fz_note("USERFAULT_REGION on, new bitmap %p", w.bitmap);
		ret = fz_uf_region(&uf);
		fz_check(OP_UF_REGION, ret, FZ_OK(0));
		w.uf = true;
		if (old)
			munmap(old, PAGE_SIZE);
		break;
	case 2:
		uf.region.flags &= ~KVM_MEM_USERFAULT;
		uf.userfault_bitmap = 0;
		uf.userfault_bitmap_size = 0;
		fz_note("USERFAULT_REGION off");
		ret = fz_uf_region(&uf);
		fz_check(OP_UF_REGION, ret, FZ_OK(0));
		w.uf = false;
		break;
	case 3:
		uf.flags = BIT((r >> 8) % 32);
		fz_note("USERFAULT_REGION flags %#x", uf.flags);
		fz_check(OP_UF_REGION, fz_uf_region(&uf), FZ_OK(EINVAL));
		break;
	case 4:
		if (r & BIT(8))
			uf.pad1 = r >> 32;
		else
			uf.pad2[(r >> 9) % 4] = r >> 16 | 1;
		fz_note("USERFAULT_REGION pad %#x/%#lx", uf.pad1, r >> 16 | 1);
		fz_check(OP_UF_REGION, fz_uf_region(&uf), FZ_OK(EINVAL));
		break;
	case 5:
		uf.userfault_bitmap = 0;
		fz_note("USERFAULT_REGION NULL bitmap");
		fz_check(OP_UF_REGION, fz_uf_region(&uf), FZ_OK(EINVAL));
		break;
	case 6:
		uf.region.flags &= ~KVM_MEM_USERFAULT;
		uf.userfault_bitmap = (uint64_t)(w.bitmap ?: w.mem);
		fz_note("USERFAULT_REGION bitmap without the flag");
		fz_check(OP_UF_REGION, fz_uf_region(&uf), FZ_OK(EINVAL));
		break;
	case 7:
		uf.userfault_bitmap = (uint64_t)(w.bitmap ?: w.mem);
		uf.userfault_bitmap_size = (r >> 8) % FZ_BITMAP_BYTES;
		fz_note("USERFAULT_REGION bitmap of %llu bytes",
			uf.userfault_bitmap_size);
		fz_check(OP_UF_REGION, fz_uf_region(&uf), FZ_OK(ENOBUFS));
		break;
	case 8:
		/* Not readable, or not a user address. */
		uf.userfault_bitmap = r & BIT(8) ? 0xffff888000000000ULL :
				      (uint64_t)w.no_access;
		fz_note("USERFAULT_REGION bitmap at %#llx", uf.userfault_bitmap);
		fz_check(OP_UF_REGION, fz_uf_region(&uf), FZ_OK(EFAULT));
		break;
	default:
		/*
		 * Unmap the bitmap in use: the vCPUs get EFAULT and repair.
		 * They read w.unmaps under w.lock, which the munmap() and
		 * the count both happen under.
		 */
		if (w.bitmap && w.uf) {
			fz_note("munmap bitmap %p in use", w.bitmap);
			munmap(w.bitmap, PAGE_SIZE);
			w.bitmap = NULL;
			w.unmaps++;
		}
		break;
	}
	pthread_mutex_unlock(&w.lock);
}

static void fz_op_plain_region(uint64_t *s)
{
	struct kvm_userspace_memory_region r;
	uint64_t x = fz_next(s);

	pthread_mutex_lock(&w.lock);
	r = fz_slot1();
	if (x % 4) {
		/* Dirty logging on or off keeps the userfault flag. */
		r.flags ^= KVM_MEM_LOG_DIRTY_PAGES;
		fz_note("USER_MEMORY_REGION slot 1 flags %#x", r.flags);
		fz_check(OP_PLAIN_REGION,
			 ioctl(w.vm->fd, KVM_SET_USER_MEMORY_REGION, &r),
			 FZ_OK(0));
		w.dirty_log = !w.dirty_log;
	} else {
		r.flags |= KVM_MEM_USERFAULT;
		fz_note("USER_MEMORY_REGION slot 1 with KVM_MEM_USERFAULT");
		fz_check(OP_PLAIN_REGION,
			 ioctl(w.vm->fd, KVM_SET_USER_MEMORY_REGION, &r),
			 FZ_OK(EINVAL));
	}
	pthread_mutex_unlock(&w.lock);
}

static void fz_op_scratch(uint64_t *s)
{
	struct kvm_userfault_memory_region uf = { 0 };
	struct kvm_userspace_memory_region *r = &uf.region;
	uint64_t x = fz_next(s);
	int ret;

	pthread_mutex_lock(&w.lock);
	r->slot = FZ_SCRATCH_SLOT;
	r->guest_phys_addr = w.scratch ? w.scratch_gpa : FZ_SCRATCH_GPA0;
	r->memory_size = FZ_SCRATCH_SIZE;
	r->userspace_addr = (uint64_t)w.scratch_mem;
	switch (x % 6) {
	case 0:
		/* Create, or delete. */
		if (w.scratch)
			r->memory_size = 0;
		fz_note("scratch %s at %#llx", w.scratch ? "delete" : "create",
			r->guest_phys_addr);
		ret = ioctl(w.vm->fd, KVM_SET_USER_MEMORY_REGION, r);
		fz_check(OP_SCRATCH, ret, FZ_OK(0));
		w.scratch = !w.scratch;
		w.scratch_gpa = r->guest_phys_addr;
		break;
	case 1:
		/* Move. */
		r->guest_phys_addr = r->guest_phys_addr == FZ_SCRATCH_GPA0 ?
				     FZ_SCRATCH_GPA1 : FZ_SCRATCH_GPA0;
		fz_note("scratch %s at %#llx", w.scratch ? "move" : "create",
			r->guest_phys_addr);
		ret = ioctl(w.vm->fd, KVM_SET_USER_MEMORY_REGION, r);
		fz_check(OP_SCRATCH, ret, FZ_OK(0));
		w.scratch = true;
		w.scratch_gpa = r->guest_phys_addr;
		break;
	case 2:
		/* Overlapping the userfault slot. */
		r->guest_phys_addr = FZ_GPA;
		fz_note("scratch over slot 1");
		ret = ioctl(w.vm->fd, KVM_SET_USER_MEMORY_REGION, r);
		fz_check(OP_SCRATCH, ret, FZ_OK(EEXIST));
		break;
	case 3:
		/* A new size for an existing slot. */
		r->memory_size = FZ_SCRATCH_SIZE / 2;
		fz_note("scratch resize (%s)", w.scratch ? "exists" : "new");
		ret = ioctl(w.vm->fd, KVM_SET_USER_MEMORY_REGION, r);
		fz_check(OP_SCRATCH, ret, FZ_OK(w.scratch ? EINVAL : 0));
		if (!w.scratch && !ret) {
			/* Created half size: delete it again. */
			r->memory_size = 0;
			fz_check(OP_SCRATCH,
				 ioctl(w.vm->fd, KVM_SET_USER_MEMORY_REGION, r),
				 FZ_OK(0));
		}
		break;
	default:
		/* Userfault on the scratch slot, with a bitmap of its own. */
		r->flags = KVM_MEM_USERFAULT;
		uf.userfault_bitmap = (uint64_t)w.scratch_mem;
		uf.userfault_bitmap_size = FZ_SCRATCH_SIZE / PAGE_SIZE / 8;
		if (x & BIT(8))
			r->flags |= KVM_MEM_LOG_DIRTY_PAGES;
		fz_note("scratch userfault flags %#x", r->flags);
		fz_check(OP_SCRATCH, fz_uf_region(&uf), FZ_OK(0));
		w.scratch = true;
		w.scratch_gpa = r->guest_phys_addr;
		break;
	}
	pthread_mutex_unlock(&w.lock);
}

static void fz_op_caps(uint64_t *s)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_ASYNC_PF_USER };
	uint64_t x = fz_next(s);
	int ret;

	if (x % 2) {
		cap.args[(x >> 8) % 4] = x >> 16 | 1;
		fz_note("ENABLE_CAP ASYNC_PF_USER args %#llx %#llx %#llx %#llx",
			cap.args[0], cap.args[1], cap.args[2], cap.args[3]);
		fz_check(OP_ENABLE_CAP, ioctl(w.vm->fd, KVM_ENABLE_CAP, &cap),
			 FZ_OK(EINVAL));
		return;
	}
	if (w.cap) {
		fz_note("ENABLE_CAP ASYNC_PF_USER again");
		fz_check(OP_ENABLE_CAP, ioctl(w.vm->fd, KVM_ENABLE_CAP, &cap),
			 FZ_OK(0));
		return;
	}
	fz_note("CHECK_EXTENSION");
	ret = ioctl(w.vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_USERFAULT) != 1 ||
	      ioctl(w.vm->fd, KVM_CHECK_EXTENSION, KVM_CAP_ASYNC_PF_USER) != 1 ||
	      ioctl(w.vm->fd, KVM_CHECK_EXTENSION,
		    KVM_CAP_ASYNC_PF_USER_RING) != FZ_RING_MAX;
	if (ret)
		fz_fail("KVM_CHECK_EXTENSION: not 1, 1, %d for our 3 caps",
			FZ_RING_MAX);
	errno = 0;
	fz_check(OP_CHECK_EXT, 0, FZ_OK(0));
}

/* What else a VMM may do with the ring's mapping: write to it, or fork. */
static void fz_ring_map_ops(struct fz_ring *rg, uint64_t x)
{
	pid_t pid;

	if (x & BIT(16)) {
		fz_note("ring mprotect PROT_WRITE");
		fz_check(OP_RING_MMAP, mprotect(rg->map, rg->bytes,
						PROT_READ | PROT_WRITE),
			 FZ_OK(EACCES));
		return;
	}
	/* The child's copy counts as the same mapping, until it exits. */
	fz_note("ring MADV_DOFORK, fork");
	fz_check(OP_RING_MMAP, madvise(rg->map, rg->bytes, MADV_DOFORK),
		 FZ_OK(0));
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork failed");
	if (!pid)
		_exit(0);
	waitpid(pid, NULL, 0);
	madvise(rg->map, rg->bytes, MADV_DONTFORK);
}

static void fz_op_ring(uint64_t *s)
{
	struct kvm_async_pf_user_ring_setup setup = { 0 };
	struct fz_ring *rg = &w.ring;
	struct kvm_async_pf_user_ring *h;
	uint64_t x = fz_next(s), count;
	uint32_t producer, ahead, i;
	int ret, efd;
	void *map;

	pthread_mutex_lock(&w.lock);
	switch (x % 5) {
	case 0:
	case 1:
		setup.entries = 1u << ((x >> 8) % 14);
		efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		TEST_ASSERT(efd >= 0, "eventfd failed");
		setup.eventfd = efd;
		switch ((x >> 16) % 6) {
		case 0:
			setup.flags = 1;
			break;
		case 1:
			setup.pad2[(x >> 24) & 1] = 1;
			break;
		case 2:
			setup.entries += (x >> 24) % 3 + 1;
			break;
		case 3:
			setup.eventfd = w.vm->fd;
			break;
		case 4:
			setup.eventfd = (x >> 24) & 1 ? -1 : 1000;
			break;
		}
		fz_note("RING entries %u eventfd %d flags %#x pad2 %#llx",
			setup.entries, setup.eventfd, setup.flags,
			setup.pad2[0] | setup.pad2[1]);
		ret = ioctl(w.vm->fd, KVM_ASYNC_PF_USER_RING, &setup);
		/* In the documented order: fields, the cap, the eventfd. */
		if (setup.flags || setup.pad2[0] || setup.pad2[1] ||
		    setup.entries > w.ring_max ||
		    (setup.entries & (setup.entries - 1)))
			fz_check(OP_RING_CREATE, ret, FZ_OK(EINVAL));
		else if (!w.cap)
			fz_check(OP_RING_CREATE, ret, FZ_OK(ENXIO));
		else if (setup.eventfd == w.vm->fd)
			fz_check(OP_RING_CREATE, ret, FZ_OK(EINVAL));
		else if (setup.eventfd != efd)
			fz_check(OP_RING_CREATE, ret, FZ_OK(EBADF));
		else if (rg->fd >= 0 || rg->map)
			fz_check(OP_RING_CREATE, ret, FZ_OK(EEXIST));
		else
			fz_check(OP_RING_CREATE, ret, FZ_OK(0));
		if (ret < 0) {
			close(efd);
			break;
		}
		rg->fd = ret;
		rg->efd = efd;
		rg->entries = setup.entries;
		rg->consumer = 0;
		rg->unaccepted = 0;
		rg->bytes = sizeof(*h) + setup.entries *
			    sizeof(struct kvm_async_pf_user_ring_entry);
		rg->bytes = (rg->bytes + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		break;
	case 2:
		if (rg->map && !((x >> 12) % 4)) {
			fz_ring_map_ops(rg, x);
			break;
		}
		if (rg->fd < 0)
			break;
		switch ((x >> 8) % 4) {
		case 0:
			fz_note("ring mmap PROT_WRITE");
			map = mmap(NULL, rg->bytes, PROT_READ | PROT_WRITE,
				   MAP_SHARED, rg->fd, 0);
			fz_check(OP_RING_MMAP, map == MAP_FAILED ? -1 : 0,
				 FZ_OK(EACCES));
			break;
		case 1:
			fz_note("ring mmap of %zu bytes", rg->bytes + PAGE_SIZE);
			map = mmap(NULL, rg->bytes + PAGE_SIZE, PROT_READ,
				   MAP_SHARED, rg->fd, 0);
			fz_check(OP_RING_MMAP, map == MAP_FAILED ? -1 : 0,
				 FZ_OK(EINVAL));
			break;
		default:
			fz_note("ring mmap (%s)", rg->map ? "mapped" : "not mapped");
			map = mmap(NULL, rg->bytes, PROT_READ, MAP_SHARED,
				   rg->fd, 0);
			fz_check(OP_RING_MMAP, map == MAP_FAILED ? -1 : 0,
				 rg->map ? FZ_OK(EBUSY) : FZ_OK(0));
			if (map != MAP_FAILED)
				rg->map = map;
			break;
		}
		if (map != MAP_FAILED && map != rg->map)
			munmap(map, (x >> 8) % 4 == 1 ? rg->bytes + PAGE_SIZE :
			       rg->bytes);
		break;
	case 3:
		if (rg->fd < 0)
			break;
		h = rg->map;
		producer = h ? __atomic_load_n(&h->producer, __ATOMIC_ACQUIRE) :
			   rg->consumer;
		/* Read what is there: its tokens go to the pool. */
		for (i = rg->consumer; h && i != producer; i++) {
			struct kvm_async_pf_user_ring_entry *e =
				&h->entries[i % rg->entries];

			if (e->vcpu_id < FZ_VCPUS)
				fz_pool_add(e->token, e->vcpu_id);
		}
		switch ((x >> 8) % 4) {
		case 0:
			count = rg->consumer - 1 - (x >> 16) % 4;
			break;
		case 1:
			count = producer + 1 + (x >> 16) % 4;
			break;
		case 2:
			count = BIT_ULL(32) | producer;
			break;
		default:
			count = producer;
			break;
		}
		fz_note("RING_ACCEPT %#lx (consumer %u, producer %u%s)", count,
			rg->consumer, producer, h ? "" : ", not mapped");
		ret = ioctl(rg->fd, KVM_ASYNC_PF_USER_RING_ACCEPT, count);
		ahead = count - rg->consumer;
		if (count >> 32)
			fz_check(OP_RING_ACCEPT, ret, FZ_OK(EINVAL));
		else if (ahead >= BIT(31))
			fz_check(OP_RING_ACCEPT, ret, FZ_OK(ERANGE));
		else if (ahead > (uint32_t)(producer - rg->consumer))
			/* KVM may have written more since. */
			fz_check(OP_RING_ACCEPT, ret, FZ_OK(0, ERANGE));
		else
			fz_check(OP_RING_ACCEPT, ret, FZ_OK(0));
		if (!ret)
			rg->consumer = count;
		rg->unaccepted = producer - rg->consumer;
		fz_count_out();
		break;
	default:
		/* Close the fd or unmap, in either order. */
		if ((x >> 8) & 1 && rg->map) {
			fz_note("ring munmap");
			fz_check(OP_RING_CLOSE, munmap(rg->map, rg->bytes),
				 FZ_OK(0));
			rg->map = NULL;
		} else if (rg->fd >= 0) {
			fz_note("ring close");
			fz_check(OP_RING_CLOSE, close(rg->fd), FZ_OK(0));
			close(rg->efd);
			rg->fd = -1;
			fz_count_out();
		}
		break;
	}
	pthread_mutex_unlock(&w.lock);
}

static void fz_op_get_state(uint64_t *s)
{
	struct kvm_vcpu *vcpu = w.vcpu[fz_next(s) % FZ_VCPUS];
	struct kvm_vcpu_events events;
	struct kvm_regs regs;

	/* From another thread: reads only, a write would race the guest. */
	fz_note("GET_REGS/GET_VCPU_EVENTS vcpu %u from another thread",
		vcpu->id);
	fz_check(OP_VCPU_STATE, ioctl(vcpu->fd, KVM_GET_REGS, &regs),
		 FZ_OK(0));
	fz_check(OP_VCPU_STATE, ioctl(vcpu->fd, KVM_GET_VCPU_EVENTS, &events),
		 FZ_OK(0));
}

/* Where the zap workers ran: the VM's debugfs file, while it changes. */
static void fz_op_zap_cpus(void)
{
	char path[96], buf[4096];
	int fd;

	snprintf(path, sizeof(path), "/sys/kernel/debug/kvm/%d-%d/tdp_mmu_zap_cpus",
		 getpid(), w.vm->fd);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	fz_note("read %s", path);
	fz_check(OP_DEBUGFS, read(fd, buf, sizeof(buf)) < 0 ? -1 : 0,
		 FZ_OK(0));
	close(fd);
}

/* nx_huge_pages as the run found it ("" if it cannot be toggled). */
static char nx_orig[16];

static void fz_op_nx(uint64_t *s)
{
	const char *v = fz_next(s) & 1 ? "Y" : "N";
	int fd, ret;

	if (!nx_orig[0])
		return;
	fd = open(NX_HUGE_PAGES_PARAM, O_WRONLY);
	TEST_ASSERT(fd >= 0, "cannot open %s", NX_HUGE_PAGES_PARAM);
	fz_note("nx_huge_pages=%s", v);
	ret = write(fd, v, 1) == 1 ? 0 : -1;
	fz_check(OP_NX_TOGGLE, ret, FZ_OK(0));
	close(fd);
}

struct fz_thread {
	int i;
	uint64_t seed, calls;
	pthread_t thread;
};

static void *fz_thread(void *arg)
{
	struct fz_thread *t = arg;
	uint64_t s = t->seed, n;

	snprintf(fz_who, sizeof(fz_who), "thread %d", t->i);
	for (n = 0; n < t->calls && !READ_ONCE(w.stop); n++) {
		switch (fz_next(&s) % 20) {
		case 0 ... 6:
			fz_op_ready(&s);
			break;
		case 7 ... 9:
			fz_op_uf_region(&s);
			break;
		case 10:
			fz_op_plain_region(&s);
			break;
		case 11:
		case 12:
			fz_op_scratch(&s);
			break;
		case 13:
			fz_op_caps(&s);
			break;
		case 14 ... 17:
			fz_op_ring(&s);
			break;
		case 18:
			if (fz_next(&s) % 4)
				fz_op_get_state(&s);
			else
				fz_op_zap_cpus();
			break;
		default:
			/* Rarely: each toggle zaps every VM of the host. */
			if (t->i == 0 && !(fz_next(&s) % 16))
				fz_op_nx(&s);
			else
				fz_op_ready(&s);
			break;
		}
	}
	return NULL;
}

/*
 * World @nr: build the VM, send its fds to the parent on @sock, fuzz, and
 * end in one of three ways.
 */
static __noreturn void fz_world(int nr, int slot, uint64_t seed, int sock)
{
	struct fz_thread threads[16];
	struct sigaction sa = { .sa_handler = fz_sigusr1 };
	uint64_t s = seed, apf_gpa;
	int fds[2], i;

	world_nr = nr;
	world_slot = slot;
	world_seed = seed;
	/* A world does not outlive the run, whatever ends it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	sigaction(SIGUSR1, &sa, NULL);
	memset(&w, 0, sizeof(w));
	pthread_mutex_init(&w.lock, NULL);
	w.ring.fd = -1;
	w.vm = vm_create_with_vcpus(FZ_VCPUS, fz_guest, w.vcpu);
	vm_init_descriptor_tables(w.vm);
	vm_install_exception_handler(w.vm, PF_VECTOR, fz_pf_handler);
	vm_install_exception_handler(w.vm, FZ_APF_VECTOR, fz_ready_handler);
	vm_userspace_mem_region_add(w.vm, VM_MEM_SRC_ANONYMOUS, FZ_GPA, FZ_SLOT,
				    FZ_PAGES, 0);
	virt_map(w.vm, FZ_GPA, FZ_GPA, FZ_PAGES);
	w.mem = addr_gpa2hva(w.vm, FZ_GPA);
	for (i = 0; i < FZ_PAGES * PAGE_SIZE / 8; i++)
		((uint64_t *)w.mem)[i] = page_value(i / (PAGE_SIZE / 8));
	w.scratch_mem = mmap(NULL, FZ_SCRATCH_SIZE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(w.scratch_mem != MAP_FAILED, "mmap failed");
	w.no_access = mmap(NULL, PAGE_SIZE, PROT_NONE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(w.no_access != MAP_FAILED, "mmap failed");
	w.ring_max = kvm_check_cap(KVM_CAP_ASYNC_PF_USER_RING);
	/* Most worlds use async #PF; the others see EOPNOTSUPP and ENXIO. */
	if (fz_next(&s) % 8) {
		vm_enable_cap(w.vm, KVM_CAP_ASYNC_PF_USER, 0);
		w.cap = true;
	}
	w.bitmap = fz_bitmap_new(&s);
	fz_repair_bitmap(&s);

	for (i = 0; i < FZ_VCPUS; i++) {
		apf_gpa = addr_gva2gpa(w.vm, (vm_vaddr_t)&fz_apf[i]);
		vcpu_init_descriptor_tables(w.vcpu[i]);
		vcpu_args_set(w.vcpu[i], 3, i, fz_next(&s), apf_gpa);
	}

	/* The parent holds the VM and a vCPU beyond this process's life. */
	fds[0] = w.vm->fd;
	fds[1] = w.vcpu[fz_next(&s) % FZ_VCPUS]->fd;
	send_fds(sock, fds, 2);

	for (i = 0; i < FZ_VCPUS; i++) {
		fz_vcpus[i].i = i;
		fz_vcpus[i].seed = fz_next(&s);
		pthread_create(&fz_vcpus[i].thread, NULL, fz_vcpu_thread,
			       &fz_vcpus[i]);
	}
	for (i = 0; i < opt_threads; i++) {
		threads[i].i = i;
		threads[i].seed = fz_next(&s);
		threads[i].calls = opt_world_calls / opt_threads ?: 1;
		pthread_create(&threads[i].thread, NULL, fz_thread, &threads[i]);
	}
	/*
	 * Kick the vCPUs out of KVM_RUN now and then, as a VMM's signals
	 * do: a vCPU may wait in KVM for a token nobody completes.
	 */
	for (i = 0; i < opt_threads; i++) {
		while (pthread_tryjoin_np(threads[i].thread, NULL)) {
			pthread_kill(fz_vcpus[fz_next(&s) % FZ_VCPUS].thread,
				     SIGUSR1);
			usleep(2000);
		}
	}
	WRITE_ONCE(w.stop, true);
	for (i = 0; i < FZ_VCPUS; i++) {
		while (pthread_tryjoin_np(fz_vcpus[i].thread, NULL)) {
			pthread_kill(fz_vcpus[i].thread, SIGUSR1);
			usleep(1000);
		}
	}
	/* Exit with the VM as it is, or free it first (fds in its order). */
	if (fz_next(&s) % 2)
		kvm_vm_free(w.vm);
	_exit(0);
}

/*
 * The fds of a world that is gone: every ioctl of a process that is not
 * the VM's owner gets EIO; then the last references go, in this process.
 */
static void fz_foreign(int *fds, uint64_t *s)
{
	struct kvm_async_pf_user_ready ready = { .token = 1 << 12 };
	struct kvm_async_pf_user_ring_setup setup = { .entries = 64,
						      .eventfd = -1 };
	struct kvm_regs regs;

	fz_note("READY from another process");
	fz_check(OP_FOREIGN, ioctl(fds[1], KVM_ASYNC_PF_USER_READY, &ready),
		 FZ_OK(EIO));
	fz_note("GET_REGS from another process");
	fz_check(OP_FOREIGN, ioctl(fds[1], KVM_GET_REGS, &regs), FZ_OK(EIO));
	fz_note("RING from another process");
	fz_check(OP_FOREIGN, ioctl(fds[0], KVM_ASYNC_PF_USER_RING, &setup),
		 FZ_OK(EIO));
	if (fz_next(s) % 2) {
		close(fds[0]);
		close(fds[1]);
	} else {
		close(fds[1]);
		close(fds[0]);
	}
}

struct fz_child {
	pid_t pid;
	int sock, fds[2];
	int nr;
	uint64_t seed, kill_at_calls;
	double start;
	bool has_fds, killed;
	/*
	 * Killed only once it also has tokens or ring entries out, or at
	 * nine tenths of its calls if it never has.
	 */
	bool kill_with_out;
};

static struct fz_child kids[FZ_MAX_PROCS];

/*
 * In a new world: the other worlds' sockets and fds are not its own (their
 * VMs must be destroyed where the run says, not when this world exits).
 */
static void fz_close_others(int slot)
{
	int j;

	for (j = 0; j < FZ_MAX_PROCS; j++) {
		if (j == slot || !kids[j].pid)
			continue;
		close(kids[j].sock);
		if (kids[j].has_fds) {
			close(kids[j].fds[0]);
			close(kids[j].fds[1]);
		}
	}
}

/* The parent failed: its worlds go, and tracing and nx_huge_pages back. */
static void fz_parent_cleanup(void)
{
	int i;

	for (i = 0; i < FZ_MAX_PROCS; i++)
		if (kids[i].pid > 0)
			kill(kids[i].pid, SIGKILL);
	if (guardian > 0)
		fz_finish();
}

static void fz_usage(const char *why)
{
	fprintf(stderr, "uapi_fuzz: %s; options: %s %s\n", why,
		"--seed N --calls N --threads N --procs N --seconds N",
		"--world-calls N --kill PERCENT --functions FILE");
	exit(KSFT_FAIL);
}

/* ---- coverage, and the guardian ----------------------------------------- */

static char *fn_name[FZ_MAX_FUNCS];
static bool fn_traced[FZ_MAX_FUNCS];
static int nr_fn;
/* The tracefs directory traced in: an instance of ours when it can be. */
static char tracefs[128], instance[128];
static bool tracing;

static int fz_trace_write(const char *file, const char *val, int flags)
{
	char path[160];
	int fd, ret;

	snprintf(path, sizeof(path), "%s/%s", tracefs, file);
	fd = open(path, O_WRONLY | flags);
	if (fd < 0)
		return -1;
	ret = write(fd, val, strlen(val)) == (ssize_t)strlen(val) ? 0 : -1;
	close(fd);
	return ret;
}

static int fz_fn_cmp(const void *a, const void *b)
{
	return strcmp(*(char * const *)a, *(char * const *)b);
}

/* Put the tracing and nx_huge_pages back as the run found them. */
static void fz_restore(void)
{
	int fd;

	if (tracing) {
		fz_trace_write("tracing_on", "0", O_TRUNC);
		fz_trace_write("current_tracer", "nop", O_TRUNC);
		fz_trace_write("set_ftrace_filter", "", O_TRUNC);
		if (instance[0])
			rmdir(instance);
		tracing = false;
	}
	if (nx_orig[0]) {
		fd = open(NX_HUGE_PAGES_PARAM, O_WRONLY);
		if (fd < 0 || write(fd, nx_orig, strlen(nx_orig)) <= 0)
			pr_info("uapi_fuzz: cannot put nx_huge_pages back to %s\n",
				nx_orig);
		if (fd >= 0)
			close(fd);
	}
}

/* Count a chunk of the function tracer's output: complete lines only. */
static size_t fz_count_hits(char *buf, size_t have)
{
	char *line, *end, *name, **hit;

	buf[have] = 0;
	/* "task-pid [cpu] flags time: function <-caller" */
	for (line = buf; (end = strchr(line, '\n')); line = end + 1) {
		*end = 0;
		name = strstr(line, "] ");
		name = name ? strstr(name, ": ") : NULL;
		if (!name)
			continue;
		name += 2;
		name[strcspn(name, " .")] = 0;
		hit = bsearch(&name, fn_name, nr_fn, sizeof(*fn_name),
			      fz_fn_cmp);
		if (hit)
			shared->hits[hit - fn_name]++;
	}
	have = buf + have - line;
	memmove(buf, line, have);
	return have;
}

/*
 * A process of its own, from the start to the end of the run: it counts
 * the function tracer's hits (the parent forks the worlds, and must not
 * be multi-threaded), and if the parent dies, killed by the harness's
 * time limit, it puts the tracing and nx_huge_pages back; the worlds die
 * with the parent (PR_SET_PDEATHSIG).
 */
static __noreturn void fz_guardian(void)
{
	static char buf[1 << 16];
	char path[160];
	size_t have = 0;
	int fd = -1;
	ssize_t n;

	if (tracing) {
		snprintf(path, sizeof(path), "%s/trace_pipe", tracefs);
		fd = open(path, O_RDONLY | O_NONBLOCK);
		TEST_ASSERT(fd >= 0, "cannot open %s", path);
	}
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (getppid() != parent) {
			fz_restore();
			_exit(0);
		}
		if (poll(&p, 1, 200) <= 0) {
			if (__atomic_load_n(&shared->done, __ATOMIC_ACQUIRE))
				break;
			continue;
		}
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n > 0)
			have = fz_count_hits(buf, have + n);
		if (have == sizeof(buf) - 1)
			have = 0;
	}
	_exit(0);
}

/*
 * Trace the functions --functions names (ours: scripts/our-functions.sh),
 * those the function tracer can trace; the others are inlined or not
 * built, and are reported as such.
 */
static void fz_coverage_start(void)
{
	static const char * const where[] = {
		"/sys/kernel/tracing", "/sys/kernel/debug/tracing",
	};
	char line[160], path[160];
	unsigned int i, matched = 0;
	FILE *f;

	f = fopen(opt_functions, "r");
	TEST_ASSERT(f, "cannot read %s", opt_functions);
	while (nr_fn < FZ_MAX_FUNCS && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (line[0])
			fn_name[nr_fn++] = strdup(line);
	}
	fclose(f);
	qsort(fn_name, nr_fn, sizeof(*fn_name), fz_fn_cmp);

	for (i = 0; i < ARRAY_SIZE(where) && !tracefs[0]; i++) {
		snprintf(path, sizeof(path), "%s/set_ftrace_filter", where[i]);
		if (!access(path, W_OK))
			snprintf(tracefs, sizeof(tracefs), "%s", where[i]);
	}
	if (!tracefs[0]) {
		pr_info("coverage: no function tracer here (tracefs with set_ftrace_filter)\n");
		return;
	}
	/* An instance of our own leaves the system's tracing alone. */
	snprintf(instance, sizeof(instance), "%.80s/instances/uapi_fuzz-%d",
		 tracefs, getpid());
	snprintf(path, sizeof(path), "%s/set_ftrace_filter", instance);
	if (!mkdir(instance, 0700) && !access(path, W_OK)) {
		snprintf(tracefs, sizeof(tracefs), "%s", instance);
	} else {
		rmdir(instance);
		instance[0] = 0;
	}
	tracing = true;
	fz_trace_write("tracing_on", "0", O_TRUNC);
	fz_trace_write("set_ftrace_filter", "", O_TRUNC);
	/*
	 * One name a write, ended, so that each write says if it matched;
	 * then the compiler's clones of it (name.constprop.0, name.isra.0),
	 * which callers in the same file may call instead.
	 */
	for (i = 0; i < (unsigned int)nr_fn; i++) {
		snprintf(line, sizeof(line), "%s\n", fn_name[i]);
		fn_traced[i] = !fz_trace_write("set_ftrace_filter", line,
					       O_APPEND);
		snprintf(line, sizeof(line), "%s.*\n", fn_name[i]);
		if (!fz_trace_write("set_ftrace_filter", line, O_APPEND))
			fn_traced[i] = true;
		matched += fn_traced[i];
	}
	/* An empty filter would trace every function of the kernel. */
	if (!matched) {
		pr_info("coverage: none of the %d functions in %s is traceable here\n",
			nr_fn, opt_functions);
		fz_restore();
		tracefs[0] = 0;
		return;
	}
	fz_trace_write("buffer_size_kb", "8192", O_TRUNC);
	fz_trace_write("trace", "", O_TRUNC);
	TEST_ASSERT(!fz_trace_write("current_tracer", "function", O_TRUNC),
		    "cannot select the function tracer");
	fz_trace_write("tracing_on", "1", O_TRUNC);
}

/* The names traced (@traced) or not, never hit, a few to a line. */
static void fz_coverage_list(const char *what, bool traced)
{
	char list[160];
	int i, n = 0, lines = 0;

	for (i = 0; i <= nr_fn; i++) {
		if (i < nr_fn && (fn_traced[i] != traced || shared->hits[i]))
			continue;
		if (n && (i == nr_fn ||
			  n + strlen(fn_name[i]) + 2 > sizeof(list))) {
			pr_info("coverage: %s:%s\n", what, list);
			lines++;
			n = 0;
		}
		if (i < nr_fn)
			n += snprintf(list + n, sizeof(list) - n, " %s",
				      fn_name[i]);
	}
	if (!lines)
		pr_info("coverage: %s: none\n", what);
}

/* The end of the run: the guardian has counted everything, report. */
static void fz_finish(void)
{
	int i, traced = 0, reached = 0;
	bool traced_run = tracefs[0] && tracing;

	if (tracing)
		fz_trace_write("tracing_on", "0", O_TRUNC);
	__atomic_store_n(&shared->done, true, __ATOMIC_RELEASE);
	waitpid(guardian, NULL, 0);
	fz_restore();
	if (!traced_run)
		return;

	for (i = 0; i < nr_fn; i++) {
		traced += fn_traced[i];
		reached += fn_traced[i] && shared->hits[i];
	}
	pr_info("coverage: %d of %d traceable functions of ours reached (%d in %s, %d not traceable: inlined, or not in this kernel)\n",
		reached, traced, nr_fn, opt_functions, nr_fn - traced);
	for (i = 0; i < nr_fn; i++)
		if (fn_traced[i] && shared->hits[i])
			pr_info("  reached %8lu  %s\n", shared->hits[i],
				fn_name[i]);
	fz_coverage_list("never reached", true);
	fz_coverage_list("not traceable", false);
}

static uint64_t fz_num(const char *opt, const char *arg, uint64_t max)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(arg, &end, 0);
	if (errno || end == arg || *end || arg[0] == '-' || v > max) {
		char why[96];

		snprintf(why, sizeof(why), "--%s %s: give a number up to %lu",
			 opt, arg, max);
		fz_usage(why);
	}
	return v;
}

int main(int argc, char *argv[])
{
	static const struct option opts[] = {
		{ "seed", required_argument, NULL, 's' },
		{ "calls", required_argument, NULL, 'c' },
		{ "threads", required_argument, NULL, 't' },
		{ "procs", required_argument, NULL, 'p' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "world-calls", required_argument, NULL, 'w' },
		{ "kill", required_argument, NULL, 'k' },
		{ "functions", required_argument, NULL, 'f' },
		{ }
	};
	uint64_t s, worlds = 0, killed = 0, last_report = 0;
	uint64_t killed_tokens = 0, killed_ring = 0;
	double t0;
	int c, i, e, status, failed = 0;
	bool seconds_given = false;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			opt_seed = fz_num("seed", optarg, ~0ULL);
			break;
		case 'c':
			opt_calls = fz_num("calls", optarg, 1ULL << 40);
			break;
		case 't':
			opt_threads = fz_num("threads", optarg, 16);
			break;
		case 'p':
			opt_procs = fz_num("procs", optarg, FZ_MAX_PROCS);
			break;
		case 'S':
			opt_seconds = fz_num("seconds", optarg, 1 << 30);
			seconds_given = true;
			break;
		case 'w':
			opt_world_calls = fz_num("world-calls", optarg,
						 1ULL << 32);
			break;
		case 'k':
			opt_kill = fz_num("kill", optarg, 100);
			break;
		case 'f':
			opt_functions = optarg;
			break;
		default:
			fz_usage(argv[optind - 1]);
		}
	}
	if (optind < argc)
		fz_usage("unexpected argument");
	if (!opt_threads || !opt_procs || !opt_world_calls)
		fz_usage("--threads, --procs and --world-calls must be at least 1");

	TEST_REQUIRE(kvm_has_cap(KVM_CAP_USERFAULT));
	/*
	 * nx_huge_pages is toggled while the worlds run and put back at the
	 * end; "never" cannot be left, and a reader without write access
	 * cannot toggle it.
	 */
	c = open(NX_HUGE_PAGES_PARAM, O_RDWR);
	if (c >= 0) {
		if (read(c, nx_orig, sizeof(nx_orig) - 1) <= 0 ||
		    !strncmp(nx_orig, "never", 5))
			nx_orig[0] = 0;
		close(c);
	}
	shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(shared != MAP_FAILED, "mmap failed");
	s = opt_seed * 0x9e3779b97f4a7c15ULL | 1;
	for (i = 0; i < opt_procs; i++)
		kids[i].pid = 0;
	pr_info("uapi_fuzz --seed %lu --calls %lu --threads %d --procs %d --world-calls %lu --kill %lu (stops after %lu s)\n",
		opt_seed, opt_calls, opt_threads, opt_procs, opt_world_calls,
		opt_kill, opt_seconds);
	parent = getpid();
	if (opt_functions)
		fz_coverage_start();
	guardian = fork();
	TEST_ASSERT(guardian >= 0, "fork failed");
	if (!guardian)
		fz_guardian();
	t0 = now_ms();

	for (;;) {
		bool more = __atomic_load_n(&shared->calls, __ATOMIC_RELAXED) <
			    opt_calls && now_ms() - t0 < opt_seconds * 1e3;
		bool alive = false;

		for (i = 0; i < opt_procs; i++) {
			struct fz_child *k = &kids[i];
			int sv[2];

			if (!k->pid && more) {
				k->nr = worlds++;
				k->seed = fz_next(&s);
				/*
				 * --kill percent of the worlds die by SIGKILL
				 * at one of their own calls, once their VM is
				 * built and running; half of those only when
				 * they also have tokens or ring entries out
				 * (or at last at 9/10 of their calls).
				 */
				k->kill_at_calls = fz_next(&s) % 100 >= opt_kill ?
					0 : 1 + fz_next(&s) % opt_world_calls;
				k->kill_with_out = k->kill_at_calls &&
						   fz_next(&s) & 1;
				k->killed = false;
				k->has_fds = false;
				shared->world_calls[i] = 0;
				shared->world_tokens[i] = 0;
				shared->world_ring[i] = 0;
				TEST_ASSERT(!socketpair(AF_UNIX, SOCK_STREAM, 0, sv),
					    "socketpair failed");
				k->pid = fork();
				TEST_ASSERT(k->pid >= 0, "fork failed");
				if (!k->pid) {
					fz_close_others(i);
					close(sv[0]);
					fz_world(k->nr, i, k->seed, sv[1]);
				}
				close(sv[1]);
				k->sock = sv[0];
				k->start = now_ms();
			}
			if (!k->pid)
				continue;
			alive = true;
			if (!k->has_fds)
				k->has_fds = try_recv_fds(k->sock, k->fds, 2,
							  MSG_DONTWAIT);
			if (k->kill_at_calls && !k->killed && k->has_fds &&
			    shared->world_calls[i] >= k->kill_at_calls &&
			    (!k->kill_with_out ||
			     READ_ONCE(shared->world_tokens[i]) ||
			     READ_ONCE(shared->world_ring[i]) ||
			     shared->world_calls[i] >= opt_world_calls * 9 / 10)) {
				kill(k->pid, SIGKILL);
				k->killed = true;
			}
			if (now_ms() - k->start > 120e3) {
				world_nr = k->nr;
				world_seed = k->seed;
				kill(k->pid, SIGKILL);
				fz_fail("the world did not end in 120 s: stuck?");
			}
			if (waitpid(k->pid, &status, WNOHANG) != k->pid)
				continue;
			world_nr = k->nr;
			world_seed = k->seed;
			if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
			    k->killed) {
				killed++;
				killed_tokens += !!shared->world_tokens[i];
				killed_ring += !!shared->world_ring[i];
			} else if (!WIFEXITED(status) || WEXITSTATUS(status)) {
				pr_info("uapi_fuzz: world %d (seed %#lx) failed: %s %d\n",
					k->nr, k->seed,
					WIFEXITED(status) ? "exit status" : "signal",
					WIFEXITED(status) ? WEXITSTATUS(status) :
					WTERMSIG(status));
				failed++;
			}
			if (!k->has_fds)
				k->has_fds = try_recv_fds(k->sock, k->fds, 2,
							  MSG_DONTWAIT);
			if (k->has_fds)
				fz_foreign(k->fds, &s);
			close(k->sock);
			k->pid = 0;
		}
		if (!alive && !more)
			break;
		if (failed)
			break;
		if (shared->calls - last_report >= 20000) {
			last_report = shared->calls;
			pr_info("uapi_fuzz: %lu calls, %lu worlds, %.0f s\n",
				last_report, worlds, (now_ms() - t0) / 1e3);
		}
		usleep(1000);
	}
	for (i = 0; i < opt_procs; i++) {
		if (kids[i].pid) {
			kill(kids[i].pid, SIGKILL);
			waitpid(kids[i].pid, NULL, 0);
		}
	}

	fz_finish();
	if (shared->calls < opt_calls) {
		/* Time, not --calls, ended it: with --seconds given, a failure. */
		pr_info("uapi_fuzz: --seconds %lu ended the run at %lu of %lu calls\n",
			opt_seconds, shared->calls, opt_calls);
		if (seconds_given && !failed)
			failed = 1;
	}
	t0 = (now_ms() - t0) / 1e3;
	pr_info("uapi_fuzz: --seed %lu: %lu calls in %.1f s (%.0f calls/s), %lu worlds, %lu killed by SIGKILL, %d failed\n",
		opt_seed, shared->calls, t0, shared->calls / t0, worlds, killed,
		failed);
	pr_info("uapi_fuzz: killed with tokens out that the world had not completed: %lu; with ring entries it had not accepted: %lu\n",
		killed_tokens, killed_ring);
	for (c = 0; c < FZ_NR_OPS; c++) {
		char line[512];
		int n = 0;

		for (e = 0; e <= FZ_NR_ERRNO; e++) {
			if (!shared->hist[c][e])
				continue;
			n += snprintf(line + n, sizeof(line) - n, " %s %lu",
				      !e ? "ok" : e == FZ_NR_ERRNO ? "other" :
				      strerrorname_np(e) ?: "?",
				      shared->hist[c][e]);
			if (n >= (int)sizeof(line))
				break;
		}
		if (n)
			pr_info("  %-32s%s\n", fz_op_name[c], line);
	}
	TEST_ASSERT(!failed, "%d of %lu worlds failed (seed and calls above)",
		    failed, worlds);
	return 0;
}
