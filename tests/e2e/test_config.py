#!/usr/bin/python3
"""End-to-end: configuration, token and command-line errors, as the
operator meets them at start-up.

An invalid config.yaml stops the daemon before anything starts (non-zero
exit, one JSON error line naming file:line:col and the key path, no child);
a missing token is a clear start-up error; --check-config prints a summary
without secrets and exits 0, or non-zero on a bad file; --version, --help
(every flag of common/flags.c listed, for the daemon and each child); an
unknown flag or a bad value exits 2 with a message.  Mistakes only the API
can reveal (a resource class it does not know, a wrong API token) are
reported once, loudly, at start-up.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLS = "e2e-org/x"
RUNNER_TOKEN = "e2e-runner-token-3c9d1e77f0"
FLAGS_C = os.path.join(harness.SOURCE_DIR, "common", "flags.c")
CMAKELISTS = os.path.join(harness.SOURCE_DIR, "CMakeLists.txt")

GOOD = '''resourceClass:
  "%s":
    token: %s
    minReplicas: 1
    maxReplicas: 4
    idleTimeout: "10m"
  "e2e-org/y":
    token: e2e-runner-token-second-5b2a
''' % (CLS, RUNNER_TOKEN)

# (name, config text, position, key path or None, problem): the error line
# must read "<path>:<position>: <key path>: ...<problem>...".
BAD = [
    ("unknown key", '''resourceClass:
  "e2e-org/x":
    token: %s
    minReplicas: 1
    maxReplica: 4
''' % RUNNER_TOKEN, "5:5", 'resourceClass."e2e-org/x"',
     'unknown key "maxReplica"'),
    ("min above max", '''resourceClass:
  "e2e-org/x":
    token: %s
    minReplicas: 5
    maxReplicas: 3
''' % RUNNER_TOKEN, "5:18", 'resourceClass."e2e-org/x".maxReplicas',
     "must be >= minReplicas"),
    ("bad duration", '''resourceClass:
  "e2e-org/x":
    token: %s
    idleTimeout: "ten minutes"
''' % RUNNER_TOKEN, "4:18", 'resourceClass."e2e-org/x".idleTimeout',
     'invalid duration "ten minutes"'),
    ("bad YAML", '''resourceClass:
  "e2e-org/x":
    token: %s
      minReplicas: 2
''' % RUNNER_TOKEN, "4:18", None, "mapping values are not allowed"),
    ("unknown top-level key", '''resourceClasss:
  "e2e-org/x":
    token: %s
''' % RUNNER_TOKEN, "1:1", None, 'unknown key "resourceClasss"'),
    ("both forms", '''resourceClass:
  "e2e-org/x":
    token: %s
resourceClasses:
  "e2e-org/y": {}
''' % RUNNER_TOKEN, "4:1", None, "mixes the 0.1.0 form"),
    ("0.1.2 name rule", '''resourceClass:
  "E2E-Org/x":
    token: %s
''' % RUNNER_TOKEN, "2:3", 'resourceClass."E2E-Org/x"',
     'contains "E" in the namespace'),
]


def flag_names():
    """Every long option of common/flags.c (the one flag table)."""
    with open(FLAGS_C) as f:
        src = f.read()
    table = src[src.index("long_opts[]"):]
    table = table[:table.index("};")]
    names = re.findall(r'\{\s*"([a-z][a-z-]*)"\s*,', table)
    assert len(names) >= 15, names
    return names


def project_version():
    with open(CMAKELISTS) as f:
        return re.search(r"project\([^)]*VERSION\s+([0-9.]+)",
                         f.read()).group(1)


class ConfigTest(harness.E2ETestCase):

    def daemon(self, config_text, token=harness.API_TOKEN, **kw):
        """Starts the daemon on config_text and waits for it to exit."""
        self.tdir.write_config(config_text)
        p = self.provisioner(token=token, **kw)
        p.start(wait_serving=False)
        rc = p.wait_exit(30)
        return p, rc

    def assert_nothing_started(self, p):
        self.assertEqual(p.lines(msg=re.compile("^started the ")), [])
        self.assertEqual(p.lines(msg="serving HTTP"), [])
        self.assertEqual([e for e in p.lines() if e["proc"] != "supervisor"],
                         [])
        self.assertEqual(harness.processes_mentioning(self.tdir.path), [])
        if os.path.isdir(p.run_dir):
            self.assertEqual([f for f in os.listdir(p.run_dir)
                              if f.endswith(".sock")], [])

    def assert_no_secrets(self, text):
        for secret in (harness.API_TOKEN, RUNNER_TOKEN,
                       "e2e-runner-token-second-5b2a"):
            self.assertNotIn(secret, text)

    # Invalid configuration ----------------------------------------------
    def test_invalid_config_stops_before_any_child(self):
        for name, text, pos, keypath, problem in BAD:
            with self.subTest(name):
                p, rc = self.daemon(text)
                self.assertNotEqual(rc, 0, p.log.tail())
                errors = p.lines(level="error")
                self.assertEqual(len(errors), 1, p.log.tail())
                e = errors[0]
                self.assertEqual(e["msg"], "invalid configuration", e)
                prefix = "%s:%s: " % (p.config, pos)
                self.assertTrue(e["error"].startswith(prefix),
                                "%r does not start with %r" % (e["error"],
                                                               prefix))
                if keypath is not None:
                    self.assertTrue(e["error"][len(prefix):].startswith(
                        keypath + ": "), e["error"])
                self.assertIn(problem, e["error"])
                self.assertEqual(len(e["error"].splitlines()), 1)
                self.assert_nothing_started(p)
                self.assert_no_secrets("\n".join(p.log.raw))
                # --check-config says the same on stderr, exit non-zero.
                r = harness.run_cli(["--check-config", "--config", p.config,
                                     "--circle-token-file",
                                     self.tdir.write_token("tok")])
                self.assertNotEqual(r.returncode, 0)
                self.assertIn(prefix, r.stderr)
                self.assertIn(problem, r.stderr)
                self.assertNotIn("configuration OK", r.stdout)

    def test_missing_config_file(self):
        p = self.provisioner(config=self.tdir.join("nope.yaml"))
        p.start(wait_serving=False)
        self.assertNotEqual(p.wait_exit(30), 0)
        e = p.lines(level="error")
        self.assertEqual(len(e), 1, p.log.tail())
        self.assertIn(self.tdir.join("nope.yaml"), e[0].get("error", "") +
                      e[0]["msg"])
        self.assert_nothing_started(p)

    # The API token ------------------------------------------------------
    def test_missing_token(self):
        p, rc = self.daemon(GOOD, token=None)
        self.assertNotEqual(rc, 0)
        e = p.lines(level="error")
        self.assertEqual(len(e), 1, p.log.tail())
        self.assertEqual(e[0]["msg"], "no CircleCI API token: CIRCLE_TOKEN "
                         "is unset and %s does not exist" %
                         self.tdir.join("no-such-token"))
        self.assert_nothing_started(p)

    def test_empty_token(self):
        for via in ("file", "env"):
            with self.subTest(via):
                p, rc = self.daemon(GOOD, token="", token_via=via)
                self.assertNotEqual(rc, 0)
                e = p.lines(level="error")
                self.assertEqual(len(e), 1, p.log.tail())
                if via == "file":
                    self.assertIn("the CircleCI API token is empty",
                                  e[0]["msg"])
                else:  # an empty CIRCLE_TOKEN counts as unset
                    self.assertIn("CIRCLE_TOKEN is unset", e[0]["msg"])
                self.assert_nothing_started(p)

    # Mistakes only the API can reveal -----------------------------------
    def test_unknown_class_and_wrong_token_are_reported_loudly(self):
        """A class name the API does not know reads as a healthy 0 on the
        task endpoints; a wrong API token is 401 everywhere.  Both are said
        once, at start-up, as errors an operator can act on."""
        typo = "e2e-org/tpyo"
        sim = self.start_circleci([CLS])
        self.write_config({CLS: {}, typo: {}})
        p = self.start_provisioner(poll_interval="200ms")
        found = p.wait_log(proc="poller", msg=re.compile(
            r"^resource class %s found at %s \(0 runners registered\)$" % (
                re.escape(CLS), re.escape(sim.url))))
        self.assertEqual(found["level"], "info")
        missing = p.wait_log(proc="poller", msg=re.compile(
            r"^resource class %s was not found at %s: " % (
                re.escape(typo), re.escape(sim.url))))
        self.assertEqual(missing["level"], "error")
        mark = p.mark()
        p.wait_logs(5, since=mark, proc="poller", msg="polled task counts",
                    resource_class=typo, unclaimed_tasks=0, running_tasks=0,
                    desired_vms=3)
        self.assertEqual(len(p.lines(msg=missing["msg"])), 1)
        self.assertEqual(p.stop()[0], 0)

        # The same daemon with a token CircleCI does not accept.
        p = self.start_provisioner(token="e2e-wrong-token-0000",
                                   poll_interval="200ms", name="wrong")
        for cls in (CLS, typo):
            e = p.wait_log(proc="poller", msg=re.compile(
                r"^CircleCI rejected the API token checking resource class "
                r"%s \(HTTP 401" % re.escape(cls)))
            self.assertEqual(e["level"], "error")
            p.wait_log(proc="poller", msg=re.compile(
                r"^CircleCI rejected the API token for %s \(HTTP 401\)" %
                re.escape(cls)))
        body = p.wait_status("/ready", 503, timeout=20,
                             where=lambda b: "token rejected" in b)
        self.assertIn("poller: ", body)
        mark = p.mark()
        p.assert_stays(lambda: not p.lines(since=mark, level="error"), 3,
                       "silence after the first report")
        self.assertEqual(p.lines(proc="actuator",
                                 msg=re.compile("^would scale")), [])
        self.assertFalse(any(r["token_matched"] for r in sim.requests()
                             if r["status"] == 401))
        self.assertEqual(p.stop()[0], 0)

    # --check-config -----------------------------------------------------
    def test_check_config_summary_without_secrets(self):
        cfg = self.tdir.write_config(GOOD)
        for via in ("file", "env"):
            with self.subTest(via):
                args = ["--check-config", "--config", cfg,
                        "--circleci-api-addr", "https://circleci.example"]
                env = {}
                if via == "file":
                    args += ["--circle-token-file",
                             self.tdir.write_token(harness.API_TOKEN)]
                else:
                    env["CIRCLE_TOKEN"] = harness.API_TOKEN
                r = harness.run_cli(args, env=env)
                self.assertEqual(r.returncode, 0, r.stderr)
                out = r.stdout
                self.assertIn("%s: configuration OK" % cfg, out)
                self.assertIn("CircleCI API token: from %s" % (
                    "CIRCLE_TOKEN" if via == "env" else
                    self.tdir.join("circle-token")), out)
                self.assertIn("https://circleci.example", out)
                self.assertRegex(out, r"(?m)^%s: minReplicas=1 maxReplicas=4"
                                 % re.escape(CLS))
                self.assertRegex(out, r"(?m)^e2e-org/y: minReplicas=3 "
                                 r"maxReplicas=10")
                self.assertRegex(out, r"idleTimeout=10m")
                self.assert_no_secrets(out + r.stderr)
                # It only checks: nothing runs, nothing listens.
                self.assertNotIn("started the", out + r.stderr)
                self.assertFalse(os.path.exists(self.tdir.run_dir))

    def test_check_config_needs_the_token(self):
        cfg = self.tdir.write_config(GOOD)
        r = harness.run_cli(["--check-config", "--config", cfg,
                             "--circle-token-file",
                             self.tdir.join("absent")])
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no CircleCI API token", r.stderr)

    # --version, --help, bad flags ---------------------------------------
    def test_version(self):
        want = project_version()
        for binary in (harness.SUPERVISOR, harness.POLLER, harness.ACTUATOR):
            with self.subTest(binary):
                r = harness.run_cli(["--version"], binary=binary)
                self.assertEqual(r.returncode, 0)
                self.assertEqual(r.stdout.strip(), "%s %s" % (
                    os.path.basename(binary), want))
                self.assertEqual(r.stderr, "")

    def test_help_lists_every_flag(self):
        names = flag_names()
        for binary in (harness.SUPERVISOR, harness.POLLER, harness.ACTUATOR):
            with self.subTest(binary):
                r = harness.run_cli(["--help"], binary=binary)
                self.assertEqual(r.returncode, 0)
                self.assertTrue(r.stdout.startswith(
                    "usage: %s " % os.path.basename(binary)), r.stdout)
                listed = set(re.findall(r"(?m)^\s+(--[a-z-]+)", r.stdout))
                self.assertEqual(listed, {"--" + n for n in names})
                # Defaults from DESIGN §7 are shown.
                for default in ("/etc/runner-provisioner/config.yaml",
                                "/etc/runner-provisioner/circle-token",
                                "https://runner.circleci.com", ":8000",
                                ":8001", "1s"):
                    self.assertIn(default, r.stdout)

    def test_bad_flags_exit_2(self):
        cases = [
            (["--bogus"], 'unknown flag "--bogus"'),
            (["--config"], "--config: missing value"),
            (["--poll-interval", "soon"], "--poll-interval"),
            (["--poll-interval", "1ms"], "too short"),
            (["--circleci-api-addr", "http://127.0.0.1:1"], "https://"),
            (["--ready-addr", "8000"], "--ready-addr"),
            (["--log-level", "loud"], "--log-level"),
            (["stray-argument"], "unexpected argument"),
        ]
        for args, text in cases:
            with self.subTest(args=args):
                r = harness.run_cli(args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(text, r.stderr)
                self.assertTrue(r.stderr.startswith("runner-provisioner: "),
                                r.stderr)
                self.assertEqual(len(r.stderr.strip().splitlines()), 1,
                                 r.stderr)
                self.assertEqual(r.stdout, "")

    def test_children_reject_bad_flags_permanently(self):
        """Run by hand, a child with a bad flag logs one JSON error and exits
        100, the status the supervisor does not restart."""
        for binary in (harness.POLLER, harness.ACTUATOR):
            with self.subTest(binary):
                r = harness.run_cli(["--bogus"], binary=binary)
                self.assertEqual(r.returncode, 100, r.stderr)
                log = harness.LogFile(self.tdir.write("child.log", r.stderr))
                log.check()
                self.assertEqual(len(log.entries), 1, r.stderr)
                self.assertEqual(log.entries[0]["level"], "error")
                self.assertIn('unknown flag "--bogus"',
                              log.entries[0]["msg"])


if __name__ == "__main__":
    harness.main()
