#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz; clang, ASan + UBSan) and runs
# each for a bounded time, several at once.  Stops with exit status 1 when a
# harness crashes, fails a check, times out or runs out of memory; the input
# is kept under BUILD/fuzz-artifacts/NAME/ and the command to replay it is
# printed.  New inputs accumulate in BUILD/fuzz-corpus/NAME, so later runs
# start where earlier ones stopped.
#
# Usage: scripts/fuzz.sh [--seconds N] [--jobs N] [--build DIR] [NAME...]
#   --seconds N  time per harness (default 20)
#   --jobs N     harnesses run at once (default: the number of CPUs)
#   --build DIR  build directory (default build-fuzz)
#   NAME         harnesses to run (default: all of them)
# Extra libFuzzer flags can be given in RP_FUZZ_FLAGS.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
seconds=20
jobs=$(nproc)
build="$repo/build-fuzz"
names=()
while [ "$#" -gt 0 ]; do
	case "$1" in
	--seconds) seconds=$2; shift 2 ;;
	--jobs) jobs=$2; shift 2 ;;
	--build) build=$2; shift 2 ;;
	-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
	*) names+=("$1"); shift ;;
	esac
done
case "$build" in /*) ;; *) build="$repo/$build" ;; esac

echo "fuzz: building the harnesses in $build"
CC=clang cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	-DRP_FUZZ=ON >/dev/null
cmake --build "$build" --target fuzz -j "$(nproc)" >/dev/null

if [ "${#names[@]}" -eq 0 ]; then
	for bin in "$build"/fuzz/*; do
		names+=("$(basename "$bin")")
	done
fi

# One harness: its own corpus first (libFuzzer adds new inputs there), then
# the committed seeds and regression inputs.
run_one() {
	local name=$1 src="$repo/tests/fuzz"
	local corpus="$build/fuzz-corpus/$name" art="$build/fuzz-artifacts/$name"
	local log="$build/fuzz-logs/$name.log" dict=() dirs=()
	mkdir -p "$corpus" "$art" "$build/fuzz-logs"
	[ -f "$src/dict/$name.dict" ] && dict=("-dict=$src/dict/$name.dict")
	for d in "$src/corpus/$name" "$src/regression/$name"; do
		[ -d "$d" ] && dirs+=("$d")
	done
	# shellcheck disable=SC2086 # RP_FUZZ_FLAGS is a list of flags
	if ASAN_OPTIONS=detect_leaks=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		"$build/fuzz/$name" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
		-artifact_prefix="$art/" "${dict[@]}" ${RP_FUZZ_FLAGS:-} \
		"$corpus" "${dirs[@]}" >"$log" 2>&1; then
		echo "fuzz: $name: $(grep -m1 -o 'number_of_executed_units: [0-9]*' \
			"$log" | sed 's/.*: //') runs, $(find "$corpus" -type f |
			wc -l) inputs in its corpus"
		return 0
	fi
	echo "fuzz: $name FAILED; last lines of $log:"
	grep -v '^#[0-9]' "$log" | tail -n 40
	for f in "$art"/*; do
		[ -f "$f" ] && echo "fuzz: replay with: $build/fuzz/$name $f"
	done
	return 1
}

echo "fuzz: ${#names[@]} harnesses, ${seconds}s each, $jobs at a time"
export -f run_one
export repo build seconds
# shellcheck disable=SC2016 # $1 expands in the child shell
if ! printf '%s\n' "${names[@]}" |
	xargs -P "$jobs" -I{} bash -c 'run_one "$1"' _ {}; then
	echo "fuzz: a harness failed"
	exit 1
fi
echo "fuzz: no failures"
