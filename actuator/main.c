/*
 * runner-provisioner-actuator: the Kubernetes side (actuator.c).  Started
 * by the supervisor; can be run by hand with the same flags for debugging.
 */
#include <string.h>
#include <unistd.h>

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

	role_start(&r, "actuator", 0, argc, argv);
	memset(&a, 0, sizeof(a));
	a.a_role = &r;
	a.a_flags = &r.r_flags;
	a.a_conf = r.r_conf;
	/* The name this replica goes by in the Lease and its Events: the
	 * flag (the supervisor passes one, kept across restarts), else a
	 * new one. */
	if (a.a_flags->f_lease_identity != NULL)
		strlcpy_rp(a.a_identity, a.a_flags->f_lease_identity,
		    sizeof(a.a_identity));
	else
		host_identity(a.a_identity, sizeof(a.a_identity));
	if (a.a_conf != NULL)
		conf_register_secrets(a.a_conf);
	if (a.a_conf != NULL &&
	    pool_names_unique(a.a_conf, err, sizeof(err)) == -1) {
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
	log_begin(&ll, LOG_LVL_INFO,
	    a.a_flags->f_drain ? "draining this installation's pools"
	                       : "actuator starting");
	if (a.a_conf != NULL)
		log_uint(&ll, "resource_classes", a.a_conf->c_nclasses);
	log_bool(&ll, "dry_run", a.a_flags->f_dry_run);
	if (a.a_flags->f_leader_elect || a.a_flags->f_drain) {
		log_str(&ll, "lease", a.a_flags->f_lease_name);
		log_str(&ll, "identity", a.a_identity);
	}
	if (a.a_flags->f_drain)
		log_uint(
		    &ll, "drain_timeout_ms", a.a_flags->f_drain_timeout_ms);
	if (!a.a_flags->f_dry_run) {
		log_str(&ll, "kubernetes", a.a_creds.kc_server);
		log_str(&ll, "credentials", a.a_creds.kc_source);
		log_str(&ll, "namespace", a.a_creds.kc_namespace);
	}
	log_end(&ll);
	if (act_run(&a) == 0)
		rv = 0;
	else
		rv = a.a_flags->f_drain ? 1 : EXIT_TEMPFAIL;
	curl_global_cleanup();
out:
	kube_creds_free(&a.a_creds);
	role_stop(&r);
	return rv;
}
