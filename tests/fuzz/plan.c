/*
 * The actuator's planning function (actuator/plan.c) on what Kubernetes
 * and the poller could show it: the input is a script of events, each
 * decoded from a few bytes into structured answers: pool, Secret and VM
 * lists (names ours or not, labels, owners, template hashes, replica
 * counts of any type, VMs in any state with any timestamps, finalizers,
 * colliding names and uids), answers to the write in flight and to the VM
 * requests out (every status, well-formed, partial, empty or foreign
 * bodies), demand that succeeds or fails, and time passing.  They go
 * through observe.c and demand.c as the loop delivers them; after each
 * planning step what was planned is sent as exec.c would mark it.
 *
 * What must hold for every plan:
 *   - nothing is written while a write is out; writes follow the order
 *     Secret, pool, replicas, each only from the state that asks for it;
 *   - a scale is to the decided target and only of a current pool;
 *   - only a VM listed as stopped is deleted, only one held by the pool
 *     finalizer, with no VMI, past the grace period, is released; no VM
 *     request while others are out or before a newer list;
 *   - in a boot loop at most one VM is reclaimed, and not before its time;
 *   - a wake time is in the future; "in step" means nothing to write;
 *   - failed or stale demand never changes the target.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actuator.h"
#include "fuzz.h"
#include "log.h"
#include "util.h"

#define CLASS "fz-org/runner"
#define POOL  "fz-org--runner"
#define STEPS 64
#define OPS   PLAN_VM_MAX

static const char config[] = "resourceClass:\n"
                             "  \"" CLASS "\":\n"
                             "    token: \"fz-runner-token-0123456789\"\n"
                             "    idleTimeout: \"30s\"\n"
                             "    minReplicas: 1\n"
                             "    maxReplicas: 6\n";

struct world {
	struct conf *conf;
	struct flags flags;
	struct role role;
	struct actuator a;
	struct act_class *ac;
	uint64_t now, wall0, now0;
	enum plan_write inflight; /* PW_NONE: no write out */
	uint32_t from;
	struct {
		enum plan_vm_op op;
		char name[16];
	} ops[OPS];
	size_t nops;
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

static uint64_t
wall(const struct world *w)
{
	return w->wall0 + (w->now - w->now0);
}

static const char *
timestamp(uint64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

/* A count as a server might send it: right, absent or of a wrong kind. */
static void
set_count(json_t *obj, const char *key, struct fuzz_in *in)
{
	switch (fuzz_u8(in) % 6) {
	case 0:
		break;
	case 1:
		json_object_set_new(obj, key, json_integer(-1));
		break;
	case 2:
		json_object_set_new(obj, key, json_string("3"));
		break;
	case 3:
		json_object_set_new(obj, key, json_integer(1LL << 40));
		break;
	default:
		json_object_set_new(obj, key, json_integer(fuzz_u8(in) % 8));
	}
}

static json_t *
pool_item(struct world *w, struct fuzz_in *in)
{
	uint8_t b = fuzz_u8(in);
	json_t *p = pool_json(
	    &w->ac->ac_obj, w->ac->ac_conf, "ns", 0, (b & 1) ? "17" : NULL);
	json_t *md = json_object_get(p, "metadata");

	json_object_del(json_object_get(p, "spec"), "replicas");
	set_count(json_object_get(p, "spec"), "replicas", in);
	json_object_set_new(p, "status", json_object());
	set_count(json_object_get(p, "status"), "readyReplicas", in);
	if (b & 2)
		json_object_set_new(md, "name", json_string("other-pool"));
	if (b & 4)
		json_object_del(
		    json_object_get(md, "labels"), LABEL_MANAGED_BY);
	if (b & 8)
		json_object_set_new(json_object_get(md, "annotations"),
		    ANNOT_CLASS, json_string("other/class"));
	if (b & 16)
		json_object_set_new(json_object_get(md, "annotations"),
		    ANNOT_HASH, json_string("0123456789abcdef"));
	if (b & 32)
		json_object_del(md, "annotations");
	return p;
}

static json_t *
secret_item(struct world *w, struct fuzz_in *in)
{
	uint8_t b = fuzz_u8(in);
	json_t *s = pool_secret_json(
	    &w->ac->ac_obj, w->ac->ac_conf, "ns", (b & 1) ? "18" : NULL);
	json_t *md = json_object_get(s, "metadata");

	if (b & 2)
		json_object_set_new(
		    md, "name", json_string("other-pool-userdata"));
	if (b & 4)
		json_object_del(
		    json_object_get(md, "labels"), LABEL_MANAGED_BY);
	if (b & 8)
		json_object_set_new(json_object_get(s, "data"), SECRET_KEY,
		    json_string("b3V0ZGF0ZWQ="));
	if (b & 16)
		json_object_del(s, "data");
	return s;
}

static json_t *
vm_item(struct world *w, struct fuzz_in *in)
{
	static const char *const states[] = { "Stopped", "Running", "Starting",
		"Terminating", "Provisioning", "Stopping",
		"ErrorUnschedulable", NULL };
	uint8_t b = fuzz_u8(in), c = fuzz_u8(in);
	char name[16], uid[16], rv[8], t1[32], t2[32];
	const char *st = states[c % nitems(states)];
	json_t *vm, *md, *status;

	snprintf(name, sizeof(name), "vm-%u", b % 4);
	snprintf(uid, sizeof(uid), "u%u", (b >> 2) % 6);
	snprintf(rv, sizeof(rv), "%u", fuzz_u8(in));
	vm = json_pack("{s:{s:s,s:s,s:s,s:{s:s,s:s}},s:{}}", "metadata",
	    "name", name, "uid", uid, "resourceVersion", rv, "labels",
	    LABEL_MANAGED_BY, MANAGED_BY, LABEL_CLASS,
	    (c & 0x80) ? "other-pool" : POOL, "status");
	md = json_object_get(vm, "metadata");
	status = json_object_get(vm, "status");
	switch (fuzz_u8(in) % 4) {
	case 0:
		break; /* no creationTimestamp */
	case 1:
		json_object_set_new(
		    md, "creationTimestamp", json_string("yesterday"));
		break;
	default:
		json_object_set_new(md, "creationTimestamp",
		    json_string(
		        timestamp(wall(w) - (uint64_t)fuzz_u16(in) * 100, t1,
		            sizeof(t1))));
	}
	if (c & 0x40)
		json_object_set_new(md, "deletionTimestamp",
		    json_string(
		        timestamp(wall(w) - (uint64_t)fuzz_u8(in) * 100, t2,
		            sizeof(t2))));
	switch ((c >> 3) % 4) {
	case 1:
		json_object_set_new(
		    md, "finalizers", json_pack("[s]", POOL_FINALIZER));
		break;
	case 2:
		json_object_set_new(
		    md, "finalizers", json_pack("[s,i]", POOL_FINALIZER, 7));
		break;
	case 3:
		json_object_set_new(md, "finalizers", json_string("x"));
		break;
	}
	if (st != NULL)
		json_object_set_new(
		    status, "printableStatus", json_string(st));
	if (c & 0x20)
		json_object_set_new(status, "created", json_boolean(b & 0x80));
	if (fuzz_bool(in))
		json_object_set_new(status, "conditions",
		    json_pack("[{s:s,s:s}]", "type", "Ready",
		        "lastTransitionTime",
		        timestamp(wall(w) - (uint64_t)fuzz_u8(in) * 100, t1,
		            sizeof(t1))));
	return vm;
}

static void
list(struct world *w, enum act_list_kind kind, struct fuzz_in *in)
{
	static const enum kube_verb verbs[LIST_COUNT] = {
		[LIST_POOLS] = KV_POOL_LIST,
		[LIST_VMS] = KV_VM_LIST,
		[LIST_SECRETS] = KV_SECRET_LIST,
	};
	uint8_t b = fuzz_u8(in);
	json_t *items = json_array(), *body;
	struct kube_reply r;
	size_t i, n = b % (kind == LIST_VMS ? 9 : 3);

	for (i = 0; i < n; i++)
		json_array_append_new(items,
		    kind == LIST_POOLS     ? pool_item(w, in)
		        : kind == LIST_VMS ? vm_item(w, in)
		                           : secret_item(w, in));
	body = json_pack("{s:o}", "items", items);
	memset(&r, 0, sizeof(r));
	r.kr_verb = verbs[kind];
	r.kr_status = (b & 0x80) ? 403 : 200;
	r.kr_body = (b & 0x40) ? NULL : body;
	r.kr_error = "fuzz";
	w->a.a_lists[kind].al_busy = true;
	/* The list may have been sent before recent answers arrived. */
	observe_list(&w->a, kind, &r, w->a.a_seq - (b >> 4) % 3, w->now);
	json_decref(body);
}

static long
status(struct fuzz_in *in)
{
	static const long codes[] = { 200, 201, 0, 401, 403, 404, 409, 410,
		422, 429, 500, 503, -1 };

	return codes[fuzz_u8(in) % nitems(codes)];
}

static void
answer_write(struct world *w, struct fuzz_in *in)
{
	enum plan_write wr = w->inflight;
	struct kube_reply r;
	json_t *body = NULL;
	uint8_t b = fuzz_u8(in);

	if (wr == PW_NONE)
		return;
	memset(&r, 0, sizeof(r));
	r.kr_verb = plan_write_verb(w->inflight);
	r.kr_status = status(in);
	r.kr_error = "fuzz \xc3";
	r.kr_retry_after_ms = (b & 0x80) ? fuzz_u16(in) : 0;
	switch (b % 5) {
	case 0:
		break;
	case 1: /* the object as written */
		body = plan_write_is_secret(w->inflight) ? secret_item(w, in)
		    : w->inflight == PW_SCALE
		    ? json_pack(
		          "{s:{s:i}}", "spec", "replicas", fuzz_u8(in) % 8)
		    : pool_item(w, in);
		break;
	case 2:
		body = json_pack("{s:{}}", "spec");
		break;
	case 3:
		body =
		    json_pack("{s:s,s:s}", "kind", "Status", "message", "no");
		break;
	default:
		body = json_pack("{s:{s:s,s:s}}", "metadata", "name",
		    plan_write_is_secret(w->inflight) ? POOL "-userdata"
		                                      : POOL,
		    "resourceVersion", "5");
	}
	r.kr_body = body;
	w->inflight = PW_NONE;
	observe_write(&w->a, w->ac, wr, w->from, &r, w->now);
	json_decref(body);
}

static void
answer_vm_ops(struct world *w, struct fuzz_in *in)
{
	struct kube_reply r;
	size_t i;

	for (i = 0; i < w->nops; i++) {
		memset(&r, 0, sizeof(r));
		r.kr_verb =
		    w->ops[i].op == PV_DELETE ? KV_VM_DELETE : KV_VM_PATCH;
		r.kr_status = status(in);
		r.kr_error = "fuzz";
		observe_vm_op(
		    &w->a, w->ac, w->ops[i].op, w->ops[i].name, &r, w->now);
	}
	w->nops = 0;
}

static void
demand(struct world *w, struct fuzz_in *in)
{
	struct class_demand *d = &w->ac->ac_demand;
	bool had = d->cd_have_target;
	uint32_t before = d->cd_target;
	struct msg_demand m;

	memset(&m, 0, sizeof(m));
	m.d_ok = fuzz_bool(in);
	m.d_unclaimed = m.d_ok ? fuzz_u8(in) % 16 : 0;
	m.d_running = m.d_ok ? fuzz_u8(in) % 16 : 0;
	snprintf(m.d_class, sizeof(m.d_class), "%s", CLASS);
	demand_record(w->ac, &m, w->now, wall(w));
	demand_decide(&w->a, w->ac, w->now);
	if (!m.d_ok)
		FUZZ_CHECK(d->cd_have_target == had && d->cd_target == before,
		    "failed demand moved the target %u -> %u", before,
		    d->cd_target);
	else
		FUZZ_CHECK(d->cd_have_target &&
		        d->cd_target >= d->cd_decision.d_controls.sc_min &&
		        d->cd_target <= d->cd_decision.d_controls.sc_max,
		    "target %u out of bounds", d->cd_target);
}

static void
check(struct world *w, const struct plan *p)
{
	const struct class_kube *k = &w->ac->ac_kube;
	const struct class_demand *d = &w->ac->ac_demand;
	const struct class_vms *v = &w->ac->ac_vms;
	enum obj_state s = k->ck_secret.os_state, ps = k->ck_pool.os_state;
	size_t i, deletes = 0;

	FUZZ_CHECK(p->p_write == PW_NONE || !k->ck_busy, "wrote while busy");
	FUZZ_CHECK(p->p_wake_ms == PLAN_NEVER || p->p_wake_ms > w->now,
	    "wake %llu not after now %llu", (unsigned long long)p->p_wake_ms,
	    (unsigned long long)w->now);
	FUZZ_CHECK(!p->p_synced ||
	        (p->p_write == PW_NONE && s == OBJ_CURRENT &&
	            ps == OBJ_CURRENT),
	    "in step with %s planned", plan_write_name(p->p_write));
	switch (p->p_write) {
	case PW_SECRET_CREATE:
		FUZZ_CHECK(s == OBJ_MISSING, "secret create from %d", s);
		break;
	case PW_SECRET_UPDATE:
		FUZZ_CHECK(s == OBJ_STALE, "secret update from %d", s);
		break;
	case PW_SECRET_GET:
		FUZZ_CHECK(s == OBJ_REREAD || s == OBJ_FOREIGN,
		    "secret read from %d", s);
		break;
	case PW_POOL_CREATE:
		FUZZ_CHECK(s == OBJ_CURRENT && ps == OBJ_MISSING,
		    "pool create from %d/%d", s, ps);
		FUZZ_CHECK(p->p_replicas ==
		        (d->cd_have_target ? d->cd_target
		                           : d->cd_decision.d_controls.sc_min),
		    "new pool at %u", p->p_replicas);
		break;
	case PW_POOL_UPDATE:
		FUZZ_CHECK(s == OBJ_CURRENT && ps == OBJ_STALE,
		    "pool update from %d/%d", s, ps);
		break;
	case PW_POOL_GET:
		FUZZ_CHECK(s == OBJ_CURRENT &&
		        (ps == OBJ_REREAD || ps == OBJ_FOREIGN),
		    "pool read from %d/%d", s, ps);
		break;
	case PW_SCALE:
		FUZZ_CHECK(s == OBJ_CURRENT && ps == OBJ_CURRENT &&
		        d->cd_have_target && p->p_replicas == d->cd_target &&
		        (!k->ck_have_replicas ||
		            k->ck_replicas != d->cd_target),
		    "scale to %u from %d/%d", p->p_replicas, s, ps);
		break;
	case PW_POOL_DELETE:
	case PW_SECRET_DELETE:
		/* Only a class no longer configured loses its objects. */
		FUZZ_CHECK(w->ac->ac_retiring, "%s of a configured class",
		    plan_write_name(p->p_write));
		break;
	case PW_NONE:
		break;
	}
	FUZZ_CHECK(p->p_nvm <= PLAN_VM_MAX, "%zu VM requests", p->p_nvm);
	FUZZ_CHECK(p->p_nvm == 0 ||
	        (v->cv_inflight == 0 && v->cv_fresh &&
	            w->now >= v->cv_retry_ms),
	    "VM requests while %u out (fresh %d)", v->cv_inflight,
	    v->cv_fresh);
	for (i = 0; i < p->p_nvm; i++) {
		const struct vm_seen *vm = p->p_vm[i].pv_vm;

		FUZZ_CHECK(vm >= v->cv_vms && vm < v->cv_vms + v->cv_n,
		    "VM request for a VM not listed");
		if (p->p_vm[i].pv_op == PV_DELETE) {
			deletes++;
			FUZZ_CHECK(vm->vs_state == VMS_STOPPED,
			    "delete of VM %s in state %d", vm->vs_name,
			    vm->vs_state);
		} else
			FUZZ_CHECK(vm->vs_state == VMS_TERMINATING &&
			        !vm->vs_has_vmi &&
			        plan_vm_pool_finalizer(vm) &&
			        vm->vs_deleted_ms != 0 &&
			        wall(w) >=
			            vm->vs_deleted_ms + FINALIZER_GRACE_MS,
			    "release of VM %s", vm->vs_name);
	}
	if (v->cv_boot.bg_loop)
		FUZZ_CHECK(deletes <= 1 &&
		        (deletes == 0 ||
		            w->now >= v->cv_boot.bg_reclaim_at_ms),
		    "%zu reclaims in a boot loop", deletes);
}

static void
plan_and_send(struct world *w)
{
	struct plan_input pin;
	struct plan p;
	size_t i;

	memset(&pin, 0, sizeof(pin));
	pin.pi_class = w->ac;
	pin.pi_now_ms = w->now;
	pin.pi_wall_ms = wall(w);
	pin.pi_lists_fresh = true;
	pin.pi_min_replicas = w->ac->ac_conf->cc_scaling.sp_base.sc_min;
	plan_class(&pin, &p);
	check(w, &p);
	if (p.p_write != PW_NONE) {
		w->ac->ac_kube.ck_busy = true;
		if (plan_write_is_secret(p.p_write))
			w->ac->ac_kube.ck_secret.os_busy = true;
		else
			w->ac->ac_kube.ck_pool.os_busy = true;
		w->inflight = p.p_write;
		w->from = w->ac->ac_kube.ck_replicas;
	}
	if (p.p_nvm > 0)
		w->ac->ac_vms.cv_fresh = false;
	for (i = 0; i < p.p_nvm; i++) {
		w->ops[w->nops].op = p.p_vm[i].pv_op;
		snprintf(w->ops[w->nops].name, sizeof(w->ops[0].name), "%s",
		    p.p_vm[i].pv_vm->vs_name);
		w->nops++;
		w->ac->ac_vms.cv_inflight++;
		if (p.p_vm[i].pv_op == PV_DELETE)
			boot_reclaimed(&w->ac->ac_vms.cv_boot, w->now);
	}
	w->a.a_seq++;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	char err[CONF_ERR_MAX],
	    *argv[] = { (char *)(uintptr_t) "actuator", NULL };
	struct world *w = xcalloc(1, sizeof(*w));
	int step;

	if (flags_parse(&w->flags, 1, argv, err, sizeof(err)) == -1)
		abort();
	w->conf = conf_parse(
	    "config.yaml", config, sizeof(config) - 1, err, sizeof(err));
	FUZZ_CHECK(w->conf != NULL, "config: %s", err);
	w->role.r_name = "actuator";
	w->a.a_role = &w->role;
	w->a.a_flags = &w->flags;
	w->a.a_conf = w->conf;
	w->a.a_metrics = metrics_new();
	FUZZ_CHECK(act_classes_setup(&w->a) == 0, "classes");
	w->ac = w->a.a_classes[0];
	w->now = w->now0 = 1000000;
	w->wall0 = wall_ms();
	w->a.a_seq = 10;
	for (step = 0; step < STEPS && in.fi_n > 0; step++) {
		switch (fuzz_u8(&in) % 9) {
		case 0:
			demand(w, &in);
			break;
		case 1:
			list(w, LIST_POOLS, &in);
			break;
		case 2:
			list(w, LIST_SECRETS, &in);
			break;
		case 3:
			list(w, LIST_VMS, &in);
			break;
		case 4:
			answer_write(w, &in);
			break;
		case 5:
			answer_vm_ops(w, &in);
			break;
		case 6:
			w->now += (uint64_t)fuzz_u16(&in) * 10;
			break;
		default:
			plan_and_send(w);
		}
	}
	plan_and_send(w);
	event_cache_free(&w->a);
	act_classes_free(&w->a);
	metrics_free(w->a.a_metrics);
	conf_free(w->conf);
	flags_free(&w->flags);
	free(w);
	return 0;
}
