#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "log.h"
#include "poller.h"
#include "util.h"

/* A finished transfer as fetch.c would hand it over. */
static void
xfer(struct http_xfer *x, long status, const char *body)
{
	memset(x, 0, sizeof(*x));
	x->x_max_body = POLL_BODY_MAX;
	x->x_status = status;
	x->x_result = CURLE_OK;
	if (body != NULL)
		buf_append(&x->x_body, body, strlen(body));
}

static void
judge(struct http_xfer *x, enum fetch_kind kind, struct fetch_result *r)
{
	memset(r, 0x5a, sizeof(*r));
	parse_result(x, kind, r);
	buf_free(&x->x_body);
}

static void
test_ok_bodies(void **state)
{
	static const struct {
		enum fetch_kind kind;
		const char *body;
		uint32_t want;
	} cases[] = {
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": 7}", 7 },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\":0}", 0 },
		{ FETCH_RUNNING, "{\"running_runner_tasks\": 3}\n", 3 },
		{ FETCH_RUNNING, "{\"running_runner_tasks\": 1000000}",
		    MSG_COUNT_MAX },
		/* extra keys are fine: the API may grow */
		{ FETCH_UNCLAIMED,
		    "{\"unclaimed_task_count\": 2, \"other\": [1, {\"x\": "
		    "null}]}",
		    2 },
		{ FETCH_RUNNING,
		    "{\"items\": [], \"running_runner_tasks\": 12, \"n\": "
		    "\"s\"}",
		    12 },
	};
	struct fetch_result r;
	struct http_xfer x;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		xfer(&x, 200, cases[i].body);
		judge(&x, cases[i].kind, &r);
		if (!r.fr_ok)
			fail_msg("%s rejected: %s", cases[i].body, r.fr_text);
		assert_int_equal(r.fr_count, cases[i].want);
		assert_int_equal(r.fr_error, DEMAND_ERR_NONE);
		assert_int_equal(r.fr_http_status, 200);
		assert_false(r.fr_have_retry_after);
	}
}

/* A 200 whose body is not exactly what we expect is a failure with a
 * readable reason, never a count (never a made-up zero). */
static void
test_bad_bodies(void **state)
{
	static const struct {
		enum fetch_kind kind;
		const char *body;
		const char *why; /* substring of the reason */
	} cases[] = {
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": \"3\"}",
		    "not an integer" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": 3.5}",
		    "not an integer" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": 3.0}",
		    "not an integer" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": null}",
		    "not an integer" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": true}",
		    "not an integer" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": [1]}",
		    "not an integer" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": -1}",
		    "out of range" },
		{ FETCH_RUNNING, "{\"running_runner_tasks\": 1000001}",
		    "out of range" },
		{ FETCH_RUNNING,
		    "{\"running_runner_tasks\": 9223372036854775807}",
		    "out of range" },
		{ FETCH_UNCLAIMED, "{\"running_runner_tasks\": 3}",
		    "unclaimed_task_count" },
		{ FETCH_RUNNING, "{\"unclaimed_task_count\": 3}",
		    "running_runner_tasks" },
		{ FETCH_UNCLAIMED, "{}", "missing" },
		{ FETCH_UNCLAIMED,
		    "{\"unclaimed_task_count\": 1, \"unclaimed_task_count\": "
		    "2}",
		    "duplicate" },
		{ FETCH_UNCLAIMED, "[{\"unclaimed_task_count\": 1}]",
		    "JSON object" },
		{ FETCH_UNCLAIMED, "3", "expected" },
		{ FETCH_UNCLAIMED, "\"x\"", "expected" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": 3",
		    "malformed" },
		{ FETCH_UNCLAIMED, "{\"unclaimed_task_count\": 3} {}",
		    "malformed" },
		{ FETCH_UNCLAIMED, "<html>502 Bad Gateway</html>",
		    "malformed" },
		{ FETCH_UNCLAIMED, "", "malformed" },
		{ FETCH_UNCLAIMED,
		    "{\"unclaimed_task_count\": 99999999999999999999}",
		    "malformed" },
	};
	struct fetch_result r;
	struct http_xfer x;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		xfer(&x, 200, cases[i].body);
		judge(&x, cases[i].kind, &r);
		if (r.fr_ok)
			fail_msg("accepted: %s", cases[i].body);
		assert_int_equal(r.fr_error, DEMAND_ERR_PARSE);
		assert_int_equal(r.fr_count, 0);
		assert_int_equal(r.fr_http_status, 200);
		if (strstr(r.fr_text, cases[i].why) == NULL)
			fail_msg("%s: reason \"%s\" lacks \"%s\"",
			    cases[i].body, r.fr_text, cases[i].why);
	}
}

/* A body with an embedded NUL is not silently cut at the NUL. */
static void
test_body_with_nul(void **state)
{
	static const char body[] = "{\"unclaimed_task_count\": 1}\0garbage";
	struct fetch_result r;
	struct http_xfer x;

	(void)state;
	xfer(&x, 200, NULL);
	buf_append(&x.x_body, body, sizeof(body) - 1);
	judge(&x, FETCH_UNCLAIMED, &r);
	assert_false(r.fr_ok);
	assert_int_equal(r.fr_error, DEMAND_ERR_PARSE);
}

static void
test_auth(void **state)
{
	static const long codes[] = { 401, 403 };
	struct fetch_result r;
	struct http_xfer x;
	char want[32];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(codes); i++) {
		xfer(&x, codes[i],
		    "{\"message\": \"Invalid token provided.\"}");
		judge(&x, FETCH_UNCLAIMED, &r);
		assert_false(r.fr_ok);
		assert_int_equal(r.fr_error, DEMAND_ERR_AUTH);
		assert_int_equal(r.fr_http_status, codes[i]);
		snprintf(want, sizeof(want), "HTTP %ld", codes[i]);
		assert_non_null(strstr(r.fr_text, want));
		assert_non_null(strstr(r.fr_text, "Invalid token provided."));
	}
}

static void
test_rate_limited(void **state)
{
	struct fetch_result r;
	struct http_xfer x;

	(void)state;
	xfer(&x, 429, "{\"message\": \"Rate limit exceeded\"}");
	strcpy(x.x_retry_after, "30");
	judge(&x, FETCH_RUNNING, &r);
	assert_false(r.fr_ok);
	assert_int_equal(r.fr_error, DEMAND_ERR_RATE_LIMITED);
	assert_int_equal(r.fr_http_status, 429);
	assert_true(r.fr_have_retry_after);
	assert_int_equal(r.fr_retry_after_ms, 30000);
	assert_non_null(strstr(r.fr_text, "429"));
	assert_non_null(strstr(r.fr_text, "Rate limit exceeded"));

	/* no Retry-After: the caller falls back to its backoff */
	xfer(&x, 429, "");
	judge(&x, FETCH_RUNNING, &r);
	assert_int_equal(r.fr_error, DEMAND_ERR_RATE_LIMITED);
	assert_false(r.fr_have_retry_after);
	assert_non_null(strstr(r.fr_text, "HTTP 429"));

	/* an unparseable one is treated as absent */
	xfer(&x, 429, NULL);
	strcpy(x.x_retry_after, "whenever");
	judge(&x, FETCH_UNCLAIMED, &r);
	assert_int_equal(r.fr_error, DEMAND_ERR_RATE_LIMITED);
	assert_false(r.fr_have_retry_after);
}

static void
test_http_errors(void **state)
{
	static const long codes[] = { 500, 502, 503, 404, 400, 301, 204, 100 };
	struct fetch_result r;
	struct http_xfer x;
	char want[32];
	size_t i;

	(void)state;
	xfer(&x, 500, "{\"message\": \"internal error: db down\"}");
	judge(&x, FETCH_UNCLAIMED, &r);
	assert_false(r.fr_ok);
	assert_int_equal(r.fr_error, DEMAND_ERR_HTTP);
	assert_int_equal(r.fr_http_status, 500);
	assert_string_equal(r.fr_text, "HTTP 500: internal error: db down");

	for (i = 0; i < nitems(codes); i++) {
		/* no JSON, or JSON without a string message: status only */
		xfer(&x, codes[i],
		    i % 2 ? "<html>oops</html>" : "{\"message\": 12}");
		judge(&x, FETCH_RUNNING, &r);
		assert_false(r.fr_ok);
		assert_int_equal(r.fr_error, DEMAND_ERR_HTTP);
		assert_int_equal(r.fr_http_status, codes[i]);
		snprintf(want, sizeof(want), "HTTP %ld", codes[i]);
		assert_string_equal(r.fr_text, want);
	}
}

/* A secret echoed back by the server never reaches the reason text (it
 * goes to logs and /ready). */
static void
test_message_redacted(void **state)
{
	struct fetch_result r;
	struct http_xfer x;

	(void)state;
	log_secret_add("CCIPAT_s3cr3tvalue");
	xfer(&x, 401, "{\"message\": \"token CCIPAT_s3cr3tvalue is bad\"}");
	judge(&x, FETCH_UNCLAIMED, &r);
	assert_int_equal(r.fr_error, DEMAND_ERR_AUTH);
	assert_null(strstr(r.fr_text, "CCIPAT_s3cr3tvalue"));
	assert_non_null(strstr(r.fr_text, "[REDACTED]"));
	log_secrets_clear();
}

/* A long message was cut to size before redaction, so a token quoted at
 * the cut left its first bytes in the reason, which goes to the log and
 * /ready (found by fuzzing). */
static void
test_message_redacted_before_cut(void **state)
{
	static const char token[] = "CCIPAT_s3cr3tvalue0123456789";
	struct fetch_result r;
	struct http_xfer x;
	char body[512];
	int pad;

	(void)state;
	log_secret_add(token);
	for (pad = 100; pad < 200; pad++) {
		snprintf(body, sizeof(body), "{\"message\": \"%*s%s\"}", pad,
		    "", token);
		xfer(&x, 403, body);
		judge(&x, FETCH_UNCLAIMED, &r);
		assert_int_equal(r.fr_error, DEMAND_ERR_AUTH);
		if (strstr(r.fr_text, "CCIPAT") != NULL)
			fail_msg("message of %d blanks + token: \"%s\"", pad,
			    r.fr_text);
	}
	log_secrets_clear();
}

static void
test_transport(void **state)
{
	struct fetch_result r;
	struct http_xfer x;

	(void)state;
	xfer(&x, 0, NULL);
	x.x_result = CURLE_COULDNT_CONNECT;
	strcpy(x.x_errbuf, "Failed to connect to 127.0.0.1 port 9 after 0 ms");
	judge(&x, FETCH_UNCLAIMED, &r);
	assert_false(r.fr_ok);
	assert_int_equal(r.fr_error, DEMAND_ERR_TRANSPORT);
	assert_int_equal(r.fr_http_status, 0);
	assert_non_null(strstr(r.fr_text, "Failed to connect"));

	/* a transfer cut after the status line: transport, not HTTP */
	xfer(&x, 200, "{\"unclaimed_ta");
	x.x_result = CURLE_PARTIAL_FILE;
	judge(&x, FETCH_UNCLAIMED, &r);
	assert_false(r.fr_ok);
	assert_int_equal(r.fr_error, DEMAND_ERR_TRANSPORT);
	assert_int_equal(r.fr_http_status, 0);

	xfer(&x, 0, NULL);
	x.x_result = CURLE_OPERATION_TIMEDOUT;
	x.x_duration_us = 10 * 1000 * 1000;
	judge(&x, FETCH_RUNNING, &r);
	assert_int_equal(r.fr_error, DEMAND_ERR_TRANSPORT);
	assert_non_null(strstr(r.fr_text, "timeout"));
}

static void
test_too_big(void **state)
{
	struct fetch_result r;
	struct http_xfer x;

	(void)state;
	xfer(&x, 200, "{\"unclaimed_task_count\": 1");
	x.x_too_big = true;
	x.x_result = CURLE_WRITE_ERROR;
	judge(&x, FETCH_UNCLAIMED, &r);
	assert_false(r.fr_ok);
	assert_int_equal(r.fr_error, DEMAND_ERR_PARSE);
	assert_non_null(strstr(r.fr_text, "larger than 65536 bytes"));
}

static void
test_runner_count(void **state)
{
	static const struct {
		const char *body;
		int rv;
		size_t count;
	} cases[] = {
		{ "{\"items\": []}", 0, 0 },
		{ "{\"items\": [{\"name\": \"a\"}, {\"name\": \"b\"}]}", 0,
		    2 },
		{ "{\"items\": [1, 2, 3], \"next_page_token\": null}", 0, 3 },
		{ "{\"items\": {}}", -1, 0 },
		{ "{\"items\": null}", -1, 0 },
		{ "{}", -1, 0 },
		{ "[]", -1, 0 },
		{ "{\"items\": [", -1, 0 },
		{ "", -1, 0 },
	};
	struct http_xfer x;
	size_t i, n;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		xfer(&x, 200, cases[i].body);
		n = 4242;
		if (parse_runner_count(&x, &n) != cases[i].rv)
			fail_msg("%s: wrong verdict", cases[i].body);
		if (cases[i].rv == 0)
			assert_int_equal(n, cases[i].count);
		buf_free(&x.x_body);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok_bodies),
		cmocka_unit_test(test_bad_bodies),
		cmocka_unit_test(test_body_with_nul),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_rate_limited),
		cmocka_unit_test(test_http_errors),
		cmocka_unit_test(test_message_redacted),
		cmocka_unit_test(test_message_redacted_before_cut),
		cmocka_unit_test(test_transport),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_runner_count),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
