// SPDX-License-Identifier: GPL-2.0-only
/*
 * The first PC serial port (I/O 0x3f8, IRQ 4) as a 16550 without FIFOs
 * and without input: enough for Linux's 8250 driver to use it as console
 * and as the tty of the guest's programs.  Output goes to stdout, each
 * line prefixed so that the guest's lines stand apart from the VMM's.
 *
 * "Transmitter empty" is the only interrupt: a character is out the
 * moment it is written, so the interrupt is pending whenever the guest
 * has enabled it and has not read IIR since the last write.  The line
 * (KVM_IRQ_LINE 4) follows that condition; the MP table makes it an ISA
 * interrupt, edge-triggered, so each rise is one interrupt.
 *
 * Called by vCPU threads with vm->lock held.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vmm.h"

#define COM1		0x3f8
#define COM1_IRQ	4

#define UART_IER_THRI	0x02
#define UART_IIR_NO_INT	0x01
#define UART_IIR_THRI	0x02
#define UART_LCR_DLAB	0x80
#define UART_LSR_TEMT	0x40
#define UART_LSR_THRE	0x20
#define UART_MSR_DCD_DSR_CTS	0xb0

static void serial_irq(struct vm *vm)
{
	struct serial *s = &vm->serial;
	struct kvm_irq_level irq = { .irq = COM1_IRQ };
	bool level = (s->ier & UART_IER_THRI) && s->thr_irq;

	if (level == s->irq_level)
		return;
	s->irq_level = level;
	irq.level = level;
	if (ioctl(vm->fd, KVM_IRQ_LINE, &irq) < 0)
		die(EXIT_GUEST_FAILED, "KVM_IRQ_LINE failed: %s", strerror(errno));
}

/*
 * What in a guest's kernel log means that the guest (or KVM under it)
 * went wrong: a panic, an oops, a WARN, a BUG, a hung task, a lockup.
 */
static const char *const problems[] = {
	"Kernel panic", "Oops", "WARNING:", "BUG:", "blocked for more than",
	"soft lockup", "hard LOCKUP", "Call Trace:",
};

static void serial_line(struct vm *vm, struct serial *s)
{
	bool show = !vm->quiet || !strncmp(s->line, "kbp-guest:", 10);
	unsigned int i;

	s->line[s->len] = 0;
	memcpy(vm->last[vm->nr_last++ % 8], s->line, s->len + 1);
	for (i = 0; i < ARRAY_SIZE(problems); i++) {
		if (strstr(s->line, problems[i])) {
			/* Everything from here on: the report's context. */
			vm->serial_problems++;
			vm->quiet = false;
			show = true;
			break;
		}
	}
	if (show) {
		printf("| %s\n", s->line);
		fflush(stdout);
	}
	s->len = 0;
}

static void serial_out(struct vm *vm, uint8_t c)
{
	struct serial *s = &vm->serial;

	if (c == '\r')
		return;
	if (c != '\n')
		s->line[s->len++] = c;
	if (c == '\n' || s->len == sizeof(s->line) - 1)
		serial_line(vm, s);
}

/* A register the guest reads back as it wrote it. */
static void plain_reg(uint8_t *reg, bool in, uint8_t *data)
{
	if (in)
		*data = *reg;
	else
		*reg = *data;
}

/* An access to one of the port's registers; false: not this device. */
bool serial_io(struct vm *vm, uint16_t port, bool in, uint8_t *data)
{
	struct serial *s = &vm->serial;
	bool dlab = s->lcr & UART_LCR_DLAB;

	if (port < COM1 || port > COM1 + 7)
		return false;
	switch (port - COM1) {
	case 0:
		if (dlab) {
			plain_reg(&s->dll, in, data);
		} else if (in) {
			*data = 0;		/* no input */
		} else {
			serial_out(vm, *data);
			s->thr_irq = true;
		}
		break;
	case 1:
		if (dlab) {
			plain_reg(&s->dlm, in, data);
		} else if (in) {
			*data = s->ier;
		} else {
			if (!(s->ier & UART_IER_THRI) && (*data & UART_IER_THRI))
				s->thr_irq = true;
			s->ier = *data & 0x0f;
		}
		break;
	case 2:
		if (!in)
			break;			/* FCR: no FIFOs */
		if ((s->ier & UART_IER_THRI) && s->thr_irq) {
			*data = UART_IIR_THRI;
			s->thr_irq = false;
		} else {
			*data = UART_IIR_NO_INT;
		}
		break;
	case 3:
		plain_reg(&s->lcr, in, data);
		break;
	case 4:
		if (in)
			*data = s->mcr;
		else
			s->mcr = *data & 0x1f;
		break;
	case 5:
		if (in)
			*data = UART_LSR_TEMT | UART_LSR_THRE;
		break;
	case 6:
		if (in)
			*data = UART_MSR_DCD_DSR_CTS;
		break;
	case 7:
		plain_reg(&s->scr, in, data);
		break;
	}
	serial_irq(vm);
	return true;
}
