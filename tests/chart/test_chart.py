#!/usr/bin/python3
"""Tests of the Helm chart in deploy/chart, with the real helm binary.

Run: /usr/bin/python3 tests/chart/test_chart.py   (CTest runs it as chart/test_chart)
Needs: .tools/bin/helm (or helm on PATH; $RP_HELM overrides both), node and .tools/node_modules with
kubernetes-models (scripts/install-tools.sh installs both), and for the
--check-config tests the built daemon in $RP_BUILD_DIR/bin (default build/).

- helm lint / helm template of every values file in tests/chart/values/;
- every rendered object validated by kubernetes-models (validate-k8s.js);
- the rendered config.yaml: exact types, the KubeVirt VMI spec schema, and
  accepted by `runner-provisioner --check-config`;
- bad values (tests/chart/values/bad/) rejected by helm with the message the
  file's "# expect..." lines name;
- checksum/config, RBAC against actuator/kube_rbac.def, security context,
  probes, image reference, existingSecret, NOTES.
"""
import base64
import copy
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
SRC = Path(os.environ.get("RP_SOURCE_DIR") or HERE.parents[1]).resolve()
BUILD = Path(os.environ.get("RP_BUILD_DIR") or SRC / "build").resolve()
CHART = SRC / "deploy" / "chart"
VALUES_DIR = HERE / "values"
GOOD_VALUES = sorted(VALUES_DIR.glob("*.yaml"))
BAD_VALUES = sorted((VALUES_DIR / "bad").glob("*.yaml"))
TOOLS = SRC / ".tools"
NODE_MODULES = TOOLS / "node_modules"
DAEMON = BUILD / "bin" / "runner-provisioner"
EXISTING_SECRET_CONFIG = HERE / "existing-secret-config.yaml"
VMI_SCHEMA = HERE / "kubevirt-vmi-spec.schema.json"
RBAC_DEF = SRC / "actuator" / "kube_rbac.def"

RELEASE = "runner-provisioner"
NAMESPACE = "runner-provisioner"
CONF_DIR = "/etc/runner-provisioner"
# The CircleCI token and CA, in a directory of their own (the poller may read
# only that directory once it runs).
CIRCLE_DIR = "/var/run/secrets/runner-provisioner/circleci"
RUN_MOUNT = "/run/runner-provisioner"
RUN_DIR = RUN_MOUNT + "/ipc"  # created 0700 by the daemon inside the emptyDir
INSTALL_HINT = "run scripts/install-tools.sh (installs helm, kubectl and kubernetes-models into .tools/)"

# The daemon's flags (DESIGN §7); the Deployment may pass no other.
DAEMON_FLAGS = {
    "--config", "--circle-token-file", "--circleci-api-addr", "--circleci-ca-file",
    "--namespace", "--kubeconfig", "--poll-interval", "--ready-addr", "--live-addr",
    "--run-dir", "--log-level", "--leader-elect", "--lease-name",
    "--idle-poll-interval", "--idle-poll-after", "--max-requests-per-second",
    "--log-scaler-lines",
}
BOOL_FLAGS = {"--leader-elect", "--drain"}
DRAIN_FLAGS = {"--drain", "--drain-timeout", "--lease-name", "--namespace", "--log-level",
               "--run-dir"}

# The 0.1.0 documentation's default VM spec ("Quick start", my-values.yaml).
DOC_DEFAULT_SPEC = {
    "domain": {
        "resources": {"requests": {"memory": "2Gi", "cpu": "1"}},
        "devices": {"disks": [{"name": "disk", "disk": {"bus": "virtio"}}]},
    },
    "volumes": [{"name": "disk",
                 "containerDisk": {"image": "quay.io/containerdisks/ubuntu:22.04"}}],
}

STANDARD_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                   "helm.sh/chart")


# --- tools ----------------------------------------------------------------------

def find_helm():
    if os.environ.get("RP_HELM"):  # e.g. to check another helm release
        return os.environ["RP_HELM"]
    local = TOOLS / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


HELM = find_helm()
_HELM_HOME = tempfile.mkdtemp(prefix="rp-chart-helm-")


def _cleanup_helm_home():
    shutil.rmtree(_HELM_HOME, ignore_errors=True)


def require_helm():
    if not HELM:
        raise AssertionError(
            f"helm not found (neither {TOOLS / 'bin' / 'helm'} nor helm on PATH): {INSTALL_HINT}")
    return HELM


@functools.lru_cache(maxsize=1)
def helm_major():
    r = subprocess.run([require_helm(), "version", "--short"], capture_output=True, text=True, timeout=60)
    m = re.match(r"v(\d+)\.", r.stdout.strip())
    if r.returncode != 0 or not m:
        raise AssertionError(f"cannot read helm's version: {r.stdout}{r.stderr}")
    return int(m.group(1))


def offline_install():
    """helm 4 runs `install --dry-run=client` without a cluster; helm 3 needs one."""
    return helm_major() >= 4


def helm_env():
    env = dict(os.environ)
    # Never touch the user's helm state or a real cluster.
    kubeconfig = Path(_HELM_HOME) / "kubeconfig"
    kubeconfig.touch(mode=0o600)
    env.update(HELM_CONFIG_HOME=_HELM_HOME + "/config", HELM_CACHE_HOME=_HELM_HOME + "/cache",
               HELM_DATA_HOME=_HELM_HOME + "/data", KUBECONFIG=str(kubeconfig))
    return env


def run_helm(*args):
    return subprocess.run([require_helm(), *map(str, args)], capture_output=True, text=True,
                          env=helm_env(), timeout=120)


def values_args(files, overrides):
    args = []
    for f in files:
        args += ["-f", str(f)]
    if overrides:
        tmp = Path(_HELM_HOME) / f"override-{hashlib.sha256(repr(overrides).encode()).hexdigest()[:16]}.yaml"
        # JSON, not PyYAML's dump: helm reads YAML 1.1, where a plain y or on is a bool.
        tmp.write_text(json.dumps(overrides))
        args += ["-f", str(tmp)]
    return args


def _freeze(obj):
    return json.dumps(obj, sort_keys=True)


@functools.lru_cache(maxsize=None)
def _render(files, overrides_json, release, namespace):
    overrides = json.loads(overrides_json)
    r = run_helm("template", release, CHART, "--namespace", namespace,
                 *values_args([Path(f) for f in files], overrides))
    if r.returncode != 0:
        raise AssertionError(f"helm template failed for {list(files)} {overrides}:\n{r.stderr}")
    return r.stdout


def render_text(files=(), overrides=None, release=RELEASE, namespace=NAMESPACE):
    return _render(tuple(str(f) for f in files), _freeze(overrides or {}), release, namespace)


def render(files=(), overrides=None, release=RELEASE, namespace=NAMESPACE):
    """helm template → list of objects (fresh copies)."""
    return [d for d in yaml.safe_load_all(render_text(files, overrides, release, namespace)) if d]


def only(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind}, got {len(found)}")
    return found[0]


def chart_defaults():
    return yaml.safe_load((CHART / "values.yaml").read_text())


def coalesce(base, over):
    """Helm's values merge: maps key by key, null deletes, anything else replaces."""
    out = copy.deepcopy(base)
    for key, val in over.items():
        if val is None:
            out.pop(key, None)
        elif isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = coalesce(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def effective_values(files=(), overrides=None):
    vals = chart_defaults()
    for f in files:
        vals = coalesce(vals, yaml.safe_load(Path(f).read_text()) or {})
    return coalesce(vals, overrides or {})


def typed(x):
    """A comparable form that keeps types apart (3 != 3.0 != True != "3")."""
    if isinstance(x, dict):
        return ("map", {k: typed(v) for k, v in x.items()})
    if isinstance(x, list):
        return ("list", [typed(v) for v in x])
    return (type(x).__name__, x)


def secret_files(docs, vals):
    """{filename: bytes} the pod sees in /etc/runner-provisioner and in
    the CircleCI directory (no name is in both)."""
    files = {}
    dep = only(docs, "Deployment")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    for vol in (vols["config"], vols["circleci"]):
        for source in vol["projected"]["sources"]:
            name = source["secret"]["name"]
            if name in secrets:
                data = {k: base64.b64decode(v) for k, v in secrets[name]["data"].items()}
            elif name == vals["provisioner"]["existingSecret"]:
                # Stands for the operator's Secret, as the documentation builds it.
                data = {"circle-token": b"existing-secret-circle-token",
                        "config.yaml": EXISTING_SECRET_CONFIG.read_bytes()}
            else:
                raise AssertionError(f"a volume names unknown Secret {name!r}")
            items = source["secret"].get("items")
            if items:
                data = {i["path"]: data[i["key"]] for i in items}
            for path in data:
                if path in files:
                    raise AssertionError(f"two sources project {path}")
            files.update(data)
    return files


def config_of(docs):
    sec = only(docs, "Secret")
    return base64.b64decode(sec["data"]["config.yaml"]).decode()


def parse_args(args, known):
    """flag -> value (True for a flag without one)."""
    pairs, i = {}, 0
    while i < len(args):
        flag = args[i]
        if flag not in known:
            raise AssertionError(f"unknown daemon flag {flag!r} in {args}")
        if flag in pairs:
            raise AssertionError(f"{flag} given twice")
        if flag in BOOL_FLAGS:
            pairs[flag] = True
            i += 1
            continue
        if i + 1 >= len(args) or args[i + 1].startswith("--"):
            raise AssertionError(f"{flag} has no value in {args}")
        pairs[flag] = args[i + 1]
        i += 2
    return pairs


def deployment_args(docs):
    c = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return parse_args(c["args"], DAEMON_FLAGS)


def file_id(path):
    return path.relative_to(VALUES_DIR).as_posix()


def is_existing_secret(path):
    return bool(effective_values([path])["provisioner"]["existingSecret"])


# --- tests ----------------------------------------------------------------------

class T01Tools(unittest.TestCase):
    def test_helm_is_available(self):
        helm = require_helm()
        r = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        print(f"\nhelm: {helm} {r.stdout.strip()}", file=sys.stderr)

    def test_values_files_exist(self):
        self.assertGreaterEqual(len(GOOD_VALUES), 8, "tests/chart/values/*.yaml missing")
        self.assertGreaterEqual(len(BAD_VALUES), 10, "tests/chart/values/bad/*.yaml missing")


class T02LintAndTemplate(unittest.TestCase):
    def test_lint_strict_each_values_file(self):
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)):
                r = run_helm("lint", CHART, "--strict", "--namespace", NAMESPACE, "-f", f)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("0 chart(s) failed", r.stdout)

    def test_template_each_values_file(self):
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)):
                docs = render([f])
                kinds = sorted(d["kind"] for d in docs)
                for kind in ("Deployment", "ServiceAccount", "Role", "RoleBinding"):
                    self.assertIn(kind, kinds)
                self.assertNotIn("ClusterRole", kinds)
                self.assertNotIn("ClusterRoleBinding", kinds)
                names = [(d["kind"], d["metadata"]["name"]) for d in docs]
                self.assertEqual(len(names), len(set(names)), "duplicate objects")

    def test_values_files_pass_the_schema_independently(self):
        validator = values_schema_validator()
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)):
                errors = [f"{'/'.join(map(str, e.path))}: {e.message}"
                          for e in validator.iter_errors(effective_values([f]))]
                self.assertEqual(errors, [])

    def test_chart_metadata(self):
        chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
        self.assertEqual(chart["apiVersion"], "v2")
        self.assertEqual(chart["name"], "runner-provisioner")
        self.assertEqual(chart["version"], "0.1.0")
        self.assertEqual(chart["appVersion"], "0.1.0")

    def test_documented_defaults(self):
        v = chart_defaults()
        self.assertEqual(v["image"]["repository"], "circleci/runner-provisioner")
        self.assertEqual(v["image"]["tag"], "")
        self.assertEqual(v["image"]["digest"], "")
        self.assertEqual(v["imagePullSecrets"], [{"name": "regcred"}])
        p = v["provisioner"]
        self.assertEqual(p["circleciAPIAddr"], "https://runner.circleci.com")
        self.assertEqual(p["namespace"], "runner-provisioner")
        self.assertEqual(p["circleToken"], "")
        self.assertEqual(p["existingSecret"], "")
        self.assertEqual(p["pollInterval"], "1s")
        self.assertEqual((p["idlePollInterval"], p["idlePollAfter"], p["maxRequestsPerSecond"],
                          p["logScalerLines"]), ("", "", None, ""))
        self.assertEqual(p["logLevel"], "info")
        self.assertEqual(p["circleciCACert"], "")
        rc = p["resourceClass"]
        self.assertEqual(typed({k: rc[k] for k in ("name", "token", "idleTimeout", "minReplicas", "maxReplicas")}),
                         typed({"name": "", "token": "", "idleTimeout": "", "minReplicas": 3, "maxReplicas": 10}))
        self.assertEqual(typed(rc["spec"]), typed(DOC_DEFAULT_SPEC))
        self.assertEqual(v["resources"], {"requests": {"cpu": "10m", "memory": "32Mi"},
                                          "limits": {"memory": "128Mi"}})
        self.assertIs(v["metrics"]["service"]["enabled"], True)
        self.assertIs(v["metrics"]["serviceMonitor"]["enabled"], False)
        for key in ("nodeSelector", "tolerations", "affinity", "podAnnotations"):
            self.assertIn(key, v)

    def test_package(self):
        with tempfile.TemporaryDirectory(prefix="rp-chart-pkg-") as d:
            r = run_helm("package", CHART, "--destination", d)
            self.assertEqual(r.returncode, 0, r.stderr)
            (tgz,) = Path(d).glob("runner-provisioner-0.1.0.tgz")
            r = run_helm("template", RELEASE, tgz, "--namespace", NAMESPACE, "-f", VALUES_DIR / "minimal.yaml")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, render_text([VALUES_DIR / "minimal.yaml"]))

    def test_readme_documents_every_value(self):
        readme = (CHART / "README.md").read_text()
        free_form = {"spec", "resources", "nodeSelector", "tolerations", "affinity", "podAnnotations",
                     "annotations", "labels", "imagePullSecrets", "podLabels"}

        def leaves(node, prefix=""):
            for key, val in node.items():
                path = prefix + key
                if isinstance(val, dict) and key not in free_form:
                    yield from leaves(val, path + ".")
                else:
                    yield path
        missing = [p for p in leaves(chart_defaults()) if f"`{p}`" not in readme]
        self.assertEqual(missing, [], "values missing from deploy/chart/README.md")

    def test_object_names_and_labels(self):
        docs = render([VALUES_DIR / "minimal.yaml"])
        self.assertEqual(only(docs, "Deployment")["metadata"]["name"], "runner-provisioner",
                         "the documented `kubectl logs deployment/runner-provisioner` must work")
        other = render([VALUES_DIR / "minimal.yaml"], release="ci")
        self.assertEqual(only(other, "Deployment")["metadata"]["name"], "ci-runner-provisioner")
        for d in docs:
            with self.subTest(kind=d["kind"]):
                labels = d["metadata"]["labels"]
                for label in STANDARD_LABELS:
                    self.assertIn(label, labels)
                self.assertEqual(labels["app.kubernetes.io/instance"], RELEASE)
                self.assertEqual(labels["app.kubernetes.io/version"], "0.1.0")
                self.assertEqual(labels["app.kubernetes.io/managed-by"], "Helm")
                self.assertEqual(labels["helm.sh/chart"], "runner-provisioner-0.1.0")
                self.assertLessEqual(len(d["metadata"]["name"]), 63)


class T03KubernetesSchemas(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = shutil.which("node")
        if not cls.node:
            raise AssertionError("node not found: install Node.js (apt-get install nodejs) and " + INSTALL_HINT)
        if not (NODE_MODULES / "kubernetes-models").is_dir():
            raise AssertionError(f"{NODE_MODULES / 'kubernetes-models'} missing: {INSTALL_HINT}")
        if not (NODE_MODULES / "@kubernetes-models" / "prometheus-operator").is_dir():
            raise AssertionError(f"@kubernetes-models/prometheus-operator missing: {INSTALL_HINT}")

    def validate(self, docs):
        return subprocess.run([self.node, str(HERE / "validate-k8s.js"), str(NODE_MODULES)],
                              input=json.dumps(docs), capture_output=True, text=True, timeout=120)

    def test_every_rendered_object_is_valid(self):
        seen = set()
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)):
                docs = render([f])
                r = self.validate(docs)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertEqual(r.stdout.count("\nok ") + r.stdout.startswith("ok "), len(docs), r.stdout)
                seen |= {d["kind"] for d in docs}
        self.assertEqual(seen, {"Secret", "ServiceAccount", "Role", "RoleBinding", "Service",
                                "Deployment", "ServiceMonitor", "PodDisruptionBudget", "Job"})

    def test_validator_rejects_broken_objects(self):
        docs = render([VALUES_DIR / "minimal.yaml"])
        dep = only(docs, "Deployment")
        dep["spec"]["replicas"] = "one"
        sec = only(docs, "Secret")
        sec["data"]["circle-token"] = "not base64!"
        unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        r = self.validate([dep, sec, unknown])
        self.assertNotEqual(r.returncode, 0)
        self.assertEqual(r.stdout.count("FAIL "), 3, r.stdout)
        self.assertIn("/spec/replicas", r.stdout)


class T04ConfigYaml(unittest.TestCase):
    """The config.yaml the chart's Secret carries."""

    def expected_entry(self, vals):
        rc = vals["provisioner"]["resourceClass"]
        entry = {"token": rc["token"]}
        if rc["idleTimeout"]:
            entry["idleTimeout"] = rc["idleTimeout"]
        entry.update(minReplicas=rc["minReplicas"], maxReplicas=rc["maxReplicas"], spec=rc["spec"])
        return {rc["name"]: entry}

    def test_class_entry_round_trips_with_exact_types(self):
        loaders = [yaml.SafeLoader] + ([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])
        for f in GOOD_VALUES:
            if is_existing_secret(f):
                continue
            vals = effective_values([f])
            for loader in loaders:
                with self.subTest(values=file_id(f), loader=loader.__name__):
                    conf = yaml.load(config_of(render([f])), Loader=loader)
                    self.assertEqual(list(conf), ["resourceClass"])
                    self.assertEqual(typed(conf["resourceClass"]), typed(self.expected_entry(vals)))

    def test_types_that_yaml_could_change(self):
        conf = yaml.safe_load(config_of(render([VALUES_DIR / "custom-spec.yaml"])))
        (name, entry), = conf["resourceClass"].items()
        self.assertEqual(name, "acme_corp/linux-large:v2+gpu")
        spec = entry["spec"]
        self.assertEqual(typed(spec["domain"]["resources"]["requests"]),
                         typed({"memory": "8Gi", "cpu": "4"}))
        self.assertEqual(typed(spec["domain"]["cpu"]["cores"]), typed(4))
        self.assertEqual(typed(spec["nodeSelector"]), typed({"kubevirt.io/schedulable": "true"}))
        self.assertEqual(typed(spec["domain"]["features"]["acpi"]["enabled"]), typed(True))
        self.assertEqual(typed(entry["minReplicas"]), typed(1))
        conf = yaml.safe_load(config_of(render([VALUES_DIR / "idle-timeout.yaml"])))
        entry = conf["resourceClass"]["my-org/my-runner"]
        self.assertEqual(entry["token"], "runner:token#not-a-comment{[,]}*&!%@`")
        self.assertEqual(entry["idleTimeout"], "1h30m")

    def test_idle_timeout_only_when_set(self):
        conf = yaml.safe_load(config_of(render([VALUES_DIR / "minimal.yaml"])))
        self.assertNotIn("idleTimeout", conf["resourceClass"]["my-org/my-runner"])

    def test_spec_is_a_valid_kubevirt_vmi_spec(self):
        validator = vmi_spec_validator()
        for f in GOOD_VALUES:
            if is_existing_secret(f):
                continue
            with self.subTest(values=file_id(f)):
                conf = yaml.safe_load(config_of(render([f])))
                for entry in conf["resourceClass"].values():
                    errors = [f"{'/'.join(map(str, e.path))}: {e.message}"
                              for e in validator.iter_errors(entry["spec"])]
                    self.assertEqual(errors, [])
        with self.subTest("the documented existingSecret example"):
            conf = yaml.safe_load(EXISTING_SECRET_CONFIG.read_text())
            self.assertEqual(list(validator.iter_errors(conf["resourceClass"]["my-org/my-runner"]["spec"])), [])

    def test_vmi_schema_rejects_a_misspelt_field(self):
        bad = copy.deepcopy(DOC_DEFAULT_SPEC)
        bad["domain"]["devices"]["disk"] = bad["domain"]["devices"].pop("disks")
        self.assertTrue(list(vmi_spec_validator().iter_errors(bad)))

    def test_vmi_schema_file_matches_kubevirt_swagger(self):
        swagger = find_shared_file("schemas/kubevirt-openapi-swagger.json")
        if swagger is None:
            self.skipTest("shared/schemas/kubevirt-openapi-swagger.json not found beside the repository "
                          "(the committed extract is still used by the other tests)")
        sys.path.insert(0, str(HERE))
        try:
            from extract_vmi_schema import extract
        finally:
            sys.path.pop(0)
        self.assertEqual(extract(json.loads(swagger.read_text())), json.loads(VMI_SCHEMA.read_text()),
                         "regenerate with tests/chart/extract_vmi_schema.py")


def values_schema_validator():
    """values.schema.json as helm applies it.  Helm's regular expressions are
    Go's, where $ matches only at the end of the text; Python's $ also matches
    before a final newline, so the pattern keyword is given Go's meaning."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)

    def pattern(validator, patrn, instance, _schema):
        if validator.is_type(instance, "string") and not re.search(patrn.replace("$", r"\Z"), instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")
    cls = jsonschema.validators.extend(jsonschema.Draft7Validator, {"pattern": pattern})
    return cls(schema)


def find_shared_file(rel):
    for base in filter(None, [os.environ.get("RP_SHARED_DIR"), SRC.parent / "shared", SRC / "shared"]):
        p = Path(base) / rel
        if p.is_file():
            return p
    return None


@functools.lru_cache(maxsize=1)
def vmi_spec_validator():
    """KubeVirt's VMI spec schema, made strict the way the apiserver is:
    unknown fields are errors; Quantity and IntOrString take numbers too."""
    schema = json.loads(VMI_SCHEMA.read_text())
    defs = schema["definitions"]
    for d in defs.values():
        if d.get("type") == "object" and "properties" in d and "additionalProperties" not in d:
            d["additionalProperties"] = False
    defs["k8s.io.apimachinery.pkg.api.resource.Quantity"] = {"type": ["string", "integer", "number"]}
    defs["k8s.io.apimachinery.pkg.util.intstr.IntOrString"] = {"type": ["string", "integer"]}
    return jsonschema.Draft4Validator(schema)


class T05CheckConfig(unittest.TestCase):
    """The rendered configuration is accepted by the daemon itself."""

    @classmethod
    def setUpClass(cls):
        if not (DAEMON.is_file() and os.access(DAEMON, os.X_OK)):
            raise AssertionError(
                f"{DAEMON} does not exist: the daemon must be built for the --check-config tests "
                f"(cmake -S {SRC} -B {BUILD} && make -C {BUILD}); RP_BUILD_DIR={os.environ.get('RP_BUILD_DIR')!r}")

    def check_config(self, args, circle_token=None):
        env = {k: v for k, v in os.environ.items() if k != "CIRCLE_TOKEN"}
        if circle_token is not None:
            env["CIRCLE_TOKEN"] = circle_token
        return subprocess.run([str(DAEMON), *args, "--check-config"], env=env, capture_output=True,
                              text=True, timeout=60)

    def materialise(self, tmp, files):
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        run = tmp / "run"
        run.mkdir(mode=0o700)

    def pod_args(self, docs, tmp):
        """The Deployment's args, with the pod's paths moved into tmp."""
        c = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        out = []
        for a in c["args"]:
            a = a.replace(CONF_DIR, str(tmp)).replace(CIRCLE_DIR, str(tmp))
            a = a.replace(RUN_DIR, str(tmp / "run"))
            out.append({":8000": "127.0.0.1:8000", ":8001": "127.0.0.1:8001"}.get(a, a))
        return out

    def assert_no_secrets(self, r, *secrets):
        for s in secrets:
            self.assertNotIn(s, r.stdout + r.stderr, "--check-config printed a secret")

    def test_rendered_config_with_the_pods_args(self):
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)), tempfile.TemporaryDirectory(prefix="rp-chart-") as d:
                tmp = Path(d)
                vals = effective_values([f])
                docs = render([f])
                files = secret_files(docs, vals)
                self.materialise(tmp, files)
                r = self.check_config(self.pod_args(docs, tmp))
                self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
                conf = yaml.safe_load(files["config.yaml"])
                for name, entry in conf["resourceClass"].items():
                    self.assertIn(name, r.stdout + r.stderr, "the summary names each class")
                    self.assert_no_secrets(r, entry["token"])
                self.assert_no_secrets(r, files["circle-token"].decode())

    def test_rendered_config_with_circle_token_env(self):
        for f in GOOD_VALUES:
            if is_existing_secret(f):
                continue
            with self.subTest(values=file_id(f)), tempfile.TemporaryDirectory(prefix="rp-chart-") as d:
                conf = Path(d) / "config.yaml"
                conf.write_text(config_of(render([f])))
                r = self.check_config(["--config", str(conf), "--circle-token-file", str(Path(d) / "absent")],
                                      circle_token="env-circle-token-value")
                self.assertEqual(r.returncode, 0, f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
                self.assert_no_secrets(r, "env-circle-token-value",
                                       effective_values([f])["provisioner"]["resourceClass"]["token"])

    def test_check_config_rejects_min_above_max(self):
        # Keeps the tests above honest: --check-config does validate.
        with tempfile.TemporaryDirectory(prefix="rp-chart-") as d:
            conf = Path(d) / "config.yaml"
            conf.write_text(config_of(render([VALUES_DIR / "minimal.yaml"]))
                            .replace("minReplicas: 3", "minReplicas: 7").replace("maxReplicas: 10", "maxReplicas: 5"))
            r = self.check_config(["--config", str(conf)], circle_token="t")
            self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertRegex(r.stdout + r.stderr, r"config\.yaml:\d+:\d+: .*maxReplicas")

    def test_check_config_requires_a_circle_token(self):
        with tempfile.TemporaryDirectory(prefix="rp-chart-") as d:
            conf = Path(d) / "config.yaml"
            conf.write_text(config_of(render([VALUES_DIR / "minimal.yaml"])))
            r = self.check_config(["--config", str(conf), "--circle-token-file", str(Path(d) / "absent")])
            self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)


class T06BadValues(unittest.TestCase):
    @staticmethod
    def expectations(path):
        exp = {"expect": [], "expect-key": [], "expect-unknown": []}
        for line in path.read_text().splitlines():
            m = re.match(r"#\s*(expect(?:-key|-unknown)?):\s*(.+?)\s*$", line)
            if m:
                exp[m.group(1)].append(m.group(2))
        if not any(exp.values()):
            raise AssertionError(f"{path} has no '# expect...:' line")
        return exp

    @staticmethod
    def normalise(stderr):
        """Schema paths as dotted keys, whatever helm's version prints
        ("at '/provisioner/circleToken'" or "provisioner.circleToken")."""
        return re.sub(r"'/([^']*)'", lambda m: "'" + m.group(1).replace("/", ".") + "'", stderr)

    def test_helm_rejects_bad_values(self):
        for f in BAD_VALUES:
            exp = self.expectations(f)
            # helm lint turns a template's fail into a log line by design, so
            # only schema-level rules are expected to fail lint.
            cmds = ("template",) + (("install",) if offline_install() else ()) + \
                (() if exp["expect"] else ("lint",))
            for cmd in cmds:
                with self.subTest(values=file_id(f), cmd=cmd):
                    if cmd == "template":
                        r = run_helm("template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", f)
                    elif cmd == "install":
                        r = run_helm("install", RELEASE, CHART, "--dry-run=client", "--namespace", NAMESPACE,
                                     "-f", f)
                    else:
                        r = run_helm("lint", CHART, "--namespace", NAMESPACE, "-f", f)
                    out = self.normalise(r.stdout + r.stderr)
                    self.assertNotEqual(r.returncode, 0, f"helm {cmd} accepted {f.name}")
                    for text in exp["expect"]:
                        self.assertIn(text, out)
                    for key in exp["expect-key"]:
                        self.assertIn("values don't meet the specifications of the schema", out)
                        self.assertRegex(out, r"(^|[\s'])" + re.escape(key) + r"($|[\s':])")
                    for key in exp["expect-unknown"]:
                        self.assertRegex(out, r"(?i)additional propert(y|ies).*" + re.escape(key))

    def test_schema_rejects_bad_values_independently(self):
        """python-jsonschema agrees with helm on every schema-level rejection."""
        validator = values_schema_validator()
        for f in BAD_VALUES:
            exp = self.expectations(f)
            if exp["expect"]:
                continue  # a template-level rule
            with self.subTest(values=file_id(f)):
                errors = list(validator.iter_errors(effective_values([f])))
                self.assertTrue(errors)
                where = {".".join(map(str, e.absolute_path)) for e in errors} | \
                        {".".join(map(str, c.absolute_path)) for e in errors for c in (e.context or [])}
                for key in exp["expect-key"]:
                    self.assertIn(key, where)

    def test_good_variants_are_accepted(self):
        """The patterns are not stricter than the daemon's syntax."""
        base = [VALUES_DIR / "minimal.yaml"]
        cases = [
            {"provisioner": {"resourceClass": {"idleTimeout": d}}}
            for d in ("10m", "1h30m", "90s", "1.5h", "300ms", "2h45m10s", "0", "10m0s")
        ] + [
            {"provisioner": {"pollInterval": d}} for d in ("1s", "500ms", "2.5s", "1m")
        ] + [
            {"provisioner": {"idlePollInterval": "5s", "idlePollAfter": "0s",
                             "maxRequestsPerSecond": n, "logScalerLines": "always"}}
            for n in (0.1, 50, 100000)
        ] + [
            {"provisioner": {"resourceClass": {"name": n}}}
            for n in ("a/b", "my_org-1/Runner-2", "org/class:x+y", "0rg/9")
        ] + [
            {"provisioner": {"resourceClass": {"minReplicas": 0, "maxReplicas": 1}}},
            {"provisioner": {"resourceClass": {"minReplicas": 5, "maxReplicas": 5}}},
            {"provisioner": {"circleciAPIAddr": "http://127.0.0.1:8080/"}},
            {"image": {"repository": "registry.example.com:5000/ci/runner-provisioner", "tag": "0.1.0-rc.1"}},
        ]
        for case in cases:
            with self.subTest(case=case):
                render(base, case)


class T07Checksum(unittest.TestCase):
    BASE = [VALUES_DIR / "minimal.yaml"]

    @staticmethod
    def checksum(docs):
        return only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    def test_checksum_is_sha256_of_the_secret_data(self):
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)):
                docs = render([f])
                vals = effective_values([f])
                secrets = [d for d in docs if d["kind"] == "Secret"]
                data = secrets[0]["data"] if secrets else {}
                canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
                if vals["provisioner"]["existingSecret"]:
                    canon = json.dumps({"data": data, "existingSecret": vals["provisioner"]["existingSecret"]},
                                       sort_keys=True, separators=(",", ":"))
                self.assertEqual(self.checksum(docs), hashlib.sha256(canon.encode()).hexdigest())

    def test_changes_when_and_only_when_the_secret_data_changes(self):
        base = render(self.BASE)
        base_sum, base_args, base_secret = self.checksum(base), deployment_args(base), only(base, "Secret")["data"]
        self.assertEqual(self.checksum(render(self.BASE)), base_sum, "not deterministic")
        secret_changes = {
            "circle token": {"provisioner": {"circleToken": "another-circle-token"}},
            "runner token": {"provisioner": {"resourceClass": {"token": "another-runner-token"}}},
            "class name": {"provisioner": {"resourceClass": {"name": "my-org/other"}}},
            "minReplicas": {"provisioner": {"resourceClass": {"minReplicas": 4}}},
            "maxReplicas": {"provisioner": {"resourceClass": {"maxReplicas": 11}}},
            "idleTimeout": {"provisioner": {"resourceClass": {"idleTimeout": "10m"}}},
            "VM memory": {"provisioner": {"resourceClass": {"spec": {"domain": {"resources": {
                "requests": {"memory": "4Gi"}}}}}}},
            "CA bundle": {"provisioner": {"circleciCACert": (VALUES_DIR / "server.yaml").read_text()
                          .split("circleciCACert: |\n", 1)[1].split("  resourceClass:")[0].replace("    ", "")}},
        }
        for what, change in secret_changes.items():
            with self.subTest(change=what):
                docs = render(self.BASE, change)
                self.assertNotEqual(only(docs, "Secret")["data"], base_secret)
                self.assertNotEqual(self.checksum(docs), base_sum)
        # Values the Deployment passes as arguments (or that do not reach the
        # pod's files at all): the pod template changes through the args, so it
        # rolls anyway, but checksum/config must not move.
        deployment_only = {
            "logLevel": ({"provisioner": {"logLevel": "debug"}}, "--log-level", "debug"),
            "pollInterval": ({"provisioner": {"pollInterval": "5s"}}, "--poll-interval", "5s"),
            "circleciAPIAddr": ({"provisioner": {"circleciAPIAddr": "https://circleci.example.com"}},
                                "--circleci-api-addr", "https://circleci.example.com"),
            "namespace": ({"provisioner": {"namespace": "ci-vms"}}, "--namespace", "ci-vms"),
            "image tag": ({"image": {"tag": "0.1.1"}}, None, None),
            "podAnnotations": ({"podAnnotations": {"example.com/x": "y"}}, None, None),
            "resources": ({"resources": {"limits": {"memory": "256Mi"}}}, None, None),
        }
        for what, (change, flag, value) in deployment_only.items():
            with self.subTest(change=what):
                docs = render(self.BASE, change)
                self.assertEqual(only(docs, "Secret")["data"], base_secret)
                self.assertEqual(self.checksum(docs), base_sum)
                if flag:
                    self.assertNotEqual(deployment_args(docs)[flag], base_args[flag])
                    self.assertEqual(deployment_args(docs)[flag], value)

    def test_existing_secret_checksum_follows_the_name(self):
        f = [VALUES_DIR / "existing-secret.yaml"]
        a = self.checksum(render(f))
        self.assertEqual(a, hashlib.sha256(b'{"data":{},"existingSecret":"my-secret"}').hexdigest())
        self.assertNotEqual(self.checksum(render(f, {"provisioner": {"existingSecret": "other"}})), a)
        # Values the existingSecret replaces do not move it.
        self.assertEqual(self.checksum(render(f, {"provisioner": {"circleToken": "x",
                                                                  "resourceClass": {"token": "y"}}})), a)

    def test_pod_annotations_keep_the_checksum(self):
        docs = render([VALUES_DIR / "extras.yaml"])
        ann = only(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        self.assertEqual(ann["example.com/team"], "platform")
        self.assertRegex(ann["checksum/config"], r"^[0-9a-f]{64}$")
        docs = render(self.BASE, {"podAnnotations": {"checksum/config": "forged"}})
        self.assertRegex(self.checksum(docs), r"^[0-9a-f]{64}$")


def parse_rbac_def(text):
    body = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    body = re.sub(r"//[^\n]*", "", body)
    calls = re.findall(r"KUBE_VERB\s*\(", body)
    entries = re.findall(
        r'KUBE_VERB\s*\(\s*(\w+)\s*,\s*"([^"]*)"\s*,\s*"([^"]*)"\s*,\s*"([^"]*)"\s*\)', body)
    if len(calls) != len(entries):
        raise AssertionError(f"{RBAC_DEF}: {len(calls)} KUBE_VERB lines, {len(entries)} parsed")
    return entries


class T08Rbac(unittest.TestCase):
    def test_role_grants_exactly_the_actuators_verbs(self):
        entries = parse_rbac_def(RBAC_DEF.read_text())
        self.assertTrue(entries, f"no KUBE_VERB in {RBAC_DEF}")
        ids = [e[0] for e in entries]
        self.assertEqual(len(ids), len(set(ids)), "duplicate KUBE_VERB id")
        want = {(g, r, v) for _, g, r, v in entries}
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)):
                role = only(render([f]), "Role")
                got, groups = set(), []
                for rule in role["rules"]:
                    self.assertNotIn("resourceNames", rule)
                    self.assertNotIn("nonResourceURLs", rule)
                    for g in rule["apiGroups"]:
                        for r in rule["resources"]:
                            groups.append((g, r))
                            for v in rule["verbs"]:
                                self.assertNotIn("*", (g, r, v))
                                got.add((g, r, v))
                self.assertEqual(sorted(got - want), [], "granted but not used by the actuator")
                self.assertEqual(sorted(want - got), [], "used by the actuator but not granted")
                self.assertEqual(len(groups), len(set(groups)), "one rule per apiGroup+resource")

    def test_rbac_is_namespaced_where_the_vms_live(self):
        docs = render([VALUES_DIR / "namespace.yaml"], namespace="ci-system")
        role, binding, sa = only(docs, "Role"), only(docs, "RoleBinding"), only(docs, "ServiceAccount")
        dep = only(docs, "Deployment")
        self.assertEqual(role["metadata"]["namespace"], "ci-vms")
        self.assertEqual(binding["metadata"]["namespace"], "ci-vms")
        self.assertEqual(sa["metadata"]["namespace"], "ci-system")
        self.assertEqual(dep["metadata"]["namespace"], "ci-system")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                              "name": role["metadata"]["name"]})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                                "namespace": "ci-system"}])
        self.assertEqual(dep["spec"]["template"]["spec"]["serviceAccountName"], sa["metadata"]["name"])
        self.assertEqual(deployment_args(docs)["--namespace"], "ci-vms")

    def test_nothing_cluster_wide(self):
        for f in GOOD_VALUES:
            with self.subTest(values=file_id(f)):
                text = render_text([f])
                self.assertNotRegex(text, r"(?m)^kind:\s*Cluster")
                for d in render([f]):
                    self.assertTrue(d["metadata"].get("namespace"), f"{d['kind']} has no namespace")

    def test_parser_counts_every_line(self):
        with self.assertRaises(AssertionError):
            parse_rbac_def('KUBE_VERB(A, "", "secrets", "get")\nKUBE_VERB(B, "", secrets, "get")\n')


class T09Deployment(unittest.TestCase):
    def pod(self, files=(VALUES_DIR / "minimal.yaml",), overrides=None, **kw):
        return only(render(files, overrides, **kw), "Deployment")["spec"]["template"]["spec"]

    def test_rollout_shape(self):
        dep = only(render([VALUES_DIR / "minimal.yaml"]), "Deployment")
        self.assertEqual(dep["spec"]["replicas"], 1)
        self.assertEqual(dep["spec"]["strategy"], {"type": "Recreate"})
        pod = dep["spec"]["template"]["spec"]
        self.assertEqual(pod["terminationGracePeriodSeconds"], 30)
        self.assertIs(pod["automountServiceAccountToken"], True)
        self.assertEqual(pod["imagePullSecrets"], [{"name": "regcred"}])
        self.assertEqual(len(pod["containers"]), 1)
        sel = dep["spec"]["selector"]["matchLabels"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        self.assertEqual({k: labels[k] for k in sel}, sel)

    def test_security_context(self):
        pod = self.pod()
        self.assertEqual(pod["securityContext"], {
            "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"}})
        sc = pod["containers"][0]["securityContext"]
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"], {"drop": ["ALL"]})
        self.assertNotIn("add", sc["capabilities"])
        self.assertIs(sc.get("privileged", False), False)
        self.assertNotIn("hostNetwork", pod)
        self.assertNotIn("hostPID", pod)

    def test_probes_and_ports(self):
        docs = render([VALUES_DIR / "minimal.yaml"])
        c = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}

        def port_of(ref):
            return ports[ref] if isinstance(ref, str) else ref
        ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]
        self.assertEqual((ready["path"], port_of(ready["port"])), ("/ready", 8000))
        self.assertEqual((live["path"], port_of(live["port"])), ("/live", 8001))
        args = deployment_args(docs)
        self.assertEqual(args["--ready-addr"], ":8000")
        self.assertEqual(args["--live-addr"], ":8001")
        svc = only(docs, "Service")
        (sp,) = svc["spec"]["ports"]
        self.assertEqual((sp["name"], sp["port"], port_of(sp["targetPort"])), ("metrics", 8000, 8000))
        pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        self.assertEqual({k: pod_labels.get(k) for k in svc["spec"]["selector"]}, svc["spec"]["selector"])

    def test_volumes_and_args(self):
        docs = render([VALUES_DIR / "minimal.yaml"])
        pod = only(docs, "Deployment")["spec"]["template"]["spec"]
        c = pod["containers"][0]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in pod["volumes"]}
        secret = only(docs, "Secret")["metadata"]["name"]
        # The configuration and the CircleCI token in directories of their
        # own: once running, the poller may read the second only.
        for mount, key in ((CONF_DIR, "config.yaml"), (CIRCLE_DIR, "circle-token")):
            self.assertIs(mounts[mount].get("readOnly"), True)
            vol = vols[mounts[mount]["name"]]
            self.assertEqual(vol["projected"]["defaultMode"], 0o440)
            self.assertEqual(vol["projected"]["sources"],
                             [{"secret": {"name": secret, "items": [{"key": key, "path": key}]}}])
        self.assertIn("emptyDir", vols[mounts[RUN_MOUNT]["name"]])
        self.assertEqual(set(mounts), {CONF_DIR, CIRCLE_DIR, RUN_MOUNT})
        args = deployment_args(docs)
        self.assertEqual(args, {
            "--config": f"{CONF_DIR}/config.yaml", "--circle-token-file": f"{CIRCLE_DIR}/circle-token",
            "--circleci-api-addr": "https://runner.circleci.com", "--namespace": "runner-provisioner",
            "--poll-interval": "1s", "--log-level": "info", "--ready-addr": ":8000",
            "--live-addr": ":8001", "--run-dir": RUN_DIR,
            # the uninstall Job fences the replica off through its Lease
            "--leader-elect": True, "--lease-name": RELEASE})
        self.assertEqual(set(only(docs, "Secret")["data"]), {"circle-token", "config.yaml"})
        self.assertEqual(c["resources"], {"requests": {"cpu": "10m", "memory": "32Mi"},
                                          "limits": {"memory": "128Mi"}})
        self.assertNotIn("env", c, "the token comes from the file, never the environment")

    def test_extras(self):
        docs = render([VALUES_DIR / "extras.yaml"])
        pod = only(docs, "Deployment")["spec"]["template"]["spec"]
        args = deployment_args(docs)
        self.assertEqual((args["--poll-interval"], args["--log-level"]), ("500ms", "debug"))
        self.assertEqual((args["--idle-poll-interval"], args["--idle-poll-after"],
                          args["--max-requests-per-second"], args["--log-scaler-lines"]),
                         ("10s", "2m", "12.5", "changes"))
        self.assertEqual(pod["nodeSelector"], {"kubernetes.io/os": "linux"})
        self.assertEqual(pod["tolerations"][0]["key"], "dedicated")
        self.assertIn("nodeAffinity", pod["affinity"])
        self.assertNotIn("imagePullSecrets", pod)
        self.assertEqual(pod["containers"][0]["resources"]["limits"], {"memory": "96Mi"})
        sm, svc = only(docs, "ServiceMonitor"), only(docs, "Service")
        self.assertEqual(sm["metadata"]["labels"]["release"], "kube-prometheus-stack")
        (ep,) = sm["spec"]["endpoints"]
        self.assertEqual((ep["port"], ep["path"], ep["interval"]), ("metrics", "/metrics", "15s"))
        sel = sm["spec"]["selector"]["matchLabels"]
        self.assertEqual({k: svc["metadata"]["labels"].get(k) for k in sel}, sel)
        self.assertEqual(sm["spec"]["namespaceSelector"], {"matchNames": [NAMESPACE]})
        self.assertEqual(svc["metadata"]["annotations"], {"prometheus.io/scrape": "true"})

    def test_metrics_objects_optional(self):
        kinds = [d["kind"] for d in render([VALUES_DIR / "minimal.yaml"])]
        self.assertIn("Service", kinds)
        self.assertNotIn("ServiceMonitor", kinds)
        kinds = [d["kind"] for d in render([VALUES_DIR / "minimal.yaml"],
                                           {"metrics": {"service": {"enabled": False}}})]
        self.assertNotIn("Service", kinds)

    def test_circleci_server(self):
        docs = render([VALUES_DIR / "server.yaml"])
        args = deployment_args(docs)
        self.assertEqual(args["--circleci-api-addr"], "https://circleci.example.com/")
        self.assertEqual(args["--circleci-ca-file"], f"{CIRCLE_DIR}/circleci-ca.crt")
        ca = base64.b64decode(only(docs, "Secret")["data"]["circleci-ca.crt"]).decode()
        self.assertEqual(ca, effective_values([VALUES_DIR / "server.yaml"])["provisioner"]["circleciCACert"])
        self.assertTrue(ca.startswith("-----BEGIN CERTIFICATE-----"))


class T13Operations(unittest.TestCase):
    """Replicas and leader election, the uninstall Job, the pod extras."""

    def test_one_replica(self):
        docs = render([VALUES_DIR / "minimal.yaml"])
        dep = only(docs, "Deployment")
        self.assertEqual((dep["spec"]["replicas"], dep["spec"]["strategy"]), (1, {"type": "Recreate"}))
        self.assertNotIn("PodDisruptionBudget", [d["kind"] for d in docs])
        # Without the uninstall Job a lone replica needs no Lease, but
        # keeps the installation's name (the label on its pools), so that
        # turning the Job or replicas on later adopts the same pools.
        args = deployment_args(render([VALUES_DIR / "minimal.yaml"], {"drain": {"enabled": False}}))
        self.assertNotIn("--leader-elect", args)
        self.assertEqual(args["--lease-name"], RELEASE)
        self.assertNotIn("Job", [d["kind"] for d in render([VALUES_DIR / "minimal.yaml"],
                                                            {"drain": {"enabled": False}})])

    def test_replicas_elect_a_leader(self):
        docs = render([VALUES_DIR / "ha.yaml"])
        dep = only(docs, "Deployment")
        self.assertEqual(dep["spec"]["replicas"], 2)
        # A new pod stands by before an old one hands the Lease over.
        self.assertEqual(dep["spec"]["strategy"], {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
        args = deployment_args(docs)
        self.assertIs(args["--leader-elect"], True)
        self.assertEqual(args["--lease-name"], RELEASE)
        pdb = only(docs, "PodDisruptionBudget")
        self.assertEqual(pdb["apiVersion"], "policy/v1")
        self.assertEqual(pdb["spec"]["maxUnavailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(pdb["metadata"]["namespace"], NAMESPACE)
        self.assertNotIn("PodDisruptionBudget", [d["kind"] for d in render(
            [VALUES_DIR / "ha.yaml"], {"podDisruptionBudget": {"enabled": False}})])
        # The Lease lives where the Role grants it: the VMs' namespace.
        role = only(docs, "Role")
        lease_rules = [r for r in role["rules"] if r["resources"] == ["leases"]]
        self.assertEqual(lease_rules, [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                                        "verbs": ["get", "create", "update"]}])
        self.assertEqual(role["metadata"]["namespace"], args["--namespace"])

    def test_pod_extras(self):
        docs = render([VALUES_DIR / "ha.yaml"])
        tmpl = only(docs, "Deployment")["spec"]["template"]
        pod = tmpl["spec"]
        self.assertEqual(pod["priorityClassName"], "system-cluster-critical")
        self.assertEqual(pod["topologySpreadConstraints"][0]["topologyKey"], "kubernetes.io/hostname")
        self.assertEqual(tmpl["metadata"]["labels"]["team"], "platform")
        self.assertEqual(tmpl["metadata"]["annotations"]["example.com/owner"], "platform")
        self.assertIn("checksum/config", tmpl["metadata"]["annotations"])
        env = pod["containers"][0]["env"]
        self.assertEqual(env[0], {"name": "HTTPS_PROXY", "value": "http://proxy.example.com:3128"})
        self.assertEqual(env[2]["valueFrom"], {"fieldRef": {"fieldPath": "metadata.name"}})
        # The extras reach the Job too; the pod labels do not (not a replica).
        job = only(docs, "Job")["spec"]["template"]
        self.assertEqual(job["spec"]["containers"][0]["env"], env)
        self.assertEqual(job["spec"]["priorityClassName"], "system-cluster-critical")
        self.assertNotIn("team", job["metadata"]["labels"])

    def test_uninstall_job(self):
        docs = render([VALUES_DIR / "ha.yaml"])
        job, dep = only(docs, "Job"), only(docs, "Deployment")
        self.assertEqual(job["metadata"]["annotations"]["helm.sh/hook"], "pre-delete")
        self.assertIn("hook-succeeded", job["metadata"]["annotations"]["helm.sh/hook-delete-policy"])
        pod, dpod = job["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]
        self.assertEqual(pod["restartPolicy"], "Never")
        self.assertEqual(job["spec"]["backoffLimit"], 0)
        # 1h30m, plus room for the fence and the last deletes.
        self.assertEqual(job["spec"]["activeDeadlineSeconds"], 5400 + 120)
        self.assertEqual(pod["serviceAccountName"], dpod["serviceAccountName"])
        c, dc = pod["containers"][0], dpod["containers"][0]
        self.assertEqual(c["image"], dc["image"])
        self.assertEqual(c["securityContext"], dc["securityContext"])
        self.assertEqual(pod["securityContext"], dpod["securityContext"])
        args = parse_args(c["args"], DRAIN_FLAGS)
        self.assertIs(args["--drain"], True)
        self.assertEqual(args["--drain-timeout"], "1h30m")
        # The replicas' Lease, in their namespace: the Job fences them off.
        dargs = deployment_args(docs)
        self.assertEqual(args["--lease-name"], dargs["--lease-name"])
        self.assertEqual(args["--namespace"], dargs["--namespace"])
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        self.assertEqual(mounts, {RUN_MOUNT})
        self.assertTrue(args["--run-dir"].startswith(RUN_MOUNT + "/"))
        # Not taken for a provisioner replica by the Deployment, the PDB or
        # the metrics Service.
        sel = dep["spec"]["selector"]["matchLabels"]
        labels = job["spec"]["template"]["metadata"]["labels"]
        self.assertNotEqual({k: labels.get(k) for k in sel}, sel)
        self.assertEqual(only(render([VALUES_DIR / "minimal.yaml"]), "Job")["spec"][
            "activeDeadlineSeconds"], 240 + 120)

    def test_drain_deadline_from_any_duration(self):
        for timeout, want in (("90s", 210), ("1m30s", 210), ("2h", 7320), ("1.5m", 210),
                              ("1500ms", 122), ("0", 120)):
            with self.subTest(timeout=timeout):
                job = only(render([VALUES_DIR / "minimal.yaml"], {"drain": {"timeout": timeout}}), "Job")
                self.assertEqual(job["spec"]["activeDeadlineSeconds"], want)


class T10Image(unittest.TestCase):
    def image(self, overrides=None):
        docs = render([VALUES_DIR / "minimal.yaml"], overrides)
        return only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]

    def test_default_tag_is_app_version(self):
        app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
        self.assertEqual(self.image(), f"circleci/runner-provisioner:{app}")

    def test_tag(self):
        self.assertEqual(self.image({"image": {"tag": "1.2.3"}}), "circleci/runner-provisioner:1.2.3")
        self.assertEqual(self.image({"image": {"repository": "registry.example.com:5000/ci/rp", "tag": "x"}}),
                         "registry.example.com:5000/ci/rp:x")

    def test_digest_takes_precedence(self):
        docs = render([VALUES_DIR / "digest.yaml"])
        image = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        digest = effective_values([VALUES_DIR / "digest.yaml"])["image"]["digest"]
        self.assertEqual(image, f"circleci/runner-provisioner@{digest}")
        self.assertNotIn("9.9.9", image)


class T11ExistingSecret(unittest.TestCase):
    def test_no_chart_secret_and_the_pod_reads_the_named_one(self):
        docs = render([VALUES_DIR / "existing-secret.yaml"])
        self.assertNotIn("Secret", [d["kind"] for d in docs])
        pod = only(docs, "Deployment")["spec"]["template"]["spec"]
        vols = {v["name"]: v for v in pod["volumes"]}
        self.assertEqual(vols["config"]["projected"]["sources"], [{"secret": {
            "name": "my-secret", "items": [{"key": "config.yaml", "path": "config.yaml"}]}}])
        self.assertEqual(vols["circleci"]["projected"]["sources"], [{"secret": {
            "name": "my-secret", "items": [{"key": "circle-token", "path": "circle-token"}]}}])
        self.assertNotIn("--circleci-ca-file", deployment_args(docs))

    def test_tokens_in_values_are_ignored(self):
        text = render_text([VALUES_DIR / "existing-secret.yaml"],
                           {"provisioner": {"circleToken": "ignored-circle", "resourceClass": {
                               "name": "a/b", "token": "ignored-runner"}}})
        self.assertNotIn("ignored-circle", text)
        self.assertNotIn(base64.b64encode(b"ignored-circle").decode(), text)
        self.assertNotIn("Secret", [d["kind"] for d in yaml.safe_load_all(text) if d])

    def test_ca_with_existing_secret(self):
        ca = effective_values([VALUES_DIR / "server.yaml"])["provisioner"]["circleciCACert"]
        docs = render([VALUES_DIR / "existing-secret.yaml"], {"provisioner": {"circleciCACert": ca}})
        sec = only(docs, "Secret")
        self.assertEqual(set(sec["data"]), {"circleci-ca.crt"})
        vol = next(v for v in only(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
                   if v["name"] == "circleci")
        self.assertEqual([s["secret"]["name"] for s in vol["projected"]["sources"]],
                         ["my-secret", sec["metadata"]["name"]])
        self.assertEqual(deployment_args(docs)["--circleci-ca-file"], f"{CIRCLE_DIR}/circleci-ca.crt")


class T12Notes(unittest.TestCase):
    def setUp(self):
        if not offline_install():
            self.skipTest(f"helm {helm_major()} renders NOTES.txt only against a cluster; "
                          "scripts/install-tools.sh installs helm 4")

    def notes(self, files, namespace=NAMESPACE):
        r = run_helm("install", RELEASE, CHART, "--dry-run=client", "--namespace", namespace,
                     *values_args(files, None))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("NOTES:", r.stdout)
        return r.stdout.split("NOTES:", 1)[1]

    def test_notes_tell_how_to_check_polling_and_scaling(self):
        notes = self.notes([VALUES_DIR / "namespace.yaml"], namespace="ci-system")
        self.assertIn("kubectl logs -n ci-system deployment/runner-provisioner -f", notes)
        self.assertIn('"loop_name":"scaler"', notes)
        self.assertIn("kubectl get virtualmachinepool -n ci-vms", notes)
        self.assertIn("kubectl get vm -n ci-vms", notes)
        self.assertIn("kubectl port-forward -n ci-system deployment/runner-provisioner 8000:8000", notes)
        self.assertIn("/ready", notes)
        self.assertNotIn("test-circle-api-token", notes)
        self.assertNotIn("test-runner-token", notes)

    def test_notes_on_external_secret_changes(self):
        notes = self.notes([VALUES_DIR / "existing-secret.yaml"])
        self.assertIn("applies a change to it without a restart", notes)
        self.assertNotIn("without a restart", self.notes([VALUES_DIR / "minimal.yaml"]))

    def test_notes_on_replicas_and_uninstall(self):
        notes = self.notes([VALUES_DIR / "ha.yaml"])
        self.assertIn("2 replicas: one leads", notes)
        self.assertIn("kubectl get lease -n runner-provisioner runner-provisioner", notes)
        self.assertIn("helm uninstall first scales this release's pools to 0", notes)
        self.assertNotIn("replicas: one leads", self.notes([VALUES_DIR / "minimal.yaml"]))


if __name__ == "__main__":
    try:
        unittest.main(verbosity=2)
    finally:
        _cleanup_helm_home()
