#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base64.h"
#include "kubecreds.h"
#include "log.h"
#include "token.h"
#include "util.h"
#include "yaml2json.h"

struct kc_parse {
	const char *kp_path;
	char kp_dir[PATH_MAX]; /* relative paths resolve here */
	char *kp_err;
	size_t kp_errlen;
};

static int kp_fail(struct kc_parse *kp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
kp_fail(struct kc_parse *kp, const char *fmt, ...)
{
	static const char hex[] = "0123456789abcdef";
	char msg[400], line[512];
	size_t i, o = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(line, sizeof(line), "kubeconfig %s: %s", kp->kp_path, msg);
	/* Names in a kubeconfig are anyone's text: the message stays one
	 * line, control characters written as \xNN. */
	for (i = 0; line[i] != '\0' && o + 5 < kp->kp_errlen; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c >= 0x20 && c != 0x7f) {
			kp->kp_err[o++] = (char)c;
			continue;
		}
		kp->kp_err[o++] = '\\';
		kp->kp_err[o++] = 'x';
		kp->kp_err[o++] = hex[c >> 4];
		kp->kp_err[o++] = hex[c & 0xf];
	}
	if (kp->kp_errlen > 0)
		kp->kp_err[o] = '\0';
	return -1;
}

static char *
resolve_path(const struct kc_parse *kp, const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	return xasprintf("%s/%s", kp->kp_dir, p);
}

/* Sets *out to the "field" of the entry of list named name (contexts[]
 * .context etc.), NULL when there is none.  -1 when two entries carry the
 * name: kubectl takes the last, a reader the first; neither is sure to be
 * what the operator meant. */
static int
named(struct kc_parse *kp, json_t *root, const char *list, const char *name,
    const char *field, json_t **out)
{
	json_t *arr = json_object_get(root, list), *e;
	bool found = false;
	const char *n;
	size_t i;

	*out = NULL;
	json_array_foreach(arr, i, e)
	{
		n = json_string_value(json_object_get(e, "name"));
		if (n == NULL || strcmp(n, name) != 0)
			continue;
		if (found)
			return kp_fail(kp, "%s: two entries are named \"%s\"",
			    list, name);
		found = true;
		*out = json_object_get(e, field);
	}
	return 0;
}

static const char *
str_field(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* 0 when path opens for reading and is no directory, else -1 (errno).
 * curl reads the file itself, on every connection, so it may rotate. */
static int
file_readable(const char *path)
{
	struct stat st;
	int fd, saved, rv = 0;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		errno = EISDIR;
		rv = -1;
	}
	saved = errno;
	close(fd);
	errno = saved;
	return rv;
}

static int
load_pem(struct kc_parse *kp, const char *what, json_t *obj,
    const char *data_key, const char *file_key, struct buf *pem, char **file)
{
	const char *data = str_field(obj, data_key);
	const char *path = str_field(obj, file_key);

	if (data != NULL && data[0] != '\0') {
		if (b64_decode(pem, data) == -1)
			return kp_fail(
			    kp, "%s: %s is not valid base64", what, data_key);
		return 0;
	}
	if (path == NULL || path[0] == '\0')
		return 0;
	*file = resolve_path(kp, path);
	if (file_readable(*file) == -1)
		return kp_fail(kp, "%s: cannot read %s %s: %s", what, file_key,
		    *file, strerror(errno));
	return 0;
}

/* Trims the blanks around t (a file's newline) in place.  NULL when what
 * is left can go into an Authorization header, else what is wrong with
 * it.  A space or control byte inside would end the header early or
 * inject another. */
static const char *
token_check(char *t)
{
	const unsigned char *p;
	size_t lead;

	rstrip(t);
	lead = strspn(t, " \t\r\n");
	memmove(t, t + lead, strlen(t + lead) + 1);
	if (t[0] == '\0')
		return "is empty";
	for (p = (const unsigned char *)t; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f)
			return "holds more than a token (a space or control "
			       "character inside it)";
	return NULL;
}

static void
token_wipe(char *t)
{
	if (t != NULL)
		explicit_bzero(t, strlen(t));
	free(t);
}

/* Makes t (taken) the token in use.  It replaces the old one in the
 * redaction list, which would otherwise grow by one every rotation, and
 * the old one is wiped. */
static void
token_set(struct kube_creds *kc, char *t)
{
	log_secret_replace(kc->kc_token, t);
	token_wipe(kc->kc_token);
	kc->kc_token = t;
}

/* The token in kc_token_file (the caller frees), or NULL with what went
 * wrong in why. */
static char *
token_read(const struct kube_creds *kc, char *why, size_t whylen)
{
	const char *bad;
	char *t;

	if ((t = read_file(kc->kc_token_file, KUBE_TOKEN_MAX, NULL)) == NULL) {
		if (errno == EFBIG)
			snprintf(why, whylen,
			    "the token file %s is larger than %d bytes",
			    kc->kc_token_file, KUBE_TOKEN_MAX);
		else
			snprintf(why, whylen,
			    "cannot read the token file %s: %s",
			    kc->kc_token_file, strerror(errno));
		return NULL;
	}
	if ((bad = token_check(t)) != NULL) {
		snprintf(why, whylen, "the token file %s %s",
		    kc->kc_token_file, bad);
		token_wipe(t);
		return NULL;
	}
	return t;
}

static int
set_server(struct kube_creds *kc, struct kc_parse *kp, const char *cluster,
    const char *server)
{
	size_t n;

	if (server == NULL || server[0] == '\0')
		return kp_fail(
		    kp, "cluster \"%s\" has no server address", cluster);
	if (strncmp(server, "https://", 8) != 0)
		return kp_fail(kp,
		    "cluster \"%s\": server \"%s\" is not an https:// "
		    "address; TLS is required",
		    cluster, server);
	if (server[8] == '\0' || server[8] == '/')
		return kp_fail(kp, "cluster \"%s\": server \"%s\" has no host",
		    cluster, server);
	n = strlen(server);
	while (n > 8 && server[n - 1] == '/')
		n--;
	/* Request paths are appended to it: nothing may end the URL's path
	 * (as for --circleci-api-addr). */
	if (strpbrk(server, " \t\r\n?#") != NULL)
		return kp_fail(kp,
		    "cluster \"%s\": server \"%s\" is not a valid URL "
		    "(a blank, '?' or '#')",
		    cluster, server);
	kc->kc_server = xstrndup(server, n);
	return 0;
}

static int
parse_kubeconfig(struct kube_creds *kc, struct kc_parse *kp, json_t *root)
{
	const char *ctx_name, *cluster_name, *user_name, *ns, *tok, *tokfile;
	const char *bad;
	json_t *ctx, *cluster, *user;
	char what[300], *t;

	if (!json_is_object(root))
		return kp_fail(kp, "not a kubeconfig (expected a mapping)");
	if ((ctx_name = str_field(root, "current-context")) == NULL ||
	    ctx_name[0] == '\0')
		return kp_fail(kp, "no current-context is set");
	if (named(kp, root, "contexts", ctx_name, "context", &ctx) == -1)
		return -1;
	if (ctx == NULL)
		return kp_fail(
		    kp, "current-context \"%s\" is not in contexts", ctx_name);
	cluster_name = str_field(ctx, "cluster");
	user_name = str_field(ctx, "user");
	if (cluster_name == NULL || cluster_name[0] == '\0')
		return kp_fail(
		    kp, "context \"%s\" names no cluster", ctx_name);
	if (named(kp, root, "clusters", cluster_name, "cluster", &cluster) ==
	    -1)
		return -1;
	if (cluster == NULL)
		return kp_fail(kp, "context \"%s\": cluster \"%s\" not found",
		    ctx_name, cluster_name);
	if (set_server(kc, kp, cluster_name, str_field(cluster, "server")) ==
	    -1)
		return -1;
	kc->kc_insecure =
	    json_is_true(json_object_get(cluster, "insecure-skip-tls-verify"));
	snprintf(what, sizeof(what), "cluster \"%s\"", cluster_name);
	if (load_pem(kp, what, cluster, "certificate-authority-data",
	        "certificate-authority", &kc->kc_ca_pem,
	        &kc->kc_ca_file) == -1)
		return -1;
	if ((ns = str_field(ctx, "namespace")) != NULL && ns[0] != '\0')
		kc->kc_namespace = xstrdup(ns);
	if (user_name == NULL)
		return 0; /* anonymous */
	if (named(kp, root, "users", user_name, "user", &user) == -1)
		return -1;
	if (user == NULL)
		return kp_fail(kp, "context \"%s\": user \"%s\" not found",
		    ctx_name, user_name);
	if (json_object_get(user, "exec") != NULL ||
	    json_object_get(user, "auth-provider") != NULL)
		return kp_fail(kp,
		    "user \"%s\" authenticates with an exec plugin or auth "
		    "provider, which runner-provisioner does not run; use a "
		    "token, tokenFile or client certificate",
		    user_name);
	if (json_object_get(user, "username") != NULL ||
	    json_object_get(user, "password") != NULL)
		return kp_fail(kp,
		    "user \"%s\" uses basic authentication, which Kubernetes "
		    "no longer supports; use a token or client certificate",
		    user_name);
	snprintf(what, sizeof(what), "user \"%s\"", user_name);
	if ((tok = str_field(user, "token")) != NULL && tok[0] != '\0') {
		t = xstrdup(tok);
		/* Registered for redaction by token_set (the messages below
		 * never quote it). */
		if ((bad = token_check(t)) != NULL) {
			token_wipe(t);
			return kp_fail(kp, "%s: the token %s", what, bad);
		}
		token_set(kc, t);
	}
	/* With both, the file wins once read (as in kubectl). */
	if ((tokfile = str_field(user, "tokenFile")) != NULL &&
	    tokfile[0] != '\0')
		kc->kc_token_file = resolve_path(kp, tokfile);
	if (load_pem(kp, what, user, "client-certificate-data",
	        "client-certificate", &kc->kc_cert_pem,
	        &kc->kc_cert_file) == -1 ||
	    load_pem(kp, what, user, "client-key-data", "client-key",
	        &kc->kc_key_pem, &kc->kc_key_file) == -1)
		return -1;
	if ((kc->kc_cert_pem.b_len > 0 || kc->kc_cert_file != NULL) !=
	    (kc->kc_key_pem.b_len > 0 || kc->kc_key_file != NULL))
		return kp_fail(kp,
		    "user \"%s\" has a client certificate without a key, or "
		    "a key without a certificate",
		    user_name);
	return 0;
}

static int
load_kubeconfig(
    struct kube_creds *kc, const char *path, char *err, size_t errlen)
{
	struct kc_parse kp = {
		.kp_path = path, .kp_err = err, .kp_errlen = errlen
	};
	struct y2j_error yerr;
	struct y2j_doc *doc;
	char tmp[PATH_MAX];
	size_t len;
	char *text;
	int rv;

	if ((text = read_file(path, KUBECONFIG_MAX, &len)) == NULL) {
		if (errno == EFBIG)
			snprintf(err, errlen,
			    "kubeconfig %s: larger than %d bytes", path,
			    KUBECONFIG_MAX);
		else
			snprintf(err, errlen, "kubeconfig %s: %s", path,
			    strerror(errno));
		return -1;
	}
	strlcpy_rp(tmp, path, sizeof(tmp));
	strlcpy_rp(kp.kp_dir, dirname(tmp), sizeof(kp.kp_dir));
	doc = y2j_parse(text, len, &yerr);
	explicit_bzero(text, len);
	free(text);
	if (doc == NULL) {
		snprintf(err, errlen, "kubeconfig %s:%d:%d: %s", path,
		    yerr.ye_mark.ym_line, yerr.ye_mark.ym_col, yerr.ye_msg);
		return -1;
	}
	rv = parse_kubeconfig(kc, &kp, y2j_doc_root(doc));
	y2j_doc_free(doc);
	kc->kc_source = xasprintf("kubeconfig %s", path);
	kc->kc_kubeconfig = xstrdup(path);
	return rv;
}

static int
load_in_cluster(
    struct kube_creds *kc, const char *sa_dir, char *err, size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *ns, *path;

	if (host == NULL || host[0] == '\0' || port == NULL ||
	    port[0] == '\0') {
		snprintf(err, errlen,
		    "no Kubernetes credentials: not running in a cluster "
		    "(KUBERNETES_SERVICE_HOST is unset) and neither "
		    "--kubeconfig nor KUBECONFIG is set");
		return -1;
	}
	kc->kc_server = strchr(host, ':') != NULL
	    ? xasprintf("https://[%s]:%s", host, port)
	    : xasprintf("https://%s:%s", host, port);
	kc->kc_token_file = xasprintf("%s/token", sa_dir);
	kc->kc_ca_file = xasprintf("%s/ca.crt", sa_dir);
	path = xasprintf("%s/namespace", sa_dir);
	ns = read_file(path, 256, NULL);
	free(path);
	if (ns != NULL) {
		rstrip(ns);
		if (ns[0] != '\0')
			kc->kc_namespace = ns;
		else
			free(ns);
	}
	kc->kc_source = xstrdup("in-cluster service account");
	return 0;
}

int
kube_creds_load(
    const struct flags *f, struct kube_creds *kc, char *err, size_t errlen)
{
	return kube_creds_load_sa(f, KUBE_SA_DIR, kc, err, errlen);
}

int
kube_creds_load_sa(const struct flags *f, const char *sa_dir,
    struct kube_creds *kc, char *err, size_t errlen)
{
	const char *path = f->f_kubeconfig;
	char first[PATH_MAX], why[PATH_MAX + 128];
	const char *env;
	size_t n;
	char *t;

	memset(kc, 0, sizeof(*kc));
	if (path == NULL && (env = getenv("KUBECONFIG")) != NULL) {
		/* kubectl merges a list; we take its first file. */
		env += strspn(env, ":");
		if ((n = strcspn(env, ":")) >= sizeof(first)) {
			snprintf(err, errlen,
			    "KUBECONFIG: its first path is longer than a path "
			    "can be");
			return -1;
		}
		memcpy(first, env, n);
		first[n] = '\0';
		if (n > 0)
			path = first;
	}
	if ((path != NULL ? load_kubeconfig(kc, path, err, errlen)
	                  : load_in_cluster(kc, sa_dir, err, errlen)) == -1)
		return -1;
	if (f->f_namespace != NULL) {
		free(kc->kc_namespace);
		kc->kc_namespace = xstrdup(f->f_namespace);
	} else if (kc->kc_namespace == NULL)
		kc->kc_namespace = xstrdup("default");
	if (kc->kc_token_file == NULL)
		return 0;
	kc->kc_token_read_ms = now_ms();
	if ((t = token_read(kc, why, sizeof(why))) != NULL)
		token_set(kc, t);
	else if (kc->kc_token == NULL) {
		snprintf(err, errlen, "%s: %s", kc->kc_source, why);
		return -1;
	} else
		log_warnx("%s: %s; using the kubeconfig's token",
		    kc->kc_source, why);
	return 0;
}

int
kube_creds_refresh(struct kube_creds *kc, bool force)
{
	uint64_t now = now_ms();
	char why[PATH_MAX + 128];
	char *t;

	if (kc->kc_token_file == NULL)
		return 0;
	if (!force && now - kc->kc_token_read_ms < KUBE_TOKEN_REREAD_MS)
		return 0;
	kc->kc_token_read_ms = now;
	if ((t = token_read(kc, why, sizeof(why))) == NULL) {
		log_warnx("Kubernetes token not reloaded: %s", why);
		return -1;
	}
	if (kc->kc_token != NULL && strcmp(kc->kc_token, t) == 0) {
		token_wipe(t);
		return 0;
	}
	if (kc->kc_token != NULL)
		log_info(
		    "Kubernetes token reloaded from %s", kc->kc_token_file);
	token_set(kc, t);
	return 0;
}

static void
blob(CURL *h, CURLoption opt, const struct buf *pem)
{
	struct curl_blob b = {
		.data = pem->b_data, .len = pem->b_len, .flags = CURL_BLOB_COPY
	};

	curl_easy_setopt(h, opt, &b);
}

void
kube_creds_apply(const struct kube_creds *kc, CURL *h)
{
	if (kc->kc_insecure) {
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (kc->kc_ca_pem.b_len > 0)
		blob(h, CURLOPT_CAINFO_BLOB, &kc->kc_ca_pem);
	else if (kc->kc_ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, kc->kc_ca_file);
	if (kc->kc_cert_pem.b_len > 0)
		blob(h, CURLOPT_SSLCERT_BLOB, &kc->kc_cert_pem);
	else if (kc->kc_cert_file != NULL)
		curl_easy_setopt(h, CURLOPT_SSLCERT, kc->kc_cert_file);
	if (kc->kc_key_pem.b_len > 0)
		blob(h, CURLOPT_SSLKEY_BLOB, &kc->kc_key_pem);
	else if (kc->kc_key_file != NULL)
		curl_easy_setopt(h, CURLOPT_SSLKEY, kc->kc_key_file);
}

static void
wipe(struct buf *b)
{
	if (b->b_data != NULL)
		explicit_bzero(b->b_data, b->b_cap);
	buf_free(b);
}

void
kube_creds_free(struct kube_creds *kc)
{
	log_secret_remove(kc->kc_token);
	token_wipe(kc->kc_token);
	free(kc->kc_server);
	free(kc->kc_namespace);
	free(kc->kc_source);
	free(kc->kc_kubeconfig);
	free(kc->kc_token_file);
	free(kc->kc_ca_file);
	free(kc->kc_cert_file);
	free(kc->kc_key_file);
	wipe(&kc->kc_ca_pem);
	wipe(&kc->kc_key_pem);
	wipe(&kc->kc_cert_pem);
	memset(kc, 0, sizeof(*kc));
}
