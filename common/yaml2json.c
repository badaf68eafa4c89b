/*
 * YAML to JSON in two passes.  The first turns libyaml's events into a
 * tree of nodes with their marks, resolving anchors and counting what the
 * aliases would expand to (so an alias bomb is refused before anything is
 * copied).  The second resolves scalars by the YAML 1.2 core schema and
 * builds jansson values, each alias a deep copy, and records for every
 * object and array the node it came from, which is how positions are found
 * afterwards.
 */
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "util.h"
#include "yaml2json.h"

#define TAG_PREFIX "tag:yaml.org,2002:"
#define UNSUPPORTED                                                           \
	"unsupported tag %s (only !!str, !!int, !!float, "                    \
	"!!bool, !!null, !!map and !!seq)"

enum yn_kind {
	YN_SCALAR,
	YN_SEQ,
	YN_MAP,
	YN_ALIAS,
};

struct ynode {
	enum yn_kind yn_kind;
	struct y2j_mark yn_mark;
	char *yn_tag;  /* NULL: untagged */
	char *yn_text; /* scalars: value, NUL-terminated */
	size_t yn_len;
	int yn_plain;           /* plain (unquoted) scalar */
	struct ynode **yn_kids; /* items; maps: key, value, key, … */
	size_t yn_nkids;
	size_t yn_capkids;
	struct ynode *yn_target; /* aliases: the anchored node */
	size_t yn_weight;        /* nodes, aliases expanded */
	size_t yn_bytes;         /* scalar bytes, aliases expanded */
	int yn_height;           /* nesting levels, aliases expanded */
	int yn_done;             /* end event seen */
};

struct builder {
	const char *b_buf;
	size_t b_len;
	struct ynode *b_root;
	struct ynode *b_stack[Y2J_DEPTH_MAX];
	int b_depth;
	/* Anchor name to the index in b_anchored of the node that has it
	 * now (a name may be given again): one hash lookup per alias. */
	json_t *b_anchors;
	struct ynode **b_anchored;
	size_t b_nanchored;
	size_t b_capanchored;
	size_t b_total; /* nodes so far, aliases expanded */
	size_t b_bytes; /* scalar bytes so far, aliases expanded */
	int b_ndocs;
	struct y2j_error *b_err;
};

struct entry {
	const json_t *e_json;
	const struct ynode *e_node; /* a YN_SEQ or YN_MAP */
	struct y2j_mark e_mark;
};

struct y2j_doc {
	json_t *d_root;
	struct ynode *d_tree;
	struct y2j_mark d_root_mark;
	struct entry *d_entries; /* sorted by e_json once built */
	size_t d_nentries;
	size_t d_capentries;
};

struct conv {
	struct y2j_doc *c_doc;
	struct y2j_error *c_err;
	char c_path[Y2J_PATH_MAX];
};

static void set_err(struct y2j_error *, struct y2j_mark, const char *,
    const char *, ...) __attribute__((format(printf, 4, 5)));
static struct y2j_mark mark_of(const yaml_mark_t *);
static struct y2j_mark mark_at_offset(const char *, size_t, size_t);
static void parser_err(struct builder *, const yaml_parser_t *);
static void tag_name(char *, size_t, const char *);
static void ynode_free(struct ynode *);
static struct ynode *ynode_new(enum yn_kind, const yaml_mark_t *);
static int attach(struct builder *, struct ynode *, const char *);
static int on_event(struct builder *, const yaml_event_t *);
static int build(struct builder *);
static const struct ynode *resolve(const struct ynode *);
static int is_null(const char *);
static int is_bool(const char *, int *);
static uint64_t digit_value(char);
static int parse_int(const char *, json_int_t *);
static int parse_float(const char *, double *);
static json_t *conv_scalar(struct conv *, const struct ynode *);
static json_t *conv_node(struct conv *, const struct ynode *);
static json_t *conv_map(struct conv *, const struct ynode *);
static void record(
    struct conv *, const json_t *, const struct ynode *, struct y2j_mark);
static int entry_cmp(const void *, const void *);
static const struct entry *entry_find(const struct y2j_doc *, const json_t *);
static int is_ident(const char *);
static void append(char *, size_t, const char *);

static void
set_err(struct y2j_error *err, struct y2j_mark mark, const char *path,
    const char *fmt, ...)
{
	va_list ap;

	err->ye_mark = mark;
	strlcpy_rp(
	    err->ye_path, path != NULL ? path : "", sizeof(err->ye_path));
	va_start(ap, fmt);
	vsnprintf(err->ye_msg, sizeof(err->ye_msg), fmt, ap);
	va_end(ap);
}

static struct y2j_mark
mark_of(const yaml_mark_t *m)
{
	struct y2j_mark ym;

	ym.ym_line = m->line >= INT32_MAX ? INT32_MAX : (int)m->line + 1;
	ym.ym_col = m->column >= INT32_MAX ? INT32_MAX : (int)m->column + 1;
	return ym;
}

/* libyaml's reader reports a byte offset only; count lines and UTF-8
 * characters up to it. */
static struct y2j_mark
mark_at_offset(const char *buf, size_t len, size_t off)
{
	struct y2j_mark ym = { 1, 1 };
	size_t i;

	for (i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			ym.ym_line++;
			ym.ym_col = 1;
		} else if (((unsigned char)buf[i] & 0xc0) != 0x80)
			ym.ym_col++;
	}
	return ym;
}

static void
parser_err(struct builder *b, const yaml_parser_t *p)
{
	struct y2j_mark pm, cm;
	const char *problem;

	problem = p->problem != NULL ? p->problem : "invalid YAML";
	switch (p->error) {
	case YAML_MEMORY_ERROR:
		set_err(b->b_err, (struct y2j_mark){ 1, 1 }, NULL,
		    "out of memory");
		return;
	case YAML_READER_ERROR:
		set_err(b->b_err,
		    mark_at_offset(b->b_buf, b->b_len, p->problem_offset),
		    NULL, "%s", problem);
		return;
	default:
		break;
	}
	pm = mark_of(&p->problem_mark);
	if (p->context == NULL) {
		set_err(b->b_err, pm, NULL, "%s", problem);
		return;
	}
	cm = mark_of(&p->context_mark);
	if (cm.ym_line == pm.ym_line && cm.ym_col == pm.ym_col)
		set_err(b->b_err, pm, NULL, "%s (%s)", problem, p->context);
	else
		set_err(b->b_err, pm, NULL, "%s (%s started at %d:%d)",
		    problem, p->context, cm.ym_line, cm.ym_col);
}

/* "tag:yaml.org,2002:int" is shown as the user wrote it, "!!int". */
static void
tag_name(char *buf, size_t size, const char *tag)
{
	if (strncmp(tag, TAG_PREFIX, strlen(TAG_PREFIX)) == 0)
		snprintf(buf, size, "!!%s", tag + strlen(TAG_PREFIX));
	else
		snprintf(buf, size, "%s", tag);
}

static void
ynode_free(struct ynode *n)
{
	size_t i;

	if (n == NULL)
		return;
	if (n->yn_kind != YN_ALIAS)
		for (i = 0; i < n->yn_nkids; i++)
			ynode_free(n->yn_kids[i]);
	free(n->yn_kids);
	free(n->yn_tag);
	if (n->yn_text != NULL)
		free_wipe(n->yn_text, n->yn_len);
	free(n);
}

static struct ynode *
ynode_new(enum yn_kind kind, const yaml_mark_t *m)
{
	struct ynode *n;

	n = xcalloc(1, sizeof(*n));
	n->yn_kind = kind;
	n->yn_mark = mark_of(m);
	n->yn_weight = 1;
	return n;
}

/* Hangs n under the open container (or makes it the root); takes n. */
static int
attach(struct builder *b, struct ynode *n, const char *anchor)
{
	struct ynode *parent;

	if (b->b_depth == 0) {
		if (b->b_root != NULL) {
			set_err(b->b_err, n->yn_mark, NULL,
			    "unexpected second root node");
			ynode_free(n);
			return -1;
		}
		b->b_root = n;
	} else {
		parent = b->b_stack[b->b_depth - 1];
		if (parent->yn_nkids == parent->yn_capkids) {
			parent->yn_capkids = parent->yn_capkids == 0
			    ? 4
			    : parent->yn_capkids * 2;
			parent->yn_kids = xrealloc(parent->yn_kids,
			    parent->yn_capkids, sizeof(*parent->yn_kids));
		}
		parent->yn_kids[parent->yn_nkids++] = n;
	}
	if (anchor != NULL) {
		if (b->b_nanchored == b->b_capanchored) {
			b->b_capanchored =
			    b->b_capanchored == 0 ? 16 : b->b_capanchored * 2;
			b->b_anchored = xrealloc(b->b_anchored,
			    b->b_capanchored, sizeof(*b->b_anchored));
		}
		b->b_anchored[b->b_nanchored] = n;
		if (json_object_set_new(b->b_anchors, anchor,
		        json_integer((json_int_t)b->b_nanchored)) == -1) {
			set_err(b->b_err, n->yn_mark, NULL,
			    "an anchor name is not valid UTF-8");
			return -1;
		}
		b->b_nanchored++;
	}
	b->b_total += n->yn_kind == YN_ALIAS ? n->yn_target->yn_weight : 1;
	b->b_bytes += n->yn_bytes;
	if (b->b_bytes > Y2J_TEXT_MAX) {
		/* An alias of a long scalar costs one node but copies the
		 * text: a 1 MiB file could expand to gigabytes. */
		set_err(b->b_err, n->yn_mark, NULL,
		    n->yn_kind == YN_ALIAS
		        ? "alias expansion makes the document's text larger "
		          "than %d bytes"
		        : "the document's text is larger than %d bytes",
		    Y2J_TEXT_MAX);
		return -1;
	}
	if (b->b_total > Y2J_NODES_MAX) {
		set_err(b->b_err, n->yn_mark, NULL,
		    n->yn_kind == YN_ALIAS
		        ? "alias expansion makes the document larger than "
		          "%d nodes"
		        : "the document has more than %d nodes",
		    Y2J_NODES_MAX);
		return -1;
	}
	return 0;
}

static int
on_event(struct builder *b, const yaml_event_t *ev)
{
	struct ynode *n, *k;
	const char *anchor = NULL, *tag = NULL;
	const json_t *at;
	size_t i;

	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++b->b_ndocs > 1) {
			set_err(b->b_err, mark_of(&ev->start_mark), NULL,
			    "multiple YAML documents (the file must hold "
			    "exactly one)");
			return -1;
		}
		return 0;
	case YAML_SCALAR_EVENT:
		n = ynode_new(YN_SCALAR, &ev->start_mark);
		n->yn_len = ev->data.scalar.length;
		n->yn_bytes = n->yn_len;
		n->yn_text = xmalloc(n->yn_len + 1);
		memcpy(n->yn_text, ev->data.scalar.value, n->yn_len);
		n->yn_text[n->yn_len] = '\0';
		n->yn_plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
		anchor = (const char *)ev->data.scalar.anchor;
		tag = (const char *)ev->data.scalar.tag;
		n->yn_done = 1;
		break;
	case YAML_ALIAS_EVENT:
		n = ynode_new(YN_ALIAS, &ev->start_mark);
		k = (at = json_object_get(b->b_anchors,
		         (const char *)ev->data.alias.anchor)) != NULL
		    ? b->b_anchored[json_integer_value(at)]
		    : NULL;
		if (k == NULL || !k->yn_done) {
			set_err(b->b_err, n->yn_mark, NULL,
			    k == NULL ? "alias *%s refers to no anchor"
			              : "alias *%s refers to a node that "
			                "contains it",
			    (const char *)ev->data.alias.anchor);
			ynode_free(n);
			return -1;
		}
		n->yn_target = k;
		n->yn_weight = n->yn_target->yn_weight;
		n->yn_bytes = n->yn_target->yn_bytes;
		n->yn_height = n->yn_target->yn_height;
		n->yn_done = 1;
		if (b->b_depth + n->yn_height > Y2J_DEPTH_MAX) {
			set_err(b->b_err, n->yn_mark, NULL,
			    "alias expansion nests deeper than %d levels",
			    Y2J_DEPTH_MAX);
			ynode_free(n);
			return -1;
		}
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		if (ev->type == YAML_SEQUENCE_START_EVENT) {
			n = ynode_new(YN_SEQ, &ev->start_mark);
			anchor = (const char *)ev->data.sequence_start.anchor;
			tag = (const char *)ev->data.sequence_start.tag;
		} else {
			n = ynode_new(YN_MAP, &ev->start_mark);
			anchor = (const char *)ev->data.mapping_start.anchor;
			tag = (const char *)ev->data.mapping_start.tag;
		}
		if (b->b_depth == Y2J_DEPTH_MAX) {
			set_err(b->b_err, n->yn_mark, NULL,
			    "nested deeper than %d levels", Y2J_DEPTH_MAX);
			ynode_free(n);
			return -1;
		}
		if (tag != NULL)
			n->yn_tag = xstrdup(tag);
		if (attach(b, n, anchor) == -1)
			return -1;
		b->b_stack[b->b_depth++] = n;
		return 0;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		n = b->b_stack[--b->b_depth];
		for (i = 0; i < n->yn_nkids; i++) {
			k = n->yn_kids[i];
			n->yn_weight += k->yn_weight;
			n->yn_bytes += k->yn_bytes;
			if (k->yn_height + 1 > n->yn_height)
				n->yn_height = k->yn_height + 1;
		}
		if (n->yn_height == 0)
			n->yn_height = 1;
		n->yn_done = 1;
		return 0;
	default:
		return 0;
	}
	if (tag != NULL)
		n->yn_tag = xstrdup(tag);
	return attach(b, n, anchor);
}

/* libyaml's input copies (raw bytes and decoded characters) hold the
 * whole document; its structures are public, so wipe them before it frees
 * them.  (Scalars grown inside the scanner are copies it frees itself.) */
static void
parser_wipe(yaml_parser_t *p)
{
	if (p->raw_buffer.start != NULL)
		explicit_bzero(p->raw_buffer.start,
		    (size_t)(p->raw_buffer.end - p->raw_buffer.start));
	if (p->buffer.start != NULL)
		explicit_bzero(p->buffer.start,
		    (size_t)(p->buffer.end - p->buffer.start));
}

static int
build(struct builder *b)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	int rv = 0, done = 0;

	if (yaml_parser_initialize(&parser) == 0) {
		set_err(b->b_err, (struct y2j_mark){ 1, 1 }, NULL,
		    "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(
	    &parser, (const unsigned char *)b->b_buf, b->b_len);
	while (!done) {
		if (yaml_parser_parse(&parser, &ev) == 0) {
			parser_err(b, &parser);
			rv = -1;
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		rv = on_event(b, &ev);
		/* Scalars may be tokens: libyaml frees without wiping. */
		if (ev.type == YAML_SCALAR_EVENT)
			explicit_bzero(
			    ev.data.scalar.value, ev.data.scalar.length);
		yaml_event_delete(&ev);
		if (rv == -1)
			break;
	}
	parser_wipe(&parser);
	yaml_parser_delete(&parser);
	if (rv == 0 && b->b_ndocs == 0) {
		set_err(b->b_err, (struct y2j_mark){ 1, 1 }, NULL,
		    "the file holds no YAML document (it is empty)");
		rv = -1;
	}
	return rv;
}

static const struct ynode *
resolve(const struct ynode *n)
{
	return n->yn_kind == YN_ALIAS ? n->yn_target : n;
}

static int
is_null(const char *s)
{
	return strcmp(s, "") == 0 || strcmp(s, "~") == 0 ||
	    strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
	    strcmp(s, "NULL") == 0;
}

static int
is_bool(const char *s, int *v)
{
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
	    strcmp(s, "TRUE") == 0) {
		*v = 1;
		return 1;
	}
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
	    strcmp(s, "FALSE") == 0) {
		*v = 0;
		return 1;
	}
	return 0;
}

/* 0-15 for a hex digit, 99 for anything else. */
static uint64_t
digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return (uint64_t)(c - '0');
	if (c >= 'a' && c <= 'f')
		return (uint64_t)(c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (uint64_t)(c - 'A' + 10);
	return 99;
}

/*
 * Core schema integers: [-+]?[0-9]+ | 0o[0-7]+ | 0x[0-9a-fA-F]+.
 * Returns 0, -1 when s is not of that form, -2 when out of range.
 */
static int
parse_int(const char *s, json_int_t *v)
{
	uint64_t x = 0, limit = INT64_MAX, base = 10, d;
	const char *p = s, *q;
	int neg = 0;

	if (p[0] == '0' && (p[1] == 'o' || p[1] == 'x')) {
		base = p[1] == 'o' ? 8 : 16;
		p += 2;
	} else if (*p == '-' || *p == '+') {
		neg = *p == '-';
		if (neg)
			limit = (uint64_t)INT64_MAX + 1;
		p++;
	}
	if (*p == '\0')
		return -1;
	for (q = p; *q != '\0'; q++)
		if (digit_value(*q) >= base)
			return -1;
	for (; *p != '\0'; p++) {
		d = digit_value(*p);
		if (x > (limit - d) / base)
			return -2;
		x = x * base + d;
	}
	if (neg)
		*v = x == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)x;
	else
		*v = (json_int_t)x;
	return 0;
}

/*
 * Core schema floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
 * and [-+]?\.(inf|Inf|INF), \.(nan|NaN|NAN).  Returns 0, -1 when s is not
 * of that form, -2 for infinity and NaN (JSON has neither), -3 when the
 * value overflows a double.
 */
static int
parse_float(const char *s, double *v)
{
	static locale_t c_locale;
	const char *p = s, *q;
	char *end;

	if (*p == '-' || *p == '+')
		p++;
	if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 ||
	    strcmp(p, ".INF") == 0)
		return -2;
	if (p == s &&
	    (strcmp(p, ".nan") == 0 || strcmp(p, ".NaN") == 0 ||
	        strcmp(p, ".NAN") == 0))
		return -2;
	q = p;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p == '.') {
		p++;
		if (p - q == 1 && !(*p >= '0' && *p <= '9'))
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	} else if (p == q)
		return -1;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p != '\0')
		return -1;
	/* The "C" locale, whatever the process set: '.' is the point. */
	if (c_locale == (locale_t)0 &&
	    (c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0)) ==
	        (locale_t)0)
		return -1;
	*v = strtod_l(s, &end, c_locale);
	if (isinf(*v))
		return -3;
	return 0;
}

static json_t *
conv_scalar(struct conv *c, const struct ynode *n)
{
	const char *t = n->yn_text, *kind;
	char tn[128];
	json_int_t iv;
	double dv;
	int bv, rv;

	if (n->yn_tag == NULL && !n->yn_plain)
		return json_stringn(t, n->yn_len);
	if (n->yn_tag == NULL) {
		if (is_null(t))
			return json_null();
		if (is_bool(t, &bv))
			return json_boolean(bv);
		if ((rv = parse_int(t, &iv)) == 0)
			return json_integer(iv);
		if (rv == -2) {
			set_err(c->c_err, n->yn_mark, c->c_path,
			    "integer does not fit in 64 bits (quote it for "
			    "a string)");
			return NULL;
		}
		if ((rv = parse_float(t, &dv)) == 0)
			return json_real(dv);
		if (rv == -2) {
			set_err(c->c_err, n->yn_mark, c->c_path,
			    "infinity and NaN cannot be represented in JSON "
			    "(quote it for a string)");
			return NULL;
		}
		if (rv == -3) {
			set_err(c->c_err, n->yn_mark, c->c_path,
			    "number out of range (quote it for a string)");
			return NULL;
		}
		return json_stringn(t, n->yn_len);
	}
	if (strcmp(n->yn_tag, "!") == 0 ||
	    strcmp(n->yn_tag, TAG_PREFIX "str") == 0)
		return json_stringn(t, n->yn_len);
	tag_name(tn, sizeof(tn), n->yn_tag);
	if (strlen(t) != n->yn_len)
		goto bad;
	if (strcmp(n->yn_tag, TAG_PREFIX "null") == 0) {
		if (is_null(t))
			return json_null();
		goto bad;
	}
	if (strcmp(n->yn_tag, TAG_PREFIX "bool") == 0) {
		if (is_bool(t, &bv))
			return json_boolean(bv);
		goto bad;
	}
	if (strcmp(n->yn_tag, TAG_PREFIX "int") == 0) {
		if ((rv = parse_int(t, &iv)) == 0)
			return json_integer(iv);
		if (rv == -2) {
			set_err(c->c_err, n->yn_mark, c->c_path,
			    "%s value does not fit in 64 bits", tn);
			return NULL;
		}
		goto bad;
	}
	if (strcmp(n->yn_tag, TAG_PREFIX "float") == 0) {
		if ((rv = parse_float(t, &dv)) == 0)
			return json_real(dv);
		if (rv == -2 || rv == -3) {
			set_err(c->c_err, n->yn_mark, c->c_path, "%s value %s",
			    tn,
			    rv == -2 ? "is infinity or NaN, which JSON "
			               "cannot represent"
			             : "is out of range");
			return NULL;
		}
		goto bad;
	}
	if (strcmp(n->yn_tag, TAG_PREFIX "map") == 0 ||
	    strcmp(n->yn_tag, TAG_PREFIX "seq") == 0) {
		set_err(
		    c->c_err, n->yn_mark, c->c_path, "tag %s on a scalar", tn);
		return NULL;
	}
	set_err(c->c_err, n->yn_mark, c->c_path, UNSUPPORTED, tn);
	return NULL;

bad:
	if (strcmp(n->yn_tag, TAG_PREFIX "null") == 0)
		kind = "a null";
	else if (strcmp(n->yn_tag, TAG_PREFIX "bool") == 0)
		kind = "a boolean (true or false)";
	else if (strcmp(n->yn_tag, TAG_PREFIX "int") == 0)
		kind = "an integer";
	else
		kind = "a number";
	set_err(
	    c->c_err, n->yn_mark, c->c_path, "%s value is not %s", tn, kind);
	return NULL;
}

static void
record(
    struct conv *c, const json_t *j, const struct ynode *n, struct y2j_mark m)
{
	struct y2j_doc *d = c->c_doc;

	if (d->d_nentries == d->d_capentries) {
		d->d_capentries =
		    d->d_capentries == 0 ? 16 : d->d_capentries * 2;
		d->d_entries = xrealloc(
		    d->d_entries, d->d_capentries, sizeof(*d->d_entries));
	}
	d->d_entries[d->d_nentries].e_json = j;
	d->d_entries[d->d_nentries].e_node = n;
	d->d_entries[d->d_nentries].e_mark = m;
	d->d_nentries++;
}

static json_t *
conv_map(struct conv *c, const struct ynode *n)
{
	const struct ynode *k, *v;
	json_t *obj, *jv;
	size_t i, plen = strlen(c->c_path);
	char tn[128], q[Y2J_PATH_MAX];

	obj = json_object();
	for (i = 0; i + 1 < n->yn_nkids; i += 2) {
		k = resolve(n->yn_kids[i]);
		v = n->yn_kids[i + 1];
		if (k->yn_kind != YN_SCALAR) {
			set_err(c->c_err, n->yn_kids[i]->yn_mark, c->c_path,
			    "a mapping key must be a scalar (JSON keys are "
			    "strings)");
			goto fail;
		}
		if (k->yn_plain && strcmp(k->yn_text, "<<") == 0 &&
		    (k->yn_tag == NULL ||
		        strcmp(k->yn_tag, TAG_PREFIX "merge") == 0)) {
			set_err(c->c_err, n->yn_kids[i]->yn_mark, c->c_path,
			    "merge keys are not supported (write the keys "
			    "out, or use an alias for the whole mapping)");
			goto fail;
		}
		if (k->yn_tag != NULL && strcmp(k->yn_tag, "!") != 0 &&
		    strcmp(k->yn_tag, TAG_PREFIX "str") != 0) {
			tag_name(tn, sizeof(tn), k->yn_tag);
			set_err(c->c_err, n->yn_kids[i]->yn_mark, c->c_path,
			    "tag %s on a mapping key (JSON keys are strings)",
			    tn);
			goto fail;
		}
		if (strlen(k->yn_text) != k->yn_len) {
			set_err(c->c_err, n->yn_kids[i]->yn_mark, c->c_path,
			    "a mapping key contains a NUL character");
			goto fail;
		}
		if (json_object_get(obj, k->yn_text) != NULL) {
			y2j_quote(q, sizeof(q), k->yn_text);
			set_err(c->c_err, n->yn_kids[i]->yn_mark, c->c_path,
			    "duplicate key %s", q);
			goto fail;
		}
		y2j_path_key(c->c_path, sizeof(c->c_path), k->yn_text);
		jv = conv_node(c, v);
		c->c_path[plen] = '\0';
		if (jv == NULL)
			goto fail;
		if (json_object_set_new(obj, k->yn_text, jv) == -1) {
			set_err(c->c_err, n->yn_kids[i]->yn_mark, c->c_path,
			    "a mapping key is not valid UTF-8");
			goto fail;
		}
	}
	return obj;
fail:
	json_decref(obj);
	return NULL;
}

/* Returns a new value for n (an alias is expanded), or NULL with c_err. */
static json_t *
conv_node(struct conv *c, const struct ynode *n)
{
	const struct ynode *t = resolve(n);
	size_t i, plen = strlen(c->c_path);
	json_t *j, *item;
	char tn[128];
	const char *want;

	if (t->yn_kind == YN_SCALAR) {
		/* jansson refuses only invalid UTF-8, which libyaml does
		 * not produce; report it rather than crash if it does. */
		if ((j = conv_scalar(c, t)) == NULL &&
		    c->c_err->ye_msg[0] == '\0')
			set_err(c->c_err, t->yn_mark, c->c_path,
			    "a string is not valid UTF-8");
		return j;
	}
	want = t->yn_kind == YN_MAP ? TAG_PREFIX "map" : TAG_PREFIX "seq";
	if (t->yn_tag != NULL && strcmp(t->yn_tag, "!") != 0 &&
	    strcmp(t->yn_tag, want) != 0) {
		tag_name(tn, sizeof(tn), t->yn_tag);
		if (strcmp(t->yn_tag, TAG_PREFIX "map") == 0 ||
		    strcmp(t->yn_tag, TAG_PREFIX "seq") == 0)
			set_err(c->c_err, t->yn_mark, c->c_path,
			    "tag %s on a %s", tn,
			    t->yn_kind == YN_MAP ? "mapping" : "sequence");
		else
			set_err(
			    c->c_err, t->yn_mark, c->c_path, UNSUPPORTED, tn);
		return NULL;
	}
	if (t->yn_kind == YN_MAP)
		j = conv_map(c, t);
	else {
		j = json_array();
		for (i = 0; i < t->yn_nkids; i++) {
			y2j_path_index(c->c_path, sizeof(c->c_path), i);
			item = conv_node(c, t->yn_kids[i]);
			c->c_path[plen] = '\0';
			if (item == NULL) {
				json_decref(j);
				return NULL;
			}
			json_array_append_new(j, item);
		}
	}
	if (j != NULL)
		record(c, j, t, n->yn_mark);
	return j;
}

static int
entry_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)((const struct entry *)a)->e_json;
	uintptr_t y = (uintptr_t)((const struct entry *)b)->e_json;

	return x < y ? -1 : x > y;
}

static const struct entry *
entry_find(const struct y2j_doc *d, const json_t *j)
{
	struct entry key;

	if (d == NULL || j == NULL || d->d_nentries == 0)
		return NULL;
	key.e_json = j;
	return bsearch(&key, d->d_entries, d->d_nentries,
	    sizeof(*d->d_entries), entry_cmp);
}

struct y2j_doc *
y2j_parse(const char *buf, size_t len, struct y2j_error *err)
{
	struct builder b;
	struct conv *c;
	struct y2j_doc *d;

	memset(err, 0, sizeof(*err));
	memset(&b, 0, sizeof(b));
	b.b_anchors = json_object();
	b.b_buf = buf;
	b.b_len = len;
	b.b_err = err;
	if (build(&b) == -1) {
		ynode_free(b.b_root);
		d = NULL;
		goto out;
	}
	d = xcalloc(1, sizeof(*d));
	d->d_tree = b.b_root;
	d->d_root_mark = b.b_root->yn_mark;
	c = xcalloc(1, sizeof(*c));
	c->c_doc = d;
	c->c_err = err;
	d->d_root = conv_node(c, d->d_tree);
	free(c);
	if (d->d_root == NULL) {
		y2j_doc_free(d);
		d = NULL;
		goto out;
	}
	if (d->d_nentries > 0)
		qsort(d->d_entries, d->d_nentries, sizeof(*d->d_entries),
		    entry_cmp);
out:
	json_decref(b.b_anchors);
	free(b.b_anchored);
	return d;
}

void
y2j_doc_free(struct y2j_doc *d)
{
	if (d == NULL)
		return;
	json_decref(d->d_root);
	ynode_free(d->d_tree);
	free(d->d_entries);
	free(d);
}

json_t *
y2j_doc_root(const struct y2j_doc *d)
{
	return d->d_root;
}

struct y2j_mark
y2j_mark_node(const struct y2j_doc *d, const json_t *node)
{
	const struct entry *e;

	if (node == NULL)
		return d->d_root_mark;
	if ((e = entry_find(d, node)) == NULL)
		return (struct y2j_mark){ 0, 0 };
	return e->e_mark;
}

struct y2j_mark
y2j_mark_key(const struct y2j_doc *d, const json_t *obj, const char *key)
{
	const struct entry *e;
	const struct ynode *k;
	size_t i;

	if ((e = entry_find(d, obj)) == NULL || e->e_node->yn_kind != YN_MAP)
		return (struct y2j_mark){ 0, 0 };
	for (i = 0; i + 1 < e->e_node->yn_nkids; i += 2) {
		k = resolve(e->e_node->yn_kids[i]);
		if (strcmp(k->yn_text, key) == 0)
			return e->e_node->yn_kids[i]->yn_mark;
	}
	return (struct y2j_mark){ 0, 0 };
}

struct y2j_mark
y2j_mark_member(const struct y2j_doc *d, const json_t *obj, const char *key)
{
	const struct entry *e;
	const struct ynode *k;
	size_t i;

	if ((e = entry_find(d, obj)) == NULL || e->e_node->yn_kind != YN_MAP)
		return (struct y2j_mark){ 0, 0 };
	for (i = 0; i + 1 < e->e_node->yn_nkids; i += 2) {
		k = resolve(e->e_node->yn_kids[i]);
		if (strcmp(k->yn_text, key) == 0)
			return e->e_node->yn_kids[i + 1]->yn_mark;
	}
	return (struct y2j_mark){ 0, 0 };
}

struct y2j_mark
y2j_mark_item(const struct y2j_doc *d, const json_t *arr, size_t i)
{
	const struct entry *e;

	if ((e = entry_find(d, arr)) == NULL || e->e_node->yn_kind != YN_SEQ ||
	    i >= e->e_node->yn_nkids)
		return (struct y2j_mark){ 0, 0 };
	return e->e_node->yn_kids[i]->yn_mark;
}

static int
is_ident(const char *s)
{
	if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
	        *s == '_'))
		return 0;
	for (s++; *s != '\0'; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		        (*s >= '0' && *s <= '9') || *s == '_'))
			return 0;
	return 1;
}

static void
append(char *path, size_t size, const char *s)
{
	size_t n = strlen(path);

	if (n < size)
		strlcpy_rp(path + n, s, size - n);
}

void
y2j_quote(char *buf, size_t size, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char ch;
	size_t o = 0;
	char e[5];

	if (size == 0)
		return;
#define PUT(str)                                                              \
	do {                                                                  \
		const char *p_ = (str);                                       \
		while (*p_ != '\0' && o + 1 < size)                           \
			buf[o++] = *p_++;                                     \
	} while (0)
	PUT("\"");
	for (; *s != '\0'; s++) {
		ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			e[0] = '\\';
			e[1] = (char)ch;
			e[2] = '\0';
		} else if (ch == '\n')
			snprintf(e, sizeof(e), "\\n");
		else if (ch == '\t')
			snprintf(e, sizeof(e), "\\t");
		else if (ch < 0x20 || ch == 0x7f) {
			e[0] = '\\';
			e[1] = 'x';
			e[2] = hex[ch >> 4];
			e[3] = hex[ch & 0xf];
			e[4] = '\0';
		} else {
			e[0] = (char)ch;
			e[1] = '\0';
		}
		PUT(e);
	}
	PUT("\"");
#undef PUT
	buf[o] = '\0';
}

void
y2j_path_key(char *path, size_t size, const char *key)
{
	char q[Y2J_PATH_MAX];

	if (path[0] != '\0')
		append(path, size, ".");
	if (is_ident(key))
		append(path, size, key);
	else {
		y2j_quote(q, sizeof(q), key);
		append(path, size, q);
	}
}

void
y2j_path_index(char *path, size_t size, size_t i)
{
	char b[32];

	snprintf(b, sizeof(b), "[%zu]", i);
	append(path, size, b);
}
