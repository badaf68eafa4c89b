/*
 * One YAML document to a JSON value, faithfully: quoted scalars stay
 * strings, plain scalars resolve by the YAML 1.2 core schema, explicit
 * !!str/!!int/!!float/!!bool/!!null/!!map/!!seq tags are honoured, aliases
 * become deep copies (within Y2J_NODES_MAX nodes and Y2J_TEXT_MAX bytes of
 * scalars, counted before anything is copied).  What JSON cannot hold (other
 * tags, merge keys, non-scalar keys, .inf/.nan, integers beyond 64 bits, more
 * than one document) is an error with a line and column.
 *
 * The document keeps where every node was written, so a caller can report
 * file:line:col for any key or value it rejects.  No libyaml type leaves
 * yaml2json.c.
 */
#ifndef RP_YAML2JSON_H
#define RP_YAML2JSON_H

#include <stddef.h>

#include <jansson.h>

#define Y2J_NODES_MAX 250000             /* nodes after alias expansion */
#define Y2J_TEXT_MAX  (16 * 1024 * 1024) /* scalar bytes, aliases expanded */
#define Y2J_DEPTH_MAX 100                /* nesting, after alias expansion */
#define Y2J_PATH_MAX  512
#define Y2J_MSG_MAX   256

/* A position in the source; both 1-based, 0 when unknown.  Columns count
 * characters, not bytes. */
struct y2j_mark {
	int ym_line;
	int ym_col;
};

struct y2j_error {
	struct y2j_mark ye_mark;
	char ye_path[Y2J_PATH_MAX]; /* "" at the top level */
	char ye_msg[Y2J_MSG_MAX];
};

/* The parsed document: its JSON value and the position of every node. */
struct y2j_doc;

/* yaml2json.c */
/* Parses buf (len bytes, UTF-8/16, exactly one YAML document).  Returns a
 * new document (free with y2j_doc_free), or NULL with err filled in.
 * Messages never quote scalar values, which may be secrets. */
struct y2j_doc *y2j_parse(const char *buf, size_t len, struct y2j_error *err);
void y2j_doc_free(struct y2j_doc *);
/* Borrowed: the document's value, valid until y2j_doc_free; callers may
 * take references (json_incref) that outlive the document. */
json_t *y2j_doc_root(const struct y2j_doc *);

/*
 * Positions.  obj/arr must be objects/arrays of this document's tree (the
 * root or reached from it); anything else yields {0, 0}.  A value that came
 * from an alias is at the alias; its descendants are at the anchored text.
 */
/* Where the value node was written: the root when node is NULL, else node
 * itself (an object or array of the tree). */
struct y2j_mark y2j_mark_node(const struct y2j_doc *, const json_t *node);
/* Where the key, or its value, of member key of obj was written. */
struct y2j_mark y2j_mark_key(
    const struct y2j_doc *, const json_t *obj, const char *key);
struct y2j_mark y2j_mark_member(
    const struct y2j_doc *, const json_t *obj, const char *key);
/* Where item i of arr was written. */
struct y2j_mark y2j_mark_item(
    const struct y2j_doc *, const json_t *arr, size_t i);

/*
 * Key paths as messages print them: resourceClass."my-org/x".spec.volumes[0]
 * Keys that are not identifiers ([A-Za-z_][A-Za-z0-9_]*) are quoted, with
 * quotes, backslashes and control bytes escaped.  Both append to the NUL-
 * terminated path (size bytes), truncating.
 */
void y2j_path_key(char *path, size_t size, const char *key);
void y2j_path_index(char *path, size_t size, size_t i);
/* Writes s quoted and escaped as above into buf (size bytes). */
void y2j_quote(char *buf, size_t size, const char *s);

#endif
