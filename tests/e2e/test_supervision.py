#!/usr/bin/python3
"""End-to-end: the supervisor's process management.

An actuator that cannot work (no --dry-run, no Kubernetes credentials)
fails permanently (exit 100: not restarted, /ready says why, the poller goes
on); SIGTERM (exit 0, no child left, sockets removed); SIGTERM with a child
that does not stop (SIGKILL after --shutdown-grace, still exit 0); the
supervisor as PID 1 of a PID namespace (reaps an orphan, exits 0 on
SIGTERM).  Restarts (kill -9, crash loop, SIGSTOP, exit 100 after a
restart) are in test_supervision_restarts.py, on the same base class.
"""

import os
import re
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import proc_state  # noqa: E402

CLS = "e2e-org/sup"
SUPERVISOR_H = os.path.join(harness.SOURCE_DIR, "supervisor", "supervisor.h")


def header_constant(name):
    """A #define from supervisor/supervisor.h (milliseconds)."""
    with open(SUPERVISOR_H) as f:
        m = re.search(r"^#define\s+%s\s+(\d+)" % name, f.read(), re.M)
    return int(m.group(1))


HEALTH_KILL_MS = header_constant("HEALTH_KILL_MS")
HEALTH_FRESH_MS = header_constant("HEALTH_FRESH_MS")
CRASH_LOOP_DEATHS = header_constant("CRASH_LOOP_DEATHS")
CRASH_LOOP_DELAY_MS = header_constant("CRASH_LOOP_DELAY_MS")
CHILD_RESTART_BASE_MS = header_constant("CHILD_RESTART_BASE_MS")
BINARIES = {"poller": harness.POLLER, "actuator": harness.ACTUATOR}


class SupervisionBase(harness.E2ETestCase):
    """A one-class simulator and config; helpers.  (No tests of its own:
    the restart tests in test_supervision_restarts.py share it.)"""

    def setUp(self):
        super().setUp()
        self.sim = self.start_circleci([CLS])
        self.sim.set_counts(CLS, 4, 1)
        self.write_config({CLS: {"minReplicas": 1, "maxReplicas": 8}})

    def start(self, **kw):
        p = self.start_provisioner(**kw)
        if kw.get("dry_run", True) is not False:
            p.wait_ready(timeout=40)
        return p

    def kill9(self, pid, p=None):
        """kill -9 pid, which must be a live process (else the failure shows
        the log)."""
        if not harness.proc_alive(pid):
            raise AssertionError("pid %d is not running (state %s)%s" % (
                pid, proc_state(pid), "\n" + p.log.tail() if p else ""))
        os.kill(pid, signal.SIGKILL)

    def assert_reaped(self, pid):
        """pid is gone from /proc (not even a zombie): it was reaped."""
        harness.wait_for(lambda: proc_state(pid) is None, 10,
                         what="pid %d to be reaped (state %s)" % (
                             pid, proc_state(pid)))

    def children_state(self, p):
        return p.ready()[1]["children"]



class SupervisionTest(SupervisionBase):

    # exit 100 -----------------------------------------------------------
    def test_actuator_without_dry_run_fails_permanently(self):
        """Without --dry-run and with no usable Kubernetes credentials the
        actuator cannot work: it says so once and is not restarted; the
        poller goes on."""
        p = self.start(dry_run=False, args=[
            "--kubeconfig", self.tdir.join("no-such-kubeconfig")])
        failed = p.wait_log(proc="supervisor", child="actuator",
                            msg=re.compile(r"^child failed permanently"))
        self.assertEqual(failed["exit"], "exited with status 100", failed)
        errors = p.lines(proc="actuator", level="error")
        self.assertGreaterEqual(len(errors), 1, p.log.tail())
        self.assertEqual(len(p.child_pids("actuator")), 1)
        body = p.wait_status("/ready", 503, timeout=10,
                             where=lambda b: "failed permanently" in b)
        self.assertIn("actuator: failed permanently", body)
        mark = p.mark()
        p.wait_logs(3, since=mark, proc="poller", msg="polled task counts")
        self.assertEqual(len(p.child_pids("actuator")), 1)
        self.assertEqual(p.stop()[0], 0)

    # SIGTERM ------------------------------------------------------------
    def test_sigterm_stops_everything(self):
        p = self.start()
        pids = {c: p.child_pid(c) for c in harness.CHILDREN}
        for sock in ("demand.sock", "health.sock"):
            self.assertTrue(os.path.exists(os.path.join(p.run_dir, sock)))
        mark = p.mark()
        rc, took = p.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, p.log.tail())
        self.assertLess(took, 10, "default --shutdown-grace is 10s")
        for c, pid in pids.items():
            self.assert_reaped(pid)
            e = p.lines(since=mark, proc="supervisor",
                        msg="the %s stopped: exited with status 0" % c)
            self.assertEqual(len(e), 1, p.log.tail())
            self.assertTrue(p.lines(since=mark, proc=c,
                                    msg="stopping (Terminated)"))
        sd = p.lines(since=mark, proc="supervisor", msg="shutting down")
        self.assertEqual(len(sd), 1)
        self.assertEqual(sd[0]["signal"], "Terminated")
        self.assertEqual(p.lines()[-1]["msg"], "stopped")
        left = [f for f in os.listdir(p.run_dir) if f.endswith(".sock")]
        self.assertEqual(left, [], "sockets left in the run dir")
        left = [pid for pid in harness.processes_mentioning(self.tdir.path)
                if pid != self.sim.proc.pid]
        self.assertEqual(left, [], "processes left after the exit")

    def test_sigterm_escalates_to_sigkill(self):
        p = self.start(shutdown_grace="2s")
        stuck = p.child_pid("poller")
        other = p.child_pid("actuator")
        os.kill(stuck, signal.SIGSTOP)  # SIGTERM stays pending
        self.addCleanup(harness.signal_pid, stuck, signal.SIGCONT)
        mark = p.mark()
        rc, took = p.stop(signal.SIGTERM, timeout=30)
        self.assertEqual(rc, 0, p.log.tail())
        self.assertGreaterEqual(took, 2.0 - 0.1)
        self.assertLess(took, 2.0 + harness.scaled(8))
        warn = p.lines(since=mark, proc="supervisor",
                       msg=re.compile(r"^children did not stop within 2000 "
                                      r"ms; sending SIGKILL"))
        self.assertEqual(len(warn), 1, p.log.tail())
        self.assertTrue(p.lines(since=mark, proc="supervisor",
                                msg="the poller stopped: killed by signal 9 "
                                    "(Killed)"))
        self.assertTrue(p.lines(since=mark, proc="supervisor",
                                msg="the actuator stopped: exited with "
                                    "status 0"))
        self.assert_reaped(stuck)
        self.assert_reaped(other)

    # PID 1 --------------------------------------------------------------
    def test_pid1_in_a_pid_namespace(self):
        unshare = shutil.which("unshare")
        nsenter = shutil.which("nsenter")
        if not unshare or not nsenter:
            self.skipTest("unshare/nsenter (util-linux) not installed")
        wrapper = [unshare, "--pid", "--fork", "--mount-proc",
                   "--kill-child"]
        if os.geteuid() != 0:
            wrapper[1:1] = ["--user", "--map-root-user"]
        probe = subprocess.run(wrapper + ["true"], capture_output=True,
                               text=True, timeout=harness.scaled(30))
        if probe.returncode != 0:
            self.skipTest("unshare --pid is not permitted here: %s" %
                          probe.stderr.strip())
        p = self.start_provisioner(wrapper=wrapper, log_level="debug")
        first = p.lines(proc="supervisor")[0]
        self.assertEqual(first["pid"], 1, first)
        p.wait_ready(timeout=40)
        sup = p.pid
        self.assertEqual(harness.proc_status(sup)["NSpid"].split()[-1], "1")
        # An orphan inside the namespace: sh starts it and exits, so the
        # kernel hands it to the namespace's init, the supervisor.
        marker = self.tdir.join("orphan")
        r = subprocess.run(
            [nsenter, "--target", str(sup), "--pid", "--mount", "--",
             "/bin/sh", "-c",
             '%s -c "import time; time.sleep(600)" %s </dev/null '
             '>/dev/null 2>&1 & echo $!' % (harness.PYTHON, marker)],
            capture_output=True, text=True, timeout=harness.scaled(30))
        self.assertEqual(r.returncode, 0, r.stderr)
        ns_pid = int(r.stdout.split()[-1])

        def orphan():
            for pid in harness.processes_mentioning(marker):
                st = harness.proc_status(pid)
                if st and st["NSpid"].split()[-1] == str(ns_pid):
                    return pid
            return None
        host_pid = harness.wait_for(orphan, 10, what="the orphan")
        harness.wait_for(lambda: harness.proc_status(host_pid)["PPid"] ==
                         str(sup), 10, what="the orphan to be reparented "
                         "to the supervisor")
        os.kill(host_pid, signal.SIGKILL)
        self.assert_reaped(host_pid)  # no zombie left
        p.wait_log(proc="supervisor", msg="reaped orphan pid %d" % ns_pid)
        # Still fine, and a clean exit on SIGTERM.
        self.assertEqual(p.get("/live")[0], 200)
        children = [c for c in harness.proc_children(sup)]
        self.assertEqual(len(children), 2, children)
        rc, took = p.stop(signal.SIGTERM)
        self.assertEqual(rc, 0, p.log.tail())
        self.assertEqual(p.lines()[-1]["msg"], "stopped")
        for c in children:
            self.assert_reaped(c)


if __name__ == "__main__":
    harness.main()
