/*
 * runner-provisioner-actuator: the Kubernetes side (actuator.c).  Started
 * by the supervisor; can be run by hand with the same flags for debugging.
 */
#include <string.h>

#include "actuator.h"
#include "http.h"
#include "log.h"
#include "role.h"
#include "util.h"
#include "wipe.h"

int
main(int argc, char **argv)
{
	char err[CONF_ERR_MAX];
	struct log_line ll;
	struct confine_paths paths = { 0 };
	struct actuator a;
	struct role r;
	int rv = EXIT_PERMFAIL;

	role_start(&r, "actuator", argc, argv);
	memset(&a, 0, sizeof(a));
	a.a_role = &r;
	a.a_flags = &r.r_flags;
	a.a_conf = r.r_conf;
	conf_register_secrets(a.a_conf);
	if (pool_names_unique(a.a_conf, err, sizeof(err)) == -1) {
		log_error("%s", err);
		goto out;
	}
	if (!a.a_flags->f_dry_run &&
	    kube_creds_load(a.a_flags, &a.a_creds, err, sizeof(err)) == -1) {
		log_error("%s", err);
		goto out;
	}
	if (!a.a_flags->f_dry_run)
		act_paths(&a.a_creds, &paths);
	role_open(&r, &paths);
	confine_paths_free(&paths);
	wipe_stack();
	if (http_global_init() == -1) {
		rv = EXIT_TEMPFAIL;
		goto out;
	}
	log_begin(&ll, LOG_LVL_INFO, "actuator starting");
	log_uint(&ll, "resource_classes", a.a_conf->c_nclasses);
	log_bool(&ll, "dry_run", a.a_flags->f_dry_run);
	if (!a.a_flags->f_dry_run) {
		log_str(&ll, "kubernetes", a.a_creds.kc_server);
		log_str(&ll, "credentials", a.a_creds.kc_source);
		log_str(&ll, "namespace", a.a_creds.kc_namespace);
	}
	log_end(&ll);
	rv = act_run(&a) == 0 ? 0 : EXIT_TEMPFAIL;
	curl_global_cleanup();
out:
	kube_creds_free(&a.a_creds);
	role_stop(&r);
	return rv;
}
