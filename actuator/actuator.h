/*
 * The actuator: owns the Kubernetes credentials and nothing CircleCI.  It
 * turns demand messages into one decision per resource class and makes
 * that class's VirtualMachinePool match it (or, with --dry-run, logs what
 * it would do), keeps the per-class cloud-init Secret and pool template in
 * step with the configuration, and reclaims VMs whose runner finished.
 */
#ifndef RP_ACTUATOR_H
#define RP_ACTUATOR_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <nng/nng.h>

#include "backoff.h"
#include "conf.h"
#include "decision.h"
#include "flags.h"
#include "kube.h"
#include "kubecreds.h"
#include "metrics.h"
#include "msg.h"
#include "pool.h"
#include "poolname.h"
#include "role.h"

#define STALE_INTERVALS          3     /* no demand for this many intervals */
#define RESYNC_MS                2000  /* list pools and VMs */
#define SECRET_RESYNC_MS         30000 /* list the user-data Secrets */
#define LIST_STALE_MS            (5 * RESYNC_MS)
#define WRITE_BACKOFF_BASE_MS    1000
#define WRITE_BACKOFF_CAP_MS     60000
#define FINALIZER_GRACE_MS       5000 /* in deletion, no VMI, this long */
#define BOOT_LOOP_STREAK         3    /* short-lived VMs in a row */
#define BOOT_LOOP_BACKOFF_MS     30000
#define BOOT_LOOP_BACKOFF_CAP_MS 600000
#define SEEN_STOPPED_MAX         64

enum obj_state {
	OBJ_UNKNOWN, /* not listed yet */
	OBJ_MISSING,
	OBJ_STALE, /* exists, differs from the configuration */
	OBJ_CURRENT,
	OBJ_FOREIGN, /* exists, not ours: hands off */
};

enum vm_state {
	VMS_STARTING,
	VMS_RUNNING,
	VMS_STOPPED,
	VMS_TERMINATING,
	VMS_OTHER,
	VMS_COUNT,
};

struct act_class {
	const struct conf_class *ac_conf;
	char ac_pool[POOL_NAME_MAX + 1];
	/* Latest demand from the poller. */
	bool ac_have_demand;
	bool ac_demand_ok;
	uint8_t ac_demand_error; /* enum demand_error */
	uint16_t ac_demand_status;
	uint64_t ac_demand_rx_ms;
	uint32_t ac_unclaimed;
	uint32_t ac_running;
	uint64_t ac_demand_since_wall_ms; /* first good demand */
	uint64_t ac_last_running_wall_ms; /* last demand with running > 0 */
	/* The decision. */
	bool ac_have_target;
	uint32_t ac_target; /* last count decided */
	bool ac_holding;
	enum decision_reason ac_hold_reason;
	uint64_t ac_last_sync_ms; /* last time the pool matched */
	/* Kubernetes: what we want and what we saw. */
	struct pool_objects ac_obj;
	enum obj_state ac_secret_state;
	char *ac_secret_rv;
	enum obj_state ac_pool_state;
	char *ac_pool_rv;
	bool ac_have_replicas;
	uint32_t ac_replicas; /* pool spec.replicas */
	uint32_t ac_status_replicas;
	uint32_t ac_ready_replicas;
	bool ac_busy;          /* a write is in flight */
	uint64_t ac_write_seq; /* completion order */
	uint64_t ac_retry_ms;  /* after a failed write */
	struct backoff ac_backoff;
	char ac_error[256]; /* last Kubernetes failure */
	/* VMs and reclaim. */
	unsigned int ac_vms[VMS_COUNT];
	unsigned int ac_deleting;                /* VM requests in flight */
	char *ac_seen_stopped[SEEN_STOPPED_MAX]; /* uids */
	unsigned int ac_seen_next;
	unsigned int ac_short_streak;
	uint64_t ac_failed_life_max_ms; /* longest failed VM lifetime */
	bool ac_boot_loop;
	uint64_t ac_reclaim_not_before_ms;
	struct backoff ac_boot_backoff;
	/* Metrics. */
	struct metric_series *ac_m_target;
	struct metric_series *ac_m_holding;
	struct metric_series *ac_m_replicas;
	struct metric_series *ac_m_status_replicas;
	struct metric_series *ac_m_ready_replicas;
	struct metric_series *ac_m_vms[VMS_COUNT];
	struct metric_series *ac_m_scale_up;
	struct metric_series *ac_m_scale_down;
	struct metric_series *ac_m_reclaimed;
	struct metric_series *ac_m_finalizers;
	struct metric_series *ac_m_boot_loop;
};

struct actuator {
	struct role *a_role;
	const struct flags *a_flags;
	struct conf *a_conf;
	struct act_class *a_classes; /* same order as conf (sorted) */
	size_t a_nclasses;
	CURLM *a_multi;
	nng_socket a_sub;
	int a_sub_fd;
	uint32_t a_seq;
	uint64_t a_next_tick_ms;
	bool a_quit;
	struct metrics *a_metrics;
	struct metric_series *a_m_rejected[MSG_NERR];
	struct metric_series *a_m_demand;
	/* Kubernetes (absent with --dry-run). */
	struct kube_creds a_creds;
	struct kube *a_kube;
	uint64_t a_write_seq;
	uint64_t a_next_resync_ms;
	uint64_t a_next_secret_list_ms;
	bool a_pools_busy;
	bool a_vms_busy;
	bool a_secrets_busy;
	uint64_t a_pools_listed_ms; /* last successful list */
	uint64_t a_vms_listed_ms;
	bool a_secrets_listed;
};

/* actuator.c */
int act_run(struct actuator *);
struct act_class *act_class_find(struct actuator *, const char *name);

/* demand.c */
void demand_setup(struct actuator *);
/* Reads every waiting demand message and re-decides each class named. */
void demand_receive(struct actuator *, uint64_t now);
/* Re-evaluates a class: decision, staleness, hold logging, apply. */
void act_decide(struct actuator *, struct act_class *, uint64_t now);

/* sync.c */
/* Builds each class's objects.  -1 (logged). */
int sync_setup(struct actuator *);
void sync_teardown(struct actuator *);
/* Lists what is due and moves every class toward its decision. */
void sync_tick(struct actuator *, uint64_t now);
/* Moves one class toward its decision: Secret, pool, replicas. */
void sync_class(struct actuator *, struct act_class *, uint64_t now);
bool sync_class_healthy(
    const struct actuator *, const struct act_class *, uint64_t now);
uint64_t sync_next_deadline(const struct actuator *);
const char *obj_state_name(enum obj_state);

/* confine.c */
/* Adds what the actuator may read after start-up: its credentials. */
void act_paths(const struct kube_creds *, struct confine_paths *);
/* Installs its system call allow-list (role_lock). */
void act_lock(struct actuator *);

/* reclaim.c */
void reclaim_setup(struct actuator *);
/* Handles one class's VMs from a fresh list (the items of its pool). */
void reclaim_class(
    struct actuator *, struct act_class *, json_t *vms, uint64_t now);
const char *vm_state_name(enum vm_state);
/* Evidence that the class's VMs work (a job ran): ends a boot loop. */
void reclaim_boot_ok(struct act_class *, const char *why);

#endif
