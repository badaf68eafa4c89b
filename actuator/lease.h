/*
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's
 * semantics and timing (tools/leaderelection/leaderelection.go):
 *
 *   - a candidate reads the Lease every retry period and takes it only
 *     when it is free (no holder) or expired: unchanged for the record's
 *     leaseDurationSeconds, judged by this process's own clock from when
 *     it last saw the record change (never from renewTime: clocks differ);
 *   - every write is a PUT of the object last read, with its
 *     resourceVersion: of two candidates, one gets 409 and stays back;
 *   - the leader renews every retry period, and stops writing when no
 *     renewal succeeded for the renew deadline, before anyone else may
 *     take the Lease (lease duration > renew deadline);
 *   - on a graceful stop the leader gives the Lease up (no holder, a
 *     duration of 1 s) so that a successor starts at once.
 *
 * One departure: a candidate looks again exactly when the record it saw
 * expires, not up to a retry period later, and waits at most the retry
 * period between reads (client-go jitters it upwards, to 4.4 s).
 *
 * --drain takes the Lease whoever holds it (LEASE_TAKE): a running
 * leader sees another holder at its next renewal and stops writing, and
 * the drain writes only after the renew deadline, when no former leader
 * can still be writing.  When it ends, it keeps the Lease for
 * LEASE_HOLD_S, so provisioners still running do not recreate the pools
 * before they are uninstalled.
 *
 * Pure: no I/O, no clock, no logging.  exec.c sends what lease_next()
 * asks for and hands the answers to lease_answer(); times are passed in
 * (monotonic ms, and wall-clock ms for the record's MicroTimes).
 */
#ifndef RP_LEASE_H
#define RP_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#define LEASE_DURATION_MS       15000
#define LEASE_RENEW_DEADLINE_MS 10000
#define LEASE_RETRY_MS          2000
#define LEASE_HOLD_S            600 /* --drain: fenced this long after */
#define LEASE_HOLDER_MAX        253
#define LEASE_TIME_MAX          40
#define LEASE_API               "/apis/coordination.k8s.io/v1"

enum lease_goal {
	LEASE_ELECT, /* --leader-elect: lead when the Lease is free */
	LEASE_TAKE,  /* --drain: take it, held or not */
};

enum lease_op {
	LEASE_OP_NONE,
	LEASE_OP_GET,
	LEASE_OP_CREATE, /* POST: there was none */
	LEASE_OP_UPDATE, /* PUT with the resourceVersion last seen */
};

/* What a lease answer changed, for the caller's log. */
enum lease_event {
	LEASE_EV_NONE,
	LEASE_EV_ACQUIRED, /* this process leads from now */
	LEASE_EV_LOST,     /* another holder, or no renewal in time */
	LEASE_EV_RELEASED, /* given up on stopping */
	LEASE_EV_HELD,     /* --drain: kept for LEASE_HOLD_S */
};

/* The spec of the Lease as last read. */
struct lease_record {
	char lr_holder[LEASE_HOLDER_MAX + 1]; /* "": free */
	int64_t lr_duration_s;
	char lr_acquire[LEASE_TIME_MAX]; /* MicroTime as written, or "" */
	char lr_renew[LEASE_TIME_MAX];
	int64_t lr_transitions;
};

struct lease {
	char l_identity[LEASE_HOLDER_MAX + 1];
	enum lease_goal l_goal;
	/* The API server's side. */
	json_t *l_obj; /* the Lease last read or written, or NULL */
	char *l_raw;   /* its spec, canonical, to tell a change */
	struct lease_record l_rec;
	uint64_t l_observed_ms; /* when the record last changed, here */
	uint64_t l_read_ms;     /* last answer from the API server */
	bool l_denied;          /* 403: the Role lacks leases */
	/* Ours. */
	bool l_leader;
	uint64_t l_renewed_ms; /* when the last successful write was sent */
	uint64_t l_fence_ms;   /* LEASE_TAKE: write only from then on */
	enum lease_op l_want;  /* what to send next */
	enum lease_op l_busy;  /* sent, not answered */
	uint64_t l_sent_ms;
	uint64_t l_next_ms;
	bool l_giving_up;    /* stopping: release (or hold) it */
	bool l_release_read; /* read again before giving it up */
	bool l_given_up;
};

/* lease.c */
void lease_init(struct lease *, const char *identity, enum lease_goal);
void lease_free(struct lease *);
/* What to send now; LEASE_OP_NONE before l_next_ms or while an answer is
 * awaited.  *body (create, update) is a new object for the caller;
 * retry_ms is the wait before the next read when nothing happens (the
 * caller jitters it, at most LEASE_RETRY_MS). */
enum lease_op lease_next(struct lease *, uint64_t now, uint64_t wall_ms,
    const char *ns, const char *name, uint64_t retry_ms, json_t **body);
/* The answer to what lease_next asked: HTTP status (0: none; -1:
 * cancelled), body borrowed. */
enum lease_event lease_answer(
    struct lease *, long status, json_t *body, uint64_t now);
/* Leadership ends when no renewal succeeded within the renew deadline:
 * call every turn; LEASE_EV_LOST when it just ended. */
enum lease_event lease_tick(struct lease *, uint64_t now);
/* The one thing the write gate asks: this process may write now. */
bool lease_may_write(const struct lease *, uint64_t now);
/* Stopping: give the Lease up (LEASE_ELECT) or keep it for
 * LEASE_HOLD_S (LEASE_TAKE).  lease_done() then tells when nothing is
 * left to send. */
void lease_give_up(struct lease *);
bool lease_done(const struct lease *);
/* The next moment lease_next or lease_tick has something to do. */
uint64_t lease_deadline(const struct lease *, uint64_t now);
/* Kubernetes MicroTime, "2006-01-02T15:04:05.000000Z" (buf: 32 bytes). */
void lease_microtime(uint64_t wall_ms, char *buf, size_t size);

#endif
