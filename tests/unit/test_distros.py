"""/etc/piuparts/distros.conf as piuparts reads it: chains, aliases, virtual
names, target releases, and what the first -d then means."""

from __future__ import annotations

from pathlib import Path

import pytest

from piuparts import instance_setup
from piuparts.cli import config_from_argv
from piuparts.distros import Distros, plain_suite, resolve
from piuparts.errors import UsageError

# Blocks as Debian's piuparts-common 1.1.7 ships them, and one of a team's own.
TEXT = """\
[stable]
distribution = bullseye

[stretch/updates]
uri = http://security.debian.org
depends = stretch

[stretch-lts]
uri = None
depends = stretch stretch/updates

[stretch-backports]
depends = stretch stretch/updates
target-release = stretch-backports

[bookworm-team]
uri = file:///srv/team
distribution = team
components = main
depends = bookworm
target-release = team

[loop-a]
depends = loop-b

[loop-b]
depends = loop-a
"""
MIRROR = "http://mirror.invalid/debian"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "distros.conf"
    path.write_text(TEXT)
    return path


def test_a_chain_is_its_dependencies_first_each_with_its_own_mirror(conf: Path) -> None:
    distros = Distros.read(conf)
    assert distros.chain("stretch-backports") == ["stretch", "stretch/updates", "stretch-backports"]
    assert distros.apt_lines("stretch-backports", MIRROR, ["main", "contrib"]) == [
        f"deb {MIRROR} stretch main", f"deb {MIRROR} stretch contrib",
        "deb http://security.debian.org stretch/updates main", "deb http://security.debian.org stretch/updates contrib",
        f"deb {MIRROR} stretch-backports main", f"deb {MIRROR} stretch-backports contrib"]
    # A virtual name is its depends alone; a block's components limit its lines.
    assert distros.chain("stretch-lts") == ["stretch", "stretch/updates"]
    assert distros.apt_lines("bookworm-team", MIRROR, ["main", "contrib"]) == [
        f"deb {MIRROR} bookworm main", f"deb {MIRROR} bookworm contrib", "deb file:///srv/team team main"]


def test_the_first_d_starts_in_the_chains_first_suite_with_the_whole_chain_as_sources(conf: Path) -> None:
    start = resolve(Distros.read(conf), "bookworm-team", MIRROR, ["main"])
    assert start is not None
    assert (start.base_suite, start.base_mirror, start.target_release) == ("bookworm", MIRROR, "team")
    assert start.sources == f"deb {MIRROR} bookworm main\ndeb file:///srv/team team main\n"
    assert start.said == f"-d bookworm-team: {conf} makes it bookworm + team, installing from team"
    alias = resolve(Distros.read(conf), "stable", MIRROR, ["main"])
    assert alias is not None and (alias.base_suite, alias.sources) == ("bullseye", f"deb {MIRROR} bullseye main\n")
    assert resolve(Distros.read(conf), "trixie", MIRROR, ["main"]) is None  # no block: one suite, as before


def test_the_command_line_uses_it_for_the_first_d_and_sets_the_target_release(conf: Path) -> None:
    config, _ = config_from_argv(["-d", "bookworm-team", "-d", "stable", "--distros-conf", str(conf),
                                  "-m", MIRROR, "--arch", "amd64", "--apt", "hello"])
    assert config.distributions == ("bookworm", "bullseye") and config.mirror == MIRROR
    assert config.apt_sources == f"deb {MIRROR} bookworm main\ndeb file:///srv/team team main\n"
    assert 'APT::Default-Release "team";' in (instance_setup.apt_conf(config) or "")
    plain, _ = config_from_argv(["-d", "bookworm", "--distros-conf", str(conf), "-m", MIRROR, "--arch", "amd64"])
    assert (plain.apt_sources, plain.default_release) == (None, None)
    missing, _ = config_from_argv(["-d", "stable", "--distros-conf", str(conf.parent / "none"), "-m", MIRROR])
    assert missing.distributions == ("stable",)  # without the file, a name is its suite


def test_mistakes_are_one_line(conf: Path) -> None:
    with pytest.raises(UsageError, match=r"\[loop-a\] depends on itself \(loop-a -> loop-b -> loop-a\)"):
        Distros.read(conf).chain("loop-a")
    with pytest.raises(UsageError, match="takes only as the first -d"):
        plain_suite(Distros.read(conf), "stretch-backports")
    broken = conf.parent / "broken.conf"
    broken.write_text("uri = nowhere\n")
    with pytest.raises(UsageError, match=r"broken.conf: not a distros.conf \(File contains no section headers"):
        Distros.read(broken)
