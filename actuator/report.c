/*
 * What the actuator tells the supervisor: its metrics, and in its health
 * answer whether each class is ready and why not (/ready).
 */
#include <stdio.h>
#include <string.h>

#include "actuator.h"
#include "log.h"
#include "survey.h"
#include "util.h"

void
report_setup(struct actuator *a)
{
	static const char *const cls[] = { "resource_class", NULL };
	struct metric_family **f = a->a_m_family;

	f[RF_TARGET] =
	    metrics_family(a->a_metrics, METRIC_GAUGE, "target_replicas",
	        "Replica count decided for the pool.", cls, NULL, 0);
	f[RF_HOLDING] = metrics_family(a->a_metrics, METRIC_GAUGE, "holding",
	    "1 while the pool is held because demand failed or is stale.", cls,
	    NULL, 0);
	f[RF_REPLICAS] =
	    metrics_family(a->a_metrics, METRIC_GAUGE, "pool_replicas",
	        "The pool's spec.replicas, as last seen.", cls, NULL, 0);
	f[RF_STATUS_REPLICAS] = metrics_family(a->a_metrics, METRIC_GAUGE,
	    "pool_current_replicas",
	    "The pool's status.replicas (VMs it owns, stopped ones included).",
	    cls, NULL, 0);
	f[RF_READY_REPLICAS] =
	    metrics_family(a->a_metrics, METRIC_GAUGE, "pool_ready_replicas",
	        "The pool's status.readyReplicas.", cls, NULL, 0);
	f[RF_SYNCED] = metrics_family(a->a_metrics, METRIC_GAUGE,
	    "last_sync_timestamp_seconds",
	    "Unix time the pool was last seen matching its decision.", cls,
	    NULL, 0);
	f[RF_VMS] = metrics_family(a->a_metrics, METRIC_GAUGE, "vms",
	    "Pool VMs by state, as last listed.",
	    (const char *[]){ "resource_class", "state", NULL }, NULL, 0);
	f[RF_SCALE] = metrics_family(a->a_metrics, METRIC_COUNTER,
	    "scale_events_total", "Replica changes written, by direction.",
	    (const char *[]){ "resource_class", "direction", NULL }, NULL, 0);
	f[RF_RECLAIMED] =
	    metrics_family(a->a_metrics, METRIC_COUNTER, "reclaimed_vms_total",
	        "Stopped VMs deleted so that the pool replaces them.", cls,
	        NULL, 0);
	f[RF_FINALIZERS] = metrics_family(a->a_metrics, METRIC_COUNTER,
	    "finalizers_removed_total",
	    "VMs released from a pool finalizer that kept them in deletion.",
	    cls, NULL, 0);
	f[RF_BOOT_LOOP] = metrics_family(a->a_metrics, METRIC_GAUGE,
	    "boot_loop",
	    "1 while the class's VMs power off right after boot and reclaim "
	    "is slowed down.",
	    cls, NULL, 0);
	a->a_m_leader = metric_single(metrics_family(a->a_metrics,
	    METRIC_GAUGE, "leader",
	    "1 while this replica writes to Kubernetes (with --leader-elect: "
	    "holds the Lease), 0 on standby.",
	    NULL, NULL, 0));
	f[RF_RETIRING] =
	    metrics_family(a->a_metrics, METRIC_GAUGE, "class_retiring",
	        "1 while the pool of a class no longer configured is emptied "
	        "before it is deleted.",
	        cls, NULL, 0);
}

void
report_class_setup(struct actuator *a, struct act_class *ac)
{
	struct metric_family **f = a->a_m_family;
	struct class_metrics *m = &ac->ac_m;
	const char *name = ac->ac_name;
	int s;

	if (f[RF_TARGET] == NULL)
		return; /* no registry (a test without one) */
	m->cm_target = metric_series(f[RF_TARGET], &name);
	m->cm_holding = metric_series(f[RF_HOLDING], &name);
	if (a->a_flags->f_dry_run)
		return; /* no Kubernetes, nothing to report of it */
	m->cm_replicas = metric_series(f[RF_REPLICAS], &name);
	m->cm_status_replicas = metric_series(f[RF_STATUS_REPLICAS], &name);
	m->cm_ready_replicas = metric_series(f[RF_READY_REPLICAS], &name);
	m->cm_synced = metric_series(f[RF_SYNCED], &name);
	for (s = 0; s < VMS_COUNT; s++)
		m->cm_vms[s] = metric_series(f[RF_VMS],
		    (const char *[]){ name, vm_state_name((enum vm_state)s) });
	m->cm_scale_up =
	    metric_series(f[RF_SCALE], (const char *[]){ name, "up" });
	m->cm_scale_down =
	    metric_series(f[RF_SCALE], (const char *[]){ name, "down" });
	m->cm_reclaimed = metric_series(f[RF_RECLAIMED], &name);
	m->cm_finalizers = metric_series(f[RF_FINALIZERS], &name);
	m->cm_boot_loop = metric_series(f[RF_BOOT_LOOP], &name);
	m->cm_retiring = metric_series(f[RF_RETIRING], &name);
}

void
report_class_drop(struct act_class *ac)
{
	struct class_metrics *m = &ac->ac_m;
	int s;

	metric_series_drop(m->cm_target);
	metric_series_drop(m->cm_holding);
	metric_series_drop(m->cm_replicas);
	metric_series_drop(m->cm_status_replicas);
	metric_series_drop(m->cm_ready_replicas);
	metric_series_drop(m->cm_synced);
	for (s = 0; s < VMS_COUNT; s++)
		metric_series_drop(m->cm_vms[s]);
	metric_series_drop(m->cm_scale_up);
	metric_series_drop(m->cm_scale_down);
	metric_series_drop(m->cm_reclaimed);
	metric_series_drop(m->cm_finalizers);
	metric_series_drop(m->cm_boot_loop);
	metric_series_drop(m->cm_retiring);
	memset(m, 0, sizeof(*m));
}

void
report_class(struct act_class *ac)
{
	const struct class_demand *d = &ac->ac_demand;
	const struct class_kube *k = &ac->ac_kube;
	const struct class_metrics *m = &ac->ac_m;
	int s;

	if (m->cm_target == NULL)
		return;
	if (d->cd_have_target)
		metric_set(m->cm_target, d->cd_target);
	metric_set(m->cm_holding, d->cd_holding);
	if (m->cm_replicas == NULL)
		return;
	metric_set(m->cm_retiring, ac->ac_retiring);
	if (k->ck_have_replicas)
		metric_set(m->cm_replicas, k->ck_replicas);
	metric_set(m->cm_status_replicas, k->ck_status_replicas);
	metric_set(m->cm_ready_replicas, k->ck_ready_replicas);
	if (k->ck_synced_wall_ms != 0)
		metric_set(m->cm_synced, (double)k->ck_synced_wall_ms / 1e3);
	for (s = 0; s < VMS_COUNT; s++)
		metric_set(m->cm_vms[s], ac->ac_vms.cv_count[s]);
	metric_set(m->cm_boot_loop, ac->ac_vms.cv_boot.bg_loop);
}

static json_t *
denied_list(const struct actuator *a, const struct act_class *ac)
{
	json_t *l = json_array();
	int v, k;

	for (v = 0; v < KV_COUNT; v++) {
		bool listed = false;

		for (k = 0; k < LIST_COUNT; k++)
			listed |= a->a_lists[k].al_denied &&
			    ((k == LIST_POOLS && v == KV_POOL_LIST) ||
			        (k == LIST_VMS && v == KV_VM_LIST) ||
			        (k == LIST_SECRETS && v == KV_SECRET_LIST));
		if (listed || (ac->ac_kube.ck_denied & (1u << v)))
			json_array_append_new(l,
			    json_sprintf("%s %s", kube_verbs[v].kv_verb,
			        kube_verbs[v].kv_resource));
	}
	return l;
}

/* What /ready shows of a class's Kubernetes objects and VMs. */
static void
kube_detail(const struct actuator *a, const struct act_class *ac, json_t *o)
{
	const struct class_kube *k = &ac->ac_kube;
	json_t *vms, *denied;
	int s;

	json_object_set_new(
	    o, "secret", json_string(obj_state_name(k->ck_secret.os_state)));
	json_object_set_new(
	    o, "pool_state", json_string(obj_state_name(k->ck_pool.os_state)));
	if (k->ck_have_replicas)
		json_object_set_new(
		    o, "pool_replicas", json_integer(k->ck_replicas));
	json_object_set_new(
	    o, "pool_ready_replicas", json_integer(k->ck_ready_replicas));
	vms = json_object();
	for (s = 0; s < VMS_COUNT; s++)
		json_object_set_new(vms, vm_state_name((enum vm_state)s),
		    json_integer(ac->ac_vms.cv_count[s]));
	json_object_set_new(o, "vms", vms);
	if (ac->ac_vms.cv_boot.bg_loop)
		json_object_set_new(o, "boot_loop", json_true());
	denied = denied_list(a, ac);
	if (json_array_size(denied) > 0)
		json_object_set_new(o, "denied", denied);
	else
		json_decref(denied);
	if (k->ck_error[0] != '\0')
		json_object_set_new(o, "last_error", json_string(k->ck_error));
}

static json_t *
class_detail(
    const struct actuator *a, const struct act_class *ac, uint64_t now)
{
	const struct class_demand *d = &ac->ac_demand;
	json_t *o = json_object(), *dem;

	json_object_set_new(o, "pool", json_string(ac->ac_pool));
	if (ac->ac_retiring)
		json_object_set_new(
		    o, "resource_class", json_string(ac->ac_name));
	if (d->cd_have_target)
		json_object_set_new(
		    o, "target_replicas", json_integer(d->cd_target));
	if (d->cd_holding)
		json_object_set_new(o, "holding",
		    json_string(decision_reason_name(d->cd_hold_reason)));
	if (d->cd_have) {
		dem = json_object();
		json_object_set_new(dem, "ok", json_boolean(d->cd_ok));
		json_object_set_new(dem, "age_ms",
		    json_integer((json_int_t)(now - d->cd_rx_ms)));
		if (d->cd_ok) {
			json_object_set_new(dem, "unclaimed_tasks",
			    json_integer(d->cd_unclaimed));
			json_object_set_new(
			    dem, "running_tasks", json_integer(d->cd_running));
		} else
			json_object_set_new(dem, "error",
			    json_string(demand_error_name(
			        (enum demand_error)d->cd_error)));
		json_object_set_new(o, "demand", dem);
	}
	if (!a->a_flags->f_dry_run)
		kube_detail(a, ac, o);
	json_object_set_new(
	    o, "synced", json_boolean(act_class_ready(a, ac, now)));
	if (ac->ac_kube.ck_synced_ms != 0)
		json_object_set_new(o, "last_sync_ms_ago",
		    json_integer(
		        (json_int_t)(now - ac->ac_kube.ck_synced_ms)));
	return o;
}

/* With --leader-elect: who leads, and whether this replica does. */
static json_t *
lease_detail(const struct actuator *a, uint64_t now)
{
	const struct lease *l = &a->a_lease;
	json_t *o;

	o = json_pack("{s:s,s:s,s:s}", "lease", a->a_flags->f_lease_name,
	    "identity", a->a_identity, "role",
	    a->a_may_write ? "leader" : "standby");
	if (l->l_obj != NULL)
		json_object_set_new(
		    o, "holder", json_string(l->l_rec.lr_holder));
	if (l->l_read_ms != 0)
		json_object_set_new(o, "last_read_ms_ago",
		    json_integer((json_int_t)(now - l->l_read_ms)));
	if (l->l_denied)
		json_object_set_new(o, "denied", json_true());
	return o;
}

/* A standby writes nothing, so its pools never "sync": it is healthy
 * while it can read the Lease and the lists, ready to take over. */
static enum health_state
standby_state(const struct actuator *a, uint64_t now)
{
	uint64_t lists = a->a_lists[LIST_POOLS].al_ok_ms;
	uint64_t read = a->a_lease.l_read_ms;

	if (read != 0 && now - read <= LEASE_DURATION_MS && lists != 0 &&
	    now - lists <= LIST_STALE_MS && !a->a_lease.l_denied)
		return HEALTH_OK;
	return act_starting(a, now) ? HEALTH_STARTING : HEALTH_FAILING;
}

void
report_health(void *arg, struct msg_health *h, struct buf *metrics_text)
{
	struct actuator *a = arg;
	const struct act_class *ac;
	uint64_t now = now_ms();
	size_t i, ready = 0, tried = 0, configured = 0;
	json_t *classes = json_object(), *retiring = json_object();

	for (i = 0; i < a->a_nclasses; i++) {
		ac = a->a_classes[i];
		if (ac->ac_retiring) {
			json_object_set_new(
			    retiring, ac->ac_pool, class_detail(a, ac, now));
			continue;
		}
		configured++;
		json_object_set_new(
		    classes, ac->ac_name, class_detail(a, ac, now));
		if (act_class_ready(a, ac, now))
			ready++;
		if (ac->ac_kube.ck_synced_ms != 0 || ac->ac_demand.cd_have)
			tried++;
	}
	if (a->a_flags->f_leader_elect && !a->a_may_write)
		h->hl_state = standby_state(a, now);
	else if (ready == configured)
		h->hl_state = HEALTH_OK;
	else if (ready > 0)
		h->hl_state = HEALTH_DEGRADED;
	else if (tried > 0 || !act_starting(a, now))
		h->hl_state = HEALTH_FAILING;
	else
		h->hl_state = HEALTH_STARTING;
	h->hl_uptime_ms = now - a->a_role->r_start_ms;
	h->hl_detail = json_pack(
	    "{s:b,s:o}", "dry_run", a->a_flags->f_dry_run, "classes", classes);
	if (json_object_size(retiring) > 0)
		json_object_set_new(h->hl_detail, "retiring", retiring);
	else
		json_decref(retiring);
	if (a->a_flags->f_leader_elect)
		json_object_set_new(
		    h->hl_detail, "leader_election", lease_detail(a, now));
	if (a->a_kube != NULL) {
		json_object_set_new(h->hl_detail, "namespace",
		    json_string(kube_namespace(a->a_kube)));
		json_object_set_new(h->hl_detail, "kubernetes_reachable",
		    json_boolean(!kube_unreachable(a->a_kube)));
	}
	metrics_render(a->a_metrics, metrics_text);
}
