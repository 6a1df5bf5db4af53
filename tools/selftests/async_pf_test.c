// SPDX-License-Identifier: GPL-2.0-only
/*
 * async_pf_test: paravirtual async #PF, end to end, and what happens to
 * async #PF work when the VMM dies.
 *
 * The guest enables async #PF with interrupt-based "page ready"
 * (MSR_KVM_ASYNC_PF_EN/_INT/_ACK) and has its own #PF and "page ready"
 * handlers.  Its test memory is backed by userfaultfd: KVM cannot fault
 * it in without sleeping, so it injects "page not present" and lets an
 * async #PF worker fault the page in.
 *
 *   async_pf_test basic [pages [delay_ms]]
 *	A resolver thread answers each userfault after a delay.  The guest
 *	must see "page not present", keep doing other work while it waits,
 *	get "page ready" with the same token, and read the right data.
 *
 *   async_pf_test exit-race [iterations]
 *	A VMM child is SIGKILLed while its async #PF work is queued.  This
 *	process, the observer, holds the VMM's userfaultfd and VM fd, so it
 *	outlives the VMM and sees every gup the worker does on the VMM's
 *	address space.  The worker must not fault pages into the address
 *	space of a dead VMM, and that address space must be gone as soon as
 *	the VMM has exited.
 *
 *   async_pf_test unload [cycles]
 *	Kill a VMM with async #PF work queued, then unload and reload kvm
 *	and the vendor module right away ($KBP_MODULE_DIR holds the .ko
 *	files to reload).
 *
 * To have work queued but not yet started when the VMM dies, the VMM's
 * vCPU runs at SCHED_FIFO on CPU 1: async #PF work is queued on the
 * faulting CPU's system workqueue pool, whose kworker cannot run on CPU 1
 * until the VMM is gone.  The VMM is killed well within the RT bandwidth
 * limit; an attempt where the worker ran anyway is detected (its
 * userfault arrives before the kill), not counted, and retried.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "kvm_util.h"
#include "processor.h"
#include "apf_guest.h"
#include "fd_passing.h"
#include "kvm_trace.h"
#include "test_util.h"

#define TEST_SLOT	1
#define TEST_GPA	0x40000000ULL
#define STAGE_QUEUED	1

#define VMM_PAGES	4
#define VMM_CPU		1
#define OBSERVER_CPU	0

/*
 * Guest counters, read back by the host.  The handlers update them behind
 * the guest's main flow, which therefore reads them with READ_ONCE().
 */
static uint64_t nr_not_present;
static uint64_t nr_sync, nr_worked, min_work, total_work;
static bool sync_on_queue;

static uint64_t page_value(uint64_t page)
{
	return 0xa5f0000000000000ULL | page;
}

/*
 * "Page not present": remember the token and do other work, with
 * interrupts on, until "page ready" for that token arrives.  Returning
 * then retries the access, which now finds the page.
 */
static void guest_pf_handler(struct ex_regs *regs)
{
	uint32_t token = guest_apf_token();
	uint64_t work = 0;

	GUEST_ASSERT_2(apf_data.flags == KVM_PV_REASON_PAGE_NOT_PRESENT,
		       apf_data.flags, regs->rip);
	apf_data.flags = 0;
	nr_not_present++;
	guest_apf_wait_begin();

	if (sync_on_queue)
		GUEST_SYNC(STAGE_QUEUED);

	asm volatile("sti");
	while (!guest_apf_take_ready(token)) {
		work++;
		cpu_relax();
	}
	asm volatile("cli");
	guest_apf_wait_end();

	total_work += work;
	if (work)
		nr_worked++;
	if (work < min_work)
		min_work = work;
}

static void guest_code(uint64_t apf_gpa, uint64_t nr_pages)
{
	uint64_t i, before, val;

	min_work = ~0ULL;
	guest_apf_enable(apf_gpa);

	/* KVM only goes async while the guest can take an interrupt. */
	asm volatile("sti");
	for (i = 0; i < nr_pages; i++) {
		before = READ_ONCE(nr_not_present);
		val = READ_ONCE(*(uint64_t *)(TEST_GPA + i * PAGE_SIZE));
		GUEST_ASSERT_2(val == page_value(i), i, val);
		if (READ_ONCE(nr_not_present) == before)
			nr_sync++;
	}
	asm volatile("cli");
	wrmsr(MSR_KVM_ASYNC_PF_EN, 0);
	GUEST_DONE();
}

static int uffd_create(void)
{
	struct uffdio_api api = { .api = UFFD_API };
	int uffd;

	uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	TEST_ASSERT(uffd >= 0, "userfaultfd() failed: %s", strerror(errno));
	TEST_ASSERT(!ioctl(uffd, UFFDIO_API, &api), "UFFDIO_API failed");
	return uffd;
}

/*
 * A VM whose test memory is registered with @uffd (created beforehand, so
 * that an exiting VMM closes it before the VM and wakes any worker blocked
 * on it before KVM flushes that worker).
 */
static struct kvm_vm *create_vm(struct kvm_vcpu **vcpu, int uffd,
				uint64_t nr_pages, bool queue_sync,
				void **test_hva)
{
	struct uffdio_register reg = { .mode = UFFDIO_REGISTER_MODE_MISSING };
	struct kvm_vm *vm;

	vm = vm_create_with_one_vcpu(vcpu, guest_code);
	vm_init_descriptor_tables(vm);
	vcpu_init_descriptor_tables(*vcpu);
	vm_install_exception_handler(vm, PF_VECTOR, guest_pf_handler);
	vm_install_exception_handler(vm, APF_VECTOR, guest_ready_handler);

	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, TEST_GPA,
				    TEST_SLOT, nr_pages, 0);
	virt_map(vm, TEST_GPA, TEST_GPA, nr_pages);
	*test_hva = addr_gpa2hva(vm, TEST_GPA);

	reg.range.start = (uint64_t)*test_hva;
	reg.range.len = nr_pages * PAGE_SIZE;
	TEST_ASSERT(!ioctl(uffd, UFFDIO_REGISTER, &reg),
		    "UFFDIO_REGISTER failed: %s", strerror(errno));

	sync_on_queue = queue_sync;
	sync_global_to_guest(vm, sync_on_queue);
	vcpu_args_set(*vcpu, 2, addr_gva2gpa(vm, (vm_vaddr_t)&apf_data),
		      nr_pages);
	return vm;
}

/* ---- basic ---------------------------------------------------------- */

struct resolver {
	int uffd;
	void *base;
	unsigned int delay_ms;
	bool stop;
	uint64_t faults;
};

static void *resolver_thread(void *arg)
{
	struct resolver *r = arg;
	struct pollfd pfd = { .fd = r->uffd, .events = POLLIN };
	uint64_t *src = aligned_alloc(PAGE_SIZE, PAGE_SIZE);
	struct uffd_msg msg;

	TEST_ASSERT(src, "out of memory");
	while (!READ_ONCE(r->stop)) {
		struct uffdio_copy copy = { 0 };
		uint64_t page, i;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		if (read(r->uffd, &msg, sizeof(msg)) != sizeof(msg))
			continue;
		TEST_ASSERT(msg.event == UFFD_EVENT_PAGEFAULT,
			    "unexpected userfault event %u", msg.event);

		/* The slow part of a real fault: network, disk, ... */
		usleep(r->delay_ms * 1000);

		page = (msg.arg.pagefault.address - (uint64_t)r->base) / PAGE_SIZE;
		for (i = 0; i < PAGE_SIZE / sizeof(*src); i++)
			src[i] = page_value(page);
		copy.dst = (uint64_t)r->base + page * PAGE_SIZE;
		copy.src = (uint64_t)src;
		copy.len = PAGE_SIZE;
		if (ioctl(r->uffd, UFFDIO_COPY, &copy))
			TEST_ASSERT(errno == EEXIST, "UFFDIO_COPY failed: %s",
				    strerror(errno));
		r->faults++;
	}
	free(src);
	return NULL;
}

/*
 * A guest that stops making progress waits for a "page ready" that never
 * comes, inside KVM_RUN, until the harness kills the test.  Make that a
 * failure that says where the guest and KVM were instead: the guest's
 * counters (read live from its memory) and KVM's async #PF trace events.
 */
#define STALL_SECONDS	60

static const char * const apf_events[] = {
	"kvm_try_async_get_page", "kvm_async_pf_repeated_fault",
	"kvm_async_pf_not_present", "kvm_async_pf_ready",
	"kvm_async_pf_completed",
};

static void apf_trace(const char *val)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(apf_events); i++)
		if (trace_set(apf_events[i], val))
			pr_info("cannot set %s to %s\n", apf_events[i], val);
}

static void apf_trace_off(void)
{
	apf_trace("0");
}

struct watchdog {
	struct kvm_vm *vm;
	struct resolver *r;
	bool stop;
};

static uint64_t guest_u64(struct kvm_vm *vm, void *gva)
{
	return READ_ONCE(*(uint64_t *)addr_gva2hva(vm, (vm_vaddr_t)gva));
}

static void *watchdog_thread(void *arg)
{
	struct watchdog *w = arg;
	uint64_t seen = ~0ULL, now;
	uint32_t *tokens;
	char line[256];
	int idle = 0, i;
	FILE *f;

	while (!READ_ONCE(w->stop)) {
		sleep(1);
		now = guest_u64(w->vm, &nr_not_present) +
		      guest_u64(w->vm, &nr_ready) + READ_ONCE(w->r->faults);
		idle = now == seen ? idle + 1 : 0;
		seen = now;
		if (idle < STALL_SECONDS)
			continue;

		tokens = addr_gva2hva(w->vm, (vm_vaddr_t)ready_tokens);
		pr_info("no progress for %d s: guest %lu not present, %lu ready, %lu nested, depth %lu, %lu lost; resolver %lu faults\n",
			idle, guest_u64(w->vm, &nr_not_present),
			guest_u64(w->vm, &nr_ready), guest_u64(w->vm, &nr_nested),
			guest_u64(w->vm, &apf_depth),
			guest_u64(w->vm, &nr_ready_overflow), w->r->faults);
		for (i = 0; i < APF_MAX_READY; i++)
			if (tokens[i])
				pr_info("ready, not taken: token %#x\n", tokens[i]);
		f = fopen(TRACE_DIR "/trace", "r");
		while (f && fgets(line, sizeof(line), f))
			if (line[0] != '#')
				fputs(line, stdout);
		if (f)
			fclose(f);
		TEST_FAIL("the guest stopped making progress");
	}
	return NULL;
}

static int test_basic(uint64_t nr_pages, unsigned int delay_ms)
{
	struct resolver r = { .delay_ms = delay_ms };
	struct watchdog w = { .r = &r };
	pthread_t thread, watcher;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	int fd;

	/* A fresh trace buffer with the async #PF events, if tracing is on. */
	fd = open(TRACE_DIR "/trace", O_WRONLY | O_TRUNC);
	if (fd >= 0) {
		close(fd);
		apf_trace("1");
		atexit(apf_trace_off);
	}

	r.uffd = uffd_create();
	vm = create_vm(&vcpu, r.uffd, nr_pages, false, &r.base);
	pthread_create(&thread, NULL, resolver_thread, &r);
	w.vm = vm;
	pthread_create(&watcher, NULL, watchdog_thread, &w);

	for (;;) {
		vcpu_run(vcpu);
		TEST_ASSERT(vcpu->run->exit_reason == KVM_EXIT_IO,
			    "unexpected exit %s",
			    exit_reason_str(vcpu->run->exit_reason));
		switch (get_ucall(vcpu, &uc)) {
		case UCALL_ABORT:
			REPORT_GUEST_ASSERT_2(uc, "values 0x%lx, 0x%lx");
		case UCALL_DONE:
			goto done;
		default:
			TEST_FAIL("unexpected ucall %lu", uc.cmd);
		}
	}
done:
	WRITE_ONCE(w.stop, true);
	pthread_join(watcher, NULL);
	WRITE_ONCE(r.stop, true);
	pthread_join(thread, NULL);

	sync_global_from_guest(vm, nr_not_present);
	sync_global_from_guest(vm, nr_sync);
	sync_global_from_guest(vm, nr_ready);
	sync_global_from_guest(vm, nr_broadcast);
	sync_global_from_guest(vm, nr_ready_spurious);
	sync_global_from_guest(vm, nr_ready_overflow);
	sync_global_from_guest(vm, ready_tokens);
	sync_global_from_guest(vm, nr_nested);
	sync_global_from_guest(vm, nr_worked);
	sync_global_from_guest(vm, min_work);
	sync_global_from_guest(vm, total_work);

	pr_info("%lu pages, resolver delay %u ms, %lu userfaults resolved\n",
		nr_pages, delay_ms, r.faults);
	pr_info("async #PFs taken: %lu, synchronous faults: %lu\n",
		nr_not_present, nr_sync);
	pr_info("page ready: %lu (+%lu broadcast, %lu without a token), guest work while waiting: %lu iterations (min %lu per fault, %lu faults with work)\n",
		nr_ready, nr_broadcast, nr_ready_spurious, total_work,
		nr_not_present ? min_work : 0, nr_worked);

	/* A nested async #PF is for a page the handler touched. */
	TEST_ASSERT(nr_not_present - nr_nested + nr_sync == nr_pages,
		    "%lu async (%lu nested) + %lu sync faults for %lu pages",
		    nr_not_present, nr_nested, nr_sync, nr_pages);
	TEST_ASSERT(nr_not_present >= nr_pages / 2,
		    "only %lu of %lu faults went async", nr_not_present,
		    nr_pages);
	if (nr_nested)
		pr_info("%lu async #PFs came while the guest waited for another\n",
			nr_nested);
	TEST_ASSERT(nr_ready == nr_not_present && !nr_ready_overflow &&
		    !apf_ready_left(),
		    "%lu page ready for %lu page not present, %lu lost, %d never taken",
		    nr_ready, nr_not_present, nr_ready_overflow,
		    apf_ready_left());
	/*
	 * Not every wait: when the host deschedules the vCPU for longer than
	 * the resolver's delay, "page ready" is due as soon as it is back.
	 */
	TEST_ASSERT(nr_worked * 2 >= nr_not_present,
		    "the guest did other work during only %lu of %lu waits",
		    nr_worked, nr_not_present);
	TEST_ASSERT(nr_broadcast == 1, "%lu broadcast wakeups", nr_broadcast);

	kvm_vm_free(vm);
	close(r.uffd);
	return 0;
}

/* ---- exit-race and unload: a VMM child that gets killed ------------- */

static void setup_observer(void)
{
	struct sched_param sp = { .sched_priority = 1 };
	cpu_set_t cpus;

	__TEST_REQUIRE(sysconf(_SC_NPROCESSORS_ONLN) > VMM_CPU,
		       "needs 2 CPUs: the VMM hogs one, the observer uses the other");
	__TEST_REQUIRE(!sched_setscheduler(0, SCHED_FIFO, &sp),
		       "needs CAP_SYS_NICE to run the VMM at SCHED_FIFO");
	sp.sched_priority = 0;
	TEST_ASSERT(!sched_setscheduler(0, SCHED_OTHER, &sp), "sched_setscheduler");

	CPU_ZERO(&cpus);
	CPU_SET(OBSERVER_CPU, &cpus);
	TEST_ASSERT(!sched_setaffinity(0, sizeof(cpus), &cpus),
		    "cannot pin the observer to CPU %d", OBSERVER_CPU);
}

/*
 * The VMM: one thread, which runs the vCPU at SCHED_FIFO on VMM_CPU.  It
 * hands its userfaultfd (and, if @share_vm, its VM fd) to the observer,
 * runs the guest until the first async #PF is queued, says so, and goes
 * back into the guest, which waits for "page ready" forever.
 */
static void vmm_child(int sock, bool share_vm)
{
	struct sched_param sp = { .sched_priority = 10 };
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	cpu_set_t cpus;
	void *hva;
	int fds[2];

	/* Die with the observer rather than hog a CPU forever. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);

	CPU_ZERO(&cpus);
	CPU_SET(VMM_CPU, &cpus);
	TEST_ASSERT(!sched_setaffinity(0, sizeof(cpus), &cpus),
		    "cannot pin the VMM to CPU %d", VMM_CPU);

	fds[0] = uffd_create();
	vm = create_vm(&vcpu, fds[0], VMM_PAGES, true, &hva);
	fds[1] = vm->fd;
	send_fds(sock, fds, share_vm ? 2 : 1);

	/*
	 * From here until the observer kills us, in far less than the RT
	 * bandwidth limit (950 ms of each second by default), nothing else
	 * runs on this CPU.
	 */
	TEST_ASSERT(!sched_setscheduler(0, SCHED_FIFO, &sp),
		    "cannot make the VMM SCHED_FIFO: %s", strerror(errno));
	vcpu_run(vcpu);
	TEST_ASSERT(get_ucall(vcpu, &uc) == UCALL_SYNC &&
		    uc.args[1] == STAGE_QUEUED,
		    "guest did not take an async #PF (ucall %lu)", uc.cmd);
	TEST_ASSERT(write(sock, &hva, sizeof(hva)) == sizeof(hva),
		    "cannot tell the observer");
	vcpu_run(vcpu);
	TEST_FAIL("the guest left its wait for page ready");
}

static void trace_disable(void)
{
	if (trace_set("kvm_async_pf_completed", "0"))
		pr_info("cannot disable kvm_async_pf_completed\n");
}

/* The tracepoint every async #PF worker hits when it is done. */
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

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct vmm {
	pid_t pid;
	int sock;
	int uffd;
	int vm_fd;
	uint64_t test_hva;	/* in the VMM's address space */
};

/* Start a VMM child and wait until it has async #PF work queued. */
static void vmm_start(struct vmm *v, bool share_vm)
{
	struct pollfd pfd;
	int sv[2], fds[2];

	TEST_ASSERT(!socketpair(AF_UNIX, SOCK_STREAM, 0, sv), "socketpair");
	v->pid = fork();
	TEST_ASSERT(v->pid >= 0, "fork failed");
	if (!v->pid) {
		close(sv[0]);
		vmm_child(sv[1], share_vm);
		_exit(1);
	}
	close(sv[1]);
	v->sock = sv[0];
	recv_fds(v->sock, fds, share_vm ? 2 : 1);
	v->uffd = fds[0];
	v->vm_fd = share_vm ? fds[1] : -1;

	pfd = (struct pollfd){ .fd = v->sock, .events = POLLIN };
	TEST_ASSERT(poll(&pfd, 1, 60000) == 1 &&
		    read(v->sock, &v->test_hva, sizeof(v->test_hva)) ==
		    sizeof(v->test_hva),
		    "the VMM did not get an async #PF queued");
}

static uint64_t uffd_read_fault(int uffd);
static int uffd_zeropage(int uffd, uint64_t addr);

/*
 * Kill the VMM and reap it.  With @resolve, keep answering its userfaults
 * meanwhile: a worker blocked on one would otherwise block the VMM's exit
 * in the flush at VM destruction.
 */
static void vmm_kill(struct vmm *v, bool resolve)
{
	int status = 0;
	pid_t ret;

	kill(v->pid, SIGKILL);
	while (!(ret = waitpid(v->pid, &status, resolve ? WNOHANG : 0))) {
		uint64_t addr = uffd_read_fault(v->uffd);

		if (addr)
			uffd_zeropage(v->uffd, addr);
		else
			usleep(1000);
	}
	TEST_ASSERT(ret == v->pid && WIFSIGNALED(status) &&
		    WTERMSIG(status) == SIGKILL,
		    "the VMM ended otherwise than by SIGKILL (status 0x%x)",
		    status);
	close(v->sock);
}

/*
 * Done with a VMM: populate its test pages (if its mm still exists) so no
 * worker can be left faulting on them, then drop the VM, which flushes
 * its workers, and only then the userfaultfd.  Releasing a userfaultfd
 * while a worker faults on it in a live mm makes the fault retry forever
 * and the release wait for it forever.
 */
static void vmm_release(struct vmm *v)
{
	int i;

	for (i = 0; i < VMM_PAGES; i++)
		uffd_zeropage(v->uffd, v->test_hva + i * PAGE_SIZE);
	if (v->vm_fd >= 0)
		close(v->vm_fd);
	close(v->uffd);
}

/* Read one userfault, if there is one; returns its address or 0. */
static uint64_t uffd_read_fault(int uffd)
{
	struct uffd_msg msg;

	if (read(uffd, &msg, sizeof(msg)) != sizeof(msg))
		return 0;
	TEST_ASSERT(msg.event == UFFD_EVENT_PAGEFAULT, "event %u", msg.event);
	return msg.arg.pagefault.address & ~(PAGE_SIZE - 1);
}

static int uffd_zeropage(int uffd, uint64_t addr)
{
	struct uffdio_zeropage z = {
		.range = { .start = addr, .len = PAGE_SIZE },
	};

	return ioctl(uffd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;
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

static int test_exit_race(int iterations)
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
		uint64_t addr, deadline;
		bool worker_done = false, gup = false;
		struct vmm v;
		char buf[4096];
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
	 * A KASAN kernel (make check-debug, which sets KBP_KASAN) holds freed
	 * memory in its quarantine, so MemAvailable says nothing there; its
	 * kmemleak scan judges leaks instead.
	 */
	if (getenv("KBP_KASAN"))
		pr_info("exit race: memory check left to kmemleak (KASAN quarantine)\n");
	else
		TEST_ASSERT(mem_before < mem_after + 64 * 1024,
			    "%lu kB of memory not freed after %d VMMs",
			    mem_before - mem_after, done);
	return 0;
}

static void reload_modules(const char *dir, const char *vendor, int *busy_retries)
{
	const char *names[2];
	char path[PATH_MAX];
	int i, fd, tries;

	/* Unload in dependency order, load in the reverse. */
	names[0] = vendor;
	names[1] = "kvm";
	for (i = 0; i < 2; i++) {
		char modname[32], *dash;

		/* File kvm-amd.ko, module kvm_amd. */
		snprintf(modname, sizeof(modname), "%s", names[i]);
		dash = strchr(modname, '-');
		if (dash)
			*dash = '_';
		for (tries = 0; syscall(__NR_delete_module, modname, O_NONBLOCK); tries++) {
			/* The dead VMM's files may still be on their way out. */
			TEST_ASSERT((errno == EAGAIN || errno == EBUSY ||
				     errno == EWOULDBLOCK) && tries < 1000,
				    "cannot unload %s: %s", modname, strerror(errno));
			(*busy_retries)++;
			usleep(10000);
		}
	}
	for (i = 1; i >= 0; i--) {
		snprintf(path, sizeof(path), "%s/%s.ko", dir, names[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		TEST_ASSERT(fd >= 0, "cannot open %s", path);
		TEST_ASSERT(!syscall(__NR_finit_module, fd, "", 0),
			    "cannot load %s: %s", path, strerror(errno));
		close(fd);
	}
}

static int test_unload(int cycles)
{
	const char *dir = getenv("KBP_MODULE_DIR");
	const char *vendor;
	int i, busy_retries = 0;

	/* Only a loadable module has an initstate (make check-debug's is built in). */
	__TEST_REQUIRE(!access("/sys/module/kvm/initstate", F_OK),
		       "kvm is built into this kernel, there is nothing to unload");
	__TEST_REQUIRE(dir, "set KBP_MODULE_DIR to the directory of the kvm modules to reload");
	if (!access("/sys/module/kvm_amd", F_OK))
		vendor = "kvm-amd";
	else if (!access("/sys/module/kvm_intel", F_OK))
		vendor = "kvm-intel";
	else
		__TEST_REQUIRE(0, "neither kvm_amd nor kvm_intel is loaded");
	setup_observer();

	for (i = 1; i <= cycles; i++) {
		struct vmm v;

		vmm_start(&v, false);
		vmm_kill(&v, true);
		vmm_release(&v);
		reload_modules(dir, vendor, &busy_retries);
		if (i % 10 == 0)
			pr_info("unload: %d/%d cycles\n", i, cycles);
	}
	pr_info("unload: %d cycles of kill VMM with async #PF queued, unload %s and kvm, reload (%d busy retries)\n",
		cycles, vendor, busy_retries);
	return 0;
}

int main(int argc, char *argv[])
{
	const char *mode = argc > 1 ? argv[1] : "basic";

	__TEST_REQUIRE(kvm_has_cap(KVM_CAP_ASYNC_PF_INT),
		       "KVM does not support interrupt-based async #PF");

	if (!strcmp(mode, "basic"))
		return test_basic(argc > 2 ? atoi(argv[2]) : 32,
				  argc > 3 ? atoi(argv[3]) : 20);
	if (!strcmp(mode, "exit-race"))
		return test_exit_race(argc > 2 ? atoi(argv[2]) : 200);
	if (!strcmp(mode, "unload"))
		return test_unload(argc > 2 ? atoi(argv[2]) : 50);

	fprintf(stderr, "usage: %s basic [pages [delay_ms]]\n"
		"       %s exit-race [iterations]\n"
		"       %s unload [cycles]\n", argv[0], argv[0], argv[0]);
	return 1;
}
