/*
 * Scaling controls (README "Scaling controls"): the per-class policy read
 * from the configuration, the schedules that override it, and the small
 * state the decision keeps between cycles (arrival rate, boot time, the
 * scale-down hold).  decision.c turns them into a replica count.
 */
#ifndef RP_SCALING_H
#define RP_SCALING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cron.h"

struct tz;

#define SCALE_HEADROOM_AUTO    UINT32_MAX
#define SCALE_SCHEDULES_MAX    32
#define SCALE_HOLD_STEPS       16
#define SCALE_RATE_BOOTS       4       /* rate smoothing, in boot times */
#define SCALE_RATE_TAU_DEFAULT 300000  /* ms, until a boot was measured */
#define SCALE_BOOT_ALPHA       0.25    /* weight of a new boot sample */
#define SCALE_BOOT_SAMPLE_MAX  3600000 /* longer "boots" are ignored */

/* Which controls a schedule sets. */
enum scale_ctl {
	SCALE_CTL_MIN = 1 << 0,
	SCALE_CTL_MAX = 1 << 1,
	SCALE_CTL_HEADROOM = 1 << 2,
	SCALE_CTL_SURGE = 1 << 3,
	SCALE_CTL_DELAY = 1 << 4,
};

struct scale_controls {
	uint32_t sc_min;
	uint32_t sc_max;
	uint32_t sc_headroom;  /* spare VMs while there are tasks; or AUTO */
	uint32_t sc_max_surge; /* VMs above those ready; 0: no cap */
	uint64_t sc_delay_ms;  /* scaleDownDelay; 0: none */
};

struct scale_schedule {
	char *ss_name;
	struct cron ss_start;
	struct cron ss_end;
	struct tz *ss_tz;
	unsigned ss_set; /* enum scale_ctl bits */
	struct scale_controls ss_ctl;
};

struct scale_policy {
	struct scale_controls sp_base;
	struct scale_schedule *sp_schedules;
	size_t sp_nschedules;
};

/* VM boot time (creation to ready), smoothed: fed by whoever sees the
 * pool's VMs, read by the decision.  Zero it to start. */
struct scale_boot {
	uint32_t sb_samples;
	double sb_ms;
};

/* Between cycles, owned by the caller; zero it (or scale_state_init). */
struct scale_state {
	/* Arrivals, estimated from successive demand observations. */
	bool ss_have_prev;
	uint32_t ss_prev_unclaimed;
	uint32_t ss_prev_running;
	uint64_t ss_obs_ms;   /* the observation last counted */
	double ss_arrivals;   /* exponentially decayed count */
	uint64_t ss_decay_ms; /* when ss_arrivals was last decayed */
	/* scaleDownDelay: the highest recent targets, a falling staircase. */
	struct {
		uint32_t h_value;
		uint64_t h_at_ms;
	} ss_hold[SCALE_HOLD_STEPS];
	unsigned ss_nhold;
};

/* scaling.c */
void scale_policy_init(struct scale_policy *);
void scale_policy_clear(struct scale_policy *);
/* The controls in effect at wall time wall_ms: the first active schedule's
 * overrides on top of the baseline.  Returns that schedule's index, or -1. */
int scale_controls_at(
    const struct scale_policy *, int64_t wall_ms, struct scale_controls *);
/* Whether schedule s is active at t (seconds): the last minute matching its
 * start is later than the last one matching its end. */
bool scale_schedule_active(const struct scale_schedule *, int64_t t);
void scale_state_init(struct scale_state *);
/* A VM of the class took boot_ms from creation to ready. */
void scale_note_boot(struct scale_boot *, uint64_t boot_ms);
bool scale_boot_known(const struct scale_boot *);
/* The estimate in ms; 0 when unmeasured. */
uint64_t scale_boot_ms(const struct scale_boot *);
/* Counts the arrivals a new demand observation implies (once per obs_ms).
 * boot (NULL: unmeasured) sets the smoothing window. */
void scale_note_demand(struct scale_state *, const struct scale_boot *,
    uint64_t obs_ms, uint32_t unclaimed, uint32_t running, uint64_t now_ms);
/* Arrivals per minute. */
double scale_rate_per_min(
    const struct scale_state *, const struct scale_boot *, uint64_t now_ms);
/* headroom: auto at now: ceil(arrival rate x boot time), 0 without a
 * measured boot. */
uint32_t scale_auto_headroom(
    const struct scale_state *, const struct scale_boot *, uint64_t now_ms);
/* The highest target seen within delay_ms, after recording desired. */
uint32_t scale_hold(
    struct scale_state *, uint32_t desired, uint64_t delay_ms, uint64_t now);

#endif
