#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "memscan.h"
#include "util.h"

#define CAP_MS (3600 * 1000ULL)

/* An IMF-fixdate (RFC 9110 §5.6.7) for t. */
static void
http_date(time_t t, char *out, size_t size)
{
	struct tm tm;

	assert_non_null(gmtime_r(&t, &tm));
	assert_true(strftime(out, size, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0);
}

static void
test_retry_after_seconds(void **state)
{
	static const struct {
		const char *in;
		uint64_t want_ms;
	} cases[] = {
		{ "0", 0 },
		{ "1", 1000 },
		{ "120", 120000 },
		{ "3600", CAP_MS },
		/* longer waits are capped: a hostile or broken server must not
		 * stop polling for days */
		{ "3601", CAP_MS },
		{ "86400", CAP_MS },
		{ "99999999999999999999999999", CAP_MS },
	};
	uint64_t ms;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		ms = 424242;
		if (http_retry_after_ms(cases[i].in, &ms) != 0)
			fail_msg("\"%s\" rejected", cases[i].in);
		if (ms != cases[i].want_ms)
			fail_msg("\"%s\": %llu ms, want %llu", cases[i].in,
			    (unsigned long long)ms,
			    (unsigned long long)cases[i].want_ms);
	}
}

static void
test_retry_after_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"  ",
		"-5",
		"1.5",
		"120abc",
		"12 0",
		"soon",
		"0x10",
		"+5",
		"Mon, 32 Foo 2024 99:99:99 GMT",
	};
	uint64_t ms;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(bad); i++)
		if (http_retry_after_ms(bad[i], &ms) != -1)
			fail_msg("\"%s\" accepted (%llu ms)", bad[i],
			    (unsigned long long)ms);
	assert_int_equal(http_retry_after_ms(NULL, &ms), -1);
}

static void
test_retry_after_dates(void **state)
{
	char date[64];
	time_t now = time(NULL);
	uint64_t ms;

	(void)state;
	/* in the past: retry now */
	http_date(now - 600, date, sizeof(date));
	ms = 424242;
	assert_int_equal(http_retry_after_ms(date, &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(
	    http_retry_after_ms("Sun, 06 Nov 1994 08:49:37 GMT", &ms), 0);
	assert_int_equal(ms, 0);
	/* the obsolete RFC 850 and asctime forms too */
	assert_int_equal(
	    http_retry_after_ms("Sunday, 06-Nov-94 08:49:37 GMT", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(
	    http_retry_after_ms("Sun Nov  6 08:49:37 1994", &ms), 0);
	assert_int_equal(ms, 0);

	/* two minutes ahead: about 120 s (the clock may tick meanwhile) */
	http_date(now + 120, date, sizeof(date));
	assert_int_equal(http_retry_after_ms(date, &ms), 0);
	assert_in_range(ms, 100000, 120000);
	assert_int_equal(ms % 1000, 0);

	/* two days ahead: capped */
	http_date(now + 2 * 86400, date, sizeof(date));
	assert_int_equal(http_retry_after_ms(date, &ms), 0);
	assert_int_equal(ms, CAP_MS);
}

static void
test_query_escape(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "dev-team/custom:arm64", "dev-team/custom%3Aarm64" },
		{ "my-org/my-runner", "my-org/my-runner" },
		{ "Org_1/Name.v2~x", "Org_1/Name.v2~x" },
		{ "a+b", "a%2Bb" },
		{ "a b", "a%20b" },
		{ "caf\xc3\xa9", "caf%C3%A9" },
		{ "%", "%25" },
		{ "&=?#", "%26%3D%3F%23" },
		{ "\x01\x7f\xff", "%01%7F%FF" },
		{ "", "" },
	};
	struct buf b = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		buf_reset(&b);
		http_query_escape(&b, cases[i].in);
		assert_string_equal(buf_str(&b), cases[i].want);
	}
	/* appends after what is there */
	buf_reset(&b);
	buf_puts(&b, "/api/v3/runner/tasks?resource-class=");
	http_query_escape(&b, "ns/a:b");
	assert_string_equal(
	    buf_str(&b), "/api/v3/runner/tasks?resource-class=ns/a%3Ab");
	buf_free(&b);
}

/* The failure text operators read in logs and /ready. */
static void
test_describe(void **state)
{
	struct http_xfer x;
	char out[256];

	(void)state;
	memset(&x, 0, sizeof(x));
	x.x_status = 503;
	http_xfer_describe(&x, out, sizeof(out));
	assert_string_equal(out, "HTTP 503");

	x.x_too_big = true;
	x.x_max_body = 65536;
	http_xfer_describe(&x, out, sizeof(out));
	assert_non_null(strstr(out, "65536"));
	assert_non_null(strstr(out, "larger"));

	memset(&x, 0, sizeof(x));
	x.x_result = CURLE_OPERATION_TIMEDOUT;
	x.x_duration_us = 10000000;
	http_xfer_describe(&x, out, sizeof(out));
	assert_non_null(strstr(out, "timeout after 10000 ms"));

	memset(&x, 0, sizeof(x));
	x.x_result = CURLE_COULDNT_CONNECT;
	strcpy(x.x_errbuf, "Failed to connect to 127.0.0.1 port 1");
	http_xfer_describe(&x, out, sizeof(out));
	assert_string_equal(out, "Failed to connect to 127.0.0.1 port 1");

	x.x_errbuf[0] = '\0';
	http_xfer_describe(&x, out, sizeof(out));
	assert_string_equal(out, curl_easy_strerror(CURLE_COULDNT_CONNECT));
}

/* A secret echoed in libcurl's error text (a URL, say) is redacted. */
static void
test_describe_redacts(void **state)
{
	struct http_xfer x;
	char out[256];

	(void)state;
	log_secret_add("s3cr3t-token-abc");
	memset(&x, 0, sizeof(x));
	x.x_result = CURLE_URL_MALFORMAT;
	strcpy(x.x_errbuf, "bad URL https://h/?t=s3cr3t-token-abc");
	http_xfer_describe(&x, out, sizeof(out));
	assert_null(strstr(out, "s3cr3t-token-abc"));
	assert_non_null(strstr(out, "[REDACTED]"));
	log_secrets_clear();
}

/* A transfer object can be created, reset and freed without any network
 * (freeing twice is harmless). */
static void
test_xfer_lifecycle(void **state)
{
	struct http_xfer x;

	(void)state;
	http_xfer_init(&x, 1024, 5000, &x);
	assert_non_null(x.x_easy);
	assert_ptr_equal(x.x_owner, &x);
	assert_int_equal(x.x_max_body, 1024);
	http_xfer_request(&x, "PATCH", "https://127.0.0.1:1/x",
	    curl_slist_append(NULL, "Accept: x"), xstrdup("{\"a\":1}"));
	assert_non_null(x.x_headers);
	assert_non_null(x.x_req_body);
	http_xfer_reset(&x);
	assert_null(x.x_headers);
	assert_null(x.x_req_body);
	http_xfer_free(&x);
	assert_null(x.x_easy);
	http_xfer_free(&x);
}

/* A request's header list and body carry tokens: once the transfer moves
 * on (reset, or freed), no copy is left in memory. */
static char tok[49];

static void
test_request_copies_wiped(void **state)
{
	struct curl_slist *h;
	struct http_xfer x;
	char where[160];
	char *line, *body;
	size_t n;

	(void)state;
	memscan_token(tok, sizeof(tok) - 1);
	http_xfer_init(&x, 1024, 5000, &x);
	line = xasprintf("Authorization: Bearer %s", tok);
	h = curl_slist_append(NULL, line);
	explicit_bzero(line, strlen(line));
	free(line);
	h = curl_slist_append(h, "Accept: application/json");
	body = xasprintf("{\"data\":{\"userdata\":\"%s\"}}", tok);
	http_xfer_request(&x, "PUT", "https://127.0.0.1:1/x", h, body);
	assert_int_not_equal(memscan_count(tok, strlen(tok), NULL, 0), 0);
	http_xfer_reset(&x);
	n = memscan_count(tok, strlen(tok), where, sizeof(where));
	if (n != 0)
		fail_msg("after reset: %zu pieces of the token, first at %s",
		    n, where);
	/* The same through http_xfer_free, and for a body of the answer. */
	line = xasprintf("Circle-Token: %s", tok);
	h = curl_slist_append(NULL, line);
	explicit_bzero(line, strlen(line));
	free(line);
	http_xfer_request(&x, "GET", "https://127.0.0.1:1/x", h, NULL);
	buf_puts(&x.x_body, "{\"message\":\"bad token ");
	buf_puts(&x.x_body, tok);
	buf_puts(&x.x_body, "\"}");
	http_xfer_free(&x);
	n = memscan_count(tok, strlen(tok), where, sizeof(where));
	if (n != 0)
		fail_msg("after free: %zu pieces of the token, first at %s", n,
		    where);
}

/* One end of a transfer: a Unix socket that answers each request on the
 * connection it accepted. */
struct server {
	int s_listen;
	int s_conn;
	int s_accepted;
	char s_req[4096];
	size_t s_len;
};

/* Accepts a connection when there is none, reads a request, answers it
 * once (*answered).  A connection curl closed is closed here too. */
static void
serve(struct server *s, const char *answer, bool *answered)
{
	ssize_t n;

	if (s->s_conn == -1 &&
	    (s->s_conn = accept4(
	         s->s_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) != -1)
		s->s_accepted++;
	if (s->s_conn == -1 || *answered)
		return;
	n = read(
	    s->s_conn, s->s_req + s->s_len, sizeof(s->s_req) - s->s_len - 1);
	if (n == 0) {
		close(s->s_conn);
		s->s_conn = -1;
		return;
	}
	if (n < 0)
		return;
	s->s_len += (size_t)n;
	s->s_req[s->s_len] = '\0';
	if (strstr(s->s_req, "\r\n\r\n") == NULL)
		return;
	assert_int_equal(
	    write(s->s_conn, answer, strlen(answer)), (ssize_t)strlen(answer));
	*answered = true;
	s->s_len = 0;
}

/* Runs one transfer of x against s, which answers with answer. */
static void
transfer(struct server *s, struct http_xfer *x, CURLM *m, const char *answer)
{
	const CURLMsg *msg;
	int running = 1, left;
	bool answered = false;

	http_xfer_request(x, "GET", "http://127.0.0.1/x", NULL, NULL);
	assert_int_equal(http_xfer_start(x, m), 0);
	while (running > 0) {
		assert_int_equal(curl_multi_perform(m, &running), CURLM_OK);
		serve(s, answer, &answered);
		if (running > 0)
			curl_multi_poll(m, NULL, 0, 10, NULL);
	}
	msg = curl_multi_info_read(m, &left);
	assert_non_null(msg);
	http_xfer_finish(x, m, msg->data.result);
}

/*
 * libcurl 7.88 (Debian 12) kept a pointer into the previous answer's
 * headers, so a folded line right after the next status line on a reused
 * handle read and wrote freed memory (AddressSanitizer: heap-use-after-free
 * in curl_multi_perform; glibc: "realloc(): invalid pointer"; found by
 * fuzzing).  Each transfer now starts on a fresh handle: such an answer is
 * an error (or, with a newer libcurl, read as it is), the connection is
 * still kept alive and reused, and the next transfer works.
 */
static void
test_folded_header_after_reuse(void **state)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char dir[] = "/tmp/http_test.XXXXXX";
	struct server s = { .s_conn = -1 };
	struct http_xfer x;
	CURLM *m;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/api.sock", dir);
	s.s_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	assert_true(s.s_listen >= 0);
	assert_int_equal(
	    bind(s.s_listen, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(s.s_listen, 4), 0);
	assert_non_null(m = curl_multi_init());
	http_xfer_init(&x, 1024, 5000, &x);
	curl_easy_setopt(x.x_easy, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(x.x_easy, CURLOPT_UNIX_SOCKET_PATH, sun.sun_path);

	transfer(&s, &x, m,
	    "HTTP/1.1 200 OK\r\nX-One: a\r\nContent-Length: 2\r\n\r\n{}");
	assert_int_equal(x.x_result, CURLE_OK);
	assert_int_equal(x.x_status, 200);
	transfer(&s, &x, m,
	    "HTTP/1.1 200 OK\r\n 07:28:00 GMT\r\nContent-Length: 2\r\n\r\n{}");
	assert_int_equal(s.s_accepted, 1); /* the kept-alive connection */
	transfer(&s, &x, m,
	    "HTTP/1.1 200 OK\r\nX-Three: c\r\nContent-Length: 2\r\n\r\n{}");
	assert_int_equal(x.x_result, CURLE_OK);
	assert_int_equal(x.x_status, 200);
	assert_string_equal(buf_str(&x.x_body), "{}");

	http_xfer_free(&x);
	curl_multi_cleanup(m);
	if (s.s_conn != -1)
		close(s.s_conn);
	close(s.s_listen);
	unlink(sun.sun_path);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_retry_after_seconds),
		cmocka_unit_test(test_retry_after_bad),
		cmocka_unit_test(test_retry_after_dates),
		cmocka_unit_test(test_query_escape),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_describe_redacts),
		cmocka_unit_test(test_xfer_lifecycle),
		cmocka_unit_test(test_request_copies_wiped),
		cmocka_unit_test(test_folded_header_after_reuse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
