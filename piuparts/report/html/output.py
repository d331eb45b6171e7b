"""Writing the site: a file is written only when its content changed.

Each file is compared with what is already there and, when it differs,
written under a temporary name and renamed, so a web server never serves
half a page and a re-run leaves unchanged pages (and their mtimes) alone.

Most pages of a site made again have not changed, and rendering them only to
find so is what made a whole archive's site take minutes.  So a page can be
written with a *fingerprint*: a digest of everything it is made from (the
site's generator knows what that is).  The fingerprints of a generation are
saved in :data:`MANIFEST` at its end, and a page whose file is there and
whose fingerprint is the one saved is not rendered again.  The manifest is
removed when a generation starts, so one that is stopped half-way leaves
none, and the next renders every page.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

#: The fingerprints of the last whole generation: path inside the site -> digest.
MANIFEST = ".piuparts-inputs.json"


class Output:
    """The site directory; counts what it wrote and what it left alone."""

    def __init__(self, root: Path, known: dict[str, str] | None = None) -> None:
        self.root = root
        self.written: list[str] = []
        self.unchanged = 0
        #: Every file this generation made or found up to date (paths inside the site).
        self.kept: list[str] = []
        #: The fingerprints the last whole generation saved.
        self.known = known or {}
        #: The fingerprints of this one's pages.
        self.inputs: dict[str, str] = {}

    @classmethod
    def begin(cls, root: Path) -> "Output":
        """A generation into ``root``: the manifest read, then removed until :meth:`finish`."""
        manifest = root / MANIFEST
        try:
            known = json.loads(manifest.read_text())
            manifest.unlink()
        except (OSError, ValueError):
            known = {}
        return cls(root, known if isinstance(known, dict) else {})

    def finish(self) -> None:
        """Save this generation's fingerprints (of the files it kept)."""
        temporary = self.root / f".{MANIFEST}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(self.inputs, separators=(",", ":"), sort_keys=True))
        temporary.replace(self.root / MANIFEST)

    def fresh(self, relative: str, fingerprint: str) -> bool:
        """Whether ``relative`` is there and was made from the same inputs."""
        return self.known.get(relative) == fingerprint and os.path.isfile(os.path.join(self.root, relative))

    def keep(self, relative: str, fingerprint: str) -> None:
        """Leave a :meth:`fresh` file as it is."""
        self.kept.append(relative)
        self.inputs[relative] = fingerprint
        self.unchanged += 1

    def write(self, relative: str, content: str | bytes, fingerprint: str | None = None) -> None:
        """Write ``relative`` (a path inside the site) if its content is new; ``fingerprint``:
        what it was made from (see the module's docstring)."""
        data = content.encode() if isinstance(content, str) else content
        path = self.root / relative
        self.kept.append(relative)
        if fingerprint is not None:
            self.inputs[relative] = fingerprint
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                self.unchanged += 1
                return
        except OSError:
            path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_bytes(data)
        temporary.replace(path)
        self.written.append(relative)

    def log(self, stem: str, source: Path) -> bool:
        """A result's compressed log as ``STEM.log.gz`` and its plain text as ``STEM.log.txt``
        (the filed log is either: batch files them compressed, ``piuparts ci`` plain); a log never
        changes once filed, so one already there is kept.  False when the source is gone."""
        packed, plain = self.root / f"{stem}.log.gz", self.root / f"{stem}.log.txt"
        self.kept += [f"{stem}.log.gz", f"{stem}.log.txt"]
        if packed.is_file() and plain.is_file():
            self.unchanged += 2
            return True
        if not source.is_file():
            return False
        packed.parent.mkdir(parents=True, exist_ok=True)
        compressed = source.suffix == ".gz"
        linked, made = (packed, plain) if compressed else (plain, packed)
        if not linked.is_file():
            self._link_or_copy(source, linked)
        temporary = made.with_name(f".{made.name}.{os.getpid()}.tmp")
        with (gzip.open(source, "rb") if compressed else open(source, "rb")) as reading, \
                open(temporary, "wb") as writing:
            if compressed:
                shutil.copyfileobj(reading, writing)
            else:  # no name or time in the header: the same log makes the same bytes
                with gzip.GzipFile(filename="", mode="wb", fileobj=writing, mtime=0) as packing:
                    shutil.copyfileobj(reading, packing)
        temporary.replace(made)
        self.written.append(str(made.relative_to(self.root)))
        return True

    def _link_or_copy(self, source: Path, target: Path) -> None:
        """A hard link to the filed log (it is never changed in place), or a copy on another file system."""
        try:
            os.link(source, target)
        except OSError:
            temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(source, temporary)
            temporary.replace(target)
        self.written.append(str(target.relative_to(self.root)))

    def prune(self, directories: list[str]) -> list[str]:
        """Remove the files under ``directories`` (inside the site) that this generation did not
        make: pages of packages that left the archive, of problems no package has any more.
        Returns what was removed."""
        kept = set(self.kept)
        removed = []
        root = str(self.root)
        for directory in directories:
            for parent, _, files in os.walk(os.path.join(root, directory)):
                inside = os.path.relpath(parent, root)
                for name in files:
                    relative = os.path.join(inside, name)
                    if relative not in kept:
                        os.unlink(os.path.join(parent, name))
                        removed.append(relative)
        return removed
