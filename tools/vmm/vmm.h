/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * kbp-vmm: the reference VMM of kvm-backport.  It boots a stock Linux
 * kernel, snapshots the VM when the guest asks, and restores it with guest
 * memory served lazily in one of several ways (Documentation/vmm.rst).
 *
 * Threads: one per vCPU (KVM_RUN, exits, synchronous faults), the main
 * thread (snapshots, the end of the run) and, when memory is served
 * lazily, the fault threads of memory.c.  What each field is guarded by
 * is said where it is declared.
 */
#ifndef KBP_VMM_H
#define KBP_VMM_H

#include <assert.h>
#include <pthread.h>
#include <stdnoreturn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <linux/kvm.h>

#define PAGE_SIZE	4096UL
#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
/* The kernel's __printf(), which userspace lacks (<linux/compiler.h>). */
#define __gcc_attr	__attribute__
#define __printf(a, b)	__gcc_attr((format(printf, a, b)))
#define MAX_VCPUS	2
#define MAX_MSRS	256

/* Exit statuses; --help lists them. */
#define EXIT_VERIFIED		0	/* the guest finished and verified */
#define EXIT_GUEST_FAILED	1	/* bad data, crash, panic, no finish */
#define EXIT_USAGE		2	/* misuse: the message says what to do */
#define EXIT_UNSUPPORTED	3	/* the loaded KVM lacks what the mode needs */
#define EXIT_SNAPSHOT		4	/* stopped after writing a snapshot */

/*
 * The guest's side of the protocol (tools/vmm/guest/init.c): I/O ports
 * the workload writes to (through /dev/port, so the guest kernel does the
 * OUT).  Not a device of any real machine.
 */
#define PORT_EXIT	0x5f0	/* outb: the guest's verdict, then power off */
#define PORT_SNAPSHOT	0x5f1	/* outb: take the snapshot now */
#define PORT_EVENT	0x5f2	/* outb: an event of the workload (EV_*) */
/* 4 x outb, 0x5f4-0x5f7: counter iterations in 100 ms, low byte first */
#define PORT_RATE	0x5f4

#define EV_VERIFY_START	1
#define EV_VERIFY_DONE	2

enum mem_mode {
	MODE_BOOT,		/* a fresh boot, memory filled by the loader */
	MODE_EAGER,
	MODE_UFFD,
	MODE_USERFAULT_SYNC,
	MODE_USERFAULT_ASYNC,
	MODE_EXITLESS,
};

struct vcpu {
	struct vm *vm;
	int id, fd;
	pid_t tid;		/* its thread's, set before it first runs */
	struct kvm_run *run;
	pthread_t thread;
	/* Counters of this vCPU's thread (read after it stopped). */
	uint64_t sync_kernel, sync_user, exits;
};

/* Counters of the whole run, updated with atomics by any thread. */
struct stats {
	uint64_t served;	/* pages installed from the image */
	uint64_t async_ring;	/* async faults that came on the ring */
	uint64_t async_exits;	/* async faults that came as exits */
	uint64_t ready;		/* KVM_ASYNC_PF_USER_READY calls */
	uint64_t ready_stale;	/* READY answered ESTALE or EALREADY */
	uint64_t async_kernel;	/* async faults with the guest at CPL 0 */
	uint64_t rate_before_n, rate_before_sum;	/* counter, not verifying */
	uint64_t rate_during_n, rate_during_sum;	/* counter, verifying */
	uint64_t rates;		/* counter reports */
	uint64_t t_first_rate_ns, t_verified_ns;
	uint64_t prefetched;	/* pages installed ahead by --prefetch-ws */
	uint64_t t_prefetched_ns;	/* when the last prefetch thread ended */
	uint64_t ws_recorded;	/* pages --record-ws saved */
};

struct serial {
	uint8_t ier, lcr, mcr, scr, dll, dlm;
	bool thr_irq;		/* "transmitter empty" interrupt pending */
	bool irq_level;		/* the level last set on IRQ 4 */
	int len;		/* of @line, the guest's current line */
	char line[160];
};

struct vm {
	int kvm, fd;
	uint64_t mem_size;
	uint8_t *mem;		/* guest RAM, guest physical 0 at mem[0] */
	int nr_vcpus;
	struct vcpu vcpus[MAX_VCPUS];
	struct kvm_cpuid2 *cpuid;
	int run_size;

	enum mem_mode mode;
	const char *snapshot_out;	/* where the guest's request saves */
	long stop_after_async;		/* resnapshot after this many (-1: never) */
	const char *share_uffd;		/* send the uffd to this socket */
	const char *record_ws;		/* --record-ws FILE, or NULL */
	const char *prefetch_ws;	/* --prefetch-ws FILE, or NULL */
	uint64_t snap_id;		/* the restored snapshot's id */
	pid_t main_tid;
	bool quiet;

	/*
	 * Stopping: the thread that sees the reason sets @stop (atomically,
	 * the first reason wins) and kicks every vCPU; each vCPU thread
	 * leaves its loop.  A stale read costs one more KVM_RUN, which the
	 * kick (immediate_exit, signal) ends at once.
	 */
	int stop;		/* STOP_* */
	int running;		/* vCPU threads not yet ended */
	pthread_mutex_t lock;	/* the serial port and guest events */
	int guest_status;	/* the guest's verdict, -1 before it gave one */
	const char *why;	/* why the guest failed, for the last line */

	struct serial serial;	/* vCPU threads, under @lock */
	int serial_problems;	/* kernel problem reports seen, under @lock */
	uint8_t rate_bytes[4];	/* PORT_RATE as it comes, under @lock */
	char last[8][160];	/* the console's last lines, under @lock */
	unsigned int nr_last;
	struct stats st;
	struct lazy *lazy;	/* memory.c, NULL unless lazy */
};

enum { STOP_NONE, STOP_EXIT, STOP_SNAPSHOT, STOP_FAILED };

/* The snapshot: guest RAM in <prefix>.mem, the rest in <prefix>.state. */
#define SNAP_MAGIC	0x31504e5350424bULL	/* "KBPSNP1" */
#define SNAP_VERSION	1

struct snap_vcpu {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave xsave;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	uint32_t nr_msrs;
	uint32_t pad;
	struct kvm_msr_entry msrs[MAX_MSRS];
};

struct snap_header {
	uint64_t magic;
	uint32_t version, nr_vcpus;
	uint64_t mem_size;
	uint64_t id;		/* the same in both files of one snapshot */
	uint8_t pad[4096 - 32];
};

static_assert(sizeof(struct snap_header) == PAGE_SIZE,
	      "guest RAM starts at the second page of the image");

struct snap_state {
	struct snap_header h;
	struct kvm_pic_state pic[2];
	struct kvm_ioapic_state ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
	struct serial serial;
	uint32_t nr_cpuid;
	struct kvm_cpuid_entry2 cpuid[128];
	struct snap_vcpu vcpu[MAX_VCPUS];
};

/* main.c */
noreturn void __printf(2, 3) die(int status, const char *fmt, ...);
void __printf(1, 2) note(const char *fmt, ...);
uint64_t now_ns(void);
void vm_stop(struct vm *vm, int why);

/* kvm.c: the VM, its vCPUs and their setup */
int kvm_open(void);
bool kvm_has(struct vm *vm, long cap);
void vm_create(struct vm *vm, int nr_vcpus, uint64_t mem_size);
void vm_set_memory(struct vm *vm, bool userfault, uint8_t *bitmap);
void vcpus_create(struct vm *vm);
void vcpu_set_cpuid(struct vcpu *v, struct kvm_cpuid2 *c);
struct kvm_cpuid2 *supported_cpuid(struct vm *vm);

/* boot.c: a Linux kernel loaded and started as a boot loader would */
void boot_linux(struct vm *vm, const char *kernel, const char *initrd,
		const char *cmdline);

/* serial.c: the first 16550 UART, on stdout */
bool serial_io(struct vm *vm, uint16_t port, bool in, uint8_t *data);

/* snapshot.c */
void snapshot_save(struct vm *vm, const char *prefix,
		   const uint8_t *old_image);
void snapshot_open(const char *prefix, struct snap_state *s, int *mem_fd);
void snapshot_load(struct vm *vm, struct snap_state *s);

/* memory.c: guest RAM at restore, one mode per run */
void lazy_setup(struct vm *vm, int image_fd, unsigned int fetch_us,
		unsigned int threads);
bool lazy_exit(struct vcpu *v, int run_errno);
void lazy_stop(struct vm *vm);
void lazy_report(struct vm *vm);
bool lazy_present(struct vm *vm, uint64_t page);
void lazy_save_ws(struct vm *vm);
const uint8_t *lazy_image(struct vm *vm);

/* observe.c: a VMM's userfaultfd held across its death */
void share_uffd(const char *path, int uffd, uint64_t start, uint64_t len);
int run_observer(const char *path);

#endif
