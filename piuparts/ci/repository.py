"""A reprepro repository, read with python-debian (never reimplemented).

A local repository is its base directory: ``conf/distributions`` says which
codenames, components and architectures it has, ``dists/CODENAME/COMPONENT/
binary-ARCH/Packages`` what it holds, and ``Filename:`` where each .deb is.
A repository given as an ``http://`` (or ``https://``) URL is read the way
apt reads it: ``dists/CODENAME/Release`` for the components and
architectures, then the same Packages files; the tests inside the
instance see it as an apt source.
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Deb822, Packages, Release

from piuparts.batch.archive import Fetcher
from piuparts.errors import TestbedError, UsageError

_FIELDS = ["Package", "Version", "Architecture", "Source", "Filename", "SHA256", "Size", "Maintainer", "Description"]


@dataclass(frozen=True)
class Distribution:
    """One codename of a repository: what conf/distributions (or its Release file) says."""

    codename: str
    components: tuple[str, ...]
    architectures: tuple[str, ...]


@dataclass(frozen=True)
class Binary:
    """One binary package of a codename, as its Packages entry says."""

    name: str
    version: str
    architecture: str
    source: str
    source_version: str
    component: str
    filename: str
    sha256: str
    #: What the report site shows of it (not part of what makes it another package).
    maintainer: str = field(default="", compare=False)
    description: str = field(default="", compare=False)

    def to_json(self) -> dict[str, str]:
        """Plain data (the state directory keeps it)."""
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, str]) -> "Binary":
        """The inverse of :meth:`to_json`."""
        return cls(**{k: str(data.get(k, "")) for k in cls.__dataclass_fields__})


def parse_distributions(text: str) -> dict[str, Distribution]:
    """conf/distributions' stanzas by codename."""
    found = {}
    for stanza in Deb822.iter_paragraphs(text.splitlines(keepends=True)):
        codename = stanza.get("Codename", "").strip()
        if codename:
            found[codename] = Distribution(codename, tuple(stanza.get("Components", "").split()),
                                           tuple(a for a in stanza.get("Architectures", "").split() if a != "source"))
    return found


def parse_packages(text: str, component: str) -> dict[str, Binary]:
    """One Packages file: the binaries by name (the highest version of a name, as apt would take)."""
    from debian.debian_support import Version
    found: dict[str, Binary] = {}
    for para in Packages.iter_paragraphs(text.splitlines(keepends=True), fields=_FIELDS, use_apt_pkg=False):
        if "Package" not in para:
            continue
        source, _, rest = para.get("Source", para["Package"]).partition(" ")
        version = para.get("Version", "")
        binary = Binary(para["Package"], version, para.get("Architecture", "all"), source,
                        rest.strip("() ") or version, component, para.get("Filename", ""), para.get("SHA256", ""),
                        para.get("Maintainer", ""), (para.get("Description", "").splitlines() or [""])[0])
        old = found.get(binary.name)
        if old is None or Version(binary.version) > Version(old.version):
            found[binary.name] = binary
    return found


class Repository:
    """A reprepro repository: a local base directory or an http(s) URL."""

    def __init__(self, where: str, cache: Path | None = None) -> None:
        self.remote = where.startswith(("http://", "https://"))
        self.where = where.rstrip("/") if self.remote else str(Path(where).absolute())
        self.fetcher = Fetcher(cache)
        if not self.remote and not (Path(self.where) / "conf" / "distributions").is_file():
            raise UsageError(f"{where}: not a reprepro repository (no conf/distributions); give the "
                             "repository's base directory (reprepro -b) or an http:// URL")

    @property
    def url(self) -> str:
        """The repository as apt addresses it."""
        return self.where if self.remote else f"file://{self.where}"

    def distributions(self) -> dict[str, Distribution]:
        """Local: every codename of conf/distributions (remote: none; see :meth:`distribution`)."""
        if self.remote:
            return {}
        return parse_distributions((Path(self.where) / "conf" / "distributions").read_text())

    def distribution(self, codename: str) -> Distribution:
        """The codename's components and architectures; UsageError if the repository has no such codename."""
        if self.remote:
            data = self.fetcher.read(f"{self.where}/dists/{codename}/Release")
            if data is None:
                raise UsageError(f"{self.where}: no codename {codename} (no dists/{codename}/Release); "
                                 "check --codename")
            release = Release(data.decode(errors="replace"))
            return Distribution(codename, tuple(c.rsplit("/", 1)[-1] for c in release.get("Components", "").split()),
                                tuple(release.get("Architectures", "").split()))
        known = self.distributions()
        if codename not in known:
            raise UsageError(f"{self.where}: no codename {codename} in conf/distributions "
                             f"(codenames: {', '.join(known) or 'none'}); check --codename")
        return known[codename]

    def packages(self, codename: str, components: tuple[str, ...], arch: str) -> dict[str, Binary]:
        """The binaries of ``arch`` (and ``all``) in the components; an unexported codename holds nothing."""
        found: dict[str, Binary] = {}
        for component in components:
            data = self.fetcher.index(f"{self.url}/dists/{codename}/{component}/binary-{arch}/Packages")
            if data is None:
                continue
            for name, binary in parse_packages(data.decode(errors="replace"), component).items():
                if binary.architecture in (arch, "all") and name not in found:
                    found[name] = binary
        return found

    def apt_line(self, codename: str, components: tuple[str, ...], url: str | None = None) -> str:
        """The repository as an apt source line for the instances (at ``url`` when they reach it there)."""
        return f"deb [trusted=yes] {url or self.url} {codename} {' '.join(components)}"

    def fetch(self, binary: Binary, into: Path) -> Path:
        """The .deb of ``binary``: in the pool of a local repository, else downloaded into ``into``;
        its SHA256 checked against the Packages file."""
        if not self.remote:
            path = Path(self.where) / binary.filename
            if not path.is_file():
                raise TestbedError(f"{path}: in the Packages file but not in the pool; run reprepro export/check")
        else:
            path = into / Path(binary.filename).name
            if not (path.is_file() and _sha256(path) == binary.sha256):
                into.mkdir(parents=True, exist_ok=True)
                _download(f"{self.where}/{binary.filename}", path)
        if binary.sha256 and _sha256(path) != binary.sha256:
            raise TestbedError(f"{path}: its SHA256 is not the one the Packages file says; "
                               "the repository is being changed, or is inconsistent")
        return path


def _download(url: str, path: Path) -> None:
    partial = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(partial, "wb") as out:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise TestbedError(f"cannot download {url}: {getattr(err, 'reason', err)}") from None
    partial.replace(path)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()

