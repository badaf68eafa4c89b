#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"
#include "log.h"
#include "util.h"

#define RETRY_AFTER_MAX_S 3600

int
http_global_init(void)
{
	CURLcode rc;

	if ((rc = curl_global_init(CURL_GLOBAL_DEFAULT)) != CURLE_OK) {
		log_error("curl_global_init: %s", curl_easy_strerror(rc));
		return -1;
	}
	return 0;
}

void
http_headers_free(struct curl_slist *h)
{
	struct curl_slist *p;

	for (p = h; p != NULL; p = p->next)
		if (p->data != NULL)
			explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(h);
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct http_xfer *x = arg;
	size_t n = size * nmemb;

	if (x->x_body.b_len + n > x->x_max_body) {
		x->x_too_big = true;
		return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
	}
	buf_append(&x->x_body, data, n);
	return n;
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	static const char retry_after[] = "retry-after";
	struct http_xfer *x = arg;
	size_t n = size * nmemb, nlen, vlen;
	const char *colon, *v;

	/* A new status line (after a 100 Continue, say) resets it. */
	if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		x->x_retry_after[0] = '\0';
		if (x->x_on_header != NULL)
			x->x_on_header(x, data, 0, NULL, 0);
		return n;
	}
	if ((colon = memchr(data, ':', n)) == NULL)
		return n;
	/* A field name is a token: white space in it or before the colon
	 * (RFC 9112 §5.1), or a folded continuation line, is not a field we
	 * read. */
	nlen = (size_t)(colon - data);
	if (nlen == 0 || memchr(data, ' ', nlen) != NULL ||
	    memchr(data, '\t', nlen) != NULL)
		return n;
	v = colon + 1;
	vlen = n - (size_t)(v - data);
	while (vlen > 0 && isspace((unsigned char)*v)) {
		v++;
		vlen--;
	}
	while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
		vlen--;
	if (nlen == sizeof(retry_after) - 1 &&
	    strncasecmp(data, retry_after, nlen) == 0) {
		if (vlen >= sizeof(x->x_retry_after))
			vlen = sizeof(x->x_retry_after) - 1;
		while (vlen > 0 && isspace((unsigned char)v[vlen - 1]))
			vlen--;
		memcpy(x->x_retry_after, v, vlen);
		x->x_retry_after[vlen] = '\0';
	}
	if (x->x_on_header != NULL)
		x->x_on_header(x, data, nlen, v, vlen);
	return n;
}

void
http_xfer_init(
    struct http_xfer *x, size_t max_body, uint64_t timeout_ms, void *owner)
{
	CURL *h;

	memset(x, 0, sizeof(*x));
	if ((h = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	x->x_easy = h;
	x->x_owner = owner;
	x->x_max_body = max_body;
	curl_easy_setopt(h, CURLOPT_PRIVATE, x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->x_errbuf);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(
	    h, CURLOPT_CONNECTTIMEOUT_MS, (long)HTTP_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, HTTP_USER_AGENT);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
}

void
http_xfer_reset(struct http_xfer *x)
{
	buf_reset(&x->x_body);
	x->x_too_big = false;
	x->x_status = 0;
	x->x_result = CURLE_OK;
	x->x_retry_after[0] = '\0';
	x->x_errbuf[0] = '\0';
	x->x_duration_us = 0;
	http_headers_free(x->x_headers);
	x->x_headers = NULL;
	if (x->x_req_body != NULL)
		free_wipe(x->x_req_body, strlen(x->x_req_body));
	x->x_req_body = NULL;
}

void
http_xfer_free(struct http_xfer *x)
{
	if (x->x_easy == NULL)
		return;
	http_xfer_reset(x);
	buf_free(&x->x_body);
	curl_easy_cleanup(x->x_easy);
	x->x_easy = NULL;
}

void
http_xfer_request(struct http_xfer *x, const char *method, const char *url,
    struct curl_slist *headers, char *body)
{
	CURL *h = x->x_easy;

	http_xfer_reset(x);
	x->x_headers = headers;
	x->x_req_body = body;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, NULL);
		curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	} else {
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
		curl_easy_setopt(
		    h, CURLOPT_POSTFIELDS, body != NULL ? body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE,
		    body != NULL ? (long)strlen(body) : 0L);
	}
}

/*
 * libcurl before 8.1.0 (Debian 12 has 7.88.1) keeps a pointer into the
 * previous transfer's stored headers (curl PR #11103): an answer whose
 * status line is followed by a folded line then reads and writes freed
 * memory.  A handle duplicated for each transfer has no such state; its
 * connections stay in the multi handle's pool.  Found by fuzzing
 * (tests/fuzz/circleci_http.c).
 */
static int
fresh_handle(struct http_xfer *x)
{
	CURL *h;

	if (x->x_start_us == 0 ||
	    curl_version_info(CURLVERSION_NOW)->version_num >= 0x080100)
		return 0;
	if ((h = curl_easy_duphandle(x->x_easy)) == NULL) {
		log_warnx("curl_easy_duphandle failed");
		return -1;
	}
	curl_easy_cleanup(x->x_easy);
	x->x_easy = h;
	return 0;
}

int
http_xfer_start(struct http_xfer *x, CURLM *multi)
{
	CURLMcode rc;

	if (fresh_handle(x) == -1)
		return -1;
	x->x_start_us = now_us();
	if ((rc = curl_multi_add_handle(multi, x->x_easy)) != CURLM_OK) {
		log_warnx(
		    "curl_multi_add_handle: %s", curl_multi_strerror(rc));
		return -1;
	}
	x->x_busy = true;
	return 0;
}

void
http_xfer_finish(struct http_xfer *x, CURLM *multi, CURLcode result)
{
	x->x_result = result;
	x->x_duration_us = now_us() - x->x_start_us;
	curl_easy_getinfo(x->x_easy, CURLINFO_RESPONSE_CODE, &x->x_status);
	curl_multi_remove_handle(multi, x->x_easy);
	x->x_busy = false;
}

void
http_xfer_describe(const struct http_xfer *x, char *out, size_t size)
{
	if (x->x_too_big)
		log_redactf(out, size, "response body larger than %zu bytes",
		    x->x_max_body);
	else if (x->x_result == CURLE_OPERATION_TIMEDOUT)
		log_redactf(out, size, "timeout after %llu ms (%s)",
		    (unsigned long long)(x->x_duration_us / 1000),
		    x->x_errbuf[0] ? x->x_errbuf : "no answer");
	else if (x->x_result != CURLE_OK)
		log_redactf(out, size, "%s",
		    x->x_errbuf[0] ? x->x_errbuf
		                   : curl_easy_strerror(x->x_result));
	else
		log_redactf(out, size, "HTTP %ld", x->x_status);
}

void
http_xfer_code(const struct http_xfer *x, char *out, size_t size)
{
	if (x->x_result != CURLE_OK && !x->x_too_big)
		snprintf(out, size, "error");
	else
		snprintf(out, size, "%ld", x->x_status);
}

int
http_retry_after_ms(const char *v, uint64_t *delay_ms)
{
	char *end;
	unsigned long long s;
	time_t when, now;

	if (v == NULL || v[0] == '\0')
		return -1;
	if (isdigit((unsigned char)v[0])) {
		s = strtoull(v, &end, 10);
		if (*end != '\0')
			return -1;
	} else {
		if ((when = curl_getdate(v, NULL)) == -1)
			return -1;
		now = time(NULL);
		s = when > now ? (unsigned long long)(when - now) : 0;
	}
	if (s > RETRY_AFTER_MAX_S)
		s = RETRY_AFTER_MAX_S;
	*delay_ms = s * 1000;
	return 0;
}

void
http_query_escape(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char enc[3];

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '_' || c == '.' ||
		    c == '~' || c == '/') {
			buf_append(b, s, 1);
			continue;
		}
		enc[0] = '%';
		enc[1] = hex[c >> 4];
		enc[2] = hex[c & 15];
		buf_append(b, enc, 3);
	}
}
