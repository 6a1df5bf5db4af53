// SPDX-License-Identifier: GPL-2.0-only
/*
 * The reference VMM's guest workload, /init of its initramfs: a static
 * program, so the initramfs needs nothing else.
 *
 * One process fills a buffer (kbp.buf MiB) with a pattern derived from
 * each word's address and kbp.seed, and asks the VMM for a snapshot (an
 * I/O port write; the VMM saves and stops, and the restored VM goes on
 * from here).  Then kbp.verifiers threads check every word, which after a
 * lazy restore are user-mode faults on memory the VMM serves page by
 * page.  A second process counts in a tight loop and reports its rate
 * every 100 ms, on the console and to the VMM, which compares the rate
 * during the verification with the rate once it is done.  At the end the
 * guest reports its verdict to the VMM and powers off.
 *
 * The ports are those of tools/vmm/vmm.h.
 */

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define PORT_EXIT	0x5f0
#define PORT_SNAPSHOT	0x5f1
#define PORT_EVENT	0x5f2
#define PORT_RATE	0x5f4
#define EV_VERIFY_START	1
#define EV_VERIFY_DONE	2

#define PAGE		4096UL

static unsigned long buf_mib = 16, seed = 1, verifiers = 4;
static int port_fd = -1;
static uint64_t *buf;
static size_t words;

/*
 * A write to the VMM's ports through /dev/port: the kernel does the OUT,
 * byte by byte, from kernel mode.  (From user mode, after iopl(), QEMU's
 * software emulation refuses the OUT of a restored nested guest: it wants
 * the TSS type that the guest loaded, "available", where KVM reports and
 * restores "busy", as hardware keeps it.)
 */
static void port_out(unsigned int port, const void *val, size_t len)
{
	if (pwrite(port_fd, val, len, port) != (ssize_t)len)
		printf("kbp-guest: write to port %#x failed\n", port);
}

static void port_outb(unsigned int port, uint8_t val)
{
	port_out(port, &val, 1);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000ULL + ts.tv_nsec / 1000000;
}

/* The pattern: a mix of the word's virtual address and the seed. */
static uint64_t pattern(const uint64_t *p)
{
	uint64_t x = (uintptr_t)p ^ (seed * 0x9e3779b97f4a7c15ULL);

	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void param(const char *cmdline, const char *name, unsigned long *val)
{
	const char *p = strstr(cmdline, name);

	if (p)
		*val = strtoul(p + strlen(name), NULL, 0);
}

static void setup(void)
{
	char cmdline[1024] = "";
	int fd;

	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("proc", "/proc", "proc", 0, NULL);
	fd = open("/dev/console", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	fd = open("/proc/cmdline", O_RDONLY);
	if (fd >= 0) {
		if (read(fd, cmdline, sizeof(cmdline) - 1) < 0)
			cmdline[0] = 0;
		close(fd);
	}
	param(cmdline, "kbp.buf=", &buf_mib);
	param(cmdline, "kbp.seed=", &seed);
	param(cmdline, "kbp.verifiers=", &verifiers);
	if (!verifiers || verifiers > 64)
		verifiers = 4;
	port_fd = open("/dev/port", O_WRONLY);
	if (port_fd < 0) {
		printf("kbp-guest: no /dev/port: cannot talk to the VMM\n");
		reboot(RB_POWER_OFF);
	}
}

/* The second process: iterations per 100 ms, for ever. */
static void counter(void)
{
	uint64_t n = 0, last = now_ms(), t;
	uint32_t rate;
	uint64_t x = 0;
	unsigned int i;

	for (;;) {
		/* A loop the compiler cannot fold: x goes through a register. */
		for (i = 0; i < 4096; i++)
			asm volatile("inc %0" : "+r" (x));
		n += 4096;
		t = now_ms();
		if (t - last < 100)
			continue;
		n = n * 100 / (t - last);
		printf("count %llu\n", (unsigned long long)n);
		rate = n;
		port_out(PORT_RATE, &rate, 4);
		n = 0;
		last = t;
	}
}

struct slice {
	size_t from, to, bad;
	uint64_t first_bad;
	int cpu;
};

static void *verify(void *arg)
{
	struct slice *s = arg;
	cpu_set_t cpu;
	size_t i;

	/*
	 * Verifier i on CPU i mod the number of CPUs: each vCPU of a guest
	 * with several takes faults of its own, whatever the scheduler
	 * would have done.
	 */
	CPU_ZERO(&cpu);
	CPU_SET(s->cpu, &cpu);
	sched_setaffinity(0, sizeof(cpu), &cpu);
	for (i = s->from; i < s->to; i++) {
		if (buf[i] != pattern(&buf[i])) {
			if (!s->bad++)
				s->first_bad = i * 8;
		}
	}
	return NULL;
}

int main(void)
{
	struct slice sl[64];
	long ncpus;
	pthread_t th[64];
	uint64_t t, bad = 0;
	unsigned long i;
	pid_t pid;

	setup();
	printf("kbp-guest: buffer %lu MiB, seed %lu, %lu verifiers\n",
	       buf_mib, seed, verifiers);
	pid = fork();
	if (pid == 0)
		counter();

	words = buf_mib * (1 << 20) / 8;
	buf = mmap(NULL, words * 8, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		printf("kbp-guest: cannot map the buffer\n");
		port_outb(PORT_EXIT, 3);
		return 1;
	}
	t = now_ms();
	for (i = 0; i < words; i++)
		buf[i] = pattern(&buf[i]);
	printf("kbp-guest: filled %lu MiB in %llu ms\n", buf_mib,
	       (unsigned long long)(now_ms() - t));

	/*
	 * The snapshot; a restored guest goes on from here.  The line above
	 * is out of the UART first: the VMM judges the boot by it, and with
	 * two vCPUs the other one may still be sending it when this one
	 * asks.
	 */
	tcdrain(STDOUT_FILENO);
	port_outb(PORT_SNAPSHOT, 1);

	printf("kbp-guest: verifying\n");
	ncpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (ncpus < 1)
		ncpus = 1;
	t = now_ms();
	port_outb(PORT_EVENT, EV_VERIFY_START);
	for (i = 0; i < verifiers; i++) {
		sl[i].from = words / verifiers * i;
		sl[i].to = i == verifiers - 1 ? words : words / verifiers * (i + 1);
		sl[i].bad = 0;
		sl[i].cpu = i % ncpus;
		pthread_create(&th[i], NULL, verify, &sl[i]);
	}
	for (i = 0; i < verifiers; i++) {
		pthread_join(th[i], NULL);
		if (sl[i].bad && !bad)
			printf("kbp-guest: first bad word at buffer offset %#llx\n",
			       (unsigned long long)sl[i].first_bad);
		bad += sl[i].bad;
	}
	port_outb(PORT_EVENT, EV_VERIFY_DONE);
	printf("kbp-guest: verified %lu MiB in %llu ms: %s (%llu bad words)\n",
	       buf_mib, (unsigned long long)(now_ms() - t),
	       bad ? "BAD" : "ok", (unsigned long long)bad);

	/* The counter alone for a second: its undisturbed rate. */
	sleep(1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	sync();
	port_outb(PORT_EXIT, bad ? 1 : 0);
	reboot(RB_POWER_OFF);
	return 0;
}
