/*
 * A scripted HTTPS server on 127.0.0.1 for the actuator's unit tests: the
 * real Kubernetes client (kube.c over libcurl) talks to it through a
 * kubeconfig it writes.  Rules answer requests by method and path prefix;
 * every request is journalled with its headers and body.  A thread per
 * connection; header-only (static functions).
 */
#ifndef RP_FAKE_APISERVER_H
#define RP_FAKE_APISERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define FAS_JOURNAL_MAX 512
#define FAS_RULES_MAX   64
#define FAS_ECHO        "@echo" /* answer with the request's body */
#define FAS_TOKEN       "fas-token-1"

struct fas_req {
	char fr_method[16];
	char fr_path[512];
	char fr_ctype[128];
	char fr_auth[256];
	char *fr_body; /* NUL-terminated, or NULL */
	long fr_status;
};

struct fas_rule {
	char r_method[16];
	char r_prefix[256];
	long r_status;
	char *r_body;
	char r_headers[256]; /* extra header lines, "\r\n"-terminated */
	int r_delay_ms;
	int r_count; /* -1: forever */
};

struct fas {
	SSL_CTX *f_ctx;
	int f_lfd;
	unsigned short f_port;
	pthread_t f_thread;
	pthread_mutex_t f_mu;
	struct fas_req f_journal[FAS_JOURNAL_MAX];
	size_t f_n;
	struct fas_rule f_rules[FAS_RULES_MAX];
	size_t f_nrules;
	int f_conns;    /* connection threads alive */
	int f_fds[256]; /* their sockets, to shut down at the end */
	size_t f_nfds;
	volatile bool f_stop;
	char f_dir[64];
	char f_kubeconfig[128];
	char f_token_file[128];
};

struct fas_conn {
	struct fas *c_f;
	int c_fd;
};

static inline void
fas_rule(struct fas *f, const char *method, const char *prefix, long status,
    const char *body, const char *headers, int delay_ms, int count)
{
	struct fas_rule *r;

	pthread_mutex_lock(&f->f_mu);
	if (f->f_nrules < FAS_RULES_MAX) {
		r = &f->f_rules[f->f_nrules++];
		memset(r, 0, sizeof(*r));
		snprintf(r->r_method, sizeof(r->r_method), "%s", method);
		snprintf(r->r_prefix, sizeof(r->r_prefix), "%s", prefix);
		r->r_status = status;
		r->r_body = body != NULL ? strdup(body) : NULL;
		snprintf(r->r_headers, sizeof(r->r_headers), "%s",
		    headers != NULL ? headers : "");
		r->r_delay_ms = delay_ms;
		r->r_count = count;
	}
	pthread_mutex_unlock(&f->f_mu);
}

static inline void
fas_clear_rules(struct fas *f)
{
	size_t i;

	pthread_mutex_lock(&f->f_mu);
	for (i = 0; i < f->f_nrules; i++)
		free(f->f_rules[i].r_body);
	f->f_nrules = 0;
	pthread_mutex_unlock(&f->f_mu);
}

/* How many journalled requests match method and path prefix. */
static inline size_t
fas_count(struct fas *f, const char *method, const char *prefix)
{
	size_t i, n = 0;

	pthread_mutex_lock(&f->f_mu);
	for (i = 0; i < f->f_n; i++)
		if ((method == NULL ||
		        strcmp(f->f_journal[i].fr_method, method) == 0) &&
		    strncmp(f->f_journal[i].fr_path, prefix, strlen(prefix)) ==
		        0)
			n++;
	pthread_mutex_unlock(&f->f_mu);
	return n;
}

/* A copy of the last request matching method and prefix (body owned by
 * the caller), or false. */
static inline bool
fas_last(
    struct fas *f, const char *method, const char *prefix, struct fas_req *out)
{
	bool found = false;
	size_t i;

	pthread_mutex_lock(&f->f_mu);
	for (i = f->f_n; i-- > 0;) {
		if (strcmp(f->f_journal[i].fr_method, method) == 0 &&
		    strncmp(f->f_journal[i].fr_path, prefix, strlen(prefix)) ==
		        0) {
			*out = f->f_journal[i];
			out->fr_body = f->f_journal[i].fr_body != NULL
			    ? strdup(f->f_journal[i].fr_body)
			    : NULL;
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&f->f_mu);
	return found;
}

static inline const struct fas_rule *
fas_match(struct fas *f, const char *method, const char *path)
{
	struct fas_rule *r;
	size_t i;

	for (i = 0; i < f->f_nrules; i++) {
		r = &f->f_rules[i];
		if (r->r_count == 0 ||
		    (r->r_method[0] != '\0' &&
		        strcmp(r->r_method, method) != 0) ||
		    strncmp(path, r->r_prefix, strlen(r->r_prefix)) != 0)
			continue;
		if (r->r_count > 0)
			r->r_count--;
		return r;
	}
	return NULL;
}

/* Reads one request; 0, or -1 when the connection ended. */
static inline int
fas_read_request(SSL *ssl, struct fas_req *q)
{
	char buf[65536], *hdr_end, *p, *line;
	size_t len = 0, clen = 0, need;
	int n;

	memset(q, 0, sizeof(*q));
	for (;;) {
		buf[len] = '\0';
		if ((hdr_end = strstr(buf, "\r\n\r\n")) != NULL)
			break;
		if (len >= sizeof(buf) - 1)
			return -1;
		if ((n = SSL_read(
		         ssl, buf + len, (int)(sizeof(buf) - 1 - len))) <= 0)
			return -1;
		len += (size_t)n;
	}
	*hdr_end = '\0';
	if (sscanf(buf, "%15s %511s", q->fr_method, q->fr_path) != 2)
		return -1;
	for (line = strstr(buf, "\r\n"); line != NULL;
	     line = strstr(line + 2, "\r\n")) {
		p = line + 2;
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			clen = strtoul(p + 15, NULL, 10);
		else if (strncasecmp(p, "Content-Type:", 13) == 0)
			sscanf(p + 13, " %127[^\r]", q->fr_ctype);
		else if (strncasecmp(p, "Authorization:", 14) == 0)
			sscanf(p + 14, " %255[^\r]", q->fr_auth);
	}
	need = (size_t)(hdr_end + 4 - buf) + clen;
	if (need >= sizeof(buf))
		return -1;
	while (len < need) {
		if ((n = SSL_read(ssl, buf + len, (int)(need - len))) <= 0)
			return -1;
		len += (size_t)n;
	}
	if (clen > 0) {
		q->fr_body = malloc(clen + 1);
		memcpy(q->fr_body, hdr_end + 4, clen);
		q->fr_body[clen] = '\0';
	}
	return 0;
}

static inline void *
fas_serve(void *arg)
{
	struct fas_conn *c = arg;
	struct fas *f = c->c_f;
	const struct fas_rule *r;
	struct fas_req q;
	char head[1024];
	const char *body;
	long status;
	int delay;
	SSL *ssl = SSL_new(f->f_ctx);

	SSL_set_fd(ssl, c->c_fd);
	if (SSL_accept(ssl) != 1)
		goto out;
	while (!f->f_stop && fas_read_request(ssl, &q) == 0) {
		char extra[256] = "";

		pthread_mutex_lock(&f->f_mu);
		r = fas_match(f, q.fr_method, q.fr_path);
		status = r != NULL ? r->r_status : 404;
		body = r != NULL ? r->r_body
		                 : "{\"kind\":\"Status\",\"code\":404,"
		                   "\"message\":\"no rule\"}";
		if (body != NULL && strcmp(body, FAS_ECHO) == 0)
			body = q.fr_body != NULL ? q.fr_body : "{}";
		body = body != NULL ? strdup(body) : strdup("");
		delay = r != NULL ? r->r_delay_ms : 0;
		if (r != NULL)
			snprintf(extra, sizeof(extra), "%s", r->r_headers);
		q.fr_status = status;
		if (f->f_n < FAS_JOURNAL_MAX)
			f->f_journal[f->f_n++] = q;
		else
			free(q.fr_body);
		pthread_mutex_unlock(&f->f_mu);
		for (; delay > 0 && !f->f_stop; delay -= 10)
			usleep(10000);
		snprintf(head, sizeof(head),
		    "HTTP/1.1 %ld X\r\nContent-Type: application/json\r\n"
		    "Content-Length: %zu\r\n%s\r\n",
		    status, strlen(body), extra);
		if (SSL_write(ssl, head, (int)strlen(head)) <= 0 ||
		    (strlen(body) > 0 &&
		        SSL_write(ssl, body, (int)strlen(body)) <= 0)) {
			free((void *)(uintptr_t)body);
			break;
		}
		free((void *)(uintptr_t)body);
	}
out:
	SSL_free(ssl);
	pthread_mutex_lock(&f->f_mu);
	for (size_t i = 0; i < f->f_nfds; i++)
		if (f->f_fds[i] == c->c_fd)
			f->f_fds[i] = f->f_fds[--f->f_nfds];
	pthread_mutex_unlock(&f->f_mu);
	close(c->c_fd);
	pthread_mutex_lock(&f->f_mu);
	f->f_conns--;
	pthread_mutex_unlock(&f->f_mu);
	free(c);
	return NULL;
}

static inline void *
fas_accept(void *arg)
{
	struct fas *f = arg;
	struct pollfd pfd = { .fd = f->f_lfd, .events = POLLIN };
	struct fas_conn *c;
	pthread_t t;
	int fd;

	while (!f->f_stop) {
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		if ((fd = accept(f->f_lfd, NULL, NULL)) == -1)
			continue;
		c = calloc(1, sizeof(*c));
		c->c_f = f;
		c->c_fd = fd;
		pthread_mutex_lock(&f->f_mu);
		f->f_conns++;
		if (f->f_nfds < sizeof(f->f_fds) / sizeof(f->f_fds[0]))
			f->f_fds[f->f_nfds++] = fd;
		pthread_mutex_unlock(&f->f_mu);
		if (pthread_create(&t, NULL, fas_serve, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

static inline void
fas_write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL || fputs(text, fp) == EOF || fclose(fp) != 0)
		abort();
}

/* Starts the server and writes a kubeconfig (token file, TLS checks off)
 * into a temporary directory.  -1 when openssl cannot make a key. */
static inline int
fas_start(struct fas *f)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	char cmd[512], cert[128], key[128], kc[1024];
	int one = 1;

	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->f_mu, NULL);
	snprintf(f->f_dir, sizeof(f->f_dir), "/tmp/fas-XXXXXX");
	if (mkdtemp(f->f_dir) == NULL)
		return -1;
	snprintf(cert, sizeof(cert), "%s/cert.pem", f->f_dir);
	snprintf(key, sizeof(key), "%s/key.pem", f->f_dir);
	snprintf(cmd, sizeof(cmd),
	    "openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:prime256v1 -nodes -keyout %s -out %s "
	    "-subj /CN=127.0.0.1 -days 1 2>/dev/null",
	    key, cert);
	if (system(cmd) != 0)
		return -1;
	f->f_ctx = SSL_CTX_new(TLS_server_method());
	if (SSL_CTX_use_certificate_file(f->f_ctx, cert, SSL_FILETYPE_PEM) !=
	        1 ||
	    SSL_CTX_use_PrivateKey_file(f->f_ctx, key, SSL_FILETYPE_PEM) != 1)
		return -1;
	f->f_lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(f->f_lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(f->f_lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(f->f_lfd, 64) == -1 ||
	    getsockname(f->f_lfd, (struct sockaddr *)&sin, &slen) == -1)
		return -1;
	f->f_port = ntohs(sin.sin_port);
	snprintf(
	    f->f_token_file, sizeof(f->f_token_file), "%s/token", f->f_dir);
	fas_write_file(f->f_token_file, FAS_TOKEN "\n");
	snprintf(f->f_kubeconfig, sizeof(f->f_kubeconfig), "%s/kubeconfig",
	    f->f_dir);
	snprintf(kc, sizeof(kc),
	    "apiVersion: v1\nkind: Config\ncurrent-context: fas\n"
	    "clusters:\n- name: fas\n  cluster:\n"
	    "    server: https://127.0.0.1:%u\n"
	    "    insecure-skip-tls-verify: true\n"
	    "users:\n- name: fas\n  user:\n    tokenFile: %s\n"
	    "contexts:\n- name: fas\n  context:\n    cluster: fas\n"
	    "    user: fas\n    namespace: runners\n",
	    f->f_port, f->f_token_file);
	fas_write_file(f->f_kubeconfig, kc);
	if (pthread_create(&f->f_thread, NULL, fas_accept, f) != 0)
		return -1;
	return 0;
}

static inline void
fas_stop(struct fas *f)
{
	char cmd[128];
	size_t i;
	int conns;

	f->f_stop = true;
	pthread_join(f->f_thread, NULL);
	close(f->f_lfd);
	pthread_mutex_lock(&f->f_mu);
	for (i = 0; i < f->f_nfds; i++)
		shutdown(f->f_fds[i], SHUT_RDWR);
	pthread_mutex_unlock(&f->f_mu);
	do {
		pthread_mutex_lock(&f->f_mu);
		conns = f->f_conns;
		pthread_mutex_unlock(&f->f_mu);
		if (conns > 0)
			usleep(10000);
	} while (conns > 0);
	for (i = 0; i < f->f_n; i++)
		free(f->f_journal[i].fr_body);
	fas_clear_rules(f);
	SSL_CTX_free(f->f_ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->f_dir);
	if (system(cmd) != 0)
		abort();
}

#endif
