"""Reading a section's packages: Packages files through python-debian, a reprepro repository from disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from piuparts.batch import archive
from piuparts.batch.config import Section
from piuparts.errors import TestbedError
from tests.debs import DebSpec

PACKAGES = """\
Package: nova-common
Version: 2:26.0.0-1
Architecture: all
Maintainer: Debian OpenStack <team+openstack@tracker.debian.org>
Depends: python3-nova (= 2:26.0.0-1), adduser | passwd, ${misc:Depends}
Pre-Depends: dpkg (>= 1.17)
Source: nova

Package: python3-nova
Version: 2:26.0.0-1
Architecture: all
Maintainer: Debian OpenStack <team+openstack@tracker.debian.org>
Depends: python3:any (>= 3.9)
Provides: python3-nova-api
Source: nova (2:26.0.0-1)

Package: python3-nova
Version: 2:25.0.0-1
Architecture: all
Maintainer: Debian OpenStack <team+openstack@tracker.debian.org>

Package: coreutils
Version: 9.1-1
Architecture: amd64
Essential: yes
Maintainer: Michael Stone <mstone@debian.org>
"""


def test_parse_packages_relations_provides_and_highest_version() -> None:
    found = archive.parse_packages(PACKAGES)
    nova = found["nova-common"]
    assert nova.depends == (("dpkg",), ("python3-nova",), ("adduser", "passwd"), ("${misc:Depends}",))
    assert nova.source == "nova"
    assert found["python3-nova"].version == "2:26.0.0-1" and found["python3-nova"].provides == ("python3-nova-api",)
    assert found["python3-nova"].depends == (("python3",),) and found["python3-nova"].source == "nova"
    assert found["coreutils"].essential


def test_selection_by_globs_and_maintainer() -> None:
    found = archive.parse_packages(PACKAGES)
    by_glob = Section("s", "bookworm", packages=("python3-*",))
    assert list(archive.selected(by_glob, found)) == ["python3-nova"]
    import re
    team = Section("s", "bookworm", maintainer=re.compile(r"team\+openstack@"))
    assert sorted(archive.selected(team, found)) == ["nova-common", "python3-nova"]
    uploader = Section("s", "bookworm", maintainer=re.compile(r"mstone|zigo"))
    assert sorted(archive.selected(uploader, found, {"nova": "x, Thomas Goirand <zigo@debian.org>"})) == \
        ["coreutils", "nova-common", "python3-nova"]


def reprepro(tmp_path: Path, debs: list[Path]) -> Path:
    repo = tmp_path / "repo"
    (repo / "conf").mkdir(parents=True)
    (repo / "conf" / "distributions").write_text(
        "Codename: bookworm\nSuite: bookworm\nComponents: main\nArchitectures: amd64 source\n")
    for deb in debs:
        subprocess.run(["reprepro", "-b", str(repo), "includedeb", "bookworm", str(deb)], check=True,
                       capture_output=True)
    return repo


def test_repository_section_reads_the_reprepro_repository_from_disk(tmp_path: Path) -> None:
    debs = [DebSpec("pp-a", depends="pp-b | pp-c").build(tmp_path), DebSpec("pp-b", "2.0-1").build(tmp_path)]
    repo = reprepro(tmp_path, debs)
    mirror = tmp_path / "mirror"
    main = mirror / "dists/bookworm/main/binary-amd64"
    main.mkdir(parents=True)
    (main / "Packages").write_text(PACKAGES)
    section = Section("team", "bookworm", mirror=f"file://{mirror}",
                      repository=f"deb [trusted=yes] file://{repo} bookworm main")
    read = archive.read(section, "amd64", tmp_path / "cache")
    assert sorted(read.packages) == ["pp-a", "pp-b"]
    assert read.packages["pp-a"].depends == (("pp-b", "pp-c"),) and read.packages["pp-b"].version == "2.0-1"
    assert {"nova-common", "python3-nova", "python3-nova-api", "coreutils"} <= read.available
    assert "pp-a" not in read.available


def test_an_unreachable_mirror_is_a_testbed_error(tmp_path: Path) -> None:
    section = Section("s", "bookworm", mirror="http://127.0.0.1:9/debian")
    with pytest.raises(TestbedError, match="cannot read http://127.0.0.1:9/debian/dists/bookworm/main/binary-amd64"):
        archive.read(section, "amd64", tmp_path)


def test_a_distro_that_distros_conf_names_reads_its_candidates(tmp_path: Path) -> None:
    """piuparts.debian.org's [bullseye-next]: the virtual distro's Packages are its
    candidates', each from its own uri and distribution; the highest version wins."""
    mirror, security = tmp_path / "mirror", tmp_path / "security"
    for top, suite, text in ((mirror, "bullseye", PACKAGES), (mirror, "bullseye-proposed-updates",
                              "Package: coreutils\nVersion: 9.1-2\nArchitecture: amd64\nMaintainer: M <m@d.o>\n"),
                             (security, "bullseye-security",
                              "Package: pp-sec\nVersion: 1.0-1\nArchitecture: all\nMaintainer: M <m@d.o>\n")):
        (top / f"dists/{suite}/main/binary-amd64").mkdir(parents=True)
        (top / f"dists/{suite}/main/binary-amd64/Packages").write_text(text)
    conf = tmp_path / "distros.conf"
    conf.write_text(f"[bullseye-security]\nuri = file://{security}\ndepends = bullseye\n\n"
                    "[bullseye-proposed-updates]\ndepends = bullseye\n\n"
                    "[bullseye-next]\nuri = None\ndepends = bullseye bullseye-security bullseye-proposed-updates\n"
                    "candidates = bullseye bullseye-security bullseye-proposed-updates\n")
    section = Section("bullseye-next", "bullseye-next", mirror=f"file://{mirror}", distros_conf=conf)
    read = archive.read(section, "amd64", tmp_path / "cache")
    assert sorted(read.packages) == ["coreutils", "nova-common", "pp-sec", "python3-nova"]
    assert read.packages["coreutils"].version == "9.1-2"
    # Without a block for it, a distro is its own suite, as before.
    plain = Section("s", "bullseye", mirror=f"file://{mirror}", distros_conf=conf)
    assert archive.distro_indexes(plain, "amd64", ["main"]) == [f"file://{mirror}/dists/bullseye/main/binary-amd64/Packages"]
