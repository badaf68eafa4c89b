#!/usr/bin/env bash
# The benchmarks (DESIGN §11): sets the machine up, builds a Release daemon
# into build-bench, runs every scenario of tests/bench/bench.py against the
# simulators (about 50 minutes on 2 cores), prints the table and writes
# bench-results/results.json.  docs/performance.md has the published
# figures and what each one means.
#
# Usage: scripts/bench.sh [bench.py arguments, e.g. --scenarios steady,latency
#                          or --smoke]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh" --no-tools
echo "bench: building a Release daemon in build-bench"
"$repo/scripts/build.sh" build-bench -DCMAKE_BUILD_TYPE=Release -DRP_TESTS=OFF
exec /usr/bin/python3 "$repo/tests/bench/bench.py" \
	--build-dir "$repo/build-bench" \
	--out "$repo/bench-results/results.json" "$@"
