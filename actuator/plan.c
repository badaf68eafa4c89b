#include <string.h>

#include "plan.h"
#include "pool.h"

static void
wake_at(struct plan *p, uint64_t t)
{
	if (t < p->p_wake_ms)
		p->p_wake_ms = t;
}

/* The write the class needs next, timing aside; *not_before is when a
 * foreign object may be looked at again. */
static enum plan_write
next_write(
    const struct plan_input *in, uint32_t *replicas, uint64_t *not_before)
{
	const struct class_kube *k = &in->pi_class->ac_kube;
	const struct class_demand *d = &in->pi_class->ac_demand;
	uint32_t want = d->cd_have_target ? d->cd_target : in->pi_min_replicas;

	*not_before = 0;
	switch (k->ck_secret.os_state) {
	case OBJ_UNKNOWN:
	case OBJ_DELETING:
		return PW_NONE; /* the first list will tell */
	case OBJ_REREAD:
		return PW_SECRET_GET;
	case OBJ_FOREIGN:
		/* Someone else's: its owner may delete it, as we ask. */
		*not_before = k->ck_secret.os_recheck_ms;
		return PW_SECRET_GET;
	case OBJ_MISSING:
		return PW_SECRET_CREATE;
	case OBJ_STALE:
		return PW_SECRET_UPDATE;
	case OBJ_CURRENT:
		break;
	}
	switch (k->ck_pool.os_state) {
	case OBJ_UNKNOWN:
	case OBJ_DELETING: /* a pool being deleted: wait until it is gone */
		return PW_NONE;
	case OBJ_REREAD:
		return PW_POOL_GET;
	case OBJ_FOREIGN:
		*not_before = k->ck_pool.os_recheck_ms;
		return PW_POOL_GET;
	case OBJ_MISSING:
		*replicas = want;
		return PW_POOL_CREATE;
	case OBJ_STALE:
		/* The template only: replicas are the scale's business. */
		*replicas = k->ck_have_replicas ? k->ck_replicas : want;
		return PW_POOL_UPDATE;
	case OBJ_CURRENT:
		break;
	}
	if (d->cd_have_target &&
	    (!k->ck_have_replicas || k->ck_replicas != d->cd_target)) {
		*replicas = d->cd_target;
		return PW_SCALE;
	}
	return PW_NONE;
}

/* Whether the pool still owns VMs, as far as anything shows. */
static bool
pool_has_vms(const struct act_class *ac)
{
	return ac->ac_vms.cv_n > 0 || ac->ac_kube.ck_status_replicas > 0 ||
	    ac->ac_vms.cv_inflight > 0 || !ac->ac_vms.cv_fresh;
}

/* A retiring class: empty the pool, delete it, then the Secret.  Objects
 * someone else owns are left alone; *done when nothing of ours is left. */
static enum plan_write
next_retiring(
    const struct plan_input *in, uint32_t *replicas, bool *orphan, bool *done)
{
	const struct act_class *ac = in->pi_class;
	const struct class_kube *k = &ac->ac_kube;

	*done = false;
	switch (k->ck_pool.os_state) {
	case OBJ_UNKNOWN:
	case OBJ_DELETING:
		return PW_NONE;
	case OBJ_REREAD:
		return PW_POOL_GET;
	case OBJ_CURRENT:
	case OBJ_STALE:
		if (!k->ck_have_replicas || k->ck_replicas != 0) {
			*replicas = 0;
			return PW_SCALE;
		}
		if (pool_has_vms(ac) && !in->pi_orphan)
			return PW_NONE; /* they leave as their jobs end */
		*orphan = pool_has_vms(ac);
		return PW_POOL_DELETE;
	case OBJ_MISSING:
	case OBJ_FOREIGN:
		break;
	}
	switch (k->ck_secret.os_state) {
	case OBJ_UNKNOWN: /* Secrets are listed rarely: read it */
	case OBJ_REREAD:
		return PW_SECRET_GET;
	case OBJ_DELETING:
		return PW_NONE;
	case OBJ_CURRENT:
	case OBJ_STALE:
		return PW_SECRET_DELETE;
	case OBJ_MISSING:
	case OBJ_FOREIGN:
		break;
	}
	*done = !k->ck_busy && ac->ac_vms.cv_inflight == 0;
	return PW_NONE;
}

bool
plan_vm_pool_finalizer(const struct vm_seen *vm)
{
	json_t *f;
	size_t i;

	json_array_foreach(vm->vs_finalizers, i, f)
	{
		if (json_is_string(f) &&
		    strcmp(json_string_value(f), POOL_FINALIZER) == 0)
			return true;
	}
	return false;
}

/* Reclaim stopped VMs; release VMs the pool finalizer keeps in deletion
 * (research/kubevirt.md §2.3: deleted while the pool holds more VMs than
 * replicas, a VM keeps it forever). */
static void
plan_vms(const struct plan_input *in, struct plan *p)
{
	const struct class_vms *v = &in->pi_class->ac_vms;
	const struct vm_seen *vm;
	bool probed = false;
	uint64_t due;
	size_t i;

	/* Answers in flight, or a list that predates them: wait for news. */
	if (v->cv_inflight > 0 || !v->cv_fresh)
		return;
	for (i = 0; i < v->cv_n && p->p_nvm < PLAN_VM_MAX; i++) {
		vm = &v->cv_vms[i];
		if (vm->vs_state == VMS_TERMINATING) {
			if (vm->vs_has_vmi || vm->vs_deleted_ms == 0 ||
			    !plan_vm_pool_finalizer(vm))
				continue;
			due = vm->vs_deleted_ms + FINALIZER_GRACE_MS;
			if (in->pi_wall_ms < due) {
				wake_at(
				    p, in->pi_now_ms + (due - in->pi_wall_ms));
				continue;
			}
			p->p_vm[p->p_nvm++] =
			    (struct plan_vm){ PV_RELEASE, vm };
			continue;
		}
		if (vm->vs_state != VMS_STOPPED)
			continue;
		if (!boot_may_reclaim(&v->cv_boot, in->pi_now_ms)) {
			wake_at(p, v->cv_boot.bg_reclaim_at_ms);
			continue;
		}
		/* In a boot loop: one probe per period. */
		if (v->cv_boot.bg_loop && probed)
			continue;
		probed = true;
		p->p_vm[p->p_nvm++] = (struct plan_vm){ PV_DELETE, vm };
	}
	if (p->p_nvm > 0 && in->pi_now_ms < v->cv_retry_ms) {
		p->p_nvm = 0;
		wake_at(p, v->cv_retry_ms);
	}
}

void
plan_class(const struct plan_input *in, struct plan *p)
{
	const struct class_kube *k = &in->pi_class->ac_kube;
	uint64_t not_before, at;
	uint32_t replicas = 0;
	enum plan_write w;

	memset(p, 0, sizeof(*p));
	p->p_wake_ms = PLAN_NEVER;
	not_before = 0;
	if (in->pi_class->ac_retiring)
		w = next_retiring(in, &replicas, &p->p_orphan, &p->p_done);
	else
		w = next_write(in, &replicas, &not_before);
	/* While a write is out, its answer is the news to wait for: no
	 * deadline, however overdue a retry would be (a hanging request must
	 * not spin the loop). */
	if (w != PW_NONE && !k->ck_busy) {
		at = not_before > k->ck_retry_ms ? not_before : k->ck_retry_ms;
		if (in->pi_now_ms >= at) {
			p->p_write = w;
			p->p_replicas = replicas;
		} else
			wake_at(p, at);
	}
	p->p_synced = !in->pi_class->ac_retiring && w == PW_NONE &&
	    !k->ck_busy && in->pi_lists_fresh &&
	    k->ck_secret.os_state == OBJ_CURRENT &&
	    k->ck_pool.os_state == OBJ_CURRENT;
	/* Retiring: a stopped VM deleted before the pool is at 0 would be
	 * replaced. */
	if (!p->p_done &&
	    !(in->pi_class->ac_retiring &&
	        (!k->ck_have_replicas || k->ck_replicas != 0)))
		plan_vms(in, p);
}

const char *
plan_write_name(enum plan_write w)
{
	switch (w) {
	case PW_NONE:
		return "none";
	case PW_SECRET_GET:
		return "read secret";
	case PW_SECRET_CREATE:
		return "create secret";
	case PW_SECRET_UPDATE:
		return "update secret";
	case PW_POOL_GET:
		return "read pool";
	case PW_POOL_CREATE:
		return "create pool";
	case PW_POOL_UPDATE:
		return "update pool";
	case PW_SCALE:
		return "scale pool";
	case PW_POOL_DELETE:
		return "delete pool";
	case PW_SECRET_DELETE:
		return "delete secret";
	}
	return "?";
}

enum kube_verb
plan_write_verb(enum plan_write w)
{
	switch (w) {
	case PW_SECRET_GET:
		return KV_SECRET_GET;
	case PW_SECRET_CREATE:
		return KV_SECRET_CREATE;
	case PW_SECRET_UPDATE:
		return KV_SECRET_UPDATE;
	case PW_POOL_GET:
		return KV_POOL_GET;
	case PW_POOL_CREATE:
		return KV_POOL_CREATE;
	case PW_POOL_UPDATE:
		return KV_POOL_UPDATE;
	case PW_POOL_DELETE:
		return KV_POOL_DELETE;
	case PW_SECRET_DELETE:
		return KV_SECRET_DELETE;
	case PW_SCALE:
	case PW_NONE:
		break;
	}
	return KV_POOL_SCALE;
}

bool
plan_write_is_secret(enum plan_write w)
{
	return w == PW_SECRET_GET || w == PW_SECRET_CREATE ||
	    w == PW_SECRET_UPDATE || w == PW_SECRET_DELETE;
}

bool
plan_write_is_read(enum plan_write w)
{
	return w == PW_SECRET_GET || w == PW_POOL_GET;
}
