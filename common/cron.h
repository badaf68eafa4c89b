/*
 * Five-field cron expressions as Vixie cron reads them ("minute hour
 * day-of-month month day-of-week"): *, lists, ranges, steps on a range or
 * *, month and day names (case-insensitive), day-of-week 0-7 with 0 and 7
 * both Sunday.  When both day fields are restricted (neither starts with
 * "*"), a day matches if either does.
 */
#ifndef RP_CRON_H
#define RP_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tz;

#define CRON_HORIZON_DAYS (4 * 366 + 7) /* finds a yearly 29 Feb too */

struct cron {
	uint64_t cr_minute; /* bit n: minute n (0-59) */
	uint32_t cr_hour;   /* 0-23 */
	uint32_t cr_dom;    /* 1-31 */
	uint16_t cr_month;  /* 1-12 */
	uint8_t cr_dow;     /* 0-6, Sunday 0 */
	bool cr_dom_star;   /* the field starts with "*" */
	bool cr_dow_star;
};

/* cron.c */
/* Parses s.  Returns 0, or -1 with a reason naming the field in err. */
int cron_parse(const char *s, struct cron *, char *err, size_t errlen);
/* 1 if both expressions match exactly the same minutes. */
bool cron_equal(const struct cron *, const struct cron *);
/* Whether the local date and time match (wday 0 = Sunday). */
bool cron_matches(const struct cron *, unsigned month, unsigned mday,
    unsigned wday, unsigned hour, unsigned minute);
/*
 * The latest instant <= t (seconds since the epoch) whose local time in z
 * (NULL: UTC) is a minute matching c, within CRON_HORIZON_DAYS.  A local
 * time skipped by a DST change never matches; one repeated matches twice.
 * Returns 0 with *fire set, or -1 when there is none in the horizon.
 */
int cron_last_fire(
    const struct cron *c, const struct tz *z, int64_t t, int64_t *fire);

#endif
