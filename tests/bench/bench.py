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

  steady     per class count (1, 10, 100 classes at 1 s polling, one VM
             per class, no demand change): after a warm-up, over a window,
             RSS, PSS, peak RSS, private/shared memory, threads and open fds
             per process; the distinct physical pages of the three together
             (pagemap); CPU time (user+sys from /proc/PID/stat) per
             process, per poll cycle and per class; CircleCI requests and
             Kubernetes reads and writes per minute; how fast the
             simulators answered (the poller's own latency histogram)
  callgrind  the same stack with every process under valgrind
             --tool=callgrind (--trace-children=yes): counters zeroed after
             a poll cycle, dumped after K more: instructions per cycle per
             process and per class (stable on a noisy machine)
  latency    a task appears in the CircleCI simulator -> the scale PATCH
             arrives at the Kubernetes simulator, over >= 200 changes at
             1 s and at 100 ms polling, split into "waiting for the next
             poll" and "poll request -> scale request" (the code's own part)
  recovery   kill -9 of each child -> its replacement answers a health
             survey; supervisor start -> first CircleCI poll request
  soak       (only when named: --scenarios soak) 100 classes for
             --soak-minutes (30) under random faults from both simulators
             and child kills: RSS and descriptor slopes, busy VMs deleted,
             scale-downs from missing data, crashes (tests/bench/soak.py)
  trace      a bursty working day of jobs (by default its busy morning)
             replayed at speed through both simulators (VMs boot after a
             delay, claim tasks, run them, power off): queue wait
             p50/p95/max and VM time used, for several
             minReplicas/idleTimeout settings at once (one class each,
             the same jobs)

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
SCENARIOS = ("steady", "callgrind", "latency", "recovery", "trace")
# Run only when named: half an hour by default.
EXTRA_SCENARIOS = ("soak",)
SCALED_RE = re.compile(r"^scaled (\S+) from (\d+) to (\d+)$")


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
    st = bl.Stack(classes, poll_interval=poll, claim_interval_ms=60000,
                  boot_delay_ms=200)
    try:
        t0 = time.time()
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


def _cycle_boundary(st, n, since, after, timeout):
    """Waits until at least `after` complete poll cycles were logged since
    `since` and no line came for 150 ms (between cycles); returns the
    number of cycles seen."""
    t_end = time.time() + timeout
    last = -1
    stable_since = time.time()
    while time.time() < t_end:
        k = len(st.poll_lines(since=since))
        if k != last:
            last = k
            stable_since = time.time()
        elif k >= after * n and k % n == 0 and \
                time.time() - stable_since >= 0.15:
            return k // n
        time.sleep(0.03)
    raise AssertionError("no poll cycle boundary within %ss (%d lines, "
                         "%d classes)" % (timeout, last, n))


def callgrind_one(n, cycles, settle):
    classes = {c: {"minReplicas": 1, "maxReplicas": 10}
               for c in bl.class_names(n)}
    st = bl.Stack(classes, poll_interval="1s", claim_interval_ms=60000,
                  boot_delay_ms=200)
    outdir = st.tdir.join("callgrind")
    os.makedirs(outdir)
    try:
        st.start_sims()
        st.prov = CallgrindProvisioner(
            st.tdir, outdir, sims=[st.circle, st.kube], poll_interval="1s",
            args=["--boot-loop-threshold", "250ms"])
        st.prov.start(timeout=180)
        st.prov.pid = st.prov.proc.pid
        # Not /ready: under valgrind the first sync of 100 classes can
        # outlast its freshness windows.  Every pool at one running VM
        # and every class polled is the steady state measured here.
        bl.wait_for(lambda: _vms_running(st) >= n, 400, interval=0.5,
                    what="%d VMs running" % n)
        time.sleep(settle)
        pids = st.pids()
        since = st.prov.mark()
        _cycle_boundary(st, n, since, 1, 60)
        for k, pid in pids.items():
            subprocess.run(["callgrind_control", "-z", str(pid)],
                           capture_output=True, timeout=60, check=True)
        since = st.prov.mark()
        t0 = time.time()
        got = _cycle_boundary(st, n, since, cycles, 60 + 20 * cycles)
        for k, pid in pids.items():
            subprocess.run(["callgrind_control", "-d", "bench", str(pid)],
                           capture_output=True, timeout=60, check=True)
        span = time.time() - t0
        out = {"classes": n, "cycles": got, "wall_s": round(span, 2),
               "processes": {}}
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
    phase of the poll cycle)."""
    names = bl.class_names(nclasses, prefix="bench-org/lat-")
    classes = {c: {"minReplicas": 0, "maxReplicas": 5} for c in names}
    # VMs never boot: tasks stay unclaimed, demand is exactly the queue.
    st = bl.Stack(classes, poll_interval=interval, boot_delay_ms=3600000,
                  claim_interval_ms=60000)
    ival = st_interval_s(interval)
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
                    time.sleep(rng.uniform(0, ival))
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
        out[interval] = latency_one(interval, args.changes)
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
# (name, minReplicas, idleTimeout in simulated seconds or None)
TRACE_SETTINGS = [
    ("min0", 0, None),
    ("min0-idle10m", 0, 600),
    ("min3-idle10m", 3, 600),
    ("min10-idle30m", 10, 1800),
]


def day_trace(seed, hours, start_hour=7.0):
    """A bursty working day from start_hour: (t seconds, duration seconds)
    of each job in simulated time.  A background rate that ramps up in the
    morning, dips at lunch and fades in the evening, plus bursts (a
    pipeline fanning out 8-30 jobs at once, a few per hour at peak)."""
    rng = random.Random(seed)

    def rate(h):  # jobs per hour
        if h < 8 or h >= 19:
            return 2
        if h < 10:
            return 8 + 12 * (h - 8)
        if 12 <= h < 13:
            return 14
        if h >= 17:
            return 30 - 12 * (h - 17)
        return 30

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
        bursts = 0.5 if (h < 8 or h >= 19) else 3.0
        t += rng.expovariate(bursts / 3600.0)
        if t >= end:
            break
        for _ in range(rng.randint(8, 30)):
            jobs.append((t + rng.uniform(0, 20), duration()))
    jobs.sort()
    return jobs


def go_ms(seconds):
    return "%dms" % max(1, int(round(seconds * 1000)))


def scenario_trace(args):
    speed = args.trace_speed
    hours = args.trace_hours
    jobs = day_trace(5, hours, args.trace_start_hour)
    names = {s[0]: "bench-org/trace-%s" % s[0] for s in TRACE_SETTINGS}
    classes = {}
    for name, lo, idle in TRACE_SETTINGS:
        c = {"minReplicas": lo, "maxReplicas": args.trace_max}
        if idle is not None:
            c["idleTimeout"] = go_ms(idle / speed)
        classes[names[name]] = c
    boot_ms = int(1000 * args.trace_boot_s / speed)
    log("trace: %d jobs in %.1f h at %gx (%.0f s), boot %.0f s (%d ms), "
        "%d settings" % (len(jobs), hours, speed, hours * 3600 / speed,
                         args.trace_boot_s, boot_ms, len(TRACE_SETTINGS)))
    st = bl.Stack(classes, poll_interval=args.trace_poll,
                  boot_delay_ms=boot_ms,
                  claim_interval_ms=args.trace_claim_ms,
                  boot_loop_threshold="10ms")
    from kubesim import VMRecorder
    rec = None
    try:
        st.start(timeout=60)
        rec = VMRecorder(st.kube, interval=0.1).start()
        # Warm pools first (minReplicas VMs booted), as after a night.
        want = sum(lo for _, lo, _ in TRACE_SETTINGS)
        bl.wait_for(lambda: _vms_running(st) >= want, 60,
                    what="%d warm VMs" % want)
        t0 = time.time()
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
        rec.wait_snapshots(2)
        rec.stop()
        views = rec.all()
        last_seen = dict(rec.last_seen)
        results = {}
        for name, lo, idle in TRACE_SETTINGS:
            cls = names[name]
            tasks = st.circle.client.call(
                "GET", "/_sim/tasks", query={"resource_class": cls})["tasks"]
            waits = [(t["claimed_at"] - t["queued_at"]) * speed
                     for t in tasks if t["claimed_at"] is not None]
            unclaimed = sum(1 for t in tasks if t["claimed_at"] is None)
            pool = bl.pool_name(cls)
            vm_s = 0.0
            busy_s = sum(t["duration_ms"] / 1000.0 for t in tasks
                         if t["claimed_at"] is not None)
            nvms = 0
            for uid, v in views.items():
                if v["name"].rsplit("-", 1)[0] != pool:
                    continue
                nvms += 1
                start = v.get("created") or rec.first_seen.get(uid)
                stop = v.get("stopped")
                if stop is None or (v.get("booted") and
                                    stop < v["booted"]):
                    stop = last_seen.get(uid, t_drain)
                start = max(start, t0)
                stop = min(stop, t_drain)
                if stop > start:
                    vm_s += stop - start
            results[name] = {
                "resource_class": cls, "minReplicas": lo,
                "idleTimeout_s": idle,
                "jobs": len(tasks), "never_claimed": unclaimed,
                "queue_wait_s": bl.summary(waits, 1, 0),
                "vm_hours": round(vm_s * speed / 3600, 1),
                "busy_vm_hours": round(busy_s * speed / 3600, 1),
                "vm_utilisation_pct": round(100 * busy_s / vm_s, 1)
                if vm_s else None,
                "vms_created": nvms,
            }
        return {"speed": speed, "hours": hours, "jobs": len(jobs),
                "boot_delay_s": args.trace_boot_s,
                "poll_interval": args.trace_poll,
                "poll_interval_simulated_s": round(
                    st_interval_s(args.trace_poll) * speed, 1),
                "claim_interval_simulated_s": round(
                    args.trace_claim_ms / 1000.0 * speed, 1),
                "maxReplicas": args.trace_max,
                "replay_s": round(t_drain - t0, 1),
                "replay_late_max_s": round(late, 3), "drained": drained_ok,
                "settings": results}
    finally:
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
        limit = st_interval_s(interval) * 1000 + 100
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
                            10 + 5 * st_interval_s(interval)),
                        met=p99 <= limit and failed * 100 <= total))
    if steady:
        worst = max(v["kube_writes_per_min"] for v in steady.values())
        out.append(dict(what="kube writes with unchanged demand",
                        target="0", value="%g per minute (max over %s "
                        "classes)" % (worst, ",".join(steady)),
                        met=worst == 0))
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
        add("Job trace: %d jobs over %g h replayed at %gx, VM boot %g s; "
            "simulated minutes" % (tr["jobs"], tr["hours"], tr["speed"],
                                   tr["boot_delay_s"]))
        add("%-15s %8s %8s %8s %8s %9s %7s" % (
            "setting", "wait p50", "p95", "max", "VM-h", "busy VM-h",
            "util %"))
        for name, r in tr["settings"].items():
            w = r["queue_wait_s"]
            add("%-15s %8s %8s %8s %8s %9s %7s" % (
                name, fmt(w.get("p50", 0) / 60.0 if w.get("n") else None),
                fmt(w.get("p95", 0) / 60.0 if w.get("n") else None),
                fmt(w.get("max", 0) / 60.0 if w.get("n") else None),
                fmt(r["vm_hours"]), fmt(r["busy_vm_hours"]),
                fmt(r["vm_utilisation_pct"])))
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
    ap.add_argument("--intervals", default="1s,100ms")
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
    a.class_counts = [int(x) for x in a.classes.split(",") if x]
    # Under callgrind (~50x slower) a 100-class daemon cannot keep its own
    # deadlines (health answers within 10 s): the supervisor restarts its
    # children.  Instruction counts are taken at 1 and 10 classes.
    a.callgrind_counts = [int(x) for x in a.cg_classes.split(",") if x] \
        if a.cg_classes else [n for n in a.class_counts if n <= 10]
    a.intervals = [x for x in a.intervals.split(",") if x]
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
    fns = {"steady": scenario_steady, "callgrind": scenario_callgrind,
           "latency": scenario_latency, "recovery": scenario_recovery,
           "trace": scenario_trace, "soak": soak.scenario_soak}
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
