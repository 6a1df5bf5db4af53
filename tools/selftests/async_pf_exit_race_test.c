// SPDX-License-Identifier: GPL-2.0-only
/*
 * async_pf_exit_race_test: async #PF work queued when the VMM dies must
 * not fault pages into the dead VMM's address space, and that address
 * space must be gone as soon as the VMM has exited
 * (Documentation/async-pf.rst).
 *
 *   async_pf_exit_race_test [iterations [kasan]]
 *	iterations (default 200): VMMs killed with async #PF work queued.
 *	kasan: 1 on a KASAN kernel, 0 (the default) elsewhere; the test list
 *	passes @KASAN@, which the runner replaces with one of them.  KASAN
 *	holds freed memory in its quarantine, so the check that the VMMs'
 *	memory was freed is left to kmemleak there.
 *
 * A VMM child (async_pf_vmm.h) is SIGKILLed while its async #PF work is
 * queued.  This process, the observer, holds the VMM's userfaultfd and VM
 * fd, so it outlives the VMM and sees every gup the worker does on the
 * VMM's address space.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kvm_util.h"
#include "async_pf_vmm.h"
#include "backport_util.h"
#include "kvm_trace.h"
#include "test_util.h"

static void trace_disable(void)
{
	if (trace_set("kvm_async_pf_completed", "0"))
		pr_info("cannot disable kvm_async_pf_completed\n");
}

/*
 * The tracepoint every async #PF worker hits when it is done, read from
 * trace_pipe as it fires; -1 without tracefs.
 */
static int trace_open(void)
{
	if (access(TRACE_DIR "/events/kvm/kvm_async_pf_completed/enable", F_OK))
		return -1;
	TEST_ASSERT(!trace_set("kvm_async_pf_completed", "1"),
		    "cannot enable kvm_async_pf_completed");
	atexit(trace_disable);
	return open(TRACE_DIR "/trace_pipe", O_RDONLY | O_NONBLOCK);
}

static void trace_drain(int fd)
{
	char buf[4096];

	while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
		;
}

/*
 * Has the worker for @hva finished?  Its kvm_async_pf_completed event
 * names the host address it was for.
 */
static bool trace_seen(int fd, uint64_t hva, char *buf, size_t size)
{
	char needle[40];
	ssize_t n;

	if (fd < 0)
		return false;
	snprintf(needle, sizeof(needle), "address %#lx", hva);
	while ((n = read(fd, buf, size - 1)) > 0) {
		buf[n] = 0;
		if (strstr(buf, needle))
			return true;
	}
	return false;
}

static uint64_t mem_available_kb(void)
{
	char line[128];
	uint64_t kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	TEST_ASSERT(f, "cannot read /proc/meminfo");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static int test_exit_race(int iterations, bool kasan)
{
	int done = 0, attempts = 0, gup_after_death = 0, mm_alive = 0;
	int raced = 0, unobserved = 0, trace_fd;
	uint64_t mem_before, mem_after;

	setup_observer();
	trace_fd = trace_open();
	if (trace_fd < 0)
		pr_info("no tracefs: waiting 500 ms for each worker instead\n");
	mem_before = mem_available_kb();

	while (done < iterations) {
		bool worker_done = false, gup = false;
		double deadline;
		struct vmm v;
		char buf[4096];
		uint64_t addr;
		int ret;

		attempts++;
		TEST_ASSERT(attempts <= 2 * iterations,
			    "%d of %d attempts raced with the worker",
			    raced, attempts - 1);
		trace_drain(trace_fd);
		vmm_start(&v, true);

		/*
		 * A fault already here means the worker ran before the kill
		 * (the starvation did not hold): not the case under test.
		 */
		addr = uffd_read_fault(v.uffd);
		if (addr) {
			raced++;
			uffd_zeropage(v.uffd, addr);
			vmm_kill(&v, true);
			vmm_release(&v);
			continue;
		}

		vmm_kill(&v, false);

		/*
		 * The VMM is dead and its CPU is free, so the queued worker
		 * runs now.  Wait until it has either faulted on the VMM's
		 * memory (a userfault arrives) or finished without doing so
		 * (its tracepoint fires).
		 */
		deadline = now_ms() + (trace_fd >= 0 ? 10000 : 500);
		while (!gup && !worker_done && now_ms() < deadline) {
			struct pollfd pfd[2] = {
				{ .fd = v.uffd, .events = POLLIN },
				{ .fd = trace_fd, .events = POLLIN },
			};

			poll(pfd, trace_fd >= 0 ? 2 : 1, 50);
			addr = uffd_read_fault(v.uffd);
			if (addr)
				gup = true;
			else
				worker_done = trace_seen(trace_fd, v.test_hva, buf,
							 sizeof(buf));
		}
		if (!gup && !worker_done && trace_fd >= 0)
			unobserved++;

		/*
		 * Is the dead VMM's address space still there?  UFFDIO_ZEROPAGE
		 * fails with ESRCH once mm_users is zero.  Probe the page the
		 * worker faulted on, which also lets that worker finish, or
		 * else the last test page, which nothing touches.
		 */
		if (gup)
			gup_after_death++;
		ret = uffd_zeropage(v.uffd, gup ? addr :
				    v.test_hva + (VMM_PAGES - 1) * PAGE_SIZE);
		TEST_ASSERT(!ret || ret == -ESRCH,
			    "UFFDIO_ZEROPAGE failed: %s", strerror(-ret));
		if (!ret)
			mm_alive++;

		vmm_release(&v);
		done++;
		if (done % 20 == 0)
			pr_info("exit race: %d/%d iterations (%d raced), gup after VMM death: %d, mm alive after VMM death: %d\n",
				done, iterations, raced, gup_after_death, mm_alive);
	}

	mem_after = mem_available_kb();
	pr_info("exit race: %d iterations (%d attempts raced with the worker and were not counted)\n",
		done, raced);
	pr_info("exit race: gup on a dead VMM's memory: %d, dead VMM's mm still alive: %d, worker completion not seen: %d\n",
		gup_after_death, mm_alive, unobserved);
	pr_info("exit race: MemAvailable %lu kB before, %lu kB after\n",
		mem_before, mem_after);

	TEST_ASSERT(!gup_after_death,
		    "async #PF workers faulted memory into %d dead VMMs",
		    gup_after_death);
	TEST_ASSERT(!mm_alive,
		    "%d dead VMMs' address spaces outlived them", mm_alive);
	TEST_ASSERT(!unobserved, "%d workers never completed", unobserved);
	/*
	 * A KASAN kernel (make check-debug) holds freed memory in its
	 * quarantine, so MemAvailable says nothing there; its kmemleak scan
	 * judges leaks instead.
	 */
	if (kasan)
		pr_info("exit race: memory check left to kmemleak (KASAN quarantine)\n");
	else
		TEST_ASSERT(mem_before < mem_after + 64 * 1024,
			    "%lu kB of memory not freed after %d VMMs",
			    mem_before - mem_after, done);
	return 0;
}

int main(int argc, char *argv[])
{
	const char *kasan = argc > 2 ? argv[2] : "0";

	/* "@KASAN@" left as it is means a runner that does not know it. */
	if (argc > 3 || (strcmp(kasan, "0") && strcmp(kasan, "1"))) {
		fprintf(stderr, "usage: %s [iterations [kasan]]\n"
			"  kasan: 1 on a KASAN kernel, else 0 (the default)\n",
			argv[0]);
		return 1;
	}
	__TEST_REQUIRE(kvm_has_cap(KVM_CAP_ASYNC_PF_INT),
		       "KVM does not support interrupt-based async #PF");

	return test_exit_race(arg_u64(argc, argv, 1, 200), !strcmp(kasan, "1"));
}
