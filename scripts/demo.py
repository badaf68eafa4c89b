#!/usr/bin/python3
"""The whole control loop, live: a CircleCI runner API simulator, a
Kubernetes/KubeVirt API simulator whose VMs boot, claim CircleCI tasks, run
them and power off, and the real runner-provisioner between them.  Jobs
arrive in bursts; every second the screen shows, per resource class, the
queued and running tasks, the VMs the provisioner wants, the pool's
replicas and its VMs by state, followed by the provisioner's latest
decisions from its own log.

Usage: scripts/demo.py [--duration SECONDS] [--keep] [--plain]
(scripts/demo.sh sets up the machine and builds first.)
"""

import argparse
import json
import os
import random
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402
from kubesim import KubeSim  # noqa: E402

CLASSES = {
    "my-org/linux-small": {"minReplicas": 1, "maxReplicas": 8,
                           "idleTimeout": "30s"},
    "dev-team/custom:arm64": {"minReplicas": 0, "maxReplicas": 4},
}
# (seconds into a cycle, class, jobs, job length range in seconds)
BURSTS = [
    (3, "my-org/linux-small", 5, (6, 14)),
    (10, "dev-team/custom:arm64", 3, (5, 10)),
    (22, "my-org/linux-small", 9, (4, 12)),
    (40, "dev-team/custom:arm64", 2, (4, 8)),
    (48, "my-org/linux-small", 2, (5, 9)),
]
CYCLE_S = 75
INTERESTING = ("created pool", "created secret", "scaled ", "reclaimed",
               "released VM", "holding replicas", "boot loop", "would scale",
               "Kubernetes", "failed to get")


class Demo:
    def __init__(self, args):
        self.args = args
        self.tdir = harness.TestDir(prefix="rp-demo-")
        config = {name: dict(c, token=harness.runner_token(name))
                  for name, c in CLASSES.items()}
        self.tdir.write_config(harness.make_config(config))
        self.circle = harness.CircleSim(self.tdir, classes=list(CLASSES),
                                        task_duration_ms=8000)
        self.kube = KubeSim(self.tdir, circle=self.circle, boot_delay_ms=3000,
                            claim_interval_ms=250)
        self.prov = None
        self.events = []
        self.log_pos = 0
        self.rng = random.Random(7)

    def start(self):
        print("starting the CircleCI and Kubernetes simulators ...")
        self.circle.start()
        self.kube.start()
        # Simulated VMs boot in seconds, not minutes: scale the boot-loop
        # threshold down with them.
        self.prov = harness.Provisioner(
            self.tdir, sims=[self.circle, self.kube], poll_interval="1s",
            args=["--boot-loop-threshold", "2s"])
        print("starting runner-provisioner ...")
        self.prov.start()

    def stop(self):
        for thing in (self.prov, self.kube, self.circle):
            if thing is not None:
                try:
                    thing.stop()
                except Exception as e:  # keep stopping the others
                    print("stopping: %s" % e, file=sys.stderr)
        if self.args.keep:
            print("logs and state kept in %s" % self.tdir.path)
        else:
            self.tdir.remove()

    def drive(self, t, fired):
        cycle, at = divmod(int(t), CYCLE_S)
        for i, (when, cls, n, (lo, hi)) in enumerate(BURSTS):
            if at >= when and (cycle, i) not in fired:
                fired.add((cycle, i))
                for _ in range(n):
                    self.circle.queue(cls, 1, duration_ms=int(
                        1000 * self.rng.uniform(lo, hi)))
                self.events.append("%5.0fs  %d jobs queued for %s"
                                   % (t, n, cls))

    def read_log(self):
        with open(self.prov.log_path) as f:
            f.seek(self.log_pos)
            chunk = f.read()
        done = chunk.rfind("\n") + 1
        self.log_pos += len(chunk[:done].encode())
        for line in chunk[:done].splitlines():
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if any(e.get("msg", "").startswith(p) for p in INTERESTING):
                self.events.append("%s  %-8s %s" % (
                    e["ts"][11:19], e["proc"], e["msg"]))

    def snapshot(self):
        tasks = self.circle.state()
        kube = self.kube.state()
        status, body = self.prov.get("/ready")
        ready = json.loads(body) if body else {}
        poller = (ready.get("children", {}).get("poller", {})
                  .get("detail", {}).get("classes", {}))
        actuator = (ready.get("children", {}).get("actuator", {})
                    .get("detail", {}).get("classes", {}))
        rows = []
        for cls in CLASSES:
            t = tasks.get("classes", {}).get(cls, {})
            a = actuator.get(cls, {})
            pool = a.get("pool", "?")
            p = next((x for x in kube["pools"] if x["name"] == pool), {})
            vms = [v for v in kube["vms"] if v.get("owner") == p.get("uid")]
            by = {}
            for v in vms:
                s = ("Terminating" if v.get("deletionTimestamp")
                     else v.get("printableStatus", "?"))
                by[s] = by.get(s, 0) + 1
            rows.append((cls, t.get("unclaimed", 0), t.get("running", 0),
                         t.get("done", 0),
                         poller.get(cls, {}).get("desired_vms", "-"),
                         p.get("replicas", "-"), by, pool))
        return status, rows

    def render(self, t, status, rows):
        out = []
        if not self.args.plain:
            out.append("\033[H\033[2J")
        out.append("runner-provisioner demo   %5.0fs   /ready %s   (Ctrl-C to stop)"
                   % (t, status))
        out.append("")
        out.append("%-24s %6s %7s %5s %7s %8s  %s" % (
            "resource class", "queued", "running", "done", "desired",
            "replicas", "VMs by state"))
        for cls, q, r, d, want, rep, by, pool in rows:
            states = "  ".join("%s %d" % (k, by[k]) for k in sorted(by)) or "none"
            out.append("%-24s %6d %7d %5d %7s %8s  %s" % (
                cls, q, r, d, want, rep, states))
        out.append("")
        out.append("pools: " + ", ".join("%s → %s" % (r[0], r[7]) for r in rows))
        out.append("")
        out.append("latest:")
        out += ["  " + e for e in self.events[-14:]]
        print("\n".join(out), flush=True)

    def run(self):
        t0 = time.monotonic()
        fired = set()
        while True:
            t = time.monotonic() - t0
            if self.args.duration and t >= self.args.duration:
                return
            self.drive(t, fired)
            self.read_log()
            status, rows = self.snapshot()
            self.render(t, status, rows)
            self.prov.log.check()  # fails loudly if the daemon died
            time.sleep(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=0,
                    help="stop after this many seconds (default: until Ctrl-C)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory with every log")
    ap.add_argument("--plain", action="store_true",
                    help="print frames one after another (no screen clearing)")
    args = ap.parse_args()
    if not sys.stdout.isatty():
        args.plain = True
    demo = Demo(args)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        demo.start()
        demo.run()
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
    print("demo stopped")


if __name__ == "__main__":
    main()
