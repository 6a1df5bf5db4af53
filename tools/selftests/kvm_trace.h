/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * KVM's trace events as our selftests use them: where tracefs is (debugfs
 * is mounted by the test harness) and switching one event on or off.
 */
#ifndef SELFTEST_BACKPORT_KVM_TRACE_H
#define SELFTEST_BACKPORT_KVM_TRACE_H

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#define TRACE_DIR	"/sys/kernel/debug/tracing"

/*
 * Write @val ("1" or "0") to the enable file of the kvm event @event.
 * Returns 0, or -1 if the event is not there (no tracing in this kernel)
 * or the write failed.
 */
static inline int trace_set(const char *event, const char *val)
{
	char path[128];
	int fd, ret;

	snprintf(path, sizeof(path), TRACE_DIR "/events/kvm/%s/enable", event);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ret = write(fd, val, 1) == 1 ? 0 : -1;
	close(fd);
	return ret;
}

#endif
