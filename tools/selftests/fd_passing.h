/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Passing file descriptors between our selftests' processes over a Unix
 * socket (SCM_RIGHTS): a VMM child hands its VM or vCPU fd to the test.
 */
#ifndef SELFTEST_BACKPORT_FD_PASSING_H
#define SELFTEST_BACKPORT_FD_PASSING_H

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

static inline void recv_fds(int sock, int *fds, int nr)
{
	union fd_cmsg u;
	char data;
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = CMSG_SPACE(nr * sizeof(int)),
	};
	struct cmsghdr *c;

	TEST_ASSERT(recvmsg(sock, &msg, 0) == 1 && !(msg.msg_flags & MSG_CTRUNC),
		    "recvmsg failed");
	c = CMSG_FIRSTHDR(&msg);
	TEST_ASSERT(c && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len == CMSG_LEN(nr * sizeof(int)),
		    "no file descriptors from the VMM");
	memcpy(fds, CMSG_DATA(c), nr * sizeof(int));
}

#endif
