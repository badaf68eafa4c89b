#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define SECRET_MIN_LEN 4
#define REDACTED       "[REDACTED]"
/* Room kept free so that a truncated line can still be closed: a string's
 * closing quote, ,"truncated":true and }\n (20 bytes). */
#define LINE_RESERVE 32
#define LINE_BODY    (LOG_LINE_MAX - LINE_RESERVE)

static const char *log_proc = "runner-provisioner";
static enum log_level log_min = LOG_LVL_INFO;
static int log_fd = STDERR_FILENO;
static char **log_secrets;
static size_t log_nsecrets;

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

void
log_secret_add(const char *secret)
{
	char **n;
	size_t i;

	if (secret == NULL || strlen(secret) < SECRET_MIN_LEN)
		return;
	for (i = 0; i < log_nsecrets; i++)
		if (strcmp(log_secrets[i], secret) == 0)
			return;
	n = realloc(log_secrets, (log_nsecrets + 1) * sizeof(*n));
	if (n == NULL)
		abort();
	log_secrets = n;
	if ((log_secrets[log_nsecrets] = strdup(secret)) == NULL)
		abort();
	log_nsecrets++;
}

void
log_secrets_clear(void)
{
	size_t i;

	for (i = 0; i < log_nsecrets; i++) {
		explicit_bzero(log_secrets[i], strlen(log_secrets[i]));
		free(log_secrets[i]);
	}
	free(log_secrets);
	log_secrets = NULL;
	log_nsecrets = 0;
}

void
log_redact(char *buf, size_t size)
{
	size_t i, len, slen, rlen = strlen(REDACTED);
	char *p;

	for (i = 0; i < log_nsecrets; i++) {
		slen = strlen(log_secrets[i]);
		p = buf;
		while ((p = strstr(p, log_secrets[i])) != NULL) {
			len = strlen(p);
			if ((size_t)(p - buf) + rlen + (len - slen) >= size) {
				/* No room to grow: blank it out instead. */
				memset(p, '*', slen);
				p += slen;
				continue;
			}
			memmove(p + rlen, p + slen, len - slen + 1);
			memcpy(p, REDACTED, rlen);
			p += rlen;
		}
	}
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

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

/* Appends s as a JSON string body (no quotes); cuts at the line limit. */
static void
put_escaped(struct log_line *ll, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	char esc[8];
	size_t i = 0, k, elen;

	while (i < n) {
		k = utf8_seq(u + i, n - i);
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
		k = utf8_seq(u + i, n - i);
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

	if (len >= sizeof(tmp))
		len = sizeof(tmp) - 1;
	memcpy(tmp, val, len);
	tmp[len] = '\0';
	if (log_nsecrets > 0) {
		log_redact(tmp, sizeof(tmp));
		len = strlen(tmp);
	}
	if (!field_fits(ll, key, 2))
		return;
	put_key(ll, key);
	put(ll, "\"", 1);
	put_escaped(ll, tmp, len);
	put(ll, "\"", 1);
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
		ll->ll_truncated = true;
		return;
	}
	memcpy(tmp, json, len + 1);
	if (log_nsecrets > 0) {
		log_redact(tmp, sizeof(tmp));
		len = strlen(tmp);
	}
	if (!field_fits(ll, key, len))
		return;
	put_key(ll, key);
	put(ll, tmp, len);
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
	struct log_line ll;
	char msg[LOG_LINE_MAX / 2];

	if (!log_enabled(level))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	log_begin(&ll, level, msg);
	if (err != NULL)
		log_str(&ll, "error", err);
	log_end(&ll);
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
