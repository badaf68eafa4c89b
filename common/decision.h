/*
 * The scaling decision (DESIGN §3), a pure function:
 * desired = clamp(unclaimed + running, minReplicas, maxReplicas); a failed,
 * missing or stale observation holds the last applied count.
 */
#ifndef RP_DECISION_H
#define RP_DECISION_H

#include <stdbool.h>
#include <stdint.h>

enum decision_action {
	DECIDE_SCALE, /* make the pool d_replicas */
	DECIDE_HOLD,  /* change nothing */
};

enum decision_reason {
	REASON_DEMAND,    /* a fresh, successful observation */
	REASON_NO_DEMAND, /* nothing observed yet */
	REASON_FAILED,    /* the last observation failed */
	REASON_STALE,     /* the last observation is too old */
};

struct decision_input {
	bool di_have_demand;
	bool di_demand_ok;
	uint64_t di_demand_age_ms;
	uint64_t di_stale_after_ms;
	uint32_t di_unclaimed;
	uint32_t di_running;
	uint32_t di_min;
	uint32_t di_max;
};

struct decision {
	enum decision_action d_action;
	enum decision_reason d_reason;
	uint32_t d_replicas; /* valid for DECIDE_SCALE */
};

/* decision.c */
uint32_t decision_desired(
    uint32_t unclaimed, uint32_t running, uint32_t min, uint32_t max);
void decide(const struct decision_input *, struct decision *);
const char *decision_reason_name(enum decision_reason);

#endif
