#!/usr/bin/python3
"""End-to-end: reclaiming VMs, KubeVirt's finalizer trap, the boot-loop
guard.

Finalizer trap (research/kubevirt.md §2.3): demand falls, the pool is
scaled below its VM count (opportunistic scale-in kills nothing), then a VM
powers off and the actuator deletes it; KubeVirt's pool controller leaves
such a VM Terminating with pool.kubevirt.io/finalizer for ever.  The
actuator must release it (a JSON patch guarded by test operations) after
its grace period, and must not touch the VMs that are still running.

Boot loop: the VMs of a class whose runner token CircleCI does not know
power off right after boot.  The operator expects one "boot loop" error,
runner_provisioner_boot_loop 1, the class not ready in /ready, and the
stopped VMs replaced slowly instead of as fast as they die; once the token
is fixed and a job runs, the guard lets go.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import log_time  # noqa: E402
from kubesim import (KubeTestCase, pool_name, POOL_FINALIZER,  # noqa: E402
                     FINALIZER_GRACE_MS, RESYNC_MS, BOOT_LOOP_STREAK,
                     BOOT_LOOP_BACKOFF_MS, JSON_PATCH, actuator_class)

PRE = "runner_provisioner_"


class KubeReclaimTest(KubeTestCase):

    def test_finalizer_trap_is_released_and_running_vms_are_kept(self):
        cls = "e2e-org/trap"
        pool = pool_name(cls)
        circle, kube, p = self.start_stack(
            {cls: {"minReplicas": 1, "maxReplicas": 4}})
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (pool, cls))
        circle.set_running(cls, 3)
        st = self.wait_pool(p, kube, pool, 3, vms=3, running=3)
        # Demand falls: replicas 1, the three VMs keep running.
        circle.set_running(cls, 0)
        p.wait_log(proc="actuator", msg="scaled %s from 3 to 1" % pool)
        self.wait_resyncs(p, kube, time.time(), n=2)
        st = self.wait_pool(p, kube, pool, 1, vms=3, running=3)
        keep = {v["uid"] for v in st["vms"]}

        # One of them powers off: deleted, and trapped by the finalizer.
        victim = "%s-1" % pool
        uid = [v["uid"] for v in st["vms"] if v["name"] == victim][0]
        keep.discard(uid)
        kube.poweroff(victim)

        def deleted():
            got = [r for r in kube.writes() if r["method"] == "DELETE" and
                   r["key"] == victim and r["status"] == 200]
            return got[0] if got else None
        d = p.wait(deleted, 20, "the stopped VM to be deleted")
        self.assertEqual(d["body"]["preconditions"]["uid"], uid, d)

        def trapped():
            v = [x for x in kube.vms(pool) if x["uid"] == uid]
            return v[0] if v and v[0]["deletionTimestamp"] else None
        v = p.wait(trapped, 10, "the VM to show its deletion")
        self.assertEqual(v["printableStatus"], "Terminating", v)
        self.assertIn(POOL_FINALIZER, v["finalizers"], v)

        e = p.wait_log(proc="actuator", timeout=FINALIZER_GRACE_MS / 1000 +
                       4 * RESYNC_MS / 1000 + 10,
                       msg="released VM %s from the pool finalizer that "
                       "kept it in deletion" % victim)
        patches = [r for r in kube.writes() if r["method"] == "PATCH" and
                   r.get("endpoint") == "virtualmachines"]
        self.assertEqual(len(patches), 1, patches)
        patch = patches[0]
        self.assertEqual((patch["key"], patch["status"],
                          patch["content_type"]),
                         (victim, 200, JSON_PATCH), patch)
        self.assert_finalizer_patch(patch)
        tests = {o["path"]: o["value"] for o in patch["body"]
                 if o["op"] == "test"}
        self.assertEqual(tests["/metadata/uid"], uid)
        # Only after the grace period (deletionTimestamp has whole
        # seconds), and not much later.
        waited = patch["t"] - d["t"]
        self.assertGreaterEqual(waited, FINALIZER_GRACE_MS / 1000 - 1.05,
                                (d["t"], patch["t"]))
        self.assertLess(waited, FINALIZER_GRACE_MS / 1000 +
                        2 * RESYNC_MS / 1000 + 3, (d["t"], patch["t"]))
        # The recorder saw it Terminating with the finalizer meanwhile.
        kube.recorder.wait_snapshots()
        self.assertGreater(kube.recorder.last_seen[uid], d["t"] + 1)

        # It is gone; the other two still run, never deleted.
        def gone():
            st = kube.state()
            return st if uid not in {v["uid"] for v in st["vms"]} else None
        st = p.wait(gone, 10, "the released VM to disappear")
        mine = [v for v in st["vms"] if v["name"].startswith(pool + "-")]
        self.assertEqual({v["uid"] for v in mine}, keep, mine)
        self.assertTrue(all(v["printableStatus"] == "Running" for v in mine),
                        mine)
        self.assertEqual(kube.pools()[pool]["replicas"], 1)
        deletes = [r for r in kube.writes() if r["method"] == "DELETE"]
        self.assertEqual([r["key"] for r in deletes], [victim])
        # The counters reach the supervisor with the next health survey.
        def counted():
            m = p.metrics()
            return [m.get(PRE + name, resource_class=cls) or 0 for name in
                    ("finalizers_removed_total", "reclaimed_vms_total")]
        p.wait(lambda: min(counted()) >= 1, 10,
               "the reclaim counters in /metrics")
        self.assertEqual(counted(), [1, 1])
        self.assert_vm_deletes_safe(kube, circle)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_boot_loop_slows_reclaim_is_visible_and_clears(self):
        cls = "e2e-org/bootloop"
        pool = pool_name(cls)
        # CircleCI knows the class under another runner token: every VM's
        # runner is refused and the guest powers off right after boot.
        circle, kube, p = self.start_stack(
            {cls: {"minReplicas": 2, "maxReplicas": 2}},
            circle_tokens={cls: "e2e-runner-token-that-circleci-knows"},
            boot_loop="5s")
        e = p.wait_log(proc="actuator", timeout=60, msg=re.compile(
            r"^boot loop: VMs power off right after they start"))
        t_loop = log_time(e)
        self.assertEqual((e["level"], e["resource_class"], e["pool"],
                          e["threshold_ms"]), ("error", cls, pool, 5000), e)
        self.assertGreaterEqual(e["failed_vms"], BOOT_LOOP_STREAK, e)
        self.assertTrue(BOOT_LOOP_BACKOFF_MS / 2 <= e["next_reclaim_in_ms"]
                        <= BOOT_LOOP_BACKOFF_MS, e)
        self.assertEqual(len(p.lines(proc="actuator", msg=re.compile(
            "^boot loop"))), 1)
        seen = kube.recorder.all().values()
        self.assertTrue([v for v in seen if "401" in (v["runner_error"] or
                                                      "")], list(seen))
        self.assertEqual([v for v in seen if v["tasks_done"] or v["task"]],
                         [])
        before = [r for r in kube.writes() if r["method"] == "DELETE"]
        self.assertGreaterEqual(len(before), BOOT_LOOP_STREAK - 1, before)

        # Visible: metric, /ready (503, the class in boot loop, not synced).
        p.wait(lambda: p.metrics().get(PRE + "boot_loop",
                                       resource_class=cls) == 1, 10,
               "runner_provisioner_boot_loop 1")

        def not_ready(b):
            c = actuator_class(b, cls)
            return c.get("boot_loop") is True and c.get("synced") is False
        p.wait_status("/ready", 503, timeout=20, where=not_ready)

        # Both VMs now lie stopped, yet over several resyncs none is
        # deleted (before the loop: every stopped VM at the next list).
        def both_stopped():
            mine = kube.vms(pool)
            return len(mine) == 2 and all(
                v["printableStatus"] == "Stopped" for v in mine)
        p.wait(both_stopped, 20, "both VMs stopped")
        t1 = time.time()
        self.wait_resyncs(p, kube, t1, n=3)
        first_probe = t_loop + BOOT_LOOP_BACKOFF_MS / 2000 - 0.5
        lists = [r for r in kube.daemon_requests(t1)
                 if r.get("verb") == "list" and
                 r.get("endpoint") == "virtualmachines"
                 and r["t"] < first_probe]
        self.assertGreaterEqual(len(lists), 2, "too slow: the window ran "
                                "into the first reclaim probe")
        self.assertEqual([r for r in kube.writes(t_loop)
                          if r["method"] == "DELETE" and
                          r["t"] < first_probe], [])
        if time.time() < first_probe:
            self.assertTrue(both_stopped())

        # The token is fixed and a job queued: the next probe's VM runs
        # it, and the guard lets go; reclaim is normal again.
        mark = p.mark()
        circle.add_class(cls, harness.runner_token(cls))
        circle.queue(cls, 1, duration_ms=3000)
        e = p.wait_log(since=mark, proc="actuator",
                       timeout=BOOT_LOOP_BACKOFF_MS / 1000 + 30,
                       msg=re.compile(r"^VMs of %s work again" % cls))
        self.assertEqual(e["level"], "info", e)
        p.wait(lambda: p.metrics().get(PRE + "boot_loop",
                                       resource_class=cls) == 0, 10,
               "runner_provisioner_boot_loop 0")
        probes = [r for r in kube.writes(t_loop) if r["method"] == "DELETE"]
        self.assertGreaterEqual(probes[0]["t"] - t_loop,
                                BOOT_LOOP_BACKOFF_MS / 2000 - 0.5, probes)
        # Both VMs replaced and up (the other stopped one is reclaimed
        # promptly now), the job done, the class ready.
        self.wait_pool(p, kube, pool, 2, vms=2, running=2, timeout=30)
        tasks = circle.client.call("GET", "/_sim/tasks")["tasks"]
        self.assertTrue(tasks[0]["runner"].startswith(pool + "-"), tasks)
        p.wait_status("/ready", 200, timeout=30)
        self.assert_vm_deletes_safe(kube, circle)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)


if __name__ == "__main__":
    harness.main()
