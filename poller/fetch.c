/* The CircleCI transfers, all on one multi handle so connections are
 * shared and kept alive.  Transfers come from a small pool: at most
 * POLL_INFLIGHT_MAX at once (the schedule spreads polls, so few are out at
 * a time) and POLL_XFER_IDLE_MAX kept between polls, whatever the number
 * of classes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "poller.h"
#include "util.h"

struct poll_xfer {
	struct http_xfer px_http; /* first: px_http.x_owner is px */
	struct poll_class *px_class;
	enum fetch_kind px_kind;
	uint64_t px_sent_ms;
	struct rl_headers px_rl;
	struct poll_xfer *px_next; /* idle list */
	unsigned px_slot;          /* in p_busy while out */
};

static const char *const kind_paths[FETCH_NKINDS] = {
	[FETCH_UNCLAIMED] = "/api/v3/runner/tasks",
	[FETCH_RUNNING] = "/api/v3/runner/tasks/running",
	[FETCH_CHECK] = "/api/v3/runner",
};

const char *
fetch_kind_name(enum fetch_kind k)
{
	switch (k) {
	case FETCH_UNCLAIMED:
		return "tasks";
	case FETCH_RUNNING:
		return "tasks_running";
	case FETCH_CHECK:
		return "runner";
	case FETCH_NKINDS:
		break;
	}
	return "unknown";
}

static void
on_header(struct http_xfer *x, const char *name, size_t namelen,
    const char *value, size_t valuelen)
{
	struct poll_xfer *px = x->x_owner;

	budget_header(
	    &px->px_rl, name, namelen, value, valuelen, (int64_t)time(NULL));
}

void
fetch_init(struct poller *p)
{
	struct poll_class *pc;
	struct buf q = { 0 };
	char *hdr;
	size_t i;

	if ((p->p_multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	curl_multi_setopt(
	    p->p_multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)POLL_HOST_CONNS);
	curl_multi_setopt(
	    p->p_multi, CURLMOPT_MAXCONNECTS, (long)POLL_HOST_CONNS * 2);
	hdr = xasprintf("Circle-Token: %s", p->p_token);
	p->p_headers = curl_slist_append(NULL, hdr);
	explicit_bzero(hdr, strlen(hdr));
	free(hdr);
	p->p_headers =
	    curl_slist_append(p->p_headers, "Accept: application/json");
	for (i = 0; i < p->p_nclasses; i++) {
		pc = &p->p_classes[i];
		buf_reset(&q);
		http_query_escape(&q, pc->pc_conf->cc_name);
		pc->pc_query = xstrdup(buf_str(&q));
	}
	buf_free(&q);
}

static void
xfer_destroy(struct poll_xfer *px)
{
	http_xfer_free(&px->px_http);
	free(px);
}

static struct poll_xfer *
xfer_get(struct poller *p)
{
	struct poll_xfer *px;
	CURL *h;

	if ((px = p->p_xfer_idle) != NULL) {
		p->p_xfer_idle = px->px_next;
		p->p_nxfer_idle--;
		return px;
	}
	px = xcalloc(1, sizeof(*px));
	http_xfer_init(&px->px_http, POLL_BODY_MAX, POLL_TIMEOUT_MS, px);
	px->px_http.x_on_header = on_header;
	h = px->px_http.x_easy;
	/* Answers are a few dozen bytes: no need for 16 KiB per handle. */
	curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)POLL_XFER_BUFSIZE);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, p->p_headers);
	if (p->p_flags->f_circleci_ca_file != NULL)
		curl_easy_setopt(
		    h, CURLOPT_CAINFO, p->p_flags->f_circleci_ca_file);
	return px;
}

static void
xfer_put(struct poller *p, struct poll_xfer *px)
{
	px->px_class = NULL;
	if (p->p_nxfer_idle >= POLL_XFER_IDLE_MAX ||
	    px->px_http.x_body.b_cap > 4096) {
		xfer_destroy(px);
		return;
	}
	http_xfer_reset(&px->px_http);
	px->px_next = p->p_xfer_idle;
	p->p_xfer_idle = px;
	p->p_nxfer_idle++;
}

void
fetch_free(struct poller *p)
{
	struct poll_xfer *px;
	unsigned i;

	for (i = 0; i < POLL_INFLIGHT_MAX; i++) {
		if ((px = p->p_busy[i]) == NULL)
			continue;
		curl_multi_remove_handle(p->p_multi, px->px_http.x_easy);
		px->px_http.x_busy = false;
		xfer_destroy(px);
		p->p_busy[i] = NULL;
	}
	while ((px = p->p_xfer_idle) != NULL) {
		p->p_xfer_idle = px->px_next;
		xfer_destroy(px);
	}
	p->p_nxfer_idle = 0;
	p->p_inflight = 0;
	for (i = 0; i < p->p_nclasses; i++) {
		free(p->p_classes[i].pc_query);
		p->p_classes[i].pc_query = NULL;
	}
	curl_multi_cleanup(p->p_multi);
	p->p_multi = NULL;
	http_headers_free(p->p_headers);
	p->p_headers = NULL;
}

unsigned
fetch_slots(const struct poller *p)
{
	return p->p_inflight >= POLL_INFLIGHT_MAX
	    ? 0
	    : POLL_INFLIGHT_MAX - p->p_inflight;
}

static struct poll_xfer *
start(struct poller *p, struct poll_class *pc, enum fetch_kind k, uint64_t now)
{
	struct poll_xfer *px = xfer_get(p);
	char url[2048];
	int n;

	n = snprintf(url, sizeof(url), "%s%s?resource-class=%s",
	    p->p_flags->f_api_addr, kind_paths[k], pc->pc_query);
	if (n < 0 || (size_t)n >= sizeof(url)) {
		log_warnx(
		    "request URL for %s is too long", pc->pc_conf->cc_name);
		xfer_put(p, px);
		return NULL;
	}
	curl_easy_setopt(px->px_http.x_easy, CURLOPT_URL, url);
	memset(&px->px_rl, 0, sizeof(px->px_rl));
	px->px_class = pc;
	px->px_kind = k;
	px->px_sent_ms = now;
	if (http_xfer_start(&px->px_http, p->p_multi) == -1) {
		xfer_put(p, px);
		return NULL;
	}
	for (px->px_slot = 0; p->p_busy[px->px_slot] != NULL; px->px_slot++)
		;
	p->p_busy[px->px_slot] = px;
	p->p_inflight++;
	return px;
}

static void
cancel(struct poller *p, struct poll_xfer *px)
{
	curl_multi_remove_handle(p->p_multi, px->px_http.x_easy);
	px->px_http.x_busy = false;
	p->p_busy[px->px_slot] = NULL;
	p->p_inflight--;
	xfer_put(p, px);
}

int
fetch_start(struct poller *p, struct poll_class *pc, bool check, uint64_t now)
{
	struct poll_xfer *u, *r;

	if (pc->pc_pending > 0 || fetch_slots(p) < 2u + check)
		return -1;
	if ((u = start(p, pc, FETCH_UNCLAIMED, now)) == NULL)
		return -1;
	if ((r = start(p, pc, FETCH_RUNNING, now)) == NULL) {
		cancel(p, u);
		return -1;
	}
	pc->pc_pending = 2;
	/* The start-up check is best effort: it is tried again later. */
	if (check && start(p, pc, FETCH_CHECK, now) != NULL)
		pc->pc_check_busy = true;
	return 0;
}

static void
count_request(struct poller *p, enum fetch_kind k, const struct http_xfer *x)
{
	char code[16];

	http_xfer_code(x, code, sizeof(code));
	metric_inc(metric_series(p->p_m_requests,
	               (const char *[]){ fetch_kind_name(k), code }),
	    1);
	metric_observe(p->p_m_duration[k], (double)x->x_duration_us / 1e6);
}

void
fetch_collect(struct poller *p)
{
	struct fetch_result r;
	struct poll_class *pc;
	struct poll_xfer *px;
	struct http_xfer *x;
	enum fetch_kind k;
	CURLMsg *msg;
	char *priv;
	int left;

	while ((msg = curl_multi_info_read(p->p_multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		x = (struct http_xfer *)(void *)priv;
		px = x->x_owner;
		pc = px->px_class;
		k = px->px_kind;
		http_xfer_finish(x, p->p_multi, msg->data.result);
		p->p_busy[px->px_slot] = NULL;
		p->p_inflight--;
		count_request(p, k, x);
		poller_answered(p, x->x_result == CURLE_OK ? x->x_status : 0,
		    px->px_sent_ms, &px->px_rl);
		if (k == FETCH_CHECK) {
			pc->pc_check_busy = false;
			poller_checked(p, pc, x);
		} else {
			parse_result(x, k, &r);
			poller_fetched(p, pc, k, &r);
		}
		xfer_put(p, px);
	}
}
