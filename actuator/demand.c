/* Demand intake and the per-class decision (DESIGN §3). */
#include <stdio.h>
#include <string.h>

#include "actuator.h"
#include "ipc.h"
#include "log.h"
#include "util.h"

void
demand_setup(struct actuator *a)
{
	static const char *const reason[] = { "reason", NULL };
	struct metric_family *rej;
	size_t i;

	rej = metrics_family(a->a_metrics, METRIC_COUNTER,
	    "demand_messages_rejected_total",
	    "Demand messages dropped as malformed, foreign or for an unknown "
	    "resource class.",
	    reason, NULL, 0);
	for (i = 1; i < MSG_NERR; i++)
		a->a_m_rejected[i] = metric_series(
		    rej, (const char *[]){ msg_err_name((enum msg_err)i) });
	/* Slot 0 (MSG_OK) counts well-formed messages for unknown classes. */
	a->a_m_rejected[0] =
	    metric_series(rej, (const char *[]){ "unknown_class" });
	a->a_m_demand = metric_single(metrics_family(a->a_metrics,
	    METRIC_COUNTER, "demand_messages_total",
	    "Demand messages accepted from the poller.", NULL, NULL, 0));
}

static void
log_hold(struct act_class *ac, enum decision_reason why, uint64_t now)
{
	struct log_line ll;

	log_begin(&ll, LOG_LVL_WARN, "holding replicas");
	log_str(&ll, "resource_class", ac->ac_conf->cc_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_str(&ll, "reason", decision_reason_name(why));
	if (why == REASON_FAILED)
		log_str(&ll, "poll_error",
		    demand_error_name((enum demand_error)ac->ac_demand_error));
	if (why == REASON_STALE)
		log_uint(&ll, "demand_age_ms", now - ac->ac_demand_rx_ms);
	if (ac->ac_have_target)
		log_uint(&ll, "replicas", ac->ac_target);
	log_end(&ll);
}

static void
log_would_scale(const struct act_class *ac, uint32_t target)
{
	char msg[POOL_NAME_MAX + 64];
	struct log_line ll;

	if (ac->ac_have_target)
		snprintf(msg, sizeof(msg), "would scale %s from %u to %u",
		    ac->ac_pool, ac->ac_target, target);
	else
		snprintf(msg, sizeof(msg), "would scale %s to %u", ac->ac_pool,
		    target);
	log_begin(&ll, LOG_LVL_INFO, msg);
	if (ac->ac_have_target)
		log_uint(&ll, "from", ac->ac_target);
	log_str(&ll, "resource_class", ac->ac_conf->cc_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_uint(&ll, "to", target);
	log_bool(&ll, "dry_run", true);
	log_end(&ll);
}

/* The pool side of a decision: the Kubernetes side makes the pool match
 * ac_target; with --dry-run it only says what it would do. */
static void
apply(struct actuator *a, struct act_class *ac, uint32_t target, uint64_t now)
{
	bool dry = a->a_flags->f_dry_run;

	if (dry && (!ac->ac_have_target || ac->ac_target != target))
		log_would_scale(ac, target);
	ac->ac_have_target = true;
	ac->ac_target = target;
	metric_set(ac->ac_m_target, target);
	if (dry)
		ac->ac_last_sync_ms = now;
	else
		sync_class(a, ac, now);
}

/* A schedule starting or ending changes the controls: say so once. */
static void
log_schedule(const struct act_class *ac, const struct decision *d)
{
	const struct scale_policy *sp = &ac->ac_conf->cc_scaling;
	int was = ac->ac_decision.d_schedule;
	struct log_line ll;

	if (d->d_schedule == was || sp->sp_nschedules == 0)
		return;
	log_begin(&ll, LOG_LVL_INFO,
	    d->d_schedule >= 0 ? "scaling schedule active"
	                       : "scaling schedule ended");
	log_str(&ll, "resource_class", ac->ac_conf->cc_name);
	log_str(&ll, "schedule",
	    sp->sp_schedules[d->d_schedule >= 0 ? d->d_schedule : was]
	        .ss_name);
	log_uint(&ll, "min_replicas", d->d_controls.sc_min);
	log_uint(&ll, "max_replicas", d->d_controls.sc_max);
	log_end(&ll);
}

void
act_decide(struct actuator *a, struct act_class *ac, uint64_t now)
{
	const struct conf_class *cc = ac->ac_conf;
	struct decision_input in;
	struct decision d;

	memset(&in, 0, sizeof(in));
	in.di_have_demand = ac->ac_have_demand;
	in.di_demand_ok = ac->ac_demand_ok;
	in.di_demand_age_ms = now - ac->ac_demand_rx_ms;
	in.di_stale_after_ms =
	    STALE_INTERVALS * a->a_flags->f_poll_interval_ms;
	in.di_demand_at_ms = ac->ac_demand_rx_ms;
	in.di_unclaimed = ac->ac_unclaimed;
	in.di_running = ac->ac_running;
	in.di_have_pool = ac->ac_have_replicas;
	in.di_pool_replicas = ac->ac_replicas;
	in.di_pool_ready = ac->ac_ready_replicas;
	in.di_policy = &cc->cc_scaling;
	in.di_now_ms = now;
	in.di_wall_ms = (int64_t)wall_ms();
	decide(&in, &ac->ac_scale, &d);
	log_schedule(ac, &d);
	ac->ac_decision.d_schedule = d.d_schedule;
	if (d.d_action == DECIDE_HOLD) {
		/* Log once per reason, not every tick; "no demand yet" is the
		 * normal start-up state and not worth a warning. */
		if ((!ac->ac_holding || ac->ac_hold_reason != d.d_reason) &&
		    d.d_reason != REASON_NO_DEMAND)
			log_hold(ac, d.d_reason, now);
		ac->ac_holding = true;
		ac->ac_hold_reason = d.d_reason;
		metric_set(ac->ac_m_holding, 1);
		return;
	}
	if (ac->ac_holding && ac->ac_hold_reason != REASON_NO_DEMAND)
		log_info("demand for %s is fresh again; no longer holding",
		    cc->cc_name);
	ac->ac_holding = false;
	ac->ac_decision = d;
	metric_set(ac->ac_m_holding, 0);
	metric_set(ac->ac_m_headroom, d.d_headroom);
	metric_set(ac->ac_m_boot, (double)scale_boot_ms(&ac->ac_scale) / 1000);
	apply(a, ac, d.d_replicas, now);
}

void
demand_receive(struct actuator *a, uint64_t now)
{
	struct msg_demand d;
	struct msg_hdr hdr;
	struct act_class *ac;
	enum msg_err e;
	nng_msg *m;

	while (ipc_recv(a->a_sub, &m) == 1) {
		e = msg_demand_decode(
		    nng_msg_body(m), nng_msg_len(m), &hdr, &d);
		nng_msg_free(m);
		if (e != MSG_OK) {
			metric_inc(a->a_m_rejected[e], 1);
			log_warnx("dropped a malformed demand message (%s)",
			    msg_err_name(e));
			continue;
		}
		if ((ac = act_class_find(a, d.d_class)) == NULL) {
			metric_inc(a->a_m_rejected[0], 1);
			log_warnx("dropped demand for %s: not a configured "
			          "resource class",
			    d.d_class);
			continue;
		}
		metric_inc(a->a_m_demand, 1);
		ac->ac_have_demand = true;
		ac->ac_demand_ok = d.d_ok;
		ac->ac_demand_error = d.d_error;
		ac->ac_demand_status = d.d_http_status;
		ac->ac_demand_rx_ms = now;
		if (d.d_ok) {
			ac->ac_unclaimed = d.d_unclaimed;
			ac->ac_running = d.d_running;
			if (ac->ac_demand_since_wall_ms == 0)
				ac->ac_demand_since_wall_ms = wall_ms();
			if (d.d_running > 0) {
				ac->ac_last_running_wall_ms = wall_ms();
				reclaim_boot_ok(ac, "a job is running");
			}
		}
		act_decide(a, ac, now);
	}
}
