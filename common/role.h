/*
 * The start both child processes (poller, actuator) share: flags, --help
 * and --version, logging, the configuration, the run directory, signals,
 * and the connection that answers the supervisor's health survey.  Run by
 * hand, a child behaves the same (the survey socket just finds no peer).
 */
#ifndef RP_ROLE_H
#define RP_ROLE_H

#include <limits.h>

#include <nng/nng.h>

#include "conf.h"
#include "flags.h"

struct role {
	const char *r_name; /* "poller", "actuator" */
	struct flags r_flags;
	struct conf *r_conf;
	char r_run_dir[PATH_MAX];
	int r_sigfd;         /* SIGTERM, SIGINT */
	nng_socket r_health; /* RESPONDENT on health.sock */
	int r_health_fd;
	nng_socket r_conf_sock; /* PAIR on conf-p.sock / conf-a.sock */
	int r_conf_fd;
	uint64_t r_start_ms;
};

/* role.c */
/* Does all of the above (conf_flags: CONF_NO_SECRETS for a role that
 * needs no runner secrets).  --help and --version print and exit 0; any
 * problem is logged and exits EXIT_PERMFAIL (the supervisor does not
 * restart a child for a problem a restart cannot fix). */
void role_start(struct role *, const char *name, unsigned conf_flags, int argc,
    char **argv);
void role_stop(struct role *);

#endif
