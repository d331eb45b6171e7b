"""Base generations, with the one command seam faked: the exact commands a
base build and a lists refresh run, and which generation each run holds."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from contextlib import contextmanager
from typing import Iterator

from piuparts import command
from piuparts.backends import BaseSpec, common
from piuparts.chroot import Chroot
from piuparts.backends import debootstrap
from piuparts.backends.debootstrap import SCRIPTS, DebootstrapBackend

MIRROR = "http://mirror.invalid/debian"

pytestmark = pytest.mark.skipif(not (SCRIPTS / "bookworm").exists(), reason="debootstrap is not installed")


def fake_debootstrap(argv: tuple[str, ...]) -> command.Result:
    """What debootstrap leaves: a tree with a dpkg database."""
    root = Path(argv[-2])
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("Package: base-files\nStatus: install ok installed\n")
    for inner in ("proc", "dev/pts", "dev/shm", "etc", "var/cache/apt"):
        (root / inner).mkdir(parents=True, exist_ok=True)
    return command.Result(argv, 0, "", 0.0)


def pkgcache(argv: tuple[str, ...]) -> command.Result:
    (Path(argv[1]) / "var/cache/apt/pkgcache.bin").write_text("cache")
    return command.Result(argv, 0, "", 0.0)


@contextmanager
def plain_root(root: Path) -> Iterator[Chroot]:
    """The base being finished, entered with plain chroot: namespaces are the
    integration tests' business (tests/integration/test_isolation.py)."""
    yield Chroot(root, ("chroot", str(root)))


@pytest.fixture
def fake(fake_commands, monkeypatch):
    monkeypatch.setattr(common, "api_mounted", plain_root)
    fake_commands.on(r"debootstrap .*", fake_debootstrap)
    fake_commands.on(r"chroot \S+ dpkg-query .*", "ii ")
    fake_commands.on(r"chroot \S+ apt-cache gencaches", pkgcache)
    fake_commands.real(r"cp -a --one-file-system -- \S+ \S+")
    return fake_commands


def backend(cache: Path, **kwargs) -> DebootstrapBackend:
    return DebootstrapBackend(BaseSpec("bookworm", MIRROR, "amd64"), cache, **{"tool": "debootstrap", **kwargs})


def generic(cache: Path, calls: list[str]) -> list[str]:
    """The calls with the cache and the random build names made readable."""
    return [re.sub(r"\.build-\d+-[0-9a-f]+", ".build-X", c.replace(str(cache), "CACHE")) for c in calls]


def test_a_new_base_is_generation_one(tmp_path, fake):
    first = backend(tmp_path)
    first.prepare()
    key = first.base_dir.name
    assert os.readlink(first.base_dir / "current") == "gen-1"
    assert first.root == first.base_dir / "gen-1/root"
    assert generic(tmp_path, fake.commands("debootstrap")) == [
        f"debootstrap --variant=minbase --include=eatmydata --components=main --arch=amd64 bookworm "
        f"CACHE/bases/{key}/.build-X/root {MIRROR}"]
    assert generic(tmp_path, fake.commands("apt-get", "update")) == [
        f"chroot CACHE/bases/{key}/.build-X/root apt-get update"]
    assert (first.root / "usr/sbin/policy-rc.d").is_file()
    first.close()
    assert first.describe()["backend"] == "debootstrap"


def test_mmdebstrap_makes_the_same_minbase_under_a_name_of_its_own(tmp_path, fake):
    def fake_mmdebstrap(argv: tuple[str, ...]) -> command.Result:
        result = fake_debootstrap(argv)
        (Path(argv[-2]) / "var/lib/apt").mkdir(parents=True)
        (Path(argv[-2]) / "var/lib/apt/extended_states").write_text("Package: libffi8\nAuto-Installed: 1\n")
        return result
    fake.on(r"mmdebstrap .*", fake_mmdebstrap)
    made = backend(tmp_path, tool="mmdebstrap")
    made.prepare()
    # every package of the base manually installed, as debootstrap leaves them
    assert not (made.root / "var/lib/apt/extended_states").exists()
    key = made.base_dir.name
    assert key == backend(tmp_path).base_dir.name + "-mm"  # never taken for debootstrap's base
    assert generic(tmp_path, fake.commands("mmdebstrap")) == [
        "mmdebstrap --variant=minbase --include=eatmydata --components=main --architectures=amd64 "
        "--hook-dir=/usr/share/mmdebstrap/hooks/maybe-merged-usr --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata "
        '--skip=cleanup/apt/lists --aptopt=Acquire::Retries::Delay "false" '
        f"bookworm CACHE/bases/{key}/.build-X/root {MIRROR}"]
    assert fake.commands("debootstrap") == []
    assert made.describe()["tool"] == "mmdebstrap"
    made.close()


def test_debootstrap_makes_what_mmdebstrap_cannot(monkeypatch):
    monkeypatch.setattr(debootstrap.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(debootstrap, "MMDEBSTRAP_HOOKS", Path("/"))
    assert (debootstrap.choose_tool("bookworm"), debootstrap.choose_tool("jessie")) == ("mmdebstrap", "debootstrap")
    monkeypatch.setattr(debootstrap.shutil, "which", lambda name: None)
    assert debootstrap.choose_tool("bookworm") == "debootstrap"


def test_a_lists_refresh_makes_the_next_generation_beside_the_one_in_use(tmp_path, fake):
    first = backend(tmp_path)
    first.prepare()
    key = first.base_dir.name
    fake.calls.clear()
    second = backend(tmp_path, lists_max_age=0)  # its lists are too old for it
    second.prepare()
    assert generic(tmp_path, [" ".join(c) for c in fake.calls if c[0] in ("cp", "chroot", "debootstrap")
                              and "dpkg-query" not in c]) == [
        f"cp -a --one-file-system -- CACHE/bases/{key}/gen-1/root CACHE/bases/{key}/.build-X/root",
        f"chroot CACHE/bases/{key}/.build-X/root apt-get update",
        f"chroot CACHE/bases/{key}/.build-X/root apt-cache gencaches",
        f"chroot CACHE/bases/{key}/.build-X/root apt-get -y -o Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold dist-upgrade",
        f"chroot CACHE/bases/{key}/.build-X/root apt-get clean",
        f"chroot CACHE/bases/{key}/.build-X/root apt-cache gencaches"]
    assert (first.root, second.root) == (first.base_dir / "gen-1/root", first.base_dir / "gen-2/root")
    assert os.readlink(first.base_dir / "current") == "gen-2"
    second.close()
    assert (first.base_dir / "gen-1").is_dir(), "the first run still tests on it"
    first.close()
    assert sorted(p.name for p in first.base_dir.iterdir()) == ["current", "gen-2", "gen-2.lock"]


def test_a_run_that_finds_a_fresh_base_builds_nothing(tmp_path, fake):
    backend(tmp_path).prepare()
    fake.calls.clear()
    again = backend(tmp_path)
    again.prepare()
    assert [c for c in fake.calls if c[0] in ("debootstrap", "cp", "chroot")] == []
    assert again.root.name == "root" and again.root.parent.name == "gen-1"


def test_a_failed_first_build_leaves_no_directory(tmp_path, fake_commands, monkeypatch):
    monkeypatch.setattr(common, "api_mounted", plain_root)
    fake_commands.on(r"debootstrap .*", 1)
    failing = backend(tmp_path)
    with pytest.raises(Exception, match="debootstrap of bookworm"):
        failing.prepare()
    assert not failing.base_dir.exists()
    assert [p.name for p in (tmp_path / "bases").iterdir()] == [f"{failing.base_dir.name}.lock"]
