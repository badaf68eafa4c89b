#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "sig.h"
#include "supervisor.h"
#include "util.h"

#define PFD_SIGNAL 0
#define PFD_SURVEY 1
#define PFD_CONF   2 /* one per child */
#define PFD_WATCH  4 /* the inotify descriptor */
#define PFD_HTTP   5
#define PFD_MAX    7

static void
shutdown_begin(struct supervisor *s, int sig, uint64_t now)
{
	struct log_line ll;

	if (s->s_quit) {
		log_warnx(
		    "second signal %d during shutdown; killing children", sig);
		child_stop_all(s, SIGKILL);
		return;
	}
	s->s_quit = true;
	s->s_kill_deadline_ms = now + s->s_flags->f_shutdown_grace_ms;
	log_begin(&ll, LOG_LVL_INFO, "shutting down");
	log_str(&ll, "signal", strsignal(sig));
	log_uint(&ll, "grace_ms", s->s_flags->f_shutdown_grace_ms);
	log_end(&ll);
	child_stop_all(s, SIGTERM);
}

static void
signals_read(struct supervisor *s, uint64_t now)
{
	struct signalfd_siginfo si;
	ssize_t n;

	while ((n = read(s->s_sigfd, &si, sizeof(si))) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			child_reap(s);
			break;
		case SIGTERM:
		case SIGINT:
			shutdown_begin(s, (int)si.ssi_signo, now);
			break;
		case SIGHUP:
			log_info("SIGHUP: checking the configuration files");
			s->s_reload.r_soon_ms = now;
			break;
		}
	}
	/* Signals coalesce: reap anyway in case a SIGCHLD was merged. */
	child_reap(s);
}

static uint64_t
next_deadline(struct supervisor *s, uint64_t now)
{
	uint64_t next = child_next_deadline(s), t, ref;
	const struct child *c;
	size_t i;

	if (!s->s_quit && s->s_next_survey_ms < next)
		next = s->s_next_survey_ms;
	if ((t = http_next_deadline(s->s_http, now)) < next)
		next = t;
	if (s->s_quit && s->s_kill_deadline_ms < next)
		next = s->s_kill_deadline_ms;
	if (!s->s_quit && (t = reload_deadline(s)) < next)
		next = t;
	for (i = 0; i < nitems(s->s_children) && !s->s_quit; i++) {
		c = &s->s_children[i];
		if (c->c_state != CHILD_RUNNING || c->c_killed_unresponsive)
			continue;
		if ((ref = health_kill_deadline(c)) < next)
			next = ref;
	}
	return next;
}

static void
sup_cleanup(struct supervisor *s)
{
	char path[IPC_URL_MAX];

	http_stop(s->s_http);
	s->s_http = NULL;
	reload_close(s);
	nng_close(s->s_survey);
	snprintf(path, sizeof(path), "%s/%s", s->s_run_dir, IPC_HEALTH);
	unlink(path);
	close(s->s_sigfd);
}

void
sup_free(struct supervisor *s)
{
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++) {
		msg_health_clear(&s->s_children[i].c_health);
		free(s->s_children[i].c_path);
		s->s_children[i].c_path = NULL;
	}
	metrics_free(s->s_metrics);
	s->s_metrics = NULL;
}

int
sup_run(struct supervisor *s)
{
	static const int signals[] = { SIGTERM, SIGINT, SIGCHLD, SIGHUP };
	struct pollfd pfd[PFD_MAX];
	struct metric_series *ready;
	int hfds[2], nh, i, nfds;
	bool killed = false;
	uint64_t now;

	/* Before nng starts its threads. */
	s->s_sigfd = sig_fd(signals, nitems(signals));
	s->s_start_ms = now_ms();
	metric_set(
	    metric_series(metrics_family(s->s_metrics, METRIC_GAUGE,
	                      "build_info", "Version of runner-provisioner.",
	                      (const char *[]){ "version", NULL }, NULL, 0),
	        (const char *[]){ RP_VERSION }),
	    1);
	ready = metric_single(metrics_family(s->s_metrics, METRIC_GAUGE,
	    "ready", "1 when both children are healthy (GET /ready is 200).",
	    NULL, NULL, 0));
	if (health_init(s) == -1 || reload_open(s) == -1 ||
	    (s->s_http = http_start(s)) == NULL) {
		sup_cleanup(s);
		return -1;
	}
	child_tick(s, now_ms());

	for (;;) {
		now = now_ms();
		pfd[PFD_SIGNAL].fd = s->s_sigfd;
		pfd[PFD_SURVEY].fd = s->s_survey_fd;
		pfd[PFD_CONF].fd = s->s_children[0].c_conf_fd;
		pfd[PFD_CONF + 1].fd = s->s_children[1].c_conf_fd;
		pfd[PFD_WATCH].fd = reload_fd(s); /* -1: ignored */
		nh = http_fds(s->s_http, hfds, 2);
		for (i = 0; i < nh; i++)
			pfd[PFD_HTTP + i].fd = hfds[i];
		nfds = PFD_HTTP + nh;
		for (i = 0; i < nfds; i++) {
			pfd[i].events = POLLIN;
			pfd[i].revents = 0;
		}
		if (poll(pfd, (nfds_t)nfds,
		        ms_until(next_deadline(s, now), now)) == -1 &&
		    errno != EINTR)
			fatal("poll");
		now = now_ms();
		if (pfd[PFD_SIGNAL].revents & POLLIN)
			signals_read(s, now);
		if (pfd[PFD_SURVEY].revents & POLLIN)
			health_receive(s, now);
		for (i = 0; i < 2; i++)
			if (pfd[PFD_CONF + i].revents & POLLIN)
				reload_receive(s, &s->s_children[i]);
		if (pfd[PFD_WATCH].revents & POLLIN)
			reload_events(s, now);
		http_run(s->s_http);
		if (s->s_quit) {
			if (child_all_down(s))
				break;
			if (!killed && now >= s->s_kill_deadline_ms) {
				log_warnx("children did not stop within %llu "
				          "ms; sending SIGKILL",
				    (unsigned long long)
				        s->s_flags->f_shutdown_grace_ms);
				child_stop_all(s, SIGKILL);
				killed = true;
			}
			continue;
		}
		reload_tick(s, now);
		child_tick(s, now);
		reload_send(s, now);
		health_survey(s, now);
		health_check(s, now);
		metric_set(ready, health_ready(s, now) ? 1 : 0);
	}
	log_info("stopped");
	sup_cleanup(s);
	return 0;
}
