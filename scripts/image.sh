#!/usr/bin/env bash
# Builds the runner-provisioner container image without a container engine:
#
#   build/image/      OCI image layout, tag <version> (umoci, skopeo, crun)
#   build/image.tar   the same image as one archive that `docker load`,
#                     `podman load` and `ctr import` accept (an OCI layout
#                     plus Docker's manifest.json, as `docker save` writes it)
#
# Two layers.  The first holds the Debian 12 packages of
# deploy/runtime-packages.txt and their dependencies, unpacked by mmdebstrap
# (--variant=extract: no maintainer scripts run, nothing else installed);
# their executables, documentation (copyright files stay) and the maintainer-
# script helpers are removed, so the image has no shell and no package
# manager.  What their maintainer scripts would have done is done here: the
# CA bundle (the host's update-ca-certificates on the image's certificates),
# the dynamic linker cache (ldconfig -r), /var/lib/dpkg/status (so
# vulnerability scanners see the packages), users and directories.  The
# second layer holds the three binaries, built as deploy/Dockerfile builds
# them (Release, stripped).
#
# Runs as root (mmdebstrap's root mode; its unshare mode, for a user with
# unprivileged user namespaces, is not tested).  Needs mmdebstrap, umoci,
# dpkg-deb, readelf, tar, python3, cmake and the -dev packages
# (scripts/setup.sh installs them) and Debian's archive.
#
# The Debian layer is cached in the work directory and rebuilt only when
# runtime-packages.txt, this script, the mirrors or the libraries the
# binaries link change (or with --refresh, to pick up Debian updates); the image is rewritten only when a
# layer or the configuration changed.  With SOURCE_DATE_EPOCH set (default:
# the commit time of HEAD) every timestamp in the image is clamped to it.
#
# Usage: scripts/image.sh [options]
#   --out DIR           OCI layout to write (default build/image)
#   --tar FILE          archive to write (default build/image.tar)
#   --work DIR          build and cache directory (default build/image-work)
#   --repository NAME   image name in the archive (default circleci/runner-provisioner)
#   --tag TAG           image tag (default: the project version)
#   --mirror URL        Debian mirror (default http://deb.debian.org/debian;
#                       e.g. a snapshot.debian.org URL to pin the packages)
#   --security-mirror URL  (default http://deb.debian.org/debian-security)
#   --refresh           rebuild the Debian layer even when it is cached
set -euo pipefail

self=$(readlink -f "${BASH_SOURCE[0]}")
repo=$(cd "$(dirname "$self")/.." && pwd)

# Paths (relative to the image root, globs allowed) that the runtime does not
# use: every executable (the binaries bring their own), documentation,
# translations, what only maintainer scripts use (debconf and its Perl
# modules), and glibc's iconv modules for legacy character sets (8 MiB;
# nothing here converts between charsets: the daemon runs in the C locale,
# and UTF-8, UTF-16, UTF-32 and ISO-8859-1 are built into libc).  Copyright
# files stay.
readonly DROP_PATHS=(
	bin sbin usr/bin usr/sbin usr/libexec usr/games 'usr/lib/*/gconv'
	usr/share/man usr/share/info usr/share/locale usr/share/lintian
	usr/share/bash-completion usr/share/pixmaps usr/share/debconf
	usr/share/perl5 usr/lib/ssl/misc etc/debconf.conf var/cache/debconf
	etc/resolv.conf etc/hostname etc/update-motd.d
)
# Shared objects kept although no binary links them: what glibc loads by
# itself (libgcc_s for thread cancellation and backtraces, the NSS modules
# nsswitch.conf names) and OpenSSL's providers and engines (openssl.cnf may
# name them).  Every other shared object no binary loads is removed: the
# Berkeley DB behind SASL's sasldb plugin, libm/libmvec, Kerberos and SASL
# plugins, glibc's debugging and compatibility libraries (about 5 MiB).
readonly KEEP_UNLINKED=('*/libgcc_s.so.1' '*/libnss_files.so.2' '*/libnss_dns.so.2' '*/ossl-modules/*'
	'*/engines-3/*')
# Removed from mmdebstrap's tarball: apt's and dpkg's own files, which
# mmdebstrap itself uses until its cleanup.
readonly DROP_AFTER=(./etc/apt ./etc/dpkg ./var/lib/apt ./var/cache/apt ./var/log)
readonly SUITE=bookworm
readonly UID_NONROOT=65532
# deploy/Dockerfile's build stage uses the same flags (tests/image checks).
readonly CMAKE_FLAGS=(-DRP_TESTS=OFF -DRP_WERROR=OFF -DCMAKE_BUILD_TYPE=Release
	-DCMAKE_INSTALL_PREFIX=/usr/local)

log() { printf 'image: %s\n' "$*" >&2; }
die() {
	printf 'image: error: %s\n' "$*" >&2
	exit 1
}

# The package names of deploy/runtime-packages.txt, one per line.
runtime_packages() {
	sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$repo/deploy/runtime-packages.txt"
}

# --- the Debian layer's contents (run by mmdebstrap as its extract hook: the
# extract variant runs no other) -------
# $1: the image root, with the packages unpacked and their .deb files still in
# var/cache/apt/archives; $2: the installed binaries (DESTDIR of cmake --install).
customize_rootfs() {
	local root=$1 stage=$2 deb pkg link target
	[ -d "$root/usr/lib" ] || die "customize: $root is not an unpacked root"
	umask 022

	# /var/lib/dpkg/status from the packages' own control files.
	local status
	status=$(mktemp)
	for deb in "$root"/var/cache/apt/archives/*.deb; do
		dpkg-deb --field "$deb" | awk '{ print } NR == 1 { print "Status: install ok installed" }'
		echo
	done >"$status"
	grep -q '^Package: libc6$' "$status" || die "customize: no packages in $root/var/cache/apt/archives"
	rm -rf "${root:?}/var/lib/dpkg"
	install -d -m 0755 "$root/var/lib/dpkg"
	install -m 0644 "$status" "$root/var/lib/dpkg/status"
	rm -f "$status"

	# The CA bundle and hash links, as ca-certificates' postinst makes them:
	# every certificate it ships, none of the host's.
	(cd "$root/usr/share/ca-certificates" && find . -name '*.crt' | sed 's|^\./||' | LC_ALL=C sort) \
		>"$root/etc/ca-certificates.conf"
	install -d -m 0755 "$root/etc/ssl/certs" "$root/usr/local/share/ca-certificates" \
		"$root/etc/ca-certificates/update.d"
	update-ca-certificates --fresh --certsconf "$root/etc/ca-certificates.conf" \
		--certsdir "$root/usr/share/ca-certificates" \
		--localcertsdir "$root/usr/local/share/ca-certificates" \
		--etccertsdir "$root/etc/ssl/certs" --hooksdir "$root/etc/ca-certificates/update.d" >/dev/null
	# Its links name the certificates by their path here: make them the
	# image's paths.
	for link in "$root"/etc/ssl/certs/*.pem; do
		[ -L "$link" ] || continue
		target=$(readlink "$link")
		case "$target" in "$root"/*) ln -sfn "${target#"$root"}" "$link" ;; esac
	done
	[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || die "customize: no CA bundle"

	# Executables, documentation, maintainer-script helpers.
	local p
	for pkg in "${DROP_PATHS[@]}"; do
		for p in "${root:?}"/$pkg; do
			rm -rf "$p"
		done
	done
	find "$root/usr/share/doc" -mindepth 1 \( -type f -o -type l \) ! -name copyright -delete
	find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete

	# Shared objects no binary loads.  The image's own loader lists what the
	# binaries load, resolved inside the image.
	local interp libdirs loaded f keep
	interp=$(readelf -l "$stage/usr/local/bin/runner-provisioner" |
		sed -n 's/.*Requesting program interpreter: \(.*\)]$/\1/p')
	[ -x "$root$interp" ] || die "customize: no $interp in the image"
	# The multiarch directories, /lib/<triplet> and /usr/lib/<triplet>.
	f=$(find "$root/lib" -name libc.so.6 -printf '%h' -quit)
	[ -n "$f" ] || die "customize: no libc.so.6 in the image"
	libdirs="$f:$root/usr/lib/${f##*/}"
	loaded=$(for f in "$stage"/usr/local/bin/*; do
		"$root$interp" --inhibit-cache --library-path "$libdirs" --list "$f"
	done | sed -n 's/^[[:space:]]*.* => \(\/[^ ]*\) (0x[0-9a-f]*)$/\1/p' | sort -u)
	grep -q '/libcurl\.so' <<<"$loaded" || die "customize: cannot list the binaries' libraries: $loaded"
	f=$(grep -v "^$root/" <<<"$loaded" || true)
	[ -z "$f" ] || die "customize: libraries found outside the image: $f"
	loaded=$(xargs -r readlink -f <<<"$loaded" | sort -u)
	while IFS= read -r f; do
		keep=0
		grep -qxF "$f" <<<"$loaded" && keep=1
		# The loader (its path in the image is an absolute symlink).
		case "$f" in */"${interp##*/}") keep=1 ;; esac
		for pkg in "${KEEP_UNLINKED[@]}"; do
			# shellcheck disable=SC2254
			case "$f" in $pkg) keep=1 ;; esac
		done
		[ "$keep" -eq 1 ] || rm -f "$f"
	done < <(find "$root/lib" "$root/usr/lib" -type f \( -name '*.so' -o -name '*.so.*' \))
	find "$root/lib" "$root/usr/lib" -xtype l -delete
	find "$root/usr/lib" -mindepth 1 -type d -empty -delete

	# Users (the chart runs the pod as 65532:65532), name service, directories.
	cat >"$root/etc/passwd" <<-EOF
		root:x:0:0:root:/root:/nonexistent
		nobody:x:65534:65534:nobody:/nonexistent:/nonexistent
		nonroot:x:$UID_NONROOT:$UID_NONROOT:nonroot:/nonexistent:/nonexistent
	EOF
	cat >"$root/etc/group" <<-EOF
		root:x:0:
		nogroup:x:65534:
		nonroot:x:$UID_NONROOT:
	EOF
	printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
	chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"
	install -d -m 1777 "$root/tmp"
	install -d -m 0755 "$root/run" "$root/var" "$root/root"
	chmod 0700 "$root/root"
	# /var/run is /run, as Debian's base system links it.
	if [ ! -L "$root/var/run" ]; then
		rmdir "$root/var/run" 2>/dev/null || true
		ln -s /run "$root/var/run"
	fi
	# The IPC socket directory for a plain container run (in the pod it is an
	# emptyDir mounted here).
	install -d -m 0700 -o "$UID_NONROOT" -g "$UID_NONROOT" "$root/run/runner-provisioner"

	# The dynamic linker cache, as libc-bin's trigger would write it.
	ldconfig -r "$root"
	rm -rf "${root:?}/var/cache/ldconfig"

	# Nothing that could start a program but the linker and the libraries.
	local bad
	bad=$(find "$root" -xdev -type f -perm /111 ! -name '*.so' ! -name '*.so.*' -print | sed "s|^$root||")
	[ -z "$bad" ] || die "customize: executables left in the image: $bad"
}

if [ "${1:-}" = "--customize-rootfs" ]; then
	customize_rootfs "$2" "$3"
	exit 0
fi

# --- options ---------------------------------------------------------------------
out="$repo/build/image"
tarball="$repo/build/image.tar"
work="$repo/build/image-work"
repository=circleci/runner-provisioner
tag=
mirror=http://deb.debian.org/debian
security_mirror=http://deb.debian.org/debian-security
refresh=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out | --tar | --work | --repository | --tag | --mirror | --security-mirror)
		[ $# -ge 2 ] || die "$1 needs a value"
		case "$1" in
		--out) out=$2 ;;
		--tar) tarball=$2 ;;
		--work) work=$2 ;;
		--repository) repository=$2 ;;
		--tag) tag=$2 ;;
		--mirror) mirror=$2 ;;
		--security-mirror) security_mirror=$2 ;;
		esac
		shift 2
		;;
	--refresh)
		refresh=1
		shift
		;;
	-h | --help)
		sed -n '2,/^set -e/{/^#/p}' "$self" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*) die "unknown argument: $1 (see --help)" ;;
	esac
done
version=$(sed -n 's/^project(runner-provisioner VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
[ -n "$version" ] || die "no project version in CMakeLists.txt"
tag=${tag:-$version}
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag: $tag"
[[ "$repository" =~ ^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$ ]] ||
	die "invalid repository: $repository (lower-case path components, no registry port)"
for tool in mmdebstrap umoci dpkg-deb update-ca-certificates ldconfig readelf python3 cmake flock; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (run scripts/setup.sh)"
done

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
mkdir -p "$work"
work=$(cd "$work" && pwd)
# One build at a time per work directory (CTest may start two image tests).
exec 9>"$work/.lock"
flock 9

# --- binaries ----------------------------------------------------------------------
log "building the binaries (Release)"
cmake -S "$repo" -B "$work/cmake" "${CMAKE_FLAGS[@]}" >/dev/null
cmake --build "$work/cmake" -j "$(nproc)" >/dev/null
rm -rf "$work/stage"
DESTDIR="$work/stage" cmake --install "$work/cmake" --strip >/dev/null
for b in runner-provisioner runner-provisioner-poller runner-provisioner-actuator; do
	[ -x "$work/stage/usr/local/bin/$b" ] || die "cmake --install did not install $b"
done
# Deterministic tar of a directory's contents: $1 directory, $2 output.
det_tar() {
	tar --sort=name --format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		--mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime --owner=0 --group=0 --numeric-owner \
		-C "$1" -cf "$2" .
}
chmod 0755 "$work/stage" "$work/stage/usr" "$work/stage/usr/local" "$work/stage/usr/local/bin"
det_tar "$work/stage" "$work/app.tar"

# --- the Debian layer ----------------------------------------------------------------
mapfile -t packages < <(runtime_packages)
[ "${#packages[@]}" -gt 0 ] || die "deploy/runtime-packages.txt lists no package"
sources=("deb $mirror $SUITE main" "deb $mirror $SUITE-updates main"
	"deb $security_mirror $SUITE-security main")
# The Debian layer keeps the libraries the binaries load: it depends on the
# libraries they link, not on their code.
needed=$(for b in "$work"/stage/usr/local/bin/*; do readelf -d "$b"; done |
	sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p' | sort -u)
base_key=$( (
	printf '%s\n' "${packages[@]}" "${sources[@]}" "$needed"
	sha256sum <"$self"
) | sha256sum | cut -c1-64)
if [ "$refresh" -eq 1 ] || [ ! -s "$work/base.tar" ] || [ "$(cat "$work/base.key" 2>/dev/null)" != "$base_key" ]; then
	log "unpacking ${packages[*]} and their dependencies (mmdebstrap)"
	rm -f "$work/base.tar" "$work/base.key"
	mmdebstrap --quiet --variant=extract --format=tar --skip=chroot/mount,output/dev,cleanup/run \
		--aptopt='APT::Install-Recommends "false"' --aptopt='Acquire::Retries "3"' \
		--include="$(
			IFS=,
			echo "${packages[*]}"
		)" \
		--extract-hook="\"$self\" --customize-rootfs \"\$1\" \"$work/stage\"" \
		"$SUITE" "$work/base.tar.new" "${sources[@]}"
	tar --delete -f "$work/base.tar.new" "${DROP_AFTER[@]}"
	mv "$work/base.tar.new" "$work/base.tar"
	echo "$base_key" >"$work/base.key"
else
	log "Debian layer up to date ($work/base.tar)"
fi

# --- the image ---------------------------------------------------------------------
image_key=$( (
	echo "$base_key $repository $tag $created"
	sha256sum "$work/base.tar" "$work/app.tar" | cut -c1-64
) | sha256sum | cut -c1-64)
if [ -f "$out/index.json" ] && [ -s "$tarball" ] &&
	[ "$(cat "$work/image.key" 2>/dev/null)" = "$image_key" ]; then
	log "image up to date"
else
	log "packing the OCI image (umoci)"
	rm -rf "$work/layout"
	umoci init --layout "$work/layout"
	umoci new --image "$work/layout:$tag"
	umoci raw add-layer --image "$work/layout:$tag" --history.created "$created" \
		--history.created_by "mmdebstrap --variant=extract $SUITE: ${packages[*]}" \
		--history.comment "Debian $SUITE runtime libraries, no shell or package manager" "$work/base.tar"
	umoci raw add-layer --image "$work/layout:$tag" --history.created "$created" \
		--history.created_by "cmake ${CMAKE_FLAGS[*]} && cmake --install --strip" \
		--history.comment "runner-provisioner $version" "$work/app.tar"
	umoci config --image "$work/layout:$tag" --no-history --created "$created" \
		--os linux --architecture "$(dpkg --print-architecture)" \
		--config.user "$UID_NONROOT:$UID_NONROOT" \
		--config.entrypoint /usr/local/bin/runner-provisioner \
		--config.env PATH=/usr/local/bin:/usr/bin:/bin \
		--config.exposedports 8000/tcp --config.exposedports 8001/tcp \
		--config.stopsignal SIGTERM --config.workingdir / \
		--config.label org.opencontainers.image.title=runner-provisioner \
		--config.label "org.opencontainers.image.description=Keeps CircleCI self-hosted machine runners as KubeVirt VMs" \
		--config.label "org.opencontainers.image.version=$version" \
		--config.label "org.opencontainers.image.created=$created"
	umoci gc --layout "$work/layout"
	# The archive: the layout, plus the names docker and containerd read.
	python3 - "$work/layout" "$tag" "$repository" "$SOURCE_DATE_EPOCH" "$tarball.new" <<-'EOF'
		import io, json, os, sys, tarfile
		layout, tag, repository, epoch, dest = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
		def blob(digest):
		    return "blobs/" + digest.replace(":", "/", 1)
		with open(os.path.join(layout, "index.json")) as f:
		    index = json.load(f)
		(desc,) = [m for m in index["manifests"]
		           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
		with open(os.path.join(layout, blob(desc["digest"]))) as f:
		    manifest = json.load(f)
		name = repository if "/" in repository else "library/" + repository
		desc["annotations"]["io.containerd.image.name"] = "docker.io/%s:%s" % (name, tag)
		docker = [{"Config": blob(manifest["config"]["digest"]),
		           "RepoTags": ["%s:%s" % (repository, tag)],
		           "Layers": [blob(l["digest"]) for l in manifest["layers"]]}]
		files = {"oci-layout": open(os.path.join(layout, "oci-layout"), "rb").read(),
		         "index.json": json.dumps({"schemaVersion": 2, "manifests": [desc]}).encode(),
		         "manifest.json": json.dumps(docker).encode()}
		with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
		    def add(name, data=None, path=None):
		        info = tarfile.TarInfo(name)
		        info.mtime, info.mode, info.uid, info.gid = epoch, 0o644, 0, 0
		        if path is not None:
		            info.size = os.path.getsize(path)
		            with open(path, "rb") as f:
		                tar.addfile(info, f)
		        else:
		            info.size = len(data)
		            tar.addfile(info, io.BytesIO(data))
		    for d in ("blobs", "blobs/sha256"):
		        info = tarfile.TarInfo(d)
		        info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
		        tar.addfile(info)
		    for digest in sorted({desc["digest"], manifest["config"]["digest"]} |
		                         {l["digest"] for l in manifest["layers"]}):
		        add(blob(digest), path=os.path.join(layout, blob(digest)))
		    for n in sorted(files):
		        add(n, files[n])
	EOF
	rm -rf "$out.new"
	mv "$work/layout" "$out.new"
	rm -rf "$out"
	mv "$out.new" "$out"
	mv "$tarball.new" "$tarball"
	echo "$image_key" >"$work/image.key"
fi

# --- summary -----------------------------------------------------------------------
python3 - "$out" "$tag" "$tarball" "$repository" <<-'EOF'
	import gzip, json, os, sys
	out, tag, tarball, repository = sys.argv[1:5]
	def blob(d):
	    return os.path.join(out, "blobs", *d.split(":", 1))
	index = json.load(open(os.path.join(out, "index.json")))
	(desc,) = [m for m in index["manifests"]
	           if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
	manifest = json.load(open(blob(desc["digest"])))
	compressed = sum(l["size"] for l in manifest["layers"])
	unpacked = 0
	for l in manifest["layers"]:
	    with gzip.open(blob(l["digest"])) as f:
	        while True:
	            n = len(f.read(1 << 20))
	            if not n:
	                break
	            unpacked += n
	mib = lambda n: "%.1f MiB" % (n / 1048576)
	print("image: %s:%s %s" % (repository, tag, desc["digest"]))
	print("image: layout %s, archive %s (%s)" % (out, tarball, mib(os.path.getsize(tarball))))
	print("image: %d layers, %s compressed (gzip, as pulled), %s uncompressed (layer tars)"
	      % (len(manifest["layers"]), mib(compressed), mib(unpacked)))
EOF
