// SPDX-License-Identifier: GPL-2.0-only
/*
 * Snapshots: guest RAM in <prefix>.mem (a header page, then the RAM),
 * everything else a Linux guest needs to go on in <prefix>.state.  Both
 * files carry the same random id, so a restore refuses a pair that does
 * not belong together.
 *
 * Saved with every vCPU thread out of KVM_RUN and its last I/O completed
 * (vcpu_thread()); restored into a new VM before any vCPU runs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm.h"

static void vcpu_ioctl(struct vcpu *v, unsigned long req, void *arg,
		       const char *name)
{
	if (ioctl(v->fd, req, arg) < 0)
		die(EXIT_GUEST_FAILED, "%s of vCPU %d failed: %s", name, v->id,
		    strerror(errno));
}

static void vm_ioctl(struct vm *vm, unsigned long req, void *arg,
		     const char *name)
{
	if (ioctl(vm->fd, req, arg) < 0)
		die(EXIT_GUEST_FAILED, "%s failed: %s", name, strerror(errno));
}

/*
 * The MSRs to save: every MSR KVM lists (those it saves for migration and
 * those it emulates, kvmclock and async #PF among them) that this vCPU
 * can read.
 */
static void save_msrs(struct vm *vm, struct vcpu *v, struct snap_vcpu *sv)
{
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e;
	} one;
	struct kvm_msr_list *list;
	uint32_t i;

	list = calloc(1, sizeof(*list) + 1024 * sizeof(list->indices[0]));
	if (!list)
		die(EXIT_USAGE, "out of memory");
	list->nmsrs = 1024;
	if (ioctl(vm->kvm, KVM_GET_MSR_INDEX_LIST, list) < 0)
		die(EXIT_GUEST_FAILED, "KVM_GET_MSR_INDEX_LIST failed: %s",
		    strerror(errno));
	sv->nr_msrs = 0;
	for (i = 0; i < list->nmsrs && sv->nr_msrs < MAX_MSRS; i++) {
		memset(&one, 0, sizeof(one));
		one.h.nmsrs = 1;
		one.e.index = list->indices[i];
		if (ioctl(v->fd, KVM_GET_MSRS, &one) == 1)
			sv->msrs[sv->nr_msrs++] = one.e;
	}
	free(list);
}

static void write_all(int fd, const void *buf, size_t len, off_t off,
		      const char *path)
{
	ssize_t n;

	while (len) {
		n = pwrite(fd, buf, len, off);
		if (n <= 0)
			die(EXIT_USAGE, "cannot write %s: %s", path,
			    n < 0 ? strerror(errno) : "short write");
		buf = (const uint8_t *)buf + n;
		len -= n;
		off += n;
	}
}

/*
 * Guest RAM: pages from the guest's memory, or from @old_image for the
 * pages a lazy restore has not served yet (the guest cannot have changed
 * those: it has not seen them).
 */
static void save_mem(struct vm *vm, const char *path, struct snap_header *h,
		     const uint8_t *old_image)
{
	uint64_t pages = vm->mem_size / PAGE_SIZE, p, q;
	const uint8_t *src;
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die(EXIT_USAGE, "cannot create %s: %s", path, strerror(errno));
	write_all(fd, h, sizeof(*h), 0, path);
	for (p = 0; p < pages; p = q) {
		bool present = !old_image || lazy_present(vm, p);

		for (q = p + 1; q < pages; q++)
			if ((!old_image || lazy_present(vm, q)) != present)
				break;
		src = present ? vm->mem : old_image;
		write_all(fd, src + p * PAGE_SIZE, (q - p) * PAGE_SIZE,
			  PAGE_SIZE + p * PAGE_SIZE, path);
	}
	if (fsync(fd) < 0 || close(fd) < 0)
		die(EXIT_USAGE, "cannot write %s: %s", path, strerror(errno));
}

void snapshot_save(struct vm *vm, const char *prefix, const uint8_t *old_image)
{
	struct snap_state *s = calloc(1, sizeof(*s));
	char mem_path[4096], state_path[4096], tmp[4200];
	struct kvm_irqchip chip;
	struct snap_vcpu *sv;
	struct vcpu *v;
	int i, fd;

	if (!s)
		die(EXIT_USAGE, "out of memory");
	s->h.magic = SNAP_MAGIC;
	s->h.version = SNAP_VERSION;
	s->h.nr_vcpus = vm->nr_vcpus;
	s->h.mem_size = vm->mem_size;
	if (getrandom(&s->h.id, sizeof(s->h.id), 0) != sizeof(s->h.id))
		s->h.id = now_ns() ^ getpid();

	for (i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i;
		vm_ioctl(vm, KVM_GET_IRQCHIP, &chip, "KVM_GET_IRQCHIP");
		if (i < 2)
			s->pic[i] = chip.chip.pic;
		else
			s->ioapic = chip.chip.ioapic;
	}
	vm_ioctl(vm, KVM_GET_PIT2, &s->pit, "KVM_GET_PIT2");
	vm_ioctl(vm, KVM_GET_CLOCK, &s->clock, "KVM_GET_CLOCK");
	s->serial = vm->serial;
	s->nr_cpuid = vm->cpuid->nent;
	if (s->nr_cpuid > ARRAY_SIZE(s->cpuid))
		die(EXIT_UNSUPPORTED, "KVM reports %u CPUID leaves, more than a snapshot holds",
		    s->nr_cpuid);
	memcpy(s->cpuid, vm->cpuid->entries, s->nr_cpuid * sizeof(s->cpuid[0]));

	for (i = 0; i < vm->nr_vcpus; i++) {
		v = &vm->vcpus[i];
		sv = &s->vcpu[i];
		/* Events first: a pending exception is saved with them. */
		vcpu_ioctl(v, KVM_GET_VCPU_EVENTS, &sv->events, "KVM_GET_VCPU_EVENTS");
		vcpu_ioctl(v, KVM_GET_REGS, &sv->regs, "KVM_GET_REGS");
		vcpu_ioctl(v, KVM_GET_SREGS, &sv->sregs, "KVM_GET_SREGS");
		vcpu_ioctl(v, KVM_GET_XSAVE, &sv->xsave, "KVM_GET_XSAVE");
		vcpu_ioctl(v, KVM_GET_XCRS, &sv->xcrs, "KVM_GET_XCRS");
		vcpu_ioctl(v, KVM_GET_LAPIC, &sv->lapic, "KVM_GET_LAPIC");
		vcpu_ioctl(v, KVM_GET_MP_STATE, &sv->mp_state, "KVM_GET_MP_STATE");
		vcpu_ioctl(v, KVM_GET_DEBUGREGS, &sv->debugregs, "KVM_GET_DEBUGREGS");
		save_msrs(vm, v, sv);
	}

	/* Written under temporary names and renamed: never half a pair. */
	snprintf(mem_path, sizeof(mem_path), "%s.mem", prefix);
	snprintf(state_path, sizeof(state_path), "%s.state", prefix);
	snprintf(tmp, sizeof(tmp), "%s.tmp", mem_path);
	save_mem(vm, tmp, &s->h, old_image);
	if (rename(tmp, mem_path) < 0)
		die(EXIT_USAGE, "cannot rename %s: %s", tmp, strerror(errno));
	snprintf(tmp, sizeof(tmp), "%s.tmp", state_path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die(EXIT_USAGE, "cannot create %s: %s", tmp, strerror(errno));
	write_all(fd, s, sizeof(*s), 0, tmp);
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, state_path) < 0)
		die(EXIT_USAGE, "cannot write %s: %s", state_path, strerror(errno));
	free(s);
}

/* Read and check PREFIX.state; open PREFIX.mem and check it matches. */
void snapshot_open(const char *prefix, struct snap_state *s, int *mem_fd)
{
	char path[4096];
	struct snap_header h;
	struct stat sb;
	int fd;

	snprintf(path, sizeof(path), "%s.state", prefix);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(EXIT_USAGE,
		    "cannot open the snapshot state %s: %s; --snapshot takes the prefix a boot saved",
		    path, strerror(errno));
	if (read(fd, s, sizeof(*s)) != sizeof(*s) || s->h.magic != SNAP_MAGIC)
		die(EXIT_USAGE, "%s is not a kbp-vmm snapshot state", path);
	if (s->h.version != SNAP_VERSION)
		die(EXIT_USAGE, "%s is a version %u snapshot; this kbp-vmm reads version %u",
		    path, s->h.version, SNAP_VERSION);
	if (!s->h.nr_vcpus || s->h.nr_vcpus > MAX_VCPUS ||
	    !s->h.mem_size || s->h.mem_size % PAGE_SIZE ||
	    s->nr_cpuid > ARRAY_SIZE(s->cpuid))
		die(EXIT_USAGE, "%s is damaged (vCPUs %u, RAM %llu)", path,
		    s->h.nr_vcpus, (unsigned long long)s->h.mem_size);
	close(fd);

	snprintf(path, sizeof(path), "%s.mem", prefix);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die(EXIT_USAGE, "cannot open the snapshot image %s: %s", path,
		    strerror(errno));
	if (read(fd, &h, sizeof(h)) != sizeof(h) || h.magic != SNAP_MAGIC ||
	    fstat(fd, &sb) < 0)
		die(EXIT_USAGE, "%s is not a kbp-vmm snapshot image", path);
	if (h.id != s->h.id || h.mem_size != s->h.mem_size)
		die(EXIT_USAGE,
		    "%s and %s.state are not from the same snapshot; restore a pair one boot saved",
		    path, prefix);
	if ((uint64_t)sb.st_size != PAGE_SIZE + h.mem_size)
		die(EXIT_USAGE, "%s is truncated (%lld bytes, %llu expected)", path,
		    (long long)sb.st_size,
		    (unsigned long long)(PAGE_SIZE + h.mem_size));
	*mem_fd = fd;
}

static void load_msrs(struct vcpu *v, struct snap_vcpu *sv)
{
	struct kvm_msrs *m;
	int n;

	m = calloc(1, sizeof(*m) + sv->nr_msrs * sizeof(m->entries[0]));
	if (!m)
		die(EXIT_USAGE, "out of memory");
	m->nmsrs = sv->nr_msrs;
	memcpy(m->entries, sv->msrs, sv->nr_msrs * sizeof(m->entries[0]));
	n = ioctl(v->fd, KVM_SET_MSRS, m);
	if (n != (int)sv->nr_msrs)
		die(EXIT_UNSUPPORTED,
		    "KVM_SET_MSRS of vCPU %d stopped at MSR %#x (%d of %u): the loaded KVM differs from the one that saved",
		    v->id, n >= 0 && n < (int)sv->nr_msrs ?
		    sv->msrs[n].index : 0, n, sv->nr_msrs);
	free(m);
}

/*
 * Load @s into @vm, whose vCPUs exist and have not run.  The order is
 * KVM's: CPUID before anything that depends on it, the special registers
 * (APIC base, EFER) before the local APIC and the MSRs, the local APIC
 * before MSRs that depend on its mode (TSC deadline), the events last.
 * The MSRs include MSR_KVM_ASYNC_PF_EN: setting it makes KVM wake every
 * guest task that waited for a page when the snapshot was taken (the
 * guest's tokens mean nothing in this VM).
 */
void snapshot_load(struct vm *vm, struct snap_state *s)
{
	struct kvm_irqchip chip;
	struct snap_vcpu *sv;
	struct vcpu *v;
	int i;

	vm->cpuid = calloc(1, sizeof(*vm->cpuid) +
			   s->nr_cpuid * sizeof(vm->cpuid->entries[0]));
	if (!vm->cpuid)
		die(EXIT_USAGE, "out of memory");
	vm->cpuid->nent = s->nr_cpuid;
	memcpy(vm->cpuid->entries, s->cpuid, s->nr_cpuid * sizeof(s->cpuid[0]));

	for (i = 0; i < vm->nr_vcpus; i++) {
		v = &vm->vcpus[i];
		sv = &s->vcpu[i];
		vcpu_set_cpuid(v, vm->cpuid);
		vcpu_ioctl(v, KVM_SET_SREGS, &sv->sregs, "KVM_SET_SREGS");
		vcpu_ioctl(v, KVM_SET_REGS, &sv->regs, "KVM_SET_REGS");
		vcpu_ioctl(v, KVM_SET_XSAVE, &sv->xsave, "KVM_SET_XSAVE");
		vcpu_ioctl(v, KVM_SET_XCRS, &sv->xcrs, "KVM_SET_XCRS");
		vcpu_ioctl(v, KVM_SET_LAPIC, &sv->lapic, "KVM_SET_LAPIC");
		load_msrs(v, sv);
		vcpu_ioctl(v, KVM_SET_MP_STATE, &sv->mp_state, "KVM_SET_MP_STATE");
		vcpu_ioctl(v, KVM_SET_DEBUGREGS, &sv->debugregs, "KVM_SET_DEBUGREGS");
		vcpu_ioctl(v, KVM_SET_VCPU_EVENTS, &sv->events, "KVM_SET_VCPU_EVENTS");
	}
	for (i = 0; i < 3; i++) {
		memset(&chip, 0, sizeof(chip));
		chip.chip_id = i;
		if (i < 2)
			chip.chip.pic = s->pic[i];
		else
			chip.chip.ioapic = s->ioapic;
		vm_ioctl(vm, KVM_SET_IRQCHIP, &chip, "KVM_SET_IRQCHIP");
	}
	vm_ioctl(vm, KVM_SET_PIT2, &s->pit, "KVM_SET_PIT2");
	/*
	 * irq_level as saved: KVM_SET_IRQCHIP restored the I/O APIC's and
	 * PICs' view of the line, so serial.c must compare its next level
	 * with that one (an edge-triggered pin fires on a rise only).
	 */
	vm->serial = s->serial;
	s->clock.flags = 0;
	vm_ioctl(vm, KVM_SET_CLOCK, &s->clock, "KVM_SET_CLOCK");
}
