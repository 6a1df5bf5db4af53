#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# refresh-series.sh start <series> [source tarball or dir]
# refresh-series.sh resume <series>
# refresh-series.sh export <series>
#
# Refresh patches/<series>/ for a new distro kernel, quilt-style, in a git
# tree under build/refresh/<series>/:
#
# start   extracts the distro source (default
#         /usr/src/linux-source-<series>.tar.xz, or the tarball or tree
#         given), commits it as the base (tag refresh-base) and applies the
#         series with "git am -3", one commit per patch, in series order.
# resume  applies the rest of the series after a patch that did not apply
#         was fixed, "git add -f"-ed (the top-level .gitignore of Debian's
#         source ignores everything) and committed with "git am --continue".
# export  writes the commits back to patches/<series>/ under the names the
#         series gives them, in our header conventions: "From 000...000"
#         (no commit id), the author and date of the commit, "[PATCH]"
#         subjects without numbering, no signature, and the index lines'
#         abbreviation of the file it replaces, so that a refresh shows up
#         in "git diff patches/" as what really changed.
#
# The N-th commit on refresh-base is the N-th patch of the series.
set -euo pipefail
# shellcheck source=SCRIPTDIR/lib.sh
. "$(dirname "$0")/lib.sh"

ME=scripts/refresh-series.sh
USAGE="usage: $ME start <series> [source tarball or dir] | resume <series> | export <series>"
IDENT=(-c "user.name=$PROJECT maintainers" -c "user.email=maintainers@$PROJECT.invalid")

[ $# -ge 2 ] || die "$USAGE"
CMD=$1
SERIES=$2
case $CMD in
start) [ $# -le 3 ] || die "$USAGE" ;;
resume | export) [ $# -eq 2 ] || die "$USAGE" ;;
*) die "unknown command '$CMD'; $USAGE" ;;
esac
SERIES_DIR=$TOP/patches/$SERIES
[ -f "$SERIES_DIR/series" ] ||
	die "no patch series '$SERIES' (patches/$SERIES/series); series: $(supported_series | paste -sd' ')"
DIR=$TOP/build/refresh/$SERIES
REL=${DIR#"$TOP"/}
mapfile -t PATCHES < <(list_entries "$SERIES_DIR/series")

g() { git -C "$DIR" "${IDENT[@]}" "$@"; }

# in_progress: die when a "git am" waits for a fix in the tree.
in_progress() {
	[ ! -d "$DIR/.git/rebase-apply" ] ||
		die "a patch is still being applied in $REL: fix it there, git add -f the files, git am --continue (or git am --abort), then: $ME resume $SERIES"
}

# applied: how many patches of the series the tree has as commits.
applied() {
	g rev-parse -q --verify refresh-base >/dev/null ||
		die "$REL has no refresh-base (start was interrupted?): rm -rf $REL and run $ME start $SERIES again"
	g rev-list --count refresh-base..HEAD
}

# apply_rest: git am -3 each patch not applied yet, one at a time, so that
# a failure names its patch.
apply_rest() {
	local n i
	in_progress
	n=$(applied)
	[ "$n" -le ${#PATCHES[@]} ] ||
		die "$REL has $n commits on refresh-base but patches/$SERIES/series lists ${#PATCHES[@]}: name the new ones in series first"
	for ((i = n; i < ${#PATCHES[@]}; i++)); do
		if ! g am -q -3 "$SERIES_DIR/${PATCHES[i]}" >"$DIR.am.log" 2>&1; then
			# git am's own advice (--skip in particular) does not fit here.
			grep -v -e '^hint:' -e '^Patch failed at' -e '^When you have resolved' \
				-e '^If you prefer to skip' -e '^To restore the original' \
				"$DIR.am.log" | sed -n 1,20p >&2 || true
			die "${PATCHES[i]} does not apply: fix the conflicts in $REL, git add -f the files, git am --continue there, then: $ME resume $SERIES"
		fi
	done
	rm -f "$DIR.am.log"
	log "$REL: all ${#PATCHES[@]} patches of patches/$SERIES applied; after any change: $ME export $SERIES"
}

start() {
	local src=${1:-/usr/src/linux-source-$SERIES.tar.xz} ver
	[ ! -e "$DIR" ] ||
		die "$REL already exists: $ME resume $SERIES or $ME export $SERIES, or rm -rf $REL to start again"
	[ -e "$src" ] ||
		die "no source $src: install linux-source-$SERIES or name a source tarball or tree"
	src=$(realpath "$src")
	[ ! -d "$src" ] || [ -f "$src/Makefile" ] ||
		die "$src has no Makefile: name the top of a Linux source tree"
	mkdir -p "$DIR"
	log "extracting $src into $REL"
	if [ -d "$src" ]; then
		tar -C "$src" --exclude=./.git -cf - . | tar -C "$DIR" -xf -
	else
		tar -xf "$src" -C "$DIR" --strip-components=1 ||
			{ rm -rf "$DIR"; die "cannot extract $src: name a Linux source tarball or tree"; }
	fi
	if [ ! -f "$DIR/Makefile" ] || [ ! -d "$DIR/virt/kvm" ]; then
		rm -rf "$DIR"
		die "$src is not a Linux source tree with KVM: name the distro's linux-source"
	fi
	ver=$(sed -n -e 's/^VERSION = //p' -e 's/^PATCHLEVEL = //p' -e 's/^SUBLEVEL = //p' \
		"$DIR/Makefile" | paste -sd.)
	log "committing Linux $ver as refresh-base"
	g init -q
	# For whoever continues a "git am" by hand in the tree.
	g config user.name "$PROJECT maintainers"
	g config user.email "maintainers@$PROJECT.invalid"
	g add -A -f
	g commit -q -m "Linux $ver from $src"
	g tag refresh-base
	apply_rest
}

# abbrev_of FILE: the length of the blob ids in FILE's index lines, so an
# export keeps them as they are; git's default when FILE is new.
abbrev_of() {
	local id
	[ -f "$1" ] || return 0
	id=$(sed -n 's/^index \([0-9a-f]*\)\.\..*/\1/p; T; q' "$1")
	[ -z "$id" ] || echo "--abbrev=${#id}"
}

export_series() {
	local n i commit file subj want changed
	local -a commits abbrev
	[ -d "$DIR" ] || die "no $REL: $ME start $SERIES first"
	in_progress
	n=$(applied)
	[ "$n" -eq ${#PATCHES[@]} ] ||
		die "$REL has $n commits on refresh-base but patches/$SERIES/series lists ${#PATCHES[@]}: $ME resume $SERIES, or make series list one patch per commit"
	mapfile -t commits < <(g rev-list --reverse refresh-base..HEAD)
	for ((i = 0; i < n; i++)); do
		commit=${commits[i]}
		file=$SERIES_DIR/${PATCHES[i]}
		if [ -f "$file" ]; then
			subj=$(g log -1 --format=%s "$commit")
			want=$(g mailinfo /dev/null /dev/null <"$file" | sed -n 's/^Subject: //p')
			[ "$subj" = "$want" ] ||
				die "commit $((i + 1)) on refresh-base is '$subj' but ${PATCHES[i]} is '$want': name the patch of each commit in patches/$SERIES/series, in order"
		fi
		mapfile -t abbrev < <(abbrev_of "$file")
		g format-patch -1 --stdout --zero-commit --no-signature --no-numbered \
			--subject-prefix=PATCH --no-thread --no-to --no-cc --no-add-header \
			--no-base --diff-algorithm=myers "${abbrev[@]}" "$commit" >"$file.new"
		mv "$file.new" "$file"
	done
	changed=$(git -C "$TOP" status --porcelain -- "patches/$SERIES" | wc -l)
	log "exported $n patches to patches/$SERIES ($changed file(s) differ from git; see git diff patches/$SERIES)"
}

case $CMD in
start) start "${3:-}" ;;
resume)
	[ -d "$DIR" ] || die "no $REL: $ME start $SERIES first"
	apply_rest
	;;
export) export_series ;;
esac
