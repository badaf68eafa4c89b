#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base64.h"
#include "util.h"

void
b64_encode(struct buf *out, const void *data, size_t len)
{
	size_t n = 4 * ((len + 2) / 3);
	unsigned char *enc = xmalloc(n + 1);

	EVP_EncodeBlock(enc, data, (int)len);
	buf_append(out, enc, n);
	free_wipe(enc, n + 1);
}

int
b64_decode(struct buf *out, const char *s)
{
	size_t i, n = 0, pad = 0;
	unsigned char *clean, *dec;
	int len;

	clean = xmalloc(strlen(s) + 1);
	for (i = 0; s[i] != '\0'; i++)
		if (!isspace((unsigned char)s[i]))
			clean[n++] = (unsigned char)s[i];
	clean[n] = '\0';
	if (n % 4 != 0) {
		free_wipe(clean, n + 1);
		return -1;
	}
	if (n > 0 && clean[n - 1] == '=')
		pad++;
	if (n > 1 && clean[n - 2] == '=')
		pad++;
	/* EVP_DecodeBlock reads '=' inside the text as zero bits and more
	 * than two as padding: only A-Z a-z 0-9 + / may come before it. */
	for (i = 0; i < n - pad; i++)
		if (!isalnum(clean[i]) && clean[i] != '+' && clean[i] != '/') {
			free(clean);
			return -1;
		}
	dec = xmalloc(n / 4 * 3 + 1);
	len = EVP_DecodeBlock(dec, clean, (int)n);
	free_wipe(clean, n + 1);
	if (len < 0 || (size_t)len < pad) {
		free_wipe(dec, n / 4 * 3 + 1);
		return -1;
	}
	buf_append(out, dec, (size_t)len - pad);
	free_wipe(dec, n / 4 * 3 + 1);
	return 0;
}
