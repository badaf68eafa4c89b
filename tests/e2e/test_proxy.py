#!/usr/bin/python3
"""End-to-end: HTTPS_PROXY (the chart's extraEnv) reaches both children
and both use it.

A cluster whose egress goes through a proxy sets HTTPS_PROXY in the
pod; libcurl reads it in the poller (CircleCI) and the actuator
(Kubernetes API), so the supervisor must hand its environment to both.
The two simulators are reached here under names that do not resolve
(*.proxy.test): a request that skips the proxy fails, one that takes it
arrives through the test's CONNECT proxy, which resolves those names
itself.  (libcurl never proxies 127.0.0.1 or localhost, hence names.)
"""

import os
import select
import socket
import sys
import threading

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import simhttp  # noqa: E402
from kubesim import KubeTestCase, pool_name  # noqa: E402

CLS = "e2e-org/proxied"
CIRCLE_HOST, KUBE_HOST = "circleci.proxy.test", "kube.proxy.test"


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 that maps *.proxy.test to
    127.0.0.1 and records every request line it gets."""

    def __init__(self):
        self.lines = []
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.srv.close()

    def seen(self):
        with self.lock:
            return list(self.lines)

    def _accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        with c:
            head = b""
            while b"\r\n\r\n" not in head:
                d = c.recv(4096)
                if not d:
                    return
                head += d
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            with self.lock:
                self.lines.append(line)
            method, target, _ = line.split(" ", 2)
            host, _, port = target.rpartition(":")
            if method != "CONNECT" or not host.endswith(".proxy.test"):
                c.sendall(b"HTTP/1.1 403 Forbidden\r\n"
                          b"Content-Length: 0\r\n\r\n")
                return
            with socket.create_connection(("127.0.0.1", int(port))) as u:
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                socks = [c, u]
                while True:
                    r, _, _ = select.select(socks, [], [], 60)
                    if not r:
                        return
                    for s in r:
                        d = s.recv(65536)
                        if not d:
                            return
                        (u if s is c else c).sendall(d)


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(e.decode().split("=", 1)
                    for e in f.read().split(b"\0") if b"=" in e)


class ProxyTest(KubeTestCase):

    def test_both_children_use_https_proxy(self):
        # Certificates valid for the names the daemon is given.
        self.tdir._pki = simhttp.make_test_pki(
            self.tdir.join("pki"),
            names=("localhost", CIRCLE_HOST, KUBE_HOST))
        proxy = ConnectProxy()
        self.addCleanup(proxy.stop)
        circle, kube, p = self.start_stack(
            {CLS: {"minReplicas": 1, "maxReplicas": 3}}, start=False,
            env={"HTTPS_PROXY": "http://127.0.0.1:%d" % proxy.port})
        with open(kube.kubeconfig) as f:
            kc = yaml.safe_load(f)
        kc["clusters"][0]["cluster"]["server"] = \
            "https://%s:%d" % (KUBE_HOST, kube.port)
        kc_path = self.tdir.join("kube", "kubeconfig-proxied")
        with open(kc_path, "w") as f:
            yaml.safe_dump(kc, f)
        p.extra_args += [
            "--circleci-api-addr", "https://%s:%d" % (CIRCLE_HOST,
                                                      circle.port),
            "--kubeconfig", kc_path]
        p.start()
        pool = pool_name(CLS)
        # Through the proxy only: CircleCI's answers make demand, the API
        # server's the pool.
        circle.queue(CLS, 2)
        self.wait_pool(p, kube, pool, 2)
        seen = proxy.seen()
        for host, port in ((CIRCLE_HOST, circle.port),
                           (KUBE_HOST, kube.port)):
            self.assertIn("CONNECT %s:%d HTTP/1.1" % (host, port), seen)
        self.assertTrue(all(s.startswith("CONNECT ") for s in seen), seen)
        for child in harness.CHILDREN:
            env = environ(p.child_pid(child))
            self.assertEqual(env.get("HTTPS_PROXY"),
                             "http://127.0.0.1:%d" % proxy.port, child)
        p.wait_ready()


if __name__ == "__main__":
    harness.main()
