#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "conf.h"
#include "poolname.h"
#include "util.h"

/* [a-z0-9]([a-z0-9-]*[a-z0-9])? without "--" when no_double is set. */
static bool
clean_part(const char *s, size_t n, bool no_double)
{
	size_t i;

	if (n == 0 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++) {
		if (!(islower((unsigned char)s[i]) ||
		        isdigit((unsigned char)s[i]) || s[i] == '-'))
			return false;
		if (no_double && i > 0 && s[i] == '-' && s[i - 1] == '-')
			return false;
	}
	return true;
}

void
pool_name(const char *cls, char *out, size_t size)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char name[POOL_NAME_MAX + 1];
	const char *slash = strchr(cls, '/');
	size_t n = 0, nslen;
	bool dash = false;
	const char *p;

	if (slash != NULL) {
		nslen = (size_t)(slash - cls);
		if (clean_part(cls, nslen, true) &&
		    clean_part(slash + 1, strlen(slash + 1), false) &&
		    strlen(cls) + 1 <= POOL_NAME_MAX) {
			snprintf(
			    out, size, "%.*s--%s", (int)nslen, cls, slash + 1);
			return;
		}
	}
	/* Lossy: lower-case, runs of anything else become one '-', and the
	 * hash keeps distinct classes apart.  A lossy name never contains
	 * "--", a reversible one always does, so they cannot meet. */
	for (p = cls; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p)) {
			dash = true;
			continue;
		}
		if (n + (dash && n > 0 ? 2 : 1) >
		    POOL_NAME_MAX - POOL_HASH_LEN - 1)
			break;
		if (dash && n > 0)
			name[n++] = '-';
		dash = false;
		name[n++] = (char)tolower((unsigned char)*p);
	}
	name[n] = '\0';
	SHA256((const unsigned char *)cls, strlen(cls), md);
	snprintf(out, size, "%s%s%02x%02x%02x%02x%02x", name, n > 0 ? "-" : "",
	    md[0], md[1], md[2], md[3], md[4]);
}

int
pool_names_unique(const struct conf *conf, char *err, size_t errlen)
{
	char a[POOL_NAME_MAX + 1], b[POOL_NAME_MAX + 1];
	size_t i, j;

	/* Quadratic, but classes are few and this runs once at start. */
	for (i = 0; i < conf->c_nclasses; i++) {
		pool_name(conf->c_classes[i].cc_name, a, sizeof(a));
		for (j = i + 1; j < conf->c_nclasses; j++) {
			pool_name(conf->c_classes[j].cc_name, b, sizeof(b));
			if (strcmp(a, b) != 0)
				continue;
			snprintf(err, errlen,
			    "%s: resource classes \"%s\" and \"%s\" map to "
			    "the "
			    "same pool name \"%s\"; rename one of them",
			    conf->c_path, conf->c_classes[i].cc_name,
			    conf->c_classes[j].cc_name, a);
			return -1;
		}
	}
	return 0;
}
