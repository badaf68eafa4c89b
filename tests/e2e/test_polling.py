#!/usr/bin/python3
"""End-to-end: how often and how evenly the poller asks CircleCI.

Adaptive polling (a class with no task for --idle-poll-after is polled
every --idle-poll-interval; its first task brings it back at once), polls
spread over the interval instead of leaving together, the request budget
(--max-requests-per-second: round-robin when short, halved by 429s and
grown back, capped by the RateLimit headers an API gateway sends) and
--log-scaler-lines changes.  Everything is judged from the CircleCI
simulator's request journal, the daemon's log and its /metrics.
"""

import calendar
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TASKS = ("tasks", "running")
SCALER = "polled task counts"


def task_requests(sim, since, until=None, cls=None):
    return sorted((r for r in sim.requests(since=since, resource_class=cls)
                   if r["endpoint"] in TASKS and
                   (until is None or r["t"] < until)),
                  key=lambda r: r["t"])


def poll_times(reqs):
    """One time per poll: the unclaimed-tasks request of each."""
    return [r["t"] for r in reqs if r["endpoint"] == "tasks"]


def gaps(times):
    return [b - a for a, b in zip(times, times[1:])]


def polls_per_class(reqs):
    per = {}
    for r in reqs:
        if r["endpoint"] == "tasks":
            per[r["resource_class"]] = per.get(r["resource_class"], 0) + 1
    return per


def log_epoch(entry):
    """A log line's ts (RFC 3339, milliseconds, UTC) as an epoch."""
    ts = entry["ts"]
    base = calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S"))
    return base + int(ts[20:23]) / 1000.0


class PollingTest(harness.E2ETestCase):

    def start(self, names, counts=(1, 0), **kw):
        """The simulator with names (each at counts: unclaimed, running;
        None: no task) and the daemon polling them (minReplicas 0)."""
        sim = self.start_circleci(names)
        if counts is not None:
            for n in names:
                sim.set_counts(n, *counts)
        self.write_config({n: {"minReplicas": 0} for n in names})
        return sim, self.start_provisioner(**kw)

    def assert_even_turns(self, reqs, names):
        """Every class polled, none more than once more than another."""
        per = polls_per_class(reqs)
        self.assertEqual(set(per), set(names))
        self.assertLessEqual(max(per.values()) - min(per.values()), 1, per)

    def metric(self, p, name, **labels):
        return harness.Metrics(p.get("/metrics")[1]).get(
            "runner_provisioner_" + name, **labels)

    def wait_metric(self, p, name, pred, timeout=30, **labels):
        def ok():
            v = self.metric(p, name, **labels)
            return v is not None and pred(v)
        return p.wait(ok, timeout, "%s %r" % (name, labels))

    def test_idle_class_slows_down_and_wakes_at_once(self):
        busy, quiet = "poll-org/busy", "poll-org/quiet"
        sim = self.start_circleci([busy, quiet])
        sim.set_counts(busy, 2, 1)
        self.write_config({busy: {"minReplicas": 0},
                           quiet: {"minReplicas": 0}})
        p = self.start_provisioner(poll_interval="200ms", args=[
            "--idle-poll-interval", "1500ms", "--idle-poll-after", "2s"])
        p.wait_log(proc="poller", msg=SCALER, resource_class=quiet)
        # No task for 2 s: the quiet class moves to the idle interval.
        self.wait_metric(p, "poll_idle_classes", lambda v: v == 1, 20)
        mark = p.mark()
        t0 = time.time()
        time.sleep(harness.scaled(6))
        t1 = time.time()
        q = poll_times(task_requests(sim, t0, t1, quiet))
        b = poll_times(task_requests(sim, t0, t1, busy))
        expect = (t1 - t0) / 1.5
        self.assertGreaterEqual(len(q), int(expect) - 1, q)
        self.assertLessEqual(len(q), int(expect) + 1, q)
        for g in gaps(q):
            self.assertGreater(g, 1.2, q)
            self.assertLess(g, 1.8 + harness.scaled(0.3) - 0.3, q)
        # The busy class is not slowed down by it.
        self.assertGreaterEqual(len(b), (t1 - t0) / 0.2 * 0.8, b)
        self.assertAlmostEqual(self.metric(p, "poll_interval_seconds",
                                           resource_class=quiet), 1.5,
                               delta=0.1)
        self.assertLess(self.metric(p, "poll_interval_seconds",
                                    resource_class=busy), 0.3)
        # The actuator still hears about the quiet class every interval:
        # its demand never went stale.
        held = p.lines(since=mark, proc="actuator", msg="holding replicas")
        self.assertEqual(held, [], held)
        detail = p.ready()[1]["children"]["actuator"]["detail"]["classes"]
        self.assertLess(detail[quiet]["demand"]["age_ms"], 600, detail)
        self.assertIs(detail[quiet]["demand"]["ok"], True, detail)
        pd = p.ready()[1]["children"]["poller"]["detail"]
        self.assertEqual((pd["idle_poll_interval_ms"], pd["idle_classes"]),
                         (1500, 1), pd)

        # A task: seen at the next idle poll, then polled fast at once.
        mark = p.mark()
        tq = time.time()
        sim.queue(quiet, 1)
        seen = p.wait_log(since=mark, proc="poller", msg=SCALER,
                          resource_class=quiet, unclaimed_tasks=1,
                          timeout=10)
        self.assertLess(log_epoch(seen) - tq, 1.5 + harness.scaled(0.5))
        p.wait_log(since=mark, proc="actuator",
                   msg=re.compile(r"^would scale .* to 1$"),
                   resource_class=quiet, timeout=10)
        t2 = time.time()
        time.sleep(harness.scaled(2))
        fast = poll_times(task_requests(sim, t2, time.time(), quiet))
        self.assertGreaterEqual(len(fast), 7, fast)
        self.wait_metric(p, "poll_idle_classes", lambda v: v == 0, 5)
        # Quiet again: idle again after --idle-poll-after.
        sim.set_counts(quiet, 0, 0)
        self.wait_metric(p, "poll_idle_classes", lambda v: v == 1, 10)
        p.log.check()

    def test_demand_of_many_idle_classes_stays_fresh(self):
        """60 idle classes: each one's last observation reaches the actuator
        every interval, none is dropped on the way (nng's PUB drops what
        does not fit its queue), so the actuator never holds a class for
        stale demand."""
        names = ["fresh-org/c%02d" % i for i in range(60)]
        _, p = self.start(names, None, poll_interval="300ms", args=[
            "--idle-poll-after", "500ms", "--max-requests-per-second",
            "1000"])
        self.wait_metric(p, "poll_idle_classes", lambda v: v == 60, 30)
        mark = p.mark()
        time.sleep(harness.scaled(5))
        held = p.lines(since=mark, proc="actuator", msg="holding replicas")
        self.assertEqual(held, [], held[:3])
        detail = p.ready()[1]["children"]["actuator"]["detail"]["classes"]
        ages = sorted(detail[n]["demand"]["age_ms"] for n in names)
        self.assertLess(ages[-1], 900, ages)

    def test_polls_are_spread_over_the_interval(self):
        """20 busy classes at 1 s: two requests every 50 ms, not 40 at the
        top of each second."""
        names = ["spread-org/c%02d" % i for i in range(20)]
        sim, p = self.start(names, poll_interval="1s")
        for n in names:
            p.wait_log(proc="poller", msg=SCALER, resource_class=n,
                       timeout=20)
        t0 = time.time()
        time.sleep(harness.scaled(4))
        reqs = task_requests(sim, t0, t0 + harness.scaled(4))
        times = [r["t"] for r in reqs]
        worst = max(sum(1 for u in times if t <= u < t + 0.05)
                    for t in times)
        self.assertLessEqual(worst, 8, "%d requests within 50 ms" % worst)
        self.assert_even_turns(reqs, names)
        # Each poll's two requests go together.
        for n in names:
            mine = [r for r in reqs if r["resource_class"] == n]
            for a, b in zip(mine[::2], mine[1::2]):
                self.assertEqual({a["endpoint"], b["endpoint"]}, set(TASKS))
                self.assertLess(b["t"] - a["t"], 0.2)

    def test_short_budget_polls_every_class_in_turn(self):
        """12 busy classes at 250 ms want 96 requests/s; a budget of 12/s
        polls each of them every 2 s, all alike, and says so."""
        names = ["rr-org/c%02d" % i for i in range(12)]
        sim, p = self.start(names, (1, 1), poll_interval="250ms", args=[
            "--max-requests-per-second", "12"])
        short = p.wait_log(proc="poller", msg=re.compile(
            r"^CircleCI request budget of 12\.0/s is below the 96\.0/s that "
            r"12 classes need"))
        self.assertEqual(short["level"], "warn")
        for n in names:
            p.wait_log(proc="poller", msg=SCALER, resource_class=n)
        t0 = time.time()
        window = harness.scaled(10)
        time.sleep(window)
        reqs = task_requests(sim, t0, t0 + window)
        rate = len(reqs) / window
        self.assertGreater(rate, 12 * 0.8, rate)
        self.assertLess(rate, 12 * 1.15, rate)
        self.assert_even_turns(reqs, names)
        m = harness.Metrics(p.get("/metrics")[1])
        for n in names:
            v = m.get("runner_provisioner_poll_interval_seconds",
                      resource_class=n)
            self.assertGreater(v, 1.5, n)
            self.assertLess(v, 2.6, n)
        self.assertEqual(m.get("runner_provisioner_circleci_request_budget"),
                         12)
        self.assertEqual(m.get("runner_provisioner_circleci_requests_needed"),
                         96)
        # Slow on purpose is not unhealthy.
        status, body = p.ready()
        self.assertEqual(status, 200, body)
        self.assertEqual(len(p.lines(proc="poller", msg=re.compile(
            "^CircleCI request budget of"))), 1)

    def test_429s_halve_the_budget_and_recoveries_restore_it(self):
        """A gateway allowing 10 requests/s, no headers, no Retry-After:
        the budget comes down to it, then back up once it is gone."""
        names = ["aimd-org/c%02d" % i for i in range(10)]
        sim = self.start_circleci(names)
        for n in names:
            sim.set_counts(n, 1, 0)
        sim.ratelimit(10, headers="none", retry_after=False)
        self.write_config({n: {"minReplicas": 0} for n in names})
        p = self.start_provisioner(poll_interval="100ms", args=[
            "--max-requests-per-second", "40"])
        lowered = p.wait_log(proc="poller", msg=re.compile(
            r"^CircleCI answered 429 Too Many Requests: request budget "
            r"lowered to 20\.0/s \(from 40\.0/s\)$"))
        self.assertEqual(lowered["level"], "warn")
        time.sleep(harness.scaled(4))
        t0 = time.time()
        window = harness.scaled(8)
        time.sleep(window)
        reqs = task_requests(sim, t0, t0 + window)
        limited = sum(1 for r in reqs if r["status"] == 429)
        self.assertGreater(len(reqs), 0)
        self.assertLess(limited / len(reqs), 0.35,
                        "%d of %d requests got 429" % (limited, len(reqs)))
        self.assertLess(len(reqs) / window, 10 * 1.6)
        self.assertGreater(len(reqs) / window - limited / window, 10 * 0.6)
        m = harness.Metrics(p.get("/metrics")[1])
        self.assertGreater(
            m.get("runner_provisioner_circleci_budget_decreases_total"), 1)
        self.assertLess(m.get("runner_provisioner_circleci_request_budget"),
                        20)
        # The limit goes: the budget grows back to 40/s.
        sim.clear_ratelimit()
        mark = p.mark()
        p.wait_log(since=mark, proc="poller",
                   msg="request budget back to 40.0/s", timeout=40)
        self.wait_metric(p, "circleci_request_budget", lambda v: v == 40, 5)

    def test_ratelimit_headers_are_honoured(self):
        """A gateway that says "8 per second" in Kong's headers: the poller
        keeps to it without being told twice."""
        names = ["hdr-org/c%02d" % i for i in range(10)]
        sim = self.start_circleci(names)
        for n in names:
            sim.set_counts(n, 0, 1)
        self.write_config({n: {"minReplicas": 0} for n in names})
        sim.ratelimit(8, window_s=1, headers="kong")
        p = self.start_provisioner(poll_interval="200ms")
        p.wait_log(proc="poller", msg="CircleCI advertises a rate limit of "
                   "8.00 requests/s: the request budget stays within it")
        time.sleep(harness.scaled(3))
        t0 = time.time()
        window = harness.scaled(8)
        time.sleep(window)
        reqs = task_requests(sim, t0, t0 + window)
        limited = sum(1 for r in reqs if r["status"] == 429)
        rate = len(reqs) / window
        self.assertLess(rate, 8 * 1.2, rate)
        # Not throttled far below it (halved by 429s, say); a loaded CI
        # machine paces a little late (4.75/s measured there).
        self.assertGreater(rate, 8 * 0.4, rate)
        self.assertLess(limited, max(2, len(reqs) // 10),
                        "%d of %d requests got 429" % (limited, len(reqs)))
        self.assertLessEqual(
            self.metric(p, "circleci_request_budget"), 8)

    def test_log_scaler_lines_changes(self):
        """--log-scaler-lines changes: a line when a class's numbers change,
        and once a minute when they do not."""
        steady, moving = "log-org/steady", "log-org/moving"
        sim = self.start_circleci([steady, moving])
        sim.set_counts(steady, 2, 1)
        sim.set_counts(moving, 1, 0)
        self.write_config({steady: {"minReplicas": 0},
                           moving: {"minReplicas": 0}})
        p = self.start_provisioner(poll_interval="200ms", args=[
            "--log-scaler-lines", "changes"])
        first = p.wait_log(proc="poller", msg=SCALER, resource_class=steady)
        p.wait_log(proc="poller", msg=SCALER, resource_class=moving)
        started = p.lines(proc="poller", msg="poller starting")[-1]
        self.assertEqual(started["log_scaler_lines"], "changes")
        time.sleep(harness.scaled(2))
        self.assertEqual(len(p.lines(proc="poller", msg=SCALER,
                                     resource_class=moving)), 1)
        # Polls went on all the while.
        self.assertGreater(len(task_requests(sim, 0, cls=moving)), 10)
        mark = p.mark()
        sim.set_counts(moving, 4, 0)
        line = p.wait_log(since=mark, proc="poller", msg=SCALER,
                          resource_class=moving, timeout=5)
        self.assertEqual((line["unclaimed_tasks"], line["running_tasks"],
                          line["desired_vms"]), (4, 0, 4))
        time.sleep(harness.scaled(1))
        self.assertEqual(len(p.lines(since=mark, proc="poller", msg=SCALER,
                                     resource_class=moving)), 1)
        # The steady class: again a minute after its first line.
        again = p.wait_log(proc="poller", msg=SCALER, resource_class=steady,
                           where=lambda e: e["ts"] != first["ts"],
                           timeout=70)
        gap = log_epoch(again) - log_epoch(first)
        self.assertGreaterEqual(gap, 60)
        self.assertLess(gap, 61)
        self.assertEqual(len(p.lines(proc="poller", msg=SCALER,
                                     resource_class=steady)), 2)


if __name__ == "__main__":
    harness.main()
