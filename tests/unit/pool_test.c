/*
 * The objects the actuator sends: built from configurations, checked here
 * for what an operator relies on, and validated by the real KubeVirt CRD
 * schema and webhook rules (tests/schemas/validate_objects.py).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base64.h"
#include "conf.h"
#include "pool.h"
#include "poolname.h"

#define API "https://runner.circleci.com"

static const char *const configs[] = {
	/* The default spec. */
	"resourceClass:\n"
	"  \"my-org/my-runner\":\n"
	"    token: \"tok-default-1234\"\n",
	/* A custom spec with its own network, CircleCI Server, idle timeout.
	 */
	"resourceClass:\n"
	"  \"dev-team/custom:arm64\":\n"
	"    token: \"tok-custom-5678\"\n"
	"    idleTimeout: \"10m\"\n"
	"    minReplicas: 0\n"
	"    maxReplicas: 4\n"
	"    spec:\n"
	"      domain:\n"
	"        cpu: {cores: 2}\n"
	"        resources: {requests: {memory: \"4Gi\"}}\n"
	"        devices:\n"
	"          disks: [{name: root, disk: {bus: virtio}}]\n"
	"          interfaces: [{name: net, bridge: {}}]\n"
	"      networks: [{name: net, pod: {}}]\n"
	"      volumes:\n"
	"        - name: root\n"
	"          containerDisk: {image: "
	"\"quay.io/containerdisks/fedora:40\"}\n"
	"      terminationGracePeriodSeconds: 30\n",
	/* A spec with a node selector and tolerations. */
	"resourceClass:\n"
	"  \"org_x/Linux+Big\":\n"
	"    token: \"tok-big-9012\"\n"
	"    spec:\n"
	"      nodeSelector: {kubevirt.io/schedulable: \"true\"}\n"
	"      tolerations: [{key: kubevirt, operator: Exists, "
	"effect: NoSchedule}]\n"
	"      domain:\n"
	"        resources: {requests: {memory: \"2Gi\", cpu: \"1\"}}\n"
	"        devices: {disks: [{name: disk, disk: {bus: virtio}}]}\n"
	"      volumes:\n"
	"        - name: disk\n"
	"          containerDisk: {image: "
	"\"quay.io/containerdisks/ubuntu:22.04\"}\n",
};

static struct conf *
load(const char *yaml)
{
	char err[CONF_ERR_MAX];
	struct conf *c =
	    conf_parse("test.yaml", yaml, strlen(yaml), err, sizeof(err));

	if (c == NULL)
		fail_msg("config: %s", err);
	return c;
}

static json_t *
build_pool(struct conf *c, struct pool_objects *po, const char *api)
{
	char pool[POOL_NAME_MAX + 1];

	pool_name(c->c_classes[0].cc_name, pool, sizeof(pool));
	assert_int_equal(
	    pool_objects_build(po, &c->c_classes[0], pool, api), 0);
	return pool_json(po, &c->c_classes[0], "runners", 3, NULL);
}

static void
write_json(const char *dir, const char *name, json_t *j)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_int_equal(json_dump_file(j, path, JSON_INDENT(1)), 0);
}

/* Every object for every configuration passes the real schema. */
static void
test_objects_validate(void **state)
{
	char dir[] = "/tmp/rp-pool-test-XXXXXX", cmd[1024], name[64];
	struct pool_objects po;
	struct conf *c;
	json_t *pool, *secret;
	size_t i;
	int rv;

	(void)state;
	assert_non_null(mkdtemp(dir));
	for (i = 0; i < sizeof(configs) / sizeof(configs[0]); i++) {
		c = load(configs[i]);
		pool = build_pool(
		    c, &po, i == 1 ? "https://circleci.example.com" : API);
		secret =
		    pool_secret_json(&po, &c->c_classes[0], "runners", NULL);
		snprintf(name, sizeof(name), "pool-%zu.json", i);
		write_json(dir, name, pool);
		snprintf(name, sizeof(name), "secret-%zu.json", i);
		write_json(dir, name, secret);
		json_decref(pool);
		json_decref(secret);
		pool_objects_free(&po);
		conf_free(c);
	}
	/* ctest runs unit tests from tests/. */
	snprintf(cmd, sizeof(cmd),
	    "/usr/bin/python3 schemas/validate_objects.py %s/*.json", dir);
	rv = system(cmd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(rv, 0);
}

static json_t *
at(json_t *j, const char *path)
{
	char buf[256], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (tok = strtok_r(buf, ".", &save); tok != NULL && j != NULL;
	     tok = strtok_r(NULL, ".", &save))
		j = isdigit((unsigned char)tok[0])
		    ? json_array_get(j, (size_t)atoi(tok))
		    : json_object_get(j, tok);
	return j;
}

static const char *
str(json_t *j, const char *path)
{
	return json_string_value(at(j, path));
}

static void
test_pool_shape(void **state)
{
	struct pool_objects po;
	struct conf *c = load(configs[0]);
	json_t *pool = build_pool(c, &po, API), *spec, *vols, *disks;
	char *dump;

	(void)state;
	assert_string_equal(str(pool, "metadata.name"), "my-org--my-runner");
	assert_int_equal(json_integer_value(at(pool, "spec.replicas")), 3);
	assert_non_null(at(pool, "spec.scaleInStrategy.opportunistic"));
	assert_non_null(at(pool, "spec.updateStrategy.opportunistic"));
	assert_string_equal(
	    str(pool, "spec.virtualMachineTemplate.spec.runStrategy"),
	    "RerunOnFailure");
	assert_string_equal(
	    json_string_value(json_object_get(
	        at(pool, "metadata.labels"), LABEL_MANAGED_BY)),
	    MANAGED_BY);
	assert_string_equal(json_string_value(json_object_get(
	                        at(pool, "metadata.labels"), LABEL_CLASS)),
	    "my-org--my-runner");
	assert_string_equal(
	    json_string_value(json_object_get(
	        at(pool, "metadata.annotations"), ANNOT_CLASS)),
	    "my-org/my-runner");
	assert_true(json_equal(at(pool, "spec.selector.matchLabels"),
	    at(pool, "spec.virtualMachineTemplate.metadata.labels")));
	spec = at(pool, "spec.virtualMachineTemplate.spec.template.spec");
	disks = at(spec, "domain.devices.disks");
	vols = at(spec, "volumes");
	assert_int_equal(json_array_size(disks), 2);
	assert_string_equal(str(disks, "1.name"), CLOUDINIT_VOLUME);
	assert_string_equal(str(disks, "1.disk.bus"), "virtio");
	assert_string_equal(str(vols, "1.name"), CLOUDINIT_VOLUME);
	assert_string_equal(str(vols, "1.cloudInitNoCloud.secretRef.name"),
	    "my-org--my-runner-userdata");
	/* No network in the spec: masquerade on the pod network. */
	assert_non_null(at(spec, "domain.devices.interfaces.0.masquerade"));
	assert_non_null(at(spec, "networks.0.pod"));
	/* The token is in the Secret only. */
	dump = json_dumps(pool, JSON_COMPACT);
	assert_null(strstr(dump, "tok-default-1234"));
	free(dump);
	json_decref(pool);
	pool_objects_free(&po);
	conf_free(c);
}

static void
test_user_network_kept(void **state)
{
	struct pool_objects po;
	struct conf *c = load(configs[1]);
	json_t *pool = build_pool(c, &po, API), *spec;

	(void)state;
	spec = at(pool, "spec.virtualMachineTemplate.spec.template.spec");
	assert_int_equal(
	    json_array_size(at(spec, "domain.devices.interfaces")), 1);
	assert_non_null(at(spec, "domain.devices.interfaces.0.bridge"));
	assert_int_equal(json_array_size(at(spec, "networks")), 1);
	assert_string_equal(str(pool, "metadata.name"), po.po_pool);
	assert_non_null(strstr(po.po_pool, "dev-team-custom-arm64-"));
	json_decref(pool);
	pool_objects_free(&po);
	conf_free(c);
}

static void
test_secret_holds_userdata(void **state)
{
	struct pool_objects po;
	struct conf *c = load(configs[0]);
	json_t *pool = build_pool(c, &po, API), *secret;
	struct buf dec = { 0 };

	(void)state;
	secret = pool_secret_json(&po, &c->c_classes[0], "runners", "42");
	assert_string_equal(
	    str(secret, "metadata.name"), "my-org--my-runner-userdata");
	assert_string_equal(str(secret, "metadata.resourceVersion"), "42");
	assert_int_equal(b64_decode(&dec, str(secret, "data.userdata")), 0);
	assert_string_equal(buf_str(&dec), po.po_userdata);
	assert_non_null(strstr(buf_str(&dec), "tok-default-1234"));
	assert_int_equal(strncmp(buf_str(&dec), "#cloud-config", 13), 0);
	buf_free(&dec);
	json_decref(secret);
	json_decref(pool);
	pool_objects_free(&po);
	conf_free(c);
}

/* The template hash follows every input and nothing else. */
static void
test_template_hash(void **state)
{
	static const char *const variants[] = {
		"resourceClass: {\"a/b\": {token: t1-aaaa}}\n",
		"resourceClass: {\"a/b\": {token: t2-bbbb}}\n",
		"resourceClass: {\"a/b\": {token: t1-aaaa, idleTimeout: "
		"5m}}\n",
		"resourceClass: {\"a/b\": {token: t1-aaaa, spec: {domain: "
		"{resources: {requests: {memory: 1Gi}}}}}}\n",
	};
	char hashes[5][TEMPLATE_HASH_LEN + 1];
	struct pool_objects po;
	struct conf *c;
	json_t *pool;
	size_t i, j;

	(void)state;
	for (i = 0; i < 4; i++) {
		c = load(variants[i]);
		pool = build_pool(c, &po, API);
		memcpy(hashes[i], po.po_hash, sizeof(hashes[i]));
		assert_string_equal(json_string_value(json_object_get(
		                        at(pool,
		                            "spec.virtualMachineTemplate."
		                            "metadata.annotations"),
		                        ANNOT_HASH)),
		    po.po_hash);
		assert_string_equal(
		    json_string_value(json_object_get(
		        at(pool, "metadata.annotations"), ANNOT_HASH)),
		    po.po_hash);
		json_decref(pool);
		pool_objects_free(&po);
		conf_free(c);
	}
	/* Same input, same hash; the API address is an input too. */
	c = load(variants[0]);
	pool = build_pool(c, &po, API);
	assert_string_equal(po.po_hash, hashes[0]);
	json_decref(pool);
	pool_objects_free(&po);
	pool = build_pool(c, &po, "https://circleci.example.com");
	memcpy(hashes[4], po.po_hash, sizeof(hashes[4]));
	json_decref(pool);
	pool_objects_free(&po);
	conf_free(c);
	for (i = 0; i < 5; i++)
		for (j = i + 1; j < 5; j++)
			assert_string_not_equal(hashes[i], hashes[j]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_objects_validate),
		cmocka_unit_test(test_pool_shape),
		cmocka_unit_test(test_user_network_kept),
		cmocka_unit_test(test_secret_holds_userdata),
		cmocka_unit_test(test_template_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
