#!/usr/bin/python3
"""End-to-end: Events about a flapping class.

A class whose demand comes and goes (one short job at a time, minReplicas
0) is scaled up and down and has VMs reclaimed over and over.  An
operator running `kubectl describe` on its pool expects one Event per
kind of thing that happened, counting its occurrences (events.k8s.io
series, as client-go's recorder makes them), and the API server not
written to once per flap.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import KubeTestCase, pool_name, actuator_constant  # noqa: E402

CLS = "e2e-org/flapping"
POOL = pool_name(CLS)
FLAPS = 3
FLUSH = actuator_constant("EVENT_SERIES_FLUSH_MS") / 1000.0


class KubeEventsTest(KubeTestCase):

    def test_flapping_class_makes_one_series_per_reason(self):
        circle, kube, p = self.start_stack(
            # idleTimeout: a VM the pool made before the scale to 0
            # (replacing a reclaimed one) leaves by itself.
            {CLS: {"minReplicas": 0, "maxReplicas": 2, "idleTimeout": "1s"}},
            task_duration_ms=300)
        p.wait_ready()
        start = time.time()
        for i in range(FLAPS):
            since = time.time()
            circle.queue(CLS, 1)
            self.wait_pool(p, kube, POOL, 1)
            self.wait_pool(p, kube, POOL, 0, vms=0)
            p.wait(lambda: len(kube.scale_requests(since, POOL)) >= 2, 10,
                   "flap %d's scale writes" % i)
        ups = [r for r in kube.scale_requests(pool=POOL)
               if r["body"]["spec"]["replicas"] > 0]
        downs = [r for r in kube.scale_requests(pool=POOL)
                 if r["body"]["spec"]["replicas"] == 0]
        self.assertGreaterEqual(len(ups), FLAPS)
        self.assertGreaterEqual(len(downs), FLAPS)
        reclaims = [r for r in kube.writes()
                    if r["method"] == "DELETE" and
                    r.get("endpoint") == "virtualmachines" and
                    r["status"] == 200]
        self.assertGreaterEqual(len(reclaims), FLAPS)

        # Let the last occurrences' writes (the second of a series goes
        # at once) come in.
        def settled():
            evs = {e["reason"]: e for e in kube.events(POOL)}
            want = ("ScaledUp", "ScaledDown", "ReclaimedVM")
            if all(r in evs and evs[r].get("series") for r in want):
                return evs
            return None
        evs = p.wait(settled, 20, "the three series")
        elapsed = time.time() - start
        pool_uid = kube.get("pools/" + POOL)["metadata"]["uid"]
        # One Event per reason, never one per flap.
        reasons = [e["reason"] for e in kube.events(POOL)]
        self.assertEqual(sorted(reasons), sorted(set(reasons)), reasons)
        # (A VM the pool deletes on the scale to 0 may also need its
        # finalizer released: ReleasedFinalizer.)
        self.assertLessEqual({"ScaledUp", "ScaledDown", "ReclaimedVM"},
                             set(reasons))
        self.assertLessEqual(set(reasons), {
            "ScaledUp", "ScaledDown", "ReclaimedVM", "ReleasedFinalizer"})
        occurred = {"ScaledUp": len(ups), "ScaledDown": len(downs),
                    "ReclaimedVM": len(reclaims)}
        for reason, e in evs.items():
            if reason not in occurred:
                continue
            self.assertEqual(e["type"], "Normal")
            self.assertEqual(e["reportingController"], "runner-provisioner")
            self.assertEqual(e["regarding"]["kind"], "VirtualMachinePool")
            self.assertEqual(e["regarding"]["name"], POOL)
            self.assertEqual(e["regarding"]["uid"], pool_uid)
            # The count the API server has: at least the second
            # occurrence's, never more than happened.
            self.assertGreaterEqual(e["series"]["count"], 2, e)
            self.assertLessEqual(e["series"]["count"], occurred[reason], e)
        # Writes: a create and the series' start, then at most one count
        # update per flush period.
        per_reason = {}
        by_name = {e["name"]: e["reason"] for e in kube.events(POOL)}
        for r in kube.event_writes():
            self.assertTrue(200 <= r["status"] < 300, r)
            reason = by_name[r["path"].rsplit("/", 1)[1]] if \
                r["method"] == "PATCH" else r["body"]["reason"]
            per_reason[reason] = per_reason.get(reason, 0) + 1
        allowed = 2 + int(elapsed // FLUSH)
        for reason, n in per_reason.items():
            self.assertLessEqual(n, allowed, (reason, n, occurred))
        self.assertLess(sum(per_reason.values()), sum(occurred.values()))


if __name__ == "__main__":
    harness.main()
