/*
 * Command-line flags (DESIGN §7).  Every process accepts the same set, so
 * a child can be run by hand with the supervisor's command line.
 */
#ifndef RP_FLAGS_H
#define RP_FLAGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

#define FLAGS_DEFAULT_CONFIG        "/etc/runner-provisioner/config.yaml"
#define FLAGS_DEFAULT_SECRETS       "/etc/runner-provisioner-secrets/secrets.yaml"
#define FLAGS_DEFAULT_TOKEN_FILE    "/etc/runner-provisioner/circle-token"
#define FLAGS_DEFAULT_API_ADDR      "https://runner.circleci.com"
#define FLAGS_DEFAULT_POLL_MS       1000
#define FLAGS_DEFAULT_READY_ADDR    ":8000"
#define FLAGS_DEFAULT_LIVE_ADDR     ":8001"
#define FLAGS_DEFAULT_GRACE_MS      10000
#define FLAGS_DEFAULT_BOOT_LOOP_MS  60000
#define FLAGS_DEFAULT_IDLE_POLL_MS  5000
#define FLAGS_DEFAULT_IDLE_AFTER_MS 60000
#define FLAGS_DEFAULT_MAX_RPS       50.0
#define FLAGS_MAX_RPS_LIMIT         100000.0
#define FLAGS_DEFAULT_LEASE_NAME    "runner-provisioner"
#define FLAGS_DEFAULT_DRAIN_MS      240000 /* below helm's 5m hook timeout */
#define FLAGS_LEASE_NAME_MAX        63     /* also a label value */
#define FLAGS_IDENTITY_MAX          128    /* an Event's reportingInstance */
#define FLAGS_ERR_MAX               512

/* --log-scaler-lines: the poller's "polled task counts" line per class. */
enum scaler_lines {
	SCALER_LINES_ALWAYS,  /* every poll (0.1.0) */
	SCALER_LINES_CHANGES, /* when the numbers change, and once a minute */
};

struct flags {
	const char *f_config;
	const char *f_secrets; /* NULL: none (--secrets '') */
	bool f_secrets_set;    /* given: the file must exist */
	const char *f_circle_token_file;
	int f_circle_token_fd;          /* -1: none */
	char *f_api_addr;               /* owned; trailing '/' removed */
	const char *f_circleci_ca_file; /* NULL: system CAs */
	const char *f_namespace;        /* NULL: in-cluster, else default */
	const char *f_kubeconfig; /* NULL: $KUBECONFIG, else in-cluster */
	uint64_t f_poll_interval_ms;
	uint64_t f_shutdown_grace_ms;
	uint64_t f_boot_loop_ms;
	uint64_t f_idle_poll_interval_ms; /* never below f_poll_interval_ms */
	uint64_t f_idle_poll_after_ms;
	double f_max_rps; /* CircleCI requests per second */
	enum scaler_lines f_scaler_lines;
	const char *f_ready_addr;
	const char *f_live_addr;
	const char *f_run_dir; /* NULL: default per user */
	enum log_level f_log_level;
	bool f_check_config;
	bool f_dry_run;
	bool f_leader_elect;
	const char *f_lease_name;
	const char *f_lease_identity; /* NULL: hostname_<random> */
	bool f_drain;
	uint64_t f_drain_timeout_ms;
	bool f_version;
	bool f_help;
};

/* flags.c */
/* Fills f from argv (defaults first).  Returns 0, or -1 with a message in
 * err (and nothing to free).  The strings point into argv or are static,
 * except f_api_addr: flags_free(). */
int flags_parse(
    struct flags *f, int argc, char **argv, char *err, size_t errlen);
void flags_free(struct flags *);
void flags_usage(FILE *, const char *prog);
/* Parses "HOST:PORT", ":PORT", "[v6]:PORT".  host is "" for any address. */
int flags_split_addr(
    const char *addr, char *host, size_t hostlen, uint16_t *port);

#endif
