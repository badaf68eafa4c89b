/* kubecreds.c: kubeconfig files, as --kubeconfig names them (end-to-end
 * tests cover the service account and TLS). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kubecreds.h"
#include "log.h"
#include "util.h"

static char dir[] = "/tmp/kubecreds_test.XXXXXX";
static char path[64];

static int
setup(void **state)
{
	(void)state;
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/kubeconfig", dir);
	unsetenv("KUBECONFIG");
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(dir);
	log_secrets_clear();
	return 0;
}

/* Loads a kubeconfig whose cluster's server is server. */
static int
load(const char *server, struct kube_creds *kc, char *err, size_t errlen)
{
	struct flags f;
	FILE *fp;

	fp = fopen(path, "w");
	assert_non_null(fp);
	fprintf(fp,
	    "current-context: c\n"
	    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
	    "clusters: [{name: k, cluster: {server: \"%s\"}}]\n"
	    "users: [{name: u, user: {token: abc.def}}]\n",
	    server);
	assert_int_equal(fclose(fp), 0);
	memset(&f, 0, sizeof(f));
	f.f_kubeconfig = path;
	return kube_creds_load(&f, kc, err, errlen);
}

static void
test_server(void **state)
{
	static const struct {
		const char *server, *want;
	} ok[] = {
		{ "https://127.0.0.1:6443", "https://127.0.0.1:6443" },
		{ "https://[::1]:6443/", "https://[::1]:6443" },
		{ "https://k8s.example.com/prefix//",
		    "https://k8s.example.com/prefix" },
	};
	struct kube_creds kc;
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(ok); i++) {
		if (load(ok[i].server, &kc, err, sizeof(err)) != 0)
			fail_msg("%s: %s", ok[i].server, err);
		assert_string_equal(kc.kc_server, ok[i].want);
		assert_string_equal(kc.kc_namespace, "default");
		assert_string_equal(kc.kc_token, "abc.def");
		kube_creds_free(&kc);
	}
}

/* A server without a host, or with text that ends the URL's path, was
 * accepted and every request then failed inside curl (found by fuzzing):
 * now it is named when the kubeconfig is read. */
static void
test_server_refused(void **state)
{
	static const struct {
		const char *server, *why;
	} bad[] = {
		{ "https://", "has no host" },
		{ "https:///", "has no host" },
		{ "https:///apis", "has no host" },
		{ "https://host name", "is not a valid URL" },
		{ "https://host?x=1", "is not a valid URL" },
		{ "https://host#frag", "is not a valid URL" },
		{ "http://host", "is not an https:// address" },
	};
	struct kube_creds kc;
	char err[512];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(bad); i++) {
		err[0] = '\0';
		if (load(bad[i].server, &kc, err, sizeof(err)) == 0)
			fail_msg("accepted: %s (as %s)", bad[i].server,
			    kc.kc_server);
		if (strstr(err, bad[i].why) == NULL ||
		    strstr(err, path) == NULL)
			fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].server, err,
			    bad[i].why);
		kube_creds_free(&kc);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_server_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
