/*
 * runner-provisioner-poller: the CircleCI side (poller.c).  Started by the
 * supervisor; can be run by hand with the same flags for debugging.
 */
#include <string.h>

#include "http.h"
#include "log.h"
#include "poller.h"
#include "role.h"
#include "token.h"
#include "util.h"
#include "wipe.h"

int
main(int argc, char **argv)
{
	char err[CONF_ERR_MAX];
	struct log_line ll;
	struct poller p;
	struct confine_paths paths = { 0 };
	struct role r;
	const char *source;
	int rv = EXIT_PERMFAIL;

	role_start(&r, "poller", CONF_NO_SECRETS, argc, argv);
	/* Runner tokens belong to the actuator; this side never needs them,
	 * nor the VM specs (a few KiB of JSON per class). */
	conf_drop_tokens(r.r_conf);
	for (size_t i = 0; i < r.r_conf->c_nclasses; i++) {
		json_decref(r.r_conf->c_classes[i].cc_spec);
		r.r_conf->c_classes[i].cc_spec = NULL;
	}
	memset(&p, 0, sizeof(p));
	p.p_role = &r;
	p.p_flags = &r.r_flags;
	p.p_conf = r.r_conf;
	p.p_token = r.r_flags.f_circle_token_fd >= 0
	    ? token_load_fd(
	          r.r_flags.f_circle_token_fd, &source, err, sizeof(err))
	    : token_load(
	          r.r_flags.f_circle_token_file, &source, err, sizeof(err));
	if (p.p_token == NULL) {
		log_error("%s", err);
		goto out;
	}
	token_env_scrub();
	poller_paths(
	    &r.r_flags, source == r.r_flags.f_circle_token_file, &paths);
	role_open(&r, &paths);
	confine_paths_free(&paths);
	wipe_stack();
	if (http_global_init() == -1) {
		rv = EXIT_TEMPFAIL;
		goto out;
	}
	log_begin(&ll, LOG_LVL_INFO, "poller starting");
	log_uint(&ll, "resource_classes", p.p_conf->c_nclasses);
	log_str(&ll, "circleci_api_addr", r.r_flags.f_api_addr);
	log_str(&ll, "token_source", source);
	log_uint(&ll, "poll_interval_ms", r.r_flags.f_poll_interval_ms);
	log_uint(
	    &ll, "idle_poll_interval_ms", r.r_flags.f_idle_poll_interval_ms);
	log_uint(&ll, "idle_poll_after_ms", r.r_flags.f_idle_poll_after_ms);
	log_double(&ll, "max_requests_per_second", r.r_flags.f_max_rps);
	log_str(&ll, "log_scaler_lines",
	    r.r_flags.f_scaler_lines == SCALER_LINES_CHANGES ? "changes"
	                                                     : "always");
	log_end(&ll);
	rv = poller_run(&p) == 0 ? 0 : EXIT_TEMPFAIL;
	curl_global_cleanup();
out:
	token_free(p.p_token);
	role_stop(&r);
	return rv;
}
