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
	const struct class_demand *d = &ac->ac_demand;
	struct log_line ll;

	log_begin(&ll, LOG_LVL_WARN, "holding replicas");
	log_str(&ll, "resource_class", ac->ac_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_str(&ll, "reason", decision_reason_name(why));
	if (why == REASON_FAILED)
		log_str(&ll, "poll_error",
		    demand_error_name((enum demand_error)d->cd_error));
	if (why == REASON_STALE)
		log_uint(&ll, "demand_age_ms", now - d->cd_rx_ms);
	if (d->cd_have_target)
		log_uint(&ll, "replicas", d->cd_target);
	log_end(&ll);
}

static void
log_would_scale(const struct act_class *ac, uint32_t target)
{
	const struct class_demand *d = &ac->ac_demand;
	char msg[POOL_NAME_MAX + 64];
	struct log_line ll;

	if (d->cd_have_target)
		snprintf(msg, sizeof(msg), "would scale %s from %u to %u",
		    ac->ac_pool, d->cd_target, target);
	else
		snprintf(msg, sizeof(msg), "would scale %s to %u", ac->ac_pool,
		    target);
	log_begin(&ll, LOG_LVL_INFO, msg);
	if (d->cd_have_target)
		log_uint(&ll, "from", d->cd_target);
	log_str(&ll, "resource_class", ac->ac_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_uint(&ll, "to", target);
	log_bool(&ll, "dry_run", true);
	log_end(&ll);
}

void
demand_decide(struct actuator *a, struct act_class *ac, uint64_t now)
{
	const struct conf_class *cc = ac->ac_conf;
	struct class_demand *d = &ac->ac_demand;
	struct decision_input in;
	struct decision dec;

	if (cc == NULL) { /* retiring: nothing to poll, the pool empties */
		d->cd_have_target = true;
		d->cd_target = 0;
		d->cd_holding = false;
		return;
	}
	memset(&in, 0, sizeof(in));
	in.di_have_demand = d->cd_have;
	in.di_demand_ok = d->cd_ok;
	in.di_demand_age_ms = now - d->cd_rx_ms;
	in.di_stale_after_ms =
	    STALE_INTERVALS * a->a_flags->f_poll_interval_ms;
	in.di_unclaimed = d->cd_unclaimed;
	in.di_running = d->cd_running;
	in.di_min = cc->cc_min_replicas;
	in.di_max = cc->cc_max_replicas;
	decide(&in, &dec);
	if (dec.d_action == DECIDE_HOLD) {
		/* Log once per reason, not every tick; "no demand yet" is the
		 * normal start-up state and not worth a warning. */
		if ((!d->cd_holding || d->cd_hold_reason != dec.d_reason) &&
		    dec.d_reason != REASON_NO_DEMAND)
			log_hold(ac, dec.d_reason, now);
		d->cd_holding = true;
		d->cd_hold_reason = dec.d_reason;
		/* A gap in the demand: what VMs did meanwhile is unknown. */
		d->cd_evidence.be_good_since_ms = 0;
		return;
	}
	if (d->cd_holding && d->cd_hold_reason != REASON_NO_DEMAND)
		log_info("demand for %s is fresh again; no longer holding",
		    cc->cc_name);
	d->cd_holding = false;
	if (a->a_flags->f_dry_run &&
	    (!d->cd_have_target || d->cd_target != dec.d_replicas))
		log_would_scale(ac, dec.d_replicas);
	d->cd_have_target = true;
	d->cd_target = dec.d_replicas;
}

void
demand_record(struct act_class *ac, const struct msg_demand *m, uint64_t now,
    uint64_t wall)
{
	struct class_demand *d = &ac->ac_demand;
	struct boot_evidence *ev = &d->cd_evidence;
	bool was_ok = d->cd_have && d->cd_ok;

	if (!m->d_ok) {
		ev->be_good_since_ms = 0;
	} else {
		if (!was_ok || ev->be_good_since_ms == 0)
			ev->be_good_since_ms = wall;
		/* A job running, or a task claimed (fewer queued): the class's
		 * VMs can take jobs. */
		if (m->d_running > 0 ||
		    (was_ok && m->d_unclaimed < d->cd_unclaimed))
			ev->be_job_ms = wall;
	}
	d->cd_have = true;
	d->cd_ok = m->d_ok;
	d->cd_error = m->d_error;
	d->cd_status = m->d_http_status;
	d->cd_rx_ms = now;
	if (m->d_ok) {
		d->cd_unclaimed = m->d_unclaimed;
		d->cd_running = m->d_running;
	}
	ac->ac_dirty = true;
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
		demand_record(ac, &d, now, wall_ms());
	}
}
