/*
 * The configuration file (DESIGN §7): a map of CircleCI resource classes.
 * Parsed in one place (conf.c) into plain structs; no libyaml type leaves
 * conf.c and yaml2json.c.  Errors are one line, file:line:col, key path,
 * problem; tokens are never quoted in them:
 *   config.yaml:12:5: resourceClass."my-org/x".maxReplicas: must be >= …
 */
#ifndef RP_CONF_H
#define RP_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CONF_MIN_REPLICAS_DEFAULT 3
#define CONF_MAX_REPLICAS_DEFAULT 10
#define CONF_REPLICAS_LIMIT       10000 /* sanity bound on maxReplicas */
/* The documented limits (README, Limits): proto/msg.h sizes its messages
 * from them. */
#define CONF_CLASSES_LIMIT  1000
#define CONF_CLASS_NAME_MAX 253 /* bytes, as the chart's schema */
#define CONF_FILE_MAX       (4 * 1024 * 1024)
#define CONF_ERR_MAX        512

/* conf_*_flags flags */
#define CONF_NO_SECRETS 0x2 /* tokens not required (the poller's copy) */

struct conf_class {
	char *cc_name;               /* "namespace/name" */
	char *cc_token;              /* runner token; NULL once dropped */
	char *cc_idle_timeout;       /* as written; NULL when unset */
	uint64_t cc_idle_timeout_ms; /* 0 when unset */
	uint32_t cc_min_replicas;
	uint32_t cc_max_replicas;
	json_t *cc_spec; /* VirtualMachineInstanceSpec */
	int cc_line;     /* position of the class key */
	int cc_col;
};

struct conf {
	char *c_path;
	struct conf_class *c_classes; /* sorted by name */
	size_t c_nclasses;
};

/* conf.c */
/* Reads and validates path.  Returns a new conf (free with conf_free), or
 * NULL with a one-line message naming file:line:col and key path in err. */
struct conf *conf_load(const char *path, char *err, size_t errlen);
/* As conf_load, from memory; name is used in messages. */
struct conf *conf_parse(
    const char *name, const char *buf, size_t len, char *err, size_t errlen);
/* Both, with CONF_* flags. */
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
/* Wipes and frees every runner token (processes that do not need them). */
void conf_drop_tokens(struct conf *);
/* Registers every runner token with the logger's redaction list. */
void conf_register_secrets(const struct conf *);
/* One line per class, without secrets ("name: minReplicas=3 maxReplicas=10
 * idleTimeout=10m0s image=… memory=2Gi cpu=1"); caller frees. */
char *conf_summary(const struct conf *);
/* Returns 0 if name is a valid "namespace/name" resource class: at most 253
 * bytes matching the chart's values.schema.json pattern
 * ^[A-Za-z0-9][A-Za-z0-9._:+-]*\/[A-Za-z0-9][A-Za-z0-9._:+-]*$, else -1. */
int conf_class_name_valid(const char *name);

#endif
