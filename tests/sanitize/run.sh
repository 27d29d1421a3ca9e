#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs a suite on the sanitizer build (tests/sanitize/sanitize.mk), TAP on
# stdout:
#   run.sh unit          the Catch2 unit tests, one line per test case, and
#                        one more: no sanitizer report at all (leaks show
#                        only at exit, after the last test case passed)
#   run.sh e2e [ARGS]    tests/e2e/run.py ARGS on the sanitizer build's
#                        agentproxy and echo_server; a report fails its test
# ASAN_BUILD picks the build folder (default build/asan).
set -u
cd "$(dirname "$0")/../.."
ASAN_BUILD=${ASAN_BUILD:-build/asan}
. tests/sanitize/options.sh

case "${1:-}" in
unit)
	bin=$ASAN_BUILD/unit_tests
	logs=$ASAN_BUILD/test-logs/unit
	rm -rf "$logs" && mkdir -p "$logs"
	# ASan and LSan reports go to $logs/report.PID (catch2_tap.py keeps
	# only the tail of stderr); UBSan's (GCC) stay on stderr, but a
	# UBSan report halts the run, which catch2_tap.py reports as a failure.
	ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$logs/report" \
		python3 tests/catch2_tap.py "$bin" >"$logs/tap" 2>"$logs/stderr"
	rc=$?
	grep -v '^1\.\.[0-9]*$' "$logs/tap"
	cat "$logs/stderr" >&2
	n=$(grep -cE '^(not )?ok [0-9]+' "$logs/tap")
	n=$((n + 1))
	reports=$(find "$logs" -name 'report.*' -size +0 | sort)
	ubsan=$(grep -hE -m 30 -A 12 ': runtime error: ' "$logs/tap" "$logs/stderr" | head -n 30)
	if [ -n "$reports" ] || [ -n "$ubsan" ]; then
		echo "not ok $n - $bin: no sanitizer report"
		for r in $reports; do
			echo "# $r:"
			head -n 30 "$r" | sed 's/^/#   /'
		done
		[ -z "$ubsan" ] || { echo "# UBSan:"; echo "$ubsan" | sed 's/^/#   /'; }
		rc=1
	else
		echo "ok $n - $bin: no sanitizer report"
	fi
	echo "1..$n"
	exit $rc
	;;
e2e)
	shift
	E2E_BUILD=$ASAN_BUILD E2E_SANITIZE=1 exec python3 tests/e2e/run.py "$@"
	;;
*)
	echo "usage: run.sh unit | e2e [run.py ARGS]" >&2
	exit 2
	;;
esac
