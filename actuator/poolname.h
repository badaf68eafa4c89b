/*
 * Pool names: a valid DNS-1123 label derived from the resource class name,
 * stable and collision-free.  "my-org/my-runner" → "my-org--my-runner"
 * when that is reversible; otherwise a sanitised name plus a short hash of
 * the class, e.g. "dev-team/custom:arm64" → "dev-team-custom-arm64-1a2b3c4d".
 */
#ifndef RP_POOLNAME_H
#define RP_POOLNAME_H

#include <stddef.h>

/* VM names are "<pool>-<index>" and become guest hostnames (63 bytes). */
#define POOL_NAME_MAX 40
#define POOL_HASH_LEN 10 /* hex digits: 40 bits of SHA-256 */

struct conf;

/* poolname.c */
void pool_name(const char *resource_class, char *out, size_t size);
/* 0 when every class of conf gets a pool of its own; else -1 with a
 * message naming both classes in err. */
int pool_names_unique(const struct conf *, char *err, size_t errlen);

#endif
