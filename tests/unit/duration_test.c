#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "duration.h"
#include "util.h"

#define NS 1ULL
#define US (1000 * NS)
#define MS (1000 * US)
#define S  (1000 * MS)
#define M  (60 * S)
#define H  (60 * M)

/* Go's parseDurationTests (src/time/time_test.go), minus the negative
 * ones, which this parser refuses (see bad[] below). */
static const struct {
	const char *in;
	uint64_t want;
} good[] = {
	{ "0", 0 },
	{ "5s", 5 * S },
	{ "30s", 30 * S },
	{ "1478s", 1478 * S },
	{ "+5s", 5 * S },
	{ "-0", 0 },
	{ "+0", 0 },
	{ "5.0s", 5 * S },
	{ "5.6s", 5 * S + 600 * MS },
	{ "5.s", 5 * S },
	{ ".5s", 500 * MS },
	{ "1.0s", 1 * S },
	{ "1.00s", 1 * S },
	{ "1.004s", 1 * S + 4 * MS },
	{ "1.0040s", 1 * S + 4 * MS },
	{ "100.00100s", 100 * S + 1 * MS },
	{ "10ns", 10 * NS },
	{ "11us", 11 * US },
	{ "12\xc2\xb5s", 12 * US }, /* U+00B5 */
	{ "12\xce\xbcs", 12 * US }, /* U+03BC */
	{ "13ms", 13 * MS },
	{ "14s", 14 * S },
	{ "15m", 15 * M },
	{ "16h", 16 * H },
	{ "3h30m", 3 * H + 30 * M },
	{ "10.5s4m", 4 * M + 10 * S + 500 * MS },
	{ "1h2m3s4ms5us6ns",
	    1 * H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS },
	{ "39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS },
	{ "52763797000ns", 52763797000 * NS },
	{ "0.3333333333333333333h", 20 * M },
	{ "9007199254740993ns", (1ULL << 53) + 1 },
	{ "9223372036854775807ns", (1ULL << 63) - 1 },
	{ "9223372036854775.807us", (1ULL << 63) - 1 },
	{ "9223372036s854ms775us807ns", (1ULL << 63) - 1 },
	{ "0.100000000000000000000h", 6 * M },
	{ "0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS },
	/* Ours: what config files and flags use. */
	{ "10m", 10 * M },
	{ "1h30m", 90 * M },
	{ "10m0s", 10 * M },
	{ "-0s", 0 },
	{ "2562047h47m16.854775807s", (1ULL << 63) - 1 },
};

/* Go's parseDurationErrorTests, the negative values of parseDurationTests,
 * and our own; each with the reason we give. */
static const struct {
	const char *in;
	const char *why;
} bad[] = {
	{ "", "empty duration" },
	{ "3", "missing unit" },
	{ "-", "expected a number and a unit after the sign" },
	{ "s", "expected a number and a unit" },
	{ ".", "expected a number and a unit" },
	{ "-.", "expected a number and a unit" },
	{ ".s", "expected a number and a unit" },
	{ "+.s", "expected a number and a unit" },
	{ "1d", "unknown unit \"d\"" },
	{ "\x85\x85", "expected a number and a unit" },
	{ "\xff"
	  "ff",
	    "expected a number and a unit" },
	{ "hello \xff"
	  "ff world",
	    "expected a number and a unit" },
	{ "\xef\xbf\xbd", "expected a number and a unit" },
	{ "\xef\xbf\xbd hello \xef\xbf\xbd world",
	    "expected a number and a unit" },
	{ "9223372036854775810ns", "out of range" },
	{ "9223372036854775808ns", "out of range" },
	{ "-9223372036854775809ns", "out of range" },
	{ "9223372036854776us", "out of range" },
	{ "3000000h", "out of range" },
	/* Would wrap around 2^64 to about 25 minutes without the check. */
	{ "5124096h", "out of range" },
	{ "9223372036854775807h", "out of range" },
	{ "9223372036854775.808us", "out of range" },
	{ "9223372036854775807.808ms", "out of range" },
	{ "9223372036854775807.000ms", "out of range" },
	{ "-5s", "must not be negative" },
	{ "-2m3.4s", "must not be negative" },
	{ "-9223372036854775808ns", "must not be negative" },
	{ "-9223372036854775.808us", "must not be negative" },
	{ "-9223372036s854ms775us808ns", "must not be negative" },
	{ "-2562047h47m16.854775808s", "must not be negative" },
	{ "2562047h47m16.854775808s", "out of range" },
	{ "10 m", "unknown unit \" m\"" },
	{ "1hour", "unknown unit \"hour\"" },
	{ "1H", "unknown unit \"H\"" },
	{ "1\xc2\xb5", "unknown unit \"\\xc2\\xb5\"" },
	{ "1.2.3s", "missing unit" },
	{ "10m ", "unknown unit \"m \"" },
	{ " 10m", "expected a number and a unit" },
	{ "1e3s", "unknown unit \"e\"" },
	{ "0x10s", "unknown unit \"x\"" },
	{ "++1s", "expected a number and a unit" },
};

static void
test_parse_good(void **state)
{
	char why[128];
	uint64_t ns;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(good); i++) {
		ns = 42;
		why[0] = '\0';
		if (duration_parse(good[i].in, &ns, why, sizeof(why)) != 0)
			fail_msg("\"%s\": rejected: %s", good[i].in, why);
		if (ns != good[i].want)
			fail_msg("\"%s\": got %llu ns, want %llu", good[i].in,
			    (unsigned long long)ns,
			    (unsigned long long)good[i].want);
	}
}

static void
test_parse_bad(void **state)
{
	char why[128];
	uint64_t ns;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(bad); i++) {
		ns = 42;
		why[0] = '\0';
		if (duration_parse(bad[i].in, &ns, why, sizeof(why)) != -1)
			fail_msg("\"%s\": accepted as %llu ns", bad[i].in,
			    (unsigned long long)ns);
		if (strstr(why, bad[i].why) == NULL)
			fail_msg("\"%s\": reason \"%s\" lacks \"%s\"",
			    bad[i].in, why, bad[i].why);
		if (ns != 42)
			fail_msg("\"%s\": output written on error", bad[i].in);
	}
}

static void
test_parse_small_err_buffer(void **state)
{
	char why[8];
	uint64_t ns;

	(void)state;
	memset(why, 'x', sizeof(why));
	assert_int_equal(duration_parse("1d", &ns, why, sizeof(why)), -1);
	assert_int_equal(why[sizeof(why) - 1], '\0');
	assert_string_equal(why, "unknown");
}

/* Go's Duration.String() for whole milliseconds. */
static const struct {
	uint64_t ms;
	const char *want;
} fmt[] = {
	{ 0, "0s" },
	{ 1, "1ms" },
	{ 250, "250ms" },
	{ 999, "999ms" },
	{ 1000, "1s" },
	{ 1500, "1.5s" },
	{ 1001, "1.001s" },
	{ 1010, "1.01s" },
	{ 59999, "59.999s" },
	{ 60000, "1m0s" },
	{ 90000, "1m30s" },
	{ 61001, "1m1.001s" },
	{ 600000, "10m0s" },
	{ 3600000, "1h0m0s" },
	{ 5400000, "1h30m0s" },
	{ 3723004, "1h2m3.004s" },
	{ 140954425, "39h9m14.425s" },
	{ 9223372036854, "2562047h47m16.854s" },
};

static void
test_format(void **state)
{
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(fmt); i++) {
		duration_format_ms(fmt[i].ms, buf, sizeof(buf));
		if (strcmp(buf, fmt[i].want) != 0)
			fail_msg("%llu ms: got \"%s\", want \"%s\"",
			    (unsigned long long)fmt[i].ms, buf, fmt[i].want);
	}
}

/* What we print parses back to the same value. */
static void
test_format_round_trip(void **state)
{
	static const uint64_t ms[] = { 1, 999, 1000, 1234, 60000, 61500,
		3599999, 3600000, 86400000, 123456789012ULL };
	char buf[64], why[128];
	uint64_t ns;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(ms); i++) {
		duration_format_ms(ms[i], buf, sizeof(buf));
		assert_int_equal(
		    duration_parse(buf, &ns, why, sizeof(why)), 0);
		assert_true(ns == ms[i] * MS);
	}
}

static void
test_format_truncates(void **state)
{
	char buf[4];

	(void)state;
	duration_format_ms(3600000, buf, sizeof(buf));
	assert_string_equal(buf, "1h0");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_parse_small_err_buffer),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_format_round_trip),
		cmocka_unit_test(test_format_truncates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
