#include <errno.h>
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
#include "util.h"

#define SPAN_SCALER "worker loop scaler"

static const char *const fetch_failed_msg[2] = {
	[FETCH_UNCLAIMED] = "failed to get unclaimed tasks",
	[FETCH_RUNNING] = "failed to get running tasks",
};

/* A class counts as healthy when it succeeded within this window. */
static uint64_t
ready_window_ms(const struct poller *p)
{
	uint64_t w = 5 * p->p_flags->f_poll_interval_ms;

	return w > 15000 ? w : 15000;
}

static void
publish(struct poller *p, struct poll_class *pc, bool ok,
    enum demand_error err, uint16_t status)
{
	struct msg_demand d;
	struct buf b = { 0 };

	memset(&d, 0, sizeof(d));
	d.d_cycle = p->p_cycle;
	d.d_observed_ms = wall_ms();
	d.d_ok = ok;
	d.d_error = (uint8_t)err;
	d.d_http_status = status;
	if (ok) {
		d.d_unclaimed = pc->pc_unclaimed;
		d.d_running = pc->pc_running;
	}
	strlcpy_rp(d.d_class, pc->pc_conf->cc_name, sizeof(d.d_class));
	msg_demand_encode(&d, ++p->p_seq, &b);
	ipc_send(p->p_pub, b.b_data, b.b_len);
	buf_free(&b);
	metric_inc(ok ? p->p_m_published_ok : p->p_m_published_failed, 1);
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
	pc->pc_desired = decision_desired(pc->pc_unclaimed, pc->pc_running,
	    cc->cc_min_replicas, cc->cc_max_replicas);
	pc->pc_have_success = true;
	pc->pc_last_success_ms = now;
	pc->pc_last_error = DEMAND_ERR_NONE;
	pc->pc_last_status = 200;
	pc->pc_last_text[0] = '\0';
	pc->pc_not_before_ms = 0;
	backoff_reset(&pc->pc_backoff);
	publish(p, pc, true, DEMAND_ERR_NONE, 200);

	metric_set(pc->pc_m_unclaimed, pc->pc_unclaimed);
	metric_set(pc->pc_m_running, pc->pc_running);
	metric_set(pc->pc_m_desired, pc->pc_desired);
	metric_inc(pc->pc_m_ok, 1);

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
	pc->pc_hold_error = worst->fr_error;
	pc->pc_hold_status = worst->fr_http_status;
	pc->pc_not_before_ms = now + delay;
	metric_inc(pc->pc_m_failed, 1);
	publish(p, pc, false, worst->fr_error, worst->fr_http_status);
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
	    pc->pc_result[FETCH_RUNNING].fr_ok)
		class_succeeded(p, pc, now);
	else
		class_failed(p, pc, now);
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

static void
cycle_start(struct poller *p, uint64_t now)
{
	struct poll_class *pc;
	size_t i;

	p->p_cycle++;
	for (i = 0; i < p->p_nclasses; i++) {
		pc = &p->p_classes[i];
		fetch_check(p, pc, now);
		if (pc->pc_pending > 0)
			continue; /* still waiting on a slow answer */
		if (now < pc->pc_not_before_ms) {
			/* Paused by backoff or Retry-After: the actuator is
			 * told the class is held, not that demand is 0. */
			publish(p, pc, false, pc->pc_hold_error,
			    pc->pc_hold_status);
			continue;
		}
		if (fetch_start(p, pc) == -1)
			publish(p, pc, false, DEMAND_ERR_TRANSPORT, 0);
	}
}

static bool
class_healthy(
    const struct poller *p, const struct poll_class *pc, uint64_t now)
{
	return pc->pc_have_success && pc->pc_last_error != DEMAND_ERR_AUTH &&
	    now - pc->pc_last_success_ms <= ready_window_ms(p);
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
	    now - p->p_role->r_start_ms > ready_window_ms(p))
		h->hl_state = HEALTH_FAILING;
	else
		h->hl_state = HEALTH_STARTING;
	h->hl_uptime_ms = now - p->p_role->r_start_ms;
	h->hl_detail = json_pack("{s:I,s:I,s:o}", "poll_interval_ms",
	    (json_int_t)p->p_flags->f_poll_interval_ms, "cycle",
	    (json_int_t)p->p_cycle, "classes", classes);
	metrics_render(p->p_metrics, metrics_text);
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
	struct metric_family *unclaimed, *running, *desired, *polls, *dur,
	    *pub;
	struct poll_class *pc;
	size_t i;
	int k;

	p->p_metrics = metrics_new();
	unclaimed =
	    metrics_family(p->p_metrics, METRIC_GAUGE, "tasks_unclaimed",
	        "Unclaimed (queued) tasks, as last polled.", cls, NULL, 0);
	running = metrics_family(p->p_metrics, METRIC_GAUGE, "tasks_running",
	    "Running tasks, as last polled.", cls, NULL, 0);
	desired = metrics_family(p->p_metrics, METRIC_GAUGE, "desired_vms",
	    "clamp(unclaimed + running, minReplicas, maxReplicas).", cls, NULL,
	    0);
	polls = metrics_family(p->p_metrics, METRIC_COUNTER, "polls_total",
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
	    "How late each poll cycle started against its schedule.", NULL,
	    lag, nitems(lag)));
	pub = metrics_family(p->p_metrics, METRIC_COUNTER,
	    "demand_published_total",
	    "Demand messages sent to the actuator, by result.",
	    (const char *[]){ "result", NULL }, NULL, 0);
	p->p_m_published_ok = metric_series(pub, (const char *[]){ "ok" });
	p->p_m_published_failed =
	    metric_series(pub, (const char *[]){ "failed" });
	for (i = 0; i < p->p_nclasses; i++) {
		pc = &p->p_classes[i];
		const char *v[] = { pc->pc_conf->cc_name };
		pc->pc_m_unclaimed = metric_series(unclaimed, v);
		pc->pc_m_running = metric_series(running, v);
		pc->pc_m_desired = metric_series(desired, v);
		pc->pc_m_ok =
		    metric_series(polls, (const char *[]){ v[0], "ok" });
		pc->pc_m_failed =
		    metric_series(polls, (const char *[]){ v[0], "failed" });
	}
}

static int
ipc_setup(struct poller *p)
{
	char url[IPC_URL_MAX];

	if (ipc_url(url, sizeof(url), p->p_role->r_run_dir, IPC_DEMAND) ==
	        -1 ||
	    ipc_open(&p->p_pub, IPC_PUB_LISTEN, url, NULL) == -1)
		return -1;
	return 0;
}

static void
poller_setup_classes(struct poller *p)
{
	size_t i;

	p->p_nclasses = p->p_conf->c_nclasses;
	p->p_classes = xcalloc(p->p_nclasses, sizeof(*p->p_classes));
	for (i = 0; i < p->p_nclasses; i++) {
		p->p_classes[i].pc_conf = &p->p_conf->c_classes[i];
		backoff_init(&p->p_classes[i].pc_backoff,
		    p->p_flags->f_poll_interval_ms,
		    p->p_flags->f_poll_interval_ms > POLL_BACKOFF_CAP_MS
		        ? p->p_flags->f_poll_interval_ms
		        : POLL_BACKOFF_CAP_MS);
	}
}

int
poller_run(struct poller *p)
{
	struct curl_waitfd extra[2];
	uint64_t now, interval = p->p_flags->f_poll_interval_ms;
	int running, numfds, timeout, sig;

	poller_setup_classes(p);
	metrics_setup(p);
	if (ipc_setup(p) == -1) {
		metrics_free(p->p_metrics);
		free(p->p_classes);
		return -1;
	}
	fetch_init(p);
	poller_lock(p);
	p->p_next_cycle_ms = p->p_role->r_start_ms;

	while (!p->p_quit) {
		now = now_ms();
		if (now >= p->p_next_cycle_ms) {
			metric_observe(p->p_m_lag,
			    (double)(now - p->p_next_cycle_ms) / 1000.0);
			cycle_start(p, now);
			p->p_next_cycle_ms += interval;
			if (p->p_next_cycle_ms <= now) /* fell behind */
				p->p_next_cycle_ms = now + interval;
		}
		curl_multi_perform(p->p_multi, &running);
		fetch_collect(p);
		memset(extra, 0, sizeof(extra));
		extra[0].fd = p->p_role->r_sigfd;
		extra[0].events = CURL_WAIT_POLLIN;
		extra[1].fd = p->p_role->r_health_fd;
		extra[1].events = CURL_WAIT_POLLIN;
		timeout = ms_until(p->p_next_cycle_ms, now_ms());
		curl_multi_poll(p->p_multi, extra, 2, timeout, &numfds);
		if (extra[1].revents & CURL_WAIT_POLLIN)
			survey_answer(p->p_role->r_health, ROLE_POLLER,
			    &p->p_seq, health_fill, p);
		if ((extra[0].revents & CURL_WAIT_POLLIN) &&
		    (sig = sig_read(p->p_role->r_sigfd)) != 0) {
			log_info("stopping (%s)", strsignal(sig));
			p->p_quit = true;
		}
	}
	fetch_free(p);
	nng_close(p->p_pub);
	metrics_free(p->p_metrics);
	free(p->p_classes);
	return 0;
}
