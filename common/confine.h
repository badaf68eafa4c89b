/*
 * Privilege separation on Linux, the OpenBSD pledge/unveil habit: after
 * start-up each child gives up what it does not need.
 *
 *   confine_files()     before any thread exists (Landlock binds only the
 *                       calling thread): no new privileges, not dumpable,
 *                       no core file, and a Landlock ruleset: read only the
 *                       listed paths, write only beneath the run directory,
 *                       execute nothing, bind no TCP port, signal nothing
 *                       outside the process.  A kernel without Landlock is
 *                       logged once and the child goes on.
 *   confine_syscalls()  after start-up, on every thread: a seccomp-BPF
 *                       allow-list.  Anything else traps; the child logs
 *                       the system call and dies of SIGSYS, so a gap in a
 *                       list is loud, not a silent misbehaviour.
 *
 * The lists live next to the code that needs them: what every child's
 * runtime uses (libc, nng, libcurl, OpenSSL, the event loop) in confine.c,
 * each role's additions and paths in poller/confine.c and
 * actuator/confine.c.
 */
#ifndef RP_CONFINE_H
#define RP_CONFINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFINE_READ  0x1 /* read files, list directories */
#define CONFINE_WRITE 0x2 /* also create sockets and files, remove them */

struct confine_path {
	char *cp_path;
	int cp_access; /* CONFINE_* */
};

struct confine_paths {
	struct confine_path *cp_list;
	size_t cp_n;
	size_t cp_cap;
};

/* One allow-list entry: a system call (libseccomp's name), optionally only
 * when (argument cs_arg & cs_mask) == cs_value, and why it is there.  A
 * name this architecture lacks is skipped. */
struct confine_syscall {
	const char *cs_name;
	int cs_arg; /* -1: any arguments */
	uint64_t cs_mask;
	uint64_t cs_value;
	const char *cs_why;
};

#define CONFINE_ANY(name, why)                                                \
	{                                                                     \
		name, -1, 0, 0, why                                           \
	}
#define CONFINE_ARG(name, arg, mask, value, why)                              \
	{                                                                     \
		name, arg, mask, value, why                                   \
	}

/* What confinement achieved (for logs, /ready and tests). */
struct confine_state {
	int cs_landlock_abi; /* 0: none */
	bool cs_files;       /* a Landlock ruleset is in force */
	bool cs_seccomp;     /* the allow-list is in force */
};

/* confine.c */
/* Adds path with access (copied; duplicates merge). */
void confine_paths_add(struct confine_paths *, const char *path, int access);
/* Adds a credential or CA file so that a rotation keeps working: its
 * directory when the directory holds nothing but mine (the basenames of
 * this role's own files there; kubelet's "..data" and "..<time>" entries
 * aside), else the file alone (a rotated file is then a new inode that
 * cannot be read: logged).  A missing path is left out. */
void confine_paths_add_credential(
    struct confine_paths *, const char *path, const char *const *mine);
void confine_paths_free(struct confine_paths *);
/* What every child may read: the CA stores OpenSSL and libcurl use, and
 * the resolver's configuration (/etc/hosts, resolv.conf, ...). */
void confine_paths_add_common(struct confine_paths *);

/* Stage 1 (see above).  0, or -1 with err (the child must not go on). */
int confine_files(
    const char *role, const struct confine_paths *, char *err, size_t errlen);
/* Stage 2: the common allow-list plus extra.  0, or -1 with err. */
int confine_syscalls(const char *role, const struct confine_syscall *extra,
    size_t nextra, char *err, size_t errlen);
const struct confine_state *confine_state(void);
/* The common allow-list (for documentation and tests). */
const struct confine_syscall *confine_common_syscalls(size_t *n);

#endif
