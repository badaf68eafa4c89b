#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static char tmpdir[64];
static char path[128];

static void
write_file(const char *p, const char *data, size_t len)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static int
group_setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/rp-util-test-XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	snprintf(path, sizeof(path), "%s/file", tmpdir);
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	unlink(path);
	rmdir(tmpdir);
	return 0;
}

static void
test_read_file_whole(void **state)
{
	char data[10000];
	size_t len = 0, i;
	char *s;

	(void)state;
	for (i = 0; i < sizeof(data); i++)
		data[i] = (char)('A' + i % 50);
	write_file(path, data, sizeof(data));
	s = read_file(path, 1 << 20, &len);
	assert_non_null(s);
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(s, data, sizeof(data));
	assert_int_equal(s[len], '\0');
	free(s);
	/* lenp is optional */
	s = read_file(path, 1 << 20, NULL);
	assert_non_null(s);
	free(s);
}

static void
test_read_file_empty(void **state)
{
	size_t len = 99;
	char *s;

	(void)state;
	write_file(path, "", 0);
	s = read_file(path, 100, &len);
	assert_non_null(s);
	assert_int_equal(len, 0);
	assert_string_equal(s, "");
	free(s);
}

/* A file whose size stat cannot tell (procfs) is still read whole. */
static void
test_read_file_procfs(void **state)
{
	size_t len = 0;
	char *s;

	(void)state;
	s = read_file("/proc/self/status", 1 << 20, &len);
	assert_non_null(s);
	assert_true(len > 0);
	assert_int_equal(strlen(s), len);
	assert_non_null(strstr(s, "Pid:"));
	free(s);
}

static void
test_read_file_too_big(void **state)
{
	char data[5000];

	(void)state;
	memset(data, 'x', sizeof(data));
	write_file(path, data, sizeof(data));
	errno = 0;
	assert_null(read_file(path, 4999, NULL));
	assert_int_equal(errno, EFBIG);
	errno = 0;
	assert_null(read_file(path, 100, NULL));
	assert_int_equal(errno, EFBIG);
	/* larger than the first read chunk too */
	errno = 0;
	assert_null(read_file(path, 4096, NULL));
	assert_int_equal(errno, EFBIG);
}

/* The limit guards procfs-like files whose size stat does not report. */
static void
test_read_file_too_big_unknown_size(void **state)
{
	(void)state;
	errno = 0;
	assert_null(read_file("/proc/self/maps", 10, NULL));
	assert_int_equal(errno, EFBIG);
}

static void
test_read_file_errors(void **state)
{
	char missing[160];

	(void)state;
	errno = 0;
	assert_null(read_file(tmpdir, 100, NULL));
	assert_int_equal(errno, EISDIR);
	snprintf(missing, sizeof(missing), "%s/does-not-exist", tmpdir);
	errno = 0;
	assert_null(read_file(missing, 100, NULL));
	assert_int_equal(errno, ENOENT);
}

static void
test_rstrip(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "abc", "abc" },
		{ "abc\n", "abc" },
		{ "abc\r\n", "abc" },
		{ "abc \t \n\n", "abc" },
		{ "a b  c  ", "a b  c" },
		{ "  lead", "  lead" },
		{ "", "" },
		{ " \t\r\n", "" },
	};
	char buf[64];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		strcpy(buf, cases[i].in);
		assert_ptr_equal(rstrip(buf), buf);
		assert_string_equal(buf, cases[i].want);
	}
}

static void
test_ms_until(void **state)
{
	(void)state;
	assert_int_equal(ms_until(1000, 2000), 0);
	assert_int_equal(ms_until(2000, 2000), 0);
	assert_int_equal(ms_until(2001, 2000), 1);
	assert_int_equal(ms_until(7000, 2000), 5000);
	assert_int_equal(ms_until((uint64_t)INT32_MAX + 5, 5), INT32_MAX);
	assert_int_equal(ms_until(UINT64_MAX, 0), INT32_MAX);
	assert_int_equal(ms_until(0, UINT64_MAX), 0);
}

static void
test_rng_range_bounds(void **state)
{
	static const struct {
		uint64_t lo, hi;
	} ranges[] = {
		{ 0, 1 },
		{ 5, 9 },
		{ 100, 200 },
		{ 1000, 1000000 },
		{ 0, UINT64_MAX },
		{ UINT64_MAX - 3, UINT64_MAX },
	};
	uint64_t v, min, max;
	size_t i;
	int n;

	(void)state;
	rng_seed(42);
	for (i = 0; i < nitems(ranges); i++) {
		min = UINT64_MAX;
		max = 0;
		for (n = 0; n < 10000; n++) {
			v = rng_range(ranges[i].lo, ranges[i].hi);
			if (v < ranges[i].lo || v > ranges[i].hi)
				fail_msg("rng_range(%llu, %llu) = %llu",
				    (unsigned long long)ranges[i].lo,
				    (unsigned long long)ranges[i].hi,
				    (unsigned long long)v);
			min = v < min ? v : min;
			max = v > max ? v : max;
		}
		/* small ranges: both ends are drawn */
		if (ranges[i].hi - ranges[i].lo < 100) {
			assert_int_equal(min, ranges[i].lo);
			assert_int_equal(max, ranges[i].hi);
		}
	}
	/* an empty or inverted range gives lo */
	assert_int_equal(rng_range(7, 7), 7);
	assert_int_equal(rng_range(9, 3), 9);
}

/* Every value of a small range comes up about equally often. */
static void
test_rng_range_uniform(void **state)
{
	unsigned int counts[10] = { 0 };
	size_t i;
	int n;

	(void)state;
	rng_seed(2024);
	for (n = 0; n < 100000; n++)
		counts[rng_range(10, 19) - 10]++;
	for (i = 0; i < nitems(counts); i++)
		assert_in_range(counts[i], 9000, 11000);
}

static void
test_rng_seed_zero(void **state)
{
	uint64_t a, b;

	(void)state;
	/* seed 0 would lock xorshift at 0 forever */
	rng_seed(0);
	a = rng_next();
	b = rng_next();
	assert_true(a != 0 || b != 0);
	assert_true(a != b);
}

static void
test_strlcpy(void **state)
{
	char dst[6];

	(void)state;
	assert_int_equal(strlcpy_rp(dst, "abc", sizeof(dst)), 3);
	assert_string_equal(dst, "abc");
	assert_int_equal(strlcpy_rp(dst, "abcdefghij", sizeof(dst)), 10);
	assert_string_equal(dst, "abcde");
	dst[0] = 'q';
	assert_int_equal(strlcpy_rp(dst, "xyz", 0), 3);
	assert_int_equal(dst[0], 'q');
	assert_int_equal(strlcpy_rp(dst, "xyz", 1), 3);
	assert_string_equal(dst, "");
}

static void
test_xasprintf_and_clocks(void **state)
{
	uint64_t a, b;
	char *s;

	(void)state;
	s = xasprintf("%s-%03d", "pool", 7);
	assert_string_equal(s, "pool-007");
	free(s);
	a = now_ms();
	b = now_ms();
	assert_true(b >= a);
	assert_true(now_us() / 1000 >= a);
	/* the wall clock is after 2020-01-01 */
	assert_true(wall_ms() > 1577836800000ULL);
}

/* Regressions: cases that once failed. */

/* read_file() promises "at most max bytes": a file of exactly max bytes
 * is read, though the buffer is full before EOF is seen. */
static void
test_exactly_max(void **state)
{
	char tmp[] = "/tmp/rp-util-max-XXXXXX", data[4096];
	size_t len = 0;
	char *s;
	int fd;

	(void)state;
	memset(data, 'x', sizeof(data));
	fd = mkstemp(tmp);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, sizeof(data)), sizeof(data));
	close(fd);
	errno = 0;
	s = read_file(tmp, sizeof(data), &len);
	unlink(tmp);
	if (s == NULL)
		fail_msg("file of exactly max (%zu) bytes refused: errno %d",
		    sizeof(data), errno);
	assert_int_equal(len, sizeof(data));
	free(s);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_file_whole),
		cmocka_unit_test(test_read_file_empty),
		cmocka_unit_test(test_read_file_procfs),
		cmocka_unit_test(test_read_file_too_big),
		cmocka_unit_test(test_read_file_too_big_unknown_size),
		cmocka_unit_test(test_read_file_errors),
		cmocka_unit_test(test_rstrip),
		cmocka_unit_test(test_ms_until),
		cmocka_unit_test(test_rng_range_bounds),
		cmocka_unit_test(test_rng_range_uniform),
		cmocka_unit_test(test_rng_seed_zero),
		cmocka_unit_test(test_strlcpy),
		cmocka_unit_test(test_xasprintf_and_clocks),
		cmocka_unit_test(test_exactly_max),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
