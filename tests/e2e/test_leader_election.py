#!/usr/bin/python3
"""End-to-end: two replicas with --leader-elect against one cluster.

Each replica is a whole daemon (supervisor, poller, actuator) with its own
client certificate, so the Kubernetes simulator's journal tells their
requests apart.  An operator running two replicas expects: exactly one
writes at any time, the other keeps reading and is ready (its role in
/ready); a graceful stop hands over within 2 s; a replica that dies
without a word (kill -9 of the whole pod) is replaced once its Lease
expires, never before; and the journal never shows writes of two holders
interleaved.
"""

import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from kubesim import KubeTestCase, pool_name  # noqa: E402

CLS = "e2e-org/ha"
POOL = pool_name(CLS)
LEASE = "rp-e2e"
PRE = "runner_provisioner_"


def lease_constant(name):
    path = os.path.join(harness.SOURCE_DIR, "actuator", "lease.h")
    with open(path) as f:
        m = re.search(r"^#define\s+%s\s+(\d+)" % name, f.read(), re.M)
    return int(m.group(1)) / 1000.0


LEASE_DURATION = lease_constant("LEASE_DURATION_MS")
RETRY = lease_constant("LEASE_RETRY_MS")
RENEW_DEADLINE = lease_constant("LEASE_RENEW_DEADLINE_MS")
POLL = 0.5


def ok(r):
    return 200 <= r["status"] < 300


class LeaderElectionTest(KubeTestCase):

    def replica(self, kube, name):
        """A replica (a pod): its own run dir, identity and client
        certificate (CN "replica-<name>")."""
        return self.provisioner(
            name=name, run_dir=self.tdir.join("run-" + name),
            args=["--leader-elect", "--lease-name", LEASE,
                  "--kubeconfig", kube.kubeconfig_for("replica-" + name)])

    def lease_writes(self, kube, since=0.0):
        """[(t, user, holder)] of the successful Lease writes."""
        return [(r["t"], r["user"], r["body"]["spec"]["holderIdentity"])
                for r in kube.daemon_requests(since)
                if r.get("endpoint") == "leases" and
                r["method"] in ("PUT", "POST") and ok(r)]

    def acquired(self, kube, user, since):
        """Time of the first successful Lease write by user holding it."""
        got = [t for t, u, h in self.lease_writes(kube, since)
               if u == user and h]
        return got[0] if got else None

    def wait_leader(self, p, since=0):
        return p.wait_log(since=since, proc="actuator", timeout=40,
                          msg=re.compile("^became the leader"))

    def role(self, p):
        status, body = p.ready()
        le = body["children"]["actuator"].get("detail", {}).get(
            "leader_election", {})
        return status, le.get("role"), body

    def freeze_and_kill(self, p):
        """The pod dies at once (node failure, OOM of PID 1): nothing
        gets to run another instruction, nothing is released."""
        pids = [p.pid] + [p.child_pid(c) for c in harness.CHILDREN]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        t = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        p.wait_exit()
        harness.wait_for(lambda: not any(harness.proc_alive(x)
                                         for x in pids), 10,
                         what="the killed replica's processes to go")
        return t

    def assert_single_writer(self, kube):
        """Every write (but to the Lease) comes from the replica the
        Lease names at that moment, and the writers never interleave:
        once another replica wrote, the former never writes again."""
        user_of = {}
        holder_at = []
        for t, user, holder in self.lease_writes(kube):
            if holder:
                user_of[holder] = user
            holder_at.append((t, holder))
        writes = [r for r in kube.daemon_requests()
                  if r["method"] != "GET" and r.get("endpoint") != "leases"]
        self.assertTrue(writes)
        seen = []
        for w in writes:
            before = [h for t, h in holder_at if t <= w["t"]]
            self.assertTrue(before, "a write before any Lease: %s" % w)
            self.assertEqual(user_of.get(before[-1]), w["user"],
                             "%s %s by %s while the Lease named %r" % (
                                 w["method"], w["path"], w["user"],
                                 before[-1]))
            if not seen or seen[-1] != w["user"]:
                self.assertNotIn(w["user"], seen, "writers interleave: "
                                 "%s again after %s" % (w["user"], seen))
                seen.append(w["user"])
        return seen

    def test_one_writer_handover_and_expiry(self):
        self.write_config({CLS: {"minReplicas": 1, "maxReplicas": 6}})
        circle = self.start_circleci([CLS], task_duration_ms=600000)
        kube = self.start_kube(circle=circle)

        # Phase 1: a leads, b stands by and writes nothing.
        a = self.replica(kube, "a").start()
        e = self.wait_leader(a)
        self.assertEqual(e["lease"], LEASE)
        b = self.replica(kube, "b").start()
        b.wait_log(proc="actuator", msg="actuator starting")
        self.wait_pool(a, kube, POOL, 1)

        def standby_ready():
            status, role, body = self.role(b)
            return status == 200 and role == "standby"
        b.wait(standby_ready, 30, "b ready as standby")
        a.wait_ready(timeout=30)
        # /ready shows the children's last health answers, up to one
        # survey (1 s) old: the first may predate the election.
        a.wait(lambda: self.role(a)[1] == "leader", 5,
               "a's /ready showing it leading")
        status, role, body = self.role(a)
        self.assertEqual((status, role), (200, "leader"), body)
        le = body["children"]["actuator"]["detail"]["leader_election"]
        self.assertEqual(le["holder"], le["identity"])
        self.assertEqual(a.metrics().get(PRE + "leader"), 1)
        self.assertEqual(b.metrics().get(PRE + "leader"), 0)
        t1 = time.time()
        circle.queue(CLS, 2)  # the idle VM takes one: 2 VMs
        self.wait_pool(a, kube, POOL, 2)
        self.wait_resyncs(b, kube, t1, n=3)
        by_b = [r for r in kube.daemon_requests() if r["user"] == "replica-b"]
        self.assertTrue([r for r in by_b if r.get("endpoint") == "leases"])
        self.assertTrue([r for r in by_b if r.get("verb") == "list"])
        self.assertEqual([r for r in by_b if r["method"] != "GET"], [],
                         "the standby wrote")

        # Phase 2: a stops gracefully: it gives the Lease up, b takes it
        # within 2 s and scales from then on.
        mark_b = b.mark()
        t_stop = time.time()
        rc, took = a.stop()
        self.assertEqual(rc, 0, a.log.tail())
        a.wait_log(proc="actuator", msg="released the lease %s: a standby "
                   "takes over at once" % LEASE)
        released = [t for t, u, h in self.lease_writes(kube, t_stop)
                    if u == "replica-a" and h == ""]
        self.assertEqual(len(released), 1)
        self.wait_leader(b, since=mark_b)
        t_b = self.acquired(kube, "replica-b", t_stop)
        self.assertLessEqual(t_b - released[0], harness.scaled(RETRY) + 0.3,
                             "takeover after a release")
        circle.queue(CLS, 1)
        self.wait_pool(b, kube, POOL, 3)

        # Phase 3: a comes back as standby; b's pod dies at once.  a takes
        # over once the Lease expired by its own clock, never earlier, and
        # scales within the lease duration plus a retry and a poll.
        a2 = self.replica(kube, "a2").start()
        a2.wait(lambda: self.role(a2)[1] == "standby", 30, "a standby again")
        mark_a = a2.mark()
        t_kill = self.freeze_and_kill(b)
        last_renew = max(t for t, u, h in self.lease_writes(kube)
                         if u == "replica-b" and h)
        circle.queue(CLS, 1)
        self.wait_leader(a2, since=mark_a)
        t_a = self.acquired(kube, "replica-a2", t_kill)
        self.assertGreaterEqual(t_a - last_renew, LEASE_DURATION,
                                "the standby took an unexpired Lease")
        self.assertLessEqual(t_a - t_kill, LEASE_DURATION + RETRY +
                             harness.scaled(1.0))
        self.wait_pool(a2, kube, POOL, 4)
        scale = [r for r in kube.scale_requests(t_kill, pool=POOL)
                 if r["user"] == "replica-a2"][0]
        self.assertLessEqual(scale["t"] - t_kill, LEASE_DURATION + RETRY +
                             POLL + harness.scaled(1.0), json.dumps(scale))

        # Phase 4: kill -9 of the leader's supervisor alone: its children
        # are told to stop (they die with it), the actuator still gives the
        # Lease up, and the standby takes over at once.
        b2 = self.replica(kube, "b2").start()
        b2.wait(lambda: self.role(b2)[1] == "standby", 30, "b standby again")
        mark_b = b2.mark()
        kids = [a2.child_pid(c) for c in harness.CHILDREN]
        t_kill = time.time()
        a2.send_signal(signal.SIGKILL)
        a2.wait_exit()
        harness.wait_for(lambda: not any(harness.proc_alive(x)
                                         for x in kids), 15,
                         what="the dead supervisor's children to stop")
        self.wait_leader(b2, since=mark_b)
        t_b = self.acquired(kube, "replica-b2", t_kill)
        self.assertLessEqual(t_b - t_kill, LEASE_DURATION + RETRY + POLL)
        circle.queue(CLS, 1)
        self.wait_pool(b2, kube, POOL, 5)

        writers = self.assert_single_writer(kube)
        self.assertEqual(writers, ["replica-a", "replica-b", "replica-a2",
                                   "replica-b2"])
        self.assert_journal_sane(kube)
        self.assert_vm_deletes_safe(kube, circle)

    def test_a_leader_that_cannot_renew_stops_writing(self):
        """The API server stops answering for the Lease (an overloaded
        control plane, a network partition): the leader stops writing
        once no renewal succeeded for the renew deadline, before anyone
        else may take the Lease, and keeps reading as a standby (not
        ready once it could not read the Lease for a lease duration);
        once the Lease answers again it leads and writes."""
        self.write_config({CLS: {"minReplicas": 1, "maxReplicas": 6}})
        circle = self.start_circleci([CLS], task_duration_ms=600000)
        kube = self.start_kube(circle=circle)
        a = self.replica(kube, "a").start()
        self.wait_leader(a)
        self.wait_pool(a, kube, POOL, 1)
        mark = a.mark()
        t_fault = time.time()
        kube.fault(endpoint="leases", method="*", status=500)
        lost = a.wait_log(since=mark, proc="actuator", timeout=30,
                          msg=re.compile("^lost the lease"))
        last_renew = max(t for t, u, h in self.lease_writes(kube)
                         if u == "replica-a" and h)
        self.assertLess(last_renew, t_fault + 0.5)
        # The renew deadline counts from when the last good renewal was
        # sent, a little before the server saw it.
        t_lost = harness.log_time(lost)
        self.assertGreaterEqual(t_lost - last_renew,
                                RENEW_DEADLINE - 0.5, lost)
        self.assertLess(t_lost - last_renew,
                        RENEW_DEADLINE + harness.scaled(1.0), lost)
        # Demand changes: a standby keeps reading the lists and writes
        # nothing (no scale, no Event).  Once it could not read the Lease
        # for a lease duration it could not take over either: not ready,
        # and the detail says why.
        t_demand = time.time()
        circle.queue(CLS, 2)
        self.wait_resyncs(a, kube, t_demand, n=3)
        self.assertEqual(a.metrics().get(PRE + "leader"), 0)
        a.wait(lambda: self.role(a)[0] == 503, 30,
               "not ready without the Lease")
        status, role, body = self.role(a)
        self.assertEqual(role, "standby", body)
        le = body["children"]["actuator"]["detail"]["leader_election"]
        self.assertGreater(le["last_read_ms_ago"], LEASE_DURATION * 1000,
                           body)
        self.assertEqual(body["children"]["actuator"]["state"], "running")
        late = [r for r in kube.daemon_requests(t_fault)
                if r["method"] != "GET" and r.get("endpoint") != "leases"
                and r["t"] >= last_renew + RENEW_DEADLINE]
        self.assertEqual(late, [], "wrote after the renew deadline")
        self.assertEqual(kube.pools()[POOL]["replicas"], 1)
        # The Lease answers again: it still names this replica, which
        # leads again at once and catches up.
        mark = a.mark()
        t_clear = time.time()
        kube.clear_faults()
        self.wait_leader(a, since=mark)
        self.wait_pool(a, kube, POOL, 2)
        t_a = self.acquired(kube, "replica-a", t_clear)
        scale = kube.scale_requests(t_fault, pool=POOL)[0]
        self.assertGreaterEqual(scale["t"], t_a, json.dumps(scale))
        self.assertLessEqual(t_a - t_clear, RETRY + harness.scaled(1.0))
        self.assert_journal_sane(kube)

    def test_a_reload_keeps_the_leader_leading(self):
        """Configuration changes on the leader (one right as it starts
        leading, one that leaves the classes as they were) change what it
        writes, not whether it writes: it keeps the Lease, knows its
        objects and scales at once."""
        self.write_config({CLS: {"minReplicas": 1, "maxReplicas": 6}})
        circle = self.start_circleci([CLS], task_duration_ms=600000)
        kube = self.start_kube(circle=circle)
        a = self.replica(kube, "a").start()
        # Changed as soon as it leads, before its first writes are done.
        self.wait_leader(a)
        mark = a.mark()
        self.write_config({CLS: {"minReplicas": 1, "maxReplicas": 7}})
        a.send_signal(signal.SIGHUP)
        a.wait_log(since=mark, proc="actuator", msg=re.compile(
            r"^running configuration generation 2"))
        self.wait_pool(a, kube, POOL, 1)
        # The same classes again, written differently (generation 3).
        path = self.tdir.join("config.yaml")
        with open(path) as f:
            text = f.read()
        with open(path, "w") as f:
            f.write("# edited\n" + text)
        a.send_signal(signal.SIGHUP)
        a.wait_log(since=mark, proc="actuator", msg=re.compile(
            r"^running configuration generation 3"))
        t = time.time()
        circle.queue(CLS, 2)
        self.wait_pool(a, kube, POOL, 2)
        self.wait_resyncs(a, kube, t, n=2)
        status, role, body = self.role(a)
        self.assertEqual((status, role), (200, "leader"), body)
        cls = body["children"]["actuator"]["detail"]["classes"][CLS]
        self.assertEqual((cls["secret"], cls["pool_state"]),
                         ("current", "current"), body)
        self.assertEqual(a.lines(since=mark, proc="actuator",
                                 msg=re.compile("^(lost|became)")), [])
        self.assertEqual(a.metrics().get(PRE + "leader"), 1)


if __name__ == "__main__":
    harness.main()
