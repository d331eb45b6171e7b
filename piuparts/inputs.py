"""What to test: .deb files, .changes files and package names, read with python-debian."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from debian.deb822 import Changes
from debian.debfile import DebFile

from piuparts.errors import UsageError


@dataclass(frozen=True)
class Deb:
    """A .deb file and what its control file says."""

    path: Path
    package: str
    version: str
    architecture: str
    #: Its relations to other packages (Pre-Depends, Depends, Conflicts, Breaks), as written.
    relations: str = ""

    @classmethod
    def read(cls, path: Path) -> "Deb":
        """Read the control file of ``path``; a one-line error if it is no .deb."""
        if not path.is_file():
            raise UsageError(f"{path}: no such file; give the path of a .deb or .changes file, or --apt NAME")
        try:
            deb = DebFile(str(path))
        except Exception as err:  # python-debian raises many kinds for a broken archive
            raise _invalid(path, " ".join(str(err).split())[:200] or type(err).__name__) from None
        try:
            control = deb.debcontrol()
            deb.data.tgz().getmembers()  # reads the whole data member: a truncated file fails here
        except Exception:  # tarfile's and the decompressors' many kinds, several lines long
            raise _invalid(path, "its control or data member is truncated or corrupt") from None
        finally:
            deb.close()
        missing = [f for f in ("Package", "Version", "Architecture") if f not in control]
        if missing:
            raise UsageError(f"{path}: its control file has no {missing[0]} field")
        relations = "\n".join(f"{field}: {control[field]}" for field in ("Pre-Depends", "Depends", "Conflicts", "Breaks")
                              if field in control)
        return cls(path.resolve(), control["Package"], control["Version"], control["Architecture"], relations)


def _invalid(path: Path, reason: str) -> UsageError:
    return UsageError(f"{path}: not a valid Debian package (.deb): {reason}; rebuild it or check the download")


@dataclass(frozen=True)
class TestSubject:
    """The packages tested together: .debs and names from the archive."""

    debs: tuple[Deb, ...] = ()
    apt_names: tuple[str, ...] = ()

    __test__ = False  # not a pytest test class

    @property
    def packages(self) -> list[str]:
        """The names of the tested packages (without versions)."""
        return [d.package for d in self.debs] + [n.split("=", 1)[0] for n in self.apt_names]

    @property
    def objects(self) -> list[str]:
        """What the hooks see as PIUPARTS_OBJECTS: names, with =VERSION where given."""
        return [d.package for d in self.debs] + list(self.apt_names)

    @classmethod
    def from_args(cls, args: Iterable[str], apt: bool = False) -> "TestSubject":
        """The subject a command line names (see :func:`subject_from_args`)."""
        return subject_from_args(args, apt)

    def to_json(self) -> dict[str, Any]:
        """Plain data: the .debs' paths and the archive names."""
        return {"debs": [str(d.path) for d in self.debs], "apt": list(self.apt_names)}

    @classmethod
    def from_json(cls, data: Any) -> "TestSubject":
        """The subject ``data`` describes (each .deb read again, so checked again)."""
        if not isinstance(data, dict) or set(data) - {"debs", "apt"}:
            raise UsageError("a test subject is a JSON object with the keys 'debs' and 'apt' only")
        debs, apt = data.get("debs", []), data.get("apt", [])
        if not all(isinstance(x, str) for x in [*debs, *apt]) or not (debs or apt):
            raise UsageError("a test subject names .deb paths ('debs') or archive packages ('apt') as strings")
        return cls(debs=tuple(Deb.read(Path(p)) for p in debs), apt_names=tuple(apt))

    @property
    def label(self) -> str:
        """A short name for reports: ``foo_1.0-1, bar``."""
        return ", ".join([f"{d.package}_{d.version}" for d in self.debs] + list(self.apt_names))


def _verify(changes_path: Path, name: str, size: int, sha256: str | None) -> Path:
    path = changes_path.parent / name
    if not path.is_file():
        raise UsageError(f"{changes_path}: lists {name}, which is not in {changes_path.parent}")
    if path.stat().st_size != size:
        raise UsageError(f"{changes_path}: {name} is {path.stat().st_size} bytes, the .changes says {size}")
    if sha256 is not None:
        with path.open("rb") as handle:
            actual = hashlib.file_digest(handle, "sha256").hexdigest()
        if actual != sha256:
            raise UsageError(f"{changes_path}: the SHA256 checksum of {name} does not match; rebuild or re-upload it")
    return path


def read_changes(path: Path) -> list[Deb]:
    """Every .deb a .changes file lists, after checking sizes and checksums."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    with path.open() as handle:
        changes = Changes(handle)
    sums = {f["name"]: f["sha256"] for f in changes.get("Checksums-Sha256", [])}
    files = [f for f in changes.get("Files", []) if f["name"].endswith(".deb")]
    if not files:
        raise UsageError(f"{path}: lists no .deb file (is it a source-only upload?)")
    return [Deb.read(_verify(path, f["name"], int(f["size"]), sums.get(f["name"]))) for f in files]


def subject_from_args(args: Iterable[str], apt: bool) -> TestSubject:
    """Turn the command line's package arguments into a :class:`TestSubject`."""
    args = list(args)
    if not args:
        raise UsageError("nothing to test: give .deb or .changes files, or --apt NAME")
    if apt:
        return TestSubject(apt_names=tuple(args))
    debs: list[Deb] = []
    for arg in args:
        path = Path(arg)
        if arg.endswith(".changes"):
            debs += read_changes(path)
        elif arg.endswith(".deb") or path.exists():
            debs.append(Deb.read(path))
        else:
            raise UsageError(f"{arg}: no such file; to test a package from the archive use --apt {arg}")
    return TestSubject(debs=tuple(debs))
