// SPDX-License-Identifier: GPL-2.0-only
/* Version tag of a kvm-backport build; the string comes from our Kbuild. */
#include <linux/module.h>

MODULE_VERSION(KVM_BACKPORT_VERSION);
