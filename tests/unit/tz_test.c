#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tz.h"
#include "util.h"

/* Zones with every kind of rule: DST in either hemisphere, half-hour and
 * 45-minute offsets, a 30-minute DST shift, DST ending at midnight, a zone
 * that skipped a whole day, and zones without DST. */
static const char *const zones[] = { "Europe/Berlin", "America/New_York",
	"America/Sao_Paulo", "Australia/Lord_Howe", "Pacific/Chatham",
	"Asia/Kolkata", "Asia/Kathmandu", "Pacific/Apia", "America/St_Johns",
	"Africa/Casablanca", "Europe/Dublin", "Pacific/Kiritimati", "UTC",
	"Etc/GMT+5", "America/Santiago", "Asia/Tehran", NULL };

/* The C library's answer, with TZ set the process-global way (a test may). */
static long
libc_offset(const char *zone, int64_t t)
{
	char tzv[300];
	time_t tt = (time_t)t;
	struct tm tm;

	snprintf(tzv, sizeof(tzv), ":%s", zone);
	setenv("TZ", tzv, 1);
	tzset();
	localtime_r(&tt, &tm);
	return tm.tm_gmtoff;
}

static void
test_offsets_match_libc(void **state)
{
	char err[256];
	struct tz *z;
	int64_t t;
	size_t i;
	int k;

	(void)state;
	rng_seed(42);
	for (i = 0; zones[i] != NULL; i++) {
		if ((z = tz_load(zones[i], err, sizeof(err))) == NULL)
			fail_msg("%s: %s", zones[i], err);
		assert_string_equal(tz_name(z), zones[i]);
		/* 1900..2200: transitions, then the footer's rule. */
		for (k = 0; k < 4000; k++) {
			t = (int64_t)rng_range(0, 9467280000ULL) -
			    2208988800LL;
			if (tz_offset(z, t) != libc_offset(zones[i], t))
				fail_msg("%s at %lld: %d, libc %ld", zones[i],
				    (long long)t, tz_offset(z, t),
				    libc_offset(zones[i], t));
		}
		tz_free(z);
	}
	unsetenv("TZ");
}

static void
test_transitions_exact(void **state)
{
	char err[256];
	struct tz *z = tz_load("Europe/Berlin", err, sizeof(err));

	(void)state;
	assert_non_null(z);
	/* 2026-03-29 01:00 UTC: CET -> CEST; 2026-10-25 01:00 UTC back. */
	assert_int_equal(tz_offset(z, 1774746000 - 1), 3600);
	assert_int_equal(tz_offset(z, 1774746000), 7200);
	assert_int_equal(tz_offset(z, 1792890000 - 1), 7200);
	assert_int_equal(tz_offset(z, 1792890000), 3600);
	/* 2100 is past the file's transitions: the footer rule decides. */
	assert_int_equal(tz_offset(z, 4109875200), 3600); /* 2100-03-28 */
	assert_int_equal(tz_offset(z, 4110051600), 7200); /* 2100-03-30 */
	tz_free(z);
}

static void
test_local_to_utc(void **state)
{
	char err[256];
	struct tz *z = tz_load("Europe/Berlin", err, sizeof(err));
	int64_t u[2], l;

	(void)state;
	assert_non_null(z);
	/* 2026-03-29 02:30 local does not exist. */
	l = tz_days_from_civil(2026, 3, 29) * 86400 + 2 * 3600 + 30 * 60;
	assert_int_equal(tz_local_to_utc(z, l, u), 0);
	/* 03:00 is the first minute of summer time. */
	assert_int_equal(tz_local_to_utc(z, l + 1800, u), 1);
	assert_int_equal(u[0], 1774746000);
	/* 2026-10-25 02:30 local happens twice, earlier first. */
	l = tz_days_from_civil(2026, 10, 25) * 86400 + 2 * 3600 + 30 * 60;
	assert_int_equal(tz_local_to_utc(z, l, u), 2);
	assert_int_equal(u[0], 1792891800 - 3600);
	assert_int_equal(u[1], 1792891800);
	/* An ordinary day. */
	l = tz_days_from_civil(2026, 7, 1) * 86400 + 12 * 3600;
	assert_int_equal(tz_local_to_utc(z, l, u), 1);
	assert_int_equal(u[0], l - 7200);
	/* NULL is UTC. */
	assert_int_equal(tz_local_to_utc(NULL, l, u), 1);
	assert_int_equal(u[0], l);
	tz_free(z);
}

/* Every local minute of 2026 maps back to itself through the zone. */
static void
test_local_roundtrip(void **state)
{
	char err[256];
	struct tz *z = tz_load("Australia/Lord_Howe", err, sizeof(err));
	int64_t l, end, u[2];
	int n, i, gaps = 0, folds = 0;

	(void)state;
	assert_non_null(z);
	l = tz_days_from_civil(2026, 1, 1) * 86400;
	end = tz_days_from_civil(2027, 1, 1) * 86400;
	for (; l < end; l += 60) {
		n = tz_local_to_utc(z, l, u);
		gaps += n == 0;
		folds += n == 2;
		for (i = 0; i < n; i++)
			assert_int_equal(u[i] + tz_offset(z, u[i]), l);
	}
	/* Lord Howe moves its clocks by 30 minutes. */
	assert_int_equal(gaps, 30);
	assert_int_equal(folds, 30);
	tz_free(z);
}

static void
test_calendar(void **state)
{
	int64_t d, y;
	unsigned m, dd;

	(void)state;
	assert_int_equal(tz_days_from_civil(1970, 1, 1), 0);
	assert_int_equal(tz_weekday(0), 4); /* Thursday */
	assert_int_equal(tz_weekday(-1), 3);
	assert_int_equal(tz_weekday(-8), 3);
	assert_int_equal(tz_days_from_civil(2000, 3, 1), 11017);
	for (d = -800000; d < 800000; d += 97) {
		tz_civil_from_days(d, &y, &m, &dd);
		assert_int_equal(tz_days_from_civil(y, m, dd), d);
	}
	tz_civil_from_days(tz_days_from_civil(2028, 2, 29), &y, &m, &dd);
	assert_int_equal(y, 2028);
	assert_int_equal(m, 2);
	assert_int_equal(dd, 29);
}

static void
test_load_errors(void **state)
{
	static const char *const bad[] = { "", "/etc/passwd", "../etc/passwd",
		"Europe/../../etc/passwd", "Europe//Berlin", "Europe/Berlin/",
		"Europe/ Berlin", "./UTC", NULL };
	char err[256];
	struct tz *z;
	size_t i;

	(void)state;
	for (i = 0; bad[i] != NULL; i++) {
		z = tz_load(bad[i], err, sizeof(err));
		if (z != NULL)
			fail_msg("\"%s\" loaded", bad[i]);
		assert_non_null(strstr(err, "is not a time zone name"));
	}
	assert_null(tz_load("Mars/Olympus_Mons", err, sizeof(err)));
	assert_non_null(strstr(err, "unknown time zone"));
	assert_non_null(strstr(err, "tzdata"));
	assert_null(tz_load("Europe", err, sizeof(err)));
	assert_non_null(strstr(err, "is a region"));
	/* A file under the zone directory that is not a zone. */
	assert_null(tz_load("zone1970.tab", err, sizeof(err)));
	assert_non_null(strstr(err, "not a TZif file"));
	/* Leap-second zones count seconds differently. */
	assert_null(tz_load("right/UTC", err, sizeof(err)));
	assert_non_null(strstr(err, "leap seconds"));
	/* UTC needs no file. */
	setenv("TZDIR", "/nonexistent", 1);
	assert_non_null(z = tz_load("UTC", err, sizeof(err)));
	assert_int_equal(tz_offset(z, 1792890000), 0);
	tz_free(z);
	assert_null(tz_load("Europe/Berlin", err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent/Europe/Berlin"));
	unsetenv("TZDIR");
}

/* Big-endian helpers for building TZif files by hand. */
static size_t
put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
	return 4;
}

/* A version 2 file with no transitions at all: the footer is the zone
 * ("slim" files come close to this). */
static size_t
footer_only(unsigned char *b, const char *footer, int32_t off0)
{
	size_t n = 0, i;

	for (i = 0; i < 2; i++) {
		memcpy(b + n, "TZif2", 5);
		memset(b + n + 5, 0, 15);
		n += 20;
		n += put32(b + n, 0);
		n += put32(b + n, 0);
		n += put32(b + n, 0);
		n += put32(b + n, 0); /* timecnt */
		n += put32(b + n, 1); /* typecnt */
		n += put32(b + n, 4); /* charcnt */
		n += put32(b + n, (uint32_t)off0);
		b[n++] = 0;
		b[n++] = 0;
		memcpy(b + n, "CET", 4);
		n += 4;
	}
	b[n++] = '\n';
	memcpy(b + n, footer, strlen(footer));
	n += strlen(footer);
	b[n++] = '\n';
	return n;
}

static void
test_footer_rules(void **state)
{
	static const struct {
		const char *footer, *zone;
	} cases[] = {
		{ "CET-1CEST,M3.5.0,M10.5.0/3", "Europe/Berlin" },
		{ "EST5EDT,M3.2.0,M11.1.0", "America/New_York" },
		{ "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
		    "Australia/Lord_Howe" },
		{ "<-04>4<-03>,M9.1.6/24,M4.1.6/24", "America/Santiago" },
		{ "IST-5:30", "Asia/Kolkata" },
		{ "NST3:30NDT,M3.2.0,M11.1.0", "America/St_Johns" },
	};
	unsigned char buf[512];
	char err[256];
	struct tz *z;
	size_t i, len;
	int64_t t;
	int k;

	(void)state;
	rng_seed(7);
	for (i = 0; i < nitems(cases); i++) {
		len = footer_only(buf, cases[i].footer, 0);
		z = tz_parse("test", buf, len, err, sizeof(err));
		if (z == NULL)
			fail_msg("%s: %s", cases[i].footer, err);
		/* 2040..2100: every zone follows its footer by then. */
		for (k = 0; k < 3000; k++) {
			t = 2208988800LL +
			    (int64_t)rng_range(0, 60 * 365 * 86400ULL);
			if (tz_offset(z, t) != libc_offset(cases[i].zone, t))
				fail_msg("%s at %lld: %d, libc %ld",
				    cases[i].footer, (long long)t,
				    tz_offset(z, t),
				    libc_offset(cases[i].zone, t));
		}
		tz_free(z);
	}
	unsetenv("TZ");
}

static void
test_parse_rejects(void **state)
{
	unsigned char buf[512];
	char err[256];
	size_t len;

	(void)state;
	assert_null(
	    tz_parse("x", (const unsigned char *)"TZif", 4, err, sizeof(err)));
	assert_non_null(strstr(err, "not a TZif file"));
	len = footer_only(buf, "CET-1CEST,M3.5.0", 0);
	assert_null(tz_parse("x", buf, len, err, sizeof(err)));
	assert_non_null(strstr(err, "TZ rule"));
	len = footer_only(buf, "C-1", 0); /* a name needs 3 letters */
	assert_null(tz_parse("x", buf, len, err, sizeof(err)));
	len = footer_only(buf, "CET-1", 200000); /* offset out of range */
	assert_null(tz_parse("x", buf, len, err, sizeof(err)));
	assert_non_null(strstr(err, "out of range"));
	/* Truncated anywhere: never read past the end. */
	len = footer_only(buf, "CET-1CEST,M3.5.0,M10.5.0/3", 3600);
	for (; len > 0; len--) {
		struct tz *z = tz_parse("x", buf, len - 1, err, sizeof(err));

		tz_free(z);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_offsets_match_libc),
		cmocka_unit_test(test_transitions_exact),
		cmocka_unit_test(test_local_to_utc),
		cmocka_unit_test(test_local_roundtrip),
		cmocka_unit_test(test_calendar),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_footer_rules),
		cmocka_unit_test(test_parse_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
