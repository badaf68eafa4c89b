"""Shared machinery for the end-to-end tests (tests/e2e/test_*.py).

The tests run the real daemon (build/bin/runner-provisioner, which forks
runner-provisioner-poller and runner-provisioner-actuator) against the
simulators in tests/sim over TLS with a throwaway CA, and judge it the way an
operator would: by its JSON log lines, its probe and metrics endpoints, its
processes and its exit status.

Building blocks (each usable on its own, e.g. by the benchmarks):

  TestDir        a private temp dir: throwaway PKI, config.yaml, token file,
                 run dir (short path: nng IPC socket paths are limited)
  CircleSim      tests/sim/circleci_sim.py in a subprocess, with helpers for
                 its /_sim control API (queue, counts, faults, journal)
  Provisioner    the supervisor in a subprocess: flags, stderr captured to a
                 file and parsed strictly (every line one JSON object with
                 ts/level/proc/pid/msg), wait_log(), lines(), get() on the
                 right listener, child pids, stop()
  Metrics        a Prometheus text-format parser; promtool_check()
  NngcatSubscriber, decode_message
                 the nng wire format (proto/msg.h) seen through nngcat and
                 decoded here, independently of the C code
  Prober         a background thread that keeps GETting one endpoint
  E2ETestCase    unittest base class: per-test TestDir, start_circleci(),
                 start_provisioner(), cleanup that kills everything started
                 and fails the test if any of its processes is left over

Simulators are Sim subclasses.  A Sim contributes the provisioner flags that
point at it (provisioner_args), so another simulator - the Kubernetes one,
tests/sim/kube_sim.py - slots in beside CircleSim: give it a
provisioner_args() returning --kubeconfig/--namespace and serves_kubernetes
= True, and Provisioner stops adding --dry-run when one is present.

Environment: RP_BUILD_DIR (default <repo>/build), RP_SOURCE_DIR (default the
repository holding this file), RP_E2E_TIME_SCALE (multiplies every deadline;
for sanitizer builds or very slow machines), RP_E2E_KEEP=1 (keep temp dirs),
RP_E2E_TMPDIR (where temp dirs go, default /tmp).

Only the Python standard library and python3-yaml are used.
"""

import ast
import ctypes
import datetime
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(
    os.environ.get("RP_SOURCE_DIR") or os.path.join(HERE, "..", ".."))
BUILD_DIR = os.path.abspath(
    os.environ.get("RP_BUILD_DIR") or os.path.join(SOURCE_DIR, "build"))
BIN_DIR = os.path.join(BUILD_DIR, "bin")
SIM_DIR = os.path.join(SOURCE_DIR, "tests", "sim")
PYTHON = "/usr/bin/python3"
PROMTOOL = "/usr/bin/promtool"

SUPERVISOR = os.path.join(BIN_DIR, "runner-provisioner")
POLLER = os.path.join(BIN_DIR, "runner-provisioner-poller")
ACTUATOR = os.path.join(BIN_DIR, "runner-provisioner-actuator")
CHILDREN = ("poller", "actuator")

TIME_SCALE = float(os.environ.get("RP_E2E_TIME_SCALE") or "1")

# Distinctive secrets: a leak is easy to grep for.
API_TOKEN = "e2e-circle-api-token-5d1f0c7a9b"

sys.path.insert(0, SIM_DIR)
import simhttp  # noqa: E402


def sanitized():
    """True when BUILD_DIR is an ASan+UBSan build (RP_SANITIZE=ON)."""
    try:
        with open(os.path.join(BUILD_DIR, "CMakeCache.txt")) as f:
            return re.search(r"^RP_SANITIZE:BOOL=(ON|TRUE|1)$", f.read(),
                             re.M) is not None
    except OSError:
        return False


def scaled(seconds):
    """A deadline, stretched by RP_E2E_TIME_SCALE."""
    return seconds * TIME_SCALE


# Waiting -------------------------------------------------------------------
def wait_for(pred, timeout=30.0, interval=0.02, what="condition",
             diag=None):
    """Calls pred() until it returns something truthy, and returns that.
    Fails (AssertionError) after timeout seconds (scaled); diag() may add
    context to the message (a log tail, a state dump)."""
    deadline = time.monotonic() + scaled(timeout)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            extra = ""
            if diag is not None:
                try:
                    extra = "\n" + diag()
                except Exception as e:  # diagnostics must not mask
                    extra = "\n(diagnostics failed: %r)" % e
            raise AssertionError("timed out after %.1fs waiting for %s%s"
                                 % (scaled(timeout), what, extra))
        time.sleep(interval)


def assert_stays(pred, seconds, what="condition", interval=0.05):
    """The other side of wait_for: pred() must hold throughout the next
    seconds (for things that must not happen, e.g. a restart).  Fails as
    soon as it does not."""
    end = time.monotonic() + seconds
    while True:
        if not pred():
            raise AssertionError("%s stopped holding" % what)
        if time.monotonic() >= end:
            return
        time.sleep(interval)


def clamp(n, lo, hi):
    return max(lo, min(hi, n))


# Processes -----------------------------------------------------------------
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
PR_SET_PDEATHSIG = 1


def die_with_parent(sig=signal.SIGKILL):
    """preexec_fn: the process dies when the test process does, even if the
    test runner is SIGKILLed (a timeout in CTest)."""
    _libc.prctl(PR_SET_PDEATHSIG, int(sig))


def proc_state(pid):
    """The one-letter state of pid (R, S, T, Z...), None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2:].split()[0]


def proc_alive(pid):
    """True while pid exists and is not a zombie."""
    return proc_state(pid) not in (None, "Z", "X")


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def proc_environ(pid):
    """The initial environment of pid as raw bytes (NUL-separated)."""
    with open("/proc/%d/environ" % pid, "rb") as f:
        return f.read()


def proc_memory_pieces(pid, secret, piece=12):
    """What a core dump of pid would show of secret: the places in its
    writable memory holding `piece` consecutive bytes of it (a token freed
    without wiping often survives only in part).  -> list of
    (address, mapping).  Reading another process's memory needs root (the
    daemon's processes are not dumpable)."""
    if isinstance(secret, str):
        secret = secret.encode()
    pieces = {secret[k:k + piece]
              for k in range(max(1, len(secret) - piece + 1))}
    found = []
    with open("/proc/%d/maps" % pid) as maps, \
            open("/proc/%d/mem" % pid, "rb", buffering=0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            name = f[5] if len(f) > 5 else "anonymous"
            # Sanitizer shadow memory is terabytes of nothing.
            if not f[1].startswith("rw") or hi - lo > (256 << 20) or \
                    name in ("[vvar]", "[vsyscall]"):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            for p in pieces:
                at = data.find(p)
                while at != -1:
                    found.append((lo + at, name))
                    at = data.find(p, at + 1)
    return sorted(set(found))


def proc_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return out


def proc_children(pid):
    """Direct children of pid (every thread's list)."""
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids += [int(x) for x in f.read().split()]
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return kids


def processes_mentioning(text):
    """Live pids (not this process) whose command line contains text."""
    me = os.getpid()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        if any(text in a for a in proc_cmdline(pid)) and proc_alive(pid):
            pids.append(pid)
    return pids


def signal_pid(pid, sig):
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


def reap_strays(text, timeout=10.0):
    """Waits for every process mentioning text to end; SIGKILLs the ones
    still there after timeout.  Returns a description of those, [] when
    none was left."""
    try:
        wait_for(lambda: not processes_mentioning(text), timeout,
                 interval=0.05)
        return []
    except AssertionError:
        pass
    left = []
    for pid in processes_mentioning(text):
        left.append("%d (%s): %s" % (pid, proc_state(pid),
                                     " ".join(proc_cmdline(pid))))
        signal_pid(pid, signal.SIGCONT)
        signal_pid(pid, signal.SIGKILL)
    return left


# Temp dir, PKI, configuration ----------------------------------------------
class TestDir:
    """A private directory for one test.  Paths stay short: the daemon's
    IPC sockets live in its run dir and sun_path holds 108 bytes."""

    def __init__(self, prefix="rp-e2e-"):
        base = os.environ.get("RP_E2E_TMPDIR") or "/tmp"
        self.path = tempfile.mkdtemp(prefix=prefix, dir=base)
        self._pki = None

    def join(self, *parts):
        return os.path.join(self.path, *parts)

    @property
    def pki(self):
        """A throwaway CA and a server certificate for 127.0.0.1/localhost
        (simhttp.make_test_pki), made on first use."""
        if self._pki is None:
            self._pki = simhttp.make_test_pki(self.join("pki"))
        return self._pki

    @property
    def run_dir(self):
        """Where the daemon's sockets go; not created (the daemon makes it
        0700 itself)."""
        return self.join("run")

    def write(self, name, data, mode=0o600):
        path = self.join(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def write_config(self, config, name="config.yaml"):
        """config: a dict (written as YAML) or text (written as is)."""
        if not isinstance(config, (str, bytes)):
            config = to_yaml(config)
        return self.write(name, config)

    def write_token(self, token, name="circle-token"):
        return self.write(name, token + "\n")

    def remove(self):
        shutil.rmtree(self.path, ignore_errors=True)


class KubeletDir:
    """A directory as the kubelet mounts a Secret or ConfigMap volume:
    every key is a symlink "key -> ..data/key", "..data" is a symlink to a
    hidden timestamped directory holding the files.  update() does what
    the kubelet's AtomicWriter does: a new timestamped directory, the
    symlink "..data_tmp" to it renamed onto "..data" (atomic), new keys'
    symlinks after that, the old directory removed."""

    def __init__(self, path, files):
        self.path = path
        self.n = 0
        os.makedirs(path, exist_ok=True)
        self.update(files)

    def join(self, key):
        return os.path.join(self.path, key)

    def update(self, files):
        """files: {key: text or bytes}; keys not given disappear."""
        self.n += 1
        ts = "..%s_%04d.%08d" % (time.strftime("%Y_%m_%d_%H_%M_%S"),
                                 self.n, os.getpid())
        d = os.path.join(self.path, ts)
        os.mkdir(d, 0o755)
        for key, data in files.items():
            if isinstance(data, str):
                data = data.encode()
            with open(os.path.join(d, key), "wb") as f:
                f.write(data)
            os.chmod(os.path.join(d, key), 0o440)
        data_link = os.path.join(self.path, "..data")
        old = os.readlink(data_link) if os.path.islink(data_link) else None
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(ts, tmp)
        os.rename(tmp, data_link)
        for key in files:
            link = os.path.join(self.path, key)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", key), link)
        for name in os.listdir(self.path):
            link = os.path.join(self.path, name)
            if not name.startswith("..") and name not in files and \
                    os.path.islink(link):
                os.unlink(link)
        if old is not None:
            shutil.rmtree(os.path.join(self.path, old), ignore_errors=True)


def to_yaml(obj):
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def make_config(classes):
    """{"ns/name": {"token": ..., "minReplicas": ...}} -> config dict."""
    return {"resourceClass": {name: dict(c) for name, c in classes.items()}}


def runner_token(class_name):
    """A distinctive runner (resource class) token for a class."""
    return "e2e-runner-token-" + re.sub(r"[^A-Za-z0-9]", "-", class_name)


# HTTP ----------------------------------------------------------------------
def split_hostport(addr):
    """'127.0.0.1:80' or '[::1]:80' -> (host, port)."""
    if addr.startswith("["):
        host, _, port = addr[1:].partition("]:")
    else:
        host, _, port = addr.rpartition(":")
    return host, int(port)


def http_get(addr, path, timeout=5.0):
    """GET http://addr/path -> (status, body text, headers dict)."""
    host, port = split_hostport(addr)
    conn = http.client.HTTPConnection(host, port, timeout=scaled(timeout))
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        r = conn.getresponse()
        body = r.read().decode("utf-8", "replace")
        return r.status, body, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


def loopback_alias_usable(ip="127.0.0.2"):
    """True when ip (another loopback address) can be bound here."""
    s = socket.socket()
    try:
        s.bind((ip, 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Prober:
    """Keeps GETting one endpoint from a thread; records (time, status)
    with status None when the request failed.  A context manager."""

    def __init__(self, get, path, interval=0.05):
        self.get = get
        self.path = path
        self.interval = interval
        self.results = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                status = self.get(self.path)[0]
            except (OSError, http.client.HTTPException) as e:
                status = None
                self.last_error = e
            self.results.append((time.time(), status))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(scaled(10))

    def statuses(self):
        return [s for _, s in self.results]


# Prometheus text format ----------------------------------------------------
_SAMPLE_RE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """A parsed /metrics body: samples, TYPE and HELP lines."""

    def __init__(self, text):
        self.text = text
        self.samples = []  # (name, {label: value}, float)
        self.types = {}
        self.helps = {}
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(None, 3)
                self.types[name] = kind
                continue
            if line.startswith("# HELP "):
                parts = line.split(None, 3)
                self.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
                continue
            if line.startswith("#"):
                continue
            m = _SAMPLE_RE.match(line)
            if m is None:
                raise AssertionError("unparsable metrics line: %r" % line)
            labels = {k: v.encode().decode("unicode_escape")
                      for k, v in _LABEL_RE.findall(m.group(2) or "")}
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def find(self, name, **labels):
        return [(l, v) for n, l, v in self.samples if n == name and
                all(l.get(k) == str(want) for k, want in labels.items())]

    def get(self, name, **labels):
        """The value of the one sample matching name and labels; None when
        there is none (several: AssertionError)."""
        found = self.find(name, **labels)
        if not found:
            return None
        if len(found) > 1:
            raise AssertionError("%d samples of %s match %r" % (
                len(found), name, labels))
        return found[0][1]

    def names(self):
        return {n for n, _, _ in self.samples}


def promtool_check(text):
    """`promtool check metrics` on text -> (exit status, output)."""
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=scaled(60))
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


# The nng wire format (proto/msg.h), decoded independently of the C code ----
NNGCAT = "/usr/bin/nngcat"
MSG_KINDS = {1: "demand", 2: "health_query", 3: "health"}
DEMAND_ERRORS = ("none", "http", "transport", "parse", "rate_limited",
                 "auth")
_HDR = struct.Struct("<2sBBIII")        # magic, version, kind, len, seq, pid
_DEMAND = struct.Struct("<QQBBHIIH")    # cycle, observed_ms, ok, error,
#                                         http_status, unclaimed, running,
#                                         class name length


def decode_message(data):
    """One message -> dict; AssertionError when it breaks the format."""
    if len(data) < _HDR.size:
        raise AssertionError("short message: %r" % data)
    magic, version, kind, length, seq, pid = _HDR.unpack_from(data)
    m = dict(magic=magic, version=version, kind=MSG_KINDS.get(kind, kind),
             len=length, seq=seq, pid=pid)
    if magic != b"RP" or version != 1 or length != len(data) or pid == 0:
        raise AssertionError("bad header %r in %r" % (m, data))
    if m["kind"] == "demand":
        (cycle, observed_ms, ok, err, status, unclaimed, running,
         n) = _DEMAND.unpack_from(data, _HDR.size)
        name = data[_HDR.size + _DEMAND.size:]
        if len(name) != n:
            raise AssertionError("class name length %d, %d bytes follow"
                                 % (n, len(name)))
        m.update(cycle=cycle, observed_ms=observed_ms, ok=ok, error=err,
                 error_name=DEMAND_ERRORS[err] if err < len(DEMAND_ERRORS)
                 else err, http_status=status, unclaimed=unclaimed,
                 running=running, resource_class=name.decode())
    return m


def encode_header(kind, payload, seq, pid):
    return _HDR.pack(b"RP", 1, kind, _HDR.size + len(payload), seq,
                     pid) + payload


class NngcatSubscriber:
    """nngcat (Debian's nng-utils, an nng peer independent of this code)
    subscribed to a PUB socket, every message hex-dumped to a file as it
    arrives; messages() decodes what came so far."""

    def __init__(self, url, out_path):
        self.url = url
        self.out_path = out_path
        self.proc = None

    def start(self):
        self._out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(
            [NNGCAT, "--sub0", "--dial", self.url, "--subscribe", "",
             "--hex"], stdout=self._out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        return self

    def raw(self):
        with open(self.out_path, "rb") as f:
            text = f.read().decode()
        lines = text.split("\n")[:-1]  # the last one may be partial
        return [ast.literal_eval("b" + line) for line in lines if line]

    def messages(self):
        return [decode_message(d) for d in self.raw()]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if getattr(self, "_out", None):
            self._out.close()
            self._out = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# The log -------------------------------------------------------------------
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")
LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_PROCS = ("supervisor", "poller", "actuator")
REQUIRED_FIELDS = ("ts", "level", "proc", "pid", "msg")


def log_line_problem(obj):
    """Why obj is not a well-formed log line (DESIGN §8), or None."""
    if not isinstance(obj, dict):
        return "not a JSON object"
    for k in REQUIRED_FIELDS:
        if k not in obj:
            return "no %r field" % k
    if not isinstance(obj["ts"], str) or not TS_RE.match(obj["ts"]):
        return "ts %r is not RFC 3339 with milliseconds" % (obj["ts"],)
    if obj["level"] not in LOG_LEVELS:
        return "unknown level %r" % (obj["level"],)
    if obj["proc"] not in LOG_PROCS:
        return "unknown proc %r" % (obj["proc"],)
    if not isinstance(obj["pid"], int) or obj["pid"] <= 0:
        return "pid %r is not a process id" % (obj["pid"],)
    if not isinstance(obj["msg"], str) or not obj["msg"]:
        return "empty msg"
    return None


def log_time(entry):
    """A log line's ts as epoch seconds."""
    return datetime.datetime.fromisoformat(entry["ts"]).timestamp()


def matches(entry, msg=None, proc=None, where=None, **fields):
    """msg: exact text, a compiled regex (searched) or a callable."""
    if proc is not None and entry.get("proc") != proc:
        return False
    if msg is not None:
        m = entry.get("msg", "")
        if isinstance(msg, str):
            if m != msg:
                return False
        elif hasattr(msg, "search"):
            if not msg.search(m):
                return False
        elif not msg(m):
            return False
    for k, v in fields.items():
        if k not in entry or entry[k] != v:
            return False
    if where is not None and not where(entry):
        return False
    return True


class LogFile:
    """Follows a JSON-lines log file as it grows.  Every complete line must
    be a well-formed log object; the others are kept in .bad (the owner
    fails the test on them)."""

    def __init__(self, path):
        self.path = path
        self.entries = []
        self.raw = []  # every complete line as text, in order
        self.bad = []  # (line number, text, problem)
        self._offset = 0
        self._partial = b""

    def refresh(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            text = raw.decode("utf-8", "replace")
            self.raw.append(text)
            try:
                obj = json.loads(text)
                problem = log_line_problem(obj)
            except ValueError as e:
                obj, problem = None, "not JSON (%s)" % e
            if problem is not None:
                self.bad.append((len(self.raw), text, problem))
            else:
                self.entries.append(obj)

    def check(self):
        """AssertionError when any line was not a proper log object."""
        self.refresh()
        if self.bad:
            raise AssertionError(
                "%d malformed log line(s) in %s:\n%s" % (
                    len(self.bad), self.path, "\n".join(
                        "  line %d (%s): %s" % (n, why, t[:300])
                        for n, t, why in self.bad[:10])))

    def mark(self):
        """A position: pass as since= to look only at later lines."""
        self.refresh()
        return len(self.entries)

    def find(self, since=0, **match):
        self.refresh()
        return [e for e in self.entries[since:] if matches(e, **match)]

    def tail(self, n=40):
        self.refresh()
        lines = self.raw[-n:]
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace") +
                         " (partial)")
        return "last %d log lines of %s:\n%s" % (
            len(lines), self.path, "\n".join("  " + l for l in lines))


# Simulators ----------------------------------------------------------------
class SimCallError(AssertionError):
    def __init__(self, status, message):
        super().__init__("HTTP %s: %s" % (status, message))
        self.status = status


class JSONClient:
    """JSON over HTTPS to a simulator's control API, trusting one CA."""

    def __init__(self, url, ca, timeout=15.0):
        self.url = url.rstrip("/")
        self.timeout = scaled(timeout)
        self.context = ssl.create_default_context(cafile=ca)

    def call(self, method, path, body=None, query=None):
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.context) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("message", raw.decode())
            except (ValueError, AttributeError):
                msg = raw.decode(errors="replace")
            raise SimCallError(e.code, "%s %s: %s" % (method, path, msg))
        return json.loads(raw) if raw else {}


class Sim:
    """A simulator subprocess serving HTTPS with the TestDir's PKI.
    Subclasses set script and build their own arguments (sim_args), and
    say which provisioner flags point at them (provisioner_args)."""

    name = "sim"
    script = None
    serves_kubernetes = False  # True: the provisioner runs without --dry-run

    def __init__(self, tdir):
        self.tdir = tdir
        self.dir = tdir.join(self.name)
        self.proc = None
        self.port = None
        self._files = []

    def sim_args(self):
        return []

    def provisioner_args(self):
        return []

    def provisioner_env(self):
        return {}

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def start(self, timeout=30.0):
        os.makedirs(self.dir, exist_ok=True)
        port_file = os.path.join(self.dir, "port")
        pki = self.tdir.pki
        cmd = [PYTHON, os.path.join(SIM_DIR, self.script),
               "--listen", "127.0.0.1:0", "--port-file", port_file,
               "--tls-cert", pki["cert"], "--tls-key", pki["key"]]
        cmd += self.sim_args()
        out = open(os.path.join(self.dir, "stdout"), "wb")
        err = open(os.path.join(self.dir, "stderr"), "wb")
        self._files = [out, err]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                     stdin=subprocess.DEVNULL, env=env,
                                     preexec_fn=die_with_parent)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s:\n%s" % (
                    self.name, self.proc.returncode, self.stderr()))
            try:
                with open(port_file) as f:
                    return int(f.read())
            except (FileNotFoundError, ValueError):
                return None
        self.port = wait_for(ready, timeout, what="%s to listen" % self.name)
        self.client = JSONClient(self.url, pki["ca"])
        return self

    def diag(self):
        """A note for failure messages when the simulator is not running."""
        if self.proc is None or self.proc.poll() is None:
            return ""
        return "%s simulator exited with %s; its stderr:\n%s\n" % (
            self.name, self.proc.returncode, self.stderr())

    def stderr(self):
        try:
            with open(os.path.join(self.dir, "stderr"), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in self._files:
            f.close()
        self._files = []

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.stop()


class CircleSim(Sim):
    """tests/sim/circleci_sim.py: the CircleCI runner API (see its
    docstring for the control API the helpers wrap)."""

    name = "circleci"
    script = "circleci_sim.py"

    def __init__(self, tdir, classes=(), api_token=API_TOKEN,
                 task_duration_ms=1000):
        """classes: names ({name: runner token} or a list of names, whose
        tokens are runner_token(name))."""
        super().__init__(tdir)
        if not isinstance(classes, dict):
            classes = {c: runner_token(c) for c in classes}
        self.classes = dict(classes)
        self.api_token = api_token
        self.task_duration_ms = task_duration_ms

    def sim_args(self):
        args = ["--token", self.api_token,
                "--task-duration-ms", str(self.task_duration_ms)]
        for name, tok in self.classes.items():
            args += ["--class", "%s=%s" % (name, tok)]
        return args

    def provisioner_args(self):
        return ["--circleci-api-addr", self.url,
                "--circleci-ca-file", self.tdir.pki["ca"]]

    # Control API helpers.
    def add_class(self, name, token=None):
        return self.client.call("POST", "/_sim/classes", {
            "name": name, "runner_token": token or runner_token(name)})

    def queue(self, cls, n, duration_ms=None):
        body = {"resource_class": cls, "add": n}
        if duration_ms is not None:
            body["duration_ms"] = duration_ms
        return self.client.call("POST", "/_sim/queue", body)

    def set_unclaimed(self, cls, n):
        return self.client.call("POST", "/_sim/queue",
                                {"resource_class": cls, "set_unclaimed": n})

    def set_running(self, cls, n):
        return self.client.call("POST", "/_sim/running",
                                {"resource_class": cls, "set": n})

    def set_counts(self, cls, unclaimed, running):
        self.set_unclaimed(cls, unclaimed)
        return self.set_running(cls, running)

    def fault(self, **spec):
        """Adds a fault switch (simhttp.Fault fields); returns its id."""
        return self.client.call("POST", "/_sim/faults", spec)["id"]

    def faults(self):
        return self.client.call("GET", "/_sim/faults")["faults"]

    def clear_faults(self):
        self.client.call("DELETE", "/_sim/faults")

    def ratelimit(self, limit, **spec):
        """A rate limit over the runner API (window_s, headers: kong, ietf
        or none, retry_after); returns its settings."""
        return self.client.call("POST", "/_sim/ratelimit",
                                dict(spec, limit=limit))

    def ratelimit_state(self):
        return self.client.call("GET", "/_sim/ratelimit")

    def clear_ratelimit(self):
        self.client.call("DELETE", "/_sim/ratelimit")

    def requests(self, since=0.0, resource_class=None, endpoint=None):
        """Journal entries (t, method, path, query, status, endpoint,
        resource_class, token_matched, peer, fault) with t >= since."""
        reqs = self.client.call("GET", "/_sim/requests",
                                query={"since": repr(float(since))})
        return [r for r in reqs["requests"]
                if (resource_class is None or
                    r.get("resource_class") == resource_class) and
                (endpoint is None or r.get("endpoint") == endpoint)]

    def clear_requests(self):
        self.client.call("DELETE", "/_sim/requests")

    def state(self):
        return self.client.call("GET", "/_sim/state")


class Sims:
    """The simulators of one test, in start order.  Provisioner asks each
    for its flags; stop() stops them all (last started first)."""

    def __init__(self, *sims):
        self._sims = list(sims)

    def add(self, sim):
        self._sims.append(sim)
        return sim

    def __iter__(self):
        return iter(self._sims)

    def of(self, cls):
        return next((s for s in self._sims if isinstance(s, cls)), None)

    @property
    def serves_kubernetes(self):
        return any(s.serves_kubernetes for s in self._sims)

    def provisioner_args(self):
        return [a for s in self._sims for a in s.provisioner_args()]

    def provisioner_env(self):
        env = {}
        for s in self._sims:
            env.update(s.provisioner_env())
        return env

    def stop(self):
        for s in reversed(self._sims):
            s.stop()


# The daemon ----------------------------------------------------------------
STARTED_RE = re.compile(r"^started the (poller|actuator) \(pid (\d+)\)$")


def run_cli(args, env=None, timeout=30.0, binary=SUPERVISOR):
    """Runs a binary to completion (--help, --check-config, bad flags...):
    -> CompletedProcess with text stdout and stderr."""
    e = clean_env()
    e.update(env or {})
    return subprocess.run([binary] + list(args), env=e, capture_output=True,
                          text=True, errors="replace", timeout=scaled(timeout),
                          stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)


def clean_env():
    """This process's environment without anything that would change the
    daemon's behaviour behind a test's back."""
    env = dict(os.environ)
    for k in ("CIRCLE_TOKEN", "KUBECONFIG", "XDG_RUNTIME_DIR",
              "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
              "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
              "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        env.pop(k, None)
    return env


class Provisioner:
    """The supervisor (runner-provisioner) in a subprocess.

    Flags: --config, the token (a --circle-token-file by default, or
    CIRCLE_TOKEN with token_via="env"), each simulator's flags,
    --dry-run unless a simulator serves Kubernetes (or dry_run says
    otherwise), --ready-addr / --live-addr on port 0 of two loopback
    addresses (the actual ports are read from the "serving HTTP" lines),
    --run-dir inside the TestDir, --poll-interval, plus extra args.
    stderr goes to a file that .log parses as it grows.

    wrapper: a command prefix (e.g. unshare ...); the supervisor is then a
    child of the wrapper and .pid is found through /proc."""

    def __init__(self, tdir, sims=(), config=None, token=API_TOKEN,
                 token_via="file", dry_run=None, poll_interval="500ms",
                 shutdown_grace=None, args=(), env=None, wrapper=None,
                 ready_addr="127.0.0.1:0", live_addr=None, run_dir=None,
                 log_level=None, name="provisioner"):
        self.tdir = tdir
        self.sims = sims if isinstance(sims, Sims) else Sims(*sims)
        self.config = config or tdir.join("config.yaml")
        self.token = token
        self.token_via = token_via
        self.dry_run = (not self.sims.serves_kubernetes
                        if dry_run is None else dry_run)
        self.poll_interval = poll_interval
        self.shutdown_grace = shutdown_grace
        self.extra_args = list(args)
        self.extra_env = dict(env or {})
        self.wrapper = list(wrapper or [])
        self.ready_addr = ready_addr
        if live_addr is None:
            live_addr = ("127.0.0.2:0" if loopback_alias_usable()
                         else "127.0.0.1:%d" % free_port())
        self.live_addr = live_addr
        self.run_dir = run_dir or tdir.run_dir
        self.log_level = log_level
        self.name = name
        self.log_path = tdir.join(name + ".log")
        n = 1
        while os.path.exists(self.log_path):  # one file per daemon run
            n += 1
            self.log_path = tdir.join("%s-%d.log" % (name, n))
        self.log = LogFile(self.log_path)
        self.proc = None
        self.pid = None
        self.addrs = {}  # "/ready" "/metrics" "/live" -> HOST:PORT
        self.started_at = None
        self._stopped = None

    # Starting and stopping.
    def argv(self):
        a = [SUPERVISOR, "--config", self.config, "--run-dir", self.run_dir,
             "--ready-addr", self.ready_addr, "--live-addr", self.live_addr]
        if self.poll_interval:
            a += ["--poll-interval", self.poll_interval]
        if self.shutdown_grace:
            a += ["--shutdown-grace", self.shutdown_grace]
        if self.log_level:
            a += ["--log-level", self.log_level]
        if self.token is not None and self.token_via == "file":
            a += ["--circle-token-file", self.tdir.write_token(self.token)]
        elif self.token_via == "file":
            a += ["--circle-token-file", self.tdir.join("no-such-token")]
        if self.dry_run:
            a += ["--dry-run"]
        return a + self.sims.provisioner_args() + self.extra_args

    def environment(self):
        env = clean_env()
        env.update(self.sims.provisioner_env())
        if self.token is not None and self.token_via == "env":
            env["CIRCLE_TOKEN"] = self.token
        env.update(self.extra_env)
        return env

    def start(self, wait_serving=True, timeout=30.0):
        self._err = open(self.log_path, "xb")
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            self.wrapper + self.argv(), stdout=subprocess.DEVNULL,
            stderr=self._err, stdin=subprocess.DEVNULL,
            env=self.environment(), preexec_fn=die_with_parent)
        self.pid = None if self.wrapper else self.proc.pid
        if wait_serving:
            self.wait_serving(timeout)
        return self

    def wait_serving(self, timeout=30.0):
        """Waits for the supervisor's "serving HTTP" lines and notes which
        address serves which path."""
        def serving():
            for e in self.log.find(msg="serving HTTP", proc="supervisor"):
                for path in e.get("paths", "").split():
                    self.addrs[path] = e["addr"]
            return all(p in self.addrs for p in ("/ready", "/metrics",
                                                  "/live"))
        self.wait(serving, timeout, "the supervisor to serve HTTP")
        if self.pid is None:
            self.pid = wait_for(self._find_supervisor, timeout,
                                what="the supervisor under the wrapper")

    def _find_supervisor(self):
        stack = [self.proc.pid]
        while stack:
            pid = stack.pop()
            if pid != self.proc.pid and proc_cmdline(pid)[:1] == [SUPERVISOR]:
                return pid
            stack += proc_children(pid)
        return None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        return signal_pid(self.pid or self.proc.pid, sig)

    def wait_exit(self, timeout=30.0):
        """Waits for the process (the wrapper, if any) to end: exit code."""
        try:
            return self.proc.wait(scaled(timeout))
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %.1fs\n%s" % (
                self.name, scaled(timeout), self.log.tail()))

    def stop(self, sig=signal.SIGTERM, timeout=30.0):
        """Sends sig and waits: (exit status, seconds it took)."""
        t0 = time.monotonic()
        self.send_signal(sig)
        rc = self.wait_exit(timeout)
        self._stopped = (rc, time.monotonic() - t0)
        return self._stopped

    def kill(self):
        """Cleanup after anything: every process of this daemon ends."""
        pids = self.all_child_pids()
        for pid in pids:
            if proc_alive(pid) and self.tdir.path in " ".join(
                    proc_cmdline(pid)):
                signal_pid(pid, signal.SIGCONT)  # a test may have stopped it
        if self.running():
            self.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(scaled(15))
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        for pid in pids:
            if proc_alive(pid) and self.tdir.path in " ".join(
                    proc_cmdline(pid)):
                signal_pid(pid, signal.SIGKILL)
        if getattr(self, "_err", None):
            self._err.close()
            self._err = None

    def __enter__(self):
        return self.start() if self.proc is None else self

    def __exit__(self, *exc):
        self.kill()

    # The log.
    def diag(self):
        rc = "" if self.running() else " (exited with %s)" % (
            self.proc.returncode if self.proc else "-")
        sims = "".join(s.diag() for s in self.sims)
        ready = ""
        if self.running():
            try:
                status, body = self.ready()
                ready = "GET /ready: %s %s\n" % (
                    status, json.dumps(body, sort_keys=True)[:3000])
            except Exception as e:  # diagnostics must not mask
                ready = "GET /ready failed: %r\n" % e
        # The poller's scaler lines drown everything else in a tail.
        self.log.refresh()
        other = [l for l in self.log.raw if '"loop_name":"scaler"' not in l]
        return "%s%s\n%s%s%s\nlast %d lines but the scaler's:\n%s" % (
            self.name, rc, sims, ready, self.log.tail(), len(other[-25:]),
            "\n".join("  " + l for l in other[-25:]))

    def wait(self, pred, timeout=30.0, what="condition", allow_exit=False):
        """wait_for(pred) that fails at once, with the log tail, if the
        daemon exits meanwhile (unless allow_exit)."""
        def check():
            v = pred()
            if v:
                return v
            if not allow_exit and not self.running():
                v = pred()  # lines written just before the exit
                if v:
                    return v
                raise AssertionError(
                    "%s exited (status %s) while waiting for %s\n%s" % (
                        self.name, self.proc.returncode, what,
                        self.log.tail()))
            return None
        return wait_for(check, timeout, what=what, diag=self.diag)

    def assert_stays(self, pred, seconds, what="condition"):
        """assert_stays(), failing with the log tail, and at once if the
        daemon exits."""
        def check():
            if not self.running():
                raise AssertionError("%s exited (status %s) while %s had "
                                     "to hold\n%s" % (
                                         self.name, self.proc.returncode,
                                         what, self.log.tail()))
            return pred()
        try:
            assert_stays(check, seconds, what)
        except AssertionError as e:
            if "exited" in str(e):
                raise
            raise AssertionError("%s\n%s" % (e, self.diag()))

    def mark(self):
        return self.log.mark()

    def lines(self, since=0, **match):
        """Log entries from position since matching (msg=, proc=, where=,
        field=value...).  Fails on any malformed line so far."""
        self.log.check()
        return self.log.find(since=since, **match)

    def wait_log(self, timeout=30.0, since=0, allow_exit=False, **match):
        """Waits for a log line matching; returns it."""
        pos = [since]

        def find():
            self.log.check()
            entries = self.log.entries
            for i in range(pos[0], len(entries)):
                if matches(entries[i], **match):
                    return entries[i]
            pos[0] = len(entries)
            return None
        what = "a log line matching %s" % ", ".join(
            "%s=%r" % (k, getattr(v, "pattern", v))
            for k, v in sorted(match.items()))
        return self.wait(find, timeout, what, allow_exit=allow_exit)

    def wait_logs(self, count, timeout=30.0, since=0, **match):
        """Waits until count lines match; returns them."""
        what = "%d log lines matching %s" % (count, match)
        return self.wait(lambda: (lambda l: l if len(l) >= count else None)(
            self.lines(since=since, **match)), timeout, what)

    # Children.
    def child_pids(self, child, since=0):
        """Every pid the supervisor logged starting the child with."""
        out = []
        for e in self.lines(since=since, proc="supervisor"):
            m = STARTED_RE.match(e["msg"])
            if m and m.group(1) == child:
                out.append(int(m.group(2)))
        return out

    def all_child_pids(self):
        self.log.refresh()
        out = []
        for e in self.log.entries:
            m = STARTED_RE.match(e.get("msg", ""))
            if m and e.get("proc") == "supervisor":
                out.append(int(m.group(2)))
        return out

    def child_pid(self, child):
        """The pid of the child's latest start (None before the first)."""
        pids = self.child_pids(child)
        return pids[-1] if pids else None

    def wait_child(self, child, since=0, timeout=30.0, other_than=None):
        """Waits for a "started the <child> (pid N)" line after since (and
        with N != other_than): returns N."""
        e = self.wait_log(
            timeout, since, proc="supervisor",
            msg=re.compile(r"^started the %s \(pid \d+\)$" % child),
            where=lambda e: int(STARTED_RE.match(e["msg"]).group(2)) !=
            other_than)
        return int(STARTED_RE.match(e["msg"]).group(2))

    # HTTP.
    def get(self, path, timeout=5.0):
        """GET path on the listener that serves it -> (status, body)."""
        base = path.split("?")[0]
        addr = self.addrs.get(base) or self.addrs.get("/ready")
        status, body, _ = http_get(addr, path, timeout)
        return status, body

    def get_full(self, path, timeout=5.0):
        base = path.split("?")[0]
        return http_get(self.addrs.get(base) or self.addrs["/ready"], path,
                        timeout)

    def get_json(self, path, timeout=5.0):
        status, body = self.get(path, timeout)
        try:
            return status, json.loads(body)
        except ValueError:
            raise AssertionError("GET %s: %d, not JSON: %r" % (
                path, status, body[:500]))

    def ready(self):
        """(status, parsed /ready body)."""
        return self.get_json("/ready")

    def metrics(self):
        status, body = self.get("/metrics")
        if status != 200:
            raise AssertionError("GET /metrics: %d %s" % (status, body))
        return Metrics(body)

    def wait_status(self, path, want, timeout=30.0, where=None):
        """Waits until GET path answers want (and where(body) holds);
        returns the body."""
        def probe():
            try:
                status, body = self.get(path)
            except (OSError, http.client.HTTPException):
                return None
            if status == want and (where is None or where(body)):
                return body if body else True
            return None
        return self.wait(probe, timeout, "GET %s to answer %d" % (path, want))

    def wait_ready(self, timeout=30.0):
        """Waits for GET /ready 200; returns the parsed body."""
        return json.loads(self.wait_status("/ready", 200, timeout))


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


# unittest glue -------------------------------------------------------------
class E2ETestCase(unittest.TestCase):
    """Base class: a TestDir per test; helpers that start simulators and the
    daemon and register their cleanup; at the very end (after every other
    cleanup), a check that no process of this test is left."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        missing = [b for b in (SUPERVISOR, POLLER, ACTUATOR)
                   if not os.access(b, os.X_OK)]
        if missing:
            raise unittest.SkipTest("not built: %s (build with cmake -S . "
                                    "-B build && make -C build, or set "
                                    "RP_BUILD_DIR)" % ", ".join(missing))

    def setUp(self):
        self.tdir = TestDir()
        self.sims = Sims()
        self.addCleanup(self._final_checks)

    def _final_checks(self):
        left = reap_strays(self.tdir.path)
        if os.environ.get("RP_E2E_KEEP") != "1":
            self.tdir.remove()
        else:
            sys.stderr.write("\nkept %s\n" % self.tdir.path)
        if left:
            raise AssertionError("processes left over by the test:\n  " +
                                 "\n  ".join(left))

    def start_circleci(self, classes=(), **kw):
        sim = self.sims.add(CircleSim(self.tdir, classes, **kw))
        self.addCleanup(sim.stop)
        return sim.start()

    def write_config(self, classes, name="config.yaml"):
        """classes: {"ns/name": {...}}; a class without a token gets
        runner_token(name)."""
        full = {}
        for n, c in classes.items():
            c = dict(c)
            c.setdefault("token", runner_token(n))
            full[n] = c
        return self.tdir.write_config(make_config(full), name)

    def provisioner(self, **kw):
        """A Provisioner for this test (not started), cleaned up after it:
        killed with its children, and the test fails on malformed lines."""
        kw.setdefault("sims", self.sims)
        p = Provisioner(self.tdir, **kw)
        self.addCleanup(self._cleanup_provisioner, p)
        return p

    def start_provisioner(self, **kw):
        return self.provisioner(**kw).start()

    def _cleanup_provisioner(self, p):
        p.kill()
        if p.proc is not None:
            p.log.check()

    def assert_no_live_pids(self, pids, what="process"):
        alive = [p for p in pids if proc_alive(p)]
        self.assertEqual(alive, [], "%s(es) still alive: %s" % (
            what, ", ".join("%d %s" % (p, proc_cmdline(p)) for p in alive)))


def main():
    """unittest.main() with a verbosity that shows every test's name."""
    unittest.main(verbosity=2)
