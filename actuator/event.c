/*
 * Kubernetes Events (events.k8s.io/v1) about the pools, for kubectl
 * describe: scale changes, reclaimed VMs, released finalizers, boot
 * loops, denied requests, retiring classes and drains.
 *
 * Aggregated as client-go's events recorder (tools/events) does: events
 * alike (same pool, reason, action and type; the note does not count) form
 * a series.  The first is created, the second turns it into a series of 2
 * at once, later ones only count up, and the count is written at most once
 * per EVENT_SERIES_FLUSH_MS; a series not seen for EVENT_SERIES_END_MS is
 * forgotten and the next occurrence starts a new Event.  A flapping class
 * thus costs a few writes a minute, not one per flap.
 *
 * Best effort: recording never waits, at most EVENT_INFLIGHT_MAX requests
 * are out, a failure drops that event and pauses events for a while, and
 * only a process that may write sends any (exec.c's gate).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actuator.h"
#include "lease.h"
#include "log.h"
#include "util.h"

#define EVENT_API "/apis/events.k8s.io/v1"

enum entry_state {
	EE_NEW,     /* to be created */
	EE_CREATED, /* exists; its series may need writing */
};

struct event_entry {
	char ee_pool[POOL_NAME_MAX + 1];
	char ee_reason[EVENT_REASON_MAX + 1];
	char ee_action[EVENT_REASON_MAX + 1];
	enum event_type ee_type;
	char *ee_note; /* the first occurrence's */
	char *ee_uid;  /* the pool's, when known */
	char ee_name[POOL_NAME_MAX + 40];
	uint64_t ee_first_wall; /* eventTime */
	uint64_t ee_last_wall;  /* series.lastObservedTime */
	uint64_t ee_last_ms;    /* last occurrence, monotonic */
	uint32_t ee_count;      /* occurrences */
	uint32_t ee_sent;       /* count the API server has */
	enum entry_state ee_state;
	uint64_t ee_flush_ms; /* no series write before */
	bool ee_busy;         /* a request about it is out */
	bool ee_drop;         /* free it when the answer comes */
};

struct event_cache {
	struct event_entry **ec_list;
	size_t ec_n;
	unsigned int ec_inflight;
	uint64_t ec_paused_ms; /* no request before (after a failure) */
	uint64_t ec_seq;       /* makes Event names unique */
};

struct event_req {
	struct actuator *er_a;
	struct event_entry *er_e;
	uint32_t er_count; /* what the request writes */
	bool er_create;
};

static struct event_cache *
cache(struct actuator *a)
{
	if (a->a_events == NULL)
		a->a_events = xcalloc(1, sizeof(*a->a_events));
	return a->a_events;
}

static void
entry_free(struct event_entry *e)
{
	free(e->ee_note);
	free(e->ee_uid);
	free(e);
}

/* Removes entry i from the list; its memory goes now, or with the answer
 * of the request about it. */
static void
entry_remove(struct event_cache *c, size_t i)
{
	struct event_entry *e = c->ec_list[i];

	memmove(&c->ec_list[i], &c->ec_list[i + 1],
	    (c->ec_n - i - 1) * sizeof(*c->ec_list));
	c->ec_n--;
	if (e->ee_busy)
		e->ee_drop = true;
	else
		entry_free(e);
}

/* Room for one more: the series seen longest ago goes. */
static void
make_room(struct event_cache *c)
{
	size_t i, old = 0;

	if (c->ec_n < EVENT_CACHE_MAX)
		return;
	for (i = 1; i < c->ec_n; i++)
		if (c->ec_list[i]->ee_last_ms < c->ec_list[old]->ee_last_ms)
			old = i;
	entry_remove(c, old);
}

void
event_record(struct actuator *a, const struct act_class *ac,
    enum event_type type, const char *reason, const char *action,
    const char *fmt, ...)
{
	struct event_cache *c = cache(a);
	struct event_entry *e = NULL;
	uint64_t now = now_ms(), wall = wall_ms();
	char note[EVENT_NOTE_MAX + 1], raw[2 * EVENT_NOTE_MAX];
	va_list ap;
	size_t i;

	for (i = 0; i < c->ec_n; i++) {
		e = c->ec_list[i];
		if (e->ee_type == type &&
		    strcmp(e->ee_pool, ac->ac_pool) == 0 &&
		    strcmp(e->ee_reason, reason) == 0 &&
		    strcmp(e->ee_action, action) == 0)
			break;
		e = NULL;
	}
	if (e != NULL && now - e->ee_last_ms > EVENT_SERIES_END_MS) {
		entry_remove(c, i); /* that series ended: start anew */
		e = NULL;
	}
	if (e != NULL) {
		e->ee_count++;
		e->ee_last_ms = now;
		e->ee_last_wall = wall;
		/* The second occurrence makes it a series at once. */
		if (e->ee_count == 2)
			e->ee_flush_ms = now;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	utf8_copy(note, raw, sizeof(note));
	make_room(c);
	e = xcalloc(1, sizeof(*e));
	strlcpy_rp(e->ee_pool, ac->ac_pool, sizeof(e->ee_pool));
	strlcpy_rp(e->ee_reason, reason, sizeof(e->ee_reason));
	strlcpy_rp(e->ee_action, action, sizeof(e->ee_action));
	e->ee_type = type;
	e->ee_note = xstrdup(note);
	if (ac->ac_kube.ck_pool.os_uid != NULL)
		e->ee_uid = xstrdup(ac->ac_kube.ck_pool.os_uid);
	e->ee_first_wall = e->ee_last_wall = wall;
	e->ee_last_ms = now;
	e->ee_count = 1;
	e->ee_state = EE_NEW;
	c->ec_list = xrealloc(c->ec_list, c->ec_n + 1, sizeof(*c->ec_list));
	c->ec_list[c->ec_n++] = e;
}

static void
on_event(void *arg, const struct kube_reply *r)
{
	struct event_req *q = arg;
	struct event_entry *e = q->er_e;
	struct event_cache *c = q->er_a->a_events;
	uint64_t now = now_ms();

	c->ec_inflight--;
	e->ee_busy = false;
	if (e->ee_drop || r->kr_status < 0) {
		if (e->ee_drop)
			entry_free(e);
		free(q);
		return;
	}
	if (r->kr_status >= 200 && r->kr_status < 300) {
		e->ee_state = EE_CREATED;
		e->ee_sent = q->er_count;
		e->ee_flush_ms = now + EVENT_SERIES_FLUSH_MS;
	} else if (!q->er_create && r->kr_status == 404) {
		e->ee_state = EE_NEW; /* expired meanwhile: create it again */
	} else if (q->er_create && r->kr_status == 409) {
		e->ee_name[0] = '\0'; /* that name is taken: another one */
	} else {
		/* Best effort: this one is lost, and events pause. */
		log_debug("event %s on pool %s not written: %s", e->ee_reason,
		    e->ee_pool, r->kr_error);
		c->ec_paused_ms = now + EVENT_PAUSE_MS;
		e->ee_state = EE_CREATED;
		e->ee_sent = e->ee_count;
		e->ee_flush_ms = now + EVENT_SERIES_FLUSH_MS;
	}
	free(q);
}

static json_t *
series(const struct event_entry *e)
{
	char t[LEASE_TIME_MAX];

	lease_microtime(e->ee_last_wall, t, sizeof(t));
	return json_pack("{s:I,s:s}", "count", (json_int_t)e->ee_count,
	    "lastObservedTime", t);
}

static void
send_entry(struct actuator *a, struct event_entry *e, uint64_t now)
{
	struct event_cache *c = a->a_events;
	const char *ns = kube_namespace(a->a_kube);
	struct event_req *q;
	char path[512], t[LEASE_TIME_MAX];
	json_t *body, *reg;
	int rv;

	q = xcalloc(1, sizeof(*q));
	q->er_a = a;
	q->er_e = e;
	q->er_count = e->ee_count;
	q->er_create = e->ee_state == EE_NEW;
	if (q->er_create) {
		if (e->ee_name[0] == '\0')
			snprintf(e->ee_name, sizeof(e->ee_name), "%s.%llx",
			    e->ee_pool,
			    (unsigned long long)(e->ee_first_wall * 1000000 +
			        (++c->ec_seq % 1000000)));
		lease_microtime(e->ee_first_wall, t, sizeof(t));
		reg = json_pack("{s:s,s:s,s:s,s:s}", "apiVersion",
		    "pool.kubevirt.io/v1beta1", "kind", "VirtualMachinePool",
		    "name", e->ee_pool, "namespace", ns);
		if (e->ee_uid != NULL)
			json_object_set_new(
			    reg, "uid", json_string(e->ee_uid));
		body = json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:s,s:s,s:s,s:s,"
		                 "s:s,s:s,s:o}",
		    "apiVersion", "events.k8s.io/v1", "kind", "Event",
		    "metadata", "name", e->ee_name, "namespace", ns,
		    "eventTime", t, "reportingController", EVENT_CONTROLLER,
		    "reportingInstance", a->a_identity, "action", e->ee_action,
		    "reason", e->ee_reason, "type",
		    e->ee_type == EVENT_WARNING ? "Warning" : "Normal", "note",
		    e->ee_note, "regarding", reg);
		if (e->ee_count >= 2)
			json_object_set_new(body, "series", series(e));
		snprintf(
		    path, sizeof(path), EVENT_API "/namespaces/%s/events", ns);
		rv = kube_send(a->a_kube, KV_EVENT_CREATE, "POST", path,
		    KUBE_CONTENT_JSON, body, on_event, q);
	} else {
		body = json_pack("{s:o}", "series", series(e));
		snprintf(path, sizeof(path),
		    EVENT_API "/namespaces/%s/events/%s", ns, e->ee_name);
		rv = kube_send(a->a_kube, KV_EVENT_PATCH, "PATCH", path,
		    KUBE_CONTENT_MERGE, body, on_event, q);
	}
	if (rv == -1) {
		free(q);
		c->ec_paused_ms = now + EVENT_PAUSE_MS;
		return;
	}
	e->ee_busy = true;
	c->ec_inflight++;
}

void
event_flush(struct actuator *a, bool may_write, uint64_t now)
{
	struct event_cache *c = a->a_events;
	struct event_entry *e;
	size_t i = 0;

	if (c == NULL)
		return;
	while (i < c->ec_n) {
		e = c->ec_list[i];
		/* Not ours to send (a standby, --dry-run), or ended.  A drain
		 * keeps what it recorded until its fence lets it write. */
		if ((!may_write && !a->a_flags->f_drain) ||
		    a->a_kube == NULL ||
		    (now - e->ee_last_ms > EVENT_SERIES_END_MS &&
		        e->ee_state == EE_CREATED &&
		        e->ee_sent == e->ee_count)) {
			entry_remove(c, i);
			continue;
		}
		i++;
		if (!may_write || e->ee_busy ||
		    c->ec_inflight >= EVENT_INFLIGHT_MAX ||
		    now < c->ec_paused_ms)
			continue;
		if (e->ee_state == EE_NEW ||
		    (e->ee_count > e->ee_sent && now >= e->ee_flush_ms))
			send_entry(a, e, now);
	}
}

uint64_t
event_deadline(const struct actuator *a, uint64_t now)
{
	const struct event_cache *c = a->a_events;
	const struct event_entry *e;
	uint64_t next = UINT64_MAX, t;
	size_t i;

	if (c == NULL || a->a_kube == NULL)
		return next;
	for (i = 0; i < c->ec_n; i++) {
		e = c->ec_list[i];
		if (e->ee_busy)
			continue;
		if (e->ee_state == EE_NEW)
			t = now;
		else if (e->ee_count > e->ee_sent)
			t = e->ee_flush_ms;
		else
			t = e->ee_last_ms + EVENT_SERIES_END_MS + 1;
		if (c->ec_inflight >= EVENT_INFLIGHT_MAX)
			continue; /* an answer wakes the loop */
		if (t < c->ec_paused_ms)
			t = c->ec_paused_ms;
		if (t < next)
			next = t;
	}
	return next;
}

size_t
event_pending(const struct actuator *a)
{
	return a->a_events != NULL ? a->a_events->ec_n : 0;
}

void
event_cache_free(struct actuator *a)
{
	struct event_cache *c = a->a_events;
	size_t i;

	if (c == NULL)
		return;
	/* Requests still out were cancelled (kube_free) before this. */
	for (i = 0; i < c->ec_n; i++)
		entry_free(c->ec_list[i]);
	free(c->ec_list);
	free(c);
	a->a_events = NULL;
}
