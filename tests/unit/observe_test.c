/*
 * Kubernetes answers as the actuator records them, and what it plans
 * next: every status a write can get, lists with foreign objects coming
 * and going, VM lists over realistic lifecycles, readiness.  No server:
 * answers are built from JSON text.
 */
#include "act_fixture.h"

enum body_kind {
	B_NONE,    /* no body, or not JSON */
	B_OBJECT,  /* the object as the write should have left it */
	B_PARTIAL, /* an object without the field the write is about */
	B_STATUS,  /* a Status object */
};

/* Brings the class to the state before write w is sent, and returns the
 * verb it is sent with. */
static void
prepare(struct fx *f, enum plan_write w)
{
	struct act_class *ac = fx_class(f);
	struct plan p;

	fx_settled(f, 1);
	fx_demand(f, true, 3, 0); /* target 3 */
	switch (w) {
	case PW_SECRET_CREATE:
		ac->ac_kube.ck_secret.os_state = OBJ_MISSING;
		break;
	case PW_SECRET_UPDATE:
		ac->ac_kube.ck_secret.os_state = OBJ_STALE;
		break;
	case PW_SECRET_GET:
		ac->ac_kube.ck_secret.os_state = OBJ_REREAD;
		break;
	case PW_POOL_CREATE:
		ac->ac_kube.ck_pool.os_state = OBJ_MISSING;
		break;
	case PW_POOL_UPDATE:
		ac->ac_kube.ck_pool.os_state = OBJ_STALE;
		break;
	case PW_POOL_GET:
		ac->ac_kube.ck_pool.os_state = OBJ_REREAD;
		break;
	case PW_SCALE:
	case PW_NONE:
	case PW_POOL_DELETE: /* retiring classes: see retire_test.c */
	case PW_SECRET_DELETE:
		break;
	}
	p = fx_plan(f);
	if (p.p_write != w)
		fail_msg("set-up for %s planned %s", plan_write_name(w),
		    plan_write_name(p.p_write));
	fx_sent(f, &p);
}

static json_t *
body_for(struct fx *f, enum plan_write w, enum body_kind b)
{
	struct act_class *ac = fx_class(f);
	json_t *o;

	if (b == B_NONE)
		return NULL;
	if (b == B_STATUS)
		return fx_json("{\"kind\":\"Status\",\"status\":\"Failure\","
		               "\"message\":\"the server says no\"}");
	if (plan_write_is_secret(w)) {
		o = fx_secret(ac, true, "20");
		if (b == B_PARTIAL)
			json_object_del(o, "metadata");
		return o;
	}
	if (w == PW_SCALE)
		return b == B_OBJECT
		    ? fx_json("{\"kind\":\"Scale\",\"spec\":{\"replicas\":3},"
		              "\"status\":{\"replicas\":1}}")
		    : fx_json("{\"kind\":\"Scale\",\"spec\":{},"
		              "\"status\":{\"replicas\":1}}");
	o = fx_pool(ac, 1, true, "21");
	if (b == B_PARTIAL)
		json_object_del(json_object_get(o, "metadata"), "name");
	return o;
}

/* Every answer a write can get, and what happens next. */
static void
test_every_answer(void **state)
{
	enum next {
		N_DONE,    /* nothing more to send for the class */
		N_GET_NOW, /* read the object again, at once */
		N_GET_LATER,
		N_SAME_LATER, /* the same write, after a pause */
		N_CREATE_NOW,
		N_SCALE_NOW, /* the pool is in step: scale next */
	};
	static const struct {
		enum plan_write w;
		long status;
		enum body_kind body;
		enum next next;
		bool denied;
	} cases[] = {
		{ PW_SCALE, 200, B_OBJECT, N_DONE, false },
		{ PW_SCALE, 200, B_PARTIAL, N_GET_LATER, false },
		{ PW_SCALE, 200, B_NONE, N_GET_LATER, false },
		{ PW_SCALE, 401, B_STATUS, N_SAME_LATER, false },
		{ PW_SCALE, 403, B_STATUS, N_SAME_LATER, true },
		{ PW_SCALE, 404, B_STATUS, N_GET_NOW, false },
		{ PW_SCALE, 409, B_STATUS, N_GET_NOW, false },
		{ PW_SCALE, 410, B_STATUS, N_GET_NOW, false },
		{ PW_SCALE, 422, B_STATUS, N_SAME_LATER, false },
		{ PW_SCALE, 429, B_STATUS, N_SAME_LATER, false },
		{ PW_SCALE, 500, B_STATUS, N_SAME_LATER, false },
		{ PW_SCALE, 503, B_NONE, N_SAME_LATER, false },
		{ PW_SCALE, 0, B_NONE, N_SAME_LATER, false }, /* timeout */
		{ PW_POOL_CREATE, 201, B_OBJECT, N_SCALE_NOW, false },
		{ PW_POOL_CREATE, 201, B_PARTIAL, N_GET_LATER, false },
		{ PW_POOL_CREATE, 403, B_STATUS, N_SAME_LATER, true },
		{ PW_POOL_CREATE, 404, B_STATUS, N_SAME_LATER, false },
		{ PW_POOL_CREATE, 409, B_STATUS, N_GET_NOW, false },
		{ PW_POOL_CREATE, 422, B_STATUS, N_SAME_LATER, false },
		{ PW_POOL_CREATE, 500, B_STATUS, N_SAME_LATER, false },
		{ PW_POOL_UPDATE, 200, B_OBJECT, N_SCALE_NOW, false },
		{ PW_POOL_UPDATE, 403, B_STATUS, N_SAME_LATER, true },
		{ PW_POOL_UPDATE, 404, B_STATUS, N_GET_NOW, false },
		{ PW_POOL_UPDATE, 409, B_STATUS, N_GET_NOW, false },
		{ PW_POOL_UPDATE, 0, B_NONE, N_SAME_LATER, false },
		{ PW_POOL_GET, 200, B_OBJECT, N_SCALE_NOW, false },
		{ PW_POOL_GET, 200, B_NONE, N_GET_LATER, false },
		{ PW_POOL_GET, 404, B_STATUS, N_CREATE_NOW, false },
		{ PW_POOL_GET, 403, B_STATUS, N_GET_LATER, true },
		{ PW_POOL_GET, 500, B_STATUS, N_GET_LATER, false },
		{ PW_SECRET_CREATE, 201, B_OBJECT, N_SCALE_NOW, false },
		{ PW_SECRET_CREATE, 201, B_PARTIAL, N_GET_LATER, false },
		{ PW_SECRET_CREATE, 409, B_STATUS, N_GET_NOW, false },
		{ PW_SECRET_CREATE, 403, B_STATUS, N_SAME_LATER, true },
		{ PW_SECRET_UPDATE, 200, B_OBJECT, N_SCALE_NOW, false },
		{ PW_SECRET_UPDATE, 409, B_STATUS, N_GET_NOW, false },
		{ PW_SECRET_UPDATE, 404, B_STATUS, N_GET_NOW, false },
		{ PW_SECRET_UPDATE, 500, B_STATUS, N_SAME_LATER, false },
		{ PW_SECRET_GET, 200, B_OBJECT, N_SCALE_NOW, false },
		{ PW_SECRET_GET, 404, B_STATUS, N_CREATE_NOW, false },
	};
	struct act_class *ac;
	struct kube_reply r;
	struct plan p;
	struct fx *f;
	json_t *body;
	uint64_t now;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		const char *what = plan_write_name(cases[i].w);
		enum plan_write want_now = PW_NONE, want_later = PW_NONE;
		bool secret = plan_write_is_secret(cases[i].w);

		f = fx_new();
		ac = fx_class(f);
		prepare(f, cases[i].w);
		body = body_for(f, cases[i].w, cases[i].body);
		r = fx_reply(plan_write_verb(cases[i].w), cases[i].status,
		    body, "HTTP error: the server says no");
		now = now_ms();
		observe_write(&f->f_a, ac, cases[i].w, 1, &r, now);
		json_decref(body);
		assert_false(ac->ac_kube.ck_busy);
		switch (cases[i].next) {
		case N_DONE:
			break;
		case N_GET_NOW:
			want_now = secret ? PW_SECRET_GET : PW_POOL_GET;
			break;
		case N_GET_LATER:
			want_later = secret ? PW_SECRET_GET : PW_POOL_GET;
			break;
		case N_SAME_LATER:
			want_later = cases[i].w;
			break;
		case N_CREATE_NOW:
			want_now = secret ? PW_SECRET_CREATE : PW_POOL_CREATE;
			break;
		case N_SCALE_NOW:
			want_now = PW_SCALE;
			break;
		}
		p = fx_plan_at(f, now, wall_ms());
		if (p.p_write != want_now)
			fail_msg("%s → %ld: planned %s at once, want %s", what,
			    cases[i].status, plan_write_name(p.p_write),
			    plan_write_name(want_now));
		if (want_later != PW_NONE) {
			/* A pause, then the retry; the deadline is real. */
			assert_true(p.p_wake_ms > now);
			assert_true(
			    p.p_wake_ms <= now + WRITE_BACKOFF_BASE_MS);
			p = fx_plan_at(f, p.p_wake_ms, wall_ms());
			if (p.p_write != want_later)
				fail_msg("%s → %ld: planned %s later, want %s",
				    what, cases[i].status,
				    plan_write_name(p.p_write),
				    plan_write_name(want_later));
		}
		if (((ac->ac_kube.ck_denied &
		         (1u << plan_write_verb(cases[i].w))) != 0) !=
		    cases[i].denied)
			fail_msg("%s → %ld: denied %s", what, cases[i].status,
			    cases[i].denied ? "not recorded" : "recorded");
		if (cases[i].status >= 200 && cases[i].status < 300 &&
		    cases[i].body == B_PARTIAL && cases[i].w == PW_SCALE)
			assert_int_equal(fx_logged(f, "scaled "), 0);
		fx_free(f);
	}
}

/* A scale answer without spec.replicas was logged as "scaled … to 0". */
static void
test_scale_answer_without_replicas(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	json_t *body = fx_json("{\"kind\":\"Scale\",\"spec\":{}}");
	struct kube_reply r = fx_reply(KV_POOL_SCALE, 200, body, NULL);

	(void)state;
	prepare(f, PW_SCALE);
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now_ms());
	json_decref(body);
	assert_int_equal(fx_logged(f, "scaled my-org--runner from 1 to 0"), 0);
	assert_int_equal(ac->ac_kube.ck_replicas, 1);
	assert_int_equal(ac->ac_kube.ck_pool.os_state, OBJ_REREAD);
	/* Out of range or of the wrong type is as good as absent. */
	body = fx_json("{\"spec\":{\"replicas\":-2}}");
	r = fx_reply(KV_POOL_SCALE, 200, body, NULL);
	ac->ac_kube.ck_busy = true;
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now_ms());
	json_decref(body);
	body = fx_json("{\"spec\":{\"replicas\":4294967299}}");
	r = fx_reply(KV_POOL_SCALE, 200, body, NULL);
	ac->ac_kube.ck_busy = true;
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now_ms());
	json_decref(body);
	body = fx_json("{\"spec\":{\"replicas\":\"3\"}}");
	r = fx_reply(KV_POOL_SCALE, 200, body, NULL);
	ac->ac_kube.ck_busy = true;
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now_ms());
	json_decref(body);
	assert_int_equal(fx_logged(f, "\"msg\":\"scaled "), 0);
	assert_int_equal(ac->ac_kube.ck_replicas, 1);
	/* Each malformed answer pushed the retry further out. */
	assert_true(ac->ac_kube.ck_backoff.b_attempt == 4);
	fx_free(f);
}

/* Conflicts in a row back off: someone else keeps writing. */
static void
test_conflicts_in_a_row_back_off(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct kube_reply r;
	struct plan p;
	json_t *pool;
	uint64_t now = now_ms();

	(void)state;
	prepare(f, PW_POOL_UPDATE);
	r = fx_reply(KV_POOL_UPDATE, 409, NULL, "HTTP 409");
	observe_write(&f->f_a, ac, PW_POOL_UPDATE, 1, &r, now);
	p = fx_plan_at(f, now, wall_ms());
	assert_int_equal(p.p_write, PW_POOL_GET);
	fx_sent(f, &p);
	pool = fx_pool(ac, 1, false, "30"); /* still outdated */
	r = fx_reply(KV_POOL_GET, 200, pool, NULL);
	observe_write(&f->f_a, ac, PW_POOL_GET, 1, &r, now);
	json_decref(pool);
	p = fx_plan_at(f, now, wall_ms());
	assert_int_equal(p.p_write, PW_POOL_UPDATE);
	assert_string_equal(ac->ac_kube.ck_pool.os_rv, "30");
	fx_sent(f, &p);
	r = fx_reply(KV_POOL_UPDATE, 409, NULL, "HTTP 409");
	observe_write(&f->f_a, ac, PW_POOL_UPDATE, 1, &r, now);
	p = fx_plan_at(f, now, wall_ms());
	assert_int_equal(p.p_write, PW_NONE);
	assert_true(p.p_wake_ms > now);
	fx_free(f);
}

/* A pool of our name that someone else made: left alone; once its owner
 * deletes it, ours is created within one resync. */
static void
test_foreign_pool_comes_and_goes(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct kube_reply r;
	struct plan p;
	json_t *b;
	uint64_t now = now_ms();

	(void)state;
	fx_listed(f, LIST_SECRETS,
	    fx_list(json_pack("[o]", fx_secret(ac, true, "10"))));
	fx_listed(f, LIST_POOLS, fx_list(json_array())); /* no label */
	fx_demand(f, true, 2, 0);
	p = fx_plan_at(f, now, wall_ms());
	assert_int_equal(p.p_write, PW_POOL_CREATE);
	fx_sent(f, &p);
	b = fx_json("{\"kind\":\"Status\",\"reason\":\"AlreadyExists\"}");
	r = fx_reply(KV_POOL_CREATE, 409, b, "HTTP 409: already exists");
	observe_write(&f->f_a, ac, PW_POOL_CREATE, 0, &r, now);
	json_decref(b);
	p = fx_plan_at(f, now, wall_ms());
	assert_int_equal(p.p_write, PW_POOL_GET);
	fx_sent(f, &p);
	b = fx_foreign(FX_POOL);
	r = fx_reply(KV_POOL_GET, 200, b, NULL);
	observe_write(&f->f_a, ac, PW_POOL_GET, 0, &r, now);
	json_decref(b);
	assert_int_equal(ac->ac_kube.ck_pool.os_state, OBJ_FOREIGN);
	assert_int_equal(fx_logged(f, "exists but is not managed"), 1);
	assert_false(act_class_ready(&f->f_a, ac, now));

	/* Hands off: no write, and lists (which never show it) change
	 * nothing; it is read again every resync. */
	p = fx_plan_at(f, now, wall_ms());
	assert_int_equal(p.p_write, PW_NONE);
	assert_true(p.p_wake_ms == now + FOREIGN_RECHECK_MS);
	assert_true(FOREIGN_RECHECK_MS <= RESYNC_MS);
	fx_listed(f, LIST_POOLS, fx_list(json_array()));
	assert_int_equal(ac->ac_kube.ck_pool.os_state, OBJ_FOREIGN);
	p = fx_plan_at(f, now + FOREIGN_RECHECK_MS, wall_ms());
	assert_int_equal(p.p_write, PW_POOL_GET);
	fx_sent(f, &p);
	b = fx_foreign(FX_POOL);
	r = fx_reply(KV_POOL_GET, 200, b, NULL);
	observe_write(&f->f_a, ac, PW_POOL_GET, 0, &r, now);
	json_decref(b);
	assert_int_equal(fx_logged(f, "exists but is not managed"), 1);

	/* Its owner deletes it: the next look finds it gone. */
	p = fx_plan_at(f, now + 2 * FOREIGN_RECHECK_MS, wall_ms());
	assert_int_equal(p.p_write, PW_POOL_GET);
	fx_sent(f, &p);
	b = fx_json("{\"kind\":\"Status\",\"reason\":\"NotFound\"}");
	r = fx_reply(KV_POOL_GET, 404, b, "HTTP 404");
	observe_write(&f->f_a, ac, PW_POOL_GET, 0, &r, now);
	json_decref(b);
	assert_int_equal(fx_logged(f, "is gone; creating our own"), 1);
	p = fx_plan_at(f, now + 2 * FOREIGN_RECHECK_MS, wall_ms());
	assert_int_equal(p.p_write, PW_POOL_CREATE);
	assert_int_equal(p.p_replicas, 2);
	fx_free(f);
}

/* Someone else's Secret of our name: no pool is made to mount it. */
static void
test_foreign_secret(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct kube_reply r;
	struct plan p;
	json_t *b = fx_foreign(FX_SECRET);

	(void)state;
	fx_listed(f, LIST_SECRETS, fx_list(json_array()));
	fx_listed(f, LIST_POOLS, fx_list(json_array()));
	p = fx_plan(f);
	assert_int_equal(p.p_write, PW_SECRET_CREATE);
	fx_sent(f, &p);
	r = fx_reply(KV_SECRET_CREATE, 409, NULL, "HTTP 409");
	observe_write(&f->f_a, ac, PW_SECRET_CREATE, 0, &r, now_ms());
	p = fx_plan(f);
	assert_int_equal(p.p_write, PW_SECRET_GET);
	fx_sent(f, &p);
	r = fx_reply(KV_SECRET_GET, 200, b, NULL);
	observe_write(&f->f_a, ac, PW_SECRET_GET, 0, &r, now_ms());
	json_decref(b);
	assert_int_equal(ac->ac_kube.ck_secret.os_state, OBJ_FOREIGN);
	p = fx_plan(f);
	assert_int_equal(p.p_write, PW_NONE);
	assert_int_equal(fx_logged(f,
	                     "secret my-org--runner-userdata exists "
	                     "but is not managed"),
	    1);
	fx_free(f);
}

/* A pool of ours that belongs to another class (same name from another
 * deployment): foreign, never written. */
static void
test_pool_of_another_class(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	json_t *pool = fx_pool(ac, 4, true, "12");
	struct plan p;

	(void)state;
	json_object_set_new(
	    json_object_get(json_object_get(pool, "metadata"), "annotations"),
	    ANNOT_CLASS, json_string("other-org/runner"));
	fx_listed(f, LIST_SECRETS,
	    fx_list(json_pack("[o]", fx_secret(ac, true, "10"))));
	fx_listed(f, LIST_POOLS, fx_list(json_pack("[o]", pool)));
	fx_demand(f, true, 0, 0);
	assert_int_equal(ac->ac_kube.ck_pool.os_state, OBJ_FOREIGN);
	p = fx_plan(f);
	assert_int_equal(p.p_write, PW_NONE);
	assert_int_equal(fx_logged(f,
	                     "belongs to resource class "
	                     "other-org/runner"),
	    1);
	fx_free(f);
}

static void
test_pool_deleted_by_hand(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct plan p;

	(void)state;
	fx_settled(f, 3);
	fx_demand(f, true, 3, 0);
	p = fx_plan(f);
	assert_true(p.p_synced);
	fx_listed(f, LIST_POOLS, fx_list(json_array()));
	assert_int_equal(fx_logged(f, "disappeared; creating it again"), 1);
	p = fx_plan(f);
	assert_int_equal(p.p_write, PW_POOL_CREATE);
	assert_int_equal(p.p_replicas, 3);
	(void)ac;
	fx_free(f);
}

/* A list sent before a write finished must not undo what the answer
 * said; a list sent while the write is out neither. */
static void
test_list_older_than_a_write_is_ignored(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	json_t *body = fx_json("{\"spec\":{\"replicas\":3}}");
	struct kube_reply r = fx_reply(KV_POOL_SCALE, 200, body, NULL);
	uint64_t seq;

	(void)state;
	prepare(f, PW_SCALE);
	seq = ++f->f_a.a_seq; /* a pool list goes out */
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now_ms());
	json_decref(body);
	r = fx_reply(KV_POOL_LIST, 200,
	    fx_list(json_pack("[o]", fx_pool(ac, 1, true, "11"))), NULL);
	f->f_a.a_lists[LIST_POOLS].al_busy = true;
	observe_list(&f->f_a, LIST_POOLS, &r, seq, now_ms());
	json_decref(r.kr_body);
	assert_int_equal(ac->ac_kube.ck_replicas, 3);
	fx_free(f);
}

/* 403 on the scale: not ready from the first denial, ready again once a
 * scale goes through. */
static void
test_denied_scale_and_readiness(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	json_t *body;
	struct kube_reply r;
	struct plan p;
	uint64_t now = now_ms();

	(void)state;
	fx_settled(f, 1);
	fx_demand(f, true, 1, 0);
	p = fx_plan_at(f, now, wall_ms());
	assert_true(p.p_synced);
	ac->ac_kube.ck_synced_ms = now; /* as the loop records it */
	assert_true(act_class_ready(&f->f_a, ac, now));

	fx_demand(f, true, 3, 0);
	p = fx_plan_at(f, now, wall_ms());
	assert_int_equal(p.p_write, PW_SCALE);
	fx_sent(f, &p);
	body = fx_json("{\"kind\":\"Status\",\"message\":\"forbidden\"}");
	r = fx_reply(KV_POOL_SCALE, 403, body, "HTTP 403: forbidden");
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now);
	json_decref(body);
	/* Still synced a moment ago, and yet not ready. */
	assert_false(act_class_ready(&f->f_a, ac, now));

	p = fx_plan_at(f, ac->ac_kube.ck_retry_ms, wall_ms());
	assert_int_equal(p.p_write, PW_SCALE);
	fx_sent(f, &p);
	body = fx_json("{\"spec\":{\"replicas\":3}}");
	r = fx_reply(KV_POOL_SCALE, 200, body, NULL);
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now);
	json_decref(body);
	assert_int_equal(ac->ac_kube.ck_denied, 0);
	assert_true(act_class_ready(&f->f_a, ac, now));

	/* A denied list: every class is not ready until it works. */
	r = fx_reply(KV_VM_LIST, 403, NULL, "HTTP 403");
	f->f_a.a_lists[LIST_VMS].al_busy = true;
	observe_list(&f->f_a, LIST_VMS, &r, ++f->f_a.a_seq, now);
	assert_false(act_class_ready(&f->f_a, ac, now));
	fx_listed(f, LIST_VMS, fx_list(json_array()));
	assert_true(act_class_ready(&f->f_a, ac, now));
	fx_free(f);
}

/* The error text in /ready: cut on a character, never dropped. */
static void
test_error_text_cut_at_a_character(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct msg_health h;
	struct buf metrics = { 0 };
	struct kube_reply r;
	char err[400];
	json_t *cls;
	size_t i;

	(void)state;
	prepare(f, PW_SCALE);
	/* "é" (2 bytes) straddles the class's error buffer's end. */
	for (i = 0; i < CLASS_ERROR_MAX - 2; i++)
		err[i] = 'x';
	memcpy(err + i, "\xc3\xa9 and more", 11);
	r = fx_reply(KV_POOL_SCALE, 500, NULL, err);
	observe_write(&f->f_a, ac, PW_SCALE, 1, &r, now_ms());
	memset(&h, 0, sizeof(h));
	report_health(&f->f_a, &h, &metrics);
	cls =
	    json_object_get(json_object_get(h.hl_detail, "classes"), FX_CLASS);
	assert_non_null(json_object_get(cls, "last_error"));
	assert_int_equal(
	    strlen(json_string_value(json_object_get(cls, "last_error"))),
	    CLASS_ERROR_MAX - 2);
	json_decref(h.hl_detail);
	buf_free(&metrics);
	fx_free(f);
}

/* VM lists over time: a VM's life as the pool shows it. */
struct vm_step {
	const char *name;
	const char *status; /* printableStatus, NULL: gone */
};

static json_t *
vm_list(struct vm_step *vms, size_t n, uint64_t created_wall)
{
	json_t *items = json_array();
	char uid[64];
	size_t i;

	for (i = 0; i < n; i++) {
		if (vms[i].status == NULL)
			continue;
		snprintf(uid, sizeof(uid), "uid-%s", vms[i].name);
		json_array_append_new(items,
		    fx_vm(vms[i].name, uid, "7", vms[i].status,
		        fx_time(created_wall + i * 1000), NULL, false,
		        strcmp(vms[i].status, "Stopped") != 0));
	}
	return fx_list(items);
}

/* Fast boots and short jobs (1 s + 3 s): VMs stop well within the
 * boot-loop threshold, a job ran in each; never a boot loop. */
static void
test_fast_boots_short_jobs_through_lists(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct vm_step vm[1];
	char name[32];
	uint64_t start;
	int i;

	(void)state;
	fx_settled(f, 1);
	fx_demand(f, true, 1, 0);
	/* Demand has been good for a while; the VMs are younger. */
	start = wall_ms() - 5000;
	ac->ac_demand.cd_evidence.be_good_since_ms = start - 5000;
	for (i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "vm-%d", i);
		vm[0].name = name;
		vm[0].status = "Running";
		fx_listed(f, LIST_VMS, vm_list(vm, 1, start));
		fx_demand(f, true, 0, 1); /* its job runs */
		fx_demand(f, true, 1, 0); /* done; the next task queued */
		vm[0].status = "Stopped";
		fx_listed(f, LIST_VMS, vm_list(vm, 1, start));
	}
	assert_false(ac->ac_vms.cv_boot.bg_loop);
	assert_int_equal(fx_logged(f, "boot loop:"), 0);
	fx_free(f);
}

/* A wrong runner token: VMs stop at once and no job ever runs. */
static void
test_wrong_token_through_lists(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct vm_step vm[1];
	char name[32];
	uint64_t start;
	int i;

	(void)state;
	fx_settled(f, 1);
	fx_demand(f, true, 4, 0);
	start = wall_ms() + 1000;
	for (i = 0; i < BOOT_LOOP_STREAK; i++) {
		snprintf(name, sizeof(name), "vm-%d", i);
		vm[0].name = name;
		vm[0].status = "Stopped";
		fx_listed(f, LIST_VMS, vm_list(vm, 1, start));
		fx_listed(
		    f, LIST_VMS, vm_list(vm, 1, start)); /* judged once */
		fx_demand(f, true, 4, 0);
	}
	assert_true(ac->ac_vms.cv_boot.bg_loop);
	assert_int_equal(fx_logged(f, "boot loop: VMs power off"), 1);
	assert_false(act_class_ready(&f->f_a, ac, now_ms()));
	/* A job runs at last: the loop ends. */
	fx_demand(f, true, 3, 1);
	fx_listed(f, LIST_VMS, fx_list(json_array()));
	assert_false(ac->ac_vms.cv_boot.bg_loop);
	assert_int_equal(fx_logged(f, "work again (a job ran)"), 1);
	fx_free(f);
}

/* Stopped VMs found at start-up are reclaimed but not judged; VMs with
 * missing fields are ignored; VMs of unknown pools are not ours. */
static void
test_vm_list_at_start_up(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	uint64_t w = wall_ms();
	json_t *items = json_array(), *bad;
	struct plan p;

	(void)state;
	fx_settled(f, 3);
	json_array_append_new(items,
	    fx_vm("a", "uid-a", "3", "Stopped", fx_time(w - 5000), NULL, true,
	        false));
	json_array_append_new(items,
	    fx_vm("b", "uid-b", "4", "Stopped", fx_time(w - 5000), NULL, true,
	        false));
	json_array_append_new(items,
	    fx_vm("c", "uid-c", "5", "Running", fx_time(w - 5000), NULL, true,
	        true));
	json_array_append_new(items,
	    fx_vm("d", "uid-d", "6", "Stopped", fx_time(w - 5000), NULL, true,
	        false));
	bad = json_array_get(items, 2 + 1);
	json_object_del(json_object_get(bad, "metadata"), "resourceVersion");
	bad = fx_vm(
	    "e", "uid-e", "8", "Stopped", "yesterday", NULL, true, false);
	json_array_append_new(items, bad);
	bad =
	    fx_vm("f", "uid-f", "9", "Stopped", fx_time(w), NULL, true, false);
	json_object_set_new(
	    json_object_get(json_object_get(bad, "metadata"), "labels"),
	    LABEL_CLASS, json_string("another-pool"));
	json_array_append_new(items, bad);
	fx_listed(f, LIST_VMS, fx_list(items));
	assert_int_equal(ac->ac_vms.cv_n, 3);
	assert_int_equal(ac->ac_vms.cv_count[VMS_STOPPED], 2);
	assert_int_equal(ac->ac_vms.cv_boot.bg_streak, 0);
	p = fx_plan(f);
	assert_int_equal(p.p_nvm, 2);
	assert_string_equal(p.p_vm[0].pv_vm->vs_rv, "3");
	fx_free(f);
}

/* VM request answers: gone or changed since listed is no error. */
static void
test_vm_op_answers(void **state)
{
	static const struct {
		long status;
		bool error, denied;
	} cases[] = {
		{ 200, false, false },
		{ 404, false, false },
		{ 409, false, false }, /* uid or resourceVersion changed */
		{ 422, false, false }, /* a JSON patch test failed */
		{ 403, true, true },
		{ 500, true, false },
		{ 0, true, false },
	};
	struct act_class *ac;
	struct kube_reply r;
	struct fx *f;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		f = fx_new();
		ac = fx_class(f);
		ac->ac_vms.cv_inflight = 1;
		r = fx_reply(KV_VM_DELETE, cases[i].status, NULL, "HTTP err");
		observe_vm_op(&f->f_a, ac, PV_DELETE, "vm-1", &r, now_ms());
		assert_int_equal(ac->ac_vms.cv_inflight, 0);
		assert_int_equal(ac->ac_vms.cv_retry_ms != 0, cases[i].error);
		assert_int_equal(
		    (ac->ac_kube.ck_denied != 0), cases[i].denied);
		assert_int_equal(fx_logged(f, "reclaimed stopped VM vm-1"),
		    cases[i].status == 200);
		fx_free(f);
	}
	f = fx_new();
	ac = fx_class(f);
	ac->ac_vms.cv_inflight = 1;
	r = fx_reply(KV_VM_PATCH, 200, NULL, NULL);
	observe_vm_op(&f->f_a, ac, PV_RELEASE, "vm-2", &r, now_ms());
	assert_int_equal(fx_logged(f, "released VM vm-2"), 1);
	fx_free(f);
}

static void
test_names(void **state)
{
	int s;

	(void)state;
	for (s = OBJ_UNKNOWN; s <= OBJ_REREAD; s++)
		assert_string_not_equal(
		    obj_state_name((enum obj_state)s), "?");
	for (s = 0; s < VMS_COUNT; s++)
		assert_non_null(vm_state_name((enum vm_state)s));
	assert_string_equal(vm_state_name(VMS_COUNT), "other");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_answer),
		cmocka_unit_test(test_scale_answer_without_replicas),
		cmocka_unit_test(test_conflicts_in_a_row_back_off),
		cmocka_unit_test(test_foreign_pool_comes_and_goes),
		cmocka_unit_test(test_foreign_secret),
		cmocka_unit_test(test_pool_of_another_class),
		cmocka_unit_test(test_pool_deleted_by_hand),
		cmocka_unit_test(test_list_older_than_a_write_is_ignored),
		cmocka_unit_test(test_denied_scale_and_readiness),
		cmocka_unit_test(test_error_text_cut_at_a_character),
		cmocka_unit_test(test_fast_boots_short_jobs_through_lists),
		cmocka_unit_test(test_wrong_token_through_lists),
		cmocka_unit_test(test_vm_list_at_start_up),
		cmocka_unit_test(test_vm_op_answers),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
