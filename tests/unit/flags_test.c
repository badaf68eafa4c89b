#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "util.h"

#define ARGV_MAX 48

/* getopt_long may permute argv, so each parse gets a fresh, writable
 * copy of the arguments.  The strings live until teardown, as a real argv
 * lives as long as the process: getopt keeps a pointer into the last one
 * it parsed. */
#define POOL_MAX 1024
static char *argv_copy[ARGV_MAX + 1];
static int argc_copy;
static char *pool[POOL_MAX];
static size_t npool;

static char *
pooled(const char *s)
{
	assert_true(npool < POOL_MAX);
	return pool[npool++] = xstrdup(s);
}

static void
argv_release(void)
{
	while (npool > 0)
		free(pool[--npool]);
	argc_copy = 0;
}

static int
parse_args(struct flags *f, char *err, size_t errlen, const char *const *args)
{
	argc_copy = 0;
	argv_copy[argc_copy++] = pooled("runner-provisioner");
	for (; *args != NULL; args++) {
		assert_true(argc_copy < ARGV_MAX);
		argv_copy[argc_copy++] = pooled(*args);
	}
	argv_copy[argc_copy] = NULL;
	err[0] = '\0';
	return flags_parse(f, argc_copy, argv_copy, err, errlen);
}

#define PARSE(f, err, ...)                                                    \
	parse_args((f), (err), sizeof(err),                                   \
	    (const char *const[]){ __VA_ARGS__, NULL })

static int
teardown(void **state)
{
	(void)state;
	argv_release();
	return 0;
}

static void
test_defaults(void **state)
{
	char err[FLAGS_ERR_MAX];
	struct flags f;

	(void)state;
	argv_copy[0] = pooled("runner-provisioner");
	argv_copy[1] = NULL;
	argc_copy = 1;
	assert_int_equal(flags_parse(&f, 1, argv_copy, err, sizeof(err)), 0);
	assert_string_equal(f.f_config, "/etc/runner-provisioner/config.yaml");
	assert_string_equal(
	    f.f_circle_token_file, "/etc/runner-provisioner/circle-token");
	assert_string_equal(f.f_api_addr, "https://runner.circleci.com");
	assert_null(f.f_circleci_ca_file);
	assert_null(f.f_namespace);
	assert_null(f.f_kubeconfig);
	assert_int_equal(f.f_poll_interval_ms, 1000);
	assert_int_equal(f.f_shutdown_grace_ms, 10000);
	assert_int_equal(f.f_boot_loop_ms, 60000);
	assert_int_equal(f.f_idle_poll_interval_ms, 5000);
	assert_int_equal(f.f_idle_poll_after_ms, 60000);
	assert_true(f.f_max_rps == 50.0);
	assert_int_equal(f.f_scaler_lines, SCALER_LINES_ALWAYS);
	assert_string_equal(f.f_ready_addr, ":8000");
	assert_string_equal(f.f_live_addr, ":8001");
	assert_null(f.f_run_dir);
	assert_int_equal(f.f_log_level, LOG_LVL_INFO);
	assert_false(f.f_check_config);
	assert_false(f.f_dry_run);
	assert_false(f.f_version);
	assert_false(f.f_help);
	assert_false(f.f_leader_elect);
	assert_string_equal(f.f_lease_name, "runner-provisioner");
	assert_null(f.f_lease_identity);
	assert_false(f.f_drain);
	assert_int_equal(f.f_drain_timeout_ms, 240000);
	flags_free(&f);
	assert_null(f.f_api_addr);
}

static void
test_operations_flags(void **state)
{
	char err[FLAGS_ERR_MAX];
	struct flags f;

	(void)state;
	assert_int_equal(
	    PARSE(&f, err, "--leader-elect", "--lease-name", "rp-prod-1",
	        "--lease-identity", "rp-7d9f-x2k4_0a1b2c3d", "--drain",
	        "--drain-timeout", "10m"),
	    0);
	assert_true(f.f_leader_elect);
	assert_string_equal(f.f_lease_name, "rp-prod-1");
	assert_string_equal(f.f_lease_identity, "rp-7d9f-x2k4_0a1b2c3d");
	assert_true(f.f_drain);
	assert_int_equal(f.f_drain_timeout_ms, 600000);
	flags_free(&f);
}

static void
test_every_flag(void **state)
{
	char err[FLAGS_ERR_MAX];
	struct flags f;

	(void)state;
	assert_int_equal(
	    PARSE(&f, err, "--config", "/cfg/c.yaml", "--circle-token-file",
	        "/cfg/tok", "--circleci-api-addr",
	        "https://circleci.example.com:8443", "--circleci-ca-file",
	        "/cfg/ca.pem", "--namespace", "runners", "--kubeconfig",
	        "/cfg/kube", "--poll-interval", "2500ms", "--shutdown-grace",
	        "30s", "--boot-loop-threshold", "2m", "--idle-poll-interval",
	        "10s", "--idle-poll-after", "5m", "--max-requests-per-second",
	        "12.5", "--log-scaler-lines", "changes", "--ready-addr",
	        "127.0.0.1:9000", "--live-addr", "[::1]:9001", "--run-dir",
	        "/run/rp", "--log-level", "debug", "--check-config",
	        "--dry-run", "--version", "--help"),
	    0);
	assert_string_equal(f.f_config, "/cfg/c.yaml");
	assert_string_equal(f.f_circle_token_file, "/cfg/tok");
	assert_string_equal(f.f_api_addr, "https://circleci.example.com:8443");
	assert_string_equal(f.f_circleci_ca_file, "/cfg/ca.pem");
	assert_string_equal(f.f_namespace, "runners");
	assert_string_equal(f.f_kubeconfig, "/cfg/kube");
	assert_int_equal(f.f_poll_interval_ms, 2500);
	assert_int_equal(f.f_shutdown_grace_ms, 30000);
	assert_int_equal(f.f_boot_loop_ms, 120000);
	assert_int_equal(f.f_idle_poll_interval_ms, 10000);
	assert_int_equal(f.f_idle_poll_after_ms, 300000);
	assert_true(f.f_max_rps == 12.5);
	assert_int_equal(f.f_scaler_lines, SCALER_LINES_CHANGES);
	assert_string_equal(f.f_ready_addr, "127.0.0.1:9000");
	assert_string_equal(f.f_live_addr, "[::1]:9001");
	assert_string_equal(f.f_run_dir, "/run/rp");
	assert_int_equal(f.f_log_level, LOG_LVL_DEBUG);
	assert_true(f.f_check_config);
	assert_true(f.f_dry_run);
	assert_true(f.f_version);
	assert_true(f.f_help);
	flags_free(&f);
}

static void
test_equals_form(void **state)
{
	char err[FLAGS_ERR_MAX];
	struct flags f;

	(void)state;
	assert_int_equal(
	    PARSE(&f, err, "--config=/a/b.yaml", "--poll-interval=1m30s",
	        "--ready-addr=:18000", "--live-addr=localhost:18001",
	        "--log-level=error", "--namespace=ns1",
	        "--circleci-api-addr=https://cci.example.org/"),
	    0);
	assert_string_equal(f.f_config, "/a/b.yaml");
	assert_int_equal(f.f_poll_interval_ms, 90000);
	assert_string_equal(f.f_ready_addr, ":18000");
	assert_string_equal(f.f_live_addr, "localhost:18001");
	assert_int_equal(f.f_log_level, LOG_LVL_ERROR);
	assert_string_equal(f.f_namespace, "ns1");
	assert_string_equal(f.f_api_addr, "https://cci.example.org");
	flags_free(&f);
}

static void
test_api_addr_normalised(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "https://runner.circleci.com/",
		    "https://runner.circleci.com" },
		{ "https://cci.example.com///", "https://cci.example.com" },
		{ "https://cci.example.com:8443/",
		    "https://cci.example.com:8443" },
		{ "https://cci.example.com/prefix/",
		    "https://cci.example.com/prefix" },
		{ "https://127.0.0.1:9443", "https://127.0.0.1:9443" },
	};
	char err[FLAGS_ERR_MAX];
	struct flags f;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		if (PARSE(&f, err, "--circleci-api-addr", cases[i].in) != 0)
			fail_msg("%s rejected: %s", cases[i].in, err);
		assert_string_equal(f.f_api_addr, cases[i].want);
		flags_free(&f);
	}
}

/* Every rejection is -1 with a message that names the offending flag (or
 * argument) so that the operator knows what to fix. */
static void
test_rejections_name_the_flag(void **state)
{
	static const struct {
		const char *args[3];
		const char *must[2]; /* substrings of the message */
	} cases[] = {
		{ { "--circleci-api-addr", "http://runner.circleci.com" },
		    { "--circleci-api-addr", "https://" } },
		{ { "--circleci-api-addr", "runner.circleci.com" },
		    { "--circleci-api-addr", "runner.circleci.com" } },
		{ { "--circleci-api-addr", "https://" },
		    { "--circleci-api-addr" } },
		{ { "--circleci-api-addr", "https:///" },
		    { "--circleci-api-addr" } },
		{ { "--circleci-api-addr", "https://a b.example.com" },
		    { "--circleci-api-addr" } },
		{ { "--circleci-api-addr", "https://cci.example.com/?x=1" },
		    { "--circleci-api-addr" } },
		{ { "--poll-interval", "10" },
		    { "--poll-interval", "\"10\"" } },
		{ { "--poll-interval", "1d" }, { "--poll-interval", "1d" } },
		{ { "--poll-interval", "-1s" }, { "--poll-interval" } },
		{ { "--poll-interval", "" }, { "--poll-interval" } },
		{ { "--poll-interval", "5ms" },
		    { "--poll-interval", "too short" } },
		{ { "--poll-interval", "0" },
		    { "--poll-interval", "too short" } },
		{ { "--shutdown-grace", "soon" },
		    { "--shutdown-grace", "soon" } },
		{ { "--boot-loop-threshold", "1x" },
		    { "--boot-loop-threshold" } },
		{ { "--idle-poll-interval", "5" },
		    { "--idle-poll-interval", "\"5\"" } },
		{ { "--idle-poll-interval", "1ms" },
		    { "--idle-poll-interval", "too short" } },
		{ { "--idle-poll-after", "a minute" },
		    { "--idle-poll-after", "a minute" } },
		{ { "--max-requests-per-second", "0" },
		    { "--max-requests-per-second", "out of range" } },
		{ { "--max-requests-per-second", "0.05" },
		    { "--max-requests-per-second", "out of range" } },
		{ { "--max-requests-per-second", "1000000" },
		    { "--max-requests-per-second", "out of range" } },
		{ { "--max-requests-per-second", "-5" },
		    { "--max-requests-per-second", "not a number" } },
		{ { "--max-requests-per-second", "fast" },
		    { "--max-requests-per-second", "\"fast\"" } },
		{ { "--max-requests-per-second", "10/s" },
		    { "--max-requests-per-second", "not a number" } },
		{ { "--max-requests-per-second", "0x10" },
		    { "--max-requests-per-second", "not a number" } },
		{ { "--max-requests-per-second", "inf" },
		    { "--max-requests-per-second", "not a number" } },
		{ { "--max-requests-per-second", " 5" },
		    { "--max-requests-per-second", "not a number" } },
		{ { "--max-requests-per-second", "" },
		    { "--max-requests-per-second", "not a number" } },
		{ { "--log-scaler-lines", "sometimes" },
		    { "--log-scaler-lines", "sometimes" } },
		{ { "--log-scaler-lines", "Always" },
		    { "--log-scaler-lines", "always, changes" } },
		{ { "--ready-addr", "8000" }, { "--ready-addr", "8000" } },
		{ { "--ready-addr", "host:99999" },
		    { "--ready-addr", "99999" } },
		{ { "--live-addr", "::1:80" }, { "--live-addr", "::1:80" } },
		{ { "--live-addr", "[::1]" }, { "--live-addr" } },
		{ { "--live-addr", "127.0.0.1:" }, { "--live-addr" } },
		{ { "--log-level", "verbose" }, { "--log-level", "verbose" } },
		{ { "--bogus" }, { "--bogus", "unknown" } },
		{ { "--bogus=1" }, { "--bogus" } },
		{ { "-x" }, { "-x" } },
		{ { "--config" }, { "--config", "missing" } },
		{ { "--dry-run", "--poll-interval" },
		    { "--poll-interval", "missing" } },
		{ { "--dry-run", "stray" }, { "stray" } },
		{ { "--lease-name", "Runner" }, { "--lease-name", "Runner" } },
		{ { "--lease-name", "-rp" }, { "--lease-name" } },
		{ { "--lease-name", "rp.x" }, { "--lease-name", "DNS-1123" } },
		{ { "--lease-name",
		      "a123456789012345678901234567890123456789012345678901234"
		      "567890123" },
		    { "--lease-name", "63" } },
		{ { "--lease-identity", "pod a" }, { "--lease-identity" } },
		{ { "--lease-identity", "" }, { "--lease-identity" } },
		{ { "--drain-timeout", "soon" }, { "--drain-timeout" } },
		{ { "--drain", "--dry-run" }, { "--drain", "--dry-run" } },
		{ { "stray", "--dry-run" }, { "stray" } },
	};
	char err[FLAGS_ERR_MAX];
	struct flags f;
	size_t i, j, n;
	int rv;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		for (n = 0; n < 3 && cases[i].args[n] != NULL; n++)
			;
		rv = parse_args(&f, err, sizeof(err),
		    (const char *const[]){ n > 0 ? cases[i].args[0] : NULL,
		        n > 1 ? cases[i].args[1] : NULL,
		        n > 2 ? cases[i].args[2] : NULL, NULL });
		flags_free(&f);
		if (rv != -1)
			fail_msg("case %zu (%s %s) accepted", i,
			    cases[i].args[0],
			    cases[i].args[1] ? cases[i].args[1] : "");
		for (j = 0; j < 2 && cases[i].must[j] != NULL; j++)
			if (strstr(err, cases[i].must[j]) == NULL)
				fail_msg("case %zu: message \"%s\" lacks "
				         "\"%s\"",
				    i, err, cases[i].must[j]);
	}
}

/* flags_parse restarts getopt itself, so parsing twice in one process
 * (tests, a re-exec'd child) sees only the second command line. */
static void
test_parse_twice(void **state)
{
	char err[FLAGS_ERR_MAX];
	struct flags f;

	(void)state;
	assert_int_equal(PARSE(&f, err, "--dry-run", "--namespace", "a"), 0);
	flags_free(&f);
	assert_int_equal(PARSE(&f, err, "--log-level", "warn"), 0);
	assert_false(f.f_dry_run);
	assert_null(f.f_namespace);
	assert_int_equal(f.f_log_level, LOG_LVL_WARN);
	flags_free(&f);
	assert_int_equal(PARSE(&f, err, "--bogus"), -1);
	flags_free(&f);
	assert_int_equal(PARSE(&f, err, "--check-config"), 0);
	assert_true(f.f_check_config);
	flags_free(&f);
}

static void
test_split_addr(void **state)
{
	static const struct {
		const char *in;
		int rv;
		const char *host;
		uint16_t port;
	} cases[] = {
		{ "127.0.0.1:8000", 0, "127.0.0.1", 8000 },
		{ ":8000", 0, "", 8000 },
		{ "[::1]:8001", 0, "::1", 8001 },
		{ "[::]:80", 0, "::", 80 },
		{ "localhost:65535", 0, "localhost", 65535 },
		{ "localhost:0", 0, "localhost", 0 },
		{ "host:99999", -1, NULL, 0 },
		{ "host:65536", -1, NULL, 0 },
		{ "::1:80", -1, NULL, 0 },
		{ "[::1]", -1, NULL, 0 },
		{ "[::1:80", -1, NULL, 0 },
		{ "[::1]80", -1, NULL, 0 },
		{ "host", -1, NULL, 0 },
		{ "host:", -1, NULL, 0 },
		{ "host:80x", -1, NULL, 0 },
		{ "host:-1", -1, NULL, 0 },
		/* strtol's leniency, found by fuzzing: ":-0" bound port 0 */
		{ "host:+80", -1, NULL, 0 },
		{ "host: 80", -1, NULL, 0 },
		{ "host:\t80", -1, NULL, 0 },
		{ ":-0", -1, NULL, 0 },
		{ "[::1]: 8000", -1, NULL, 0 },
		{ "host:0080", 0, "host", 80 },
		{ "", -1, NULL, 0 },
	};
	char host[64];
	uint16_t port;
	size_t i;
	int rv;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		port = 4242;
		strcpy(host, "unchanged");
		rv = flags_split_addr(cases[i].in, host, sizeof(host), &port);
		if (rv != cases[i].rv)
			fail_msg("\"%s\": rv %d, want %d", cases[i].in, rv,
			    cases[i].rv);
		if (rv == 0) {
			assert_string_equal(host, cases[i].host);
			assert_int_equal(port, cases[i].port);
		}
	}
}

/* A host that does not fit the caller's buffer is an error, not a
 * truncated host. */
static void
test_split_addr_host_too_long(void **state)
{
	char host[8];
	uint16_t port;

	(void)state;
	assert_int_equal(
	    flags_split_addr("abcdefgh:80", host, sizeof(host), &port), -1);
	assert_int_equal(
	    flags_split_addr("abcdefg:80", host, sizeof(host), &port), 0);
	assert_string_equal(host, "abcdefg");
	assert_int_equal(
	    flags_split_addr("[1:2:3:4:5]:80", host, sizeof(host), &port), -1);
}

/* --help lists every flag with its default. */
static void
test_usage_lists_flags(void **state)
{
	static const char *const must[] = { "--config", "--circle-token-file",
		"--circleci-api-addr", "--circleci-ca-file", "--namespace",
		"--kubeconfig", "--poll-interval", "--boot-loop-threshold",
		"--idle-poll-interval", "--idle-poll-after",
		"--max-requests-per-second", "--log-scaler-lines",
		"--shutdown-grace", "--ready-addr", "--live-addr", "--run-dir",
		"--log-level", "--check-config", "--dry-run", "--version",
		"--help", FLAGS_DEFAULT_CONFIG, FLAGS_DEFAULT_TOKEN_FILE,
		FLAGS_DEFAULT_API_ADDR, ":8000", ":8001" };
	char *text = NULL;
	size_t len = 0, i;
	FILE *fp;

	(void)state;
	fp = open_memstream(&text, &len);
	assert_non_null(fp);
	flags_usage(fp, "rp");
	fclose(fp);
	assert_non_null(strstr(text, "usage: rp"));
	for (i = 0; i < nitems(must); i++)
		if (strstr(text, must[i]) == NULL)
			fail_msg("usage lacks %s", must[i]);
	free(text);
}

/* An idle class is never polled more often than a busy one: an idle
 * interval below --poll-interval is raised to it. */
static void
test_idle_interval_at_least_poll_interval(void **state)
{
	char err[FLAGS_ERR_MAX];
	struct flags f;

	(void)state;
	assert_int_equal(PARSE(&f, err, "--poll-interval", "10s"), 0);
	assert_int_equal(f.f_idle_poll_interval_ms, 10000);
	flags_free(&f);
	assert_int_equal(PARSE(&f, err, "--idle-poll-interval", "200ms",
	                     "--poll-interval", "500ms"),
	    0);
	assert_int_equal(f.f_idle_poll_interval_ms, 500);
	flags_free(&f);
	assert_int_equal(PARSE(&f, err, "--idle-poll-after", "0s",
	                     "--max-requests-per-second", "1e3"),
	    0);
	assert_int_equal(f.f_idle_poll_after_ms, 0);
	assert_true(f.f_max_rps == 1000);
	flags_free(&f);
}

/* Regressions: cases that once failed. */

/* `runner-provisioner -help` (one dash) names "-help", not the program
 * (getopt would read it as the short options h,e,l,p). */
static void
test_single_dash_word(void **state)
{
	char *argv[] = { xstrdup("runner-provisioner"), xstrdup("-help"),
		NULL };
	char err[FLAGS_ERR_MAX] = "";
	struct flags f;

	(void)state;
	assert_int_equal(flags_parse(&f, 2, argv, err, sizeof(err)), -1);
	flags_free(&f);
	if (strstr(err, "\"-help\"") == NULL)
		fail_msg("message does not name the flag: %s", err);
	free(argv[0]);
	free(argv[1]);
}

/* A parse that stopped inside a cluster of short options does not
 * leave getopt state behind for the next parse. */
static void
test_second_parse_after_cluster(void **state)
{
	char *a1[] = { xstrdup("rp"), xstrdup("-xy"), NULL };
	char *a2[] = { xstrdup("rp"), xstrdup("--dry-run"), NULL };
	char err[FLAGS_ERR_MAX] = "";
	struct flags f;

	(void)state;
	assert_int_equal(flags_parse(&f, 2, a1, err, sizeof(err)), -1);
	flags_free(&f);
	if (flags_parse(&f, 2, a2, err, sizeof(err)) != 0)
		fail_msg("valid command line refused: %s", err);
	assert_true(f.f_dry_run);
	flags_free(&f);
	free(a1[0]);
	free(a1[1]);
	free(a2[0]);
	free(a2[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_flag),
		cmocka_unit_test(test_equals_form),
		cmocka_unit_test(test_api_addr_normalised),
		cmocka_unit_test(test_rejections_name_the_flag),
		cmocka_unit_test(test_parse_twice),
		cmocka_unit_test(test_operations_flags),
		cmocka_unit_test(test_split_addr),
		cmocka_unit_test(test_split_addr_host_too_long),
		cmocka_unit_test(test_usage_lists_flags),
		cmocka_unit_test(test_idle_interval_at_least_poll_interval),
		cmocka_unit_test(test_single_dash_word),
		cmocka_unit_test(test_second_parse_after_cluster),
	};

	return cmocka_run_group_tests(tests, NULL, teardown);
}
