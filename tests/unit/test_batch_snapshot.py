"""``batch status`` from kept states (piuparts.batch.snapshot): the same answer as a
derive, and a derive again whenever anything the states come from changed."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from piuparts.batch import cli as batch_cli, config as config_mod, engine, report, snapshot
from piuparts.batch.db import Database
from tests.unit.test_report_site import synthetic


def states(config: config_mod.Config) -> tuple[str, dict]:
    """Whether status derived the states or read them kept, and what it answers."""
    with Database(config.db) as db:
        runs = batch_cli._states(config, ["sid"], db)
    how = "derived" if isinstance(runs["sid"], engine.SectionRun) else "kept"
    return how, {"json": report.status_json(runs), "text": report.status_text(runs)}


def test_kept_states_answer_as_a_derive_until_what_they_come_from_changes(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 60, 5)
    how, first = states(config)
    assert how == "derived"
    how, again = states(config)
    assert (how, again) == ("kept", first)  # the same document and text, packages, problems and reasons
    # A new result (here an old row again): derived again, and the answer follows it.
    with Database(config.db) as db:
        columns = ", ".join(c for c in db.conn.execute("SELECT * FROM results").fetchone().keys() if c != "id")
        db.conn.execute(f"INSERT INTO results ({columns}) SELECT {columns} FROM results "
                        "WHERE kind = 'fail' ORDER BY id LIMIT 1")
        db.conn.commit()
    assert states(config)[0] == "derived"
    assert states(config)[0] == "kept"
    # Another Packages file (same name, same date, other bytes): derived again.
    index = tmp_path / "mirror/dists/bookworm/main/binary-amd64/Packages"
    text = index.read_text()
    stat = index.stat()
    index.write_text(text.replace("Version: ", "Version: 1:", 1))
    os.utime(index, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    how, changed = states(config)
    assert how == "derived" and changed != first
    # Another setting of the section: derived again.
    (tmp_path / "batch.conf").write_text((tmp_path / "batch.conf").read_text() + "reschedule-old-days = 3\n")
    assert states(config_mod.load(tmp_path / "batch.conf"))[0] == "derived"


def test_kept_states_end_when_a_verdict_expires(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 30, 5)
    section = dataclasses.replace(config.sections["sid"], expire_old_days=400.0)
    config = dataclasses.replace(config, sections={"sid": section})
    with Database(config.db) as db:
        runs = engine.prepare(config, ["sid"], db)
        until = snapshot.valid_until(runs["sid"])
        oldest = min(o.decisive.started for o in runs["sid"].outcomes.values()
                     if o.decisive is not None and o.decisive.kind == "pass")
        assert until == oldest + 400 * 86400
        key = snapshot.keys(config, ["sid"], db, engine.host_arch())["sid"]
        snapshot.store(db, runs["sid"], key)
        assert snapshot.load(db, "sid", key, until - 1) is not None
        assert snapshot.load(db, "sid", key, until) is None  # a pass expired: its state is another now
        assert snapshot.load(db, "sid", "another key", until - 1) is None


def test_a_run_keeps_the_states_it_ended_with(tmp_path: Path) -> None:
    config = synthetic(tmp_path, 20, 5)
    with Database(config.db) as db:
        runs = engine.prepare(config, ["sid"], db)
        snapshot.store_all(config, runs, db, engine.host_arch())
    assert states(config)[0] == "kept"
