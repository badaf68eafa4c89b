#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine to build, test and demo
# runner-provisioner: the Debian packages it needs, then the chart-test tools
# (helm, kubectl, kubernetes-models) via scripts/install-tools.sh.
# Idempotent: packages already present are not reinstalled.
#
# Usage: scripts/setup.sh [--no-tools]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Build: compilers (clang and libFuzzer for the fuzz harnesses), CMake and
# the -dev packages of every library we link.
# Test: cmocka, the simulators' python3 modules, and the real tools the tests
# run (promtool, nngcat, cloud-init, shellcheck, yamllint, openssl); time
# zones for schedules; sudo, useradd and mkfs for the VM boot script's
# sandbox test.
# Image: mmdebstrap and umoci build it (scripts/image.sh), crun runs it, the
# OCI image-spec's JSON schemas check it, and podman, containerd and
# docker.io load it (the tests start private daemons of their own).
packages=(
	gcc make cmake pkg-config clang-format
	clang libfuzzer-14-dev libclang-rt-14-dev
	libcurl4-openssl-dev libjansson-dev libyaml-dev libssl-dev libnng-dev
	libmicrohttpd-dev libseccomp-dev libcmocka-dev
	python3 python3-yaml python3-jsonschema
	prometheus nng-utils cloud-init shellcheck yamllint openssl curl
	procps util-linux valgrind unzip
	tzdata sudo passwd e2fsprogs
	mmdebstrap umoci crun golang-github-opencontainers-image-spec-dev
	podman containerd docker.io
)

# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	apt_install "${missing[@]}"
else
	echo "setup: Debian packages present"
fi

if [ "${1:-}" != "--no-tools" ]; then
	"$repo/scripts/install-tools.sh"
fi
