"""Object store, admission and controller model behind kube_sim.py.

Everything here runs under one lock (Model.lock).  The HTTP front end
(kube_sim.py) calls the Store for API verbs; a background thread calls
Model.tick() every --tick-ms to play KubeVirt's pool controller, VM
controller, garbage collector and the guests (research/kubevirt.md §2).
Runner threads (one per booted VM with a runner config) make their CircleCI
calls outside the lock and report back through Model.runner_*().

Only Debian's python3 standard library, python3-yaml and python3-jsonschema
are used.
"""

import base64
import binascii
import copy
import gzip
import hashlib
import http.client
import json
import math
import os
import random
import re
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

import jsonschema
import yaml

POOL_FINALIZER = "pool.kubevirt.io/finalizer"
VM_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
REVISION_LABEL = "kubevirt.io/vm-pool-revision-name"
POOL_API = "pool.kubevirt.io/v1beta1"
VM_API = "kubevirt.io/v1"
RUN_STRATEGIES = ("Always", "RerunOnFailure", "Manual", "Halted", "Once",
                  "WaitAsReceiver")
CLOUD_INIT_MAX = 2048
BURST_REPLICAS = 250
SECRET_MAX = 1 << 20
GONE_VMS_KEPT = 200
GONE_VMS_SHOWN_S = 30
CRD_NAME = "kubevirt-v1.8.4-virtualmachinepools.pool.kubevirt.io-crd.yaml"


def log(verbose, msg):
    if verbose:
        sys.stderr.write("kube-sim: %s\n" % msg)
        sys.stderr.flush()


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def jcopy(o):
    return copy.deepcopy(o)


def canon(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------
# Errors as Kubernetes Status objects


class ApiError(Exception):
    """An API answer other than success: becomes a metav1.Status."""

    def __init__(self, code, reason, message, details=None, headers=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self):
        return status_obj(self.code, self.reason, self.message, self.details)


def status_obj(code, reason, message, details=None):
    d = {"kind": "Status", "apiVersion": "v1", "metadata": {},
         "status": "Failure", "message": message, "reason": reason,
         "code": code}
    if details:
        d["details"] = details
    return d


class Res:
    """One served resource type.  conditional: a PUT must carry
    metadata.resourceVersion (custom resources, and built-in types whose
    strategy disallows unconditional updates, such as Lease)."""

    def __init__(self, plural, kind, group, versions, namespaced=True,
                 crd=True, status_sub=False, verbs=(), conditional=None):
        self.plural = plural
        self.kind = kind
        self.group = group
        self.versions = versions
        self.crd = crd
        self.status_sub = status_sub
        self.verbs = set(verbs)
        self.conditional = crd if conditional is None else conditional
        self.qualified = plural + ("." + group if group else "")

    def api_version(self, version=None):
        v = version or self.versions[0]
        return "%s/%s" % (self.group, v) if self.group else v

    def details(self, name=None):
        d = {"kind": self.plural}
        if self.group:
            d["group"] = self.group
        if name:
            d["name"] = name
        return d

    def not_found(self, name):
        return ApiError(404, "NotFound", '%s "%s" not found'
                        % (self.qualified, name), self.details(name))

    def already_exists(self, name):
        return ApiError(409, "AlreadyExists", '%s "%s" already exists'
                        % (self.qualified, name), self.details(name))

    def conflict(self, name, why=None):
        return ApiError(409, "Conflict", 'Operation cannot be fulfilled on '
                        '%s "%s": %s' % (
                            self.qualified, name, why or
                            "the object has been modified; please apply your "
                            "changes to the latest version and try again"),
                        self.details(name))

    def invalid(self, name, errors, prefix=""):
        """errors: [(field, message)] -> 422 Invalid naming every field."""
        texts = ["%s: %s" % (f, m) if f else m for f, m in errors]
        joined = texts[0] if len(texts) == 1 else "[%s]" % ", ".join(texts)
        gk = self.kind + ("." + self.group if self.group else "")
        d = {"name": name, "kind": self.kind,
             "causes": [{"reason": "FieldValueInvalid", "message": m,
                         "field": f} for f, m in errors]}
        if self.group:
            d["group"] = self.group
        return ApiError(422, "Invalid", '%s%s "%s" is invalid: %s'
                        % (prefix, gk, name, joined), d)

    def forbidden(self, verb, ns, name, user, sub=None):
        what = self.plural + ("/" + sub if sub else "")
        head = '%s "%s"' % (self.qualified, name) if name else self.qualified
        where = 'in the namespace "%s"' % ns if ns else "at the cluster scope"
        return ApiError(
            403, "Forbidden",
            '%s is forbidden: User "%s" cannot %s resource "%s" in API group '
            '"%s" %s' % (head, user, verb, what, self.group, where),
            self.details(name))


RESOURCES = {
    "secrets": Res("secrets", "Secret", "", ("v1",), crd=False,
                   verbs=("get", "list", "create", "update", "patch",
                          "delete")),
    "virtualmachinepools": Res(
        "virtualmachinepools", "VirtualMachinePool", "pool.kubevirt.io",
        ("v1beta1", "v1alpha1"), status_sub=True,
        verbs=("get", "list", "create", "update", "patch", "delete")),
    "virtualmachines": Res(
        "virtualmachines", "VirtualMachine", "kubevirt.io", ("v1",),
        status_sub=True,
        verbs=("get", "list", "create", "update", "patch", "delete")),
    "virtualmachineinstances": Res(
        "virtualmachineinstances", "VirtualMachineInstance", "kubevirt.io",
        ("v1",), status_sub=True, verbs=("get", "list")),
    # coordination.k8s.io: leaseStrategy.AllowUnconditionalUpdate() is
    # false, so an update needs its resourceVersion.
    "leases": Res("leases", "Lease", "coordination.k8s.io", ("v1",),
                  crd=False, conditional=True,
                  verbs=("get", "list", "create", "update", "patch",
                         "delete")),
    "events": Res("events", "Event", "events.k8s.io", ("v1",), crd=False,
                  verbs=("get", "list", "create", "update", "patch",
                         "delete")),
}

# ---------------------------------------------------------------------------
# Leases and events.k8s.io Events, validated as kube-apiserver does
# (pkg/apis/coordination/validation, pkg/apis/core/validation/events.go)

LEASE_SPEC = {"holderIdentity", "leaseDurationSeconds", "acquireTime",
              "renewTime", "leaseTransitions", "strategy",
              "preferredHolder"}
EVENT_FIELDS = {"apiVersion", "kind", "metadata", "eventTime", "series",
                "reportingController", "reportingInstance", "action",
                "reason", "regarding", "related", "note", "type",
                "deprecatedSource", "deprecatedFirstTimestamp",
                "deprecatedLastTimestamp", "deprecatedCount"}
OBJECT_REFERENCE = {"kind", "namespace", "name", "uid", "apiVersion",
                    "resourceVersion", "fieldPath"}
EVENT_IMMUTABLE = ("regarding", "reason", "note", "type", "eventTime",
                   "action", "related", "reportingController",
                   "reportingInstance")
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?"
                       r"(Z|[+-]\d\d:\d\d)$")


def bad_time(v):
    """A MicroTime/Time JSON value the server cannot decode: its message,
    or None (null is a zero time)."""
    if v is None:
        return None
    if not isinstance(v, str) or not MICROTIME.match(v):
        return 'parsing time %s as "2006-01-02T15:04:05.999999Z07:00": ' \
            'cannot parse' % json.dumps(v)
    return None


def _int32(v):
    return isinstance(v, int) and not isinstance(v, bool) and \
        -(1 << 31) <= v < (1 << 31)


def lease_errors(obj):
    """-> (decode error text or None, [(field, message)])."""
    for k in sorted(set(obj) - {"apiVersion", "kind", "metadata", "spec"}):
        return None, [(k, 'Forbidden: unknown field "%s" (the API server '
                       'would drop it)' % k)]
    spec = obj.get("spec")
    if spec is None:
        return None, []
    if not isinstance(spec, dict):
        return "spec must be an object", []
    errs = []
    for k in sorted(set(spec) - LEASE_SPEC):
        errs.append(("spec." + k, 'Forbidden: unknown field "spec.%s" (the '
                     'API server would drop it)' % k))
    for k in ("holderIdentity", "strategy", "preferredHolder"):
        v = spec.get(k)
        if v is not None and not isinstance(v, str):
            return "spec.%s must be a string" % k, []
    for k in ("leaseDurationSeconds", "leaseTransitions"):
        v = spec.get(k)
        if v is not None and not _int32(v):
            return "spec.%s must be an int32" % k, []
    for k in ("acquireTime", "renewTime"):
        why = bad_time(spec.get(k))
        if why:
            return "spec.%s: %s" % (k, why), []
    d = spec.get("leaseDurationSeconds")
    if d is not None and d <= 0:
        errs.append(("spec.leaseDurationSeconds", "Invalid value: %d: must "
                     "be greater than 0" % d))
    t = spec.get("leaseTransitions")
    if t is not None and t < 0:
        errs.append(("spec.leaseTransitions", "Invalid value: %d: must be "
                     "greater than or equal to 0" % t))
    if spec.get("preferredHolder") and not spec.get("strategy"):
        errs.append(("spec.preferredHolder", "Forbidden: may only be "
                     "specified if `strategy` is defined"))
    return None, errs


def event_errors(obj, ns, old=None):
    """events.k8s.io/v1 create (old None) or update -> (decode error or
    None, [(field, message)])."""
    for k in sorted(set(obj) - EVENT_FIELDS):
        return None, [(k, 'Forbidden: unknown field "%s" (the API server '
                       'would drop it)' % k)]
    for k in ("reportingController", "reportingInstance", "action",
              "reason", "note", "type"):
        v = obj.get(k)
        if v is not None and not isinstance(v, str):
            return "%s must be a string" % k, []
    for k in ("eventTime", "deprecatedFirstTimestamp",
              "deprecatedLastTimestamp"):
        why = bad_time(obj.get(k))
        if why:
            return "%s: %s" % (k, why), []
    for ref in ("regarding", "related"):
        r = obj.get(ref)
        if r is None:
            continue
        if not isinstance(r, dict) or any(not isinstance(v, str)
                                          for v in r.values()):
            return "%s must be an object reference" % ref, []
        for k in sorted(set(r) - OBJECT_REFERENCE):
            return None, [("%s.%s" % (ref, k), 'Forbidden: unknown field')]
    series = obj.get("series")
    if series is not None:
        if not isinstance(series, dict) or not _int32(
                series.get("count", 0)) or \
                set(series) - {"count", "lastObservedTime"}:
            return "series must be {count, lastObservedTime}", []
        why = bad_time(series.get("lastObservedTime"))
        if why:
            return "series.lastObservedTime: %s" % why, []
    errs = []
    rc = obj.get("reportingController") or ""
    if not rc:
        errs.append(("reportingController", "Required value"))
    elif check_qualified_name(rc):
        errs.append(("reportingController", 'Invalid value: "%s": %s'
                     % (rc, check_qualified_name(rc))))
    for k, limit in (("reportingInstance", 128), ("action", 128),
                     ("reason", 128)):
        v = obj.get(k) or ""
        if not v:
            errs.append((k, "Required value"))
        elif len(v.encode()) > limit:
            errs.append((k, 'Invalid value: "": can have at most %d '
                         'characters' % limit))
    if len((obj.get("note") or "").encode()) > 1024:
        errs.append(("note", 'Invalid value: "": can have at most 1024 '
                     'characters'))
    reg = obj.get("regarding") or {}
    if not reg.get("namespace") and ns not in ("default", "kube-system"):
        errs.append(("regarding.namespace", 'Invalid value: "": does not '
                     'match event.namespace'))
    if old is None:
        if not obj.get("eventTime"):
            errs.append(("eventTime", "Required value"))
        if obj.get("type") not in ("Normal", "Warning"):
            errs.append(("type", 'Invalid value: "": has invalid value: %s'
                         % obj.get("type")))
        for k in ("deprecatedFirstTimestamp", "deprecatedLastTimestamp",
                  "deprecatedCount", "deprecatedSource"):
            if obj.get(k):
                errs.append((k, 'Invalid value: "": needs to be unset'))
        changed_series = True
    else:
        for k in EVENT_IMMUTABLE:
            if canon(obj.get(k)) != canon(old.get(k)):
                errs.append((k, "Invalid value: field is immutable"))
        changed_series = canon(obj.get("series")) != canon(old.get("series"))
    if series is not None and changed_series:
        if series.get("count", 0) < 2:
            errs.append(("series.count", 'Invalid value: "": should be at '
                         'least 2'))
        if not series.get("lastObservedTime"):
            errs.append(("series.lastObservedTime", "Required value"))
    return None, errs


# ---------------------------------------------------------------------------
# Names, labels, selectors

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def check_subdomain(v):
    if not v or len(v) > 253 or not DNS1123_SUBDOMAIN.match(v):
        return ("a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end "
                "with an alphanumeric character (e.g. 'example.com', regex "
                "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-"
                "z0-9]([-a-z0-9]*[a-z0-9])?)*')")
    return None


def check_qualified_name(k):
    """Label/annotation key rules; returns an error text or None."""
    if not isinstance(k, str) or not k:
        return "name part must be non-empty"
    prefix, sep, name = k.rpartition("/")
    if sep:
        if not prefix or len(prefix) > 253 or \
                not DNS1123_SUBDOMAIN.match(prefix):
            return "prefix part must be a lowercase RFC 1123 subdomain"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not QUALIFIED_NAME.match(name):
        return ("name part must consist of alphanumeric characters, '-', "
                "'_' or '.', and must start and end with an alphanumeric "
                "character")
    return None


def check_label_value(v):
    if not isinstance(v, str):
        return "must be a string"
    if len(v) > 63:
        return "must be no more than 63 characters"
    if not LABEL_VALUE.match(v):
        return ("a valid label must be an empty string or consist of "
                "alphanumeric characters, '-', '_' or '.', and must start "
                "and end with an alphanumeric character")
    return None


def validate_labels_annotations(meta, base):
    errs = []
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            errs.append((base + ".labels", "Invalid value: must be a map"))
        else:
            for k, v in labels.items():
                e = check_qualified_name(k)
                if e:
                    errs.append((base + ".labels", 'Invalid value: "%s": %s'
                                 % (k, e)))
                e = check_label_value(v)
                if e:
                    errs.append((base + ".labels", 'Invalid value: %s: %s'
                                 % (json.dumps(v), e)))
    ann = meta.get("annotations")
    if ann is not None:
        if not isinstance(ann, dict):
            errs.append((base + ".annotations",
                         "Invalid value: must be a map"))
        else:
            total = 0
            for k, v in ann.items():
                e = check_qualified_name(k)
                if e:
                    errs.append((base + ".annotations",
                                 'Invalid value: "%s": %s' % (k, e)))
                if not isinstance(v, str):
                    errs.append((base + ".annotations[%s]" % k,
                                 "Invalid value: must be a string"))
                    continue
                total += len(k) + len(v)
            if total > 256 * 1024:
                errs.append((base + ".annotations",
                             "Too long: must have at most 262144 bytes"))
    return errs


def _split_top_commas(s):
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*$")


def parse_label_selector(s):
    """A labelSelector query string -> [(key, op, values)].  Supports
    k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b); comma = AND."""
    reqs = []
    if s is None or not s.strip():
        return reqs
    for part in _split_top_commas(s):
        p = part.strip()
        if not p:
            raise ValueError("found '', expected: identifier")
        m = _SET_RE.match(p)
        if m:
            vals = [v.strip() for v in m.group(3).split(",")]
            if any(not v for v in vals) and vals != [""]:
                raise ValueError("found ',', expected: identifier")
            req = (m.group(1), m.group(2), set(v for v in vals if v))
        elif p.startswith("!"):
            req = (p[1:].strip(), "!", None)
        elif "!=" in p:
            k, v = p.split("!=", 1)
            req = (k.strip(), "!=", v.strip())
        elif "==" in p:
            k, v = p.split("==", 1)
            req = (k.strip(), "=", v.strip())
        elif "=" in p:
            k, v = p.split("=", 1)
            req = (k.strip(), "=", v.strip())
        else:
            req = (p, "exists", None)
        key, op, val = req
        e = check_qualified_name(key)
        if e:
            raise ValueError("invalid label key %r: %s" % (key, e))
        for v in (val if isinstance(val, set) else [val]):
            if isinstance(v, str) and check_label_value(v):
                raise ValueError("invalid label value: %r: %s"
                                 % (v, check_label_value(v)))
        reqs.append(req)
    return reqs


def selector_from_label_selector(sel):
    """A metav1.LabelSelector object -> requirements (raises ValueError)."""
    reqs = []
    sel = sel or {}
    for k, v in sorted((sel.get("matchLabels") or {}).items()):
        reqs.append((k, "=", v))
    for i, e in enumerate(sel.get("matchExpressions") or []):
        op = e.get("operator")
        vals = e.get("values") or []
        if op == "In":
            if not vals:
                raise ValueError("matchExpressions[%d].values: Required value:"
                                 " must be specified when `operator` is 'In' "
                                 "or 'NotIn'" % i)
            reqs.append((e.get("key"), "in", set(vals)))
        elif op == "NotIn":
            if not vals:
                raise ValueError("matchExpressions[%d].values: Required value:"
                                 " must be specified when `operator` is 'In' "
                                 "or 'NotIn'" % i)
            reqs.append((e.get("key"), "notin", set(vals)))
        elif op == "Exists":
            if vals:
                raise ValueError("matchExpressions[%d].values: Forbidden: may "
                                 "not be specified when `operator` is 'Exists'"
                                 " or 'DoesNotExist'" % i)
            reqs.append((e.get("key"), "exists", None))
        elif op == "DoesNotExist":
            if vals:
                raise ValueError("matchExpressions[%d].values: Forbidden: may "
                                 "not be specified when `operator` is 'Exists'"
                                 " or 'DoesNotExist'" % i)
            reqs.append((e.get("key"), "!", None))
        else:
            raise ValueError('matchExpressions[%d].operator: Invalid value: '
                             '"%s": not a valid selector operator' % (i, op))
    return reqs


def selector_string(reqs):
    out = []
    for k, op, v in sorted(reqs, key=lambda r: r[0]):
        if op == "=":
            out.append("%s=%s" % (k, v))
        elif op == "!=":
            out.append("%s!=%s" % (k, v))
        elif op in ("in", "notin"):
            out.append("%s %s (%s)" % (k, op, ",".join(sorted(v))))
        elif op == "exists":
            out.append(k)
        else:
            out.append("!" + k)
    return ",".join(out)


def selector_matches(reqs, labels):
    labels = labels or {}
    for k, op, v in reqs:
        have = k in labels
        val = labels.get(k)
        if op == "=" and not (have and val == v):
            return False
        if op == "!=" and have and val == v:
            return False
        if op == "in" and not (have and val in v):
            return False
        if op == "notin" and have and val in v:
            return False
        if op == "exists" and not have:
            return False
        if op == "!" and have:
            return False
    return True


# ---------------------------------------------------------------------------
# Patches


class PatchError(Exception):
    pass


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch (inputs are not modified)."""
    if not isinstance(patch, dict):
        return jcopy(patch)
    out = jcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_equal(a, b):
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y)
                                        for x, y in zip(a, b))
    return a == b


def _pointer(path):
    if not isinstance(path, str):
        raise PatchError("path must be a string")
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError("JSON pointer must start with '/': %r" % path)
    return [t.replace("~1", "/").replace("~0", "~")
            for t in path[1:].split("/")]


def _list_index(container, tok, path, allow_end=False):
    if tok == "-" and allow_end:
        return len(container)
    if not re.match(r"^(0|[1-9][0-9]*)$", tok):
        raise PatchError("invalid array index %r in %s" % (tok, path))
    i = int(tok)
    if i > len(container) or (i == len(container) and not allow_end):
        raise PatchError("array index out of bounds: %s" % path)
    return i


def _resolve(doc, toks, path):
    cur = doc
    for t in toks:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError("doc is missing path: %s" % path)
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_list_index(cur, t, path)]
        else:
            raise PatchError("doc is missing path: %s" % path)
    return cur


def json_patch(doc, ops):
    """RFC 6902 JSON patch on a copy of doc; raises PatchError."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be an array of operations")
    doc = jcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise PatchError("operation has no 'op' member")
        kind = op["op"]
        path = op.get("path")
        toks = _pointer(path)
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError("%s operation has no 'value' member" % kind)
        if kind == "test":
            try:
                cur = _resolve(doc, toks, path)
            except PatchError:
                raise PatchError("testing value %s failed: test failed"
                                 % path)
            if not json_equal(cur, op["value"]):
                raise PatchError("testing value %s failed: test failed"
                                 % path)
            continue
        if kind in ("move", "copy"):
            src = _pointer(op.get("from"))
            try:
                value = jcopy(_resolve(doc, src, op.get("from")))
            except PatchError:
                raise PatchError("%s operation does not apply: doc is missing"
                                 " from path: %s" % (kind, op.get("from")))
            if kind == "move":
                doc = _remove(doc, src, op.get("from"))
            doc = _add(doc, toks, path, value)
            continue
        if kind == "add":
            doc = _add(doc, toks, path, jcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, toks, path)
        elif kind == "replace":
            if not toks:
                doc = jcopy(op["value"])
                continue
            parent = _parent(doc, toks, path, "replace")
            t = toks[-1]
            if isinstance(parent, dict):
                if t not in parent:
                    raise PatchError("replace operation does not apply: doc "
                                     "is missing key: %s" % path)
                parent[t] = jcopy(op["value"])
            else:
                parent[_list_index(parent, t, path)] = jcopy(op["value"])
        else:
            raise PatchError("unexpected operation %r" % kind)
    return doc


def _parent(doc, toks, path, kind):
    try:
        parent = _resolve(doc, toks[:-1], path)
    except PatchError:
        raise PatchError("%s operation does not apply: doc is missing path: %s"
                         % (kind, path))
    if not isinstance(parent, (dict, list)):
        raise PatchError("%s operation does not apply: doc is missing path: %s"
                         % (kind, path))
    return parent


def _add(doc, toks, path, value):
    if not toks:
        return value
    parent = _parent(doc, toks, path, "add")
    t = toks[-1]
    if isinstance(parent, dict):
        parent[t] = value
    else:
        parent.insert(_list_index(parent, t, path, allow_end=True), value)
    return doc


def _remove(doc, toks, path):
    if not toks:
        raise PatchError("remove operation does not apply: cannot remove the "
                         "whole document")
    parent = _parent(doc, toks, path, "remove")
    t = toks[-1]
    if isinstance(parent, dict):
        if t not in parent:
            raise PatchError("remove operation does not apply: doc is missing"
                             " path: %s" % path)
        del parent[t]
    else:
        del parent[_list_index(parent, t, path)]
    return doc


# ---------------------------------------------------------------------------
# Durations and the runner's configuration

_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "\u00b5s": 1e-6, "\u03bcs": 1e-6,
              "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(s):
    """Go's time.ParseDuration, in seconds (float); raises ValueError."""
    if not isinstance(s, str) or not s:
        raise ValueError("invalid duration %r" % (s,))
    rest = s
    sign = 1.0
    if rest[0] in "+-":
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError("invalid duration %r" % s)
    total, pos = 0.0, 0
    while pos < len(rest):
        m = _DUR_RE.match(rest, pos)
        if not m:
            if re.match(r"\d", rest[pos:]) and not re.search(r"[a-z]", rest):
                raise ValueError("missing unit in duration %r" % s)
            raise ValueError("invalid duration %r" % s)
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    return sign * total


RUNNER_CONFIG_SUFFIX = "/circleci-runner-config.yaml"


def parse_runner_config(userdata):
    """Finds and checks the runner config inside #cloud-config user data.
    Returns a dict (auth_token, url, mode, idle_timeout (s or None)) or
    raises ValueError with the reason the runner would not start."""
    if isinstance(userdata, bytes):
        try:
            userdata = userdata.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("user data is not UTF-8")
    first = userdata.split("\n", 1)[0].strip()
    if first != "#cloud-config":
        raise ValueError("user data does not start with #cloud-config "
                         "(first line %r)" % first[:40])
    try:
        doc = yaml.load(userdata, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as e:
        raise ValueError("cloud-config is not valid YAML: %s" % e)
    if not isinstance(doc, dict):
        raise ValueError("cloud-config is not a mapping")
    files = doc.get("write_files")
    if not isinstance(files, list):
        raise ValueError("cloud-config has no write_files list")
    entry = None
    for f in files:
        if isinstance(f, dict) and isinstance(f.get("path"), str) and \
                f["path"].endswith(RUNNER_CONFIG_SUFFIX):
            entry = f
    if entry is None:
        raise ValueError("no write_files entry for *%s" % RUNNER_CONFIG_SUFFIX)
    content = entry.get("content", "")
    enc = str(entry.get("encoding", "text/plain")).lower()
    try:
        if enc in ("b64", "base64"):
            content = base64.b64decode(content, validate=True).decode()
        elif enc in ("gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
            content = gzip.decompress(
                base64.b64decode(content, validate=True)).decode()
        elif enc not in ("text/plain",):
            raise ValueError("unsupported write_files encoding %r" % enc)
    except (binascii.Error, OSError, UnicodeDecodeError) as e:
        raise ValueError("cannot decode runner config (%s): %s" % (enc, e))
    if not isinstance(content, str):
        raise ValueError("runner config content is not a string")
    try:
        cfg = yaml.load(content, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as e:
        raise ValueError("runner config is not valid YAML: %s" % e)
    if not isinstance(cfg, dict):
        raise ValueError("runner config is not a mapping")
    api = cfg.get("api") or {}
    runner = cfg.get("runner") or {}
    if not isinstance(api, dict) or not isinstance(runner, dict):
        raise ValueError("runner config: api and runner must be mappings")
    token = api.get("auth_token")
    if not isinstance(token, str) or not token:
        raise ValueError("runner config: api.auth_token is missing")
    url = api.get("url")
    if url is not None and not isinstance(url, str):
        raise ValueError("runner config: api.url must be a string")
    mode = runner.get("mode")
    if mode != "single-task":
        raise ValueError("runner config: runner.mode is %r, not single-task"
                         % (mode,))
    idle = runner.get("idle_timeout")
    if idle is not None:
        if not isinstance(idle, str):
            raise ValueError("runner config: runner.idle_timeout must be a "
                             "duration string, got %r" % (idle,))
        try:
            idle = parse_go_duration(idle)
        except ValueError as e:
            raise ValueError("runner config: runner.idle_timeout: %s" % e)
        if idle <= 0:
            idle = None
    return dict(auth_token=token, url=url, mode=mode, idle_timeout=idle,
                name=runner.get("name"))


# ---------------------------------------------------------------------------
# VirtualMachinePool admission: CRD structural schema + KubeVirt's webhook


def find_crd(explicit=None):
    if explicit:
        if not os.path.isfile(explicit):
            raise FileNotFoundError("--crd %s: no such file" % explicit)
        return os.path.abspath(explicit)
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.abspath(os.path.join(here, "..", ".."))
    cands = [os.environ.get("RP_KUBEVIRT_CRD")]
    for base in (os.environ.get("RP_SOURCE_DIR"), repo):
        if base:
            cands += [os.path.join(base, "tests", "schemas", CRD_NAME),
                      os.path.join(base, "schemas", CRD_NAME),
                      os.path.join(base, "..", "shared", "schemas", CRD_NAME)]
    for c in cands:
        if c and os.path.isfile(c):
            return os.path.abspath(c)
    raise FileNotFoundError("cannot find %s (give --crd or RP_KUBEVIRT_CRD)"
                            % CRD_NAME)


def field_path(parts):
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += "[%d]" % p
        elif re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", p):
            out += ("." if out else "") + p
        else:
            out += "[%s]" % p
    return out


def _is_object_schema(n):
    return n.get("type") == "object" or "properties" in n


def _strictify(n, root=False):
    """Makes the structural schema reject what the API server would prune:
    an object schema without additionalProperties and without
    x-kubernetes-preserve-unknown-fields accepts only its properties."""
    if not isinstance(n, dict):
        return n
    if n.get("nullable") and isinstance(n.get("type"), str):
        n["type"] = [n["type"], "null"]
    if _is_object_schema(n) and "additionalProperties" not in n and \
            not n.get("x-kubernetes-preserve-unknown-fields"):
        n["additionalProperties"] = False
    for k, sub in list((n.get("properties") or {}).items()):
        if root and k in ("metadata", "status"):
            continue  # ObjectMeta is validated separately; status ignored
        _strictify(sub)
    if isinstance(n.get("items"), dict):
        _strictify(n["items"])
    if isinstance(n.get("additionalProperties"), dict):
        _strictify(n["additionalProperties"])
    for k in ("anyOf", "allOf", "oneOf"):
        for sub in n.get(k) or []:
            _strictify(sub)
    return n


_CEL = [
    (re.compile(r"^self\.startsWith\('([^']*)'\)$"),
     lambda m, v: isinstance(v, str) and v.startswith(m.group(1))),
    (re.compile(r"^!self\.contains\('([^']*)'\)$"),
     lambda m, v: isinstance(v, str) and m.group(1) not in v),
    (re.compile(r"^self == (true|false)$"),
     lambda m, v: v is (m.group(1) == "true")),
]


class PoolSchema:
    """The CRD's openAPIV3Schema, compiled once."""

    def __init__(self, crd_path, verbose=False):
        with open(crd_path) as f:
            doc = yaml.load(f, Loader=yaml.CSafeLoader)
        versions = {v["name"]: v for v in doc["spec"]["versions"]}
        self.served = sorted(v for v in versions if versions[v].get("served"))
        self.raw = versions["v1beta1"]["schema"]["openAPIV3Schema"]
        self.validator = jsonschema.Draft4Validator(
            _strictify(jcopy(self.raw), root=True))
        self.unknown_cel = set()
        self._scan_cel(self.raw)
        for r in sorted(self.unknown_cel):
            log(verbose, "CRD validation rule not modelled: %s" % r)

    def _scan_cel(self, n):
        if isinstance(n, dict):
            for rule in n.get("x-kubernetes-validations") or []:
                if not any(p.match(rule.get("rule", "")) for p, _ in _CEL):
                    self.unknown_cel.add(rule.get("rule"))
            for v in n.values():
                self._scan_cel(v)
        elif isinstance(n, list):
            for v in n:
                self._scan_cel(v)

    def normalize(self, obj):
        """Drops nulls of non-nullable fields and applies schema defaults,
        as the API server does before validation.  Returns CEL errors."""
        errs = []
        spec = obj.get("spec")
        if isinstance(spec, dict):
            self._walk(spec, self.raw["properties"]["spec"], ["spec"], errs)
        return errs

    def _walk(self, inst, sch, path, errs):
        for rule in sch.get("x-kubernetes-validations") or []:
            for pat, fn in _CEL:
                m = pat.match(rule.get("rule", ""))
                if m and not fn(m, inst):
                    errs.append((field_path(path), "Invalid value: %s: %s" % (
                        json.dumps(inst),
                        rule.get("message") or rule["rule"])))
        if isinstance(inst, dict):
            props = sch.get("properties") or {}
            addl = sch.get("additionalProperties")
            for k in list(inst):
                sub = props.get(k) if k in props else (
                    addl if isinstance(addl, dict) else None)
                if sub is None:
                    continue
                if inst[k] is None and not sub.get("nullable"):
                    del inst[k]
                    continue
                self._walk(inst[k], sub, path + [k], errs)
            for k, sub in props.items():
                if k not in inst and isinstance(sub, dict) and \
                        "default" in sub:
                    inst[k] = jcopy(sub["default"])
        elif isinstance(inst, list) and isinstance(sch.get("items"), dict):
            for i, v in enumerate(inst):
                self._walk(v, sch["items"], path + [i], errs)
        elif isinstance(inst, int) and not isinstance(inst, bool):
            fmt = sch.get("format")
            lim = {"int32": 31, "int64": 63}.get(fmt)
            if lim and not -(1 << lim) <= inst < (1 << lim):
                errs.append((field_path(path), "Invalid value: %d: must be of"
                             " type %s" % (inst, fmt)))

    def schema_errors(self, obj):
        """[(field, message)] in the API server's words."""
        out = []
        errors = sorted(self.validator.iter_errors(obj),
                        key=lambda e: [str(p) for p in e.absolute_path])
        for e in errors:
            path = list(e.absolute_path)
            fp = field_path(path)
            v = e.validator
            if v == "additionalProperties":
                known = set((e.schema.get("properties") or {}).keys())
                for k in sorted(set(e.instance) - known):
                    f = field_path(path + [k])
                    out.append((f, 'Forbidden: unknown field "%s" (not '
                                'declared in the CRD schema; the API server '
                                'would prune it)' % f))
            elif v == "required":
                for k in e.validator_value:
                    if isinstance(e.instance, dict) and k not in e.instance:
                        out.append((field_path(path + [k]), "Required value"))
            elif v == "minimum":
                out.append((fp, "Invalid value: %s: %s in body should be "
                            "greater than or equal to %s" % (
                                json.dumps(e.instance), fp,
                                e.validator_value)))
            elif v == "maximum":
                out.append((fp, "Invalid value: %s: %s in body should be "
                            "less than or equal to %s" % (
                                json.dumps(e.instance), fp,
                                e.validator_value)))
            elif v == "type":
                want = e.validator_value
                want = " or ".join(want) if isinstance(want, list) else want
                out.append((fp, "Invalid value: %s: %s in body must be of "
                            "type %s: %s" % (
                                json.dumps(e.instance)[:80], fp, want,
                                json.dumps(_json_type(e.instance)))))
            elif v == "enum":
                out.append((fp, "Unsupported value: %s: supported values: %s"
                            % (json.dumps(e.instance), ", ".join(
                                json.dumps(x) for x in e.validator_value))))
            elif v == "anyOf":
                out.append((fp, "Invalid value: %s: %s in body must be of "
                            "type integer or string" % (
                                json.dumps(e.instance)[:80], fp)))
            elif v == "pattern":
                out.append((fp, "Invalid value: %s: %s in body should match "
                            "'%s'" % (json.dumps(e.instance), fp,
                                      e.validator_value)))
            elif v in ("maxLength", "maxItems"):
                out.append((fp, "Too long: may not be more than %s" %
                            e.validator_value))
            else:
                out.append((fp, "Invalid value: %s" % e.message))
        return out


def _json_type(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _named(items):
    return [x for x in items if isinstance(x, dict)] if isinstance(
        items, list) else []


def vmi_spec_errors(spec, base):
    """KubeVirt's VMI admitter rules that matter here (vmi-create-admitter)."""
    errs = []
    if not isinstance(spec, dict):
        return [(base, "Required value")]
    devices = ((spec.get("domain") or {}).get("devices") or {})
    disks = _named(devices.get("disks"))
    volumes = _named(spec.get("volumes"))
    vol_names = {}
    for i, v in enumerate(volumes):
        n = v.get("name")
        if n in vol_names:
            errs.append(("%s.volumes[%d].name" % (base, i),
                         'Duplicate value: "%s"' % n))
        vol_names[n] = i
    seen = set()
    for i, d in enumerate(disks):
        n = d.get("name")
        f = "%s.domain.devices.disks[%d].name" % (base, i)
        if n in seen:
            errs.append((f, 'Duplicate value: "%s"' % n))
        seen.add(n)
        if n not in vol_names:
            errs.append((f, "Invalid value: \"%s\": %s '%s' not found."
                         % (n, f, n)))
    ifaces = _named(devices.get("interfaces"))
    nets = _named(spec.get("networks"))
    net_names = [n.get("name") for n in nets]
    if_names = [x.get("name") for x in ifaces]
    for i, n in enumerate(if_names):
        if n not in net_names:
            errs.append(("%s.domain.devices.interfaces[%d].name" % (base, i),
                         "Invalid value: \"%s\": %s.domain.devices.interfaces"
                         "[%d].name '%s' not found." % (n, base, i, n)))
    for i, n in enumerate(net_names):
        if n not in if_names:
            errs.append(("%s.networks[%d].name" % (base, i),
                         "Invalid value: \"%s\": %s.networks[%d].name '%s' "
                         "not found." % (n, base, i, n)))
    for i, v in enumerate(volumes):
        for src in ("cloudInitNoCloud", "cloudInitConfigDrive"):
            ci = v.get(src)
            if isinstance(ci, dict):
                errs += _cloud_init_errors(
                    ci, "%s.volumes[%d].%s" % (base, i, src))
    return errs


def _cloud_init_errors(ci, f):
    errs = []
    user = [k for k in ("secretRef", "userDataBase64", "userData")
            if ci.get(k) is not None]
    net = [k for k in ("networkDataSecretRef", "networkDataBase64",
                       "networkData") if ci.get(k) is not None]
    if len(user) > 1:
        errs.append((f, "Invalid value: %s: %s must have only one "
                     "userdatasource set." % (user, f)))
    if len(net) > 1:
        errs.append((f, "Invalid value: %s: %s must have only one "
                     "networkdatasource set." % (net, f)))
    if not user and not net:
        errs.append((f, "Required value: %s must have at least one "
                     "userdatasource or one networkdatasource set." % f))
    for kind, plain, b64 in (("userdata", "userData", "userDataBase64"),
                             ("networkdata", "networkData",
                              "networkDataBase64")):
        size = None
        if isinstance(ci.get(plain), str):
            size = len(ci[plain].encode())
            field = plain
        elif isinstance(ci.get(b64), str):
            field = b64
            try:
                size = len(base64.b64decode(ci[b64], validate=True))
            except binascii.Error:
                errs.append(("%s.%s" % (f, b64), "Invalid value: %s.%s is not"
                             " a valid base64 value." % (f, b64)))
        if size is not None and size > CLOUD_INIT_MAX:
            errs.append(("%s.%s" % (f, field), "Invalid value: %s.%s %s "
                         "exceeds %d byte limit. Should use %sSecretRef for "
                         "larger data." % (f, field, kind, CLOUD_INIT_MAX,
                                           "UserData" if kind == "userdata"
                                           else "NetworkData")))
    return errs


def vm_spec_errors(spec, base):
    """VirtualMachineSpec checks of KubeVirt's VM admitter."""
    errs = []
    if not isinstance(spec, dict):
        return [(base, "Required value")]
    rs = spec.get("runStrategy")
    if spec.get("running") is not None and rs is not None:
        errs.append((base + ".running", "Invalid value: Running and "
                     "RunStrategy are mutually exclusive"))
    if rs is None:
        errs.append((base + ".runStrategy", "Required value: RunStrategy must "
                     "be specified"))
    elif rs not in RUN_STRATEGIES:
        errs.append((base + ".runStrategy", 'Unsupported value: "%s": '
                     "supported values: %s" % (rs, ", ".join(
                         '"%s"' % s for s in RUN_STRATEGIES))))
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        errs.append((base + ".template", "Required value"))
    else:
        errs += vmi_spec_errors(tmpl.get("spec"), base + ".template.spec")
    return errs


def pool_webhook_errors(pool, old=None):
    """virtualmachinepool-validator.kubevirt.io (vmpool-admitter.go)."""
    errs = []
    spec = pool.get("spec") or {}
    tmpl = spec.get("virtualMachineTemplate")
    if not isinstance(tmpl, dict):
        return [("spec.virtualMachineTemplate", "Required value: missing "
                 "virtual machine template.")]
    errs += vm_spec_errors(tmpl.get("spec"),
                           "spec.virtualMachineTemplate.spec")
    try:
        reqs = selector_from_label_selector(spec.get("selector"))
        labels = ((tmpl.get("metadata") or {}).get("labels") or {})
        if not selector_matches(reqs, labels):
            errs.append(("spec.selector", "Invalid value: selector does not "
                         "match labels in spec.virtualMachineTemplate.metadata"
                         ".labels"))
    except ValueError as e:
        errs.append(("spec.selector", "Invalid value: %s" % e))
    mu = spec.get("maxUnavailable")
    if mu is not None:
        ok = (isinstance(mu, int) and not isinstance(mu, bool) and mu > 0) \
            or (isinstance(mu, str) and re.match(r"^([1-9][0-9]?|100)%$", mu))
        if not ok:
            errs.append(("spec.maxUnavailable", "Invalid value: %s: must be an"
                         " integer > 0 or a percentage between 1%% and 100%%"
                         % json.dumps(mu)))
    for strat in ("scaleInStrategy", "updateStrategy"):
        s = spec.get(strat)
        if isinstance(s, dict):
            set_ = [k for k in ("unmanaged", "opportunistic", "proactive")
                    if s.get(k) is not None]
            if len(set_) > 1:
                errs.append(("spec." + strat, "Invalid value: only one of "
                             "unmanaged, opportunistic or proactive may be "
                             "set, got %s" % ", ".join(set_)))
    if old is not None:
        if canon((old.get("spec") or {}).get("selector")) != \
                canon(spec.get("selector")):
            errs.append(("spec.selector", "Invalid value: %s: field is "
                         "immutable" % canon(spec.get("selector"))))
    tmeta = tmpl.get("metadata") or {}
    if isinstance(tmeta, dict):
        errs += validate_labels_annotations(
            tmeta, "spec.virtualMachineTemplate.metadata")
    return errs


# ---------------------------------------------------------------------------
# The store


class Store:
    """Objects by (plural, namespace, name); one resourceVersion counter."""

    def __init__(self):
        self.objs = {p: {} for p in RESOURCES}
        self.rv = 0

    def bump(self, obj):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def get(self, plural, ns, name):
        return self.objs[plural].get((ns, name))

    def items(self, plural, ns=None):
        """Objects in insertion order (LIST sorts by namespace and name)."""
        return [o for (n, _), o in self.objs[plural].items()
                if ns is None or n == ns]

    def insert(self, plural, obj, now):
        m = obj["metadata"]
        m["uid"] = str(uuid.uuid4())
        m["creationTimestamp"] = rfc3339(now)
        if RESOURCES[plural].crd:
            m["generation"] = 1
        for k in ("deletionTimestamp", "deletionGracePeriodSeconds",
                  "resourceVersion", "selfLink", "managedFields"):
            m.pop(k, None)
        self.bump(obj)
        self.objs[plural][(m["namespace"], m["name"])] = obj
        return obj

    def write(self, plural, obj, replace=False):
        """Stores a changed obj under its key; removes it when it is
        terminating and has no finalizers left.  Without replace, obj must be
        the stored object itself (controllers never resurrect an object that
        went away meanwhile).  Returns True when the object still exists."""
        m = obj["metadata"]
        key = (m["namespace"], m["name"])
        if not replace and self.objs[plural].get(key) is not obj:
            return False
        self.bump(obj)
        if m.get("deletionTimestamp") and not m.get("finalizers"):
            self.objs[plural].pop(key, None)
            return False
        self.objs[plural][key] = obj
        return True

    def remove(self, plural, obj):
        m = obj["metadata"]
        if self.objs[plural].get((m["namespace"], m["name"])) is obj:
            del self.objs[plural][(m["namespace"], m["name"])]
            self.rv += 1

    def alive(self, plural, obj):
        m = obj["metadata"]
        return self.objs[plural].get((m["namespace"], m["name"])) is obj

    def mark_deleted(self, plural, obj, now):
        """Graceful delete: deletionTimestamp when finalizers remain, else
        gone.  Returns True when the object still exists."""
        m = obj["metadata"]
        if m.get("finalizers"):
            if not m.get("deletionTimestamp"):
                m["deletionTimestamp"] = rfc3339(now)
                m["deletionGracePeriodSeconds"] = 0
                if "generation" in m:
                    m["generation"] += 1
            return self.write(plural, obj)
        self.remove(plural, obj)
        return False


def name_index(name):
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def owner_uids(obj):
    return [r.get("uid") for r in obj["metadata"].get("ownerReferences") or []]


def controller_uid(obj):
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r.get("uid")
    return None


def remove_finalizer(obj, fin):
    fins = obj["metadata"].get("finalizers") or []
    if fin not in fins:
        return False
    fins = [f for f in fins if f != fin]
    if fins:
        obj["metadata"]["finalizers"] = fins
    else:
        obj["metadata"].pop("finalizers", None)
    return True


def add_finalizer(obj, fin):
    fins = obj["metadata"].setdefault("finalizers", [])
    if fin in fins:
        return False
    fins.append(fin)
    return True


# ---------------------------------------------------------------------------
# Sim-only bookkeeping per VM and the runner inside a guest


class VMState:
    """What the simulator knows about a VM beyond its API object."""

    def __init__(self, vm, now):
        self.uid = vm["metadata"]["uid"]
        self.ns = vm["metadata"]["namespace"]
        self.name = vm["metadata"]["name"]
        self.created = now
        self.booted = None        # last time a VMI reached Running
        self.stopped = None       # last guest power-off / crash
        self.boots = 0
        self.vmis_started = 0
        self.halted = False       # RerunOnFailure: guest powered off
        self.vmi_uid = None
        self.boot_at = None
        self.userdata = None
        self.waiting = None       # why the launcher cannot start
        self.task = None
        self.tasks_done = []
        self.runner = None
        self.runner_error = None
        self.runner_name = None
        self.runner_url = None
        self.last_poweroff = None
        self.history = []         # (t, event)
        self.status_key = None    # what the last VM status was built from
        self.status_obj = None
        self.gone = None          # when the VM object went away

    def event(self, t, what):
        self.history.append((t, what))
        del self.history[:-50]

    def view(self):
        return dict(task=self.task["id"] if self.task else None,
                    tasks_done=list(self.tasks_done),
                    created=self.created, booted=self.booted,
                    stopped=self.stopped, boots=self.boots,
                    halted=self.halted, waiting=self.waiting,
                    runner_error=self.runner_error,
                    runner_name=self.runner_name, runner_url=self.runner_url,
                    last_poweroff=self.last_poweroff,
                    history=[dict(t=t, event=e) for t, e in self.history])


class CircleClient:
    """Keep-alive JSON POSTs to the CircleCI simulator's control API."""

    def __init__(self, base, cafile=None):
        u = urllib.parse.urlsplit(base)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("--circleci must be an http(s) URL: %r" % base)
        self.https = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.https else 80)
        self.prefix = u.path.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=cafile) \
            if self.https else None

    def connect(self):
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port,
                                               timeout=10, context=self.ctx)
        return http.client.HTTPConnection(self.host, self.port, timeout=10)

    def post(self, conn, path, obj):
        """Returns (conn, status, body); status None on a transport error."""
        data = json.dumps(obj).encode()
        for attempt in (0, 1):
            if conn is None:
                conn = self.connect()
            try:
                conn.request("POST", self.prefix + path, body=data, headers={
                    "Content-Type": "application/json"})
                r = conn.getresponse()
                raw = r.read()
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                return conn, r.status, body
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = None
        return None, None, None


class Runner(threading.Thread):
    """circleci-runner in single-task mode inside one booted guest."""

    def __init__(self, model, st, vmi_uid, cfg):
        super().__init__(daemon=True, name="runner-" + st.name)
        self.model = model
        self.st = st
        self.vmi_uid = vmi_uid
        self.cfg = cfg
        self.stop = threading.Event()
        self.conn = None

    def run(self):
        try:
            self._run()
        except Exception as e:  # a model bug must show, not hang a VM
            self.model.runner_exit(self.vmi_uid, "runner crashed: %r" % e,
                                   error=True)
        finally:
            if self.conn is not None:
                self.conn.close()

    def _post(self, path, obj):
        self.conn, status, body = self.model.circle.post(self.conn, path, obj)
        return status, body

    def _run(self):
        m = self.model
        booted = time.time()
        idle = self.cfg["idle_timeout"]
        while not self.stop.is_set():
            now = time.time()
            if idle is not None and now >= booted + idle:
                m.runner_exit(self.vmi_uid, "idle timeout (%gs) reached"
                              % idle)
                return
            if m.circle is not None:
                status, body = self._post("/_sim/claim", {
                    "token": self.cfg["auth_token"],
                    "runner": self.st.runner_name,
                    "hostname": self.st.name})
                if self.stop.is_set():
                    return
                m.count("claims")
                if status == 401:
                    m.runner_exit(self.vmi_uid, "runner token rejected (401);"
                                  " circleci-runner exited", error=True)
                    return
                task = body.get("task") if status == 200 and \
                    isinstance(body, dict) else None
                if status != 200:
                    m.count("claim_errors")
                if task:
                    self._run_task(task)
                    return
            if m.circle is None:
                wait = None if idle is None else booted + idle - time.time()
            else:
                wait = m.config["claim_interval_ms"] / 1000.0
                if idle is not None:
                    wait = min(wait, booted + idle - time.time())
            if self.stop.wait(None if wait is None else max(wait, 0.001)):
                return

    def _run_task(self, task):
        m = self.model
        if not m.runner_claimed(self.vmi_uid, task):
            return
        if self.stop.wait(max(0, task.get("duration_ms", 0)) / 1000.0):
            return  # the VM went away under the job
        for _ in range(20):
            status, _ = self._post("/_sim/finish", {"task": task["id"]})
            if status is not None and status < 500:
                break
            if self.stop.wait(m.config["claim_interval_ms"] / 1000.0):
                return
        m.runner_finished(self.vmi_uid, task, status)


# ---------------------------------------------------------------------------
# The model


class Model:
    def __init__(self, crd_path, boot_delay_ms=500, claim_interval_ms=100,
                 tick_ms=50, circleci=None, circleci_ca=None, seed=None,
                 verbose=False):
        self.lock = threading.RLock()
        self.store = Store()
        self.schema = PoolSchema(crd_path, verbose)
        self.config = dict(boot_delay_ms=boot_delay_ms,
                           claim_interval_ms=claim_interval_ms,
                           tick_ms=tick_ms)
        self.circle = CircleClient(circleci, circleci_ca) if circleci else None
        self.circle_url = circleci
        self.random = random.Random(seed)
        self.verbose = verbose
        self.vms = {}             # VM uid -> VMState
        self.gone_vms = []        # VMStates of deleted VMs, newest last
        self.pool_failures = {}   # pool uid -> ReplicaFailure message
        self.revisions = {}       # (pool uid, revision name) -> template hash
        self.seen_rv = -1
        self.next_deadline = 0.0
        self.counters = dict(ticks=0, syncs=0, claims=0, claim_errors=0,
                             tasks_claimed=0,
                             tasks_finished=0, finish_errors=0, vms_created=0,
                             vms_deleted_by_pool=0, poweroffs=0, crashes=0,
                             vmi_restarts=0, busy_vms_deleted=0)
        self.kick_event = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name="controllers")

    # Loop ----------------------------------------------------------------
    def start(self):
        self.thread.start()

    def shutdown(self):
        self.stopping.set()
        self.kick_event.set()
        with self.lock:
            for st in self.vms.values():
                if st.runner:
                    st.runner.stop.set()

    def kick(self):
        self.kick_event.set()

    def _loop(self):
        """Runs a controller pass every tick_ms (sooner after a kick).  A
        pass is skipped when nothing can have changed: no write since the
        previous pass started and no boot deadline due (every state change
        goes through the store and bumps its resourceVersion)."""
        while not self.stopping.is_set():
            try:
                with self.lock:
                    now = time.time()
                    self.counters["ticks"] += 1
                    if self.store.rv != self.seen_rv or \
                            now >= self.next_deadline:
                        self.seen_rv = self.store.rv
                        self.next_deadline = float("inf")
                        self.tick(now)
            except Exception as e:  # keep the controllers alive, but say so
                sys.stderr.write("kube-sim: controller error: %r\n" % e)
                import traceback
                traceback.print_exc()
            self.kick_event.wait(self.config["tick_ms"] / 1000.0)
            self.kick_event.clear()

    def count(self, k, n=1):
        with self.lock:
            self.counters[k] = self.counters.get(k, 0) + n

    def tick(self, now):
        self.counters["syncs"] += 1
        for pool in self.store.items("virtualmachinepools"):
            if self.store.alive("virtualmachinepools", pool):
                self._sync_pool(pool, now)
        for vm in self.store.items("virtualmachines"):
            if self.store.alive("virtualmachines", vm):
                self._sync_vm(vm, now)
        self._collect_garbage(now)
        for pool in self.store.items("virtualmachinepools"):
            if self.store.alive("virtualmachinepools", pool):
                self._pool_status(pool, now)
        live = {vm["metadata"]["uid"]
                for vm in self.store.items("virtualmachines")}
        for uid in [u for u in self.vms if u not in live]:
            st = self.vms.pop(uid)
            self._stop_runner(st)
            # Kept a while: a test may judge what happened to a VM whose
            # life was shorter than its polling of /_sim/state.
            st.gone = now
            self.gone_vms.append(st)
            del self.gone_vms[:-GONE_VMS_KEPT]
        pools = {p["metadata"]["uid"]
                 for p in self.store.items("virtualmachinepools")}
        for k in [k for k in self.revisions if k[0] not in pools]:
            del self.revisions[k]
        for k in [k for k in self.pool_failures if k not in pools]:
            del self.pool_failures[k]

    # Helpers ---------------------------------------------------------------
    def _write(self, plural, obj):
        return self.store.write(plural, obj)

    def owned_vms(self, pool):
        uid = pool["metadata"]["uid"]
        return [vm for vm in self.store.items(
            "virtualmachines", pool["metadata"]["namespace"])
            if controller_uid(vm) == uid]

    def state_for(self, vm, now):
        uid = vm["metadata"]["uid"]
        st = self.vms.get(uid)
        if st is None:
            st = self.vms[uid] = VMState(vm, now)
        return st

    # The pool controller -----------------------------------------------------
    def _sync_pool(self, pool, now):
        meta = pool["metadata"]
        spec = pool.get("spec") or {}
        if meta.get("deletionTimestamp"):
            owned = self.owned_vms(pool)
            orphan = ORPHAN in (meta.get("finalizers") or [])
            for vm in owned:
                changed = remove_finalizer(vm, POOL_FINALIZER)
                if not orphan and not vm["metadata"].get("deletionTimestamp"):
                    self.store.mark_deleted("virtualmachines", vm, now)
                elif changed:
                    self._write("virtualmachines", vm)
            if not self.owned_vms(pool) and remove_finalizer(pool,
                                                             POOL_FINALIZER):
                self._write("virtualmachinepools", pool)
            return
        if add_finalizer(pool, POOL_FINALIZER):
            self._write("virtualmachinepools", pool)
        try:
            reqs = selector_from_label_selector(spec.get("selector"))
        except ValueError:
            reqs = None
        owned = self.owned_vms(pool)
        if reqs is not None:
            for vm in owned:
                if not selector_matches(reqs, vm["metadata"].get("labels")):
                    self._release(vm, meta["uid"])
            owned = self.owned_vms(pool)
        if spec.get("paused"):
            return
        replicas = spec.get("replicas", 1)
        diff = len(owned) - replicas
        scale_in = spec.get("scaleInStrategy") or {}
        if diff < 0:
            self._scale_out(pool, min(-diff, BURST_REPLICAS), now)
        elif diff == 0:
            if scale_in.get("unmanaged") is None:
                for vm in owned:
                    if vm["metadata"].get("deletionTimestamp") and \
                            remove_finalizer(vm, POOL_FINALIZER):
                        self._write("virtualmachines", vm)
            self._update(pool, owned, now)
        elif scale_in.get("unmanaged") is None and \
                scale_in.get("opportunistic") is None:
            self._proactive_scale_in(pool, owned, diff, now)

    def _release(self, vm, pool_uid):
        refs = [r for r in vm["metadata"].get("ownerReferences") or []
                if r.get("uid") != pool_uid]
        if refs:
            vm["metadata"]["ownerReferences"] = refs
        else:
            vm["metadata"].pop("ownerReferences", None)
        remove_finalizer(vm, POOL_FINALIZER)
        self._write("virtualmachines", vm)

    def _revision(self, pool):
        name = "%s-%d" % (pool["metadata"]["name"],
                          pool["metadata"].get("generation", 1))
        h = hashlib.sha256(canon(pool["spec"].get(
            "virtualMachineTemplate")).encode()).hexdigest()
        self.revisions[(pool["metadata"]["uid"], name)] = h
        return name, h

    def _vm_body(self, pool, index, revision):
        tmpl = pool["spec"]["virtualMachineTemplate"]
        tmeta = tmpl.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels[REVISION_LABEL] = revision
        spec = jcopy(tmpl.get("spec") or {})
        t = spec.setdefault("template", {})
        tl = t.setdefault("metadata", {}).setdefault("labels", {})
        tl[REVISION_LABEL] = revision
        ng = pool["spec"].get("nameGeneration") or {}
        if ng.get("appendIndexToSecretRefs"):
            for v in (t.get("spec") or {}).get("volumes") or []:
                if isinstance(v.get("secret"), dict) and \
                        v["secret"].get("secretName"):
                    v["secret"]["secretName"] += "-%d" % index
                for src in ("cloudInitNoCloud", "cloudInitConfigDrive"):
                    ci = v.get(src)
                    if isinstance(ci, dict):
                        for ref in ("secretRef", "networkDataSecretRef"):
                            if isinstance(ci.get(ref), dict) and \
                                    ci[ref].get("name"):
                                ci[ref]["name"] += "-%d" % index
        if ng.get("appendIndexToConfigMapRefs"):
            for v in (t.get("spec") or {}).get("volumes") or []:
                if isinstance(v.get("configMap"), dict) and \
                        v["configMap"].get("name"):
                    v["configMap"]["name"] += "-%d" % index
        meta = {"labels": labels}
        if tmeta.get("annotations"):
            meta["annotations"] = dict(tmeta["annotations"])
        return meta, spec

    def _scale_out(self, pool, n, now):
        meta = pool["metadata"]
        ns = meta["namespace"]
        revision, _ = self._revision(pool)
        taken = {vm["metadata"]["name"]
                 for vm in self.store.items("virtualmachines", ns)}
        i = 0
        while n > 0:
            name = "%s-%d" % (meta["name"], i)
            i += 1
            if name in taken:
                continue
            vmeta, spec = self._vm_body(pool, i - 1, revision)
            errs = validate_labels_annotations(vmeta, "metadata")
            if check_subdomain(name):
                errs.append(("metadata.name", "Invalid value: %s" % name))
            if errs:
                self._replica_failure(pool, 'VirtualMachine.kubevirt.io "%s" '
                                      "is invalid: %s" % (name, "; ".join(
                                          "%s: %s" % e for e in errs)), now)
                return
            vmeta.update(name=name, namespace=ns, finalizers=[POOL_FINALIZER],
                         ownerReferences=[{
                             "apiVersion": POOL_API,
                             "kind": "VirtualMachinePool",
                             "name": meta["name"], "uid": meta["uid"],
                             "controller": True, "blockOwnerDeletion": True}])
            vm = {"apiVersion": VM_API, "kind": "VirtualMachine",
                  "metadata": vmeta, "spec": spec}
            self.store.insert("virtualmachines", vm, now)
            self.state_for(vm, now).event(now, "created by pool")
            self.counters["vms_created"] += 1
            taken.add(name)
            n -= 1
        self._replica_failure(pool, None, now)

    def _replica_failure(self, pool, message, now):
        if message:
            self.pool_failures[pool["metadata"]["uid"]] = message
        else:
            self.pool_failures.pop(pool["metadata"]["uid"], None)

    def _proactive_scale_in(self, pool, owned, diff, now):
        deleting = [vm for vm in owned if vm["metadata"].get(
            "deletionTimestamp")]
        count = diff - len(deleting)
        if count <= 0:
            return
        cands = [vm for vm in owned if not vm["metadata"].get(
            "deletionTimestamp")]
        pol = (((pool["spec"].get("scaleInStrategy") or {}).get(
            "proactive") or {}).get("selectionPolicy") or {})
        sort = pol.get("sortPolicy") or "Random"

        def index(vm):
            return name_index(vm["metadata"]["name"])

        def created(vm):
            st = self.vms.get(vm["metadata"]["uid"])
            return st.created if st else 0

        if sort == "Random":
            self.random.shuffle(cands)
        elif sort == "AscendingOrder":
            cands.sort(key=index)
        elif sort == "DescendingOrder":
            cands.sort(key=index, reverse=True)
        elif sort == "Newest":
            cands.sort(key=created, reverse=True)
        elif sort == "Oldest":
            cands.sort(key=created)
        sels = pol.get("selectors") or {}
        if sels.get("labelSelector"):
            try:
                reqs = selector_from_label_selector(sels["labelSelector"])
                cands = [vm for vm in cands if selector_matches(reqs, (
                    (vm.get("spec") or {}).get("template") or {}).get(
                        "metadata", {}).get("labels"))]
            except ValueError:
                cands = []
        for vm in cands[:count]:
            self.state_for(vm, now).event(now, "deleted by proactive scale-in")
            self.counters["vms_deleted_by_pool"] += 1
            remove_finalizer(vm, POOL_FINALIZER)
            self.store.mark_deleted("virtualmachines", vm, now)

    def _update(self, pool, owned, now):
        us = pool["spec"].get("updateStrategy") or {}
        if us.get("unmanaged") is not None:
            return
        proactive = us.get("opportunistic") is None
        revision, want = self._revision(pool)
        pool_uid = pool["metadata"]["uid"]
        outdated = []
        for vm in owned:
            if vm["metadata"].get("deletionTimestamp"):
                continue
            rev = (vm["metadata"].get("labels") or {}).get(REVISION_LABEL)
            if self.revisions.get((pool_uid, rev)) != want:
                outdated.append(vm)
        if not outdated:
            return
        budget = len(owned)
        mu = pool["spec"].get("maxUnavailable")
        if isinstance(mu, int):
            budget = mu
        elif isinstance(mu, str) and mu.endswith("%"):
            budget = max(1, int(math.floor(
                pool["spec"].get("replicas", 1) * int(mu[:-1]) / 100.0)))
        unavailable = sum(1 for vm in owned
                          if not (vm.get("status") or {}).get("ready"))
        for vm in outdated:
            vmeta, spec = self._vm_body(pool, max(0, name_index(
                vm["metadata"]["name"])), revision)
            vm["metadata"]["labels"] = vmeta["labels"]
            if vmeta.get("annotations"):
                vm["metadata"]["annotations"] = vmeta["annotations"]
            else:
                vm["metadata"].pop("annotations", None)
            vm["spec"] = spec
            vm["metadata"]["generation"] = vm["metadata"].get(
                "generation", 1) + 1
            self._write("virtualmachines", vm)
            st = self.state_for(vm, now)
            st.event(now, "spec updated to revision %s" % revision)
            if proactive and unavailable < budget:
                vmi = self.store.get("virtualmachineinstances",
                                     vm["metadata"]["namespace"],
                                     vm["metadata"]["name"])
                if vmi is not None:
                    self._delete_vmi(vmi, st, now, "proactive update restart")
                    self.counters["vmi_restarts"] += 1
                    unavailable += 1

    def _pool_status(self, pool, now):
        owned = self.owned_vms(pool)
        spec = pool.get("spec") or {}
        try:
            sel = selector_string(selector_from_label_selector(
                spec.get("selector")))
        except ValueError:
            sel = ""
        old = pool.get("status") or {}
        conds = []
        prev = {c.get("type"): c for c in old.get("conditions") or []}

        def cond(t, reason, msg):
            c = {"type": t, "status": "True", "reason": reason,
                 "message": msg, "lastProbeTime": None,
                 "lastTransitionTime": rfc3339(now)}
            p = prev.get(t)
            if p and p.get("status") == "True":
                c["lastTransitionTime"] = p.get("lastTransitionTime")
            conds.append(c)

        if spec.get("paused"):
            cond("ReplicaPaused", "Paused", "Pool controller is paused")
        failure = self.pool_failures.get(pool["metadata"]["uid"])
        if failure:
            cond("ReplicaFailure", "FailedCreate", failure)
        status = {"replicas": len(owned),
                  "readyReplicas": sum(1 for vm in owned if (
                      vm.get("status") or {}).get("ready")),
                  "labelSelector": sel}
        if conds:
            status["conditions"] = conds
        if canon(status) != canon(old):
            pool["status"] = status
            self._write("virtualmachinepools", pool)

    # The VM controller and the guests ------------------------------------
    def _sync_vm(self, vm, now):
        meta = vm["metadata"]
        ns, name = meta["namespace"], meta["name"]
        st = self.state_for(vm, now)
        vmi = self.store.get("virtualmachineinstances", ns, name)
        if vmi is not None and controller_uid(vmi) != meta["uid"]:
            self._delete_vmi(vmi, None, now, "owner VM gone")
            vmi = None
        if meta.get("deletionTimestamp"):
            if vmi is not None:
                self._delete_vmi(vmi, st, now, "VM deleted")
                vmi = None
            if remove_finalizer(vm, VM_FINALIZER) and \
                    not self._write("virtualmachines", vm):
                return
            self._vm_status(vm, None, st, now)
            return
        if add_finalizer(vm, VM_FINALIZER):
            self._write("virtualmachines", vm)
        spec = vm.get("spec") or {}
        strategy = spec.get("runStrategy")
        if strategy is None:
            strategy = "Always" if spec.get("running") else "Halted"
        if vmi is not None:
            phase = (vmi.get("status") or {}).get("phase")
            if phase == "Succeeded":
                if strategy == "Always":
                    self._delete_vmi(vmi, st, now, "restart after power-off")
                    vmi = self._start_vmi(vm, st, now)
                elif strategy == "RerunOnFailure":
                    self._delete_vmi(vmi, st, now, "guest powered off")
                    st.halted = True
                    vmi = None
                elif strategy == "Halted":
                    self._delete_vmi(vmi, st, now, "halted")
                    vmi = None
            elif phase == "Failed":
                if strategy in ("Always", "RerunOnFailure"):
                    self._delete_vmi(vmi, st, now, "restart after failure")
                    vmi = self._start_vmi(vm, st, now)
                elif strategy == "Halted":
                    self._delete_vmi(vmi, st, now, "halted")
                    vmi = None
            elif strategy == "Halted":
                self._delete_vmi(vmi, st, now, "stopped (runStrategy Halted)")
                vmi = None
            else:
                self._progress_vmi(vm, vmi, st, now)
        else:
            start = strategy == "Always" or \
                (strategy == "RerunOnFailure" and not st.halted) or \
                (strategy == "Once" and st.vmis_started == 0)
            if start:
                vmi = self._start_vmi(vm, st, now)
        self._vm_status(vm, vmi, st, now)

    def _start_vmi(self, vm, st, now):
        meta = vm["metadata"]
        tmpl = (vm.get("spec") or {}).get("template") or {}
        tmeta = tmpl.get("metadata") or {}
        labels = dict(tmeta.get("labels") or {})
        labels["kubevirt.io/nodeName"] = "sim-node"
        vmi = {"apiVersion": VM_API, "kind": "VirtualMachineInstance",
               "metadata": {
                   "name": meta["name"], "namespace": meta["namespace"],
                   "labels": labels,
                   "annotations": dict(tmeta.get("annotations") or {}),
                   "ownerReferences": [{
                       "apiVersion": VM_API, "kind": "VirtualMachine",
                       "name": meta["name"], "uid": meta["uid"],
                       "controller": True, "blockOwnerDeletion": True}]},
               "spec": jcopy(tmpl.get("spec") or {}),
               "status": {"phase": "Scheduling", "phaseTransitionTimestamps":
                          [{"phase": "Scheduling",
                            "phaseTransitionTimestamp": rfc3339(now)}]}}
        self.store.insert("virtualmachineinstances", vmi, now)
        st.vmi_uid = vmi["metadata"]["uid"]
        st.vmis_started += 1
        st.boot_at = None
        st.userdata = None
        st.event(now, "VMI created")
        self._progress_vmi(vm, vmi, st, now)
        return vmi

    def _set_phase(self, vmi, phase, now):
        s = vmi.setdefault("status", {})
        s["phase"] = phase
        s.setdefault("phaseTransitionTimestamps", []).append(
            {"phase": phase, "phaseTransitionTimestamp": rfc3339(now)})
        if phase == "Running":
            s["conditions"] = [{"type": "Ready", "status": "True",
                                "lastProbeTime": None,
                                "lastTransitionTime": rfc3339(now)}]
            s["nodeName"] = "sim-node"
        elif phase in ("Succeeded", "Failed"):
            s["conditions"] = [{"type": "Ready", "status": "False",
                                "reason": "PodTerminating",
                                "lastProbeTime": None,
                                "lastTransitionTime": rfc3339(now)}]
        self._write("virtualmachineinstances", vmi)

    def _resolve_cloud_init(self, ns, vmi_spec):
        """Returns (userdata or None, problem or None), like the launcher
        pod mounting the cloud-init Secrets."""
        userdata = None
        for v in (vmi_spec or {}).get("volumes") or []:
            ci = v.get("cloudInitNoCloud") or v.get("cloudInitConfigDrive")
            if not isinstance(ci, dict):
                continue
            for ref, keys in (("secretRef", ("userdata", "userData")),
                              ("networkDataSecretRef",
                               ("networkdata", "networkData"))):
                r = ci.get(ref)
                if not isinstance(r, dict):
                    continue
                sname = r.get("name") or ""
                sec = self.store.get("secrets", ns, sname)
                if sec is None:
                    return None, ('MountVolume.SetUp failed for volume "%s" : '
                                  'secret "%s" not found' % (
                                      v.get("name"), sname))
                data = sec.get("data") or {}
                key = next((k for k in keys if k in data), None)
                if key is None:
                    return None, ('secret "%s" has no key %s: virt-launcher '
                                  'cannot build the cloud-init disk' % (
                                      sname, " or ".join(keys)))
                if ref == "secretRef":
                    userdata = base64.b64decode(data[key])
            if isinstance(ci.get("userData"), str):
                userdata = ci["userData"].encode()
            elif isinstance(ci.get("userDataBase64"), str):
                userdata = base64.b64decode(ci["userDataBase64"])
        return userdata, None

    def _progress_vmi(self, vm, vmi, st, now):
        phase = (vmi.get("status") or {}).get("phase")
        if phase == "Scheduling":
            userdata, problem = self._resolve_cloud_init(
                vm["metadata"]["namespace"], vmi.get("spec"))
            if problem:
                if st.waiting != problem:
                    st.event(now, "launcher stuck: " + problem)
                st.waiting = problem
                return
            st.waiting = None
            st.userdata = userdata
            st.boot_at = now + self.config["boot_delay_ms"] / 1000.0
            self._set_phase(vmi, "Scheduled", now)
            phase = "Scheduled"
        if phase == "Scheduled" and st.boot_at is not None:
            self.next_deadline = min(self.next_deadline, st.boot_at)
        if phase == "Scheduled" and st.boot_at is not None and \
                now >= st.boot_at:
            self._set_phase(vmi, "Running", now)
            st.booted = now
            st.boots += 1
            st.task = None
            st.event(now, "booted")
            self._start_runner(vmi, st, now)

    def _start_runner(self, vmi, st, now):
        st.runner_error = None
        st.runner_name = "%s-%s" % (st.name, st.uid[:8])
        if st.userdata is None:
            return  # no cloud-init: an idle guest
        try:
            cfg = parse_runner_config(st.userdata)
        except ValueError as e:
            st.runner_error = str(e)
            log(self.verbose, "VM %s/%s: %s; powering off"
                % (st.ns, st.name, e))
            self._guest_stop(vmi, st, now, "runner did not start: %s" % e,
                             "Succeeded")
            return
        st.runner_url = cfg["url"]
        st.runner = Runner(self, st, vmi["metadata"]["uid"], cfg)
        st.runner.start()

    def _stop_runner(self, st):
        if st is not None and st.runner is not None:
            st.runner.stop.set()
            st.runner = None

    def _delete_vmi(self, vmi, st, now, why):
        self.store.remove("virtualmachineinstances", vmi)
        if st is not None:
            if st.vmi_uid == vmi["metadata"]["uid"]:
                st.vmi_uid = None
                if st.task is not None:
                    # Its runner's job dies with it: what a provisioner
                    # must never cause.
                    self.counters["busy_vms_deleted"] += 1
                    st.event(now, "deleted while running task %s"
                             % st.task.get("id"))
                self._stop_runner(st)
            st.waiting = None
            st.event(now, "VMI deleted: " + why)

    def _guest_stop(self, vmi, st, now, why, phase):
        self._stop_runner(st)
        st.stopped = now
        st.last_poweroff = why
        st.event(now, ("power-off: " if phase == "Succeeded" else "crash: ")
                 + why)
        self.counters["poweroffs" if phase == "Succeeded" else "crashes"] += 1
        self._set_phase(vmi, phase, now)

    def _vm_status(self, vm, vmi, st, now):
        meta = vm["metadata"]
        spec = vm.get("spec") or {}
        phase = (vmi.get("status") or {}).get("phase") if vmi else None
        key = (phase, bool(meta.get("deletionTimestamp")), st.waiting,
               spec.get("runStrategy"), spec.get("running"),
               meta.get("generation"))
        if st.status_key == key and st.status_obj is vm.get("status") and \
                st.status_obj is not None:
            return  # nothing it depends on changed since it was written
        if meta.get("deletionTimestamp"):
            ps, reason, msg = "Terminating", "VMINotExists", \
                "VMI does not exist"
        elif vmi is None:
            ps, reason, msg = "Stopped", "VMINotExists", "VMI does not exist"
        elif phase in ("Pending", "Scheduling", "Scheduled"):
            ps = "Starting"
            if st.waiting:
                reason, msg = "FailedMount", st.waiting
            else:
                reason, msg = "GuestNotRunning", \
                    "Guest VM is not reported as running"
        elif phase == "Running":
            ps, reason, msg = "Running", "", ""
        else:
            ps, reason, msg = "Stopped", "VMINotRunning", \
                "VMI is in phase %s" % phase
        ready = phase == "Running" and not meta.get("deletionTimestamp")
        old = vm.get("status") or {}
        prev = next((c for c in old.get("conditions") or []
                     if c.get("type") == "Ready"), None)
        c = {"type": "Ready", "status": "True" if ready else "False",
             "lastProbeTime": None, "lastTransitionTime": rfc3339(now)}
        if reason:
            c["reason"] = reason
        if msg:
            c["message"] = msg
        if prev and prev.get("status") == c["status"]:
            c["lastTransitionTime"] = prev.get("lastTransitionTime")
        status = {"printableStatus": ps, "ready": ready,
                  "created": vmi is not None, "conditions": [c],
                  "runStrategy": spec.get("runStrategy") or (
                      "Always" if spec.get("running") else "Halted"),
                  "desiredGeneration": meta.get("generation", 1),
                  "observedGeneration": meta.get("generation", 1)}
        if canon(status) != canon(old):
            vm["status"] = status
            self._write("virtualmachines", vm)
        st.status_key = key
        st.status_obj = vm.get("status")

    # Garbage collector -------------------------------------------------------
    def _collect_garbage(self, now):
        """Background deletion of dependents whose owners are gone, and the
        foregroundDeletion / orphan finalizers."""
        live = set()
        for plural in RESOURCES:
            for o in self.store.items(plural):
                live.add(o["metadata"]["uid"])
        for plural in ("virtualmachines", "virtualmachineinstances",
                       "secrets"):
            for o in self.store.items(plural):
                m = o["metadata"]
                refs = m.get("ownerReferences") or []
                if refs and not m.get("deletionTimestamp") and \
                        not any(r.get("uid") in live for r in refs):
                    if plural == "virtualmachineinstances":
                        self._delete_vmi(o, self.vms.get(controller_uid(o)),
                                         now, "owner gone")
                    else:
                        self.store.mark_deleted(plural, o, now)
        for plural in RESOURCES:
            for o in self.store.items(plural):
                m = o["metadata"]
                fins = m.get("finalizers") or []
                if not m.get("deletionTimestamp") or not (
                        FOREGROUND in fins or ORPHAN in fins):
                    continue
                deps = [(p, d) for p in ("virtualmachines",
                                         "virtualmachineinstances", "secrets")
                        for d in self.store.items(p, m["namespace"])
                        if m["uid"] in owner_uids(d)]
                if ORPHAN in fins:
                    for p, d in deps:
                        refs = [r for r in d["metadata"]["ownerReferences"]
                                if r.get("uid") != m["uid"]]
                        if refs:
                            d["metadata"]["ownerReferences"] = refs
                        else:
                            del d["metadata"]["ownerReferences"]
                        self._write(p, d)
                    remove_finalizer(o, ORPHAN)
                    self._write(plural, o)
                    continue
                for p, d in deps:
                    if p == "virtualmachineinstances":
                        self._delete_vmi(d, self.vms.get(m["uid"]), now,
                                         "foreground deletion of its VM")
                    elif not d["metadata"].get("deletionTimestamp"):
                        self.store.mark_deleted(p, d, now)
                if not any(self.store.alive(p, d) for p, d in deps):
                    remove_finalizer(o, FOREGROUND)
                    self._write(plural, o)

    # Runner callbacks (any thread) ---------------------------------------
    def _vmi_by_uid(self, vmi_uid):
        for st in self.vms.values():
            if st.vmi_uid == vmi_uid:
                vmi = self.store.get("virtualmachineinstances", st.ns, st.name)
                if vmi is not None and vmi["metadata"]["uid"] == vmi_uid:
                    return vmi, st
        return None, None

    def runner_claimed(self, vmi_uid, task):
        with self.lock:
            now = time.time()
            vmi, st = self._vmi_by_uid(vmi_uid)
            if vmi is None:
                return False
            st.task = dict(task, claimed=now)
            st.event(now, "claimed task %s" % task.get("id"))
            self.counters["tasks_claimed"] += 1
            return True

    def runner_finished(self, vmi_uid, task, status):
        with self.lock:
            now = time.time()
            vmi, st = self._vmi_by_uid(vmi_uid)
            if status != 200:
                self.counters["finish_errors"] += 1
            else:
                self.counters["tasks_finished"] += 1
            if vmi is None:
                return
            st.tasks_done.append(task.get("id"))
            st.task = None
            st.event(now, "finished task %s (%s)" % (task.get("id"), status))
            if (vmi.get("status") or {}).get("phase") == "Running":
                self._guest_stop(vmi, st, now, "single-task runner finished "
                                 "task %s" % task.get("id"), "Succeeded")
            self.kick()

    def runner_exit(self, vmi_uid, why, error=False):
        with self.lock:
            now = time.time()
            vmi, st = self._vmi_by_uid(vmi_uid)
            if vmi is None:
                return
            if error:
                st.runner_error = why
                log(self.verbose, "VM %s/%s: %s; powering off"
                    % (st.ns, st.name, why))
            if (vmi.get("status") or {}).get("phase") == "Running":
                self._guest_stop(vmi, st, now, why, "Succeeded")
            self.kick()

    # Control operations (hold the lock) --------------------------------------
    def guest_action(self, ns, name, action):
        now = time.time()
        vm = self.store.get("virtualmachines", ns, name)
        if vm is None:
            raise ApiError(404, "NotFound", 'VM %s/%s not found' % (ns, name))
        vmi = self.store.get("virtualmachineinstances", ns, name)
        st = self.state_for(vm, now)
        phase = (vmi.get("status") or {}).get("phase") if vmi else None
        if action == "poweroff":
            if phase != "Running":
                raise ApiError(409, "Conflict", "VM %s/%s is not running "
                               "(VMI phase %s)" % (ns, name, phase))
            self._guest_stop(vmi, st, now, "guest powered off (control API)",
                             "Succeeded")
        else:
            if vmi is None or phase in ("Succeeded", "Failed"):
                raise ApiError(409, "Conflict", "VM %s/%s has no live VMI "
                               "(phase %s)" % (ns, name, phase))
            self._guest_stop(vmi, st, now, "VMI crashed (control API)",
                             "Failed")
        self._sync_vm(vm, now)
        return {"vm": name, "action": action}

    def state(self):
        now = time.time()
        pools = []
        for p in self.store.items("virtualmachinepools"):
            m = p["metadata"]
            spec = p.get("spec") or {}
            pools.append(dict(
                namespace=m["namespace"], name=m["name"], uid=m["uid"],
                replicas=spec.get("replicas"), status=p.get("status") or {},
                generation=m.get("generation"),
                resourceVersion=m["resourceVersion"],
                deletionTimestamp=m.get("deletionTimestamp"),
                finalizers=m.get("finalizers") or [],
                scaleInStrategy=spec.get("scaleInStrategy"),
                updateStrategy=spec.get("updateStrategy"),
                paused=bool(spec.get("paused")),
                replicaFailure=self.pool_failures.get(m["uid"])))
        vms = []
        for vm in self.store.items("virtualmachines"):
            m = vm["metadata"]
            st = self.vms.get(m["uid"])
            d = dict(namespace=m["namespace"], name=m["name"], uid=m["uid"],
                     printableStatus=(vm.get("status") or {}).get(
                         "printableStatus"),
                     ready=bool((vm.get("status") or {}).get("ready")),
                     deletionTimestamp=m.get("deletionTimestamp"),
                     finalizers=m.get("finalizers") or [],
                     owner=controller_uid(vm),
                     resourceVersion=m["resourceVersion"],
                     runStrategy=(vm.get("spec") or {}).get("runStrategy"),
                     revision=(m.get("labels") or {}).get(REVISION_LABEL))
            d.update(st.view() if st else {})
            vms.append(d)
        vmis = [dict(namespace=o["metadata"]["namespace"],
                     name=o["metadata"]["name"], uid=o["metadata"]["uid"],
                     phase=(o.get("status") or {}).get("phase"),
                     vm_uid=controller_uid(o))
                for o in self.store.items("virtualmachineinstances")]
        secrets = [dict(namespace=o["metadata"]["namespace"],
                        name=o["metadata"]["name"])
                   for o in self.store.items("secrets")]
        leases = [dict(namespace=o["metadata"]["namespace"],
                       name=o["metadata"]["name"],
                       resourceVersion=o["metadata"]["resourceVersion"],
                       spec=jcopy(o.get("spec") or {}))
                  for o in self.store.items("leases")]
        events = [dict(namespace=o["metadata"]["namespace"],
                       name=o["metadata"]["name"], type=o.get("type"),
                       reason=o.get("reason"), action=o.get("action"),
                       note=o.get("note"), regarding=o.get("regarding"),
                       series=o.get("series"),
                       reportingController=o.get("reportingController"),
                       reportingInstance=o.get("reportingInstance"),
                       eventTime=o.get("eventTime"))
                  for o in self.store.items("events")]
        gone = [dict(st.view(), namespace=st.ns, name=st.name, uid=st.uid)
                for st in self.gone_vms if now - st.gone < GONE_VMS_SHOWN_S]
        return dict(time=now, resourceVersion=str(self.store.rv),
                    config=dict(self.config, circleci=self.circle_url),
                    counters=dict(self.counters), pools=pools, vms=vms,
                    vmis=vmis, secrets=secrets, leases=leases,
                    events=events, deleted_vms=gone)
