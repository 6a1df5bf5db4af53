/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A VMM that gets killed with async #PF work queued, for
 * async_pf_exit_race_test and async_pf_unload_test.
 *
 * The VMM is a child process; the test process, the observer, holds the
 * VMM's userfaultfd (and VM fd, if asked), so it outlives the VMM and sees
 * every fault the async #PF worker takes on the VMM's address space.
 *
 * To have work queued but not yet started when the VMM dies, the VMM's
 * vCPU runs at SCHED_FIFO on CPU 1: async #PF work is queued on the
 * faulting CPU's system workqueue pool, whose kworker cannot run on CPU 1
 * until the VMM is gone.  The VMM is killed well within the RT bandwidth
 * limit; an attempt where the worker ran anyway is detected (its
 * userfault arrives before the kill), and the test tries again.
 */
#ifndef SELFTEST_BACKPORT_ASYNC_PF_VMM_H
#define SELFTEST_BACKPORT_ASYNC_PF_VMM_H

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "async_pf_lib.h"
#include "fd_passing.h"

#define VMM_PAGES	4
#define VMM_CPU		1
#define OBSERVER_CPU	0

/*
 * The observer on the other CPU than the VMM, and a check that the VMM
 * will be allowed SCHED_FIFO: skip the test where either cannot be.
 */
static inline void setup_observer(void)
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
static inline void vmm_child(int sock, bool share_vm)
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
	vm = apf_vm_create(&vcpu, fds[0], VMM_PAGES, true, &hva);
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

/* The observer's view of one VMM child. */
struct vmm {
	pid_t pid;
	int sock;
	int uffd;
	int vm_fd;
	uint64_t test_hva;	/* in the VMM's address space */
};

/* Start a VMM child and wait until it has async #PF work queued. */
static inline void vmm_start(struct vmm *v, bool share_vm)
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

/* Read one userfault, if there is one; returns its address or 0. */
static inline uint64_t uffd_read_fault(int uffd)
{
	struct uffd_msg msg;

	if (read(uffd, &msg, sizeof(msg)) != sizeof(msg))
		return 0;
	TEST_ASSERT(msg.event == UFFD_EVENT_PAGEFAULT, "event %u", msg.event);
	return msg.arg.pagefault.address & ~(PAGE_SIZE - 1);
}

/* Populate the page at @addr with zeroes; 0 or -errno. */
static inline int uffd_zeropage(int uffd, uint64_t addr)
{
	struct uffdio_zeropage z = {
		.range = { .start = addr, .len = PAGE_SIZE },
	};

	return ioctl(uffd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;
}

/*
 * Kill the VMM and reap it.  With @resolve, keep answering its userfaults
 * meanwhile: a worker blocked on one would otherwise block the VMM's exit
 * in the flush at VM destruction.
 */
static inline void vmm_kill(struct vmm *v, bool resolve)
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
static inline void vmm_release(struct vmm *v)
{
	int i;

	for (i = 0; i < VMM_PAGES; i++)
		uffd_zeropage(v->uffd, v->test_hva + i * PAGE_SIZE);
	if (v->vm_fd >= 0)
		close(v->vm_fd);
	close(v->uffd);
}

#endif
