/*
 * What the actuator knows about one resource class, in parts that each
 * have one writer:
 *
 *   ac_demand  demand.c   the poller's latest observation and the decision
 *   ac_kube    observe.c  the Secret and pool as Kubernetes last showed
 *                         them, and the outcome of the class's writes
 *   ac_vms     observe.c  the pool's VMs as last listed, the boot-loop
 *              exec.c     guard; VM requests in flight
 *   ac_m       metrics.c  the class's metric series
 *
 * plan.c reads all of it and writes none; exec.c only marks requests as
 * sent.  Plain data: no libcurl, so tests build classes by hand.
 *
 * Lifetime: a class is allocated on its own and counted (ac_refs): the
 * actuator's table holds one reference and every request in flight about
 * the class another, so an answer never meets a freed class.  A class
 * the configuration no longer names retires (its pool is emptied and
 * deleted, then its Secret); when nothing of it is left it is unlinked
 * from the table, and answers still coming for it are dropped.
 */
#ifndef RP_CLASS_H
#define RP_CLASS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "bootloop.h"
#include "conf.h"
#include "decision.h"
#include "kubeverb.h"
#include "metrics.h"
#include "pool.h"
#include "poolname.h"

#define CLASS_ERROR_MAX 256

enum obj_state {
	OBJ_UNKNOWN, /* not listed yet */
	OBJ_MISSING,
	OBJ_STALE, /* exists, differs from the configuration */
	OBJ_CURRENT,
	OBJ_FOREIGN,  /* exists, not ours: hands off, look again later */
	OBJ_REREAD,   /* a write conflicted or found it gone: GET it */
	OBJ_DELETING, /* ours, being deleted (deletionTimestamp): wait */
};

enum vm_state {
	VMS_STARTING,
	VMS_RUNNING,
	VMS_STOPPED,
	VMS_TERMINATING,
	VMS_OTHER,
	VMS_COUNT,
};

struct class_demand {
	bool cd_have; /* a message arrived */
	bool cd_ok;
	uint8_t cd_error; /* enum demand_error */
	uint16_t cd_status;
	uint64_t cd_rx_ms; /* monotonic */
	uint32_t cd_unclaimed;
	uint32_t cd_running;
	/* Evidence for the boot-loop guard, wall clock. */
	struct boot_evidence cd_evidence;
	/* The decision. */
	bool cd_have_target;
	uint32_t cd_target;
	bool cd_holding;
	enum decision_reason cd_hold_reason;
};

struct obj_seen {
	enum obj_state os_state;
	char *os_rv;            /* resourceVersion, for updates */
	char *os_uid;           /* metadata.uid, for deletes */
	uint64_t os_recheck_ms; /* OBJ_FOREIGN: look again then */
	bool os_busy;           /* a request about it is out */
	uint64_t os_done_seq;   /* when the last one finished */
};

struct class_kube {
	struct obj_seen ck_secret;
	struct obj_seen ck_pool;
	bool ck_have_replicas; /* the pool has spec.replicas */
	uint32_t ck_replicas;
	uint32_t ck_status_replicas;
	uint32_t ck_ready_replicas;
	/* The class's object writes go one at a time. */
	bool ck_busy;
	uint64_t ck_retry_ms;      /* no write before (monotonic) */
	unsigned int ck_conflicts; /* in a row */
	struct backoff ck_backoff;
	uint32_t ck_denied; /* 1 << kube_verb: 403 since it last worked */
	char ck_error[CLASS_ERROR_MAX]; /* last failure; valid UTF-8 */
	uint64_t ck_synced_ms; /* the pool last matched the decision */
	uint64_t ck_synced_wall_ms;
};

struct vm_seen {
	char *vs_name;
	char *vs_uid;
	char *vs_rv;
	enum vm_state vs_state;
	uint64_t vs_created_ms; /* wall clock, as all times here */
	uint64_t vs_stopped_ms; /* VMS_STOPPED: when it stopped */
	uint64_t vs_deleted_ms; /* deletionTimestamp; 0: none */
	bool vs_has_vmi;        /* status.created */
	json_t *vs_finalizers;  /* metadata.finalizers, or NULL */
};

struct class_vms {
	struct vm_seen *cv_vms; /* as last listed, sorted by uid */
	size_t cv_n;
	unsigned int cv_count[VMS_COUNT];
	bool cv_fresh; /* listed since the last VM requests finished */
	unsigned int cv_inflight;
	uint64_t cv_done_seq; /* when the last of them finished */
	uint64_t cv_retry_ms; /* after a failed VM request */
	struct backoff cv_backoff;
	struct boot_guard cv_boot;
};

struct class_metrics {
	struct metric_series *cm_target;
	struct metric_series *cm_holding;
	struct metric_series *cm_replicas;
	struct metric_series *cm_status_replicas;
	struct metric_series *cm_ready_replicas;
	struct metric_series *cm_synced;
	struct metric_series *cm_vms[VMS_COUNT];
	struct metric_series *cm_scale_up;
	struct metric_series *cm_scale_down;
	struct metric_series *cm_reclaimed;
	struct metric_series *cm_finalizers;
	struct metric_series *cm_boot_loop;
	struct metric_series *cm_retiring;
};

struct act_class {
	unsigned int ac_refs; /* the table's and each request's */
	bool ac_linked;       /* in the table; else answers are dropped */
	char *ac_name;        /* the resource class */
	const struct conf_class *ac_conf; /* NULL while retiring */
	/* Not configured (any more): its pool is scaled to 0, deleted once
	 * it has no VMs, then its Secret. */
	bool ac_retiring;
	bool ac_done;   /* retired: nothing of it is left; unlink it */
	bool ac_listed; /* scratch: named by the list being read */
	char ac_pool[POOL_NAME_MAX + 1];
	/* What the class's objects should be (names only while retiring). */
	struct pool_objects ac_obj;
	bool ac_dirty;       /* something changed: plan again */
	uint64_t ac_wake_ms; /* plan again by then regardless */
	struct class_demand ac_demand;
	struct class_kube ac_kube;
	struct class_vms ac_vms;
	struct class_metrics ac_m;
};

/* observe.c */
const char *obj_state_name(enum obj_state);
const char *vm_state_name(enum vm_state);
/* Frees what the class's observations hold (not the class). */
void class_observations_free(struct act_class *);

/* actuator.c */
/* A new class for pool, named name: one reference (the caller's), not
 * linked, without configuration (ac_conf NULL). */
struct act_class *class_new(const char *name, const char *pool);
void class_ref(struct act_class *);
/* Drops a reference; the last one frees the class. */
void class_unref(struct act_class *);

#endif
