/* Leader election on a Lease: the state machine (lease.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lease.h"
#include "util.h"

#define MANAGED_BY_LABEL "app.kubernetes.io/managed-by"

void
lease_init(struct lease *l, const char *identity, enum lease_goal goal)
{
	memset(l, 0, sizeof(*l));
	strlcpy_rp(l->l_identity, identity, sizeof(l->l_identity));
	l->l_goal = goal;
	l->l_want = LEASE_OP_GET;
}

void
lease_free(struct lease *l)
{
	json_decref(l->l_obj);
	free(l->l_raw);
	l->l_obj = NULL;
	l->l_raw = NULL;
}

void
lease_microtime(uint64_t wall_ms, char *buf, size_t size)
{
	time_t t = (time_t)(wall_ms / 1000);
	struct tm tm;
	char s[24];

	gmtime_r(&t, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03u000Z", s, (unsigned int)(wall_ms % 1000));
}

static bool
held_by_me(const struct lease *l)
{
	return l->l_obj != NULL &&
	    strcmp(l->l_rec.lr_holder, l->l_identity) == 0;
}

/* Valid: held by someone, and unchanged for less than its duration. */
static bool
held_by_other(const struct lease *l, uint64_t now)
{
	uint64_t dur;

	if (l->l_obj == NULL || l->l_rec.lr_holder[0] == '\0' || held_by_me(l))
		return false;
	if (l->l_rec.lr_duration_s <= 0)
		return false;
	dur = (uint64_t)l->l_rec.lr_duration_s * 1000;
	return now < l->l_observed_ms + dur;
}

static uint64_t
expiry(const struct lease *l)
{
	return l->l_rec.lr_duration_s > 0
	    ? l->l_observed_ms + (uint64_t)l->l_rec.lr_duration_s * 1000
	    : l->l_observed_ms;
}

/* The object to PUT: the one last seen (its metadata and
 * resourceVersion), spec replaced. */
static json_t *
with_spec(const struct lease *l, const char *holder, int64_t duration_s,
    const char *acquire, const char *renew, int64_t transitions)
{
	json_t *o = json_deep_copy(l->l_obj);

	json_object_del(o, "status");
	json_object_set_new(o, "spec",
	    json_pack("{s:s,s:I,s:s,s:s,s:I}", "holderIdentity", holder,
	        "leaseDurationSeconds", (json_int_t)duration_s, "acquireTime",
	        acquire, "renewTime", renew, "leaseTransitions",
	        (json_int_t)transitions));
	return o;
}

enum lease_op
lease_next(struct lease *l, uint64_t now, uint64_t wall, const char *ns,
    const char *name, uint64_t retry_ms, json_t **body)
{
	char t[LEASE_TIME_MAX];
	int64_t transitions;
	enum lease_op op;

	*body = NULL;
	if (l->l_busy != LEASE_OP_NONE || l->l_given_up)
		return LEASE_OP_NONE;
	lease_microtime(wall, t, sizeof(t));
	if (l->l_giving_up) {
		if (!l->l_leader || l->l_denied) {
			l->l_given_up = true;
			return LEASE_OP_NONE;
		}
		/* Read it first for a fresh resourceVersion (client-go). */
		if (!l->l_release_read) {
			op = LEASE_OP_GET;
			goto send;
		}
		if (!held_by_me(l)) {
			l->l_leader = false;
			l->l_given_up = true;
			return LEASE_OP_NONE;
		}
		/* Released: no holder, as short as it may be; a drain keeps
		 * it for a while instead. */
		*body = l->l_goal == LEASE_TAKE
		    ? with_spec(l, l->l_identity, LEASE_HOLD_S,
		          l->l_rec.lr_acquire[0] ? l->l_rec.lr_acquire : t, t,
		          l->l_rec.lr_transitions)
		    : with_spec(l, "", 1, t, t, l->l_rec.lr_transitions);
		op = LEASE_OP_UPDATE;
		goto send;
	}
	if (now < l->l_next_ms)
		return LEASE_OP_NONE;
	op = l->l_want;
	switch (op) {
	case LEASE_OP_NONE:
	case LEASE_OP_GET:
		op = LEASE_OP_GET;
		break;
	case LEASE_OP_CREATE:
		*body = json_pack(
		    "{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:{s:s,s:I,s:s,s:s,s:I}}",
		    "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
		    "metadata", "name", name, "namespace", ns, "labels",
		    MANAGED_BY_LABEL, "runner-provisioner", "spec",
		    "holderIdentity", l->l_identity, "leaseDurationSeconds",
		    (json_int_t)(LEASE_DURATION_MS / 1000), "acquireTime", t,
		    "renewTime", t, "leaseTransitions", (json_int_t)0);
		break;
	case LEASE_OP_UPDATE:
		if (l->l_obj == NULL) { /* nothing to update: read first */
			op = LEASE_OP_GET;
			break;
		}
		/* As holder keep the acquisition; else a new transition. */
		transitions = l->l_rec.lr_transitions;
		if (!held_by_me(l))
			transitions++;
		*body = with_spec(l, l->l_identity, LEASE_DURATION_MS / 1000,
		    held_by_me(l) && l->l_rec.lr_acquire[0]
		        ? l->l_rec.lr_acquire
		        : t,
		    t, transitions);
		break;
	}
send:
	l->l_busy = op;
	l->l_sent_ms = now;
	/* When no answer changes it: the next read. */
	l->l_next_ms = now + retry_ms;
	return op;
}

/* Reads the spec of a Lease answer; -1 when it is not one. */
static int
record_read(json_t *body, struct lease_record *r, char **raw)
{
	json_t *spec = json_object_get(body, "spec");
	json_t *h, *d, *tr, *at, *rt;
	const char *rv = json_string_value(json_object_get(
	    json_object_get(body, "metadata"), "resourceVersion"));

	memset(r, 0, sizeof(*r));
	*raw = NULL;
	if (!json_is_object(body) || rv == NULL)
		return -1;
	if (spec == NULL)
		spec = json_object(); /* an empty record: free */
	else if (!json_is_object(spec))
		return -1;
	else
		json_incref(spec);
	h = json_object_get(spec, "holderIdentity");
	d = json_object_get(spec, "leaseDurationSeconds");
	tr = json_object_get(spec, "leaseTransitions");
	at = json_object_get(spec, "acquireTime");
	rt = json_object_get(spec, "renewTime");
	if ((h != NULL && !json_is_string(h) && !json_is_null(h)) ||
	    (d != NULL && !json_is_integer(d) && !json_is_null(d)) ||
	    (tr != NULL && !json_is_integer(tr) && !json_is_null(tr)) ||
	    (at != NULL && !json_is_string(at) && !json_is_null(at)) ||
	    (rt != NULL && !json_is_string(rt) && !json_is_null(rt)) ||
	    (json_is_string(h) && json_string_length(h) > LEASE_HOLDER_MAX) ||
	    (json_is_string(at) && json_string_length(at) >= LEASE_TIME_MAX) ||
	    (json_is_string(rt) && json_string_length(rt) >= LEASE_TIME_MAX)) {
		json_decref(spec);
		return -1;
	}
	if (json_is_string(h))
		strlcpy_rp(
		    r->lr_holder, json_string_value(h), sizeof(r->lr_holder));
	if (json_is_integer(d))
		r->lr_duration_s = json_integer_value(d);
	if (json_is_integer(tr) && json_integer_value(tr) >= 0)
		r->lr_transitions = json_integer_value(tr);
	if (json_is_string(at))
		strlcpy_rp(r->lr_acquire, json_string_value(at),
		    sizeof(r->lr_acquire));
	if (json_is_string(rt))
		strlcpy_rp(
		    r->lr_renew, json_string_value(rt), sizeof(r->lr_renew));
	*raw = json_dumps(spec, JSON_SORT_KEYS | JSON_COMPACT);
	json_decref(spec);
	return *raw != NULL ? 0 : -1;
}

/* A Lease the API server showed: the record's change time is ours. */
static void
observe(struct lease *l, json_t *body, struct lease_record *r, char *raw,
    uint64_t now)
{
	if (l->l_raw == NULL || strcmp(l->l_raw, raw) != 0)
		l->l_observed_ms = now;
	free(l->l_raw);
	l->l_raw = raw;
	l->l_rec = *r;
	json_decref(l->l_obj);
	l->l_obj = json_incref(body);
	l->l_read_ms = now;
}

/* After a read: take the Lease, or wait. */
static enum lease_event
decide(struct lease *l, uint64_t now)
{
	if (held_by_other(l, now) && l->l_goal == LEASE_ELECT) {
		l->l_want = LEASE_OP_GET;
		if (expiry(l) < l->l_next_ms)
			l->l_next_ms = expiry(l); /* look again right then */
		if (l->l_leader) {
			l->l_leader = false;
			return LEASE_EV_LOST;
		}
		return LEASE_EV_NONE;
	}
	/* Free, expired, ours already, or taken over (--drain). */
	if (l->l_goal == LEASE_TAKE && held_by_other(l, now))
		l->l_fence_ms = now + LEASE_RENEW_DEADLINE_MS;
	l->l_want = LEASE_OP_UPDATE;
	l->l_next_ms = now;
	return LEASE_EV_NONE;
}

enum lease_event
lease_answer(struct lease *l, long status, json_t *body, uint64_t now)
{
	enum lease_op op = l->l_busy;
	struct lease_record r;
	bool was_leader = l->l_leader;
	char *raw;

	l->l_busy = LEASE_OP_NONE;
	if (status < 0)
		return LEASE_EV_NONE; /* cancelled at exit */
	l->l_denied = status == 403;
	if (l->l_giving_up) {
		if (op == LEASE_OP_GET && status >= 200 && status < 300 &&
		    record_read(body, &r, &raw) == 0) {
			observe(l, body, &r, raw, now);
			l->l_release_read = true;
			return LEASE_EV_NONE;
		}
		/* One attempt: a Lease not given up expires by itself. */
		l->l_given_up = true;
		l->l_leader = false;
		if (op == LEASE_OP_UPDATE && status >= 200 && status < 300)
			return l->l_goal == LEASE_TAKE ? LEASE_EV_HELD
			                               : LEASE_EV_RELEASED;
		return LEASE_EV_NONE;
	}
	if (status == 404 && op == LEASE_OP_GET) {
		/* None yet: create it (no record to wait for). */
		json_decref(l->l_obj);
		l->l_obj = NULL;
		memset(&l->l_rec, 0, sizeof(l->l_rec));
		l->l_read_ms = now;
		l->l_want = LEASE_OP_CREATE;
		l->l_next_ms = now;
		return LEASE_EV_NONE;
	}
	if (status == 409 || (status == 404 && op != LEASE_OP_GET)) {
		/* Someone wrote first (or it went away): read it again now. */
		l->l_want = LEASE_OP_GET;
		l->l_next_ms = now;
		return LEASE_EV_NONE;
	}
	if (status < 200 || status >= 300 ||
	    record_read(body, &r, &raw) == -1) {
		/* Try again at the next retry; leadership runs out by itself
		 * (lease_tick) if no renewal succeeds. */
		if (op != LEASE_OP_GET)
			l->l_want = LEASE_OP_GET;
		return LEASE_EV_NONE;
	}
	observe(l, body, &r, raw, now);
	if (op == LEASE_OP_GET)
		return decide(l, now);
	/* A write succeeded: we hold it, from when the request was sent. */
	if (!held_by_me(l)) {
		l->l_want = LEASE_OP_GET;
		return LEASE_EV_NONE;
	}
	l->l_leader = true;
	l->l_renewed_ms = l->l_sent_ms;
	l->l_want = LEASE_OP_UPDATE;
	return was_leader ? LEASE_EV_NONE : LEASE_EV_ACQUIRED;
}

enum lease_event
lease_tick(struct lease *l, uint64_t now)
{
	if (!l->l_leader || l->l_given_up ||
	    now < l->l_renewed_ms + LEASE_RENEW_DEADLINE_MS)
		return LEASE_EV_NONE;
	/* No renewal for the renew deadline: another may take it soon. */
	l->l_leader = false;
	l->l_want = LEASE_OP_GET;
	return LEASE_EV_LOST;
}

bool
lease_may_write(const struct lease *l, uint64_t now)
{
	return l->l_leader && !l->l_giving_up && !l->l_given_up &&
	    now < l->l_renewed_ms + LEASE_RENEW_DEADLINE_MS &&
	    now >= l->l_fence_ms;
}

void
lease_give_up(struct lease *l)
{
	l->l_giving_up = true;
}

bool
lease_done(const struct lease *l)
{
	return l->l_given_up && l->l_busy == LEASE_OP_NONE;
}

uint64_t
lease_deadline(const struct lease *l, uint64_t now)
{
	uint64_t next = l->l_next_ms, t;

	if (l->l_busy != LEASE_OP_NONE || l->l_given_up)
		return UINT64_MAX;
	if (l->l_giving_up)
		return 0;
	t = l->l_renewed_ms + LEASE_RENEW_DEADLINE_MS;
	if (l->l_leader && t < next)
		next = t;
	if (l->l_fence_ms > now && l->l_fence_ms < next)
		next = l->l_fence_ms;
	return next;
}
