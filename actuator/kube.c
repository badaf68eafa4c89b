#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "kube.h"
#include "log.h"
#include "util.h"

struct kube_call {
	struct http_xfer kc_xfer;
	struct kube *kc_kube;
	enum kube_verb kc_verb;
	char *kc_method;
	char *kc_url;
	char *kc_content_type;
	char *kc_body; /* kept to resend after a 401 */
	bool kc_retried;
	kube_cb kc_cb;
	void *kc_arg;
	struct kube_call *kc_next;  /* free list */
	struct kube_call *kc_bprev; /* in-flight list */
	struct kube_call *kc_bnext;
};

struct kube {
	struct kube_creds *k_creds;
	CURLM *k_multi;
	int k_inflight;
	struct kube_call *k_free;
	struct kube_call *k_busy; /* in flight */
	int k_nfree;
	bool k_denied[KV_COUNT]; /* 403 logged, until success */
	bool k_unreachable;
	bool k_unauthorized;
	struct metric_family *k_m_requests;
	struct metric_series *k_m_duration;
};

struct kube *
kube_new(struct kube_creds *kc, CURLM *multi, struct metrics *m)
{
	static const double lat[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
		1, 2.5, 5, 10 };
	struct kube *k = xcalloc(1, sizeof(*k));

	k->k_creds = kc;
	k->k_multi = multi;
	curl_multi_setopt(
	    multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)KUBE_HOST_CONNS);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)KUBE_HOST_CONNS);
	k->k_m_requests =
	    metrics_family(m, METRIC_COUNTER, "kube_requests_total",
	        "Kubernetes API requests by verb, resource and HTTP status "
	        "(\"error\": no answer).",
	        (const char *[]){ "verb", "resource", "code", NULL }, NULL, 0);
	k->k_m_duration = metric_single(metrics_family(m, METRIC_HISTOGRAM,
	    "kube_request_duration_seconds", "Kubernetes API request latency.",
	    NULL, lat, nitems(lat)));
	return k;
}

static void
call_free(struct kube_call *c)
{
	free(c->kc_method);
	free(c->kc_url);
	free(c->kc_content_type);
	/* Secret bodies carry the user data, runner token included. */
	if (c->kc_body != NULL)
		free_wipe(c->kc_body, strlen(c->kc_body));
	c->kc_method = c->kc_url = c->kc_content_type = c->kc_body = NULL;
}

/* Keeps a few idle calls (their curl handles hold connections' state) and
 * no large response bodies: a burst of requests or a big list must not
 * stay resident. */
static void
call_release(struct kube *k, struct kube_call *c)
{
	call_free(c);
	if (k->k_nfree >= KUBE_IDLE_CALLS) {
		http_xfer_free(&c->kc_xfer);
		free(c);
		return;
	}
	if (c->kc_xfer.x_body.b_cap > KUBE_IDLE_BODY_MAX)
		buf_free(&c->kc_xfer.x_body);
	c->kc_next = k->k_free;
	k->k_free = c;
	k->k_nfree++;
}

void
kube_free(struct kube *k)
{
	struct kube_call *c;

	struct kube_reply r;

	if (k == NULL)
		return;
	/* Requests still out are abandoned; their owners get a cancelled
	 * reply (status -1) so they can free what they passed as arg. */
	while ((c = k->k_busy) != NULL) {
		k->k_busy = c->kc_bnext;
		curl_multi_remove_handle(k->k_multi, c->kc_xfer.x_easy);
		memset(&r, 0, sizeof(r));
		r.kr_verb = c->kc_verb;
		r.kr_status = -1;
		r.kr_error = "cancelled";
		c->kc_cb(c->kc_arg, &r);
		call_free(c);
		http_xfer_free(&c->kc_xfer);
		free(c);
	}
	while ((c = k->k_free) != NULL) {
		k->k_free = c->kc_next;
		http_xfer_free(&c->kc_xfer);
		free(c);
	}
	free(k);
}

const char *
kube_namespace(const struct kube *k)
{
	return k->k_creds->kc_namespace;
}

int
kube_inflight(const struct kube *k)
{
	return k->k_inflight;
}

bool
kube_unreachable(const struct kube *k)
{
	return k->k_unreachable;
}

static int
call_start(struct kube *k, struct kube_call *c)
{
	struct curl_slist *h = NULL;
	char *line;

	kube_creds_refresh(k->k_creds, false);
	if (k->k_creds->kc_token != NULL) {
		line = xasprintf(
		    "Authorization: Bearer %s", k->k_creds->kc_token);
		h = curl_slist_append(h, line);
		explicit_bzero(line, strlen(line));
		free(line);
	}
	h = curl_slist_append(h, "Accept: application/json");
	if (c->kc_content_type != NULL) {
		line = xasprintf("Content-Type: %s", c->kc_content_type);
		h = curl_slist_append(h, line);
		free(line);
	}
	http_xfer_request(&c->kc_xfer, c->kc_method, c->kc_url, h,
	    c->kc_body != NULL ? xstrdup(c->kc_body) : NULL);
	if (http_xfer_start(&c->kc_xfer, k->k_multi) == -1)
		return -1;
	c->kc_bprev = NULL;
	c->kc_bnext = k->k_busy;
	if (k->k_busy != NULL)
		k->k_busy->kc_bprev = c;
	k->k_busy = c;
	k->k_inflight++;
	return 0;
}

int
kube_send(struct kube *k, enum kube_verb verb, const char *method,
    const char *path, const char *content_type, json_t *body, kube_cb cb,
    void *arg)
{
	struct kube_call *c;

	if ((c = k->k_free) != NULL) {
		k->k_free = c->kc_next;
		k->k_nfree--;
	} else {
		c = xcalloc(1, sizeof(*c));
		http_xfer_init(&c->kc_xfer, KUBE_BODY_MAX, KUBE_TIMEOUT_MS, c);
		kube_creds_apply(k->k_creds, c->kc_xfer.x_easy);
	}
	c->kc_kube = k;
	c->kc_verb = verb;
	c->kc_method = xstrdup(method);
	c->kc_url = xasprintf("%s%s", k->k_creds->kc_server, path);
	c->kc_content_type = body != NULL
	    ? xstrdup(content_type != NULL ? content_type : KUBE_CONTENT_JSON)
	    : NULL;
	c->kc_body = body != NULL ? json_dumps(body, JSON_COMPACT) : NULL;
	json_decref(body);
	c->kc_retried = false;
	c->kc_cb = cb;
	c->kc_arg = arg;
	if (call_start(k, c) == -1) {
		call_release(k, c);
		return -1;
	}
	return 0;
}

/* The API server's own words, from a Status body. */
static const char *
status_message(json_t *body)
{
	const char *m = json_string_value(json_object_get(body, "message"));

	return m != NULL ? m : "";
}

static void
note_outcome(
    struct kube *k, struct kube_call *c, json_t *body, const char *why)
{
	const struct kube_verb_info *v = &kube_verbs[c->kc_verb];
	long status = c->kc_xfer.x_status;
	struct log_line ll;

	if (c->kc_xfer.x_result != CURLE_OK) {
		if (!k->k_unreachable) {
			log_begin(&ll, LOG_LVL_ERROR,
			    "cannot reach the Kubernetes API");
			log_str(&ll, "server", k->k_creds->kc_server);
			log_str(&ll, "error", why);
			log_end(&ll);
		}
		k->k_unreachable = true;
		return;
	}
	if (k->k_unreachable)
		log_info("the Kubernetes API at %s answers again",
		    k->k_creds->kc_server);
	k->k_unreachable = false;
	if (status == 403 && !k->k_denied[c->kc_verb]) {
		log_begin(&ll, LOG_LVL_ERROR,
		    "Kubernetes denied a request: grant this verb on this "
		    "resource to the provisioner's Role");
		log_str(&ll, "verb", v->kv_verb);
		log_str(&ll, "resource", v->kv_resource);
		log_str(
		    &ll, "api_group", v->kv_group[0] ? v->kv_group : "core");
		log_str(&ll, "namespace", k->k_creds->kc_namespace);
		log_str(&ll, "error", status_message(body));
		log_end(&ll);
		k->k_denied[c->kc_verb] = true;
	} else if (status >= 200 && status < 300)
		k->k_denied[c->kc_verb] = false;
	if (status == 401 && !k->k_unauthorized) {
		log_begin(&ll, LOG_LVL_ERROR,
		    "Kubernetes rejected the provisioner's credentials");
		log_str(&ll, "source", k->k_creds->kc_source);
		log_str(&ll, "error", status_message(body));
		log_end(&ll);
		k->k_unauthorized = true;
	} else if (status != 401)
		k->k_unauthorized = false;
}

static void
count(struct kube *k, const struct kube_call *c)
{
	const struct kube_verb_info *v = &kube_verbs[c->kc_verb];
	char code[16];

	http_xfer_code(&c->kc_xfer, code, sizeof(code));
	metric_inc(metric_series(k->k_m_requests,
	               (const char *[]){ v->kv_verb, v->kv_resource, code }),
	    1);
	metric_observe(
	    k->k_m_duration, (double)c->kc_xfer.x_duration_us / 1e6);
}

/* The body, if it is a JSON object: strict (no duplicate keys, no NUL),
 * as everything that crosses the network.  NULL, with why, otherwise. */
static json_t *
parse_body(const struct http_xfer *x, char *why, size_t whylen)
{
	json_error_t e;
	json_t *body;

	if (x->x_result != CURLE_OK || x->x_body.b_len == 0)
		return NULL;
	body = json_loadb(
	    x->x_body.b_data, x->x_body.b_len, JSON_REJECT_DUPLICATES, &e);
	if (body == NULL || !json_is_object(body)) {
		snprintf(why, whylen, "%s",
		    body == NULL ? e.text : "not a JSON object");
		json_decref(body);
		return NULL;
	}
	return body;
}

/* Why a request failed, with the server's own words: redacted whole, then
 * cut at a character boundary (the words may quote a token, and may be
 * anything but UTF-8). */
static void
describe(const struct kube_call *c, json_t *body, const char *bad, char *why,
    size_t whylen)
{
	char text[256], *full, *red;
	size_t size;

	http_xfer_describe(&c->kc_xfer, text, sizeof(text));
	if (c->kc_xfer.x_result == CURLE_OK && c->kc_xfer.x_status >= 300 &&
	    json_is_string(json_object_get(body, "message")))
		full = xasprintf("%s: %s", text, status_message(body));
	else if (bad[0] != '\0' && c->kc_xfer.x_status < 300)
		full = xasprintf("%s: malformed body: %s", text, bad);
	else
		full = xstrdup(text);
	size = 2 * strlen(full) + 64;
	red = xmalloc(size);
	memcpy(red, full, strlen(full) + 1);
	log_redact(red, size);
	utf8_copy(why, red, whylen);
	explicit_bzero(full, strlen(full));
	explicit_bzero(red, strlen(red));
	free(full);
	free(red);
}

static void
call_done(struct kube *k, struct kube_call *c, CURLcode result)
{
	struct kube_reply r;
	char why[512], bad[160] = "";
	json_t *body;
	uint64_t retry = 0;

	http_xfer_finish(&c->kc_xfer, k->k_multi, result);
	if (c->kc_bprev != NULL)
		c->kc_bprev->kc_bnext = c->kc_bnext;
	else
		k->k_busy = c->kc_bnext;
	if (c->kc_bnext != NULL)
		c->kc_bnext->kc_bprev = c->kc_bprev;
	k->k_inflight--;
	count(k, c);
	/* An expired token: read it again and try once more. */
	if (c->kc_xfer.x_status == 401 && !c->kc_retried &&
	    k->k_creds->kc_token_file != NULL) {
		c->kc_retried = true;
		kube_creds_refresh(k->k_creds, true);
		if (call_start(k, c) == 0)
			return;
	}
	body = parse_body(&c->kc_xfer, bad, sizeof(bad));
	describe(c, body, bad, why, sizeof(why));
	if (c->kc_xfer.x_retry_after[0] != '\0' &&
	    http_retry_after_ms(c->kc_xfer.x_retry_after, &retry) == -1)
		retry = 0;
	note_outcome(k, c, body, why);
	memset(&r, 0, sizeof(r));
	r.kr_verb = c->kc_verb;
	r.kr_status =
	    c->kc_xfer.x_result == CURLE_OK ? c->kc_xfer.x_status : 0;
	r.kr_body = body;
	r.kr_error = why;
	r.kr_retry_after_ms = retry;
	c->kc_cb(c->kc_arg, &r);
	json_decref(body);
	call_release(k, c);
}

void
kube_collect(struct kube *k)
{
	struct http_xfer *x;
	CURLMsg *msg;
	char *priv;
	int left;

	while ((msg = curl_multi_info_read(k->k_multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		x = (struct http_xfer *)(void *)priv;
		call_done(k, x->x_owner, msg->data.result);
	}
}
