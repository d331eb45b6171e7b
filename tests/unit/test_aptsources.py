"""piuparts.aptsources: the host's apt sources and the default distribution and mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

from piuparts.aptsources import (
    SourceEntry, default_distribution_and_mirror, host_codename, parse_deb822, parse_one_line, read_host_sources,
)
from piuparts.errors import UsageError

MIRROR = "http://mirror.example/debian"


def deb(uri: str, suite: str, *components: str, type_: str = "deb") -> SourceEntry:
    return SourceEntry(type_, (uri,), (suite,), components or ("main",))


# --- deb822 ------------------------------------------------------------------------

DEB822 = """\
# Debian main archive
Types: deb deb-src
URIs: http://mirror.example/debian/ http://mirror2.example/debian
Suites: trixie trixie-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: trixie-security
Components: main
Enabled: no

Types: deb
URIs: http://mirror3.example/debian
Suites: sid
Components: main non-free-firmware
Architectures: amd64 i386
"""


def test_parse_deb822_expands_types_and_keeps_lists():
    entries = parse_deb822(DEB822)
    uris = ("http://mirror.example/debian/", "http://mirror2.example/debian")
    assert entries == [
        SourceEntry("deb", uris, ("trixie", "trixie-updates"), ("main", "contrib")),
        SourceEntry("deb-src", uris, ("trixie", "trixie-updates"), ("main", "contrib")),
        SourceEntry("deb", ("http://mirror3.example/debian",), ("sid",), ("main", "non-free-firmware")),
    ]
    assert entries[0].options == {"Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"}
    assert entries[1].options == entries[0].options
    assert entries[2].options == {"Architectures": "amd64 i386"}


@pytest.mark.parametrize("value", ["no", "No", "NO", " no "])
def test_parse_deb822_skips_enabled_no(value: str):
    text = f"Types: deb\nURIs: {MIRROR}\nSuites: sid\nComponents: main\nEnabled: {value}\n"
    assert parse_deb822(text) == []


def test_parse_deb822_keeps_enabled_yes():
    text = f"Types: deb\nURIs: {MIRROR}\nSuites: sid\nComponents: main\nEnabled: yes\n"
    assert parse_deb822(text) == [deb(MIRROR, "sid")]


@pytest.mark.parametrize("value", ["false", "off", "0"])
def test_parse_deb822_skips_other_false_spellings_as_apt_does(value: str):
    text = f"Types: deb\nURIs: {MIRROR}\nSuites: sid\nComponents: main\nEnabled: {value}\n"
    assert parse_deb822(text) == []


def test_parse_deb822_empty_text():
    assert parse_deb822("") == []
    assert parse_deb822("# only a comment\n\n") == []


# --- one-line format ---------------------------------------------------------------

ONE_LINE = """\
# The main archive
deb [arch=amd64 signed-by=/x] http://mirror.example/debian trixie main contrib

deb-src http://mirror.example/debian trixie main
deb http://mirror.example/debian trixie-updates main # the updates
#deb http://disabled.example/debian sid main
   # deb http://also-disabled.example/debian sid main
deb http://mirror.example/debian
deb [ trusted=yes ] http://flat.example/repo ./
not a source line
"""


def test_parse_one_line():
    entries = parse_one_line(ONE_LINE)
    assert entries == [
        SourceEntry("deb", (MIRROR,), ("trixie",), ("main", "contrib")),
        SourceEntry("deb-src", (MIRROR,), ("trixie",), ("main",)),
        SourceEntry("deb", (MIRROR,), ("trixie-updates",), ("main",)),
        SourceEntry("deb", ("http://flat.example/repo",), ("./",), ()),
    ]
    assert entries[0].options == {"arch": "amd64", "signed-by": "/x"}
    assert entries[1].options == {}
    assert entries[3].options == {"trusted": "yes"}


def test_parse_one_line_blank_text():
    assert parse_one_line("") == []
    assert parse_one_line("\n\n   \n# nothing\n") == []


# --- reading /etc/apt ---------------------------------------------------------------

def test_read_host_sources_reads_all_files_in_apt_order(tmp_path: Path):
    etc_apt = tmp_path / "etc" / "apt"
    parts = etc_apt / "sources.list.d"
    parts.mkdir(parents=True)
    (etc_apt / "sources.list").write_text(f"deb {MIRROR} trixie main\n")
    (parts / "b-extra.list").write_text("deb http://b.example/debian b-suite main\n")
    (parts / "a-debian.sources").write_text(
        "Types: deb\nURIs: http://a.example/debian\nSuites: a-suite\nComponents: main\n")
    (parts / "c-vendor.sources").write_text(
        "Types: deb\nURIs: http://c.example/debian\nSuites: c-suite\nComponents: main\n")
    (parts / "b-extra.list.save").write_text("deb http://saved.example/debian saved main\n")
    (parts / "old.sources.disabled").write_text(
        "Types: deb\nURIs: http://disabled.example/debian\nSuites: nope\nComponents: main\n")
    (parts / "README").write_text("deb http://readme.example/debian readme main\n")
    (parts / "x.list.dpkg-dist").write_text("deb http://dist.example/debian dist main\n")

    entries = read_host_sources(etc_apt)

    assert entries == [
        deb(MIRROR, "trixie"),
        deb("http://a.example/debian", "a-suite"),
        deb("http://b.example/debian", "b-suite"),
        deb("http://c.example/debian", "c-suite"),
    ]


def test_read_host_sources_without_sources_list(tmp_path: Path):
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(f"Types: deb\nURIs: {MIRROR}\nSuites: sid\nComponents: main\n")
    assert read_host_sources(tmp_path) == [deb(MIRROR, "sid")]


def test_read_host_sources_of_an_empty_or_missing_tree(tmp_path: Path):
    assert read_host_sources(tmp_path) == []
    assert read_host_sources(tmp_path / "missing") == []


# --- default distribution and mirror -------------------------------------------------

def test_default_picks_the_entry_that_serves_the_codename():
    entries = [
        deb("http://updates.example/debian", "trixie-updates"),
        deb("http://old.example/debian", "bookworm"),
        deb("http://mirror.example/debian/", "trixie"),
    ]
    assert default_distribution_and_mirror(entries, "trixie") == ("trixie", MIRROR)


def test_default_skips_pockets_without_a_codename():
    entries = [
        deb("http://src.example/debian", "sid", type_="deb-src"),
        deb("http://updates.example/debian", "trixie-updates"),
        deb("http://security.example/debian-security", "trixie-security"),
        deb("http://backports.example/debian", "trixie-backports"),
        deb("http://proposed.example/debian", "trixie-proposed-updates"),
        deb("http://old-security.example/debian-security", "buster/updates"),
        deb("http://flat.example/repo", "./"),
        deb(MIRROR + "/", "trixie"),
        deb("http://later.example/debian", "sid"),
    ]
    assert default_distribution_and_mirror(entries, None) == ("trixie", MIRROR)


def test_default_falls_back_when_no_entry_serves_the_codename():
    entries = [deb("http://updates.example/debian", "forky-updates"), deb(MIRROR, "sid")]
    assert default_distribution_and_mirror(entries, "forky") == ("sid", MIRROR)


def test_default_takes_the_first_uri_and_strips_trailing_slashes():
    entry = SourceEntry("deb", ("http://mirror.example/debian//", "http://second.example/debian"),
                        ("sid",), ("main",))
    assert default_distribution_and_mirror([entry], "sid") == ("sid", MIRROR)


def test_default_reads_multi_suite_deb822_entries():
    entries = parse_deb822(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: trixie-updates trixie\nComponents: main\n")
    assert default_distribution_and_mirror(entries, None) == ("trixie", MIRROR)


@pytest.mark.parametrize("entries", [
    [],
    [deb(MIRROR, "trixie", type_="deb-src")],
    [deb(MIRROR, "trixie-security"), deb(MIRROR, "trixie-updates"), deb(MIRROR, "trixie-backports")],
    [SourceEntry("deb", (), ("trixie",), ("main",))],
], ids=["nothing", "deb-src-only", "pockets-only", "no-uri"])
def test_default_raises_usage_error_when_nothing_fits(entries):
    with pytest.raises(UsageError) as exc:
        default_distribution_and_mirror(entries, "trixie")
    assert exc.value.exit_code == 2
    assert str(exc.value) == (
        "no Debian mirror found in the host's apt sources (/etc/apt/sources.list, "
        "/etc/apt/sources.list.d/); name one with -m URL and a distribution with -d NAME")


def test_default_from_a_fake_etc_apt(tmp_path: Path):
    (tmp_path / "sources.list").write_text(
        "deb http://security.example/debian-security trixie-security main\n"
        "deb http://mirror.example/debian/ trixie main\n")
    assert default_distribution_and_mirror(read_host_sources(tmp_path), None) == ("trixie", MIRROR)


# --- host codename ------------------------------------------------------------------

@pytest.mark.parametrize("text, codename", [
    ('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nVERSION_ID="13"\nVERSION_CODENAME=trixie\nID=debian\n', "trixie"),
    ('VERSION_CODENAME="bookworm"\n', "bookworm"),
    ('NAME="Debian GNU/Linux"\nID=debian\n', None),
    ("VERSION_CODENAME=\nID=debian\n", None),
    ("UBUNTU_CODENAME=noble\nVERSION_CODENAME=noble\n", "noble"),
])
def test_host_codename(tmp_path: Path, text: str, codename: str | None):
    os_release = tmp_path / "os-release"
    os_release.write_text(text)
    assert host_codename(os_release) == codename


def test_host_codename_of_a_missing_file(tmp_path: Path):
    assert host_codename(tmp_path / "missing") is None


def test_host_codename_single_quoted(tmp_path: Path):
    os_release = tmp_path / "os-release"
    os_release.write_text("VERSION_CODENAME='trixie'\n")
    assert host_codename(os_release) == "trixie"
