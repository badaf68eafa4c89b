#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "memscan.h"

#define nitems_(a) (sizeof(a) / sizeof((a)[0]))

static int pipefd[2];

static int
setup(void **state)
{
	(void)state;
	if (pipe(pipefd) == -1)
		return -1;
	log_init("tester", LOG_LVL_INFO);
	log_set_fd(pipefd[1]);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	log_set_fd(-1);
	log_secrets_clear();
	close(pipefd[0]);
	close(pipefd[1]);
	return 0;
}

/* Reads what one log call wrote: exactly one line. */
static json_t *
read_line(char *raw, size_t size)
{
	json_error_t jerr;
	ssize_t n;
	json_t *j;

	n = read(pipefd[0], raw, size - 1);
	assert_true(n > 0);
	raw[n] = '\0';
	assert_int_equal(raw[n - 1], '\n');
	assert_ptr_equal(strchr(raw, '\n'), raw + n - 1);
	j = json_loads(raw, 0, &jerr);
	if (j == NULL)
		fail_msg("not JSON: %s (%s)", raw, jerr.text);
	return j;
}

static void
test_fields(void **state)
{
	struct log_line ll;
	char raw[LOG_LINE_MAX + 1];
	json_t *j;

	(void)state;
	log_begin(&ll, LOG_LVL_INFO, "worker loop scaler");
	log_str(&ll, "loop_name", "scaler");
	log_int(&ll, "unclaimed_tasks", 4);
	log_uint(&ll, "desired_vms", 6);
	log_bool(&ll, "ok", true);
	log_end(&ll);
	j = read_line(raw, sizeof(raw));
	assert_string_equal(
	    json_string_value(json_object_get(j, "level")), "info");
	assert_string_equal(
	    json_string_value(json_object_get(j, "proc")), "tester");
	assert_int_equal(
	    json_integer_value(json_object_get(j, "pid")), getpid());
	assert_string_equal(json_string_value(json_object_get(j, "msg")),
	    "worker loop scaler");
	assert_int_equal(
	    json_integer_value(json_object_get(j, "unclaimed_tasks")), 4);
	assert_int_equal(
	    json_integer_value(json_object_get(j, "desired_vms")), 6);
	assert_true(json_is_true(json_object_get(j, "ok")));
	/* RFC 3339 with milliseconds, UTC. */
	assert_int_equal(
	    strlen(json_string_value(json_object_get(j, "ts"))), 24);
	assert_int_equal(json_string_value(json_object_get(j, "ts"))[23], 'Z');
	json_decref(j);
}

static void
test_level_filter(void **state)
{
	char raw[LOG_LINE_MAX + 1];
	json_t *j;

	(void)state;
	log_debug("hidden %d", 1);
	log_warnx("shown %d", 2);
	j = read_line(raw, sizeof(raw));
	assert_string_equal(
	    json_string_value(json_object_get(j, "msg")), "shown 2");
	assert_string_equal(
	    json_string_value(json_object_get(j, "level")), "warn");
	json_decref(j);
	log_set_level(LOG_LVL_DEBUG);
	log_debug("now %s", "visible");
	j = read_line(raw, sizeof(raw));
	assert_string_equal(
	    json_string_value(json_object_get(j, "level")), "debug");
	json_decref(j);
	log_set_level(LOG_LVL_INFO);
}

static void
test_warn_appends_errno(void **state)
{
	char raw[LOG_LINE_MAX + 1];
	json_t *j;

	(void)state;
	errno = ENOENT;
	log_warn("open %s", "x");
	assert_int_equal(errno, ENOENT);
	j = read_line(raw, sizeof(raw));
	assert_string_equal(
	    json_string_value(json_object_get(j, "error")), strerror(ENOENT));
	json_decref(j);
}

static void
test_secret_redacted_everywhere(void **state)
{
	struct log_line ll;
	char raw[LOG_LINE_MAX + 1];
	json_t *j;

	(void)state;
	log_secret_add("s3cr3t-token-value");
	log_begin(&ll, LOG_LVL_ERROR, "bad token s3cr3t-token-value here");
	log_str(&ll, "body", "{\"token\":\"s3cr3t-token-value\"}");
	log_raw(&ll, "obj", "{\"t\":\"xs3cr3t-token-valuex\"}");
	log_end(&ll);
	j = read_line(raw, sizeof(raw));
	assert_null(strstr(raw, "s3cr3t-token-value"));
	assert_string_equal(json_string_value(json_object_get(j, "msg")),
	    "bad token [REDACTED] here");
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(j, "obj"), "t")),
	    "x[REDACTED]x");
	json_decref(j);
	log_info("printf path s3cr3t-token-value");
	j = read_line(raw, sizeof(raw));
	assert_null(strstr(raw, "s3cr3t"));
	json_decref(j);
}

static void
test_escaping_and_bad_utf8(void **state)
{
	struct log_line ll;
	char raw[LOG_LINE_MAX + 1];
	json_t *j;

	(void)state;
	log_begin(&ll, LOG_LVL_INFO, "esc");
	log_str(&ll, "s", "q\"b\\n\nt\t\x01 caf\xc3\xa9");
	log_strn(&ll, "bin",
	    "a\xff\xfe"
	    "b",
	    4);
	log_end(&ll);
	j = read_line(raw, sizeof(raw));
	assert_string_equal(json_string_value(json_object_get(j, "s")),
	    "q\"b\\n\nt\t\x01 caf\xc3\xa9");
	assert_string_equal(json_string_value(json_object_get(j, "bin")),
	    "a\xef\xbf\xbd\xef\xbf\xbd"
	    "b");
	json_decref(j);
}

static void
test_long_line_truncated_but_valid(void **state)
{
	struct log_line ll;
	char raw[LOG_LINE_MAX + 1];
	char *big;
	json_t *j;

	(void)state;
	big = malloc(3 * LOG_LINE_MAX);
	assert_non_null(big);
	memset(big, 'x', 3 * LOG_LINE_MAX - 1);
	big[3 * LOG_LINE_MAX - 1] = '\0';
	log_begin(&ll, LOG_LVL_INFO, "long");
	log_str(&ll, "a", big);
	log_int(&ll, "after", 1);
	log_end(&ll);
	free(big);
	j = read_line(raw, sizeof(raw));
	assert_true(strlen(raw) <= LOG_LINE_MAX);
	assert_true(json_is_true(json_object_get(j, "truncated")));
	json_decref(j);
}

/* A value that fills the line exactly used to leave a room of "minus one"
 * (a wrapped size_t), and every later field was written past the buffer. */
static void
test_full_line_then_more_fields(void **state)
{
	static const char fills[] = { 'a', '"', '\x01' };
	struct log_line ll;
	char raw[LOG_LINE_MAX + 1];
	size_t i, len, big = 3 * LOG_LINE_MAX;
	char *a, *b;
	json_t *j;

	(void)state;
	a = malloc(big + 1);
	b = malloc(big + 1);
	assert_non_null(a);
	assert_non_null(b);
	memset(b, 'b', big);
	b[big] = '\0';
	for (i = 0; i < nitems_(fills); i++) {
		memset(a, fills[i], big);
		a[big] = '\0';
		log_begin(&ll, LOG_LVL_ERROR, "fill");
		log_str(&ll, "a", a);
		log_str(&ll, "b", b);
		log_str(&ll, "key\x01\"\\with escapes", b);
		log_raw(&ll, "raw", "[1,2,3]");
		log_int(&ll, "n", 1);
		log_strn(&ll, "c", b, big);
		assert_true(ll.ll_len <= LOG_LINE_MAX);
		log_end(&ll);
		j = read_line(raw, sizeof(raw));
		len = strlen(raw);
		assert_true(len <= LOG_LINE_MAX);
		assert_true(json_is_true(json_object_get(j, "truncated")));
		assert_non_null(json_object_get(j, "a"));
		assert_null(json_object_get(j, "b"));
		assert_null(json_object_get(j, "n"));
		json_decref(j);
	}
	/* The flag path of the original report: a long value in a printf
	 * message, then a field. */
	memset(a, 'a', 4000);
	a[4000] = '\0';
	log_begin(&ll, LOG_LVL_INFO, "starting");
	log_str(&ll, "circleci_api_addr", a);
	log_str(&ll, "run_dir", "/tmp/x");
	log_raw(&ll, "obj", "{\"k\":\"a long object value\"}");
	log_end(&ll);
	j = read_line(raw, sizeof(raw));
	assert_true(strlen(raw) <= LOG_LINE_MAX);
	json_decref(j);
	free(a);
	free(b);
}

static char tok[41];

/* True when raw holds 6 or more consecutive bytes of tok. */
static bool
shows_part_of_token(const char *raw)
{
	char piece[7];
	size_t k, len = strlen(tok);

	for (k = 0; k + 6 <= len; k++) {
		memcpy(piece, tok + k, 6);
		piece[6] = '\0';
		if (strstr(raw, piece) != NULL)
			return true;
	}
	return false;
}

/* A token that crosses the point where a value, a printf message or an
 * error buffer is cut must vanish whole: redaction runs before the cut. */
static void
test_redaction_before_cut(void **state)
{
	char raw[LOG_LINE_MAX + 1], small[64], *big;
	size_t n = 3 * LOG_LINE_MAX, at, len;
	struct log_line ll;
	json_t *j;

	(void)state;
	memscan_token(tok, sizeof(tok) - 1);
	len = strlen(tok);
	log_secret_add(tok);
	big = malloc(n + 1);
	assert_non_null(big);
	/* Every offset around the field's cut (the line's 4 KiB). */
	for (at = LOG_LINE_MAX - 200; at < LOG_LINE_MAX + 8; at += 3) {
		memset(big, 'x', n);
		big[n] = '\0';
		memcpy(big + at - len / 2, tok, len);
		log_begin(&ll, LOG_LVL_INFO, "cut");
		log_str(&ll, "v", big);
		log_end(&ll);
		j = read_line(raw, sizeof(raw));
		if (shows_part_of_token(raw))
			fail_msg("token part at offset %zu: %s", at, raw);
		json_decref(j);
	}
	/* A printf message used to be cut at 2 KiB before redaction. */
	for (at = LOG_LINE_MAX / 2 - 40; at < LOG_LINE_MAX / 2 + 8; at++) {
		memset(big, 'y', n);
		big[n] = '\0';
		memcpy(big + at - len / 2, tok, len);
		log_warnx("%s", big);
		j = read_line(raw, sizeof(raw));
		if (shows_part_of_token(raw))
			fail_msg("token part at offset %zu: %s", at, raw);
		json_decref(j);
	}
	/* Error text built for a small buffer. */
	for (at = 0; at < sizeof(small) + len; at++) {
		memset(big, 'z', 200);
		big[200] = '\0';
		memcpy(big + at, tok, len);
		log_redactf(small, sizeof(small), "HTTP 500: %s", big);
		assert_true(strlen(small) < sizeof(small));
		if (shows_part_of_token(small))
			fail_msg("token part at offset %zu: %s", at, small);
		log_redact_copy(small, sizeof(small), big, strlen(big));
		if (shows_part_of_token(small))
			fail_msg("token part at offset %zu: %s", at, small);
	}
	/* In place, with room: the marker replaces it. */
	snprintf(small, sizeof(small), "a %s b", tok);
	log_redact(small, sizeof(small));
	assert_string_equal(small, "a [REDACTED] b");
	free(big);
}

/* A credential that rotates keeps one entry in the redaction list, and the
 * one it replaced is wiped, not left in memory. */
static void
test_rotation_bounded_and_wiped(void **state)
{
	char raw[LOG_LINE_MAX + 1], prev[41], where[160];
	size_t i, leaks;
	json_t *j;

	(void)state;
	log_secrets_clear();
	log_secret_add("static-token-1234");
	memscan_token(tok, sizeof(tok) - 1);
	log_secret_replace(NULL, tok);
	for (i = 0; i < 1000; i++) {
		memcpy(prev, tok, sizeof(prev));
		memscan_token(tok, sizeof(tok) - 1);
		log_secret_replace(prev, tok);
		explicit_bzero(prev, sizeof(prev));
		assert_int_equal(log_secret_count(), 2);
	}
	log_info("now %s", tok);
	j = read_line(raw, sizeof(raw));
	assert_string_equal(
	    json_string_value(json_object_get(j, "msg")), "now [REDACTED]");
	json_decref(j);
	/* Replacing with the same value keeps it. */
	memcpy(prev, tok, sizeof(prev));
	log_secret_replace(prev, prev);
	explicit_bzero(prev, sizeof(prev));
	assert_int_equal(log_secret_count(), 2);
	/* The entry for the current token is the only copy besides tok. */
	leaks = memscan_count(tok, strlen(tok), where, sizeof(where));
	assert_int_not_equal(leaks, 0); /* the scan sees the logger's copy */
	memcpy(prev, tok, sizeof(prev));
	memscan_token(tok, sizeof(tok) - 1);
	log_secret_replace(prev, tok);
	/* prev now holds the retired token: nothing else may. */
	leaks = memscan_count(prev, strlen(prev), where, sizeof(where));
	if (leaks != 0)
		fail_msg("retired token left in memory: %zu pieces, first at "
		         "%s",
		    leaks, where);
	explicit_bzero(prev, sizeof(prev));
	/* Owners share an entry: the second owner's remove keeps it. */
	log_secret_add("shared-secret-abcd");
	log_secret_add("shared-secret-abcd");
	log_secret_remove("shared-secret-abcd");
	log_info("x shared-secret-abcd");
	j = read_line(raw, sizeof(raw));
	assert_string_equal(
	    json_string_value(json_object_get(j, "msg")), "x [REDACTED]");
	json_decref(j);
	log_secret_remove("shared-secret-abcd");
	assert_int_equal(log_secret_count(), 2);
}

/* A secret that spells a JSON literal: boolean and null fields went
 * through redaction and came out as [REDACTED], which is not JSON, so
 * every such line was broken (found by fuzzing). */
static void
test_secret_spelling_a_literal(void **state)
{
	struct log_line ll;
	char raw[LOG_LINE_MAX + 1];
	json_t *j;

	(void)state;
	log_secret_add("true");
	log_secret_add("false");
	log_secret_add("null");
	log_begin(&ll, LOG_LVL_INFO, "literals");
	log_bool(&ll, "t", true);
	log_bool(&ll, "f", false);
	log_str(&ll, "n", NULL);
	log_str(&ll, "s", "not true");
	log_end(&ll);
	j = read_line(raw, sizeof(raw));
	assert_true(json_is_true(json_object_get(j, "t")));
	assert_true(json_is_false(json_object_get(j, "f")));
	assert_true(json_is_null(json_object_get(j, "n")));
	assert_string_equal(
	    json_string_value(json_object_get(j, "s")), "not [REDACTED]");
	json_decref(j);
	log_secrets_clear();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_level_filter),
		cmocka_unit_test(test_warn_appends_errno),
		cmocka_unit_test(test_secret_redacted_everywhere),
		cmocka_unit_test(test_escaping_and_bad_utf8),
		cmocka_unit_test(test_long_line_truncated_but_valid),
		cmocka_unit_test(test_full_line_then_more_fields),
		cmocka_unit_test(test_redaction_before_cut),
		cmocka_unit_test(test_rotation_bounded_and_wiped),
		cmocka_unit_test(test_secret_spelling_a_literal),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
