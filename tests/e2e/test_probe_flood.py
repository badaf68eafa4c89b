#!/usr/bin/python3
"""End-to-end: the probes keep answering while hostile clients hold
connections open.

200 clients connect to a probe port, send a request line and then trickle
one header line every 300 ms, never finishing the request (and connect
again whenever they are cut off), from one address, from 200 different
ones, or 300 from 250 (past what a listener holds).  Meanwhile a
kubelet-like prober asks GET /live (and /ready, /metrics) with a fresh
connection and the kubelet's default 1 s timeout: every answer must come,
and in time.  The slow connections are cut (a request must arrive within
the deadline, whatever bytes trickle in), and the supervisor counts them in
runner_provisioner_http_connections_cut_total.  Loopback aliases
(127.0.x.y) stand in for the attackers' addresses.
"""

import os
import re
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

CLS = "e2e-org/flood"
HTTP_C = os.path.join(harness.SOURCE_DIR, "supervisor", "http.c")


def http_constant(name):
    with open(HTTP_C) as f:
        return int(re.search(r"^#define\s+%s\s+(\d+)" % name, f.read(),
                             re.M).group(1))


HTTP_REQUEST_MS = http_constant("HTTP_REQUEST_MS")
HTTP_CONN_SOFT = http_constant("HTTP_CONN_SOFT")
KUBELET_TIMEOUT_S = 1.0  # a probe's default timeoutSeconds


class SlowClients:
    """n connections to addr from the given source addresses, each sending
    a request line and then one header line every interval, forever; a
    connection the server closes is opened again.  Counts the cuts."""

    def __init__(self, addr, n, sources, interval=0.3):
        self.addr = harness.split_hostport(addr)
        self.n = n
        self.sources = sources
        self.interval = interval
        self.cut = 0
        self.opened = 0
        self.socks = {}  # socket -> slot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, slot):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.bind((self.sources[slot % len(self.sources)], 0))
            s.connect_ex(self.addr)
        except OSError:
            s.close()
            return
        self.socks[s] = [slot, False]  # slot, request line sent
        self.opened += 1

    def _run(self):
        for i in range(self.n):
            self._open(i)
        next_send = time.monotonic()
        while not self._stop.is_set():
            r, _, _ = select.select(list(self.socks), [], [], 0.05)
            for s in r:
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                if not data:  # cut off (or refused): come back
                    slot = self.socks.pop(s)[0]
                    s.close()
                    self.cut += 1
                    self._open(slot)
            if time.monotonic() < next_send:
                continue
            next_send = time.monotonic() + self.interval
            for s, st in list(self.socks.items()):
                line = (b"X-Slow: 1\r\n" if st[1] else
                        b"GET /live HTTP/1.1\r\nHost: probe\r\n")
                try:
                    s.send(line)
                    st[1] = True
                except OSError:
                    pass  # not connected yet, or cut: select says so
        for s in self.socks:
            s.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


class ProbeFloodTest(harness.E2ETestCase):

    def setUp(self):
        super().setUp()
        if not harness.loopback_alias_usable("127.0.1.1"):
            self.skipTest("loopback aliases (127.0.1.x) are not usable")
        sim = self.start_circleci([CLS])
        sim.set_counts(CLS, 1, 0)
        self.write_config({CLS: {"token": harness.runner_token(CLS)}})
        self.p = self.start_provisioner()
        self.p.wait_ready()

    def kubelet(self, paths, seconds):
        """Probes the paths in turn like the kubelet, one every 200 ms for
        seconds: returns the failures (path, status or exception)."""
        failures, n = [], 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            path = paths[n % len(paths)]
            try:
                status, _, _ = harness.http_get(
                    self.p.addrs[path], path, timeout=KUBELET_TIMEOUT_S)
                if status != 200:
                    failures.append((path, status))
            except OSError as e:
                failures.append((path, repr(e)))
            n += 1
            time.sleep(0.2)
        self.assertGreaterEqual(n, 5 * len(paths))
        return failures

    def flood(self, sources, paths=("/live",), n=200):
        addrs = dict.fromkeys(self.p.addrs[p] for p in paths)
        floods = [SlowClients(a, n, sources) for a in addrs]
        for f in floods:
            f.__enter__()
        try:
            # Long enough for slow connections to be cut and come back.
            failures = self.kubelet(paths, 3 * HTTP_REQUEST_MS / 1000.0)
            self.assertEqual(failures, [], "probes did not answer within "
                             "%.1fs while %d clients per port trickled "
                             "headers" % (KUBELET_TIMEOUT_S, n))
        finally:
            for f in floods:
                f.__exit__()
        self.assertGreater(sum(f.cut for f in floods), 0,
                           "no slow connection was ever cut")
        m = self.p.metrics()
        self.assertGreater(
            m.get("runner_provisioner_http_connections_cut_total"), 0)
        self.p.wait_ready()

    def test_live_answers_with_200_slow_clients_from_one_address(self):
        self.flood(["127.0.1.1"])

    def test_live_answers_with_200_slow_clients_from_200_addresses(self):
        self.flood(["127.0.1.%d" % i for i in range(1, 201)])

    def test_live_answers_with_300_slow_clients_past_the_cap(self):
        """More than a listener holds: newcomers make room by cutting
        those that waited longest."""
        self.flood(["127.0.3.%d" % (i % 250 + 1) for i in range(300)],
                   n=HTTP_CONN_SOFT + 44)

    def test_ready_and_metrics_answer_with_200_slow_clients_each(self):
        self.flood(["127.0.2.%d" % i for i in range(1, 201)],
                   paths=("/ready", "/metrics", "/live"))

    def test_a_slow_request_is_cut_at_the_deadline(self):
        """One client alone, trickling: cut within the deadline (plus
        slack), however steadily its bytes come."""
        host, port = harness.split_hostport(self.p.addrs["/live"])
        s = socket.create_connection((host, port), timeout=5)
        t0 = time.monotonic()
        s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n")
        cut = None
        deadline = t0 + harness.scaled(HTTP_REQUEST_MS / 1000.0 + 5)
        while time.monotonic() < deadline:
            try:
                s.sendall(b"X-Slow: 1\r\n")
                r, _, _ = select.select([s], [], [], 0.2)
                if r and not s.recv(4096):
                    cut = time.monotonic() - t0
                    break
            except OSError:
                cut = time.monotonic() - t0
                break
        s.close()
        self.assertIsNotNone(cut, "a trickling client was never cut off")
        self.assertGreaterEqual(cut, HTTP_REQUEST_MS / 1000.0 - 0.5)
        status, _, _ = harness.http_get(self.p.addrs["/live"], "/live")
        self.assertEqual(status, 200)


if __name__ == "__main__":
    harness.main()
