"""What the contract suite does not cover of the tarball and existing backends:
-s/-b round trips, a changed tarball, -p and pbuilderrc, and bad input
(one line, exit 2, nothing left behind)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from piuparts import resources, state
from piuparts.backends.base import BaseSpec
from piuparts.backends.tarball import TarballBackend
from piuparts.backends.tarball import pbuilder_basetgz
from tests.backend_cases import pbuilder as pbuilder_case
from tests.backend_cases.tarball import debootstrap_base, saved_tarball
from tests.conftest import PIUPARTS
from tests.debs import CLEAN
from tests.integration.helpers import leaks, piuparts

pytestmark = [pytest.mark.root, pytest.mark.network]

HOW_TO_FIX = "give a base tarball made by 'piuparts -s' or 'pbuilder create'"


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def base_of(cache_dir: Path, tarball: Path) -> Path:
    """Where the tarball backend unpacks ``tarball``."""
    return TarballBackend(BaseSpec("unused", "unused", "unused"), cache_dir, tarball).base_dir


@pytest.fixture
def forget_bases(cache_dir: Path) -> Iterator[Callable[[Path], Path]]:
    """Register a tarball of the test's own; its unpacked base is removed at the end."""
    made: list[Path] = []

    def register(tarball: Path) -> Path:
        made.append(base_of(cache_dir, tarball))
        return tarball
    yield register
    for base in made:
        resources.remove_tree(base)
        base.with_name(f"{base.name}.lock").unlink(missing_ok=True)


def test_save_writes_a_tarball_that_basetgz_takes(cache_dir, debs, tmp_path, forget_bases):
    saved = forget_bases(tmp_path / "saved.tgz")
    run = piuparts(cache_dir, tmp_path, "-s", str(saved), "--no-upgrade-test", str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no partial file
    listing = subprocess.run(["tar", "--list", "--verbose", "--numeric-owner", f"--file={saved}"],
                             capture_output=True, text=True, check=True).stdout
    assert re.search(r"^crw-rw-rw- 0/0 +1,3 .* \./dev/null$", listing, re.M), "no device node"
    assert re.search(r"^drwxrwsr-x 0/8 .* \./var/mail/$", listing, re.M), "owner or mode lost"
    assert re.search(r"^-rwxr-xr-x 0/0 .* \./usr/sbin/policy-rc\.d$", listing, re.M)

    again = tmp_path / "again.tgz"
    run = piuparts(cache_dir, tmp_path, "-b", str(saved), "-s", str(again), "--no-upgrade-test", str(debs(CLEAN)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert (run.report["verdict"], run.report["backend"]) == ("PASS", "tarball")
    assert f"Unpacking the base tarball {saved}" in run.stdout
    assert again.is_file() and leaks(cache_dir) == []

    # The unpacked base is the saved one: same paths, types, modes, owners, devices, contents
    # (apart from what finishing it refreshes).
    refreshed = state.Ignores([(r"/var/lib/apt/lists/.*", "test"), (r"/var/cache/apt/.*", "test"),
                               (r"/etc/resolv\.conf", "test")])
    unpacked = state.snapshot(base_of(cache_dir, saved) / "current" / "root", prune=refreshed)
    with debootstrap_base(cache_dir) as backend:
        original = state.snapshot(backend.root, prune=refreshed)
    assert not refreshed.filter(state.diff(original, unpacked))


def test_changed_tarball_is_unpacked_again(cache_dir, debs, tmp_path, forget_bases):
    tarball = forget_bases(tmp_path / "base.tgz")
    shutil.copyfile(saved_tarball(cache_dir), tarball)
    args = ("-b", str(tarball), "--no-upgrade-test", str(debs(CLEAN)))
    first = piuparts(cache_dir, tmp_path, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"Unpacking the base tarball {tarball}" in first.stdout

    cached = piuparts(cache_dir, tmp_path, *args)
    assert cached.returncode == 0, cached.stdout + cached.stderr
    assert "Unpacking" not in cached.stdout
    assert f"Using cached base {base_of(cache_dir, tarball)}" in cached.stdout

    replacement = tmp_path / "replacement.tgz"  # a new file in its place, as pbuilder update does
    shutil.copyfile(saved_tarball(cache_dir), replacement)
    os.rename(replacement, tarball)
    changed = piuparts(cache_dir, tmp_path, *args)
    assert changed.returncode == 0, changed.stdout + changed.stderr
    assert f"the base tarball {tarball} changed since it was unpacked" in changed.stdout
    assert f"Unpacking the base tarball {tarball}" in changed.stdout
    assert leaks(cache_dir) == []


def test_pbuilder_basetgz_comes_from_the_users_pbuilderrc(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".pbuilderrc").write_text('# mine\nBASETGZ="/srv/pb/sid.tgz"\nexport BASETGZ=/srv/pb/bookworm.tgz\n')
    assert pbuilder_basetgz() == Path("/srv/pb/bookworm.tgz")


@pytest.mark.skipif(pbuilder_case.available() is not None and not os.environ.get("CI"),
                    reason=str(pbuilder_case.available()))
def test_pbuilder_option_takes_basetgz_from_pbuilderrc(cache_dir, debs, tmp_path):
    basetgz = pbuilder_case.basetgz(cache_dir)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".pbuilderrc").write_text(f'BASETGZ="{basetgz}"\n')
    report = tmp_path / "report.json"
    proc = subprocess.run([*PIUPARTS, "--cache-dir", str(cache_dir), "--json", str(report), "-p",
                           "--no-upgrade-test", str(debs(CLEAN))],
                          env={**os.environ, "HOME": str(home)}, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(report.read_text())["backend"] == "tarball"
    assert str(base_of(cache_dir, basetgz)) in proc.stdout
    assert leaks(cache_dir) == []


def test_pbuilder_option_without_a_basetgz(tmp_path, debs):
    (tmp_path / ".pbuilderrc").write_text(f"BASETGZ={tmp_path}/none.tgz\n")
    proc = subprocess.run([*PIUPARTS, "-p", str(debs(CLEAN))], env={**os.environ, "HOME": str(tmp_path)},
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (f"piuparts: error: -p: the base tarball {tmp_path}/none.tgz does "
                                           "not exist (make one with 'pbuilder create')")


def _bad_tarball_run(cache_dir: Path, tmp_path: Path, tarball: Path, debs) -> str:
    run = piuparts(cache_dir, tmp_path, "-b", str(tarball), str(debs(CLEAN)))
    assert run.returncode == 2, run.stdout + run.stderr
    assert not base_of(cache_dir, tarball).exists()  # nothing half unpacked stays
    assert leaks(cache_dir) == []
    return one_error_line(run.stderr)


def test_basetgz_that_is_not_a_tarball(cache_dir, debs, tmp_path):
    bogus = tmp_path / "base.tgz"
    bogus.write_text("not a tarball\n" * 100)
    assert _bad_tarball_run(cache_dir, tmp_path, bogus, debs) == (
        f"piuparts: error: {bogus} is not a tar archive (neither plain nor compressed with gzip, xz, zstd, "
        f"bzip2 or lzma); {HOW_TO_FIX}")


def test_damaged_tarball(cache_dir, debs, tmp_path, forget_bases):
    damaged = forget_bases(tmp_path / "damaged.tgz")
    with open(saved_tarball(cache_dir), "rb") as whole:
        damaged.write_bytes(whole.read(4 << 20))  # cut short
    line = _bad_tarball_run(cache_dir, tmp_path, damaged, debs)
    assert line.startswith(f"piuparts: error: the base tarball {damaged} cannot be unpacked (")
    assert line.endswith(f"); it is damaged or not a tarball; {HOW_TO_FIX}")


def test_tarball_without_a_debian_system(cache_dir, debs, tmp_path, forget_bases):
    (tmp_path / "tree/etc").mkdir(parents=True)
    (tmp_path / "tree/etc/hello").write_text("hello\n")
    tarball = forget_bases(tmp_path / "other.tar.gz")
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(tmp_path / "tree"), "."], check=True)
    assert _bad_tarball_run(cache_dir, tmp_path, tarball, debs) == (
        f"piuparts: error: the base tarball {tarball} holds no Debian system (no var/lib/dpkg/status in it); "
        f"{HOW_TO_FIX}")


def test_save_into_a_missing_directory(cache_dir, debs, tmp_path):
    target = tmp_path / "nowhere" / "base.tgz"
    run = piuparts(cache_dir, tmp_path, "-s", str(target), str(debs(CLEAN)))
    assert run.returncode == 2, run.stdout + run.stderr
    assert one_error_line(run.stderr) == (
        f"piuparts: error: -s {target}: cannot write in {target.parent} (no such directory, or not writable); "
        "choose another place for the tarball")
    assert leaks(cache_dir) == []


def test_existing_dir_that_is_not_a_debian_tree(tmp_path, debs):
    proc = subprocess.run([*PIUPARTS, "-e", str(tmp_path), str(debs(CLEAN))], capture_output=True, text=True)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == (
        f"piuparts: error: -e {tmp_path}: not a Debian system (no var/lib/dpkg/status in it)")


def test_hard_link_without_existing(debs):
    proc = subprocess.run([*PIUPARTS, "--hard-link", str(debs(CLEAN))], capture_output=True, text=True)
    assert proc.returncode == 2
    assert one_error_line(proc.stderr) == "piuparts: error: --hard-link only applies to -e/--existing-chroot"


def test_hard_link_across_filesystems(debs, tmp_path):
    tree = tmp_path / "tree"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text("")
    cache = Path(subprocess.run(["mktemp", "-d", "-p", "/dev/shm"], capture_output=True, text=True,
                                check=True).stdout.strip())  # a tmpfs, not tmp_path's filesystem
    try:
        run = piuparts(cache, tmp_path, "-e", str(tree), "--hard-link", str(debs(CLEAN)))
        assert run.returncode == 2, run.stdout + run.stderr
        assert one_error_line(run.stderr) == (
            f"piuparts: error: --hard-link: {tree} and the cache directory {cache} are on different filesystems "
            f"and hard links cannot cross them; give a --cache-dir on the filesystem of {tree}, "
            "or leave out --hard-link")
        assert leaks(cache) == []
    finally:
        shutil.rmtree(cache)


def test_existing_backend_cannot_save(cache_dir, debs, tmp_path):
    tree = tmp_path / "tree"  # the error comes before any instance: no need for a whole system
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text("")
    run = piuparts(cache_dir, tmp_path, "-e", str(tree), "-s", str(tmp_path / "x.tgz"), str(debs(CLEAN)))
    assert run.returncode == 2, run.stdout + run.stderr
    assert one_error_line(run.stderr) == (
        "piuparts: error: -s/--save: the existing backend cannot save its base as a tarball")
    assert not (tmp_path / "x.tgz").exists()


def test_ctrl_c_while_unpacking_leaves_nothing(cache_dir, debs, tmp_path, forget_bases):
    tarball = forget_bases(tmp_path / "base.tgz")
    shutil.copyfile(saved_tarball(cache_dir), tarball)
    proc = subprocess.Popen([*PIUPARTS, "--cache-dir", str(cache_dir), "-b", str(tarball), str(debs(CLEAN))],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not _unpacking(tarball):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert not base_of(cache_dir, tarball).exists()
    assert leaks(cache_dir) == [] and not _unpacking(tarball)


def _unpacking(tarball: Path) -> bool:
    """True while a tar process unpacks ``tarball``."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0] == b"tar" and f"--file={tarball}".encode() in argv:
            return True
    return False
