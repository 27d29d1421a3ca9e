#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs every test suite and ends with one summary line, `N passed, N failed`
# (the skipped count on the line before). Each suite writes TAP (`ok N - name`, `not ok N - name`,
# `ok N - name # SKIP reason`) on stdout; a suite that exits non-zero
# without reporting a failure counts as one failure.
#
# Suites are listed in tests/suites: one `name command...` per line.
# SUITES="unit e2e" bash tests/run.sh runs a subset.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"
rm -f "$LOGDIR/failures" "$LOGDIR/summary"

pass=0 fail=0 skip=0
failed_names=()
while read -r name cmd; do
	case "$name" in ''|'#'*) continue ;; esac
	if [ -n "${SUITES:-}" ] && [[ " $SUITES " != *" $name "* ]]; then
		continue
	fi
	echo "=== suite $name: $cmd"
	log=$LOGDIR/$name.tap
	# The suite's own output goes to the console as it runs (long runs
	# show progress) and to the log we count from.
	bash -c "$cmd" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	p=$(grep -cE '^ok [0-9]+' "$log" | head -1)
	s=$(grep -cE '^ok [0-9]+.*# *SKIP' "$log" | head -1)
	f=$(grep -cE '^not ok [0-9]+' "$log" | head -1)
	p=$((p - s))
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "not ok - suite $name exited with status $rc"
		f=1
	fi
	if [ $((p + f + s)) -eq 0 ]; then
		echo "not ok - suite $name reported no test"
		f=1
	fi
	grep -E '^not ok' "$log" | sed "s/^/  [$name] /" >>"$LOGDIR/failures"
	[ "$f" -gt 0 ] && failed_names+=("$name")
	echo "=== suite $name: $p passed, $f failed, $s skipped (rc $rc)" | sed 's/passed,/passed;/'
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
done < tests/suites

echo
if [ ${#failed_names[@]} -gt 0 ]; then
	echo "failing suites: ${failed_names[*]} (logs in $LOGDIR)"
fi
echo "$skip skipped (each with its reason in the suite's log)"
# CI reads the last line: exactly "N passed, N failed".
echo "$pass passed, $fail failed" | tee "$LOGDIR/summary"
[ "$fail" -eq 0 ]
