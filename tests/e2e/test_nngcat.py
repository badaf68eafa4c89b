#!/usr/bin/python3
"""End-to-end: the IPC contract seen by an independent nng peer.

nngcat (Debian's nng-utils) subscribes to the poller's demand socket in the
daemon's run dir; the messages it receives are decoded here from the wire
format in proto/msg.h (magic "RP", version 1, kind 1 = demand, little-endian
fields), independently of the C code, and must carry the simulator's
counts, ok = 1, and, while a class fails, ok = 0 with the error kind and
HTTP status and zero counts (a failure is never published as demand).  A
foreign respondent on the health socket, answering garbage or impersonating
the poller, is counted and dropped without disturbing readiness.  The run
dir and its sockets are private.
"""

import os
import re
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

A = "e2e-org/wire_a"
B = "e2e-org/wire-b"


class NngcatTest(harness.E2ETestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not os.access(harness.NNGCAT, os.X_OK):
            raise harness.unittest.SkipTest("nngcat not installed "
                                            "(apt install nng-utils)")

    def setUp(self):
        super().setUp()
        self.sim = self.start_circleci([A, B])
        self.sim.set_counts(A, 3, 2)
        self.sim.set_counts(B, 0, 1)
        self.write_config({A: {"minReplicas": 1}, B: {}})
        self.p = self.start_provisioner(poll_interval="300ms")
        self.p.wait_ready()
        self.url = "ipc://%s/demand.sock" % self.p.run_dir

    def subscriber(self, name="demand.hex"):
        sub = harness.NngcatSubscriber(self.url, self.tdir.join(name))
        self.addCleanup(sub.stop)
        return sub.start()

    def wait_messages(self, sub, pred, what, timeout=30):
        def found():
            msgs = [m for m in sub.messages() if pred(m)]
            return msgs or None
        return self.p.wait(found, timeout, what)

    def test_demand_messages_on_the_wire(self):
        p = self.p
        sub = self.subscriber()
        t0 = time.time()
        # Polls are spread over the interval: the first and the last cycle
        # seen may be cut, 8 messages hold at least two whole ones.
        msgs = p.wait(lambda: (lambda m: m if len(m) >= 8 else None)(
            sub.messages()), 30, "8 demand messages")
        poller = p.child_pid("poller")
        for m in msgs:
            self.assertEqual(m["magic"], b"RP")
            self.assertEqual(m["version"], 1)
            self.assertEqual(m["kind"], "demand", m)
            self.assertEqual(m["pid"], poller, m)
            self.assertAlmostEqual(m["observed_ms"] / 1000.0, t0, delta=60)
            self.assertIn(m["resource_class"], (A, B))
            self.assertEqual((m["ok"], m["error_name"], m["http_status"]),
                             (1, "none", 200), m)
            want = (3, 2) if m["resource_class"] == A else (0, 1)
            self.assertEqual((m["unclaimed"], m["running"]), want, m)
        # One sender, one sequence; cycles advance; every cycle names both
        # classes.
        seqs = [m["seq"] for m in msgs]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), len(seqs))
        cycles = {}
        for m in msgs:
            cycles.setdefault(m["cycle"], set()).add(m["resource_class"])
        full = [c for c, names in cycles.items() if names == {A, B}]
        self.assertGreaterEqual(len(full), 2, cycles)
        self.assertEqual(sorted(cycles), list(range(min(cycles),
                                                    max(cycles) + 1)))

        # Counts change: the wire follows.
        self.sim.set_counts(A, 7, 0)
        self.wait_messages(sub, lambda m: m["resource_class"] == A and
                           m["unclaimed"] == 7 and m["running"] == 0 and
                           m["ok"] == 1, "A's new counts")

    def test_failures_are_published_as_failures(self):
        sub = self.subscriber()
        sim = self.sim
        self.wait_messages(sub, lambda m: m["resource_class"] == A,
                           "a first message for A")
        sim.fault(endpoint="tasks", key=A, status=500, count=-1)
        bad = self.wait_messages(
            sub, lambda m: m["resource_class"] == A and m["ok"] == 0,
            "a failure for A")[0]
        self.assertEqual((bad["error_name"], bad["http_status"],
                          bad["unclaimed"], bad["running"]),
                         ("http", 500, 0, 0), bad)
        sim.clear_faults()
        mark = len(sub.raw())
        sim.fault(endpoint="running", key=A, status=429, retry_after="2",
                  count=1)
        limited = self.wait_messages(
            sub, lambda m: m["resource_class"] == A and
            m["error_name"] == "rate_limited", "a 429 for A")
        for m in limited:
            self.assertEqual((m["ok"], m["http_status"], m["unclaimed"],
                              m["running"]), (0, 429, 0, 0), m)
        # Back to real counts, never a made-up zero in between.
        self.wait_messages(sub, lambda m: m["resource_class"] == A and
                           m["ok"] == 1 and m["seq"] > limited[-1]["seq"],
                           "A healthy again")
        for m in sub.messages():
            if m["resource_class"] == A and m["ok"] == 1:
                self.assertEqual((m["unclaimed"], m["running"]), (3, 2), m)
            if m["ok"] == 0:
                self.assertNotEqual(m["error_name"], "none", m)
                self.assertEqual((m["unclaimed"], m["running"]), (0, 0), m)
        self.assertGreater(len(sub.raw()), mark)
        # B was never touched.
        self.assertTrue(all(m["ok"] == 1 for m in sub.messages()
                            if m["resource_class"] == B))

    def test_foreign_health_answers_are_dropped(self):
        p = self.p
        health = "ipc://%s/health.sock" % p.run_dir
        poller = p.child_pid("poller")
        # A valid-looking answer that claims to be the poller, healthy.
        detail, metrics = b"{}", b""
        payload = bytes([1, 1, 0, 0]) + (12345).to_bytes(8, "little") + \
            len(detail).to_bytes(4, "little") + \
            len(metrics).to_bytes(4, "little") + detail + metrics
        cases = [
            ("garbage", b"XX\x01\x03" + b"\0" * 20, "magic",
             re.compile(r"^dropped a malformed health answer \(magic\)$")),
            ("impostor", harness.encode_header(3, payload, 1, poller),
             "sender", re.compile(r"^dropped a health answer from pid %d "
                                  r"\(peer pid \d+\), which is not a "
                                  r"running child$" % poller)),
        ]
        for name, data, reason, msg in cases:
            with self.subTest(name):
                mark = p.mark()
                path = self.tdir.write(name + ".bin", data)
                peer = subprocess.Popen(
                    [harness.NNGCAT, "--respondent0", "--dial", health,
                     "--file", path], stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                    preexec_fn=harness.die_with_parent)
                self.addCleanup(lambda pr=peer: (pr.kill(), pr.wait()))
                e = p.wait_log(since=mark, proc="supervisor", msg=msg)
                self.assertEqual(e["level"], "warn", e)
                p.wait(lambda: (p.metrics().get(
                    "runner_provisioner_health_messages_rejected_total",
                    reason=reason) or 0) >= 1, 10, "the rejection counted")
                # The real children still count, and only they.
                status, body = p.ready()
                self.assertEqual(status, 200, body)
                self.assertEqual(body["children"]["poller"]["pid"], poller)
                peer.kill()
                peer.wait()
        self.assertEqual(p.get("/live")[0], 200)

    def test_run_dir_is_private(self):
        rd = self.p.run_dir
        st = os.stat(rd)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o700)
        self.assertEqual(st.st_uid, os.geteuid())
        for sock in ("demand.sock", "health.sock"):
            st = os.stat(os.path.join(rd, sock))
            self.assertTrue(stat.S_ISSOCK(st.st_mode), sock)
            self.assertEqual(stat.S_IMODE(st.st_mode) & 0o077, 0, sock)
        # A second daemon on the same run dir refuses to start.
        other = self.provisioner(run_dir=rd, name="second")
        other.start(wait_serving=False)
        self.assertNotEqual(other.wait_exit(30), 0)
        self.assertTrue(other.lines(level="error", msg=re.compile(
            "another runner-provisioner is using run dir")), other.log.tail())
        self.assertEqual(other.lines(msg=re.compile("^started the ")), [])
        # ...and the first one is unharmed.
        self.assertEqual(self.p.get("/ready")[0], 200)


if __name__ == "__main__":
    harness.main()
