/*
 * The cloud-init user data of a runner VM (DESIGN §6).
 *
 * The document stages the runner's configuration (it holds the token) as a
 * root-only file outside /etc/circleci-runner, so that installing the
 * package never meets a modified conffile, the boot script's settings, the
 * extra disks and the operator's userData (base64: it may hold any text),
 * and a boot script that mounts the disks, runs userData, installs the
 * package, sets up the accounts (the agent as circleci-runner, alone able
 * to read the token; jobs as circleci), moves the configuration into place
 * under a name chosen at boot, adds the systemd drop-in and starts the
 * runner.  The script is the same for every class: no configured value is
 * ever part of shell code, only of the data files it reads.
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

#include "base64.h"
#include "buf.h"
#include "cloudinit.h"
#include "conf.h"
#include "log.h"
#include "util.h"

#define CI_CONTENT_INDENT "    " /* content lines of a write_files item */

static int ci_utf8_next(const unsigned char *, uint32_t *);
static int ci_quote(struct buf *, const char *);
static int ci_runner_config(
    struct buf *, const struct conf_class *, const char *);
static void ci_settings(struct buf *, const struct conf_class *);
static void ci_disks(struct buf *, const struct conf_class *);
static void ci_write_file(
    struct buf *, const char *, const char *, const char *);
static void ci_write_file_b64(
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
	"# runner-provisioner: mounts the extra disks, runs the operator's",
	"# userData, installs the CircleCI machine runner, sets it up for a",
	"# single task and powers the VM off when the runner exits.",
	"set -uf",
	"umask 077",
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LC_ALL=C",
	"export PATH LC_ALL",
	"",
	"STAGE=" CLOUDINIT_STAGE_DIR,
	"STAGED=" CLOUDINIT_STAGED_CONFIG_PATH,
	"SETTINGS=" CLOUDINIT_SETTINGS_PATH,
	"DISKS=" CLOUDINIT_DISKS_PATH,
	"USERDATA=" CLOUDINIT_USERDATA_PATH,
	"CONFIG=" CLOUDINIT_RUNNER_CONFIG_PATH,
	"DROPIN=" CLOUDINIT_DROPIN_PATH,
	"SUDOERS=" CLOUDINIT_SUDOERS_PATH,
	"AGENT=" CONF_AGENT_USER,
	"JOBS=" CONF_JOB_USER,
	"REPO=https://packagecloud.io/install/repositories/circleci/runner",
	"PLACEHOLDER='  name: \"" CLOUDINIT_NAME_PLACEHOLDER "\"'",
	"SETUP=",
	"TMP=",
	"MNT=",
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
	"    if [ -n \"$MNT\" ]; then",
	"        umount \"$MNT\" 2>/dev/null || :",
	"        rmdir \"$MNT\" 2>/dev/null || :",
	"    fi",
	"    rm -f ${SETUP:+\"$SETUP\"} ${TMP:+\"$TMP\"} \"$USERDATA\"",
	"    systemctl --no-block poweroff || poweroff",
	"    exit 1",
	"}",
	"",
	"# Prints setting $1 of the staged settings file.",
	"setting() {",
	"    sed -n \"s/^$1=//p\" \"$SETTINGS\" | head -n 1",
	"}",
	"",
	"# Prints os-release(5) value $1 in lower case, without quotes.",
	"os_value() {",
	"    sed -n \"s/^$1=//p\" \"$OS_RELEASE\" | head -n 1 |",
	"        tr '[:upper:]' '[:lower:]' | tr -cd '[:alnum:]._ -'",
	"}",
	"",
	"[ -r \"$SETTINGS\" ] || die \"$SETTINGS is missing\"",
	"stop_timeout_s=$(setting stop_timeout_s)",
	"workdir=$(setting working_directory)",
	"case $stop_timeout_s in",
	"'' | *[!0-9]*) die \"$SETTINGS: bad stop_timeout_s\" ;;",
	"*) ;;",
	"esac",
	"case $workdir in",
	"/*) ;;",
	"*) die \"$SETTINGS: bad working_directory\" ;;",
	"esac",
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
	"# Installs packages $@ with the family's package manager.",
	"pm_install() {",
	"    if [ \"$PM\" = apt-get ]; then",
	"        apt-get update || return 1",
	"    fi",
	"    \"$PM\" install -y \"$@\"",
	"}",
	"",
	"# Packages and the operator's script expect the usual umask; what",
	"# holds the token is written under 077 below.",
	"umask 022",
	"",
	"# 2. Extra disks (emptyDiskMounts): a blank disk is formatted and",
	"# seeded with what already lives at its path, then mounted there.",
	"mount_disk() {",
	"    dev=/dev/disk/by-id/virtio-$1",
	"    n=0",
	"    while [ ! -b \"$dev\" ]; do",
	"        if [ \"$n\" -ge 30 ]; then",
	"            say \"no disk with serial $1 ($dev) after 30s\"",
	"            return 1",
	"        fi",
	"        sleep 1",
	"        n=$((n + 1))",
	"    done",
	"    if [ -z \"$(blkid -p -o value -s TYPE \"$dev\" 2>/dev/null)\" ]; then",
	"        if ! command -v \"mkfs.$2\" >/dev/null 2>&1; then",
	"            if [ \"$2\" = xfs ]; then",
	"                pm_install xfsprogs || return 1",
	"            else",
	"                pm_install e2fsprogs || return 1",
	"            fi",
	"        fi",
	"        if [ \"$2\" = xfs ]; then",
	"            mkfs.xfs -q -f \"$dev\" || return 1",
	"        else",
	"            \"mkfs.$2\" -q -F \"$dev\" || return 1",
	"        fi",
	"        if [ -d \"$3\" ] && [ -n \"$(ls -A \"$3\")\" ]; then",
	"            MNT=$(mktemp -d) || return 1",
	"            mount -t \"$2\" \"$dev\" \"$MNT\" || return 1",
	"            cp -a \"$3/.\" \"$MNT/\" || return 1",
	"            umount \"$MNT\" || return 1",
	"            rmdir \"$MNT\"",
	"            MNT=",
	"        fi",
	"    fi",
	"    mkdir -p \"$3\" || return 1",
	"    mount -t \"$2\" \"$dev\" \"$3\"",
	"}",
	"",
	"if [ -f \"$DISKS\" ]; then",
	"    while read -r serial fstype path; do",
	"        [ -n \"$serial\" ] || continue",
	"        mount_disk \"$serial\" \"$fstype\" \"$path\" ||",
	"            die \"cannot mount the disk with serial $serial at $path\"",
	"        say \"mounted the disk with serial $serial at $path\"",
	"    done <\"$DISKS\"",
	"    rm -f \"$DISKS\"",
	"fi",
	"",
	"# 3. The operator's userData, before the runner is installed: with",
	"# its own interpreter line, else bash.  It may hold secrets: it is",
	"# removed once it has run.",
	"if [ -f \"$USERDATA\" ]; then",
	"    say \"running userData\"",
	"    if [ \"$(head -c 2 \"$USERDATA\")\" = '#!' ]; then",
	"        \"$USERDATA\" </dev/null",
	"    else",
	"        bash \"$USERDATA\" </dev/null",
	"    fi",
	"    rc=$?",
	"    rm -f \"$USERDATA\"",
	"    if [ \"$rc\" -ne 0 ]; then",
	"        die \"userData failed (exit status $rc)\"",
	"    fi",
	"fi",
	"",
	"# 4. Install circleci-runner from packagecloud (and sudo, which steps",
	"# jobs down to their own user), with backoff.",
	"install_runner() {",
	"    if ! command -v curl >/dev/null 2>&1; then",
	"        pm_install curl ca-certificates || return 1",
	"    fi",
	"    if ! command -v sudo >/dev/null 2>&1; then",
	"        pm_install sudo || return 1",
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
	"# 5. Accounts: the agent runs as $AGENT, the only user that can read",
	"# the runner token; jobs step down to $JOBS (commandPrefix), a user",
	"# with a home and a login shell and no way into $AGENT's group.",
	"passwd_field() {",
	"    getent passwd \"$1\" | cut -d: -f\"$2\"",
	"}",
	"setup_accounts() {",
	"    if ! getent group \"$AGENT\" >/dev/null 2>&1; then",
	"        groupadd --system \"$AGENT\" || return 1",
	"    fi",
	"    if ! getent passwd \"$AGENT\" >/dev/null 2>&1; then",
	"        useradd --system --gid \"$AGENT\" \\",
	"            --home-dir /var/lib/circleci-runner \\",
	"            --shell /usr/sbin/nologin \"$AGENT\" || return 1",
	"    fi",
	"    if ! getent group \"$JOBS\" >/dev/null 2>&1; then",
	"        groupadd \"$JOBS\" || return 1",
	"    fi",
	"    if ! getent passwd \"$JOBS\" >/dev/null 2>&1; then",
	"        useradd --gid \"$JOBS\" --home-dir \"/home/$JOBS\" \\",
	"            --shell /bin/bash \"$JOBS\" || return 1",
	"    fi",
	"    # A package may have made it a system account: jobs need a home",
	"    # and a login shell (sudo -i).",
	"    if [ \"$(passwd_field \"$JOBS\" 6)\" != \"/home/$JOBS\" ] ||",
	"        ! grep -qx \"$(passwd_field \"$JOBS\" 7)\" /etc/shells; then",
	"        usermod --home \"/home/$JOBS\" --shell /bin/bash \"$JOBS\" ||",
	"            return 1",
	"    fi",
	"    if id -nG \"$JOBS\" | tr ' ' '\\n' | grep -qx \"$AGENT\"; then",
	"        gpasswd -d \"$JOBS\" \"$AGENT\" >/dev/null || return 1",
	"    fi",
	"    # The agent may enter the jobs' home and working directory.",
	"    usermod -a -G \"$JOBS\" \"$AGENT\" || return 1",
	"    mkdir -p \"/home/$JOBS\" /var/lib/circleci-runner || return 1",
	"    chown \"$JOBS:$JOBS\" \"/home/$JOBS\" || return 1",
	"    chmod 0750 \"/home/$JOBS\" || return 1",
	"    chown \"$AGENT:$AGENT\" /var/lib/circleci-runner || return 1",
	"    chmod 0750 /var/lib/circleci-runner || return 1",
	"    mkdir -p \"$workdir\" || return 1",
	"    chown \"$JOBS:$JOBS\" \"$workdir\" || return 1",
	"    chmod 0770 \"$workdir\"",
	"}",
	"setup_accounts || die \"cannot set up the users $AGENT and $JOBS\"",
	"",
	"# 6. The runner's configuration, readable by $AGENT alone, under a",
	"# name no runner has used before: the pool reuses VM names and SMBIOS",
	"# UUIDs.  The runner accepts letters, digits and . ( ) - _ in a name.",
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
	"# The agent must reach its file, whatever mode the package gave the",
	"# directory.",
	"if ! { mkdir -p \"${CONFIG%/*}\" && chmod 0755 \"${CONFIG%/*}\"; }; then",
	"    die \"cannot create ${CONFIG%/*}\"",
	"fi",
	"TMP=\"$CONFIG.runner-provisioner\"",
	"if ! { (umask 077 && sed \"s/^$PLACEHOLDER\\$/$name_line/\" \\",
	"    \"$STAGED\" >\"$TMP\") &&",
	"    grep -Fqx \"$name_line\" \"$TMP\" &&",
	"    chown \"root:$AGENT\" \"$TMP\" &&",
	"    chmod 0640 \"$TMP\" &&",
	"    mv -f \"$TMP\" \"$CONFIG\"; }; then",
	"    die \"cannot write $CONFIG\"",
	"fi",
	"TMP=",
	"",
	"# 7. The agent may start commands as $JOBS, nothing more.  (sudo",
	"# skips files with a \".\" in their name: the temporary one too.)",
	"mkdir -p \"${SUDOERS%/*}\" || die \"cannot create ${SUDOERS%/*}\"",
	"TMP=\"$SUDOERS.tmp\"",
	"if ! { {",
	"    echo '# runner-provisioner: the runner agent starts jobs as'",
	"    echo \"# $JOBS (runner.command_prefix).\"",
	"    echo \"Defaults:$AGENT !requiretty\"",
	"    echo \"$AGENT ALL=($JOBS) NOPASSWD:SETENV: ALL\"",
	"} >\"$TMP\" && chmod 0440 \"$TMP\"; }; then",
	"    die \"cannot write $SUDOERS\"",
	"fi",
	"if command -v visudo >/dev/null 2>&1 && ! visudo -cqf \"$TMP\"; then",
	"    die \"sudo rejects $SUDOERS\"",
	"fi",
	"mv -f \"$TMP\" \"$SUDOERS\" || die \"cannot write $SUDOERS\"",
	"TMP=",
	"rm -f \"$STAGED\" \"$SETTINGS\"",
	"rmdir \"$STAGE\" 2>/dev/null || :",
	"",
	"# 8. One task per VM, run by $AGENT: no restart, power off once the",
	"# runner has exited, and time for a draining runner to finish its job.",
	"if [ -x /usr/bin/systemctl ]; then",
	"    systemctl_bin=/usr/bin/systemctl",
	"elif [ -x /bin/systemctl ]; then",
	"    systemctl_bin=/bin/systemctl",
	"else",
	"    die \"systemctl not found: the guest must run systemd\"",
	"fi",
	"# Powering off needs root: \"+\" from systemd 231,",
	"# PermissionsStartOnly before (RHEL 7, Amazon Linux 2).",
	"sd_version=$(systemctl --version |",
	"    sed -n '1s/^systemd \\([0-9][0-9]*\\).*/\\1/p')",
	"prefix=+",
	"if [ -n \"$sd_version\" ] && [ \"$sd_version\" -lt 231 ]; then",
	"    prefix=",
	"fi",
	"mkdir -p \"${DROPIN%/*}\" || die \"cannot create ${DROPIN%/*}\"",
	"if ! {",
	"    echo '# runner-provisioner: one task, then power off.'",
	"    echo '[Service]'",
	"    echo \"User=$AGENT\"",
	"    echo \"Group=$AGENT\"",
	"    echo 'Restart=no'",
	"    [ -n \"$prefix\" ] || echo 'PermissionsStartOnly=true'",
	"    echo \"ExecStopPost=$prefix$systemctl_bin --no-block poweroff\"",
	"    echo \"TimeoutStopSec=$stop_timeout_s\"",
	"    echo 'StandardOutput=journal+console'",
	"    echo 'StandardError=journal+console'",
	"} >\"$DROPIN\"; then",
	"    die \"cannot write $DROPIN\"",
	"fi",
	"systemctl daemon-reload || die \"systemctl daemon-reload failed\"",
	"",
	"# 9. Start the runner last.",
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
 * Appends the runner's configuration file (research/circleci.md §3.2) with
 * the class's runner options.  Returns -1, with the offending key in a log
 * line, on a value that is not valid UTF-8.
 */
static int
ci_runner_config(
    struct buf *b, const struct conf_class *cc, const char *api_url)
{
	const struct conf_runner *r = &cc->cc_runner;
	size_t i;

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
	/* The loader admits only printable ASCII in these. */
	buf_puts(b, "  working_directory: ");
	ci_quote(b, r->cr_working_dir);
	buf_puts(b, "\n  cleanup_working_directory: true\n  max_run_time: ");
	ci_quote(b,
	    r->cr_max_run_time != NULL ? r->cr_max_run_time
	                               : CLOUDINIT_MAX_RUN_TIME);
	buf_puts(b, "\n  task_agent_directory: ");
	ci_quote(b, r->cr_task_agent_dir);
	buf_puts(b, "\n  command_prefix: [");
	for (i = 0; i < r->cr_nprefix; i++) {
		if (i > 0)
			buf_puts(b, ", ");
		if (ci_quote(b, r->cr_prefix[i]) == -1) {
			log_warnx("class %s: commandPrefix is not valid UTF-8",
			    cc->cc_name);
			return -1;
		}
	}
	buf_puts(b, "]\n");
	if (r->cr_home_ssh_keys)
		buf_puts(b, "  use_home_ssh_dir_for_checkout_keys: true\n");
	buf_puts(b,
	    "logging:\n"
	    "  level: info\n"
	    "  format: text\n"
	    "  file: \"-\"\n");
	return 0;
}

/* What the boot script reads: plain "key=value" lines, checked there. */
static void
ci_settings(struct buf *b, const struct conf_class *cc)
{
	uint64_t run_ms = cc->cc_runner.cr_max_run_time != NULL
	    ? cc->cc_runner.cr_max_run_time_ms
	    : CLOUDINIT_MAX_RUN_TIME_S * 1000ULL;

	buf_printf(b, "stop_timeout_s=%llu\n",
	    (unsigned long long)((run_ms + 999) / 1000 +
	        CLOUDINIT_STOP_MARGIN_S));
	buf_printf(b, "working_directory=%s\n", cc->cc_runner.cr_working_dir);
}

/* One "serial fstype path" line per extra disk. */
static void
ci_disks(struct buf *b, const struct conf_class *cc)
{
	size_t i;

	for (i = 0; i < cc->cc_ndisks; i++)
		buf_printf(b, "%s %s %s\n", cc->cc_disks[i].cd_serial,
		    cc->cc_disks[i].cd_fs_type, cc->cc_disks[i].cd_path);
}

/* A write_files item holding any bytes, base64 on one line. */
static void
ci_write_file_b64(
    struct buf *b, const char *path, const char *perm, const char *content)
{
	buf_puts(b, "- path: ");
	buf_puts(b, path);
	buf_puts(b, "\n  owner: 'root:root'\n  permissions: '");
	buf_puts(b, perm);
	buf_puts(b, "'\n  encoding: b64\n  content: ");
	b64_encode(b, content, strlen(content));
	buf_puts(b, "\n");
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
	struct buf aux = { NULL, 0, 0 };
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
	ci_settings(&aux, cc);
	ci_write_file(&ud, CLOUDINIT_SETTINGS_PATH, "0600", buf_str(&aux));
	buf_free(&aux);
	if (cc->cc_ndisks > 0) {
		ci_disks(&aux, cc);
		ci_write_file(
		    &ud, CLOUDINIT_DISKS_PATH, "0600", buf_str(&aux));
		buf_free(&aux);
	}
	if (cc->cc_user_data != NULL)
		ci_write_file_b64(
		    &ud, CLOUDINIT_USERDATA_PATH, "0700", cc->cc_user_data);
	for (i = 0; i < nitems(ci_boot_script); i++) {
		buf_puts(&aux, ci_boot_script[i]);
		buf_puts(&aux, "\n");
	}
	ci_write_file(&ud, CLOUDINIT_BOOT_SCRIPT_PATH, "0700", buf_str(&aux));
	buf_free(&aux);
	buf_puts(&ud, "runcmd:\n- [" CLOUDINIT_BOOT_SCRIPT_PATH "]\n");

	buf_free(&conf);
	return buf_take(&ud);

fail:
	buf_free(&conf);
	buf_free(&ud);
	return NULL;
}
