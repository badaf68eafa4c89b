/* The children's side of configuration delivery (MSG_CONFIG in msg.h). */
#ifndef RP_CONFMSG_H
#define RP_CONFMSG_H

#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "msg.h"

/* Applies a configuration the supervisor sent: 0, or -1 with why in err
 * (the running configuration then stays).  The texts are borrowed. */
typedef int (*confmsg_apply_fn)(
    void *arg, const struct msg_config *, char *err, size_t errlen);

struct confmsg_state {
	uint64_t cs_generation; /* last applied; 0: the start-up one */
	uint32_t cs_seq;        /* of the acks sent */
	uint64_t cs_dropped;    /* malformed or not for this child */
};

/* confmsg.c */
/* Receives every configuration waiting on s: a newer one is applied with
 * fn, and each is answered (applied or refused, and why).  Messages are
 * wiped once read: they may carry tokens.  Returns how many were
 * applied. */
int confmsg_receive(nng_socket s, enum health_role, struct confmsg_state *,
    confmsg_apply_fn, void *arg);

#endif
