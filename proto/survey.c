#include <stdbool.h>
#include <string.h>

#include "ipc.h"
#include "log.h"
#include "survey.h"

/* An answer nobody could receive would read as silence, and the
 * supervisor would kill a healthy child for it: say what happened instead,
 * without the detail and the metrics. */
static void
too_large(struct msg_health *h, struct buf *out, uint32_t *seq)
{
	static bool logged;
	size_t len = out->b_len;

	if (!logged)
		log_error(
		    "the health answer (%zu bytes) is larger than the IPC "
		    "limit (%d bytes): sending it without detail and "
		    "metrics",
		    len, MSG_MAX);
	logged = true;
	h->hl_state = HEALTH_FAILING;
	h->hl_detail = json_pack("{s:s,s:I,s:I}", "error",
	    "health answer larger than the IPC limit", "bytes",
	    (json_int_t)len, "limit", (json_int_t)MSG_MAX);
	h->hl_metrics = "";
	h->hl_metrics_len = 0;
	buf_reset(out);
	msg_health_encode(h, *seq, out);
	json_decref(h->hl_detail);
	h->hl_detail = NULL;
}

int
survey_answer(nng_socket s, enum health_role role, uint32_t *seq,
    survey_fill_fn fill, void *arg)
{
	struct msg_health_query q;
	struct buf metrics = { 0 }, out = { 0 };
	struct msg_health h;
	struct msg_hdr hdr;
	enum msg_err e;
	bool asked = false, sent;
	nng_msg *m;

	/* Queries that queued while the process was busy: the respondent
	 * answers the latest one, and one answer does for all (with many
	 * classes, making one is work). */
	while (ipc_recv(s, &m) == 1) {
		e = msg_health_query_decode(
		    nng_msg_body(m), nng_msg_len(m), &hdr, &q);
		nng_msg_free(m);
		if (e != MSG_OK) {
			log_warnx("dropped a malformed health query (%s)",
			    msg_err_name(e));
			continue;
		}
		asked = true;
	}
	if (!asked)
		return 0;
	memset(&h, 0, sizeof(h));
	fill(arg, &h, &metrics);
	h.hl_role = (uint8_t)role;
	h.hl_metrics = metrics.b_data != NULL ? metrics.b_data : "";
	h.hl_metrics_len = metrics.b_len;
	msg_health_encode(&h, ++*seq, &out);
	json_decref(h.hl_detail);
	if (out.b_len > MSG_MAX)
		too_large(&h, &out, seq);
	sent = ipc_send(s, out.b_data, out.b_len) == 0;
	buf_free(&metrics);
	buf_free(&out);
	return sent ? 1 : 0;
}
