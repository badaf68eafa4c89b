#!/usr/bin/env python3
"""Writes the seed corpora, tests/fuzz/corpus/<harness>/, from the project's
own fixtures (tests/config, tests/golden, the unit tests' cases) and a few
hand-picked inputs per harness.  Deterministic: a file is named after its
contents, so running it again rewrites the same files (and leaves seeds
added by hand alone).  Structured seeds follow each harness's input layout (see
the comment at the top of tests/fuzz/<harness>.c).

    python3 tests/fuzz/make_seeds.py
"""
import base64
import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")


def write(harness, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, harness)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def config_files(prefixes):
    """tests/config files, except large ones (libFuzzer's default input
    size limit is the largest seed's size)."""
    d = os.path.join(TESTS, "config")
    for n in sorted(os.listdir(d)):
        path = os.path.join(d, n)
        if (n.endswith(".yaml") and n.startswith(prefixes) and
                os.path.getsize(path) <= 4096):
            with open(path, "rb") as f:
                yield n, f.read()


def golden():
    d = os.path.join(TESTS, "golden")
    for n in sorted(os.listdir(d)):
        if n.endswith(".hex"):
            with open(os.path.join(d, n)) as f:
                yield n, bytes.fromhex("".join(f.read().split()))


def u8(v):
    return struct.pack("<B", v & 0xff)


def u16(v):
    return struct.pack("<H", v & 0xffff)


def u32(v):
    return struct.pack("<I", v & 0xffffffff)


def u64(v):
    return struct.pack("<Q", v & 0xffffffffffffffff)


def lstr(s):
    """fuzz_bytes / fuzz_str: a length byte, then the bytes."""
    if isinstance(s, str):
        s = s.encode()
    assert len(s) < 256
    return u8(len(s)) + s


METRICS = (
    "# HELP runner_provisioner_up 1 while running.\n"
    "# TYPE runner_provisioner_up gauge\n"
    "runner_provisioner_up 1\n"
    "# HELP runner_provisioner_requests_total CircleCI requests.\n"
    "# TYPE runner_provisioner_requests_total counter\n"
    'runner_provisioner_requests_total{endpoint="tasks",code="200"} 12\n'
    'runner_provisioner_requests_total{endpoint="tasks",code="error"} 0\n'
    "# TYPE runner_provisioner_request_seconds histogram\n"
    'runner_provisioner_request_seconds_bucket{le="0.1"} 3\n'
    'runner_provisioner_request_seconds_bucket{le="+Inf"} 4\n'
    "runner_provisioner_request_seconds_sum 0.25\n"
    "runner_provisioner_request_seconds_count 4\n"
    'runner_provisioner_desired{class="my-org/x",n="a\\"b\\\\c\\n"} 1e3\n'
    "runner_provisioner_lag NaN\n"
)


def yaml_seeds():
    for _, data in config_files(("ok-", "err-")):
        write("yaml2json", data)
    for text in [
        "a: !!int 0x1F\nb: !!float 1e3\nc: !!bool true\nd: !!null ~\n"
        "e: !!str 12\nf: !!map {x: 1}\ng: !!seq [1, 2]\n",
        "- 0o17\n- -9223372036854775808\n- 9223372036854775808\n"
        "- .inf\n- .NaN\n- 1.5e308\n- 1e999\n- '1'\n- \"\\u00e9\"\n",
        "base: &b {k: [1, 2, {x: y}]}\nuse: [*b, *b, *b]\n",
        "key: |\n  literal\n  block\nfolded: >-\n  folded\n  text\n",
        "? complex\n: value\n",
        "%YAML 1.2\n---\nx: 1\n...\n",
        "\ufeffbom: true\n",
        "a: {b: {c: {d: {e: [[[[]]]]}}}}\n",
        "x: !custom 1\n",
        "<<: {a: 1}\n",
        "'quoted key': \"tab\\there\"\n",
    ]:
        write("yaml2json", text)
    write("yaml2json", "a: 1\n".encode("utf-16"))


def conf_seeds():
    for name, data in config_files(("ok-", "err-")):
        write("conf_cloudinit", data)
    write("conf_cloudinit",
          "# api: https://circleci.example.com/\n"
          "resourceClass:\n  my-org/server:\n    token: \"t0k3n\"\n"
          "    idleTimeout: 1h30m\n")
    write("conf_cloudinit",
          "resourceClass:\n  \"my-org/odd\":\n"
          "    token: \"caf\\u00e9\\\"'$(id)`x`\\\\n#: - [ { & * ! | >\"\n"
          "    idleTimeout: \"1.5h\"\n    minReplicas: 0\n"
          "    maxReplicas: 10000\n")
    # Direct mode: 0xff, name, token, idle timeout, API address.
    write("conf_cloudinit",
          b"\xff" + lstr("my-org/direct") +
          lstr("tok\n\t\x01\x7f caf\xc3\xa9 \xf0\x9f\x98\x80 \"'\\") +
          b"\x01" + lstr("10m") + b"\x01" + lstr("https://ci.example.com"))
    write("conf_cloudinit", b"\xff" + lstr("a/b") + lstr("bad\xff utf8"))


def msg_seeds():
    for _, data in golden():
        write("msg_decode", data)


def demand(seq, sel, cycle, observed, error, status, unclaimed, running,
           name):
    return (u8(0) + u32(seq) + u8(sel) + u64(cycle) + u64(observed) +
            u8(error) + u16(status) + u32(unclaimed) + u32(running) +
            lstr(name))


def roundtrip_seeds():
    write("msg_roundtrip",
          demand(7, 0x02 | 0x08 | 0x10, 42, 1700000000123, 0, 200, 5, 3,
                 "my-org/my-runner"))
    write("msg_roundtrip",
          demand(8, 0x02, 43, 1700000001123, 1, 503, 0, 0,
                 "dev-team/custom:arm64") +
          u8(1) + u32(1) + u64(1700000000000) +
          demand(9, 0x03, 1, 2, 0, 700, 0, 0, "bad name"))
    detail = b'{"classes":{"my-org/my-runner":{"ok":true}},"n":1}'
    write("msg_roundtrip",
          u8(2) + u32(13) + u8(1) + u8(1) + u64(123456789) + lstr(detail) +
          lstr(METRICS[:250]))
    write("msg_roundtrip",
          u8(2) + u32(14) + u8(2) + u8(0) + u64(0) + lstr(b"{}") + lstr(b""))


def metrics_seeds():
    write("metrics", METRICS)
    write("metrics", "runner_provisioner_x{a=\"1\"} -Inf\n\n")
    write("metrics", "other_metric 1\n")
    # 'R': families, then series operations.
    fam = (u8(0) + lstr(b"requests_total") + lstr("Requests.\nby \\ code") +
           u8(2) + lstr(b"endpoint") + lstr(b"code") + u8(0))
    hist = (u8(2) + lstr(b"seconds") + lstr(b"Latency.") + u8(1) +
            lstr(b"class") + u8(3) + struct.pack("<d", 0.1) +
            struct.pack("<d", 1.0) + struct.pack("<d", 10.0))
    ops = (u8(0) + lstr("tasks") + lstr("200") + u8(0) +
           struct.pack("<d", 1.0) +
           u8(1) + lstr("my-org/x\n\"q\"") + u8(2) +
           struct.pack("<d", 0.5) +
           u8(1) + lstr("my-org/x\n\"q\"") + u8(1) +
           struct.pack("<d", float("inf")) +
           u8(0) + lstr("a") + lstr("b") + u8(1) +
           struct.pack("<d", 5e-324))
    write("metrics", b"R" + u8(1) + fam + hist + ops)


def log_seeds():
    secret = lstr("s3cr3t-t0k3n-value")
    line = (u8(6) + u8(1) + u8(3) + u8(0) + lstr("worker loop scaler") +
            lstr("loop_name") + u8(0) + u8(0) + lstr("scaler") +
            lstr("unclaimed") + u8(4) + u64(4) + u8(1) +
            lstr("ok") + u8(2) + u8(1))
    with_secret = (u8(7) + u8(3) + u8(1) + u8(2) +
                   lstr("token is here: ") + u8(0) + u16(3) +
                   lstr("body") + u8(1) + u8(3) + lstr("abc") + u16(5000) +
                   u8(0) + u16(4090))
    write("log", u8(0) + secret + line + with_secret)
    write("log", u8(0) + secret + u8(4) + u16(40) + u8(2) +
          lstr("xx ") + u8(0) + u16(10))
    write("log", u8(5) + u8(1) + lstr("printf path \"\\\n") + u8(2) +
          u8(3) + u8(3) + u8(6) + u8(0) + u8(0) + lstr("hidden"))


def small_seeds():
    for s in ["10m", "1h30m", "1.5h", "300ms", "2h45m", "0", "-0", "+0",
              "1\u00b5s", "1\u03bcs", "10m0s", ".5s", "5.s",
              "2562047h47m16.854775807s", "2562047h47m16.854775808s",
              "-1s", "1d", "1", "", "1h-1m", "9223372036854775807ns"]:
        write("duration", "P" + s)
    write("duration", b"F" + u64(5400000))
    write("duration", b"F" + u64(999))
    for s in ["QQ==", "aGVsbG8gd29ybGQ=", "aGVs\nbG8g\r\nd29y bGQ=",
              "QR==", "QQ=", "Q===", "QQ==QQ==", "", "ab-_", "////"]:
        write("base64", "D" + s)
    write("base64", b"E" + bytes(range(256))[:100])
    pem = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n" * 3)
    write("base64", b"D" + pem)
    for s in [":8000", "127.0.0.1:8001", "[::1]:8000", "localhost:0",
              "[fe80::1%eth0]:65535", "::1:80", "host: 80", "host:+80",
              "host:-0", "host:65536", "[::1]8000", "a:b:c"]:
        write("split_addr", s)
    for s in ["120", "0", "Wed, 21 Oct 2015 07:28:00 GMT",
              "Sun, 06 Nov 1994 08:49:37 GMT", "3601",
              "99999999999999999999", "0000000000042", "12a", "-5", ""]:
        write("retry_after", s)


def answer(kind, status, flags, retry_after, body):
    return u8(kind) + u16(status) + u8(flags) + lstr(retry_after) + \
        body.encode()


def circleci_seeds():
    token = "CCIPAT_fuzzTokenValue0123456789abcdef"
    for kind, body in [
            (0, '{"unclaimed_task_count": 7}'),
            (1, '{"running_runner_tasks": 3}\n'),
            (1, '{"items": [], "running_runner_tasks": 12, "n": "s"}'),
            (0, '{"unclaimed_task_count": 1, "unclaimed_task_count": 2}'),
            (0, '{"unclaimed_task_count": -1}'),
            (0, '{"unclaimed_task_count": 3.0}'),
            (0, '<html>502 Bad Gateway</html>'),
            (2, '{"items": [{"resource_class": "a/b"}, {}]}')]:
        write("circleci_parse", answer(kind, 200, 0, "", body))
    write("circleci_parse",
          answer(0, 429, 0, "30", '{"message": "Rate limit exceeded"}'))
    write("circleci_parse",
          answer(1, 429, 0, "Wed, 21 Oct 2015 07:28:00 GMT", ""))
    write("circleci_parse",
          answer(0, 401, 0, "",
                 '{"message": "Invalid token ' + token + ' provided."}'))
    write("circleci_parse",
          answer(0, 403, 0, "", '{"message": "' + "x" * 140 + token + '"}'))
    write("circleci_parse", answer(0, 503, 0, "", "Service Unavailable"))
    write("circleci_parse", answer(1, 0, 2 | (28 << 2), "", ""))
    write("circleci_parse", answer(0, 200, 1, "", '{"unclaimed_task_co'))


def http_seeds():
    def response(kind_cap, head, body):
        return bytes([kind_cap]) + head.encode() + b"\r\n" + body.encode()
    for kc, head, body in [
            (0x40, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
             "Content-Length: 27\r\n", '{"unclaimed_task_count": 7}'),
            (0x41, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n",
             '1b\r\n{"running_runner_tasks": 3}\r\n0\r\n\r\n'),
            (0x40, "HTTP/1.1 429 Too Many Requests\r\nRetry-After:  120 \r\n"
             "Content-Length: 35\r\n", '{"message": "Rate limit exceeded"}\n'),
            (0x40, "HTTP/1.1 100 Continue\r\nRetry-After: 5\r\n\r\n"
             "HTTP/1.1 429 Too Many Requests\r\n"
             "retry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n", ""),
            (0x40, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 40\r\n",
             '{"message": "Invalid token provided."}\n\n'),
            (0x40, "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n",
             '{"unclaimed_task_count": 7}'),
            (0x00, "HTTP/1.1 200 OK\r\n", "x" * 100),
            (0x40, "HTTP/1.0 503 Service Unavailable\r\n", "down")]:
        write("circleci_http", response(kc, head, body))


def kubeconfig_seeds():
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n"
                          b"-----END CERTIFICATE-----\n").decode()
    base = ("apiVersion: v1\nkind: Config\ncurrent-context: sim\n"
            "contexts:\n- name: sim\n  context: {cluster: sim, user: sim, "
            "namespace: runners}\n"
            "clusters:\n- name: sim\n  cluster:\n    server: %s\n%s"
            "users:\n- name: sim\n  user:\n%s")
    for server, cluster, user in [
            ("https://127.0.0.1:6443", "    certificate-authority: ca.crt\n",
             "    token: abc.def.ghi\n"),
            ("https://[::1]:6443/", "    certificate-authority-data: %s\n"
             % ca, "    tokenFile: token\n"),
            ("https://k8s.example.com",
             "    insecure-skip-tls-verify: true\n",
             "    client-certificate-data: %s\n    client-key-data: %s\n"
             % (ca, ca)),
            ("https://k8s.example.com", "",
             "    client-certificate: /nonexistent/c.crt\n"
             "    client-key: k.key\n"),
            ("http://insecure.example.com", "", "    token: x\n"),
            ("https://k8s.example.com", "",
             "    exec: {command: aws, args: [eks, get-token]}\n"),
            ("https://k8s.example.com", "",
             "    username: admin\n    password: secret\n"),
            ("https://k8s.example.com", "",
             "    client-certificate-data: '%s'\n" % ca),
            ("https://k8s.example.com",
             "    certificate-authority-data: not*base64\n", "    {}\n")]:
        write("kubeconfig", base % (server, cluster, user))
    write("kubeconfig", "current-context: missing\ncontexts: []\n")
    write("kubeconfig", "{}\n")
    write("kubeconfig",
          '{"current-context": "c", "contexts": [{"name": "c", "context": '
          '{"cluster": "k"}}], "clusters": [{"name": "k", "cluster": '
          '{"server": "https://h"}}]}')


def plan_seeds():
    """Scripts for tests/fuzz/plan.c: an op byte, then its fields."""
    lists = bytes([2, 0, 1, 0, 3, 0])
    demand = bytes([0, 1, 3, 0])
    create = bytes([7, 4, 1, 1, 0,           # secret created
                    7, 4, 1, 1, 0, 4, 3, 4, 3])  # pool created at 3
    vms = bytes([3, 2,
                 0, 0, 5, 2]) + u16(50) + bytes([0,     # vm-0 stopped 5 s
                 5, 0x4b, 6, 2]) + u16(600) + bytes([100, 0])  # stuck
    reclaim = bytes([7, 5, 0, 6, 6]) + u16(200) + bytes([7])
    write("plan", lists + demand + create + vms + reclaim)
    # Denied lists, a failed write, demand that fails, a boot loop.
    write("plan", bytes([1, 0x80, 3, 0x80, 2, 0, 1, 0, 0, 0, 7, 4, 0, 4,
                         7, 6]) + u16(100) + bytes([7, 4, 3, 6, 7]))
    loop = b""
    for i in range(4):
        loop += bytes([3, 1, i * 4, 0, i, 2]) + u16(10) + bytes([0, 7, 5, 0])
    write("plan", lists + demand + create + loop + bytes([6]) + u16(3000) +
          bytes([7]))


def main():
    yaml_seeds()
    conf_seeds()
    msg_seeds()
    roundtrip_seeds()
    metrics_seeds()
    log_seeds()
    small_seeds()
    circleci_seeds()
    http_seeds()
    kubeconfig_seeds()
    plan_seeds()
    for h in sorted(os.listdir(CORPUS)):
        print("%-16s %3d seeds" % (h, len(os.listdir(os.path.join(CORPUS, h)))))


if __name__ == "__main__":
    main()
