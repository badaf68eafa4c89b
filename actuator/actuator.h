/*
 * The actuator: owns the Kubernetes credentials and nothing CircleCI.  It
 * turns demand messages into one decision per resource class and makes
 * that class's VirtualMachinePool match it (or, with --dry-run, logs what
 * it would do).
 */
#ifndef RP_ACTUATOR_H
#define RP_ACTUATOR_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <nng/nng.h>

#include "conf.h"
#include "decision.h"
#include "flags.h"
#include "metrics.h"
#include "msg.h"
#include "poolname.h"

#define STALE_INTERVALS 3 /* no demand for this many poll intervals */

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
	/* The decision. */
	bool ac_have_target;
	uint32_t ac_target; /* last count decided from demand */
	bool ac_holding;
	enum decision_reason ac_hold_reason;
	uint64_t ac_last_sync_ms; /* last time the pool matched */
	/* Metrics. */
	struct metric_series *ac_m_target;
	struct metric_series *ac_m_holding;
};

struct actuator {
	const struct flags *a_flags;
	struct conf *a_conf;
	struct act_class *a_classes; /* same order as conf (sorted) */
	size_t a_nclasses;
	CURLM *a_multi;
	nng_socket a_sub;
	int a_sub_fd;
	nng_socket a_health;
	int a_health_fd;
	int a_sigfd;
	uint32_t a_seq;
	uint64_t a_start_ms;
	uint64_t a_next_tick_ms;
	bool a_quit;
	struct metrics *a_metrics;
	struct metric_series *a_m_rejected[MSG_NERR];
	struct metric_series *a_m_demand;
};

/* actuator.c */
int act_run(struct actuator *, const char *run_dir);
struct act_class *act_class_find(struct actuator *, const char *name);

/* demand.c */
void demand_setup(struct actuator *);
/* Reads every waiting demand message; returns the classes touched via
 * act_decide(). */
void demand_receive(struct actuator *, uint64_t now);
/* Re-evaluates a class: decision, staleness, hold logging, apply. */
void act_decide(struct actuator *, struct act_class *, uint64_t now);

#endif
