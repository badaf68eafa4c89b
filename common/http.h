/*
 * One HTTP transfer on a libcurl easy handle, reused across requests so
 * connections stay alive: response body capped in size, status,
 * Retry-After, timing and a readable error.  Driven by a curl multi handle
 * in the owner's event loop (never curl_easy_perform).
 */
#ifndef RP_HTTP_H
#define RP_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"

#define HTTP_USER_AGENT         "runner-provisioner/" RP_VERSION
#define HTTP_CONNECT_TIMEOUT_MS 5000

struct http_xfer;

/* Sees every response header line, name and value trimmed (the status
 * line has namelen 0).  Runs inside libcurl's transfer. */
typedef void http_header_fn(struct http_xfer *, const char *name,
    size_t namelen, const char *value, size_t valuelen);

struct http_xfer {
	CURL *x_easy;
	void *x_owner;     /* back-pointer for completions */
	struct buf x_body; /* response body */
	size_t x_max_body;
	bool x_too_big; /* body exceeded x_max_body */
	bool x_busy;    /* added to the multi handle */
	long x_status;  /* 0: no HTTP answer */
	CURLcode x_result;
	char x_retry_after[64]; /* raw header value */
	char x_errbuf[CURL_ERROR_SIZE];
	uint64_t x_start_us;
	uint64_t x_duration_us;
	struct curl_slist *x_headers; /* owned, per request; wiped */
	char *x_req_body;             /* owned, per request; wiped */
	http_header_fn *x_on_header;  /* NULL: none */
};

/* http.c */
/* curl_global_init.  0, or -1 (logged). */
int http_global_init(void);
/* Wipes every header (they carry tokens) and frees the list. */
void http_headers_free(struct curl_slist *);
/* Creates the easy handle with our defaults (TLS verification on, HTTPS
 * only, timeouts, keep-alive).  owner is stored for completions. */
void http_xfer_init(
    struct http_xfer *, size_t max_body, uint64_t timeout_ms, void *owner);
void http_xfer_free(struct http_xfer *);
/* Clears the previous answer and request headers/body; keeps the handle
 * and its connection. */
void http_xfer_reset(struct http_xfer *);
/* Takes ownership of headers and body (either may be NULL). */
void http_xfer_request(struct http_xfer *, const char *method, const char *url,
    struct curl_slist *headers, char *body);
int http_xfer_start(struct http_xfer *, CURLM *);
/* Records the outcome of a finished transfer and detaches it. */
void http_xfer_finish(struct http_xfer *, CURLM *, CURLcode);
/* A short description of a failure: "HTTP 503", "timeout after 10000
 * ms", libcurl's error text. */
void http_xfer_describe(const struct http_xfer *, char *, size_t);
/* The outcome as a metric label: the HTTP status, or "error" when no
 * answer came. */
void http_xfer_code(const struct http_xfer *, char *, size_t);
/* Parses a Retry-After value (delta-seconds or HTTP-date) into a delay
 * in ms from now; -1 when unparseable. */
int http_retry_after_ms(const char *value, uint64_t *delay_ms);
/* Appends s to b percent-encoded for a URL query value. */
void http_query_escape(struct buf *b, const char *s);

#endif
