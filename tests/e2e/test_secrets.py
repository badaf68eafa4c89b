#!/usr/bin/python3
"""End-to-end: the tokens never show.

With a distinctive CircleCI API token and distinctive runner tokens, a run
through healthy polling and failures (500, 401, 429 and malformed answers,
some of whose bodies echo the API token back, as a misbehaving proxy might)
while /ready, /metrics and /live are probed over and over: neither token
appears in any log line, metric or probe body, nor on any process's command
line, nor in any process's environment (the poller gets its token on a
pipe, from a file or from a CIRCLE_TOKEN given to the supervisor, which is
wiped from the supervisor's own environment).
"""

import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

A = "e2e-org/secret-a"
B = "e2e-org/secret-b"


def distinctive(kind):
    return "e2e%s%s" % (kind, secrets.token_hex(16))


class SecretsTest(harness.E2ETestCase):

    def setUp(self):
        super().setUp()
        self.api_token = distinctive("apitok")
        self.runner_tokens = {A: distinctive("runtokA"),
                              B: distinctive("runtokB")}
        self.sim = self.start_circleci(self.runner_tokens,
                                       api_token=self.api_token)
        self.sim.set_counts(A, 3, 1)
        self.write_config({A: {"token": self.runner_tokens[A],
                               "minReplicas": 1},
                           B: {"token": self.runner_tokens[B]}})
        self.bodies = []

    def secrets(self):
        return [self.api_token] + list(self.runner_tokens.values())

    def assert_clean(self, text, where):
        for s in self.secrets():
            # The whole token, and its halves: a truncated line must not
            # leak a usable part either.
            for part in (s, s[:len(s) // 2], s[len(s) // 2:]):
                self.assertNotIn(part, text, "a token (part) in %s" % where)

    def probe(self, p, times=1):
        for _ in range(times):
            for path in ("/ready", "/metrics", "/live"):
                status, body, headers = p.get_full(path)
                self.bodies.append((path, status, body +
                                    repr(sorted(headers.items()))))

    def check_processes(self, p, via):
        pids = {"supervisor": p.pid}
        pids.update({c: p.child_pid(c) for c in harness.CHILDREN})
        for name, pid in pids.items():
            self.assert_clean(" ".join(harness.proc_cmdline(pid)),
                              "the %s's command line" % name)
        # No token in any environment: not in the children's, and the
        # supervisor wiped CIRCLE_TOKEN from its own (/proc/PID/environ
        # shows the memory it started with).  The poller got it on a pipe.
        for name, pid in pids.items():
            env = harness.proc_environ(pid)
            self.assertNotIn(b"CIRCLE_TOKEN=" + self.api_token[:4].encode(),
                             env, name)
            for s in self.secrets():
                self.assertNotIn(s.encode(), env, name)
                self.assertNotIn(s[:len(s) // 2].encode(), env, name)
        # Wherever the supervisor took the token from, the poller gets
        # the one it runs on a pipe.
        argv = harness.proc_cmdline(pids["poller"])
        self.assertIn("--circle-token-fd", argv)
        self.assertEqual(argv[argv.index("--circle-token-fd") + 1], "3")

    def check_memory(self, p, via):
        """What a core dump would show (none is written: every process is
        not dumpable): the supervisor holds the configuration it delivers
        (runner tokens included) and the API token it hands to each new
        poller; the poller never keeps runner tokens, the actuator never
        sees the API token.  The plain build only: a sanitizer build's
        writable mappings are many times larger (its allocator and
        quarantine), and scanning them took ten minutes of CI."""
        if harness.sanitized():
            return
        pids = {"supervisor": p.pid}
        pids.update({c: p.child_pid(c) for c in harness.CHILDREN})
        holds = {"supervisor": self.secrets(),
                 "poller": [self.api_token],
                 "actuator": list(self.runner_tokens.values())}
        for name, pid in pids.items():
            for s in self.secrets():
                if s in holds[name]:
                    continue
                found = harness.proc_memory_pieces(pid, s)
                self.assertEqual(found, [], "the %s holds pieces of a "
                                 "token it does not need" % name)

    def scenario(self, via):
        p = self.start_provisioner(token=self.api_token, token_via=via,
                                   poll_interval="300ms")
        p.wait_ready()
        self.check_processes(p, via)
        self.check_memory(p, via)
        self.probe(p, 5)
        sim = self.sim
        echo = {"message": "invalid Circle-Token %s for %s" % (
            self.api_token, A)}

        # 500 whose body quotes the token.
        mark = p.mark()
        sim.fault(endpoint="tasks", key=A, status=500, body=echo, count=2)
        e = p.wait_log(since=mark, proc="poller",
                       msg="failed to get unclaimed tasks",
                       resource_class=A, status=500)
        self.assertIn("[REDACTED]", e["error"])
        self.probe(p, 5)
        p.wait_log(since=mark, proc="poller", msg="polled task counts",
                   resource_class=A)

        # 429 with the token in the message.
        mark = p.mark()
        sim.fault(endpoint="running", key=A, status=429, body=echo,
                  retry_after="1", count=1)
        p.wait_log(since=mark, proc="poller",
                   msg="failed to get running tasks", resource_class=A,
                   status=429)
        self.probe(p, 3)

        # Malformed.
        mark = p.mark()
        sim.fault(endpoint="tasks", key=A, malformed=True, count=1)
        p.wait_log(since=mark, proc="poller",
                   msg="failed to get unclaimed tasks", resource_class=A)
        self.probe(p, 3)

        # 401 echoing the token: the clear configuration error, and /ready
        # says "token rejected" without quoting it.
        mark = p.mark()
        sim.fault(endpoint="*", path=r"^/api/v3/runner/tasks", key=B,
                  status=401, body=echo, count=-1)
        p.wait_log(since=mark, proc="poller", msg="failed to get "
                   "unclaimed tasks", resource_class=B, status=401)
        body = p.wait_status("/ready", 503, timeout=20,
                             where=lambda b: "token rejected" in b)
        self.assertIn("[REDACTED]", body)
        self.probe(p, 10)

        # Healthy again for A meanwhile.
        p.wait_log(since=mark, proc="poller", msg="polled task counts",
                   resource_class=A)
        self.probe(p, 3)
        self.check_processes(p, via)
        rc, _ = p.stop()
        self.assertEqual(rc, 0)

        self.assertGreater(len(self.bodies), 80)
        for path, status, body in self.bodies:
            self.assert_clean(body, "GET %s (%d)" % (path, status))
        with open(p.log_path, "rb") as f:
            log = f.read().decode("utf-8", "replace")
        p.log.check()
        self.assertGreater(len(p.log.entries), 30)
        self.assert_clean(log, "the log")
        # The simulator saw the real token: the redaction hid it, it was
        # not lost on the way.
        reqs = sim.requests(resource_class=A)
        self.assertTrue(reqs and all(r["token_matched"] for r in reqs))

    def test_token_from_environment(self):
        self.scenario("env")

    def test_token_from_file(self):
        self.scenario("file")


if __name__ == "__main__":
    harness.main()
