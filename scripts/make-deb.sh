#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make-deb.sh: build kvm-backport-dkms_<version>_all.deb in build/deb/
# from the files of this checkout (uncommitted changes included, and then
# the version says ".dirty").  The package carries our source, not
# modules: DKMS builds those on the machine it is installed on.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

need_pkgs dpkg-dev debhelper dh-dkms
VER=$(project_version)
[ "$VER" != unknown ] ||
	die "no version: make deb needs a git checkout or a VERSION file"
[ "$(git -C "$TOP" rev-parse --is-shallow-repository 2>/dev/null)" != true ] ||
	die "a shallow clone cannot count its commits for the version; run git fetch --unshallow"

# dkms.conf's BUILD_EXCLUSIVE_KERNEL must take exactly the kernels of
# the series we carry patches for.
re=$(sed -n 's/^BUILD_EXCLUSIVE_KERNEL="\(.*\)"$/\1/p' "$TOP/dkms.conf")
for s in $(supported_series); do
	for k in $(krel_samples "$s"); do
		[[ $k =~ $re ]] ||
			die "dkms.conf's BUILD_EXCLUSIVE_KERNEL does not take $k (series $s); add it"
	done
done
[[ ! 0.0.0-1-amd64 =~ $re ]] || die "dkms.conf's BUILD_EXCLUSIVE_KERNEL takes any kernel"
[[ ! 6.1.0-99-rt-amd64 =~ $re && ! 6.12.99+deb12-rt-amd64 =~ $re ]] ||
	die "dkms.conf's BUILD_EXCLUSIVE_KERNEL takes the -rt flavour, which we do not build for"
# ...and the package must hear of every series' linux-source arriving.
for s in $(supported_series); do
	grep -qx "interest-noawait /usr/src/linux-source-$s.tar.xz" \
		"$TOP/debian/kvm-backport-dkms.triggers" ||
		die "debian/kvm-backport-dkms.triggers has no line for linux-source-$s; add it"
done

OUT=$TOP/build/deb
STAGE=$OUT/kvm-backport-$VER
rm -rf "$OUT"
mkdir -p "$STAGE"
log "staging kvm-backport $VER in ${STAGE#"$TOP"/}"
# The work tree's files, less what git ignores (build/ among them).
cd "$TOP"
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$TOP" ]; then
	git ls-files -z --cached --others --exclude-standard
else
	find . -path ./build -prune -o -type f -printf '%P\0'
fi | while IFS= read -r -d '' f; do
	[ ! -f "$f" ] || printf '%s\0' "$f"
done | xargs -0 cp --parents -t "$STAGE" || die "cannot copy the source into $STAGE"
printf '%s\n' "$VER" >"$STAGE/VERSION"
cat >"$STAGE/debian/changelog" <<CHANGES
kvm-backport ($VER) unstable; urgency=medium

  * Built from $(cd "$TOP" && git log -1 --format='%h "%s"' 2>/dev/null || echo "$VER").

 -- kvm-backport maintainers <maintainers@kvm-backport.invalid>  $(date -R)
CHANGES

log "dpkg-buildpackage (log: ${OUT#"$TOP"/}/build.log)"
(cd "$STAGE" && dpkg-buildpackage -b -us -uc) >"$OUT/build.log" 2>&1 || {
	tail -n 20 "$OUT/build.log" >&2
	die "dpkg-buildpackage failed (log: $OUT/build.log)"
}
DEB=$OUT/kvm-backport-dkms_${VER}_all.deb
[ -f "$DEB" ] || die "dpkg-buildpackage made no $DEB"
rm -rf "$STAGE"
log "built ${DEB#"$TOP"/}"
