/*
 * A CircleCI answer as it arrives: raw HTTP response bytes read by libcurl
 * through the poller's transfer code (common/http.c: body cap, Retry-After
 * header) and judged by poller/parse.c.  curl connects to a Unix socket
 * in the harness's temporary directory, which answers with the bytes, so
 * nothing touches the network.  The body kept never exceeds the cap and a
 * transfer over it is a parse failure; Retry-After is kept trimmed, at most 63
 * bytes, from a retry-after header of the answer; the verdict follows the
 * status.
 *
 * Input: one byte (the fetch kind and the body cap), then the response.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fuzz.h"
#include "http.h"
#include "log.h"
#include "poller.h"
#include "util.h"

static struct http_xfer xfer;
static CURLM *multi;
static char sock_path[128];
static int listen_fd = -1;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	(void)argc;
	(void)argv;
	fuzz_quiet();
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((multi = curl_multi_init()) == NULL)
		abort();
	http_xfer_init(&xfer, POLL_BODY_MAX, 5000, NULL);
	snprintf(sock_path, sizeof(sock_path), "%s/api.sock", fuzz_tmpdir());
	strlcpy_rp(sun.sun_path, sock_path, sizeof(sun.sun_path));
	if ((listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0)) ==
	        -1 ||
	    bind(listen_fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(listen_fd, 4) == -1) {
		perror(sock_path);
		abort();
	}
	return 0;
}

/* Whether v (as kept) is a trimmed piece of a retry-after header in the
 * response. */
static bool
from_header(const char *v, const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *line;
	size_t n = strlen(v);

	for (line = p; line < end; line++) {
		if (line != p && line[-1] != '\n')
			continue;
		if ((size_t)(end - line) < 12 ||
		    strncasecmp(line, "retry-after:", 12) != 0)
			continue;
		for (p = line + 12;
		     p < end && *p != '\n' && isspace((unsigned char)*p); p++)
			;
		if ((size_t)(end - p) >= n && memcmp(p, v, n) == 0)
			return true;
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fetch_result r;
	enum fetch_kind kind;
	const CURLMsg *msg;
	int fd = -1, running = 1, left;
	size_t n;

	if (size < 1)
		return 0;
	kind = data[0] & 1 ? FETCH_RUNNING : FETCH_UNCLAIMED;
	http_xfer_request(&xfer, "GET",
	    "http://127.0.0.1/api/v3/runner/tasks?resource-class=a%2Fb", NULL,
	    NULL);
	xfer.x_max_body = 64 + (size_t)(data[0] >> 1) * 32;
	data++;
	size--;

	curl_easy_setopt(xfer.x_easy, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(xfer.x_easy, CURLOPT_UNIX_SOCKET_PATH, sock_path);
	curl_easy_setopt(xfer.x_easy, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(xfer.x_easy, CURLOPT_FORBID_REUSE, 1L);
	FUZZ_CHECK(http_xfer_start(&xfer, multi) == 0, "http_xfer_start");
	/* Once curl has connected, the whole answer, then end of file. */
	while (running > 0) {
		FUZZ_CHECK(curl_multi_perform(multi, &running) == CURLM_OK,
		    "curl_multi_perform");
		if (fd == -1 &&
		    (fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) !=
		        -1) {
			FUZZ_CHECK(
			    write(fd, data, size) == (ssize_t)size, "write");
			shutdown(fd, SHUT_WR);
		}
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 10, NULL);
	}
	msg = curl_multi_info_read(multi, &left);
	FUZZ_CHECK(msg != NULL && msg->msg == CURLMSG_DONE, "no completion");
	http_xfer_finish(&xfer, multi, msg->data.result);
	if (fd != -1)
		close(fd);

	FUZZ_CHECK(xfer.x_body.b_len <= xfer.x_max_body,
	    "kept %zu bytes of body, the cap is %zu", xfer.x_body.b_len,
	    xfer.x_max_body);
	n = strlen(xfer.x_retry_after);
	FUZZ_CHECK(n < sizeof(xfer.x_retry_after), "Retry-After overflows");
	if (n > 0) {
		FUZZ_CHECK(!isspace((unsigned char)xfer.x_retry_after[0]) &&
		        !isspace((unsigned char)xfer.x_retry_after[n - 1]),
		    "Retry-After \"%s\" not trimmed", xfer.x_retry_after);
		FUZZ_CHECK(from_header(xfer.x_retry_after, data, size),
		    "Retry-After \"%s\" is from no retry-after header",
		    xfer.x_retry_after);
	}

	parse_result(&xfer, kind, &r);
	FUZZ_CHECK(memchr(r.fr_text, '\0', sizeof(r.fr_text)) != NULL,
	    "reason not terminated");
	if (xfer.x_too_big)
		FUZZ_CHECK(!r.fr_ok && r.fr_error == DEMAND_ERR_PARSE,
		    "a body over the cap judged %d", r.fr_error);
	else if (xfer.x_result != CURLE_OK)
		FUZZ_CHECK(!r.fr_ok && r.fr_error == DEMAND_ERR_TRANSPORT,
		    "transfer error %d judged %d", xfer.x_result, r.fr_error);
	if (r.fr_ok)
		FUZZ_CHECK(xfer.x_status == 200 && r.fr_count <= MSG_COUNT_MAX,
		    "a count of %u from HTTP %ld", r.fr_count, xfer.x_status);
	if (r.fr_have_retry_after)
		FUZZ_CHECK(xfer.x_status == 429 && n > 0 &&
		        r.fr_retry_after_ms <= 3600000,
		    "Retry-After of %llu ms from HTTP %ld",
		    (unsigned long long)r.fr_retry_after_ms, xfer.x_status);
	return 0;
}
