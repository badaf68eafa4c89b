#!/usr/bin/python3
"""Pokes the simulators' /_sim control APIs (for humans and the demo).

  simctl.py circleci --url URL [--ca CA] state
  simctl.py circleci --url URL [--ca CA] queue CLASS N [--duration-ms D]
  simctl.py circleci --url URL [--ca CA] set-unclaimed CLASS N
  simctl.py circleci --url URL [--ca CA] set-running CLASS N
  simctl.py circleci --url URL [--ca CA] class CLASS RUNNER_TOKEN
  simctl.py circleci --url URL [--ca CA] tasks [CLASS]
  simctl.py circleci --url URL [--ca CA] fault JSON
  simctl.py circleci --url URL [--ca CA] faults | clear-faults
  simctl.py circleci --url URL [--ca CA] requests [--since EPOCH] | clear-requests

--url defaults to $CIRCLECI_SIM_URL.  Answers are printed as JSON; an HTTP
error prints the simulator's message and exits 1.

Each simulator is one subcommand group: a module-level add_<sim>(sub)
function registered in GROUPS adds its parser and commands, so another
group ("kube") slots in without touching the existing ones.
"""

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request


class Client:
    """JSON over HTTP(S) to one simulator, trusting only --ca when given."""

    def __init__(self, url, ca=None, timeout=10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.context = None
        if self.url.startswith("https:"):
            self.context = ssl.create_default_context(cafile=ca)

    def call(self, method, path, body=None, query=None):
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout,
                                        context=self.context) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                msg = json.loads(raw).get("message", raw.decode())
            except (ValueError, AttributeError):
                msg = raw.decode(errors="replace")
            raise SystemExit("%s %s: HTTP %d: %s" % (method, path, e.code, msg))
        except urllib.error.URLError as e:
            raise SystemExit("%s %s: %s" % (method, path, e.reason))
        return json.loads(raw) if raw else {}


def nonneg(s):
    n = int(s)
    if n < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return n


def json_object(s):
    try:
        v = json.loads(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError("invalid JSON: %s" % e)
    if not isinstance(v, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return v


def common_options(p, env):
    p.add_argument("--url", default=os.environ.get(env),
                   help="simulator base URL (default $%s)" % env)
    p.add_argument("--ca", help="CA certificate to trust for https")


# circleci ---------------------------------------------------------------
def add_circleci(sub):
    p = sub.add_parser("circleci", help="CircleCI runner API simulator")
    common_options(p, "CIRCLECI_SIM_URL")
    cmds = p.add_subparsers(dest="command", required=True)

    def cmd(name, fn, help):
        c = cmds.add_parser(name, help=help)
        c.set_defaults(func=fn)
        return c

    cmd("state", lambda c, a: c.call("GET", "/_sim/state"),
        "per-class counts and runners")
    q = cmd("queue", lambda c, a: c.call("POST", "/_sim/queue", dict(
        resource_class=a.resource_class, add=a.n,
        **({"duration_ms": a.duration_ms} if a.duration_ms is not None
           else {}))), "enqueue N tasks")
    q.add_argument("resource_class", metavar="CLASS")
    q.add_argument("n", metavar="N", type=nonneg)
    q.add_argument("--duration-ms", type=nonneg)
    s = cmd("set-unclaimed", lambda c, a: c.call("POST", "/_sim/queue", dict(
        resource_class=a.resource_class, set_unclaimed=a.n)),
        "set the unclaimed count exactly")
    s.add_argument("resource_class", metavar="CLASS")
    s.add_argument("n", metavar="N", type=nonneg)
    r = cmd("set-running", lambda c, a: c.call("POST", "/_sim/running", dict(
        resource_class=a.resource_class, set=a.n)),
        "force the running count (synthetic tasks)")
    r.add_argument("resource_class", metavar="CLASS")
    r.add_argument("n", metavar="N", type=nonneg)
    k = cmd("class", lambda c, a: c.call("POST", "/_sim/classes", dict(
        name=a.resource_class, runner_token=a.runner_token)),
        "create a class or replace its runner token")
    k.add_argument("resource_class", metavar="CLASS")
    k.add_argument("runner_token", metavar="RUNNER_TOKEN")
    t = cmd("tasks", lambda c, a: c.call(
        "GET", "/_sim/tasks", query={"resource_class": a.resource_class}
        if a.resource_class else None), "every task with its timestamps")
    t.add_argument("resource_class", metavar="CLASS", nargs="?")
    f = cmd("fault", lambda c, a: c.call("POST", "/_sim/faults", a.spec),
            "add a fault switch, e.g. '{\"endpoint\":\"tasks\",\"status\":500}'")
    f.add_argument("spec", metavar="JSON", type=json_object)
    cmd("faults", lambda c, a: c.call("GET", "/_sim/faults"),
        "list fault switches")
    cmd("clear-faults", lambda c, a: c.call("DELETE", "/_sim/faults"),
        "remove every fault switch")
    j = cmd("requests", lambda c, a: c.call(
        "GET", "/_sim/requests", query={"since": a.since}
        if a.since is not None else None), "the request journal")
    j.add_argument("--since", type=float, metavar="EPOCH")
    cmd("clear-requests", lambda c, a: c.call("DELETE", "/_sim/requests"),
        "clear the request journal")


GROUPS = [add_circleci]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="sim", required=True)
    for add in GROUPS:
        add(sub)
    a = ap.parse_args(argv)
    if not a.url:
        ap.error("--url is required")
    out = a.func(Client(a.url, a.ca), a)
    json.dump(out, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
