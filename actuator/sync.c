/*
 * Keeping each class's Secret and VirtualMachinePool in step with the
 * configuration and the decision.  Pools, VMs and Secrets are listed
 * periodically (one request each for all classes); each class then moves
 * one write at a time: Secret → pool → replicas.  Steady state is reads
 * only.
 */
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "actuator.h"
#include "log.h"
#include "util.h"

static void on_write(struct actuator *, void *, const struct kube_reply *);

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
	}
	return "?";
}

static const char *
meta_str(json_t *obj, const char *key)
{
	return json_string_value(
	    json_object_get(json_object_get(obj, "metadata"), key));
}

static const char *
meta_map_str(json_t *obj, const char *map, const char *key)
{
	return json_string_value(json_object_get(
	    json_object_get(json_object_get(obj, "metadata"), map), key));
}

static bool
ours(json_t *obj)
{
	const char *v = meta_map_str(obj, "labels", LABEL_MANAGED_BY);

	return v != NULL && strcmp(v, MANAGED_BY) == 0;
}

static void
set_rv(char **dst, json_t *obj)
{
	const char *rv = meta_str(obj, "resourceVersion");

	free(*dst);
	*dst = rv != NULL ? xstrdup(rv) : NULL;
}

static struct act_class *
class_by_pool(struct actuator *a, const char *pool)
{
	size_t i;

	for (i = 0; pool != NULL && i < a->a_nclasses; i++)
		if (strcmp(a->a_classes[i].ac_pool, pool) == 0)
			return &a->a_classes[i];
	return NULL;
}

static struct act_class *
class_by_secret(struct actuator *a, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < a->a_nclasses; i++)
		if (strcmp(a->a_classes[i].ac_obj.po_secret, name) == 0)
			return &a->a_classes[i];
	return NULL;
}

/* Records a pool as listed or returned by a write. */
static void
pool_seen(struct act_class *ac, json_t *pool)
{
	const char *hash = meta_map_str(pool, "annotations", ANNOT_HASH);
	json_t *spec = json_object_get(pool, "spec");
	json_t *status = json_object_get(pool, "status");
	json_t *r = json_object_get(spec, "replicas");

	const char *owner = meta_map_str(pool, "annotations", ANNOT_CLASS);

	if (ours(pool) && owner != NULL &&
	    strcmp(owner, ac->ac_conf->cc_name) != 0) {
		if (ac->ac_pool_state != OBJ_FOREIGN)
			log_error(
			    "pool %s belongs to resource class %s, not %s "
			    "(another deployment in this namespace?): not "
			    "touching it",
			    ac->ac_pool, owner, ac->ac_conf->cc_name);
		ac->ac_pool_state = OBJ_FOREIGN;
		return;
	}
	if (!ours(pool)) {
		if (ac->ac_pool_state != OBJ_FOREIGN)
			log_error("pool %s exists but is not managed by "
			          "runner-provisioner (no %s=%s label): not "
			          "touching it; rename or delete it",
			    ac->ac_pool, LABEL_MANAGED_BY, MANAGED_BY);
		ac->ac_pool_state = OBJ_FOREIGN;
		return;
	}
	set_rv(&ac->ac_pool_rv, pool);
	ac->ac_pool_state =
	    hash != NULL && strcmp(hash, ac->ac_obj.po_hash) == 0 ? OBJ_CURRENT
	                                                          : OBJ_STALE;
	ac->ac_have_replicas = json_is_integer(r);
	ac->ac_replicas = (uint32_t)json_integer_value(r);
	ac->ac_status_replicas =
	    (uint32_t)json_integer_value(json_object_get(status, "replicas"));
	ac->ac_ready_replicas = (uint32_t)json_integer_value(
	    json_object_get(status, "readyReplicas"));
	metric_set(ac->ac_m_replicas, ac->ac_replicas);
	metric_set(ac->ac_m_status_replicas, ac->ac_status_replicas);
	metric_set(ac->ac_m_ready_replicas, ac->ac_ready_replicas);
}

static void
secret_seen(struct act_class *ac, json_t *secret)
{
	const char *data = json_string_value(
	    json_object_get(json_object_get(secret, "data"), SECRET_KEY));

	if (!ours(secret)) {
		if (ac->ac_secret_state != OBJ_FOREIGN)
			log_error(
			    "secret %s exists but is not managed by "
			    "runner-provisioner: not touching it; rename "
			    "or delete it",
			    ac->ac_obj.po_secret);
		ac->ac_secret_state = OBJ_FOREIGN;
		return;
	}
	set_rv(&ac->ac_secret_rv, secret);
	ac->ac_secret_state =
	    data != NULL && strcmp(data, ac->ac_obj.po_userdata_b64) == 0
	    ? OBJ_CURRENT
	    : OBJ_STALE;
}

/* Lists are applied to a class only if no write of that class finished
 * after the list was sent: the write's answer is fresher. */
static bool
list_applies(const struct act_class *ac, uint64_t seq_at_send)
{
	return !ac->ac_busy && ac->ac_write_seq <= seq_at_send;
}

static void
on_pools(struct actuator *a, void *arg, const struct kube_reply *r)
{
	uint64_t seq = (uint64_t)(uintptr_t)arg, now = now_ms();
	json_t *items = json_object_get(r->kr_body, "items"), *it;
	struct act_class *ac;
	bool *seen;
	size_t i;

	a->a_pools_busy = false;
	if (r->kr_status != 200 || !json_is_array(items)) {
		log_debug("listing pools failed: %s", r->kr_error);
		return;
	}
	a->a_pools_listed_ms = now;
	seen = xcalloc(a->a_nclasses, sizeof(*seen));
	json_array_foreach(items, i, it)
	{
		if ((ac = class_by_pool(a, meta_str(it, "name"))) == NULL)
			continue; /* a class no longer configured */
		seen[ac - a->a_classes] = true;
		if (list_applies(ac, seq))
			pool_seen(ac, it);
	}
	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		if (seen[i] || !list_applies(ac, seq) ||
		    ac->ac_pool_state == OBJ_FOREIGN)
			continue;
		if (ac->ac_pool_state == OBJ_CURRENT ||
		    ac->ac_pool_state == OBJ_STALE)
			log_warnx("pool %s disappeared; creating it again",
			    ac->ac_pool);
		ac->ac_pool_state = OBJ_MISSING;
		ac->ac_have_replicas = false;
	}
	free(seen);
	for (i = 0; i < a->a_nclasses; i++)
		sync_class(a, &a->a_classes[i], now);
}

static void
on_secrets(struct actuator *a, void *arg, const struct kube_reply *r)
{
	uint64_t seq = (uint64_t)(uintptr_t)arg, now = now_ms();
	json_t *items = json_object_get(r->kr_body, "items"), *it;
	struct act_class *ac;
	bool *seen;
	size_t i;

	a->a_secrets_busy = false;
	if (r->kr_status != 200 || !json_is_array(items)) {
		log_debug("listing secrets failed: %s", r->kr_error);
		return;
	}
	a->a_secrets_listed = true;
	seen = xcalloc(a->a_nclasses, sizeof(*seen));
	json_array_foreach(items, i, it)
	{
		if ((ac = class_by_secret(a, meta_str(it, "name"))) == NULL)
			continue;
		seen[ac - a->a_classes] = true;
		if (list_applies(ac, seq))
			secret_seen(ac, it);
	}
	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		if (!seen[i] && list_applies(ac, seq) &&
		    ac->ac_secret_state != OBJ_FOREIGN)
			ac->ac_secret_state = OBJ_MISSING;
	}
	free(seen);
	for (i = 0; i < a->a_nclasses; i++)
		sync_class(a, &a->a_classes[i], now);
}

static void
on_vms(struct actuator *a, void *arg, const struct kube_reply *r)
{
	json_t *items = json_object_get(r->kr_body, "items"), *it, **per;
	uint64_t now = now_ms();
	struct act_class *ac;
	size_t i;

	(void)arg;
	a->a_vms_busy = false;
	if (r->kr_status != 200 || !json_is_array(items)) {
		log_debug("listing VMs failed: %s", r->kr_error);
		return;
	}
	a->a_vms_listed_ms = now;
	per = xcalloc(a->a_nclasses, sizeof(*per));
	for (i = 0; i < a->a_nclasses; i++)
		per[i] = json_array();
	json_array_foreach(items, i, it)
	{
		ac = class_by_pool(a, meta_map_str(it, "labels", LABEL_CLASS));
		if (ac != NULL)
			json_array_append(per[ac - a->a_classes], it);
	}
	for (i = 0; i < a->a_nclasses; i++) {
		reclaim_class(a, &a->a_classes[i], per[i], now);
		json_decref(per[i]);
	}
	free(per);
	/* The list was parsed into a throwaway tree: give the heap back. */
	malloc_trim(0);
}

static void
list(struct actuator *a, enum kube_verb verb, const char *api,
    const char *plural, kube_cb cb, bool *busy)
{
	char path[512];

	if (*busy)
		return;
	snprintf(path, sizeof(path), "%s/namespaces/%s/%s?labelSelector=%s",
	    api, kube_namespace(a->a_kube), plural,
	    LABEL_MANAGED_BY "%3D" MANAGED_BY);
	if (kube_send(a->a_kube, verb, "GET", path, NULL, NULL, cb,
	        (void *)(uintptr_t)a->a_write_seq) == 0)
		*busy = true;
}

void
sync_tick(struct actuator *a, uint64_t now)
{
	size_t i;

	if (a->a_kube == NULL)
		return;
	if (now >= a->a_next_resync_ms) {
		list(a, KV_POOL_LIST, POOL_API, "virtualmachinepools",
		    on_pools, &a->a_pools_busy);
		list(a, KV_VM_LIST, VM_API, "virtualmachines", on_vms,
		    &a->a_vms_busy);
		a->a_next_resync_ms = now + RESYNC_MS;
	}
	if (now >= a->a_next_secret_list_ms) {
		list(a, KV_SECRET_LIST, "/api/v1", "secrets", on_secrets,
		    &a->a_secrets_busy);
		a->a_next_secret_list_ms = now + SECRET_RESYNC_MS;
	}
	for (i = 0; i < a->a_nclasses; i++)
		sync_class(a, &a->a_classes[i], now);
}

uint64_t
sync_next_deadline(const struct actuator *a)
{
	uint64_t next = UINT64_MAX;
	size_t i;

	if (a->a_kube == NULL)
		return next;
	next = a->a_next_resync_ms < a->a_next_secret_list_ms
	    ? a->a_next_resync_ms
	    : a->a_next_secret_list_ms;
	for (i = 0; i < a->a_nclasses; i++)
		if (a->a_classes[i].ac_retry_ms > 0 &&
		    a->a_classes[i].ac_retry_ms < next)
			next = a->a_classes[i].ac_retry_ms;
	return next;
}

/* What a write was, so its answer can be judged. */
enum write_kind {
	W_SECRET_CREATE,
	W_SECRET_UPDATE,
	W_SECRET_GET,
	W_POOL_CREATE,
	W_POOL_UPDATE,
	W_POOL_GET,
	W_SCALE,
};

struct write {
	struct act_class *w_class;
	enum write_kind w_kind;
	uint32_t w_from; /* W_SCALE */
	uint32_t w_to;
};

static void
send_write(struct actuator *a, struct act_class *ac, enum write_kind kind,
    enum kube_verb verb, const char *method, const char *path,
    const char *ctype, json_t *body, uint32_t to)
{
	struct write *w = xcalloc(1, sizeof(*w));

	w->w_class = ac;
	w->w_kind = kind;
	w->w_from = ac->ac_replicas;
	w->w_to = to;
	if (kube_send(a->a_kube, verb, method, path, ctype, body, on_write,
	        w) == -1) {
		free(w);
		ac->ac_retry_ms = now_ms() + backoff_next(&ac->ac_backoff);
		return;
	}
	ac->ac_busy = true;
}

void
sync_class(struct actuator *a, struct act_class *ac, uint64_t now)
{
	const char *ns;
	char path[512];
	uint32_t replicas;

	if (a->a_kube == NULL || ac->ac_busy || now < ac->ac_retry_ms ||
	    ac->ac_pool_state == OBJ_FOREIGN ||
	    ac->ac_secret_state == OBJ_FOREIGN ||
	    ac->ac_pool_state == OBJ_UNKNOWN ||
	    ac->ac_secret_state == OBJ_UNKNOWN)
		return;
	ns = kube_namespace(a->a_kube);
	if (ac->ac_secret_state == OBJ_MISSING) {
		snprintf(
		    path, sizeof(path), "/api/v1/namespaces/%s/secrets", ns);
		send_write(a, ac, W_SECRET_CREATE, KV_SECRET_CREATE, "POST",
		    path, KUBE_CONTENT_JSON,
		    pool_secret_json(&ac->ac_obj, ac->ac_conf, ns, NULL), 0);
		return;
	}
	if (ac->ac_secret_state == OBJ_STALE) {
		snprintf(path, sizeof(path),
		    "/api/v1/namespaces/%s/secrets/%s", ns,
		    ac->ac_obj.po_secret);
		send_write(a, ac, W_SECRET_UPDATE, KV_SECRET_UPDATE, "PUT",
		    path, KUBE_CONTENT_JSON,
		    pool_secret_json(
		        &ac->ac_obj, ac->ac_conf, ns, ac->ac_secret_rv),
		    0);
		return;
	}
	replicas = ac->ac_have_target ? ac->ac_target
	                              : ac->ac_conf->cc_scaling.sp_base.sc_min;
	if (ac->ac_pool_state == OBJ_MISSING) {
		snprintf(path, sizeof(path),
		    POOL_API "/namespaces/%s/virtualmachinepools", ns);
		send_write(a, ac, W_POOL_CREATE, KV_POOL_CREATE, "POST", path,
		    KUBE_CONTENT_JSON,
		    pool_json(&ac->ac_obj, ac->ac_conf, ns, replicas, NULL),
		    replicas);
		return;
	}
	snprintf(path, sizeof(path),
	    POOL_API "/namespaces/%s/virtualmachinepools/%s", ns, ac->ac_pool);
	if (ac->ac_pool_state == OBJ_STALE) {
		/* New VMs get the new template; running ones are left alone
		 * (updateStrategy opportunistic). */
		send_write(a, ac, W_POOL_UPDATE, KV_POOL_UPDATE, "PUT", path,
		    KUBE_CONTENT_JSON,
		    pool_json(&ac->ac_obj, ac->ac_conf, ns,
		        ac->ac_have_replicas ? ac->ac_replicas : replicas,
		        ac->ac_pool_rv),
		    0);
		return;
	}
	if (ac->ac_have_target &&
	    (!ac->ac_have_replicas || ac->ac_replicas != ac->ac_target)) {
		strlcpy_rp(path + strlen(path), "/scale",
		    sizeof(path) - strlen(path));
		send_write(a, ac, W_SCALE, KV_POOL_SCALE, "PATCH", path,
		    KUBE_CONTENT_MERGE,
		    json_pack("{s:{s:I}}", "spec", "replicas",
		        (json_int_t)ac->ac_target),
		    ac->ac_target);
		return;
	}
	if (now - a->a_pools_listed_ms <= LIST_STALE_MS) {
		ac->ac_last_sync_ms = now;
		ac->ac_error[0] = '\0';
	}
}

static void
get_object(struct actuator *a, struct act_class *ac, enum write_kind kind)
{
	const char *ns = kube_namespace(a->a_kube);
	char path[512];

	if (kind == W_SECRET_GET)
		snprintf(path, sizeof(path),
		    "/api/v1/namespaces/%s/secrets/%s", ns,
		    ac->ac_obj.po_secret);
	else
		snprintf(path, sizeof(path),
		    POOL_API "/namespaces/%s/virtualmachinepools/%s", ns,
		    ac->ac_pool);
	send_write(a, ac, kind,
	    kind == W_SECRET_GET ? KV_SECRET_GET : KV_POOL_GET, "GET", path,
	    NULL, NULL, 0);
}

static void
log_scaled(struct act_class *ac, uint32_t from, uint32_t to)
{
	struct log_line ll;
	char msg[POOL_NAME_MAX + 64];

	snprintf(msg, sizeof(msg), "scaled %s from %u to %u", ac->ac_pool,
	    from, to);
	log_begin(&ll, LOG_LVL_INFO, msg);
	log_str(&ll, "resource_class", ac->ac_conf->cc_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_uint(&ll, "from", from);
	log_uint(&ll, "to", to);
	log_uint(&ll, "unclaimed_tasks", ac->ac_unclaimed);
	log_uint(&ll, "running_tasks", ac->ac_running);
	log_end(&ll);
	metric_inc(to > from ? ac->ac_m_scale_up : ac->ac_m_scale_down, 1);
}

/* Judges a successful answer; false when the reply needs a retry. */
static bool
write_succeeded(
    struct act_class *ac, const struct write *w, const struct kube_reply *r)
{
	json_t *b = r->kr_body;

	switch (w->w_kind) {
	case W_SECRET_CREATE:
	case W_SECRET_UPDATE:
	case W_SECRET_GET:
		secret_seen(ac, b);
		if (w->w_kind == W_SECRET_CREATE)
			log_info("created secret %s (cloud-init for %s)",
			    ac->ac_obj.po_secret, ac->ac_conf->cc_name);
		else if (w->w_kind == W_SECRET_UPDATE)
			log_info("updated secret %s: VMs created from now on "
			         "get the new cloud-init",
			    ac->ac_obj.po_secret);
		return true;
	case W_POOL_CREATE:
	case W_POOL_UPDATE:
	case W_POOL_GET:
		pool_seen(ac, b);
		if (w->w_kind == W_POOL_CREATE)
			log_info("created pool %s for %s with %u replicas",
			    ac->ac_pool, ac->ac_conf->cc_name, w->w_to);
		else if (w->w_kind == W_POOL_UPDATE)
			log_info(
			    "updated pool %s to the new configuration: new "
			    "VMs use it, running VMs are left alone",
			    ac->ac_pool);
		return true;
	case W_SCALE:
		ac->ac_have_replicas = true;
		ac->ac_replicas = (uint32_t)json_integer_value(
		    json_object_get(json_object_get(b, "spec"), "replicas"));
		metric_set(ac->ac_m_replicas, ac->ac_replicas);
		log_scaled(ac, w->w_from, ac->ac_replicas);
		return true;
	}
	return true;
}

static void
on_write(struct actuator *a, void *arg, const struct kube_reply *r)
{
	struct write *w = arg;
	struct act_class *ac = w->w_class;
	bool is_secret = w->w_kind <= W_SECRET_GET;
	enum obj_state *state =
	    is_secret ? &ac->ac_secret_state : &ac->ac_pool_state;
	uint64_t now = now_ms(), delay;
	struct log_line ll;

	ac->ac_busy = false;
	if (r->kr_status < 0) { /* cancelled at shutdown */
		free(w);
		return;
	}
	ac->ac_write_seq = ++a->a_write_seq;
	if (r->kr_status >= 200 && r->kr_status < 300 &&
	    json_is_object(r->kr_body)) {
		write_succeeded(ac, w, r);
		backoff_reset(&ac->ac_backoff);
		ac->ac_retry_ms = 0;
		free(w);
		sync_class(a, ac, now);
		return;
	}
	if (r->kr_status == 409 ||
	    (r->kr_status == 404 &&
	        (w->w_kind == W_SCALE || w->w_kind == W_POOL_UPDATE ||
	            w->w_kind == W_SECRET_UPDATE))) {
		/* Conflict: someone else wrote first, or it is gone: read
		 * the object again (a GET that 404s marks it missing). */
		enum write_kind get = is_secret ? W_SECRET_GET : W_POOL_GET;
		log_info("%s %s changed under us (HTTP %ld); reading it again",
		    is_secret ? "secret" : "pool",
		    is_secret ? ac->ac_obj.po_secret : ac->ac_pool,
		    r->kr_status);
		free(w);
		get_object(a, ac, get);
		return;
	}
	if (r->kr_status == 404 &&
	    (w->w_kind == W_POOL_GET || w->w_kind == W_SECRET_GET)) {
		*state = OBJ_MISSING;
		if (!is_secret)
			ac->ac_have_replicas = false;
		free(w);
		sync_class(a, ac, now);
		return;
	}
	delay = backoff_next(&ac->ac_backoff);
	ac->ac_retry_ms = now + delay;
	snprintf(ac->ac_error, sizeof(ac->ac_error), "%s", r->kr_error);
	log_begin(&ll, LOG_LVL_WARN, "Kubernetes write failed; retrying");
	log_str(&ll, "resource_class", ac->ac_conf->cc_name);
	log_str(&ll, "object", is_secret ? ac->ac_obj.po_secret : ac->ac_pool);
	log_str(&ll, "verb", kube_verbs[r->kr_verb].kv_verb);
	log_str(&ll, "resource", kube_verbs[r->kr_verb].kv_resource);
	log_str(&ll, "error", r->kr_error);
	log_str(&ll, "state", obj_state_name(*state));
	log_uint(&ll, "retry_in_ms", delay);
	log_end(&ll);
	free(w);
}

bool
sync_class_healthy(
    const struct actuator *a, const struct act_class *ac, uint64_t now)
{
	return ac->ac_last_sync_ms != 0 && !ac->ac_boot_loop &&
	    now - ac->ac_last_sync_ms <= LIST_STALE_MS + RESYNC_MS &&
	    a->a_kube != NULL;
}

int
sync_setup(struct actuator *a)
{
	static const char *const cls[] = { "resource_class", NULL };
	struct metric_family *rep, *cur, *rdy, *scale;
	struct act_class *ac;
	size_t i;

	rep = metrics_family(a->a_metrics, METRIC_GAUGE, "pool_replicas",
	    "The pool's spec.replicas, as last seen.", cls, NULL, 0);
	cur = metrics_family(a->a_metrics, METRIC_GAUGE,
	    "pool_current_replicas",
	    "The pool's status.replicas (VMs it owns, stopped ones included).",
	    cls, NULL, 0);
	rdy = metrics_family(a->a_metrics, METRIC_GAUGE, "pool_ready_replicas",
	    "The pool's status.readyReplicas.", cls, NULL, 0);
	scale = metrics_family(a->a_metrics, METRIC_COUNTER,
	    "scale_events_total", "Replica changes written, by direction.",
	    (const char *[]){ "resource_class", "direction", NULL }, NULL, 0);
	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		if (pool_objects_build(&ac->ac_obj, ac->ac_conf, ac->ac_pool,
		        a->a_flags->f_api_addr) == -1)
			return -1;
		backoff_init(&ac->ac_backoff, WRITE_BACKOFF_BASE_MS,
		    WRITE_BACKOFF_CAP_MS);
		ac->ac_m_replicas = metric_series(
		    rep, (const char *[]){ ac->ac_conf->cc_name });
		ac->ac_m_status_replicas = metric_series(
		    cur, (const char *[]){ ac->ac_conf->cc_name });
		ac->ac_m_ready_replicas = metric_series(
		    rdy, (const char *[]){ ac->ac_conf->cc_name });
		ac->ac_m_scale_up = metric_series(
		    scale, (const char *[]){ ac->ac_conf->cc_name, "up" });
		ac->ac_m_scale_down = metric_series(
		    scale, (const char *[]){ ac->ac_conf->cc_name, "down" });
	}
	reclaim_setup(a);
	return 0;
}

void
sync_teardown(struct actuator *a)
{
	struct act_class *ac;
	size_t i, j;

	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		pool_objects_free(&ac->ac_obj);
		free(ac->ac_pool_rv);
		free(ac->ac_secret_rv);
		for (j = 0; j < SEEN_STOPPED_MAX; j++)
			free(ac->ac_seen_stopped[j]);
	}
}
