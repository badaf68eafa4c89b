/* The CircleCI API token: --circle-token-fd, else CIRCLE_TOKEN, else
 * --circle-token-file. */
#ifndef RP_TOKEN_H
#define RP_TOKEN_H

#include <stddef.h>

#define TOKEN_MAX 4096

/* token.c */
/* Returns the token (a new string, caller frees with token_free) and
 * registers it with the logger's redaction list; or NULL with a message
 * naming the source in err.  *source is set to "CIRCLE_TOKEN" or path. */
char *token_load(
    const char *path, const char **source, char *err, size_t errlen);
/* The same, from an open descriptor (read to its end, then closed):
 * --circle-token-fd, how the supervisor hands CIRCLE_TOKEN to the poller
 * without putting it in the poller's environment. */
char *token_load_fd(int fd, const char **source, char *err, size_t errlen);
/* Wipes CIRCLE_TOKEN's value in place (it is visible in /proc/PID/environ)
 * and removes it from the environment. */
void token_env_scrub(void);
/* The token in a file's text (len bytes, trailing whitespace ignored),
 * checked and registered as token_load does; source names it in err. */
char *token_parse(const char *text, size_t len, const char *source, char *err,
    size_t errlen);
/* Wipes and frees. */
void token_free(char *);

#endif
