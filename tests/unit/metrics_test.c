#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "metrics.h"
#include "util.h"

#define PROMTOOL "/usr/bin/promtool"

extern char **environ;

static const double dur_buckets[] = { 0.005, 0.05, 0.5, 1, 5 };

/* A registry like a child's: labelled counters, gauges and histograms,
 * label values that need escaping, and a family without labels. */
static struct metrics *
sample_registry(void)
{
	static const char *const ep_status[] = { "endpoint", "status", NULL };
	static const char *const cls[] = { "resource_class", NULL };
	static const char *const ep[] = { "endpoint", NULL };
	struct metrics *m = metrics_new();
	struct metric_family *req, *des, *dur, *up, *lag;
	struct metric_series *s;

	req = metrics_family(m, METRIC_COUNTER, "api_requests_total",
	    "CircleCI API requests by endpoint and status.", ep_status, NULL,
	    0);
	metric_inc(metric_series(req, (const char *[]){ "tasks", "200" }), 3);
	metric_inc(metric_series(req, (const char *[]){ "tasks", "429" }), 1);
	metric_inc(metric_series(req, (const char *[]){ "tasks", "200" }), 2);
	metric_inc(
	    metric_series(req, (const char *[]){ "running", "transport" }), 1);

	des = metrics_family(m, METRIC_GAUGE, "desired_replicas",
	    "Desired VMs per class (\"clamped\"), a \\ b\n"
	    "second line.",
	    cls, NULL, 0);
	metric_set(
	    metric_series(des, (const char *[]){ "my-org/my-runner" }), 4);
	metric_set(
	    metric_series(des, (const char *[]){ "q\"uote\\back\nnl" }), 0.25);

	dur = metrics_family(m, METRIC_HISTOGRAM, "request_duration_seconds",
	    "CircleCI request latency.", ep, dur_buckets, nitems(dur_buckets));
	s = metric_series(dur, (const char *[]){ "tasks" });
	metric_observe(s, 0.003);
	metric_observe(s, 0.2);
	metric_observe(s, 0.7);
	metric_observe(s, 7);
	(void)metric_series(dur, (const char *[]){ "running" });

	up = metrics_family(
	    m, METRIC_GAUGE, "up", "1 while running.", NULL, NULL, 0);
	metric_set(metric_single(up), 1);

	lag = metrics_family(m, METRIC_GAUGE, "poll_lag_seconds",
	    "Poll-loop lag.", NULL, NULL, 0);
	metric_set(metric_single(lag), 1e20);
	return m;
}

static const char sample_text[] =
    "# HELP runner_provisioner_api_requests_total CircleCI API requests by "
    "endpoint and status.\n"
    "# TYPE runner_provisioner_api_requests_total counter\n"
    "runner_provisioner_api_requests_total{endpoint=\"tasks\",status="
    "\"200\"} 5\n"
    "runner_provisioner_api_requests_total{endpoint=\"tasks\",status="
    "\"429\"} 1\n"
    "runner_provisioner_api_requests_total{endpoint=\"running\",status="
    "\"transport\"} 1\n"
    "# HELP runner_provisioner_desired_replicas Desired VMs per class "
    "(\"clamped\"), a \\\\ b\\nsecond line.\n"
    "# TYPE runner_provisioner_desired_replicas gauge\n"
    "runner_provisioner_desired_replicas{resource_class=\"my-org/"
    "my-runner\"} 4\n"
    "runner_provisioner_desired_replicas{resource_class=\"q\\\"uote\\\\"
    "back\\nnl\"} 0.25\n"
    "# HELP runner_provisioner_request_duration_seconds CircleCI request "
    "latency.\n"
    "# TYPE runner_provisioner_request_duration_seconds histogram\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"tasks\",le=\"0.005\"} 1\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"tasks\",le=\"0.05\"} 1\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"tasks\",le=\"0.5\"} 2\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"tasks\",le=\"1\"} 3\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"tasks\",le=\"5\"} 3\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"tasks\",le=\"+Inf\"} 4\n"
    "runner_provisioner_request_duration_seconds_sum{endpoint=\"tasks\"} "
    "7.9030000000000005\n" /* the exact double, as Go prints it */
    "runner_provisioner_request_duration_seconds_count{endpoint="
    "\"tasks\"} 4\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"running\",le=\"0.005\"} 0\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"running\",le=\"0.05\"} 0\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"running\",le=\"0.5\"} 0\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"running\",le=\"1\"} 0\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"running\",le=\"5\"} 0\n"
    "runner_provisioner_request_duration_seconds_bucket{endpoint="
    "\"running\",le=\"+Inf\"} 0\n"
    "runner_provisioner_request_duration_seconds_sum{endpoint="
    "\"running\"} 0\n"
    "runner_provisioner_request_duration_seconds_count{endpoint="
    "\"running\"} 0\n"
    "# HELP runner_provisioner_up 1 while running.\n"
    "# TYPE runner_provisioner_up gauge\n"
    "runner_provisioner_up 1\n"
    "# HELP runner_provisioner_poll_lag_seconds Poll-loop lag.\n"
    "# TYPE runner_provisioner_poll_lag_seconds gauge\n"
    "runner_provisioner_poll_lag_seconds 1e+20\n";

static void
test_render_exact(void **state)
{
	struct metrics *m = sample_registry();
	struct buf b = { 0 };

	(void)state;
	metrics_render(m, &b);
	if (strcmp(buf_str(&b), sample_text) != 0)
		fail_msg("rendered:\n%s\nwant:\n%s", buf_str(&b), sample_text);
	metrics_free(m);
	buf_free(&b);
}

/* Series are found again by their label values, not duplicated. */
static void
test_series_identity(void **state)
{
	static const char *const lbl[] = { "a", "b", NULL };
	struct metrics *m = metrics_new();
	struct metric_family *f;
	struct metric_series *s1, *s2, *s3;

	(void)state;
	f = metrics_family(m, METRIC_COUNTER, "x_total", "x", lbl, NULL, 0);
	s1 = metric_series(f, (const char *[]){ "1", "2" });
	s2 = metric_series(f, (const char *[]){ "1", "3" });
	s3 = metric_series(f, (const char *[]){ "1", "2" });
	assert_ptr_equal(s1, s3);
	assert_ptr_not_equal(s1, s2);
	metric_inc(s1, 2);
	metric_inc(s3, 0.5);
	assert_true(metric_value(s1) == 2.5);
	assert_true(metric_value(s2) == 0);
	metric_set(s2, 7);
	assert_true(metric_value(s2) == 7);
	metrics_free(m);
	metrics_free(NULL);
}

static void
test_special_values(void **state)
{
	struct metrics *m = metrics_new();
	struct metric_family *f;
	struct buf b = { 0 };

	(void)state;
	f = metrics_family(m, METRIC_GAUGE, "a", "a", NULL, NULL, 0);
	metric_set(metric_single(f), INFINITY);
	f = metrics_family(m, METRIC_GAUGE, "b", "b", NULL, NULL, 0);
	metric_set(metric_single(f), -INFINITY);
	f = metrics_family(m, METRIC_GAUGE, "c", "c", NULL, NULL, 0);
	metric_set(metric_single(f), NAN);
	f = metrics_family(m, METRIC_GAUGE, "d", "d", NULL, NULL, 0);
	metric_set(metric_single(f), -3);
	f = metrics_family(m, METRIC_GAUGE, "e", "e", NULL, NULL, 0);
	metric_set(metric_single(f), 0.1);
	metrics_render(m, &b);
	assert_non_null(strstr(buf_str(&b), "\nrunner_provisioner_a +Inf\n"));
	assert_non_null(strstr(buf_str(&b), "\nrunner_provisioner_b -Inf\n"));
	assert_non_null(strstr(buf_str(&b), "\nrunner_provisioner_c NaN\n"));
	assert_non_null(strstr(buf_str(&b), "\nrunner_provisioner_d -3\n"));
	assert_non_null(strstr(buf_str(&b), "\nrunner_provisioner_e 0.1\n"));
	assert_int_equal(metrics_text_valid(b.b_data, b.b_len), 0);
	metrics_free(m);
	buf_free(&b);
}

/* Runs `promtool check metrics` on text; returns its exit status and
 * leaves its output in out. */
static int
promtool_check(const char *text, size_t len, char *out, size_t outlen)
{
	char in_path[] = "/tmp/rp-metrics-in-XXXXXX";
	char out_path[] = "/tmp/rp-metrics-out-XXXXXX";
	char *const argv[] = { "promtool", "check", "metrics", NULL };
	posix_spawn_file_actions_t fa;
	int in_fd, out_fd, status;
	ssize_t n;
	pid_t pid;

	if (access(PROMTOOL, X_OK) != 0)
		fail_msg(
		    "%s is missing (Debian package prometheus)", PROMTOOL);
	in_fd = mkstemp(in_path);
	out_fd = mkstemp(out_path);
	assert_true(in_fd >= 0 && out_fd >= 0);
	assert_int_equal(write(in_fd, text, len), (ssize_t)len);
	assert_int_equal(lseek(in_fd, 0, SEEK_SET), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
	posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
	assert_int_equal(
	    posix_spawn(&pid, PROMTOOL, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	n = pread(out_fd, out, outlen - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(in_fd);
	close(out_fd);
	unlink(in_path);
	unlink(out_path);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* The real Prometheus parser and linter accept what we render. */
static void
test_promtool_accepts_rendering(void **state)
{
	struct metrics *m = sample_registry();
	struct buf b = { 0 };
	char out[4096];
	int rc;

	(void)state;
	metrics_render(m, &b);
	rc = promtool_check(b.b_data, b.b_len, out, sizeof(out));
	if (rc != 0)
		fail_msg("promtool exit %d:\n%s", rc, out);
	metrics_free(m);
	buf_free(&b);
}

/* The check is not vacuous: promtool refuses broken text. */
static void
test_promtool_rejects_broken_text(void **state)
{
	static const char bad[] = "runner_provisioner_x{a=\"b} 1\n";
	char out[4096];

	(void)state;
	assert_int_not_equal(
	    promtool_check(bad, sizeof(bad) - 1, out, sizeof(out)), 0);
}

/* A value below float64's normal range renders with enough digits to read
 * back; the validator accepted only normal numbers, so a child whose gauge
 * held a denormal had every health answer refused (found by fuzzing).
 * promtool accepts these. */
static void
test_tiny_values(void **state)
{
	static const char *const tiny[] = {
		"runner_provisioner_x 4.94065646e-324\n",
		"runner_provisioner_x -2.2250738585072009e-308\n",
		"runner_provisioner_x 1e-400\n",
	};
	struct metrics *m = metrics_new();
	struct metric_family *f;
	struct buf b = { 0 };
	char out[4096];
	size_t i;
	int rc;

	(void)state;
	f = metrics_family(m, METRIC_GAUGE, "tiny", "t", NULL, NULL, 0);
	metric_set(metric_single(f), 4.9406564584124654e-324);
	metrics_render(m, &b);
	assert_int_equal(metrics_text_valid(b.b_data, b.b_len), 0);
	rc = promtool_check(b.b_data, b.b_len, out, sizeof(out));
	if (rc != 0)
		fail_msg("promtool exit %d:\n%s", rc, out);
	for (i = 0; i < nitems(tiny); i++)
		if (metrics_text_valid(tiny[i], strlen(tiny[i])) != 0)
			fail_msg("rejected: %s", tiny[i]);
	metrics_free(m);
	buf_free(&b);
}

/* Label values are whatever the program has (an error text, say): bytes
 * that are not UTF-8 are rendered as U+FFFD, which Prometheus accepts. */
static void
test_label_value_not_utf8(void **state)
{
	static const char *const labels[] = { "reason", NULL };
	const char *values[] = {
		"bad \xff\xc3 byte \xed\xa0\x80 caf\xc3\xa9"
	};
	struct metrics *m = metrics_new();
	struct metric_family *f;
	struct buf b = { 0 };
	char out[4096];
	int rc;

	(void)state;
	f = metrics_family(m, METRIC_GAUGE, "u", "u", labels, NULL, 0);
	metric_set(metric_series(f, values), 1);
	metrics_render(m, &b);
	assert_non_null(strstr(buf_str(&b),
	    "{reason=\"bad \xef\xbf\xbd\xef\xbf\xbd byte "
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9\"} 1\n"));
	assert_int_equal(metrics_text_valid(b.b_data, b.b_len), 0);
	rc = promtool_check(b.b_data, b.b_len, out, sizeof(out));
	if (rc != 0)
		fail_msg("promtool exit %d:\n%s", rc, out);
	metrics_free(m);
	buf_free(&b);
}

static void
test_text_valid_accepts(void **state)
{
	static const char *const good[] = {
		"",
		"\n",
		"runner_provisioner_up 1\n",
		"runner_provisioner_up 1\n\nrunner_provisioner_x 2\n",
		"# HELP runner_provisioner_up anything \"here\"\n"
		"# TYPE runner_provisioner_up gauge\n"
		"runner_provisioner_up -1.5e-3\n",
		"runner_provisioner_x{a=\"\"} +Inf\n",
		"runner_provisioner_x{a=\"q\\\"\\\\\\n\",b_2=\"} {\"} NaN\n",
		"runner_provisioner_x:sub{le=\"0.5\"} 0\n",
		"runner_provisioner_x{le=\"+Inf\",quantile=\"0.99\"} 1\n",
		"runner_provisioner_x{a=\"caf\xc3\xa9 "
		"\xf0\x9f\x98\x80\",__a=\"\"} 1\n",
		"# HELP runner_provisioner_x a\\\\b\\nc \"d\"\n",
	};
	struct metrics *m = sample_registry();
	struct buf b = { 0 };
	size_t i;

	(void)state;
	metrics_render(m, &b);
	assert_int_equal(metrics_text_valid(b.b_data, b.b_len), 0);
	for (i = 0; i < nitems(good); i++)
		if (metrics_text_valid(good[i], strlen(good[i])) != 0)
			fail_msg("rejected: %s", good[i]);
	metrics_free(m);
	buf_free(&b);
}

static void
test_text_valid_rejects(void **state)
{
	static const struct {
		const char *what, *text;
	} bad[] = {
		{ "no trailing newline", "runner_provisioner_up 1" },
		{ "wrong prefix", "process_cpu_seconds_total 1\n" },
		{ "prefix only in the middle", "x_runner_provisioner_up 1\n" },
		{ "HELP with a foreign name", "# HELP go_goroutines n\n" },
		{ "TYPE with a foreign name", "# TYPE go_goroutines gauge\n" },
		{ "other comment", "# just a comment\n" },
		{ "bare #", "#\n" },
		{ "unquoted label value", "runner_provisioner_x{a=b} 1\n" },
		{ "unterminated label value",
		    "runner_provisioner_x{a=\"b} 1\n" },
		{ "unterminated label set",
		    "runner_provisioner_x{a=\"b\" 1\n" },
		{ "label without name", "runner_provisioner_x{=\"b\"} 1\n" },
		{ "label name with a digit first",
		    "runner_provisioner_x{1a=\"b\"} 1\n" },
		{ "label name with a dash",
		    "runner_provisioner_x{a-b=\"c\"} 1\n" },
		{ "label without value", "runner_provisioner_x{a} 1\n" },
		{ "dangling escape", "runner_provisioner_x{a=\"b\\" },
		{ "no value", "runner_provisioner_x\n" },
		{ "no space before value",
		    "runner_provisioner_x{a=\"b\"}1\n" },
		{ "empty value", "runner_provisioner_x \n" },
		{ "garbage value", "runner_provisioner_x abc\n" },
		{ "value with trailing junk", "runner_provisioner_x 1x\n" },
		{ "two values", "runner_provisioner_x 1 2 3\n" },
		{ "very long value",
		    "runner_provisioner_x "
		    "111111111111111111111111111111111111111111111111111111111"
		    "1111"
		    "111111111\n" },
		{ "second line broken",
		    "runner_provisioner_x 1\nrunner_provisioner_y oops\n" },
		{ "CR line end", "runner_provisioner_x 1\r\n" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < nitems(bad); i++)
		if (metrics_text_valid(bad[i].text, strlen(bad[i].text)) == 0)
			fail_msg(
			    "accepted (%s): %s", bad[i].what, bad[i].text);
}

/* A NUL anywhere, even where C string functions would stop reading, is
 * refused: the length given is the text. */
static void
test_text_valid_rejects_nul(void **state)
{
	static const char with_nul[] = "runner_provisioner_x 1\0\n";
	static const char nul_line[] = "runner_provisioner_x 1\n\0\n";
	static const char nul_label[] = "runner_provisioner_x{a=\"\0\"} 1\n";

	(void)state;
	assert_int_not_equal(
	    metrics_text_valid(with_nul, sizeof(with_nul) - 1), 0);
	assert_int_not_equal(
	    metrics_text_valid(nul_line, sizeof(nul_line) - 1), 0);
	assert_int_not_equal(
	    metrics_text_valid(nul_label, sizeof(nul_label) - 1), 0);
}

/* Every proper prefix of a rendering that cuts a line is refused (a
 * truncated answer from a child must not reach /metrics). */
static void
test_text_valid_rejects_truncation(void **state)
{
	struct metrics *m = sample_registry();
	struct buf b = { 0 };
	size_t len;

	(void)state;
	metrics_render(m, &b);
	for (len = 1; len < b.b_len; len++) {
		int rv = metrics_text_valid(b.b_data, len);
		if (b.b_data[len - 1] == '\n')
			assert_int_equal(rv, 0);
		else if (rv == 0)
			fail_msg("truncated at %zu accepted", len);
	}
	metrics_free(m);
	buf_free(&b);
}

/* Regressions: cases that once failed. */

/* metrics_text_valid() guards the supervisor's /metrics against a child's
 * text; each of these is refused by `promtool check metrics` (a parse
 * error, exit 1), and one such line would break the whole scrape, so
 * the validator refuses them too. */
static void
test_rejects_what_prometheus_rejects(void **state)
{
	static const struct {
		const char *what, *text;
	} bad[] = {
		{ "labels without a comma",
		    "runner_provisioner_x{a=\"b\"c=\"d\"} 1\n" },
		{ "unknown TYPE", "# TYPE runner_provisioner_x bogus\n" },
		{ "invalid escape in a label value",
		    "runner_provisioner_x{a=\"\\q\"} 1\n" },
		{ "hexadecimal value", "runner_provisioner_x 0x1A\n" },
		{ "value out of float64 range",
		    "runner_provisioner_x 1e5000\n" },
		/* Found by comparing what the metrics fuzz harness got
		 * accepted with promtool. */
		{ "help text with an invalid escape",
		    "# HELP runner_provisioner_x a\\qb\n" },
		{ "help text ending in a backslash",
		    "# HELP runner_provisioner_x ab\\\n" },
		{ "a label name twice",
		    "runner_provisioner_x{a=\"1\",a=\"2\"} 1\n" },
		{ "the reserved label __name__",
		    "runner_provisioner_x{__name__=\"y\"} 1\n" },
		{ "a colon in a label name",
		    "runner_provisioner_x{a:b=\"1\"} 1\n" },
		{ "a label value that is not UTF-8",
		    "runner_provisioner_x{a=\"\xc3\"} 1\n" },
		{ "a UTF-16 surrogate in a label value",
		    "runner_provisioner_x{a=\"\xed\xa0\x80\"} 1\n" },
		{ "an overlong UTF-8 form in a label value",
		    "runner_provisioner_x{a=\"\xc0\x80\"} 1\n" },
		{ "a histogram bucket bound that is not a number",
		    "# TYPE runner_provisioner_x histogram\n"
		    "runner_provisioner_x_bucket{le=\"x\"} 1\n" },
		{ "a summary quantile that is not a number",
		    "# TYPE runner_provisioner_x summary\n"
		    "runner_provisioner_x{quantile=\"x\"} 1\n" },
	};
	char out[4096];
	size_t i, accepted = 0;

	(void)state;
	for (i = 0; i < nitems(bad); i++) {
		if (promtool_check(bad[i].text, strlen(bad[i].text), out,
		        sizeof(out)) == 0)
			fail_msg("promtool accepts (%s): %s", bad[i].what,
			    bad[i].text);
		if (metrics_text_valid(bad[i].text, strlen(bad[i].text)) ==
		    0) {
			print_error(
			    "accepted (%s): %s", bad[i].what, bad[i].text);
			accepted++;
		}
	}
	assert_int_equal(accepted, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_exact),
		cmocka_unit_test(test_series_identity),
		cmocka_unit_test(test_special_values),
		cmocka_unit_test(test_promtool_accepts_rendering),
		cmocka_unit_test(test_promtool_rejects_broken_text),
		cmocka_unit_test(test_tiny_values),
		cmocka_unit_test(test_label_value_not_utf8),
		cmocka_unit_test(test_text_valid_accepts),
		cmocka_unit_test(test_text_valid_rejects),
		cmocka_unit_test(test_text_valid_rejects_nul),
		cmocka_unit_test(test_text_valid_rejects_truncation),
		cmocka_unit_test(test_rejects_what_prometheus_rejects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
