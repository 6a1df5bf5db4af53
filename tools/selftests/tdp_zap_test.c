// SPDX-License-Identifier: GPL-2.0-only
/*
 * tdp_zap_test: invalidated TDP MMU roots zapped by the VM's own workers
 * (kvm.tdp_mmu_zap_wq, Documentation/tdp-zap-workers.rst).
 *
 *   stress RUNNERS VMS ITERS  For each setting of kvm.tdp_mmu_zap_wq (only
 *            the stock zap if the modules lack it): VMS times, a VM whose
 *            RUNNERS vCPUs keep reading a dirty-logged (4 KiB SPTEs) slot
 *            while, ITERS times, a dirty-logged victim slot is deleted and
 *            re-added, moved away and back, and kvm.nx_huge_pages toggled.
 *            When each update returns, no root maps a page of the
 *            victim's old place (the SPTE ledger, a trace of every SPTE
 *            change), the old range exits to userspace as MMIO, the
 *            guest reads back what it wrote; then the VM is destroyed.
 *   confine ITERS  The VMM thread pinned to one CPU creates the VM, its
 *            vCPU threads run anywhere; after ITERS deletions the VM's
 *            debugfs tdp_mmu_zap_cpus must show zap work on that CPU only.
 *   follow ITERS  As confine, then the affinity of every thread of the
 *            process is moved to another CPU (as "taskset -a -p" does):
 *            the zap work of ITERS more deletions must run on the new CPU
 *            where the workers are threads of the VMM (6.12's vhost_tasks),
 *            on the old one where they are kthreads confined at VM
 *            creation (6.1).
 *   freeze ITERS  6.12's workers only: with the workers in a cgroup of
 *            their own (threaded cgroup v2) frozen, ITERS deletions of the
 *            victim while a resident slot stays mapped must still return
 *            with the victim's SPTEs gone (the deleting thread zaps what it
 *            needs itself) and leave the rest queued; after the thaw the
 *            workers zap it.
 *   starve ITERS  As freeze, on 6.1 too: the workers starved by the
 *            VMM's scheduling (SCHED_IDLE on a CPU a SCHED_FIFO task keeps
 *            with RT throttling off); each deletion from another CPU must
 *            return with the victim's SPTEs gone (the ledger).
 *   quirk ITERS  KVM_X86_QUIRK_SLOT_ZAP_ALL (6.12): with the quirk
 *            disabled, a deletion zaps the slot's own SPTEs only and no
 *            root: no zap work, the resident slot stays mapped; with it
 *            enabled (default), the workers zap the invalidated roots.
 *   inversion MIB  For kvm.tdp_mmu_zap_wq=N, then Y: the VMM thread at
 *            SCHED_IDLE on one CPU creates a VM with MIB MiB of
 *            dirty-logged 4 KiB SPTEs, then a SCHED_FIFO task keeps that
 *            CPU (RT throttling off) while, from another CPU, kvm.nx_huge_pages
 *            is toggled (every VM zapped with kvm_lock held) and another
 *            process creates VMs (KVM_CREATE_VM takes kvm_lock).  The
 *            toggle and the slowest KVM_CREATE_VM with the workers must
 *            be within 2x + 500 ms of the distro's zap (=N): nobody waits
 *            for workers that cannot run.
 *   bench MIB Y|N|Q [SMALL]  Memslot-delete latency and guest progress
 *            during the zap of MIB MiB of 4 KiB SPTEs with
 *            kvm.tdp_mmu_zap_wq=Y or N (N on the stock modules: their
 *            synchronous zap; Y skips).  The deleted slot has the MIB MiB;
 *            with SMALL, it is a slot of SMALL MiB instead, deleted while
 *            another slot keeps MIB MiB mapped, e.g. a VMM dropping a BAR
 *            or a ROM of a running guest.  Q: KVM_X86_QUIRK_SLOT_ZAP_ALL
 *            disabled (6.12's targeted zap of the slot's leaf SPTEs; on
 *            the stock modules too), whatever kvm.tdp_mmu_zap_wq says.
 *   race MIB ROUNDS  With kvm.tdp_mmu_zap_wq=Y (the stock zap on modules
 *            without it): two vCPUs keep reading a slot of MIB MiB
 *            (4 KiB SPTEs) while a host thread, one 2 MiB chunk after
 *            another, drops the slot's memory (MADV_DONTNEED: the
 *            mmu_notifier zaps the chunk in every root, invalid ones the
 *            workers have not finished included), checks that it reads
 *            zero and writes a new generation of the chunk's data; and
 *            the main thread, ROUNDS times, deletes and re-adds a 2 MiB
 *            slot, which invalidates every root.  The guest reads each
 *            page between two reads of its chunk's sequence count: with
 *            no rewrite in between it must read exactly the last
 *            generation, never zero or an older one, as a stale SPTE
 *            that a notifier missed in the root the vCPU uses would
 *            give.  A vCPU no longer enters an invalid root: a miss
 *            there is not seen by the guest, only by the debug tier's
 *            checks, if the stale SPTE is used after its page is freed.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvm_util.h"
#include "processor.h"
#include "test_util.h"
#include "backport_util.h"
#include "kvm_trace.h"

#define PARAM_WQ	"/sys/module/kvm/parameters/tdp_mmu_zap_wq"

/* 6.12's uAPI; the selftests are built on 6.1's headers. */
#ifndef KVM_X86_QUIRK_SLOT_ZAP_ALL
#define KVM_X86_QUIRK_SLOT_ZAP_ALL	BIT(7)
#endif
#define NOT_THREADS_MSG	\
	"the zap workers are not threads of the VMM here (6.1's kthreads do not freeze with it)"
#define NO_QUIRK_MSG	"KVM_X86_QUIRK_SLOT_ZAP_ALL is 6.12's, this KVM has no such quirk"

/* The name of 6.12's zap workers, threads of the VMM (vhost_tasks). */
#define ZAP_WORKER_COMM	"kvm-tdp-zap"
/* More than a VM's zap workers (at most 4). */
#define TDP_ZAP_MAX_TIDS	16

#define DATA_SLOT	1
#define DATA_GPA	0x40000000ULL
#define DATA_PAGES	128
#define VICTIM_SLOT	2
/* Room for a victim of up to 4 GiB at either place (bench). */
#define VICTIM_GPA	0x100000000ULL
#define MOVED_GPA	0x200000000ULL
/* bench SMALL: the memory that stays, up to 4 GiB. */
#define RESIDENT_SLOT	3
#define RESIDENT_GPA	0x300000000ULL
#define MAX_RUNNERS	4
#define WORDS_PER_PAGE	(PAGE_SIZE / sizeof(uint64_t))
#define MMIO_PROBES	4
/* The largest victim of the tests that keep the SPTE ledger. */
#define MAX_VICTIM_LEDGER	1024
#define BENCH_ROUNDS	3

enum { PROBE_FILL = 1, PROBE_CHECK, PROBE_MMIO };

/* Written by the host while the prober vCPU is stopped. */
static struct {
	uint64_t cmd, base, val, npages;
} probe;
/* Passes over the data slot, per runner (read by the host live). */
static uint64_t progress[MAX_RUNNERS];

static uint64_t dpat(uint64_t i)
{
	return i * 0x9e3779b97f4a7c15ULL + 1;
}

static uint64_t vpat(uint64_t val, uint64_t i)
{
	return (val << 40) ^ (i * 0xbf58476d1ce4e5b9ULL);
}

/*
 * race: the large slot is the resident slot, dropped and rewritten by the
 * host one chunk of RACE_CHUNK_PAGES at a time.  race_seq[] is per chunk
 * twice its generation, odd while the host drops and rewrites it: a
 * seqcount the runners read around each page.
 */
#define RACE_RUNNERS		2
#define RACE_CHUNK_PAGES	512
#define RACE_MAX_MIB		1024
#define RACE_MAX_CHUNKS		((RACE_MAX_MIB << (20 - PAGE_SHIFT)) / RACE_CHUNK_PAGES)
#define RACE_VICTIM_PAGES	(2 << (20 - PAGE_SHIFT))
#define RACE_GEN_MASK		0xffffffULL

static uint64_t race_pages;
static uint64_t race_seq[RACE_MAX_CHUNKS];
/*
 * Per runner, pages read: with no rewrite of their chunk meanwhile (all,
 * and those of a generation after the first), while it was rewritten
 * (a value, zero).
 */
static uint64_t race_exact[RACE_RUNNERS], race_new[RACE_RUNNERS];
static uint64_t race_loose[RACE_RUNNERS], race_zero[RACE_RUNNERS];

/* Word 0 of large slot page @i in generation @gen. */
static uint64_t rpat(uint64_t gen, uint64_t i)
{
	return 0xa5ULL << 56 | (gen & RACE_GEN_MASK) << 32 | i;
}

static void guest_race(uint64_t role)
{
	uint64_t *p = (uint64_t *)RESIDENT_GPA, n = READ_ONCE(race_pages);
	uint64_t i, j, c, s, s2, v, gen, start;
	int r = role - 1;

	/* The runners fault in different places. */
	start = r * (n / RACE_RUNNERS) / RACE_CHUNK_PAGES * RACE_CHUNK_PAGES;
	for (;;) {
		for (j = 0; j < n; j++) {
			i = (start + j) % n;
			c = i / RACE_CHUNK_PAGES;
			s = READ_ONCE(race_seq[c]);
			v = READ_ONCE(p[i * WORDS_PER_PAGE]);
			s2 = READ_ONCE(race_seq[c]);
			gen = v >> 32 & RACE_GEN_MASK;
			if (s == s2 && !(s & 1)) {
				/*
				 * The chunk was neither dropped nor rewritten
				 * meanwhile: the last generation, exactly.
				 */
				GUEST_ASSERT_4(v == rpat(s / 2, i), i, v, s, s2);
				race_exact[r]++;
				if (gen)
					race_new[r]++;
			} else if (!v) {
				race_zero[r]++;
			} else {
				/* Dropped or rewritten meanwhile: old or new. */
				GUEST_ASSERT_4(v == rpat(gen, i) && gen >= s / 2,
					       i, v, s, s2);
				race_loose[r]++;
			}
		}
		progress[r]++;
		GUEST_SYNC(0);
	}
}

static void guest_code(uint64_t role)
{
	uint64_t *p, i, v;

	if (role && READ_ONCE(race_pages))
		guest_race(role);
	if (role) {
		p = (uint64_t *)DATA_GPA;
		for (;;) {
			for (i = 0; i < DATA_PAGES; i++) {
				v = READ_ONCE(p[i * WORDS_PER_PAGE]);
				GUEST_ASSERT_2(v == dpat(i), i, v);
			}
			progress[role - 1]++;
			GUEST_SYNC(0);
		}
	}

	for (;;) {
		p = (uint64_t *)READ_ONCE(probe.base);
		for (i = 0; i < probe.npages; i++) {
			switch (probe.cmd) {
			case PROBE_FILL:
				WRITE_ONCE(p[i * WORDS_PER_PAGE],
					   vpat(probe.val, i));
				break;
			case PROBE_CHECK:
				v = READ_ONCE(p[i * WORDS_PER_PAGE]);
				GUEST_ASSERT_2(v == vpat(probe.val, i), i, v);
				break;
			case PROBE_MMIO:
				if (i % (probe.npages / MMIO_PROBES) == 0)
					v = READ_ONCE(p[i * WORDS_PER_PAGE]);
				break;
			}
		}
		GUEST_SYNC(probe.cmd);
	}
}

struct test_vm {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[MAX_RUNNERS + 1];
	pthread_t threads[MAX_RUNNERS];
	int nr_runners;
	uint64_t *victim;
	uint64_t victim_pages;
	uint64_t resident_pages;
	int stop;
	bool unpin_runners;
};

static int param_read(const char *path)
{
	char c = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return -1;
	if (fread(&c, 1, 1, f) != 1)
		c = 0;
	fclose(f);
	return c == 'Y' || c == '1';
}

static void param_write(const char *path, const char *val)
{
	FILE *f = fopen(path, "w");

	TEST_ASSERT(f, "cannot open %s", path);
	TEST_ASSERT(fputs(val, f) >= 0 && fclose(f) == 0,
		    "cannot write '%s' to %s", val, path);
}

/* The first and the last CPU this thread may run on. */
static void first_last_cpu(int *first, int *last)
{
	cpu_set_t mask;
	int cpu;

	TEST_ASSERT(!sched_getaffinity(0, sizeof(mask), &mask), "getaffinity");
	*first = -1;
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, &mask))
			continue;
		if (*first < 0)
			*first = cpu;
		*last = cpu;
	}
}

/* Allow the calling thread on @cpu only. */
static void pin_self(int cpu)
{
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	TEST_ASSERT(!sched_setaffinity(0, sizeof(one), &one),
		    "cannot pin the thread to CPU %d: %s", cpu, strerror(errno));
}

static void set_victim(struct test_vm *t, uint64_t gpa, uint64_t pages)
{
	struct kvm_userspace_memory_region r = {
		.slot = VICTIM_SLOT,
		.flags = pages ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = gpa,
		.memory_size = pages * PAGE_SIZE,
		.userspace_addr = (uint64_t)t->victim,
	};

	vm_ioctl(t->vm, KVM_SET_USER_MEMORY_REGION, &r);
}

static uint64_t read_progress(struct test_vm *t, int i)
{
	return guest_u64_live(t->vm, &progress[i]);
}

/* The VM under test, for the runner threads. */
static struct test_vm *cur_vm;

static void *runner(void *arg)
{
	struct kvm_vcpu *vcpu = arg;
	struct test_vm *t = cur_vm;
	struct ucall uc;
	cpu_set_t all;
	int cpu;

	if (t->unpin_runners) {
		CPU_ZERO(&all);
		for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
			CPU_SET(cpu, &all);
		sched_setaffinity(0, sizeof(all), &all);
	}
	while (!READ_ONCE(t->stop)) {
		vcpu_run(vcpu);
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			break;
		case UCALL_ABORT:
			if (race_pages)
				REPORT_GUEST_ASSERT_4(uc,
						      "large slot page %lu reads 0x%lx, its chunk's sequence 0x%lx before, 0x%lx after (even and unchanged: that generation, exactly): a stale SPTE?");
			REPORT_GUEST_ASSERT_2(uc, "data page %lu reads 0x%lx");
			break;
		default:
			TEST_FAIL("%s: exit %u (%s), ucall %lu", __func__,
				  vcpu->run->exit_reason,
				  exit_reason_str(vcpu->run->exit_reason), uc.cmd);
		}
	}
	return NULL;
}

/*
 * Run the prober once over @npages pages from @base; returns the number of
 * MMIO exits it took.
 */
static int __run_probe(struct test_vm *t, uint64_t cmd, uint64_t base,
		       uint64_t val, uint64_t npages)
{
	struct kvm_vcpu *vcpu = t->vcpus[0];
	struct ucall uc;
	int mmio = 0;

	probe.cmd = cmd;
	probe.base = base;
	probe.val = val;
	probe.npages = npages;
	sync_global_to_guest(t->vm, probe);
	for (;;) {
		vcpu_run(vcpu);
		if (vcpu->run->exit_reason == KVM_EXIT_MMIO) {
			TEST_ASSERT(vcpu->run->mmio.phys_addr >= base &&
				    vcpu->run->mmio.phys_addr <
				    base + npages * PAGE_SIZE,
				    "MMIO exit at 0x%llx outside [0x%lx, +%lu pages)",
				    vcpu->run->mmio.phys_addr, base, npages);
			memset(vcpu->run->mmio.data, 0,
			       sizeof(vcpu->run->mmio.data));
			mmio++;
			continue;
		}
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_SYNC:
			TEST_ASSERT(uc.args[1] == cmd, "prober out of step");
			return mmio;
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT_2(uc, "victim page %lu reads 0x%lx");
			break;
		default:
			TEST_FAIL("prober: exit %u (%s)", vcpu->run->exit_reason,
				  exit_reason_str(vcpu->run->exit_reason));
		}
	}
}

/* The prober over the whole victim slot at @base. */
static int run_probe(struct test_vm *t, uint64_t cmd, uint64_t base,
		     uint64_t val)
{
	return __run_probe(t, cmd, base, val, t->victim_pages);
}

static void __test_vm_create(struct test_vm *t, int nr_runners,
			     uint64_t victim_pages, uint64_t resident_pages)
{
	int i;

	memset(t, 0, sizeof(*t));
	t->nr_runners = nr_runners;
	t->victim_pages = victim_pages;
	t->resident_pages = resident_pages;
	/*
	 * The library sizes slot 0 for the guest page tables of this many
	 * extra pages mapped elsewhere (the data slot, the victim's two
	 * mappings, the resident slot), but not for the pages themselves:
	 * they live in their own slots.
	 */
	t->vm = __vm_create_with_vcpus(VM_MODE_DEFAULT, nr_runners + 1,
				       DATA_PAGES + 2 * victim_pages +
				       resident_pages, guest_code, t->vcpus);
	if (resident_pages) {
		vm_userspace_mem_region_add(t->vm, VM_MEM_SRC_ANONYMOUS,
					    RESIDENT_GPA, RESIDENT_SLOT,
					    resident_pages,
					    KVM_MEM_LOG_DIRTY_PAGES);
		virt_map(t->vm, RESIDENT_GPA, RESIDENT_GPA, resident_pages);
	}
	vm_userspace_mem_region_add(t->vm, VM_MEM_SRC_ANONYMOUS, DATA_GPA,
				    DATA_SLOT, DATA_PAGES,
				    KVM_MEM_LOG_DIRTY_PAGES);
	virt_map(t->vm, DATA_GPA, DATA_GPA, DATA_PAGES);
	for (i = 0; i < DATA_PAGES; i++)
		*(uint64_t *)addr_gpa2hva(t->vm, DATA_GPA + i * PAGE_SIZE) =
			dpat(i);

	t->victim = mmap(NULL, victim_pages * PAGE_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(t->victim != MAP_FAILED, "mmap victim");
	/*
	 * Small pages, as the library gives its anonymous slots: otherwise
	 * khugepaged collapses the victim behind the test's back, and the
	 * mmu_notifier zaps that come with it mix with the zaps under test
	 * (the bench's prober took triple faults under multi-threaded TCG
	 * only on this slot, while it was being populated).
	 */
	madvise(t->victim, victim_pages * PAGE_SIZE, MADV_NOHUGEPAGE);
	set_victim(t, VICTIM_GPA, victim_pages);
	virt_map(t->vm, VICTIM_GPA, VICTIM_GPA, victim_pages);
	virt_map(t->vm, MOVED_GPA, MOVED_GPA, victim_pages);

	for (i = 0; i <= nr_runners; i++)
		vcpu_args_set(t->vcpus[i], 1, i);
	cur_vm = t;
}

static void test_vm_create(struct test_vm *t, int nr_runners,
			   uint64_t victim_pages)
{
	__test_vm_create(t, nr_runners, victim_pages, 0);
}

static void start_runners(struct test_vm *t)
{
	int i;

	for (i = 0; i < t->nr_runners; i++)
		pthread_create(&t->threads[i], NULL, runner, t->vcpus[i + 1]);
}

static void stop_runners(struct test_vm *t)
{
	int i;

	WRITE_ONCE(t->stop, 1);
	for (i = 0; i < t->nr_runners; i++)
		pthread_join(t->threads[i], NULL);
}

static void test_vm_free(struct test_vm *t)
{
	kvm_vm_free(t->vm);
	munmap(t->victim, t->victim_pages * PAGE_SIZE);
}

/*
 * bench only: no 4 KiB SPTE of the victim left in the roots in use before
 * the deletion.  A bound, not a count: the workers may still be zapping
 * the rest of those roots while the runners fault the same pages into the
 * new root, so it holds only for a victim far larger than twice what the
 * runners map (the data slot, the guest's code): the bench's GiBs.  The
 * tests with runners and a victim of MiB use the trace ledger below.
 */
static void assert_old_sptes_gone(struct test_vm *t, const char *what)
{
	uint64_t n = vm_get_stat(t->vm, "pages_4k");

	TEST_ASSERT(n < t->victim_pages,
		    "%s: %lu 4 KiB SPTEs right after it, the %lu of the victim slot survived",
		    what, n, t->victim_pages);
}

/*
 * The exact check that a slot update leaves none of the victim's 4 KiB
 * SPTEs in any root, the invalid roots the workers have not zapped yet
 * included: a ledger kept from kvmmmu:kvm_tdp_mmu_spte_changed, which
 * traces each SPTE change that can make a 4 KiB SPTE present or not
 * present (each child of a page table a worker frees included; what it
 * does not trace changes neither: a fast page fault's fix-up, a frozen
 * SPTE cleared), filtered to level 1 and the victim's two places.  Per
 * gfn, an SPTE becoming present counts +1, one ceasing to be present -1:
 * the sum is the number of roots that map the page.  Tracing starts where
 * no root maps the victim (before the guest touched it, or after a
 * checked update with nothing touching it since), in a trace instance of
 * its own on the global clock, so that its buffer orders the events of
 * all CPUs as they happened.  A marker is written when each update
 * returns; there every gfn of both places must be at 0.  Only the prober
 * touches the victim, and it is stopped while the host updates the slot:
 * nothing maps it between the return and the marker.
 *
 * The ledger sees what is left when the update returns, not who zapped
 * it: where the workers are free to run, they zap the slot's chunks,
 * which come first, before the update returns, and a waiter that skipped
 * its own zap goes unseen.  tdp_zap_starve and tdp_zap_freeze keep the
 * workers from running for that.
 */
#define SPTE_EVENT	"events/kvmmmu/kvm_tdp_mmu_spte_changed"
/* SPTE_MMU_PRESENT_MASK, bit 11 on 6.1 and 6.12. */
#define SPTE_PRESENT	BIT_ULL(11)
#define MARK		"kbp-zap returned "
/*
 * Per CPU.  A stress VM gives up to ~46,000 events of about 40 bytes (the
 * debug kernel, 6.12), all of which may fall on one CPU.
 */
#define LEDGER_BUF_KB	"4096"

/* The trace instance, relative to TRACE_DIR; "" when there is none. */
static char ledger_dir[64];
static int64_t ledger[2][MAX_VICTIM_LEDGER];
static uint64_t ledger_pages, ledger_marks;

/* The first gfn of the victim's place @i: 0 at VICTIM_GPA, 1 at MOVED_GPA. */
static uint64_t place_gfn(int i)
{
	return (i ? MOVED_GPA : VICTIM_GPA) >> PAGE_SHIFT;
}

/* Write @val to @file of the ledger's trace instance. */
static int ledger_write(const char *file, const char *val)
{
	char path[160];

	snprintf(path, sizeof(path), "%s/%s", ledger_dir, file);
	return trace_write(path, val);
}

/* The path of @file of the ledger's trace instance, or of the instance. */
static const char *ledger_path(const char *file)
{
	static char path[192];

	snprintf(path, sizeof(path), TRACE_DIR "/%s%s%s", ledger_dir,
		 file[0] ? "/" : "", file);
	return path;
}

/*
 * Remove the trace instance, its buffer, event and filter with it.
 * Returns 0 or an errno: EBUSY while a file of it is open.
 */
static int ledger_remove(void)
{
	int r = 0;

	if (ledger_dir[0] && rmdir(ledger_path("")) && errno != ENOENT)
		r = errno;
	ledger_dir[0] = 0;
	return r;
}

/*
 * At exit, however the test ends (none of the instance's files is open
 * then: every path closes them before it can fail).  A test killed by
 * the harness leaves the instance; ledger_start() of a later test with
 * the same pid removes it.
 */
static void ledger_stop(void)
{
	int r = ledger_remove();

	if (r)
		pr_info("cannot remove the trace instance: %s\n", strerror(r));
}

static void ledger_start(struct test_vm *t)
{
	static bool registered;
	char filter[256];

	TEST_ASSERT(t->victim_pages <= MAX_VICTIM_LEDGER,
		    "victim of %lu pages, the ledger holds %d",
		    t->victim_pages, MAX_VICTIM_LEDGER);
	ledger_pages = t->victim_pages;
	ledger_marks = 0;
	if (!registered)
		atexit(ledger_stop);
	registered = true;
	snprintf(ledger_dir, sizeof(ledger_dir), "instances/kbp-zap-%d",
		 getpid());
	/* Ours by its pid: left by a killed test whose pid we now have. */
	rmdir(ledger_path(""));
	TEST_ASSERT(!mkdir(ledger_path(""), 0755),
		    "cannot create the trace instance %s: %s (the SPTE ledger needs a kernel with event tracing)",
		    ledger_path(""), strerror(errno));
	snprintf(filter, sizeof(filter),
		 "level == 1 && ((gfn >= 0x%lx && gfn < 0x%lx) || (gfn >= 0x%lx && gfn < 0x%lx))",
		 place_gfn(0), place_gfn(0) + t->victim_pages,
		 place_gfn(1), place_gfn(1) + t->victim_pages);
	TEST_ASSERT(!ledger_write("trace_clock", "global") &&
		    !ledger_write("buffer_size_kb", LEDGER_BUF_KB) &&
		    !ledger_write(SPTE_EVENT "/filter", filter) &&
		    !ledger_write(SPTE_EVENT "/enable", "1"),
		    "cannot trace kvmmmu:kvm_tdp_mmu_spte_changed in %s",
		    ledger_path(""));
}

/* After the slot update @what of round @round returned. */
static void ledger_mark(const char *what, int round)
{
	char buf[96];

	snprintf(buf, sizeof(buf), MARK "%s %d", what, round);
	TEST_ASSERT(!ledger_write("trace_marker", buf), "cannot write %s",
		    ledger_path("trace_marker"));
	ledger_marks++;
}

/*
 * Replay the trace: at each marker, no 4 KiB SPTE of either place of the
 * victim may be present in any root.  Then remove the trace instance.
 * The first problem ends the replay, and the test fails once the trace
 * is closed and the instance removed.
 */
static void ledger_check(void)
{
	uint64_t gfn, old, new, k, lost, marks = 0, events = 0;
	char line[512], why[768] = "", gfnw[32] = "", *p;
	int level, i, r;
	FILE *f;

	/* What is replayed and what is counted as lost: the same events. */
	TEST_ASSERT(!ledger_write("tracing_on", "0"), "cannot stop %s",
		    ledger_path(""));
	lost = trace_lost(ledger_path(""));
	TEST_ASSERT(!lost,
		    "the trace lost %lu events (buffer of %s KiB per CPU): the SPTE ledger would be incomplete",
		    lost, LEDGER_BUF_KB);
	f = fopen(ledger_path("trace"), "r");
	TEST_ASSERT(f, "cannot read %s", ledger_path("trace"));
	memset(ledger, 0, sizeof(ledger));
	while (!why[0] && fgets(line, sizeof(line), f)) {
		if (line[0] == '#')
			continue;
		p = strstr(line, MARK);
		if (p) {
			p[strcspn(p, "\n")] = 0;
			for (i = 0; i < 2 && !why[0]; i++) {
				for (k = 0; k < ledger_pages; k++) {
					if (!ledger[i][k])
						continue;
					snprintf(gfnw, sizeof(gfnw), " gfn %lx ",
						 place_gfn(i) + k);
					snprintf(why, sizeof(why),
						 "%s: the victim's gfn 0x%lx was still mapped in %ld root(s) when the update returned (below 0: the trace missed a mapping)",
						 p + strlen(MARK), place_gfn(i) + k,
						 ledger[i][k]);
					break;
				}
			}
			marks++;
			continue;
		}
		p = strstr(line, "kvm_tdp_mmu_spte_changed: ");
		if (!p)
			continue;
		p = strstr(p, " gfn ");
		if (!p || sscanf(p, " gfn %lx level %d old_spte %lx new_spte %lx",
				 &gfn, &level, &old, &new) != 4) {
			snprintf(why, sizeof(why), "cannot parse trace line '%s'",
				 line);
			break;
		}
		for (i = 0; i < 2; i++)
			if (gfn >= place_gfn(i) && gfn < place_gfn(i) + ledger_pages)
				break;
		if (i == 2) {
			snprintf(why, sizeof(why),
				 "traced gfn 0x%lx is outside the filter", gfn);
			break;
		}
		k = gfn - place_gfn(i);
		ledger[i][k] += !!(new & SPTE_PRESENT) - !!(old & SPTE_PRESENT);
		events++;
	}
	fclose(f);
	if (gfnw[0]) {
		trace_lines_of(ledger_path("trace"), gfnw, "", true);
		trace_lines_of(ledger_path("trace"), MARK, "", true);
	}
	r = ledger_remove();
	TEST_ASSERT(!why[0], "%s", why);
	TEST_ASSERT(!r, "cannot remove the trace instance: %s", strerror(r));
	TEST_ASSERT(marks == ledger_marks,
		    "%lu of %lu markers in the trace", marks, ledger_marks);
	/* Each update zapped at least the victim's pages. */
	TEST_ASSERT(events >= marks * ledger_pages,
		    "%lu victim SPTE changes traced for %lu updates of a %lu-page victim: is the event traced?",
		    events, marks, ledger_pages);
	pr_info("SPTE ledger: %lu updates, none left a 4 KiB SPTE of the victim's old place in any root (%lu SPTE changes traced)\n",
		marks, events);
}

static void assert_mmio(struct test_vm *t, uint64_t base, const char *what)
{
	int n = run_probe(t, PROBE_MMIO, base, 0);

	TEST_ASSERT(n == MMIO_PROBES,
		    "%s: %d of %d guest reads of 0x%lx.. exited as MMIO",
		    what, n, MMIO_PROBES, base);
}

static void stress_vm(int nr_runners, int iters)
{
	int nx = param_read(NX_HUGE_PAGES_PARAM);
	uint64_t val = 1, p0[MAX_RUNNERS];
	struct test_vm t;
	int it, i;

	test_vm_create(&t, nr_runners, 1024);
	ledger_start(&t);
	start_runners(&t);
	run_probe(&t, PROBE_FILL, VICTIM_GPA, val);
	for (i = 0; i < nr_runners; i++)
		p0[i] = read_progress(&t, i);

	for (it = 0; it < iters; it++) {
		/* Delete: SPTEs gone, range is MMIO, memory keeps its data. */
		set_victim(&t, VICTIM_GPA, 0);
		ledger_mark("delete", it);
		assert_mmio(&t, VICTIM_GPA, "deleted slot");
		for (i = 0; i < (int)t.victim_pages; i++)
			TEST_ASSERT(t.victim[i * WORDS_PER_PAGE] == vpat(val, i),
				    "host copy of victim page %d lost the guest's write", i);
		set_victim(&t, VICTIM_GPA, t.victim_pages);
		run_probe(&t, PROBE_CHECK, VICTIM_GPA, val);
		run_probe(&t, PROBE_FILL, VICTIM_GPA, ++val);

		/* Move away and back. */
		set_victim(&t, MOVED_GPA, t.victim_pages);
		ledger_mark("move", it);
		assert_mmio(&t, VICTIM_GPA, "moved-away slot");
		run_probe(&t, PROBE_CHECK, MOVED_GPA, val);
		run_probe(&t, PROBE_FILL, MOVED_GPA, ++val);
		set_victim(&t, VICTIM_GPA, t.victim_pages);
		ledger_mark("move back", it);
		assert_mmio(&t, MOVED_GPA, "moved-back slot");
		run_probe(&t, PROBE_CHECK, VICTIM_GPA, val);

		/* The NX huge page parameter zaps all roots of every VM. */
		if (nx >= 0 && !access(NX_HUGE_PAGES_PARAM, W_OK)) {
			param_write(NX_HUGE_PAGES_PARAM, nx ? "N" : "Y");
			run_probe(&t, PROBE_CHECK, VICTIM_GPA, val);
			param_write(NX_HUGE_PAGES_PARAM, nx ? "Y" : "N");
		}
	}

	for (i = 0; i < nr_runners; i++)
		TEST_ASSERT(read_progress(&t, i) > p0[i],
			    "runner %d made no progress", i);
	stop_runners(&t);
	ledger_check();
	test_vm_free(&t);
}

static int test_stress(int nr_runners, int vms, int iters)
{
	int orig = param_read(PARAM_WQ), set, v;

	TEST_ASSERT(nr_runners >= 1 && nr_runners <= MAX_RUNNERS,
		    "1..%d runners", MAX_RUNNERS);
	for (set = 0; set <= 1; set++) {
		if (orig < 0 && set)
			break;
		if (orig >= 0)
			param_write(PARAM_WQ, set ? "Y" : "N");
		for (v = 0; v < vms; v++)
			stress_vm(nr_runners, iters);
		pr_info("%s: %d VMs x %d delete/move/nx rounds, %d runners: ok\n",
			orig < 0 ? "stock zap (no kvm.tdp_mmu_zap_wq)" :
			set ? "tdp_mmu_zap_wq=Y" : "tdp_mmu_zap_wq=N",
			vms, iters, nr_runners);
	}
	if (orig >= 0)
		param_write(PARAM_WQ, orig ? "Y" : "N");
	return 0;
}

/*
 * Read the VM's tdp_mmu_zap_cpus ("cpu<N> <chunks> <final passes>
 * <waited>"): returns the number of workers (0 if the VM has none, -1
 * without the file, e.g. on the stock modules), zaps[] per CPU: all zap
 * work items, the workers' and those of the tasks that needed a zap done;
 * waited[], if given, the latter alone.
 */
static int read_zap_cpus(struct kvm_vm *vm, unsigned long *zaps,
			 unsigned long *waited, int max)
{
	char path[128], line[128];
	unsigned long chunks, finals, w;
	int workers = 0, cpu;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/debug/kvm/%d-%d/tdp_mmu_zap_cpus",
		 getpid(), vm->fd);
	memset(zaps, 0, max * sizeof(*zaps));
	if (waited)
		memset(waited, 0, max * sizeof(*waited));
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "workers %d", &workers) == 1)
			continue;
		TEST_ASSERT(sscanf(line, "cpu%d %lu %lu %lu", &cpu, &chunks,
				   &finals, &w) == 4 &&
			    cpu >= 0 && cpu < max, "bad line '%s'", line);
		zaps[cpu] = chunks + finals + w;
		if (waited)
			waited[cpu] = w;
	}
	fclose(f);
	return workers;
}

/*
 * Fill, delete and re-add the victim @iters times, back to back: the
 * workers may still be zapping the roots of one deletion when the next
 * one invalidates the roots again.  The ledger checks each deletion.
 */
static void delete_victim_rounds(struct test_vm *t, int iters)
{
	int it;

	ledger_start(t);
	for (it = 0; it < iters; it++) {
		run_probe(t, PROBE_FILL, VICTIM_GPA, it + 1);
		set_victim(t, VICTIM_GPA, 0);
		ledger_mark("delete", it);
		set_victim(t, VICTIM_GPA, t->victim_pages);
	}
	ledger_check();
}

static int test_confine(int iters)
{
	int orig = param_read(PARAM_WQ), first, pin, cpu, workers;
	unsigned long zaps[CPU_SETSIZE], waited[CPU_SETSIZE], total = 0;
	cpu_set_t mask;
	struct test_vm t;

	if (orig < 0) {
		print_skip("kvm.tdp_mmu_zap_wq not present (stock modules)");
		return KSFT_SKIP;
	}
	TEST_ASSERT(!sched_getaffinity(0, sizeof(mask), &mask), "getaffinity");
	first_last_cpu(&first, &pin);
	if (first == pin) {
		print_skip("needs 2 CPUs to tell confined work from spread work");
		return KSFT_SKIP;
	}

	/* With the parameter off the VM has no workers. */
	param_write(PARAM_WQ, "N");
	test_vm_create(&t, 1, 64);
	workers = read_zap_cpus(t.vm, zaps, NULL, CPU_SETSIZE);
	TEST_ASSERT(workers == 0,
		    "tdp_mmu_zap_wq=N: %d zap workers (-1: no tdp_mmu_zap_cpus)",
		    workers);
	test_vm_free(&t);

	param_write(PARAM_WQ, "Y");
	pin_self(pin);
	test_vm_create(&t, 1, 256);
	t.unpin_runners = true;
	start_runners(&t);
	delete_victim_rounds(&t, iters);
	stop_runners(&t);

	workers = read_zap_cpus(t.vm, zaps, waited, CPU_SETSIZE);
	TEST_ASSERT(workers == 1, "%d zap workers for a VMM pinned to one CPU",
		    workers);
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (zaps[cpu])
			pr_info("CPU %d: %lu zap work items\n", cpu, zaps[cpu]);
		TEST_ASSERT(cpu == pin || !zaps[cpu],
			    "%lu zap work items ran on CPU %d, the VMM is pinned to CPU %d",
			    zaps[cpu], cpu, pin);
		total += zaps[cpu] - waited[cpu];
	}
	TEST_ASSERT(total >= (unsigned long)iters,
		    "only %lu zap work items of the workers for %d deletions: did they zap?",
		    total, iters);
	pr_info("confined: %lu zap work items, all on CPU %d (VMM's), 0 elsewhere\n",
		total, pin);
	test_vm_free(&t);
	sched_setaffinity(0, sizeof(mask), &mask);
	param_write(PARAM_WQ, orig ? "Y" : "N");
	return 0;
}

/*
 * The thread ids of this process's threads named ZAP_WORKER_COMM, i.e.
 * 6.12's zap workers (6.1's are kthreads, not threads of the process);
 * returns how many, at most @max.
 */
static int zap_worker_tids(pid_t *tids, int max)
{
	DIR *dir = opendir("/proc/self/task");
	char path[300], comm[32];
	struct dirent *d;
	int n = 0;
	FILE *f;

	TEST_ASSERT(dir, "opendir /proc/self/task");
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			 d->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f)) {
			comm[strcspn(comm, "\n")] = 0;
			if (!strcmp(comm, ZAP_WORKER_COMM) && n < max)
				tids[n++] = atoi(d->d_name);
		}
		fclose(f);
	}
	closedir(dir);
	return n;
}

/* Allow every thread of the process on @cpu only, as "taskset -a -p" does. */
static void pin_all_threads(int cpu)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *d;
	cpu_set_t one;

	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	TEST_ASSERT(dir, "opendir /proc/self/task");
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		TEST_ASSERT(!sched_setaffinity(atoi(d->d_name), sizeof(one), &one) ||
			    errno == ESRCH,
			    "cannot move thread %s to CPU %d", d->d_name, cpu);
	}
	closedir(dir);
}

static int test_follow(int iters)
{
	int orig = param_read(PARAM_WQ), from, to, cpu, workers, n;
	unsigned long before[CPU_SETSIZE], after[CPU_SETSIZE];
	unsigned long wbefore[CPU_SETSIZE], wafter[CPU_SETSIZE];
	unsigned long moved = 0, stayed = 0, other = 0, waited = 0;
	pid_t tids[TDP_ZAP_MAX_TIDS];
	cpu_set_t mask, got;
	struct test_vm t;

	if (orig < 0) {
		print_skip("kvm.tdp_mmu_zap_wq not present (stock modules)");
		return KSFT_SKIP;
	}
	TEST_ASSERT(!sched_getaffinity(0, sizeof(mask), &mask), "getaffinity");
	first_last_cpu(&from, &to);
	if (from == to) {
		print_skip("needs 2 CPUs to move the VMM from one to another");
		return KSFT_SKIP;
	}

	param_write(PARAM_WQ, "Y");
	pin_self(from);
	test_vm_create(&t, 1, 256);
	workers = read_zap_cpus(t.vm, before, NULL, CPU_SETSIZE);
	n = zap_worker_tids(tids, TDP_ZAP_MAX_TIDS);
	TEST_ASSERT(!n || n == workers,
		    "%d threads named %s in the VMM, but %d zap workers",
		    n, ZAP_WORKER_COMM, workers);
	pr_info("VM created on CPU %d: %d zap workers, %s\n", from, workers,
		n ? "threads of the VMM (vhost_tasks)" : "not threads of the VMM (kthreads)");
	t.unpin_runners = true;
	start_runners(&t);
	delete_victim_rounds(&t, iters);

	/* Move the whole VMM, zap workers included if they are its threads. */
	pin_all_threads(to);
	for (cpu = 0; cpu < n; cpu++) {
		TEST_ASSERT(!sched_getaffinity(tids[cpu], sizeof(got), &got),
			    "getaffinity of zap worker %d", tids[cpu]);
		TEST_ASSERT(CPU_ISSET(to, &got) && CPU_COUNT(&got) == 1,
			    "zap worker %d is not allowed on CPU %d only",
			    tids[cpu], to);
	}
	read_zap_cpus(t.vm, before, wbefore, CPU_SETSIZE);
	delete_victim_rounds(&t, iters);
	read_zap_cpus(t.vm, after, wafter, CPU_SETSIZE);
	stop_runners(&t);

	/*
	 * The workers' items only: the deleting thread zaps what it needs
	 * where it runs, i.e. on the new CPU, whatever the workers do.
	 */
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		unsigned long w = wafter[cpu] - wbefore[cpu];
		unsigned long d = after[cpu] - before[cpu] - w;

		if (d || w)
			pr_info("after the move: CPU %d: %lu zap work items of the workers, %lu of the deleting thread\n",
				cpu, d, w);
		TEST_ASSERT(!w || cpu == to,
			    "the deleting thread, on CPU %d, zapped on CPU %d",
			    to, cpu);
		waited += w;
		if (cpu == to)
			moved += d;
		else if (cpu == from)
			stayed += d;
		else
			other += d;
	}
	TEST_ASSERT(!other, "%lu zap work items ran on CPUs the VMM never had",
		    other);
	if (n) {
		TEST_ASSERT(!stayed && moved >= (unsigned long)iters,
			    "workers are VMM threads, yet after the VMM moved from CPU %d to %d: %lu items on %d, %lu on %d",
			    from, to, stayed, from, moved, to);
		pr_info("followed: %lu zap work items of the workers after the move, all on CPU %d (the VMM's new CPU), 0 on CPU %d (and %lu of the deleting thread)\n",
			moved, to, from, waited);
	} else {
		TEST_ASSERT(!moved && stayed >= (unsigned long)iters,
			    "kthread workers confined at VM creation, yet after the VMM moved from CPU %d to %d: %lu items on %d, %lu on %d",
			    from, to, stayed, from, moved, to);
		pr_info("stayed: %lu zap work items of the workers after the move, all on CPU %d (the VMM's CPU at VM creation), 0 on CPU %d (and %lu of the deleting thread)\n",
			stayed, from, to, waited);
	}
	test_vm_free(&t);
	sched_setaffinity(0, sizeof(mask), &mask);
	param_write(PARAM_WQ, orig ? "Y" : "N");
	return 0;
}

/*
 * Milliseconds from @t0 until fewer than @left 4 KiB SPTEs are left, e.g.
 * until the zap that the workers may go on with after a deletion returned
 * is done too; polled every millisecond, -1 after @limit_ms.
 */
static double wait_pages_4k_below(struct test_vm *t, double t0, uint64_t left,
				  double limit_ms)
{
	while (vm_get_stat(t->vm, "pages_4k") >= left) {
		if (now_ms() - t0 > limit_ms)
			return -1;
		usleep(1000);
	}
	return now_ms() - t0;
}

#define CG_ROOT		"/sys/fs/cgroup"

/* Write @val to @dir/@file; returns 0 or an errno. */
static int cg_write(const char *dir, const char *file, const char *val)
{
	char path[256];
	int fd, r = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return errno;
	if (write(fd, val, strlen(val)) < 0)
		r = errno;
	close(fd);
	return r;
}

/* The "frozen" value of @dir/cgroup.events, -1 if unreadable. */
static int cg_frozen(const char *dir)
{
	char path[256], line[64];
	int frozen = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/cgroup.events", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "frozen %d", &frozen) == 1)
			break;
	fclose(f);
	return frozen;
}

/* Wait up to 10 s for @dir's frozen state to become @want. */
static bool cg_wait_frozen(const char *dir, int want)
{
	double t0 = now_ms();

	while (cg_frozen(dir) != want) {
		if (now_ms() - t0 > 10000)
			return false;
		usleep(1000);
	}
	return true;
}

#define FREEZE_RESIDENT_PAGES	4096

/*
 * Populate the resident slot and the victim, delete the victim and check
 * that all of its 4 KiB SPTEs went with the deletion; returns how many
 * 4 KiB SPTEs are left (the resident slot's, unless something zapped
 * them too), and in @del_ms, if given, how long the deletion took.
 * @what names the case in a failure.
 */
static uint64_t delete_victim_counted(struct test_vm *t, int round,
				      const char *what, double *del_ms)
{
	uint64_t n0, n1;
	double t0;

	__run_probe(t, PROBE_FILL, RESIDENT_GPA, 1, t->resident_pages);
	run_probe(t, PROBE_FILL, VICTIM_GPA, round + 1);
	n0 = vm_get_stat(t->vm, "pages_4k");
	t0 = now_ms();
	set_victim(t, VICTIM_GPA, 0);
	if (del_ms)
		*del_ms = now_ms() - t0;
	if (ledger_dir[0])
		ledger_mark(what, round);
	n1 = vm_get_stat(t->vm, "pages_4k");
	TEST_ASSERT(n1 + t->victim_pages <= n0,
		    "%s, round %d: %lu 4 KiB SPTEs before the deletion, %lu after: the victim's %lu were not all zapped",
		    what, round, n0, n1, t->victim_pages);
	assert_mmio(t, VICTIM_GPA, "deleted slot");
	return n1;
}

static int test_freeze(int iters)
{
	int orig = param_read(PARAM_WQ), n, i, it, r;
	uint64_t resident = FREEZE_RESIDENT_PAGES, n1 = 0;
	char dom[128], wdir[160], buf[32];
	pid_t tids[TDP_ZAP_MAX_TIDS];
	struct test_vm t;

	if (orig < 0) {
		print_skip("kvm.tdp_mmu_zap_wq not present (stock modules)");
		return KSFT_SKIP;
	}
	param_write(PARAM_WQ, "Y");
	__test_vm_create(&t, 1, 256, resident);
	n = zap_worker_tids(tids, TDP_ZAP_MAX_TIDS);
	if (!n) {
		test_vm_free(&t);
		param_write(PARAM_WQ, orig ? "Y" : "N");
		print_skip("%s", NOT_THREADS_MSG);
		return KSFT_SKIP;
	}
	if (access(CG_ROOT "/cgroup.controllers", F_OK) &&
	    mount("none", CG_ROOT, "cgroup2", 0, NULL)) {
		test_vm_free(&t);
		param_write(PARAM_WQ, orig ? "Y" : "N");
		print_skip("no cgroup v2 at " CG_ROOT " and cannot mount one: %s",
			   strerror(errno));
		return KSFT_SKIP;
	}

	/*
	 * A threaded cgroup v2 subtree: the process in its root, the zap
	 * workers alone in a threaded child, so that freezing the child
	 * freezes the workers and not the thread that deletes memslots.
	 */
	snprintf(dom, sizeof(dom), CG_ROOT "/kbp-tdp-zap-%d", getpid());
	snprintf(wdir, sizeof(wdir), "%s/workers", dom);
	TEST_ASSERT(!mkdir(dom, 0755) && !mkdir(wdir, 0755),
		    "mkdir %s: %s", wdir, strerror(errno));
	snprintf(buf, sizeof(buf), "%d", getpid());
	r = cg_write(dom, "cgroup.procs", buf);
	TEST_ASSERT(!r, "move the test into %s: %s", dom, strerror(r));
	r = cg_write(wdir, "cgroup.type", "threaded");
	TEST_ASSERT(!r, "make %s threaded: %s", wdir, strerror(r));
	for (i = 0; i < n; i++) {
		snprintf(buf, sizeof(buf), "%d", tids[i]);
		r = cg_write(wdir, "cgroup.threads", buf);
		TEST_ASSERT(!r, "move zap worker %d into %s: %s", tids[i], wdir,
			    strerror(r));
	}

	/*
	 * No runner vCPUs here or in test_quirk(): the SPTEs a runner faults
	 * back in after each invalidation would blur the counts of SPTEs
	 * before and after a deletion.
	 */
	r = cg_write(wdir, "cgroup.freeze", "1");
	TEST_ASSERT(!r, "freeze %s: %s", wdir, strerror(r));
	TEST_ASSERT(cg_wait_frozen(wdir, 1),
		    "the %d zap workers did not freeze within 10 s", n);

	for (it = 0; it < iters; it++) {
		/* Returns although every zap worker is frozen. */
		n1 = delete_victim_counted(&t, it, "frozen workers", NULL);
		TEST_ASSERT(n1 >= resident,
			    "round %d: %lu 4 KiB SPTEs left, fewer than the %lu of the resident slot: who zapped them with the workers frozen?",
			    it, n1, resident);
		TEST_ASSERT(cg_frozen(wdir) == 1, "round %d: workers thawed", it);
		set_victim(&t, VICTIM_GPA, t.victim_pages);
	}
	pr_info("frozen workers: %d deletions returned with the victim's SPTEs gone, %lu 4 KiB SPTEs of the old roots left queued\n",
		iters, n1);

	r = cg_write(wdir, "cgroup.freeze", "0");
	TEST_ASSERT(!r, "thaw %s: %s", wdir, strerror(r));
	TEST_ASSERT(cg_wait_frozen(wdir, 0), "the zap workers did not thaw");
	TEST_ASSERT(wait_pages_4k_below(&t, now_ms(), resident / 2, 10000) >= 0,
		    "10 s after the thaw, %lu 4 KiB SPTEs are still mapped: the workers did not zap the queued roots",
		    vm_get_stat(t.vm, "pages_4k"));
	pr_info("thawed: the workers zapped the queued roots, %lu 4 KiB SPTEs left\n",
		vm_get_stat(t.vm, "pages_4k"));
	run_probe(&t, PROBE_CHECK, VICTIM_GPA, iters);
	test_vm_free(&t);
	snprintf(buf, sizeof(buf), "%d", getpid());
	cg_write(CG_ROOT, "cgroup.procs", buf);
	rmdir(wdir);
	rmdir(dom);
	param_write(PARAM_WQ, orig ? "Y" : "N");
	return 0;
}

/* Can VMs disable KVM_X86_QUIRK_SLOT_ZAP_ALL (6.12 and later)? */
static bool have_slot_zap_all_quirk(void)
{
	int quirks = kvm_check_cap(KVM_CAP_DISABLE_QUIRKS2);

	return quirks > 0 && (quirks & KVM_X86_QUIRK_SLOT_ZAP_ALL);
}

static int test_quirk(int iters)
{
	int orig = param_read(PARAM_WQ), q, it, cpu;
	unsigned long before[CPU_SETSIZE], after[CPU_SETSIZE], items;
	uint64_t resident = FREEZE_RESIDENT_PAGES, n1;
	struct test_vm t;

	if (!have_slot_zap_all_quirk()) {
		print_skip("%s", NO_QUIRK_MSG);
		return KSFT_SKIP;
	}
	if (orig >= 0)
		param_write(PARAM_WQ, "Y");

	for (q = 0; q <= 1; q++) {
		__test_vm_create(&t, 1, 256, resident);
		if (q)
			vm_enable_cap(t.vm, KVM_CAP_DISABLE_QUIRKS2,
				      KVM_X86_QUIRK_SLOT_ZAP_ALL);
		read_zap_cpus(t.vm, before, NULL, CPU_SETSIZE);
		for (it = 0; it < iters; it++) {
			n1 = delete_victim_counted(&t, it,
						   q ? "quirk off" : "quirk on",
						   NULL);
			TEST_ASSERT(!q || n1 >= resident,
				    "quirk off, round %d: %lu 4 KiB SPTEs left, the resident slot's %lu were zapped too",
				    it, n1, resident);
			set_victim(&t, VICTIM_GPA, t.victim_pages);
			run_probe(&t, PROBE_CHECK, VICTIM_GPA, it + 1);
		}
		read_zap_cpus(t.vm, after, NULL, CPU_SETSIZE);
		for (items = 0, cpu = 0; cpu < CPU_SETSIZE; cpu++)
			items += after[cpu] - before[cpu];
		if (orig >= 0 && q)
			TEST_ASSERT(!items,
				    "quirk off: %lu zap work items, yet no root should have been invalidated",
				    items);
		if (orig >= 0 && !q)
			TEST_ASSERT(items >= (unsigned long)iters,
				    "quirk on: only %lu zap work items for %d deletions",
				    items, iters);
		if (!q)
			TEST_ASSERT(wait_pages_4k_below(&t, now_ms(), resident / 2,
							10000) >= 0,
				    "quirk on: 10 s after the last deletion %lu 4 KiB SPTEs of the invalidated roots are left",
				    vm_get_stat(t.vm, "pages_4k"));
		pr_info("quirk %s: %d deletions, %s, %lu zap work items%s\n",
			q ? "off" : "on", iters,
			q ? "only the victim's SPTEs zapped, the resident slot stayed mapped" :
			    "every root invalidated and zapped",
			items, orig < 0 ? " (stock modules: none counted)" : "");
		test_vm_free(&t);
	}
	if (orig >= 0)
		param_write(PARAM_WQ, orig ? "Y" : "N");
	return 0;
}

/*
 * Populate @pages pages at @gpa (the victim or the resident slot), saying
 * how far it got every 10 s.
 */
static void bench_populate(struct test_vm *t, const char *label, int round,
			   uint64_t gpa, uint64_t pages)
{
	uint64_t step = 16 << 20 >> PAGE_SHIFT, done;
	double t0 = now_ms(), tp = t0;

	for (done = 0; done < pages; done += step) {
		__run_probe(t, PROBE_FILL, gpa + done * PAGE_SIZE, 1,
			    min(step, pages - done));
		if (now_ms() - tp >= 10000) {
			tp = now_ms();
			pr_info("%s round %d: populating, %lu of %lu MiB after %.0f s\n",
				label, round, (done + step) >> (20 - PAGE_SHIFT),
				pages >> (20 - PAGE_SHIFT), (tp - t0) / 1000);
		}
	}
	pr_info("%s round %d: %lu 4 KiB SPTEs after populating in %.0f ms\n",
		label, round, vm_get_stat(t->vm, "pages_4k"), now_ms() - t0);
}

/*
 * The runner's progress is compared over a window of this many ms from
 * the start of the deletion, as long as the ones before it: the zap is
 * over within it in every setting (checked), whether it ran inside the
 * ioctl or after it returned, so the window holds all of its cost.
 */
#define BENCH_WINDOW_MS	500

/*
 * BENCH_ROUNDS times: populate the victim slot (and the resident slot, with
 * @small) with 4 KiB SPTEs, measure the runner's progress for 500 ms,
 * delete the victim slot and measure how long KVM_SET_USER_MEMORY_REGION
 * took and the runner's progress meanwhile and over BENCH_WINDOW_MS from
 * the start of the deletion, and when the zap of all the old SPTEs was
 * done (the same, unless workers go on with it after the deletion
 * returned).  The runner vCPU keeps running throughout, unpinned
 * like the VMM.
 */
/* bench Q: the VM disables KVM_X86_QUIRK_SLOT_ZAP_ALL. */
static bool bench_noquirk;

static void bench_one(const char *label, uint64_t mib, uint64_t small)
{
	uint64_t big = mib << 20 >> PAGE_SHIFT, p0, p1, b0, b1, left;
	uint64_t pages = small ? small << 20 >> PAGE_SHIFT : big;
	double t0, del, del_sum = 0, del_min = 1e12, del_max = 0;
	double during = 0, before = 0, done, done_sum = 0, window = 0;
	uint64_t p2;
	unsigned long zaps[CPU_SETSIZE];
	unsigned long outside = 0, inside = 0;
	cpu_set_t mask;
	struct test_vm t;
	int cpu, r, workers;

	__test_vm_create(&t, 1, pages, small ? big : 0);
	if (bench_noquirk)
		vm_enable_cap(t.vm, KVM_CAP_DISABLE_QUIRKS2,
			      KVM_X86_QUIRK_SLOT_ZAP_ALL);
	start_runners(&t);
	while (!read_progress(&t, 0))
		usleep(1000);

	for (r = 0; r < BENCH_ROUNDS; r++) {
		if (r)
			set_victim(&t, VICTIM_GPA, pages);
		if (small)
			bench_populate(&t, label, r, RESIDENT_GPA, big);
		bench_populate(&t, label, r, VICTIM_GPA, pages);

		b0 = read_progress(&t, 0);
		t0 = now_ms();
		usleep(BENCH_WINDOW_MS * 1000);
		b1 = read_progress(&t, 0);
		before += (b1 - b0) / (now_ms() - t0);

		/*
		 * Without the quirk only the deleted slot's SPTEs go: wait for
		 * those, the rest stays mapped.
		 */
		left = bench_noquirk ? vm_get_stat(t.vm, "pages_4k") - pages +
				       pages / 64 + 1 : big / 64;
		p0 = read_progress(&t, 0);
		t0 = now_ms();
		set_victim(&t, VICTIM_GPA, 0);
		del = now_ms() - t0;
		p1 = read_progress(&t, 0);
		/* The victim's own SPTEs are gone when the deletion returns. */
		if (!small)
			assert_old_sptes_gone(&t, "delete");
		done = wait_pages_4k_below(&t, t0, left, 60000);
		TEST_ASSERT(done >= 0, "%s round %d: old SPTEs still there after 60 s",
			    label, r);
		TEST_ASSERT(done < BENCH_WINDOW_MS,
			    "%s round %d: the zap took %.1f ms, longer than the %d ms window",
			    label, r, done, BENCH_WINDOW_MS);
		usleep((t0 + BENCH_WINDOW_MS - now_ms()) * 1000);
		p2 = read_progress(&t, 0);
		window += (p2 - p0) / (now_ms() - t0);
		pr_info("%s round %d: delete %.1f ms, runner %lu passes meanwhile, all old SPTEs zapped after %.1f ms, %lu passes in %d ms\n",
			label, r, del, p1 - p0, done, p2 - p0, BENCH_WINDOW_MS);
		done_sum += done;
		del_sum += del;
		del_min = min(del_min, del);
		del_max = max(del_max, del);
		during += (p1 - p0) / del;
	}
	stop_runners(&t);

	sched_getaffinity(0, sizeof(mask), &mask);
	workers = read_zap_cpus(t.vm, zaps, NULL, CPU_SETSIZE);
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++) {
		if (CPU_ISSET(cpu, &mask))
			inside += zaps[cpu];
		else
			outside += zaps[cpu];
	}
	printf("BENCH tdp_zap %-5s mib=%lu deleted_mib=%lu rounds=%d vmm_cpus=%d workers=%d ",
	       label, mib, small ? small : mib, BENCH_ROUNDS, CPU_COUNT(&mask),
	       workers);
	printf("delete_ms=%.1f (%.1f..%.1f) ", del_sum / BENCH_ROUNDS, del_min,
	       del_max);
	printf("all_zapped_ms=%.1f ", done_sum / BENCH_ROUNDS);
	printf("progress_during=%.3f/ms progress_window=%.3f/ms progress_before=%.3f/ms ",
	       during / BENCH_ROUNDS, window / BENCH_ROUNDS,
	       before / BENCH_ROUNDS);
	printf("items_in=%lu items_out=%lu\n", inside, outside);
	fflush(stdout);
	test_vm_free(&t);
}

/*
 * One setting per run, so that each fits the harness's per-test timeout:
 * "N" on modules without the parameter measures the stock zap, "Y" there
 * has nothing to measure.
 */
static int test_bench(uint64_t mib, const char *setting, uint64_t small)
{
	int orig = param_read(PARAM_WQ);
	bool on = !strcmp(setting, "Y");

	TEST_ASSERT(on || !strcmp(setting, "N") || !strcmp(setting, "Q"),
		    "setting is Y, N or Q");
	if (!strcmp(setting, "Q")) {
		if (!have_slot_zap_all_quirk()) {
			print_skip("%s", NO_QUIRK_MSG);
			return KSFT_SKIP;
		}
		bench_noquirk = true;
		bench_one(orig < 0 ? "stock-noquirk" : "noquirk", mib, small);
		return 0;
	}
	if (orig < 0) {
		if (on) {
			print_skip("kvm.tdp_mmu_zap_wq not present (stock modules)");
			return KSFT_SKIP;
		}
		bench_one("stock", mib, small);
		return 0;
	}
	param_write(PARAM_WQ, setting);
	bench_one(on ? "on" : "off", mib, small);
	param_write(PARAM_WQ, orig ? "Y" : "N");
	return 0;
}

/*
 * inversion: how long others wait for a VM whose VMM lets its zap workers
 * run seldom.  The writer of kvm.nx_huge_pages zaps every VM with kvm_lock
 * held, and KVM_CREATE_VM takes kvm_lock.
 */
#define PARAM_RT_RUNTIME	"/proc/sys/kernel/sched_rt_runtime_us"
/*
 * How long the spinner keeps the VMM's CPU, the bound of any stall here.
 * On 6.1 it keeps it for good meanwhile; 6.12's fair server still gives
 * the CPU's SCHED_NORMAL and SCHED_IDLE tasks 50 ms a second.
 */
#define INVERSION_SPIN_MS	6000
/* Ours may be slower than the distro's zap by this much, and no more. */
#define INVERSION_FACTOR	2
#define INVERSION_SLACK_MS	500

/*
 * A SCHED_FIFO thread on @cpu until @stop, for @ms at most; @timed_out
 * says whether it gave up.
 */
struct spin {
	int cpu;
	bool stop, timed_out;
	double ms;
	pthread_t thread;
};

/* What the inversion and race tests changed, put back however they end. */
static int inv_rt = -1, inv_wq = -1, inv_nx = -1;

static void *spinner(void *arg)
{
	struct sched_param param = { .sched_priority = 1 };
	struct spin *s = arg;
	double t0;

	pin_self(s->cpu);
	TEST_ASSERT(!sched_setscheduler(0, SCHED_FIFO, &param),
		    "SCHED_FIFO: %s", strerror(errno));
	t0 = now_ms();
	while (!READ_ONCE(s->stop)) {
		if (now_ms() - t0 >= s->ms) {
			s->timed_out = true;
			break;
		}
	}
	return NULL;
}

static void spin_start(struct spin *sp, int cpu, double ms)
{
	memset(sp, 0, sizeof(*sp));
	sp->cpu = cpu;
	sp->ms = ms;
	TEST_ASSERT(!pthread_create(&sp->thread, NULL, spinner, sp),
		    "cannot start the SCHED_FIFO thread");
	/* Until it holds the CPU. */
	usleep(100 * 1000);
}

/* Stop the spinner; returns whether it had given up before. */
static bool spin_stop(struct spin *sp)
{
	WRITE_ONCE(sp->stop, true);
	pthread_join(sp->thread, NULL);
	return sp->timed_out;
}

/*
 * A process of its own that creates and destroys VMs in a loop, from the
 * byte on @go to the byte on @stop, and writes the number of VMs and the
 * slowest KVM_CREATE_VM in ms to @out.  Forked before the test's VM
 * exists: a fork afterwards would write-protect the VM's memory and zap
 * the SPTEs under test.
 */
static void vm_creator(int go, int stop, int out)
{
	int kvm = open("/dev/kvm", O_RDWR), fd;
	double res[2] = { 0, 0 }, t;
	ssize_t r;
	char c;

	/* Gone with the test, whatever becomes of it; the test restores. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	inv_rt = -1;
	inv_wq = -1;
	inv_nx = -1;
	TEST_ASSERT(kvm >= 0, "open /dev/kvm");
	if (read(go, &c, 1) != 1)
		_exit(1);
	fcntl(stop, F_SETFL, O_NONBLOCK);
	for (;;) {
		/* The byte, or EOF: the test is done with it. */
		r = read(stop, &c, 1);
		if (r != -1 || errno != EAGAIN)
			break;
		t = now_ms();
		fd = ioctl(kvm, KVM_CREATE_VM, 0);
		t = now_ms() - t;
		TEST_ASSERT(fd >= 0, "KVM_CREATE_VM: %s", strerror(errno));
		close(fd);
		res[0]++;
		res[1] = res[1] > t ? res[1] : t;
	}
	TEST_ASSERT(write(out, res, sizeof(res)) == sizeof(res), "creator: report");
	_exit(0);
}

/*
 * One setting of kvm.tdp_mmu_zap_wq: the VMM thread at SCHED_IDLE on CPU
 * @pin creates the VM, so its workers (if any) run there and so; MIB MiB
 * of dirty-logged 4 KiB SPTEs; then a SCHED_FIFO task takes CPU @pin and
 * this thread, on CPU @other at its normal priority, toggles
 * kvm.nx_huge_pages while another process creates VMs.  @ms[0] is the
 * toggle, @ms[1] the slowest KVM_CREATE_VM meanwhile, @ms[2] the VMs.
 */
static void inversion_one(uint64_t mib, int pin, int other, double *ms)
{
	struct sched_param sp0 = { .sched_priority = 0 };
	int go[2], stop[2], out[2], nx = param_read(NX_HUGE_PAGES_PARAM), workers;
	unsigned long zaps[CPU_SETSIZE];
	struct spin spin;
	struct test_vm t;
	double res[2];
	pid_t pid;
	char c = 0;

	TEST_ASSERT(!pipe(go) && !pipe(stop) && !pipe(out), "pipe");
	pid = fork();
	TEST_ASSERT(pid >= 0, "fork");
	if (!pid) {
		close(go[1]);
		close(stop[1]);
		close(out[0]);
		vm_creator(go[0], stop[0], out[1]);
	}
	close(go[0]);
	close(stop[0]);
	close(out[1]);

	pin_self(pin);
	TEST_ASSERT(!sched_setscheduler(0, SCHED_IDLE, &sp0), "SCHED_IDLE");
	test_vm_create(&t, 0, mib << (20 - PAGE_SHIFT));
	workers = read_zap_cpus(t.vm, zaps, NULL, CPU_SETSIZE);
	bench_populate(&t, "inversion", 0, VICTIM_GPA, t.victim_pages);

	/* Back to where an administrator's shell would be. */
	TEST_ASSERT(!sched_setscheduler(0, SCHED_OTHER, &sp0), "SCHED_OTHER");
	pin_self(other);

	spin_start(&spin, pin, INVERSION_SPIN_MS);
	TEST_ASSERT(write(go[1], &c, 1) == 1, "start the creator");
	usleep(100 * 1000);
	inv_nx = nx;
	ms[0] = now_ms();
	param_write(NX_HUGE_PAGES_PARAM, nx ? "N" : "Y");
	ms[0] = now_ms() - ms[0];
	usleep(100 * 1000);
	TEST_ASSERT(write(stop[1], &c, 1) == 1, "stop the creator");
	TEST_ASSERT(read(out[0], res, sizeof(res)) == sizeof(res), "creator's figures");
	waitpid(pid, NULL, 0);
	spin_stop(&spin);
	ms[1] = res[1];
	ms[2] = res[0];
	TEST_ASSERT(ms[2] >= 1, "no KVM_CREATE_VM returned during the toggle's window");

	TEST_ASSERT(vm_get_stat(t.vm, "pages_4k") < t.victim_pages / 2,
		    "the toggle left %lu 4 KiB SPTEs of %lu",
		    vm_get_stat(t.vm, "pages_4k"), t.victim_pages);
	param_write(NX_HUGE_PAGES_PARAM, nx ? "Y" : "N");
	inv_nx = -1;
	pr_info("inversion: %d zap workers, %lu MiB of 4 KiB SPTEs: nx_huge_pages toggled in %.0f ms, slowest of %.0f KVM_CREATE_VM %.0f ms\n",
		workers, mib, ms[0], ms[2], ms[1]);
	test_vm_free(&t);
	close(go[1]);
	close(stop[1]);
	close(out[0]);
}

static void inversion_restore(void)
{
	char buf[16];

	if (inv_rt != -1) {
		snprintf(buf, sizeof(buf), "%d", inv_rt);
		param_write(PARAM_RT_RUNTIME, buf);
	}
	if (inv_wq >= 0)
		param_write(PARAM_WQ, inv_wq ? "Y" : "N");
	if (inv_nx >= 0)
		param_write(NX_HUGE_PAGES_PARAM, inv_nx ? "Y" : "N");
}

/*
 * RT throttling off until inversion_restore(), which puts it back, and
 * kvm.tdp_mmu_zap_wq as @wq, however the test ends.
 */
static void rt_throttling_off(int wq)
{
	FILE *f = fopen(PARAM_RT_RUNTIME, "r");
	int rt = -1;

	if (f) {
		if (fscanf(f, "%d", &rt) != 1)
			rt = -1;
		fclose(f);
	}
	inv_rt = rt;
	inv_wq = wq;
	atexit(inversion_restore);
	if (rt != -1)
		param_write(PARAM_RT_RUNTIME, "-1");
}

static int test_inversion(uint64_t mib)
{
	int orig = param_read(PARAM_WQ), nx = param_read(NX_HUGE_PAGES_PARAM);
	double off[3], on[3];
	char nxval[32] = "";
	int pin, other;
	FILE *f;

	if (orig < 0) {
		print_skip("kvm.tdp_mmu_zap_wq not present (stock modules): no workers to compare");
		return KSFT_SKIP;
	}
	f = fopen(NX_HUGE_PAGES_PARAM, "r");
	if (f) {
		if (!fgets(nxval, sizeof(nxval), f))
			nxval[0] = 0;
		fclose(f);
	}
	if (nx < 0 || access(NX_HUGE_PAGES_PARAM, W_OK) || !strncmp(nxval, "never", 5)) {
		print_skip("kvm.nx_huge_pages cannot be toggled here (%s)",
			   nxval[0] ? nxval : "no such parameter");
		return KSFT_SKIP;
	}
	first_last_cpu(&other, &pin);
	if (pin == other) {
		print_skip("needs 2 CPUs: one the VMM's, kept busy, one for the administrator");
		return KSFT_SKIP;
	}

	/*
	 * The spinner keeps the VMM's CPU for good, as a SCHED_FIFO vCPU
	 * thread can, until it stops after INVERSION_SPIN_MS.  Any wait for
	 * the workers lasts that long.
	 */
	rt_throttling_off(orig);

	param_write(PARAM_WQ, "N");
	inversion_one(mib, pin, other, off);
	param_write(PARAM_WQ, "Y");
	inversion_one(mib, pin, other, on);

	inversion_restore();
	inv_rt = -1;
	inv_wq = -1;

	pr_info("inversion: tdp_mmu_zap_wq=N (the distro's zap): toggle %.0f ms, KVM_CREATE_VM %.0f ms; =Y: toggle %.0f ms, KVM_CREATE_VM %.0f ms\n",
		off[0], off[1], on[0], on[1]);
	TEST_ASSERT(on[0] <= INVERSION_FACTOR * off[0] + INVERSION_SLACK_MS,
		    "the nx_huge_pages write waited for the starved workers: %.0f ms, %.0f ms without workers",
		    on[0], off[0]);
	TEST_ASSERT(on[1] <= INVERSION_FACTOR * off[1] + INVERSION_SLACK_MS,
		    "KVM_CREATE_VM waited %.0f ms behind kvm_lock, %.0f ms without workers",
		    on[1], off[1]);
	return 0;
}

/*
 * starve: the workers cannot run at all while the victim is deleted, as
 * in freeze, but by the VMM's own scheduling, which 6.1's kthreads follow
 * too: the VMM thread at SCHED_IDLE on one CPU creates the VM (its
 * workers run there, so), then a SCHED_FIFO task takes that CPU with RT
 * throttling off.  Each deletion, from another CPU, must return with the
 * victim's SPTEs gone (the SPTE ledger, and the count of 4 KiB SPTEs that
 * the deletion took away): the deleting thread zapped them itself.
 * 6.12's fair server still gives the workers 50 ms a second, so only
 * with 6.1's kthreads must the resident slot's SPTEs all stay queued.
 */
/*
 * The spinner's bound, far above what three rounds take on the debug
 * kernel (about 2 s): a deletion that waited for the workers would keep
 * it until it gives up, which the test then sees.
 */
#define STARVE_SPIN_MS		20000
#define STARVE_RESIDENT_PAGES	1024

static int test_starve(int iters)
{
	struct sched_param sp0 = { .sched_priority = 0 };
	int orig = param_read(PARAM_WQ), pin, other, it;
	pid_t tids[TDP_ZAP_MAX_TIDS];
	uint64_t n1 = 0, left;
	double slowest = 0, del;
	struct test_vm t;
	struct spin spin;
	bool threads, gave_up;

	if (orig < 0) {
		print_skip("kvm.tdp_mmu_zap_wq not present (stock modules)");
		return KSFT_SKIP;
	}
	first_last_cpu(&other, &pin);
	if (pin == other) {
		print_skip("needs 2 CPUs: one for the starved workers, one to delete from");
		return KSFT_SKIP;
	}
	rt_throttling_off(orig);
	param_write(PARAM_WQ, "Y");

	pin_self(pin);
	TEST_ASSERT(!sched_setscheduler(0, SCHED_IDLE, &sp0), "SCHED_IDLE");
	__test_vm_create(&t, 0, 256, STARVE_RESIDENT_PAGES);
	threads = zap_worker_tids(tids, TDP_ZAP_MAX_TIDS) > 0;
	TEST_ASSERT(!sched_setscheduler(0, SCHED_OTHER, &sp0), "SCHED_OTHER");
	pin_self(other);

	/*
	 * The trace instance first: sizing its buffer waits for work on
	 * every CPU, the spinner's too.
	 */
	ledger_start(&t);
	spin_start(&spin, pin, STARVE_SPIN_MS);
	for (it = 0; it < iters; it++) {
		n1 = delete_victim_counted(&t, it, "starved workers", &del);
		slowest = max(slowest, del);
		set_victim(&t, VICTIM_GPA, t.victim_pages);
	}
	/* Still queued: the workers did not run, or (6.12) ran little. */
	left = vm_get_stat(t.vm, "pages_4k");
	gave_up = spin_stop(&spin);
	ledger_check();
	TEST_ASSERT(!gave_up,
		    "the SCHED_FIFO thread gave up after %d s, before the deletions were done (the slowest took %.0f ms): did they wait for the starved workers?",
		    STARVE_SPIN_MS / 1000, slowest);
	pr_info("starved workers (%s): %d deletions returned with the victim's SPTEs gone, the slowest in %.1f ms; %lu 4 KiB SPTEs of the old roots left queued after the last one, %lu when the spinner stopped\n",
		threads ? "threads of the VMM" : "kthreads", iters, slowest, n1,
		left);
	if (!threads)
		TEST_ASSERT(n1 >= STARVE_RESIDENT_PAGES,
			    "%lu 4 KiB SPTEs left, fewer than the %d of the resident slot: who zapped them with the kthread workers starved?",
			    n1, STARVE_RESIDENT_PAGES);
	TEST_ASSERT(wait_pages_4k_below(&t, now_ms(), STARVE_RESIDENT_PAGES / 2,
					60000) >= 0,
		    "60 s after the spinner stopped, %lu 4 KiB SPTEs are still mapped: the workers did not zap the queued roots",
		    vm_get_stat(t.vm, "pages_4k"));
	test_vm_free(&t);
	inversion_restore();
	inv_rt = -1;
	inv_wq = -1;
	return 0;
}

/*
 * race: memslot deletions, whose invalidated roots the workers zap after
 * the ioctl returned, against mmu_notifier zaps of the large slot, which
 * must reach those roots until their final pass.
 */
/* How long a runner may take for a pass over the large slot. */
#define RACE_PASS_MS	60000
/*
 * The host thread drops a chunk in pieces of this many pages, each read
 * and rewritten before the next: more mmu_notifier calls for the same
 * page faults.
 */
#define RACE_PIECE_PAGES	64
/* Its pause after each chunk, so that the guest gets on. */
#define RACE_PACE_US		2000

struct race {
	struct test_vm *t;
	/* The host's mapping of the large slot. */
	uint64_t *big;
	/* Its chunks; MADV_DONTNEED calls so far. */
	uint64_t chunks, loops;
	int stop, round, rounds;
	const char *label;
	double t0, tp;
};

static uint64_t race_sum(struct race *rc, uint64_t *counts)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < RACE_RUNNERS; i++)
		n += guest_u64_live(rc->t->vm, &counts[i]);
	return n;
}

static void race_report(struct race *rc, const char *what)
{
	rc->tp = now_ms();
	pr_info("race %s after %.0f s: %d of %d deletions, %lu MADV_DONTNEED calls, guest reads: %lu exact (%lu rewritten data), %lu during a rewrite (%lu zero)\n",
		what, (rc->tp - rc->t0) / 1000, rc->round, rc->rounds,
		READ_ONCE(rc->loops), race_sum(rc, race_exact),
		race_sum(rc, race_new), race_sum(rc, race_loose),
		race_sum(rc, race_zero));
}

/* Each runner's passes so far. */
static void race_mark(struct race *rc, uint64_t *mark)
{
	int i;

	for (i = 0; i < RACE_RUNNERS; i++)
		mark[i] = read_progress(rc->t, i);
}

/*
 * Wait until every runner made @passes passes since @mark: two make a
 * whole pass over the large slot that started after the mark.
 */
static void race_wait(struct race *rc, uint64_t *mark, uint64_t passes)
{
	double t0 = now_ms();
	int i;

	for (i = 0; i < RACE_RUNNERS; i++) {
		while (read_progress(rc->t, i) < mark[i] + passes) {
			TEST_ASSERT(now_ms() - t0 < RACE_PASS_MS,
				    "race: runner %d made %lu of %lu passes over the large slot in %d s",
				    i, read_progress(rc->t, i) - mark[i], passes,
				    RACE_PASS_MS / 1000);
			if (now_ms() - rc->tp >= 10000)
				race_report(rc, "running");
			usleep(1000);
		}
	}
}

/*
 * The host thread: one chunk after another, drop the large slot's memory
 * (the mmu_notifier zaps it in every root), check that it reads zero, then
 * write the chunk's next generation; race_seq[] says when.
 */
static void *race_dontneed(void *arg)
{
	struct race *rc = arg;
	uint64_t c = 0, i, k, s, *w, *seq;

	while (!READ_ONCE(rc->stop)) {
		seq = addr_gva2hva(rc->t->vm, (vm_vaddr_t)&race_seq[c]);
		s = READ_ONCE(*seq);
		TEST_ASSERT(s / 2 < RACE_GEN_MASK, "race: chunk %lu rewritten too often", c);
		/* Odd: from here the guest may read old data, zero or new. */
		WRITE_ONCE(*seq, s + 1);
		for (k = c * RACE_CHUNK_PAGES; k < (c + 1) * RACE_CHUNK_PAGES;
		     k += RACE_PIECE_PAGES) {
			w = rc->big + k * WORDS_PER_PAGE;
			TEST_ASSERT(!madvise(w, RACE_PIECE_PAGES * PAGE_SIZE,
					     MADV_DONTNEED),
				    "MADV_DONTNEED: %s", strerror(errno));
			WRITE_ONCE(rc->loops, rc->loops + 1);
			for (i = 0; i < RACE_PIECE_PAGES; i++)
				TEST_ASSERT(!READ_ONCE(w[i * WORDS_PER_PAGE]),
					    "large slot page %lu reads 0x%lx right after MADV_DONTNEED",
					    k + i, w[i * WORDS_PER_PAGE]);
			for (i = 0; i < RACE_PIECE_PAGES; i++)
				WRITE_ONCE(w[i * WORDS_PER_PAGE],
					   rpat(s / 2 + 1, k + i));
		}
		/* Even: the new generation is all there. */
		WRITE_ONCE(*seq, s + 2);
		c = (c + 1) % rc->chunks;
		usleep(RACE_PACE_US);
	}
	return NULL;
}

static int test_race(uint64_t mib, int rounds)
{
	int orig = param_read(PARAM_WQ), r, i, cpu, workers;
	uint64_t pages = mib << (20 - PAGE_SHIFT), mark[RACE_RUNNERS];
	uint64_t exact, fresh, loose, zero;
	unsigned long zaps[CPU_SETSIZE], items = 0;
	struct race rc = { .rounds = rounds };
	struct test_vm t;
	pthread_t thread;

	TEST_ASSERT(mib >= 2 && !(mib % 2) && mib <= RACE_MAX_MIB && rounds > 0,
		    "race: MIB even, 2..%d; ROUNDS at least 1", RACE_MAX_MIB);
	if (orig >= 0) {
		/* A failed assert of any thread exits: restore it then too. */
		inv_wq = orig;
		atexit(inversion_restore);
		param_write(PARAM_WQ, "Y");
	}
	rc.label = orig < 0 ? "stock zap (no kvm.tdp_mmu_zap_wq)" : "tdp_mmu_zap_wq=Y";

	__test_vm_create(&t, RACE_RUNNERS, RACE_VICTIM_PAGES, pages);
	race_pages = pages;
	sync_global_to_guest(t.vm, race_pages);
	rc.t = &t;
	rc.big = addr_gpa2hva(t.vm, RESIDENT_GPA);
	rc.chunks = pages / RACE_CHUNK_PAGES;
	for (i = 0; i < (int)pages; i++)
		rc.big[i * WORDS_PER_PAGE] = rpat(0, i);

	/* The large slot mapped by the runners, the small one by the prober. */
	rc.t0 = now_ms();
	rc.tp = rc.t0;
	start_runners(&t);
	run_probe(&t, PROBE_FILL, VICTIM_GPA, 1);
	memset(mark, 0, sizeof(mark));
	race_wait(&rc, mark, 1);
	pr_info("race populated: %s, %lu MiB slot: %lu 4 KiB SPTEs after %.0f ms\n",
		rc.label, mib, vm_get_stat(t.vm, "pages_4k"), now_ms() - rc.t0);

	pthread_create(&thread, NULL, race_dontneed, &rc);
	race_mark(&rc, mark);
	for (r = 0; r < rounds; r++) {
		/* The large slot mapped again in the roots to invalidate. */
		race_wait(&rc, mark, 2);
		rc.round = r;
		set_victim(&t, VICTIM_GPA, 0);
		race_mark(&rc, mark);
		assert_mmio(&t, VICTIM_GPA, "deleted 2 MiB slot");
		for (i = 0; i < (int)t.victim_pages; i++)
			TEST_ASSERT(t.victim[i * WORDS_PER_PAGE] == vpat(r + 1, i),
				    "host copy of 2 MiB slot page %d lost the guest's write", i);
		set_victim(&t, VICTIM_GPA, t.victim_pages);
		run_probe(&t, PROBE_CHECK, VICTIM_GPA, r + 1);
		run_probe(&t, PROBE_FILL, VICTIM_GPA, r + 2);
		rc.round = r + 1;
		if (now_ms() - rc.tp >= 10000)
			race_report(&rc, "running");
	}
	WRITE_ONCE(rc.stop, 1);
	pthread_join(thread, NULL);

	/* A whole pass of each runner with no chunk dropped: all exact. */
	race_mark(&rc, mark);
	race_wait(&rc, mark, 2);
	stop_runners(&t);
	run_probe(&t, PROBE_CHECK, VICTIM_GPA, rounds + 1);

	exact = race_sum(&rc, race_exact);
	fresh = race_sum(&rc, race_new);
	loose = race_sum(&rc, race_loose);
	zero = race_sum(&rc, race_zero);
	workers = read_zap_cpus(t.vm, zaps, NULL, CPU_SETSIZE);
	for (cpu = 0; cpu < CPU_SETSIZE; cpu++)
		items += zaps[cpu];
	pr_info("race: %s, %lu MiB: %d deletions of the 2 MiB slot, %lu MADV_DONTNEED calls (%lu MiB), guest verifications: %lu exact (%lu of rewritten data), %lu during a rewrite (%lu zero), %d zap workers, %lu zap work items in %.0f s\n",
		rc.label, mib, rounds, rc.loops,
		rc.loops * RACE_PIECE_PAGES >> (20 - PAGE_SHIFT), exact, fresh,
		loose, zero, workers, items, (now_ms() - rc.t0) / 1000);
	TEST_ASSERT(rc.loops >= (uint64_t)rounds,
		    "race: %lu MADV_DONTNEED calls for %d deletions: the host thread hardly ran",
		    rc.loops, rounds);
	TEST_ASSERT(fresh,
		    "race: the guest never read data written after a MADV_DONTNEED: no race");
	TEST_ASSERT(workers <= 0 || items >= (unsigned long)rounds,
		    "race: %lu zap work items for %d deletions: did the workers zap?",
		    items, rounds);
	test_vm_free(&t);
	race_pages = 0;
	inversion_restore();
	inv_wq = -1;
	return 0;
}

int main(int argc, char *argv[])
{
	if (argc == 5 && !strcmp(argv[1], "stress"))
		return test_stress(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc == 3 && !strcmp(argv[1], "confine"))
		return test_confine(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "follow"))
		return test_follow(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "freeze"))
		return test_freeze(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "quirk"))
		return test_quirk(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "starve"))
		return test_starve(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "inversion"))
		return test_inversion(strtoull(argv[2], NULL, 0));
	if (argc == 4 && !strcmp(argv[1], "race"))
		return test_race(arg_u64(argc, argv, 2, 0), arg_u64(argc, argv, 3, 0));
	if ((argc == 4 || argc == 5) && !strcmp(argv[1], "bench"))
		return test_bench(strtoull(argv[2], NULL, 0), argv[3],
				  argc == 5 ? strtoull(argv[4], NULL, 0) : 0);

	fprintf(stderr, "usage: %s stress RUNNERS VMS ITERS | confine ITERS | %s%s\n",
		argv[0], "follow ITERS | freeze ITERS | starve ITERS | quirk ITERS | ",
		"inversion MIB | race MIB ROUNDS | bench MIB Y|N|Q [SMALL]");
	return 2;
}
