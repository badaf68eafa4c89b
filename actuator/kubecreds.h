/*
 * Kubernetes credentials: the in-cluster service account (token re-read as
 * it rotates, CA file, namespace file) or a kubeconfig (--kubeconfig /
 * $KUBECONFIG: current context, server, CA file or data, token or token
 * file, client certificate and key, insecure-skip-tls-verify).
 */
#ifndef RP_KUBECREDS_H
#define RP_KUBECREDS_H

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>

#include "buf.h"
#include "flags.h"

#define KUBE_SA_DIR          "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_TOKEN_REREAD_MS 60000
#define KUBE_TOKEN_MAX       (64 * 1024)
#define KUBECONFIG_MAX       (4 * 1024 * 1024)

struct kube_creds {
	char *kc_server;     /* https://host:port, no trailing '/' */
	char *kc_namespace;  /* the namespace to manage */
	char *kc_source;     /* "in-cluster" or "kubeconfig PATH" */
	char *kc_kubeconfig; /* its path, or NULL in-cluster */
	char *kc_token;      /* current bearer token, or NULL */
	char *kc_token_file; /* re-read when set */
	uint64_t kc_token_read_ms;
	char *kc_ca_file;
	struct buf kc_ca_pem; /* certificate-authority-data */
	char *kc_cert_file;
	struct buf kc_cert_pem;
	char *kc_key_file;
	struct buf kc_key_pem;
	bool kc_insecure;
};

/* kubecreds.c */
/* Loads credentials per the flags.  0, or -1 with a message in err that
 * names the file and the problem. */
int kube_creds_load(
    const struct flags *, struct kube_creds *, char *err, size_t errlen);
/* As kube_creds_load, with the service account's files in sa_dir instead
 * of KUBE_SA_DIR (tests). */
int kube_creds_load_sa(const struct flags *, const char *sa_dir,
    struct kube_creds *, char *err, size_t errlen);
void kube_creds_free(struct kube_creds *);
/* Re-reads the token file when it is due (or now, when force); keeps the
 * old token if the file cannot be read.  0, or -1 (logged). */
int kube_creds_refresh(struct kube_creds *, bool force);
/* Sets TLS material on an easy handle. */
void kube_creds_apply(const struct kube_creds *, CURL *);

#endif
