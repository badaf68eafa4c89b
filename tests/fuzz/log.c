/*
 * The logger (common/log.c): sequences of log calls, secrets registered
 * and cleared between them, and log_redact on buffers of any size, all
 * chosen by the input.  Every line written is at most LOG_LINE_MAX bytes,
 * one JSON object ending in a newline, with the fields written (unless the
 * line says it was truncated), strings that came in as valid UTF-8 and
 * without secrets read back unchanged, and no registered secret in any
 * value.
 *
 * Secrets here are printable ASCII without the characters of "[REDACTED]"
 * and '*', so that no mix of redacted text can spell one by accident.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "fuzz.h"
#include "log.h"

#define NSECRETS   16
#define NFIELDS    8
#define SECRET_MIN 4 /* shorter ones are ignored by the logger */
#define LONG_MAX_B (LOG_LINE_MAX + 1024)

static int out_fd = -1;
static char *secrets[NSECRETS];
static size_t nsecrets;

struct field {
	char *f_key;
	int f_kind; /* 0 string, 1 literal JSON */
	char *f_val;
	size_t f_len;
};

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if ((out_fd = memfd_create("log", MFD_CLOEXEC)) == -1)
		abort();
	log_set_fd(out_fd);
	return 0;
}

static bool
has_secret(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < nsecrets; i++)
		if (memmem(s, n, secrets[i], strlen(secrets[i])) != NULL)
			return true;
	return false;
}

static void
clear_secrets(void)
{
	size_t i;

	for (i = 0; i < nsecrets; i++)
		free(secrets[i]);
	nsecrets = 0;
	log_secrets_clear();
}

static void
add_secret(struct fuzz_in *in)
{
	char *s = fuzz_str(in, 40), *p, *q;

	for (p = q = s; *p != '\0'; p++)
		if (*p > ' ' && *p < 0x7f && strchr("[]*REDACT", *p) == NULL)
			*q++ = *p;
	*q = '\0';
	/* The harness must know every secret the logger has. */
	if (nsecrets < NSECRETS)
		log_secret_add(s);
	if (strlen(s) >= SECRET_MIN && nsecrets < NSECRETS)
		secrets[nsecrets++] = s;
	else
		free(s);
}

/* A value: input bytes, maybe around a secret, maybe repeated past the
 * line limit. */
static char *
value(struct fuzz_in *in, size_t *len)
{
	uint8_t how = fuzz_u8(in);
	const uint8_t *p;
	char *v;
	size_t n, total, i;

	p = fuzz_bytes(in, 255, &n);
	total = (how & 1) && n > 0 ? (size_t)fuzz_u16(in) % LONG_MAX_B : n;
	if (total < n)
		total = n;
	v = malloc(total + 64 + 1);
	FUZZ_CHECK(v != NULL, "out of memory");
	for (i = 0; i < total; i++)
		v[i] = (char)p[i % n];
	if ((how & 2) && nsecrets > 0) {
		/* a secret at a chosen place, overwriting what was there */
		const char *sec = secrets[fuzz_u8(in) % nsecrets];
		size_t at = total > 0 ? fuzz_u16(in) % (total + 1) : 0;

		if (at + strlen(sec) > total)
			total = at + strlen(sec);
		memcpy(v + at, sec, strlen(sec));
	}
	v[total] = '\0';
	*len = (how & 4) ? total : strlen(v);
	return v;
}

static json_t *
read_line(int level, bool expect)
{
	char buf[LOG_LINE_MAX * 4];
	json_error_t jerr;
	ssize_t n;
	json_t *j;

	FUZZ_CHECK(lseek(out_fd, 0, SEEK_SET) == 0, "lseek");
	n = read(out_fd, buf, sizeof(buf));
	FUZZ_CHECK(ftruncate(out_fd, 0) == 0, "ftruncate");
	FUZZ_CHECK(lseek(out_fd, 0, SEEK_SET) == 0, "lseek");
	if (!expect) {
		FUZZ_CHECK(n == 0, "a line written below the level");
		return NULL;
	}
	FUZZ_CHECK(n > 0, "no line written");
	FUZZ_CHECK(n <= LOG_LINE_MAX, "a line of %zd bytes", n);
	FUZZ_CHECK(
	    buf[n - 1] == '\n' && memchr(buf, '\n', (size_t)n - 1) == NULL,
	    "not one line: %.*s", (int)n, buf);
	/* Numbers beyond 64-bit signed are valid JSON; jansson reads them as
	 * reals only when asked. */
	j = json_loadb(
	    buf, (size_t)n, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &jerr);
	FUZZ_CHECK(json_is_object(j), "not a JSON object (%s): %.*s",
	    jerr.text, (int)n, buf);
	FUZZ_CHECK(json_is_string(json_object_get(j, "ts")) &&
	        json_is_string(json_object_get(j, "msg")) &&
	        json_is_number(json_object_get(j, "pid")),
	    "ts, msg or pid missing: %.*s", (int)n, buf);
	FUZZ_CHECK(strcmp(json_string_value(json_object_get(j, "level")),
	               log_level_name((enum log_level)level)) == 0,
	    "wrong level: %.*s", (int)n, buf);
	FUZZ_CHECK(
	    strcmp(json_string_value(json_object_get(j, "proc")), "fuzz") == 0,
	    "wrong proc: %.*s", (int)n, buf);
	return j;
}

/* No value in the line holds a secret.  Keys are the program's constants,
 * and ts and level the logger's own text: a secret that happens to spell
 * one of them is not leaked by it. */
static void
check_no_secret(json_t *j, bool top)
{
	const char *key;
	json_t *v;
	size_t i;

	if (json_is_string(j))
		FUZZ_CHECK(
		    !has_secret(json_string_value(j), json_string_length(j)),
		    "a secret in the log: \"%s\"", json_string_value(j));
	else if (json_is_object(j)) {
		json_object_foreach(j, key, v)
		{
			if (!top ||
			    (strcmp(key, "ts") != 0 &&
			        strcmp(key, "level") != 0))
				check_no_secret(v, false);
		}
	} else if (json_is_array(j))
		json_array_foreach(j, i, v) check_no_secret(v, false);
}

static void
one_line(struct fuzz_in *in)
{
	struct field f[NFIELDS];
	struct log_line ll;
	int level = fuzz_u8(in) % 4;
	size_t nf = fuzz_u8(in) % (NFIELDS + 1), i, mlen;
	char *msg = value(in, &mlen), *rawkey, *p;
	const json_t *got;
	json_t *j;
	bool truncated;

	log_begin(&ll, (enum log_level)level, msg);
	for (i = 0; i < nf; i++) {
		/* Keys are the program's own constants: printable ASCII. */
		rawkey = fuzz_str(in, 24);
		for (p = rawkey; *p != '\0'; p++)
			*p = (char)(' ' + (unsigned char)*p % 95);
		f[i].f_key = malloc(strlen(rawkey) + 16);
		FUZZ_CHECK(f[i].f_key != NULL, "out of memory");
		sprintf(f[i].f_key, "k%zu_%s", i, rawkey);
		free(rawkey);
		f[i].f_kind = 0;
		switch (fuzz_u8(in) % 6) {
		case 0:
			f[i].f_val = value(in, &f[i].f_len);
			log_str(&ll, f[i].f_key, f[i].f_val);
			f[i].f_len = strlen(f[i].f_val);
			break;
		case 1:
			f[i].f_val = value(in, &f[i].f_len);
			log_strn(&ll, f[i].f_key, f[i].f_val, f[i].f_len);
			break;
		case 2:
			f[i].f_kind = 1;
			f[i].f_val = strdup(fuzz_bool(in) ? "true" : "false");
			log_bool(&ll, f[i].f_key, f[i].f_val[0] == 't');
			break;
		case 3:
			f[i].f_kind = 1;
			f[i].f_val = strdup("null");
			log_str(&ll, f[i].f_key, NULL);
			break;
		case 4: {
			long long v = (long long)fuzz_u64(in);

			f[i].f_kind = 1;
			f[i].f_val = NULL;
			if (fuzz_bool(in))
				log_int(&ll, f[i].f_key, v);
			else
				log_uint(
				    &ll, f[i].f_key, (unsigned long long)v);
			break;
		}
		default: {
			uint64_t bits = fuzz_u64(in);
			double d;

			memcpy(&d, &bits, sizeof(d));
			f[i].f_kind = 1;
			f[i].f_val = NULL;
			/* JSON has no NaN or infinity; callers pass
			 * finite numbers. */
			log_double(
			    &ll, f[i].f_key, d == d && d - d == 0 ? d : 0);
			break;
		}
		}
	}
	log_end(&ll);

	j = read_line(level, log_enabled((enum log_level)level));
	if (j != NULL) {
		check_no_secret(j, true);
		truncated = json_is_true(json_object_get(j, "truncated"));
		for (i = 0; i < nf && !truncated; i++) {
			got = json_object_get(j, f[i].f_key);
			FUZZ_CHECK(
			    got != NULL, "field %s missing", f[i].f_key);
			/* (A NUL ends a value once secrets are registered: it
			 * is redacted as a C string.) */
			if (f[i].f_kind == 0 &&
			    f[i].f_len < LOG_LINE_MAX / 2 &&
			    fuzz_utf8_valid(f[i].f_val, f[i].f_len) &&
			    memchr(f[i].f_val, '\0', f[i].f_len) == NULL &&
			    !has_secret(f[i].f_val, f[i].f_len))
				FUZZ_CHECK(
				    json_string_length(got) == f[i].f_len &&
				        memcmp(json_string_value(got),
				            f[i].f_val, f[i].f_len) == 0,
				    "field %s: %zu bytes \"%.*s\" came back "
				    "as %zu "
				    "bytes \"%s\"",
				    f[i].f_key, f[i].f_len, (int)f[i].f_len,
				    f[i].f_val, json_string_length(got),
				    json_string_value(got));
			if (f[i].f_kind == 1 && f[i].f_val != NULL) {
				json_t *lit = json_loads(
				    f[i].f_val, JSON_DECODE_ANY, NULL);

				FUZZ_CHECK(json_equal(got, lit),
				    "field %s is not %s", f[i].f_key,
				    f[i].f_val);
				json_decref(lit);
			}
		}
		json_decref(j);
	}
	for (i = 0; i < nf; i++) {
		free(f[i].f_key);
		free(f[i].f_val);
	}
	free(msg);
}

static void
redact(struct fuzz_in *in)
{
	size_t size = (size_t)fuzz_u16(in) % 600 + 1, len;
	char *v = value(in, &len), *buf = malloc(size);

	FUZZ_CHECK(buf != NULL, "out of memory");
	len = strlen(v) < size - 1 ? strlen(v) : size - 1;
	memcpy(buf, v, len);
	buf[len] = '\0';
	log_redact(buf, size);
	FUZZ_CHECK(memchr(buf, '\0', size) != NULL,
	    "redaction left no NUL within %zu bytes", size);
	FUZZ_CHECK(!has_secret(buf, strlen(buf)),
	    "redacted text has a "
	    "secret: \"%s\"",
	    buf);
	free(buf);
	free(v);
}

static void
printf_line(struct fuzz_in *in)
{
	size_t len;
	char *v = value(in, &len);
	json_t *j;

	log_warnx("fuzz %s", v);
	j = read_line(LOG_LVL_WARN, log_enabled(LOG_LVL_WARN));
	if (j != NULL)
		check_no_secret(j, true);
	json_decref(j);
	free(v);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	int ops = 0;

	log_init("fuzz", LOG_LVL_DEBUG);
	while (in.fi_n > 0 && ops++ < 64) {
		switch (fuzz_u8(&in) % 8) {
		case 0:
		case 1:
			add_secret(&in);
			break;
		case 2:
			clear_secrets();
			break;
		case 3:
			log_set_level((enum log_level)(fuzz_u8(&in) % 4));
			break;
		case 4:
			redact(&in);
			break;
		case 5:
			printf_line(&in);
			break;
		default:
			one_line(&in);
			break;
		}
	}
	clear_secrets();
	return 0;
}
