#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actuator.h"
#include "ipc.h"
#include "log.h"
#include "sig.h"
#include "survey.h"
#include "util.h"

static int
class_cmp(const void *key, const void *elem)
{
	const struct act_class *ac = elem;

	return strcmp(key, ac->ac_conf->cc_name);
}

struct act_class *
act_class_find(struct actuator *a, const char *name)
{
	return bsearch(name, a->a_classes, a->a_nclasses,
	    sizeof(*a->a_classes), class_cmp);
}

static int
pool_cmp(const void *x, const void *y)
{
	const struct act_class *const *a = x, *const *b = y;

	return strcmp((*a)->ac_pool, (*b)->ac_pool);
}

static int
pool_key_cmp(const void *key, const void *elem)
{
	const struct act_class *const *ac = elem;

	return strcmp(key, (*ac)->ac_pool);
}

struct act_class *
act_class_by_pool(struct actuator *a, const char *pool)
{
	struct act_class **ac;

	if (pool == NULL)
		return NULL;
	ac = bsearch(pool, a->a_by_pool, a->a_nclasses, sizeof(*a->a_by_pool),
	    pool_key_cmp);
	return ac != NULL ? *ac : NULL;
}

int
act_classes_setup(struct actuator *a)
{
	struct act_class *ac;
	size_t i;

	a->a_nclasses = a->a_conf->c_nclasses;
	a->a_classes = xcalloc(a->a_nclasses, sizeof(*a->a_classes));
	a->a_by_pool = xcalloc(a->a_nclasses, sizeof(*a->a_by_pool));
	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		ac->ac_conf = &a->a_conf->c_classes[i];
		pool_name(
		    ac->ac_conf->cc_name, ac->ac_pool, sizeof(ac->ac_pool));
		backoff_init(&ac->ac_kube.ck_backoff, WRITE_BACKOFF_BASE_MS,
		    WRITE_BACKOFF_CAP_MS);
		backoff_init(&ac->ac_vms.cv_backoff, WRITE_BACKOFF_BASE_MS,
		    WRITE_BACKOFF_CAP_MS);
		ac->ac_dirty = true;
		ac->ac_wake_ms = PLAN_NEVER;
		a->a_by_pool[i] = ac;
		if (!a->a_flags->f_dry_run &&
		    pool_objects_build(&ac->ac_obj, ac->ac_conf, ac->ac_pool,
		        a->a_flags->f_api_addr) == -1)
			return -1;
	}
	qsort(a->a_by_pool, a->a_nclasses, sizeof(*a->a_by_pool), pool_cmp);
	report_setup(a);
	return 0;
}

void
act_classes_free(struct actuator *a)
{
	size_t i;

	for (i = 0; i < a->a_nclasses; i++) {
		pool_objects_free(&a->a_classes[i].ac_obj);
		class_observations_free(&a->a_classes[i]);
	}
	free(a->a_classes);
	free(a->a_by_pool);
	a->a_classes = NULL;
	a->a_by_pool = NULL;
	a->a_nclasses = 0;
}

/* How long a class stays ready after its pool last matched: a few list
 * periods (a few poll intervals with --dry-run). */
static uint64_t
ready_window_ms(const struct actuator *a)
{
	uint64_t w = 5 * a->a_flags->f_poll_interval_ms;

	if (!a->a_flags->f_dry_run)
		return LIST_STALE_MS + RESYNC_MS;
	return w > 15000 ? w : 15000;
}

bool
act_class_ready(
    const struct actuator *a, const struct act_class *ac, uint64_t now)
{
	int k;

	if (ac->ac_kube.ck_synced_ms == 0 ||
	    now - ac->ac_kube.ck_synced_ms > ready_window_ms(a))
		return false;
	if (a->a_flags->f_dry_run)
		return true;
	/* A denial is no passing fault: not ready until that verb works. */
	for (k = 0; k < LIST_COUNT; k++)
		if (a->a_lists[k].al_denied)
			return false;
	return ac->ac_kube.ck_denied == 0 && !ac->ac_vms.cv_boot.bg_loop;
}

bool
act_starting(const struct actuator *a, uint64_t now)
{
	return now - a->a_role->r_start_ms <= ready_window_ms(a);
}

/* Decide, plan, send: one class, once. */
static void
step(struct actuator *a, struct act_class *ac, uint64_t now)
{
	struct plan_input in;
	struct plan p;

	ac->ac_dirty = false;
	ac->ac_wake_ms = PLAN_NEVER;
	demand_decide(a, ac, now);
	if (a->a_flags->f_dry_run) {
		if (ac->ac_demand.cd_have_target && !ac->ac_demand.cd_holding)
			ac->ac_kube.ck_synced_ms = now;
		report_class(ac);
		return;
	}
	memset(&in, 0, sizeof(in));
	in.pi_class = ac;
	in.pi_now_ms = now;
	in.pi_wall_ms = wall_ms();
	in.pi_lists_fresh = a->a_lists[LIST_POOLS].al_ok_ms != 0 &&
	    now - a->a_lists[LIST_POOLS].al_ok_ms <= LIST_STALE_MS;
	in.pi_min_replicas = ac->ac_conf->cc_min_replicas;
	plan_class(&in, &p);
	if (p.p_synced) {
		ac->ac_kube.ck_synced_ms = now;
		ac->ac_kube.ck_synced_wall_ms = in.pi_wall_ms;
		ac->ac_kube.ck_error[0] = '\0';
	}
	exec_plan(a, ac, &p, now);
	ac->ac_wake_ms = p.p_wake_ms;
	report_class(ac);
}

void
act_turn(struct actuator *a, uint64_t now)
{
	size_t i;

	/* Once per poll interval every class is looked at, so staleness is
	 * noticed without messages. */
	if (now >= a->a_next_tick_ms) {
		for (i = 0; i < a->a_nclasses; i++)
			a->a_classes[i].ac_dirty = true;
		a->a_next_tick_ms = now + a->a_flags->f_poll_interval_ms;
	}
	if (a->a_kube != NULL)
		exec_lists(a, now);
	for (i = 0; i < a->a_nclasses; i++)
		if (a->a_classes[i].ac_dirty ||
		    now >= a->a_classes[i].ac_wake_ms)
			step(a, &a->a_classes[i], now);
}

uint64_t
act_next_deadline(const struct actuator *a)
{
	uint64_t next = a->a_next_tick_ms;
	size_t i;
	int k;

	for (i = 0; i < a->a_nclasses; i++) {
		if (a->a_classes[i].ac_dirty)
			return 0;
		if (a->a_classes[i].ac_wake_ms < next)
			next = a->a_classes[i].ac_wake_ms;
	}
	for (k = 0; a->a_kube != NULL && k < LIST_COUNT; k++)
		if (!a->a_lists[k].al_busy && a->a_lists[k].al_next_ms < next)
			next = a->a_lists[k].al_next_ms;
	return next;
}

static int
ipc_setup(struct actuator *a)
{
	char url[IPC_URL_MAX];

	if (ipc_url(url, sizeof(url), a->a_role->r_run_dir, IPC_DEMAND) ==
	        -1 ||
	    ipc_open(&a->a_sub, IPC_SUB_DIAL, url, &a->a_sub_fd) == -1)
		return -1;
	return 0;
}

int
act_run(struct actuator *a)
{
	struct curl_waitfd extra[3];
	int numfds, running, sig, rv = 0;
	uint64_t now;

	a->a_metrics = metrics_new();
	if ((a->a_multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	if (!a->a_flags->f_dry_run)
		a->a_kube = kube_new(&a->a_creds, a->a_multi, a->a_metrics);
	demand_setup(a);
	if (act_classes_setup(a) == -1 || ipc_setup(a) == -1) {
		rv = -1;
		goto out;
	}
	a->a_next_tick_ms =
	    a->a_role->r_start_ms + a->a_flags->f_poll_interval_ms;
	act_lock(a);

	while (!a->a_quit) {
		act_turn(a, now_ms());
		curl_multi_perform(a->a_multi, &running);
		if (a->a_kube != NULL)
			kube_collect(a->a_kube);
		memset(extra, 0, sizeof(extra));
		extra[0].fd = a->a_role->r_sigfd;
		extra[1].fd = a->a_sub_fd;
		extra[2].fd = a->a_role->r_health_fd;
		extra[0].events = extra[1].events = extra[2].events =
		    CURL_WAIT_POLLIN;
		/* The one wait point: until a socket, the next list, a class's
		 * wake time or the next tick (0 when answers just arrived). */
		curl_multi_poll(a->a_multi, extra, 3,
		    ms_until(act_next_deadline(a), now_ms()), &numfds);
		now = now_ms();
		if (extra[1].revents & CURL_WAIT_POLLIN)
			demand_receive(a, now);
		if (extra[2].revents & CURL_WAIT_POLLIN)
			survey_answer(a->a_role->r_health, ROLE_ACTUATOR,
			    &a->a_survey_seq, report_health, a);
		if ((extra[0].revents & CURL_WAIT_POLLIN) &&
		    (sig = sig_read(a->a_role->r_sigfd)) != 0) {
			log_info("stopping (%s)", strsignal(sig));
			a->a_quit = true;
		}
	}
out:
	/* Requests still in flight are abandoned (their callbacks get a
	 * cancelled reply); the next start lists everything again. */
	kube_free(a->a_kube);
	act_classes_free(a);
	curl_multi_cleanup(a->a_multi);
	nng_close(a->a_sub);
	metrics_free(a->a_metrics);
	return rv;
}
