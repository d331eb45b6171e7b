"""The state database: one SQLite file (WAL), written by the coordinator (and the
states and counts that ``batch status`` and ``piuparts report`` keep).

States are not stored here: they are derived (:mod:`.states`) from the
section's Packages and the results below.  The schema, version 4
(``PRAGMA user_version``; :data:`MIGRATIONS` holds one small script per
version, run in order in one transaction each, so an older file is brought
up to date in place when it is opened)::

    runs(id INTEGER PRIMARY KEY, started REAL, ended REAL, pid INTEGER,
         host TEXT, tool_version TEXT, status TEXT,   -- running|done|interrupted|killed
         kind TEXT)                                   -- batch|ci (2)
    results(id INTEGER PRIMARY KEY,
            section TEXT, package TEXT, version TEXT, architecture TEXT,
            run_id INTEGER REFERENCES runs(id),
            kind TEXT,          -- pass|fail|usage|testbed|internal (RunResult.kind)
            exit_code INTEGER, verdict TEXT, error TEXT,
            problems TEXT,      -- JSON list of known-problem names
            started REAL, duration REAL, worker TEXT,
            tool_version TEXT, flags TEXT,   -- JSON list: the piuparts arguments of the test
            base_age REAL, layer_age REAL,   -- seconds, when the result says
            log_path TEXT,      -- the compressed log, under the configuration's logs directory
            result_json TEXT)   -- RunResult.to_json(), whole
    in_flight(section, package, version, architecture, run_id, worker, started)
    reschedule(section, package, requested REAL, reason TEXT)   -- `batch reschedule` requests
    ci_runs(run_id PRIMARY KEY REFERENCES runs(id),  -- (2) what a `piuparts ci` run saw
            codename TEXT, architecture TEXT, repository TEXT,
            components TEXT,    -- JSON list
            changes TEXT,       -- JSON list: kind, package, version, old_version and the Packages fields shown
            tested TEXT,        -- JSON list: each unit tested (package, version, its binaries)
            summary TEXT, exit_code INTEGER,
            report_json TEXT, junit_xml TEXT)   -- the run's own --json and --junit reports, whole
    derived(section PRIMARY KEY, key, valid_until, data)   -- (3) kept states (batch.snapshot)
    day_counts(section, day, mark, counts)   -- (4) a past day's counts, with the mark of the
                                             --     results counted (report.html.data.history)

A result row is never updated or deleted: a package's history is all its
rows for its key (section, package, version, architecture), oldest first.
Each result is written whole in one transaction (with its in_flight row
removed) the moment it arrives, so a coordinator killed at any point loses
no finished result; ``in_flight`` rows left by a dead coordinator are
dropped by the next one (those packages are simply untested, so waiting).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 4

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, ended REAL, pid INTEGER NOT NULL,
                       host TEXT NOT NULL, tool_version TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'running');
    CREATE TABLE results (
        id INTEGER PRIMARY KEY,
        section TEXT NOT NULL, package TEXT NOT NULL, version TEXT NOT NULL, architecture TEXT NOT NULL,
        run_id INTEGER REFERENCES runs(id),
        kind TEXT NOT NULL CHECK (kind IN ('pass', 'fail', 'usage', 'testbed', 'internal')),
        exit_code INTEGER NOT NULL, verdict TEXT NOT NULL, error TEXT,
        problems TEXT NOT NULL DEFAULT '[]',
        started REAL NOT NULL, duration REAL NOT NULL, worker TEXT NOT NULL DEFAULT '',
        tool_version TEXT NOT NULL, flags TEXT NOT NULL DEFAULT '[]',
        base_age REAL, layer_age REAL, log_path TEXT, result_json TEXT NOT NULL);
    CREATE INDEX results_by_key ON results (section, package, architecture, version, id);
    CREATE TABLE in_flight (section TEXT NOT NULL, package TEXT NOT NULL, version TEXT NOT NULL,
                            architecture TEXT NOT NULL, run_id INTEGER NOT NULL, worker TEXT NOT NULL,
                            started REAL NOT NULL, PRIMARY KEY (section, package, architecture));
    CREATE TABLE reschedule (section TEXT NOT NULL, package TEXT NOT NULL, requested REAL NOT NULL,
                             reason TEXT NOT NULL, PRIMARY KEY (section, package));
    """,
    # 2: runs say whose they are; a CI run's view of its repository and its own reports
    """
    ALTER TABLE runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'batch';
    CREATE TABLE ci_runs (run_id INTEGER PRIMARY KEY REFERENCES runs(id), codename TEXT NOT NULL,
                          architecture TEXT NOT NULL, repository TEXT NOT NULL,
                          components TEXT NOT NULL DEFAULT '[]', changes TEXT NOT NULL DEFAULT '[]',
                          tested TEXT NOT NULL DEFAULT '[]', summary TEXT NOT NULL DEFAULT '',
                          exit_code INTEGER, report_json TEXT, junit_xml TEXT);
    """,
    # 3: a section's derived states, kept under the key of what they were derived from (batch.snapshot)
    """
    CREATE TABLE derived (section TEXT PRIMARY KEY, key TEXT NOT NULL, valid_until REAL NOT NULL,
                          data BLOB NOT NULL);
    """,
    # 4: a section's counts of a past day, as the report's graph shows them (report.html.data.history)
    """
    CREATE TABLE day_counts (section TEXT NOT NULL, day REAL NOT NULL, mark TEXT NOT NULL, counts TEXT NOT NULL,
                             PRIMARY KEY (section, day));
    """,
]
assert len(MIGRATIONS) == SCHEMA_VERSION

_COLUMNS = ("section", "package", "version", "architecture", "run_id", "kind", "exit_code", "verdict", "error",
            "problems", "started", "duration", "worker", "tool_version", "flags", "base_age", "layer_age",
            "log_path", "result_json")


#: The columns of a result without its JSON.
_LIGHT = ", ".join(["id", *(c for c in _COLUMNS if c != "result_json")])


@dataclass(frozen=True)
class Record:
    """One finished test, as stored (``id`` is set once it is)."""

    section: str
    package: str
    version: str
    architecture: str
    kind: str
    exit_code: int
    verdict: str
    started: float
    duration: float
    tool_version: str
    result_json: dict[str, Any]
    run_id: int | None = None
    error: str | None = None
    problems: tuple[str, ...] = ()
    worker: str = ""
    flags: tuple[str, ...] = ()
    base_age: float | None = None
    layer_age: float | None = None
    log_path: str | None = None
    id: int | None = field(default=None, compare=False)

    def row(self) -> tuple[Any, ...]:
        """The values of :data:`_COLUMNS`, JSON-encoded where the column holds JSON."""
        values = {**self.__dict__, "problems": json.dumps(list(self.problems)),
                  "flags": json.dumps(list(self.flags)), "result_json": json.dumps(self.result_json)}
        return tuple(values[c] for c in _COLUMNS)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Record":
        """The inverse of :meth:`row` (with the id); ``result_json`` is {} when the row left it out."""
        keys = row.keys()
        data = {c: row[c] for c in _COLUMNS if c in keys}
        data["problems"] = tuple(json.loads(data["problems"]))
        data["flags"] = tuple(json.loads(data["flags"]))
        data["result_json"] = json.loads(data["result_json"]) if "result_json" in data else {}
        return cls(id=row["id"], **data)


_CI_COLUMNS = ("run_id", "codename", "architecture", "repository", "components", "changes", "tested", "summary",
               "exit_code", "report_json", "junit_xml")
_CI_JSON = ("components", "changes", "tested")


@dataclass(frozen=True)
class CiRun:
    """A ``piuparts ci`` run's row of ``ci_runs``: its repository, what changed there, its reports."""

    run_id: int
    codename: str
    architecture: str
    repository: str
    components: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    tested: list[dict[str, Any]] = field(default_factory=list)
    summary: str = ""
    exit_code: int | None = None
    report_json: str | None = None
    junit_xml: str | None = None

    def row(self) -> tuple[Any, ...]:
        """The values of the columns, JSON-encoded where the column holds JSON."""
        return tuple(json.dumps(getattr(self, c)) if c in _CI_JSON else getattr(self, c) for c in _CI_COLUMNS)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "CiRun":
        """The inverse of :meth:`row`."""
        return cls(**{c: json.loads(row[c]) if c in _CI_JSON else row[c] for c in _CI_COLUMNS})


Key = tuple[str, str, str]  # (package, version, architecture) within a section


class Database:
    """The open database; use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def transaction(self) -> "_Transaction":
        """``with db.transaction():`` one BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception)."""
        return _Transaction(self.conn)

    def migrate(self) -> None:
        """Bring the schema to :data:`SCHEMA_VERSION`, one migration a transaction."""
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            from piuparts.errors import UsageError
            raise UsageError(f"{self.path}: schema version {version} is newer than this piuparts-ng knows "
                             f"({SCHEMA_VERSION}); upgrade piuparts-ng")
        for number in range(version, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {number + 1}")

    # runs
    def start_run(self, pid: int, host: str, tool_version: str, kind: str = "batch") -> int:
        """A new run (``kind``: batch, ci); its id."""
        with self.transaction():
            cursor = self.conn.execute("INSERT INTO runs (started, pid, host, tool_version, kind) "
                                       "VALUES (?, ?, ?, ?, ?)", (time.time(), pid, host, tool_version, kind))
        return int(cursor.lastrowid or 0)

    def end_run(self, run_id: int, status: str) -> None:
        """Mark a run ended with ``status`` (done, interrupted)."""
        with self.transaction():
            self.conn.execute("UPDATE runs SET ended = ?, status = ? WHERE id = ?", (time.time(), status, run_id))

    def abandon_dead_runs(self, current: int) -> list[sqlite3.Row]:
        """Runs still marked running that are not ``current`` (their coordinator died): marked killed,
        their in_flight rows dropped and returned (those packages wait again)."""
        with self.transaction():
            stale = self.conn.execute("SELECT * FROM in_flight WHERE run_id != ?", (current,)).fetchall()
            self.conn.execute("DELETE FROM in_flight WHERE run_id != ?", (current,))
            self.conn.execute("UPDATE runs SET status = 'killed' WHERE status = 'running' AND id != ?", (current,))
        return stale

    def record_ci_run(self, ci: CiRun) -> None:
        """What a CI run saw and reported, written (or replaced) whole."""
        with self.transaction():
            self.conn.execute(f"INSERT OR REPLACE INTO ci_runs ({', '.join(_CI_COLUMNS)}) "
                              f"VALUES ({', '.join('?' * len(_CI_COLUMNS))})", ci.row())

    def ci_runs(self) -> dict[int, CiRun]:
        """Every CI run's record, by run id."""
        return {row["run_id"]: CiRun.from_row(row) for row in
                self.conn.execute("SELECT * FROM ci_runs ORDER BY run_id")}

    # results
    def record(self, record: Record) -> int:
        """Write one result whole, in its own transaction; clear its in_flight row and, for a
        verdict (pass, fail, internal), a pending reschedule request.  Returns its id."""
        with self.transaction():
            cursor = self.conn.execute(
                f"INSERT INTO results ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                record.row())
            self.conn.execute("DELETE FROM in_flight WHERE section = ? AND package = ? AND architecture = ?",
                              (record.section, record.package, record.architecture))
            if record.kind in ("pass", "fail", "internal"):
                self.conn.execute("DELETE FROM reschedule WHERE section = ? AND package = ? AND requested <= ?",
                                  (record.section, record.package, record.started))
        return int(cursor.lastrowid or 0)

    def history(self, section: str) -> dict[Key, list[Record]]:
        """Every result of a section, by (package, version, architecture), oldest first;
        without their ``result_json`` (read it with :meth:`results`)."""
        found: dict[Key, list[Record]] = {}
        for row in self.conn.execute(f"SELECT {_LIGHT} FROM results WHERE section = ? ORDER BY id", (section,)):
            found.setdefault((row["package"], row["version"], row["architecture"]), []).append(Record.from_row(row))
        return found

    def results(self, section: str | None = None) -> Iterator[Record]:
        """All results (of one section), oldest first."""
        query = "SELECT * FROM results" + (" WHERE section = ?" if section else "") + " ORDER BY id"
        for row in self.conn.execute(query, (section,) if section else ()):
            yield Record.from_row(row)

    def light_results(self) -> Iterator[Record]:
        """All results, oldest first, without their ``result_json`` (the report reads a result's
        only when it writes a page that shows it)."""
        for row in self.conn.execute(f"SELECT {_LIGHT} FROM results ORDER BY id"):
            yield Record.from_row(row)

    # in flight
    def mark_in_flight(self, section: str, key: Key, run_id: int, worker: str) -> None:
        """Note that a test was handed to a worker."""
        package, version, arch = key
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO in_flight VALUES (?, ?, ?, ?, ?, ?, ?)",
                              (section, package, version, arch, run_id, worker, time.time()))

    def clear_in_flight(self, section: str, key: Key) -> None:
        """A test that ended without a result (cancelled): it waits again."""
        with self.transaction():
            self.conn.execute("DELETE FROM in_flight WHERE section = ? AND package = ? AND architecture = ?",
                              (section, key[0], key[2]))

    def clear_run_in_flight(self, run_id: int) -> None:
        """Every test of a run that is stopping without their results: they wait again."""
        with self.transaction():
            self.conn.execute("DELETE FROM in_flight WHERE run_id = ?", (run_id,))

    def in_flight(self) -> list[sqlite3.Row]:
        """What is being tested now."""
        return self.conn.execute("SELECT * FROM in_flight ORDER BY started").fetchall()

    # reschedule requests
    def request(self, section: str, package: str, reason: str) -> None:
        """Ask for a package to be tested again (``batch reschedule``)."""
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO reschedule VALUES (?, ?, ?, ?)",
                              (section, package, time.time(), reason))

    def results_mark(self, section: str) -> list[int]:
        """How many results a section has, and the newest one's id (results are only ever added)."""
        count, newest = self.conn.execute("SELECT COUNT(*), MAX(id) FROM results WHERE section = ?",
                                          (section,)).fetchone()
        return [int(count), int(newest or 0)]

    # derived states (piuparts.batch.snapshot)
    def derived(self, section: str) -> tuple[str, float, bytes] | None:
        """The kept states of a section: their key, until when they hold, the data."""
        row = self.conn.execute("SELECT key, valid_until, data FROM derived WHERE section = ?", (section,)).fetchone()
        return None if row is None else (row["key"], row["valid_until"], row["data"])

    def store_derived(self, section: str, key: str, valid_until: float, data: bytes) -> None:
        """Keep a section's states (replacing the ones it had)."""
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO derived VALUES (?, ?, ?, ?)", (section, key, valid_until, data))

    # the counts of past days (piuparts.report.html.data.history)
    def day_counts(self, section: str) -> dict[float, tuple[list[int], dict[str, int]]]:
        """A section's kept counts: day -> (the mark of the results they were counted from, the counts)."""
        return {row["day"]: (json.loads(row["mark"]), json.loads(row["counts"])) for row in
                self.conn.execute("SELECT day, mark, counts FROM day_counts WHERE section = ?", (section,))}

    def store_day_counts(self, section: str, days: dict[float, tuple[list[int], dict[str, int]]]) -> None:
        """Keep (or replace) the counts of some past days of a section."""
        if not days:
            return
        with self.transaction():
            self.conn.executemany("INSERT OR REPLACE INTO day_counts VALUES (?, ?, ?, ?)",
                                  [(section, day, json.dumps(mark), json.dumps(counts, sort_keys=True))
                                   for day, (mark, counts) in days.items()])

    def requests(self, section: str) -> dict[str, str]:
        """Pending reschedule requests of a section: package -> reason."""
        return {row["package"]: row["reason"] for row in
                self.conn.execute("SELECT package, reason FROM reschedule WHERE section = ?", (section,))}


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.conn.execute("ROLLBACK" if exc_type is not None else "COMMIT")
