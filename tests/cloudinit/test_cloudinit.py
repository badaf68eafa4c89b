#!/usr/bin/python3
"""Runs the VM boot script from the generated user data for real, in a
sandbox, against stub package managers and a stub systemd.

Each run happens in fresh Linux namespaces (mount, UTS, IPC, network, PID):
  - /usr, /etc and /var are overlays whose upper layers are kept in the
    test's directory, so what the script changed is read back afterwards and
    the host's files are never touched; /home and /run are empty tmpfs;
  - /dev is a tmpfs holding null/zero/full/random/urandom and, as plain
    files the test reads, console and ttyS0; /tmp is a tmpfs;
  - curl, apt-get, dnf, yum, systemctl, sleep, poweroff (halt, reboot,
    shutdown) are replaced in /usr by one stub that records each call; the
    package managers' stub installs a fake circleci-runner package (group
    and user circleci, a default config, the binary);
  - write_files is applied as cloud-init would (extract.py apply), then
    runcmd runs with cloud-init's environment;
  - an extra disk, when a test asks for one, is a loop device on a sparse
    file, seen at /dev/disk/by-id/virtio-<serial> as KubeVirt's would be;
  - afterwards a test's own script may run in the same sandbox (after.py),
    e.g. to try the runner's account model with the real sudo.
No network: the network namespace has only a down loopback.  A real
poweroff cannot escape either: reboot(2) in a PID namespace ends only that
namespace, and the sandbox checks every power command resolves to the stub
before it runs the script.  The product script has no test hook: it sees
ordinary paths.

It needs root: replacing root-owned files through an overlay is not allowed
in an unprivileged user namespace.  Without root the tests skip; the unit
test's static checks (cloud-init schema, shellcheck) run anyway.
"""

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRACT = os.path.join(HERE, "extract.py")
BUILD = os.environ.get("RP_BUILD_DIR",
                       os.path.join(HERE, "..", "..", "build"))
EMITTER = os.path.join(BUILD, "tests", "cloudinit_test")

STAGED = "etc/runner-provisioner/circleci-runner-config.yaml"
SETTINGS = "etc/runner-provisioner/boot.conf"
SUDOERS = "etc/sudoers.d/runner-provisioner"
CONFIG = "etc/circleci-runner/circleci-runner-config.yaml"
DROPIN = "etc/systemd/system/circleci-runner.service.d/" \
    "10-runner-provisioner.conf"
SCRIPT = "usr/local/sbin/runner-provisioner-boot"
MARKER = "SeCrEtMaRkEr"
# Quotes, shell and YAML specials, a newline, and a line that looks like the
# runner.name line the boot script rewrites.
TOKEN = MARKER + "a\"b'c$d\\e: #x `id` $(id)\n  name: \"@RUNNER_NAME@\""
POWER = ("poweroff", "halt", "reboot", "shutdown")
# A token the configuration loader accepts (no blanks), still full of
# shell and YAML specials.
CONF_TOKEN = MARKER + "-a\"b'c$d\\e:#x`id`$(id)"

# Run in the sandbox after the boot script: what the runner agent and a job
# started through the runner's own command_prefix (its $PATH expanded, as
# the runner does) can do.
AFTER_ACCOUNTS = r"""
import grp, json, os, pwd, stat, subprocess, sys
import yaml

CONFIG = "/etc/circleci-runner/circleci-runner-config.yaml"
WORKDIR = "/home/circleci/workdir"
env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
       "HOME": "/var/lib/circleci-runner", "LANG": "C.UTF-8"}
with open(CONFIG) as f:
    prefix = yaml.safe_load(f)["runner"]["command_prefix"]
prefix = [w.replace("$PATH", env["PATH"]) for w in prefix]
agent = ["setpriv", "--reuid=circleci-runner", "--regid=circleci-runner",
         "--init-groups", "--"]


def run(argv):
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    return {"rc": p.returncode, "out": p.stdout.decode(errors="replace"),
            "err": p.stderr.decode(errors="replace")}


st = os.stat(WORKDIR)
out = {
    "agent_reads": run(agent + ["cat", CONFIG]),
    "job_whoami": run(agent + prefix + ["id", "-un"]),
    "job_groups": run(agent + prefix + ["id", "-Gn"]),
    "job_reads": run(agent + prefix + ["cat", CONFIG]),
    "job_root": run(agent + prefix + ["sudo", "-n", "true"]),
    "job_home": run(agent + prefix + ["sh", "-c", 'echo "$HOME"']),
    "job_workdir": run(agent + prefix + ["sh", "-c",
                                        "cd " + WORKDIR + " && touch f"]),
    "workdir_owner": [pwd.getpwuid(st.st_uid).pw_name,
                      grp.getgrgid(st.st_gid).gr_name,
                      oct(stat.S_IMODE(st.st_mode))],
}
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
"""

# The extra disk as the VM sees it once the boot script is done.
AFTER_DISK = r"""
import json, os, subprocess, sys

mounts = [l.split() for l in open("/proc/mounts")]
m = [l for l in mounts if l[1] == "/var/lib/cache"]
files = {}
for n in sorted(os.listdir("/var/lib/cache")):
    if n != "lost+found":
        with open(os.path.join("/var/lib/cache", n)) as f:
            files[n] = f.read()
out = {"mount": [m[-1][0], m[-1][2]] if m else None, "files": files,
       "type": subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE",
                               "/dev/disk/by-id/virtio-cache1"],
                              stdout=subprocess.PIPE, text=True).stdout}
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
"""

UBUNTU = """PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
ID=ubuntu
ID_LIKE=debian
"""
DEBIAN = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
ID=debian
VERSION_ID="12"
"""
ROCKY = """NAME="Rocky Linux"
VERSION="9.4 (Blue Onyx)"
ID="rocky"
ID_LIKE="rhel centos fedora"
VERSION_ID="9.4"
"""
CENTOS7 = """NAME="CentOS Linux"
VERSION="7 (Core)"
ID="centos"
ID_LIKE="rhel fedora"
VERSION_ID="7"
"""
AMAZON2023 = """NAME="Amazon Linux"
VERSION="2023"
ID="amzn"
ID_LIKE="fedora"
VERSION_ID="2023"
"""
MINT = """NAME="Linux Mint"
VERSION="22 (Wilma)"
ID=linuxmint
ID_LIKE="ubuntu debian"
"""
ORACLE = """NAME="Oracle Linux Server"
VERSION="9.4"
ID="ol"
ID_LIKE="fedora"
"""
ALPINE = """NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.20.3
PRETTY_NAME="Alpine Linux v3.20"
"""

# One stub for every faked command; it acts on its own name.
STUB = r"""#!/bin/sh
# runner-provisioner test stub
me=${0##*/}
printf '%s\n' "$me $*" >>"$STUB_LOG"
case $me in
curl)
    out=
    url=
    while [ $# -gt 0 ]; do
        case $1 in
        -o) out=$2; shift ;;
        --proto) shift ;;
        -*) ;;
        *) url=$1 ;;
        esac
        shift
    done
    if [ -n "${STUB_CURL_FAIL:-}" ]; then
        echo "curl: (6) Could not resolve host" >&2
        exit 6
    fi
    printf '#!/bin/bash\necho "setup-script %s" >>"$STUB_LOG"\n' "$url" >"$out"
    ;;
apt-get | dnf | yum)
    case " $* " in
    *" install "*" curl "*)
        cp "$STUB_DIR/stub" /usr/bin/curl
        ;;
    *" install "*" circleci-runner "*)
        n=$(cat "$STUB_DIR/installs" 2>/dev/null || echo 0)
        echo $((n + 1)) >"$STUB_DIR/installs"
        if [ "$n" -lt "${STUB_INSTALL_FAILS:-0}" ]; then
            echo "E: Unable to locate package circleci-runner" >&2
            exit 100
        fi
        # As a package would: a system account, no login shell.
        getent group circleci >/dev/null || groupadd --system circleci
        getent passwd circleci >/dev/null ||
            useradd --system --gid circleci \
                --home-dir /var/lib/circleci-runner --shell /bin/false circleci
        mkdir -p /etc/circleci-runner
        printf 'api:\n  auth_token: << AUTH_TOKEN >>\n' \
            >/etc/circleci-runner/circleci-runner-config.yaml
        chown root:circleci /etc/circleci-runner/circleci-runner-config.yaml
        chmod 0640 /etc/circleci-runner/circleci-runner-config.yaml
        cp "$STUB_DIR/stub" /usr/bin/circleci-runner
        ;;
    esac
    ;;
systemctl)
    if [ "${1:-}" = --version ]; then
        echo "systemd $STUB_SYSTEMD_VERSION (stub)"
        echo "+PAM +AUDIT"
    fi
    ;;
esac
exit 0
"""

# Builds the sandbox inside the new namespaces (we are its PID 1), then runs
# runcmd as cloud-init would.  $1 is the test's directory.
INNER = r"""set -eu
R=$1
for d in usr etc var; do
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$R/ovl/$d-up,workdir=$R/ovl/$d-work" "/$d"
done
mount -t tmpfs -o mode=0755 tmpfs /home
mount -t tmpfs -o mode=0755 tmpfs /run
LOOP=
if [ -n "$SBX_DISK" ]; then
    LOOP=$(losetup -f --show "$R/disk.img")
    echo "$LOOP" >"$R/out/loop"
    DEVNUM=$(stat -c '%t %T' "$LOOP")
fi
mount --rbind /dev "$R/hostdev"
mount -t tmpfs -o mode=0755 tmpfs /dev
# The test's directory may be under /tmp: keep it reachable from our /dev.
mkdir /dev/.sandbox
mount --rbind "$R" /dev/.sandbox
R=/dev/.sandbox
for n in null zero full random urandom; do
    : >"/dev/$n"
    mount --bind "$R/hostdev/$n" "/dev/$n"
done
for n in console ttyS0; do
    : >"/dev/$n"
    mount --bind "$R/out/$n" "/dev/$n"
done
umount -l "$R/hostdev"
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
if [ -n "$LOOP" ]; then
    # shellcheck disable=SC2086
    set -- $DEVNUM
    mkdir -p /dev/disk/by-id
    mknod "/dev/disk/by-id/virtio-$SBX_DISK" b "$((0x$1))" "$((0x$2))"
    mknod /dev/sbx-loop b "$((0x$1))" "$((0x$2))"
fi
mount -t tmpfs -o mode=1777 tmpfs /tmp
# Any bytes, as a DHCP server or a pool might set them.
/usr/bin/python3 -c 'import socket, sys; socket.sethostname(sys.argv[1])' \
    "$SBX_HOSTNAME"

for c in $SBX_STUBS $SBX_REMOVE; do
    rm -f "/usr/bin/$c" "/usr/sbin/$c" "/usr/local/bin/$c" "/usr/local/sbin/$c"
done
for c in $SBX_STUBS; do
    cp "$R/stub/stub" "/usr/bin/$c"
done
if [ -n "$SBX_OS_RELEASE" ]; then
    rm -f /etc/os-release /usr/lib/os-release
    cp "$R/os-release" /etc/os-release
else
    rm -f /etc/os-release /usr/lib/os-release
fi

# The script must reach nothing real that powers off or talks to systemd.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for c in systemctl $SBX_POWER; do
    p=$(command -v "$c") || continue
    grep -q '^# runner-provisioner test stub$' "$p" || {
        echo "sandbox: $c is $p, not the stub" >&2
        exit 97
    }
done

/usr/bin/python3 "$R/extract.py" apply "$R/userdata.yaml" "$R/runcmd.sh"
if [ -f "$R/before.sh" ]; then
    /bin/sh "$R/before.sh"
fi
set +e
env -i PATH="$PATH" HOME=/root LANG=C.UTF-8 \
    STUB_LOG="$R/out/calls" STUB_DIR="$R/stub" \
    STUB_SYSTEMD_VERSION="$STUB_SYSTEMD_VERSION" \
    STUB_INSTALL_FAILS="$STUB_INSTALL_FAILS" \
    STUB_CURL_FAIL="$STUB_CURL_FAIL" \
    /bin/sh "$R/runcmd.sh" >"$R/out/stdout" 2>"$R/out/stderr"
echo $? >"$R/out/rc"
ls -A /tmp >"$R/out/tmp-left"
if [ -f "$R/after.py" ]; then
    /usr/bin/python3 "$R/after.py" "$R/out/after.json" >"$R/out/after" 2>&1
fi
if [ -n "$LOOP" ]; then
    if grep -q " $SBX_DISK_PATH " /proc/mounts; then
        umount "$SBX_DISK_PATH"
    fi
    losetup -d /dev/sbx-loop
fi
"""


def emit(token=TOKEN, api_url="https://runner.circleci.com", idle="10m",
         name="my-org/linux"):
    argv = [EMITTER, "--emit", name, token, api_url]
    if idle is not None:
        argv.append(idle)
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE,
                          timeout=30).stdout


def emit_config(workdir, config, secrets=None,
                api_url="https://runner.circleci.com"):
    """The user data of the first class of a configuration (as YAML text),
    through the daemon's own loader."""
    cpath = os.path.join(workdir, "config.yaml")
    spath = os.path.join(workdir, "secrets.yaml")
    with open(cpath, "w") as f:
        f.write(config)
    if secrets is not None:
        with open(spath, "w") as f:
            f.write(secrets)
    p = subprocess.run([EMITTER, "--emit-config", cpath,
                        spath if secrets is not None else "-", api_url],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if p.returncode != 0:
        raise AssertionError(p.stderr.decode())
    return p.stdout


class Run:
    """One execution of the boot script in a fresh sandbox."""

    def __init__(self, workdir, userdata, os_release=UBUNTU,
                 hostname="rp-my-org-linux-x7k2p", stubs=(),
                 remove=(), systemd_version=252, install_fails=0,
                 curl_fail=False, disk=None, before=None, after=None):
        self.dir = tempfile.mkdtemp(prefix="run-", dir=workdir)
        for d in ("ovl/usr-up", "ovl/usr-work", "ovl/etc-up",
                  "ovl/etc-work", "ovl/var-up", "ovl/var-work", "hostdev",
                  "out", "stub"):
            os.makedirs(os.path.join(self.dir, d))
        if disk is not None:  # (serial, path): a blank 64 MiB disk
            with open(os.path.join(self.dir, "disk.img"), "wb") as f:
                f.truncate(64 << 20)
        for name, text in (("before.sh", before), ("after.py", after)):
            if text is not None:
                with open(os.path.join(self.dir, name), "w") as f:
                    f.write(text)
        for f in ("console", "ttyS0", "calls"):
            open(os.path.join(self.dir, "out", f), "w").close()
        with open(os.path.join(self.dir, "userdata.yaml"), "wb") as f:
            f.write(userdata)
        if os_release is not None:
            with open(os.path.join(self.dir, "os-release"), "w") as f:
                f.write(os_release)
        shutil.copy(EXTRACT, os.path.join(self.dir, "extract.py"))
        with open(os.path.join(self.dir, "stub", "stub"), "w") as f:
            f.write(STUB)
        os.chmod(os.path.join(self.dir, "stub", "stub"), 0o755)

        all_stubs = ("curl", "apt-get", "systemctl", "sleep") + POWER
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "SBX_HOSTNAME": hostname,
            "SBX_STUBS": " ".join(c for c in all_stubs + tuple(stubs)
                                  if c not in remove),
            "SBX_REMOVE": " ".join(remove),
            "SBX_POWER": " ".join(POWER),
            "SBX_OS_RELEASE": "1" if os_release is not None else "",
            "STUB_SYSTEMD_VERSION": str(systemd_version),
            "STUB_INSTALL_FAILS": str(install_fails),
            "STUB_CURL_FAIL": "1" if curl_fail else "",
            "SBX_DISK": disk[0] if disk else "",
            "SBX_DISK_PATH": disk[1] if disk else "",
        }
        # --kill-child: a timeout kills unshare, and with it the namespace.
        argv = ["unshare", "--mount", "--uts", "--ipc", "--net", "--pid",
                "--fork", "--kill-child", "--mount-proc",
                "--propagation", "private"]
        argv += ["/bin/sh", "-c", INNER, "sandbox", self.dir]
        try:
            p = subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=60)
        except subprocess.TimeoutExpired as e:
            raise AssertionError("the boot script did not finish in 60 s; "
                                 f"calls so far: {self.out('calls')[-2000:]}"
                                 ) from e
        finally:
            self._detach_loop()
        if p.returncode != 0:
            raise AssertionError(
                f"sandbox failed ({p.returncode}): "
                f"{p.stderr.decode(errors='replace')}")
        self.rc = int(self.out("rc"))
        self.calls = self.out("calls").splitlines()
        self.stderr = self.out("stderr")

    def _detach_loop(self):
        """Should the sandbox die early, its loop device must not stay."""
        img = os.path.join(self.dir, "disk.img")
        if not os.path.exists(img):
            return
        p = subprocess.run(["losetup", "-j", img], stdout=subprocess.PIPE,
                           text=True, timeout=30)
        for line in p.stdout.splitlines():
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]],
                           timeout=30)

    def after(self):
        """What after.py wrote (a JSON object)."""
        try:
            with open(os.path.join(self.dir, "out", "after.json")) as f:
                return json.load(f)
        except FileNotFoundError:
            raise AssertionError("after.py wrote nothing: " +
                                 self.out("after")) from None

    def out(self, name):
        with open(os.path.join(self.dir, "out", name),
                  encoding="utf-8", errors="replace") as f:
            return f.read()

    def upper(self, rel):
        """Path of rel in the overlay's upper layer (what the run wrote)."""
        top = rel.split("/", 1)[0]
        return os.path.join(self.dir, "ovl", top + "-up",
                            rel.split("/", 1)[1])

    def read(self, rel):
        with open(self.upper(rel), encoding="ascii") as f:
            return f.read()

    def exists(self, rel):
        """True if rel exists after the run (whiteouts mean deleted)."""
        try:
            st = os.lstat(self.upper(rel))
        except FileNotFoundError:
            return False
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)

    def names(self):
        return [c.split(" ", 1)[0] for c in self.calls]

    def account(self, db, name):
        """The fields of name in /etc/passwd or /etc/group after the run."""
        with open(self.upper("etc/" + db), encoding="utf-8") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if fields[0] == name:
                    return fields
        return None

    def everything_printed(self):
        return "".join(self.out(n) for n in
                       ("calls", "stdout", "stderr", "console", "ttyS0"))


def sandbox_problem():
    """Why the sandbox cannot run here, or None."""
    if shutil.which("unshare") is None:
        return "unshare not found"
    if not os.access(EMITTER, os.X_OK):
        return f"{EMITTER} not built"
    return None


class BootScriptTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("the sandbox needs root")
        problem = sandbox_problem()
        if problem is not None:
            raise AssertionError(f"cannot run the sandbox: {problem}")
        base = os.path.join(BUILD, "tests")
        if not os.access(base, os.W_OK):
            base = None
        cls.work = tempfile.mkdtemp(prefix="cloudinit-sandbox-", dir=base)
        cls.userdata = emit()
        doc = yaml.safe_load(cls.userdata)
        cls.staged = [i for i in doc["write_files"]
                      if i["path"] == "/" + STAGED][0]["content"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work)

    def run_boot(self, **kw):
        kw.setdefault("userdata", self.userdata)
        return Run(self.work, **kw)

    def assert_not_leaked(self, run):
        self.assertNotIn(MARKER, run.everything_printed())

    def assert_powered_off(self, run, why):
        self.assertEqual(run.rc, 1, run.stderr)
        self.assertEqual(run.calls[-1], "systemctl --no-block poweroff")
        for tty in ("console", "ttyS0"):
            text = run.out(tty)
            self.assertRegex(text, r"^runner-provisioner: error: .*"
                             r"; powering off\n$")
            self.assertIn(why, text)
        self.assertIn(why, run.stderr)
        self.assertNotIn("systemctl enable --now circleci-runner",
                         run.calls)
        self.assertFalse(run.exists(CONFIG + ".runner-provisioner"))
        self.assertEqual(run.out("tmp-left"), "")
        self.assert_not_leaked(run)

    def assert_installed(self, run, hostname="rp-my-org-linux-x7k2p",
                         old_systemd=False, stop_timeout_s=18300,
                         token=TOKEN, idle="10m",
                         workdir="/home/circleci/workdir", max_run="5h"):
        """The runner configured and started: steps 5 to 9."""
        self.assertEqual(run.rc, 0, run.stderr)
        self.assertEqual(run.out("console") + run.out("ttyS0"), "")
        self.assertEqual(run.calls[-4:], [
            "systemctl stop circleci-runner",
            "systemctl --version",
            "systemctl daemon-reload",
            "systemctl enable --now circleci-runner",
        ])
        self.assertNotIn("poweroff", run.names())
        self.assertNotIn("systemctl --no-block poweroff", run.calls)

        # Accounts: the agent, a system user; jobs' circleci has a home
        # and a login shell (the package made it a system user); neither
        # is in the other's group but the agent may enter the jobs' home.
        agent = run.account("passwd", "circleci-runner")
        jobs = run.account("passwd", "circleci")
        self.assertEqual(agent[5:], ["/var/lib/circleci-runner",
                                     "/usr/sbin/nologin"])
        self.assertEqual(jobs[5:], ["/home/circleci", "/bin/bash"])
        agent_group = run.account("group", "circleci-runner")
        self.assertEqual(agent_group[3], "")
        self.assertEqual(run.account("group", "circleci")[3],
                         "circleci-runner")

        # The staged file became the runner's, with a fresh name, readable
        # by the agent's group alone.
        st = os.stat(run.upper(CONFIG))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual((st.st_uid, st.st_gid), (0, int(agent_group[2])))
        text = run.read(CONFIG)
        conf = yaml.safe_load(text)
        self.assertEqual(conf["api"]["auth_token"], token)
        name = conf["runner"]["name"]
        self.assertRegex(name, r"^[A-Za-z0-9.()_-]+$")
        self.assertRegex(name, "^" + re.escape(hostname) + "-[0-9a-f]{12}$")
        self.assertEqual(conf["runner"]["mode"], "single-task")
        self.assertEqual(conf["runner"].get("idle_timeout"), idle)
        self.assertEqual(conf["runner"]["max_run_time"], max_run)
        self.assertEqual(conf["runner"]["command_prefix"],
                         ["sudo", "PATH=$PATH", "-niHu", "circleci", "--"])
        self.assertEqual(conf["runner"]["working_directory"], workdir)
        self.assertNotIn("url", conf["api"])
        # Nothing else changed: the name line is the only difference.
        if token == TOKEN:
            self.assertEqual(text, self.staged.replace(
                '  name: "@RUNNER_NAME@"\n', f'  name: "{name}"\n', 1))
        self.assertFalse(run.exists(STAGED))
        self.assertFalse(run.exists(SETTINGS))
        self.assertFalse(run.exists(os.path.dirname(STAGED)))
        self.assertEqual(os.listdir(os.path.dirname(run.upper(CONFIG))),
                         [os.path.basename(CONFIG)])
        self.assertEqual(run.out("tmp-left"), "")

        # The agent may run commands as circleci, nothing more.
        st = os.stat(run.upper(SUDOERS))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o440)
        self.assertEqual((st.st_uid, st.st_gid), (0, 0))
        self.assertEqual(run.read(SUDOERS).splitlines()[-2:], [
            "Defaults:circleci-runner !requiretty",
            "circleci-runner ALL=(circleci) NOPASSWD:SETENV: ALL"])
        self.assertFalse(run.exists(SUDOERS + ".tmp"))

        # The drop-in: run by the agent, one task, then power off.
        st = os.stat(run.upper(DROPIN))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o644)
        want = ["# runner-provisioner: one task, then power off.",
                "[Service]", "User=circleci-runner", "Group=circleci-runner",
                "Restart=no"]
        if old_systemd:
            want.append("PermissionsStartOnly=true")
        want += [
            "ExecStopPost=" + ("" if old_systemd else "+") +
            "/usr/bin/systemctl --no-block poweroff",
            "TimeoutStopSec=" + str(stop_timeout_s),
            "StandardOutput=journal+console",
            "StandardError=journal+console",
        ]
        self.assertEqual(run.read(DROPIN), "\n".join(want) + "\n")
        self.assertEqual(
            stat.S_IMODE(os.stat(run.upper(SCRIPT)).st_mode), 0o700)
        self.assertIn(f"runner-provisioner: starting circleci-runner as "
                      f"{name}\n", run.stderr)
        self.assert_not_leaked(run)
        return name

    def test_ubuntu_installs_with_apt(self):
        run = self.run_boot(stubs=("dnf", "yum"))
        self.assertEqual(run.calls[:4], [
            "curl -fsSL --proto =https -o " + run.calls[0].split()[5] +
            " https://packagecloud.io/install/repositories/circleci/"
            "runner/script.deb.sh?any=true",
            "setup-script https://packagecloud.io/install/repositories/"
            "circleci/runner/script.deb.sh?any=true",
            "apt-get install -y -o Dpkg::Options::=--force-confold "
            "circleci-runner",
            "systemctl stop circleci-runner",
        ])
        self.assertNotIn("dnf", run.names())
        self.assertNotIn("yum", run.names())
        self.assertNotIn("sleep", run.names())
        self.assert_installed(run)

    def test_names_are_unique_per_boot(self):
        a = self.assert_installed(self.run_boot())
        b = self.assert_installed(self.run_boot())
        self.assertNotEqual(a, b)

    def test_hostname_is_cleaned_for_the_runner(self):
        run = self.run_boot(hostname="Pool_VM(1)!x.example.com")
        self.assert_installed(run, hostname="Pool_VM(1)-x")

    def test_debian_without_curl_installs_curl_first(self):
        run = self.run_boot(os_release=DEBIAN, remove=("curl",))
        self.assertEqual(run.calls[:3], [
            "apt-get update",
            "apt-get install -y curl ca-certificates",
            "curl -fsSL --proto =https -o " + run.calls[2].split()[5] +
            " https://packagecloud.io/install/repositories/circleci/"
            "runner/script.deb.sh?any=true",
        ])
        self.assert_installed(run)

    def test_rocky_installs_with_dnf(self):
        run = self.run_boot(os_release=ROCKY, stubs=("dnf", "yum"))
        self.assertIn("setup-script https://packagecloud.io/install/"
                      "repositories/circleci/runner/script.rpm.sh?any=true",
                      run.calls)
        self.assertIn("dnf install -y circleci-runner", run.calls)
        self.assertNotIn("yum", run.names())
        self.assertNotIn("apt-get", run.names())
        self.assert_installed(run)

    def test_amazon_linux_2023_installs_with_dnf(self):
        run = self.run_boot(os_release=AMAZON2023, stubs=("dnf",))
        self.assertIn("dnf install -y circleci-runner", run.calls)
        self.assert_installed(run)

    def test_centos7_uses_yum_and_old_systemd_drop_in(self):
        run = self.run_boot(os_release=CENTOS7, stubs=("yum",),
                            remove=("dnf",), systemd_version=219)
        self.assertIn("yum install -y circleci-runner", run.calls)
        self.assertNotIn("dnf", run.names())
        self.assert_installed(run, old_systemd=True)

    def test_derivatives_go_by_id_like(self):
        run = self.run_boot(os_release=MINT, stubs=("dnf",))
        self.assertIn("apt-get install -y -o Dpkg::Options::=--force-confold"
                      " circleci-runner", run.calls)
        self.assertIn("runner-provisioner: detected linuxmint: installing "
                      "with apt-get\n", run.stderr)
        self.assert_installed(run)
        run = self.run_boot(os_release=ORACLE, stubs=("dnf",))
        self.assertIn("dnf install -y circleci-runner", run.calls)
        self.assertNotIn("apt-get", run.names())
        self.assert_installed(run)

    def test_alpine_is_refused_on_the_console(self):
        run = self.run_boot(os_release=ALPINE)
        self.assert_powered_off(run, "unsupported operating system "
                                "ID=alpine ID_LIKE=none")
        self.assertEqual(run.calls, ["systemctl --no-block poweroff"])

    def test_no_os_release_is_refused(self):
        run = self.run_boot(os_release=None)
        self.assert_powered_off(run, "cannot read /etc/os-release")
        self.assertEqual(run.calls, ["systemctl --no-block poweroff"])

    def test_install_failing_five_times_powers_off(self):
        run = self.run_boot(install_fails=1000)
        install = ("apt-get install -y -o Dpkg::Options::=--force-confold "
                   "circleci-runner")
        self.assertEqual(run.calls.count(install), 5)
        self.assertEqual([c for c in run.calls if c.startswith("sleep")],
                         ["sleep 5", "sleep 10", "sleep 20", "sleep 40"])
        self.assert_powered_off(run, "cannot install circleci-runner with "
                                "apt-get after 5 attempts")
        self.assertFalse(run.exists(CONFIG))
        self.assertFalse(run.exists(DROPIN))

    def test_download_failing_five_times_powers_off(self):
        run = self.run_boot(os_release=ROCKY, stubs=("dnf",),
                            curl_fail=True)
        self.assertEqual(run.names().count("curl"), 5)
        self.assertNotIn("dnf install -y circleci-runner", run.calls)
        self.assert_powered_off(run, "cannot install circleci-runner with "
                                "dnf after 5 attempts")

    def test_install_recovers_after_two_failures(self):
        run = self.run_boot(install_fails=2)
        self.assertEqual([c for c in run.calls if c.startswith("sleep")],
                         ["sleep 5", "sleep 10"])
        self.assertIn("installing circleci-runner failed (attempt 2 of 5), "
                      "retrying in 10s", run.stderr)
        self.assert_installed(run)

    def test_server_url_reaches_the_runner(self):
        ud = emit(api_url="https://circleci.example.com", idle=None)
        run = self.run_boot(userdata=ud)
        self.assertEqual(run.rc, 0, run.stderr)
        conf = yaml.safe_load(run.read(CONFIG))
        self.assertEqual(conf["api"], {"auth_token": TOKEN,
                                       "url": "https://circleci.example.com"})
        self.assertNotIn("idle_timeout", conf["runner"])
        self.assert_not_leaked(run)

    # -- the 0.1.2 configuration, from the daemon's loader to the VM ------

    def config_userdata(self, extra="", defaults="", secrets_extra=""):
        """User data for a class written in the 0.1.2 form: the token in
        secrets.yaml, extra lines (indented 4) in the class's entry."""
        d = tempfile.mkdtemp(prefix="conf-", dir=self.work)
        config = ("resourceClassDefaults:\n" + defaults if defaults else
                  "") + 'resourceClasses:\n  "my-org/linux":\n' + \
            (extra if extra else "    {}\n")
        if not extra:
            config = config.replace('linux":\n    {}', 'linux": {}')
        secrets = ('resourceClasses:\n  "my-org/linux":\n'
                   f"    token: {json.dumps(CONF_TOKEN)}\n" + secrets_extra)
        return emit_config(d, config, secrets)

    def test_jobs_cannot_read_the_token(self):
        """The account model: the agent (circleci-runner) reads the token;
        a command run through the configured prefix runs as circleci and
        can neither read it nor become root."""
        ud = self.config_userdata(defaults="  scaling: {minReplicas: 0}\n")
        run = self.run_boot(userdata=ud, after=AFTER_ACCOUNTS)
        self.assert_installed(run, token=CONF_TOKEN, idle=None)
        r = run.after()
        self.assertEqual(r["agent_reads"]["rc"], 0, r["agent_reads"])
        self.assertIn(MARKER, r["agent_reads"]["out"])
        self.assertEqual(r["job_whoami"], {"rc": 0, "out": "circleci\n",
                                           "err": r["job_whoami"]["err"]})
        self.assertNotIn("circleci-runner", r["job_groups"]["out"].split())
        self.assertNotEqual(r["job_reads"]["rc"], 0)
        self.assertIn("Permission denied", r["job_reads"]["err"])
        self.assertNotIn(MARKER, r["job_reads"]["out"] +
                         r["job_reads"]["err"])
        self.assertNotEqual(r["job_root"]["rc"], 0, r["job_root"])
        self.assertEqual(r["job_home"]["out"], "/home/circleci\n")
        # Jobs can work in their directory.
        self.assertEqual(r["job_workdir"]["rc"], 0, r["job_workdir"])
        self.assertEqual(r["workdir_owner"], ["circleci", "circleci",
                                              "0o770"])

    def test_without_step_down_jobs_can_read_the_token(self):
        """The check above has teeth: an empty commandPrefix runs jobs as
        the agent, and then they read the token."""
        ud = self.config_userdata(
            extra="    runner:\n      commandPrefix: []\n")
        run = self.run_boot(userdata=ud, after=AFTER_ACCOUNTS)
        self.assertEqual(run.rc, 0, run.stderr)
        r = run.after()
        self.assertEqual(r["job_whoami"]["out"], "circleci-runner\n")
        self.assertEqual(r["job_reads"]["rc"], 0)
        self.assertIn(MARKER, r["job_reads"]["out"])

    def test_user_data_runs_before_the_runner_is_installed(self):
        ud = self.config_userdata(secrets_extra=(
            "    userData: |\n"
            "      echo \"userdata $(id -un) $(umask)\" >>\"$STUB_LOG\"\n"
            "      echo pre-installed >/etc/from-user-data\n"))
        run = self.run_boot(userdata=ud)
        self.assert_installed(run, token=CONF_TOKEN, idle=None)
        self.assertEqual(run.calls[0], "userdata root 0022")
        self.assertEqual(run.read("etc/from-user-data"), "pre-installed\n")
        self.assertIn("runner-provisioner: running userData\n", run.stderr)
        # It may hold secrets: gone once it ran.
        self.assertFalse(run.exists("etc/runner-provisioner/user-data"))

    def test_user_data_with_its_own_interpreter(self):
        ud = self.config_userdata(secrets_extra=(
            "    userData: |\n"
            "      #!/usr/bin/python3\n"
            "      import os\n"
            "      open(os.environ['STUB_LOG'], 'a').write('python\\n')\n"))
        run = self.run_boot(userdata=ud)
        self.assertEqual(run.rc, 0, run.stderr)
        self.assertEqual(run.calls[0], "python")

    def test_failing_user_data_powers_off(self):
        ud = self.config_userdata(secrets_extra=(
            "    userData: \"echo trying; exit 3\"\n"))
        run = self.run_boot(userdata=ud)
        self.assert_powered_off(run, "userData failed (exit status 3)")
        self.assertNotIn("curl", run.names())
        self.assertFalse(run.exists("etc/runner-provisioner/user-data"))

    def test_runner_options_reach_the_vm(self):
        ud = self.config_userdata(extra=(
            "    runner:\n"
            "      workingDirectory: /var/lib/ci/work\n"
            "      taskAgentDirectory: /var/tmp/agent\n"
            "      maxRunTime: 1h\n"
            "      useHomeSSHDirForCheckoutKeys: true\n"))
        run = self.run_boot(userdata=ud, after=AFTER_ACCOUNTS.replace(
            "/home/circleci/workdir", "/var/lib/ci/work"))
        self.assert_installed(run, token=CONF_TOKEN, idle=None,
                              stop_timeout_s=3900,
                              workdir="/var/lib/ci/work", max_run="1h")
        conf = yaml.safe_load(run.read(CONFIG))
        self.assertEqual(conf["runner"]["task_agent_directory"],
                         "/var/tmp/agent")
        self.assertIs(conf["runner"]["use_home_ssh_dir_for_checkout_keys"],
                      True)
        r = run.after()
        self.assertEqual(r["workdir_owner"], ["circleci", "circleci",
                                              "0o770"])
        self.assertEqual(r["job_workdir"]["rc"], 0, r["job_workdir"])

    DISK_SPEC = (
        "    emptyDiskMounts:\n"
        "      - serial: cache1\n"
        "        path: /var/lib/cache\n"
        "    spec:\n"
        "      domain:\n"
        "        devices:\n"
        "          disks:\n"
        "            - {name: disk, disk: {bus: virtio}}\n"
        "            - {name: c, serial: cache1, disk: {bus: virtio}}\n"
        "      volumes:\n"
        "        - {name: disk, containerDisk: {image: \"x/y:1\"}}\n"
        "        - {name: c, emptyDisk: {capacity: 1Gi}}\n")

    def test_empty_disk_is_formatted_seeded_and_mounted(self):
        ud = self.config_userdata(extra=self.DISK_SPEC)
        run = self.run_boot(
            userdata=ud, disk=("cache1", "/var/lib/cache"),
            before="mkdir -p /var/lib/cache && "
                   "echo seed >/var/lib/cache/seed.txt\n",
            after=AFTER_DISK)
        self.assert_installed(run, token=CONF_TOKEN, idle=None)
        r = run.after()
        self.assertEqual(r["type"], "ext4\n")
        self.assertEqual(r["mount"], ["/dev/disk/by-id/virtio-cache1",
                                      "ext4"])
        self.assertEqual(r["files"], {"seed.txt": "seed\n"})
        self.assertIn("runner-provisioner: mounted the disk with serial "
                      "cache1 at /var/lib/cache\n", run.stderr)
        self.assertFalse(run.exists("etc/runner-provisioner/disks"))

    def test_disk_with_a_filesystem_is_mounted_as_it_is(self):
        ud = self.config_userdata(extra=self.DISK_SPEC)
        run = self.run_boot(
            userdata=ud, disk=("cache1", "/var/lib/cache"),
            before="mkdir -p /var/lib/cache /tmp/m && "
                   "echo seed >/var/lib/cache/seed.txt && "
                   "mkfs.ext2 -q -F /dev/disk/by-id/virtio-cache1 && "
                   "mount /dev/disk/by-id/virtio-cache1 /tmp/m && "
                   "echo old >/tmp/m/old.txt && umount /tmp/m && "
                   "rmdir /tmp/m\n",
            after=AFTER_DISK)
        self.assertEqual(run.rc, 0, run.stderr)
        r = run.after()
        self.assertEqual(r["type"], "ext2\n")
        self.assertEqual(r["files"], {"old.txt": "old\n"})

    def test_missing_disk_powers_off(self):
        ud = self.config_userdata(extra=self.DISK_SPEC)
        run = self.run_boot(userdata=ud)
        self.assertEqual(run.names().count("sleep"), 30)
        self.assert_powered_off(run, "cannot mount the disk with serial "
                                "cache1 at /var/lib/cache")
        self.assertNotIn("curl", run.names())


if __name__ == "__main__":
    unittest.main(verbosity=2)
