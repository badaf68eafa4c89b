/*
 * kubecreds.c: every way an operator hands the actuator Kubernetes
 * credentials, and every mistake they make with them.
 *
 * Loading is table-driven: each row writes its files (kubeconfig, token,
 * certificates, a service-account directory) into a fresh temporary
 * directory, sets --kubeconfig / $KUBECONFIG / KUBERNETES_SERVICE_HOST, and
 * states everything kube_creds_load must give, or its whole error message.
 * Token rotation is driven through kube_creds_refresh.  kube_creds_apply is
 * checked by what a TLS server sees: the test makes a CA, a server and a
 * client certificate, serves TLS on a Unix socket in the temporary
 * directory, and has curl connect to it with the handle's settings alone
 * (no network).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base64.h"
#include "buf.h"
#include "flags.h"
#include "kubecreds.h"
#include "log.h"
#include "memscan.h"
#include "util.h"

static char dir[64]; /* this run's temporary directory */
static char sa_dir[96];
static int log_rd = -1;
static struct buf logged;

/* Placeholders in file texts and expectations: %D is the temporary
 * directory; %{ca}, %{other-ca}, %{cert}, %{key} the base64 of the PEM the
 * TLS tests made. */
struct subst {
	const char *s_name;
	char *s_value;
};
static struct subst substs[] = {
	{ "%D", dir },
	{ "%{ca}", NULL },
	{ "%{other-ca}", NULL },
	{ "%{cert}", NULL },
	{ "%{key}", NULL },
};

/* Returns tmpl with the placeholders replaced; the caller frees. */
static char *
expand(const char *tmpl)
{
	struct buf b = { 0 };
	const char *p = tmpl;
	size_t i, n;

	while (*p != '\0') {
		for (i = 0; i < nitems(substs); i++) {
			n = strlen(substs[i].s_name);
			if (strncmp(p, substs[i].s_name, n) == 0)
				break;
		}
		if (i < nitems(substs)) {
			assert_non_null(substs[i].s_value);
			buf_puts(&b, substs[i].s_value);
			p += n;
		} else
			buf_append(&b, p++, 1);
	}
	return buf_take(&b);
}

/* The parent directories of dir/name. */
static void
make_parents(const char *path)
{
	char tmp[PATH_MAX], *slash;

	strlcpy_rp(tmp, path, sizeof(tmp));
	for (slash = tmp + strlen(dir) + 1;
	     (slash = strchr(slash, '/')) != NULL; slash++) {
		*slash = '\0';
		assert_true(mkdir(tmp, 0700) == 0 || errno == EEXIST);
		*slash = '/';
	}
}

static void
put_bytes(const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", dir, name);
	int fd;

	make_parents(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(path);
}

/* Writes dir/name with text expanded; NULL text makes a directory. */
static void
put(const char *name, const char *text)
{
	char *path, *t;

	if (text == NULL) {
		path = xasprintf("%s/%s", dir, name);
		make_parents(path);
		assert_int_equal(mkdir(path, 0700), 0);
		free(path);
		return;
	}
	t = expand(text);
	put_bytes(name, t, strlen(t));
	free(t);
}

/* d/name -> target (a relative link, as the kubelet makes them). */
static int
put_link(const char *d, const char *target, const char *name)
{
	char *path = xasprintf("%s/%s", d, name);
	int rv = symlink(target, path);

	free(path);
	return rv;
}

static int
rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	if (ftw->level == 0)
		return 0;
	return remove(path);
}

/* Everything a test wrote and set goes; the directory stays. */
static void
reset(void)
{
	assert_int_equal(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	log_secrets_clear();
	buf_reset(&logged);
}

/* What the code logged since the last reset. */
static const char *
log_text(void)
{
	char chunk[4096];
	ssize_t n;

	while ((n = read(log_rd, chunk, sizeof(chunk))) > 0)
		buf_append(&logged, chunk, (size_t)n);
	assert_true(n == -1 && errno == EAGAIN);
	return buf_str(&logged);
}

static bool
log_has(const char *tmpl)
{
	char *want = expand(tmpl);
	bool found = strstr(log_text(), want) != NULL;

	free(want);
	return found;
}

static void
assert_logged(const char *tmpl)
{
	if (!log_has(tmpl))
		fail_msg("the log lacks \"%s\":\n%s", tmpl, log_text());
}

/* A table row that fails says so and the table goes on: one run lists
 * every failing row. */
static int row_failures;

static void row_fail(const char *what, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
row_fail(const char *what, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	print_error("%s: %s\n", what, msg);
	row_failures++;
}

static void
check_str(
    const char *what, const char *field, const char *got, const char *tmpl)
{
	char *want;

	if (tmpl == NULL) {
		if (got != NULL)
			row_fail(
			    what, "%s: want NULL, got \"%s\"", field, got);
		return;
	}
	want = expand(tmpl);
	if (got == NULL)
		row_fail(what, "%s: want \"%s\", got NULL", field, want);
	else if (strcmp(got, want) != 0)
		row_fail(
		    what, "%s: want \"%s\", got \"%s\"", field, want, got);
	free(want);
}

static void
check_pem(const char *what, const char *field, const struct buf *got,
    const char *want)
{
	if (want == NULL && got->b_len != 0)
		row_fail(
		    what, "%s: want none, got %zu bytes", field, got->b_len);
	else if (want != NULL &&
	    (got->b_len != strlen(want) ||
	        memcmp(got->b_data, want, got->b_len)))
		row_fail(what, "%s: want \"%s\", got \"%s\"", field, want,
		    buf_str(got));
}

/*
 * Loading: the table.
 */

#define KC(ctx, contexts, clusters, users)                                    \
	"apiVersion: v1\nkind: Config\ncurrent-context: " ctx "\n"            \
	"contexts:\n" contexts "clusters:\n" clusters "users:\n" users
#define CTX(n, body)     "- name: " n "\n  context: " body "\n"
#define CLUSTER(n, body) "- name: " n "\n  cluster: " body "\n"
#define USER(n, body)    "- name: " n "\n  user: " body "\n"
#define SERVER           "server: \"https://k.example:6443\""
/* The everyday shape: context dev = cluster k + user u. */
#define KC1(cluster, user)                                                    \
	KC("dev", CTX("dev", "{cluster: k, user: u}"), CLUSTER("k", cluster), \
	    USER("u", user))
#define KC_TOKEN KC1("{" SERVER "}", "{token: inline-token-0001}")

/* Stand-ins for certificate material: loading only decodes it. */
#define CA_PEM "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"
#define CERT_PEM                                                              \
	"-----BEGIN CERTIFICATE-----\nclient\n-----END CERTIFICATE-----\n"
#define KEY_PEM "-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n"
#define CA_B64                                                                \
	"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"                                \
	"CmNhCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K"
#define CERT_B64                                                              \
	"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t"                                \
	"CmNsaWVudAotLS0tLUVORCBDRVJUSUZJQ0FURS0tLS0tCg=="
#define KEY_B64                                                               \
	"LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t"                                \
	"CmtleQotLS0tLUVORCBQUklWQVRFIEtFWS0tLS0tCg=="

#define KCPATH "%D/config"
#define KCERR  "kubeconfig %D/config: "
#define KCSRC  "kubeconfig %D/config"
#define SASRC  "in-cluster service account"

/* What a row loading the everyday kubeconfig at KCPATH gives. */
#define EVERYDAY                                                              \
	.kubeconfig = KCPATH, .server = "https://k.example:6443",             \
	.ns = "default", .source = KCSRC

/* What a row in a cluster at 10.96.0.1:443 with the token sa-token-0001
 * in its service-account directory gives. */
#define IN_CLUSTER                                                            \
	.host = "10.96.0.1", .port = "443",                                   \
	.server = "https://10.96.0.1:443", .source = SASRC,                   \
	.token = "sa-token-0001", .token_file = "%D/sa/token",                \
	.ca_file = "%D/sa/ca.crt"

struct file {
	const char *f_name; /* under the temporary directory */
	const char *f_text; /* expanded; NULL: a directory */
};

struct load_case {
	const char *what;
	struct file files[6];
	const char *kubeconfig;  /* --kubeconfig */
	const char *env;         /* $KUBECONFIG */
	const char *host, *port; /* KUBERNETES_SERVICE_HOST, _PORT */
	const char *ns_flag;     /* --namespace */
	/* What kube_creds_load gives: the whole error message, or (err NULL)
	 * every field; NULL means the field must be NULL (or empty). */
	const char *err;
	const char *server, *ns, *source, *token, *token_file;
	const char *ca_file, *ca_pem, *cert_file, *cert_pem, *key_file,
	    *key_pem;
	bool insecure;
	const char *log; /* a warning the log must hold; NULL: no warning */
};

static const struct load_case load_cases[] = {
	/* The forms that work. */
	{
	    .what = "inline token; the namespace defaults",
	    .files = { { "config", KC_TOKEN } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	},
	{
	    .what = "current-context picks among contexts",
	    .files = { { "config",
	        KC("prod",
	            CTX("dev", "{cluster: k, user: u, namespace: dev}")
	                CTX("prod",
	                    "{cluster: p, user: admin, namespace: "
	                    "runners}"),
	            CLUSTER("k", "{" SERVER "}")
	                CLUSTER("p", "{server: \"https://prod.example\"}"),
	            USER("u", "{token: dev-token-0001}")
	                USER("admin", "{token: prod-token-0002}")) } },
	    .kubeconfig = KCPATH,
	    .server = "https://prod.example",
	    .ns = "runners",
	    .source = KCSRC,
	    .token = "prod-token-0002",
	},
	{
	    .what = "--namespace wins over the context's namespace",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{cluster: k, user: u, namespace: dev}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .ns_flag = "ci",
	    .server = "https://k.example:6443",
	    .ns = "ci",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},
	{
	    .what = "JSON is a kubeconfig too",
	    .files = { { "config",
	        "{\"apiVersion\":\"v1\",\"kind\":\"Config\","
	        "\"current-context\":\"dev\",\"contexts\":[{\"name\":\"dev\","
	        "\"context\":{\"cluster\":\"k\",\"user\":\"u\","
	        "\"namespace\":\"ci\"}}],\"clusters\":[{\"name\":\"k\","
	        "\"cluster\":{\"server\":\"https://k.example:6443\"}}],"
	        "\"users\":[{\"name\":\"u\",\"user\":{\"token\":"
	        "\"inline-token-0001\"}}]}" } },
	    .kubeconfig = KCPATH,
	    .server = "https://k.example:6443",
	    .ns = "ci",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},
	{
	    .what = "trailing slashes leave the server address",
	    .files = { { "config",
	        KC1("{server: \"https://k.example:6443//\"}",
	            "{token: inline-token-0001}") } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	},
	{
	    .what = "a server behind a path prefix (Rancher) keeps it",
	    .files = { { "config",
	        KC1("{server: \"https://rancher.example/k8s/clusters/c-1/\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .server = "https://rancher.example/k8s/clusters/c-1",
	    .ns = "default",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},
	{
	    .what = "certificate-authority: a relative path is the "
	            "kubeconfig's",
	    .files = { { "config",
	                   KC1("{" SERVER
	                       ", certificate-authority: pki/ca.crt}",
	                       "{token: inline-token-0001}") },
	        { "pki/ca.crt", CA_PEM } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	    .ca_file = "%D/pki/ca.crt",
	},
	{
	    .what = "certificate-authority: an absolute path stays",
	    .files = { { "kube/config",
	                   KC1("{" SERVER
	                       ", certificate-authority: %D/pki/ca.crt}",
	                       "{token: inline-token-0001}") },
	        { "pki/ca.crt", CA_PEM } },
	    .kubeconfig = "%D/kube/config",
	    .server = "https://k.example:6443",
	    .ns = "default",
	    .source = "kubeconfig %D/kube/config",
	    .token = "inline-token-0001",
	    .ca_file = "%D/pki/ca.crt",
	},
	{
	    .what = "certificate-authority-data",
	    .files = { { "config",
	        KC1("{" SERVER ", certificate-authority-data: " CA_B64 "}",
	            "{token: inline-token-0001}") } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	    .ca_pem = CA_PEM,
	},
	{
	    .what = "certificate-authority-data folded over lines",
	    .files = { { "config",
	        "apiVersion: v1\n"
	        "current-context: dev\n"
	        "contexts:\n"
	        "- name: dev\n"
	        "  context:\n"
	        "    cluster: k\n"
	        "    user: u\n"
	        "clusters:\n"
	        "- name: k\n"
	        "  cluster:\n"
	        "    " SERVER "\n"
	        "    certificate-authority-data: |\n"
	        "      LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n"
	        "      CmNhCi0tLS0tRU5EIENFUlRJRklDQVRFLS0tLS0K\n"
	        "users:\n"
	        "- name: u\n"
	        "  user:\n"
	        "    token: inline-token-0001\n" } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	    .ca_pem = CA_PEM,
	},
	{
	    .what = "certificate-authority-data wins over the file",
	    .files = { { "config",
	        KC1("{" SERVER ", certificate-authority-data: " CA_B64
	            ", certificate-authority: /nonexistent/ca.crt}",
	            "{token: inline-token-0001}") } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	    .ca_pem = CA_PEM,
	},
	{
	    .what = "insecure-skip-tls-verify",
	    .files = { { "config",
	        KC1("{" SERVER ", insecure-skip-tls-verify: true}",
	            "{token: inline-token-0001}") } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	    .insecure = true,
	},
	{
	    .what = "insecure-skip-tls-verify: false",
	    .files = { { "config",
	        KC1("{" SERVER ", insecure-skip-tls-verify: false}",
	            "{token: inline-token-0001}") } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	},
	{
	    .what = "tokenFile relative to the kubeconfig; newline stripped",
	    .files = { { "config",
	                   KC1("{" SERVER "}", "{tokenFile: secrets/token}") },
	        { "secrets/token", "file-token-0001\n" } },
	    EVERYDAY,
	    .token = "file-token-0001",
	    .token_file = "%D/secrets/token",
	},
	{
	    .what = "an empty token leaves tokenFile in charge",
	    .files = { { "config",
	                   KC1("{" SERVER "}",
	                       "{token: \"\", tokenFile: %D/token}") },
	        { "token", "  file-token-0001 \r\n\n" } },
	    EVERYDAY,
	    .token = "file-token-0001",
	    .token_file = "%D/token",
	},
	{
	    /* As kubectl: the file is read again as it rotates, and what
	     * it last held wins over the inline token. */
	    .what = "token and tokenFile: the file wins",
	    .files = { { "config",
	                   KC1("{" SERVER "}",
	                       "{token: inline-token-0001, tokenFile: "
	                       "token}") },
	        { "token", "file-token-0002\n" } },
	    EVERYDAY,
	    .token = "file-token-0002",
	    .token_file = "%D/token",
	},
	{
	    .what = "token and an unreadable tokenFile: the inline token",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{token: inline-token-0001, tokenFile: token}") } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	    .token_file = "%D/token",
	    .log = "cannot read the token file %D/token: No such file or "
	           "directory; using the kubeconfig's token",
	},
	{
	    .what = "client certificate and key files",
	    .files = { { "config",
	                   KC1("{" SERVER ", certificate-authority: ca.crt}",
	                       "{client-certificate: pki/client.crt, "
	                       "client-key: %D/pki/client.key}") },
	        { "ca.crt", CA_PEM }, { "pki/client.crt", CERT_PEM },
	        { "pki/client.key", KEY_PEM } },
	    EVERYDAY,
	    .ca_file = "%D/ca.crt",
	    .cert_file = "%D/pki/client.crt",
	    .key_file = "%D/pki/client.key",
	},
	{
	    .what = "client certificate and key data",
	    .files = { { "config",
	        KC1("{" SERVER ", certificate-authority-data: " CA_B64 "}",
	            "{client-certificate-data: " CERT_B64
	            ", client-key-data: " KEY_B64 "}") } },
	    EVERYDAY,
	    .ca_pem = CA_PEM,
	    .cert_pem = CERT_PEM,
	    .key_pem = KEY_PEM,
	},
	{
	    .what = "certificate data with a key file, and a token",
	    .files = { { "config",
	                   KC1("{" SERVER "}",
	                       "{client-certificate-data: " CERT_B64
	                       ", client-key: client.key, "
	                       "token: inline-token-0001}") },
	        { "client.key", KEY_PEM } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	    .cert_pem = CERT_PEM,
	    .key_file = "%D/client.key",
	},
	{
	    .what = "empty strings are unset",
	    .files = { { "config",
	        KC1("{" SERVER ", certificate-authority-data: \"\", "
	            "certificate-authority: \"\"}",
	            "{token: inline-token-0001, tokenFile: \"\", "
	            "client-certificate: \"\", client-key-data: \"\"}") } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	},
	{
	    .what = "entries without a name are passed over",
	    .files = { { "config",
	        KC("dev",
	            "- context: {cluster: x, user: x}\n"
	            "- dev\n" CTX("dev", "{cluster: k, user: u}"),
	            "- {cluster: {server: \"https://x.example\"}}\n" CLUSTER(
	                "k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    EVERYDAY,
	    .token = "inline-token-0001",
	},
	{
	    .what = "a context without a user is anonymous",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{cluster: k}"),
	            CLUSTER("k", "{" SERVER "}"), "") } },
	    EVERYDAY,
	},
	{
	    .what = "$KUBECONFIG",
	    .files = { { "config", KC_TOKEN } },
	    .env = KCPATH,
	    .server = "https://k.example:6443",
	    .ns = "default",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},
	{
	    .what = "$KUBECONFIG lists files: the first is read",
	    .files = { { "config", KC_TOKEN } },
	    .env = KCPATH ":%D/nonexistent",
	    .server = "https://k.example:6443",
	    .ns = "default",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},
	{
	    .what = "$KUBECONFIG: empty entries are skipped",
	    .files = { { "config", KC_TOKEN } },
	    .env = "::" KCPATH ":",
	    .server = "https://k.example:6443",
	    .ns = "default",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},
	{
	    .what = "--kubeconfig wins over $KUBECONFIG and the cluster",
	    .files = { { "config", KC_TOKEN } },
	    .kubeconfig = KCPATH,
	    .env = "%D/nonexistent",
	    .host = "10.96.0.1",
	    .port = "443",
	    .server = "https://k.example:6443",
	    .ns = "default",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},
	{
	    .what = "$KUBECONFIG wins over the cluster",
	    .files = { { "config", KC_TOKEN } },
	    .env = KCPATH,
	    .host = "10.96.0.1",
	    .port = "443",
	    .server = "https://k.example:6443",
	    .ns = "default",
	    .source = KCSRC,
	    .token = "inline-token-0001",
	},

	/* In a cluster. */
	{
	    .what = "in-cluster: token, CA and namespace files",
	    .files = { { "sa/token", "sa-token-0001\n" },
	        { "sa/ca.crt", CA_PEM }, { "sa/namespace", "runners\n" } },
	    IN_CLUSTER,
	    .ns = "runners",
	},
	{
	    .what = "in-cluster: an IPv6 service address",
	    .files = { { "sa/token", "sa-token-0001" },
	        { "sa/namespace", "runners" } },
	    .host = "fd00:10:96::1",
	    .port = "6443",
	    .server = "https://[fd00:10:96::1]:6443",
	    .ns = "runners",
	    .source = SASRC,
	    .token = "sa-token-0001",
	    .token_file = "%D/sa/token",
	    .ca_file = "%D/sa/ca.crt",
	},
	{
	    .what = "in-cluster: --namespace wins",
	    .files = { { "sa/token", "sa-token-0001" },
	        { "sa/namespace", "runners" } },
	    IN_CLUSTER,
	    .ns_flag = "ci",
	    .ns = "ci",
	},
	{
	    .what = "in-cluster: no namespace file",
	    .files = { { "sa/token", "sa-token-0001" } },
	    IN_CLUSTER,
	    .ns = "default",
	},
	{
	    .what = "in-cluster: an empty namespace file",
	    .files = { { "sa/token", "sa-token-0001" },
	        { "sa/namespace", " \n" } },
	    IN_CLUSTER,
	    .ns = "default",
	},
	{
	    .what = "an empty $KUBECONFIG is unset",
	    .files = { { "sa/token", "sa-token-0001" } },
	    .env = "",
	    IN_CLUSTER,
	    .ns = "default",
	},

	/* Where it finds nothing. */
	{
	    .what = "nothing at all",
	    .err = "no Kubernetes credentials: not running in a cluster "
	           "(KUBERNETES_SERVICE_HOST is unset) and neither "
	           "--kubeconfig nor KUBECONFIG is set",
	},
	{
	    .what = "in-cluster without a port",
	    .host = "10.96.0.1",
	    .port = "",
	    .err = "no Kubernetes credentials: not running in a cluster "
	           "(KUBERNETES_SERVICE_HOST is unset) and neither "
	           "--kubeconfig nor KUBECONFIG is set",
	},
	{
	    .what = "in-cluster without the token mounted",
	    .files = { { "sa/namespace", "runners" } },
	    .host = "10.96.0.1",
	    .port = "443",
	    .err = SASRC ": cannot read the token file %D/sa/token: No such "
	                 "file or directory",
	},
	{
	    .what = "in-cluster with an empty token",
	    .files = { { "sa/token", "\n" } },
	    .host = "10.96.0.1",
	    .port = "443",
	    .err = SASRC ": the token file %D/sa/token is empty",
	},

	/* The kubeconfig file itself. */
	{
	    .what = "no such kubeconfig",
	    .kubeconfig = KCPATH,
	    .err = KCERR "No such file or directory",
	},
	{
	    .what = "$KUBECONFIG names no file",
	    .env = "%D/nonexistent",
	    .err = "kubeconfig %D/nonexistent: No such file or directory",
	},
	{
	    .what = "the kubeconfig is a directory",
	    .files = { { "config", NULL } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "Is a directory",
	},
	{
	    .what = "an empty kubeconfig",
	    .files = { { "config", "" } },
	    .kubeconfig = KCPATH,
	    .err = "kubeconfig %D/config:1:1: the file holds no YAML "
	           "document (it is empty)",
	},
	{
	    .what = "a kubeconfig that is a list",
	    .files = { { "config", "- name: dev\n- name: prod\n" } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "not a kubeconfig (expected a mapping)",
	},
	{
	    .what = "a kubeconfig that is a word",
	    .files = { { "config", "kubeconfig\n" } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "not a kubeconfig (expected a mapping)",
	},
	{
	    .what = "YAML that does not parse: line and column",
	    .files = { { "config",
	        "apiVersion: v1\ncurrent-context: dev\ncontexts: [\n" } },
	    .kubeconfig = KCPATH,
	    .err = "kubeconfig %D/config:4:1: did not find expected node "
	           "content (while parsing a flow node)",
	},

	/* Contexts, clusters and users that are not there. */
	{
	    .what = "no current-context",
	    .files = { { "config",
	        "apiVersion: v1\ncontexts: []\nclusters: []\nusers: []\n" } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "no current-context is set",
	},
	{
	    .what = "an empty current-context",
	    .files = { { "config", KC("\"\"", "", "", "") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "no current-context is set",
	},
	{
	    .what = "current-context names no context",
	    .files = { { "config",
	        KC("prod", CTX("dev", "{cluster: k, user: u}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "current-context \"prod\" is not in contexts",
	},
	{
	    .what = "a context without a cluster",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{user: u}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "context \"dev\" names no cluster",
	},
	{
	    .what = "a context naming a cluster that is not there",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{cluster: kk, user: u}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "context \"dev\": cluster \"kk\" not found",
	},
	{
	    .what = "a context naming a user that is not there",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{cluster: k, user: admin}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "context \"dev\": user \"admin\" not found",
	},
	{
	    /* Found by fuzzing: the name's line breaks were the message's. */
	    .what = "a name with line breaks stays on the message's one line",
	    .files = { { "config",
	        KC("dev",
	            CTX("dev", "{cluster: k, user: \"ad\\nmin\\t\\x7f\"}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "context \"dev\": user \"ad\\x0amin\\x09\\x7f\" not "
	                 "found",
	},

	{
	    .what = "a context named twice",
	    .files = { { "config",
	        KC("dev",
	            CTX("dev", "{cluster: k, user: u}")
	                CTX("dev", "{cluster: p, user: u}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "contexts: two entries are named \"dev\"",
	},
	{
	    .what = "a cluster named twice",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{cluster: k, user: u}"),
	            CLUSTER("k", "{" SERVER "}") CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "clusters: two entries are named \"k\"",
	},
	{
	    .what = "a user named twice",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{cluster: k, user: u}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")
	                USER("u", "{token: inline-token-0002}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "users: two entries are named \"u\"",
	},
	{
	    .what = "a context with an empty cluster",
	    .files = { { "config",
	        KC("dev", CTX("dev", "{cluster: \"\", user: u}"),
	            CLUSTER("k", "{" SERVER "}"),
	            USER("u", "{token: inline-token-0001}")) } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "context \"dev\" names no cluster",
	},

	/* Server addresses. */
	{
	    .what = "a cluster without a server",
	    .files = { { "config",
	        KC1("{certificate-authority-data: " CA_B64 "}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\" has no server address",
	},
	{
	    .what = "an empty server",
	    .files = { { "config",
	        KC1("{server: \"\"}", "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\" has no server address",
	},
	{
	    .what = "http:// is refused",
	    .files = { { "config",
	        KC1("{server: \"http://k.example:8080\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\": server \"http://k.example:8080\" is "
	                 "not an https:// address; TLS is required",
	},
	{
	    .what = "a server without a scheme",
	    .files = { { "config",
	        KC1("{server: \"k.example:6443\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\": server \"k.example:6443\" is not an "
	                 "https:// address; TLS is required",
	},
	{
	    /* What `server: https://$HOST` renders to when HOST is unset. */
	    .what = "a server without a host",
	    .files = { { "config",
	        KC1("{server: \"https:///\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\": server \"https:///\" has no host",
	},
	{
	    /* Found by fuzzing: the request path went into the query. */
	    .what = "a server with a query",
	    .files = { { "config",
	        KC1("{server: \"https://k.example:6443?x=1\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err =
	        KCERR "cluster \"k\": server \"https://k.example:6443?x=1\" "
	              "is not a valid URL (a blank, '?' or '#')",
	},
	{
	    .what = "a server with a fragment",
	    .files = { { "config",
	        KC1("{server: \"https://k.example#x\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\": server \"https://k.example#x\" is "
	                 "not a valid URL (a blank, '?' or '#')",
	},
	{
	    .what = "a server with a blank",
	    .files = { { "config",
	        KC1("{server: \"https://k.example /x\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\": server \"https://k.example /x\" is "
	                 "not a valid URL (a blank, '?' or '#')",
	},

	/* Certificates. */
	{
	    .what = "a PEM pasted where base64 belongs",
	    .files = { { "config",
	        KC1("{" SERVER ", certificate-authority-data: \"" CA_PEM "\"}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\": certificate-authority-data is not "
	                 "valid base64",
	},
	{
	    .what = "client-certificate-data cut short",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{client-certificate-data: LS0tLS1CRUdJTi, "
	            "client-key-data: " KEY_B64 "}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\": client-certificate-data is not valid "
	                 "base64",
	},
	{
	    .what = "client-key-data that is not base64",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{client-certificate-data: " CERT_B64
	            ", client-key-data: \"not*base64\"}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\": client-key-data is not valid base64",
	},
	{
	    .what = "a certificate-authority file that is not there",
	    .files = { { "config",
	        KC1("{" SERVER ", certificate-authority: pki/ca.crt}",
	            "{token: inline-token-0001}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cluster \"k\": cannot read certificate-authority "
	                 "%D/pki/ca.crt: No such file or directory",
	},
	{
	    .what = "a client-key that is a directory",
	    .files = { { "config",
	                   KC1("{" SERVER "}",
	                       "{client-certificate-data: " CERT_B64
	                       ", client-key: pki}") },
	        { "pki", NULL } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\": cannot read client-key %D/pki: Is a "
	                 "directory",
	},
	{
	    .what = "a client certificate without a key",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{client-certificate-data: " CERT_B64 "}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\" has a client certificate without a key, "
	                 "or a key without a certificate",
	},
	{
	    .what = "a client key without a certificate",
	    .files = { { "config", KC1("{" SERVER "}", "{client-key: key}") },
	        { "key", KEY_PEM } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\" has a client certificate without a key, "
	                 "or a key without a certificate",
	},

	/* Ways of authenticating we do not do. */
	{
	    .what = "an exec plugin",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{exec: {apiVersion: "
	            "client.authentication.k8s.io/v1beta1, command: aws, "
	            "args: [eks, get-token]}}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\" authenticates with an exec plugin or "
	                 "auth provider, which runner-provisioner does not "
	                 "run; use a token, tokenFile or client certificate",
	},
	{
	    .what = "an auth provider",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{auth-provider: {name: oidc, config: {client-id: "
	            "x}}}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\" authenticates with an exec plugin or "
	                 "auth provider, which runner-provisioner does not "
	                 "run; use a token, tokenFile or client certificate",
	},
	{
	    .what = "basic authentication",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{username: admin, password: hunter22}") } },
	    .kubeconfig = KCPATH,
	    .err =
	        KCERR "user \"u\" uses basic authentication, which "
	              "Kubernetes no longer supports; use a token or client "
	              "certificate",
	},

	/* Tokens. */
	{
	    .what = "a tokenFile that is not there",
	    .files = { { "config",
	        KC1("{" SERVER "}", "{tokenFile: token}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cannot read the token file %D/token: No such file "
	                 "or directory",
	},
	{
	    .what = "an empty tokenFile",
	    .files = { { "config", KC1("{" SERVER "}", "{tokenFile: token}") },
	        { "token", "" } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "the token file %D/token is empty",
	},
	{
	    .what = "a tokenFile of blank lines",
	    .files = { { "config", KC1("{" SERVER "}", "{tokenFile: token}") },
	        { "token", "\n\r\n \t\n" } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "the token file %D/token is empty",
	},
	{
	    /* Two tokens pasted into one file: a header line must never
	     * carry a line break. */
	    .what = "a tokenFile holding two lines",
	    .files = { { "config", KC1("{" SERVER "}", "{tokenFile: token}") },
	        { "token", "file-token-0001\nfile-token-0002\n" } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "the token file %D/token holds more than a token "
	                 "(a space or control character inside it)",
	},
	{
	    .what = "a tokenFile that is a directory",
	    .files = { { "config", KC1("{" SERVER "}", "{tokenFile: token}") },
	        { "token", NULL } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "cannot read the token file %D/token: Is a directory",
	},
	{
	    .what = "an inline token with a line break inside",
	    .files = { { "config",
	        KC1("{" SERVER "}",
	            "{token: \"inline-token\\r\\nX-Injected: 1\"}") } },
	    .kubeconfig = KCPATH,
	    .err = KCERR "user \"u\": the token holds more than a token (a "
	                 "space or control character inside it)",
	},
};

static void
load_row(const struct load_case *c)
{
	struct flags f = { 0 };
	struct kube_creds kc;
	char err[1024] = "", *kcpath = NULL, *env = NULL, *want;
	const char *text;
	size_t i;
	int rv;

	reset();
	for (i = 0; i < nitems(c->files) && c->files[i].f_name != NULL; i++)
		put(c->files[i].f_name, c->files[i].f_text);
	if (c->kubeconfig != NULL)
		f.f_kubeconfig = kcpath = expand(c->kubeconfig);
	if (c->env != NULL) {
		env = expand(c->env);
		setenv("KUBECONFIG", env, 1);
	}
	if (c->host != NULL)
		setenv("KUBERNETES_SERVICE_HOST", c->host, 1);
	if (c->port != NULL)
		setenv("KUBERNETES_SERVICE_PORT", c->port, 1);
	f.f_namespace = c->ns_flag;
	/* The daemon's own entry point wherever the row never reaches the
	 * service-account directory. */
	rv = c->host != NULL
	    ? kube_creds_load_sa(&f, sa_dir, &kc, err, sizeof(err))
	    : kube_creds_load(&f, &kc, err, sizeof(err));
	if (c->err != NULL) {
		want = expand(c->err);
		if (rv != -1 || strcmp(err, want) != 0)
			row_fail(c->what, "want -1 \"%s\", got %d \"%s\"",
			    want, rv, err);
		free(want);
	} else if (rv != 0) {
		row_fail(c->what, "want 0, got %d \"%s\"", rv, err);
	} else {
		check_str(c->what, "server", kc.kc_server, c->server);
		check_str(c->what, "namespace", kc.kc_namespace, c->ns);
		check_str(c->what, "source", kc.kc_source, c->source);
		check_str(c->what, "token", kc.kc_token, c->token);
		check_str(
		    c->what, "token file", kc.kc_token_file, c->token_file);
		check_str(c->what, "CA file", kc.kc_ca_file, c->ca_file);
		check_str(c->what, "cert file", kc.kc_cert_file, c->cert_file);
		check_str(c->what, "key file", kc.kc_key_file, c->key_file);
		check_pem(c->what, "CA data", &kc.kc_ca_pem, c->ca_pem);
		check_pem(c->what, "cert data", &kc.kc_cert_pem, c->cert_pem);
		check_pem(c->what, "key data", &kc.kc_key_pem, c->key_pem);
		if (kc.kc_insecure != c->insecure)
			row_fail(c->what, "insecure: want %d", c->insecure);
	}
	text = log_text();
	if (c->log != NULL && !log_has(c->log))
		row_fail(c->what, "the log lacks the warning:\n%s", text);
	else if (c->log == NULL && strstr(text, "\"level\":\"warn\"") != NULL)
		row_fail(c->what, "unexpected warning:\n%s", text);
	/* Whatever was loaded, the token is registered as a secret. */
	if (rv == 0 && kc.kc_token != NULL) {
		log_info("sending %s", kc.kc_token);
		assert_null(strstr(log_text(), kc.kc_token));
	}
	/* Loaded or not, kube_creds_free releases everything (the sanitizer
	 * build checks for leaks) and a second call is harmless. */
	kube_creds_free(&kc);
	assert_null(kc.kc_server);
	assert_null(kc.kc_token);
	assert_null(kc.kc_ca_pem.b_data);
	kube_creds_free(&kc);
	free(kcpath);
	free(env);
}

static void
test_load_table(void **state)
{
	size_t i;

	(void)state;
	row_failures = 0;
	for (i = 0; i < nitems(load_cases); i++)
		load_row(&load_cases[i]);
	assert_int_equal(row_failures, 0);
}

/* --kubeconfig kubeconfig, as typed in the directory holding it: the
 * files it names are found next to it. */
static void
test_relative_kubeconfig(void **state)
{
	struct flags f = { .f_kubeconfig = "config" };
	struct kube_creds kc;
	char err[512], cwd[PATH_MAX];

	(void)state;
	reset();
	put("config",
	    KC1("{" SERVER ", certificate-authority: ca.crt}",
	        "{tokenFile: token}"));
	put("ca.crt", CA_PEM);
	put("token", "file-token-0001\n");
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	if (kube_creds_load(&f, &kc, err, sizeof(err)) == -1) {
		assert_int_equal(chdir(cwd), 0);
		fail_msg("%s", err);
	}
	assert_int_equal(chdir(cwd), 0);
	assert_string_equal(kc.kc_source, "kubeconfig config");
	assert_string_equal(kc.kc_ca_file, "./ca.crt");
	assert_string_equal(kc.kc_token_file, "./token");
	assert_string_equal(kc.kc_token, "file-token-0001");
	kube_creds_free(&kc);
}

/* A $KUBECONFIG entry longer than a path can be is refused, never cut to
 * a path that may name another file. */
static void
test_kubeconfig_env_too_long(void **state)
{
	struct flags f = { 0 };
	struct kube_creds kc;
	char err[512];
	char *env = xmalloc(PATH_MAX + 16);

	(void)state;
	reset();
	memset(env, 'a', PATH_MAX + 8);
	env[0] = '/';
	env[PATH_MAX + 8] = '\0';
	setenv("KUBECONFIG", env, 1);
	assert_int_equal(kube_creds_load(&f, &kc, err, sizeof(err)), -1);
	assert_string_equal(
	    err, "KUBECONFIG: its first path is longer than a path can be");
	kube_creds_free(&kc);
	free(env);
}

/* Sizes at the limits: a kubeconfig of exactly KUBECONFIG_MAX bytes loads,
 * one byte more is refused; the same for a token of KUBE_TOKEN_MAX. */
static void
test_size_limits(void **state)
{
	static const char kc_text[] =
	    KC1("{" SERVER "}", "{tokenFile: token}") "#";
	struct flags f = { 0 };
	struct kube_creds kc;
	char err[512], *big, *want, *path;
	size_t n;

	(void)state;
	reset();
	f.f_kubeconfig = path = xasprintf("%s/config", dir);
	n = KUBECONFIG_MAX + 1;
	big = xmalloc(n);
	memcpy(big, kc_text, strlen(kc_text));
	memset(big + strlen(kc_text), 'x', n - strlen(kc_text));
	big[KUBECONFIG_MAX - 1] = '\n';
	big[KUBECONFIG_MAX] = '\n';

	/* The token: exactly KUBE_TOKEN_MAX bytes, no newline. */
	put_bytes("token", big + strlen(kc_text), KUBE_TOKEN_MAX);
	put_bytes("config", big, KUBECONFIG_MAX);
	if (kube_creds_load(&f, &kc, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	assert_int_equal(strlen(kc.kc_token), KUBE_TOKEN_MAX);
	kube_creds_free(&kc);

	put_bytes("config", big, KUBECONFIG_MAX + 1);
	assert_int_equal(kube_creds_load(&f, &kc, err, sizeof(err)), -1);
	want = expand(KCERR "larger than 4194304 bytes");
	assert_string_equal(err, want);
	free(want);
	kube_creds_free(&kc);

	put_bytes("config", big, KUBECONFIG_MAX);
	put_bytes("token", big + strlen(kc_text), KUBE_TOKEN_MAX + 1);
	assert_int_equal(kube_creds_load(&f, &kc, err, sizeof(err)), -1);
	want = expand(KCERR "the token file %D/token is larger than 65536 "
	                    "bytes");
	assert_string_equal(err, want);
	free(want);
	kube_creds_free(&kc);
	free(big);
	free(path);
}

/*
 * Token rotation.
 */

static void
load_ok(const char *kubeconfig, struct kube_creds *kc)
{
	struct flags f = { 0 };
	char err[512], *path = NULL;

	if (kubeconfig != NULL)
		f.f_kubeconfig = path = expand(kubeconfig);
	if (kube_creds_load_sa(&f, sa_dir, kc, err, sizeof(err)) == -1)
		fail_msg("%s", err);
	free(path);
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* Due: read again once KUBE_TOKEN_REREAD_MS has passed since the last
 * read, or when forced (after a 401); the last good token stays when the
 * file cannot be used, and a failed read counts as a read (no re-reading
 * on every request while the file is broken). */
static void
test_refresh_token_file(void **state)
{
	struct kube_creds kc;
	char *big;

	(void)state;
	if (now_ms() <= KUBE_TOKEN_REREAD_MS)
		skip();
	reset();
	put("config", KC1("{" SERVER "}", "{tokenFile: token}"));
	put("token", "token-aaaa-0001\n");
	load_ok(KCPATH, &kc);
	assert_string_equal(kc.kc_token, "token-aaaa-0001");

	put("token", "token-bbbb-0002\n");
	assert_int_equal(kube_creds_refresh(&kc, false), 0);
	assert_string_equal(kc.kc_token, "token-aaaa-0001");
	kc.kc_token_read_ms = now_ms() - (KUBE_TOKEN_REREAD_MS - 5000);
	assert_int_equal(kube_creds_refresh(&kc, false), 0);
	assert_string_equal(kc.kc_token, "token-aaaa-0001");
	kc.kc_token_read_ms = now_ms() - KUBE_TOKEN_REREAD_MS;
	assert_int_equal(kube_creds_refresh(&kc, false), 0);
	assert_string_equal(kc.kc_token, "token-bbbb-0002");
	assert_logged("Kubernetes token reloaded from %D/token");
	assert_int_equal(count(log_text(), "token reloaded"), 1);

	put("token", "token-cccc-0003");
	assert_int_equal(kube_creds_refresh(&kc, true), 0);
	assert_string_equal(kc.kc_token, "token-cccc-0003");
	assert_int_equal(kube_creds_refresh(&kc, true), 0);
	assert_int_equal(count(log_text(), "token reloaded"), 2);

	/* Broken files: the token in use stays. */
	assert_int_equal(unlink(kc.kc_token_file), 0);
	assert_int_equal(kube_creds_refresh(&kc, true), -1);
	assert_string_equal(kc.kc_token, "token-cccc-0003");
	assert_logged("Kubernetes token not reloaded: cannot read the token "
	              "file %D/token: No such file or directory");
	put("token", "token-dddd-0004");
	assert_int_equal(kube_creds_refresh(&kc, false), 0);
	assert_string_equal(kc.kc_token, "token-cccc-0003");

	put("token", "");
	assert_int_equal(kube_creds_refresh(&kc, true), -1);
	assert_string_equal(kc.kc_token, "token-cccc-0003");
	assert_logged("Kubernetes token not reloaded: the token file "
	              "%D/token is empty");

	put("token", "token-eeee\x7f-0005");
	assert_int_equal(kube_creds_refresh(&kc, true), -1);
	assert_string_equal(kc.kc_token, "token-cccc-0003");
	assert_logged("Kubernetes token not reloaded: the token file "
	              "%D/token holds more than a token");

	big = xmalloc(KUBE_TOKEN_MAX + 1);
	memset(big, 'k', KUBE_TOKEN_MAX + 1);
	put_bytes("token", big, KUBE_TOKEN_MAX + 1);
	free(big);
	assert_int_equal(kube_creds_refresh(&kc, true), -1);
	assert_string_equal(kc.kc_token, "token-cccc-0003");
	assert_logged("Kubernetes token not reloaded: the token file "
	              "%D/token is larger than 65536 bytes");

	put("token", "token-ffff-0006\n");
	assert_int_equal(kube_creds_refresh(&kc, true), 0);
	assert_string_equal(kc.kc_token, "token-ffff-0006");

	/* No token of any generation ever reached the log. */
	assert_null(strstr(log_text(), "token-aaaa"));
	assert_null(strstr(log_text(), "token-bbbb"));
	assert_null(strstr(log_text(), "token-cccc"));
	assert_null(strstr(log_text(), "token-ffff"));
	kube_creds_free(&kc);
}

/* The kubelet rotates a projected service-account token by pointing the
 * ..data link at a new directory: token -> ..data/token. */
static void
test_refresh_in_cluster_rotation(void **state)
{
	struct kube_creds kc;
	char *data, *tmp;

	(void)state;
	reset();
	put("sa/..2024_01/token", "sa-token-0001\n");
	put("sa/..2024_01/namespace", "runners\n");
	put("sa/..2024_02/token", "sa-token-0002\n");
	put("sa/..2024_02/namespace", "runners\n");
	data = xasprintf("%s/..data", sa_dir);
	tmp = xasprintf("%s/..data_tmp", sa_dir);
	assert_int_equal(symlink("..2024_01", data), 0);
	assert_int_equal(put_link(sa_dir, "..data/token", "token"), 0);
	assert_int_equal(put_link(sa_dir, "..data/namespace", "namespace"), 0);
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	load_ok(NULL, &kc);
	assert_string_equal(kc.kc_token, "sa-token-0001");
	assert_string_equal(kc.kc_namespace, "runners");

	assert_int_equal(symlink("..2024_02", tmp), 0);
	assert_int_equal(rename(tmp, data), 0);
	assert_int_equal(kube_creds_refresh(&kc, false), 0);
	assert_string_equal(kc.kc_token, "sa-token-0001");
	assert_int_equal(kube_creds_refresh(&kc, true), 0);
	assert_string_equal(kc.kc_token, "sa-token-0002");
	assert_logged("Kubernetes token reloaded from %D/sa/token");
	kube_creds_free(&kc);
	free(data);
	free(tmp);
}

/* An inline token is not a file: nothing to read again. */
static void
test_refresh_inline_token(void **state)
{
	struct kube_creds kc;

	(void)state;
	reset();
	put("config", KC_TOKEN);
	load_ok(KCPATH, &kc);
	assert_int_equal(kube_creds_refresh(&kc, true), 0);
	assert_int_equal(kube_creds_refresh(&kc, false), 0);
	assert_string_equal(kc.kc_token, "inline-token-0001");
	assert_null(kc.kc_token_file);
	kube_creds_free(&kc);
}

/*
 * kube_creds_apply, judged by a TLS server.
 */

#define TLS_HOST  "kube.test"
#define CLIENT_CN "system:serviceaccount:runners:runner-provisioner"

static struct {
	EVP_PKEY *ca_key, *other_key, *server_key, *client_key;
	X509 *ca, *other, *server, *client;
	SSL_CTX *ctx;
	char *ca_pem, *other_pem, *client_pem, *client_key_pem;
} pki;

static void
add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	assert_non_null(e);
	assert_int_equal(X509_add_ext(x, e, -1), 1);
	X509_EXTENSION_free(e);
}

/* A certificate for key named cn: a CA when issuer is NULL, else signed
 * by issuer for usage ("serverAuth" or "clientAuth"). */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key,
    const char *usage)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	bool ca = issuer == NULL;

	assert_non_null(x);
	assert_true(X509_set_version(x, X509_VERSION_3));
	assert_true(ASN1_INTEGER_set(X509_get_serialNumber(x), serial++));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), -3600));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_true(X509_NAME_add_entry_by_txt(
	    name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0));
	assert_true(X509_set_subject_name(x, name));
	assert_true(X509_set_issuer_name(
	    x, ca ? name : X509_get_subject_name(issuer)));
	assert_true(X509_set_pubkey(x, key));
	add_ext(x, ca ? x : issuer, NID_basic_constraints,
	    ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
	add_ext(x, ca ? x : issuer, NID_key_usage,
	    ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
	add_ext(x, ca ? x : issuer, NID_subject_key_identifier, "hash");
	if (!ca) {
		add_ext(
		    x, issuer, NID_authority_key_identifier, "keyid:always");
		add_ext(x, issuer, NID_ext_key_usage, usage);
		if (strcmp(usage, "serverAuth") == 0)
			add_ext(
			    x, issuer, NID_subject_alt_name, "DNS:" TLS_HOST);
	}
	assert_true(X509_sign(x, ca ? key : issuer_key, EVP_sha256()) > 0);
	X509_NAME_free(name);
	return x;
}

static char *
bio_string(BIO *b)
{
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *s;

	assert_true(n > 0);
	s = xmalloc((size_t)n + 1);
	memcpy(s, data, (size_t)n);
	s[n] = '\0';
	BIO_free(b);
	return s;
}

static char *
cert_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());

	assert_true(PEM_write_bio_X509(b, x));
	return bio_string(b);
}

static char *
key_pem(EVP_PKEY *k)
{
	BIO *b = BIO_new(BIO_s_mem());

	assert_true(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL));
	return bio_string(b);
}

static char *
b64(const char *s)
{
	struct buf b = { 0 };

	b64_encode(&b, s, strlen(s));
	return buf_take(&b);
}

static void
pki_make(void)
{
	pki.ca_key = EVP_EC_gen("P-256");
	pki.other_key = EVP_EC_gen("P-256");
	pki.server_key = EVP_EC_gen("P-256");
	pki.client_key = EVP_EC_gen("P-256");
	assert_non_null(pki.ca_key);
	assert_non_null(pki.other_key);
	assert_non_null(pki.server_key);
	assert_non_null(pki.client_key);
	pki.ca = make_cert(pki.ca_key, "kubernetes", NULL, NULL, NULL);
	pki.other = make_cert(pki.other_key, "someone else", NULL, NULL, NULL);
	pki.server = make_cert(pki.server_key, "kube-apiserver", pki.ca,
	    pki.ca_key, "serverAuth");
	pki.client = make_cert(
	    pki.client_key, CLIENT_CN, pki.ca, pki.ca_key, "clientAuth");
	pki.ca_pem = cert_pem(pki.ca);
	pki.other_pem = cert_pem(pki.other);
	pki.client_pem = cert_pem(pki.client);
	pki.client_key_pem = key_pem(pki.client_key);
	substs[1].s_value = b64(pki.ca_pem);
	substs[2].s_value = b64(pki.other_pem);
	substs[3].s_value = b64(pki.client_pem);
	substs[4].s_value = b64(pki.client_key_pem);

	/* The API server: its certificate, and client certificates from
	 * the cluster CA asked for but not required. */
	pki.ctx = SSL_CTX_new(TLS_server_method());
	assert_non_null(pki.ctx);
	assert_int_equal(SSL_CTX_use_certificate(pki.ctx, pki.server), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(pki.ctx, pki.server_key), 1);
	assert_int_equal(
	    X509_STORE_add_cert(SSL_CTX_get_cert_store(pki.ctx), pki.ca), 1);
	SSL_CTX_set_verify(pki.ctx, SSL_VERIFY_PEER, NULL);
}

static void
pki_free(void)
{
	size_t i;

	SSL_CTX_free(pki.ctx);
	X509_free(pki.ca);
	X509_free(pki.other);
	X509_free(pki.server);
	X509_free(pki.client);
	EVP_PKEY_free(pki.ca_key);
	EVP_PKEY_free(pki.other_key);
	EVP_PKEY_free(pki.server_key);
	EVP_PKEY_free(pki.client_key);
	free(pki.ca_pem);
	free(pki.other_pem);
	free(pki.client_pem);
	free(pki.client_key_pem);
	for (i = 1; i < nitems(substs); i++) {
		free(substs[i].s_value);
		substs[i].s_value = NULL;
	}
}

/* One TLS connection on a Unix socket, answered with 200. */
struct server {
	int s_listen;
	pthread_t s_thread;
	bool s_handshake;       /* completed */
	char s_client_cn[128];  /* "" without a client certificate */
	bool s_client_verified; /* the certificate chains to the CA */
};

static void *
serve(void *arg)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: "
	                             "2\r\nConnection: close\r\n\r\nok";
	struct server *s = arg;
	struct timeval tv = { .tv_sec = 30 };
	char req[4096];
	size_t len = 0;
	X509 *peer;
	SSL *ssl;
	int fd, n;

	if ((fd = accept(s->s_listen, NULL, NULL)) == -1)
		return NULL; /* shut down: curl never connected */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ssl = SSL_new(pki.ctx);
	SSL_set_fd(ssl, fd);
	if (SSL_accept(ssl) == 1) {
		s->s_handshake = true;
		if ((peer = SSL_get0_peer_certificate(ssl)) != NULL) {
			X509_NAME_get_text_by_NID(X509_get_subject_name(peer),
			    NID_commonName, s->s_client_cn,
			    sizeof(s->s_client_cn));
			s->s_client_verified =
			    SSL_get_verify_result(ssl) == X509_V_OK;
		}
		while (len < sizeof(req) - 1 &&
		    (n = SSL_read(
		         ssl, req + len, (int)(sizeof(req) - 1 - len))) > 0) {
			len += (size_t)n;
			req[len] = '\0';
			if (strstr(req, "\r\n\r\n") != NULL) {
				SSL_write(ssl, answer, sizeof(answer) - 1);
				break;
			}
		}
		SSL_shutdown(ssl);
	}
	SSL_free(ssl);
	close(fd);
	return NULL;
}

static void
server_start(struct server *s, const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	memset(s, 0, sizeof(*s));
	assert_true(strlen(path) < sizeof(sun.sun_path));
	strcpy(sun.sun_path, path);
	s->s_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(s->s_listen >= 0);
	assert_int_equal(
	    bind(s->s_listen, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(s->s_listen, 1), 0);
	assert_int_equal(pthread_create(&s->s_thread, NULL, serve, s), 0);
}

static void
server_stop(struct server *s)
{
	shutdown(s->s_listen, SHUT_RDWR); /* wakes accept(), if waiting */
	assert_int_equal(pthread_join(s->s_thread, NULL), 0);
	close(s->s_listen);
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

struct tls_case {
	const char *what;
	const char *cluster; /* the cluster's body; the server is added */
	const char *user;
	CURLcode want;
	const char *want_cn; /* the client certificate the server saw */
};

#define TLS_SERVER "server: \"https://" TLS_HOST "\""

static const struct tls_case tls_cases[] = {
	{ "the CA as data",
	    "{" TLS_SERVER ", certificate-authority-data: \"%{ca}\"}",
	    "{token: inline-token-0001}", CURLE_OK, "" },
	{ "the CA as a file",
	    "{" TLS_SERVER ", certificate-authority: pki/ca.crt}",
	    "{token: inline-token-0001}", CURLE_OK, "" },
	{ "no CA: the system's do not know the cluster's", "{" TLS_SERVER "}",
	    "{token: inline-token-0001}", CURLE_PEER_FAILED_VERIFICATION,
	    NULL },
	{ "another CA as data",
	    "{" TLS_SERVER ", certificate-authority-data: \"%{other-ca}\"}",
	    "{token: inline-token-0001}", CURLE_PEER_FAILED_VERIFICATION,
	    NULL },
	{ "another CA as a file",
	    "{" TLS_SERVER ", certificate-authority: pki/other-ca.crt}",
	    "{token: inline-token-0001}", CURLE_PEER_FAILED_VERIFICATION,
	    NULL },
	{ "insecure-skip-tls-verify without a CA",
	    "{" TLS_SERVER ", insecure-skip-tls-verify: true}",
	    "{token: inline-token-0001}", CURLE_OK, "" },
	{ "insecure-skip-tls-verify with another CA",
	    "{" TLS_SERVER ", insecure-skip-tls-verify: true, "
	    "certificate-authority-data: \"%{other-ca}\"}",
	    "{token: inline-token-0001}", CURLE_OK, "" },
	{ "client certificate and key as data",
	    "{" TLS_SERVER ", certificate-authority-data: \"%{ca}\"}",
	    "{client-certificate-data: \"%{cert}\", client-key-data: "
	    "\"%{key}\"}",
	    CURLE_OK, CLIENT_CN },
	{ "client certificate and key as files",
	    "{" TLS_SERVER ", certificate-authority: pki/ca.crt}",
	    "{client-certificate: pki/client.crt, client-key: "
	    "pki/client.key}",
	    CURLE_OK, CLIENT_CN },
	{ "client certificate as data, key as a file",
	    "{" TLS_SERVER ", certificate-authority: pki/ca.crt}",
	    "{client-certificate-data: \"%{cert}\", client-key: "
	    "pki/client.key}",
	    CURLE_OK, CLIENT_CN },
};

static void
tls_row(const struct tls_case *c)
{
	struct kube_creds kc;
	struct server s;
	char *kc_text;
	char *sock = xasprintf("%s/apiserver.sock", dir);
	long status = 0;
	CURLcode rc;
	CURL *h;

	reset();
	kc_text = xasprintf(KC("dev", CTX("dev", "{cluster: k, user: u}"),
	                        CLUSTER("k", "%s"), USER("u", "%s")),
	    c->cluster, c->user);
	put("config", kc_text);
	free(kc_text);
	put("pki/ca.crt", pki.ca_pem);
	put("pki/other-ca.crt", pki.other_pem);
	put("pki/client.crt", pki.client_pem);
	put("pki/client.key", pki.client_key_pem);
	load_ok(KCPATH, &kc);

	assert_non_null(h = curl_easy_init());
	kube_creds_apply(&kc, h);
	/* Everything the handle needs was copied: the credentials can go
	 * (and be wiped) before the request is made. */
	kube_creds_free(&kc);
	curl_easy_setopt(h, CURLOPT_URL, "https://" TLS_HOST "/version");
	curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 60000L);
	server_start(&s, sock);
	rc = curl_easy_perform(h);
	server_stop(&s);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	unlink(sock);
	free(sock);
	if (rc != c->want)
		row_fail(c->what, "want curl code %d, got %d (%s)", c->want,
		    rc, curl_easy_strerror(rc));
	else if (c->want != CURLE_OK && s.s_handshake)
		row_fail(c->what, "the server completed a handshake");
	else if (c->want == CURLE_OK && (status != 200 || !s.s_handshake))
		row_fail(
		    c->what, "HTTP %ld, handshake %d", status, s.s_handshake);
	else if (c->want == CURLE_OK && strcmp(s.s_client_cn, c->want_cn))
		row_fail(c->what, "the server saw client \"%s\", want \"%s\"",
		    s.s_client_cn, c->want_cn);
	else if (c->want_cn != NULL && c->want_cn[0] != '\0' &&
	    !s.s_client_verified)
		row_fail(c->what, "the client certificate did not verify");
}

static void
test_apply_tls(void **state)
{
	size_t i;

	(void)state;
	row_failures = 0;
	for (i = 0; i < nitems(tls_cases); i++)
		tls_row(&tls_cases[i]);
	assert_int_equal(row_failures, 0);
}

static int
group_setup(void **state)
{
	int fds[2];

	(void)state;
	strcpy(dir, "/tmp/rp-kubecreds-test-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(sa_dir, sizeof(sa_dir), "%s/sa", dir);
	signal(SIGPIPE, SIG_IGN);
	if (pipe2(fds, O_CLOEXEC) == -1)
		return -1;
	if (fcntl(fds[0], F_SETFL, O_NONBLOCK) == -1)
		return -1;
	log_rd = fds[0];
	log_init("kubecreds-test", LOG_LVL_INFO);
	log_set_fd(fds[1]);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -1;
	pki_make();
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	reset();
	rmdir(dir);
	log_set_fd(-1);
	close(log_rd);
	buf_free(&logged);
	pki_free();
	curl_global_cleanup();
	return 0;
}

/*
 * Rotation keeps one redaction entry and wipes what it replaces; nothing
 * parsed from a kubeconfig lingers once freed (memscan.h: what a core dump
 * would show).
 */
static char w_dir[64], w_kubeconfig[128], w_tokfile[128];
static char w_tok[65], w_prev[65];

/* Writes path as the kubelet's atomic writer does: a new file renamed
 * over the old one. */
static void
w_replace_file(const char *path, const char *data)
{
	char tmp[160];
	int fd;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	assert_int_equal(write(fd, "\n", 1), 1);
	close(fd);
	assert_int_equal(rename(tmp, path), 0);
}

static int
w_setup(void **state)
{
	(void)state;
	log_init("kubecreds-test", LOG_LVL_ERROR);
	strcpy(w_dir, "/tmp/rp-kubecreds-wipe-XXXXXX");
	if (mkdtemp(w_dir) == NULL)
		return -1;
	snprintf(w_kubeconfig, sizeof(w_kubeconfig), "%s/kubeconfig", w_dir);
	snprintf(w_tokfile, sizeof(w_tokfile), "%s/token", w_dir);
	return 0;
}

static int
w_teardown(void **state)
{
	(void)state;
	unlink(w_kubeconfig);
	unlink(w_tokfile);
	rmdir(w_dir);
	log_secrets_clear();
	return 0;
}

static void
w_write_kubeconfig(const char *user)
{
	FILE *f = fopen(w_kubeconfig, "w");

	assert_non_null(f);
	fprintf(f,
	    "apiVersion: v1\n"
	    "kind: Config\n"
	    "current-context: c\n"
	    "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
	    "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443', "
	    "insecure-skip-tls-verify: true}}]\n"
	    "users: [{name: u, user: %s}]\n",
	    user);
	fclose(f);
}

/*
 * A service-account token rotates (hourly, in a cluster): each new one
 * replaces the old in the redaction list instead of adding to it, and the
 * old one is wiped everywhere it was held.
 */
static void
test_rotation_bounded_and_wiped(void **state)
{
	struct kube_creds kc;
	struct flags f;
	char err[512], where[160];
	size_t base, i, n;

	(void)state;
	memset(&f, 0, sizeof(f));
	f.f_kubeconfig = w_kubeconfig;
	memscan_token(w_tok, sizeof(w_tok) - 1);
	w_replace_file(w_tokfile, w_tok);
	w_write_kubeconfig("{tokenFile: token}");
	base = log_secret_count();
	assert_int_equal(kube_creds_load(&f, &kc, err, sizeof(err)), 0);
	assert_string_equal(kc.kc_token, w_tok);
	assert_int_equal(log_secret_count(), base + 1);
	for (i = 0; i < 200; i++) {
		memcpy(w_prev, w_tok, sizeof(w_prev));
		memscan_token(w_tok, sizeof(w_tok) - 1);
		w_replace_file(w_tokfile, w_tok);
		assert_int_equal(kube_creds_refresh(&kc, true), 0);
		assert_string_equal(kc.kc_token, w_tok);
		assert_int_equal(log_secret_count(), base + 1);
		if (i % 50 != 0)
			continue;
		n = memscan_count(
		    w_prev, strlen(w_prev), where, sizeof(where));
		if (n != 0)
			fail_msg(
			    "rotation %zu: %zu pieces of the old token at "
			    "%s",
			    i, n, where);
	}
	/* Reading the same token again changes nothing. */
	assert_int_equal(kube_creds_refresh(&kc, true), 0);
	assert_int_equal(log_secret_count(), base + 1);
	kube_creds_free(&kc);
	assert_int_equal(log_secret_count(), base);
	n = memscan_count(w_tok, strlen(w_tok), where, sizeof(where));
	if (n != 0)
		fail_msg("freed credentials: %zu pieces at %s", n, where);
}

/* An inline token and client key, parsed from the kubeconfig's YAML: once
 * freed, neither lingers (the file's text, libyaml's copies and the JSON
 * tree included). */
static void
test_inline_credentials_wiped(void **state)
{
	struct kube_creds kc;
	struct flags f;
	char err[512], where[160], user[256];
	size_t n;

	(void)state;
	memset(&f, 0, sizeof(f));
	f.f_kubeconfig = w_kubeconfig;
	memscan_token(w_tok, sizeof(w_tok) - 1);
	snprintf(user, sizeof(user), "{token: %s}", w_tok);
	w_write_kubeconfig(user);
	explicit_bzero(user, sizeof(user));
	assert_int_equal(kube_creds_load(&f, &kc, err, sizeof(err)), 0);
	assert_string_equal(kc.kc_token, w_tok);
	kube_creds_free(&kc);
	unlink(w_kubeconfig);
	n = memscan_count(w_tok, strlen(w_tok), where, sizeof(where));
	if (n != 0)
		fail_msg("%zu pieces of the inline token at %s", n, where);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_table),
		cmocka_unit_test(test_relative_kubeconfig),
		cmocka_unit_test(test_kubeconfig_env_too_long),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_refresh_token_file),
		cmocka_unit_test(test_refresh_in_cluster_rotation),
		cmocka_unit_test(test_refresh_inline_token),
		cmocka_unit_test(test_apply_tls),
		cmocka_unit_test_setup_teardown(
		    test_rotation_bounded_and_wiped, w_setup, w_teardown),
		cmocka_unit_test_setup_teardown(
		    test_inline_credentials_wiped, w_setup, w_teardown),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
