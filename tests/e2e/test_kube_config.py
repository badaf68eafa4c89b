#!/usr/bin/python3
"""End-to-end: a configuration change reaches new VMs, not running ones.

The daemon runs a class whose two VMs are busy with long jobs; it is
restarted with a changed spec (memory, image) and a new runner token.  The
operator expects: "updated secret" and "updated pool" lines, a new
template-hash annotation on the pool, the Secret holding the new token; the
busy VMs keep running their jobs on the same VMI, never restarted; a VM
created afterwards has the new template and runs a job with the new token.
"""

import base64
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import KubeTestCase, pool_name, ANNOT_HASH  # noqa: E402

CLS = "e2e-org/config"
POOL = pool_name(CLS)
SPEC1 = {"domain": {"resources": {"requests": {"memory": "1Gi",
                                                "cpu": "1"}},
                    "devices": {"disks": [{"name": "root",
                                           "disk": {"bus": "virtio"}}]}},
         "volumes": [{"name": "root", "containerDisk": {
             "image": "quay.io/containerdisks/ubuntu:22.04"}}]}
SPEC2 = copy.deepcopy(SPEC1)
SPEC2["domain"]["resources"]["requests"]["memory"] = "2Gi"
SPEC2["volumes"][0]["containerDisk"]["image"] = \
    "quay.io/containerdisks/ubuntu:24.04"
TOKEN1 = harness.runner_token(CLS)
TOKEN2 = "e2e-runner-token-rotated-5c07aa"


def vm_memory(vm):
    return vm["spec"]["template"]["spec"]["domain"]["resources"][
        "requests"]["memory"]


class KubeConfigChangeTest(KubeTestCase):

    def test_changed_spec_and_token_update_pool_and_secret_only_new_vms(self):
        conf = {CLS: {"minReplicas": 0, "maxReplicas": 4, "spec": SPEC1}}
        circle, kube, p1 = self.start_stack(conf)
        p1.wait_log(proc="actuator", msg="created pool %s for %s with 0 "
                    "replicas" % (POOL, CLS))
        circle.queue(CLS, 2, duration_ms=600000)

        def busy():
            st = kube.state()
            vms = [v for v in st["vms"] if v["printableStatus"] == "Running"
                   and v["task"]]
            return st if len(vms) == 2 else None
        before = p1.wait(busy, 40, "two VMs running jobs")
        old_hash = kube.get("pools/" + POOL)["metadata"]["annotations"][
            ANNOT_HASH]
        old_vms = {v["uid"]: v for v in before["vms"]}
        old_vmis = {v["name"]: v["uid"] for v in before["vmis"]}
        restarts = before["counters"]["vmi_restarts"]
        for v in before["vms"]:
            self.assertEqual(vm_memory(kube.get("vms/" + v["name"])), "1Gi")

        # New spec and token: the operator edits the config and the
        # Deployment restarts the daemon.
        self.assertEqual(p1.stop()[0], 0)
        conf[CLS].update(spec=SPEC2, token=TOKEN2)
        self.write_config(conf)
        circle.add_class(CLS, TOKEN2)
        t0 = time.time()
        p2 = self.provisioner()
        p2.start()
        p2.wait_log(proc="actuator", msg="updated secret %s-userdata: VMs "
                    "created from now on get the new cloud-init" % POOL)
        p2.wait_log(proc="actuator", msg="updated pool %s to the new "
                    "configuration: new VMs use it, running VMs are left "
                    "alone" % POOL)
        writes = [(r["method"], r["endpoint"], r["status"])
                  for r in kube.writes(t0)]
        self.assertEqual(writes, [("PUT", "secrets", 200),
                                  ("PUT", "virtualmachinepools", 200)])
        pool = kube.get("pools/" + POOL)
        new_hash = pool["metadata"]["annotations"][ANNOT_HASH]
        self.assertNotEqual(new_hash, old_hash)
        self.assertEqual(pool["spec"]["replicas"], 2)
        tmpl = pool["spec"]["virtualMachineTemplate"]
        self.assertEqual(tmpl["metadata"]["annotations"][ANNOT_HASH],
                         new_hash)
        self.assertEqual(tmpl["spec"]["template"]["spec"]["domain"][
            "resources"]["requests"]["memory"], "2Gi")
        sec = kube.get("secrets/%s-userdata" % POOL)
        userdata = base64.b64decode(sec["data"]["userdata"]).decode()
        self.assertIn(TOKEN2, userdata)
        self.assertNotIn(TOKEN1, userdata)
        self.assertEqual(sec["metadata"]["annotations"][ANNOT_HASH],
                         new_hash)

        # The busy VMs were not touched: same VM, same VMI, one boot,
        # still on their job.
        self.wait_resyncs(p2, kube, time.time(), n=2)
        now = kube.state()
        for uid, old in old_vms.items():
            cur = [v for v in now["vms"] if v["uid"] == uid]
            self.assertEqual(len(cur), 1, "VM %s is gone" % old["name"])
            cur = cur[0]
            self.assertEqual((cur["printableStatus"], cur["boots"],
                              cur["task"]),
                             ("Running", 1, old["task"]), cur)
        self.assertEqual({v["name"]: v["uid"] for v in now["vmis"]},
                         old_vmis)
        self.assertEqual(now["counters"]["vmi_restarts"], restarts)
        self.assertEqual([r for r in kube.writes(t0)
                          if r["endpoint"] == "virtualmachines"], [])

        # A VM created now gets the new template and token.
        circle.queue(CLS, 1, duration_ms=4000)
        p2.wait_log(proc="actuator", msg="scaled %s from 2 to 3" % POOL)

        def fresh_vm():
            got = [v for v in kube.state()["vms"] if v["uid"] not in old_vms]
            return got[0] if got else None
        fresh = p2.wait(fresh_vm, 30, "a new VM")
        vm = kube.get("vms/" + fresh["name"])
        self.assertEqual(vm["metadata"]["uid"], fresh["uid"])
        self.assertEqual(vm_memory(vm), "2Gi")
        self.assertEqual(vm["spec"]["template"]["spec"]["volumes"][0][
            "containerDisk"]["image"], "quay.io/containerdisks/ubuntu:24.04")

        def finished():
            ts = circle.client.call("GET", "/_sim/tasks")["tasks"]
            done = [t for t in ts if t["state"] == "done"]
            return done[0] if done else None
        task = p2.wait(finished, 40, "the new VM to run the job")
        self.assertEqual(task["runner"], "%s-%s" % (fresh["name"],
                                                    fresh["uid"][:8]))
        for uid in old_vms:
            self.assertIsNone(kube.recorder.vm(uid)["runner_error"])
        self.assert_journal_sane(kube)
        self.assert_vm_deletes_safe(kube, circle)
        self.assert_no_actuator_restart(p2)


if __name__ == "__main__":
    harness.main()
