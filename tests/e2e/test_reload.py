#!/usr/bin/python3
"""End-to-end: the configuration and the CircleCI token change while the
daemon runs, as the kubelet updates a mounted Secret.

The files live in a kubelet-style directory (harness.KubeletDir: keys are
symlinks into "..data", which is swapped atomically).  An operator expects
a valid change to take effect within a poll interval without any process
restarting: new classes get pools, changed ones get their Secret and pool
template updated with running VMs left alone, removed ones are emptied and
deleted.  An invalid change is rejected with the file:line:col message,
the running configuration stays (even for a child that restarts), and
/ready and the metrics say so.  A rotated CircleCI token is used from the
next poll.
"""

import base64
import copy
import os
import re
import signal
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import API_TOKEN, KubeletDir, log_time, make_config, \
    runner_token, to_yaml  # noqa: E402
from kubesim import KubeTestCase, pool_name, ANNOT_HASH  # noqa: E402

PRE = "runner_provisioner_"
KEEP, GONE, NEW = "e2e-org/keep", "e2e-org/gone", "e2e-org/new"
SPEC1 = {"domain": {"resources": {"requests": {"memory": "1Gi",
                                                "cpu": "1"}},
                    "devices": {"disks": [{"name": "root",
                                           "disk": {"bus": "virtio"}}]}},
         "volumes": [{"name": "root", "containerDisk": {
             "image": "quay.io/containerdisks/ubuntu:22.04"}}]}
SPEC2 = copy.deepcopy(SPEC1)
SPEC2["domain"]["resources"]["requests"]["memory"] = "2Gi"


def supervisor_constant(name):
    path = os.path.join(harness.SOURCE_DIR, "supervisor", "supervisor.h")
    with open(path) as f:
        m = re.search(r"^#define\s+%s\s+(\d+)" % name, f.read(), re.M)
    return int(m.group(1))


RELOAD_CHECK_MS = supervisor_constant("RELOAD_CHECK_MS")


def config_text(classes):
    full = {}
    for n, c in classes.items():
        c = dict(c)
        c.setdefault("token", runner_token(n))
        full[n] = c
    return to_yaml(make_config(full))


class ReloadTest(KubeTestCase):

    def stack(self, classes, kube=True, circle_classes=None, **prov):
        """CircleCI (and Kubernetes) simulators, the configuration and token
        in a kubelet-style directory, the daemon reading both from it."""
        circle = self.start_circleci(circle_classes or list(classes),
                                     task_duration_ms=1000)
        k = self.start_kube(circle=circle) if kube else None
        kd = KubeletDir(self.tdir.join("etc"), {
            "config.yaml": config_text(classes),
            "circle-token": API_TOKEN + "\n"})
        p = self.provisioner(
            config=kd.join("config.yaml"), token_via="directory",
            args=["--circle-token-file", kd.join("circle-token")] +
            list(prov.pop("args", ())), **prov)
        p.start()
        return circle, k, kd, p

    def reloads(self, p, result):
        return p.metrics().get(PRE + "config_reloads_total", result=result)

    def test_classes_come_change_and_go_without_a_restart(self):
        circle, kube, kd, p = self.stack(
            {KEEP: {"minReplicas": 1, "maxReplicas": 3, "spec": SPEC1},
             GONE: {"minReplicas": 1, "maxReplicas": 2,
                    "idleTimeout": "3s"}},
            circle_classes=[KEEP, GONE, NEW])
        pk, pg, pn = pool_name(KEEP), pool_name(GONE), pool_name(NEW)
        self.wait_pool(p, kube, pk, 1, vms=1, running=1)
        self.wait_pool(p, kube, pg, 1)
        keep_vm = kube.vms(pk)[0]
        old_hash = kube.get("pools/" + pk)["metadata"]["annotations"][
            ANNOT_HASH]
        pids = {c: p.child_pid(c) for c in harness.CHILDREN}
        mark = p.mark()

        t0 = time.time()
        kd.update({"config.yaml": config_text({
            KEEP: {"minReplicas": 1, "maxReplicas": 4, "spec": SPEC2},
            NEW: {"minReplicas": 1, "maxReplicas": 1}}),
            "circle-token": API_TOKEN + "\n"})
        e = p.wait_log(since=mark, proc="supervisor",
                       msg=re.compile("^configuration changed"))
        self.assertEqual((e["generation"], e["resource_classes"],
                          e["added"], e["removed"],
                          e["circle_token_changed"]), (2, 2, 1, 1, False), e)
        for child in harness.CHILDREN:
            a = p.wait_log(since=mark, proc=child, msg=re.compile(
                r"^running configuration generation 2 \(2 resource "
                r"classes"))
            # Within a poll interval of the swap (500 ms here).
            self.assertLess(log_time(a) - t0, harness.scaled(0.5) + 0.05,
                            a)
            p.wait_log(since=mark, proc="supervisor",
                       msg="configuration applied", child=child,
                       generation=2)

        # The new class: a Secret and a pool.
        p.wait_log(since=mark, proc="actuator",
                   msg="created pool %s for %s with 1 replicas" % (pn, NEW))
        self.wait_pool(p, kube, pn, 1, vms=1)
        # The changed class: its template, not its running VM.
        p.wait_log(since=mark, proc="actuator", msg="updated pool %s to the "
                   "new configuration: new VMs use it, running VMs are "
                   "left alone" % pk)
        pool = kube.get("pools/" + pk)
        self.assertNotEqual(pool["metadata"]["annotations"][ANNOT_HASH],
                            old_hash)
        self.assertEqual(pool["spec"]["virtualMachineTemplate"]["spec"][
            "template"]["spec"]["domain"]["resources"]["requests"][
            "memory"], "2Gi")
        now = [v for v in kube.vms(pk) if v["uid"] == keep_vm["uid"]]
        self.assertEqual([(v["printableStatus"], v["boots"]) for v in now],
                         [("Running", 1)], now)
        # The removed class: emptied, then deleted with its Secret once its
        # VM is gone (its idle timeout ends it).
        e = p.wait_log(since=mark, proc="actuator", msg=re.compile(
            "^resource class is no longer configured"))
        self.assertEqual((e["resource_class"], e["pool"]), (GONE, pg))
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 1 to 0" % pg)
        p.wait_log(since=mark, proc="actuator", timeout=60,
                   msg="deleted pool %s of resource class %s: it had no VMs "
                   "left" % (pg, GONE))
        p.wait_log(since=mark, proc="actuator", msg="deleted secret "
                   "%s-userdata of resource class %s" % (pg, GONE))
        p.wait_log(since=mark, proc="actuator", msg="retired resource class "
                   "%s: pool %s and its Secret are gone" % (GONE, pg))
        self.assertIsNone(kube.get("pools/" + pg))
        self.assertIsNone(kube.get("secrets/%s-userdata" % pg))
        reasons = [e["reason"] for e in kube.events(pg)]
        for r in ("ClassRemoved", "ScaledToZero", "ReclaimedVM", "Deleted"):
            self.assertIn(r, reasons)
        # Its series are gone from /metrics; the new class's are there.
        p.wait(lambda: p.metrics().find(PRE + "target_replicas",
                                        resource_class=GONE) == [], 10,
               "the removed class's metrics to go")
        m = p.metrics()
        self.assertEqual(m.get(PRE + "target_replicas", resource_class=NEW),
                         1)
        self.assertEqual(m.find(PRE + "tasks_unclaimed",
                                resource_class=GONE), [])
        self.assertIsNotNone(m.get(PRE + "tasks_unclaimed",
                                   resource_class=NEW))
        self.assertEqual(self.reloads(p, "applied"), 1)
        self.assertEqual(self.reloads(p, "rejected"), 0)
        self.assertEqual(m.get(PRE + "config_generation"), 2)
        status, body = p.ready()
        self.assertEqual(status, 200, body)
        self.assertEqual(body["config"]["generation"], 2, body)
        self.assertEqual(body["config"]["last_change"], "applied", body)
        self.assertEqual({c: v["generation"] for c, v in
                          body["config"]["children"].items()},
                         {"poller": 2, "actuator": 2}, body)
        # Nothing restarted.
        self.assertEqual({c: p.child_pids(c) for c in harness.CHILDREN},
                         {c: [pid] for c, pid in pids.items()})
        self.assert_journal_sane(kube)
        self.assert_vm_deletes_safe(kube, circle)

    def test_invalid_change_is_rejected_and_the_running_one_stays(self):
        circle, kube, kd, p = self.stack(
            {KEEP: {"minReplicas": 1, "maxReplicas": 2}})
        pk = pool_name(KEEP)
        self.wait_pool(p, kube, pk, 1)
        p.wait_ready(timeout=40)
        mark = p.mark()
        bad = config_text({KEEP: {"minReplicas": 3, "maxReplicas": 2}})
        kd.update({"config.yaml": bad, "circle-token": API_TOKEN})
        e = p.wait_log(since=mark, proc="supervisor", msg="configuration "
                       "change rejected: the running configuration stays")
        self.assertEqual(e["level"], "error")
        line = bad.splitlines().index("    maxReplicas: 2") + 1
        self.assertEqual(e["error"], "%s:%d:18: resourceClass.\"%s\"."
                         "maxReplicas: must be >= minReplicas" % (
                             kd.join("config.yaml"), line, KEEP), e)
        self.assertEqual(e["generation"], 1, e)
        # Still running what it ran: ready, the rejection in the detail.
        status, body = p.ready()
        self.assertEqual(status, 200, body)
        self.assertEqual(body["config"]["last_change"], "rejected", body)
        self.assertEqual(body["config"]["error"], e["error"], body)
        m = p.metrics()
        self.assertEqual(self.reloads(p, "rejected"), 1)
        self.assertEqual(m.get(PRE + "config_last_reload_successful"), 0)
        self.assertEqual(m.get(PRE + "config_generation"), 1)
        self.assertEqual(p.lines(since=mark, proc="actuator",
                                 msg=re.compile("^running configuration")),
                         [])
        # The same bad content again is not news; other bad content is.
        kd.update({"config.yaml": bad, "circle-token": API_TOKEN})
        kd.update({"config.yaml": "resourceClass: [oops\n",
                   "circle-token": API_TOKEN})
        p.wait(lambda: self.reloads(p, "rejected") == 2, 10,
               "the second rejection")
        self.assertEqual(len(p.lines(since=mark, proc="supervisor",
                                     msg=re.compile("^configuration change "
                                                    "rejected"))), 2)
        # A child that restarts now starts from what runs, not from the
        # invalid file: it does not fail.
        old = p.child_pid("actuator")
        mark2 = p.mark()
        os.kill(old, signal.SIGKILL)
        p.wait_child("actuator", since=mark2, other_than=old)
        self.wait_resyncs(p, kube, time.time(), n=2)
        p.wait_ready(timeout=40)
        self.assertEqual(p.lines(since=mark2, msg=re.compile(
            "invalid configuration|failed permanently")), [])
        self.assertEqual(kube.pools()[pk]["replicas"], 1)
        # Fixed: applied.
        kd.update({"config.yaml": config_text(
            {KEEP: {"minReplicas": 2, "maxReplicas": 2}}),
            "circle-token": API_TOKEN})
        p.wait_log(since=mark2, proc="actuator",
                   msg="scaled %s from 1 to 2" % pk)
        status, body = p.ready()
        self.assertEqual(body["config"]["last_change"], "applied", body)
        self.assertNotIn("error", body["config"], body)
        self.assertEqual(p.metrics().get(PRE + "config_last_reload_"
                                         "successful"), 1)
        self.assertEqual(self.reloads(p, "applied"), 1)
        self.assert_journal_sane(kube)

    def test_rotated_circle_token_is_used_from_the_next_poll(self):
        circle, _, kd, p = self.stack({KEEP: {}}, kube=False)
        p.wait_log(proc="poller", msg="polled task counts",
                   resource_class=KEEP)
        mark = p.mark()
        # CircleCI now wants another token: polls fail with 401 and the
        # class is paused for 30 s...
        new = "e2e-circle-api-token-rotated-77a1"
        circle.client.call("POST", "/_sim/token", {"token": new})
        p.wait_log(since=mark, proc="poller", msg=re.compile(
            "^CircleCI rejected the API token for %s" % KEEP))
        # ... until the Secret brings the new one: the next poll uses it.
        t0 = time.time()
        kd.update({"config.yaml": config_text({KEEP: {}}),
                   "circle-token": new + "\n"})
        p.wait_log(since=mark, proc="supervisor", msg="the CircleCI API "
                   "token changed: the poller uses the new one from its "
                   "next poll")
        e = p.wait_log(since=mark, proc="poller", msg="polled task counts",
                       resource_class=KEEP, timeout=5)
        self.assertLess(log_time(e) - t0, harness.scaled(0.5) + 0.6, e)
        ok = [r for r in circle.requests(t0) if r["token_matched"]]
        self.assertTrue(ok)
        self.assertEqual([r for r in circle.requests(ok[0]["t"])
                          if not r["token_matched"]], [])
        self.assertEqual(len(p.child_pids("poller")), 1)
        # No token in the log, old or new.
        for line in p.log.raw:
            self.assertNotIn(new, line)
            self.assertNotIn(API_TOKEN, line)

    def test_012_secrets_file_is_reloaded_like_the_configuration(self):
        """The 0.1.2 form as the chart mounts it: settings in config.yaml,
        each class's token and userData in secrets.yaml in a directory of
        its own.  A change to either reaches the actuator without a
        restart; secrets.yaml never reaches the poller; a restarted
        actuator starts from the accepted secrets; a bad secrets.yaml is
        rejected with its file:line:col."""
        circle = self.start_circleci([KEEP], task_duration_ms=1000)
        kube = self.start_kube(circle=circle)
        pk = pool_name(KEEP)

        def config012(lo):
            return ('resourceClasses:\n  "%s":\n    scaling: '
                    '{minReplicas: %d, maxReplicas: 3}\n' % (KEEP, lo))

        def secrets012(user_data, extra=""):
            return ('resourceClasses:\n  "%s":\n    token: "%s"\n'
                    '    userData: "%s"\n%s' % (KEEP, runner_token(KEEP),
                                               user_data, extra))

        def staged_user_data():
            sec = kube.get("secrets/%s-userdata" % pk)
            doc = yaml.safe_load(base64.b64decode(sec["data"]["userdata"]))
            for item in doc["write_files"]:
                if item["path"] == "/etc/runner-provisioner/user-data":
                    return base64.b64decode(item["content"]).decode()
            return None

        kd = KubeletDir(self.tdir.join("etc"), {
            "config.yaml": config012(1), "circle-token": API_TOKEN + "\n"})
        sd = KubeletDir(self.tdir.join("secrets"), {
            "secrets.yaml": secrets012("echo first")})
        p = self.provisioner(
            config=kd.join("config.yaml"), token_via="directory",
            args=["--circle-token-file", kd.join("circle-token"),
                  "--secrets", sd.join("secrets.yaml")])
        p.start()
        self.wait_pool(p, kube, pk, 1)
        p.wait(lambda: staged_user_data() == "echo first", 20,
               "the first userData in the class's Secret")
        pids = {c: p.child_pid(c) for c in harness.CHILDREN}

        # secrets.yaml changes: only the actuator gets it.
        mark = p.mark()
        sd.update({"secrets.yaml": secrets012("echo second")})
        e = p.wait_log(since=mark, proc="supervisor",
                       msg=re.compile("^configuration changed"))
        self.assertEqual((e["generation"], e["secrets_changed"],
                          e["circle_token_changed"]), (2, True, False), e)
        for child in harness.CHILDREN:
            p.wait_log(since=mark, proc="supervisor",
                       msg="configuration applied", child=child,
                       generation=2)
        p.wait(lambda: staged_user_data() == "echo second", 20,
               "the new userData in the class's Secret")
        self.assertEqual({c: p.child_pids(c) for c in harness.CHILDREN},
                         {c: [pid] for c, pid in pids.items()})
        # The poller's copy holds no secrets; the actuator's is the file.
        run = p.run_dir
        with open(os.path.join(run, "poller-config.yaml")) as f:
            poller_conf = f.read()
        self.assertNotIn(runner_token(KEEP), poller_conf)
        self.assertNotIn("echo", poller_conf)
        with open(os.path.join(run, "actuator-secrets.yaml")) as f:
            self.assertEqual(f.read(), secrets012("echo second"))

        # config.yaml changes: the scaling controls apply, a schedule in
        # a time zone the confined children read only now included.
        mark = p.mark()
        kd.update({"config.yaml": (
            'resourceClasses:\n  "%s":\n    scaling:\n'
            '      minReplicas: 1\n      maxReplicas: 3\n'
            '      schedules:\n'
            '        - {name: always, start: "* * * * *", '
            'end: "0 0 30 2 *", timezone: Europe/Berlin, '
            'minReplicas: 2}\n' % KEEP),
            "circle-token": API_TOKEN + "\n"})
        for child in harness.CHILDREN:
            p.wait_log(since=mark, proc="supervisor",
                       msg="configuration applied", child=child,
                       generation=3)
        p.wait_log(since=mark, proc="actuator",
                   msg="scaling schedule active", schedule="always")
        p.wait_log(since=mark, proc="actuator",
                   msg="scaled %s from 1 to 2" % pk)

        # A secrets.yaml naming a class config.yaml does not list is
        # rejected; what runs stays.
        mark = p.mark()
        bad = secrets012("echo third", '  "e2e-org/other":\n    token: x\n')
        sd.update({"secrets.yaml": bad})
        e = p.wait_log(since=mark, proc="supervisor", msg="configuration "
                       "change rejected: the running configuration stays")
        line = bad.splitlines().index('  "e2e-org/other":') + 1
        self.assertTrue(e["error"].startswith("%s:%d:3: resourceClasses."
                                              "\"e2e-org/other\": not a "
                                              "resource class of %s" % (
                                                  sd.join("secrets.yaml"),
                                                  line,
                                                  kd.join("config.yaml"))),
                        e)
        self.assertEqual(self.reloads(p, "rejected"), 1)
        # An actuator restarted now starts from the accepted secrets, not
        # from the rejected file: it runs, and keeps the Secret as it is.
        old = p.child_pid("actuator")
        mark = p.mark()
        os.kill(old, signal.SIGKILL)
        p.wait_child("actuator", since=mark, other_than=old)
        self.wait_resyncs(p, kube, time.time(), n=2)
        p.wait_ready(timeout=40)
        self.assertEqual(p.lines(since=mark, msg=re.compile(
            "invalid configuration|failed permanently")), [])
        self.assertEqual(staged_user_data(), "echo second")
        self.assertEqual(p.lines(since=mark, proc="actuator",
                                 msg=re.compile("^updated secret")), [])
        # Fixed: applied.
        sd.update({"secrets.yaml": secrets012("echo third")})
        p.wait(lambda: staged_user_data() == "echo third", 20,
               "the fixed userData in the class's Secret")
        self.assertEqual(p.metrics().get(PRE + "config_generation"), 4)
        for line in p.log.raw:
            self.assertNotIn(runner_token(KEEP), line)

    def test_a_missed_event_is_caught_by_the_periodic_check(self):
        """A configuration file outside the watched directory (a symlink
        to elsewhere) changes in place: no event comes, the periodic
        check notices it; SIGHUP asks for a check at once."""
        circle = self.start_circleci([KEEP, NEW], task_duration_ms=1000)
        real = self.tdir.write("elsewhere/config.yaml",
                               config_text({KEEP: {}}))
        os.symlink(real, self.tdir.join("config.yaml"))
        p = self.start_provisioner()
        p.wait_log(proc="poller", msg="polled task counts",
                   resource_class=KEEP)
        mark = p.mark()
        t0 = time.time()
        with open(real, "w") as f:
            f.write(config_text({KEEP: {}, NEW: {}}))
        e = p.wait_log(since=mark, proc="supervisor",
                       msg=re.compile("^configuration changed"),
                       timeout=RELOAD_CHECK_MS / 1000 + 10)
        self.assertLessEqual(log_time(e) - t0,
                             harness.scaled(RELOAD_CHECK_MS / 1000) + 1, e)
        p.wait_log(since=mark, proc="poller", msg="polled task counts",
                   resource_class=NEW)
        mark = p.mark()
        with open(real, "w") as f:
            f.write(config_text({NEW: {}}))
        t1 = time.time()
        p.send_signal(signal.SIGHUP)
        e = p.wait_log(since=mark, proc="supervisor",
                       msg=re.compile("^configuration changed"), timeout=5)
        self.assertLess(log_time(e) - t1, harness.scaled(1), e)
        self.assertEqual((e["generation"], e["removed"]), (3, 1), e)

    def test_files_rewritten_as_they_were_change_nothing(self):
        """The kubelet swaps ..data whenever the Secret object is written,
        with the same content as often as not (a token file ending in a
        newline included): no new generation, no reload counted, nothing
        sent to the children."""
        circle, _, kd, p = self.stack({KEEP: {}}, kube=False)
        p.wait_log(proc="poller", msg="polled task counts",
                   resource_class=KEEP)
        mark = p.mark()
        same = {"config.yaml": config_text({KEEP: {}}),
                "circle-token": API_TOKEN + "\n"}
        kd.update(same)
        p.send_signal(signal.SIGHUP)
        # A real change after it: checks run in order, so the first
        # change logged tells whether the rewrite counted as one.
        kd.update(dict(same, **{"config.yaml": config_text(
            {KEEP: {}, NEW: {}})}))
        p.send_signal(signal.SIGHUP)
        e = p.wait_log(since=mark, proc="supervisor",
                       msg=re.compile("^configuration changed"))
        self.assertEqual((e["generation"], e["added"],
                          e["circle_token_changed"]), (2, 1, False), e)
        p.wait_log(since=mark, proc="poller", msg="polled task counts",
                   resource_class=NEW)
        self.assertEqual(self.reloads(p, "applied"), 1)
        self.assertEqual(p.lines(since=mark, proc="supervisor",
                                 msg=re.compile("^configuration changed")),
                         [e])


if __name__ == "__main__":
    harness.main()
