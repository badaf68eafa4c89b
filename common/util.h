/* Small helpers every process uses: allocation, clocks, strings. */
#ifndef RP_UTIL_H
#define RP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

/* Exit codes are a protocol between a child and its supervisor. */
#define EXIT_PERMFAIL 100 /* bad configuration: do not restart */
#define EXIT_TEMPFAIL 111 /* transient: restart with backoff */

/* util.c */
/* Allocation that cannot fail: out of memory is fatal. */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xrealloc(void *, size_t, size_t);
/* For memory that may hold a secret: the old block is wiped before it is
 * freed (realloc would leave it as it was).  free_wipe(NULL, n): no-op. */
void *xrealloc_wipe(void *old, size_t oldsize, size_t newsize);
void free_wipe(void *, size_t size);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
/* Returns a newly allocated string; caller frees. */
char *xasprintf(const char *, ...) __attribute__((format(printf, 1, 2)));

uint64_t now_ms(void);  /* CLOCK_MONOTONIC, milliseconds */
uint64_t now_us(void);  /* CLOCK_MONOTONIC, microseconds */
uint64_t wall_ms(void); /* CLOCK_REALTIME, milliseconds */
/* Milliseconds until deadline (0 if past), capped at INT32_MAX. */
int ms_until(uint64_t deadline_ms, uint64_t now);

/* Copies src into dst (size bytes, NUL-terminated); returns strlen(src). */
size_t strlcpy_rp(char *dst, const char *src, size_t size);
/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
size_t utf8_seq_len(const unsigned char *s, size_t n);
/* Copies src into dst (size bytes, NUL-terminated) as valid UTF-8: a
 * sequence that does not fit is left out whole and an invalid byte
 * becomes '?', so the result is always a JSON-safe string.  Returns the
 * length written. */
size_t utf8_copy(char *dst, const char *src, size_t size);
/* Removes trailing whitespace in place; returns s. */
char *rstrip(char *s);
/* Reads a whole file (at most max bytes) into a new NUL-terminated buffer.
 * Returns NULL with errno set (EFBIG when larger than max).  Every copy it
 * drops on the way is wiped (it reads tokens and configuration). */
char *read_file(const char *path, size_t max, size_t *lenp);
/* The same from an open descriptor, read to its end and closed. */
char *read_fd(int fd, size_t max, size_t *lenp);

/* A small xorshift generator; seeded per process. */
void rng_seed(uint64_t);
uint64_t rng_next(void);
/* Uniform in [lo, hi]. */
uint64_t rng_range(uint64_t lo, uint64_t hi);

/* A replica's name in a Lease, as controller-runtime makes one: the host
 * name (a pod's name), characters other than [A-Za-z0-9.-] as '-', then
 * '_' and 8 random hex digits (rng_next). */
void host_identity(char *out, size_t size);

#endif
