"""The Kubernetes/KubeVirt simulator (tests/sim/kube_sim.py) as a harness
Sim: started over TLS with the TestDir's PKI, wired to a CircleSim so its
VMs claim tasks, and handing the daemon a kubeconfig in one of the forms
operators use (token, token file, client certificate, CA file or data,
insecure-skip-tls-verify, or a deliberately wrong CA), or in-cluster
service-account credentials.

Besides the daemon's credentials the simulator always trusts a client
certificate with CN "e2e-admin" (ADMIN_CN): the tests read and write
objects through the real API with it (KubeSim.api), and its requests are
told apart from the daemon's in the journal (daemon_requests, writes).

Also here, for the test_kube_*.py files:
  VMRecorder      keeps polling /_sim/state and remembers every VM it ever
                  saw (by uid) with its latest history, so a test can judge
                  a DELETE after the VM is gone
  KubeTestCase    E2ETestCase plus start_kube()/start_stack() and checks an
                  operator cares about (no running VM deleted, no invalid
                  object sent, scale patches well formed, no restarts)
  pool_name()     the documented pool naming, written independently of the
                  C code
"""

import base64
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import threading
import time
import urllib.parse

import yaml

import harness
from harness import Sim

KUBE_TOKEN = "e2e-kube-bearer-token-3c9e71d2"
NAMESPACE = "runners"
ADMIN_CN = "e2e-admin"
DAEMON_CN = "runner-provisioner"

POOL_API = "/apis/pool.kubevirt.io/v1beta1"
VM_API = "/apis/kubevirt.io/v1"
POOL_FINALIZER = "pool.kubevirt.io/finalizer"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_CLASS = "runner-provisioner/resource-class"
ANNOT_CLASS = "runner-provisioner/resource-class-name"
ANNOT_HASH = "runner-provisioner/template-hash"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

ACTUATOR_HEADERS = [os.path.join(harness.SOURCE_DIR, "actuator", h)
                    for h in ("actuator.h", "plan.h", "bootloop.h")]


def actuator_constant(name):
    """A #define from the actuator's headers (an integer)."""
    for path in ACTUATOR_HEADERS:
        with open(path) as f:
            m = re.search(r"^#define\s+%s\s+(\d+)" % name, f.read(), re.M)
        if m is not None:
            return int(m.group(1))
    raise AssertionError("no #define %s in %s" % (name, ACTUATOR_HEADERS))


RESYNC_MS = actuator_constant("RESYNC_MS")
SECRET_RESYNC_MS = actuator_constant("SECRET_RESYNC_MS")
FINALIZER_GRACE_MS = actuator_constant("FINALIZER_GRACE_MS")
BOOT_LOOP_STREAK = actuator_constant("BOOT_LOOP_STREAK")
BOOT_LOOP_BACKOFF_MS = actuator_constant("BOOT_LOOP_BACKOFF_MS")
POOL_NAME_MAX = 40  # actuator/poolname.h


def pool_name(cls):
    """The pool name for a resource class, as the README documents it:
    "ns/name" -> "ns--name" when both parts are already clean DNS labels
    (the namespace without "--") and it fits in 40 characters; otherwise
    lower-cased, every run of other characters one "-" (at most 29
    characters), then "-" and the first 10 hex digits of the class
    name's SHA-256."""
    ns, _, name = cls.partition("/")
    clean = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    if ns and name and clean.match(ns) and clean.match(name) and \
            "--" not in ns and len(cls) + 1 <= POOL_NAME_MAX:
        return "%s--%s" % (ns, name)
    base = ""
    for word in re.findall(r"[A-Za-z0-9]+", cls):
        for i, ch in enumerate(word.lower()):
            add = ("-" if base and i == 0 else "") + ch
            if len(base) + len(add) > POOL_NAME_MAX - 11:
                break
            base += add
        else:
            continue
        break
    suffix = hashlib.sha256(cls.encode()).hexdigest()[:10]
    return "%s-%s" % (base, suffix) if base else suffix


def make_client_cert(pki, directory, cn="runner-provisioner"):
    """A client certificate signed by the TestDir's CA (openssl)."""
    os.makedirs(directory, exist_ok=True)
    key = os.path.join(directory, "client.key")
    csr = os.path.join(directory, "client.csr")
    crt = os.path.join(directory, "client.crt")
    ext = os.path.join(directory, "client.ext")
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
        "-out", csr, "-subj", "/CN=%s/O=system:serviceaccounts" % cn)
    with open(ext, "w") as f:
        f.write("extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", pki["ca"], "-CAkey",
        pki["ca_key"], "-CAcreateserial", "-out", crt, "-days", "2",
        "-extfile", ext)
    return crt, key


def make_other_ca(directory):
    """A CA that signed nothing the simulator presents."""
    crt = os.path.join(directory, "other-ca.crt")
    key = os.path.join(directory, "other-ca.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=some other CA"],
                   check=True, capture_output=True)
    return crt


class KubeSim(Sim):
    """tests/sim/kube_sim.py (see its docstring for the API and the
    /_sim control API).

    auth: "token" (inline in the kubeconfig), "token-file" (tokenFile, the
    file is self.token_file and can be rewritten to rotate the token: the
    simulator then accepts only the file's current content), "cert"
    (client certificate and key files), "cert-data" (inline base64 data).
    ca: "file", "data", "insecure" or "wrong".
    in_cluster: no kubeconfig; the daemon gets KUBERNETES_SERVICE_HOST/PORT
    and must find token, ca.crt and namespace in the service-account
    directory (service_account_dir() writes them; the test mounts them)."""

    name = "kube"
    script = "kube_sim.py"
    serves_kubernetes = True

    def __init__(self, tdir, circle=None, namespace=NAMESPACE,
                 token=KUBE_TOKEN, auth="token", ca="file",
                 boot_delay_ms=300, claim_interval_ms=100, tick_ms=50,
                 in_cluster=False):
        super().__init__(tdir)
        self.circle = circle
        self.namespace = namespace
        self.token = token
        self.auth = "token" if in_cluster else auth
        self.ca = ca
        self.in_cluster = in_cluster
        self.boot_delay_ms = boot_delay_ms
        self.claim_interval_ms = claim_interval_ms
        self.tick_ms = tick_ms
        # The daemon's credentials in a directory of their own, as a pod
        # mounts them: a rotated token (a new file) stays readable under
        # the actuator's Landlock rules.
        self.token_file = tdir.join("kube-credentials", "token")
        self.kubeconfig = tdir.join("kube-credentials", "kubeconfig")
        self._admin = None

    def sim_args(self):
        a = ["--boot-delay-ms", str(self.boot_delay_ms),
             "--claim-interval-ms", str(self.claim_interval_ms),
             "--tick-ms", str(self.tick_ms),
             # The tests' own identity (and the daemon's, with auth=cert*).
             "--client-ca", self.tdir.pki["ca"]]
        if self.auth == "token":
            a += ["--token", self.token]
        elif self.auth == "token-file":
            a += ["--token-file", self.token_file]
        if self.circle is not None:
            a += ["--circleci", self.circle.url,
                  "--circleci-ca", self.tdir.pki["ca"]]
        return a

    def start(self, timeout=30.0):
        os.makedirs(os.path.dirname(self.token_file), exist_ok=True)
        self.rotate_token(self.token)
        super().start(timeout)
        if not self.in_cluster:
            self.write_kubeconfig()
        return self

    def rotate_token(self, token):
        """Writes the token the simulator accepts (auth="token-file") and
        the daemon reads (its kubeconfig names the same file)."""
        self.token = token
        tmp = self.token_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(token + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.token_file)

    def write_kubeconfig(self):
        pki = self.tdir.pki
        cluster = {"server": self.url}
        if self.ca == "file":
            cluster["certificate-authority"] = pki["ca"]
        elif self.ca == "data":
            with open(pki["ca"], "rb") as f:
                cluster["certificate-authority-data"] = \
                    base64.b64encode(f.read()).decode()
        elif self.ca == "insecure":
            cluster["insecure-skip-tls-verify"] = True
        elif self.ca == "wrong":
            cluster["certificate-authority"] = make_other_ca(
                os.path.dirname(self.kubeconfig))
        user = {}
        if self.auth == "token":
            user["token"] = self.token
        elif self.auth == "token-file":
            user["tokenFile"] = self.token_file
        elif self.auth in ("cert", "cert-data"):
            crt, key = make_client_cert(
                pki, os.path.join(os.path.dirname(self.kubeconfig), "client"),
                cn=DAEMON_CN)
            if self.auth == "cert":
                user["client-certificate"] = crt
                user["client-key"] = key
            else:
                for k, path in (("client-certificate-data", crt),
                                ("client-key-data", key)):
                    with open(path, "rb") as f:
                        user[k] = base64.b64encode(f.read()).decode()
        doc = {"apiVersion": "v1", "kind": "Config",
               "current-context": "sim",
               "contexts": [{"name": "sim", "context": {
                   "cluster": "sim", "user": "sim",
                   "namespace": self.namespace}}],
               "clusters": [{"name": "sim", "cluster": cluster}],
               "users": [{"name": "sim", "user": user}]}
        with open(self.kubeconfig, "w") as f:
            yaml.safe_dump(doc, f)
        os.chmod(self.kubeconfig, 0o600)

    def kubeconfig_for(self, cn):
        """Another kubeconfig for this simulator, authenticating with a
        client certificate of common name cn: the journal's "user" tells
        its requests apart (two replicas of the daemon)."""
        d = self.tdir.join("kube", cn)
        crt, key = make_client_cert(self.tdir.pki, d, cn=cn)
        doc = {"apiVersion": "v1", "kind": "Config",
               "current-context": "sim",
               "contexts": [{"name": "sim", "context": {
                   "cluster": "sim", "user": "sim",
                   "namespace": self.namespace}}],
               "clusters": [{"name": "sim", "cluster": {
                   "server": self.url,
                   "certificate-authority": self.tdir.pki["ca"]}}],
               "users": [{"name": "sim", "user": {
                   "client-certificate": crt, "client-key": key}}]}
        path = os.path.join(d, "kubeconfig")
        with open(path, "w") as f:
            yaml.safe_dump(doc, f)
        os.chmod(path, 0o600)
        return path

    def service_account_dir(self):
        """token, ca.crt and namespace as a pod's service account has them,
        in a directory of the TestDir (returned)."""
        d = self.tdir.join("kube", "serviceaccount")
        os.makedirs(d, exist_ok=True)
        with open(self.tdir.pki["ca"], "rb") as f:
            ca = f.read()
        for name, data in (("token", self.token.encode()), ("ca.crt", ca),
                           ("namespace", self.namespace.encode())):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        return d

    def provisioner_args(self):
        return [] if self.in_cluster else ["--kubeconfig", self.kubeconfig]

    def provisioner_env(self):
        if not self.in_cluster:
            return {}
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                "KUBERNETES_SERVICE_PORT": str(self.port)}

    # Control API helpers.
    def state(self):
        return self.client.call("GET", "/_sim/state")

    def requests(self, since=0.0):
        """Journal entries (t, method, path, query, content_type, body,
        status, auth, user, verb, endpoint, key, ...) with t >= since;
        the tests' own API calls included."""
        return self.client.call("GET", "/_sim/requests", query={
            "since": repr(float(since))})["requests"]

    def daemon_requests(self, since=0.0):
        """The journal without the tests' own API calls."""
        return [r for r in self.requests(since) if r.get("user") != ADMIN_CN]

    def writes(self, since=0.0, events=False):
        """The daemon's writes to the objects it manages; with events,
        its Events (events.k8s.io) too."""
        return [r for r in self.daemon_requests(since)
                if r["method"] != "GET" and
                (events or r.get("endpoint") != "events")]

    def event_writes(self, since=0.0):
        return [r for r in self.daemon_requests(since)
                if r["method"] != "GET" and r.get("endpoint") == "events"]

    def events(self, pool=None):
        """The Events in the namespace (the simulator's state), oldest
        first, optionally only those regarding pool."""
        return [e for e in self.state()["events"]
                if e["namespace"] == self.namespace and
                (pool is None or (e.get("regarding") or {}).get("name") ==
                 pool)]

    def scale_requests(self, since=0.0, pool=None):
        return [r for r in self.writes(since)
                if r["path"].endswith("/scale") and
                (pool is None or r["path"].split("/")[-2] == pool)]

    def fault(self, **spec):
        return self.client.call("POST", "/_sim/faults", spec)["id"]

    def faults(self):
        return self.client.call("GET", "/_sim/faults")["faults"]

    def clear_faults(self):
        self.client.call("DELETE", "/_sim/faults")

    def config(self, **kw):
        return self.client.call("POST", "/_sim/config", kw)

    def poweroff(self, vm, namespace=None):
        return self.client.call("POST", "/_sim/vm/%s/%s/poweroff"
                                % (namespace or self.namespace, vm))

    def pools(self):
        return {p["name"]: p for p in self.state()["pools"]}

    def vms(self, pool=None):
        return [v for v in self.state()["vms"]
                if pool is None or v["name"].rsplit("-", 1)[0] == pool]

    # The real API, as the tests' admin (a client certificate).
    def api(self, method, path, body=None, content_type="application/json",
            query=None, timeout=15.0):
        """One request to the simulated API server -> (status, JSON body).
        path is relative to the namespace for "pools/...", "vms/...",
        "vmis/..." and "secrets/..." shorthands, else absolute."""
        if self._admin is None:
            crt, key = make_client_cert(
                self.tdir.pki, self.tdir.join("kube", "admin"), cn=ADMIN_CN)
            ctx = ssl.create_default_context(cafile=self.tdir.pki["ca"])
            ctx.load_cert_chain(crt, key)
            self._admin = ctx
        for short, base in (("pools", POOL_API + "/namespaces/%s/"
                             "virtualmachinepools"),
                            ("vms", VM_API + "/namespaces/%s/"
                             "virtualmachines"),
                            ("vmis", VM_API + "/namespaces/%s/"
                             "virtualmachineinstances"),
                            ("secrets", "/api/v1/namespaces/%s/secrets")):
            if path == short or path.startswith(short + "/"):
                path = base % self.namespace + path[len(short):]
        if query:
            path += "?" + urllib.parse.urlencode(query)
        conn = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self._admin,
            timeout=harness.scaled(timeout))
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = content_type
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            raw = r.read()
            try:
                out = json.loads(raw) if raw else None
            except ValueError:
                out = raw.decode(errors="replace")
            return r.status, out
        finally:
            conn.close()

    def get(self, path):
        """GET through the API; the object, or None on 404."""
        status, body = self.api("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise AssertionError("GET %s: %d %s" % (path, status, body))
        return body


def actuator_class(ready_body, cls):
    """The actuator's /ready detail for a class ({} while the actuator has
    not answered a health survey); ready_body parsed or text."""
    if isinstance(ready_body, str):
        ready_body = json.loads(ready_body)
    act = ready_body.get("children", {}).get("actuator", {})
    return ((act.get("detail") or {}).get("classes") or {}).get(cls) or {}


class VMRecorder:
    """Polls the simulator's state from a thread and remembers every VM
    ever seen, by uid: the latest view (with its history of events) and
    the first and last time it was seen.  pool_replicas keeps the
    (time, spec.replicas) changes of every pool."""

    def __init__(self, kube, interval=0.1):
        self.kube = kube
        self.interval = interval
        self.vms = {}        # uid -> latest view
        self.first_seen = {}
        self.last_seen = {}
        self.pool_replicas = {}  # pool -> [(t, replicas)]
        self.snapshots = 0
        self.errors = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(harness.scaled(15))

    def _run(self):
        while not self._stop.is_set():
            try:
                st = self.kube.state()
            except Exception:  # the simulator may be stopping
                self.errors += 1
                self._stop.wait(self.interval)
                continue
            t = st["time"]
            with self.lock:
                for v in st["vms"]:
                    self.vms[v["uid"]] = v
                    self.first_seen.setdefault(v["uid"], t)
                    self.last_seen[v["uid"]] = t
                # A VM deleted between two looks: its whole history.
                for v in st.get("deleted_vms", []):
                    if v["uid"] in self.vms:
                        self.vms[v["uid"]] = dict(self.vms[v["uid"]],
                                                  history=v["history"])
                    else:
                        self.vms[v["uid"]] = v
                for p in st["pools"]:
                    seq = self.pool_replicas.setdefault(p["name"], [])
                    if not seq or seq[-1][1] != p["replicas"]:
                        seq.append((t, p["replicas"]))
                self.snapshots += 1
            self._stop.wait(self.interval)

    def wait_snapshots(self, n=2, timeout=10.0):
        """Waits until n more snapshots were taken (the recorder has
        caught up with what happened before the call)."""
        start = self.snapshots
        harness.wait_for(lambda: self.snapshots >= start + n, timeout,
                         what="%d state snapshots" % n)

    def vm(self, uid):
        with self.lock:
            return self.vms.get(uid)

    def all(self):
        with self.lock:
            return dict(self.vms)


def events(view, before=None):
    """[(t, event)] of a VM view's history, optionally only before t."""
    return [(h["t"], h["event"]) for h in view.get("history") or []
            if before is None or h["t"] < before]


def powered_off_before(view, t):
    """True when the VM's history shows its guest powered off (or
    crashed) before t, and it did not boot again after that."""
    last = None
    for when, ev in events(view, before=t):
        if ev.startswith("power-off") or ev.startswith("crash"):
            last = "off"
        elif ev == "booted":
            last = "on"
    return last == "off"


class KubeTestCase(harness.E2ETestCase):
    """E2ETestCase with the Kubernetes simulator and operator-level
    checks of what the actuator did to it."""

    # The daemon's default: simulated VMs live seconds, as fast images with
    # short jobs do, and that is no boot loop.
    boot_loop_threshold = None

    def start_kube(self, circle=None, record=True, **kw):
        kube = self.sims.add(KubeSim(self.tdir, circle=circle, **kw))
        self.addCleanup(kube.stop)
        kube.start()
        kube.recorder = None
        if record:
            kube.recorder = VMRecorder(kube).start()
            self.addCleanup(kube.recorder.stop)
        return kube

    def start_stack(self, classes, circle_tokens=None, task_duration_ms=1500,
                    kube=None, boot_loop=None, start=True, **prov):
        """Config for classes ({name: {minReplicas...}}), a CircleCI
        simulator knowing them (with circle_tokens[name] instead of the
        configured runner token where given), the Kubernetes simulator and
        the daemon.  Returns (circle, kube, provisioner)."""
        self.write_config(classes)
        tokens = {c: harness.runner_token(c) for c in classes}
        tokens.update(circle_tokens or {})
        circle = self.start_circleci(tokens, task_duration_ms=task_duration_ms)
        k = self.start_kube(circle=circle, **(kube or {}))
        args = list(prov.pop("args", ()))
        if boot_loop or self.boot_loop_threshold:
            args += ["--boot-loop-threshold", boot_loop or
                     self.boot_loop_threshold]
        p = self.provisioner(args=args, **prov)
        if start:
            p.start()
        return circle, k, p

    # Waiting.
    def wait_pool(self, p, kube, pool, replicas, vms=None, running=None,
                  timeout=40.0):
        """Waits until the pool's spec.replicas is replicas (and, when
        given, it owns vms VMs, running of them Running); returns the
        state."""
        def check():
            st = kube.state()
            pl = [x for x in st["pools"] if x["name"] == pool]
            if not pl or pl[0]["replicas"] != replicas:
                return None
            mine = [v for v in st["vms"] if v["owner"] == pl[0]["uid"]]
            if vms is not None and len(mine) != vms:
                return None
            up = sum(v["printableStatus"] == "Running" for v in mine)
            if running is not None and up != running:
                return None
            return st
        return p.wait(check, timeout, "pool %s at %d replicas (vms %s, "
                      "running %s)" % (pool, replicas, vms, running))

    def wait_resyncs(self, p, kube, since, n=3, timeout=30.0):
        """Waits until the actuator listed pools n times after since."""
        def listed():
            return len([r for r in kube.daemon_requests(since)
                        if r.get("verb") == "list" and
                        r.get("endpoint") == "virtualmachinepools"]) >= n
        p.wait(listed, timeout, "%d pool lists" % n)

    # Checks.
    def assert_no_actuator_restart(self, p):
        """The actuator was started once and /ready counts no restart."""
        self.assertEqual(len(p.child_pids("actuator")), 1,
                         "the actuator was restarted\n" + p.log.tail())
        status, body = p.ready()
        self.assertEqual(body["children"]["actuator"]["restarts"], 0, body)
        self.assertEqual(body["children"]["actuator"]["state"], "running",
                         body)

    def assert_journal_sane(self, kube):
        """What the actuator sent was valid: no 422 (the simulator checks
        pools against the CRD schema and KubeVirt's webhook, Secrets like
        the API server), no 400/415; every scale request a merge patch of
        exactly {"spec":{"replicas":N}}; every VM DELETE with uid and
        resourceVersion preconditions (only the VM as listed); every VM
        PATCH a guarded finalizer patch."""
        for r in kube.daemon_requests():
            what = "%s %s -> %s: %s" % (r["method"], r["path"], r["status"],
                                        json.dumps(r.get("body"))[:600])
            # A guarded finalizer patch of a VM that changed since the
            # list fails its test operation with a 422: a race the
            # actuator expects, not an invalid request.
            raced = r["method"] == "PATCH" and \
                r.get("endpoint") == "virtualmachines" and \
                r["status"] == 422 and "test failed" in r.get("error", "")
            if not r.get("fault") and not raced:
                self.assertNotIn(r["status"], (400, 415, 422), what)
            if r["path"].endswith("/scale"):
                self.assertEqual(r["method"], "PATCH", what)
                self.assertEqual(r["content_type"], MERGE_PATCH, what)
                body = r["body"]
                self.assertEqual(list(body), ["spec"], what)
                self.assertEqual(list(body["spec"]), ["replicas"], what)
                n = body["spec"]["replicas"]
                self.assertTrue(isinstance(n, int) and n >= 0, what)
            if r.get("endpoint") == "virtualmachines" and \
                    r["method"] == "DELETE":
                pre = (r.get("body") or {}).get("preconditions") or {}
                self.assertTrue(pre.get("uid"), what)
                self.assertTrue(pre.get("resourceVersion"), what)
            if r.get("endpoint") == "virtualmachines" and \
                    r["method"] == "PATCH":
                self.assert_finalizer_patch(r)

    def assert_finalizer_patch(self, r):
        what = json.dumps(r)[:800]
        self.assertEqual(r["content_type"], JSON_PATCH, what)
        ops = r["body"]
        self.assertIsInstance(ops, list, what)
        tests = {o["path"]: o["value"] for o in ops if o["op"] == "test"}
        self.assertIn("/metadata/uid", tests, what)
        self.assertIn("/metadata/finalizers", tests, what)
        self.assertIn(POOL_FINALIZER, tests["/metadata/finalizers"], what)
        repl = [o for o in ops if o["op"] != "test"]
        self.assertEqual(len(repl), 1, what)
        self.assertEqual(repl[0]["path"], "/metadata/finalizers", what)
        self.assertEqual(repl[0]["op"], "replace", what)
        self.assertNotIn(POOL_FINALIZER, repl[0]["value"], what)
        # Everything else is kept.
        self.assertEqual(
            repl[0]["value"], [f for f in tests["/metadata/finalizers"]
                               if f != POOL_FINALIZER], what)

    def assert_vm_deletes_safe(self, kube, circle=None):
        """Every VM the actuator deleted had powered off before the DELETE
        reached the API (the recorder's history of that uid, or the
        CircleCI simulator: the VM's runner finished its task before),
        and the DELETE named that VM's uid."""
        rec = kube.recorder
        rec.wait_snapshots()
        seen = rec.all()
        tasks = circle.client.call("GET", "/_sim/tasks")["tasks"] \
            if circle is not None else []
        finished = {}
        for t in tasks:
            if t.get("runner") and t.get("finished_at"):
                finished[t["runner"]] = t["finished_at"]
        deletes = [r for r in kube.daemon_requests()
                   if r["method"] == "DELETE" and
                   r.get("endpoint") == "virtualmachines"]
        for r in deletes:
            uid = r["body"]["preconditions"]["uid"]
            name = r["key"]
            view = seen.get(uid)
            what = "DELETE %s (uid %s) at %.3f" % (name, uid, r["t"])
            if view is not None:
                self.assertEqual(view["name"], name, what)
                if powered_off_before(view, r["t"]):
                    continue
            # Gone before the recorder (which looks every 100 ms) saw it
            # stopped: its runner must have finished its (single) task
            # before the DELETE.
            runner = "%s-%s" % (name, uid[:8])
            self.assertIn(runner, finished, "%s: no evidence the VM had "
                          "stopped (%s, no finished task)" % (
                              what, json.dumps(events(view)) if view
                              else "never recorded"))
            self.assertLess(finished[runner], r["t"], what)
        return deletes


def walk_strings(obj):
    """Every string (keys too) inside a JSON value."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from walk_strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from walk_strings(v)


def decoded_forms(s):
    """s, and what it decodes to when it is base64 (possibly of gzip)."""
    out = [s]
    if len(s) >= 16 and re.match(r"^[A-Za-z0-9+/=\s]+$", s):
        try:
            raw = base64.b64decode(s, validate=False)
        except ValueError:
            return out
        out.append(raw.decode("latin-1"))
        if raw[:2] == b"\x1f\x8b":
            import gzip
            try:
                out.append(gzip.decompress(raw).decode("latin-1"))
            except OSError:
                pass
    return out
