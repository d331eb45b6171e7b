"""A section's derived states kept in the state database, so that ``batch
status`` does not derive a whole archive again when nothing changed.

Deriving the states of Debian main (63,000 packages: read its Packages,
every result, solve the dependency graph) takes seconds; a status asked
twice, or after a night that already derived them, should not.  What a
snapshot holds (each package's version, state, blocked-by, problems and
reason) is reused only under a key that covers everything the states are
computed from, by content:

- the section's settings (every key of its block) and architecture;
- the index files it reads (their bytes' digests, not their names or dates:
  see :func:`piuparts.batch.archive.identity`);
- its results (their count and newest id: results are only ever added;
  reschedule requests change what is tested next, not the states);
- the keys of its depends-sections (their states are its dependencies');

and only until the first of its verdicts expires (``expire-old-days``,
``expire-fail-days``), the one thing time changes.  Anything else is a
miss: the states are derived as before and kept again.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, fields
from typing import Any, Mapping, Protocol, Sequence

from piuparts.batch import archive, report, states as st
from piuparts.batch.config import Config, Section
from piuparts.batch.db import Database
from piuparts.batch.schedule import DAY, Outcome

#: The layout of a snapshot and of its key; another one is a miss.
FORMAT = 1
#: "Never": no verdict of the section expires.
FOREVER = 1e18


class Derived(Protocol):
    """What a snapshot is made from: a section derived (the engine's SectionRun)."""

    section: Section
    computed: dict[str, st.Result]
    outcomes: dict[str, Outcome]
    archive: archive.Archive


@dataclass(frozen=True)
class _Version:
    version: str


@dataclass(frozen=True)
class _Versions:
    packages: dict[str, _Version]


@dataclass
class Kept:
    """A section's states as a snapshot gives them back: what ``status`` reads of a section."""

    computed: dict[str, st.Result]
    outcomes: dict[str, Outcome]
    archive: _Versions

    def status(self) -> dict[str, Any]:
        """``status --json``'s shape for this section."""
        return report.section_status(self.computed, self.outcomes, self.archive.packages)


def keys(config: Config, names: Sequence[str], db: Database, arch: str,
         identities: Mapping[str, Sequence[str]] | None = None,
         marks: Mapping[str, list[int]] | None = None) -> dict[str, str]:
    """The key of each section asked for and of those they depend on (see the module's
    docstring).  ``identities``: the files a section's derive read (else read now);
    ``marks``: its results' mark taken before that derive (else now)."""
    found: dict[str, str] = {}
    read, marked = identities or {}, marks or {}

    def key(name: str, trail: tuple[str, ...]) -> str:
        if name not in found:
            section = config.sections[name]
            if name in trail:  # a cycle: the engine says so when it derives
                return "cycle"
            material = {
                "format": FORMAT, "arch": section.arch or arch,
                "section": {f.name: repr(getattr(section, f.name)) for f in fields(section) if f.name != "where"},
                "indexes": list(read[name] if name in read else
                                archive.identity(section, section.arch or arch, config.cache_dir / "archive")),
                "results": marked[name] if name in marked else db.results_mark(name),
                "depends": [key(d, (*trail, name)) for d in section.depends_sections],
            }
            found[name] = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
        return found[name]

    for name in names:
        key(name, ())
    return found


def valid_until(run: Derived) -> float:
    """When the first verdict that counts expires (FOREVER when none does)."""
    section, until = run.section, FOREVER
    for outcome in run.outcomes.values():
        record = outcome.decisive
        if record is not None and record.kind in ("pass", "fail"):
            days = section.expire_old_days if record.kind == "pass" else section.expire_fail_days
            if days > 0:
                until = min(until, record.started + days * DAY)
    return until


def store(db: Database, run: Derived, key: str) -> None:
    """Keep ``run``'s states under ``key``."""
    packages = {name: [run.archive.packages[name].version, state, list(blocked_by),
                       list(run.outcomes[name].problems), run.outcomes[name].reason]
                for name, (state, blocked_by) in run.computed.items()}
    data = zlib.compress(json.dumps({"format": FORMAT, "packages": packages}).encode(), 1)
    db.store_derived(run.section.name, key, valid_until(run), data)


def load(db: Database, name: str, key: str, now: float) -> Kept | None:
    """The section's kept states when their key is ``key`` and none has expired by ``now``; else None."""
    kept = db.derived(name)
    if kept is None or kept[0] != key or now >= kept[1]:
        return None
    data = json.loads(zlib.decompress(kept[2]))
    if data.get("format") != FORMAT:
        return None
    computed: dict[str, st.Result] = {}
    outcomes: dict[str, Outcome] = {}
    versions: dict[str, _Version] = {}
    for package, (version, state, blocked_by, problems, reason) in data["packages"].items():
        computed[package] = (state, tuple(blocked_by))
        outcomes[package] = Outcome(state if state in (st.PASSED, st.FAILED, st.CANNOT) else None, reason,
                                    problems=tuple(problems))
        versions[package] = _Version(version)
    return Kept(computed, outcomes, _Versions(versions))


def store_all(config: Config, runs: Mapping[str, Derived], db: Database, arch: str,
              marks: Mapping[str, list[int]] | None = None) -> None:
    """Keep the states of the sections of ``runs`` whose depends-sections are there too, each
    under the key of what its derive read: the files it parsed (not read again), and the
    results' ``marks`` taken before it (None: now, when no one else writes results)."""
    def complete(name: str, trail: tuple[str, ...] = ()) -> bool:
        return name in runs and name not in trail and all(
            complete(d, (*trail, name)) for d in config.sections[name].depends_sections)
    wanted = [name for name in runs if complete(name)]
    found = keys(config, wanted, db, arch, {name: runs[name].archive.identity for name in wanted}, marks)
    for name in wanted:
        store(db, runs[name], found[name])
