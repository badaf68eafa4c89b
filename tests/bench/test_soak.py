#!/usr/bin/python3
"""The soak scenario (tests/bench/soak.py), two minutes of it: 100 classes
under random faults from both simulators and four child kills.  What an
operator must never see is asserted: no VM deleted while it ran a job, no
scale-down that no observation asked for, no crash (a child dying other
than by the kills, or a system call its filter blocked), the daemon ready
again once the faults stop.  The memory and descriptor figures are
recorded, not judged (docs/performance.md has a 30-minute run).  The
detectors themselves are checked first, on made-up log lines."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "bench.py")
sys.path.insert(0, HERE)
import soak  # noqa: E402


def line(proc, msg, ts, **f):
    return dict(ts="2026-01-01T00:00:%06.3fZ" % ts, proc=proc, msg=msg, **f)


def polled(ts, cls, desired):
    return line("poller", "polled task counts", ts, resource_class=cls,
                desired_vms=desired)


def scaled(ts, cls, frm, to):
    return line("actuator", "scaled p from %d to %d" % (frm, to), ts,
                resource_class=cls, **{"from": frm, "to": to})


class DetectorTest(unittest.TestCase):

    def test_scale_down_needs_an_observation_asking_for_it(self):
        start = soak.bl.log_epoch(line("x", "x", 0.0))
        lines = [polled(1.0, "a", 3), scaled(1.1, "a", 1, 3),
                 polled(2.0, "a", 1), scaled(2.1, "a", 3, 1),   # asked
                 scaled(5.0, "a", 1, 0),                        # not asked
                 scaled(6.0, "b", 2, 0), polled(6.5, "b", 0),   # logged late
                 polled(7.0, "c", 0), scaled(9.0, "c", 3, 2),   # asked 0
                 # A slow write: 4 -> 5 decided at 10, done at 14; 5 -> 4
                 # asked at 12, applied once the first write is done.
                 polled(10.0, "d", 5), polled(12.0, "d", 4),
                 scaled(14.0, "d", 4, 5), scaled(14.2, "d", 5, 4),
                 # ... but not an observation from before the last one.
                 scaled(15.0, "d", 4, 5), scaled(16.0, "d", 5, 4),
                 # Demand 3, 2, 3 within a second: each scale has its own.
                 polled(20.0, "e", 3), scaled(20.05, "e", 2, 3),
                 polled(20.4, "e", 2), scaled(20.5, "e", 3, 2),
                 polled(20.9, "e", 3)]
        missing, downs, ups = soak.scale_downs_missing(lines, start)
        self.assertEqual((downs, ups), (7, 4))
        self.assertEqual([(m["resource_class"], m["to"]) for m in missing],
                         [("a", 0), ("c", 2), ("d", 4)])

    def test_slope(self):
        pts = [(t, 100 + 2 * t) for t in range(0, 600, 10)]
        self.assertAlmostEqual(soak.slope_per_hour(pts), 7200.0)
        self.assertIsNone(soak.slope_per_hour(pts[:2]))


class SoakTest(unittest.TestCase):

    def test_two_minutes(self):
        with tempfile.TemporaryDirectory(prefix="rp-soak-") as d:
            out = os.path.join(d, "results.json")
            r = subprocess.run(
                ["/usr/bin/python3", BENCH, "--scenarios", "soak",
                 "--soak-minutes", "2", "--soak-warmup-s", "30",
                 "--soak-sample-s", "5", "--out", out],
                capture_output=True, text=True, timeout=900,
                stdin=subprocess.DEVNULL)
            self.assertEqual(r.returncode, 0, "bench.py --scenarios soak "
                             "failed:\n" + r.stdout[-4000:] +
                             r.stderr[-4000:])
            with open(out) as f:
                res = json.load(f)["scenarios"]["soak"]
        sys.stderr.write("\n" + "\n".join(soak.table_lines(res)) + "\n")
        self.assertEqual(res["busy_vms_deleted"], 0, res)
        self.assertEqual(res["scale_downs_missing"], 0,
                         res["scale_downs_missing_examples"])
        self.assertEqual(res["crashes"], 0, res["crash_examples"])
        self.assertEqual(len(res["kills"]), 4)
        self.assertGreater(sum(res["faults_injected"].values()), 5)
        self.assertGreater(res["scale_ups"], 0)
        self.assertGreater(res["scale_downs"], 0)
        self.assertIsNotNone(res["ready_again_after_faults_s"])
        for proc in ("supervisor", "poller", "actuator"):
            self.assertIn(proc, res["memory"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
