#!/usr/bin/python3
"""Benchmarks of runner-provisioner against the simulators (DESIGN §11).

Usage: tests/bench/bench.py [--smoke] [--scenarios a,b,...] [--out FILE]
                            [--classes 1,10,100] [--build-dir DIR]
(scripts/bench.sh sets up the machine, builds a Release daemon into
build-bench and runs every scenario.)

Scenarios (each a function below; all run the real supervisor, poller and
actuator, started as the end-to-end tests start them, against
tests/sim/circleci_sim.py and tests/sim/kube_sim.py over TLS; the daemon
has no benchmark mode):

  steady     per class count (1, 10, 100 busy classes at 1 s polling: one
             running task and one VM per class, no demand change): after a
             warm-up, over a window,
             RSS, PSS, peak RSS, private/shared memory, threads and open fds
             per process; the distinct physical pages of the three together
             (pagemap); CPU time (user+sys from /proc/PID/stat) per
             process, per poll cycle and per class; CircleCI requests and
             Kubernetes reads and writes per minute; how fast the
             simulators answered (the poller's own latency histogram)
  floor      tests/bench/floor.c built and run as one supervisor and two
             children that only load and start the daemon's libraries:
             their distinct resident pages, the floor of steady's figure
  callgrind  the same stack with every process under valgrind
             --tool=callgrind (--trace-children=yes): counters zeroed, dumped
             K seconds later: instructions per poll cycle (polls logged / n)
             per process and per class (stable on a noisy machine)
  latency    a task appears in the CircleCI simulator -> the scale PATCH
             arrives at the Kubernetes simulator, over >= 200 changes at
             1 s and at 100 ms polling, split into "waiting for the next
             poll" and "poll request -> scale request" (the code's own part)
  scale      1, 100 and 1,000 classes, all idle (no task: polled every
             5 s once idle) or all busy (one queued task each), default
             flags: CircleCI requests/min, CPU, distinct resident memory, log
             lines/min, the effective poll interval; then reaction samples
             on --scale-samples classes: a task queued at a random moment
             -> its scale request (idle: the first task of an idle class;
             busy: --scale-changes more while it is busy)
  recovery   kill -9 of each child -> its replacement answers a health
             survey; supervisor start -> first CircleCI poll request
  soak       (only when named: --scenarios soak) 100 classes for
             --soak-minutes (30) under random faults from both simulators
             and child kills: RSS and descriptor slopes, busy VMs deleted,
             scale-downs from missing data, crashes (tests/bench/soak.py)
  trace      a bursty working day of jobs (by default its busy morning;
             --trace-profile quiet: a quiet day) replayed at speed through
             both simulators (VMs boot after a delay, claim tasks, run
             them, power off): queue wait p50/p95/max and VM time used,
             for several scaling settings at once (one class each, the
             same jobs; --trace-settings picks them)

Output: a table on stdout and a JSON file (schema "rp-bench/1"):
{"schema", "smoke", "started", "duration_s", "machine", "build",
 "scenarios": {name: {...}}, "targets": [{what, target, value, met}]}.
Benchmarks measure; they assert nothing about the figures.
"""

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def _early_args():
    """--build-dir must be known before the harness is imported."""
    for i, a in enumerate(sys.argv):
        if a == "--build-dir" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith("--build-dir="):
            return a.split("=", 1)[1]
    return None


if _early_args():
    os.environ["RP_BUILD_DIR"] = os.path.abspath(_early_args())
elif not os.environ.get("RP_BUILD_DIR"):
    os.environ["RP_BUILD_DIR"] = os.path.join(REPO, "build-bench")

sys.path.insert(0, HERE)
import benchlib as bl  # noqa: E402
import soak  # noqa: E402
from benchlib import harness  # noqa: E402

SCHEMA = "rp-bench/1"
SCENARIOS = ("steady", "floor", "callgrind", "latency", "scale", "recovery",
             "trace")
# Run only when named: half an hour by default.
EXTRA_SCENARIOS = ("soak",)
SCALED_RE = re.compile(r"^scaled (\S+) from (\d+) to (\d+)$")
# steady, callgrind, latency and trace poll every class at the fast
# interval, as before the request budget: 100 classes at 1 s (200
# requests/s) or 5 at 100 ms fit in this one.
FULL_RATE = ["--max-requests-per-second", "1000"]


def log(msg):
    sys.stderr.write("bench: %s\n" % msg)
    sys.stderr.flush()


# Machine and build ---------------------------------------------------------
def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    distro = "?"
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    load = os.getloadavg()
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_mib": mem,
            "os": distro, "kernel": platform.release(),
            "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in load]}


def build_info():
    bdir = harness.BUILD_DIR
    out = {"dir": bdir, "type": None, "sanitized": False, "commit": None,
           "version": None, "dirty": None}
    try:
        with open(os.path.join(bdir, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_BUILD_TYPE:"):
                    out["type"] = line.split("=", 1)[1].strip()
                if line.startswith("RP_SANITIZE:") and \
                        line.split("=", 1)[1].strip() in ("ON", "1", "TRUE"):
                    out["sanitized"] = True
    except OSError:
        pass
    try:
        out["version"] = subprocess.run(
            [harness.SUPERVISOR, "--version"], capture_output=True,
            text=True, timeout=10).stdout.strip()
        out["commit"] = subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10).stdout.strip()
        out["dirty"] = bool(subprocess.run(
            ["git", "-C", REPO, "status", "--porcelain", "--",
             "common", "poller", "actuator", "supervisor", "proto"],
            capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    for lib in ("libcurl.so.4", "libnng.so.1", "libssl.so.3"):
        out.setdefault("libraries", []).append(lib)
    return out


# steady: footprint, CPU from /proc, requests per minute --------------------
def metric_totals(m, name):
    """{label tuple: value} of a metric family's samples."""
    return {tuple(sorted(l.items())): v for l, v in m.find(name)}


def hist_mean(m0, m1, base):
    s = sum(v for v in metric_totals(m1, base + "_sum").values()) - \
        sum(v for v in metric_totals(m0, base + "_sum").values())
    n = sum(v for v in metric_totals(m1, base + "_count").values()) - \
        sum(v for v in metric_totals(m0, base + "_count").values())
    return (s / n if n else None), n


def hist_quantile(m0, m1, base, q, **labels):
    """An upper bound of quantile q from histogram bucket deltas."""
    b0 = {l["le"]: v for l, v in m0.find(base + "_bucket", **labels)
          if "le" in l}
    b1 = {l["le"]: v for l, v in m1.find(base + "_bucket", **labels)
          if "le" in l}
    agg = {}
    for le, v in b1.items():
        agg[le] = agg.get(le, 0) + v - b0.get(le, 0)
    if not agg or "+Inf" not in agg or agg["+Inf"] == 0:
        return None
    total = agg["+Inf"]
    for le in sorted(agg, key=lambda x: float("inf") if x == "+Inf"
                     else float(x)):
        if agg[le] >= q * total:
            return None if le == "+Inf" else float(le)
    return None


def steady_one(n, warmup, window, poll="1s"):
    classes = {c: {"minReplicas": 1, "maxReplicas": 10}
               for c in bl.class_names(n)}
    # Every class polled every second: the request budget raised so
    # that 100 classes (200 requests/s) fit.
    st = bl.Stack(classes, poll_interval=poll, claim_interval_ms=60000,
                  boot_delay_ms=200, args=FULL_RATE)
    try:
        t0 = time.time()
        # Busy classes (one running task each: desired stays 1): all of
        # them on the fast interval, as the figures before idle polling.
        st.start_sims()
        st.busy(classes)
        st.start(timeout=120)
        ready_s = time.time() - t0
        # Every class's pool at 1 VM, running.
        bl.wait_for(lambda: _vms_running(st) >= n, 120,
                    what="%d VMs running" % n)
        time.sleep(warmup)
        pids = st.pids()
        allpids = list(pids.values())
        sims = {"circleci_sim": st.circle.proc.pid,
                "kube_sim": st.kube.proc.pid}
        m0 = st.prov.metrics()
        a = {k: bl.proc_sample(p) for k, p in pids.items()}
        sa = {k: bl.proc_sample(p) for k, p in sims.items()}
        mark = st.prov.mark()
        t1 = time.time()
        peak_unique = None
        deadline = t1 + window
        while time.time() < deadline:
            u = bl.unique_resident(allpids)
            if u and (peak_unique is None or
                      u["total_kib"] > peak_unique["total_kib"]):
                peak_unique = u
            time.sleep(min(1.0, max(0.0, deadline - time.time())))
        t2 = time.time()
        b = {k: bl.proc_sample(p) for k, p in pids.items()}
        sb = {k: bl.proc_sample(p) for k, p in sims.items()}
        unique = bl.unique_resident(allpids)
        m1 = st.prov.metrics()
        span = t2 - t1
        polls = st.poll_lines(since=mark)
        per_class = {}
        for e in polls:
            per_class[e["resource_class"]] = \
                per_class.get(e["resource_class"], 0) + 1
        cycles = len(polls) / n
        procs = {}
        tot_cpu = 0.0
        for k in bl.PROCS:
            if a[k] is None or b[k] is None:
                raise AssertionError("%s died during the window" % k)
            cpu = bl.cpu_seconds(b[k]) - bl.cpu_seconds(a[k])
            tot_cpu += cpu
            procs[k] = dict(
                {f: b[k][f] for f in ("rss_kib", "pss_kib", "hwm_kib",
                                      "private_kib", "shared_kib",
                                      "anonymous_kib", "threads", "fds")},
                cpu_s=round(cpu, 3),
                cpu_pct=round(100 * cpu / span, 3),
                sched_cpu_pct=round(
                    (b[k]["cpu_ns"] - a[k]["cpu_ns"]) / 1e7 / span, 3),
                pid=pids[k])
        total = {f: sum(procs[k][f] for k in bl.PROCS)
                 for f in ("rss_kib", "pss_kib", "hwm_kib", "private_kib",
                           "anonymous_kib", "threads", "fds")}
        total["cpu_pct"] = round(100 * tot_cpu / span, 3)
        creq = st.circle_requests(t1)
        creq = [r for r in creq if r["t"] < t2]
        kreq = [r for r in st.kube_daemon_requests(t1) if r["t"] < t2]
        writes = [r for r in kreq if r["method"] != "GET"]
        lat_mean, lat_n = hist_mean(
            m0, m1, "runner_provisioner_circleci_request_duration_seconds")
        lat_p99 = hist_quantile(
            m0, m1, "runner_provisioner_circleci_request_duration_seconds",
            0.99)
        lag_p99 = hist_quantile(
            m0, m1, "runner_provisioner_poll_loop_lag_seconds", 0.99)
        per_min = 60.0 / span
        out = {
            "classes": n, "poll_interval": poll, "window_s": round(span, 1),
            "warmup_s": warmup, "start_to_ready_s": round(ready_s, 2),
            "processes": procs, "total": total,
            "unique_resident": unique, "unique_resident_peak": peak_unique,
            "cycles": round(cycles, 2),
            "polls_per_class": {"min": min(per_class.values() or [0]),
                                "max": max(per_class.values() or [0]),
                                "classes_seen": len(per_class)},
            "cpu_us_per_cycle": round(1e6 * tot_cpu / cycles, 1)
            if cycles else None,
            "cpu_us_per_cycle_per_class": round(
                1e6 * tot_cpu / cycles / n, 2) if cycles else None,
            "circleci_requests_per_min": round(len(creq) * per_min, 1),
            "kube_requests_per_min": round(len(kreq) * per_min, 1),
            "kube_writes_per_min": round(len(writes) * per_min, 2),
            "kube_writes": [dict(method=r["method"], path=r["path"],
                                 status=r["status"]) for r in writes][:20],
            "kube_reads_by_endpoint_per_min": _by_endpoint(kreq, per_min),
            "simulators": {
                "circleci_answer_mean_ms": round(1000 * lat_mean, 2)
                if lat_mean is not None else None,
                "circleci_answer_p99_le_ms": round(1000 * lat_p99, 1)
                if lat_p99 is not None else None,
                "answers": lat_n,
                "poll_loop_lag_p99_le_ms": round(1000 * lag_p99, 1)
                if lag_p99 is not None else None,
                "cpu_pct": {k: round(100 * (bl.cpu_seconds(sb[k]) -
                                            bl.cpu_seconds(sa[k])) / span, 1)
                            for k in sims if sa[k] and sb[k]},
            },
        }
        # Which mapped files make up a child's resident memory.
        libs = bl.mapped_libraries(pids["poller"])
        out["poller_top_mappings_kib"] = dict(sorted(
            ((os.path.basename(k) or k, v) for k, v in libs.items()),
            key=lambda kv: -kv[1])[:12])
        return out
    finally:
        st.stop()


def _by_endpoint(reqs, per_min):
    out = {}
    for r in reqs:
        k = "%s %s" % (r.get("verb") or r["method"], r.get("endpoint"))
        out[k] = out.get(k, 0) + 1
    return {k: round(v * per_min, 1) for k, v in sorted(out.items())}


def _vms_running(st):
    try:
        return sum(1 for v in st.kube.state()["vms"]
                   if v["printableStatus"] == "Running")
    except Exception:
        return 0


def scenario_steady(args):
    out = {}
    for n in args.class_counts:
        log("steady: %d class(es), warm-up %ss, window %ss"
            % (n, args.warmup, args.window))
        out[str(n)] = steady_one(n, args.warmup, args.window)
    return out


# floor: what the libraries alone cost ------------------------------------
def scenario_floor(args):
    """tests/bench/floor.c, built here against the same libraries: one
    "supervisor" and two "children" that only load and start the
    libraries; the distinct resident pages of the three, as steady
    measures the daemon's."""
    tdir = harness.TestDir(prefix="rp-bench-floor-")
    procs = []
    try:
        exe = tdir.join("floor")
        flags = subprocess.run(
            ["pkg-config", "--cflags", "--libs", "libcurl", "libmicrohttpd",
             "jansson", "yaml-0.1", "openssl"], capture_output=True,
            text=True, check=True, timeout=30).stdout.split()
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "floor.c"),
                        "-Wl,--as-needed"] + flags + ["-lnng"], check=True,
                       capture_output=True, timeout=120)
        # The children run as the supervisor starts them.
        env = dict(os.environ, GNUTLS_NO_IMPLICIT_INIT="1")
        for role in ("supervisor", "child", "child"):
            procs.append(subprocess.Popen(
                [exe, role, tdir.pki["ca"]] if role == "child" else
                [exe, role], env=env if role == "child" else None,
                stdin=subprocess.DEVNULL, preexec_fn=harness.die_with_parent))
        time.sleep(2)
        unique = bl.unique_resident([p.pid for p in procs])
        out = {"unique_resident": unique, "processes": {}}
        for name, p in zip(("supervisor", "child1", "child2"), procs):
            smp = bl.proc_sample(p.pid)
            out["processes"][name] = {k: smp[k] for k in (
                "rss_kib", "anonymous_kib", "threads")}
        return out
    finally:
        for p in procs:
            p.kill()
            p.wait()
        tdir.remove()


# callgrind: instructions per cycle ----------------------------------------
class CallgrindProvisioner(harness.Provisioner):
    """The supervisor under valgrind --tool=callgrind, children traced
    (valgrind execs itself in place, so the pids are the daemon's)."""

    def __init__(self, tdir, outdir, **kw):
        super().__init__(tdir, **kw)
        self.outdir = outdir

    def argv(self):
        vg = ["valgrind", "--tool=callgrind", "--trace-children=yes",
              "--callgrind-out-file=%s/callgrind.out.%%p" % self.outdir,
              "--log-file=%s/valgrind.%%p.log" % self.outdir,
              "--vgdb=yes", "--collect-atstart=yes"]
        return vg + super().argv()


def callgrind_available():
    try:
        subprocess.run(["valgrind", "--version"], capture_output=True,
                       timeout=10, check=True)
        subprocess.run(["callgrind_control", "-h"], capture_output=True,
                       timeout=10)
        return True
    except (OSError, subprocess.SubprocessError):
        return False


def callgrind_total(path):
    """The Ir total of a callgrind dump file."""
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return None


def callgrind_one(n, cycles, settle):
    """Instructions over `cycles` poll intervals (1 s) of n busy classes,
    divided by the poll cycles the log shows (polls / n): under valgrind
    the daemon may poll late, the count says how many it did."""
    classes = {c: {"minReplicas": 1, "maxReplicas": 10}
               for c in bl.class_names(n)}
    st = bl.Stack(classes, poll_interval="1s", claim_interval_ms=60000,
                  boot_delay_ms=200)
    outdir = st.tdir.join("callgrind")
    os.makedirs(outdir)
    try:
        st.start_sims()
        st.busy(classes)
        st.prov = CallgrindProvisioner(
            st.tdir, outdir, sims=[st.circle, st.kube], poll_interval="1s",
            args=["--boot-loop-threshold", "250ms"] + FULL_RATE)
        st.prov.start(timeout=180)
        st.prov.pid = st.prov.proc.pid
        # Not /ready: under valgrind the first sync of 100 classes can
        # outlast its freshness windows.  Every pool at one running VM
        # and every class polled is the steady state measured here.
        bl.wait_for(lambda: _vms_running(st) >= n, 400, interval=0.5,
                    what="%d VMs running" % n)
        bl.wait_for(lambda: len({e["resource_class"]
                                 for e in st.poll_lines()}) >= n, 120,
                    what="every class polled")
        time.sleep(settle)
        pids = st.pids()
        for k, pid in pids.items():
            subprocess.run(["callgrind_control", "-z", str(pid)],
                           capture_output=True, timeout=60, check=True)
        since = st.prov.mark()
        t0 = time.time()
        time.sleep(cycles)
        for k, pid in pids.items():
            subprocess.run(["callgrind_control", "-d", "bench", str(pid)],
                           capture_output=True, timeout=60, check=True)
        span = time.time() - t0
        got = len(st.poll_lines(since=since)) / float(n)
        if got <= 0:
            raise AssertionError("no poll in the callgrind window")
        out = {"classes": n, "cycles": round(got, 2),
               "wall_s": round(span, 2), "processes": {}}
        total = 0
        for k, pid in pids.items():
            dumps = sorted(f for f in os.listdir(outdir)
                           if f.startswith("callgrind.out.%d." % pid))
            if not dumps:
                raise AssertionError("no callgrind dump for %s (%d): %s"
                                     % (k, pid, os.listdir(outdir)))
            ir = callgrind_total(os.path.join(outdir, dumps[-1]))
            total += ir
            out["processes"][k] = {"instructions_per_cycle":
                                   int(ir / got)}
        out["instructions_per_cycle"] = int(total / got)
        out["instructions_per_cycle_per_class"] = int(total / got / n)
        return out
    finally:
        st.stop()


def scenario_callgrind(args):
    if not callgrind_available():
        return {"skipped": "valgrind/callgrind_control not installed"}
    if build_info()["sanitized"]:
        return {"skipped": "sanitizer build (valgrind cannot run it)"}
    out = {}
    for n in args.callgrind_counts:
        log("callgrind: %d class(es), %d cycles" % (n, args.cg_cycles))
        try:
            out[str(n)] = callgrind_one(n, args.cg_cycles, args.cg_settle)
        except Exception as e:  # the other class counts still count
            log("callgrind with %d classes failed: %s" % (n, e))
            out[str(n)] = {"error": str(e)[:2000]}
            if args.smoke:
                raise
    return out


# latency: task queued -> scale request ------------------------------------
def latency_one(interval, changes, nclasses=5):
    """nclasses classes (minReplicas 0) each alternate: queue one task,
    wait until the pool was scaled to 1, remove it, wait until scaled back
    to 0, pause a random part of the interval (so tasks appear at every
    phase of the poll cycle).  interval "idle": 1 s polling, and each task
    is queued once its class is idle again (--idle-poll-after 1s, the
    default 5 s idle interval): the reaction of an idle class."""
    idle = interval == "idle"
    names = bl.class_names(nclasses, prefix="bench-org/lat-")
    classes = {c: {"minReplicas": 0, "maxReplicas": 5} for c in names}
    # VMs never boot: tasks stay unclaimed, demand is exactly the queue.
    st = bl.Stack(classes, poll_interval="1s" if idle else interval,
                  boot_delay_ms=3600000, claim_interval_ms=60000,
                  args=FULL_RATE + (["--idle-poll-after", "1s"]
                                    if idle else []))
    ival = 5.0 if idle else st_interval_s(interval)
    try:
        st.start(timeout=60)
        m0 = st.prov.metrics()
        pools = {c: bl.pool_name(c) for c in names}
        queued = {c: [] for c in names}  # task ids
        tasks = {}  # id -> the simulator's record
        errors = []
        per_class = -(-changes // nclasses)

        log_lock = threading.Lock()  # the harness's LogFile is not
        # thread-safe: concurrent refreshes lose lines

        def mark_log():
            with log_lock:
                return st.prov.mark()

        def scaled_to(pool, to, since):
            with log_lock:
                lines = st.prov.lines(since=since, proc="actuator")
            for e in lines:
                m = SCALED_RE.match(e["msg"])
                if m and m.group(1) == pool and int(m.group(3)) == to:
                    return e
            return None

        def run(cls):
            rng = random.Random(cls)
            pool = pools[cls]
            for _ in range(per_class):
                try:
                    # Idle: quiet for 1 s (two polls at 0) puts the class
                    # on the idle interval.
                    time.sleep((2.2 if idle else 0) + rng.uniform(0, ival))
                    mark = mark_log()
                    r = st.circle.queue(cls, 1)
                    queued[cls].append(r["added"][0])
                    st.prov.wait(lambda: scaled_to(pool, 1, mark),
                                 10 + 5 * ival, "scale of %s to 1" % pool)
                    # Removing the task deletes it from the simulator:
                    # note when it was queued first.
                    for t in st.circle.client.call(
                            "GET", "/_sim/tasks",
                            query={"resource_class": cls})["tasks"]:
                        tasks[t["id"]] = t
                    mark = mark_log()
                    st.circle.set_unclaimed(cls, 0)
                    st.prov.wait(lambda: scaled_to(pool, 0, mark),
                                 10 + 5 * ival, "scale of %s to 0" % pool)
                except Exception as e:  # reported, not hidden
                    errors.append("%s at %s: %s" % (
                        cls, time.strftime("%H:%M:%S"),
                        str(e).splitlines()[0]))
                    try:
                        st.circle.set_unclaimed(cls, 0)
                    except Exception:
                        pass

        t_start = time.time()
        threads = [threading.Thread(target=run, args=(c,)) for c in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t_start
        m1 = st.prov.metrics()
        scales = [r for r in st.kube.scale_requests(since=t_start)
                  if r["status"] == 200]
        polls = [r for r in st.circle_requests(t_start)
                 if r.get("endpoint") == "tasks"]
        poll_lines = st.poll_lines()
        total, wait, code, daemon = [], [], [], []
        for c in names:
            pool = pools[c]
            ups = sorted(r["t"] for r in scales
                         if r["path"].split("/")[-2] == pool and
                         r["body"]["spec"]["replicas"] == 1)
            reqs = sorted(r["t"] for r in polls
                          if r.get("resource_class") == c)
            lines = sorted(bl.log_epoch(e) for e in poll_lines
                           if e["resource_class"] == c and
                           e["unclaimed_tasks"] == 1)
            for tid in queued[c]:
                if tid not in tasks:
                    continue  # its change failed (in errors)
                q = tasks[tid]["queued_at"]
                up = next((t for t in ups if t > q), None)
                if up is None:
                    errors.append("no scale request after task %s" % tid)
                    continue
                total.append(up - q)
                # The poll that saw it: the last tasks request before the
                # scale request.
                req = [t for t in reqs if q < t < up]
                if req:
                    wait.append(req[-1] - q)
                    code.append(up - req[-1])
                line = [t for t in lines if q - 0.002 < t <= up + 0.002]
                if line:
                    daemon.append(max(0.0, up - line[0]))
        lat_mean, lat_n = hist_mean(
            m0, m1, "runner_provisioner_circleci_request_duration_seconds")
        return {
            "poll_interval": interval, "classes": nclasses,
            "changes": len(total), "wall_s": round(wall, 1),
            "task_to_scale_ms": bl.summary(total, 1000),
            "waiting_for_poll_ms": bl.summary(wait, 1000),
            "poll_request_to_scale_ms": bl.summary(code, 1000),
            "poll_logged_to_scale_ms": bl.summary(daemon, 1000),
            "circleci_answer_mean_ms": round(1000 * lat_mean, 2)
            if lat_mean is not None else None,
            "failed_changes": len(errors), "errors": errors[:20],
        }
    finally:
        st.stop()


def st_interval_s(text):
    m = re.match(r"^(\d+)(ms|s)$", text)
    return int(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)


def scenario_latency(args):
    out = {}
    for interval in args.intervals:
        log("latency: %d changes at %s polling" % (args.changes, interval))
        # An idle change takes ~8 s (the class must go idle first): more
        # classes at once.
        out[interval] = latency_one(interval, args.changes,
                                    20 if interval == "idle" else 5)
    return out


# scale: cost and reaction at 1, 100, 1,000 classes, idle and busy --------
def parse_scale_cases(text):
    """"100:idle,100:busy-changes,1000:idle-poller" ->
    [(100, "idle", [flags], poller_only)]"""
    out = []
    for item in (x for x in text.split(",") if x):
        n, _, mode = item.partition(":")
        flags, poller_only = [], False
        if mode.endswith("-poller"):
            mode = mode[:-len("-poller")]
            poller_only = True
        if mode.endswith("-changes"):
            mode = mode[:-len("-changes")]
            flags = ["--log-scaler-lines", "changes"]
        if mode not in ("idle", "busy") or not n.isdigit() or \
                not 1 <= int(n) <= 1000:
            raise ValueError("bad scale case %r (N:idle or N:busy, then "
                             "-changes and/or -poller; N from 1 to 1000)"
                             % item)
        out.append((int(n), mode, flags, poller_only))
    return out


def _scale_window(args, flags):
    """--log-scaler-lines changes writes a steady class's line once a
    minute: a shorter window would miss them."""
    if "changes" in flags and not args.smoke:
        return max(args.scale_window, 60.0)
    return args.scale_window


def _metric_values(m, name):
    return [v for _, v in m.find(name)]


def _scaled_to(st, since):
    """{pool: [(t, replicas)]} of the scale requests since `since`."""
    out = {}
    for r in st.kube.scale_requests(since=since):
        if r["status"] != 200:
            continue
        pool = r["path"].split("/")[-2]
        out.setdefault(pool, []).append(
            (r["t"], r["body"]["spec"]["replicas"]))
    return out


def _first_scale(scales, pool, after, to):
    for t, replicas in sorted(scales.get(pool, [])):
        if t > after and replicas == to:
            return t
    return None


def scale_one(n, mode, flags, args):
    """n classes, all idle (no task: polled every --idle-poll-interval once
    idle) or all busy (one unclaimed task each, VMs that never boot: one
    pool replica each, the fast interval), default flags otherwise.  After
    a warm-up: a window of /proc, the CircleCI journal and the log; then
    reaction samples: a task queued at a random moment -> its scale
    request at the Kubernetes API (idle: the first task of an idle class,
    then a second one while it is busy)."""
    # Short names: at 1,000 classes the actuator's health answer (its
    # metrics and detail per class) must stay within nng's 1 MiB.
    names = bl.class_names(n, prefix="s/")
    classes = {c: {"minReplicas": 0, "maxReplicas": 3} for c in names}
    extra = list(flags) + list(args.scale_flags)
    st = bl.Stack(classes, poll_interval="1s", boot_delay_ms=3600000,
                  claim_interval_ms=3600000, args=extra)
    rng = random.Random(n * 7 + len(mode))
    try:
        st.start_sims()
        if mode == "busy":
            for c in names:
                st.circle.queue(c, 1)
        t_start = time.time()
        st.start(timeout=300)
        ready_s = time.time() - t_start
        pools = {c: bl.pool_name(c) for c in names}
        if mode == "busy":
            def all_at_one():
                ps = st.kube.pools()
                return sum(1 for c in names if pools[c] in ps and
                           ps[pools[c]]["replicas"] == 1) >= n
            bl.wait_for(all_at_one, 300, interval=1,
                        what="%d pools at 1 replica" % n)
            time.sleep(args.warmup)
        else:
            def all_idle():
                v = st.prov.metrics().get(
                    "runner_provisioner_poll_idle_classes")
                return v is not None and v >= n
            bl.wait_for(all_idle, 600, interval=1,
                        what="%d classes idle" % n)
            time.sleep(min(args.warmup, 10))
        pids = st.pids()
        sims = {"circleci_sim": st.circle.proc.pid,
                "kube_sim": st.kube.proc.pid}
        a = {k: bl.proc_sample(p) for k, p in pids.items()}
        sa = {k: bl.proc_sample(p) for k, p in sims.items()}
        mark = st.prov.mark()
        t1 = time.time()
        time.sleep(_scale_window(args, extra))
        t2 = time.time()
        b = {k: bl.proc_sample(p) for k, p in pids.items()}
        sb = {k: bl.proc_sample(p) for k, p in sims.items()}
        unique = bl.unique_resident(list(pids.values()))
        m1 = st.prov.metrics()
        span = t2 - t1
        per_min = 60.0 / span
        st.prov.log.refresh()
        lines = [e for e in st.prov.log.entries[mark:]
                 if bl.log_epoch(e) < t2]
        scaler = [e for e in lines if e["msg"] == "polled task counts"]
        creq = [r for r in st.circle_requests(t1) if r["t"] < t2]
        kreq = [r for r in st.kube_daemon_requests(t1) if r["t"] < t2]
        cpu = {}
        for k in bl.PROCS:
            if a[k] is None or b[k] is None:
                raise AssertionError("%s died during the window" % k)
            cpu[k] = 100 * (bl.cpu_seconds(b[k]) -
                            bl.cpu_seconds(a[k])) / span
        intervals = sorted(_metric_values(
            m1, "runner_provisioner_poll_interval_seconds"))
        out = {
            "classes": n, "mode": mode, "flags": extra,
            "start_to_ready_s": round(ready_s, 1),
            "window_s": round(span, 1),
            "circleci_requests_per_min": round(len(creq) * per_min, 1),
            "circleci_429_per_min": round(sum(
                1 for r in creq if r["status"] == 429) * per_min, 1),
            "kube_requests_per_min": round(len(kreq) * per_min, 1),
            "log_lines_per_min": round(len(lines) * per_min, 1),
            "scaler_lines_per_min": round(len(scaler) * per_min, 1),
            "cpu_pct": {k: round(v, 2) for k, v in cpu.items()},
            "cpu_pct_total": round(sum(cpu.values()), 2),
            "cpu_ms_per_class_per_s": round(
                10 * sum(cpu.values()) / n, 4),
            "rss_kib": {k: b[k]["rss_kib"] for k in bl.PROCS},
            "anonymous_kib": {k: b[k]["anonymous_kib"] for k in bl.PROCS},
            "unique_resident": unique,
            "poll_interval_s": {
                "p50": bl.percentile(intervals, 50),
                "max": intervals[-1] if intervals else None},
            "request_budget": m1.get(
                "runner_provisioner_circleci_request_budget"),
            "requests_needed": m1.get(
                "runner_provisioner_circleci_requests_needed"),
            "idle_classes": m1.get("runner_provisioner_poll_idle_classes"),
            "simulators_cpu_pct": {
                k: round(100 * (bl.cpu_seconds(sb[k]) -
                                bl.cpu_seconds(sa[k])) / span, 1)
                for k in sims if sa[k] and sb[k]},
        }
        out.update(_scale_reaction(st, names, pools, mode, args, rng))
        return out
    finally:
        st.stop()


def _scale_reaction(st, names, pools, mode, args, rng):
    """Reaction samples on k classes (--scale-samples, few: busy classes
    cost the request budget, the rest must stay idle): queued_at in the
    simulator -> the scale request's arrival at the Kubernetes simulator.
    Idle: each class's first task, queued at a random moment (the wait for
    the next idle poll); then, the class being busy, --scale-changes more
    tasks per class, each queued a random part of a second after the last
    change (the wait for the next fast poll) and removed again."""
    k = min(len(names), args.scale_samples)
    chosen = rng.sample(names, k)
    log_lock = threading.Lock()

    def scaled(pool, to, since):
        with log_lock:
            lines = st.prov.lines(since=since, proc="actuator")
        return any(m and m.group(1) == pool and int(m.group(3)) == to
                   for m in (SCALED_RE.match(e["msg"]) for e in lines))

    def mark():
        with log_lock:
            return st.prov.mark()

    # Wait bound: the idle interval, or a round of every class when the
    # budget is short (1,000 classes at 50/s: 40 s).
    wait_s = 30 + 4.0 * len(names) / 50
    samples = {"idle": [], "busy": []}  # (class, queued_at, to)
    errors = []

    def queued_at(c, tid):
        # Read before the task is removed: removal deletes it.
        for t in st.circle.client.call(
                "GET", "/_sim/tasks", query={"resource_class": c})["tasks"]:
            if t["id"] == tid:
                return t["queued_at"]
        raise AssertionError("task %s of %s not found" % (tid, c))

    def run(c, r):
        pool = pools[c]
        base = 0 if mode == "idle" else 1
        try:
            if mode == "idle":
                time.sleep(r.uniform(0, 5))
                m = mark()
                tid = st.circle.queue(c, 1)["added"][0]
                samples["idle"].append((c, queued_at(c, tid), 1))
                st.prov.wait(lambda: scaled(pool, 1, m), wait_s,
                             "%s scaled to 1" % pool)
                base = 1
            for _ in range(args.scale_changes):
                time.sleep(r.uniform(0, 1.0))
                m = mark()
                tid = st.circle.queue(c, 1)["added"][0]
                samples["busy"].append((c, queued_at(c, tid), base + 1))
                st.prov.wait(lambda: scaled(pool, base + 1, m), wait_s,
                             "%s scaled to %d" % (pool, base + 1))
                m = mark()
                st.circle.set_unclaimed(c, base)
                st.prov.wait(lambda: scaled(pool, base, m), wait_s,
                             "%s scaled to %d" % (pool, base))
        except Exception as e:  # reported, not hidden
            errors.append("%s: %s" % (c, str(e).splitlines()[0]))

    t0 = time.time()
    threads = [threading.Thread(target=run, args=(c, random.Random(
        rng.random()))) for c in chosen]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scales = _scaled_to(st, t0)
    res = {"reaction_classes": k, "reaction_errors": errors[:10]}
    for kind, items in samples.items():
        got, miss = [], 0
        for c, q, to in items:
            up = _first_scale(scales, pools[c], q, to)
            if up is None:
                miss += 1
            else:
                got.append(up - q)
        if items:
            res["%s_reaction_ms" % kind] = bl.summary(got, 1000)
            res["%s_reaction_missing" % kind] = miss
    return res


def scale_poller_one(n, mode, flags, args):
    """The poller alone (runner-provisioner-poller run by hand, as the
    README allows) against the CircleCI simulator: its requests, CPU,
    memory and log lines at n classes, and the time from a task queued to
    the poller's line that saw it.  For class counts where the whole
    daemon cannot run here."""
    names = bl.class_names(n, prefix="s/")
    extra = list(flags) + list(args.scale_flags)
    tdir = harness.TestDir(prefix="rp-bench-poller-")
    tdir.write_config(harness.make_config(
        {c: {"token": harness.runner_token(c), "minReplicas": 0,
             "maxReplicas": 3} for c in names}))
    circle = harness.CircleSim(tdir, names)
    proc = None
    rng = random.Random(n * 11 + len(mode))
    try:
        circle.start()
        if mode == "busy":
            for c in names:
                circle.queue(c, 1)
        os.makedirs(tdir.run_dir, mode=0o700)
        log_path = tdir.join("poller.log")
        err = open(log_path, "w")
        env = harness.clean_env()
        env["GNUTLS_NO_IMPLICIT_INIT"] = "1"
        proc = subprocess.Popen(
            [harness.POLLER, "--config", tdir.join("config.yaml"),
             "--run-dir", tdir.run_dir, "--circle-token-file",
             tdir.write_token(harness.API_TOKEN)] +
            circle.provisioner_args() + extra, stderr=err,
            stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
            preexec_fn=harness.die_with_parent)
        lf = harness.LogFile(log_path)
        # Every class polled once, then (idle) long enough to be idle:
        # --idle-poll-after (1 min) and a round of every class.
        bl.wait_for(lambda: len({e.get("resource_class") for e in lf.find(
            msg="polled task counts")}) >= n, 300, interval=1,
            what="every class polled")
        if mode == "idle":
            time.sleep(62 + 2.0 * n / 50)
        else:
            time.sleep(args.warmup)
        a = bl.proc_sample(proc.pid)
        sa = bl.proc_sample(circle.proc.pid)
        mark = lf.mark()
        t1 = time.time()
        time.sleep(_scale_window(args, extra))
        t2 = time.time()
        b = bl.proc_sample(proc.pid)
        sb = bl.proc_sample(circle.proc.pid)
        span = t2 - t1
        per_min = 60.0 / span
        lf.refresh()
        lines = [e for e in lf.entries[mark:] if bl.log_epoch(e) < t2]
        creq = [r for r in circle.requests(t1) if r["t"] < t2 and
                r.get("endpoint") in ("tasks", "running", "runner")]
        out = {
            "classes": n, "mode": mode, "flags": extra, "poller_only": True,
            "window_s": round(span, 1),
            # Connections (client ports) the requests came over.
            "circleci_connections": len({r.get("peer") for r in creq}),
            "circleci_requests_per_min": round(len(creq) * per_min, 1),
            "log_lines_per_min": round(len(lines) * per_min, 1),
            "scaler_lines_per_min": round(sum(
                1 for e in lines if e["msg"] == "polled task counts") *
                per_min, 1),
            "cpu_pct": {"poller": round(100 * (bl.cpu_seconds(b) -
                                               bl.cpu_seconds(a)) / span,
                                        2)},
            "rss_kib": {"poller": b["rss_kib"]},
            "anonymous_kib": {"poller": b["anonymous_kib"]},
            "unique_resident": bl.unique_resident([proc.pid]),
            "simulators_cpu_pct": {"circleci_sim": round(
                100 * (bl.cpu_seconds(sb) - bl.cpu_seconds(sa)) / span, 1)},
        }
        out["cpu_pct_total"] = out["cpu_pct"]["poller"]
        # Reaction, as far as the poller goes: queued -> the line of the
        # poll that saw it.
        chosen = rng.sample(names, min(n, args.scale_samples))
        seen = []
        for c in chosen:
            time.sleep(rng.uniform(0, 5 if mode == "idle" else 1))
            m = lf.mark()
            tid = circle.queue(c, 1)["added"][0]
            q = next(t["queued_at"] for t in circle.client.call(
                "GET", "/_sim/tasks", query={"resource_class": c})["tasks"]
                if t["id"] == tid)
            e = bl.wait_for(lambda: next(iter(lf.find(
                since=m, msg="polled task counts", resource_class=c,
                where=lambda e: e["unclaimed_tasks"] >= (
                    2 if mode == "busy" else 1))), None),
                30 + 4.0 * n / 50, what="%s seen" % c)
            seen.append(bl.log_epoch(e) - q)
        out["%s_reaction_to_poll_ms" % mode] = bl.summary(seen, 1000)
        return out
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        circle.stop()
        tdir.remove()


def scenario_scale(args):
    out = {}
    for n, mode, flags, poller_only in args.scale_case_list:
        key = "%d %s%s%s" % (n, mode, " " + " ".join(flags) if flags else "",
                             " (poller alone)" if poller_only else "")
        log("scale: %s" % key)
        try:
            out[key] = (scale_poller_one if poller_only else scale_one)(
                n, mode, flags, args)
        except Exception as e:  # the other cases still run
            log("scale %s failed: %s" % (key, e))
            out[key] = {"classes": n, "mode": mode, "error": str(e)[:2000]}
            if args.smoke:
                raise
    return out


# recovery: kill -9 -> replacement answering; start -> first poll ---------
def scenario_recovery(args):
    classes = {c: {"minReplicas": 1, "maxReplicas": 10}
               for c in bl.class_names(1)}
    st = bl.Stack(classes, poll_interval="1s", claim_interval_ms=60000)
    st.start_sims()
    runs = []
    try:
        for i in range(args.recovery_runs):
            log("recovery: run %d of %d" % (i + 1, args.recovery_runs))
            st.prov = st.provisioner()
            st.prov.start(timeout=60)
            t0 = st.prov.started_at
            run = {}
            first = bl.wait_for(lambda: [
                r for r in st.circle_requests(t0)
                if r.get("endpoint") == "tasks"], 30, what="first poll")
            run["start_to_first_poll_ms"] = round(
                1000 * (min(r["t"] for r in first) - t0), 1)
            line = st.prov.wait_log(proc="poller", msg="polled task counts")
            run["start_to_first_poll_logged_ms"] = round(
                1000 * (bl.log_epoch(line) - t0), 1)
            started = st.prov.wait_log(
                proc="supervisor", msg=re.compile(r"^started the poller"))
            run["poller_fork_to_first_poll_ms"] = round(
                1000 * (min(r["t"] for r in first) -
                        bl.log_epoch(started)), 1)
            st.prov.wait_ready(60)
            for child in harness.CHILDREN:
                old = st.prov.child_pid(child)
                mark = st.prov.mark()
                t_kill = time.time()
                bl.kill9(old)
                e = st.prov.wait_log(
                    since=mark, proc="supervisor",
                    msg="child answering health surveys", child=child,
                    where=lambda e: e["child_pid"] != old, timeout=30)
                s = st.prov.wait_log(
                    since=mark, proc="supervisor",
                    msg=re.compile(r"^started the %s " % child))
                run["%s_kill_to_answering_ms" % child] = round(
                    1000 * (bl.log_epoch(e) - t_kill), 1)
                run["%s_kill_to_restart_ms" % child] = round(
                    1000 * (bl.log_epoch(s) - t_kill), 1)
                run["%s_fork_to_answering_ms" % child] = \
                    e["ms_since_start"]
                st.prov.wait_ready(60)
            st.prov.stop()
            runs.append(run)
    finally:
        st.stop()
    out = {"runs": runs}
    for k in runs[0] if runs else ():
        out[k] = bl.summary([r[k] for r in runs], 1, 1)
    return out


# trace: a bursty day of jobs ----------------------------------------------
# name -> the class's scaling block in simulated time (durations in seconds,
# schedules by simulated clock hour); each runs as its own class on the same
# jobs.  The first four are the 0.1.0 formula (no headroom, surge or delay).
TRACE_SETTINGS = {
    "min0": {"minReplicas": 0},
    "min0-idle10m": {"minReplicas": 0, "idleTimeout": 600},
    "min3-idle10m": {"minReplicas": 3, "idleTimeout": 600},
    "min10-idle30m": {"minReplicas": 10, "idleTimeout": 1800},
    "headroom2": {"minReplicas": 0, "headroom": 2, "idleTimeout": 600},
    "headroom3": {"minReplicas": 0, "headroom": 3, "idleTimeout": 600},
    "headroom5": {"minReplicas": 0, "headroom": 5, "idleTimeout": 600},
    "headroom8": {"minReplicas": 0, "headroom": 8, "idleTimeout": 600},
    "headroom5-delay10m": {"minReplicas": 0, "headroom": 5,
                           "scaleDownDelay": 600, "idleTimeout": 900},
    "auto": {"minReplicas": 0, "headroom": "auto", "idleTimeout": 600},
    "auto-delay10m": {"minReplicas": 0, "headroom": "auto",
                      "scaleDownDelay": 600, "idleTimeout": 900},
    "auto-delay20m": {"minReplicas": 0, "headroom": "auto",
                      "scaleDownDelay": 1200, "idleTimeout": 1800},
    "hours-min5-auto": {"minReplicas": 0, "headroom": "auto",
                        "idleTimeout": 600,
                        "schedules": [{"name": "working-hours", "from": 8,
                                       "to": 18, "minReplicas": 5}]},
    "hours-headroom5": {"minReplicas": 0, "idleTimeout": 600,
                        "schedules": [{"name": "working-hours", "from": 8,
                                       "to": 18, "headroom": 5}]},
    "headroom6": {"minReplicas": 0, "headroom": 6, "idleTimeout": 600},
    "headroom7": {"minReplicas": 0, "headroom": 7, "idleTimeout": 600},
    "hours-headroom8": {"minReplicas": 0, "idleTimeout": 600,
                        "schedules": [{"name": "working-hours", "from": 8,
                                       "to": 18, "headroom": 8}]},
    "headroom5-peak8": {"minReplicas": 0, "headroom": 5,
                        "idleTimeout": 600,
                        "schedules": [{"name": "peak", "from": 10,
                                       "to": 12, "headroom": 8}]},
    "hours-min2-auto": {"minReplicas": 0, "headroom": "auto",
                        "idleTimeout": 600,
                        "schedules": [{"name": "working-hours", "from": 8,
                                       "to": 18, "minReplicas": 2}]},
    # Spare VMs that wait long enough not to time out between bursts.
    "headroom5-idle1h": {"minReplicas": 0, "headroom": 5,
                         "idleTimeout": 3600},
    "headroom8-idle1h": {"minReplicas": 0, "headroom": 8,
                         "idleTimeout": 3600},
    "auto-idle1h": {"minReplicas": 0, "headroom": "auto",
                    "idleTimeout": 3600},
    "hours-headroom5-idle1h": {"minReplicas": 0, "idleTimeout": 3600,
                               "schedules": [{"name": "working-hours",
                                              "from": 8, "to": 18,
                                              "headroom": 5}]},
}
TRACE_DEFAULT = "min0,min3-idle10m,min10-idle30m,headroom2,auto"
TRACE_BASELINE = "min0"  # the VM-hours the target is measured against


def day_trace(seed, hours, start_hour=7.0, profile="busy"):
    """A working day from start_hour: (t seconds, duration seconds) of each
    job in simulated time.  "busy": a background rate that ramps up in the
    morning, dips at lunch and fades in the evening, plus bursts (a pipeline
    fanning out 8-30 jobs at once, a few per hour at peak).  "quiet": a
    tenth of that background, and a burst of 3-8 jobs every 3 hours."""
    rng = random.Random(seed)
    quiet = profile == "quiet"

    def rate(h):  # jobs per hour
        if h < 8 or h >= 19:
            r = 2
        elif h < 10:
            r = 8 + 12 * (h - 8)
        elif 12 <= h < 13:
            r = 14
        elif h >= 17:
            r = 30 - 12 * (h - 17)
        else:
            r = 30
        return r / 10.0 if quiet else r

    def duration():
        return min(45 * 60, max(60, rng.lognormvariate(6.0, 0.7)))

    jobs = []
    t = 0.0
    end = hours * 3600
    while True:
        h = start_hour + t / 3600
        t += rng.expovariate(rate(h) / 3600.0)
        if t >= end:
            break
        jobs.append((t, duration()))
    t = 0.0
    while True:
        h = start_hour + t / 3600
        if quiet:
            bursts = 0.05 if (h < 8 or h >= 19) else 0.33
        else:
            bursts = 0.5 if (h < 8 or h >= 19) else 3.0
        t += rng.expovariate(bursts / 3600.0)
        if t >= end:
            break
        for _ in range(rng.randint(3, 8) if quiet else rng.randint(8, 30)):
            jobs.append((t + rng.uniform(0, 20), duration()))
    jobs.sort()
    return jobs


def go_ms(seconds):
    return "%dms" % max(1, int(round(seconds * 1000)))


def trace_scaling(setting, args, t0):
    """A setting's scaling block for the daemon, in real time: durations
    divided by the replay speed, each schedule's simulated hours turned into
    one-off cron expressions for the real UTC minutes they fall on (the
    replay starts at t0, a whole minute).  Returns (scaling, notes)."""
    out = {"maxReplicas": args.trace_max}
    notes = []
    for k, v in setting.items():
        if k in ("idleTimeout", "scaleDownDelay"):
            out[k] = go_ms(v / args.trace_speed)
        elif k == "schedules":
            out[k] = []
            for sch in v:
                sch = dict(sch)
                reals = [round((t0 + (sch.pop(key) - args.trace_start_hour)
                                * 3600.0 / args.trace_speed) / 60.0) * 60
                         for key in ("from", "to")]
                if reals[1] == reals[0]:  # a window shorter than a minute
                    reals[1] += 60
                crons = []
                for key, real in zip(("from", "to"), reals):
                    tm = time.gmtime(real)
                    crons.append("%d %d %d %d *" % (tm.tm_min, tm.tm_hour,
                                                    tm.tm_mday, tm.tm_mon))
                    notes.append("%s %s: %s (simulated %.2f h)" % (
                        sch["name"], key, crons[-1], args.trace_start_hour +
                        (real - t0) * args.trace_speed / 3600.0))
                sch.update(start=crons[0], end=crons[1], timezone="UTC")
                out[k].append(sch)
        else:
            out[k] = v
    return out, notes


def _class_gauge(text, name):
    """{resource_class: value} of one gauge in Prometheus text."""
    out = {}
    for m in re.finditer(r'^%s\{resource_class="([^"]+)"\} (\S+)$'
                         % re.escape(name), text, re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def scenario_trace(args):
    speed = args.trace_speed
    hours = args.trace_hours
    # Fixed seeds: every run replays the same jobs.
    jobs = day_trace(6 if args.trace_profile == "quiet" else 5, hours,
                     args.trace_start_hour, args.trace_profile)
    chosen = [s for s in args.trace_settings.split(",") if s]
    for s in chosen:
        if s not in TRACE_SETTINGS:
            raise AssertionError("unknown trace setting %r (known: %s)" % (
                s, ", ".join(TRACE_SETTINGS)))
    names = {s: "bench-org/trace-%s" % s for s in chosen}
    # With a schedule the replay starts on a whole minute, far enough ahead
    # for the warm pools to boot, so that its cron can name real minutes.
    if any("schedules" in TRACE_SETTINGS[s] for s in chosen):
        t0 = (int(time.time() + args.trace_lead_s) // 60 + 1) * 60
    else:
        t0 = time.time() + args.trace_lead_s
    classes, notes = {}, {}
    for s in chosen:
        scaling, notes[s] = trace_scaling(TRACE_SETTINGS[s], args, t0)
        classes[names[s]] = {"scaling": scaling}
    boot_ms = int(1000 * args.trace_boot_s / speed)
    log("trace: %s day, %d jobs in %.1f h at %gx (%.0f s), boot %.0f s "
        "(%d ms), settings %s" % (args.trace_profile, len(jobs), hours,
                                  speed, hours * 3600 / speed,
                                  args.trace_boot_s, boot_ms,
                                  ",".join(chosen)))
    # Idle polling stands for its default too: 5 s after 1 min, in
    # simulated time.
    st = bl.Stack(classes, poll_interval=args.trace_poll,
                  boot_delay_ms=boot_ms,
                  claim_interval_ms=args.trace_claim_ms,
                  boot_loop_threshold="10ms",
                  args=["--idle-poll-interval", go_ms(max(5 / speed, 0.01)),
                        "--idle-poll-after", go_ms(60 / speed)] + FULL_RATE)
    from kubesim import VMRecorder
    rec = None
    samples = {names[s]: [] for s in chosen}  # (headroom, boot s)
    stop = threading.Event()

    def sample_metrics():
        while not stop.wait(1.0):
            try:
                text = st.prov.get("/metrics")[1]
            except Exception:
                continue
            head = _class_gauge(text, "runner_provisioner_headroom_vms")
            boot = _class_gauge(text, "runner_provisioner_vm_boot_seconds")
            for c in samples:
                if c in head:
                    samples[c].append((head[c], boot.get(c, 0.0)))
    sampler = threading.Thread(target=sample_metrics, daemon=True)
    try:
        st.start(timeout=60)
        rec = VMRecorder(st.kube, interval=0.1).start()
        # Warm pools first (minReplicas VMs booted), as after a night.
        want = sum(TRACE_SETTINGS[s].get("minReplicas", 0) for s in chosen)
        bl.wait_for(lambda: _vms_running(st) >= want, 60,
                    what="%d warm VMs" % want)
        if time.time() > t0:
            raise AssertionError("warm-up outlasted the replay's start; "
                                 "raise --trace-lead-s")
        time.sleep(t0 - time.time())
        sampler.start()
        late = 0.0
        for t, d in jobs:
            at = t0 + t / speed
            delay = at - time.time()
            if delay > 0:
                time.sleep(delay)
            else:
                late = max(late, -delay)
            for cls in classes:
                st.circle.queue(cls, 1, duration_ms=max(
                    1, int(1000 * d / speed)))
        t_end = t0 + hours * 3600 / speed
        time.sleep(max(0, t_end - time.time()))

        def drained():
            s = st.circle.state()["classes"]
            return all(s[c]["unclaimed"] == 0 and s[c]["running"] == 0
                       for c in classes)
        drained_ok = True
        try:
            bl.wait_for(drained, 30 + 600 / speed * 10, interval=0.2,
                        what="the queue to drain")
        except AssertionError:
            drained_ok = False
        t_drain = time.time()
        stop.set()
        # Spare VMs left idle after the last job cost VM time until their
        # idleTimeout: keep recording until they are gone (or that long).
        tail = max((TRACE_SETTINGS[s].get("idleTimeout", 0)
                    for s in chosen), default=0) / speed
        floor = {bl.pool_name(names[s]): TRACE_SETTINGS[s].get(
            "minReplicas", 0) for s in chosen}

        def idle_gone():
            up = {}
            for v in st.kube.state()["vms"]:
                if v["printableStatus"] != "Stopped":
                    pool = v["name"].rsplit("-", 1)[0]
                    up[pool] = up.get(pool, 0) + 1
            return all(n <= floor.get(p, 0) for p, n in up.items())
        try:
            bl.wait_for(idle_gone, tail + 10, interval=0.5,
                        what="idle VMs to time out")
        except AssertionError:
            pass
        t_end = time.time()
        rec.wait_snapshots(2)
        rec.stop()
        views = rec.all()
        last_seen = dict(rec.last_seen)
        results = {}
        for s in chosen:
            cls = names[s]
            tasks = st.circle.client.call(
                "GET", "/_sim/tasks", query={"resource_class": cls})["tasks"]
            waits = [(t["claimed_at"] - t["queued_at"]) * speed
                     for t in tasks if t["claimed_at"] is not None]
            unclaimed = sum(1 for t in tasks if t["claimed_at"] is None)
            pool = bl.pool_name(cls)
            # VMs alive when the queue drained count for one idleTimeout
            # more (what they cost if no job comes), no longer.
            cap = min(t_end, t_drain + TRACE_SETTINGS[s].get(
                "idleTimeout", 0) / speed)
            vm_s = 0.0
            busy_s = sum(t["duration_ms"] / 1000.0 for t in tasks
                         if t["claimed_at"] is not None)
            nvms = 0
            for uid, v in views.items():
                if v["name"].rsplit("-", 1)[0] != pool:
                    continue
                nvms += 1
                start = v.get("created") or rec.first_seen.get(uid)
                stop_t = v.get("stopped")
                if stop_t is None or (v.get("booted") and
                                      stop_t < v["booted"]):
                    stop_t = last_seen.get(uid, t_end)
                start = max(start, t0)
                stop_t = min(stop_t, cap)
                if stop_t > start:
                    vm_s += stop_t - start
            head = [h for h, _ in samples[cls]]
            boots = [b for _, b in samples[cls] if b > 0]
            results[s] = {
                "resource_class": cls,
                "controls": TRACE_SETTINGS[s],
                "schedule_crons": notes[s],
                "jobs": len(tasks), "never_claimed": unclaimed,
                "queue_wait_s": bl.summary(waits, 1, 0),
                "queue_wait_mean_s": round(sum(waits) / len(waits), 1)
                if waits else None,
                "waits_within_10s_pct": round(100.0 * sum(
                    1 for w in waits if w <= 10) / len(waits), 1)
                if waits else None,
                "vm_hours": round(vm_s * speed / 3600, 1),
                "busy_vm_hours": round(busy_s * speed / 3600, 1),
                "vm_utilisation_pct": round(100 * busy_s / vm_s, 1)
                if vm_s else None,
                "vms_created": nvms,
                "headroom_mean": round(sum(head) / len(head), 2)
                if head else None,
                "headroom_max": max(head) if head else None,
                "boot_estimate_s": round(boots[-1] * speed, 1)
                if boots else None,
            }
        base = results.get(TRACE_BASELINE)
        for s, r in results.items():
            w = r["queue_wait_s"]
            if base and base["vm_hours"]:
                r["vm_hours_vs_min0"] = round(
                    r["vm_hours"] / base["vm_hours"], 2)
            r["meets_target"] = bool(
                w.get("n") and base and w["p50"] <= 10 and
                w["p95"] <= args.trace_boot_s and
                r["vm_hours"] <= 1.5 * base["vm_hours"])
        return {"profile": args.trace_profile, "speed": speed,
                "hours": hours, "start_hour": args.trace_start_hour,
                "jobs": len(jobs), "boot_delay_s": args.trace_boot_s,
                "poll_interval": args.trace_poll,
                "poll_interval_simulated_s": round(
                    st_interval_s(args.trace_poll) * speed, 1),
                "claim_interval_simulated_s": round(
                    args.trace_claim_ms / 1000.0 * speed, 1),
                "maxReplicas": args.trace_max,
                "replay_s": round(t_drain - t0, 1),
                "idle_tail_s": round(t_end - t_drain, 1),
                "replay_late_max_s": round(late, 3), "drained": drained_ok,
                "settings": results}
    finally:
        stop.set()
        if rec is not None:
            rec.stop()
        st.stop()


# Targets and the table ------------------------------------------------------
def targets(res):
    """DESIGN §11, each with the figure that judges it."""
    out = []
    sc = res["scenarios"]
    steady = sc.get("steady") or {}
    one = steady.get("1")
    if one:
        u = one.get("unique_resident") or {}
        out.append(dict(
            what="resident memory, all three processes, 1 class",
            target="<= 12 MiB total",
            value="RSS sum %.1f MiB; distinct pages %.1f MiB (%.1f anon + "
            "%.1f library files); PSS sum %.1f MiB" % (
                one["total"]["rss_kib"] / 1024,
                u.get("total_kib", 0) / 1024, u.get("anon_kib", 0) / 1024,
                u.get("file_kib", 0) / 1024, one["total"]["pss_kib"] / 1024),
            met=one["total"]["rss_kib"] <= 12 * 1024))
        fl = (sc.get("floor") or {}).get("unique_resident")
        if fl and u:
            out.append(dict(
                what="distinct resident memory, 1 class, against the "
                "library floor", target="<= 12 MiB",
                value="%.1f MiB; the libraries alone (floor.c): %.1f MiB "
                "(%.1f anon + %.1f library files); the daemon's own: "
                "%.1f MiB" % (
                    u.get("total_kib", 0) / 1024, fl["total_kib"] / 1024,
                    fl["anon_kib"] / 1024, fl["file_kib"] / 1024,
                    (u.get("total_kib", 0) - fl["total_kib"]) / 1024),
                met=u.get("total_kib", 0) <= 12 * 1024))
        out.append(dict(what="CPU, 1 class at 1 s polling",
                        target="<= 1 % of one core",
                        value="%.2f %%" % one["total"]["cpu_pct"],
                        met=one["total"]["cpu_pct"] <= 1.0))
    hundred = steady.get("100")
    if hundred:
        out.append(dict(what="CPU, 100 classes at 1 s polling",
                        target="<= 10 % of one core",
                        value="%.2f %%" % hundred["total"]["cpu_pct"],
                        met=hundred["total"]["cpu_pct"] <= 10.0))
    for interval, r in (sc.get("latency") or {}).items():
        p99 = r["task_to_scale_ms"].get("p99")
        if p99 is None:
            continue
        limit = 5000 + 1000 if interval == "idle" else \
            st_interval_s(interval) * 1000 + 100
        failed = r.get("failed_changes", 0)
        total = r["task_to_scale_ms"]["n"] + failed
        # A change with no scale request within the wait counts as slower
        # than any: p99 over all changes is missed once they are > 1 %.
        out.append(dict(what="task queued -> scale request, %s polling"
                        % interval,
                        target="p99 <= %d ms" % limit,
                        value="p99 %.0f ms over %d answered changes; %d of "
                        "%d changes got no scale request within %.1f s" % (
                            p99, r["task_to_scale_ms"]["n"], failed, total,
                            10 + 5 * (5 if interval == "idle" else
                                      st_interval_s(interval))),
                        met=p99 <= limit and failed * 100 <= total))
    if steady:
        worst = max(v["kube_writes_per_min"] for v in steady.values())
        out.append(dict(what="kube writes with unchanged demand",
                        target="0", value="%g per minute (max over %s "
                        "classes)" % (worst, ",".join(steady)),
                        met=worst == 0))
    hundred_busy = (steady.get("100") or {}).get(
        "cpu_us_per_cycle_per_class")
    if hundred_busy is not None:
        out.append(dict(what="CPU per class per cycle, 100 busy classes at "
                        "1 s polling", target="<= 0.2 ms",
                        value="%.3f ms" % (hundred_busy / 1000.0),
                        met=hundred_busy <= 200))
    scale = sc.get("scale") or {}
    idle100 = scale.get("100 idle")
    if idle100 and "error" not in idle100:
        out.append(dict(what="CircleCI requests, 100 idle classes, default "
                        "flags", target="<= 2,500 per minute",
                        value="%.0f per minute" %
                        idle100["circleci_requests_per_min"],
                        met=idle100["circleci_requests_per_min"] <= 2500))
        out.append(dict(what="CPU, 100 idle classes, default flags",
                        target="<= 2 % of one core",
                        value="%.2f %%" % idle100["cpu_pct_total"],
                        met=idle100["cpu_pct_total"] <= 2.0))
    for key, r in scale.items():
        if "error" in r:
            continue
        idle_ms = 5000
        for i, f in enumerate(r["flags"][:-1]):
            if f == "--idle-poll-interval":
                idle_ms = st_interval_s(r["flags"][i + 1]) * 1000
        # Where the classes need more requests than the budget allows,
        # every class waits its turn: the reaction is the budget's, shown
        # but not judged against the poll interval.
        short = (r.get("requests_needed") or 0) > \
            (r.get("request_budget") or float("inf"))
        for kind, limit in (("idle", idle_ms + 1000), ("busy", 1100)):
            s_ = r.get("%s_reaction_ms" % kind) or {}
            if not s_.get("n") or short:
                continue
            miss = r.get("%s_reaction_missing" % kind, 0)
            out.append(dict(
                what="task queued -> scale request, %s class (%s)" % (
                    kind, key),
                target="p99 <= %d ms" % limit,
                value="p50 %.0f ms, p99 %.0f ms, %d samples%s" % (
                    s_["p50"], s_["p99"], s_["n"],
                    ", %d without a scale request" % miss if miss else ""),
                met=s_["p99"] <= limit and not miss))
    rec = sc.get("recovery")
    if rec and rec.get("runs"):
        worst = max(max(r["poller_kill_to_answering_ms"],
                        r["actuator_kill_to_answering_ms"])
                    for r in rec["runs"])
        out.append(dict(what="child killed -> replacement answering health",
                        target="<= 1000 ms", value="max %.0f ms" % worst,
                        met=worst <= 1000))
        worst = max(r["start_to_first_poll_ms"] for r in rec["runs"])
        out.append(dict(what="process start -> first poll",
                        target="<= 200 ms", value="max %.0f ms" % worst,
                        met=worst <= 200))
    tr = sc.get("trace") or {}
    if tr.get("settings") and tr.get("profile", "busy") == "busy":
        best = sorted(tr["settings"].items(), key=lambda kv: (
            not kv[1].get("meets_target"),
            kv[1]["queue_wait_s"].get("p50") or 0))[0]
        w = best[1]["queue_wait_s"]
        out.append(dict(
            what="job queue wait on the busy-morning trace, %g s boots"
            % tr["boot_delay_s"],
            target="a setting with median <= 10 s, p95 <= one boot, "
            "VM-hours <= 1.5x minReplicas 0",
            value="%s: p50 %s s, p95 %s s, %sx" % (
                best[0], fmt(w.get("p50")), fmt(w.get("p95")),
                fmt(best[1].get("vm_hours_vs_min0"))),
            met=bool(best[1].get("meets_target"))))
    if sc.get("soak"):
        out.extend(soak.targets(sc["soak"]))
    return out


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        v = ("%.2f" % v) if abs(v) < 10 else ("%.1f" % v) if abs(v) < 100 \
            else "%.0f" % v
    return "%s%s" % (v, unit)


def table(res):
    lines = []
    add = lines.append
    sc = res["scenarios"]
    m = res["machine"]
    add("runner-provisioner benchmarks (%s build, %s)%s" % (
        res["build"].get("type"), res["build"].get("version"),
        " [SMOKE: tiny windows, figures not meaningful]"
        if res["smoke"] else ""))
    add("machine: %s, %d cpus, %d MiB, %s, kernel %s" % (
        m["cpu"], m["cpus"], m["mem_mib"], m["os"], m["kernel"]))
    steady = sc.get("steady") or {}
    if steady and "skipped" not in steady:
        add("")
        add("Footprint and CPU at steady state (1 s polling, 1 VM per "
            "class, window %ss)" % next(iter(steady.values()))["window_s"])
        add("%-8s %-10s %8s %8s %8s %8s %5s %4s %8s" % (
            "classes", "process", "RSS KiB", "PSS KiB", "peak KiB",
            "anon KiB", "thr", "fds", "CPU %"))
        for n, r in steady.items():
            for k in bl.PROCS + ("total",):
                p = r["processes"][k] if k != "total" else r["total"]
                add("%-8s %-10s %8d %8d %8d %8d %5d %4d %8s" % (
                    n, k, p["rss_kib"], p["pss_kib"], p["hwm_kib"],
                    p["anonymous_kib"], p["threads"], p["fds"],
                    fmt(p["cpu_pct"])))
            u = r.get("unique_resident") or {}
            add("%-8s %-10s %8s   distinct pages of the three: %s KiB "
                "(%s anon, %s library files)" % (
                    n, "", "", u.get("total_kib"), u.get("anon_kib"),
                    u.get("file_kib")))
        add("")
        add("%-8s %12s %14s %12s %12s %12s %12s" % (
            "classes", "CPU us/cycle", "us/cycle/class", "CircleCI/min",
            "kube req/min", "kube wr/min", "sim answer"))
        for n, r in steady.items():
            add("%-8s %12s %14s %12s %12s %12s %12s" % (
                n, fmt(r["cpu_us_per_cycle"]),
                fmt(r["cpu_us_per_cycle_per_class"]),
                fmt(r["circleci_requests_per_min"]),
                fmt(r["kube_requests_per_min"]),
                fmt(r["kube_writes_per_min"]),
                fmt(r["simulators"]["circleci_answer_mean_ms"], " ms")))
    cg = sc.get("callgrind") or {}
    if cg:
        add("")
        if "skipped" in cg:
            add("callgrind: skipped (%s)" % cg["skipped"])
        else:
            add("Instructions per poll cycle (callgrind, user space)")
            add("%-8s %14s %14s %14s %14s %14s" % (
                "classes", "supervisor", "poller", "actuator", "total",
                "per class"))
            for n, r in cg.items():
                if "error" in r:
                    add("%-8s failed: %s" % (n, r["error"].splitlines()[0]))
                    continue
                p = r["processes"]
                add("%-8s %14d %14d %14d %14d %14d" % (
                    n, p["supervisor"]["instructions_per_cycle"],
                    p["poller"]["instructions_per_cycle"],
                    p["actuator"]["instructions_per_cycle"],
                    r["instructions_per_cycle"],
                    r["instructions_per_cycle_per_class"]))
    lat = sc.get("latency") or {}
    if lat:
        add("")
        add("Reaction: task queued -> scale PATCH at the API (ms)")
        add("%-9s %6s %8s %8s %8s %8s   %s" % (
            "interval", "n", "p50", "p95", "p99", "max",
            "of which poll request -> PATCH p50/p99"))
        for k, r in lat.items():
            t = r["task_to_scale_ms"]
            c = r["poll_request_to_scale_ms"]
            add("%-9s %6s %8s %8s %8s %8s   %s / %s" % (
                k, t.get("n"), fmt(t.get("p50")), fmt(t.get("p95")),
                fmt(t.get("p99")), fmt(t.get("max")), fmt(c.get("p50")),
                fmt(c.get("p99"))))
    scale = sc.get("scale") or {}
    if scale:
        add("")
        add("Scale: default flags unless noted (1 s poll, 5 s idle after "
            "1 min, 50 requests/s); reaction in ms (poller alone: to the "
            "poll that saw the task)")
        add("%-28s %8s %6s %7s %7s %6s %6s %13s %13s %9s" % (
            "case", "CCI/min", "CPU %", "MiB", "anonMiB", "log/m",
            "scal/m", "idle p50/p99", "busy p50/p99", "ival p50"))
        for key, r in scale.items():
            if "error" in r:
                add("%-28s failed: %s" % (key, r["error"].splitlines()[0]))
                continue
            u = r.get("unique_resident") or {}
            # The poller alone: task queued -> the poll line that saw it.
            suffix = "_reaction_to_poll_ms" if r.get("poller_only") \
                else "_reaction_ms"
            ir = r.get("idle" + suffix) or {}
            br = r.get("busy" + suffix) or {}
            add("%-28s %8s %6s %7s %7s %6s %6s %13s %13s %9s" % (
                key[:28], fmt(r["circleci_requests_per_min"]),
                fmt(r["cpu_pct_total"]),
                fmt(u.get("total_kib", 0) / 1024.0) if u else "-",
                fmt(u.get("anon_kib", 0) / 1024.0) if u else "-",
                fmt(r["log_lines_per_min"]), fmt(r["scaler_lines_per_min"]),
                "%s/%s" % (fmt(ir.get("p50")), fmt(ir.get("p99"))),
                "%s/%s" % (fmt(br.get("p50")), fmt(br.get("p99"))),
                fmt((r.get("poll_interval_s") or {}).get("p50"))))
    rec = sc.get("recovery") or {}
    if rec.get("runs"):
        add("")
        add("Recovery (ms, %d runs: median / max)" % len(rec["runs"]))
        for k in ("poller_kill_to_answering_ms",
                  "actuator_kill_to_answering_ms",
                  "start_to_first_poll_ms", "poller_fork_to_first_poll_ms"):
            s = rec[k]
            add("  %-34s %8s / %s" % (k, fmt(s["p50"]), fmt(s["max"])))
    tr = sc.get("trace") or {}
    if tr.get("settings"):
        add("")
        add("Job trace: %s day, %d jobs over %g h replayed at %gx, VM boot "
            "%g s; waits in simulated seconds" % (
                tr.get("profile", "busy"), tr["jobs"], tr["hours"],
                tr["speed"], tr["boot_delay_s"]))
        add("%-20s %6s %6s %6s %6s %6s %6s %7s %5s %s" % (
            "setting", "p50", "p95", "p99", "max", "VM-h", "xmin0", "util%",
            "head", "target"))
        for name, r in tr["settings"].items():
            w = r["queue_wait_s"]
            add("%-20s %6s %6s %6s %6s %6s %6s %7s %5s %s" % (
                name, fmt(w.get("p50")), fmt(w.get("p95")),
                fmt(w.get("p99")), fmt(w.get("max")), fmt(r["vm_hours"]),
                fmt(r.get("vm_hours_vs_min0")),
                fmt(r["vm_utilisation_pct"]), fmt(r.get("headroom_mean")),
                "met" if r.get("meets_target") else "-"))
    if sc.get("soak"):
        lines.extend(soak.table_lines(sc["soak"]))
    if res["targets"]:
        add("")
        add("DESIGN §11 targets")
        for t in res["targets"]:
            add("  [%s] %s: %s (target %s)" % (
                "met " if t["met"] else "MISS", t["what"], t["value"],
                t["target"]))
    return "\n".join(lines)


# Main ------------------------------------------------------------------------
def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description="runner-provisioner benchmarks (see the module "
        "docstring)")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds per scenario: checks the harness "
                    "runs, the figures mean nothing")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--out", default=os.path.join(REPO, "bench-results",
                                                  "results.json"))
    ap.add_argument("--build-dir", help="default $RP_BUILD_DIR or "
                    "build-bench")
    ap.add_argument("--classes", default="1,10,100",
                    help="class counts for steady and callgrind")
    ap.add_argument("--warmup", type=float, default=15)
    ap.add_argument("--window", type=float, default=30)
    ap.add_argument("--cg-cycles", type=int, default=5)
    ap.add_argument("--cg-classes", help="class counts under callgrind "
                    "(default: those of --classes up to 10)")
    ap.add_argument("--cg-settle", type=float, default=5)
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--intervals", default="1s,100ms,idle",
                    help="poll intervals of the latency scenario; \"idle\": "
                    "an idle class (5 s idle interval)")
    ap.add_argument("--scale-cases",
                    default="1:idle,1:busy,100:idle,100:idle-changes,"
                    "100:busy,1000:idle,1000:busy,1000:idle-poller,"
                    "1000:busy-poller",
                    help="N:idle or N:busy, N classes from 1 to 1000; "
                    "-changes: with --log-scaler-lines changes; -poller: "
                    "the poller alone")
    ap.add_argument("--scale-window", type=float, default=30)
    ap.add_argument("--scale-samples", type=int, default=5,
                    help="classes that get reaction samples per case")
    ap.add_argument("--scale-changes", type=int, default=20,
                    help="busy reaction samples per class")
    ap.add_argument("--scale-flags", default="",
                    help="more daemon flags for every scale case, e.g. "
                    "\"--max-requests-per-second 400\"")
    ap.add_argument("--recovery-runs", type=int, default=5)
    # The daemon's own timers do not speed up with the replay (its 2 s
    # Kubernetes list cycle stands for 2 s x speed); at 30x they stay below
    # the VM boot time.  The default replays the busy morning, 09:00-12:00;
    # --trace-start-hour 7 --trace-hours 12 replays the whole day (24 min).
    ap.add_argument("--trace-speed", type=float, default=30)
    ap.add_argument("--trace-hours", type=float, default=3)
    ap.add_argument("--trace-start-hour", type=float, default=9.0,
                    help="hour of the working day the replay starts at")
    ap.add_argument("--trace-boot-s", type=float, default=90,
                    help="VM boot delay, simulated seconds")
    ap.add_argument("--trace-poll", default="100ms")
    ap.add_argument("--trace-claim-ms", type=int, default=100,
                    help="how often an idle VM's runner asks for a task "
                    "(real ms)")
    ap.add_argument("--trace-max", type=int, default=50)
    ap.add_argument("--trace-profile", choices=("busy", "quiet"),
                    default="busy", help="busy: the working day above; "
                    "quiet: a tenth of its rate, small bursts")
    ap.add_argument("--trace-settings", default=TRACE_DEFAULT,
                    help="comma-separated names of TRACE_SETTINGS, each "
                    "run as its own class (known: %s)" % ", ".join(
                        TRACE_SETTINGS))
    ap.add_argument("--trace-lead-s", type=float, default=75,
                    help="real seconds before the replay starts (warm-up; "
                    "the next whole minute after it with a schedule)")
    ap.add_argument("--soak-minutes", type=float, default=30)
    ap.add_argument("--soak-classes", type=int, default=soak.CLASSES)
    ap.add_argument("--soak-seed", type=int, default=None,
                    help="default: a new one, printed")
    ap.add_argument("--soak-sample-s", type=float, default=10,
                    help="how often RSS and descriptors are sampled")
    ap.add_argument("--soak-warmup-s", type=float, default=180,
                    help="left out of each process lifetime's slope")
    a = ap.parse_args(argv)
    if a.soak_seed is None:
        a.soak_seed = random.randrange(1 << 30)
    if a.smoke:
        a.classes = "1"
        a.warmup, a.window = 1.0, 3.0
        a.cg_cycles, a.cg_settle = 1, 1.0
        a.changes = 6
        a.intervals = "100ms"
        a.recovery_runs = 1
        a.trace_speed, a.trace_hours = 1200, 1.0
        a.trace_lead_s = 5
        a.scale_cases = "1:idle"
        a.scale_window, a.scale_samples, a.scale_changes = 3.0, 1, 2
        a.scale_flags = "--idle-poll-after 1s --idle-poll-interval 2s"
    a.class_counts = [int(x) for x in a.classes.split(",") if x]
    # Under callgrind (~50x slower) a 100-class daemon cannot keep its own
    # deadlines (health answers within 10 s): the supervisor restarts its
    # children.  Instruction counts are taken at 1 and 10 classes.
    a.callgrind_counts = [int(x) for x in a.cg_classes.split(",") if x] \
        if a.cg_classes else [n for n in a.class_counts if n <= 10]
    a.intervals = [x for x in a.intervals.split(",") if x]
    try:
        a.scale_case_list = parse_scale_cases(a.scale_cases)
    except ValueError as e:
        ap.error(str(e))
    a.scale_flags = a.scale_flags.split()
    a.scenario_list = [s for s in a.scenarios.split(",") if s]
    for s in a.scenario_list:
        if s not in SCENARIOS + EXTRA_SCENARIOS:
            ap.error("unknown scenario %r (known: %s)" % (
                s, ", ".join(SCENARIOS + EXTRA_SCENARIOS)))
    return a


def write_results(path, res):
    """Written after every scenario (a partial run still leaves figures)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def main(argv=None):
    a = parse_args(argv)
    for b in (harness.SUPERVISOR, harness.POLLER, harness.ACTUATOR):
        if not os.access(b, os.X_OK):
            sys.stderr.write("bench: %s is not built (scripts/bench.sh "
                             "builds build-bench)\n" % b)
            return 2
    res = {"schema": SCHEMA, "smoke": a.smoke,
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine_info(), "build": build_info(),
           "scenarios": {}, "errors": {}}
    t0 = time.time()
    fns = {"steady": scenario_steady, "floor": scenario_floor,
           "callgrind": scenario_callgrind,
           "latency": scenario_latency, "scale": scenario_scale,
           "recovery": scenario_recovery, "trace": scenario_trace,
           "soak": soak.scenario_soak}
    for s in a.scenario_list:
        ts = time.time()
        try:
            res["scenarios"][s] = fns[s](a)
        except Exception as e:  # the other scenarios still run
            import traceback
            res["errors"][s] = "%s\n%s" % (e, traceback.format_exc()[-3000:])
            log("%s failed: %s" % (s, e))
        log("%s took %.0f s" % (s, time.time() - ts))
        write_results(a.out, res)
    res["duration_s"] = round(time.time() - t0, 1)
    res["machine"]["loadavg_at_end"] = [round(x, 2)
                                        for x in os.getloadavg()]
    res["targets"] = targets(res)
    write_results(a.out, res)
    print(table(res))
    print("\nresults: %s (%.0f s)" % (a.out, res["duration_s"]))
    if res["errors"]:
        for s, e in res["errors"].items():
            print("scenario %s failed: %s" % (s, e.splitlines()[0]))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
