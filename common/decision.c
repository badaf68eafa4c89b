#include <string.h>

#include "decision.h"

uint32_t
decision_desired(uint32_t unclaimed, uint32_t running, uint32_t headroom,
    uint32_t min, uint32_t max)
{
	uint64_t sum = (uint64_t)unclaimed + running;

	if (sum > 0)
		sum += headroom;
	if (sum < min)
		return min;
	if (sum > max)
		return max;
	return (uint32_t)sum;
}

uint32_t
decision_level(const struct scale_policy *p, uint32_t unclaimed,
    uint32_t running, int64_t wall_ms)
{
	struct scale_controls c;

	scale_controls_at(p, wall_ms, &c);
	return decision_desired(unclaimed, running,
	    c.sc_headroom == SCALE_HEADROOM_AUTO ? 0 : c.sc_headroom, c.sc_min,
	    c.sc_max);
}

void
decide(const struct decision_input *in, struct scale_state *st,
    struct decision *out)
{
	const struct scale_controls *c = &out->d_controls;
	uint64_t cap;
	uint32_t h;

	memset(out, 0, sizeof(*out));
	out->d_action = DECIDE_HOLD;
	out->d_schedule =
	    scale_controls_at(in->di_policy, in->di_wall_ms, &out->d_controls);
	if (!in->di_have_demand) {
		out->d_reason = REASON_NO_DEMAND;
		return;
	}
	if (in->di_demand_age_ms > in->di_stale_after_ms) {
		out->d_reason = REASON_STALE;
		return;
	}
	if (!in->di_demand_ok) {
		out->d_reason = REASON_FAILED;
		return;
	}
	out->d_action = DECIDE_SCALE;
	out->d_reason = REASON_DEMAND;
	scale_note_demand(st, in->di_boot, in->di_demand_at_ms,
	    in->di_unclaimed, in->di_running, in->di_now_ms);
	h = c->sc_headroom == SCALE_HEADROOM_AUTO
	    ? scale_auto_headroom(st, in->di_boot, in->di_now_ms)
	    : c->sc_headroom;
	if ((uint64_t)in->di_unclaimed + in->di_running > 0)
		out->d_headroom = h;
	out->d_desired = decision_desired(
	    in->di_unclaimed, in->di_running, h, c->sc_min, c->sc_max);
	out->d_held =
	    scale_hold(st, out->d_desired, c->sc_delay_ms, in->di_now_ms);
	/* A schedule that ended may have lowered the ceiling under what is
	 * held. */
	if (out->d_held > c->sc_max)
		out->d_held = c->sc_max;
	out->d_replicas = out->d_held;
	if (c->sc_max_surge > 0 && !in->di_no_pool) {
		/* Never below what the pool already asks for: the cap slows
		 * growth, it does not shed VMs. */
		cap = (uint64_t)in->di_pool_ready + c->sc_max_surge;
		if (in->di_have_pool && in->di_pool_replicas > cap)
			cap = in->di_pool_replicas;
		if (out->d_replicas > cap) {
			out->d_replicas = (uint32_t)cap;
			out->d_surge_capped = true;
		}
	}
}

const char *
decision_reason_name(enum decision_reason r)
{
	switch (r) {
	case REASON_DEMAND:
		return "demand";
	case REASON_NO_DEMAND:
		return "no demand received yet";
	case REASON_FAILED:
		return "last observation failed";
	case REASON_STALE:
		return "demand is stale";
	}
	return "unknown";
}
