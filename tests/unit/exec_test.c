/*
 * The actuator's loop, executor and Kubernetes client against a scripted
 * HTTPS server (fake_apiserver.h): what is sent for a plan, in what order
 * and shape; how answers come back; that a request in flight costs no
 * loop turns; demand over real nng sockets.
 */
#include "kube_fixture.h"

#include <signal.h>

#include "ipc.h"

static const char *empty_list = "{\"kind\":\"List\",\"items\":[]}";

/* The list answers for a class whose pool exists at n replicas. */
static void
serve_settled(struct kfx *k, long replicas)
{
	struct act_class *ac = fx_class(k->k_fx);
	json_t *l;
	char *s;

	l = fx_list(json_pack("[o]", fx_secret(ac, true, "10")));
	s = json_dumps(l, JSON_COMPACT);
	fas_rule(&k->k_fas, "GET", SECRETS "?", 200, s, NULL, 0, -1);
	free(s);
	json_decref(l);
	l = fx_list(json_pack("[o]", fx_pool(ac, replicas, true, "11")));
	s = json_dumps(l, JSON_COMPACT);
	fas_rule(&k->k_fas, "GET", POOLS "?", 200, s, NULL, 0, -1);
	free(s);
	json_decref(l);
}

static bool
scaled_to_3(struct kfx *k)
{
	return fx_class(k->k_fx)->ac_kube.ck_replicas == 3 &&
	    fx_class(k->k_fx)->ac_kube.ck_have_replicas;
}

static bool
pool_created(struct kfx *k)
{
	return fx_class(k->k_fx)->ac_kube.ck_pool.os_state == OBJ_CURRENT;
}

static json_t *
req_body(
    struct kfx *k, const char *method, const char *prefix, struct fas_req *q)
{
	json_t *b;

	if (!fas_last(&k->k_fas, method, prefix, q))
		fail_msg("no %s %s sent", method, prefix);
	b = fx_json(q->fr_body);
	free(q->fr_body);
	return b;
}

/* From nothing: Secret, then pool, then the scale, each shaped as the API
 * server wants it. */
static void
test_reconcile_from_nothing(void **state)
{
	struct kfx *k = kfx_new(NULL);
	struct act_class *ac = fx_class(k->k_fx);
	struct fas_req q;
	json_t *b;

	(void)state;
	fas_rule(&k->k_fas, "GET", SECRETS "?", 200, empty_list, NULL, 0, 1);
	fas_rule(&k->k_fas, "GET", POOLS "?", 200, empty_list, NULL, 0, 1);
	fas_rule(&k->k_fas, "GET", VMS "?", 200, empty_list, NULL, 0, -1);
	fas_rule(&k->k_fas, "POST", SECRETS, 201, FAS_ECHO, NULL, 0, 1);
	fas_rule(&k->k_fas, "POST", POOLS, 201, FAS_ECHO, NULL, 0, 1);
	fas_rule(&k->k_fas, "PATCH", SCALE, 200,
	    "{\"kind\":\"Scale\",\"spec\":{\"replicas\":3}}", NULL, 0, 1);
	fx_demand(k->k_fx, true, 1, 0);
	run_until(k, pool_created, "the pool");
	serve_settled(k, 1);
	fx_demand(k->k_fx, true, 3, 0);
	run_until(k, scaled_to_3, "the scale to 3");
	fas_clear_rules(&k->k_fas);
	serve_settled(k, 3);
	fas_rule(&k->k_fas, "GET", VMS "?", 200, empty_list, NULL, 0, -1);

	b = req_body(k, "POST", SECRETS, &q);
	assert_string_equal(q.fr_ctype, "application/json");
	assert_string_equal(q.fr_auth, "Bearer " FAS_TOKEN);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(b, "metadata"), "name")),
	    FX_SECRET);
	json_decref(b);
	b = req_body(k, "POST", POOLS, &q);
	assert_int_equal(json_integer_value(json_object_get(
	                     json_object_get(b, "spec"), "replicas")),
	    1);
	json_decref(b);
	b = req_body(k, "PATCH", SCALE, &q);
	assert_string_equal(q.fr_ctype, "application/merge-patch+json");
	assert_true(
	    fx_equal(b, json_pack("{s:{s:i}}", "spec", "replicas", 3)));
	json_decref(b);
	assert_int_equal(fas_count(&k->k_fas, "POST", SECRETS), 1);
	assert_int_equal(fas_count(&k->k_fas, "POST", POOLS), 1);
	assert_int_equal(fas_count(&k->k_fas, "PATCH", SCALE), 1);
	assert_int_equal(
	    fx_logged(k->k_fx, "scaled my-org--runner from 1 to 3"), 1);
	/* In step: more turns send no write. */
	for (int i = 0; i < 20; i++)
		turn(k);
	assert_int_equal(fas_count(&k->k_fas, "PATCH", ""), 1);
	assert_true(act_class_ready(k->k_a, ac, now_ms()));
	kfx_free(k);
}

static bool
vm_ops_done(struct kfx *k)
{
	return fas_count(&k->k_fas, "DELETE", VMS) == 1 &&
	    fas_count(&k->k_fas, "PATCH", VMS) == 1 &&
	    fx_class(k->k_fx)->ac_vms.cv_inflight == 0;
}

/* A stopped VM is deleted only as listed (uid and resourceVersion); a VM
 * stuck on the pool finalizer is released by a guarded JSON patch. */
static void
test_vm_requests(void **state)
{
	struct kfx *k = kfx_new(NULL);
	uint64_t w = wall_ms();
	struct fas_req q;
	json_t *l, *b;
	char *s;

	(void)state;
	serve_settled(k, 1);
	l = fx_list(json_pack("[o,o,o]",
	    fx_vm("vm-stopped", "uid-s", "42", "Stopped", fx_time(w - 60000),
	        NULL, true, false),
	    fx_vm("vm-stuck", "uid-t", "43", "Terminating", fx_time(w - 60000),
	        fx_time(w - 10000), true, false),
	    fx_vm("vm-running", "uid-r", "44", "Running", fx_time(w - 60000),
	        NULL, true, true)));
	s = json_dumps(l, JSON_COMPACT);
	fas_rule(&k->k_fas, "GET", VMS "?", 200, s, NULL, 0, -1);
	free(s);
	json_decref(l);
	fas_rule(&k->k_fas, "DELETE", VMS, 200, "{}", NULL, 0, -1);
	fas_rule(&k->k_fas, "PATCH", VMS, 200, "{}", NULL, 0, -1);
	run_until(k, vm_ops_done, "the VM requests");

	b = req_body(k, "DELETE", VMS "/vm-stopped", &q);
	assert_true(fx_equal(json_object_get(b, "preconditions"),
	    json_pack("{s:s,s:s}", "uid", "uid-s", "resourceVersion", "42")));
	json_decref(b);
	b = req_body(k, "PATCH", VMS "/vm-stuck", &q);
	assert_string_equal(q.fr_ctype, "application/json-patch+json");
	assert_int_equal(json_array_size(b), 3);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(b, 0), "value")),
	    "uid-t");
	assert_true(fx_equal(json_object_get(json_array_get(b, 2), "value"),
	    json_pack("[s]", "kubevirt.io/virtualMachineControllerFinalize")));
	json_decref(b);
	assert_int_equal(fas_count(&k->k_fas, NULL, VMS "/vm-running"), 0);
	assert_int_equal(
	    fx_logged(k->k_fx, "reclaimed stopped VM vm-stopped"), 1);
	assert_int_equal(fx_logged(k->k_fx, "released VM vm-stuck"), 1);
	/* Until a list newer than the answers, nothing more is sent. */
	assert_false(fx_class(k->k_fx)->ac_vms.cv_fresh);
	kfx_free(k);
}

static bool
retry_in_flight(struct kfx *k)
{
	return fas_count(&k->k_fas, "PATCH", SCALE) == 2 &&
	    fx_class(k->k_fx)->ac_kube.ck_busy;
}

/* One failed write, then its retry hangs: the loop waits for the answer
 * instead of turning at full speed. */
static void
test_hanging_retry_costs_no_turns(void **state)
{
	struct kfx *k = kfx_new(NULL);
	uint64_t start;
	unsigned long turns;

	(void)state;
	serve_settled(k, 1);
	fas_rule(&k->k_fas, "GET", VMS "?", 200, empty_list, NULL, 0, -1);
	fas_rule(&k->k_fas, "PATCH", SCALE, 500, "{}", NULL, 0, 1);
	fas_rule(&k->k_fas, "PATCH", SCALE, 200, "{\"spec\":{\"replicas\":3}}",
	    NULL, 4000, 1);
	fx_demand(k->k_fx, true, 3, 0);
	run_until(k, retry_in_flight, "the retried scale in flight");
	act_turn(k->k_a, now_ms());
	assert_true(act_next_deadline(k->k_a) > now_ms());
	/* Turns without the test's 50 ms cap: only real deadlines wake it. */
	start = now_ms();
	turns = 0;
	while (now_ms() - start < 1500 && retry_in_flight(k)) {
		int running, numfds;

		act_turn(k->k_a, now_ms());
		curl_multi_perform(k->k_a->a_multi, &running);
		kube_collect(k->k_a->a_kube);
		curl_multi_poll(k->k_a->a_multi, NULL, 0,
		    ms_until(act_next_deadline(k->k_a), now_ms()), &numfds);
		turns++;
	}
	assert_true(turns < 100);
	run_until(k, scaled_to_3, "the scale to land");
	kfx_free(k);
}

static bool
lists_answered(struct kfx *k)
{
	return k->k_a->a_lists[LIST_POOLS].al_next_ms != 0 &&
	    !k->k_a->a_lists[LIST_POOLS].al_busy &&
	    !k->k_a->a_lists[LIST_VMS].al_busy &&
	    !k->k_a->a_lists[LIST_SECRETS].al_busy;
}

/* Answers are parsed strictly: duplicate keys make a body malformed. */
static void
test_malformed_bodies(void **state)
{
	struct kfx *k = kfx_new(NULL);

	(void)state;
	fas_rule(&k->k_fas, "GET", POOLS "?", 200,
	    "{\"items\":[],\"items\":[]}", NULL, 0, -1);
	fas_rule(&k->k_fas, "GET", SECRETS "?", 200, "[1,2]", NULL, 0, -1);
	fas_rule(&k->k_fas, "GET", VMS "?", 200, "{\"items\":[", NULL, 0, -1);
	run_until(k, lists_answered, "the lists");
	assert_true(k->k_a->a_lists[LIST_POOLS].al_ok_ms == 0);
	assert_true(k->k_a->a_lists[LIST_SECRETS].al_ok_ms == 0);
	assert_true(k->k_a->a_lists[LIST_VMS].al_ok_ms == 0);
	assert_int_equal(fx_logged(k->k_fx, "malformed body: duplicate"), 1);
	assert_int_equal(
	    fx_logged(k->k_fx, "malformed body: not a JSON object"), 1);
	assert_int_equal(
	    fx_class(k->k_fx)->ac_kube.ck_pool.os_state, OBJ_UNKNOWN);
	kfx_free(k);
}

static bool
write_failed_once(struct kfx *k)
{
	return fx_class(k->k_fx)->ac_kube.ck_retry_ms != 0 &&
	    !fx_class(k->k_fx)->ac_kube.ck_busy;
}

/* 503 with Retry-After: the retry waits at least that long. */
static void
test_retry_after(void **state)
{
	struct kfx *k = kfx_new(NULL);
	uint64_t t;

	(void)state;
	serve_settled(k, 1);
	fas_rule(&k->k_fas, "GET", VMS "?", 200, empty_list, NULL, 0, -1);
	fas_rule(&k->k_fas, "PATCH", SCALE, 503,
	    "{\"kind\":\"Status\",\"message\":\"overloaded\"}",
	    "Retry-After: 7\r\n", 0, -1);
	fx_demand(k->k_fx, true, 3, 0);
	t = now_ms();
	run_until(k, write_failed_once, "the 503");
	assert_true(fx_class(k->k_fx)->ac_kube.ck_retry_ms >= t + 6900);
	assert_int_equal(fx_logged(k->k_fx, "HTTP 503: overloaded"), 1);
	kfx_free(k);
}

static bool
scales_answered(struct kfx *k)
{
	return fas_count(&k->k_fas, "PATCH", SCALE) >= k->k_want &&
	    !fx_class(k->k_fx)->ac_kube.ck_busy;
}

/* 401: the token file is read again and the request sent once more; 403:
 * one error naming the verb, however often it happens. */
static void
test_401_and_403(void **state)
{
	struct kfx *k = kfx_new(NULL);
	struct fas_req q;
	size_t i, n;

	(void)state;
	serve_settled(k, 1);
	fas_rule(&k->k_fas, "GET", VMS "?", 200, empty_list, NULL, 0, -1);
	fas_rule(&k->k_fas, "PATCH", SCALE, 401,
	    "{\"kind\":\"Status\",\"message\":\"Unauthorized\"}", NULL, 0, 1);
	fas_rule(&k->k_fas, "PATCH", SCALE, 200, "{\"spec\":{\"replicas\":3}}",
	    NULL, 0, 1);
	fas_write_file(k->k_fas.f_token_file, "fas-token-2\n");
	fx_demand(k->k_fx, true, 3, 0);
	run_until(k, scaled_to_3, "the scale after the 401");
	assert_true(fas_last(&k->k_fas, "PATCH", SCALE, &q));
	free(q.fr_body);
	assert_string_equal(q.fr_auth, "Bearer fas-token-2");
	pthread_mutex_lock(&k->k_fas.f_mu);
	for (i = 0, n = 0; i < k->k_fas.f_n; i++)
		if (strcmp(k->k_fas.f_journal[i].fr_path, SCALE) == 0 &&
		    strcmp(k->k_fas.f_journal[i].fr_auth,
		        "Bearer " FAS_TOKEN) == 0)
			n++;
	pthread_mutex_unlock(&k->k_fas.f_mu);
	assert_int_equal(n, 1);

	fas_rule(&k->k_fas, "PATCH", SCALE, 403,
	    "{\"kind\":\"Status\",\"message\":\"forbidden: cannot patch\"}",
	    NULL, 0, -1);
	fx_class(k->k_fx)->ac_kube.ck_replicas = 2; /* as if edited */
	k->k_want = fas_count(&k->k_fas, "PATCH", SCALE) + 1;
	run_until(k, scales_answered, "a 403");
	fx_class(k->k_fx)->ac_kube.ck_retry_ms = 0;
	k->k_want++;
	run_until(k, scales_answered, "another 403");
	assert_int_equal(fx_logged(k->k_fx, "Kubernetes denied a request"), 1);
	assert_false(act_class_ready(k->k_a, fx_class(k->k_fx), now_ms()));
	kfx_free(k);
}

static bool
unreachable(struct kfx *k)
{
	return kube_unreachable(k->k_a->a_kube) && lists_answered(k);
}

/* No API server: "cannot reach" once, the lists fail, nothing crashes; a
 * request still out at the end is cancelled. */
static void
test_unreachable_and_cancelled(void **state)
{
	struct kfx *k = kfx_new(NULL);
	char *server = k->k_a->a_creds.kc_server;

	(void)state;
	/* A port nothing listens on. */
	k->k_a->a_creds.kc_server = xstrdup("https://127.0.0.1:1");
	run_until(k, unreachable, "the lists to fail");
	assert_int_equal(
	    fx_logged(k->k_fx, "cannot reach the Kubernetes API"), 1);
	free(k->k_a->a_creds.kc_server);
	k->k_a->a_creds.kc_server = server;

	fas_rule(&k->k_fas, "GET", "/", 200, empty_list, NULL, 5000, -1);
	k->k_a->a_lists[LIST_POOLS].al_next_ms = 0;
	while (fas_count(&k->k_fas, "GET", POOLS) == 0)
		turn(k);
	assert_true(k->k_a->a_lists[LIST_POOLS].al_busy);
	assert_int_equal(kube_inflight(k->k_a->a_kube) > 0, 1);
	kube_free(k->k_a->a_kube);
	k->k_a->a_kube = NULL;
	assert_false(k->k_a->a_lists[LIST_POOLS].al_busy);
	k->k_a->a_kube =
	    kube_new(&k->k_a->a_creds, k->k_a->a_multi, k->k_a->a_metrics);
	kfx_free(k);
}

/* Demand over real sockets: good messages are recorded, malformed ones
 * and unknown classes counted and dropped. */
static void
test_demand_over_nng(void **state)
{
	struct fx *f = fx_new();
	char dir[] = "/tmp/exec-test-XXXXXX", url[IPC_URL_MAX];
	struct msg_demand d;
	struct buf b = { 0 };
	nng_socket pub;
	uint64_t end;
	int fd, i;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(ipc_url(url, sizeof(url), dir, IPC_DEMAND), 0);
	assert_int_equal(ipc_open(&pub, IPC_PUB_LISTEN, url, NULL), 0);
	assert_int_equal(ipc_open(&f->f_a.a_sub, IPC_SUB_DIAL, url, &fd), 0);
	demand_setup(&f->f_a);
	memset(&d, 0, sizeof(d));
	d.d_ok = true;
	d.d_unclaimed = 4;
	d.d_running = 2;
	snprintf(d.d_class, sizeof(d.d_class), "%s", FX_CLASS);
	end = now_ms() + 10000;
	/* A subscriber misses what is published before it is connected. */
	while (!fx_class(f)->ac_demand.cd_have && now_ms() < end) {
		buf_reset(&b);
		msg_demand_encode(&d, 1, &b);
		ipc_send(pub, b.b_data, b.b_len);
		snprintf(d.d_class, sizeof(d.d_class), "other/class");
		buf_reset(&b);
		msg_demand_encode(&d, 2, &b);
		ipc_send(pub, b.b_data, b.b_len);
		ipc_send(pub, "garbage!", 8);
		snprintf(d.d_class, sizeof(d.d_class), "%s", FX_CLASS);
		for (i = 0; i < 10; i++) {
			usleep(10000);
			demand_receive(&f->f_a, now_ms());
		}
	}
	assert_true(fx_class(f)->ac_demand.cd_have);
	assert_int_equal(fx_class(f)->ac_demand.cd_unclaimed, 4);
	assert_true(metric_value(f->f_a.a_m_rejected[0]) >= 1);
	assert_true(metric_value(f->f_a.a_m_rejected[MSG_ESHORT]) +
	        metric_value(f->f_a.a_m_rejected[MSG_EMAGIC]) >=
	    1);
	assert_true(fx_logged(f, "not a configured resource class") >= 1);
	nng_close(f->f_a.a_sub);
	nng_close(pub);
	buf_free(&b);
	rmdir(dir);
	fx_free(f);
}

/* With --dry-run: decisions are logged as what would be done, the class
 * is ready once decided, and /ready has no Kubernetes detail. */
static void
test_dry_run(void **state)
{
	static const char *const argv[] = { "--dry-run", NULL };
	struct fx *f = fx_new_with(FX_CONFIG, argv);
	struct msg_health h;
	struct buf metrics = { 0 };
	json_t *cls;

	(void)state;
	act_turn(&f->f_a, now_ms());
	assert_false(act_class_ready(&f->f_a, fx_class(f), now_ms()));
	fx_demand(f, true, 3, 1);
	fx_class(f)->ac_dirty = true;
	act_turn(&f->f_a, now_ms());
	assert_int_equal(fx_logged(f, "would scale my-org--runner to 4"), 1);
	assert_true(act_class_ready(&f->f_a, fx_class(f), now_ms()));
	fx_demand(f, true, 0, 1);
	fx_class(f)->ac_dirty = true;
	act_turn(&f->f_a, now_ms());
	assert_int_equal(
	    fx_logged(f, "would scale my-org--runner from 4 to 1"), 1);
	memset(&h, 0, sizeof(h));
	report_health(&f->f_a, &h, &metrics);
	assert_int_equal(h.hl_state, HEALTH_OK);
	cls =
	    json_object_get(json_object_get(h.hl_detail, "classes"), FX_CLASS);
	assert_null(json_object_get(cls, "pool_state"));
	assert_int_equal(
	    json_integer_value(json_object_get(cls, "target_replicas")), 1);
	assert_non_null(strstr(metrics.b_data,
	    "runner_provisioner_target_replicas{resource_class=\"" FX_CLASS
	    "\"} 1"));
	json_decref(h.hl_detail);
	buf_free(&metrics);
	fx_free(f);
}

/* Demand that fails or goes stale holds the pool, says so once, and says
 * when it is fresh again. */
static void
test_holding(void **state)
{
	struct fx *f = fx_new();
	struct act_class *ac = fx_class(f);

	(void)state;
	fx_demand(f, true, 2, 0);
	assert_int_equal(ac->ac_demand.cd_target, 2);
	fx_demand(f, false, 0, 0);
	fx_demand(f, false, 0, 0);
	assert_true(ac->ac_demand.cd_holding);
	assert_int_equal(ac->ac_demand.cd_target, 2);
	assert_int_equal(fx_logged(f, "\"msg\":\"holding replicas\""), 1);
	assert_true(ac->ac_demand.cd_evidence.be_good_since_ms == 0);
	fx_demand(f, true, 5, 0);
	assert_false(ac->ac_demand.cd_holding);
	assert_int_equal(fx_logged(f, "is fresh again"), 1);
	/* Stale: no message for three poll intervals. */
	ac->ac_demand.cd_rx_ms = now_ms() - 3001;
	demand_decide(&f->f_a, ac, now_ms());
	assert_true(ac->ac_demand.cd_holding);
	assert_int_equal(ac->ac_demand.cd_hold_reason, REASON_STALE);
	assert_int_equal(fx_logged(f, "demand is stale"), 1);
	fx_free(f);
}

/* /ready with Kubernetes: the objects, VMs, denials and reachability. */
static void
test_health_detail(void **state)
{
	struct kfx *k = kfx_new(NULL);
	struct msg_health h;
	struct buf metrics = { 0 };
	json_t *cls;

	(void)state;
	memset(&h, 0, sizeof(h));
	report_health(k->k_a, &h, &metrics);
	assert_int_equal(h.hl_state, HEALTH_STARTING);
	json_decref(h.hl_detail);
	buf_reset(&metrics);
	serve_settled(k, 2);
	fas_rule(&k->k_fas, "GET", VMS "?", 403,
	    "{\"kind\":\"Status\",\"message\":\"forbidden\"}", NULL, 0, -1);
	fx_demand(k->k_fx, true, 2, 0);
	run_until(k, lists_answered, "the lists");
	memset(&h, 0, sizeof(h));
	report_health(k->k_a, &h, &metrics);
	assert_int_equal(h.hl_state, HEALTH_FAILING);
	assert_string_equal(
	    json_string_value(json_object_get(h.hl_detail, "namespace")),
	    "runners");
	assert_true(json_is_true(
	    json_object_get(h.hl_detail, "kubernetes_reachable")));
	cls =
	    json_object_get(json_object_get(h.hl_detail, "classes"), FX_CLASS);
	assert_true(fx_equal(json_object_get(cls, "denied"),
	    json_pack("[s]", "list virtualmachines")));
	assert_string_equal(
	    json_string_value(json_object_get(cls, "pool_state")), "current");
	assert_int_equal(
	    json_integer_value(json_object_get(cls, "pool_replicas")), 2);
	assert_true(json_is_false(json_object_get(cls, "synced")));
	json_decref(h.hl_detail);
	buf_free(&metrics);
	kfx_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reconcile_from_nothing),
		cmocka_unit_test(test_vm_requests),
		cmocka_unit_test(test_hanging_retry_costs_no_turns),
		cmocka_unit_test(test_malformed_bodies),
		cmocka_unit_test(test_retry_after),
		cmocka_unit_test(test_401_and_403),
		cmocka_unit_test(test_unreachable_and_cancelled),
		cmocka_unit_test(test_demand_over_nng),
		cmocka_unit_test(test_dry_run),
		cmocka_unit_test(test_holding),
		cmocka_unit_test(test_health_detail),
	};

	/* The fake server writes to connections curl may have closed. */
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
