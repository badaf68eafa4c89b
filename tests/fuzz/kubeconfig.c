/*
 * Kubeconfig parsing (actuator/kubecreds.c) through kube_creds_load, as
 * the actuator starts: the input is written to a kubeconfig file in a
 * private directory that also holds a token file named "token" (relative
 * paths resolve there).  A rejected file gets a message naming it; an
 * accepted one gives an https:// server without a trailing '/', a
 * namespace, either both or neither of client certificate and key, and a
 * token that is not blank; applying it to a curl handle is safe.  The
 * server has a host and nothing that would end a URL's path.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "kubecreds.h"
#include "log.h"

static char path[128];
static CURL *curl; /* reset and reused: creating one per input is slow */

static void
write_file(const char *name, const void *data, size_t size)
{
	FILE *f = fopen(name, "w");

	FUZZ_CHECK(f != NULL && (size == 0 || fwrite(data, size, 1, f) == 1) &&
	        fclose(f) == 0,
	    "cannot write %s", name);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char token[128];
	int fd;

	(void)argc;
	(void)argv;
	fuzz_quiet();
	/* A token file of "/dev/stdin" must not wait for a terminal. */
	if ((fd = open("/dev/null", O_RDONLY)) == -1 || dup2(fd, 0) == -1)
		abort();
	close(fd);
	unsetenv("KUBECONFIG");
	snprintf(path, sizeof(path), "%s/kubeconfig", fuzz_tmpdir());
	snprintf(token, sizeof(token), "%s/token", fuzz_tmpdir());
	write_file(token, "file-token-0123456789\n", 22);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if ((curl = curl_easy_init()) == NULL)
		abort();
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kube_creds kc;
	struct flags f;
	char err[512];

	write_file(path, data, size);
	memset(&f, 0, sizeof(f));
	f.f_kubeconfig = path;
	memset(err, 0, sizeof(err));
	if (kube_creds_load(&f, &kc, err, sizeof(err)) == -1) {
		FUZZ_CHECK(
		    strstr(err, path) != NULL && strchr(err, '\n') == NULL,
		    "error not one line naming the file: %s", err);
		kube_creds_free(&kc);
		log_secrets_clear();
		return 0;
	}
	FUZZ_CHECK(kc.kc_server != NULL &&
	        strncmp(kc.kc_server, "https://", 8) == 0 &&
	        kc.kc_server[8] != '\0' && kc.kc_server[8] != '/' &&
	        kc.kc_server[strlen(kc.kc_server) - 1] != '/' &&
	        strpbrk(kc.kc_server, " \t\r\n?#") == NULL,
	    "server \"%s\"", kc.kc_server ? kc.kc_server : "(none)");
	FUZZ_CHECK(kc.kc_namespace != NULL && kc.kc_namespace[0] != '\0',
	    "no namespace");
	FUZZ_CHECK(kc.kc_source != NULL, "no source");
	FUZZ_CHECK((kc.kc_cert_pem.b_len > 0 || kc.kc_cert_file != NULL) ==
	        (kc.kc_key_pem.b_len > 0 || kc.kc_key_file != NULL),
	    "a client certificate without a key, or the reverse");
	FUZZ_CHECK(
	    kc.kc_token == NULL || kc.kc_token[0] != '\0', "an empty token");
	FUZZ_CHECK(kc.kc_token_file == NULL || kc.kc_token != NULL,
	    "a token file, but no token read from it");
	curl_easy_reset(curl);
	kube_creds_apply(&kc, curl);
	kube_creds_free(&kc);
	log_secrets_clear();
	return 0;
}
