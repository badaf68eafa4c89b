#!/usr/bin/python3
"""End-to-end: Kubernetes API errors as an operator meets them.

The simulated API server answers the actuator with faults (tests/sim's
fault switches) or has its objects changed behind its back: a 409 on a
scale is read again and retried; a pool deleted through the API is created
again, a 404 on a scale is read again; a 403 is one clear error naming the
verb and resource the Role lacks, turns the class (and /ready) not ready,
and heals once permission returns; a rotated token file is re-read after
the 401 without a restart; 500s, dropped connections and slow answers are
retried with growing pauses until they succeed.  A pool scaled or edited
by hand is put back, a deleted Secret is created again, a pool of the same
name that is not the provisioner's is left alone (one error, not ready).
The actuator never restarts through any of it.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import (KubeTestCase, pool_name, actuator_class,  # noqa: E402
                     MERGE_PATCH, ANNOT_HASH, RESYNC_MS, SECRET_RESYNC_MS)

CLS = "e2e-org/errors"
POOL = pool_name(CLS)
SCALE = "virtualmachinepools/scale"


def cpu_seconds(pid):
    """User plus system CPU time of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class KubeErrorsTest(KubeTestCase):

    def stack(self, start=True, **kw):
        circle, kube, p = self.start_stack(
            {CLS: {"minReplicas": 1, "maxReplicas": 5}}, start=start, **kw)
        if start:
            self.ready_pool(p, kube)
        return circle, kube, p

    def ready_pool(self, p, kube):
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (POOL, CLS))
        self.wait_pool(p, kube, POOL, 1, vms=1)

    def pool_requests(self, kube, since):
        """The actuator's requests on this pool object and its /scale (not
        the lists), as (method, endpoint, status)."""
        return [(r["method"], r["endpoint"], r["status"])
                for r in kube.daemon_requests(since)
                if r.get("key") == POOL and r["endpoint"] in (
                    "virtualmachinepools", SCALE)]

    def actuator_class(self, p):
        status, body = p.ready()
        return status, body, actuator_class(body, CLS)

    def test_conflict_on_scale_is_read_again_and_retried(self):
        circle, kube, p = self.stack()
        t0, mark = time.time(), p.mark()
        kube.fault(method="PATCH", endpoint=SCALE, status=409, count=1)
        circle.set_running(CLS, 3)
        p.wait_log(since=mark, proc="actuator", msg="pool %s changed under "
                   "us (HTTP 409); reading it again" % POOL)
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 1 to 3" % POOL)
        self.wait_pool(p, kube, POOL, 3, vms=3)
        self.assertEqual(self.pool_requests(kube, t0), [
            ("PATCH", SCALE, 409), ("GET", "virtualmachinepools", 200),
            ("PATCH", SCALE, 200)])
        self.assertEqual(p.lines(since=mark, proc="actuator",
                                 msg="Kubernetes write failed; retrying"), [])
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_deleted_pool_is_created_again_and_404_is_read_again(self):
        circle, kube, p = self.stack()
        old = kube.pools()[POOL]["uid"]
        mark = p.mark()
        status, body = kube.api("DELETE", "pools/" + POOL)
        self.assertIn(status, (200, 202), body)
        p.wait_log(since=mark, proc="actuator",
                   msg="pool %s disappeared; creating it again" % POOL)
        p.wait_log(since=mark, proc="actuator", msg="created pool %s for %s "
                   "with 1 replicas" % (POOL, CLS))
        st = self.wait_pool(p, kube, POOL, 1, vms=1, running=1)
        new = [x for x in st["pools"] if x["name"] == POOL]
        self.assertEqual(len(new), 1, st["pools"])
        self.assertNotEqual(new[0]["uid"], old)
        self.assertEqual([s["name"] for s in st["secrets"]],
                         [POOL + "-userdata"])

        # A 404 on /scale: the pool is read again (it exists) and scaled.
        t0, mark = time.time(), p.mark()
        kube.fault(method="PATCH", endpoint=SCALE, status=404, count=1)
        circle.set_running(CLS, 2)
        p.wait_log(since=mark, proc="actuator", msg="pool %s changed under "
                   "us (HTTP 404); reading it again" % POOL)
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 1 to 2" % POOL)
        self.wait_pool(p, kube, POOL, 2, vms=2)
        self.assertEqual(self.pool_requests(kube, t0), [
            ("PATCH", SCALE, 404), ("GET", "virtualmachinepools", 200),
            ("PATCH", SCALE, 200)])
        creates = [r for r in kube.writes() if r["method"] == "POST" and
                   r["endpoint"] == "virtualmachinepools"]
        self.assertEqual([r["status"] for r in creates], [201, 201])
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_forbidden_scale_is_one_clear_error_and_not_ready(self):
        circle, kube, p = self.stack()
        p.wait_ready(timeout=30)
        t0, mark = time.time(), p.mark()
        kube.fault(endpoint=SCALE, status=403, count=-1)
        circle.set_running(CLS, 3)
        e = p.wait_log(since=mark, proc="actuator", msg=re.compile(
            r"^Kubernetes denied a request"))
        self.assertEqual(e["level"], "error", e)
        self.assertEqual((e["verb"], e["resource"], e["api_group"],
                          e["namespace"]),
                         ("patch", SCALE, "pool.kubevirt.io", "runners"), e)
        self.assertIn('cannot patch resource "%s"' % SCALE, e["error"], e)
        # Not ready from the first denial (the next health survey), long
        # before the class's last sync grows old; /ready names the verb.
        p.wait_status("/ready", 503, timeout=3, where=lambda b:
                      actuator_class(b, CLS).get("synced") is False)
        status, body, cls = self.actuator_class(p)
        self.assertEqual(cls.get("denied"), ["patch " + SCALE], cls)
        self.assertLess(cls.get("last_sync_ms_ago", 0), 10000, cls)

        # Retried with growing pauses, every failure a warning naming the
        # verb and resource; the RBAC error itself said once.
        def attempts(n):
            got = [r for r in kube.scale_requests(t0) if r["status"] == 403]
            return got if len(got) >= n else None
        tries = p.wait(lambda: attempts(4), 40, "four denied scale PATCHes")
        gaps = [b["t"] - a["t"] for a, b in zip(tries, tries[1:])]
        self.assertGreater(gaps[0], 0.4, gaps)
        self.assertGreater(gaps[2], gaps[0], gaps)
        for w in p.lines(since=mark, proc="actuator",
                         msg="Kubernetes write failed; retrying"):
            self.assertEqual((w["verb"], w["resource"], w["object"]),
                             ("patch", SCALE, POOL), w)
            self.assertGreater(w["retry_in_ms"], 0, w)
        self.assertEqual(len(p.lines(since=mark, proc="actuator",
                                     msg=re.compile("^Kubernetes denied"))),
                         1, "the RBAC error is said once")

        # The class is not synced, the actuator and /ready not ready.
        p.wait_status("/ready", 503, timeout=40, where=lambda b:
                      actuator_class(b, CLS).get("synced") is False)
        status, body, cls = self.actuator_class(p)
        self.assertEqual(status, 503, body)
        self.assertIs(body["children"]["actuator"]["ready"], False, body)
        self.assertIn("403", cls.get("last_error", ""), cls)
        self.assertEqual(cls["pool_replicas"], 1, cls)
        self.assertEqual(kube.pools()[POOL]["replicas"], 1)

        # Permission granted again: the scale goes through, all ready.
        mark = p.mark()
        kube.clear_faults()
        p.wait_log(since=mark, proc="actuator", timeout=40,
                   msg="scaled %s from 1 to 3" % POOL)
        self.wait_pool(p, kube, POOL, 3, vms=3)
        body = p.wait_ready(timeout=40)
        self.assertIs(actuator_class(body, CLS).get("synced"), True, body)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_rotated_token_file_is_read_again_after_401(self):
        circle, kube, p = self.stack(kube={"auth": "token-file"})
        t0, mark = time.time(), p.mark()
        new = "e2e-kube-rotated-token-8b41f0"
        kube.rotate_token(new)
        circle.set_running(CLS, 2)
        p.wait_log(since=mark, proc="actuator", msg="Kubernetes token "
                   "reloaded from %s" % kube.token_file)
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 1 to 2" % POOL)
        self.wait_pool(p, kube, POOL, 2, vms=2)
        self.wait_resyncs(p, kube, time.time(), n=2)
        reqs = kube.daemon_requests(t0)
        denied = [r for r in reqs if r["status"] == 401]
        self.assertTrue(denied, "the old token was never refused")
        # Each refused request was sent again, with the new token, and
        # answered; nothing is refused any more.
        for d in denied:
            again = [r for r in reqs if r["t"] > d["t"] and
                     (r["method"], r["path"]) == (d["method"], d["path"])]
            self.assertTrue(again and again[0]["status"] in (200, 201),
                            (d, again[:1]))
        last = max(d["t"] for d in denied)
        self.assertEqual([r for r in kube.daemon_requests(last + 0.001)
                          if r["status"] == 401], [])
        self.assertEqual(p.lines(since=mark, proc="actuator", msg=re.compile(
            "^Kubernetes rejected the provisioner's credentials")), [])
        for line in p.log.raw:
            self.assertNotIn(new, line)
        self.assert_no_actuator_restart(p)

    def test_server_errors_and_slow_answers_back_off_then_succeed(self):
        circle, kube, p = self.stack(start=False)
        # The first Secret create fails (500), the first pool list is
        # dropped mid-connection: both are retried.
        kube.fault(method="POST", endpoint="secrets", status=500, count=1)
        kube.fault(method="GET", endpoint="virtualmachinepools", drop=True,
                   count=1)
        p.start()
        w = p.wait_log(proc="actuator", msg="Kubernetes write failed; "
                       "retrying", verb="create", resource="secrets")
        self.assertEqual(w["object"], POOL + "-userdata", w)
        self.assertIn("500", w["error"], w)
        self.ready_pool(p, kube)
        self.assertEqual([r["status"] for r in kube.writes()
                          if r["endpoint"] == "secrets"], [500, 201])

        # Two 500s on /scale: retried after 0.5-1 s, then 1-2 s.
        t0, mark = time.time(), p.mark()
        kube.fault(endpoint=SCALE, status=500, count=2)
        circle.set_running(CLS, 2)
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 1 to 2" % POOL)
        tries = kube.scale_requests(t0)
        self.assertEqual([r["status"] for r in tries], [500, 500, 200])
        gaps = [b["t"] - a["t"] for a, b in zip(tries, tries[1:])]
        self.assertTrue(0.4 < gaps[0] < 1.5 + 1, gaps)
        self.assertTrue(0.9 < gaps[1] < 2.5 + 1, gaps)
        warns = p.lines(since=mark, proc="actuator",
                        msg="Kubernetes write failed; retrying")
        self.assertEqual(len(warns), 2, warns)
        for w in warns:
            self.assertEqual((w["verb"], w["resource"]), ("patch", SCALE), w)

        # A slow answer: one PATCH in flight for seconds, no second one
        # sent meanwhile, and it lands.
        t1, mark = time.time(), p.mark()
        kube.fault(endpoint=SCALE, delay_ms=3000, count=1)
        circle.set_running(CLS, 4)

        def in_flight():
            got = kube.scale_requests(t1)
            return got if got and got[0]["status"] is None else None
        p.wait(in_flight, 20, "a scale PATCH in flight")
        p.wait_log(since=mark, proc="actuator", timeout=30,
                   msg="scaled %s from 2 to 4" % POOL)
        tries = kube.scale_requests(t1)
        self.assertEqual([(r["body"], r["status"]) for r in tries],
                         [({"spec": {"replicas": 4}}, 200)])
        self.wait_pool(p, kube, POOL, 4, vms=4)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_hanging_retry_does_not_spin(self):
        """One failed write, then its retry hangs (a slow API server): the
        actuator waits for the answer without burning a core."""
        circle, kube, p = self.stack()
        t0, mark = time.time(), p.mark()
        kube.fault(endpoint=SCALE, status=500, count=1)
        kube.fault(endpoint=SCALE, delay_ms=12000, count=1)
        circle.set_running(CLS, 3)
        p.wait_log(since=mark, proc="actuator", resource=SCALE,
                   msg="Kubernetes write failed; retrying")

        def hanging():
            got = kube.scale_requests(t0)
            return len(got) == 2 and got[1]["status"] is None
        p.wait(hanging, 20, "the retried scale PATCH in flight")
        pid = p.child_pids("actuator")[-1]
        cpu0, start = cpu_seconds(pid), time.time()
        p.wait(lambda: hanging() and time.time() - start >= 6, 20,
               "6 s with the retry in flight")
        share = (cpu_seconds(pid) - cpu0) / (time.time() - start)
        self.assertLess(share, 0.1, "the actuator used %.0f %% of a core "
                        "while a write was in flight" % (100 * share))
        p.wait_log(since=mark, proc="actuator", timeout=30,
                   msg="scaled %s from 1 to 3" % POOL)
        self.assertEqual([r["status"] for r in kube.scale_requests(t0)],
                         [500, 200])
        self.assert_no_actuator_restart(p)

    def test_pool_changed_behind_its_back_is_put_back(self):
        circle, kube, p = self.stack()
        # Someone scales the pool by hand: the next resync puts it back.
        mark = p.mark()
        status, body = kube.api("PATCH", "pools/%s/scale" % POOL,
                                {"spec": {"replicas": 4}}, MERGE_PATCH)
        self.assertEqual(status, 200, body)
        p.wait_log(since=mark, proc="actuator", timeout=20,
                   msg="scaled %s from 4 to 1" % POOL)
        self.wait_pool(p, kube, POOL, 1)
        # Someone edits the template: the pool is updated back.
        want = kube.get("pools/" + POOL)["metadata"]["annotations"][
            ANNOT_HASH]
        mark = p.mark()
        status, body = kube.api("PATCH", "pools/" + POOL, {
            "metadata": {"annotations": {ANNOT_HASH: "edited-by-hand"}},
            "spec": {"virtualMachineTemplate": {"spec": {"template": {
                "spec": {"terminationGracePeriodSeconds": 7}}}}}},
            MERGE_PATCH)
        self.assertEqual(status, 200, body)
        p.wait_log(since=mark, proc="actuator", timeout=20,
                   msg="updated pool %s to the new configuration: new VMs "
                   "use it, running VMs are left alone" % POOL)
        pool = kube.get("pools/" + POOL)
        self.assertEqual(pool["metadata"]["annotations"][ANNOT_HASH], want)
        self.assertNotIn("terminationGracePeriodSeconds", pool["spec"][
            "virtualMachineTemplate"]["spec"]["template"]["spec"])
        self.assertEqual(pool["spec"]["replicas"], 1)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_foreign_pool_of_the_same_name_is_left_alone(self):
        circle, kube, p = self.stack(start=False)
        labels = {"app": "someone-elses"}
        status, body = kube.api("POST", "pools", {
            "apiVersion": "pool.kubevirt.io/v1beta1",
            "kind": "VirtualMachinePool",
            "metadata": {"name": POOL, "labels": labels},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "virtualMachineTemplate": {
                         "metadata": {"labels": labels},
                         "spec": {"runStrategy": "Always", "template": {
                             "spec": {"domain": {"devices": {}}}}}}}})
        self.assertEqual(status, 201, body)
        p.start()
        e = p.wait_log(proc="actuator", msg="pool %s exists but is not "
                       "managed by runner-provisioner (no app.kubernetes.io/"
                       "managed-by=runner-provisioner label): not touching "
                       "it; rename or delete it" % POOL)
        self.assertEqual(e["level"], "error", e)
        circle.set_running(CLS, 3)
        p.wait_status("/ready", 503, timeout=40, where=lambda b:
                      actuator_class(b, CLS).get("synced") is False)
        self.wait_resyncs(p, kube, time.time(), n=3)
        self.assertEqual([r for r in kube.writes() if POOL in r["path"] and
                          r["path"].rstrip("/").split("/")[-1] != "secrets"],
                         [], "the foreign pool was written")
        self.assertEqual(kube.pools()[POOL]["replicas"], 0)
        self.assertEqual(len(p.lines(proc="actuator", msg=e["msg"])), 1)

        # Its owner deletes it, as the log line asks: the class gets its
        # own pool within one resync, and is ready again.
        mark = p.mark()
        status, body = kube.api("DELETE", "pools/" + POOL)
        self.assertEqual(status, 200, body)
        t0 = time.time()
        p.wait_log(since=mark, proc="actuator", timeout=RESYNC_MS / 1000 + 10,
                   msg="created pool %s for %s with 3 replicas" % (POOL, CLS))
        created = [r for r in kube.daemon_requests(t0)
                   if r["method"] == "POST" and
                   r["endpoint"] == "virtualmachinepools"]
        self.assertEqual([r["status"] for r in created], [201], created)
        self.assertLess(created[0]["t"] - t0,
                        harness.scaled(RESYNC_MS / 1000 + 1), created)
        p.wait_log(since=mark, proc="actuator",
                   msg="pool %s is gone; creating our own" % POOL)
        self.wait_pool(p, kube, POOL, 3)
        p.wait_ready(timeout=30)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_deleted_secret_is_created_again(self):
        circle, kube, p = self.stack()
        p.wait_log(proc="actuator", msg="created secret %s-userdata "
                   "(cloud-init for %s)" % (POOL, CLS))
        t0, mark = time.time(), p.mark()
        status, body = kube.api("DELETE", "secrets/%s-userdata" % POOL)
        self.assertEqual(status, 200, body)
        p.wait_log(since=mark, proc="actuator", msg="created secret "
                   "%s-userdata (cloud-init for %s)" % (POOL, CLS),
                   timeout=SECRET_RESYNC_MS / 1000 + 15)
        took = time.time() - t0
        self.assertEqual([s["name"] for s in kube.state()["secrets"]],
                         [POOL + "-userdata"])
        # A VM created now can mount it and boots.
        circle.set_running(CLS, 2)
        self.wait_pool(p, kube, POOL, 2, vms=2, running=2)
        self.assertLess(took, SECRET_RESYNC_MS / 1000 + 10)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)


if __name__ == "__main__":
    harness.main()
