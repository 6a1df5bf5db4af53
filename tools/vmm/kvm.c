// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VM and its vCPUs: what both a boot and a restore create before the
 * guest's own state goes in.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm.h"

/* Where the TSS of real-mode emulation goes (VMX only); above the RAM. */
#define TSS_ADDR	0xfffbd000UL

int kvm_open(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die(EXIT_UNSUPPORTED, "cannot open /dev/kvm: %s; load kvm and kvm-amd or kvm-intel",
		    strerror(errno));
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
		die(EXIT_UNSUPPORTED, "/dev/kvm has another API version than %d",
		    KVM_API_VERSION);
	return fd;
}

bool kvm_has(struct vm *vm, long cap)
{
	return ioctl(vm->fd >= 0 ? vm->fd : vm->kvm, KVM_CHECK_EXTENSION,
		     cap) > 0;
}

void vm_create(struct vm *vm, int nr_vcpus, uint64_t mem_size)
{
	struct kvm_pit_config pit = { .flags = 0 };
	struct kvm_enable_cap cap = { .cap = KVM_CAP_EXCEPTION_PAYLOAD,
				      .args[0] = 1 };

	vm->fd = -1;
	vm->kvm = kvm_open();
	vm->fd = ioctl(vm->kvm, KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		die(EXIT_UNSUPPORTED, "KVM_CREATE_VM failed: %s", strerror(errno));
	vm->nr_vcpus = nr_vcpus;
	vm->mem_size = mem_size;
	vm->guest_status = -1;
	pthread_mutex_init(&vm->lock, NULL);

	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, TSS_ADDR) < 0)
		die(EXIT_UNSUPPORTED, "KVM_SET_TSS_ADDR failed: %s", strerror(errno));
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0)
		die(EXIT_UNSUPPORTED, "KVM_CREATE_IRQCHIP failed: %s",
		    strerror(errno));
	if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0)
		die(EXIT_UNSUPPORTED, "KVM_CREATE_PIT2 failed: %s", strerror(errno));
	/*
	 * Exceptions pending at a snapshot are saved with their payload
	 * (CR2 of a #PF) instead of already applied to the registers.
	 */
	if (kvm_has(vm, KVM_CAP_EXCEPTION_PAYLOAD) &&
	    ioctl(vm->fd, KVM_ENABLE_CAP, &cap) < 0)
		die(EXIT_UNSUPPORTED, "KVM_CAP_EXCEPTION_PAYLOAD: %s", strerror(errno));

	/*
	 * Anonymous memory, so that userfaultfd can serve it page by page;
	 * no huge pages, whose first touch would fill 2 MiB at once.
	 */
	vm->mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED)
		die(EXIT_USAGE, "cannot map %llu MiB of guest RAM: %s; use a smaller --mem",
		    (unsigned long long)mem_size >> 20, strerror(errno));
	madvise(vm->mem, mem_size, MADV_NOHUGEPAGE);

	vm->run_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		die(EXIT_UNSUPPORTED, "KVM_GET_VCPU_MMAP_SIZE failed: %s",
		    strerror(errno));
}

/*
 * The one memslot: all of guest RAM at guest physical 0.  With @userfault
 * every page whose bit is set in @bitmap exits on its first guest access.
 */
void vm_set_memory(struct vm *vm, bool userfault, uint8_t *bitmap)
{
	struct kvm_userfault_memory_region uf = {
		.region = {
			.slot = 0,
			.guest_phys_addr = 0,
			.memory_size = vm->mem_size,
			.userspace_addr = (uintptr_t)vm->mem,
		},
	};

	if (!userfault) {
		if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &uf.region) < 0)
			die(EXIT_UNSUPPORTED, "KVM_SET_USER_MEMORY_REGION failed: %s",
			    strerror(errno));
		return;
	}
	uf.region.flags = KVM_MEM_USERFAULT;
	uf.userfault_bitmap = (uintptr_t)bitmap;
	uf.userfault_bitmap_size = (vm->mem_size / PAGE_SIZE + 7) / 8;
	if (ioctl(vm->fd, KVM_SET_USERFAULT_MEMORY_REGION, &uf) < 0)
		die(EXIT_UNSUPPORTED, "KVM_SET_USERFAULT_MEMORY_REGION failed: %s",
		    strerror(errno));
}

/* KVM_GET_SUPPORTED_CPUID, grown until KVM says it fits. */
struct kvm_cpuid2 *supported_cpuid(struct vm *vm)
{
	struct kvm_cpuid2 *c;
	int n;

	for (n = 64; ; n *= 2) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			die(EXIT_USAGE, "out of memory");
		c->nent = n;
		if (!ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, c))
			return c;
		free(c);
		if (errno != E2BIG || n >= 1024)
			die(EXIT_UNSUPPORTED, "KVM_GET_SUPPORTED_CPUID failed: %s",
			    strerror(errno));
	}
}

/*
 * The vCPU's CPUID: @c with this vCPU's APIC ID filled in.  The KVM
 * leaves (0x40000000) come as KVM reports them, so the guest sees
 * KVM_FEATURE_ASYNC_PF and KVM_FEATURE_ASYNC_PF_INT, kvmclock and the
 * rest of what the loaded KVM offers.
 */
void vcpu_set_cpuid(struct vcpu *v, struct kvm_cpuid2 *c)
{
	struct kvm_cpuid_entry2 *e;
	unsigned int i;

	for (i = 0; i < c->nent; i++) {
		e = &c->entries[i];
		switch (e->function) {
		case 1:
			e->ebx = (e->ebx & 0x00ffffff) | (uint32_t)v->id << 24;
			e->ecx |= 1u << 31;	/* running on a hypervisor */
			break;
		case 0xb:
		case 0x1f:
			e->edx = v->id;
			break;
		}
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		die(EXIT_UNSUPPORTED, "KVM_SET_CPUID2 failed: %s", strerror(errno));
}

void vcpus_create(struct vm *vm)
{
	struct vcpu *v;
	int i;

	for (i = 0; i < vm->nr_vcpus; i++) {
		v = &vm->vcpus[i];
		v->vm = vm;
		v->id = i;
		v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0)
			die(EXIT_UNSUPPORTED, "KVM_CREATE_VCPU %d failed: %s", i,
			    strerror(errno));
		v->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE,
			      MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED)
			die(EXIT_UNSUPPORTED, "cannot map kvm_run: %s", strerror(errno));
	}
}
