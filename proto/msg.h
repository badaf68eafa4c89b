/*
 * The only contract between processes.  Every message is a 16-byte header
 * followed by a payload, all integers little-endian:
 *
 *   0  'R' 'P'     magic
 *   2  u8 version  MSG_VERSION
 *   3  u8 kind     enum msg_kind
 *   4  u32 len     total length, header included
 *   8  u32 seq     per-sender sequence number
 *  12  u32 pid     sender's process id
 *
 * Decoding is strict: the exact length, a known version and kind, and every
 * field in range, or the message is rejected (and the caller counts it).
 */
#ifndef RP_MSG_H
#define RP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "buf.h"
#include "conf.h"

#define MSG_VERSION 1
#define MSG_HDR_LEN 16
/*
 * The largest message, and every IPC socket's receive limit (nng's own
 * default, 1 MiB, is too small).  The health answer of the maximal
 * configuration (CONF_CLASSES_LIMIT classes with CONF_CLASS_NAME_MAX-byte
 * names, every per-class series set) is about 7 MiB; a whole configuration
 * (configuration and secrets files, each up to CONF_FILE_MAX, and the
 * CircleCI token) fits too.  A larger health answer is not sent: the child
 * answers with a small one saying so (survey.c).
 */
#define MSG_MAX          (16 * 1024 * 1024)
#define MSG_CLASS_MAX    CONF_CLASS_NAME_MAX
#define MSG_COUNT_MAX    1000000 /* tasks per class, sanity bound */
#define MSG_DOCS_MAX     3       /* documents in a configuration */
#define MSG_DOC_NAME_MAX 1024    /* a document's file name */
#define MSG_ACK_ERR_MAX  1024    /* why a child refused a configuration */

enum msg_kind {
	MSG_DEMAND = 1,       /* poller → actuator (PUB/SUB) */
	MSG_HEALTH_QUERY = 2, /* supervisor → children (SURVEY) */
	MSG_HEALTH = 3,       /* children → supervisor (survey answer) */
	MSG_CONFIG = 4,       /* supervisor → one child (PAIR) */
	MSG_CONFIG_ACK = 5,   /* that child → supervisor */
};
#define MSG_KIND_LAST MSG_CONFIG_ACK

enum msg_err {
	MSG_OK = 0,
	MSG_ESHORT, /* shorter than a header */
	MSG_EMAGIC,
	MSG_EVERSION,
	MSG_EKIND,  /* unknown, or not the kind expected here */
	MSG_ELEN,   /* length field or payload size wrong */
	MSG_ERANGE, /* a field outside its range */
	MSG_ETEXT,  /* embedded text malformed */
};
#define MSG_NERR (MSG_ETEXT + 1)

struct msg_hdr {
	uint8_t h_version;
	uint8_t h_kind;
	uint32_t h_len;
	uint32_t h_seq;
	uint32_t h_pid;
};

enum demand_error {
	DEMAND_ERR_NONE = 0,
	DEMAND_ERR_HTTP,         /* an unexpected HTTP status */
	DEMAND_ERR_TRANSPORT,    /* connect, TLS, timeout, reset */
	DEMAND_ERR_PARSE,        /* body not the expected JSON */
	DEMAND_ERR_RATE_LIMITED, /* 429, inside a Retry-After window */
	DEMAND_ERR_AUTH,         /* 401/403: the token is wrong */
};
#define DEMAND_ERR_LAST DEMAND_ERR_AUTH

/* One observation of one resource class. */
struct msg_demand {
	uint64_t d_cycle;       /* poll cycle number */
	uint64_t d_observed_ms; /* wall clock, ms since the epoch */
	bool d_ok;
	uint8_t d_error;        /* enum demand_error; NONE iff ok */
	uint16_t d_http_status; /* 0 when no answer */
	uint32_t d_unclaimed;   /* 0 unless ok */
	uint32_t d_running;     /* 0 unless ok */
	char d_class[MSG_CLASS_MAX + 1];
};

enum health_role {
	ROLE_POLLER = 1,
	ROLE_ACTUATOR = 2,
};

enum health_state {
	HEALTH_STARTING = 0, /* up, no success yet */
	HEALTH_OK = 1,       /* succeeded recently */
	HEALTH_DEGRADED = 2, /* working, some classes failing */
	HEALTH_FAILING = 3,  /* nothing succeeds */
};
#define HEALTH_STATE_LAST HEALTH_FAILING

struct msg_health_query {
	uint64_t q_sent_ms;
};

struct msg_health {
	uint8_t hl_role;  /* enum health_role */
	uint8_t hl_state; /* enum health_state */
	uint64_t hl_uptime_ms;
	json_t *hl_detail; /* owned: a JSON object for /ready */
	char *hl_metrics;  /* owned: exposition text */
	size_t hl_metrics_len;
};

/*
 * A configuration the supervisor validated, for one child.  Each child
 * gets only what it needs: the actuator the configuration and secrets
 * files as written; the poller the configuration without any runner token
 * or user data, and the CircleCI API token.  The child parses the texts
 * with the same loader (conf.c) and never reads the files again.
 */
enum config_doc {
	CONFIG_DOC_CONFIG = 1,  /* config.yaml: always, first */
	CONFIG_DOC_SECRETS = 2, /* secrets.yaml: the actuator's only */
	CONFIG_DOC_TOKEN = 3,   /* the CircleCI API token: the poller's only */
};

struct msg_config_doc {
	uint8_t cd_kind;                    /* enum config_doc */
	char cd_name[MSG_DOC_NAME_MAX + 1]; /* file name, for messages */
	const char *cd_text;                /* borrowed from the message */
	size_t cd_len;
};

struct msg_config {
	uint64_t c_generation; /* >= 1, grows with every accepted change */
	uint8_t c_role;        /* enum health_role: the child it is for */
	struct msg_config_doc c_docs[MSG_DOCS_MAX];
	size_t c_ndocs;
};

struct msg_config_ack {
	uint64_t ca_generation;
	uint8_t ca_role; /* enum health_role */
	bool ca_applied;
	char ca_error[MSG_ACK_ERR_MAX + 1]; /* "" iff applied */
};

/* msg.c */
/* Encoders append one whole message to out. */
void msg_demand_encode(
    const struct msg_demand *, uint32_t seq, struct buf *out);
void msg_health_query_encode(
    const struct msg_health_query *, uint32_t seq, struct buf *out);
/* detail is serialised (borrowed); metrics must be valid exposition text. */
void msg_health_encode(
    const struct msg_health *, uint32_t seq, struct buf *out);
void msg_config_encode(
    const struct msg_config *, uint32_t seq, struct buf *out);
void msg_config_ack_encode(
    const struct msg_config_ack *, uint32_t seq, struct buf *out);

/* Decoders check everything; kind must be the expected one. */
enum msg_err msg_hdr_decode(const void *, size_t, struct msg_hdr *);
enum msg_err msg_demand_decode(
    const void *, size_t, struct msg_hdr *, struct msg_demand *);
enum msg_err msg_health_query_decode(
    const void *, size_t, struct msg_hdr *, struct msg_health_query *);
/* On MSG_OK the caller owns the detail and metrics: msg_health_clear(). */
enum msg_err msg_health_decode(
    const void *, size_t, struct msg_hdr *, struct msg_health *);
void msg_health_clear(struct msg_health *);
/* The documents' texts point into the message: valid while it is. */
enum msg_err msg_config_decode(
    const void *, size_t, struct msg_hdr *, struct msg_config *);
enum msg_err msg_config_ack_decode(
    const void *, size_t, struct msg_hdr *, struct msg_config_ack *);

const char *msg_err_name(enum msg_err);
const char *demand_error_name(enum demand_error);
const char *health_role_name(enum health_role);
const char *health_state_name(enum health_state);

#endif
