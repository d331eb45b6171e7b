"""A section's packages, read from Packages files with python-debian.

A Debian section reads ``MIRROR/dists/DISTRO/AREA/binary-ARCH/Packages``
(``.xz``, ``.gz`` or plain), or those of the ``candidates`` distros.conf
gives the distro.  A ``repository =`` section reads that apt
line's Packages files (a local ``file://`` reprepro repository straight
from disk), and the distro's Packages only for the names and Provides it
offers the repository's packages as dependencies.  ``packages = GLOB...``
and ``maintainer = REGEX`` narrow what is tested; the rest of the Packages
file stays available as dependencies.

Downloads are kept under ``CACHE/archive/`` and fetched again only when
the server says they changed (If-Modified-Since), and a parsed index is
kept beside them, so a night's second section costs nothing.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import hashlib
import json
import logging
import lzma
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import unquote, urlparse

from debian.deb822 import Packages, PkgRelation, Sources
from debian.debian_support import Version

from piuparts import aptsources
from piuparts.batch.config import Section
from piuparts.batch.states import Package
from piuparts.distros import Distros
from piuparts.errors import TestbedError

log = logging.getLogger("piuparts")

_SUFFIXES = ((".xz", lzma.decompress), (".gz", gzip.decompress), (".bz2", bz2.decompress), ("", bytes))
_FIELDS = ["Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides", "Essential",
           "Maintainer", "Source"]


@dataclass(frozen=True)
class Archive:
    """What a section tests and what it may depend on."""

    #: The packages tested here, by name.
    packages: dict[str, Package]
    #: Names (real and virtual) available from outside: the rest of the archive.
    available: frozenset[str]
    #: What was read, by content (see :func:`identity`).
    identity: tuple[str, ...] = ()


def _relations(text: str) -> tuple[tuple[str, ...], ...]:
    if not text.strip():
        return ()
    clauses = []
    for clause in PkgRelation.parse_relations(text):
        names = tuple(dict.fromkeys(alt["name"] for alt in clause if alt.get("name")))
        if names:
            clauses.append(names)
    return tuple(clauses)


def parse_packages(text: str | bytes) -> dict[str, Package]:
    """The packages of one Packages file (the highest version of each name)."""
    lines = text.decode() if isinstance(text, bytes) else text
    found: dict[str, Package] = {}
    for para in Packages.iter_paragraphs(lines.splitlines(keepends=True), fields=_FIELDS, use_apt_pkg=False):
        if "Package" not in para:
            continue
        depends = " , ".join(para[f] for f in ("Pre-Depends", "Depends") if para.get(f))
        provides = tuple(c[0] for c in _relations(para.get("Provides", "")))
        pkg = Package(para["Package"], para.get("Version", ""), para.get("Architecture", "all"),
                      _relations(depends), provides, para.get("Essential", "no").lower() == "yes",
                      para.get("Maintainer", ""), para.get("Source", para["Package"]).split(" ")[0])
        old = found.get(pkg.name)
        if old is None or Version(pkg.version) > Version(old.version):
            found[pkg.name] = pkg
    return found


class Fetcher:
    """Reads index files: from disk for file:// URLs, else over HTTP with a conditional cache."""

    def __init__(self, cache: Path | None) -> None:
        self.cache = cache
        #: ``URL SHA256`` of every file read, in the order read.
        self.seen: list[str] = []

    def read(self, url: str) -> bytes | None:
        """The bytes at ``url``, or None when there is no such file (HTTP 404, no file)."""
        parsed = urlparse(url)
        if parsed.scheme in ("file", "copy"):
            path = Path(unquote(parsed.path))
            data = path.read_bytes() if path.is_file() else None
        else:
            data = self._http(url)
        if data is not None:
            self.seen.append(f"{url} {hashlib.sha256(data).hexdigest()}")
        return data

    def _http(self, url: str) -> bytes | None:
        stored = self.cache / hashlib.sha256(url.encode()).hexdigest()[:32] if self.cache else None
        request = urllib.request.Request(url)
        if stored is not None and stored.is_file():
            request.add_header("If-Modified-Since", formatdate(stored.stat().st_mtime, usegmt=True))
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                data: bytes = response.read()
        except urllib.error.HTTPError as err:
            if err.code == 304 and stored is not None:
                return stored.read_bytes()
            if err.code == 404:
                return None
            raise TestbedError(f"cannot read {url}: HTTP {err.code} {err.reason}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TestbedError(f"cannot read {url}: {reason} (is the mirror reachable?)") from None
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            temporary = stored.with_suffix(".tmp")
            temporary.write_bytes(data)
            temporary.replace(stored)
        return data

    def index(self, base: str) -> bytes | None:
        """``base`` + the first of .xz, .gz, .bz2, nothing that exists, decompressed."""
        for suffix, decompress in _SUFFIXES:
            data = self.read(base + suffix)
            if data is not None:
                return decompress(data)
        return None


def _parsed(fetcher: Fetcher, base: str) -> dict[str, Package] | None:
    """Parse an index, reusing the parse of the same bytes from the cache."""
    data = fetcher.index(base)
    if data is None:
        return None
    digest = hashlib.sha256(data).hexdigest()
    stored = fetcher.cache / f"parsed-{digest[:32]}.json" if fetcher.cache else None
    if stored is not None and stored.is_file():
        return {name: _from_json(item) for name, item in json.loads(stored.read_text()).items()}
    packages = parse_packages(data)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        stored.write_text(json.dumps({name: _to_json(p) for name, p in packages.items()}))
    return packages


def _names_of(fetcher: Fetcher, urls: Iterable[str], what: str) -> set[str]:
    """The names and Provides of some indexes (all that a section's universe needs), cached by content."""
    urls = list(urls)
    found: set[str] = set()
    seen = False
    for url in urls:
        data = fetcher.index(url)
        if data is None:
            continue
        seen = True
        digest = hashlib.sha256(data).hexdigest()
        stored = fetcher.cache / f"names-{digest[:32]}.json" if fetcher.cache else None
        if stored is not None and stored.is_file():
            found.update(json.loads(stored.read_text()))
            continue
        names = sorted(set(_names(parse_packages(data))))
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps(names))
        found.update(names)
    if not seen:
        raise TestbedError(f"{what}: no Packages file at {', '.join(urls)}")
    return found


def _to_json(pkg: Package) -> list[object]:
    return [pkg.name, pkg.version, pkg.architecture, [list(c) for c in pkg.depends], list(pkg.provides),
            pkg.essential, pkg.maintainer, pkg.source]


def _from_json(item: list[Any]) -> Package:
    name, version, arch, depends, provides, essential, maintainer, source = item
    return Package(str(name), str(version), str(arch), tuple(tuple(c) for c in depends),
                   tuple(provides), bool(essential), str(maintainer), str(source))


def repository_indexes(line: str, arch: str) -> list[str]:
    """The Packages URLs (without compression suffix) of one apt line."""
    entry = aptsources.parse_one_line(line)[0]
    uri, suite = entry.uris[0].rstrip("/"), entry.suites[0]
    if suite.endswith("/"):  # a flat repository: SUITE is a path
        return [f"{uri}/{suite.rstrip('/')}/Packages".replace("/./", "/")]
    return [f"{uri}/dists/{suite}/{comp}/binary-{arch}/Packages" for comp in entry.components]


def _distro_tops(section: Section) -> list[str]:
    """``MIRROR/dists/SUITE`` of each suite the section's distro reads its packages from: the
    distro itself, or, when the section's distros.conf has a block for it, that block's
    ``candidates`` (each with its ``uri`` and ``distribution``), as piuparts-master reads them."""
    known = Distros.read(section.distros_conf)
    return [f"{known.mirror(name, section.mirror)}/dists/{known.suite(name)}" for name in known.candidates(section.distro)]


def distro_indexes(section: Section, arch: str, areas: Iterable[str]) -> list[str]:
    """The distro's Packages URLs of ``areas``."""
    return [f"{top}/{area}/binary-{arch}/Packages" for top in _distro_tops(section) for area in areas]


def _sources_indexes(section: Section) -> list[str]:
    if section.repository:
        entry = aptsources.parse_one_line(section.repository)[0]
        uri, suite = entry.uris[0].rstrip("/"), entry.suites[0]
        if suite.endswith("/"):
            return [f"{uri}/{suite.rstrip('/')}/Sources".replace("/./", "/")]
        return [f"{uri}/dists/{suite}/{comp}/source/Sources" for comp in entry.components]
    return [f"{top}/{section.area}/source/Sources" for top in _distro_tops(section)]


def uploaders(fetcher: "Fetcher", section: Section) -> dict[str, str]:
    """Source package -> its Maintainer and Uploaders, from the Sources files (empty if there are none)."""
    people: dict[str, str] = {}
    for url in _sources_indexes(section):
        data = fetcher.index(url)
        if data is None:
            continue
        for para in Sources.iter_paragraphs(data.decode().splitlines(keepends=True),
                                            fields=["Package", "Maintainer", "Uploaders"], use_apt_pkg=False):
            people[para.get("Package", "")] = f"{para.get('Maintainer', '')}, {para.get('Uploaders', '')}"
    return people


def _read_all(fetcher: Fetcher, urls: Iterable[str], what: str) -> dict[str, Package]:
    merged: dict[str, Package] = {}
    found_any = False
    for url in urls:
        packages = _parsed(fetcher, url)
        if packages is None:
            continue
        found_any = True
        for name, pkg in packages.items():
            if name not in merged or Version(pkg.version) > Version(merged[name].version):
                merged[name] = pkg
    if not found_any:
        raise TestbedError(f"{what}: no Packages file at {', '.join(urls)}")
    return merged


def selected(section: Section, packages: dict[str, Package],
             people: dict[str, str] | None = None) -> dict[str, Package]:
    """The packages ``packages =`` and ``maintainer =`` choose (all when neither is set).

    ``maintainer`` is searched in the binary package's Maintainer and in its
    source's Maintainer and Uploaders (``people``, from the Sources files).
    """
    chosen = {}
    for name, pkg in packages.items():
        if section.packages and not any(fnmatch.fnmatchcase(name, glob) for glob in section.packages):
            continue
        who = pkg.maintainer + ", " + (people or {}).get(pkg.source, "")
        if section.maintainer is not None and not section.maintainer.search(who):
            continue
        chosen[name] = pkg
    return chosen


def _names(packages: dict[str, Package]) -> Iterator[str]:
    for name, pkg in packages.items():
        yield name
        yield from pkg.provides


def _bases(section: Section, arch: str) -> list[str]:
    """Every index :func:`read` reads for a section (without compression suffix)."""
    others = [c for c in section.components if c != section.area]
    if section.repository:
        bases = [*repository_indexes(section.repository, arch), *distro_indexes(section, arch, [section.area, *others])]
    else:
        bases = distro_indexes(section, arch, [section.area, *others])
    return bases + (_sources_indexes(section) if section.maintainer is not None else [])


def identity(section: Section, arch: str, cache: Path | None) -> tuple[str, ...]:
    """What :func:`read` reads for a section, by content, without parsing or decompressing it:
    the URL and the digest of the bytes of each index file found (sorted), as the
    :attr:`Archive.identity` of a read of the same files."""
    fetcher = Fetcher(cache)
    for base in _bases(section, arch):
        for suffix, _ in _SUFFIXES:
            if fetcher.read(base + suffix) is not None:
                break
    return tuple(sorted(set(fetcher.seen)))


def read(section: Section, arch: str, cache: Path | None) -> Archive:
    """The section's packages to test and the names available to them.

    TestbedError when the mirror or repository cannot be read (retry later);
    nothing is recorded for the packages then.
    """
    fetcher = Fetcher(cache)
    what = f"[{section.name}] distro {section.distro}"
    others = [c for c in section.components if c != section.area]
    if section.repository:
        tested = _read_all(fetcher, repository_indexes(section.repository, arch), f"[{section.name}] repository")
        universe = _names_of(fetcher, distro_indexes(section, arch, [section.area, *others]), what)
    else:
        tested = _read_all(fetcher, distro_indexes(section, arch, [section.area]), what)
        universe = _names_of(fetcher, distro_indexes(section, arch, others), what) if others else set()
    tested = {n: p for n, p in tested.items() if p.architecture in (arch, "all")}
    people = uploaders(fetcher, section) if section.maintainer is not None else {}
    chosen = selected(section, tested, people)
    rest = {n: p for n, p in tested.items() if n not in chosen}
    return Archive(chosen, frozenset(universe | set(_names(rest))), tuple(sorted(set(fetcher.seen))))
