#!/usr/bin/python3
"""End-to-end: the 0.1.2 configuration form and the scaling controls, from
the files the chart mounts to the VMs.

config.yaml holds resourceClassDefaults and resourceClasses without a
secret; --secrets points at secrets.yaml with each class's token and
userData.  The operator expects: each pool and Secret created, the runner
token and userData reaching only the Secret (base64 inside the user data),
the runner options in the VM's runner configuration, VMs that claim tasks
with the token from secrets.yaml; headroom added while there are tasks
(desired_vms says so); maxSurge ramping a spike in waves above the VMs
already ready; scaleDownDelay holding the pool up after the queue empties;
an active schedule raising the floor and showing in /ready and the log.
The same key in both files, or an explicit --secrets that does not exist,
stops the daemon before anything starts, with file:line:col.
"""

import base64
import datetime
import json
import os
import re
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import KubeTestCase, actuator_class, pool_name  # noqa: E402

A = "e2e-org/controls-a"
B = "e2e-org/controls-b"
USERDATA_A = "#!/bin/sh\necho 'pre-install for a' >/dev/null\n"
USERDATA_ALL = "echo shared pre-install\n"

CONFIG = """resourceClassDefaults:
  scaling:
    minReplicas: 0
    maxReplicas: 6
    headroom: 1
  runner:
    maxRunTime: 45m
resourceClasses:
  "%s":
    scaling:
      maxReplicas: 8
  "%s":
    runner:
      commandPrefix: ["sudo", "-niHu", "circleci", "--"]
""" % (A, B)


def secrets_yaml(tokens):
    # JSON strings are YAML double-quoted scalars.
    return """resourceClassDefaults:
  userData: %s
resourceClasses:
  "%s":
    token: %s
    userData: %s
  "%s":
    token: %s
""" % (json.dumps(USERDATA_ALL), A, tokens[A], json.dumps(USERDATA_A), B,
       tokens[B])


def log_time(entry):
    return datetime.datetime.strptime(
        entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def userdata_of(kube, cls):
    sec = kube.get("secrets/%s-userdata" % pool_name(cls))
    return base64.b64decode(sec["data"]["userdata"]).decode()


def write_files(doc):
    """write_files of a cloud-config, b64 items decoded."""
    out = {}
    for item in yaml.safe_load(doc)["write_files"]:
        content = item["content"]
        if item.get("encoding") == "b64":
            content = base64.b64decode(content).decode()
        out[item["path"]] = content
    return out


class ScalingControlsTest(KubeTestCase):

    def start_files(self, config, secrets, classes, **prov):
        """The CircleCI and Kubernetes simulators, config.yaml and
        secrets.yaml written as given, the daemon started with --secrets."""
        self.tdir.write_config(config)
        spath = self.tdir.write("secrets.yaml", secrets)
        tokens = {c: harness.runner_token(c) for c in classes}
        circle = self.start_circleci(tokens, task_duration_ms=1500)
        kube = self.start_kube(circle=circle)
        args = ["--secrets", spath] + list(prov.pop("args", ()))
        if self.boot_loop_threshold:
            args += ["--boot-loop-threshold", self.boot_loop_threshold]
        p = self.provisioner(args=args, **prov)
        p.start()
        return circle, kube, p

    def test_files_to_vms_with_headroom(self):
        tokens = {c: harness.runner_token(c) for c in (A, B)}
        circle, kube, p = self.start_files(CONFIG, secrets_yaml(tokens),
                                           (A, B), poll_interval="200ms")
        for cls in (A, B):
            p.wait_log(proc="actuator", msg="created pool %s for %s with 0 "
                       "replicas" % (pool_name(cls), cls))
        # The secrets reach the Secret only.
        files = write_files(userdata_of(kube, A))
        runner = yaml.safe_load(files[
            "/etc/runner-provisioner/circleci-runner-config.yaml"])
        self.assertEqual(runner["api"]["auth_token"], tokens[A])
        self.assertEqual(runner["runner"]["max_run_time"], "45m")
        self.assertEqual(runner["runner"]["command_prefix"],
                         ["sudo", "PATH=$PATH", "-niHu", "circleci", "--"])
        self.assertEqual(files["/etc/runner-provisioner/user-data"],
                         USERDATA_A)
        self.assertIn("stop_timeout_s=3000\n",
                      files["/etc/runner-provisioner/boot.conf"])
        files = write_files(userdata_of(kube, B))
        self.assertEqual(files["/etc/runner-provisioner/user-data"],
                         USERDATA_ALL)
        runner = yaml.safe_load(files[
            "/etc/runner-provisioner/circleci-runner-config.yaml"])
        self.assertEqual(runner["runner"]["command_prefix"],
                         ["sudo", "-niHu", "circleci", "--"])
        pool = kube.get("pools/" + pool_name(A))
        text = repr(pool)
        for secret in (tokens[A], "pre-install for a"):
            self.assertNotIn(secret, text)
        for line in p.log.raw:
            self.assertNotIn(tokens[A], line)
            self.assertNotIn("pre-install", line)

        # Two tasks: 2 + headroom 1.
        mark = p.mark()
        circle.queue(A, 2, duration_ms=3000)
        p.wait_log(since=mark, proc="poller", msg="polled task counts",
                   resource_class=A, unclaimed_tasks=2, desired_vms=3)
        self.wait_pool(p, kube, pool_name(A), 3)
        ready = p.wait_status("/ready", 200, where=lambda b: '"headroom":1'
                              in b.replace(" ", ""))
        del ready
        status, body = p.ready()
        scaling = actuator_class(body, A)["scaling"]
        self.assertEqual((scaling["desired"], scaling["headroom"]), (3, 1))

        # The VMs boot with the token from secrets.yaml and run the jobs.
        def done():
            ts = circle.client.call("GET", "/_sim/tasks",
                                    query={"resource_class": A})["tasks"]
            return len([t for t in ts if t["state"] == "done"]) == 2
        p.wait(done, 40, "both jobs done on the new VMs")
        # Without tasks, no headroom: back to minReplicas 0.
        self.wait_pool(p, kube, pool_name(A), 0, timeout=30)
        # The boot time was measured from the pool's VMs.
        p.wait(lambda: "vm_boot_seconds" in actuator_class(
            p.ready()[1], A)["scaling"], 20, "a boot time")
        # The simulator boots in 300 ms; timestamps have whole seconds.
        self.assertLessEqual(p.metrics().get(
            "runner_provisioner_vm_boot_seconds", resource_class=A), 1.0)
        self.assert_journal_sane(kube)
        self.assert_no_actuator_restart(p)

    def test_surge_waves_and_scale_down_delay(self):
        config = """resourceClasses:
  "%s":
    scaling:
      minReplicas: 0
      maxReplicas: 10
      maxSurge: 2
      scaleDownDelay: 6s
""" % A
        secrets = 'resourceClasses:\n  "%s": {token: %s}\n' % (
            A, harness.runner_token(A))
        circle, kube, p = self.start_files(config, secrets, (A,),
                                           poll_interval="200ms")
        pool = pool_name(A)
        p.wait_log(proc="actuator", msg=re.compile("^created pool %s " %
                                                   pool))
        t0 = time.time()
        circle.queue(A, 6, duration_ms=4000)
        self.wait_pool(p, kube, pool, 6, timeout=60)
        # Every scale-up asked for at most maxSurge VMs above those the
        # pool had ready when it was decided.
        ups = [r["body"]["spec"]["replicas"]
               for r in kube.scale_requests(t0, pool=pool)]
        self.assertEqual(ups[0], 2, ups)
        self.assertGreaterEqual(len(ups), 3, ups)
        for a, b in zip(ups, ups[1:]):
            self.assertLessEqual(b - a, 2, ups)

        # As jobs finish the queue shrinks; the pool follows each drop
        # only after scaleDownDelay, the last one too.
        def tasks():
            return circle.client.call("GET", "/_sim/tasks",
                                      query={"resource_class": A})["tasks"]
        p.wait(lambda: all(t["state"] == "done" for t in tasks()), 60,
               "the six jobs done")
        last_done = max(t["finished_at"] for t in tasks())
        line = p.wait_log(proc="actuator", msg=re.compile(
            "^scaled %s from [0-9]+ to 0$" % pool), timeout=30)
        held = log_time(line) - last_done
        self.assertGreaterEqual(held, 5.5, "held only %.1fs" % held)
        downs = [e for e in p.lines(proc="actuator", msg=re.compile(
            "^scaled %s from" % pool)) if log_time(e) > log_time(line) - 30]
        self.assertTrue(downs, downs)
        self.assert_journal_sane(kube)

    def test_active_schedule_raises_the_floor(self):
        # Active from the first minute on, and never ending: 30 February.
        config = """resourceClasses:
  "%s":
    scaling:
      minReplicas: 0
      schedules:
        - name: always
          start: "* * * * *"
          end: "0 0 30 2 *"
          timezone: Europe/Berlin
          minReplicas: 2
""" % A
        secrets = 'resourceClasses:\n  "%s": {token: %s}\n' % (
            A, harness.runner_token(A))
        circle, kube, p = self.start_files(config, secrets, (A,))
        line = p.wait_log(proc="actuator", msg="scaling schedule active")
        self.assertEqual((line["schedule"], line["min_replicas"]),
                         ("always", 2))
        self.wait_pool(p, kube, pool_name(A), 2, timeout=40)
        # /ready shows it once the supervisor has surveyed the actuator.
        p.wait(lambda: actuator_class(p.ready()[1], A).get(
            "scaling", {}).get("schedule") == "always", 20,
            "the schedule in /ready")
        p.wait_log(proc="poller", msg="polled task counts",
                   resource_class=A, desired_vms=2)

    # Start-up errors ------------------------------------------------------
    def assert_refused(self, p, rc, where, problem):
        self.assertNotEqual(rc, 0, p.log.tail())
        errors = p.lines(level="error")
        self.assertEqual(len(errors), 1, p.log.tail())
        self.assertEqual(errors[0]["msg"], "invalid configuration")
        self.assertTrue(errors[0]["error"].startswith(where),
                        errors[0]["error"])
        self.assertIn(problem, errors[0]["error"])
        self.assertEqual([e for e in p.lines() if e["proc"] != "supervisor"],
                         [])

    def test_same_key_in_both_files_stops_the_daemon(self):
        config = 'resourceClasses:\n  "%s":\n    token: in-config-0123\n' % A
        self.tdir.write_config(config)
        spath = self.tdir.write("secrets.yaml", 'resourceClasses:\n  "%s":\n'
                                "    token: in-secrets-4567\n" % A)
        p = self.provisioner(args=["--secrets", spath])
        p.start(wait_serving=False)
        rc = p.wait_exit(30)
        self.assert_refused(p, rc, spath + ":3:12: ",
                            "is also set at %s:3:12" % p.config)
        for line in p.log.raw:
            self.assertNotIn("in-config-0123", line)
            self.assertNotIn("in-secrets-4567", line)

    def test_explicit_secrets_file_must_exist(self):
        self.tdir.write_config('resourceClasses:\n  "%s": {}\n' % A)
        missing = self.tdir.join("no-secrets.yaml")
        p = self.provisioner(args=["--secrets", missing])
        p.start(wait_serving=False)
        rc = p.wait_exit(30)
        self.assert_refused(p, rc, missing + ": ", "No such file")

    def test_check_config_summary_with_secrets(self):
        tokens = {c: harness.runner_token(c) for c in (A, B)}
        cfg = self.tdir.write_config(CONFIG)
        spath = self.tdir.write("secrets.yaml", secrets_yaml(tokens))
        r = harness.run_cli(["--check-config", "--config", cfg, "--secrets",
                             spath, "--circle-token-file",
                             self.tdir.write_token(harness.API_TOKEN)])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("secrets: from %s" % spath, r.stdout)
        self.assertRegex(r.stdout, r"(?m)^%s: minReplicas=0 maxReplicas=8 "
                         r"idleTimeout=none headroom=1 maxRunTime=45m0s "
                         r"userData=set " % re.escape(A))
        for secret in list(tokens.values()) + ["pre-install", "shared"]:
            self.assertNotIn(secret, r.stdout + r.stderr)


if __name__ == "__main__":
    harness.main()
