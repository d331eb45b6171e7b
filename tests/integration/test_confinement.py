"""Hostile packages cannot get out of the instance: the two escapes found
on the namespace holder and on adequate, and the attempts the confinement
(allow-listed capabilities, seccomp, a pids cgroup, a bounded upper layer)
refuses.  Each test asserts that no marker reached the host and what the
verdict says.  The attempts test_isolation.py makes (writes through
/proc/*/root and ..; the chroot climb; mount; sethostname; a host process
killed; a planted symlink; a daemon) stay there."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import hostile
from tests.integration.helpers import Run, piuparts
from tests.integration.test_fault_injection import host_changes, host_state
from tests.integration.test_isolation import host_mounts, no_leaks

pytestmark = [pytest.mark.root, pytest.mark.network]


@pytest.fixture
def markers() -> Iterator[list[Path]]:
    """The host's marker paths: none before the test, every one removed after."""
    paths = [hostile.marker(name) for name in ("ptrace", "adequate", "userns")]
    for path in paths:
        assert not path.exists(), f"{path} exists before the test: remove it"
    yield paths
    for path in paths:
        path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def ptrace_helper(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    assert shutil.which("gcc"), "gcc is not installed (./bootstrap installs it, with libc6-dev)"
    return hostile.build_ptrace_helper(tmp_path_factory.mktemp("hostile"))


def attempt(cache_dir: Path, tmp_path: Path, *args: str) -> tuple[Run, str]:
    """A run with the commands' output shown (-v): the run, and all it printed."""
    run = piuparts(cache_dir, tmp_path, "-v", "--no-upgrade-test", *args)
    return run, run.stdout + run.stderr


def test_ptrace_of_the_namespace_holder_and_of_any_process_is_refused(cache_dir, tmp_path, markers,
                                                                      ptrace_helper):
    before = host_state()
    run, said = attempt(cache_dir, tmp_path, str(hostile.ptracer(ptrace_helper).build(tmp_path)))
    assert [path for path in markers if path.exists()] == []
    assert host_changes(before) == []
    tried = re.search(r"ptrace: (\d+) processes tried, (\d+) attached", said)
    assert tried, said
    # The holder (PID 1) and the postinst's own daemon at least; not one attached.
    assert int(tried[1]) >= 2 and tried[2] == "0", said
    assert "pid 1: ptrace attach refused: Operation not permitted" in said
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    no_leaks(cache_dir, run)


def test_adequate_runs_inside_with_the_scripts_confinement(cache_dir, tmp_path, markers):
    run, said = attempt(cache_dir, tmp_path, str(hostile.ADEQUATE_ESCAPER.build(tmp_path)))
    assert [path for path in markers if path.exists()] == []
    # The planted dpkg-query ran: inside, with the scripts' ten capabilities.
    assert f"pp-planted dpkg-query ran: CapEff:\t{hostile.CONFINED_CAPS}" in said, said
    # Its marker landed in the instance, and the verdict says so.
    assert run.returncode == 1, run.stdout + run.stderr
    assert [(f["check"], f["subject"]) for f in run.findings()] == [
        ("leftovers", str(hostile.marker("adequate")))]
    no_leaks(cache_dir, run)


def test_device_nodes_namespaces_and_refused_syscalls(cache_dir, tmp_path, markers):
    mounts = host_mounts(cache_dir)
    run, said = attempt(cache_dir, tmp_path, str(hostile.KERNEL_PROBER.build(tmp_path)))
    assert [path for path in markers if path.exists()] == []
    assert host_mounts(cache_dir) == mounts
    probes = sorted(set(re.findall(r"pp-probe: (.*)$", said, re.M)))
    assert probes == sorted({"mknod refused", "user namespace refused", "mount namespace refused"} | {
        f"{name} refused" for name in ("add_key", "bpf", "init_module", "kexec_load", "keyctl", "mount",
                                       "open_by_handle_at", "perf_event_open", "process_vm_readv", "ptrace",
                                       "reboot", "setns", "swapoff", "userfaultfd")}), said
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    no_leaks(cache_dir, run)


def host_processes() -> int:
    return sum(1 for p in Path("/proc").iterdir() if p.name.isdigit())


def test_a_fork_bomb_stops_at_the_instance_limit(cache_dir, tmp_path):
    before = host_processes()
    run, said = attempt(cache_dir, tmp_path, str(hostile.FORK_BOMB.build(tmp_path)))
    stopped = re.search(r"pp-fork-bomb: stopped at (\d+) processes: Resource temporarily unavailable", said)
    assert stopped, said
    assert 4000 < int(stopped[1]) <= 4096, stopped[0]  # the pids cgroup's 4096, less what runs the step
    [scenario] = run.report["scenarios"]
    assert [(s["name"], s["ok"]) for s in scenario["steps"]][0] == ("install", False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL: pp-fork-bomb_1.0-1" in run.stdout
    assert host_processes() < before + 50  # every sleeping child ended with the instance
    no_leaks(cache_dir, run)


def test_a_full_disk_is_the_instance_s_not_the_host_s(cache_dir, tmp_path):
    free = shutil.disk_usage(hostile.MARKERS).free
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", "--tmpfs-size", "256M",
                   str(hostile.DISK_FILLER.build(tmp_path)))
    assert abs(shutil.disk_usage(hostile.MARKERS).free - free) < 512 * 1024 * 1024
    # The instance ran out of space: a test-bed state (exit 3), with dd's line.
    assert run.returncode == 3, run.stdout + run.stderr
    assert "the instance ran out of space" in run.stdout + run.stderr
    assert "No space left on device" in run.stdout + run.stderr
    no_leaks(cache_dir, run)
