/*
 * runner-provisioner-poller: the CircleCI side (poller.c).  Started by the
 * supervisor; can be run by hand with the same flags for debugging.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "flags.h"
#include "ipc.h"
#include "log.h"
#include "poller.h"
#include "token.h"
#include "util.h"

int
main(int argc, char **argv)
{
	char err[CONF_ERR_MAX], rundir[PATH_MAX];
	struct poller p;
	struct flags f;
	struct log_line ll;
	const char *source;
	int rv;

	log_init("poller", LOG_LVL_INFO);
	if (flags_parse(&f, argc, argv, err, sizeof(err)) == -1) {
		log_error("%s", err);
		return EXIT_PERMFAIL;
	}
	if (f.f_help) {
		flags_usage(stdout, "runner-provisioner-poller");
		return 0;
	}
	if (f.f_version) {
		printf("runner-provisioner-poller %s\n", RP_VERSION);
		return 0;
	}
	log_set_level(f.f_log_level);
	rng_seed(now_us() ^ (uint64_t)getpid() << 32);
	memset(&p, 0, sizeof(p));
	p.p_flags = &f;
	if ((p.p_conf = conf_load(f.f_config, err, sizeof(err))) == NULL) {
		log_begin(&ll, LOG_LVL_ERROR, "invalid configuration");
		log_str(&ll, "error", err);
		log_end(&ll);
		return EXIT_PERMFAIL;
	}
	/* Runner tokens belong to the actuator; this side never needs them. */
	conf_drop_tokens(p.p_conf);
	if ((p.p_token = token_load(
	         f.f_circle_token_file, &source, err, sizeof(err))) == NULL) {
		log_error("%s", err);
		return EXIT_PERMFAIL;
	}
	if (ipc_rundir(
	        f.f_run_dir, rundir, sizeof(rundir), err, sizeof(err)) == -1) {
		log_error("%s", err);
		return EXIT_PERMFAIL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("curl_global_init failed");
		return EXIT_TEMPFAIL;
	}
	log_begin(&ll, LOG_LVL_INFO, "poller starting");
	log_uint(&ll, "resource_classes", p.p_conf->c_nclasses);
	log_str(&ll, "circleci_api_addr", f.f_api_addr);
	log_str(&ll, "token_source", source);
	log_uint(&ll, "poll_interval_ms", f.f_poll_interval_ms);
	log_end(&ll);
	rv = poller_run(&p, rundir);
	token_free(p.p_token);
	conf_free(p.p_conf);
	curl_global_cleanup();
	flags_free(&f);
	log_secrets_clear();
	return rv == 0 ? 0 : EXIT_TEMPFAIL;
}
