"""Shared HTTP machinery for the simulators: a threaded HTTP/1.1 server
(keep-alive, optional TLS), JSON helpers, a request journal and fault
switches that tests flip through the simulators' /_sim control endpoints.

Only the Python standard library is used (Debian's python3).
"""

import http.server
import json
import os
import re
import socket
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse


def make_test_pki(directory, names=("localhost",), ips=("127.0.0.1", "::1")):
    """Creates a throwaway CA and a server certificate signed by it with
    openssl(1).  Returns a dict of file paths: ca, ca_key, cert, key."""
    os.makedirs(directory, exist_ok=True)
    p = {k: os.path.join(directory, f) for k, f in (
        ("ca", "ca.crt"), ("ca_key", "ca.key"), ("cert", "server.crt"),
        ("key", "server.key"), ("csr", "server.csr"), ("ext", "server.ext"))}
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
        "-keyout", p["ca_key"], "-out", p["ca"], "-days", "2",
        "-subj", "/CN=runner-provisioner test CA")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes",
        "-keyout", p["key"], "-out", p["csr"], "-subj", "/CN=localhost")
    san = ",".join(["DNS:" + n for n in names] + ["IP:" + i for i in ips])
    with open(p["ext"], "w") as f:
        f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n" % san)
    run("openssl", "x509", "-req", "-in", p["csr"], "-CA", p["ca"],
        "-CAkey", p["ca_key"], "-CAcreateserial", "-out", p["cert"],
        "-days", "2", "-extfile", p["ext"])
    return p


class Fault:
    """One fault switch.  Matches requests by method, endpoint name and
    path regex; fires `count` times (-1: until cleared)."""

    FIELDS = ("method", "endpoint", "path", "key", "status", "count",
              "retry_after", "body", "delay_ms", "drop", "oversize",
              "malformed", "truncate", "content_type")

    def __init__(self, spec):
        unknown = set(spec) - set(self.FIELDS)
        if unknown:
            raise ValueError("unknown fault fields: %s" % sorted(unknown))
        self.method = spec.get("method")
        self.endpoint = spec.get("endpoint")
        self.path = re.compile(spec["path"]) if spec.get("path") else None
        self.key = spec.get("key")
        self.status = spec.get("status")
        self.count = int(spec.get("count", -1))
        self.retry_after = spec.get("retry_after")
        self.body = spec.get("body")
        self.delay_ms = int(spec.get("delay_ms", 0))
        self.drop = bool(spec.get("drop", False))
        self.oversize = int(spec.get("oversize", 0))
        self.malformed = bool(spec.get("malformed", False))
        self.truncate = bool(spec.get("truncate", False))
        self.content_type = spec.get("content_type")
        self.fired = 0
        self.spec = spec

    def matches(self, method, endpoint, path, key):
        if self.count == 0:
            return False
        if self.method and self.method != "*" and self.method != method:
            return False
        if self.endpoint and self.endpoint != "*" and self.endpoint != endpoint:
            return False
        if self.key and self.key != "*" and self.key != key:
            return False
        if self.path and not self.path.search(path):
            return False
        return True


class Journal:
    """Thread-safe record of requests and fault switches."""

    def __init__(self, limit=200000):
        self.lock = threading.Lock()
        self.requests = []
        self.faults = []
        self.limit = limit

    def record(self, entry):
        with self.lock:
            if len(self.requests) >= self.limit:
                del self.requests[: self.limit // 10]
            self.requests.append(entry)

    def snapshot(self, since=0.0):
        with self.lock:
            return [r for r in self.requests if r["t"] >= since]

    def clear(self):
        with self.lock:
            self.requests = []

    def add_fault(self, spec):
        f = Fault(spec)
        with self.lock:
            self.faults.append(f)
        return f

    def clear_faults(self):
        with self.lock:
            self.faults = []

    def take_fault(self, method, endpoint, path, key):
        """Returns the first matching fault and consumes one shot of it."""
        with self.lock:
            for f in self.faults:
                if f.matches(method, endpoint, path, key):
                    if f.count > 0:
                        f.count -= 1
                    f.fired += 1
                    return f
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    """Base handler.  Subclasses implement route(method, path, query, body)
    returning (status, obj_or_bytes, headers); they raise SimError for an
    error answer and call apply_fault() for a matching fault switch.
    Control endpoints live under /_sim/ and are not journalled."""

    protocol_version = "HTTP/1.1"
    server_version = "rp-sim/1"

    def log_message(self, fmt, *args):  # keep test output quiet
        if self.server.verbose:
            super().log_message(fmt, *args)

    # Plumbing --------------------------------------------------------
    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self, method):
        u = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        body = self._body()
        # Recorded before answering, so dropped requests are journalled too.
        self._entry = dict(t=time.time(), method=method, path=u.path,
                           query=query, status=None)
        if not u.path.startswith("/_sim/"):
            self.server.journal.record(self._entry)
        try:
            status, payload, headers = self.route(method, u.path, query, body)
        except SimError as e:
            status, payload, headers = e.status, e.payload, e.headers
        except Dropped:
            self._entry["status"] = "dropped"
            raise
        except Exception as e:  # a simulator bug must not hang the client
            status, payload, headers = 500, {"message": "simulator: %r" % e}, {}
        self._entry["status"] = status
        if status >= 400 and isinstance(payload, dict) and \
                isinstance(payload.get("message"), str):
            self._entry["error"] = payload["message"]
        self.send(status, payload, headers)

    def send(self, status, payload, headers=None, content_type=None):
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
            content_type = content_type or "application/json"
        elif isinstance(payload, str):
            data = payload.encode()
            content_type = content_type or "text/plain"
        else:
            data = payload or b""
            content_type = content_type or "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def note(self, **kw):
        """Adds fields to this request's journal entry."""
        self._entry.update(kw)

    def apply_fault(self, f, default_body):
        """Plays a fault.  Returns a (status, payload, headers) triple to
        send, or None when the fault only delayed the request."""
        if f.delay_ms:
            time.sleep(f.delay_ms / 1000.0)
        if f.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            raise Dropped()
        headers = {}
        if f.retry_after is not None:
            headers["Retry-After"] = str(f.retry_after)
        if f.truncate:
            data = json.dumps(default_body).encode()
            self.send_response(f.status or 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data) + 100))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            raise Dropped()
        if f.oversize:
            pad = "x" * f.oversize
            return (f.status or 200,
                    json.dumps(dict(default_body, padding=pad)).encode(),
                    headers)
        if f.malformed:
            return (f.status or 200, b'{"unclaimed_task_count": ', headers)
        if f.body is not None:
            return (f.status or 200,
                    f.body if isinstance(f.body, (dict, list)) else
                    str(f.body).encode(), headers)
        if f.status:
            return (f.status, {"message": "injected fault %d" % f.status},
                    headers)
        return None

    def do_GET(self):
        self._guard("GET")

    def do_POST(self):
        self._guard("POST")

    def do_PUT(self):
        self._guard("PUT")

    def do_PATCH(self):
        self._guard("PATCH")

    def do_DELETE(self):
        self._guard("DELETE")

    def _guard(self, method):
        try:
            self._dispatch(method)
        except Dropped:
            pass
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True


class SimError(Exception):
    def __init__(self, status, message, headers=None, payload=None):
        super().__init__(message)
        self.status = status
        self.payload = payload if payload is not None else {"message": message}
        self.headers = headers or {}


class Dropped(Exception):
    pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, handler, tls=None, verbose=False):
        host = addr[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__(addr, handler)
        self.journal = Journal()
        self.verbose = verbose
        self.tls = tls
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls["cert"], tls["key"])
            self.ssl_context = ctx

    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls:
            # Handshake in the worker thread, not the accept loop.
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def finish_request(self, request, client_address):
        if self.tls:
            try:
                request.do_handshake()
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


def parse_listen(s):
    host, _, port = s.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def serve(server, port_file=None):
    """Announces the bound port (stdout and port_file) and serves forever."""
    port = server.server_address[1]
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, port_file)
    print("listening on port %d" % port, flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


def json_body(body):
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as e:
        raise SimError(400, "malformed JSON body: %s" % e)
