"""piuparts.inroot: links a package planted never lead the harness out of the root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from piuparts import inroot


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    """An instance root whose /tmp/debs, /etc/shadow and /var/x lead out to ``host``."""
    root, host = tmp_path / "root", tmp_path / "host"
    (root / "tmp").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "var").mkdir()
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    os.symlink(str(host), root / "tmp/debs")                          # absolute, meant for the chroot
    os.symlink(str(host / "secret"), root / "etc/shadow")
    os.symlink("../" * 10 + str(host).lstrip("/"), root / "var/x")    # climbing past the root
    return root, host


def tree(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*"))


def test_a_copy_through_a_link_lands_inside(trees, tmp_path):
    root, host = trees
    source = tmp_path / "pp_2.0_all.deb"
    source.write_bytes(b"deb")
    inroot.copy_file(source, root, "/tmp/debs/pp_2.0_all.deb")
    assert tree(host) == ["secret"]
    inside = str(host).lstrip("/")
    assert f"{inside}/pp_2.0_all.deb" in tree(root)  # where the link points, as the chroot sees it
    assert inroot.read_bytes(root, "/tmp/debs/pp_2.0_all.deb") == b"deb"


def test_reads_never_leave_the_root(trees):
    root, host = trees
    assert inroot.read_text(root, "/etc/shadow") == ""
    assert inroot.read_text(root, "/var/x/secret") == ""
    assert inroot.read_bytes(root, "/../../../.." + str(host / "secret")) is None
    assert inroot.read_bytes(root, "/tmp") is None  # a directory is no file


def test_writes_replace_a_link_instead_of_following_it(trees):
    root, host = trees
    inroot.write_text(root, "/etc/shadow", "inside\n", 0o600)
    assert (host / "secret").read_text() == "host secret\n"
    assert not (root / "etc/shadow").is_symlink()
    assert (root / "etc/shadow").read_text() == "inside\n"
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o600


def test_remove_tree_removes_the_link_only(trees):
    root, host = trees
    inroot.remove_tree(root, "/tmp/debs")
    assert not os.path.lexists(root / "tmp/debs")
    assert tree(host) == ["secret"]


def test_without_following_a_link_is_no_directory(trees):
    root, _ = trees
    assert inroot.listdir(root, "/tmp/debs", follow=False) == []
    assert inroot.is_dir(root, "/tmp")


def test_makedirs_through_a_dangling_link_makes_its_target_inside(tmp_path):
    root = tmp_path / "root"
    (root / "tmp").mkdir(parents=True)
    os.symlink("/srv/elsewhere/debs", root / "tmp/piuparts-debs")
    inroot.makedirs(root, "/tmp/piuparts-debs")
    assert (root / "srv/elsewhere/debs").is_dir()
    assert not Path("/srv/elsewhere").exists()
