/*
 * Hot reload of the configuration and the CircleCI token file.
 *
 * The kubelet never rewrites a mounted file in place: it writes a new
 * hidden directory and renames the symlink "..data" onto it.  So the
 * directories are watched (inotify), not the files, for "..data" or a
 * file's own name appearing or being written; the files are also read
 * every RELOAD_CHECK_MS in case an event was missed.  Either way only a
 * change of content counts.
 *
 * A change is validated with the loader the start-up used.  Rejected:
 * the running configuration stays, the log says why (file:line:col), and
 * /ready and runner_provisioner_config_reloads_total{result="rejected"}
 * show it.  Accepted: a new generation, saved in the run directory (a
 * child restarted later starts from it, never from a file that may have
 * changed since) and sent to each running child over its own socket,
 * again every RELOAD_RESEND_MS until the child answers: the actuator gets
 * the files as written, the poller the configuration without runner
 * tokens or user data, and the CircleCI token.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "supervisor.h"
#include "token.h"
#include "util.h"

#define WATCH_MASK                                                            \
	(IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE |               \
	    IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF)

static const char *const snapshot_name[3] = { "poller-config.yaml",
	"actuator-config.yaml", "actuator-secrets.yaml" };

static void
wipe_free(char *p, size_t len)
{
	if (p != NULL) {
		explicit_bzero(p, len);
		free(p);
	}
}

static bool
same(const char *a, size_t alen, const char *b, size_t blen)
{
	return (a == NULL) == (b == NULL) &&
	    (a == NULL || (alen == blen && memcmp(a, b, alen) == 0));
}

/* Whether the files hold what was last looked at (accepted or not).  A
 * NULL token was not read; a NULL secrets text is no secrets file. */
static bool
seen(const struct sup_reload *r, const char *config, size_t clen,
    const char *token, size_t tlen, const char *secrets, size_t slen)
{
	return r->r_seen_config != NULL &&
	    same(r->r_seen_config, r->r_seen_config_len, config, clen) &&
	    (token == NULL ||
	        (r->r_seen_token != NULL &&
	            same(
	                r->r_seen_token, r->r_seen_token_len, token, tlen))) &&
	    same(r->r_seen_secrets, r->r_seen_secrets_len, secrets, slen);
}

static void
remember(struct sup_reload *r, const char *config, size_t clen,
    const char *token, size_t tlen, const char *secrets, size_t slen)
{
	wipe_free(r->r_seen_config, r->r_seen_config_len);
	wipe_free(r->r_seen_token, r->r_seen_token_len);
	wipe_free(r->r_seen_secrets, r->r_seen_secrets_len);
	r->r_seen_config = xstrndup(config, clen);
	r->r_seen_config_len = clen;
	r->r_seen_token = token != NULL ? xstrndup(token, tlen) : NULL;
	r->r_seen_token_len = tlen;
	r->r_seen_secrets = secrets != NULL ? xstrndup(secrets, slen) : NULL;
	r->r_seen_secrets_len = slen;
}

/* Writes data to <run dir>/name, private, replacing it at once. */
static int
save(const char *dir, const char *name, const char *data, size_t len,
    char *path, size_t size, char *err, size_t errlen)
{
	char tmp[PATH_MAX];
	ssize_t w;
	size_t off = 0;
	int fd;

	snprintf(path, size, "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) ==
	    -1)
		goto fail;
	while (off < len) {
		if ((w = write(fd, data + off, len - off)) < 0) {
			if (errno == EINTR)
				continue;
			close(fd);
			goto fail;
		}
		off += (size_t)w;
	}
	if (fsync(fd) == -1 || close(fd) == -1 || rename(tmp, path) == -1)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen,
	    "cannot save the configuration for restarts "
	    "in %s: %s",
	    dir, strerror(errno));
	unlink(tmp);
	return -1;
}

/* The messages each child gets for the current generation, and the
 * files it starts from.  -1 with err when they cannot be made. */
static int
prepare(struct supervisor *s, char *err, size_t errlen)
{
	struct sup_reload *r = &s->s_reload;
	struct msg_config c;
	char *pub;
	size_t plen;
	int i;

	if ((pub = conf_strip_secrets(r->r_config, r->r_config_len, &plen)) ==
	    NULL) {
		snprintf(err, errlen, "%s: cannot be rendered without secrets",
		    s->s_flags->f_config);
		return -1;
	}
	if (plen > CONF_FILE_MAX) {
		snprintf(err, errlen,
		    "%s: larger than %d bytes once its aliases are expanded",
		    s->s_flags->f_config, CONF_FILE_MAX);
		free(pub);
		return -1;
	}
	if (save(s->s_run_dir, snapshot_name[0], pub, plen, r->r_snapshot[0],
	        sizeof(r->r_snapshot[0]), err, errlen) == -1 ||
	    save(s->s_run_dir, snapshot_name[1], r->r_config, r->r_config_len,
	        r->r_snapshot[1], sizeof(r->r_snapshot[1]), err,
	        errlen) == -1 ||
	    (r->r_secrets != NULL &&
	        save(s->s_run_dir, snapshot_name[2], r->r_secrets,
	            r->r_secrets_len, r->r_snapshot[2],
	            sizeof(r->r_snapshot[2]), err, errlen) == -1)) {
		free(pub);
		return -1;
	}
	if (r->r_secrets == NULL && r->r_snapshot[2][0] != '\0') {
		unlink(r->r_snapshot[2]);
		r->r_snapshot[2][0] = '\0';
	}
	for (i = 0; i < 2; i++) {
		memset(&c, 0, sizeof(c));
		c.c_generation = r->r_generation;
		c.c_role = i == 0 ? ROLE_POLLER : ROLE_ACTUATOR;
		c.c_docs[0].cd_kind = CONFIG_DOC_CONFIG;
		strlcpy_rp(c.c_docs[0].cd_name, s->s_flags->f_config,
		    sizeof(c.c_docs[0].cd_name));
		c.c_docs[0].cd_text = i == 0 ? pub : r->r_config;
		c.c_docs[0].cd_len = i == 0 ? plen : r->r_config_len;
		c.c_ndocs = 1;
		if (i == 0 && r->r_token != NULL) {
			c.c_docs[1].cd_kind = CONFIG_DOC_TOKEN;
			strlcpy_rp(c.c_docs[1].cd_name,
			    s->s_flags->f_circle_token_file,
			    sizeof(c.c_docs[1].cd_name));
			c.c_docs[1].cd_text = r->r_token;
			c.c_docs[1].cd_len = strlen(r->r_token);
			c.c_ndocs = 2;
		}
		if (i == 1 && r->r_secrets != NULL) {
			c.c_docs[1].cd_kind = CONFIG_DOC_SECRETS;
			strlcpy_rp(c.c_docs[1].cd_name, s->s_flags->f_secrets,
			    sizeof(c.c_docs[1].cd_name));
			c.c_docs[1].cd_text = r->r_secrets;
			c.c_docs[1].cd_len = r->r_secrets_len;
			c.c_ndocs = 2;
		}
		if (r->r_msg[i].b_data != NULL)
			explicit_bzero(r->r_msg[i].b_data, r->r_msg[i].b_cap);
		buf_reset(&r->r_msg[i]);
		msg_config_encode(&c, ++s->s_seq, &r->r_msg[i]);
	}
	free(pub);
	return 0;
}

/* Reads the watched files: NULL text (errno kept) when a file cannot be
 * read. */
static char *
read_text(const char *path, size_t max, size_t *len, char *err, size_t errlen)
{
	char *t;
	int e;

	/* One byte over the limit tells "too large" from "exactly max". */
	if ((t = read_file(path, max + 1, len)) != NULL)
		return t;
	e = errno;
	if (e == EFBIG)
		snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
	else
		snprintf(err, errlen, "%s: %s", path, strerror(e));
	errno = e;
	return NULL;
}

/* secrets.yaml: NULL with *absent when there is none (the default path
 * does not exist, or --secrets ''), NULL with err when it cannot be read. */
static char *
read_secrets(
    const struct flags *f, size_t *len, bool *absent, char *err, size_t errlen)
{
	char *t;

	*absent = false;
	*len = 0;
	if (f->f_secrets == NULL) {
		*absent = true;
		return NULL;
	}
	if ((t = read_text(f->f_secrets, CONF_FILE_MAX, len, err, errlen)) ==
	        NULL &&
	    errno == ENOENT && !f->f_secrets_set)
		*absent = true;
	return t;
}

/* The configuration the files make, checked as at start-up. */
static struct conf *
parse_files(const struct flags *f, const char *config, size_t clen,
    const char *secrets, size_t slen, char *err, size_t errlen)
{
	return conf_parse_files(f->f_config, config, clen,
	    secrets != NULL ? f->f_secrets : NULL, secrets, slen, 0, err,
	    errlen);
}

static void
watch_dir(struct sup_reload *r, const char *file)
{
	char tmp[PATH_MAX], *dir;
	size_t i;
	int wd;

	if (r->r_inotify == -1 || file == NULL)
		return;
	strlcpy_rp(tmp, file, sizeof(tmp));
	dir = dirname(tmp);
	for (i = 0; i < r->r_nwatch; i++)
		if (strcmp(r->r_watch[i].w_dir, dir) == 0)
			return;
	if (r->r_nwatch == nitems(r->r_watch))
		return;
	if ((wd = inotify_add_watch(r->r_inotify, dir, WATCH_MASK)) == -1) {
		log_warn("cannot watch %s for configuration changes (checked "
		         "every %ds instead)",
		    dir, RELOAD_CHECK_MS / 1000);
		return;
	}
	r->r_watch[r->r_nwatch].w_wd = wd;
	strlcpy_rp(r->r_watch[r->r_nwatch].w_dir, dir,
	    sizeof(r->r_watch[r->r_nwatch].w_dir));
	r->r_nwatch++;
}

static void
watch_all(struct supervisor *s)
{
	watch_dir(&s->s_reload, s->s_flags->f_config);
	if (s->s_reload.r_token != NULL)
		watch_dir(&s->s_reload, s->s_flags->f_circle_token_file);
	/* A default secrets file that does not exist may never come: its
	 * directory is watched only when it did or was named. */
	if (s->s_reload.r_secrets != NULL || s->s_flags->f_secrets_set)
		watch_dir(&s->s_reload, s->s_flags->f_secrets);
}

int
reload_init(struct supervisor *s, char *err, size_t errlen)
{
	static const char *const result[] = { "result", NULL };
	struct sup_reload *r = &s->s_reload;
	struct metric_family *f;
	struct conf *conf;
	char *text, *secrets;
	size_t len, slen;
	bool absent;

	r->r_inotify = -1;
	f = metrics_family(s->s_metrics, METRIC_COUNTER,
	    "config_reloads_total",
	    "Changes of the configuration, secrets or CircleCI token files, "
	    "by result.",
	    result, NULL, 0);
	r->r_m_applied = metric_series(f, (const char *[]){ "applied" });
	r->r_m_rejected = metric_series(f, (const char *[]){ "rejected" });
	r->r_m_ok = metric_single(metrics_family(s->s_metrics, METRIC_GAUGE,
	    "config_last_reload_successful",
	    "0 while the files hold a change that was rejected (the running "
	    "configuration stays), else 1.",
	    NULL, NULL, 0));
	r->r_m_generation = metric_single(
	    metrics_family(s->s_metrics, METRIC_GAUGE, "config_generation",
	        "The running configuration: 1 at start, one more per accepted "
	        "change.",
	        NULL, NULL, 0));
	/* The configuration runs as read now (the files may have changed
	 * since the start-up check). */
	if ((text = read_text(s->s_flags->f_config, CONF_FILE_MAX, &len, err,
	         errlen)) == NULL)
		return -1;
	if ((secrets = read_secrets(
	         s->s_flags, &slen, &absent, err, errlen)) == NULL &&
	    !absent) {
		wipe_free(text, len);
		return -1;
	}
	if ((conf = parse_files(
	         s->s_flags, text, len, secrets, slen, err, errlen)) == NULL) {
		wipe_free(text, len);
		wipe_free(secrets, slen);
		return -1;
	}
	conf_register_secrets(conf);
	conf_free(s->s_conf);
	s->s_conf = conf;
	r->r_config = text;
	r->r_config_len = len;
	r->r_secrets = secrets;
	r->r_secrets_len = slen;
	/* A token from CIRCLE_TOKEN or --circle-token-fd cannot change (the
	 * preflight kept it; the variable is gone); one from a file can.
	 * The checks compare the file as read (a final newline included),
	 * so that is what is remembered. */
	text = NULL;
	len = 0;
	if (s->s_circle_token == NULL) {
		if ((text = read_text(s->s_flags->f_circle_token_file,
		         TOKEN_MAX, &len, err, errlen)) == NULL)
			return -1;
		r->r_token = token_parse(
		    text, len, s->s_flags->f_circle_token_file, err, errlen);
		if (r->r_token == NULL) {
			wipe_free(text, len);
			return -1;
		}
	}
	r->r_generation = 1;
	remember(r, r->r_config, r->r_config_len, text, len, r->r_secrets,
	    r->r_secrets_len);
	wipe_free(text, len);
	if (prepare(s, err, errlen) == -1)
		return -1;
	metric_set(r->r_m_ok, 1);
	metric_set(r->r_m_generation, 1);
	if ((r->r_inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1)
		log_warn("inotify is not available: configuration changes are "
		         "checked every %ds",
		    RELOAD_CHECK_MS / 1000);
	watch_all(s);
	r->r_next_check_ms = now_ms() + RELOAD_CHECK_MS;
	r->r_soon_ms = UINT64_MAX;
	return 0;
}

void
reload_free(struct supervisor *s)
{
	struct sup_reload *r = &s->s_reload;
	int i;

	if (r->r_inotify != -1)
		close(r->r_inotify);
	wipe_free(r->r_config, r->r_config_len);
	wipe_free(r->r_secrets, r->r_secrets_len);
	token_free(r->r_token);
	wipe_free(r->r_seen_config, r->r_seen_config_len);
	wipe_free(r->r_seen_token, r->r_seen_token_len);
	wipe_free(r->r_seen_secrets, r->r_seen_secrets_len);
	for (i = 0; i < 2; i++) {
		if (r->r_msg[i].b_data != NULL)
			explicit_bzero(r->r_msg[i].b_data, r->r_msg[i].b_cap);
		buf_free(&r->r_msg[i]);
	}
	memset(r, 0, sizeof(*r));
	r->r_inotify = -1;
}

int
reload_fd(const struct supervisor *s)
{
	return s->s_reload.r_inotify;
}

const char *
sup_circle_token(const struct supervisor *s)
{
	return s->s_reload.r_token != NULL ? s->s_reload.r_token
	                                   : s->s_circle_token;
}

const char *
reload_snapshot(const struct supervisor *s, enum health_role role)
{
	return s->s_reload.r_snapshot[role == ROLE_POLLER ? 0 : 1];
}

const char *
reload_secrets_snapshot(const struct supervisor *s)
{
	return s->s_reload.r_snapshot[2];
}

/* What changed, for the log: class names added and removed. */
static void
log_accepted(const struct conf *old, const struct conf *new,
    bool token_changed, bool secrets_changed, uint64_t generation)
{
	struct log_line ll;
	size_t i, added = 0, removed = 0;

	for (i = 0; i < new->c_nclasses; i++)
		if (conf_class_find(old, new->c_classes[i].cc_name) == NULL)
			added++;
	for (i = 0; i < old->c_nclasses; i++)
		if (conf_class_find(new, old->c_classes[i].cc_name) == NULL)
			removed++;
	log_begin(&ll, LOG_LVL_INFO,
	    "configuration changed: sending it to the poller and the "
	    "actuator");
	log_uint(&ll, "generation", generation);
	log_uint(&ll, "resource_classes", new->c_nclasses);
	log_uint(&ll, "added", added);
	log_uint(&ll, "removed", removed);
	log_bool(&ll, "circle_token_changed", token_changed);
	log_bool(&ll, "secrets_changed", secrets_changed);
	log_end(&ll);
}

static void
rejected(struct supervisor *s, const char *why)
{
	struct sup_reload *r = &s->s_reload;
	struct log_line ll;

	log_begin(&ll, LOG_LVL_ERROR,
	    "configuration change rejected: the running configuration stays");
	log_str(&ll, "error", why);
	log_uint(&ll, "generation", r->r_generation);
	log_end(&ll);
	utf8_copy(r->r_error, why, sizeof(r->r_error));
	r->r_rejected = true;
	r->r_changed_wall_ms = wall_ms();
	metric_inc(r->r_m_rejected, 1);
	metric_set(r->r_m_ok, 0);
}

/* Reads the files; acts only when their content changed. */
static void
check(struct supervisor *s)
{
	struct sup_reload *r = &s->s_reload;
	char err[CONF_ERR_MAX], *config, *token = NULL, *text, *secrets;
	struct conf *conf;
	size_t clen, tlen = 0, slen;
	bool token_changed, secrets_changed, absent;
	uint64_t was_gen;

	if ((config = read_text(s->s_flags->f_config, CONF_FILE_MAX, &clen,
	         err, sizeof(err))) == NULL) {
		/* Mid-swap, or gone: the next event or check tells. */
		log_debug("configuration check: %s", err);
		return;
	}
	if (r->r_token != NULL &&
	    (token = read_text(s->s_flags->f_circle_token_file, TOKEN_MAX,
	         &tlen, err, sizeof(err))) == NULL) {
		log_debug("configuration check: %s", err);
		wipe_free(config, clen);
		return;
	}
	if ((secrets = read_secrets(
	         s->s_flags, &slen, &absent, err, sizeof(err))) == NULL &&
	    !absent) {
		log_debug("configuration check: %s", err);
		wipe_free(config, clen);
		wipe_free(token, tlen);
		return;
	}
	if (seen(r, config, clen, token, tlen, secrets, slen)) {
		wipe_free(config, clen);
		wipe_free(token, tlen);
		wipe_free(secrets, slen);
		return; /* nothing new (or the same rejected change) */
	}
	remember(r, config, clen, token, tlen, secrets, slen);
	if ((conf = parse_files(s->s_flags, config, clen, secrets, slen, err,
	         sizeof(err))) == NULL) {
		rejected(s, err);
		wipe_free(config, clen);
		wipe_free(token, tlen);
		wipe_free(secrets, slen);
		return;
	}
	text = token;
	if (token != NULL) {
		token = token_parse(text, tlen,
		    s->s_flags->f_circle_token_file, err, sizeof(err));
		wipe_free(text, tlen);
		if (token == NULL) {
			rejected(s, err);
			conf_free(conf);
			wipe_free(config, clen);
			wipe_free(secrets, slen);
			return;
		}
	}
	secrets_changed = !same(r->r_secrets, r->r_secrets_len, secrets, slen);
	token_changed = token != NULL && strcmp(token, r->r_token) != 0;
	if (token_changed)
		log_info("the CircleCI API token changed: the poller uses the "
		         "new one from its next poll");
	conf_register_secrets(conf);
	was_gen = r->r_generation;
	wipe_free(r->r_config, r->r_config_len);
	r->r_config = config;
	r->r_config_len = clen;
	wipe_free(r->r_secrets, r->r_secrets_len);
	r->r_secrets = secrets;
	r->r_secrets_len = slen;
	if (token != NULL) {
		token_free(r->r_token);
		r->r_token = token;
	}
	r->r_generation++;
	if (prepare(s, err, sizeof(err)) == -1) {
		/* Not deliverable: keep running what runs. */
		r->r_generation = was_gen;
		rejected(s, err);
		conf_free(conf);
		return;
	}
	log_accepted(
	    s->s_conf, conf, token_changed, secrets_changed, r->r_generation);
	conf_free(s->s_conf);
	s->s_conf = conf;
	r->r_rejected = false;
	r->r_error[0] = '\0';
	r->r_changed_wall_ms = wall_ms();
	metric_inc(r->r_m_applied, 1);
	metric_set(r->r_m_ok, 1);
	metric_set(r->r_m_generation, (double)r->r_generation);
}

void
reload_events(struct supervisor *s, uint64_t now)
{
	struct sup_reload *r = &s->s_reload;
	char buf[4096]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	bool rewatch = false;
	ssize_t n;
	char *p;

	while ((n = read(r->r_inotify, buf, sizeof(buf))) > 0) {
		for (p = buf; p < buf + n; p += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)(void *)p;
			if (ev->mask &
			    (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF |
			        IN_Q_OVERFLOW))
				rewatch = true;
			/* Any name: "..data", the file's, an editor's
			 * temporary; only a change of content counts. */
			if (r->r_soon_ms == UINT64_MAX)
				r->r_soon_ms = now + RELOAD_DEBOUNCE_MS;
		}
	}
	if (rewatch) {
		/* The directory itself went (or events were lost): watch
		 * again at the next check. */
		for (size_t i = 0; i < r->r_nwatch; i++)
			inotify_rm_watch(r->r_inotify, r->r_watch[i].w_wd);
		r->r_nwatch = 0;
		r->r_soon_ms = now;
	}
}

void
reload_tick(struct supervisor *s, uint64_t now)
{
	struct sup_reload *r = &s->s_reload;

	if (now < r->r_soon_ms && now < r->r_next_check_ms)
		return;
	r->r_soon_ms = UINT64_MAX;
	r->r_next_check_ms = now + RELOAD_CHECK_MS;
	if (r->r_nwatch == 0)
		watch_all(s);
	check(s);
}

uint64_t
reload_deadline(const struct supervisor *s)
{
	const struct sup_reload *r = &s->s_reload;
	uint64_t next = r->r_soon_ms < r->r_next_check_ms ? r->r_soon_ms
	                                                  : r->r_next_check_ms;
	const struct child *c;
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_state == CHILD_RUNNING &&
		    c->c_conf_gen < r->r_generation &&
		    c->c_conf_sent_ms + RELOAD_RESEND_MS < next)
			next = c->c_conf_sent_ms + RELOAD_RESEND_MS;
	}
	return next;
}

int
reload_open(struct supervisor *s)
{
	static const char *const names[2] = { IPC_CONF_POLLER,
		IPC_CONF_ACTUATOR };
	char url[IPC_URL_MAX];
	struct child *c;
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (ipc_url(url, sizeof(url), s->s_run_dir,
		        names[c->c_role == ROLE_POLLER ? 0 : 1]) == -1 ||
		    ipc_open(&c->c_conf_sock, IPC_PAIR_LISTEN, url,
		        &c->c_conf_fd) == -1)
			return -1;
	}
	return 0;
}

void
reload_close(struct supervisor *s)
{
	static const char *const names[2] = { IPC_CONF_POLLER,
		IPC_CONF_ACTUATOR };
	char path[PATH_MAX];
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++) {
		nng_close(s->s_children[i].c_conf_sock);
		snprintf(path, sizeof(path), "%s/%s", s->s_run_dir,
		    names[s->s_children[i].c_role == ROLE_POLLER ? 0 : 1]);
		unlink(path);
	}
	for (i = 0; i < nitems(s->s_reload.r_snapshot); i++)
		if (s->s_reload.r_snapshot[i][0] != '\0')
			unlink(s->s_reload.r_snapshot[i]);
}

void
reload_send(struct supervisor *s, uint64_t now)
{
	struct sup_reload *r = &s->s_reload;
	struct child *c;
	struct buf *m;
	size_t i;

	for (i = 0; i < nitems(s->s_children); i++) {
		c = &s->s_children[i];
		if (c->c_state != CHILD_RUNNING ||
		    c->c_conf_gen >= r->r_generation ||
		    now < c->c_conf_sent_ms + RELOAD_RESEND_MS)
			continue;
		m = &r->r_msg[c->c_role == ROLE_POLLER ? 0 : 1];
		c->c_conf_sent_ms = now;
		/* Without waiting: a child not connected yet gets it at the
		 * next try. */
		ipc_send_now(c->c_conf_sock, m->b_data, m->b_len);
	}
}

void
reload_receive(struct supervisor *s, struct child *c)
{
	struct msg_config_ack ack;
	struct log_line ll;
	struct msg_hdr h;
	enum msg_err e;
	nng_msg *m;
	int peer;

	while (ipc_recv(c->c_conf_sock, &m) == 1) {
		e = msg_config_ack_decode(
		    nng_msg_body(m), nng_msg_len(m), &h, &ack);
		peer = ipc_peer_pid(m);
		nng_msg_free(m);
		if (e != MSG_OK) {
			metric_inc(s->s_m_rejected[e], 1);
			log_warnx("dropped a malformed configuration answer "
			          "(%s)",
			    msg_err_name(e));
			continue;
		}
		if (c->c_state != CHILD_RUNNING ||
		    (pid_t)h.h_pid != c->c_pid ||
		    (peer != -1 && peer != (int)h.h_pid) ||
		    ack.ca_role != c->c_role ||
		    ack.ca_generation > s->s_reload.r_generation) {
			metric_inc(s->s_m_rejected[0], 1);
			log_warnx(
			    "dropped a configuration answer from pid %u, "
			    "which is not the running %s",
			    h.h_pid, c->c_name);
			continue;
		}
		if (ack.ca_generation <= c->c_conf_gen)
			continue;
		c->c_conf_gen = ack.ca_generation;
		c->c_conf_error[0] = '\0';
		if (ack.ca_applied) {
			log_begin(&ll, LOG_LVL_INFO, "configuration applied");
			log_str(&ll, "child", c->c_name);
			log_uint(&ll, "generation", ack.ca_generation);
			log_end(&ll);
			continue;
		}
		/* Refused (the supervisor's checks passed, the child's did
		 * not): it runs the configuration it had. */
		utf8_copy(
		    c->c_conf_error, ack.ca_error, sizeof(c->c_conf_error));
		log_begin(&ll, LOG_LVL_ERROR,
		    "a child refused the configuration and keeps running the "
		    "one it had");
		log_str(&ll, "child", c->c_name);
		log_uint(&ll, "generation", ack.ca_generation);
		log_str(&ll, "error", ack.ca_error);
		log_end(&ll);
	}
}

json_t *
reload_report(const struct supervisor *s)
{
	const struct sup_reload *r = &s->s_reload;
	json_t *o, *kids = json_object(), *k;
	size_t i;

	o = json_pack("{s:I,s:s}", "generation", (json_int_t)r->r_generation,
	    "last_change", r->r_rejected ? "rejected" : "applied");
	if (r->r_rejected)
		json_object_set_new(o, "error", json_string(r->r_error));
	if (r->r_changed_wall_ms != 0)
		json_object_set_new(o, "last_change_ms_ago",
		    json_integer(
		        (json_int_t)(wall_ms() - r->r_changed_wall_ms)));
	for (i = 0; i < nitems(s->s_children); i++) {
		const struct child *c = &s->s_children[i];

		k = json_pack(
		    "{s:I}", "generation", (json_int_t)c->c_conf_gen);
		if (c->c_conf_error[0] != '\0')
			json_object_set_new(
			    k, "refused", json_string(c->c_conf_error));
		json_object_set_new(kids, c->c_name, k);
	}
	json_object_set_new(o, "children", kids);
	return o;
}
