/*
 * Encode, then decode (proto/msg.c), for values built from the input: up
 * to eight messages of any kind appended to one buffer, as a sender would
 * queue them.  Each message's header length frames it; a value within the
 * rules of msg.h (checked here independently of the decoder) decodes to
 * itself, and a value outside them is refused.
 */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "metrics.h"
#include "msg.h"

struct sent {
	enum msg_kind s_kind;
	size_t s_at;
	bool s_valid;
	uint32_t s_seq;
	struct msg_demand s_demand;
	struct msg_health_query s_query;
	struct msg_health s_health;
};

static bool
name_char(unsigned char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') ||
	    (!first &&
	        (c == '.' || c == '_' || c == ':' || c == '+' || c == '-'));
}

/* "namespace/name", 1 to 253 bytes, as the chart's schema has it. */
static bool
class_ok(const char *s)
{
	const char *slash = strchr(s, '/'), *p;
	size_t len = strlen(s);

	if (len == 0 || len > MSG_CLASS_MAX || slash == NULL ||
	    strchr(slash + 1, '/') != NULL)
		return false;
	for (p = s; *p != '\0'; p++) {
		if (p == slash)
			continue;
		if (!name_char((unsigned char)*p, p == s || p == slash + 1))
			return false;
	}
	return slash != s && slash[1] != '\0';
}

static void
make_demand(struct fuzz_in *in, struct sent *s)
{
	struct msg_demand *d = &s->s_demand;
	char *name;
	uint8_t sel = fuzz_u8(in);

	memset(d, 0, sizeof(*d));
	d->d_cycle = fuzz_u64(in);
	d->d_observed_ms = fuzz_u64(in);
	d->d_error = fuzz_u8(in) % 8;
	d->d_ok = d->d_error == DEMAND_ERR_NONE;
	if (sel & 1)
		d->d_ok = !d->d_ok;
	d->d_http_status = (sel & 2) ? fuzz_u16(in) : 200;
	if (d->d_ok || (sel & 4)) {
		d->d_unclaimed = (sel & 8) ? fuzz_u32(in) : fuzz_u16(in);
		d->d_running = (sel & 16) ? fuzz_u32(in) : fuzz_u16(in);
	}
	name = fuzz_str(in, 255);
	if (strlen(name) > MSG_CLASS_MAX)
		name[MSG_CLASS_MAX] = '\0';
	memcpy(d->d_class, name, strlen(name) + 1);
	free(name);
	s->s_valid = d->d_error <= DEMAND_ERR_LAST &&
	    d->d_ok == (d->d_error == DEMAND_ERR_NONE) &&
	    (d->d_http_status == 0 ||
	        (d->d_http_status >= 100 && d->d_http_status <= 599)) &&
	    d->d_unclaimed <= MSG_COUNT_MAX && d->d_running <= MSG_COUNT_MAX &&
	    (d->d_ok || (d->d_unclaimed == 0 && d->d_running == 0)) &&
	    class_ok(d->d_class);
}

static void
make_health(struct fuzz_in *in, struct sent *s)
{
	struct msg_health *h = &s->s_health;
	const uint8_t *p;
	json_t *v;
	size_t n;

	memset(h, 0, sizeof(*h));
	h->hl_role = fuzz_u8(in) % 4;
	h->hl_state = fuzz_u8(in) % 6;
	h->hl_uptime_ms = fuzz_u64(in);
	/* The detail: an object read from JSON text in the input. */
	p = fuzz_bytes(in, 255, &n);
	v = json_loadb((const char *)p, n, JSON_DECODE_ANY, NULL);
	if (json_is_object(v))
		h->hl_detail = v;
	else {
		h->hl_detail = json_object();
		if (v != NULL)
			json_object_set_new(h->hl_detail, "v", v);
	}
	/* The metrics: text from the input. */
	p = fuzz_bytes(in, 255, &n);
	h->hl_metrics = fuzz_strndup(p, n);
	h->hl_metrics_len = n;
	s->s_valid =
	    (h->hl_role == ROLE_POLLER || h->hl_role == ROLE_ACTUATOR) &&
	    h->hl_state <= HEALTH_STATE_LAST &&
	    metrics_text_valid(h->hl_metrics, h->hl_metrics_len) == 0;
}

static void
check(const struct sent *s, const uint8_t *m, size_t len)
{
	struct msg_demand d;
	struct msg_health_query q;
	struct msg_health h;
	struct msg_hdr hdr;
	enum msg_err e;

	switch (s->s_kind) {
	case MSG_DEMAND:
		e = msg_demand_decode(m, len, &hdr, &d);
		FUZZ_CHECK((e == MSG_OK) == s->s_valid,
		    "demand for \"%s\" (ok %d error %u status %u counts %u "
		    "%u): %s",
		    s->s_demand.d_class, s->s_demand.d_ok, s->s_demand.d_error,
		    s->s_demand.d_http_status, s->s_demand.d_unclaimed,
		    s->s_demand.d_running, msg_err_name(e));
		if (e == MSG_OK)
			FUZZ_CHECK(d.d_cycle == s->s_demand.d_cycle &&
			        d.d_observed_ms == s->s_demand.d_observed_ms &&
			        d.d_ok == s->s_demand.d_ok &&
			        d.d_error == s->s_demand.d_error &&
			        d.d_http_status == s->s_demand.d_http_status &&
			        d.d_unclaimed == s->s_demand.d_unclaimed &&
			        d.d_running == s->s_demand.d_running &&
			        strcmp(d.d_class, s->s_demand.d_class) == 0,
			    "demand decodes to other values");
		break;
	case MSG_HEALTH_QUERY:
		e = msg_health_query_decode(m, len, &hdr, &q);
		FUZZ_CHECK(e == MSG_OK && q.q_sent_ms == s->s_query.q_sent_ms,
		    "query: %s", msg_err_name(e));
		break;
	default:
		e = msg_health_decode(m, len, &hdr, &h);
		FUZZ_CHECK((e == MSG_OK) == s->s_valid,
		    "health (role %u state %u, metrics %zu bytes): %s",
		    s->s_health.hl_role, s->s_health.hl_state,
		    s->s_health.hl_metrics_len, msg_err_name(e));
		if (e == MSG_OK) {
			FUZZ_CHECK(h.hl_role == s->s_health.hl_role &&
			        h.hl_state == s->s_health.hl_state &&
			        h.hl_uptime_ms == s->s_health.hl_uptime_ms &&
			        json_equal(
			            h.hl_detail, s->s_health.hl_detail) &&
			        h.hl_metrics_len ==
			            s->s_health.hl_metrics_len &&
			        memcmp(h.hl_metrics, s->s_health.hl_metrics,
			            h.hl_metrics_len) == 0,
			    "health decodes to other values");
			msg_health_clear(&h);
		}
		break;
	}
	FUZZ_CHECK(
	    e != MSG_OK || hdr.h_seq == s->s_seq, "sequence number changed");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct sent sent[8];
	struct buf out = { 0 };
	struct msg_hdr hdr;
	size_t i, n = 0, at, len;
	uint8_t sel;

	while (n < 8 && in.fi_n > 0) {
		struct sent *s = &sent[n++];

		sel = fuzz_u8(&in);
		s->s_kind = (enum msg_kind)(sel % 3 + 1);
		s->s_seq = fuzz_u32(&in);
		s->s_at = out.b_len;
		switch (s->s_kind) {
		case MSG_DEMAND:
			make_demand(&in, s);
			msg_demand_encode(&s->s_demand, s->s_seq, &out);
			break;
		case MSG_HEALTH_QUERY:
			s->s_query.q_sent_ms = fuzz_u64(&in);
			s->s_valid = true;
			msg_health_query_encode(&s->s_query, s->s_seq, &out);
			break;
		default:
			make_health(&in, s);
			msg_health_encode(&s->s_health, s->s_seq, &out);
			break;
		}
	}
	for (i = 0; i < n; i++) {
		at = sent[i].s_at;
		len = (i + 1 < n ? sent[i + 1].s_at : out.b_len) - at;
		FUZZ_CHECK(msg_hdr_decode((const uint8_t *)out.b_data + at,
		               len, &hdr) == MSG_OK &&
		        hdr.h_len == len && hdr.h_kind == sent[i].s_kind,
		    "message %zu: header does not frame it", i);
		check(&sent[i], (const uint8_t *)out.b_data + at, len);
	}
	for (i = 0; i < n; i++)
		if (sent[i].s_kind == MSG_HEALTH)
			msg_health_clear(&sent[i].s_health);
	buf_free(&out);
	return 0;
}
