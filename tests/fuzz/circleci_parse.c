/*
 * Judging CircleCI answers (poller/parse.c): a finished transfer with any
 * status, transport result, Retry-After value and body.  A count comes
 * only from a 200 whose body is a JSON object with the right key holding an
 * integer in range; every failure has a kind that follows from the status
 * and a reason; the reason never holds the API token, or the start of it,
 * even when the server quotes it back in its error message.
 *
 * Input: kind, status (2 bytes), flags, Retry-After (up to 63 bytes, as
 * the header callback keeps it), then the body.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "poller.h"

#define TOKEN        "CCIPAT_fuzzTokenValue0123456789abcdef"
#define TOKEN_PREFIX 8 /* more of the token than this must not show */

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	log_secret_add(TOKEN);
	return 0;
}

/* Whether text (n bytes) holds the token's first TOKEN_PREFIX bytes
 * other than as part of the whole token. */
static bool
has_prefix(const char *text, size_t n)
{
	char *m = fuzz_strndup(text, n), *p;
	bool found;

	for (p = m; (p = memmem(p, n - (size_t)(p - m), TOKEN,
	                 strlen(TOKEN))) != NULL;)
		memset(p, '#', strlen(TOKEN));
	found = memmem(m, n, TOKEN, TOKEN_PREFIX) != NULL;
	free(m);
	return found;
}

/* The reason shows the start of the token though neither the body nor
 * the message it quotes had it apart from whole tokens (which are
 * redacted): a token was cut before it was redacted. */
static bool
leaks_prefix(const char *reason, const struct buf *body, const char *message)
{
	if (!has_prefix(reason, strlen(reason)))
		return false;
	return !has_prefix(buf_str(body), body->b_len) &&
	    (message == NULL || !has_prefix(message, strlen(message)));
}

static void
check(const struct http_xfer *x, enum fetch_kind kind)
{
	static const char *const keys[] = { "unclaimed_task_count",
		"running_runner_tasks" };
	struct fetch_result r;
	json_t *j, *v, *msg;
	const char *message = NULL;

	memset(&r, 0x5a, sizeof(r));
	parse_result(x, kind, &r);
	FUZZ_CHECK(memchr(r.fr_text, '\0', sizeof(r.fr_text)) != NULL,
	    "reason not terminated");
	FUZZ_CHECK(strstr(r.fr_text, TOKEN) == NULL, "token in the reason: %s",
	    r.fr_text);
	j = json_loadb(buf_str(&x->x_body), x->x_body.b_len, 0, NULL);
	msg = json_object_get(j, "message");
	if (json_is_string(msg))
		message = json_string_value(msg);
	FUZZ_CHECK(!leaks_prefix(r.fr_text, &x->x_body, message),
	    "the start of the token in the reason: %s", r.fr_text);
	FUZZ_CHECK(r.fr_http_status <= 599, "status %u", r.fr_http_status);

	if (r.fr_ok) {
		FUZZ_CHECK(kind < FETCH_CHECK && x->x_status == 200 &&
		        x->x_result == CURLE_OK && !x->x_too_big,
		    "a count from status %ld result %d", x->x_status,
		    x->x_result);
		v = json_object_get(j, keys[kind]);
		FUZZ_CHECK(json_is_object(j) && json_is_integer(v) &&
		        json_integer_value(v) == (json_int_t)r.fr_count &&
		        r.fr_count <= MSG_COUNT_MAX,
		    "count %u from body %s", r.fr_count, buf_str(&x->x_body));
		FUZZ_CHECK(r.fr_error == DEMAND_ERR_NONE, "ok with error %d",
		    r.fr_error);
	} else {
		FUZZ_CHECK(r.fr_error > DEMAND_ERR_NONE &&
		        r.fr_error <= DEMAND_ERR_LAST,
		    "failure of kind %d", r.fr_error);
		FUZZ_CHECK(r.fr_text[0] != '\0', "failure without a reason");
		if (x->x_too_big)
			FUZZ_CHECK(r.fr_error == DEMAND_ERR_PARSE,
			    "too big, yet error %d", r.fr_error);
		else if (x->x_result != CURLE_OK)
			FUZZ_CHECK(r.fr_error == DEMAND_ERR_TRANSPORT &&
			        r.fr_http_status == 0,
			    "transport failure, yet error %d", r.fr_error);
		else if (x->x_status == 401 || x->x_status == 403)
			FUZZ_CHECK(r.fr_error == DEMAND_ERR_AUTH,
			    "HTTP %ld, yet error %d", x->x_status, r.fr_error);
		else if (x->x_status == 429)
			FUZZ_CHECK(r.fr_error == DEMAND_ERR_RATE_LIMITED,
			    "HTTP 429, yet error %d", r.fr_error);
		else if (x->x_status != 200)
			FUZZ_CHECK(r.fr_error == DEMAND_ERR_HTTP,
			    "HTTP %ld, yet error %d", x->x_status, r.fr_error);
		else
			FUZZ_CHECK(r.fr_error == DEMAND_ERR_PARSE,
			    "HTTP 200, yet error %d", r.fr_error);
	}
	FUZZ_CHECK(!r.fr_have_retry_after ||
	        (r.fr_error == DEMAND_ERR_RATE_LIMITED &&
	            r.fr_retry_after_ms <= 3600000),
	    "Retry-After %llu ms on error %d",
	    (unsigned long long)r.fr_retry_after_ms, r.fr_error);
	json_decref(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	struct http_xfer x;
	const uint8_t *p;
	uint8_t kind, flags;
	size_t n, count;
	char *ra;

	memset(&x, 0, sizeof(x));
	kind = fuzz_u8(&in) % FETCH_NKINDS;
	x.x_status = fuzz_u16(&in) % 1000;
	flags = fuzz_u8(&in);
	x.x_too_big = flags & 1;
	x.x_result = (flags & 2) ? (CURLcode)(flags >> 2) : CURLE_OK;
	x.x_max_body = POLL_BODY_MAX;
	ra = fuzz_str(&in, 63);
	memcpy(x.x_retry_after, ra, strlen(ra) + 1);
	free(ra);
	p = fuzz_rest(&in, &n);
	buf_append(&x.x_body, p, n);

	if (kind == FETCH_CHECK) {
		json_t *j = json_loadb(buf_str(&x.x_body), n, 0, NULL);
		json_t *items = json_object_get(j, "items");

		count = 12345;
		if (parse_runner_count(&x, &count) == 0)
			FUZZ_CHECK(json_is_array(items) &&
			        count == json_array_size(items),
			    "%zu runners from %s", count, buf_str(&x.x_body));
		else
			FUZZ_CHECK(!json_is_array(items) && count == 12345,
			    "runner list refused: %s", buf_str(&x.x_body));
		json_decref(j);
		kind = FETCH_UNCLAIMED;
	}
	check(&x, kind);
	buf_free(&x.x_body);
	return 0;
}
