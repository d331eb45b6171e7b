"""Maintainer scripts cannot reach the host: no service starts there, no host
process is seen or signalled, no file is written outside the instance."""

from __future__ import annotations

import http.server
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from piuparts import resources
from tests.debs import DebSpec, make_repo
from tests.integration.helpers import Run, leaks, piuparts
from tests.integration.test_fault_injection import host_changes, host_state

pytestmark = [pytest.mark.root, pytest.mark.network]

# A daemon with a cmdline of its own, to be looked for on the host.
DAEMON = "sleep 7771"
INIT_SCRIPT = f"""#!/bin/sh
case "$1" in start) setsid {DAEMON} </dev/null >/dev/null 2>&1 & ;; esac
exit 0
"""
STARTS_SERVICES = DebSpec(
    "pp-starts-services", files={"/etc/init.d/pp-svc": INIT_SCRIPT}, executables=("/etc/init.d/pp-svc",),
    scripts={"postinst": """\
if [ "$1" = configure ]; then
    said=$(invoke-rc.d pp-svc start 2>&1) || true
    case "$said" in *"policy-rc.d denied execution of start"*) ;;
        *) echo "invoke-rc.d was let start pp-svc: $said" >&2; exit 1;; esac
    ! grep -qs 7771 /proc/[0-9]*/cmdline || { echo "pp-svc runs after invoke-rc.d" >&2; exit 1; }
    deb-systemd-invoke start pp-svc.service || true
    if command -v systemctl >/dev/null; then systemctl start pp-svc || true; fi
    # service(8) runs the init script without asking policy-rc.d: the daemon
    # starts, but inside the instance, where the processes check finds it.
    service pp-svc start || true
fi"""})

ESCAPES = {"dotdot": "/../../../../tmp/pp-escape-dotdot", "proc1": "/proc/1/root/tmp/pp-escape-proc1",
           "cwd": "/proc/1/cwd/../../../tmp/pp-escape-cwd", "symlink": "/tmp/hostroot/tmp/pp-escape-symlink"}
ESCAPER = DebSpec("pp-escaper", scripts={"postinst": """\
if [ "$1" = configure ]; then
    ln -s / /tmp/hostroot
""" + "".join(f"    echo x > {path} || true\n" for path in ESCAPES.values()) + "fi"})


class HostWatch:
    """Looks, until stopped, for a process whose command line matches
    ``pattern`` and whose root is not inside ``cache``: one on the host."""

    def __init__(self, pattern: str, cache: Path) -> None:
        self.pattern, self.cache = re.compile(pattern), str(cache)
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            for pid in (p.name for p in Path("/proc").iterdir() if p.name.isdigit()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                    root = str(Path(f"/proc/{pid}/root").readlink())
                except OSError:
                    continue
                if self.pattern.fullmatch(cmdline) and not root.startswith(self.cache + "/"):
                    self.seen.append(f"{pid} {cmdline} (root {root})")

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join()
        return self.seen


@pytest.fixture
def sentinel() -> Iterator[subprocess.Popen[bytes]]:
    """A host process, root's like the harness's, that nothing may signal."""
    proc = subprocess.Popen(["sleep", "600"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def no_leaks(cache: Path, run: Run) -> None:
    assert "Traceback" not in run.stdout + run.stderr
    assert leaks(cache) == []
    assert resources.processes_under(cache) == []


def test_services_never_start_on_the_host(cache_dir, debs, tmp_path):
    watch = HostWatch(DAEMON, cache_dir)
    try:
        run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(STARTS_SERVICES)))
    finally:
        on_host = watch.stop()
    assert on_host == []
    # invoke-rc.d was refused (else the postinst fails the install); the daemon
    # that service(8) started ran inside, and was found there and ended.
    assert run.returncode == 1, run.stdout + run.stderr
    assert [s["ok"] for s in run.report["scenarios"][0]["steps"]] == [True, True, True]
    assert [(f["check"], f["subject"], f["message"].split(" (pid")[0]) for f in run.findings()] == [
        ("processes", DAEMON, "still running after purge")]
    assert subprocess.run(["pgrep", "-fx", DAEMON], check=False, capture_output=True).stdout == b""
    no_leaks(cache_dir, run)


def test_host_processes_are_neither_seen_nor_signalled(cache_dir, debs, tmp_path, sentinel):
    # The postinst knows the sentinel's host PID (it is built in), looks at
    # every process it can see, then signals every process it may.  It
    # checks that it is in a PID namespace of its own before "kill -1":
    # outside one, that would end every process of the machine.
    probe = DebSpec("pp-kill-all", scripts={"postinst": f"""\
if [ "$1" = configure ]; then
    n=$(ls /proc | grep -c '^[0-9]')
    grep -q sleep /proc/1/cmdline && [ "$n" -lt 15 ] || {{ echo "sees $n processes: the host's" >&2; exit 1; }}
    ! kill -0 {sentinel.pid} 2>/dev/null || {{ echo "can signal the host's PID {sentinel.pid}" >&2; exit 1; }}
    kill -TERM -1
fi"""})
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(probe.build(tmp_path)))
    assert sentinel.poll() is None, "the host's sentinel process was killed"
    # dpkg and apt, in the namespace, got the SIGTERM: the install fails, and
    # that is the package's fault; the harness, on the host, did not get it.
    assert run.returncode == 1, run.stdout + run.stderr
    [step] = run.report["scenarios"][0]["steps"]
    assert (step["name"], step["ok"], step["message"]) == (
        "install", False, "install was killed by SIGTERM: Setting up pp-kill-all (1.0-1) ...")
    assert "FAIL: pp-kill-all_1.0-1" in run.stdout
    no_leaks(cache_dir, run)


def test_writes_outside_the_instance_stay_inside(cache_dir, debs, tmp_path):
    host_paths = [Path("/tmp") / Path(path).name for path in ESCAPES.values()]
    for path in host_paths:
        assert not path.exists(), f"{path} exists before the test: remove it"
    before = host_state()
    try:
        run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(ESCAPER)))
        assert [path for path in host_paths if path.exists()] == []
        assert not Path("/tmp/hostroot").is_symlink()
    finally:
        for path in host_paths:
            path.unlink(missing_ok=True)
        if Path("/tmp/hostroot").is_symlink() and Path("/tmp/hostroot").readlink() == Path("/"):
            Path("/tmp/hostroot").unlink()
    assert host_changes(before) == []
    # Inside, the writes landed in the instance's /tmp, which the default ignores leave out.
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    no_leaks(cache_dir, run)


# ---------------------------------------------------------------- the kernel's state

# A global sysctl, harmless to change (and put back by the test if it was).
SYSCTL = Path("/proc/sys/fs/lease-break-time")
BINFMT_ENTRY = "pp-escape"
# Each attempt may fail (the script goes on): what counts is the host afterwards.
KERNEL_ESCAPER = DebSpec("pp-kernel-escaper", scripts={"postinst": f"""\
if [ "$1" = configure ]; then
    hostname pp-escaped 2>/dev/null || true
    echo pp-escaped > /proc/sys/kernel/hostname 2>/dev/null || true
    echo $(( $(cat {SYSCTL}) + 7 )) > {SYSCTL} 2>/dev/null || true
    for dir in /proc/sys/fs/binfmt_misc /mnt; do
        mount -t binfmt_misc binfmt_misc $dir 2>/dev/null || true
        if [ -e $dir/register ]; then echo ':{BINFMT_ENTRY}:E::ppescape::/bin/true:' > $dir/register || true; fi
    done
    mount -t tmpfs pp-escape-tmpfs /mnt 2>/dev/null || true
    mount --bind /etc /mnt 2>/dev/null || true
    # chroot(2) back out to the namespace's root (the host's / unless the capability is gone).
    perl -e 'mkdir "/tmp/pp-out"; chroot "/tmp/pp-out" or exit 0; chdir ".." for 1..64; chroot "."; open(my $f, ">", "/tmp/pp-escape-chroot")' || true
    ipcmk -M 4096 >/dev/null 2>&1 || true
    ipcmk -Q >/dev/null 2>&1 || true
    ipcmk -S 2 >/dev/null 2>&1 || true
    # What is namespaced still works inside: the harness's own setup is fine.
    [ "$(cat /proc/1/comm)" = sleep ]
fi"""})


def binfmt_entries() -> list[str]:
    """The host kernel's binfmt_misc handlers, listed in a private mount namespace of the test's own."""
    listing = subprocess.run(["unshare", "--mount", "sh", "-c", "mkdir -p /run/pp-binfmt && "
                              "mount -t binfmt_misc binfmt_misc /run/pp-binfmt && ls /run/pp-binfmt"],
                             capture_output=True, text=True, check=True).stdout.split()
    return sorted(set(listing) - {"register", "status"})


def ipc_objects() -> set[str]:
    """The host's SysV IPC objects (id and key of each shared memory segment, queue and semaphore set)."""
    listing = subprocess.run(["ipcs"], capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()[:2]) for line in listing.splitlines() if line.startswith("0x")}


def host_mounts(cache: Path) -> list[str]:
    """The host's own mounts (not those of instances: the suite's, or other
    runs' on this machine), and any mount, even in an instance's directory,
    that the fixture's scripts made."""
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted(f"{fields[0]} {fields[1]} {fields[2]}" for fields in mounts
                  if ("/instances/" not in fields[1] and not fields[1].startswith(f"{cache}/"))
                  or fields[0].startswith("pp-escape") or fields[2] == "binfmt_misc")


def test_the_host_kernel_state_is_out_of_reach(cache_dir, debs, tmp_path):
    hostname, sysctl = Path("/proc/sys/kernel/hostname").read_text(), SYSCTL.read_text()
    binfmt, ipc, mounts = binfmt_entries(), ipc_objects(), host_mounts(cache_dir)
    try:
        run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(KERNEL_ESCAPER)))
        after = (Path("/proc/sys/kernel/hostname").read_text(), SYSCTL.read_text(), binfmt_entries(),
                 ipc_objects(), host_mounts(cache_dir))
    finally:
        if SYSCTL.read_text() != sysctl:
            SYSCTL.write_text(sysctl)
        if Path("/proc/sys/kernel/hostname").read_text() != hostname:
            Path("/proc/sys/kernel/hostname").write_text(hostname)
    escaped = Path("/tmp/pp-escape-chroot")
    try:
        assert not escaped.exists(), "a script chrooted its way out to the host's root"
    finally:
        escaped.unlink(missing_ok=True)
    assert after == (hostname, sysctl, binfmt, ipc, mounts)
    assert BINFMT_ENTRY not in after[2]
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    no_leaks(cache_dir, run)


# ---------------------------------------------------------------- the harness's own file operations

def test_a_symlink_out_to_the_host_is_followed_inside(cache_dir, debs, tmp_path):
    # 1.0's postinst makes the harness's .deb directory a link to a host
    # directory; the upgrade test then copies 2.0 in: inside, as the chroot
    # sees the link, never into the host directory.
    host_dir = Path(tempfile.mkdtemp(prefix="pp-hostdir-", dir="/tmp"))
    try:
        old = DebSpec("pp-debs-link", "1.0-1", scripts={"postinst": f"""\
if [ "$1" = configure ]; then rm -rf /tmp/piuparts-debs; ln -s {host_dir} /tmp/piuparts-debs; fi"""})
        new = DebSpec("pp-debs-link", "2.0-1")
        repo = make_repo(tmp_path / "repo", [old.build(tmp_path)])
        run = piuparts(cache_dir, tmp_path, "--no-install-purge-test", "--extra-repo", repo,
                       str(new.build(tmp_path / "new")))
        assert list(host_dir.iterdir()) == []
    finally:
        shutil.rmtree(host_dir)
    assert run.returncode == 0, run.stdout + run.stderr
    [scenario] = run.report["scenarios"]
    assert [(s["name"], s["ok"]) for s in scenario["steps"]] == [
        ("install old", True), ("upgrade", True), ("remove", True), ("purge", True)]
    upgrade = scenario["steps"][1]["commands"][-1]["cmdline"]
    assert upgrade.endswith("install /tmp/piuparts-debs/pp-debs-link_2.0-1_all.deb"), upgrade
    no_leaks(cache_dir, run)


# ---------------------------------------------------------------- --no-network

def test_no_network_gives_scripts_a_loopback_only(cache_dir, debs, tmp_path):
    # A host service on 127.0.0.1: with the host's network a script reaches
    # it; with --no-network the instance's own loopback answers instead (up,
    # but nothing listens there).  The dependency (less, not in the base)
    # is downloaded before the scripts run.
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = DebSpec("pp-offline", depends="less", scripts={"postinst": f"""\
if [ "$1" = configure ]; then
    perl -MIO::Socket::INET -e '
        IO::Socket::INET->new(PeerAddr => "127.0.0.1:{port}", Timeout => 5) and die "reached the host\\n";
        my $l = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0") or die "no loopback: $!\\n";
        IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . $l->sockport) or die "loopback down: $!\\n";'
    grep -v lo: /proc/net/dev | grep -q : && {{ echo "interfaces besides lo: $(cat /proc/net/dev)" >&2; exit 1; }}
    less --version >/dev/null
fi"""})
        deb = str(probe.build(tmp_path))
        offline = piuparts(cache_dir, tmp_path, "--no-network", "--purge-dependencies", deb)
        (tmp_path / "online").mkdir()
        online = piuparts(cache_dir, tmp_path / "online", "--purge-dependencies", deb)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert offline.findings() == []
    steps = offline.report["scenarios"][0]["steps"]
    assert [(s["name"], s["ok"]) for s in steps] == [
        ("install dependencies", True), ("install", True), ("remove", True), ("purge", True)]
    # What the install unpacks came before it, with the network: downloaded into the .deb cache
    # by the harness from the run's mirror, else by apt's --download-only pass, outside the
    # instance's network namespace; the install itself runs in it (--net=).
    *fetches, install = steps[0]["commands"]
    assert install["cmdline"].endswith("apt-get -y install less") and "--net=" in install["cmdline"], install
    assert all(c["cmdline"].endswith("apt-get -y install less --download-only") and "--net=" not in c["cmdline"]
               for c in fetches), fetches
    assert online.returncode == 1, online.stdout + online.stderr
    assert "reached the host" in online.stdout + online.stderr
    no_leaks(cache_dir, offline)


#: As netbase's postinst does: an /etc/hosts without the host's name when there is none.
HOSTS_MAKER = DebSpec("pp-hosts-maker", scripts={"postinst": """\
if [ "$1" = configure ] && [ ! -e /etc/hosts ]; then
    printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' > /etc/hosts
fi"""})


def test_a_postinst_asking_the_host_name_gets_it_without_a_network(cache_dir, debs, tmp_path):
    # nova-common's config script runs hostname -i (cinder-common's and others'
    # hostname --fqdn), which needs the name in /etc/hosts when no DNS knows
    # it: every installed Debian system has it there, the bases (debootstrap,
    # mmdebstrap) do not, and netbase's postinst, run in a dependency layer,
    # wrote one without it.  The night over the OpenStack section failed
    # nova-common on it (a false verdict).
    probe = DebSpec("pp-hostname", depends="pp-hosts-maker", scripts={"postinst": """\
if [ "$1" = configure ]; then
    name=$(hostname --fqdn) || exit 1
    hostname -i >/dev/null || exit 1
    grep -q "^127.0.1.1[[:space:]]$(hostname)$" /etc/hosts || { echo "not in /etc/hosts: $name" >&2; exit 1; }
fi"""})
    repo = make_repo(tmp_path / "repo", [debs(HOSTS_MAKER)])
    for mode in ("--no-upgrade-test", "--purge-dependencies"):  # over a dependency layer, and without
        run = piuparts(cache_dir, tmp_path, "--no-network", mode, "--extra-repo", repo, str(debs(probe)))
        assert run.returncode == 0, run.stdout + run.stderr
        assert run.findings() == []  # nor is /etc/hosts a leftover
        no_leaks(cache_dir, run)


# ---------------------------------------------------------------- proxies

class _Proxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that serves ``http://pp-proxy.invalid/`` (a name no
    resolver knows) from a directory and forwards everything else."""

    served: Path
    seen: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        self.seen.append(self.path)
        if self.path.startswith(PROXIED):
            file = self.served / self.path[len(PROXIED):].lstrip("./")
            body, code = (file.read_bytes(), 200) if file.is_file() else (b"", 404)
        else:
            try:
                with urllib.request.urlopen(self.path, timeout=60) as answer:  # noqa: S310 - a test proxy
                    body, code = answer.read(), answer.status
            except urllib.error.HTTPError as err:
                body, code = b"", err.code
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


PROXIED = "http://pp-proxy.invalid/"


def test_http_proxy_of_the_environment_reaches_apt_inside(cache_dir, debs, tmp_path, monkeypatch):
    old, new = DebSpec("pp-proxied", "1.0-1"), DebSpec("pp-proxied", "2.0-1")
    make_repo(tmp_path / "repo", [old.build(tmp_path)])
    handler = type("Proxy", (_Proxy,), {"served": tmp_path / "repo", "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{server.server_address[1]}")
        run = piuparts(cache_dir, tmp_path, "--no-install-purge-test", "--extra-repo",
                       f"deb [trusted=yes] {PROXIED} ./", str(new.build(tmp_path / "new")))
    finally:
        server.shutdown()
        server.server_close()
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{PROXIED}./pp-proxied_1.0-1_all.deb" in handler.seen
    assert f"{PROXIED}./Packages" in handler.seen or f"{PROXIED}./Packages.xz" in handler.seen, handler.seen
    no_leaks(cache_dir, run)
