/*
 * IANA time zones read from TZif files (RFC 8536), one object per zone, so
 * that schedules in different zones need no process-global TZ/tzset().
 * Times are seconds since the epoch (UTC) or "local seconds": the local
 * wall-clock time written as if it were UTC.
 */
#ifndef RP_TZ_H
#define RP_TZ_H

#include <stddef.h>
#include <stdint.h>

#define TZ_DIR_DEFAULT "/usr/share/zoneinfo"
#define TZ_NAME_MAX    255
#define TZ_FILE_MAX    (256 * 1024)

struct tz;

/* tz.c */
/* Loads zone name ("UTC" needs no file; others from $TZDIR or
 * TZ_DIR_DEFAULT).  Returns a new zone (tz_free), or NULL with a reason in
 * err ("unknown time zone", "not a TZif file", ...). */
struct tz *tz_load(const char *name, char *err, size_t errlen);
/* As tz_load, from the bytes of a TZif file; name is kept for messages. */
struct tz *tz_parse(const char *name, const unsigned char *buf, size_t len,
    char *err, size_t errlen);
void tz_free(struct tz *);
/* Borrowed: the name the zone was loaded as. */
const char *tz_name(const struct tz *);
/* Seconds east of UTC in effect at t; a NULL zone is UTC. */
int32_t tz_offset(const struct tz *, int64_t t);
/* The instants whose local time is local: 0 in a gap (spring forward), 2
 * in an overlap (fall back, earlier first), else 1.  Fills out[0..n-1]. */
int tz_local_to_utc(const struct tz *, int64_t local, int64_t out[2]);

/* Proleptic Gregorian calendar helpers (days since 1970-01-01). */
int64_t tz_days_from_civil(int64_t y, unsigned m, unsigned d);
void tz_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);
/* 0 = Sunday. */
unsigned tz_weekday(int64_t days);
/* a / b rounded towards minus infinity. */
int64_t tz_floor_div(int64_t a, int64_t b);

#endif
