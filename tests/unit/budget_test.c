#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "poller.h"
#include "util.h"

#define T0 1000000 /* an arbitrary monotonic start */

/* Feeds "Name: value" lines to a fresh rl_headers as libcurl would. */
static void
headers(struct rl_headers *h, int64_t wall_s, const char *const *lines)
{
	const char *colon, *v;

	memset(h, 0, sizeof(*h));
	budget_header(h, "HTTP/1.1 200 OK", 0, NULL, 0, wall_s);
	for (; *lines != NULL; lines++) {
		colon = strchr(*lines, ':');
		assert_non_null(colon);
		for (v = colon + 1; *v == ' '; v++)
			;
		budget_header(
		    h, *lines, (size_t)(colon - *lines), v, strlen(v), wall_s);
	}
}

#define HEADERS(h, ...)                                                       \
	headers((h), 1700000000, (const char *const[]){ __VA_ARGS__, NULL })

/* Requests leave evenly at the rate: after the first BUDGET_BURST_MS worth,
 * one poll (two requests) every 2/rate seconds, never a burst. */
static void
test_paces_evenly(void **state)
{
	struct budget b;
	uint64_t t, last = 0, gap, takes = 0, in_window = 0, worst = 0;
	uint64_t window_start = T0, first = 0;

	(void)state;
	budget_init(&b, 50, T0);
	for (t = T0; t < T0 + 10000; t++) {
		if (t - window_start >= 100) {
			if (window_start == T0)
				first = in_window;
			else if (in_window > worst)
				worst = in_window;
			in_window = 0;
			window_start = t;
		}
		while (budget_take(&b, 2, t)) {
			takes++;
			in_window += 2;
			if (takes > 4) {
				gap = t - last;
				if (gap < 39 || gap > 41)
					fail_msg("take %llu after %llu ms",
					    (unsigned long long)takes,
					    (unsigned long long)gap);
			}
			last = t;
		}
	}
	/* 50/s for 10 s = 500 requests = 250 polls, plus the burst. */
	assert_in_range(takes, 250, 254);
	/* 100 ms at 50/s is 5 requests (3 polls at most); the burst allows
	 * 100 ms worth more, once. */
	assert_true(worst <= 6);
	assert_true(first <= 10);
}

/* The wait for the next request is exact: budget_ready_at says when. */
static void
test_ready_at(void **state)
{
	struct budget b;
	uint64_t at;

	(void)state;
	budget_init(&b, 10, T0);
	while (budget_take(&b, 2, T0))
		;
	at = budget_ready_at(&b, T0);
	assert_true(at > T0);
	assert_false(budget_take(&b, 2, at - 1));
	assert_true(budget_take(&b, 2, at));
}

/* A 429 halves the rate once per round trip: answers to requests sent
 * before the halving do not halve it again. */
static void
test_aimd_halves_once_per_round(void **state)
{
	struct budget b;

	(void)state;
	budget_init(&b, 40, T0);
	assert_int_equal(budget_answer(&b, 200, T0, NULL, T0 + 5), 0);
	assert_int_equal(
	    budget_answer(&b, 429, T0, NULL, T0 + 10), BUDGET_EV_DECREASED);
	assert_true(budget_rate(&b, T0 + 10) == 20);
	/* Sent at T0, answered after the halving: same congestion. */
	assert_int_equal(budget_answer(&b, 429, T0 + 1, NULL, T0 + 12), 0);
	assert_true(budget_rate(&b, T0 + 12) == 20);
	/* Sent after the halving and still 429: halve again. */
	assert_int_equal(budget_answer(&b, 429, T0 + 11, NULL, T0 + 30),
	    BUDGET_EV_DECREASED);
	assert_true(budget_rate(&b, T0 + 30) == 10);
	assert_int_equal(b.bg_decreases, 2);
}

static void
test_aimd_floor(void **state)
{
	struct budget b;
	uint64_t t;

	(void)state;
	budget_init(&b, 40, T0);
	for (t = T0; t < T0 + 100; t += 10)
		budget_answer(&b, 429, t, NULL, t);
	assert_true(budget_rate(&b, t) == BUDGET_FLOOR_RPS);
	/* A maximum below the floor is the floor. */
	budget_init(&b, 0.5, T0);
	budget_answer(&b, 429, T0, NULL, T0);
	assert_true(budget_rate(&b, T0) == 0.5);
}

/* Recoveries grow it back by max/BUDGET_GROW_STEPS a second, starting a
 * second after the last halving; budget_tick says when it is full. */
static void
test_aimd_grows_back(void **state)
{
	struct budget b;
	uint64_t t;
	int full = 0;

	(void)state;
	budget_init(&b, 40, T0);
	budget_answer(&b, 429, T0, NULL, T0);
	assert_false(budget_tick(&b, T0 + 999));
	assert_true(budget_rate(&b, T0 + 999) == 20);
	assert_false(budget_tick(&b, T0 + 1000));
	assert_true(fabs(budget_rate(&b, T0 + 1000) - 22) < 1e-9);
	for (t = T0 + 1001; t <= T0 + 20000; t += 100)
		if (budget_tick(&b, t)) {
			full++;
			/* half to full: 10 steps of 2/s */
			assert_in_range(t, T0 + 10000, T0 + 10100);
		}
	assert_int_equal(full, 1);
	assert_true(budget_rate(&b, t) == 40);
	/* A tick after a long quiet spell does not overshoot. */
	budget_answer(&b, 429, t, NULL, t);
	budget_tick(&b, t + 3600000);
	assert_true(budget_rate(&b, t + 3600000) == 40);
}

static void
test_headers_limits(void **state)
{
	struct rl_headers h;

	(void)state;
	HEADERS(&h, "X-RateLimit-Limit-Second: 10");
	assert_true(h.rh_seen);
	assert_true(h.rh_limit_rps == 10);
	/* The lower limit is enforced. */
	HEADERS(&h, "X-RateLimit-Limit-Minute: 300",
	    "X-RateLimit-Limit-Second: 20");
	assert_true(h.rh_limit_rps == 5);
	HEADERS(&h, "x-ratelimit-limit-hour: 36000",
	    "X-RATELIMIT-LIMIT-DAY: 864000");
	assert_true(h.rh_limit_rps == 10);
	/* Quota policies with a window. */
	HEADERS(&h, "RateLimit-Limit: 100, 100;w=60, 5;w=1");
	assert_true(fabs(h.rh_limit_rps - 100.0 / 60) < 1e-9);
	HEADERS(&h, "RateLimit-Limit: 10, 10;comment=\"x\";w=2");
	assert_true(h.rh_limit_rps == 5);
	/* A limit without a window says nothing about a rate. */
	HEADERS(&h, "RateLimit-Limit: 100");
	assert_true(h.rh_seen);
	assert_true(h.rh_limit_rps == 0);
	HEADERS(&h, "X-RateLimit-Limit-Fortnight: 5");
	assert_false(h.rh_seen);
	/* Not rate-limit headers at all. */
	HEADERS(&h, "Content-Type: application/json", "X-Rate-Limit-Limit: 5",
	    "RateLimiter: 3");
	assert_false(h.rh_seen);
}

static void
test_headers_remaining_and_reset(void **state)
{
	struct rl_headers h;

	(void)state;
	HEADERS(&h, "RateLimit-Remaining: 12", "RateLimit-Reset: 3");
	assert_true(h.rh_have_remaining && h.rh_have_reset);
	assert_int_equal(h.rh_remaining, 12);
	assert_true(h.rh_reset_s == 3);
	HEADERS(&h, "X-RateLimit-Remaining: 7", "X-RateLimit-Reset: 2.5");
	assert_int_equal(h.rh_remaining, 7);
	assert_true(h.rh_reset_s == 2.5);
	/* An epoch time instead of seconds to go. */
	HEADERS(&h, "X-RateLimit-Reset: 1700000042");
	assert_true(h.rh_reset_s == 42);
	HEADERS(&h, "X-RateLimit-Reset: 1600000000");
	assert_true(h.rh_reset_s == 0);
	/* Per-window remaining: the tightest pace wins. */
	HEADERS(&h, "X-RateLimit-Remaining-Second: 9",
	    "X-RateLimit-Remaining-Minute: 120");
	assert_true(h.rh_win_remaining == 120 && h.rh_win_s == 60);
	/* Malformed values are ignored, not guessed. */
	HEADERS(&h, "RateLimit-Remaining: -1", "RateLimit-Reset: soon",
	    "RateLimit-Remaining: 1e5", "RateLimit-Remaining: 2.5",
	    "RateLimit-Reset: ", "X-RateLimit-Limit-Second: ten");
	assert_false(h.rh_have_remaining);
	assert_false(h.rh_have_reset);
	assert_true(h.rh_limit_rps == 0);
	/* A new answer (status line) starts over. */
	HEADERS(&h, "RateLimit-Remaining: 3");
	budget_header(&h, "HTTP/1.1 429", 0, NULL, 0, 0);
	assert_false(h.rh_seen);
}

/* An advertised limit caps the rate while it is repeated; it lapses
 * BUDGET_LIMIT_TTL_MS after the last answer that carried it. */
static void
test_advertised_limit_caps(void **state)
{
	struct rl_headers h;
	struct budget b;

	(void)state;
	budget_init(&b, 50, T0);
	HEADERS(&h, "X-RateLimit-Limit-Second: 8");
	assert_int_equal(
	    budget_answer(&b, 200, T0, &h, T0 + 1), BUDGET_EV_LIMIT);
	assert_true(budget_rate(&b, T0 + 2) == 8);
	assert_int_equal(budget_answer(&b, 200, T0, &h, T0 + 3), 0);
	/* Answers without headers keep it. */
	assert_int_equal(budget_answer(&b, 200, T0, NULL, T0 + 4), 0);
	assert_true(budget_rate(&b, T0 + 3 + BUDGET_LIMIT_TTL_MS) == 8);
	assert_true(budget_rate(&b, T0 + 4 + BUDGET_LIMIT_TTL_MS) == 50);
	/* A limit above the budget changes nothing. */
	HEADERS(&h, "X-RateLimit-Limit-Second: 500");
	budget_answer(&b, 200, T0, &h, T0 + 10);
	assert_true(budget_rate(&b, T0 + 11) == 50);
}

/* The remaining quota is spread over the time to its reset; none left
 * stops every request until the reset. */
static void
test_quota_pacing_and_pause(void **state)
{
	struct rl_headers h;
	struct budget b;
	uint64_t t;

	(void)state;
	budget_init(&b, 50, T0);
	HEADERS(&h, "RateLimit-Remaining: 20", "RateLimit-Reset: 10");
	assert_int_equal(budget_answer(&b, 200, T0, &h, T0), 0);
	assert_true(budget_rate(&b, T0 + 1) == 2);
	assert_true(budget_rate(&b, T0 + 10000) == 50);

	HEADERS(&h, "RateLimit-Remaining: 0", "RateLimit-Reset: 7");
	assert_int_equal(budget_answer(&b, 429, T0, &h, T0 + 20000),
	    BUDGET_EV_DECREASED | BUDGET_EV_PAUSED);
	assert_int_equal(budget_ready_at(&b, T0 + 20001), T0 + 27000);
	for (t = T0 + 20000; t < T0 + 27000; t += 50)
		assert_false(budget_take(&b, 2, t));
	assert_true(budget_take(&b, 2, T0 + 27000));
	/* Said again while paused: not a new pause. */
	budget_init(&b, 50, T0);
	budget_answer(&b, 200, T0, &h, T0);
	assert_int_equal(budget_answer(&b, 200, T0, &h, T0 + 100), 0);
	/* A reset far away is capped. */
	HEADERS(&h, "RateLimit-Remaining: 0", "RateLimit-Reset: 999999");
	budget_init(&b, 50, T0);
	budget_answer(&b, 200, T0, &h, T0);
	assert_int_equal(
	    budget_ready_at(&b, T0 + 1), T0 + BUDGET_RESET_MAX_S * 1000);
}

/* A request charged at a tiny rate (a nearly spent quota) does not hold
 * the next one back once the window has reset. */
static void
test_slow_charge_does_not_outlive_the_quota(void **state)
{
	struct rl_headers h;
	struct budget b;

	(void)state;
	budget_init(&b, 50, T0);
	HEADERS(&h, "RateLimit-Remaining: 1", "RateLimit-Reset: 100");
	budget_answer(&b, 200, T0, &h, T0);
	assert_true(budget_take(&b, 2, T0 + 1)); /* 200 s at 0.01/s */
	assert_false(budget_take(&b, 2, T0 + 1000));
	assert_true(budget_take(&b, 2, T0 + 100000));
	assert_true(budget_ready_at(&b, T0 + 100000) <= T0 + 100040);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paces_evenly),
		cmocka_unit_test(test_ready_at),
		cmocka_unit_test(test_aimd_halves_once_per_round),
		cmocka_unit_test(test_aimd_floor),
		cmocka_unit_test(test_aimd_grows_back),
		cmocka_unit_test(test_headers_limits),
		cmocka_unit_test(test_headers_remaining_and_reset),
		cmocka_unit_test(test_advertised_limit_caps),
		cmocka_unit_test(test_quota_pacing_and_pause),
		cmocka_unit_test(test_slow_charge_does_not_outlive_the_quota),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
