#!/usr/bin/python3
"""End-to-end: every way an operator hands the daemon Kubernetes
credentials.

A kubeconfig with an inline token, a token file, client certificate and
key files, inline certificate data; the server's CA as a file, as inline
data, or insecure-skip-tls-verify: each combination creates the pool and
scales it, every request authenticated as expected.  A kubeconfig trusting
the wrong CA: no request ever reaches the API, one clear TLS error, the
actuator not ready, no crash.  In-cluster (the daemon in a mount namespace
with a service-account directory on a tmpfs and KUBERNETES_SERVICE_HOST/
PORT set): the pool is managed in the service account's namespace.
"""

import json
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import (KubeTestCase, pool_name, DAEMON_CN,  # noqa: E402
                     actuator_class)

CLS = "e2e-org/creds"
POOL = pool_name(CLS)
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def unshare_problem():
    """Why the daemon cannot be run in its own mount namespace here, or
    None."""
    if os.geteuid() != 0:
        return "needs root for unshare --mount (running as uid %d)" % \
            os.geteuid()
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    r = subprocess.run(["unshare", "--mount", "--propagation", "private",
                        "--fork", "--kill-child", "sh", "-c",
                        "mount -t tmpfs tmpfs \"$(realpath /var/run)\""],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return "unshare --mount is not permitted here: %s" % (
            r.stderr.strip() or "exit %d" % r.returncode)
    return None


class KubeCredentialsTest(KubeTestCase):

    def works(self, expect_auth, expect_user, **kube):
        circle, k, p = self.start_stack(
            {CLS: {"minReplicas": 1, "maxReplicas": 3}}, kube=kube)
        e = p.wait_log(proc="actuator", msg="actuator starting")
        self.assertEqual(e["credentials"], "kubeconfig " + k.kubeconfig, e)
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (POOL, CLS))
        circle.set_running(CLS, 2)
        p.wait_log(proc="actuator", msg="scaled %s from 1 to 2" % POOL)
        self.wait_pool(p, k, POOL, 2, vms=2, running=2)
        p.wait_ready(timeout=30)
        reqs = k.daemon_requests()
        self.assertTrue(reqs)
        for r in reqs:
            self.assertEqual((r["auth"], r["user"]), (expect_auth,
                                                      expect_user), r)
            self.assertIn(r["status"], (200, 201), r)
        self.assert_journal_sane(k)
        self.assert_no_actuator_restart(p)
        return k, p

    def test_inline_token_and_ca_file(self):
        self.works("token", "system:serviceaccount:runners:"
                   "runner-provisioner", auth="token", ca="file")

    def test_token_file_and_ca_data(self):
        self.works("token", "system:serviceaccount:runners:"
                   "runner-provisioner", auth="token-file", ca="data")

    def test_client_certificate_files_and_insecure_skip_verify(self):
        self.works("cert", DAEMON_CN, auth="cert", ca="insecure")

    def test_client_certificate_data_and_ca_file(self):
        self.works("cert", DAEMON_CN, auth="cert-data", ca="file")

    def test_wrong_ca_is_a_clear_error_and_nothing_is_sent(self):
        circle, k, p = self.start_stack(
            {CLS: {"minReplicas": 1, "maxReplicas": 3}},
            kube={"ca": "wrong"})
        e = p.wait_log(proc="actuator", msg="cannot reach the Kubernetes API")
        self.assertEqual((e["level"], e["server"]), ("error", k.url), e)
        self.assertRegex(e["error"].lower(), r"ssl|tls|certificate", e)
        circle.set_running(CLS, 2)

        def not_ready(body):
            b = json.loads(body)
            detail = b["children"]["actuator"].get("detail") or {}
            return b["children"]["actuator"]["ready"] is False and \
                detail.get("kubernetes_reachable") is False and \
                actuator_class(b, CLS).get("synced") is False
        p.wait_status("/ready", 503, timeout=30, where=not_ready)
        # Keeps trying, never gets through, says it once, does not crash.
        p.assert_stays(lambda: not k.requests() and len(
            p.child_pids("actuator")) == 1, 4, "no request reaching the API")
        self.assertEqual(len(p.lines(proc="actuator", msg="cannot reach the "
                                     "Kubernetes API")), 1)
        errors = [v for l, v in p.metrics().find(
            "runner_provisioner_kube_requests_total", code="error")]
        self.assertGreaterEqual(sum(errors), 2, "it stopped trying")
        self.assertEqual(k.state()["pools"], [])
        self.assertEqual(k.state()["secrets"], [])
        self.assert_no_actuator_restart(p)

    def test_in_cluster_service_account(self):
        why = unshare_problem()
        if why:
            self.skipTest(why)
        ns = "incluster-ns"
        host_had_sa = os.path.exists(SA_DIR)
        self.write_config({CLS: {"minReplicas": 1, "maxReplicas": 3}})
        circle = self.start_circleci([CLS], task_duration_ms=1500)
        k = self.start_kube(circle=circle, namespace=ns, in_cluster=True)
        src = k.service_account_dir()
        # A private mount namespace: a tmpfs over /run (where /var/run
        # points) holding the service account files, nothing on the host
        # touched; the supervisor is exec'ed last.
        script = ('set -e; src=$1; shift; run=$(realpath /var/run); '
                  'mount -t tmpfs -o mode=0755 tmpfs "$run"; '
                  'mkdir -p %s; cp "$src"/token "$src"/ca.crt '
                  '"$src"/namespace %s/; exec "$@"' % (SA_DIR, SA_DIR))
        p = self.provisioner(wrapper=[
            "unshare", "--mount", "--propagation", "private", "--fork",
            "--kill-child", "sh", "-c", script, "sh", src])
        self.assertNotIn("--kubeconfig", p.argv())
        env = p.environment()
        self.assertEqual((env["KUBERNETES_SERVICE_HOST"],
                          env["KUBERNETES_SERVICE_PORT"]),
                         ("127.0.0.1", str(k.port)))
        self.assertNotIn("KUBECONFIG", env)
        p.start()
        e = p.wait_log(proc="actuator", msg="actuator starting")
        self.assertEqual((e["credentials"], e["namespace"], e["kubernetes"]),
                         ("in-cluster service account", ns,
                          "https://127.0.0.1:%d" % k.port), e)
        p.wait_log(proc="actuator", msg="created pool %s for %s with 1 "
                   "replicas" % (POOL, CLS))
        circle.set_running(CLS, 2)
        p.wait_log(proc="actuator", msg="scaled %s from 1 to 2" % POOL)
        st = self.wait_pool(p, k, POOL, 2, vms=2, running=2)
        self.assertEqual([(x["namespace"], x["name"]) for x in st["pools"]],
                         [(ns, POOL)])
        self.assertEqual([(x["namespace"], x["name"]) for x in st["secrets"]],
                         [(ns, POOL + "-userdata")])
        for r in k.daemon_requests():
            self.assertRegex(r["path"], r"/namespaces/%s/" % re.escape(ns), r)
            self.assertEqual((r["auth"], r["user"]), (
                "token", "system:serviceaccount:%s:runner-provisioner" % ns),
                r)
        # The host's /var/run is untouched.
        self.assertEqual(os.path.exists(SA_DIR), host_had_sa)
        p.wait_ready(timeout=30)
        self.assert_journal_sane(k)
        self.assert_no_actuator_restart(p)
        self.assertEqual(p.stop()[0], 0)


if __name__ == "__main__":
    harness.main()
