# SPDX-License-Identifier: GPL-2.0
#
# Turn run-tests.sh output into TAP as it arrives: "RESULT" lines become
# numbered ok/not ok lines (from START + 1) and "#" lines pass through as
# TAP comments.  Each result is also appended to RESULTS as "set name
# status", from which the caller makes the summary and the parity table.
# Lines from "@@dmesg" on are the guest's kernel log: they are not printed
# here (the caller scans them).
BEGIN { n = START + 0; inlog = 0 }
{ sub(/\r$/, "") }
/^@@dmesg/ { inlog = 1; next }
/^@@done/ { inlog = 0; next }
inlog { next }
/^RESULT / {
	set = $2; name = $3; status = $4; secs = $5
	note = ""
	for (i = 6; i <= NF; i++)
		note = note (i > 6 ? " " : "") $i
	n++
	if (status == "pass") {
		printf "ok %d %s/%s # %ss%s\n", n, set, name, secs, note == "" ? "" : ", " note
	} else if (status == "skip") {
		printf "ok %d %s/%s # SKIP %s\n", n, set, name, note == "" ? "no reason given" : note
	} else {
		printf "not ok %d %s/%s # %s after %ss%s\n", n, set, name, status, secs, note == "" ? "" : ": " note
	}
	if (RESULTS != "")
		print set, name, status >> RESULTS
	fflush()
	next
}
/^#/ { print; fflush(); next }
