/*
 * The poller: owns the CircleCI API token and nothing Kubernetes.  Every
 * poll interval it fetches the unclaimed and running task counts of every
 * resource class (concurrently, over kept-alive connections) and publishes
 * one demand message per class; a failed observation is published as a
 * failure, never as zero.
 */
#ifndef RP_POLLER_H
#define RP_POLLER_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <nng/nng.h>

#include "backoff.h"
#include "conf.h"
#include "flags.h"
#include "http.h"
#include "metrics.h"
#include "msg.h"
#include "role.h"

#define POLL_BODY_MAX       (64 * 1024)
#define POLL_TIMEOUT_MS     10000
#define POLL_BACKOFF_CAP_MS 30000
#define POLL_AUTH_RETRY_MS  30000 /* token rejected: slow down */
#define POLL_CHECK_RETRY_MS 10000 /* start-up check without answer */
#define POLL_HOST_CONNS     16

enum fetch_kind {
	FETCH_UNCLAIMED, /* /api/v3/runner/tasks */
	FETCH_RUNNING,   /* /api/v3/runner/tasks/running */
	FETCH_CHECK,     /* /api/v3/runner (start-up check) */
	FETCH_NKINDS,
};

/* The outcome of one fetch, as parse.c and fetch.c judge it. */
struct fetch_result {
	bool fr_ok;
	uint32_t fr_count;
	enum demand_error fr_error;
	uint16_t fr_http_status;
	uint64_t fr_retry_after_ms; /* 429 with Retry-After */
	bool fr_have_retry_after;
	char fr_text[256]; /* for logs and /ready */
};

struct poll_class {
	const struct conf_class *pc_conf;
	char *pc_url[FETCH_NKINDS];
	struct http_xfer pc_xfer[FETCH_NKINDS];
	struct fetch_result pc_result[2]; /* this cycle's two fetches */
	int pc_pending;                   /* fetches of this cycle still out */
	uint64_t pc_not_before_ms;        /* backoff or Retry-After */
	struct backoff pc_backoff;
	enum demand_error pc_hold_error; /* why polling is paused */
	uint16_t pc_hold_status;
	/* Health and logs. */
	bool pc_have_success;
	uint64_t pc_last_success_ms;
	uint32_t pc_unclaimed;
	uint32_t pc_running;
	uint32_t pc_desired;
	enum demand_error pc_last_error; /* NONE after a success */
	uint16_t pc_last_status;
	char pc_last_text[256];
	bool pc_checked; /* start-up check answered */
	uint64_t pc_check_not_before_ms;
	/* Metrics. */
	struct metric_series *pc_m_unclaimed;
	struct metric_series *pc_m_running;
	struct metric_series *pc_m_desired;
	struct metric_series *pc_m_ok;
	struct metric_series *pc_m_failed;
};

struct poller {
	struct role *p_role;
	const struct flags *p_flags;
	struct conf *p_conf;
	char *p_token;
	struct poll_class *p_classes;
	size_t p_nclasses;
	CURLM *p_multi;
	nng_socket p_pub;
	uint32_t p_seq;
	uint64_t p_cycle;
	uint64_t p_next_cycle_ms;
	bool p_quit;
	struct metrics *p_metrics;
	struct metric_family *p_m_requests;
	struct metric_series *p_m_duration[FETCH_NKINDS];
	struct metric_series *p_m_lag;
	struct metric_series *p_m_published_ok;
	struct metric_series *p_m_published_failed;
};

/* poller.c */
int poller_run(struct poller *);

/* confine.c */
/* Adds what the poller may read after start-up: its token file (when the
 * token comes from one) and --circleci-ca-file. */
void poller_paths(
    const struct flags *, bool token_from_file, struct confine_paths *);
/* Installs its system call allow-list (role_lock). */
void poller_lock(struct poller *);

/* fetch.c */
void fetch_init(struct poller *);
void fetch_free(struct poller *);
/* Starts this cycle's two fetches for pc.  -1 when they cannot start. */
int fetch_start(struct poller *, struct poll_class *);
/* Starts the start-up check of pc when one is due. */
void fetch_check(struct poller *, struct poll_class *, uint64_t now);
/* Moves finished transfers forward; calls poller_fetched for each. */
void fetch_collect(struct poller *);
const char *fetch_kind_name(enum fetch_kind);

/* parse.c */
/* Judges a finished transfer of kind into r. */
void parse_result(
    const struct http_xfer *, enum fetch_kind, struct fetch_result *r);
/* Reads the runner list of the start-up check; -1 when malformed. */
int parse_runner_count(const struct http_xfer *, size_t *count);

/* poller.c, called by fetch.c */
void poller_fetched(struct poller *, struct poll_class *, enum fetch_kind,
    const struct fetch_result *);
void poller_checked(
    struct poller *, struct poll_class *, const struct http_xfer *);

#endif
