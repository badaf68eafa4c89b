#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define SECRET_MIN_LEN 4
#define REDACTED       "[REDACTED]"
/* Room kept free so that a truncated line can still be closed: a string's
 * closing quote, ,"truncated":true and }\n (20 bytes). */
#define LINE_RESERVE 32
#define LINE_BODY    (LOG_LINE_MAX - LINE_RESERVE)

struct secret;

static const char *log_proc = "runner-provisioner";
static enum log_level log_min = LOG_LVL_INFO;
static int log_fd = STDERR_FILENO;
static struct secret *log_secrets;
static size_t log_nsecrets, log_secrets_cap, log_secret_maxlen;

static const char *const level_names[] = {
	[LOG_LVL_DEBUG] = "debug",
	[LOG_LVL_INFO] = "info",
	[LOG_LVL_WARN] = "warn",
	[LOG_LVL_ERROR] = "error",
};

void
log_init(const char *proc, enum log_level min)
{
	log_proc = proc;
	log_min = min;
}

void
log_set_level(enum log_level min)
{
	log_min = min;
}

bool
log_enabled(enum log_level level)
{
	return level >= log_min;
}

void
log_set_fd(int fd)
{
	log_fd = fd == -1 ? STDERR_FILENO : fd;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcmp(s, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return level_names[level];
}

/* A registered secret.  Owners that add the same value share one entry;
 * the last log_secret_remove() wipes it. */
struct secret {
	char *s_text;
	size_t s_len;
	unsigned int s_refs;
};

static struct secret *
secret_find(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < log_nsecrets; i++)
		if (log_secrets[i].s_len == len &&
		    memcmp(log_secrets[i].s_text, s, len) == 0)
			return &log_secrets[i];
	return NULL;
}

static void
secret_maxlen_update(void)
{
	size_t i;

	log_secret_maxlen = 0;
	for (i = 0; i < log_nsecrets; i++)
		if (log_secrets[i].s_len > log_secret_maxlen)
			log_secret_maxlen = log_secrets[i].s_len;
}

void
log_secret_add(const char *secret)
{
	struct secret *n;
	size_t len;

	if (secret == NULL || (len = strlen(secret)) < SECRET_MIN_LEN)
		return;
	if (len > LOG_SECRET_MAX)
		abort(); /* callers bound what they read (TOKEN_MAX etc.) */
	if ((n = secret_find(secret, len)) != NULL) {
		n->s_refs++;
		return;
	}
	if (log_nsecrets == log_secrets_cap) {
		log_secrets_cap = log_secrets_cap ? 2 * log_secrets_cap : 8;
		n = calloc(log_secrets_cap, sizeof(*n));
		if (n == NULL)
			abort();
		if (log_nsecrets > 0) {
			memcpy(n, log_secrets, log_nsecrets * sizeof(*n));
			explicit_bzero(log_secrets, log_nsecrets * sizeof(*n));
		}
		free(log_secrets);
		log_secrets = n;
	}
	n = &log_secrets[log_nsecrets];
	if ((n->s_text = strdup(secret)) == NULL)
		abort();
	n->s_len = len;
	n->s_refs = 1;
	log_nsecrets++;
	if (len > log_secret_maxlen)
		log_secret_maxlen = len;
}

void
log_secret_remove(const char *secret)
{
	struct secret *n;

	if (secret == NULL ||
	    (n = secret_find(secret, strlen(secret))) == NULL ||
	    --n->s_refs > 0)
		return;
	explicit_bzero(n->s_text, n->s_len);
	free(n->s_text);
	*n = log_secrets[--log_nsecrets];
	memset(&log_secrets[log_nsecrets], 0, sizeof(*n));
	secret_maxlen_update();
}

void
log_secret_replace(const char *old, const char *secret)
{
	/* Add first: when old and new are equal the entry survives. */
	log_secret_add(secret);
	log_secret_remove(old);
}

size_t
log_secret_count(void)
{
	return log_nsecrets;
}

void
log_secrets_clear(void)
{
	size_t i;

	for (i = 0; i < log_nsecrets; i++) {
		explicit_bzero(log_secrets[i].s_text, log_secrets[i].s_len);
		free(log_secrets[i].s_text);
	}
	free(log_secrets);
	log_secrets = NULL;
	log_nsecrets = log_secrets_cap = log_secret_maxlen = 0;
}

/*
 * Redaction runs on the whole text before anything is cut, so a secret that
 * crosses the cut is hidden as a whole, never shown up to the boundary.
 * Only the first `limit` bytes of s can reach the output, so secrets are
 * looked for in those plus the longest secret's length: a secret that
 * starts before the cut is always found whole.  Covered bytes are marked
 * in a bitmap; each run of them becomes one [REDACTED].
 */
#define REDACT_WINDOW (LOG_LINE_MAX + LOG_SECRET_MAX)

static size_t
redact_window(const char *s, size_t n, size_t limit, char *out, size_t outsize)
{
	uint8_t marks[REDACT_WINDOW / 8 + 1];
	size_t i, j, slen, w, o = 0, rlen = sizeof(REDACTED) - 1;
	const char *p, *q;
	bool any = false;

	if (limit > LOG_LINE_MAX)
		limit = LOG_LINE_MAX;
	if (limit > n)
		limit = n;
	w = n < limit + log_secret_maxlen ? n : limit + log_secret_maxlen;
	memset(marks, 0, (w + 7) / 8);
	for (i = 0; i < log_nsecrets; i++) {
		slen = log_secrets[i].s_len;
		for (p = s; (size_t)(p - s) + slen <= w; p = q + 1) {
			q = memmem(p, w - (size_t)(p - s),
			    log_secrets[i].s_text, slen);
			if (q == NULL)
				break;
			for (j = (size_t)(q - s); j < (size_t)(q - s) + slen;
			     j++)
				marks[j / 8] |= (uint8_t)(1u << (j % 8));
			any = true;
		}
	}
	for (j = 0; j < limit && o + 1 < outsize;) {
		if (!any || !(marks[j / 8] & (1u << (j % 8)))) {
			out[o++] = s[j++];
			continue;
		}
		if (o + rlen + 1 > outsize)
			break;
		memcpy(out + o, REDACTED, rlen);
		o += rlen;
		while (j < w && (marks[j / 8] & (1u << (j % 8))))
			j++;
	}
	out[o] = '\0';
	return o;
}

void
log_redact(char *buf, size_t size)
{
	char tmp[LOG_LINE_MAX];
	size_t n = strlen(buf);

	if (log_nsecrets == 0 || n == 0)
		return;
	redact_window(buf, n, n, tmp, size < sizeof(tmp) ? size : sizeof(tmp));
	memcpy(buf, tmp, strlen(tmp) + 1);
	explicit_bzero(tmp, sizeof(tmp));
}

void
log_redact_copy(char *out, size_t size, const char *src, size_t n)
{
	if (size == 0)
		return;
	if (log_nsecrets == 0) {
		if (n >= size)
			n = size - 1;
		memcpy(out, src, n);
		out[n] = '\0';
		return;
	}
	redact_window(src, n, size - 1, out, size);
}

void
log_redactf(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vredactf(out, size, fmt, ap);
	va_end(ap);
}

/*
 * Formats the whole text: into stackbuf when it fits, else into a heap
 * buffer of its exact size (glibc's vasprintf grows through copies it frees
 * unwiped, so it is not used).  NULL when out of memory.  The caller wipes
 * the result (and frees it when it is not stackbuf).
 */
static char *__attribute__((format(printf, 4, 0))) format_all(
    char *stackbuf, size_t size, size_t *lenp, const char *fmt, va_list ap)
{
	va_list aq;
	char *text;
	int n;

	va_copy(aq, ap);
	n = vsnprintf(stackbuf, size, fmt, aq);
	va_end(aq);
	if (n < 0)
		return NULL;
	*lenp = (size_t)n;
	if ((size_t)n < size)
		return stackbuf;
	explicit_bzero(stackbuf, size);
	if ((text = malloc((size_t)n + 1)) == NULL)
		return NULL;
	vsnprintf(text, (size_t)n + 1, fmt, ap);
	return text;
}

static void
format_done(char *text, char *stackbuf, size_t size, size_t len)
{
	if (text == NULL)
		return;
	explicit_bzero(text, text == stackbuf ? size : len);
	if (text != stackbuf)
		free(text);
}

void
log_vredactf(char *out, size_t size, const char *fmt, va_list ap)
{
	char stackbuf[LOG_LINE_MAX], *text;
	size_t n = 0;

	if ((text = format_all(stackbuf, sizeof(stackbuf), &n, fmt, ap)) ==
	    NULL) {
		log_redact_copy(out, size, "(out of memory)", 15);
		return;
	}
	log_redact_copy(out, size, text, n);
	format_done(text, stackbuf, sizeof(stackbuf), n);
}

/* Bytes a field may still use.  A string cut at the limit has its closing
 * quote written into the reserve, so the length can pass LINE_BODY: the
 * room is then 0, never a wrapped-around size_t. */
static size_t
line_room(const struct log_line *ll)
{
	return ll->ll_len < LINE_BODY ? LINE_BODY - ll->ll_len : 0;
}

static void
put(struct log_line *ll, const char *s, size_t n)
{
	memcpy(ll->ll_buf + ll->ll_len, s, n);
	ll->ll_len += n;
}

/* Appends s as a JSON string body (no quotes); cuts at the line limit. */
static void
put_escaped(struct log_line *ll, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char esc[8];
	size_t i = 0, k, elen;

	while (i < n) {
		k = utf8_seq_len(u + i, n - i);
		if (k == 1 && (u[i] < 0x20 || u[i] == '"' || u[i] == '\\')) {
			switch (u[i]) {
			case '"':
				elen =
				    (size_t)snprintf(esc, sizeof(esc), "\\\"");
				break;
			case '\\':
				elen =
				    (size_t)snprintf(esc, sizeof(esc), "\\\\");
				break;
			case '\n':
				elen =
				    (size_t)snprintf(esc, sizeof(esc), "\\n");
				break;
			case '\t':
				elen =
				    (size_t)snprintf(esc, sizeof(esc), "\\t");
				break;
			case '\r':
				elen =
				    (size_t)snprintf(esc, sizeof(esc), "\\r");
				break;
			default:
				elen = (size_t)snprintf(
				    esc, sizeof(esc), "\\u%04x", u[i]);
				break;
			}
		} else if (k == 0) {
			elen = (size_t)snprintf(esc, sizeof(esc), "\\ufffd");
			k = 1;
		} else {
			if (k > line_room(ll)) {
				ll->ll_truncated = true;
				return;
			}
			put(ll, s + i, k);
			i += k;
			continue;
		}
		if (elen > line_room(ll)) {
			ll->ll_truncated = true;
			return;
		}
		put(ll, esc, elen);
		i += k;
	}
}

/* Bytes put_escaped() writes for s. */
static size_t
escaped_len(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, k, len = 0;

	while (i < n) {
		k = utf8_seq_len(u + i, n - i);
		if (k == 0) {
			len += 6; /* \ufffd */
			k = 1;
		} else if (k == 1 &&
		    (u[i] == '"' || u[i] == '\\' || u[i] == '\n' ||
		        u[i] == '\t' || u[i] == '\r'))
			len += 2;
		else if (k == 1 && u[i] < 0x20)
			len += 6;
		else
			len += k;
		i += k;
	}
	return len;
}

static void
put_key(struct log_line *ll, const char *key)
{
	put(ll, ",\"", 2);
	put_escaped(ll, key, strlen(key));
	put(ll, "\":", 2);
}

/* Whether ,"key": and vlen more bytes fit; marks the line truncated when
 * not.  The key is checked escaped, as put_key() writes it. */
static bool
field_fits(struct log_line *ll, const char *key, size_t vlen)
{
	if (escaped_len(key, strlen(key)) + 4 + vlen > line_room(ll)) {
		ll->ll_truncated = true;
		return false;
	}
	return true;
}

static void
put_string_field(
    struct log_line *ll, const char *key, const char *val, size_t len)
{
	char tmp[LOG_LINE_MAX];

	if (!field_fits(ll, key, 2))
		return;
	if (log_nsecrets > 0) {
		/* Redacted whole, then cut: nothing longer fits a line. */
		len =
		    redact_window(val, len, sizeof(tmp) - 1, tmp, sizeof(tmp));
		val = tmp;
	}
	put_key(ll, key);
	put(ll, "\"", 1);
	put_escaped(ll, val, len);
	put(ll, "\"", 1);
	if (val == tmp)
		explicit_bzero(tmp, len);
}

void
log_begin(struct log_line *ll, enum log_level level, const char *msg)
{
	struct timespec ts;
	struct tm tm;
	char head[160];
	int n;

	ll->ll_len = 0;
	ll->ll_truncated = false;
	ll->ll_on = log_enabled(level);
	if (!ll->ll_on)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(head, sizeof(head),
	    "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\","
	    "\"level\":\"%s\"",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000L, level_names[level]);
	put(ll, head, (size_t)n);
	put_string_field(ll, "proc", log_proc, strlen(log_proc));
	n = snprintf(head, sizeof(head), ",\"pid\":%ld", (long)getpid());
	put(ll, head, (size_t)n);
	put_string_field(ll, "msg", msg, strlen(msg));
}

static void put_number(struct log_line *, const char *, const char *, int);

void
log_str(struct log_line *ll, const char *key, const char *val)
{
	if (!ll->ll_on)
		return;
	if (val == NULL) {
		put_number(ll, key, "null", 4);
		return;
	}
	put_string_field(ll, key, val, strlen(val));
}

void
log_strn(struct log_line *ll, const char *key, const char *val, size_t len)
{
	if (ll->ll_on)
		put_string_field(ll, key, val, len);
}

/* A number or literal the logger wrote itself: never redacted, since a
 * secret that spells "true" or "null" must not break the line's JSON. */
static void
put_number(struct log_line *ll, const char *key, const char *num, int n)
{
	if (!field_fits(ll, key, (size_t)n))
		return;
	put_key(ll, key);
	put(ll, num, (size_t)n);
}

void
log_int(struct log_line *ll, const char *key, long long val)
{
	char num[32];

	if (ll->ll_on)
		put_number(
		    ll, key, num, snprintf(num, sizeof(num), "%lld", val));
}

void
log_uint(struct log_line *ll, const char *key, unsigned long long val)
{
	char num[32];

	if (ll->ll_on)
		put_number(
		    ll, key, num, snprintf(num, sizeof(num), "%llu", val));
}

void
log_bool(struct log_line *ll, const char *key, bool val)
{
	if (ll->ll_on)
		put_number(ll, key, val ? "true" : "false", val ? 4 : 5);
}

void
log_double(struct log_line *ll, const char *key, double val)
{
	char num[40];

	if (ll->ll_on)
		put_number(
		    ll, key, num, snprintf(num, sizeof(num), "%.6g", val));
}

void
log_raw(struct log_line *ll, const char *key, const char *json)
{
	char tmp[LOG_LINE_MAX];
	size_t len;

	if (!ll->ll_on)
		return;
	len = strlen(json);
	if (len >= sizeof(tmp)) {
		/* Cutting would break the JSON: the field is left out. */
		ll->ll_truncated = true;
		return;
	}
	if (log_nsecrets > 0) {
		len = redact_window(json, len, len, tmp, sizeof(tmp));
		json = tmp;
	}
	if (field_fits(ll, key, len)) {
		put_key(ll, key);
		put(ll, json, len);
	}
	if (json == tmp)
		explicit_bzero(tmp, len);
}

void
log_end(struct log_line *ll)
{
	static const char trunc[] = ",\"truncated\":true";
	ssize_t w;
	int saved = errno;

	if (!ll->ll_on)
		return;
	if (ll->ll_truncated)
		put(ll, trunc, sizeof(trunc) - 1);
	put(ll, "}\n", 2);
	do
		w = write(log_fd, ll->ll_buf, ll->ll_len);
	while (w == -1 && errno == EINTR);
	errno = saved;
}

static void __attribute__((format(printf, 3, 0)))
vlog_msg(enum log_level level, const char *err, const char *fmt, va_list ap)
{
	char stackbuf[LOG_LINE_MAX], *msg;
	struct log_line ll;
	size_t n = 0;

	if (!log_enabled(level))
		return;
	/* The whole message, so that redaction sees it before any cut. */
	msg = format_all(stackbuf, sizeof(stackbuf), &n, fmt, ap);
	log_begin(&ll, level,
	    msg != NULL ? msg : "(log message lost: out of memory)");
	if (err != NULL)
		log_str(&ll, "error", err);
	log_end(&ll);
	format_done(msg, stackbuf, sizeof(stackbuf), n);
}

#define LOG_VARIANT(name, level, with_errno)                                  \
	void name(const char *fmt, ...)                                       \
	{                                                                     \
		int saved = errno;                                            \
		va_list ap;                                                   \
		va_start(ap, fmt);                                            \
		vlog_msg(                                                     \
		    level, with_errno ? strerror(saved) : NULL, fmt, ap);     \
		va_end(ap);                                                   \
		errno = saved;                                                \
	}

LOG_VARIANT(log_debug, LOG_LVL_DEBUG, 0)
LOG_VARIANT(log_info, LOG_LVL_INFO, 0)
LOG_VARIANT(log_warn, LOG_LVL_WARN, 1)
LOG_VARIANT(log_warnx, LOG_LVL_WARN, 0)
LOG_VARIANT(log_error, LOG_LVL_ERROR, 0)

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	vlog_msg(LOG_LVL_ERROR, strerror(saved), fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog_msg(LOG_LVL_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
