"""What changed since the last run: a pure comparison, and the tests it makes.

The last run's view is what it *tested* (a package that met only a test-bed
error stays at its previous entry, so it comes up again).  Against the
repository now:

- a name the last run did not test is **new**: install -> purge;
- a name at another version is **changed**: install -> purge, and
  install the version it replaced -> upgrade -> purge.  The version
  replaced is the notifier's (reprepro said ``replace NAME NEW OLD``), else
  the one the last run tested;
- a name at the same version but other contents (removed and included
  again) is **rebuilt**: tested as new;
- a name the last run tested that the repository no longer has is
  **removed**: recorded, nothing to test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from piuparts.ci.repository import Binary

NEW, CHANGED, REBUILT, REMOVED = "new", "changed", "rebuilt", "removed"


@dataclass(frozen=True)
class Change:
    """One binary package that is not as the last run tested it."""

    kind: str
    name: str
    #: The repository's entry now (None when removed).
    binary: Binary | None
    #: The version to upgrade from (changed only).
    old_version: str | None = None

    def to_json(self) -> dict[str, object]:
        """Plain data for the JSON report."""
        return {"kind": self.kind, "package": self.name,
                "version": self.binary.version if self.binary else None, "old_version": self.old_version}


def detect(tested: dict[str, Binary], current: dict[str, Binary],
           replaced: dict[str, tuple[str, str]] | None = None) -> list[Change]:
    """The changes, by name: ``replaced`` is the notifier's package -> (new version, old version)."""
    replaced = replaced or {}
    changes = []
    for name in sorted(current):
        now, before = current[name], tested.get(name)
        said = replaced.get(name)
        if said is not None and said[0] == now.version and said[1] != now.version \
                and (before is None or before.version != now.version):
            changes.append(Change(CHANGED, name, now, said[1]))
        elif before is None:
            changes.append(Change(NEW, name, now))
        elif before.version != now.version:
            changes.append(Change(CHANGED, name, now, before.version))
        elif before.sha256 and now.sha256 and before.sha256 != now.sha256:
            changes.append(Change(REBUILT, name, now))
    changes += [Change(REMOVED, name, None, tested[name].version) for name in sorted(set(tested) - set(current))]
    return changes


@dataclass(frozen=True)
class Unit:
    """What one test takes: a binary package, or with --by-source every changed binary of one source upload."""

    name: str
    version: str
    changes: tuple[Change, ...]

    @property
    def upgrade(self) -> bool:
        """Whether there is a version to upgrade from."""
        return any(c.old_version for c in self.changes)

    @property
    def binaries(self) -> list[Binary]:
        """The repository's entries tested."""
        return [c.binary for c in self.changes if c.binary is not None]


def units(changes: Iterable[Change], by_source: bool = False) -> list[Unit]:
    """The tests the changes make, in name order: one a binary, or one a source version."""
    testable = [c for c in changes if c.binary is not None]
    if not by_source:
        return [Unit(c.name, c.binary.version, (c,)) for c in testable if c.binary is not None]
    groups: dict[tuple[str, str], list[Change]] = {}
    for change in testable:
        assert change.binary is not None
        groups.setdefault((change.binary.source, change.binary.source_version), []).append(change)
    return [Unit(source, version, tuple(group)) for (source, version), group in sorted(groups.items())]
