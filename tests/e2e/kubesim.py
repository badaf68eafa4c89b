"""The Kubernetes/KubeVirt simulator (tests/sim/kube_sim.py) as a harness
Sim: started over TLS with the TestDir's PKI, wired to a CircleSim so its
VMs claim tasks, and handing the daemon a kubeconfig in one of the forms
operators use (token, token file, client certificate, CA file or data,
insecure-skip-tls-verify, or a deliberately wrong CA).
"""

import base64
import os
import subprocess

import yaml

from harness import Sim

KUBE_TOKEN = "e2e-kube-bearer-token-3c9e71d2"
NAMESPACE = "runners"


def make_client_cert(pki, directory, cn="runner-provisioner"):
    """A client certificate signed by the TestDir's CA (openssl)."""
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
    file is self.token_file and can be rewritten to rotate the token),
    "cert" (client certificate and key files), "cert-data" (inline
    base64 data).  ca: "file", "data", "insecure" or "wrong"."""

    name = "kube"
    script = "kube_sim.py"
    serves_kubernetes = True

    def __init__(self, tdir, circle=None, namespace=NAMESPACE,
                 token=KUBE_TOKEN, auth="token", ca="file",
                 boot_delay_ms=300, claim_interval_ms=100, tick_ms=50):
        super().__init__(tdir)
        self.circle = circle
        self.namespace = namespace
        self.token = token
        self.auth = auth
        self.ca = ca
        self.boot_delay_ms = boot_delay_ms
        self.claim_interval_ms = claim_interval_ms
        self.tick_ms = tick_ms
        self.token_file = tdir.join("kube", "token")
        self.kubeconfig = tdir.join("kube", "kubeconfig")

    def sim_args(self):
        a = ["--token", self.token,
             "--boot-delay-ms", str(self.boot_delay_ms),
             "--claim-interval-ms", str(self.claim_interval_ms),
             "--tick-ms", str(self.tick_ms)]
        if self.auth == "token-file":
            a += ["--token-file", self.token_file]
        if self.auth.startswith("cert"):
            a += ["--client-ca", self.tdir.pki["ca"]]
        if self.circle is not None:
            a += ["--circleci", self.circle.url,
                  "--circleci-ca", self.tdir.pki["ca"]]
        return a

    def start(self, timeout=30.0):
        os.makedirs(os.path.dirname(self.token_file), exist_ok=True)
        self.rotate_token(self.token)
        super().start(timeout)
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
            crt, key = make_client_cert(pki, os.path.dirname(self.kubeconfig))
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

    def provisioner_args(self):
        return ["--kubeconfig", self.kubeconfig]

    # Control API helpers.
    def state(self):
        return self.client.call("GET", "/_sim/state")

    def requests(self, since=0.0):
        """Journal entries (t, method, path, query, content_type, body,
        status, auth, verb, endpoint, key, ...) with t >= since."""
        return self.client.call("GET", "/_sim/requests",
                                query={"since": repr(float(since))})["requests"]

    def writes(self, since=0.0):
        return [r for r in self.requests(since) if r["method"] != "GET"]

    def scale_requests(self, since=0.0, pool=None):
        return [r for r in self.writes(since)
                if r["path"].endswith("/scale") and
                (pool is None or r["path"].split("/")[-2] == pool)]

    def fault(self, **spec):
        return self.client.call("POST", "/_sim/faults", spec)["id"]

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
