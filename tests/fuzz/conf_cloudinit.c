/*
 * The configuration loader (common/conf.c) followed by each class's
 * cloud-init user data (actuator/cloudinit.c), as the actuator runs them.
 *
 * Configuration mode (any input not starting with 0xff): the input is
 * config.yaml; a first line "# api: URL" sets --circleci-api-addr (a YAML
 * comment, so the file stays what it is).  A rejected file gets one line
 * naming the file; an accepted one gives classes within the documented
 * bounds, a one-line-per-class summary, and for every class user data that
 * libyaml reads back with the runner's configuration inside holding the
 * token, the API address and the idle timeout byte for byte.
 *
 * Direct mode (0xff first): name, token, idle timeout and API address are
 * any bytes, as cloudinit_userdata's contract allows; valid UTF-8 must
 * round-trip the same way, anything else must be refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "cloudinit.h"
#include "conf.h"
#include "flags.h"
#include "fuzz.h"
#include "log.h"

#define API_PREFIX "# api: "

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	return 0;
}

static yaml_node_t *
map_get(yaml_document_t *d, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *p;
	yaml_node_t *k;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (p = map->data.mapping.pairs.start;
	     p < map->data.mapping.pairs.top; p++) {
		k = yaml_document_get_node(d, p->key);
		if (k != NULL && k->type == YAML_SCALAR_NODE &&
		    k->data.scalar.length == strlen(key) &&
		    memcmp(k->data.scalar.value, key, strlen(key)) == 0)
			return yaml_document_get_node(d, p->value);
	}
	return NULL;
}

static bool
scalar_is(const yaml_node_t *n, const char *want)
{
	return n != NULL && n->type == YAML_SCALAR_NODE &&
	    n->data.scalar.length == strlen(want) &&
	    memcmp(n->data.scalar.value, want, strlen(want)) == 0;
}

static void
load(yaml_document_t *d, const char *text, size_t len, const char *what)
{
	yaml_parser_t p;

	FUZZ_CHECK(yaml_parser_initialize(&p), "yaml_parser_initialize");
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	FUZZ_CHECK(yaml_parser_load(&p, d), "%s is not YAML: %s at %zu:%zu",
	    what, p.problem != NULL ? p.problem : "?", p.problem_mark.line + 1,
	    p.problem_mark.column + 1);
	FUZZ_CHECK(
	    yaml_document_get_root_node(d) != NULL, "%s is empty", what);
	yaml_parser_delete(&p);
}

/* The user data of one class, read back as cloud-init would. */
static void
check_userdata(const char *ud, const char *name, const char *token,
    const char *idle, const char *api_url)
{
	yaml_document_t doc, conf;
	yaml_node_t *root, *files, *item, *content = NULL, *api, *runner;
	yaml_node_item_t *it;
	bool want_url;

	FUZZ_CHECK(strncmp(ud, "#cloud-config\n", 14) == 0,
	    "class %s: user data does not start with #cloud-config", name);
	load(&doc, ud, strlen(ud), "the user data");
	root = yaml_document_get_root_node(&doc);
	files = map_get(&doc, root, "write_files");
	FUZZ_CHECK(files != NULL && files->type == YAML_SEQUENCE_NODE,
	    "class %s: no write_files list", name);
	FUZZ_CHECK(map_get(&doc, root, "runcmd") != NULL,
	    "class %s: no runcmd", name);
	for (it = files->data.sequence.items.start;
	     it < files->data.sequence.items.top; it++) {
		item = yaml_document_get_node(&doc, *it);
		if (scalar_is(map_get(&doc, item, "path"),
		        CLOUDINIT_STAGED_CONFIG_PATH))
			content = map_get(&doc, item, "content");
	}
	FUZZ_CHECK(content != NULL && content->type == YAML_SCALAR_NODE,
	    "class %s: the runner configuration is not staged", name);

	load(&conf, (const char *)content->data.scalar.value,
	    content->data.scalar.length, "the runner configuration");
	root = yaml_document_get_root_node(&conf);
	api = map_get(&conf, root, "api");
	runner = map_get(&conf, root, "runner");
	FUZZ_CHECK(scalar_is(map_get(&conf, api, "auth_token"), token),
	    "class %s: the token does not round-trip", name);
	want_url = api_url != NULL && api_url[0] != '\0' &&
	    strcmp(api_url, CLOUDINIT_DEFAULT_API_URL) != 0;
	FUZZ_CHECK(want_url ? scalar_is(map_get(&conf, api, "url"), api_url)
	                    : map_get(&conf, api, "url") == NULL,
	    "class %s: api.url is not \"%s\"", name,
	    want_url ? api_url : "(absent)");
	FUZZ_CHECK(scalar_is(map_get(&conf, runner, "name"),
	               CLOUDINIT_NAME_PLACEHOLDER),
	    "class %s: runner.name is not the placeholder", name);
	FUZZ_CHECK(scalar_is(map_get(&conf, runner, "mode"), "single-task"),
	    "class %s: runner.mode is not single-task", name);
	FUZZ_CHECK(idle != NULL
	        ? scalar_is(map_get(&conf, runner, "idle_timeout"), idle)
	        : map_get(&conf, runner, "idle_timeout") == NULL,
	    "class %s: runner.idle_timeout is not \"%s\"", name,
	    idle != NULL ? idle : "(absent)");
	yaml_document_delete(&conf);
	yaml_document_delete(&doc);
}

static void
check_class(
    const struct conf *c, const struct conf_class *cc, const char *api_url)
{
	char *ud;
	size_t i;

	FUZZ_CHECK(conf_class_name_valid(cc->cc_name) == 0,
	    "invalid class name \"%s\" accepted", cc->cc_name);
	FUZZ_CHECK(conf_class_find(c, cc->cc_name) == cc,
	    "class %s cannot be found by name", cc->cc_name);
	FUZZ_CHECK(cc->cc_min_replicas <= cc->cc_max_replicas &&
	        cc->cc_max_replicas >= 1 &&
	        cc->cc_max_replicas <= CONF_REPLICAS_LIMIT,
	    "class %s: replicas %u..%u", cc->cc_name, cc->cc_min_replicas,
	    cc->cc_max_replicas);
	FUZZ_CHECK(json_is_object(cc->cc_spec),
	    "class %s: spec is not a "
	    "mapping",
	    cc->cc_name);
	FUZZ_CHECK(cc->cc_token != NULL && cc->cc_token[0] != '\0',
	    "class %s: no token", cc->cc_name);
	for (i = 0; cc->cc_token[i] != '\0'; i++)
		FUZZ_CHECK((unsigned char)cc->cc_token[i] > ' ' &&
		        cc->cc_token[i] != 0x7f,
		    "class %s: token with a blank or control byte",
		    cc->cc_name);
	FUZZ_CHECK(
	    (cc->cc_idle_timeout == NULL) == (cc->cc_idle_timeout_ms == 0),
	    "class %s: idle timeout \"%s\" is %llu ms", cc->cc_name,
	    cc->cc_idle_timeout ? cc->cc_idle_timeout : "",
	    (unsigned long long)cc->cc_idle_timeout_ms);
	ud = cloudinit_userdata(cc, api_url);
	FUZZ_CHECK(ud != NULL, "class %s: no user data", cc->cc_name);
	check_userdata(
	    ud, cc->cc_name, cc->cc_token, cc->cc_idle_timeout, api_url);
	free(ud);
}

/* The API address as the daemon would have it, or NULL (the default). */
static char *
api_addr(const char **data, size_t *size)
{
	const char *nl;
	char *arg, *argv[3], err[FLAGS_ERR_MAX], *addr = NULL;
	struct flags f;

	if (*size < strlen(API_PREFIX) ||
	    memcmp(*data, API_PREFIX, strlen(API_PREFIX)) != 0 ||
	    (nl = memchr(*data, '\n', *size)) == NULL)
		return NULL;
	arg = fuzz_strndup(*data + strlen(API_PREFIX),
	    (size_t)(nl - *data) - strlen(API_PREFIX));
	argv[0] = "runner-provisioner";
	argv[1] = "--circleci-api-addr";
	argv[2] = arg;
	if (strlen(arg) == (size_t)(nl - *data) - strlen(API_PREFIX) &&
	    flags_parse(&f, 3, argv, err, sizeof(err)) == 0) {
		addr = strdup(f.f_api_addr);
		flags_free(&f);
	}
	free(arg);
	return addr;
}

static void
config_mode(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	char err[CONF_ERR_MAX], *api, *summary;
	struct conf *c;
	size_t i, lines = 0;

	api = api_addr(&text, &size);
	memset(err, 0, sizeof(err));
	if ((c = conf_parse("config.yaml", text, size, err, sizeof(err))) ==
	    NULL) {
		FUZZ_CHECK(strncmp(err, "config.yaml", 11) == 0 &&
		        strchr(err, '\n') == NULL,
		    "error not one line naming the file: %s", err);
		free(api);
		return;
	}
	FUZZ_CHECK(c->c_nclasses >= 1 && c->c_nclasses <= CONF_CLASSES_LIMIT,
	    "%zu classes", c->c_nclasses);
	for (i = 0; i < c->c_nclasses; i++) {
		if (i > 0)
			FUZZ_CHECK(strcmp(c->c_classes[i - 1].cc_name,
			               c->c_classes[i].cc_name) < 0,
			    "classes not sorted or not unique");
		check_class(c, &c->c_classes[i], api);
	}
	summary = conf_summary(c);
	for (i = 0; summary[i] != '\0'; i++)
		lines += summary[i] == '\n';
	FUZZ_CHECK(lines == c->c_nclasses,
	    "summary of %zu classes has %zu "
	    "lines:\n%s",
	    c->c_nclasses, lines, summary);
	free(summary);
	conf_register_secrets(c);
	log_secrets_clear();
	conf_free(c);
	free(api);
}

/* RFC 3629 UTF-8, as cloudinit.c must accept it. */
static bool
utf8_valid(const char *s)
{
	return fuzz_utf8_valid(s, strlen(s));
}

static void
direct_mode(struct fuzz_in *in)
{
	struct conf_class cc;
	char *name, *token, *idle = NULL, *api = NULL, *ud;
	bool valid;

	name = fuzz_str(in, 253);
	token = fuzz_str(in, 255);
	if (fuzz_bool(in))
		idle = fuzz_str(in, 64);
	if (fuzz_bool(in))
		api = fuzz_str(in, 255);
	memset(&cc, 0, sizeof(cc));
	cc.cc_name = name;
	cc.cc_token = token;
	cc.cc_idle_timeout = idle;
	valid = utf8_valid(name) && utf8_valid(token) &&
	    (idle == NULL || utf8_valid(idle)) &&
	    (api == NULL || api[0] == '\0' ||
	        strcmp(api, CLOUDINIT_DEFAULT_API_URL) == 0 ||
	        utf8_valid(api));
	ud = cloudinit_userdata(&cc, api);
	FUZZ_CHECK((ud != NULL) == valid, "user data %s for %s input",
	    ud != NULL ? "made" : "refused", valid ? "valid" : "invalid");
	if (ud != NULL)
		check_userdata(ud, name, token, idle, api);
	free(ud);
	free(name);
	free(token);
	free(idle);
	free(api);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };

	if (size > 0 && data[0] == 0xff) {
		fuzz_u8(&in);
		direct_mode(&in);
	} else
		config_mode(data, size);
	return 0;
}
