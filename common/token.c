#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "token.h"
#include "util.h"

/* A header value must not carry whitespace or control bytes. */
static int
token_valid(const char *t)
{
	const unsigned char *p;

	for (p = (const unsigned char *)t; *p != '\0'; p++)
		if (*p <= 0x20 || *p == 0x7f)
			return -1;
	return 0;
}

/* Checks t (taken) and registers it for redaction; NULL on a problem. */
static char *
token_accept(char *t, const char *source, char *err, size_t errlen)
{
	if (t[0] == '\0') {
		snprintf(err, errlen, "%s: the CircleCI API token is empty",
		    source);
		token_free(t);
		return NULL;
	}
	if (token_valid(t) == -1) {
		snprintf(err, errlen,
		    "%s: the CircleCI API token contains whitespace or "
		    "control characters",
		    source);
		token_free(t);
		return NULL;
	}
	log_secret_add(t);
	return t;
}

char *
token_parse(
    const char *text, size_t len, const char *source, char *err, size_t errlen)
{
	char *t;

	if (len > TOKEN_MAX) {
		snprintf(err, errlen,
		    "%s: CircleCI API token file is larger than %d bytes",
		    source, TOKEN_MAX);
		return NULL;
	}
	t = xstrndup(text, len);
	rstrip(t);
	return token_accept(t, source, err, errlen);
}

char *
token_load(const char *path, const char **source, char *err, size_t errlen)
{
	const char *env = getenv("CIRCLE_TOKEN");
	char *t;

	if (env != NULL && env[0] != '\0') {
		*source = "CIRCLE_TOKEN";
		t = xstrdup(env);
	} else {
		*source = path;
		if ((t = read_file(path, TOKEN_MAX, NULL)) == NULL) {
			if (errno == ENOENT)
				snprintf(err, errlen,
				    "no CircleCI API token: CIRCLE_TOKEN is "
				    "unset and %s does not exist",
				    path);
			else if (errno == EFBIG)
				snprintf(err, errlen,
				    "%s: CircleCI API token file is larger "
				    "than %d bytes",
				    path, TOKEN_MAX);
			else
				snprintf(err, errlen, "%s: %s", path,
				    strerror(errno));
			return NULL;
		}
		rstrip(t);
	}
	return token_accept(t, *source, err, errlen);
}

char *
token_load_fd(int fd, const char **source, char *err, size_t errlen)
{
	char *t;

	*source = "--circle-token-fd";
	if ((t = read_fd(fd, TOKEN_MAX, NULL)) == NULL) {
		if (errno == EFBIG)
			snprintf(err, errlen,
			    "--circle-token-fd %d: the CircleCI API token is "
			    "longer than %d bytes",
			    fd, TOKEN_MAX);
		else
			snprintf(err, errlen, "--circle-token-fd %d: %s", fd,
			    strerror(errno));
		return NULL;
	}
	rstrip(t);
	return token_accept(t, *source, err, errlen);
}

void
token_env_scrub(void)
{
	char *env = getenv("CIRCLE_TOKEN");

	if (env == NULL)
		return;
	/* The variable lives in the process's initial stack, which
	 * /proc/PID/environ shows: wipe it, not just unset it. */
	explicit_bzero(env, strlen(env));
	unsetenv("CIRCLE_TOKEN");
}

void
token_free(char *t)
{
	if (t == NULL)
		return;
	explicit_bzero(t, strlen(t));
	free(t);
}
