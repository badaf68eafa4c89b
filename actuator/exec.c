/*
 * Sending what was planned: each plan step becomes one Kubernetes request
 * whose answer goes back to observe.c.  Nothing here decides anything,
 * except whether to write at all: this is the one write gate.  With
 * --leader-elect only the holder of the Lease writes (a standby sends
 * reads only), nothing is written once the process begins to stop, and
 * --dry-run writes nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actuator.h"
#include "log.h"
#include "util.h"

/* What a request was, so its answer can be recorded.  It holds a
 * reference to its class: an answer never meets a freed class. */
struct exec_req {
	struct actuator *er_a;
	struct act_class *er_class; /* NULL for lists */
	bool er_write;              /* counted in a_writes_inflight */
	enum act_list_kind er_list;
	enum plan_write er_pw;
	enum plan_vm_op er_vm_op;
	uint64_t er_seq;  /* a_seq when sent */
	uint32_t er_from; /* PW_SCALE: the replicas it changes */
	char er_vm[];     /* VM requests: its name */
};

static struct exec_req *
req_new(struct actuator *a, struct act_class *ac, const char *vm)
{
	size_t n = vm != NULL ? strlen(vm) + 1 : 1;
	struct exec_req *r = xcalloc(1, sizeof(*r) + n);

	r->er_a = a;
	r->er_class = ac;
	if (ac != NULL)
		class_ref(ac);
	r->er_seq = ++a->a_seq;
	if (vm != NULL)
		memcpy(r->er_vm, vm, n);
	return r;
}

static void
req_done(struct exec_req *q)
{
	if (q->er_write)
		q->er_a->a_writes_inflight--;
	class_unref(q->er_class);
	free(q);
}

static void
on_list(void *arg, const struct kube_reply *r)
{
	struct exec_req *q = arg;

	observe_list(q->er_a, q->er_list, r, q->er_seq, now_ms());
	req_done(q);
}

/* A class that retired meanwhile has nobody to tell. */
static void
on_write(void *arg, const struct kube_reply *r)
{
	struct exec_req *q = arg;

	if (q->er_class->ac_linked)
		observe_write(
		    q->er_a, q->er_class, q->er_pw, q->er_from, r, now_ms());
	req_done(q);
}

static void
on_vm(void *arg, const struct kube_reply *r)
{
	struct exec_req *q = arg;

	if (q->er_class->ac_linked)
		observe_vm_op(
		    q->er_a, q->er_class, q->er_vm_op, q->er_vm, r, now_ms());
	req_done(q);
}

static const struct {
	enum kube_verb l_verb;
	const char *l_api;
	const char *l_plural;
	uint64_t l_interval_ms;
} lists[LIST_COUNT] = {
	[LIST_POOLS] = { KV_POOL_LIST, POOL_API, "virtualmachinepools",
	    RESYNC_MS },
	[LIST_VMS] = { KV_VM_LIST, VM_API, "virtualmachines", RESYNC_MS },
	[LIST_SECRETS] = { KV_SECRET_LIST, "/api/v1", "secrets",
	    SECRET_RESYNC_MS },
};

static void
exec_lists(struct actuator *a, uint64_t now)
{
	struct act_list *l;
	struct exec_req *q;
	char path[512];
	int k;

	for (k = 0; k < LIST_COUNT; k++) {
		l = &a->a_lists[k];
		if (l->al_busy || now < l->al_next_ms)
			continue;
		/* A drain ends on a fresh list of everything. */
		l->al_next_ms = now +
		    (a->a_flags->f_drain ? RESYNC_MS : lists[k].l_interval_ms);
		snprintf(path, sizeof(path),
		    "%s/namespaces/%s/%s?labelSelector=%s", lists[k].l_api,
		    kube_namespace(a->a_kube), lists[k].l_plural,
		    LABEL_MANAGED_BY "%3D" MANAGED_BY);
		q = req_new(a, NULL, NULL);
		q->er_list = (enum act_list_kind)k;
		if (kube_send(a->a_kube, lists[k].l_verb, "GET", path, NULL,
		        NULL, on_list, q) == -1) {
			req_done(q);
			continue;
		}
		l->al_busy = true;
	}
}

static void
mark_busy(struct act_class *ac, enum plan_write w)
{
	ac->ac_kube.ck_busy = true;
	if (plan_write_is_secret(w))
		ac->ac_kube.ck_secret.os_busy = true;
	else
		ac->ac_kube.ck_pool.os_busy = true;
}

/* Only the object as seen: one replaced or changed since is left alone.
 * orphan: its dependents (the pool's VMs) stay. */
static json_t *
delete_options(const struct obj_seen *os, bool orphan)
{
	json_t *o =
	    json_pack("{s:s,s:s,s:s}", "kind", "DeleteOptions", "apiVersion",
	        "v1", "propagationPolicy", orphan ? "Orphan" : "Background");
	json_t *pre = json_object();

	if (os->os_uid != NULL)
		json_object_set_new(pre, "uid", json_string(os->os_uid));
	if (os->os_rv != NULL)
		json_object_set_new(
		    pre, "resourceVersion", json_string(os->os_rv));
	json_object_set_new(o, "preconditions", pre);
	return o;
}

static void
send_write(struct actuator *a, struct act_class *ac, const struct plan *p)
{
	const char *ns = kube_namespace(a->a_kube);
	const struct class_kube *k = &ac->ac_kube;
	const char *method = "GET", *ctype = NULL;
	json_t *body = NULL;
	struct exec_req *q;
	char path[512];

	switch (p->p_write) {
	case PW_SECRET_CREATE:
		method = "POST";
		body = pool_secret_json(&ac->ac_obj, ac->ac_conf, ns, NULL);
		/* FALLTHROUGH */
	case PW_SECRET_GET:
	case PW_SECRET_UPDATE:
	case PW_SECRET_DELETE:
		snprintf(
		    path, sizeof(path), "/api/v1/namespaces/%s/secrets", ns);
		if (p->p_write == PW_SECRET_CREATE)
			break;
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
		    "/%s", ac->ac_obj.po_secret);
		if (p->p_write == PW_SECRET_UPDATE) {
			method = "PUT";
			body = pool_secret_json(
			    &ac->ac_obj, ac->ac_conf, ns, k->ck_secret.os_rv);
		} else if (p->p_write == PW_SECRET_DELETE) {
			method = "DELETE";
			body = delete_options(&k->ck_secret, false);
		}
		break;
	case PW_POOL_CREATE:
		method = "POST";
		body = pool_json(
		    &ac->ac_obj, ac->ac_conf, ns, p->p_replicas, NULL);
		/* FALLTHROUGH */
	case PW_POOL_GET:
	case PW_POOL_UPDATE:
	case PW_POOL_DELETE:
	case PW_SCALE:
		snprintf(path, sizeof(path),
		    POOL_API "/namespaces/%s/virtualmachinepools", ns);
		if (p->p_write == PW_POOL_CREATE)
			break;
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
		    "/%s%s", ac->ac_pool,
		    p->p_write == PW_SCALE ? "/scale" : "");
		if (p->p_write == PW_POOL_UPDATE) {
			/* New VMs get the new template; running ones are left
			 * alone (updateStrategy opportunistic). */
			method = "PUT";
			body = pool_json(&ac->ac_obj, ac->ac_conf, ns,
			    p->p_replicas, k->ck_pool.os_rv);
		} else if (p->p_write == PW_SCALE) {
			method = "PATCH";
			ctype = KUBE_CONTENT_MERGE;
			body = json_pack("{s:{s:I}}", "spec", "replicas",
			    (json_int_t)p->p_replicas);
		} else if (p->p_write == PW_POOL_DELETE) {
			method = "DELETE";
			body = delete_options(&k->ck_pool, p->p_orphan);
		}
		break;
	case PW_NONE:
		return;
	}
	if (body != NULL && ctype == NULL)
		ctype = KUBE_CONTENT_JSON;
	q = req_new(a, ac, NULL);
	q->er_pw = p->p_write;
	q->er_from = k->ck_replicas;
	if (!plan_write_is_read(p->p_write)) {
		q->er_write = true;
		a->a_writes_inflight++;
	}
	if (kube_send(a->a_kube, plan_write_verb(p->p_write), method, path,
	        ctype, body, on_write, q) == -1) {
		/* Not even started: a failed write, tried again later. */
		struct kube_reply r = { .kr_verb = plan_write_verb(p->p_write),
			.kr_error = "the request could not be started" };

		mark_busy(ac, p->p_write);
		on_write(q, &r);
		return;
	}
	mark_busy(ac, p->p_write);
}

static void
send_vm_op(struct actuator *a, struct act_class *ac, const struct plan_vm *pv,
    uint64_t now)
{
	const struct vm_seen *vm = pv->pv_vm;
	json_t *body, *keep, *f;
	struct exec_req *q;
	char path[512];
	size_t i;

	snprintf(path, sizeof(path),
	    VM_API "/namespaces/%s/virtualmachines/%s",
	    kube_namespace(a->a_kube), vm->vs_name);
	if (pv->pv_op == PV_DELETE) {
		/* Only that VM, and only as listed: a VM replaced under the
		 * same name, restarted or relabelled since is left alone. */
		body = json_pack("{s:s,s:s,s:{s:s,s:s},s:s}", "kind",
		    "DeleteOptions", "apiVersion", "v1", "preconditions",
		    "uid", vm->vs_uid, "resourceVersion", vm->vs_rv,
		    "propagationPolicy", "Background");
	} else {
		/* Guarded by tests on the uid and the finalizer list. */
		keep = json_array();
		json_array_foreach(vm->vs_finalizers, i, f)
		{
			if (!json_is_string(f) ||
			    strcmp(json_string_value(f), POOL_FINALIZER) != 0)
				json_array_append(keep, f);
		}
		body = json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:O},{s:s,s:s,s:o}]",
		    "op", "test", "path", "/metadata/uid", "value", vm->vs_uid,
		    "op", "test", "path", "/metadata/finalizers", "value",
		    vm->vs_finalizers, "op", "replace", "path",
		    "/metadata/finalizers", "value", keep);
	}
	q = req_new(a, ac, vm->vs_name);
	q->er_vm_op = pv->pv_op;
	q->er_write = true;
	a->a_writes_inflight++;
	if (kube_send(a->a_kube,
	        pv->pv_op == PV_DELETE ? KV_VM_DELETE : KV_VM_PATCH,
	        pv->pv_op == PV_DELETE ? "DELETE" : "PATCH", path,
	        pv->pv_op == PV_DELETE ? KUBE_CONTENT_JSON
	                               : KUBE_CONTENT_JSONPATCH,
	        body, on_vm, q) == -1) {
		req_done(q);
		ac->ac_vms.cv_retry_ms =
		    now + backoff_next(&ac->ac_vms.cv_backoff);
		return;
	}
	ac->ac_vms.cv_inflight++;
	if (pv->pv_op == PV_DELETE)
		boot_reclaimed(&ac->ac_vms.cv_boot, now);
}

void
exec_plan(struct actuator *a, struct act_class *ac, const struct plan *p,
    uint64_t now)
{
	size_t i;

	if (p->p_write != PW_NONE &&
	    (a->a_may_write || plan_write_is_read(p->p_write)))
		send_write(a, ac, p);
	if (!a->a_may_write)
		return; /* a standby only reads */
	if (p->p_nvm > 0)
		ac->ac_vms.cv_fresh = false;
	for (i = 0; i < p->p_nvm; i++)
		send_vm_op(a, ac, &p->p_vm[i], now);
}

bool
exec_may_write(const struct actuator *a, uint64_t now)
{
	if (a->a_kube == NULL || a->a_stopping)
		return false;
	if (!a->a_flags->f_leader_elect && !a->a_flags->f_drain)
		return true;
	/* A drain that may not read leases cannot fence anyone: it goes on
	 * (logged once by kube.c) rather than never uninstalling. */
	if (a->a_flags->f_drain && a->a_lease.l_denied)
		return true;
	return lease_may_write(&a->a_lease, now);
}

static void
log_lease(struct actuator *a, enum lease_event ev)
{
	const struct lease *l = &a->a_lease;
	struct log_line ll;

	switch (ev) {
	case LEASE_EV_NONE:
		return;
	case LEASE_EV_ACQUIRED:
		log_begin(&ll, LOG_LVL_INFO,
		    a->a_flags->f_drain
		        ? "took the lease: provisioners still running stop "
		          "writing"
		        : "became the leader: this replica writes to "
		          "Kubernetes");
		log_str(&ll, "lease", a->a_flags->f_lease_name);
		log_str(&ll, "identity", a->a_identity);
		log_int(&ll, "transitions", l->l_rec.lr_transitions);
		if (l->l_fence_ms > now_ms())
			log_uint(
			    &ll, "writes_in_ms", l->l_fence_ms - now_ms());
		log_end(&ll);
		return;
	case LEASE_EV_LOST:
		log_begin(&ll, LOG_LVL_WARN,
		    "lost the lease: stopped writing to Kubernetes; standing "
		    "by");
		log_str(&ll, "lease", a->a_flags->f_lease_name);
		log_str(&ll, "holder", l->l_rec.lr_holder);
		log_end(&ll);
		return;
	case LEASE_EV_RELEASED:
		log_info("released the lease %s: a standby takes over at once",
		    a->a_flags->f_lease_name);
		return;
	case LEASE_EV_HELD:
		log_info("keeping the lease %s for %ds, so that provisioners "
		         "still running do not recreate the pools (delete the "
		         "lease to let them resume sooner)",
		    a->a_flags->f_lease_name, LEASE_HOLD_S);
		return;
	}
}

static void
on_lease(void *arg, const struct kube_reply *r)
{
	struct actuator *a = arg;

	log_lease(
	    a, lease_answer(&a->a_lease, r->kr_status, r->kr_body, now_ms()));
}

static void
exec_lease(struct actuator *a, uint64_t now)
{
	const char *ns = kube_namespace(a->a_kube);
	enum lease_op op;
	json_t *body;
	char path[512];
	uint64_t retry;

	/* At most the retry period between reads, a little less at random
	 * so that replicas do not read in step. */
	retry = LEASE_RETRY_MS - rng_range(0, LEASE_RETRY_MS / 5);
	op = lease_next(&a->a_lease, now, wall_ms(), ns,
	    a->a_flags->f_lease_name, retry, &body);
	if (op == LEASE_OP_NONE)
		return;
	snprintf(path, sizeof(path), LEASE_API "/namespaces/%s/leases", ns);
	if (op != LEASE_OP_CREATE)
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
		    "/%s", a->a_flags->f_lease_name);
	if (kube_send(a->a_kube,
	        op == LEASE_OP_GET          ? KV_LEASE_GET
	            : op == LEASE_OP_CREATE ? KV_LEASE_CREATE
	                                    : KV_LEASE_UPDATE,
	        op == LEASE_OP_GET          ? "GET"
	            : op == LEASE_OP_CREATE ? "POST"
	                                    : "PUT",
	        path, body != NULL ? KUBE_CONTENT_JSON : NULL, body, on_lease,
	        a) == -1) {
		struct kube_reply r = { .kr_status = 0,
			.kr_error = "the request could not be started" };

		on_lease(a, &r);
	}
}

void
exec_turn(struct actuator *a, uint64_t now)
{
	bool leader;
	size_t i;

	if (a->a_kube != NULL &&
	    (a->a_flags->f_leader_elect || a->a_flags->f_drain)) {
		log_lease(a, lease_tick(&a->a_lease, now));
		exec_lease(a, now);
	}
	a->a_may_write = exec_may_write(a, now);
	leader =
	    a->a_flags->f_leader_elect ? a->a_may_write : a->a_kube != NULL;
	if (leader != a->a_was_leader) {
		a->a_was_leader = leader;
		metric_set(a->a_m_leader, leader ? 1 : 0);
		/* Plan every class again: the gate changed what is sent. */
		for (i = 0; i < a->a_nclasses; i++)
			a->a_classes[i]->ac_dirty = true;
	}
	if (a->a_kube != NULL)
		exec_lists(a, now);
}

void
exec_events(struct actuator *a, uint64_t now)
{
	event_flush(a, a->a_may_write, now);
}

uint64_t
exec_deadline(const struct actuator *a, uint64_t now)
{
	uint64_t next = UINT64_MAX, t;
	int k;

	if (a->a_kube == NULL)
		return next;
	for (k = 0; k < LIST_COUNT; k++)
		if (!a->a_lists[k].al_busy && a->a_lists[k].al_next_ms < next)
			next = a->a_lists[k].al_next_ms;
	if (a->a_flags->f_leader_elect || a->a_flags->f_drain) {
		t = lease_deadline(&a->a_lease, now);
		if (t < next)
			next = t;
	}
	if (a->a_may_write && (t = event_deadline(a, now)) < next)
		next = t;
	return next;
}
