#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "supervisor.h"
#include "util.h"

extern char **environ;

/* Each side holds only its own secret: the actuator never sees the
 * CircleCI token, the poller never sees the Kubernetes credentials.  No
 * token travels in an environment (any process of the same user may read
 * /proc/PID/environ, and everything a child execs inherits it): the poller
 * gets the CircleCI token the supervisor runs on a pipe (TOKEN_FD), and
 * later ones in its configuration messages (reload.c). */
static const char *const poller_env_drop[] = {
	"KUBECONFIG=", "CIRCLE_TOKEN=", NULL
};
static const char *const actuator_env_drop[] = { "CIRCLE_TOKEN=", NULL };
#define TOKEN_FD     3
#define TOKEN_FD_ARG "3"
/* The children link GnuTLS only through libcurl's librtmp and never use
 * it; skipping its implicit initialisation saves ~0.8 MiB each. */
static char gnutls_no_init[] = "GNUTLS_NO_IMPLICIT_INIT=1";

const char *
child_state_name(enum child_state s)
{
	switch (s) {
	case CHILD_DOWN:
		return "down";
	case CHILD_RUNNING:
		return "running";
	case CHILD_WAITING:
		return "waiting to restart";
	case CHILD_FAILED:
		return "failed";
	case CHILD_STOPPING:
		return "stopping";
	}
	return "unknown";
}

int
child_init(struct supervisor *s, const char *self_dir)
{
	static const char *const labels[] = { "child", NULL };
	struct metric_family *restarts, *up, *loop, *answer;
	struct child *c;
	size_t i;

	restarts = metrics_family(s->s_metrics, METRIC_COUNTER,
	    "child_restarts_total", "Times a child process was restarted.",
	    labels, NULL, 0);
	up = metrics_family(s->s_metrics, METRIC_GAUGE, "child_up",
	    "1 while the child process is running.", labels, NULL, 0);
	loop =
	    metrics_family(s->s_metrics, METRIC_GAUGE, "child_crash_looping",
	        "1 while the child keeps dying and restarts are slowed down.",
	        labels, NULL, 0);
	answer =
	    metrics_family(s->s_metrics, METRIC_GAUGE, "health_answer_bytes",
	        "Size of the child's last health answer (the IPC limit is "
	        "16 MiB).",
	        labels, NULL, 0);
	s->s_children[0].c_name = "poller";
	s->s_children[0].c_role = ROLE_POLLER;
	s->s_children[1].c_name = "actuator";
	s->s_children[1].c_role = ROLE_ACTUATOR;
	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		c->c_path =
		    xasprintf("%s/runner-provisioner-%s", self_dir, c->c_name);
		if (access(c->c_path, X_OK) == -1) {
			log_error("cannot run the %s: %s: %s", c->c_name,
			    c->c_path, strerror(errno));
			return -1;
		}
		c->c_state = CHILD_DOWN;
		c->c_quick_restart = true;
		backoff_init(&c->c_backoff, CHILD_RESTART_BASE_MS,
		    CHILD_RESTART_CAP_MS);
		c->c_m_restarts =
		    metric_series(restarts, (const char *[]){ c->c_name });
		c->c_m_up = metric_series(up, (const char *[]){ c->c_name });
		c->c_m_crash_loop =
		    metric_series(loop, (const char *[]){ c->c_name });
		c->c_m_answer_bytes =
		    metric_series(answer, (const char *[]){ c->c_name });
	}
	return 0;
}

static char **
child_env(const char *const *drop)
{
	size_t n = 0, i, k = 0, j;
	char **env;

	while (environ[n] != NULL)
		n++;
	env = xcalloc(n + 2, sizeof(*env));
	for (i = 0; i < n; i++) {
		for (j = 0; drop[j] != NULL; j++)
			if (strncmp(environ[i], drop[j], strlen(drop[j])) == 0)
				break;
		if (drop[j] == NULL)
			env[k++] = environ[i];
	}
	env[k] = gnutls_no_init;
	return env;
}

/* Runs in the forked child of a multi-threaded parent: only
 * async-signal-safe calls until exec (argv and env were built before fork).
 * A clean signal state, death with the parent, no inherited descriptors
 * beyond stdio and, for the poller, the token pipe on TOKEN_FD. */
static void __attribute__((noreturn)) child_exec(
    const char *path, char **argv, char **env, pid_t parent, int token_fd)
{
	static const char msg[] = "runner-provisioner: cannot execute child\n";
	struct sigaction sa;
	sigset_t none;
	int sig;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1 || getppid() != parent)
		_exit(EXIT_TEMPFAIL);
	if (token_fd != -1) {
		/* dup2 onto itself would keep close-on-exec. */
		if (token_fd == TOKEN_FD ? fcntl(TOKEN_FD, F_SETFD, 0) == -1
		                         : dup2(token_fd, TOKEN_FD) == -1)
			_exit(EXIT_TEMPFAIL);
		closefrom(TOKEN_FD + 1);
	} else
		closefrom(STDERR_FILENO + 1);
	execve(path, argv, env);
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) == -1)
		_exit(EXIT_TEMPFAIL);
	_exit(EXIT_TEMPFAIL);
}

/* A pipe holding the token, read end returned (close-on-exec; the child
 * moves it to TOKEN_FD).  A token fits the pipe's buffer, so the write
 * never blocks.  -1 (logged) on failure. */
static int
token_pipe(const char *token)
{
	size_t len = strlen(token);
	int p[2];

	if (pipe2(p, O_CLOEXEC) == -1) {
		log_warn("pipe for the poller's token");
		return -1;
	}
	if (write(p[1], token, len) != (ssize_t)len) {
		log_warn("writing the poller's token");
		close(p[0]);
		close(p[1]);
		return -1;
	}
	close(p[1]);
	return p[0];
}

void
child_spawn(struct supervisor *s, struct child *c, uint64_t now)
{
	pid_t parent = getpid(), pid;
	int i, token_fd = -1;
	char **argv, **env;

	msg_health_clear(&c->c_health);
	c->c_have_health = false;
	c->c_last_answer_ms = 0;
	c->c_killed_unresponsive = false;

	/* The poller gets the CircleCI token the supervisor runs (the one
	 * it validated last, from the file or CIRCLE_TOKEN) on a pipe. */
	if (c->c_role == ROLE_POLLER && sup_circle_token(s) != NULL &&
	    (token_fd = token_pipe(sup_circle_token(s))) == -1) {
		c->c_state = CHILD_WAITING;
		c->c_next_start_ms = now + backoff_next(&c->c_backoff);
		return;
	}
	/* The operator's flags, then the supervisor's: the last of a flag
	 * wins.  A child starts from the configuration the supervisor runs
	 * (saved in the run dir), never from a file changed since. */
	argv = xcalloc((size_t)s->s_child_argc + 10, sizeof(*argv));
	argv[0] = c->c_path;
	for (i = 0; i < s->s_child_argc; i++)
		argv[i + 1] = s->s_child_argv[i];
	argv[++i] = "--run-dir";
	argv[++i] = (char *)(uintptr_t)s->s_run_dir;
	if (token_fd != -1) {
		argv[++i] = "--circle-token-fd";
		argv[++i] = TOKEN_FD_ARG;
	}
	if (reload_snapshot(s, c->c_role)[0] != '\0') {
		argv[++i] = "--config";
		argv[++i] = (char *)(uintptr_t)reload_snapshot(s, c->c_role);
		/* The actuator's secrets as accepted ("": none); the poller
		 * reads none. */
		if (c->c_role == ROLE_ACTUATOR) {
			argv[++i] = "--secrets";
			argv[++i] =
			    (char *)(uintptr_t)reload_secrets_snapshot(s);
		}
	}
	/* A restarted actuator keeps its name, and with it the Lease. */
	if (c->c_role == ROLE_ACTUATOR && s->s_identity[0] != '\0') {
		argv[++i] = "--lease-identity";
		argv[++i] = s->s_identity;
	}
	c->c_conf_gen = s->s_reload.r_generation;
	c->c_conf_sent_ms = 0;
	c->c_conf_error[0] = '\0';
	env = child_env(
	    c->c_role == ROLE_POLLER ? poller_env_drop : actuator_env_drop);
	pid = fork();
	if (pid == 0)
		child_exec(c->c_path, argv, env, parent, token_fd);
	free(argv);
	free(env);
	if (token_fd != -1)
		close(token_fd);
	if (pid == -1) {
		log_warn("fork for the %s", c->c_name);
		c->c_state = CHILD_WAITING;
		c->c_next_start_ms = now + backoff_next(&c->c_backoff);
		return;
	}
	c->c_pid = pid;
	c->c_state = CHILD_RUNNING;
	/* The loop's clock, so that nothing computed from the same `now`
	 * sees the child start in its future. */
	c->c_started_ms = now;
	metric_set(c->c_m_up, 1);
	log_info("started the %s (pid %d)", c->c_name, (int)pid);
	/* Survey soon so the new child is seen answering quickly. */
	s->s_next_survey_ms = c->c_started_ms;
}

static void
describe_exit(char *buf, size_t size, int status)
{
	if (WIFEXITED(status))
		snprintf(
		    buf, size, "exited with status %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, size, "killed by signal %d (%s)%s",
		    WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, size, "ended with wait status %#x", status);
}

/* Records a death; true when the recent ones make a crash loop. */
static bool
crash_loop(struct child *c, uint64_t now)
{
	uint64_t oldest;

	c->c_deaths[c->c_ndeaths % CRASH_LOOP_DEATHS] = now;
	c->c_ndeaths++;
	if (c->c_ndeaths < CRASH_LOOP_DEATHS)
		return false;
	oldest = c->c_deaths[c->c_ndeaths % CRASH_LOOP_DEATHS];
	return now - oldest <= CRASH_LOOP_WINDOW_MS;
}

static void
child_died(struct supervisor *s, struct child *c, int status)
{
	uint64_t now = now_ms(), delay;
	struct log_line ll;

	describe_exit(c->c_last_exit, sizeof(c->c_last_exit), status);
	metric_set(c->c_m_up, 0);
	c->c_pid = 0;
	if (c->c_state == CHILD_STOPPING || s->s_quit) {
		c->c_state = CHILD_DOWN;
		log_info("the %s stopped: %s", c->c_name, c->c_last_exit);
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_PERMFAIL) {
		c->c_state = CHILD_FAILED;
		log_begin(&ll, LOG_LVL_ERROR,
		    "child failed permanently and will not be restarted; fix "
		    "the cause reported above and restart runner-provisioner");
		log_str(&ll, "child", c->c_name);
		log_str(&ll, "exit", c->c_last_exit);
		log_end(&ll);
		return;
	}
	if (now - c->c_started_ms >= CHILD_STABLE_MS) {
		backoff_reset(&c->c_backoff);
		c->c_quick_restart = true;
		c->c_crash_loop = false;
	}
	/* The first restart after a stable run is immediate, then 1s, 2s…
	 * (s6's rule: never restart in a tight loop). */
	if (c->c_quick_restart) {
		delay = 0;
		c->c_quick_restart = false;
	} else
		delay = backoff_next(&c->c_backoff);
	if (crash_loop(c, now)) {
		if (!c->c_crash_loop)
			log_error("the %s is crash-looping (%d deaths within "
			          "%ds); restarting it every %ds until it "
			          "stays up",
			    c->c_name, CRASH_LOOP_DEATHS,
			    CRASH_LOOP_WINDOW_MS / 1000,
			    CRASH_LOOP_DELAY_MS / 1000);
		c->c_crash_loop = true;
		delay = CRASH_LOOP_DELAY_MS;
	}
	metric_set(c->c_m_crash_loop, c->c_crash_loop ? 1 : 0);
	c->c_state = CHILD_WAITING;
	c->c_next_start_ms = now + delay;
	log_begin(&ll, LOG_LVL_WARN, "child died; restarting");
	log_str(&ll, "child", c->c_name);
	log_str(&ll, "exit", c->c_last_exit);
	log_uint(&ll, "restart_in_ms", delay);
	log_end(&ll);
}

struct child *
child_by_pid(struct supervisor *s, pid_t pid)
{
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++)
		if (s->s_children[i].c_pid == pid && pid > 0)
			return &s->s_children[i];
	return NULL;
}

void
child_reap(struct supervisor *s)
{
	struct child *c;
	int status;
	pid_t pid;

	for (;;) {
		pid = waitpid(-1, &status, WNOHANG);
		if (pid == -1 && errno == EINTR)
			continue;
		if (pid <= 0)
			break;
		if ((c = child_by_pid(s, pid)) != NULL)
			child_died(s, c, status);
		else
			log_debug("reaped orphan pid %d", (int)pid);
	}
}

void
child_tick(struct supervisor *s, uint64_t now)
{
	struct child *c;
	size_t i;

	if (s->s_quit)
		return;
	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_state == CHILD_DOWN ||
		    (c->c_state == CHILD_WAITING &&
		        now >= c->c_next_start_ms)) {
			if (c->c_state == CHILD_WAITING) {
				c->c_restarts++;
				metric_inc(c->c_m_restarts, 1);
			}
			child_spawn(s, c, now);
		}
	}
}

uint64_t
child_next_deadline(const struct supervisor *s)
{
	uint64_t next = UINT64_MAX;
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++)
		if (s->s_children[i].c_state == CHILD_WAITING &&
		    s->s_children[i].c_next_start_ms < next)
			next = s->s_children[i].c_next_start_ms;
	return next;
}

void
child_stop_all(struct supervisor *s, int sig)
{
	struct child *c;
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_pid > 0) {
			kill(c->c_pid, sig);
			c->c_state = CHILD_STOPPING;
		} else if (c->c_state != CHILD_FAILED)
			c->c_state = CHILD_DOWN;
	}
}

bool
child_all_down(const struct supervisor *s)
{
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++)
		if (s->s_children[i].c_pid > 0)
			return false;
	return true;
}
