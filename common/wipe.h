/*
 * Tokens pass through libraries too: libcurl copies request headers, jansson
 * holds the strings of every document it parses or builds (Secret lists,
 * user data), OpenSSL decrypts answers in its record buffers.  These
 * allocators wipe each block before freeing it, so a freed copy does not
 * linger in the heap (or a core dump).
 */
#ifndef RP_WIPE_H
#define RP_WIPE_H

#include <stddef.h>

/* wipe.c */
void *wipe_malloc(size_t);
void *wipe_calloc(size_t, size_t);
/* Moves to a new block and wipes the old one (realloc would not). */
void *wipe_realloc(void *, size_t);
char *wipe_strdup(const char *);
void wipe_free(void *);
/* jansson allocates through wipe_malloc/wipe_free from now on.  Call before
 * the first JSON value is made. */
void wipe_json_init(void);

/* Zeroes the stack below the caller, where parsing and formatting left
 * copies (and libraries' lazy binding saved vector registers, which string
 * functions leave holding token bytes).  Call after handling secrets. */
#define WIPE_STACK_BYTES (64 * 1024)
void wipe_stack(void);

#endif
