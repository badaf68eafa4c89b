/*
 * config.yaml and secrets.yaml (DESIGN §7, README "Configuration"): YAML
 * to JSON with positions (yaml2json.c), then every rule checked here, in
 * document order, stopping at the first problem.  Messages never quote a
 * token or user data.
 *
 * The 0.1.2 form merges resourceClassDefaults into each entry by field
 * (maps recursively, the entry wins, lists replaced).  The merge keeps the
 * nodes of both documents, and every map it builds remembers its two
 * sources, so an error in a merged value names the place it was written:
 * the entry, or resourceClassDefaults.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "duration.h"
#include "log.h"
#include "tz.h"
#include "util.h"
#include "yaml2json.h"

#define PATH_LEN_MAX   1024 /* runner directories, mount points */
#define SERIAL_MAX     20   /* virtio-blk serials */
#define NAME_LEN_MAX   63   /* schedule names */
#define CLOUDINIT_DISK "cloudinitdisk"
#define CLOUDINIT_MSG  "the provisioner appends its own cloud-init disk; "
#define KEY_010        "resourceClass"
#define KEY_CLASSES    "resourceClasses"
#define KEY_DEFAULTS   "resourceClassDefaults"

/* DESIGN §7 and the 0.1.0 values table: Ubuntu 22.04, 2Gi, 1 CPU. */
#define DEFAULT_SPEC                                                          \
	"{\"domain\":{\"resources\":{\"requests\":{\"memory\":\"2Gi\","       \
	"\"cpu\":\"1\"}},\"devices\":{\"disks\":[{\"name\":\"disk\","         \
	"\"disk\":{\"bus\":\"virtio\"}}]}},\"volumes\":[{\"name\":\"disk\","  \
	"\"containerDisk\":{\"image\":"                                       \
	"\"quay.io/containerdisks/ubuntu:22.04\"}}]}"

/* A map the merge built, and the two maps it came from. */
struct origin {
	const json_t *o_merged;
	const json_t *o_ent; /* the entry's map, or NULL */
	const json_t *o_def; /* resourceClassDefaults' map, or NULL */
	char *o_ent_path;
	char *o_def_path;
};

struct parse {
	const char *p_name; /* file name for messages */
	struct y2j_doc *p_doc;
	char *p_err;
	size_t p_errlen;
	struct origin *p_orig;
	size_t p_norig;
	unsigned p_flags; /* CONF_* */
};

/* Where a value was written, for messages about a related one. */
struct where {
	bool w_set;
	struct y2j_mark w_mark;
	char w_path[Y2J_PATH_MAX];
};

/* A class's settings from secrets.yaml. */
struct secret {
	const char *s_name;
	json_t *s_obj;
	char s_path[Y2J_PATH_MAX];
	bool s_used;
};

struct secrets {
	struct parse *ss_p; /* NULL: no secrets file */
	struct secret *ss_classes;
	size_t ss_n;
	json_t *ss_defaults; /* resourceClassDefaults, or NULL */
};

struct strbuf {
	char *sb_buf;
	size_t sb_len;
	size_t sb_cap;
};

static const char *const root_keys[] = { KEY_010, KEY_CLASSES, KEY_DEFAULTS,
	NULL };
static const char *const class_keys[] = { "token", "idleTimeout",
	"minReplicas", "maxReplicas", "spec", NULL };
static const char *const class_keys_012[] = { "token", "userData", "scaling",
	"runner", "emptyDiskMounts", "spec", NULL };
static const char *const scaling_keys[] = { "minReplicas", "maxReplicas",
	"headroom", "maxSurge", "scaleDownDelay", "idleTimeout", "schedules",
	NULL };
static const char *const schedule_keys[] = { "name", "start", "end",
	"timezone", "minReplicas", "maxReplicas", "headroom", "maxSurge",
	"scaleDownDelay", NULL };
static const char *const runner_keys[] = { "workingDirectory",
	"taskAgentDirectory", "commandPrefix", "useHomeSSHDirForCheckoutKeys",
	"maxRunTime", "grantSudo", NULL };
static const char *const disk_keys[] = { "serial", "path", "fsType", NULL };
static const char *const secret_root_keys[] = { KEY_CLASSES, KEY_DEFAULTS,
	NULL };
static const char *const secret_class_keys[] = { "token", "userData", NULL };
static const char *const fs_types[] = { "ext4", "ext3", "ext2", "xfs", NULL };
/* The 0.1.2 document's commandPrefix: jobs step down to circleci. */
static const char *const default_prefix[] = { "sudo", "PATH=$PATH", "-niHu",
	CONF_JOB_USER, "--", NULL };

static int perr(struct parse *, struct y2j_mark, const char *, const char *,
    ...) __attribute__((format(printf, 4, 5)));

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
type_name(json_t *j)
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

static void
path_index(char *dst, size_t size, const char *path, size_t i)
{
	strlcpy_rp(dst, path, size);
	y2j_path_index(dst, size, i);
}

/* Positions and paths through merged maps ------------------------------ */

static struct origin *
origin_of(const struct parse *p, const json_t *obj)
{
	size_t i;

	for (i = 0; i < p->p_norig; i++)
		if (p->p_orig[i].o_merged == obj)
			return &p->p_orig[i];
	return NULL;
}

/* The map of the document that holds member key of obj, and its path. */
static const json_t *
holder(const struct parse *p, const json_t *obj, const char *key,
    const char **path)
{
	const struct origin *o;

	while ((o = origin_of(p, obj)) != NULL) {
		if (o->o_ent != NULL &&
		    json_object_get(o->o_ent, key) != NULL) {
			obj = o->o_ent;
			*path = o->o_ent_path;
		} else {
			obj = o->o_def;
			*path = o->o_def_path;
		}
	}
	return obj;
}

static struct y2j_mark
mk_member(const struct parse *p, const json_t *obj, const char *key)
{
	const char *path = NULL;

	return y2j_mark_member(p->p_doc, holder(p, obj, key, &path), key);
}

static struct y2j_mark
mk_key(const struct parse *p, const json_t *obj, const char *key)
{
	const char *path = NULL;

	return y2j_mark_key(p->p_doc, holder(p, obj, key, &path), key);
}

static struct y2j_mark
mk_node(const struct parse *p, const json_t *node)
{
	const struct origin *o;

	while ((o = origin_of(p, node)) != NULL)
		node = o->o_ent != NULL ? o->o_ent : o->o_def;
	return y2j_mark_node(p->p_doc, node);
}

/* The path of member key of obj (whose own path is path), as written. */
static void
mpath(const struct parse *p, const json_t *obj, const char *path,
    const char *key, char *out, size_t size)
{
	const char *hp = path;

	holder(p, obj, key, &hp);
	path_join(out, size, hp, key);
}

static void
where_set(const struct parse *p, struct where *w, json_t *obj,
    const char *path, const char *key)
{
	w->w_set = true;
	w->w_mark = mk_member(p, obj, key);
	mpath(p, obj, path, key, w->w_path, sizeof(w->w_path));
}

static void
origin_add(struct parse *p, json_t *m, json_t *ent, const char *epath,
    json_t *def, const char *dpath)
{
	struct origin *o;

	p->p_orig = xrealloc(p->p_orig, p->p_norig + 1, sizeof(*p->p_orig));
	o = &p->p_orig[p->p_norig++];
	o->o_merged = m;
	o->o_ent = ent;
	o->o_def = def;
	o->o_ent_path = xstrdup(epath);
	o->o_def_path = xstrdup(dpath);
}

static void
origins_clear(struct parse *p)
{
	size_t i;

	for (i = 0; i < p->p_norig; i++) {
		free(p->p_orig[i].o_ent_path);
		free(p->p_orig[i].o_def_path);
	}
	free(p->p_orig);
	p->p_orig = NULL;
	p->p_norig = 0;
}

/* def under ent: maps merge key by key, anything else is the entry's.
 * Returns a new reference. */
static json_t *
merge(struct parse *p, json_t *def, const char *dpath, json_t *ent,
    const char *epath)
{
	char dp[Y2J_PATH_MAX], ep[Y2J_PATH_MAX];
	const char *key;
	json_t *m, *v, *e;

	if (ent == NULL)
		return json_incref(def);
	if (def == NULL || !json_is_object(def) || !json_is_object(ent))
		return json_incref(ent);
	m = json_object();
	json_object_foreach(def, key, v)
	{
		if ((e = json_object_get(ent, key)) == NULL) {
			json_object_set(m, key, v);
			continue;
		}
		path_join(dp, sizeof(dp), dpath, key);
		path_join(ep, sizeof(ep), epath, key);
		json_object_set_new(m, key, merge(p, v, dp, e, ep));
	}
	json_object_foreach(ent, key, v)
	{
		if (json_object_get(def, key) == NULL)
			json_object_set(m, key, v);
	}
	origin_add(p, m, ent, epath, def, dpath);
	return m;
}

/* Unknown keys, with a suggestion ------------------------------------------
 */

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

/* Why a known key of another form or level is not accepted here. */
static const char *
misplaced(const char *key, const char *const *known)
{
	if (known == class_keys &&
	    (strcmp(key, "scaling") == 0 || strcmp(key, "runner") == 0 ||
	        strcmp(key, "userData") == 0 ||
	        strcmp(key, "emptyDiskMounts") == 0))
		return "a setting of the 0.1.2 form: use resourceClasses "
		       "instead of resourceClass to set it";
	if (known == class_keys_012 &&
	    (strcmp(key, "minReplicas") == 0 ||
	        strcmp(key, "maxReplicas") == 0 ||
	        strcmp(key, "idleTimeout") == 0))
		return "in the 0.1.2 form it goes under \"scaling\"";
	if ((known == class_keys || known == class_keys_012) &&
	    strcmp(key, "name") == 0)
		return "the resource class name is the key of this mapping";
	if ((known == class_keys || known == class_keys_012) &&
	    (strcmp(key, "domain") == 0 || strcmp(key, "volumes") == 0 ||
	        strcmp(key, "networks") == 0))
		return "KubeVirt settings go under \"spec\"";
	if (known == secret_class_keys &&
	    (is_key(key, class_keys_012) || is_key(key, scaling_keys)))
		return "secrets.yaml holds only token and userData; this "
		       "belongs in config.yaml";
	if (known == schedule_keys && strcmp(key, "idleTimeout") == 0)
		return "idleTimeout cannot be scheduled: it is baked into "
		       "each VM when it is created";
	return NULL;
}

static int
unknown_key(struct parse *p, json_t *obj, const char *path, const char *key,
    const char *const *known)
{
	const char *s, *why, *const *k;
	char q[Y2J_PATH_MAX], list[256];
	struct y2j_mark m = mk_key(p, obj, key);

	holder(p, obj, key, &path); /* resourceClassDefaults' own path */

	y2j_quote(q, sizeof(q), key);
	if ((why = misplaced(key, known)) != NULL)
		return perr(p, m, path, "unknown key %s (%s)", q, why);
	if ((s = suggest(key, known)) != NULL)
		return perr(
		    p, m, path, "unknown key %s (did you mean \"%s\"?)", q, s);
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

/* Names ------------------------------------------------------------------ */

/* The shape every class name has, in config and in messages: at most 253
 * bytes of letters, digits and . _ : + -, one "/", both parts starting
 * with a letter or digit.  Why name is not, or NULL. */
static const char *
shape_problem(const char *name, char *buf, size_t size)
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

/*
 * The 0.1.2 document's rule, for both forms of config.yaml: "The namespace
 * part of the key may contain lowercase letters, numbers, underscores, and
 * dashes. The name part may also contain uppercase letters, colons, and
 * plus signs."  Why a well-shaped name breaks it, or NULL.
 */
static const char *
class_name_problem(const char *name, char *buf, size_t size)
{
	const char *problem, *slash, *s;
	char q[16], ch[2] = { 0, 0 };

	if ((problem = shape_problem(name, buf, size)) != NULL)
		return problem;
	slash = strchr(name, '/');
	for (s = name; *s != '\0'; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		    *s == '_' || *s == '-' || s == slash)
			continue;
		if (s > slash &&
		    ((*s >= 'A' && *s <= 'Z') || *s == ':' || *s == '+'))
			continue;
		ch[0] = *s;
		y2j_quote(q, sizeof(q), ch);
		snprintf(buf, size, "contains %s in the %s", q,
		    s < slash ? "namespace (before the \"/\": lowercase "
		                "letters, digits, _ and - only)"
		              : "name (after the \"/\": letters, digits, _ : "
		                "+ and - only)");
		return buf;
	}
	return NULL;
}

int
conf_class_name_valid(const char *name)
{
	char buf[128];

	if (name == NULL || shape_problem(name, buf, sizeof(buf)) != NULL)
		return -1;
	return 0;
}

int
conf_class_name_allowed(const char *name)
{
	char buf[160];

	if (name == NULL || class_name_problem(name, buf, sizeof(buf)) != NULL)
		return -1;
	return 0;
}

static int
check_class_name(struct parse *p, json_t *map, const char *mpath_,
    const char *key, const char *const *keys)
{
	char why[128], q[Y2J_PATH_MAX], path[Y2J_PATH_MAX];
	const char *problem;

	if ((problem = class_name_problem(key, why, sizeof(why))) == NULL)
		return 0;
	y2j_quote(q, sizeof(q), key);
	if (strchr(key, '/') == NULL &&
	    (is_key(key, keys) || strcmp(key, "name") == 0))
		return perr(p, y2j_mark_key(p->p_doc, map, key), mpath_,
		    "%s is not a resource class name: %s maps each "
		    "\"namespace/name\" to its settings (the Helm values' "
		    "resourceClass.name layout does not apply here)",
		    q, mpath_);
	path_join(path, sizeof(path), mpath_, key);
	return perr(p, y2j_mark_key(p->p_doc, map, key), path,
	    "invalid resource class name: %s", problem);
}

/* Scalars ------------------------------------------------------------------
 */

static int
parse_token(struct parse *p, json_t *obj, const char *path, const char *key,
    char **out)
{
	json_t *v = json_object_get(obj, key);
	struct y2j_mark m = mk_member(p, obj, key);
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
	if (out != NULL)
		*out = xstrdup(s);
	return 0;
}

static int
parse_user_data(struct parse *p, json_t *obj, const char *path,
    const char *key, char **out)
{
	json_t *v = json_object_get(obj, key);
	struct y2j_mark m = mk_member(p, obj, key);

	if (!json_is_string(v))
		return perr(p, m, path,
		    "must be a string (a script, e.g. a \"|\" block), not %s",
		    type_name(v));
	if (strlen(json_string_value(v)) != json_string_length(v))
		return perr(p, m, path, "must not contain a NUL character");
	if (json_string_length(v) > CONF_USERDATA_MAX)
		return perr(
		    p, m, path, "is longer than %d bytes", CONF_USERDATA_MAX);
	if (out != NULL && json_string_length(v) > 0)
		*out = xstrdup(json_string_value(v));
	return 0;
}

/* A duration string: "" leaves it unset (0), "0" and "0s" are 0 when
 * zero_ok; else at least 1ms.  *written gets the text as written. */
static int
parse_duration(struct parse *p, json_t *obj, const char *path, const char *key,
    bool zero_ok, uint64_t *ms, char **written)
{
	json_t *v = json_object_get(obj, key);
	struct y2j_mark m = mk_member(p, obj, key);
	char why[128], q[64];
	const char *s;
	uint64_t ns;

	if (!json_is_string(v))
		return perr(
		    p, m, path, "must be a duration string such as \"10m\"");
	s = json_string_value(v);
	if (strlen(s) != json_string_length(v))
		return perr(p, m, path, "must not contain a NUL character");
	*ms = 0;
	if (*s == '\0')
		return 0; /* documented: "" leaves it unset */
	if (duration_parse(s, &ns, why, sizeof(why)) == -1) {
		y2j_quote(q, sizeof(q), s);
		return perr(p, m, path, "invalid duration %s: %s", q, why);
	}
	if (ns == 0 && !zero_ok)
		return perr(p, m, path,
		    "must be greater than 0 (use \"\" or leave it out for %s)",
		    strcmp(key, "idleTimeout") == 0 ? "no idle timeout"
		                                    : "the default");
	if (ns != 0 && ns < 1000000)
		return perr(p, m, path, "must be at least 1ms");
	*ms = ns / 1000000;
	if (written != NULL && ns != 0)
		*written = xstrdup(s);
	return 0;
}

static int
parse_replicas(struct parse *p, json_t *obj, const char *path, const char *key,
    json_int_t min, uint32_t *out)
{
	json_t *v = json_object_get(obj, key);
	struct y2j_mark m = mk_member(p, obj, key);
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

static int
parse_headroom(struct parse *p, json_t *obj, const char *path, const char *key,
    uint32_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_string(v)) {
		if (strcmp(json_string_value(v), "auto") == 0) {
			*out = SCALE_HEADROOM_AUTO;
			return 0;
		}
		return perr(p, mk_member(p, obj, key), path,
		    "must be a number of VMs or \"auto\"");
	}
	return parse_replicas(p, obj, path, key, 0, out);
}

static int
parse_bool(
    struct parse *p, json_t *obj, const char *path, const char *key, bool *out)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_boolean(v))
		return perr(p, mk_member(p, obj, key), path,
		    "must be true or false, not %s%s", type_name(v),
		    json_is_string(v) ? " (write it without quotes)" : "");
	*out = json_is_true(v);
	return 0;
}

/* A string of 1..max printable ASCII bytes. */
static int
parse_word(struct parse *p, json_t *obj, const char *path, const char *key,
    size_t max, const char **out)
{
	json_t *v = json_object_get(obj, key);
	struct y2j_mark m = mk_member(p, obj, key);
	const char *s;

	if (!json_is_string(v))
		return perr(
		    p, m, path, "must be a string, not %s", type_name(v));
	s = json_string_value(v);
	if (*s == '\0')
		return perr(p, m, path, "must not be empty");
	if (json_string_length(v) > max)
		return perr(p, m, path, "must be at most %zu characters", max);
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			return perr(p, m, path,
			    "must hold only printable ASCII characters");
	*out = json_string_value(v);
	return 0;
}

/* An absolute path of plain characters: it ends up in shell data and
 * YAML, and "." or ".." components would hide where it points. */
static int
parse_abs_path(struct parse *p, json_t *obj, const char *path, const char *key,
    const char **out)
{
	struct y2j_mark m = mk_member(p, obj, key);
	const char *s, *c;
	size_t clen;

	if (parse_word(p, obj, path, key, PATH_LEN_MAX, &s) == -1)
		return -1;
	if (s[0] != '/')
		return perr(p, m, path, "must be an absolute path");
	if (strspn(s,
	        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	        "0123456789/._+-@") != strlen(s))
		return perr(p, m, path,
		    "may hold only letters, digits and / . _ + - @");
	for (c = s + 1; *c != '\0'; c += clen + (c[clen] == '/')) {
		clen = strcspn(c, "/");
		if (clen == 0 || (clen == 1 && c[0] == '.') ||
		    (clen == 2 && c[0] == '.' && c[1] == '.'))
			return perr(p, m, path,
			    "must be a plain path (no empty, \".\" or \"..\" "
			    "components, no trailing \"/\")");
	}
	*out = s;
	return 0;
}

/* The spec ---------------------------------------------------------------- */

/* obj's member key, when present, is a sequence of mappings none of which
 * is named "cloudinitdisk" (what: "disk" or "volume"). */
static int
check_named(struct parse *p, json_t *obj, const char *key, const char *path,
    const char *what)
{
	json_t *arr, *item, *name;
	char apath[Y2J_PATH_MAX], ipath[Y2J_PATH_MAX], npath[Y2J_PATH_MAX];
	size_t i;

	if ((arr = json_object_get(obj, key)) == NULL)
		return 0;
	mpath(p, obj, path, key, apath, sizeof(apath));
	if (!json_is_array(arr))
		return perr(p, mk_member(p, obj, key), apath,
		    "must be a sequence, not %s", type_name(arr));
	json_array_foreach(arr, i, item)
	{
		path_index(ipath, sizeof(ipath), apath, i);
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
check_spec(struct parse *p, json_t *cls, json_t *spec, const char *path)
{
	json_t *domain, *devices;
	char dpath[Y2J_PATH_MAX], vpath[Y2J_PATH_MAX];

	if (!json_is_object(spec))
		return perr(p, mk_member(p, cls, "spec"), path,
		    "must be a mapping (a KubeVirt "
		    "VirtualMachineInstanceSpec),"
		    " not %s",
		    type_name(spec));
	if ((domain = json_object_get(spec, "domain")) == NULL)
		return perr(p, mk_node(p, spec), path,
		    "missing required key \"domain\" (a "
		    "VirtualMachineInstanceSpec needs one)");
	mpath(p, spec, path, "domain", dpath, sizeof(dpath));
	if (!json_is_object(domain))
		return perr(p, mk_member(p, spec, "domain"), dpath,
		    "must be a mapping, not %s", type_name(domain));
	if ((devices = json_object_get(domain, "devices")) != NULL) {
		mpath(p, domain, dpath, "devices", vpath, sizeof(vpath));
		if (!json_is_object(devices))
			return perr(p, mk_member(p, domain, "devices"), vpath,
			    "must be a mapping, not %s", type_name(devices));
		if (check_named(p, devices, "disks", vpath, "disk") == -1)
			return -1;
	}
	return check_named(p, spec, "volumes", path, "volume");
}

static json_t *
default_spec(void)
{
	json_error_t jerr;
	json_t *spec;

	if ((spec = json_loads(DEFAULT_SPEC, 0, &jerr)) == NULL)
		fatalx("%s: default spec: %s", __func__, jerr.text);
	return spec;
}

/* The 0.1.0 form ------------------------------------------------------------
 */

static void
runner_defaults(struct conf_runner *r)
{
	size_t i;

	r->cr_working_dir = xstrdup(CONF_WORKING_DIR_DEFAULT);
	r->cr_task_agent_dir = xstrdup(CONF_TASK_AGENT_DIR_DEFAULT);
	r->cr_nprefix = nitems(default_prefix) - 1;
	r->cr_prefix = xcalloc(r->cr_nprefix + 1, sizeof(*r->cr_prefix));
	for (i = 0; i < r->cr_nprefix; i++)
		r->cr_prefix[i] = xstrdup(default_prefix[i]);
}

static void
class_defaults(struct conf_class *cc)
{
	scale_policy_init(&cc->cc_scaling);
	cc->cc_scaling.sp_base.sc_min = CONF_MIN_REPLICAS_DEFAULT;
	cc->cc_scaling.sp_base.sc_max = CONF_MAX_REPLICAS_DEFAULT;
	runner_defaults(&cc->cc_runner);
}

/* Whether two key paths name members of the same map. */
static bool
same_parent(const char *a, const char *b)
{
	const char *da = strrchr(a, '.'), *db = strrchr(b, '.');

	return da != NULL && db != NULL && da - a == db - b &&
	    strncmp(a, b, (size_t)(da - a)) == 0;
}

/* min <= max, with the message at the one the reader should change. */
static int
check_min_max(struct parse *p, uint32_t min, const struct where *wmin,
    uint32_t max, const struct where *wmax)
{
	if (min <= max)
		return 0;
	if (wmax->w_set && wmin->w_set &&
	    same_parent(wmin->w_path, wmax->w_path))
		return perr(
		    p, wmax->w_mark, wmax->w_path, "must be >= minReplicas");
	if (wmax->w_set && wmin->w_set)
		return perr(p, wmax->w_mark, wmax->w_path,
		    "must be >= minReplicas (%u, set at %s)", min,
		    wmin->w_path);
	if (wmax->w_set)
		return perr(p, wmax->w_mark, wmax->w_path,
		    "must be >= minReplicas (%d when not set)",
		    CONF_MIN_REPLICAS_DEFAULT);
	return perr(p, wmin->w_mark, wmin->w_path,
	    "must be <= maxReplicas (%d when not set)",
	    CONF_MAX_REPLICAS_DEFAULT);
}

static int
parse_class_010(
    struct parse *p, json_t *rc, const char *name, struct conf_class *cc)
{
	json_t *cls = json_object_get(rc, name), *v;
	const char *key;
	char path[Y2J_PATH_MAX], kpath[Y2J_PATH_MAX];
	struct scale_controls *b = &cc->cc_scaling.sp_base;
	struct where wmin = { 0 }, wmax = { 0 };

	path_join(path, sizeof(path), KEY_010, name);
	if (!json_is_object(cls))
		return perr(p, y2j_mark_member(p->p_doc, rc, name), path,
		    "must be a mapping with the class's settings (token, "
		    "idleTimeout, minReplicas, maxReplicas, spec), not %s",
		    type_name(cls));
	json_object_foreach(cls, key, v)
	{
		path_join(kpath, sizeof(kpath), path, key);
		if (strcmp(key, "token") == 0) {
			if (parse_token(p, cls, kpath, key, &cc->cc_token) ==
			    -1)
				return -1;
		} else if (strcmp(key, "idleTimeout") == 0) {
			if (parse_duration(p, cls, kpath, key, false,
			        &cc->cc_idle_timeout_ms,
			        &cc->cc_idle_timeout) == -1)
				return -1;
		} else if (strcmp(key, "minReplicas") == 0) {
			if (parse_replicas(
			        p, cls, kpath, key, 0, &b->sc_min) == -1)
				return -1;
			where_set(p, &wmin, cls, path, key);
		} else if (strcmp(key, "maxReplicas") == 0) {
			if (parse_replicas(
			        p, cls, kpath, key, 1, &b->sc_max) == -1)
				return -1;
			where_set(p, &wmax, cls, path, key);
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
	if (check_min_max(p, b->sc_min, &wmin, b->sc_max, &wmax) == -1)
		return -1;
	if (cc->cc_spec == NULL)
		cc->cc_spec = default_spec();
	return 0;
}

/* The 0.1.2 form ------------------------------------------------------------
 */

/* One control of a scaling map or a schedule.  Returns 1 when key is not
 * a control, else 0 or -1. */
static int
parse_control(struct parse *p, json_t *obj, const char *path, const char *key,
    struct scale_controls *c, unsigned *set, struct where *wmin,
    struct where *wmax, struct where *wdelay)
{
	char kpath[Y2J_PATH_MAX];

	mpath(p, obj, path, key, kpath, sizeof(kpath));
	if (strcmp(key, "minReplicas") == 0) {
		if (parse_replicas(p, obj, kpath, key, 0, &c->sc_min) == -1)
			return -1;
		*set |= SCALE_CTL_MIN;
		where_set(p, wmin, obj, path, key);
	} else if (strcmp(key, "maxReplicas") == 0) {
		if (parse_replicas(p, obj, kpath, key, 1, &c->sc_max) == -1)
			return -1;
		*set |= SCALE_CTL_MAX;
		where_set(p, wmax, obj, path, key);
	} else if (strcmp(key, "headroom") == 0) {
		if (parse_headroom(p, obj, kpath, key, &c->sc_headroom) == -1)
			return -1;
		*set |= SCALE_CTL_HEADROOM;
	} else if (strcmp(key, "maxSurge") == 0) {
		if (parse_replicas(p, obj, kpath, key, 0, &c->sc_max_surge) ==
		    -1)
			return -1;
		*set |= SCALE_CTL_SURGE;
	} else if (strcmp(key, "scaleDownDelay") == 0) {
		if (parse_duration(
		        p, obj, kpath, key, true, &c->sc_delay_ms, NULL) == -1)
			return -1;
		*set |= SCALE_CTL_DELAY;
		if (c->sc_delay_ms > 0)
			where_set(p, wdelay, obj, path, key);
	} else
		return 1;
	return 0;
}

static int
parse_cron(struct parse *p, json_t *obj, const char *path, const char *key,
    struct cron *c)
{
	json_t *v = json_object_get(obj, key);
	struct y2j_mark m = mk_member(p, obj, key);
	char why[200], q[128];

	if (!json_is_string(v))
		return perr(p, m, path,
		    "must be a cron expression string such as \"0 8 * * "
		    "MON-FRI\", not %s",
		    type_name(v));
	y2j_quote(q, sizeof(q), json_string_value(v));
	if (cron_parse(json_string_value(v), c, why, sizeof(why)) == -1)
		return perr(
		    p, m, path, "invalid cron expression %s: %s", q, why);
	return 0;
}

/* Everything a schedule sets, checked against the baseline it falls back
 * to for what it leaves out. */
static int
parse_schedule(struct parse *p, json_t *item, const char *ipath, size_t index,
    const struct scale_controls *base, const struct where *bmin,
    const struct where *bmax, struct scale_schedule *s, struct where *wdelay)
{
	struct where wmin = { 0 }, wmax = { 0 };
	char kpath[Y2J_PATH_MAX], why[256];
	bool have_start = false, have_end = false;
	const char *key, *zone = "UTC", *name;
	uint32_t min, max;
	json_t *v;
	int r;

	if (!json_is_object(item))
		return perr(p, mk_node(p, item), ipath,
		    "must be a mapping (start, end, timezone and the "
		    "controls to override), not %s",
		    type_name(item));
	json_object_foreach(item, key, v)
	{
		mpath(p, item, ipath, key, kpath, sizeof(kpath));
		if (strcmp(key, "name") == 0) {
			if (parse_word(p, item, kpath, key, NAME_LEN_MAX,
			        &name) == -1)
				return -1;
			free(s->ss_name);
			s->ss_name = xstrdup(name);
		} else if (strcmp(key, "start") == 0) {
			if (parse_cron(p, item, kpath, key, &s->ss_start) ==
			    -1)
				return -1;
			have_start = true;
		} else if (strcmp(key, "end") == 0) {
			if (parse_cron(p, item, kpath, key, &s->ss_end) == -1)
				return -1;
			have_end = true;
		} else if (strcmp(key, "timezone") == 0) {
			if (parse_word(
			        p, item, kpath, key, TZ_NAME_MAX, &zone) == -1)
				return -1;
			if ((s->ss_tz = tz_load(zone, why, sizeof(why))) ==
			    NULL) {
				char q[TZ_NAME_MAX + 8];

				y2j_quote(q, sizeof(q), zone);
				return perr(p, mk_member(p, item, key), kpath,
				    "%s: %s", q, why);
			}
		} else if ((r = parse_control(p, item, ipath, key, &s->ss_ctl,
		                &s->ss_set, &wmin, &wmax, wdelay)) != 1) {
			if (r == -1)
				return -1;
		} else
			return unknown_key(p, item, ipath, key, schedule_keys);
	}
	if (s->ss_name == NULL)
		s->ss_name = xasprintf("schedules[%zu]", index);
	if (!have_start || !have_end)
		return perr(p, mk_node(p, item), ipath,
		    "missing required key \"%s\" (a cron expression: the "
		    "schedule is active from start until end)",
		    have_start ? "end" : "start");
	if (cron_equal(&s->ss_start, &s->ss_end)) {
		mpath(p, item, ipath, "end", kpath, sizeof(kpath));
		return perr(p, mk_member(p, item, "end"), kpath,
		    "must differ from start (a window that starts and ends at "
		    "the same minutes is never active)");
	}
	if (s->ss_tz == NULL &&
	    (s->ss_tz = tz_load(zone, why, sizeof(why))) == NULL)
		fatalx("%s: UTC: %s", __func__, why);
	min = s->ss_set & SCALE_CTL_MIN ? s->ss_ctl.sc_min : base->sc_min;
	max = s->ss_set & SCALE_CTL_MAX ? s->ss_ctl.sc_max : base->sc_max;
	if (min <= max)
		return 0;
	if (wmax.w_set && wmin.w_set)
		return perr(
		    p, wmax.w_mark, wmax.w_path, "must be >= minReplicas");
	if (wmax.w_set)
		return perr(p, wmax.w_mark, wmax.w_path,
		    "must be >= minReplicas (%u, %s%s)", min,
		    bmin->w_set ? "the baseline at " : "the default",
		    bmin->w_set ? bmin->w_path : "");
	return perr(p, wmin.w_mark, wmin.w_path,
	    "must be <= maxReplicas (%u, %s%s)", max,
	    bmax->w_set ? "the baseline at " : "the default",
	    bmax->w_set ? bmax->w_path : "");
}

static int
parse_schedules(struct parse *p, json_t *obj, const char *path,
    const char *key, struct conf_class *cc, const struct where *bmin,
    const struct where *bmax, struct where *wdelays)
{
	json_t *arr = json_object_get(obj, key), *item;
	struct scale_policy *sp = &cc->cc_scaling;
	char apath[Y2J_PATH_MAX], ipath[Y2J_PATH_MAX];
	size_t i, j;

	mpath(p, obj, path, key, apath, sizeof(apath));
	if (!json_is_array(arr))
		return perr(p, mk_member(p, obj, key), apath,
		    "must be a sequence of schedules, not %s", type_name(arr));
	if (json_array_size(arr) > SCALE_SCHEDULES_MAX)
		return perr(p, mk_member(p, obj, key), apath,
		    "has more than %d schedules", SCALE_SCHEDULES_MAX);
	sp->sp_schedules =
	    xcalloc(json_array_size(arr) + 1, sizeof(*sp->sp_schedules));
	json_array_foreach(arr, i, item)
	{
		path_index(ipath, sizeof(ipath), apath, i);
		sp->sp_nschedules = i + 1;
		if (parse_schedule(p, item, ipath, i, &sp->sp_base, bmin, bmax,
		        &sp->sp_schedules[i], &wdelays[i]) == -1)
			return -1;
		for (j = 0; j < i; j++)
			if (strcmp(sp->sp_schedules[j].ss_name,
			        sp->sp_schedules[i].ss_name) == 0) {
				mpath(p, item, ipath, "name", ipath,
				    sizeof(ipath));
				return perr(p, mk_member(p, item, "name"),
				    ipath, "another schedule has this name");
			}
	}
	return 0;
}

/* scaling: the baseline controls, idleTimeout and the schedules. */
static int
parse_scaling(
    struct parse *p, json_t *cls, const char *cpath, struct conf_class *cc)
{
	json_t *sc = json_object_get(cls, "scaling");
	struct scale_controls *b = &cc->cc_scaling.sp_base;
	struct where wmin = { 0 }, wmax = { 0 }, wdelay = { 0 }, widle = { 0 };
	struct where wdelays[SCALE_SCHEDULES_MAX] = { { 0 } };
	char path[Y2J_PATH_MAX], kpath[Y2J_PATH_MAX];
	const struct scale_schedule *s;
	unsigned set = 0;
	const char *key;
	json_t *v;
	size_t i;
	int r;

	mpath(p, cls, cpath, "scaling", path, sizeof(path));
	if (!json_is_object(sc))
		return perr(p, mk_member(p, cls, "scaling"), path,
		    "must be a mapping of scaling controls, not %s",
		    type_name(sc));
	/* Controls first: schedules fall back to them. */
	json_object_foreach(sc, key, v)
	{
		mpath(p, sc, path, key, kpath, sizeof(kpath));
		if (strcmp(key, "idleTimeout") == 0) {
			if (parse_duration(p, sc, kpath, key, false,
			        &cc->cc_idle_timeout_ms,
			        &cc->cc_idle_timeout) == -1)
				return -1;
			if (cc->cc_idle_timeout_ms > 0)
				where_set(p, &widle, sc, path, key);
		} else if (strcmp(key, "schedules") == 0)
			continue;
		else if ((r = parse_control(p, sc, path, key, b, &set, &wmin,
		              &wmax, &wdelay)) != 1) {
			if (r == -1)
				return -1;
		} else
			return unknown_key(p, sc, path, key, scaling_keys);
	}
	if (check_min_max(p, b->sc_min, &wmin, b->sc_max, &wmax) == -1)
		return -1;
	if (json_object_get(sc, "schedules") != NULL &&
	    parse_schedules(
	        p, sc, path, "schedules", cc, &wmin, &wmax, wdelays) == -1)
		return -1;
	/* A VM that times out sooner than the delay would shed the warm
	 * VMs the delay holds. */
	if (cc->cc_idle_timeout_ms == 0)
		return 0;
	if (wdelay.w_set && b->sc_delay_ms > cc->cc_idle_timeout_ms)
		return perr(p, widle.w_mark, widle.w_path,
		    "must be >= scaleDownDelay (set at %s)", wdelay.w_path);
	for (i = 0; i < cc->cc_scaling.sp_nschedules; i++) {
		s = &cc->cc_scaling.sp_schedules[i];
		if ((s->ss_set & SCALE_CTL_DELAY) &&
		    s->ss_ctl.sc_delay_ms > cc->cc_idle_timeout_ms)
			return perr(p, wdelays[i].w_mark, wdelays[i].w_path,
			    "must be <= idleTimeout (set at %s): a VM that "
			    "times out sooner sheds the warm VMs the delay "
			    "holds",
			    widle.w_path);
	}
	return 0;
}

static int
parse_prefix(struct parse *p, json_t *obj, const char *path, const char *key,
    struct conf_runner *r)
{
	json_t *arr = json_object_get(obj, key), *item;
	char ipath[Y2J_PATH_MAX];
	size_t i;

	if (!json_is_array(arr))
		return perr(p, mk_member(p, obj, key), path,
		    "must be a sequence of strings (the command and its "
		    "arguments), not %s",
		    type_name(arr));
	if (json_array_size(arr) > CONF_PREFIX_MAX)
		return perr(p, mk_member(p, obj, key), path,
		    "has more than %d items", CONF_PREFIX_MAX);
	json_array_foreach(arr, i, item)
	{
		path_index(ipath, sizeof(ipath), path, i);
		if (!json_is_string(item) || json_string_length(item) == 0 ||
		    strlen(json_string_value(item)) !=
		        json_string_length(item))
			return perr(p, y2j_mark_item(p->p_doc, arr, i), ipath,
			    "must be a non-empty string%s",
			    json_is_string(item) ? " without NUL characters"
			                         : "");
	}
	for (i = 0; i < r->cr_nprefix; i++)
		free(r->cr_prefix[i]);
	free(r->cr_prefix);
	r->cr_nprefix = json_array_size(arr);
	r->cr_prefix = xcalloc(r->cr_nprefix + 1, sizeof(*r->cr_prefix));
	json_array_foreach(arr, i, item) r->cr_prefix[i] =
	    xstrdup(json_string_value(item));
	return 0;
}

static int
parse_runner(
    struct parse *p, json_t *cls, const char *cpath, struct conf_runner *r)
{
	json_t *ro = json_object_get(cls, "runner");
	char path[Y2J_PATH_MAX], kpath[Y2J_PATH_MAX];
	const char *key, *s;
	bool sudo;
	json_t *v;

	mpath(p, cls, cpath, "runner", path, sizeof(path));
	if (!json_is_object(ro))
		return perr(p, mk_member(p, cls, "runner"), path,
		    "must be a mapping of runner options, not %s",
		    type_name(ro));
	json_object_foreach(ro, key, v)
	{
		mpath(p, ro, path, key, kpath, sizeof(kpath));
		if (strcmp(key, "workingDirectory") == 0 ||
		    strcmp(key, "taskAgentDirectory") == 0) {
			if (parse_abs_path(p, ro, kpath, key, &s) == -1)
				return -1;
			if (key[0] == 'w') {
				free(r->cr_working_dir);
				r->cr_working_dir = xstrdup(s);
			} else {
				free(r->cr_task_agent_dir);
				r->cr_task_agent_dir = xstrdup(s);
			}
		} else if (strcmp(key, "commandPrefix") == 0) {
			if (parse_prefix(p, ro, kpath, key, r) == -1)
				return -1;
		} else if (strcmp(key, "useHomeSSHDirForCheckoutKeys") == 0) {
			if (parse_bool(
			        p, ro, kpath, key, &r->cr_home_ssh_keys) == -1)
				return -1;
		} else if (strcmp(key, "maxRunTime") == 0) {
			free(r->cr_max_run_time);
			r->cr_max_run_time = NULL;
			if (parse_duration(p, ro, kpath, key, false,
			        &r->cr_max_run_time_ms,
			        &r->cr_max_run_time) == -1)
				return -1;
		} else if (strcmp(key, "grantSudo") == 0) {
			if (parse_bool(p, ro, kpath, key, &sudo) == -1)
				return -1;
			if (sudo)
				return perr(p, mk_member(p, ro, key), kpath,
				    "true is refused: a job with root access "
				    "could read the runner token from the VM "
				    "(the 0.1.2 provisioner allows it only "
				    "with its token proxy, which this "
				    "provisioner does not have)");
		} else
			return unknown_key(p, ro, path, key, runner_keys);
	}
	return 0;
}

/* Whether path is dir or below it. */
static bool
under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 &&
	    (path[n] == '\0' || path[n] == '/');
}

/* Disk serial S of the spec is a virtio disk backed by an emptyDisk. */
static int
check_empty_disk(struct parse *p, json_t *spec, const char *serial,
    struct y2j_mark m, const char *path)
{
	json_t *disks, *d, *vols, *vol, *bus;
	const char *name = NULL;
	char q[64], nq[Y2J_PATH_MAX];
	size_t i;

	y2j_quote(q, sizeof(q), serial);
	disks = json_object_get(
	    json_object_get(json_object_get(spec, "domain"), "devices"),
	    "disks");
	json_array_foreach(disks, i, d)
	{
		if (!json_is_string(json_object_get(d, "serial")) ||
		    strcmp(json_string_value(json_object_get(d, "serial")),
		        serial) != 0)
			continue;
		name = json_string_value(json_object_get(d, "name"));
		break;
	}
	if (name == NULL)
		return perr(p, m, path,
		    "no disk in spec.domain.devices.disks has serial %s (add "
		    "a virtio disk with this serial, backed by an emptyDisk "
		    "volume)",
		    q);
	y2j_quote(nq, sizeof(nq), name);
	if (json_object_get(d, "disk") == NULL)
		return perr(p, m, path,
		    "disk %s (serial %s) must be a \"disk\" device, not a "
		    "cdrom or lun",
		    nq, q);
	bus = json_object_get(json_object_get(d, "disk"), "bus");
	if (bus != NULL &&
	    (!json_is_string(bus) ||
	        strcmp(json_string_value(bus), "virtio") != 0))
		return perr(p, m, path,
		    "disk %s (serial %s) must be on the virtio bus: the VM "
		    "finds it as /dev/disk/by-id/virtio-<serial>",
		    nq, q);
	vols = json_object_get(spec, "volumes");
	json_array_foreach(vols, i, vol)
	{
		if (!json_is_string(json_object_get(vol, "name")) ||
		    strcmp(json_string_value(json_object_get(vol, "name")),
		        name) != 0)
			continue;
		if (json_object_get(vol, "emptyDisk") == NULL)
			return perr(p, m, path,
			    "volume %s (serial %s) must be an emptyDisk: "
			    "only a blank disk is formatted and mounted",
			    nq, q);
		return 0;
	}
	return perr(p, m, path,
	    "disk %s (serial %s) has no volume of that name in spec.volumes",
	    nq, q);
}

static int
parse_disks(
    struct parse *p, json_t *cls, const char *cpath, struct conf_class *cc)
{
	json_t *arr = json_object_get(cls, "emptyDiskMounts"), *item;
	char apath[Y2J_PATH_MAX], ipath[Y2J_PATH_MAX], kpath[Y2J_PATH_MAX];
	struct conf_disk *d;
	const char *key, *s, *const *fs;
	json_t *v;
	size_t i, j;

	mpath(p, cls, cpath, "emptyDiskMounts", apath, sizeof(apath));
	if (!json_is_array(arr))
		return perr(p, mk_member(p, cls, "emptyDiskMounts"), apath,
		    "must be a sequence of {serial, path, fsType}, not %s",
		    type_name(arr));
	if (json_array_size(arr) > CONF_DISKS_MAX)
		return perr(p, mk_member(p, cls, "emptyDiskMounts"), apath,
		    "has more than %d disks", CONF_DISKS_MAX);
	cc->cc_disks =
	    xcalloc(json_array_size(arr) + 1, sizeof(*cc->cc_disks));
	json_array_foreach(arr, i, item)
	{
		path_index(ipath, sizeof(ipath), apath, i);
		if (!json_is_object(item))
			return perr(p, y2j_mark_item(p->p_doc, arr, i), ipath,
			    "must be a mapping (serial, path, fsType), not %s",
			    type_name(item));
		d = &cc->cc_disks[i];
		cc->cc_ndisks = i + 1;
		json_object_foreach(item, key, v)
		{
			path_join(kpath, sizeof(kpath), ipath, key);
			if (strcmp(key, "serial") == 0) {
				if (parse_word(p, item, kpath, key, 64, &s) ==
				    -1)
					return -1;
				if (strlen(s) > SERIAL_MAX ||
				    strspn(s,
				        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef"
				        "ghijklmnopqrstuvwxyz0123456789") !=
				        strlen(s))
					return perr(p,
					    y2j_mark_member(
					        p->p_doc, item, key),
					    kpath,
					    "must be 1-%d letters and digits "
					    "(a virtio disk serial)",
					    SERIAL_MAX);
				d->cd_serial = xstrdup(s);
			} else if (strcmp(key, "path") == 0) {
				if (parse_abs_path(p, item, kpath, key, &s) ==
				    -1)
					return -1;
				if (strcmp(s, "/") == 0 || under(s, "/proc") ||
				    under(s, "/sys") || under(s, "/dev") ||
				    under(s, "/boot"))
					return perr(p,
					    y2j_mark_member(
					        p->p_doc, item, key),
					    kpath,
					    "must not be / or under /proc, "
					    "/sys, /dev or /boot");
				d->cd_path = xstrdup(s);
			} else if (strcmp(key, "fsType") == 0) {
				if (parse_word(p, item, kpath, key, 16, &s) ==
				    -1)
					return -1;
				for (fs = fs_types; *fs != NULL; fs++)
					if (strcmp(*fs, s) == 0)
						break;
				if (*fs == NULL)
					return perr(p,
					    y2j_mark_member(
					        p->p_doc, item, key),
					    kpath,
					    "must be ext4, ext3, ext2 or xfs");
				d->cd_fs_type = xstrdup(s);
			} else
				return unknown_key(
				    p, item, ipath, key, disk_keys);
		}
		if (d->cd_serial == NULL || d->cd_path == NULL)
			return perr(p, y2j_mark_item(p->p_doc, arr, i), ipath,
			    "missing required key \"%s\"",
			    d->cd_serial == NULL ? "serial" : "path");
		if (d->cd_fs_type == NULL)
			d->cd_fs_type = xstrdup("ext4");
		path_join(kpath, sizeof(kpath), ipath, "serial");
		if (check_empty_disk(p, cc->cc_spec, d->cd_serial,
		        y2j_mark_member(p->p_doc, item, "serial"),
		        kpath) == -1)
			return -1;
		for (j = 0; j < i; j++) {
			if (strcmp(cc->cc_disks[j].cd_serial, d->cd_serial) ==
			    0)
				return perr(p,
				    y2j_mark_member(p->p_doc, item, "serial"),
				    kpath, "another mount uses this serial");
			if (strcmp(cc->cc_disks[j].cd_path, d->cd_path) == 0) {
				path_join(kpath, sizeof(kpath), ipath, "path");
				return perr(p,
				    y2j_mark_member(p->p_doc, item, "path"),
				    kpath, "another mount uses this path");
			}
		}
	}
	return 0;
}

/* One entry of resourceClasses, merged with the defaults. */
static int
parse_class_012(struct parse *p, json_t *rc, json_t *defaults,
    const char *name, struct conf_class *cc)
{
	json_t *ent = json_object_get(rc, name), *cls, *v;
	char path[Y2J_PATH_MAX], kpath[Y2J_PATH_MAX];
	struct origin *o;
	bool have_spec = false;
	const char *key;
	int rv = -1;

	path_join(path, sizeof(path), KEY_CLASSES, name);
	if (json_is_null(ent))
		ent = NULL; /* "ns/name": with nothing: all defaults */
	else if (!json_is_object(ent))
		return perr(p, y2j_mark_member(p->p_doc, rc, name), path,
		    "must be a mapping with the class's settings (token, "
		    "userData, scaling, runner, emptyDiskMounts, spec), not "
		    "%s",
		    type_name(ent));
	if (ent == NULL && defaults == NULL)
		cls = json_object();
	else if (ent == NULL) {
		/* Every value is the defaults', and says so. */
		ent = json_object();
		cls = merge(p, defaults, KEY_DEFAULTS, ent, path);
		if ((o = origin_of(p, cls)) != NULL)
			o->o_ent = NULL;
		json_decref(ent);
	} else
		cls = merge(p, defaults, KEY_DEFAULTS, ent, path);
	/* The spec first: emptyDiskMounts are checked against it. */
	if ((v = json_object_get(cls, "spec")) != NULL) {
		mpath(p, cls, path, "spec", kpath, sizeof(kpath));
		if (check_spec(p, cls, v, kpath) == -1)
			goto out;
		cc->cc_spec = json_deep_copy(v);
		have_spec = true;
	}
	if (!have_spec)
		cc->cc_spec = default_spec();
	json_object_foreach(cls, key, v)
	{
		mpath(p, cls, path, key, kpath, sizeof(kpath));
		if (strcmp(key, "token") == 0) {
			if (parse_token(p, cls, kpath, key, &cc->cc_token) ==
			    -1)
				goto out;
		} else if (strcmp(key, "userData") == 0) {
			if (parse_user_data(
			        p, cls, kpath, key, &cc->cc_user_data) == -1)
				goto out;
		} else if (strcmp(key, "scaling") == 0) {
			if (parse_scaling(p, cls, path, cc) == -1)
				goto out;
		} else if (strcmp(key, "runner") == 0) {
			if (parse_runner(p, cls, path, &cc->cc_runner) == -1)
				goto out;
		} else if (strcmp(key, "emptyDiskMounts") == 0) {
			if (parse_disks(p, cls, path, cc) == -1)
				goto out;
		} else if (strcmp(key, "spec") != 0) {
			unknown_key(p, cls, path, key, class_keys_012);
			goto out;
		}
	}
	rv = 0;
out:
	json_decref(cls);
	origins_clear(p);
	return rv;
}

/* resourceClassDefaults: a map of class settings, without a token. */
static int
check_defaults(struct parse *p, json_t *root, json_t **out)
{
	json_t *d = json_object_get(root, KEY_DEFAULTS);

	*out = NULL;
	if (d == NULL || json_is_null(d))
		return 0;
	if (!json_is_object(d))
		return perr(p, y2j_mark_member(p->p_doc, root, KEY_DEFAULTS),
		    KEY_DEFAULTS,
		    "must be a mapping of class settings merged into every "
		    "entry of resourceClasses, not %s",
		    type_name(d));
	if (json_object_get(d, "token") != NULL)
		return perr(p, y2j_mark_key(p->p_doc, d, "token"),
		    KEY_DEFAULTS,
		    "unknown key \"token\" (each resource class has its own "
		    "token: set it per class)");
	*out = d;
	return 0;
}

/* Tokens and user data from secrets.yaml, where config.yaml has none at
 * the same place.  The same key in both files is an error. */
static int
apply_secrets(struct parse *p, struct secrets *ss, json_t *rc,
    json_t *defaults, struct conf_class *cc)
{
	json_t *ent = json_object_get(rc, cc->cc_name), *so = NULL;
	struct parse *sp = ss->ss_p;
	struct secret *s = NULL;
	char kpath[Y2J_PATH_MAX];
	struct y2j_mark m;
	size_t i;

	if (!json_is_object(ent))
		ent = NULL;
	for (i = 0; i < ss->ss_n; i++)
		if (strcmp(ss->ss_classes[i].s_name, cc->cc_name) == 0) {
			s = &ss->ss_classes[i];
			s->s_used = true;
			so = s->s_obj;
		}
	if (so != NULL) {
		static const char *const keys[] = { "token", "userData" };

		for (i = 0; i < nitems(keys); i++) {
			if (json_object_get(so, keys[i]) == NULL ||
			    ent == NULL ||
			    json_object_get(ent, keys[i]) == NULL)
				continue;
			m = y2j_mark_member(p->p_doc, ent, keys[i]);
			path_join(kpath, sizeof(kpath), s->s_path, keys[i]);
			return perr(sp,
			    y2j_mark_member(sp->p_doc, so, keys[i]), kpath,
			    "is also set at %s:%d:%d; keep it in one file",
			    p->p_name, m.ym_line, m.ym_col);
		}
		path_join(kpath, sizeof(kpath), s->s_path, "token");
		if (json_object_get(so, "token") != NULL &&
		    parse_token(sp, so, kpath, "token", &cc->cc_token) == -1)
			return -1;
		if (json_object_get(so, "userData") != NULL) {
			free(cc->cc_user_data);
			cc->cc_user_data = NULL;
			path_join(kpath, sizeof(kpath), s->s_path, "userData");
			if (parse_user_data(sp, so, kpath, "userData",
			        &cc->cc_user_data) == -1)
				return -1;
			return 0;
		}
	}
	/* A class's own userData (either file) wins over the defaults'. */
	if ((ent != NULL && json_object_get(ent, "userData") != NULL) ||
	    ss->ss_defaults == NULL ||
	    json_object_get(ss->ss_defaults, "userData") == NULL)
		return 0;
	if (defaults != NULL &&
	    json_object_get(defaults, "userData") != NULL) {
		m = y2j_mark_member(p->p_doc, defaults, "userData");
		return perr(sp,
		    y2j_mark_member(sp->p_doc, ss->ss_defaults, "userData"),
		    KEY_DEFAULTS ".userData",
		    "is also set at %s:%d:%d; keep it in one file", p->p_name,
		    m.ym_line, m.ym_col);
	}
	free(cc->cc_user_data);
	cc->cc_user_data = NULL;
	return parse_user_data(sp, ss->ss_defaults, KEY_DEFAULTS ".userData",
	    "userData", &cc->cc_user_data);
}

/* secrets.yaml: resourceClasses of {token, userData}, and optionally
 * resourceClassDefaults.userData. */
static int
parse_secrets_doc(struct secrets *ss)
{
	struct parse *p = ss->ss_p;
	json_t *root = y2j_doc_root(p->p_doc), *rc, *d, *v;
	char path[Y2J_PATH_MAX], kpath[Y2J_PATH_MAX];
	const char *key, *k2;
	struct secret *s;
	json_t *v2;

	if (!json_is_object(root))
		return perr(p, y2j_mark_node(p->p_doc, NULL), "",
		    "the top level must be a mapping with the key "
		    "\"resourceClasses\", not %s",
		    type_name(root));
	json_object_foreach(root, key, v)
	{
		if (strcmp(key, KEY_010) == 0)
			return perr(p, y2j_mark_key(p->p_doc, root, key), "",
			    "unknown key \"resourceClass\" (secrets.yaml uses "
			    "the 0.1.2 form: resourceClasses)");
		if (!is_key(key, secret_root_keys))
			return unknown_key(p, root, "", key, secret_root_keys);
	}
	if ((d = json_object_get(root, KEY_DEFAULTS)) != NULL &&
	    !json_is_null(d)) {
		if (!json_is_object(d))
			return perr(p,
			    y2j_mark_member(p->p_doc, root, KEY_DEFAULTS),
			    KEY_DEFAULTS, "must be a mapping, not %s",
			    type_name(d));
		json_object_foreach(d, key, v2)
		{
			if (strcmp(key, "userData") != 0) {
				y2j_quote(path, sizeof(path), key);
				return perr(p, y2j_mark_key(p->p_doc, d, key),
				    KEY_DEFAULTS,
				    "unknown key %s (only userData is a "
				    "secret "
				    "shared by every class)",
				    path);
			}
		}
		if (json_object_get(d, "userData") != NULL &&
		    parse_user_data(p, d, KEY_DEFAULTS ".userData", "userData",
		        NULL) == -1)
			return -1;
		ss->ss_defaults = d;
	}
	if ((rc = json_object_get(root, KEY_CLASSES)) == NULL ||
	    json_is_null(rc))
		return 0;
	if (!json_is_object(rc))
		return perr(p, y2j_mark_member(p->p_doc, root, KEY_CLASSES),
		    KEY_CLASSES,
		    "must be a mapping from resource class names "
		    "(\"namespace/name\") to {token, userData}, not %s",
		    type_name(rc));
	if (json_object_size(rc) > CONF_CLASSES_LIMIT)
		return perr(p, y2j_mark_member(p->p_doc, root, KEY_CLASSES),
		    KEY_CLASSES, "too many resource classes (at most %d)",
		    CONF_CLASSES_LIMIT);
	ss->ss_classes =
	    xcalloc(json_object_size(rc) + 1, sizeof(*ss->ss_classes));
	json_object_foreach(rc, key, v)
	{
		if (check_class_name(
		        p, rc, KEY_CLASSES, key, secret_class_keys) == -1)
			return -1;
		path_join(path, sizeof(path), KEY_CLASSES, key);
		if (!json_is_object(v))
			return perr(p, y2j_mark_member(p->p_doc, rc, key),
			    path,
			    "must be a mapping with the class's token and "
			    "userData, not %s",
			    type_name(v));
		json_object_foreach(v, k2, v2)
		{
			path_join(kpath, sizeof(kpath), path, k2);
			if (strcmp(k2, "token") == 0) {
				if (parse_token(p, v, kpath, k2, NULL) == -1)
					return -1;
			} else if (strcmp(k2, "userData") == 0) {
				if (parse_user_data(p, v, kpath, k2, NULL) ==
				    -1)
					return -1;
			} else
				return unknown_key(
				    p, v, path, k2, secret_class_keys);
		}
		s = &ss->ss_classes[ss->ss_n++];
		s->s_name = key;
		s->s_obj = v;
		strlcpy_rp(s->s_path, path, sizeof(s->s_path));
	}
	return 0;
}

static int
class_cmp(const void *a, const void *b)
{
	return strcmp(((const struct conf_class *)a)->cc_name,
	    ((const struct conf_class *)b)->cc_name);
}

static int
parse_root(struct parse *p, struct secrets *ss, unsigned flags, struct conf *c)
{
	json_t *root = y2j_doc_root(p->p_doc), *rc, *v;
	json_t *defaults = NULL;
	const char *key, *rkey, *other = NULL;
	char path[Y2J_PATH_MAX];
	struct conf_class *cc;
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
		if (other == NULL)
			other = key;
		else if ((strcmp(key, KEY_010) == 0) !=
		    (strcmp(other, KEY_010) == 0))
			return perr(p, y2j_mark_key(p->p_doc, root, key), "",
			    "%s mixes the 0.1.0 form (resourceClass) with "
			    "the 0.1.2 form (resourceClasses, "
			    "resourceClassDefaults); use one",
			    key);
	}
	/* Neither form's key: the reader gets the 0.1.0 message. */
	c->c_form = json_object_get(root, KEY_CLASSES) != NULL ||
	        json_object_get(root, KEY_DEFAULTS) != NULL
	    ? CONF_FORM_012
	    : CONF_FORM_010;
	rkey = c->c_form == CONF_FORM_010 ? KEY_010 : KEY_CLASSES;
	if ((rc = json_object_get(root, rkey)) == NULL)
		return perr(p, y2j_mark_node(p->p_doc, root), "",
		    "missing required key \"%s\"", rkey);
	if (!json_is_object(rc))
		return perr(p, y2j_mark_member(p->p_doc, root, rkey), rkey,
		    "must be a mapping from resource class names "
		    "(\"namespace/name\") to their settings, not %s",
		    type_name(rc));
	if ((n = json_object_size(rc)) == 0)
		return perr(p, y2j_mark_member(p->p_doc, root, rkey), rkey,
		    "must list at least one resource class");
	if (c->c_form == CONF_FORM_012 &&
	    check_defaults(p, root, &defaults) == -1)
		return -1;
	if (c->c_form == CONF_FORM_010 && ss->ss_p != NULL &&
	    (ss->ss_n > 0 || ss->ss_defaults != NULL))
		return perr(ss->ss_p, y2j_mark_node(ss->ss_p->p_doc, NULL), "",
		    "%s uses the 0.1.0 form (resourceClass), which keeps each "
		    "token in %s; secrets.yaml applies to the 0.1.2 form "
		    "(resourceClasses) only",
		    p->p_name, p->p_name);
	c->c_classes = xcalloc(n, sizeof(*c->c_classes));
	i = 0;
	json_object_foreach(rc, key, v)
	{
		if (i == CONF_CLASSES_LIMIT)
			return perr(p, y2j_mark_key(p->p_doc, rc, key), rkey,
			    "too many resource classes (at most %d)",
			    CONF_CLASSES_LIMIT);
		if (check_class_name(p, rc, rkey, key,
		        c->c_form == CONF_FORM_010 ? class_keys
		                                   : class_keys_012) == -1)
			return -1;
		cc = &c->c_classes[i];
		c->c_nclasses = ++i;
		cc->cc_name = xstrdup(key);
		cc->cc_line = y2j_mark_key(p->p_doc, rc, key).ym_line;
		cc->cc_col = y2j_mark_key(p->p_doc, rc, key).ym_col;
		class_defaults(cc);
		if (c->c_form == CONF_FORM_010) {
			if (parse_class_010(p, rc, key, cc) == -1)
				return -1;
			continue;
		}
		if (parse_class_012(p, rc, defaults, key, cc) == -1 ||
		    (ss->ss_p != NULL &&
		        apply_secrets(p, ss, rc, defaults, cc) == -1))
			return -1;
		path_join(path, sizeof(path), rkey, key);
		if (cc->cc_token == NULL && !(flags & CONF_NO_SECRETS))
			return perr(p, y2j_mark_key(p->p_doc, rc, key), path,
			    "no runner token: set token for this class in %s, "
			    "or for a daemon run by hand in %s",
			    ss->ss_p != NULL ? ss->ss_p->p_name
			                     : "the secrets file (--secrets)",
			    p->p_name);
	}
	for (i = 0; i < ss->ss_n; i++) {
		if (ss->ss_classes[i].s_used)
			continue;
		path_join(
		    path, sizeof(path), KEY_CLASSES, ss->ss_classes[i].s_name);
		return perr(ss->ss_p,
		    y2j_mark_key(ss->ss_p->p_doc,
		        json_object_get(
		            y2j_doc_root(ss->ss_p->p_doc), KEY_CLASSES),
		        ss->ss_classes[i].s_name),
		    path,
		    "not a resource class of %s (list it there too, even as "
		    "\"%s\": {})",
		    p->p_name, ss->ss_classes[i].s_name);
	}
	qsort(c->c_classes, c->c_nclasses, sizeof(*c->c_classes), class_cmp);
	return 0;
}

static int
parse_doc(struct parse *p, const char *name, const char *buf, size_t len,
    char *err, size_t errlen)
{
	struct y2j_error yerr;

	memset(p, 0, sizeof(*p));
	p->p_name = name;
	p->p_err = err;
	p->p_errlen = errlen;
	if (len > CONF_FILE_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", name,
		    CONF_FILE_MAX);
		return -1;
	}
	if ((p->p_doc = y2j_parse(buf, len, &yerr)) == NULL) {
		perr(p, yerr.ye_mark, yerr.ye_path, "%s", yerr.ye_msg);
		return -1;
	}
	return 0;
}

struct conf *
conf_parse_files(const char *name, const char *buf, size_t len,
    const char *sname, const char *sbuf, size_t slen, unsigned flags,
    char *err, size_t errlen)
{
	struct parse p, sp;
	struct secrets ss;
	struct conf *c = NULL;

	memset(&ss, 0, sizeof(ss));
	memset(&sp, 0, sizeof(sp));
	if (parse_doc(&p, name, buf, len, err, errlen) == -1)
		return NULL;
	p.p_flags = flags;
	if (sname != NULL && !(flags & CONF_NO_SECRETS)) {
		if (parse_doc(&sp, sname, sbuf, slen, err, errlen) == -1)
			goto out;
		ss.ss_p = &sp;
		if (parse_secrets_doc(&ss) == -1)
			goto out;
	}
	c = xcalloc(1, sizeof(*c));
	c->c_path = xstrdup(name);
	if (ss.ss_p != NULL)
		c->c_secrets_path = xstrdup(sname);
	if (parse_root(&p, &ss, flags, c) == -1) {
		conf_free(c);
		c = NULL;
	}
out:
	free(ss.ss_classes);
	origins_clear(&p);
	y2j_doc_free(p.p_doc);
	y2j_doc_free(sp.p_doc);
	return c;
}

struct conf *
conf_parse(
    const char *name, const char *buf, size_t len, char *err, size_t errlen)
{
	return conf_parse_files(name, buf, len, NULL, NULL, 0, 0, err, errlen);
}

/* NULL with err set, or the file's bytes (*missing when optional and
 * absent). */
static char *
load_file(const char *path, bool optional, bool *missing, size_t *len,
    char *err, size_t errlen)
{
	char *buf;

	*missing = false;
	/* One byte over the limit tells "too large" from "exactly max". */
	if ((buf = read_file(path, CONF_FILE_MAX + 1, len)) != NULL)
		return buf;
	if (errno == EFBIG)
		snprintf(err, errlen, "%s: larger than %d bytes", path,
		    CONF_FILE_MAX);
	else if (errno == ENOENT && optional)
		*missing = true;
	else
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
	return NULL;
}

struct conf *
conf_load(const char *config, const char *secrets, unsigned flags, char *err,
    size_t errlen)
{
	char *buf, *sbuf = NULL;
	size_t len, slen = 0;
	struct conf *c;
	bool missing;

	if ((buf = load_file(config, false, &missing, &len, err, errlen)) ==
	    NULL)
		return NULL;
	if (secrets != NULL && !(flags & CONF_NO_SECRETS) &&
	    (sbuf = load_file(secrets, flags & CONF_SECRETS_OPTIONAL, &missing,
	         &slen, err, errlen)) == NULL &&
	    !missing) {
		explicit_bzero(buf, len);
		free(buf);
		return NULL;
	}
	c = conf_parse_files(config, buf, len, sbuf != NULL ? secrets : NULL,
	    sbuf, slen, flags, err, errlen);
	explicit_bzero(buf, len);
	free(buf);
	if (sbuf != NULL) {
		explicit_bzero(sbuf, slen);
		free(sbuf);
	}
	return c;
}

struct conf *
conf_parse_flags(const char *name, const char *buf, size_t len, unsigned flags,
    char *err, size_t errlen)
{
	return conf_parse_files(
	    name, buf, len, NULL, NULL, 0, flags, err, errlen);
}

struct conf *
conf_load_flags(const char *path, unsigned flags, char *err, size_t errlen)
{
	return conf_load(path, NULL, flags, err, errlen);
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

static void
wipe(char **s)
{
	if (*s == NULL)
		return;
	explicit_bzero(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

static void
class_clear(struct conf_class *cc)
{
	size_t i;

	wipe(&cc->cc_token);
	wipe(&cc->cc_user_data);
	free(cc->cc_name);
	free(cc->cc_idle_timeout);
	scale_policy_clear(&cc->cc_scaling);
	free(cc->cc_runner.cr_working_dir);
	free(cc->cc_runner.cr_task_agent_dir);
	for (i = 0; i < cc->cc_runner.cr_nprefix; i++)
		free(cc->cc_runner.cr_prefix[i]);
	free(cc->cc_runner.cr_prefix);
	free(cc->cc_runner.cr_max_run_time);
	for (i = 0; i < cc->cc_ndisks; i++) {
		free(cc->cc_disks[i].cd_serial);
		free(cc->cc_disks[i].cd_path);
		free(cc->cc_disks[i].cd_fs_type);
	}
	free(cc->cc_disks);
	json_decref(cc->cc_spec);
}

static void unregister_secrets(struct conf *);

void
conf_free(struct conf *c)
{
	size_t i;

	if (c == NULL)
		return;
	unregister_secrets(c);
	for (i = 0; i < c->c_nclasses; i++)
		class_clear(&c->c_classes[i]);
	free(c->c_classes);
	free(c->c_path);
	free(c->c_secrets_path);
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
	size_t i;

	unregister_secrets(c);
	for (i = 0; i < c->c_nclasses; i++) {
		wipe(&c->c_classes[i].cc_token);
		wipe(&c->c_classes[i].cc_user_data);
	}
}

void
conf_register_secrets(struct conf *c)
{
	size_t i;

	if (c->c_redacted)
		return;
	for (i = 0; i < c->c_nclasses; i++)
		if (c->c_classes[i].cc_token != NULL)
			log_secret_add(c->c_classes[i].cc_token);
	c->c_redacted = true;
}

/* A configuration that no longer runs: its tokens leave the list (each
 * stays while another running configuration registered it too). */
static void
unregister_secrets(struct conf *c)
{
	size_t i;

	if (!c->c_redacted)
		return;
	for (i = 0; i < c->c_nclasses; i++)
		if (c->c_classes[i].cc_token != NULL)
			log_secret_remove(c->c_classes[i].cc_token);
	c->c_redacted = false;
}

/* The summary ---------------------------------------------------------------
 */

static void sb_printf(struct strbuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

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
sb_value(struct strbuf *sb, const char *label, json_t *v)
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

static void
sb_string(struct strbuf *sb, const char *label, const char *s)
{
	json_t *v = json_string(s);

	sb_value(sb, label, v);
	json_decref(v);
}

/* What a reader checks first: the boot source, memory and CPU. */
static void
describe_spec(struct strbuf *sb, json_t *spec)
{
	json_t *vol, *domain, *v;
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

static void
describe_duration(char *buf, size_t size, const char *written, uint64_t ms)
{
	char why[128];
	uint64_t ns;

	if (written == NULL)
		strlcpy_rp(buf, "none", size);
	else if (duration_parse(written, &ns, why, sizeof(why)) == 0 &&
	    ns % 1000000 == 0)
		duration_format_ms(ms, buf, size);
	else
		strlcpy_rp(buf, written, size);
}

/* The controls that differ from the 0.1.0 behaviour, and the rest of what
 * the 0.1.2 form adds; nothing for a plain 0.1.0 class. */
static void
describe_extras(struct strbuf *sb, const struct conf_class *cc)
{
	const struct scale_controls *b = &cc->cc_scaling.sp_base;
	const struct conf_runner *r = &cc->cc_runner;
	char d[64];
	size_t i;

	if (b->sc_headroom == SCALE_HEADROOM_AUTO)
		sb_printf(sb, " headroom=auto");
	else if (b->sc_headroom > 0)
		sb_printf(sb, " headroom=%u", b->sc_headroom);
	if (b->sc_max_surge > 0)
		sb_printf(sb, " maxSurge=%u", b->sc_max_surge);
	if (b->sc_delay_ms > 0) {
		duration_format_ms(b->sc_delay_ms, d, sizeof(d));
		sb_printf(sb, " scaleDownDelay=%s", d);
	}
	for (i = 0; i < cc->cc_scaling.sp_nschedules; i++)
		sb_printf(sb, "%s%s", i == 0 ? " schedules=" : ",",
		    cc->cc_scaling.sp_schedules[i].ss_name);
	if (strcmp(r->cr_working_dir, CONF_WORKING_DIR_DEFAULT) != 0)
		sb_string(sb, "workingDirectory", r->cr_working_dir);
	if (strcmp(r->cr_task_agent_dir, CONF_TASK_AGENT_DIR_DEFAULT) != 0)
		sb_string(sb, "taskAgentDirectory", r->cr_task_agent_dir);
	for (i = 0; i < r->cr_nprefix &&
	     (i >= nitems(default_prefix) - 1 ||
	         strcmp(r->cr_prefix[i], default_prefix[i]) == 0);
	     i++)
		;
	if (i < r->cr_nprefix || r->cr_nprefix != nitems(default_prefix) - 1)
		sb_printf(sb, " commandPrefix=%s",
		    r->cr_nprefix == 0 ? "[] (jobs run as " CONF_AGENT_USER
		                         " and can read the runner token)"
		                       : "custom");
	if (r->cr_home_ssh_keys)
		sb_printf(sb, " useHomeSSHDirForCheckoutKeys=true");
	if (r->cr_max_run_time != NULL) {
		describe_duration(
		    d, sizeof(d), r->cr_max_run_time, r->cr_max_run_time_ms);
		sb_printf(sb, " maxRunTime=%s", d);
	}
	if (cc->cc_user_data != NULL)
		sb_printf(sb, " userData=set");
	for (i = 0; i < cc->cc_ndisks; i++)
		sb_printf(sb, "%s%s:%s:%s", i == 0 ? " emptyDiskMounts=" : ",",
		    cc->cc_disks[i].cd_serial, cc->cc_disks[i].cd_path,
		    cc->cc_disks[i].cd_fs_type);
}

char *
conf_summary(const struct conf *c)
{
	const struct conf_class *cc;
	struct strbuf sb;
	json_t *def = default_spec();
	char idle[64];
	size_t i;

	sb.sb_cap = 256;
	sb.sb_len = 0;
	sb.sb_buf = xmalloc(sb.sb_cap);
	sb.sb_buf[0] = '\0';
	for (i = 0; i < c->c_nclasses; i++) {
		cc = &c->c_classes[i];
		describe_duration(idle, sizeof(idle), cc->cc_idle_timeout,
		    cc->cc_idle_timeout_ms);
		sb_printf(&sb,
		    "%s: minReplicas=%u maxReplicas=%u "
		    "idleTimeout=%s",
		    cc->cc_name, cc->cc_scaling.sp_base.sc_min,
		    cc->cc_scaling.sp_base.sc_max, idle);
		describe_extras(&sb, cc);
		describe_spec(&sb, cc->cc_spec);
		if (json_equal(cc->cc_spec, def))
			sb_printf(&sb, " (default spec)");
		sb_printf(&sb, "\n");
	}
	json_decref(def);
	return sb.sb_buf;
}
