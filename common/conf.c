/*
 * config.yaml (DESIGN §7): YAML to JSON with positions (yaml2json.c), then
 * every rule checked here, in document order, stopping at the first
 * problem.  Messages never quote a token.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "duration.h"
#include "log.h"
#include "util.h"
#include "yaml2json.h"

#define CLOUDINIT_DISK "cloudinitdisk"
#define CLOUDINIT_MSG  "the provisioner appends its own cloud-init disk; "

/* DESIGN §7 and the 0.1.0 values table: Ubuntu 22.04, 2Gi, 1 CPU. */
#define DEFAULT_SPEC                                                          \
	"{\"domain\":{\"resources\":{\"requests\":{\"memory\":\"2Gi\","       \
	"\"cpu\":\"1\"}},\"devices\":{\"disks\":[{\"name\":\"disk\","         \
	"\"disk\":{\"bus\":\"virtio\"}}]}},\"volumes\":[{\"name\":\"disk\","  \
	"\"containerDisk\":{\"image\":"                                       \
	"\"quay.io/containerdisks/ubuntu:22.04\"}}]}"

struct parse {
	const char *p_name; /* file name for messages */
	struct y2j_doc *p_doc;
	char *p_err;
	size_t p_errlen;
	unsigned p_flags; /* CONF_* */
};

struct strbuf {
	char *sb_buf;
	size_t sb_len;
	size_t sb_cap;
};

static const char *const root_keys[] = { "resourceClass", NULL };
static const char *const class_keys[] = { "token", "idleTimeout",
	"minReplicas", "maxReplicas", "spec", NULL };

static int perr(struct parse *, struct y2j_mark, const char *, const char *,
    ...) __attribute__((format(printf, 4, 5)));
static const char *type_name(const json_t *);
static void path_join(char *, size_t, const char *, const char *);
static size_t fold(char *, size_t, const char *);
static size_t edit_distance(const char *, const char *);
static const char *suggest(const char *, const char *const *);
static int unknown_key(struct parse *, const json_t *, const char *,
    const char *, const char *const *);
static int is_key(const char *, const char *const *);
static const char *class_name_problem(const char *, char *, size_t);
static int parse_token(struct parse *, const json_t *, const char *,
    const char *, struct conf_class *);
static int parse_idle(struct parse *, const json_t *, const char *,
    const char *, struct conf_class *);
static int parse_replicas(struct parse *, const json_t *, const char *,
    const char *, json_int_t, uint32_t *);
static int check_named(
    struct parse *, const json_t *, const char *, const char *, const char *);
static int check_spec(
    struct parse *, const json_t *, const json_t *, const char *);
static int parse_class(struct parse *, const json_t *, const char *,
    const char *, struct conf_class *);
static int parse_root(struct parse *, struct conf *);
static int class_cmp(const void *, const void *);
static void class_clear(struct conf_class *);
static void sb_printf(struct strbuf *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static void sb_value(struct strbuf *, const char *, const json_t *);
static void describe_spec(struct strbuf *, const json_t *);

static int
perr(
    struct parse *p, struct y2j_mark m, const char *path, const char *fmt, ...)
{
	char msg[CONF_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->p_err, p->p_errlen, "%s:%d:%d: %s%s%s", p->p_name,
	    m.ym_line, m.ym_col, path, path[0] != '\0' ? ": " : "", msg);
	return -1;
}

static const char *
type_name(const json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_OBJECT:
		return "a mapping";
	case JSON_ARRAY:
		return "a sequence";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a floating-point number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null (an empty value)";
	}
	return "an unknown type";
}

static void
path_join(char *dst, size_t size, const char *path, const char *key)
{
	strlcpy_rp(dst, path, size);
	y2j_path_key(dst, size, key);
}

/* Lower case without '_' and '-': "idle_timeout" is near "idleTimeout". */
static size_t
fold(char *dst, size_t size, const char *s)
{
	size_t n = 0;

	for (; *s != '\0' && n + 1 < size; s++) {
		if (*s == '_' || *s == '-')
			continue;
		dst[n++] =
		    *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
	}
	dst[n] = '\0';
	return n;
}

/* Levenshtein distance of two short strings. */
static size_t
edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j, prev, cur, up;
	size_t row[64];

	if (la >= nitems(row) || lb >= nitems(row))
		return SIZE_MAX;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			cur = prev + (a[i - 1] != b[j - 1]);
			if (row[j] + 1 < cur)
				cur = row[j] + 1;
			if (row[j - 1] + 1 < cur)
				cur = row[j - 1] + 1;
			row[j] = cur;
			prev = up;
		}
	}
	return row[lb];
}

/* The known key closest to key, when it is close enough to be a typo. */
static const char *
suggest(const char *key, const char *const *known)
{
	char fk[64], fn[64];
	const char *best = NULL;
	size_t d, bestd = SIZE_MAX, n;

	if (fold(fk, sizeof(fk), key) == 0 || strlen(key) >= sizeof(fk))
		return NULL;
	for (; *known != NULL; known++) {
		n = fold(fn, sizeof(fn), *known);
		d = edit_distance(fk, fn);
		if (d <= (n >= 5 ? 2 : 1) && d < bestd) {
			bestd = d;
			best = *known;
		}
	}
	return best;
}

static int
is_key(const char *key, const char *const *known)
{
	for (; *known != NULL; known++)
		if (strcmp(key, *known) == 0)
			return 1;
	return 0;
}

static int
unknown_key(struct parse *p, const json_t *obj, const char *path,
    const char *key, const char *const *known)
{
	const char *s, *const *k;
	char q[Y2J_PATH_MAX], list[256];
	struct y2j_mark m = y2j_mark_key(p->p_doc, obj, key);

	y2j_quote(q, sizeof(q), key);
	if ((s = suggest(key, known)) != NULL)
		return perr(
		    p, m, path, "unknown key %s (did you mean \"%s\"?)", q, s);
	if (known == class_keys && strcmp(key, "name") == 0)
		return perr(p, m, path,
		    "unknown key %s (the resource class "
		    "name is the key of this mapping)",
		    q);
	if (known == class_keys &&
	    (strcmp(key, "domain") == 0 || strcmp(key, "volumes") == 0 ||
	        strcmp(key, "networks") == 0))
		return perr(p, m, path,
		    "unknown key %s (KubeVirt settings go "
		    "under \"spec\")",
		    q);
	list[0] = '\0';
	for (k = known; *k != NULL; k++) {
		if (k != known)
			strlcpy_rp(list + strlen(list), ", ",
			    sizeof(list) - strlen(list));
		strlcpy_rp(
		    list + strlen(list), *k, sizeof(list) - strlen(list));
	}
	return perr(p, m, path, "unknown key %s (known keys: %s)", q, list);
}

/* Why name is not a valid "namespace/name", or NULL when it is. */
static const char *
class_name_problem(const char *name, char *buf, size_t size)
{
	const char *slash, *s;
	unsigned char c;
	size_t len = strlen(name);

	if (len == 0)
		return "is empty";
	if (len > CONF_CLASS_NAME_MAX) {
		snprintf(
		    buf, size, "is longer than %d bytes", CONF_CLASS_NAME_MAX);
		return buf;
	}
	if ((slash = strchr(name, '/')) == NULL)
		return "must have the form \"namespace/name\"";
	if (strchr(slash + 1, '/') != NULL)
		return "must contain exactly one \"/\"";
	if (slash == name)
		return "has an empty namespace (before the \"/\")";
	if (slash[1] == '\0')
		return "has an empty name (after the \"/\")";
	for (s = name; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '/' || c == '.' ||
		    c == '_' || c == ':' || c == '+' || c == '-')
			continue;
		if (c >= 0x80)
			snprintf(buf, size,
			    "contains a non-ASCII character; "
			    "only letters, digits and . _ : + - are allowed");
		else {
			char ch[2] = { (char)c, '\0' }, q[16];

			y2j_quote(q, sizeof(q), ch);
			snprintf(buf, size,
			    "contains %s; only letters, digits "
			    "and . _ : + - are allowed",
			    q);
		}
		return buf;
	}
#define ALNUM(ch)                                                             \
	(((ch) >= 'A' && (ch) <= 'Z') || ((ch) >= 'a' && (ch) <= 'z') ||      \
	    ((ch) >= '0' && (ch) <= '9'))
	if (!ALNUM(name[0]))
		return "must start with a letter or digit";
	if (!ALNUM(slash[1]))
		return "must have a name (after the \"/\") that starts with a "
		       "letter or digit";
#undef ALNUM
	return NULL;
}

int
conf_class_name_valid(const char *name)
{
	char buf[128];

	if (name == NULL || class_name_problem(name, buf, sizeof(buf)) != NULL)
		return -1;
	return 0;
}

static int
parse_token(struct parse *p, const json_t *obj, const char *path,
    const char *key, struct conf_class *cc)
{
	const json_t *v = json_object_get(obj, key);
	struct y2j_mark m = y2j_mark_member(p->p_doc, obj, key);
	const char *s;
	size_t i, len;

	if (!json_is_string(v))
		return perr(p, m, path, "must be a string, not %s%s",
		    type_name(v),
		    json_is_integer(v) || json_is_real(v)
		        ? " (quote the token)"
		        : "");
	s = json_string_value(v);
	len = json_string_length(v);
	if (len == 0)
		return perr(p, m, path, "must not be empty");
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
			return perr(p, m, path,
			    "must not contain whitespace "
			    "or control characters (a \"|\" block keeps its "
			    "final newline; use \"|-\" or quotes)");
	cc->cc_token = xstrdup(s);
	return 0;
}

static int
parse_idle(struct parse *p, const json_t *obj, const char *path,
    const char *key, struct conf_class *cc)
{
	const json_t *v = json_object_get(obj, key);
	struct y2j_mark m = y2j_mark_member(p->p_doc, obj, key);
	char why[128];
	const char *s;
	uint64_t ns;

	if (!json_is_string(v))
		return perr(
		    p, m, path, "must be a duration string such as \"10m\"");
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return perr(p, m, path, "must not contain a NUL character");
	if (*s == '\0')
		return 0; /* documented: "" leaves it unset */
	if (duration_parse(s, &ns, why, sizeof(why)) == -1) {
		char q[64];

		y2j_quote(q, sizeof(q), s);
		return perr(p, m, path, "invalid duration %s: %s", q, why);
	}
	if (ns == 0)
		return perr(p, m, path,
		    "must be greater than 0 (use \"\" or "
		    "leave it out for no idle timeout)");
	if (ns < 1000000)
		return perr(p, m, path, "must be at least 1ms");
	cc->cc_idle_timeout = xstrdup(s);
	cc->cc_idle_timeout_ms = ns / 1000000;
	return 0;
}

static int
parse_replicas(struct parse *p, const json_t *obj, const char *path,
    const char *key, json_int_t min, uint32_t *out)
{
	const json_t *v = json_object_get(obj, key);
	struct y2j_mark m = y2j_mark_member(p->p_doc, obj, key);
	json_int_t n;

	if (!json_is_integer(v))
		return perr(p, m, path, "must be an integer, not %s%s",
		    type_name(v),
		    json_is_string(v) ? " (write it without quotes)" : "");
	n = json_integer_value(v);
	if (n < min)
		return perr(p, m, path, "must be >= %lld", (long long)min);
	if (n > CONF_REPLICAS_LIMIT)
		return perr(p, m, path, "must be <= %d", CONF_REPLICAS_LIMIT);
	*out = (uint32_t)n;
	return 0;
}

/* obj's member key, when present, is a sequence of mappings none of which
 * is named "cloudinitdisk" (what: "disk" or "volume"). */
static int
check_named(struct parse *p, const json_t *obj, const char *key,
    const char *path, const char *what)
{
	const json_t *arr, *item, *name;
	char apath[Y2J_PATH_MAX], ipath[Y2J_PATH_MAX], npath[Y2J_PATH_MAX];
	size_t i;

	if ((arr = json_object_get(obj, key)) == NULL)
		return 0;
	path_join(apath, sizeof(apath), path, key);
	if (!json_is_array(arr))
		return perr(p, y2j_mark_member(p->p_doc, obj, key), apath,
		    "must be a sequence, not %s", type_name(arr));
	json_array_foreach(arr, i, item)
	{
		strlcpy_rp(ipath, apath, sizeof(ipath));
		y2j_path_index(ipath, sizeof(ipath), i);
		if (!json_is_object(item))
			return perr(p, y2j_mark_item(p->p_doc, arr, i), ipath,
			    "must be a mapping, not %s", type_name(item));
		name = json_object_get(item, "name");
		if (json_is_string(name) &&
		    strcmp(json_string_value(name), CLOUDINIT_DISK) == 0) {
			path_join(npath, sizeof(npath), ipath, "name");
			return perr(p, y2j_mark_member(p->p_doc, item, "name"),
			    npath, CLOUDINIT_MSG "remove the %s named \"%s\"",
			    what, CLOUDINIT_DISK);
		}
		if (strcmp(what, "volume") != 0)
			continue;
		if (json_object_get(item, "cloudInitNoCloud") != NULL ||
		    json_object_get(item, "cloudInitConfigDrive") != NULL) {
			key = json_object_get(item, "cloudInitNoCloud") != NULL
			    ? "cloudInitNoCloud"
			    : "cloudInitConfigDrive";
			path_join(npath, sizeof(npath), ipath, key);
			return perr(p, y2j_mark_key(p->p_doc, item, key),
			    npath, CLOUDINIT_MSG "remove this volume");
		}
	}
	return 0;
}

/* Only what the provisioner relies on: it appends a disk and a volume. */
static int
check_spec(
    struct parse *p, const json_t *cls, const json_t *spec, const char *path)
{
	const json_t *domain, *devices;
	char dpath[Y2J_PATH_MAX], vpath[Y2J_PATH_MAX];

	if (!json_is_object(spec))
		return perr(p, y2j_mark_member(p->p_doc, cls, "spec"), path,
		    "must be a mapping (a KubeVirt "
		    "VirtualMachineInstanceSpec),"
		    " not %s",
		    type_name(spec));
	if ((domain = json_object_get(spec, "domain")) == NULL)
		return perr(p, y2j_mark_node(p->p_doc, spec), path,
		    "missing required key \"domain\" (a "
		    "VirtualMachineInstanceSpec needs one)");
	path_join(dpath, sizeof(dpath), path, "domain");
	if (!json_is_object(domain))
		return perr(p, y2j_mark_member(p->p_doc, spec, "domain"),
		    dpath, "must be a mapping, not %s", type_name(domain));
	if ((devices = json_object_get(domain, "devices")) != NULL) {
		path_join(vpath, sizeof(vpath), dpath, "devices");
		if (!json_is_object(devices))
			return perr(p,
			    y2j_mark_member(p->p_doc, domain, "devices"),
			    vpath, "must be a mapping, not %s",
			    type_name(devices));
		if (check_named(p, devices, "disks", vpath, "disk") == -1)
			return -1;
	}
	return check_named(p, spec, "volumes", path, "volume");
}

static int
parse_class(struct parse *p, const json_t *rc, const char *rcpath,
    const char *name, struct conf_class *cc)
{
	json_t *cls = json_object_get(rc, name), *v;
	const char *key;
	char path[Y2J_PATH_MAX], kpath[Y2J_PATH_MAX];
	struct y2j_mark m;
	int have_min = 0, have_max = 0;

	path_join(path, sizeof(path), rcpath, name);
	m = y2j_mark_key(p->p_doc, rc, name);
	cc->cc_name = xstrdup(name);
	cc->cc_line = m.ym_line;
	cc->cc_col = m.ym_col;
	cc->cc_min_replicas = CONF_MIN_REPLICAS_DEFAULT;
	cc->cc_max_replicas = CONF_MAX_REPLICAS_DEFAULT;
	if (!json_is_object(cls))
		return perr(p, y2j_mark_member(p->p_doc, rc, name), path,
		    "must be a mapping with the class's settings (token, "
		    "idleTimeout, minReplicas, maxReplicas, spec), not %s",
		    type_name(cls));
	json_object_foreach(cls, key, v)
	{
		path_join(kpath, sizeof(kpath), path, key);
		if (strcmp(key, "token") == 0) {
			if (parse_token(p, cls, kpath, key, cc) == -1)
				return -1;
		} else if (strcmp(key, "idleTimeout") == 0) {
			if (parse_idle(p, cls, kpath, key, cc) == -1)
				return -1;
		} else if (strcmp(key, "minReplicas") == 0) {
			if (parse_replicas(p, cls, kpath, key, 0,
			        &cc->cc_min_replicas) == -1)
				return -1;
			have_min = 1;
		} else if (strcmp(key, "maxReplicas") == 0) {
			if (parse_replicas(p, cls, kpath, key, 1,
			        &cc->cc_max_replicas) == -1)
				return -1;
			have_max = 1;
		} else if (strcmp(key, "spec") == 0) {
			if (check_spec(p, cls, v, kpath) == -1)
				return -1;
			cc->cc_spec = json_incref(v);
		} else
			return unknown_key(p, cls, path, key, class_keys);
	}
	if (cc->cc_token == NULL && !(p->p_flags & CONF_NO_SECRETS))
		return perr(p, y2j_mark_node(p->p_doc, cls), path,
		    "missing required key \"token\" (the resource class "
		    "token)");
	if (cc->cc_min_replicas > cc->cc_max_replicas) {
		if (have_max && have_min) {
			path_join(kpath, sizeof(kpath), path, "maxReplicas");
			return perr(p,
			    y2j_mark_member(p->p_doc, cls, "maxReplicas"),
			    kpath, "must be >= minReplicas");
		}
		if (have_max) {
			path_join(kpath, sizeof(kpath), path, "maxReplicas");
			return perr(p,
			    y2j_mark_member(p->p_doc, cls, "maxReplicas"),
			    kpath, "must be >= minReplicas (%d when not set)",
			    CONF_MIN_REPLICAS_DEFAULT);
		}
		path_join(kpath, sizeof(kpath), path, "minReplicas");
		return perr(p, y2j_mark_member(p->p_doc, cls, "minReplicas"),
		    kpath, "must be <= maxReplicas (%d when not set)",
		    CONF_MAX_REPLICAS_DEFAULT);
	}
	if (cc->cc_spec == NULL) {
		json_error_t jerr;

		if ((cc->cc_spec = json_loads(DEFAULT_SPEC, 0, &jerr)) == NULL)
			fatalx("%s: default spec: %s", __func__, jerr.text);
	}
	return 0;
}

static int
parse_root(struct parse *p, struct conf *c)
{
	json_t *root = y2j_doc_root(p->p_doc), *rc, *v;
	const char *key;
	char path[Y2J_PATH_MAX], why[128], q[Y2J_PATH_MAX];
	const char *problem;
	size_t i, n;

	if (!json_is_object(root))
		return perr(p, y2j_mark_node(p->p_doc, NULL), "",
		    "the top level must be a mapping with the key "
		    "\"resourceClass\", not %s",
		    type_name(root));
	json_object_foreach(root, key, v)
	{
		if (!is_key(key, root_keys))
			return unknown_key(p, root, "", key, root_keys);
	}
	if ((rc = json_object_get(root, "resourceClass")) == NULL)
		return perr(p, y2j_mark_node(p->p_doc, root), "",
		    "missing required key \"resourceClass\"");
	strlcpy_rp(path, "resourceClass", sizeof(path));
	if (!json_is_object(rc))
		return perr(p,
		    y2j_mark_member(p->p_doc, root, "resourceClass"), path,
		    "must be a mapping from resource class names "
		    "(\"namespace/name\") to their settings, not %s",
		    type_name(rc));
	if ((n = json_object_size(rc)) == 0)
		return perr(p,
		    y2j_mark_member(p->p_doc, root, "resourceClass"), path,
		    "must list at least one resource class");
	c->c_classes = xcalloc(n, sizeof(*c->c_classes));
	i = 0;
	json_object_foreach(rc, key, v)
	{
		if (i == CONF_CLASSES_LIMIT)
			return perr(p, y2j_mark_key(p->p_doc, rc, key), path,
			    "too many resource classes (at most %d)",
			    CONF_CLASSES_LIMIT);
		if ((problem = class_name_problem(key, why, sizeof(why))) !=
		    NULL) {
			y2j_quote(q, sizeof(q), key);
			if (strchr(key, '/') == NULL &&
			    (is_key(key, class_keys) ||
			        strcmp(key, "name") == 0))
				return perr(p, y2j_mark_key(p->p_doc, rc, key),
				    path,
				    "%s is not a resource class name: "
				    "resourceClass maps each "
				    "\"namespace/name\" "
				    "to its settings (the Helm values' "
				    "resourceClass.name layout does not apply "
				    "here)",
				    q);
			path_join(path, sizeof(path), "resourceClass", key);
			return perr(p, y2j_mark_key(p->p_doc, rc, key), path,
			    "invalid resource class name: %s", problem);
		}
		c->c_nclasses = i + 1;
		if (parse_class(
		        p, rc, "resourceClass", key, &c->c_classes[i]) == -1)
			return -1;
		i++;
	}
	qsort(c->c_classes, c->c_nclasses, sizeof(*c->c_classes), class_cmp);
	return 0;
}

static int
class_cmp(const void *a, const void *b)
{
	return strcmp(((const struct conf_class *)a)->cc_name,
	    ((const struct conf_class *)b)->cc_name);
}

struct conf *
conf_parse(
    const char *name, const char *buf, size_t len, char *err, size_t errlen)
{
	return conf_parse_flags(name, buf, len, 0, err, errlen);
}

struct conf *
conf_parse_flags(const char *name, const char *buf, size_t len, unsigned flags,
    char *err, size_t errlen)
{
	struct y2j_error yerr;
	struct parse p;
	struct conf *c;

	if (len > CONF_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", name,
		    CONF_FILE_MAX);
		return NULL;
	}
	memset(&p, 0, sizeof(p));
	p.p_name = name;
	p.p_err = err;
	p.p_errlen = errlen;
	p.p_flags = flags;
	if ((p.p_doc = y2j_parse(buf, len, &yerr)) == NULL) {
		perr(&p, yerr.ye_mark, yerr.ye_path, "%s", yerr.ye_msg);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->c_path = xstrdup(name);
	if (parse_root(&p, c) == -1) {
		conf_free(c);
		c = NULL;
	}
	y2j_doc_free(p.p_doc);
	return c;
}

struct conf *
conf_load(const char *path, char *err, size_t errlen)
{
	return conf_load_flags(path, 0, err, errlen);
}

/* The keys holding secrets of a class mapping (both forms). */
static void
strip_class(json_t *cls)
{
	if (json_is_object(cls)) {
		json_object_del(cls, "token");
		json_object_del(cls, "userData");
	}
}

char *
conf_strip_secrets(const char *buf, size_t len, size_t *outlen)
{
	static const char *const maps[] = { "resourceClass",
		"resourceClasses" };
	struct y2j_error yerr;
	struct y2j_doc *doc;
	json_t *root, *v;
	const char *key;
	char *out;
	size_t i;

	if ((doc = y2j_parse(buf, len, &yerr)) == NULL)
		return NULL;
	root = json_deep_copy(y2j_doc_root(doc));
	y2j_doc_free(doc);
	for (i = 0; i < nitems(maps); i++)
		json_object_foreach(json_object_get(root, maps[i]), key, v)
		    strip_class(v);
	strip_class(json_object_get(root, "resourceClassDefaults"));
	out = json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(root);
	if (out != NULL)
		*outlen = strlen(out);
	return out;
}

struct conf *
conf_load_flags(const char *path, unsigned flags, char *err, size_t errlen)
{
	struct conf *c;
	size_t len;
	char *buf;

	/* One byte over the limit tells "too large" from "exactly max". */
	if ((buf = read_file(path, CONF_FILE_MAX + 1, &len)) == NULL) {
		if (errno == EFBIG)
			snprintf(err, errlen, "%s: larger than %d bytes", path,
			    CONF_FILE_MAX);
		else
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	c = conf_parse_flags(path, buf, len, flags, err, errlen);
	explicit_bzero(buf, len);
	free(buf);
	return c;
}

static void
class_clear(struct conf_class *cc)
{
	if (cc->cc_token != NULL) {
		explicit_bzero(cc->cc_token, strlen(cc->cc_token));
		free(cc->cc_token);
		cc->cc_token = NULL;
	}
	free(cc->cc_name);
	free(cc->cc_idle_timeout);
	json_decref(cc->cc_spec);
}

void
conf_free(struct conf *c)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < c->c_nclasses; i++)
		class_clear(&c->c_classes[i]);
	free(c->c_classes);
	free(c->c_path);
	free(c);
}

const struct conf_class *
conf_class_find(const struct conf *c, const char *name)
{
	struct conf_class key;

	if (c == NULL || name == NULL || c->c_nclasses == 0)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.cc_name = (char *)(uintptr_t)name;
	return bsearch(&key, c->c_classes, c->c_nclasses,
	    sizeof(*c->c_classes), class_cmp);
}

void
conf_drop_tokens(struct conf *c)
{
	struct conf_class *cc;
	size_t i;

	for (i = 0; i < c->c_nclasses; i++) {
		cc = &c->c_classes[i];
		if (cc->cc_token == NULL)
			continue;
		explicit_bzero(cc->cc_token, strlen(cc->cc_token));
		free(cc->cc_token);
		cc->cc_token = NULL;
	}
}

void
conf_register_secrets(const struct conf *c)
{
	size_t i;

	for (i = 0; i < c->c_nclasses; i++)
		if (c->c_classes[i].cc_token != NULL)
			log_secret_add(c->c_classes[i].cc_token);
}

static void
sb_printf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(
		    sb->sb_buf + sb->sb_len, sb->sb_cap - sb->sb_len, fmt, ap);
		va_end(ap);
		if (n < 0)
			fatalx("%s: vsnprintf", __func__);
		if ((size_t)n < sb->sb_cap - sb->sb_len) {
			sb->sb_len += (size_t)n;
			return;
		}
		sb->sb_cap = sb->sb_cap * 2 + (size_t)n;
		sb->sb_buf = xrealloc(sb->sb_buf, sb->sb_cap, 1);
	}
}

/* " label=value" for a scalar; strings with spaces, quotes or control
 * characters are quoted so that the summary stays one line per class. */
static void
sb_value(struct strbuf *sb, const char *label, const json_t *v)
{
	char q[Y2J_PATH_MAX];
	const char *s;

	if (json_is_string(v)) {
		s = json_string_value(v);
		if (*s == '\0' || strpbrk(s, " \"\\\t\n\r") != NULL) {
			y2j_quote(q, sizeof(q), s);
			s = q;
		}
		sb_printf(sb, " %s=%s", label, s);
	} else if (json_is_integer(v))
		sb_printf(
		    sb, " %s=%lld", label, (long long)json_integer_value(v));
	else if (json_is_real(v))
		sb_printf(sb, " %s=%g", label, json_real_value(v));
}

/* What a reader checks first: the boot source, memory and CPU. */
static void
describe_spec(struct strbuf *sb, const json_t *spec)
{
	const json_t *vol, *domain, *v;
	size_t i;

	json_array_foreach(json_object_get(spec, "volumes"), i, vol)
	{
		if ((v = json_object_get(json_object_get(vol, "containerDisk"),
		         "image")) != NULL)
			sb_value(sb, "image", v);
		else if ((v = json_object_get(
		              json_object_get(vol, "persistentVolumeClaim"),
		              "claimName")) != NULL)
			sb_value(sb, "pvc", v);
		else if ((v = json_object_get(
		              json_object_get(vol, "dataVolume"), "name")) !=
		    NULL)
			sb_value(sb, "dataVolume", v);
	}
	domain = json_object_get(spec, "domain");
	v = json_object_get(
	    json_object_get(json_object_get(domain, "resources"), "requests"),
	    "memory");
	if (v == NULL)
		v = json_object_get(
		    json_object_get(domain, "memory"), "guest");
	sb_value(sb, "memory", v);
	v = json_object_get(
	    json_object_get(json_object_get(domain, "resources"), "requests"),
	    "cpu");
	if (v == NULL)
		v = json_object_get(json_object_get(domain, "cpu"), "cores");
	sb_value(sb, "cpu", v);
}

char *
conf_summary(const struct conf *c)
{
	const struct conf_class *cc;
	struct strbuf sb;
	json_t *def;
	char idle[64], why[128];
	uint64_t ns;
	size_t i;

	if ((def = json_loads(DEFAULT_SPEC, 0, NULL)) == NULL)
		fatalx("%s: default spec", __func__);
	sb.sb_cap = 256;
	sb.sb_len = 0;
	sb.sb_buf = xmalloc(sb.sb_cap);
	sb.sb_buf[0] = '\0';
	for (i = 0; i < c->c_nclasses; i++) {
		cc = &c->c_classes[i];
		if (cc->cc_idle_timeout == NULL)
			strlcpy_rp(idle, "none", sizeof(idle));
		else if (duration_parse(cc->cc_idle_timeout, &ns, why,
		             sizeof(why)) == 0 &&
		    ns % 1000000 == 0)
			duration_format_ms(
			    cc->cc_idle_timeout_ms, idle, sizeof(idle));
		else
			strlcpy_rp(idle, cc->cc_idle_timeout, sizeof(idle));
		sb_printf(&sb,
		    "%s: minReplicas=%u maxReplicas=%u "
		    "idleTimeout=%s",
		    cc->cc_name, cc->cc_min_replicas, cc->cc_max_replicas,
		    idle);
		describe_spec(&sb, cc->cc_spec);
		if (json_equal(cc->cc_spec, def))
			sb_printf(&sb, " (default spec)");
		sb_printf(&sb, "\n");
	}
	json_decref(def);
	return sb.sb_buf;
}
