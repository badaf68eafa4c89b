#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/survey0/survey.h>

#include "ipc.h"
#include "log.h"
#include "supervisor.h"
#include "util.h"

int
health_init(struct supervisor *s)
{
	static const char *const reason[] = { "reason", NULL };
	static const double lat_buckets[] = { 0.001, 0.005, 0.01, 0.05, 0.1,
		0.5 };
	struct metric_family *rej;
	char url[IPC_URL_MAX];
	size_t i;

	rej = metrics_family(s->s_metrics, METRIC_COUNTER,
	    "health_messages_rejected_total",
	    "Health answers from children dropped as malformed or foreign.",
	    reason, NULL, 0);
	for (i = 1; i < MSG_NERR; i++)
		s->s_m_rejected[i] = metric_series(
		    rej, (const char *[]){ msg_err_name((enum msg_err)i) });
	s->s_m_rejected[0] = metric_series(rej, (const char *[]){ "sender" });
	s->s_m_survey_window = metric_single(metrics_family(s->s_metrics,
	    METRIC_GAUGE, "health_survey_window_seconds",
	    "How late a child's health answer may come; widens while a child "
	    "answers late (busy or short of CPU).",
	    NULL, NULL, 0));
	metric_set(s->s_m_survey_window, SURVEY_TIME_MS / 1000.0);
	s->s_m_survey_lat = metric_single(metrics_family(s->s_metrics,
	    METRIC_HISTOGRAM, "health_answer_seconds",
	    "Time from a health survey to a child's answer.", NULL,
	    lat_buckets, nitems(lat_buckets)));
	if (ipc_url(url, sizeof(url), s->s_run_dir, IPC_HEALTH) == -1 ||
	    ipc_open(
	        &s->s_survey, IPC_SURVEYOR_LISTEN, url, &s->s_survey_fd) == -1)
		return -1;
	return 0;
}

/* A child started a moment ago and not heard from yet: survey it often,
 * so its replacement is seen answering quickly.  Not for longer: a survey
 * every SURVEY_FAST_MS leaves a slow starter no time to answer one. */
static bool
child_unanswered(const struct supervisor *s, uint64_t now)
{
	const struct child *c;
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_state == CHILD_RUNNING && c->c_last_answer_ms == 0 &&
		    now < c->c_started_ms + SURVEY_FAST_FOR_MS)
			return true;
	}
	return false;
}

static uint64_t survey_sent_ms;
static bool survey_fast;
static uint64_t survey_window_ms = SURVEY_TIME_MS;

/* The time between surveys: the window, and at least SURVEY_INTERVAL_MS. */
static uint64_t
survey_interval_ms(void)
{
	return survey_window_ms + 100 > SURVEY_INTERVAL_MS
	    ? survey_window_ms + 100
	    : SURVEY_INTERVAL_MS;
}

/* How old an answer may be and still count as fresh. */
static uint64_t
fresh_ms(void)
{
	uint64_t ms = survey_interval_ms() + survey_window_ms;

	return ms > HEALTH_FRESH_MS ? ms : HEALTH_FRESH_MS;
}

/* Widens the window when a child missed the last (normal) survey; narrows
 * it back, a step at a time, when none did.  A child that never answers
 * is still killed: HEALTH_START_MS after its start, or about HEALTH_KILL_MS
 * after its last answer. */
static void
survey_adapt(struct supervisor *s)
{
	uint64_t was = survey_window_ms;
	const struct child *c;
	bool late = false;
	size_t i;

	if (survey_sent_ms == 0 || survey_fast)
		return;
	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_state == CHILD_RUNNING &&
		    c->c_started_ms < survey_sent_ms &&
		    c->c_last_answer_ms < survey_sent_ms)
			late = true;
	}
	if (late)
		survey_window_ms = 2 * survey_window_ms < SURVEY_TIME_MAX_MS
		    ? 2 * survey_window_ms
		    : SURVEY_TIME_MAX_MS;
	else
		survey_window_ms = survey_window_ms * 3 / 4 > SURVEY_TIME_MS
		    ? survey_window_ms * 3 / 4
		    : SURVEY_TIME_MS;
	if (survey_window_ms != was)
		log_debug("health survey window %llu ms (a child answered "
		          "%s)",
		    (unsigned long long)survey_window_ms,
		    late ? "late" : "in time");
	metric_set(s->s_m_survey_window, (double)survey_window_ms / 1000.0);
}

void
health_survey(struct supervisor *s, uint64_t now)
{
	struct msg_health_query q = { .q_sent_ms = wall_ms() };
	struct buf b = { 0 };

	if (now < s->s_next_survey_ms)
		return;
	survey_adapt(s);
	survey_fast = child_unanswered(s, now);
	nng_socket_set_ms(s->s_survey, NNG_OPT_SURVEYOR_SURVEYTIME,
	    survey_fast ? SURVEY_FAST_MS - 10
	                : (nng_duration)survey_window_ms);
	msg_health_query_encode(&q, ++s->s_seq, &b);
	ipc_send(s->s_survey, b.b_data, b.b_len);
	buf_free(&b);
	survey_sent_ms = now;
	s->s_next_survey_ms =
	    now + (survey_fast ? SURVEY_FAST_MS : survey_interval_ms());
}

static void
store_answer(struct supervisor *s, struct child *c, struct msg_health *h,
    size_t bytes, uint64_t now)
{
	struct log_line ll;

	if (c->c_last_answer_ms == 0) {
		log_begin(&ll, LOG_LVL_INFO, "child answering health surveys");
		log_str(&ll, "child", c->c_name);
		log_int(&ll, "child_pid", c->c_pid);
		log_uint(&ll, "ms_since_start", now - c->c_started_ms);
		log_end(&ll);
	}
	msg_health_clear(&c->c_health);
	c->c_health = *h;
	c->c_have_health = true;
	c->c_last_answer_ms = now;
	metric_set(c->c_m_answer_bytes, (double)bytes);
	metric_observe(
	    s->s_m_survey_lat, (double)(now - survey_sent_ms) / 1000.0);
}

void
health_receive(struct supervisor *s, uint64_t now)
{
	struct msg_health h;
	struct msg_hdr hdr;
	struct child *c;
	enum msg_err e;
	size_t len;
	nng_msg *m;
	int peer;

	while (ipc_recv(s->s_survey, &m) == 1) {
		len = nng_msg_len(m);
		e = msg_health_decode(nng_msg_body(m), len, &hdr, &h);
		peer = ipc_peer_pid(m);
		nng_msg_free(m);
		if (e != MSG_OK) {
			metric_inc(s->s_m_rejected[e], 1);
			log_warnx("dropped a malformed health answer (%s)",
			    msg_err_name(e));
			continue;
		}
		c = child_by_pid(s, (pid_t)hdr.h_pid);
		if (c == NULL || c->c_state != CHILD_RUNNING ||
		    (peer != -1 && peer != (int)hdr.h_pid) ||
		    c->c_role != h.hl_role) {
			metric_inc(s->s_m_rejected[0], 1);
			log_warnx("dropped a health answer from pid %u (peer "
			          "pid %d), which is not a running child",
			    hdr.h_pid, peer);
			msg_health_clear(&h);
			continue;
		}
		store_answer(s, c, &h, len, now);
	}
}

uint64_t
health_kill_deadline(const struct child *c)
{
	uint64_t silence = 3 * (survey_interval_ms() + survey_window_ms);

	if (c->c_last_answer_ms == 0)
		return c->c_started_ms + HEALTH_START_MS;
	return c->c_last_answer_ms +
	    (silence > HEALTH_KILL_MS ? silence : HEALTH_KILL_MS);
}

void
health_check(struct supervisor *s, uint64_t now)
{
	struct log_line ll;
	struct child *c;
	uint64_t ref;
	size_t i;

	if (s->s_quit)
		return;
	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_state != CHILD_RUNNING || c->c_killed_unresponsive)
			continue;
		if (now < health_kill_deadline(c))
			continue;
		ref = c->c_last_answer_ms ? c->c_last_answer_ms
		                          : c->c_started_ms;
		log_begin(&ll, LOG_LVL_ERROR,
		    "child stopped answering health surveys; killing it");
		log_str(&ll, "child", c->c_name);
		log_int(&ll, "child_pid", c->c_pid);
		log_uint(&ll, "silent_ms", now - ref);
		log_bool(&ll, "ever_answered", c->c_last_answer_ms != 0);
		log_end(&ll);
		kill(c->c_pid, SIGKILL);
		c->c_killed_unresponsive = true;
	}
}

bool
health_child_ready(const struct child *c, uint64_t now)
{
	return c->c_state == CHILD_RUNNING && c->c_have_health &&
	    now - c->c_last_answer_ms <= fresh_ms() &&
	    c->c_health.hl_state == HEALTH_OK;
}

bool
health_ready(const struct supervisor *s, uint64_t now)
{
	size_t i;

	if (s->s_quit)
		return false;
	for (i = 0; i < nitems(s->s_children); i++)
		if (!health_child_ready(&s->s_children[i], now))
			return false;
	return true;
}

/* Why a child is not ready, in words an operator can act on. */
static const char *
child_reason(const struct child *c, uint64_t now)
{
	if (c->c_state == CHILD_FAILED)
		return "failed permanently (see the logs); not restarted";
	if (c->c_crash_loop)
		return "crash-looping";
	if (c->c_state != CHILD_RUNNING)
		return "not running";
	if (!c->c_have_health)
		return "not answering health surveys yet";
	if (now - c->c_last_answer_ms > fresh_ms())
		return "stopped answering health surveys";
	if (c->c_health.hl_state == HEALTH_STARTING)
		return "no success yet";
	return "failing: see detail";
}

json_t *
health_report(const struct supervisor *s, uint64_t now)
{
	json_t *root = json_object(), *children = json_object(), *reasons;
	const struct child *c;
	json_t *o;
	char why[160];
	size_t i;

	reasons = json_array();
	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		o = json_object();
		json_object_set_new(
		    o, "state", json_string(child_state_name(c->c_state)));
		if (c->c_pid > 0)
			json_object_set_new(o, "pid", json_integer(c->c_pid));
		json_object_set_new(
		    o, "restarts", json_integer(c->c_restarts));
		json_object_set_new(
		    o, "crash_looping", json_boolean(c->c_crash_loop));
		if (c->c_last_exit[0] != '\0')
			json_object_set_new(
			    o, "last_exit", json_string(c->c_last_exit));
		if (c->c_have_health) {
			json_object_set_new(o, "health",
			    json_string(health_state_name(
			        (enum health_state)c->c_health.hl_state)));
			json_object_set_new(o, "last_answer_ms_ago",
			    json_integer(
			        (json_int_t)(now - c->c_last_answer_ms)));
			json_object_set(o, "detail", c->c_health.hl_detail);
		}
		json_object_set_new(
		    o, "ready", json_boolean(health_child_ready(c, now)));
		if (!health_child_ready(c, now)) {
			snprintf(why, sizeof(why), "%s: %s", c->c_name,
			    child_reason(c, now));
			json_array_append_new(reasons, json_string(why));
		}
		json_object_set_new(children, c->c_name, o);
	}
	if (s->s_quit)
		json_array_append_new(reasons, json_string("shutting down"));
	json_object_set_new(root, "status",
	    json_string(health_ready(s, now) ? "ready" : "not ready"));
	json_object_set_new(root, "reasons", reasons);
	json_object_set_new(root, "children", children);
	json_object_set_new(root, "config", reload_report(s));
	return root;
}

void
health_metrics(const struct supervisor *s, struct buf *b)
{
	const struct child *c;
	size_t i;

	metrics_render(s->s_metrics, b);
	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_state == CHILD_RUNNING && c->c_have_health)
			buf_append(b, c->c_health.hl_metrics,
			    c->c_health.hl_metrics_len);
	}
}
