#include "kubeverb.h"

const struct kube_verb_info kube_verbs[KV_COUNT] = {
#define KUBE_VERB(id, group, resource, verb)                                  \
	[KV_##id] = { group, resource, verb },
#include "kube_rbac.def"
#undef KUBE_VERB
};
