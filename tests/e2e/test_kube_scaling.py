#!/usr/bin/python3
"""End-to-end: the daemon scaling real (simulated) KubeVirt pools.

The whole daemon runs against the CircleCI simulator and the Kubernetes
simulator (tests/sim/kube_sim.py), whose VMs boot, claim the queued tasks
with their runner token, run them and power off.  An operator queues work
and watches: the pool's spec.replicas follows clamp(demand, min, max) and
the "scaled <pool> from A to B" lines say so; the VMs run every task; when
the queue drains, finished (Stopped) VMs are reclaimed with a uid
precondition and the pool shrinks back to minReplicas, and no VM that was
still running is ever deleted; with unchanged demand the actuator writes
nothing; every object it sent passed the simulator's CRD-schema and
webhook checks; and two classes (one with a hashed pool name) get their own
pool and Secret and scale independently.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import clamp  # noqa: E402
from kubesim import (KubeTestCase, pool_name, LABEL_MANAGED_BY,  # noqa: E402
                     LABEL_CLASS, ANNOT_CLASS, ANNOT_HASH, RESYNC_MS)

SCALED_RE = re.compile(r"^scaled (\S+) from (\d+) to (\d+)$")


class KubeScalingTest(KubeTestCase):

    def scaled_lines(self, p, pool, since=0):
        return [e for e in p.lines(since=since, proc="actuator")
                if SCALED_RE.match(e["msg"]) and e.get("pool") == pool]

    def assert_scale_chain(self, p, kube, pool, start):
        """The "scaled" lines of a pool form a chain from start, and each
        is one successful PATCH of /scale to that count."""
        lines = self.scaled_lines(p, pool)
        prev = start
        for e in lines:
            m = SCALED_RE.match(e["msg"])
            self.assertEqual(int(m.group(2)), prev, e)
            self.assertEqual((e["from"], e["to"]), (prev, int(m.group(3))), e)
            self.assertNotEqual(e["to"], prev, e)
            prev = e["to"]
        patches = [r for r in kube.scale_requests(pool=pool)
                   if r["status"] == 200]
        self.assertEqual([r["body"]["spec"]["replicas"] for r in patches],
                         [e["to"] for e in lines])
        return lines

    def tasks(self, circle, cls):
        return circle.client.call("GET", "/_sim/tasks", query={
            "resource_class": cls})["tasks"]

    def test_queue_scales_pool_vms_run_tasks_and_drain_safely(self):
        cls, lo, hi, n = "e2e-org/scale", 1, 4, 6
        pool = pool_name(cls)
        self.assertEqual(pool, "e2e-org--scale")
        circle, kube, p = self.start_stack(
            {cls: {"minReplicas": lo, "maxReplicas": hi}},
            task_duration_ms=2000)
        p.wait_log(proc="actuator", msg="created secret %s-userdata "
                   "(cloud-init for %s)" % (pool, cls))
        p.wait_log(proc="actuator", msg="created pool %s for %s with %d "
                   "replicas" % (pool, cls, lo))
        self.wait_pool(p, kube, pool, lo, vms=lo, running=lo)

        # Queue more work than maxReplicas allows: the pool goes to max in
        # one step (demand never drops below max before VMs claim).
        circle.queue(cls, n)
        e = p.wait_log(proc="actuator", msg="scaled %s from %d to %d"
                       % (pool, lo, clamp(n, lo, hi)))
        self.assertEqual((e["resource_class"], e["from"], e["to"]),
                         (cls, lo, hi), e)
        self.wait_pool(p, kube, pool, hi)

        # Every task runs on one of the pool's VMs, and finishes.
        def all_done():
            ts = self.tasks(circle, cls)
            return ts if len(ts) == n and all(
                t["state"] == "done" for t in ts) else None
        done = p.wait(all_done, 120, "all %d tasks to finish" % n)
        for t in done:
            self.assertTrue(t["runner"].startswith(pool + "-"), t)
        self.assertEqual(len({t["runner"] for t in done}), n,
                         "a VM ran more than one task (single-task mode)")

        # The queue is empty: the pool shrinks back to minReplicas, the
        # finished VMs are gone and one fresh idle VM is left.
        st = self.wait_pool(p, kube, pool, lo, vms=lo, running=lo,
                            timeout=90)
        self.assertEqual([v["printableStatus"] for v in st["vms"]],
                         ["Running"], st["vms"])
        self.assertEqual(st["vms"][0]["tasks_done"], [])
        pl = kube.pools()[pool]
        self.assertEqual(pl["status"]["replicas"], lo, pl)

        # Nothing changes from now on: no Kubernetes writes at all over
        # several resync periods while demand stays 0.
        t0, mark = time.time(), p.mark()
        self.wait_resyncs(p, kube, t0, n=4, timeout=10 * RESYNC_MS / 1000)
        self.assertEqual(kube.writes(t0, events=True), [],
                         "writes with unchanged demand")
        self.assertEqual(self.scaled_lines(p, pool, since=mark), [])
        self.assertGreaterEqual(len(p.lines(
            since=mark, proc="poller", msg="polled task counts",
            resource_class=cls, unclaimed_tasks=0, running_tasks=0)), 4)

        # Replicas stayed within [min, max]; the log and the PATCHes agree.
        lines = self.assert_scale_chain(p, kube, pool, lo)
        self.assertEqual(lines[-1]["to"], lo)
        for r in kube.scale_requests(pool=pool):
            self.assertTrue(lo <= r["body"]["spec"]["replicas"] <= hi, r)
        for _, reps in kube.recorder.pool_replicas[pool]:
            self.assertTrue(lo <= reps <= hi,
                            kube.recorder.pool_replicas[pool])

        # Every VM that ran a task was reclaimed once it had stopped; no
        # running VM was ever deleted.
        self.assert_journal_sane(kube)
        deletes = self.assert_vm_deletes_safe(kube, circle)
        ok = [r for r in deletes if r["status"] == 200]
        deleted_runners = {"%s-%s" % (r["key"],
                                      r["body"]["preconditions"]["uid"][:8])
                           for r in ok}
        self.assertEqual({t["runner"] for t in done} - deleted_runners,
                         set(), "finished VMs not reclaimed")
        self.assertEqual(len(p.lines(proc="actuator", msg=re.compile(
            r"^reclaimed stopped VM %s-\d+ of pool %s$" % (pool, pool)))),
            len(ok))
        self.assert_no_actuator_restart(p)

    def test_two_classes_own_pools_and_secrets_scale_independently(self):
        a, b = "e2e-org/runner-a", "dev-team/custom:arm64"
        pa, pb = pool_name(a), pool_name(b)
        self.assertEqual(pa, "e2e-org--runner-a")
        self.assertRegex(pb, r"^dev-team-custom-arm64-[0-9a-f]{10}$")
        circle, kube, p = self.start_stack(
            {a: {"minReplicas": 1, "maxReplicas": 3},
             b: {"minReplicas": 0, "maxReplicas": 2}},
            task_duration_ms=2500)
        for cls, pool, n in ((a, pa, 1), (b, pb, 0)):
            p.wait_log(proc="actuator", msg="created pool %s for %s with %d"
                       " replicas" % (pool, cls, n))
            p.wait_log(proc="actuator", msg="created secret %s-userdata "
                       "(cloud-init for %s)" % (pool, cls))
        self.wait_pool(p, kube, pa, 1, vms=1, running=1)
        self.wait_pool(p, kube, pb, 0, vms=0)

        # One pool and one Secret per class, each pool naming its own
        # Secret, labelled and annotated with its class.
        st = kube.state()
        self.assertEqual(sorted(x["name"] for x in st["pools"]),
                         sorted([pa, pb]))
        self.assertEqual(sorted(x["name"] for x in st["secrets"]),
                         sorted([pa + "-userdata", pb + "-userdata"]))
        for cls, pool in ((a, pa), (b, pb)):
            obj = kube.get("pools/" + pool)
            for meta in (obj["metadata"],
                         obj["spec"]["virtualMachineTemplate"]["metadata"]):
                self.assertEqual(meta["labels"][LABEL_MANAGED_BY],
                                 "runner-provisioner")
                self.assertEqual(meta["labels"][LABEL_CLASS], pool)
                self.assertEqual(meta["annotations"][ANNOT_CLASS], cls)
            self.assertRegex(obj["metadata"]["annotations"][ANNOT_HASH],
                             r"^[0-9a-f]{8,64}$")
            vols = obj["spec"]["virtualMachineTemplate"]["spec"][
                "template"]["spec"]["volumes"]
            refs = [v["cloudInitNoCloud"]["secretRef"]["name"]
                    for v in vols if "cloudInitNoCloud" in v]
            self.assertEqual(refs, [pool + "-userdata"], vols)
            sec = kube.get("secrets/%s-userdata" % pool)
            self.assertEqual(sec["metadata"]["labels"][LABEL_CLASS], pool)
            self.assertEqual(sec["metadata"]["annotations"][ANNOT_CLASS], cls)
            self.assertEqual(list(sec["data"]), ["userdata"])

        # Work for a only: a's pool grows, b's is not written at all.
        t1 = time.time()
        circle.queue(a, 3)
        p.wait_log(proc="actuator", msg="scaled %s from 1 to 3" % pa,
                   resource_class=a)
        self.wait_pool(p, kube, pa, 3)

        def done(cls, n):
            ts = self.tasks(circle, cls)
            return ts if len(ts) == n and all(
                t["state"] == "done" for t in ts) else None
        ta = p.wait(lambda: done(a, 3), 60, "a's tasks to finish")
        self.assertEqual([r for r in kube.writes(t1)
                          if pb in r["path"]], [], "b was written")
        self.assertEqual(kube.pools()[pb]["replicas"], 0)

        # Then work for b only: b's pool grows and its VMs (not a's) run
        # b's tasks; a only shrinks back as its own work is done.
        t2 = time.time()
        circle.queue(b, 2)
        p.wait_log(proc="actuator", msg="scaled %s from 0 to 2" % pb,
                   resource_class=b)
        tb = p.wait(lambda: done(b, 2), 60, "b's tasks to finish")
        for t in ta:
            self.assertTrue(t["runner"].startswith(pa + "-"), t)
        for t in tb:
            self.assertTrue(t["runner"].startswith(pb + "-"), t)
        for r in kube.scale_requests(t2, pool=pa):
            self.assertLessEqual(r["body"]["spec"]["replicas"], 3, r)
        self.wait_pool(p, kube, pa, 1, timeout=60)
        self.wait_pool(p, kube, pb, 0, timeout=60)
        for cls, pool, lo, hi in ((a, pa, 1, 3), (b, pb, 0, 2)):
            for e in self.scaled_lines(p, pool):
                self.assertEqual(e["resource_class"], cls, e)
                self.assertTrue(lo <= e["to"] <= hi, e)
            self.assert_scale_chain(p, kube, pool, lo)
        # Exactly one create of each object, never a second.
        creates = [(r["endpoint"], r["body"]["metadata"]["name"])
                   for r in kube.writes() if r["method"] == "POST"]
        self.assertEqual(sorted(creates), sorted([
            ("secrets", pa + "-userdata"), ("secrets", pb + "-userdata"),
            ("virtualmachinepools", pa), ("virtualmachinepools", pb)]))
        self.assert_journal_sane(kube)
        self.assert_vm_deletes_safe(kube, circle)
        self.assert_no_actuator_restart(p)


if __name__ == "__main__":
    harness.main()
