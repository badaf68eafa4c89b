#!/usr/bin/python3
"""End-to-end: the pool survives a CircleCI outage and a killed actuator.

While the CircleCI API fails (500s, then dropped connections) the real
demand changes, and the pool must not follow a guess: replicas are held,
"holding replicas" says why, and no scale request is sent; once CircleCI
answers again scaling resumes.  The same when the poller hangs and
demand goes stale.  An actuator killed with SIGKILL in the
middle of creating the pool, or of a scale request, is restarted by the
supervisor and converges on the right replica count, with exactly one pool
and one Secret per class and no second create that succeeded.
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import KubeTestCase, pool_name, actuator_class  # noqa: E402

CLS = "e2e-org/recovery"
POOL = pool_name(CLS)
SCALE = "virtualmachinepools/scale"


class KubeRecoveryTest(KubeTestCase):

    def stack(self, start=True):
        return self.start_stack({CLS: {"minReplicas": 1, "maxReplicas": 6}},
                                start=start)

    def kill9_actuator(self, p):
        pid = p.child_pid("actuator")
        self.assertTrue(pid and harness.proc_alive(pid), p.log.tail())
        os.kill(pid, signal.SIGKILL)
        return pid

    def stack_scaled_to(self, n, **want):
        """A running stack whose pool went from 1 to n replicas and VMs."""
        circle, kube, p = self.stack()
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (POOL, CLS))
        circle.set_running(CLS, n)
        p.wait_log(proc="actuator", msg="scaled %s from 1 to %d" % (POOL, n))
        self.wait_pool(p, kube, POOL, n, vms=n, **want)
        return circle, kube, p

    def test_circleci_outage_holds_replicas_then_scaling_resumes(self):
        circle, kube, p = self.stack_scaled_to(3, running=3)

        # CircleCI fails: four 500s, then every connection dropped.  The
        # real demand meanwhile falls to 0; the pool must not follow.
        t0, mark = time.time(), p.mark()
        circle.fault(endpoint="*", status=500, count=4)
        circle.fault(endpoint="*", drop=True, count=-1)
        circle.set_running(CLS, 0)
        e = p.wait_log(since=mark, proc="actuator", msg="holding replicas")
        self.assertEqual((e["level"], e["resource_class"], e["pool"],
                          e["reason"], e["replicas"]),
                         ("warn", CLS, POOL, "last observation failed", 3), e)
        self.assertEqual(e["poll_error"], "http", e)

        def dropped(n):
            got = [r for r in circle.requests(t0)
                   if r.get("status") == "dropped"]
            return len(got) >= n
        p.wait(lambda: dropped(4), 40, "four dropped CircleCI requests")
        p.wait_log(since=mark, proc="poller", msg=lambda m: m.startswith(
            "failed to get"), where=lambda x: "500" in json.dumps(x))
        status, body = p.ready()
        cls = actuator_class(body, CLS)
        self.assertEqual(cls["holding"], "last observation failed", body)
        self.assertEqual(cls["demand"]["ok"], False, body)
        self.assertEqual(cls["target_replicas"], 3, body)
        # No scale request during the whole outage, no VM deleted, the
        # pool as it was.
        self.assertEqual(kube.scale_requests(t0), [])
        self.assertEqual([r for r in kube.writes(t0)
                          if r["method"] == "DELETE"], [])
        self.assertEqual(p.lines(since=mark, proc="actuator",
                                 msg=lambda m: m.startswith("scaled")), [])
        self.wait_pool(p, kube, POOL, 3, vms=3, running=3)

        # CircleCI is back: the hold ends and the pool follows demand.
        mark = p.mark()
        circle.clear_faults()
        p.wait_log(since=mark, proc="actuator", timeout=40,
                   msg="demand for %s is fresh again; no longer holding"
                   % CLS)
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 3 to 1" % POOL)
        self.wait_pool(p, kube, POOL, 1)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_actuator_killed_while_creating_the_pool(self):
        circle, kube, p = self.stack(start=False)
        kube.fault(method="POST", endpoint="virtualmachinepools",
                   delay_ms=4000, count=1)
        p.start()

        def create_in_flight():
            return [r for r in kube.writes() if r["method"] == "POST" and
                    r["endpoint"] == "virtualmachinepools" and
                    r["status"] is None]
        p.wait(create_in_flight, 30, "the pool create in flight")
        old = self.kill9_actuator(p)
        new = p.wait_child("actuator", other_than=old)
        # The new actuator finds no pool (the first create is still held
        # up), creates it, and the abandoned create ends in a conflict.
        p.wait(lambda: not create_in_flight(), 20,
               "the delayed create to be answered")
        self.wait_pool(p, kube, POOL, 1, vms=1)
        body = p.wait_ready(timeout=30)
        self.assertEqual(body["children"]["actuator"]["pid"], new, body)
        creates = [(r["endpoint"], r["status"]) for r in kube.writes()
                   if r["method"] == "POST"]
        for ep in ("secrets", "virtualmachinepools"):
            self.assertEqual([s for e, s in creates if e == ep].count(201),
                             1, creates)
            self.assertTrue(all(s in (201, 409) for e, s in creates
                                if e == ep), creates)
        st = kube.state()
        self.assertEqual([x["name"] for x in st["pools"]], [POOL])
        self.assertEqual([x["name"] for x in st["secrets"]],
                         [POOL + "-userdata"])
        self.assert_journal_sane(kube)

    def test_actuator_killed_mid_scale_converges(self):
        circle, kube, p = self.stack()
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (POOL, CLS))
        self.wait_pool(p, kube, POOL, 1, vms=1)
        t0 = time.time()
        kube.fault(endpoint=SCALE, delay_ms=3000, count=1)
        circle.set_running(CLS, 3)

        def patch_in_flight():
            return [r for r in kube.scale_requests(t0) if r["status"] is None]
        p.wait(patch_in_flight, 30, "a scale PATCH in flight")
        old = self.kill9_actuator(p)
        # Demand moves on while the actuator is down.
        circle.set_running(CLS, 5)
        new = p.wait_child("actuator", other_than=old)
        p.wait_log(proc="actuator", pid=new, msg=lambda m: m.startswith(
            "scaled %s from " % POOL) and m.endswith(" to 5"), timeout=30)
        # The abandoned PATCH (to 3) lands late; the new actuator must
        # notice and put the pool back to 5.
        p.wait(lambda: not patch_in_flight(), 20,
               "the abandoned PATCH to be answered")
        st = self.wait_pool(p, kube, POOL, 5, vms=5, timeout=40)
        self.wait_resyncs(p, kube, time.time(), n=2)
        self.assertEqual(kube.pools()[POOL]["replicas"], 5)
        self.assertEqual([x["name"] for x in st["pools"]], [POOL])
        self.assertEqual([x["name"] for x in st["secrets"]],
                         [POOL + "-userdata"])
        self.assertEqual([r["status"] for r in kube.writes()
                          if r["method"] == "POST"], [201, 201])
        self.assertEqual(p.child_pids("actuator"), [old, new])
        body = p.wait_ready(timeout=30)
        self.assertEqual(body["children"]["actuator"]["restarts"], 1, body)
        self.assert_journal_sane(kube)

    def test_stalled_poller_holds_replicas(self):
        circle, kube, p = self.stack_scaled_to(2)
        # The poller hangs (well within the supervisor's patience): no
        # demand arrives, and the actuator holds rather than guess.
        poller = p.child_pid("poller")
        t0, mark = time.time(), p.mark()
        os.kill(poller, signal.SIGSTOP)
        self.addCleanup(harness.signal_pid, poller, signal.SIGCONT)
        try:
            circle.set_running(CLS, 0)
            e = p.wait_log(since=mark, proc="actuator", timeout=8,
                           msg="holding replicas")
            self.assertEqual((e["reason"], e["replicas"]),
                             ("demand is stale", 2), e)
            self.assertGreaterEqual(e["demand_age_ms"], 3 * 500, e)
            p.wait(lambda: actuator_class(p.ready()[1], CLS).get(
                "holding") == "demand is stale", 5, "/ready to show the hold")
            self.wait_resyncs(p, kube, time.time(), n=1, timeout=5)
            self.assertEqual(kube.scale_requests(t0), [])
            self.assertEqual(kube.pools()[POOL]["replicas"], 2)
        finally:
            os.kill(poller, signal.SIGCONT)
        p.wait_log(since=mark, proc="actuator", timeout=20,
                   msg="demand for %s is fresh again; no longer holding"
                   % CLS)
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 2 to 1" % POOL)
        self.assertEqual(p.child_pids("poller"), [poller])
        self.assert_no_actuator_restart(p)


if __name__ == "__main__":
    harness.main()
