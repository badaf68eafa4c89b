/*
 * The scaling decision: the clamp formula, holds, and scenarios for every
 * control (headroom, maxSurge, scaleDownDelay, schedules across DST changes,
 * headroom: auto), each a sequence of observations with the replica count
 * expected after each.  Policies are written as configuration and read by
 * the real loader.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "conf.h"
#include "decision.h"
#include "util.h"

#define MON_2026_07_06 1783296000LL /* 00:00 UTC */
#define SUN_2026_03_29 1774742400LL /* Berlin springs forward at 01:00 UTC */
#define SUN_2026_10_25 1792886400LL /* and falls back at 01:00 UTC */
#define MON_2026_01_12 1768176000LL
#define H              3600
#define ANY            (-2) /* any schedule */

static void
test_desired_table(void **state)
{
	static const struct {
		uint32_t unclaimed, running, headroom, min, max, want;
	} cases[] = {
		/* in range: the sum */
		{ 2, 3, 0, 1, 10, 5 },
		{ 0, 4, 0, 3, 10, 4 },
		/* below min: min */
		{ 0, 0, 0, 3, 10, 3 },
		{ 1, 1, 0, 3, 10, 3 },
		/* above max: max */
		{ 8, 5, 0, 3, 10, 10 },
		{ 100, 0, 0, 0, 10, 10 },
		/* exactly at the bounds */
		{ 3, 0, 0, 3, 10, 3 },
		{ 6, 4, 0, 3, 10, 10 },
		/* min 0: an idle class scales to zero */
		{ 0, 0, 0, 0, 10, 0 },
		{ 0, 1, 0, 0, 10, 1 },
		/* min == max pins the count */
		{ 0, 0, 0, 4, 4, 4 },
		{ 50, 50, 0, 4, 4, 4 },
		/* headroom: only while there are tasks, within max */
		{ 0, 0, 2, 0, 10, 0 },
		{ 1, 0, 2, 0, 10, 3 },
		{ 0, 1, 2, 0, 10, 3 },
		{ 0, 0, 2, 3, 10, 3 },
		{ 1, 1, 2, 3, 10, 4 },
		{ 7, 1, 5, 0, 10, 10 },
		/* the sum must not wrap around 2^32 */
		{ UINT32_MAX, 1, 0, 0, 10, 10 },
		{ UINT32_MAX, UINT32_MAX, UINT32_MAX, 0, 10, 10 },
		{ UINT32_MAX, UINT32_MAX, 0, 0, UINT32_MAX, UINT32_MAX },
		{ UINT32_MAX - 1, 1, 0, 0, UINT32_MAX, UINT32_MAX },
		{ UINT32_MAX - 5, 2, 0, 0, UINT32_MAX, UINT32_MAX - 3 },
		{ 0x80000000u, 0x80000000u, 0, 3, 1000, 1000 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		uint32_t got =
		    decision_desired(cases[i].unclaimed, cases[i].running,
		        cases[i].headroom, cases[i].min, cases[i].max);
		if (got != cases[i].want)
			fail_msg("case %zu: desired(%u, %u, %u, %u, %u) = %u, "
			         "want %u",
			    i, cases[i].unclaimed, cases[i].running,
			    cases[i].headroom, cases[i].min, cases[i].max, got,
			    cases[i].want);
	}
}

static struct conf *
policy_conf(const char *scaling)
{
	char *yaml, err[CONF_ERR_MAX];
	struct conf *c;

	yaml = xasprintf("resourceClasses:\n  a/b:\n    token: t\n"
	                 "    scaling: %s\n",
	    scaling);
	if ((c = conf_parse(
	         "test.yaml", yaml, strlen(yaml), err, sizeof(err))) == NULL)
		fail_msg("%s: %s", scaling, err);
	free(yaml);
	return c;
}

static void
test_decide_holds(void **state)
{
	static const struct {
		const char *what;
		bool have, ok;
		uint64_t age_ms;
		uint32_t unclaimed, running;
		enum decision_action action;
		enum decision_reason reason;
		uint32_t replicas;
	} cases[] = {
		{ "no demand yet holds", false, false, 0, 0, 0, DECIDE_HOLD,
		    REASON_NO_DEMAND, 0 },
		{ "no demand holds even with counts present", false, true, 0,
		    7, 1, DECIDE_HOLD, REASON_NO_DEMAND, 0 },
		{ "failed observation holds (never a made-up zero)", true,
		    false, 10, 0, 0, DECIDE_HOLD, REASON_FAILED, 0 },
		{ "stale ok observation holds", true, true, 3001, 9, 0,
		    DECIDE_HOLD, REASON_STALE, 0 },
		{ "stale failed observation holds", true, false, 60000, 0, 0,
		    DECIDE_HOLD, REASON_STALE, 0 },
		{ "fresh ok observation scales to the sum", true, true, 5, 4,
		    2, DECIDE_SCALE, REASON_DEMAND, 6 },
		{ "fresh ok observation clamps to max", true, true, 5, 40, 2,
		    DECIDE_SCALE, REASON_DEMAND, 10 },
		{ "fresh ok zero clamps to min", true, true, 0, 0, 0,
		    DECIDE_SCALE, REASON_DEMAND, 3 },
		{ "age exactly at the limit is still fresh", true, true, 3000,
		    5, 0, DECIDE_SCALE, REASON_DEMAND, 5 },
		{ "one ms past the limit is stale", true, true, 3001, 5, 0,
		    DECIDE_HOLD, REASON_STALE, 0 },
		{ "huge counts clamp without wrapping", true, true, 0,
		    UINT32_MAX, UINT32_MAX, DECIDE_SCALE, REASON_DEMAND, 10 },
	};
	struct conf *c = policy_conf("{}");
	struct decision_input in;
	struct scale_state st;
	struct decision d;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		scale_state_init(&st);
		memset(&in, 0, sizeof(in));
		in.di_have_demand = cases[i].have;
		in.di_demand_ok = cases[i].ok;
		in.di_demand_age_ms = cases[i].age_ms;
		in.di_stale_after_ms = 3000;
		in.di_unclaimed = cases[i].unclaimed;
		in.di_running = cases[i].running;
		in.di_policy = &c->c_classes[0].cc_scaling;
		in.di_now_ms = 1000000;
		in.di_wall_ms = MON_2026_07_06 * 1000;
		memset(&d, 0xa5, sizeof(d));
		decide(&in, &st, &d);
		if (d.d_action != cases[i].action ||
		    d.d_reason != cases[i].reason ||
		    (d.d_action == DECIDE_SCALE &&
		        d.d_replicas != cases[i].replicas))
			fail_msg("%s: got action %d reason %d (%s) replicas "
			         "%u",
			    cases[i].what, d.d_action, d.d_reason,
			    decision_reason_name(d.d_reason), d.d_replicas);
	}
	conf_free(c);
}

/* With no pool to look at (--dry-run) maxSurge, which counts its ready
 * VMs, is not applied: the target is what demand asks for. */
static void
test_surge_without_pool(void **state)
{
	struct conf *c = policy_conf("{minReplicas: 0, maxSurge: 4}");
	struct decision_input in;
	struct scale_state st;
	struct decision d;

	(void)state;
	scale_state_init(&st);
	memset(&in, 0, sizeof(in));
	in.di_have_demand = in.di_demand_ok = true;
	in.di_stale_after_ms = 3000;
	in.di_unclaimed = 9;
	in.di_policy = &c->c_classes[0].cc_scaling;
	in.di_wall_ms = MON_2026_07_06 * 1000;
	decide(&in, &st, &d);
	assert_int_equal(d.d_replicas, 4);
	assert_true(d.d_surge_capped);
	in.di_no_pool = true;
	decide(&in, &st, &d);
	assert_int_equal(d.d_replicas, 9);
	assert_false(d.d_surge_capped);
	conf_free(c);
}

/* Every reason has its own readable name (they end up in logs and
 * /ready). */
static void
test_reason_names(void **state)
{
	const enum decision_reason all[] = { REASON_DEMAND, REASON_NO_DEMAND,
		REASON_FAILED, REASON_STALE };
	size_t i, j;

	(void)state;
	for (i = 0; i < nitems(all); i++) {
		const char *n = decision_reason_name(all[i]);
		assert_non_null(n);
		assert_string_not_equal(n, "unknown");
		for (j = 0; j < i; j++)
			assert_string_not_equal(
			    n, decision_reason_name(all[j]));
	}
	assert_string_equal(
	    decision_reason_name((enum decision_reason)99), "unknown");
}

struct step {
	int64_t t;          /* seconds after the scenario's start */
	uint32_t unclaimed; /* a new successful observation */
	uint32_t running;
	uint32_t ready;    /* the pool as listed */
	uint32_t replicas; /* its spec.replicas (0: not listed yet) */
	uint32_t boot_s;   /* a VM boot time measured before this step */
	uint32_t want;
	int want_schedule; /* index, -1 none, ANY */
};

struct scenario {
	const char *what;
	const char *scaling; /* the class's scaling block, flow YAML */
	int64_t wall0;       /* wall clock at t = 0 */
	struct step steps[12];
};

/* clang-format off */
static const struct scenario scenarios[] = {
	{ "the 0.1.0 formula by default", "{}", MON_2026_07_06, {
	    { 0, 0, 0, 0, 0, 0, 3, -1 },
	    { 1, 4, 2, 3, 3, 0, 6, -1 },
	    { 2, 40, 2, 6, 6, 0, 10, -1 },
	    { 3, 0, 0, 10, 10, 0, 3, -1 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "headroom only while there are tasks, counted toward max",
	    "{minReplicas: 0, maxReplicas: 6, headroom: 2}", MON_2026_07_06, {
	    { 0, 0, 0, 0, 0, 0, 0, -1 },
	    { 1, 1, 0, 0, 0, 0, 3, -1 },
	    { 2, 0, 1, 1, 3, 0, 3, -1 },
	    { 3, 3, 2, 3, 3, 0, 6, -1 },
	    { 4, 0, 0, 3, 6, 0, 0, -1 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "maxSurge ramps in waves above the VMs already ready",
	    "{minReplicas: 0, maxReplicas: 50, maxSurge: 4}",
	    MON_2026_07_06, {
	    { 0, 20, 0, 0, 0, 0, 4, -1 },   /* pool not listed yet */
	    { 1, 20, 0, 0, 4, 0, 4, -1 },   /* 4 booting: wait */
	    { 2, 20, 0, 2, 4, 0, 6, -1 },
	    { 3, 17, 3, 4, 6, 0, 8, -1 },
	    { 4, 10, 10, 10, 8, 0, 14, -1 },
	    /* the cap never lowers what the pool already asks for */
	    { 5, 20, 0, 2, 14, 0, 14, -1 },
	    /* and does not slow a scale-down */
	    { 6, 1, 0, 14, 14, 0, 1, -1 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "scaleDownDelay holds each level for the delay after it was last "
	  "wanted", "{minReplicas: 1, scaleDownDelay: 5m}", MON_2026_07_06, {
	    { 0, 8, 0, 0, 0, 0, 8, -1 },
	    { 60, 5, 0, 8, 8, 0, 8, -1 },
	    { 120, 2, 0, 8, 8, 0, 8, -1 },
	    { 299, 0, 0, 8, 8, 0, 8, -1 },
	    { 300, 0, 0, 8, 8, 0, 5, -1 },   /* 8 was last wanted at 0 */
	    { 360, 0, 0, 5, 5, 0, 2, -1 },
	    { 420, 0, 0, 2, 2, 0, 1, -1 },
	    /* a rise is immediate and starts a new hold */
	    { 500, 6, 0, 1, 1, 0, 6, -1 },
	    { 799, 0, 0, 6, 6, 0, 6, -1 },
	    { 800, 0, 0, 6, 6, 0, 1, -1 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "working hours: a higher floor and ceiling on weekdays",
	    "{minReplicas: 3, maxReplicas: 10, schedules: [{name: "
	    "working-hours, start: '0 8 * * MON-FRI', end: '0 18 * * "
	    "MON-FRI', timezone: UTC, minReplicas: 20, maxReplicas: 50, "
	    "headroom: 5}]}",
	    MON_2026_07_06 + 7 * H + 59 * 60, {
	    { 0, 0, 0, 3, 3, 0, 3, -1 },          /* Mon 07:59 */
	    { 60, 0, 0, 3, 3, 0, 20, 0 },         /* 08:00: start inclusive */
	    { 120, 40, 0, 20, 20, 0, 45, 0 },     /* headroom 5 */
	    { 10 * H + 60, 0, 0, 20, 20, 0, 3, -1 }, /* 18:00: end exclusive */
	    { 10 * H + 59, 0, 0, 3, 3, 0, 20, 0 },   /* clock went back */
	    { 4 * 24 * H + 60, 0, 0, 3, 3, 0, 20, 0 },     /* Fri 08:00 */
	    { 5 * 24 * H + 60, 0, 0, 20, 20, 0, 3, -1 },   /* Sat 08:00 */
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "a window over the weekend, spanning midnight",
	    "{minReplicas: 0, schedules: [{start: '0 18 * * FRI', end: "
	    "'0 8 * * MON', maxReplicas: 2}]}",
	    MON_2026_07_06 + 4 * 24 * H, {
	    { 17 * H + 59 * 60, 9, 0, 0, 0, 0, 9, -1 },  /* Fri 17:59 */
	    { 18 * H, 9, 0, 0, 0, 0, 2, 0 },             /* Fri 18:00 */
	    { 24 * H + 12 * H, 9, 0, 0, 0, 0, 2, 0 },    /* Sat noon */
	    { 3 * 24 * H + 7 * H, 9, 0, 0, 0, 0, 2, 0 }, /* Mon 07:00 */
	    { 3 * 24 * H + 8 * H, 9, 0, 0, 0, 0, 9, -1 },/* Mon 08:00 */
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "the first listed active schedule wins; what it omits is the "
	  "baseline's, not the next schedule's",
	    "{minReplicas: 1, maxReplicas: 10, headroom: 0, schedules: ["
	    "{name: a, start: '0 9 * * *', end: '0 11 * * *', minReplicas: "
	    "4}, {name: b, start: '0 8 * * *', end: '0 12 * * *', "
	    "minReplicas: 6, maxReplicas: 30, headroom: 3}]}",
	    MON_2026_07_06, {
	    { 7 * H, 0, 0, 0, 0, 0, 1, -1 },
	    { 8 * H, 0, 0, 0, 0, 0, 6, 1 },
	    { 8 * H + 1, 2, 0, 0, 0, 0, 6, 1 },  /* 2 + headroom 3 < 6 */
	    { 8 * H + 2, 20, 0, 0, 0, 0, 23, 1 },
	    { 9 * H, 20, 0, 0, 0, 0, 10, 0 },    /* a: max and headroom */
	    { 9 * H + 1, 0, 0, 0, 0, 0, 4, 0 },  /* are the baseline's */
	    { 11 * H, 0, 0, 0, 0, 0, 6, 1 },
	    { 12 * H, 0, 0, 0, 0, 0, 1, -1 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "Berlin working hours follow the clocks across spring forward",
	    "{minReplicas: 0, schedules: [{start: '0 8 * * *', end: "
	    "'0 18 * * *', timezone: Europe/Berlin, minReplicas: 5}]}",
	    SUN_2026_03_29 - 24 * H, {
	    { 6 * H + 59 * 60, 0, 0, 0, 0, 0, 0, -1 }, /* Sat 07:59 CET */
	    { 7 * H, 0, 0, 0, 0, 0, 5, 0 },            /* 08:00 CET */
	    { 16 * H + 59 * 60, 0, 0, 0, 0, 0, 5, 0 },
	    { 17 * H, 0, 0, 0, 0, 0, 0, -1 },          /* 18:00 CET */
	    { 24 * H + 5 * H + 59 * 60, 0, 0, 0, 0, 0, 0, -1 },
	    { 24 * H + 6 * H, 0, 0, 0, 0, 0, 5, 0 },   /* 08:00 CEST */
	    { 24 * H + 16 * H, 0, 0, 0, 0, 0, 0, -1 }, /* 18:00 CEST */
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "a window starting at a skipped local time does not open that "
	  "day; a repeated hour lengthens it",
	    "{minReplicas: 0, schedules: [{start: '30 2 * * *', end: "
	    "'0 4 * * *', timezone: Europe/Berlin, minReplicas: 7}]}",
	    SUN_2026_03_29 - 24 * H, {
	    { 1 * H + 30 * 60, 0, 0, 0, 0, 0, 7, 0 },   /* Sat 02:30 CET */
	    { 3 * H, 0, 0, 0, 0, 0, 0, -1 },            /* Sat 04:00 CET */
	    /* Sunday: 02:30 does not exist, 03:15 CEST is 01:15 UTC */
	    { 24 * H + 1 * H + 15 * 60, 0, 0, 0, 0, 0, 0, -1 },
	    { 24 * H + 1 * H + 45 * 60, 0, 0, 0, 0, 0, 0, -1 },
	    /* Monday 02:30 CEST */
	    { 48 * H + 30 * 60, 0, 0, 0, 0, 0, 7, 0 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "fall back: 02:30 happens twice, the window lasts until 04:00 "
	  "CET",
	    "{minReplicas: 0, schedules: [{start: '30 2 * * *', end: "
	    "'0 4 * * *', timezone: Europe/Berlin, minReplicas: 7}]}",
	    SUN_2026_10_25, {
	    { 15 * 60, 0, 0, 0, 0, 0, 0, -1 },     /* 02:15 CEST */
	    { 30 * 60, 0, 0, 0, 0, 0, 7, 0 },      /* 02:30 CEST */
	    { 1 * H + 15 * 60, 0, 0, 0, 0, 0, 7, 0 }, /* 02:15 CET */
	    { 1 * H + 45 * 60, 0, 0, 0, 0, 0, 7, 0 }, /* 02:45 CET */
	    { 2 * H + 59 * 60, 0, 0, 0, 0, 0, 7, 0 }, /* 03:59 CET */
	    { 3 * H, 0, 0, 0, 0, 0, 0, -1 },       /* 04:00 CET */
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "headroom: auto keeps arrivals x boot time spare while there are "
	  "tasks",
	    "{minReplicas: 0, maxReplicas: 40, headroom: auto}",
	    MON_2026_01_12, {
	    { 0, 0, 0, 0, 0, 0, 0, -1 },
	    /* no boot measured yet: no spare VMs */
	    { 10, 4, 0, 0, 0, 0, 4, -1 },
	    /* 90 s boots; 4 arrivals over a 4-boot (360 s) window */
	    { 11, 4, 0, 0, 4, 90, 4 + 1, -1 },
	    /* 24 more: ceil(28 x e^(-1/360) / 4) = 7 spare */
	    { 12, 28, 0, 0, 5, 0, 28 + 7, -1 },
	    /* claims are not arrivals */
	    { 13, 0, 28, 28, 35, 0, 28 + 7, -1 },
	    /* no tasks: no headroom */
	    { 100, 0, 0, 28, 35, 0, 0, -1 },
	    /* an hour later the old rate has decayed away; one new arrival
	     * is a quarter of a boot's worth, rounded up */
	    { 3700, 1, 0, 0, 0, 0, 2, -1 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
	{ "a schedule can set headroom: auto and a delay",
	    "{minReplicas: 0, maxReplicas: 40, schedules: [{start: '0 0 * * *', end: "
	    "'0 23 * * *', headroom: auto, scaleDownDelay: 10m}]}",
	    MON_2026_07_06 + H, {
	    { 0, 0, 0, 0, 0, 60, 0, 0 },
	    { 1, 10, 0, 0, 0, 0, 10 + 3, 0 }, /* 10 x 60/240 = 2.5 -> 3 */
	    { 2, 0, 0, 0, 13, 0, 13, 0 },     /* held */
	    { 602, 0, 0, 0, 13, 0, 0, 0 },
	    { -1, 0, 0, 0, 0, 0, 0, 0 } } },
};
/* clang-format on */

static void
test_scenarios(void **state)
{
	const struct scenario *sc;
	const struct step *s;
	struct decision_input in;
	struct scale_state st;
	struct scale_boot boot;
	struct decision d;
	struct conf *c;
	size_t i, k;

	(void)state;
	for (i = 0; i < nitems(scenarios); i++) {
		sc = &scenarios[i];
		c = policy_conf(sc->scaling);
		scale_state_init(&st);
		memset(&boot, 0, sizeof(boot));
		for (k = 0; k < nitems(sc->steps) && sc->steps[k].t >= 0;
		     k++) {
			s = &sc->steps[k];
			if (s->boot_s > 0)
				scale_note_boot(&boot, s->boot_s * 1000ULL);
			memset(&in, 0, sizeof(in));
			in.di_have_demand = in.di_demand_ok = true;
			in.di_stale_after_ms = 3000;
			in.di_demand_at_ms = (uint64_t)s->t * 1000 + 1;
			in.di_unclaimed = s->unclaimed;
			in.di_running = s->running;
			in.di_have_pool = s->replicas > 0;
			in.di_pool_replicas = s->replicas;
			in.di_pool_ready = s->ready;
			in.di_boot = &boot;
			in.di_policy = &c->c_classes[0].cc_scaling;
			in.di_now_ms = (uint64_t)s->t * 1000 + 1;
			in.di_wall_ms = (sc->wall0 + s->t) * 1000;
			decide(&in, &st, &d);
			if (d.d_action != DECIDE_SCALE ||
			    d.d_replicas != s->want ||
			    (s->want_schedule != ANY &&
			        d.d_schedule != s->want_schedule))
				fail_msg("%s: step %zu (t=%llds): replicas %u "
				         "schedule %d, want %u schedule %d",
				    sc->what, k, (long long)s->t, d.d_replicas,
				    d.d_schedule, s->want, s->want_schedule);
			/* Deciding again on the same observation (the
			 * actuator's tick) changes nothing. */
			decide(&in, &st, &d);
			if (d.d_replicas != s->want)
				fail_msg("%s: step %zu repeated: %u", sc->what,
				    k, d.d_replicas);
		}
		conf_free(c);
	}
}

/* What the poller logs as desired_vms: the schedule's level, with
 * headroom: auto counted as 0. */
static void
test_level(void **state)
{
	struct conf *c = policy_conf(
	    "{minReplicas: 1, headroom: 2, schedules: [{start: '0 8 * * *', "
	    "end: '0 9 * * *', minReplicas: 4, headroom: auto}]}");
	const struct scale_policy *p = &c->c_classes[0].cc_scaling;
	int64_t eight = (MON_2026_07_06 + 8 * H) * 1000;

	(void)state;
	assert_int_equal(decision_level(p, 0, 0, eight - 1), 1);
	assert_int_equal(decision_level(p, 1, 0, eight - 1), 3);
	assert_int_equal(decision_level(p, 0, 0, eight), 4);
	assert_int_equal(decision_level(p, 3, 2, eight), 5);
	conf_free(c);
}

static void
test_boot_estimate(void **state)
{
	struct scale_boot st;

	(void)state;
	memset(&st, 0, sizeof(st));
	assert_int_equal(scale_boot_ms(&st), 0);
	assert_false(scale_boot_known(&st));
	assert_false(scale_boot_known(NULL));
	assert_int_equal(scale_boot_ms(NULL), 0);
	scale_note_boot(&st, SCALE_BOOT_SAMPLE_MAX + 1);
	assert_false(scale_boot_known(&st));
	/* Faster than the timestamps' resolution: a sample of 0. */
	scale_note_boot(&st, 0);
	assert_true(scale_boot_known(&st));
	assert_int_equal(scale_boot_ms(&st), 0);
	memset(&st, 0, sizeof(st));
	scale_note_boot(&st, 100000);
	assert_int_equal(scale_boot_ms(&st), 100000);
	scale_note_boot(&st, 60000);
	assert_int_equal(scale_boot_ms(&st), 90000); /* a quarter of -40 s */
	/* A run of new values converges. */
	for (int i = 0; i < 60; i++)
		scale_note_boot(&st, 30000);
	assert_true(llabs((long long)scale_boot_ms(&st) - 30000) <= 1);
}

static void
test_rate(void **state)
{
	struct scale_state st;
	struct scale_boot b;

	(void)state;
	scale_state_init(&st);
	memset(&b, 0, sizeof(b));
	/* Without a measured boot: no auto headroom. */
	scale_note_demand(&st, NULL, 1, 0, 0, 0);
	scale_note_demand(&st, NULL, 2, 6, 0, 0);
	assert_int_equal(scale_auto_headroom(&st, NULL, 0), 0);
	scale_state_init(&st);
	scale_note_boot(&b, 60000); /* window: 4 x 60 s */
	scale_note_demand(&st, &b, 1, 0, 0, 0);
	scale_note_demand(&st, &b, 2, 6, 0, 0);
	scale_note_demand(&st, &b, 2, 60, 0, 0); /* the same observation */
	assert_true(fabs(scale_rate_per_min(&st, &b, 0) - 1.5) < 1e-9);
	/* 6 queued become 2 running: 0 arrivals; a completion and an
	 * arrival: one more. */
	scale_note_demand(&st, &b, 3, 4, 2, 0);
	scale_note_demand(&st, &b, 4, 5, 1, 0);
	assert_true(fabs(scale_rate_per_min(&st, &b, 0) - 7.0 / 4) < 1e-9);
	/* Decays with the window. */
	assert_true(fabs(scale_rate_per_min(&st, &b, 240000) -
	                7.0 / 4 * exp(-1)) < 1e-9);
	assert_int_equal(scale_auto_headroom(&st, &b, 0), 2); /* 1.75 */
	assert_int_equal(scale_auto_headroom(&st, &b, 36000000), 0);
}

/* The hold keeps at most SCALE_HOLD_STEPS levels and, out of room, keeps
 * the lowest one longer rather than shedding VMs early. */
static void
test_hold_steps(void **state)
{
	struct scale_state st;
	uint32_t v;

	(void)state;
	scale_state_init(&st);
	for (v = 40; v > 0; v--)
		scale_hold(&st, v, 1000, 40 - v);
	assert_int_equal(st.ss_nhold, SCALE_HOLD_STEPS);
	assert_int_equal(scale_hold(&st, 1, 1000, 40), 40);
	/* Every level above the 16th kept its own time... */
	assert_int_equal(scale_hold(&st, 1, 1000, 1000), 39);
	/* ...the last kept the newest, so nothing lower than 25 appears
	 * until a whole delay after the last sample. */
	assert_int_equal(scale_hold(&st, 1, 1000, 1015), 25);
	assert_int_equal(scale_hold(&st, 1, 1000, 1039), 25);
	assert_int_equal(scale_hold(&st, 1, 1000, 2040), 1);
	/* No delay: no memory. */
	assert_int_equal(scale_hold(&st, 9, 0, 3000), 9);
	assert_int_equal(scale_hold(&st, 2, 0, 3001), 2);
	assert_int_equal(st.ss_nhold, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_desired_table),
		cmocka_unit_test(test_decide_holds),
		cmocka_unit_test(test_surge_without_pool),
		cmocka_unit_test(test_reason_names),
		cmocka_unit_test(test_scenarios),
		cmocka_unit_test(test_level),
		cmocka_unit_test(test_boot_estimate),
		cmocka_unit_test(test_rate),
		cmocka_unit_test(test_hold_steps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
