#!/usr/bin/python3
"""Kubernetes API simulator with a KubeVirt VirtualMachinePool model.

Serves, over HTTPS only, the slice of kube-apiserver + KubeVirt that the
actuator uses (Secrets, VirtualMachinePools with /scale, VirtualMachines,
VirtualMachineInstances), and plays KubeVirt's pool and VM controllers and
the guests (research/kubevirt.md §2) in a background thread: VMs are created
for the pool, boot after a delay, run circleci-runner in single-task mode
against the CircleCI simulator, power off after their job, and are kept or
replaced exactly as KubeVirt v1.8 does, including the opportunistic
scale-in finalizer trap (§2.3).  Object model: kube_model.py.

Usage:
  kube_sim.py --listen 127.0.0.1:0 --port-file F --tls-cert C --tls-key K
              --token TOKEN [--token-file F] [--client-ca CA]
              [--circleci URL [--circleci-ca CA]] [--boot-delay-ms 500]
              [--claim-interval-ms 100] [--tick-ms 50] [--crd PATH]
              [--service-account NAME] [--seed N] [--verbose]

Authentication (every path outside /_sim/): "Authorization: Bearer T" where
T is --token or the current content of --token-file (re-read on every
request, so a test can rotate it), or a client certificate that verifies
against --client-ca (requested, not required).  A certificate wins over a
token.  Otherwise 401 with a Status body.  The journal records the identity
as auth = "cert" | "token" | "none".

Served API (Kubernetes conventions; errors are v1 Status objects with reason
NotFound, AlreadyExists, Conflict, Forbidden, Invalid, Unauthorized,
BadRequest, MethodNotAllowed, UnsupportedMediaType, InternalError, ...):
  /api/v1/namespaces/{ns}/secrets[/{name}]
      GET LIST POST PUT PATCH DELETE
  /apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]
      GET LIST POST PUT PATCH DELETE; a PUT needs metadata.resourceVersion
      (the Lease strategy allows no unconditional update); spec checked as
      kube-apiserver does (leaseDurationSeconds > 0, leaseTransitions >= 0,
      preferredHolder only with strategy, MicroTimes that parse)
  /apis/events.k8s.io/v1/namespaces/{ns}/events[/{name}]
      GET LIST POST PUT PATCH DELETE; checked as events.k8s.io/v1 events
      are (eventTime, reportingController (a qualified name),
      reportingInstance, action and reason required and at most 128 bytes,
      note at most 1024, type Normal or Warning, series.count >= 2, the
      deprecated fields unset, regarding.namespace; on update the fields
      but series are immutable)
  /apis/pool.kubevirt.io/{v1beta1|v1alpha1}/namespaces/{ns}/
      virtualmachinepools[/{name}]           GET LIST POST PUT PATCH DELETE
      virtualmachinepools/{name}/scale       GET PUT PATCH (autoscaling/v1)
      virtualmachinepools/{name}/status      GET PUT PATCH
  /apis/kubevirt.io/v1/namespaces/{ns}/
      virtualmachines[/{name}]               GET LIST POST PUT PATCH DELETE
      virtualmachines/{name}/status          GET PUT PATCH
      virtualmachineinstances[/{name}]       GET LIST
  The same collections without /namespaces/{ns} list all namespaces.
  GET /version, GET /apis/{group}/{version} (discovery).
  - Objects carry metadata.uid, resourceVersion (one global counter, a
    string), creationTimestamp, generation (custom resources; bumped on any
    change outside metadata and status, and when deletion starts).
  - LIST: {"kind": "<Kind>List", "apiVersion", "metadata": {"resourceVersion"},
    "items"}; labelSelector (k=v, k==v, k!=v, k, !k, k in (a,b),
    k notin (a,b); comma = AND), fieldSelector (metadata.name,
    metadata.namespace), limit + continue.  watch=true: 400 (not modelled).
  - PATCH: application/merge-patch+json and application/json-patch+json
    (add, remove, replace, move, copy, test; a failed test is 422);
    strategic-merge-patch is 415 for custom resources and a merge patch for
    Secrets; apply-patch (server-side apply) is 415.
  - PUT/PATCH whose resulting metadata.resourceVersion differs from the
    stored one: 409 Conflict.  PUT of a custom resource without
    metadata.resourceVersion: 422 (custom resources forbid unconditional
    updates).  PUT/PATCH with a different metadata.uid: 409.  POST of an
    existing name: 409 AlreadyExists; POST with metadata.resourceVersion
    set: 500 "resourceVersion should not be set on objects to be created"
    (kube-apiserver's answer).  A missing object: 404 NotFound.  A
    resourceVersion only changes when the object does (no-op writes keep
    it).  Unknown metadata fields (and unknown top-level Secret fields)
    are rejected with 422 rather than dropped.
  - DELETE takes a DeleteOptions body (or query): preconditions.uid /
    preconditions.resourceVersion (mismatch: 409 Conflict "Precondition
    failed: ..."), propagationPolicy Background | Foreground (adds the
    foregroundDeletion finalizer) | Orphan (adds orphan), dryRun=All.
    Objects with finalizers get deletionTimestamp and stay until the last
    finalizer goes; no new finalizers may be added to them (422).
  - Status subresources: writes to the main resource keep the stored status.
  - Secrets: data values must be base64; stringData is merged into data and
    dropped, as the API server does; keys are checked; 1 MiB limit;
    immutable secrets refuse data changes.
  - VirtualMachinePool writes (POST/PUT/PATCH, v1alpha1 and v1beta1 share
    storage, objects come back with the apiVersion of the path) are checked
    against the CRD's openAPIV3Schema (jsonschema, compiled once at start)
    after the API server's normalisation (non-nullable nulls dropped,
    defaults applied, the CRD's CEL rules on containerPath), and then by
    the rules of KubeVirt's virtualmachinepool-validator webhook
    (virtualMachineTemplate present; runStrategy set and valid; every disk
    has a volume of its name, volumes need no disk; interfaces and
    networks pair up; per cloud-init volume at most one user-data and one
    network-data source and at least one of them, inline userData /
    decoded userDataBase64 <= 2048 bytes; selector matches the template's
    labels; selector immutable; at most one of unmanaged/opportunistic/
    proactive per strategy; maxUnavailable > 0 or 1%-100%; template label
    syntax).  Unknown fields where the schema is structural (no
    additionalProperties, no x-kubernetes-preserve-unknown-fields) are
    REJECTED with 422, where a real API server would silently prune them:
    the product must never send a field the server would drop.  Failures
    are 422 Invalid whose message names every field path.
  - VirtualMachine writes are checked with the VM admitter's rules above.

Controllers (every --tick-ms, and right after each API write; a pass is
skipped when no object changed since the previous one and no boot is due,
so an idle simulator costs next to no CPU):
  - Pool: finalizer pool.kubevirt.io/finalizer on the pool; owned VMs (by
    controller ownerReference uid, stopped and terminating included) named
    <pool>-<i>, lowest index not used by any VM in the namespace, with the
    finalizer, label kubevirt.io/vm-pool-revision-name, the template's labels
    and annotations.  diff = owned - replicas (absent replicas = 1):
    < 0 creates VMs (250 per sync); == 0 removes the pool finalizer from
    owned VMs with a deletionTimestamp (unless scaleInStrategy.unmanaged),
    then updates outdated VMs (updateStrategy opportunistic: spec only;
    proactive, the default: spec and a VMI restart within maxUnavailable;
    unmanaged: nothing); > 0 with scaleInStrategy.proactive (the default,
    sortPolicy Random unless set) deletes surplus non-deleting VMs and
    strips their finalizer, with opportunistic/unmanaged does nothing (a VM
    deleted now stays Terminating: the finalizer trap).  paused skips
    scaling and updates.  Owned VMs whose labels stop matching the selector
    are released.  Deleting the pool deletes its VMs, then the pool.
    status: replicas, readyReplicas, labelSelector, conditions
    (ReplicaPaused, ReplicaFailure when a VM cannot be created).
  - VM: finalizer kubevirt.io/virtualMachineControllerFinalize while alive;
    runStrategy Always / RerunOnFailure / Once start a VMI (phase
    Scheduling -> Scheduled -> Running after --boot-delay-ms); Manual and
    Halted do not.  The launcher needs every cloud-init Secret it refers to
    (key userdata/userData): while one is missing the VMI stays Scheduling,
    the VM Starting with Ready condition reason FailedMount naming the
    Secret, retried every tick.  Guest power-off (VMI Succeeded): Always
    boots a new VMI, RerunOnFailure deletes it and the VM stays Stopped
    (never restarted), Once/Manual keep the Succeeded VMI.  VMI Failed:
    Always/RerunOnFailure restart it.  A deleted VM loses its VMI at once,
    shows Terminating and keeps its other finalizers.  VM status:
    printableStatus, ready, created, runStrategy, conditions[Ready].
  - Garbage collector: dependents of vanished owners are deleted;
    foregroundDeletion and orphan finalizers are honoured.
  - Guest runner: the user data must start with #cloud-config and hold a
    write_files entry whose path ends with /circleci-runner-config.yaml
    (encoding text/plain, b64 or gz+b64) with api.auth_token, optional
    api.url, runner.mode (must be single-task) and optional
    runner.idle_timeout (Go duration).  A config that fails these checks
    makes the guest power off at boot with runner_error set in the state.
    With --circleci, the runner POSTs {circleci}/_sim/claim {"token",
    "runner": "<vm>-<first 8 of vm uid>", "hostname": <vm>} every
    claim_interval_ms: 401 -> the runner exits and the guest powers off
    (a bad token is a boot loop); a task -> runs duration_ms, POSTs
    /_sim/finish {"task": id}, powers off.  idle_timeout without a claim
    since boot -> powers off (also without --circleci).  HTTP calls are
    made outside the model lock.  api.url is recorded (runner_url in the
    state) but the calls always go to --circleci.

Control API (no auth, not journalled, JSON):
  GET    /_sim/state    {"time", "resourceVersion", "config", "counters"
                         (ticks = controller passes, syncs = passes that
                         did work, claims, tasks_claimed, tasks_finished,
                         poweroffs, crashes, vms_created,
                         vms_deleted_by_pool, vmi_restarts,
                         busy_vms_deleted (VMIs deleted while their runner
                         ran a task), ...),
                         "pools": [{namespace, name, uid, replicas, status,
                          generation, resourceVersion, deletionTimestamp,
                          finalizers, scaleInStrategy, updateStrategy, paused,
                          replicaFailure}],
                         "vms": [{namespace, name, uid, printableStatus, ready,
                          deletionTimestamp, finalizers, owner,
                          resourceVersion,
                          runStrategy, revision, task (running task id),
                          tasks_done, created, booted, stopped (epoch floats),
                          boots, halted, waiting, runner_error, runner_name,
                          runner_url, last_poweroff, history}],
                         "vmis": [{namespace, name, uid, phase, vm_uid}],
                         "secrets": [{namespace, name}]   (never secret data),
                         "leases": [{namespace, name, resourceVersion,
                          spec}],
                         "events": [{namespace, name, type, reason, action,
                          note, regarding, series, reportingController,
                          reportingInstance, eventTime}],
                         "deleted_vms": [VMs deleted in the last 30 s: uid,
                          name, namespace and the simulator's own fields
                          above (history...), as they were at the end]}
  GET    /_sim/requests[?since=EPOCH]  {"requests": [{t, method, path, query,
                          content_type, body (parsed JSON, else text), status,
                          auth, user, verb, endpoint, key, fault?}]}
  DELETE /_sim/requests                clears the journal
  POST   /_sim/faults   a simhttp.Fault spec: method, path (regex on the URL
                         path), endpoint ("<plural>" or "<plural>/<sub>", e.g.
                         "virtualmachinepools/scale", or "*"), key (object
                         name), status, count (-1 = until cleared), delay_ms,
                         drop, body, retry_after, truncate, oversize,
                         malformed, content_type  -> {"id": N}
                         Faults are matched after authentication.  A status
                         without body answers a proper Status for that code
                         (403 names user, verb, resource, group and namespace
                         like kube-apiserver's RBAC denial; 409 a Conflict;
                         404 NotFound; 422 Invalid; 429 TooManyRequests;
                         500 InternalError; 503/504 ...).  delay_ms alone
                         delays and then serves normally.
  GET    /_sim/faults   {"faults": [{id, spec, remaining, fired}]}
  DELETE /_sim/faults   clears all switches
  POST   /_sim/vm/{ns}/{name}/poweroff  the guest powers off now (409 unless
                         its VMI is Running; 404 for an unknown VM)
  POST   /_sim/vm/{ns}/{name}/crash     the VMI fails (phase Failed)
                         Both answer {"vm": name, "action": ...}.
  GET    /_sim/config, POST /_sim/config {"boot_delay_ms", "claim_interval_ms",
                         "tick_ms"} (any subset) -> the whole config
  GET    /_sim/health   {"ok": true}
"""

import argparse
import base64
import binascii
import hmac
import itertools
import json
import os
import random
import re
import ssl
import string
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simhttp  # noqa: E402
from simhttp import SimError  # noqa: E402
import kube_model as km  # noqa: E402
from kube_model import ApiError, RESOURCES, jcopy, canon  # noqa: E402

MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"

PATH_RE = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<res>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
SUBRESOURCES = {"virtualmachinepools": ("scale", "status"),
                "virtualmachines": ("status",)}
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}
OBJECT_META = {"name", "generateName", "namespace", "selfLink", "uid",
               "resourceVersion", "generation", "creationTimestamp",
               "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
               "annotations", "ownerReferences", "finalizers",
               "managedFields"}
SECRET_FIELDS = {"apiVersion", "kind", "metadata", "data", "stringData",
                 "type", "immutable"}


class Route:
    def __init__(self, res, version, ns, name, sub, verb):
        self.res = res
        self.version = version
        self.ns = ns
        self.name = name
        self.sub = sub
        self.verb = verb

    @property
    def endpoint(self):
        return self.res.plural + ("/" + self.sub if self.sub else "")


def bad_request(msg):
    return ApiError(400, "BadRequest", msg)


def media_type(ctype):
    return (ctype or "").split(";", 1)[0].strip().lower()


# ---------------------------------------------------------------------------
# API verbs on the store (called with the model lock held)


class Api:
    def __init__(self, model):
        self.model = model
        self.store = model.store

    # Views ---------------------------------------------------------------
    def view(self, r, obj, in_list=False):
        o = jcopy(obj)
        if r.res.crd:
            o["apiVersion"] = r.res.api_version(r.version)
            o["kind"] = r.res.kind
        elif in_list:
            o.pop("apiVersion", None)
            o.pop("kind", None)
        else:
            o["apiVersion"], o["kind"] = r.res.api_version(r.version), \
                r.res.kind
        return o

    def need(self, r):
        obj = self.store.get(r.res.plural, r.ns, r.name)
        if obj is None:
            raise r.res.not_found(r.name)
        return obj

    def get(self, r):
        obj = self.need(r)
        if r.sub == "scale":
            return 200, self.scale_view(obj)
        return 200, self.view(r, obj)

    def list(self, r, query):
        try:
            reqs = km.parse_label_selector(q1(query, "labelSelector"))
        except ValueError as e:
            raise bad_request("unable to parse requirement: %s" % e)
        fields = []
        for part in (q1(query, "fieldSelector") or "").split(","):
            part = part.strip()
            if not part:
                continue
            m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
            if not m or m.group(1) not in ("metadata.name",
                                           "metadata.namespace"):
                raise bad_request('"%s" is not a known field selector: only '
                                  '"metadata.name", "metadata.namespace"'
                                  % part)
            fields.append((m.group(1).split(".")[1], m.group(2) != "!=",
                           m.group(3)))
        items = []
        for o in sorted(self.store.items(r.res.plural, r.ns), key=lambda o: (
                o["metadata"]["namespace"], o["metadata"]["name"])):
            meta = o["metadata"]
            if not km.selector_matches(reqs, meta.get("labels")):
                continue
            if any((meta.get(f) == v) != eq for f, eq, v in fields):
                continue
            items.append(o)
        out_meta = {"resourceVersion": str(self.store.rv)}
        cont = q1(query, "continue")
        if cont:
            try:
                after = json.loads(base64.urlsafe_b64decode(cont))
                items = [o for o in items if [o["metadata"]["namespace"],
                                              o["metadata"]["name"]] > after]
            except (ValueError, binascii.Error, TypeError):
                raise ApiError(410, "Expired", "The provided continue "
                               "parameter is too old to display a consistent "
                               "list result.")
        limit = q1(query, "limit")
        if limit:
            try:
                limit = int(limit)
            except ValueError:
                raise bad_request("limit must be an integer")
            if 0 < limit < len(items):
                last = items[limit - 1]["metadata"]
                out_meta["continue"] = base64.urlsafe_b64encode(json.dumps(
                    [last["namespace"], last["name"]]).encode()).decode()
                out_meta["remainingItemCount"] = len(items) - limit
                items = items[:limit]
        return 200, {"kind": r.res.kind + "List",
                     "apiVersion": r.res.api_version(r.version),
                     "metadata": out_meta,
                     "items": [self.view(r, o, in_list=True) for o in items]}

    # Admission -------------------------------------------------------------
    def admit(self, r, obj, old):
        """Normalises obj in place; raises 422 Invalid with field paths."""
        res = r.res
        meta = obj["metadata"]
        name = meta.get("name", "")
        errs = []
        if old is None:
            e = km.check_subdomain(name)
            if e:
                errs.append(("metadata.name", 'Invalid value: "%s": %s'
                             % (name, e)))
        errs += km.validate_labels_annotations(meta, "metadata")
        for k in sorted(set(meta) - OBJECT_META):
            errs.append(("metadata." + k, 'Forbidden: unknown field '
                         '"metadata.%s" (the API server would drop it)' % k))
        if res.plural == "secrets":
            for k in sorted(set(obj) - SECRET_FIELDS):
                errs.append((k, 'Forbidden: unknown field "%s" (the API '
                             'server would drop it)' % k))
        elif res.plural in ("leases", "events"):
            decode, more = km.lease_errors(obj) \
                if res.plural == "leases" else \
                km.event_errors(obj, meta.get("namespace"), old)
            if decode:
                raise bad_request("%s in version \"%s\" cannot be handled "
                                  "as a %s: %s" % (
                                      res.kind, res.api_version(), res.kind,
                                      decode))
            errs += more
        fins = meta.get("finalizers")
        if fins is not None and (not isinstance(fins, list) or not all(
                isinstance(f, str) for f in fins)):
            errs.append(("metadata.finalizers", "Invalid value: must be a "
                         "list of strings"))
        if old is not None and old["metadata"].get("deletionTimestamp"):
            new = [f for f in fins or [] if f not in (
                old["metadata"].get("finalizers") or [])]
            if new:
                errs.append(("metadata.finalizers", "Forbidden: no new "
                             "finalizers can be added if the object is being "
                             "deleted, found new finalizers %s"
                             % json.dumps(new)))
        if errs:
            raise res.invalid(name, errs)
        if res.plural == "secrets":
            self.admit_secret(res, obj, old)
        elif res.plural == "virtualmachinepools":
            schema = self.model.schema
            errs = schema.normalize(obj)
            errs += schema.schema_errors(obj)
            if errs:
                raise res.invalid(name, errs)
            errs = km.pool_webhook_errors(obj, old)
            if errs:
                raise res.invalid(name, errs, prefix='admission webhook '
                                  '"virtualmachinepool-validator.kubevirt.io"'
                                  ' denied the request: ')
        elif res.plural == "virtualmachines":
            errs = km.vm_spec_errors(obj.get("spec"), "spec")
            if errs:
                raise res.invalid(name, errs, prefix='admission webhook '
                                  '"virtualmachine-validator.kubevirt.io" '
                                  'denied the request: ')

    def admit_secret(self, res, obj, old):
        name = obj["metadata"].get("name", "")
        data = obj.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise bad_request("Secret in version \"v1\" cannot be handled as "
                              "a Secret: data must be a map")
        sd = obj.pop("stringData", None)
        if sd is not None and not isinstance(sd, dict):
            raise bad_request("Secret in version \"v1\" cannot be handled as "
                              "a Secret: stringData must be a map")
        errs = []
        size = 0
        for k, v in data.items():
            if not isinstance(v, str):
                raise bad_request('Secret in version "v1" cannot be handled '
                                  'as a Secret: data[%s] must be a base64 '
                                  'string' % k)
            try:
                size += len(base64.b64decode(v, validate=True))
            except binascii.Error as e:
                raise bad_request('Secret in version "v1" cannot be handled '
                                  'as a Secret: illegal base64 data in '
                                  'data[%s]: %s' % (k, e))
        for k, v in (sd or {}).items():
            if not isinstance(v, str):
                raise bad_request('Secret in version "v1" cannot be handled '
                                  'as a Secret: stringData[%s] must be a '
                                  'string' % k)
            data[k] = base64.b64encode(v.encode()).decode()
        for k in data:
            if not km.SECRET_KEY.match(k) or len(k) > 253:
                errs.append(("data[%s]" % k, 'Invalid value: "%s": a valid '
                             "config key must consist of alphanumeric "
                             "characters, '-', '_' or '.'" % k))
        size = sum(len(base64.b64decode(v)) for v in data.values())
        if size > km.SECRET_MAX:
            errs.append(("data", "Too long: must have at most %d bytes"
                         % km.SECRET_MAX))
        if data:
            obj["data"] = data
        else:
            obj.pop("data", None)
        obj.setdefault("type", "Opaque")
        if old is not None:
            if obj.get("type") != old.get("type"):
                errs.append(("type", 'Invalid value: "%s": field is immutable'
                             % obj.get("type")))
            if old.get("immutable"):
                if canon(obj.get("data")) != canon(old.get("data")):
                    errs.append(("data", "Forbidden: field is immutable when "
                                 "`immutable` is set"))
                if obj.get("immutable") is not True:
                    errs.append(("immutable", "Forbidden: field is immutable "
                                 "when `immutable` is set"))
        if errs:
            raise res.invalid(name, errs)

    # Writes ------------------------------------------------------------------
    def body_object(self, r, body, what="object"):
        if not isinstance(body, dict):
            raise bad_request("the body of the request is not a JSON %s"
                              % what)
        meta = body.get("metadata", {})
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        body["metadata"] = meta
        want = r.res.api_version(r.version)
        if body.get("apiVersion") not in (None, want):
            raise bad_request("the API version in the data (%s) does not "
                              "match the expected API version (%s)"
                              % (body.get("apiVersion"), want))
        if body.get("kind") not in (None, r.res.kind):
            raise bad_request("the kind in the data (%s) does not match the "
                              "expected kind (%s)" % (body.get("kind"),
                                                      r.res.kind))
        if meta.get("namespace") not in (None, "", r.ns):
            raise bad_request("the namespace of the provided object does not "
                              "match the namespace sent on the request")
        return body

    def create(self, r, body, dry_run):
        if r.name:
            raise ApiError(405, "MethodNotAllowed", "the server does not "
                           "allow this method on the requested resource")
        obj = self.body_object(r, jcopy(body))
        meta = obj["metadata"]
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + "".join(
                    random.choice(string.ascii_lowercase + string.digits)
                    for _ in range(5))
            else:
                raise r.res.invalid("", [("metadata.name", "Required value: "
                                          "name or generateName is required")])
        name = meta["name"]
        meta["namespace"] = r.ns
        if self.store.get(r.res.plural, r.ns, name) is not None:
            raise r.res.already_exists(name)
        if meta.get("resourceVersion"):
            raise ApiError(500, "InternalError", "Internal error occurred: "
                           "resourceVersion should not be set on objects to "
                           "be created")
        if r.res.status_sub:
            obj.pop("status", None)
        self.admit(r, obj, None)
        obj["apiVersion"], obj["kind"] = r.res.api_version(), r.res.kind
        if dry_run:
            obj["metadata"].update(uid=str(uuid.uuid4()),
                                   creationTimestamp=km.rfc3339(time.time()))
            return 201, self.view(r, obj)
        self.store.insert(r.res.plural, obj, time.time())
        self.model.kick()
        return 201, self.view(r, obj)

    def commit_update(self, r, old, new, dry_run):
        """new: the complete desired object.  Enforces uid/resourceVersion,
        carries server-owned fields, admits and stores."""
        res = r.res
        meta = new["metadata"]
        om = old["metadata"]
        if meta.get("name") not in (None, r.name):
            raise bad_request("the name of the object (%s) does not match "
                              "the name on the URL (%s)" % (meta.get("name"),
                                                            r.name))
        if meta.get("uid") not in (None, "", om["uid"]):
            raise res.conflict(r.name, "Precondition failed: UID in "
                               "precondition: %s, UID in object meta: %s"
                               % (meta["uid"], om["uid"]))
        rv = meta.get("resourceVersion")
        if rv not in (None, "") and rv != om["resourceVersion"]:
            raise res.conflict(r.name)
        for k in ("name", "namespace", "uid", "creationTimestamp",
                  "deletionTimestamp", "deletionGracePeriodSeconds",
                  "generation", "resourceVersion"):
            if k in om:
                meta[k] = om[k]
            else:
                meta.pop(k, None)
        new["apiVersion"], new["kind"] = res.api_version(), res.kind
        if r.sub == "status":
            status = new.get("status")
            new = jcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif res.status_sub:
            if "status" in old:
                new["status"] = jcopy(old["status"])
            else:
                new.pop("status", None)
        self.admit(r, new, old)
        if res.crd:
            strip = ("metadata", "status", "apiVersion", "kind")
            if canon({k: v for k, v in new.items() if k not in strip}) != \
                    canon({k: v for k, v in old.items() if k not in strip}):
                meta["generation"] = om.get("generation", 1) + 1
        if canon(new) == canon(old):
            return 200, self.view(r, old)  # no-op: no new resourceVersion
        if dry_run:
            return 200, self.view(r, new)
        self.store.write(res.plural, new, replace=True)
        self.model.kick()
        return 200, self.view(r, new)

    def update(self, r, body, dry_run):
        old = self.need(r)
        if r.sub == "scale":
            return self.scale_update(r, old, body, dry_run, put=True)
        new = self.body_object(r, jcopy(body))
        if r.res.conditional and r.sub is None and not new["metadata"].get(
                "resourceVersion"):
            raise r.res.invalid(r.name, [(
                "metadata.resourceVersion", "Invalid value: 0x0: must be "
                "specified for an update")])
        return self.commit_update(r, old, new, dry_run)

    def apply_patch(self, r, doc, raw, ctype):
        mt = media_type(ctype)
        if mt == STRATEGIC and r.res.crd:
            mt = None
        if mt in (MERGE, STRATEGIC):
            patch = simhttp.json_body(raw)
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            return km.merge_patch(doc, patch)
        if mt == JSONPATCH:
            ops = simhttp.json_body(raw)
            if not isinstance(ops, list):
                raise bad_request("json: cannot unmarshal object into Go "
                                  "value of type jsonpatch.Patch")
            try:
                return km.json_patch(doc, ops)
            except km.PatchError as e:
                raise ApiError(422, "Invalid", str(e), {
                    "causes": [{"reason": "FieldValueInvalid",
                                "message": str(e)}]})
        accepted = [JSONPATCH, MERGE] + ([] if r.res.crd else [STRATEGIC])
        raise ApiError(415, "UnsupportedMediaType", "the body of the request "
                       "was in an unknown format - accepted media types "
                       "include: %s" % ", ".join(accepted))

    def patch(self, r, raw, ctype, dry_run):
        old = self.need(r)
        if r.sub == "scale":
            new = self.apply_patch(r, self.scale_view(old), raw, ctype)
            return self.scale_update(r, old, new, dry_run, put=False)
        new = self.apply_patch(r, self.view(r, old), raw, ctype)
        new = self.body_object(r, new, "object after patching")
        return self.commit_update(r, old, new, dry_run)

    # Scale -------------------------------------------------------------------
    def scale_view(self, pool):
        spec = pool.get("spec") or {}
        if "replicas" not in spec:
            raise ApiError(500, "InternalError", "Internal error occurred: "
                           ".spec.replicas accessor error: not found")
        m = pool["metadata"]
        status = pool.get("status") or {}
        s = {"replicas": status.get("replicas", 0)}
        if status.get("labelSelector"):
            s["selector"] = status["labelSelector"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": m["name"], "namespace": m["namespace"],
                             "uid": m["uid"],
                             "resourceVersion": m["resourceVersion"],
                             "creationTimestamp": m["creationTimestamp"]},
                "spec": {"replicas": spec["replicas"]}, "status": s}

    def scale_update(self, r, pool, scale, dry_run, put):
        if not isinstance(scale, dict):
            raise bad_request("the body of the request is not a Scale")
        if scale.get("kind") not in (None, "Scale") or scale.get(
                "apiVersion") not in (None, "autoscaling/v1"):
            raise bad_request("the body is not an autoscaling/v1 Scale")
        meta = scale.get("metadata") or {}
        if meta.get("name") not in (None, r.name):
            raise bad_request("the name of the object (%s) does not match "
                              "the name on the URL (%s)" % (meta.get("name"),
                                                            r.name))
        if meta.get("uid") not in (None, "", pool["metadata"]["uid"]):
            raise ApiError(409, "Conflict", "Precondition failed: UID in "
                           "precondition: %s, UID in object meta: %s" % (
                               meta["uid"], pool["metadata"]["uid"]))
        rv = meta.get("resourceVersion")
        if rv not in (None, "") and rv != pool["metadata"]["resourceVersion"]:
            raise r.res.conflict(r.name)
        n = (scale.get("spec") or {}).get("replicas", 0 if put else None)
        if isinstance(n, bool) or not isinstance(n, int):
            raise ApiError(422, "Invalid", 'Scale.autoscaling "%s" is '
                           'invalid: spec.replicas: Invalid value: %s: must '
                           'be an integer' % (r.name, json.dumps(n)))
        if n < 0:
            raise ApiError(422, "Invalid", 'Scale.autoscaling "%s" is '
                           'invalid: spec.replicas: Invalid value: %d: must '
                           'be greater than or equal to 0' % (r.name, n), {
                               "name": r.name, "group": "autoscaling",
                               "kind": "Scale", "causes": [{
                                   "reason": "FieldValueInvalid",
                                   "field": "spec.replicas",
                                   "message": "Invalid value: %d: must be "
                                   "greater than or equal to 0" % n}]})
        new = jcopy(pool)
        new["spec"]["replicas"] = n
        sub = Route(r.res, r.version, r.ns, r.name, None, r.verb)
        self.commit_update(sub, pool, new, dry_run)
        return 200, self.scale_view(new if dry_run else self.need(r))

    # Delete ------------------------------------------------------------------
    def delete(self, r, query, body):
        if not r.name:
            raise ApiError(405, "MethodNotAllowed", "deletecollection is not "
                           "supported by the simulator")
        obj = self.need(r)
        opts = body if body else {}
        if not isinstance(opts, dict):
            raise bad_request("the body of a DELETE must be DeleteOptions")
        if opts.get("kind") not in (None, "DeleteOptions"):
            raise bad_request("the body of a DELETE must be DeleteOptions, "
                              "not %s" % opts.get("kind"))
        pre = opts.get("preconditions") or {}
        m = obj["metadata"]
        if pre.get("uid") not in (None, "") and pre["uid"] != m["uid"]:
            raise r.res.conflict(r.name, "Precondition failed: UID in "
                                 "precondition: %s, UID in object meta: %s"
                                 % (pre["uid"], m["uid"]))
        if pre.get("resourceVersion") not in (None, "") and \
                pre["resourceVersion"] != m["resourceVersion"]:
            raise r.res.conflict(r.name, "Precondition failed: "
                                 "ResourceVersion in precondition: %s, "
                                 "ResourceVersion in object meta: %s"
                                 % (pre["resourceVersion"],
                                    m["resourceVersion"]))
        policy = opts.get("propagationPolicy") or q1(query,
                                                      "propagationPolicy")
        orphan = opts.get("orphanDependents")
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan else "Background"
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError(422, "Invalid", 'DeleteOptions.meta.k8s.io "" is '
                           'invalid: propagationPolicy: Unsupported value: '
                           '"%s": supported values: "Foreground", '
                           '"Background", "Orphan", "nil"' % policy)
        dry = opts.get("dryRun") or query.get("dryRun")
        if dry:
            return 200, self.view(r, obj)
        if not m.get("deletionTimestamp"):
            if policy == "Foreground":
                km.add_finalizer(obj, km.FOREGROUND)
            elif policy == "Orphan":
                km.add_finalizer(obj, km.ORPHAN)
        elif policy == "Foreground" and km.ORPHAN in (m.get("finalizers")
                                                       or []):
            km.remove_finalizer(obj, km.ORPHAN)
            km.add_finalizer(obj, km.FOREGROUND)
        still = self.store.mark_deleted(r.res.plural, obj, time.time())
        self.model.kick()
        if still or r.res.crd:
            return 200, self.view(r, obj)
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Success", "details": {
                         "name": r.name, "kind": r.res.plural,
                         "uid": m["uid"]}}


def q1(query, key):
    v = query.get(key)
    return v[-1] if v else None


# ---------------------------------------------------------------------------
# HTTP


class KubeHandler(simhttp.Handler):
    server_version = "kube-sim/1"

    def _body(self):
        """simhttp reads Content-Length bodies only; clients may chunk."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n",
                                                             b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
        return super()._body()

    def send(self, status, payload, headers=None, content_type=None):
        headers = dict(headers or {})
        ct = headers.pop("Content-Type", None)
        super().send(status, payload, headers, content_type or ct)

    def route(self, method, path, query, body):
        if path.startswith("/_sim/"):
            return self.control(method, path, query, body)
        try:
            return self.api(method, path, query, body)
        except ApiError as e:
            raise SimError(e.code, e.message, e.headers, payload=e.status())
        except (SimError, simhttp.Dropped):
            raise
        except Exception as e:
            traceback.print_exc()
            raise SimError(500, str(e), payload=km.status_obj(
                500, "InternalError", "Internal error occurred: simulator: %r"
                % e))

    # Authentication ------------------------------------------------------
    def authenticate(self):
        srv = self.server
        if srv.client_ca:
            try:
                cert = self.connection.getpeercert()
            except (ValueError, AttributeError):
                cert = None
            if cert:
                cn = "unknown"
                for rdn in cert.get("subject", ()):
                    for k, v in rdn:
                        if k == "commonName":
                            cn = v
                return "cert", cn
        h = self.headers.get("Authorization") or ""
        if h[:7].lower() == "bearer ":
            tok = h[7:].strip()
            if tok:
                for good in srv.tokens():
                    if hmac.compare_digest(tok.encode(), good.encode()):
                        return "token", None
        return "none", None

    def api(self, method, path, query, raw):
        srv = self.server
        ctype = self.headers.get("Content-Type")
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode("utf-8", "replace")
        self.note(content_type=ctype, body=parsed)
        ident, cn = self.authenticate()
        self.note(auth=ident)
        if ident == "none":
            raise ApiError(401, "Unauthorized", "Unauthorized")
        if method == "GET" and path in ("/version", "/version/"):
            return 200, {"major": "1", "minor": "30",
                         "gitVersion": "v1.30.0-kube-sim",
                         "platform": "linux/amd64"}, {}
        disc = self.discovery(method, path)
        if disc is not None:
            return 200, disc, {}
        r = self.match(method, path, query)
        user = cn if ident == "cert" else "system:serviceaccount:%s:%s" % (
            r.ns or "default", srv.service_account)
        self.note(user=user, verb=r.verb, endpoint=r.endpoint, key=r.name)
        f = srv.journal.take_fault(method, r.endpoint, path, r.name)
        if f is not None:
            self.note(fault=f.spec)
            out = self.play_fault(f, r, user)
            if out is not None:
                return out
        dry = q1(query, "dryRun") == "All"
        with srv.model.lock:
            a = Api(srv.model)
            if r.verb == "get":
                status, obj = a.get(r)
            elif r.verb == "list":
                status, obj = a.list(r, query)
            elif r.verb == "create":
                status, obj = a.create(r, simhttp.json_body(raw), dry)
            elif r.verb == "update":
                status, obj = a.update(r, simhttp.json_body(raw), dry)
            elif r.verb == "patch":
                status, obj = a.patch(r, raw, ctype, dry)
            elif r.verb == "delete":
                status, obj = a.delete(r, query, simhttp.json_body(raw))
            else:
                raise ApiError(405, "MethodNotAllowed", "the server does not "
                               "allow this method on the requested resource")
        return status, obj, {}

    def discovery(self, method, path):
        m = re.match(r"^/apis/([^/]+)/([^/]+)/?$", path)
        if method != "GET" or not m:
            return None
        group, version = m.groups()
        rs = [res for res in RESOURCES.values()
              if res.group == group and version in res.versions]
        if not rs:
            raise ApiError(404, "NotFound", "the server could not find the "
                           "requested resource")
        out = []
        for res in rs:
            out.append({"name": res.plural, "namespaced": True,
                        "kind": res.kind, "verbs": sorted(res.verbs)})
            for sub in SUBRESOURCES.get(res.plural, ()):
                out.append({"name": "%s/%s" % (res.plural, sub),
                            "namespaced": True,
                            "kind": "Scale" if sub == "scale" else res.kind,
                            "verbs": ["get", "patch", "update"]})
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "%s/%s" % (group, version), "resources": out}

    def match(self, method, path, query):
        m = PATH_RE.match(path)
        nf = ApiError(404, "NotFound", "the server could not find the "
                      "requested resource", {})
        if not m:
            raise nf
        group = m.group("group") or ""
        version = m.group("core") or m.group("version")
        res = RESOURCES.get(m.group("res"))
        if res is None or res.group != group or version not in res.versions:
            raise nf
        ns, name, sub = m.group("ns"), m.group("name"), m.group("sub")
        ns = urllib.parse.unquote(ns) if ns else None
        name = urllib.parse.unquote(name) if name else None
        if sub and sub not in SUBRESOURCES.get(res.plural, ()):
            raise nf
        if ns is None and (name or method != "GET"):
            raise nf
        if q1(query, "watch") in ("true", "1") or q1(query, "watch") == "":
            raise bad_request("watch is not supported by kube_sim")
        if method == "GET":
            verb = "get" if name else "list"
        elif method == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            verb = VERBS.get(method)
        if verb is None:
            raise ApiError(405, "MethodNotAllowed", "the server does not "
                           "allow this method on the requested resource")
        if sub is None and verb not in res.verbs or \
                (verb == "create" and name) or \
                (verb in ("update", "patch") and not name) or \
                (sub and verb not in ("get", "update", "patch")):
            raise ApiError(405, "MethodNotAllowed", "the server does not "
                           "allow this method on the requested resource", {
                               "kind": res.plural})
        return Route(res, version, ns, name, sub, verb)

    # Faults ----------------------------------------------------------------
    def fault_status(self, code, r, user):
        res = r.res
        if code == 401:
            return km.status_obj(401, "Unauthorized", "Unauthorized")
        if code == 403:
            return res.forbidden(r.verb, r.ns, r.name, user, r.sub).status()
        if code == 404:
            return res.not_found(r.name).status()
        if code == 409:
            return res.conflict(r.name).status()
        if code == 410:
            return km.status_obj(410, "Expired", "too old resource version")
        if code == 422:
            return res.invalid(r.name, [("spec", "Invalid value: injected "
                                         "fault")]).status()
        if code == 429:
            return km.status_obj(429, "TooManyRequests", "Too many requests,"
                                 " please try again later.",
                                 {"retryAfterSeconds": 1})
        if code == 500:
            return km.status_obj(500, "InternalError", "Internal error "
                                 "occurred: injected fault")
        if code == 503:
            return km.status_obj(503, "ServiceUnavailable", "the server is "
                                 "currently unable to handle the request")
        if code == 504:
            return km.status_obj(504, "Timeout", "the server was unable to "
                                 "return a response in the time allotted, "
                                 "but may still be processing the request")
        if code == 400:
            return km.status_obj(400, "BadRequest", "injected fault")
        return km.status_obj(code, "", "injected fault %d" % code)

    def play_fault(self, f, r, user):
        headers = {}
        if f.retry_after is not None:
            headers["Retry-After"] = str(f.retry_after)
        if f.content_type:
            headers["Content-Type"] = f.content_type
        plain = not (f.drop or f.truncate or f.oversize or f.malformed)
        if f.status and f.body is None and plain:
            if f.delay_ms:
                time.sleep(f.delay_ms / 1000.0)
            return f.status, self.fault_status(f.status, r, user), headers
        out = self.apply_fault(f, self.fault_status(f.status or 500, r, user))
        if out is None:
            return None
        status, payload, h = out
        h.update(headers)
        return status, payload, h

    # Control API -------------------------------------------------------
    def control(self, method, path, query, raw):
        srv = self.server
        model = srv.model
        m = re.match(r"^/_sim/vm/([^/]+)/([^/]+)/(poweroff|crash)$", path)
        if m and method == "POST":
            with model.lock:
                try:
                    return 200, model.guest_action(m.group(1), m.group(2),
                                                   m.group(3)), {}
                except ApiError as e:
                    raise SimError(e.code, e.message)
        if path == "/_sim/state" and method == "GET":
            with model.lock:
                return 200, model.state(), {}
        if path == "/_sim/requests" and method == "GET":
            since = float(q1(query, "since") or 0)
            return 200, {"requests": srv.journal.snapshot(since)}, {}
        if path == "/_sim/requests" and method == "DELETE":
            srv.journal.clear()
            return 200, {"cleared": True}, {}
        if path == "/_sim/faults" and method == "POST":
            spec = simhttp.json_body(raw)
            if not isinstance(spec, dict):
                raise SimError(400, "a fault is a JSON object")
            try:
                f = srv.journal.add_fault(spec)
            except (ValueError, re.error) as e:
                raise SimError(400, str(e))
            with srv.fault_lock:
                fid = next(srv.fault_ids)
                srv.fault_index.append((fid, f))
            return 200, {"id": fid}, {}
        if path == "/_sim/faults" and method == "GET":
            with srv.fault_lock:
                live = [(i, f) for i, f in srv.fault_index
                        if f in srv.journal.faults]
            return 200, {"faults": [dict(id=i, spec=f.spec, remaining=f.count,
                                         fired=f.fired) for i, f in live]}, {}
        if path == "/_sim/faults" and method == "DELETE":
            srv.journal.clear_faults()
            with srv.fault_lock:
                srv.fault_index = []
            return 200, {"cleared": True}, {}
        if path == "/_sim/config" and method in ("GET", "POST"):
            if method == "POST":
                cfg = simhttp.json_body(raw)
                if not isinstance(cfg, dict):
                    raise SimError(400, "config is a JSON object")
                for k, v in cfg.items():
                    if k not in model.config:
                        raise SimError(400, "unknown config key %r" % k)
                    if isinstance(v, bool) or not isinstance(v, int) or \
                            v < (1 if k == "tick_ms" else 0):
                        raise SimError(400, "%s: must be an integer >= %d"
                                       % (k, 1 if k == "tick_ms" else 0))
                with model.lock:
                    model.config.update(cfg)
                model.kick()
            return 200, dict(model.config), {}
        if path == "/_sim/health" and method == "GET":
            return 200, {"ok": True}, {}
        raise SimError(404, "no control endpoint %s %s" % (method, path))


class KubeServer(simhttp.Server):
    def __init__(self, addr, tls, model, token=None, token_file=None,
                 client_ca=None, service_account="runner-provisioner",
                 verbose=False):
        super().__init__(addr, KubeHandler, tls=tls, verbose=verbose)
        self.model = model
        self.token = token
        self.token_file = token_file
        self.client_ca = client_ca
        self.service_account = service_account
        self.fault_lock = threading.Lock()
        self.fault_ids = itertools.count(1)
        self.fault_index = []
        if client_ca:
            self.ssl_context.verify_mode = ssl.CERT_OPTIONAL
            self.ssl_context.load_verify_locations(cafile=client_ca)

    def tokens(self):
        out = [self.token] if self.token else []
        if self.token_file:
            try:
                with open(self.token_file) as f:
                    t = f.read().strip()
                if t:
                    out.append(t)
            except OSError:
                pass
        return out


def make_server(listen, tls, token=None, token_file=None, client_ca=None,
                circleci=None, circleci_ca=None, boot_delay_ms=500,
                claim_interval_ms=100, tick_ms=50, crd=None,
                service_account="runner-provisioner", seed=None,
                verbose=False):
    """Builds the server and its model (call server.model.start())."""
    model = km.Model(km.find_crd(crd), boot_delay_ms=boot_delay_ms,
                     claim_interval_ms=claim_interval_ms, tick_ms=tick_ms,
                     circleci=circleci, circleci_ca=circleci_ca, seed=seed,
                     verbose=verbose)
    return KubeServer(simhttp.parse_listen(listen), tls, model, token=token,
                      token_file=token_file, client_ca=client_ca,
                      service_account=service_account, verbose=verbose)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Kubernetes/KubeVirt API simulator (see module docstring)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port")
    ap.add_argument("--port-file", help="written atomically with the port")
    ap.add_argument("--tls-cert", required=True)
    ap.add_argument("--tls-key", required=True)
    ap.add_argument("--token", help="accepted bearer token")
    ap.add_argument("--token-file", help="accepted bearer token, re-read on "
                    "every request")
    ap.add_argument("--client-ca", help="CA for client certificates")
    ap.add_argument("--circleci", help="CircleCI simulator base URL")
    ap.add_argument("--circleci-ca", help="CA file for --circleci")
    ap.add_argument("--boot-delay-ms", type=int, default=500)
    ap.add_argument("--claim-interval-ms", type=int, default=100)
    ap.add_argument("--tick-ms", type=int, default=50)
    ap.add_argument("--crd", help="VirtualMachinePool CRD YAML (default: "
                    "$RP_KUBEVIRT_CRD or the repository's schemas)")
    ap.add_argument("--service-account", default="runner-provisioner",
                    help="name used in Forbidden messages for token users")
    ap.add_argument("--seed", type=int, help="seed for random scale-in")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    if not (a.token or a.token_file or a.client_ca):
        ap.error("give --token, --token-file or --client-ca")
    for k in ("boot_delay_ms", "claim_interval_ms"):
        if getattr(a, k) < 0:
            ap.error("--%s must be >= 0" % k.replace("_", "-"))
    if a.tick_ms < 1:
        ap.error("--tick-ms must be >= 1")
    for flag in ("tls_cert", "tls_key", "client_ca", "circleci_ca"):
        path = getattr(a, flag)
        if path and not os.access(path, os.R_OK):
            ap.error("--%s %s: cannot read it" % (flag.replace("_", "-"),
                                                   path))
    try:
        server = make_server(
            a.listen, dict(cert=a.tls_cert, key=a.tls_key), a.token,
            a.token_file, a.client_ca, a.circleci, a.circleci_ca,
            a.boot_delay_ms, a.claim_interval_ms, a.tick_ms, a.crd,
            a.service_account, a.seed, a.verbose)
    except (OSError, ValueError, ssl.SSLError) as e:
        ap.error(str(e))
    server.model.start()
    simhttp.serve(server, a.port_file)
    server.model.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
