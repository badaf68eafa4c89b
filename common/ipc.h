/*
 * nng plumbing shared by the three processes.  Sockets live in the run
 * directory: demand.sock (poller PUB listens, actuator SUB dials),
 * health.sock (supervisor SURVEYOR listens, children RESPONDENT dial), and
 * one configuration socket per child, conf-p.sock and conf-a.sock
 * (supervisor PAIR listens, the child dials): a child receives only its
 * own configuration.  Receiving sockets expose a file descriptor for the
 * process's one poll().
 */
#ifndef RP_IPC_H
#define RP_IPC_H

#include <stddef.h>

#include <nng/nng.h>

#define IPC_DEMAND        "demand.sock"
#define IPC_HEALTH        "health.sock"
#define IPC_CONF_POLLER   "conf-p.sock"
#define IPC_CONF_ACTUATOR "conf-a.sock"
#define IPC_URL_MAX       128
#define IPC_SUB_QUEUE     2048 /* messages a SUB socket holds unread */
/* Every socket's receive limit: proto/msg.h's MSG_MAX (common cannot
 * include proto; msg.c checks the two agree). */
#define IPC_MSG_MAX (16 * 1024 * 1024)
/* sun_path holds 108 bytes with the NUL: "<dir>/demand.sock". */
#define IPC_DIR_MAX (108 - 1 - sizeof(IPC_DEMAND))

enum ipc_role {
	IPC_PUB_LISTEN,
	IPC_SUB_DIAL,
	IPC_SURVEYOR_LISTEN,
	IPC_RESPONDENT_DIAL,
	IPC_PAIR_LISTEN,
	IPC_PAIR_DIAL,
};

/* ipc.c */
/* Resolves the run directory (the flag, else $XDG_RUNTIME_DIR/
 * runner-provisioner, else /tmp/runner-provisioner-UID), creates it 0700
 * when missing and checks it is private.  0, or -1 with err. */
int ipc_rundir(
    const char *flag_dir, char *out, size_t outlen, char *err, size_t errlen);
/* Builds "ipc://<dir>/<name>"; -1 when too long for a socket path. */
int ipc_url(char *out, size_t outlen, const char *dir, const char *name);
/* Opens a socket for role on url.  Listeners replace a stale socket file
 * and restrict it to 0600; dialers connect in the background and
 * reconnect by themselves.  *recv_fd (when not NULL) gets the descriptor
 * that polls readable when a message waits.  0, or -1 (logged). */
int ipc_open(nng_socket *, enum ipc_role, const char *url, int *recv_fd);
/* Sends len bytes, waiting at most 100 ms.  0, or -1 (logged at debug:
 * a full queue or an absent peer is normal). */
int ipc_send(nng_socket, const void *, size_t);
/* The same without waiting at all: -1 when no peer can take it now. */
int ipc_send_now(nng_socket, const void *, size_t);
/* Receives one message without blocking: 1 (*m is the caller's to free
 * with nng_msg_free), 0 when none waits, -1 on error (logged). */
int ipc_recv(nng_socket, nng_msg **m);
/* Peer process id of the pipe a message came on, or -1. */
int ipc_peer_pid(nng_msg *);

#endif
