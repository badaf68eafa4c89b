/*
 * Go durations (common/duration.c): what the parser accepts has Go's form
 * and range, reads the same with "0s" appended, and formats (at ms
 * precision) to text that parses back to the same milliseconds.  The first
 * byte picks the mode: parse text, or format any millisecond count.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "fuzz.h"

#define NS_MAX_DURATION 9223372036854775807ULL /* Go's time.Duration */

/* [-+]?([0-9]*(\.[0-9]*)?[a-zµμ]+)+ | [-+]?0, units from Go's table. */
static bool
go_form(const char *s)
{
	static const char *const units[] = { "ns", "us", "\xc2\xb5s",
		"\xce\xbcs", "ms", "s", "m", "h" };
	const char *p = s, *u;
	bool digits;
	size_t i, n;

	if (*p == '-' || *p == '+')
		p++;
	if (strcmp(p, "0") == 0)
		return true;
	if (*p == '\0')
		return false;
	while (*p != '\0') {
		digits = false;
		while (*p >= '0' && *p <= '9') {
			p++;
			digits = true;
		}
		if (*p == '.') {
			p++;
			while (*p >= '0' && *p <= '9') {
				p++;
				digits = true;
			}
		}
		if (!digits)
			return false;
		for (u = p;
		     *p != '\0' && *p != '.' && !(*p >= '0' && *p <= '9'); p++)
			;
		n = (size_t)(p - u);
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i]) == n &&
			    memcmp(units[i], u, n) == 0)
				break;
		if (i == sizeof(units) / sizeof(units[0]))
			return false;
	}
	return true;
}

static void
check_format(uint64_t ms)
{
	char text[64], err[128];
	uint64_t ns;
	int rv;

	if (ms > NS_MAX_DURATION / 1000000)
		ms %= NS_MAX_DURATION / 1000000 + 1;
	duration_format_ms(ms, text, sizeof(text));
	rv = duration_parse(text, &ns, err, sizeof(err));
	FUZZ_CHECK(rv == 0, "formatted %llu ms as \"%s\", which fails: %s",
	    (unsigned long long)ms, text, err);
	FUZZ_CHECK(ns == ms * 1000000,
	    "%llu ms formats as \"%s\", reads %llu ns", (unsigned long long)ms,
	    text, (unsigned long long)ns);
}

static void
check_parse(const char *s)
{
	char err[128], err2[128], *longer;
	uint64_t ns = 0, ns2 = 0;
	int rv, rv2;

	memset(err, 'x', sizeof(err));
	rv = duration_parse(s, &ns, err, sizeof(err));
	if (rv == -1) {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0],
		    "no reason given for rejecting \"%s\"", s);
		return;
	}
	FUZZ_CHECK(rv == 0, "returned %d", rv);
	FUZZ_CHECK(go_form(s), "accepted \"%s\", which Go would not parse", s);
	FUZZ_CHECK(ns <= NS_MAX_DURATION, "\"%s\" read as %llu ns", s,
	    (unsigned long long)ns);
	FUZZ_CHECK(s[0] != '-' || ns == 0, "negative \"%s\" accepted", s);

	longer = malloc(strlen(s) + 3);
	FUZZ_CHECK(longer != NULL, "out of memory");
	strcpy(longer, s);
	strcat(longer, "0s");
	rv2 = duration_parse(longer, &ns2, err2, sizeof(err2));
	/* "+0" and "-0" are whole forms: "+00s" still reads as 0. */
	FUZZ_CHECK(rv2 == 0 && ns2 == ns, "\"%s\" is %llu ns but \"%s\" %s", s,
	    (unsigned long long)ns, longer, rv2 == 0 ? "differs" : err2);
	free(longer);
	check_format(ns / 1000000);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	char *s;

	if (size == 0)
		return 0;
	if (fuzz_u8(&in) == 'F') {
		check_format(fuzz_u64(&in));
		return 0;
	}
	s = fuzz_rest_str(&in);
	check_parse(s);
	free(s);
	return 0;
}
