/* Go-style durations: "300ms", "1.5h", "2h45m", "10m0s", "0". */
#ifndef RP_DURATION_H
#define RP_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* duration.c */
/* Parses s into nanoseconds.  Negative durations are rejected.  Returns 0,
 * or -1 with a short reason ("unknown unit \"d\"") in err. */
int duration_parse(const char *s, uint64_t *ns, char *err, size_t errlen);
/* Formats ms the way Go prints a Duration ("1m30s", "250ms", "0s"). */
void duration_format_ms(uint64_t ms, char *buf, size_t size);

#endif
