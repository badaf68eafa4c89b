/* Judging CircleCI answers: status codes and strict JSON bodies. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "poller.h"
#include "util.h"

static const char *const count_keys[] = {
	[FETCH_UNCLAIMED] = "unclaimed_task_count",
	[FETCH_RUNNING] = "running_runner_tasks",
};

static void fail(struct fetch_result *r, enum demand_error e, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));

static void
fail(struct fetch_result *r, enum demand_error e, const char *fmt, ...)
{
	va_list ap;

	r->fr_ok = false;
	r->fr_error = e;
	va_start(ap, fmt);
	log_vredactf(r->fr_text, sizeof(r->fr_text), fmt, ap);
	va_end(ap);
}

/* CircleCI errors carry {"message": "..."}; quote it when present.  It is
 * redacted whole before it is cut to size: a token the server quotes back
 * must not leave its first bytes at the cut. */
static void
error_message(const struct http_xfer *x, char *out, size_t size)
{
	json_t *j, *m;

	out[0] = '\0';
	j = json_loadb(buf_str(&x->x_body), x->x_body.b_len, 0, NULL);
	if ((m = json_object_get(j, "message")) != NULL && json_is_string(m))
		log_redactf(out, size, ": %s", json_string_value(m));
	json_decref(j);
}

void
parse_result(
    const struct http_xfer *x, enum fetch_kind kind, struct fetch_result *r)
{
	const char *key = kind < nitems(count_keys) ? count_keys[kind] : "";
	char msg[160];
	json_error_t jerr;
	json_t *j, *v;
	json_int_t n;

	memset(r, 0, sizeof(*r));
	r->fr_http_status =
	    x->x_status > 0 && x->x_status < 600 ? (uint16_t)x->x_status : 0;
	if (x->x_too_big) {
		fail(r, DEMAND_ERR_PARSE,
		    "response body larger than %zu bytes", x->x_max_body);
		return;
	}
	if (x->x_result != CURLE_OK) {
		r->fr_http_status = 0;
		r->fr_error = DEMAND_ERR_TRANSPORT;
		http_xfer_describe(x, r->fr_text, sizeof(r->fr_text));
		return;
	}
	if (x->x_status != 200) {
		error_message(x, msg, sizeof(msg));
		if (x->x_status == 401 || x->x_status == 403)
			fail(r, DEMAND_ERR_AUTH, "HTTP %ld%s", x->x_status,
			    msg);
		else if (x->x_status == 429) {
			fail(r, DEMAND_ERR_RATE_LIMITED, "HTTP 429%s", msg);
			r->fr_have_retry_after =
			    http_retry_after_ms(
			        x->x_retry_after, &r->fr_retry_after_ms) == 0;
		} else
			fail(r, DEMAND_ERR_HTTP, "HTTP %ld%s", x->x_status,
			    msg);
		return;
	}
	j = json_loadb(buf_str(&x->x_body), x->x_body.b_len,
	    JSON_REJECT_DUPLICATES, &jerr);
	if (j == NULL) {
		fail(r, DEMAND_ERR_PARSE, "malformed JSON at line %d: %s",
		    jerr.line, jerr.text);
		return;
	}
	v = json_object_get(j, key);
	if (!json_is_object(j))
		fail(r, DEMAND_ERR_PARSE, "expected a JSON object");
	else if (v == NULL)
		fail(r, DEMAND_ERR_PARSE, "\"%s\" missing", key);
	else if (!json_is_integer(v))
		fail(r, DEMAND_ERR_PARSE, "\"%s\" is not an integer", key);
	else if ((n = json_integer_value(v)) < 0 || n > MSG_COUNT_MAX)
		fail(r, DEMAND_ERR_PARSE, "\"%s\" out of range: %lld", key,
		    (long long)n);
	else {
		r->fr_ok = true;
		r->fr_count = (uint32_t)n;
	}
	json_decref(j);
}

int
parse_runner_count(const struct http_xfer *x, size_t *count)
{
	json_t *j, *items;
	int rv = -1;

	j = json_loadb(buf_str(&x->x_body), x->x_body.b_len, 0, NULL);
	items = json_object_get(j, "items");
	if (json_is_array(items)) {
		*count = json_array_size(items);
		rv = 0;
	}
	json_decref(j);
	return rv;
}
