/*
 * The actuator: owns the Kubernetes credentials and nothing CircleCI.  It
 * turns demand messages into one decision per resource class and makes
 * that class's VirtualMachinePool match it (or, with --dry-run, logs what
 * it would do), keeps the per-class cloud-init Secret and pool template in
 * step with the configuration, and reclaims VMs whose runner finished.
 *
 * One pass per loop turn, for every class that changed:
 *
 *   nng demand ──► demand.c   record; decide the target (common/decision.c)
 *   kube answers ► observe.c  record what Kubernetes showed
 *                  plan.c     what to send next (pure)
 *                  exec.c     send it ──► kube.c ──► the API server
 *                  report.c   metrics and the health answer
 */
#ifndef RP_ACTUATOR_H
#define RP_ACTUATOR_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <nng/nng.h>

#include "class.h"
#include "flags.h"
#include "kube.h"
#include "kubecreds.h"
#include "lease.h"
#include "metrics.h"
#include "msg.h"
#include "plan.h"
#include "role.h"

#define STALE_INTERVALS       3     /* no demand for this many intervals */
#define RESYNC_MS             2000  /* list pools and VMs */
#define SECRET_RESYNC_MS      30000 /* list the user-data Secrets */
#define LIST_STALE_MS         (5 * RESYNC_MS)
#define WRITE_BACKOFF_BASE_MS 1000
#define WRITE_BACKOFF_CAP_MS  60000

/* Events (event.c). */
#define EVENT_CONTROLLER      "runner-provisioner"
#define EVENT_NOTE_MAX        1024 /* the API server's limit, bytes */
#define EVENT_REASON_MAX      64
#define EVENT_CACHE_MAX       1024 /* series remembered */
#define EVENT_INFLIGHT_MAX    4
#define EVENT_SERIES_FLUSH_MS 60000  /* a series' count, at most so often */
#define EVENT_SERIES_END_MS   360000 /* client-go's 6 min */
#define EVENT_PAUSE_MS        30000  /* after a failed write */

#define STOP_WRITES_MS 5000 /* stopping: wait for writes in flight */

enum event_type {
	EVENT_NORMAL,
	EVENT_WARNING,
};

/* The lists every class's observations come from. */
enum act_list_kind {
	LIST_POOLS,
	LIST_VMS,
	LIST_SECRETS,
	LIST_COUNT,
};

struct act_list {
	bool al_busy;
	bool al_denied;      /* the last answer was 403 */
	uint64_t al_next_ms; /* send the next one then */
	uint64_t al_ok_ms;   /* last success; 0: none */
	uint64_t al_ok_seq;  /* a_seq when that list was sent */
};

#define DRAIN_GRACE_MS  60000 /* after the deadline: deletes finish */
#define DRAIN_REPORT_MS 10000 /* a progress line */

/* The per-class metric families (report.c). */
enum report_family {
	RF_TARGET,
	RF_HOLDING,
	RF_REPLICAS,
	RF_STATUS_REPLICAS,
	RF_READY_REPLICAS,
	RF_SYNCED,
	RF_VMS,
	RF_SCALE,
	RF_RECLAIMED,
	RF_FINALIZERS,
	RF_BOOT_LOOP,
	RF_HEADROOM,
	RF_BOOT_TIME,
	RF_RETIRING,
	RF_COUNT,
};

struct actuator {
	struct role *a_role;
	const struct flags *a_flags;
	struct conf *a_conf; /* owned by a_role (role_stop frees it) */
	/* Every class, configured or retiring, sorted by pool name; the
	 * configured ones again, sorted by class name. */
	struct act_class **a_classes;
	size_t a_nclasses;
	struct act_class **a_by_name;
	size_t a_nconfigured;
	struct metric_family *a_m_family[RF_COUNT];
	CURLM *a_multi;
	nng_socket a_sub;
	int a_sub_fd;
	uint32_t a_survey_seq;
	uint64_t a_next_tick_ms;
	bool a_quit;
	struct metrics *a_metrics;
	struct metric_series *a_m_rejected[MSG_NERR];
	struct metric_series *a_m_demand;
	/* Kubernetes (absent with --dry-run). */
	struct kube_creds a_creds;
	struct kube *a_kube;
	uint64_t a_seq; /* orders requests sent and answers received */
	struct act_list a_lists[LIST_COUNT];
	/* Who may write: computed once per turn (exec_turn), the only gate. */
	char a_identity[FLAGS_IDENTITY_MAX + 1];
	struct lease a_lease;
	bool a_may_write;
	bool a_was_leader; /* for the log and the metric */
	struct metric_series *a_m_leader;
	unsigned int a_writes_inflight; /* class writes and VM requests */
	/* Stopping: writes end, the Lease is given up, then the loop. */
	bool a_stopping;
	uint64_t a_stop_ms;
	/* --drain */
	uint64_t a_drain_deadline_ms;
	bool a_drain_expired;
	bool a_drain_clean; /* lists since the last class went show none */
	uint64_t a_drain_empty_seq;
	struct event_cache *a_events;
};

/* actuator.c */
int act_run(struct actuator *);
/* Begins the stop: the write gate closes, writes out finish, the Lease is
 * given up, then act_run returns. */
void act_stop(struct actuator *, uint64_t now);
/* Sets up the classes from a_conf (metrics, objects, lookup).  -1 (logged)
 * when a class's objects cannot be built. */
int act_classes_setup(struct actuator *);
void act_classes_free(struct actuator *);
/* Makes conf (taken on success) the configuration: classes it adds are
 * created, changed ones get their objects rebuilt (running VMs are left
 * alone), the ones it drops retire.  -1 with err when conf cannot be used
 * (conf is then the caller's to free); nothing changed. */
int act_configure(struct actuator *, struct conf *, char *err, size_t errlen);
/* A configured class by resource class name. */
struct act_class *act_class_find(struct actuator *, const char *name);
/* Any class, configured or retiring, by pool name. */
struct act_class *act_class_by_pool(struct actuator *, const char *pool);
/* Starts retiring a managed pool (or Secret) no configured class owns;
 * the new class is linked.  name: the resource class it was made for, or
 * NULL (then the pool's name stands for it). */
struct act_class *act_class_retire_new(
    struct actuator *, const char *pool, const char *name);
/* Unlinks the classes that finished retiring. */
void act_classes_sweep(struct actuator *);
/* One pass over the classes that changed or whose time came. */
void act_turn(struct actuator *, uint64_t now);
/* The next moment act_turn has work without news. */
uint64_t act_next_deadline(const struct actuator *);
/* Whether a class counts as ready in /ready. */
bool act_class_ready(
    const struct actuator *, const struct act_class *, uint64_t now);
/* Still in the grace period after start-up. */
bool act_starting(const struct actuator *, uint64_t now);

/* demand.c */
void demand_setup(struct actuator *);
/* A class's demand as before any message, its decision state fresh. */
void demand_reset(struct class_demand *);
/* Records every waiting demand message; the classes named are marked. */
void demand_receive(struct actuator *, uint64_t now);
/* Records one decoded message (exposed for tests). */
void demand_record(struct act_class *, const struct msg_demand *, uint64_t now,
    uint64_t wall);
/* Decides the class's target from its demand: hold on failed, missing or
 * stale demand; with --dry-run, logs what it would scale. */
void demand_decide(struct actuator *, struct act_class *, uint64_t now);

/* observe.c: answers from Kubernetes become observations (seq: a_seq when
 * the request was sent). */
void observe_list(struct actuator *, enum act_list_kind,
    const struct kube_reply *, uint64_t seq, uint64_t now);
void observe_write(struct actuator *, struct act_class *, enum plan_write,
    uint32_t from, const struct kube_reply *, uint64_t now);
void observe_vm_op(struct actuator *, struct act_class *, enum plan_vm_op,
    const char *vm, const struct kube_reply *, uint64_t now);

/* confine.c */
/* Adds what the actuator may read after start-up: its credentials. */
void act_paths(const struct kube_creds *, struct confine_paths *);
/* Installs its system call allow-list (role_lock). */
void act_lock(struct actuator *);

/* exec.c */
/* Opens or closes the write gate for this turn (the Lease), and sends the
 * lease requests and lists that are due. */
void exec_turn(struct actuator *, uint64_t now);
/* Whether this process may write now: the one write gate. */
bool exec_may_write(const struct actuator *, uint64_t now);
/* Sends what plan_class decided for the class (reads only while the
 * gate is closed). */
void exec_plan(
    struct actuator *, struct act_class *, const struct plan *, uint64_t now);
/* Sends the events that are due (none while the gate is closed). */
void exec_events(struct actuator *, uint64_t now);
/* The next moment exec_turn has something to send. */
uint64_t exec_deadline(const struct actuator *, uint64_t now);

/* event.c */
/* Records an Event about the class's pool (not sent from here). */
void event_record(struct actuator *, const struct act_class *, enum event_type,
    const char *reason, const char *action, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void event_flush(struct actuator *, bool may_write, uint64_t now);
uint64_t event_deadline(const struct actuator *, uint64_t now);
/* Series remembered (tests). */
size_t event_pending(const struct actuator *);
void event_cache_free(struct actuator *);

/* report.c */
void report_setup(struct actuator *);
/* Creates the class's metric series, and drops them when it goes. */
void report_class_setup(struct actuator *, struct act_class *);
void report_class_drop(struct act_class *);
/* Brings the class's gauges up to date. */
void report_class(struct act_class *);
/* The health answer's state and /ready detail. */
void report_health(void *arg, struct msg_health *, struct buf *metrics);

#endif
