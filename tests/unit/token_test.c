#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "token.h"
#include "util.h"

static char tmpdir[64];
static char path[128];

static void
write_file(const char *p, const char *data, size_t len)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static int
group_setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/rp-token-test-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/circle-token", tmpdir);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

static int
setup(void **state)
{
	(void)state;
	unsetenv("CIRCLE_TOKEN");
	unlink(path);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unsetenv("CIRCLE_TOKEN");
	log_secrets_clear();
	log_set_fd(-1);
	return 0;
}

static void
test_env_wins_over_file(void **state)
{
	char err[256] = "";
	const char *source = NULL;
	char *t;

	(void)state;
	write_file(path, "file-token-1234\n", 16);
	setenv("CIRCLE_TOKEN", "env-token-5678", 1);
	t = token_load(path, &source, err, sizeof(err));
	assert_non_null(t);
	assert_string_equal(t, "env-token-5678");
	assert_string_equal(source, "CIRCLE_TOKEN");
	token_free(t);
}

/* An empty CIRCLE_TOKEN counts as unset (the chart may render it empty). */
static void
test_empty_env_falls_back_to_file(void **state)
{
	char err[256] = "";
	const char *source = NULL;
	char *t;

	(void)state;
	write_file(path, "file-token-1234", 15);
	setenv("CIRCLE_TOKEN", "", 1);
	t = token_load(path, &source, err, sizeof(err));
	assert_non_null(t);
	assert_string_equal(t, "file-token-1234");
	assert_string_equal(source, path);
	token_free(t);
}

/* Secrets written with `echo` or by an editor end in a newline (or CRLF);
 * it is not part of the token. */
static void
test_file_trailing_newline_stripped(void **state)
{
	static const char *const contents[] = { "abcdef0123456789\n",
		"abcdef0123456789\r\n", "abcdef0123456789\n\n",
		"abcdef0123456789 \t\n", "abcdef0123456789" };
	char err[256];
	const char *source;
	char *t;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(contents); i++) {
		write_file(path, contents[i], strlen(contents[i]));
		t = token_load(path, &source, err, sizeof(err));
		if (t == NULL)
			fail_msg("content %zu rejected: %s", i, err);
		assert_string_equal(t, "abcdef0123456789");
		assert_string_equal(source, path);
		token_free(t);
	}
}

static void
test_missing_file(void **state)
{
	char err[256] = "";
	const char *source = NULL;

	(void)state;
	assert_null(token_load(path, &source, err, sizeof(err)));
	assert_string_equal(source, path);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "CIRCLE_TOKEN"));
	assert_non_null(strstr(err, "does not exist"));
}

static void
test_directory(void **state)
{
	char err[256] = "";
	const char *source;

	(void)state;
	assert_null(token_load(tmpdir, &source, err, sizeof(err)));
	assert_non_null(strstr(err, tmpdir));
}

static void
test_too_big(void **state)
{
	char err[256] = "";
	const char *source;
	char *big = xmalloc(TOKEN_MAX * 2);

	(void)state;
	memset(big, 'a', TOKEN_MAX * 2);
	write_file(path, big, TOKEN_MAX * 2);
	free(big);
	assert_null(token_load(path, &source, err, sizeof(err)));
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "larger than"));
}

static void
test_empty(void **state)
{
	static const char *const contents[] = { "", "\n", "  \r\n" };
	char err[256];
	const char *source;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(contents); i++) {
		err[0] = '\0';
		write_file(path, contents[i], strlen(contents[i]));
		assert_null(token_load(path, &source, err, sizeof(err)));
		assert_non_null(strstr(err, path));
		assert_non_null(strstr(err, "empty"));
	}
}

/* A token goes into an HTTP header: whitespace or control bytes inside it
 * are refused, and the message never repeats the token. */
static void
test_bad_characters(void **state)
{
	static const char *const bad[] = { "abcd efgh", "abcd\tefgh",
		"abcd\x01"
		"efgh",
		"abcd\x7f"
		"efgh",
		"abcd\nefgh", " abcdefgh", "abcd\refgh" };
	char err[256];
	const char *source;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(bad); i++) {
		err[0] = '\0';
		write_file(path, bad[i], strlen(bad[i]));
		if (token_load(path, &source, err, sizeof(err)) != NULL)
			fail_msg("file token %zu accepted", i);
		assert_non_null(strstr(err, path));
		assert_null(strstr(err, "abcd"));
		assert_null(strstr(err, "efgh"));

		err[0] = '\0';
		setenv("CIRCLE_TOKEN", bad[i], 1);
		if (token_load(path, &source, err, sizeof(err)) != NULL)
			fail_msg("env token %zu accepted", i);
		assert_string_equal(source, "CIRCLE_TOKEN");
		assert_non_null(strstr(err, "CIRCLE_TOKEN"));
		assert_null(strstr(err, "abcd"));
		unsetenv("CIRCLE_TOKEN");
	}
}

/* Reads what the logger wrote to the pipe. */
static void
read_log(int fd, char *out, size_t size)
{
	ssize_t n = read(fd, out, size - 1);

	assert_true(n > 0);
	out[n] = '\0';
}

/* Once loaded, the token never reaches a log line, whatever carries it. */
static void
test_token_redacted_in_logs(void **state)
{
	char err[256], line[LOG_LINE_MAX + 1];
	const char *source;
	struct log_line ll;
	int fds[2];
	char *t;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	log_init("token-test", LOG_LVL_INFO);
	log_set_fd(fds[1]);
	write_file(path, "Xq7sEcReT-t0ken-9f2a\n", 21);
	t = token_load(path, &source, err, sizeof(err));
	assert_non_null(t);

	log_info("calling with Circle-Token: %s", t);
	read_log(fds[0], line, sizeof(line));
	assert_null(strstr(line, "Xq7sEcReT-t0ken-9f2a"));
	assert_non_null(strstr(line, "[REDACTED]"));
	assert_non_null(strstr(line, "Circle-Token"));

	log_begin(&ll, LOG_LVL_WARN, "request failed");
	log_str(&ll, "url", "https://x.example/?t=Xq7sEcReT-t0ken-9f2a&a=b");
	log_end(&ll);
	read_log(fds[0], line, sizeof(line));
	assert_null(strstr(line, "Xq7sEcReT-t0ken-9f2a"));
	assert_non_null(strstr(line, "[REDACTED]&a=b"));

	token_free(t);
	log_set_fd(-1);
	close(fds[0]);
	close(fds[1]);
}

/* The same holds for a token from the environment. */
static void
test_env_token_redacted_in_logs(void **state)
{
	char err[256], line[LOG_LINE_MAX + 1];
	const char *source;
	int fds[2];
	char *t;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	log_init("token-test", LOG_LVL_INFO);
	log_set_fd(fds[1]);
	setenv("CIRCLE_TOKEN", "EnvS3cretTokenValue", 1);
	t = token_load(path, &source, err, sizeof(err));
	assert_non_null(t);
	log_warnx("token is %s", "EnvS3cretTokenValue");
	read_log(fds[0], line, sizeof(line));
	assert_null(strstr(line, "EnvS3cretTokenValue"));
	assert_non_null(strstr(line, "[REDACTED]"));
	token_free(t);
	token_free(NULL);
	log_set_fd(-1);
	close(fds[0]);
	close(fds[1]);
}

/* --circle-token-fd: the supervisor hands CIRCLE_TOKEN on a pipe. */
static void
test_token_from_descriptor(void **state)
{
	char err[256] = "", big[TOKEN_MAX + 2];
	const char *source = NULL;
	int p[2];
	char *t;

	(void)state;
	setenv("CIRCLE_TOKEN", "env-token-ignored", 1);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], "fd-token-4321\n", 14), 14);
	close(p[1]);
	t = token_load_fd(p[0], &source, err, sizeof(err));
	assert_non_null(t);
	assert_string_equal(t, "fd-token-4321");
	assert_string_equal(source, "--circle-token-fd");
	/* The descriptor is closed: nothing else can read it. */
	assert_int_equal(fcntl(p[0], F_GETFD), -1);
	token_free(t);

	/* Too long, empty, or not a descriptor: clear errors. */
	memset(big, 'a', sizeof(big));
	assert_int_equal(pipe(p), 0);
	assert_int_equal(write(p[1], big, TOKEN_MAX + 1), TOKEN_MAX + 1);
	close(p[1]);
	assert_null(token_load_fd(p[0], &source, err, sizeof(err)));
	assert_non_null(strstr(err, "longer than 4096 bytes"));
	assert_int_equal(pipe(p), 0);
	close(p[1]);
	assert_null(token_load_fd(p[0], &source, err, sizeof(err)));
	assert_non_null(strstr(err, "empty"));
	assert_null(token_load_fd(1000, &source, err, sizeof(err)));
	assert_non_null(strstr(err, "--circle-token-fd 1000"));
}

/* CIRCLE_TOKEN is wiped in place: /proc/PID/environ shows the memory the
 * process started with, which unsetenv alone leaves as it was. */
static void
test_env_scrubbed(void **state)
{
	char *v;

	(void)state;
	setenv("CIRCLE_TOKEN", "scrub-me-token-77", 1);
	v = getenv("CIRCLE_TOKEN");
	token_env_scrub();
	assert_null(getenv("CIRCLE_TOKEN"));
	/* setenv copied the value into memory the environment still
	 * points at until glibc drops it; the bytes are zero now. */
	assert_int_equal(v[0], '\0');
	token_env_scrub(); /* unset: nothing to do */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_token_from_descriptor, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_env_scrubbed, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_env_wins_over_file, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_empty_env_falls_back_to_file, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_file_trailing_newline_stripped, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_missing_file, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_directory, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_bad_characters, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_token_redacted_in_logs, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_env_token_redacted_in_logs, setup, teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
