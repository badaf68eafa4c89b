#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "backoff.h"
#include "util.h"

#define DRAWS 20000

/* The nominal steps double from base and stop at the cap. */
static void
test_nominal_sequence(void **state)
{
	static const uint64_t want[] = { 100, 200, 400, 800, 1600, 3200, 5000,
		5000, 5000, 5000 };
	struct backoff b;
	size_t i;

	(void)state;
	backoff_init(&b, 100, 5000);
	for (i = 0; i < nitems(want); i++) {
		assert_int_equal(backoff_peek(&b), want[i]);
		/* peek neither jitters nor advances */
		assert_int_equal(backoff_peek(&b), want[i]);
		(void)backoff_next(&b);
	}
}

/* A cap that is not a power-of-two multiple of base is still reached
 * exactly, never overshot. */
static void
test_cap_not_multiple_of_base(void **state)
{
	static const uint64_t want[] = { 3, 6, 10, 10 };
	struct backoff b;
	size_t i;

	(void)state;
	backoff_init(&b, 3, 10);
	for (i = 0; i < nitems(want); i++) {
		assert_int_equal(backoff_peek(&b), want[i]);
		(void)backoff_next(&b);
	}
}

/* Many failures in a row stay at the cap (no shift overflow to 0). */
static void
test_long_failure_run_stays_capped(void **state)
{
	struct backoff b;
	uint64_t d;
	int i;

	(void)state;
	rng_seed(7);
	backoff_init(&b, 1000, 30000);
	for (i = 0; i < 1000; i++) {
		d = backoff_next(&b);
		assert_true(d <= 30000);
	}
	assert_int_equal(backoff_peek(&b), 30000);
	d = backoff_next(&b);
	assert_in_range(d, 15000, 30000);
}

/* Every delay lies in [step/2, step], and the draws spread over the whole
 * interval rather than sticking to one end. */
static void
test_jitter_bounds_and_spread(void **state)
{
	struct backoff b;
	uint64_t step, d, lo, hi, sum;
	int attempt, i;

	(void)state;
	rng_seed(12345);
	for (attempt = 0; attempt < 8; attempt++) {
		lo = UINT64_MAX;
		hi = 0;
		sum = 0;
		for (i = 0; i < DRAWS; i++) {
			backoff_init(&b, 1000, 60000);
			b.b_attempt = (unsigned int)attempt;
			step = backoff_peek(&b);
			d = backoff_next(&b);
			assert_in_range(d, step / 2, step);
			lo = d < lo ? d : lo;
			hi = d > hi ? d : hi;
			sum += d;
		}
		/* 20000 uniform draws: the extremes come within 1% of the
		 * bounds and the mean within 2% of 3/4 step. */
		assert_true(lo <= step / 2 + step / 100);
		assert_true(hi >= step - step / 100);
		assert_in_range(sum / DRAWS, step * 3 / 4 - step / 50,
		    step * 3 / 4 + step / 50);
	}
}

/* The same seed gives the same delays (tests and reproductions rely on
 * it); a different seed gives different ones. */
static void
test_seed_determinism(void **state)
{
	struct backoff b;
	uint64_t a[16], c[16];
	int i, same = 0;

	(void)state;
	rng_seed(99);
	backoff_init(&b, 500, 1 << 20);
	for (i = 0; i < 16; i++)
		a[i] = backoff_next(&b);
	rng_seed(99);
	backoff_init(&b, 500, 1 << 20);
	for (i = 0; i < 16; i++)
		c[i] = backoff_next(&b);
	assert_memory_equal(a, c, sizeof(a));
	rng_seed(100);
	backoff_init(&b, 500, 1 << 20);
	for (i = 0; i < 16; i++)
		same += backoff_next(&b) == a[i];
	assert_true(same < 16);
}

/* After a reset the next delay is a first-attempt delay again. */
static void
test_reset(void **state)
{
	struct backoff b;
	uint64_t d;
	int i;

	(void)state;
	rng_seed(3);
	backoff_init(&b, 250, 8000);
	for (i = 0; i < 10; i++)
		(void)backoff_next(&b);
	assert_int_equal(backoff_peek(&b), 8000);
	backoff_reset(&b);
	assert_int_equal(backoff_peek(&b), 250);
	d = backoff_next(&b);
	assert_in_range(d, 125, 250);
	assert_int_equal(backoff_peek(&b), 500);
}

/* A cap below base is raised to base: every step is base. */
static void
test_cap_below_base(void **state)
{
	struct backoff b;
	int i;

	(void)state;
	rng_seed(5);
	backoff_init(&b, 2000, 500);
	for (i = 0; i < 5; i++) {
		assert_int_equal(backoff_peek(&b), 2000);
		assert_in_range(backoff_next(&b), 1000, 2000);
	}
	backoff_init(&b, 700, 700);
	assert_int_equal(backoff_peek(&b), 700);
	(void)backoff_next(&b);
	assert_int_equal(backoff_peek(&b), 700);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nominal_sequence),
		cmocka_unit_test(test_cap_not_multiple_of_base),
		cmocka_unit_test(test_long_failure_run_stays_capped),
		cmocka_unit_test(test_jitter_bounds_and_spread),
		cmocka_unit_test(test_seed_determinism),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_cap_below_base),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
