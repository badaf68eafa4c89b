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

#include "kubecreds.h"
#include "log.h"
#include "memscan.h"
#include "util.h"

static char dir[64], kubeconfig[128], tokfile[128];
static char tok[65], prev[65];

/* Writes path as the kubelet's atomic writer does: a new file renamed
 * over the old one. */
static void
replace_file(const char *path, const char *data)
{
	char tmp[160];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	assert_int_equal(write(fd, "\n", 1), 1);
	close(fd);
	assert_int_equal(rename(tmp, path), 0);
}

static int
setup(void **state)
{
	(void)state;
	log_init("kubecreds-test", LOG_LVL_ERROR);
	strcpy(dir, "/tmp/rp-kubecreds-test-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(kubeconfig, sizeof(kubeconfig), "%s/kubeconfig", dir);
	snprintf(tokfile, sizeof(tokfile), "%s/token", dir);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(kubeconfig);
	unlink(tokfile);
	rmdir(dir);
	log_secrets_clear();
	return 0;
}

static void
write_kubeconfig(const char *user)
{
	FILE *f = fopen(kubeconfig, "w");

	assert_non_null(f);
	fprintf(f,
	    "apiVersion: v1\n"
	    "kind: Config\n"
	    "current-context: c\n"
	    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
	    "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443', "
	    "insecure-skip-tls-verify: true}}]\n"
	    "users: [{name: u, user: %s}]\n",
	    user);
	fclose(f);
}

/*
 * A service-account token rotates (hourly, in a cluster): each new one
 * replaces the old in the redaction list instead of adding to it, and the
 * old one is wiped everywhere it was held.
 */
static void
test_rotation_bounded_and_wiped(void **state)
{
	struct kube_creds kc;
	struct flags f;
	char err[512], where[160];
	size_t base, i, n;

	(void)state;
	memset(&f, 0, sizeof(f));
	f.f_kubeconfig = kubeconfig;
	memscan_token(tok, sizeof(tok) - 1);
	replace_file(tokfile, tok);
	write_kubeconfig("{tokenFile: token}");
	base = log_secret_count();
	assert_int_equal(kube_creds_load(&f, &kc, err, sizeof(err)), 0);
	assert_string_equal(kc.kc_token, tok);
	assert_int_equal(log_secret_count(), base + 1);
	for (i = 0; i < 200; i++) {
		memcpy(prev, tok, sizeof(prev));
		memscan_token(tok, sizeof(tok) - 1);
		replace_file(tokfile, tok);
		assert_int_equal(kube_creds_refresh(&kc, true), 0);
		assert_string_equal(kc.kc_token, tok);
		assert_int_equal(log_secret_count(), base + 1);
		if (i % 50 != 0)
			continue;
		n = memscan_count(prev, strlen(prev), where, sizeof(where));
		if (n != 0)
			fail_msg(
			    "rotation %zu: %zu pieces of the old token at "
			    "%s",
			    i, n, where);
	}
	/* Reading the same token again changes nothing. */
	assert_int_equal(kube_creds_refresh(&kc, true), 0);
	assert_int_equal(log_secret_count(), base + 1);
	kube_creds_free(&kc);
	assert_int_equal(log_secret_count(), base);
	n = memscan_count(tok, strlen(tok), where, sizeof(where));
	if (n != 0)
		fail_msg("freed credentials: %zu pieces at %s", n, where);
}

/* An inline token and client key, parsed from the kubeconfig's YAML: once
 * freed, neither lingers (the file's text, libyaml's copies and the JSON
 * tree included). */
static void
test_inline_credentials_wiped(void **state)
{
	struct kube_creds kc;
	struct flags f;
	char err[512], where[160], user[256];
	size_t n;

	(void)state;
	memset(&f, 0, sizeof(f));
	f.f_kubeconfig = kubeconfig;
	memscan_token(tok, sizeof(tok) - 1);
	snprintf(user, sizeof(user), "{token: %s}", tok);
	write_kubeconfig(user);
	explicit_bzero(user, sizeof(user));
	assert_int_equal(kube_creds_load(&f, &kc, err, sizeof(err)), 0);
	assert_string_equal(kc.kc_token, tok);
	kube_creds_free(&kc);
	unlink(kubeconfig);
	n = memscan_count(tok, strlen(tok), where, sizeof(where));
	if (n != 0)
		fail_msg("%zu pieces of the inline token at %s", n, where);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rotation_bounded_and_wiped),
		cmocka_unit_test(test_inline_credentials_wiped),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
