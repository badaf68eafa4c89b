/*
 * The actuator's one decision point on the Kubernetes side: given what a
 * class has observed, its target and the time, what to send next.  A pure
 * function, called once per loop turn for each class that changed or
 * whose wake time came; exec.c sends what it returns.  Nothing else
 * decides a write, so exactly one place scales a pool.
 *
 * Per class, object writes go one at a time in dependency order: the
 * Secret (the pool's VMs mount it), then the pool, then its replicas.
 * VM requests (reclaiming stopped VMs, releasing stuck finalizers) run
 * beside them, each batch against a VM list taken after the last batch
 * finished.
 *
 * A retiring class (no longer configured, or --drain) goes the other way:
 * its pool is scaled to 0 (which stops no VM), stopped VMs are reclaimed
 * as usual, and once the pool owns no VM it is deleted, then its Secret.
 * A VM that may be running a job is never deleted: the pool waits for it
 * to power off, unless pi_orphan (--drain's deadline) lets the pool go
 * while leaving its VMs behind.
 */
#ifndef RP_PLAN_H
#define RP_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "class.h"

#define PLAN_VM_MAX        64   /* VM requests per class and pass */
#define FINALIZER_GRACE_MS 5000 /* in deletion, no VMI, this long */
#define FOREIGN_RECHECK_MS 2000 /* look at a foreign object again */
#define PLAN_NEVER         UINT64_MAX

enum plan_write {
	PW_NONE,
	PW_SECRET_GET,
	PW_SECRET_CREATE,
	PW_SECRET_UPDATE,
	PW_POOL_GET,
	PW_POOL_CREATE,
	PW_POOL_UPDATE,
	PW_SCALE,
	PW_POOL_DELETE,   /* retiring: the pool owns no VM any more */
	PW_SECRET_DELETE, /* retiring: after its pool */
};

enum plan_vm_op {
	PV_DELETE,  /* a stopped VM: the pool replaces it */
	PV_RELEASE, /* remove the pool finalizer from a deleted VM */
};

struct plan_vm {
	enum plan_vm_op pv_op;
	const struct vm_seen *pv_vm; /* borrowed from the class */
};

struct plan_input {
	const struct act_class *pi_class;
	uint64_t pi_now_ms;       /* monotonic */
	uint64_t pi_wall_ms;      /* wall clock */
	bool pi_lists_fresh;      /* pools were listed recently */
	uint32_t pi_min_replicas; /* a new pool before any decision */
	/* Retiring: delete the pool even though it still owns VMs, leaving
	 * them behind (--drain's deadline). */
	bool pi_orphan;
};

struct plan {
	enum plan_write p_write;
	uint32_t p_replicas; /* PW_POOL_CREATE, PW_POOL_UPDATE, PW_SCALE */
	struct plan_vm p_vm[PLAN_VM_MAX];
	size_t p_nvm;
	bool p_orphan;      /* PW_POOL_DELETE: keep the pool's VMs */
	bool p_synced;      /* Secret and pool match; replicas as decided */
	bool p_done;        /* retiring, and nothing of the class is left */
	uint64_t p_wake_ms; /* plan again by then; PLAN_NEVER: on news */
};

/* plan.c */
void plan_class(const struct plan_input *, struct plan *);
const char *plan_write_name(enum plan_write);
/* The request a write is sent as. */
enum kube_verb plan_write_verb(enum plan_write);
bool plan_write_is_secret(enum plan_write);
/* Whether it only reads (a standby may send it). */
bool plan_write_is_read(enum plan_write);

/* Whether the pool's finalizer is among the VM's. */
bool plan_vm_pool_finalizer(const struct vm_seen *);

#endif
