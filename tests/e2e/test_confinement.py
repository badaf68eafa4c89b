#!/usr/bin/python3
"""End-to-end: the children run confined, as the kernel reports it.

With the daemon working against both simulators, each child's
/proc/PID/status (every thread's) shows NoNewPrivs 1 and Seccomp 2 (a
filter), its core file limit is 0 (the supervisor's too), and its "confined" log
line says what
Landlock lets it read: the poller its CA only (its token comes on a pipe),
never the configuration or anything Kubernetes; the actuator its Kubernetes
credentials only, never the CircleCI token.  A child restarted after
kill -9 is confined again, starting from the configuration saved in the run
directory, and a configuration change reaches both confined children over
their sockets.  (tests/unit/confine_test.c judges the same
rules from inside a confined process: what it can open, write, execute.)
"""

import os
import re
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import KubeTestCase, pool_name  # noqa: E402

CLS = "e2e-org/confined"


def landlock_abi():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    nr = {"x86_64": 444, "aarch64": 444}.get(os.uname().machine)
    if nr is None:
        return 0
    abi = libc.syscall(nr, None, 0, 1)
    return max(abi, 0)


class ConfinementTest(KubeTestCase):

    def assert_confined(self, pid, name):
        tasks = os.listdir("/proc/%d/task" % pid)
        self.assertGreater(len(tasks), 1, "%s: nng's threads" % name)
        for tid in tasks:
            st = harness.proc_status(int(tid)) or {}
            if not st:
                continue  # a thread that just ended
            self.assertEqual(st.get("NoNewPrivs"), "1", (name, tid))
            self.assertEqual(st.get("Seccomp"), "2", (name, tid))
            self.assertGreaterEqual(int(st.get("Seccomp_filters", "0")), 1)
        with open("/proc/%d/limits" % pid) as f:
            core = [ln.split() for ln in f if ln.startswith("Max core")][0]
        self.assertEqual(core[4:6], ["0", "0"], "%s: core file limit" % name)

    def confined_line(self, p, name, pid):
        e = p.wait_log(proc=name, msg="confined",
                       where=lambda e: e["pid"] == pid)
        self.assertTrue(e["seccomp"], e)
        self.assertTrue(e["no_new_privs"], e)
        self.assertFalse(e["dumpable"], e)
        if landlock_abi() >= 1:
            self.assertTrue(e["files_restricted"], e)
            self.assertGreaterEqual(e["landlock_abi"], 1, e)
        self.assertEqual(e["writable"], p.run_dir, e)
        return e["readable"].split()

    def test_children_are_confined(self):
        circle, kube, p = self.start_stack({CLS: {"minReplicas": 1}},
                                           kube={"auth": "token-file"})
        p.wait_ready(timeout=60)
        self.wait_pool(p, kube, pool_name(CLS), 1)
        tdir = self.tdir.path
        pids = {c: p.child_pid(c) for c in harness.CHILDREN}
        for name, pid in pids.items():
            self.assert_confined(pid, name)
        # The supervisor (not confined) may hold the API token: no core.
        with open("/proc/%d/limits" % p.pid) as f:
            core = [ln.split() for ln in f if ln.startswith("Max core")][0]
        self.assertEqual(core[4:6], ["0", "0"])
        readable = {c: self.confined_line(p, c, pid)
                    for c, pid in pids.items()}
        # The poller: the CA it checks CircleCI with; nothing else of the
        # test directory, not even the token file (the supervisor hands
        # it the token on a pipe, and a rotated one over its socket).
        mine = [r for r in readable["poller"] if r.startswith(tdir)]
        self.assertEqual(mine, [self.tdir.pki["ca"]])
        self.assertIn("--circle-token-fd",
                      harness.proc_cmdline(pids["poller"]))
        # The actuator: the directory of its kubeconfig's files (token,
        # the only thing in it besides the kubeconfig) and the CA.
        mine = [r for r in readable["actuator"] if r.startswith(tdir)]
        self.assertEqual(sorted(mine), sorted(
            [os.path.dirname(kube.token_file), self.tdir.pki["ca"]]))
        # Neither reads the configuration once running.
        for r in readable["poller"] + readable["actuator"]:
            self.assertNotIn(r, (p.config, os.path.dirname(p.config)))

        # Restarted, confined again: from the configuration saved in the
        # run directory, with the token on a pipe, and the configuration
        # socket working once confined (a change reaches it).
        mark = p.mark()
        harness.signal_pid(pids["poller"], signal.SIGKILL)
        new = p.wait_child("poller", since=mark, other_than=pids["poller"])
        self.assertEqual(self.confined_line(p, "poller", new),
                         readable["poller"])
        self.assert_confined(new, "poller")
        argv = harness.proc_cmdline(new)
        last = len(argv) - 1 - argv[::-1].index("--config")  # it wins
        self.assertEqual(argv[last + 1],
                         os.path.join(p.run_dir, "poller-config.yaml"))
        p.wait_ready(timeout=60)
        mark = p.mark()
        self.write_config({CLS: {"minReplicas": 2}})
        for c in harness.CHILDREN:
            p.wait_log(since=mark, proc="supervisor", child=c,
                       msg="configuration applied", generation=2)
        self.wait_pool(p, kube, pool_name(CLS), 2)
        self.assertEqual(
            [e for e in p.lines() if e.get("msg", "").startswith(
                "blocked a system call")], [])
        # Confined to the end: both stop on SIGTERM by themselves (in a
        # sanitizer build, after the leak check, which runs under the
        # same filter), not killed at the grace deadline.
        self.assertEqual(p.stop()[0], 0)
        for c in harness.CHILDREN:
            self.assertEqual(
                [e["msg"] for e in p.lines(proc="supervisor", msg=re.compile(
                    "^the %s stopped" % c))],
                ["the %s stopped: exited with status 0" % c])


if __name__ == "__main__":
    harness.main()
