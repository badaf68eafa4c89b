#!/usr/bin/python3
"""Checks of the Docker recipe of the image (deploy/Dockerfile), without Docker.

Run: /usr/bin/python3 tests/image/test_dockerfile.py   (CTest: image/test_dockerfile)

- every shared library the built binaries load (ldd) belongs to a Debian
  package that deploy/runtime-packages.txt lists, or to one of their
  dependencies (apt-cache depends --recurse): the slim image has them all;
- the Dockerfile's runtime stage installs exactly that list, runs as 65532,
  has an exec-form ENTRYPOINT and STOPSIGNAL SIGTERM; its build stage is
  Debian 12 with the -dev packages and the documented cmake flags;
- (tests/image/test_image.py builds the image's binaries with the build
  stage's cmake flags and runs them inside the image, which holds nothing
  but the listed packages and their dependencies);
- the ignore file keeps every source the build needs;
- dockerfile-utils (npm, installed by scripts/install-tools.sh) finds no error.

The host must be Debian 12 like the image (dpkg/apt-cache answer for it).
"""
import fnmatch
import functools
import os
import re
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = Path(os.environ.get("RP_SOURCE_DIR") or HERE.parents[1]).resolve()
BUILD = Path(os.environ.get("RP_BUILD_DIR") or SRC / "build").resolve()
DEPLOY = SRC / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
PACKAGES_FILE = DEPLOY / "runtime-packages.txt"
BINARIES = ("runner-provisioner", "runner-provisioner-poller", "runner-provisioner-actuator")
DEV_PACKAGES = ("libcurl4-openssl-dev", "libjansson-dev", "libyaml-dev", "libssl-dev", "libnng-dev",
                "libmicrohttpd-dev", "libseccomp-dev", "cmake", "gcc", "make", "pkg-config")
UID = "65532"
# Packages the binaries read data from instead of loading: the CA bundle, the
# time zones, /etc/os-release.
DATA_PACKAGES = ("base-files", "ca-certificates", "tzdata")
# Packages of a sanitizer build's runtime (RP_SANITIZE=ON); never in the image.
SANITIZER_PACKAGES = re.compile(r"^(libasan\d+|libubsan\d+|liblsan\d+|libgcc-s1|libstdc\+\+6)$")


def runtime_packages():
    pkgs = []
    for line in PACKAGES_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", line):
                raise AssertionError(f"{PACKAGES_FILE}: not a package name: {line!r}")
            pkgs.append(line)
    return pkgs


@functools.lru_cache(maxsize=None)
def _closure(pkgs):
    r = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", *pkgs],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"apt-cache depends failed (run apt-get update?): {r.stderr}")
    closure = set()
    for line in r.stdout.splitlines():
        if line and not line[0].isspace():
            closure.add(line.strip().strip("<>").split(":", 1)[0])
    missing = set(pkgs) - closure
    if missing:
        raise AssertionError(f"apt-cache does not know {sorted(missing)} (run apt-get update?)")
    return frozenset(closure)


def dependency_closure(pkgs):
    return set(_closure(tuple(sorted(pkgs))))


def ldd(binary):
    """Paths of the shared objects binary loads (interpreter included)."""
    r = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"ldd {binary} failed: {r.stdout}{r.stderr}")
    paths = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            raise AssertionError(f"{binary}: {line}")
        m = re.match(r"\S+ => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(r"(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            paths.append(m.group(1))
        elif not re.match(r"(linux-vdso|linux-gate)\.so\.\d+ \(0x", line):
            raise AssertionError(f"{binary}: unexpected ldd line {line!r}")
    if not paths:
        raise AssertionError(f"{binary}: ldd lists no library (statically linked?)")
    return paths


@functools.lru_cache(maxsize=None)
def owner(path):
    """Debian package owning path (merged /usr aware)."""
    candidates = [path, os.path.realpath(path)]
    for p in list(candidates):
        if p.startswith("/usr/"):
            candidates.append(p[4:])
        else:
            candidates.append("/usr" + p)
    for p in dict.fromkeys(candidates):
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            pkg = r.stdout.split(":", 1)[0].split(",")[0].strip()
            return pkg.split(":", 1)[0]
    raise AssertionError(f"no Debian package owns {path}")


def sanitizer_build(build_dir):
    cache = build_dir / "CMakeCache.txt"
    return cache.is_file() and re.search(r"^RP_SANITIZE:BOOL=(ON|TRUE|1)$", cache.read_text(), re.M)


# --- Dockerfile parsing -----------------------------------------------------------

def instructions(path):
    """[(KEYWORD, argument text)] with continuations joined and comments dropped."""
    out, cur = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if cur and line.startswith("#"):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        kw, _, arg = cur.strip().partition(" ")
        out.append((kw.upper(), arg.strip()))
        cur = ""
    if cur:
        raise AssertionError(f"{path}: dangling line continuation")
    return out


def stages(path):
    result = []
    for kw, arg in instructions(path):
        if kw == "FROM":
            result.append({"from": arg, "ins": []})
        elif kw not in ("ARG",) or result:
            if not result:
                raise AssertionError(f"{path}: {kw} before FROM")
            result[-1]["ins"].append((kw, arg))
    return result


def dockerignore_excludes(rel):
    """Whether the ignore file keeps rel (a repo-relative path) out of the context."""
    excluded = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pat = line.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        hit = any(fnmatch.fnmatchcase(p, pat) or
                  (pat.startswith("**/") and fnmatch.fnmatchcase(p.split("/")[-1], pat[3:]))
                  for p in prefixes)
        if hit:
            excluded = not neg
    return excluded


class T01LibrariesComeFromTheListedPackages(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.packages = runtime_packages()
        cls.allowed = dependency_closure(cls.packages) | {"libc6"}

    def found_binaries(self, bindir):
        bins = sorted(p for p in bindir.glob("runner-provisioner*") if p.is_file() and os.access(p, os.X_OK))
        if not bins:
            raise AssertionError(f"no runner-provisioner* binary in {bindir}: build the project first "
                                 f"(cmake -S {SRC} -B {BUILD} && make -C {BUILD}); "
                                 f"RP_BUILD_DIR={os.environ.get('RP_BUILD_DIR')!r}")
        missing = sorted(set(BINARIES) - {b.name for b in bins})
        if missing:
            raise AssertionError(f"{bindir} lacks {missing}: the image ships all three")
        return bins

    def scan(self, bins, sanitizer=False, allowed=None):
        """(problems, packages used) for the libraries bins load."""
        allowed = self.allowed if allowed is None else allowed
        problems, used = [], set()
        for b in bins:
            for lib in ldd(b):
                pkg = owner(lib)
                if sanitizer and SANITIZER_PACKAGES.match(pkg):
                    continue
                used.add(pkg)
                if pkg not in allowed:
                    problems.append(f"{b.name} loads {lib} from {pkg}, which neither "
                                    f"deploy/runtime-packages.txt nor its dependencies bring")
        return problems, used

    def test_built_binaries(self):
        bins = self.found_binaries(BUILD / "bin")
        problems, used = self.scan(bins, sanitizer=bool(sanitizer_build(BUILD)))
        self.assertEqual(problems, [])
        # Nothing in the list is dead weight: each library package is loaded.
        unused = [p for p in self.packages if p not in DATA_PACKAGES and p not in used]
        self.assertEqual(unused, [], "listed in runtime-packages.txt but loaded by no binary")

    def test_checker_rejects_a_foreign_library(self):
        # Debian's python3 loads libexpat and libz, which libyaml-0-2 does not bring.
        python = Path("/usr/bin/python3").resolve()
        problems, used = self.scan([python], allowed=dependency_closure(["libyaml-0-2"]) | {"libc6"})
        self.assertIn("zlib1g", used)
        self.assertTrue(any("from zlib1g" in p for p in problems), problems)
        self.assertFalse(any("from libc6" in p for p in problems), problems)

    def test_listed_packages_are_runtime_only(self):
        for p in self.packages:
            self.assertFalse(p.endswith("-dev") or p.endswith("-dbg"), p)
        self.assertIn("ca-certificates", self.packages, "TLS to the CircleCI API needs the CA bundle")
        self.assertIn("tzdata", self.packages, "scaling schedules name IANA time zones")
        self.assertIn("base-files", self.packages, "scanners identify the image by /etc/os-release")


class T02Dockerfile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stages = stages(DOCKERFILE)

    def test_two_stages_on_debian_12(self):
        self.assertEqual(len(self.stages), 2)
        self.assertRegex(self.stages[0]["from"], r"^debian:(12|bookworm)(@sha256:[0-9a-f]{64})? AS build$")
        self.assertRegex(self.stages[1]["from"], r"^debian:(12|bookworm)-slim(@sha256:[0-9a-f]{64})?$")

    def test_build_stage(self):
        runs = " ".join(arg for kw, arg in self.stages[0]["ins"] if kw == "RUN")
        words = set(runs.split())
        for pkg in DEV_PACKAGES:
            self.assertIn(pkg, words, f"build stage does not install {pkg}")
        for flag in ("-DRP_TESTS=OFF", "-DCMAKE_BUILD_TYPE=Release"):
            self.assertIn(flag, words)
        self.assertIn("cmake --install", runs)

    def test_runtime_stage_installs_exactly_the_list(self):
        ins = self.stages[1]["ins"]
        copies = [a for k, a in ins if k == "COPY" and "deploy/runtime-packages.txt" in a.split()]
        self.assertEqual(len(copies), 1, "runtime stage must COPY deploy/runtime-packages.txt")
        dest = copies[0].split()[-1]
        installs = [a for k, a in ins if k == "RUN" and "apt-get install" in a]
        self.assertEqual(len(installs), 1, "one apt-get install in the runtime stage, from the list")
        run = installs[0]
        self.assertIn(dest, run)
        self.assertRegex(run, r"\|\s*(\S+=\S+\s+)*xargs\s+apt-get install")
        self.assertIn("--no-install-recommends", run)
        # No package named inline: everything after `install` is an option.
        tail = run.split("apt-get install", 1)[1].split("&&")[0].split()
        self.assertEqual([w for w in tail if not w.startswith("-")], [], "inline package names")
        self.assertIn("rm -rf /var/lib/apt/lists", run)

    def test_runtime_user_signals_entrypoint(self):
        ins = self.stages[1]["ins"]
        last = {k: a for k, a in ins}
        self.assertIn(last["USER"].split(":")[0], (UID,))
        self.assertEqual(last["STOPSIGNAL"], "SIGTERM")
        self.assertEqual(last["ENTRYPOINT"], '["/usr/local/bin/runner-provisioner"]',
                         "exec form, so the supervisor is PID 1 and gets signals")
        self.assertNotIn("CMD", last)
        self.assertNotIn("SHELL", last)
        self.assertNotIn("HEALTHCHECK", last)
        users = [a for k, a in ins if k == "RUN" and "useradd" in a]
        self.assertTrue(users and f"--uid {UID}" in users[0] and f"--gid {UID}" in users[0])
        froms = [a for k, a in ins if k == "COPY" and a.startswith("--from=build")]
        self.assertTrue(any(a.split()[-1].rstrip("/") == "/usr/local/bin" for a in froms))

    def test_ignore_file_keeps_the_sources(self):
        cmake = (SRC / "CMakeLists.txt").read_text()
        subdirs = re.findall(r"add_subdirectory\(\s*([\w./-]+)", cmake)
        self.assertTrue(subdirs)
        tests_optional = re.search(r"if\s*\(\s*RP_TESTS\s*\)(?:(?!endif).)*?add_subdirectory\(\s*tests", cmake, re.S)
        needed = ["CMakeLists.txt", "cmake/role.cmake", "deploy/runtime-packages.txt"] + \
            [f"{d}/CMakeLists.txt" for d in subdirs if not (d == "tests" and tests_optional)]
        for rel in needed:
            with self.subTest(path=rel):
                self.assertTrue((SRC / rel).exists(), f"{rel} missing from the repository")
                self.assertFalse(dockerignore_excludes(rel), f"{DOCKERIGNORE.name} drops {rel}")
        for rel in (".git/config", "build/CMakeCache.txt", "build-chart/bin/x", ".tools/bin/helm",
                    "tests/chart/test_chart.py", "common/x.o"):
            with self.subTest(path=rel):
                self.assertTrue(dockerignore_excludes(rel), f"{DOCKERIGNORE.name} keeps {rel}")

    def test_dockerfile_utils_lint(self):
        node = shutil.which("node")
        tool = SRC / ".tools" / "node_modules" / "dockerfile-utils" / "bin" / "dockerfile-utils"
        if not node or not tool.is_file():
            raise AssertionError(f"node or {tool} missing: run scripts/install-tools.sh")
        r = subprocess.run([node, str(tool), "lint", str(DOCKERFILE)], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        bad = Path(tempfile.mkdtemp(prefix="rp-image-")) / "Dockerfile"
        try:
            bad.write_text("FROM debian:12-slim\nCOPY onlyone\n")
            r = subprocess.run([node, str(tool), "lint", str(bad)], capture_output=True, text=True, timeout=120)
            self.assertNotEqual(r.returncode, 0, "the linter accepts anything")
        finally:
            shutil.rmtree(bad.parent)


if __name__ == "__main__":
    unittest.main(verbosity=2)
