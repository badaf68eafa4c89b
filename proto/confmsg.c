#include <string.h>

#include "confmsg.h"
#include "ipc.h"
#include "log.h"
#include "util.h"

static void
answer(nng_socket s, enum health_role role, struct confmsg_state *st,
    uint64_t generation, const char *err)
{
	struct msg_config_ack ack;
	struct buf b = { 0 };

	memset(&ack, 0, sizeof(ack));
	ack.ca_generation = generation;
	ack.ca_role = (uint8_t)role;
	ack.ca_applied = err == NULL;
	if (err != NULL)
		utf8_copy(ack.ca_error, err[0] != '\0' ? err : "refused",
		    sizeof(ack.ca_error));
	msg_config_ack_encode(&ack, ++st->cs_seq, &b);
	ipc_send(s, b.b_data, b.b_len);
	buf_free(&b);
}

int
confmsg_receive(nng_socket s, enum health_role role, struct confmsg_state *st,
    confmsg_apply_fn apply, void *arg)
{
	struct msg_config c;
	struct msg_hdr h;
	char err[MSG_ACK_ERR_MAX];
	enum msg_err e;
	nng_msg *m;
	int n = 0;

	while (ipc_recv(s, &m) == 1) {
		e = msg_config_decode(nng_msg_body(m), nng_msg_len(m), &h, &c);
		if (e == MSG_OK && c.c_role != role)
			e = MSG_EKIND;
		if (e != MSG_OK) {
			st->cs_dropped++;
			log_warnx("dropped a malformed configuration message "
			          "(%s)",
			    msg_err_name(e));
		} else if (c.c_generation <= st->cs_generation) {
			/* Its answer was lost: the supervisor asks again. */
			answer(s, role, st, c.c_generation, NULL);
		} else {
			err[0] = '\0';
			if (apply(arg, &c, err, sizeof(err)) == 0) {
				st->cs_generation = c.c_generation;
				answer(s, role, st, c.c_generation, NULL);
				n++;
			} else {
				log_error("refused configuration generation "
				          "%llu: %s",
				    (unsigned long long)c.c_generation, err);
				answer(s, role, st, c.c_generation, err);
			}
		}
		if (nng_msg_len(m) > 0)
			explicit_bzero(nng_msg_body(m), nng_msg_len(m));
		nng_msg_free(m);
	}
	return n;
}
