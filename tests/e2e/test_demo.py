"""The README's main command keeps working: scripts/demo.py runs the whole
loop against both simulators, scales pools up and down, and stops cleanly."""

import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

DEMO = os.path.join(harness.SOURCE_DIR, "scripts", "demo.py")


class DemoTest(harness.E2ETestCase):
    def test_demo_runs_the_loop(self):
        r = subprocess.run(
            [harness.PYTHON, DEMO, "--duration", "45", "--plain"],
            capture_output=True, text=True, timeout=harness.scaled(150),
            env=dict(harness.clean_env(), RP_BUILD_DIR=harness.BUILD_DIR))
        out = r.stdout
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertIn("demo stopped", out)
        # Pools were created and scaled up for the bursts, and down again.
        self.assertIn("created pool my-org--linux-small", out)
        self.assertRegex(out, r"scaled my-org--linux-small from 1 to [2-8]")
        self.assertRegex(out, r"scaled \S+ from \d+ to 0")
        # Jobs ran on VMs, and the provisioner became ready.
        self.assertRegex(out, r"my-org/linux-small +\d+ +\d+ +[1-9]\d* ")
        self.assertIn("/ready 200", out)
        self.assertNotIn("boot loop", out)


if __name__ == "__main__":
    unittest.main()
