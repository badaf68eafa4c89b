#!/usr/bin/python3
"""Validates Kubernetes objects the actuator builds, given as JSON files:
VirtualMachinePools against the KubeVirt v1.8.4 CRD schema (unknown fields
rejected) and the rules of KubeVirt's pool validating webhook; Secrets
against the core v1 rules the API server applies.  Prints one line per
problem and exits 1 if there is any.

Usage: validate_objects.py FILE.json...
"""
import base64
import json
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "sim"))
import kube_model  # noqa: E402

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def secret_errors(s):
    errs = []
    if s.get("apiVersion") != "v1" or s.get("kind") != "Secret":
        errs.append("not a v1 Secret")
    meta = s.get("metadata") or {}
    name = meta.get("name", "")
    if not DNS1123_SUBDOMAIN.match(name) or len(name) > 253:
        errs.append("metadata.name %r is not a DNS-1123 subdomain" % name)
    errs += ["%s: %s" % e for e in kube_model.validate_labels_annotations(meta, "metadata")]
    for k, v in (s.get("data") or {}).items():
        if not SECRET_KEY.match(k):
            errs.append("data key %r is invalid" % k)
        try:
            base64.b64decode(v, validate=True)
        except Exception:
            errs.append("data.%s is not base64" % k)
    unknown = set(s) - {"apiVersion", "kind", "metadata", "data", "type", "stringData", "immutable"}
    if unknown:
        errs.append("unknown fields %s" % sorted(unknown))
    return errs


def main(paths):
    schema = kube_model.PoolSchema(kube_model.find_crd())
    bad = 0
    for p in paths:
        with open(p) as f:
            obj = json.load(f)
        kind = obj.get("kind")
        if kind == "VirtualMachinePool":
            errs = ["%s: %s" % e for e in schema.normalize(obj)]
            errs += ["%s: %s" % e for e in schema.schema_errors(obj)]
            errs += ["%s: %s" % e for e in kube_model.pool_webhook_errors(obj)]
        elif kind == "Secret":
            errs = secret_errors(obj)
        else:
            errs = ["unexpected kind %r" % kind]
        for e in errs:
            print("%s: %s" % (p, e))
        bad += len(errs)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
