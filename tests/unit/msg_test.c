#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "conf.h"
#include "msg.h"
#include "util.h"

/* Golden files live in tests/golden; ctest runs us from tests/. */
#define GOLDEN_DIR   "golden/"
#define GOLDEN_PID   12345u
#define GOLDEN_MAX   4096
#define HEALTH_FIXED 20
#define DEMAND_FIXED 30

static const char poller_detail[] =
    "{\"classes\":{\"my-org/my-runner\":{\"ok\":true,\"unclaimed\":5}},"
    "\"last_success_ms\":1700000000123}";
static const char poller_metrics[] =
    "# HELP runner_provisioner_up 1 while running.\n"
    "# TYPE runner_provisioner_up gauge\n"
    "runner_provisioner_up 1\n";

/* Reads tests/golden/<name>.hex into out; returns the byte count. */
static size_t
golden(const char *name, uint8_t *out, size_t size)
{
	char path[256], *text;
	size_t n = 0, i, len;
	int hi = -1, v;

	snprintf(path, sizeof(path), GOLDEN_DIR "%s.hex", name);
	text = read_file(path, 64 * 1024, &len);
	if (text == NULL)
		fail_msg("cannot read %s (run from tests/)", path);
	for (i = 0; i < len; i++) {
		char c = text[i];
		if (c == '\n')
			continue;
		if (!isxdigit((unsigned char)c) || isupper((unsigned char)c))
			fail_msg("%s: byte %zu is not lowercase hex", path, i);
		v = isdigit((unsigned char)c) ? c - '0' : c - 'a' + 10;
		if (hi == -1) {
			hi = v;
			continue;
		}
		assert_true(n < size);
		out[n++] = (uint8_t)(hi << 4 | v);
		hi = -1;
	}
	assert_int_equal(hi, -1);
	free(text);
	return n;
}

static void
put_le(uint8_t *p, uint64_t v, int n)
{
	int i;

	for (i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

/* Compares an encoding with a golden file.  The pid is the encoder's own,
 * so it is checked, then replaced by the golden one. */
static void
assert_golden(const char *name, struct buf *enc)
{
	uint8_t want[GOLDEN_MAX];
	size_t n = golden(name, want, sizeof(want)), i;

	assert_true(enc->b_len >= MSG_HDR_LEN);
	assert_int_equal(
	    get_le32((uint8_t *)enc->b_data + 12), (uint32_t)getpid());
	put_le((uint8_t *)enc->b_data + 12, GOLDEN_PID, 4);
	if (enc->b_len != n)
		fail_msg(
		    "%s: encoded %zu bytes, golden %zu", name, enc->b_len, n);
	for (i = 0; i < n; i++)
		if ((uint8_t)enc->b_data[i] != want[i])
			fail_msg("%s: byte %zu is %02x, golden %02x", name, i,
			    (uint8_t)enc->b_data[i], want[i]);
}

static const struct golden_demand {
	const char *name;
	uint32_t seq;
	struct msg_demand d;
} golden_demands[] = {
	{ "demand-ok", 7,
	    { 42, 1700000000123ULL, true, DEMAND_ERR_NONE, 200, 5, 3,
	        "my-org/my-runner" } },
	{ "demand-failed-http", 8,
	    { 43, 1700000001123ULL, false, DEMAND_ERR_HTTP, 503, 0, 0,
	        "dev-team/custom:arm64" } },
	{ "demand-failed-transport", 9,
	    { 44, 1700000002123ULL, false, DEMAND_ERR_TRANSPORT, 0, 0, 0,
	        "my-org/my-runner" } },
	{ "demand-failed-parse", 10,
	    { 45, 1700000003123ULL, false, DEMAND_ERR_PARSE, 200, 0, 0,
	        "my-org/my-runner" } },
	{ "demand-failed-rate-limited", 11,
	    { 46, 1700000004123ULL, false, DEMAND_ERR_RATE_LIMITED, 429, 0, 0,
	        "my-org/my-runner" } },
	{ "demand-failed-auth", 12,
	    { 47, 1700000005123ULL, false, DEMAND_ERR_AUTH, 401, 0, 0,
	        "my-org/my-runner" } },
};

static void
test_golden_demand_encode(void **state)
{
	struct buf b = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < nitems(golden_demands); i++) {
		buf_reset(&b);
		msg_demand_encode(
		    &golden_demands[i].d, golden_demands[i].seq, &b);
		assert_golden(golden_demands[i].name, &b);
	}
	buf_free(&b);
}

static void
test_golden_demand_decode(void **state)
{
	uint8_t raw[GOLDEN_MAX];
	const struct msg_demand *want;
	struct msg_demand d;
	struct msg_hdr h;
	size_t i, n;

	(void)state;
	for (i = 0; i < nitems(golden_demands); i++) {
		want = &golden_demands[i].d;
		n = golden(golden_demands[i].name, raw, sizeof(raw));
		memset(&d, 0xee, sizeof(d));
		assert_int_equal(msg_demand_decode(raw, n, &h, &d), MSG_OK);
		assert_int_equal(h.h_version, MSG_VERSION);
		assert_int_equal(h.h_kind, MSG_DEMAND);
		assert_int_equal(h.h_len, n);
		assert_int_equal(h.h_seq, golden_demands[i].seq);
		assert_int_equal(h.h_pid, GOLDEN_PID);
		assert_int_equal(d.d_cycle, want->d_cycle);
		assert_int_equal(d.d_observed_ms, want->d_observed_ms);
		assert_int_equal(d.d_ok, want->d_ok);
		assert_int_equal(d.d_error, want->d_error);
		assert_int_equal(d.d_http_status, want->d_http_status);
		assert_int_equal(d.d_unclaimed, want->d_unclaimed);
		assert_int_equal(d.d_running, want->d_running);
		assert_string_equal(d.d_class, want->d_class);
	}
}

static void
test_golden_health_query(void **state)
{
	struct msg_health_query q = { 1700000000000ULL };
	uint8_t raw[GOLDEN_MAX];
	struct buf b = { 0 };
	struct msg_hdr h;
	size_t n;

	(void)state;
	msg_health_query_encode(&q, 1, &b);
	assert_golden("health-query", &b);
	buf_free(&b);
	n = golden("health-query", raw, sizeof(raw));
	q.q_sent_ms = 0;
	assert_int_equal(msg_health_query_decode(raw, n, &h, &q), MSG_OK);
	assert_int_equal(q.q_sent_ms, 1700000000000ULL);
	assert_int_equal(h.h_kind, MSG_HEALTH_QUERY);
	assert_int_equal(h.h_seq, 1);
	assert_int_equal(h.h_pid, GOLDEN_PID);
}

static void
test_golden_health_answer(void **state)
{
	struct msg_health hl;
	uint8_t raw[GOLDEN_MAX];
	struct buf b = { 0 };
	struct msg_hdr h;
	char *dumped;
	size_t n;

	(void)state;
	memset(&hl, 0, sizeof(hl));
	hl.hl_role = ROLE_POLLER;
	hl.hl_state = HEALTH_OK;
	hl.hl_uptime_ms = 123456789;
	hl.hl_detail = json_loads(poller_detail, 0, NULL);
	assert_non_null(hl.hl_detail);
	hl.hl_metrics = (char *)(uintptr_t)poller_metrics;
	hl.hl_metrics_len = strlen(poller_metrics);
	msg_health_encode(&hl, 13, &b);
	json_decref(hl.hl_detail);
	assert_golden("health-poller", &b);

	n = golden("health-poller", raw, sizeof(raw));
	assert_int_equal(msg_health_decode(raw, n, &h, &hl), MSG_OK);
	assert_int_equal(h.h_kind, MSG_HEALTH);
	assert_int_equal(h.h_seq, 13);
	assert_int_equal(hl.hl_role, ROLE_POLLER);
	assert_int_equal(hl.hl_state, HEALTH_OK);
	assert_int_equal(hl.hl_uptime_ms, 123456789);
	assert_true(json_is_object(hl.hl_detail));
	dumped = json_dumps(hl.hl_detail, JSON_COMPACT);
	assert_string_equal(dumped, poller_detail);
	free(dumped);
	assert_int_equal(hl.hl_metrics_len, strlen(poller_metrics));
	assert_string_equal(hl.hl_metrics, poller_metrics);
	msg_health_clear(&hl);
	assert_null(hl.hl_detail);
	assert_null(hl.hl_metrics);

	/* an actuator that has not succeeded yet, with no metrics */
	buf_reset(&b);
	memset(&hl, 0, sizeof(hl));
	hl.hl_role = ROLE_ACTUATOR;
	hl.hl_state = HEALTH_STARTING;
	hl.hl_detail = json_object();
	hl.hl_metrics = "";
	msg_health_encode(&hl, 14, &b);
	json_decref(hl.hl_detail);
	assert_golden("health-actuator-starting", &b);
	n = golden("health-actuator-starting", raw, sizeof(raw));
	assert_int_equal(msg_health_decode(raw, n, &h, &hl), MSG_OK);
	assert_int_equal(hl.hl_role, ROLE_ACTUATOR);
	assert_int_equal(hl.hl_state, HEALTH_STARTING);
	assert_int_equal(json_object_size(hl.hl_detail), 0);
	assert_int_equal(hl.hl_metrics_len, 0);
	msg_health_clear(&hl);
	buf_free(&b);
}

/* Encoders append: two messages in one buffer stay intact. */
static void
test_encode_appends(void **state)
{
	struct msg_health_query q = { 5 };
	struct buf b = { 0 };
	struct msg_hdr h;

	(void)state;
	buf_puts(&b, "xyz");
	msg_demand_encode(&golden_demands[0].d, 1, &b);
	msg_health_query_encode(&q, 2, &b);
	assert_memory_equal(b.b_data, "xyz", 3);
	assert_int_equal(msg_hdr_decode(b.b_data + 3, 62, &h), MSG_OK);
	assert_int_equal(h.h_len, 62);
	assert_int_equal(
	    msg_hdr_decode(b.b_data + 65, b.b_len - 65, &h), MSG_OK);
	assert_int_equal(h.h_kind, MSG_HEALTH_QUERY);
	assert_int_equal(h.h_seq, 2);
	buf_free(&b);
}

/* A demand built field by field (independently of the encoder). */
static size_t
mk_demand(uint8_t *p, uint8_t ok, uint8_t err, uint16_t status,
    uint32_t unclaimed, uint32_t running, const void *cls, size_t clen)
{
	size_t len = MSG_HDR_LEN + DEMAND_FIXED + clen;

	memcpy(p, "RP", 2);
	p[2] = MSG_VERSION;
	p[3] = MSG_DEMAND;
	put_le(p + 4, len, 4);
	put_le(p + 8, 1, 4);
	put_le(p + 12, GOLDEN_PID, 4);
	put_le(p + 16, 100, 8);
	put_le(p + 24, 1700000000000ULL, 8);
	p[32] = ok;
	p[33] = err;
	put_le(p + 34, status, 2);
	put_le(p + 36, unclaimed, 4);
	put_le(p + 40, running, 4);
	put_le(p + 44, clen, 2);
	memcpy(p + 46, cls, clen);
	return len;
}

#define DEMAND(p, ok, err, st, u, r, cls)                                     \
	mk_demand((p), (ok), (err), (st), (u), (r), (cls), sizeof(cls) - 1)

static enum msg_err
decode_demand(const uint8_t *p, size_t len)
{
	struct msg_demand d;
	struct msg_hdr h;

	return msg_demand_decode(p, len, &h, &d);
}

static void
expect(const char *what, enum msg_err got, enum msg_err want)
{
	if (got != want)
		fail_msg("%s: got %s, want %s", what, msg_err_name(got),
		    msg_err_name(want));
}

static void
test_header_errors(void **state)
{
	uint8_t p[512], *big;
	struct msg_hdr h;
	size_t n;

	(void)state;
	n = DEMAND(p, 1, 0, 200, 1, 1, "a/b");
	expect("valid", decode_demand(p, n), MSG_OK);
	expect("empty", decode_demand(p, 0), MSG_ESHORT);
	expect("15 bytes", decode_demand(p, 15), MSG_ESHORT);
	expect("hdr 15 bytes", msg_hdr_decode(p, 15, &h), MSG_ESHORT);

	p[0] = 'X';
	expect("magic 0", decode_demand(p, n), MSG_EMAGIC);
	p[0] = 'R';
	p[1] = 'Q';
	expect("magic 1", decode_demand(p, n), MSG_EMAGIC);
	p[1] = 'P';

	p[2] = 0;
	expect("version 0", decode_demand(p, n), MSG_EVERSION);
	p[2] = 2;
	expect("version 2", decode_demand(p, n), MSG_EVERSION);
	p[2] = MSG_VERSION;

	p[3] = 0;
	expect("kind 0", decode_demand(p, n), MSG_EKIND);
	p[3] = 6;
	expect("kind 6", decode_demand(p, n), MSG_EKIND);
	p[3] = MSG_CONFIG;
	expect("config kind as demand", decode_demand(p, n), MSG_EKIND);
	p[3] = 255;
	expect("kind 255", decode_demand(p, n), MSG_EKIND);
	p[3] = MSG_HEALTH_QUERY;
	expect("query kind as demand", decode_demand(p, n), MSG_EKIND);
	p[3] = MSG_HEALTH;
	expect("health kind as demand", decode_demand(p, n), MSG_EKIND);
	p[3] = MSG_DEMAND;

	put_le(p + 4, n + 1, 4);
	expect("length field too big", decode_demand(p, n), MSG_ELEN);
	put_le(p + 4, n - 1, 4);
	expect("length field too small", decode_demand(p, n), MSG_ELEN);
	put_le(p + 4, n, 4);
	p[n] = 0;
	expect("trailing byte", decode_demand(p, n + 1), MSG_ELEN);
	expect("missing byte", decode_demand(p, n - 1), MSG_ELEN);

	put_le(p + 12, 0, 4);
	expect("pid 0", decode_demand(p, n), MSG_ERANGE);
	put_le(p + 12, GOLDEN_PID, 4);
	expect("valid again", decode_demand(p, n), MSG_OK);

	/* larger than MSG_MAX, consistently so */
	big = calloc(1, (size_t)MSG_MAX + 1);
	assert_non_null(big);
	memcpy(big, p, MSG_HDR_LEN);
	put_le(big + 4, (uint64_t)MSG_MAX + 1, 4);
	expect("over MSG_MAX", msg_hdr_decode(big, (size_t)MSG_MAX + 1, &h),
	    MSG_ELEN);
	free(big);
}

static void
test_demand_length_errors(void **state)
{
	uint8_t p[512];
	size_t n;

	(void)state;
	/* shorter than the fixed part, header consistent */
	n = DEMAND(p, 1, 0, 200, 1, 1, "a/b");
	put_le(p + 4, MSG_HDR_LEN + DEMAND_FIXED - 1, 4);
	expect("fixed part cut",
	    decode_demand(p, MSG_HDR_LEN + DEMAND_FIXED - 1), MSG_ELEN);
	put_le(p + 4, MSG_HDR_LEN, 4);
	expect("header only", decode_demand(p, MSG_HDR_LEN), MSG_ELEN);
	/* the class length disagrees with the message length */
	n = DEMAND(p, 1, 0, 200, 1, 1, "a/b");
	put_le(p + 44, 4, 2);
	expect("class length +1", decode_demand(p, n), MSG_ELEN);
	put_le(p + 44, 2, 2);
	expect("class length -1", decode_demand(p, n), MSG_ELEN);
	put_le(p + 44, 0xffff, 2);
	expect("class length 65535", decode_demand(p, n), MSG_ELEN);
}

static void
test_demand_range_errors(void **state)
{
	static const struct {
		const char *what;
		uint8_t ok, err;
		uint16_t status;
		uint32_t unclaimed, running;
		enum msg_err want;
	} cases[] = {
		{ "ok", 1, 0, 200, 3, 4, MSG_OK },
		{ "ok 2", 2, 0, 200, 0, 0, MSG_ERANGE },
		{ "ok 255", 255, 0, 200, 0, 0, MSG_ERANGE },
		{ "error 6", 0, 6, 500, 0, 0, MSG_ERANGE },
		{ "error 255", 0, 255, 500, 0, 0, MSG_ERANGE },
		{ "ok with an error", 1, DEMAND_ERR_HTTP, 200, 0, 0,
		    MSG_ERANGE },
		{ "failed without an error", 0, DEMAND_ERR_NONE, 500, 0, 0,
		    MSG_ERANGE },
		{ "each error kind", 0, DEMAND_ERR_AUTH, 403, 0, 0, MSG_OK },
		{ "status 0", 0, DEMAND_ERR_TRANSPORT, 0, 0, 0, MSG_OK },
		{ "status 100", 0, DEMAND_ERR_HTTP, 100, 0, 0, MSG_OK },
		{ "status 599", 0, DEMAND_ERR_HTTP, 599, 0, 0, MSG_OK },
		{ "status 99", 0, DEMAND_ERR_HTTP, 99, 0, 0, MSG_ERANGE },
		{ "status 1", 0, DEMAND_ERR_HTTP, 1, 0, 0, MSG_ERANGE },
		{ "status 600", 0, DEMAND_ERR_HTTP, 600, 0, 0, MSG_ERANGE },
		{ "status 65535", 1, 0, 65535, 0, 0, MSG_ERANGE },
		{ "counts at the bound", 1, 0, 200, MSG_COUNT_MAX,
		    MSG_COUNT_MAX, MSG_OK },
		{ "unclaimed over", 1, 0, 200, MSG_COUNT_MAX + 1, 0,
		    MSG_ERANGE },
		{ "running over", 1, 0, 200, 0, MSG_COUNT_MAX + 1,
		    MSG_ERANGE },
		{ "unclaimed huge", 1, 0, 200, UINT32_MAX, 0, MSG_ERANGE },
		{ "running huge", 1, 0, 200, 0, UINT32_MAX, MSG_ERANGE },
		{ "failed with unclaimed", 0, DEMAND_ERR_PARSE, 200, 1, 0,
		    MSG_ERANGE },
		{ "failed with running", 0, DEMAND_ERR_PARSE, 200, 0, 1,
		    MSG_ERANGE },
	};
	uint8_t p[512];
	size_t i, n;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		n = DEMAND(p, cases[i].ok, cases[i].err, cases[i].status,
		    cases[i].unclaimed, cases[i].running, "my-org/my-runner");
		expect(cases[i].what, decode_demand(p, n), cases[i].want);
	}
}

static void
test_demand_class_errors(void **state)
{
	static const struct {
		const char *what;
		const char *cls;
		size_t len;
		enum msg_err want;
	} cases[] = {
		{ "empty", "", 0, MSG_ETEXT },
		{ "NUL inside", "my-org/\0runner", 14, MSG_ETEXT },
		{ "NUL at the end", "my-org/runner\0", 14, MSG_ETEXT },
		{ "space", "my org/runner", 13, MSG_ETEXT },
		{ "no slash", "my-org-runner", 13, MSG_ETEXT },
		{ "two slashes", "a/b/c", 5, MSG_ETEXT },
		{ "empty namespace", "/runner", 7, MSG_ETEXT },
		{ "empty name", "my-org/", 7, MSG_ETEXT },
		{ "non-ASCII", "my-org/caf\xc3\xa9", 12, MSG_ETEXT },
		{ "control byte", "my-org/r\x01", 9, MSG_ETEXT },
		{ "newline", "my-org/r\n", 9, MSG_ETEXT },
		{ "leading dash", "-org/runner", 11, MSG_ETEXT },
		{ "quote", "my-org/r\"", 9, MSG_ETEXT },
		{ "every allowed character", "A.b_c:d+e-f/G9.h_i:j+k-l", 24,
		    MSG_OK },
	};
	uint8_t p[1024];
	char cls[300];
	size_t i, n;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		n = mk_demand(p, 1, 0, 200, 1, 1, cases[i].cls, cases[i].len);
		expect(cases[i].what, decode_demand(p, n), cases[i].want);
	}
	/* 253 bytes is the longest class name; 254 is refused */
	memset(cls, 'a', sizeof(cls));
	cls[10] = '/';
	n = mk_demand(p, 1, 0, 200, 1, 1, cls, MSG_CLASS_MAX);
	expect("253 bytes", decode_demand(p, n), MSG_OK);
	n = mk_demand(p, 1, 0, 200, 1, 1, cls, MSG_CLASS_MAX + 1);
	expect("254 bytes", decode_demand(p, n), MSG_ETEXT);
	n = mk_demand(p, 1, 0, 200, 1, 1, cls, 299);
	expect("299 bytes", decode_demand(p, n), MSG_ETEXT);
}

static void
test_query_errors(void **state)
{
	struct msg_health_query q;
	uint8_t raw[GOLDEN_MAX];
	struct msg_hdr h;
	size_t n;

	(void)state;
	n = golden("health-query", raw, sizeof(raw));
	raw[n] = 0;
	put_le(raw + 4, n + 1, 4);
	expect("query +1 byte", msg_health_query_decode(raw, n + 1, &h, &q),
	    MSG_ELEN);
	put_le(raw + 4, n - 1, 4);
	expect("query -1 byte", msg_health_query_decode(raw, n - 1, &h, &q),
	    MSG_ELEN);
	put_le(raw + 4, n, 4);
	expect("query ok", msg_health_query_decode(raw, n, &h, &q), MSG_OK);
	/* a demand is not a query, nor is a query a demand or health */
	n = golden("demand-ok", raw, sizeof(raw));
	expect("demand as query", msg_health_query_decode(raw, n, &h, &q),
	    MSG_EKIND);
	n = golden("health-query", raw, sizeof(raw));
	expect("query as demand", decode_demand(raw, n), MSG_EKIND);
}

/* A health answer built field by field. */
static size_t
mk_health(uint8_t *p, uint8_t role, uint8_t st, uint16_t reserved,
    const char *detail, size_t dlen, const char *metrics, size_t mlen)
{
	size_t len = MSG_HDR_LEN + HEALTH_FIXED + dlen + mlen;

	memcpy(p, "RP", 2);
	p[2] = MSG_VERSION;
	p[3] = MSG_HEALTH;
	put_le(p + 4, len, 4);
	put_le(p + 8, 3, 4);
	put_le(p + 12, GOLDEN_PID, 4);
	p[16] = role;
	p[17] = st;
	put_le(p + 18, reserved, 2);
	put_le(p + 20, 5000, 8);
	put_le(p + 28, dlen, 4);
	put_le(p + 32, mlen, 4);
	memcpy(p + 36, detail, dlen);
	memcpy(p + 36 + dlen, metrics, mlen);
	return len;
}

static enum msg_err
decode_health(const uint8_t *p, size_t len)
{
	struct msg_health hl;
	struct msg_hdr h;
	enum msg_err e;

	memset(&hl, 0x5a, sizeof(hl));
	e = msg_health_decode(p, len, &h, &hl);
	if (e == MSG_OK)
		msg_health_clear(&hl);
	else {
		/* a rejected message leaves nothing to free */
		assert_null(hl.hl_detail);
		assert_null(hl.hl_metrics);
	}
	return e;
}

static void
test_health_errors(void **state)
{
	static const struct {
		const char *what;
		uint8_t role, st;
		uint16_t reserved;
		const char *detail, *metrics;
		enum msg_err want;
	} cases[] = {
		{ "valid", ROLE_ACTUATOR, HEALTH_FAILING, 0, "{\"a\":[1,2]}",
		    "runner_provisioner_x 1\n", MSG_OK },
		{ "role 0", 0, HEALTH_OK, 0, "{}", "", MSG_ERANGE },
		{ "role 3", 3, HEALTH_OK, 0, "{}", "", MSG_ERANGE },
		{ "state 4", ROLE_POLLER, 4, 0, "{}", "", MSG_ERANGE },
		{ "state 255", ROLE_POLLER, 255, 0, "{}", "", MSG_ERANGE },
		{ "reserved set", ROLE_POLLER, HEALTH_OK, 1, "{}", "",
		    MSG_ERANGE },
		{ "detail an array", ROLE_POLLER, HEALTH_OK, 0, "[]", "",
		    MSG_ETEXT },
		{ "detail a number", ROLE_POLLER, HEALTH_OK, 0, "1", "",
		    MSG_ETEXT },
		{ "detail a string", ROLE_POLLER, HEALTH_OK, 0, "\"x\"", "",
		    MSG_ETEXT },
		{ "detail null", ROLE_POLLER, HEALTH_OK, 0, "null", "",
		    MSG_ETEXT },
		{ "detail empty", ROLE_POLLER, HEALTH_OK, 0, "", "",
		    MSG_ETEXT },
		{ "detail malformed", ROLE_POLLER, HEALTH_OK, 0, "{\"a\":", "",
		    MSG_ETEXT },
		{ "detail trailing garbage", ROLE_POLLER, HEALTH_OK, 0, "{} x",
		    "", MSG_ETEXT },
		{ "detail duplicate key", ROLE_POLLER, HEALTH_OK, 0,
		    "{\"a\":1,\"a\":2}", "", MSG_ETEXT },
		{ "metrics garbage", ROLE_POLLER, HEALTH_OK, 0, "{}",
		    "garbage\n", MSG_ETEXT },
		{ "metrics unterminated", ROLE_POLLER, HEALTH_OK, 0, "{}",
		    "runner_provisioner_x 1", MSG_ETEXT },
		{ "metrics foreign name", ROLE_POLLER, HEALTH_OK, 0, "{}",
		    "go_goroutines 7\n", MSG_ETEXT },
		{ "metrics bad value", ROLE_POLLER, HEALTH_OK, 0, "{}",
		    "runner_provisioner_x one\n", MSG_ETEXT },
	};
	uint8_t p[1024];
	size_t i, n;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		n = mk_health(p, cases[i].role, cases[i].st, cases[i].reserved,
		    cases[i].detail, strlen(cases[i].detail), cases[i].metrics,
		    strlen(cases[i].metrics));
		expect(cases[i].what, decode_health(p, n), cases[i].want);
	}
	/* a NUL in the metrics text */
	n = mk_health(p, ROLE_POLLER, HEALTH_OK, 0, "{}", 2,
	    "runner_provisioner_x 1\0\n", 24);
	expect("metrics with NUL", decode_health(p, n), MSG_ETEXT);
	/* a NUL in the detail */
	n = mk_health(
	    p, ROLE_POLLER, HEALTH_OK, 0, "{\"a\":\"\0\"}", 9, "", 0);
	expect("detail with NUL", decode_health(p, n), MSG_ETEXT);
}

static void
test_health_length_errors(void **state)
{
	uint8_t p[1024];
	size_t n;

	(void)state;
	n = mk_health(p, ROLE_POLLER, HEALTH_OK, 0, "{}", 2,
	    "runner_provisioner_x 1\n", 23);
	expect("valid", decode_health(p, n), MSG_OK);
	put_le(p + 28, 3, 4);
	expect("detail length +1", decode_health(p, n), MSG_ELEN);
	put_le(p + 28, 1, 4);
	expect("detail length -1", decode_health(p, n), MSG_ELEN);
	put_le(p + 28, 2, 4);
	put_le(p + 32, 22, 4);
	expect("metrics length -1", decode_health(p, n), MSG_ELEN);
	put_le(p + 32, 24, 4);
	expect("metrics length +1", decode_health(p, n), MSG_ELEN);
	/* lengths whose 32-bit sum wraps around to the right total */
	put_le(p + 28, 0xffffffffu, 4);
	put_le(p + 32, 26, 4);
	expect("wrapping lengths", decode_health(p, n), MSG_ELEN);
	put_le(p + 28, 0xffffffffu, 4);
	put_le(p + 32, 0xffffffffu, 4);
	expect("huge lengths", decode_health(p, n), MSG_ELEN);
	/* shorter than the fixed part */
	put_le(p + 4, MSG_HDR_LEN + HEALTH_FIXED - 1, 4);
	expect("fixed part cut",
	    decode_health(p, MSG_HDR_LEN + HEALTH_FIXED - 1), MSG_ELEN);
}

/* What a decoded demand must satisfy, whatever the bytes were. */
static void
assert_demand_sane(const struct msg_demand *d)
{
	assert_true(d->d_ok == (d->d_error == DEMAND_ERR_NONE));
	assert_true(d->d_error <= DEMAND_ERR_LAST);
	assert_true(d->d_unclaimed <= MSG_COUNT_MAX);
	assert_true(d->d_running <= MSG_COUNT_MAX);
	assert_true(d->d_ok || (d->d_unclaimed == 0 && d->d_running == 0));
	assert_true(d->d_http_status == 0 ||
	    (d->d_http_status >= 100 && d->d_http_status <= 599));
	assert_true(strlen(d->d_class) > 0);
	assert_true(strlen(d->d_class) <= MSG_CLASS_MAX);
	assert_non_null(strchr(d->d_class, '/'));
}

static enum msg_err
decode_any(const uint8_t *p, size_t n, uint8_t kind)
{
	struct msg_health_query q;
	struct msg_demand d;
	struct msg_hdr h;
	enum msg_err e;

	switch (kind) {
	case MSG_DEMAND:
		e = msg_demand_decode(p, n, &h, &d);
		if (e == MSG_OK)
			assert_demand_sane(&d);
		return e;
	case MSG_HEALTH_QUERY:
		return msg_health_query_decode(p, n, &h, &q);
	case MSG_CONFIG: {
		struct msg_config c;

		return msg_config_decode(p, n, &h, &c);
	}
	case MSG_CONFIG_ACK: {
		struct msg_config_ack ca;

		return msg_config_ack_decode(p, n, &h, &ca);
	}
	default:
		return decode_health(p, n);
	}
}

/* Every cut of a valid message is refused; every flipped bit or byte is
 * survived, and flips in magic, version, kind or length are refused. */
static void
test_mutations(void **state)
{
	static const char *const names[] = { "demand-ok", "demand-failed-http",
		"health-query", "health-poller", "health-actuator-starting",
		"config-poller", "config-actuator", "config-ack-applied",
		"config-ack-refused" };
	uint8_t orig[GOLDEN_MAX], p[GOLDEN_MAX];
	size_t i, n, len, at;
	struct msg_hdr h;
	enum msg_err e;
	int bit;

	(void)state;
	for (i = 0; i < nitems(names); i++) {
		n = golden(names[i], orig, sizeof(orig));
		expect(names[i], decode_any(orig, n, orig[3]), MSG_OK);
		for (len = 0; len < n; len++) {
			/* a copy of exactly len bytes, so that ASan sees
			 * any read past the end */
			uint8_t *cut = malloc(len ? len : 1);
			assert_non_null(cut);
			memcpy(cut, orig, len);
			if (decode_any(cut, len, orig[3]) == MSG_OK)
				fail_msg("%s cut to %zu bytes accepted",
				    names[i], len);
			expect("cut header", msg_hdr_decode(cut, len, &h),
			    len < MSG_HDR_LEN ? MSG_ESHORT : MSG_ELEN);
			free(cut);
		}
		for (at = 0; at < n; at++) {
			for (bit = -1; bit < 8; bit++) {
				memcpy(p, orig, n);
				p[at] ^= bit < 0 ? 0xff : (uint8_t)(1 << bit);
				e = decode_any(p, n, orig[3]);
				if (at < 8 && e == MSG_OK)
					fail_msg("%s: flip at byte %zu "
					         "accepted",
					    names[i], at);
			}
		}
	}
}

/* Random bytes, random lengths: never a crash, and never accepted
 * without the magic. */
static void
test_random_garbage(void **state)
{
	uint8_t p[512];
	size_t n, i;
	int round;

	(void)state;
	rng_seed(77);
	for (round = 0; round < 200000; round++) {
		n = (size_t)rng_range(0, sizeof(p));
		for (i = 0; i < n; i++)
			p[i] = (uint8_t)rng_next();
		/* half the time a plausible header, so the payload checks
		 * run too */
		if (round % 2 == 0 && n >= MSG_HDR_LEN) {
			memcpy(p, "RP", 2);
			p[2] = MSG_VERSION;
			p[3] = (uint8_t)rng_range(1, MSG_KIND_LAST);
			put_le(p + 4, n, 4);
		}
		if (decode_any(p, n, (uint8_t)(round % MSG_KIND_LAST + 1)) ==
		        MSG_OK &&
		    (n < 2 || memcmp(p, "RP", 2) != 0))
			fail_msg("garbage accepted in round %d", round);
	}
}

static const char poller_conf[] =
    "{\"resourceClass\":{\"my-org/my-runner\":{\"minReplicas\":3}}}";
static const char actuator_conf[] = "resourceClass:\n"
                                    "  \"my-org/my-runner\":\n"
                                    "    token: \"runner-token\"\n";
static const char refusal[] =
    "config.yaml: resource class my-org/x: its cloud-init cannot be built";

static struct msg_config
config_doc1(uint64_t gen, uint8_t role, const char *name, const char *text)
{
	struct msg_config c;

	memset(&c, 0, sizeof(c));
	c.c_generation = gen;
	c.c_role = role;
	c.c_ndocs = 1;
	c.c_docs[0].cd_kind = CONFIG_DOC_CONFIG;
	strlcpy_rp(c.c_docs[0].cd_name, name, sizeof(c.c_docs[0].cd_name));
	c.c_docs[0].cd_text = text;
	c.c_docs[0].cd_len = strlen(text);
	return c;
}

static void
test_golden_config(void **state)
{
	struct msg_config c, got;
	struct msg_config_ack ack;
	uint8_t raw[GOLDEN_MAX];
	struct buf b = { 0 };
	struct msg_hdr h;
	size_t n;

	(void)state;
	c = config_doc1(2, ROLE_POLLER, "/etc/runner-provisioner/config.yaml",
	    poller_conf);
	c.c_docs[1].cd_kind = CONFIG_DOC_TOKEN;
	strlcpy_rp(c.c_docs[1].cd_name, "/etc/runner-provisioner/circle-token",
	    sizeof(c.c_docs[1].cd_name));
	c.c_docs[1].cd_text = "circle-token-123";
	c.c_docs[1].cd_len = 16;
	c.c_ndocs = 2;
	msg_config_encode(&c, 15, &b);
	assert_golden("config-poller", &b);
	n = golden("config-poller", raw, sizeof(raw));
	assert_int_equal(msg_config_decode(raw, n, &h, &got), MSG_OK);
	assert_int_equal(h.h_kind, MSG_CONFIG);
	assert_int_equal(h.h_seq, 15);
	assert_true(got.c_generation == 2);
	assert_int_equal(got.c_role, ROLE_POLLER);
	assert_int_equal(got.c_ndocs, 2);
	assert_int_equal(got.c_docs[0].cd_kind, CONFIG_DOC_CONFIG);
	assert_string_equal(
	    got.c_docs[0].cd_name, "/etc/runner-provisioner/config.yaml");
	assert_int_equal(got.c_docs[0].cd_len, strlen(poller_conf));
	assert_memory_equal(
	    got.c_docs[0].cd_text, poller_conf, strlen(poller_conf));
	assert_int_equal(got.c_docs[1].cd_kind, CONFIG_DOC_TOKEN);
	assert_memory_equal(got.c_docs[1].cd_text, "circle-token-123", 16);

	buf_reset(&b);
	c = config_doc1(2, ROLE_ACTUATOR, "config.yaml", actuator_conf);
	msg_config_encode(&c, 16, &b);
	assert_golden("config-actuator", &b);
	n = golden("config-actuator", raw, sizeof(raw));
	assert_int_equal(msg_config_decode(raw, n, &h, &got), MSG_OK);
	assert_int_equal(got.c_role, ROLE_ACTUATOR);
	assert_int_equal(got.c_docs[0].cd_len, strlen(actuator_conf));

	buf_reset(&b);
	memset(&ack, 0, sizeof(ack));
	ack.ca_generation = 2;
	ack.ca_role = ROLE_POLLER;
	ack.ca_applied = true;
	msg_config_ack_encode(&ack, 17, &b);
	assert_golden("config-ack-applied", &b);
	buf_reset(&b);
	ack.ca_generation = 3;
	ack.ca_role = ROLE_ACTUATOR;
	ack.ca_applied = false;
	strlcpy_rp(ack.ca_error, refusal, sizeof(ack.ca_error));
	msg_config_ack_encode(&ack, 18, &b);
	assert_golden("config-ack-refused", &b);
	n = golden("config-ack-refused", raw, sizeof(raw));
	memset(&ack, 0, sizeof(ack));
	assert_int_equal(msg_config_ack_decode(raw, n, &h, &ack), MSG_OK);
	assert_false(ack.ca_applied);
	assert_true(ack.ca_generation == 3);
	assert_string_equal(ack.ca_error, refusal);
	buf_free(&b);
}

/* Offsets of the configuration golden messages (tests/golden/README). */
#define CONF_GEN   16
#define CONF_ROLE  24
#define CONF_NDOCS 25
#define CONF_RSVD  26
#define DOC0       28

/* Each rule of the layout, broken once on a valid message. */
static void
test_config_errors(void **state)
{
	uint8_t orig[GOLDEN_MAX], p[GOLDEN_MAX + 64];
	size_t n, m, doc1;
	struct msg_config c;
	struct msg_hdr h;
	uint16_t nlen;

	(void)state;
	n = golden("config-poller", orig, sizeof(orig));
	nlen = (uint16_t)(orig[DOC0 + 2] | orig[DOC0 + 3] << 8);
	doc1 = DOC0 + 8 + nlen + strlen(poller_conf);
#define AGAIN()           (memcpy(p, orig, n), m = n)
#define EXPECT(what, err) expect(what, msg_config_decode(p, m, &h, &c), err)
	AGAIN();
	EXPECT("valid", MSG_OK);
	AGAIN();
	put_le(p + CONF_GEN, 0, 8);
	EXPECT("generation 0", MSG_ERANGE);
	AGAIN();
	p[CONF_ROLE] = 3;
	EXPECT("role 3", MSG_ERANGE);
	AGAIN();
	/* The token goes to the poller only. */
	p[CONF_ROLE] = ROLE_ACTUATOR;
	EXPECT("a token for the actuator", MSG_ERANGE);
	AGAIN();
	p[CONF_NDOCS] = 0;
	EXPECT("no document", MSG_ERANGE);
	AGAIN();
	p[CONF_NDOCS] = 4;
	EXPECT("4 documents", MSG_ERANGE);
	AGAIN();
	p[CONF_NDOCS] = 1;
	EXPECT("a document left over", MSG_ELEN);
	AGAIN();
	p[CONF_RSVD] = 1;
	EXPECT("reserved", MSG_ERANGE);
	AGAIN();
	p[doc1 + 1] = 1;
	EXPECT("document reserved", MSG_ERANGE);
	AGAIN();
	/* Secrets go to the actuator only. */
	p[doc1] = CONFIG_DOC_SECRETS;
	EXPECT("secrets for the poller", MSG_ERANGE);
	AGAIN();
	p[DOC0] = CONFIG_DOC_TOKEN;
	EXPECT("the configuration not first", MSG_ERANGE);
	AGAIN();
	p[doc1] = CONFIG_DOC_CONFIG;
	EXPECT("a kind twice", MSG_ERANGE);
	AGAIN();
	p[DOC0] = 9;
	EXPECT("unknown kind", MSG_ERANGE);
	AGAIN();
	p[DOC0 + 2] = 0;
	p[DOC0 + 3] = 0;
	EXPECT("empty name", MSG_ETEXT);
	AGAIN();
	p[DOC0 + 8] = '\n';
	EXPECT("control byte in the name", MSG_ETEXT);
	AGAIN();
	p[DOC0 + 8 + nlen + 3] = '\0';
	EXPECT("NUL in the configuration", MSG_ETEXT);
	AGAIN();
	p[m - 3] = ' ';
	EXPECT("space in the token", MSG_ETEXT);
	AGAIN();
	put_le(p + doc1 + 4, 0, 4);
	put_le(p + 4, m - 16, 4);
	m -= 16;
	EXPECT("empty token", MSG_ERANGE);
	AGAIN();
	put_le(p + DOC0 + 4, CONF_FILE_MAX + 1, 4);
	EXPECT("text length past the message", MSG_ELEN);
	AGAIN();
	p[m] = 'x';
	put_le(p + 4, m + 1, 4);
	m++;
	EXPECT("trailing byte", MSG_ELEN);
#undef EXPECT
}

static void
test_config_ack_errors(void **state)
{
	uint8_t orig[GOLDEN_MAX], p[GOLDEN_MAX + 64];
	struct msg_config_ack ca;
	struct msg_hdr h;
	size_t n, m;

	(void)state;
	n = golden("config-ack-refused", orig, sizeof(orig));
#define EXPECT(what, err)                                                     \
	expect(what, msg_config_ack_decode(p, m, &h, &ca), err)
	AGAIN();
	EXPECT("valid", MSG_OK);
	AGAIN();
	p[25] = 1;
	EXPECT("applied with a reason", MSG_ERANGE);
	AGAIN();
	p[25] = 3;
	EXPECT("result 3", MSG_ERANGE);
	AGAIN();
	put_le(p + 16, 0, 8);
	EXPECT("generation 0", MSG_ERANGE);
	AGAIN();
	p[30] = 0xc3; /* a cut UTF-8 sequence */
	p[31] = 'x';
	EXPECT("not UTF-8", MSG_ETEXT);
	AGAIN();
	p[30] = '\0';
	EXPECT("NUL in the reason", MSG_ETEXT);
	AGAIN();
	put_le(p + 26, 0, 2);
	put_le(p + 4, 28, 4);
	m = 28;
	EXPECT("refused without a reason", MSG_ERANGE);
	AGAIN();
	put_le(p + 26, n - 28 + 1, 2);
	EXPECT("reason past the end", MSG_ELEN);
	n = golden("config-ack-applied", orig, sizeof(orig));
	AGAIN();
	EXPECT("applied", MSG_OK);
	AGAIN();
	p[24] = 0;
	EXPECT("role 0", MSG_ERANGE);
#undef EXPECT
#undef AGAIN
}

/* Random valid demands survive encode → decode unchanged. */
static void
test_demand_round_trip(void **state)
{
	static const char chars[] = "abcXYZ019._:+-";
	struct msg_demand in, out;
	struct buf b = { 0 };
	struct msg_hdr h;
	size_t i, n;
	int round;

	(void)state;
	rng_seed(4242);
	for (round = 0; round < 20000; round++) {
		memset(&in, 0, sizeof(in));
		in.d_cycle = rng_next();
		in.d_observed_ms = rng_next();
		in.d_ok = rng_range(0, 1);
		if (in.d_ok) {
			in.d_unclaimed = (uint32_t)rng_range(0, MSG_COUNT_MAX);
			in.d_running = (uint32_t)rng_range(0, MSG_COUNT_MAX);
			in.d_http_status = 200;
		} else {
			in.d_error = (uint8_t)rng_range(
			    DEMAND_ERR_HTTP, DEMAND_ERR_LAST);
			in.d_http_status =
			    (uint16_t)(rng_range(0, 1) ? rng_range(100, 599)
			                               : 0);
		}
		n = (size_t)rng_range(3, MSG_CLASS_MAX);
		for (i = 0; i < n; i++)
			in.d_class[i] = chars[rng_range(0, sizeof(chars) - 2)];
		in.d_class[0] = 'o';
		in.d_class[rng_range(1, n - 2)] = '/';
		for (i = 1; i < n; i++)
			if (in.d_class[i - 1] == '/')
				in.d_class[i] = 'n';
		buf_reset(&b);
		msg_demand_encode(&in, (uint32_t)round, &b);
		expect("round trip",
		    msg_demand_decode(b.b_data, b.b_len, &h, &out), MSG_OK);
		assert_int_equal(h.h_seq, (uint32_t)round);
		assert_int_equal(out.d_cycle, in.d_cycle);
		assert_int_equal(out.d_observed_ms, in.d_observed_ms);
		assert_int_equal(out.d_ok, in.d_ok);
		assert_int_equal(out.d_error, in.d_error);
		assert_int_equal(out.d_http_status, in.d_http_status);
		assert_int_equal(out.d_unclaimed, in.d_unclaimed);
		assert_int_equal(out.d_running, in.d_running);
		assert_string_equal(out.d_class, in.d_class);
	}
	buf_free(&b);
}

static void
test_names(void **state)
{
	enum msg_err e;
	int i;

	(void)state;
	for (e = MSG_OK; e < MSG_NERR; e++) {
		assert_non_null(msg_err_name(e));
		assert_string_not_equal(msg_err_name(e), "unknown");
	}
	assert_string_equal(msg_err_name(MSG_NERR), "unknown");
	assert_string_equal(msg_err_name((enum msg_err) - 1), "unknown");
	for (i = DEMAND_ERR_NONE; i <= DEMAND_ERR_LAST; i++)
		assert_string_not_equal(
		    demand_error_name((enum demand_error)i), "unknown");
	assert_string_equal(
	    demand_error_name(DEMAND_ERR_RATE_LIMITED), "rate_limited");
	assert_string_equal(
	    demand_error_name((enum demand_error)99), "unknown");
	assert_string_equal(health_role_name(ROLE_POLLER), "poller");
	assert_string_equal(health_role_name(ROLE_ACTUATOR), "actuator");
	assert_string_equal(health_role_name((enum health_role)0), "unknown");
	assert_string_equal(health_state_name(HEALTH_DEGRADED), "degraded");
	assert_string_equal(
	    health_state_name((enum health_state)9), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_demand_encode),
		cmocka_unit_test(test_golden_demand_decode),
		cmocka_unit_test(test_golden_health_query),
		cmocka_unit_test(test_golden_health_answer),
		cmocka_unit_test(test_encode_appends),
		cmocka_unit_test(test_header_errors),
		cmocka_unit_test(test_demand_length_errors),
		cmocka_unit_test(test_demand_range_errors),
		cmocka_unit_test(test_demand_class_errors),
		cmocka_unit_test(test_query_errors),
		cmocka_unit_test(test_health_errors),
		cmocka_unit_test(test_health_length_errors),
		cmocka_unit_test(test_golden_config),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_config_ack_errors),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_random_garbage),
		cmocka_unit_test(test_demand_round_trip),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
