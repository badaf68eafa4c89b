/*
 * The configuration (DESIGN §7, README "Configuration"): config.yaml in
 * one of two forms, and the per-class secrets of secrets.yaml.
 *   0.1.0: resourceClass: {"ns/name": {token, idleTimeout, minReplicas,
 *          maxReplicas, spec}}
 *   0.1.2: resourceClassDefaults: {...}, resourceClasses: {"ns/name":
 *          {token, userData, scaling, runner, emptyDiskMounts, spec}},
 *          the defaults merged into every entry by field.
 * Parsed in one place (conf.c) into plain structs; no libyaml type leaves
 * conf.c and yaml2json.c.  A loaded conf is one value, replaced whole.
 * Errors are one line, file:line:col, key path, problem; tokens and user
 * data are never quoted in them:
 *   config.yaml:12:5: resourceClass."my-org/x".maxReplicas: must be >= …
 */
#ifndef RP_CONF_H
#define RP_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "scaling.h"

#define CONF_MIN_REPLICAS_DEFAULT 3
#define CONF_MAX_REPLICAS_DEFAULT 10
#define CONF_REPLICAS_LIMIT       10000 /* sanity bound on maxReplicas */
/* The documented limits (README, Limits): proto/msg.h sizes its messages
 * from them. */
#define CONF_CLASSES_LIMIT   1000
#define CONF_CLASS_NAME_MAX  253 /* bytes, as the chart's schema */
#define CONF_FILE_MAX        (4 * 1024 * 1024)
#define CONF_ERR_MAX         512
#define CONF_USERDATA_MAX    (256 * 1024)
#define CONF_DISKS_MAX       16
#define CONF_PREFIX_MAX      32 /* commandPrefix items */
#define CONF_SECRETS_DEFAULT "/etc/runner-provisioner-secrets/secrets.yaml"

/* Runner defaults of the 0.1.2 document ("Machine runner options"). */
#define CONF_WORKING_DIR_DEFAULT    "/home/circleci/workdir"
#define CONF_TASK_AGENT_DIR_DEFAULT "/tmp/libexec/circleci"
#define CONF_JOB_USER               "circleci"
#define CONF_AGENT_USER             "circleci-runner"

/* conf_load flags */
#define CONF_SECRETS_OPTIONAL 0x1 /* a missing secrets file is fine */
#define CONF_NO_SECRETS       0x2 /* read no secrets; tokens not required */

enum conf_form {
	CONF_FORM_010, /* resourceClass */
	CONF_FORM_012, /* resourceClasses + resourceClassDefaults */
};

struct conf_runner {
	char *cr_working_dir;
	char *cr_task_agent_dir;
	char **cr_prefix; /* commandPrefix */
	size_t cr_nprefix;
	bool cr_home_ssh_keys; /* useHomeSSHDirForCheckoutKeys */
	char *cr_max_run_time; /* as written; NULL: the runner's 5h */
	uint64_t cr_max_run_time_ms;
};

struct conf_disk {
	char *cd_serial;
	char *cd_path;
	char *cd_fs_type;
};

struct conf_class {
	char *cc_name;               /* "namespace/name" */
	char *cc_token;              /* runner token; NULL once dropped */
	char *cc_user_data;          /* secret too; NULL when unset */
	char *cc_idle_timeout;       /* as written; NULL when unset */
	uint64_t cc_idle_timeout_ms; /* 0 when unset */
	struct scale_policy cc_scaling;
	struct conf_runner cc_runner;
	struct conf_disk *cc_disks; /* emptyDiskMounts */
	size_t cc_ndisks;
	json_t *cc_spec; /* VirtualMachineInstanceSpec */
	int cc_line;     /* position of the class key */
	int cc_col;
};

struct conf {
	char *c_path;
	char *c_secrets_path; /* the secrets file read, or NULL */
	enum conf_form c_form;
	struct conf_class *c_classes; /* sorted by name */
	size_t c_nclasses;
	bool c_redacted; /* its tokens are on the logger's redaction list */
};

/* conf.c */
/* Reads and validates config (and secrets, unless NULL or CONF_NO_SECRETS;
 * with CONF_SECRETS_OPTIONAL a missing secrets file is skipped).  Returns a
 * new conf (free with conf_free), or NULL with a one-line message naming
 * file:line:col and key path in err. */
struct conf *conf_load(const char *config, const char *secrets, unsigned flags,
    char *err, size_t errlen);
/* As conf_load, from memory, without a secrets file. */
struct conf *conf_parse(
    const char *name, const char *buf, size_t len, char *err, size_t errlen);
/* As conf_load, from memory: sname/sbuf may be NULL (no secrets file). */
struct conf *conf_parse_files(const char *name, const char *buf, size_t len,
    const char *sname, const char *sbuf, size_t slen, unsigned flags,
    char *err, size_t errlen);
/* conf_parse and conf_load with a secrets file of none, and flags. */
struct conf *conf_load_flags(
    const char *path, unsigned flags, char *err, size_t errlen);
struct conf *conf_parse_flags(const char *name, const char *buf, size_t len,
    unsigned flags, char *err, size_t errlen);
/* The document in buf (already validated) as compact JSON without any
 * runner token or user data: what a process that needs no secrets gets.
 * A new string (*outlen bytes), or NULL when buf does not parse. */
char *conf_strip_secrets(const char *buf, size_t len, size_t *outlen);
void conf_free(struct conf *);
/* Borrowed pointer into conf, or NULL. */
const struct conf_class *conf_class_find(const struct conf *, const char *);
/* Wipes and frees every runner token and user data (processes that do not
 * need them). */
void conf_drop_tokens(struct conf *);
/* Registers every runner token with the logger's redaction list, until
 * conf_drop_tokens or conf_free takes them off. */
void conf_register_secrets(struct conf *);
/* One line per class, without secrets ("name: minReplicas=3 maxReplicas=10
 * idleTimeout=10m0s image=… memory=2Gi cpu=1"); caller frees. */
char *conf_summary(const struct conf *);
/* Returns 0 if name has the shape of a "namespace/name" resource class (as
 * messages carry it): at most 253 bytes matching
 * ^[A-Za-z0-9][A-Za-z0-9._:+-]*\/[A-Za-z0-9][A-Za-z0-9._:+-]*$, else -1. */
int conf_class_name_valid(const char *name);
/* Returns 0 if the configuration accepts name: that shape, and the 0.1.2
 * rule of the chart's values.schema.json, ^[a-z0-9_-]+/[A-Za-z0-9_:+-]+$;
 * else -1. */
int conf_class_name_allowed(const char *name);

#endif
