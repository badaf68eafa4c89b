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
#include "confine.h"
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
	char *r_readable; /* what Landlock lets it read, for the log */
};

/* role.c */
/* Flags, --help and --version (print and exit 0), logging, the
 * configuration (conf_flags: CONF_NO_SECRETS for a role that needs no
 * runner secrets) and the run directory.  Any problem is logged and exits
 * EXIT_PERMFAIL (the supervisor does not restart a child for a problem a
 * restart cannot fix). */
void role_start(struct role *, const char *name, unsigned conf_flags, int argc,
    char **argv);
/* Once the role has read its credentials: confines the process to paths
 * (plus the run directory and what every child reads; confine.h), then
 * opens the signalfd, the health socket and the configuration socket,
 * where nng's threads start, confined from birth.  Exits EXIT_PERMFAIL when it
 * cannot confine. */
void role_open(struct role *, struct confine_paths *paths);
/* After start-up, before the role's loop: the system call allow-list
 * (confine.c's common one plus extra), and one log line saying what
 * confines the process.  Exits EXIT_PERMFAIL when it cannot. */
void role_lock(struct role *, const struct confine_syscall *extra, size_t n);
void role_stop(struct role *);

#endif
