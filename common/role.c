#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "ipc.h"
#include "log.h"
#include "role.h"
#include "sig.h"
#include "util.h"

static void __attribute__((noreturn)) fail(const char *msg, const char *err)
{
	struct log_line ll;

	log_begin(&ll, LOG_LVL_ERROR, msg);
	log_str(&ll, "error", err);
	log_end(&ll);
	exit(EXIT_PERMFAIL);
}

void
role_start(struct role *r, const char *name, unsigned conf_flags, int argc,
    char **argv)
{
	char err[CONF_ERR_MAX];

	/* Read the zone file now: confined, it cannot be (log times are UTC,
	 * but glibc looks at it once all the same). */
	tzset();
	memset(r, 0, sizeof(*r));
	r->r_name = name;
	r->r_start_ms = now_ms();
	log_init(name, LOG_LVL_INFO);
	if (flags_parse(&r->r_flags, argc, argv, err, sizeof(err)) == -1) {
		log_error("%s", err);
		exit(EXIT_PERMFAIL);
	}
	if (r->r_flags.f_help || r->r_flags.f_version) {
		char prog[64];
		snprintf(prog, sizeof(prog), "runner-provisioner-%s", name);
		if (r->r_flags.f_help)
			flags_usage(stdout, prog);
		else
			printf("%s %s\n", prog, RP_VERSION);
		exit(0);
	}
	log_set_level(r->r_flags.f_log_level);
	r->r_sigfd = -1;
	rng_seed(now_us() ^ (uint64_t)getpid() << 32);
	if (!r->r_flags.f_secrets_set)
		conf_flags |= CONF_SECRETS_OPTIONAL;
	/* A drain empties what the cluster shows, whatever is configured. */
	if (!r->r_flags.f_drain &&
	    (r->r_conf = conf_load(r->r_flags.f_config, r->r_flags.f_secrets,
	         conf_flags, err, sizeof(err))) == NULL)
		fail("invalid configuration", err);
	if (ipc_rundir(r->r_flags.f_run_dir, r->r_run_dir,
	        sizeof(r->r_run_dir), err, sizeof(err)) == -1)
		fail("unusable run directory", err);
}

void
role_open(struct role *r, struct confine_paths *paths)
{
	static const int signals[] = { SIGTERM, SIGINT };
	char err[CONF_ERR_MAX], url[IPC_URL_MAX];
	struct buf b = { 0 };
	size_t i;

	confine_paths_add(paths, r->r_run_dir, CONFINE_WRITE);
	confine_paths_add_common(paths);
	for (i = 0; i < paths->cp_n; i++) {
		if (paths->cp_list[i].cp_access & CONFINE_WRITE)
			continue;
		if (b.b_len > 0)
			buf_puts(&b, " ");
		buf_puts(&b, paths->cp_list[i].cp_path);
	}
	r->r_readable = buf_take(&b);
	if (confine_files(r->r_name, paths, err, sizeof(err)) == -1)
		fail("cannot confine the process", err);
	/* Before nng starts its threads. */
	r->r_sigfd = sig_fd(signals, nitems(signals));
	if (ipc_url(url, sizeof(url), r->r_run_dir, IPC_HEALTH) == -1 ||
	    ipc_open(
	        &r->r_health, IPC_RESPONDENT_DIAL, url, &r->r_health_fd) == -1)
		fail("cannot open the health socket", url);
	/* Configurations the supervisor validated come here: a child never
	 * reads its configuration files again. */
	if (ipc_url(url, sizeof(url), r->r_run_dir,
	        strcmp(r->r_name, "poller") == 0 ? IPC_CONF_POLLER
	                                         : IPC_CONF_ACTUATOR) == -1 ||
	    ipc_open(&r->r_conf_sock, IPC_PAIR_DIAL, url, &r->r_conf_fd) == -1)
		fail("cannot open the configuration socket", url);
}

void
role_lock(struct role *r, const struct confine_syscall *extra, size_t n)
{
	const struct confine_state *st = confine_state();
	char err[CONF_ERR_MAX];
	struct log_line ll;

	if (confine_syscalls(r->r_name, extra, n, err, sizeof(err)) == -1)
		fail("cannot install the system call filter", err);
	log_begin(&ll, LOG_LVL_INFO, "confined");
	log_int(&ll, "landlock_abi", st->cs_landlock_abi);
	log_bool(&ll, "files_restricted", st->cs_files);
	log_bool(&ll, "seccomp", st->cs_seccomp);
	log_bool(&ll, "no_new_privs", true);
	log_bool(&ll, "dumpable", false);
	log_str(&ll, "writable", r->r_run_dir);
	log_str(&ll, "readable", r->r_readable);
	log_end(&ll);
}

void
role_stop(struct role *r)
{
	nng_close(r->r_health);
	nng_close(r->r_conf_sock);
	close(r->r_sigfd);
	conf_free(r->r_conf);
	r->r_conf = NULL;
	flags_free(&r->r_flags);
	free(r->r_readable);
	r->r_readable = NULL;
	log_secrets_clear();
}
