#!/usr/bin/python3
"""Tests for the Kubernetes/KubeVirt API simulator (kube_sim.py, model in
kube_model.py).  The simulator runs as a subprocess over TLS with a
throwaway CA, wired to the CircleCI simulator (circleci_sim.py, also a
subprocess over TLS) so that booted VMs claim and finish real tasks.

Every test uses its own namespace (and CircleCI resource class), so the
tests share one pair of simulators.  Negative assertions ("stays
Terminating", "is not replaced") wait for several controller passes (the
model's tick counter) instead of sleeping."""

import base64
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import simhttp  # noqa: E402

PYTHON = "/usr/bin/python3"
KUBE_SIM = os.path.join(HERE, "kube_sim.py")
CIRCLE_SIM = os.path.join(HERE, "circleci_sim.py")
TOKEN = "kube-token-5d1e"
CIRCLE_API_TOKEN = "circle-api-token-77"
BOOT_MS = 250
CLAIM_MS = 40
TICK_MS = 20
POOLS = "/apis/pool.kubevirt.io/v1beta1/namespaces/%s/virtualmachinepools"
VMS = "/apis/kubevirt.io/v1/namespaces/%s/virtualmachines"
VMIS = "/apis/kubevirt.io/v1/namespaces/%s/virtualmachineinstances"
SECRETS = "/api/v1/namespaces/%s/secrets"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/%s/leases"
EVENTS = "/apis/events.k8s.io/v1/namespaces/%s/events"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
POOL_FIN = "pool.kubevirt.io/finalizer"
VM_FIN = "kubevirt.io/virtualMachineControllerFinalize"
REV = "kubevirt.io/vm-pool-revision-name"


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
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(
        PR_SET_PDEATHSIG, signal.SIGKILL)


def openssl(*args):
    subprocess.run(("openssl",) + args, check=True, capture_output=True)


def make_client_cert(d, ca, ca_key, cn):
    key, csr, crt, ext = (os.path.join(d, cn + s) for s in (
        ".key", ".csr", ".crt", ".ext"))
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out",
            csr, "-subj", "/CN=%s/O=system:masters" % cn)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
            "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
    return crt, key


class Proc:
    """A simulator subprocess that announces its port in a file."""

    def __init__(self, workdir, name, cmd):
        self.workdir = workdir
        self.name = name
        os.makedirs(workdir, exist_ok=True)
        self.port_file = os.path.join(workdir, name + ".port")
        self.err_path = os.path.join(workdir, name + ".stderr")
        self.out = open(os.path.join(workdir, name + ".stdout"), "w")
        self.err = open(self.err_path, "w")
        self.proc = subprocess.Popen(
            cmd + ["--port-file", self.port_file], stdout=self.out,
            stderr=self.err, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("%s exited %d: %s" % (
                    name, self.proc.returncode, self.stderr()))
            return os.path.exists(self.port_file)
        wait_until(ready, what=name + " port file")
        with open(self.port_file) as f:
            self.port = int(f.read())

    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.out.close()
        self.err.close()


class Client:
    """HTTPS JSON client trusting only the test CA; keeps its connection."""

    def __init__(self, port, ca, token=TOKEN, cert=None):
        self.port = port
        self.ctx = ssl.create_default_context(cafile=ca)
        if cert:
            self.ctx.load_cert_chain(*cert)
        self.token = token
        self.conn = None

    def raw(self, method, path, body=None, ctype="application/json",
            token=None, timeout=10):
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        headers = {}
        if body is not None:
            headers["Content-Type"] = ctype
        tok = self.token if token is None else token
        if tok:
            headers["Authorization"] = "Bearer " + tok
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.port, context=self.ctx, timeout=timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                r = self.conn.getresponse()
                data = r.read()
                return r.status, r.headers, data
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise

    def __call__(self, method, path, body=None, ctype="application/json",
                 token=None):
        status, _, data = self.raw(method, path, body, ctype, token)
        return status, (json.loads(data) if data else None)

    def close(self):
        if self.conn:
            self.conn.close()


# research/kubevirt.md §1.5: the minimal valid v1.8 pool.
POOL_EXAMPLE = """
apiVersion: pool.kubevirt.io/v1beta1
kind: VirtualMachinePool
metadata:
  name: circleci-runner
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: circleci-runner
      runners.example.com/pool: circleci-runner
  scaleInStrategy:
    opportunistic: {}
  updateStrategy:
    opportunistic: {}
  virtualMachineTemplate:
    metadata:
      labels:
        app.kubernetes.io/name: circleci-runner
        runners.example.com/pool: circleci-runner
    spec:
      runStrategy: RerunOnFailure
      template:
        metadata:
          labels:
            app.kubernetes.io/name: circleci-runner
            runners.example.com/pool: circleci-runner
        spec:
          terminationGracePeriodSeconds: 30
          domain:
            cpu: {cores: 2}
            resources:
              requests: {memory: 4Gi}
            devices:
              disks:
              - name: containerdisk
                disk: {bus: virtio}
              - name: cloudinitdisk
                disk: {bus: virtio}
              interfaces:
              - name: default
                masquerade: {}
          networks:
          - name: default
            pod: {}
          volumes:
          - name: containerdisk
            containerDisk:
              image: quay.io/containerdisks/ubuntu:22.04
          - name: cloudinitdisk
            cloudInitNoCloud:
              secretRef:
                name: circleci-runner-userdata
"""


def userdata(token, mode="single-task", idle=None, url=None):
    api = {"auth_token": token}
    if url:
        api["url"] = url
    runner = {"name": "placeholder", "mode": mode,
              "working_directory": "/var/opt/circleci/workdir",
              "cleanup_working_directory": True}
    if idle:
        runner["idle_timeout"] = idle
    cc = {"write_files": [{
        "path": "/etc/circleci-runner/circleci-runner-config.yaml",
        "permissions": "0600", "owner": "circleci:circleci",
        "content": yaml.safe_dump({"api": api, "runner": runner})}],
        "runcmd": [["systemctl", "enable", "--now", "circleci-runner"]]}
    return "#cloud-config\n" + yaml.safe_dump(cc)


def pool_body(name, replicas=1, secret=None, scale_in="opportunistic",
              update="opportunistic", run="RerunOnFailure"):
    labels = {"app.kubernetes.io/managed-by": "runner-provisioner",
              "runner-provisioner.circleci.com/class": name}
    spec = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(labels)},
        "virtualMachineTemplate": {
            "metadata": {"labels": dict(labels),
                         "annotations": {"runner-provisioner.circleci.com/"
                                         "template-hash": "abc123"}},
            "spec": {
                "runStrategy": run,
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "domain": {
                            "cpu": {"cores": 1},
                            "resources": {"requests": {"memory": "1Gi"}},
                            "devices": {
                                "disks": [
                                    {"name": "containerdisk",
                                     "disk": {"bus": "virtio"}},
                                    {"name": "cloudinitdisk",
                                     "disk": {"bus": "virtio"}}],
                                "interfaces": [{"name": "default",
                                                "masquerade": {}}]}},
                        "networks": [{"name": "default", "pod": {}}],
                        "volumes": [
                            {"name": "containerdisk", "containerDisk": {
                                "image": "quay.io/containerdisks/ubuntu:22.04"
                            }},
                            {"name": "cloudinitdisk", "cloudInitNoCloud": {
                                "secretRef": {"name": secret or
                                              name + "-userdata"}}}]}}}}}
    if scale_in:
        spec["scaleInStrategy"] = {scale_in: {}}
    if update:
        spec["updateStrategy"] = {update: {}}
    return {"apiVersion": "pool.kubevirt.io/v1beta1",
            "kind": "VirtualMachinePool",
            "metadata": {"name": name}, "spec": spec}


class KubeSimTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="kube-sim-test-")
        cls.pki = simhttp.make_test_pki(os.path.join(cls.tmp, "pki"))
        cls.token_file = os.path.join(cls.tmp, "token")
        with open(cls.token_file, "w") as f:
            f.write("rotating-token-1\n")
        cls.client_cert = make_client_cert(
            os.path.join(cls.tmp, "pki"), cls.pki["ca"], cls.pki["ca_key"],
            "test-admin")
        other = os.path.join(cls.tmp, "other")
        rogue = simhttp.make_test_pki(other)
        cls.rogue_cert = make_client_cert(other, rogue["ca"],
                                          rogue["ca_key"], "rogue")
        cls.procs = []
        try:
            cls.circle = Proc(cls.tmp, "circleci", [
                PYTHON, CIRCLE_SIM, "--listen", "127.0.0.1:0",
                "--tls-cert", cls.pki["cert"], "--tls-key", cls.pki["key"],
                "--token", CIRCLE_API_TOKEN, "--task-duration-ms", "200"])
            cls.procs.append(cls.circle)
            cls.kube = Proc(cls.tmp, "kube", [
                PYTHON, KUBE_SIM, "--listen", "127.0.0.1:0",
                "--tls-cert", cls.pki["cert"], "--tls-key", cls.pki["key"],
                "--token", TOKEN, "--token-file", cls.token_file,
                "--client-ca", cls.pki["ca"],
                "--circleci", "https://localhost:%d" % cls.circle.port,
                "--circleci-ca", cls.pki["ca"],
                "--boot-delay-ms", str(BOOT_MS),
                "--claim-interval-ms", str(CLAIM_MS),
                "--tick-ms", str(TICK_MS), "--seed", "7"])
            cls.procs.append(cls.kube)
        except BaseException:
            cls.tearDownClass()
            raise
        cls.api = Client(cls.kube.port, cls.pki["ca"])
        cls.ctl = Client(cls.kube.port, cls.pki["ca"], token="")
        cls.cci = Client(cls.circle.port, cls.pki["ca"], token="")

    @classmethod
    def tearDownClass(cls):
        for p in reversed(getattr(cls, "procs", [])):
            p.stop()
        for c in ("api", "ctl", "cci"):
            if hasattr(cls, c):
                getattr(cls, c).close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.ns = self.id().rsplit(".", 1)[-1].replace("_", "-")[:50]

    def tearDown(self):
        self.ctl("DELETE", "/_sim/faults")
        self.ctl("POST", "/_sim/config", {"boot_delay_ms": BOOT_MS})

    # Helpers -------------------------------------------------------------
    def state(self):
        status, st = self.ctl("GET", "/_sim/state")
        self.assertEqual(status, 200)
        return st

    def ticks(self):
        return self.state()["counters"]["ticks"]

    def settle(self, n=8):
        """Waits until the controllers have run n more passes."""
        t0 = self.ticks()
        wait_until(lambda: self.ticks() >= t0 + n, what="%d ticks" % n)

    def vms(self, ns=None):
        return {v["name"]: v for v in self.state()["vms"]
                if v["namespace"] == (ns or self.ns)}

    def wait_vms(self, pred, what, timeout=15.0):
        return wait_until(lambda: (lambda v: v if pred(v) else None)(
            self.vms()), timeout=timeout, what=what)

    def get_vm(self, name):
        status, vm = self.api("GET", VMS % self.ns + "/" + name)
        self.assertEqual(status, 200, vm)
        return vm

    def make_secret(self, name, data):
        status, obj = self.api("POST", SECRETS % self.ns, {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name}, "stringData": {"userdata": data}})
        self.assertEqual(status, 201, obj)
        return obj

    def circle_class(self, runner_token, tasks=0, duration_ms=200):
        cls = "test-org/" + self.ns
        status, body = self.cci("POST", "/_sim/classes", {
            "name": cls, "runner_token": runner_token})
        self.assertEqual(status, 200, body)
        if tasks:
            status, body = self.cci("POST", "/_sim/queue", {
                "resource_class": cls, "add": tasks,
                "duration_ms": duration_ms})
            self.assertEqual(status, 200, body)
        return cls

    def circle_tasks(self, cls):
        status, body = self.cci("GET", "/_sim/tasks?resource_class="
                                + cls.replace("/", "%2F"))
        self.assertEqual(status, 200, body)
        return body["tasks"]

    def make_pool(self, name, replicas, token=None, **kw):
        """A pool and its cloud-init Secret; the runner token defaults to a
        class (without tasks) registered with the CircleCI simulator."""
        if token is None:
            token = "rt-" + self.ns
            self.circle_class(token)
        self.make_secret(name + "-userdata", userdata(token, **{
            k: kw.pop(k) for k in ("idle", "mode") if k in kw}))
        status, pool = self.api("POST", POOLS % self.ns,
                                pool_body(name, replicas, **kw))
        self.assertEqual(status, 201, pool)
        return pool

    def scale(self, name, n):
        status, body = self.api("PATCH", POOLS % self.ns + "/%s/scale" % name,
                                {"spec": {"replicas": n}}, MERGE)
        self.assertEqual(status, 200, body)
        return body

    def running(self, n, what=None):
        return self.wait_vms(
            lambda v: len(v) == n and all(
                x["printableStatus"] == "Running" for x in v.values()),
            what or "%d running VMs" % n)

    def assert_status(self, status, body, code, reason):
        self.assertEqual(status, code, body)
        self.assertEqual(body["kind"], "Status", body)
        self.assertEqual(body["apiVersion"], "v1")
        self.assertEqual(body["status"], "Failure")
        self.assertEqual(body["code"], code)
        self.assertEqual(body["reason"], reason, body)

    # Authentication ------------------------------------------------------
    def test_auth(self):
        path = SECRETS % self.ns
        status, body = self.api("GET", path, token="")
        self.assert_status(status, body, 401, "Unauthorized")
        status, body = self.api("GET", path, token="wrong")
        self.assert_status(status, body, 401, "Unauthorized")
        status, body = self.api("GET", path)
        self.assertEqual(status, 200, body)
        # The token file is re-read on every request: rotate it.
        status, _ = self.api("GET", path, token="rotating-token-1")
        self.assertEqual(status, 200)
        with open(self.token_file, "w") as f:
            f.write("rotating-token-2\n")
        status, body = self.api("GET", path, token="rotating-token-1")
        self.assert_status(status, body, 401, "Unauthorized")
        status, _ = self.api("GET", path, token="rotating-token-2")
        self.assertEqual(status, 200)
        # A client certificate from the trusted CA authenticates alone.
        t0 = time.time()
        c = Client(self.kube.port, self.pki["ca"], token="",
                   cert=self.client_cert)
        try:
            status, body = c("GET", path)
            self.assertEqual(status, 200, body)
            status, body = c("GET", path + "/absent")
            self.assert_status(status, body, 404, "NotFound")
        finally:
            c.close()
        # One signed by another CA is refused at the handshake.
        c = Client(self.kube.port, self.pki["ca"], token="",
                   cert=self.rogue_cert)
        try:
            with self.assertRaises((ssl.SSLError, ConnectionError,
                                    socket.error)):
                c("GET", path)
        finally:
            c.close()
        _, reqs = self.ctl("GET", "/_sim/requests?since=%f" % t0)
        mine = [r for r in reqs["requests"] if r["path"].startswith(path)]
        self.assertEqual([r["auth"] for r in mine], ["cert", "cert"])
        self.assertEqual(mine[0]["user"], "test-admin")

    # Secrets, selectors, conflicts ---------------------------------------
    def test_secret_crud_selectors_conflicts(self):
        path = SECRETS % self.ns
        for name, labels in (("a", {"app": "x", "tier": "1"}),
                             ("b", {"app": "x"}), ("c", {"app": "y"})):
            status, obj = self.api("POST", path, {
                "metadata": {"name": name, "labels": labels},
                "stringData": {"userdata": "#cloud-config\n" + name}})
            self.assertEqual(status, 201, obj)
            self.assertNotIn("stringData", obj)
            self.assertEqual(base64.b64decode(obj["data"]["userdata"]),
                             b"#cloud-config\n" + name.encode())
            for k in ("uid", "resourceVersion", "creationTimestamp"):
                self.assertIn(k, obj["metadata"])
        status, body = self.api("POST", path, {"metadata": {"name": "a"}})
        self.assert_status(status, body, 409, "AlreadyExists")
        self.assertEqual(body["message"], 'secrets "a" already exists')

        def names(sel):
            status, lst = self.api("GET", path + "?labelSelector=" + sel)
            self.assertEqual(status, 200, lst)
            self.assertEqual(lst["kind"], "SecretList")
            self.assertIn("resourceVersion", lst["metadata"])
            return sorted(i["metadata"]["name"] for i in lst["items"])
        self.assertEqual(names("app%3Dx"), ["a", "b"])
        self.assertEqual(names("app%3D%3Dx,tier"), ["a"])
        self.assertEqual(names("app!%3Dx"), ["c"])
        self.assertEqual(names("!tier"), ["b", "c"])
        self.assertEqual(names("app%20in%20(y,z)"), ["c"])
        self.assertEqual(names(""), ["a", "b", "c"])
        status, body = self.api("GET", path + "?labelSelector=a%3D%3D%3D")
        self.assert_status(status, body, 400, "BadRequest")
        status, page = self.api("GET", path + "?limit=2")
        self.assertEqual([i["metadata"]["name"] for i in page["items"]],
                         ["a", "b"])
        self.assertEqual(page["metadata"]["remainingItemCount"], 1)
        status, page = self.api("GET", path + "?limit=2&continue=" +
                                page["metadata"]["continue"])
        self.assertEqual([i["metadata"]["name"] for i in page["items"]],
                         ["c"])
        self.assertNotIn("continue", page["metadata"])

        status, a = self.api("GET", path + "/a")
        self.assertEqual(status, 200)
        self.assertEqual((a["kind"], a["apiVersion"]), ("Secret", "v1"))
        stale = a["metadata"]["resourceVersion"]
        a["stringData"] = {"extra": "1"}
        status, a2 = self.api("PUT", path + "/a", a)
        self.assertEqual(status, 200, a2)
        self.assertEqual(set(a2["data"]), {"userdata", "extra"})
        self.assertGreater(int(a2["metadata"]["resourceVersion"]), int(stale))
        status, body = self.api("PUT", path + "/a", a)  # stale again
        self.assert_status(status, body, 409, "Conflict")
        self.assertIn("the object has been modified", body["message"])
        status, body = self.api("PATCH", path + "/a", {
            "metadata": {"resourceVersion": stale}, "data": {"x": "eA=="}},
            MERGE)
        self.assert_status(status, body, 409, "Conflict")
        status, body = self.api("PATCH", path + "/a", {
            "data": {"extra": None, "x": "eA=="}}, MERGE)
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body["data"]), {"userdata", "x"})
        status, body = self.api("POST", path, {
            "metadata": {"name": "bad"}, "data": {"k": "not base64!"}})
        self.assert_status(status, body, 400, "BadRequest")
        status, body = self.api("POST", path, {
            "metadata": {"name": "Bad_Name"}})
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("metadata.name", body["message"])
        status, body = self.api("POST", path, {
            "metadata": {"name": "u", "label": {"a": "b"}}, "dat": {}})
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("metadata.label", body["message"])
        self.assertIn('unknown field "dat"', body["message"])
        # Re-POSTing an object read back from the server is a client bug.
        status, body = self.api("POST", path, dict(a, metadata={
            "name": "copy", "resourceVersion": stale}))
        self.assert_status(status, body, 500, "InternalError")
        self.assertIn("resourceVersion should not be set", body["message"])
        # The state lists secret names, never their data.
        st = json.dumps(self.state()["secrets"])
        self.assertIn('"name": "a"', st)
        self.assertNotIn(a2["data"]["userdata"], json.dumps(self.state()))
        status, body = self.api("DELETE", path + "/b")
        self.assertEqual(status, 200, body)
        status, body = self.api("GET", path + "/b")
        self.assert_status(status, body, 404, "NotFound")
        self.assertEqual(body["message"], 'secrets "b" not found')
        self.assertEqual(body["details"], {"name": "b", "kind": "secrets"})

    # Pool admission ------------------------------------------------------
    def test_pool_schema_and_webhook_rejections(self):
        path = POOLS % self.ns

        def rejected(mutate, *fields, prefix=None):
            body = pool_body("p")
            mutate(body)
            status, st = self.api("POST", path, body)
            self.assert_status(status, st, 422, "Invalid")
            for f in fields:
                self.assertIn(f, st["message"])
                self.assertIn(f, [c.get("field") for c in
                                  st["details"]["causes"]])
            if prefix:
                self.assertTrue(st["message"].startswith(prefix),
                                st["message"])
            return st["message"]

        spec = lambda b: b["spec"]  # noqa: E731
        tspec = lambda b: b["spec"]["virtualMachineTemplate"]["spec"]  # noqa
        vmi = lambda b: tspec(b)["template"]["spec"]  # noqa: E731
        msg = rejected(lambda b: spec(b).update(replicas=-1), "spec.replicas",
                       prefix='VirtualMachinePool.pool.kubevirt.io "p" is '
                       'invalid: ')
        self.assertIn("greater than or equal to 0", msg)
        rejected(lambda b: spec(b).update(replicas="3"), "spec.replicas")
        msg = rejected(lambda b: spec(b).update(replicaCount=3),
                       "spec.replicaCount")
        self.assertIn("unknown field", msg)
        rejected(lambda b: vmi(b)["domain"]["devices"]["disks"][0].update(
            bootorder=1),
            "spec.virtualMachineTemplate.spec.template.spec.domain.devices."
            "disks[0].bootorder")
        rejected(lambda b: spec(b).update(scaleInStrategy={
            "proactive": {"selectionPolicy": {"sortPolicy": "Youngest"}}}),
            "spec.scaleInStrategy.proactive.selectionPolicy.sortPolicy")
        rejected(lambda b: spec(b).pop("selector"), "spec.selector")
        msg = rejected(lambda b: tspec(b).pop("runStrategy"),
                       "spec.virtualMachineTemplate.spec.runStrategy",
                       prefix='admission webhook "virtualmachinepool-'
                       'validator.kubevirt.io" denied the request')
        self.assertIn("RunStrategy must be specified", msg)
        rejected(lambda b: tspec(b).update(runStrategy="Sometimes"),
                 "spec.virtualMachineTemplate.spec.runStrategy")
        rejected(lambda b: spec(b)["selector"]["matchLabels"].update(
            extra="x"), "spec.selector")
        rejected(lambda b: spec(b)["scaleInStrategy"].update(proactive={}),
                 "spec.scaleInStrategy")
        msg = rejected(lambda b: vmi(b)["volumes"][1]["cloudInitNoCloud"]
                       .update(userData="#cloud-config\n" + "x" * 2100),
                       "spec.virtualMachineTemplate.spec.template.spec."
                       "volumes[1].cloudInitNoCloud")
        self.assertIn("only one userdatasource", msg)
        msg = rejected(lambda b: vmi(b)["volumes"][1].update(
            cloudInitNoCloud={"userData": "#cloud-config\n" + "x" * 2100}),
            "spec.virtualMachineTemplate.spec.template.spec.volumes[1]."
            "cloudInitNoCloud.userData")
        self.assertIn("exceeds 2048 byte limit", msg)
        rejected(lambda b: vmi(b)["domain"]["devices"]["disks"].append(
            {"name": "scratch", "disk": {"bus": "virtio"}}),
            "spec.virtualMachineTemplate.spec.template.spec.domain.devices."
            "disks[2].name")
        rejected(lambda b: b["metadata"].update(labels={"k": "a/b"}),
                 "metadata.labels")
        msg = rejected(lambda b: vmi(b)["domain"]["resources"][
            "requests"].update(memory="4 GiB"),
            "spec.virtualMachineTemplate.spec.template.spec.domain."
            "resources.requests.memory")
        self.assertIn("should match", msg)
        bad = pool_body("p")
        bad["apiVersion"] = "pool.kubevirt.io/v2"
        status, body = self.api("POST", path, bad)
        self.assert_status(status, body, 400, "BadRequest")
        self.assertIn("does not match the expected API version",
                      body["message"])
        # A volume without a disk of its name is fine (KubeVirt adds one).
        ok = pool_body("p")
        vmi(ok)["domain"]["devices"]["disks"].pop(1)
        status, created = self.api("POST", path, ok)
        self.assertEqual(status, 201, created)
        # Schema defaults are applied as the API server does.
        self.assertEqual(created["metadata"]["generation"], 1)
        # selector is immutable; status writes through the main resource
        # are ignored; PUT of a custom resource needs a resourceVersion.
        status, fresh = self.api("GET", path + "/p")
        upd = json.loads(json.dumps(fresh))
        upd["spec"]["selector"]["matchLabels"]["extra"] = "x"
        upd["spec"]["virtualMachineTemplate"]["metadata"]["labels"][
            "extra"] = "x"
        status, body = self.api("PUT", path + "/p", upd)
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("spec.selector", body["message"])
        self.assertIn("immutable", body["message"])
        upd = json.loads(json.dumps(fresh))
        del upd["metadata"]["resourceVersion"]
        status, body = self.api("PUT", path + "/p", upd)
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("metadata.resourceVersion", body["message"])
        # A patch producing an invalid pool is refused too.
        status, body = self.api("PATCH", path + "/p", [
            {"op": "remove",
             "path": "/spec/virtualMachineTemplate/spec/runStrategy"}],
            JSONPATCH)
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("runStrategy", body["message"])
        # The research example pool is valid as is; v1alpha1 shares storage.
        example = yaml.safe_load(POOL_EXAMPLE)
        example["metadata"]["namespace"] = self.ns
        status, body = self.api("POST", path, example)
        self.assertEqual(status, 201, body)
        status, body = self.api("GET", path.replace("v1beta1", "v1alpha1") +
                                "/" + example["metadata"]["name"])
        self.assertEqual(status, 200, body)
        self.assertEqual(body["apiVersion"], "pool.kubevirt.io/v1alpha1")
        status, lst = self.api("GET", path)
        self.assertEqual(lst["kind"], "VirtualMachinePoolList")
        self.assertEqual(sorted(i["metadata"]["name"] for i in lst["items"]),
                         ["circleci-runner", "p"])

    # Scale subresource ---------------------------------------------------
    def test_scale_subresource(self):
        self.make_pool("sc", 1)
        path = POOLS % self.ns + "/sc/scale"
        status, sc = self.api("GET", path)
        self.assertEqual(status, 200, sc)
        self.assertEqual((sc["kind"], sc["apiVersion"]),
                         ("Scale", "autoscaling/v1"))
        self.assertEqual(sc["spec"], {"replicas": 1})
        body = self.scale("sc", 3)
        self.assertEqual(body["spec"]["replicas"], 3)
        status, pool = self.api("GET", POOLS % self.ns + "/sc")
        self.assertEqual(pool["spec"]["replicas"], 3)
        self.assertEqual(pool["metadata"]["generation"], 2)
        self.running(3)

        def stable():
            p = self.api("GET", POOLS % self.ns + "/sc")[1]
            return p.get("status", {}).get("readyReplicas") == 3
        wait_until(stable, what="3 ready replicas")
        s = self.api("GET", path)[1]
        self.assertEqual(s["status"]["replicas"], 3)
        self.assertEqual(s["status"]["selector"], ",".join(sorted(
            "%s=%s" % kv for kv in pool["spec"]["selector"][
                "matchLabels"].items())))
        stale = dict(s, spec={"replicas": 2})
        stale["metadata"] = dict(s["metadata"], resourceVersion="1")
        status, body = self.api("PUT", path, stale)
        self.assert_status(status, body, 409, "Conflict")
        status, body = self.api("PUT", path, dict(s, spec={"replicas": 2}))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["spec"]["replicas"], 2)
        status, body = self.api("PATCH", path, {"spec": {"replicas": -1}},
                                MERGE)
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("spec.replicas", body["message"])
        rv = self.api("GET", POOLS % self.ns + "/sc")[1]["metadata"][
            "resourceVersion"]
        self.scale("sc", 2)  # unchanged: no write, no new resourceVersion
        self.assertEqual(self.api("GET", POOLS % self.ns + "/sc")[1][
            "metadata"]["resourceVersion"], rv)

    # VM creation and boot ------------------------------------------------
    def test_vms_created_named_owned_and_booted(self):
        pool = self.make_pool("rp", 2)
        uid = pool["metadata"]["uid"]
        vms = self.running(2)
        self.assertEqual(sorted(vms), ["rp-0", "rp-1"])
        vm = self.get_vm("rp-0")
        m = vm["metadata"]
        self.assertEqual(m["ownerReferences"], [{
            "apiVersion": "pool.kubevirt.io/v1beta1",
            "kind": "VirtualMachinePool", "name": "rp", "uid": uid,
            "controller": True, "blockOwnerDeletion": True}])
        self.assertEqual(m["finalizers"], [POOL_FIN, VM_FIN])
        self.assertEqual(m["labels"]["runner-provisioner.circleci.com/class"],
                         "rp")
        self.assertTrue(m["labels"][REV].startswith("rp-"))
        self.assertEqual(m["annotations"], {
            "runner-provisioner.circleci.com/template-hash": "abc123"})
        self.assertEqual(vm["spec"]["runStrategy"], "RerunOnFailure")
        st = vm["status"]
        self.assertEqual((st["printableStatus"], st["ready"], st["created"]),
                         ("Running", True, True))
        ready = [c for c in st["conditions"] if c["type"] == "Ready"]
        self.assertEqual(ready[0]["status"], "True")
        status, vmi = self.api("GET", VMIS % self.ns + "/rp-0")
        self.assertEqual(status, 200, vmi)
        self.assertEqual(vmi["status"]["phase"], "Running")
        self.assertEqual(vmi["metadata"]["ownerReferences"][0]["uid"],
                         m["uid"])
        status, lst = self.api(
            "GET", VMS % self.ns + "?labelSelector=app.kubernetes.io%2F"
            "managed-by%3Drunner-provisioner")
        self.assertEqual(len(lst["items"]), 2)
        status, lst = self.api("GET", VMIS % self.ns)
        self.assertEqual(lst["kind"], "VirtualMachineInstanceList")
        self.assertEqual(len(lst["items"]), 2)

        def pool_ready():
            p = self.api("GET", POOLS % self.ns + "/rp")[1]
            return p if p.get("status", {}).get("readyReplicas") == 2 else 0
        p = wait_until(pool_ready, what="pool readyReplicas")
        self.assertEqual(p["status"]["replicas"], 2)
        # Steady state: the controllers write nothing.
        rv = self.state()["resourceVersion"]
        self.settle()
        self.assertEqual(self.state()["resourceVersion"], rv)
        self.assertEqual(p["metadata"]["finalizers"], [POOL_FIN])
        # Booting passes through Starting: a fresh VM is not Running yet.
        self.ctl("POST", "/_sim/config", {"boot_delay_ms": 60000})
        self.scale("rp", 3)
        v = self.wait_vms(lambda v: "rp-2" in v, "rp-2")
        self.assertEqual(v["rp-2"]["printableStatus"], "Starting")
        self.assertEqual(self.api("GET", VMIS % self.ns + "/rp-2")[1][
            "status"]["phase"], "Scheduled")

    # Power-off, reclaim, preconditions -----------------------------------
    def test_poweroff_stays_stopped_and_delete_replaces(self):
        self.make_pool("po", 1)
        vm0 = self.running(1)["po-0"]
        status, body = self.ctl("POST", "/_sim/vm/%s/po-0/poweroff" % self.ns)
        self.assertEqual(status, 200, body)
        self.wait_vms(lambda v: v["po-0"]["printableStatus"] == "Stopped",
                      "po-0 Stopped")
        self.settle()
        vms = self.vms()
        self.assertEqual(list(vms), ["po-0"])  # not replaced
        self.assertEqual(vms["po-0"]["uid"], vm0["uid"])
        self.assertEqual(vms["po-0"]["printableStatus"], "Stopped")
        vm = self.get_vm("po-0")
        self.assertFalse(vm["status"]["ready"])
        status, body = self.api("GET", VMIS % self.ns + "/po-0")
        self.assert_status(status, body, 404, "NotFound")
        # A DELETE with a stale uid precondition is refused.
        path = VMS % self.ns + "/po-0"
        status, body = self.api("DELETE", path, {
            "kind": "DeleteOptions", "apiVersion": "v1",
            "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"},
            "propagationPolicy": "Background"})
        self.assert_status(status, body, 409, "Conflict")
        self.assertIn("Precondition failed: UID in precondition", body[
            "message"])
        status, body = self.api("DELETE", path, {
            "preconditions": {"resourceVersion": "1"}})
        self.assert_status(status, body, 409, "Conflict")
        # At diff == 0 the pool finalizes it and makes a fresh po-0.
        status, body = self.api("DELETE", path, {
            "kind": "DeleteOptions", "apiVersion": "v1",
            "preconditions": {"uid": vm0["uid"]},
            "propagationPolicy": "Background"})
        self.assertEqual(status, 200, body)
        self.assertIsNotNone(body["metadata"].get("deletionTimestamp"))
        new = self.wait_vms(lambda v: "po-0" in v and v["po-0"]["uid"] !=
                            vm0["uid"] and v["po-0"]["printableStatus"] ==
                            "Running", "replacement po-0 Running")
        self.assertEqual(list(new), ["po-0"])
        self.assertIsNone(new["po-0"]["deletionTimestamp"])

    def test_crash_restarts_and_always_reboots(self):
        self.make_pool("cr", 1)
        self.running(1)
        vmi1 = self.api("GET", VMIS % self.ns + "/cr-0")[1]
        status, _ = self.ctl("POST", "/_sim/vm/%s/cr-0/crash" % self.ns)
        self.assertEqual(status, 200)

        def rebooted():
            s, vmi = self.api("GET", VMIS % self.ns + "/cr-0")
            return s == 200 and vmi["metadata"]["uid"] != vmi1["metadata"][
                "uid"] and vmi["status"]["phase"] == "Running"
        wait_until(rebooted, what="VMI restarted after a crash")
        self.assertEqual(self.vms()["cr-0"]["boots"], 2)
        # runStrategy Always: a guest power-off boots a new VMI.
        status, pool = self.api("GET", POOLS % self.ns + "/cr")
        status, body = self.api("PATCH", POOLS % self.ns + "/cr", {
            "spec": {"replicas": 2, "virtualMachineTemplate": {"spec": {
                "runStrategy": "Always"}}}}, MERGE)
        self.assertEqual(status, 200, body)
        self.running(2)
        self.assertEqual(self.get_vm("cr-1")["spec"]["runStrategy"], "Always")
        self.ctl("POST", "/_sim/vm/%s/cr-1/poweroff" % self.ns)
        self.wait_vms(lambda v: v["cr-1"]["boots"] == 2 and v["cr-1"][
            "printableStatus"] == "Running", "cr-1 rebooted (Always)")
        status, body = self.ctl("POST", "/_sim/vm/%s/nope/poweroff" % self.ns)
        self.assertEqual(status, 404)

    # The finalizer trap --------------------------------------------------
    def test_opportunistic_finalizer_trap_and_json_patch_release(self):
        self.make_pool("ft", 2)
        vms = self.running(2)
        self.ctl("POST", "/_sim/vm/%s/ft-1/poweroff" % self.ns)
        self.wait_vms(lambda v: v["ft-1"]["printableStatus"] == "Stopped",
                      "ft-1 Stopped")
        # Lowering replicas under opportunistic scale-in kills nothing.
        self.scale("ft", 1)
        self.settle()
        v = self.vms()
        self.assertEqual(sorted(v), ["ft-0", "ft-1"])
        self.assertEqual(v["ft-0"]["printableStatus"], "Running")
        # Deleting the stopped VM now (diff > 0) leaves it Terminating.
        path = VMS % self.ns + "/ft-1"
        status, body = self.api("DELETE", path, {
            "preconditions": {"uid": vms["ft-1"]["uid"]}})
        self.assertEqual(status, 200, body)
        self.wait_vms(lambda v: "ft-1" not in v or v["ft-1"][
            "finalizers"] == [POOL_FIN], "VM controller finalizer gone")
        self.settle()
        v = self.vms()
        self.assertIn("ft-1", v, "the pool released a VM at diff > 0")
        self.assertEqual(v["ft-1"]["printableStatus"], "Terminating")
        self.assertIsNotNone(v["ft-1"]["deletionTimestamp"])
        self.assertEqual(v["ft-1"]["finalizers"], [POOL_FIN])
        self.assertEqual(self.api("GET", POOLS % self.ns + "/ft")[1][
            "status"]["replicas"], 2)
        vm = self.get_vm("ft-1")
        self.assertEqual(vm["status"]["printableStatus"], "Terminating")
        # No new finalizers on a terminating object.
        status, body = self.api("PATCH", path, {"metadata": {
            "finalizers": [POOL_FIN, "example.com/other"]}}, MERGE)
        self.assert_status(status, body, 422, "Invalid")
        # A json-patch whose test fails changes nothing.
        status, body = self.api("PATCH", path, [
            {"op": "test", "path": "/metadata/uid", "value": "other-uid"},
            {"op": "replace", "path": "/metadata/finalizers", "value": []}],
            JSONPATCH)
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("test failed", body["message"])
        self.assertEqual(self.get_vm("ft-1")["metadata"]["finalizers"],
                         [POOL_FIN])
        # test uid + finalizers, then replace: the VM goes, nothing replaces
        # it (replicas 1 == 1 VM).
        status, body = self.api("PATCH", path, [
            {"op": "test", "path": "/metadata/uid",
             "value": vm["metadata"]["uid"]},
            {"op": "test", "path": "/metadata/finalizers",
             "value": [POOL_FIN]},
            {"op": "replace", "path": "/metadata/finalizers", "value": []}],
            JSONPATCH)
        self.assertEqual(status, 200, body)
        self.wait_vms(lambda v: sorted(v) == ["ft-0"], "ft-1 gone")
        self.settle()
        self.assertEqual(sorted(self.vms()), ["ft-0"])
        status, body = self.api("GET", path)
        self.assert_status(status, body, 404, "NotFound")

    def test_terminating_vm_blocks_its_index(self):
        self.make_pool("ix", 2)
        vms = self.running(2)
        self.ctl("POST", "/_sim/vm/%s/ix-1/poweroff" % self.ns)
        self.wait_vms(lambda v: v["ix-1"]["printableStatus"] == "Stopped",
                      "ix-1 Stopped")
        self.scale("ix", 1)
        self.api("DELETE", VMS % self.ns + "/ix-1", {
            "preconditions": {"uid": vms["ix-1"]["uid"]}})
        self.wait_vms(lambda v: v["ix-1"]["printableStatus"] ==
                      "Terminating", "ix-1 Terminating")
        # Scaling to 3: the new VM cannot take the terminating ix-1's name;
        # once the count matches, the pool finalizes ix-1 and recreates it.
        self.scale("ix", 3)
        v = self.wait_vms(lambda v: len(v) == 3 and v["ix-1"]["uid"] != vms[
            "ix-1"]["uid"] and v["ix-1"]["deletionTimestamp"] is None,
            "ix-1 recreated")
        self.assertEqual(sorted(v), ["ix-0", "ix-1", "ix-2"])
        self.assertLessEqual(v["ix-2"]["created"], v["ix-1"]["created"])
        self.assertEqual(v["ix-0"]["uid"], vms["ix-0"]["uid"])

    # Proactive scale-in: why the product sets opportunistic --------------
    def test_proactive_scale_in_kills_busy_vms(self):
        cls = self.circle_class("rt-" + self.ns, tasks=3, duration_ms=60000)
        self.make_pool("pr", 3, token="rt-" + self.ns, scale_in=None)
        self.wait_vms(lambda v: len(v) == 3 and all(
            x["task"] for x in v.values()), "3 VMs running tasks")
        self.scale("pr", 1)
        self.wait_vms(lambda v: len(v) == 1, "proactive scale-in")
        self.settle()
        v = self.vms()
        self.assertEqual(len(v), 1)
        tasks = self.circle_tasks(cls)
        self.assertEqual(len(tasks), 3)
        # Two jobs were running on VMs that the pool deleted: they never
        # finish.
        self.assertEqual(sorted(t["state"] for t in tasks), ["running"] * 3)
        self.assertEqual(self.state()["counters"]["vms_deleted_by_pool"] >= 2,
                         True)
        # ... and the simulator counts them: what a soak run checks.
        self.assertGreaterEqual(
            self.state()["counters"]["busy_vms_deleted"], 2)

    # Template updates ------------------------------------------------------
    def test_update_strategies(self):
        for update, restarts in (("opportunistic", False),
                                 ("proactive", True)):
            name = "up-" + update[:3]
            self.make_pool(name, 1, update=update)
            if update == "opportunistic":
                self.running(1)
            else:  # the opportunistic pool's VM is in the namespace too
                self.wait_vms(lambda v: name + "-0" in v and v[name + "-0"][
                    "printableStatus"] == "Running", name + " running")
            vm0 = self.get_vm(name + "-0")
            vmi0 = self.api("GET", VMIS % self.ns + "/%s-0" % name)[1]
            status, body = self.api("PATCH", POOLS % self.ns + "/" + name, {
                "spec": {"virtualMachineTemplate": {"spec": {"template": {
                    "spec": {"domain": {"cpu": {"cores": 2}}}}}}}}, MERGE)
            self.assertEqual(status, 200, body)
            vm = wait_until(lambda: (lambda vm: vm if vm["spec"]["template"][
                "spec"]["domain"]["cpu"]["cores"] == 2 else None)(
                    self.get_vm(name + "-0")), what="VM spec updated")
            self.assertNotEqual(vm["metadata"]["labels"][REV],
                                vm0["metadata"]["labels"][REV])
            self.assertEqual(vm["metadata"]["uid"], vm0["metadata"]["uid"])
            if restarts:
                wait_until(lambda: (lambda r: r[0] == 200 and r[1][
                    "metadata"]["uid"] != vmi0["metadata"]["uid"])(
                        self.api("GET", VMIS % self.ns + "/%s-0" % name)),
                    what="VMI restarted by the proactive update")
            else:
                self.settle()
                vmi = self.api("GET", VMIS % self.ns + "/%s-0" % name)[1]
                self.assertEqual(vmi["metadata"]["uid"],
                                 vmi0["metadata"]["uid"])
                self.assertEqual(vmi["spec"]["domain"]["cpu"]["cores"], 1)

    # Cloud-init Secret -----------------------------------------------------
    def test_missing_cloud_init_secret_blocks_boot(self):
        status, pool = self.api("POST", POOLS % self.ns, pool_body(
            "ms", 1, secret="ms-late"))
        self.assertEqual(status, 201, pool)
        self.wait_vms(lambda v: "ms-0" in v and v["ms-0"]["waiting"],
                      "launcher waiting for the secret")
        self.settle()
        vm = self.get_vm("ms-0")
        self.assertEqual(vm["status"]["printableStatus"], "Starting")
        cond = vm["status"]["conditions"][0]
        self.assertEqual((cond["type"], cond["status"]), ("Ready", "False"))
        self.assertIn('secret "ms-late" not found', cond["message"])
        self.circle_class("rt-" + self.ns)
        self.make_secret("ms-late", userdata("rt-" + self.ns))
        self.running(1, "boot once the secret exists")

    # Runner: claim/finish, idle timeout, bad token ---------------------------
    def test_claim_run_finish_poweroff(self):
        cls = self.circle_class("rt-" + self.ns, tasks=2, duration_ms=150)
        self.make_pool("cl", 2, token="rt-" + self.ns)
        v = self.wait_vms(lambda v: len(v) == 2 and all(
            x["printableStatus"] == "Stopped" for x in v.values()),
            "both VMs ran a task and powered off")
        tasks = self.circle_tasks(cls)
        self.assertEqual(sorted(t["state"] for t in tasks), ["done", "done"])
        runners = sorted(t["runner"] for t in tasks)
        self.assertEqual(runners, sorted(
            "%s-%s" % (n, x["uid"][:8]) for n, x in v.items()))
        for x in v.values():
            self.assertEqual(len(x["tasks_done"]), 1)
            self.assertIn("single-task runner finished", x["last_poweroff"])
            self.assertIsNone(x["runner_error"])
        # Not replaced while they stay Stopped; a reclaim makes new ones.
        self.settle()
        self.assertEqual(len(self.vms()), 2)
        busy = self.state()["counters"]["busy_vms_deleted"]
        self.cci("POST", "/_sim/queue", {"resource_class": cls, "add": 1,
                                         "duration_ms": 100})
        self.api("DELETE", VMS % self.ns + "/cl-0", {
            "preconditions": {"uid": v["cl-0"]["uid"]}})
        self.wait_vms(lambda w: "cl-0" in w and w["cl-0"]["uid"] != v["cl-0"][
            "uid"] and w["cl-0"]["tasks_done"], "replacement ran a task")
        # A powered-off VM was idle: deleting it interrupted nothing.
        self.assertEqual(self.state()["counters"]["busy_vms_deleted"], busy)

    def test_idle_timeout_powers_off(self):
        self.circle_class("rt-" + self.ns)
        self.make_pool("it", 1, token="rt-" + self.ns, idle="300ms")
        v = self.wait_vms(lambda v: "it-0" in v and v["it-0"][
            "printableStatus"] == "Stopped", "idle VM powered off")
        x = v["it-0"]
        self.assertIn("idle timeout", x["last_poweroff"])
        self.assertIsNone(x["runner_error"])
        self.assertGreaterEqual(x["stopped"] - x["booted"], 0.3)
        self.assertEqual(x["tasks_done"], [])

    def test_bad_runner_token_boot_loop(self):
        self.circle_class("rt-" + self.ns)
        self.make_pool("bt", 1, token="not-a-runner-token")
        v = self.wait_vms(lambda v: "bt-0" in v and v["bt-0"][
            "printableStatus"] == "Stopped", "VM stopped by a 401")
        first = v["bt-0"]
        self.assertIn("401", first["runner_error"])
        self.assertLess(first["stopped"] - first["booted"], 2.0)
        # Reclaiming it just repeats the cycle: a boot loop.
        self.api("DELETE", VMS % self.ns + "/bt-0", {
            "preconditions": {"uid": first["uid"]}})
        v = self.wait_vms(lambda v: "bt-0" in v and v["bt-0"]["uid"] !=
                          first["uid"] and v["bt-0"]["printableStatus"] ==
                          "Stopped", "replacement stopped by a 401 too")
        self.assertIn("401", v["bt-0"]["runner_error"])

    def test_runner_mode_must_be_single_task(self):
        self.make_pool("mo", 1, mode="continuous")
        v = self.wait_vms(lambda v: "mo-0" in v and v["mo-0"][
            "printableStatus"] == "Stopped", "misconfigured VM stopped")
        self.assertIn("single-task", v["mo-0"]["runner_error"])
        self.assertEqual(v["mo-0"]["boots"], 1)

    # Faults ------------------------------------------------------------------
    def test_faults(self):
        self.make_pool("fa", 1)
        scale = POOLS % self.ns + "/fa/scale"
        status, f = self.ctl("POST", "/_sim/faults", {
            "method": "PATCH", "path": "/virtualmachinepools/fa/scale$",
            "status": 409, "count": 1})
        self.assertEqual(status, 200, f)
        self.assertIsInstance(f["id"], int)
        status, body = self.api("PATCH", scale, {"spec": {"replicas": 2}},
                                MERGE)
        self.assert_status(status, body, 409, "Conflict")
        self.assertEqual(body["message"], 'Operation cannot be fulfilled on '
                         'virtualmachinepools.pool.kubevirt.io "fa": the '
                         'object has been modified; please apply your changes'
                         ' to the latest version and try again')
        self.scale("fa", 2)  # count 1: the next one goes through
        self.ctl("POST", "/_sim/faults", {
            "endpoint": "virtualmachinepools/scale", "key": "fa",
            "status": 403})
        status, body = self.api("PATCH", scale, {"spec": {"replicas": 3}},
                                MERGE)
        self.assert_status(status, body, 403, "Forbidden")
        self.assertEqual(body["message"], 'virtualmachinepools.pool.kubevirt'
                         '.io "fa" is forbidden: User "system:serviceaccount:'
                         '%s:runner-provisioner" cannot patch resource '
                         '"virtualmachinepools/scale" in API group '
                         '"pool.kubevirt.io" in the namespace "%s"'
                         % (self.ns, self.ns))
        status, faults = self.ctl("GET", "/_sim/faults")
        self.assertEqual([x["fired"] for x in faults["faults"]], [1, 1])
        self.ctl("DELETE", "/_sim/faults")
        self.assertEqual(self.scale("fa", 3)["spec"]["replicas"], 3)
        self.ctl("POST", "/_sim/faults", {
            "method": "GET", "endpoint": "virtualmachines", "status": 500,
            "count": 1})
        status, body = self.api("GET", VMS % self.ns)
        self.assert_status(status, body, 500, "InternalError")
        self.assertEqual(self.api("GET", VMS % self.ns)[0], 200)
        self.ctl("POST", "/_sim/faults", {
            "method": "GET", "path": "/secrets$", "delay_ms": 300,
            "count": 1})
        t0 = time.monotonic()
        status, body = self.api("GET", SECRETS % self.ns)
        self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["kind"], "SecretList")
        self.ctl("POST", "/_sim/faults", {
            "method": "GET", "path": "/secrets$", "drop": True, "count": 1})
        c = Client(self.kube.port, self.pki["ca"])
        try:
            with self.assertRaises((http.client.HTTPException, OSError)):
                c.conn = http.client.HTTPSConnection(
                    "127.0.0.1", self.kube.port, context=c.ctx, timeout=10)
                c.conn.request("GET", SECRETS % self.ns, headers={
                    "Authorization": "Bearer " + TOKEN})
                c.conn.getresponse().read()
        finally:
            c.close()
        # Faults are matched after authentication.
        self.ctl("POST", "/_sim/faults", {"status": 500, "count": 1})
        status, body = self.api("GET", SECRETS % self.ns, token="bad")
        self.assert_status(status, body, 401, "Unauthorized")
        status, body = self.api("GET", SECRETS % self.ns)
        self.assert_status(status, body, 500, "InternalError")

    # Journal, deletion, misc -----------------------------------------------
    def test_journal_records_requests(self):
        self.ctl("DELETE", "/_sim/requests")
        t0 = time.time()
        self.api("POST", SECRETS % self.ns, {"metadata": {"name": "j"},
                                             "stringData": {"k": "v"}})
        self.api("PATCH", SECRETS % self.ns + "/j", {"data": {"k": None}},
                 MERGE)
        self.api("GET", SECRETS % self.ns + "?labelSelector=a%3Db",
                 token="nope")
        self.ctl("GET", "/_sim/state")
        status, body = self.ctl("GET", "/_sim/requests?since=%f" % t0)
        reqs = body["requests"]
        self.assertEqual([(r["method"], r["status"], r["auth"]) for r in reqs],
                         [("POST", 201, "token"), ("PATCH", 200, "token"),
                          ("GET", 401, "none")])
        self.assertEqual(reqs[0]["body"]["metadata"]["name"], "j")
        self.assertEqual(reqs[1]["content_type"], MERGE)
        self.assertEqual(reqs[2]["query"], {"labelSelector": ["a=b"]})
        self.assertTrue(all(t0 <= r["t"] <= time.time() for r in reqs))
        self.ctl("DELETE", "/_sim/requests")
        self.assertEqual(self.ctl("GET", "/_sim/requests")[1]["requests"], [])

    def test_pool_delete_cascades(self):
        self.make_pool("del", 2)
        self.running(2)
        status, body = self.api("DELETE", POOLS % self.ns + "/del")
        self.assertEqual(status, 200, body)
        self.assertIsNotNone(body["metadata"].get("deletionTimestamp"))

        def gone():
            return not self.vms() and self.api(
                "GET", POOLS % self.ns + "/del")[0] == 404
        wait_until(gone, what="pool and VMs deleted")
        self.assertEqual(self.api("GET", VMIS % self.ns)[1]["items"], [])

    def test_foreground_delete_and_unsupported_patch(self):
        self.make_pool("fg", 1)
        self.running(1)
        vm = self.get_vm("fg-0")
        status, body = self.api("PATCH", VMS % self.ns + "/fg-0", {
            "metadata": {"labels": {"x": "y"}}},
            "application/strategic-merge-patch+json")
        self.assert_status(status, body, 415, "UnsupportedMediaType")
        status, body = self.api("DELETE", VMS % self.ns + "/fg-0", {
            "propagationPolicy": "Sideways"})
        self.assert_status(status, body, 422, "Invalid")
        status, body = self.api("DELETE", VMS % self.ns + "/fg-0", {
            "propagationPolicy": "Foreground",
            "preconditions": {"uid": vm["metadata"]["uid"]}})
        self.assertEqual(status, 200, body)
        self.assertIn("foregroundDeletion", body["metadata"]["finalizers"])
        # diff == 0: finalized by the pool and replaced under the same name.
        self.wait_vms(lambda v: "fg-0" in v and v["fg-0"]["uid"] != vm[
            "metadata"]["uid"] and v["fg-0"]["printableStatus"] == "Running",
            "fg-0 replaced")

    def test_pool_delete_orphan_keeps_vms(self):
        """propagationPolicy Orphan: the pool goes, its VMs stay (without
        owner and without the pool finalizer, so they can be deleted)."""
        self.make_pool("orph", 2)
        self.running(2)
        status, body = self.api("DELETE", POOLS % self.ns + "/orph", {
            "kind": "DeleteOptions", "apiVersion": "v1",
            "propagationPolicy": "Orphan"})
        self.assertEqual(status, 200, body)
        wait_until(lambda: self.api("GET", POOLS % self.ns + "/orph")[0] ==
                   404, what="pool deleted")
        self.settle()
        vms = self.vms()
        self.assertEqual(sorted(vms), ["orph-0", "orph-1"])
        for v in vms.values():
            self.assertEqual(v["printableStatus"], "Running", v)
            self.assertIsNone(v["owner"], v)
            self.assertNotIn(POOL_FIN, v["finalizers"], v)

    def lease_body(self, name, holder, rv=None, **spec):
        sp = {"holderIdentity": holder, "leaseDurationSeconds": 15,
              "acquireTime": "2026-01-02T03:04:05.123456Z",
              "renewTime": "2026-01-02T03:04:05.123456Z",
              "leaseTransitions": 0}
        sp.update(spec)
        md = {"name": name}
        if rv is not None:
            md["resourceVersion"] = rv
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": md, "spec": sp}

    def test_lease_optimistic_concurrency(self):
        path = LEASES % self.ns
        status, body = self.api("GET", path + "/l1")
        self.assert_status(status, body, 404, "NotFound")
        status, l1 = self.api("POST", path, self.lease_body("l1", "a"))
        self.assertEqual(status, 201, l1)
        self.assertEqual(l1["spec"]["holderIdentity"], "a")
        rv = l1["metadata"]["resourceVersion"]
        status, body = self.api("POST", path, self.lease_body("l1", "b"))
        self.assert_status(status, body, 409, "AlreadyExists")
        # Two candidates update from the same read: one wins.
        status, won = self.api("PUT", path + "/l1", self.lease_body(
            "l1", "b", rv, leaseTransitions=1))
        self.assertEqual(status, 200, won)
        self.assertNotEqual(won["metadata"]["resourceVersion"], rv)
        status, body = self.api("PUT", path + "/l1", self.lease_body(
            "l1", "c", rv, leaseTransitions=1))
        self.assert_status(status, body, 409, "Conflict")
        # No unconditional updates (leaseStrategy).
        status, body = self.api("PUT", path + "/l1",
                                self.lease_body("l1", "c"))
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("resourceVersion", body["message"])
        # An update that changes nothing keeps the resourceVersion.
        rv2 = won["metadata"]["resourceVersion"]
        status, same = self.api("PUT", path + "/l1", self.lease_body(
            "l1", "b", rv2, leaseTransitions=1))
        self.assertEqual(status, 200, same)
        self.assertEqual(same["metadata"]["resourceVersion"], rv2)
        st = [x for x in self.state()["leases"] if x["namespace"] == self.ns]
        self.assertEqual([(x["name"], x["spec"]["holderIdentity"])
                          for x in st], [("l1", "b")])
        status, body = self.api("PUT", path + "/nope", self.lease_body(
            "nope", "a", "1"))
        self.assert_status(status, body, 404, "NotFound")

    def test_lease_validation(self):
        path = LEASES % self.ns
        for spec, code, field in (
                ({"leaseDurationSeconds": 0}, 422,
                 "spec.leaseDurationSeconds"),
                ({"leaseTransitions": -1}, 422, "spec.leaseTransitions"),
                ({"preferredHolder": "x"}, 422, "spec.preferredHolder"),
                ({"holderId": "x"}, 422, "spec.holderId"),
                ({"renewTime": "yesterday"}, 400, "renewTime"),
                ({"leaseDurationSeconds": "15"}, 400,
                 "leaseDurationSeconds")):
            status, body = self.api("POST", path, self.lease_body(
                "bad", "a", **spec))
            self.assertEqual(status, code, (spec, body))
            self.assertIn(field, body["message"], spec)

    def event_body(self, name, **kw):
        ev = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
              "metadata": {"name": name},
              "eventTime": "2026-01-02T03:04:05.123456Z",
              "reportingController": "runner-provisioner",
              "reportingInstance": "host_1", "action": "Scale",
              "reason": "ScaledUp", "type": "Normal", "note": "up",
              "regarding": {"apiVersion": "pool.kubevirt.io/v1beta1",
                            "kind": "VirtualMachinePool", "name": "p",
                            "namespace": self.ns}}
        ev.update(kw)
        return ev

    def test_events_validation_and_series(self):
        path = EVENTS % self.ns
        status, ev = self.api("POST", path, self.event_body("p.1"))
        self.assertEqual(status, 201, ev)
        for kw, field in (
                ({"eventTime": None}, "eventTime"),
                ({"type": "Info"}, "type"),
                ({"reportingController": "a b"}, "reportingController"),
                ({"reportingInstance": ""}, "reportingInstance"),
                ({"action": "x" * 129}, "action"),
                ({"reason": ""}, "reason"),
                ({"note": "n" * 1025}, "note"),
                ({"regarding": {"kind": "X", "name": "p"}},
                 "regarding.namespace"),
                ({"series": {"count": 1, "lastObservedTime":
                             "2026-01-02T03:04:06.000000Z"}},
                 "series.count"),
                ({"deprecatedCount": 3}, "deprecatedCount"),
                ({"message": "legacy"}, "message")):
            status, body = self.api("POST", path, self.event_body("p.2",
                                                                  **kw))
            self.assert_status(status, body, 422, "Invalid")
            self.assertIn(field, body["message"], kw)
        # A series: merge patch of count and lastObservedTime.
        status, body = self.api("PATCH", path + "/p.1", {"series": {
            "count": 2, "lastObservedTime": "2026-01-02T03:04:07.000000Z"}},
            MERGE)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["series"]["count"], 2)
        status, body = self.api("PATCH", path + "/p.1", {"series": {
            "count": 1, "lastObservedTime": "2026-01-02T03:04:08.000000Z"}},
            MERGE)
        self.assert_status(status, body, 422, "Invalid")
        status, body = self.api("PATCH", path + "/p.1", {"note": "other"},
                                MERGE)
        self.assert_status(status, body, 422, "Invalid")
        self.assertIn("note", body["message"])
        evs = [e for e in self.state()["events"] if e["namespace"] == self.ns]
        self.assertEqual([(e["name"], e["series"]["count"]) for e in evs],
                         [("p.1", 2)])

    def test_control_config(self):
        status, cfg = self.ctl("POST", "/_sim/config", {"boot_delay_ms": 0,
                                                        "claim_interval_ms":
                                                        CLAIM_MS})
        self.assertEqual(status, 200, cfg)
        self.assertEqual(cfg["boot_delay_ms"], 0)
        status, body = self.ctl("POST", "/_sim/config", {"bogus": 1})
        self.assertEqual(status, 400, body)
        self.make_pool("cf", 1)
        v = self.running(1)
        self.assertLess(v["cf-0"]["booted"] - v["cf-0"]["created"], 0.2)


class CommandLineTest(unittest.TestCase):
    def run_sim(self, *args):
        return subprocess.run([PYTHON, KUBE_SIM] + list(args),
                              capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    def test_argument_errors(self):
        tmp = tempfile.mkdtemp(prefix="kube-sim-cli-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cert = os.path.join(tmp, "c.pem")
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        r = self.run_sim("--listen", "127.0.0.1:0", "--token", "t")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--tls-cert", r.stderr)
        r = self.run_sim("--tls-cert", cert, "--tls-key", cert)
        self.assertEqual(r.returncode, 2)
        self.assertIn("give --token, --token-file or --client-ca", r.stderr)
        r = self.run_sim("--tls-cert", cert, "--tls-key", cert, "--token",
                         "t", "--crd", os.path.join(tmp, "missing.yaml"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("missing.yaml", r.stderr)
        r = self.run_sim("--tls-cert", cert, "--tls-key", cert, "--token",
                         "t", "--tick-ms", "0")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--tick-ms", r.stderr)
        r = self.run_sim("--tls-cert", cert + ".absent", "--tls-key", cert,
                         "--token", "t")
        self.assertEqual(r.returncode, 2)
        self.assertIn("c.pem.absent: cannot read it", r.stderr)
        r = self.run_sim("--tls-cert", cert, "--tls-key", cert, "--token",
                         "t", "--circleci", "ftp://x")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--circleci must be an http(s) URL", r.stderr)
        r = self.run_sim("--tls-cert", cert, "--tls-key", cert, "--token",
                         "t")
        self.assertEqual(r.returncode, 2)  # not a certificate
        self.assertIn("error:", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
