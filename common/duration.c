/*
 * Durations as Go's time.ParseDuration reads them, so that a value the
 * runner (a Go program) accepts is exactly a value we accept:
 *   [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+  or "0", "+0", "-0".
 * The arithmetic, including the float64 step for fractions and the
 * overflow checks, follows Go's src/time/format.go line by line.
 */
#include <stdio.h>
#include <string.h>

#include "duration.h"

#define NS_PER_US 1000ULL
#define NS_PER_MS 1000000ULL
#define NS_PER_S  1000000000ULL
#define NS_PER_M  (60 * NS_PER_S)
#define NS_PER_H  (60 * NS_PER_M)
#define NS_MAX    (1ULL << 63) /* magnitude bound, as in Go */

struct unit {
	const char *u_name;
	uint64_t u_ns;
};

static const struct unit units[] = {
	{ "ns", 1 },
	{ "us", NS_PER_US },
	{ "\xc2\xb5s", NS_PER_US }, /* U+00B5 micro sign */
	{ "\xce\xbcs", NS_PER_US }, /* U+03BC Greek small letter mu */
	{ "ms", NS_PER_MS },
	{ "s", NS_PER_S },
	{ "m", NS_PER_M },
	{ "h", NS_PER_H },
};

static int isdigit_c(char);
static int leading_int(const char **, uint64_t *);
static uint64_t leading_fraction(const char **, double *);
static void quote_bytes(char *, size_t, const char *, size_t);

static int
isdigit_c(char c)
{
	return c >= '0' && c <= '9';
}

/* Consumes [0-9]*; -1 on overflow. */
static int
leading_int(const char **sp, uint64_t *xp)
{
	const char *s = *sp;
	uint64_t x = 0;

	for (; isdigit_c(*s); s++) {
		if (x > NS_MAX / 10)
			return -1;
		x = x * 10 + (uint64_t)(*s - '0');
		if (x > NS_MAX)
			return -1;
	}
	*sp = s;
	*xp = x;
	return 0;
}

/* Consumes [0-9]* after a point; stops gaining precision on overflow. */
static uint64_t
leading_fraction(const char **sp, double *scalep)
{
	const char *s = *sp;
	uint64_t x = 0, y;
	double scale = 1;
	int overflow = 0;

	for (; isdigit_c(*s); s++) {
		if (overflow)
			continue;
		if (x > (NS_MAX - 1) / 10) {
			overflow = 1;
			continue;
		}
		y = x * 10 + (uint64_t)(*s - '0');
		if (y > NS_MAX) {
			overflow = 1;
			continue;
		}
		x = y;
		scale *= 10;
	}
	*sp = s;
	*scalep = scale;
	return x;
}

/* Writes s (n bytes) in double quotes; bytes outside printable ASCII as
 * \xNN, the way Go's time package quotes. */
static void
quote_bytes(char *buf, size_t size, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;
	unsigned char c;

	if (size == 0)
		return;
#define PUT(ch)                                                               \
	do {                                                                  \
		if (o + 1 < size)                                             \
			buf[o++] = (ch);                                      \
	} while (0)
	PUT('"');
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c < 0x20 || c >= 0x80) {
			PUT('\\');
			PUT('x');
			PUT(hex[c >> 4]);
			PUT(hex[c & 0xf]);
			continue;
		}
		if (c == '"' || c == '\\')
			PUT('\\');
		PUT((char)c);
	}
	PUT('"');
#undef PUT
	buf[o] = '\0';
}

int
duration_parse(const char *s, uint64_t *nsp, char *err, size_t errlen)
{
	const char *p = s, *u;
	uint64_t d = 0, v, f, unit;
	double scale;
	size_t i, ulen;
	char q[64];
	int neg = 0, pre, post;

	if (*p == '-' || *p == '+') {
		neg = *p == '-';
		p++;
	}
	if (strcmp(p, "0") == 0) {
		*nsp = 0;
		return 0;
	}
	if (*p == '\0') {
		snprintf(err, errlen, "%s",
		    *s == '\0'
		        ? "empty duration"
		        : "expected a number and a unit after the sign");
		return -1;
	}
	while (*p != '\0') {
		if (!(*p == '.' || isdigit_c(*p)))
			goto syntax;
		u = p;
		if (leading_int(&p, &v) == -1)
			goto range;
		pre = p != u;
		f = 0;
		scale = 1;
		post = 0;
		if (*p == '.') {
			p++;
			u = p;
			f = leading_fraction(&p, &scale);
			post = p != u;
		}
		if (!pre && !post)
			goto syntax;
		for (ulen = 0; p[ulen] != '\0'; ulen++)
			if (p[ulen] == '.' || isdigit_c(p[ulen]))
				break;
		if (ulen == 0) {
			snprintf(err, errlen,
			    "missing unit (one of ns, us, "
			    "ms, s, m, h)");
			return -1;
		}
		u = p;
		p += ulen;
		unit = 0;
		for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
			if (strlen(units[i].u_name) == ulen &&
			    memcmp(units[i].u_name, u, ulen) == 0)
				unit = units[i].u_ns;
		if (unit == 0) {
			quote_bytes(q, sizeof(q), u, ulen);
			snprintf(err, errlen,
			    "unknown unit %s (one of ns, us, "
			    "ms, s, m, h)",
			    q);
			return -1;
		}
		if (v > NS_MAX / unit)
			goto range;
		v *= unit;
		if (f > 0) {
			/* float64, as Go: exact enough for fractions of an
			 * hour (at most 3.6e12 ns). */
			v += (uint64_t)((double)f * ((double)unit / scale));
			if (v > NS_MAX)
				goto range;
		}
		d += v;
		if (d > NS_MAX)
			goto range;
	}
	if (neg && d > 0) {
		snprintf(err, errlen, "must not be negative");
		return -1;
	}
	if (d > NS_MAX - 1)
		goto range;
	*nsp = d;
	return 0;

syntax:
	snprintf(err, errlen,
	    "expected a number and a unit, such as \"10m\" "
	    "or \"1h30m\"");
	return -1;
range:
	snprintf(
	    err, errlen, "out of range (at most 2562047h47m16.854775807s)");
	return -1;
}

void
duration_format_ms(uint64_t ms, char *buf, size_t size)
{
	uint64_t h, m, s, frac;
	char fr[8];
	int n;

	if (size == 0)
		return;
	if (ms == 0) {
		snprintf(buf, size, "0s");
		return;
	}
	if (ms < 1000) {
		snprintf(buf, size, "%llums", (unsigned long long)ms);
		return;
	}
	frac = ms % 1000;
	s = ms / 1000;
	h = s / 3600;
	m = s / 60 % 60;
	s %= 60;
	fr[0] = '\0';
	if (frac != 0) {
		n = snprintf(
		    fr, sizeof(fr), ".%03llu", (unsigned long long)frac);
		while (n > 1 && fr[n - 1] == '0')
			fr[--n] = '\0';
	}
	if (h > 0)
		snprintf(buf, size, "%lluh%llum%llu%ss", (unsigned long long)h,
		    (unsigned long long)m, (unsigned long long)s, fr);
	else if (m > 0)
		snprintf(buf, size, "%llum%llu%ss", (unsigned long long)m,
		    (unsigned long long)s, fr);
	else
		snprintf(buf, size, "%llu%ss", (unsigned long long)s, fr);
}
