#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "role.h"
#include "sig.h"
#include "util.h"
#include "wipe.h"

static void __attribute__((noreturn)) fail(const char *msg, const char *err)
{
	struct log_line ll;

	log_begin(&ll, LOG_LVL_ERROR, msg);
	log_str(&ll, "error", err);
	log_end(&ll);
	exit(EXIT_PERMFAIL);
}

void
role_start(struct role *r, const char *name, int argc, char **argv)
{
	static const int signals[] = { SIGTERM, SIGINT };
	char err[CONF_ERR_MAX], url[IPC_URL_MAX];

	/* Before the first JSON value: the configuration holds tokens. */
	wipe_json_init();
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
	rng_seed(now_us() ^ (uint64_t)getpid() << 32);
	if ((r->r_conf = conf_load(r->r_flags.f_config, err, sizeof(err))) ==
	    NULL)
		fail("invalid configuration", err);
	if (ipc_rundir(r->r_flags.f_run_dir, r->r_run_dir,
	        sizeof(r->r_run_dir), err, sizeof(err)) == -1)
		fail("unusable run directory", err);
	/* Before nng starts its threads. */
	r->r_sigfd = sig_fd(signals, nitems(signals));
	if (ipc_url(url, sizeof(url), r->r_run_dir, IPC_HEALTH) == -1 ||
	    ipc_open(
	        &r->r_health, IPC_RESPONDENT_DIAL, url, &r->r_health_fd) == -1)
		fail("cannot open the health socket", url);
}

void
role_stop(struct role *r)
{
	nng_close(r->r_health);
	close(r->r_sigfd);
	conf_free(r->r_conf);
	r->r_conf = NULL;
	flags_free(&r->r_flags);
	log_secrets_clear();
}
