"""The bad-input catalogue: each mistake a user can make, with the exact
one-line message it gets, its exit code, no traceback and nothing left.

Exit 2 is the user's to fix (the message says how), 3 the test bed's (not
the package's fault), 1 the package's.  The schroot and LVM backends'
bad inputs are in test_backend_schroot.py and test_backend_lvm.py.
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from piuparts import resources
from tests.conftest import PIUPARTS
from tests.debs import CLEAN, DebSpec
from tests.integration.helpers import leaks, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]

UNREACHABLE = "http://127.0.0.1:9/debian"  # the discard port: nothing listens there
NOT_ROOT = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
UNMET = DebSpec("pp-unmet", depends="pp-no-such-package")


def error_of(returncode: int, stdout: str, stderr: str, code: int, cache: Path | None = None) -> str:
    """The one line on stderr, once the exit code, the absence of a
    traceback and of leftovers in ``cache`` are checked."""
    assert returncode == code, stdout + stderr
    assert "Traceback" not in stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    if cache is not None:
        assert leaks(cache) == []
        assert resources.processes_under(cache) == []
    return lines[0]


def bad(cache: Path, tmp_path: Path, *args: str, code: int = 2, prefix: tuple[str, ...] = ()) -> str:
    """Run the command and return its one-line error (see :func:`error_of`)."""
    proc = subprocess.run([*prefix, *PIUPARTS, "--cache-dir", str(cache), *args], check=False,
                          capture_output=True, text=True, timeout=600)
    return error_of(proc.returncode, proc.stdout, proc.stderr, code, cache)


def write_changes(directory: Path, deb: Path, sha256: str | None = None) -> Path:
    """A .changes file listing ``deb`` (with ``sha256`` instead of its checksum, if given)."""
    data = deb.read_bytes()
    changes = directory / "pp-clean_1.0-1_amd64.changes"
    changes.write_text(
        "Format: 1.8\nSource: pp-clean\nBinary: pp-clean\nArchitecture: all\nVersion: 1.0-1\n"
        "Distribution: unstable\nMaintainer: Fixture Maker <fixtures@example.org>\n"
        "Checksums-Sha256:\n"
        f" {sha256 or hashlib.sha256(data).hexdigest()} {len(data)} {deb.name}\n"
        f"Files:\n {hashlib.md5(data).hexdigest()} {len(data)} misc optional {deb.name}\n")
    return changes


@pytest.fixture
def clean_deb(debs, tmp_path: Path) -> Path:
    """A private copy of the clean fixture package, to be damaged at will."""
    copy = tmp_path / debs(CLEAN).name
    copy.write_bytes(debs(CLEAN).read_bytes())
    return copy


# --- what to test --------------------------------------------------------------------

def test_nothing_to_test(tmp_path):
    cache = tmp_path / "cache"
    assert bad(cache, tmp_path) == \
        "piuparts: error: nothing to test: give .deb or .changes files, or --apt NAME"


def test_file_that_does_not_exist(tmp_path):
    missing = tmp_path / "nope_1.0_all.deb"
    assert bad(tmp_path / "cache", tmp_path, str(missing)) == (
        f"piuparts: error: {missing}: no such file; give the path of a .deb or .changes file, or --apt NAME")


def test_name_without_apt(tmp_path):
    assert bad(tmp_path / "cache", tmp_path, "hello") == (
        "piuparts: error: hello: no such file; to test a package from the archive use --apt hello")


def test_file_that_is_not_a_deb(tmp_path):
    bogus = tmp_path / "bogus_1.0_all.deb"
    bogus.write_text("hello\n")
    assert bad(tmp_path / "cache", tmp_path, str(bogus)) == (
        f"piuparts: error: {bogus}: not a valid Debian package (.deb): Unable to find global header; "
        "rebuild it or check the download")


def test_truncated_deb(clean_deb, tmp_path):
    clean_deb.write_bytes(clean_deb.read_bytes()[:-100])
    assert bad(tmp_path / "cache", tmp_path, str(clean_deb)) == (
        f"piuparts: error: {clean_deb}: not a valid Debian package (.deb): its control or data member is "
        "truncated or corrupt; rebuild it or check the download")


def test_changes_with_a_wrong_checksum(clean_deb, tmp_path):
    changes = write_changes(tmp_path, clean_deb, sha256="0" * 64)
    assert bad(tmp_path / "cache", tmp_path, str(changes)) == (
        f"piuparts: error: {changes}: the SHA256 checksum of {clean_deb.name} does not match; "
        "rebuild or re-upload it")


def test_changes_naming_a_missing_file(clean_deb, tmp_path):
    changes = write_changes(tmp_path, clean_deb)
    clean_deb.unlink()
    assert bad(tmp_path / "cache", tmp_path, str(changes)) == (
        f"piuparts: error: {changes}: lists {clean_deb.name}, which is not in {tmp_path}")


def test_apt_name_no_repository_has(cache_dir, tmp_path):
    assert bad(cache_dir, tmp_path, "--apt", "no-such-package-pp") == (
        "piuparts: error: --apt no-such-package-pp: no repository in the chroot's apt sources has this package; "
        "check the name, the distribution (-d) and the mirror (-m)")


def test_package_whose_dependencies_cannot_be_installed(cache_dir, debs, tmp_path):
    # The package's fault, not the harness's: exit 1, said in the step and the summary.
    run = piuparts(cache_dir, tmp_path, "--no-upgrade-test", str(debs(UNMET)))
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stderr == ""
    assert "Traceback" not in run.stdout
    [step] = run.report["scenarios"][0]["steps"]
    assert (step["name"], step["ok"]) == ("install", False)
    assert step["message"] == ("install failed: the dependencies cannot be installed (unmet dependencies): "
                               "pp-unmet : Depends: pp-no-such-package but it is not installable")
    assert f"FAIL: install: {step['message']}" in run.stdout
    assert leaks(cache_dir) == []
    assert resources.processes_under(cache_dir) == []


# --- where and how ----------------------------------------------------------------

def test_unknown_distribution(tmp_path, debs):
    assert bad(tmp_path / "cache", tmp_path, "-d", "nosuchdist", str(debs(CLEAN))) == (
        "piuparts: error: unknown distribution 'nosuchdist': debootstrap has no script for it in "
        "/usr/share/debootstrap/scripts; use a Debian codename such as bookworm or trixie")


def test_distribution_that_is_not_a_name(tmp_path, debs):
    assert bad(tmp_path / "cache", tmp_path, "-d", "../bookworm", str(debs(CLEAN))) == (
        "piuparts: error: -d '../bookworm': not a distribution name (use a codename such as bookworm)")


def test_unreachable_mirror_without_a_base(tmp_path, debs):
    cache = tmp_path / "cache"  # fresh: debootstrap must fetch
    run = piuparts(cache, tmp_path, "-m", UNREACHABLE, str(debs(CLEAN)))
    line = error_of(run.returncode, run.stdout, run.stderr, 3, cache)
    assert line == (f"piuparts: error: cannot make the base system: the mirror {UNREACHABLE} is unreachable "
                    "(Connection refused); check the URL (-m, or the host's apt sources) and the network")
    assert run.report == {"verdict": "ERROR", "exit_code": 3, "error": line.removeprefix("piuparts: error: ")}
    assert list((cache / "bases").glob(".build-*")) == []


def test_unreachable_extra_repository(cache_dir, debs, tmp_path):
    # The base is there; the packages' download is what cannot reach its server.
    line = bad(cache_dir, tmp_path, "--extra-repo", f"deb [trusted=yes] {UNREACHABLE} pp-nowhere main",
               str(debs(CLEAN)), code=3)
    assert line == (
        f"piuparts: error: --extra-repo: cannot fetch {UNREACHABLE}/dists/pp-nowhere/InRelease (Could not "
        "connect to 127.0.0.1:9 (127.0.0.1). - connect (111: Connection refused)); check that the "
        "repository's URL is right and reachable from this machine")


def test_scripts_directory_that_does_not_exist(tmp_path, debs):
    assert bad(tmp_path / "cache", tmp_path, "--scriptsdir", str(tmp_path / "nope"), str(debs(CLEAN))) == (
        f"piuparts: error: --scriptsdir {tmp_path}/nope: no such directory")


@pytest.mark.parametrize("args, message", [
    (["-b", "/srv/base.tgz", "--schroot", "sid"],
     "-b and --schroot contradict each other: each says where the chroot comes from; give only one"),
    (["--hard-link"], "--hard-link only applies to -e/--existing-chroot"),
    (["--install-remove-install", "--install-purge-install"],
     "--install-remove-install and --install-purge-install contradict each other; pick one"),
], ids=["basetgz-and-schroot", "hard-link-without-existing", "remove-and-purge-install"])
def test_options_that_contradict_each_other(tmp_path, debs, args, message):
    assert bad(tmp_path / "cache", tmp_path, *args, str(debs(CLEAN))) == f"piuparts: error: {message}"


# --- the machine -----------------------------------------------------------------------

def test_not_root_says_why(tmp_path):
    for args in (["--apt", "hello"], ["cleanup"]):
        proc = subprocess.run([*NOT_ROOT, *PIUPARTS, *args, "--cache-dir", str(tmp_path / "cache")], check=False,
                              capture_output=True, text=True)
        assert error_of(proc.returncode, proc.stdout, proc.stderr, 2) == (
            "piuparts: error: must run as root: building the chroot and mounting overlayfs, proc and devpts "
            "need it (run it with sudo)")
    assert not (tmp_path / "cache").exists()


def test_cache_directory_under_a_file(tmp_path):
    (tmp_path / "file-not-dir").write_text("")
    cache = tmp_path / "file-not-dir" / "cache"
    assert bad(cache, tmp_path, "--apt", "hello") == (
        f"piuparts: error: cannot write to the cache directory {cache} (Not a directory); "
        "free some space or choose another with --cache-dir")


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[list[Path]]:
    """Mount points the test makes; unmounted at teardown."""
    points: list[Path] = []
    yield points
    for point in reversed(points):
        subprocess.run(["umount", str(point)], check=True)


def test_read_only_cache_directory(tmp_path, mounted):
    point = tmp_path / "ro"
    point.mkdir()
    subprocess.run(["mount", "--bind", str(point), str(point)], check=True)
    mounted.append(point)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(point)], check=True)
    cache = point / "cache"
    assert bad(cache, tmp_path, "--apt", "hello") == (
        f"piuparts: error: cannot write to the cache directory {cache} (Read-only file system); "
        "free some space or choose another with --cache-dir")


def test_full_cache_directory(tmp_path, mounted):
    point = tmp_path / "full"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(point)], check=True)
    mounted.append(point)
    cache = point / "cache"
    cache.mkdir()
    subprocess.run(["dd", "if=/dev/zero", f"of={point}/filler", "bs=4k"], check=False, capture_output=True)  # fills it
    assert bad(cache, tmp_path, "--apt", "hello") == (
        f"piuparts: error: cannot write to the cache directory {cache} (No space left on device); "
        "free some space or choose another with --cache-dir")
