#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "memscan.h"
#include "util.h"

static void
test_known_vectors(void **state)
{
	static const struct {
		const char *plain, *enc;
	} v[] = {
		{ "", "" },
		{ "f", "Zg==" },
		{ "fo", "Zm8=" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};
	struct buf b = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		buf_reset(&b);
		b64_encode(&b, v[i].plain, strlen(v[i].plain));
		assert_string_equal(buf_str(&b), v[i].enc);
		buf_reset(&b);
		assert_int_equal(b64_decode(&b, v[i].enc), 0);
		assert_int_equal(b.b_len, strlen(v[i].plain));
		assert_memory_equal(b.b_data, v[i].plain, b.b_len);
	}
	buf_reset(&b);
	assert_int_equal(b64_decode(&b, "Zm9v\nYmFy \t"), 0);
	assert_string_equal(buf_str(&b), "foobar");
	buf_reset(&b);
	assert_int_equal(b64_decode(&b, "Zm9"), -1);
	buf_free(&b);
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
		cmocka_unit_test(test_known_vectors),
		cmocka_unit_test(test_scratch_wiped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
