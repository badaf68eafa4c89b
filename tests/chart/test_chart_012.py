#!/usr/bin/python3
"""The chart's 0.1.2 values (provisioner.resourceClasses,
resourceClassDefaults, existingConfigMap, existingSecret with secrets.yaml),
with the real helm binary; the 0.1.0 form's objects are left as they were.

- every tests/chart/values-012/*.yaml: helm lint, template, kubernetes-models;
- the ConfigMap's config.yaml holds no secret, the Secret's secrets.yaml
  every token and userData; the daemon accepts both with the pod's own
  arguments (--check-config), for each existingConfigMap/existingSecret
  combination;
- checksum/config follows the ConfigMap, checksum/secret the Secret;
- every file in tests/chart/values-012/bad/ is rejected with the message its
  "# expect...:" lines name;
- the 0.1.0 form renders no ConfigMap, no checksum/secret and no --secrets.
"""
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_chart as tc  # noqa: E402

VALUES = tc.HERE / "values-012"
GOOD = sorted(VALUES.glob("*.yaml"))
BAD = sorted((VALUES / "bad").glob("*.yaml"))
SECRETS_DIR = "/etc/runner-provisioner-secrets"
# The CircleCI token and CA, in a directory of their own (the confined
# poller may read only that one).
CIRCLE_DIR = tc.CIRCLE_DIR
FLAGS = tc.DAEMON_FLAGS | {"--secrets"}


def pod_files(docs, stand_ins=None):
    """{absolute path: bytes} of the files the pod sees, through its
    volumes and mounts; stand_ins gives the data of objects the chart does
    not render ({("Secret"|"ConfigMap", name): {key: bytes}})."""
    dep = tc.only(docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"]
              for m in dep["containers"][0]["volumeMounts"]}
    objects = {}
    for d in docs:
        if d["kind"] == "Secret":
            objects[("Secret", d["metadata"]["name"])] = {
                k: base64.b64decode(v) for k, v in d["data"].items()}
        elif d["kind"] == "ConfigMap":
            objects[("ConfigMap", d["metadata"]["name"])] = {
                k: v.encode() for k, v in d["data"].items()}
    objects.update(stand_ins or {})
    files = {}
    for vol in dep["volumes"]:
        if "projected" not in vol:
            continue
        for src in vol["projected"]["sources"]:
            kind = "Secret" if "secret" in src else "ConfigMap"
            ref = src.get("secret") or src.get("configMap")
            data = objects[(kind, ref["name"])]
            if ref.get("items"):
                data = {i["path"]: data[i["key"]] for i in ref["items"]}
            for key, val in data.items():
                path = mounts[vol["name"]] + "/" + key
                if path in files:
                    raise AssertionError(f"two sources project {path}")
                files[path] = val
    return files


def args_of(docs):
    c = tc.only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    pairs = dict(zip(c["args"][::2], c["args"][1::2]))
    unknown = set(pairs) - FLAGS
    if unknown:
        raise AssertionError(f"unknown daemon flags {unknown}")
    return pairs


def annotations(docs):
    return tc.only(docs, "Deployment")["spec"]["template"]["metadata"][
        "annotations"]


def stand_ins(vals):
    """What the operator's own objects hold, as the 0.1.2 document builds
    them (one class, my-org/my-runner)."""
    p = vals["provisioner"]
    out = {}
    if p["existingSecret"]:
        out[("Secret", p["existingSecret"])] = {
            "circle-token": b"existing-secret-circle-token",
            "secrets.yaml": b'resourceClasses:\n  "my-org/my-runner":\n'
                            b'    token: "your-runner-token"\n'
                            b"    userData: |\n      apt-get install -y jq\n"}
    if p["existingConfigMap"]:
        out[("ConfigMap", p["existingConfigMap"])] = {
            "config.yaml": b'resourceClasses:\n  "my-org/my-runner":\n'
                           b"    scaling:\n      minReplicas: 3\n"
                           b"      maxReplicas: 10\n    spec:\n"
                           b"      domain:\n        resources:\n"
                           b"          requests:\n"
                           b'            memory: "2Gi"\n'
                           b'            cpu: "1"\n'}
    return out


class T01Render(unittest.TestCase):
    def test_lint_and_template(self):
        self.assertGreaterEqual(len(GOOD), 5)
        for f in GOOD:
            with self.subTest(values=f.name):
                r = tc.run_helm("lint", "--strict", tc.CHART, "--namespace",
                                tc.NAMESPACE, "-f", f)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                tc.render([f])

    def test_schema_alone_accepts_them(self):
        validator = tc.values_schema_validator()
        for f in GOOD:
            with self.subTest(values=f.name):
                errors = [e.message for e in validator.iter_errors(
                    tc.effective_values([f]))]
                self.assertEqual(errors, [])

    def test_objects_are_valid_kubernetes(self):
        node = shutil.which("node")
        if not node or not (tc.NODE_MODULES / "kubernetes-models").is_dir():
            raise AssertionError("node and kubernetes-models are needed: " +
                                 tc.INSTALL_HINT)
        seen = set()
        for f in GOOD:
            with self.subTest(values=f.name):
                docs = tc.render([f])
                r = subprocess.run(
                    [node, str(tc.HERE / "validate-k8s.js"),
                     str(tc.NODE_MODULES)], input=tc.json.dumps(docs),
                    capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                seen |= {d["kind"] for d in docs}
        self.assertIn("ConfigMap", seen)


class T02ConfigAndSecrets(unittest.TestCase):
    def test_config_map_has_no_secrets_and_secret_has_them(self):
        docs = tc.render([VALUES / "multi.yaml"])
        cm = tc.only(docs, "ConfigMap")
        conf = yaml.safe_load(cm["data"]["config.yaml"])
        self.assertEqual(list(conf), ["resourceClassDefaults",
                                      "resourceClasses"])
        self.assertEqual(sorted(conf["resourceClasses"]),
                         ["my-org/large", "my-org/small"])
        text = cm["data"]["config.yaml"]
        for secret in ("small-runner-token", "large-runner-token",
                       "apt-get install", "test-circle-api-token"):
            self.assertNotIn(secret, text)
        # Exact types survive: the cron strings, headroom auto, integers.
        large = conf["resourceClasses"]["my-org/large"]
        self.assertEqual(tc.typed(large["scaling"]["headroom"]),
                         tc.typed("auto"))
        self.assertEqual(tc.typed(large["scaling"]["schedules"][0]["start"]),
                         tc.typed("0 8 * * MON-FRI"))
        self.assertEqual(tc.typed(large["scaling"]["maxSurge"]), tc.typed(4))
        self.assertEqual(conf["resourceClassDefaults"]["runner"][
            "commandPrefix"], ["sudo", "PATH=$PATH", "-niHu", "circleci",
                               "--"])
        sec = tc.only(docs, "Secret")
        self.assertEqual(sorted(sec["data"]), ["circle-token",
                                               "secrets.yaml"])
        secrets = yaml.safe_load(base64.b64decode(sec["data"]["secrets.yaml"]))
        self.assertEqual(secrets, {"resourceClasses": {
            "my-org/large": {"token": "large-runner-token",
                             "userData": "apt-get install -y jq\n"},
            "my-org/small": {"token": "small-runner-token"}}})

    def test_the_daemon_accepts_what_the_pod_sees(self):
        """--check-config with the Deployment's own arguments, on the files
        its volumes project, for every values file."""
        if not os.access(tc.DAEMON, os.X_OK):
            raise AssertionError(f"{tc.DAEMON} is not built")
        for f in GOOD:
            with self.subTest(values=f.name):
                vals = tc.effective_values([f])
                docs = tc.render([f])
                files = pod_files(docs, stand_ins(vals))
                args = args_of(docs)
                self.assertEqual(args["--config"],
                                 tc.CONF_DIR + "/config.yaml")
                self.assertEqual(args["--secrets"],
                                 SECRETS_DIR + "/secrets.yaml")
                self.assertEqual(args["--circle-token-file"],
                                 CIRCLE_DIR + "/circle-token")
                with tempfile.TemporaryDirectory(prefix="rp-chart-") as d:
                    def local(path):
                        return d + path

                    for path, data in files.items():
                        os.makedirs(os.path.dirname(local(path)),
                                    exist_ok=True)
                        Path(local(path)).write_bytes(data)
                    cmd = [str(tc.DAEMON), "--check-config"]
                    for flag in ("--config", "--secrets",
                                 "--circle-token-file", "--circleci-ca-file",
                                 "--circleci-api-addr"):
                        if flag in args:
                            cmd += [flag, local(args[flag]) if flag.endswith(
                                ("file", "config", "secrets")) else
                                args[flag]]
                    env = {k: v for k, v in os.environ.items()
                           if k != "CIRCLE_TOKEN"}
                    r = subprocess.run(cmd, capture_output=True, text=True,
                                       env=env, timeout=60)
                    self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                    self.assertIn("secrets: from " + local(
                        SECRETS_DIR + "/secrets.yaml"), r.stdout)
                    for secret in ("runner-token", "apt-get"):
                        self.assertNotIn(secret, r.stdout + r.stderr)

    def test_existing_objects(self):
        # Both from outside: the chart renders neither, except the CA.
        docs = tc.render([VALUES / "existing-both.yaml"])
        self.assertEqual([d for d in docs if d["kind"] == "ConfigMap"], [])
        sec = tc.only(docs, "Secret")
        self.assertEqual(list(sec["data"]), ["circleci-ca.crt"])
        files = pod_files(docs, stand_ins(tc.effective_values(
            [VALUES / "existing-both.yaml"])))
        self.assertEqual(sorted(files), sorted([
            tc.CONF_DIR + "/config.yaml",
            CIRCLE_DIR + "/circle-token",
            CIRCLE_DIR + "/circleci-ca.crt",
            SECRETS_DIR + "/secrets.yaml"]))
        self.assertEqual(args_of(docs)["--circleci-ca-file"],
                         CIRCLE_DIR + "/circleci-ca.crt")
        # existingConfigMap alone: the chart's Secret is keyed by the
        # classes of values.
        docs = tc.render([VALUES / "existing-configmap.yaml"])
        self.assertEqual([d for d in docs if d["kind"] == "ConfigMap"], [])
        sec = yaml.safe_load(base64.b64decode(
            tc.only(docs, "Secret")["data"]["secrets.yaml"]))
        self.assertEqual(sec["resourceClasses"]["my-org/my-runner"]["token"],
                         "your-runner-token")
        # existingSecret alone: no Secret, the settings from values.
        docs = tc.render([VALUES / "existing-secret.yaml"])
        self.assertEqual([d for d in docs if d["kind"] == "Secret"], [])
        conf = yaml.safe_load(tc.only(docs, "ConfigMap")["data"][
            "config.yaml"])
        self.assertEqual(conf["resourceClasses"]["my-org/my-runner"],
                         {"scaling": {"minReplicas": 3, "maxReplicas": 10}})

    def test_the_010_form_is_unchanged(self):
        """No ConfigMap, no secrets volume or flag, one checksum."""
        for f in tc.GOOD_VALUES:
            with self.subTest(values=f.name):
                docs = tc.render([f])
                self.assertEqual([d for d in docs
                                  if d["kind"] == "ConfigMap"], [])
                self.assertEqual(list(annotations(docs)).count(
                    "checksum/secret"), 0)
                self.assertNotIn("--secrets", tc.deployment_args(docs))
                vols = tc.only(docs, "Deployment")["spec"]["template"][
                    "spec"]["volumes"]
                self.assertEqual([v["name"] for v in vols],
                                 ["config", "circleci", "run"])


class T03Checksums(unittest.TestCase):
    BASE = [VALUES / "multi.yaml"]

    def sums(self, overrides=None, files=None):
        a = annotations(tc.render(files or self.BASE, overrides))
        return a["checksum/config"], a["checksum/secret"]

    def test_each_checksum_follows_its_object(self):
        config, secret = self.sums()
        self.assertEqual(self.sums(), (config, secret))
        # A setting: the ConfigMap only.
        c2, s2 = self.sums({"provisioner": {"resourceClasses": {
            "my-org/small": {"scaling": {"maxReplicas": 6}}}}})
        self.assertNotEqual(c2, config)
        self.assertEqual(s2, secret)
        # A token or userData: the Secret only.
        for change in ({"token": "rotated-token"},
                       {"userData": "echo changed\n"}):
            c3, s3 = self.sums({"provisioner": {"resourceClasses": {
                "my-org/small": change}}})
            self.assertEqual(c3, config, change)
            self.assertNotEqual(s3, secret, change)
        c4, s4 = self.sums({"provisioner": {"circleToken": "other"}})
        self.assertEqual(c4, config)
        self.assertNotEqual(s4, secret)

    def test_existing_objects_are_named_in_their_checksum(self):
        base = [VALUES / "existing-both.yaml"]
        c, s = self.sums(files=base)
        c2, s2 = self.sums({"provisioner": {"existingConfigMap": "other"}},
                           files=base)
        self.assertNotEqual(c2, c)
        self.assertEqual(s2, s)
        c3, s3 = self.sums({"provisioner": {"existingSecret": "other"}},
                           files=base)
        self.assertEqual(c3, c)
        self.assertNotEqual(s3, s)


class T04BadValues(unittest.TestCase):
    def test_helm_rejects_each_with_its_reason(self):
        self.assertGreaterEqual(len(BAD), 25)
        cmds = ("template",) + (("install",) if tc.offline_install() else ())
        for f in BAD:
            exp = tc.T06BadValues.expectations(f)
            for cmd in cmds:
                with self.subTest(values=f.name, cmd=cmd):
                    if cmd == "template":
                        r = tc.run_helm("template", tc.RELEASE, tc.CHART,
                                        "--namespace", tc.NAMESPACE, "-f", f)
                    else:
                        r = tc.run_helm("install", tc.RELEASE, tc.CHART,
                                        "--dry-run=client", "--namespace",
                                        tc.NAMESPACE, "-f", f)
                    out = tc.T06BadValues.normalise(r.stdout + r.stderr)
                    self.assertNotEqual(r.returncode, 0,
                                        f"helm {cmd} accepted {f.name}")
                    for text in exp["expect"]:
                        self.assertIn(text, r.stdout + r.stderr)
                    for key in exp["expect-key"]:
                        self.assertRegex(out, r"(^|[\s'])" + re.escape(key) +
                                         r"($|[\s':])")
                    for key in exp["expect-unknown"]:
                        self.assertRegex(out, r"(?i)additional propert"
                                         r"(y|ies).*" + re.escape(key))

    def test_the_daemon_refuses_what_the_chart_lets_through(self):
        """Cron and time zone details the schema only shapes: the rendered
        files still reach the daemon, which names the key."""
        if not os.access(tc.DAEMON, os.X_OK):
            raise AssertionError(f"{tc.DAEMON} is not built")
        cases = [
            ({"start": "0 25 * * *", "end": "0 18 * * *"},
             'schedules[0].start: invalid cron expression "0 25 * * *"'),
            ({"start": "0 8 * * *", "end": "0 18 * * *",
              "timezone": "Europe/Atlantis"}, '"Europe/Atlantis": unknown'),
        ]
        for sched, problem in cases:
            with self.subTest(problem=problem):
                docs = tc.render([VALUES / "multi.yaml"], {"provisioner": {
                    "resourceClasses": {"my-org/small": {"scaling": {
                        "schedules": [sched]}}}}})
                files = pod_files(docs)
                with tempfile.TemporaryDirectory(prefix="rp-chart-") as d:
                    for path, data in files.items():
                        os.makedirs(os.path.dirname(d + path), exist_ok=True)
                        Path(d + path).write_bytes(data)
                    r = subprocess.run(
                        [str(tc.DAEMON), "--check-config", "--config",
                         d + tc.CONF_DIR + "/config.yaml", "--secrets",
                         d + SECRETS_DIR + "/secrets.yaml",
                         "--circle-token-file",
                         d + CIRCLE_DIR + "/circle-token"],
                        capture_output=True, text=True, timeout=60)
                    self.assertNotEqual(r.returncode, 0)
                    self.assertIn('resourceClasses."my-org/small".scaling.',
                                  r.stderr)
                    self.assertIn(problem, r.stderr)


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        tc._cleanup_helm_home()
