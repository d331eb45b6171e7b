"""The state database and the scheduling functions over its history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from piuparts.batch import db as dbm, schedule, states as st
from piuparts.batch.config import Section
from piuparts.batch.db import Database, Record
from piuparts.batch.states import Package
from piuparts.errors import UsageError

DAY = 86400.0


def rec(package: str, kind: str, started: float = 1000.0, version: str = "1", run_id: int | None = None,
        error: str | None = None) -> Record:
    code = {"pass": 0, "fail": 1, "usage": 2, "testbed": 3, "internal": 4}[kind]
    return Record("s", package, version, "all", kind, code, "PASS" if code == 0 else "FAIL", started, 2.0,
                  "0.1.0", {"kind": kind}, run_id=run_id, error=error)


def test_schema_is_created_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with Database(path) as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == dbm.SCHEMA_VERSION
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Database(path):  # opening again migrates nothing
        pass


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    """A file made by the first schema (as a release with only it left it) opens: its runs become
    batch runs, its results are kept, and CI runs can be recorded in it."""
    path = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(dbm.MIGRATIONS[0])
    conn.execute("INSERT INTO runs (started, ended, pid, host, tool_version, status) "
                 "VALUES (1000, 2000, 7, 'old-host', '0.0.9', 'done')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with Database(path) as db:
        db.record(rec("foo", "pass", run_id=1))
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == dbm.SCHEMA_VERSION == 4
        assert [tuple(r) for r in db.conn.execute("SELECT id, host, status, kind FROM runs")] == \
            [(1, "old-host", "done", "batch")]
        assert [r.package for r in db.results()] == ["foo"]
        ci = db.start_run(8, "ci-host", "0.1.0", kind="ci")
        db.record_ci_run(dbm.CiRun(ci, "pp", "amd64", "/srv/repo", ["main"],
                                   [{"kind": "new", "package": "foo", "version": "1"}], summary="1 tested",
                                   exit_code=0, report_json="{}", junit_xml="<testsuites/>"))
    with Database(path) as db:  # and again: nothing left to migrate, the rows are there
        assert db.conn.execute("SELECT kind FROM runs WHERE id = ?", (ci,)).fetchone()[0] == "ci"
        (got,) = db.ci_runs().values()
        assert (got.run_id, got.codename, got.components, got.changes[0]["package"], got.junit_xml) == \
            (ci, "pp", ["main"], "foo", "<testsuites/>")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    sqlite3.connect(path).execute("PRAGMA user_version = 99")
    with pytest.raises(UsageError, match="schema version 99 is newer"):
        Database(path)


def test_results_keep_history_and_clear_in_flight(tmp_path: Path) -> None:
    with Database(tmp_path / "b.sqlite") as db:
        run = db.start_run(1, "host", "0.1.0")
        db.mark_in_flight("s", ("foo", "1", "all"), run, "w1")
        db.record(rec("foo", "testbed", run_id=run, error="mirror down"))
        db.record(rec("foo", "pass", 2000.0, run_id=run))
        db.record(rec("foo", "pass", 3000.0, version="2", run_id=run))
        history = db.history("s")
        assert [r.kind for r in history[("foo", "1", "all")]] == ["testbed", "pass"]
        assert [r.version for r in history[("foo", "2", "all")]] == ["2"]
        assert history[("foo", "1", "all")][0].error == "mirror down"
        assert db.in_flight() == []


def test_in_flight_of_a_dead_run_is_dropped_by_the_next(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite"
    with Database(path) as db:
        dead = db.start_run(1, "host", "0.1.0")
        db.mark_in_flight("s", ("foo", "1", "all"), dead, "w1")
    with Database(path) as db:
        current = db.start_run(2, "host", "0.1.0")
        stale = db.abandon_dead_runs(current)
        assert [(r["package"], r["run_id"]) for r in stale] == [("foo", dead)]
        assert db.in_flight() == []
        status = {r["id"]: r["status"] for r in db.conn.execute("SELECT id, status FROM runs")}
        assert status == {dead: "killed", current: "running"}


def test_a_verdict_clears_the_reschedule_request(tmp_path: Path) -> None:
    with Database(tmp_path / "b.sqlite") as db:
        db.request("s", "foo", "asked")
        db.record(rec("foo", "testbed", started=9e12))
        assert db.requests("s") == {"foo": "asked"}
        db.record(rec("foo", "pass", started=9e12))
        assert db.requests("s") == {}


SECTION = Section("s", "bookworm", testbed_retries=2, testbed_retry_delay=60)


def test_outcome_of_verdicts() -> None:
    assert schedule.outcome([], SECTION).state is None
    assert schedule.outcome([rec("f", "pass")], SECTION, now=2000).state == st.PASSED
    assert schedule.outcome([rec("f", "pass"), rec("f", "fail")], SECTION, now=2000).state == st.FAILED
    internal = schedule.outcome([rec("f", "internal", error="KeyError: x")], SECTION, now=2000)
    assert (internal.state, internal.reason) == (st.CANNOT, "internal error: KeyError: x")


def test_testbed_failures_retry_with_back_off_then_cannot_be_tested() -> None:
    one = [rec("f", "testbed", 1000.0, run_id=7, error="mirror down")]
    pending = schedule.outcome(one, SECTION, run_id=7, now=1010)
    assert pending.state is None and pending.attempts == 1 and pending.due == 1000 + 2 + 60
    assert schedule.outcome(one, SECTION, run_id=8, now=1010).due == 0  # a new run retries at once
    two = one + [rec("f", "testbed", 1100.0, run_id=7, error="mirror down")]
    assert schedule.outcome(two, SECTION, run_id=7, now=1110).due == 1100 + 2 + 120
    three = two + [rec("f", "testbed", 1300.0, run_id=7, error="disk full")]
    gave_up = schedule.outcome(three, SECTION, run_id=7, now=1400)
    assert gave_up.state == st.CANNOT and gave_up.reason == "test bed: disk full (after 3 attempts)"


def test_a_testbed_failure_after_a_pass_keeps_the_pass() -> None:
    history = [rec("f", "pass"), rec("f", "testbed", 2000.0, error="down")]
    assert schedule.outcome(history, SECTION, now=3000).state == st.PASSED


def test_expired_verdicts_no_longer_count() -> None:
    section = Section("s", "bookworm", expire_old_days=10, expire_fail_days=5)
    assert schedule.outcome([rec("f", "pass", 0.0)], section, now=11 * DAY).state is None
    assert schedule.outcome([rec("f", "pass", 0.0)], section, now=9 * DAY).state == st.PASSED
    assert schedule.outcome([rec("f", "fail", 0.0)], section, now=6 * DAY).state is None


def test_reschedule_oldest_first_within_the_counts() -> None:
    section = Section("s", "bookworm", reschedule_old_days=30, reschedule_old_count=2,
                      reschedule_fail_days=10, reschedule_fail_count=1)
    now = 100 * DAY
    outcomes = {name: schedule.outcome([rec(name, kind, started * DAY)], section, now=now)
                for name, kind, started in [("p1", "pass", 10), ("p2", "pass", 20), ("p3", "pass", 30),
                                            ("p4", "pass", 90), ("f1", "fail", 50), ("f2", "fail", 40)]}
    assert schedule.due_for_reschedule(outcomes, section, {}, now) == ["p1", "p2", "f2"]
    assert schedule.due_for_reschedule(outcomes, section, {"p4": "asked"}, now)[:1] == ["p4"]
    off = Section("s", "bookworm", auto_reschedule=False)
    assert schedule.due_for_reschedule(outcomes, off, {"p4": "asked"}, now) == ["p4"]


def test_rescheduled_packages_are_retested_only_when_testable() -> None:
    packages = {"lib": Package("lib", "1"), "app": Package("app", "1", depends=(("lib",),)),
                "other": Package("other", "1", depends=(("broken",),)), "broken": Package("broken", "1")}
    results = {"lib": st.PASSED, "app": st.FAILED, "other": st.FAILED, "broken": st.FAILED}
    assert schedule.testable_again(packages, results, {}, ["app", "other"]) == ["app"]


def test_order_most_blocking_first_then_rescheduled() -> None:
    packages = {"base": Package("base", "1"), "x": Package("x", "1", depends=(("base",),)),
                "y": Package("y", "1", depends=(("x",),)), "a": Package("a", "1"), "old": Package("old", "1")}
    computed = st.compute(packages, {"old": st.PASSED})
    assert schedule.order(computed, ["old"]) == ["base", "a", "old"]
