#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "base64.h"
#include "cloudinit.h"
#include "log.h"
#include "pool.h"
#include "util.h"

const char *
pool_managed_selector(void)
{
	return LABEL_MANAGED_BY "=" MANAGED_BY;
}

/* obj[key], created as an empty object/array when missing. */
static json_t *
child(json_t *obj, const char *key, bool array)
{
	json_t *c = json_object_get(obj, key);

	if (c == NULL) {
		c = array ? json_array() : json_object();
		json_object_set_new(obj, key, c);
	}
	return c;
}

static json_t *
labels(const char *pool)
{
	return json_pack(
	    "{s:s,s:s}", LABEL_MANAGED_BY, MANAGED_BY, LABEL_CLASS, pool);
}

/* The class's VMI spec with the cloud-init disk and, when the spec names
 * no network, masquerade on the pod network. */
static json_t *
vmi_spec(const struct conf_class *cc, const char *secret)
{
	json_t *spec = json_deep_copy(cc->cc_spec), *domain, *devices;

	domain = child(spec, "domain", false);
	devices = child(domain, "devices", false);
	json_array_append_new(child(devices, "disks", true),
	    json_pack("{s:s,s:{s:s}}", "name", CLOUDINIT_VOLUME, "disk", "bus",
	        "virtio"));
	json_array_append_new(child(spec, "volumes", true),
	    json_pack("{s:s,s:{s:{s:s}}}", "name", CLOUDINIT_VOLUME,
	        "cloudInitNoCloud", "secretRef", "name", secret));
	if (json_object_get(devices, "interfaces") == NULL &&
	    json_object_get(spec, "networks") == NULL) {
		json_object_set_new(devices, "interfaces",
		    json_pack(
		        "[{s:s,s:{}}]", "name", "default", "masquerade"));
		json_object_set_new(spec, "networks",
		    json_pack("[{s:s,s:{}}]", "name", "default", "pod"));
	}
	return spec;
}

static void
template_hash(json_t *tmpl, const char *userdata, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	char *canon = json_dumps(tmpl, JSON_SORT_KEYS | JSON_COMPACT);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int mdlen;
	int i;

	if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, canon, strlen(canon)) != 1 ||
	    EVP_DigestUpdate(ctx, "\n", 1) != 1 ||
	    EVP_DigestUpdate(ctx, userdata, strlen(userdata)) != 1 ||
	    EVP_DigestFinal_ex(ctx, md, &mdlen) != 1)
		fatalx("sha256 failed");
	EVP_MD_CTX_free(ctx);
	free(canon);
	for (i = 0; i < TEMPLATE_HASH_LEN / 2; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

int
pool_objects_build(struct pool_objects *po, const struct conf_class *cc,
    const char *pool, const char *api_url)
{
	struct buf b64 = { 0 };
	json_t *annotations;

	pool_objects_names(po, pool);
	if ((po->po_userdata = cloudinit_userdata(cc, api_url)) == NULL)
		return -1;
	b64_encode(&b64, po->po_userdata, strlen(po->po_userdata));
	po->po_userdata_b64 = buf_take(&b64);
	annotations = json_pack("{s:s}", ANNOT_CLASS, cc->cc_name);
	po->po_template = json_pack("{s:{s:o,s:o},s:{s:s,s:{s:{s:o},s:o}}}",
	    "metadata", "labels", labels(pool), "annotations", annotations,
	    "spec", "runStrategy", "RerunOnFailure", "template", "metadata",
	    "labels", labels(pool), "spec", vmi_spec(cc, po->po_secret));
	template_hash(po->po_template, po->po_userdata, po->po_hash);
	json_object_set_new(annotations, ANNOT_HASH, json_string(po->po_hash));
	return 0;
}

void
pool_objects_names(struct pool_objects *po, const char *pool)
{
	memset(po, 0, sizeof(*po));
	snprintf(po->po_pool, sizeof(po->po_pool), "%s", pool);
	snprintf(
	    po->po_secret, sizeof(po->po_secret), "%s" SECRET_SUFFIX, pool);
}

void
pool_objects_free(struct pool_objects *po)
{
	if (po->po_userdata != NULL)
		explicit_bzero(po->po_userdata, strlen(po->po_userdata));
	if (po->po_userdata_b64 != NULL)
		explicit_bzero(
		    po->po_userdata_b64, strlen(po->po_userdata_b64));
	free(po->po_userdata);
	free(po->po_userdata_b64);
	json_decref(po->po_template);
	memset(po, 0, sizeof(*po));
}

static json_t *
metadata(const struct pool_objects *po, const struct conf_class *cc,
    const char *name, const char *ns, const char *rv)
{
	json_t *m = json_pack("{s:s,s:s,s:o,s:{s:s,s:s}}", "name", name,
	    "namespace", ns, "labels", labels(po->po_pool), "annotations",
	    ANNOT_CLASS, cc->cc_name, ANNOT_HASH, po->po_hash);

	if (rv != NULL)
		json_object_set_new(m, "resourceVersion", json_string(rv));
	/* On the objects only: the template's labels are the pool's
	 * selector, which cannot change. */
	if (po->po_instance[0] != '\0')
		json_object_set_new(json_object_get(m, "labels"),
		    LABEL_INSTANCE, json_string(po->po_instance));
	return m;
}

json_t *
pool_secret_json(const struct pool_objects *po, const struct conf_class *cc,
    const char *ns, const char *rv)
{
	return json_pack("{s:s,s:s,s:o,s:s,s:{s:s}}", "apiVersion", "v1",
	    "kind", "Secret", "metadata",
	    metadata(po, cc, po->po_secret, ns, rv), "type", "Opaque", "data",
	    SECRET_KEY, po->po_userdata_b64);
}

json_t *
pool_json(const struct pool_objects *po, const struct conf_class *cc,
    const char *ns, uint32_t replicas, const char *rv)
{
	return json_pack("{s:s,s:s,s:o,s:{s:I,s:{s:O},s:{s:{}},s:{s:{}},s:O}}",
	    "apiVersion", "pool.kubevirt.io/v1beta1", "kind",
	    "VirtualMachinePool", "metadata",
	    metadata(po, cc, po->po_pool, ns, rv), "spec", "replicas",
	    (json_int_t)replicas, "selector", "matchLabels",
	    json_object_get(
	        json_object_get(po->po_template, "metadata"), "labels"),
	    "scaleInStrategy", "opportunistic", "updateStrategy",
	    "opportunistic", "virtualMachineTemplate", po->po_template);
}
