"""Maintainer scripts cannot reach the host: no service starts there, no host
process is seen or signalled, no file is written outside the instance."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from piuparts import resources
from tests.debs import DebSpec
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
