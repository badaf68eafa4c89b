/*
 * The CircleCI request budget.  Requests leave through a GCRA pacer (the
 * "theoretical arrival time" moves 1/rate per request), so they go out
 * evenly, never in a burst of more than BUDGET_BURST_MS worth.  The rate
 * is the lowest of: the AIMD rate (--max-requests-per-second, halved by a
 * 429, grown back by max/BUDGET_GROW_STEPS each second), the limit CircleCI
 * advertises (RateLimit-Limit with a window, X-RateLimit-Limit-<window>),
 * and the remaining quota spread over the time until it resets
 * (RateLimit-Remaining / RateLimit-Reset, or X-RateLimit-Remaining-<window>
 * over that window).  CircleCI publishes no number for these endpoints;
 * these headers are what its API gateway may send (research/circleci.md
 * §1.5).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "poller.h"

void
budget_init(struct budget *b, double max_rps, uint64_t now)
{
	memset(b, 0, sizeof(*b));
	b->bg_max_rps = max_rps;
	b->bg_aimd_rps = max_rps;
	b->bg_tat_ms = (double)now;
	b->bg_grown_ms = now;
}

static double
floor_rps(const struct budget *b)
{
	return b->bg_max_rps < BUDGET_FLOOR_RPS ? b->bg_max_rps
	                                        : BUDGET_FLOOR_RPS;
}

double
budget_rate(const struct budget *b, uint64_t now)
{
	double r = b->bg_aimd_rps;

	if (b->bg_limit_rps > 0 &&
	    now - b->bg_limit_seen_ms <= BUDGET_LIMIT_TTL_MS &&
	    b->bg_limit_rps < r)
		r = b->bg_limit_rps;
	if (now < b->bg_pace_until_ms && b->bg_pace_rps < r)
		r = b->bg_pace_rps;
	return r;
}

/* The GCRA time, with the last charge re-priced at the current rate when
 * that is higher: a request charged while the rate was tiny (a quota
 * nearly gone) does not hold the next one back once the rate is up. */
static double
arrival(const struct budget *b, double rate)
{
	if (b->bg_last_cost == 0 || rate <= b->bg_last_rps)
		return b->bg_tat_ms;
	return b->bg_tat_ms - b->bg_last_cost * 1000.0 / b->bg_last_rps +
	    b->bg_last_cost * 1000.0 / rate;
}

uint64_t
budget_ready_at(const struct budget *b, uint64_t now)
{
	double rate = budget_rate(b, now), at;

	if (rate <= 0)
		return b->bg_pace_until_ms; /* quota gone until its reset */
	at = ceil(arrival(b, rate) - BUDGET_BURST_MS);
	return at > (double)now ? (uint64_t)at : now;
}

bool
budget_take(struct budget *b, unsigned n, uint64_t now)
{
	double rate = budget_rate(b, now), t;

	if (rate <= 0 || budget_ready_at(b, now) > now)
		return false;
	t = arrival(b, rate);
	if (t < (double)now)
		t = (double)now;
	b->bg_tat_ms = t + n * 1000.0 / rate;
	b->bg_last_rps = rate;
	b->bg_last_cost = n;
	return true;
}

bool
budget_tick(struct budget *b, uint64_t now)
{
	uint64_t steps, last = b->bg_grown_ms;

	if (b->bg_aimd_rps >= b->bg_max_rps) {
		b->bg_grown_ms = now;
		return false;
	}
	if (b->bg_decreased_ms > last)
		last = b->bg_decreased_ms;
	if (now < last + BUDGET_GROW_MS)
		return false;
	steps = (now - last) / BUDGET_GROW_MS;
	b->bg_aimd_rps += (double)steps * b->bg_max_rps / BUDGET_GROW_STEPS;
	b->bg_grown_ms = last + steps * BUDGET_GROW_MS;
	if (b->bg_aimd_rps >= b->bg_max_rps) {
		b->bg_aimd_rps = b->bg_max_rps;
		return true;
	}
	return false;
}

int
budget_answer(struct budget *b, long status, uint64_t sent_ms,
    const struct rl_headers *h, uint64_t now)
{
	double pace, remaining, reset_s;
	int ev = 0;

	/* Answers to requests that left before the last halving saw the old
	 * rate: one halving per round trip, not one per answer. */
	if (status == 429 &&
	    (b->bg_decreases == 0 || sent_ms >= b->bg_decreased_ms)) {
		b->bg_aimd_rps /= 2;
		if (b->bg_aimd_rps < floor_rps(b))
			b->bg_aimd_rps = floor_rps(b);
		b->bg_decreased_ms = now;
		b->bg_decreases++;
		ev |= BUDGET_EV_DECREASED;
	}
	if (h == NULL || !h->rh_seen)
		return ev;
	if (h->rh_limit_rps > 0) {
		if (fabs(h->rh_limit_rps - b->bg_limit_rps) >
		    0.01 * h->rh_limit_rps)
			ev |= BUDGET_EV_LIMIT;
		b->bg_limit_rps = h->rh_limit_rps;
		b->bg_limit_seen_ms = now;
	}
	if (h->rh_have_remaining && h->rh_have_reset) {
		remaining = (double)h->rh_remaining;
		reset_s = h->rh_reset_s;
	} else if (h->rh_win_s > 0) {
		remaining = h->rh_win_remaining;
		reset_s = h->rh_win_s;
	} else
		return ev;
	if (reset_s > BUDGET_RESET_MAX_S)
		reset_s = BUDGET_RESET_MAX_S;
	if (reset_s <= 0) {
		b->bg_pace_until_ms = 0; /* the window resets now */
		return ev;
	}
	pace = remaining / reset_s;
	if (pace <= 0 && (now >= b->bg_pace_until_ms || b->bg_pace_rps > 0))
		ev |= BUDGET_EV_PAUSED;
	b->bg_pace_rps = pace;
	b->bg_pace_until_ms = now + (uint64_t)(reset_s * 1000);
	return ev;
}

/* A non-negative decimal number, the whole of s[0..len). */
static int
number(const char *s, size_t len, double *out)
{
	char tmp[32], *end;
	size_t i;

	if (len == 0 || len >= sizeof(tmp))
		return -1;
	for (i = 0; i < len; i++)
		if ((s[i] < '0' || s[i] > '9') && s[i] != '.')
			return -1;
	memcpy(tmp, s, len);
	tmp[len] = '\0';
	*out = strtod(tmp, &end);
	return *end == '\0' && isfinite(*out) ? 0 : -1;
}

static bool
named(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

static double
window_s(const char *suffix, size_t len)
{
	if (named(suffix, len, "second"))
		return 1;
	if (named(suffix, len, "minute"))
		return 60;
	if (named(suffix, len, "hour"))
		return 3600;
	if (named(suffix, len, "day"))
		return 86400;
	return 0;
}

static void
limit(struct rl_headers *h, double rps)
{
	if (rps > 0 && (h->rh_limit_rps == 0 || rps < h->rh_limit_rps))
		h->rh_limit_rps = rps;
}

/* "RateLimit-Limit: 100, 100;w=60, 10;w=1": the items with a window. */
static void
limit_list(struct rl_headers *h, const char *v, size_t len)
{
	const char *item, *end = v + len, *semi, *next, *w;
	double n, win;

	for (item = v; item < end; item = next + 1) {
		if ((next = memchr(item, ',', (size_t)(end - item))) == NULL)
			next = end;
		while (item < next && *item == ' ')
			item++;
		semi = memchr(item, ';', (size_t)(next - item));
		if (semi == NULL ||
		    number(item, (size_t)(semi - item), &n) == -1)
			continue;
		for (w = semi; w != NULL && w < next;
		     w = memchr(w + 1, ';', (size_t)(next - w - 1))) {
			const char *p = w + 1, *q;
			while (p < next && *p == ' ')
				p++;
			if (next - p < 2 || strncasecmp(p, "w=", 2) != 0)
				continue;
			for (q = p + 2; q < next && *q != ';' && *q != ' ';
			     q++)
				;
			if (number(p + 2, (size_t)(q - p - 2), &win) == 0 &&
			    win > 0)
				limit(h, n / win);
		}
	}
}

void
budget_header(struct rl_headers *h, const char *name, size_t nlen,
    const char *v, size_t vlen, int64_t wall_s)
{
	const char *base = name;
	size_t blen = nlen, comma;
	double n, win;

	if (nlen == 0) { /* a status line: a new answer */
		memset(h, 0, sizeof(*h));
		return;
	}
	if (blen > 2 && strncasecmp(base, "x-", 2) == 0) {
		base += 2;
		blen -= 2;
	}
	if (blen < 9 || strncasecmp(base, "ratelimit", 9) != 0)
		return;
	/* A list's first item is the value that applies now. */
	for (comma = 0; comma < vlen && v[comma] != ','; comma++)
		;
	if (named(base, blen, "ratelimit-limit")) {
		h->rh_seen = true;
		limit_list(h, v, vlen);
	} else if (blen > 16 &&
	    strncasecmp(base, "ratelimit-limit-", 16) == 0) {
		if ((win = window_s(base + 16, blen - 16)) > 0 &&
		    number(v, comma, &n) == 0) {
			h->rh_seen = true;
			limit(h, n / win);
		}
	} else if (named(base, blen, "ratelimit-remaining")) {
		if (number(v, comma, &n) == 0 && n == floor(n)) {
			h->rh_seen = true;
			h->rh_have_remaining = true;
			h->rh_remaining = (uint64_t)n;
		}
	} else if (blen > 20 &&
	    strncasecmp(base, "ratelimit-remaining-", 20) == 0) {
		if ((win = window_s(base + 20, blen - 20)) > 0 &&
		    number(v, comma, &n) == 0 &&
		    (h->rh_win_s == 0 ||
		        n / win < h->rh_win_remaining / h->rh_win_s)) {
			h->rh_seen = true;
			h->rh_win_remaining = n;
			h->rh_win_s = win;
		}
	} else if (named(base, blen, "ratelimit-reset")) {
		if (number(v, comma, &n) == 0) {
			/* Seconds to go; some servers send the epoch time. */
			if (n > 1e9)
				n = n > (double)wall_s ? n - (double)wall_s
				                       : 0;
			h->rh_seen = true;
			h->rh_have_reset = true;
			h->rh_reset_s = n;
		}
	}
}
