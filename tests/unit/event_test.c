/*
 * Events (actuator/event.c) against the scripted API server: what an
 * Event looks like, how repeats become one series (client-go's recorder)
 * and how few writes a flapping class costs, and that events are best
 * effort: a standby sends none, a failure pauses them, an expired Event is
 * created again.
 */
#include "kube_fixture.h"

#include <regex.h>
#include <signal.h>

static const char created[] =
    "{\"apiVersion\":\"events.k8s.io/v1\",\"kind\":\"Event\","
    "\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"5\"}}";

static struct kfx *
efx_new(void)
{
	struct kfx *k = kfx_new(NULL);

	fas_rule(&k->k_fas, "POST", EVENTS, 201, created, NULL, 0, -1);
	fas_rule(&k->k_fas, "PATCH", EVENTS "/", 200, created, NULL, 0, -1);
	return k;
}

/* Sends what is due at now and waits for every answer. */
static void
flush(struct kfx *k, uint64_t now)
{
	struct actuator *a = k->k_a;
	uint64_t end = now_ms() + 10000;
	int running, numfds;

	event_flush(a, true, now);
	while (kube_inflight(a->a_kube) > 0) {
		if (now_ms() > end)
			fail_msg("event requests unanswered");
		curl_multi_poll(a->a_multi, NULL, 0, 50, &numfds);
		curl_multi_perform(a->a_multi, &running);
		kube_collect(a->a_kube);
	}
}

static bool
microtime(const char *s)
{
	regex_t re;
	bool ok;

	if (s == NULL)
		return false;
	assert_int_equal(regcomp(&re,
	                     "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
	                     "[0-9]{2}\\.[0-9]{6}Z$",
	                     REG_EXTENDED | REG_NOSUB),
	    0);
	ok = regexec(&re, s, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

/* An Event as events.k8s.io/v1 wants it, about the pool. */
static void
test_event_shape(void **state)
{
	struct kfx *k = efx_new();
	struct act_class *ac = fx_class(k->k_fx);
	struct fas_req q = { 0 };
	json_t *ev, *reg;
	const char *name;

	(void)state;
	free(ac->ac_kube.ck_pool.os_uid);
	ac->ac_kube.ck_pool.os_uid = xstrdup("pool-uid-1");
	event_record(k->k_a, ac, EVENT_WARNING, "BootLoop", "Reclaim",
	    "%d VMs in a row powered off", 3);
	flush(k, now_ms());
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 1);
	assert_true(fas_last(&k->k_fas, "POST", EVENTS, &q));
	assert_string_equal(q.fr_ctype, "application/json");
	ev = fx_json(q.fr_body);
	free(q.fr_body);
	assert_string_equal(
	    json_string_value(json_object_get(ev, "apiVersion")),
	    "events.k8s.io/v1");
	name = json_string_value(
	    json_object_get(json_object_get(ev, "metadata"), "name"));
	assert_non_null(name);
	assert_int_equal(strncmp(name, FX_POOL ".", strlen(FX_POOL) + 1), 0);
	assert_true(
	    microtime(json_string_value(json_object_get(ev, "eventTime"))));
	assert_string_equal(
	    json_string_value(json_object_get(ev, "reportingController")),
	    "runner-provisioner");
	assert_string_equal(
	    json_string_value(json_object_get(ev, "reportingInstance")),
	    "fx-host_0000");
	assert_string_equal(
	    json_string_value(json_object_get(ev, "type")), "Warning");
	assert_string_equal(
	    json_string_value(json_object_get(ev, "reason")), "BootLoop");
	assert_string_equal(
	    json_string_value(json_object_get(ev, "action")), "Reclaim");
	assert_string_equal(json_string_value(json_object_get(ev, "note")),
	    "3 VMs in a row powered off");
	assert_null(json_object_get(ev, "series"));
	reg = json_object_get(ev, "regarding");
	assert_true(fx_equal(reg,
	    json_pack("{s:s,s:s,s:s,s:s,s:s}", "apiVersion",
	        "pool.kubevirt.io/v1beta1", "kind", "VirtualMachinePool",
	        "name", FX_POOL, "namespace", FX_NS, "uid", "pool-uid-1")));
	json_decref(ev);
	kfx_free(k);
}

/* Repeats are one series: created once, a series of 2 at once, then the
 * count written at most every EVENT_SERIES_FLUSH_MS, whatever the notes
 * say; another reason is another Event. */
static void
test_series(void **state)
{
	struct kfx *k = efx_new();
	struct act_class *ac = fx_class(k->k_fx);
	uint64_t t = now_ms();
	struct fas_req q = { 0 };
	json_t *body;
	int i;

	(void)state;
	event_record(k->k_a, ac, EVENT_NORMAL, "ScaledUp", "Scale",
	    "from %d to %d", 1, 2);
	flush(k, t);
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 1);
	for (i = 0; i < 40; i++)
		event_record(k->k_a, ac, EVENT_NORMAL, "ScaledUp", "Scale",
		    "from %d to %d", i + 2, i + 3);
	assert_int_equal(event_pending(k->k_a), 1);
	flush(k, now_ms());
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 1);
	assert_int_equal(fas_count(&k->k_fas, "PATCH", EVENTS), 1);
	assert_true(fas_last(&k->k_fas, "PATCH", EVENTS "/", &q));
	assert_string_equal(q.fr_ctype, "application/merge-patch+json");
	body = fx_json(q.fr_body);
	free(q.fr_body);
	/* Only the series: the note stays the first one's. */
	assert_int_equal(json_object_size(body), 1);
	assert_int_equal(json_integer_value(json_object_get(
	                     json_object_get(body, "series"), "count")),
	    41);
	assert_true(microtime(json_string_value(json_object_get(
	    json_object_get(body, "series"), "lastObservedTime"))));
	json_decref(body);
	/* More repeats: nothing until the flush interval has passed. */
	event_record(
	    k->k_a, ac, EVENT_NORMAL, "ScaledUp", "Scale", "%s", "again");
	flush(k, now_ms());
	flush(k, now_ms() + EVENT_SERIES_FLUSH_MS / 2);
	assert_int_equal(fas_count(&k->k_fas, "PATCH", EVENTS), 1);
	flush(k, now_ms() + EVENT_SERIES_FLUSH_MS + 1000);
	assert_int_equal(fas_count(&k->k_fas, "PATCH", EVENTS), 2);
	/* Another reason, another Event. */
	event_record(k->k_a, ac, EVENT_NORMAL, "ScaledDown", "Scale", "down");
	flush(k, now_ms());
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 2);
	/* A series not seen for a while has ended: the next occurrence is a
	 * new Event. */
	flush(k, now_ms() + EVENT_SERIES_END_MS + EVENT_SERIES_FLUSH_MS);
	assert_int_equal(event_pending(k->k_a), 0);
	event_record(k->k_a, ac, EVENT_NORMAL, "ScaledUp", "Scale", "later");
	flush(k, now_ms());
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 3);
	kfx_free(k);
}

/* Best effort: a standby records but sends nothing (and forgets it); a
 * refused Event is dropped and events pause; a series whose Event expired
 * is created again, as a series. */
static void
test_best_effort(void **state)
{
	struct kfx *k = kfx_new(NULL);
	struct act_class *ac = fx_class(k->k_fx);
	struct fas_req q = { 0 };
	json_t *body;
	uint64_t t;

	(void)state;
	event_record(k->k_a, ac, EVENT_NORMAL, "ScaledUp", "Scale", "x");
	event_flush(k->k_a, false, now_ms());
	assert_int_equal(event_pending(k->k_a), 0);
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 0);

	/* The Role lacks events: one try, then a pause. */
	fas_rule(&k->k_fas, "POST", EVENTS, 403, NULL, NULL, 0, 1);
	event_record(k->k_a, ac, EVENT_NORMAL, "ScaledUp", "Scale", "x");
	flush(k, now_ms());
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 1);
	event_record(k->k_a, ac, EVENT_NORMAL, "ReclaimedVM", "Reclaim", "y");
	flush(k, now_ms());
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 1);
	fas_rule(&k->k_fas, "POST", EVENTS, 201, created, NULL, 0, -1);
	t = now_ms() + EVENT_PAUSE_MS + 1; /* from now on, after the pause */
	flush(k, t);
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 2);

	/* Expired (deleted by the API server): created again with the
	 * count so far. */
	fas_rule(&k->k_fas, "PATCH", EVENTS "/", 404, NULL, NULL, 0, 1);
	event_record(k->k_a, ac, EVENT_NORMAL, "ReclaimedVM", "Reclaim", "z");
	flush(k, t);
	assert_int_equal(fas_count(&k->k_fas, "PATCH", EVENTS), 1);
	flush(k, t);
	assert_int_equal(fas_count(&k->k_fas, "POST", EVENTS), 3);
	assert_true(fas_last(&k->k_fas, "POST", EVENTS, &q));
	body = fx_json(q.fr_body);
	free(q.fr_body);
	assert_int_equal(json_integer_value(json_object_get(
	                     json_object_get(body, "series"), "count")),
	    2);
	json_decref(body);
	kfx_free(k);
}

/* A note at the API server's limit, cut at a character. */
static void
test_long_note(void **state)
{
	struct kfx *k = efx_new();
	struct act_class *ac = fx_class(k->k_fx);
	char note[EVENT_NOTE_MAX + 200];
	struct fas_req q = { 0 };
	const char *n;
	json_t *ev;
	size_t i;

	(void)state;
	for (i = 0; i + 2 < sizeof(note); i += 2)
		memcpy(note + i, "\xc3\xa9", 2); /* é */
	note[i] = '\0';
	event_record(
	    k->k_a, ac, EVENT_NORMAL, "Forbidden", "Write", "%s", note);
	flush(k, now_ms());
	assert_true(fas_last(&k->k_fas, "POST", EVENTS, &q));
	ev = fx_json(q.fr_body);
	free(q.fr_body);
	n = json_string_value(json_object_get(ev, "note"));
	assert_true(strlen(n) <= EVENT_NOTE_MAX);
	assert_true(strlen(n) >= EVENT_NOTE_MAX - 1);
	assert_int_equal(strlen(n) % 2, 0);
	json_decref(ev);
	kfx_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_shape),
		cmocka_unit_test(test_series),
		cmocka_unit_test(test_best_effort),
		cmocka_unit_test(test_long_note),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
