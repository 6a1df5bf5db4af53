/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Passing file descriptors between our selftests' processes over a Unix
 * socket (SCM_RIGHTS): a VMM child hands its VM or vCPU fd to the test.
 */
#ifndef SELFTEST_BACKPORT_FD_PASSING_H
#define SELFTEST_BACKPORT_FD_PASSING_H

#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "test_util.h"

/* Room for up to two file descriptors, aligned for struct cmsghdr. */
union fd_cmsg {
	char buf[CMSG_SPACE(2 * sizeof(int))];
	struct cmsghdr align;
};

static inline void send_fds(int sock, int *fds, int nr)
{
	union fd_cmsg u = { 0 };
	struct iovec iov = { .iov_base = "F", .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = CMSG_SPACE(nr * sizeof(int)),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(nr * sizeof(int));
	memcpy(CMSG_DATA(c), fds, nr * sizeof(int));
	TEST_ASSERT(sendmsg(sock, &msg, 0) == 1, "sendmsg failed");
}

/*
 * Receive @nr file descriptors, recvmsg() @flags (MSG_DONTWAIT: if they
 * are there); false, and -1 in @fds, if none came: the sender closed its
 * end, or (with MSG_DONTWAIT) has not sent yet.
 */
static inline bool try_recv_fds(int sock, int *fds, int nr, int flags)
{
	union fd_cmsg u;
	char data;
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = CMSG_SPACE(nr * sizeof(int)),
	};
	struct cmsghdr *c;
	int i;

	for (i = 0; i < nr; i++)
		fds[i] = -1;
	if (recvmsg(sock, &msg, flags) != 1)
		return false;
	c = CMSG_FIRSTHDR(&msg);
	TEST_ASSERT(!(msg.msg_flags & MSG_CTRUNC) && c &&
		    c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(nr * sizeof(int)),
		    "no file descriptors from the VMM");
	memcpy(fds, CMSG_DATA(c), nr * sizeof(int));
	return true;
}

static inline void recv_fds(int sock, int *fds, int nr)
{
	TEST_ASSERT(try_recv_fds(sock, fds, nr, 0), "recvmsg failed");
}

#endif
