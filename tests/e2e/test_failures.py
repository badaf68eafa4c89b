#!/usr/bin/python3
"""End-to-end: what the daemon does when the CircleCI API misbehaves.

The simulator's fault switches play 500s, 429 with Retry-After (seconds and
HTTP date), 401, malformed / oversized / wrongly typed bodies, dropped and
truncated connections and slow answers for one resource class while the
other stays healthy.  Throughout, an observation that failed must never turn
into demand: the actuator holds the replicas it had ("holding replicas")
and never scales the pool down to minReplicas while tasks are queued.
"""

import email.utils
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

A = "e2e-org/flaky"
B = "e2e-org/steady"
QUEUED_A = 5    # desired 5 (min 1, max 10)
QUEUED_B = 2    # desired 3 (min 3 by default)
POLL = 0.5      # --poll-interval in seconds
TASKS_PATHS = r"^/api/v3/runner/tasks"  # both task endpoints, not the check
WOULD_SCALE = re.compile(r"^would scale ")
FAILED = {"tasks": "failed to get unclaimed tasks",
          "running": "failed to get running tasks"}


class FailuresTest(harness.E2ETestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_circleci([A, B])
        self.write_config({A: {"minReplicas": 1}, B: {}})
        self.sim.set_counts(A, QUEUED_A, 0)
        self.sim.set_counts(B, QUEUED_B, 0)
        self.p = self.start_provisioner(poll_interval="%dms" % (POLL * 1000))
        # Healthy first: both classes decided, the start-up check done,
        # ready.
        for cls, want in ((A, QUEUED_A), (B, 3)):
            self.p.wait_log(proc="actuator", msg=WOULD_SCALE,
                            resource_class=cls, to=want)
            self.p.wait_log(proc="poller",
                            msg=re.compile(r"^resource class %s found" %
                                           re.escape(cls)))
        self.p.wait_ready()

        # Queue lengths A had during the test: the only counts a poll may
        # ever report for it.
        self.queued_a = {QUEUED_A}

    def tearDown(self):
        # A failure was never read as "no demand": no decision for A below
        # its queue, no poll reporting a count the simulator never had.
        low = [e for e in self.p.lines(proc="actuator", msg=WOULD_SCALE,
                                       resource_class=A)
               if e["to"] < QUEUED_A]
        self.assertEqual(low, [], "scaled down while %d tasks were queued"
                         % QUEUED_A)
        odd = [e for e in self.p.lines(proc="poller",
                                       msg="polled task counts",
                                       resource_class=A)
               if e["unclaimed_tasks"] not in self.queued_a]
        self.assertEqual(odd, [], "a poll reported a count the simulator "
                         "never had")

    # Helpers ------------------------------------------------------------

    def decisions(self, cls, since=0):
        return self.p.lines(since=since, proc="actuator", msg=WOULD_SCALE,
                            resource_class=cls)

    def wait_healthy_poll(self, cls, since, **fields):
        return self.p.wait_log(since=since, proc="poller",
                               msg="polled task counts", resource_class=cls,
                               timeout=40, **fields)

    def class_requests(self, cls, since, until=None):
        """Times of the task-count requests for cls in the journal."""
        return sorted(r["t"] for r in self.sim.requests(since=since,
                                                        resource_class=cls)
                      if r["endpoint"] in ("tasks", "running") and
                      (until is None or r["t"] < until))

    def fault_time(self, since, cls, status):
        """Journal time of the last request for cls answered status."""
        hits = [r["t"] for r in self.sim.requests(since=since,
                                                  resource_class=cls)
                if r["status"] == status]
        self.assertTrue(hits, "no %s answer journalled for %s" % (status,
                                                                  cls))
        return max(hits)

    # Tests --------------------------------------------------------------
    def test_server_errors_are_logged_held_and_recovered(self):
        p, sim = self.p, self.sim
        mark = p.mark()
        sim.fault(endpoint="tasks", key=A, status=500, count=-1)
        sim.fault(endpoint="running", key=B, status=503, count=-1)
        for cls, kind, status in ((A, "tasks", 500), (B, "running", 503)):
            e = p.wait_log(since=mark, proc="poller", msg=FAILED[kind],
                           resource_class=cls)
            self.assertEqual(e["status"], status, e)
            self.assertEqual(e["level"], "error", e)
            self.assertEqual(e["span"], "worker loop scaler", e)
            self.assertEqual(e["loop_name"], "scaler", e)
            self.assertIn(str(status), e["error"])
            self.assertGreater(e["retry_in_ms"], 0, e)
            h = p.wait_log(since=mark, proc="actuator",
                           msg="holding replicas", resource_class=cls)
            self.assertEqual(h["reason"], "last observation failed", h)
            self.assertEqual(h["poll_error"], "http", h)
        # The other endpoint of each class still answers: it is the failing
        # one that is named.
        self.assertEqual(p.lines(since=mark, msg=FAILED["running"],
                                 resource_class=A), [])
        self.assertEqual(p.lines(since=mark, msg=FAILED["tasks"],
                                 resource_class=B), [])
        # While failing, the queue grows: nothing may be decided from it.
        self.queued_a.add(8)
        sim.set_unclaimed(A, 8)
        fails = p.wait_logs(3, since=mark, proc="poller",
                            msg=FAILED["tasks"], resource_class=A)
        # Capped exponential backoff: the third pause is longer than the
        # first (jitter keeps each within [step/2, step]).
        pauses = [e["retry_in_ms"] for e in fails]
        self.assertGreater(pauses[2], pauses[0], pauses)
        self.assertTrue(all(x <= 30000 for x in pauses), pauses)
        self.assertEqual(self.decisions(A, since=mark), [])
        self.assertEqual(self.decisions(B, since=mark), [])
        # The metrics tell the same story (they reach the supervisor with
        # the next health survey).
        def counted():
            m = p.metrics()
            return (m.get("runner_provisioner_circleci_requests_total",
                          endpoint="tasks", code="500") or 0) >= 3 and \
                (m.get("runner_provisioner_polls_total", resource_class=A,
                       result="failed") or 0) >= 3 and \
                m.get("runner_provisioner_holding", resource_class=A) == 1
        p.wait(counted, 10, "the failures in /metrics")

        # Recovery: scaling resumes with the new queue.
        rec = p.mark()
        sim.clear_faults()
        self.wait_healthy_poll(A, rec, unclaimed_tasks=8, desired_vms=8)
        w = p.wait_log(since=rec, proc="actuator", msg=WOULD_SCALE,
                       resource_class=A, timeout=20)
        self.assertEqual((w["from"], w["to"]), (QUEUED_A, 8), w)
        p.wait_log(since=rec, proc="poller",
                   msg="CircleCI polling recovered for %s" % A)
        p.wait_log(since=rec, proc="actuator",
                   msg="demand for %s is fresh again; no longer holding" % A)
        self.wait_healthy_poll(B, rec)
        self.assertEqual(self.decisions(B, since=mark), [],
                         "B's demand never changed")

    def rate_limit(self, retry_after, pause_bounds):
        """Both task requests of A's next cycle get 429 + Retry-After; A must
        then be left alone for the pause while B goes on.  pause_bounds(t)
        gives the (min, max) pause for a 429 answered at wall time t."""
        p, sim = self.p, self.sim
        t_start = time.time()
        mark = p.mark()
        sim.fault(endpoint="*", path=TASKS_PATHS, key=A, status=429,
                  retry_after=retry_after, count=2)
        e = p.wait_log(since=mark, proc="poller", msg=FAILED["tasks"],
                       resource_class=A)
        limited = p.mark()
        self.assertEqual(e["status"], 429, e)
        self.assertEqual(e["kind"], "rate_limited", e)
        p.wait_log(since=mark, proc="actuator", msg="holding replicas",
                   resource_class=A, poll_error="rate_limited")
        # Scaling resumes after the pause (a cycle already in flight when
        # the fault was set may have logged a good poll before the 429).
        self.wait_healthy_poll(A, limited)
        t429 = self.fault_time(t_start, A, 429)
        min_pause, max_pause = pause_bounds(t429)
        after = [t for t in self.class_requests(A, t_start) if t > t429]
        self.assertTrue(after, "A was never polled again")
        pause = after[0] - t429
        self.assertGreaterEqual(pause, min_pause,
                                "A polled %.2fs after a 429 asking for %r"
                                % (pause, retry_after))
        self.assertLessEqual(pause, max_pause + harness.scaled(5),
                             "A left alone for %.2fs" % pause)
        # B kept being polled all along.
        b = self.class_requests(B, t429, t429 + pause)
        self.assertGreaterEqual(len(b), 2 * int(pause / POLL * 0.5),
                                "B polled %d times in %.1fs" % (len(b),
                                                                pause))
        self.assertEqual(self.p.lines(since=mark, proc="poller",
                                      msg=re.compile("^failed"),
                                      resource_class=B), [])
        self.assertEqual(self.decisions(A, since=mark), [])
        return e, t429

    def test_rate_limit_retry_after_seconds(self):
        e, _ = self.rate_limit("3", lambda t: (3.0 - 0.05, 3.0))
        self.assertEqual(e["retry_in_ms"], 3000, e)

    def test_rate_limit_retry_after_http_date(self):
        # An HTTP date has whole seconds: the pause may be up to a second
        # shorter or longer than the date says.
        when = int(time.time()) + 8
        date = email.utils.formatdate(when, usegmt=True)
        e, t429 = self.rate_limit(date, lambda t: (when - t - 1.0,
                                                   when - t + 1.0))
        self.assertGreaterEqual(e["retry_in_ms"], (when - t429 - 1.5) * 1000,
                                e)
        self.assertLessEqual(e["retry_in_ms"], (when - t429 + 1.5) * 1000, e)

    def test_rejected_token_is_one_clear_error(self):
        """401 for A is cured after one more attempt (the token was granted
        access), 401 for B persists: each says so once, not every cycle;
        /ready is 503 with a reason; polling of a rejected class goes on,
        slowly."""
        p, sim = self.p, self.sim
        t_start = time.time()
        mark = p.mark()
        sim.fault(endpoint="*", path=TASKS_PATHS, key=A, status=401,
                  count=2)
        sim.fault(endpoint="*", path=TASKS_PATHS, key=B, status=401,
                  count=4)
        for cls in (A, B):
            p.wait_log(since=mark, proc="poller", msg=re.compile(
                r"^CircleCI rejected the API token for %s \(HTTP 401\)" %
                re.escape(cls)))
        # Not ready, and /ready says why.
        p.wait_status("/ready", 503, timeout=20,
                      where=lambda b: "token rejected" in b)
        status, body = p.ready()
        self.assertEqual(status, 503, body)
        self.assertTrue(any(r.startswith("poller:") for r in
                            body["reasons"]), body)
        classes = body["children"]["poller"]["detail"]["classes"]
        self.assertEqual(classes[A]["status"], "token rejected", body)
        self.assertIn("401", classes[A]["last_error"], body)
        self.assertEqual(harness.Metrics(p.get("/metrics")[1]).get(
            "runner_provisioner_ready"), 0)

        # A recovers on its next attempt, ~30 s later; B fails again.
        self.wait_healthy_poll(A, mark, unclaimed_tasks=QUEUED_A)
        p.wait_log(since=mark, proc="poller",
                   msg="CircleCI polling recovered for %s" % A)

        def b_retried():
            tb = [r["t"] for r in sim.requests(since=t_start,
                                               resource_class=B)
                  if r["status"] == 401]
            return len(tb) >= 4 and tb
        tb = p.wait(b_retried, 30, "B's second rejected attempt")
        tb = sorted(tb)
        # Slow: the second attempt came long after the first...
        gap = tb[2] - tb[1]
        self.assertGreaterEqual(gap, 25, "B retried after %.1fs" % gap)
        self.assertLessEqual(gap, 30 + harness.scaled(10))
        # ...and nothing for B in between.
        between = self.class_requests(B, tb[1] + 0.5, tb[2] - 0.5)
        self.assertEqual(between, [], "B polled while its token was "
                         "rejected")
        # Let the poller digest B's second answer.
        p.wait(lambda: p.ready()[1]["children"]["poller"]["detail"]
               ["classes"][B].get("retry_in_ms", 0) > 20000, 10,
               "B's second failure")
        for cls in (A, B):
            clear = p.lines(proc="poller", msg=re.compile(
                "^CircleCI rejected the API token for %s " % re.escape(cls)))
            self.assertEqual(len(clear), 1, clear)
            self.assertEqual(clear[0]["level"], "error")
            for kind in ("tasks", "running"):
                fails = p.lines(proc="poller", msg=FAILED[kind],
                                resource_class=cls)
                self.assertEqual(len(fails), 1, fails)
                self.assertEqual(fails[0]["status"], 401, fails)
                self.assertEqual(fails[0]["kind"], "auth", fails)
                self.assertEqual(fails[0]["retry_in_ms"], 30000, fails)
        # The classes' polls are spread over the interval: A's recovery
        # reaches /ready with the survey after its poll.
        p.wait(lambda: p.ready()[1]["children"]["poller"]["detail"]
               ["classes"][A]["status"] == "ok", 10, "A ok in /ready")
        status, body = p.ready()
        self.assertEqual(status, 503, body)
        self.assertEqual(body["children"]["poller"]["detail"]["classes"][B]
                         ["status"], "token rejected", body)
        self.assertEqual(body["children"]["poller"]["detail"]["classes"][A]
                         ["status"], "ok", body)
        # Demand was never invented: B held at 3, A at QUEUED_A.
        self.assertEqual(self.decisions(A, since=mark), [])
        self.assertEqual(self.decisions(B, since=mark), [])

    def test_bad_answers_are_failures_not_zero(self):
        p, sim = self.p, self.sim
        cases = [
            # (fault, kind, text in the error)
            (dict(body={"unclaimed_task_count": "5"}), "parse",
             "not an integer"),
            (dict(body={"unclaimed_task_count": 5.0}), "parse",
             "not an integer"),
            (dict(body={"unclaimed_task_count": -1}), "parse",
             "out of range"),
            (dict(body={"unclaimed_task_count": None}), "parse",
             "not an integer"),
            (dict(body={}), "parse", "missing"),
            (dict(body=[QUEUED_A]), "parse", "object"),
            (dict(malformed=True), "parse", "malformed JSON"),
            (dict(body="<html>maintenance</html>",
                  content_type="text/html"), "parse", "malformed JSON"),
            (dict(oversize=100000), "parse", "larger than"),
            (dict(truncate=True), "transport", ""),
            (dict(drop=True), "transport", ""),
        ]
        for spec, kind, text in cases:
            with self.subTest(fault=spec):
                # Every answer fails until the actuator has held: a single
                # failure followed at once by a good answer may reach a
                # busy actuator in one batch, where the good one wins (and
                # curl retries a reused connection that closes before
                # answering by itself).
                mark = p.mark()
                sim.fault(endpoint="tasks", key=A, count=-1, **spec)
                e = p.wait_log(since=mark, proc="poller",
                               msg=FAILED["tasks"], resource_class=A)
                self.assertEqual(e["kind"], kind, e)
                self.assertIn(text, e["error"], e)
                self.assertEqual(e["level"], "error", e)
                if kind == "parse":
                    self.assertEqual(e["status"], 200, e)
                else:
                    self.assertNotIn("status", e)
                p.wait_log(since=mark, proc="actuator",
                           msg="holding replicas", resource_class=A,
                           poll_error=kind)
                cleared = p.mark()
                sim.clear_faults()
                self.wait_healthy_poll(A, cleared, unclaimed_tasks=QUEUED_A)
                self.assertEqual(self.decisions(A, since=mark), [])
        self.assertEqual(p.lines(proc="poller", msg=re.compile("^failed"),
                                 resource_class=B), [])
        self.assertEqual(len(self.decisions(A)), 1)

    def only_request_out(self, since, window):
        """The one delayed request for A: no other request for A was made
        in the window seconds after it, apart from its cycle's partner on
        the running endpoint.  Returns its journal time."""
        reqs = self.sim.requests(since=since, resource_class=A)
        slow = [r for r in reqs if r["endpoint"] == "tasks" and
                r.get("fault") is not None]
        self.assertEqual(len(slow), 1, slow)
        t_slow = slow[0]["t"]
        near = sorted((r for r in reqs if r is not slow[0] and
                       r["endpoint"] == "running" and
                       abs(r["t"] - t_slow) < POLL),
                      key=lambda r: abs(r["t"] - t_slow))
        partner = near[0] if near else None
        during = [r for r in reqs if r is not slow[0] and
                  r is not partner and
                  r["endpoint"] in ("tasks", "running") and
                  t_slow < r["t"] < t_slow + window]
        self.assertEqual(during, [], "A polled again while its request "
                         "was out")
        return t_slow

    def test_slow_answers_do_not_pile_up(self):
        p, sim = self.p, self.sim
        # 3 s: six poll intervals.  The class is skipped while its request
        # is out; the answer, late, is still used.
        t_start = time.time()
        mark = p.mark()
        sim.fault(endpoint="tasks", key=A, delay_ms=3000, count=1)
        p.wait_log(since=mark, proc="actuator", msg="holding replicas",
                   resource_class=A, reason="demand is stale")
        self.wait_healthy_poll(A, mark)
        t_slow = self.only_request_out(t_start, 2.9)
        b = self.class_requests(B, t_slow, t_slow + 3)
        self.assertGreaterEqual(len(b), 2 * 3, "B polled %d times" % len(b))
        self.assertEqual(self.decisions(A, since=mark), [])

        # Beyond the poller's 10 s timeout: a transport failure, still one
        # request at a time.
        t_start = time.time()
        mark = p.mark()
        sim.fault(endpoint="tasks", key=A, delay_ms=12000, count=1)
        e = p.wait_log(since=mark, proc="poller", msg=FAILED["tasks"],
                       resource_class=A, timeout=40)
        self.assertEqual(e["kind"], "transport", e)
        self.assertRegex(e["error"], "(?i)timed? ?out")
        self.only_request_out(t_start, 9.5)
        self.wait_healthy_poll(A, mark)
        self.assertEqual(self.decisions(A, since=mark), [])
        self.assertEqual(p.lines(proc="poller", msg=re.compile("^failed"),
                                 resource_class=B), [])


if __name__ == "__main__":
    harness.main()
