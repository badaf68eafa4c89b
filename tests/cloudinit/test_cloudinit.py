#!/usr/bin/python3
"""Runs the VM boot script from the generated user data for real, in a
sandbox, against stub package managers and a stub systemd.

Each run happens in fresh Linux namespaces (mount, UTS, IPC, network, PID):
  - /usr and /etc are overlays whose upper layers are kept in the test's
    directory, so what the script changed is read back afterwards and the
    host's files are never touched;
  - /dev is a tmpfs holding null/zero/full/random/urandom and, as plain
    files the test reads, console and ttyS0; /tmp is a tmpfs;
  - curl, apt-get, dnf, yum, systemctl, sleep, poweroff (halt, reboot,
    shutdown) are replaced in /usr by one stub that records each call; the
    package managers' stub installs a fake circleci-runner package (group
    and user circleci, a default config, the binary);
  - write_files is applied as cloud-init would (extract.py apply), then
    runcmd runs with cloud-init's environment.
No network: the network namespace has only a down loopback.  A real
poweroff cannot escape either: reboot(2) in a PID namespace ends only that
namespace, and the sandbox checks every power command resolves to the stub
before it runs the script.  The product script has no test hook: it sees
ordinary paths.

It needs root: replacing root-owned files through an overlay is not allowed
in an unprivileged user namespace.  Without root the tests skip; the unit
test's static checks (cloud-init schema, shellcheck) run anyway.
"""

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
CONFIG = "etc/circleci-runner/circleci-runner-config.yaml"
DROPIN = "etc/systemd/system/circleci-runner.service.d/" \
    "10-runner-provisioner.conf"
SCRIPT = "usr/local/sbin/runner-provisioner-boot"
MARKER = "SeCrEtMaRkEr"
# Quotes, shell and YAML specials, a newline, and a line that looks like the
# runner.name line the boot script rewrites.
TOKEN = MARKER + "a\"b'c$d\\e: #x `id` $(id)\n  name: \"@RUNNER_NAME@\""
CIRCLECI_GID = 999
POWER = ("poweroff", "halt", "reboot", "shutdown")

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
        gid=$STUB_CIRCLECI_GID
        echo "circleci:x:$gid:" >>/etc/group
        echo "circleci:x:$gid:$gid::/var/lib/circleci-runner:/bin/false" \
            >>/etc/passwd
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
for d in usr etc; do
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$R/ovl/$d-up,workdir=$R/ovl/$d-work" "/$d"
done
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
set +e
env -i PATH="$PATH" HOME=/root LANG=C.UTF-8 \
    STUB_LOG="$R/out/calls" STUB_DIR="$R/stub" \
    STUB_SYSTEMD_VERSION="$STUB_SYSTEMD_VERSION" \
    STUB_INSTALL_FAILS="$STUB_INSTALL_FAILS" \
    STUB_CURL_FAIL="$STUB_CURL_FAIL" \
    STUB_CIRCLECI_GID="$STUB_CIRCLECI_GID" \
    /bin/sh "$R/runcmd.sh" >"$R/out/stdout" 2>"$R/out/stderr"
echo $? >"$R/out/rc"
ls -A /tmp >"$R/out/tmp-left"
"""


def emit(token=TOKEN, api_url="https://runner.circleci.com", idle="10m",
         name="my-org/linux"):
    argv = [EMITTER, "--emit", name, token, api_url]
    if idle is not None:
        argv.append(idle)
    return subprocess.run(argv, check=True, stdout=subprocess.PIPE,
                          timeout=30).stdout


class Run:
    """One execution of the boot script in a fresh sandbox."""

    def __init__(self, workdir, userdata, os_release=UBUNTU,
                 hostname="rp-my-org-linux-x7k2p", stubs=(),
                 remove=(), systemd_version=252, install_fails=0,
                 curl_fail=False):
        self.dir = tempfile.mkdtemp(prefix="run-", dir=workdir)
        for d in ("ovl/usr-up", "ovl/usr-work", "ovl/etc-up",
                  "ovl/etc-work", "hostdev", "out", "stub"):
            os.makedirs(os.path.join(self.dir, d))
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
            "STUB_CIRCLECI_GID": str(CIRCLECI_GID),
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
        if p.returncode != 0:
            raise AssertionError(
                f"sandbox failed ({p.returncode}): "
                f"{p.stderr.decode(errors='replace')}")
        self.rc = int(self.out("rc"))
        self.calls = self.out("calls").splitlines()
        self.stderr = self.out("stderr")

    def out(self, name):
        with open(os.path.join(self.dir, "out", name),
                  encoding="utf-8", errors="replace") as f:
            return f.read()

    def upper(self, rel):
        """Path of rel in the overlay's upper layer (what the run wrote)."""
        top = "usr" if rel.startswith("usr/") else "etc"
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
                         old_systemd=False):
        """The runner configured and started: steps 3 to 5."""
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

        # Step 3: the staged file became the runner's, with a fresh name.
        st = os.stat(run.upper(CONFIG))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o640)
        self.assertEqual((st.st_uid, st.st_gid), (0, CIRCLECI_GID))
        text = run.read(CONFIG)
        conf = yaml.safe_load(text)
        self.assertEqual(conf["api"]["auth_token"], TOKEN)
        name = conf["runner"]["name"]
        self.assertRegex(name, r"^[A-Za-z0-9.()_-]+$")
        self.assertRegex(name, "^" + re.escape(hostname) + "-[0-9a-f]{12}$")
        self.assertEqual(conf["runner"]["mode"], "single-task")
        self.assertEqual(conf["runner"]["idle_timeout"], "10m")
        self.assertEqual(conf["runner"]["max_run_time"], "5h")
        self.assertNotIn("url", conf["api"])
        # Nothing else changed: the name line is the only difference.
        self.assertEqual(text, self.staged.replace(
            '  name: "@RUNNER_NAME@"\n', f'  name: "{name}"\n', 1))
        self.assertFalse(run.exists(STAGED))
        self.assertFalse(run.exists(os.path.dirname(STAGED)))
        self.assertEqual(os.listdir(os.path.dirname(run.upper(CONFIG))),
                         [os.path.basename(CONFIG)])
        self.assertEqual(run.out("tmp-left"), "")

        # Step 4: the drop-in.
        st = os.stat(run.upper(DROPIN))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o644)
        want = ["# runner-provisioner: one task, then power off.",
                "[Service]", "Restart=no"]
        if old_systemd:
            want.append("PermissionsStartOnly=true")
        want += [
            "ExecStopPost=" + ("" if old_systemd else "+") +
            "/usr/bin/systemctl --no-block poweroff",
            "TimeoutStopSec=18300",
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
