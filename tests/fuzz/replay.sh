#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Suite fuzz-replay: each fuzz target runs once over every input of its
# corpus (tests/fuzz/corpus/<target>/, -runs=0: no fuzzing), under ASan and
# UBSan. One TAP line per target; a crash, a sanitizer report or an empty
# corpus fails it.
set -u
cd "$(dirname "$0")/../.."
FUZZ_BUILD=${FUZZ_BUILD:-build/fuzz}
. tests/sanitize/options.sh
targets=(frame hello reorder)
echo "1..${#targets[@]}"
n=0 bad=0
for t in "${targets[@]}"; do
	n=$((n + 1))
	bin=$FUZZ_BUILD/${t}_fuzz
	corpus=tests/fuzz/corpus/$t
	files=$(find "$corpus" -type f 2>/dev/null | wc -l)
	if [ ! -x "$bin" ]; then
		echo "not ok $n - $t: $bin not built (make fuzzers)"
		bad=1
		continue
	fi
	if [ "$files" -eq 0 ]; then
		echo "not ok $n - $t: corpus $corpus is empty"
		bad=1
		continue
	fi
	log=$FUZZ_BUILD/replay-$t.log
	mkdir -p "$FUZZ_BUILD"
	"$bin" -runs=0 -artifact_prefix="$FUZZ_BUILD/replay-$t-" "$corpus" >"$log" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ] && ! grep -qE '==ERROR|runtime error' "$log"; then
		echo "ok $n - $t: $files corpus inputs replayed, no crash or sanitizer report"
	else
		echo "not ok $n - $t: replaying $files corpus inputs: status $rc (log $log)"
		grep -E -A 25 '==ERROR|runtime error|deadly signal' "$log" | head -30 | sed 's/^/#   /'
		bad=1
	fi
done
exit $bad
