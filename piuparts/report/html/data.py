"""The pages' objects (:mod:`.model`) filled from the state database and the sections.

:func:`load` reads each section the way ``piuparts batch status`` does
(:func:`piuparts.batch.engine.prepare`: its Packages, its derived states)
and every result row of the database, and turns them into plain objects the
templates only loop over.  Nothing here writes a file.
"""

from __future__ import annotations

import gzip
import re
import time
from typing import Any, Iterable, Mapping, Sequence

from piuparts.batch import engine, states as st
from piuparts.batch.config import Config
from piuparts.batch.db import Database, Record
from piuparts.report.html import parallel, problems_text
from piuparts.report.html.look import ORDER
from piuparts.report.html.model import (DAY, Binary, Change, Command, Finding, Listing, Problem, Run,
                                        Scenario, Section, Site, Step, Test, age, person, seconds, utc)

#: How many log lines a failed result shows on its package's page.
LOG_TAIL = 40


def _finding(data: Mapping[str, Any]) -> Finding:
    owners = data.get("owners")
    return Finding(str(data.get("severity", "")), str(data.get("check", "")), str(data.get("subject", "")),
                   str(data.get("message", "")),
                   "—" if owners is None else ", ".join(owners) if owners else "not owned",
                   ", ".join(data.get("blame") or ()))


def _step(data: Mapping[str, Any]) -> Step:
    commands = [Command(str(c.get("cmdline", "")), int(c.get("returncode", 0)), seconds(c.get("elapsed")),
                        bool(c.get("timed_out"))) for c in data.get("commands", [])]
    return Step(str(data.get("name", "")), bool(data.get("ok", True)), seconds(data.get("elapsed")),
                str(data.get("message", "")), commands)


def _scenario(data: Mapping[str, Any]) -> Scenario:
    steps = [_step(s) for s in data.get("steps", [])]
    findings = [_finding(f) for f in data.get("findings", [])]
    skipped = data.get("skipped")
    failed = any(not s.ok for s in steps) or any(f.severity == "fail" for f in findings)
    return Scenario(str(data.get("name", "")), "SKIP" if skipped else "FAIL" if failed else "PASS",
                    skipped, steps, findings)


def _upgrade(data: Mapping[str, Any], scenarios: list[Scenario]) -> str:
    """Where the tested version was reached from: older versions, or the distributions."""
    distributions = data.get("distributions") or []
    for scenario in scenarios:
        if scenario.name == "distupgrade" and not scenario.skipped:
            return "installed in " + " -> dist-upgraded to ".join(distributions)
        if scenario.name == "install-upgrade-purge":
            if scenario.skipped:
                return f"no upgrade tested: {scenario.skipped}"
            old = [w for step in scenario.steps if step.name == "install old"
                   for c in step.commands for w in c.cmdline.split() if "=" in w and not w.startswith("-")]
            where = data.get("distribution") or ""
            return f"from {', '.join(old) or 'the older version'} ({where} and its extra repositories)"
    return "no upgrade tested"


def _base(data: Mapping[str, Any]) -> str:
    base = data.get("base")
    if not isinstance(base, dict):
        return str(base or "")
    label = " ".join(str(base[k]) for k in ("backend", "distribution", "identity", "key") if base.get(k))
    if base.get("age_seconds") is not None:
        label += f" (built {age(base['age_seconds'])} before)"
    return label.strip() or data.get("backend", "")


def _layer(data: Mapping[str, Any]) -> str:
    layer = data.get("dependency_layer")
    if not isinstance(layer, dict):
        return ""
    return str(layer.get("layer") or "")


def test_of(record: Record) -> Test:
    """A result row as shown."""
    data = record.result_json
    scenarios = [_scenario(s) for s in data.get("scenarios", [])]
    return Test(record.id or 0, record.section, record.package, record.version, record.architecture,
                record.kind, record.verdict, record.started, record.duration, record.worker,
                str(data.get("host", "")), record.run_id, record.error, record.problems, record.tool_version,
                _base(data), _layer(data), _upgrade(data, scenarios), scenarios, record.log_path, data)


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
            today: float, processes: int = 1) -> tuple[list[float], dict[str, list[int]]]:
    """The section's counts a day, from its first result's day to ``today``.

    Each day's counts are :func:`states.compute` over today's packages with
    the results recorded by the end of that day (the newest verdict of any
    version counts); a day without new results repeats the day before.  The
    days are computed in ``processes`` processes.
    """
    verdicts = sorted((t for t in tests if t.state), key=lambda t: t.started + t.duration)
    if not verdicts:
        return [_midnight(today)], {s: [n] for s, n in st.counts(st.compute(packages, {}, outside)).items()}
    first, last = _midnight(verdicts[0].started + verdicts[0].duration), _midnight(today)
    days = [first + DAY * i for i in range(int((last - first) // DAY) + 1)]
    snapshots: list[dict[str, str]] = []  # the results known at the end of each day that brought new ones
    which: list[int] = []  # day -> its snapshot
    known: dict[str, str] = {}
    position = 0
    for day in days:
        changed = not snapshots
        while position < len(verdicts) and verdicts[position].started + verdicts[position].duration < day + DAY:
            test = verdicts[position]
            if test.package in packages and test.state:
                known[test.package] = test.state
                changed = True
            position += 1
        if changed:
            snapshots.append(dict(known))
        which.append(len(snapshots) - 1)
    counted = parallel.fork_map(lambda i: st.counts(st.compute(packages, snapshots[i], outside)),
                                len(snapshots), processes)
    series = {state: [counted[which[d]][state] for d in range(len(days))] for state in st.STATES}
    return days, series


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
             today: float, processes: int) -> Section:
    by_package: dict[str, list[Test]] = {}
    for test in tests:
        by_package.setdefault(test.package, []).append(test)
    binaries = _binaries(name, run, by_package, descriptions)
    ordered = dict(sorted(binaries.items(), key=lambda item: (ORDER.index(item[1].state), item[0])))
    days, series = history(run.archive.packages, tests, run.outside, today, processes)
    return Section(name, run.section.description, run.section.distro, run.section.repository, ordered,
                   st.counts(run.computed), _problems({k.name: k for k in run.known}, binaries), days, series)


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
    tests = [test_of(record) for record in db.results()]
    by_section: dict[str, list[Test]] = {}
    for test in tests:
        by_section.setdefault(test.section, []).append(test)
    sections = {name: _section(name, run, by_section.get(name, []), descriptions(config, run), now, processes)
                for name, run in runs.items()}
    shown = [t for t in tests if t.section in sections]
    testing = [(r["section"], r["package"], r["version"], r["worker"], utc(r["started"])) for r in db.in_flight()
               if r["section"] in sections]
    return Site(now, sections, _runs(db, shown), changes(shown), unreadable, testing), runs


# a site without a batch configuration


def _listed_section(listing: Listing, tests: list[Test], today: float, processes: int) -> Section:
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
    days, series = history(present, tests, {}, today, processes)
    return Section(listing.name, listing.description, listing.distro, listing.repository, ordered,
                   st.counts(computed), _problems({}, binaries), days, series)


def load_listed(listings: Sequence[Listing], db: Database, now: float | None = None, processes: int = 1,
                title: str = "Package test results", origin: str = "the state database") -> Site:
    """The whole site's data from ``db`` alone, its sections as ``listings`` describe them."""
    now = time.time() if now is None else now
    names = {listing.name for listing in listings}
    tests = [test_of(record) for record in db.results() if record.section in names]
    by_section: dict[str, list[Test]] = {}
    for test in tests:
        by_section.setdefault(test.section, []).append(test)
    sections = {listing.name: _listed_section(listing, by_section.get(listing.name, []), now, processes)
                for listing in listings}
    testing = [(r["section"], r["package"], r["version"], r["worker"], utc(r["started"])) for r in db.in_flight()
               if r["section"] in sections]
    return Site(now, sections, _runs(db, tests), changes(tests), {}, testing, title, origin)
