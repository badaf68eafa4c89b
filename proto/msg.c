#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "ipc.h"
#include "metrics.h"
#include "msg.h"
#include "token.h"
#include "util.h"

_Static_assert(MSG_MAX >= MSG_HDR_LEN + 12 +
            MSG_DOCS_MAX * (8 + MSG_DOC_NAME_MAX) + 2 * CONF_FILE_MAX +
            TOKEN_MAX,
    "a whole configuration must fit a message");
_Static_assert(IPC_MSG_MAX == MSG_MAX, "sockets must take any message");

#define DEMAND_FIXED 30 /* payload bytes before the class name */
#define QUERY_FIXED  8
#define HEALTH_FIXED 20 /* payload bytes before the texts */
#define CONFIG_FIXED 12 /* payload bytes before the documents */
#define DOC_FIXED    8  /* a document's bytes before its name */
#define ACK_FIXED    12 /* payload bytes before the error text */

static void
put_u8(struct buf *b, uint8_t v)
{
	buf_append(b, &v, 1);
}

static void
put_u16(struct buf *b, uint16_t v)
{
	uint8_t p[2] = { (uint8_t)v, (uint8_t)(v >> 8) };

	buf_append(b, p, sizeof(p));
}

static void
put_u32(struct buf *b, uint32_t v)
{
	uint8_t p[4];
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	buf_append(b, p, sizeof(p));
}

static void
put_u64(struct buf *b, uint64_t v)
{
	uint8_t p[8];
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
	buf_append(b, p, sizeof(p));
}

static uint16_t
get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* Writes a header whose length is patched by hdr_finish(). */
static size_t
hdr_start(struct buf *b, enum msg_kind kind, uint32_t seq)
{
	size_t at = b->b_len;

	buf_append(b, "RP", 2);
	put_u8(b, MSG_VERSION);
	put_u8(b, (uint8_t)kind);
	put_u32(b, 0);
	put_u32(b, seq);
	put_u32(b, (uint32_t)getpid());
	return at;
}

static void
hdr_finish(struct buf *b, size_t at)
{
	uint32_t len = (uint32_t)(b->b_len - at);
	uint8_t *p = (uint8_t *)b->b_data + at + 4;
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(len >> (8 * i));
}

void
msg_demand_encode(const struct msg_demand *d, uint32_t seq, struct buf *out)
{
	size_t at = hdr_start(out, MSG_DEMAND, seq), n = strlen(d->d_class);

	put_u64(out, d->d_cycle);
	put_u64(out, d->d_observed_ms);
	put_u8(out, d->d_ok ? 1 : 0);
	put_u8(out, d->d_error);
	put_u16(out, d->d_http_status);
	put_u32(out, d->d_unclaimed);
	put_u32(out, d->d_running);
	put_u16(out, (uint16_t)n);
	buf_append(out, d->d_class, n);
	hdr_finish(out, at);
}

void
msg_health_query_encode(
    const struct msg_health_query *q, uint32_t seq, struct buf *out)
{
	size_t at = hdr_start(out, MSG_HEALTH_QUERY, seq);

	put_u64(out, q->q_sent_ms);
	hdr_finish(out, at);
}

void
msg_health_encode(const struct msg_health *h, uint32_t seq, struct buf *out)
{
	size_t at = hdr_start(out, MSG_HEALTH, seq);
	char *detail = json_dumps(h->hl_detail, JSON_COMPACT);
	size_t dlen = detail != NULL ? strlen(detail) : 0;

	put_u8(out, h->hl_role);
	put_u8(out, h->hl_state);
	put_u16(out, 0);
	put_u64(out, h->hl_uptime_ms);
	put_u32(out, (uint32_t)dlen);
	put_u32(out, (uint32_t)h->hl_metrics_len);
	buf_append(out, detail != NULL ? detail : "", dlen);
	buf_append(out, h->hl_metrics, h->hl_metrics_len);
	free(detail);
	hdr_finish(out, at);
}

enum msg_err
msg_hdr_decode(const void *data, size_t len, struct msg_hdr *h)
{
	const uint8_t *p = data;

	if (len < MSG_HDR_LEN)
		return MSG_ESHORT;
	if (p[0] != 'R' || p[1] != 'P')
		return MSG_EMAGIC;
	h->h_version = p[2];
	h->h_kind = p[3];
	h->h_len = get_u32(p + 4);
	h->h_seq = get_u32(p + 8);
	h->h_pid = get_u32(p + 12);
	if (h->h_version != MSG_VERSION)
		return MSG_EVERSION;
	if (h->h_kind < MSG_DEMAND || h->h_kind > MSG_KIND_LAST)
		return MSG_EKIND;
	if (h->h_len != len || len > MSG_MAX)
		return MSG_ELEN;
	if (h->h_pid == 0)
		return MSG_ERANGE;
	return MSG_OK;
}

static enum msg_err
hdr_expect(const void *data, size_t len, struct msg_hdr *h, enum msg_kind kind,
    size_t fixed)
{
	enum msg_err e;

	if ((e = msg_hdr_decode(data, len, h)) != MSG_OK)
		return e;
	if (h->h_kind != kind)
		return MSG_EKIND;
	if (len < MSG_HDR_LEN + fixed)
		return MSG_ELEN;
	return MSG_OK;
}

enum msg_err
msg_demand_decode(
    const void *data, size_t len, struct msg_hdr *h, struct msg_demand *d)
{
	const uint8_t *p = (const uint8_t *)data + MSG_HDR_LEN;
	enum msg_err e;
	uint16_t n;
	uint8_t ok;

	if ((e = hdr_expect(data, len, h, MSG_DEMAND, DEMAND_FIXED)) != MSG_OK)
		return e;
	n = get_u16(p + 28);
	if (len != (size_t)MSG_HDR_LEN + DEMAND_FIXED + n)
		return MSG_ELEN;
	d->d_cycle = get_u64(p);
	d->d_observed_ms = get_u64(p + 8);
	ok = p[16];
	d->d_error = p[17];
	d->d_http_status = get_u16(p + 18);
	d->d_unclaimed = get_u32(p + 20);
	d->d_running = get_u32(p + 24);
	if (ok > 1 || d->d_error > DEMAND_ERR_LAST)
		return MSG_ERANGE;
	d->d_ok = ok == 1;
	if (d->d_ok != (d->d_error == DEMAND_ERR_NONE))
		return MSG_ERANGE;
	if (d->d_http_status != 0 &&
	    (d->d_http_status < 100 || d->d_http_status > 599))
		return MSG_ERANGE;
	if (d->d_unclaimed > MSG_COUNT_MAX || d->d_running > MSG_COUNT_MAX)
		return MSG_ERANGE;
	if (!d->d_ok && (d->d_unclaimed != 0 || d->d_running != 0))
		return MSG_ERANGE;
	if (n == 0 || n > MSG_CLASS_MAX)
		return MSG_ETEXT;
	memcpy(d->d_class, p + DEMAND_FIXED, n);
	d->d_class[n] = '\0';
	if (strlen(d->d_class) != n || conf_class_name_valid(d->d_class) != 0)
		return MSG_ETEXT;
	return MSG_OK;
}

enum msg_err
msg_health_query_decode(const void *data, size_t len, struct msg_hdr *h,
    struct msg_health_query *q)
{
	enum msg_err e;

	if ((e = hdr_expect(data, len, h, MSG_HEALTH_QUERY, QUERY_FIXED)) !=
	    MSG_OK)
		return e;
	if (len != MSG_HDR_LEN + QUERY_FIXED)
		return MSG_ELEN;
	q->q_sent_ms = get_u64((const uint8_t *)data + MSG_HDR_LEN);
	return MSG_OK;
}

enum msg_err
msg_health_decode(
    const void *data, size_t len, struct msg_hdr *h, struct msg_health *hl)
{
	const uint8_t *p = (const uint8_t *)data + MSG_HDR_LEN;
	uint32_t dlen, mlen;
	json_error_t jerr;
	enum msg_err e;

	memset(hl, 0, sizeof(*hl));
	if ((e = hdr_expect(data, len, h, MSG_HEALTH, HEALTH_FIXED)) != MSG_OK)
		return e;
	hl->hl_role = p[0];
	hl->hl_state = p[1];
	hl->hl_uptime_ms = get_u64(p + 4);
	dlen = get_u32(p + 12);
	mlen = get_u32(p + 16);
	if ((uint64_t)MSG_HDR_LEN + HEALTH_FIXED + dlen + mlen != len)
		return MSG_ELEN;
	if ((hl->hl_role != ROLE_POLLER && hl->hl_role != ROLE_ACTUATOR) ||
	    hl->hl_state > HEALTH_STATE_LAST || get_u16(p + 2) != 0)
		return MSG_ERANGE;
	p += HEALTH_FIXED;
	if (metrics_text_valid((const char *)p + dlen, mlen) != 0)
		return MSG_ETEXT;
	hl->hl_detail =
	    json_loadb((const char *)p, dlen, JSON_REJECT_DUPLICATES, &jerr);
	if (hl->hl_detail == NULL || !json_is_object(hl->hl_detail)) {
		json_decref(hl->hl_detail);
		hl->hl_detail = NULL;
		return MSG_ETEXT;
	}
	hl->hl_metrics = xstrndup((const char *)p + dlen, mlen);
	hl->hl_metrics_len = mlen;
	return MSG_OK;
}

void
msg_config_encode(const struct msg_config *c, uint32_t seq, struct buf *out)
{
	size_t at = hdr_start(out, MSG_CONFIG, seq), i, n;

	put_u64(out, c->c_generation);
	put_u8(out, c->c_role);
	put_u8(out, (uint8_t)c->c_ndocs);
	put_u16(out, 0);
	for (i = 0; i < c->c_ndocs; i++) {
		n = strlen(c->c_docs[i].cd_name);
		put_u8(out, c->c_docs[i].cd_kind);
		put_u8(out, 0);
		put_u16(out, (uint16_t)n);
		put_u32(out, (uint32_t)c->c_docs[i].cd_len);
		buf_append(out, c->c_docs[i].cd_name, n);
		buf_append(out, c->c_docs[i].cd_text, c->c_docs[i].cd_len);
	}
	hdr_finish(out, at);
}

void
msg_config_ack_encode(
    const struct msg_config_ack *ca, uint32_t seq, struct buf *out)
{
	size_t at = hdr_start(out, MSG_CONFIG_ACK, seq);
	size_t n = ca->ca_applied ? 0 : strlen(ca->ca_error);

	put_u64(out, ca->ca_generation);
	put_u8(out, ca->ca_role);
	put_u8(out, ca->ca_applied ? 1 : 2);
	put_u16(out, (uint16_t)n);
	buf_append(out, ca->ca_error, n);
	hdr_finish(out, at);
}

/* Text meant for people: UTF-8 without NUL or other controls but tab and
 * newline. */
static bool
text_valid(const uint8_t *p, size_t n, bool newlines)
{
	size_t i, k;

	for (i = 0; i < n; i += k) {
		if (p[i] < 0x80) {
			if ((p[i] < 0x20 &&
			        !(newlines &&
			            (p[i] == '\n' || p[i] == '\t' ||
			                p[i] == '\r'))) ||
			    p[i] == 0x7f)
				return false;
			k = 1;
			continue;
		}
		if ((k = utf8_seq_len(p + i, n - i)) == 0)
			return false;
	}
	return true;
}

static bool
doc_allowed(uint8_t kind, uint8_t role)
{
	switch (kind) {
	case CONFIG_DOC_CONFIG:
		return true;
	case CONFIG_DOC_SECRETS:
		return role == ROLE_ACTUATOR;
	case CONFIG_DOC_TOKEN:
		return role == ROLE_POLLER;
	}
	return false;
}

static enum msg_err
doc_decode(const uint8_t *p, size_t room, uint8_t role, uint8_t prev,
    struct msg_config_doc *d, size_t *used)
{
	uint16_t nlen;
	uint32_t tlen;
	size_t i;

	if (room < DOC_FIXED)
		return MSG_ELEN;
	d->cd_kind = p[0];
	nlen = get_u16(p + 2);
	tlen = get_u32(p + 4);
	if ((uint64_t)DOC_FIXED + nlen + tlen > room)
		return MSG_ELEN;
	if (p[1] != 0 || d->cd_kind <= prev ||
	    !doc_allowed(d->cd_kind, role) ||
	    (prev == 0 && d->cd_kind != CONFIG_DOC_CONFIG))
		return MSG_ERANGE;
	if (nlen == 0 || nlen > MSG_DOC_NAME_MAX ||
	    !text_valid(p + DOC_FIXED, nlen, false))
		return MSG_ETEXT;
	memcpy(d->cd_name, p + DOC_FIXED, nlen);
	d->cd_name[nlen] = '\0';
	d->cd_text = (const char *)p + DOC_FIXED + nlen;
	d->cd_len = tlen;
	if (d->cd_kind == CONFIG_DOC_TOKEN) {
		/* A header value: no whitespace or control bytes. */
		if (tlen == 0 || tlen > TOKEN_MAX)
			return MSG_ERANGE;
		for (i = 0; i < tlen; i++)
			if ((uint8_t)d->cd_text[i] <= 0x20 ||
			    d->cd_text[i] == 0x7f)
				return MSG_ETEXT;
	} else {
		if (tlen > CONF_FILE_MAX)
			return MSG_ERANGE;
		if (memchr(d->cd_text, '\0', tlen) != NULL)
			return MSG_ETEXT;
	}
	*used = DOC_FIXED + nlen + tlen;
	return MSG_OK;
}

enum msg_err
msg_config_decode(
    const void *data, size_t len, struct msg_hdr *h, struct msg_config *c)
{
	const uint8_t *p = (const uint8_t *)data + MSG_HDR_LEN;
	size_t room, used, i;
	enum msg_err e;
	uint8_t prev = 0;

	memset(c, 0, sizeof(*c));
	if ((e = hdr_expect(data, len, h, MSG_CONFIG, CONFIG_FIXED)) != MSG_OK)
		return e;
	c->c_generation = get_u64(p);
	c->c_role = p[8];
	c->c_ndocs = p[9];
	if (c->c_generation == 0 ||
	    (c->c_role != ROLE_POLLER && c->c_role != ROLE_ACTUATOR) ||
	    c->c_ndocs == 0 || c->c_ndocs > MSG_DOCS_MAX ||
	    get_u16(p + 10) != 0)
		return MSG_ERANGE;
	p += CONFIG_FIXED;
	room = len - MSG_HDR_LEN - CONFIG_FIXED;
	for (i = 0; i < c->c_ndocs; i++) {
		if ((e = doc_decode(p, room, c->c_role, prev, &c->c_docs[i],
		         &used)) != MSG_OK)
			return e;
		prev = c->c_docs[i].cd_kind;
		p += used;
		room -= used;
	}
	return room == 0 ? MSG_OK : MSG_ELEN;
}

enum msg_err
msg_config_ack_decode(
    const void *data, size_t len, struct msg_hdr *h, struct msg_config_ack *ca)
{
	const uint8_t *p = (const uint8_t *)data + MSG_HDR_LEN;
	enum msg_err e;
	uint16_t n;

	memset(ca, 0, sizeof(*ca));
	if ((e = hdr_expect(data, len, h, MSG_CONFIG_ACK, ACK_FIXED)) !=
	    MSG_OK)
		return e;
	n = get_u16(p + 10);
	if (len != (size_t)MSG_HDR_LEN + ACK_FIXED + n)
		return MSG_ELEN;
	ca->ca_generation = get_u64(p);
	ca->ca_role = p[8];
	if (ca->ca_generation == 0 ||
	    (ca->ca_role != ROLE_POLLER && ca->ca_role != ROLE_ACTUATOR) ||
	    (p[9] != 1 && p[9] != 2))
		return MSG_ERANGE;
	ca->ca_applied = p[9] == 1;
	/* Applied says nothing more; refused says why. */
	if ((ca->ca_applied && n != 0) || (!ca->ca_applied && n == 0) ||
	    n > MSG_ACK_ERR_MAX)
		return MSG_ERANGE;
	if (!text_valid(p + ACK_FIXED, n, false))
		return MSG_ETEXT;
	memcpy(ca->ca_error, p + ACK_FIXED, n);
	ca->ca_error[n] = '\0';
	return MSG_OK;
}

void
msg_health_clear(struct msg_health *hl)
{
	json_decref(hl->hl_detail);
	free(hl->hl_metrics);
	hl->hl_detail = NULL;
	hl->hl_metrics = NULL;
	hl->hl_metrics_len = 0;
}

const char *
msg_err_name(enum msg_err e)
{
	static const char *const names[MSG_NERR] = {
		[MSG_OK] = "ok",
		[MSG_ESHORT] = "short",
		[MSG_EMAGIC] = "magic",
		[MSG_EVERSION] = "version",
		[MSG_EKIND] = "kind",
		[MSG_ELEN] = "length",
		[MSG_ERANGE] = "range",
		[MSG_ETEXT] = "text",
	};

	return (unsigned int)e < MSG_NERR ? names[e] : "unknown";
}

const char *
demand_error_name(enum demand_error e)
{
	switch (e) {
	case DEMAND_ERR_NONE:
		return "none";
	case DEMAND_ERR_HTTP:
		return "http";
	case DEMAND_ERR_TRANSPORT:
		return "transport";
	case DEMAND_ERR_PARSE:
		return "parse";
	case DEMAND_ERR_RATE_LIMITED:
		return "rate_limited";
	case DEMAND_ERR_AUTH:
		return "auth";
	}
	return "unknown";
}

const char *
health_role_name(enum health_role r)
{
	return r == ROLE_POLLER  ? "poller"
	    : r == ROLE_ACTUATOR ? "actuator"
	                         : "unknown";
}

const char *
health_state_name(enum health_state s)
{
	switch (s) {
	case HEALTH_STARTING:
		return "starting";
	case HEALTH_OK:
		return "ok";
	case HEALTH_DEGRADED:
		return "degraded";
	case HEALTH_FAILING:
		return "failing";
	}
	return "unknown";
}
