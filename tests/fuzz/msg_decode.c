/*
 * Every proto decoder (proto/msg.c) on any bytes, as a receiver meets them
 * on its nng socket.  Each decoder returns a known verdict; what it accepts
 * is within the ranges msg.h documents, and encoding the decoded value
 * gives the same bytes back (the health answer's JSON detail may be
 * written differently, so it must decode to the same values instead).
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conf.h"
#include "fuzz.h"
#include "metrics.h"
#include "msg.h"
#include "token.h"

#define PID_AT 12 /* the encoder writes its own pid there */

/* The same bytes except the sender's pid. */
static bool
same_but_pid(const uint8_t *a, size_t alen, const struct buf *b)
{
	return alen == b->b_len && memcmp(a, b->b_data, PID_AT) == 0 &&
	    memcmp(a + PID_AT + 4, b->b_data + PID_AT + 4,
	        alen - PID_AT - 4) == 0;
}

static void
check_demand(const uint8_t *data, size_t size)
{
	struct msg_demand d;
	struct msg_hdr h;
	struct buf out = { 0 };
	enum msg_err e;

	memset(&d, 0x5a, sizeof(d));
	e = msg_demand_decode(data, size, &h, &d);
	FUZZ_CHECK((unsigned)e < MSG_NERR, "demand: verdict %d", e);
	if (e != MSG_OK)
		return;
	FUZZ_CHECK(h.h_kind == MSG_DEMAND && h.h_len == size && h.h_pid != 0,
	    "demand: header kind %u len %u pid %u", h.h_kind, h.h_len,
	    h.h_pid);
	FUZZ_CHECK(memchr(d.d_class, '\0', sizeof(d.d_class)) != NULL &&
	        conf_class_name_valid(d.d_class) == 0,
	    "demand: class name not valid");
	FUZZ_CHECK(d.d_error <= DEMAND_ERR_LAST &&
	        d.d_ok == (d.d_error == DEMAND_ERR_NONE),
	    "demand: ok %d with error %u", d.d_ok, d.d_error);
	FUZZ_CHECK(d.d_http_status == 0 ||
	        (d.d_http_status >= 100 && d.d_http_status <= 599),
	    "demand: HTTP status %u", d.d_http_status);
	FUZZ_CHECK(d.d_unclaimed <= MSG_COUNT_MAX &&
	        d.d_running <= MSG_COUNT_MAX &&
	        (d.d_ok || (d.d_unclaimed == 0 && d.d_running == 0)),
	    "demand: counts %u %u", d.d_unclaimed, d.d_running);
	msg_demand_encode(&d, h.h_seq, &out);
	FUZZ_CHECK(same_but_pid(data, size, &out),
	    "demand: decoded value encodes differently");
	buf_free(&out);
}

static void
check_query(const uint8_t *data, size_t size)
{
	struct msg_health_query q;
	struct msg_hdr h;
	struct buf out = { 0 };
	enum msg_err e;

	e = msg_health_query_decode(data, size, &h, &q);
	FUZZ_CHECK((unsigned)e < MSG_NERR, "query: verdict %d", e);
	if (e != MSG_OK)
		return;
	FUZZ_CHECK(h.h_kind == MSG_HEALTH_QUERY && h.h_len == size,
	    "query: header kind %u len %u", h.h_kind, h.h_len);
	msg_health_query_encode(&q, h.h_seq, &out);
	FUZZ_CHECK(same_but_pid(data, size, &out),
	    "query: decoded value encodes differently");
	buf_free(&out);
}

static void
check_health(const uint8_t *data, size_t size)
{
	struct msg_health hl, again;
	struct msg_hdr h, h2;
	struct buf out = { 0 };
	enum msg_err e;

	e = msg_health_decode(data, size, &h, &hl);
	FUZZ_CHECK((unsigned)e < MSG_NERR, "health: verdict %d", e);
	if (e != MSG_OK) {
		FUZZ_CHECK(hl.hl_detail == NULL && hl.hl_metrics == NULL,
		    "health: rejected, yet something to free");
		return;
	}
	FUZZ_CHECK(h.h_kind == MSG_HEALTH && h.h_len == size,
	    "health: header kind %u len %u", h.h_kind, h.h_len);
	FUZZ_CHECK(
	    (hl.hl_role == ROLE_POLLER || hl.hl_role == ROLE_ACTUATOR) &&
	        hl.hl_state <= HEALTH_STATE_LAST,
	    "health: role %u state %u", hl.hl_role, hl.hl_state);
	FUZZ_CHECK(
	    json_is_object(hl.hl_detail), "health: detail not an object");
	FUZZ_CHECK(hl.hl_metrics != NULL &&
	        hl.hl_metrics[hl.hl_metrics_len] == '\0' &&
	        metrics_text_valid(hl.hl_metrics, hl.hl_metrics_len) == 0,
	    "health: metrics text not valid");
	msg_health_encode(&hl, h.h_seq, &out);
	e = msg_health_decode(out.b_data, out.b_len, &h2, &again);
	FUZZ_CHECK(e == MSG_OK, "health: re-encoded answer rejected: %s",
	    msg_err_name(e));
	FUZZ_CHECK(again.hl_role == hl.hl_role &&
	        again.hl_state == hl.hl_state &&
	        again.hl_uptime_ms == hl.hl_uptime_ms &&
	        json_equal(again.hl_detail, hl.hl_detail) &&
	        again.hl_metrics_len == hl.hl_metrics_len &&
	        memcmp(again.hl_metrics, hl.hl_metrics, hl.hl_metrics_len) ==
	            0,
	    "health: re-encoded answer decodes differently");
	FUZZ_CHECK(h2.h_seq == h.h_seq, "health: sequence number changed");
	msg_health_clear(&again);
	msg_health_clear(&hl);
	buf_free(&out);
}

static void
check_config(const uint8_t *data, size_t size)
{
	struct msg_config c;
	struct msg_hdr h;
	struct buf out = { 0 };
	enum msg_err e;
	size_t i;

	e = msg_config_decode(data, size, &h, &c);
	FUZZ_CHECK((unsigned)e < MSG_NERR, "config: verdict %d", e);
	if (e != MSG_OK)
		return;
	FUZZ_CHECK(h.h_kind == MSG_CONFIG && h.h_len == size,
	    "config: header kind %u len %u", h.h_kind, h.h_len);
	FUZZ_CHECK(c.c_generation != 0 &&
	        (c.c_role == ROLE_POLLER || c.c_role == ROLE_ACTUATOR) &&
	        c.c_ndocs >= 1 && c.c_ndocs <= MSG_DOCS_MAX &&
	        c.c_docs[0].cd_kind == CONFIG_DOC_CONFIG,
	    "config: generation %llu role %u with %zu documents",
	    (unsigned long long)c.c_generation, c.c_role, c.c_ndocs);
	for (i = 0; i < c.c_ndocs; i++) {
		const struct msg_config_doc *d = &c.c_docs[i];

		FUZZ_CHECK(i == 0 || d->cd_kind > c.c_docs[i - 1].cd_kind,
		    "config: documents out of order");
		/* Runner tokens and user data never reach the poller, the
		 * CircleCI token never the actuator. */
		FUZZ_CHECK(c.c_role == ROLE_POLLER
		        ? d->cd_kind != CONFIG_DOC_SECRETS
		        : d->cd_kind != CONFIG_DOC_TOKEN,
		    "config: document %u for role %u", d->cd_kind, c.c_role);
		FUZZ_CHECK(
		    memchr(d->cd_name, '\0', sizeof(d->cd_name)) != NULL &&
		        d->cd_name[0] != '\0',
		    "config: document name");
		FUZZ_CHECK(d->cd_text >= (const char *)data &&
		        d->cd_text + d->cd_len <= (const char *)data + size &&
		        (d->cd_kind == CONFIG_DOC_TOKEN
		                ? d->cd_len >= 1 && d->cd_len <= TOKEN_MAX
		                : d->cd_len <= CONF_FILE_MAX),
		    "config: document text of %zu bytes", d->cd_len);
	}
	msg_config_encode(&c, h.h_seq, &out);
	FUZZ_CHECK(same_but_pid(data, size, &out),
	    "config: decoded value encodes differently");
	buf_free(&out);
}

static void
check_config_ack(const uint8_t *data, size_t size)
{
	struct msg_config_ack ca;
	struct msg_hdr h;
	struct buf out = { 0 };
	enum msg_err e;

	e = msg_config_ack_decode(data, size, &h, &ca);
	FUZZ_CHECK((unsigned)e < MSG_NERR, "ack: verdict %d", e);
	if (e != MSG_OK)
		return;
	FUZZ_CHECK(h.h_kind == MSG_CONFIG_ACK && h.h_len == size,
	    "ack: header kind %u len %u", h.h_kind, h.h_len);
	FUZZ_CHECK(ca.ca_generation != 0 &&
	        (ca.ca_role == ROLE_POLLER || ca.ca_role == ROLE_ACTUATOR) &&
	        ca.ca_applied == (ca.ca_error[0] == '\0'),
	    "ack: generation %llu role %u applied %d",
	    (unsigned long long)ca.ca_generation, ca.ca_role, ca.ca_applied);
	msg_config_ack_encode(&ca, h.h_seq, &out);
	FUZZ_CHECK(same_but_pid(data, size, &out),
	    "ack: decoded value encodes differently");
	buf_free(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_hdr h;
	enum msg_err e;

	e = msg_hdr_decode(data, size, &h);
	FUZZ_CHECK((unsigned)e < MSG_NERR && msg_err_name(e) != NULL,
	    "header: verdict %d", e);
	if (e == MSG_OK)
		FUZZ_CHECK(h.h_len == size && size >= MSG_HDR_LEN &&
		        size <= MSG_MAX && h.h_pid != 0 &&
		        h.h_version == MSG_VERSION,
		    "header accepted with len %u version %u pid %u", h.h_len,
		    h.h_version, h.h_pid);
	check_demand(data, size);
	check_query(data, size);
	check_health(data, size);
	check_config(data, size);
	check_config_ack(data, size);
	return 0;
}
