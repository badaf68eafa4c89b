/*
 * Reclaiming VMs whose runner finished (DESIGN §5): a pool VM that is
 * Stopped is deleted with a uid precondition so the pool replaces it; a
 * running or starting VM is never deleted.  VMs stuck in deletion by the
 * pool finalizer (research/kubevirt.md §2.3) are released, and a class
 * whose VMs power off right after boot is backed off (boot-loop guard).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actuator.h"
#include "log.h"
#include "util.h"

struct vm_op {
	struct act_class *vo_class;
	char vo_name[128];
	bool vo_delete; /* else: finalizer patch */
};

const char *
vm_state_name(enum vm_state s)
{
	switch (s) {
	case VMS_STARTING:
		return "starting";
	case VMS_RUNNING:
		return "running";
	case VMS_STOPPED:
		return "stopped";
	case VMS_TERMINATING:
		return "terminating";
	case VMS_OTHER:
	case VMS_COUNT:
		break;
	}
	return "other";
}

void
reclaim_setup(struct actuator *a)
{
	static const char *const cls[] = { "resource_class", NULL };
	struct metric_family *vms, *rec, *fin, *loop;
	struct act_class *ac;
	size_t i;
	int s;

	vms = metrics_family(a->a_metrics, METRIC_GAUGE, "vms",
	    "Pool VMs by state, as last listed.",
	    (const char *[]){ "resource_class", "state", NULL }, NULL, 0);
	rec =
	    metrics_family(a->a_metrics, METRIC_COUNTER, "reclaimed_vms_total",
	        "Stopped VMs deleted so that the pool replaces them.", cls,
	        NULL, 0);
	fin = metrics_family(a->a_metrics, METRIC_COUNTER,
	    "finalizers_removed_total",
	    "VMs released from a pool finalizer that kept them in deletion.",
	    cls, NULL, 0);
	loop = metrics_family(a->a_metrics, METRIC_GAUGE, "boot_loop",
	    "1 while the class's VMs power off right after boot and reclaim "
	    "is slowed down.",
	    cls, NULL, 0);
	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		for (s = 0; s < VMS_COUNT; s++)
			ac->ac_m_vms[s] = metric_series(vms,
			    (const char *[]){ ac->ac_conf->cc_name,
			        vm_state_name((enum vm_state)s) });
		ac->ac_m_reclaimed = metric_series(
		    rec, (const char *[]){ ac->ac_conf->cc_name });
		ac->ac_m_finalizers = metric_series(
		    fin, (const char *[]){ ac->ac_conf->cc_name });
		ac->ac_m_boot_loop = metric_series(
		    loop, (const char *[]){ ac->ac_conf->cc_name });
		backoff_init(&ac->ac_boot_backoff, BOOT_LOOP_BACKOFF_MS,
		    BOOT_LOOP_BACKOFF_CAP_MS);
	}
}

static const char *
str_at(json_t *obj, const char *a, const char *b)
{
	return json_string_value(json_object_get(json_object_get(obj, a), b));
}

/* RFC 3339 seconds ("2026-11-27T21:04:29Z") to ms since the epoch. */
static int
parse_time_ms(const char *s, uint64_t *ms)
{
	struct tm tm;
	const char *end;
	time_t t;

	if (s == NULL)
		return -1;
	memset(&tm, 0, sizeof(tm));
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return -1;
	if ((t = timegm(&tm)) == (time_t)-1 || t < 0)
		return -1;
	*ms = (uint64_t)t * 1000;
	return 0;
}

static enum vm_state
classify(json_t *vm)
{
	const char *ps = str_at(vm, "status", "printableStatus");

	if (json_object_get(
	        json_object_get(vm, "metadata"), "deletionTimestamp") != NULL)
		return VMS_TERMINATING;
	if (ps == NULL)
		return VMS_STARTING;
	if (strcmp(ps, "Stopped") == 0)
		return VMS_STOPPED;
	if (strcmp(ps, "Running") == 0)
		return VMS_RUNNING;
	if (strcmp(ps, "Provisioning") == 0 || strcmp(ps, "Starting") == 0 ||
	    strcmp(ps, "WaitingForVolumeBinding") == 0)
		return VMS_STARTING;
	if (strcmp(ps, "Terminating") == 0 || strcmp(ps, "Stopping") == 0)
		return VMS_TERMINATING;
	return VMS_OTHER;
}

static void
on_vm_op(struct actuator *a, void *arg, const struct kube_reply *r)
{
	struct vm_op *op = arg;
	struct act_class *ac = op->vo_class;

	(void)a;
	ac->ac_deleting--;
	if (r->kr_status < 0) { /* cancelled at shutdown */
		free(op);
		return;
	}
	if (r->kr_status >= 200 && r->kr_status < 300) {
		if (op->vo_delete) {
			metric_inc(ac->ac_m_reclaimed, 1);
			log_info("reclaimed stopped VM %s of pool %s",
			    op->vo_name, ac->ac_pool);
		} else {
			metric_inc(ac->ac_m_finalizers, 1);
			log_info("released VM %s from the pool finalizer that "
			         "kept it in deletion",
			    op->vo_name);
		}
	} else if (r->kr_status == 404 || r->kr_status == 409 ||
	    r->kr_status == 422)
		/* Gone, or replaced by a new VM with the same name (uid
		 * precondition), or changed since listed: nothing to do. */
		log_debug("VM %s: %s", op->vo_name, r->kr_error);
	else
		log_warnx("VM %s of pool %s: %s %s failed: %s", op->vo_name,
		    ac->ac_pool, kube_verbs[r->kr_verb].kv_verb,
		    kube_verbs[r->kr_verb].kv_resource, r->kr_error);
	free(op);
}

static void
vm_send(struct actuator *a, struct act_class *ac, const char *name, bool del,
    json_t *body)
{
	struct vm_op *op = xcalloc(1, sizeof(*op));
	char path[512];

	op->vo_class = ac;
	op->vo_delete = del;
	snprintf(op->vo_name, sizeof(op->vo_name), "%s", name);
	snprintf(path, sizeof(path),
	    VM_API "/namespaces/%s/virtualmachines/%s",
	    kube_namespace(a->a_kube), name);
	if (kube_send(a->a_kube, del ? KV_VM_DELETE : KV_VM_PATCH,
	        del ? "DELETE" : "PATCH", path,
	        del ? KUBE_CONTENT_JSON : KUBE_CONTENT_JSONPATCH, body,
	        on_vm_op, op) == -1) {
		free(op);
		return;
	}
	ac->ac_deleting++;
}

static void
delete_vm(struct actuator *a, struct act_class *ac, const char *name,
    const char *uid)
{
	vm_send(a, ac, name, true,
	    json_pack("{s:s,s:s,s:{s:s},s:s}", "kind", "DeleteOptions",
	        "apiVersion", "v1", "preconditions", "uid", uid,
	        "propagationPolicy", "Background"));
}

/* The pool only releases a deleted VM while it holds exactly `replicas`
 * VMs; deleted above that count, the VM keeps the pool finalizer forever.
 * Remove it, guarded by tests on uid and the finalizer list. */
static void
release_finalizer(struct actuator *a, struct act_class *ac, json_t *vm,
    const char *name, const char *uid)
{
	json_t *fins =
	    json_object_get(json_object_get(vm, "metadata"), "finalizers");
	json_t *keep = json_array(), *f;
	size_t i;

	json_array_foreach(fins, i, f) if (!json_is_string(f) ||
	    strcmp(json_string_value(f), POOL_FINALIZER) != 0)
	    json_array_append(keep, f);
	vm_send(a, ac, name, false,
	    json_pack("[{s:s,s:s,s:s},{s:s,s:s,s:O},{s:s,s:s,s:o}]", "op",
	        "test", "path", "/metadata/uid", "value", uid, "op", "test",
	        "path", "/metadata/finalizers", "value", fins, "op", "replace",
	        "path", "/metadata/finalizers", "value", keep));
}

static bool
has_pool_finalizer(json_t *vm)
{
	json_t *fins = json_object_get(
	           json_object_get(vm, "metadata"), "finalizers"),
	       *f;
	size_t i;

	json_array_foreach(fins, i, f) if (json_is_string(f) &&
	    strcmp(json_string_value(f), POOL_FINALIZER) == 0) return true;
	return false;
}

void
reclaim_boot_ok(struct act_class *ac, const char *why)
{
	if (!ac->ac_boot_loop && ac->ac_short_streak == 0)
		return;
	if (ac->ac_boot_loop)
		log_info("VMs of %s work again (%s); reclaiming normally",
		    ac->ac_conf->cc_name, why);
	ac->ac_boot_loop = false;
	ac->ac_short_streak = 0;
	ac->ac_failed_life_max_ms = 0;
	ac->ac_reclaim_not_before_ms = 0;
	backoff_reset(&ac->ac_boot_backoff);
	metric_set(ac->ac_m_boot_loop, 0);
}

/* Why a stopped VM counts as a failed boot, or NULL when it does not: it
 * stopped sooner than the threshold, or it stopped without a task ever
 * running in its class while it existed, other than by its idle timeout.
 * The second test needs demand seen since before the VM was created. */
static const char *
failed_boot(const struct actuator *a, const struct act_class *ac,
    uint64_t created_ms, uint64_t lifetime_ms)
{
	uint64_t idle = ac->ac_conf->cc_idle_timeout_ms;

	/* Reaching its idle timeout is how an unused VM is meant to stop. */
	if (idle > 0 && lifetime_ms >= idle)
		return NULL;
	if (lifetime_ms < a->a_flags->f_boot_loop_ms)
		return "stopped sooner after creation than the boot-loop "
		       "threshold";
	if (ac->ac_demand_since_wall_ms != 0 &&
	    ac->ac_demand_since_wall_ms <= created_ms &&
	    ac->ac_last_running_wall_ms < created_ms)
		return "stopped without any job running in its class";
	return NULL;
}

/* A VM's boot time, creation to Ready: the samples behind headroom: auto.
 * Each VM counts once: the one list pass that first sees it Ready after
 * mark (the latest Ready time counted by earlier passes). */
static void
note_ready(struct act_class *ac, json_t *vm, uint64_t created_ms,
    uint64_t mark, uint64_t *newmark)
{
	json_t *conds = json_object_get(
	           json_object_get(vm, "status"), "conditions"),
	       *c;
	uint64_t ready_ms;
	size_t k;

	json_array_foreach(conds, k, c)
	{
		if (!json_is_string(json_object_get(c, "type")) ||
		    strcmp(json_string_value(json_object_get(c, "type")),
		        "Ready") != 0 ||
		    !json_is_string(json_object_get(c, "status")) ||
		    strcmp(json_string_value(json_object_get(c, "status")),
		        "True") != 0 ||
		    parse_time_ms(json_string_value(json_object_get(
		                      c, "lastTransitionTime")),
		        &ready_ms) == -1 ||
		    ready_ms < created_ms || ready_ms <= mark)
			continue;
		scale_note_boot(&ac->ac_scale, ready_ms - created_ms);
		if (ready_ms > *newmark)
			*newmark = ready_ms;
		return;
	}
}

/* Counts each stopped VM once towards the boot-loop guard. */
static void
note_stopped(struct actuator *a, struct act_class *ac, const char *uid,
    uint64_t created_ms, uint64_t lifetime_ms, uint64_t now)
{
	struct log_line ll;
	const char *why;
	uint64_t delay;
	unsigned int i;

	for (i = 0; i < SEEN_STOPPED_MAX; i++)
		if (ac->ac_seen_stopped[i] != NULL &&
		    strcmp(ac->ac_seen_stopped[i], uid) == 0)
			return;
	i = ac->ac_seen_next++ % SEEN_STOPPED_MAX;
	free(ac->ac_seen_stopped[i]);
	ac->ac_seen_stopped[i] = xstrdup(uid);
	if ((why = failed_boot(a, ac, created_ms, lifetime_ms)) == NULL) {
		reclaim_boot_ok(ac, "a VM stopped normally");
		return;
	}
	if (lifetime_ms > ac->ac_failed_life_max_ms)
		ac->ac_failed_life_max_ms = lifetime_ms;
	if (++ac->ac_short_streak < BOOT_LOOP_STREAK || ac->ac_boot_loop)
		return;
	ac->ac_boot_loop = true;
	delay = backoff_next(&ac->ac_boot_backoff);
	ac->ac_reclaim_not_before_ms = now + delay;
	metric_set(ac->ac_m_boot_loop, 1);
	log_begin(&ll, LOG_LVL_ERROR,
	    "boot loop: VMs power off right after they start; the runner "
	    "token, the CircleCI address or the VM image is probably wrong. "
	    "Replacing stopped VMs slowly until one stays up");
	log_str(&ll, "resource_class", ac->ac_conf->cc_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_str(&ll, "reason", why);
	log_uint(&ll, "failed_vms", ac->ac_short_streak);
	log_uint(&ll, "threshold_ms", a->a_flags->f_boot_loop_ms);
	log_uint(&ll, "next_reclaim_in_ms", delay);
	log_end(&ll);
}

void
reclaim_class(
    struct actuator *a, struct act_class *ac, json_t *vms, uint64_t now)
{
	uint64_t wall = wall_ms(), created, deleted, lifetime;
	uint64_t boot_mark = ac->ac_boot_mark_ms;
	bool inflight = ac->ac_deleting > 0, deleted_one = false;
	const char *name, *uid;
	enum vm_state st;
	json_t *vm;
	size_t i;
	int s;

	memset(ac->ac_vms, 0, sizeof(ac->ac_vms));
	json_array_foreach(vms, i, vm)
	{
		st = classify(vm);
		ac->ac_vms[st]++;
		name = str_at(vm, "metadata", "name");
		uid = str_at(vm, "metadata", "uid");
		if (name == NULL || uid == NULL ||
		    parse_time_ms(str_at(vm, "metadata", "creationTimestamp"),
		        &created) == -1)
			continue;
		lifetime = wall > created ? wall - created : 0;
		if (st == VMS_TERMINATING) {
			if (!inflight && has_pool_finalizer(vm) &&
			    !json_is_true(json_object_get(
			        json_object_get(vm, "status"), "created")) &&
			    parse_time_ms(
			        str_at(vm, "metadata", "deletionTimestamp"),
			        &deleted) == 0 &&
			    wall > deleted + FINALIZER_GRACE_MS)
				release_finalizer(a, ac, vm, name, uid);
			continue;
		}
		if (st == VMS_RUNNING)
			note_ready(
			    ac, vm, created, boot_mark, &ac->ac_boot_mark_ms);
		/* A VM that stays up twice as long as the failed ones lived
		 * (and at least the threshold) shows the class works again. */
		if (st == VMS_RUNNING && ac->ac_boot_loop &&
		    lifetime >= a->a_flags->f_boot_loop_ms &&
		    lifetime >= 2 * ac->ac_failed_life_max_ms)
			reclaim_boot_ok(ac, "a VM stays up");
		if (st != VMS_STOPPED)
			continue;
		note_stopped(a, ac, uid, created, lifetime, now);
		if (inflight)
			continue; /* the last pass's deletes are in flight */
		if (ac->ac_boot_loop) {
			/* One probe per backoff period. */
			if (now < ac->ac_reclaim_not_before_ms || deleted_one)
				continue;
			ac->ac_reclaim_not_before_ms =
			    now + backoff_next(&ac->ac_boot_backoff);
		}
		delete_vm(a, ac, name, uid);
		deleted_one = true;
	}
	for (s = 0; s < VMS_COUNT; s++)
		metric_set(ac->ac_m_vms[s], ac->ac_vms[s]);
}
