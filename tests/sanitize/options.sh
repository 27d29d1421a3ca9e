# SPDX-License-Identifier: MIT
# Sanitizer run-time options of every sanitized run (sourced by
# tests/sanitize/run.sh and tests/fuzz/replay.sh). Any report ends the
# process with status $SAN_EXITCODE (86: no agentproxy status), which the
# e2e harness also reads from ASAN_OPTIONS.
SAN_EXITCODE=86
# detect_leaks: LeakSanitizer at exit. abort_on_error=0: exit with exitcode,
# no core. detect_stack_use_after_return, strict_string_checks and
# check_initialization_order widen what ASan looks at.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=$SAN_EXITCODE:halt_on_error=1:\
detect_stack_use_after_return=1:strict_string_checks=1:check_initialization_order=1:\
strict_init_order=1:print_summary=1${ASAN_OPTIONS_EXTRA:+:$ASAN_OPTIONS_EXTRA}"
# halt_on_error: the build has -fno-sanitize-recover=undefined; say it here too.
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:report_error_type=1:exitcode=$SAN_EXITCODE"
# No LSan/UBSan suppressions: none is needed for third-party libraries
# (liburing, libbpf, fmt, OpenSSL); project code is never suppressed.
