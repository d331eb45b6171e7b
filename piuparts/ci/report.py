"""The JSON report of a CI pass, its record in the results database, and the report site.

A pass that found changes is recorded as a run (``runs.kind = 'ci'``) with
a ``ci_runs`` row: the repository, what changed there (with the Packages
fields the pages show), what was tested, and the pass's own JSON and JUnit
reports, whole.  The site (``--html DIR``) is then made from the database
alone by the report site's generator (:func:`piuparts.report.html.site.
generate_listed`): a section a codename and architecture
(``CODENAME.ARCH``), whose packages are what the recorded changes leave in
the repository, replayed run after run; a package removed since keeps its
page (the runs that tested it link there), marked as removed.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from piuparts import __version__
from piuparts.batch.db import CiRun, Database
from piuparts.ci import changes as ch
from piuparts.ci.run import Outcome, Report
from piuparts.ci.state import State, write_json
from piuparts.report.html import model


def write_json_report(path: Path, report: Report) -> None:
    """The JSON report (the RunResults, what changed)."""
    write_json(path, report.to_json())


def change_json(change: ch.Change) -> dict[str, Any]:
    """A change as ``ci_runs.changes`` keeps it: the JSON report's fields and what a page shows."""
    binary = change.binary
    return {**change.to_json(), "source": binary.source if binary else "",
            "architecture": binary.architecture if binary else "",
            "maintainer": binary.maintainer if binary else "", "description": binary.description if binary else ""}


def _tested_json(outcome: Outcome) -> dict[str, Any]:
    return {"package": outcome.unit.name, "version": outcome.unit.version,
            "binaries": [b.name for b in outcome.unit.binaries],
            "verdict": outcome.result.verdict if outcome.result else None}


def record(report: Report, state: State) -> int | None:
    """Record the pass in the database (a run, if testing did not start one, and its ``ci_runs``
    row); the run's id, also set on ``report``.  A pass that found nothing changed is not a run."""
    from piuparts.ci import junit
    if not report.changes:
        return None
    with Database(state.db) as db:
        with db.transaction():  # a CI database holds CI runs only (its runs were 'batch' before schema 2)
            db.conn.execute("UPDATE runs SET kind = 'ci' WHERE kind != 'ci'")
        if report.run_id is None:  # removals only: nothing was tested, the change is a run all the same
            report.run_id = db.start_run(os.getpid(), socket.gethostname(), __version__, kind="ci")
            db.end_run(report.run_id, "interrupted" if report.interrupted else "done")
        db.record_ci_run(CiRun(
            report.run_id, report.codename, report.arch, report.repository, list(report.components),
            [change_json(c) for c in report.changes], [_tested_json(o) for o in report.outcomes],
            report.summary(), 130 if report.interrupted else report.exit_code(),
            json.dumps(report.to_json(), indent=1, sort_keys=True) + "\n", junit.text(report).decode()))
    return report.run_id


def listings(db: Database) -> list[model.Listing]:
    """The site's sections: a codename and architecture each, their packages as the recorded
    changes leave them, with every name a result was recorded for (a source, with --by-source)."""
    found: dict[str, dict[str, model.Listed]] = {}
    about: dict[str, CiRun] = {}
    for ci in db.ci_runs().values():
        section = f"{ci.codename}.{ci.architecture}"
        packages = found.setdefault(section, {})
        about[section] = ci
        for change in ci.changes:
            name = change["package"]
            if change["kind"] != ch.REMOVED:
                packages[name] = model.Listed(name, change["version"], change.get("source", ""),
                                              change.get("maintainer", ""), change.get("description", ""))
            elif name in packages:
                packages[name] = replace(packages[name], gone=f"Removed from the repository (run {ci.run_id}).")
        for unit in ci.tested:
            name, binaries = unit["package"], [packages[b] for b in unit["binaries"] if b in packages]
            if name not in packages or name not in unit["binaries"]:
                first = binaries[0] if binaries else model.Listed(name, unit["version"])
                packages[name] = model.Listed(name, unit["version"], name, first.maintainer,
                                              f"The binaries of source {name}: {', '.join(unit['binaries'])}")
    for row in db.conn.execute("SELECT section, package, version FROM results ORDER BY id"):
        packages = found.setdefault(row["section"], {})  # results older than the ci_runs table
        if row["package"] not in packages:
            packages[row["package"]] = model.Listed(row["package"], row["version"])
    return [_listing(db, section, packages, about.get(section)) for section, packages in sorted(found.items())]


def _listing(db: Database, section: str, packages: dict[str, model.Listed], ci: CiRun | None) -> model.Listing:
    last = db.conn.execute("SELECT result_json FROM results WHERE section = ? ORDER BY id DESC LIMIT 1",
                           (section,)).fetchone()
    distro = str(json.loads(last["result_json"]).get("distribution") or "") if last else ""
    description = f"piuparts ci of {ci.codename} ({ci.architecture})" if ci else f"piuparts ci of {section}"
    return model.Listing(section, description, distro or "?", ci.repository if ci else None,
                         dict(sorted(packages.items())))


def write_html(directory: Path, report: Report, state: State) -> str:
    """The report site of the codename's database in ``directory`` (only what changed is
    rewritten); its summary line."""
    from piuparts.report.html import site
    with Database(state.db) as db:  # made (empty) when nothing was ever tested
        sections = listings(db)
    return site.generate_listed(state.db, sections, directory, title=f"piuparts ci: {report.codename}").line()
