/*
 * The Kubernetes API permissions the actuator uses (kube_rbac.def) and the
 * shape of an answer, without the client: code that only judges answers
 * (observe.c, plan.c, their tests) needs no libcurl.
 */
#ifndef RP_KUBEVERB_H
#define RP_KUBEVERB_H

#include <stdint.h>

#include <jansson.h>

enum kube_verb {
#define KUBE_VERB(id, group, resource, verb) KV_##id,
#include "kube_rbac.def"
#undef KUBE_VERB
	KV_COUNT
};

struct kube_verb_info {
	const char *kv_group;
	const char *kv_resource;
	const char *kv_verb;
};

/* One finished request, as its callback sees it. */
struct kube_reply {
	enum kube_verb kr_verb;
	long kr_status;             /* 0: no HTTP answer; -1: cancelled */
	json_t *kr_body;            /* a JSON object, or NULL; borrowed */
	const char *kr_error;       /* why it failed, for logs; valid UTF-8 */
	uint64_t kr_retry_after_ms; /* 429/503 Retry-After; 0: none */
};

/* kubeverb.c */
extern const struct kube_verb_info kube_verbs[KV_COUNT];

#endif
