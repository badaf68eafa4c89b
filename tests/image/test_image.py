#!/usr/bin/python3
"""The runtime image, built by scripts/image.sh and booted with crun.

Run: /usr/bin/python3 tests/image/test_image.py   (CTest: image/test_image)
Needs root (crun without a daemon, mount and network namespaces), mmdebstrap,
umoci, crun, the OCI image-spec schemas (golang-github-opencontainers-image-
spec-dev) and helm (scripts/setup.sh installs them all), and Debian's archive
for the first build (later runs reuse build/image-work).

- scripts/image.sh builds the image into $RP_BUILD_DIR/image (OCI layout) and
  $RP_BUILD_DIR/image.tar; the tests read the archive, as a user loading it
  would: OCI image-spec schemas, digests, diff IDs, Docker's manifest.json,
  containerd's image name, the image configuration;
- the root filesystem: no shell, no package manager, no executable but the
  three binaries and the libraries; users, directories, CA bundle, time
  zones, os-release; the Debian packages in it are exactly the ones apt
  resolves for deploy/runtime-packages.txt, as deploy/Dockerfile installs
  them; the binaries are the Release build of the Dockerfile's flags and find
  every library inside the image;
- the image run as the chart's pod runs it: the Deployment and Secret that
  `helm template` renders become an OCI runtime configuration (uid/gid 65532
  with the fsGroup, read-only root, no capabilities, no_new_privs, the
  Secret's files mounted read-only with mode 0440, a 4 MiB tmpfs for the run
  directory, the service-account directory and KUBERNETES_SERVICE_*), crun
  runs it against the CircleCI and Kubernetes simulators: the supervisor is
  PID 1, /live and /ready answer, the pool follows the queue, SIGTERM stops
  it with status 0;
- the archive loaded by the real engines: `podman load` (no daemon),
  `ctr image import` into a private containerd, `docker load` into a private
  dockerd (vfs storage, no iptables, no bridge).

The test process moves itself into private network and mount namespaces
after the build: the container binds the chart's ports (:8000, :8001) on a
loopback nobody else shares, and crun finds no cgroup controllers to manage
(--cgroup-manager=disabled; a tmpfs hides the host's /sys/fs/cgroup, whose
hybrid v1/v2 layout crun 1.8 refuses).  The pod's seccomp profile,
RuntimeDefault, is the container runtime's: here the default profile of
containers-common (/usr/share/containers/seccomp.json, what CRI-O and podman
apply; containerd's is the same Docker-derived allow list), resolved for a
container without capabilities as the runtimes resolve it.
"""
import base64
import ctypes
import datetime
import fcntl
import fnmatch
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest
import zoneinfo
from pathlib import Path

import jsonschema

HERE = Path(__file__).resolve().parent
SRC = Path(os.environ.get("RP_SOURCE_DIR") or HERE.parents[1]).resolve()
BUILD = Path(os.environ.get("RP_BUILD_DIR") or SRC / "build").resolve()
sys.path.insert(0, str(SRC / "tests" / "e2e"))
sys.path.insert(0, str(SRC / "tests" / "chart"))
import harness  # noqa: E402
import helmlib  # noqa: E402
import kubesim  # noqa: E402

IMAGE_SH = SRC / "scripts" / "image.sh"
DOCKERFILE = SRC / "deploy" / "Dockerfile"
PACKAGES_FILE = SRC / "deploy" / "runtime-packages.txt"
OUT = BUILD / "image"
TARBALL = BUILD / "image.tar"
WORK = BUILD / "image-work"
SPEC_SCHEMAS = Path("/usr/share/gocode/src/github.com/opencontainers/image-spec/schema")
SECCOMP_PROFILE = Path("/usr/share/containers/seccomp.json")
REPOSITORY = "circleci/runner-provisioner"
BINARIES = ("runner-provisioner", "runner-provisioner-poller", "runner-provisioner-actuator")
ENTRYPOINT = "/usr/local/bin/runner-provisioner"
UID = 65532
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CLASS = "my-org/image-test"

VERSION = re.search(r"^project\(runner-provisioner VERSION ([0-9.]+)", (SRC / "CMakeLists.txt").read_text(),
                    re.M).group(1)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def runtime_packages():
    return [w for line in PACKAGES_FILE.read_text().splitlines()
            for w in line.split("#", 1)[0].split()]


# --- the build, once for the whole file -----------------------------------------

class Build:
    output = ""
    seconds = 0.0
    tmp = None        # private directory of this run
    layout = None     # the archive, extracted
    rootfs = None     # the image's root filesystem, unpacked by umoci
    bundle = None     # umoci's bundle (config.json from the image configuration)


def build_image():
    if os.geteuid() != 0:
        raise AssertionError("the image tests need root (mmdebstrap, umoci unpack, crun, namespaces)")
    for tool in ("mmdebstrap", "umoci", "crun", "readelf", "apt-get", "podman", "containerd", "ctr", "dockerd",
                 "docker"):
        if not shutil.which(tool):
            raise AssertionError(f"{tool} not found: run scripts/setup.sh")
    if not SPEC_SCHEMAS.is_dir() or not SECCOMP_PROFILE.is_file():
        raise AssertionError(f"{SPEC_SCHEMAS} or {SECCOMP_PROFILE} missing: run scripts/setup.sh")
    t0 = time.monotonic()
    r = subprocess.run([str(IMAGE_SH), "--out", str(OUT), "--tar", str(TARBALL), "--work", str(WORK)],
                       capture_output=True, text=True, timeout=840)
    Build.seconds = time.monotonic() - t0
    Build.output = r.stdout + r.stderr
    if r.returncode != 0:
        raise AssertionError(f"scripts/image.sh failed ({r.returncode}):\n{Build.output[-6000:]}")
    sys.stderr.write(f"\n{Build.output.strip()}\nimage: scripts/image.sh took {Build.seconds:.1f} s\n")
    Build.tmp = Path(tempfile.mkdtemp(prefix="rp-image-"))
    Build.layout = Build.tmp / "archive"
    Build.layout.mkdir()
    with tarfile.open(TARBALL) as tar:
        for m in tar.getmembers():
            if m.name.startswith("/") or ".." in m.name.split("/") or not (m.isfile() or m.isdir()):
                raise AssertionError(f"{TARBALL}: unsafe member {m.name!r}")
        tar.extractall(Build.layout)
    Build.bundle = Build.tmp / "bundle"
    r = subprocess.run(["umoci", "unpack", "--image", f"{Build.layout}:{VERSION}", str(Build.bundle)],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"umoci unpack of the archive failed:\n{r.stderr}")
    Build.rootfs = Build.bundle / "rootfs"


# --- private namespaces for crun ---------------------------------------------------

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def enter_private_namespaces():
    """This process (single-threaded here) gets its own network namespace
    with loopback up, and its own mount namespace where /sys/fs/cgroup is
    an empty tmpfs."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    _check(_libc.mount(b"rp-cgroup", b"/sys/fs/cgroup", b"tmpfs", 0, b"size=64k"), "mount tmpfs /sys/fs/cgroup")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifr))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def setUpModule():
    build_image()
    enter_private_namespaces()


def tearDownModule():
    if Build.tmp is not None and os.environ.get("RP_E2E_KEEP") != "1":
        shutil.rmtree(Build.tmp, ignore_errors=True)


# --- reading the archive -------------------------------------------------------------

def blob_path(digest):
    algo, _, hexd = digest.partition(":")
    return Build.layout / "blobs" / algo / hexd


def read_json(path):
    with open(path) as f:
        return json.load(f)


def image_manifest():
    index = read_json(Build.layout / "index.json")
    (desc,) = index["manifests"]
    return desc, read_json(blob_path(desc["digest"]))


def image_config():
    _, manifest = image_manifest()
    return read_json(blob_path(manifest["config"]["digest"]))


def spec_validator(name):
    """A validator for one of the image-spec's JSON schemas; their $refs
    (by URL) resolve to the files next to it."""
    schema = read_json(SPEC_SCHEMAS / name)

    def local(uri):
        return read_json(SPEC_SCHEMAS / uri.split("#", 1)[0].rsplit("/", 1)[-1])
    resolver = jsonschema.RefResolver(schema.get("id", ""), schema, handlers={"https": local, "http": local})
    return jsonschema.Draft4Validator(schema, resolver=resolver)


class T01Archive(unittest.TestCase):
    def errors(self, schema, doc):
        return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in spec_validator(schema).iter_errors(doc)]

    def test_layout_follows_the_image_spec(self):
        self.assertEqual(self.errors("image-layout-schema.json", read_json(Build.layout / "oci-layout")), [])
        self.assertEqual(self.errors("image-index-schema.json", read_json(Build.layout / "index.json")), [])
        desc, manifest = image_manifest()
        self.assertEqual(desc["mediaType"], "application/vnd.oci.image.manifest.v1+json")
        self.assertEqual(self.errors("image-manifest-schema.json", manifest), [])
        self.assertEqual(self.errors("config-schema.json", image_config()), [])
        # The validators do find errors.
        self.assertNotEqual(self.errors("image-manifest-schema.json", dict(manifest, schemaVersion=1)), [])
        self.assertNotEqual(self.errors("config-schema.json", {"architecture": 5, "os": "linux"}), [])

    def test_every_blob_matches_its_descriptor(self):
        desc, manifest = image_manifest()
        config = image_config()
        for d in [desc, manifest["config"], *manifest["layers"]]:
            with self.subTest(digest=d["digest"]):
                path = blob_path(d["digest"])
                self.assertEqual(sha256_file(path), d["digest"])
                self.assertEqual(path.stat().st_size, d["size"])
        self.assertEqual(len(manifest["layers"]), 2, "a Debian layer and a binaries layer")
        diff_ids = []
        for layer in manifest["layers"]:
            self.assertEqual(layer["mediaType"], LAYER_GZIP)
            h = hashlib.sha256()
            with gzip.open(blob_path(layer["digest"])) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            diff_ids.append("sha256:" + h.hexdigest())
        self.assertEqual(config["rootfs"], {"type": "layers", "diff_ids": diff_ids})
        referenced = {desc["digest"], manifest["config"]["digest"], *(l["digest"] for l in manifest["layers"])}
        present = {"sha256:" + p.name for p in (Build.layout / "blobs" / "sha256").iterdir()}
        self.assertEqual(present, referenced, "blobs nothing references, or references to missing blobs")

    def test_names_for_docker_and_containerd(self):
        desc, manifest = image_manifest()
        self.assertEqual(desc["annotations"], {
            "org.opencontainers.image.ref.name": VERSION,
            "io.containerd.image.name": f"docker.io/{REPOSITORY}:{VERSION}"})
        blob = lambda d: "blobs/" + d.replace(":", "/", 1)
        self.assertEqual(read_json(Build.layout / "manifest.json"), [{
            "Config": blob(manifest["config"]["digest"]),
            "RepoTags": [f"{REPOSITORY}:{VERSION}"],
            "Layers": [blob(l["digest"]) for l in manifest["layers"]]}])
        with tarfile.open(TARBALL) as tar:
            top = sorted({m.name.split("/", 1)[0] for m in tar.getmembers()})
        self.assertEqual(top, ["blobs", "index.json", "manifest.json", "oci-layout"])

    def test_configuration(self):
        config = image_config()
        self.assertEqual((config["os"], config["architecture"]), ("linux", "amd64"))
        c = config["config"]
        self.assertEqual(c["User"], f"{UID}:{UID}")
        self.assertEqual(c["Entrypoint"], [ENTRYPOINT], "exec form: the supervisor is PID 1")
        self.assertNotIn("Cmd", c)
        self.assertEqual(c["StopSignal"], "SIGTERM")
        self.assertEqual(set(c["ExposedPorts"]), {"8000/tcp", "8001/tcp"})
        self.assertEqual(c["Labels"]["org.opencontainers.image.version"], VERSION)
        self.assertEqual(c["Labels"]["org.opencontainers.image.title"], "runner-provisioner")
        chart = helmlib.CHART / "Chart.yaml"
        self.assertRegex(chart.read_text(), rf'(?m)^appVersion: "?{re.escape(VERSION)}"?$',
                         "the chart pulls the tag the image is built with")
        self.assertEqual([h.get("empty_layer", False) for h in config["history"]], [False, False])

    def test_the_layout_directory_is_the_archive(self):
        self.assertEqual(read_json(OUT / "index.json")["manifests"][0]["digest"], image_manifest()[0]["digest"])
        r = subprocess.run(["umoci", "ls", "--layout", str(OUT)], capture_output=True, text=True, timeout=60)
        self.assertEqual((r.returncode, r.stdout.split()), (0, [VERSION]), r.stderr)

    def test_a_second_run_reuses_everything(self):
        before = image_manifest()[0]["digest"]
        r = subprocess.run([str(IMAGE_SH), "--out", str(OUT), "--tar", str(TARBALL), "--work", str(WORK)],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("Debian layer up to date", r.stderr)
        self.assertIn("image up to date", r.stderr)
        self.assertEqual(read_json(OUT / "index.json")["manifests"][0]["digest"], before)


# --- the root filesystem ----------------------------------------------------------------

def resolve_in_image(path, depth=0):
    """path (absolute inside the image) with its symlinks followed inside
    the image, never on the host: a host path."""
    if depth > 40:
        raise AssertionError(f"symlink loop at {path}")
    cur = Build.rootfs
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        nxt = cur / part
        if nxt.is_symlink():
            target = os.readlink(nxt)
            base = "/" if target.startswith("/") else "/" + str(cur.relative_to(Build.rootfs))
            return resolve_in_image(os.path.normpath(os.path.join(base, target, *parts[i + 1:])), depth + 1)
        cur = nxt
    return cur


class T02Contents(unittest.TestCase):
    def files(self):
        for dirpath, dirnames, filenames in os.walk(Build.rootfs):
            for n in filenames + dirnames:
                p = Path(dirpath) / n
                yield p, "/" + str(p.relative_to(Build.rootfs))

    def test_no_shell_no_package_manager_no_tools(self):
        forbidden = re.compile(r"^(sh|bash|dash|ash|busybox|perl\S*|python\S*|apt\S*|dpkg\S*|mawk|awk|"
                               r"openssl|debconf\S*|update-ca-certificates|ldconfig|env|su|sudo)$")
        binaries = {f"/usr/local/bin/{b}" for b in BINARIES}
        found_bins, problems = set(), []
        for p, rel in self.files():
            st = p.lstat()
            if forbidden.match(p.name) and not p.is_dir():
                problems.append(f"{rel}: a tool")
            if not p.is_file() or p.is_symlink():
                continue
            if st.st_mode & 0o6000:
                problems.append(f"{rel}: setuid/setgid")
            with open(p, "rb") as f:
                head = f.read(4)
            if head[:2] == b"#!":
                problems.append(f"{rel}: a script")
            if st.st_mode & 0o111 and rel not in binaries and not re.search(r"\.so(\.\d+)*$", rel):
                problems.append(f"{rel}: executable")
            if rel in binaries:
                found_bins.add(rel)
                self.assertEqual(head, b"\x7fELF")
        self.assertEqual(problems, [])
        self.assertEqual(found_bins, binaries)
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "var/lib/apt", "etc/apt", "usr/share/man"):
            self.assertFalse((Build.rootfs / d).exists(), d)

    def test_users_and_directories(self):
        passwd = (Build.rootfs / "etc/passwd").read_text().splitlines()
        self.assertIn(f"nonroot:x:{UID}:{UID}:nonroot:/nonexistent:/nonexistent", passwd)
        self.assertIn(f"nonroot:x:{UID}:", (Build.rootfs / "etc/group").read_text().splitlines())
        run = (Build.rootfs / "run/runner-provisioner").stat()
        self.assertEqual((run.st_uid, run.st_gid, run.st_mode & 0o7777), (UID, UID, 0o700))
        self.assertEqual((Build.rootfs / "tmp").stat().st_mode & 0o7777, 0o1777)
        self.assertEqual(os.readlink(Build.rootfs / "var/run"), "/run")
        self.assertIn("hosts: files dns", (Build.rootfs / "etc/nsswitch.conf").read_text())
        for f in ("etc/resolv.conf", "etc/hostname"):
            self.assertFalse((Build.rootfs / f).exists(), f"{f} from the build host")

    def test_ca_bundle(self):
        mozilla = sorted((Build.rootfs / "usr/share/ca-certificates/mozilla").glob("*.crt"))
        self.assertGreater(len(mozilla), 100)
        bundle = Build.rootfs / "etc/ssl/certs/ca-certificates.crt"
        ctx = ssl.create_default_context(cafile=str(bundle))
        self.assertEqual(len(ctx.get_ca_certs()), len(mozilla))
        links = [p for p in (Build.rootfs / "etc/ssl/certs").iterdir() if p.is_symlink()]
        self.assertGreater(len(links), len(mozilla), "a .pem link and a hash link per certificate")
        for p in links:
            self.assertTrue(resolve_in_image("/etc/ssl/certs/" + p.name).is_file(),
                            f"{p.name} -> {os.readlink(p)} dangles inside the image")

    def test_time_zones(self):
        zoneinfo.reset_tzpath([str(Build.rootfs / "usr/share/zoneinfo")])
        try:
            for name in ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"):
                with self.subTest(zone=name):
                    self.assertEqual((Build.rootfs / "usr/share/zoneinfo" / name).read_bytes()[:4], b"TZif")
                    zoneinfo.ZoneInfo.clear_cache()
                    zoneinfo.ZoneInfo(name)
            zoneinfo.ZoneInfo.clear_cache()
            summer = datetime.datetime(2024, 7, 1, 12, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
            self.assertEqual(summer.utcoffset(), datetime.timedelta(hours=2))
        finally:
            zoneinfo.reset_tzpath()

    def test_os_release_identifies_debian_12(self):
        text = (Build.rootfs / "usr/lib/os-release").read_text()
        self.assertIn("ID=debian", text.splitlines())
        self.assertIn('VERSION_ID="12"', text.splitlines())
        self.assertEqual(os.readlink(Build.rootfs / "etc/os-release"), "../usr/lib/os-release")

    def installed(self):
        status = (Build.rootfs / "var/lib/dpkg/status").read_text()
        pkgs = {}
        for stanza in status.strip().split("\n\n"):
            fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
            self.assertEqual(fields.get("Status"), "install ok installed", stanza[:200])
            pkgs[fields["Package"]] = fields["Version"]
        return pkgs

    def test_both_recipes_install_the_same_packages(self):
        """apt-get install --no-install-recommends of the list on a system
        with nothing installed: what deploy/Dockerfile's runtime stage asks
        apt for (debian:12-slim already has some of them), and exactly what
        the image holds."""
        with tempfile.NamedTemporaryFile(prefix="rp-empty-status-") as empty:
            r = subprocess.run(["apt-get", "install", "--simulate", "--no-install-recommends",
                                "-o", f"Dir::State::status={empty.name}", "-o", "Debug::NoLocking=1",
                                *runtime_packages()], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        resolved = {line.split()[1] for line in r.stdout.splitlines() if line.startswith("Inst ")}
        self.assertTrue(set(runtime_packages()) <= resolved)
        self.assertEqual(set(self.installed()), resolved)
        # The Dockerfile installs from the same list, with the same option.
        runtime = DOCKERFILE.read_text().split("FROM debian:12-slim", 1)[1]
        self.assertIn("deploy/runtime-packages.txt", runtime)
        self.assertRegex(runtime, r"xargs apt-get install -y --no-install-recommends")

    def test_binaries_are_the_release_build_of_the_dockerfile(self):
        m = re.search(r"cmake -S \. -B /build((?:\s+-D\S+)+)", DOCKERFILE.read_text().replace("\\\n", " "))
        self.assertIsNotNone(m)
        docker_flags = m.group(1).split()
        script_flags = re.search(r"readonly CMAKE_FLAGS=\(([^)]*)\)", IMAGE_SH.read_text()).group(1).split()
        self.assertEqual(sorted(script_flags), sorted(docker_flags))
        cache = (WORK / "cmake" / "CMakeCache.txt").read_text()
        for flag in docker_flags:
            name, _, value = flag[2:].partition("=")
            self.assertRegex(cache, rf"(?m)^{name}:\w+={re.escape(value)}$")
        for b in BINARIES:
            r = subprocess.run(["readelf", "-S", str(Build.rootfs / "usr/local/bin" / b)], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertNotIn(".symtab", r.stdout, f"{b} is not stripped")
            self.assertNotIn(".debug_info", r.stdout)


# --- loading it into the engines users have --------------------------------------------

class Daemon:
    """containerd or dockerd on a private socket, state and data under a
    temporary directory; stopped (SIGTERM, by pid) when the test ends."""

    def __init__(self, test, name):
        self.dir = Path(tempfile.mkdtemp(prefix=f"rp-{name}-"))
        test.addCleanup(self.stop)
        self.proc = None
        self.log = self.dir / "log"

    def start(self, argv, ready):
        self._log = open(self.log, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=harness.die_with_parent)
        harness.wait_for(lambda: self.alive() and ready(), 60, what=f"{argv[0]} to serve",
                         diag=lambda: self.log.read_text(errors="replace")[-3000:])

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.proc.args[0]} exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text(errors='replace')[-3000:]}")
        return True

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(harness.scaled(30))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()
        # dockerd's own containerd, and mounts the daemons left.
        subprocess.run(["umount", "-R", "-l", str(self.dir)], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def run(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=harness.scaled(timeout), **kw)


class T04Engines(unittest.TestCase):
    """The archive as `docker load`, `podman load` and `ctr image import`
    take it: each names it circleci/runner-provisioner:<version> and sees
    the same configuration (docker and podman) or manifest (containerd)."""

    def setUp(self):
        self.desc, self.manifest = image_manifest()

    def load_and_inspect(self, cli, env, loaded_as, fields):
        """`cli load -i` the archive, then `cli image inspect` the name it
        gives: the Go template fields, split."""
        r = run(cli + ["load", "-i", str(TARBALL)], env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"Loaded image: {loaded_as}", r.stdout)
        r = run(cli + ["image", "inspect", f"{REPOSITORY}:{VERSION}", "--format", fields], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.split()

    def test_podman_load(self):
        d = Path(tempfile.mkdtemp(prefix="rp-podman-"))
        self.addCleanup(shutil.rmtree, d, True)
        self.addCleanup(lambda: run(["umount", "-R", "-l", str(d)]))
        base = ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"), "--storage-driver", "vfs",
                "--events-backend", "none", "--cgroup-manager", "cgroupfs"]
        env = dict(os.environ, HOME=str(d), XDG_RUNTIME_DIR=str(d / "xdg"), XDG_CONFIG_HOME=str(d / "config"))
        got = self.load_and_inspect(base, env, f"docker.io/{REPOSITORY}:{VERSION}",
                                    "{{.Digest}} {{.Id}} {{.Config.User}} {{json .Config.Entrypoint}}")
        self.assertEqual(got, [self.desc["digest"], self.manifest["config"]["digest"].split(":")[1],
                               f"{UID}:{UID}", json.dumps([ENTRYPOINT]).replace(" ", "")])

    def test_ctr_import(self):
        daemon = Daemon(self, "containerd")
        d = daemon.dir
        sock = d / "containerd.sock"
        (d / "config.toml").write_text(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
""")
        ctr = ["ctr", "--address", str(sock), "--namespace", "rp-test"]
        daemon.start(["containerd", "--config", str(d / "config.toml")],
                     lambda: sock.exists() and run(ctr + ["version"], timeout=10).returncode == 0)
        r = run(ctr + ["images", "import", "--snapshotter", "native", str(TARBALL)])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        ref = f"docker.io/{REPOSITORY}:{VERSION}"
        self.assertIn(f"unpacking {ref} ({self.desc['digest']})...done", r.stdout)
        r = run(ctr + ["images", "ls"])
        self.assertEqual(r.returncode, 0, r.stderr)
        rows = [line.split() for line in r.stdout.splitlines()[1:]]
        self.assertEqual([(row[0], row[2]) for row in rows], [(ref, self.desc["digest"])])
        self.assertIn("linux/amd64", r.stdout)

    def test_docker_load(self):
        daemon = Daemon(self, "docker")
        d = daemon.dir
        sock = f"unix://{d}/docker.sock"
        docker = ["docker", "-H", sock]
        env = dict(os.environ, HOME=str(d), DOCKER_CONFIG=str(d / "config"))
        daemon.start(["dockerd", "--data-root", str(d / "data"), "--exec-root", str(d / "exec"),
                      "--pidfile", str(d / "pid"), "--host", sock, "--iptables=false", "--ip6tables=false",
                      "--bridge=none", "--storage-driver=vfs"],
                     lambda: (d / "docker.sock").exists() and run(docker + ["info"], timeout=20, env=env).returncode == 0)
        got = self.load_and_inspect(docker, env, f"{REPOSITORY}:{VERSION}",
                                    "{{.Id}} {{.Config.User}} {{json .Config.Entrypoint}} {{.Config.StopSignal}}")
        self.assertEqual(got, [self.manifest["config"]["digest"], f"{UID}:{UID}",
                               json.dumps([ENTRYPOINT]).replace(" ", ""), "SIGTERM"])


# --- running it ------------------------------------------------------------------------

class Container:
    """One crun container of the unpacked image: a bundle directory with its
    own config.json whose root is the shared, read-only root filesystem."""

    def __init__(self, tdir, name, process, mounts=(), hostname="runner-provisioner"):
        self.tdir = tdir
        self.name = f"rp-{name}-{os.getpid()}"
        self.dir = Path(tdir.join("bundle-" + name))
        self.dir.mkdir()
        self.state = tdir.join("crun")
        config = read_json(Build.bundle / "config.json")
        config["root"] = {"path": str(Build.rootfs), "readonly": True}
        config["hostname"] = hostname
        config["process"].update(process)
        config["mounts"] = [m for m in config["mounts"] if m["destination"] != "/sys/fs/cgroup"] + list(mounts)
        # The test's own network namespace (loopback only); no cgroups.
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"] if n["type"] != "network"]
        config["linux"].pop("resources", None)
        config["linux"].pop("cgroupsPath", None)
        self.config = config
        (self.dir / "config.json").write_text(json.dumps(config, indent=1))
        self.proc = None
        self.log_path = tdir.join(name + ".log")

    def crun(self, *args, timeout=60):
        return subprocess.run(["crun", "--root", self.state, "--cgroup-manager=disabled", *args],
                              capture_output=True, text=True, timeout=timeout)

    def start(self):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["crun", "--root", self.state, "--cgroup-manager=disabled", "run", "--bundle", str(self.dir),
             self.name], stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=harness.die_with_parent)
        return self

    def run(self, timeout=60):
        """Runs to completion: (exit status, output)."""
        self.start()
        try:
            rc = self.proc.wait(harness.scaled(timeout))
        finally:
            self.stop()
        return rc, Path(self.log_path).read_text(errors="replace")

    def host_pid(self):
        r = self.crun("state", self.name)
        if r.returncode != 0:
            return None
        st = json.loads(r.stdout)
        return st["pid"] if st.get("status") == "running" else None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.crun("kill", self.name, "KILL")
            try:
                self.proc.wait(harness.scaled(20))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.crun("delete", "--force", self.name)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None


def proc_tree(pid):
    out = [pid]
    for child in harness.proc_children(pid):
        out += proc_tree(child)
    return out


def runtime_default_seccomp(arch="amd64", caps=()):
    """containers-common's default seccomp profile as an OCI runtime
    configuration for a container on arch with caps: entries whose
    includes the container does not meet, or whose excludes it meets, drop
    out (containers/common pkg/seccomp does the same)."""
    prof = read_json(SECCOMP_PROFILE)
    kernel = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    archs = {"amd64": "SCMP_ARCH_X86_64"}
    (amap,) = [a for a in prof["archMap"] if a["architecture"] == archs[arch]]
    syscalls = []
    for e in prof["syscalls"]:
        inc, exc = e.get("includes") or {}, e.get("excludes") or {}
        if inc.get("caps") and not set(inc["caps"]) <= set(caps):
            continue
        if inc.get("arches") and arch not in inc["arches"]:
            continue
        if inc.get("minKernel") and kernel < tuple(int(x) for x in inc["minKernel"].split(".")[:2]):
            continue
        if set(exc.get("caps") or ()) & set(caps) or arch in (exc.get("arches") or ()):
            continue
        rule = {"names": e["names"], "action": e["action"]}
        if e.get("args"):
            rule["args"] = [{k: a[k] for k in ("index", "value", "valueTwo", "op") if k in a} for a in e["args"]]
        if "errnoRet" in e:
            rule["errnoRet"] = e["errnoRet"]
        syscalls.append(rule)
    out = {"defaultAction": prof["defaultAction"], "architectures": [amap["architecture"], *amap["subArchitectures"]],
           "syscalls": syscalls}
    if "defaultErrnoRet" in prof:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    return out


class T03Run(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tdir = harness.TestDir(prefix="rp-img-")
        self.addCleanup(self.cleanup)
        self.containers = []
        self.sims = []

    def cleanup(self):
        for c in self.containers:
            c.stop()
        for s in reversed(self.sims):
            s.stop()
        if os.environ.get("RP_E2E_KEEP") == "1":
            sys.stderr.write(f"\nkept {self.tdir.path}\n")
        else:
            self.tdir.remove()

    def container(self, *args, **kw):
        c = Container(self.tdir, *args, **kw)
        self.containers.append(c)
        return c

    def test_binaries_find_every_library_inside_the_image(self):
        loaded = set()
        for b in BINARIES:
            with self.subTest(binary=b):
                rc, out = self.container(b, {
                    "args": ["/lib64/ld-linux-x86-64.so.2", "--list", f"/usr/local/bin/{b}"],
                    "terminal": False}).run()
                self.assertEqual(rc, 0, out)
                self.assertNotIn("not found", out)
                libs = re.findall(r"=> (/\S+) \(0x", out)
                self.assertGreater(len(libs), 10, out)
                for lib in libs:
                    self.assertTrue(resolve_in_image(lib).is_file(), lib)
                    loaded.add(resolve_in_image(lib))
        # ... and the image holds no other shared object, but the ones the
        # script keeps on purpose (glibc's and OpenSSL's run-time modules).
        keep = re.findall(r"'([^']+)'", re.search(r"readonly KEEP_UNLINKED=\(([^)]*)\)", IMAGE_SH.read_text()).group(1))
        self.assertIn("*/libgcc_s.so.1", keep)
        keep.append("*/" + Path(os.readlink(Build.rootfs / "lib64/ld-linux-x86-64.so.2")).name)
        unloaded = []
        for p in Build.rootfs.rglob("*.so*"):
            rel = "/" + str(p.relative_to(Build.rootfs))
            if p.is_file() and not p.is_symlink() and re.search(r"\.so(\.\d+)*$", p.name) and \
                    p not in loaded and not any(fnmatch.fnmatch(rel, k) for k in keep):
                unloaded.append(rel)
        self.assertEqual(unloaded, [], "shared objects no binary loads")

    # The pod, as the chart renders it ----------------------------------------------
    def pod_objects(self, circle, kube):
        values = {
            "imagePullSecrets": [],
            "provisioner": {
                "circleToken": harness.API_TOKEN,
                "circleciAPIAddr": circle.url,
                "circleciCACert": Path(self.tdir.pki["ca"]).read_text(),
                "namespace": kube.namespace,
                "resourceClass": {"name": CLASS, "token": harness.runner_token(CLASS),
                                  "minReplicas": 1, "maxReplicas": 4},
            },
        }
        docs = helmlib.render(values)
        return helmlib.only(docs, "Deployment"), [d for d in docs if d["kind"] == "Secret"]

    def pod_container(self, deployment, secrets, kube):
        """The OCI runtime configuration kubelet and the container runtime
        would derive from the Deployment's pod template."""
        pod = deployment["spec"]["template"]["spec"]
        (ctr,) = pod["containers"]
        psc, csc = pod["securityContext"], ctr["securityContext"]
        self.assertEqual(ctr["image"], f"{REPOSITORY}:{VERSION}")
        self.assertNotIn("command", ctr, "the image's entrypoint runs")
        uid, gid, fs_group = psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]

        mounts = []
        volumes = {v["name"]: v for v in pod["volumes"]}
        secret_data = {s["metadata"]["name"]: s["data"] for s in secrets}
        for vm in ctr["volumeMounts"]:
            vol = volumes[vm["name"]]
            if "projected" in vol:
                d = Path(self.tdir.join("volume-" + vm["name"]))
                d.mkdir()
                mode = vol["projected"]["defaultMode"]
                for source in vol["projected"]["sources"]:
                    data = secret_data[source["secret"]["name"]]
                    items = source["secret"].get("items") or [{"key": k, "path": k} for k in data]
                    for item in items:
                        f = d / item["path"]
                        f.write_bytes(base64.b64decode(data[item["key"]]))
                        os.chown(f, 0, fs_group)
                        os.chmod(f, mode)
                mounts.append({"destination": vm["mountPath"], "type": "bind", "source": str(d),
                               "options": ["rbind", "ro" if vm.get("readOnly") else "rw",
                                           "nosuid", "nodev", "noexec"]})
            elif "emptyDir" in vol:
                self.assertEqual(vol["emptyDir"]["medium"], "Memory")
                size = vol["emptyDir"]["sizeLimit"]
                self.assertRegex(size, r"^\d+Mi$")
                mounts.append({"destination": vm["mountPath"], "type": "tmpfs", "source": "tmpfs",
                               "options": ["nosuid", "nodev", "mode=0777", f"size={size[:-2]}m"]})
            else:
                self.fail(f"volume kind the test does not know: {vol}")
        self.assertIs(pod["automountServiceAccountToken"], True)
        sa = kube.service_account_dir()
        mounts.append({"destination": "/var/run/secrets/kubernetes.io/serviceaccount", "type": "bind",
                       "source": sa, "options": ["rbind", "ro"]})
        hosts = self.tdir.write("etc-hosts", "127.0.0.1 localhost\n::1 localhost\n", 0o644)
        resolv = self.tdir.write("etc-resolv.conf", "nameserver 127.0.0.1\n", 0o644)
        for dest, src in (("/etc/hosts", hosts), ("/etc/resolv.conf", resolv)):
            mounts.append({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "ro"]})

        base_env = read_json(Build.bundle / "config.json")["process"]["env"]
        env = [e for e in base_env if not e.startswith("TERM=")] + [
            "HOSTNAME=runner-provisioner-0",
            f"KUBERNETES_SERVICE_HOST={kube.provisioner_env()['KUBERNETES_SERVICE_HOST']}",
            f"KUBERNETES_SERVICE_PORT={kube.provisioner_env()['KUBERNETES_SERVICE_PORT']}"]
        self.assertIs(csc["readOnlyRootFilesystem"], True)
        self.assertIs(csc["allowPrivilegeEscalation"], False)
        self.assertEqual(csc["capabilities"], {"drop": ["ALL"]})
        process = {
            "terminal": False,
            "args": read_json(Build.bundle / "config.json")["process"]["args"] + ctr["args"],
            "env": env,
            "user": {"uid": uid, "gid": gid, "additionalGids": [fs_group]},
            "capabilities": {k: [] for k in ("bounding", "effective", "inheritable", "permitted",
                                             "ambient")},
            "noNewPrivileges": True,
        }
        c = self.container("pod", process, mounts, hostname="runner-provisioner-0")
        self.assertEqual(psc["seccompProfile"], {"type": "RuntimeDefault"})
        c.config["linux"]["seccomp"] = runtime_default_seccomp()
        (c.dir / "config.json").write_text(json.dumps(c.config, indent=1))
        return c, {p["name"]: p["containerPort"] for p in ctr["ports"]}, ctr

    def test_runs_as_the_charts_pod(self):
        circle = harness.CircleSim(self.tdir, [CLASS], task_duration_ms=120000)
        self.sims.append(circle)
        circle.start()
        kube = kubesim.KubeSim(self.tdir, circle=circle, in_cluster=True, boot_delay_ms=300)
        self.sims.append(kube)
        kube.start()
        deployment, secrets = self.pod_objects(circle, kube)
        c, ports, ctr = self.pod_container(deployment, secrets, kube)
        c.start()
        log = harness.LogFile(c.log_path)

        def diag():
            return f"{log.tail(60)}\n{kube.diag()}{circle.diag()}"

        def alive():
            if c.proc.poll() is not None:
                raise AssertionError(f"the container exited with {c.proc.returncode}\n{diag()}")
            return True

        def wait(pred, what, timeout=60):
            return harness.wait_for(lambda: alive() and pred(), timeout, what=what, diag=diag)

        def get(port, path):
            try:
                return harness.http_get(f"127.0.0.1:{port}", path)
            except OSError:
                return None, None, None

        # Probes, on the ports and paths the chart's probes use.
        live, ready = ctr["livenessProbe"]["httpGet"], ctr["readinessProbe"]["httpGet"]
        wait(lambda: get(ports[live["port"]], live["path"])[0] == 200, "GET /live 200")
        wait(lambda: log.find(msg="polled task counts", proc="poller"), "a poll")
        wait(lambda: get(ports[ready["port"]], ready["path"])[0] == 200, "GET /ready 200")

        # The supervisor is PID 1 of the container; all three run as the pod's
        # user, without capabilities, on a read-only root.
        host_pid = c.host_pid()
        self.assertIsNotNone(host_pid)
        status = harness.proc_status(host_pid)
        self.assertEqual(status["NSpid"].split()[-1], "1")
        self.assertEqual(harness.proc_cmdline(host_pid), c.config["process"]["args"])
        sup_lines = log.find(proc="supervisor")
        self.assertTrue(sup_lines)
        self.assertEqual({e["pid"] for e in sup_lines}, {1}, "the supervisor logs as PID 1")
        tree = wait(lambda: (lambda t: t if len(t) == 3 else None)(proc_tree(host_pid)),
                    "the supervisor and its two children")
        names = sorted(Path(harness.proc_cmdline(p)[0]).name for p in tree)
        self.assertEqual(names, sorted(BINARIES))
        for pid in tree:
            st = harness.proc_status(pid)
            with self.subTest(process=harness.proc_cmdline(pid)[0]):
                self.assertEqual(st["Uid"].split(), [str(UID)] * 4)
                self.assertEqual(st["Gid"].split(), [str(UID)] * 4)
                self.assertIn(str(UID), st["Groups"].split())
                self.assertEqual(int(st["CapEff"], 16), 0)
                self.assertEqual(int(st["CapBnd"], 16), 0)
                self.assertEqual(st["NoNewPrivs"], "1")
                self.assertEqual(st["Seccomp"], "2", "the RuntimeDefault seccomp filter")
        with open(f"/proc/{host_pid}/mountinfo") as f:
            root = next(line.split() for line in f if line.split()[4] == "/")
        self.assertIn("ro", root[5].split(","), "the root filesystem is mounted read-only")

        # It scales against the simulators, with the in-cluster credentials.
        pool = kubesim.pool_name(CLASS)
        wait(lambda: kube.pools().get(pool, {}).get("replicas") == 1, "the pool at minReplicas")
        circle.queue(CLASS, 3)
        wait(lambda: kube.pools().get(pool, {}).get("replicas") == 3, "the pool scaled to 3")
        wait(lambda: sum(1 for v in kube.vms(pool) if v.get("task")) == 3, "three VMs running the three tasks",
             timeout=90)
        # /metrics carries the children's figures of their last health answer
        # (surveyed every second).
        metrics = wait(lambda: (lambda m: m if m.get("runner_provisioner_desired_vms", resource_class=CLASS) == 3
                                else None)(harness.Metrics(get(ports[ready["port"]], "/metrics")[1])),
                       "desired_vms 3 in /metrics")
        self.assertEqual(metrics.get("runner_provisioner_build_info", version=VERSION), 1)
        daemon = [r for r in kube.daemon_requests() if r.get("auth")]
        self.assertTrue(daemon)
        self.assertEqual({r["auth"] for r in daemon}, {"token"}, "the service account's token")

        # SIGTERM, as kubelet stops the pod: status 0 within the grace period.
        t0 = time.monotonic()
        r = c.crun("kill", c.name, "TERM")
        self.assertEqual(r.returncode, 0, r.stderr)
        rc = c.proc.wait(harness.scaled(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]))
        took = time.monotonic() - t0
        log.check()
        self.assertEqual(rc, 0, diag())
        self.assertLess(took, 10, "--shutdown-grace is 10 s")
        self.assertEqual(log.find(proc="supervisor", msg="shutting down")[-1]["signal"], "Terminated")
        for child in ("poller", "actuator"):
            self.assertTrue(log.find(proc="supervisor", msg=f"the {child} stopped: exited with status 0"),
                            diag())
        self.assertEqual(log.entries[-1]["msg"], "stopped")
        for pid in tree:
            self.assertFalse(harness.proc_alive(pid))
        sys.stderr.write(f"\nimage: the pod's container stopped {took * 1000:.0f} ms after SIGTERM\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
