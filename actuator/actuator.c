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

/* A class is in sync when its pool matched the decision recently. */
static uint64_t
sync_window_ms(const struct actuator *a)
{
	uint64_t w = 5 * a->a_flags->f_poll_interval_ms;

	return w > 15000 ? w : 15000;
}

static bool
class_synced(
    const struct actuator *a, const struct act_class *ac, uint64_t now)
{
	if (a->a_kube != NULL)
		return sync_class_healthy(a, ac, now);
	return ac->ac_last_sync_ms != 0 &&
	    now - ac->ac_last_sync_ms <= sync_window_ms(a);
}

/* What /ready shows of a class's Kubernetes objects and VMs. */
static void
kube_detail(const struct actuator *a, const struct act_class *ac, json_t *o)
{
	json_t *vms;
	int s;

	if (a->a_kube == NULL)
		return;
	json_object_set_new(
	    o, "secret", json_string(obj_state_name(ac->ac_secret_state)));
	json_object_set_new(
	    o, "pool_state", json_string(obj_state_name(ac->ac_pool_state)));
	if (ac->ac_have_replicas)
		json_object_set_new(
		    o, "pool_replicas", json_integer(ac->ac_replicas));
	json_object_set_new(
	    o, "pool_ready_replicas", json_integer(ac->ac_ready_replicas));
	vms = json_object();
	for (s = 0; s < VMS_COUNT; s++)
		json_object_set_new(vms, vm_state_name((enum vm_state)s),
		    json_integer(ac->ac_vms[s]));
	json_object_set_new(o, "vms", vms);
	if (ac->ac_boot_loop)
		json_object_set_new(o, "boot_loop", json_true());
	if (ac->ac_error[0] != '\0')
		json_object_set_new(
		    o, "last_error", json_string(ac->ac_error));
}

static void
health_fill(void *arg, struct msg_health *h, struct buf *metrics_text)
{
	struct actuator *a = arg;
	const struct act_class *ac;
	uint64_t now = now_ms();
	size_t i, synced = 0, tried = 0;
	json_t *classes = json_object(), *o, *dem;

	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		o = json_object();
		json_object_set_new(o, "pool", json_string(ac->ac_pool));
		if (ac->ac_have_target)
			json_object_set_new(
			    o, "target_replicas", json_integer(ac->ac_target));
		if (ac->ac_holding)
			json_object_set_new(o, "holding",
			    json_string(
			        decision_reason_name(ac->ac_hold_reason)));
		if (ac->ac_have_demand) {
			dem = json_object();
			json_object_set_new(
			    dem, "ok", json_boolean(ac->ac_demand_ok));
			json_object_set_new(dem, "age_ms",
			    json_integer(
			        (json_int_t)(now - ac->ac_demand_rx_ms)));
			if (ac->ac_demand_ok) {
				json_object_set_new(dem, "unclaimed_tasks",
				    json_integer(ac->ac_unclaimed));
				json_object_set_new(dem, "running_tasks",
				    json_integer(ac->ac_running));
			} else
				json_object_set_new(dem, "error",
				    json_string(demand_error_name(
				        (enum demand_error)
				            ac->ac_demand_error)));
			json_object_set_new(o, "demand", dem);
		}
		kube_detail(a, ac, o);
		json_object_set_new(
		    o, "synced", json_boolean(class_synced(a, ac, now)));
		if (ac->ac_last_sync_ms != 0)
			json_object_set_new(o, "last_sync_ms_ago",
			    json_integer(
			        (json_int_t)(now - ac->ac_last_sync_ms)));
		json_object_set_new(classes, ac->ac_conf->cc_name, o);
		if (class_synced(a, ac, now))
			synced++;
		if (ac->ac_last_sync_ms != 0 || ac->ac_have_demand)
			tried++;
	}
	if (synced == a->a_nclasses)
		h->hl_state = HEALTH_OK;
	else if (synced > 0)
		h->hl_state = HEALTH_DEGRADED;
	else if (tried > 0 || now - a->a_role->r_start_ms > sync_window_ms(a))
		h->hl_state = HEALTH_FAILING;
	else
		h->hl_state = HEALTH_STARTING;
	h->hl_uptime_ms = now - a->a_role->r_start_ms;
	h->hl_detail = json_pack(
	    "{s:b,s:o}", "dry_run", a->a_flags->f_dry_run, "classes", classes);
	if (a->a_kube != NULL) {
		json_object_set_new(h->hl_detail, "namespace",
		    json_string(kube_namespace(a->a_kube)));
		json_object_set_new(h->hl_detail, "kubernetes_reachable",
		    json_boolean(!kube_unreachable(a->a_kube)));
	}
	metrics_render(a->a_metrics, metrics_text);
}

static void
classes_setup(struct actuator *a)
{
	static const char *const cls[] = { "resource_class", NULL };
	struct metric_family *target, *holding;
	struct act_class *ac;
	size_t i;

	target = metrics_family(a->a_metrics, METRIC_GAUGE, "target_replicas",
	    "Replica count decided for the pool.", cls, NULL, 0);
	holding = metrics_family(a->a_metrics, METRIC_GAUGE, "holding",
	    "1 while the pool is held because demand failed or is stale.", cls,
	    NULL, 0);
	a->a_nclasses = a->a_conf->c_nclasses;
	a->a_classes = xcalloc(a->a_nclasses, sizeof(*a->a_classes));
	for (i = 0; i < a->a_nclasses; i++) {
		ac = &a->a_classes[i];
		ac->ac_conf = &a->a_conf->c_classes[i];
		pool_name(
		    ac->ac_conf->cc_name, ac->ac_pool, sizeof(ac->ac_pool));
		ac->ac_m_target = metric_series(
		    target, (const char *[]){ ac->ac_conf->cc_name });
		ac->ac_m_holding = metric_series(
		    holding, (const char *[]){ ac->ac_conf->cc_name });
	}
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

/* Once per poll interval: staleness is noticed even without messages. */
static void
tick(struct actuator *a, uint64_t now)
{
	size_t i;

	for (i = 0; i < a->a_nclasses; i++)
		act_decide(a, &a->a_classes[i], now);
}

int
act_run(struct actuator *a)
{
	struct curl_waitfd extra[3];
	int numfds, running, sig, rv = 0;
	uint64_t now, deadline;

	a->a_metrics = metrics_new();
	classes_setup(a);
	demand_setup(a);
	if ((a->a_multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	if (!a->a_flags->f_dry_run)
		a->a_kube = kube_new(a, &a->a_creds, a->a_multi, a->a_metrics);
	if (ipc_setup(a) == -1 || (a->a_kube != NULL && sync_setup(a) == -1)) {
		rv = -1;
		goto out;
	}
	a->a_next_tick_ms =
	    a->a_role->r_start_ms + a->a_flags->f_poll_interval_ms;
	act_lock(a);

	while (!a->a_quit) {
		now = now_ms();
		if (now >= a->a_next_tick_ms) {
			tick(a, now);
			a->a_next_tick_ms =
			    now + a->a_flags->f_poll_interval_ms;
		}
		sync_tick(a, now);
		curl_multi_perform(a->a_multi, &running);
		if (a->a_kube != NULL)
			kube_collect(a->a_kube);
		deadline = sync_next_deadline(a);
		if (a->a_next_tick_ms < deadline)
			deadline = a->a_next_tick_ms;
		memset(extra, 0, sizeof(extra));
		extra[0].fd = a->a_role->r_sigfd;
		extra[1].fd = a->a_sub_fd;
		extra[2].fd = a->a_role->r_health_fd;
		extra[0].events = extra[1].events = extra[2].events =
		    CURL_WAIT_POLLIN;
		curl_multi_poll(a->a_multi, extra, 3,
		    ms_until(deadline, now_ms()), &numfds);
		now = now_ms();
		if (extra[1].revents & CURL_WAIT_POLLIN)
			demand_receive(a, now);
		if (extra[2].revents & CURL_WAIT_POLLIN)
			survey_answer(a->a_role->r_health, ROLE_ACTUATOR,
			    &a->a_seq, health_fill, a);
		if ((extra[0].revents & CURL_WAIT_POLLIN) &&
		    (sig = sig_read(a->a_role->r_sigfd)) != 0) {
			log_info("stopping (%s)", strsignal(sig));
			a->a_quit = true;
		}
	}
out:
	if (a->a_kube != NULL) {
		/* Abandon requests still in flight; the next start re-reads.
		 */
		kube_free(a->a_kube);
		sync_teardown(a);
	}
	curl_multi_cleanup(a->a_multi);
	nng_close(a->a_sub);
	metrics_free(a->a_metrics);
	free(a->a_classes);
	return rv;
}
