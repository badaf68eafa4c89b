/*
 * Leader election (actuator/lease.c) on scripted API server answers: each
 * case is a list of steps, what the state machine is asked or told and
 * what it must say, do and allow.  Times are local monotonic ms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "util.h"

#define ME    "pod-a_0001"
#define OTHER "pod-b_0002"
#define WALL  1700000000123ull
#define ANY   -1

enum step_kind {
	S_NEXT,    /* lease_next: want op (and the body's spec) */
	S_ANSWER,  /* lease_answer: want event */
	S_TICK,    /* lease_tick: want event */
	S_GIVE_UP, /* lease_give_up */
};

struct step {
	enum step_kind s_kind;
	uint64_t s_t;
	/* S_ANSWER: the answer.  s_holder NULL: no body (an error). */
	long s_status;
	const char *s_holder;
	int s_dur; /* < 0: field absent */
	int s_trans;
	const char *s_rv;
	/* Expectations. */
	enum lease_op s_op;
	enum lease_event s_ev;
	const char *s_body_holder; /* S_NEXT writes: NULL: don't check */
	int s_body_dur;
	int s_body_trans;
	int s_write; /* lease_may_write after the step: 0, 1, ANY */
};

#define NEXT(t, op, w)                                                        \
	{                                                                     \
		S_NEXT, t, 0, NULL, 0, 0, NULL, op, LEASE_EV_NONE, NULL, 0,   \
		    0, w                                                      \
	}
#define WRITE(t, op, holder, dur, trans, w)                                   \
	{                                                                     \
		S_NEXT, t, 0, NULL, 0, 0, NULL, op, LEASE_EV_NONE, holder,    \
		    dur, trans, w                                             \
	}
#define ANSWER(t, status, holder, dur, trans, rv, ev, w)                      \
	{                                                                     \
		S_ANSWER, t, status, holder, dur, trans, rv, LEASE_OP_NONE,   \
		    ev, NULL, 0, 0, w                                         \
	}
#define FAIL(t, status, ev, w)                                                \
	{                                                                     \
		S_ANSWER, t, status, NULL, 0, 0, NULL, LEASE_OP_NONE, ev,     \
		    NULL, 0, 0, w                                             \
	}
#define TICK(t, ev, w)                                                        \
	{                                                                     \
		S_TICK, t, 0, NULL, 0, 0, NULL, LEASE_OP_NONE, ev, NULL, 0,   \
		    0, w                                                      \
	}
#define GIVE_UP(t)                                                            \
	{                                                                     \
		S_GIVE_UP, t, 0, NULL, 0, 0, NULL, LEASE_OP_NONE,             \
		    LEASE_EV_NONE, NULL, 0, 0, ANY                            \
	}
#define END                                                                   \
	{                                                                     \
		S_GIVE_UP, UINT64_MAX, 0, NULL, 0, 0, NULL, 0, 0, NULL, 0, 0, \
		    0                                                         \
	}

struct scenario {
	const char *name;
	enum lease_goal goal;
	struct step steps[16];
};

/* client-go's semantics, step by step (research: wave2 §1.3). */
static const struct scenario scenarios[] = {
	{ "no Lease yet: create it holding it", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0), FAIL(5, 404, LEASE_EV_NONE, 0),
	        WRITE(5, LEASE_OP_CREATE, ME, 15, 0, 0),
	        ANSWER(9, 201, ME, 15, 0, "1", LEASE_EV_ACQUIRED, 1),
	        /* renewals every retry period, with the last resourceVersion
	         */
	        NEXT(1000, LEASE_OP_NONE, 1),
	        WRITE(2005, LEASE_OP_UPDATE, ME, 15, 0, 1),
	        ANSWER(2010, 200, ME, 15, 0, "2", LEASE_EV_NONE, 1), END } },
	{ "held by another: wait, judged by the local clock from the last "
	  "change",
	    LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(0, 200, OTHER, 15, 3, "7", LEASE_EV_NONE, 0),
	        NEXT(1000, LEASE_OP_NONE, 0), NEXT(2000, LEASE_OP_GET, 0),
	        /* unchanged: still the same observation time (0) */
	        ANSWER(2000, 200, OTHER, 15, 3, "7", LEASE_EV_NONE, 0),
	        NEXT(14000, LEASE_OP_GET, 0),
	        ANSWER(14000, 200, OTHER, 15, 3, "7", LEASE_EV_NONE, 0),
	        /* the next read comes exactly at expiry, not a period later */
	        NEXT(14999, LEASE_OP_NONE, 0), NEXT(15000, LEASE_OP_GET, 0),
	        ANSWER(15000, 200, OTHER, 15, 3, "7", LEASE_EV_NONE, 0),
	        WRITE(15000, LEASE_OP_UPDATE, ME, 15, 4, 0),
	        ANSWER(15003, 200, ME, 15, 4, "8", LEASE_EV_ACQUIRED, 1),
	        END } },
	{ "a holder that renews stays valid", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(0, 200, OTHER, 15, 0, "7", LEASE_EV_NONE, 0),
	        NEXT(10000, LEASE_OP_GET, 0),
	        /* renewed: a new record, observed now */
	        ANSWER(10000, 200, OTHER, 15, 0, "9", LEASE_EV_NONE, 0),
	        NEXT(24990, LEASE_OP_GET, 0),
	        ANSWER(24990, 200, OTHER, 15, 0, "9", LEASE_EV_NONE, 0),
	        NEXT(24999, LEASE_OP_NONE, 0), NEXT(25000, LEASE_OP_GET, 0),
	        ANSWER(25000, 200, OTHER, 15, 0, "9", LEASE_EV_NONE, 0),
	        WRITE(25000, LEASE_OP_UPDATE, ME, 15, 1, 0), END } },
	{ "a released Lease (no holder) is free at once", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(1, 200, "", 1, 5, "12", LEASE_EV_NONE, 0),
	        WRITE(1, LEASE_OP_UPDATE, ME, 15, 6, 0),
	        ANSWER(2, 200, ME, 15, 6, "13", LEASE_EV_ACQUIRED, 1), END } },
	{ "no duration (or 0): expired, as client-go reads it", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(1, 200, OTHER, -1, 2, "12", LEASE_EV_NONE, 0),
	        WRITE(1, LEASE_OP_UPDATE, ME, 15, 3, 0), END } },
	{ "two candidates: the conflict loses, and reads again", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(0, 200, "", 1, 0, "3", LEASE_EV_NONE, 0),
	        WRITE(0, LEASE_OP_UPDATE, ME, 15, 1, 0),
	        FAIL(4, 409, LEASE_EV_NONE, 0), NEXT(4, LEASE_OP_GET, 0),
	        ANSWER(6, 200, OTHER, 15, 1, "4", LEASE_EV_NONE, 0),
	        NEXT(7, LEASE_OP_NONE, 0), END } },
	{ "a restarted holder (same identity) keeps the Lease and its "
	  "acquisition",
	    LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(0, 200, ME, 15, 7, "20", LEASE_EV_NONE, 0),
	        WRITE(0, LEASE_OP_UPDATE, ME, 15, 7, 0),
	        ANSWER(3, 200, ME, 15, 7, "21", LEASE_EV_ACQUIRED, 1), END } },
	{ "a leader that cannot renew stops writing at the renew deadline",
	    LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0), FAIL(0, 404, LEASE_EV_NONE, 0),
	        WRITE(0, LEASE_OP_CREATE, ME, 15, 0, 0),
	        ANSWER(1, 201, ME, 15, 0, "1", LEASE_EV_ACQUIRED, 1),
	        WRITE(2000, LEASE_OP_UPDATE, ME, 15, 0, 1),
	        FAIL(2500, 503, LEASE_EV_NONE, 1),
	        /* the slow path: read, then renew again */
	        NEXT(4000, LEASE_OP_GET, 1), FAIL(9000, 0, LEASE_EV_NONE, 1),
	        TICK(9999, LEASE_EV_NONE, 1),
	        /* 10 s after the last renewal was sent, 5 s before anyone may
	         * take the Lease */
	        TICK(10000, LEASE_EV_LOST, 0), END } },
	{ "a leader that finds another holder stands down at once",
	    LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0), FAIL(0, 404, LEASE_EV_NONE, 0),
	        WRITE(0, LEASE_OP_CREATE, ME, 15, 0, 0),
	        ANSWER(1, 201, ME, 15, 0, "1", LEASE_EV_ACQUIRED, 1),
	        WRITE(2000, LEASE_OP_UPDATE, ME, 15, 0, 1),
	        FAIL(2001, 409, LEASE_EV_NONE, 1), NEXT(2001, LEASE_OP_GET, 1),
	        ANSWER(2002, 200, "drain_1", 15, 1, "5", LEASE_EV_LOST, 0),
	        END } },
	{ "a graceful stop gives the Lease up: no holder, 1 s", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0), FAIL(0, 404, LEASE_EV_NONE, 0),
	        WRITE(0, LEASE_OP_CREATE, ME, 15, 0, 0),
	        ANSWER(1, 201, ME, 15, 0, "1", LEASE_EV_ACQUIRED, 1),
	        GIVE_UP(500), NEXT(500, LEASE_OP_GET, 0),
	        ANSWER(501, 200, ME, 15, 0, "1", LEASE_EV_NONE, 0),
	        WRITE(501, LEASE_OP_UPDATE, "", 1, 0, 0),
	        ANSWER(502, 200, "", 1, 0, "2", LEASE_EV_RELEASED, 0),
	        NEXT(3000, LEASE_OP_NONE, 0), END } },
	{ "a standby that stops has nothing to give up", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(0, 200, OTHER, 15, 3, "7", LEASE_EV_NONE, 0),
	        GIVE_UP(100), NEXT(100, LEASE_OP_NONE, 0), END } },
	{ "a Role without leases: never leads", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0), FAIL(0, 403, LEASE_EV_NONE, 0),
	        NEXT(2000, LEASE_OP_GET, 0), END } },
	{ "a malformed Lease is no answer", LEASE_ELECT,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(0, 200,
	            "\x01"
	            "bad",
	            15, 0, NULL, LEASE_EV_NONE, 0),
	        NEXT(1, LEASE_OP_NONE, 0), NEXT(2000, LEASE_OP_GET, 0),
	        END } },
	{ "--drain takes a held Lease and writes after the renew deadline",
	    LEASE_TAKE,
	    { NEXT(0, LEASE_OP_GET, 0),
	        ANSWER(0, 200, OTHER, 15, 3, "7", LEASE_EV_NONE, 0),
	        WRITE(0, LEASE_OP_UPDATE, ME, 15, 4, 0),
	        ANSWER(2, 200, ME, 15, 4, "8", LEASE_EV_ACQUIRED, 0),
	        WRITE(2000, LEASE_OP_UPDATE, ME, 15, 4, 0),
	        ANSWER(2001, 200, ME, 15, 4, "9", LEASE_EV_NONE, 0),
	        TICK(9999, LEASE_EV_NONE, 0), TICK(10000, LEASE_EV_NONE, 1),
	        /* at the end it keeps the Lease, so nobody recreates pools */
	        GIVE_UP(12000), NEXT(12000, LEASE_OP_GET, 0),
	        ANSWER(12001, 200, ME, 15, 4, "9", LEASE_EV_NONE, 0),
	        WRITE(12001, LEASE_OP_UPDATE, ME, LEASE_HOLD_S, 4, 0),
	        ANSWER(
	            12002, 200, ME, LEASE_HOLD_S, 4, "10", LEASE_EV_HELD, 0),
	        END } },
	{ "--drain on a free Lease writes at once", LEASE_TAKE,
	    { NEXT(0, LEASE_OP_GET, 0), FAIL(0, 404, LEASE_EV_NONE, 0),
	        WRITE(0, LEASE_OP_CREATE, ME, 15, 0, 0),
	        ANSWER(1, 201, ME, 15, 0, "1", LEASE_EV_ACQUIRED, 1), END } },
};

static json_t *
lease_obj(const struct step *st)
{
	json_t *spec;
	char t[40];

	if (st->s_holder[0] == '\x01') /* malformed: a string duration */
		return json_pack("{s:{s:s,s:s},s:{s:s}}", "metadata", "name",
		    "rp", "resourceVersion", "1", "spec",
		    "leaseDurationSeconds", "15");
	spec = json_object();
	json_object_set_new(spec, "holderIdentity", json_string(st->s_holder));
	if (st->s_dur >= 0)
		json_object_set_new(
		    spec, "leaseDurationSeconds", json_integer(st->s_dur));
	json_object_set_new(
	    spec, "leaseTransitions", json_integer(st->s_trans));
	/* Every renewal writes a new renewTime: a new record. */
	snprintf(t, sizeof(t), "2020-01-01T00:00:%02d.000000Z",
	    atoi(st->s_rv) % 60);
	json_object_set_new(spec, "renewTime", json_string(t));
	return json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:o}", "apiVersion",
	    "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name",
	    "rp", "namespace", "ns", "resourceVersion", st->s_rv, "spec",
	    spec);
}

static void
check_body(const struct scenario *sc, size_t i, const struct step *st,
    json_t *body, const char *last_rv)
{
	json_t *spec = json_object_get(body, "spec");
	const char *t;
	regex_t re;

	if (st->s_body_holder == NULL)
		return;
	if (body == NULL)
		fail_msg("%s, step %zu: no body", sc->name, i);
	if (strcmp(json_string_value(json_object_get(spec, "holderIdentity")),
	        st->s_body_holder) != 0 ||
	    json_integer_value(json_object_get(
	        spec, "leaseDurationSeconds")) != st->s_body_dur ||
	    json_integer_value(json_object_get(spec, "leaseTransitions")) !=
	        st->s_body_trans)
		fail_msg("%s, step %zu: body %s", sc->name, i,
		    json_dumps(body, JSON_COMPACT));
	/* MicroTime, as the API server writes it. */
	assert_int_equal(regcomp(&re,
	                     "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
	                     "[0-9]{2}\\.[0-9]{6}Z$",
	                     REG_EXTENDED | REG_NOSUB),
	    0);
	t = json_string_value(json_object_get(spec, "renewTime"));
	assert_non_null(t);
	assert_int_equal(regexec(&re, t, 0, NULL, 0), 0);
	t = json_string_value(json_object_get(spec, "acquireTime"));
	assert_non_null(t);
	assert_int_equal(regexec(&re, t, 0, NULL, 0), 0);
	regfree(&re);
	/* An update carries the resourceVersion last read: a conflict when
	 * someone wrote meanwhile. */
	if (st->s_op == LEASE_OP_UPDATE)
		assert_string_equal(
		    json_string_value(json_object_get(
		        json_object_get(body, "metadata"), "resourceVersion")),
		    last_rv);
}

static void
test_scenarios(void **state)
{
	const struct scenario *sc;
	const struct step *st;
	struct lease l;
	enum lease_event ev;
	enum lease_op op;
	const char *last_rv = "";
	json_t *body;
	size_t s, i;
	bool w;

	(void)state;
	for (s = 0; s < nitems(scenarios); s++) {
		sc = &scenarios[s];
		lease_init(&l, ME, sc->goal);
		for (i = 0; sc->steps[i].s_t != UINT64_MAX; i++) {
			st = &sc->steps[i];
			ev = LEASE_EV_NONE;
			switch (st->s_kind) {
			case S_NEXT:
				op = lease_next(&l, st->s_t, WALL + st->s_t,
				    "ns", "rp", LEASE_RETRY_MS, &body);
				if (op != st->s_op)
					fail_msg("%s, step %zu: sent %d, "
					         "wanted %d",
					    sc->name, i, op, st->s_op);
				check_body(sc, i, st, body, last_rv);
				json_decref(body);
				break;
			case S_ANSWER:
				body = st->s_holder != NULL ? lease_obj(st)
				                            : NULL;
				if (st->s_rv != NULL)
					last_rv = st->s_rv;
				ev = lease_answer(
				    &l, st->s_status, body, st->s_t);
				json_decref(body);
				break;
			case S_TICK:
				ev = lease_tick(&l, st->s_t);
				break;
			case S_GIVE_UP:
				lease_give_up(&l);
				break;
			}
			if (ev != st->s_ev)
				fail_msg("%s, step %zu: event %d, wanted %d",
				    sc->name, i, ev, st->s_ev);
			w = lease_may_write(&l, st->s_t);
			if (st->s_write != ANY && w != (st->s_write == 1))
				fail_msg("%s, step %zu: may write %d",
				    sc->name, i, w);
		}
		lease_free(&l);
	}
}

/* The loop's wake time: the next read, the renew deadline, the fence. */
static void
test_deadline(void **state)
{
	struct lease l;
	json_t *body;
	struct step held = ANSWER(0, 200, OTHER, 15, 0, "7", LEASE_EV_NONE, 0);

	(void)state;
	lease_init(&l, ME, LEASE_ELECT);
	assert_int_equal(lease_deadline(&l, 0), 0);
	assert_int_equal(
	    lease_next(&l, 0, WALL, "ns", "rp", 1800, &body), LEASE_OP_GET);
	/* waiting for the answer: no deadline of its own */
	assert_int_equal(lease_deadline(&l, 0), UINT64_MAX);
	body = lease_obj(&held);
	lease_answer(&l, 200, body, 100);
	json_decref(body);
	assert_int_equal(lease_deadline(&l, 100), 1800);
	lease_free(&l);
}

static void
test_microtime(void **state)
{
	char buf[32];

	(void)state;
	lease_microtime(1700000000123ull, buf, sizeof(buf));
	assert_string_equal(buf, "2023-11-14T22:13:20.123000Z");
	lease_microtime(0, buf, sizeof(buf));
	assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scenarios),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_microtime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
