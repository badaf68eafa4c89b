/* The CircleCI transfers: one reusable easy handle per class and endpoint,
 * all on one multi handle so connections are shared and kept alive. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "poller.h"
#include "util.h"

static const char *const kind_paths[FETCH_NKINDS] = {
	[FETCH_UNCLAIMED] = "/api/v3/runner/tasks",
	[FETCH_RUNNING] = "/api/v3/runner/tasks/running",
	[FETCH_CHECK] = "/api/v3/runner",
};

static struct curl_slist *shared_headers;

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

void
fetch_init(struct poller *p)
{
	struct poll_class *pc;
	struct buf url = { 0 };
	char *hdr;
	size_t i;
	int k;

	if ((p->p_multi = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	curl_multi_setopt(
	    p->p_multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)POLL_HOST_CONNS);
	curl_multi_setopt(
	    p->p_multi, CURLMOPT_MAXCONNECTS, (long)POLL_HOST_CONNS * 2);
	hdr = xasprintf("Circle-Token: %s", p->p_token);
	shared_headers = curl_slist_append(NULL, hdr);
	explicit_bzero(hdr, strlen(hdr));
	free(hdr);
	shared_headers =
	    curl_slist_append(shared_headers, "Accept: application/json");
	for (i = 0; i < p->p_nclasses; i++) {
		pc = &p->p_classes[i];
		for (k = 0; k < FETCH_NKINDS; k++) {
			buf_reset(&url);
			buf_printf(&url,
			    "%s%s?resource-class=", p->p_flags->f_api_addr,
			    kind_paths[k]);
			http_query_escape(&url, pc->pc_conf->cc_name);
			pc->pc_url[k] = xstrdup(buf_str(&url));
			http_xfer_init(&pc->pc_xfer[k], POLL_BODY_MAX,
			    POLL_TIMEOUT_MS, pc);
			curl_easy_setopt(
			    pc->pc_xfer[k].x_easy, CURLOPT_URL, pc->pc_url[k]);
			curl_easy_setopt(pc->pc_xfer[k].x_easy,
			    CURLOPT_HTTPHEADER, shared_headers);
			if (p->p_flags->f_circleci_ca_file != NULL)
				curl_easy_setopt(pc->pc_xfer[k].x_easy,
				    CURLOPT_CAINFO,
				    p->p_flags->f_circleci_ca_file);
		}
	}
	buf_free(&url);
}

void
fetch_free(struct poller *p)
{
	struct poll_class *pc;
	size_t i;
	int k;

	for (i = 0; i < p->p_nclasses; i++) {
		pc = &p->p_classes[i];
		for (k = 0; k < FETCH_NKINDS; k++) {
			if (pc->pc_xfer[k].x_busy)
				curl_multi_remove_handle(
				    p->p_multi, pc->pc_xfer[k].x_easy);
			http_xfer_free(&pc->pc_xfer[k]);
			free(pc->pc_url[k]);
		}
	}
	curl_multi_cleanup(p->p_multi);
	http_headers_free(shared_headers);
	shared_headers = NULL;
}

static int
start(struct poller *p, struct http_xfer *x)
{
	http_xfer_reset(x);
	return http_xfer_start(x, p->p_multi);
}

int
fetch_start(struct poller *p, struct poll_class *pc)
{
	if (pc->pc_pending > 0)
		return -1;
	if (start(p, &pc->pc_xfer[FETCH_UNCLAIMED]) == -1)
		return -1;
	if (start(p, &pc->pc_xfer[FETCH_RUNNING]) == -1) {
		curl_multi_remove_handle(
		    p->p_multi, pc->pc_xfer[FETCH_UNCLAIMED].x_easy);
		pc->pc_xfer[FETCH_UNCLAIMED].x_busy = false;
		return -1;
	}
	pc->pc_pending = 2;
	return 0;
}

void
fetch_check(struct poller *p, struct poll_class *pc, uint64_t now)
{
	struct http_xfer *x = &pc->pc_xfer[FETCH_CHECK];

	if (pc->pc_checked || x->x_busy || now < pc->pc_check_not_before_ms)
		return;
	start(p, x);
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
		pc = x->x_owner;
		k = (enum fetch_kind)(x - pc->pc_xfer);
		http_xfer_finish(x, p->p_multi, msg->data.result);
		count_request(p, k, x);
		if (k == FETCH_CHECK) {
			poller_checked(p, pc, x);
			continue;
		}
		parse_result(x, k, &r);
		poller_fetched(p, pc, k, &r);
	}
}
