"""The report site made without a batch configuration: from a CI state database and the
sections :mod:`piuparts.ci.report` describes, as ``piuparts ci --html`` makes it.  The runs are
recorded as the CI coordinator records them (results rows, then the ``ci_runs`` row); no root."""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

from piuparts.api import RunResult
from piuparts.batch.db import Database, Record
from piuparts.ci import changes as ch, report as ci_report
from piuparts.ci.repository import Binary
from piuparts.ci.run import Outcome, Report
from piuparts.ci.state import State
from piuparts.report.html import data, model, site as site_mod

EVIL = '<script>alert("m")</script> Mallory <mallory@example.org>'
NOW = 1_780_000_000.0


def binary(name: str, version: str, source: str = "", maintainer: str = "Team <team@example.org>",
           description: str = "a fixture") -> Binary:
    return Binary(name, version, "all", source or name, version, "main", f"pool/main/{name}_{version}_all.deb",
                  f"sha-{name}-{version}", maintainer, description)


def ci_pass(state: State, changes: list[ch.Change], verdicts: dict[str, str], by_source: bool = False,
            started: float = NOW) -> Report:
    """One CI pass as ``piuparts ci`` records it: a run, a result a unit (its log filed), the ci_runs row."""
    report = Report("/srv/repo", "pp", "amd64", ("main",), changes, started=started)
    state.logs.mkdir(parents=True, exist_ok=True)
    with Database(state.db) as db:
        if verdicts:
            report.run_id = db.start_run(1, "ci-host", "0.1.0", kind="ci")
        for unit in ch.units(changes, by_source):
            kind = verdicts[unit.name]
            result = RunResult(kind=kind, subject={"label": unit.name, "packages": [b.name for b in unit.binaries]},
                               testbed={"distribution": "bookworm"}, scenarios=[{"name": "install-purge", "skipped": None,
                                                                    "steps": [], "findings": []}])
            log = state.logs / f"{unit.name}_{unit.version}_all.log"
            log.write_text(f"0m0.0s INFO: Testing {unit.name}\n0m1.0s WARNING:   | {unit.name}: <b>no</b>\n")
            db.record(Record("pp.amd64", unit.name, unit.version, "all", kind, 0 if kind == "pass" else 1,
                             result.verdict, started, 3.0, "0.1.0", result.to_json(), run_id=report.run_id,
                             log_path=str(log)))
            report.outcomes.append(Outcome(unit, [], result, str(log), 1))
        if report.run_id is not None:
            db.end_run(report.run_id, "done")
    ci_report.record(report, state)
    return report


def test_listings_replay_the_changes_run_after_run(tmp_path: Path) -> None:
    state = State(tmp_path, "pp")
    ci_pass(state, [ch.Change("new", "a", binary("a", "1")), ch.Change("new", "b", binary("b", "1"))],
            {"a": "pass", "b": "pass"})
    ci_pass(state, [ch.Change("changed", "a", binary("a", "2"), "1"), ch.Change("removed", "b", None, "1")],
            {"a": "fail"})
    with Database(state.db) as db:
        (listing,) = ci_report.listings(db)
        kinds = [r["kind"] for r in db.conn.execute("SELECT kind FROM runs")]
    assert listing.name == "pp.amd64" and listing.repository == "/srv/repo" and listing.distro == "bookworm"
    assert {n: (p.version, p.gone) for n, p in listing.packages.items()} == \
        {"a": ("2", ""), "b": ("1", "Removed from the repository (run 2).")}
    assert kinds == ["ci", "ci"]


def test_a_removal_alone_is_a_run_and_nothing_new_is_none(tmp_path: Path) -> None:
    state = State(tmp_path, "pp")
    ci_pass(state, [ch.Change("new", "a", binary("a", "1"))], {"a": "pass"})
    removal = ci_pass(state, [ch.Change("removed", "a", None, "1")], {})
    nothing = ci_pass(state, [], {})
    assert (removal.run_id, nothing.run_id) == (2, None)
    with Database(state.db) as db:
        assert sorted(db.ci_runs()) == [1, 2]
        assert db.conn.execute("SELECT status, kind FROM runs WHERE id = 2").fetchone()[:] == ("done", "ci")


def test_the_site_of_a_ci_database(tmp_path: Path) -> None:
    state = State(tmp_path, "pp")
    ci_pass(state, [ch.Change("new", "a", binary("a", "1", maintainer=EVIL, description="<b>bold</b>")),
                    ch.Change("new", "s1", binary("s1", "1", source="src")),
                    ch.Change("new", "s2", binary("s2", "1", source="src"))],
            {"a": "pass", "src": "pass"}, by_source=True, started=NOW - 3600)
    ci_pass(state, [ch.Change("changed", "a", binary("a", "2", maintainer=EVIL), "1"),
                    ch.Change("removed", "s2", None, "1")], {"a": "fail"})
    out = tmp_path / "site"
    with Database(state.db) as db:
        listings = ci_report.listings(db)
    written = site_mod.generate_listed(state.db, listings, out, now=NOW, title="piuparts ci: pp")
    assert written.unchanged == 0
    index = (out / "index.html").read_text()
    assert "<h1>piuparts ci: pp</h1>" in index
    assert "pp (amd64): 1 upgraded, 1 removed" in index and "pp (amd64): 3 new" in index
    run = (out / "run/2.html").read_text()
    rows = [re.sub(r"<[^>]+>", "", row).split("|") for row in
            re.findall(r"<tr><td>(.*?)</td></tr>", run.replace("</td><td>", "|"))]
    assert ["upgraded", "a", "2", "1"] in rows and ["removed", "s2", "—", "1"] in rows
    assert "/srv/repo" in run and 'href="2.ci.json"' in run and 'href="2.junit.xml"' in run
    assert json.loads((out / "run/2.ci.json").read_text())["run"] == 2
    assert (out / "run/2.junit.xml").read_text().startswith("<?xml")
    assert "FAIL" in run and "PASS" not in run.split("What was tested")[1]
    package = (out / "pp.amd64/package/a/a.html").read_text()
    assert "&lt;script&gt;alert(&#34;m&#34;)&lt;/script&gt; Mallory" in package and "<script" not in package
    assert "a: &lt;b&gt;no&lt;/b&gt;" in package  # the failed test's log, escaped
    entry = json.loads((out / "pp.amd64/package/a/a.json").read_text())
    assert entry["state"] == "failed-testing"
    assert [(r["version"], r["verdict"]) for r in entry["results"]] == [("1", "PASS"), ("2", "FAIL")]
    log = out / entry["results"][0]["log"]
    assert gzip.decompress(log.read_bytes()).decode() == log.with_suffix(".txt").read_text()
    assert "Removed from the repository (run 2)." in (out / "pp.amd64/package/s/s2.html").read_text()
    assert (out / "pp.amd64/package/s/src.html").is_file()  # a --by-source unit's page
    summary = json.loads((out / "summary.json").read_text())["packages"]
    assert summary["a"]["pp.amd64"] == ["F", 0, "source/a/a.html#pp.amd64"]
    assert "s2" not in (out / "pp.amd64/state/successfully-tested.html").read_text()
    assert "3 packages" in (out / "pp.amd64/index.html").read_text()  # a, s1, src; s2 is gone
    again = site_mod.generate_listed(state.db, listings, out, now=NOW, title="piuparts ci: pp")
    assert again.written == 0, again.files


def test_a_listed_section_takes_each_package_state_from_its_listed_version(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with Database(path) as db:
        for version, kind in (("1", "fail"), ("2", "pass")):
            db.record(Record("s", "p", version, "all", kind, 0, kind.upper(), time.time(), 1.0, "0.1.0", {}))
        listing = model.Listing("s", "", "bookworm", None, {"p": model.Listed("p", "1"), "q": model.Listed("q", "1")})
        site = data.load_listed([listing], db, now=NOW)
    section = site.sections["s"]
    assert {n: b.state for n, b in section.binaries.items()} == \
        {"p": "failed-testing", "q": "waiting-to-be-tested"}
    assert section.counts["failed-testing"] == 1 and section.counts["waiting-to-be-tested"] == 1
