#include "decision.h"

uint32_t
decision_desired(
    uint32_t unclaimed, uint32_t running, uint32_t min, uint32_t max)
{
	uint64_t sum = (uint64_t)unclaimed + running;

	if (sum < min)
		return min;
	if (sum > max)
		return max;
	return (uint32_t)sum;
}

void
decide(const struct decision_input *in, struct decision *out)
{
	out->d_action = DECIDE_HOLD;
	out->d_replicas = 0;
	if (!in->di_have_demand)
		out->d_reason = REASON_NO_DEMAND;
	else if (in->di_demand_age_ms > in->di_stale_after_ms)
		out->d_reason = REASON_STALE;
	else if (!in->di_demand_ok)
		out->d_reason = REASON_FAILED;
	else {
		out->d_action = DECIDE_SCALE;
		out->d_reason = REASON_DEMAND;
		out->d_replicas = decision_desired(
		    in->di_unclaimed, in->di_running, in->di_min, in->di_max);
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
