// SPDX-License-Identifier: GPL-2.0-only
/*
 * kbp-vmm observe: hold a restoring VMM's userfaultfd across its death and
 * count what the kernel's async #PF workers then do to the dead VMM's
 * address space, as async_pf_exit_race_test's observer does for its small
 * VMM (tools/vmm/vmm-test.sh, "kill uffd"; Documentation/vmm.rst).
 *
 * A VMM started with "restore --share-uffd PATH" sends its userfaultfd and
 * the range of guest RAM over the socket at PATH once the fd is registered.
 * While the VMM lives, the observer only holds the fd: reading it would
 * take faults from the VMM's own uffd thread.  SIGUSR1 says that the VMM
 * was killed (or the VMM exits).  From then on the observer answers every
 * fault with UFFDIO_ZEROPAGE and wakes the whole range every 100 ms: a
 * worker whose fault the dead VMM read and never answered would otherwise
 * wait for good, and with it the VM, which each worker holds a reference
 * to.  It ends once the VMM has exited and no fault came for a second.
 *
 * Counted, as in async_pf_exit_race_test: faults on the dead VMM's memory
 * (a worker did a gup after the kill), and whether the VMM's address space
 * outlived the VMM and its workers (UFFDIO_ZEROPAGE answers ESRCH once
 * mm_users is zero), which fails the run, as does a VMM that does not exit
 * within 30 s.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/userfaultfd.h>

#include "vmm.h"

/* What the VMM sends with its userfaultfd. */
struct uffd_share {
	uint64_t start, len;	/* guest RAM in the VMM's address space */
};

static void unix_addr(struct sockaddr_un *sa, const char *path)
{
	size_t n = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n >= sizeof(sa->sun_path))
		die(EXIT_USAGE, "socket path %s is too long; use a shorter one",
		    path);
	memcpy(sa->sun_path, path, n);	/* NUL-terminated by the memset */
}

void share_uffd(const char *path, int uffd, uint64_t start, uint64_t len)
{
	struct uffd_share msg = { .start = start, .len = len };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = &msg, .iov_len = sizeof(msg) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf, .msg_controllen = sizeof(cbuf),
	};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	struct sockaddr_un sa;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	unix_addr(&sa, path);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die(EXIT_USAGE,
		    "--share-uffd: cannot connect to %s: %s; start kbp-vmm observe --socket %s first",
		    path, strerror(errno), path);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &uffd, sizeof(int));
	if (sendmsg(s, &mh, 0) != sizeof(msg))
		die(EXIT_USAGE, "--share-uffd: cannot send the fd to %s: %s",
		    path, strerror(errno));
	close(s);
}

/* Take the VMM's fd; its pid comes from the socket's peer credentials. */
static int receive(const char *path, struct uffd_share *msg, pid_t *pid)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = msg, .iov_len = sizeof(*msg) };
	struct msghdr mh = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = cbuf.buf, .msg_controllen = sizeof(cbuf.buf),
	};
	struct sockaddr_un sa;
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	struct cmsghdr *cm;
	int l, c, fd;
	ssize_t n;

	unix_addr(&sa, path);
	unlink(path);
	l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(l, 1) < 0)
		die(EXIT_USAGE, "observe: cannot listen on %s: %s", path,
		    strerror(errno));
	printf("kbp-vmm: observe: listening on %s\n", path);
	fflush(stdout);
	c = accept(l, NULL, NULL);
	if (c < 0 ||
	    getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
		die(EXIT_USAGE, "observe: no VMM on %s: %s", path,
		    strerror(errno));
	n = recvmsg(c, &mh, MSG_CMSG_CLOEXEC);
	cm = CMSG_FIRSTHDR(&mh);
	if (n != sizeof(*msg) || (mh.msg_flags & MSG_CTRUNC) || !cm ||
	    cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof(int)))
		die(EXIT_USAGE,
		    "observe: what came on %s is not a kbp-vmm --share-uffd message",
		    path);
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	if (!msg->len || msg->len % PAGE_SIZE || msg->start % PAGE_SIZE)
		die(EXIT_USAGE, "observe: the VMM sent a bad range %#llx+%#llx",
		    (unsigned long long)msg->start,
		    (unsigned long long)msg->len);
	close(c);
	close(l);
	unlink(path);
	*pid = cred.pid;
	return fd;
}

/* UFFDIO_ZEROPAGE of one page: 0, or the errno (ESRCH: the mm is gone). */
static int zeropage(int uffd, uint64_t addr)
{
	struct uffdio_zeropage z = {
		.range = { .start = addr & ~(PAGE_SIZE - 1), .len = PAGE_SIZE },
	};

	if (!ioctl(uffd, UFFDIO_ZEROPAGE, &z))
		return 0;
	return errno == EEXIST ? 0 : errno;
}

/* Read and answer every fault queued on @uffd; how many there were. */
static unsigned int answer(int uffd, unsigned int *dead)
{
	struct uffd_msg m;
	unsigned int n = 0;

	while (read(uffd, &m, sizeof(m)) == sizeof(m)) {
		if (m.event != UFFD_EVENT_PAGEFAULT)
			continue;
		n++;
		if (zeropage(uffd, m.arg.pagefault.address) == ESRCH)
			(*dead)++;
	}
	return n;
}

int run_observer(const char *path)
{
	unsigned int after_kill = 0, dead = 0;
	uint64_t now, deadline, quiet_until;
	struct uffd_share share;
	struct uffdio_range all;
	struct pollfd w[2];
	bool exited = false, mm_gone = false;
	int uffd, sfd, pfd, i;
	sigset_t usr1;
	pid_t pid;

	/* Blocked before "listening": the test may signal right after. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	sfd = signalfd(-1, &usr1, SFD_CLOEXEC);
	if (sfd < 0)
		die(EXIT_USAGE, "observe: signalfd: %s", strerror(errno));
	uffd = receive(path, &share, &pid);
	pfd = syscall(SYS_pidfd_open, pid, 0);
	if (pfd < 0)
		die(EXIT_USAGE, "observe: pidfd_open(%d): %s", pid,
		    strerror(errno));
	printf("kbp-vmm: observe: holding the userfaultfd of pid %d\n", pid);
	fflush(stdout);

	/*
	 * The VMM lives: hold the fd, read nothing, until SIGUSR1 says it
	 * was killed or it exits on its own.
	 */
	w[0].fd = sfd;
	w[0].events = POLLIN;
	w[1].fd = pfd;
	w[1].events = POLLIN;
	if (poll(w, 2, -1) < 1)
		die(EXIT_USAGE, "observe: poll: %s", strerror(errno));

	/*
	 * The VM outlives the VMM's exit while a worker holds it (each
	 * holds a reference to the VM), so the end is the VMM gone and no
	 * fault for a second: every worker released has finished.  Once
	 * the VMM is gone its pidfd stays readable, so it leaves the poll.
	 */
	all.start = share.start;
	all.len = share.len;
	now = now_ns();
	deadline = now + 30000000000ULL;
	quiet_until = 0;
	while (now < deadline && !(exited && now >= quiet_until)) {
		struct pollfd p[2] = {
			{ .fd = uffd, .events = POLLIN },
			{ .fd = exited ? -1 : pfd, .events = POLLIN },
		};
		unsigned int n;

		poll(p, 2, 100);
		n = answer(uffd, &dead);
		after_kill += n;
		ioctl(uffd, UFFDIO_WAKE, &all);
		now = now_ns();
		if (n || !quiet_until)
			quiet_until = now + 1000000000ULL;
		if (p[1].revents & POLLIN)
			exited = true;
	}
	if (!exited) {
		printf("kbp-vmm: observe: the VMM (pid %d) has not exited 30 s after the kill\n",
		       pid);
		return EXIT_GUEST_FAILED;
	}
	/* The last worker's mmput() may come a moment after its fault. */
	for (i = 0; i < 20 && !mm_gone; i++) {
		mm_gone = zeropage(uffd, share.start + share.len - PAGE_SIZE) ==
			  ESRCH;
		if (!mm_gone)
			usleep(100000);
	}
	printf("kbp-vmm: observe: result faults_after_kill=%u answered_on_dead_mm=%u",
	       after_kill, dead);
	printf(" mm_alive_at_end=%d\n", !mm_gone);
	return mm_gone ? 0 : EXIT_GUEST_FAILED;
}
