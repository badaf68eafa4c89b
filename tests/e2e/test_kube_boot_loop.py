#!/usr/bin/python3
"""End-to-end: the boot-loop guard against what the README promises.

0. Fast boots and short jobs are not a boot loop.  A pre-baked image that
boots in seconds and a short job (here 1 s + 3 s) power the VM off well
within --boot-loop-threshold (its default, 1m) of its creation.  Each VM
ran a job: the operator expects its class to stay ready, stopped VMs to be
reclaimed as they come and the queue to drain at full speed.

1. VMs that leave by their idleTimeout are not a boot loop.  A class with
idleTimeout shorter than --boot-loop-threshold (1m by default, so e.g.
idleTimeout 30s in production; 1s vs 20s here): an idle VM's runner exits
when its idle timeout is reached and the guest powers off, exactly as
configured.  The operator expects those VMs to be reclaimed and replaced
as they come, with no "boot loop" error, the class ready and
runner_provisioner_boot_loop 0.

2. The README: "reclaim then slows down to one VM per 30 s, doubling up to
10 min, until a VM stays up".  After the token is fixed, the next probe's
VM boots and stays up (no job queued: a quiet night); the operator expects
the boot loop to end (log, metric, /ready) once that VM has been up past
--boot-loop-threshold (and twice as long as the failed VMs lived).
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import (KubeTestCase, pool_name, BOOT_LOOP_STREAK,  # noqa: E402
                     BOOT_LOOP_BACKOFF_MS)

CLS = "e2e-org/idle"
POOL = pool_name(CLS)


class KubeBootLoopTest(KubeTestCase):

    def test_fast_boots_and_short_jobs_are_not_a_boot_loop(self):
        cls = "e2e-org/fast"
        pool = pool_name(cls)
        circle, kube, p = self.start_stack(
            {cls: {"minReplicas": 0, "maxReplicas": 3}},
            task_duration_ms=3000, kube={"boot_delay_ms": 1000},
            boot_loop="1m")
        p.wait_log(proc="actuator", msg=re.compile(
            r"^created pool %s " % re.escape(pool)))
        # Bursts of jobs, as a pipeline fans out: three VMs boot, run
        # their job side by side and power off together.
        jobs = 0
        for burst in range(3):
            circle.queue(cls, 3)
            jobs += 3

            def done():
                return circle.state()["classes"][cls]["done"] >= jobs
            p.wait(done, 60, "%d jobs to run" % jobs)
        reclaimed = p.lines(proc="actuator", msg=re.compile(
            r"^reclaimed stopped VM .* of pool %s$" % re.escape(pool)))
        # The VMs really lived less than the threshold, and ran jobs.
        stopped = [v for v in kube.recorder.all().values()
                   if v.get("stopped") and v.get("created")]
        lives = [v["stopped"] - v["created"] for v in stopped]
        self.assertGreaterEqual(len(reclaimed), BOOT_LOOP_STREAK, p.log.tail())
        self.assertTrue(lives and max(lives) < 60, lives)
        self.assertTrue(all(v["tasks_done"] for v in stopped), stopped)
        self.assertEqual(p.lines(proc="actuator",
                                 msg=re.compile(r"^boot loop")), [],
                         "fast VMs that ran jobs taken for a boot loop")
        self.assertEqual(p.metrics().get("runner_provisioner_boot_loop",
                                         resource_class=cls), 0)
        body = p.wait_ready(timeout=20)
        self.assertIsNot(body["children"]["actuator"]["detail"]["classes"]
                         [cls].get("boot_loop"), True, body)
        self.assert_vm_deletes_safe(kube, circle)

    def test_idle_timeout_power_offs_are_not_failed_boots(self):
        circle, kube, p = self.start_stack(
            {CLS: {"minReplicas": 1, "maxReplicas": 2, "idleTimeout": "1s"}},
            boot_loop="20s")
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (POOL, CLS))
        want = BOOT_LOOP_STREAK + 2

        def idled_out():
            vms = kube.recorder.all().values()
            return [v for v in vms if (v.get("last_poweroff") or "")
                    .startswith("idle timeout")]
        # Enough idle VMs came and went to have tripped the guard (or it
        # tripped).
        def loops():
            return p.lines(proc="actuator", msg=re.compile(r"^boot loop"))
        p.wait(lambda: loops() or (len(idled_out()) >= want and len(p.lines(
            proc="actuator", msg=re.compile("^reclaimed stopped VM"))) >=
            want), 90, "%d VMs to reach their idle timeout and be "
            "reclaimed" % want)
        self.assertEqual(loops(), [], "idle-timeout power-offs taken for a "
                         "boot loop")
        self.assertEqual(p.metrics().get("runner_provisioner_boot_loop",
                                         resource_class=CLS), 0)
        self.assert_vm_deletes_safe(kube, circle)


    def test_boot_loop_ends_when_a_vm_stays_up(self):
        cls = "e2e-org/stays-up"
        pool = pool_name(cls)
        circle, kube, p = self.start_stack(
            {cls: {"minReplicas": 1, "maxReplicas": 1}},
            circle_tokens={cls: "e2e-runner-token-that-circleci-knows"},
            boot_loop="3s")
        p.wait_log(proc="actuator", timeout=60, msg=re.compile(
            r"^boot loop: VMs power off right after they start"))
        circle.add_class(cls, harness.runner_token(cls))  # fixed

        # The next probe replaces the stopped VM; the new one stays up.
        def up_vm():
            vms = [v for v in kube.vms(pool)
                   if v["printableStatus"] == "Running"]
            return vms[0] if vms else None
        vm = p.wait(up_vm, BOOT_LOOP_BACKOFF_MS / 1000 + 20,
                    "a VM that boots with the fixed token")
        up_since = vm["booted"]
        p.wait(lambda: time.time() > up_since + 3 + 3 * 2, 20,
               "the VM to be up well past the threshold")
        self.assertEqual(up_vm()["uid"], vm["uid"])
        loop = p.metrics().get("runner_provisioner_boot_loop",
                               resource_class=cls)
        lines = p.lines(proc="actuator", msg=re.compile(
            r"^VMs of %s (work|stay up) again" % re.escape(cls)))
        self.assertEqual((loop, len(lines)), (0, 1),
                         "a VM has been up %.1fs (threshold 3s), still in "
                         "boot loop\n%s" % (time.time() - up_since,
                                            p.log.tail(15)))


if __name__ == "__main__":
    harness.main()
