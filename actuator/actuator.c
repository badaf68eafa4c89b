#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actuator.h"
#include "confmsg.h"
#include "ipc.h"
#include "log.h"
#include "sig.h"
#include "survey.h"
#include "util.h"

static int
name_key_cmp(const void *key, const void *elem)
{
	const struct act_class *const *ac = elem;

	return strcmp(key, (*ac)->ac_name);
}

struct act_class *
act_class_find(struct actuator *a, const char *name)
{
	struct act_class **ac;

	if (name == NULL || a->a_nconfigured == 0)
		return NULL;
	ac = bsearch(name, a->a_by_name, a->a_nconfigured,
	    sizeof(*a->a_by_name), name_key_cmp);
	return ac != NULL ? *ac : NULL;
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

	if (pool == NULL || a->a_nclasses == 0)
		return NULL;
	ac = bsearch(pool, a->a_classes, a->a_nclasses, sizeof(*a->a_classes),
	    pool_key_cmp);
	return ac != NULL ? *ac : NULL;
}

struct act_class *
class_new(const char *name, const char *pool)
{
	struct act_class *ac = xcalloc(1, sizeof(*ac));

	ac->ac_refs = 1;
	ac->ac_name = xstrdup(name);
	strlcpy_rp(ac->ac_pool, pool, sizeof(ac->ac_pool));
	pool_objects_names(&ac->ac_obj, ac->ac_pool);
	backoff_init(&ac->ac_kube.ck_backoff, WRITE_BACKOFF_BASE_MS,
	    WRITE_BACKOFF_CAP_MS);
	backoff_init(&ac->ac_vms.cv_backoff, WRITE_BACKOFF_BASE_MS,
	    WRITE_BACKOFF_CAP_MS);
	demand_reset(&ac->ac_demand);
	ac->ac_dirty = true;
	ac->ac_wake_ms = PLAN_NEVER;
	return ac;
}

void
class_ref(struct act_class *ac)
{
	ac->ac_refs++;
}

void
class_unref(struct act_class *ac)
{
	if (ac == NULL || --ac->ac_refs > 0)
		return;
	pool_objects_free(&ac->ac_obj);
	class_observations_free(ac);
	free(ac->ac_name);
	free(ac);
}

/* Links ac into the table (it takes the caller's reference). */
static void
table_insert(struct actuator *a, struct act_class *ac)
{
	size_t lo = 0, hi = a->a_nclasses, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (strcmp(a->a_classes[mid]->ac_pool, ac->ac_pool) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	a->a_classes =
	    xrealloc(a->a_classes, a->a_nclasses + 1, sizeof(*a->a_classes));
	memmove(&a->a_classes[lo + 1], &a->a_classes[lo],
	    (a->a_nclasses - lo) * sizeof(*a->a_classes));
	a->a_classes[lo] = ac;
	a->a_nclasses++;
	ac->ac_linked = true;
	report_class_setup(a, ac);
}

static int
by_name_cmp(const void *x, const void *y)
{
	const struct act_class *const *a = x, *const *b = y;

	return strcmp((*a)->ac_name, (*b)->ac_name);
}

static void
index_names(struct actuator *a)
{
	size_t i, n = 0;

	free(a->a_by_name);
	a->a_by_name = xcalloc(a->a_nclasses + 1, sizeof(*a->a_by_name));
	for (i = 0; i < a->a_nclasses; i++)
		if (a->a_classes[i]->ac_conf != NULL)
			a->a_by_name[n++] = a->a_classes[i];
	a->a_nconfigured = n;
	qsort(a->a_by_name, n, sizeof(*a->a_by_name), by_name_cmp);
}

/* A new configuration's objects differ from the last: what Kubernetes
 * showed matched the old ones at best. */
static void
objects_changed(struct obj_seen *os, bool changed)
{
	if (!changed)
		return;
	if (os->os_state == OBJ_CURRENT)
		os->os_state = OBJ_STALE;
	else if (os->os_state == OBJ_STALE)
		os->os_state = OBJ_REREAD;
}

static void
objects_reread(struct obj_seen *os)
{
	if (os->os_state == OBJ_CURRENT || os->os_state == OBJ_STALE)
		os->os_state = OBJ_REREAD;
}

/* The log line and Event of a class that starts retiring: removed from
 * the configuration, or found so (a pool of no configured class). */
static void
retire_announce(struct actuator *a, struct act_class *ac, bool found)
{
	struct log_line ll;

	log_begin(&ll, LOG_LVL_INFO,
	    found ? "found a pool of a resource class that is not "
	            "configured: scaling it to 0; it and its Secret are "
	            "deleted once its VMs are gone"
	          : "resource class is no longer configured: scaling its "
	            "pool to 0; the pool and its Secret are deleted once its "
	            "VMs are gone");
	log_str(&ll, "resource_class", ac->ac_name);
	log_str(&ll, "pool", ac->ac_pool);
	log_end(&ll);
	event_record(a, ac, EVENT_NORMAL, "ClassRemoved", "Retire",
	    "resource class %s is %s configured: scaling the pool to 0; it "
	    "and its Secret are deleted once its VMs are gone",
	    ac->ac_name, found ? "not" : "no longer");
}

static void
retire(struct actuator *a, struct act_class *ac)
{
	ac->ac_conf = NULL;
	ac->ac_retiring = true;
	ac->ac_dirty = true;
	/* Nothing to build any more: keep the names. */
	pool_objects_free(&ac->ac_obj);
	pool_objects_names(&ac->ac_obj, ac->ac_pool);
	demand_reset(&ac->ac_demand);
	retire_announce(a, ac, false);
}

/* Builds every class's objects first, so a configuration that cannot be
 * used changes nothing. */
static int
apply(struct actuator *a, const struct conf *conf, char *err, size_t errlen)
{
	struct pool_objects *po;
	struct act_class *ac, **was;
	const struct conf_class *cc;
	char pool[POOL_NAME_MAX + 1];
	size_t i, nwas;
	bool *kept;

	if (pool_names_unique(conf, err, errlen) == -1)
		return -1;
	po = xcalloc(conf->c_nclasses + 1, sizeof(*po));
	for (i = 0; i < conf->c_nclasses; i++) {
		cc = &conf->c_classes[i];
		pool_name(cc->cc_name, pool, sizeof(pool));
		if (a->a_flags->f_dry_run) {
			pool_objects_names(&po[i], pool);
			continue;
		}
		if (pool_objects_build(
		        &po[i], cc, pool, a->a_flags->f_api_addr) == -1) {
			pool_objects_free(&po[i]);
			snprintf(err, errlen,
			    "resource class %s: its cloud-init cannot be "
			    "built",
			    cc->cc_name);
			while (i-- > 0)
				pool_objects_free(&po[i]);
			free(po);
			return -1;
		}
	}
	for (i = 0; i < conf->c_nclasses; i++)
		strlcpy_rp(po[i].po_instance, a->a_flags->f_lease_name,
		    sizeof(po[i].po_instance));
	/* The classes configured until now: those not named again retire. */
	nwas = a->a_nconfigured;
	was = xcalloc(nwas + 1, sizeof(*was));
	if (nwas > 0)
		memcpy(was, a->a_by_name, nwas * sizeof(*was));
	kept = xcalloc(nwas + 1, sizeof(*kept));
	for (i = 0; i < conf->c_nclasses; i++) {
		cc = &conf->c_classes[i];
		if ((ac = act_class_by_pool(a, po[i].po_pool)) == NULL) {
			ac = class_new(cc->cc_name, po[i].po_pool);
			ac->ac_conf = cc;
			pool_objects_free(&ac->ac_obj);
			ac->ac_obj = po[i];
			table_insert(a, ac);
			/* Its objects are unknown: list now, not at the next
			 * (Secrets: 30 s) resync. */
			a->a_lists[LIST_POOLS].al_next_ms = 0;
			a->a_lists[LIST_SECRETS].al_next_ms = 0;
			continue;
		}
		if (ac->ac_retiring) {
			log_info("resource class %s is configured again: "
			         "keeping pool %s",
			    cc->cc_name, ac->ac_pool);
			ac->ac_retiring = false;
			/* Judged against no template at all: look again. */
			objects_reread(&ac->ac_kube.ck_secret);
			objects_reread(&ac->ac_kube.ck_pool);
		} else {
			objects_changed(&ac->ac_kube.ck_secret,
			    !a->a_flags->f_dry_run &&
			        strcmp(ac->ac_obj.po_userdata_b64,
			            po[i].po_userdata_b64) != 0);
			objects_changed(&ac->ac_kube.ck_pool,
			    !a->a_flags->f_dry_run &&
			        strcmp(ac->ac_obj.po_hash, po[i].po_hash) !=
			            0);
		}
		for (size_t j = 0; j < nwas; j++)
			if (was[j] == ac)
				kept[j] = true;
		free(ac->ac_name);
		ac->ac_name = xstrdup(cc->cc_name);
		ac->ac_conf = cc;
		/* Its schedules may be others now: the next decision tells
		 * which one is active. */
		ac->ac_demand.cd_decision.d_schedule = -1;
		ac->ac_done = false;
		pool_objects_free(&ac->ac_obj);
		ac->ac_obj = po[i];
		ac->ac_dirty = true;
		report_class(ac);
	}
	for (i = 0; i < nwas; i++)
		if (!kept[i])
			retire(a, was[i]);
	free(kept);
	free(was);
	free(po);
	index_names(a);
	return 0;
}

int
act_classes_setup(struct actuator *a)
{
	char err[CONF_ERR_MAX];

	report_setup(a);
	if (a->a_conf == NULL) /* --drain: only what the lists show */
		return 0;
	if (apply(a, a->a_conf, err, sizeof(err)) == -1) {
		log_error("%s", err);
		return -1;
	}
	return 0;
}

int
act_configure(struct actuator *a, struct conf *conf, char *err, size_t errlen)
{
	struct conf *old = a->a_conf;

	if (apply(a, conf, err, errlen) == -1)
		return -1;
	a->a_conf = conf;
	a->a_role->r_conf = conf;
	conf_free(old);
	return 0;
}

struct act_class *
act_class_retire_new(struct actuator *a, const char *pool, const char *name)
{
	struct act_class *ac;
	struct log_line ll;

	ac = class_new(name != NULL ? name : pool, pool);
	ac->ac_retiring = true;
	table_insert(a, ac);
	if (a->a_flags->f_drain) {
		log_begin(&ll, LOG_LVL_INFO,
		    "draining pool: scaling it to 0; it and its Secret are "
		    "deleted once its VMs are gone, at the latest at the "
		    "deadline");
		log_str(&ll, "resource_class", ac->ac_name);
		log_str(&ll, "pool", ac->ac_pool);
		log_end(&ll);
		event_record(a, ac, EVENT_NORMAL, "Draining", "Drain",
		    "Uninstalling: the pool is scaled to 0 and deleted with "
		    "its Secret once its VMs are gone; VMs still running "
		    "jobs at the deadline are left to finish them");
		return ac;
	}
	retire_announce(a, ac, true);
	return ac;
}

void
act_classes_sweep(struct actuator *a)
{
	struct act_class *ac;
	size_t i = 0;

	while (i < a->a_nclasses) {
		ac = a->a_classes[i];
		if (!ac->ac_done) {
			i++;
			continue;
		}
		memmove(&a->a_classes[i], &a->a_classes[i + 1],
		    (a->a_nclasses - i - 1) * sizeof(*a->a_classes));
		a->a_nclasses--;
		ac->ac_linked = false;
		report_class_drop(ac);
		log_info("retired resource class %s: pool %s and its Secret "
		         "are gone",
		    ac->ac_name, ac->ac_pool);
		class_unref(ac);
	}
}

void
act_classes_free(struct actuator *a)
{
	size_t i;

	for (i = 0; i < a->a_nclasses; i++) {
		a->a_classes[i]->ac_linked = false;
		class_unref(a->a_classes[i]);
	}
	free(a->a_classes);
	free(a->a_by_name);
	a->a_classes = NULL;
	a->a_by_name = NULL;
	a->a_nclasses = 0;
	a->a_nconfigured = 0;
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
		if (ac->ac_retiring) {
			log_info("would scale pool %s to 0 and delete it: "
			         "resource class %s is no longer configured",
			    ac->ac_pool, ac->ac_name);
			ac->ac_done = true;
			return;
		}
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
	in.pi_min_replicas = ac->ac_conf != NULL
	    ? ac->ac_demand.cd_decision.d_controls.sc_min
	    : 0;
	in.pi_orphan = a->a_drain_expired;
	plan_class(&in, &p);
	if (p.p_synced) {
		ac->ac_kube.ck_synced_ms = now;
		ac->ac_kube.ck_synced_wall_ms = in.pi_wall_ms;
		ac->ac_kube.ck_error[0] = '\0';
	}
	if (p.p_done)
		ac->ac_done = true;
	exec_plan(a, ac, &p, now);
	ac->ac_wake_ms = p.p_wake_ms;
	report_class(ac);
}

void
act_turn(struct actuator *a, uint64_t now)
{
	struct act_class *ac;
	size_t i;

	/* Once per poll interval every class is looked at, so staleness is
	 * noticed without messages. */
	if (now >= a->a_next_tick_ms) {
		for (i = 0; i < a->a_nclasses; i++)
			a->a_classes[i]->ac_dirty = true;
		a->a_next_tick_ms = now + a->a_flags->f_poll_interval_ms;
	}
	exec_turn(a, now);
	for (i = 0; i < a->a_nclasses; i++) {
		ac = a->a_classes[i];
		if (!ac->ac_done && (ac->ac_dirty || now >= ac->ac_wake_ms))
			step(a, ac, now);
	}
	act_classes_sweep(a);
	exec_events(a, now);
}

uint64_t
act_next_deadline(const struct actuator *a)
{
	uint64_t now = now_ms(), next = a->a_next_tick_ms, t;
	size_t i;

	for (i = 0; i < a->a_nclasses; i++) {
		if (a->a_classes[i]->ac_dirty)
			return 0;
		if (a->a_classes[i]->ac_wake_ms < next)
			next = a->a_classes[i]->ac_wake_ms;
	}
	if ((t = exec_deadline(a, now)) < next)
		next = t;
	if (a->a_stopping && a->a_stop_ms + STOP_WRITES_MS < next)
		next = a->a_stop_ms + STOP_WRITES_MS;
	if (a->a_flags->f_drain && !a->a_drain_expired &&
	    a->a_drain_deadline_ms < next)
		next = a->a_drain_deadline_ms;
	return next;
}

static int
ipc_setup(struct actuator *a)
{
	char url[IPC_URL_MAX];

	if (a->a_flags->f_drain) { /* no demand: every pool goes */
		a->a_sub_fd = -1;
		return 0;
	}
	if (ipc_url(url, sizeof(url), a->a_role->r_run_dir, IPC_DEMAND) ==
	        -1 ||
	    ipc_open(&a->a_sub, IPC_SUB_DIAL, url, &a->a_sub_fd) == -1)
		return -1;
	return 0;
}

void
act_stop(struct actuator *a, uint64_t now)
{
	if (a->a_stopping)
		return;
	a->a_stopping = true;
	a->a_stop_ms = now;
}

/* Stopping: no new writes (the gate is closed), the ones out finish,
 * then the Lease goes (a successor starts at once).  True when done. */
static bool
stop_step(struct actuator *a, uint64_t now)
{
	bool elect = a->a_flags->f_leader_elect || a->a_flags->f_drain;

	if (a->a_kube == NULL || !elect)
		return a->a_writes_inflight == 0 ||
		    now >= a->a_stop_ms + STOP_WRITES_MS;
	if (a->a_writes_inflight > 0 && now < a->a_stop_ms + STOP_WRITES_MS)
		return false;
	if (!a->a_lease.l_giving_up)
		lease_give_up(&a->a_lease);
	return lease_done(&a->a_lease) ||
	    now >= a->a_stop_ms + 2 * STOP_WRITES_MS;
}

static void
drain_report(struct actuator *a, uint64_t now, uint64_t *next)
{
	size_t i, vms = 0, running = 0;
	struct log_line ll;

	if (now < *next)
		return;
	*next = now + DRAIN_REPORT_MS;
	for (i = 0; i < a->a_nclasses; i++) {
		vms += a->a_classes[i]->ac_vms.cv_n;
		running += a->a_classes[i]->ac_vms.cv_count[VMS_RUNNING] +
		    a->a_classes[i]->ac_vms.cv_count[VMS_STARTING];
	}
	log_begin(&ll, LOG_LVL_INFO, "draining");
	log_uint(&ll, "pools_left", a->a_nclasses);
	log_uint(&ll, "vms", vms);
	log_uint(&ll, "vms_that_may_run_jobs", running);
	log_bool(&ll, "writing", a->a_may_write);
	if (now < a->a_drain_deadline_ms)
		log_uint(&ll, "deadline_in_ms", a->a_drain_deadline_ms - now);
	log_end(&ll);
}

/* --drain: done when nothing is left and lists sent since say so. */
static int
drain_step(struct actuator *a, uint64_t now)
{
	if (a->a_nclasses > 0 || a->a_lists[LIST_POOLS].al_ok_seq == 0)
		a->a_drain_empty_seq = a->a_seq;
	if (!a->a_drain_expired && now >= a->a_drain_deadline_ms) {
		a->a_drain_expired = true;
		log_warnx("drain deadline reached: deleting the remaining "
		          "pools and leaving their VMs to finish their jobs");
		for (size_t i = 0; i < a->a_nclasses; i++)
			a->a_classes[i]->ac_dirty = true;
	}
	if (a->a_nclasses == 0 &&
	    a->a_lists[LIST_POOLS].al_ok_seq > a->a_drain_empty_seq &&
	    a->a_lists[LIST_SECRETS].al_ok_seq > a->a_drain_empty_seq)
		return 1;
	if (now >= a->a_drain_deadline_ms + DRAIN_GRACE_MS)
		return -1;
	return 0;
}

/* A configuration from the supervisor: the files' texts, parsed with the
 * same loader the start-up used. */
static int
apply_msg(void *arg, const struct msg_config *c, char *err, size_t errlen)
{
	struct actuator *a = arg;
	const struct msg_config_doc *sec = NULL;
	struct conf *conf;
	size_t i;

	if (a->a_flags->f_drain)
		return 0; /* a drain runs no configuration */
	for (i = 1; i < c->c_ndocs; i++)
		if (c->c_docs[i].cd_kind == CONFIG_DOC_SECRETS)
			sec = &c->c_docs[i];
	if ((conf = conf_parse_files(c->c_docs[0].cd_name,
	         c->c_docs[0].cd_text, c->c_docs[0].cd_len,
	         sec != NULL ? sec->cd_name : NULL,
	         sec != NULL ? sec->cd_text : NULL,
	         sec != NULL ? sec->cd_len : 0, 0, err, errlen)) == NULL)
		return -1;
	conf_register_secrets(conf);
	if (act_configure(a, conf, err, errlen) == -1) {
		conf_free(conf);
		return -1;
	}
	log_info("running configuration generation %llu (%zu resource "
	         "classes)",
	    (unsigned long long)c->c_generation, a->a_conf->c_nclasses);
	return 0;
}

int
act_run(struct actuator *a)
{
	struct curl_waitfd extra[4];
	struct confmsg_state cm;
	int numfds, running, sig, rv = 0, nextra, drained = 0;
	uint64_t now, report = 0;

	a->a_metrics = metrics_new();
	if ((a->a_multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	if (!a->a_flags->f_dry_run)
		a->a_kube = kube_new(&a->a_creds, a->a_multi, a->a_metrics);
	lease_init(&a->a_lease, a->a_identity,
	    a->a_flags->f_drain ? LEASE_TAKE : LEASE_ELECT);
	demand_setup(a);
	if (act_classes_setup(a) == -1 || ipc_setup(a) == -1) {
		rv = -1;
		goto out;
	}
	a->a_next_tick_ms =
	    a->a_role->r_start_ms + a->a_flags->f_poll_interval_ms;
	act_lock(a);
	a->a_drain_deadline_ms =
	    a->a_role->r_start_ms + a->a_flags->f_drain_timeout_ms;
	memset(&cm, 0, sizeof(cm));

	for (;;) {
		now = now_ms();
		if (a->a_flags->f_drain && !a->a_stopping && drained == 0) {
			drain_report(a, now, &report);
			if ((drained = drain_step(a, now)) != 0)
				act_stop(a, now);
		}
		if (a->a_stopping && stop_step(a, now))
			break;
		act_turn(a, now);
		curl_multi_perform(a->a_multi, &running);
		if (a->a_kube != NULL)
			kube_collect(a->a_kube);
		memset(extra, 0, sizeof(extra));
		nextra = 0;
		extra[nextra++].fd = a->a_role->r_sigfd;
		extra[nextra++].fd = a->a_role->r_health_fd;
		extra[nextra++].fd = a->a_role->r_conf_fd;
		if (a->a_sub_fd >= 0)
			extra[nextra++].fd = a->a_sub_fd;
		for (int i = 0; i < nextra; i++)
			extra[i].events = CURL_WAIT_POLLIN;
		/* The one wait point: until a socket, the next list, a class's
		 * wake time or the next tick (0 when answers just arrived). */
		curl_multi_poll(a->a_multi, extra, (unsigned int)nextra,
		    ms_until(act_next_deadline(a), now_ms()), &numfds);
		now = now_ms();
		if (a->a_sub_fd >= 0 && (extra[3].revents & CURL_WAIT_POLLIN))
			demand_receive(a, now);
		if (extra[2].revents & CURL_WAIT_POLLIN)
			confmsg_receive(a->a_role->r_conf_sock, ROLE_ACTUATOR,
			    &cm, apply_msg, a);
		if (extra[1].revents & CURL_WAIT_POLLIN)
			survey_answer(a->a_role->r_health, ROLE_ACTUATOR,
			    &a->a_survey_seq, report_health, a);
		if ((extra[0].revents & CURL_WAIT_POLLIN) &&
		    (sig = sig_read(a->a_role->r_sigfd)) != 0) {
			log_info("stopping (%s)", strsignal(sig));
			act_stop(a, now);
			if (a->a_flags->f_drain && drained == 0)
				drained = -1;
		}
	}
	if (drained == 1)
		log_info("drained: no pool or Secret of this installation is "
		         "left");
	else if (drained == -1) {
		log_error("drain did not finish: pools or Secrets are left "
		          "(see the lines above for why)");
		rv = -1;
	}
out:
	/* Requests still in flight are abandoned (their callbacks get a
	 * cancelled reply); the next start lists everything again. */
	kube_free(a->a_kube);
	event_cache_free(a);
	act_classes_free(a);
	lease_free(&a->a_lease);
	curl_multi_cleanup(a->a_multi);
	if (a->a_sub_fd >= 0)
		nng_close(a->a_sub);
	metrics_free(a->a_metrics);
	return rv;
}
