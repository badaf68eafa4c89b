/*
 * cloudinit.c: the user data is checked with the real tools (cloud-init
 * schema, shellcheck) and read back with the YAML loader cloud-init uses
 * (tests/cloudinit/extract.py), for a table of classes.
 *
 * Run with --emit to print the user data of one class instead
 * (tests/cloudinit/test_cloudinit.py runs the boot script from it):
 *   cloudinit_test --emit NAME TOKEN API_URL [IDLE_TIMEOUT]
 *   cloudinit_test --emit-config CONFIG SECRETS|- API_URL
 * The second loads configuration files (conf_load) and prints the user data
 * of their first class.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "cloudinit.h"
#include "conf.h"
#include "log.h"
#include "util.h"

extern char **environ;

#define PYTHON3       "/usr/bin/python3"
#define SPECIAL_TOKEN "a\"b'c$d\\e: #x"

struct ci_case {
	const char *c_what;
	const char *c_name;
	const char *c_token;
	const char *c_api_url;  /* as passed to cloudinit_userdata */
	const char *c_idle;     /* NULL: unset */
	const char *c_want_url; /* api.url expected, NULL: absent */
};

static const struct ci_case cases[] = {
	{ "default API, no idle timeout", "my-org/linux",
	    "tok-0123456789abcdef", CLOUDINIT_DEFAULT_API_URL, NULL, NULL },
	{ "NULL API address means the default", "my-org/linux",
	    "tok-0123456789abcdef", NULL, "10m", NULL },
	{ "CircleCI Server, idle timeout", "acme/Big_Box:x86+gpu",
	    "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "https://circleci.example.com",
	    "1h30m", "https://circleci.example.com" },
	{ "token with YAML and shell specials", "my-org/special",
	    SPECIAL_TOKEN, CLOUDINIT_DEFAULT_API_URL, "5m", NULL },
	{ "token with newline, tab, control, non-ASCII", "my-org/odd",
	    "l1\nl2\tt\r\x01\x7f caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 "
	    "`id` $(reboot) ${HOME} '\"' \\n",
	    "https://ci.example.com:8443/a b\"#c'", NULL,
	    "https://ci.example.com:8443/a b\"#c'" },
	{ "token that looks like the name line", "my-org/inject",
	    "x\n  name: \"" CLOUDINIT_NAME_PLACEHOLDER "\"\n- |\n  #!/bin/sh",
	    CLOUDINIT_DEFAULT_API_URL, "1s", NULL },
	{ "YAML-looking values", "my-org/yaml", "- [ { & * ! | > % @ ` ~ null",
	    "https://yes", "no", "https://yes" },
};

static char tmpdir[] = "/tmp/cloudinit_test.XXXXXX";

static char *default_prefix[] = { "sudo", "PATH=$PATH", "-niHu", "circleci",
	"--", NULL };

/* A class as conf.c leaves it: the 0.1.2 runner defaults. */
static void
conf_class_init(struct conf_class *cc, const char *name, const char *token,
    const char *idle)
{
	memset(cc, 0, sizeof(*cc));
	cc->cc_name = (char *)(uintptr_t)name;
	cc->cc_token = (char *)(uintptr_t)token;
	cc->cc_idle_timeout = (char *)(uintptr_t)idle;
	cc->cc_idle_timeout_ms = idle != NULL ? 1000 : 0;
	cc->cc_scaling.sp_base.sc_min = CONF_MIN_REPLICAS_DEFAULT;
	cc->cc_scaling.sp_base.sc_max = CONF_MAX_REPLICAS_DEFAULT;
	cc->cc_runner.cr_working_dir = CONF_WORKING_DIR_DEFAULT;
	cc->cc_runner.cr_task_agent_dir = CONF_TASK_AGENT_DIR_DEFAULT;
	cc->cc_runner.cr_prefix = default_prefix;
	cc->cc_runner.cr_nprefix = nitems(default_prefix) - 1;
}

static char *
case_userdata(const struct ci_case *c)
{
	struct conf_class cc;
	char *ud;

	conf_class_init(&cc, c->c_name, c->c_token, c->c_idle);
	ud = cloudinit_userdata(&cc, c->c_api_url);
	if (ud == NULL)
		fail_msg("%s: no user data", c->c_what);
	return ud;
}

/*
 * Runs argv (PATH lookup) with stdout, and stderr too if err_too, to out
 * (NULL: inherited) and returns its exit status, or -1 if it did not exit
 * normally.
 */
static int
run(const char *const argv[], const char *out, bool err_too)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int rv, st;

	assert_int_equal(posix_spawn_file_actions_init(&fa), 0);
	if (out != NULL) {
		rv = posix_spawn_file_actions_addopen(
		    &fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_int_equal(rv, 0);
	}
	if (out != NULL && err_too)
		assert_int_equal(
		    posix_spawn_file_actions_adddup2(&fa, 1, 2), 0);
	rv = posix_spawnp(
	    &pid, argv[0], &fa, NULL, (char *const *)(uintptr_t)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (rv != 0)
		fail_msg("cannot run %s: %s", argv[0], strerror(rv));
	while (waitpid(pid, &st, 0) == -1)
		assert_int_equal(errno, EINTR);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
write_text(const char *path, const char *text)
{
	FILE *f;

	assert_non_null(f = fopen(path, "w"));
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static void
assert_file_has(const char *path, const char *needle)
{
	size_t len;
	char *text;

	if ((text = read_file(path, 1 << 20, &len)) == NULL)
		fail_msg("%s: %s", path, strerror(errno));
	if (strstr(text, needle) == NULL)
		fail_msg("%s: no \"%s\" in:\n%s", path, needle, text);
	free(text);
}

static char *
extract_py(void)
{
	char *dir, *p, *path;

	/* CMake compiles with the absolute source path. */
	dir = xstrdup(__FILE__);
	if ((p = strrchr(dir, '/')) != NULL)
		*p = '\0';
	path = xasprintf("%s/../cloudinit/extract.py", dir);
	free(dir);
	if (access(path, R_OK) == -1)
		fail_msg("%s: %s", path, strerror(errno));
	return path;
}

/* Returns cloud-init's reading of the user data in path (caller decrefs). */
static json_t *
extract_json(const char *path)
{
	char *py = extract_py(), *out = xasprintf("%s.json", path);
	const char *argv[] = { PYTHON3, py, "json", path, NULL };
	json_error_t jerr;
	json_t *j;

	assert_int_equal(run(argv, out, false), 0);
	if ((j = json_load_file(out, 0, &jerr)) == NULL)
		fail_msg("%s: %s", out, jerr.text);
	free(out);
	free(py);
	return j;
}

static const char *
jstr(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		fail_msg("%s is not a string", key);
	return json_string_value(v);
}

static json_t *
write_files_item(json_t *doc, const char *path)
{
	json_t *items = json_object_get(doc, "write_files"), *it;
	size_t i;

	json_array_foreach(items, i, it)
	{
		if (strcmp(jstr(it, "path"), path) == 0)
			return it;
	}
	fail_msg("no write_files item %s", path);
	return NULL;
}

/* The last command of the script, continuation lines joined. */
static char *
last_command(const char *script)
{
	char *copy = xstrdup(script), *line, *save = NULL, *last = NULL, *cmd;
	char *prev = NULL;

	for (line = strtok_r(copy, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		while (*line == ' ')
			line++;
		if (*line == '\0' || *line == '#')
			continue;
		if (prev != NULL &&
		    strchr("|&\\", prev[strlen(prev) - 1]) != NULL) {
			cmd = xasprintf("%s %s", last, line);
			free(last);
			last = cmd;
		} else {
			free(last);
			last = xstrdup(line);
		}
		prev = line;
	}
	free(copy);
	assert_non_null(last);
	return last;
}

static void
test_table(void **state)
{
	char *first_script = NULL, *py = extract_py();
	size_t i;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		const struct ci_case *c = &cases[i];
		char *ud = case_userdata(c), *again = case_userdata(c);
		char *path = xasprintf("%s/userdata-%zu.yaml", tmpdir, i);
		char *sh = xasprintf("%s/boot-%zu.sh", tmpdir, i), *last;
		const char *schema[] = { "cloud-init", "schema",
			"--config-file", path, NULL };
		const char *check[] = { "shellcheck", "-s", "sh", sh, NULL };
		const char *extract[] = { PYTHON3, py, "script", path, sh,
			NULL };
		json_t *doc, *conf, *api, *runner, *log, *it, *rc, *prefix;
		const char *script;

		print_message("case %zu: %s\n", i, c->c_what);
		assert_string_equal(ud, again);
		assert_memory_equal(ud, "#cloud-config\n", 14);
		write_text(path, ud);
		assert_int_equal(run(schema, NULL, false), 0);

		doc = extract_json(path);
		assert_string_equal(jstr(doc, "first_line"), "#cloud-config");

		it = write_files_item(doc, CLOUDINIT_STAGED_CONFIG_PATH);
		assert_string_equal(jstr(it, "permissions"), "0600");
		assert_string_equal(jstr(it, "owner"), "root:root");
		it = write_files_item(doc, CLOUDINIT_SETTINGS_PATH);
		assert_string_equal(jstr(it, "permissions"), "0600");
		assert_string_equal(jstr(doc, "settings"),
		    "stop_timeout_s=18300\n"
		    "working_directory=/home/circleci/workdir\n");
		it = write_files_item(doc, CLOUDINIT_BOOT_SCRIPT_PATH);
		assert_string_equal(jstr(it, "permissions"), "0700");
		assert_string_equal(jstr(it, "owner"), "root:root");
		assert_int_equal(
		    json_array_size(json_object_get(doc, "write_files")), 3);
		assert_true(json_is_null(json_object_get(doc, "user_data")));
		assert_true(json_is_null(json_object_get(doc, "disks")));

		rc = json_object_get(doc, "runcmd");
		assert_int_equal(json_array_size(rc), 1);
		assert_int_equal(json_array_size(json_array_get(rc, 0)), 1);
		assert_string_equal(json_string_value(json_array_get(
		                        json_array_get(rc, 0), 0)),
		    CLOUDINIT_BOOT_SCRIPT_PATH);

		/* The runner's configuration, as its YAML loader sees it. */
		conf = json_object_get(doc, "runner_config");
		assert_int_equal(json_object_size(conf), 3);
		api = json_object_get(conf, "api");
		assert_string_equal(jstr(api, "auth_token"), c->c_token);
		if (c->c_want_url != NULL) {
			assert_string_equal(jstr(api, "url"), c->c_want_url);
			assert_int_equal(json_object_size(api), 2);
		} else
			assert_int_equal(json_object_size(api), 1);
		runner = json_object_get(conf, "runner");
		assert_string_equal(
		    jstr(runner, "name"), CLOUDINIT_NAME_PLACEHOLDER);
		assert_string_equal(jstr(runner, "mode"), "single-task");
		if (c->c_idle != NULL) {
			assert_string_equal(
			    jstr(runner, "idle_timeout"), c->c_idle);
			assert_int_equal(json_object_size(runner), 8);
		} else {
			assert_null(json_object_get(runner, "idle_timeout"));
			assert_int_equal(json_object_size(runner), 7);
		}
		/* The 0.1.2 account model: jobs step down to circleci. */
		assert_string_equal(jstr(runner, "working_directory"),
		    "/home/circleci/workdir");
		assert_string_equal(jstr(runner, "task_agent_directory"),
		    "/tmp/libexec/circleci");
		prefix = json_object_get(runner, "command_prefix");
		assert_int_equal(json_array_size(prefix), 5);
		assert_string_equal(
		    json_string_value(json_array_get(prefix, 1)),
		    "PATH=$PATH");
		assert_string_equal(
		    json_string_value(json_array_get(prefix, 3)), "circleci");
		assert_true(json_is_true(
		    json_object_get(runner, "cleanup_working_directory")));
		assert_string_equal(
		    jstr(runner, "max_run_time"), CLOUDINIT_MAX_RUN_TIME);
		log = json_object_get(conf, "logging");
		assert_string_equal(jstr(log, "level"), "info");
		assert_string_equal(jstr(log, "format"), "text");
		assert_string_equal(jstr(log, "file"), "-");

		/* The script is the same for every class: no value in it. */
		script = jstr(doc, "script");
		if (first_script == NULL)
			first_script = xstrdup(script);
		assert_string_equal(script, first_script);
		assert_null(strstr(script, "set -x"));
		assert_int_equal(strncmp(script, "#!/bin/sh\n", 10), 0);
		assert_non_null(strstr(script, "echo 'Restart=no'\n"));
		assert_non_null(strstr(script,
		    "echo \"ExecStopPost=$prefix"
		    "$systemctl_bin --no-block "
		    "poweroff\"\n"));
		assert_non_null(strstr(
		    script, "echo \"TimeoutStopSec=$stop_timeout_s\"\n"));
		assert_non_null(strstr(script, "echo \"User=$AGENT\"\n"));
		assert_non_null(
		    strstr(script, "chown \"root:$AGENT\" \"$TMP\""));
		assert_non_null(strstr(script, "systemctl daemon-reload"));
		assert_non_null(
		    strstr(script, "-o Dpkg::Options::=--force-confold"));
		assert_non_null(strstr(script, "script.$family.sh?any=true"));
		last = last_command(script);
		assert_int_equal(
		    strncmp(
		        last, "systemctl enable --now circleci-runner ", 39),
		    0);
		free(last);

		assert_int_equal(run(extract, NULL, false), 0);
		assert_int_equal(run(check, NULL, false), 0);

		json_decref(doc);
		free(sh);
		free(path);
		free(again);
		free(ud);
	}
	free(first_script);
	free(py);
}

/* Every byte is printable ASCII or a newline, whatever the input. */
static void
test_ascii(void **state)
{
	const unsigned char *p;
	size_t i;
	char *ud;

	(void)state;
	for (i = 0; i < nitems(cases); i++) {
		ud = case_userdata(&cases[i]);
		for (p = (const unsigned char *)ud; *p != '\0'; p++)
			if (*p != '\n' && (*p < 0x20 || *p > 0x7e))
				fail_msg("case %zu: byte 0x%02x at %td", i, *p,
				    (const char *)p - ud);
		free(ud);
	}
}

/* The escapes as written, for the two tokens the brief names. */
static void
test_quoting(void **state)
{
	struct conf_class cc;
	char *ud;

	(void)state;
	conf_class_init(&cc, "my-org/q", SPECIAL_TOKEN, "10m");
	ud = cloudinit_userdata(&cc, "https://h.example/\"x\"");
	assert_non_null(strstr(ud,
	    "\n    api:\n      auth_token: \"a\\\"b'c$d\\\\e: #x\"\n"
	    "      url: \"https://h.example/\\\"x\\\"\"\n    runner:\n"));
	assert_non_null(strstr(ud, "\n      idle_timeout: \"10m\"\n"));
	assert_non_null(strstr(ud,
	    "\n# runner-provisioner: CircleCI machine "
	    "runner for \"my-org/q\"\nwrite_files:\n"));
	free(ud);

	conf_class_init(&cc, "my-org/q",
	    "\t\n\r\x01\x7f\xc2\x80\xc3\xa9\xef\xbf\xbf\xf0\x9f\x98\x80",
	    NULL);
	ud = cloudinit_userdata(&cc, NULL);
	assert_non_null(strstr(ud,
	    "      auth_token: \"\\t\\n\\r\\x01\\x7F"
	    "\\x80\\xE9\\uFFFF\\U0001F600\"\n"));
	free(ud);
}

static void
test_changes(void **state)
{
	struct conf_class cc;
	char *base, *ud;
	size_t i;
	struct {
		const char *name, *token, *idle, *url;
	} v[] = {
		{ "my-org/b", "token-1", "10m", NULL }, /* other name */
		{ "my-org/a", "token-2", "10m", NULL }, /* other token */
		{ "my-org/a", "token-1", "11m", NULL }, /* other timeout */
		{ "my-org/a", "token-1", NULL, NULL },  /* no timeout */
		{ "my-org/a", "token-1", "10m", "https://ci.example" },
	};
	struct conf_disk disk = { "d1", "/data", "ext4" };
	static char *prefix[] = { "sudo", "--", NULL };

	(void)state;
	conf_class_init(&cc, "my-org/a", "token-1", "10m");
	base = cloudinit_userdata(&cc, NULL);
	for (i = 0; i < nitems(v); i++) {
		conf_class_init(&cc, v[i].name, v[i].token, v[i].idle);
		ud = cloudinit_userdata(&cc, v[i].url);
		if (strcmp(ud, base) == 0)
			fail_msg("variant %zu gives the same user data", i);
		free(ud);
	}

	/* userData, disks and runner options each change the text. */
	conf_class_init(&cc, "my-org/a", "token-1", "10m");
	cc.cc_user_data = "echo hi\n";
	ud = cloudinit_userdata(&cc, NULL);
	assert_string_not_equal(ud, base);
	free(ud);
	conf_class_init(&cc, "my-org/a", "token-1", "10m");
	cc.cc_disks = &disk;
	cc.cc_ndisks = 1;
	ud = cloudinit_userdata(&cc, NULL);
	assert_string_not_equal(ud, base);
	free(ud);
	conf_class_init(&cc, "my-org/a", "token-1", "10m");
	cc.cc_runner.cr_prefix = prefix;
	cc.cc_runner.cr_nprefix = 2;
	ud = cloudinit_userdata(&cc, NULL);
	assert_string_not_equal(ud, base);
	free(ud);
	conf_class_init(&cc, "my-org/a", "token-1", "10m");
	cc.cc_runner.cr_max_run_time = "1h";
	cc.cc_runner.cr_max_run_time_ms = 3600000;
	ud = cloudinit_userdata(&cc, NULL);
	assert_string_not_equal(ud, base);
	assert_non_null(strstr(ud, "stop_timeout_s=3900\n"));
	free(ud);

	/* The default address, however it is given, is not written. */
	conf_class_init(&cc, "my-org/a", "token-1", "10m");
	ud = cloudinit_userdata(&cc, "");
	assert_string_equal(ud, base);
	free(ud);
	ud = cloudinit_userdata(&cc, CLOUDINIT_DEFAULT_API_URL);
	assert_string_equal(ud, base);
	assert_null(strstr(ud, "url:"));
	free(ud);
	free(base);
}

/* Values that cannot be carried give NULL and a log line without them. */
static void
test_invalid(void **state)
{
	static const char *bad[] = {
		"SeCrEt\xff",
		"SeCrEt\xc0\xaf",
		"SeCrEt\xed\xa0\x80",
		"SeCrEt\xe2\x82",
		"SeCrEt\xf4\x90\x80\x80",
		"SeCrEt\xf8\x88\x80\x80\x80",
		"SeCrEt\x80",
	};
	struct conf_class cc;
	char buf[4096];
	int fds[2];
	size_t i;
	ssize_t n;

	(void)state;
	assert_int_equal(pipe(fds), 0);
	log_set_fd(fds[1]);
	for (i = 0; i < nitems(bad); i++) {
		conf_class_init(&cc, "my-org/bad", bad[i], NULL);
		assert_null(cloudinit_userdata(&cc, NULL));
		n = read(fds[0], buf, sizeof(buf) - 1);
		assert_true(n > 0);
		buf[n] = '\0';
		assert_non_null(strstr(buf, "my-org/bad"));
		assert_null(strstr(buf, "SeCrEt"));
	}
	conf_class_init(&cc, "my-org/bad", "token-1", "1\xffm");
	assert_null(cloudinit_userdata(&cc, NULL));
	conf_class_init(&cc, "my-org/bad", "token-1", NULL);
	assert_null(cloudinit_userdata(&cc, "https://\xc3"));
	conf_class_init(&cc, "my-org/bad", NULL, NULL);
	assert_null(cloudinit_userdata(&cc, NULL));
	log_set_fd(-1);
	close(fds[0]);
	close(fds[1]);
}

/* The tools reject what they should: these checks have teeth. */
static void
test_tools_reject(void **state)
{
	char *ud = case_userdata(&cases[0]), *p, *py = extract_py();
	char *path = xasprintf("%s/broken.yaml", tmpdir);
	char *sh = xasprintf("%s/broken.sh", tmpdir), *text;
	char *out = xasprintf("%s/broken.out", tmpdir);
	const char *schema[] = { "cloud-init", "schema", "--config-file", path,
		NULL };
	const char *extract[] = { PYTHON3, py, "script", path, sh, NULL };
	const char *check[] = { "shellcheck", "-s", "sh", sh, NULL };
	size_t len;

	(void)state;
	/* An octal number where cloud-init wants a string. */
	assert_non_null(p = strstr(ud, "permissions: '0600'"));
	memcpy(p, "permissions:  0600 ", 19);
	write_text(path, ud);
	assert_int_not_equal(run(schema, out, true), 0);
	assert_file_has(out, "permissions: 384 is not of type 'string'");
	write_text(path, ud + strlen("#cloud-config\n"));
	assert_int_not_equal(run(schema, out, true), 0);
	assert_file_has(out, "needs to begin with \"#cloud-config\"");
	free(ud);

	ud = case_userdata(&cases[0]);
	write_text(path, ud);
	assert_int_equal(run(extract, NULL, false), 0);
	assert_int_equal(run(check, out, true), 0);
	assert_non_null(text = read_file(sh, 1 << 20, &len));
	p = xasprintf("%srm -f $TMP\n", text);
	write_text(sh, p);
	assert_int_not_equal(run(check, out, true), 0);
	assert_file_has(out, "SC2086");
	free(p);
	free(text);
	free(ud);
	free(out);
	free(sh);
	free(path);
	free(py);
}

/* The runner options of the 0.1.2 form reach the runner's configuration;
 * maxRunTime also sets how long systemd waits for a draining runner. */
static void
test_runner_options(void **state)
{
	static char *prefix[] = { "/usr/local/bin/as-job", "--user=ci", "--",
		NULL };
	char *path = xasprintf("%s/runner.yaml", tmpdir), *ud;
	const char *schema[] = { "cloud-init", "schema", "--config-file", path,
		NULL };
	struct conf_class cc;
	json_t *doc, *runner, *p;

	(void)state;
	conf_class_init(&cc, "my-org/opts", "tok-opts", NULL);
	cc.cc_runner.cr_working_dir = "/srv/work";
	cc.cc_runner.cr_task_agent_dir = "/var/tmp/agent";
	cc.cc_runner.cr_prefix = prefix;
	cc.cc_runner.cr_nprefix = 3;
	cc.cc_runner.cr_home_ssh_keys = true;
	cc.cc_runner.cr_max_run_time = "2h30m";
	cc.cc_runner.cr_max_run_time_ms = 9000000;
	assert_non_null(ud = cloudinit_userdata(&cc, NULL));
	write_text(path, ud);
	assert_int_equal(run(schema, NULL, false), 0);
	doc = extract_json(path);
	runner =
	    json_object_get(json_object_get(doc, "runner_config"), "runner");
	assert_string_equal(jstr(runner, "working_directory"), "/srv/work");
	assert_string_equal(
	    jstr(runner, "task_agent_directory"), "/var/tmp/agent");
	assert_string_equal(jstr(runner, "max_run_time"), "2h30m");
	assert_true(json_is_true(
	    json_object_get(runner, "use_home_ssh_dir_for_checkout_keys")));
	p = json_object_get(runner, "command_prefix");
	assert_int_equal(json_array_size(p), 3);
	assert_string_equal(
	    json_string_value(json_array_get(p, 0)), "/usr/local/bin/as-job");
	assert_string_equal(jstr(doc, "settings"),
	    "stop_timeout_s=9300\nworking_directory=/srv/work\n");
	json_decref(doc);
	free(ud);

	/* An empty prefix is written as one: jobs run as the agent. */
	cc.cc_runner.cr_nprefix = 0;
	cc.cc_runner.cr_home_ssh_keys = false;
	assert_non_null(ud = cloudinit_userdata(&cc, NULL));
	write_text(path, ud);
	doc = extract_json(path);
	runner =
	    json_object_get(json_object_get(doc, "runner_config"), "runner");
	assert_true(json_is_array(json_object_get(runner, "command_prefix")));
	assert_int_equal(
	    json_array_size(json_object_get(runner, "command_prefix")), 0);
	assert_null(
	    json_object_get(runner, "use_home_ssh_dir_for_checkout_keys"));
	json_decref(doc);
	free(ud);
	free(path);
}

/* userData travels as base64, so any text arrives byte for byte, and it
 * never appears in the clear; extra disks become data lines. */
static void
test_user_data_and_disks(void **state)
{
	static const char script[] =
	    "  leading blanks\r\n\ttab\n#!/not/first\n"
	    "caf\xc3\xa9 `id` $(reboot) 'q' \"dq\" \\ \x01\x7f\n"
	    "- yaml: [looking]\nno final newline";
	struct conf_disk disks[] = { { "varlib", "/var/lib", "ext4" },
		{ "cache9", "/mnt/cache", "xfs" } };
	char *path = xasprintf("%s/ud.yaml", tmpdir), *ud, *base, *sh;
	const char *schema[] = { "cloud-init", "schema", "--config-file", path,
		NULL };
	struct conf_class cc;
	json_t *doc, *it;

	(void)state;
	conf_class_init(&cc, "my-org/ud", "tok-ud", "10m");
	base = cloudinit_userdata(&cc, NULL);
	cc.cc_user_data = (char *)(uintptr_t)script;
	cc.cc_disks = disks;
	cc.cc_ndisks = nitems(disks);
	assert_non_null(ud = cloudinit_userdata(&cc, NULL));
	assert_null(strstr(ud, "leading blanks"));
	assert_null(strstr(ud, "reboot"));
	write_text(path, ud);
	assert_int_equal(run(schema, NULL, false), 0);
	doc = extract_json(path);
	assert_string_equal(jstr(doc, "user_data"), script);
	it = write_files_item(doc, CLOUDINIT_USERDATA_PATH);
	assert_string_equal(jstr(it, "permissions"), "0700");
	assert_string_equal(jstr(doc, "disks"),
	    "varlib ext4 /var/lib\ncache9 xfs /mnt/cache\n");
	/* The script does not change with the data. */
	sh = xstrdup(jstr(doc, "script"));
	json_decref(doc);
	write_text(path, base);
	doc = extract_json(path);
	assert_string_equal(jstr(doc, "script"), sh);
	json_decref(doc);
	free(sh);
	free(base);
	free(ud);
	free(path);
}

/*
 * tests/cloudinit/sample-userdata.yaml shows what a VM receives; rewrite it
 * with RP_UPDATE_GOLDEN=1 after a deliberate change.
 */
static void
test_golden(void **state)
{
	struct conf_class cc;
	char *ud, *py = extract_py(), *golden, *want;
	size_t len;

	(void)state;
	golden = xasprintf("%.*s/sample-userdata.yaml",
	    (int)(strlen(py) - strlen("/extract.py")), py);
	conf_class_init(
	    &cc, "my-org/linux-large", "REPLACE-WITH-RUNNER-TOKEN", "10m");
	ud = cloudinit_userdata(&cc, "https://circleci.example.com");
	if (getenv("RP_UPDATE_GOLDEN") != NULL)
		write_text(golden, ud);
	if ((want = read_file(golden, 1 << 20, &len)) == NULL)
		fail_msg("%s: %s", golden, strerror(errno));
	assert_string_equal(ud, want);
	free(want);
	free(ud);
	free(golden);
	free(py);
}

static int
setup(void **state)
{
	(void)state;
	log_init("cloudinit_test", LOG_LVL_INFO);
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char *cmd;
	int rv;

	(void)state;
	cmd = xasprintf("rm -rf '%s'", tmpdir);
	rv = system(cmd);
	free(cmd);
	return rv == 0 ? 0 : -1;
}

/* cloudinit_test --emit-config CONFIG SECRETS|- API_URL */
static int
emit_config(int argc, char *argv[])
{
	char err[CONF_ERR_MAX], *ud;
	struct conf *c;

	if (argc != 5) {
		fprintf(stderr,
		    "usage: %s --emit-config CONFIG SECRETS|- "
		    "API_URL\n",
		    argv[0]);
		return 2;
	}
	log_init("cloudinit_test", LOG_LVL_INFO);
	c = conf_load(argv[2], strcmp(argv[3], "-") == 0 ? NULL : argv[3], 0,
	    err, sizeof(err));
	if (c == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	ud = cloudinit_userdata(&c->c_classes[0], argv[4]);
	conf_free(c);
	if (ud == NULL)
		return 1;
	fputs(ud, stdout);
	free(ud);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* cloudinit_test --emit NAME TOKEN API_URL [IDLE_TIMEOUT] */
static int
emit(int argc, char *argv[])
{
	struct conf_class cc;
	char *ud;

	if (argc != 5 && argc != 6) {
		fprintf(stderr,
		    "usage: %s --emit NAME TOKEN API_URL "
		    "[IDLE_TIMEOUT]\n",
		    argv[0]);
		return 2;
	}
	log_init("cloudinit_test", LOG_LVL_INFO);
	conf_class_init(&cc, argv[2], argv[3], argc == 6 ? argv[5] : NULL);
	if ((ud = cloudinit_userdata(&cc, argv[4])) == NULL)
		return 1;
	fputs(ud, stdout);
	free(ud);
	return fflush(stdout) == 0 ? 0 : 1;
}

int
main(int argc, char *argv[])
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_ascii),
		cmocka_unit_test(test_quoting),
		cmocka_unit_test(test_changes),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_tools_reject),
		cmocka_unit_test(test_runner_options),
		cmocka_unit_test(test_user_data_and_disks),
		cmocka_unit_test(test_golden),
	};

	if (argc > 1 && strcmp(argv[1], "--emit") == 0)
		return emit(argc, argv);
	if (argc > 1 && strcmp(argv[1], "--emit-config") == 0)
		return emit_config(argc, argv);
	return cmocka_run_group_tests(tests, setup, teardown);
}
