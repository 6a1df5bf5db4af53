#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Build kvm.ko, kvm-intel.ko and kvm-amd.ko for the target kernel and copy
# them to build/<release>/modules/.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

resolve_target
# shellcheck disable=SC2046 # package lists
need_pkgs $(build_pkgs)
need_headers
log "target: $KREL (series $KSERIES, headers $HDR)"

phase "prepare source tree"
"$TOP/scripts/prepare-tree.sh" kvm "$BUILD/kvm"
phase_end

phase "build modules"
VERSION=$(backport_version)
log "building kvm.ko, kvm-intel.ko, kvm-amd.ko ($VERSION)"
kmake -C "$HDR" -j"$(nproc)" M="$BUILD/kvm/arch/x86/kvm" \
	KVM_BACKPORT_VERSION="$VERSION" modules >"$BUILD/kbuild.log" 2>&1 || {
	grep -E 'error|Error|warning' "$BUILD/kbuild.log" | sed -n 1,40p >&2 || true
	die "module build failed (full log: $BUILD/kbuild.log)"
}
mkdir -p "$BUILD/modules"
for m in kvm kvm-intel kvm-amd; do
	cp "$BUILD/kvm/arch/x86/kvm/$m.ko" "$BUILD/modules/"
done
phase_end
log "modules in ${BUILD#"$TOP"/}/modules: $(cd "$BUILD/modules" && echo *.ko)"
