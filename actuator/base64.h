/* Base64 (RFC 4648, with padding) for Secret data and kubeconfig fields. */
#ifndef RP_BASE64_H
#define RP_BASE64_H

#include <stddef.h>

#include "buf.h"

/* base64.c */
/* Appends the encoding of len bytes of data to out. */
void b64_encode(struct buf *out, const void *data, size_t len);
/* Appends the decoded bytes of s to out (whitespace ignored).  0, or -1
 * when s is not valid base64. */
int b64_decode(struct buf *out, const char *s);

#endif
