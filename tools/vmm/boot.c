// SPDX-License-Identifier: GPL-2.0-only
/*
 * Loading a Linux bzImage as a boot loader would (the x86 boot protocol,
 * Documentation/arch/x86/boot.rst of the kernel tree), entering it at its
 * 64-bit entry point with the page tables and GDT that entry expects, and
 * describing the machine with an MP table (CPUs, I/O APIC, ISA IRQs)
 * instead of ACPI.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <asm/bootparam.h>

#include "vmm.h"

/* Guest physical layout of what the loader writes below 1 MiB. */
#define GDT_ADDR	0x500
#define BOOT_PARAMS	0x7000
#define PML4_ADDR	0x9000
#define PDPT_ADDR	0xa000
#define PD_ADDR		0xb000		/* four, 0xb000-0xefff: 4 GiB */
#define CMDLINE_ADDR	0x20000
#define CMDLINE_MAX	4096
#define MPTABLE_ADDR	0x9fc00		/* the last KiB of base memory */
#define KERNEL_ADDR	0x100000

#define IOAPIC_ADDR	0xfec00000U
#define LAPIC_ADDR	0xfee00000U

static void *gpa(struct vm *vm, uint64_t addr, uint64_t len)
{
	if (addr + len > vm->mem_size || addr + len < addr)
		die(EXIT_USAGE,
		    "the kernel and initramfs do not fit in %llu MiB; use a larger --mem",
		    (unsigned long long)vm->mem_size >> 20);
	return vm->mem + addr;
}

static void *read_file(const char *path, const char *what, size_t *size)
{
	struct stat sb;
	void *buf;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &sb) < 0)
		die(EXIT_USAGE, "cannot read the %s '%s': %s", what, path,
		    strerror(errno));
	buf = malloc(sb.st_size ? sb.st_size : 1);
	if (!buf || read(fd, buf, sb.st_size) != sb.st_size)
		die(EXIT_USAGE, "cannot read the %s '%s'", what, path);
	close(fd);
	*size = sb.st_size;
	return buf;
}

/* A checksum byte that makes @len bytes at @p sum to 0. */
static uint8_t mp_sum(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return -s;
}

/*
 * The MP table (Intel MultiProcessor Specification 1.4): a floating
 * pointer and a configuration table with a processor entry per vCPU, an
 * ISA bus, the I/O APIC and ISA IRQ n on I/O APIC pin n (KVM's default
 * routing of GSIs, which the in-kernel PIT uses for its IRQ 0).
 */
static void write_mptable(struct vm *vm)
{
	uint8_t *base = gpa(vm, MPTABLE_ADDR, 1024), *p;
	uint16_t entries = 0;
	int i;

	memset(base, 0, 1024);
	/* The floating pointer: "_MP_", table address, 1 paragraph, 1.4. */
	memcpy(base, "_MP_", 4);
	*(uint32_t *)(base + 4) = MPTABLE_ADDR + 16;
	base[8] = 1;
	base[9] = 4;
	base[10] = mp_sum(base, 16);

	/* The configuration table's header; length and sum at the end. */
	p = base + 16;
	memcpy(p, "PCMP", 4);
	p[6] = 4;
	memcpy(p + 8, "KBPVMM  ", 8);
	memcpy(p + 16, "REFERENCEVMM", 12);
	*(uint32_t *)(p + 36) = LAPIC_ADDR;
	p += 44;

	for (i = 0; i < vm->nr_vcpus; i++, entries++, p += 20) {
		p[0] = 0;			/* processor */
		p[1] = i;			/* local APIC ID */
		p[2] = 0x14;			/* local APIC version */
		p[3] = 1 | (i ? 0 : 2);		/* enabled, bootstrap */
		*(uint32_t *)(p + 4) = 0x600;	/* family 6 */
		*(uint32_t *)(p + 8) = 0x201;	/* FPU, APIC */
	}
	p[0] = 1;				/* bus 0: ISA */
	memcpy(p + 2, "ISA   ", 6);
	p += 8, entries++;
	p[0] = 2;				/* I/O APIC */
	p[1] = vm->nr_vcpus;			/* its ID, after the CPUs' */
	p[2] = 0x11;
	p[3] = 1;				/* enabled */
	*(uint32_t *)(p + 4) = IOAPIC_ADDR;
	p += 8, entries++;
	for (i = 0; i < 16; i++, p += 8, entries++) {
		p[0] = 3;			/* I/O interrupt */
		p[1] = 0;			/* INT */
		p[4] = 0;			/* ISA */
		p[5] = i;
		p[6] = vm->nr_vcpus;
		p[7] = i;
	}
	/* LINT0 is ExtINT (the PIC), LINT1 NMI, on every local APIC. */
	for (i = 0; i < 2; i++, p += 8, entries++) {
		p[0] = 4;
		p[1] = i ? 1 : 3;
		p[6] = 0xff;
		p[7] = i;
	}
	*(uint16_t *)(base + 16 + 4) = p - (base + 16);
	*(uint16_t *)(base + 16 + 34) = entries;
	base[16 + 7] = mp_sum(base + 16, p - (base + 16));
}

static void add_e820(struct boot_params *bp, uint64_t addr, uint64_t size,
		     uint32_t type)
{
	struct boot_e820_entry *e = &bp->e820_table[bp->e820_entries++];

	e->addr = addr;
	e->size = size;
	e->type = type;
}

/* Identity map of the first 4 GiB with 2 MiB pages, and a flat GDT. */
static void write_paging(struct vm *vm)
{
	uint64_t *pml4 = gpa(vm, PML4_ADDR, PAGE_SIZE);
	uint64_t *pdpt = gpa(vm, PDPT_ADDR, PAGE_SIZE);
	uint64_t *pd = gpa(vm, PD_ADDR, 4 * PAGE_SIZE);
	uint64_t *gdt = gpa(vm, GDT_ADDR, 32);
	int i;

	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	pml4[0] = PDPT_ADDR | 3;
	for (i = 0; i < 4; i++)
		pdpt[i] = (PD_ADDR + i * PAGE_SIZE) | 3;
	for (i = 0; i < 4 * 512; i++)
		pd[i] = ((uint64_t)i << 21) | 0x83;	/* present, rw, 2M */

	gdt[0] = 0;
	gdt[1] = 0;
	gdt[2] = 0x00af9b000000ffffULL;	/* 0x10: 64-bit code */
	gdt[3] = 0x00cf93000000ffffULL;	/* 0x18: data */
}

static void set_seg(struct kvm_segment *s, uint16_t sel, bool code)
{
	memset(s, 0, sizeof(*s));
	s->selector = sel;
	s->limit = 0xffffffff;
	s->type = code ? 11 : 3;
	s->present = 1;
	s->s = 1;
	s->g = 1;
	s->l = code;
	s->db = !code;
}

/* The bootstrap vCPU at the kernel's 64-bit entry point. */
static void start_bsp(struct vcpu *v)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		die(EXIT_UNSUPPORTED, "KVM_GET_SREGS failed: %s", strerror(errno));
	set_seg(&sregs.cs, 0x10, true);
	set_seg(&sregs.ds, 0x18, false);
	sregs.es = sregs.ds;
	sregs.fs = sregs.ds;
	sregs.gs = sregs.ds;
	sregs.ss = sregs.ds;
	sregs.gdt.base = GDT_ADDR;
	sregs.gdt.limit = 31;
	sregs.cr3 = PML4_ADDR;
	sregs.cr4 = 0x20;			/* PAE */
	sregs.cr0 = 0x80000011;			/* PG, ET, PE */
	sregs.efer = 0x500;			/* LMA, LME */
	if (ioctl(v->fd, KVM_SET_SREGS, &sregs) < 0)
		die(EXIT_UNSUPPORTED, "KVM_SET_SREGS failed: %s", strerror(errno));

	memset(&regs, 0, sizeof(regs));
	regs.rflags = 2;
	regs.rip = KERNEL_ADDR + 0x200;		/* startup_64 */
	regs.rsi = BOOT_PARAMS;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		die(EXIT_UNSUPPORTED, "KVM_SET_REGS failed: %s", strerror(errno));
}

void boot_linux(struct vm *vm, const char *kernel, const char *initrd,
		const char *cmdline)
{
	size_t ksize, isize = 0, setup, len = strlen(cmdline);
	struct boot_params *bp = gpa(vm, BOOT_PARAMS, sizeof(*bp));
	uint8_t *k = read_file(kernel, "kernel image", &ksize), *rd = NULL;
	uint64_t top, rd_addr = 0, run_at;
	struct setup_header *h;

	if (ksize < 0x1000 || memcmp(k + 0x202, "HdrS", 4))
		die(EXIT_USAGE,
		    "'%s' is not a bzImage (no HdrS header); pass the vmlinuz of a Debian kernel",
		    kernel);
	h = (struct setup_header *)(k + 0x1f1);
	if (h->version < 0x20c || !(h->xloadflags & XLF_KERNEL_64))
		die(EXIT_USAGE,
		    "'%s' has no 64-bit entry point (boot protocol %#x); pass an x86-64 kernel",
		    kernel, h->version);
	if (len >= CMDLINE_MAX || len >= h->cmdline_size)
		die(EXIT_USAGE, "the kernel command line is longer than %u bytes; shorten --append",
		    h->cmdline_size);
	setup = ((h->setup_sects ? h->setup_sects : 4) + 1) * 512;
	if (setup >= ksize)
		die(EXIT_USAGE, "'%s' is truncated", kernel);
	/*
	 * A relocatable kernel loaded below its preferred address moves
	 * there to decompress: that is where init_size counts from.
	 */
	run_at = h->pref_address > KERNEL_ADDR ? h->pref_address : KERNEL_ADDR;
	if (run_at + h->init_size > vm->mem_size / 2)
		die(EXIT_USAGE, "the kernel needs %u MiB to unpack; use a larger --mem",
		    h->init_size >> 19);
	memcpy(gpa(vm, KERNEL_ADDR, ksize - setup), k + setup, ksize - setup);

	memset(bp, 0, sizeof(*bp));
	memcpy(&bp->hdr, h, 0x202 + k[0x201] - 0x1f1);
	bp->hdr.type_of_loader = 0xff;
	bp->hdr.loadflags |= CAN_USE_HEAP;
	bp->hdr.heap_end_ptr = 0xfe00;
	bp->hdr.vid_mode = 0xffff;
	bp->hdr.cmd_line_ptr = CMDLINE_ADDR;
	memcpy(gpa(vm, CMDLINE_ADDR, len + 1), cmdline, len + 1);

	if (initrd) {
		rd = read_file(initrd, "initramfs", &isize);
		top = vm->mem_size;
		if (top > (uint64_t)h->initrd_addr_max + 1)
			top = (uint64_t)h->initrd_addr_max + 1;
		rd_addr = (top - isize) & ~(PAGE_SIZE - 1);
		if (isize >= top || rd_addr < run_at + h->init_size)
			die(EXIT_USAGE,
			    "the initramfs does not fit above the kernel; use a larger --mem");
		memcpy(gpa(vm, rd_addr, isize), rd, isize);
		bp->hdr.ramdisk_image = rd_addr;
		bp->hdr.ramdisk_size = isize;
	}

	add_e820(bp, 0, MPTABLE_ADDR, 1);
	add_e820(bp, MPTABLE_ADDR, 0xa0000 - MPTABLE_ADDR, 2);
	add_e820(bp, 0xf0000, 0x10000, 2);
	add_e820(bp, KERNEL_ADDR, vm->mem_size - KERNEL_ADDR, 1);

	write_mptable(vm);
	write_paging(vm);
	start_bsp(&vm->vcpus[0]);
	free(k);
	free(rd);
}
