#!/usr/bin/python3
"""The benchmark harness still runs: tests/bench/bench.py --smoke against
the build under test (RP_BUILD_DIR), every scenario for a few seconds.
Only that it ran and wrote a well-formed result file is checked: the
figures of a smoke run (tiny windows, maybe a sanitizer build) mean
nothing, and benchmarks are never judged by a test."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "bench.py")
sys.path.insert(0, HERE)
import bench  # noqa: E402


class BenchSmokeTest(unittest.TestCase):

    def test_smoke_run_writes_a_well_formed_result_file(self):
        with tempfile.TemporaryDirectory(prefix="rp-bench-smoke-") as d:
            out = os.path.join(d, "results.json")
            r = subprocess.run(
                ["/usr/bin/python3", BENCH, "--smoke", "--out", out],
                capture_output=True, text=True, timeout=600,
                stdin=subprocess.DEVNULL)
            self.assertEqual(r.returncode, 0, "bench.py --smoke failed:\n"
                             + r.stdout[-4000:] + r.stderr[-4000:])
            with open(out) as f:
                res = json.load(f)
        self.assertEqual(res["schema"], bench.SCHEMA)
        self.assertIs(res["smoke"], True)
        self.assertEqual(res["errors"], {})
        self.assertEqual(set(res["scenarios"]), set(bench.SCENARIOS))
        for key in ("cpu", "cpus", "mem_mib", "kernel"):
            self.assertIn(key, res["machine"])
        steady = res["scenarios"]["steady"]["1"]
        for proc in ("supervisor", "poller", "actuator"):
            p = steady["processes"][proc]
            for k in ("rss_kib", "pss_kib", "hwm_kib", "threads", "fds",
                      "cpu_pct"):
                self.assertIsInstance(p[k], (int, float), (proc, k))
            self.assertGreater(p["rss_kib"], 0)
        self.assertGreater(steady["cycles"], 0)
        lat = res["scenarios"]["latency"]
        self.assertTrue(lat)
        for v in lat.values():
            self.assertGreater(v["task_to_scale_ms"]["n"], 0, v)
            self.assertEqual(v["errors"], [], v)
        scale = res["scenarios"]["scale"]["1 idle"]
        for k in ("circleci_requests_per_min", "cpu_pct_total",
                  "log_lines_per_min", "scaler_lines_per_min"):
            self.assertIsInstance(scale[k], (int, float), k)
        self.assertEqual(scale["idle_reaction_ms"]["n"], 1, scale)
        self.assertEqual(scale["busy_reaction_ms"]["n"], 2, scale)
        self.assertEqual(scale["reaction_errors"], [], scale)
        floor = res["scenarios"]["floor"]["processes"]
        self.assertEqual(set(floor), {"supervisor", "child1", "child2"})
        for p in floor.values():
            self.assertGreater(p["rss_kib"], 0)
        rec = res["scenarios"]["recovery"]
        self.assertTrue(rec["runs"])
        trace = res["scenarios"]["trace"]
        self.assertEqual(len(trace["settings"]), len(bench.TRACE_SETTINGS))
        cg = res["scenarios"]["callgrind"]
        if "skipped" not in cg:
            self.assertGreater(cg["1"]["instructions_per_cycle"], 0)
        for t in res["targets"]:
            self.assertEqual(set(t), {"what", "target", "value", "met"})
        # The table printed names every scenario that ran.
        self.assertIn("DESIGN §11 targets", r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
