/*
 * What Kubernetes answered becomes what the classes know: lists of pools,
 * Secrets and VMs, and the answers to each class's writes.  Nothing is
 * sent from here; a class that learnt something is marked for planning.
 * Every byte of an answer is checked before it is believed: a field of the
 * wrong type or out of range is as good as absent.
 */
#include <stdio.h>
#include <malloc.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actuator.h"
#include "log.h"
#include "util.h"

const char *
obj_state_name(enum obj_state s)
{
	switch (s) {
	case OBJ_UNKNOWN:
		return "unknown";
	case OBJ_MISSING:
		return "missing";
	case OBJ_STALE:
		return "outdated";
	case OBJ_CURRENT:
		return "current";
	case OBJ_FOREIGN:
		return "not managed by runner-provisioner";
	case OBJ_REREAD:
		return "changed; reading it again";
	case OBJ_DELETING:
		return "being deleted";
	}
	return "?";
}

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

static json_t *
meta(json_t *obj)
{
	return json_object_get(obj, "metadata");
}

static const char *
meta_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(meta(obj), key));
}

static const char *
meta_map_str(json_t *obj, const char *map, const char *key)
{
	return json_string_value(
	    json_object_get(json_object_get(meta(obj), map), key));
}

/* Made by runner-provisioner, and by this installation: another one in
 * the namespace labels its objects with its own --lease-name (objects
 * from before that label are taken as ours). */
static bool
ours(const struct actuator *a, json_t *obj)
{
	const char *v = meta_map_str(obj, "labels", LABEL_MANAGED_BY);
	const char *inst = meta_map_str(obj, "labels", LABEL_INSTANCE);

	return v != NULL && strcmp(v, MANAGED_BY) == 0 &&
	    (inst == NULL || strcmp(inst, a->a_flags->f_lease_name) == 0);
}

static bool
deleting(json_t *obj)
{
	return json_object_get(meta(obj), "deletionTimestamp") != NULL;
}

/* A replica count: an integer in [0, INT32_MAX] (Kubernetes' int32). */
static int
json_count(json_t *v, uint32_t *out)
{
	json_int_t i;

	if (!json_is_integer(v))
		return -1;
	i = json_integer_value(v);
	if (i < 0 || i > INT32_MAX)
		return -1;
	*out = (uint32_t)i;
	return 0;
}

/* RFC 3339 ("2026-11-27T21:04:29Z", fractions and offsets allowed) to ms
 * since the epoch. */
static int
parse_time_ms(const char *s, uint64_t *ms)
{
	struct tm tm;
	const char *p;
	long off = 0;
	time_t t;

	if (s == NULL)
		return -1;
	memset(&tm, 0, sizeof(tm));
	if ((p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return -1;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	if (*p == '+' || *p == '-') {
		if (strlen(p) != 6 || p[3] != ':')
			return -1;
		off = ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 +
		    ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
		if (*p == '-')
			off = -off;
	} else if (strcmp(p, "Z") != 0)
		return -1;
	if ((t = timegm(&tm)) == (time_t)-1 || t - off < 0)
		return -1;
	*ms = (uint64_t)(t - off) * 1000;
	return 0;
}

static void
set_rv(struct obj_seen *os, json_t *obj)
{
	const char *rv = meta_str(obj, "resourceVersion");
	const char *uid = meta_str(obj, "uid");

	free(os->os_rv);
	os->os_rv = rv != NULL ? xstrdup(rv) : NULL;
	free(os->os_uid);
	os->os_uid = uid != NULL ? xstrdup(uid) : NULL;
}

static void
set_state(struct obj_seen *os, enum obj_state st, uint64_t now)
{
	os->os_state = st;
	if (st == OBJ_FOREIGN)
		os->os_recheck_ms = now + FOREIGN_RECHECK_MS;
}

/* Records a pool as listed or answered; -1 when it is not a pool. */
static int
pool_seen(
    const struct actuator *a, struct act_class *ac, json_t *pool, uint64_t now)
{
	struct class_kube *k = &ac->ac_kube;
	const char *owner = meta_map_str(pool, "annotations", ANNOT_CLASS);
	const char *hash = meta_map_str(pool, "annotations", ANNOT_HASH);
	const char *name = meta_str(pool, "name");
	json_t *status = json_object_get(pool, "status");

	if (name == NULL || strcmp(name, ac->ac_pool) != 0)
		return -1;
	if (!ours(a, pool)) {
		if (k->ck_pool.os_state != OBJ_FOREIGN)
			log_error("pool %s exists but is not managed by "
			          "runner-provisioner (no %s=%s label): not "
			          "touching it; rename or delete it",
			    ac->ac_pool, LABEL_MANAGED_BY, MANAGED_BY);
		set_state(&k->ck_pool, OBJ_FOREIGN, now);
		return 0;
	}
	if (owner != NULL && strcmp(owner, ac->ac_name) != 0) {
		if (k->ck_pool.os_state != OBJ_FOREIGN)
			log_error(
			    "pool %s belongs to resource class %s, not %s "
			    "(another deployment in this namespace?): not "
			    "touching it",
			    ac->ac_pool, owner, ac->ac_name);
		set_state(&k->ck_pool, OBJ_FOREIGN, now);
		return 0;
	}
	set_rv(&k->ck_pool, pool);
	if (deleting(pool))
		set_state(&k->ck_pool, OBJ_DELETING, now);
	else
		set_state(&k->ck_pool,
		    hash != NULL && ac->ac_obj.po_hash[0] != '\0' &&
		            strcmp(hash, ac->ac_obj.po_hash) == 0
		        ? OBJ_CURRENT
		        : OBJ_STALE,
		    now);
	k->ck_have_replicas =
	    json_count(
	        json_object_get(json_object_get(pool, "spec"), "replicas"),
	        &k->ck_replicas) == 0;
	if (json_count(json_object_get(status, "replicas"),
	        &k->ck_status_replicas) == -1)
		k->ck_status_replicas = 0;
	if (json_count(json_object_get(status, "readyReplicas"),
	        &k->ck_ready_replicas) == -1)
		k->ck_ready_replicas = 0;
	return 0;
}

static int
secret_seen(const struct actuator *a, struct act_class *ac, json_t *secret,
    uint64_t now)
{
	struct class_kube *k = &ac->ac_kube;
	const char *name = meta_str(secret, "name");
	const char *data = json_string_value(
	    json_object_get(json_object_get(secret, "data"), SECRET_KEY));

	if (name == NULL || strcmp(name, ac->ac_obj.po_secret) != 0)
		return -1;
	if (!ours(a, secret)) {
		if (k->ck_secret.os_state != OBJ_FOREIGN)
			log_error(
			    "secret %s exists but is not managed by "
			    "runner-provisioner: not touching it; rename "
			    "or delete it",
			    ac->ac_obj.po_secret);
		set_state(&k->ck_secret, OBJ_FOREIGN, now);
		return 0;
	}
	set_rv(&k->ck_secret, secret);
	if (deleting(secret))
		set_state(&k->ck_secret, OBJ_DELETING, now);
	else
		set_state(&k->ck_secret,
		    data != NULL && ac->ac_obj.po_userdata_b64 != NULL &&
		            strcmp(data, ac->ac_obj.po_userdata_b64) == 0
		        ? OBJ_CURRENT
		        : OBJ_STALE,
		    now);
	return 0;
}

/* A list tells nothing new about an object while a request about it is
 * out, or when one finished after the list was sent: its answer is
 * fresher. */
static bool
list_applies(const struct obj_seen *os, uint64_t seq)
{
	return !os->os_busy && os->os_done_seq <= seq;
}

/* The pool a listed pool or Secret ("<pool>-userdata") is named after,
 * into name; -1 when it is not one of ours by name. */
static int
listed_pool(bool pools, const char *n, char *name, size_t size)
{
	size_t len = strlen(n), sfx = sizeof(SECRET_SUFFIX) - 1;

	if (pools) {
		if (len > POOL_NAME_MAX)
			return -1;
		strlcpy_rp(name, n, size);
		return 0;
	}
	if (len <= sfx || strcmp(n + len - sfx, SECRET_SUFFIX) != 0 ||
	    len - sfx > POOL_NAME_MAX || len - sfx >= size)
		return -1;
	memcpy(name, n, len - sfx);
	name[len - sfx] = '\0';
	return 0;
}

static void
objects_listed(struct actuator *a, enum act_list_kind kind, json_t *items,
    uint64_t seq, uint64_t now)
{
	bool pools = kind == LIST_POOLS;
	struct act_class *ac;
	struct obj_seen *os;
	char name[POOL_NAME_MAX + 1];
	const char *n;
	json_t *it;
	size_t i;

	for (i = 0; i < a->a_nclasses; i++)
		a->a_classes[i]->ac_listed = false;
	json_array_foreach(items, i, it)
	{
		if ((n = meta_str(it, "name")) == NULL ||
		    listed_pool(pools, n, name, sizeof(name)) == -1)
			continue;
		if ((ac = act_class_by_pool(a, name)) == NULL) {
			/* Ours, of a class no longer configured: retire it.
			 * (With --dry-run nothing is listed.) */
			if (!ours(a, it))
				continue;
			ac = act_class_retire_new(a, name,
			    meta_map_str(it, "annotations", ANNOT_CLASS));
		}
		ac->ac_listed = true;
		os = pools ? &ac->ac_kube.ck_pool : &ac->ac_kube.ck_secret;
		if (list_applies(os, seq))
			(void)(pools ? pool_seen(a, ac, it, now)
			             : secret_seen(a, ac, it, now));
	}
	for (i = 0; i < a->a_nclasses; i++) {
		ac = a->a_classes[i];
		ac->ac_dirty = true;
		os = pools ? &ac->ac_kube.ck_pool : &ac->ac_kube.ck_secret;
		/* A foreign object carries no label of ours, so no list shows
		 * it: only reading it by name tells it is gone. */
		if (ac->ac_listed || !list_applies(os, seq) ||
		    os->os_state == OBJ_FOREIGN || os->os_state == OBJ_MISSING)
			continue;
		if (pools && !ac->ac_retiring &&
		    (os->os_state == OBJ_CURRENT || os->os_state == OBJ_STALE))
			log_warnx("pool %s disappeared; creating it again",
			    ac->ac_pool);
		set_state(os, OBJ_MISSING, now);
		if (pools) {
			ac->ac_kube.ck_have_replicas = false;
			ac->ac_kube.ck_status_replicas = 0;
		}
	}
}

static enum vm_state
classify(json_t *vm)
{
	const char *ps = json_string_value(
	    json_object_get(json_object_get(vm, "status"), "printableStatus"));

	if (json_object_get(meta(vm), "deletionTimestamp") != NULL)
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

/* When a stopped VM stopped: its Ready condition's last transition. */
static uint64_t
stopped_at(json_t *vm, uint64_t wall)
{
	json_t *conds = json_object_get(
	           json_object_get(vm, "status"), "conditions"),
	       *c;
	uint64_t t;
	size_t i;

	json_array_foreach(conds, i, c)
	{
		if (json_is_string(json_object_get(c, "type")) &&
		    strcmp(json_string_value(json_object_get(c, "type")),
		        "Ready") == 0 &&
		    parse_time_ms(json_string_value(json_object_get(
		                      c, "lastTransitionTime")),
		        &t) == 0 &&
		    t <= wall)
			return t;
	}
	return wall;
}

/* One listed VM; -1 when it lacks what reclaiming it would need. */
static int
vm_parse(json_t *it, uint64_t wall, struct vm_seen *vs)
{
	const char *name = meta_str(it, "name"), *uid = meta_str(it, "uid");
	const char *rv = meta_str(it, "resourceVersion");
	json_t *fins = json_object_get(meta(it), "finalizers");

	memset(vs, 0, sizeof(*vs));
	if (name == NULL || uid == NULL || rv == NULL ||
	    parse_time_ms(
	        meta_str(it, "creationTimestamp"), &vs->vs_created_ms) == -1)
		return -1;
	vs->vs_state = classify(it);
	if (vs->vs_state == VMS_TERMINATING &&
	    parse_time_ms(
	        meta_str(it, "deletionTimestamp"), &vs->vs_deleted_ms) == -1)
		vs->vs_deleted_ms = 0;
	if (vs->vs_state == VMS_STOPPED)
		vs->vs_stopped_ms = stopped_at(it, wall);
	vs->vs_has_vmi = json_is_true(
	    json_object_get(json_object_get(it, "status"), "created"));
	if (json_is_array(fins))
		vs->vs_finalizers = json_incref(fins);
	vs->vs_name = xstrdup(name);
	vs->vs_uid = xstrdup(uid);
	vs->vs_rv = xstrdup(rv);
	return 0;
}

static void
vm_seen_free(struct vm_seen *vs)
{
	free(vs->vs_name);
	free(vs->vs_uid);
	free(vs->vs_rv);
	json_decref(vs->vs_finalizers);
}

static int
vm_cmp(const void *x, const void *y)
{
	const struct vm_seen *a = x, *b = y;

	return strcmp(a->vs_uid, b->vs_uid);
}

static const struct vm_seen *
vm_find(const struct class_vms *cv, const char *uid)
{
	struct vm_seen key = { .vs_uid = (char *)(uintptr_t)uid };

	if (cv->cv_n == 0)
		return NULL;
	return bsearch(
	    &key, cv->cv_vms, cv->cv_n, sizeof(*cv->cv_vms), vm_cmp);
}

static void
log_boot_event(struct actuator *a, struct act_class *ac, enum boot_event ev,
    const char *why)
{
	const struct boot_guard *g = &ac->ac_vms.cv_boot;
	struct log_line ll;

	if (ev == BOOT_EV_RECOVERED) {
		log_info("VMs of %s work again (%s); reclaiming normally",
		    ac->ac_name, why);
		event_record(a, ac, EVENT_NORMAL, "BootLoopEnded", "Reclaim",
		    "VMs work again (%s): reclaiming stopped VMs normally",
		    why);
		return;
	}
	if (ev != BOOT_EV_LOOP)
		return;
	log_begin(&ll, LOG_LVL_ERROR,
	    "boot loop: VMs power off right after they start; the runner "
	    "token, the CircleCI address or the VM image is probably wrong. "
	    "Replacing stopped VMs slowly until one stays up");
	log_str(&ll, "resource_class", ac->ac_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_str(&ll, "reason", why);
	log_uint(&ll, "failed_vms", g->bg_streak);
	log_uint(&ll, "threshold_ms", a->a_flags->f_boot_loop_ms);
	log_uint(&ll, "next_reclaim_in_ms", boot_probe_delay_ms(g));
	log_end(&ll);
	event_record(a, ac, EVENT_WARNING, "BootLoop", "Reclaim",
	    "%u VMs in a row powered off without running a job (%s): the "
	    "runner token, the CircleCI address or the VM image is probably "
	    "wrong; stopped VMs are replaced slowly",
	    g->bg_streak, why);
}

/* The boot-loop guard sees each VM that stopped since the last list once,
 * and every running VM's age. */
static void
vms_judge(struct actuator *a, struct act_class *ac, struct vm_seen *vms,
    size_t n, uint64_t now, uint64_t wall)
{
	struct class_vms *cv = &ac->ac_vms;
	const struct vm_seen *old;
	struct boot_params bp;
	enum boot_verdict v;
	enum boot_event ev;
	uint64_t life;
	size_t i;

	bp.bp_idle_timeout_ms =
	    ac->ac_conf != NULL ? ac->ac_conf->cc_idle_timeout_ms : 0;
	bp.bp_stay_up_ms = a->a_flags->f_boot_loop_ms;
	log_boot_event(a, ac,
	    boot_note_evidence(&cv->cv_boot, &ac->ac_demand.cd_evidence),
	    "a job ran");
	for (i = 0; i < n; i++) {
		if (vms[i].vs_state == VMS_RUNNING) {
			life = wall > vms[i].vs_created_ms
			    ? wall - vms[i].vs_created_ms
			    : 0;
			log_boot_event(a, ac,
			    boot_note_running(&cv->cv_boot, &bp, life),
			    "a VM stays up");
			continue;
		}
		if (vms[i].vs_state != VMS_STOPPED)
			continue;
		old = vm_find(cv, vms[i].vs_uid);
		if (old != NULL && old->vs_state == VMS_STOPPED)
			continue; /* judged when it stopped */
		v = boot_judge(&bp, &ac->ac_demand.cd_evidence,
		    vms[i].vs_created_ms, vms[i].vs_stopped_ms);
		life = vms[i].vs_stopped_ms > vms[i].vs_created_ms
		    ? vms[i].vs_stopped_ms - vms[i].vs_created_ms
		    : 0;
		log_debug("VM %s of pool %s stopped after %llu ms: %s",
		    vms[i].vs_name, ac->ac_pool, (unsigned long long)life,
		    boot_verdict_name(v));
		ev = boot_note_stopped(&cv->cv_boot, v, life, now, wall);
		log_boot_event(a, ac, ev,
		    v == BOOT_FAILED ? boot_verdict_name(v)
		                     : "a VM stopped normally");
	}
}

static void
vms_install(struct act_class *ac, struct vm_seen *vms, size_t n, uint64_t seq)
{
	struct class_vms *cv = &ac->ac_vms;
	size_t i;

	for (i = 0; i < cv->cv_n; i++)
		vm_seen_free(&cv->cv_vms[i]);
	free(cv->cv_vms);
	cv->cv_vms = vms;
	cv->cv_n = n;
	memset(cv->cv_count, 0, sizeof(cv->cv_count));
	for (i = 0; i < n; i++)
		cv->cv_count[vms[i].vs_state]++;
	/* VM requests wait for a list sent after the last ones finished:
	 * an older one may still show what they changed. */
	cv->cv_fresh = cv->cv_inflight == 0 && seq > cv->cv_done_seq;
	ac->ac_dirty = true;
}

/* The class's position in a_classes, or -1. */
static ssize_t
class_index(const struct actuator *a, const char *pool)
{
	size_t lo = 0, hi = a->a_nclasses, mid;
	int c;

	if (pool == NULL)
		return -1;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if ((c = strcmp(pool, a->a_classes[mid]->ac_pool)) == 0)
			return (ssize_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

static void
vms_listed(struct actuator *a, json_t *items, uint64_t seq, uint64_t now)
{
	struct vm_seen **per, vs;
	size_t *n, *cap, i, c;
	uint64_t wall = wall_ms();
	struct act_class *ac;
	ssize_t at;
	json_t *it;

	per = xcalloc(a->a_nclasses + 1, sizeof(*per));
	n = xcalloc(a->a_nclasses + 1, sizeof(*n));
	cap = xcalloc(a->a_nclasses + 1, sizeof(*cap));
	json_array_foreach(items, i, it)
	{
		at = class_index(a, meta_map_str(it, "labels", LABEL_CLASS));
		if (at < 0 || vm_parse(it, wall, &vs) == -1)
			continue;
		c = (size_t)at;
		if (n[c] == cap[c]) {
			cap[c] = cap[c] ? 2 * cap[c] : 8;
			per[c] = xrealloc(per[c], cap[c], sizeof(*per[c]));
		}
		per[c][n[c]++] = vs;
	}
	for (i = 0; i < a->a_nclasses; i++) {
		ac = a->a_classes[i];
		if (n[i] > 0)
			qsort(per[i], n[i], sizeof(*per[i]), vm_cmp);
		vms_judge(a, ac, per[i], n[i], now, wall);
		vms_install(ac, per[i], n[i], seq);
	}
	free(per);
	free(n);
	free(cap);
}

void
observe_list(struct actuator *a, enum act_list_kind kind,
    const struct kube_reply *r, uint64_t seq, uint64_t now)
{
	struct act_list *l = &a->a_lists[kind];
	json_t *items = json_object_get(r->kr_body, "items");

	l->al_busy = false;
	if (r->kr_status < 0)
		return;
	l->al_denied = r->kr_status == 403;
	if (r->kr_status != 200 || !json_is_array(items)) {
		log_debug("listing %s failed: %s",
		    kube_verbs[r->kr_verb].kv_resource, r->kr_error);
		return;
	}
	l->al_ok_ms = now;
	l->al_ok_seq = seq;
	if (kind == LIST_VMS)
		vms_listed(a, items, seq, now);
	else
		objects_listed(a, kind, items, seq, now);
	/* The list was parsed into a throwaway tree: give the heap back. */
	if (kind == LIST_VMS)
		malloc_trim(0);
}

static void
log_scaled(
    struct actuator *a, struct act_class *ac, uint32_t from, uint32_t to)
{
	struct log_line ll;
	char msg[POOL_NAME_MAX + 64];

	snprintf(msg, sizeof(msg), "scaled %s from %u to %u", ac->ac_pool,
	    from, to);
	log_begin(&ll, LOG_LVL_INFO, msg);
	log_str(&ll, "resource_class", ac->ac_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_uint(&ll, "from", from);
	log_uint(&ll, "to", to);
	log_uint(&ll, "unclaimed_tasks", ac->ac_demand.cd_unclaimed);
	log_uint(&ll, "running_tasks", ac->ac_demand.cd_running);
	log_end(&ll);
	metric_inc(
	    to > from ? ac->ac_m.cm_scale_up : ac->ac_m.cm_scale_down, 1);
	if (ac->ac_retiring)
		event_record(a, ac, EVENT_NORMAL, "ScaledToZero",
		    a->a_flags->f_drain ? "Drain" : "Retire",
		    "Scaled the pool from %u to 0 (%s); running VMs finish "
		    "their jobs",
		    from,
		    a->a_flags->f_drain
		        ? "uninstalling"
		        : "its resource class is not configured");
	else if (to > from)
		event_record(a, ac, EVENT_NORMAL, "ScaledUp", "Scale",
		    "Scaled the pool from %u to %u (%u unclaimed, %u running "
		    "tasks)",
		    from, to, ac->ac_demand.cd_unclaimed,
		    ac->ac_demand.cd_running);
	else
		event_record(a, ac, EVENT_NORMAL, "ScaledDown", "Scale",
		    "Scaled the pool from %u to %u (%u unclaimed, %u running "
		    "tasks); no running VM is stopped",
		    from, to, ac->ac_demand.cd_unclaimed,
		    ac->ac_demand.cd_running);
}

/* A delete answered: the Status, or the object still held by finalizers. */
static void
deleted(struct actuator *a, struct act_class *ac, enum plan_write w,
    json_t *body, uint64_t now)
{
	bool secret = w == PW_SECRET_DELETE;
	struct obj_seen *os =
	    secret ? &ac->ac_kube.ck_secret : &ac->ac_kube.ck_pool;
	const char *what = secret ? ac->ac_obj.po_secret : ac->ac_pool;
	const char *name = meta_str(body, "name");

	if (name != NULL && strcmp(name, what) == 0 && deleting(body)) {
		set_rv(os, body);
		set_state(os, OBJ_DELETING, now);
	} else
		set_state(os, OBJ_MISSING, now);
	if (secret) {
		log_info("deleted secret %s of resource class %s", what,
		    ac->ac_name);
		return;
	}
	ac->ac_kube.ck_have_replicas = false;
	if (ac->ac_vms.cv_n > 0) {
		log_warnx(
		    "deleted pool %s of resource class %s at the drain "
		    "deadline, leaving its %zu VMs behind: those running "
		    "a job finish it and power off; delete them then "
		    "with kubectl delete vm -l %s=%s",
		    what, ac->ac_name, ac->ac_vms.cv_n, LABEL_CLASS, what);
		event_record(a, ac, EVENT_WARNING, "DeletedLeavingVMs",
		    "Drain",
		    "Deleted the pool at the drain deadline; its %zu VMs are "
		    "left to finish their jobs",
		    ac->ac_vms.cv_n);
		return;
	}
	log_info("deleted pool %s of resource class %s: it had no VMs left",
	    what, ac->ac_name);
	event_record(a, ac, EVENT_NORMAL, "Deleted",
	    a->a_flags->f_drain ? "Drain" : "Retire",
	    "Deleted the pool (%s): it had no VMs left",
	    a->a_flags->f_drain ? "uninstalling"
	                        : "its resource class is not configured");
}

/* A 2xx answer: the object as the server now has it.  -1 when the body
 * does not say what the write should have made of it. */
static int
write_done(struct actuator *a, struct act_class *ac, enum plan_write w,
    uint32_t from, json_t *body, uint64_t now)
{
	struct class_kube *k = &ac->ac_kube;
	uint32_t replicas;

	switch (w) {
	case PW_SECRET_GET:
	case PW_SECRET_CREATE:
	case PW_SECRET_UPDATE:
		if (secret_seen(a, ac, body, now) == -1)
			return -1;
		if (w == PW_SECRET_CREATE)
			log_info("created secret %s (cloud-init for %s)",
			    ac->ac_obj.po_secret, ac->ac_name);
		else if (w == PW_SECRET_UPDATE)
			log_info("updated secret %s: VMs created from now on "
			         "get the new cloud-init",
			    ac->ac_obj.po_secret);
		return 0;
	case PW_POOL_GET:
	case PW_POOL_CREATE:
	case PW_POOL_UPDATE:
		if (pool_seen(a, ac, body, now) == -1)
			return -1;
		if (w == PW_POOL_CREATE)
			log_info("created pool %s for %s with %u replicas",
			    ac->ac_pool, ac->ac_name,
			    k->ck_have_replicas ? k->ck_replicas : 0);
		else if (w == PW_POOL_UPDATE) {
			log_info(
			    "updated pool %s to the new configuration: new "
			    "VMs use it, running VMs are left alone",
			    ac->ac_pool);
			event_record(a, ac, EVENT_NORMAL, "TemplateUpdated",
			    "Update",
			    "Updated the VM template to the new "
			    "configuration: new VMs use it, running VMs are "
			    "left alone");
		}
		return 0;
	case PW_POOL_DELETE:
	case PW_SECRET_DELETE:
		deleted(a, ac, w, body, now);
		return 0;
	case PW_SCALE:
		/* The Scale subresource, or the pool: spec.replicas either
		 * way.  Without it nothing is known: read the pool. */
		if (json_count(json_object_get(
		                   json_object_get(body, "spec"), "replicas"),
		        &replicas) == -1)
			return -1;
		k->ck_have_replicas = true;
		k->ck_replicas = replicas;
		log_scaled(a, ac, from, replicas);
		return 0;
	case PW_NONE:
		break;
	}
	return -1;
}

/* A 403: the class is not ready until that verb works again, and one
 * Event says what the Role lacks. */
static void
denied(struct actuator *a, struct act_class *ac, const char *action,
    const struct kube_reply *r)
{
	uint32_t bit = 1u << r->kr_verb;

	if (!(ac->ac_kube.ck_denied & bit))
		event_record(a, ac, EVENT_WARNING, "Forbidden", action,
		    "Kubernetes denied %s on %s: grant it to the "
		    "provisioner's "
		    "Role",
		    kube_verbs[r->kr_verb].kv_verb,
		    kube_verbs[r->kr_verb].kv_resource);
	ac->ac_kube.ck_denied |= bit;
}

static void
write_failed(struct act_class *ac, enum plan_write w,
    const struct kube_reply *r, const char *why, uint64_t now)
{
	struct class_kube *k = &ac->ac_kube;
	bool secret = plan_write_is_secret(w);
	struct obj_seen *os = secret ? &k->ck_secret : &k->ck_pool;
	uint64_t delay = backoff_next(&k->ck_backoff);
	struct log_line ll;

	if (r->kr_retry_after_ms > delay)
		delay = r->kr_retry_after_ms;
	k->ck_retry_ms = now + delay;
	utf8_copy(k->ck_error, why, sizeof(k->ck_error));
	log_begin(&ll, LOG_LVL_WARN, "Kubernetes write failed; retrying");
	log_str(&ll, "resource_class", ac->ac_name);
	log_str(&ll, "object", secret ? ac->ac_obj.po_secret : ac->ac_pool);
	log_str(&ll, "verb", kube_verbs[r->kr_verb].kv_verb);
	log_str(&ll, "resource", kube_verbs[r->kr_verb].kv_resource);
	log_str(&ll, "error", why);
	log_str(&ll, "state", obj_state_name(os->os_state));
	log_uint(&ll, "retry_in_ms", delay);
	log_end(&ll);
}

void
observe_write(struct actuator *a, struct act_class *ac, enum plan_write w,
    uint32_t from, const struct kube_reply *r, uint64_t now)
{
	struct class_kube *k = &ac->ac_kube;
	bool secret = plan_write_is_secret(w);
	struct obj_seen *os = secret ? &k->ck_secret : &k->ck_pool;
	bool get = w == PW_SECRET_GET || w == PW_POOL_GET;
	uint32_t bit = 1u << r->kr_verb;
	char why[CLASS_ERROR_MAX];

	k->ck_busy = false;
	os->os_busy = false;
	if (r->kr_status < 0) /* cancelled at shutdown */
		return;
	os->os_done_seq = ++a->a_seq;
	ac->ac_dirty = true;
	if (r->kr_status >= 200 && r->kr_status < 300) {
		if (write_done(a, ac, w, from, r->kr_body, now) == 0) {
			k->ck_denied &= ~bit;
			k->ck_retry_ms = 0;
			/* A read proves nothing about writing. */
			if (!get) {
				k->ck_conflicts = 0;
				backoff_reset(&k->ck_backoff);
			}
			return;
		}
		snprintf(why, sizeof(why), "HTTP %ld with a malformed body",
		    r->kr_status);
		set_state(os, OBJ_REREAD, now);
		write_failed(ac, w, r, why, now);
		return;
	}
	if (r->kr_status == 404 &&
	    (w == PW_POOL_DELETE || w == PW_SECRET_DELETE)) {
		set_state(os, OBJ_MISSING, now); /* gone already */
		k->ck_retry_ms = 0;
		return;
	}
	if (r->kr_status == 404 && get) {
		if (os->os_state == OBJ_FOREIGN)
			log_info("%s %s is gone; creating our own",
			    secret ? "secret" : "pool",
			    secret ? ac->ac_obj.po_secret : ac->ac_pool);
		set_state(os, OBJ_MISSING, now);
		if (!secret)
			k->ck_have_replicas = false;
		k->ck_retry_ms = 0;
		return;
	}
	if (r->kr_status == 409 || r->kr_status == 410 ||
	    (r->kr_status == 404 && w != PW_SECRET_CREATE &&
	        w != PW_POOL_CREATE)) {
		/* Someone else wrote first, it already exists, or it is gone:
		 * read it again (a GET that 404s marks it missing).  Conflicts
		 * in a row back off: someone keeps writing. */
		log_info("%s %s changed under us (HTTP %ld); reading it again",
		    secret ? "secret" : "pool",
		    secret ? ac->ac_obj.po_secret : ac->ac_pool, r->kr_status);
		set_state(os, OBJ_REREAD, now);
		if (++k->ck_conflicts > 1)
			k->ck_retry_ms = now + backoff_next(&k->ck_backoff);
		return;
	}
	if (r->kr_status == 403)
		denied(a, ac, "Write", r);
	write_failed(ac, w, r, r->kr_error, now);
}

void
observe_vm_op(struct actuator *a, struct act_class *ac, enum plan_vm_op op,
    const char *vm, const struct kube_reply *r, uint64_t now)
{
	struct class_vms *cv = &ac->ac_vms;
	uint32_t bit = 1u << r->kr_verb;

	if (--cv->cv_inflight == 0)
		cv->cv_done_seq = ++a->a_seq;
	if (r->kr_status < 0)
		return;
	ac->ac_dirty = true;
	if (r->kr_status >= 200 && r->kr_status < 300) {
		ac->ac_kube.ck_denied &= ~bit;
		backoff_reset(&cv->cv_backoff);
		if (op == PV_DELETE) {
			metric_inc(ac->ac_m.cm_reclaimed, 1);
			log_info("reclaimed stopped VM %s of pool %s", vm,
			    ac->ac_pool);
			event_record(a, ac, EVENT_NORMAL, "ReclaimedVM",
			    "Reclaim",
			    "Deleted stopped VM %s (its runner finished) so "
			    "that the pool replaces it",
			    vm);
		} else {
			metric_inc(ac->ac_m.cm_finalizers, 1);
			log_info("released VM %s from the pool finalizer that "
			         "kept it in deletion",
			    vm);
			event_record(a, ac, EVENT_NORMAL, "ReleasedFinalizer",
			    "Reclaim",
			    "Removed %s from VM %s, deleted while the pool "
			    "held more VMs than replicas",
			    POOL_FINALIZER, vm);
		}
		return;
	}
	if (r->kr_status == 404 || r->kr_status == 409 ||
	    r->kr_status == 422) {
		/* Gone, replaced by a new VM of that name (uid precondition),
		 * or changed since listed (resourceVersion precondition, the
		 * JSON patch's tests): the next list shows what it is now. */
		log_debug("VM %s: %s", vm, r->kr_error);
		return;
	}
	if (r->kr_status == 403)
		denied(a, ac, "Reclaim", r);
	cv->cv_retry_ms = now + backoff_next(&cv->cv_backoff);
	utf8_copy(
	    ac->ac_kube.ck_error, r->kr_error, sizeof(ac->ac_kube.ck_error));
	log_warnx("VM %s of pool %s: %s %s failed: %s", vm, ac->ac_pool,
	    kube_verbs[r->kr_verb].kv_verb, kube_verbs[r->kr_verb].kv_resource,
	    r->kr_error);
}

void
class_observations_free(struct act_class *ac)
{
	size_t i;

	free(ac->ac_kube.ck_pool.os_rv);
	free(ac->ac_kube.ck_secret.os_rv);
	free(ac->ac_kube.ck_pool.os_uid);
	free(ac->ac_kube.ck_secret.os_uid);
	for (i = 0; i < ac->ac_vms.cv_n; i++)
		vm_seen_free(&ac->ac_vms.cv_vms[i]);
	free(ac->ac_vms.cv_vms);
	ac->ac_vms.cv_vms = NULL;
	ac->ac_vms.cv_n = 0;
}
