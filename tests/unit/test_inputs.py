"""piuparts.inputs: .deb files, .changes files and package names."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from piuparts.errors import UsageError
from piuparts.inputs import Deb, TestSubject, read_changes, subject_from_args
from tests.debs import DebSpec

UNIT = DebSpec("pp-unit", version="2.0-3")
OTHER = DebSpec("pp-other", version="1:0.5~rc1-1")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real .debs, built once for the module."""
    outdir = tmp_path_factory.mktemp("unit-debs")
    big = DebSpec("pp-big", files={"/usr/share/pp-big/blob": os.urandom(4000).hex()})
    return {"unit": UNIT.build(outdir), "other": OTHER.build(outdir), "big": big.build(outdir)}


@pytest.fixture
def unit_deb(built: dict[str, Path], tmp_path: Path) -> Path:
    """A private copy of pp-unit's .deb in tmp_path."""
    path = tmp_path / built["unit"].name
    path.write_bytes(built["unit"].read_bytes())
    return path


# --- Deb.read ----------------------------------------------------------------------

def test_deb_read_gives_package_version_architecture(unit_deb: Path):
    deb = Deb.read(unit_deb)
    assert deb == Deb(unit_deb.resolve(), "pp-unit", "2.0-3", "all")


def test_deb_read_keeps_an_epoch_version(built: dict[str, Path]):
    deb = Deb.read(built["other"])
    assert (deb.package, deb.version, deb.architecture) == ("pp-other", "1:0.5~rc1-1", "all")


def test_deb_read_resolves_a_relative_path(unit_deb: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(unit_deb.parent)
    deb = Deb.read(Path(unit_deb.name))
    assert deb.path == unit_deb.resolve()
    assert deb.path.is_absolute()


def test_deb_read_of_a_missing_file(tmp_path: Path):
    path = tmp_path / "missing_1.0_all.deb"
    with pytest.raises(UsageError) as exc:
        Deb.read(path)
    assert str(exc.value) == f"{path}: no such file; give the path of a .deb or .changes file, or --apt NAME"
    assert exc.value.exit_code == 2


def test_deb_read_of_a_directory(tmp_path: Path):
    with pytest.raises(UsageError) as exc:
        Deb.read(tmp_path)
    assert str(exc.value).startswith(f"{tmp_path}: no such file")


def test_deb_read_of_a_text_file(tmp_path: Path):
    path = tmp_path / "notes.deb"
    path.write_text("this is not a Debian package\n" * 10)
    with pytest.raises(UsageError) as exc:
        Deb.read(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: not a valid Debian package (.deb): ")
    assert message.endswith("; rebuild it or check the download")
    assert "\n" not in message


def test_deb_read_of_a_truncated_deb(unit_deb: Path, tmp_path: Path):
    data = unit_deb.read_bytes()
    path = tmp_path / "truncated.deb"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError) as exc:
        Deb.read(path)
    assert str(exc.value).startswith(f"{path}: not a valid Debian package (.deb): ")


def test_deb_read_of_an_empty_file(tmp_path: Path):
    path = tmp_path / "empty.deb"
    path.write_bytes(b"")
    with pytest.raises(UsageError) as exc:
        Deb.read(path)
    assert str(exc.value).startswith(f"{path}: not a valid Debian package (.deb): ")


@pytest.mark.parametrize("keep", ["half", "all-but-100-bytes"])
def test_deb_read_of_a_deb_truncated_inside_its_data_member(built: dict[str, Path], tmp_path: Path, keep: str):
    data = built["big"].read_bytes()
    cut = len(data) // 2 if keep == "half" else len(data) - 100
    path = tmp_path / "truncated.deb"
    path.write_bytes(data[:cut])
    with pytest.raises(UsageError) as exc:
        Deb.read(path)
    assert str(exc.value).startswith(f"{path}: not a valid Debian package (.deb): ")


# --- subject_from_args -----------------------------------------------------------

def test_subject_from_apt_names():
    subject = subject_from_args(["foo", "bar=1.2-3", "baz=1:2.0~rc1"], apt=True)
    assert subject == TestSubject(debs=(), apt_names=("foo", "bar=1.2-3", "baz=1:2.0~rc1"))
    assert subject.packages == ["foo", "bar", "baz"]
    assert subject.label == "foo, bar=1.2-3, baz=1:2.0~rc1"


def test_subject_from_apt_names_does_not_look_for_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "foo").write_text("a file called foo")
    assert subject_from_args(["foo"], apt=True).apt_names == ("foo",)


def test_subject_from_deb_files(built: dict[str, Path]):
    subject = subject_from_args([str(built["unit"]), str(built["other"])], apt=False)
    assert [(d.package, d.version) for d in subject.debs] == [("pp-unit", "2.0-3"), ("pp-other", "1:0.5~rc1-1")]
    assert subject.apt_names == ()
    assert subject.packages == ["pp-unit", "pp-other"]
    assert subject.label == "pp-unit_2.0-3, pp-other_1:0.5~rc1-1"


@pytest.mark.parametrize("apt", [True, False])
def test_subject_from_no_args(apt: bool):
    with pytest.raises(UsageError) as exc:
        subject_from_args([], apt=apt)
    assert str(exc.value) == "nothing to test: give .deb or .changes files, or --apt NAME"


def test_subject_from_a_name_without_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError) as exc:
        subject_from_args(["hello"], apt=False)
    assert str(exc.value) == "hello: no such file; to test a package from the archive use --apt hello"


def test_subject_from_a_missing_deb(tmp_path: Path):
    path = tmp_path / "gone_1_all.deb"
    with pytest.raises(UsageError) as exc:
        subject_from_args([str(path)], apt=False)
    assert str(exc.value).startswith(f"{path}: no such file")


# --- .changes --------------------------------------------------------------------

def _sums(path: Path) -> tuple[str, str, str, int]:
    data = path.read_bytes()
    return hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest(), hashlib.sha256(data).hexdigest(), len(data)


def write_changes(directory: Path, debs: list[Path], *, sha256: dict[str, str] | None = None,
                  size: dict[str, int] | None = None, extra_files: str = "", signed: bool = False,
                  name: str = "pp-unit_2.0-3_amd64.changes") -> Path:
    """A .changes listing ``debs`` (already in ``directory``), with overridable sums and sizes."""
    sha256 = sha256 or {}
    size = size or {}
    files, sha1s, sha256s = [], [], []
    for deb in debs:
        md5, sha1, sha, length = _sums(deb)
        length = size.get(deb.name, length)
        files.append(f" {md5} {length} misc optional {deb.name}")
        sha1s.append(f" {sha1} {length} {deb.name}")
        sha256s.append(f" {sha256.get(deb.name, sha)} {length} {deb.name}")
    body = "\n".join([
        "Format: 1.8",
        "Date: Mon, 24 Nov 2025 20:00:00 +0000",
        "Source: pp-unit",
        "Binary: " + " ".join(d.name.split("_")[0] for d in debs),
        "Architecture: all",
        "Version: 2.0-3",
        "Distribution: unstable",
        "Urgency: medium",
        "Maintainer: Fixture Maker <fixtures@example.org>",
        "Changed-By: Fixture Maker <fixtures@example.org>",
        "Description:",
        " pp-unit - piuparts test fixture",
        "Changes:",
        " pp-unit (2.0-3) unstable; urgency=medium",
        " .",
        "   * Fixture.",
        "Checksums-Sha1:",
        *sha1s,
        "Checksums-Sha256:",
        *sha256s,
        " 0000000000000000000000000000000000000000000000000000000000000000 123 pp-unit_2.0-3_amd64.buildinfo",
        "Files:",
        *files,
        " 00000000000000000000000000000000 123 misc optional pp-unit_2.0-3_amd64.buildinfo",
    ]) + "\n" + extra_files
    if signed:
        body = ("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n" + body +
                "\n-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCgAdFiEEfakefakefake\n=abcd\n"
                "-----END PGP SIGNATURE-----\n")
    path = directory / name
    path.write_text(body)
    return path


@pytest.fixture
def two_debs(built: dict[str, Path], tmp_path: Path) -> list[Path]:
    out = []
    for key in ("unit", "other"):
        target = tmp_path / built[key].name
        target.write_bytes(built[key].read_bytes())
        out.append(target)
    return out


def test_changes_yields_its_debs_in_order(two_debs: list[Path], tmp_path: Path):
    changes = write_changes(tmp_path, two_debs)
    debs = read_changes(changes)
    assert debs == [Deb(two_debs[0].resolve(), "pp-unit", "2.0-3", "all"),
                    Deb(two_debs[1].resolve(), "pp-other", "1:0.5~rc1-1", "all")]


def test_changes_via_subject_from_args(two_debs: list[Path], tmp_path: Path):
    changes = write_changes(tmp_path, two_debs)
    subject = subject_from_args([str(changes)], apt=False)
    assert subject.packages == ["pp-unit", "pp-other"]
    assert subject.label == "pp-unit_2.0-3, pp-other_1:0.5~rc1-1"


def test_clearsigned_changes_is_read(two_debs: list[Path], tmp_path: Path):
    changes = write_changes(tmp_path, two_debs[:1], signed=True)
    assert [d.package for d in read_changes(changes)] == ["pp-unit"]


def test_changes_with_a_wrong_sha256(two_debs: list[Path], tmp_path: Path):
    name = two_debs[1].name
    changes = write_changes(tmp_path, two_debs, sha256={name: "0" * 64})
    with pytest.raises(UsageError) as exc:
        read_changes(changes)
    assert str(exc.value) == f"{changes}: the SHA256 checksum of {name} does not match; rebuild or re-upload it"
    assert exc.value.exit_code == 2


def test_changes_with_a_wrong_size(two_debs: list[Path], tmp_path: Path):
    name = two_debs[0].name
    actual = two_debs[0].stat().st_size
    changes = write_changes(tmp_path, two_debs, size={name: actual + 1})
    with pytest.raises(UsageError) as exc:
        read_changes(changes)
    assert str(exc.value) == f"{changes}: {name} is {actual} bytes, the .changes says {actual + 1}"


def test_changes_listing_a_missing_file(two_debs: list[Path], tmp_path: Path):
    changes = write_changes(tmp_path, two_debs)
    two_debs[1].unlink()
    with pytest.raises(UsageError) as exc:
        read_changes(changes)
    assert str(exc.value) == f"{changes}: lists {two_debs[1].name}, which is not in {tmp_path}"


def test_changes_with_a_tampered_deb(two_debs: list[Path], tmp_path: Path):
    changes = write_changes(tmp_path, two_debs)
    data = bytearray(two_debs[0].read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    two_debs[0].write_bytes(bytes(data))
    with pytest.raises(UsageError) as exc:
        read_changes(changes)
    assert str(exc.value) == (f"{changes}: the SHA256 checksum of {two_debs[0].name} does not match; "
                              "rebuild or re-upload it")


def test_source_only_changes(tmp_path: Path):
    dsc = tmp_path / "pp-unit_2.0-3.dsc"
    dsc.write_text("Source: pp-unit\n")
    changes = write_changes(tmp_path, [dsc])
    with pytest.raises(UsageError) as exc:
        read_changes(changes)
    assert str(exc.value) == f"{changes}: lists no .deb file (is it a source-only upload?)"


def test_missing_changes_file(tmp_path: Path):
    path = tmp_path / "nothing.changes"
    with pytest.raises(UsageError) as exc:
        subject_from_args([str(path)], apt=False)
    assert str(exc.value) == f"{path}: no such file"
