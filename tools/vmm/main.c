// SPDX-License-Identifier: GPL-2.0-only
/*
 * kbp-vmm: boot a Linux guest, snapshot it when it asks, restore it with
 * its memory served eagerly or lazily (Documentation/vmm.rst).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "vmm.h"

static const char *const mode_names[] = {
	[MODE_BOOT] = "boot",
	[MODE_EAGER] = "eager",
	[MODE_UFFD] = "uffd",
	[MODE_USERFAULT_SYNC] = "userfault-sync",
	[MODE_USERFAULT_ASYNC] = "userfault-async",
	[MODE_EXITLESS] = "exitless",
};

static const char usage[] =
"usage: kbp-vmm boot --kernel VMLINUZ --initrd CPIO [options]\n"
"       kbp-vmm restore --snapshot PREFIX --mode MODE [options]\n"
"       kbp-vmm observe --socket PATH\n"
"\n"
"boot: start the kernel with the initramfs (tools/vmm/guest: the workload\n"
"fills a buffer, asks for a snapshot, verifies the buffer, powers off).\n"
"restore: a new VM from the snapshot PREFIX.mem and PREFIX.state, with\n"
"guest memory served by MODE:\n"
"  eager            read the whole image before the guest runs\n"
"  uffd             userfaultfd (MISSING) on guest RAM, fault threads copy\n"
"                   pages from the image; runs on any KVM\n"
"  userfault-sync   KVM_MEM_USERFAULT, every page marked; the vCPU thread\n"
"                   copies the page at each exit\n"
"  userfault-async  the same with KVM_CAP_ASYNC_PF_USER: faults the guest\n"
"                   can take asynchronously go to the fault threads, which\n"
"                   complete them with KVM_ASYNC_PF_USER_READY\n"
"  exitless         the same with KVM_ASYNC_PF_USER_RING: such faults do\n"
"                   not exit, they arrive on the ring\n"
"\n"
"options:\n"
"  --kernel FILE       bzImage to boot (boot)\n"
"  --initrd FILE       initramfs (boot)\n"
"  --append ARGS       more kernel command line (boot)\n"
"  --mem MIB           guest RAM in MiB (boot; default 256)\n"
"  --vcpus N           1 or 2 vCPUs (boot; default 1)\n"
"  --buf MIB           the workload's buffer in MiB (boot; default 16)\n"
"  --seed N            the workload's pattern seed (boot; default 1)\n"
"  --verifiers N       guest threads verifying the buffer (boot; default 4)\n"
"  --snapshot PREFIX   boot: save the snapshot there when the guest asks\n"
"                      (without it the guest runs on and verifies);\n"
"                      restore: the snapshot to restore\n"
"  --mode MODE         restore: how guest memory is served (above)\n"
"  --fetch-us N        restore: each page fetch takes N microseconds more,\n"
"                      as if from remote memory (default 0)\n"
"  --fault-threads N   restore: threads serving faults (default 4)\n"
"  --resnapshot PREFIX restore: save a snapshot of the restored VM to\n"
"                      PREFIX once --after-async async faults were taken\n"
"                      (with tokens outstanding), then stop\n"
"  --after-async N     see --resnapshot (default 8)\n"
"  --record-ws FILE    restore, lazy modes: save the guest kernel's working\n"
"                      set to FILE: the pages a VMM thread stalled on\n"
"                      (synchronous faults at guest CPL 0, userfaultfd\n"
"                      faults of the main and vCPU threads), in the order\n"
"                      it did; userfault-sync sees the most of it\n"
"  --prefetch-ws FILE  restore, lazy modes: fetch the pages FILE lists\n"
"                      (recorded on this snapshot) ahead of the guest, in\n"
"                      --fault-threads more threads\n"
"  --share-uffd PATH   restore, lazy modes: send the userfaultfd to the\n"
"                      kbp-vmm observe listening at PATH\n"
"  --socket PATH       observe: where to listen; it holds the fd it gets\n"
"                      until SIGUSR1 (the VMM was killed) or the VMM's\n"
"                      exit, then answers faults until the VMM is gone and\n"
"                      quiet for 1 s, prints a result line and exits 1 if\n"
"                      the VMM's address space outlived it\n"
"  --timeout SEC       end the run if the guest has not finished after\n"
"                      SEC seconds (checked every 10 s), with what is\n"
"                      known of where it stands (default 0: no limit)\n"
"  --quiet             copy only the workload's own lines and kernel\n"
"                      problem reports of the guest's console to stdout\n"
"  --help              this text\n"
"\n"
"The last line is \"kbp-vmm: result ...\" with the run's figures.\n"
"Exit status: 0 the guest verified its data and powered off; 1 it did\n"
"not (bad data, panic, reset, or a kernel problem on its console); 2\n"
"misuse; 3 the loaded KVM cannot do what was asked; 4 a snapshot was\n"
"saved and the run stopped there.\n";

static uint64_t t0;

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

void die(int status, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("kbp-vmm: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(status);
}

void note(const char *fmt, ...)
{
	va_list ap;

	printf("kbp-vmm: [%6.3f] ", (now_ns() - t0) / 1e9);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void kick(int sig)
{
}

/*
 * Make every vCPU thread leave KVM_RUN and its loop.  immediate_exit
 * covers a thread about to enter KVM_RUN; the signal one inside it.
 */
void vm_stop(struct vm *vm, int why)
{
	int none = STOP_NONE, i;

	/* The first reason wins; callers may hold vm->lock. */
	__atomic_compare_exchange_n(&vm->stop, &none, why, false,
				    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	for (i = 0; i < vm->nr_vcpus; i++) {
		__atomic_store_n(&vm->vcpus[i].run->immediate_exit, 1,
				 __ATOMIC_SEQ_CST);
		pthread_t t = __atomic_load_n(&vm->vcpus[i].thread,
					      __ATOMIC_ACQUIRE);

		if (t)
			pthread_kill(t, SIGUSR1);
	}
}

static void guest_event(struct vm *vm, uint16_t port, uint32_t val)
{
	static bool verifying, verified;
	struct stats *st = &vm->st;

	switch (port) {
	case PORT_EXIT:
		vm->guest_status = val;
		note("the guest is done: %s", val ? "its data did NOT verify" :
		     "verified");
		vm_stop(vm, STOP_EXIT);
		break;
	case PORT_SNAPSHOT:
		if (vm->snapshot_out) {
			note("the guest asks for a snapshot");
			vm_stop(vm, STOP_SNAPSHOT);
		}
		break;
	case PORT_EVENT:
		if (val == EV_VERIFY_START) {
			verifying = true;
		} else if (val == EV_VERIFY_DONE) {
			verifying = false;
			verified = true;
			st->t_verified_ns = now_ns();
		}
		break;
	case PORT_RATE:
		st->rates++;
		if (!st->t_first_rate_ns)
			st->t_first_rate_ns = now_ns();
		if (verifying) {
			st->rate_during_sum += val;
			st->rate_during_n++;
		} else if (verified || vm->mode == MODE_BOOT) {
			/* The counter alone: after the verification. */
			st->rate_before_sum += val;
			st->rate_before_n++;
		}
		break;
	}
}

/* Ports nothing here emulates read as all ones; writes are dropped. */
static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool in = run->io.direction == KVM_EXIT_IO_IN;
	uint32_t i, val;

	for (i = 0; i < run->io.count; i++, data += run->io.size) {
		pthread_mutex_lock(&vm->lock);
		if (run->io.size == 1 && serial_io(vm, run->io.port, in, data)) {
			pthread_mutex_unlock(&vm->lock);
			continue;
		}
		if (!in && run->io.port >= PORT_RATE &&
		    run->io.port < PORT_RATE + 4) {
			/* The rate comes a byte at a time (/dev/port). */
			val = 0;
			memcpy(&val, data, run->io.size > 4 ? 4 : run->io.size);
			vm->rate_bytes[run->io.port - PORT_RATE] = val;
			if (run->io.port == PORT_RATE + 3) {
				memcpy(&val, vm->rate_bytes, 4);
				guest_event(vm, PORT_RATE, val);
			}
		} else if (!in && (run->io.port & ~0xf) == PORT_EXIT) {
			val = 0;
			memcpy(&val, data, run->io.size > 4 ? 4 : run->io.size);
			guest_event(vm, run->io.port, val);
		} else if (!in && run->io.port == 0x64 && *data == 0xfe) {
			/* The keyboard controller's reset: reboot=k, panic. */
			vm->why = "the guest reset itself (panic or reboot)";
			vm_stop(vm, STOP_FAILED);
		} else if (in) {
			memset(data, 0xff, run->io.size);
			if (run->io.port == 0x71)
				memset(data, 0, run->io.size);	/* CMOS */
		}
		pthread_mutex_unlock(&vm->lock);
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct kvm_run *run = v->run;
	struct vm *vm = v->vm;
	int r, e;

	/* Before any fault of this thread can reach the uffd thread. */
	__atomic_store_n(&v->tid, gettid(), __ATOMIC_RELAXED);
	while (!__atomic_load_n(&vm->stop, __ATOMIC_SEQ_CST)) {
		r = ioctl(v->fd, KVM_RUN, 0);
		e = errno;
		v->exits++;
		if (r < 0 && (e == EINTR || e == EAGAIN))
			continue;
		if (run->exit_reason == KVM_EXIT_MEMORY_FAULT && vm->lazy &&
		    lazy_exit(v, r < 0 ? e : 0))
			continue;
		if (r < 0)
			die(EXIT_GUEST_FAILED, "KVM_RUN of vCPU %d failed: %s (exit reason %u)",
			    v->id, strerror(e), run->exit_reason);
		switch (run->exit_reason) {
		case KVM_EXIT_IO:
			handle_io(v);
			break;
		case KVM_EXIT_MMIO:
			if (!run->mmio.is_write)
				memset(run->mmio.data, 0xff, run->mmio.len);
			break;
		case KVM_EXIT_SHUTDOWN:
			vm->why = "the guest triple-faulted (shutdown exit)";
			vm_stop(vm, STOP_FAILED);
			break;
		case KVM_EXIT_SYSTEM_EVENT:
			vm->why = "the guest asked for a system event (reset)";
			vm_stop(vm, STOP_FAILED);
			break;
		case KVM_EXIT_HLT:
			break;
		default:
			die(EXIT_GUEST_FAILED,
			    "vCPU %d: unexpected exit reason %u (internal error suberror %u)",
			    v->id, run->exit_reason, run->internal.suberror);
		}
	}
	/*
	 * Finish the I/O of the last exit (KVM completes it at the next
	 * KVM_RUN), so that the state a snapshot reads is consistent:
	 * immediate_exit is set, so this returns at once.
	 */
	run->immediate_exit = 1;
	ioctl(v->fd, KVM_RUN, 0);
	__atomic_sub_fetch(&vm->running, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void print_result(struct vm *vm);

#define CR4_LA57	0x1000ULL	/* CR4 bit 12 */

/* The word at guest physical @gpa, if it is RAM the guest has (served). */
static const uint64_t *gpa_word(struct vm *vm, uint64_t gpa)
{
	if (gpa + 8 > vm->mem_size ||
	    (vm->lazy && !lazy_present(vm, gpa / PAGE_SIZE)))
		return NULL;
	return (const uint64_t *)(vm->mem + gpa);
}

/*
 * A guest virtual address through the guest's page tables: 5 levels with
 * CR4.LA57, which a Linux guest turns on wherever CPUID offers it (QEMU's
 * "-cpu max" does, and KVM passes it on).
 */
static const uint64_t *guest_va(struct vm *vm, struct kvm_sregs *sregs,
				uint64_t va)
{
	uint64_t table = sregs->cr3 & 0x000ffffffffff000ULL, in_page;
	int top = sregs->cr4 & CR4_LA57 ? 5 : 4;
	const uint64_t *e;
	int level, shift;

	for (level = top; level >= 1; level--) {
		shift = 12 + 9 * (level - 1);
		e = gpa_word(vm, table + ((va >> shift) & 511) * 8);
		if (!e || !(*e & 1))
			return NULL;
		/* A 1 GiB or 2 MiB page. */
		if ((level == 2 || level == 3) && (*e & 0x80)) {
			in_page = (1ULL << shift) - 1;
			return gpa_word(vm, (*e & 0x000ffffffffff000ULL & ~in_page) +
					    (va & in_page));
		}
		table = *e & 0x000ffffffffff000ULL;
	}
	return gpa_word(vm, table + (va & 0xfff));
}

/* The words on top of a stuck guest's stack: the calls that led there. */
static void dump_stack_words(struct vm *vm, struct kvm_regs *regs,
			     struct kvm_sregs *sregs)
{
	const uint64_t *w;
	int i, n = 0;

	printf("kbp-vmm: kernel text addresses on the guest's stack:");
	for (i = 0; i < 512 && n < 24; i++) {
		w = guest_va(vm, sregs, regs->rsp + i * 8);
		if (!w)
			break;
		if (*w >= 0xffffffff80000000ULL && *w < 0xffffffffc0000000ULL) {
			printf(" %#llx", (unsigned long long)*w);
			n++;
		}
	}
	printf("\n");
}

/*
 * A run that timed out: where each vCPU stands, for the report.  The
 * vCPU threads were told to stop; one that does not leave KVM_RUN within
 * 5 s is waiting in the kernel (on a page, most likely).
 */
static void dump_stuck(struct vm *vm)
{
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct serial *s = &vm->serial;
	int i;

	for (i = 0; i < 50 && __atomic_load_n(&vm->running, __ATOMIC_ACQUIRE); i++)
		usleep(100000);
	if (__atomic_load_n(&vm->running, __ATOMIC_ACQUIRE)) {
		note("%d vCPU thread(s) still in KVM_RUN 5 s after the kick",
		     vm->running);
		return;
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 ||
		    ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0 ||
		    ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0 ||
		    ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0)
			continue;
		note("vCPU %d: rip %#llx rflags %#llx cpl %d cr3 %#llx mp_state %u",
		     i, regs.rip, regs.rflags, sregs.cs.dpl, sregs.cr3,
		     mp.mp_state);
		dump_stack_words(vm, &regs, &sregs);
		note("vCPU %d: LVTT %#x TMICT %#x TMCCT %#x, %llu exits", i,
		     *(uint32_t *)&lapic.regs[0x320],
		     *(uint32_t *)&lapic.regs[0x380],
		     *(uint32_t *)&lapic.regs[0x390],
		     (unsigned long long)v->exits);
	}
	note("serial: IER %#x, THRE pending %d, IRQ 4 level %d; last lines:",
	     s->ier, s->thr_irq, s->irq_level);
	for (i = vm->nr_last > 8 ? vm->nr_last - 8 : 0; i < (int)vm->nr_last; i++)
		printf("| %s\n", vm->last[i % 8]);
	if (s->len)
		printf("| %.*s\n", s->len, s->line);
}

/* Synchronous userfault exits of all vCPUs, by the guest's mode. */
static void sync_exits(struct vm *vm, uint64_t *kernel, uint64_t *user)
{
	int i;

	*kernel = 0;
	*user = 0;
	for (i = 0; i < vm->nr_vcpus; i++) {
		*kernel += vm->vcpus[i].sync_kernel;
		*user += vm->vcpus[i].sync_user;
	}
}

/*
 * Run the vCPUs until they stop.  The main thread says every 10 s how
 * far the run is, and ends a run that exceeds @timeout seconds (0: no
 * limit) with what it knows of where it stands.
 */
static void run_vcpus(struct vm *vm, long timeout)
{
	struct sigaction sa = { .sa_handler = kick };
	uint64_t start = now_ns(), rates = 0, sk, su;
	long secs = 0;
	int i;

	sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART: KVM_RUN returns */
	vm->running = vm->nr_vcpus;
	for (i = 0; i < vm->nr_vcpus; i++) {
		vm->vcpus[i].run->immediate_exit = 0;
		if (pthread_create(&vm->vcpus[i].thread, NULL, vcpu_thread,
				   &vm->vcpus[i]))
			die(EXIT_USAGE, "cannot create a vCPU thread");
	}
	while (__atomic_load_n(&vm->running, __ATOMIC_ACQUIRE)) {
		usleep(100000);
		if ((now_ns() - start) / 1000000000 < (uint64_t)secs + 10)
			continue;
		secs += 10;
		note("running for %ld s: %llu pages served, %llu async #PFs,",
		     secs, (unsigned long long)vm->st.served,
		     (unsigned long long)(vm->st.async_exits + vm->st.async_ring));
		sync_exits(vm, &sk, &su);
		note("running for %ld s: %llu synchronous exits, %llu counter reports (%llu new)",
		     secs, (unsigned long long)(sk + su),
		     (unsigned long long)vm->st.rates,
		     (unsigned long long)(vm->st.rates - rates));
		rates = vm->st.rates;
		if (vm->lazy)
			lazy_report(vm);
		if (timeout && secs >= timeout) {
			vm->why = "the guest did not finish in time (--timeout)";
			vm_stop(vm, STOP_FAILED);
			dump_stuck(vm);
			/* A vCPU thread waiting in the kernel may never return. */
			if (__atomic_load_n(&vm->running, __ATOMIC_ACQUIRE)) {
				print_result(vm);
				die(EXIT_GUEST_FAILED, "%s", vm->why);
			}
			break;
		}
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		pthread_join(vm->vcpus[i].thread, NULL);
		/* vm_stop() from a fault thread must not signal it now. */
		__atomic_store_n(&vm->vcpus[i].thread, 0, __ATOMIC_RELEASE);
	}
}

static enum mem_mode parse_mode(const char *s)
{
	unsigned int i;

	for (i = MODE_EAGER; i < ARRAY_SIZE(mode_names); i++)
		if (!strcmp(s, mode_names[i]))
			return i;
	die(EXIT_USAGE,
	    "unknown --mode '%s': use eager, uffd, userfault-sync, userfault-async or exitless",
	    s);
}

static long parse_num(const char *opt, const char *s, long min, long max)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(s, &end, 0);
	if (errno || *end || end == s || n < min || n > max)
		die(EXIT_USAGE, "%s wants a number from %ld to %ld, not '%s'", opt,
		    min, max, s);
	return n;
}

/* Which KVM is loaded, for messages about what it cannot do. */
static const char *kvm_modules(void)
{
	static char buf[128];
	FILE *f = fopen("/sys/module/kvm/version", "r");

	if (f && fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = 0;
		fclose(f);
		return buf;
	}
	if (f)
		fclose(f);
	return "the distro's stock kvm (no version tag)";
}

/* Does the loaded KVM have what @mode needs?  Says which KVM if not. */
static void check_mode(struct vm *vm, enum mem_mode mode)
{
	long cap = 0;
	const char *name = NULL;

	if (mode >= MODE_USERFAULT_SYNC) {
		cap = KVM_CAP_USERFAULT;
		name = "KVM_CAP_USERFAULT";
	}
	if (mode >= MODE_USERFAULT_ASYNC && kvm_has(vm, cap)) {
		cap = KVM_CAP_ASYNC_PF_USER;
		name = "KVM_CAP_ASYNC_PF_USER";
	}
	if (mode == MODE_EXITLESS && kvm_has(vm, cap)) {
		cap = KVM_CAP_ASYNC_PF_USER_RING;
		name = "KVM_CAP_ASYNC_PF_USER_RING";
	}
	if (cap && !kvm_has(vm, cap))
		die(EXIT_UNSUPPORTED,
		    "--mode %s needs %s, which the loaded KVM (%s) lacks; load kvm-backport's modules",
		    mode_names[mode], name, kvm_modules());
}

static void print_result(struct vm *vm)
{
	struct stats *st = &vm->st;
	uint64_t ae = st->async_exits, sk, su;
	double before = st->rate_before_n ?
			(double)st->rate_before_sum / st->rate_before_n : 0;
	double during = st->rate_during_n ?
			(double)st->rate_during_sum / st->rate_during_n : 0;

	sync_exits(vm, &sk, &su);
	/* One line, key=value, for scripts (tools/vmm/vmm-test.sh). */
	printf("kbp-vmm: result mode=%s status=%s", mode_names[vm->mode],
	       vm->stop == STOP_SNAPSHOT ? "snapshot" :
	       vm->guest_status == 0 ? "verified" : "failed");
	printf(" first_report_ms=%.0f verified_ms=%.0f served=%llu",
	       st->t_first_rate_ns ? (st->t_first_rate_ns - t0) / 1e6 : -1.0,
	       st->t_verified_ns ? (st->t_verified_ns - t0) / 1e6 : -1.0,
	       (unsigned long long)st->served);
	printf(" async=%llu async_exit=%llu async_ring=%llu async_kernel=%llu",
	       (unsigned long long)(ae + st->async_ring),
	       (unsigned long long)ae, (unsigned long long)st->async_ring,
	       (unsigned long long)st->async_kernel);
	printf(" sync=%llu sync_kernel=%llu sync_user=%llu",
	       (unsigned long long)(sk + su), (unsigned long long)sk,
	       (unsigned long long)su);
	printf(" ready_stale=%llu outstanding=%llu",
	       (unsigned long long)st->ready_stale,
	       (unsigned long long)(ae + st->async_ring - st->ready));
	printf(" prefetched=%llu prefetch_ms=%.0f ws_recorded=%llu",
	       (unsigned long long)st->prefetched,
	       st->t_prefetched_ns ? (st->t_prefetched_ns - t0) / 1e6 : -1.0,
	       (unsigned long long)st->ws_recorded);
	printf(" rate_alone=%.0f rate_verifying=%.0f share=%.1f\n",
	       before, during, before ? 100.0 * during / before : 0.0);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "append", required_argument, NULL, 'a' },
		{ "mem", required_argument, NULL, 'm' },
		{ "vcpus", required_argument, NULL, 'c' },
		{ "buf", required_argument, NULL, 'b' },
		{ "seed", required_argument, NULL, 's' },
		{ "verifiers", required_argument, NULL, 'v' },
		{ "snapshot", required_argument, NULL, 'S' },
		{ "mode", required_argument, NULL, 'M' },
		{ "fetch-us", required_argument, NULL, 'f' },
		{ "fault-threads", required_argument, NULL, 't' },
		{ "resnapshot", required_argument, NULL, 'R' },
		{ "after-async", required_argument, NULL, 'A' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "share-uffd", required_argument, NULL, 'U' },
		{ "record-ws", required_argument, NULL, 'W' },
		{ "prefetch-ws", required_argument, NULL, 'P' },
		{ "socket", required_argument, NULL, 'O' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ }
	};
	const char *kernel = NULL, *initrd = NULL, *append = "", *snap = NULL;
	const char *resnap = NULL, *sock = NULL, *cmd;
	long mem = 256, vcpus = 1, buf = 16, seed = 1, verifiers = 4;
	long fetch_us = 0, threads = 4, after = 8, timeout = 0;
	static struct vm vm;
	struct snap_state *s;
	int c, mem_fd = -1;
	bool restore;
	char *cmdline;

	t0 = now_ns();
	vm.mode = -1;
	vm.main_tid = gettid();
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			kernel = optarg;
			break;
		case 'i':
			initrd = optarg;
			break;
		case 'a':
			append = optarg;
			break;
		case 'm':
			mem = parse_num("--mem", optarg, 64, 3072);
			break;
		case 'c':
			vcpus = parse_num("--vcpus", optarg, 1, MAX_VCPUS);
			break;
		case 'b':
			buf = parse_num("--buf", optarg, 1, 1024);
			break;
		case 's':
			seed = parse_num("--seed", optarg, 0, 1L << 30);
			break;
		case 'v':
			verifiers = parse_num("--verifiers", optarg, 1, 64);
			break;
		case 'S':
			snap = optarg;
			break;
		case 'M':
			vm.mode = parse_mode(optarg);
			break;
		case 'f':
			fetch_us = parse_num("--fetch-us", optarg, 0, 10000000);
			break;
		case 't':
			threads = parse_num("--fault-threads", optarg, 1, 64);
			break;
		case 'R':
			resnap = optarg;
			break;
		case 'A':
			after = parse_num("--after-async", optarg, 1, 1L << 30);
			break;
		case 'T':
			timeout = parse_num("--timeout", optarg, 0, 1L << 30);
			break;
		case 'U':
			vm.share_uffd = optarg;
			break;
		case 'W':
			vm.record_ws = optarg;
			break;
		case 'P':
			vm.prefetch_ws = optarg;
			break;
		case 'O':
			sock = optarg;
			break;
		case 'q':
			vm.quiet = true;
			break;
		case 'h':
			fputs(usage, stdout);
			return 0;
		default:
			die(EXIT_USAGE, "bad option; kbp-vmm --help lists them");
		}
	}
	if (optind != argc - 1)
		die(EXIT_USAGE,
		    "say boot, restore or observe; kbp-vmm --help lists the options");
	cmd = argv[optind];
	if (!strcmp(cmd, "observe")) {
		if (!sock)
			die(EXIT_USAGE, "observe needs --socket PATH");
		return run_observer(sock);
	}
	if (sock)
		die(EXIT_USAGE, "--socket is for observe");
	restore = !strcmp(cmd, "restore");
	if (!restore && strcmp(cmd, "boot"))
		die(EXIT_USAGE, "unknown command '%s': say boot, restore or observe",
		    cmd);

	if (!restore) {
		if (!kernel || !initrd)
			die(EXIT_USAGE, "boot needs --kernel and --initrd");
		if (vm.mode != (enum mem_mode)-1 || resnap || vm.share_uffd ||
		    vm.record_ws || vm.prefetch_ws)
			die(EXIT_USAGE,
			    "--mode, --resnapshot, --share-uffd, --record-ws and --prefetch-ws are for restore");
		if (buf * 4 > mem)
			die(EXIT_USAGE, "--buf %ld MiB needs --mem of at least %ld MiB",
			    buf, buf * 4);
		vm.mode = MODE_BOOT;
		vm.snapshot_out = snap;
		vm.stop_after_async = -1;
		vm_create(&vm, vcpus, (uint64_t)mem << 20);
		vcpus_create(&vm);
		vm.cpuid = supported_cpuid(&vm);
		for (c = 0; c < vm.nr_vcpus; c++)
			vcpu_set_cpuid(&vm.vcpus[c], vm.cpuid);
		vm_set_memory(&vm, false, NULL);
		if (asprintf(&cmdline,
			     "console=ttyS0 loglevel=5 panic=-1 reboot=k nokaslr pci=off mitigations=off rdinit=/init kbp.buf=%ld kbp.seed=%ld kbp.verifiers=%ld %s",
			     buf, seed, verifiers, append) < 0)
			die(EXIT_USAGE, "out of memory");
		boot_linux(&vm, kernel, initrd, cmdline);
		note("booting %s: %ld MiB, %ld vCPU(s), buffer %ld MiB", kernel,
		     mem, vcpus, buf);
	} else {
		if (!snap || vm.mode == (enum mem_mode)-1)
			die(EXIT_USAGE, "restore needs --snapshot and --mode");
		if (kernel || initrd)
			die(EXIT_USAGE,
			    "--kernel and --initrd are for boot; the snapshot has the guest");
		if ((resnap || vm.share_uffd || vm.record_ws || vm.prefetch_ws) &&
		    vm.mode < MODE_UFFD)
			die(EXIT_USAGE,
			    "%s needs a lazy --mode (uffd, userfault-sync, userfault-async, exitless)",
			    resnap ? "--resnapshot" : vm.share_uffd ? "--share-uffd" :
			    vm.record_ws ? "--record-ws" : "--prefetch-ws");
		s = calloc(1, sizeof(*s));
		if (!s)
			die(EXIT_USAGE, "out of memory");
		snapshot_open(snap, s, &mem_fd);
		vm.snap_id = s->h.id;
		vm.snapshot_out = resnap;
		vm.stop_after_async = resnap ? after : -1;
		vm_create(&vm, s->h.nr_vcpus, s->h.mem_size);
		check_mode(&vm, vm.mode);
		vcpus_create(&vm);
		note("restoring %s (%llu MiB, %u vCPU(s)), memory %s%s", snap,
		     (unsigned long long)s->h.mem_size >> 20, s->h.nr_vcpus,
		     mode_names[vm.mode], vm.mode > MODE_EAGER ? " (lazy)" : "");
		if (vm.mode == MODE_EAGER) {
			vm_set_memory(&vm, false, NULL);
			if (pread(mem_fd, vm.mem, vm.mem_size, PAGE_SIZE) !=
			    (ssize_t)vm.mem_size)
				die(EXIT_USAGE, "cannot read the image %s.mem", snap);
			vm.st.served = vm.mem_size / PAGE_SIZE;
		} else {
			lazy_setup(&vm, mem_fd, fetch_us, threads);
		}
		snapshot_load(&vm, s);
		free(s);
	}

	run_vcpus(&vm, timeout);
	if (vm.lazy)
		lazy_stop(&vm);
	if (vm.record_ws)
		lazy_save_ws(&vm);
	if (vm.stop == STOP_SNAPSHOT) {
		snapshot_save(&vm, restore ? resnap : snap,
			      vm.lazy ? lazy_image(&vm) : NULL);
		note("snapshot saved to %s.mem and %s.state",
		     restore ? resnap : snap, restore ? resnap : snap);
		print_result(&vm);
		return EXIT_SNAPSHOT;
	}
	print_result(&vm);
	if (vm.stop == STOP_FAILED)
		die(EXIT_GUEST_FAILED, "%s", vm.why);
	if (vm.serial_problems)
		die(EXIT_GUEST_FAILED,
		    "the guest's kernel reported a problem on its console (see the lines above)");
	return vm.guest_status == 0 ? EXIT_VERIFIED : EXIT_GUEST_FAILED;
}
