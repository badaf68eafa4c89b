/*
 * The supervisor: starts the poller and the actuator, restarts them with
 * backoff, surveys their health over nng, and serves /ready, /live and
 * /metrics.  One thread of ours, one poll() (libmicrohttpd runs in the
 * same loop, in external-select mode).
 */
#ifndef RP_SUPERVISOR_H
#define RP_SUPERVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <nng/nng.h>

#include "backoff.h"
#include "buf.h"
#include "conf.h"
#include "flags.h"
#include "metrics.h"
#include "msg.h"

#define CHILD_RESTART_BASE_MS 1000 /* second restart; the first is at once */
#define CHILD_RESTART_CAP_MS  30000
#define CHILD_STABLE_MS       30000 /* up this long: backoff resets */
#define CRASH_LOOP_DEATHS     5
#define CRASH_LOOP_WINDOW_MS  60000
#define CRASH_LOOP_DELAY_MS   60000 /* restart pace while crash-looping */
#define SURVEY_INTERVAL_MS    1000
#define SURVEY_FAST_MS        100  /* while a new child has not answered */
#define SURVEY_FAST_FOR_MS    3000 /* ... for this long after its start */
/* An answer may come this late: a child with many classes is busy for a
 * while at a time (parsing a list of all its pools, rendering its answer),
 * and a new survey makes the answers to the last one void.  While a child
 * misses surveys (busy, or starved of CPU), the window doubles up to
 * SURVEY_TIME_MAX_MS, and surveys, freshness and the
 * kill deadline stretch with it (health.c); it narrows again once every
 * child answers in time. */
#define SURVEY_TIME_MS     900
#define SURVEY_TIME_MAX_MS 2000
#define HEALTH_FRESH_MS    3000  /* an answer older than this: not ready */
#define HEALTH_KILL_MS     10000 /* no answer this long: kill the child */
#define HEALTH_START_MS    30000 /* ... or no first answer this long */
#define RELOAD_CHECK_MS    10000 /* read the files, events or not */
#define RELOAD_DEBOUNCE_MS 100   /* after an event, before reading */
#define RELOAD_RESEND_MS   1000  /* until the child answers */
#define IDENTITY_MAX       128

enum child_state {
	CHILD_DOWN,     /* not started, or reaped */
	CHILD_RUNNING,  /* forked; may or may not answer yet */
	CHILD_WAITING,  /* dead; restart scheduled */
	CHILD_FAILED,   /* exited with a permanent failure */
	CHILD_STOPPING, /* SIGTERM sent during shutdown */
};

struct child {
	const char *c_name; /* "poller", "actuator" */
	enum health_role c_role;
	char *c_path; /* executable */
	enum child_state c_state;
	pid_t c_pid;
	uint64_t c_started_ms;
	uint64_t c_next_start_ms;  /* CHILD_WAITING */
	uint64_t c_last_answer_ms; /* 0: none since spawn */
	unsigned int c_restarts;
	uint64_t c_deaths[CRASH_LOOP_DEATHS]; /* ring of death times */
	unsigned int c_ndeaths;
	bool c_crash_loop;
	bool c_quick_restart; /* next restart without delay */
	bool c_killed_unresponsive;
	char c_last_exit[96]; /* how it last ended */
	struct backoff c_backoff;
	struct msg_health c_health; /* latest answer */
	bool c_have_health;
	struct metric_series *c_m_restarts;
	struct metric_series *c_m_up;
	struct metric_series *c_m_crash_loop;
	struct metric_series *c_m_answer_bytes;
	/* Its configuration: the generation it runs (it started from the
	 * saved one, or answered a newer one), and its own socket. */
	nng_socket c_conf_sock;
	int c_conf_fd;
	uint64_t c_conf_gen;
	uint64_t c_conf_sent_ms;
	char c_conf_error[256]; /* why it refused the last one */
};

/* Hot reload (reload.c). */
struct sup_reload {
	int r_inotify; /* -1: none */
	struct {
		int w_wd;
		char w_dir[4096];
	} r_watch[3];
	size_t r_nwatch;
	uint64_t r_next_check_ms;
	uint64_t r_soon_ms; /* an event asked for a check; UINT64_MAX */
	uint64_t r_generation;
	/* What runs (accepted): the configuration file's text, the token. */
	char *r_config;
	size_t r_config_len;
	char *r_token;   /* NULL: s_circle_token, which cannot change */
	char *r_secrets; /* secrets.yaml; NULL: none */
	size_t r_secrets_len;
	/* The files as last looked at, accepted or not. */
	char *r_seen_config;
	size_t r_seen_config_len;
	char *r_seen_token;
	size_t r_seen_token_len;
	char *r_seen_secrets;
	size_t r_seen_secrets_len;
	bool r_rejected; /* the files hold a rejected change */
	char r_error[CONF_ERR_MAX];
	uint64_t r_changed_wall_ms;
	struct buf r_msg[2]; /* for the poller, the actuator */
	/* What a restarted child starts from: the poller's configuration,
	 * the actuator's, and the actuator's secrets ("": none). */
	char r_snapshot[3][4096];
	struct metric_series *r_m_applied;
	struct metric_series *r_m_rejected;
	struct metric_series *r_m_ok;
	struct metric_series *r_m_generation;
};

struct supervisor {
	const struct flags *s_flags;
	struct conf *s_conf; /* the running configuration */
	const char *s_run_dir;
	/* From CIRCLE_TOKEN or --circle-token-fd, which cannot change; NULL:
	 * from the file (s_reload.r_token). */
	char *s_circle_token;
	char **s_child_argv; /* shared tail: the original flags */
	int s_child_argc;
	struct child s_children[2];
	int s_sigfd;
	nng_socket s_survey;
	int s_survey_fd;
	uint32_t s_seq;
	uint64_t s_next_survey_ms;
	bool s_quit;
	uint64_t s_kill_deadline_ms; /* shutdown: SIGKILL after */
	struct sup_http *s_http;
	struct metrics *s_metrics;
	struct metric_series *s_m_rejected[MSG_NERR];
	struct metric_series *s_m_survey_lat;
	struct metric_series *s_m_survey_window;
	uint64_t s_start_ms;
	struct sup_reload s_reload;
	char s_identity[IDENTITY_MAX + 1]; /* the actuator's, in the Lease */
};

/* supervisor.c */
int sup_run(struct supervisor *);
/* Frees what main and child_init set up (children, metrics). */
void sup_free(struct supervisor *);

/* child.c */
/* Fills the child table and checks the executables exist. */
int child_init(struct supervisor *, const char *self_dir);
void child_spawn(struct supervisor *, struct child *, uint64_t now);
/* Reaps every exited process and schedules restarts. */
void child_reap(struct supervisor *);
/* Starts children whose restart time has come. */
void child_tick(struct supervisor *, uint64_t now);
uint64_t child_next_deadline(const struct supervisor *);
void child_stop_all(struct supervisor *, int sig);
bool child_all_down(const struct supervisor *);
struct child *child_by_pid(struct supervisor *, pid_t);
const char *child_state_name(enum child_state);

/* health.c */
int health_init(struct supervisor *);
void health_survey(struct supervisor *, uint64_t now);
void health_receive(struct supervisor *, uint64_t now);
/* Kills children that stopped answering (or never started to). */
void health_check(struct supervisor *, uint64_t now);
/* When a running child is killed unless it answers. */
uint64_t health_kill_deadline(const struct child *);
bool health_child_ready(const struct child *, uint64_t now);
bool health_ready(const struct supervisor *, uint64_t now);
/* The /ready body (a new JSON object). */
json_t *health_report(const struct supervisor *, uint64_t now);
void health_metrics(const struct supervisor *, struct buf *);

/* reload.c */
/* Reads and validates what runs, saves it for the children, and starts
 * watching.  -1 with err. */
int reload_init(struct supervisor *, char *err, size_t errlen);
void reload_free(struct supervisor *);
/* The children's configuration sockets. */
int reload_open(struct supervisor *);
void reload_close(struct supervisor *);
/* The inotify descriptor to poll, or -1. */
int reload_fd(const struct supervisor *);
void reload_events(struct supervisor *, uint64_t now);
/* Looks at the files when an event or the periodic check asks. */
void reload_tick(struct supervisor *, uint64_t now);
/* Sends each running child a configuration it does not run yet. */
void reload_send(struct supervisor *, uint64_t now);
void reload_receive(struct supervisor *, struct child *);
uint64_t reload_deadline(const struct supervisor *);
/* The CircleCI token a poller starts with: the one running now. */
const char *sup_circle_token(const struct supervisor *);
/* The file a child starts from. */
const char *reload_snapshot(const struct supervisor *, enum health_role);
/* The actuator's secrets file, "" when it has none. */
const char *reload_secrets_snapshot(const struct supervisor *);
/* /ready's "config": generation, last change, each child's. */
json_t *reload_report(const struct supervisor *);

/* http.c */
struct sup_http;
/* Binds the probe and metrics listeners.  -1 (logged) on failure. */
struct sup_http *http_start(struct supervisor *);
void http_stop(struct sup_http *);
/* Descriptors to poll (up to 2) and the earliest MHD deadline. */
int http_fds(struct sup_http *, int *fds, int max);
uint64_t http_next_deadline(struct sup_http *, uint64_t now);
void http_run(struct sup_http *);

#endif
