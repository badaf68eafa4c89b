/* Capped exponential backoff with jitter. */
#ifndef RP_BACKOFF_H
#define RP_BACKOFF_H

#include <stdint.h>

struct backoff {
	uint64_t b_base_ms;
	uint64_t b_cap_ms;
	unsigned int b_attempt; /* failures since the last reset */
};

/* backoff.c */
void backoff_init(struct backoff *, uint64_t base_ms, uint64_t cap_ms);
/* Delay before the next attempt: the nominal step min(cap, base * 2^n)
 * jittered into [step/2, step]; then n advances. */
uint64_t backoff_next(struct backoff *);
/* The nominal step the next call would jitter (no jitter, no advance). */
uint64_t backoff_peek(const struct backoff *);
void backoff_reset(struct backoff *);

#endif
