"""/etc/piuparts/distros.conf as piuparts reads it: chains, aliases, virtual
names, target releases, and what the first -d and the later ones then mean."""

from __future__ import annotations

from pathlib import Path

import pytest

from piuparts import instance_setup
from piuparts.cli import config_from_argv
from piuparts.distros import Distros, Upgrade, resolve, upgrade
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

[bullseye-next]
uri = None
depends = bullseye bullseye-security bullseye-updates
candidates = bullseye bullseye-security

[bullseye-security]
uri = http://security.debian.org
distribution = bullseye-security
depends = bullseye

[bullseye-updates]
depends = bullseye

[experimental]
depends = sid
target-release = experimental

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


def test_a_later_d_renames_the_suite_or_writes_a_chain_whole(conf: Path) -> None:
    distros = Distros.read(conf)
    # No block, or an alias: the suite of the instance's entries renamed, as without the file.
    assert upgrade(distros, "trixie", MIRROR, ["main"], after_chain=False) == Upgrade("trixie", "trixie", "", "", None)
    assert upgrade(distros, "stable", MIRROR, ["main"], after_chain=False) == Upgrade("bullseye", "bullseye", "", "", None)
    # piuparts.debian.org's bullseye2next: the virtual name is its chain, its hooks see its first suite.
    next_ = upgrade(distros, "bullseye-next", MIRROR, ["main"], after_chain=False)
    assert (next_.name, next_.hooks_name, next_.target_release) == ("bullseye-next", "bullseye", "")
    assert next_.sources == (f"deb {MIRROR} bullseye main\ndeb http://security.debian.org bullseye-security main\n"
                             f"deb {MIRROR} bullseye-updates main\n")
    assert next_.said == f"-d bullseye-next: {conf} makes it bullseye + bullseye-security + bullseye-updates"
    # sid2experimental: over sid, installing from experimental once there.
    experimental = upgrade(distros, "experimental", MIRROR, ["main"], after_chain=False)
    assert (experimental.sources, experimental.target_release) == (
        f"deb {MIRROR} sid main\ndeb {MIRROR} experimental main\n", "experimental")
    # After a chain, a plain name is written whole too: there is no one suite left to rename.
    assert upgrade(distros, "bookworm", MIRROR, ["main", "contrib"], after_chain=True) == Upgrade(
        "bookworm", "bookworm", f"deb {MIRROR} bookworm main\ndeb {MIRROR} bookworm contrib\n", "", None)


def test_the_command_line_carries_each_later_d_and_what_the_hooks_see(conf: Path) -> None:
    config, _ = config_from_argv(["-d", "bullseye", "-d", "bullseye-next", "-d", "bookworm", "--distros-conf",
                                  str(conf), "-m", MIRROR, "--arch", "amd64", "--apt", "hello"])
    assert config.distributions == ("bullseye", "bullseye-next", "bookworm")
    assert [config.hooks_name(i) for i in range(3)] == ["bullseye", "bullseye", "bookworm"]
    assert config.upgrade(1)[0].startswith(f"deb {MIRROR} bullseye main\n")
    assert config.upgrade(2) == (f"deb {MIRROR} bookworm main\n", "")
    team, _ = config_from_argv(["-d", "bookworm-team", "-d", "trixie", "--distros-conf", str(conf), "-m", MIRROR,
                                "--arch", "amd64"])
    assert team.distributions == ("bookworm", "trixie") and team.hooks_name(0) == "team"
    assert team.upgrade(1) == (f"deb {MIRROR} trixie main\n", "")
    # Without distros.conf's say, nothing new in the configuration (and the same reference keys as before).
    plain, _ = config_from_argv(["-d", "bookworm", "-d", "trixie", "--distros-conf", str(conf), "-m", MIRROR,
                                 "--arch", "amd64"])
    assert (plain.distribution_names, plain.upgrades) == ((), ())
    assert plain.upgrade(1) == ("", "") and plain.hooks_name(1) == "trixie"


def test_mistakes_are_one_line(conf: Path) -> None:
    with pytest.raises(UsageError, match=r"\[loop-a\] depends on itself \(loop-a -> loop-b -> loop-a\)"):
        Distros.read(conf).chain("loop-a")
    with pytest.raises(UsageError, match=r"-d 'stretch/updates': not a distribution name"):
        config_from_argv(["-d", "stretch", "-d", "stretch/updates", "--distros-conf", str(conf), "-m", MIRROR])
    injected = conf.parent / "injected.conf"
    injected.write_text('[bookworm-x]\ndepends = bookworm\ntarget-release = x"; Dir "/\n')
    with pytest.raises(UsageError, match=r"\[bookworm-x\] target-release 'x\"; Dir \"/' is not a release name"):
        config_from_argv(["-d", "bookworm", "-d", "bookworm-x", "--distros-conf", str(injected), "-m", MIRROR])
    broken = conf.parent / "broken.conf"
    broken.write_text("uri = nowhere\n")
    with pytest.raises(UsageError, match=r"broken.conf: not a distros.conf \(File contains no section headers"):
        Distros.read(broken)
