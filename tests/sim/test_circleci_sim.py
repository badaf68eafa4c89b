#!/usr/bin/python3
"""Tests for the CircleCI runner API simulator (circleci_sim.py) and the
circleci group of simctl.py.  The simulator runs as a subprocess over TLS
with a throwaway CA; clients trust only that CA."""

import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import simhttp  # noqa: E402

PYTHON = "/usr/bin/python3"
SIM = os.path.join(HERE, "circleci_sim.py")
SIMCTL = os.path.join(HERE, "simctl.py")
API_TOKEN = "api-token-7f3a9c"
TASK_MS = 250
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
T_TASKS = "/api/v3/runner/tasks"
T_RUNNING = "/api/v3/runner/tasks/running"
T_RUNNER = "/api/v3/runner"


def wait_until(pred, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.02)


def die_with_parent():
    # The simulator must not outlive this test, even if we are SIGKILLed.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(
        PR_SET_PDEATHSIG, signal.SIGKILL)


class Sim:
    """circleci_sim.py in a subprocess; stop() is always safe to call."""

    def __init__(self, workdir, pki=None, args=()):
        self.workdir = workdir
        self.pki = pki
        self.args = list(args)
        self.proc = None
        self.port = None
        self.ctx = None
        if pki:
            self.ctx = ssl.create_default_context(cafile=pki["ca"])

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        port_file = os.path.join(self.workdir, "port")
        cmd = [PYTHON, SIM, "--listen", "127.0.0.1:0", "--port-file",
               port_file, "--token", API_TOKEN] + self.args
        if self.pki:
            cmd += ["--tls-cert", self.pki["cert"], "--tls-key",
                    self.pki["key"]]
        self.out = open(os.path.join(self.workdir, "stdout"), "w")
        self.err = open(os.path.join(self.workdir, "stderr"), "w")
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=self.err,
                                     stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("simulator exited %d: %s" % (
                    self.proc.returncode, self.stderr()))
            return os.path.exists(port_file)
        wait_until(ready, what="simulator port file")
        with open(port_file) as f:
            self.port = int(f.read())

    def stderr(self):
        with open(os.path.join(self.workdir, "stderr")) as f:
            return f.read()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait(timeout=10)
            self.out.close()
            self.err.close()

    def conn(self, timeout=10):
        if self.ctx:
            return http.client.HTTPSConnection(
                "127.0.0.1", self.port, context=self.ctx, timeout=timeout)
        return http.client.HTTPConnection("127.0.0.1", self.port,
                                          timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None):
        """Returns (status, headers, raw body); reuses conn when given."""
        c = conn or self.conn()
        try:
            data = json.dumps(body).encode() if body is not None else None
            h = dict(headers or {})
            if data is not None:
                h["Content-Type"] = "application/json"
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            if conn is None:
                c.close()

    def ctl(self, method, path, body=None, expect=200):
        status, _, raw = self.request(method, path, body)
        if expect is not None and status != expect:
            raise AssertionError("%s %s: %d %s (wanted %d)" % (
                method, path, status, raw, expect))
        return json.loads(raw)

    def api(self, path, rc=None, token=API_TOKEN, conn=None, raw_rc=None):
        """GET on the runner API.  rc is %2F-encoded unless raw_rc gives the
        query value verbatim."""
        q = ""
        if raw_rc is not None:
            q = "?resource-class=" + raw_rc
        elif rc is not None:
            q = "?" + urllib.parse.urlencode({"resource-class": rc})
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Circle-Token"] = token
        return self.request("GET", path + q, headers=headers, conn=conn)

    def count(self, path, rc):
        status, _, raw = self.api(path, rc)
        if status != 200:
            raise AssertionError("%s %s: %d %s" % (path, rc, status, raw))
        obj = json.loads(raw)
        key = ("unclaimed_task_count" if path == T_TASKS
               else "running_runner_tasks")
        self.assert_count_body(obj, key)
        return obj[key]

    @staticmethod
    def assert_count_body(obj, key):
        if set(obj) != {key} or type(obj[key]) is not int or obj[key] < 0:
            raise AssertionError("bad count body %r" % obj)


class CircleCISimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="circleci-sim-test-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, ignore_errors=True)
        cls.pki = simhttp.make_test_pki(os.path.join(cls.tmp, "pki"))
        cls.sim = Sim(os.path.join(cls.tmp, "sim"), cls.pki,
                      ["--class", "ns/pre=rt-pre",
                       "--task-duration-ms", str(TASK_MS)])
        cls.addClassCleanup(cls.sim.stop)
        cls.sim.start()

    def setUp(self):
        self.sim.ctl("DELETE", "/_sim/faults")
        self.sim.ctl("DELETE", "/_sim/ratelimit")

    def tearDown(self):
        self.sim.ctl("DELETE", "/_sim/faults")
        self.sim.ctl("DELETE", "/_sim/ratelimit")

    def new_class(self, name, token=None):
        r = self.sim.ctl("POST", "/_sim/classes",
                         {"name": name, "runner_token": token or "rt-" + name})
        self.assertTrue(r["created"])
        return name

    def fault(self, **spec):
        return self.sim.ctl("POST", "/_sim/faults", spec)["id"]

    def journal(self, since=0.0):
        return self.sim.ctl("GET", "/_sim/requests?since=%r" % since)[
            "requests"]

    # Model ----------------------------------------------------------
    def test_counts_follow_queue_claim_finish(self):
        rc = self.new_class("flow/a", "rt-flow")
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)
        self.assertEqual(self.sim.count(T_RUNNING, rc), 0)
        q = self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc,
                                                 "add": 3})
        self.assertEqual((q["unclaimed"], q["running"]), (3, 0))
        self.assertEqual(len(q["added"]), 3)
        self.assertEqual(self.sim.count(T_TASKS, rc), 3)

        c = self.sim.ctl("POST", "/_sim/claim", {
            "token": "rt-flow", "runner": "vm-1-r", "hostname": "vm-1"})
        self.assertEqual(c["task"]["id"], q["added"][0], "oldest first")
        self.assertEqual(c["task"]["resource_class"], rc)
        self.assertEqual(c["task"]["duration_ms"], TASK_MS)
        self.assertEqual(self.sim.count(T_TASKS, rc), 2)
        self.assertEqual(self.sim.count(T_RUNNING, rc), 1)

        self.sim.ctl("POST", "/_sim/finish", {"task": c["task"]["id"]})
        self.assertEqual(self.sim.count(T_RUNNING, rc), 0)
        self.assertEqual(self.sim.count(T_TASKS, rc), 2)
        st = self.sim.ctl("GET", "/_sim/state")["classes"][rc]
        self.assertEqual((st["unclaimed"], st["running"], st["done"]),
                         (2, 0, 1))

        s = self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc,
                                                 "set_unclaimed": 5})
        self.assertEqual((s["unclaimed"], len(s["added"]), s["removed"]),
                         (5, 3, []))
        s = self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc,
                                                 "set_unclaimed": 1})
        self.assertEqual((s["unclaimed"], s["added"], len(s["removed"])),
                         (1, [], 4))
        self.assertEqual(self.sim.count(T_TASKS, rc), 1)
        left = [t for t in self.sim.ctl(
            "GET", "/_sim/tasks?resource_class=" + rc)["tasks"]
            if t["state"] == "unclaimed"]
        self.assertEqual([t["id"] for t in left], [q["added"][1]],
                         "set_unclaimed removes the newest tasks")

        c = self.sim.ctl("POST", "/_sim/claim", {"token": "rt-flow",
                                                 "runner": "vm-2-r"})
        self.assertEqual(c["task"]["id"], q["added"][1])
        c = self.sim.ctl("POST", "/_sim/claim", {"token": "rt-flow",
                                                 "runner": "vm-3-r"})
        self.assertIsNone(c["task"])
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)
        self.assertEqual(self.sim.count(T_RUNNING, rc), 1)

    def test_queue_validation(self):
        rc = self.new_class("flow/val")
        for body, status in [
                ({"resource_class": "flow/nope", "add": 1}, 404),
                ({"resource_class": rc}, 400),
                ({"resource_class": rc, "add": 1, "set_unclaimed": 1}, 400),
                ({"resource_class": rc, "add": -1}, 400),
                ({"resource_class": rc, "add": "2"}, 400),
                ({"resource_class": rc, "add": True}, 400),
                ({"resource_class": "noslash", "add": 1}, 400)]:
            self.sim.ctl("POST", "/_sim/queue", body, expect=status)
        self.sim.ctl("POST", "/_sim/running", {"resource_class": rc}, 400)
        status, _, _ = self.sim.request("POST", "/_sim/queue")
        self.assertEqual(status, 400)
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)
        self.sim.ctl("POST", "/_sim/classes",
                     {"name": "flow/dup", "runner_token": "rt-" + rc}, 409)
        self.sim.ctl("GET", "/_sim/nothing", expect=404)
        self.sim.ctl("GET", "/_sim/queue", expect=405)

    def test_set_running_forces_count(self):
        rc = self.new_class("flow/run", "rt-run")
        r = self.sim.ctl("POST", "/_sim/running", {"resource_class": rc,
                                                   "set": 3})
        self.assertEqual((r["running"], len(r["started"])), (3, 3))
        self.assertEqual(self.sim.count(T_RUNNING, rc), 3)
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)
        q = self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc,
                                                 "add": 1})
        real = self.sim.ctl("POST", "/_sim/claim", {
            "token": "rt-run", "runner": "r1"})["task"]["id"]
        self.assertEqual(real, q["added"][0])
        self.assertEqual(self.sim.count(T_RUNNING, rc), 4)
        r = self.sim.ctl("POST", "/_sim/running", {"resource_class": rc,
                                                   "set": 1})
        self.assertEqual((r["running"], len(r["finished"])), (1, 3))
        self.assertNotIn(real, r["finished"], "synthetic tasks finish first")
        self.assertEqual(self.sim.count(T_RUNNING, rc), 1)
        r = self.sim.ctl("POST", "/_sim/running", {"resource_class": rc,
                                                   "set": 0})
        self.assertEqual(r["finished"], [real])
        self.assertEqual(self.sim.count(T_RUNNING, rc), 0)
        st = self.sim.ctl("GET", "/_sim/state")["classes"][rc]
        self.assertEqual((st["running"], st["done"]), (0, 4))
        self.sim.ctl("POST", "/_sim/finish", {"task": real}, expect=404)

    def test_task_timestamps(self):
        rc = self.new_class("flow/ts", "rt-ts")
        t0 = time.time()
        q = self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc,
                                                 "add": 1,
                                                 "duration_ms": 5000})
        t1 = time.time()
        tid = q["added"][0]
        c = self.sim.ctl("POST", "/_sim/claim", {"token": "rt-ts",
                                                 "runner": "r"})
        self.assertEqual(c["task"], {"id": tid, "duration_ms": 5000,
                                     "resource_class": rc})
        t2 = time.time()
        self.sim.ctl("POST", "/_sim/finish", {"task": tid})
        t3 = time.time()
        tasks = self.sim.ctl("GET", "/_sim/tasks?resource_class=" + rc)[
            "tasks"]
        self.assertEqual(len(tasks), 1)
        t = tasks[0]
        self.assertEqual((t["id"], t["state"], t["runner"], t["duration_ms"]),
                         (tid, "done", "r", 5000))
        self.assertTrue(t0 <= t["queued_at"] <= t1, t)
        self.assertTrue(t1 <= t["claimed_at"] <= t2, t)
        self.assertTrue(t2 <= t["finished_at"] <= t3, t)
        everything = self.sim.ctl("GET", "/_sim/tasks")["tasks"]
        self.assertIn(tid, [x["id"] for x in everything])
        self.sim.ctl("GET", "/_sim/tasks?resource_class=flow/none",
                     expect=404)
        q = self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc,
                                                 "add": 1})
        t = [x for x in self.sim.ctl("GET", "/_sim/tasks")["tasks"]
             if x["id"] == q["added"][0]][0]
        self.assertEqual((t["state"], t["claimed_at"], t["finished_at"],
                          t["runner"]), ("unclaimed", None, None, None))

    def test_claim_bad_runner_token(self):
        rc = self.new_class("flow/claim", "rt-good")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 1})
        r = self.sim.ctl("POST", "/_sim/claim", {
            "token": "rt-bad", "runner": "x"}, expect=401)
        self.assertEqual(r, {"message": "invalid runner token"})
        self.sim.ctl("POST", "/_sim/claim", {"token": "rt-good"}, expect=400)
        self.assertEqual(self.sim.count(T_TASKS, rc), 1)
        _, _, raw = self.sim.api(T_RUNNER, rc)
        self.assertEqual(json.loads(raw), {"items": []})

    def test_finish_unknown_or_not_running(self):
        self.sim.ctl("POST", "/_sim/finish", {"task": "task-999999"},
                     expect=404)
        rc = self.new_class("flow/fin", "rt-fin")
        q = self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc,
                                                 "add": 1})
        self.sim.ctl("POST", "/_sim/finish", {"task": q["added"][0]},
                     expect=404)
        self.sim.ctl("POST", "/_sim/claim", {"token": "rt-fin",
                                             "runner": "r"})
        self.sim.ctl("POST", "/_sim/finish", {"task": q["added"][0]})
        self.sim.ctl("POST", "/_sim/finish", {"task": q["added"][0]},
                     expect=404)

    def test_runner_list(self):
        status, _, raw = self.sim.api(T_RUNNER, "ns/pre")
        self.assertEqual((status, json.loads(raw)), (200, {"items": []}),
                         "--class preconfigures a class")
        rc = self.new_class("flow/agents", "rt-agents")
        self.sim.ctl("POST", "/_sim/claim", {
            "token": "rt-agents", "runner": "idle-r", "hostname": "vm-idle"})
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 1})
        self.sim.ctl("POST", "/_sim/claim", {
            "token": "rt-agents", "runner": "busy-r", "hostname": "vm-busy",
            "version": "3.1.2"})
        status, headers, raw = self.sim.api(T_RUNNER, rc)
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        items = json.loads(raw)["items"]
        self.assertEqual([i["name"] for i in items], ["idle-r", "busy-r"])
        fields = {"resource_class", "hostname", "name", "first_connected",
                  "last_connected", "last_used", "version"}
        for i in items:
            self.assertEqual(set(i), fields)
            self.assertEqual(i["resource_class"], rc)
            for k in ("first_connected", "last_connected", "last_used"):
                self.assertRegex(i[k], RFC3339)
        idle, busy = items
        self.assertEqual((idle["hostname"], idle["last_used"]),
                         ("vm-idle", "0001-01-01T00:00:00Z"))
        self.assertEqual((busy["hostname"], busy["version"]),
                         ("vm-busy", "3.1.2"))
        self.assertNotEqual(busy["last_used"], "0001-01-01T00:00:00Z")
        st = self.sim.ctl("GET", "/_sim/state")["classes"][rc]
        self.assertEqual(st["runners"], items)

    # Runner API edges -------------------------------------------------
    def test_auth(self):
        rc = self.new_class("auth/a")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 2})
        since = time.time()
        for path in (T_TASKS, T_RUNNING, T_RUNNER):
            for token in ("wrong-token", "", None):
                status, _, raw = self.sim.api(path, rc, token=token)
                self.assertEqual((status, json.loads(raw)),
                                 (401, {"message": "Unauthorized"}),
                                 (path, token))
            self.assertEqual(self.sim.api(path, rc)[0], 200)
        entries = [e for e in self.journal(since)
                   if e["resource_class"] == rc]
        self.assertEqual([e["token_matched"] for e in entries],
                         [False, False, False, True] * 3)
        self.assertEqual([e["status"] for e in entries],
                         [401, 401, 401, 200] * 3)
        text = json.dumps(entries)
        self.assertNotIn(API_TOKEN, text)
        self.assertNotIn("wrong-token", text)

    def test_missing_or_malformed_resource_class(self):
        for path in (T_TASKS, T_RUNNING, T_RUNNER):
            for q in ("", "?resource-class=", "?namespace=ns",
                      "?resource-class=noslash",
                      "?resource-class=a/b&resource-class=a/c"):
                status, _, raw = self.sim.request(
                    "GET", path + q, headers={"Circle-Token": API_TOKEN})
                self.assertEqual(status, 400, (path, q))
                self.assertIn("message", json.loads(raw))

    def test_unknown_class_silent_zero_and_404(self):
        rc = "nobody/unknown-class"
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)
        self.assertEqual(self.sim.count(T_RUNNING, rc), 0)
        status, _, raw = self.sim.api(T_RUNNER, rc)
        self.assertEqual((status, json.loads(raw)),
                         (404, {"message": "resource class not found"}))

    def test_unknown_path_and_method(self):
        status, _, _ = self.sim.request(
            "GET", "/api/v3/runner/nope?resource-class=ns/pre",
            headers={"Circle-Token": API_TOKEN})
        self.assertEqual(status, 404)
        status, headers, _ = self.sim.request(
            "POST", T_TASKS + "?resource-class=ns/pre",
            headers={"Circle-Token": API_TOKEN})
        self.assertEqual((status, headers["Allow"]), (405, "GET"))

    def test_class_raw_or_percent_encoded(self):
        rc = self.new_class("enc/class-1")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 4})
        self.sim.ctl("POST", "/_sim/running", {"resource_class": rc,
                                               "set": 2})
        for raw_rc in ("enc/class-1", "enc%2Fclass-1", "enc%2fclass-1"):
            status, _, raw = self.sim.api(T_TASKS, raw_rc=raw_rc)
            self.assertEqual((status, json.loads(raw)),
                             (200, {"unclaimed_task_count": 4}), raw_rc)
            status, _, raw = self.sim.api(T_RUNNING, raw_rc=raw_rc)
            self.assertEqual((status, json.loads(raw)),
                             (200, {"running_runner_tasks": 2}), raw_rc)
            status, _, raw = self.sim.api(T_RUNNER, raw_rc=raw_rc)
            self.assertEqual((status, json.loads(raw)), (200, {"items": []}))
        since = time.time()
        self.sim.api(T_TASKS, raw_rc="enc%2Fclass-1")
        self.assertEqual(self.journal(since)[-1]["resource_class"], rc)

    def test_keepalive(self):
        rc = self.new_class("ka/a")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 1})
        since = time.time()
        conn = self.sim.conn()
        self.addCleanup(conn.close)
        seen = []
        for path, token, want in [(T_TASKS, API_TOKEN, 200),
                                  (T_RUNNING, API_TOKEN, 200),
                                  (T_TASKS, "bad", 401),
                                  (T_RUNNER, API_TOKEN, 200),
                                  ("/api/v3/other", API_TOKEN, 404),
                                  (T_TASKS, API_TOKEN, 200)]:
            status, _, _ = self.sim.api(path, rc, token=token, conn=conn)
            self.assertEqual(status, want, path)
            seen.append(conn.sock)
        self.assertIsNotNone(seen[0])
        self.assertTrue(all(s is seen[0] for s in seen),
                        "client reconnected")
        peers = {e["peer"] for e in self.journal(since)}
        self.assertEqual(len(peers), 1, peers)

    def test_journal(self):
        rc = self.new_class("jr/a")
        self.sim.ctl("DELETE", "/_sim/requests")
        self.assertEqual(self.journal(), [])
        self.sim.api(T_TASKS, rc)
        self.sim.ctl("GET", "/_sim/state")  # control calls not journalled
        self.sim.api(T_RUNNING, rc, token="nope")
        self.sim.api(T_RUNNER, raw_rc="jr%2Fa")
        j = self.journal()
        self.assertEqual(len(j), 3, j)
        for e in j:
            self.assertTrue({"t", "method", "path", "query", "status",
                             "endpoint", "resource_class"} <= set(e), e)
            self.assertIsInstance(e["t"], float)
        self.assertEqual([(e["method"], e["path"], e["status"], e["endpoint"],
                           e["resource_class"]) for e in j],
                         [("GET", T_TASKS, 200, "tasks", rc),
                          ("GET", T_RUNNING, 401, "running", rc),
                          ("GET", T_RUNNER, 200, "runner", rc)])
        self.assertEqual(j[0]["query"], {"resource-class": [rc]})
        self.assertTrue(j[0]["t"] <= j[1]["t"] <= j[2]["t"])
        since = self.journal(since=j[1]["t"])
        self.assertEqual([e["path"] for e in since], [T_RUNNING, T_RUNNER])
        self.assertEqual(self.journal(since=j[2]["t"] + 0.000001), [])
        self.sim.ctl("GET", "/_sim/requests?since=yesterday", expect=400)
        self.sim.ctl("DELETE", "/_sim/requests")
        self.assertEqual(self.journal(), [])

    # Faults -----------------------------------------------------------
    def test_fault_status(self):
        rc = self.new_class("f/status")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 1})
        fid = self.fault(endpoint="tasks", status=500)
        for _ in range(3):
            status, _, raw = self.sim.api(T_TASKS, rc)
            self.assertEqual((status, json.loads(raw)),
                             (500, {"message": "injected fault 500"}))
        self.assertEqual(self.sim.count(T_RUNNING, rc), 0,
                         "other endpoints unaffected")
        self.assertEqual(self.journal()[-2]["fault"], fid)
        f = self.sim.ctl("GET", "/_sim/faults")["faults"]
        self.assertEqual([(x["id"], x["remaining"], x["fired"]) for x in f],
                         [(fid, -1, 3)])
        self.sim.ctl("DELETE", "/_sim/faults")
        self.assertEqual(self.sim.count(T_TASKS, rc), 1)

    def test_fault_429_retry_after_seconds_and_date(self):
        rc = self.new_class("f/429")
        date = "Wed, 21 Oct 2015 07:28:00 GMT"
        self.fault(endpoint="running", status=429, retry_after=7, count=1)
        self.fault(endpoint="running", status=429, retry_after=date, count=1)
        status, headers, _ = self.sim.api(T_RUNNING, rc)
        self.assertEqual((status, headers["Retry-After"]), (429, "7"))
        status, headers, _ = self.sim.api(T_RUNNING, rc)
        self.assertEqual((status, headers["Retry-After"]), (429, date))
        status, headers, _ = self.sim.api(T_RUNNING, rc)
        self.assertEqual((status, headers["Retry-After"]), (200, None))

    def test_fault_delay(self):
        rc = self.new_class("f/delay")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 2})
        self.fault(endpoint="tasks", key=rc, delay_ms=300, count=1)
        t0 = time.monotonic()
        self.assertEqual(self.sim.count(T_TASKS, rc), 2)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)

    def test_fault_drop(self):
        rc = self.new_class("f/drop")
        since = time.time()
        self.fault(endpoint="tasks", drop=True, count=1)
        with self.assertRaises((ConnectionError, ssl.SSLError,
                                http.client.BadStatusLine)):
            self.sim.api(T_TASKS, rc)
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)
        j = [e for e in self.journal(since) if e["resource_class"] == rc]
        self.assertEqual([e["status"] for e in j], ["dropped", 200])

    def test_fault_oversize(self):
        rc = self.new_class("f/big")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": rc, "add": 3})
        self.fault(endpoint="tasks", oversize=1 << 20, count=1)
        status, headers, raw = self.sim.api(T_TASKS, rc)
        self.assertEqual(status, 200)
        self.assertGreaterEqual(len(raw), 1 << 20)
        self.assertEqual(int(headers["Content-Length"]), len(raw))
        self.assertEqual(json.loads(raw)["unclaimed_task_count"], 3)

    def test_fault_malformed(self):
        rc = self.new_class("f/malformed")
        self.fault(endpoint="running", malformed=True, count=1)
        status, _, raw = self.sim.api(T_RUNNING, rc)
        self.assertEqual(status, 200)
        with self.assertRaises(ValueError):
            json.loads(raw)

    def test_fault_truncate(self):
        rc = self.new_class("f/trunc")
        self.fault(endpoint="tasks", truncate=True, count=1)
        conn = self.sim.conn()
        self.addCleanup(conn.close)
        conn.request("GET", T_TASKS + "?resource-class=" + rc,
                     headers={"Circle-Token": API_TOKEN})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        declared = int(r.headers["Content-Length"])
        with self.assertRaises(http.client.IncompleteRead) as cm:
            r.read()
        self.assertLess(len(cm.exception.partial), declared)
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)

    def test_fault_count_exhaustion(self):
        rc = self.new_class("f/count")
        fid = self.fault(endpoint="*", status=503, count=2)
        got = [self.sim.api(p, rc)[0] for p in (T_TASKS, T_RUNNER, T_RUNNING,
                                                T_TASKS)]
        self.assertEqual(got, [503, 503, 200, 200])
        f = self.sim.ctl("GET", "/_sim/faults")["faults"]
        self.assertEqual([(x["id"], x["remaining"], x["fired"]) for x in f],
                         [(fid, 0, 2)])

    def test_fault_per_class_and_method(self):
        a = self.new_class("f/class-a")
        b = self.new_class("f/class-b")
        self.fault(key=a, status=502)
        self.fault(key=b, endpoint="runner", method="POST", status=418)
        self.assertEqual(self.sim.api(T_TASKS, a)[0], 502)
        self.assertEqual(self.sim.api(T_TASKS, raw_rc="f%2Fclass-a")[0], 502)
        self.assertEqual(self.sim.api(T_RUNNER, a)[0], 502)
        self.assertEqual(self.sim.api(T_TASKS, b)[0], 200)
        self.assertEqual(self.sim.api(T_RUNNER, b)[0], 200, "GET != POST")

    def test_fault_wrong_type_and_negative_body(self):
        rc = self.new_class("f/types")
        self.fault(endpoint="tasks", body={"unclaimed_task_count": "3"},
                   count=1)
        self.fault(endpoint="tasks", body={"unclaimed_task_count": -1},
                   count=1)
        self.fault(endpoint="tasks", status=200, body="[]", count=1)
        for want in ({"unclaimed_task_count": "3"},
                     {"unclaimed_task_count": -1}, []):
            status, _, raw = self.sim.api(T_TASKS, rc)
            self.assertEqual((status, json.loads(raw)), (200, want))
        self.assertEqual(self.sim.count(T_TASKS, rc), 0)

    def test_fault_precedes_auth_and_content_type(self):
        rc = self.new_class("f/order")
        self.fault(endpoint="tasks", status=503, count=1,
                   content_type="text/html")
        status, headers, _ = self.sim.api(T_TASKS, rc, token="wrong")
        self.assertEqual((status, headers["Content-Type"]), (503, "text/html"))
        status, headers, _ = self.sim.api(T_TASKS, rc, token="wrong")
        self.assertEqual((status, headers["Content-Type"]),
                         (401, "application/json"))

    def test_fault_spec_validation_and_control_api_immune(self):
        for spec in ({"endpoint": "bogus", "status": 500},
                     {"status": 500, "colour": "red"},
                     {"status": "500"}, {"status": 99},
                     {"retry_after": 5},
                     {"retry_after": 5, "status": 429, "truncate": True},
                     {"path": "(", "status": 500}):
            self.sim.ctl("POST", "/_sim/faults", spec, expect=400)
        self.assertEqual(self.sim.ctl("GET", "/_sim/faults")["faults"], [])
        self.fault(endpoint="*", key="*", status=500)
        self.fault(endpoint="*", key="*", drop=True)
        self.sim.ctl("GET", "/_sim/state")
        self.sim.ctl("POST", "/_sim/queue", {"resource_class": "ns/pre",
                                             "add": 0})

    # Rate limit -------------------------------------------------------
    def start_of_window(self, window_s, room):
        """Waits until at least `room` seconds remain in the current
        window (windows are aligned to the epoch)."""
        wait_until(lambda: window_s - time.time() % window_s >= room,
                   timeout=window_s + 1, what="room in the window")

    def test_ratelimit_kong_headers_and_429(self):
        rc = self.new_class("rl/kong")
        r = self.sim.ctl("POST", "/_sim/ratelimit",
                         {"limit": 3, "window_s": 60})
        self.assertEqual((r["limit"], r["window_s"], r["headers"],
                          r["allowed"], r["limited"]),
                         (3, 60, "kong", 0, 0))
        self.start_of_window(60, 5)
        for remaining, path in zip((2, 1, 0), (T_TASKS, T_RUNNING, T_RUNNER)):
            status, h, _ = self.sim.api(path, rc)
            self.assertEqual(status, 200)
            self.assertEqual(h["RateLimit-Limit"], "3")
            self.assertEqual(h["RateLimit-Remaining"], str(remaining))
            self.assertEqual(h["X-RateLimit-Limit-Minute"], "3")
            self.assertEqual(h["X-RateLimit-Remaining-Minute"],
                             str(remaining))
            self.assertIn(int(h["RateLimit-Reset"]), range(1, 61))
            self.assertIsNone(h.get("Retry-After"))
        # Bad requests count too: the gateway sits in front of the API.
        status, h, raw = self.sim.api(T_TASKS, rc, token="wrong")
        self.assertEqual(status, 429)
        self.assertEqual(json.loads(raw), {"message": "rate limit exceeded"})
        self.assertEqual(h["RateLimit-Remaining"], "0")
        self.assertEqual(h["Retry-After"], h["RateLimit-Reset"])
        j = [e for e in self.journal() if e.get("resource_class") == rc]
        self.assertEqual([e["status"] for e in j], [200, 200, 200, 429])
        self.assertTrue(j[-1]["rate_limited"])
        r = self.sim.ctl("GET", "/_sim/ratelimit")
        self.assertEqual((r["allowed"], r["limited"]), (3, 1))
        self.sim.ctl("DELETE", "/_sim/ratelimit")
        self.assertEqual(self.sim.ctl("GET", "/_sim/ratelimit"), {})
        status, h, _ = self.sim.api(T_TASKS, rc)
        self.assertEqual(status, 200)
        self.assertIsNone(h.get("RateLimit-Limit"))

    def test_ratelimit_other_header_styles_and_windows(self):
        rc = self.new_class("rl/styles")
        self.sim.ctl("POST", "/_sim/ratelimit", {
            "limit": 1, "window_s": 30, "headers": "ietf",
            "retry_after": False})
        self.start_of_window(30, 5)
        status, h, _ = self.sim.api(T_TASKS, rc)
        self.assertEqual((status, h["RateLimit-Limit"],
                          h["RateLimit-Remaining"]), (200, "1, 1;w=30", "0"))
        self.assertIsNone(h.get("X-RateLimit-Limit-Minute"))
        status, h, _ = self.sim.api(T_TASKS, rc)
        self.assertEqual(status, 429)
        self.assertIsNone(h.get("Retry-After"))
        self.sim.ctl("POST", "/_sim/ratelimit", {
            "limit": 1, "window_s": 60, "headers": "none"})
        self.start_of_window(60, 5)
        status, h, _ = self.sim.api(T_TASKS, rc)
        self.assertEqual(status, 200)
        self.assertIsNone(h.get("RateLimit-Limit"))
        status, h, _ = self.sim.api(T_TASKS, rc)
        self.assertEqual(status, 429)
        self.assertIsNone(h.get("RateLimit-Remaining"))
        self.assertIn(int(h["Retry-After"]), range(1, 61))
        # A one-second window: the next second allows again.
        self.sim.ctl("POST", "/_sim/ratelimit", {"limit": 2})
        self.start_of_window(1, 0.5)
        codes = [self.sim.api(T_TASKS, rc)[0] for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])
        wait_until(lambda: self.sim.api(T_TASKS, rc)[0] == 200,
                   timeout=3, what="the next window")

    def test_ratelimit_validation(self):
        for spec in ({}, {"limit": -1}, {"limit": "5"},
                     {"limit": 5, "window_s": 0},
                     {"limit": 5, "window_s": True},
                     {"limit": 5, "headers": "github"},
                     {"limit": 5, "retry_after": 1},
                     {"limit": 5, "burst": 2}):
            self.sim.ctl("POST", "/_sim/ratelimit", spec, expect=400)
        self.assertEqual(self.sim.ctl("GET", "/_sim/ratelimit"), {})

    # Other front ends ---------------------------------------------------
    def test_simctl(self):
        rc = self.new_class("ctl/a")
        base = [PYTHON, SIMCTL, "circleci", "--url",
                "https://127.0.0.1:%d" % self.sim.port, "--ca",
                self.pki["ca"]]

        def ctl(*args, rc_=0):
            p = subprocess.run(base + list(args), capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, rc_, p.stderr)
            return json.loads(p.stdout) if rc_ == 0 else p.stderr

        self.assertEqual(ctl("queue", rc, "4", "--duration-ms", "900")[
            "unclaimed"], 4)
        self.assertEqual(len(ctl("set-unclaimed", rc, "2")["removed"]), 2)
        self.assertEqual(ctl("set-running", rc, "3")["running"], 3)
        self.assertEqual(self.sim.count(T_TASKS, rc), 2)
        self.assertEqual(self.sim.count(T_RUNNING, rc), 3)
        st = ctl("state")["classes"][rc]
        self.assertEqual((st["unclaimed"], st["running"]), (2, 3))
        self.assertEqual(
            {t["duration_ms"] for t in ctl("tasks", rc)["tasks"]
             if t["state"] == "unclaimed"}, {900})
        fid = ctl("fault", json.dumps({"endpoint": "tasks", "key": rc,
                                       "status": 500}))["id"]
        self.assertEqual([f["id"] for f in ctl("faults")["faults"]], [fid])
        self.assertEqual(self.sim.api(T_TASKS, rc)[0], 500)
        ctl("clear-faults")
        self.assertEqual(self.sim.api(T_TASKS, rc)[0], 200)
        reqs = ctl("requests")["requests"]
        self.assertEqual(reqs[-1]["resource_class"], rc)
        self.assertEqual(ctl("requests", "--since",
                             repr(reqs[-1]["t"] + 1))["requests"], [])
        self.assertEqual(ctl("class", "ctl/b", "rt-ctl-b")["created"], True)
        err = ctl("queue", "ctl/none", "1", rc_=1)
        self.assertIn("HTTP 404", err)
        err = ctl("fault", "{not json", rc_=2)
        self.assertIn("invalid JSON", err)
        ctl("clear-requests")
        self.assertEqual(self.journal(), [])
        # The CA is actually used: without it the certificate is rejected.
        p = subprocess.run(base[:-2] + ["state"], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("CERTIFICATE_VERIFY_FAILED", p.stderr)

    def test_plain_http_and_bad_command_lines(self):
        sim = Sim(os.path.join(self.tmp, "plain"), None,
                  ["--class", "plain/a=rt-plain"])
        self.addCleanup(sim.stop)
        sim.start()
        sim.ctl("POST", "/_sim/queue", {"resource_class": "plain/a",
                                        "add": 2})
        self.assertEqual(sim.count(T_TASKS, "plain/a"), 2)
        def announced():
            with open(os.path.join(sim.workdir, "stdout")) as f:
                return "listening on port %d\n" % sim.port in f.read()
        wait_until(announced, what="port announcement")
        for args in (["--class", "noslash=tok"], ["--class", "a/b"],
                     ["--tls-cert", self.pki["cert"]],
                     ["--class", "a/b=t", "--class", "a/c=t"]):
            p = subprocess.run([PYTHON, SIM, "--listen", "127.0.0.1:0",
                                "--token", "x"] + args, capture_output=True,
                               text=True, timeout=30)
            self.assertEqual(p.returncode, 2, (args, p.stderr))


if __name__ == "__main__":
    unittest.main(verbosity=2)
