/*
 * The cloud-init user data of a runner VM (DESIGN §6).
 *
 * The document stages the runner's configuration (it holds the token) as a
 * root-only file outside /etc/circleci-runner, so that installing the
 * package never meets a modified conffile, and a boot script that installs
 * the package, moves the configuration into place under a name chosen at
 * boot, adds the systemd drop-in and starts the runner.  The script is the
 * same for every class: no configured value is ever part of shell code.
 *
 * Values go into the runner's YAML as double-quoted scalars escaped down to
 * printable ASCII, so every line of the staged file is printable and safe
 * inside a YAML literal block whatever the token contains.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cloudinit.h"
#include "conf.h"
#include "log.h"
#include "util.h"

#define CI_STR(x)         CI_STR_(x)
#define CI_STR_(x)        #x
#define CI_CONTENT_INDENT "    " /* content lines of a write_files item */

static int ci_utf8_next(const unsigned char *, uint32_t *);
static int ci_quote(struct buf *, const char *);
static int ci_runner_config(
    struct buf *, const struct conf_class *, const char *);
static void ci_write_file(
    struct buf *, const char *, const char *, const char *);

/*
 * POSIX sh, checked by shellcheck in the unit test and run against stub
 * commands in tests/cloudinit.  It must never print the configuration: it
 * only edits the runner.name line with sed, so the token never enters a
 * shell variable, a command line or a log.
 */
/* clang-format off */
static const char *const ci_boot_script[] = {
	"#!/bin/sh",
	"# runner-provisioner: installs the CircleCI machine runner, sets it",
	"# up for a single task and powers the VM off when the runner exits.",
	"set -uf",
	"umask 077",
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LC_ALL=C",
	"export PATH LC_ALL",
	"",
	"STAGED=" CLOUDINIT_STAGED_CONFIG_PATH,
	"CONFIG=" CLOUDINIT_RUNNER_CONFIG_PATH,
	"DROPIN=" CLOUDINIT_DROPIN_PATH,
	"REPO=https://packagecloud.io/install/repositories/circleci/runner",
	"PLACEHOLDER='  name: \"" CLOUDINIT_NAME_PLACEHOLDER "\"'",
	"SETUP=",
	"TMP=",
	"",
	"say() {",
	"    printf 'runner-provisioner: %s\\n' \"$*\" >&2",
	"}",
	"",
	"# The serial console is where an operator looks when a VM powers",
	"# off early (kubectl logs <virt-launcher> -c guest-console-log).",
	"die() {",
	"    msg=\"runner-provisioner: error: $*; powering off\"",
	"    for tty in /dev/console /dev/ttyS0; do",
	"        if [ -w \"$tty\" ]; then",
	"            printf '%s\\n' \"$msg\" 2>/dev/null >\"$tty\" || :",
	"        fi",
	"    done",
	"    printf '%s\\n' \"$msg\" >&2",
	"    rm -f ${SETUP:+\"$SETUP\"} ${TMP:+\"$TMP\"}",
	"    systemctl --no-block poweroff || poweroff",
	"    exit 1",
	"}",
	"",
	"# Prints os-release(5) value $1 in lower case, without quotes.",
	"os_value() {",
	"    sed -n \"s/^$1=//p\" \"$OS_RELEASE\" | head -n 1 |",
	"        tr '[:upper:]' '[:lower:]' | tr -cd '[:alnum:]._ -'",
	"}",
	"",
	"# 1. The OS family decides the package manager.",
	"if [ -r /etc/os-release ]; then",
	"    OS_RELEASE=/etc/os-release",
	"elif [ -r /usr/lib/os-release ]; then",
	"    OS_RELEASE=/usr/lib/os-release",
	"else",
	"    die \"cannot read /etc/os-release: unknown operating system\"",
	"fi",
	"os_id=$(os_value ID)",
	"os_like=$(os_value ID_LIKE)",
	"family=",
	"for id in $os_id $os_like; do",
	"    case $id in",
	"    debian | ubuntu)",
	"        family=deb",
	"        break",
	"        ;;",
	"    rhel | centos | fedora | almalinux | rocky | amzn)",
	"        family=rpm",
	"        break",
	"        ;;",
	"    *) ;;",
	"    esac",
	"done",
	"if [ -z \"$family\" ]; then",
	"    die \"unsupported operating system ID=${os_id:-unknown}\" \\",
	"        \"ID_LIKE=${os_like:-none}: the runner needs Debian,\" \\",
	"        \"Ubuntu or a RHEL family member (CentOS, AlmaLinux,\" \\",
	"        \"Rocky Linux, Fedora, Amazon Linux)\"",
	"fi",
	"if [ \"$family\" = deb ]; then",
	"    PM=apt-get",
	"    DEBIAN_FRONTEND=noninteractive",
	"    export DEBIAN_FRONTEND",
	"elif command -v dnf >/dev/null 2>&1; then",
	"    PM=dnf",
	"else",
	"    PM=yum",
	"fi",
	"say \"detected ${os_id:-unknown}: installing with $PM\"",
	"",
	"# 2. Install circleci-runner from packagecloud, with backoff.",
	"install_runner() {",
	"    if ! command -v curl >/dev/null 2>&1; then",
	"        if [ \"$PM\" = apt-get ]; then",
	"            apt-get update || return 1",
	"        fi",
	"        \"$PM\" install -y curl ca-certificates || return 1",
	"    fi",
	"    # A file, not a pipe: a failed download must not look like an",
	"    # empty script that bash runs successfully.",
	"    curl -fsSL --proto =https -o \"$SETUP\" \\",
	"        \"$REPO/script.$family.sh?any=true\" || return 1",
	"    bash \"$SETUP\" || return 1",
	"    if [ \"$PM\" = apt-get ]; then",
	"        apt-get install -y -o Dpkg::Options::=--force-confold \\",
	"            circleci-runner || return 1",
	"    else",
	"        \"$PM\" install -y circleci-runner || return 1",
	"    fi",
	"    command -v circleci-runner >/dev/null 2>&1",
	"}",
	"",
	"SETUP=$(mktemp) || die \"cannot create a temporary file\"",
	"attempt=1",
	"delay_s=5",
	"until install_runner; do",
	"    if [ \"$attempt\" -ge 5 ]; then",
	"        die \"cannot install circleci-runner with $PM\" \\",
	"            \"after $attempt attempts\"",
	"    fi",
	"    say \"installing circleci-runner failed\" \\",
	"        \"(attempt $attempt of 5), retrying in ${delay_s}s\"",
	"    sleep \"$delay_s\"",
	"    attempt=$((attempt + 1))",
	"    delay_s=$((delay_s * 2))",
	"done",
	"rm -f \"$SETUP\"",
	"SETUP=",
	"# Should the package have started the runner with its placeholder",
	"# configuration, it must start again only with ours and the drop-in.",
	"systemctl stop circleci-runner 2>/dev/null || :",
	"",
	"# 3. The runner's configuration, under a name no runner has used",
	"# before: the pool reuses VM names and SMBIOS UUIDs.  The runner",
	"# accepts letters, digits and . ( ) - _ in a name.",
	"host=$(hostname -s 2>/dev/null || uname -n)",
	"host=$(printf '%s' \"${host%%.*}\" |",
	"    tr -c 'A-Za-z0-9()_-' '-' | cut -c 1-40)",
	"rand=$(od -An -N6 -tx1 /dev/urandom | tr -cd '0-9a-f')",
	"if [ \"${#rand}\" -ne 12 ]; then",
	"    die \"cannot read /dev/urandom\"",
	"fi",
	"name=\"${host:-runner}-$rand\"",
	"name_line=\"  name: \\\"$name\\\"\"",
	"",
	"grep -Fqx \"$PLACEHOLDER\" \"$STAGED\" ||",
	"    die \"$STAGED is missing or has no runner.name placeholder\"",
	"[ -d \"${CONFIG%/*}\" ] || mkdir -m 0755 \"${CONFIG%/*}\" ||",
	"    die \"cannot create ${CONFIG%/*}\"",
	"TMP=\"$CONFIG.runner-provisioner\"",
	"if ! { sed \"s/^$PLACEHOLDER\\$/$name_line/\" \"$STAGED\" \\",
	"    >\"$TMP\" &&",
	"    grep -Fqx \"$name_line\" \"$TMP\" &&",
	"    chown root:circleci \"$TMP\" &&",
	"    chmod 0640 \"$TMP\" &&",
	"    mv -f \"$TMP\" \"$CONFIG\"; }; then",
	"    die \"cannot write $CONFIG\"",
	"fi",
	"TMP=",
	"rm -f \"$STAGED\"",
	"rmdir \"${STAGED%/*}\" 2>/dev/null || :",
	"",
	"# 4. One task per VM: no restart, power off once the runner has",
	"# exited, and time for a draining runner to finish its job.",
	"if [ -x /usr/bin/systemctl ]; then",
	"    systemctl_bin=/usr/bin/systemctl",
	"elif [ -x /bin/systemctl ]; then",
	"    systemctl_bin=/bin/systemctl",
	"else",
	"    die \"systemctl not found: the guest must run systemd\"",
	"fi",
	"# The runner runs as circleci and powering off needs root: \"+\"",
	"# from systemd 231, PermissionsStartOnly before (RHEL 7, Amazon",
	"# Linux 2).",
	"sd_version=$(systemctl --version |",
	"    sed -n '1s/^systemd \\([0-9][0-9]*\\).*/\\1/p')",
	"prefix=+",
	"if [ -n \"$sd_version\" ] && [ \"$sd_version\" -lt 231 ]; then",
	"    prefix=",
	"fi",
	"umask 022",
	"mkdir -p \"${DROPIN%/*}\" || die \"cannot create ${DROPIN%/*}\"",
	"if ! {",
	"    echo '# runner-provisioner: one task, then power off.'",
	"    echo '[Service]'",
	"    echo 'Restart=no'",
	"    [ -n \"$prefix\" ] || echo 'PermissionsStartOnly=true'",
	"    echo \"ExecStopPost=$prefix$systemctl_bin --no-block poweroff\"",
	"    echo 'TimeoutStopSec=" CI_STR(CLOUDINIT_STOP_TIMEOUT_S) "'",
	"    echo 'StandardOutput=journal+console'",
	"    echo 'StandardError=journal+console'",
	"} >\"$DROPIN\"; then",
	"    die \"cannot write $DROPIN\"",
	"fi",
	"systemctl daemon-reload || die \"systemctl daemon-reload failed\"",
	"",
	"# 5. Start the runner last.",
	"say \"starting circleci-runner as $name\"",
	"systemctl enable --now circleci-runner ||",
	"    die \"cannot start circleci-runner\"",
};
/* clang-format on */

/*
 * Decodes one UTF-8 sequence at s into *cp.  Returns its length, or -1 for
 * anything RFC 3629 forbids (overlong forms, surrogates, > U+10FFFF).
 */
static int
ci_utf8_next(const unsigned char *s, uint32_t *cp)
{
	unsigned char lo = 0x80, hi = 0xbf;
	int i, len;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		*cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		*cp = s[0] & 0x0f;
		if (s[0] == 0xe0)
			lo = 0xa0;
		else if (s[0] == 0xed)
			hi = 0x9f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		*cp = s[0] & 0x07;
		if (s[0] == 0xf0)
			lo = 0x90;
		else if (s[0] == 0xf4)
			hi = 0x8f;
	} else
		return -1;
	for (i = 1; i < len; i++) {
		if (s[i] < lo || s[i] > hi) /* also stops at the NUL */
			return -1;
		*cp = (*cp << 6) | (s[i] & 0x3f);
		lo = 0x80;
		hi = 0xbf;
	}
	return len;
}

/*
 * Appends s as a YAML double-quoted scalar in printable ASCII: the escapes
 * used (\" \\ \t \n \r \xXX \uXXXX \UXXXXXXXX) mean the same in YAML 1.1
 * and 1.2.  Returns -1 if s is not valid UTF-8.
 */
static int
ci_quote(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	uint32_t cp;
	int n;

	buf_puts(b, "\"");
	while (*p != '\0') {
		if ((n = ci_utf8_next(p, &cp)) == -1)
			return -1;
		p += n;
		if (cp == '"')
			buf_puts(b, "\\\"");
		else if (cp == '\\')
			buf_puts(b, "\\\\");
		else if (cp == '\t')
			buf_puts(b, "\\t");
		else if (cp == '\n')
			buf_puts(b, "\\n");
		else if (cp == '\r')
			buf_puts(b, "\\r");
		else if (cp >= 0x20 && cp < 0x7f)
			buf_append(b, p - n, 1);
		else if (cp < 0x100)
			buf_printf(b, "\\x%02X", (unsigned)cp);
		else if (cp < 0x10000)
			buf_printf(b, "\\u%04X", (unsigned)cp);
		else
			buf_printf(b, "\\U%08X", (unsigned)cp);
	}
	buf_puts(b, "\"");
	return 0;
}

/*
 * Appends the runner's configuration file (research/circleci.md §3.2).
 * Returns -1, with the offending key in a log line, on a value that is not
 * valid UTF-8.
 */
static int
ci_runner_config(
    struct buf *b, const struct conf_class *cc, const char *api_url)
{
	buf_puts(b, "api:\n  auth_token: ");
	if (ci_quote(b, cc->cc_token) == -1) {
		log_warnx(
		    "class %s: runner token is not valid UTF-8", cc->cc_name);
		return -1;
	}
	buf_puts(b, "\n");
	if (api_url != NULL && *api_url != '\0' &&
	    strcmp(api_url, CLOUDINIT_DEFAULT_API_URL) != 0) {
		buf_puts(b, "  url: ");
		if (ci_quote(b, api_url) == -1) {
			log_warnx("CircleCI API address is not valid UTF-8");
			return -1;
		}
		buf_puts(b, "\n");
	}
	buf_puts(b,
	    "runner:\n"
	    "  name: \"" CLOUDINIT_NAME_PLACEHOLDER "\"\n"
	    "  mode: single-task\n");
	if (cc->cc_idle_timeout != NULL) {
		buf_puts(b, "  idle_timeout: ");
		if (ci_quote(b, cc->cc_idle_timeout) == -1) {
			log_warnx("class %s: idleTimeout is not valid UTF-8",
			    cc->cc_name);
			return -1;
		}
		buf_puts(b, "\n");
	}
	buf_puts(b,
	    "  working_directory: \"/var/lib/circleci-runner/workdir\"\n"
	    "  cleanup_working_directory: true\n"
	    "  max_run_time: " CLOUDINIT_MAX_RUN_TIME "\n"
	    "logging:\n"
	    "  level: info\n"
	    "  format: text\n"
	    "  file: \"-\"\n");
	return 0;
}

/*
 * Appends one write_files item whose content becomes a literal block: text
 * of printable lines, each ending in a newline, the first one not starting
 * with a space (the block's indentation is taken from it).
 */
static void
ci_write_file(
    struct buf *b, const char *path, const char *perm, const char *content)
{
	const char *line, *nl;

	if (content[0] == ' ')
		fatalx("%s: %s: content starts with a space", __func__, path);
	buf_puts(b, "- path: ");
	buf_puts(b, path);
	buf_puts(b, "\n  owner: 'root:root'\n  permissions: '");
	buf_puts(b, perm);
	buf_puts(b, "'\n  content: |\n");
	for (line = content; *line != '\0'; line = nl + 1) {
		if ((nl = strchr(line, '\n')) == NULL)
			fatalx("%s: %s: content must end in a newline",
			    __func__, path);
		if (nl != line)
			buf_puts(b, CI_CONTENT_INDENT);
		buf_append(b, line, (size_t)(nl - line + 1));
	}
}

char *
cloudinit_userdata(const struct conf_class *cc, const char *api_url)
{
	struct buf conf = { NULL, 0, 0 }, ud = { NULL, 0, 0 };
	struct buf script = { NULL, 0, 0 };
	size_t i;

	if (cc->cc_token == NULL) {
		log_warnx("class %s: no runner token for the VM's user data",
		    cc->cc_name);
		return NULL;
	}
	if (ci_runner_config(&conf, cc, api_url) == -1)
		goto fail;

	buf_puts(&ud,
	    "#cloud-config\n"
	    "# runner-provisioner: CircleCI machine runner for ");
	if (ci_quote(&ud, cc->cc_name) == -1) {
		log_warnx("class name is not valid UTF-8");
		goto fail;
	}
	buf_puts(&ud, "\nwrite_files:\n");
	ci_write_file(
	    &ud, CLOUDINIT_STAGED_CONFIG_PATH, "0600", buf_str(&conf));
	for (i = 0; i < nitems(ci_boot_script); i++) {
		buf_puts(&script, ci_boot_script[i]);
		buf_puts(&script, "\n");
	}
	ci_write_file(
	    &ud, CLOUDINIT_BOOT_SCRIPT_PATH, "0700", buf_str(&script));
	buf_free(&script);
	buf_puts(&ud, "runcmd:\n- [" CLOUDINIT_BOOT_SCRIPT_PATH "]\n");

	buf_free(&conf);
	return buf_take(&ud);

fail:
	buf_free(&conf);
	buf_free(&ud);
	return NULL;
}
