"""The soak scenario of tests/bench/bench.py (run it with
`scripts/bench.sh --scenarios soak`; --soak-minutes, default 30).

100 resource classes at 1 s polling, jobs arriving at random on every class
(VMs boot, claim them, run them, power off, are reclaimed), while both
simulators misbehave at random and the children are killed:

  CircleCI   5xx, 429 with Retry-After, slow answers (some past the
             poller's timeout), dropped connections, truncated and
             malformed bodies, and short outages of every class at once
  Kubernetes 409 bursts on scale requests and VM deletes, 403 bursts on
             everything, 5xx, slow answers, dropped connections
  children   kill -9 of the poller and of the actuator, twice each, in the
             first half of the run (the second half measures the children
             undisturbed)

Every sample interval it records each process's RSS, open descriptors and
threads; at the end it reports the slope of RSS and descriptors over time
(least squares, per process lifetime, after a warm-up) and the invariants
an operator cares about, which must be 0:

  busy_vms_deleted      VMs deleted while their runner ran a job (the
                        Kubernetes simulator counts them)
  scale_downs_missing   scale-downs no successful observation asked for:
                        "scaled <pool> from A to B" with B < A, and no
                        "polled task counts" line for that class with
                        desired_vms == B since the observation behind the
                        class's previous scale
  crashes               child deaths other than the kills (and kills of a
                        child that stopped answering), and system calls the
                        children's filters blocked
"""

import os
import random
import signal
import threading
import time

import benchlib as bl
from benchlib import harness


def _log(msg):
    import sys
    sys.stderr.write("bench: soak: %s\n" % msg)
    sys.stderr.flush()


CLASSES = 100
POLL = "1s"
KILLS = (("poller", 0.20), ("actuator", 0.30), ("poller", 0.40),
         ("actuator", 0.50))


def circle_fault(rng, classes):
    cls = rng.choice(classes)
    ep = rng.choice(("tasks", "running"))
    kind = rng.choices(
        ("5xx", "429", "slow", "drop", "truncate", "malformed", "outage"),
        weights=(6, 3, 3, 3, 1, 1, 1))[0]
    if kind == "5xx":
        spec = dict(endpoint=ep, key=cls, status=rng.choice((500, 502, 503)),
                    count=rng.randint(1, 4))
    elif kind == "429":
        spec = dict(endpoint=ep, key=cls, status=429,
                    retry_after=str(rng.randint(1, 4)),
                    count=rng.randint(1, 2))
    elif kind == "slow":
        spec = dict(endpoint=ep, key=cls, delay_ms=rng.randint(2000, 12000),
                    count=rng.randint(1, 3))
    elif kind == "drop":
        spec = dict(endpoint=ep, key=cls, drop=True, count=rng.randint(1, 3))
    elif kind == "truncate":
        spec = dict(endpoint=ep, key=cls, truncate=True, count=1)
    elif kind == "malformed":
        spec = dict(endpoint=ep, key=cls, malformed=True, count=1)
    else:  # every class fails for about two poll cycles
        spec = dict(endpoint="*", path=r"^/api/v3/runner/tasks", status=503,
                    count=4 * len(classes))
    return "circleci " + kind, spec


def kube_fault(rng):
    kind = rng.choices(("409 scale", "409 delete", "403", "5xx", "slow",
                        "drop"), weights=(3, 2, 2, 3, 2, 2))[0]
    if kind == "409 scale":
        spec = dict(endpoint="virtualmachinepools/scale", status=409,
                    count=rng.randint(3, 10))
    elif kind == "409 delete":
        spec = dict(endpoint="virtualmachines", method="DELETE", status=409,
                    count=rng.randint(1, 4))
    elif kind == "403":
        spec = dict(endpoint="*", status=403, count=rng.randint(5, 20))
    elif kind == "5xx":
        spec = dict(endpoint="*", status=rng.choice((500, 503)),
                    count=rng.randint(1, 5))
    elif kind == "slow":
        spec = dict(endpoint="*", delay_ms=rng.randint(1000, 8000),
                    count=rng.randint(1, 3))
    else:
        spec = dict(endpoint="*", drop=True, count=rng.randint(1, 3))
    return "kubernetes " + kind, spec


def slope_per_hour(points):
    """Least-squares slope of [(t seconds, value)] per hour."""
    n = len(points)
    if n < 3:
        return None
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / var * 3600.0


class Sampler:
    """Every interval: RSS, descriptors and threads of the three
    processes (the children's current pids)."""

    def __init__(self, st, interval):
        self.st = st
        self.interval = interval
        self.samples = []  # (t, proc, pid, rss_kib, fds, threads)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            t = time.time()
            for proc, pid in self.st.pids().items():
                s = bl.proc_sample(pid) if pid else None
                if s is not None:
                    self.samples.append((t, proc, pid, s["rss_kib"],
                                         s["fds"], s["threads"]))
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)

    def report(self, warmup_s):
        """Per process: the slope over each lifetime (after warmup_s of
        it), weighted by its length; first, last and peak values."""
        out = {}
        for proc in bl.PROCS:
            rows = [r for r in self.samples if r[1] == proc]
            if not rows:
                continue
            segs = {}
            for r in rows:
                segs.setdefault(r[2], []).append(r)
            rss_w = fds_w = wsum = 0.0
            longest = max(segs.values(), key=lambda s: s[-1][0] - s[0][0])
            for seg in segs.values():
                t0 = seg[0][0] + warmup_s
                kept = [r for r in seg if r[0] >= t0]
                dur = kept[-1][0] - kept[0][0] if len(kept) > 2 else 0
                rs = slope_per_hour([(r[0], r[3]) for r in kept])
                fs = slope_per_hour([(r[0], r[4]) for r in kept])
                if rs is None or dur <= 0:
                    continue
                rss_w += rs * dur
                fds_w += fs * dur
                wsum += dur
            out[proc] = {
                "lifetimes": len(segs),
                "measured_s": round(wsum, 1),
                "rss_kib_per_hour": round(rss_w / wsum, 1) if wsum else None,
                "fds_per_hour": round(fds_w / wsum, 2) if wsum else None,
                "rss_kib_first": rows[0][3], "rss_kib_last": rows[-1][3],
                "rss_kib_peak": max(r[3] for r in rows),
                "fds_first": rows[0][4], "fds_last": rows[-1][4],
                "fds_peak": max(r[4] for r in rows),
                "threads_peak": max(r[5] for r in rows),
                "longest_lifetime_s": round(longest[-1][0] - longest[0][0]),
                "series": [(round(r[0] - self.samples[0][0]), r[2], r[3],
                            r[4]) for r in rows],
            }
        return out


def scale_downs_missing(lines, start_epoch, slack_s=1.0):
    """Scale-downs that no successful observation asked for (see the module
    docstring); returns (missing, all scale-downs, all scale-ups).

    A scale-down to B counts as asked for when a successful poll of that
    class wanted B after the observation behind the class's previous scale
    (a write can finish long after its decision: a slow API answer, a
    conflict retried, and a newer observation may already be waiting).  The
    poller logs an observation just after sending it, so its line may come
    up to slack_s after the scale it caused."""
    asked = {}  # class -> [(epoch, desired_vms)] of successful polls
    for e in lines:
        if e.get("proc") == "poller" and e.get("msg") == "polled task counts":
            asked.setdefault(e["resource_class"], []).append(
                (bl.log_epoch(e), e["desired_vms"]))

    def basis(cls, to, t, since):
        """The observation behind a scale to `to` at t: the latest since
        `since` up to t that wanted it, else the first one logged within
        slack_s after t."""
        before = [ta for ta, d in asked.get(cls, ())
                  if since <= ta <= t and d == to]
        if before:
            return before[-1]
        after = [ta for ta, d in asked.get(cls, ())
                 if t < ta <= t + slack_s and d == to]
        return after[0] if after else None

    anchor = {}  # class -> epoch of the observation behind its last scale
    missing, downs, ups = [], 0, 0
    for e in lines:
        if e.get("proc") != "actuator" or \
                not e.get("msg", "").startswith("scaled "):
            continue
        t, cls = bl.log_epoch(e), e["resource_class"]
        since = anchor.get(cls, start_epoch)
        b = basis(cls, e["to"], t, since)
        if e["to"] > e["from"]:
            ups += 1
        else:
            downs += 1
            if b is None:
                missing.append(dict(ts=e["ts"], resource_class=cls,
                                    frm=e["from"], to=e["to"]))
        anchor[cls] = b if b is not None else t
    return missing, downs, ups


def scenario_soak(args):
    minutes = args.soak_minutes
    seconds = minutes * 60.0
    rng = random.Random(args.soak_seed)
    names = bl.class_names(args.soak_classes, prefix="soak-org/class-")
    classes = {c: {"minReplicas": 1 if i % 3 == 0 else 0, "maxReplicas": 3,
                   "idleTimeout": "20s"} for i, c in enumerate(names)}
    st = bl.Stack(classes, poll_interval=POLL, boot_delay_ms=1500,
                  claim_interval_ms=300, boot_loop_threshold="1s",
                  prefix="rp-soak-")
    faults = {}
    kills = []
    try:
        st.start(timeout=180)
        start = time.time()
        sampler = Sampler(st, args.soak_sample_s).start()
        kill_at = [(start + f * seconds, who) for who, f in KILLS]
        next_fault = start + rng.uniform(3, 8)
        next_jobs = start
        end = start + seconds
        _log("%d classes for %.1f min (seed %s)" % (
            len(names), minutes, args.soak_seed))
        while time.time() < end:
            now = time.time()
            if now >= next_jobs:
                # About 4 jobs a second across the classes, 3-20 s each.
                for cls in rng.sample(names, k=rng.randint(2, 6)):
                    st.circle.queue(cls, 1, rng.randint(3000, 20000))
                next_jobs = now + 1.0
            if now >= next_fault:
                try:
                    if rng.random() < 0.5:
                        kind, spec = circle_fault(rng, names)
                        st.circle.fault(**spec)
                    else:
                        kind, spec = kube_fault(rng)
                        st.kube.client.call("POST", "/_sim/faults", spec)
                    faults[kind] = faults.get(kind, 0) + 1
                except Exception as e:  # a fault the simulator refused
                    faults["refused: %s" % e] = 1
                next_fault = now + rng.uniform(3, 10)
            while kill_at and now >= kill_at[0][0]:
                _, who = kill_at.pop(0)
                pid = st.prov.child_pid(who)
                kills.append((who, pid, now))
                bl.kill9(pid)
            time.sleep(0.2)
        # Calm again: the daemon must come back to ready by itself.
        st.circle.clear_faults()
        st.kube.client.call("DELETE", "/_sim/faults")
        ready_again = None
        t_calm = time.time()
        try:
            st.prov.wait_ready(timeout=120)
            ready_again = round(time.time() - t_calm, 1)
        except AssertionError:
            pass
        sampler.stop()
        return _results(args, st, start, seconds, sampler, faults, kills,
                        ready_again)
    finally:
        st.stop()


def _results(args, st, start, seconds, sampler, faults, kills, ready_again):
    p = st.prov
    lines = p.lines()
    counters = st.kube.state()["counters"]
    missing, downs, ups = scale_downs_missing(lines, start)
    killed = {pid for _, pid, _ in kills}
    silent = set()
    crashes = []
    for e in lines:
        msg = e.get("msg", "")
        if msg == "child stopped answering health surveys; killing it":
            silent.add(e.get("child_pid"))
        if msg.startswith("blocked a system call"):
            crashes.append(dict(ts=e["ts"], proc=e["proc"],
                                syscall=e.get("name")))
    started = {}
    for e in lines:
        m = harness.STARTED_RE.match(e.get("msg", ""))
        if m:
            started[m.group(1)] = int(m.group(2))
        if e.get("msg") == "child died; restarting":
            # The pid that died: the one started last for that child.
            pid = started.get(e["child"])
            if pid in killed or pid in silent:
                continue
            crashes.append(dict(ts=e["ts"], child=e["child"],
                                exit=e["exit"]))
    m = p.metrics()
    out = {
        "minutes": round(seconds / 60.0, 1),
        "classes": args.soak_classes,
        "poll_interval": POLL,
        "seed": args.soak_seed,
        "faults_injected": dict(sorted(faults.items())),
        "kills": [dict(child=w, pid=pid, at_s=round(t - start))
                  for w, pid, t in kills],
        "children_killed_for_silence": len(silent),
        "busy_vms_deleted": counters.get("busy_vms_deleted"),
        "scale_downs_missing": len(missing),
        "scale_downs_missing_examples": missing[:10],
        "scale_downs": downs,
        "scale_ups": ups,
        "crashes": len(crashes),
        "crash_examples": crashes[:10],
        "ready_again_after_faults_s": ready_again,
        "sim": {k: counters.get(k) for k in (
            "vms_created", "tasks_claimed", "tasks_finished", "poweroffs",
            "crashes")},
        "reclaimed_vms": sum(v for _, v in m.find(
            "runner_provisioner_reclaimed_vms_total")),
        "probe_cuts": m.get("runner_provisioner_http_connections_cut_total"),
        "memory": sampler.report(args.soak_warmup_s),
    }
    return out


def table_lines(r):
    out = ["", "Soak: %s classes, %s min, seed %s: %d faults injected, "
           "%d kills" % (r["classes"], r["minutes"], r["seed"],
                         sum(r["faults_injected"].values()), len(r["kills"])),
           "  busy VMs deleted %s, scale-downs from missing data %s "
           "(of %s scale-downs, %s ups), crashes %s, killed for silence "
           "%s, ready again %s s after the faults" % (
               r["busy_vms_deleted"], r["scale_downs_missing"],
               r["scale_downs"], r["scale_ups"], r["crashes"],
               r["children_killed_for_silence"],
               r["ready_again_after_faults_s"]),
           "  %-10s %12s %12s %9s %9s %9s %7s" % (
               "process", "RSS KiB/h", "fds/h", "RSS first", "RSS last",
               "RSS peak", "fds pk")]
    for proc, v in r["memory"].items():
        out.append("  %-10s %12s %12s %9s %9s %9s %7s" % (
            proc, v["rss_kib_per_hour"], v["fds_per_hour"],
            v["rss_kib_first"], v["rss_kib_last"], v["rss_kib_peak"],
            v["fds_peak"]))
    return out


def targets(r):
    return [dict(what="soak: VMs deleted while running a job", target="0",
                 value=str(r["busy_vms_deleted"]),
                 met=r["busy_vms_deleted"] == 0),
            dict(what="soak: scale-downs caused by missing data", target="0",
                 value="%d of %d scale-downs" % (r["scale_downs_missing"],
                                                 r["scale_downs"]),
                 met=r["scale_downs_missing"] == 0)]
