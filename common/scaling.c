/*
 * The pieces of the scaling decision that need memory or a clock: which
 * schedule is active, the task arrival rate and VM boot time behind
 * "headroom: auto", and the scale-down hold.  All of it is plain
 * arithmetic on caller-owned state; nothing here reads a clock.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "scaling.h"
#include "tz.h"

void
scale_policy_init(struct scale_policy *p)
{
	memset(p, 0, sizeof(*p));
}

void
scale_policy_clear(struct scale_policy *p)
{
	size_t i;

	for (i = 0; i < p->sp_nschedules; i++) {
		free(p->sp_schedules[i].ss_name);
		tz_free(p->sp_schedules[i].ss_tz);
	}
	free(p->sp_schedules);
	memset(p, 0, sizeof(*p));
}

bool
scale_schedule_active(const struct scale_schedule *s, int64_t t)
{
	int64_t start, end;

	if (cron_last_fire(&s->ss_start, s->ss_tz, t, &start) == -1)
		return false;
	if (cron_last_fire(&s->ss_end, s->ss_tz, t, &end) == -1)
		return true;
	return start > end;
}

int
scale_controls_at(
    const struct scale_policy *p, int64_t wall_ms, struct scale_controls *out)
{
	const struct scale_schedule *s;
	int64_t t = wall_ms / 1000 - (wall_ms % 1000 < 0);
	size_t i;

	*out = p->sp_base;
	for (i = 0; i < p->sp_nschedules; i++) {
		s = &p->sp_schedules[i];
		if (!scale_schedule_active(s, t))
			continue;
		/* Omitted controls keep the baseline, not a later schedule. */
		if (s->ss_set & SCALE_CTL_MIN)
			out->sc_min = s->ss_ctl.sc_min;
		if (s->ss_set & SCALE_CTL_MAX)
			out->sc_max = s->ss_ctl.sc_max;
		if (s->ss_set & SCALE_CTL_HEADROOM)
			out->sc_headroom = s->ss_ctl.sc_headroom;
		if (s->ss_set & SCALE_CTL_SURGE)
			out->sc_max_surge = s->ss_ctl.sc_max_surge;
		if (s->ss_set & SCALE_CTL_DELAY)
			out->sc_delay_ms = s->ss_ctl.sc_delay_ms;
		return (int)i;
	}
	return -1;
}

void
scale_state_init(struct scale_state *st)
{
	memset(st, 0, sizeof(*st));
}

void
scale_note_boot(struct scale_boot *b, uint64_t boot_ms)
{
	/* 0 is a boot within the timestamps' one-second resolution. */
	if (boot_ms > SCALE_BOOT_SAMPLE_MAX)
		return;
	if (b->sb_samples++ == 0)
		b->sb_ms = (double)boot_ms;
	else
		b->sb_ms += SCALE_BOOT_ALPHA * ((double)boot_ms - b->sb_ms);
}

bool
scale_boot_known(const struct scale_boot *b)
{
	return b != NULL && b->sb_samples > 0;
}

uint64_t
scale_boot_ms(const struct scale_boot *b)
{
	return scale_boot_known(b) ? (uint64_t)(b->sb_ms + 0.5) : 0;
}

/* The smoothing window follows the boot time: what matters is the rate
 * over the last few boots, whatever a boot takes. */
static double
rate_tau_ms(const struct scale_boot *b)
{
	double tau = scale_boot_known(b) ? SCALE_RATE_BOOTS * b->sb_ms
	                                 : SCALE_RATE_TAU_DEFAULT;

	return tau < 1 ? 1 : tau;
}

static double
decayed(
    const struct scale_state *st, const struct scale_boot *b, uint64_t now_ms)
{
	if (now_ms <= st->ss_decay_ms)
		return st->ss_arrivals;
	return st->ss_arrivals *
	    exp(-(double)(now_ms - st->ss_decay_ms) / rate_tau_ms(b));
}

/*
 * Between two observations: unclaimed' = unclaimed + arrivals - claims and
 * running' = running + claims - completions, so arrivals >= d(unclaimed) +
 * max(0, d(running)).  Polls are frequent next to job lengths, so claims
 * and completions rarely meet in one interval and the bound is close.
 */
void
scale_note_demand(struct scale_state *st, const struct scale_boot *b,
    uint64_t obs_ms, uint32_t unclaimed, uint32_t running, uint64_t now_ms)
{
	int64_t a;

	if (st->ss_have_prev && obs_ms == st->ss_obs_ms)
		return;
	st->ss_arrivals = decayed(st, b, now_ms);
	st->ss_decay_ms = now_ms;
	if (st->ss_have_prev) {
		a = (int64_t)unclaimed - st->ss_prev_unclaimed;
		if (running > st->ss_prev_running)
			a += (int64_t)running - st->ss_prev_running;
		if (a > 0)
			st->ss_arrivals += (double)a;
	}
	st->ss_have_prev = true;
	st->ss_obs_ms = obs_ms;
	st->ss_prev_unclaimed = unclaimed;
	st->ss_prev_running = running;
}

double
scale_rate_per_min(
    const struct scale_state *st, const struct scale_boot *b, uint64_t now_ms)
{
	return decayed(st, b, now_ms) / rate_tau_ms(b) * 60000.0;
}

uint32_t
scale_auto_headroom(
    const struct scale_state *st, const struct scale_boot *b, uint64_t now_ms)
{
	double spare;

	if (!scale_boot_known(b))
		return 0;
	spare = decayed(st, b, now_ms) / rate_tau_ms(b) * b->sb_ms;
	if (spare < 0.05) /* the tail of an old burst */
		return 0;
	if (spare >= (double)UINT32_MAX - 1)
		return UINT32_MAX - 1;
	return (uint32_t)ceil(spare);
}

uint32_t
scale_hold(
    struct scale_state *st, uint32_t desired, uint64_t delay_ms, uint64_t now)
{
	unsigned n;

	if (delay_ms == 0) {
		st->ss_nhold = 0;
		return desired;
	}
	/* Expire from the front (highest, oldest). */
	for (n = 0;
	     n < st->ss_nhold && st->ss_hold[n].h_at_ms + delay_ms <= now; n++)
		;
	if (n > 0) {
		memmove(st->ss_hold, st->ss_hold + n,
		    (st->ss_nhold - n) * sizeof(st->ss_hold[0]));
		st->ss_nhold -= n;
	}
	/* A new level replaces every lower or equal one after it. */
	while (st->ss_nhold > 0 &&
	    st->ss_hold[st->ss_nhold - 1].h_value <= desired)
		st->ss_nhold--;
	if (st->ss_nhold == SCALE_HOLD_STEPS)
		/* Out of steps: keep the lowest one longer (never sheds VMs
		 * sooner than the delay allows). */
		st->ss_hold[st->ss_nhold - 1].h_at_ms = now;
	else {
		st->ss_hold[st->ss_nhold].h_value = desired;
		st->ss_hold[st->ss_nhold].h_at_ms = now;
		st->ss_nhold++;
	}
	return st->ss_hold[0].h_value;
}
