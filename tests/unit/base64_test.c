/* base64.c: Secret data and kubeconfig certificate data. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base64.h"
#include "buf.h"
#include "memscan.h"
#include "util.h"

static void
test_round_trip(void **state)
{
	unsigned char all[256];
	struct buf enc = { 0 }, dec = { 0 };
	size_t n, i;

	(void)state;
	for (i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)(255 - i);
	for (n = 0; n <= sizeof(all); n++) {
		buf_reset(&enc);
		buf_reset(&dec);
		b64_encode(&enc, all, n);
		assert_int_equal(enc.b_len, 4 * ((n + 2) / 3));
		assert_int_equal(b64_decode(&dec, buf_str(&enc)), 0);
		assert_int_equal(dec.b_len, n);
		assert_memory_equal(buf_str(&dec), all, n);
	}
	buf_free(&enc);
	buf_free(&dec);
}

static void
test_known_values(void **state)
{
	static const struct {
		const char *text, *want;
	} cases[] = {
		{ "", "" },
		{ "QQ==", "A" },
		{ "QUI=", "AB" },
		{ "QUJD", "ABC" },
		{ "aGVs\nbG8g\r\nd29y bGQ=", "hello world" },
		{ "  QUJD\t", "ABC" },
	};
	struct buf dec = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		buf_reset(&dec);
		if (b64_decode(&dec, cases[i].text) != 0)
			fail_msg("rejected: \"%s\"", cases[i].text);
		assert_string_equal(buf_str(&dec), cases[i].want);
	}
	buf_free(&dec);
}

/* OpenSSL's EVP_DecodeBlock decodes these to garbage rather than failing;
 * a corrupted certificate-authority-data must be named at start-up, not
 * found as a TLS error later (found by fuzzing). */
static void
test_malformed_rejected(void **state)
{
	static const char *const bad[] = {
		"QQ==QQ==", /* padding in the middle */
		"QQ=A",     /* '=' inside the last quantum */
		"Q===",     /* three padding characters */
		"====",
		"QUJD====",
		"=QUJ",
		"QUJ-", /* base64url is another alphabet */
		"QUJ_",
		"QU*D",
		"QUJ", /* not a multiple of 4 */
		"QQ=",
	};
	struct buf dec = { 0 };
	size_t i, accepted = 0;

	(void)state;
	for (i = 0; i < nitems(bad); i++) {
		buf_reset(&dec);
		if (b64_decode(&dec, bad[i]) == 0) {
			print_error("accepted: \"%s\" (%zu bytes)\n", bad[i],
			    dec.b_len);
			accepted++;
		}
	}
	assert_int_equal(accepted, 0);
	buf_free(&dec);
}

/*
 * The user data (with the runner token) is base64-encoded into the Secret,
 * and kubeconfig keys are decoded: the scratch buffers of both directions
 * hold the secret and must be wiped, not just freed.
 */
static char tok[61];
static char enc[81];

static void
test_scratch_wiped(void **state)
{
	struct buf b = { 0 };
	char where[160];
	size_t n;

	(void)state;
	memscan_token(tok, 60);
	b64_encode(&b, tok, 60);
	assert_int_equal(b.b_len, 80);
	memcpy(enc, b.b_data, 81);
	buf_free(&b);
	n = memscan_count(enc, 80, where, sizeof(where));
	if (n != 0)
		fail_msg("encoding left %zu pieces at %s", n, where);
	n = memscan_count(tok, 60, where, sizeof(where));
	if (n != 0)
		fail_msg(
		    "encoding left %zu pieces of the input at %s", n, where);
	assert_int_equal(b64_decode(&b, enc), 0);
	assert_memory_equal(b.b_data, tok, 60);
	buf_free(&b);
	n = memscan_count(tok, 60, where, sizeof(where));
	if (n != 0)
		fail_msg("decoding left %zu pieces at %s", n, where);
	n = memscan_count(enc, 80, where, sizeof(where));
	if (n != 0)
		fail_msg(
		    "decoding left %zu pieces of the input at %s", n, where);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_known_values),
		cmocka_unit_test(test_malformed_rejected),
		cmocka_unit_test(test_scratch_wiped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
