/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * KVM's trace events as our selftests use them: where tracefs is (debugfs
 * is mounted by the test harness), switching one event on or off, and
 * reading the trace buffer.
 */
#ifndef SELFTEST_BACKPORT_KVM_TRACE_H
#define SELFTEST_BACKPORT_KVM_TRACE_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "test_util.h"

#define TRACE_DIR	"/sys/kernel/debug/tracing"

/*
 * Write @val to the tracefs file @file (relative to TRACE_DIR).  Returns
 * 0, or -1 if the file is not there (no tracing in this kernel) or the
 * write failed, e.g. a filter the kernel cannot parse.
 */
static inline int trace_write(const char *file, const char *val)
{
	char path[256];
	int fd, ret;

	snprintf(path, sizeof(path), TRACE_DIR "/%s", file);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ret = write(fd, val, strlen(val)) == (ssize_t)strlen(val) ? 0 : -1;
	close(fd);
	return ret;
}

/*
 * Write @val ("1" or "0") to the enable file of the kvm event @event.
 * Returns 0, or -1 if the event is not there (no tracing in this kernel)
 * or the write failed.
 */
static inline int trace_set(const char *event, const char *val)
{
	char file[128];

	snprintf(file, sizeof(file), "events/kvm/%s/enable", event);
	return trace_write(file, val);
}

/*
 * Events lost to a full buffer of the trace instance @dir (TRACE_DIR, or
 * a directory of TRACE_DIR/instances), over all CPUs: the "overrun" and
 * "dropped events" lines of per_cpu/cpu<N>/stats.  A count made from the
 * buffer is exact only if this is 0.
 */
static inline uint64_t trace_lost(const char *dir)
{
	char path[256], line[128];
	uint64_t n = 0, v;
	int cpu;
	FILE *f;

	for (cpu = 0; ; cpu++) {
		snprintf(path, sizeof(path), "%s/per_cpu/cpu%d/stats", dir, cpu);
		f = fopen(path, "r");
		if (!f)
			break;
		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, "overrun: %lu", &v) == 1 ||
			    sscanf(line, "dropped events: %lu", &v) == 1)
				n += v;
		}
		fclose(f);
	}
	return n;
}

/*
 * Empty the trace buffer, so that what a test reads from it afterwards is
 * its own.  Returns 0, or -1 if there is no trace buffer.
 */
static inline int trace_clear(void)
{
	int fd = open(TRACE_DIR "/trace", O_WRONLY | O_TRUNC);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

/*
 * Count the event lines of the trace buffer @trace that contain both @w1
 * and @w2 ("" is in every line), and print them if @print.  A buffer that
 * cannot be read fails the test, except when printing: that is done to
 * explain a failure, which must not turn into another one.
 */
static inline uint64_t trace_lines_of(const char *trace, const char *w1,
				      const char *w2, bool print)
{
	FILE *f = fopen(trace, "r");
	char line[512];
	uint64_t n = 0;

	if (!f && print)
		return 0;
	TEST_ASSERT(f, "cannot read %s", trace);
	while (fgets(line, sizeof(line), f)) {
		/* The buffer's header, not an event. */
		if (line[0] == '#')
			continue;
		if (!strstr(line, w1) || !strstr(line, w2))
			continue;
		n++;
		if (print)
			pr_info("trace: %s", line);
	}
	fclose(f);
	return n;
}

/* trace_lines_of() on the top-level trace buffer. */
static inline uint64_t trace_lines(const char *w1, const char *w2, bool print)
{
	return trace_lines_of(TRACE_DIR "/trace", w1, w2, print);
}

static inline uint64_t trace_count(const char *w1, const char *w2)
{
	return trace_lines(w1, w2, false);
}

#endif
