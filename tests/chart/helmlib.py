"""The real helm binary for the tests that render deploy/chart outside
test_chart.py (monitoring, package, image): found as test_chart.py finds it
(.tools/bin/helm, helm on PATH, or $RP_HELM), run with a private HOME so the
user's helm state and any real cluster stay untouched.
"""
import atexit
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SRC = Path(os.environ.get("RP_SOURCE_DIR") or HERE.parents[1]).resolve()
CHART = SRC / "deploy" / "chart"
TOOLS = SRC / ".tools"
NODE_MODULES = TOOLS / "node_modules"
INSTALL_HINT = "run scripts/install-tools.sh (installs helm and the npm packages into .tools/)"

_home = None


def helm_home():
    global _home
    if _home is None:
        _home = tempfile.mkdtemp(prefix="rp-helm-")
        atexit.register(shutil.rmtree, _home, True)
        Path(_home, "kubeconfig").touch(mode=0o600)
    return _home


def find_helm():
    if os.environ.get("RP_HELM"):
        return os.environ["RP_HELM"]
    local = TOOLS / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("helm")
    if not found:
        raise AssertionError(f"helm not found: {INSTALL_HINT}")
    return found


def run_helm(*args, timeout=120):
    home = helm_home()
    env = dict(os.environ, HELM_CONFIG_HOME=home + "/config", HELM_CACHE_HOME=home + "/cache",
               HELM_DATA_HOME=home + "/data", KUBECONFIG=home + "/kubeconfig")
    return subprocess.run([find_helm(), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def render(values, release="runner-provisioner", namespace="runner-provisioner", chart=CHART):
    """helm template with one values mapping (written as JSON: helm reads
    YAML 1.1, where PyYAML's plain `on` would be a bool) -> list of objects."""
    fd, path = tempfile.mkstemp(prefix="values-", suffix=".json", dir=helm_home())
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    r = run_helm("template", release, chart, "--namespace", namespace, "-f", path)
    if r.returncode != 0:
        raise AssertionError(f"helm template failed:\n{r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def only(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind}, got {len(found)}")
    return found[0]


def validate_k8s(docs):
    """tests/chart/validate-k8s.js (kubernetes-models) on docs ->
    CompletedProcess; returncode 0 when every object is valid."""
    node = shutil.which("node")
    if not node or not (NODE_MODULES / "kubernetes-models").is_dir():
        raise AssertionError(f"node or kubernetes-models missing: {INSTALL_HINT}")
    return subprocess.run([node, str(HERE / "validate-k8s.js"), str(NODE_MODULES)],
                          input=json.dumps(docs), capture_output=True, text=True, timeout=120)
