"""The state directory of one codename: ``STATE/CODENAME/``.

::

    lock                 held by the run (one run a codename at a time)
    tested.json          what the last runs tested: {"repository": URL, "arches": {ARCH: {NAME: Binary}}}
    results.sqlite       every result, history kept (the batch engine's database)
    pending/*.json       the notifier's events, until a run has tested what they announce
    kept/notifier/*.deb  the .debs reprepro replaced, kept by the notifier before it deleted them
    kept/tested/*.deb    our own copy of each version tested (the next upgrade starts from it)
    upgrade-from/        this run's flat apt repository of the versions to upgrade from
    logs/                one log a test (PACKAGE_VERSION_ARCH.log), and the workers' logs
    last-run.json        the last run's JSON report
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import ContextManager, Iterable

from debian.deb822 import Deb822
from debian.debfile import DebFile

from piuparts.ci.notify import KEPT_BY_NOTIFIER, PENDING, Event
from piuparts.ci.repository import Binary
from piuparts import resources

KEPT_TESTED = "kept/tested"
#: Where the version to upgrade from came from (the report says which).
FROM_NOTIFIER, FROM_PREVIOUS_RUN, FROM_ARCHIVE = "notifier", "previous-run", "archive"


def deb_name(name: str, version: str, arch: str) -> str:
    """The file name we keep a .deb under (an epoch's colon quoted as in a pool)."""
    return f"{name}_{version.replace(':', '%3a')}_{arch}.deb"


@dataclass(frozen=True)
class OldDeb:
    """The version an upgrade starts from, and where it came from."""

    name: str
    version: str
    source: str
    path: Path | None


class State:
    """``STATE/CODENAME``: see the module's docstring."""

    def __init__(self, root: Path, codename: str) -> None:
        self.dir = root.absolute() / codename
        self.codename = codename

    @property
    def db(self) -> Path:
        """The results database."""
        return self.dir / "results.sqlite"

    @property
    def logs(self) -> Path:
        """The tests' logs."""
        return self.dir / "logs"

    def lock(self) -> ContextManager[None]:
        """Hold the codename's lock; a second run gets a one-line UsageError."""
        return resources.pid_lock(self.dir / "lock", lambda pid: (
            f"{self.dir}: another piuparts ci run (PID {pid}) is testing this codename; wait for it to end"))

    # what was tested
    def _tested_doc(self) -> dict[str, object]:
        path = self.dir / "tested.json"
        if not path.is_file():
            return {"arches": {}}
        data: dict[str, object] = json.loads(path.read_text())
        return data

    def tested(self, arch: str) -> dict[str, Binary]:
        """What the last runs tested of ``arch``, by name."""
        arches = self._tested_doc().get("arches") or {}
        entries = arches.get(arch, {}) if isinstance(arches, dict) else {}
        return {name: Binary.from_json(data) for name, data in entries.items()}

    def save_tested(self, arch: str, tested: dict[str, Binary], repository: str) -> None:
        """Replace what was tested of ``arch`` (atomically)."""
        doc = self._tested_doc()
        arches = doc.get("arches")
        assert isinstance(arches, dict)
        arches[arch] = {name: b.to_json() for name, b in sorted(tested.items())}
        doc["repository"] = repository
        write_json(self.dir / "tested.json", doc)

    # the notifier's events
    def pending(self) -> list[tuple[Path, Event]]:
        """The recorded events, oldest first (a file that cannot be read is left out)."""
        found = []
        for path in sorted((self.dir / PENDING).glob("*.json"), key=lambda p: int(p.name.split("-")[0])):
            try:
                found.append((path, Event.from_json(json.loads(path.read_text()))))
            except (OSError, ValueError, TypeError):
                continue
        return found

    def consume(self, events: Iterable[tuple[Path, Event]], done: set[str]) -> None:
        """Forget the events of packages in ``done`` (tested, or nothing left to test), with their kept .debs."""
        for path, event in events:
            if event.name in done:
                for kept in event.kept:
                    Path(kept).unlink(missing_ok=True)
                path.unlink(missing_ok=True)

    # kept .debs
    def old_deb(self, name: str, version: str, arch: str, events: list[Event]) -> OldDeb:
        """Where ``name`` at ``version`` is to be had: the notifier's copy, our previous run's copy,
        or (path None) the base distribution's archive."""
        for event in reversed(events):
            if event.name == name and event.old_version == version:
                for kept in event.kept:
                    if Path(kept).is_file():
                        return OldDeb(name, version, FROM_NOTIFIER, Path(kept))
        for directory, source in ((KEPT_BY_NOTIFIER, FROM_NOTIFIER), (KEPT_TESTED, FROM_PREVIOUS_RUN)):
            for arch_name in (arch, "all"):
                path = self.dir / directory / deb_name(name, version, arch_name)
                if path.is_file():
                    return OldDeb(name, version, source, path)
        return OldDeb(name, version, FROM_ARCHIVE, None)

    def keep_tested(self, deb: Path, binary: Binary) -> None:
        """Our own copy of a tested .deb (the next upgrade of it starts here); older copies go."""
        directory = self.dir / KEPT_TESTED
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / deb_name(binary.name, binary.version, binary.architecture)
        for other in directory.glob(f"{binary.name}_*.deb"):
            if other != target and other.name.split("_", 1)[0] == binary.name:
                other.unlink()
        if not target.exists():
            link_or_copy(deb, target)

    def upgrade_repository(self, olds: Iterable[OldDeb], directory: Path | None = None,
                           url: str | None = None) -> str | None:
        """A flat apt repository of the kept old .debs, made afresh in ``directory`` (default:
        ``upgrade-from/``); its apt line, with ``url`` for the directory (None: nothing kept)."""
        directory = directory or self.dir / "upgrade-from"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        entries = []
        for old in olds:
            if old.path is None:
                continue
            target = directory / old.path.name
            if not target.exists():
                link_or_copy(old.path, target)
                entries.append(_packages_entry(target))
        if not entries:
            return None
        packages = "\n".join(entries).encode()
        (directory / "Packages").write_bytes(packages)
        (directory / "Release").write_text(
            f"Origin: piuparts-ci\nLabel: piuparts-ci upgrade-from\nSuite: upgrade-from\nCodename: upgrade-from\n"
            f"Date: {formatdate(usegmt=True)}\n"
            f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")
        return f"deb [trusted=yes] {url or f'file://{directory}'} ./"


def _packages_entry(path: Path) -> str:
    """The Packages paragraph of one .deb in a flat repository."""
    deb = DebFile(str(path))
    try:
        control = Deb822(deb.debcontrol())
    finally:
        deb.close()
    with open(path, "rb") as handle:
        control["SHA256"] = hashlib.file_digest(handle, "sha256").hexdigest()
    control["Filename"] = f"./{path.name}"
    control["Size"] = str(path.stat().st_size)
    text: str = control.dump()
    return text


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link when the file system allows it, else a copy; never half a file at ``target``."""
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    os.replace(partial, target)


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)
