#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

static void
test_empty(void **state)
{
	struct buf b = { 0 };
	char *s;

	(void)state;
	assert_string_equal(buf_str(&b), "");
	buf_reset(&b); /* nothing allocated yet: still fine */
	assert_int_equal(b.b_len, 0);
	s = buf_take(&b);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
	buf_free(&b);
	buf_free(&b);
	assert_null(b.b_data);
}

static void
test_append_and_terminate(void **state)
{
	struct buf b = { 0 };

	(void)state;
	buf_append(&b, "abc", 3);
	buf_puts(&b, "def");
	buf_append(&b, "", 0);
	assert_int_equal(b.b_len, 6);
	assert_string_equal(buf_str(&b), "abcdef");
	assert_int_equal(b.b_data[b.b_len], '\0');
	/* binary data with a NUL is kept whole */
	buf_append(&b, "x\0y", 3);
	assert_int_equal(b.b_len, 9);
	assert_memory_equal(b.b_data + 6, "x\0y", 3);
	assert_int_equal(b.b_data[9], '\0');
	buf_free(&b);
}

/* Growth past the initial allocation, byte by byte and in one go, keeps
 * every byte in order. */
static void
test_growth(void **state)
{
	struct buf b = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < 100000; i++) {
		char c = (char)('a' + i % 26);
		buf_append(&b, &c, 1);
	}
	assert_int_equal(b.b_len, 100000);
	assert_true(b.b_cap > b.b_len);
	for (i = 0; i < 100000; i++)
		if (b.b_data[i] != (char)('a' + i % 26))
			fail_msg("byte %zu wrong", i);
	assert_int_equal(b.b_data[100000], '\0');
	buf_free(&b);
}

static void
test_printf(void **state)
{
	struct buf b = { 0 };
	char *big;

	(void)state;
	buf_printf(&b, "%s=%d", "n", 42);
	buf_printf(&b, ",%05.1f", 3.5);
	assert_string_equal(buf_str(&b), "n=42,003.5");
	assert_int_equal(b.b_len, strlen("n=42,003.5"));
	/* longer than the first allocation */
	big = malloc(5001);
	assert_non_null(big);
	memset(big, 'z', 5000);
	big[5000] = '\0';
	buf_printf(&b, "[%s]", big);
	assert_int_equal(b.b_len, 10 + 5002);
	assert_int_equal(b.b_data[10], '[');
	assert_int_equal(b.b_data[10 + 5001], ']');
	assert_int_equal(b.b_data[b.b_len], '\0');
	free(big);
	buf_free(&b);
}

/* reset empties but keeps the allocation for reuse. */
static void
test_reset_keeps_allocation(void **state)
{
	struct buf b = { 0 };
	char *data;
	size_t cap;

	(void)state;
	buf_puts(&b, "hello world");
	data = b.b_data;
	cap = b.b_cap;
	buf_reset(&b);
	assert_int_equal(b.b_len, 0);
	assert_string_equal(buf_str(&b), "");
	assert_ptr_equal(b.b_data, data);
	assert_int_equal(b.b_cap, cap);
	buf_puts(&b, "again");
	assert_string_equal(buf_str(&b), "again");
	buf_free(&b);
}

/* take hands over the contents and leaves a usable empty buffer. */
static void
test_take(void **state)
{
	struct buf b = { 0 };
	char *s;

	(void)state;
	buf_printf(&b, "%d-%d", 1, 2);
	s = buf_take(&b);
	assert_string_equal(s, "1-2");
	assert_null(b.b_data);
	assert_int_equal(b.b_len, 0);
	assert_int_equal(b.b_cap, 0);
	assert_string_equal(buf_str(&b), "");
	buf_puts(&b, "new");
	assert_string_equal(buf_str(&b), "new");
	assert_string_equal(s, "1-2");
	free(s);
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_append_and_terminate),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_printf),
		cmocka_unit_test(test_reset_keeps_allocation),
		cmocka_unit_test(test_take),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
