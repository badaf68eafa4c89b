#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/landlock.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "confine.h"
#include "log.h"
#include "tz.h"
#include "util.h"
#include "wipe.h"

/* Landlock rights newer than Debian 12's headers (Linux 6.1). */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#endif
#define LL_NET_BIND_TCP        (1ULL << 0) /* ABI 4 */
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL        (1ULL << 1) /* ABI 6 */
#define LL_FS_ABI1             ((1ULL << 13) - 1)
#define LL_FILE_RIGHTS                                                        \
	(LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |         \
	    LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |      \
	    LANDLOCK_ACCESS_FS_IOCTL_DEV)
#define LL_READ (LANDLOCK_ACCESS_FS_READ_FILE | LANDLOCK_ACCESS_FS_READ_DIR)
/* The run directory: the IPC sockets are made, used and removed there. */
#define LL_WRITE                                                              \
	(LL_READ | LANDLOCK_ACCESS_FS_WRITE_FILE |                            \
	    LANDLOCK_ACCESS_FS_TRUNCATE | LANDLOCK_ACCESS_FS_REMOVE_FILE |    \
	    LANDLOCK_ACCESS_FS_MAKE_SOCK)

/* The attribute as the kernel's newest ABI we know defines it; older
 * kernels are given the prefix they know. */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net; /* ABI 4 */
	uint64_t scoped;             /* ABI 6 */
};

static struct confine_state state;

/* Names of this architecture's system calls, for the SIGSYS report: the
 * handler cannot allocate. */
#define NR_NAMES 512
static char *nr_names[NR_NAMES];
static const char *confine_role = "child";

/*
 * What every child does after start-up, whichever side it is on: its
 * event loop (poll, the signalfd, nng's IPC pipes and threads), logging,
 * libcurl's transfers (new TLS connections, its threaded DNS resolver),
 * OpenSSL and glibc's allocator.
 */
static const struct confine_syscall common_syscalls[] = {
	/* The event loop and IPC. */
	CONFINE_ANY("read",
	    "sockets, the signalfd, nng's wakeup pipes, "
	    "credential files"),
	CONFINE_ANY("readv", "nng reads IPC frames"),
	CONFINE_ANY("write", "log lines on stderr, nng's wakeup pipes"),
	CONFINE_ANY("writev", "nng writes IPC frames"),
	CONFINE_ANY("recvfrom", "libcurl and OpenSSL read sockets"),
	CONFINE_ANY("recvmsg", "nng IPC; glibc's resolver; netlink"),
	CONFINE_ANY("sendto", "libcurl and OpenSSL write sockets; DNS"),
	CONFINE_ANY("sendmsg", "nng IPC frames"),
	CONFINE_ANY("sendmmsg", "glibc's resolver sends A and AAAA at once"),
	CONFINE_ANY("poll", "curl_multi_poll, the loop's one wait point"),
	CONFINE_ANY("ppoll", "poll on architectures without poll(2)"),
	CONFINE_ANY("epoll_wait", "nng's poller thread"),
	CONFINE_ANY("epoll_pwait", "nng's poller thread (arm64)"),
	CONFINE_ANY("epoll_ctl", "nng watches pipes as they come and go"),
	CONFINE_ANY("close", "sockets, files"),
	CONFINE_ANY("shutdown", "libcurl and nng close connections"),
	/* New connections: TLS to the API over IPv4/IPv6, nng redialling
	 * its IPC socket, and the netlink query glibc's getaddrinfo makes
	 * to sort addresses.  Nothing else may be opened. */
	CONFINE_ARG("socket", 0, 0xffffffff, AF_UNIX, "nng IPC (re)dials"),
	CONFINE_ARG("socket", 0, 0xffffffff, AF_INET, "HTTPS over IPv4"),
	CONFINE_ARG("socket", 0, 0xffffffff, AF_INET6, "HTTPS over IPv6"),
	CONFINE_ARG("socket", 0, 0xffffffff, AF_NETLINK,
	    "getaddrinfo reads the interface addresses"),
	CONFINE_ARG("socketpair", 0, 0xffffffff, AF_UNIX,
	    "libcurl's resolver thread signals its result"),
	CONFINE_ANY("connect", "HTTPS, DNS, nng IPC"),
	CONFINE_ANY("bind",
	    "getaddrinfo's netlink socket (TCP binds are "
	    "refused by Landlock)"),
	CONFINE_ANY("getsockname", "libcurl notes its local address"),
	CONFINE_ANY("getpeername", "libcurl notes the peer's address"),
	CONFINE_ANY("setsockopt", "TCP_NODELAY, keep-alive, buffer sizes"),
	CONFINE_ANY("getsockopt", "SO_ERROR after a non-blocking connect"),
	CONFINE_ANY("fcntl", "O_NONBLOCK and FD_CLOEXEC on new descriptors"),
	CONFINE_ANY("uname",
	    "glibc's resolver: the host name gives the "
	    "default search domain"),
	CONFINE_ARG("ioctl", 1, 0xffffffff, FIONREAD,
	    "bytes waiting on a socket (libcurl, glibc's resolver)"),
	CONFINE_ARG("ioctl", 1, 0xffffffff, FIONBIO, "non-blocking sockets"),
	CONFINE_ANY("pipe2", "wakeup pipes"),
	CONFINE_ANY("eventfd2", "wakeup events"),
	/* Files: rotated credentials, CA bundles for new connections, the
	 * resolver's configuration.  Landlock decides which. */
	CONFINE_ANY("openat", "credential, CA and resolver files"),
	CONFINE_ANY("newfstatat", "stat of those files"),
	CONFINE_ANY("fstat", "stat of an open file"),
	CONFINE_ANY("statx", "stat of a file (newer glibc and libcurl)"),
	CONFINE_ANY("lseek", "stdio on those files"),
	CONFINE_ANY("access", "libcurl and OpenSSL check a CA path"),
	CONFINE_ANY("faccessat", "access(2) on arm64"),
	CONFINE_ANY("faccessat2", "access(2) in newer glibc"),
	/* Memory, never executable: no code is loaded after start-up. */
	CONFINE_ARG("mmap", 2, PROT_EXEC, 0, "malloc, thread stacks"),
	CONFINE_ARG("mprotect", 2, PROT_EXEC, 0, "thread stack guard pages"),
	CONFINE_ANY("munmap", "free, thread stacks"),
	CONFINE_ANY("mremap", "realloc of large blocks"),
	CONFINE_ANY("madvise", "malloc returns memory; thread stacks"),
	CONFINE_ANY("brk", "malloc"),
	/* Threads: libcurl resolves names on a thread of its own. */
	CONFINE_ARG("clone", 0,
	    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
	        CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET,
	    0, "threads (never new namespaces)"),
	CONFINE_ANY("set_robust_list", "every new thread"),
	CONFINE_ANY("rseq", "every new thread (glibc 2.35+)"),
	CONFINE_ANY("futex", "locks and condition variables"),
	CONFINE_ANY("sched_yield", "spinning locks"),
	CONFINE_ANY("sched_getaffinity",
	    "glibc's malloc sizes its arenas by "
	    "the CPUs a new thread may use"),
	CONFINE_ARG("prctl", 0, 0xffffffff, PR_SET_NAME,
	    "nng names the threads it starts"),
	CONFINE_ANY("exit", "a thread ends"),
	CONFINE_ANY("exit_group", "the process ends"),
	CONFINE_ANY("restart_syscall", "a wait resumed after a signal"),
	/* Signals: only the process's own (SIGSYS report, abort()). */
	CONFINE_ANY("rt_sigprocmask", "glibc blocks signals around threads"),
	CONFINE_ANY("rt_sigreturn", "return from the SIGSYS handler"),
	CONFINE_ANY("rt_sigaction", "abort() and the SIGSYS report"),
	CONFINE_ANY("tgkill",
	    "abort() and the SIGSYS report signal "
	    "themselves (Landlock scopes signals)"),
	/* Time, ids, randomness. */
	CONFINE_ANY("clock_gettime", "clocks (when the vDSO cannot)"),
	CONFINE_ANY("gettimeofday", "clocks (when the vDSO cannot)"),
	CONFINE_ANY("clock_nanosleep", "nng's timers and backoff"),
	CONFINE_ANY("nanosleep", "nng's timers and backoff"),
	CONFINE_ANY("getpid", "log lines and message headers"),
	CONFINE_ANY("gettid", "glibc and nng name their threads"),
	CONFINE_ANY("getrandom", "OpenSSL's random generator, TLS"),
#if defined(RP_ASAN)
	/* AddressSanitizer's runtime (test builds only): its leak check at
	 * exit stops the world from a helper task that ptraces the
	 * process's threads; reports read /proc/self/maps. */
	CONFINE_ANY("ptrace", "sanitizer: leak check"),
	CONFINE_ANY("wait4", "sanitizer: leak check"),
	CONFINE_ANY("prctl", "sanitizer: leak check, ptracer (any option)"),
	CONFINE_ANY("sigaltstack", "sanitizer: its signal stack"),
	CONFINE_ANY("getdents64", "sanitizer: /proc/self/task"),
	CONFINE_ANY("getdents",
	    "sanitizer: /proc/PID/task (the leak check's "
	    "helper)"),
	CONFINE_ANY("readlink", "sanitizer: /proc/self/exe"),
	CONFINE_ANY("open",
	    "sanitizer: the leak check's helper opens /proc/PID/task "
	    "with open, not openat"),
	CONFINE_ANY("kill", "sanitizer: leak check"),
	CONFINE_ANY("pread64", "sanitizer: symbolizer reads binaries"),
	CONFINE_ANY("getppid", "sanitizer: leak check"),
	CONFINE_ANY("prlimit64", "sanitizer: stack limits"),
	CONFINE_ANY("sched_setaffinity", "sanitizer"),
#endif
};

const struct confine_syscall *
confine_common_syscalls(size_t *n)
{
	*n = nitems(common_syscalls);
	return common_syscalls;
}

const struct confine_state *
confine_state(void)
{
	return &state;
}

/* Paths ----------------------------------------------------------------- */

void
confine_paths_add(struct confine_paths *cp, const char *path, int access)
{
	size_t i;

	for (i = 0; i < cp->cp_n; i++)
		if (strcmp(cp->cp_list[i].cp_path, path) == 0) {
			cp->cp_list[i].cp_access |= access;
			return;
		}
	if (cp->cp_n == cp->cp_cap) {
		cp->cp_cap = cp->cp_cap ? 2 * cp->cp_cap : 16;
		cp->cp_list =
		    xrealloc(cp->cp_list, cp->cp_cap, sizeof(*cp->cp_list));
	}
	cp->cp_list[cp->cp_n].cp_path = xstrdup(path);
	cp->cp_list[cp->cp_n].cp_access = access;
	cp->cp_n++;
}

void
confine_paths_free(struct confine_paths *cp)
{
	size_t i;

	for (i = 0; i < cp->cp_n; i++)
		free(cp->cp_list[i].cp_path);
	free(cp->cp_list);
	memset(cp, 0, sizeof(*cp));
}

static bool
listed(const char *const *names, const char *name)
{
	for (; names != NULL && *names != NULL; names++)
		if (strcmp(*names, name) == 0)
			return true;
	return false;
}

void
confine_paths_add_credential(
    struct confine_paths *cp, const char *path, const char *const *mine)
{
	char tmp[PATH_MAX], dir[PATH_MAX], base[PATH_MAX];
	bool only_mine = true, kubelet = false;
	struct log_line ll;
	struct dirent *e;
	struct stat st;
	DIR *d;

	if (path == NULL || stat(path, &st) == -1)
		return;
	strlcpy_rp(tmp, path, sizeof(tmp));
	strlcpy_rp(dir, dirname(tmp), sizeof(dir));
	strlcpy_rp(tmp, path, sizeof(tmp));
	strlcpy_rp(base, basename(tmp), sizeof(base));
	if ((d = opendir(dir)) == NULL)
		only_mine = false;
	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 ||
		    strcmp(e->d_name, "..") == 0)
			continue;
		if (strncmp(e->d_name, "..", 2) == 0) {
			kubelet = true; /* ..data, ..2024_01_01_00_00_00.1 */
			continue;
		}
		if (strcmp(e->d_name, base) != 0 && !listed(mine, e->d_name))
			only_mine = false;
	}
	if (d != NULL)
		closedir(d);
	if (only_mine) {
		confine_paths_add(cp, dir, CONFINE_READ);
		return;
	}
	confine_paths_add(cp, path, CONFINE_READ);
	log_begin(&ll, kubelet ? LOG_LVL_WARN : LOG_LVL_INFO,
	    "a credential shares its directory with files this process must "
	    "not read: only the file itself is readable, so a rotated copy "
	    "(a new file) will not be; give it a directory of its own");
	log_str(&ll, "path", path);
	log_end(&ll);
}

void
confine_paths_add_common(struct confine_paths *cp)
{
	static const char *const dirs[] = {
		"/etc/ssl/certs",             /* CA bundle and hashed CAs */
		"/usr/share/ca-certificates", /* what those link to */
		"/usr/local/share/ca-certificates",
	};
	static const char *const files[] = {
		"/etc/ssl/openssl.cnf", /* read when OpenSSL initialises */
		"/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf",
		"/etc/host.conf", "/etc/gai.conf", /* getaddrinfo */
	};
	const char *tzdir = getenv("TZDIR");
	struct stat st;
	size_t i;

	for (i = 0; i < nitems(dirs); i++)
		if (stat(dirs[i], &st) == 0)
			confine_paths_add(cp, dirs[i], CONFINE_READ);
	/* Time zones of scaling schedules: a configuration delivered at run
	 * time may name one no earlier configuration did (tz_load). */
	if (tzdir == NULL || *tzdir == '\0')
		tzdir = TZ_DIR_DEFAULT;
	if (stat(tzdir, &st) == 0)
		confine_paths_add(cp, tzdir, CONFINE_READ);
	for (i = 0; i < nitems(files); i++)
		if (stat(files[i], &st) == 0)
			confine_paths_add(cp, files[i], CONFINE_READ);
#if defined(RP_ASAN)
	/* Test builds: the sanitizer reads /proc/self/maps, and its
	 * symbolizer the binaries and libraries. */
	confine_paths_add(cp, "/proc", CONFINE_READ);
	confine_paths_add(cp, "/usr/lib", CONFINE_READ);
	{
		char exe[PATH_MAX];
		ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
		if (n > 0) {
			exe[n] = '\0';
			confine_paths_add(cp, dirname(exe), CONFINE_READ);
		}
	}
#endif
}

/* Landlock -----------------------------------------------------------------
 */

static int
landlock_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    LANDLOCK_CREATE_RULESET_VERSION);

	return abi < 0 ? 0 : (int)abi;
}

static uint64_t
fs_rights(int abi)
{
	uint64_t r = LL_FS_ABI1;

	if (abi >= 2)
		r |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		r |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		r |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return r;
}

static int
add_path_rule(int ruleset, const struct confine_path *p, uint64_t handled,
    char *err, size_t errlen)
{
	struct landlock_path_beneath_attr pb;
	struct stat st;
	uint64_t want;
	int fd;

	if ((fd = open(p->cp_path, O_PATH | O_CLOEXEC)) == -1) {
		/* Gone since the list was made: nothing to grant. */
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "landlock: %s: %s", p->cp_path,
		    strerror(errno));
		return -1;
	}
	want = (p->cp_access & CONFINE_WRITE) ? LL_WRITE : LL_READ;
	if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
		want &= LL_FILE_RIGHTS;
	pb.allowed_access = want & handled;
	pb.parent_fd = fd;
	if (syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH,
	        &pb, 0) == -1) {
		snprintf(err, errlen, "landlock: rule for %s: %s", p->cp_path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int
landlock_apply(const struct confine_paths *cp, char *err, size_t errlen)
{
	struct ll_ruleset_attr attr;
	size_t size, i;
	int abi, rs;

	if ((abi = landlock_abi()) == 0) {
		log_warnx("Landlock is not available in this kernel (%s): the "
		          "%s's file access is not restricted",
		    strerror(errno), confine_role);
		return 0;
	}
	state.cs_landlock_abi = abi;
	memset(&attr, 0, sizeof(attr));
	attr.handled_access_fs = fs_rights(abi);
	size = sizeof(attr.handled_access_fs);
	if (abi >= 4) {
		/* No TCP listener in a child: binding any port is refused. */
		attr.handled_access_net = LL_NET_BIND_TCP;
		size = offsetof(struct ll_ruleset_attr, scoped);
	}
	if (abi >= 6) {
		/* No signals to, no abstract sockets of, other processes. */
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
		size = sizeof(attr);
	}
	if ((rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0)) ==
	    -1) {
		snprintf(err, errlen, "landlock: create ruleset (ABI %d): %s",
		    abi, strerror(errno));
		return -1;
	}
	for (i = 0; i < cp->cp_n; i++)
		if (add_path_rule(rs, &cp->cp_list[i], attr.handled_access_fs,
		        err, errlen) == -1) {
			close(rs);
			return -1;
		}
	if (syscall(SYS_landlock_restrict_self, rs, 0) == -1) {
		snprintf(
		    err, errlen, "landlock: restrict: %s", strerror(errno));
		close(rs);
		return -1;
	}
	close(rs);
	state.cs_files = true;
	return 0;
}

int
confine_files(
    const char *role, const struct confine_paths *cp, char *err, size_t errlen)
{
	struct rlimit none = { 0, 0 };

	confine_role = role;
	/* Nothing this process or its threads exec can gain privileges;
	 * also what lets an unprivileged process load Landlock and seccomp
	 * rules. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "prctl(PR_SET_NO_NEW_PRIVS): %s",
		    strerror(errno));
		return -1;
	}
	/* No core file, and no ptrace or /proc/PID/mem for other processes
	 * of the same user: the memory holds a token. */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1 ||
	    setrlimit(RLIMIT_CORE, &none) == -1) {
		snprintf(err, errlen, "no core dumps: %s", strerror(errno));
		return -1;
	}
	return landlock_apply(cp, err, errlen);
}

/* seccomp ------------------------------------------------------------------
 */

static void
on_sigsys(int sig, siginfo_t *si, void *uc)
{
	struct log_line ll;
	int nr = si->si_syscall;

	(void)sig;
	(void)uc;
	log_begin(&ll, LOG_LVL_ERROR,
	    "blocked a system call outside the allow-list; exiting");
	log_str(&ll, "role", confine_role);
	log_int(&ll, "syscall", nr);
	if (nr >= 0 && nr < NR_NAMES && nr_names[nr] != NULL)
		log_str(&ll, "name", nr_names[nr]);
	log_end(&ll);
	/* SA_RESETHAND restored the default: die of SIGSYS on return. */
	raise(SIGSYS);
}

static void
names_load(void)
{
	int nr;

	for (nr = 0; nr < NR_NAMES; nr++)
		if (nr_names[nr] == NULL)
			nr_names[nr] = seccomp_syscall_resolve_num_arch(
			    SCMP_ARCH_NATIVE, nr);
}

static int
rule_add(scmp_filter_ctx ctx, const struct confine_syscall *s, char *err,
    size_t errlen)
{
	int nr = seccomp_syscall_resolve_name(s->cs_name), rc;

	if (nr == __NR_SCMP_ERROR)
		return 0; /* not a system call of this architecture */
	if (s->cs_arg < 0)
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
	else
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
		    SCMP_CMP((unsigned int)s->cs_arg, SCMP_CMP_MASKED_EQ,
		        s->cs_mask, s->cs_value));
	if (rc < 0) {
		snprintf(err, errlen, "seccomp: rule for %s: %s", s->cs_name,
		    strerror(-rc));
		return -1;
	}
	return 0;
}

int
confine_syscalls(const char *role, const struct confine_syscall *extra,
    size_t nextra, char *err, size_t errlen)
{
	struct sigaction sa;
	scmp_filter_ctx ctx;
	size_t i;
	int rc, nr;

	confine_role = role;
	names_load();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
	if (sigaction(SIGSYS, &sa, NULL) == -1) {
		snprintf(
		    err, errlen, "sigaction(SIGSYS): %s", strerror(errno));
		return -1;
	}
	if ((ctx = seccomp_init(SCMP_ACT_TRAP)) == NULL) {
		snprintf(err, errlen, "seccomp_init failed");
		return -1;
	}
	/* Every thread, nng's included, gets the filter. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) < 0) {
		if (rc == -EOPNOTSUPP) {
			/* No seccomp filters here (valgrind runs none): as
			 * without Landlock, say so and go on. */
			log_warnx("cannot install the %s's system call filter "
			          "(%s): it runs without one",
			    role, strerror(-rc));
			seccomp_release(ctx);
			return 0;
		}
		snprintf(
		    err, errlen, "seccomp: thread sync: %s", strerror(-rc));
		goto fail;
	}
	/* glibc tries clone3 first and falls back to clone, whose flags
	 * the filter can see. */
	if ((nr = seccomp_syscall_resolve_name("clone3")) != __NR_SCMP_ERROR &&
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0)) < 0) {
		snprintf(err, errlen, "seccomp: clone3: %s", strerror(-rc));
		goto fail;
	}
	for (i = 0; i < nitems(common_syscalls); i++)
		if (rule_add(ctx, &common_syscalls[i], err, errlen) == -1)
			goto fail;
	for (i = 0; i < nextra; i++)
		if (rule_add(ctx, &extra[i], err, errlen) == -1)
			goto fail;
	if ((rc = seccomp_load(ctx)) < 0) {
		/* No seccomp here (or under valgrind, which cannot run it). */
		log_warnx(
		    "cannot install the %s's system call filter (%s): it "
		    "runs without one",
		    role, strerror(-rc));
		seccomp_release(ctx);
		return 0;
	}
	seccomp_release(ctx);
	state.cs_seccomp = true;
	return 0;
fail:
	seccomp_release(ctx);
	return -1;
}
