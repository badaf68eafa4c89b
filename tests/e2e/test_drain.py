#!/usr/bin/python3
"""End-to-end: runner-provisioner --drain, what the chart's pre-delete
hook runs on helm uninstall.

An operator uninstalling expects every pool of the installation scaled to
0 and deleted with its Secret, no VM that may be running a job deleted,
the running provisioner unable to recreate anything, pools that are not
this installation's left alone, and the drain to end (exit 0) by its
deadline: VMs still running jobs then are left to finish them.
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import log_time  # noqa: E402
from kubesim import KubeTestCase, pool_name, LABEL_MANAGED_BY, \
    LABEL_CLASS  # noqa: E402

LEASE = "rp-drain"
BUSY, IDLE = "e2e-org/busy", "e2e-org/idle"
INSTANCE = "runner-provisioner/instance"


def other_pool(name, labels):
    return {"apiVersion": "pool.kubevirt.io/v1beta1",
            "kind": "VirtualMachinePool",
            "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": 0, "selector": {"matchLabels": {
                "app": name}},
                "virtualMachineTemplate": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"runStrategy": "Always", "template": {
                        "spec": {"domain": {"devices": {}}}}}}}}


class DrainTest(KubeTestCase):

    def drain(self, kube, timeout, cn="drain"):
        """--drain run as the hook Job would: a process of its own (the
        supervisor binary, which runs the actuator in its place)."""
        log = self.tdir.join(cn + ".log")
        args = [harness.SUPERVISOR, "--drain", "--drain-timeout", timeout,
                "--lease-name", LEASE, "--namespace", kube.namespace,
                "--kubeconfig", kube.kubeconfig_for(cn),
                "--run-dir", self.tdir.join("run-" + cn)]
        f = open(log, "wb")
        self.addCleanup(f.close)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=f,
                                stdin=subprocess.DEVNULL,
                                env=harness.clean_env(),
                                preexec_fn=harness.die_with_parent)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        return proc, harness.LogFile(log)

    def test_uninstall_to_zero(self):
        circle, kube, p = self.start_stack(
            {BUSY: {"minReplicas": 2, "maxReplicas": 2},
             IDLE: {"minReplicas": 1, "maxReplicas": 1, "idleTimeout": "2s"}},
            task_duration_ms=600000, args=["--leader-elect", "--lease-name",
                                           LEASE])
        pb, pi = pool_name(BUSY), pool_name(IDLE)
        # Pools that are not this installation's: someone else's, and a
        # runner-provisioner of another installation in the namespace.
        foreign = other_pool("foreign-pool", {"app": "foreign-pool"})
        other = other_pool("other-install", {
            "app": "other-install", LABEL_MANAGED_BY: "runner-provisioner",
            LABEL_CLASS: "other-install", INSTANCE: "another-release"})
        for body in (foreign, other):
            status, got = kube.api("POST", "pools", body)
            self.assertEqual(status, 201, got)
        self.wait_pool(p, kube, pb, 2, vms=2, running=2)
        self.wait_pool(p, kube, pi, 1)
        # One of BUSY's VMs runs a long job: it may not be deleted.
        circle.queue(BUSY, 1)
        busy = p.wait(lambda: [v for v in kube.vms(pb) if v["task"]], 30,
                      "a VM of %s running a job" % BUSY)[0]

        t0 = time.time()
        proc, log = self.drain(kube, "30s")
        rc = proc.wait(harness.scaled(90))
        log.check()
        if os.environ.get("RP_E2E_DEBUG"):
            sys.stderr.write("\n".join(log.raw) + "\n")
        tail = "\n".join(log.raw[-30:])
        self.assertEqual(rc, 0, tail)
        took = time.time() - t0
        e = log.find(msg=re.compile("^took the lease"))[0]
        # The provisioner held it: the drain writes only once it can no
        # longer be writing (the renew deadline).
        self.assertEqual(e["writes_in_ms"] // 1000, 9, e)
        p.wait_log(proc="actuator", msg=re.compile("^lost the lease"))
        self.assertTrue(log.find(msg="drained: no pool or Secret of this "
                                 "installation is left"), tail)
        self.assertTrue(log.find(msg="draining pool: scaling it to 0; it "
                                 "and its Secret are deleted once its VMs "
                                 "are gone, at the latest at the deadline",
                                 pool=pb))
        # IDLE's VM reached its idle timeout: its pool went as soon as it
        # was empty.  BUSY's VMs (one on a job, one idle without a
        # timeout) kept running: its pool went at the deadline, without
        # them.
        self.assertTrue(log.find(msg="deleted pool %s of resource class "
                                 "%s: it had no VMs left" % (pi, IDLE)))
        e = log.find(msg=re.compile("^deleted pool %s of resource class %s "
                                    "at the drain deadline" % (pb, BUSY)))
        self.assertTrue(e, tail)
        self.assertGreaterEqual(log_time(e[0]) - t0, 29)
        self.assertLess(took, harness.scaled(30) + 30)
        pools = kube.pools()
        self.assertNotIn(pb, pools)
        self.assertNotIn(pi, pools)
        self.assertIn("foreign-pool", pools)
        self.assertIn("other-install", pools)
        for s in (pb, pi):
            self.assertIsNone(kube.get("secrets/%s-userdata" % s))
        left = kube.vms(pb)
        self.assertEqual(len(left), 2, left)
        self.assertEqual({v["printableStatus"] for v in left}, {"Running"})
        self.assertEqual([v["task"] for v in left if v["uid"] ==
                          busy["uid"]], [busy["task"]])
        for v in left:
            self.assertIsNone(v["owner"], v)
        # Never a running VM deleted, never a write to another's pool.
        drain_writes = [r for r in kube.daemon_requests(t0)
                        if r["method"] != "GET" and r["user"] == "drain"]
        self.assertTrue(drain_writes)
        for r in drain_writes:
            self.assertNotIn("foreign-pool", r["path"])
            self.assertNotIn("other-install", r["path"])
        self.assert_vm_deletes_safe(kube, circle)
        self.assert_journal_sane(kube)
        # The drain keeps the Lease: the provisioner still running (helm
        # deletes it next) stands by and recreates nothing.
        lease = kube.get("/apis/coordination.k8s.io/v1/namespaces/%s/leases/"
                         "%s" % (kube.namespace, LEASE))
        self.assertEqual(lease["spec"]["leaseDurationSeconds"], 600)
        t1 = time.time()
        p.assert_stays(lambda: pb not in kube.pools() and
                       pi not in kube.pools(), 5, "no pool recreated")
        self.assertEqual([r for r in kube.writes(t1)
                          if r["endpoint"] != "leases"], [])
        reasons = {e["reason"] for e in kube.events(pi)}
        self.assertTrue({"Draining", "ScaledToZero", "Deleted"} <= reasons,
                        reasons)
        self.assertIn("DeletedLeavingVMs",
                      {e["reason"] for e in kube.events(pb)})

    def test_nothing_to_drain(self):
        kube = self.start_kube()
        t0 = time.time()
        proc, log = self.drain(kube, "4m")
        self.assertEqual(proc.wait(harness.scaled(30)), 0,
                         "\n".join(log.raw[-20:]))
        log.check()
        # No provisioner held the Lease: no fence, done after a fresh
        # list of pools and Secrets.
        self.assertLess(time.time() - t0, harness.scaled(10))
        self.assertTrue(log.find(msg="drained: no pool or Secret of this "
                                 "installation is left"))
        # Writes: the Lease only, created, renewed while it ran, kept.
        writes = [r for r in kube.daemon_requests(t0) if r["method"] != "GET"]
        self.assertEqual({r["endpoint"] for r in writes}, {"leases"})
        self.assertEqual([r["method"] for r in writes][0], "POST")
        self.assertEqual(writes[-1]["body"]["spec"]["leaseDurationSeconds"],
                         600)


if __name__ == "__main__":
    harness.main()
