/*
 * Sending what was planned: each plan step becomes one Kubernetes request
 * whose answer goes back to observe.c.  Nothing here decides anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actuator.h"
#include "log.h"
#include "util.h"

/* What a request was, so its answer can be recorded. */
struct exec_req {
	struct actuator *er_a;
	struct act_class *er_class; /* NULL for lists */
	enum act_list_kind er_list;
	enum plan_write er_write;
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
	r->er_seq = ++a->a_seq;
	if (vm != NULL)
		memcpy(r->er_vm, vm, n);
	return r;
}

static void
on_list(void *arg, const struct kube_reply *r)
{
	struct exec_req *q = arg;

	observe_list(q->er_a, q->er_list, r, q->er_seq, now_ms());
	free(q);
}

static void
on_write(void *arg, const struct kube_reply *r)
{
	struct exec_req *q = arg;

	observe_write(
	    q->er_a, q->er_class, q->er_write, q->er_from, r, now_ms());
	free(q);
}

static void
on_vm(void *arg, const struct kube_reply *r)
{
	struct exec_req *q = arg;

	observe_vm_op(
	    q->er_a, q->er_class, q->er_vm_op, q->er_vm, r, now_ms());
	free(q);
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

void
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
		l->al_next_ms = now + lists[k].l_interval_ms;
		snprintf(path, sizeof(path),
		    "%s/namespaces/%s/%s?labelSelector=%s", lists[k].l_api,
		    kube_namespace(a->a_kube), lists[k].l_plural,
		    LABEL_MANAGED_BY "%3D" MANAGED_BY);
		q = req_new(a, NULL, NULL);
		q->er_list = (enum act_list_kind)k;
		if (kube_send(a->a_kube, lists[k].l_verb, "GET", path, NULL,
		        NULL, on_list, q) == -1) {
			free(q);
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
		}
		break;
	case PW_POOL_CREATE:
		method = "POST";
		body = pool_json(
		    &ac->ac_obj, ac->ac_conf, ns, p->p_replicas, NULL);
		/* FALLTHROUGH */
	case PW_POOL_GET:
	case PW_POOL_UPDATE:
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
		}
		break;
	case PW_NONE:
		return;
	}
	if (body != NULL && ctype == NULL)
		ctype = KUBE_CONTENT_JSON;
	q = req_new(a, ac, NULL);
	q->er_write = p->p_write;
	q->er_from = k->ck_replicas;
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
	if (kube_send(a->a_kube,
	        pv->pv_op == PV_DELETE ? KV_VM_DELETE : KV_VM_PATCH,
	        pv->pv_op == PV_DELETE ? "DELETE" : "PATCH", path,
	        pv->pv_op == PV_DELETE ? KUBE_CONTENT_JSON
	                               : KUBE_CONTENT_JSONPATCH,
	        body, on_vm, q) == -1) {
		free(q);
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

	if (p->p_write != PW_NONE)
		send_write(a, ac, p);
	if (p->p_nvm > 0)
		ac->ac_vms.cv_fresh = false;
	for (i = 0; i < p->p_nvm; i++)
		send_vm_op(a, ac, &p->p_vm[i], now);
}
