/*
 * JSON-lines logging to stderr.  Every line is one object written with a
 * single write(2): {"ts":…,"level":…,"proc":…,"pid":…,"msg":…, fields…}.
 * Registered secrets are replaced by "[REDACTED]" in every string that
 * enters a line, so no token can reach the log.
 */
#ifndef RP_LOG_H
#define RP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
	LOG_LVL_DEBUG,
	LOG_LVL_INFO,
	LOG_LVL_WARN,
	LOG_LVL_ERROR,
};

/* PIPE_BUF: a line this long is written atomically to a shared pipe. */
#define LOG_LINE_MAX 4096

/* A line under construction; lives on the caller's stack. */
struct log_line {
	char ll_buf[LOG_LINE_MAX];
	size_t ll_len;
	bool ll_on; /* false: level filtered out */
	bool ll_truncated;
};

/* log.c */
void log_init(const char *proc, enum log_level min);
void log_set_level(enum log_level min);
bool log_enabled(enum log_level);
int log_level_parse(const char *, enum log_level *);
const char *log_level_name(enum log_level);
/* The longest secret the logger takes (KUBE_TOKEN_MAX); longer aborts. */
#define LOG_SECRET_MAX (64 * 1024)

/* Copies secret; lines never contain it afterwards.  Values shorter than
 * 4 bytes are ignored.  Adding a value already registered counts a
 * reference. */
void log_secret_add(const char *secret);
/* Drops one reference; the last one wipes the copy.  Unknown: no-op. */
void log_secret_remove(const char *secret);
/* For a credential that rotates: registers secret, then drops old (may be
 * NULL), so the list holds each credential once however often it turns. */
void log_secret_replace(const char *old, const char *secret);
size_t log_secret_count(void);
/* Wipes and drops every secret. */
void log_secrets_clear(void);
/* Redirects output (tests); -1 restores stderr. */
void log_set_fd(int fd);

void log_begin(struct log_line *, enum log_level, const char *msg);
void log_str(struct log_line *, const char *key, const char *val);
void log_strn(struct log_line *, const char *key, const char *val, size_t len);
void log_int(struct log_line *, const char *key, long long val);
void log_uint(struct log_line *, const char *key, unsigned long long val);
void log_bool(struct log_line *, const char *key, bool val);
void log_double(struct log_line *, const char *key, double val);
/* Appends val, already valid JSON, verbatim (after secret redaction). */
void log_raw(struct log_line *, const char *key, const char *json);
void log_end(struct log_line *);

void log_debug(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *, ...) __attribute__((format(printf, 1, 2)));
/* warn: errno's text is appended as field "error"; warnx: nothing added. */
void log_warn(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *, ...) __attribute__((format(printf, 1, 2), noreturn));

/*
 * For code that builds error text.  Redaction always sees the whole text
 * before it is cut to fit, so no part of a secret survives a cut; output
 * is at most LOG_LINE_MAX - 1 bytes.
 */
/* Replaces every registered secret in buf (NUL-terminated, edited in place,
 * never grows past size). */
void log_redact(char *buf, size_t size);
/* Writes src[0..n) redacted into out (NUL-terminated, cut to size). */
void log_redact_copy(char *out, size_t size, const char *src, size_t n);
/* snprintf, redacted before the cut. */
void log_redactf(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vredactf(char *out, size_t size, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
