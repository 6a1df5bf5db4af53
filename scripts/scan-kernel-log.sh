#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# scan-kernel-log.sh < LOG: print the lines of a kernel log that report a
# kernel problem (oops, BUG, WARN, lockdep, KASAN/UBSAN/kmemleak, hung
# task, KVM bug); exit 1 when there are some.
#
# Reports are matched where the kernel starts them: right after the
# "[ time]" prefix, or after a lower-case subsystem prefix ("watchdog: BUG:
# soft lockup", "rcu: INFO: rcu_preempt detected stalls"), so that boot
# messages merely mentioning a word (e.g. "RETBleed: WARNING: Spectre v2
# mitigation ...") are not taken for one.
set -u
grep -E \
	-e '(^|\] )([a-z_]+: )?(WARNING|BUG|INFO|UBSAN|KASAN|ODEBUG): ' \
	-e 'hard LOCKUP' \
	-e '(^|\] )------------\[ cut here \]' \
	-e 'kernel BUG at ' \
	-e 'Oops: ' \
	-e 'general protection fault' \
	-e 'Kernel panic' \
	-e 'unreferenced object 0x' \
	-e 'kvm.*: .*\bbug\b' \
	&& exit 1
exit 0
