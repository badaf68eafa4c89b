/*
 * An actuator without a Kubernetes client, for the actuator's unit tests:
 * classes from a configuration text, answers made from JSON text, and the
 * log captured so a test can ask what was said.  Header-only (static
 * functions), included by the test files that need it.
 */
#ifndef RP_ACT_FIXTURE_H
#define RP_ACT_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actuator.h"
#include "log.h"
#include "util.h"

#define FX_NS     "runners"
#define FX_CLASS  "my-org/runner"
#define FX_POOL   "my-org--runner"
#define FX_SECRET "my-org--runner-userdata"
#define FX_CONFIG                                                             \
	"resourceClass:\n"                                                    \
	"  \"" FX_CLASS "\":\n"                                               \
	"    token: \"fx-runner-token-0123456789\"\n"                         \
	"    minReplicas: 1\n"                                                \
	"    maxReplicas: 10\n"

struct fx {
	struct conf *f_conf;
	struct flags f_flags;
	struct role f_role;
	struct actuator f_a;
	FILE *f_log; /* everything logged */
};

static inline struct fx *
fx_new_with(const char *yaml, const char *const *extra_argv)
{
	struct fx *f = xcalloc(1, sizeof(*f));
	char err[CONF_ERR_MAX];
	char *argv[16] = { (char *)(uintptr_t) "actuator" };
	int argc = 1;

	while (extra_argv != NULL && extra_argv[argc - 1] != NULL)
		argv[argc] = (char *)(uintptr_t)extra_argv[argc - 1], argc++;
	if (flags_parse(&f->f_flags, argc, argv, err, sizeof(err)) == -1)
		fail_msg("flags: %s", err);
	f->f_conf =
	    conf_parse("config.yaml", yaml, strlen(yaml), err, sizeof(err));
	if (f->f_conf == NULL)
		fail_msg("config: %s", err);
	f->f_log = tmpfile();
	assert_non_null(f->f_log);
	log_init("actuator", LOG_LVL_DEBUG);
	log_set_fd(fileno(f->f_log));
	f->f_role.r_name = "actuator";
	f->f_role.r_start_ms = now_ms();
	f->f_a.a_role = &f->f_role;
	f->f_a.a_flags = &f->f_flags;
	f->f_a.a_conf = f->f_conf;
	f->f_a.a_metrics = metrics_new();
	strlcpy_rp(
	    f->f_a.a_identity, "fx-host_0000", sizeof(f->f_a.a_identity));
	assert_int_equal(act_classes_setup(&f->f_a), 0);
	f->f_a.a_may_write = true;
	return f;
}

static inline struct fx *
fx_new(void)
{
	return fx_new_with(FX_CONFIG, NULL);
}

static inline void
fx_free(struct fx *f)
{
	event_cache_free(&f->f_a);
	act_classes_free(&f->f_a);
	lease_free(&f->f_a.a_lease);
	metrics_free(f->f_a.a_metrics);
	conf_free(f->f_a.a_conf);
	flags_free(&f->f_flags);
	log_set_fd(-1);
	fclose(f->f_log);
	free(f);
}

static inline struct act_class *
fx_class(struct fx *f)
{
	return f->f_a.a_classes[0];
}

/* How many log lines so far contain s. */
static inline int
fx_logged(struct fx *f, const char *s)
{
	char line[LOG_LINE_MAX + 2];
	int n = 0;

	fflush(f->f_log);
	rewind(f->f_log);
	while (fgets(line, sizeof(line), f->f_log) != NULL)
		if (strstr(line, s) != NULL)
			n++;
	fseek(f->f_log, 0, SEEK_END);
	return n;
}

/* Prints what was logged (for a failing test's output). */
static inline void
fx_dump(struct fx *f)
{
	char line[LOG_LINE_MAX + 2];

	fflush(f->f_log);
	rewind(f->f_log);
	while (fgets(line, sizeof(line), f->f_log) != NULL)
		fputs(line, stderr);
	fseek(f->f_log, 0, SEEK_END);
}

/* A JSON value from text (NULL text: NULL); fails the test when invalid. */
static inline json_t *
fx_json(const char *text)
{
	json_error_t e;
	json_t *j;

	if (text == NULL)
		return NULL;
	if ((j = json_loads(text, JSON_REJECT_DUPLICATES, &e)) == NULL)
		fail_msg("bad JSON in test: %s: %s", e.text, text);
	return j;
}

/* Whether a equals b; b is taken. */
static inline bool
fx_equal(json_t *a, json_t *b)
{
	bool eq = json_equal(a, b);

	json_decref(b);
	return eq;
}

/* An answer: body is JSON text or NULL; the reply borrows *body. */
static inline struct kube_reply
fx_reply(enum kube_verb verb, long status, json_t *body, const char *error)
{
	struct kube_reply r;

	memset(&r, 0, sizeof(r));
	r.kr_verb = verb;
	r.kr_status = status;
	r.kr_body = body;
	r.kr_error = error != NULL ? error : "HTTP error";
	return r;
}

/* The class's pool as the API server would show it: ours, the current
 * template (or an outdated one), spec.replicas n (negative: absent). */
static inline json_t *
fx_pool(struct act_class *ac, long replicas, bool current, const char *rv)
{
	json_t *p = pool_json(&ac->ac_obj, ac->ac_conf, FX_NS,
	    replicas < 0 ? 0 : (uint32_t)replicas, rv);
	json_t *md = json_object_get(p, "metadata");

	if (replicas < 0)
		json_object_del(json_object_get(p, "spec"), "replicas");
	if (!current)
		json_object_set_new(json_object_get(md, "annotations"),
		    ANNOT_HASH, json_string("0000000000000000"));
	json_object_set_new(md, "uid", json_string("pool-uid-1"));
	json_object_set_new(p, "status",
	    json_pack("{s:I,s:I}", "replicas",
	        (json_int_t)(replicas < 0 ? 0 : replicas), "readyReplicas",
	        (json_int_t)(replicas < 0 ? 0 : replicas)));
	return p;
}

static inline json_t *
fx_secret(struct act_class *ac, bool current, const char *rv)
{
	json_t *s = pool_secret_json(&ac->ac_obj, ac->ac_conf, FX_NS, rv);

	if (!current)
		json_object_set_new(json_object_get(s, "data"), SECRET_KEY,
		    json_string("b2xk"));
	return s;
}

/* A foreign object of that name: no managed-by label. */
static inline json_t *
fx_foreign(const char *name)
{
	return json_pack("{s:{s:s,s:s,s:s,s:{s:s}},s:{s:i}}", "metadata",
	    "name", name, "namespace", FX_NS, "resourceVersion", "77",
	    "labels", "owner", "someone-else", "spec", "replicas", 2);
}

/* A list answer of those items (taken). */
static inline json_t *
fx_list(json_t *items)
{
	return json_pack("{s:s,s:o}", "kind", "List", "items", items);
}

/* A pool VM in a printable status; times are RFC 3339 text or NULL. */
static inline json_t *
fx_vm(const char *name, const char *uid, const char *rv, const char *status,
    const char *created, const char *deleted, bool pool_finalizer,
    bool has_vmi)
{
	json_t *vm = json_pack("{s:{s:s,s:s,s:s,s:s,s:s,s:{s:s,s:s}},s:{}}",
	    "metadata", "name", name, "namespace", FX_NS, "uid", uid,
	    "resourceVersion", rv, "creationTimestamp", created, "labels",
	    LABEL_MANAGED_BY, MANAGED_BY, LABEL_CLASS, FX_POOL, "status");
	json_t *md = json_object_get(vm, "metadata");
	json_t *st = json_object_get(vm, "status");

	if (status != NULL)
		json_object_set_new(
		    st, "printableStatus", json_string(status));
	json_object_set_new(st, "created", json_boolean(has_vmi));
	if (deleted != NULL)
		json_object_set_new(
		    md, "deletionTimestamp", json_string(deleted));
	if (pool_finalizer)
		json_object_set_new(md, "finalizers",
		    json_pack("[s,s]",
		        "kubevirt.io/virtualMachineControllerFinalize",
		        POOL_FINALIZER));
	return vm;
}

/* RFC 3339 for wall-clock ms since the epoch (static buffer, rotating). */
static inline const char *
fx_time(uint64_t wall)
{
	static char buf[4][32];
	static int i;
	time_t t = (time_t)(wall / 1000);
	struct tm tm;

	i = (i + 1) % 4;
	gmtime_r(&t, &tm);
	strftime(buf[i], sizeof(buf[i]), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf[i];
}

/* Delivers a list answer to the actuator as a completed request would. */
static inline void
fx_listed(struct fx *f, enum act_list_kind kind, json_t *body)
{
	static const enum kube_verb verbs[LIST_COUNT] = {
		[LIST_POOLS] = KV_POOL_LIST,
		[LIST_VMS] = KV_VM_LIST,
		[LIST_SECRETS] = KV_SECRET_LIST,
	};
	struct kube_reply r = fx_reply(verbs[kind], 200, body, NULL);

	f->f_a.a_lists[kind].al_busy = true;
	observe_list(&f->f_a, kind, &r, ++f->f_a.a_seq, now_ms());
	json_decref(body);
}

/* The class with its Secret current and its pool current at n replicas,
 * as after start-up lists. */
static inline void
fx_settled(struct fx *f, long replicas)
{
	struct act_class *ac = fx_class(f);

	fx_listed(f, LIST_SECRETS,
	    fx_list(json_pack("[o]", fx_secret(ac, true, "10"))));
	fx_listed(f, LIST_POOLS,
	    fx_list(json_pack("[o]", fx_pool(ac, replicas, true, "11"))));
	fx_listed(f, LIST_VMS, fx_list(json_array()));
}

/* A demand observation for the class, as the poller sends it. */
static inline void
fx_demand(struct fx *f, bool ok, uint32_t unclaimed, uint32_t running)
{
	struct msg_demand d;

	memset(&d, 0, sizeof(d));
	d.d_ok = ok;
	d.d_error = ok ? DEMAND_ERR_NONE : DEMAND_ERR_HTTP;
	d.d_unclaimed = ok ? unclaimed : 0;
	d.d_running = ok ? running : 0;
	snprintf(d.d_class, sizeof(d.d_class), "%s", FX_CLASS);
	demand_record(fx_class(f), &d, now_ms(), wall_ms());
	demand_decide(&f->f_a, fx_class(f), now_ms());
}

/* Plans the class now (lists fresh unless told otherwise). */
static inline struct plan
fx_plan_at(struct fx *f, uint64_t now, uint64_t wall)
{
	struct plan_input in;
	struct plan p;

	memset(&in, 0, sizeof(in));
	in.pi_class = fx_class(f);
	in.pi_now_ms = now;
	in.pi_wall_ms = wall;
	in.pi_lists_fresh = true;
	in.pi_min_replicas = fx_class(f)->ac_conf != NULL
	    ? fx_class(f)->ac_conf->cc_min_replicas
	    : 0;
	plan_class(&in, &p);
	return p;
}

static inline struct plan
fx_plan(struct fx *f)
{
	return fx_plan_at(f, now_ms(), wall_ms());
}

/* As exec.c would: marks the plan's requests as sent. */
static inline void
fx_sent(struct fx *f, const struct plan *p)
{
	struct act_class *ac = fx_class(f);
	size_t i;

	if (p->p_write != PW_NONE) {
		ac->ac_kube.ck_busy = true;
		if (plan_write_is_secret(p->p_write))
			ac->ac_kube.ck_secret.os_busy = true;
		else
			ac->ac_kube.ck_pool.os_busy = true;
	}
	if (p->p_nvm > 0)
		ac->ac_vms.cv_fresh = false;
	for (i = 0; i < p->p_nvm; i++) {
		ac->ac_vms.cv_inflight++;
		if (p->p_vm[i].pv_op == PV_DELETE)
			boot_reclaimed(&ac->ac_vms.cv_boot, now_ms());
	}
	f->f_a.a_seq++;
}

#endif
