"""The pages' objects (:mod:`.model`) filled from the state database and the sections.

:func:`load` reads each section the way ``piuparts batch status`` does
(:func:`piuparts.batch.engine.prepare`: its Packages, its derived states)
and every result row of the database, and turns them into plain objects the
templates only loop over.  Nothing here writes a file; the counts of past
days are kept in the database (:func:`history`).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence
from urllib.parse import quote

from piuparts.batch import engine, states as st
from piuparts.batch.config import Config
from piuparts.batch.db import Database, Record
from piuparts.report.html import parallel, problems_text
from piuparts.report.html.look import ORDER
from piuparts.report.html.model import DAY, Binary, Change, Listing, Problem, Run, Section, Site, Test, person, utc

#: How many log lines a failed result shows on its package's page.
LOG_TAIL = 40


class ResultTexts:
    """A result's JSON read from the state database when a page shows it: read-only, with a
    connection of each process's own (pages are rendered in forked processes too)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._opened: tuple[int, sqlite3.Connection] | None = None

    def __call__(self, result_id: int) -> str:
        if self._opened is None or self._opened[0] != os.getpid():
            conn = sqlite3.connect(f"file:{quote(str(self.path.resolve()))}?mode=ro", uri=True, timeout=30)
            self._opened = (os.getpid(), conn)
        row = self._opened[1].execute("SELECT result_json FROM results WHERE id = ?", (result_id,)).fetchone()
        return "{}" if row is None else str(row[0])


def test_of(record: Record, raw: str | Callable[[int], str] | None = None) -> Test:
    """A result row as shown; ``raw``: its JSON as stored, or what reads it (parsed only when a
    page shows it; None: the record's own ``result_json``)."""
    return Test(record.id or 0, record.section, record.package, record.version, record.architecture,
                record.kind, record.verdict, record.started, record.duration, record.worker, record.run_id,
                record.error, record.problems, record.tool_version, record.log_path,
                json.dumps(record.result_json) if raw is None else raw)


_LOUD = re.compile(r"^\S+ (WARNING|ERROR|CRITICAL):")
_QUIET = re.compile(r"^\S+ DEBUG:")


def log_tail(test: Test, lines: int = LOG_TAIL) -> list[str]:
    """What a failed result's log said: its last warning and error lines (what the failing
    commands printed), else its last lines above DEBUG; an empty list when the log is gone."""
    if not test.log_source:
        return []
    try:
        opened = gzip.open if test.log_source.endswith(".gz") else open
        with opened(test.log_source, "rt", errors="replace") as handle:
            text = handle.read().splitlines()
    except OSError:
        return []
    loud = [line for line in text if _LOUD.match(line)]
    return (loud or [line for line in text if not _QUIET.match(line)])[-lines:]


# the counts over time


def _midnight(stamp: float) -> float:
    return stamp - stamp % DAY


def history(packages: Mapping[str, st.Package], tests: Iterable[Test], outside: Mapping[str, str],
            today: float, processes: int = 1, kept: Mapping[float, tuple[list[int], dict[str, int]]] | None = None,
            current: Mapping[str, int] | None = None
            ) -> tuple[list[float], dict[str, list[int]], dict[float, tuple[list[int], dict[str, int]]]]:
    """The section's counts a day, from its first result's day to ``today``; and the past days
    counted here, to keep.

    A past day's counts are :func:`states.compute` over the section's packages
    as they are when it is counted, with the results recorded by the end of that
    day (the newest verdict of any version counts).  They are counted once,
    after that day (what the archive held then is what they count, as
    piuparts-report's counts.txt keeps a line a day), and then taken from
    ``kept`` (day -> the mark of the results counted, the counts) as long as the
    mark (how many verdicts ended by then, the newest one's id) is the same: a
    whole archive's month is thirty solves of its graph, seconds each.  Today's
    counts are ``current`` (the section's states now) when given.  A day without
    new results repeats the day before.  What is counted is counted in
    ``processes`` processes.
    """
    kept = kept or {}
    verdicts = sorted((t for t in tests if t.state), key=lambda t: t.started + t.duration)
    if not verdicts:
        counts = dict(current) if current is not None else st.counts(st.compute(packages, {}, outside))
        return [_midnight(today)], {s: [counts.get(s, 0)] for s in st.STATES}, {}
    first, last = _midnight(verdicts[0].started + verdicts[0].duration), _midnight(today)
    days = [first + DAY * i for i in range(int((last - first) // DAY) + 1)]
    snapshots: list[dict[str, str]] = []  # the results known at the end of each day that brought new ones
    marks: list[list[int]] = []
    which: list[int] = []  # day -> its snapshot
    known: dict[str, str] = {}
    position, newest = 0, 0
    for day in days:
        changed = not snapshots
        while position < len(verdicts) and verdicts[position].started + verdicts[position].duration < day + DAY:
            test = verdicts[position]
            if test.package in packages and test.state:
                known[test.package] = test.state
                changed = True
            newest = max(newest, test.id)
            position += 1
        if changed:
            snapshots.append(dict(known))
            marks.append([position, newest])
        which.append(len(snapshots) - 1)
    counted: dict[int, dict[str, int]] = {}
    for d, day in enumerate(days):
        if day < last and day in kept and kept[day][0] == marks[which[d]]:
            counted.setdefault(which[d], kept[day][1])
    needed = range(len(days) - 1) if current is not None else range(len(days))
    wanted = sorted({which[d] for d in needed} - set(counted))
    for i, found in zip(wanted, parallel.fork_map(
            lambda j: st.counts(st.compute(packages, snapshots[wanted[j]], outside)), len(wanted), processes)):
        counted[i] = found
    shown = [counted[which[d]] for d in needed] + ([dict(current)] if current is not None else [])
    series = {state: [day.get(state, 0) for day in shown] for state in st.STATES}
    fresh = {day: (marks[which[d]], counted[which[d]]) for d, day in enumerate(days)
             if day < last and (day not in kept or kept[day][0] != marks[which[d]])}
    return days, series, fresh


# the whole site


def _binaries(name: str, run: engine.SectionRun, tests: dict[str, list[Test]],
              descriptions: Mapping[str, str]) -> dict[str, Binary]:
    blocked = _blocked_counts(run.computed)
    waiting_on = st.blocking(run.computed)
    found = {}
    for package, (state, blocked_by) in run.computed.items():
        pkg = run.archive.packages[package]
        outcome = run.outcomes.get(package)
        found[package] = Binary(
            name, package, pkg.version, pkg.source or package, person(pkg.maintainer),
            descriptions.get(package, ""), state, list(blocked_by),
            waiting_on.get(package, 0) + blocked.get(package, 0),
            outcome.problems if outcome else (), outcome.reason if outcome else None, tests.get(package, []))
    return found


def _blocked_counts(computed: Mapping[str, st.Result]) -> dict[str, int]:
    """Name -> how many packages name it as what holds them back (errors, missing dependencies)."""
    tally: dict[str, int] = {}
    for state, blocked_by in computed.values():
        if state in (st.DEP_FAILED, st.DEP_CANNOT, st.DEP_MISSING):
            for name in blocked_by:
                tally[name] = tally.get(name, 0) + 1
    return tally


def _problems(known: Mapping[str, Any], binaries: Mapping[str, Binary]) -> dict[str, Problem]:
    found: dict[str, Problem] = {}
    for binary in binaries.values():
        if binary.state not in (st.PASSED, st.FAILED):
            continue
        for name in binary.problems:
            if name not in found:
                header, helptext, issue = problems_text.describe(name, known.get(name))
                found[name] = Problem(name, header, helptext, issue, [])
            found[name].packages.append(binary)
    return dict(sorted(found.items(), key=lambda item: (item[1].issue, item[0])))


def _section(name: str, run: engine.SectionRun, tests: list[Test], descriptions: Mapping[str, str],
             today: float, processes: int, db: Database) -> Section:
    by_package: dict[str, list[Test]] = {}
    for test in tests:
        by_package.setdefault(test.package, []).append(test)
    binaries = _binaries(name, run, by_package, descriptions)
    ordered = dict(sorted(binaries.items(), key=lambda item: (ORDER.index(item[1].state), item[0])))
    counts = st.counts(run.computed)
    days, series, fresh = history(run.archive.packages, tests, run.outside, today, processes, db.day_counts(name),
                                  counts)
    db.store_day_counts(name, fresh)
    return Section(name, run.section.description, run.section.distro, run.section.repository, ordered,
                   counts, _problems({k.name: k for k in run.known}, binaries), days, series)


def _runs(db: Database, tests: list[Test]) -> list[Run]:
    """Every run, newest first, with its tests and the version each package had before."""
    columns = {row[1] for row in db.conn.execute("PRAGMA table_info(runs)")}
    by_run: dict[int, list[Test]] = {}
    previous: dict[int, str] = {}
    last_version: dict[tuple[str, str], str] = {}
    for test in sorted(tests, key=lambda t: t.id):
        if test.run_id is not None:
            by_run.setdefault(test.run_id, []).append(test)
        key = (test.section, test.package)
        previous[test.id] = last_version.get(key, "")
        last_version[key] = test.version
    ci = db.ci_runs()
    runs = []
    for row in db.conn.execute("SELECT * FROM runs ORDER BY id DESC"):
        kind = row["kind"] if "kind" in columns else "batch"
        mine = by_run.get(row["id"], [])
        runs.append(Run(row["id"], kind, row["started"], row["ended"], row["host"], row["tool_version"],
                        row["status"], mine, {t.id: previous[t.id] for t in mine}, ci.get(row["id"])))
    return runs


def changes(tests: Iterable[Test]) -> list[Change]:
    """Pass -> fail and fail -> pass of each package of each section, and the first
    verdict of each new version of a package tested before (an upload), newest first."""
    last: dict[tuple[str, str], Test] = {}
    found = []
    for test in sorted(tests, key=lambda t: t.id):
        if test.verdict not in ("PASS", "FAIL"):
            continue
        key = (test.section, test.package)
        before = last.get(key)
        if before is not None and (before.verdict != test.verdict or before.version != test.version):
            found.append(Change(test.section, test.package, before, test))
        last[key] = test
    return sorted(found, key=lambda c: c.after.id, reverse=True)


def descriptions(config: Config, run: engine.SectionRun) -> dict[str, str]:
    """The short descriptions of a section's packages, from its Packages files (the states do not
    keep them); read line by line, as deb822 takes seconds for a whole archive."""
    from piuparts.batch import archive
    fetcher = archive.Fetcher(config.cache_dir / "archive")
    section = run.section
    urls = (archive.repository_indexes(section.repository, run.arch) if section.repository
            else archive.distro_indexes(section, run.arch, [section.area]))
    found: dict[str, str] = {}
    for url in urls:
        data = fetcher.index(url)
        name = None
        for line in (data or b"").decode(errors="replace").splitlines():
            if line.startswith("Package:"):
                name = line[8:].strip()
            elif line.startswith("Description:") and name in run.archive.packages:
                found[name] = line[12:].strip()
    return found


def load(config: Config, names: list[str], db: Database, now: float | None = None,
         processes: int = 1) -> tuple[Site, dict[str, engine.SectionRun]]:
    """The whole site's data (the sections ``names``, every run, every change), and the sections as read."""
    now = time.time() if now is None else now
    unreadable: dict[str, str] = {}
    runs = engine.prepare(config, names, db, unreadable)
    texts = ResultTexts(db.path)
    tests = [test_of(record, texts) for record in db.light_results()]
    by_section: dict[str, list[Test]] = {}
    for test in tests:
        by_section.setdefault(test.section, []).append(test)
    sections = {name: _section(name, run, by_section.get(name, []), descriptions(config, run), now, processes, db)
                for name, run in runs.items()}
    shown = [t for t in tests if t.section in sections]
    testing = [(r["section"], r["package"], r["version"], r["worker"], utc(r["started"])) for r in db.in_flight()
               if r["section"] in sections]
    return Site(now, sections, _runs(db, shown), changes(shown), unreadable, testing), runs


# a site without a batch configuration


def _listed_section(listing: Listing, tests: list[Test], today: float, processes: int, db: Database) -> Section:
    """A :class:`Section` of a listing: states from each package's results for its listed version."""
    by_package: dict[str, list[Test]] = {}
    for test in tests:
        by_package.setdefault(test.package, []).append(test)
    present = {name: st.Package(name, entry.version, maintainer=entry.maintainer, source=entry.source or name)
               for name, entry in listing.packages.items() if not entry.gone}
    verdicts = {}
    for name, pkg in present.items():
        decided = [t for t in by_package.get(name, []) if t.version == pkg.version and t.state]
        if decided:
            verdicts[name] = str(decided[-1].state)
    computed = st.compute(present, verdicts, {})
    waiting_on, blocked = st.blocking(computed), _blocked_counts(computed)
    binaries = {}
    for name, entry in listing.packages.items():
        mine = by_package.get(name, [])
        last = next((t for t in reversed(mine) if t.state), None)
        state, blocked_by = computed.get(name, (last.state if last and last.state else st.UNKNOWN, ()))
        binaries[name] = Binary(listing.name, name, entry.version, entry.source or name, person(entry.maintainer),
                                entry.description, state, list(blocked_by),
                                waiting_on.get(name, 0) + blocked.get(name, 0), last.problems if last else (),
                                last.error if last and state == st.CANNOT else None, mine, entry.gone)
    ordered = dict(sorted(binaries.items(), key=lambda item: (ORDER.index(item[1].state), item[0])))
    counts = st.counts(computed)
    days, series, fresh = history(present, tests, {}, today, processes, db.day_counts(listing.name), counts)
    db.store_day_counts(listing.name, fresh)
    return Section(listing.name, listing.description, listing.distro, listing.repository, ordered,
                   counts, _problems({}, binaries), days, series)


def load_listed(listings: Sequence[Listing], db: Database, now: float | None = None, processes: int = 1,
                title: str = "Package test results", origin: str = "the state database") -> Site:
    """The whole site's data from ``db`` alone, its sections as ``listings`` describe them."""
    now = time.time() if now is None else now
    names = {listing.name for listing in listings}
    texts = ResultTexts(db.path)
    tests = [test_of(record, texts) for record in db.light_results() if record.section in names]
    by_section: dict[str, list[Test]] = {}
    for test in tests:
        by_section.setdefault(test.section, []).append(test)
    sections = {listing.name: _listed_section(listing, by_section.get(listing.name, []), now, processes, db)
                for listing in listings}
    testing = [(r["section"], r["package"], r["version"], r["worker"], utc(r["started"])) for r in db.in_flight()
               if r["section"] in sections]
    return Site(now, sections, _runs(db, tests), changes(tests), {}, testing, title, origin)
