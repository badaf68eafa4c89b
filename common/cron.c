/*
 * Cron matching for scaling schedules (README "Scaling schedules").  The
 * search for the last matching minute walks local calendar minutes
 * backwards, skipping whole days and hours that cannot match, and turns
 * each candidate into instants through the zone, so a schedule costs a few
 * zone lookups per evaluation, not one per minute.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cron.h"
#include "tz.h"

#define SECS_PER_DAY 86400

struct field {
	const char *f_name;
	unsigned f_lo, f_hi;
	const char *const *f_names; /* index 0 is f_lo */
};

static const char *const month_names[] = { "jan", "feb", "mar", "apr", "may",
	"jun", "jul", "aug", "sep", "oct", "nov", "dec", NULL };
static const char *const day_names[] = { "sun", "mon", "tue", "wed", "thu",
	"fri", "sat", NULL };

static const struct field fields[5] = {
	{ "minute", 0, 59, NULL },
	{ "hour", 0, 23, NULL },
	{ "day of month", 1, 31, NULL },
	{ "month", 1, 12, month_names },
	{ "day of week", 0, 7, day_names },
};

static int value(const struct field *, const char **, unsigned *);
static int parse_field(
    const struct field *, const char *, size_t, uint64_t *, char *, size_t);
static bool date_matches(const struct cron *, unsigned, unsigned, unsigned);
static bool day_matches(const struct cron *, int64_t);
static int prev_match(const struct cron *, int64_t, int64_t, int64_t *);

/* A number or a name at *sp. */
static int
value(const struct field *f, const char **sp, unsigned *out)
{
	const char *s = *sp;
	unsigned v = 0;
	size_t i;

	if (*s >= '0' && *s <= '9') {
		for (; *s >= '0' && *s <= '9'; s++)
			if ((v = v * 10 + (unsigned)(*s - '0')) > 1000)
				return -1;
		*sp = s;
		*out = v;
		return 0;
	}
	for (i = 0; f->f_names != NULL && f->f_names[i] != NULL; i++)
		if (strncasecmp(s, f->f_names[i], 3) == 0 &&
		    !((s[3] >= 'a' && s[3] <= 'z') ||
		        (s[3] >= 'A' && s[3] <= 'Z'))) {
			*sp = s + 3;
			*out = f->f_lo + (unsigned)i;
			return 0;
		}
	return -1;
}

/* One field, len bytes at s, into bits (bit n = value n). */
static int
parse_field(const struct field *f, const char *s, size_t len, uint64_t *bits,
    char *err, size_t errlen)
{
	char text[64];
	const char *p, *item;
	unsigned lo, hi, step, v;
	bool star;

	if (len >= sizeof(text)) {
		snprintf(err, errlen, "%s field is too long", f->f_name);
		return -1;
	}
	memcpy(text, s, len);
	text[len] = '\0';
	*bits = 0;
	for (item = text;; item = p + 1) {
		p = item;
		star = *p == '*';
		if (star) {
			lo = f->f_lo;
			hi = f->f_hi;
			p++;
		} else {
			if (value(f, &p, &lo) == -1)
				goto bad;
			hi = lo;
			if (*p == '-') {
				p++;
				if (value(f, &p, &hi) == -1)
					goto bad;
			}
		}
		if (lo < f->f_lo || hi > f->f_hi || lo > f->f_hi) {
			snprintf(err, errlen,
			    "%s field \"%s\": values must be %u-%u", f->f_name,
			    text, f->f_lo, f->f_hi);
			return -1;
		}
		if (lo > hi) {
			snprintf(err, errlen,
			    "%s field \"%s\": a range must not run backwards "
			    "(use a list: \"a-max,min-b\")",
			    f->f_name, text);
			return -1;
		}
		step = 1;
		if (*p == '/') {
			if (!star && lo == hi) {
				snprintf(err, errlen,
				    "%s field \"%s\": a step needs a range or "
				    "\"*\" (e.g. \"%u-%u/%s\")",
				    f->f_name, text, lo, f->f_hi, p + 1);
				return -1;
			}
			if (*++p < '0' || *p > '9')
				goto bad;
			for (step = 0; *p >= '0' && *p <= '9'; p++)
				if ((step = step * 10 + (unsigned)(*p - '0')) >
				    1000)
					break;
			if (step == 0 || step > f->f_hi) {
				snprintf(err, errlen,
				    "%s field \"%s\": a step must be 1-%u",
				    f->f_name, text, f->f_hi);
				return -1;
			}
		}
		for (v = lo; v <= hi; v += step)
			*bits |= 1ULL << v;
		if (*p == '\0')
			return 0;
		if (*p != ',')
			goto bad;
	}
bad:
	snprintf(err, errlen,
	    "%s field \"%s\" is not valid (use *, numbers %u-%u%s, ranges "
	    "a-b, steps */n or a-b/n, lists a,b)",
	    f->f_name, text, f->f_lo, f->f_hi,
	    f->f_names == month_names     ? " or JAN-DEC"
	        : f->f_names == day_names ? " or SUN-SAT"
	                                  : "");
	return -1;
}

int
cron_parse(const char *s, struct cron *c, char *err, size_t errlen)
{
	const char *start[5];
	size_t len[5];
	uint64_t bits[5];
	int n = 0, i;

	memset(c, 0, sizeof(*c));
	while (*s != '\0') {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			break;
		if (n == 5) {
			snprintf(err, errlen,
			    "has more than 5 fields (minute hour day-of-month "
			    "month day-of-week; no seconds or years)");
			return -1;
		}
		start[n] = s;
		while (*s != '\0' && *s != ' ' && *s != '\t')
			s++;
		len[n] = (size_t)(s - start[n]);
		n++;
	}
	if (n > 0 && start[0][0] == '@') {
		snprintf(err, errlen,
		    "\"@\" shortcuts are not supported; write the 5 fields");
		return -1;
	}
	if (n != 5) {
		snprintf(err, errlen,
		    "must have 5 fields (minute hour day-of-month month "
		    "day-of-week), not %d",
		    n);
		return -1;
	}
	for (i = 0; i < 5; i++)
		if (parse_field(&fields[i], start[i], len[i], &bits[i], err,
		        errlen) == -1)
			return -1;
	c->cr_minute = bits[0];
	c->cr_hour = (uint32_t)bits[1];
	c->cr_dom = (uint32_t)bits[2];
	c->cr_month = (uint16_t)bits[3];
	/* 7 is Sunday too. */
	c->cr_dow = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
	c->cr_dom_star = start[2][0] == '*';
	c->cr_dow_star = start[4][0] == '*';
	return 0;
}

bool
cron_equal(const struct cron *a, const struct cron *b)
{
	/* The star flags matter only when they change which days match. */
	bool a_or = !a->cr_dom_star && !a->cr_dow_star;
	bool b_or = !b->cr_dom_star && !b->cr_dow_star;

	return a->cr_minute == b->cr_minute && a->cr_hour == b->cr_hour &&
	    a->cr_dom == b->cr_dom && a->cr_month == b->cr_month &&
	    a->cr_dow == b->cr_dow && a_or == b_or;
}

/* The month and the two day fields, by the Vixie rule. */
static bool
date_matches(
    const struct cron *c, unsigned month, unsigned mday, unsigned wday)
{
	bool dom = c->cr_dom >> mday & 1, dow = c->cr_dow >> wday & 1;

	if (!(c->cr_month >> month & 1))
		return false;
	if (c->cr_dom_star || c->cr_dow_star)
		return dom && dow;
	return dom || dow;
}

bool
cron_matches(const struct cron *c, unsigned month, unsigned mday,
    unsigned wday, unsigned hour, unsigned minute)
{
	return (c->cr_minute >> minute & 1) && (c->cr_hour >> hour & 1) &&
	    date_matches(c, month, mday, wday);
}

static bool
day_matches(const struct cron *c, int64_t day)
{
	int64_t y;
	unsigned m, d;

	tz_civil_from_days(day, &y, &m, &d);
	return date_matches(c, m, d, tz_weekday(day));
}

/* The latest local minute (local seconds) <= from that matches c, no
 * further back than floor. */
static int
prev_match(const struct cron *c, int64_t from, int64_t floor, int64_t *out)
{
	int64_t day = tz_floor_div(from, SECS_PER_DAY);
	int64_t sod = from - day * SECS_PER_DAY;
	int h = (int)(sod / 3600), m = (int)(sod % 3600 / 60), mm;

	for (; day * SECS_PER_DAY >= floor - SECS_PER_DAY;
	     day--, h = 23, m = 59) {
		if (!day_matches(c, day))
			continue;
		for (; h >= 0; h--, m = 59) {
			if (!(c->cr_hour >> h & 1))
				continue;
			for (mm = m; mm >= 0; mm--)
				if (c->cr_minute >> mm & 1) {
					*out = day * SECS_PER_DAY + h * 3600 +
					    mm * 60;
					return *out >= floor ? 0 : -1;
				}
		}
	}
	return -1;
}

/*
 * Local times are not monotonic in instants when clocks go back, so the
 * scan starts at the latest local time any instant of the last day had,
 * and once a fire is found it goes on over the local span a transition in
 * that day could fold back (the two offsets' difference).
 */
int
cron_last_fire(
    const struct cron *c, const struct tz *z, int64_t t, int64_t *fire)
{
	int32_t o_now = tz_offset(z, t),
	        o_then = tz_offset(z, t - SECS_PER_DAY);
	int32_t o_hi = o_now > o_then ? o_now : o_then;
	int32_t spread = o_now > o_then ? o_now - o_then : o_then - o_now;
	int64_t floor = t - (int64_t)CRON_HORIZON_DAYS * SECS_PER_DAY;
	int64_t from = tz_floor_div(t + o_hi, 60) * 60, local, u[2];
	int64_t best_local = 0;
	bool found = false;
	int n, i;

	while (prev_match(c, from, floor, &local) == 0) {
		if (found && local < best_local - spread)
			break;
		n = tz_local_to_utc(z, local, u);
		for (i = 0; i < n; i++)
			if (u[i] <= t && (!found || u[i] > *fire)) {
				*fire = u[i];
				best_local = local;
				found = true;
			}
		from = local - 60;
	}
	return found ? 0 : -1;
}
