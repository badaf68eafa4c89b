#include "backoff.h"
#include "util.h"

void
backoff_init(struct backoff *b, uint64_t base_ms, uint64_t cap_ms)
{
	b->b_base_ms = base_ms;
	b->b_cap_ms = cap_ms < base_ms ? base_ms : cap_ms;
	b->b_attempt = 0;
}

uint64_t
backoff_peek(const struct backoff *b)
{
	uint64_t step = b->b_base_ms;
	unsigned int i;

	for (i = 0; i < b->b_attempt && step < b->b_cap_ms; i++)
		step *= 2;
	return step < b->b_cap_ms ? step : b->b_cap_ms;
}

uint64_t
backoff_next(struct backoff *b)
{
	uint64_t step = backoff_peek(b);

	if (b->b_attempt < 64)
		b->b_attempt++;
	return rng_range(step / 2, step);
}

void
backoff_reset(struct backoff *b)
{
	b->b_attempt = 0;
}
