#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# parity-table.sh RESULTS: print the stock/ours table of a parity run
# (RESULTS lines: "<stock|ours>/<group> name status") and exit 1 when a
# test passes on the stock modules but not on ours.
set -u
awk '
$1 ~ /^(stock|ours)\// {
	split($1, s, "/")
	key = s[2] "/" $2
	if (!(key in seen)) { seen[key] = 1; order[++n] = key }
	res[s[1], key] = $3
}
END {
	bad = 0
	printf "%-48s %-8s %-8s %s\n", "test", "stock", "ours", ""
	for (i = 1; i <= n; i++) {
		k = order[i]
		st = ((("stock", k) in res) ? res["stock", k] : "-")
		ou = ((("ours", k) in res) ? res["ours", k] : "-")
		verdict = ""
		if (st == "pass" && ou != "pass") { verdict = "REGRESSION"; bad++ }
		else if (st != ou) verdict = "differs"
		printf "%-48s %-8s %-8s %s\n", k, st, ou, verdict
	}
	printf "parity: %d tests, %d regression(s)\n", n, bad
	exit bad > 0
}' "$1"
