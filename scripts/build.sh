#!/usr/bin/env bash
# Configures and builds into build/ (or $1), passing the rest to cmake, e.g.
#   scripts/build.sh build-asan -DRP_SANITIZE=ON
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-build}
shift || true
case "$dir" in /*) ;; *) dir="$repo/$dir" ;; esac
cmake -S "$repo" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)"
