/* What confines the actuator (common/confine.h): the files it may read
 * after start-up and the system calls it needs beyond every child's. */
#include <libgen.h>
#include <limits.h>
#include <string.h>

#include "actuator.h"
#include "util.h"

/*
 * Its credentials only: the service account's directory (the token is
 * read again as it rotates) or the files the kubeconfig names (token file,
 * CA, client certificate and key, which libcurl reads for each new
 * connection; the kubeconfig itself was read at start-up).  Never the
 * configuration (read before), never the CircleCI token.
 */
void
act_paths(const struct kube_creds *kc, struct confine_paths *cp)
{
	const char *files[] = { kc->kc_token_file, kc->kc_ca_file,
		kc->kc_cert_file, kc->kc_key_file };
	const char *mine[nitems(files) + 4];
	char tmp[PATH_MAX];
	size_t i, n = 0, first;

	/* Its files share a directory freely (a kubeconfig beside its
	 * certificates, the service account's token, ca.crt, namespace). */
	mine[n++] = "namespace";
	mine[n++] = "ca.crt";
	first = n;
	if (kc->kc_kubeconfig != NULL) {
		strlcpy_rp(tmp, kc->kc_kubeconfig, sizeof(tmp));
		mine[n++] = xstrdup(basename(tmp));
	}
	for (i = 0; i < nitems(files); i++)
		if (files[i] != NULL) {
			strlcpy_rp(tmp, files[i], sizeof(tmp));
			mine[n++] = xstrdup(basename(tmp));
		}
	mine[n] = NULL;
	for (i = 0; i < nitems(files); i++)
		if (files[i] != NULL)
			confine_paths_add_credential(cp, files[i], mine);
	for (i = first; i < n; i++)
		free((char *)(uintptr_t)mine[i]);
}

/* Nothing beyond the common list: requests to the API server and reading
 * the rotated token again are what every child's runtime does. */
void
act_lock(struct actuator *a)
{
	role_lock(a->a_role, NULL, 0);
}
