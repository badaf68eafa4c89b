#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "decision.h"
#include "ipc.h"
#include "log.h"
#include "poller.h"
#include "sig.h"
#include "survey.h"
#include "token.h"
#include "util.h"

#define SPAN_SCALER "worker loop scaler"

static const char *const fetch_failed_msg[2] = {
	[FETCH_UNCLAIMED] = "failed to get unclaimed tasks",
	[FETCH_RUNNING] = "failed to get running tasks",
};

/* A class counts as healthy when it succeeded within this window: five
 * fast intervals (at least 15 s), three idle intervals for an idle class,
 * three rounds of every class when the request budget is short. */
static uint64_t
ready_window_ms(const struct poller *p, const struct poll_class *pc)
{
	uint64_t w = 5 * p->p_flags->f_poll_interval_ms, round;
	double rate;

	if (w < 15000)
		w = 15000;
	if (pc != NULL && pc->pc_slot.ss_idle && w < 3 * p->p_sched.sc_idle_ms)
		w = 3 * p->p_sched.sc_idle_ms;
	if (p->p_short && (rate = budget_rate(&p->p_budget, now_ms())) > 0) {
		round = (uint64_t)(2000.0 * (double)p->p_nclasses / rate);
		if (w < 3 * round)
			w = 3 * round;
	}
	return w;
}

static void
publish_last(struct poller *p, struct poll_class *pc, uint64_t now)
{
	struct msg_demand d;
	struct buf b = { 0 };

	memset(&d, 0, sizeof(d));
	d.d_cycle = p->p_cycle;
	d.d_observed_ms = pc->pc_msg_observed_ms;
	d.d_ok = pc->pc_msg_ok;
	d.d_error = (uint8_t)pc->pc_msg_error;
	d.d_http_status = pc->pc_msg_status;
	if (pc->pc_msg_ok) {
		d.d_unclaimed = pc->pc_unclaimed;
		d.d_running = pc->pc_running;
	}
	strlcpy_rp(d.d_class, pc->pc_conf->cc_name, sizeof(d.d_class));
	msg_demand_encode(&d, ++p->p_seq, &b);
	ipc_send(p->p_pub, b.b_data, b.b_len);
	buf_free(&b);
	pc->pc_published = true;
	pc->pc_published_ms = now;
	metric_inc(d.d_ok ? p->p_m_published_ok : p->p_m_published_failed, 1);
}

/* A new observation (or failure) for pc: the actuator hears it with the
 * others of this batch (outbox_flush), and again while it stays the
 * last one (republish). */
static void
publish(struct poller *p, struct poll_class *pc, bool ok,
    enum demand_error err, uint16_t status, uint64_t now)
{
	pc->pc_msg_ok = ok;
	pc->pc_msg_error = err;
	pc->pc_msg_status = status;
	pc->pc_msg_observed_ms = wall_ms();
	if (pc->pc_in_outbox)
		return;
	if (p->p_noutbox == 0)
		p->p_outbox_since_ms = now;
	p->p_outbox[p->p_noutbox++] = pc;
	pc->pc_in_outbox = true;
}

/* Sends the new observations together once the polls out are answered
 * (or a tick after the first): the actuator wakes once for a batch, not
 * once per class. */
static void
outbox_flush(struct poller *p, uint64_t now, bool force)
{
	size_t i;

	if (p->p_noutbox == 0 ||
	    (!force && p->p_inflight > 0 &&
	        now < p->p_outbox_since_ms + p->p_tick_ms))
		return;
	for (i = 0; i < p->p_noutbox; i++) {
		p->p_outbox[i]->pc_in_outbox = false;
		publish_last(p, p->p_outbox[i], now);
	}
	p->p_noutbox = 0;
}

/* --log-scaler-lines: always every poll; changes when a number changed or
 * a minute passed. */
static bool
scaler_line_due(
    const struct poller *p, const struct poll_class *pc, uint64_t now)
{
	if (p->p_flags->f_scaler_lines == SCALER_LINES_ALWAYS ||
	    !pc->pc_logged)
		return true;
	return pc->pc_unclaimed != pc->pc_logged_unclaimed ||
	    pc->pc_running != pc->pc_logged_running ||
	    pc->pc_desired != pc->pc_logged_desired ||
	    now - pc->pc_logged_ms >= POLL_LOG_EVERY_MS;
}

static void
class_succeeded(struct poller *p, struct poll_class *pc, uint64_t now)
{
	const struct conf_class *cc = pc->pc_conf;
	struct log_line ll;

	if (pc->pc_last_error != DEMAND_ERR_NONE && pc->pc_have_success)
		log_info("CircleCI polling recovered for %s", cc->cc_name);
	pc->pc_unclaimed = pc->pc_result[FETCH_UNCLAIMED].fr_count;
	pc->pc_running = pc->pc_result[FETCH_RUNNING].fr_count;
	/* The level demand asks for; the actuator's target also weighs the
	 * pool (maxSurge, scaleDownDelay, headroom: auto). */
	pc->pc_desired = decision_level(
	    &cc->cc_scaling, pc->pc_unclaimed, pc->pc_running, wall_ms());
	pc->pc_have_success = true;
	pc->pc_last_success_ms = now;
	pc->pc_last_error = DEMAND_ERR_NONE;
	pc->pc_last_status = 200;
	pc->pc_last_text[0] = '\0';
	pc->pc_not_before_ms = 0;
	backoff_reset(&pc->pc_backoff);
	publish(p, pc, true, DEMAND_ERR_NONE, 200, now);

	metric_set(pc->pc_m_unclaimed, pc->pc_unclaimed);
	metric_set(pc->pc_m_running, pc->pc_running);
	metric_set(pc->pc_m_desired, pc->pc_desired);
	metric_inc(pc->pc_m_ok, 1);

	if (!scaler_line_due(p, pc, now))
		return;
	pc->pc_logged = true;
	pc->pc_logged_ms = now;
	pc->pc_logged_unclaimed = pc->pc_unclaimed;
	pc->pc_logged_running = pc->pc_running;
	pc->pc_logged_desired = pc->pc_desired;
	log_begin(&ll, LOG_LVL_INFO, "polled task counts");
	log_str(&ll, "span", SPAN_SCALER);
	log_str(&ll, "loop_name", "scaler");
	log_str(&ll, "resource_class", cc->cc_name);
	log_uint(&ll, "unclaimed_tasks", pc->pc_unclaimed);
	log_uint(&ll, "running_tasks", pc->pc_running);
	log_uint(&ll, "desired_vms", pc->pc_desired);
	log_end(&ll);
}

/* How long to leave the class alone after this failure. */
static uint64_t
failure_delay(
    struct poller *p, struct poll_class *pc, const struct fetch_result *worst)
{
	switch (worst->fr_error) {
	case DEMAND_ERR_AUTH:
		return POLL_AUTH_RETRY_MS;
	case DEMAND_ERR_RATE_LIMITED:
		if (worst->fr_have_retry_after)
			return worst->fr_retry_after_ms;
		/* FALLTHROUGH */
	default:
		(void)p;
		return backoff_next(&pc->pc_backoff);
	}
}

/* Ranks errors: the one that dictates the pause wins. */
static int
error_rank(enum demand_error e)
{
	switch (e) {
	case DEMAND_ERR_AUTH:
		return 3;
	case DEMAND_ERR_RATE_LIMITED:
		return 2;
	case DEMAND_ERR_NONE:
		return 0;
	default:
		return 1;
	}
}

static void
class_failed(struct poller *p, struct poll_class *pc, uint64_t now)
{
	const struct fetch_result *worst = NULL, *r;
	struct log_line ll;
	uint64_t delay;
	bool repeat;
	int k;

	for (k = FETCH_UNCLAIMED; k <= FETCH_RUNNING; k++) {
		r = &pc->pc_result[k];
		if (r->fr_ok)
			continue;
		if (worst == NULL ||
		    error_rank(r->fr_error) > error_rank(worst->fr_error))
			worst = r;
	}
	delay = failure_delay(p, pc, worst);
	/* A rejected token is a configuration error: say so once per change,
	 * not every cycle. */
	repeat = worst->fr_error == DEMAND_ERR_AUTH &&
	    pc->pc_last_error == DEMAND_ERR_AUTH &&
	    pc->pc_last_status == worst->fr_http_status;
	for (k = FETCH_UNCLAIMED; k <= FETCH_RUNNING; k++) {
		r = &pc->pc_result[k];
		if (r->fr_ok)
			continue;
		log_begin(&ll, repeat ? LOG_LVL_DEBUG : LOG_LVL_ERROR,
		    fetch_failed_msg[k]);
		log_str(&ll, "span", SPAN_SCALER);
		log_str(&ll, "loop_name", "scaler");
		log_str(&ll, "resource_class", pc->pc_conf->cc_name);
		if (r->fr_http_status != 0)
			log_uint(&ll, "status", r->fr_http_status);
		log_str(&ll, "error", r->fr_text);
		log_str(&ll, "kind", demand_error_name(r->fr_error));
		log_uint(&ll, "retry_in_ms", delay);
		log_end(&ll);
	}
	if (worst->fr_error == DEMAND_ERR_AUTH && !repeat)
		log_error(
		    "CircleCI rejected the API token for %s (HTTP %u): "
		    "it is invalid, revoked, or cannot read this "
		    "resource class; fix CIRCLE_TOKEN / the circle-token "
		    "secret (polling again every %ds)",
		    pc->pc_conf->cc_name, worst->fr_http_status,
		    POLL_AUTH_RETRY_MS / 1000);
	pc->pc_last_error = worst->fr_error;
	pc->pc_last_status = worst->fr_http_status;
	strlcpy_rp(pc->pc_last_text, worst->fr_text, sizeof(pc->pc_last_text));
	pc->pc_not_before_ms = now + delay;
	metric_inc(pc->pc_m_failed, 1);
	publish(p, pc, false, worst->fr_error, worst->fr_http_status, now);
}

static void
schedule_next(struct poller *p, struct poll_class *pc,
    enum sched_outcome outcome, uint64_t now)
{
	struct sched_slot *s = &pc->pc_slot;

	if (!sched_finished(
	        &p->p_sched, s, outcome, pc->pc_not_before_ms, now))
		return;
	metric_set(p->p_m_idle, (double)p->p_sched.sc_nidle);
	if (log_enabled(LOG_LVL_DEBUG))
		log_debug("%s: polling every %llums (%s)",
		    pc->pc_conf->cc_name,
		    (unsigned long long)sched_interval(&p->p_sched, s),
		    s->ss_idle ? "no task for a while" : "busy again");
}

void
poller_fetched(struct poller *p, struct poll_class *pc, enum fetch_kind k,
    const struct fetch_result *r)
{
	uint64_t now = now_ms();

	pc->pc_result[k] = *r;
	if (--pc->pc_pending > 0)
		return;
	if (pc->pc_result[FETCH_UNCLAIMED].fr_ok &&
	    pc->pc_result[FETCH_RUNNING].fr_ok) {
		class_succeeded(p, pc, now);
		schedule_next(p, pc,
		    pc->pc_unclaimed == 0 && pc->pc_running == 0 ? SCHED_QUIET
		                                                 : SCHED_TASKS,
		    now);
	} else {
		class_failed(p, pc, now);
		schedule_next(p, pc, SCHED_FAILED, now);
	}
}

void
poller_answered(struct poller *p, long status, uint64_t sent_ms,
    const struct rl_headers *h)
{
	struct budget *b = &p->p_budget;
	uint64_t now = now_ms();
	double was = budget_rate(b, now);
	int ev;

	ev = budget_answer(b, status, sent_ms, h, now);
	if (ev & BUDGET_EV_DECREASED) {
		metric_inc(p->p_m_decreases, 1);
		log_warnx("CircleCI answered 429 Too Many Requests: request "
		          "budget lowered to %.1f/s (from %.1f/s)",
		    budget_rate(b, now), was);
	}
	if (ev & BUDGET_EV_LIMIT)
		log_info(
		    "CircleCI advertises a rate limit of %.2f requests/s: "
		    "the request budget stays within it",
		    b->bg_limit_rps);
	if (ev & BUDGET_EV_PAUSED)
		log_warnx(
		    "CircleCI's rate-limit quota is used up: no requests "
		    "for %llums, until it resets",
		    (unsigned long long)(b->bg_pace_until_ms - now));
	metric_set(p->p_m_budget, budget_rate(b, now));
}

void
poller_checked(
    struct poller *p, struct poll_class *pc, const struct http_xfer *x)
{
	const char *name = pc->pc_conf->cc_name;
	char why[256];
	size_t runners;

	http_xfer_describe(x, why, sizeof(why));
	if (x->x_result != CURLE_OK || x->x_too_big ||
	    (x->x_status != 200 && x->x_status != 401 && x->x_status != 403 &&
	        x->x_status != 404)) {
		log_warnx("could not check resource class %s at %s (%s); "
		          "checking again in %ds",
		    name, p->p_flags->f_api_addr, why,
		    POLL_CHECK_RETRY_MS / 1000);
		pc->pc_check_not_before_ms = now_ms() + POLL_CHECK_RETRY_MS;
		return;
	}
	pc->pc_checked = true;
	if (x->x_status == 404)
		log_error(
		    "resource class %s was not found at %s: its task "
		    "counts will always read 0; check the resource class "
		    "name and that the API token belongs to its "
		    "organization",
		    name, p->p_flags->f_api_addr);
	else if (x->x_status != 200)
		log_error("CircleCI rejected the API token checking resource "
		          "class %s (%s): task polling will fail until "
		          "CIRCLE_TOKEN / the circle-token secret is fixed",
		    name, why);
	else if (parse_runner_count(x, &runners) == -1)
		log_warnx("resource class %s: unexpected runner list answer "
		          "from %s",
		    name, p->p_flags->f_api_addr);
	else
		log_info("resource class %s found at %s (%zu runners "
		         "registered)",
		    name, p->p_flags->f_api_addr, runners);
	(void)p;
}

/* The start-up check goes with a poll, while it is wanted. */
static bool
check_due(const struct poll_class *pc, uint64_t now)
{
	return !pc->pc_checked && !pc->pc_check_busy &&
	    now >= pc->pc_check_not_before_ms;
}

/* Starts every poll that is due, as far as the request budget and the
 * transfer pool allow; the rest wait in the schedule, earliest first. */
static void
dispatch(struct poller *p, uint64_t now)
{
	struct sched_slot *s;
	struct poll_class *pc;
	bool check;
	unsigned cost;

	while ((s = sched_due(&p->p_sched, now)) != NULL) {
		pc = (struct poll_class *)(void *)((char *)s -
		    offsetof(struct poll_class, pc_slot));
		check = check_due(pc, now);
		cost = 2u + check;
		if (fetch_slots(p) < cost ||
		    !budget_take(&p->p_budget, cost, now))
			return;
		metric_observe(
		    p->p_m_lag, (double)(now - s->ss_due_ms) / 1000.0);
		sched_started(&p->p_sched, s, now);
		if (s->ss_prev_started_ms != 0)
			metric_set(pc->pc_m_interval,
			    (double)(now - s->ss_prev_started_ms) / 1000.0);
		if (fetch_start(p, pc, check, now) == -1) {
			publish(p, pc, false, DEMAND_ERR_TRANSPORT, 0, now);
			schedule_next(p, pc, SCHED_FAILED, now);
		}
	}
}

/* Rounds t up to the next tick: work due within one tick is done in one
 * wakeup. */
static uint64_t
tick_ceil(const struct poller *p, uint64_t t)
{
	uint64_t epoch = p->p_sched.sc_epoch_ms, tick = p->p_tick_ms;

	return t <= epoch ? t : epoch + (t - epoch + tick - 1) / tick * tick;
}

/* When the next poll can start: its due time, held back by the budget,
 * rounded up to the next tick (polls due within one tick leave together:
 * one wakeup of the poller, and of the actuator, for a few classes);
 * UINT64_MAX when the transfer pool is full (an answer wakes the loop). */
static uint64_t
dispatch_next_ms(const struct poller *p, uint64_t now)
{
	uint64_t due = sched_next_ms(&p->p_sched), ready;

	if (due == UINT64_MAX || fetch_slots(p) < 3)
		return UINT64_MAX;
	ready = budget_ready_at(&p->p_budget, now);
	return tick_ceil(p, due > ready ? due : ready);
}

/* Every class's demand reaches the actuator at least every
 * POLL_REPEAT_INTERVALS poll intervals (it counts demand older than three
 * as stale): the last observation again when the class was not polled
 * (idle, paused, waiting for the budget), but not while its poll is out,
 * so that a hung answer shows as stale.  Returns when to look again. */
static uint64_t
republish(struct poller *p, uint64_t now)
{
	uint64_t interval = p->p_flags->f_poll_interval_ms, due, every,
	         next = UINT64_MAX;
	struct poll_class *pc;
	size_t i;

	if (now < p->p_next_republish_ms)
		return p->p_next_republish_ms;
	/* Less a tick: the repeat is rounded up to one. */
	every = POLL_REPEAT_INTERVALS * interval - p->p_tick_ms;
	for (i = 0; i < p->p_nclasses; i++) {
		pc = &p->p_classes[i];
		if (!pc->pc_published || pc->pc_pending > 0 ||
		    pc->pc_in_outbox)
			continue;
		due = pc->pc_published_ms + every;
		if (due <= now) {
			publish_last(p, pc, now);
			due = now + every;
		}
		if (due < next)
			next = due;
	}
	/* A class out or waiting in the outbox publishes soon anyway. */
	if (next > now + interval)
		next = now + interval;
	return p->p_next_republish_ms = tick_ceil(p, next);
}

/* Once per poll interval: the cycle number the messages carry, the budget
 * grows back, and is compared with what the schedule needs. */
static void
cycle(struct poller *p, uint64_t now)
{
	double needed, rate;

	p->p_cycle++;
	if (budget_tick(&p->p_budget, now))
		log_info(
		    "request budget back to %.1f/s", p->p_budget.bg_aimd_rps);
	needed = sched_needed_rps(&p->p_sched);
	rate = budget_rate(&p->p_budget, now);
	metric_set(p->p_m_needed, needed);
	metric_set(p->p_m_budget, rate);
	if (!p->p_short && needed > rate * 1.05) {
		p->p_short = true;
		log_warnx(
		    "CircleCI request budget of %.1f/s is below the %.1f/s "
		    "that %zu classes need: polls wait their turn "
		    "(runner_provisioner_poll_interval_seconds shows each "
		    "class's interval); raise --max-requests-per-second",
		    rate, needed, p->p_nclasses);
	} else if (p->p_short && needed <= rate * 0.95) {
		p->p_short = false;
		log_info("CircleCI request budget of %.1f/s covers the %.1f/s "
		         "that %zu classes need again",
		    rate, needed, p->p_nclasses);
	}
}

static bool
class_healthy(
    const struct poller *p, const struct poll_class *pc, uint64_t now)
{
	return pc->pc_have_success && pc->pc_last_error != DEMAND_ERR_AUTH &&
	    now - pc->pc_last_success_ms <= ready_window_ms(p, pc);
}

static const char *
class_status(const struct poller *p, const struct poll_class *pc, uint64_t now)
{
	if (pc->pc_last_error == DEMAND_ERR_AUTH)
		return "token rejected";
	if (pc->pc_last_error == DEMAND_ERR_RATE_LIMITED)
		return "rate limited";
	if (pc->pc_last_error != DEMAND_ERR_NONE)
		return class_healthy(p, pc, now) ? "retrying" : "failing";
	return pc->pc_have_success ? "ok" : "starting";
}

static void
health_fill(void *arg, struct msg_health *h, struct buf *metrics_text)
{
	struct poller *p = arg;
	const struct poll_class *pc;
	uint64_t now = now_ms();
	size_t i, healthy = 0, failed = 0;
	json_t *classes = json_object(), *o;

	for (i = 0; i < p->p_nclasses; i++) {
		pc = &p->p_classes[i];
		o = json_object();
		json_object_set_new(
		    o, "status", json_string(class_status(p, pc, now)));
		if (pc->pc_have_success) {
			json_object_set_new(o, "unclaimed_tasks",
			    json_integer(pc->pc_unclaimed));
			json_object_set_new(
			    o, "running_tasks", json_integer(pc->pc_running));
			json_object_set_new(
			    o, "desired_vms", json_integer(pc->pc_desired));
			json_object_set_new(o, "last_success_ms_ago",
			    json_integer(
			        (json_int_t)(now - pc->pc_last_success_ms)));
		}
		if (pc->pc_last_error != DEMAND_ERR_NONE) {
			json_object_set_new(
			    o, "last_error", json_string(pc->pc_last_text));
			if (pc->pc_not_before_ms > now)
				json_object_set_new(o, "retry_in_ms",
				    json_integer(
				        (json_int_t)(pc->pc_not_before_ms -
				            now)));
		}
		json_object_set_new(classes, pc->pc_conf->cc_name, o);
		if (class_healthy(p, pc, now))
			healthy++;
		else if (pc->pc_last_error != DEMAND_ERR_NONE ||
		    pc->pc_have_success)
			failed++;
	}
	if (healthy == p->p_nclasses)
		h->hl_state = HEALTH_OK;
	else if (healthy > 0)
		h->hl_state = HEALTH_DEGRADED;
	else if (failed > 0 ||
	    now - p->p_role->r_start_ms > ready_window_ms(p, NULL))
		h->hl_state = HEALTH_FAILING;
	else
		h->hl_state = HEALTH_STARTING;
	h->hl_uptime_ms = now - p->p_role->r_start_ms;
	h->hl_detail = json_pack("{s:I,s:I,s:I,s:f,s:f,s:I,s:o}",
	    "poll_interval_ms", (json_int_t)p->p_flags->f_poll_interval_ms,
	    "idle_poll_interval_ms", (json_int_t)p->p_sched.sc_idle_ms,
	    "idle_classes", (json_int_t)p->p_sched.sc_nidle,
	    "request_budget_per_s",
	    round(budget_rate(&p->p_budget, now) * 100) / 100,
	    "requests_needed_per_s",
	    round(sched_needed_rps(&p->p_sched) * 100) / 100, "cycle",
	    (json_int_t)p->p_cycle, "classes", classes);
	metrics_render(p->p_metrics, metrics_text);
}

static void
class_metrics(struct poller *p, struct poll_class *pc)
{
	const char *v[] = { pc->pc_conf->cc_name };

	pc->pc_m_unclaimed = metric_series(p->p_m_unclaimed, v);
	pc->pc_m_running = metric_series(p->p_m_running, v);
	pc->pc_m_desired = metric_series(p->p_m_desired, v);
	pc->pc_m_ok =
	    metric_series(p->p_m_polls, (const char *[]){ v[0], "ok" });
	pc->pc_m_failed =
	    metric_series(p->p_m_polls, (const char *[]){ v[0], "failed" });
	pc->pc_m_interval = metric_series(p->p_m_interval, v);
}

static void
class_metrics_drop(struct poll_class *pc)
{
	metric_series_drop(pc->pc_m_unclaimed);
	metric_series_drop(pc->pc_m_running);
	metric_series_drop(pc->pc_m_desired);
	metric_series_drop(pc->pc_m_ok);
	metric_series_drop(pc->pc_m_failed);
	metric_series_drop(pc->pc_m_interval);
}

static void
metrics_setup(struct poller *p)
{
	static const char *const cls[] = { "resource_class", NULL };
	static const char *const req[] = { "endpoint", "code", NULL };
	static const char *const ep[] = { "endpoint", NULL };
	static const char *const res[] = { "resource_class", "result", NULL };
	static const double lat[] = { 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
		2.5, 5, 10 };
	static const double lag[] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1 };
	struct metric_family *dur, *pub;
	size_t i;
	int k;

	p->p_metrics = metrics_new();
	p->p_m_unclaimed =
	    metrics_family(p->p_metrics, METRIC_GAUGE, "tasks_unclaimed",
	        "Unclaimed (queued) tasks, as last polled.", cls, NULL, 0);
	p->p_m_running = metrics_family(p->p_metrics, METRIC_GAUGE,
	    "tasks_running", "Running tasks, as last polled.", cls, NULL, 0);
	p->p_m_desired =
	    metrics_family(p->p_metrics, METRIC_GAUGE, "desired_vms",
	        "clamp(unclaimed + running, minReplicas, maxReplicas).", cls,
	        NULL, 0);
	p->p_m_polls =
	    metrics_family(p->p_metrics, METRIC_COUNTER, "polls_total",
	        "Poll cycles per resource class by result.", res, NULL, 0);
	p->p_m_requests = metrics_family(p->p_metrics, METRIC_COUNTER,
	    "circleci_requests_total",
	    "CircleCI API requests by endpoint and HTTP status (\"error\": no "
	    "answer).",
	    req, NULL, 0);
	dur = metrics_family(p->p_metrics, METRIC_HISTOGRAM,
	    "circleci_request_duration_seconds",
	    "CircleCI API request latency.", ep, lat, nitems(lat));
	for (k = 0; k < FETCH_NKINDS; k++)
		p->p_m_duration[k] = metric_series(dur,
		    (const char *[]){ fetch_kind_name((enum fetch_kind)k) });
	p->p_m_lag = metric_single(metrics_family(p->p_metrics,
	    METRIC_HISTOGRAM, "poll_loop_lag_seconds",
	    "How late each poll started against its schedule (waiting for "
	    "the request budget included).",
	    NULL, lag, nitems(lag)));
	pub = metrics_family(p->p_metrics, METRIC_COUNTER,
	    "demand_published_total",
	    "Demand messages sent to the actuator, by result.",
	    (const char *[]){ "result", NULL }, NULL, 0);
	p->p_m_published_ok = metric_series(pub, (const char *[]){ "ok" });
	p->p_m_published_failed =
	    metric_series(pub, (const char *[]){ "failed" });
	p->p_m_interval = metrics_family(p->p_metrics, METRIC_GAUGE,
	    "poll_interval_seconds",
	    "Time between the last two polls of the class: the fast or the "
	    "idle interval, or longer while the request budget is short.",
	    cls, NULL, 0);
	p->p_m_idle = metric_single(
	    metrics_family(p->p_metrics, METRIC_GAUGE, "poll_idle_classes",
	        "Resource classes polled at the idle interval (no task for "
	        "--idle-poll-after).",
	        NULL, NULL, 0));
	p->p_m_budget = metric_single(metrics_family(p->p_metrics,
	    METRIC_GAUGE, "circleci_request_budget",
	    "CircleCI requests per second the poller allows itself now "
	    "(--max-requests-per-second, lowered by 429s and advertised "
	    "limits).",
	    NULL, NULL, 0));
	p->p_m_needed = metric_single(metrics_family(p->p_metrics,
	    METRIC_GAUGE, "circleci_requests_needed",
	    "CircleCI requests per second the poll schedule asks for.", NULL,
	    NULL, 0));
	p->p_m_decreases = metric_single(metrics_family(p->p_metrics,
	    METRIC_COUNTER, "circleci_budget_decreases_total",
	    "Times a 429 answer halved the request budget.", NULL, NULL, 0));
	for (i = 0; i < p->p_nclasses; i++)
		class_metrics(p, &p->p_classes[i]);
}

static int
ipc_setup(struct poller *p)
{
	char url[IPC_URL_MAX];

	size_t depth = p->p_nclasses + 16;
	int rv;

	if (ipc_url(url, sizeof(url), p->p_role->r_run_dir, IPC_DEMAND) ==
	        -1 ||
	    ipc_open(&p->p_pub, IPC_PUB_LISTEN, url, NULL) == -1)
		return -1;
	/* PUB drops what does not fit its queue (16 by default): room for a
	 * message of every class at once. */
	if (depth > POLL_PUB_QUEUE_MAX)
		depth = POLL_PUB_QUEUE_MAX;
	if ((rv = nng_socket_set_int(p->p_pub, NNG_OPT_SENDBUF, (int)depth)) !=
	    0)
		log_warnx("demand socket send queue of %zu: %s", depth,
		    nng_strerror(rv));
	return 0;
}

static void
class_init(
    struct poller *p, struct poll_class *pc, const struct conf_class *cc)
{
	memset(pc, 0, sizeof(*pc));
	pc->pc_conf = cc;
	backoff_init(&pc->pc_backoff, p->p_flags->f_poll_interval_ms,
	    p->p_flags->f_poll_interval_ms > POLL_BACKOFF_CAP_MS
	        ? p->p_flags->f_poll_interval_ms
	        : POLL_BACKOFF_CAP_MS);
}

static void
poller_setup_classes(struct poller *p)
{
	const struct flags *f = p->p_flags;
	uint64_t now = p->p_role->r_start_ms;
	size_t i;

	p->p_nclasses = p->p_conf->c_nclasses;
	p->p_classes = xcalloc(p->p_nclasses + 1, sizeof(*p->p_classes));
	p->p_outbox = xcalloc(
	    p->p_nclasses > 0 ? p->p_nclasses : 1, sizeof(*p->p_outbox));
	sched_init(&p->p_sched, p->p_nclasses, now, f->f_poll_interval_ms,
	    f->f_idle_poll_interval_ms, f->f_idle_poll_after_ms);
	budget_init(&p->p_budget, f->f_max_rps, now);
	for (i = 0; i < p->p_nclasses; i++) {
		class_init(p, &p->p_classes[i], &p->p_conf->c_classes[i]);
		sched_add(&p->p_sched, &p->p_classes[i].pc_slot, i);
	}
}

void
poller_reconfigure(struct poller *p, struct conf *conf, char *token)
{
	const struct flags *f = p->p_flags;
	struct poll_class *classes, *old, *pc;
	struct conf *was = p->p_conf;
	uint64_t epoch = p->p_sched.sc_epoch_ms;
	size_t i, j;

	/* Transfers, the schedule's queue and the outbox hold pointers into
	 * the class table: drop them all (polls in flight start again, each
	 * class's next poll is due at once on its phase of the interval). */
	fetch_free(p);
	sched_free(&p->p_sched);
	free(p->p_outbox);
	p->p_noutbox = 0;
	classes = xcalloc(conf->c_nclasses + 1, sizeof(*classes));
	for (i = 0; i < conf->c_nclasses; i++) {
		pc = &classes[i];
		for (j = 0, old = NULL; j < p->p_nclasses && old == NULL; j++)
			if (p->p_classes[j].pc_conf != NULL &&
			    strcmp(p->p_classes[j].pc_conf->cc_name,
			        conf->c_classes[i].cc_name) == 0)
				old = &p->p_classes[j];
		if (old == NULL) {
			class_init(p, pc, &conf->c_classes[i]);
			class_metrics(p, pc);
			log_info("polling resource class %s from now on",
			    pc->pc_conf->cc_name);
			continue;
		}
		*pc = *old;
		pc->pc_conf = &conf->c_classes[i];
		pc->pc_pending = 0;
		pc->pc_check_busy = false;
		pc->pc_in_outbox = false;
		old->pc_conf = NULL; /* moved */
		/* A new token is tried at once, and checked again. */
		if (token != NULL) {
			if (pc->pc_last_error == DEMAND_ERR_AUTH)
				pc->pc_not_before_ms = 0;
			pc->pc_checked = false;
			pc->pc_check_not_before_ms = 0;
		}
	}
	for (j = 0; j < p->p_nclasses; j++)
		if (p->p_classes[j].pc_conf != NULL) {
			log_info("no longer polling resource class %s",
			    p->p_classes[j].pc_conf->cc_name);
			class_metrics_drop(&p->p_classes[j]);
		}
	free(p->p_classes);
	p->p_classes = classes;
	p->p_nclasses = conf->c_nclasses;
	p->p_conf = conf;
	p->p_role->r_conf = conf;
	conf_free(was);
	p->p_outbox = xcalloc(
	    p->p_nclasses > 0 ? p->p_nclasses : 1, sizeof(*p->p_outbox));
	sched_init(&p->p_sched, p->p_nclasses, epoch, f->f_poll_interval_ms,
	    f->f_idle_poll_interval_ms, f->f_idle_poll_after_ms);
	for (i = 0; i < p->p_nclasses; i++)
		sched_add(&p->p_sched, &p->p_classes[i].pc_slot, i);
	metric_set(p->p_m_idle, (double)p->p_sched.sc_nidle);
	metric_set(p->p_m_needed, sched_needed_rps(&p->p_sched));
	if (token != NULL) {
		token_free(p->p_token);
		p->p_token = token;
	}
	fetch_init(p);
}

/* A configuration from the supervisor: no runner token in it, maybe a
 * new CircleCI token. */
static int
poller_apply(void *arg, const struct msg_config *c, char *err, size_t errlen)
{
	struct poller *p = arg;
	struct conf *conf;
	char *token = NULL;
	size_t i;

	if ((conf = conf_parse_flags(c->c_docs[0].cd_name,
	         c->c_docs[0].cd_text, c->c_docs[0].cd_len, CONF_NO_SECRETS,
	         err, errlen)) == NULL)
		return -1;
	conf_drop_tokens(conf);
	/* Nor the VM specs, as at start-up. */
	for (i = 0; i < conf->c_nclasses; i++) {
		json_decref(conf->c_classes[i].cc_spec);
		conf->c_classes[i].cc_spec = NULL;
	}
	for (i = 1; i < c->c_ndocs; i++)
		if (c->c_docs[i].cd_kind == CONFIG_DOC_TOKEN &&
		    (token = token_parse(c->c_docs[i].cd_text,
		         c->c_docs[i].cd_len, c->c_docs[i].cd_name, err,
		         errlen)) == NULL) {
			conf_free(conf);
			return -1;
		}
	if (token != NULL && p->p_token != NULL &&
	    strcmp(token, p->p_token) == 0) {
		token_free(token);
		token = NULL;
	}
	poller_reconfigure(p, conf, token);
	log_info("running configuration generation %llu (%zu resource "
	         "classes%s)",
	    (unsigned long long)c->c_generation, p->p_nclasses,
	    token != NULL ? ", new CircleCI API token" : "");
	return 0;
}

static void
poller_teardown(struct poller *p)
{
	sched_free(&p->p_sched);
	metrics_free(p->p_metrics);
	free(p->p_outbox);
	free(p->p_classes);
}

int
poller_run(struct poller *p)
{
	struct curl_waitfd extra[3];
	uint64_t now, next, rp, interval = p->p_flags->f_poll_interval_ms;
	int running, numfds, sig;

	poller_setup_classes(p);
	metrics_setup(p);
	if (ipc_setup(p) == -1) {
		poller_teardown(p);
		return -1;
	}
	fetch_init(p);
	poller_lock(p);
	p->p_tick_ms = interval / POLL_TICKS;
	if (p->p_tick_ms < POLL_TICK_MIN_MS)
		p->p_tick_ms = POLL_TICK_MIN_MS;
	p->p_next_cycle_ms = p->p_role->r_start_ms + interval;
	metric_set(p->p_m_budget, budget_rate(&p->p_budget, now_ms()));
	metric_set(p->p_m_needed, sched_needed_rps(&p->p_sched));

	while (!p->p_quit) {
		now = now_ms();
		if (now >= p->p_next_cycle_ms) {
			outbox_flush(p, now, true);
			cycle(p, now);
			p->p_next_cycle_ms += interval;
			if (p->p_next_cycle_ms <= now) /* fell behind */
				p->p_next_cycle_ms = now + interval;
		}
		dispatch(p, now);
		curl_multi_perform(p->p_multi, &running);
		fetch_collect(p);
		now = now_ms();
		dispatch(p, now);
		outbox_flush(p, now, false);
		rp = republish(p, now);
		memset(extra, 0, sizeof(extra));
		extra[0].fd = p->p_role->r_sigfd;
		extra[0].events = CURL_WAIT_POLLIN;
		extra[1].fd = p->p_role->r_health_fd;
		extra[1].events = CURL_WAIT_POLLIN;
		extra[2].fd = p->p_role->r_conf_fd;
		extra[2].events = CURL_WAIT_POLLIN;
		next = dispatch_next_ms(p, now);
		if (next > p->p_next_cycle_ms)
			next = p->p_next_cycle_ms;
		if (p->p_noutbox > 0 &&
		    next > p->p_outbox_since_ms + p->p_tick_ms)
			next = p->p_outbox_since_ms + p->p_tick_ms;
		if (next > rp)
			next = rp;
		curl_multi_poll(
		    p->p_multi, extra, 3, ms_until(next, now), &numfds);
		if (extra[1].revents & CURL_WAIT_POLLIN)
			survey_answer(p->p_role->r_health, ROLE_POLLER,
			    &p->p_seq, health_fill, p);
		if (extra[2].revents & CURL_WAIT_POLLIN)
			confmsg_receive(p->p_role->r_conf_sock, ROLE_POLLER,
			    &p->p_confmsg, poller_apply, p);
		if ((extra[0].revents & CURL_WAIT_POLLIN) &&
		    (sig = sig_read(p->p_role->r_sigfd)) != 0) {
			log_info("stopping (%s)", strsignal(sig));
			p->p_quit = true;
		}
	}
	fetch_free(p);
	nng_close(p->p_pub);
	poller_teardown(p);
	return 0;
}
