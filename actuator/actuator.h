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
};

struct actuator {
	struct role *a_role;
	const struct flags *a_flags;
	struct conf *a_conf;
	struct act_class *a_classes; /* same order as conf (sorted) */
	size_t a_nclasses;
	struct act_class **a_by_pool; /* sorted by pool name */
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
};

/* actuator.c */
int act_run(struct actuator *);
/* Sets up the classes from a_conf (metrics, objects, lookup).  -1 (logged)
 * when a class's objects cannot be built. */
int act_classes_setup(struct actuator *);
void act_classes_free(struct actuator *);
struct act_class *act_class_find(struct actuator *, const char *name);
struct act_class *act_class_by_pool(struct actuator *, const char *pool);
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
/* Sends the lists that are due. */
void exec_lists(struct actuator *, uint64_t now);
/* Sends what plan_class decided for the class. */
void exec_plan(
    struct actuator *, struct act_class *, const struct plan *, uint64_t now);

/* report.c */
void report_setup(struct actuator *);
/* Brings the class's gauges up to date. */
void report_class(struct act_class *);
/* The health answer's state and /ready detail. */
void report_health(void *arg, struct msg_health *, struct buf *metrics);

#endif
