/*
 * Base64 (actuator/base64.c), which carries every VM's user data into its
 * Secret and reads certificate data from kubeconfigs.  Encoding round-trips
 * any bytes; decoding agrees with a plain RFC 4648 decoder written here
 * (whitespace ignored, padding only at the end) on what it accepts and
 * what it returns.  The first byte picks the mode.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "buf.h"
#include "fuzz.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
sextet(char c)
{
	const char *p = c != '\0' ? strchr(alphabet, c) : NULL;

	return p != NULL ? (int)(p - alphabet) : -1;
}

/* The reference: 0 and the bytes, or -1. */
static int
ref_decode(const char *s, struct buf *out)
{
	char *t = malloc(strlen(s) + 1);
	size_t i, n = 0, pad = 0;
	int v[4], k;

	FUZZ_CHECK(t != NULL, "out of memory");
	for (i = 0; s[i] != '\0'; i++)
		if (!isspace((unsigned char)s[i]))
			t[n++] = s[i];
	if (n % 4 != 0)
		goto bad;
	while (pad < n && t[n - 1 - pad] == '=')
		pad++;
	if (pad > 2)
		goto bad;
	for (i = 0; i < n; i += 4) {
		for (k = 0; k < 4; k++) {
			v[k] = i + (size_t)k >= n - pad ? 0 : sextet(t[i + k]);
			if (v[k] == -1)
				goto bad;
		}
		uint8_t b[3] = { (uint8_t)(v[0] << 2 | v[1] >> 4),
			(uint8_t)(v[1] << 4 | v[2] >> 2),
			(uint8_t)(v[2] << 6 | v[3]) };
		buf_append(out, b, i + 4 == n ? 3 - pad : 3);
	}
	free(t);
	return 0;
bad:
	free(t);
	return -1;
}

static void
check_decode(const char *s)
{
	struct buf got = { 0 }, want = { 0 }, again = { 0 }, back = { 0 };
	int rv = b64_decode(&got, s), ref = ref_decode(s, &want);

	FUZZ_CHECK(rv == ref, "\"%s\": b64_decode %s, RFC 4648 %s", s,
	    rv == 0 ? "accepts" : "rejects", ref == 0 ? "accepts" : "rejects");
	if (rv == 0) {
		FUZZ_CHECK(got.b_len == want.b_len &&
		        memcmp(buf_str(&got), buf_str(&want), got.b_len) == 0,
		    "\"%s\" decodes to %zu bytes, RFC 4648 says %zu", s,
		    got.b_len, want.b_len);
		/* Canonical text decodes to the same bytes again. */
		b64_encode(&again, got.b_data, got.b_len);
		FUZZ_CHECK(b64_decode(&back, buf_str(&again)) == 0 &&
		        back.b_len == got.b_len &&
		        memcmp(buf_str(&back), buf_str(&got), got.b_len) == 0,
		    "\"%s\" re-encoded as \"%s\" does not decode back", s,
		    buf_str(&again));
	}
	buf_free(&got);
	buf_free(&want);
	buf_free(&again);
	buf_free(&back);
}

static void
check_encode(const uint8_t *data, size_t n)
{
	struct buf enc = { 0 }, dec = { 0 }, two = { 0 };
	size_t i;

	buf_append(&enc, "prefix", 6); /* appends, never overwrites */
	b64_encode(&enc, data, n);
	FUZZ_CHECK(enc.b_len == 6 + 4 * ((n + 2) / 3),
	    "%zu bytes encode to %zu characters", n, enc.b_len - 6);
	FUZZ_CHECK(memcmp(enc.b_data, "prefix", 6) == 0, "prefix overwritten");
	for (i = 6; i < enc.b_len; i++)
		FUZZ_CHECK(sextet(enc.b_data[i]) != -1 ||
		        (enc.b_data[i] == '=' && i + 2 >= enc.b_len),
		    "byte %zu of the encoding is '%c'", i - 6, enc.b_data[i]);
	FUZZ_CHECK(b64_decode(&dec, buf_str(&enc) + 6) == 0,
	    "own encoding of %zu bytes rejected", n);
	FUZZ_CHECK(
	    dec.b_len == n && (n == 0 || memcmp(dec.b_data, data, n) == 0),
	    "%zu bytes came back as %zu different ones", n, dec.b_len);
	/* Line-wrapped, as kubeconfig data often is. */
	for (i = 6; i < enc.b_len; i++) {
		buf_append(&two, enc.b_data + i, 1);
		if ((i - 6) % 76 == 75)
			buf_append(&two, "\n", 1);
	}
	buf_reset(&dec);
	FUZZ_CHECK(b64_decode(&dec, buf_str(&two)) == 0 && dec.b_len == n,
	    "wrapped encoding of %zu bytes rejected", n);
	buf_free(&enc);
	buf_free(&dec);
	buf_free(&two);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	const uint8_t *rest;
	size_t n;
	char *s;

	if (size == 0)
		return 0;
	if (fuzz_u8(&in) == 'E') {
		rest = fuzz_rest(&in, &n);
		check_encode(rest, n);
		return 0;
	}
	s = fuzz_rest_str(&in);
	check_decode(s);
	free(s);
	return 0;
}
