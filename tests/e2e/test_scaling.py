#!/usr/bin/python3
"""End-to-end: the scaling loop as an operator watches it.

The daemon (supervisor, poller, actuator in --dry-run) polls the CircleCI
simulator for two resource classes at once.  As the simulator's queue and
running counts change, the poller's "polled task counts" lines (span
"worker loop scaler") show the new numbers and desired_vms =
clamp(unclaimed + running, minReplicas, maxReplicas) for every class, every
cycle; the actuator's "would scale <pool> from A to B" lines follow, once
per change; GET /ready turns 200 with per-class detail and /metrics carries
per-class gauges that the real promtool accepts.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import clamp  # noqa: E402

ALPHA = "e2e-org/alpha"
BETA = "e2e-org/beta_2"
LIMITS = {ALPHA: (1, 4), BETA: (2, 6)}
SPAN = "worker loop scaler"

# (alpha unclaimed, alpha running, beta unclaimed, beta running): clamping
# to minReplicas and to maxReplicas, in both directions.
PHASES = [
    (0, 0, 0, 0),    # idle: both at minReplicas
    (2, 1, 3, 0),    # inside the bounds
    (7, 2, 10, 5),   # clamped to maxReplicas
    (9, 0, 4, 4),    # counts move, desired stays (4, 6): no decision
    (0, 1, 1, 0),    # back down, clamped to minReplicas
]


class ScalingTest(harness.E2ETestCase):

    def setUp(self):
        super().setUp()
        self.sim = self.start_circleci([ALPHA, BETA])
        self.write_config({
            ALPHA: {"minReplicas": 1, "maxReplicas": 4},
            BETA: {"minReplicas": 2, "maxReplicas": 6},
        })

    def scaler_line(self, p, cls, since, unclaimed, running):
        return p.wait_log(
            since=since, proc="poller", msg="polled task counts",
            resource_class=cls, unclaimed_tasks=unclaimed,
            running_tasks=running, timeout=30)

    def test_scaler_lines_follow_the_queue_and_actuator_follows(self):
        p = self.start_provisioner(poll_interval="300ms")
        desired_before = {}
        for phase in PHASES:
            counts = {ALPHA: phase[0:2], BETA: phase[2:4]}
            mark = p.mark()
            for cls, (u, r) in counts.items():
                self.sim.set_counts(cls, u, r)
            for cls, (u, r) in counts.items():
                lo, hi = LIMITS[cls]
                want = clamp(u + r, lo, hi)
                line = self.scaler_line(p, cls, mark, u, r)
                self.assertEqual(line["desired_vms"], want, line)
                self.assertEqual(line["span"], SPAN, line)
                self.assertEqual(line["loop_name"], "scaler", line)
                self.assertEqual(line["level"], "info", line)
                if desired_before.get(cls) == want:
                    continue
                # The actuator's dry-run decision for this change.  (The
                # simulator's two counts are set one after the other, so
                # the poller may have seen a state in between; the chain of
                # decisions is checked as a whole below.)
                w = p.wait_log(since=mark, proc="actuator",
                               msg=re.compile(r"^would scale "),
                               resource_class=cls, to=want, timeout=30)
                self.assertIs(w["dry_run"], True, w)
                desired_before[cls] = want
            # A few more cycles with the same counts: the scaler lines go on
            # for both classes, the actuator has nothing new to say.
            settle = p.mark()
            for cls in counts:
                p.wait_logs(3, since=settle, proc="poller",
                            msg="polled task counts", resource_class=cls)
            self.assertEqual(
                [], p.lines(since=settle, proc="actuator",
                            msg=re.compile("^would scale")),
                "decisions logged with unchanged demand")

        # Every scaler line in the whole run obeys the formula, every
        # decision changed something.
        scaler = p.lines(proc="poller", msg="polled task counts")
        for e in scaler:
            lo, hi = LIMITS[e["resource_class"]]
            self.assertEqual(e["desired_vms"], clamp(
                e["unclaimed_tasks"] + e["running_tasks"], lo, hi), e)
            self.assertEqual(e["span"], SPAN, e)
        # The decisions of each class form a chain: the first says "to N",
        # each later one "from <previous> to <new>", never the same count
        # twice in a row, and each is a desired_vms the poller logged.
        for cls in LIMITS:
            decisions = [e for e in p.lines(proc="actuator",
                                            resource_class=cls)
                         if e["msg"].startswith("would scale")]
            seen = {e["desired_vms"] for e in scaler
                    if e["resource_class"] == cls}
            self.assertTrue(decisions, cls)
            prev = None
            for d in decisions:
                pool = d["pool"]
                if prev is None:
                    self.assertEqual(d["msg"], "would scale %s to %d" % (
                        pool, d["to"]), d)
                    self.assertNotIn("from", d)
                else:
                    self.assertEqual(d["msg"], "would scale %s from %d to %d"
                                     % (pool, prev, d["to"]), d)
                    self.assertEqual(d["from"], prev, d)
                    self.assertNotEqual(d["to"], prev, d)
                self.assertIn(d["to"], seen, d)
                prev = d["to"]
        rc, took = p.stop()
        self.assertEqual(rc, 0, p.log.tail())

    def test_every_class_every_cycle(self):
        """Over a stretch of steady polling both classes get one scaler line
        per cycle: neither starves the other."""
        self.sim.set_counts(ALPHA, 3, 0)
        self.sim.set_counts(BETA, 1, 1)
        p = self.start_provisioner(poll_interval="200ms")
        p.wait_log(proc="poller", msg="polled task counts",
                   resource_class=BETA)
        p.wait_log(proc="poller", msg="polled task counts",
                   resource_class=ALPHA)
        mark, t0 = p.mark(), time.monotonic()
        p.wait_logs(20, since=mark, proc="poller", msg="polled task counts",
                    resource_class=ALPHA, timeout=60)
        elapsed = time.monotonic() - t0
        a = p.lines(since=mark, proc="poller", msg="polled task counts",
                    resource_class=ALPHA)
        b = p.lines(since=mark, proc="poller", msg="polled task counts",
                    resource_class=BETA)
        # Both classes advance together (cycles may have been cut by the
        # marks, hence the slack of 2).
        self.assertLessEqual(abs(len(a) - len(b)), 2,
                             "alpha %d lines, beta %d" % (len(a), len(b)))
        # One line per class per cycle, not more: 200 ms cycles.
        self.assertLessEqual(len(a), elapsed / 0.2 + 2,
                             "%d lines in %.2fs" % (len(a), elapsed))
        for e in a:
            self.assertEqual((e["unclaimed_tasks"], e["running_tasks"],
                              e["desired_vms"]), (3, 0, 3), e)
        for e in b:
            self.assertEqual((e["unclaimed_tasks"], e["running_tasks"],
                              e["desired_vms"]), (1, 1, 2), e)

    def test_ready_detail_and_metrics(self):
        self.sim.set_counts(ALPHA, 5, 1)   # 6 -> clamped to 4
        self.sim.set_counts(BETA, 0, 3)    # 3
        p = self.start_provisioner()
        # Not ready before the first successful poll and sync; then 200.
        body = p.wait_ready(timeout=30)
        self.assertEqual(body["status"], "ready", body)
        self.assertEqual(body["reasons"], [], body)
        poller = body["children"]["poller"]
        actuator = body["children"]["actuator"]
        for child in (poller, actuator):
            self.assertEqual(child["state"], "running", body)
            self.assertIs(child["ready"], True, body)
            self.assertIs(child["crash_looping"], False, body)
        self.assertEqual(poller["pid"], p.child_pid("poller"))
        self.assertEqual(actuator["pid"], p.child_pid("actuator"))
        classes = poller["detail"]["classes"]
        self.assertEqual(set(classes), {ALPHA, BETA}, body)
        self.assertEqual(classes[ALPHA]["status"], "ok", body)
        self.assertEqual((classes[ALPHA]["unclaimed_tasks"],
                          classes[ALPHA]["running_tasks"],
                          classes[ALPHA]["desired_vms"]), (5, 1, 4), body)
        self.assertEqual((classes[BETA]["unclaimed_tasks"],
                          classes[BETA]["running_tasks"],
                          classes[BETA]["desired_vms"]), (0, 3, 3), body)
        act = actuator["detail"]["classes"]
        self.assertIs(actuator["detail"]["dry_run"], True, body)
        self.assertEqual(act[ALPHA]["target_replicas"], 4, body)
        self.assertEqual(act[BETA]["target_replicas"], 3, body)
        self.assertIs(act[ALPHA]["synced"], True, body)
        pools = {act[ALPHA]["pool"], act[BETA]["pool"]}
        self.assertEqual(len(pools), 2, body)
        for pool in pools:
            self.assertRegex(pool, r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

        # /metrics: per-class gauges with the polled values.
        self.sim.set_counts(BETA, 2, 3)  # 5
        mark = p.mark()
        p.wait_log(since=mark, proc="poller", msg="polled task counts",
                   resource_class=BETA, unclaimed_tasks=2)
        m = p.metrics()
        pre = "runner_provisioner_"
        self.assertEqual(m.get(pre + "tasks_unclaimed",
                               resource_class=ALPHA), 5)
        self.assertEqual(m.get(pre + "tasks_running",
                               resource_class=ALPHA), 1)
        self.assertEqual(m.get(pre + "desired_vms",
                               resource_class=ALPHA), 4)
        p.wait(lambda: p.metrics().get(pre + "tasks_unclaimed",
                                       resource_class=BETA) == 2, 10,
               "the beta gauge to follow")
        m = p.metrics()
        self.assertEqual(m.get(pre + "tasks_running", resource_class=BETA), 3)
        self.assertEqual(m.get(pre + "desired_vms", resource_class=BETA), 5)
        self.assertEqual(m.get(pre + "ready"), 1)
        for child in harness.CHILDREN:
            self.assertEqual(m.get(pre + "child_up", child=child), 1)
        # Every family carries the prefix, a TYPE and a HELP.
        for name in m.types:
            self.assertTrue(name.startswith(pre), name)
            self.assertIn(name, m.helps)
        # The real promtool agrees with the exposition format.
        if not os.access(harness.PROMTOOL, os.X_OK):
            self.skipTest("promtool not installed (apt install "
                          "prometheus)")
        rc, out = harness.promtool_check(m.text)
        self.assertEqual(rc, 0, "promtool check metrics:\n%s\n%s" % (
            out, m.text))
        self.assertEqual(out.strip(), "", out)
        self.assertEqual(p.stop()[0], 0)


if __name__ == "__main__":
    harness.main()
