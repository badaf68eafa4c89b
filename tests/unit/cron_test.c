#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"
#include "tz.h"
#include "util.h"

static int64_t
utc(int y, unsigned mo, unsigned d, unsigned h, unsigned mi)
{
	return tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60;
}

static void
test_parse_ok(void **state)
{
	struct cron c;
	char err[256];

	(void)state;
	assert_int_equal(
	    cron_parse("0 8 * * MON-FRI", &c, err, sizeof(err)), 0);
	assert_true(c.cr_minute == 1);
	assert_true(c.cr_hour == 1u << 8);
	assert_true(c.cr_dom == 0xfffffffe);
	assert_true(c.cr_month == 0x1ffe);
	assert_true(c.cr_dow == 0x3e);
	assert_true(c.cr_dom_star);
	assert_false(c.cr_dow_star);

	assert_int_equal(cron_parse("*/15 9-17/2 1,15 jan,Jul-SEP sun", &c,
	                     err, sizeof(err)),
	    0);
	assert_true(
	    c.cr_minute == (1ULL | 1ULL << 15 | 1ULL << 30 | 1ULL << 45));
	assert_true(c.cr_hour ==
	    (1u << 9 | 1u << 11 | 1u << 13 | 1u << 15 | 1u << 17));
	assert_true(c.cr_dom == (1u << 1 | 1u << 15));
	assert_true(c.cr_month == (1u << 1 | 1u << 7 | 1u << 8 | 1u << 9));
	assert_true(c.cr_dow == 1);
	assert_false(c.cr_dom_star);

	/* 7 is Sunday; 0-7 is every day. */
	assert_int_equal(cron_parse("0 0 * * 7", &c, err, sizeof(err)), 0);
	assert_true(c.cr_dow == 1);
	assert_int_equal(cron_parse("0 0 * * 5-7", &c, err, sizeof(err)), 0);
	assert_true(c.cr_dow == (1u << 5 | 1u << 6 | 1u));
	assert_int_equal(cron_parse("0 0 * * 0-7", &c, err, sizeof(err)), 0);
	assert_true(c.cr_dow == 0x7f);
	/* Tabs and extra blanks separate fields too. */
	assert_int_equal(
	    cron_parse("  0\t8  * *   1 ", &c, err, sizeof(err)), 0);
	/* Vixie: "*" then a step still counts as "*" for the day rule. */
	assert_int_equal(cron_parse("0 0 */2 * 1", &c, err, sizeof(err)), 0);
	assert_true(c.cr_dom_star);
}

static void
test_parse_errors(void **state)
{
	static const struct {
		const char *expr, *why;
	} cases[] = {
		{ "", "must have 5 fields" },
		{ "0 8 * *", "must have 5 fields" },
		{ "0 0 8 * * MON", "more than 5 fields" },
		{ "@daily", "\"@\" shortcuts" },
		{ "60 * * * *", "minute field \"60\": values must be 0-59" },
		{ "* 24 * * *", "hour field \"24\": values must be 0-23" },
		{ "* * 0 * *",
		    "day of month field \"0\": values must be 1-31" },
		{ "* * 32 * *", "day of month field" },
		{ "* * * 13 *", "month field \"13\"" },
		{ "* * * * 8", "day of week field \"8\": values must be 0-7" },
		{ "* * * * FRI-MON", "must not run backwards" },
		{ "30-10 * * * *", "must not run backwards" },
		{ "5/15 * * * *", "a step needs a range or \"*\"" },
		{ "*/0 * * * *", "a step must be 1-59" },
		{ "*/x * * * *", "minute field \"*/x\" is not valid" },
		{ "0 8 * * MONDAY", "day of week field \"MONDAY\"" },
		{ "0 8 * * MO", "or SUN-SAT" },
		{ "0 8 * JANUARY *", "or JAN-DEC" },
		{ "0 8 * * JAN", "day of week field" },
		{ "0 8 L * *", "day of month field" },
		{ "0 8 ? * *", "day of month field" },
		{ "0,,5 8 * * *", "minute field" },
		{ "0, 8 * * *", "minute field \"0,\" is not valid" },
		{ "-5 * * * *", "minute field" },
		{ "0 8 * * 1#2", "day of week field" },
	};
	struct cron c;
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		if (cron_parse(cases[i].expr, &c, err, sizeof(err)) != -1)
			fail_msg("\"%s\" parsed", cases[i].expr);
		if (strstr(err, cases[i].why) == NULL)
			fail_msg("\"%s\": \"%s\" lacks \"%s\"", cases[i].expr,
			    err, cases[i].why);
	}
}

static void
test_equal(void **state)
{
	struct cron a, b;
	char err[256];

	(void)state;
	assert_int_equal(cron_parse("0 8 * * 1-5", &a, err, sizeof(err)), 0);
	assert_int_equal(
	    cron_parse("0 8 * * MON,TUE,WED-FRI", &b, err, sizeof(err)), 0);
	assert_true(cron_equal(&a, &b));
	assert_int_equal(
	    cron_parse("0 8 1-31 * 1-5", &b, err, sizeof(err)), 0);
	assert_false(cron_equal(&a, &b)); /* every day, by the OR rule */
	assert_int_equal(cron_parse("0 18 * * 1-5", &b, err, sizeof(err)), 0);
	assert_false(cron_equal(&a, &b));
}

/* Vixie: with both day fields restricted, either may match. */
static void
test_day_rule(void **state)
{
	struct cron c;
	char err[256];

	(void)state;
	/* The 13th, and every Friday. */
	assert_int_equal(cron_parse("0 0 13 * 5", &c, err, sizeof(err)), 0);
	assert_true(cron_matches(&c, 1, 13, 2, 0, 0));
	assert_true(cron_matches(&c, 1, 2, 5, 0, 0));
	assert_false(cron_matches(&c, 1, 2, 4, 0, 0));
	/* "*" in one day field: the other decides alone. */
	assert_int_equal(cron_parse("0 0 * * 5", &c, err, sizeof(err)), 0);
	assert_false(cron_matches(&c, 1, 13, 2, 0, 0));
	assert_true(cron_matches(&c, 1, 2, 5, 0, 0));
	assert_int_equal(cron_parse("0 0 */2 * 5", &c, err, sizeof(err)), 0);
	assert_true(cron_matches(&c, 1, 3, 5, 0, 0));
	assert_false(cron_matches(&c, 1, 2, 5, 0, 0));
	assert_false(cron_matches(&c, 1, 3, 4, 0, 0));
}

static void
test_last_fire_utc(void **state)
{
	static const struct {
		const char *expr;
		int64_t t, want; /* want -1: none */
	} cases[] = {
		/* Thursday 2026-07-02 12:34 */
		{ "0 8 * * MON-FRI", 0, 0 },
		{ "34 12 * * *", 1, 1 }, /* this very minute: inclusive */
		{ "35 12 * * *", 2, 2 },
		{ "0 18 * * FRI", 3, 3 }, /* last Friday */
		{ "0 0 29 2 *", 4, 4 },   /* a leap day, years back */
		{ "0 0 30 2 *", 5, -1 },  /* never */
		{ "*/20 * * * *", 6, 6 },
	};
	int64_t t = utc(2026, 7, 2, 12, 34) + 17, fire;
	const int64_t want[] = { utc(2026, 7, 2, 8, 0),
		utc(2026, 7, 2, 12, 34), utc(2026, 7, 1, 12, 35),
		utc(2026, 6, 26, 18, 0), utc(2024, 2, 29, 0, 0), 0,
		utc(2026, 7, 2, 12, 20) };
	struct cron c;
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		assert_int_equal(
		    cron_parse(cases[i].expr, &c, err, sizeof(err)), 0);
		if (cases[i].want == -1) {
			assert_int_equal(
			    cron_last_fire(&c, NULL, t, &fire), -1);
			continue;
		}
		assert_int_equal(cron_last_fire(&c, NULL, t, &fire), 0);
		if (fire != want[cases[i].want])
			fail_msg("%s: %lld, want %lld", cases[i].expr,
			    (long long)fire, (long long)want[cases[i].want]);
	}
}

/* Local times skipped by spring forward never match; repeated ones match
 * twice. */
static void
test_last_fire_dst(void **state)
{
	struct tz *z;
	struct cron c;
	char err[256];
	int64_t fire;

	(void)state;
	assert_non_null(z = tz_load("Europe/Berlin", err, sizeof(err)));
	/* 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). */
	assert_int_equal(cron_parse("30 2 * * *", &c, err, sizeof(err)), 0);
	assert_int_equal(
	    cron_last_fire(&c, z, utc(2026, 3, 29, 12, 0), &fire), 0);
	assert_int_equal(fire, utc(2026, 3, 28, 1, 30)); /* the day before */
	assert_int_equal(
	    cron_last_fire(&c, z, utc(2026, 3, 30, 1, 0), &fire), 0);
	assert_int_equal(fire, utc(2026, 3, 30, 0, 30)); /* CEST */
	/* 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC). */
	assert_int_equal(
	    cron_last_fire(&c, z, utc(2026, 10, 25, 0, 45), &fire), 0);
	assert_int_equal(fire, utc(2026, 10, 25, 0, 30)); /* first 02:30 */
	assert_int_equal(
	    cron_last_fire(&c, z, utc(2026, 10, 25, 1, 45), &fire), 0);
	assert_int_equal(fire, utc(2026, 10, 25, 1, 30)); /* second 02:30 */
	/* In the second 02:10, the first 02:50 is the last fire. */
	assert_int_equal(cron_parse("50 2 * * *", &c, err, sizeof(err)), 0);
	assert_int_equal(
	    cron_last_fire(&c, z, utc(2026, 10, 25, 1, 10), &fire), 0);
	assert_int_equal(fire, utc(2026, 10, 25, 0, 50));
	tz_free(z);
}

/* The last fire against a minute-by-minute walk through the C library's
 * localtime, for random expressions, zones and instants around DST
 * changes. */
static void
test_last_fire_brute_force(void **state)
{
	static const char *const zones[] = { "Europe/Berlin",
		"America/New_York", "Australia/Lord_Howe", "America/Sao_Paulo",
		"Asia/Kolkata", "America/Santiago" };
	static const char *const minutes[] = { "*", "0", "30", "*/7",
		"15-45/10", "0,59" };
	static const char *const hours[] = { "*", "0", "2", "1-3", "*/5",
		"23" };
	static const char *const doms[] = { "*", "1", "*/3", "13", "28-31" };
	static const char *const dows[] = { "*", "0", "1-5", "SAT", "*/2" };
	/* Around DST changes in 2026 in either hemisphere, and a plain day. */
	const int64_t around[] = { utc(2026, 3, 29, 1, 0),
		utc(2026, 10, 25, 1, 0), utc(2026, 3, 8, 7, 0),
		utc(2026, 11, 1, 6, 0), utc(2026, 4, 4, 15, 0),
		utc(2026, 10, 3, 16, 0), utc(2026, 7, 15, 12, 0) };
	char expr[128], tzv[64], err[256];
	struct cron c;
	struct tz *z;
	struct tm tm;
	int64_t t, fire, u, want;
	time_t tt;
	int k, n, got;

	(void)state;
	rng_seed(1234);
	for (k = 0; k < 300; k++) {
		const char *zn = zones[rng_range(0, nitems(zones) - 1)];

		snprintf(expr, sizeof(expr), "%s %s %s * %s",
		    minutes[rng_range(0, nitems(minutes) - 1)],
		    hours[rng_range(0, nitems(hours) - 1)],
		    doms[rng_range(0, nitems(doms) - 1)],
		    dows[rng_range(0, nitems(dows) - 1)]);
		assert_int_equal(cron_parse(expr, &c, err, sizeof(err)), 0);
		assert_non_null(z = tz_load(zn, err, sizeof(err)));
		t = around[rng_range(0, nitems(around) - 1)] +
		    (int64_t)rng_range(0, 6 * 3600) - 3 * 3600;
		snprintf(tzv, sizeof(tzv), ":%s", zn);
		setenv("TZ", tzv, 1);
		tzset();
		/* Walk back at most 40 days, minute by minute. */
		want = -1;
		for (u = t - t % 60, n = 0; n < 40 * 1440; u -= 60, n++) {
			tt = (time_t)u;
			localtime_r(&tt, &tm);
			if (cron_matches(&c, (unsigned)tm.tm_mon + 1,
			        (unsigned)tm.tm_mday, (unsigned)tm.tm_wday,
			        (unsigned)tm.tm_hour, (unsigned)tm.tm_min)) {
				want = u;
				break;
			}
		}
		got = cron_last_fire(&c, z, t, &fire);
		if (want == -1) {
			if (got == 0 && fire >= t - 40 * 86400)
				fail_msg("%s in %s at %lld: %lld, want none",
				    expr, zn, (long long)t, (long long)fire);
		} else if (got != 0 || fire != want)
			fail_msg("%s in %s at %lld: %lld, want %lld", expr, zn,
			    (long long)t, got == 0 ? (long long)fire : -1LL,
			    (long long)want);
		tz_free(z);
	}
	unsetenv("TZ");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_equal),
		cmocka_unit_test(test_day_rule),
		cmocka_unit_test(test_last_fire_utc),
		cmocka_unit_test(test_last_fire_dst),
		cmocka_unit_test(test_last_fire_brute_force),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
