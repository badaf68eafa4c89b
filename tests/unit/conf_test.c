/*
 * Golden-file tests: each tests/config/<case>.yaml is loaded; the result is
 * compared with <case>.ok (conf_summary() output, then one line per class
 * with its position, token and canonical spec JSON) or <case>.err (the one
 * error line).  RP_UPDATE_GOLDEN=1 rewrites the expected files instead
 * (from tests/: RP_UPDATE_GOLDEN=1 ../build/tests/conf_test); read the diff
 * before committing it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "conf.h"
#include "log.h"
#include "tz.h"
#include "util.h"

#define CONFIG_DIR "config"
#define GOLDEN_MIN 30 /* fewer means the directory was not found */

/* deploy/chart/values.schema.json: provisioner.resourceClass.name and the
 * keys of provisioner.resourceClasses (the 0.1.2 rule). */
#define CHART_NAME_RE "^[a-z0-9][a-z0-9_-]*/[A-Za-z0-9][A-Za-z0-9_:+-]*$"
/* The shape messages may carry (conf_class_name_valid). */
#define SHAPE_NAME_RE                                                         \
	"^[A-Za-z0-9][A-Za-z0-9._:+-]*/[A-Za-z0-9][A-Za-z0-9._:+-]*$"
#define CHART_SCHEMA "../deploy/chart/values.schema.json"

static char **cases;
static size_t ncases;

/* Appends to *out (freeing the old text). */
static void cat(char **out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cat(char **out, const char *fmt, ...)
{
	va_list ap;
	char *add, *both;

	va_start(ap, fmt);
	if (vasprintf(&add, fmt, ap) == -1)
		fail_msg("vasprintf");
	va_end(ap);
	both = xasprintf("%s%s", *out, add);
	free(add);
	free(*out);
	*out = both;
}

static void
cat_controls(char **out, const struct scale_controls *c, unsigned set)
{
	if (set & SCALE_CTL_MIN)
		cat(out, " min=%u", c->sc_min);
	if (set & SCALE_CTL_MAX)
		cat(out, " max=%u", c->sc_max);
	if ((set & SCALE_CTL_HEADROOM) &&
	    c->sc_headroom == SCALE_HEADROOM_AUTO)
		cat(out, " headroom=auto");
	else if (set & SCALE_CTL_HEADROOM)
		cat(out, " headroom=%u", c->sc_headroom);
	if (set & SCALE_CTL_SURGE)
		cat(out, " maxSurge=%u", c->sc_max_surge);
	if (set & SCALE_CTL_DELAY)
		cat(out, " delay_ms=%llu", (unsigned long long)c->sc_delay_ms);
}

static void
cat_json_string(char **out, const char *s)
{
	json_t *j = json_string(s);
	char *d = json_dumps(j, JSON_ENCODE_ANY);

	cat(out, "%s", d);
	free(d);
	json_decref(j);
}

/* What the 0.1.2 form adds, in full. */
static void
cat_012(char **out, const struct conf_class *cc)
{
	const struct scale_schedule *s;
	const struct conf_runner *r = &cc->cc_runner;
	size_t i;

	cat(out, "  scaling:");
	cat_controls(out, &cc->cc_scaling.sp_base, ~0u);
	cat(out, "\n");
	for (i = 0; i < cc->cc_scaling.sp_nschedules; i++) {
		s = &cc->cc_scaling.sp_schedules[i];
		cat(out,
		    "  schedule %s: tz=%s start=%llx/%x/%x/%x/%x%s%s "
		    "end=%llx/%x/%x/%x/%x%s%s",
		    s->ss_name, tz_name(s->ss_tz),
		    (unsigned long long)s->ss_start.cr_minute,
		    s->ss_start.cr_hour, s->ss_start.cr_dom,
		    s->ss_start.cr_month, s->ss_start.cr_dow,
		    s->ss_start.cr_dom_star ? " dom*" : "",
		    s->ss_start.cr_dow_star ? " dow*" : "",
		    (unsigned long long)s->ss_end.cr_minute, s->ss_end.cr_hour,
		    s->ss_end.cr_dom, s->ss_end.cr_month, s->ss_end.cr_dow,
		    s->ss_end.cr_dom_star ? " dom*" : "",
		    s->ss_end.cr_dow_star ? " dow*" : "");
		cat_controls(out, &s->ss_ctl, s->ss_set);
		cat(out, "\n");
	}
	cat(out,
	    "  runner: workingDirectory=%s taskAgentDirectory=%s "
	    "commandPrefix=[",
	    r->cr_working_dir, r->cr_task_agent_dir);
	for (i = 0; i < r->cr_nprefix; i++)
		cat(out, "%s%s", i > 0 ? "," : "", r->cr_prefix[i]);
	cat(out, "] homeSSH=%d maxRunTime=%s/%llu\n", r->cr_home_ssh_keys,
	    r->cr_max_run_time != NULL ? r->cr_max_run_time : "-",
	    (unsigned long long)r->cr_max_run_time_ms);
	if (cc->cc_user_data != NULL) {
		cat(out, "  userData: ");
		cat_json_string(out, cc->cc_user_data);
		cat(out, "\n");
	}
	for (i = 0; i < cc->cc_ndisks; i++)
		cat(out, "  disk: %s %s %s\n", cc->cc_disks[i].cd_serial,
		    cc->cc_disks[i].cd_fs_type, cc->cc_disks[i].cd_path);
}

/* <case>.yaml, with <case>.secrets as its secrets file when present. */
static char *
golden_output(const char *yaml, int *is_err)
{
	const struct conf_class *cc;
	char err[CONF_ERR_MAX], *out, *spec, *secrets;
	struct conf *c;
	size_t i;

	secrets = xasprintf("%.*s.secrets", (int)(strlen(yaml) - 5), yaml);
	if (access(secrets, F_OK) == -1) {
		free(secrets);
		secrets = NULL;
	}
	c = conf_load(yaml, secrets, 0, err, sizeof(err));
	free(secrets);
	if (c == NULL) {
		*is_err = 1;
		return xasprintf("%s\n", err);
	}
	*is_err = 0;
	out = conf_summary(c);
	for (i = 0; i < c->c_nclasses; i++) {
		cc = &c->c_classes[i];
		/* The summary is what --check-config prints: no secret. */
		if (strstr(out, cc->cc_token) != NULL ||
		    (cc->cc_user_data != NULL &&
		        strstr(out, cc->cc_user_data) != NULL))
			fail_msg("%s: summary shows a secret of %s", yaml,
			    cc->cc_name);
	}
	for (i = 0; i < c->c_nclasses; i++) {
		cc = &c->c_classes[i];
		spec = json_dumps(cc->cc_spec, JSON_SORT_KEYS | JSON_COMPACT);
		cat(&out, "%s at %d:%d token=%s idle_ms=%llu spec=%s\n",
		    cc->cc_name, cc->cc_line, cc->cc_col, cc->cc_token,
		    (unsigned long long)cc->cc_idle_timeout_ms, spec);
		free(spec);
		if (c->c_form == CONF_FORM_012)
			cat_012(&out, cc);
	}
	conf_free(c);
	return out;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f;

	if ((f = fopen(path, "w")) == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	fputs(text, f);
	if (fclose(f) != 0)
		fail_msg("%s: %s", path, strerror(errno));
}

static void
test_golden(void **state)
{
	const char *name = *state;
	char *yaml, *okp, *errp, *got, *want;
	int is_err, have_ok, have_err;
	size_t len;

	yaml = xasprintf("%s/%s.yaml", CONFIG_DIR, name);
	okp = xasprintf("%s/%s.ok", CONFIG_DIR, name);
	errp = xasprintf("%s/%s.err", CONFIG_DIR, name);
	got = golden_output(yaml, &is_err);
	if (getenv("RP_UPDATE_GOLDEN") != NULL &&
	    strcmp(getenv("RP_UPDATE_GOLDEN"), "1") == 0) {
		write_file(is_err ? errp : okp, got);
		unlink(is_err ? okp : errp);
		goto out;
	}
	have_ok = access(okp, F_OK) == 0;
	have_err = access(errp, F_OK) == 0;
	if (have_ok == have_err)
		fail_msg("%s: needs exactly one of %s.ok and %s.err", yaml,
		    name, name);
	if ((want = read_file(is_err ? errp : okp, 1 << 20, &len)) == NULL)
		fail_msg("%s: %s instead of the expected %s:\n%s", yaml,
		    is_err ? "an error" : "success",
		    have_ok ? "success" : "error", got);
	if (strcmp(got, want) != 0)
		fail_msg("%s: got\n%s-- want\n%s", yaml, got, want);
	free(want);
out:
	free(got);
	free(yaml);
	free(okp);
	free(errp);
}

static int
case_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
find_cases(void)
{
	struct dirent *de;
	size_t n;
	DIR *d;

	if ((d = opendir(CONFIG_DIR)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		n = strlen(de->d_name);
		if (n <= 5 || strcmp(de->d_name + n - 5, ".yaml") != 0)
			continue;
		cases = xrealloc(cases, ncases + 1, sizeof(*cases));
		cases[ncases++] = xstrndup(de->d_name, n - 5);
	}
	closedir(d);
	qsort(cases, ncases, sizeof(*cases), case_cmp);
}

static void
test_golden_count(void **state)
{
	(void)state;
	if (ncases < GOLDEN_MIN)
		fail_msg("%zu golden cases in %s/, expected at least %d (run "
		         "from tests/)",
		    ncases, CONFIG_DIR, GOLDEN_MIN);
}

/* Loads text (as from a file named config.yaml); NULL on error. */
static struct conf *
load(const char *text, char *err, size_t errlen)
{
	return conf_parse("config.yaml", text, strlen(text), err, errlen);
}

static void
test_find_and_sorted(void **state)
{
	static const char yaml[] = "resourceClass:\n"
	                           "  c/c: {token: t3}\n"
	                           "  a/a: {token: t1}\n"
	                           "  b/B: {token: t0}\n"
	                           "  b/b: {token: t2}\n";
	const struct conf_class *cc;
	char err[CONF_ERR_MAX];
	struct conf *c;

	(void)state;
	assert_non_null(c = load(yaml, err, sizeof(err)));
	assert_string_equal(c->c_path, "config.yaml");
	assert_int_equal(c->c_nclasses, 4);
	assert_string_equal(c->c_classes[0].cc_name, "a/a");
	assert_string_equal(c->c_classes[1].cc_name, "b/B");
	assert_string_equal(c->c_classes[2].cc_name, "b/b");
	assert_string_equal(c->c_classes[3].cc_name, "c/c");
	assert_non_null(cc = conf_class_find(c, "b/b"));
	assert_string_equal(cc->cc_token, "t2");
	assert_int_equal(cc->cc_line, 5);
	assert_int_equal(cc->cc_col, 3);
	assert_non_null(cc = conf_class_find(c, "b/B"));
	assert_string_equal(cc->cc_token, "t0");
	assert_non_null(conf_class_find(c, "a/a"));
	assert_non_null(conf_class_find(c, "c/c"));
	assert_null(conf_class_find(c, "A/a"));
	assert_null(conf_class_find(c, "d/d"));
	assert_null(conf_class_find(c, ""));
	assert_null(conf_class_find(c, NULL));
	assert_null(conf_class_find(NULL, "a/a"));
	conf_free(c);
	conf_free(NULL);
}

static void
test_drop_tokens(void **state)
{
	static const char yaml[] = "resourceClass:\n"
	                           "  a/a: {token: rtok-first}\n"
	                           "  b/b: {token: rtok-second}\n";
	char err[CONF_ERR_MAX], *sum;
	struct conf *c;

	(void)state;
	assert_non_null(c = load(yaml, err, sizeof(err)));
	conf_drop_tokens(c);
	assert_null(c->c_classes[0].cc_token);
	assert_null(c->c_classes[1].cc_token);
	/* Everything else stays usable. */
	assert_non_null(conf_class_find(c, "b/b"));
	sum = conf_summary(c);
	assert_non_null(strstr(sum, "b/b: minReplicas=3 maxReplicas=10"));
	free(sum);
	conf_drop_tokens(c);
	conf_free(c);
}

static void
test_register_secrets(void **state)
{
	static const char yaml[] = "resourceClass:\n"
	                           "  a/a: {token: rtok-first-0123456789}\n"
	                           "  b/b: {token: rtok-second-0123456789}\n";
	char err[CONF_ERR_MAX], buf[LOG_LINE_MAX + 1];
	struct conf *c;
	ssize_t n;
	int fds[2];

	(void)state;
	assert_int_equal(pipe(fds), 0);
	log_init("conf_test", LOG_LVL_INFO);
	log_set_fd(fds[1]);
	assert_non_null(c = load(yaml, err, sizeof(err)));
	conf_register_secrets(c);
	log_info("tokens rtok-first-0123456789 and rtok-second-0123456789");
	n = read(fds[0], buf, sizeof(buf) - 1);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_null(strstr(buf, "rtok-first"));
	assert_null(strstr(buf, "rtok-second"));
	assert_non_null(strstr(buf, "[REDACTED]"));
	log_set_fd(-1);
	log_secrets_clear();
	close(fds[0]);
	close(fds[1]);
	conf_free(c);
}

/* A running configuration's tokens are redacted as long as it runs: one
 * replaced by a reload (a rotated runner token) leaves the list, so the
 * list holds what runs, however many reloads there were. */
static void
test_secrets_follow_the_running_conf(void **state)
{
	char err[CONF_ERR_MAX], yaml[256];
	struct conf *run = NULL, *c;
	int i;

	(void)state;
	log_secrets_clear();
	for (i = 0; i < 100; i++) {
		snprintf(yaml, sizeof(yaml),
		    "resourceClass:\n"
		    "  a/a: {token: rtok-rotated-%03d-0123456789}\n"
		    "  b/b: {token: rtok-fixed-0123456789}\n",
		    i);
		assert_non_null(c = load(yaml, err, sizeof(err)));
		conf_register_secrets(c);
		conf_register_secrets(c); /* once per configuration */
		conf_free(run);
		run = c;
		assert_int_equal(log_secret_count(), 2);
	}
	conf_drop_tokens(run);
	assert_int_equal(log_secret_count(), 0);
	conf_free(run);
	assert_int_equal(log_secret_count(), 0);
}

/* The chart's regex and the loader's rule agree on every string over an
 * alphabet that holds each kind of character, up to four bytes, and both
 * forbid more than 253 bytes; so do the message shape and its regex. */
static void
test_name_rule_matches_chart(void **state)
{
	static const char alpha[] = "aZ0._:+-/ @\xc3";
	char s[8];
	size_t n = strlen(alpha), len, i, total, k;
	regex_t re, shape;
	int want, got;

	(void)state;
	assert_int_equal(
	    regcomp(&re, CHART_NAME_RE, REG_EXTENDED | REG_NOSUB), 0);
	assert_int_equal(
	    regcomp(&shape, SHAPE_NAME_RE, REG_EXTENDED | REG_NOSUB), 0);
	for (len = 0; len <= 4; len++) {
		for (total = 1, i = 0; i < len; i++)
			total *= n;
		for (k = 0; k < total; k++) {
			size_t x = k;

			for (i = 0; i < len; i++) {
				s[i] = alpha[x % n];
				x /= n;
			}
			s[len] = '\0';
			want = regexec(&re, s, 0, NULL, 0) == 0 ? 0 : -1;
			got = conf_class_name_allowed(s);
			if (want != got)
				fail_msg(
				    "\"%s\": regex %d, conf %d", s, want, got);
			want = regexec(&shape, s, 0, NULL, 0) == 0 ? 0 : -1;
			got = conf_class_name_valid(s);
			if (want != got)
				fail_msg("\"%s\": shape regex %d, conf %d", s,
				    want, got);
		}
	}
	regfree(&re);
	regfree(&shape);
	memset(s, 0, sizeof(s));
	{
		char longest[300];

		memset(longest, 'a', sizeof(longest));
		longest[0] = 'o';
		longest[1] = '/';
		longest[253] = '\0';
		assert_int_equal(conf_class_name_allowed(longest), 0);
		longest[253] = 'a';
		longest[254] = '\0';
		assert_int_equal(conf_class_name_allowed(longest), -1);
		assert_int_equal(conf_class_name_valid(longest), -1);
	}
	assert_int_equal(conf_class_name_valid(NULL), -1);
	assert_int_equal(conf_class_name_allowed(NULL), -1);
	assert_int_equal(conf_class_name_valid("My_Org/Runner:v1+gpu"), 0);
	assert_int_equal(conf_class_name_allowed("My_Org/Runner:v1+gpu"), -1);
	assert_int_equal(conf_class_name_allowed("my_org/Runner:v1+gpu"), 0);
}

/* The chart validates the same names with the same pattern. */
static void
test_chart_uses_same_pattern(void **state)
{
	json_error_t jerr;
	const char *pat;
	json_t *schema, *p;

	(void)state;
	if ((schema = json_load_file(CHART_SCHEMA, 0, &jerr)) == NULL)
		fail_msg("%s: %s", CHART_SCHEMA, jerr.text);
	p = json_object_get(
	    json_object_get(
	        json_object_get(
	            json_object_get(
	                json_object_get(json_object_get(json_object_get(schema,
	                                                    "properties"),
	                                    "provisioner"),
	                    "properties"),
	                "resourceClass"),
	            "properties"),
	        "name"),
	    "pattern");
	assert_non_null(pat = json_string_value(p));
	/* The chart also allows "" (its default, "no class"). */
	if (strncmp(pat, "^$|", 3) == 0)
		pat += 3;
	assert_string_equal(pat, CHART_NAME_RE);
	p = json_object_get(
	    json_object_get(
	        json_object_get(
	            json_object_get(
	                json_object_get(json_object_get(schema, "properties"),
	                    "provisioner"),
	                "properties"),
	            "resourceClasses"),
	        "propertyNames"),
	    "pattern");
	assert_string_equal(json_string_value(p), CHART_NAME_RE);
	json_decref(schema);
}

static void
test_load_errors(void **state)
{
	char err[CONF_ERR_MAX], dir[] = "/tmp/conf_test.XXXXXX", *path, *buf;
	struct conf *c;
	size_t len;
	int fd;

	(void)state;
	assert_null(conf_load(
	    "config/does-not-exist.yaml", NULL, 0, err, sizeof(err)));
	assert_string_equal(
	    err, "config/does-not-exist.yaml: No such file or directory");
	assert_null(conf_load(CONFIG_DIR, NULL, 0, err, sizeof(err)));
	assert_string_equal(err, "config: Is a directory");

	/* Exactly CONF_FILE_MAX bytes is accepted, one more is not. */
	assert_non_null(mkdtemp(dir));
	path = xasprintf("%s/config.yaml", dir);
	len = CONF_FILE_MAX;
	buf = xmalloc(len + 2);
	memset(buf, ' ', len + 1);
	memcpy(buf, "resourceClass: {a/b: {token: t}}\n#",
	    strlen("resourceClass: {a/b: {token: t}}\n#"));
	buf[len - 1] = '\n';
	assert_true(
	    (fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	c = conf_load(path, NULL, 0, err, sizeof(err));
	if (c == NULL)
		fail_msg("%s", err);
	conf_free(c);
	assert_true((fd = open(path, O_WRONLY | O_APPEND)) >= 0);
	assert_int_equal(write(fd, "\n", 1), 1);
	close(fd);
	assert_null(conf_load(path, NULL, 0, err, sizeof(err)));
	free(buf);
	buf = xasprintf("%s: larger than 4194304 bytes", path);
	assert_string_equal(err, buf);
	assert_null(conf_parse("mem.yaml", "resourceClass: {}",
	    (size_t)CONF_FILE_MAX + 1, err, sizeof(err)));
	assert_string_equal(err, "mem.yaml: larger than 4194304 bytes");
	unlink(path);
	rmdir(dir);
	free(buf);
	free(path);
}

/* --secrets: a missing default file is skipped, a given one must exist; a
 * child that needs no secrets does not read them at all. */
static void
test_secrets_file(void **state)
{
	static const char config[] = "resourceClasses:\n  \"a/b\": {}\n";
	static const char secrets[] = "resourceClasses:\n  \"a/b\":\n"
	                              "    token: rtok-sec-0123\n"
	                              "    userData: \"echo hi\\n\"\n";
	char err[CONF_ERR_MAX], dir[] = "/tmp/conf_test.XXXXXX", *cpath,
	                        *spath;
	char *missing, *want;
	struct conf *c;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	cpath = xasprintf("%s/config.yaml", dir);
	spath = xasprintf("%s/secrets.yaml", dir);
	missing = xasprintf("%s/absent.yaml", dir);
	assert_true((fd = open(cpath, O_WRONLY | O_CREAT, 0600)) >= 0);
	assert_int_equal(
	    write(fd, config, strlen(config)), (ssize_t)strlen(config));
	close(fd);
	assert_true((fd = open(spath, O_WRONLY | O_CREAT, 0600)) >= 0);
	assert_int_equal(
	    write(fd, secrets, strlen(secrets)), (ssize_t)strlen(secrets));
	close(fd);

	/* Both files. */
	assert_non_null(c = conf_load(cpath, spath, 0, err, sizeof(err)));
	assert_string_equal(c->c_secrets_path, spath);
	assert_string_equal(c->c_classes[0].cc_token, "rtok-sec-0123");
	assert_string_equal(c->c_classes[0].cc_user_data, "echo hi\n");
	conf_drop_tokens(c);
	assert_null(c->c_classes[0].cc_token);
	assert_null(c->c_classes[0].cc_user_data);
	conf_free(c);

	/* The default path, missing: skipped, and then the token is. */
	assert_null(conf_load(
	    cpath, missing, CONF_SECRETS_OPTIONAL, err, sizeof(err)));
	want = xasprintf("%s:2:3: resourceClasses.\"a/b\": no runner token: "
	                 "set token for this class in the secrets file "
	                 "(--secrets), or for a daemon run by hand in %s",
	    cpath, cpath);
	assert_string_equal(err, want);
	free(want);
	/* A given path must exist. */
	assert_null(conf_load(cpath, missing, 0, err, sizeof(err)));
	want = xasprintf("%s: No such file or directory", missing);
	assert_string_equal(err, want);
	free(want);
	/* The poller: no secrets read, none required. */
	assert_non_null(
	    c = conf_load(cpath, missing, CONF_NO_SECRETS, err, sizeof(err)));
	assert_null(c->c_secrets_path);
	assert_null(c->c_classes[0].cc_token);
	conf_free(c);
	assert_non_null(c = conf_load(cpath, "/dev/null/x", CONF_NO_SECRETS,
	                    err, sizeof(err)));
	conf_free(c);

	unlink(cpath);
	unlink(spath);
	rmdir(dir);
	free(cpath);
	free(spath);
	free(missing);
}

static char *
classes_doc(size_t n)
{
	size_t i, cap = 64 + n * 40, len = 0;
	char *s = xmalloc(cap);

	len += (size_t)snprintf(s, cap, "resourceClass:\n");
	for (i = 0; i < n; i++)
		len += (size_t)snprintf(
		    s + len, cap - len, "  org/c%04zu: {token: t%zu}\n", i, i);
	return s;
}

static void
test_classes_limit(void **state)
{
	char err[CONF_ERR_MAX], *s;
	struct conf *c;

	(void)state;
	s = classes_doc(CONF_CLASSES_LIMIT);
	assert_non_null(c = load(s, err, sizeof(err)));
	assert_int_equal(c->c_nclasses, CONF_CLASSES_LIMIT);
	assert_string_equal(conf_class_find(c, "org/c0999")->cc_token, "t999");
	conf_free(c);
	free(s);
	s = classes_doc(CONF_CLASSES_LIMIT + 1);
	assert_null(load(s, err, sizeof(err)));
	assert_string_equal(err,
	    "config.yaml:1002:3: resourceClass: too many "
	    "resource classes (at most 1000)");
	free(s);
}

/* Errors fit the caller's buffer and stay one line. */
static void
test_error_buffer(void **state)
{
	static const char yaml[] =
	    "resourceClass:\n  \"a/b\":\n    token: x\n    \"bad\\nkey\": 1\n";
	char err[CONF_ERR_MAX], small[16];

	(void)state;
	assert_null(load(yaml, err, sizeof(err)));
	assert_string_equal(err,
	    "config.yaml:4:5: resourceClass.\"a/b\": "
	    "unknown key \"bad\\nkey\" (known keys: token, idleTimeout, "
	    "minReplicas, maxReplicas, spec)");
	memset(small, 'x', sizeof(small));
	assert_null(load(yaml, small, sizeof(small)));
	assert_string_equal(small, "config.yaml:4:5");
}

/* A rejected token is never quoted in the message. */
static void
test_error_hides_token(void **state)
{
	static const char *const yaml[] = {
		"resourceClass: {a/b: {token: 12345678901234567890123}}\n",
		"resourceClass: {a/b: {token: \"s3cr3t value\"}}\n",
		"resourceClass: {a/b: {token: !!int s3cr3t}}\n",
		"resourceClass: {a/b: {token: 1234567890.5}}\n",
	};
	char err[CONF_ERR_MAX];
	size_t i;

	(void)state;
	for (i = 0; i < nitems(yaml); i++) {
		assert_null(load(yaml[i], err, sizeof(err)));
		assert_null(strstr(err, "s3cr3t"));
		assert_null(strstr(err, "1234567890"));
	}
}

/* What the poller gets: the configuration without a runner token, which
 * the loader takes without tokens (CONF_NO_SECRETS) and reads as the
 * original: same classes, same settings, no secret anywhere. */
static void
test_strip_secrets(void **state)
{
	/* An alias too: the copy is stripped, not only the anchored one. */
	static const char valid[] =
	    "resourceClass:\n"
	    "  \"my-org/a\": &a\n"
	    "    token: \"rt-a-secret-0011\"\n"
	    "    idleTimeout: \"10m\"\n"
	    "    maxReplicas: 4\n"
	    "    spec: {domain: {resources: {requests: {memory: \"2Gi\"}}}}\n"
	    "  \"my-org/b\": *a\n";
	char err[CONF_ERR_MAX];
	struct conf *full, *pub;
	size_t len, i;
	char *text;

	(void)state;
	full =
	    conf_parse("config.yaml", valid, strlen(valid), err, sizeof(err));
	assert_non_null(full);
	text = conf_strip_secrets(valid, strlen(valid), &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_null(strstr(text, "rt-a-secret"));
	assert_null(strstr(text, "token"));
	/* Without CONF_NO_SECRETS a token is required... */
	pub = conf_parse("config.yaml", text, len, err, sizeof(err));
	assert_null(pub);
	assert_non_null(strstr(err, "missing required key \"token\""));
	/* ... with it, the same configuration without secrets. */
	pub = conf_parse_flags(
	    "config.yaml", text, len, CONF_NO_SECRETS, err, sizeof(err));
	assert_non_null(pub);
	assert_int_equal(pub->c_nclasses, 2);
	for (i = 0; i < 2; i++) {
		assert_string_equal(
		    pub->c_classes[i].cc_name, full->c_classes[i].cc_name);
		assert_null(pub->c_classes[i].cc_token);
		assert_non_null(full->c_classes[i].cc_token);
		assert_int_equal(
		    pub->c_classes[i].cc_scaling.sp_base.sc_max, 4);
		assert_true(pub->c_classes[i].cc_idle_timeout_ms == 600000);
		assert_true(json_equal(
		    pub->c_classes[i].cc_spec, full->c_classes[i].cc_spec));
	}
	assert_null(conf_strip_secrets("a: [", 4, &len));
	conf_free(pub);
	conf_free(full);
	free(text);
}

int
main(void)
{
	const struct CMUnitTest unit[] = {
		cmocka_unit_test(test_golden_count),
		cmocka_unit_test(test_find_and_sorted),
		cmocka_unit_test(test_drop_tokens),
		cmocka_unit_test(test_register_secrets),
		cmocka_unit_test(test_secrets_follow_the_running_conf),
		cmocka_unit_test(test_name_rule_matches_chart),
		cmocka_unit_test(test_chart_uses_same_pattern),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_secrets_file),
		cmocka_unit_test(test_classes_limit),
		cmocka_unit_test(test_error_buffer),
		cmocka_unit_test(test_error_hides_token),
		cmocka_unit_test(test_strip_secrets),
	};
	struct CMUnitTest *golden;
	size_t i;
	int failed;

	find_cases();
	golden = xcalloc(ncases, sizeof(*golden));
	for (i = 0; i < ncases; i++) {
		golden[i].name = cases[i];
		golden[i].test_func = test_golden;
		golden[i].initial_state = cases[i];
	}
	failed = cmocka_run_group_tests_name("conf", unit, NULL, NULL);
	failed +=
	    _cmocka_run_group_tests("conf_golden", golden, ncases, NULL, NULL);
	for (i = 0; i < ncases; i++)
		free(cases[i]);
	free(cases);
	free(golden);
	return failed;
}
