#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "decision.h"
#include "util.h"

static void
test_desired_table(void **state)
{
	static const struct {
		uint32_t unclaimed, running, min, max, want;
	} cases[] = {
		/* in range: the sum */
		{ 2, 3, 1, 10, 5 },
		{ 0, 4, 3, 10, 4 },
		/* below min: min */
		{ 0, 0, 3, 10, 3 },
		{ 1, 1, 3, 10, 3 },
		/* above max: max */
		{ 8, 5, 3, 10, 10 },
		{ 100, 0, 0, 10, 10 },
		/* exactly at the bounds */
		{ 3, 0, 3, 10, 3 },
		{ 6, 4, 3, 10, 10 },
		/* min 0: an idle class scales to zero */
		{ 0, 0, 0, 10, 0 },
		{ 0, 1, 0, 10, 1 },
		/* min == max pins the count */
		{ 0, 0, 4, 4, 4 },
		{ 50, 50, 4, 4, 4 },
		/* the sum must not wrap around 2^32 */
		{ UINT32_MAX, 1, 0, 10, 10 },
		{ UINT32_MAX, UINT32_MAX, 0, 10, 10 },
		{ UINT32_MAX, UINT32_MAX, 0, UINT32_MAX, UINT32_MAX },
		{ UINT32_MAX - 1, 1, 0, UINT32_MAX, UINT32_MAX },
		{ UINT32_MAX - 5, 2, 0, UINT32_MAX, UINT32_MAX - 3 },
		{ 0x80000000u, 0x80000000u, 3, 1000, 1000 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		uint32_t got = decision_desired(cases[i].unclaimed,
		    cases[i].running, cases[i].min, cases[i].max);
		if (got != cases[i].want)
			fail_msg("case %zu: desired(%u, %u, %u, %u) = %u, "
			         "want %u",
			    i, cases[i].unclaimed, cases[i].running,
			    cases[i].min, cases[i].max, got, cases[i].want);
	}
}

static void
test_decide_table(void **state)
{
	static const struct {
		const char *what;
		struct decision_input in;
		enum decision_action action;
		enum decision_reason reason;
		uint32_t replicas;
	} cases[] = {
		{ "no demand yet holds",
		    { false, false, 0, 3000, 0, 0, 3, 10 }, DECIDE_HOLD,
		    REASON_NO_DEMAND, 0 },
		{ "no demand holds even with counts present",
		    { false, true, 0, 3000, 7, 1, 3, 10 }, DECIDE_HOLD,
		    REASON_NO_DEMAND, 0 },
		{ "failed observation holds (never a made-up zero)",
		    { true, false, 10, 3000, 0, 0, 0, 10 }, DECIDE_HOLD,
		    REASON_FAILED, 0 },
		{ "stale ok observation holds",
		    { true, true, 3001, 3000, 9, 0, 3, 10 }, DECIDE_HOLD,
		    REASON_STALE, 0 },
		{ "stale failed observation holds",
		    { true, false, 60000, 3000, 0, 0, 3, 10 }, DECIDE_HOLD,
		    REASON_STALE, 0 },
		{ "fresh ok observation scales to the sum",
		    { true, true, 5, 3000, 4, 2, 3, 10 }, DECIDE_SCALE,
		    REASON_DEMAND, 6 },
		{ "fresh ok observation clamps to max",
		    { true, true, 5, 3000, 40, 2, 3, 10 }, DECIDE_SCALE,
		    REASON_DEMAND, 10 },
		{ "fresh ok zero clamps to min",
		    { true, true, 0, 3000, 0, 0, 3, 10 }, DECIDE_SCALE,
		    REASON_DEMAND, 3 },
		{ "fresh ok zero with min 0 scales to zero",
		    { true, true, 0, 3000, 0, 0, 0, 10 }, DECIDE_SCALE,
		    REASON_DEMAND, 0 },
		{ "age exactly at the limit is still fresh",
		    { true, true, 3000, 3000, 5, 0, 0, 10 }, DECIDE_SCALE,
		    REASON_DEMAND, 5 },
		{ "one ms past the limit is stale",
		    { true, true, 3001, 3000, 5, 0, 0, 10 }, DECIDE_HOLD,
		    REASON_STALE, 0 },
		{ "huge counts clamp without wrapping",
		    { true, true, 0, 3000, UINT32_MAX, UINT32_MAX, 3, 10 },
		    DECIDE_SCALE, REASON_DEMAND, 10 },
	};
	struct decision d;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		memset(&d, 0xa5, sizeof(d));
		decide(&cases[i].in, &d);
		if (d.d_action != cases[i].action ||
		    d.d_reason != cases[i].reason ||
		    (d.d_action == DECIDE_SCALE &&
		        d.d_replicas != cases[i].replicas))
			fail_msg("%s: got action %d reason %d (%s) replicas "
			         "%u",
			    cases[i].what, d.d_action, d.d_reason,
			    decision_reason_name(d.d_reason), d.d_replicas);
	}
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_desired_table),
		cmocka_unit_test(test_decide_table),
		cmocka_unit_test(test_reason_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
