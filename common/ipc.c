#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pair0/pair.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/survey0/respond.h>
#include <nng/protocol/survey0/survey.h>

#include "ipc.h"
#include "log.h"
#include "util.h"

#define RECONNECT_MIN_MS 20
#define RECONNECT_MAX_MS 500
/* nng's respondent cannot send with NNG_FLAG_NONBLOCK while its pipe is
 * busy (NNG_EAGAIN), so sends may wait, but never longer than this. */
#define SEND_TIMEOUT_MS 100

int
ipc_rundir(
    const char *flag_dir, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	int n;

	if (flag_dir != NULL)
		n = snprintf(out, outlen, "%s", flag_dir);
	else if (xdg != NULL && xdg[0] == '/')
		n = snprintf(out, outlen, "%s/runner-provisioner", xdg);
	else
		n = snprintf(out, outlen, "/tmp/runner-provisioner-%u",
		    (unsigned int)geteuid());
	if (n < 0 || (size_t)n >= outlen || (size_t)n > IPC_DIR_MAX) {
		snprintf(err, errlen,
		    "run dir \"%s\": path too long for a socket (at most %zu "
		    "bytes)",
		    flag_dir ? flag_dir : out, (size_t)IPC_DIR_MAX);
		return -1;
	}
	if (mkdir(out, 0700) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "run dir %s: mkdir: %s", out,
		    strerror(errno));
		return -1;
	}
	if (lstat(out, &st) == -1) {
		snprintf(err, errlen, "run dir %s: %s", out, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "run dir %s is not a directory", out);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen,
		    "run dir %s belongs to uid %u, not to this process (uid "
		    "%u); name a directory that does not exist yet",
		    out, (unsigned int)st.st_uid, (unsigned int)geteuid());
		return -1;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, errlen,
		    "run dir %s is accessible by other users (mode %04o); it "
		    "must be private (0700)",
		    out, (unsigned int)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

int
ipc_url(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "ipc://%s/%s", dir, name);

	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static int
open_role(nng_socket *s, enum ipc_role role)
{
	switch (role) {
	case IPC_PUB_LISTEN:
		return nng_pub0_open(s);
	case IPC_SUB_DIAL:
		return nng_sub0_open(s);
	case IPC_SURVEYOR_LISTEN:
		return nng_surveyor0_open(s);
	case IPC_RESPONDENT_DIAL:
		return nng_respondent0_open(s);
	case IPC_PAIR_LISTEN:
	case IPC_PAIR_DIAL:
		return nng_pair0_open(s);
	}
	return NNG_EINVAL;
}

static bool
socket_in_use(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	bool used;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path) ||
	    (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return false;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	used = connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
	close(fd);
	return used;
}

static int
listen_private(nng_socket s, const char *url)
{
	const char *path = url + strlen("ipc://");
	nng_listener l;
	struct stat st;
	int rv;

	/* A socket file nobody listens on is a leftover of a process that
	 * died; one that answers belongs to a live process: never steal it. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		if (socket_in_use(path)) {
			log_warnx("ipc: %s is in use by another process (is "
			          "another runner-provisioner using this run "
			          "dir?)",
			    path);
			return -1;
		}
		unlink(path);
	}
	if ((rv = nng_listener_create(&l, s, url)) != 0 ||
	    (rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600)) !=
	        0 ||
	    (rv = nng_listener_start(l, 0)) != 0) {
		log_warnx("ipc: listen on %s: %s", url, nng_strerror(rv));
		return -1;
	}
	return 0;
}

int
ipc_open(nng_socket *s, enum ipc_role role, const char *url, int *recv_fd)
{
	int rv;

	if ((rv = open_role(s, role)) != 0) {
		log_warnx("ipc: open socket: %s", nng_strerror(rv));
		return -1;
	}
	nng_socket_set_ms(*s, NNG_OPT_RECONNMINT, RECONNECT_MIN_MS);
	nng_socket_set_ms(*s, NNG_OPT_RECONNMAXT, RECONNECT_MAX_MS);
	nng_socket_set_ms(*s, NNG_OPT_SENDTIMEO, SEND_TIMEOUT_MS);
	/* Before listening or dialing: pipes take the limit when made. */
	if ((rv = nng_socket_set_size(*s, NNG_OPT_RECVMAXSZ, IPC_MSG_MAX)) !=
	    0) {
		log_warnx("ipc: receive limit: %s", nng_strerror(rv));
		goto fail;
	}
	if (role == IPC_SUB_DIAL &&
	    (rv = nng_socket_set(*s, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0) {
		log_warnx("ipc: subscribe: %s", nng_strerror(rv));
		goto fail;
	}
	/* SUB drops the oldest message when its queue (128) is full: a
	 * receiver busy for a moment must not lose the demand of many
	 * classes. */
	if (role == IPC_SUB_DIAL &&
	    (rv = nng_socket_set_int(*s, NNG_OPT_RECVBUF, IPC_SUB_QUEUE)) !=
	        0) {
		log_warnx("ipc: receive queue: %s", nng_strerror(rv));
		goto fail;
	}
	if (role == IPC_PUB_LISTEN || role == IPC_SURVEYOR_LISTEN ||
	    role == IPC_PAIR_LISTEN) {
		if (listen_private(*s, url) == -1)
			goto fail;
	} else if ((rv = nng_dial(*s, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
		log_warnx("ipc: dial %s: %s", url, nng_strerror(rv));
		goto fail;
	}
	if (recv_fd != NULL &&
	    (rv = nng_socket_get_int(*s, NNG_OPT_RECVFD, recv_fd)) != 0) {
		log_warnx("ipc: receive fd: %s", nng_strerror(rv));
		goto fail;
	}
	return 0;
fail:
	nng_close(*s);
	return -1;
}

static int
send_flags(nng_socket s, const void *data, size_t len, int flags)
{
	nng_msg *m;
	int rv;

	if ((rv = nng_msg_alloc(&m, len)) != 0) {
		log_warnx("ipc: message: %s", nng_strerror(rv));
		return -1;
	}
	memcpy(nng_msg_body(m), data, len);
	if ((rv = nng_sendmsg(s, m, flags)) != 0) {
		/* It may hold secrets (a configuration). */
		explicit_bzero(nng_msg_body(m), nng_msg_len(m));
		nng_msg_free(m);
		log_debug("ipc: send: %s", nng_strerror(rv));
		return -1;
	}
	return 0; /* nng owns m now */
}

int
ipc_send(nng_socket s, const void *data, size_t len)
{
	return send_flags(s, data, len, 0);
}

int
ipc_send_now(nng_socket s, const void *data, size_t len)
{
	return send_flags(s, data, len, NNG_FLAG_NONBLOCK);
}

int
ipc_recv(nng_socket s, nng_msg **m)
{
	int rv;

	rv = nng_recvmsg(s, m, NNG_FLAG_NONBLOCK);
	if (rv == 0)
		return 1;
	if (rv == NNG_EAGAIN || rv == NNG_ETIMEDOUT || rv == NNG_ESTATE)
		return 0;
	log_warnx("ipc: receive: %s", nng_strerror(rv));
	return -1;
}

int
ipc_peer_pid(nng_msg *m)
{
	nng_pipe p = nng_msg_get_pipe(m);
	uint64_t pid;

	/* nng 1.5 types this option as a uint64. */
	if (nng_pipe_id(p) < 0 ||
	    nng_pipe_get_uint64(p, NNG_OPT_IPC_PEER_PID, &pid) != 0 ||
	    pid > INT32_MAX)
		return -1;
	return (int)pid;
}
