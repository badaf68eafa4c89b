/*
 * The objects the actuator keeps per resource class (DESIGN §5): a Secret
 * holding the cloud-init user data and a VirtualMachinePool built from the
 * class's VirtualMachineInstanceSpec plus the cloud-init disk.
 */
#ifndef RP_POOL_H
#define RP_POOL_H

#include <stdint.h>

#include <jansson.h>

#include "conf.h"

#define LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define MANAGED_BY       "runner-provisioner"
#define LABEL_CLASS      "runner-provisioner/resource-class"
/* The installation (--lease-name) that made a pool or Secret: another one
 * in the namespace never retires it. */
#define LABEL_INSTANCE    "runner-provisioner/instance"
#define INSTANCE_MAX      63
#define ANNOT_CLASS       "runner-provisioner/resource-class-name"
#define ANNOT_HASH        "runner-provisioner/template-hash"
#define POOL_FINALIZER    "pool.kubevirt.io/finalizer"
#define CLOUDINIT_VOLUME  "cloudinitdisk"
#define SECRET_KEY        "userdata"
#define SECRET_SUFFIX     "-userdata" /* the Secret is "<pool>-userdata" */
#define TEMPLATE_HASH_LEN 16

#define POOL_API "/apis/pool.kubevirt.io/v1beta1"
#define VM_API   "/apis/kubevirt.io/v1"

/* The desired objects of one class, built once from the configuration. */
struct pool_objects {
	char po_pool[64];
	char po_secret[80];
	char po_instance[INSTANCE_MAX + 1]; /* "": no instance label */
	char *po_userdata;                  /* secret: cloud-init text */
	char *po_userdata_b64;              /* secret: as stored in data */
	json_t *po_template;                /* spec.virtualMachineTemplate */
	char po_hash[TEMPLATE_HASH_LEN + 1];
};

/* pool.c */
/* Builds the objects for cc.  0, or -1 (logged). */
int pool_objects_build(struct pool_objects *, const struct conf_class *,
    const char *pool, const char *api_url);
void pool_objects_free(struct pool_objects *);
/* Names only (a class that retires): nothing to build. */
void pool_objects_names(struct pool_objects *, const char *pool);
/* New JSON objects, ready to send. */
json_t *pool_secret_json(const struct pool_objects *,
    const struct conf_class *, const char *ns, const char *resource_version);
json_t *pool_json(const struct pool_objects *, const struct conf_class *,
    const char *ns, uint32_t replicas, const char *resource_version);
/* The labels every object carries, and the selector: "k=v,k=v". */
const char *pool_managed_selector(void);

#endif
