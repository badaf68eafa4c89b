/* A growable byte buffer, always NUL-terminated.  Bodies and documents
 * that pass through one may hold tokens: growing, resetting and freeing
 * wipe what they drop. */
#ifndef RP_BUF_H
#define RP_BUF_H

#include <stddef.h>

struct buf {
	char *b_data; /* owned; NULL until first append */
	size_t b_len;
	size_t b_cap;
};

/* buf.c */
void buf_append(struct buf *, const void *, size_t);
void buf_puts(struct buf *, const char *);
void buf_printf(struct buf *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *); /* keeps the allocation */
void buf_free(struct buf *);
/* Returns the contents as a C string ("" when empty); borrowed. */
const char *buf_str(const struct buf *);
/* Takes the contents (caller frees) and leaves b empty. */
char *buf_take(struct buf *);

#endif
