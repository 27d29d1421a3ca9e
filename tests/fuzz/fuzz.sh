#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make fuzz`: fuzzes each target named on the command line for
# FUZZ_SECONDS (default 60), then merges the corpus and what the run found
# into a minimal set (-merge=1 into an empty folder: only inputs that add
# coverage) that replaces tests/fuzz/corpus/<target>/. Crashes go to
# $FUZZ_BUILD/artifacts/; the exit status says if there was any.
set -u
cd "$(dirname "$0")/../.."
FUZZ_BUILD=${FUZZ_BUILD:-build/fuzz}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
. tests/sanitize/options.sh

# Inputs longer than this are not tried: a frame stream of a few frames,
# a HELLO and a pick byte, a few hundred reorder operations.
max_len() {
	case "$1" in
	frame) echo 4096 ;;
	hello) echo 64 ;;
	reorder) echo 1024 ;;
	esac
}

failed=()
for t in "$@"; do
	bin=$FUZZ_BUILD/${t}_fuzz
	corpus=tests/fuzz/corpus/$t
	work=$FUZZ_BUILD/work/$t
	art=$FUZZ_BUILD/artifacts
	rm -rf "$work" && mkdir -p "$work/new" "$work/min" "$art" "$corpus"
	before=$(find "$corpus" -type f | wc -l)
	echo "fuzz $t: $FUZZ_SECONDS s from $before corpus inputs"
	"$bin" -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$t")" -timeout=10 \
		-print_final_stats=1 -artifact_prefix="$art/$t-" "$work/new" "$corpus" \
		>"$work/fuzz.log" 2>&1
	rc=$?
	grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ +DONE' "$work/fuzz.log" |
		sed "s/^/fuzz $t: /"
	if [ "$rc" -ne 0 ]; then
		echo "fuzz $t: FOUND A CRASH (status $rc), log $work/fuzz.log:"
		grep -E -A 25 '==ERROR|runtime error|deadly signal|Test unit written' "$work/fuzz.log" | head -40
		failed+=("$t")
	fi
	"$bin" -merge=1 -max_len="$(max_len "$t")" -timeout=10 "$work/min" "$corpus" "$work/new" \
		>"$work/merge.log" 2>&1 || { echo "fuzz $t: merge failed, see $work/merge.log"; failed+=("$t"); continue; }
	rm -f "$corpus"/* && cp "$work/min"/* "$corpus"/
	echo "fuzz $t: corpus $before -> $(find "$corpus" -type f | wc -l) inputs"
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: crashes or errors in: ${failed[*]} (artifacts in $FUZZ_BUILD/artifacts)"; exit 1; }
