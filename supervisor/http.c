#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"
#include "supervisor.h"
#include "util.h"

/*
 * A probe must answer however many clients misbehave: the kubelet restarts
 * the pod when /live does not answer within its timeout (1 s by default).
 * Each listener therefore
 *   - takes at most HTTP_CONN_PER_IP connections from one address (more
 *     are closed at once);
 *   - gives every connection HTTP_REQUEST_MS to send a request and read
 *     the answer, counted from when it was accepted or last answered: a
 *     client that trickles header bytes, or idles, is cut off (libmicro-
 *     httpd's own timeout counts only silence);
 *   - holds at most HTTP_CONN_SOFT connections: past that, a new one makes
 *     room by cutting the one that has waited longest, if that one has had
 *     HTTP_EVICT_MIN_MS to send its request (a kubelet's comes at once),
 *     so slow clients from many addresses cannot fill it either
 *     (libmicrohttpd's own limit is above that, so that it accepts the
 *     newcomer first);
 *   - gives each connection HTTP_CONN_MEMORY bytes: requests are small.
 * /live has a listener of its own by default; all run in the supervisor's
 * one loop, which a slow client never blocks (sockets are non-blocking).
 */
#define HTTP_CONN_PER_IP    8
#define HTTP_CONN_SOFT      256
#define HTTP_CONN_LIMIT     384 /* two listeners stay below 1024 fds */
#define HTTP_EVICT_MIN_MS   500
#define HTTP_CONN_MEMORY    (16 * 1024)
#define HTTP_REQUEST_MS     5000
#define HTTP_CONN_TIMEOUT_S 10 /* libmicrohttpd's: silence */
#define HTTP_BACKLOG        256
#define ENDPOINT_READY      0x1 /* /ready and /metrics */
#define ENDPOINT_LIVE       0x2 /* /live */

/* One client connection, in its endpoint's list, oldest p_since_ms first. */
struct peer {
	struct endpoint *p_ep;
	int p_fd;
	uint64_t p_since_ms; /* accepted, or last answered */
	bool p_cut; /* shut down; waiting for libmicrohttpd to close */
	struct peer *p_prev;
	struct peer *p_next;
};

struct endpoint {
	struct sup_http *e_http;
	struct MHD_Daemon *e_daemon;
	int e_serves; /* ENDPOINT_* bits */
	int e_epoll_fd;
	struct peer *e_head; /* waited longest */
	struct peer *e_tail;
	unsigned int e_npeers;
};

struct sup_http {
	struct supervisor *h_sup;
	struct endpoint h_ep[2];
	int h_nep;
	struct metric_series *h_m_cut;
};

static int
listen_on(const char *addr, char *where, size_t wherelen)
{
	struct addrinfo hints, *res = NULL, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char host[256], portstr[8], ip[INET6_ADDRSTRLEN];
	uint16_t port;
	int fd = -1, on = 1, off = 0, rv;

	if (flags_split_addr(addr, host, sizeof(host), &port) == -1) {
		log_error("invalid listen address \"%s\"", addr);
		return -1;
	}
	snprintf(portstr, sizeof(portstr), "%u", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	/* An empty host means every address: IPv6 dual-stack first. */
	hints.ai_family = host[0] == '\0' ? AF_INET6 : AF_UNSPEC;
	rv = getaddrinfo(host[0] ? host : NULL, portstr, &hints, &res);
	if (rv != 0 && host[0] == '\0') {
		hints.ai_family = AF_INET;
		rv = getaddrinfo(NULL, portstr, &hints, &res);
	}
	if (rv != 0) {
		log_error("listen address \"%s\": %s", addr, gai_strerror(rv));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
		    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd == -1)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
		if (ai->ai_family == AF_INET6 && host[0] == '\0')
			setsockopt(
			    fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
		    listen(fd, HTTP_BACKLOG) == 0)
			break;
		rv = errno;
		close(fd);
		fd = -1;
		errno = rv;
	}
	freeaddrinfo(res);
	if (fd == -1 && host[0] == '\0' && hints.ai_family == AF_INET6) {
		/* No IPv6 in this network namespace: plain IPv4. */
		struct sockaddr_in sin = { .sin_family = AF_INET,
			.sin_port = htons(port),
			.sin_addr.s_addr = htonl(INADDR_ANY) };
		fd = socket(
		    AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd != -1) {
			setsockopt(
			    fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
			if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) ==
			        -1 ||
			    listen(fd, HTTP_BACKLOG) == -1) {
				rv = errno;
				close(fd);
				fd = -1;
				errno = rv;
			}
		}
	}
	if (fd == -1) {
		log_error("cannot listen on %s: %s", addr, strerror(errno));
		return -1;
	}
	getsockname(fd, (struct sockaddr *)&ss, &sslen);
	if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		snprintf(where, wherelen, "[%s]:%u", ip, ntohs(s6->sin6_port));
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		snprintf(where, wherelen, "%s:%u", ip, ntohs(s4->sin_port));
	}
	return fd;
}

static void
peer_unlink(struct endpoint *ep, struct peer *p)
{
	if (p->p_prev != NULL)
		p->p_prev->p_next = p->p_next;
	else
		ep->e_head = p->p_next;
	if (p->p_next != NULL)
		p->p_next->p_prev = p->p_prev;
	else
		ep->e_tail = p->p_prev;
	p->p_prev = p->p_next = NULL;
}

static void
peer_append(struct endpoint *ep, struct peer *p)
{
	p->p_prev = ep->e_tail;
	p->p_next = NULL;
	if (ep->e_tail != NULL)
		ep->e_tail->p_next = p;
	else
		ep->e_head = p;
	ep->e_tail = p;
}

/* libmicrohttpd closes the connection when it next reads from it. */
static void
peer_cut(struct endpoint *ep, struct peer *p)
{
	shutdown(p->p_fd, SHUT_RDWR);
	p->p_cut = true;
	metric_inc(ep->e_http->h_m_cut, 1);
	/* Out of the deadline order: it waits only for its close. */
	peer_unlink(ep, p);
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_ctx,
    enum MHD_ConnectionNotificationCode what)
{
	const union MHD_ConnectionInfo *info;
	struct endpoint *ep = cls;
	struct peer *p = *socket_ctx;

	if (what == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (p == NULL)
			return;
		if (!p->p_cut)
			peer_unlink(ep, p);
		ep->e_npeers--;
		free(p);
		*socket_ctx = NULL;
		return;
	}
	info =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	p = xcalloc(1, sizeof(*p));
	p->p_ep = ep;
	p->p_fd = info != NULL ? info->connect_fd : -1;
	p->p_since_ms = now_ms();
	*socket_ctx = p;
	ep->e_npeers++;
	peer_append(ep, p);
	/* Full: the newcomer takes the place of whoever waited longest (not
	 * of one that just came: its request may be on its way). */
	if (ep->e_npeers > HTTP_CONN_SOFT && ep->e_head != p &&
	    p->p_since_ms - ep->e_head->p_since_ms >= HTTP_EVICT_MIN_MS)
		peer_cut(ep, ep->e_head);
}

/* An answer was sent: the connection's clock starts again. */
static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
    enum MHD_RequestTerminationCode toe)
{
	const union MHD_ConnectionInfo *info;
	struct endpoint *ep = cls;
	struct peer *p;

	(void)con_cls;
	(void)toe;
	info =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (info == NULL || (p = info->socket_context) == NULL || p->p_cut)
		return;
	p->p_since_ms = now_ms();
	peer_unlink(ep, p);
	peer_append(ep, p);
}

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned int code, const char *type,
    char *body /* taken */)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(
	    strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (r == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static char *
json_text(json_t *j /* taken */)
{
	char *s = json_dumps(j, JSON_COMPACT);
	size_t n;

	json_decref(j);
	if (s == NULL)
		return xstrdup("{}\n");
	n = strlen(s);
	s = xrealloc(s, n + 2, 1);
	memcpy(s + n, "\n", 2);
	return s;
}

static enum MHD_Result
handle(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **con_cls)
{
	struct endpoint *ep = cls;
	struct sup_http *h = ep->e_http;
	struct buf b = { 0 };
	uint64_t now = now_ms();
	json_t *j;

	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
		    xstrdup("method not allowed\n"));
	if ((ep->e_serves & ENDPOINT_LIVE) && strcmp(url, "/live") == 0) {
		j = json_pack("{s:s,s:I}", "status", "alive", "uptime_ms",
		    (json_int_t)(now - h->h_sup->s_start_ms));
		return respond(
		    conn, MHD_HTTP_OK, "application/json", json_text(j));
	}
	if ((ep->e_serves & ENDPOINT_READY) && strcmp(url, "/ready") == 0) {
		bool ready = health_ready(h->h_sup, now);
		return respond(conn,
		    ready ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		    "application/json",
		    json_text(health_report(h->h_sup, now)));
	}
	if ((ep->e_serves & ENDPOINT_READY) && strcmp(url, "/metrics") == 0) {
		health_metrics(h->h_sup, &b);
		return respond(conn, MHD_HTTP_OK,
		    "text/plain; version=0.0.4; charset=utf-8", buf_take(&b));
	}
	return respond(
	    conn, MHD_HTTP_NOT_FOUND, "text/plain", xstrdup("not found\n"));
}

static int
endpoint_start(
    struct sup_http *h, struct endpoint *ep, const char *addr, int serves)
{
	const union MHD_DaemonInfo *info;
	char where[INET6_ADDRSTRLEN + 16];
	struct log_line ll;
	int fd;

	if ((fd = listen_on(addr, where, sizeof(where))) == -1)
		return -1;
	ep->e_http = h;
	ep->e_serves = serves;
	ep->e_daemon = MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, handle,
	    ep, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
	    (unsigned int)HTTP_CONN_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned int)HTTP_CONN_PER_IP, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
	    (size_t)HTTP_CONN_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned int)HTTP_CONN_TIMEOUT_S, MHD_OPTION_NOTIFY_CONNECTION,
	    on_connection, ep, MHD_OPTION_NOTIFY_COMPLETED, on_completed, ep,
	    MHD_OPTION_END);
	if (ep->e_daemon == NULL) {
		log_error("cannot start the HTTP server on %s", where);
		close(fd);
		return -1;
	}
	info = MHD_get_daemon_info(ep->e_daemon, MHD_DAEMON_INFO_EPOLL_FD);
	ep->e_epoll_fd = info != NULL ? info->epoll_fd : -1;
	log_begin(&ll, LOG_LVL_INFO, "serving HTTP");
	log_str(&ll, "addr", where);
	log_str(&ll, "paths",
	    serves == (ENDPOINT_READY | ENDPOINT_LIVE)
	        ? "/ready /metrics /live"
	        : serves == ENDPOINT_READY ? "/ready /metrics"
	                                   : "/live");
	log_end(&ll);
	return 0;
}

struct sup_http *
http_start(struct supervisor *s)
{
	struct sup_http *h = xcalloc(1, sizeof(*h));
	const struct flags *f = s->s_flags;

	h->h_sup = s;
	h->h_m_cut = metric_single(metrics_family(s->s_metrics, METRIC_COUNTER,
	    "http_connections_cut_total",
	    "Probe and metrics connections closed for sending a request too "
	    "slowly, idling, or to make room for a new one.",
	    NULL, NULL, 0));
	if (strcmp(f->f_ready_addr, f->f_live_addr) == 0) {
		if (endpoint_start(h, &h->h_ep[0], f->f_ready_addr,
		        ENDPOINT_READY | ENDPOINT_LIVE) == -1)
			goto fail;
		h->h_nep = 1;
	} else {
		if (endpoint_start(
		        h, &h->h_ep[0], f->f_ready_addr, ENDPOINT_READY) == -1)
			goto fail;
		h->h_nep = 1;
		if (endpoint_start(
		        h, &h->h_ep[1], f->f_live_addr, ENDPOINT_LIVE) == -1)
			goto fail;
		h->h_nep = 2;
	}
	return h;
fail:
	http_stop(h);
	return NULL;
}

void
http_stop(struct sup_http *h)
{
	int i;

	if (h == NULL)
		return;
	for (i = 0; i < h->h_nep; i++)
		MHD_stop_daemon(h->h_ep[i].e_daemon);
	free(h);
}

int
http_fds(struct sup_http *h, int *fds, int max)
{
	int i, n = 0;

	for (i = 0; i < h->h_nep && n < max; i++)
		fds[n++] = h->h_ep[i].e_epoll_fd;
	return n;
}

uint64_t
http_next_deadline(struct sup_http *h, uint64_t now)
{
	MHD_UNSIGNED_LONG_LONG t;
	uint64_t next = UINT64_MAX;
	struct endpoint *ep;
	int i;

	for (i = 0; i < h->h_nep; i++) {
		ep = &h->h_ep[i];
		if (MHD_get_timeout(ep->e_daemon, &t) == MHD_YES &&
		    now + t < next)
			next = now + t;
		if (ep->e_head != NULL &&
		    ep->e_head->p_since_ms + HTTP_REQUEST_MS < next)
			next = ep->e_head->p_since_ms + HTTP_REQUEST_MS;
	}
	return next;
}

void
http_run(struct sup_http *h)
{
	uint64_t now = now_ms();
	struct endpoint *ep;
	int i;

	for (i = 0; i < h->h_nep; i++) {
		ep = &h->h_ep[i];
		MHD_run(ep->e_daemon);
		while (ep->e_head != NULL &&
		    now >= ep->e_head->p_since_ms + HTTP_REQUEST_MS)
			peer_cut(ep, ep->e_head);
	}
}
