#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite twice: a normal build
# and an AddressSanitizer + UndefinedBehaviorSanitizer build.  Unit tests,
# simulator tests, end-to-end tests against both simulators, chart and image
# tests, cloud-init checks, and a short benchmark smoke run.
#
# Usage: scripts/test.sh [ctest arguments, e.g. -R e2e -j2]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh"

run_suite() {
	local dir=$1
	shift
	echo "test: building $dir"
	"$repo/scripts/build.sh" "$dir" "$@"
	echo "test: running the suite in $dir"
	(cd "$repo/$dir" && ctest --output-on-failure --timeout 900 "${ctest_args[@]}")
}

ctest_args=("$@")
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
run_suite build
run_suite build-asan -DRP_SANITIZE=ON
echo "test: all suites passed"
