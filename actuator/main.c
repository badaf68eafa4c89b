/*
 * runner-provisioner-actuator: the Kubernetes side (actuator.c).  Started
 * by the supervisor; can be run by hand with the same flags for debugging.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "actuator.h"
#include "conf.h"
#include "flags.h"
#include "ipc.h"
#include "log.h"
#include "util.h"

int
main(int argc, char **argv)
{
	char err[CONF_ERR_MAX], rundir[PATH_MAX];
	struct actuator a;
	struct flags f;
	struct log_line ll;
	int rv;

	log_init("actuator", LOG_LVL_INFO);
	if (flags_parse(&f, argc, argv, err, sizeof(err)) == -1) {
		log_error("%s", err);
		return EXIT_PERMFAIL;
	}
	if (f.f_help) {
		flags_usage(stdout, "runner-provisioner-actuator");
		return 0;
	}
	if (f.f_version) {
		printf("runner-provisioner-actuator %s\n", RP_VERSION);
		return 0;
	}
	log_set_level(f.f_log_level);
	rng_seed(now_us() ^ (uint64_t)getpid() << 32);
	memset(&a, 0, sizeof(a));
	a.a_flags = &f;
	if ((a.a_conf = conf_load(f.f_config, err, sizeof(err))) == NULL) {
		log_begin(&ll, LOG_LVL_ERROR, "invalid configuration");
		log_str(&ll, "error", err);
		log_end(&ll);
		return EXIT_PERMFAIL;
	}
	conf_register_secrets(a.a_conf);
	if (pool_names_unique(a.a_conf, err, sizeof(err)) == -1) {
		log_error("%s", err);
		return EXIT_PERMFAIL;
	}
	if (!f.f_dry_run &&
	    kube_creds_load(&f, &a.a_creds, err, sizeof(err)) == -1) {
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
	log_begin(&ll, LOG_LVL_INFO, "actuator starting");
	log_uint(&ll, "resource_classes", a.a_conf->c_nclasses);
	log_bool(&ll, "dry_run", f.f_dry_run);
	if (!f.f_dry_run) {
		log_str(&ll, "kubernetes", a.a_creds.kc_server);
		log_str(&ll, "credentials", a.a_creds.kc_source);
		log_str(&ll, "namespace", a.a_creds.kc_namespace);
	}
	log_end(&ll);
	rv = act_run(&a, rundir);
	kube_creds_free(&a.a_creds);
	conf_free(a.a_conf);
	curl_global_cleanup();
	flags_free(&f);
	log_secrets_clear();
	return rv == 0 ? 0 : EXIT_TEMPFAIL;
}
