#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "poolname.h"
#include "util.h"

#define NRANDOM 100000

static regex_t dns_label;

static int
group_setup(void **state)
{
	(void)state;
	return regcomp(&dns_label, "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
	    REG_EXTENDED | REG_NOSUB);
}

static int
group_teardown(void **state)
{
	(void)state;
	regfree(&dns_label);
	return 0;
}

static void
assert_valid_pool(const char *cls, const char *pool)
{
	if (strlen(pool) > POOL_NAME_MAX ||
	    regexec(&dns_label, pool, 0, NULL, 0) != 0)
		fail_msg("\"%s\" → \"%s\": not a DNS-1123 label of at most "
		         "%d characters",
		    cls, pool, POOL_NAME_MAX);
}

/* Hash suffixes are the first 4 bytes of SHA-256 of the class name, as
 * `printf %s CLASS | sha256sum` prints them. */
static const struct {
	const char *cls, *pool;
} table[] = {
	/* reversible: namespace--name */
	{ "my-org/my-runner", "my-org--my-runner" },
	{ "a/b", "a--b" },
	{ "0/0", "0--0" },
	{ "my-org/my--runner", "my-org--my--runner" },
	{ "abcdefghij/abcdefghijabcdefghijabcdefgh",
	    "abcdefghij--abcdefghijabcdefghijabcdefgh" },
	/* lossy: sanitised, plus a hash */
	{ "dev-team/custom:arm64", "dev-team-custom-arm64-fc9c614d44" },
	{ "My-Org/My-Runner", "my-org-my-runner-aeee539526" },
	{ "a/B", "a-b-f42815d162" },
	{ "my-org/my-runner:arm64", "my-org-my-runner-arm64-23f2a52873" },
	{ "org/a_b", "org-a-b-b10303fc0a" },
	{ "org/a+b", "org-a-b-c493d383a0" },
	{ "org/a:b", "org-a-b-33e8054fb3" },
	{ "org/a.b", "org-a-b-763fc9317b" },
	{ "my--org/runner", "my-org-runner-85b6895454" },
	{ "org/runner-", "org-runner-6f5093a85f" },
	{ "Org.With.Dots/Name_With_Under+plus:colon",
	    "org-with-dots-name-with-under-ac0d3d50e7" },
	/* too long to keep whole: cut, plus a hash */
	{ "abcdefghij/abcdefghijabcdefghijabcdefghi",
	    "abcdefghij-abcdefghijabcdefgh-08e7ff0f12" },
	{ "my-organisation/a-very-long-runner-class-name",
	    "my-organisation-a-very-long-r-8eac8806c3" },
};

static void
test_golden_table(void **state)
{
	char out[POOL_NAME_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(table); i++) {
		assert_int_equal(conf_class_name_valid(table[i].cls), 0);
		memset(out, 'Z', sizeof(out));
		pool_name(table[i].cls, out, sizeof(out));
		if (strcmp(out, table[i].pool) != 0)
			fail_msg("\"%s\" → \"%s\", want \"%s\"", table[i].cls,
			    out, table[i].pool);
		assert_valid_pool(table[i].cls, out);
	}
}

/* Names that differ only in case or punctuation are different classes
 * and get different pools. */
static void
test_near_names_differ(void **state)
{
	static const char *const groups[][6] = {
		{ "org/runner", "Org/runner", "org/Runner", "ORG/RUNNER",
		    "org/runneR", NULL },
		{ "org/a-b", "org/a_b", "org/a.b", "org/a:b", "org/a+b",
		    NULL },
		{ "org/a--b", "org/a-_b", "org/a__b", "org/a-b", "org/ab",
		    NULL },
		{ "my-org/x", "my_org/x", "my.org/x", "my:org/x", "my+org/x",
		    NULL },
		{ "a/b-c", "a-b/c", "ab/c", "a/bc", NULL },
	};
	char a[POOL_NAME_MAX + 1], b[POOL_NAME_MAX + 1];
	size_t g, i, j;

	(void)state;
	for (g = 0; g < nitems(groups); g++)
		for (i = 0; groups[g][i] != NULL; i++)
			for (j = 0; j < i; j++) {
				pool_name(groups[g][i], a, sizeof(a));
				pool_name(groups[g][j], b, sizeof(b));
				if (strcmp(a, b) == 0)
					fail_msg("\"%s\" and \"%s\" share "
					         "pool \"%s\"",
					    groups[g][i], groups[g][j], a);
			}
}

/* The same class always gives the same pool (across calls and
 * restarts: no state, no randomness). */
static void
test_stable(void **state)
{
	char a[POOL_NAME_MAX + 1], b[POOL_NAME_MAX + 1];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(table); i++) {
		pool_name(table[i].cls, a, sizeof(a));
		rng_seed(i + 1);
		pool_name(table[i].cls, b, sizeof(b));
		assert_string_equal(a, b);
	}
}

static const char lower_first[] = "abcdefghijklmnopqrstuvwxyz0123456789";
static const char lower_rest[] = "abcdefghijklmnopqrstuvwxyz0123456789-";
static const char any_first[] = "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
static const char any_rest[] = "abcdefghijklmnopqrstuvwxyz"
                               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:+-";

static char
pick(const char *set, size_t len)
{
	return set[rng_range(0, len - 2)]; /* len counts the NUL */
}

/* Writes n random characters of a name part (first one alphanumeric). */
static size_t
gen_part(char *p, size_t n, bool lower)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = i == 0 ? (lower ? pick(lower_first, sizeof(lower_first))
		                       : pick(any_first, sizeof(any_first)))
		              : (lower ? pick(lower_rest, sizeof(lower_rest))
		                       : pick(any_rest, sizeof(any_rest)));
	return n;
}

struct entry {
	char cls[256];
	char pool[POOL_NAME_MAX + 1];
};

static int
by_pool(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int c = strcmp(x->pool, y->pool);

	return c != 0 ? c : strcmp(x->cls, y->cls);
}

/* One valid class name; the mix covers short names that stay readable,
 * names with capitals and punctuation, long names that get cut, and
 * families that differ only near the end or only in punctuation. */
static void
gen_class(char *cls, int kind)
{
	static const char *const prefixes[] = {
		"acme-platform/linux-x86-64-large-ubuntu-2204-",
		"Org.Name/Runner_Class:",
		"dev-team/custom+",
	};
	size_t n = 0, k;

	switch (kind) {
	case 0: /* short, lower case: mostly reversible */
		n += gen_part(cls, (size_t)rng_range(1, 12), true);
		cls[n++] = '/';
		n += gen_part(cls + n, (size_t)rng_range(1, 20), true);
		break;
	case 1: /* any allowed character, any length */
		n += gen_part(cls, (size_t)rng_range(1, 60), false);
		cls[n++] = '/';
		n += gen_part(cls + n, (size_t)rng_range(1, 120), false);
		break;
	case 2: /* shared long prefix, differing after the cut */
		k = (size_t)rng_range(0, nitems(prefixes) - 1);
		n = strlen(prefixes[k]);
		memcpy(cls, prefixes[k], n);
		n += gen_part(cls + n, (size_t)rng_range(1, 6), false);
		break;
	default: /* same letters, punctuation and case vary */
		memcpy(cls, "build", 5);
		for (n = 5, k = 0; k < 6; k++) {
			cls[n++] = "-_.:+"[rng_range(0, 4)];
			cls[n++] = "aA"[rng_range(0, 1)];
			if (k == 2) {
				cls[n++] = '/';
				cls[n++] = 'r';
			}
		}
		break;
	}
	cls[n] = '\0';
}

/* ~100k distinct valid classes: every pool name is a valid label and no
 * two classes share one. */
static void
test_random_no_collisions(void **state)
{
	struct entry *e = xcalloc(NRANDOM, sizeof(*e));
	size_t i, n = 0, dups = 0;

	(void)state;
	rng_seed(20240611);
	for (i = 0; i < NRANDOM; i++) {
		gen_class(e[n].cls, (int)(i % 4));
		if (conf_class_name_valid(e[n].cls) != 0)
			fail_msg(
			    "generated an invalid class \"%s\"", e[n].cls);
		pool_name(e[n].cls, e[n].pool, sizeof(e[n].pool));
		assert_valid_pool(e[n].cls, e[n].pool);
		n++;
	}
	qsort(e, n, sizeof(*e), by_pool);
	for (i = 1; i < n; i++) {
		if (strcmp(e[i].pool, e[i - 1].pool) != 0)
			continue;
		if (strcmp(e[i].cls, e[i - 1].cls) == 0) {
			dups++; /* the generator repeated itself */
			continue;
		}
		fail_msg("\"%s\" and \"%s\" share pool \"%s\"", e[i - 1].cls,
		    e[i].cls, e[i].pool);
	}
	/* the generator did produce ~100k distinct classes */
	assert_true(n - dups > NRANDOM * 9 / 10);
	free(e);
}

/* Regressions: cases that once failed. */

/* Two valid classes sharing their first sanitised characters, which once
 * collided under a 32-bit hash suffix, get distinct pools. */
static void
test_known_collision(void **state)
{
	static const char a[] =
	    "acme-platform/linux-x86-64-large-ubuntu-2204-17001";
	static const char b[] =
	    "acme-platform/linux-x86-64-large-ubuntu-2204-111259";
	char pa[POOL_NAME_MAX + 1], pb[POOL_NAME_MAX + 1];

	(void)state;
	assert_int_equal(conf_class_name_valid(a), 0);
	assert_int_equal(conf_class_name_valid(b), 0);
	pool_name(a, pa, sizeof(pa));
	pool_name(b, pb, sizeof(pb));
	assert_string_not_equal(pa, pb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_table),
		cmocka_unit_test(test_near_names_differ),
		cmocka_unit_test(test_stable),
		cmocka_unit_test(test_random_no_collisions),
		cmocka_unit_test(test_known_collision),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
