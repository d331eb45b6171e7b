"""The coordinator's loop with a stand-in executor (the real one runs in tests/integration)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest

from piuparts.api import RunResult
from piuparts.cli import config_from_argv
from piuparts.batch import engine, states as st
from piuparts.batch.archive import Archive
from piuparts.batch.config import Config, Section
from piuparts.batch.db import Database, Record
from piuparts.batch.executor import Executor, Finished, Running, Task
from piuparts.batch.states import Package
from piuparts.errors import UsageError


class StandIn(Executor):
    """Runs nothing: answers each task at once with the kind ``outcomes`` gives its package."""

    def __init__(self, outcomes: dict[str, str], slots: int = 2) -> None:
        self.outcomes, self.slots = outcomes, slots
        self.pending: list[Running] = []
        self.order: list[str] = []

    def free_slots(self) -> int:
        return self.slots - len(self.pending)

    def submit(self, task: Task) -> Running:
        running = Running(task, "stand-in", time.time())
        self.pending.append(running)
        self.order.append(task.package)
        return running

    def collect(self, timeout: float) -> list[Finished]:
        done, self.pending = self.pending, []
        return [Finished(r.task, RunResult(kind=self.outcomes.get(r.task.package, "pass"),
                                           subject={"label": r.task.package}, error="mirror down"
                                           if self.outcomes.get(r.task.package) == "testbed" else None),
                         r.worker, r.started, 0.0) for r in done]

    def cancel(self) -> None:
        self.pending = []

    def running(self) -> list[Running]:
        return list(self.pending)

    def close(self) -> None:
        pass


def section_run(tmp_path: Path, packages: list[Package], **settings: object) -> tuple[Config, engine.SectionRun]:
    conf = Config(tmp_path / "batch.conf", {}, db=tmp_path / "b.sqlite", logs=tmp_path / "logs",
                  cache_dir=tmp_path / "cache")
    section = Section("s", "bookworm", **settings)  # type: ignore[arg-type]
    run_config, _ = config_from_argv(["-d", "bookworm", "-m", "http://mirror.invalid/debian", "--arch", "amd64",
                                      "--cache-dir", str(tmp_path / "cache")])
    run = engine.SectionRun(section, "amd64", Archive({p.name: p for p in packages}, frozenset()), run_config,
                            ("-d", "bookworm"), [], {})
    return conf, run


def go(conf: Config, run: engine.SectionRun, executor: StandIn, stop: engine.Stop | None = None) -> engine.Tally:
    with Database(conf.db) as db:
        run_id = db.start_run(1, "host", "test")
        run.refresh(db, run_id)
        coordinator = engine.Coordinator(conf, {"s": run}, db, executor, run_id, engine.Display(),
                                         stop or engine.Stop())
        return coordinator.loop()


PACKAGES = [Package("base", "1"), Package("mid", "1", depends=(("base",),)),
            Package("top", "1", depends=(("mid",),)), Package("bad", "1"),
            Package("needs-bad", "1", depends=(("bad",),)), Package("solo", "1")]


def test_chain_first_failing_dependency_never_tested(tmp_path: Path) -> None:
    conf, run = section_run(tmp_path, PACKAGES)
    executor = StandIn({"bad": "fail"})
    tally = go(conf, run, executor)
    assert executor.order.index("base") < executor.order.index("mid") < executor.order.index("top")
    assert "needs-bad" not in executor.order
    assert executor.order[0] == "base"  # it blocks the most
    assert run.computed["needs-bad"] == (st.DEP_FAILED, ("bad",))
    assert tally.kinds["pass"] == 4 and tally.kinds["fail"] == 1 and tally.exit_code() == 1


def test_testbed_failure_is_retried_then_cannot_be_tested(tmp_path: Path) -> None:
    conf, run = section_run(tmp_path, [Package("flaky", "1")], testbed_retries=2, testbed_retry_delay=0)
    executor = StandIn({"flaky": "testbed"})
    tally = go(conf, run, executor)
    assert executor.order == ["flaky"] * 3
    assert run.computed["flaky"] == (st.CANNOT, ())
    assert run.outcomes["flaky"].reason == "test bed: mirror down (after 3 attempts)"
    assert tally.exit_code() == 3


def test_testbed_failure_with_back_off_waits_for_the_next_run(tmp_path: Path) -> None:
    conf, run = section_run(tmp_path, [Package("flaky", "1")], testbed_retry_delay=600)
    go(conf, run, StandIn({"flaky": "testbed"}))
    assert run.computed["flaky"] == (st.WAITING, ())
    again = StandIn({})
    go(conf, run, again)  # a new run: retried at once
    assert again.order == ["flaky"] and run.computed["flaky"] == (st.PASSED, ())


def test_nothing_tested_twice_and_a_second_run_has_nothing_to_do(tmp_path: Path) -> None:
    conf, run = section_run(tmp_path, PACKAGES)
    first = StandIn({"bad": "fail"})
    go(conf, run, first)
    assert len(first.order) == len(set(first.order))
    second = StandIn({})
    assert go(conf, run, second).tested == 0 and second.order == []


def test_ctrl_c_once_takes_no_new_tests(tmp_path: Path) -> None:
    conf, run = section_run(tmp_path, PACKAGES)
    stop = engine.Stop()
    stop.press()
    executor = StandIn({})
    assert go(conf, run, executor, stop).tested == 0 and executor.order == []


def test_internal_error_is_not_retried_and_is_listed(tmp_path: Path) -> None:
    conf, run = section_run(tmp_path, [Package("odd", "1")])
    tally = go(conf, run, StandIn({"odd": "internal"}))
    assert tally.kinds["internal"] == 1 and len(tally.internal_errors) == 1 and tally.exit_code() == 4
    assert run.computed["odd"][0] == st.CANNOT


def test_second_coordinator_refuses(tmp_path: Path) -> None:
    with engine.lock(tmp_path / "b.sqlite"):
        with pytest.raises(UsageError, match=r"another piuparts batch run \(PID \d+\) is using this database"):
            with engine.lock(tmp_path / "b.sqlite"):
                pass


def test_max_tests_and_seed(tmp_path: Path) -> None:
    packages = [Package(f"p{i}", "1") for i in range(10)]
    conf, run = section_run(tmp_path, packages)
    run.seed = 7
    executor = StandIn({})
    with Database(conf.db) as db:
        run_id = db.start_run(1, "host", "test")
        run.refresh(db, run_id)
        coordinator = engine.Coordinator(conf, {"s": run}, db, executor, run_id, engine.Display(), engine.Stop(),
                                         max_tests=3)
        assert coordinator.loop().tested == 3
    assert len(executor.order) == 3 and executor.order != ["p0", "p1", "p2"]
    conf2, run2 = section_run(tmp_path / "again", packages)
    run2.seed = 7
    again = StandIn({})
    (tmp_path / "again").mkdir()
    with Database(conf2.db) as db:
        run_id = db.start_run(1, "host", "test")
        run2.refresh(db, run_id)
        engine.Coordinator(conf2, {"s": run2}, db, again, run_id, engine.Display(), engine.Stop(), 3).loop()
    assert again.order == executor.order  # the same seed, the same sample


def test_depends_sections_read_from_repositories(tmp_path: Path) -> None:
    from tests.debs import DebSpec
    from tests.unit.test_batch_archive import reprepro
    mirror = tmp_path / "mirror/dists/bookworm/main/binary-amd64"
    mirror.mkdir(parents=True)
    (mirror / "Packages").write_text("Package: libc6\nVersion: 2.36-9\nArchitecture: amd64\n")
    lib = reprepro(tmp_path / "a", [DebSpec("pp-lib").build(tmp_path)])
    app = reprepro(tmp_path / "b", [DebSpec("pp-app", depends="pp-lib, libc6").build(tmp_path)])
    conf_path = tmp_path / "batch.conf"
    conf_path.write_text(f"""[global]
sections = a b
db = {tmp_path}/b.sqlite
logs = {tmp_path}/logs
cache-dir = {tmp_path}/cache
mirror = file://{tmp_path}/mirror
distro = bookworm
arch = amd64

[a]
repository = deb [trusted=yes] file://{lib} bookworm main

[b]
repository = deb [trusted=yes] file://{app} bookworm main
depends-sections = a
""")
    from piuparts.batch import config as config_mod
    conf = config_mod.load(conf_path)
    with Database(conf.db) as db:
        runs = engine.prepare(conf, ["b"], db)
        assert list(runs) == ["b"]
        assert runs["b"].computed == {"pp-app": (st.WAITING_DEP, ("pp-lib",))}
        assert runs["b"].config.extra_repos == (f"deb [trusted=yes] file://{app} bookworm main",
                                                 f"deb [trusted=yes] file://{lib} bookworm main")
        from tests.unit.test_batch_db import rec
        db.record(dataclasses.replace(rec("pp-lib", "fail", version="1.0-1"), section="a", architecture="amd64"))
        runs = engine.prepare(conf, ["b"], db)
        assert runs["b"].computed == {"pp-app": (st.DEP_FAILED, ("pp-lib",))}



def test_bad_piuparts_flags_name_the_line(tmp_path: Path) -> None:
    section = Section("s", "bookworm", where={"piuparts-flags": ("/etc/batch.conf", 12)})
    with pytest.raises(UsageError) as caught:
        engine.run_config(section, ["-d", "bookworm", "--frobnicate"])
    assert str(caught.value) == "/etc/batch.conf:12: piuparts-flags: unrecognized arguments: --frobnicate"
    with pytest.raises(UsageError, match=r"^/etc/batch.conf:12: piuparts-flags: names packages \(foo\)"):
        engine.run_config(section, ["-d", "bookworm", "--apt", "foo"])


def test_cache_max_size_prunes_the_least_recently_used_beside_the_tests(tmp_path: Path) -> None:
    # Two dependency layers of 3 MB: the older goes to bring the cache under 4 MB, the newer stays,
    # and a layer used in the last ten minutes is never taken, whatever the size.
    conf, run = section_run(tmp_path, PACKAGES)
    layers = tmp_path / "cache" / "layers"
    now = time.time()
    for name, age in (("old", 3 * 86400), ("newer", 86400), ("fresh", 60)):
        (layers / name / "tree").mkdir(parents=True)
        (layers / name / "tree" / "data").write_bytes(b"x" * (3 << 20))
        os.utime(layers / name, (now - age, now - age))
    conf = dataclasses.replace(conf, cache_max_size=7 << 20)
    go(conf, run, StandIn({}))
    assert sorted(p.name for p in layers.iterdir()) == ["fresh", "newer"]


def test_a_disk_short_of_min_free_space_stops_the_run_with_one_line(tmp_path: Path) -> None:
    # No disk here has a petabyte free: the run takes no test, says which disk, and is a test-bed failure.
    conf, run = section_run(tmp_path, PACKAGES)
    conf = dataclasses.replace(conf, min_free_space=1 << 50)
    said: list[str] = []

    class Say(engine.Display):
        def message(self, text: str) -> None:
            said.append(text)
    executor = StandIn({})
    with Database(conf.db) as db:
        run_id = db.start_run(1, "host", "test")
        run.refresh(db, run_id)
        tally = engine.Coordinator(conf, {"s": run}, db, executor, run_id, Say(), engine.Stop()).loop()
    assert executor.order == [] and tally.exit_code() == 3
    assert len(said) == 1 and said[0].startswith(f"piuparts batch: the disk of {tmp_path / 'cache'} has "), said
    assert "less than min-free-space (1073741824 MB)" in said[0]


def test_reschedule_old_count_is_a_count_a_run_not_a_derive(tmp_path: Path) -> None:
    # Six passes of 100 days ago, two rescheduled a run: the run tests two, not all six one
    # pair after another as each new result made the next two oldest due (the scale bench
    # found that: a whole archive retested in a night instead of reschedule-old-count).
    solo = [Package(f"p{i}", "1") for i in range(6)]
    conf, run = section_run(tmp_path, solo, reschedule_old_days=90, reschedule_old_count=2, reschedule_fail_count=0)
    old = time.time() - 100 * 86400
    with Database(conf.db) as db:
        first = db.start_run(1, "host", "test")
        for i, package in enumerate(solo):
            db.record(Record("s", package.name, "1", "amd64", "pass", 0, "PASS", old + i, 1.0, "test", {},
                             run_id=first))
        db.end_run(first, "done")
    executor = StandIn({})
    go(conf, run, executor)
    assert executor.order == ["p0", "p1"]  # the two oldest
    again = StandIn({})
    go(conf, run, again)
    assert again.order == ["p2", "p3"]
