#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"
#include "yaml2json.h"

/* "v: <src>" must give {"v": <json>}, with the same JSON type. */
static const struct {
	const char *src;
	const char *json;
} typing[] = {
	/* null */
	{ "null", "null" },
	{ "Null", "null" },
	{ "NULL", "null" },
	{ "~", "null" },
	{ "", "null" },
	{ "nULL", "\"nULL\"" },
	{ "\"null\"", "\"null\"" },
	{ "'~'", "\"~\"" },
	{ "\"\"", "\"\"" },
	/* bool: the core schema's six spellings, and nothing else */
	{ "true", "true" },
	{ "True", "true" },
	{ "TRUE", "true" },
	{ "false", "false" },
	{ "False", "false" },
	{ "FALSE", "false" },
	{ "tRUE", "\"tRUE\"" },
	{ "yes", "\"yes\"" },
	{ "no", "\"no\"" },
	{ "on", "\"on\"" },
	{ "off", "\"off\"" },
	{ "Yes", "\"Yes\"" },
	{ "OFF", "\"OFF\"" },
	{ "y", "\"y\"" },
	{ "n", "\"n\"" },
	{ "'true'", "\"true\"" },
	/* int */
	{ "0", "0" },
	{ "-0", "0" },
	{ "12", "12" },
	{ "+12", "12" },
	{ "-12", "-12" },
	{ "012", "12" },
	{ "0o17", "15" },
	{ "0x1F", "31" },
	{ "0xff", "255" },
	{ "9223372036854775807", "9223372036854775807" },
	{ "-9223372036854775808", "-9223372036854775808" },
	{ "0x7FFFFFFFFFFFFFFF", "9223372036854775807" },
	{ "0o777777777777777777777", "9223372036854775807" },
	{ "0o8", "\"0o8\"" },
	{ "0x", "\"0x\"" },
	{ "0xg", "\"0xg\"" },
	{ "+0x10", "\"+0x10\"" },
	{ "-0o7", "\"-0o7\"" },
	{ "1_000", "\"1_000\"" },
	{ "0b101", "\"0b101\"" },
	{ "99999999999999999999x", "\"99999999999999999999x\"" },
	{ "12:30", "\"12:30\"" },
	{ "\"12\"", "\"12\"" },
	{ "'1'", "\"1\"" },
	/* float */
	{ "1.5", "1.5" },
	{ "-1.5", "-1.5" },
	{ "+1.5e+2", "150.0" },
	{ ".5", "0.5" },
	{ "-.5", "-0.5" },
	{ "1.", "1.0" },
	{ "1e3", "1000.0" },
	{ "1E-3", "0.001" },
	{ "6.02e23", "6.02e23" },
	{ "0.0", "0.0" },
	{ "1e-400", "0.0" },
	{ "1.2.3", "\"1.2.3\"" },
	{ "1e", "\"1e\"" },
	{ "e3", "\"e3\"" },
	{ ".", "\".\"" },
	{ "-.nan", "\"-.nan\"" },
	{ ".infinity", "\".infinity\"" },
	{ "\"1.5\"", "\"1.5\"" },
	{ "\"1e3\"", "\"1e3\"" },
	/* strings */
	{ "2Gi", "\"2Gi\"" },
	{ "\"2Gi\"", "\"2Gi\"" },
	{ "virtio", "\"virtio\"" },
	{ "2001-12-14", "\"2001-12-14\"" },
	{ "quay.io/containerdisks/ubuntu:22.04",
	    "\"quay.io/containerdisks/ubuntu:22.04\"" },
	{ "hello world", "\"hello world\"" },
	{ "'it''s'", "\"it's\"" },
	{ "\"tab\\there\\u00e9\"", "\"tab\\there\\u00e9\"" },
	{ "|\n  line1\n  line2\n", "\"line1\\nline2\\n\"" },
	{ "|-\n  12\n", "\"12\"" },
	{ ">\n  folded\n  text\n", "\"folded text\\n\"" },
	{ ">-\n  true\n", "\"true\"" },
	/* tags */
	{ "!!str 1", "\"1\"" },
	{ "!!str true", "\"true\"" },
	{ "!!str", "\"\"" },
	{ "! 12", "\"12\"" },
	{ "!!int \"12\"", "12" },
	{ "!!int 0x10", "16" },
	{ "!!float 1", "1.0" },
	{ "!!float \"2.5\"", "2.5" },
	{ "!!bool \"true\"", "true" },
	{ "!!bool False", "false" },
	{ "!!null \"\"", "null" },
	{ "!!null ~", "null" },
	{ "!!map {a: 1}", "{\"a\": 1}" },
	{ "!!seq [1, \"1\"]", "[1, \"1\"]" },
	{ "!<tag:yaml.org,2002:int> 7", "7" },
	{ "! [a]", "[\"a\"]" },
	/* collections */
	{ "[]", "[]" },
	{ "{}", "{}" },
	{ "[1, 1.0, \"1\", true, null, yes]",
	    "[1, 1.0, \"1\", true, null, \"yes\"]" },
	{ "{b: 1, a: [x, {c: ~}]}",
	    "{\"b\": 1, \"a\": [\"x\", {\"c\": null}]}" },
	{ "{1: a, true: b, null: c, \"<<\": d}",
	    "{\"1\": \"a\", \"true\": \"b\", \"null\": \"c\", \"<<\": "
	    "\"d\"}" },
};

/* An error: where, under which key path, and a part of the message. */
static const struct {
	const char *yaml;
	int line;
	int col;
	const char *path;
	const char *msg;
} errors[] = {
	{ "v: 9223372036854775808\n", 1, 4, "v", "does not fit in 64 bits" },
	{ "v: -9223372036854775809\n", 1, 4, "v", "does not fit in 64 bits" },
	{ "v: 0x8000000000000000\n", 1, 4, "v", "does not fit in 64 bits" },
	{ "v: .inf\n", 1, 4, "v", "infinity and NaN" },
	{ "v: -.Inf\n", 1, 4, "v", "infinity and NaN" },
	{ "v: +.INF\n", 1, 4, "v", "infinity and NaN" },
	{ "v: .nan\n", 1, 4, "v", "infinity and NaN" },
	{ "v: .NaN\n", 1, 4, "v", "infinity and NaN" },
	{ "v: 1e400\n", 1, 4, "v", "out of range" },
	{ "v: !!int 1.5\n", 1, 4, "v", "!!int value is not an integer" },
	{ "v: !!int 99999999999999999999\n", 1, 4, "v",
	    "!!int value does not fit in 64 bits" },
	{ "v: !!float abc\n", 1, 4, "v", "!!float value is not a number" },
	{ "v: !!float .inf\n", 1, 4, "v", "infinity or NaN" },
	{ "v: !!bool yes\n", 1, 4, "v", "!!bool value is not a boolean" },
	{ "v: !!null x\n", 1, 4, "v", "!!null value is not a null" },
	{ "v: !!map [1]\n", 1, 4, "v", "tag !!map on a sequence" },
	{ "v: !!seq {a: 1}\n", 1, 4, "v", "tag !!seq on a mapping" },
	{ "v: !!seq 1\n", 1, 4, "v", "tag !!seq on a scalar" },
	{ "v: !foo x\n", 1, 4, "v", "unsupported tag !foo" },
	{ "v: !!binary aGk=\n", 1, 4, "v", "unsupported tag !!binary" },
	{ "v: !!timestamp 2001-12-14\n", 1, 4, "v",
	    "unsupported tag !!timestamp" },
	{ "v: !!set {a, b}\n", 1, 4, "v", "unsupported tag !!set" },
	{ "v: !!omap [a: 1]\n", 1, 4, "v", "unsupported tag !!omap" },
	{ "a:\n  b:\n    - x\n    - !!int y\n", 4, 7, "a.b[1]",
	    "!!int value is not an integer" },
	{ "\"my-org/x\":\n  size: .nan\n", 2, 9, "\"my-org/x\".size",
	    "infinity and NaN" },
	{ "a: 1\nb: 2\na: 3\n", 3, 1, "", "duplicate key \"a\"" },
	{ "x:\n  a: 1\n  \"a\": 2\n", 3, 3, "x", "duplicate key \"a\"" },
	{ "{a: 1, a: 1}\n", 1, 8, "", "duplicate key \"a\"" },
	{ "base: &b {x: 1}\nm:\n  <<: *b\n", 3, 3, "m",
	    "merge keys are not supported" },
	{ "m:\n  !!merge <<: {x: 1}\n", 2, 3, "m",
	    "merge keys are not supported" },
	{ "? [a]\n: 1\n", 1, 3, "", "a mapping key must be a scalar" },
	{ "{{a: 1}: 2}\n", 1, 2, "", "a mapping key must be a scalar" },
	{ "a: &k [x]\n*k : 1\n", 2, 1, "", "a mapping key must be a scalar" },
	{ "!!int 1: a\n", 1, 1, "", "tag !!int on a mapping key" },
	{ "\"a\\0b\": 1\n", 1, 1, "", "NUL" },
	{ "a: *nope\n", 1, 4, "", "alias *nope refers to no anchor" },
	{ "a: &a [1, *a]\n", 1, 11, "", "refers to a node that contains it" },
	{ "a: 1\n---\nb: 2\n", 2, 1, "", "multiple YAML documents" },
	{ "---\na: 1\n...\n---\nb: 2\n", 4, 1, "", "multiple YAML documents" },
	{ "", 1, 1, "", "no YAML document" },
	{ "# only a comment\n\n", 1, 1, "", "no YAML document" },
	/* libyaml's own errors, with its positions */
	{ "a:\n\tb: 1\n", 2, 1, "",
	    "found character that cannot start any token (while scanning "
	    "for the next token)" },
	{ "a: 1\n b: 2\n", 2, 3, "",
	    "mapping values are not allowed in this context" },
	{ "a:\n  - x\n - y\n", 3, 2, "", "did not find expected key" },
	{ "a: [1, 2\n", 2, 1, "",
	    "did not find expected ',' or ']' (while parsing a flow "
	    "sequence started at 1:4)" },
	{ "a: \"unterminated\n", 2, 1, "", "found unexpected end of stream" },
	{ "a: 1\nb: \xff\n", 2, 4, "", "invalid leading UTF-8 octet" },
	{ "a: 1\n\xc3\xa9: \x01\n", 2, 4, "",
	    "control characters are not allowed" },
	{ "a: *\n", 1, 5, "", "did not find expected alphabetic or numeric" },
};

static json_t *
parse_ok(const char *yaml, struct y2j_doc **docp)
{
	struct y2j_error err;
	struct y2j_doc *doc;

	if ((doc = y2j_parse(yaml, strlen(yaml), &err)) == NULL)
		fail_msg("%s: %d:%d: %s: %s", yaml, err.ye_mark.ym_line,
		    err.ye_mark.ym_col, err.ye_path, err.ye_msg);
	*docp = doc;
	return y2j_doc_root(doc);
}

static void
test_typing(void **state)
{
	struct y2j_doc *doc;
	json_error_t jerr;
	json_t *want, *got;
	char *yaml, *s;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(typing); i++) {
		yaml = xasprintf("v: %s\n", typing[i].src);
		got = json_object_get(parse_ok(yaml, &doc), "v");
		want = json_loads(typing[i].json, JSON_DECODE_ANY, &jerr);
		assert_non_null(want);
		if (got == NULL || !json_equal(got, want)) {
			s = got == NULL
			    ? NULL
			    : json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
			fail_msg("v: %s: got %s, want %s", typing[i].src,
			    s == NULL ? "nothing" : s, typing[i].json);
		}
		/* json_equal orders nothing: check member order too. */
		if (json_is_object(want)) {
			char *a = json_dumps(got, JSON_COMPACT);
			char *b = json_dumps(want, JSON_COMPACT);

			assert_string_equal(a, b);
			free(a);
			free(b);
		}
		json_decref(want);
		y2j_doc_free(doc);
		free(yaml);
	}
}

static void
test_errors(void **state)
{
	struct y2j_error err;
	struct y2j_doc *doc;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(errors); i++) {
		memset(&err, 'x', sizeof(err));
		doc = y2j_parse(errors[i].yaml, strlen(errors[i].yaml), &err);
		if (doc != NULL)
			fail_msg("%s: accepted", errors[i].yaml);
		if (err.ye_mark.ym_line != errors[i].line ||
		    err.ye_mark.ym_col != errors[i].col ||
		    strcmp(err.ye_path, errors[i].path) != 0 ||
		    strstr(err.ye_msg, errors[i].msg) == NULL)
			fail_msg("%s: got %d:%d: [%s] %s; want %d:%d: [%s] %s",
			    errors[i].yaml, err.ye_mark.ym_line,
			    err.ye_mark.ym_col, err.ye_path, err.ye_msg,
			    errors[i].line, errors[i].col, errors[i].path,
			    errors[i].msg);
	}
}

/* A value the parser rejects may be a secret: it is never quoted back. */
static void
test_errors_do_not_echo_values(void **state)
{
	static const char *const yaml[] = {
		"token: 123456789012345678901234567890\n",
		"token: !!int s3cr3tvalue\n",
		"token: !!bool s3cr3tvalue\n",
		"token: !!float s3cr3tvalue\n",
	};
	struct y2j_error err;
	size_t i;

	(void)state;
	for (i = 0; i < nitems(yaml); i++) {
		assert_null(y2j_parse(yaml[i], strlen(yaml[i]), &err));
		assert_null(strstr(err.ye_msg, "1234567890"));
		assert_null(strstr(err.ye_msg, "s3cr3t"));
	}
}

static void
test_strings_keep_nul(void **state)
{
	struct y2j_doc *doc;
	json_t *v;

	(void)state;
	v = json_object_get(parse_ok("v: \"a\\0b\"\n", &doc), "v");
	assert_true(json_is_string(v));
	assert_int_equal(json_string_length(v), 3);
	assert_memory_equal(json_string_value(v), "a\0b", 3);
	y2j_doc_free(doc);
}

static void
test_document_forms(void **state)
{
	struct y2j_doc *doc;
	json_t *root;

	(void)state;
	/* Explicit markers around one document. */
	root = parse_ok("%YAML 1.2\n---\na: 1\n...\n", &doc);
	assert_int_equal(json_integer_value(json_object_get(root, "a")), 1);
	y2j_doc_free(doc);
	/* An explicit but empty document is null. */
	root = parse_ok("---\n", &doc);
	assert_true(json_is_null(root));
	y2j_doc_free(doc);
	/* A bare scalar document. */
	root = parse_ok("42\n", &doc);
	assert_int_equal(json_integer_value(root), 42);
	y2j_doc_free(doc);
	/* CRLF line ends and a UTF-8 byte order mark. */
	root = parse_ok("\xef\xbb\xbf"
	                "a: 1\r\nb:\r\n  - x\r\n",
	    &doc);
	assert_int_equal(json_integer_value(json_object_get(root, "a")), 1);
	assert_string_equal(
	    json_string_value(json_array_get(json_object_get(root, "b"), 0)),
	    "x");
	y2j_doc_free(doc);
}

static void
test_nested_order(void **state)
{
	static const char yaml[] = "z: 1\n"
	                           "a:\n"
	                           "  - name: disk\n"
	                           "    disk: {bus: virtio}\n"
	                           "  - [1, [2, {k: v}]]\n"
	                           "m: {}\n";
	struct y2j_doc *doc;
	char *s;

	(void)state;
	s = json_dumps(parse_ok(yaml, &doc), JSON_COMPACT);
	assert_string_equal(s,
	    "{\"z\":1,\"a\":[{\"name\":\"disk\",\"disk\":{"
	    "\"bus\":\"virtio\"}},"
	    "[1,[2,{\"k\":\"v\"}]]],\"m\":{}}");
	free(s);
	y2j_doc_free(doc);
}

static void
test_aliases(void **state)
{
	static const char yaml[] = "base: &b\n"
	                           "  memory: 2Gi\n"
	                           "  disks: [&d {name: disk}]\n"
	                           "copy: *b\n"
	                           "n: &n 5\n"
	                           "m: *n\n"
	                           "disk: *d\n"
	                           "k: &key name\n"
	                           "*key : value\n"
	                           "r: &r first\n"
	                           "s: &r second\n"
	                           "t: *r\n";
	struct y2j_doc *doc;
	json_t *root, *base, *copy;

	(void)state;
	root = parse_ok(yaml, &doc);
	base = json_object_get(root, "base");
	copy = json_object_get(root, "copy");
	assert_true(json_equal(base, copy));
	/* A deep copy, not a shared reference. */
	assert_ptr_not_equal(base, copy);
	assert_ptr_not_equal(
	    json_object_get(base, "disks"), json_object_get(copy, "disks"));
	json_object_set_new(json_array_get(json_object_get(copy, "disks"), 0),
	    "name", json_string("changed"));
	assert_string_equal(
	    json_string_value(json_object_get(
	        json_array_get(json_object_get(base, "disks"), 0), "name")),
	    "disk");
	assert_int_equal(json_integer_value(json_object_get(root, "m")), 5);
	assert_string_equal(json_string_value(json_object_get(
	                        json_object_get(root, "disk"), "name")),
	    "disk");
	/* An alias may be a key when it names a scalar. */
	assert_string_equal(
	    json_string_value(json_object_get(root, "name")), "value");
	/* A redefined anchor: aliases after it see the new node. */
	assert_string_equal(
	    json_string_value(json_object_get(root, "t")), "second");
	y2j_doc_free(doc);
}

/* The classic "billion laughs": refused before anything is expanded. */
static void
test_alias_bomb(void **state)
{
	static const char yaml[] =
	    "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\","
	    "\"lol\",\"lol\"]\n"
	    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
	    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
	    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
	    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
	    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
	    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
	    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
	    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
	struct y2j_error err;

	(void)state;
	assert_null(y2j_parse(yaml, strlen(yaml), &err));
	assert_non_null(strstr(err.ye_msg,
	    "alias expansion makes the "
	    "document larger than 250000 nodes"));
	/* 9^5 lols plus the sequences fit; the sixth level's third *e
	 * crosses the limit. */
	assert_int_equal(err.ye_mark.ym_line, 6);
	assert_int_equal(err.ye_mark.ym_col, 14);
}

/* Aliases of a long scalar cost one node each but copy its text: 1 MiB of
 * configuration expanded to 2 GiB and --check-config took 11 s; a few MiB
 * more and the supervisor was killed for memory (found by fuzzing).  The
 * text is counted like the nodes, before anything is copied. */
static void
test_alias_text_bomb(void **state)
{
	struct y2j_error err;
	struct y2j_doc *doc;
	size_t i, k, n, cap;
	char *s;

	(void)state;
	/* A 64 KiB scalar: 255 copies fit in 16 MiB, 256 do not. */
	for (k = 255; k <= 256; k++) {
		cap = 70000 + 4 * k;
		s = xmalloc(cap);
		n = (size_t)snprintf(s, cap, "x: &x \"");
		memset(s + n, 'a', 65536 - 16);
		n += 65536 - 16;
		n += (size_t)snprintf(s + n, cap - n, "\"\ny: [");
		for (i = 0; i < k; i++)
			n += (size_t)snprintf(
			    s + n, cap - n, "%s*x", i ? "," : "");
		snprintf(s + n, cap - n, "]\n");
		doc = y2j_parse(s, strlen(s), &err);
		if (k == 255) {
			if (doc == NULL)
				fail_msg("%zu copies: %s", k, err.ye_msg);
			y2j_doc_free(doc);
		} else {
			assert_null(doc);
			assert_non_null(strstr(err.ye_msg,
			    "alias expansion makes the document's text larger "
			    "than 16777216 bytes"));
			assert_int_equal(err.ye_mark.ym_line, 2);
			assert_int_equal(
			    err.ye_mark.ym_col, (int)(5 + 3 * (k - 1)));
		}
		free(s);
	}
}

/*
 * As many anchors and aliases as the node limit allows, every alias naming
 * the first anchor.  Aliases were resolved by a search from the newest
 * anchor back, so this document took minutes (and a 3.4 MiB configuration
 * like it over a minute of CPU in --check-config); it is one hash lookup
 * per alias now.  Nothing here is timed: before, it ran into CTest's
 * timeout.
 */
static void
test_many_anchors(void **state)
{
	size_t i, n = (Y2J_NODES_MAX - 6) / 2, cap = 24 * n + 64, len = 0;
	struct y2j_error err;
	struct y2j_doc *doc;
	json_t *y;
	char *s;

	(void)state;
	s = xmalloc(cap);
	len += (size_t)snprintf(s + len, cap - len, "x:\n");
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(
		    s + len, cap - len, "- &a%zu %zu\n", i, i);
	len += (size_t)snprintf(s + len, cap - len, "y:\n");
	for (i = 0; i + 1 < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "- *a0\n");
	len += (size_t)snprintf(s + len, cap - len, "- *a%zu\n", n - 1);
	doc = y2j_parse(s, len, &err);
	if (doc == NULL)
		fail_msg("%zu anchors: %s", n, err.ye_msg);
	y = json_object_get(y2j_doc_root(doc), "y");
	assert_int_equal(json_array_size(y), n);
	assert_int_equal(json_integer_value(json_array_get(y, 0)), 0);
	assert_int_equal(json_integer_value(json_array_get(y, n / 2)), 0);
	assert_int_equal(
	    json_integer_value(json_array_get(y, n - 1)), (json_int_t)n - 1);
	y2j_doc_free(doc);
	free(s);
}

/*
 * The limit is exact: x is a sequence of 99 scalars (100 nodes).  The
 * document has the root, two keys, x, y's sequence and k copies of x:
 * 104 + 100k nodes.
 */
static char *
limit_doc(size_t k)
{
	size_t i, cap = 512 + 4 * k, n = 0;
	char *s = xmalloc(cap);

	n += (size_t)snprintf(s + n, cap - n, "x: &x [0");
	for (i = 1; i < 99; i++)
		n += (size_t)snprintf(s + n, cap - n, ",0");
	n += (size_t)snprintf(s + n, cap - n, "]\ny: [");
	for (i = 0; i < k; i++)
		n += (size_t)snprintf(s + n, cap - n, "%s*x", i ? "," : "");
	snprintf(s + n, cap - n, "]\n");
	return s;
}

static void
test_node_limit_exact(void **state)
{
	struct y2j_error err;
	struct y2j_doc *doc;
	size_t k = (Y2J_NODES_MAX - 104) / 100;
	char *s;

	(void)state;
	s = limit_doc(k);
	doc = y2j_parse(s, strlen(s), &err);
	if (doc == NULL)
		fail_msg("%zu copies: %s", k, err.ye_msg);
	assert_int_equal(
	    json_array_size(json_object_get(y2j_doc_root(doc), "y")), k);
	y2j_doc_free(doc);
	free(s);
	s = limit_doc(k + 1);
	assert_null(y2j_parse(s, strlen(s), &err));
	assert_int_equal(err.ye_mark.ym_line, 2);
	assert_int_equal(err.ye_mark.ym_col, (int)(5 + 3 * k));
	free(s);
}

static char *
nested(int depth, const char *inner)
{
	size_t n = strlen(inner) + 2 * (size_t)depth + 1;
	char *s = xmalloc(n);

	memset(s, '[', (size_t)depth);
	strlcpy_rp(s + depth, inner, n - (size_t)depth);
	memset(s + depth + strlen(inner), ']', (size_t)depth);
	s[n - 1] = '\0';
	return s;
}

static void
test_depth_limit(void **state)
{
	struct y2j_error err;
	struct y2j_doc *doc;
	char *s, *a, *b;

	(void)state;
	s = nested(Y2J_DEPTH_MAX, "1");
	assert_non_null(doc = y2j_parse(s, strlen(s), &err));
	y2j_doc_free(doc);
	free(s);
	s = nested(Y2J_DEPTH_MAX + 1, "1");
	assert_null(y2j_parse(s, strlen(s), &err));
	assert_non_null(strstr(err.ye_msg, "nested deeper than 100 levels"));
	assert_int_equal(err.ye_mark.ym_col, Y2J_DEPTH_MAX + 1);
	free(s);
	/* Depth after alias expansion counts: 1 + 45 + 60 > 100. */
	a = nested(60, "1");
	b = nested(45, "*a");
	s = xasprintf("a: &a %s\nb: %s\n", a, b);
	assert_null(y2j_parse(s, strlen(s), &err));
	assert_non_null(strstr(err.ye_msg, "alias expansion nests deeper"));
	assert_int_equal(err.ye_mark.ym_line, 2);
	assert_int_equal(err.ye_mark.ym_col, 4 + 45);
	free(a);
	free(b);
	free(s);
}

static void
assert_mark(struct y2j_mark m, int line, int col)
{
	if (m.ym_line != line || m.ym_col != col)
		fail_msg(
		    "mark %d:%d, want %d:%d", m.ym_line, m.ym_col, line, col);
}

static void
test_marks(void **state)
{
	static const char yaml[] =
	    "resourceClass:\n"                                  /* 1 */
	    "  \"my-org/x\":\n"                                 /* 2 */
	    "    token: abc\n"                                  /* 3 */
	    "    spec: &s\n"                                    /* 4 */
	    "      volumes:\n"                                  /* 5 */
	    "        - name: disk\n"                            /* 6 */
	    "        - {name: ci, \xc3\xa9t\xc3\xa9: [1, x]}\n" /* 7 */
	    "  \"my-org/y\": {spec: *s}\n";                     /* 8 */
	struct y2j_doc *doc;
	json_t *root, *rc, *x, *spec, *vols, *v1, *y, *yspec;

	(void)state;
	root = parse_ok(yaml, &doc);
	rc = json_object_get(root, "resourceClass");
	x = json_object_get(rc, "my-org/x");
	spec = json_object_get(x, "spec");
	vols = json_object_get(spec, "volumes");
	v1 = json_array_get(vols, 1);
	assert_mark(y2j_mark_node(doc, NULL), 1, 1);
	assert_mark(y2j_mark_node(doc, root), 1, 1);
	assert_mark(y2j_mark_key(doc, root, "resourceClass"), 1, 1);
	assert_mark(y2j_mark_member(doc, root, "resourceClass"), 2, 3);
	assert_mark(y2j_mark_key(doc, rc, "my-org/x"), 2, 3);
	assert_mark(y2j_mark_node(doc, x), 3, 5);
	assert_mark(y2j_mark_key(doc, x, "token"), 3, 5);
	assert_mark(y2j_mark_member(doc, x, "token"), 3, 12);
	assert_mark(y2j_mark_member(doc, x, "spec"), 4, 11);
	assert_mark(y2j_mark_item(doc, vols, 0), 6, 11);
	assert_mark(y2j_mark_item(doc, vols, 1), 7, 11);
	assert_mark(y2j_mark_node(doc, v1), 7, 11);
	assert_mark(y2j_mark_key(doc, v1, "name"), 7, 12);
	/* Columns count characters: "été" is three. */
	assert_mark(y2j_mark_member(doc, v1, "\xc3\xa9t\xc3\xa9"), 7, 27);
	assert_mark(
	    y2j_mark_item(doc, json_object_get(v1, "\xc3\xa9t\xc3\xa9"), 1), 7,
	    31);
	/* An alias's value is at the alias; inside it, at the anchor. */
	y = json_object_get(rc, "my-org/y");
	yspec = json_object_get(y, "spec");
	assert_mark(y2j_mark_key(doc, rc, "my-org/y"), 8, 3);
	assert_mark(y2j_mark_member(doc, y, "spec"), 8, 22);
	assert_mark(y2j_mark_node(doc, yspec), 8, 22);
	assert_mark(
	    y2j_mark_item(doc, json_object_get(yspec, "volumes"), 1), 7, 11);
	/* Not part of the tree, or not there: unknown. */
	assert_mark(y2j_mark_key(doc, x, "nope"), 0, 0);
	assert_mark(y2j_mark_item(doc, vols, 2), 0, 0);
	assert_mark(y2j_mark_item(doc, x, 0), 0, 0);
	assert_mark(y2j_mark_key(doc, vols, "name"), 0, 0);
	y2j_doc_free(doc);
}

/* Values taken out of the document outlive it. */
static void
test_reference_outlives_doc(void **state)
{
	struct y2j_doc *doc;
	json_t *spec;

	(void)state;
	spec = json_incref(
	    json_object_get(parse_ok("spec: {a: [1]}\n", &doc), "spec"));
	y2j_doc_free(doc);
	assert_int_equal(
	    json_integer_value(json_array_get(json_object_get(spec, "a"), 0)),
	    1);
	json_decref(spec);
}

static void
test_paths(void **state)
{
	char p[Y2J_PATH_MAX], q[64];

	(void)state;
	p[0] = '\0';
	y2j_path_key(p, sizeof(p), "resourceClass");
	y2j_path_key(p, sizeof(p), "my-org/x");
	y2j_path_key(p, sizeof(p), "spec");
	y2j_path_key(p, sizeof(p), "volumes");
	y2j_path_index(p, sizeof(p), 3);
	y2j_path_key(p, sizeof(p), "_a1");
	assert_string_equal(
	    p, "resourceClass.\"my-org/x\".spec.volumes[3]._a1");
	p[0] = '\0';
	y2j_path_key(p, sizeof(p), "");
	y2j_path_key(p, sizeof(p), "1a");
	y2j_path_key(p, sizeof(p), "a b");
	assert_string_equal(p, "\"\".\"1a\".\"a b\"");
	y2j_quote(q, sizeof(q), "a\"b\\c\nd\te\x01\x7f\xc3\xa9");
	assert_string_equal(q, "\"a\\\"b\\\\c\\nd\\te\\x01\\x7f\xc3\xa9\"");
	/* Truncation keeps a terminated string. */
	y2j_quote(q, 5, "abcdef");
	assert_string_equal(q, "\"abc");
	strlcpy_rp(p, "abcdefgh", 10);
	y2j_path_key(p, 10, "xyz");
	assert_string_equal(p, "abcdefgh.");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_typing),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_errors_do_not_echo_values),
		cmocka_unit_test(test_strings_keep_nul),
		cmocka_unit_test(test_document_forms),
		cmocka_unit_test(test_nested_order),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_alias_bomb),
		cmocka_unit_test(test_alias_text_bomb),
		cmocka_unit_test(test_many_anchors),
		cmocka_unit_test(test_node_limit_exact),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_marks),
		cmocka_unit_test(test_reference_outlives_doc),
		cmocka_unit_test(test_paths),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
