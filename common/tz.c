/*
 * TZif (RFC 8536) reader.  A zone is its transition times, the UTC offset
 * each one starts, and the footer's POSIX TZ rule for times after the last
 * transition ("slim" files have few transitions and rely on it).  Leap
 * second zones ("right/...") are refused: their times are not POSIX times.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tz.h"
#include "util.h"

#define TZ_OFF_MIN     (-89999) /* RFC 8536 §3.2 bounds on utoff */
#define TZ_OFF_MAX     93599
#define TZ_RULE_HMAX   167 /* hours in a rule time (RFC 8536 §3.3.1) */
#define TZ_TRANS_MAX   100000
#define TZ_SECS_PER_D  86400
#define TZ_HEADER_SIZE 44

struct tz_date {
	char td_kind;    /* 'J' (1..365, no Feb 29), 'D' (0..365), 'M' */
	int td_day;      /* J, D */
	int td_month;    /* M: 1..12 */
	int td_week;     /* M: 1..5, 5 = last */
	int td_wday;     /* M: 0..6 */
	int32_t td_time; /* seconds after local midnight, may be < 0 */
};

struct tz_rule {
	int32_t tr_std; /* east of UTC */
	int32_t tr_dst;
	bool tr_has_dst;
	struct tz_date tr_start, tr_end;
};

struct tz {
	char *tz_name;
	size_t tz_ntrans;
	int64_t *tz_trans; /* ascending */
	int32_t *tz_trans_off;
	int32_t tz_first_off; /* before the first transition */
	bool tz_has_rule;
	struct tz_rule tz_rule;
};

struct tz_header {
	char th_version;
	uint32_t th_isutcnt, th_isstdcnt, th_leapcnt, th_timecnt, th_typecnt,
	    th_charcnt;
};

static uint32_t be32(const unsigned char *);
static int64_t be64(const unsigned char *);
static int header_parse(const unsigned char *, size_t, struct tz_header *);
static size_t block_size(const struct tz_header *, size_t);
static int block_parse(struct tz *, const unsigned char *,
    const struct tz_header *, size_t, const char **);
static const char *rule_name(const char *);
static const char *rule_hms(const char *, int, int32_t *);
static const char *rule_offset(const char *, int32_t *);
static const char *rule_date(const char *, struct tz_date *);
static int rule_parse(const char *, struct tz_rule *);
static bool is_leap(int64_t);
static int64_t rule_local(int64_t, const struct tz_date *);
static int32_t rule_offset_at(const struct tz_rule *, int64_t);
static int name_valid(const char *);

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const unsigned char *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static int
header_parse(const unsigned char *p, size_t len, struct tz_header *h)
{
	if (len < TZ_HEADER_SIZE || memcmp(p, "TZif", 4) != 0)
		return -1;
	h->th_version = (char)p[4];
	h->th_isutcnt = be32(p + 20);
	h->th_isstdcnt = be32(p + 24);
	h->th_leapcnt = be32(p + 28);
	h->th_timecnt = be32(p + 32);
	h->th_typecnt = be32(p + 36);
	h->th_charcnt = be32(p + 40);
	if (h->th_typecnt == 0 || h->th_typecnt > 256 ||
	    h->th_timecnt > TZ_TRANS_MAX || h->th_charcnt > 65536 ||
	    h->th_leapcnt > 65536 ||
	    (h->th_isutcnt != 0 && h->th_isutcnt != h->th_typecnt) ||
	    (h->th_isstdcnt != 0 && h->th_isstdcnt != h->th_typecnt))
		return -1;
	return 0;
}

/* Bytes of the data block after a header, with tsize-byte times. */
static size_t
block_size(const struct tz_header *h, size_t tsize)
{
	return (size_t)h->th_timecnt * (tsize + 1) +
	    (size_t)h->th_typecnt * 6 + h->th_charcnt +
	    (size_t)h->th_leapcnt * (tsize + 4) + h->th_isstdcnt +
	    h->th_isutcnt;
}

static int
block_parse(struct tz *z, const unsigned char *p, const struct tz_header *h,
    size_t tsize, const char **why)
{
	const unsigned char *idx = p + (size_t)h->th_timecnt * tsize;
	const unsigned char *types = idx + h->th_timecnt;
	int32_t *off;
	uint32_t i;

	if (h->th_leapcnt != 0) {
		*why = "has leap seconds (a \"right/\" zone); use the zone "
		       "without them";
		return -1;
	}
	off = xcalloc(h->th_typecnt, sizeof(*off));
	for (i = 0; i < h->th_typecnt; i++) {
		off[i] = (int32_t)be32(types + 6 * i);
		if (off[i] < TZ_OFF_MIN || off[i] > TZ_OFF_MAX) {
			free(off);
			*why = "has a UTC offset out of range";
			return -1;
		}
	}
	z->tz_first_off = off[0];
	z->tz_ntrans = h->th_timecnt;
	z->tz_trans = xcalloc(h->th_timecnt + 1, sizeof(*z->tz_trans));
	z->tz_trans_off = xcalloc(h->th_timecnt + 1, sizeof(*z->tz_trans_off));
	for (i = 0; i < h->th_timecnt; i++) {
		z->tz_trans[i] =
		    tsize == 8 ? be64(p + 8 * i) : (int32_t)be32(p + 4 * i);
		if (idx[i] >= h->th_typecnt ||
		    (i > 0 && z->tz_trans[i] <= z->tz_trans[i - 1])) {
			free(off);
			*why = "has corrupt transitions";
			return -1;
		}
		z->tz_trans_off[i] = off[idx[i]];
	}
	free(off);
	return 0;
}

/* Skips a zone abbreviation: <...> or at least three letters. */
static const char *
rule_name(const char *s)
{
	const char *b = s;

	if (*s == '<') {
		for (s++;
		     (*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		     (*s >= '0' && *s <= '9') || *s == '+' || *s == '-';
		     s++)
			;
		return *s == '>' && s - b >= 4 ? s + 1 : NULL;
	}
	while ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z'))
		s++;
	return s - b >= 3 ? s : NULL;
}

/* [+-]hh[:mm[:ss]] with hh <= hmax, as seconds. */
static const char *
rule_hms(const char *s, int hmax, int32_t *out)
{
	int sign = 1, part, n, i;
	int32_t v = 0;

	if (*s == '+' || *s == '-')
		sign = *s++ == '-' ? -1 : 1;
	for (i = 0; i < 3; i++) {
		if (i > 0) {
			if (*s != ':')
				break;
			s++;
		}
		if (*s < '0' || *s > '9')
			return NULL;
		for (part = 0, n = 0; *s >= '0' && *s <= '9' && n < 3; n++)
			part = part * 10 + (*s++ - '0');
		if ((i == 0 && part > hmax) || (i > 0 && part > 59))
			return NULL;
		v = v * 60 + part;
	}
	while (i++ < 3)
		v *= 60;
	*out = sign * v;
	return s;
}

/* A POSIX offset is west of UTC; ours are east. */
static const char *
rule_offset(const char *s, int32_t *east)
{
	int32_t west;

	if ((s = rule_hms(s, 24, &west)) == NULL)
		return NULL;
	*east = -west;
	return s;
}

static const char *
rule_date(const char *s, struct tz_date *d)
{
	int n;

	memset(d, 0, sizeof(*d));
	d->td_time = 2 * 3600;
	if (*s == 'M') {
		d->td_kind = 'M';
		if (sscanf(s + 1, "%d.%d.%d%n", &d->td_month, &d->td_week,
		        &d->td_wday, &n) != 3 ||
		    d->td_month < 1 || d->td_month > 12 || d->td_week < 1 ||
		    d->td_week > 5 || d->td_wday < 0 || d->td_wday > 6)
			return NULL;
		s += 1 + n;
	} else {
		d->td_kind = *s == 'J' ? 'J' : 'D';
		if (*s == 'J')
			s++;
		if (*s < '0' || *s > '9')
			return NULL;
		for (d->td_day = 0; *s >= '0' && *s <= '9'; s++)
			if ((d->td_day = d->td_day * 10 + (*s - '0')) > 365)
				return NULL;
		if (d->td_kind == 'J' && d->td_day < 1)
			return NULL;
	}
	if (*s == '/' &&
	    (s = rule_hms(s + 1, TZ_RULE_HMAX, &d->td_time)) == NULL)
		return NULL;
	return s;
}

static int
rule_parse(const char *s, struct tz_rule *r)
{
	memset(r, 0, sizeof(*r));
	if ((s = rule_name(s)) == NULL ||
	    (s = rule_offset(s, &r->tr_std)) == NULL)
		return -1;
	if (*s == '\0')
		return 0;
	r->tr_has_dst = true;
	if ((s = rule_name(s)) == NULL)
		return -1;
	r->tr_dst = r->tr_std + 3600;
	if (*s != ',' && *s != '\0' &&
	    (s = rule_offset(s, &r->tr_dst)) == NULL)
		return -1;
	if (*s == '\0') { /* POSIX's default rule: US rules since 2007 */
		rule_date("M3.2.0", &r->tr_start);
		rule_date("M11.1.0", &r->tr_end);
		return 0;
	}
	if (*s++ != ',' || (s = rule_date(s, &r->tr_start)) == NULL ||
	    *s++ != ',' || (s = rule_date(s, &r->tr_end)) == NULL)
		return -1;
	return *s == '\0' ? 0 : -1;
}

static bool
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int64_t
tz_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void
tz_civil_from_days(int64_t z, int64_t *yp, unsigned *mp, unsigned *dp)
{
	int64_t era, doe, yoe, doy, mp5, y;
	unsigned m;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp5 = (5 * doy + 2) / 153;
	*dp = (unsigned)(doy - (153 * mp5 + 2) / 5 + 1);
	m = (unsigned)(mp5 < 10 ? mp5 + 3 : mp5 - 9);
	*mp = m;
	*yp = y + (m <= 2);
}

unsigned
tz_weekday(int64_t days)
{
	int64_t w = (days + 4) % 7; /* 1970-01-01 was a Thursday */

	return (unsigned)(w < 0 ? w + 7 : w);
}

int64_t
tz_floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The local time (as seconds) at which date d of year y happens. */
static int64_t
rule_local(int64_t y, const struct tz_date *d)
{
	static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30,
		31, 30, 31 };
	int64_t day = tz_days_from_civil(y, 1, 1);
	unsigned first, mday, len;

	switch (d->td_kind) {
	case 'J':
		day += d->td_day - 1 + (is_leap(y) && d->td_day >= 60);
		break;
	case 'D':
		day += d->td_day;
		break;
	default:
		day = tz_days_from_civil(y, (unsigned)d->td_month, 1);
		first = tz_weekday(day);
		len =
		    mdays[d->td_month - 1] + (d->td_month == 2 && is_leap(y));
		mday = 1 + ((unsigned)d->td_wday + 7 - first) % 7 +
		    7 * (unsigned)(d->td_week - 1);
		while (mday > len)
			mday -= 7;
		day += mday - 1;
		break;
	}
	return day * TZ_SECS_PER_D + d->td_time;
}

static int32_t
rule_offset_at(const struct tz_rule *r, int64_t t)
{
	int64_t y, start, end;
	unsigned m, d;

	if (!r->tr_has_dst)
		return r->tr_std;
	tz_civil_from_days(
	    tz_floor_div(t + r->tr_std, TZ_SECS_PER_D), &y, &m, &d);
	start = rule_local(y, &r->tr_start) - r->tr_std;
	end = rule_local(y, &r->tr_end) - r->tr_dst;
	if (start < end)
		return t >= start && t < end ? r->tr_dst : r->tr_std;
	return t >= end && t < start ? r->tr_std : r->tr_dst;
}

int32_t
tz_offset(const struct tz *z, int64_t t)
{
	size_t lo, hi, mid;

	if (z == NULL)
		return 0;
	if (z->tz_ntrans == 0)
		return z->tz_has_rule ? rule_offset_at(&z->tz_rule, t)
		                      : z->tz_first_off;
	if (t < z->tz_trans[0])
		return z->tz_first_off;
	lo = 0;
	hi = z->tz_ntrans; /* invariant: trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		mid = lo + (hi - lo) / 2;
		if (z->tz_trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	if (lo == z->tz_ntrans - 1 && z->tz_has_rule)
		return rule_offset_at(&z->tz_rule, t);
	return z->tz_trans_off[lo];
}

/* Offsets a day either side bracket any transition near local (offsets
 * are below a day), so both candidate instants are found. */
int
tz_local_to_utc(const struct tz *z, int64_t local, int64_t out[2])
{
	int32_t before = tz_offset(z, local - TZ_SECS_PER_D);
	int32_t after = tz_offset(z, local + TZ_SECS_PER_D);
	int64_t u;
	int n = 0;

	u = local - before;
	if (tz_offset(z, u) == before)
		out[n++] = u;
	if (after != before) {
		u = local - after;
		if (tz_offset(z, u) == after) {
			if (n == 1 && u < out[0]) {
				out[1] = out[0];
				out[0] = u;
			} else
				out[n] = u;
			n++;
		}
	}
	return n;
}

struct tz *
tz_parse(const char *name, const unsigned char *buf, size_t len, char *err,
    size_t errlen)
{
	struct tz_header h;
	const char *why = "is not a TZif file";
	const unsigned char *p = buf, *nl;
	struct tz *z = xcalloc(1, sizeof(*z));
	size_t need, tsize = 4;
	char footer[256];

	z->tz_name = xstrdup(name);
	if (header_parse(p, len, &h) == -1)
		goto fail;
	need = TZ_HEADER_SIZE + block_size(&h, 4);
	if (h.th_version >= '2') {
		/* Skip the 32-bit block; the 64-bit one follows. */
		if (len < need)
			goto fail;
		p += need;
		len -= need;
		if (header_parse(p, len, &h) == -1)
			goto fail;
		tsize = 8;
		need = TZ_HEADER_SIZE + block_size(&h, 8);
	}
	if (len < need)
		goto fail;
	if (block_parse(z, p + TZ_HEADER_SIZE, &h, tsize, &why) == -1)
		goto fail;
	if (tsize == 8 && len > need && p[need] == '\n') {
		p += need + 1;
		len -= need + 1;
		if ((nl = memchr(p, '\n', len)) == NULL ||
		    (size_t)(nl - p) >= sizeof(footer)) {
			why = "has a corrupt footer";
			goto fail;
		}
		memcpy(footer, p, (size_t)(nl - p));
		footer[nl - p] = '\0';
		if (footer[0] != '\0') {
			if (rule_parse(footer, &z->tz_rule) == -1) {
				why = "has a TZ rule this reader does not "
				      "understand";
				goto fail;
			}
			z->tz_has_rule = true;
		}
	}
	return z;
fail:
	snprintf(err, errlen, "%s", why);
	tz_free(z);
	return NULL;
}

/* Names as IANA writes them; no "." or ".." component, nothing absolute. */
static int
name_valid(const char *s)
{
	const char *c;
	size_t n = strlen(s), clen;

	if (n == 0 || n > TZ_NAME_MAX)
		return 0;
	for (c = s;; c += clen + 1) {
		clen = strcspn(c, "/");
		if (clen == 0 || (clen == 1 && c[0] == '.') ||
		    (clen == 2 && c[0] == '.' && c[1] == '.'))
			return 0;
		if (strspn(c,
		        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		        "0123456789._+-") < clen)
			return 0;
		if (c[clen] == '\0')
			return 1;
	}
}

struct tz *
tz_load(const char *name, char *err, size_t errlen)
{
	const char *dir = getenv("TZDIR");
	char path[1024], why[128];
	unsigned char *buf;
	struct tz *z;
	size_t len;

	if (strcmp(name, "UTC") == 0) {
		z = xcalloc(1, sizeof(*z));
		z->tz_name = xstrdup(name);
		return z;
	}
	if (!name_valid(name)) {
		snprintf(err, errlen,
		    "is not a time zone name (an IANA name "
		    "such as \"Europe/Berlin\" or \"UTC\")");
		return NULL;
	}
	if (dir == NULL || *dir == '\0')
		dir = TZ_DIR_DEFAULT;
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((buf = (unsigned char *)read_file(path, TZ_FILE_MAX, &len)) ==
	    NULL) {
		if (errno == ENOENT || errno == ENOTDIR)
			snprintf(err, errlen,
			    "unknown time zone (no file %s; is the tzdata "
			    "package installed?)",
			    path);
		else if (errno == EISDIR)
			snprintf(err, errlen,
			    "is a region, not a time zone (%s is a directory)",
			    path);
		else
			snprintf(err, errlen, "cannot read %s: %s", path,
			    strerror(errno));
		return NULL;
	}
	if ((z = tz_parse(name, buf, len, why, sizeof(why))) == NULL)
		snprintf(err, errlen, "not a time zone: %s %s", path, why);
	free(buf);
	return z;
}

void
tz_free(struct tz *z)
{
	if (z == NULL)
		return;
	free(z->tz_name);
	free(z->tz_trans);
	free(z->tz_trans_off);
	free(z);
}

const char *
tz_name(const struct tz *z)
{
	return z == NULL ? "UTC" : z->tz_name;
}
