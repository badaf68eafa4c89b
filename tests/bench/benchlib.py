"""Building blocks of the benchmark harness (tests/bench/bench.py).

The benchmarks run the real daemon (the supervisor, which forks the poller
and the actuator) against the two simulators of tests/sim, started through
the end-to-end harness (tests/e2e/harness.py, tests/e2e/kubesim.py), and
judge only what an operator could see: /proc of the daemon's processes,
its JSON log, the simulators' request journals and task records.

  Stack          CircleCI simulator + Kubernetes simulator + daemon for a
                 set of resource classes
  proc_sample()  RSS, PSS, peak RSS, private/shared memory, threads, open
                 fds and CPU time of one process, from /proc
  percentile()   nearest-rank percentiles
"""

import os
import re
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
E2E = os.path.join(HERE, "..", "e2e")
sys.path.insert(0, os.path.abspath(E2E))

import harness  # noqa: E402
from kubesim import KubeSim, pool_name  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
PROCS = ("supervisor", "poller", "actuator")


def class_names(n, prefix="bench-org/class-"):
    return ["%s%03d" % (prefix, i) for i in range(n)]


def percentile(values, p):
    """Nearest-rank percentile of values (None when empty)."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def summary(values, scale=1.0, digits=1):
    """{n, p50, p95, p99, max, mean} of values, times scale."""
    if not values:
        return {"n": 0}
    r = lambda v: round(v * scale, digits)
    return {"n": len(values), "p50": r(percentile(values, 50)),
            "p95": r(percentile(values, 95)),
            "p99": r(percentile(values, 99)), "max": r(max(values)),
            "min": r(min(values)),
            "mean": r(sum(values) / len(values))}


# /proc -----------------------------------------------------------------------
def _kib(text):
    return int(text.split()[0])


def proc_sample(pid):
    """Memory, threads, fds and CPU of pid from /proc; None if it is gone.
    Sizes in KiB, CPU in seconds (utime/stime: clock ticks of the whole
    thread group; cpu_ns: the sum of the live threads' schedstat)."""
    try:
        status = harness.proc_status(pid)
        if status is None:
            return None
        out = {"rss_kib": _kib(status["VmRSS"]),
               "hwm_kib": _kib(status["VmHWM"]),
               "threads": int(status["Threads"])}
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss", "Private_Clean", "Private_Dirty",
                         "Shared_Clean", "Shared_Dirty", "Anonymous",
                         "Pss_Anon", "Pss_File"):
                    out[k.lower() + "_kib"] = _kib(v)
        out["private_kib"] = out.pop("private_clean_kib") + \
            out.pop("private_dirty_kib")
        out["shared_kib"] = out.pop("shared_clean_kib") + \
            out.pop("shared_dirty_kib")
        out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        out["utime_s"] = int(fields[11]) / CLK_TCK
        out["stime_s"] = int(fields[12]) / CLK_TCK
        ns = 0
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    ns += int(f.read().split()[0])
            except (FileNotFoundError, ProcessLookupError):
                pass
        out["cpu_ns"] = ns
        return out
    except (FileNotFoundError, ProcessLookupError, KeyError):
        return None


def cpu_seconds(sample):
    return sample["utime_s"] + sample["stime_s"]


def mapped_libraries(pid):
    """{library path: RSS KiB} of the files mapped by pid (smaps)."""
    out = {}
    cur = None
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                    parts = line.split()
                    cur = parts[5] if len(parts) > 5 else "[anon]"
                elif line.startswith("Rss:") and cur is not None:
                    out[cur] = out.get(cur, 0) + _kib(line.split(":")[1])
    except FileNotFoundError:
        pass
    return out


# The stack -------------------------------------------------------------------
class Stack:
    """The two simulators and the daemon for n resource classes.

    classes: {name: class config (minReplicas, maxReplicas, idleTimeout)}.
    boot_delay_ms / claim_interval_ms: the Kubernetes simulator's VMs.
    The daemon is the build's supervisor (RP_BUILD_DIR), started exactly as
    the end-to-end tests start it (TLS to both simulators, a kubeconfig with
    a CA file and a bearer token)."""

    def __init__(self, classes, poll_interval="1s", boot_delay_ms=300,
                 claim_interval_ms=100, task_duration_ms=1000,
                 boot_loop_threshold="250ms", tick_ms=50, prefix="rp-bench-",
                 log_level=None, wrapper=None, env=None, args=()):
        self.env = dict(env or {})
        self.args = list(args)
        self.tdir = harness.TestDir(prefix=prefix)
        self.classes = dict(classes)
        full = {}
        for n, c in self.classes.items():
            c = dict(c)
            c.setdefault("token", harness.runner_token(n))
            full[n] = c
        self.tdir.write_config(harness.make_config(full))
        self.circle = harness.CircleSim(self.tdir, list(self.classes),
                                        task_duration_ms=task_duration_ms)
        self.kube = KubeSim(self.tdir, circle=self.circle,
                            boot_delay_ms=boot_delay_ms,
                            claim_interval_ms=claim_interval_ms,
                            tick_ms=tick_ms)
        self.poll_interval = poll_interval
        self.boot_loop_threshold = boot_loop_threshold
        self.log_level = log_level
        self.wrapper = wrapper
        self.prov = None

    def start_sims(self):
        self.circle.start()
        self.kube.start()
        return self

    def provisioner(self):
        return harness.Provisioner(
            self.tdir, sims=[self.circle, self.kube],
            poll_interval=self.poll_interval, log_level=self.log_level,
            wrapper=self.wrapper, env=self.env,
            args=["--boot-loop-threshold", self.boot_loop_threshold] +
            self.args)

    def start(self, wait_ready=True, timeout=60.0):
        if self.circle.proc is None:
            self.start_sims()
        self.prov = self.provisioner()
        self.prov.start(timeout=timeout)
        if wait_ready:
            self.prov.wait_ready(timeout)
        return self

    def pids(self):
        return {"supervisor": self.prov.pid,
                "poller": self.prov.child_pid("poller"),
                "actuator": self.prov.child_pid("actuator")}

    def stop(self):
        if self.prov is not None:
            try:
                self.prov.kill()
            except Exception as e:  # keep stopping the rest
                sys.stderr.write("bench: stopping the daemon: %r\n" % e)
        self.kube.stop()
        self.circle.stop()
        left = harness.reap_strays(self.tdir.path, timeout=5)
        if os.environ.get("RP_BENCH_KEEP") == "1":
            sys.stderr.write("bench: kept %s\n" % self.tdir.path)
        else:
            self.tdir.remove()
        return left

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # Journals.
    def circle_requests(self, since):
        return [r for r in self.circle.requests(since)
                if r.get("endpoint") in ("tasks", "running", "runner")]

    def kube_daemon_requests(self, since):
        return self.kube.daemon_requests(since)

    def poll_lines(self, since=0):
        return self.prov.lines(since=since, proc="poller",
                               msg="polled task counts")

    def busy(self, names, unclaimed=0, running=1):
        """Gives every class tasks (synthetic running ones by default): it
        stays on the fast poll interval."""
        for n in names:
            self.circle.set_counts(n, unclaimed, running)


def kill9(pid):
    return harness.signal_pid(pid, signal.SIGKILL)


def log_epoch(entry):
    """The epoch of a log line's ts (RFC 3339, ms, Z or offset)."""
    ts = entry["ts"]
    m = re.match(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})"
                 r"(Z|([+-])(\d\d):(\d\d))$", ts)
    if m is None:
        raise ValueError("bad ts %r" % ts)
    import calendar
    y, mo, d, hh, mi, ss, ms = (int(m.group(i)) for i in range(1, 8))
    t = calendar.timegm((y, mo, d, hh, mi, ss)) + ms / 1000.0
    if m.group(8) != "Z":
        off = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        t -= off if m.group(9) == "+" else -off
    return t


def wait_for(pred, timeout=30.0, interval=0.02, what="condition"):
    return harness.wait_for(pred, timeout, interval, what)


def now():
    return time.time()


def unique_resident(pids):
    """Physical pages resident in any of pids, each counted once (what
    the processes together occupy, whoever else maps the same library
    pages): {"total_kib", "anon_kib", "file_kib"}, from /proc/PID/pagemap
    (page frame numbers need root: None otherwise)."""
    frames = {}
    for pid in pids:
        try:
            maps = open("/proc/%d/maps" % pid).read().splitlines()
            pm = open("/proc/%d/pagemap" % pid, "rb")
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            return None
        with pm:
            for line in maps:
                parts = line.split()
                if parts[1][0] != "r" or (len(parts) > 5 and
                                          parts[5] == "[vsyscall]"):
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                npages = (hi - lo) // (PAGE_KIB * 1024)
                if npages > (4 << 30) // (PAGE_KIB * 1024):
                    continue  # a sanitizer's shadow reservation
                try:
                    pm.seek(lo // (PAGE_KIB * 1024) * 8)
                    data = pm.read(npages * 8)
                except (OSError, MemoryError):
                    continue
                for (e,) in _struct.iter_unpack("<Q", data):
                    if not e >> 63:
                        continue
                    pfn = e & ((1 << 55) - 1)
                    if pfn == 0:
                        return None  # not allowed to see frames
                    frames[pfn] = bool(e >> 61 & 1)
    file_pages = sum(1 for f in frames.values() if f)
    return {"total_kib": len(frames) * PAGE_KIB,
            "file_kib": file_pages * PAGE_KIB,
            "anon_kib": (len(frames) - file_pages) * PAGE_KIB}


import struct as _struct  # noqa: E402
