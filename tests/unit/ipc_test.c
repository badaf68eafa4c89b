#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"
#include "util.h"

#define DEADLINE_MS 5000

static char tmpdir[64];

static int
group_setup(void **state)
{
	(void)state;
	log_init("ipc-test", LOG_LVL_ERROR);
	strcpy(tmpdir, "/tmp/rp-ipc-XXXXXX");
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* A fresh subdirectory of the test's temp dir. */
static void
subdir(char *out, size_t size, const char *name)
{
	snprintf(out, size, "%s/%s", tmpdir, name);
}

static void
test_rundir_created_private(void **state)
{
	char dir[128], out[256], err[512] = "";
	struct stat st;
	mode_t old = umask(0);

	(void)state;
	subdir(dir, sizeof(dir), "fresh");
	assert_int_equal(
	    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), 0);
	umask(old);
	assert_string_equal(out, dir);
	assert_int_equal(lstat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0700);
	/* again, now that it exists */
	assert_int_equal(
	    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), 0);
}

static void
test_rundir_xdg_default(void **state)
{
	char out[256], err[512] = "", want[256];
	char *saved = getenv("XDG_RUNTIME_DIR");
	struct stat st;

	(void)state;
	saved = saved != NULL ? xstrdup(saved) : NULL;
	setenv("XDG_RUNTIME_DIR", tmpdir, 1);
	assert_int_equal(
	    ipc_rundir(NULL, out, sizeof(out), err, sizeof(err)), 0);
	snprintf(want, sizeof(want), "%s/runner-provisioner", tmpdir);
	assert_string_equal(out, want);
	assert_int_equal(stat(want, &st), 0);
	assert_int_equal(st.st_mode & 077, 0);
	if (saved != NULL) {
		setenv("XDG_RUNTIME_DIR", saved, 1);
		free(saved);
	} else
		unsetenv("XDG_RUNTIME_DIR");
}

/* Anyone who can enter the run dir could talk to our sockets. */
static void
test_rundir_rejects_shared(void **state)
{
	static const mode_t modes[] = { 0750, 0705, 0770, 0777, 0701, 0710 };
	char dir[128], out[256], err[512], mode[16];
	size_t i;

	(void)state;
	subdir(dir, sizeof(dir), "shared");
	assert_int_equal(mkdir(dir, 0700), 0);
	for (i = 0; i < nitems(modes); i++) {
		assert_int_equal(chmod(dir, modes[i]), 0);
		err[0] = '\0';
		assert_int_equal(
		    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), -1);
		snprintf(mode, sizeof(mode), "%04o", (unsigned int)modes[i]);
		if (strstr(err, mode) == NULL || strstr(err, dir) == NULL)
			fail_msg("mode %s: message \"%s\"", mode, err);
	}
	/* made private again, it is accepted */
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(
	    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), 0);
}

static void
test_rundir_rejects_file_and_symlink(void **state)
{
	char file[128], link[128], priv[128], out[256], err[512];
	FILE *fp;

	(void)state;
	subdir(file, sizeof(file), "a-file");
	fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	err[0] = '\0';
	assert_int_equal(
	    ipc_rundir(file, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, file));
	assert_non_null(strstr(err, "not a directory"));

	/* a symlink to a private directory is not the directory itself */
	subdir(priv, sizeof(priv), "priv");
	subdir(link, sizeof(link), "link");
	assert_int_equal(mkdir(priv, 0700), 0);
	assert_int_equal(symlink(priv, link), 0);
	err[0] = '\0';
	assert_int_equal(
	    ipc_rundir(link, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, link));
}

static void
test_rundir_missing_parent(void **state)
{
	char dir[128], out[256], err[512] = "";

	(void)state;
	subdir(dir, sizeof(dir), "no/such/parent");
	assert_int_equal(
	    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, dir));
}

static void
test_rundir_too_long(void **state)
{
	char dir[300], out[512], err[512] = "";
	struct stat st;

	(void)state;
	memset(dir, 'd', sizeof(dir) - 1);
	dir[0] = '/';
	dir[sizeof(dir) - 1] = '\0';
	assert_int_equal(
	    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "too long"));
	assert_int_equal(stat(dir, &st), -1);
	/* an output buffer too small for the path is an error too */
	err[0] = '\0';
	assert_int_equal(ipc_rundir("/tmp/x", out, 4, err, sizeof(err)), -1);
	assert_true(err[0] != '\0');
}

static void
test_url(void **state)
{
	char url[IPC_URL_MAX];
	char dir[200];

	(void)state;
	assert_int_equal(ipc_url(url, sizeof(url), "/run/rp", IPC_DEMAND), 0);
	assert_string_equal(url, "ipc:///run/rp/demand.sock");
	memset(dir, 'x', sizeof(dir) - 1);
	dir[sizeof(dir) - 1] = '\0';
	assert_int_equal(ipc_url(url, sizeof(url), dir, IPC_HEALTH), -1);
}

/* Waits until fd is readable or the deadline passes; 1 when readable. */
static int
wait_readable(int fd, uint64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	int rv;

	do {
		rv = poll(&pfd, 1, ms_until(deadline, now_ms()));
	} while (rv == -1 && errno == EINTR);
	assert_true(rv >= 0);
	return rv == 1;
}

/* Receives one message into out (NUL-terminated). */
static void
recv_text(nng_socket s, char *out, size_t size)
{
	nng_msg *m;
	size_t n;

	assert_int_equal(ipc_recv(s, &m), 1);
	n = nng_msg_len(m);
	assert_true(n < size);
	memcpy(out, nng_msg_body(m), n);
	out[n] = '\0';
	nng_msg_free(m);
}

static void
url_in(char *url, const char *dirname, const char *name)
{
	char dir[128], out[256], err[512];

	subdir(dir, sizeof(dir), dirname);
	assert_int_equal(
	    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), 0);
	assert_int_equal(ipc_url(url, IPC_URL_MAX, out, name), 0);
}

/* PUB drops messages until SUB is connected, so publish text until one
 * arrives (bounded by a deadline); fd is the SUB's receive fd. */
static void
publish_until_received(nng_socket pub, int fd, const char *text)
{
	uint64_t deadline = now_ms() + DEADLINE_MS;

	for (;;) {
		assert_int_equal(ipc_send(pub, text, strlen(text)), 0);
		if (wait_readable(fd, now_ms() + 20))
			return;
		if (now_ms() >= deadline)
			fail_msg(
			    "no message on SUB within %d ms", DEADLINE_MS);
	}
}

static void
pubsub_round_trip(const char *url)
{
	uint64_t deadline = now_ms() + DEADLINE_MS;
	nng_socket pub, sub;
	struct stat st;
	char got[64];
	nng_msg *m;
	int fd = -1;

	assert_int_equal(ipc_open(&pub, IPC_PUB_LISTEN, url, NULL), 0);
	/* the listener's socket file is private */
	assert_int_equal(lstat(url + strlen("ipc://"), &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 077, 0);
	assert_int_equal(ipc_open(&sub, IPC_SUB_DIAL, url, &fd), 0);
	assert_true(fd >= 0);
	assert_int_equal(ipc_recv(sub, &m), 0);
	publish_until_received(pub, fd, "demand-1");
	recv_text(sub, got, sizeof(got));
	assert_string_equal(got, "demand-1");
	/* once connected, every message arrives, in order */
	assert_int_equal(ipc_send(pub, "second", 6), 0);
	assert_int_equal(ipc_send(pub, "third", 5), 0);
	for (;;) {
		assert_true(wait_readable(fd, deadline));
		recv_text(sub, got, sizeof(got));
		if (strcmp(got, "demand-1") != 0)
			break;
	}
	assert_string_equal(got, "second");
	assert_true(wait_readable(fd, deadline));
	recv_text(sub, got, sizeof(got));
	assert_string_equal(got, "third");
	nng_close(sub);
	nng_close(pub);
}

static void
test_pubsub_round_trip(void **state)
{
	char url[IPC_URL_MAX];
	struct stat st;

	(void)state;
	url_in(url, "pubsub", IPC_DEMAND);
	pubsub_round_trip(url);
	/* closing the listener removes its socket file */
	assert_int_equal(lstat(url + strlen("ipc://"), &st), -1);
}

/* A burst of demand (a message for each of a thousand classes) waits in
 * the SUB queue while the receiver is busy: none is dropped. */
static void
test_sub_holds_a_burst(void **state)
{
	uint64_t deadline = now_ms() + DEADLINE_MS;
	char url[IPC_URL_MAX], got[64], want[64];
	nng_socket pub, sub;
	int fd = -1, i, n = 0;
	nng_msg *m;

	(void)state;
	url_in(url, "burst", IPC_DEMAND);
	assert_int_equal(ipc_open(&pub, IPC_PUB_LISTEN, url, NULL), 0);
	assert_int_equal(nng_socket_set_int(pub, NNG_OPT_SENDBUF, 2000), 0);
	assert_int_equal(ipc_open(&sub, IPC_SUB_DIAL, url, &fd), 0);
	publish_until_received(pub, fd, "hello");
	while (ipc_recv(sub, &m) == 1)
		nng_msg_free(m);
	for (i = 0; i < 1000; i++) {
		snprintf(want, sizeof(want), "class-%d", i);
		assert_int_equal(ipc_send(pub, want, strlen(want)), 0);
	}
	/* The receiver is busy for a moment (that is the case under test,
	 * not a wait for a condition): nothing is read while the burst
	 * arrives; then every message, in order. */
	usleep(300000);
	while (n < 1000 && wait_readable(fd, deadline)) {
		recv_text(sub, got, sizeof(got));
		if (strcmp(got, "hello") == 0)
			continue;
		snprintf(want, sizeof(want), "class-%d", n);
		assert_string_equal(got, want);
		n++;
	}
	assert_int_equal(n, 1000);
	nng_close(sub);
	nng_close(pub);
}

static void
test_survey_round_trip(void **state)
{
	uint64_t deadline = now_ms() + DEADLINE_MS;
	char url[IPC_URL_MAX], got[64];
	nng_socket surv, resp;
	int sfd = -1, rfd = -1, rv;
	nng_msg *m;

	(void)state;
	url_in(url, "survey", IPC_HEALTH);
	assert_int_equal(ipc_open(&surv, IPC_SURVEYOR_LISTEN, url, &sfd), 0);
	assert_int_equal(ipc_open(&resp, IPC_RESPONDENT_DIAL, url, &rfd), 0);
	/* surveys reach only connected respondents: ask until one does */
	for (;;) {
		assert_int_equal(ipc_send(surv, "how are you", 11), 0);
		if (wait_readable(rfd, now_ms() + 50))
			break;
		if (now_ms() >= deadline)
			fail_msg("no survey reached the respondent");
	}
	/* answer the newest survey; older ones are void */
	while ((rv = ipc_recv(resp, &m)) == 1) {
		assert_memory_equal(nng_msg_body(m), "how are you", 11);
		nng_msg_free(m);
	}
	assert_int_equal(rv, 0);
	assert_int_equal(ipc_send(resp, "fine", 4), 0);
	assert_true(wait_readable(sfd, deadline));
	recv_text(surv, got, sizeof(got));
	assert_string_equal(got, "fine");
	nng_close(resp);
	nng_close(surv);
}

/* A socket file left behind by a listener that died does not stop the
 * next one from listening there. */
static void
test_stale_socket_replaced(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char url[IPC_URL_MAX];
	struct stat st;
	int fd;

	(void)state;
	url_in(url, "stale", IPC_DEMAND);
	assert_true(strlen(url + 6) < sizeof(sa.sun_path));
	strcpy(sa.sun_path, url + 6);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd); /* never listened, never unlinked: stale */
	assert_int_equal(lstat(sa.sun_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	pubsub_round_trip(url);
}

/* Dialers start before their listener and connect when it appears (the
 * children may start before the supervisor listens, and reconnect after a
 * restart). */
static void
test_dial_before_listen(void **state)
{
	uint64_t deadline = now_ms() + DEADLINE_MS;
	char url[IPC_URL_MAX], got[64];
	nng_socket pub, sub;
	int fd = -1;

	(void)state;
	url_in(url, "early", IPC_DEMAND);
	assert_int_equal(ipc_open(&sub, IPC_SUB_DIAL, url, &fd), 0);
	assert_int_equal(ipc_open(&pub, IPC_PUB_LISTEN, url, NULL), 0);
	for (;;) {
		assert_int_equal(ipc_send(pub, "late", 4), 0);
		if (wait_readable(fd, now_ms() + 20))
			break;
		if (now_ms() >= deadline)
			fail_msg("dialer never connected");
	}
	recv_text(sub, got, sizeof(got));
	assert_string_equal(got, "late");
	nng_close(sub);
	nng_close(pub);
}

/* Opening fails cleanly (no crash, -1) for an unusable address. */
static void
test_open_errors(void **state)
{
	nng_socket s;

	(void)state;
	assert_int_equal(ipc_open(&s, IPC_PUB_LISTEN,
	                     "ipc:///nonexistent-dir/x/y.sock", NULL),
	    -1);
	assert_int_equal(ipc_open(&s, IPC_SUB_DIAL, "bogus://x", NULL), -1);
}

/* Regressions: cases that once failed. */

/* ipc_peer_pid() of a message received from this very process must be
 * getpid() (NNG_OPT_IPC_PEER_PID is a uint64 option in nng 1.5.2). */
static void
test_peer_pid(void **state)
{
	uint64_t deadline = now_ms() + 5000;
	char dir[128], out[256], err[256], url[IPC_URL_MAX];
	struct pollfd pfd = { .events = POLLIN };
	nng_socket pub, sub;
	nng_msg *m;

	(void)state;
	snprintf(dir, sizeof(dir), "%s/pp", tmpdir);
	assert_int_equal(
	    ipc_rundir(dir, out, sizeof(out), err, sizeof(err)), 0);
	assert_int_equal(ipc_url(url, sizeof(url), out, IPC_DEMAND), 0);
	assert_int_equal(ipc_open(&pub, IPC_PUB_LISTEN, url, NULL), 0);
	assert_int_equal(ipc_open(&sub, IPC_SUB_DIAL, url, &pfd.fd), 0);
	do {
		assert_true(now_ms() < deadline);
		assert_int_equal(ipc_send(pub, "x", 1), 0);
	} while (poll(&pfd, 1, 20) != 1);
	assert_int_equal(ipc_recv(sub, &m), 1);
	assert_int_equal(ipc_peer_pid(m), getpid());
	nng_msg_free(m);
	nng_close(sub);
	nng_close(pub);
}

/* Every run dir ipc_rundir() accepts must be usable for both sockets.
 * Dirs of 96..108 bytes are accepted, but "<dir>/demand.sock" no longer
 * fits sun_path (108 bytes with its NUL), so the listener fails later
 * with a generic error. */
static void
test_accepted_rundir_is_usable(void **state)
{
	char dir[256], out[256], err[512], url[IPC_URL_MAX];
	size_t len;
	nng_socket s;

	(void)state;
	for (len = 90; len <= 120; len++) {
		snprintf(dir, sizeof(dir), "%s/", tmpdir);
		while (strlen(dir) < len)
			strcat(dir, "d");
		err[0] = '\0';
		if (ipc_rundir(dir, out, sizeof(out), err, sizeof(err)) != 0)
			continue;
		assert_int_equal(
		    ipc_url(url, sizeof(url), out, IPC_DEMAND), 0);
		if (ipc_open(&s, IPC_PUB_LISTEN, url, NULL) != 0)
			fail_msg("run dir of %zu bytes accepted, but %s "
			         "cannot listen",
			    len, url);
		nng_close(s);
		rmdir(dir);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rundir_created_private),
		cmocka_unit_test(test_rundir_xdg_default),
		cmocka_unit_test(test_rundir_rejects_shared),
		cmocka_unit_test(test_rundir_rejects_file_and_symlink),
		cmocka_unit_test(test_rundir_missing_parent),
		cmocka_unit_test(test_rundir_too_long),
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_pubsub_round_trip),
		cmocka_unit_test(test_sub_holds_a_burst),
		cmocka_unit_test(test_survey_round_trip),
		cmocka_unit_test(test_stale_socket_replaced),
		cmocka_unit_test(test_dial_before_listen),
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_peer_pid),
		cmocka_unit_test(test_accepted_rundir_is_usable),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
