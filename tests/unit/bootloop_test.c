#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "bootloop.h"
#include "util.h"

#define S  1000ull          /* ms */
#define T0 1700000000000ull /* wall clock at the start of each story */

static const struct boot_params params = { 0, 60 * S };
static const struct boot_params idle_params = { 30 * S, 60 * S };

static void
test_judge_table(void **state)
{
	static const struct {
		const char *what;
		const struct boot_params *p;
		struct boot_evidence ev;
		uint64_t created, stopped;
		enum boot_verdict want;
	} cases[] = {
		{ "1 s boot + 3 s job, seen running: ran a job", &params,
		    { T0, T0 + 2 * S }, T0 + 1 * S, T0 + 5 * S, BOOT_OK },
		{ "a claim seen right at creation counts", &params,
		    { T0, T0 + 1 * S }, T0 + 1 * S, T0 + 2 * S, BOOT_OK },
		{ "stopped at once, no job in its class: failed", &params,
		    { T0, 0 }, T0 + 1 * S, T0 + 2 * S, BOOT_FAILED },
		{ "a job before it was created is not its job", &params,
		    { T0, T0 + 1 * S }, T0 + 2 * S, T0 + 3 * S, BOOT_FAILED },
		{ "up for an hour, stopped without a job: failed", &params,
		    { T0, 0 }, T0 + 1 * S, T0 + 3601 * S, BOOT_FAILED },
		{ "reached its idle timeout: normal", &idle_params, { T0, 0 },
		    T0 + 1 * S, T0 + 31 * S, BOOT_IDLE },
		{ "idle timeout shorter than the threshold: still normal",
		    &idle_params, { T0, 0 }, T0 + 1 * S, T0 + 40 * S,
		    BOOT_IDLE },
		{ "stopped before its idle timeout, no job: failed",
		    &idle_params, { T0, 0 }, T0 + 1 * S, T0 + 29 * S,
		    BOOT_FAILED },
		{ "no good demand yet (actuator just started): unknown",
		    &params, { 0, 0 }, T0, T0 + 1 * S, BOOT_UNKNOWN },
		{ "created before demand was good again: unknown", &params,
		    { T0 + 10 * S, 0 }, T0 + 5 * S, T0 + 11 * S,
		    BOOT_UNKNOWN },
		{ "clock skew: stopped before created", &params, { T0, 0 },
		    T0 + 5 * S, T0 + 4 * S, BOOT_FAILED },
	};
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		enum boot_verdict got = boot_judge(cases[i].p, &cases[i].ev,
		    cases[i].created, cases[i].stopped);
		if (got != cases[i].want)
			fail_msg("%s: got %s, want %s", cases[i].what,
			    boot_verdict_name(got),
			    boot_verdict_name(cases[i].want));
	}
}

/* A VM's life in a story: created, a job seen (0: none), stopped. */
struct life {
	uint64_t created, job, stopped;
};

/* Plays VMs one after another through judge and note, as the actuator
 * does with each list; returns how many boot-loop entries happened. */
static int
play(struct boot_guard *g, const struct boot_params *p,
    struct boot_evidence *ev, const struct life *l, size_t n)
{
	int loops = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (l[i].job != 0) {
			ev->be_job_ms = l[i].job;
			boot_note_evidence(g, ev);
		}
		enum boot_verdict v =
		    boot_judge(p, ev, l[i].created, l[i].stopped);
		if (boot_note_stopped(g, v, l[i].stopped - l[i].created,
		        l[i].stopped - T0, l[i].stopped) == BOOT_EV_LOOP)
			loops++;
	}
	return loops;
}

static void
test_fast_boots_short_jobs_are_no_loop(void **state)
{
	struct boot_evidence ev = { T0, 0 };
	struct boot_guard g;
	struct life l[20];
	size_t i;

	(void)state;
	memset(&g, 0, sizeof(g));
	/* 1 s boot, 3 s job, next VM at once: each lives 4 s, far below the
	 * 60 s threshold. */
	for (i = 0; i < nitems(l); i++) {
		l[i].created = T0 + i * 4 * S;
		l[i].job = l[i].created + 2 * S;
		l[i].stopped = l[i].created + 4 * S;
	}
	assert_int_equal(play(&g, &params, &ev, l, nitems(l)), 0);
	assert_false(g.bg_loop);
	assert_int_equal(g.bg_streak, 0);
	assert_true(boot_may_reclaim(&g, 0));
}

static void
test_wrong_token_is_a_loop_with_backoff(void **state)
{
	struct boot_evidence ev = { T0, 0 };
	struct boot_guard g;
	struct life l[BOOT_LOOP_STREAK];
	uint64_t now;
	size_t i;

	(void)state;
	memset(&g, 0, sizeof(g));
	for (i = 0; i < nitems(l); i++)
		l[i] = (struct life){ T0 + i * 3 * S, 0, T0 + i * 3 * S + S };
	assert_int_equal(play(&g, &params, &ev, l, nitems(l) - 1), 0);
	assert_false(g.bg_loop);
	assert_int_equal(play(&g, &params, &ev, &l[nitems(l) - 1], 1), 1);
	assert_true(g.bg_loop);
	/* One VM per 30 s, doubling up to 10 min. */
	now = l[nitems(l) - 1].stopped - T0;
	assert_false(boot_may_reclaim(&g, now));
	assert_false(boot_may_reclaim(&g, now + 30 * S - 1));
	assert_true(boot_may_reclaim(&g, now + 30 * S));
	now += 30 * S;
	boot_reclaimed(&g, now);
	assert_false(boot_may_reclaim(&g, now + 59 * S));
	assert_true(boot_may_reclaim(&g, now + 60 * S));
	for (i = 0; i < 10; i++) {
		now = g.bg_reclaim_at_ms;
		boot_reclaimed(&g, now);
	}
	assert_int_equal(g.bg_reclaim_at_ms - now, BOOT_LOOP_BACKOFF_CAP_MS);
	/* More failures while in the loop: no second entry. */
	assert_int_equal(play(&g, &params, &ev, l, 1), 0);
}

static void
test_idle_timeouts_are_no_loop(void **state)
{
	struct boot_evidence ev = { T0, 0 };
	struct boot_guard g;
	struct life l[10];
	size_t i;

	(void)state;
	memset(&g, 0, sizeof(g));
	/* A quiet night: every VM idles out after 30 s, no job at all. */
	for (i = 0; i < nitems(l); i++)
		l[i] = (struct life){ T0 + i * 32 * S, 0,
			T0 + i * 32 * S + 31 * S };
	assert_int_equal(play(&g, &idle_params, &ev, l, nitems(l)), 0);
	assert_int_equal(g.bg_streak, 0);
}

static void
test_restart_and_outage_judge_nothing(void **state)
{
	struct boot_evidence ev = { 0, 0 };
	struct boot_guard g;
	struct life l[5];
	size_t i;

	(void)state;
	memset(&g, 0, sizeof(g));
	/* Stopped VMs found at start-up, before any demand: unknown. */
	for (i = 0; i < nitems(l); i++)
		l[i] = (struct life){ T0 - 100 * S + i * S, 0, T0 - S };
	assert_int_equal(play(&g, &params, &ev, l, nitems(l)), 0);
	/* Good demand from T0: VMs created before still unknown. */
	ev.be_good_since_ms = T0;
	assert_int_equal(play(&g, &params, &ev, l, nitems(l)), 0);
	assert_int_equal(g.bg_streak, 0);
	/* VMs created after: judged, and these never took a job. */
	for (i = 0; i < nitems(l); i++)
		l[i] = (struct life){ T0 + i * S, 0, T0 + i * S + S };
	assert_int_equal(play(&g, &params, &ev, l, nitems(l)), 1);
}

static void
test_loop_ends(void **state)
{
	struct boot_evidence ev = { T0, 0 };
	struct life fail[BOOT_LOOP_STREAK];
	struct boot_guard g;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(fail); i++)
		fail[i] = (struct life){ T0 + i * 10 * S, 0,
			T0 + i * 10 * S + 5 * S };

	/* A VM stays up past the threshold and twice the failed lives. */
	memset(&g, 0, sizeof(g));
	assert_int_equal(play(&g, &params, &ev, fail, nitems(fail)), 1);
	assert_int_equal(boot_note_running(&g, &params, 59 * S), BOOT_EV_NONE);
	assert_int_equal(
	    boot_note_running(&g, &params, 60 * S), BOOT_EV_RECOVERED);
	assert_false(g.bg_loop);
	assert_true(boot_may_reclaim(&g, 0));

	/* Failed VMs that lived long: staying up must beat them twice. */
	memset(&g, 0, sizeof(g));
	for (i = 0; i < nitems(fail); i++)
		fail[i].stopped = fail[i].created + 50 * S;
	assert_int_equal(play(&g, &params, &ev, fail, nitems(fail)), 1);
	assert_int_equal(boot_note_running(&g, &params, 99 * S), BOOT_EV_NONE);
	assert_int_equal(
	    boot_note_running(&g, &params, 100 * S), BOOT_EV_RECOVERED);

	/* A job runs after the last failed boot. */
	memset(&g, 0, sizeof(g));
	assert_int_equal(play(&g, &params, &ev, fail, nitems(fail)), 1);
	ev.be_job_ms = g.bg_last_failed_ms - 1;
	assert_int_equal(boot_note_evidence(&g, &ev), BOOT_EV_NONE);
	ev.be_job_ms = g.bg_last_failed_ms;
	assert_int_equal(boot_note_evidence(&g, &ev), BOOT_EV_RECOVERED);

	/* A VM stops normally (its idle timeout). */
	memset(&g, 0, sizeof(g));
	ev.be_job_ms = 0;
	assert_int_equal(play(&g, &params, &ev, fail, nitems(fail)), 1);
	assert_int_equal(boot_note_stopped(&g, BOOT_IDLE, 31 * S, 0, T0),
	    BOOT_EV_RECOVERED);
	/* Not in a loop, running VMs change nothing. */
	assert_int_equal(
	    boot_note_running(&g, &params, 3600 * S), BOOT_EV_NONE);
}

static void
test_job_between_failures_resets_the_streak(void **state)
{
	struct boot_evidence ev = { T0, 0 };
	struct boot_guard g;
	const struct life l[] = {
		{ T0 + 1 * S, 0, T0 + 2 * S },
		{ T0 + 3 * S, 0, T0 + 4 * S },
		{ T0 + 5 * S, T0 + 6 * S, T0 + 30 * S }, /* ran a job */
		{ T0 + 31 * S, 0, T0 + 32 * S },
		{ T0 + 33 * S, 0, T0 + 34 * S },
	};

	(void)state;
	memset(&g, 0, sizeof(g));
	assert_int_equal(play(&g, &params, &ev, l, nitems(l)), 0);
	assert_int_equal(g.bg_streak, 2);
	/* A job seen after the last failure resets too. */
	ev.be_job_ms = T0 + 35 * S;
	assert_int_equal(boot_note_evidence(&g, &ev), BOOT_EV_NONE);
	assert_int_equal(g.bg_streak, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_judge_table),
		cmocka_unit_test(test_fast_boots_short_jobs_are_no_loop),
		cmocka_unit_test(test_wrong_token_is_a_loop_with_backoff),
		cmocka_unit_test(test_idle_timeouts_are_no_loop),
		cmocka_unit_test(test_restart_and_outage_judge_nothing),
		cmocka_unit_test(test_loop_ends),
		cmocka_unit_test(test_job_between_failures_resets_the_streak),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
