/*
 * The planning function on hand-made class states: which write comes next,
 * when nothing may be sent, which VMs are reclaimed or released.
 */
#include "act_fixture.h"

#define NOW  1000000ull
#define WALL 1700000000000ull

static void
set_objects(struct act_class *ac, enum obj_state secret, enum obj_state pool)
{
	ac->ac_kube.ck_secret.os_state = secret;
	ac->ac_kube.ck_pool.os_state = pool;
}

static void
test_write_order_table(void **state)
{
	static const struct {
		const char *what;
		enum obj_state secret, pool;
		bool have_target;
		uint32_t target;
		long replicas; /* -1: the pool has no spec.replicas */
		enum plan_write want;
		uint32_t want_replicas;
		bool synced;
	} cases[] = {
		{ "nothing listed yet: wait", OBJ_UNKNOWN, OBJ_UNKNOWN, true,
		    3, 1, PW_NONE, 0, false },
		{ "pools not listed yet: wait", OBJ_CURRENT, OBJ_UNKNOWN, true,
		    3, 1, PW_NONE, 0, false },
		{ "secret first", OBJ_MISSING, OBJ_MISSING, true, 3, 1,
		    PW_SECRET_CREATE, 0, false },
		{ "outdated secret before the pool", OBJ_STALE, OBJ_MISSING,
		    true, 3, 1, PW_SECRET_UPDATE, 0, false },
		{ "secret changed under us: read it", OBJ_REREAD, OBJ_CURRENT,
		    true, 3, 1, PW_SECRET_GET, 0, false },
		{ "new pool at the target", OBJ_CURRENT, OBJ_MISSING, true, 3,
		    1, PW_POOL_CREATE, 3, false },
		{ "new pool before any demand: minReplicas", OBJ_CURRENT,
		    OBJ_MISSING, false, 0, 1, PW_POOL_CREATE, 1, false },
		{ "outdated pool keeps its replicas", OBJ_CURRENT, OBJ_STALE,
		    true, 3, 2, PW_POOL_UPDATE, 2, false },
		{ "pool changed under us: read it", OBJ_CURRENT, OBJ_REREAD,
		    true, 3, 1, PW_POOL_GET, 0, false },
		{ "scale to the target", OBJ_CURRENT, OBJ_CURRENT, true, 3, 1,
		    PW_SCALE, 3, false },
		{ "scale down is a scale too", OBJ_CURRENT, OBJ_CURRENT, true,
		    0, 4, PW_SCALE, 0, false },
		{ "pool without spec.replicas: scale", OBJ_CURRENT,
		    OBJ_CURRENT, true, 3, -1, PW_SCALE, 3, false },
		{ "in step: nothing to send", OBJ_CURRENT, OBJ_CURRENT, true,
		    3, 3, PW_NONE, 0, true },
		{ "no decision yet, objects current: in step", OBJ_CURRENT,
		    OBJ_CURRENT, false, 0, 5, PW_NONE, 0, true },
		{ "foreign secret: look again, no pool", OBJ_FOREIGN,
		    OBJ_MISSING, true, 3, 1, PW_SECRET_GET, 0, false },
		{ "foreign pool: look again, no scale", OBJ_CURRENT,
		    OBJ_FOREIGN, true, 3, 1, PW_POOL_GET, 0, false },
	};
	struct act_class *ac;
	struct plan p;
	struct fx *f;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		f = fx_new();
		ac = fx_class(f);
		set_objects(ac, cases[i].secret, cases[i].pool);
		ac->ac_demand.cd_have_target = cases[i].have_target;
		ac->ac_demand.cd_target = cases[i].target;
		ac->ac_kube.ck_have_replicas = cases[i].replicas >= 0;
		ac->ac_kube.ck_replicas =
		    cases[i].replicas >= 0 ? (uint32_t)cases[i].replicas : 0;
		p = fx_plan_at(f, NOW, WALL);
		if (p.p_write != cases[i].want ||
		    (cases[i].want != PW_NONE &&
		        p.p_replicas != cases[i].want_replicas) ||
		    p.p_synced != cases[i].synced)
			fail_msg(
			    "%s: got %s (%u replicas, synced %d), want %s "
			    "(%u, %d)",
			    cases[i].what, plan_write_name(p.p_write),
			    p.p_replicas, p.p_synced,
			    plan_write_name(cases[i].want),
			    cases[i].want_replicas, cases[i].synced);
		fx_free(f);
	}
}

/* While a write is out its answer is awaited: no write and no deadline,
 * even when its retry time is long past (the loop used to spin at 100 %
 * of a core for as long as a retried write hung). */
static void
test_busy_waits_for_the_answer(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct plan p;

	(void)state;
	set_objects(ac, OBJ_CURRENT, OBJ_CURRENT);
	ac->ac_demand.cd_have_target = true;
	ac->ac_demand.cd_target = 3;
	ac->ac_kube.ck_have_replicas = true;
	ac->ac_kube.ck_replicas = 1;
	ac->ac_kube.ck_busy = true;
	ac->ac_kube.ck_retry_ms = NOW - 40000;
	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_write, PW_NONE);
	assert_true(p.p_wake_ms == PLAN_NEVER);
	assert_false(p.p_synced);

	/* Not busy, retry ahead: wait exactly until then. */
	ac->ac_kube.ck_busy = false;
	ac->ac_kube.ck_retry_ms = NOW + 1500;
	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_write, PW_NONE);
	assert_true(p.p_wake_ms == NOW + 1500);
	p = fx_plan_at(f, NOW + 1500, WALL);
	assert_int_equal(p.p_write, PW_SCALE);

	/* A foreign pool is looked at again at its recheck time. */
	ac->ac_kube.ck_retry_ms = 0;
	ac->ac_kube.ck_pool.os_state = OBJ_FOREIGN;
	ac->ac_kube.ck_pool.os_recheck_ms = NOW + FOREIGN_RECHECK_MS;
	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_write, PW_NONE);
	assert_true(p.p_wake_ms == NOW + FOREIGN_RECHECK_MS);
	p = fx_plan_at(f, NOW + FOREIGN_RECHECK_MS, WALL);
	assert_int_equal(p.p_write, PW_POOL_GET);
	fx_free(f);
}

/* Adds a VM to the class's list by hand. */
static struct vm_seen *
add_vm(struct act_class *ac, const char *name, enum vm_state st,
    uint64_t deleted, bool finalizer, bool has_vmi)
{
	struct class_vms *cv = &ac->ac_vms;
	struct vm_seen *vs;

	cv->cv_vms = xrealloc(cv->cv_vms, cv->cv_n + 1, sizeof(*cv->cv_vms));
	vs = &cv->cv_vms[cv->cv_n++];
	memset(vs, 0, sizeof(*vs));
	vs->vs_name = xstrdup(name);
	vs->vs_uid = xasprintf("uid-%s", name);
	vs->vs_rv = xstrdup("5");
	vs->vs_state = st;
	vs->vs_created_ms = WALL - 100000;
	vs->vs_deleted_ms = deleted;
	vs->vs_has_vmi = has_vmi;
	if (finalizer)
		vs->vs_finalizers = json_pack("[s]", POOL_FINALIZER);
	cv->cv_count[st]++;
	return vs;
}

static int
ops_on(const struct plan *p, const char *name, enum plan_vm_op op)
{
	int n = 0;
	size_t i;

	for (i = 0; i < p->p_nvm; i++)
		if (p->p_vm[i].pv_op == op &&
		    strcmp(p->p_vm[i].pv_vm->vs_name, name) == 0)
			n++;
	return n;
}

/* Actuator restarted with VMs in every state: stopped ones are reclaimed,
 * a VM kept by the pool finalizer released after the grace period, and
 * nothing that may run a job is touched. */
static void
test_vms_in_every_state(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	const char *never[] = { "starting", "running", "other", "term-vmi",
		"term-nofin", "term-fresh" };
	struct plan p;
	size_t i;

	(void)state;
	set_objects(ac, OBJ_CURRENT, OBJ_CURRENT);
	add_vm(ac, "starting", VMS_STARTING, 0, true, false);
	add_vm(ac, "running", VMS_RUNNING, 0, true, true);
	add_vm(ac, "other", VMS_OTHER, 0, true, true);
	add_vm(ac, "stopped-1", VMS_STOPPED, 0, true, false);
	add_vm(ac, "stopped-2", VMS_STOPPED, 0, true, false);
	add_vm(ac, "term-stuck", VMS_TERMINATING, WALL - 6000, true, false);
	add_vm(ac, "term-vmi", VMS_TERMINATING, WALL - 60000, true, true);
	add_vm(ac, "term-nofin", VMS_TERMINATING, WALL - 60000, false, false);
	add_vm(ac, "term-fresh", VMS_TERMINATING, WALL - 3000, true, false);
	ac->ac_vms.cv_fresh = true;

	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_nvm, 3);
	assert_int_equal(ops_on(&p, "stopped-1", PV_DELETE), 1);
	assert_int_equal(ops_on(&p, "stopped-2", PV_DELETE), 1);
	assert_int_equal(ops_on(&p, "term-stuck", PV_RELEASE), 1);
	for (i = 0; i < nitems(never); i++) {
		assert_int_equal(ops_on(&p, never[i], PV_DELETE), 0);
		assert_int_equal(ops_on(&p, never[i], PV_RELEASE), 0);
	}
	/* The fresh one is due in 2 s: that is the wake time. */
	assert_true(p.p_wake_ms == NOW + 2000);

	/* Requests out: nothing more until their answers and a new list. */
	fx_sent(f, &p);
	p = fx_plan_at(f, NOW + 5000, WALL + 5000);
	assert_int_equal(p.p_nvm, 0);
	ac->ac_vms.cv_inflight = 0;
	p = fx_plan_at(f, NOW + 5000, WALL + 5000);
	assert_int_equal(p.p_nvm, 0); /* the list predates the answers */
	ac->ac_vms.cv_fresh = true;
	p = fx_plan_at(f, NOW + 5000, WALL + 5000);
	assert_int_equal(p.p_nvm, 4); /* term-fresh is due now too */

	/* After a failed VM request: not before its retry time. */
	ac->ac_vms.cv_retry_ms = NOW + 8000;
	p = fx_plan_at(f, NOW + 5000, WALL + 5000);
	assert_int_equal(p.p_nvm, 0);
	assert_true(p.p_wake_ms <= NOW + 8000);
	fx_free(f);
}

static void
test_boot_loop_reclaims_one_per_period(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct plan p;

	(void)state;
	set_objects(ac, OBJ_CURRENT, OBJ_CURRENT);
	add_vm(ac, "a", VMS_STOPPED, 0, true, false);
	add_vm(ac, "b", VMS_STOPPED, 0, true, false);
	add_vm(ac, "c", VMS_STOPPED, 0, true, false);
	ac->ac_vms.cv_fresh = true;
	ac->ac_vms.cv_boot.bg_loop = true;
	ac->ac_vms.cv_boot.bg_reclaim_at_ms = NOW + 30000;
	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_nvm, 0);
	assert_true(p.p_wake_ms == NOW + 30000);
	p = fx_plan_at(f, NOW + 30000, WALL + 30000);
	assert_int_equal(p.p_nvm, 1);
	assert_int_equal(p.p_vm[0].pv_op, PV_DELETE);
	fx_free(f);
}

static void
test_many_stopped_vms_are_batched(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	char name[32];
	struct plan p;
	int i;

	(void)state;
	set_objects(ac, OBJ_CURRENT, OBJ_CURRENT);
	for (i = 0; i < PLAN_VM_MAX + 10; i++) {
		snprintf(name, sizeof(name), "vm-%03d", i);
		add_vm(ac, name, VMS_STOPPED, 0, true, false);
	}
	ac->ac_vms.cv_fresh = true;
	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_nvm, PLAN_VM_MAX);
	fx_free(f);
}

/* A class no longer configured (or --drain): empty the pool, delete it once
 * it owns no VM (or at the drain deadline, leaving its VMs), then the
 * Secret; done when neither is left. */
static void
test_retiring_table(void **state)
{
	static const struct {
		const char *what;
		enum obj_state secret, pool;
		long replicas; /* -1: none known */
		int vms;       /* listed VMs; -1: no fresh list yet */
		uint32_t status_replicas;
		bool orphan, busy;
		enum plan_write want;
		bool want_orphan, done;
	} cases[] = {
		{ "pools not listed yet: wait", OBJ_CURRENT, OBJ_UNKNOWN, -1,
		    0, 0, false, false, PW_NONE, false, false },
		{ "scaled to 0 first", OBJ_CURRENT, OBJ_CURRENT, 3, 2, 3,
		    false, false, PW_SCALE, false, false },
		{ "an outdated template is no reason to update", OBJ_STALE,
		    OBJ_STALE, 1, 1, 1, false, false, PW_SCALE, false, false },
		{ "at 0 with VMs: they leave as their jobs end", OBJ_CURRENT,
		    OBJ_CURRENT, 0, 2, 2, false, false, PW_NONE, false,
		    false },
		{ "at 0, no VM listed but the pool still counts some",
		    OBJ_CURRENT, OBJ_CURRENT, 0, 0, 1, false, false, PW_NONE,
		    false, false },
		{ "at 0, no fresh VM list yet: wait", OBJ_CURRENT, OBJ_CURRENT,
		    0, -1, 0, false, false, PW_NONE, false, false },
		{ "empty: delete the pool", OBJ_CURRENT, OBJ_CURRENT, 0, 0, 0,
		    false, false, PW_POOL_DELETE, false, false },
		{ "drain deadline: delete it, leave its VMs", OBJ_CURRENT,
		    OBJ_CURRENT, 0, 2, 2, true, false, PW_POOL_DELETE, true,
		    false },
		{ "drain deadline, empty anyway", OBJ_CURRENT, OBJ_CURRENT, 0,
		    0, 0, true, false, PW_POOL_DELETE, false, false },
		{ "pool being deleted: wait", OBJ_CURRENT, OBJ_DELETING, 0, 0,
		    0, false, false, PW_NONE, false, false },
		{ "pool changed under us: read it", OBJ_CURRENT, OBJ_REREAD, 0,
		    0, 0, false, false, PW_POOL_GET, false, false },
		{ "pool gone: the Secret next", OBJ_CURRENT, OBJ_MISSING, -1,
		    0, 0, false, false, PW_SECRET_DELETE, false, false },
		{ "Secret not listed yet: read it", OBJ_UNKNOWN, OBJ_MISSING,
		    -1, 0, 0, false, false, PW_SECRET_GET, false, false },
		{ "Secret being deleted: wait", OBJ_DELETING, OBJ_MISSING, -1,
		    0, 0, false, false, PW_NONE, false, false },
		{ "both gone: done", OBJ_MISSING, OBJ_MISSING, -1, 0, 0, false,
		    false, PW_NONE, false, true },
		{ "both gone, an answer still out: not yet", OBJ_MISSING,
		    OBJ_MISSING, -1, 0, 0, false, true, PW_NONE, false,
		    false },
		{ "someone else's objects are not ours to delete", OBJ_FOREIGN,
		    OBJ_FOREIGN, -1, 0, 0, false, false, PW_NONE, false,
		    true },
	};
	struct act_class *ac;
	struct plan_input in;
	struct plan p;
	struct fx *f;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		f = fx_new();
		ac = fx_class(f);
		ac->ac_retiring = true;
		ac->ac_conf = NULL;
		ac->ac_demand.cd_have_target = true;
		set_objects(ac, cases[i].secret, cases[i].pool);
		ac->ac_kube.ck_have_replicas = cases[i].replicas >= 0;
		ac->ac_kube.ck_replicas =
		    cases[i].replicas >= 0 ? (uint32_t)cases[i].replicas : 0;
		ac->ac_kube.ck_status_replicas = cases[i].status_replicas;
		ac->ac_kube.ck_busy = cases[i].busy;
		for (int v = 0; v < cases[i].vms; v++)
			add_vm(ac, v == 0 ? "r-0" : "r-1", VMS_RUNNING, 0,
			    true, true);
		ac->ac_vms.cv_fresh = cases[i].vms >= 0;
		memset(&in, 0, sizeof(in));
		in.pi_class = ac;
		in.pi_now_ms = NOW;
		in.pi_wall_ms = WALL;
		in.pi_lists_fresh = true;
		in.pi_orphan = cases[i].orphan;
		plan_class(&in, &p);
		if (p.p_write != cases[i].want ||
		    (p.p_write == PW_SCALE && p.p_replicas != 0) ||
		    p.p_orphan != cases[i].want_orphan ||
		    p.p_done != cases[i].done || p.p_synced || p.p_nvm != 0)
			fail_msg(
			    "%s: got %s (replicas %u, orphan %d, done %d, "
			    "%zu VM requests)",
			    cases[i].what, plan_write_name(p.p_write),
			    p.p_replicas, p.p_orphan, p.p_done, p.p_nvm);
		fx_free(f);
	}
}

/* A retiring pool's stopped VMs: not before the pool is at 0 (deleted
 * sooner, the pool would replace them), then reclaimed as usual. */
static void
test_retiring_reclaims_at_zero(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);
	struct plan p;

	(void)state;
	ac->ac_retiring = true;
	ac->ac_conf = NULL;
	ac->ac_demand.cd_have_target = true;
	set_objects(ac, OBJ_CURRENT, OBJ_CURRENT);
	add_vm(ac, "s-0", VMS_STOPPED, 0, true, false);
	add_vm(ac, "r-1", VMS_RUNNING, 0, true, true);
	ac->ac_vms.cv_fresh = true;
	ac->ac_kube.ck_have_replicas = true;
	ac->ac_kube.ck_replicas = 2;
	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_write, PW_SCALE);
	assert_int_equal(p.p_nvm, 0);
	ac->ac_kube.ck_replicas = 0;
	p = fx_plan_at(f, NOW, WALL);
	assert_int_equal(p.p_write, PW_NONE);
	assert_int_equal(p.p_nvm, 1);
	assert_int_equal(ops_on(&p, "s-0", PV_DELETE), 1);
	assert_int_equal(ops_on(&p, "r-1", PV_DELETE), 0);
	fx_free(f);
}

static void
test_names(void **state)
{
	int w;

	(void)state;
	for (w = PW_NONE; w <= PW_SECRET_DELETE; w++)
		assert_string_not_equal(
		    plan_write_name((enum plan_write)w), "?");
	assert_int_equal(plan_write_verb(PW_SCALE), KV_POOL_SCALE);
	assert_int_equal(plan_write_verb(PW_SECRET_UPDATE), KV_SECRET_UPDATE);
	assert_true(plan_write_is_secret(PW_SECRET_GET));
	assert_false(plan_write_is_secret(PW_POOL_GET));
	assert_int_equal(plan_write_verb(PW_POOL_DELETE), KV_POOL_DELETE);
	assert_int_equal(plan_write_verb(PW_SECRET_DELETE), KV_SECRET_DELETE);
	assert_true(plan_write_is_secret(PW_SECRET_DELETE));
	/* A standby may send only these. */
	for (w = PW_NONE; w <= PW_SECRET_DELETE; w++)
		assert_int_equal(plan_write_is_read((enum plan_write)w),
		    w == PW_SECRET_GET || w == PW_POOL_GET);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_order_table),
		cmocka_unit_test(test_busy_waits_for_the_answer),
		cmocka_unit_test(test_vms_in_every_state),
		cmocka_unit_test(test_boot_loop_reclaims_one_per_period),
		cmocka_unit_test(test_many_stopped_vms_are_batched),
		cmocka_unit_test(test_retiring_table),
		cmocka_unit_test(test_retiring_reclaims_at_zero),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
