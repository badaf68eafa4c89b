#!/usr/bin/python3
"""End-to-end: what the daemon shows while it manages real pools.

Tokens (the CircleCI API token, the runner token, the Kubernetes token
before and after a rotation) never appear in a log line, a metric, a probe
body, the journal of any non-Secret request or any Kubernetes object other
than the Secret, not even when the API server's error messages quote them.
/metrics passes promtool and its Kubernetes-side families agree with what
happened: VMs by state, pool replicas, scale and reclaim events, and API
requests counted by verb, resource and status exactly as the API server
journalled them.
"""

import base64
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import (KubeTestCase, pool_name, KUBE_TOKEN,  # noqa: E402
                     walk_strings, decoded_forms, actuator_class)

CLS = "e2e-org/observe"
POOL = pool_name(CLS)
RUNNER_TOKEN = harness.runner_token(CLS)
NEW_KUBE_TOKEN = "e2e-kube-rotated-bearer-61d2ee0b"
TOKENS = (harness.API_TOKEN, RUNNER_TOKEN, KUBE_TOKEN, NEW_KUBE_TOKEN)
PRE = "runner_provisioner_"
SCALED_RE = re.compile(r"^scaled \S+ from (\d+) to (\d+)$")
PATH_RE = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/(?P<res>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch",
         "DELETE": "delete"}
STATES = ("starting", "running", "stopped", "terminating", "other")


def request_key(r):
    """(verb, resource, code) of a journal entry, in the metric's terms."""
    m = PATH_RE.match(r["path"])
    verb = VERBS.get(r["method"]) or ("get" if m.group("name") else "list")
    res = m.group("res") + ("/" + m.group("sub") if m.group("sub") else "")
    code = str(r["status"]) if isinstance(r["status"], int) else "error"
    return verb, res, code


class KubeObservabilityTest(KubeTestCase):

    def assert_no_token(self, text, where):
        for t in TOKENS:
            self.assertNotIn(t, text, "a token in %s" % where)

    def assert_no_token_in_json(self, obj, where, allow=()):
        for s in walk_strings(obj):
            for form in decoded_forms(s):
                for t in TOKENS:
                    if t not in allow:
                        self.assertNotIn(t, form, "a token in %s: %r" % (
                            where, s[:200]))

    def probe_bodies(self, p):
        out = []
        for path in ("/ready", "/metrics", "/live"):
            status, body = p.get(path)
            out.append((path, body))
        return out

    def test_no_token_anywhere_and_metrics_match_what_happened(self):
        circle, kube, p = self.start_stack(
            {CLS: {"minReplicas": 1, "maxReplicas": 3}},
            kube={"auth": "token-file"}, start=False)
        # The API server's error messages quote secrets (proxies and
        # webhooks do): the runner token on the Secret create, the bearer
        # token on a scale.
        kube.fault(method="POST", endpoint="secrets", status=422, count=1,
                   body={"kind": "Status", "apiVersion": "v1",
                         "status": "Failure", "reason": "Invalid",
                         "code": 422, "message": 'Secret is invalid: data['
                         'userdata]: Invalid value: "auth_token: %s" '
                         '(marker-secret)' % RUNNER_TOKEN})
        p.start()
        w = p.wait_log(proc="actuator", msg="Kubernetes write failed; "
                       "retrying", verb="create", resource="secrets")
        self.assertIn("marker-secret", w["error"], w)
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (POOL, CLS))
        self.wait_pool(p, kube, POOL, 1, vms=1, running=1)
        bodies = self.probe_bodies(p)

        kube.fault(endpoint="virtualmachinepools/scale", status=500, count=3,
                   body={"kind": "Status", "apiVersion": "v1",
                         "status": "Failure", "code": 500,
                         "message": "upstream refused 'Authorization: Bearer"
                         " %s' (marker-scale)" % KUBE_TOKEN})
        circle.queue(CLS, 3, duration_ms=8000)

        def error_shown(b):
            return "marker-scale" in actuator_class(b, CLS).get(
                "last_error", "")
        def ready_with_error():
            body = p.get("/ready")[1]
            return body if error_shown(body) else None
        bodies.append(("/ready (error)", p.wait(
            ready_with_error, 20, "/ready to show the scale error")))
        p.wait_log(proc="actuator", timeout=30, where=lambda e: e.get(
            "pool") == POOL and e["msg"].startswith("scaled ") and
            e["to"] > e["from"])
        kube.rotate_token(NEW_KUBE_TOKEN)
        p.wait_log(proc="actuator", msg="Kubernetes token reloaded from %s"
                   % kube.token_file)
        bodies += self.probe_bodies(p)

        def done():
            ts = circle.client.call("GET", "/_sim/tasks")["tasks"]
            return len(ts) == 3 and all(t["state"] == "done" for t in ts)
        p.wait(done, 60, "the jobs to finish")
        # Back to one idle VM: nothing stopped or terminating left.
        self.wait_pool(p, kube, POOL, 1, vms=1, running=1, timeout=60)
        bodies += self.probe_bodies(p)

        # Tokens: logs, probes, metrics.
        with open(p.log.path, "rb") as f:
            self.assert_no_token(f.read().decode("utf-8", "replace"),
                                 "the log")
        for path, body in bodies:
            self.assert_no_token(body, path)
        # Kubernetes objects: pools, VMs, VMIs (the Secret is the only
        # place for the runner token, and holds no other token).
        for kind in ("pools", "vms", "vmis"):
            self.assert_no_token_in_json(kube.get(kind), kind)
        pool = kube.get("pools/" + POOL)
        for v in pool["spec"]["virtualMachineTemplate"]["spec"]["template"][
                "spec"]["volumes"]:
            if "cloudInitNoCloud" in v:
                self.assertEqual(list(v["cloudInitNoCloud"]), ["secretRef"],
                                 v)
        sec = kube.get("secrets/%s-userdata" % POOL)
        userdata = base64.b64decode(sec["data"]["userdata"]).decode()
        self.assertIn(RUNNER_TOKEN, userdata)
        self.assert_no_token_in_json(sec, "the Secret", allow=(RUNNER_TOKEN,))
        # What the actuator sent: no token outside the Secret's body.
        reqs = kube.daemon_requests()
        for r in reqs:
            where = "%s %s" % (r["method"], r["path"])
            self.assert_no_token(r["path"] + json.dumps(r["query"]), where)
            allow = (RUNNER_TOKEN,) if r.get("endpoint") == "secrets" else ()
            self.assert_no_token_in_json(r.get("body"), where, allow)

        # /metrics: promtool, the families, and the numbers.
        m = p.metrics()
        if os.access(harness.PROMTOOL, os.X_OK):
            rc, out = harness.promtool_check(m.text)
            self.assertEqual((rc, out.strip()), (0, ""), m.text)
        for fam, kind in (("vms", "gauge"), ("pool_replicas", "gauge"),
                          ("scale_events_total", "counter"),
                          ("reclaimed_vms_total", "counter"),
                          ("kube_requests_total", "counter")):
            self.assertEqual(m.types.get(PRE + fam), kind, fam)
        for labels, _ in m.find(PRE + "vms"):
            self.assertEqual(set(labels), {"resource_class", "state"}, labels)
        self.assertEqual({l["state"] for l, _ in m.find(
            PRE + "vms", resource_class=CLS)}, set(STATES))
        scaled = [SCALED_RE.match(e["msg"]) for e in p.lines(
            proc="actuator", pool=POOL) if SCALED_RE.match(e["msg"])]
        ups = sum(int(x.group(2)) > int(x.group(1)) for x in scaled)
        downs = len(scaled) - ups
        self.assertGreaterEqual(ups, 1)
        self.assertGreaterEqual(downs, 1)
        reclaimed = len(p.lines(proc="actuator", msg=re.compile(
            r"^reclaimed stopped VM ")))
        deleted = [r for r in reqs if r["method"] == "DELETE" and
                   r["status"] == 200]
        self.assertEqual(reclaimed, len(deleted))
        self.assertGreaterEqual(reclaimed, 2)

        def mismatch():
            """Differences between /metrics and the simulator, or None."""
            st = kube.state()
            mine = [v for v in st["vms"] if v["name"].startswith(POOL + "-")]
            journal = {}
            for r in kube.daemon_requests():
                if r["status"] is not None:
                    k = request_key(r)
                    journal[k] = journal.get(k, 0) + 1
            m = p.metrics()
            got = {(l["verb"], l["resource"], l["code"]): v
                   for l, v in m.find(PRE + "kube_requests_total")}
            want = {
                "pool_replicas": (m.get(PRE + "pool_replicas",
                                        resource_class=CLS),
                                  st["pools"][0]["replicas"]),
                "vms running": (m.get(PRE + "vms", resource_class=CLS,
                                      state="running"),
                                sum(v["printableStatus"] == "Running"
                                    for v in mine)),
                "vms stopped": (m.get(PRE + "vms", resource_class=CLS,
                                      state="stopped"), 0),
                "vms terminating": (m.get(PRE + "vms", resource_class=CLS,
                                          state="terminating"), 0),
                "scale up": (m.get(PRE + "scale_events_total",
                                   resource_class=CLS, direction="up"), ups),
                "scale down": (m.get(PRE + "scale_events_total",
                                     resource_class=CLS, direction="down"),
                               downs),
                "reclaimed": (m.get(PRE + "reclaimed_vms_total",
                                    resource_class=CLS), reclaimed),
                "kube requests": (got, {k: float(v)
                                        for k, v in journal.items()}),
            }
            bad = {k: v for k, v in want.items() if v[0] != v[1]}
            return bad or None
        last = [None]

        def agree():
            last[0] = mismatch()
            return last[0] is None
        try:
            harness.wait_for(agree, 20, what="/metrics to match")
        except AssertionError:
            self.fail("/metrics disagrees with the simulator: %r" % last[0])
        # The requests the faults answered are there under their codes.
        got = {(l["verb"], l["resource"], l["code"]): v for l, v in
               p.metrics().find(PRE + "kube_requests_total")}
        self.assertGreaterEqual(got.get(("create", "secrets", "422"), 0), 1)
        self.assertGreaterEqual(got.get(
            ("patch", "virtualmachinepools/scale", "500"), 0), 3)
        self.assertGreaterEqual(sum(v for k, v in got.items()
                                    if k[2] == "401"), 1)
        self.assert_vm_deletes_safe(kube, circle)
        self.assert_no_actuator_restart(p)


if __name__ == "__main__":
    harness.main()
