/*
 * YAML to JSON (common/yaml2json.c), the first thing configuration and
 * kubeconfig text meets.  Any bytes: either an error with a message, or a
 * tree that jansson can serialise and read back unchanged, in which every
 * object, member and array item has a position (line and column >= 1),
 * within the limits the header promises (nodes, depth, text).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "yaml2json.h"

struct walk {
	const struct y2j_doc *w_doc;
	size_t w_nodes;
	size_t w_text; /* bytes of keys and strings */
};

static void
check_mark(struct y2j_mark m, const char *what)
{
	FUZZ_CHECK(m.ym_line >= 1 && m.ym_col >= 1, "%s at %d:%d", what,
	    m.ym_line, m.ym_col);
}

static void
walk(struct walk *w, json_t *j, int depth)
{
	const char *key;
	json_t *v;
	size_t i;

	w->w_nodes++;
	FUZZ_CHECK(depth <= Y2J_DEPTH_MAX + 1, "nested %d deep", depth);
	if (json_is_object(j)) {
		check_mark(y2j_mark_node(w->w_doc, j), "a mapping");
		json_object_foreach(j, key, v)
		{
			check_mark(y2j_mark_key(w->w_doc, j, key), "a key");
			w->w_text += strlen(key);
			check_mark(
			    y2j_mark_member(w->w_doc, j, key), "a member");
			walk(w, v, depth + 1);
		}
		FUZZ_CHECK(
		    y2j_mark_key(w->w_doc, j, "\x01no such key").ym_line == 0,
		    "a key that is not there has a position");
	} else if (json_is_array(j)) {
		check_mark(y2j_mark_node(w->w_doc, j), "a sequence");
		json_array_foreach(j, i, v)
		{
			check_mark(y2j_mark_item(w->w_doc, j, i), "an item");
			walk(w, v, depth + 1);
		}
		FUZZ_CHECK(
		    y2j_mark_item(w->w_doc, j, json_array_size(j)).ym_line ==
		        0,
		    "an item past the end has a position");
	} else if (json_is_string(j))
		w->w_text += json_string_length(j);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct y2j_error err;
	struct y2j_doc *doc;
	struct walk w = { 0 };
	json_t *root, *back, *stray;
	char *text;

	doc = y2j_parse((const char *)data, size, &err);
	if (doc == NULL) {
		FUZZ_CHECK(
		    err.ye_msg[0] != '\0', "an error without a message");
		FUZZ_CHECK(memchr(err.ye_msg, '\0', sizeof(err.ye_msg)) &&
		        memchr(err.ye_path, '\0', sizeof(err.ye_path)),
		    "an unterminated message or path");
		FUZZ_CHECK(err.ye_mark.ym_line >= 0 && err.ye_mark.ym_col >= 0,
		    "error at %d:%d", err.ye_mark.ym_line, err.ye_mark.ym_col);
		return 0;
	}
	root = y2j_doc_root(doc);
	FUZZ_CHECK(root != NULL, "a document without a value");
	check_mark(y2j_mark_node(doc, NULL), "the root");
	w.w_doc = doc;
	walk(&w, root, 0);
	FUZZ_CHECK(w.w_nodes <= Y2J_NODES_MAX, "%zu nodes", w.w_nodes);
	FUZZ_CHECK(w.w_text <= Y2J_TEXT_MAX, "%zu bytes of text", w.w_text);

	text = json_dumps(root, JSON_ENCODE_ANY | JSON_COMPACT);
	FUZZ_CHECK(text != NULL, "jansson cannot serialise the tree");
	back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	FUZZ_CHECK(back != NULL && json_equal(root, back),
	    "the tree does not read back from its JSON: %.200s", text);
	/* A value that is not part of the tree has no position. */
	stray = json_object();
	FUZZ_CHECK(y2j_mark_node(doc, stray).ym_line == 0,
	    "a foreign object has a position");
	json_decref(stray);
	json_decref(back);
	free(text);
	y2j_doc_free(doc);
	return 0;
}
