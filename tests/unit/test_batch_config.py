"""The batch configuration: piuparts.conf's keys, one-line errors naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from piuparts.batch import config
from piuparts.errors import UsageError

EXAMPLE = Path(__file__).resolve().parents[2] / "conf" / "batch.conf.example"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "batch.conf"
    path.write_text(text)
    return path


def error(path: Path) -> str:
    with pytest.raises(UsageError) as caught:
        config.load(path)
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_example_reads() -> None:
    conf = config.load(EXAMPLE)
    section = conf.sections["bookworm-openstack"]
    assert section.distro == "bookworm" and section.components == ("main",)
    assert section.maintainer is not None and section.maintainer.search("team+openstack@tracker.debian.org")
    assert section.piuparts_flags == ("--warn-on-leftovers-after-purge",)
    assert conf.workers == 2 and conf.db == Path("/var/lib/piuparts-ng/batch.sqlite")


def test_global_defaults_sections_override(tmp_path: Path) -> None:
    path = write(tmp_path, """
[global]
sections = a b
reschedule-old-days = 10
expire-old-days = +5
db = state/batch.sqlite

[a]
distro = bookworm
reschedule-old-days = 20
piuparts-flags = --no-upgrade-test -I '/etc/foo(/.*)?'
repository = "deb [trusted=yes] file:///tmp ./"
packages = python3-oslo.* nova-*

[b]
distro = trixie
depends-sections = a
""")
    conf = config.load(path)
    a, b = conf.sections["a"], conf.sections["b"]
    assert a.reschedule_old_days == 20 and a.expire_old_days == 25
    assert b.reschedule_old_days == 10 and b.expire_old_days == 15
    assert a.piuparts_flags == ("--no-upgrade-test", "-I", "/etc/foo(/.*)?")
    assert a.repository == "deb [trusted=yes] file:///tmp ./" and a.packages == ("python3-oslo.*", "nova-*")
    assert b.depends_sections == ("a",)
    assert conf.db == tmp_path / "state/batch.sqlite"
    assert list(conf.sections) == ["a", "b"]


@pytest.mark.parametrize("text, expected", [
    ("[global]\nsections = a\n[a]\ndistro = bookworm\nfrobnicate = yes\n", ":5: frobnicate: unknown key"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\nprecedence = high\n", ":5: precedence: bad value 'high'"),
    ("[global]\nsections = a\n[a]\ndistro = Bookworm!\n", ":4: distro: bad value 'Bookworm!'"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\nmaintainer = (unclosed\n", ":5: maintainer: bad value"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\nmirror = mirror.invalid\n", ":5: mirror: bad value"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\nrepository = http://x/ bookworm main\n",
     ":5: repository: bad value"),
    ("[global]\nsections = a\nworkers = 0\n[a]\ndistro = bookworm\n", ":3: workers: bad value '0'"),
    ("[global]\nsections = a\ncache-max-size = lots\n[a]\ndistro = bookworm\n",
     ":3: cache-max-size: bad value 'lots': a size such as 500M, 20G or 1T"),
    ("[global]\nsections = a b\n[a]\ndistro = bookworm\n", ":2: sections: [b] is listed but has no block"),
    ("[global]\nsections = a\n[a]\narea = main\n", ":3: [a]: no distro key"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\ndepends-sections = zz\n", ":5: depends-sections: bad value 'zz'"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\nauto-reschedule = maybe\n",
     ":5: auto-reschedule: bad value 'maybe': use yes or no"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\n[b]\ndistro = sid\n", ":5: [b] is not listed"),
    ("sections = a\n", ":1: expected '[SECTION]' or 'key = value'"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\nworkers = 2\n", ":5: workers: a [global] key; move it there"),
    ("[global]\nsections = a\n[a]\ndistro = bookworm\njust a line\n", ":5: expected '[SECTION]' or 'key = value'"),
])
def test_mistakes_are_one_line_naming_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    message = error(path)
    assert message.startswith(f"{path}:") and expected in message, message


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read the batch configuration" in error(tmp_path / "nope.conf")


def test_distros_conf_is_read_relative_to_the_file_and_passed_to_piuparts(tmp_path: Path) -> None:
    from piuparts.batch.engine import piuparts_argv
    path = write(tmp_path, """
[global]
sections = next plain
distros-conf = distros.conf

[next]
distro = bullseye
upgrade-test-distros = bullseye bullseye-next
mirror = http://mirror.invalid/debian

[plain]
distro = bookworm
distros-conf = /etc/piuparts/distros.conf
mirror = http://mirror.invalid/debian
""")
    conf = config.load(path)
    assert conf.sections["next"].distros_conf == tmp_path / "distros.conf"
    argv = piuparts_argv(conf, conf.sections["next"], "amd64", [])
    assert argv[:4] == ["-d", "bullseye", "-d", "bullseye-next"]
    assert argv[argv.index("--distros-conf") + 1] == str(tmp_path / "distros.conf")
    assert "--distros-conf" not in piuparts_argv(conf, conf.sections["plain"], "amd64", [])  # piuparts' own default
