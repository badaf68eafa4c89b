#!/usr/bin/python3
"""The chart's monitoring objects: the Grafana dashboard ConfigMap and the
PrometheusRule (both opt-in), with the real helm, promtool and the Grafana
schema.

Run: /usr/bin/python3 tests/chart/test_monitoring.py   (CTest: chart/test_monitoring)
Needs helm, node and .tools/node_modules (kubernetes-models,
@kubernetes-models/prometheus-operator, @grafana/schema,
ts-json-schema-generator, typescript: scripts/install-tools.sh), promtool
(Debian's prometheus), and the built daemon in $RP_BUILD_DIR/bin.

- both objects render only when enabled, pass kubernetes-models' schemas, and
  honour their values (namespace, labels, annotations, selector, extra rule
  labels);
- the rules pass `promtool check rules`, and `promtool test rules` runs
  tests/chart/prometheus-rules.test.yaml against them: every alert fires in
  one case and stays silent in others; the same tests fail on rules without
  their `for` or without the release's selector, so they can tell;
- the dashboard JSON validates against JSON Schemas generated from
  @grafana/schema's TypeScript types (dashboard model, and each panel type's
  options and field config), every query is valid PromQL (promtool), every
  variable it uses is defined, and it has the panels an operator looks for;
- every runner_provisioner_* metric the rules and the dashboard use is one
  the daemon exports (its real GET /metrics against the simulators).
"""
import copy
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
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "e2e"))
import helmlib  # noqa: E402

SRC = helmlib.SRC
CHART = helmlib.CHART
DASHBOARD_FILE = CHART / "dashboards" / "runner-provisioner.json"
RULE_TESTS = HERE / "prometheus-rules.test.yaml"
PROMTOOL = "/usr/bin/promtool"
NAMESPACE = "runner-provisioner"   # the namespace RULE_TESTS' series carry
RELEASE = "runner-provisioner"


# What the issue asks the alerts to cover, by alert name.
REQUIRED_ALERTS = {
    "RunnerProvisionerPollsFailing",          # polls failing
    "RunnerProvisionerPoolHeld",              # pool held
    "RunnerProvisionerAtMaxReplicas",         # class at maxReplicas with tasks queued
    "RunnerProvisionerBootLoop",              # boot loop
    "RunnerProvisionerChildCrashLooping",     # child crash-looping
    "RunnerProvisionerKubernetesRequestsDenied",
    "RunnerProvisionerReconcileStalled",
    "RunnerProvisionerNoLeader",              # no replica holds the Lease
    "RunnerProvisionerConfigRejected",        # a hot reload rejected
}
# ... and the dashboard (title fragments, case-insensitive).
REQUIRED_PANELS = ("demand vs desired vs replicas", "vms by state", "scale events", "poll errors by code",
                   "kubernetes request latency", "child restarts", "boot loop")

BASE_VALUES = {
    "imagePullSecrets": [],
    "provisioner": {"circleToken": "monitoring-test-token",
                    "resourceClass": {"name": "my-org/a", "token": "runner-token"}},
}


def values(**metrics):
    v = copy.deepcopy(BASE_VALUES)
    v["metrics"] = metrics
    return v


def enabled(rule=None, dashboard=None):
    return values(prometheusRule=dict({"enabled": True}, **(rule or {})),
                  grafanaDashboard=dict({"enabled": True}, **(dashboard or {})))


def rules_of(docs):
    return {"groups": helmlib.only(docs, "PrometheusRule")["spec"]["groups"]}


def alerts_of(rules):
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def metric_names(expr):
    return set(re.findall(r"\brunner_provisioner_[a-zA-Z0-9_]+", expr))


def promtool(*args, cwd=None):
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)


def dashboard_exprs(dash):
    for p in panels(dash):
        for t in p.get("targets", []):
            yield p, t
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            yield v, {"expr": v["query"]["query"] if isinstance(v["query"], dict) else v["query"]}


def panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def as_promql(expr):
    """A dashboard query with Grafana's variables replaced by valid PromQL."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__range", "1h").replace("$__interval", "1m")
    m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_]\w*)\)", expr.strip(), re.S)
    if m:  # label_values(selector, label): the selector must be valid
        expr = m.group(1).strip()
    return re.sub(r"\$\{?[a-zA-Z_]\w*\}?", ".*", expr)


class DaemonMetrics:
    names = None

    @classmethod
    def get(cls):
        """Metric names in the daemon's GET /metrics (histograms also as
        their _bucket/_sum/_count series), with one class against both
        simulators."""
        if cls.names is None:
            import harness
            import kubesim
            if not os.access(harness.SUPERVISOR, os.X_OK):
                raise AssertionError(f"{harness.SUPERVISOR} not built (RP_BUILD_DIR={harness.BUILD_DIR})")
            tdir = harness.TestDir(prefix="rp-mon-")
            sims = []
            try:
                circle = harness.CircleSim(tdir, ["my-org/a"]).start()
                sims.append(circle)
                kube = kubesim.KubeSim(tdir, circle=circle).start()
                sims.append(kube)
                tdir.write_config(harness.make_config({"my-org/a": {"token": harness.runner_token("my-org/a"),
                                                                   "minReplicas": 1}}))
                p = harness.Provisioner(tdir, sims=sims).start()
                sims.append(p)
                p.wait_log(proc="actuator", msg=re.compile("^created (pool|Secret)"), timeout=60)
                # Both children's figures: each reaches /metrics with its
                # next health answer.
                p.wait(lambda: (lambda m: m.get("runner_provisioner_pool_replicas", resource_class="my-org/a")
                                is not None and m.get("runner_provisioner_tasks_unclaimed",
                                                      resource_class="my-org/a") is not None)(p.metrics()),
                       60, "the pool's replicas and the class's tasks in /metrics")
                m = p.metrics()
                # Declared families (a counter may have no series yet) and
                # the series of the histograms.
                cls.names = m.names() | set(m.types) | {
                    f"{n}_{suffix}" for n, t in m.types.items() if t == "histogram"
                    for suffix in ("bucket", "sum", "count")}
            finally:
                for s in reversed(sims):
                    (s.kill if isinstance(s, harness.Provisioner) else s.stop)()
                tdir.remove()
        return cls.names


class T01Objects(unittest.TestCase):
    def test_off_by_default(self):
        kinds = [d["kind"] for d in helmlib.render(BASE_VALUES)]
        self.assertNotIn("PrometheusRule", kinds)
        self.assertNotIn("ConfigMap", kinds)

    def test_rendered_objects_are_valid(self):
        docs = helmlib.render(enabled())
        mine = [d for d in docs if d["kind"] in ("PrometheusRule", "ConfigMap")]
        self.assertEqual(sorted(d["kind"] for d in mine), ["ConfigMap", "PrometheusRule"])
        r = helmlib.validate_k8s(mine)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        broken = copy.deepcopy(helmlib.only(mine, "PrometheusRule"))
        broken["spec"]["groups"][0]["rules"][0]["for"] = 10
        r = helmlib.validate_k8s([broken])
        self.assertNotEqual(r.returncode, 0, "the validator accepts a numeric `for`")

    def test_dashboard_configmap(self):
        cm = helmlib.only(helmlib.render(enabled()), "ConfigMap")
        self.assertEqual(cm["metadata"]["namespace"], NAMESPACE)
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "1")
        self.assertEqual(cm["metadata"]["labels"]["app.kubernetes.io/name"], "runner-provisioner")
        self.assertEqual(list(cm["data"]), ["runner-provisioner.json"])
        self.assertEqual(json.loads(cm["data"]["runner-provisioner.json"]), json.loads(DASHBOARD_FILE.read_text()))
        cm = helmlib.only(helmlib.render(enabled(dashboard={
            "namespace": "monitoring", "labels": {"grafana_dashboard": "yes", "team": "ci"},
            "annotations": {"grafana_folder": "CI"}})), "ConfigMap")
        self.assertEqual(cm["metadata"]["namespace"], "monitoring")
        self.assertEqual(cm["metadata"]["labels"]["grafana_dashboard"], "yes")
        self.assertEqual(cm["metadata"]["labels"]["team"], "ci")
        self.assertEqual(cm["metadata"]["annotations"], {"grafana_folder": "CI"})

    def test_rule_values(self):
        rule = helmlib.only(helmlib.render(enabled(rule={
            "labels": {"release": "kube-prometheus-stack"},
            "additionalRuleLabels": {"team": "ci", "severity": "page"},
            "selector": 'job="rp-metrics", cluster="eu"'})), "PrometheusRule")
        self.assertEqual(rule["metadata"]["labels"]["release"], "kube-prometheus-stack")
        for a in alerts_of({"groups": rule["spec"]["groups"]}):
            with self.subTest(alert=a["alert"]):
                self.assertEqual(a["labels"]["team"], "ci")
                self.assertIn(a["labels"]["severity"], ("warning", "critical"), "a rule's own severity wins")
                self.assertIn('job="rp-metrics", cluster="eu"', a["expr"])
                self.assertNotIn("namespace=", a["expr"])
        default = rules_of(helmlib.render(enabled(), namespace="ci-system"))
        for a in alerts_of(default):
            for m in re.finditer(r"\brunner_provisioner_\w+\{([^}]*)\}", a["expr"]):
                self.assertIn('namespace="ci-system"', m.group(1), a["expr"])

    def test_bad_selector_is_rejected(self):
        r = helmlib.run_helm("template", RELEASE, CHART, "--set", "provisioner.circleToken=x",
                             "--set", "provisioner.resourceClass.name=a/b", "--set",
                             "provisioner.resourceClass.token=y", "--set", "metrics.prometheusRule.enabled=true",
                             "--set", "metrics.prometheusRule.selector=namespace")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("selector", r.stderr)


class T02Alerts(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(PROMTOOL, os.X_OK):
            raise AssertionError(f"{PROMTOOL} missing: apt-get install prometheus (scripts/setup.sh)")
        cls.rules = rules_of(helmlib.render(enabled(), namespace=NAMESPACE))

    def run_tests(self, rules):
        with tempfile.TemporaryDirectory(prefix="rp-rules-") as d:
            Path(d, "rules.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
            shutil.copy(RULE_TESTS, Path(d, RULE_TESTS.name))
            return promtool("test", "rules", RULE_TESTS.name, cwd=d)

    def test_promtool_checks_the_rules(self):
        with tempfile.TemporaryDirectory(prefix="rp-rules-") as d:
            f = Path(d, "rules.yaml")
            f.write_text(yaml.safe_dump(self.rules, sort_keys=False))
            r = promtool("check", "rules", f)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"SUCCESS: {len(alerts_of(self.rules))} rules found", r.stdout)

    def test_unit_tests_pass(self):
        r = self.run_tests(self.rules)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)

    def test_every_alert_fires_and_stays_silent_in_tests(self):
        names = {a["alert"] for a in alerts_of(self.rules)}
        self.assertTrue(REQUIRED_ALERTS <= names, REQUIRED_ALERTS - names)
        fires, silent = set(), set()
        for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
            for t in case.get("alert_rule_test", []):
                (fires if t.get("exp_alerts") else silent).add(t["alertname"])
        self.assertEqual(fires, names, "alerts without a firing case")
        self.assertEqual(silent, names, "alerts without a case where they must stay silent")

    def test_every_alert_has_a_severity_and_text(self):
        for a in alerts_of(self.rules):
            with self.subTest(alert=a["alert"]):
                self.assertIn(a["labels"]["severity"], ("warning", "critical"))
                self.assertTrue(a["annotations"]["summary"].strip())
                self.assertGreater(len(a["annotations"]["description"]), 80)
                self.assertRegex(a["for"], r"^\d+m$")

    def test_the_tests_catch_rules_without_for(self):
        rules = copy.deepcopy(self.rules)
        for a in alerts_of(rules):
            a.pop("for")
        r = self.run_tests(rules)
        self.assertNotEqual(r.returncode, 0, "the tests pass on alerts that fire at once")

    def test_the_tests_catch_rules_without_the_selector(self):
        rules = copy.deepcopy(self.rules)
        for a in alerts_of(rules):
            a["expr"] = a["expr"].replace(f'namespace="{NAMESPACE}"', 'namespace=~".+"')
        r = self.run_tests(rules)
        self.assertNotEqual(r.returncode, 0, "the tests pass on rules that see other releases' series")

    def test_metrics_exist(self):
        used = set().union(*(metric_names(a["expr"]) for a in alerts_of(self.rules)))
        self.assertEqual(used - DaemonMetrics.get(), set(), "alerts on metrics the daemon does not export")


class T03Dashboard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dash = json.loads(DASHBOARD_FILE.read_text())
        cls.types = sorted({p["type"] for p in panels(cls.dash) if p["type"] != "row"})
        node = shutil.which("node")
        if not node or not (helmlib.NODE_MODULES / "@grafana" / "schema").is_dir():
            raise AssertionError(f"node or @grafana/schema missing: {helmlib.INSTALL_HINT}")
        r = subprocess.run([node, str(HERE / "grafana-schema.js"), str(helmlib.NODE_MODULES),
                            *[t.replace("-", "") for t in cls.types]],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"grafana-schema.js failed:\n{r.stderr}")
        cls.schemas = json.loads(r.stdout)

    def errors(self, schema, doc):
        v = jsonschema.Draft7Validator(schema)
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]

    def panel_errors(self, dash):
        out = []
        for p in panels(dash):
            if p["type"] == "row":
                continue
            s = self.schemas["panels"][p["type"].replace("-", "")]
            out += [f"panel {p['id']} options/{e}" for e in self.errors(s["options"], p.get("options", {}))]
            custom = p.get("fieldConfig", {}).get("defaults", {}).get("custom")
            if custom is not None:
                self.assertIsNotNone(s["fieldConfig"], f"{p['type']} has no custom field config")
                out += [f"panel {p['id']} custom/{e}" for e in self.errors(s["fieldConfig"], custom)]
        return out

    def test_dashboard_model(self):
        self.assertEqual(self.errors(self.schemas["dashboard"], self.dash), [],
                         f"against @grafana/schema {self.schemas['version']}")

    def test_panel_options(self):
        self.assertEqual(self.panel_errors(self.dash), [])

    def test_the_schemas_catch_mistakes(self):
        bad = copy.deepcopy(self.dash)
        bad["refresh_interval"] = "30s"
        bad["templating"]["list"][1]["refresh"] = 7
        self.assertEqual(len(self.errors(self.schemas["dashboard"], bad)), 2)
        bad = copy.deepcopy(self.dash)
        stat = next(p for p in panels(bad) if p["type"] == "stat")
        stat["options"]["colorMode"] = "rainbow"
        ts = next(p for p in panels(bad) if p["type"] == "timeseries")
        ts["fieldConfig"]["defaults"]["custom"]["drawstyle"] = "line"
        self.assertEqual(len(self.panel_errors(bad)), 2, self.panel_errors(bad))

    def test_layout(self):
        ids = [p["id"] for p in panels(self.dash)]
        self.assertEqual(len(ids), len(set(ids)), "panel ids must be unique")
        for p in panels(self.dash):
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            self.assertTrue(p.get("title"))
            if p["type"] != "row":
                self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"}, p["title"])
                self.assertTrue(p.get("description"), p["title"])
                refs = [t["refId"] for t in p["targets"]]
                self.assertEqual(len(refs), len(set(refs)), p["title"])
        self.assertEqual(self.dash["uid"], "runner-provisioner")

    def test_required_panels(self):
        titles = [p["title"].lower() for p in panels(self.dash)]
        for want in REQUIRED_PANELS:
            self.assertTrue(any(want in t for t in titles), f"no panel titled like {want!r}")
        rows = [p for p in self.dash["panels"] if p["type"] == "row" and p.get("repeat") == "resource_class"]
        self.assertEqual(len(rows), 1, "per-class panels repeat for each selected resource class")

    def test_variables(self):
        defined = {v["name"] for v in self.dash["templating"]["list"]}
        self.assertEqual(defined, {"datasource", "namespace", "resource_class"})
        text = json.dumps(self.dash)
        used = set(re.findall(r"\$\{?([a-zA-Z_]\w*)", text)) - {"__rate_interval", "__range", "__all"}
        self.assertEqual(used - defined, set(), "variables used but not defined")

    def test_queries_are_promql(self):
        rules, n = [], 0
        for owner, t in dashboard_exprs(self.dash):
            n += 1
            rules.append({"record": f"dashboard:query_{n}", "expr": as_promql(t["expr"])})
        self.assertGreater(n, 20)
        with tempfile.TemporaryDirectory(prefix="rp-dash-") as d:
            f = Path(d, "queries.yaml")
            f.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
            r = promtool("check", "rules", f)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            f.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
                {"record": "x", "expr": as_promql("sum(rate(runner_provisioner_polls_total[$__rate_interval])")}]}]}))
            self.assertNotEqual(promtool("check", "rules", f).returncode, 0, "promtool accepts broken PromQL")

    def test_metrics_exist(self):
        used = set().union(*(metric_names(t["expr"]) for _, t in dashboard_exprs(self.dash)))
        base = {re.sub(r"_(bucket|sum|count)$", "", n) for n in DaemonMetrics.get()}
        missing = {n for n in used if n not in DaemonMetrics.get() and n not in base}
        self.assertEqual(missing, set(), "dashboard queries of metrics the daemon does not export")


if __name__ == "__main__":
    unittest.main(verbosity=2)
