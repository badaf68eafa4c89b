/*
 * The actuator's classes at run time (actuator.c): a new configuration
 * adds, changes and retires classes; a class lives as long as anything
 * (a request in flight) holds it; a configuration that cannot be used
 * changes nothing.
 */
#include "act_fixture.h"

#define OTHER      "my-org/other"
#define OTHER_POOL "my-org--other"

static struct conf *
parse(const char *yaml, unsigned flags)
{
	char err[CONF_ERR_MAX];
	struct conf *c;

	c = conf_parse_flags(
	    "config.yaml", yaml, strlen(yaml), flags, err, sizeof(err));
	if (c == NULL)
		fail_msg("config: %s", err);
	return c;
}

static void
configure(struct fx *f, const char *yaml)
{
	char err[CONF_ERR_MAX];
	struct conf *c = parse(yaml, 0);

	if (act_configure(&f->f_a, c, err, sizeof(err)) == -1)
		fail_msg("configure: %s", err);
}

static const char both[] = "resourceClass:\n"
                           "  \"" FX_CLASS "\":\n"
                           "    token: \"fx-runner-token-rotated-2\"\n"
                           "    minReplicas: 2\n"
                           "  \"" OTHER "\":\n"
                           "    token: \"fx-other-token-0123456789\"\n";
static const char other_only[] = "resourceClass:\n"
                                 "  \"" OTHER "\":\n"
                                 "    token: \"fx-other-token-0123456789\"\n";

static void
test_classes_come_change_and_go(void **state)
{
	struct fx *f = fx_new();
	struct actuator *a = &f->f_a;
	struct act_class *runner = fx_class(f), *other;
	char hash[TEMPLATE_HASH_LEN + 1];

	(void)state;
	fx_settled(f, 1);
	strlcpy_rp(hash, runner->ac_obj.po_hash, sizeof(hash));
	a->a_lists[LIST_POOLS].al_next_ms = now_ms() + 2000;
	a->a_lists[LIST_SECRETS].al_next_ms = now_ms() + 30000;

	/* A new class, and the first one changed (token, minReplicas). */
	configure(f, both);
	assert_int_equal(a->a_nclasses, 2);
	assert_int_equal(a->a_nconfigured, 2);
	assert_ptr_equal(act_class_find(a, FX_CLASS), runner);
	assert_int_equal(runner->ac_conf->cc_min_replicas, 2);
	assert_string_not_equal(runner->ac_obj.po_hash, hash);
	/* What Kubernetes has matched the old objects: now outdated. */
	assert_int_equal(runner->ac_kube.ck_secret.os_state, OBJ_STALE);
	assert_int_equal(runner->ac_kube.ck_pool.os_state, OBJ_STALE);
	assert_true(runner->ac_dirty);
	other = act_class_find(a, OTHER);
	assert_non_null(other);
	assert_ptr_equal(act_class_by_pool(a, OTHER_POOL), other);
	assert_int_equal(other->ac_kube.ck_secret.os_state, OBJ_UNKNOWN);
	assert_true(other->ac_linked);
	/* Its objects are looked for now, not at the next resyncs. */
	assert_true(a->a_lists[LIST_POOLS].al_next_ms == 0);
	assert_true(a->a_lists[LIST_SECRETS].al_next_ms == 0);
	assert_non_null(other->ac_m.cm_target);

	/* The first one is dropped: it retires, under its pool's name. */
	configure(f, other_only);
	assert_int_equal(a->a_nclasses, 2);
	assert_int_equal(a->a_nconfigured, 1);
	assert_null(act_class_find(a, FX_CLASS));
	assert_ptr_equal(act_class_by_pool(a, FX_POOL), runner);
	assert_true(runner->ac_retiring);
	assert_null(runner->ac_conf);
	assert_null(runner->ac_obj.po_userdata);
	assert_string_equal(runner->ac_obj.po_secret, FX_SECRET);
	assert_int_equal(
	    fx_logged(f, "resource class is no longer configured"), 1);
	assert_true(event_pending(a) >= 1);
	/* Its target is 0 from now on. */
	demand_decide(a, runner, now_ms());
	assert_true(runner->ac_demand.cd_have_target);
	assert_int_equal(runner->ac_demand.cd_target, 0);

	/* Back again before it went: the same class, read again. */
	runner->ac_kube.ck_pool.os_state = OBJ_CURRENT;
	configure(f, both);
	assert_ptr_equal(act_class_find(a, FX_CLASS), runner);
	assert_false(runner->ac_retiring);
	assert_int_equal(runner->ac_kube.ck_pool.os_state, OBJ_REREAD);
	assert_int_equal(fx_logged(f, "is configured again"), 1);
	fx_free(f);
}

/* A request in flight holds its class: the class retires and leaves the
 * table, the answer finds it still there (and drops it), and only then is
 * it freed (ASan tells otherwise). */
static void
test_a_class_outlives_its_table_entry(void **state)
{
	struct fx *f = fx_new();
	struct actuator *a = &f->f_a;
	struct act_class *runner = fx_class(f);
	struct metrics *m = a->a_metrics;
	struct buf text = { 0 };

	(void)state;
	configure(f, both);
	class_ref(runner); /* as exec.c's request does */
	configure(f, other_only);
	runner->ac_done = true;
	act_classes_sweep(a);
	assert_int_equal(a->a_nclasses, 1);
	assert_null(act_class_by_pool(a, FX_POOL));
	assert_false(runner->ac_linked);
	assert_int_equal(fx_logged(f, "retired resource class " FX_CLASS), 1);
	/* Its series are gone from /metrics; the other class's are there. */
	metrics_render(m, &text);
	assert_null(strstr(buf_str(&text), FX_CLASS));
	assert_non_null(strstr(buf_str(&text), OTHER));
	buf_free(&text);
	/* The answer comes: the class is still valid memory. */
	assert_string_equal(runner->ac_name, FX_CLASS);
	class_unref(runner);
	fx_free(f);
}

/* A class without a runner token cannot get its cloud-init: the whole
 * configuration is refused and the running one stays. */
static void
test_unusable_configuration_changes_nothing(void **state)
{
	struct fx *f = fx_new();
	struct actuator *a = &f->f_a;
	struct act_class *runner = fx_class(f);
	const struct conf *was = a->a_conf;
	struct conf *c;
	char err[CONF_ERR_MAX] = "";

	(void)state;
	c = parse(both, CONF_NO_SECRETS);
	conf_drop_tokens(c);
	assert_int_equal(act_configure(a, c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cloud-init cannot be built"));
	conf_free(c);
	assert_ptr_equal(a->a_conf, was);
	assert_int_equal(a->a_nclasses, 1);
	assert_ptr_equal(runner->ac_conf, &was->c_classes[0]);
	assert_non_null(runner->ac_obj.po_userdata);
	fx_free(f);
}

/* A managed pool of this installation that no class owns retires; one of
 * another installation (its own instance label) or not ours is left
 * alone. */
static void
test_unknown_pools_in_the_list(void **state)
{
	struct fx *f = fx_new();
	struct actuator *a = &f->f_a;
	json_t *mine, *other, *foreign, *items;
	struct act_class *ac;

	(void)state;
	mine = json_pack("{s:{s:s,s:s,s:s,s:{s:s},s:{s:s}},s:{s:i}}",
	    "metadata", "name", "old-org--gone", "uid", "u1",
	    "resourceVersion", "3", "labels", LABEL_MANAGED_BY, MANAGED_BY,
	    "annotations", ANNOT_CLASS, "old-org/gone", "spec", "replicas", 2);
	other = json_pack("{s:{s:s,s:s,s:s,s:{s:s,s:s}},s:{s:i}}", "metadata",
	    "name", "theirs--x", "uid", "u2", "resourceVersion", "4", "labels",
	    LABEL_MANAGED_BY, MANAGED_BY, LABEL_INSTANCE, "another-release",
	    "spec", "replicas", 2);
	foreign = fx_foreign("someone-elses");
	items = json_pack("[o,o,o]", mine, other, foreign);
	fx_listed(f, LIST_POOLS, fx_list(items));
	assert_int_equal(a->a_nclasses, 2);
	ac = act_class_by_pool(a, "old-org--gone");
	assert_non_null(ac);
	assert_true(ac->ac_retiring);
	assert_string_equal(ac->ac_name, "old-org/gone");
	assert_int_equal(ac->ac_kube.ck_pool.os_state, OBJ_STALE);
	assert_string_equal(ac->ac_kube.ck_pool.os_uid, "u1");
	assert_null(act_class_by_pool(a, "theirs--x"));
	assert_null(act_class_by_pool(a, "someone-elses"));
	assert_null(act_class_find(a, "old-org/gone"));
	assert_int_equal(fx_logged(f,
	                     "found a pool of a resource class that "
	                     "is not configured"),
	    1);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classes_come_change_and_go),
		cmocka_unit_test(test_a_class_outlives_its_table_entry),
		cmocka_unit_test(test_unusable_configuration_changes_nothing),
		cmocka_unit_test(test_unknown_pools_in_the_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
