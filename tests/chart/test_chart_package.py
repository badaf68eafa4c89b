#!/usr/bin/python3
"""The chart as it ships: `helm package` output, and the chart README's
Values table in step with values.yaml.

Run: /usr/bin/python3 tests/chart/test_chart_package.py   (CTest: chart/test_chart_package)
Needs helm (scripts/install-tools.sh); git for the list of the chart's files.

- `helm package` writes runner-provisioner-<version>.tgz whose Chart.yaml has
  the project version (CMakeLists.txt) as version and appVersion, holds
  exactly the chart's tracked files (byte for byte; Chart.yaml, which helm
  writes out again, with the same contents), nothing the .helmignore
  keeps out (editor backups, VCS files) even when they lie in the directory,
  and passes `helm lint --strict`; `helm show values|readme` give the sources;
- scripts/chart-readme.py --check passes on the repository (the README is
  what the generator makes of values.yaml) and fails, with a diff, as soon as
  a comment or a default changes; the generator's rules (comments above
  keys, nesting, @default, escaping, undocumented keys) on small inputs.
"""
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import helmlib  # noqa: E402

SRC = helmlib.SRC
CHART = helmlib.CHART
GENERATOR = SRC / "scripts" / "chart-readme.py"
VERSION = re.search(r"^project\(runner-provisioner VERSION ([0-9.]+)", (SRC / "CMakeLists.txt").read_text(),
                    re.M).group(1)
# What a chart may hold: anything else in the package is a stray file.
ALLOWED = re.compile(r"^(Chart\.yaml|values\.yaml|values\.schema\.json|README\.md|\.helmignore|"
                     r"templates/[\w.-]+\.(yaml|tpl|txt)|dashboards/[\w.-]+\.json)$")

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("chart_readme", GENERATOR)
chart_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(chart_readme)


def chart_files():
    """The chart's files as git tracks them (relative to the chart)."""
    r = subprocess.run(["git", "-C", str(SRC), "ls-files", "--", "deploy/chart"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"git ls-files failed (not a git checkout?): {r.stderr}")
    return sorted(str(Path(p).relative_to("deploy/chart")) for p in r.stdout.split())


def package(chart_dir, dest):
    r = helmlib.run_helm("package", chart_dir, "--destination", dest)
    if r.returncode != 0:
        raise AssertionError(f"helm package failed:\n{r.stderr}")
    (tgz,) = Path(dest).glob("*.tgz")
    return tgz


def members(tgz):
    with tarfile.open(tgz) as tar:
        out = {}
        for m in tar.getmembers():
            if m.isfile():
                top, _, rel = m.name.partition("/")
                if top != "runner-provisioner":
                    raise AssertionError(f"{m.name} outside the chart directory")
                out[rel] = tar.extractfile(m).read()
        return out


class T01Package(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = Path(tempfile.mkdtemp(prefix="rp-chart-package-"))
        cls.tgz = package(CHART, cls.tmp)
        cls.files = members(cls.tgz)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_name_and_versions(self):
        self.assertEqual(self.tgz.name, f"runner-provisioner-{VERSION}.tgz")
        chart = yaml.safe_load(self.files["Chart.yaml"])
        self.assertEqual(chart["name"], "runner-provisioner")
        self.assertEqual(str(chart["version"]), VERSION, "chart version = project version (CMakeLists.txt)")
        self.assertEqual(str(chart["appVersion"]), VERSION, "appVersion = the image tag scripts/image.sh builds")

    def test_exactly_the_tracked_files(self):
        tracked = chart_files()
        self.assertEqual(sorted(self.files), tracked)
        for rel in tracked:
            with self.subTest(file=rel):
                self.assertRegex(rel, ALLOWED)
                if rel == "Chart.yaml":  # helm writes it out again
                    self.assertEqual(yaml.safe_load(self.files[rel]), yaml.safe_load((CHART / rel).read_text()))
                else:
                    self.assertEqual(self.files[rel], (CHART / rel).read_bytes())

    def test_ignored_files_stay_out(self):
        copy = self.tmp / "copy" / "runner-provisioner"
        shutil.copytree(CHART, copy)
        junk = ["templates/deployment.yaml.orig", "templates/.deployment.yaml.swp", "values.yaml~",
                ".git/config", ".DS_Store", "notes.bak", ".vscode/settings.json", ".idea/x.xml"]
        for rel in junk:
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            (copy / rel).write_text("junk\n")
        out = self.tmp / "junk-out"
        out.mkdir()
        got = members(package(copy, out))
        self.assertEqual(sorted(set(got) & set(junk)), [])
        self.assertEqual(sorted(got), sorted(self.files))

    def test_lint_and_show(self):
        r = helmlib.run_helm("lint", self.tgz, "--strict", "--set", "provisioner.circleToken=t",
                             "--set", "provisioner.resourceClass.name=a/b",
                             "--set", "provisioner.resourceClass.token=r")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        r = helmlib.run_helm("show", "values", self.tgz)
        self.assertEqual(r.stdout.rstrip("\n"), (CHART / "values.yaml").read_text().rstrip("\n"))
        r = helmlib.run_helm("show", "readme", self.tgz)
        self.assertEqual(r.stdout.strip(), (CHART / "README.md").read_text().strip())


class T02Readme(unittest.TestCase):
    def run_generator(self, *args):
        return subprocess.run([sys.executable, str(GENERATOR), *map(str, args)], capture_output=True, text=True,
                              timeout=60)

    def test_readme_is_generated_from_values(self):
        r = self.run_generator("--check")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_every_value_has_a_row(self):
        readme = (CHART / "README.md").read_text()
        table = readme.split(chart_readme.BEGIN, 1)[1].split(chart_readme.END, 1)[0]
        keys = re.findall(r"^\| `([^`]+)` \|", table, re.M)
        self.assertEqual(len(keys), len(set(keys)))

        def leaves(node, prefix=""):
            for k, v in node.items():
                if isinstance(v, dict) and any(key.startswith(f"{prefix}{k}.") for key in keys):
                    yield from leaves(v, f"{prefix}{k}.")
                else:
                    yield prefix + k
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        self.assertEqual(sorted(set(leaves(values)) - set(keys)), [])

    def test_drift_is_detected(self):
        with tempfile.TemporaryDirectory(prefix="rp-readme-") as d:
            values, readme = Path(d, "values.yaml"), Path(d, "README.md")
            shutil.copy(CHART / "README.md", readme)
            text = (CHART / "values.yaml").read_text()
            for changed in (text.replace("# Container image repository.", "# The image repository."),
                            text.replace("pollInterval: \"1s\"", "pollInterval: \"2s\""),
                            text + "\n# (extra) Something new.\nnewKey: 1\n"):
                self.assertNotEqual(changed, text)
                values.write_text(changed)
                r = self.run_generator("--check", "--values", values, "--readme", readme)
                self.assertEqual(r.returncode, 1, r.stderr)
                self.assertIn("out of date", r.stderr)
                self.assertIn("+| `", r.stdout, "the diff shows the new row")
            # Writing it brings the README in step.
            r = self.run_generator("--values", values, "--readme", readme)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("| `newKey` | `1` | (extra) Something new. |", readme.read_text())
            self.assertEqual(self.run_generator("--check", "--values", values, "--readme", readme).returncode, 0)

    def test_generator_rules(self):
        values = """# A header that belongs to no key.

# Top-level key,
# on two lines.
top: "x"
group:
  # A nested key | with a pipe and <placeholder>, `code <kept>`.
  inner: 3
  deeper:
    # Deep.
    leaf: [a, b]
# A free-form map: one row.
resources:
  requests: {cpu: 10m}
# Documented map whose keys are documented too.
parent:
  # Child.
  child: true
# Long default.
# @default -- two VMs
spec: {domain: {resources: {requests: {memory: 2Gi, cpu: "1"}}, devices: {disks: [{name: disk}]}}}
"ns/quoted": 1
"""
        with self.assertRaises(chart_readme.Error) as e:
            chart_readme.rows(values)
        self.assertIn(':22: "ns/quoted"', str(e.exception))
        rows = chart_readme.rows(values.replace('"ns/quoted": 1\n', '# Quoted.\n"ns/quoted": 1\n'))
        self.assertEqual(rows, [
            ("top", "`x`", "Top-level key, on two lines."),
            ("group.inner", "`3`", "A nested key | with a pipe and <placeholder>, `code <kept>`."),
            ("group.deeper.leaf", "`[a, b]`", "Deep."),
            ("resources", "`{requests: {cpu: 10m}}`", "A free-form map: one row."),
            ("parent", "see the keys below", "Documented map whose keys are documented too."),
            ("parent.child", "`true`", "Child."),
            ("spec", "two VMs", "Long default."),
            ('"ns/quoted"', "`1`", "Quoted."),
        ])
        self.assertEqual(chart_readme.cell(rows[1][2]),
                         "A nested key \\| with a pipe and &lt;placeholder&gt;, `code <kept>`.")
        self.assertEqual(chart_readme.render_default({"a": "x" * 80}), "see `values.yaml`")
        self.assertEqual(chart_readme.render_default(""), '`""`')

    def test_markers_are_required(self):
        with self.assertRaises(chart_readme.Error):
            chart_readme.updated("# README without markers\n", "# Key.\nk: 1\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
