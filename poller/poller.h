/*
 * The poller: owns the CircleCI API token and nothing Kubernetes.  It
 * fetches the unclaimed and running task counts of every resource class
 * over kept-alive connections and publishes one demand message per class
 * per poll interval; a failed observation is published as a failure, never
 * as zero.  Each class has its own schedule (sched.c): the fast interval
 * while it has tasks, the idle interval once it had none for a while, its
 * polls placed evenly across the interval; every request leaves through
 * one request budget (budget.c).
 */
#ifndef RP_POLLER_H
#define RP_POLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <nng/nng.h>

#include "backoff.h"
#include "conf.h"
#include "confmsg.h"
#include "flags.h"
#include "http.h"
#include "metrics.h"
#include "msg.h"
#include "role.h"

#define POLL_BODY_MAX         (64 * 1024)
#define POLL_TIMEOUT_MS       10000
#define POLL_BACKOFF_CAP_MS   30000
#define POLL_AUTH_RETRY_MS    30000 /* token rejected: slow down */
#define POLL_CHECK_RETRY_MS   10000 /* start-up check without answer */
#define POLL_HOST_CONNS       16
#define POLL_INFLIGHT_MAX     (2 * POLL_HOST_CONNS) /* transfers at once */
#define POLL_XFER_IDLE_MAX    4     /* finished transfers kept for reuse */
#define POLL_XFER_BUFSIZE     4096  /* libcurl's receive buffer per handle */
#define POLL_LOG_EVERY_MS     60000 /* --log-scaler-lines changes */
#define POLL_TICKS            20    /* polls leave at 20 points a cycle */
#define POLL_TICK_MIN_MS      10
#define POLL_PUB_QUEUE_MAX    8192 /* nng's limit */
#define POLL_REPEAT_INTERVALS 2    /* an unchanged demand message, at most */

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

/* What one answer advertised in RateLimit-* / X-RateLimit-* headers. */
struct rl_headers {
	bool rh_seen;        /* any rate-limit header */
	double rh_limit_rps; /* lowest limit per window; 0: none */
	bool rh_have_remaining;
	uint64_t rh_remaining;
	bool rh_have_reset;
	double rh_reset_s;       /* until the window resets */
	double rh_win_remaining; /* X-RateLimit-Remaining-<window> ... */
	double rh_win_s;         /* ... and that window; 0: none */
};

#define BUDGET_BURST_MS     100    /* requests may leave this much early */
#define BUDGET_GROW_MS      1000   /* additive increase, once a second ... */
#define BUDGET_GROW_STEPS   20     /* ... by max/20: half to full in 10 s */
#define BUDGET_FLOOR_RPS    1.0    /* 429s never push it lower */
#define BUDGET_LIMIT_TTL_MS 600000 /* an advertised limit not repeated */
#define BUDGET_RESET_MAX_S  3600   /* longest pause a header can ask for */

enum {
	BUDGET_EV_DECREASED = 1, /* a 429 halved the rate */
	BUDGET_EV_LIMIT = 2,     /* the advertised limit changed */
	BUDGET_EV_PAUSED = 4,    /* the advertised quota ran out */
};

/* The request budget: a GCRA pacer at the effective rate, which is the
 * lowest of the AIMD rate (--max-requests-per-second, halved on a 429,
 * grown back each second), the limit CircleCI advertises, and the
 * remaining quota spread over the time to its reset. */
struct budget {
	double bg_max_rps;
	double bg_aimd_rps;
	double bg_limit_rps; /* advertised; 0: none */
	uint64_t bg_limit_seen_ms;
	double bg_pace_rps;        /* remaining / reset ... */
	uint64_t bg_pace_until_ms; /* ... until then */
	double bg_tat_ms;          /* GCRA theoretical arrival time */
	double bg_last_rps;        /* the rate of the last charge ... */
	unsigned bg_last_cost;     /* ... and its size */
	uint64_t bg_decreased_ms;  /* last halving */
	uint64_t bg_grown_ms;      /* last additive step */
	uint64_t bg_decreases;
};

#define SCHED_UNQUEUED SIZE_MAX

/* A class's place in the schedule. */
struct sched_slot {
	size_t ss_index;            /* its phase in the interval */
	uint64_t ss_due_ms;         /* next poll */
	size_t ss_heap;             /* SCHED_UNQUEUED: in flight */
	uint64_t ss_quiet_since_ms; /* polls since then found no task */
	bool ss_quiet;
	bool ss_idle;                /* on the idle interval */
	uint64_t ss_started_ms;      /* the last poll */
	uint64_t ss_prev_started_ms; /* the one before */
};

enum sched_outcome {
	SCHED_QUIET, /* polled: no task */
	SCHED_TASKS, /* polled: tasks unclaimed or running */
	SCHED_FAILED,
};

/* Classes waiting for their next poll, earliest first. */
struct sched {
	struct sched_slot **sc_heap;
	size_t sc_len;
	size_t sc_nclasses;
	size_t sc_nidle;
	uint64_t sc_epoch_ms;
	uint64_t sc_fast_ms;
	uint64_t sc_idle_ms;
	uint64_t sc_idle_after_ms;
};

struct poll_xfer;

struct poll_class {
	const struct conf_class *pc_conf;
	char *pc_query; /* the class name, URL-escaped */
	struct sched_slot pc_slot;
	struct fetch_result pc_result[2]; /* this poll's two fetches */
	int pc_pending;                   /* fetches of this poll still out */
	uint64_t pc_not_before_ms;        /* backoff or Retry-After */
	struct backoff pc_backoff;
	/* The last demand message, repeated every interval until the next
	 * observation replaces it. */
	bool pc_in_outbox; /* a new message waits in p_outbox */
	bool pc_published;
	uint64_t pc_published_ms;
	bool pc_msg_ok;
	enum demand_error pc_msg_error;
	uint16_t pc_msg_status;
	uint64_t pc_msg_observed_ms; /* wall clock */
	/* --log-scaler-lines changes: the numbers last logged. */
	bool pc_logged;
	uint64_t pc_logged_ms;
	uint32_t pc_logged_unclaimed;
	uint32_t pc_logged_running;
	uint32_t pc_logged_desired;
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
	bool pc_check_busy;
	uint64_t pc_check_not_before_ms;
	/* Metrics. */
	struct metric_series *pc_m_unclaimed;
	struct metric_series *pc_m_running;
	struct metric_series *pc_m_desired;
	struct metric_series *pc_m_ok;
	struct metric_series *pc_m_failed;
	struct metric_series *pc_m_interval;
};

struct poller {
	struct role *p_role;
	const struct flags *p_flags;
	struct conf *p_conf;
	char *p_token;
	struct poll_class *p_classes;
	size_t p_nclasses;
	CURLM *p_multi;
	struct curl_slist *p_headers;
	struct poll_xfer *p_busy[POLL_INFLIGHT_MAX]; /* transfers out */
	struct poll_xfer *p_xfer_idle; /* finished transfers for reuse */
	unsigned p_nxfer_idle;
	unsigned p_inflight;
	nng_socket p_pub;
	uint32_t p_seq;
	uint64_t p_cycle; /* one per poll interval */
	uint64_t p_next_cycle_ms;
	struct sched p_sched;
	struct budget p_budget;
	bool p_short; /* the budget is below the schedule */
	uint64_t p_tick_ms;
	struct poll_class **p_outbox; /* new messages of this batch */
	size_t p_noutbox;
	uint64_t p_outbox_since_ms;
	uint64_t p_next_republish_ms;
	bool p_quit;
	struct metrics *p_metrics;
	struct metric_family *p_m_requests;
	struct metric_series *p_m_duration[FETCH_NKINDS];
	struct metric_series *p_m_lag;
	struct metric_series *p_m_published_ok;
	struct metric_series *p_m_published_failed;
	struct metric_series *p_m_idle;
	struct metric_series *p_m_budget;
	struct metric_series *p_m_needed;
	struct metric_series *p_m_decreases;
	/* Per-class families, for classes a new configuration adds. */
	struct metric_family *p_m_unclaimed;
	struct metric_family *p_m_running;
	struct metric_family *p_m_desired;
	struct metric_family *p_m_polls;
	struct metric_family *p_m_interval;
	struct confmsg_state p_confmsg;
};

/* poller.c */
int poller_run(struct poller *);
/* Runs conf (taken) from now on, and token (taken, or NULL: the same):
 * classes it keeps keep their state; polls in flight are dropped and
 * start again with the next cycle. */
void poller_reconfigure(struct poller *, struct conf *, char *token);

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
/* Starts pc's two task fetches, and its start-up check when check is
 * set.  -1 (nothing started) when they cannot start. */
int fetch_start(
    struct poller *, struct poll_class *, bool check, uint64_t now);
/* How many more transfers may start now. */
unsigned fetch_slots(const struct poller *);
/* Moves finished transfers forward; calls poller_fetched or
 * poller_checked for each. */
void fetch_collect(struct poller *);
const char *fetch_kind_name(enum fetch_kind);

/* budget.c */
void budget_init(struct budget *, double max_rps, uint64_t now);
/* Requests per second allowed now. */
double budget_rate(const struct budget *, uint64_t now);
/* When the next requests may leave: now, or later. */
uint64_t budget_ready_at(const struct budget *, uint64_t now);
/* Charges n requests if they may leave now (true), else false. */
bool budget_take(struct budget *, unsigned n, uint64_t now);
/* Grows the rate back after a halving; true when it reached the maximum
 * again with this call. */
bool budget_tick(struct budget *, uint64_t now);
/* An answer came for a request sent at sent_ms: 429 halves the rate
 * (once for all requests sent before the last halving), headers cap it.
 * Returns BUDGET_EV_* bits. */
int budget_answer(struct budget *, long status, uint64_t sent_ms,
    const struct rl_headers *, uint64_t now);
/* Reads one response header into h when it is a rate-limit header;
 * wall_s is the current epoch second (reset given as a time). */
void budget_header(struct rl_headers *h, const char *name, size_t namelen,
    const char *value, size_t valuelen, int64_t wall_s);

/* sched.c */
void sched_init(struct sched *, size_t nclasses, uint64_t epoch,
    uint64_t fast_ms, uint64_t idle_ms, uint64_t idle_after_ms);
void sched_free(struct sched *);
/* Queues slot index (of nclasses) for its first poll, its phase in the
 * fast interval. */
void sched_add(struct sched *, struct sched_slot *, size_t index);
/* The slot whose poll is due at now, earliest first; NULL when none. */
struct sched_slot *sched_due(const struct sched *, uint64_t now);
/* The earliest due time of a queued slot; UINT64_MAX when none. */
uint64_t sched_next_ms(const struct sched *);
/* Takes s (from sched_due) out of the queue: its poll starts now. */
void sched_started(struct sched *, struct sched_slot *, uint64_t now);
/* s's poll ended: updates its idle state and queues its next poll, at
 * not_before_ms at the earliest.  Returns true when it moved between the
 * fast and the idle interval. */
bool sched_finished(struct sched *, struct sched_slot *, enum sched_outcome,
    uint64_t not_before_ms, uint64_t now);
/* The first point of the grid (epoch + phase of index + k * interval)
 * strictly after t. */
uint64_t sched_grid_after(
    const struct sched *, uint64_t t, uint64_t interval_ms, size_t index);
/* The interval s is on now. */
uint64_t sched_interval(const struct sched *, const struct sched_slot *);
/* Requests per second the schedule asks for (two per poll). */
double sched_needed_rps(const struct sched *);

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
/* Every answer (status 0: none), for the request budget. */
void poller_answered(
    struct poller *, long status, uint64_t sent_ms, const struct rl_headers *);

#endif
