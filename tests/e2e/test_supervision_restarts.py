#!/usr/bin/python3
"""End-to-end: the supervisor restarts its children.

kill -9 of each child (restarted at once, /live stays 200, /ready 503 then
200), the same child killed repeatedly (crash loop visible in /ready, the log
and /metrics), a stopped child (killed after the health timeout and
restarted), a child that fails permanently after a restart (exit 100: not
restarted, /ready says why).
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import proc_alive, proc_cmdline  # noqa: E402
from test_supervision import (  # noqa: E402
    BINARIES, CHILD_RESTART_BASE_MS, CLS, CRASH_LOOP_DEATHS,
    CRASH_LOOP_DELAY_MS, HEALTH_FRESH_MS, HEALTH_KILL_MS, SupervisionBase)


class RestartTest(SupervisionBase):

    def test_killed_child_is_restarted(self):
        p = self.start()
        with harness.Prober(p.get, "/live", interval=0.05) as live:
            for child in ("poller", "actuator"):
                old = p.child_pid(child)
                self.assertTrue(proc_alive(old))
                mark = p.mark()
                self.kill9(old, p)
                # /ready notices at once...
                body = p.wait_status("/ready", 503, timeout=10)
                self.assertIn(child, body)
                new = p.wait_child(child, since=mark, other_than=old)
                died = p.wait_log(since=mark, proc="supervisor",
                                  msg="child died; restarting", child=child)
                self.assertEqual(died["exit"], "killed by signal 9 (Killed)",
                                 died)
                # The first restart after a stable run is immediate.
                self.assertEqual(died["restart_in_ms"], 0, died)
                self.assert_reaped(old)
                # ...and is 200 again once the new child works.  (The new
                # child must not be mistaken for a silent one.)
                e = p.wait_log(since=mark, proc="supervisor",
                               child_pid=new, where=lambda e: e["msg"] in (
                                   "child answering health surveys",
                                   "child stopped answering health "
                                   "surveys; killing it"))
                self.assertEqual(e["msg"], "child answering health surveys",
                                 "the restarted %s was killed as silent: %s"
                                 % (child, e))
                body = p.wait_ready(timeout=30)
                c = body["children"][child]
                self.assertEqual((c["pid"], c["restarts"]), (new, 1), body)
                self.assertEqual(c["last_exit"],
                                 "killed by signal 9 (Killed)", body)
                self.assertEqual(proc_cmdline(new)[:1], [BINARIES[child]])
                m = p.metrics()
                self.assertEqual(m.get(
                    "runner_provisioner_child_restarts_total", child=child),
                    1)
                self.assertEqual(m.get("runner_provisioner_child_up",
                                       child=child), 1)
        statuses = live.statuses()
        self.assertGreater(len(statuses), 10)
        self.assertEqual(set(statuses), {200},
                         "/live answered %s" % sorted(set(map(str,
                                                              statuses))))
        # The poller's new incarnation goes on polling.
        p.wait_log(since=p.mark(), proc="poller", msg="polled task counts",
                   resource_class=CLS, unclaimed_tasks=4, running_tasks=1)
        self.assertEqual(p.stop()[0], 0)

    def test_crash_loop_is_visible(self):
        p = self.start()
        with harness.Prober(p.get, "/live", interval=0.1) as live:
            pid = p.child_pid("poller")
            for i in range(CRASH_LOOP_DEATHS):
                mark = p.mark()
                self.kill9(pid, p)
                died = p.wait_log(since=mark, proc="supervisor",
                                  msg="child died; restarting",
                                  child="poller")
                if i < CRASH_LOOP_DEATHS - 1:
                    # Backoff: at once, then 1 s, 2 s, 4 s...
                    want = 0 if i == 0 else CHILD_RESTART_BASE_MS << (i - 1)
                    self.assertLessEqual(died["restart_in_ms"], want, died)
                    self.assertGreaterEqual(died["restart_in_ms"], want // 2,
                                            died)
                    pid = p.wait_child("poller", since=mark, other_than=pid,
                                       timeout=30)
            self.assertEqual(died["restart_in_ms"], CRASH_LOOP_DELAY_MS, died)
            loop = p.wait_log(since=mark, proc="supervisor",
                              msg=re.compile(r"^the poller is crash-looping"))
            self.assertEqual(loop["level"], "error", loop)
            self.assertEqual(len(p.lines(msg=re.compile(
                "crash-looping"))), 1)
            status, body = p.ready()
            self.assertEqual(status, 503, body)
            poller = body["children"]["poller"]
            self.assertIs(poller["crash_looping"], True, body)
            self.assertEqual(poller["state"], "waiting to restart", body)
            self.assertIn("poller: crash-looping", body["reasons"])
            self.assertIs(body["children"]["actuator"]["crash_looping"],
                          False, body)
            m = p.metrics()
            self.assertEqual(m.get("runner_provisioner_child_crash_looping",
                                   child="poller"), 1)
            self.assertEqual(m.get("runner_provisioner_child_crash_looping",
                                   child="actuator"), 0)
            self.assertEqual(m.get("runner_provisioner_child_up",
                                   child="poller"), 0)
            self.assertEqual(m.get("runner_provisioner_child_restarts_total",
                                   child="poller"), CRASH_LOOP_DEATHS - 1)
            self.assertEqual(m.get("runner_provisioner_ready"), 0)
        self.assertEqual(set(live.statuses()), {200})
        # The actuator was left alone.
        self.assertEqual(len(p.child_pids("actuator")), 1)
        self.assertTrue(proc_alive(p.child_pid("actuator")))
        rc, took = p.stop()
        self.assertEqual(rc, 0)


    def test_stopped_child_is_killed_and_restarted(self):
        p = self.start()
        old = p.child_pid("actuator")
        mark = p.mark()
        t0 = time.monotonic()
        os.kill(old, signal.SIGSTOP)
        self.addCleanup(harness.signal_pid, old, signal.SIGCONT)
        # Not ready once its answers are stale...
        body = p.wait_status("/ready", 503, timeout=HEALTH_FRESH_MS / 1000 +
                             10)
        self.assertIn("actuator: stopped answering health surveys", body)
        self.assertEqual(p.get("/live")[0], 200)
        # ...killed after the health timeout, restarted.
        e = p.wait_log(since=mark, proc="supervisor",
                       msg="child stopped answering health surveys; "
                           "killing it",
                       timeout=HEALTH_KILL_MS / 1000 + 20)
        took = time.monotonic() - t0
        self.assertEqual((e["child"], e["child_pid"]), ("actuator", old), e)
        self.assertEqual(e["level"], "error", e)
        self.assertGreaterEqual(e["silent_ms"], HEALTH_KILL_MS, e)
        # The last answer may have come up to a survey interval before the
        # stop.
        self.assertGreaterEqual(took, HEALTH_KILL_MS / 1000 - 1.5)
        new = p.wait_child("actuator", since=mark, other_than=old)
        died = p.wait_log(since=mark, proc="supervisor",
                          msg="child died; restarting", child="actuator")
        self.assertEqual(died["exit"], "killed by signal 9 (Killed)", died)
        self.assert_reaped(old)
        body = p.wait_ready(timeout=30)
        self.assertEqual(body["children"]["actuator"]["pid"], new)
        self.assertEqual(p.stop()[0], 0)

    def test_restarted_poller_gets_the_running_token(self):
        p = self.start()
        # The CircleCI token file goes bad on disk (an edited Secret): the
        # supervisor rejects the change and the running poller keeps the
        # token it has; a poller started now gets that token too (on a
        # pipe from the supervisor), not the file's.
        mark = p.mark()
        self.tdir.write_token("")
        p.wait_log(since=mark, proc="supervisor",
                   msg="configuration change rejected: the running "
                   "configuration stays")
        old = p.child_pid("poller")
        mark = p.mark()
        self.kill9(old, p)
        new = p.wait_child("poller", since=mark, other_than=old)
        started = p.wait_log(since=mark, proc="poller", msg="poller starting")
        self.assertEqual(started["pid"], new)
        self.assertEqual(started["token_source"], "--circle-token-fd")
        p.wait_log(since=mark, proc="poller", msg="polled task counts")
        p.wait_ready(timeout=30)
        self.assertEqual(p.lines(since=mark, proc="poller", level="error"),
                         [])
        self.assertEqual(p.stop()[0], 0)

    def test_permanent_failure_is_not_restarted(self):
        p = self.start()
        # The configuration a restarted poller starts from (saved in the
        # run directory by the supervisor) is damaged: a poller started
        # now cannot run, and a restart would not help.
        saved = os.path.join(p.run_dir, "poller-config.yaml")
        self.assertTrue(os.path.exists(saved))
        with open(saved, "w") as f:
            f.write("resourceClass: [damaged\n")
        old = p.child_pid("poller")
        mark = p.mark()
        self.kill9(old, p)
        new = p.wait_child("poller", since=mark, other_than=old)
        bad = p.wait_log(since=mark, proc="poller",
                         msg="invalid configuration")
        self.assertEqual(bad["pid"], new)
        self.assertIn("poller-config.yaml:", bad["error"])
        failed = p.wait_log(since=mark, proc="supervisor", child="poller",
                            msg=re.compile(r"^child failed permanently and "
                                           r"will not be restarted"))
        self.assertEqual(failed["exit"], "exited with status 100", failed)
        self.assertEqual(failed["level"], "error", failed)
        self.assert_reaped(new)
        body = p.wait_status("/ready", 503, timeout=10,
                             where=lambda b: "failed permanently" in b)
        status, body = p.ready()
        self.assertEqual(body["children"]["poller"]["state"], "failed", body)
        self.assertIn("poller: failed permanently (see the logs); not "
                      "restarted", body["reasons"])
        self.assertEqual(p.get("/live")[0], 200)
        # Not restarted: no new start through several restart delays; the
        # actuator, untouched, keeps answering.
        quiet = p.mark()

        def still_failed():
            c = self.children_state(p)
            return (c["poller"]["state"] == "failed" and
                    c["actuator"]["last_answer_ms_ago"] < 2500 and
                    not p.lines(since=quiet, proc="supervisor",
                                msg=re.compile("^started the poller")))
        p.assert_stays(still_failed, 4 * CHILD_RESTART_BASE_MS / 1000,
                       "the poller failed and the actuator answering")
        self.assertEqual(p.stop()[0], 0)



if __name__ == "__main__":
    harness.main()
