/* What confines the poller (common/confine.h): the files it may read after
 * start-up and the system calls it needs beyond every child's. */
#include <libgen.h>
#include <limits.h>
#include <string.h>

#include "poller.h"
#include "util.h"

/*
 * Its own files only: the token file (read again when it rotates) and the
 * CA bundle of --circleci-ca-file, each through its directory when the
 * directory holds nothing else (a rotated Secret swaps new files in), else
 * the file alone.  Never the configuration (read before), never the runner
 * tokens or anything Kubernetes.
 */
void
poller_paths(
    const struct flags *f, bool token_from_file, struct confine_paths *cp)
{
	const char *files[2] = { token_from_file ? f->f_circle_token_file
		                                 : NULL,
		f->f_circleci_ca_file };
	char tmp[2][PATH_MAX];
	const char *mine[3];
	size_t i, n = 0;

	for (i = 0; i < nitems(files); i++)
		if (files[i] != NULL) {
			strlcpy_rp(tmp[i], files[i], sizeof(tmp[i]));
			mine[n++] = basename(tmp[i]);
		}
	mine[n] = NULL;
	for (i = 0; i < nitems(files); i++)
		if (files[i] != NULL)
			confine_paths_add_credential(cp, files[i], mine);
}

/* The poller listens on demand.sock: the actuator dials it (again after
 * each of its restarts). */
static const struct confine_syscall poller_syscalls[] = {
	CONFINE_ANY("accept", "nng accepts the actuator's connection"),
	CONFINE_ANY("accept4", "nng accepts the actuator's connection"),
	CONFINE_ANY("unlink", "nng removes demand.sock when it closes"),
};

void
poller_lock(struct poller *p)
{
	role_lock(p->p_role, poller_syscalls, nitems(poller_syscalls));
}
