/*
 * The scaling decision (DESIGN §3, README "Scaling controls"), one pure
 * function of the observation, the class's controls, the time and the
 * caller-owned scale_state:
 *   desired = clamp(unclaimed + running (+ headroom while there are tasks),
 *                   minReplicas, maxReplicas),
 * held at its highest for scaleDownDelay, then capped at maxSurge above the
 * VMs already ready.  A failed, missing or stale observation holds the last
 * applied count.
 */
#ifndef RP_DECISION_H
#define RP_DECISION_H

#include <stdbool.h>
#include <stdint.h>

#include "scaling.h"

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
	/* Demand, as the poller last reported it. */
	bool di_have_demand;
	bool di_demand_ok;
	uint64_t di_demand_age_ms;
	uint64_t di_stale_after_ms;
	uint64_t di_demand_at_ms; /* when it arrived: tells new ones apart */
	uint32_t di_unclaimed;
	uint32_t di_running;
	/* The pool, as last listed; di_no_pool: there is none to look at
	 * (--dry-run), so maxSurge, which needs its ready VMs, is not
	 * applied. */
	bool di_no_pool;
	bool di_have_pool;
	uint32_t di_pool_replicas; /* spec.replicas */
	uint32_t di_pool_ready;    /* status.readyReplicas */
	/* The pool's VMs' boot time (NULL: not measured). */
	const struct scale_boot *di_boot;
	/* Controls and clocks. */
	const struct scale_policy *di_policy;
	uint64_t di_now_ms; /* monotonic */
	int64_t di_wall_ms; /* for schedules */
};

struct decision {
	enum decision_action d_action;
	enum decision_reason d_reason;
	uint32_t d_replicas; /* valid for DECIDE_SCALE */
	/* How it was reached, for logs, /ready and metrics. */
	int d_schedule; /* index of the active schedule, -1 for none */
	struct scale_controls
	    d_controls;      /* in effect (headroom may be AUTO) */
	uint32_t d_headroom; /* spare VMs added this cycle */
	uint32_t d_desired;  /* clamp(demand + headroom, min, max) */
	uint32_t d_held;     /* after scaleDownDelay */
	bool d_surge_capped; /* maxSurge lowered the target */
};

/* decision.c */
/* clamp(unclaimed + running + (headroom if either is > 0), min, max),
 * without overflow. */
uint32_t decision_desired(uint32_t unclaimed, uint32_t running,
    uint32_t headroom, uint32_t min, uint32_t max);
/* What the poller's scaler line reports as desired_vms: decision_desired
 * under the controls active at wall_ms, with headroom: auto counted as 0
 * (the poller sees no pool and no boot times). */
uint32_t decision_level(const struct scale_policy *, uint32_t unclaimed,
    uint32_t running, int64_t wall_ms);
void decide(
    const struct decision_input *, struct scale_state *, struct decision *);
const char *decision_reason_name(enum decision_reason);

#endif
