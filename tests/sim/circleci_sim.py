#!/usr/bin/python3
"""CircleCI self-hosted runner API simulator.

Serves the three runner API endpoints the provisioner uses (DESIGN.md §4,
research/circleci.md §1.3) over HTTPS (or plain HTTP without --tls-*), backed
by an in-memory model of resource classes, tasks and runner agents.  The
Kubernetes simulator's VMs claim and finish tasks through the control API, the
tests and benchmarks drive the queue and the fault switches through it.

Usage:
  circleci_sim.py --listen 127.0.0.1:0 --port-file F [--tls-cert C --tls-key K]
                  --token API_TOKEN [--class ns/name=RUNNER_TOKEN ...]
                  [--task-duration-ms 1000] [--verbose]

Runner API (header Circle-Token must equal --token, else 401; every request
is journalled with t, method, path, query, status, endpoint, resource_class,
token_matched, peer and, when a fault fired, fault):
  GET /api/v3/runner/tasks?resource-class=ns/x          {"unclaimed_task_count": N}
  GET /api/v3/runner/tasks/running?resource-class=ns/x  {"running_runner_tasks": N}
  GET /api/v3/runner?resource-class=ns/x                {"items": [agent, ...]}
  The class may be sent raw or %2F-encoded.  No resource-class: 400; a
  malformed one (not "ns/name"): 400.  An unknown well-formed class counts 0
  on the task endpoints (the real API's silent zero) and is 404 {"message":
  "resource class not found"} on the runner list.  An agent that never ran a
  task has last_used "0001-01-01T00:00:00Z" (Go's zero time).  The real
  list's namespace= filter is not simulated (400).  Other methods: 405.

Tasks last --task-duration-ms unless queued with duration_ms; the simulator
never finishes a task by itself: whoever claimed it calls /_sim/finish.

Control API (no auth, JSON in and out, not journalled):
  POST   /_sim/classes  {"name": "ns/x", "runner_token": "..."}
         Creates a class, or replaces its runner token (tasks and runners kept).
  POST   /_sim/queue    {"resource_class": "ns/x", "add": N, "duration_ms": D?}
                        {"resource_class": "ns/x", "set_unclaimed": N}
         Enqueues N tasks, or adds/removes (newest first) unclaimed tasks until
         there are exactly N.  Returns the counts plus "added"/"removed" ids.
  POST   /_sim/running  {"resource_class": "ns/x", "set": N}
         Forces the running count: starts synthetic running tasks, or finishes
         running ones (synthetic first, then the most recently claimed).
  POST   /_sim/claim    {"token": RUNNER_TOKEN, "runner": NAME, "hostname": H?,
                         "version": V?}
         The runner token selects the class (unknown: 401 {"message": "invalid
         runner token"}).  The oldest unclaimed task becomes running:
         {"task": {"id", "duration_ms", "resource_class"}}, or {"task": null}.
         Either way the runner is listed (first/last_connected, last_used).
  POST   /_sim/finish   {"task": ID}  running -> done (404 if unknown or not
         running).
  GET    /_sim/state    {"classes": {name: {unclaimed, running, done, runners}}}
  GET    /_sim/tasks[?resource_class=ns/x]  {"tasks": [{id, resource_class,
         state, duration_ms, queued_at, claimed_at, finished_at, runner,
         synthetic}]}  (epoch floats; null until reached)
  GET    /_sim/requests[?since=EPOCH]   {"requests": [...]}  the journal
  DELETE /_sim/requests                 clears it
  POST   /_sim/faults   a simhttp.Fault spec, e.g. {"endpoint": "tasks",
         "key": "ns/x", "status": 429, "retry_after": "7", "count": 1}
         Fields: method, endpoint (tasks|running|runner|*), path (regex), key
         (resource class or *), status, count (-1: until cleared),
         retry_after (seconds or HTTP date), body (sent as is with status or
         200: wrong types, negative counts), delay_ms, drop, oversize (pads the
         normal body with N more bytes), malformed, truncate, content_type.
         retry_after is refused (400) where simhttp would not send it: with
         drop/truncate or without status/body/malformed/oversize.
         Returns {"id": ID}.  Faults apply to the three API endpoints only and
         are matched before authentication and the normal answer.
  GET    /_sim/faults   the switches with their remaining count and shots fired
  DELETE /_sim/faults   clears all switches
  POST   /_sim/token    {"token": T}  the API token accepted from now on (a
         rotation: the old one is refused at once)
  POST   /_sim/ratelimit  {"limit": N, "window_s": W?, "headers": H?,
                           "retry_after": bool?}
         A rate limit over all runner API requests (after the fault
         switches): at most N per fixed window of W seconds (default 1,
         windows aligned to the epoch); beyond it 429 {"message": "rate
         limit exceeded"} with Retry-After (seconds to the window's end,
         unless retry_after is false).  H says which headers every answer
         carries: "kong" (default: RateLimit-Limit/-Remaining/-Reset and,
         for a 1 s/1 min/1 h/1 d window, X-RateLimit-Limit-<Window> and
         X-RateLimit-Remaining-<Window>), "ietf" (RateLimit-Limit "N,
         N;w=W", RateLimit-Remaining, RateLimit-Reset) or "none".
  GET    /_sim/ratelimit  its settings and the counts of allowed and limited
         requests ({} when none)
  DELETE /_sim/ratelimit  removes it
"""

import argparse
import collections
import hmac
import itertools
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simhttp  # noqa: E402
from simhttp import SimError  # noqa: E402

API_TASKS = "/api/v3/runner/tasks"
API_RUNNING = "/api/v3/runner/tasks/running"
API_RUNNER = "/api/v3/runner"
ENDPOINTS = {API_TASKS: "tasks", API_RUNNING: "running", API_RUNNER: "runner"}
FAULT_ENDPOINTS = ("tasks", "running", "runner", "*")

CLASS_RE = re.compile(r"^[^/\s]+/[^/\s]+$")
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
MAX_BATCH = 100000
SYNTHETIC_RUNNER = "sim-synthetic"
WINDOW_NAMES = {1: "Second", 60: "Minute", 3600: "Hour", 86400: "Day"}
RATELIMIT_HEADERS = ("kong", "ietf", "none")


def rfc3339(t):
    if t is None:
        return GO_ZERO_TIME
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def same_secret(a, b):
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


def want_int(obj, key, minimum=0, maximum=None, required=True):
    v = obj.get(key)
    if v is None:
        if required:
            raise SimError(400, "%s: required" % key)
        return None
    if isinstance(v, bool) or not isinstance(v, int):
        raise SimError(400, "%s: must be an integer" % key)
    if v < minimum or (maximum is not None and v > maximum):
        raise SimError(400, "%s: out of range" % key)
    return v


def want_str(obj, key, required=True):
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v:
        raise SimError(400, "%s: must be a non-empty string" % key)
    return v


def want_class_name(obj, key):
    name = want_str(obj, key)
    if not CLASS_RE.match(name):
        raise SimError(400, "%s: must look like namespace/name" % key)
    return name


class ResourceClass:
    def __init__(self, name, runner_token):
        self.name = name
        self.runner_token = runner_token
        self.unclaimed = collections.OrderedDict()  # id -> task, oldest first
        self.running = collections.OrderedDict()  # id -> task, claim order
        self.done = 0
        self.runners = collections.OrderedDict()  # runner name -> record

    def counts(self):
        return dict(resource_class=self.name, unclaimed=len(self.unclaimed),
                    running=len(self.running), done=self.done)

    def agents(self):
        return [dict(resource_class=self.name, hostname=r["hostname"],
                     name=r["name"],
                     first_connected=rfc3339(r["first_connected"]),
                     last_connected=rfc3339(r["last_connected"]),
                     last_used=rfc3339(r["last_used"]),
                     version=r["version"])
                for r in self.runners.values()]


class RateLimit:
    """A fixed-window request limit (what an API gateway in front of the
    runner API would do)."""

    def __init__(self, limit, window_s, headers, retry_after):
        self.lock = threading.Lock()
        self.limit = limit
        self.window_s = window_s
        self.headers = headers
        self.retry_after = retry_after
        self.window = None
        self.used = 0
        self.allowed = 0
        self.limited = 0

    def take(self, now):
        """-> (allowed, headers to send)"""
        with self.lock:
            w = int(now // self.window_s)
            if w != self.window:
                self.window, self.used = w, 0
            ok = self.used < self.limit
            if ok:
                self.used += 1
                self.allowed += 1
            else:
                self.limited += 1
            remaining = self.limit - self.used
        reset = (w + 1) * self.window_s - now
        reset_s = max(1, int(-(-reset // 1)))  # whole seconds, rounded up
        h = {}
        if self.headers == "kong":
            h = {"RateLimit-Limit": str(self.limit),
                 "RateLimit-Remaining": str(remaining),
                 "RateLimit-Reset": str(reset_s)}
            name = WINDOW_NAMES.get(self.window_s)
            if name:
                h["X-RateLimit-Limit-" + name] = str(self.limit)
                h["X-RateLimit-Remaining-" + name] = str(remaining)
        elif self.headers == "ietf":
            h = {"RateLimit-Limit": "%d, %d;w=%g" % (
                     self.limit, self.limit, self.window_s),
                 "RateLimit-Remaining": str(remaining),
                 "RateLimit-Reset": str(reset_s)}
        if not ok and self.retry_after:
            h["Retry-After"] = str(reset_s)
        return ok, h

    def view(self):
        with self.lock:
            return dict(limit=self.limit, window_s=self.window_s,
                        headers=self.headers, retry_after=self.retry_after,
                        allowed=self.allowed, limited=self.limited)


class Model:
    """Classes, tasks and runner agents.  Every method takes the lock."""

    def __init__(self, task_duration_ms=1000):
        self.lock = threading.Lock()
        self.classes = {}
        self.tasks = collections.OrderedDict()  # id -> task, creation order
        self.ids = itertools.count(1)
        self.task_duration_ms = task_duration_ms

    def _class(self, name):
        c = self.classes.get(name)
        if c is None:
            raise SimError(404, "unknown resource class %s" % name)
        return c

    def _new_task(self, c, duration_ms, now):
        t = dict(id="task-%d" % next(self.ids), resource_class=c.name,
                 state="unclaimed", duration_ms=duration_ms, queued_at=now,
                 claimed_at=None, finished_at=None, runner=None,
                 synthetic=False)
        self.tasks[t["id"]] = t
        return t

    def _finish(self, c, t, now):
        del c.running[t["id"]]
        t["state"] = "done"
        t["finished_at"] = now
        c.done += 1

    # Control operations ---------------------------------------------
    def set_class(self, name, runner_token):
        with self.lock:
            for other in self.classes.values():
                if other.name != name and same_secret(other.runner_token,
                                                      runner_token):
                    raise SimError(409, "runner token already used by %s"
                                   % other.name)
            c = self.classes.get(name)
            created = c is None
            if created:
                c = self.classes[name] = ResourceClass(name, runner_token)
            c.runner_token = runner_token
            return dict(c.counts(), created=created)

    def enqueue(self, name, n, duration_ms=None):
        now = time.time()
        with self.lock:
            c = self._class(name)
            d = self.task_duration_ms if duration_ms is None else duration_ms
            added = []
            for _ in range(n):
                t = self._new_task(c, d, now)
                c.unclaimed[t["id"]] = t
                added.append(t["id"])
            return dict(c.counts(), added=added, removed=[])

    def set_unclaimed(self, name, n, duration_ms=None):
        now = time.time()
        with self.lock:
            c = self._class(name)
            d = self.task_duration_ms if duration_ms is None else duration_ms
            added, removed = [], []
            while len(c.unclaimed) < n:
                t = self._new_task(c, d, now)
                c.unclaimed[t["id"]] = t
                added.append(t["id"])
            while len(c.unclaimed) > n:
                tid, _ = c.unclaimed.popitem(last=True)
                del self.tasks[tid]
                removed.append(tid)
            return dict(c.counts(), added=added, removed=removed)

    def set_running(self, name, n):
        now = time.time()
        with self.lock:
            c = self._class(name)
            started, finished = [], []
            while len(c.running) < n:
                t = self._new_task(c, self.task_duration_ms, now)
                t.update(state="running", claimed_at=now,
                         runner=SYNTHETIC_RUNNER, synthetic=True)
                c.running[t["id"]] = t
                started.append(t["id"])
            if len(c.running) > n:
                order = list(reversed(c.running.values()))
                order.sort(key=lambda t: not t["synthetic"])  # stable
                for t in order[: len(c.running) - n]:
                    self._finish(c, t, now)
                    finished.append(t["id"])
            return dict(c.counts(), started=started, finished=finished)

    def claim(self, token, runner, hostname, version):
        now = time.time()
        with self.lock:
            c = None
            for cand in self.classes.values():
                if same_secret(cand.runner_token, token):
                    c = cand
            if c is None:
                raise SimError(401, "invalid runner token")
            r = c.runners.get(runner)
            if r is None:
                r = c.runners[runner] = dict(
                    name=runner, first_connected=now, last_used=None)
            r.update(hostname=hostname, version=version, last_connected=now)
            if not c.unclaimed:
                return {"task": None}
            _, t = c.unclaimed.popitem(last=False)
            t.update(state="running", claimed_at=now, runner=runner)
            c.running[t["id"]] = t
            r["last_used"] = now
            return {"task": dict(id=t["id"], duration_ms=t["duration_ms"],
                                 resource_class=c.name)}

    def finish(self, task_id):
        now = time.time()
        with self.lock:
            t = self.tasks.get(task_id)
            if t is None or t["state"] != "running":
                raise SimError(404, "no running task %s" % task_id)
            self._finish(self.classes[t["resource_class"]], t, now)
            return {"task": dict(t)}

    # Views ----------------------------------------------------------
    def state(self):
        with self.lock:
            return {"classes": {
                c.name: dict(unclaimed=len(c.unclaimed),
                             running=len(c.running), done=c.done,
                             runners=c.agents())
                for c in self.classes.values()}}

    def task_list(self, name=None):
        with self.lock:
            if name is not None:
                self._class(name)
            return {"tasks": [dict(t) for t in self.tasks.values()
                              if name is None or t["resource_class"] == name]}

    def unclaimed_count(self, name):
        with self.lock:
            c = self.classes.get(name)
            return len(c.unclaimed) if c else 0

    def running_count(self, name):
        with self.lock:
            c = self.classes.get(name)
            return len(c.running) if c else 0

    def agents(self, name):
        with self.lock:
            c = self.classes.get(name)
            if c is None:
                raise SimError(404, "resource class not found")
            return {"items": c.agents()}


class Handler(simhttp.Handler):
    fault_ids = itertools.count(1)

    def send(self, status, payload, headers=None, content_type=None):
        # simhttp's apply_fault ignores a fault's content_type; honour it here.
        ct = getattr(self, "_fault_content_type", None)
        self._fault_content_type = None
        super().send(status, payload, headers, content_type or ct)

    def route(self, method, path, query, body):
        self._fault_content_type = None
        if path.startswith("/_sim/"):
            return self.control(method, path, query, body)
        return self.api(method, path, query)

    # Runner API -----------------------------------------------------
    def api(self, method, path, query):
        endpoint = ENDPOINTS.get(path)
        values = query.get("resource-class", [])
        rc = values[0] if len(values) == 1 else None
        host, port = self.client_address[:2]
        self.note(endpoint=endpoint, resource_class=rc,
                  token_matched=self.token_matched(),
                  peer="%s:%d" % (host, port))
        if endpoint is None:
            raise SimError(404, "not found")
        f = self.server.journal.take_fault(method, endpoint, path, rc)
        if f is not None:
            self.note(fault=getattr(f, "id", None))
            try:
                _, normal, _ = self.answer(method, endpoint, query)
            except SimError as e:
                normal = e.payload
            if f.content_type:
                self._fault_content_type = f.content_type
            played = self.apply_fault(f, normal)
            if played is not None:
                return played
            self._fault_content_type = None
        rl = self.server.ratelimit
        if rl is None:
            return self.answer(method, endpoint, query)
        ok, headers = rl.take(time.time())
        if not ok:
            self.note(rate_limited=True)
            return 429, {"message": "rate limit exceeded"}, headers
        try:
            status, payload, extra = self.answer(method, endpoint, query)
        except SimError as e:
            status, payload, extra = e.status, e.payload, e.headers or {}
        return status, payload, dict(extra, **headers)

    def token_matched(self):
        got = self.headers.get("Circle-Token")
        if got is None:
            return False
        return same_secret(got, self.server.api_token)

    def answer(self, method, endpoint, query):
        if method != "GET":
            raise SimError(405, "method not allowed", {"Allow": "GET"})
        if not self.token_matched():
            raise SimError(401, "Unauthorized")
        values = query.get("resource-class", [])
        if not values or not values[0]:
            raise SimError(400, "resource-class is required")
        if len(values) > 1:
            raise SimError(400, "resource-class given more than once")
        rc = values[0]
        if not CLASS_RE.match(rc):
            raise SimError(400, "invalid resource-class")
        m = self.server.model
        if endpoint == "tasks":
            return 200, {"unclaimed_task_count": m.unclaimed_count(rc)}, {}
        if endpoint == "running":
            return 200, {"running_runner_tasks": m.running_count(rc)}, {}
        return 200, m.agents(rc), {}

    # Control API ----------------------------------------------------
    def control(self, method, path, query, body):
        routes = {
            "/_sim/classes": {"POST": self.c_classes},
            "/_sim/queue": {"POST": self.c_queue},
            "/_sim/running": {"POST": self.c_running},
            "/_sim/claim": {"POST": self.c_claim},
            "/_sim/finish": {"POST": self.c_finish},
            "/_sim/state": {"GET": self.c_state},
            "/_sim/tasks": {"GET": self.c_tasks},
            "/_sim/requests": {"GET": self.c_requests,
                               "DELETE": self.c_clear_requests},
            "/_sim/faults": {"GET": self.c_faults, "POST": self.c_add_fault,
                             "DELETE": self.c_clear_faults},
            "/_sim/token": {"POST": self.c_token},
            "/_sim/ratelimit": {"GET": self.c_ratelimit,
                                "POST": self.c_set_ratelimit,
                                "DELETE": self.c_clear_ratelimit},
        }
        methods = routes.get(path)
        if methods is None:
            raise SimError(404, "no control endpoint %s" % path)
        fn = methods.get(method)
        if fn is None:
            raise SimError(405, "method not allowed",
                           {"Allow": ", ".join(sorted(methods))})
        if method == "POST":
            obj = simhttp.json_body(body)
            if not isinstance(obj, dict):
                raise SimError(400, "body must be a JSON object")
            return 200, fn(obj), {}
        return 200, fn(query), {}

    def c_token(self, obj):
        token = want_str(obj, "token")
        if not token:
            raise SimError(400, "token must not be empty")
        self.server.api_token = token
        return {"rotated": True}

    def c_classes(self, obj):
        name = want_class_name(obj, "name")
        token = want_str(obj, "runner_token")
        return self.server.model.set_class(name, token)

    def c_queue(self, obj):
        name = want_class_name(obj, "resource_class")
        d = want_int(obj, "duration_ms", required=False)
        if ("add" in obj) == ("set_unclaimed" in obj):
            raise SimError(400, "give exactly one of add, set_unclaimed")
        if "add" in obj:
            n = want_int(obj, "add", maximum=MAX_BATCH)
            return self.server.model.enqueue(name, n, d)
        n = want_int(obj, "set_unclaimed", maximum=MAX_BATCH)
        return self.server.model.set_unclaimed(name, n, d)

    def c_running(self, obj):
        name = want_class_name(obj, "resource_class")
        n = want_int(obj, "set", maximum=MAX_BATCH)
        return self.server.model.set_running(name, n)

    def c_claim(self, obj):
        token = want_str(obj, "token")
        runner = want_str(obj, "runner")
        hostname = want_str(obj, "hostname", required=False) or runner
        version = want_str(obj, "version", required=False) or "3.0.0-sim"
        return self.server.model.claim(token, runner, hostname, version)

    def c_finish(self, obj):
        return self.server.model.finish(want_str(obj, "task"))

    def c_state(self, query):
        return self.server.model.state()

    def c_tasks(self, query):
        name = query.get("resource_class", [None])[0]
        return self.server.model.task_list(name)

    def c_requests(self, query):
        since = query.get("since", ["0"])[0]
        try:
            since = float(since)
        except ValueError:
            raise SimError(400, "since: must be an epoch number")
        # Entries of requests still in flight are being updated by their
        # threads; hand out copies.
        return {"requests": [dict(r) for r in
                             self.server.journal.snapshot(since)]}

    def c_clear_requests(self, query):
        self.server.journal.clear()
        return {}

    def c_faults(self, query):
        j = self.server.journal
        with j.lock:
            return {"faults": [dict(id=getattr(f, "id", None), spec=f.spec,
                                    remaining=f.count, fired=f.fired)
                               for f in j.faults]}

    def c_add_fault(self, spec):
        ep = spec.get("endpoint")
        if ep is not None and ep not in FAULT_ENDPOINTS:
            raise SimError(400, "endpoint: one of %s" % ", ".join(
                FAULT_ENDPOINTS))
        if spec.get("status") is not None:
            want_int(spec, "status", minimum=100, maximum=599)
        if spec.get("retry_after") is not None:
            # simhttp.apply_fault sends Retry-After only with an answer built
            # from status/body/malformed/oversize; refuse a switch that would
            # silently lose it.
            if spec.get("drop") or spec.get("truncate") or not any(
                    spec.get(k) for k in ("status", "body", "malformed",
                                          "oversize")):
                raise SimError(400, "retry_after needs status, body, "
                               "malformed or oversize (not drop/truncate)")
        try:
            f = self.server.journal.add_fault(spec)
        except (ValueError, TypeError, re.error) as e:
            raise SimError(400, "bad fault: %s" % e)
        f.id = next(self.fault_ids)
        return {"id": f.id}

    def c_clear_faults(self, query):
        self.server.journal.clear_faults()
        return {}

    def c_ratelimit(self, query):
        rl = self.server.ratelimit
        return rl.view() if rl is not None else {}

    def c_set_ratelimit(self, obj):
        unknown = set(obj) - {"limit", "window_s", "headers", "retry_after"}
        if unknown:
            raise SimError(400, "unknown fields: %s" % sorted(unknown))
        limit = want_int(obj, "limit", minimum=0, maximum=MAX_BATCH)
        w = obj.get("window_s", 1)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or \
                not 0.1 <= w <= 86400:
            raise SimError(400, "window_s: a number of seconds, 0.1 to "
                           "86400")
        headers = obj.get("headers", "kong")
        if headers not in RATELIMIT_HEADERS:
            raise SimError(400, "headers: one of %s" %
                           ", ".join(RATELIMIT_HEADERS))
        ra = obj.get("retry_after", True)
        if not isinstance(ra, bool):
            raise SimError(400, "retry_after: true or false")
        self.server.ratelimit = RateLimit(limit, w, headers, ra)
        return self.server.ratelimit.view()

    def c_clear_ratelimit(self, query):
        self.server.ratelimit = None
        return {}


def parse_class(s):
    name, sep, token = s.partition("=")
    if not sep or not CLASS_RE.match(name) or not token:
        raise argparse.ArgumentTypeError(
            "expected namespace/name=RUNNER_TOKEN, got %r" % s)
    return name, token


def make_server(listen, api_token, classes=(), tls=None,
                task_duration_ms=1000, verbose=False):
    """Builds a ready-to-serve simulator (also usable in-process)."""
    server = simhttp.Server(simhttp.parse_listen(listen), Handler, tls=tls,
                            verbose=verbose)
    server.api_token = api_token
    server.model = Model(task_duration_ms)
    server.ratelimit = None
    for name, token in classes:
        server.model.set_class(name, token)
    return server


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="CircleCI runner API simulator (see module docstring)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port")
    ap.add_argument("--port-file", help="written atomically with the port")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--token", required=True, help="API token (Circle-Token)")
    ap.add_argument("--class", dest="classes", action="append", default=[],
                    type=parse_class, metavar="NS/NAME=RUNNER_TOKEN")
    ap.add_argument("--task-duration-ms", type=int, default=1000)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if a.task_duration_ms < 0:
        ap.error("--task-duration-ms must be >= 0")
    tls = dict(cert=a.tls_cert, key=a.tls_key) if a.tls_cert else None
    try:
        server = make_server(a.listen, a.token, a.classes, tls,
                             a.task_duration_ms, a.verbose)
    except SimError as e:
        ap.error(str(e))
    simhttp.serve(server, a.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
