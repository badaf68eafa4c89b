/*
 * The actuator with a real Kubernetes client against the scripted HTTPS
 * server (fake_apiserver.h), and its loop turned by hand: for the tests of
 * what is sent (exec_test.c, event_test.c).  Header-only.
 */
#ifndef RP_KUBE_FIXTURE_H
#define RP_KUBE_FIXTURE_H

#include "act_fixture.h"
#include "fake_apiserver.h"

#define SECRETS "/api/v1/namespaces/runners/secrets"
#define POOLS                                                                 \
	"/apis/pool.kubevirt.io/v1beta1/namespaces/runners/"                  \
	"virtualmachinepools"
#define VMS    "/apis/kubevirt.io/v1/namespaces/runners/virtualmachines"
#define SCALE  POOLS "/" FX_POOL "/scale"
#define EVENTS "/apis/events.k8s.io/v1/namespaces/runners/events"

struct kfx {
	struct fas k_fas;
	struct fx *k_fx;
	struct actuator *k_a;
	unsigned long k_turns;
	size_t k_want; /* scale requests to wait for */
};

static inline struct kfx *
kfx_new(const char *const *argv)
{
	struct kfx *k = xcalloc(1, sizeof(*k));
	const char *args[8] = { "--kubeconfig" };
	char err[512];
	size_t i;

	if (fas_start(&k->k_fas) == -1)
		fail_msg("cannot start the fake API server");
	args[1] = k->k_fas.f_kubeconfig;
	for (i = 0; argv != NULL && argv[i] != NULL && i < 5; i++)
		args[2 + i] = argv[i];
	k->k_fx = fx_new_with(FX_CONFIG, args);
	k->k_a = &k->k_fx->f_a;
	if (kube_creds_load(
	        k->k_a->a_flags, &k->k_a->a_creds, err, sizeof(err)) == -1)
		fail_msg("credentials: %s", err);
	k->k_a->a_multi = curl_multi_init();
	k->k_a->a_kube =
	    kube_new(&k->k_a->a_creds, k->k_a->a_multi, k->k_a->a_metrics);
	k->k_a->a_next_tick_ms = now_ms() + 1000;
	return k;
}

static inline void
kfx_free(struct kfx *k)
{
	kube_free(k->k_a->a_kube);
	curl_multi_cleanup(k->k_a->a_multi);
	kube_creds_free(&k->k_a->a_creds);
	fx_free(k->k_fx);
	fas_stop(&k->k_fas);
	free(k);
}

/* One turn of the actuator's loop, as act_run does it (without nng). */
static inline void
turn(struct kfx *k)
{
	struct actuator *a = k->k_a;
	int running, numfds;
	uint64_t deadline;

	act_turn(a, now_ms());
	curl_multi_perform(a->a_multi, &running);
	kube_collect(a->a_kube);
	deadline = act_next_deadline(a);
	if (deadline > now_ms() + 50)
		deadline = now_ms() + 50; /* let the test look regularly */
	curl_multi_poll(
	    a->a_multi, NULL, 0, ms_until(deadline, now_ms()), &numfds);
	curl_multi_perform(a->a_multi, &running);
	kube_collect(a->a_kube);
	k->k_turns++;
}

static inline void
run_until(struct kfx *k, bool (*cond)(struct kfx *), const char *what)
{
	uint64_t end = now_ms() + 15000;

	while (!cond(k)) {
		if (now_ms() > end) {
			fx_dump(k->k_fx);
			fail_msg("timed out waiting for %s", what);
		}
		turn(k);
	}
}

#endif
