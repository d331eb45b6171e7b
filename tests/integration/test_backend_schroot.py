"""The schroot backend beyond the contract suite: schroot-setup, the chroots it
refuses (each with its one-line message, exit 2), the chroots sbuild-createchroot
makes (as it writes them, and with union-type=overlay), isolation from the host,
and a killed run's session ended by ``piuparts cleanup``.

Every /etc/schroot/chroot.d entry a test writes is removed when it ends,
except the suite's shared chroot (tests/backend_cases/schroot.py) and the
one sbuild-createchroot made (:func:`sbuild_chroot`), both remade daily.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from piuparts import aptsources, resources, state
from piuparts.backends.schroot import kernel_has
from tests.backend_cases.schroot import CHROOT_D, available, sessions, suite_chroot
from tests.conftest import PIUPARTS
from tests.debs import CLEAN, RESHAPER, SLOW_POSTINST, DebSpec
from tests.integration.helpers import leaks, piuparts, blame_text, owner_text

pytestmark = [pytest.mark.root, pytest.mark.network,
              pytest.mark.skipif(available() is not None and not os.environ.get("CI"),
                                 reason=str(available()))]

MOUNT_DIR = Path("/run/schroot/mount")

# Fails unless the maintainer script is cut off from the host: PID 1 is the
# instance's holder, the ptys are its own, and /tmp is the chroot's.
ISOLATION_PROBE = DebSpec("pp-schroot-probe", scripts={"postinst": """\
grep -q sleep /proc/1/cmdline || { echo "PID 1 is $(cat /proc/1/cmdline): the host's namespace" >&2; exit 1; }
[ "$(ls /proc | grep -c '^[0-9]')" -lt 15 ] || { echo "sees the host's processes" >&2; exit 1; }
[ -z "$(ls /dev/pts | grep -vx ptmx)" ] || { echo "sees the host's ptys: $(ls /dev/pts)" >&2; exit 1; }
echo probe > /tmp/pp-schroot-probe"""})


@pytest.fixture
def entry() -> Iterator[Callable[[str, str], str]]:
    """Write a temporary /etc/schroot/chroot.d entry: ``entry(NAME, BODY) -> NAME``; removed afterwards."""
    written: list[Path] = []

    def write(name: str, body: str) -> str:
        path = CHROOT_D / name
        written.append(path)
        path.write_text(f"[{name}]\n{body}")
        return name
    yield write
    for path in written:
        path.unlink(missing_ok=True)


def _refused(cache_dir: Path, tmp_path: Path, debs, name: str) -> str:
    run = piuparts(cache_dir, tmp_path, "--schroot", name, str(debs(CLEAN)))
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1, run.stderr
    return run.stderr.strip()


def test_schroot_setup_makes_a_working_chroot(cache_dir, tmp_path):
    name, directory = f"piuparts-ng-test-setup-{os.getpid()}", tmp_path / "chroot"
    session = f"{name}-probe"
    try:
        made = subprocess.run([*PIUPARTS, "schroot-setup", name, "--directory", str(directory),
                               "--cache-dir", str(cache_dir)],
                               capture_output=True, text=True, timeout=3600, check=False)
        assert made.returncode == 0, made.stdout + made.stderr
        text = (CHROOT_D / name).read_text()
        for line in (f"[{name}]", "type=directory", "union-type=overlay", f"directory={directory}",
                     "profile=piuparts-ng", "root-users=root"):
            assert line in text.splitlines()
        fstab = Path("/etc/schroot/piuparts-ng/fstab").read_text()
        assert [line for line in fstab.splitlines() if line.strip() and not line.startswith("#")] == []
        assert (directory / "usr/sbin/policy-rc.d").is_file()  # the debootstrap backend's base
        # A session of it mounts nothing of the host's.
        subprocess.run(["schroot", "-b", "-c", name, "-n", session], check=True, capture_output=True)
        root = (MOUNT_DIR / session).resolve()
        assert resources.mounts_under(root) == [str(root)]
        ran = subprocess.run(["schroot", "-r", "-c", session, "--directory", "/", "--",
                              "cat", "/etc/debian_version"],
                             capture_output=True, text=True, check=False)
        assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
        again = subprocess.run([*PIUPARTS, "schroot-setup", name, "--directory", str(tmp_path / "other")],
                               capture_output=True, text=True, check=False)
        assert again.returncode == 2
        assert again.stderr == (f"piuparts: error: schroot-setup {name}: schroot already has a chroot of that "
                                f"name; choose another or remove its entry ({CHROOT_D / name}) and its "
                                "directory first\n")
    finally:
        subprocess.run(["schroot", "-e", "-c", session], capture_output=True, check=False)
        (CHROOT_D / name).unlink(missing_ok=True)
        shutil.rmtree(directory, ignore_errors=True)
    assert session not in " ".join(sessions())


def test_an_unknown_chroot_is_refused(cache_dir, tmp_path, debs):
    name = "piuparts-ng-test-no-such-chroot"
    assert _refused(cache_dir, tmp_path, debs, name) == (
        f"piuparts: error: --schroot {name}: no such schroot chroot (schroot -l lists them; "
        f"'piuparts schroot-setup {name}' makes one)")


def test_a_chroot_whose_directory_is_not_a_debian_system_is_refused(cache_dir, tmp_path, debs, entry):
    name = entry(f"piuparts-ng-test-nounion-{os.getpid()}", f"type=directory\ndirectory={tmp_path}\n")
    assert _refused(cache_dir, tmp_path, debs, name) == (
        f"piuparts: error: --schroot {name}: its directory {tmp_path} is not a Debian system "
        "(no var/lib/dpkg/status in it)")


@pytest.mark.skipif(kernel_has("aufs"), reason="this kernel has aufs")
def test_aufs_is_refused_where_the_kernel_has_none(cache_dir, tmp_path, debs, entry):
    name = entry(f"piuparts-ng-test-aufs-{os.getpid()}", f"type=directory\ndirectory={tmp_path}\nunion-type=aufs\n")
    assert _refused(cache_dir, tmp_path, debs, name) == (
        f"piuparts: error: --schroot {name}: union-type=aufs, but this kernel has no aufs (see "
        "/proc/filesystems); set union-type=overlay in its entry in /etc/schroot/chroot.d/")


def test_maintainer_scripts_cannot_reach_the_host(cache_dir, tmp_path, debs):
    name, _ = suite_chroot(cache_dir)
    Path("/tmp/pp-schroot-probe").unlink(missing_ok=True)
    run = piuparts(cache_dir, tmp_path, "--schroot", name, str(debs(ISOLATION_PROBE)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert not Path("/tmp/pp-schroot-probe").exists()
    assert sessions() == []


def test_findings_equal_the_debootstrap_backends(cache_dir, tmp_path, debs):
    """Removed files (whiteouts), a replaced directory (opaque), changed modes: the
    session's upper directory gives what the debootstrap backend's overlay gives."""
    name, _ = suite_chroot(cache_dir)
    found = {}
    for backend, args in (("debootstrap", []), ("schroot", ["--schroot", name])):
        run = piuparts(cache_dir, tmp_path, *args, str(debs(RESHAPER)))
        assert run.returncode == 1, run.stdout + run.stderr
        assert run.report["backend"] == backend
        found[backend] = sorted((f["check"], f["severity"], f["subject"], owner_text(f), blame_text(f))
                                for f in run.findings())
    assert found["schroot"] == found["debootstrap"]
    assert ("others-files", "fail", "/etc/debian_version") in [f[:3] for f in found["schroot"]]


# --- chroots made by Debian's sbuild-createchroot, as it writes them and changed as users do

HOST_MARKER = "pp-host-marker"
# Fails when the profile's host mounts reach the maintainer script: the host's
# sbuild build directory, /tmp or /home, or its /proc.
SBUILD_PROBE = DebSpec("pp-sbuild-probe", scripts={"postinst": ISOLATION_PROBE.scripts["postinst"] + f"""
for dir in /build /tmp /home; do
    [ ! -e $dir/{HOST_MARKER} ] || {{ echo "sees the host's $dir" >&2; exit 1; }}
done"""})
SBUILD_NAME = "piuparts-ng-test-sbuild"


def sbuild_chroot(cache_dir: Path) -> tuple[str, Path, str]:
    """A chroot made by sbuild-createchroot (name, directory, the body of its chroot.d entry), once a day."""
    name = f"{SBUILD_NAME}-{os.path.basename(cache_dir)}"
    directory = cache_dir / "sbuild" / name
    entries = [p for p in CHROOT_D.glob(f"{name}-*-sbuild-*") if p.is_file()]
    fresh = bool(entries) and (directory / "var/lib/dpkg/status").is_file() and \
        time.time() - entries[0].stat().st_mtime < 86400
    if not fresh:
        for path in entries:
            path.unlink()
        shutil.rmtree(directory, ignore_errors=True)
        directory.parent.mkdir(parents=True, exist_ok=True)
        dist, mirror = aptsources.default_distribution_and_mirror(aptsources.read_host_sources(),
                                                                  aptsources.host_codename())
        made = subprocess.run(["sbuild-createchroot", f"--chroot-prefix={name}", dist, str(directory), mirror],
                              capture_output=True, text=True, timeout=3600)
        assert made.returncode == 0, made.stdout + made.stderr
        entries = [p for p in CHROOT_D.glob(f"{name}-*-sbuild-*") if p.is_file()]
    [path] = entries
    text = path.read_text()
    return text.splitlines()[0].strip("[]"), directory, text.split("\n", 1)[1]


@pytest.fixture
def host_markers() -> Iterator[None]:
    """A marker file in each host directory the sbuild and default profiles mount into sessions."""
    made = []
    for top in (Path("/var/lib/sbuild/build"), Path("/tmp"), Path("/home")):
        if top.is_dir():
            made.append(top / HOST_MARKER)
            made[-1].write_text("the host's\n")
    yield
    for path in made:
        path.unlink(missing_ok=True)


def _sbuild_run(cache_dir: Path, tmp_path: Path, debs, name: str, directory: Path):
    before = state.snapshot(directory)
    run = piuparts(cache_dir, tmp_path, "--schroot", name, "--no-upgrade-test", str(debs(SBUILD_PROBE)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.findings() == []
    assert state.diff(before, state.snapshot(directory)) == state.Diff()  # the chroot's directory, unchanged
    assert sessions() == []
    assert leaks(cache_dir) == []
    assert not (Path("/tmp") / "pp-schroot-probe").exists()
    return run


def test_a_chroot_made_by_sbuild_createchroot_works_as_it_is(cache_dir, tmp_path, debs, host_markers):
    name, directory, body = sbuild_chroot(cache_dir)
    assert "union-type=none" in body.splitlines() or "union-type" not in body
    assert "profile=sbuild" in body.splitlines()
    run = _sbuild_run(cache_dir, tmp_path, debs, name, directory)
    assert run.stdout.count(f"The schroot chroot {name} has no union type: its sessions would write into "
                            f"{directory.resolve()}. Its sessions are not used; each test runs in an overlay instance "
                            "of its own over that directory, which is never written") == 1


@pytest.mark.parametrize("profile", ["sbuild", "default"])
def test_a_sbuild_chroot_with_union_type_overlay_hides_the_profiles_host_mounts(cache_dir, tmp_path, debs, entry,
                                                                                host_markers, profile):
    _, directory, body = sbuild_chroot(cache_dir)
    lines = [line for line in body.splitlines() if not line.startswith(("union-type", "profile", "source-"))]
    name = entry(f"piuparts-ng-test-sbuild-{profile}-{os.getpid()}",
                 "\n".join([*lines, "union-type=overlay", f"profile={profile}", ""]))
    run = _sbuild_run(cache_dir, tmp_path, debs, name, directory)
    hidden = "/build /dev/pts /dev/shm /proc /sys" if profile == "sbuild" else "/dev /dev/pts /home /proc /sys /tmp"
    assert run.stdout.count(f"The profile of the schroot chroot {name} mounts host directories into its sessions "
                            f"({hidden}); they are unmounted from each test's session") == 1


def _our_mounts() -> list[str]:
    return [m for top in (Path("/run/schroot"), Path("/var/lib/schroot"))
            for m in resources.mounts_under(top) if "/piuparts-ng-" in m]


def _sleeping_in_a_session() -> bool:
    return any(cmd == "sleep 60" for _, cmd in resources.processes_under(MOUNT_DIR.resolve()))


def test_a_sigkilled_runs_session_is_ended_by_cleanup(cache_dir, debs):
    name, _ = suite_chroot(cache_dir)
    proc = subprocess.Popen([*PIUPARTS, "--cache-dir", str(cache_dir), "--schroot", name, str(debs(SLOW_POSTINST))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _sleeping_in_a_session():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    assert len(sessions()) == 1  # SIGKILL cannot be caught: the session is still there
    assert _our_mounts() != []
    cleanup = subprocess.run([*PIUPARTS, "cleanup", "--cache-dir", str(cache_dir)],
                             capture_output=True, text=True, check=False)
    assert cleanup.returncode == 0, cleanup.stdout + cleanup.stderr
    assert "Removed 1 leftover directory" in cleanup.stdout
    assert sessions() == []
    assert leaks(cache_dir) == []
    assert not _sleeping_in_a_session()
    assert _our_mounts() == []
