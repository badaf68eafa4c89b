#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "duration.h"
#include "flags.h"
#include "util.h"

enum {
	OPT_CONFIG = 256,
	OPT_SECRETS,
	OPT_TOKEN_FILE,
	OPT_TOKEN_FD,
	OPT_API_ADDR,
	OPT_CA_FILE,
	OPT_NAMESPACE,
	OPT_KUBECONFIG,
	OPT_POLL,
	OPT_GRACE,
	OPT_BOOT_LOOP,
	OPT_IDLE_POLL,
	OPT_IDLE_AFTER,
	OPT_MAX_RPS,
	OPT_SCALER_LINES,
	OPT_READY,
	OPT_LIVE,
	OPT_RUN_DIR,
	OPT_LOG_LEVEL,
	OPT_CHECK,
	OPT_DRY_RUN,
	OPT_LEADER_ELECT,
	OPT_LEASE_NAME,
	OPT_LEASE_IDENTITY,
	OPT_DRAIN,
	OPT_DRAIN_TIMEOUT,
	OPT_VERSION,
	OPT_HELP,
};

static const struct option long_opts[] = {
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "secrets", required_argument, NULL, OPT_SECRETS },
	{ "circle-token-file", required_argument, NULL, OPT_TOKEN_FILE },
	{ "circle-token-fd", required_argument, NULL, OPT_TOKEN_FD },
	{ "circleci-api-addr", required_argument, NULL, OPT_API_ADDR },
	{ "circleci-ca-file", required_argument, NULL, OPT_CA_FILE },
	{ "namespace", required_argument, NULL, OPT_NAMESPACE },
	{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
	{ "poll-interval", required_argument, NULL, OPT_POLL },
	{ "shutdown-grace", required_argument, NULL, OPT_GRACE },
	{ "boot-loop-threshold", required_argument, NULL, OPT_BOOT_LOOP },
	{ "idle-poll-interval", required_argument, NULL, OPT_IDLE_POLL },
	{ "idle-poll-after", required_argument, NULL, OPT_IDLE_AFTER },
	{ "max-requests-per-second", required_argument, NULL, OPT_MAX_RPS },
	{ "log-scaler-lines", required_argument, NULL, OPT_SCALER_LINES },
	{ "ready-addr", required_argument, NULL, OPT_READY },
	{ "live-addr", required_argument, NULL, OPT_LIVE },
	{ "run-dir", required_argument, NULL, OPT_RUN_DIR },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "check-config", no_argument, NULL, OPT_CHECK },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "leader-elect", no_argument, NULL, OPT_LEADER_ELECT },
	{ "lease-name", required_argument, NULL, OPT_LEASE_NAME },
	{ "lease-identity", required_argument, NULL, OPT_LEASE_IDENTITY },
	{ "drain", no_argument, NULL, OPT_DRAIN },
	{ "drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ "help", no_argument, NULL, OPT_HELP },
	{ NULL, 0, NULL, 0 },
};

/* True when the long option named (a prefix, as getopt allows) takes a
 * value: its next argument is a value, not a flag. */
static bool
takes_value(const char *name)
{
	const struct option *o;

	for (o = long_opts; o->name != NULL; o++)
		if (strncmp(o->name, name, strlen(name)) == 0)
			return o->has_arg == required_argument;
	return false;
}

void
flags_usage(FILE *fp, const char *prog)
{
	fprintf(fp,
	    "usage: %s [flags]\n"
	    "\n"
	    "Keeps CircleCI machine runners as KubeVirt VMs: polls the "
	    "CircleCI runner API\nand sizes one VirtualMachinePool per "
	    "resource class.\n"
	    "\n"
	    "  --config PATH              resource class configuration "
	    "(default %s)\n"
	    "  --secrets PATH             per-class runner tokens and user "
	    "data (default %s;\n"
	    "                             skipped when that file is "
	    "missing)\n"
	    "  --circle-token-file PATH   CircleCI API token, used when "
	    "CIRCLE_TOKEN is unset\n"
	    "                             (default %s)\n"
	    "  --circle-token-fd FD       read the CircleCI API token from "
	    "this open descriptor\n"
	    "                             instead (how the supervisor hands "
	    "CIRCLE_TOKEN on)\n"
	    "  --circleci-api-addr URL    CircleCI runner API address "
	    "(default %s)\n"
	    "  --circleci-ca-file PATH    CA bundle for the CircleCI "
	    "address (default: system CAs)\n"
	    "  --namespace NS             namespace of the pools and VMs "
	    "(default: in-cluster\n"
	    "                             namespace, else \"default\")\n"
	    "  --kubeconfig PATH          kubeconfig to use (default: "
	    "$KUBECONFIG, else in-cluster)\n"
	    "  --poll-interval DURATION   how often to poll CircleCI "
	    "(default 1s)\n"
	    "  --idle-poll-interval DURATION\n"
	    "                             how often to poll a class that had "
	    "no task for\n"
	    "                             --idle-poll-after (default 5s)\n"
	    "  --idle-poll-after DURATION when a class counts as idle "
	    "(default 1m)\n"
	    "  --max-requests-per-second N\n"
	    "                             CircleCI request budget; polls are "
	    "spread within it\n"
	    "                             (default 50)\n"
	    "  --log-scaler-lines always|changes\n"
	    "                             log each class's task counts every "
	    "poll, or when\n"
	    "                             they change and once a minute "
	    "(default always)\n"
	    "  --boot-loop-threshold DURATION\n"
	    "                             during a boot loop, a VM up this "
	    "long ends it\n"
	    "                             (default 1m)\n"
	    "  --shutdown-grace DURATION  time children get to stop before "
	    "SIGKILL (default 10s)\n"
	    "  --ready-addr HOST:PORT     GET /ready and /metrics "
	    "(default %s)\n"
	    "  --live-addr HOST:PORT      GET /live (default %s)\n"
	    "  --run-dir DIR              private directory for IPC sockets\n"
	    "                             (default "
	    "$XDG_RUNTIME_DIR/runner-provisioner or\n"
	    "                             /tmp/runner-provisioner-UID)\n"
	    "  --log-level LEVEL          debug, info, warn or error "
	    "(default info)\n"
	    "  --check-config             validate the configuration and "
	    "token, print a summary,\n"
	    "                             exit\n"
	    "  --dry-run                  decide and log, never write to "
	    "Kubernetes\n"
	    "  --leader-elect             run as one of several replicas: "
	    "only the holder of\n"
	    "                             the Lease --lease-name writes to "
	    "Kubernetes\n"
	    "  --lease-name NAME          the Lease, and the installation's "
	    "name on its pools\n"
	    "                             (default %s)\n"
	    "  --lease-identity ID        this replica's name in the Lease "
	    "(default:\n"
	    "                             hostname_<random>, kept across "
	    "actuator restarts)\n"
	    "  --drain                    uninstall: scale every pool of "
	    "this installation to 0,\n"
	    "                             wait for their VMs, delete the "
	    "pools and Secrets, exit\n"
	    "  --drain-timeout DURATION   how long --drain waits for VMs "
	    "still running jobs\n"
	    "                             (default 4m)\n"
	    "  --version                  print the version and exit\n"
	    "  --help                     print this help and exit\n",
	    prog, FLAGS_DEFAULT_CONFIG, FLAGS_DEFAULT_SECRETS,
	    FLAGS_DEFAULT_TOKEN_FILE, FLAGS_DEFAULT_API_ADDR,
	    FLAGS_DEFAULT_READY_ADDR, FLAGS_DEFAULT_LIVE_ADDR,
	    FLAGS_DEFAULT_LEASE_NAME);
}

int
flags_split_addr(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = addr;
	size_t hlen;
	char *end;
	long p;

	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (close == NULL || close[1] != ':')
			return -1;
		h = addr + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
	} else {
		if ((colon = strrchr(addr, ':')) == NULL)
			return -1;
		hlen = (size_t)(colon - addr);
		if (memchr(addr, ':', hlen) != NULL)
			return -1; /* bare IPv6 needs brackets */
	}
	if (hlen >= hostlen)
		return -1;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	/* Digits only: strtol would also take blanks and a sign. */
	if (!isdigit((unsigned char)colon[1]) || *end != '\0' || errno != 0 ||
	    p > 65535)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static int
parse_duration_ms(const char *flag, const char *arg, uint64_t min_ms,
    uint64_t *out, char *err, size_t errlen)
{
	char why[128];
	uint64_t ns;

	if (duration_parse(arg, &ns, why, sizeof(why)) == -1) {
		snprintf(err, errlen, "%s: invalid duration \"%s\": %s", flag,
		    arg, why);
		return -1;
	}
	if (ns / 1000000 < min_ms) {
		snprintf(err, errlen, "%s: %s is too short (minimum %llums)",
		    flag, arg, (unsigned long long)min_ms);
		return -1;
	}
	*out = ns / 1000000;
	return 0;
}

static int
parse_rps(const char *arg, double *out, char *err, size_t errlen)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	/* Plain decimal only: no sign, space, hex, inf or nan. */
	if ((!isdigit((unsigned char)arg[0]) && arg[0] != '.') ||
	    *end != '\0' || errno != 0 || !isfinite(v) ||
	    strpbrk(arg, "xX") != NULL) {
		snprintf(err, errlen,
		    "--max-requests-per-second: \"%s\" is not a number", arg);
		return -1;
	}
	if (v < 0.1 || v > FLAGS_MAX_RPS_LIMIT) {
		snprintf(err, errlen,
		    "--max-requests-per-second: %s is out of range (0.1 to "
		    "%.0f)",
		    arg, FLAGS_MAX_RPS_LIMIT);
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_api_addr(struct flags *f, const char *arg, char *err, size_t errlen)
{
	size_t n = strlen(arg);
	const char *host;

	if (strncmp(arg, "https://", 8) != 0) {
		snprintf(err, errlen,
		    "--circleci-api-addr: \"%s\" must be an https:// URL",
		    arg);
		return -1;
	}
	while (n > 8 && arg[n - 1] == '/')
		n--;
	host = arg + 8;
	if ((size_t)(host - arg) >= n || strpbrk(arg, " \t\r\n?#") != NULL) {
		snprintf(err, errlen,
		    "--circleci-api-addr: \"%s\" is not a valid URL", arg);
		return -1;
	}
	free(f->f_api_addr);
	f->f_api_addr = xstrndup(arg, n);
	return 0;
}

/* A DNS-1123 label: a Lease name that is also a label value. */
static int
lease_name_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > FLAGS_LEASE_NAME_MAX || s[0] == '-' ||
	    s[n - 1] == '-')
		return -1;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		        (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return -1;
	return 0;
}

static int
identity_valid(const char *s)
{
	size_t i, n = strlen(s);

	if (n == 0 || n > FLAGS_IDENTITY_MAX)
		return -1;
	for (i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
		        (s[i] >= 'A' && s[i] <= 'Z') ||
		        (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		        s[i] == '_' || s[i] == '.' || s[i] == ':'))
			return -1;
	return 0;
}

static int
parse(struct flags *f, int argc, char **argv, char *err, size_t errlen)
{
	char host[256];
	uint16_t port;
	int c;

	memset(f, 0, sizeof(*f));
	f->f_config = FLAGS_DEFAULT_CONFIG;
	f->f_secrets = FLAGS_DEFAULT_SECRETS;
	f->f_circle_token_file = FLAGS_DEFAULT_TOKEN_FILE;
	f->f_circle_token_fd = -1;
	f->f_api_addr = xstrdup(FLAGS_DEFAULT_API_ADDR);
	f->f_poll_interval_ms = FLAGS_DEFAULT_POLL_MS;
	f->f_shutdown_grace_ms = FLAGS_DEFAULT_GRACE_MS;
	f->f_boot_loop_ms = FLAGS_DEFAULT_BOOT_LOOP_MS;
	f->f_idle_poll_interval_ms = FLAGS_DEFAULT_IDLE_POLL_MS;
	f->f_idle_poll_after_ms = FLAGS_DEFAULT_IDLE_AFTER_MS;
	f->f_max_rps = FLAGS_DEFAULT_MAX_RPS;
	f->f_scaler_lines = SCALER_LINES_ALWAYS;
	f->f_ready_addr = FLAGS_DEFAULT_READY_ADDR;
	f->f_live_addr = FLAGS_DEFAULT_LIVE_ADDR;
	f->f_log_level = LOG_LVL_INFO;
	f->f_lease_name = FLAGS_DEFAULT_LEASE_NAME;
	f->f_drain_timeout_ms = FLAGS_DEFAULT_DRAIN_MS;

	/* Every flag is long: a single-dash word ("-help") is named as it
	 * is, not taken apart as a cluster of short options. */
	for (c = 1; c < argc && strcmp(argv[c], "--") != 0; c++) {
		if (argv[c][0] == '-' && argv[c][1] != '-' &&
		    argv[c][1] != '\0') {
			snprintf(err, errlen,
			    "unknown flag \"%s\" (flags start with \"--\"; "
			    "see --help)",
			    argv[c]);
			return -1;
		}
		if (argv[c][0] == '-' && argv[c][1] == '-' &&
		    strchr(argv[c], '=') == NULL && c + 1 < argc &&
		    takes_value(argv[c] + 2))
			c++; /* its value may look like anything */
	}
	optind = 0; /* glibc: 0 resets getopt completely */
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_CONFIG:
			f->f_config = optarg;
			break;
		case OPT_SECRETS:
			/* "": no secrets file at all. */
			f->f_secrets = optarg[0] != '\0' ? optarg : NULL;
			f->f_secrets_set = true;
			break;
		case OPT_TOKEN_FILE:
			f->f_circle_token_file = optarg;
			break;
		case OPT_TOKEN_FD: {
			char *end;
			long fd;
			errno = 0;
			fd = strtol(optarg, &end, 10);
			if (optarg[0] == '\0' || *end != '\0' || errno != 0 ||
			    fd < 0 || fd > 1024) {
				snprintf(err, errlen,
				    "--circle-token-fd: \"%s\" is not a file "
				    "descriptor number",
				    optarg);
				return -1;
			}
			f->f_circle_token_fd = (int)fd;
			break;
		}
		case OPT_API_ADDR:
			if (parse_api_addr(f, optarg, err, errlen) == -1)
				return -1;
			break;
		case OPT_CA_FILE:
			f->f_circleci_ca_file = optarg;
			break;
		case OPT_NAMESPACE:
			f->f_namespace = optarg;
			break;
		case OPT_KUBECONFIG:
			f->f_kubeconfig = optarg;
			break;
		case OPT_POLL:
			if (parse_duration_ms("--poll-interval", optarg, 10,
			        &f->f_poll_interval_ms, err, errlen) == -1)
				return -1;
			break;
		case OPT_GRACE:
			if (parse_duration_ms("--shutdown-grace", optarg, 0,
			        &f->f_shutdown_grace_ms, err, errlen) == -1)
				return -1;
			break;
		case OPT_BOOT_LOOP:
			if (parse_duration_ms("--boot-loop-threshold", optarg,
			        0, &f->f_boot_loop_ms, err, errlen) == -1)
				return -1;
			break;
		case OPT_IDLE_POLL:
			if (parse_duration_ms("--idle-poll-interval", optarg,
			        10, &f->f_idle_poll_interval_ms, err,
			        errlen) == -1)
				return -1;
			break;
		case OPT_IDLE_AFTER:
			if (parse_duration_ms("--idle-poll-after", optarg, 0,
			        &f->f_idle_poll_after_ms, err, errlen) == -1)
				return -1;
			break;
		case OPT_MAX_RPS:
			if (parse_rps(optarg, &f->f_max_rps, err, errlen) ==
			    -1)
				return -1;
			break;
		case OPT_SCALER_LINES:
			if (strcmp(optarg, "always") == 0)
				f->f_scaler_lines = SCALER_LINES_ALWAYS;
			else if (strcmp(optarg, "changes") == 0)
				f->f_scaler_lines = SCALER_LINES_CHANGES;
			else {
				snprintf(err, errlen,
				    "--log-scaler-lines: \"%s\" is not one "
				    "of always, changes",
				    optarg);
				return -1;
			}
			break;
		case OPT_READY:
		case OPT_LIVE:
			if (flags_split_addr(
			        optarg, host, sizeof(host), &port) == -1) {
				snprintf(err, errlen,
				    "%s: \"%s\" is not HOST:PORT, :PORT or "
				    "[IPv6]:PORT",
				    c == OPT_READY ? "--ready-addr"
				                   : "--live-addr",
				    optarg);
				return -1;
			}
			if (c == OPT_READY)
				f->f_ready_addr = optarg;
			else
				f->f_live_addr = optarg;
			break;
		case OPT_RUN_DIR:
			f->f_run_dir = optarg;
			break;
		case OPT_LOG_LEVEL:
			if (log_level_parse(optarg, &f->f_log_level) == -1) {
				snprintf(err, errlen,
				    "--log-level: \"%s\" is not one of debug, "
				    "info, warn, error",
				    optarg);
				return -1;
			}
			break;
		case OPT_CHECK:
			f->f_check_config = true;
			break;
		case OPT_DRY_RUN:
			f->f_dry_run = true;
			break;
		case OPT_LEADER_ELECT:
			f->f_leader_elect = true;
			break;
		case OPT_LEASE_NAME:
			if (lease_name_valid(optarg) == -1) {
				snprintf(err, errlen,
				    "--lease-name: \"%s\" is not a DNS-1123 "
				    "label (lower-case letters, digits and "
				    "'-', at most %d)",
				    optarg, FLAGS_LEASE_NAME_MAX);
				return -1;
			}
			f->f_lease_name = optarg;
			break;
		case OPT_LEASE_IDENTITY:
			if (identity_valid(optarg) == -1) {
				snprintf(err, errlen,
				    "--lease-identity: \"%s\" must be 1-%d "
				    "letters, digits, '-', '_', '.' or ':'",
				    optarg, FLAGS_IDENTITY_MAX);
				return -1;
			}
			f->f_lease_identity = optarg;
			break;
		case OPT_DRAIN:
			f->f_drain = true;
			break;
		case OPT_DRAIN_TIMEOUT:
			if (parse_duration_ms("--drain-timeout", optarg, 0,
			        &f->f_drain_timeout_ms, err, errlen) == -1)
				return -1;
			break;
		case OPT_VERSION:
			f->f_version = true;
			break;
		case OPT_HELP:
			f->f_help = true;
			break;
		case ':':
			snprintf(err, errlen, "%s: missing value",
			    argv[optind - 1]);
			return -1;
		default:
			snprintf(err, errlen,
			    "unknown flag \"%s\" (see --help)",
			    argv[optind - 1]);
			return -1;
		}
	}
	if (optind < argc) {
		snprintf(err, errlen,
		    "unexpected argument \"%s\" (see --help)", argv[optind]);
		return -1;
	}
	if (f->f_drain && f->f_dry_run) {
		snprintf(err, errlen,
		    "--drain and --dry-run exclude each other: draining "
		    "writes to Kubernetes");
		return -1;
	}
	/* An idle class is never polled more often than a busy one. */
	if (f->f_idle_poll_interval_ms < f->f_poll_interval_ms)
		f->f_idle_poll_interval_ms = f->f_poll_interval_ms;
	return 0;
}

int
flags_parse(struct flags *f, int argc, char **argv, char *err, size_t errlen)
{
	if (parse(f, argc, argv, err, errlen) == -1) {
		flags_free(f);
		return -1;
	}
	return 0;
}

void
flags_free(struct flags *f)
{
	free(f->f_api_addr);
	f->f_api_addr = NULL;
}
