/*
 * The real confinement of each role, applied in a child process: what a
 * poller or an actuator can still do once it runs, judged from inside.
 *
 * The layout mimics a pod: each role's credentials in a directory of its
 * own, mounted the kubelet's way (files are symlinks through ..data to a
 * timestamped directory that a rotation swaps), the configuration beside
 * them, a private run directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/landlock.h>
#include <netinet/in.h>
#include <seccomp.h>

#include "actuator.h"
#include "confine.h"
#include "log.h"
#include "poller.h"
#include "role.h"
#include "util.h"

static char root[64];
static int landlock_abi;

static void
path_of(char *out, size_t size, const char *rel)
{
	snprintf(out, size, "%s/%s", root, rel);
}

static void
put(const char *rel, const char *data)
{
	char p[PATH_MAX];
	FILE *f;

	path_of(p, sizeof(p), rel);
	assert_non_null(f = fopen(p, "w"));
	fputs(data, f);
	fclose(f);
}

static void
mkdir_rel(const char *rel, mode_t mode)
{
	char p[PATH_MAX];

	path_of(p, sizeof(p), rel);
	assert_int_equal(mkdir(p, mode), 0);
}

static void
symlink_rel(const char *target, const char *rel)
{
	char p[PATH_MAX];

	path_of(p, sizeof(p), rel);
	assert_int_equal(symlink(target, p), 0);
}

/* dir/..<gen>/name holds data; dir/..data points at ..<gen> (the
 * kubelet's atomic writer), dir/name at ..data/name. */
static void
kubelet_generation(const char *dir, int gen, const char *const *names,
    const char *const *data)
{
	char rel[256], target[64], tmp[PATH_MAX], fin[PATH_MAX];
	size_t i;

	snprintf(rel, sizeof(rel), "%s/..gen%d", dir, gen);
	mkdir_rel(rel, 0755);
	for (i = 0; names[i] != NULL; i++) {
		snprintf(
		    rel, sizeof(rel), "%s/..gen%d/%s", dir, gen, names[i]);
		put(rel, data[i]);
	}
	snprintf(target, sizeof(target), "..gen%d", gen);
	snprintf(rel, sizeof(rel), "%s/..data_tmp", dir);
	symlink_rel(target, rel);
	path_of(tmp, sizeof(tmp), rel);
	snprintf(rel, sizeof(rel), "%s/..data", dir);
	path_of(fin, sizeof(fin), rel);
	assert_int_equal(rename(tmp, fin), 0);
	if (gen > 1)
		return;
	for (i = 0; names[i] != NULL; i++) {
		snprintf(target, sizeof(target), "..data/%s", names[i]);
		snprintf(rel, sizeof(rel), "%s/%s", dir, names[i]);
		symlink_rel(target, rel);
	}
}

static int
group_setup(void **state)
{
	static const char *const circle[] = { "circle-token",
		"circleci-ca.crt", NULL };
	static const char *const circle_v1[] = { "circle-token-v1", "ca",
		NULL };
	static const char *const sa[] = { "token", "ca.crt", "namespace",
		NULL };
	static const char *const sa_v1[] = { "sa-token-v1", "ca", "ns", NULL };

	(void)state;
	log_init("confine-test", LOG_LVL_WARN);
	landlock_abi = (int)syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);
	strcpy(root, "/tmp/rp-confine-test-XXXXXX");
	if (mkdtemp(root) == NULL)
		return -1;
	mkdir_rel("circleci", 0755);
	kubelet_generation("circleci", 1, circle, circle_v1);
	mkdir_rel("sa", 0755);
	kubelet_generation("sa", 1, sa, sa_v1);
	mkdir_rel("etc", 0755);
	put("etc/config.yaml", "resourceClass: {}\n");
	mkdir_rel("other", 0755);
	mkdir_rel("run", 0700);
	return 0;
}

static int
group_teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

/* What the child reports, one line per check: "ok NAME" or "FAIL NAME
 * (why)". */
static int report_fd = -1, go_fd = -1;

static void
report(const char *name, bool ok, const char *why)
{
	char line[256];
	int n =
	    snprintf(line, sizeof(line), "%s %s%s%s%s\n", ok ? "ok" : "FAIL",
	        name, why ? " (" : "", why ? why : "", why ? ")" : "");

	if (write(report_fd, line, (size_t)n) != n)
		_exit(3);
}

static bool
readable(const char *rel, const char *want)
{
	char p[PATH_MAX], got[64];
	ssize_t n;
	int fd;

	path_of(p, sizeof(p), rel);
	if ((fd = open(p, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	n = read(fd, got, sizeof(got) - 1);
	close(fd);
	got[n > 0 ? n : 0] = '\0';
	return want == NULL || strcmp(got, want) == 0;
}

static void
expect_denied(const char *name, const char *rel, int flags)
{
	char p[PATH_MAX], why[64];
	int fd;

	path_of(p, sizeof(p), rel);
	fd = open(p, flags | O_CLOEXEC, 0600);
	snprintf(why, sizeof(why), "errno %d", fd == -1 ? errno : 0);
	report(name, fd == -1 && errno == EACCES, why);
	if (fd != -1)
		close(fd);
}

/* Checks every role shares; own is a file of its own credentials. */
static void
common_checks(void)
{
	char p[PATH_MAX], *argv[] = { "/bin/true", NULL };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd, rv;

	struct rlimit core;

	report("not dumpable", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0, NULL);
	report("no new privileges",
	    prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, NULL);
	report("no core file",
	    getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_cur == 0 &&
	        core.rlim_max == 0,
	    NULL);
	expect_denied("configuration unreadable", "etc/config.yaml", O_RDONLY);
	expect_denied("no file made outside the run directory", "other/new",
	    O_WRONLY | O_CREAT);
	expect_denied("no regular file made in the run directory", "run/new",
	    O_WRONLY | O_CREAT);
	/* The IPC sockets are made there. */
	path_of(p, sizeof(p), "run/t.sock");
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(sun.sun_path, p, strlen(p) + 1);
	rv = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	report("socket made in the run directory", rv == 0, strerror(errno));
	close(fd);
	unlink(p);
	execve(argv[0], argv, NULL);
	report("nothing executes", errno == EACCES, strerror(errno));
	if (landlock_abi >= 4) {
		fd = socket(AF_INET, SOCK_STREAM, 0);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		rv = bind(fd, (struct sockaddr *)&sin, sizeof(sin));
		report("no TCP port bound", rv == -1 && errno == EACCES,
		    strerror(errno));
		close(fd);
	}
	if (landlock_abi >= 6) {
		rv = kill(getppid(), 0);
		report("no signal to another process",
		    rv == -1 && errno == EPERM, strerror(errno));
	}
}

/* What libcurl does for a host name, on a thread of its own as libcurl's
 * resolver does (glibc's resolver reads the host name, sends DNS queries,
 * asks netlink for the interface addresses; the thread's first malloc
 * sizes an arena by the CPUs). */
static void *
resolve(void *name)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	char *scratch = malloc(1000);

	free(scratch);
	if (getaddrinfo(name, "443", &hints, &res) == 0)
		freeaddrinfo(res);
	return NULL;
}

static void
resolver_checks(void)
{
	static char *const names[] = { "localhost", "confine-test.invalid" };
	pthread_t t;
	size_t i;

	/* Bounded: no network need answer. */
	setenv("RES_OPTIONS", "timeout:1 attempts:1", 1);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (pthread_create(&t, NULL, resolve, names[i]) != 0) {
			report("resolver thread started", false, NULL);
			return;
		}
		pthread_join(t, NULL);
	}
	report("resolved names on a thread", true, NULL);
}

static void
wait_parent(void)
{
	char c;

	if (read(go_fd, &c, 1) != 1)
		_exit(4);
}

/* Waits for the parent to rotate the credentials. */
static void
wait_go(void)
{
	report("ready for rotation", true, NULL);
	wait_parent();
}

static void
poller_child(void)
{
	struct confine_paths cp = { 0 };
	struct poller p;
	struct flags f;
	struct role r;
	char tok[PATH_MAX], ca[PATH_MAX];

	memset(&r, 0, sizeof(r));
	memset(&f, 0, sizeof(f));
	memset(&p, 0, sizeof(p));
	path_of(tok, sizeof(tok), "circleci/circle-token");
	path_of(ca, sizeof(ca), "circleci/circleci-ca.crt");
	f.f_circle_token_file = tok;
	f.f_circleci_ca_file = ca;
	r.r_name = "poller";
	r.r_flags = f;
	path_of(r.r_run_dir, sizeof(r.r_run_dir), "run");
	poller_paths(&f, true, &cp);
	role_open(&r, &cp);
	confine_paths_free(&cp);
	report("own token readable",
	    readable("circleci/circle-token", "circle-token-v1"), NULL);
	report("own CA readable", readable("circleci/circleci-ca.crt", "ca"),
	    NULL);
	expect_denied("the actuator's token unreadable", "sa/token", O_RDONLY);
	expect_denied("the actuator's CA unreadable", "sa/ca.crt", O_RDONLY);
	common_checks();
	wait_go();
	report("rotated token readable",
	    readable("circleci/circle-token", "circle-token-v2"), NULL);
	p.p_role = &r;
	poller_lock(&p);
	resolver_checks();
	report("locked", true, NULL);
	wait_parent();
	/* Outside the allow-list: the process dies of SIGSYS. */
	execve("/bin/true", (char *[]){ "/bin/true", NULL }, NULL);
	report("execve survived the filter", false, NULL);
}

static void
actuator_child(void)
{
	struct confine_paths cp = { 0 };
	struct kube_creds kc;
	struct actuator a;
	struct role r;
	char tok[PATH_MAX], ca[PATH_MAX];

	memset(&r, 0, sizeof(r));
	memset(&kc, 0, sizeof(kc));
	memset(&a, 0, sizeof(a));
	path_of(tok, sizeof(tok), "sa/token");
	path_of(ca, sizeof(ca), "sa/ca.crt");
	kc.kc_token_file = tok;
	kc.kc_ca_file = ca;
	r.r_name = "actuator";
	path_of(r.r_run_dir, sizeof(r.r_run_dir), "run");
	act_paths(&kc, &cp);
	role_open(&r, &cp);
	confine_paths_free(&cp);
	report(
	    "own token readable", readable("sa/token", "sa-token-v1"), NULL);
	report("namespace readable", readable("sa/namespace", "ns"), NULL);
	expect_denied("the CircleCI token unreadable", "circleci/circle-token",
	    O_RDONLY);
	common_checks();
	wait_go();
	report("rotated token readable", readable("sa/token", "sa-token-v2"),
	    NULL);
	a.a_role = &r;
	act_lock(&a);
	resolver_checks();
	report("locked", true, NULL);
	wait_parent();
	execve("/bin/true", (char *[]){ "/bin/true", NULL }, NULL);
	report("execve survived the filter", false, NULL);
}

/* /proc/PID/status line value, or "" */
static void
status_field(pid_t pid, const char *key, char *out, size_t size)
{
	char p[64], line[256];
	size_t n = strlen(key);
	FILE *f;

	out[0] = '\0';
	snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
	if ((f = fopen(p, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, key, n) == 0 && line[n] == ':') {
			snprintf(out, size, "%s",
			    line + n + 1 + strspn(line + n + 1, " \t"));
			out[strcspn(out, "\n")] = '\0';
		}
	fclose(f);
}

/* Runs fn in a child; rotates dir's credentials when it says so; returns
 * its report and how it ended. */
static void
run_role(void (*fn)(void), const char *dir, const char *const *names,
    const char *const *v2, char *out, size_t size, int *status, char *seccomp,
    char *nnp)
{
	int rep[2], go[2], errfd;
	size_t len = 0;
	ssize_t n;
	pid_t pid;

	assert_int_equal(pipe(rep), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(rep[0]);
		close(go[1]);
		report_fd = rep[1];
		go_fd = go[0];
		/* The child's log (its SIGSYS report) is not the test's. */
		if ((errfd = open("/dev/null", O_WRONLY)) != -1)
			dup2(errfd, STDERR_FILENO);
		fn();
		_exit(0);
	}
	close(rep[1]);
	close(go[0]);
	out[0] = '\0';
	while ((n = read(rep[0], out + len, size - 1 - len)) > 0) {
		len += (size_t)n;
		out[len] = '\0';
		if (strstr(out, "ready for rotation") != NULL &&
		    strstr(out, "rotated") == NULL && names != NULL) {
			kubelet_generation(dir, 2, names, v2);
			names = NULL;
			assert_int_equal(write(go[1], "g", 1), 1);
		}
		if (strstr(out, "ok locked\n") != NULL && seccomp[0] == '\0') {
			status_field(pid, "Seccomp", seccomp, 16);
			status_field(pid, "NoNewPrivs", nnp, 16);
			assert_int_equal(write(go[1], "g", 1), 1);
		}
	}
	close(rep[0]);
	close(go[1]);
	assert_int_equal(waitpid(pid, status, 0), pid);
}

static void
assert_report(
    const char *out, int status, const char *seccomp, const char *nnp)
{
	if (strstr(out, "FAIL") != NULL || strstr(out, "ok locked") == NULL)
		fail_msg("the confined child reported:\n%s", out);
	/* It died of the system call outside the list. */
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS)
		fail_msg("the child ended with status %#x, not by SIGSYS:\n%s",
		    status, out);
	assert_string_equal(seccomp, "2");
	assert_string_equal(nnp, "1");
}

static void
test_poller(void **state)
{
	static const char *const names[] = { "circle-token", "circleci-ca.crt",
		NULL };
	static const char *const v2[] = { "circle-token-v2", "ca", NULL };
	char out[4096], seccomp[16] = "", nnp[16] = "";
	int status;

	(void)state;
	if (landlock_abi < 1)
		skip();
	run_role(poller_child, "circleci", names, v2, out, sizeof(out),
	    &status, seccomp, nnp);
	assert_report(out, status, seccomp, nnp);
}

static void
test_actuator(void **state)
{
	static const char *const names[] = { "token", "ca.crt", "namespace",
		NULL };
	static const char *const v2[] = { "sa-token-v2", "ca", "ns", NULL };
	char out[4096], seccomp[16] = "", nnp[16] = "";
	int status;

	(void)state;
	if (landlock_abi < 1)
		skip();
	run_role(actuator_child, "sa", names, v2, out, sizeof(out), &status,
	    seccomp, nnp);
	assert_report(out, status, seccomp, nnp);
}

/* Every name in the lists is a system call of this architecture, or one
 * it lacks on purpose (poll on arm64): a typo would silently allow
 * nothing. */
static void
test_lists_name_real_calls(void **state)
{
	static const char *const other_arch[] = { "poll", "epoll_wait",
		"access", "readlink", "unlink", "accept", "fstat", NULL };
	const struct confine_syscall *l;
	size_t n, i, k;

	(void)state;
	l = confine_common_syscalls(&n);
	assert_true(n > 40);
	for (i = 0; i < n; i++) {
		assert_non_null(l[i].cs_why);
		assert_true(strlen(l[i].cs_why) > 5);
		if (seccomp_syscall_resolve_name(l[i].cs_name) >= 0)
			continue;
		for (k = 0; other_arch[k] != NULL; k++)
			if (strcmp(other_arch[k], l[i].cs_name) == 0)
				break;
		if (other_arch[k] == NULL)
			fail_msg("%s is not a system call", l[i].cs_name);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lists_name_real_calls),
		cmocka_unit_test(test_poller),
		cmocka_unit_test(test_actuator),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
