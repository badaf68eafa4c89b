#!/usr/bin/env bash
# The main job, live: sets up the machine (Debian packages), builds, and runs
# runner-provisioner against the bundled CircleCI and Kubernetes simulators
# with bursts of jobs, showing tasks, desired VMs and VMs by state as they
# change.  Ctrl-C stops it.  Arguments go to scripts/demo.py (--help).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/scripts/setup.sh" --no-tools
"$repo/scripts/build.sh" build
exec env RP_BUILD_DIR="$repo/build" /usr/bin/python3 "$repo/scripts/demo.py" "$@"
