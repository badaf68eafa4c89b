/*
 * runner-provisioner: the supervisor, PID 1 in the container.  Validates
 * the configuration before anything starts, then runs the poller and the
 * actuator (supervisor.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "conf.h"
#include "flags.h"
#include "ipc.h"
#include "log.h"
#include "supervisor.h"
#include "token.h"
#include "util.h"
#include "wipe.h"

#define PROG "runner-provisioner"

/* The supervisor may hold the CircleCI token (from CIRCLE_TOKEN, for each
 * poller it starts): no core file, and no ptrace or /proc/PID/mem for other
 * processes of the same user.  Children inherit the core limit and set the
 * rest themselves (confine.c). */
static void
no_core(void)
{
	struct rlimit none = { 0, 0 };

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1 ||
	    setrlimit(RLIMIT_CORE, &none) == -1)
		log_warn("cannot disable core dumps");
}

/* One supervisor per run directory; the lock dies with the process. */
static int
rundir_lock(const char *dir)
{
	char path[PATH_MAX + 32], pid[32];
	int fd, n;

	snprintf(path, sizeof(path), "%s/supervisor.lock", dir);
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) == -1) {
		log_error("run dir lock %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		log_error("another runner-provisioner is using run dir %s "
		          "(locked: %s); give each one its own --run-dir",
		    dir, path);
		close(fd);
		return -1;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) == -1 || write(fd, pid, (size_t)n) != n)
		log_warn("run dir lock %s", path);
	return fd;
}

/* --drain is the actuator's work alone: it becomes the process. */
static int
drain(int argc, char **argv, const char *dir)
{
	char path[PATH_MAX + 32];
	char **nargv;
	int i;

	snprintf(path, sizeof(path), "%s/runner-provisioner-actuator", dir);
	token_env_scrub(); /* the actuator never sees the CircleCI token */
	nargv = xcalloc((size_t)argc + 1, sizeof(*nargv));
	nargv[0] = path;
	for (i = 1; i < argc; i++)
		nargv[i] = argv[i];
	execv(path, nargv);
	log_warn("cannot run %s", path);
	free(nargv);
	return 1;
}

static int
self_dir(char *out, size_t size)
{
	char exe[PATH_MAX];
	ssize_t n;

	if ((n = readlink("/proc/self/exe", exe, sizeof(exe) - 1)) == -1) {
		log_warn("readlink /proc/self/exe");
		return -1;
	}
	exe[n] = '\0';
	strlcpy_rp(out, dirname(exe), size);
	return 0;
}

/*
 * Everything that can be wrong before a child starts.  The supervisor only
 * validates: the runner tokens are dropped at once, and so is the CircleCI
 * API token from a file (reload.c reads what runs).  A token from
 * CIRCLE_TOKEN or --circle-token-fd cannot be read again: it is kept in
 * *handover for each poller start, and the variable is wiped from this
 * process's environment.
 */
static struct conf *
preflight(const struct flags *f, bool print, char **handover)
{
	char err[CONF_ERR_MAX];
	const char *source;
	struct conf *conf;
	char *token, *summary;

	*handover = NULL;
	if ((conf = conf_load(f->f_config, f->f_secrets,
	         f->f_secrets_set ? 0 : CONF_SECRETS_OPTIONAL, err,
	         sizeof(err))) == NULL) {
		if (print)
			fprintf(stderr, "%s: %s\n", PROG, err);
		else {
			struct log_line ll;
			log_begin(&ll, LOG_LVL_ERROR, "invalid configuration");
			log_str(&ll, "error", err);
			log_end(&ll);
		}
		return NULL;
	}
	token = f->f_circle_token_fd >= 0
	    ? token_load_fd(f->f_circle_token_fd, &source, err, sizeof(err))
	    : token_load(f->f_circle_token_file, &source, err, sizeof(err));
	if (token == NULL) {
		if (print)
			fprintf(stderr, "%s: %s\n", PROG, err);
		else
			log_error("%s", err);
		conf_free(conf);
		return NULL;
	}
	token_env_scrub();
	if (source == f->f_circle_token_file || print) {
		log_secret_remove(token);
		token_free(token);
	} else
		*handover = token;
	if (print) {
		summary = conf_summary(conf);
		printf("%s: configuration OK\n", f->f_config);
		if (conf->c_secrets_path != NULL)
			printf("secrets: from %s\n", conf->c_secrets_path);
		printf("CircleCI API token: from %s\n", source);
		printf("CircleCI API address: %s\n", f->f_api_addr);
		fputs(summary, stdout);
		free(summary);
	}
	conf_drop_tokens(conf);
	return conf;
}

int
main(int argc, char **argv)
{
	char err[FLAGS_ERR_MAX], rundir[PATH_MAX], dir[PATH_MAX];
	struct conf *conf = NULL;
	struct supervisor s;
	struct log_line ll;
	struct flags f;
	int lockfd = -1, rv = 1;

	memset(&s, 0, sizeof(s));
	s.s_reload.r_inotify = -1;
	log_init("supervisor", LOG_LVL_INFO);
	no_core();
	if (flags_parse(&f, argc, argv, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\n", PROG, err);
		return 2;
	}
	if (f.f_help || f.f_version) {
		if (f.f_help)
			flags_usage(stdout, PROG);
		else
			printf("%s %s\n", PROG, RP_VERSION);
		rv = 0;
		goto out;
	}
	log_set_level(f.f_log_level);
	if (f.f_drain) {
		if (self_dir(dir, sizeof(dir)) == 0)
			rv = drain(argc, argv, dir);
		goto out;
	}
	if (f.f_check_config) {
		conf = preflight(&f, true, &s.s_circle_token);
		rv = conf != NULL ? 0 : 1;
		goto out;
	}
	if ((conf = preflight(&f, false, &s.s_circle_token)) == NULL)
		goto out;
	wipe_stack();
	if (ipc_rundir(
	        f.f_run_dir, rundir, sizeof(rundir), err, sizeof(err)) == -1) {
		log_error("%s", err);
		goto out;
	}
	if ((lockfd = rundir_lock(rundir)) == -1 ||
	    self_dir(dir, sizeof(dir)) == -1)
		goto out;

	s.s_flags = &f;
	s.s_conf = conf;
	conf = NULL; /* s_conf owns it now */
	s.s_run_dir = rundir;
	s.s_child_argv = argv + 1;
	s.s_child_argc = argc - 1;
	s.s_metrics = metrics_new();
	rng_seed(now_us() ^ (uint64_t)getpid() << 32);
	if (f.f_lease_identity != NULL)
		strlcpy_rp(
		    s.s_identity, f.f_lease_identity, sizeof(s.s_identity));
	else
		host_identity(s.s_identity, sizeof(s.s_identity));
	if (child_init(&s, dir) == -1)
		goto out;
	if (reload_init(&s, err, sizeof(err)) == -1) {
		struct log_line el;

		log_begin(&el, LOG_LVL_ERROR, "invalid configuration");
		log_str(&el, "error", err);
		log_end(&el);
		goto out;
	}
	conf = s.s_conf; /* what runs now */
	log_begin(&ll, LOG_LVL_INFO, "starting runner-provisioner");
	log_str(&ll, "version", RP_VERSION);
	log_uint(&ll, "resource_classes", conf->c_nclasses);
	log_str(&ll, "circleci_api_addr", f.f_api_addr);
	log_uint(&ll, "poll_interval_ms", f.f_poll_interval_ms);
	log_bool(&ll, "dry_run", f.f_dry_run);
	log_str(&ll, "run_dir", rundir);
	if (f.f_leader_elect) {
		log_str(&ll, "lease", f.f_lease_name);
		log_str(&ll, "identity", s.s_identity);
	}
	log_end(&ll);
	rv = sup_run(&s) == 0 ? 0 : 1;
out:
	if (lockfd != -1)
		close(lockfd);
	reload_free(&s);
	sup_free(&s);
	token_free(s.s_circle_token);
	conf_free(s.s_conf != NULL ? s.s_conf : conf);
	flags_free(&f);
	log_secrets_clear();
	return rv;
}
