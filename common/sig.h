/* Signals through a signalfd, blocked before any library thread starts. */
#ifndef RP_SIG_H
#define RP_SIG_H

#include <stddef.h>

/* sig.c */
/* Blocks the n signals, ignores SIGPIPE and returns a non-blocking
 * signalfd for them (fatal on failure).  Call before nng or curl start
 * threads, so that only the signalfd ever sees these signals. */
int sig_fd(const int *signals, size_t n);
/* Reads one pending signal from fd: its number, or 0 when none. */
int sig_read(int fd);

#endif
