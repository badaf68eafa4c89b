#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "poller.h"
#include "util.h"

#define T0    500000
#define FAST  1000
#define IDLE  5000
#define AFTER 60000
#define NMAX  64

struct sim {
	struct sched sc;
	struct sched_slot slot[NMAX];
	size_t n;
	uint64_t polls[NMAX];
	uint64_t *log_t; /* every poll start, in order */
	size_t *log_i;
	size_t nlog, caplog;
};

static void
sim_init(struct sim *s, size_t n, uint64_t idle_after)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	s->n = n;
	sched_init(&s->sc, n, T0, FAST, IDLE, idle_after);
	for (i = 0; i < n; i++)
		sched_add(&s->sc, &s->slot[i], i);
	s->caplog = 100000;
	s->log_t = xcalloc(s->caplog, sizeof(*s->log_t));
	s->log_i = xcalloc(s->caplog, sizeof(*s->log_i));
}

static void
sim_free(struct sim *s)
{
	sched_free(&s->sc);
	free(s->log_t);
	free(s->log_i);
}

typedef enum sched_outcome outcome_fn(size_t i, uint64_t t);

static enum sched_outcome
always_tasks(size_t i, uint64_t t)
{
	(void)i;
	(void)t;
	return SCHED_TASKS;
}

static enum sched_outcome
always_quiet(size_t i, uint64_t t)
{
	(void)i;
	(void)t;
	return SCHED_QUIET;
}

/* Runs the schedule from `from` to `to` ms; polls answer at once with
 * outcome(); at most `per_100ms` polls may start in any 100 ms slice (a
 * request budget), 0: no limit. */
static void
sim_run(struct sim *s, uint64_t from, uint64_t to, outcome_fn *outcome,
    unsigned per_100ms)
{
	struct sched_slot *sl;
	uint64_t t, slice = UINT64_MAX;
	unsigned in_slice = 0;
	size_t i;

	for (t = from; t < to; t++) {
		if (t / 100 != slice) {
			slice = t / 100;
			in_slice = 0;
		}
		while ((sl = sched_due(&s->sc, t)) != NULL) {
			if (per_100ms != 0 && in_slice >= per_100ms)
				break;
			in_slice++;
			i = (size_t)(sl - s->slot);
			sched_started(&s->sc, sl, t);
			s->polls[i]++;
			if (s->nlog < s->caplog) {
				s->log_t[s->nlog] = t;
				s->log_i[s->nlog++] = i;
			}
			sched_finished(&s->sc, sl, outcome(i, t), 0, t);
		}
	}
}

/* The first polls of n classes are spread over the fast interval. */
static void
test_first_polls_spread(void **state)
{
	struct sched sc;
	struct sched_slot sl[4];
	size_t i;

	(void)state;
	sched_init(&sc, 4, T0, FAST, IDLE, AFTER);
	for (i = 0; i < 4; i++) {
		sched_add(&sc, &sl[i], i);
		assert_int_equal(sl[i].ss_due_ms, T0 + i * 250);
	}
	assert_int_equal(sched_next_ms(&sc), T0);
	assert_ptr_equal(sched_due(&sc, T0), &sl[0]);
	assert_null(sched_due(&sc, T0 - 1));
	sched_free(&sc);
}

static void
test_grid(void **state)
{
	struct sched sc;

	(void)state;
	sched_init(&sc, 10, T0, FAST, IDLE, AFTER);
	/* class 3 of 10: phase 300 ms in a 1 s grid, 1500 in a 5 s one */
	assert_int_equal(sched_grid_after(&sc, 0, FAST, 3), T0 + 300);
	assert_int_equal(sched_grid_after(&sc, T0 + 300, FAST, 3), T0 + 1300);
	assert_int_equal(sched_grid_after(&sc, T0 + 1299, FAST, 3), T0 + 1300);
	assert_int_equal(
	    sched_grid_after(&sc, T0 + 9999, IDLE, 3), T0 + 11500);
	sched_free(&sc);
}

/* Busy classes: one poll each per fast interval, and never two classes in
 * the same few milliseconds (no burst at the top of a cycle). */
static void
test_busy_classes_evenly_spaced(void **state)
{
	struct sim s;
	size_t i, k;

	(void)state;
	sim_init(&s, 50, AFTER);
	sim_run(&s, T0, T0 + 10000, always_tasks, 0);
	for (i = 0; i < s.n; i++)
		assert_int_equal(s.polls[i], 10);
	for (k = 1; k < s.nlog; k++)
		if (s.log_t[k] - s.log_t[k - 1] < 19)
			fail_msg("polls %zu and %zu %llu ms apart", k - 1, k,
			    (unsigned long long)(s.log_t[k] - s.log_t[k - 1]));
	sim_free(&s);
}

/* A class with no task for --idle-poll-after moves to the idle interval;
 * the first task brings it back to the fast one at once. */
static enum sched_outcome
task_at_90s(size_t i, uint64_t t)
{
	(void)i;
	return t >= T0 + 90000 && t < T0 + 91000 ? SCHED_TASKS : SCHED_QUIET;
}

static void
test_idle_and_back(void **state)
{
	struct sim s;
	size_t k;
	uint64_t prev = 0, gap;

	(void)state;
	sim_init(&s, 1, AFTER);
	sim_run(&s, T0, T0 + 120000, task_at_90s, 0);
	for (k = 0; k < s.nlog; k++) {
		uint64_t t = s.log_t[k];
		if (k > 0) {
			gap = t - prev;
			if (t <= T0 + 60000 ||
			    (t > T0 + 91000 && t <= T0 + 91000 + AFTER))
				assert_int_equal(gap, FAST);
			else if (t > T0 + 61000 && t < T0 + 90000)
				assert_int_equal(gap, IDLE);
		}
		prev = t;
	}
	/* 60 fast polls, then idle: 90 s is on the idle grid (T0 + 90000),
	 * finds the task: fast again from there. */
	assert_true(s.slot[0].ss_idle == false);
	assert_int_equal(s.sc.sc_nidle, 0);
	/* 61 polls in the first minute, 6 idle ones to 90 s, then 30 fast. */
	assert_in_range(s.polls[0], 61 + 5 + 29, 61 + 6 + 31);
	sim_free(&s);
}

/* Idle classes are spread over the idle interval too. */
static void
test_idle_classes_spread(void **state)
{
	struct sim s;
	size_t k, in_first_second = 0;

	(void)state;
	sim_init(&s, 10, 0);
	sim_run(&s, T0, T0 + 30000, always_quiet, 0);
	assert_int_equal(s.sc.sc_nidle, 10);
	for (k = 0; k < s.nlog; k++) {
		if (s.log_t[k] < T0 + 10000)
			continue;
		if ((s.log_t[k] - T0) % IDLE < 1000)
			in_first_second++;
		if (k > 0 && s.log_t[k] - s.log_t[k - 1] < 499)
			fail_msg("idle polls %llu ms apart",
			    (unsigned long long)(s.log_t[k] - s.log_t[k - 1]));
	}
	/* 20 s of idle polling = 40 polls, 2 in each second of the grid. */
	assert_int_equal(in_first_second, 8);
	sim_free(&s);
}

/* A budget that covers half of what the classes ask for: every class is
 * still polled, each about as often as the others (round-robin). */
static void
test_short_budget_is_round_robin(void **state)
{
	struct sim s;
	uint64_t lo = UINT64_MAX, hi = 0;
	size_t i;

	(void)state;
	sim_init(&s, 40, AFTER);
	/* 40 busy classes want 40 polls/s; 2 per 100 ms is 20/s. */
	sim_run(&s, T0, T0 + 20000, always_tasks, 2);
	for (i = 0; i < s.n; i++) {
		if (s.polls[i] < lo)
			lo = s.polls[i];
		if (s.polls[i] > hi)
			hi = s.polls[i];
	}
	assert_true(hi - lo <= 1);
	assert_in_range(lo, 9, 10);
	/* Nothing starved: the longest gap of a class is about two seconds
	 * (its turn in a round of 40 at 20/s). */
	for (i = 0; i < s.n; i++) {
		uint64_t prev = 0, worst = 0;
		size_t k;
		for (k = 0; k < s.nlog; k++) {
			if (s.log_i[k] != i)
				continue;
			if (prev != 0 && s.log_t[k] - prev > worst)
				worst = s.log_t[k] - prev;
			prev = s.log_t[k];
		}
		assert_in_range(worst, 1900, 2200);
	}
	sim_free(&s);
}

/* A failure's pause (backoff, Retry-After) holds the next poll back. */
static void
test_not_before(void **state)
{
	struct sched sc;
	struct sched_slot sl[2];

	(void)state;
	sched_init(&sc, 2, T0, FAST, IDLE, AFTER);
	sched_add(&sc, &sl[0], 0);
	sched_add(&sc, &sl[1], 1);
	sched_started(&sc, sched_due(&sc, T0), T0);
	assert_false(
	    sched_finished(&sc, &sl[0], SCHED_FAILED, T0 + 30000, T0 + 5));
	assert_ptr_equal(sched_due(&sc, T0 + 500), &sl[1]);
	sched_started(&sc, &sl[1], T0 + 500);
	sched_finished(&sc, &sl[1], SCHED_TASKS, 0, T0 + 510);
	assert_int_equal(sl[1].ss_due_ms, T0 + 1500);
	assert_int_equal(sl[0].ss_due_ms, T0 + 30000);
	assert_int_equal(sched_next_ms(&sc), T0 + 1500);
	sched_free(&sc);
}

/* A poll that started late (a short budget, a slow answer) is followed by
 * the next grid point, not by a catch-up burst. */
static void
test_late_poll(void **state)
{
	struct sched sc;
	struct sched_slot sl;

	(void)state;
	sched_init(&sc, 1, T0, FAST, IDLE, AFTER);
	sched_add(&sc, &sl, 0);
	sched_started(&sc, &sl, T0 + 3700);
	sched_finished(&sc, &sl, SCHED_TASKS, 0, T0 + 3710);
	assert_int_equal(sl.ss_due_ms, T0 + 4000);
	assert_int_equal(sl.ss_prev_started_ms, 0);
	assert_int_equal(sl.ss_started_ms, T0 + 3700);
	sched_free(&sc);
}

/* Taking a slot out of the middle of the heap keeps the order. */
static void
test_heap_order(void **state)
{
	struct sched sc;
	struct sched_slot sl[NMAX], *s;
	uint64_t prev = 0;
	size_t i, taken = 0;

	(void)state;
	sched_init(&sc, NMAX, T0, FAST, IDLE, AFTER);
	for (i = 0; i < NMAX; i++)
		sched_add(&sc, &sl[i], (i * 37) % NMAX);
	sched_started(&sc, &sl[5], T0);
	sched_started(&sc, &sl[40], T0);
	while ((s = sched_due(&sc, T0 + 10 * FAST)) != NULL) {
		assert_true(s->ss_due_ms >= prev);
		prev = s->ss_due_ms;
		sched_started(&sc, s, T0);
		taken++;
	}
	assert_int_equal(taken, NMAX - 2);
	assert_int_equal(sched_next_ms(&sc), UINT64_MAX);
	sched_free(&sc);
}

static void
test_needed_rps(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, 10, 0);
	assert_true(sched_needed_rps(&s.sc) == 20); /* 10 x 2 per second */
	sim_run(&s, T0, T0 + 6000, always_quiet, 0);
	assert_int_equal(s.sc.sc_nidle, 10);
	assert_true(sched_needed_rps(&s.sc) == 4); /* 10 x 2 per 5 s */
	sim_free(&s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_polls_spread),
		cmocka_unit_test(test_grid),
		cmocka_unit_test(test_busy_classes_evenly_spaced),
		cmocka_unit_test(test_idle_and_back),
		cmocka_unit_test(test_idle_classes_spread),
		cmocka_unit_test(test_short_budget_is_round_robin),
		cmocka_unit_test(test_not_before),
		cmocka_unit_test(test_late_poll),
		cmocka_unit_test(test_heap_order),
		cmocka_unit_test(test_needed_rps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
