#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# check.sh [default|parity]
#
# Boot the target's stock Debian kernel in QEMU with our modules and the
# KVM selftests in an initramfs, and report TAP.
#
#   default  our modules: our selftests (tools/selftests/backport.list)
#            and the upstream regression list
#            (tools/selftests/<series>/upstream.list)
#   parity   every upstream selftest that builds, on the stock modules and
#            then on ours in the same boot, and a side-by-side table
#
# Exits non-zero on any failed test, a guest that does not finish, or a
# guest kernel log with an oops, BUG, WARN, lockdep report or KVM bug.
#
# Environment: KBP_ACCEL=tcg|kvm (default: kvm when /dev/kvm boots the
# test VM, else tcg), KBP_TIMEOUT (seconds for the whole VM run).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

MODE=${1:-default}
case $MODE in
default|parity) ;;
*) die "unknown check mode '$MODE'" ;;
esac

resolve_target
need_pkgs qemu-system-x86 busybox-static cpio kmod xz-utils
log "target: $KREL, mode: $MODE"

phase "build modules"
"$TOP/scripts/build.sh"
phase_end

phase "build selftests"
"$TOP/scripts/selftests.sh"
phase_end

phase "fetch stock kernel"
STOCK=$BUILD/stock
ver=$(pkg_version "$HDR_PKG")
if [ "$(cat "$STOCK/.version" 2>/dev/null)" != "$ver" ]; then
	rm -rf "$STOCK"
	mkdir -p "$STOCK"
	log "downloading linux-image-$KREL $ver (not installed)"
	dl() {
		(cd "$STOCK" && apt-get download -q -o APT::Sandbox::User=root \
			"linux-image-$KREL=$ver" >/dev/null 2>&1)
	}
	if ! dl; then
		[ "$(id -u)" -eq 0 ] || die "apt-get download linux-image-$KREL=$ver failed; run apt-get update"
		apt-get update -qq >/dev/null 2>&1
		dl || die "apt-get download linux-image-$KREL=$ver failed"
	fi
	dpkg-deb -x "$STOCK"/linux-image-*.deb "$STOCK/root"
	rm -f "$STOCK"/linux-image-*.deb
	echo "$ver" >"$STOCK/.version"
fi
KMOD=$STOCK/root/lib/modules/$KREL/kernel
VMLINUZ=$STOCK/root/boot/vmlinuz-$KREL
phase_end

phase "initramfs"
LISTS=$TOP/tools/selftests
RD=$BUILD/initramfs
rm -rf "$RD"
mkdir -p "$RD"/{bin,dev,proc,sys,tmp,modules/stock,modules/ours,tests/upstream,tests/backport,lists}
cp /bin/busybox "$RD/bin/busybox"
ln -s busybox "$RD/bin/sh"
cp "$TOP/scripts/guest-init.sh" "$RD/init"
cp "$TOP/scripts/run-tests.sh" "$RD/run-tests.sh"
for m in virt/lib/irqbypass drivers/crypto/ccp/ccp arch/x86/kvm/kvm \
	 arch/x86/kvm/kvm-amd arch/x86/kvm/kvm-intel; do
	f=$KMOD/$m.ko
	[ -f "$f" ] || f=$f.xz
	case $f in
	*.xz) xz -dc "$f" >"$RD/modules/stock/$(basename "$m").ko" ;;
	*) cp "$f" "$RD/modules/stock/" ;;
	esac
done
cp "$BUILD"/modules/*.ko "$RD/modules/ours/"
modinfo -F version "$RD/modules/ours/kvm.ko" >"$RD/modules/ours/version"

cp "$LISTS/backport.list" "$RD/lists/backport.list"
cp "$BUILD"/selftests/backport/* "$RD/tests/backport/"
if [ "$MODE" = parity ]; then
	# Every upstream test that built, with the arguments of the default
	# list where it has some (sized for software emulation).
	for t in "$BUILD"/selftests/upstream/*; do
		n=$(basename "$t")
		grep -m 1 "^$n\([[:space:]]\|$\)" "$LISTS/$KSERIES/upstream.list" || echo "$n"
	done >"$RD/lists/parity.list"
	cp "$BUILD"/selftests/upstream/* "$RD/tests/upstream/"
else
	cp "$LISTS/$KSERIES/upstream.list" "$RD/lists/upstream.list"
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$LISTS/$KSERIES/upstream.list" |
		awk '{ print $1 }' | while read -r n; do
		[ -x "$BUILD/selftests/upstream/$n" ] ||
			die "$n is in $KSERIES/upstream.list but was not built"
		cp "$BUILD/selftests/upstream/$n" "$RD/tests/upstream/"
	done
fi
(cd "$RD" && find . | cpio -o -H newc --quiet) >"$BUILD/initramfs.cpio"
log "initramfs: $(du -m "$BUILD/initramfs.cpio" | cut -f1) MiB"
phase_end

# A VM run: console (kernel log) and results (ttyS1) go to files.
qemu_run() {
	local accel=$1 append=$2 timeout=$3
	local cpu=max
	: >"$BUILD/console.log"
	: >"$BUILD/results.log"
	timeout -s KILL "$timeout" qemu-system-x86_64 \
		-machine q35 -accel "$accel" -cpu "$cpu" -smp 2 -m 4G \
		-kernel "$VMLINUZ" -initrd "$BUILD/initramfs.cpio" \
		-append "console=ttyS0 panic=-1 oops=panic $append" \
		-display none -monitor none -no-reboot \
		-serial "file:$BUILD/console.log" \
		-serial "file:$BUILD/results.log" </dev/null
}

ACCEL=${KBP_ACCEL:-}
if [ -z "$ACCEL" ]; then
	ACCEL=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		log "probing whether /dev/kvm can run the test VM"
		if qemu_run kvm "kbp.mode=probe" 60 >/dev/null 2>&1 &&
			grep -q '^@@done' "$BUILD/results.log"; then
			ACCEL=kvm
		fi
	fi
fi
[ "$ACCEL" = tcg ] && ACCEL=tcg,thread=multi

phase "boot and run tests"
TIMEOUT=${KBP_TIMEOUT:-$([ "$MODE" = parity ] && echo 5000 || echo 2400)}
log "booting $KREL in QEMU ($ACCEL, 2 vCPUs, -cpu max), timeout ${TIMEOUT}s"
RES=$BUILD/results.$MODE
: >"$RES"
echo "TAP version 13"
qemu_run "$ACCEL" "kbp.mode=$MODE" "$TIMEOUT" &
qpid=$!
tail -n +1 -F --pid=$qpid "$BUILD/results.log" 2>/dev/null |
	awk -v RESULTS="$RES" -f "$TOP/scripts/tap.awk"
wait $qpid || true
phase_end

# What the test list did not say: whether the guest finished, and whether
# its kernel log is clean.
n=$(wc -l <"$RES")
synth() { echo "RESULT $*"; }
{
	if grep -q '^@@done' "$BUILD/results.log"; then
		synth vm finished pass 0
	else
		synth vm finished fail 0 "the guest did not finish (timeout or crash); console: ${BUILD#"$TOP"/}/console.log"
	fi
	# The log dumped by the guest, and the console for a guest that died.
	KLOG=$BUILD/kernel.log
	{ sed -n '/^@@dmesg/,/^@@done/p' "$BUILD/results.log"; cat "$BUILD/console.log"; } >"$KLOG"
	bad=$("$TOP/scripts/scan-kernel-log.sh" <"$KLOG" || true)
	if [ -z "$bad" ]; then
		synth vm kernel-log-clean pass 0
	else
		printf '%s\n' "$bad" | sort -u | head -n 40 | sed 's/^/#   /'
		synth vm kernel-log-clean fail 0 "$(printf '%s\n' "$bad" | wc -l) report line(s) in the guest kernel log"
	fi
} | awk -v START="$n" -v RESULTS="$RES" -f "$TOP/scripts/tap.awk"

total=$(wc -l <"$RES")
echo "1..$total"

if [ "$MODE" = parity ]; then
	"$TOP/scripts/parity-table.sh" "$RES" || PARITY_BAD=1
fi

phase_summary
passed=$(awk '$3 == "pass"' "$RES" | wc -l)
skipped=$(awk '$3 == "skip"' "$RES" | wc -l)
failed=$((total - passed - skipped))
if [ "$MODE" = parity ]; then
	# Parity judges regressions, not tests that fail on both module sets.
	failed=$(awk '$3 != "pass" && $3 != "skip" && $1 !~ /^(stock|ours)\//' "$RES" | wc -l)
	[ -z "${PARITY_BAD:-}" ] || failed=$((failed + 1))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
