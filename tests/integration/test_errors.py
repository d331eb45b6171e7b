"""Bad input and a broken test bed: one line, the right exit code, nothing left."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import PIUPARTS
from tests.debs import CLEAN, DebSpec
from tests.integration.helpers import leaks, piuparts


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_missing_file_is_a_usage_error(tmp_path):
    proc = subprocess.run([*PIUPARTS, str(tmp_path / "nope_1.0_all.deb")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (
        f"piuparts: error: {tmp_path}/nope_1.0_all.deb: no such file; "
        "give the path of a .deb or .changes file, or --apt NAME")


def test_text_file_is_not_a_deb(tmp_path):
    bogus = tmp_path / "bogus_1.0_all.deb"
    bogus.write_text("hello\n")
    proc = subprocess.run([*PIUPARTS, str(bogus)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr).startswith(f"piuparts: error: {bogus}: not a valid Debian package (.deb)")


def test_nothing_to_test(tmp_path):
    proc = subprocess.run(PIUPARTS, capture_output=True, text=True)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == "piuparts: error: nothing to test: give .deb or .changes files, or --apt NAME"


@pytest.mark.root
def test_not_root_says_why(debs, tmp_path):
    # In a fresh user namespace the process is not root (euid 65534) but can
    # still read the virtual environment, wherever it lives.
    proc = subprocess.run(["unshare", "--user", "--", *PIUPARTS, "--cache-dir", str(tmp_path / "c"),
                           str(debs(CLEAN))], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert one_error_line(proc.stderr) == (
        "piuparts: error: must run as root: building the chroot and mounting overlayfs, proc and devpts "
        "need it (run it with sudo)")


@pytest.mark.root
def test_unknown_distribution(cache_dir, tmp_path):
    run = piuparts(cache_dir, tmp_path, "-d", "nosuchdist", "--apt", "hello")
    assert run.returncode == 2
    assert one_error_line(run.stderr).startswith("piuparts: error: unknown distribution 'nosuchdist'")


@pytest.mark.root
def test_unreachable_mirror_is_a_testbed_failure(tmp_path):
    cache = tmp_path / "cache"
    run = piuparts(cache, tmp_path, "-m", "http://127.0.0.1:9/debian", "--apt", "hello")
    assert run.returncode == 3
    line = one_error_line(run.stderr)
    assert line.startswith("piuparts: error: debootstrap of ")
    assert "from http://127.0.0.1:9/debian failed with exit code" in line
    assert run.report == {"verdict": "ERROR", "exit_code": 3, "error": line.removeprefix("piuparts: error: ")}
    assert leaks(cache) == []


@pytest.mark.root
@pytest.mark.network
def test_unknown_archive_package_is_a_usage_error(cache_dir, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--apt", "no-such-package-pp")
    assert run.returncode == 2
    assert one_error_line(run.stderr) == (
        "piuparts: error: --apt no-such-package-pp: no repository in the chroot's apt sources has this package; "
        "check the name, the distribution (-d) and the mirror (-m)")
    assert leaks(cache_dir) == []


@pytest.mark.root
def test_unwritable_cache_dir(tmp_path):
    (tmp_path / "file-not-dir").write_text("")
    run = piuparts(tmp_path / "file-not-dir" / "cache", tmp_path, "--apt", "hello")
    # A regular file where a directory should be: the cache cannot be made.
    assert run.returncode == 2
    assert one_error_line(run.stderr) == (
        f"piuparts: error: cannot write to the cache directory {tmp_path}/file-not-dir/cache (Not a directory); "
        "free some space or choose another with --cache-dir")


@pytest.mark.root
@pytest.mark.network
def test_instance_out_of_space_is_a_testbed_failure(cache_dir, tmp_path):
    big = DebSpec("pp-big", files={"/usr/share/pp-big/blob": "x" * (4 * 1024 * 1024)}).build(tmp_path)
    run = piuparts(cache_dir, tmp_path, "--tmpfs-size", "2m", "--no-upgrade-test", str(big))
    assert run.returncode == 3, run.stdout + run.stderr
    line = one_error_line(run.stderr)
    assert line.startswith("piuparts: error: install: the instance ran out of space (")
    assert line.endswith("); give it more with --tmpfs-size or keep it on disk with --no-tmpfs")
    assert leaks(cache_dir) == []


@pytest.mark.root
@pytest.mark.network
def test_instance_on_disk_with_no_tmpfs(cache_dir, debs, tmp_path):
    run = piuparts(cache_dir, tmp_path, "--no-tmpfs", "--no-upgrade-test", str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert leaks(cache_dir) == []
