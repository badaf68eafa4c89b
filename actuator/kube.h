/*
 * A small asynchronous Kubernetes API client on the actuator's curl multi
 * handle.  Every request names its permission from kube_rbac.def, so a 403
 * can say exactly which verb on which resource the Role lacks, and the
 * chart's Role is tested against the same table.
 */
#ifndef RP_KUBE_H
#define RP_KUBE_H

#include <stdbool.h>

#include <curl/curl.h>
#include <jansson.h>

#include "kubecreds.h"
#include "kubeverb.h"
#include "metrics.h"

struct kube;

/* Completion: runs once per request, in the caller's loop. */
typedef void (*kube_cb)(void *arg, const struct kube_reply *);

#define KUBE_TIMEOUT_MS 30000
#define KUBE_IDLE_CALLS 8
/* Connections to the API server: more requests wait their turn inside
 * libcurl.  A thousand classes' first sync is thousands of requests; as
 * many TLS handshakes at once would keep the actuator busy for seconds
 * (unable to answer its health survey) and press on the API server's
 * limits. */
#define KUBE_HOST_CONNS        16
#define KUBE_IDLE_BODY_MAX     (64 * 1024)
#define KUBE_BODY_MAX          (32 * 1024 * 1024)
#define KUBE_CONTENT_JSON      "application/json"
#define KUBE_CONTENT_MERGE     "application/merge-patch+json"
#define KUBE_CONTENT_JSONPATCH "application/json-patch+json"

/* kube.c */
/* creds and multi are borrowed and must outlive the client. */
struct kube *kube_new(struct kube_creds *, CURLM *, struct metrics *);
void kube_free(struct kube *);
/* Queues a request.  path starts with "/api" or "/apis"; body (may be
 * NULL) is taken.  cb gets the reply, also on failure.  0, or -1 when the
 * request could not be started (cb is not called). */
int kube_send(struct kube *, enum kube_verb, const char *method,
    const char *path, const char *content_type, json_t *body, kube_cb cb,
    void *arg);
/* Delivers finished requests to their callbacks. */
void kube_collect(struct kube *);
int kube_inflight(const struct kube *);
const char *kube_namespace(const struct kube *);
/* True while the last request failed without an HTTP answer. */
bool kube_unreachable(const struct kube *);

#endif
