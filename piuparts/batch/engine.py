"""The coordinator: one pass over sections, tests through an Executor, results into the DB.

:func:`prepare` reads a section (its Packages, its RunConfig, its known
problems, what its depends-sections offer) into a :class:`SectionRun`;
:meth:`SectionRun.refresh` derives outcomes, states and the queue from the
DB's history (pure functions of :mod:`.schedule` and :mod:`.states`).
:class:`Coordinator` fills the executor's free slots from the queues
(sections with a smaller ``precedence`` first, the same precedence round
robin, at most ``max-reserved`` of a section in flight), and writes each
finished test whole, in its own transaction, the moment it arrives.
``piuparts ci`` runs one pass over one repository section the same way.

Only the coordinator writes the database; one coordinator a database
(:func:`lock`).  Ctrl-C once (:meth:`Stop.press`): no new tests, the running
ones finish and are recorded; twice: they are stopped and wait again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Any, Callable, ContextManager, Sequence

from piuparts import __version__, aptsources, resources
from piuparts.api import RunConfig
from piuparts.cli import config_from_argv
from piuparts.batch import archive as archive_mod, problems, report, schedule, snapshot, states as st
from piuparts.batch.cachelimit import CacheLimit
from piuparts.batch.config import DISTROS_CONF, Config, Section
from piuparts.batch.records import make_record
from piuparts.batch.db import Database, Key, Record
from piuparts.batch.executor import Executor, Finished, Running, Task
from piuparts.errors import TestbedError, UsageError

log = logging.getLogger("piuparts")


def lock(db_path: Path) -> ContextManager[None]:
    """Hold the database's coordinator lock; a second coordinator gets a one-line UsageError."""
    return resources.pid_lock(db_path.with_name(db_path.name + ".lock"), lambda pid: (
        f"{db_path}: another piuparts batch run (PID {pid}) is using this database; "
        "wait for it to end, or stop it first"))


def piuparts_argv(config: Config, section: Section, arch: str, extra_repos: Sequence[str]) -> list[str]:
    """The piuparts options a section's tests run with."""
    argv: list[str] = []
    for distro in section.upgrade_test_distros or (section.distro,):
        argv += ["-d", distro]
    # The base's apt lists are refreshed when an hour old (not a day, piuparts' default): the
    # versions tested come from the Packages read at the start of this run.
    components = section.components or tuple(dict.fromkeys(("main", section.area)))  # contrib needs main
    argv += ["-m", " ".join([section.mirror, *components]),
             "--arch", arch, "--cache-dir", str(config.cache_dir), "--lists-max-age", "1",
             # Each worker's instances get their share of the memory, not half of it each.
             "--tmpfs-size", f"{max(1, 50 // max(1, config.workers))}%"]
    for line in extra_repos:
        argv += ["--extra-repo", line]
    if section.distros_conf != DISTROS_CONF:
        argv += ["--distros-conf", str(section.distros_conf)]
    return argv + list(section.piuparts_flags)


def run_config(section: Section, argv: list[str]) -> RunConfig:
    """The section's RunConfig; a bad piuparts-flags is a one-line error naming its line."""
    try:
        config, subject = config_from_argv(argv, isolated=True)  # --scripts-network to give them one
    except UsageError as err:
        raise UsageError(f"{section.located('piuparts-flags')}: {err}") from None
    if subject is not None:
        raise UsageError(f"{section.located('piuparts-flags')}: names packages ({subject.label}); "
                         "the section's Packages say what is tested")
    return config


@dataclass
class SectionRun:
    """A section during a run: what it tests, with what, and its derived state."""

    section: Section
    arch: str
    archive: archive_mod.Archive
    config: RunConfig
    flags: tuple[str, ...]
    known: list[problems.KnownProblem]
    outside: dict[str, str]
    history: dict[Key, list[Record]] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, schedule.Outcome] = field(default_factory=dict)
    computed: dict[str, st.Result] = field(default_factory=dict)
    queue: list[str] = field(default_factory=list)
    #: Take the queue in a random order fixed by this seed (a sample, with --max-tests).
    seed: int | None = None
    #: Results arrived since the last derive; how long that took, and when.
    stale: bool = False
    derive_seconds: float = 0.0
    derived_at: float = 0.0
    #: The run whose reschedule was chosen, and what it chose: reschedule-old-count and
    #: -fail-count are counts a run, chosen at its first derive (not again at each).
    rescheduled: tuple[int | None, list[str]] = (None, [])
    #: Where next_due starts looking: the names before it in the queue are done.
    head: int = 0

    def fresh_enough(self) -> bool:
        """Whether a derive may wait: a big section recomputes at most every 10x its own cost."""
        return not self.stale or time.monotonic() - self.derived_at < 10 * self.derive_seconds

    @property
    def name(self) -> str:
        """The section's name."""
        return self.section.name

    def key(self, package: str) -> Key:
        """The results key of a package's current version."""
        pkg = self.archive.packages[package]
        return package, pkg.version, self.arch if pkg.architecture == "all" else pkg.architecture

    def refresh(self, db: Database, run_id: int | None = None, now: float | None = None, queue: bool = True) -> None:
        """Read the section's history and requests from the database, then :meth:`derive`."""
        self.history = db.history(self.name)
        self.requests = db.requests(self.name)
        self.derive(run_id, now, queue)

    def add(self, record: Record) -> None:
        """A result just written: into the history held in memory (no re-read)."""
        self.history.setdefault((record.package, record.version, record.architecture), []).append(record)
        if record.kind in ("pass", "fail", "internal"):
            self.requests.pop(record.package, None)

    def derive(self, run_id: int | None = None, now: float | None = None, queue: bool = True) -> None:
        """Outcomes, states and (unless not ``queue``: status, reports) the queue from the
        history (pure functions; seconds for a whole archive)."""
        start = time.monotonic()
        self.outcomes = {name: schedule.outcome(self.history.get(self.key(name), []), self.section, run_id, now)
                         for name in self.archive.packages}
        results = schedule.results_for_states(self.outcomes)
        self.computed = st.compute(self.archive.packages, results, self.outside)
        if not queue:  # what is tested next is a run's question alone
            self.queue, self.head = [], 0
            return
        if run_id is None or self.rescheduled[0] != run_id:
            self.rescheduled = (run_id, schedule.due_for_reschedule(self.outcomes, self.section, self.requests, now))
        due = self.rescheduled[1]
        again = schedule.testable_again(self.archive.packages, results, self.outside, due)
        self.queue = schedule.order(self.computed, again)
        if self.seed is not None:
            self.queue.sort(key=lambda n: hashlib.sha256(f"{self.seed}:{n}".encode()).digest())
        self.head = 0
        self.derive_seconds = time.monotonic() - start
        self.derived_at = time.monotonic()
        self.stale = False

    def next_due(self, now: float, skip: AbstractSet[str], done: AbstractSet[str] = frozenset()) -> str | None:
        """The first queued package that is due now and in neither ``skip``
        (running) nor ``done`` (tested in this run, for good: the head of the
        queue moves past them, so a night is not quadratic in its packages)."""
        queue = self.queue
        while self.head < len(queue) and queue[self.head] in done:
            self.head += 1
        for index in range(self.head, len(queue)):
            name = queue[index]
            if name not in skip and name not in done and self.outcomes[name].due <= now:
                return name
        return None

    def waiting(self) -> int:
        """About how many queued packages wait (those before the head are done)."""
        return len(self.queue) - self.head

    def status(self) -> dict[str, Any]:
        """``status --json``'s shape for this section."""
        return report.section_status(self.computed, self.outcomes, self.archive.packages)


def ordered(config: Config, names: Sequence[str]) -> list[Section]:
    """The sections asked for, each after its depends-sections (which are read too)."""
    order: list[Section] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            raise UsageError(f"{config.sections[name].located('depends-sections')}: the depends-sections "
                             f"form a cycle ({' -> '.join((*trail, name))})")
        section = config.sections[name]
        for dep in section.depends_sections:
            visit(dep, (*trail, name))
        if section not in order:
            order.append(section)
    for name in names:
        if name not in config.sections:
            raise UsageError(f"--section {name}: no such section in {config.path} "
                             f"(sections: {', '.join(config.sections)})")
        visit(name, ())
    return order


def host_arch() -> str:
    """dpkg's architecture of this machine."""
    return aptsources.host_architecture()


def prepare(config: Config, names: Sequence[str], db: Database,
            unreadable: dict[str, str] | None = None) -> dict[str, SectionRun]:
    """Read every section asked for (and the ones they depend on); UsageError for a bad section.

    An archive that cannot be read (TestbedError) raises, or, when ``unreadable``
    is given, is noted there (section -> reason) and that section and the ones
    that depend on it are left out of this run.
    """
    runs: dict[str, SectionRun] = {}
    for section in ordered(config, names):
        arch = section.arch or host_arch()
        missing = [d for d in section.depends_sections if d not in runs]
        if missing and unreadable is not None:
            unreadable[section.name] = f"its depends-section [{missing[0]}] cannot be read"
            continue
        try:
            read = archive_mod.read(section, arch, config.cache_dir / "archive")
        except TestbedError as err:
            if unreadable is None:
                raise
            unreadable[section.name] = str(err)
            continue
        outside: dict[str, str] = dict.fromkeys(read.available, st.AVAILABLE)
        repos = [section.repository] if section.repository else []
        for dep in section.depends_sections:
            dep_run = runs[dep]
            outside.update(st.outside_states(dep_run.archive.packages, dep_run.computed))
            if dep_run.section.repository and dep_run.section.repository not in repos:
                repos.append(dep_run.section.repository)
        argv = piuparts_argv(config, section, arch, repos)
        known = problems.load_directory(section.known_problem_directory, section.exclude_known_problems)
        runs[section.name] = SectionRun(section, arch, read, run_config(section, argv), tuple(argv), known, outside)
        runs[section.name].refresh(db, queue=False)  # a run derives its queue itself, with its run id
    return {name: run for name, run in runs.items() if name in names}


class Stop:
    """Ctrl-C presses, counted (the signal handler calls :meth:`press`)."""

    def __init__(self) -> None:
        self.presses = 0

    def press(self, *_: object) -> None:
        """One more Ctrl-C."""
        self.presses += 1


@dataclass
class Tally:
    """What a run did."""

    started: float = field(default_factory=time.time)
    kinds: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("pass", "fail", "usage", "testbed",
                                                                          "internal"), 0))
    cancelled: int = 0
    requeued: int = 0
    #: Sections left out of the run because their archive could not be read: name -> reason.
    unreadable: dict[str, str] = field(default_factory=dict)
    #: Why the run stopped taking tests before the queues were empty (a full disk).
    stopped: str | None = None
    internal_errors: list[str] = field(default_factory=list)

    @property
    def tested(self) -> int:
        """Results recorded."""
        return sum(self.kinds.values())

    def exit_code(self) -> int:
        """The worst thing seen: internal 4, test bed 3, a failure 1, else 0."""
        if self.kinds["internal"]:
            return 4
        if self.kinds["testbed"] or self.kinds["usage"] or self.unreadable or self.stopped:
            return 3
        return 1 if self.kinds["fail"] else 0


class Display:
    """What the coordinator tells the user; :mod:`.progress` has the real ones."""

    def started(self, running: Running) -> None:
        """A test was handed to a worker."""

    def finished(self, finished: Finished, record: Record | None) -> None:
        """A test ended (record None: cancelled or lost)."""

    def update(self, runs: dict[str, SectionRun], running: list[Running], queued: int) -> None:
        """The counts changed."""

    def message(self, text: str) -> None:
        """A line for the user."""
        log.info("%s", text)

    def close(self) -> None:
        """The run is over."""


class Coordinator:
    """One run: fill the executor from the sections' queues, record what comes back."""

    def __init__(self, config: Config, runs: dict[str, SectionRun], db: Database, executor: Executor,
                 run_id: int, display: Display, stop: Stop, max_tests: int | None = None) -> None:
        self.config, self.runs, self.db, self.executor = config, runs, db, executor
        self.run_id, self.display, self.stop, self.max_tests = run_id, display, stop, max_tests
        self.tally = Tally()
        self.submitted = 0
        self.in_flight: dict[str, Running] = {}
        #: Section -> the packages with a verdict recorded in this run (their versions are the
        #: section's, read once a run): never tested twice in one.
        self.done_names: dict[str, set[str]] = {name: set() for name in runs}
        self._rotation = 0
        self._announced = 0
        self.cache = CacheLimit(config.cache_dir, config.cache_max_size, display.message,
                                (config.cache_dir, config.logs, config.db.parent), config.min_free_space)

    def queued(self) -> int:
        """About how many packages wait in the queues, not running (for the
        progress bar: counted in constant time, not over the queues)."""
        return max(0, sum(run.waiting() for run in self.runs.values()) - len(self.in_flight))

    def next_task(self, now: float) -> Task | None:
        """The next test: lowest precedence first, round robin among equals, max-reserved respected."""
        for precedence in sorted({r.section.precedence for r in self.runs.values()}):
            group = [r for r in self.runs.values() if r.section.precedence == precedence]
            for offset in range(len(group)):
                run = group[(self._rotation + offset) % len(group)]
                busy = {t.task.package for t in self.in_flight.values() if t.task.section == run.name}
                if len(busy) >= run.section.max_reserved:
                    continue
                name = run.next_due(now, busy, self.done_names[run.name])
                if name is not None:
                    self._rotation += 1
                    package, version, arch = run.key(name)
                    return Task(run.name, package, version, arch, run.config.to_json(),
                                str(self.config.logs / ".incoming"))
        return None

    def rederive(self) -> None:
        """Recompute the sections that have new results, a big one not more often than its cost
        allows (:meth:`fill` recomputes at once when the queues hold nothing to start: a result
        may have unblocked what depends on it).  Not at every idle moment: with one worker that
        is after every test, a whole archive's derive a test."""
        for run in self.runs.values():
            if run.stale and not run.fresh_enough():
                run.derive(self.run_id)

    def fill(self) -> None:
        """Give every free slot a test, while there are tests and no Ctrl-C."""
        self.rederive()
        if self.executor.free_slots() > 0 and self.next_task(time.time()) is None:
            for run in self.runs.values():
                if run.stale:
                    run.derive(self.run_id)
        while self.stop.presses == 0 and self.tally.stopped is None and self.executor.free_slots() > 0:
            if self.max_tests is not None and self.submitted >= self.max_tests:
                return
            if (short := self.cache.short_of_space()) is not None:
                self.tally.stopped = short
                self.display.message(f"piuparts batch: {short}")
                return
            task = self.next_task(time.time())
            if task is None:
                return
            running = self.executor.submit(task)
            self.db.mark_in_flight(task.section, task.key, self.run_id, running.worker)
            self.in_flight[task.id] = running
            self.submitted += 1
            self.display.started(running)

    def handle(self, finished: Finished) -> None:
        """Record one finished test (its own transaction), or put it back to waiting."""
        self.in_flight.pop(finished.task.id, None)
        task = finished.task
        if finished.result is None:
            self.db.clear_in_flight(task.section, task.key)
            self.tally.cancelled += 1
            self.display.finished(finished, None)
            return
        run = self.runs[task.section]
        record = make_record(self.config, run.known, run.flags, run.config, finished, self.run_id)
        record_id = self.db.record(record)
        self.tally.kinds[record.kind] += 1
        if record.kind == "internal":
            self.tally.internal_errors.append(f"{task.section}/{task.package} {task.version}: {record.error}")
        if record.kind in ("pass", "fail", "internal"):
            self.done_names[task.section].add(task.package)
        run.add(record)
        run.stale = True
        # this package's own outcome now, so a retry waits for its back-off even before the next derive
        outcome = schedule.outcome(run.history[task.key], run.section, self.run_id)
        run.outcomes[task.package] = outcome
        if outcome.state == st.CANNOT:
            self.done_names[task.section].add(task.package)
        self.display.finished(finished, Record(**{**record.__dict__, "id": record_id}))

    def react_to_ctrl_c(self) -> None:
        """Once: say what happens; twice: stop the running tests."""
        if self.stop.presses == self._announced:
            return
        self._announced = self.stop.presses
        if self.stop.presses == 1:
            self.display.message(f"Ctrl-C: no new tests; the {len(self.in_flight)} running finish and are "
                                 "recorded (Ctrl-C again stops them)")
        else:
            self.display.message(f"Ctrl-C again: stopping the {len(self.in_flight)} running tests; "
                                 "they wait for the next run")
            self.executor.cancel()

    def loop(self) -> Tally:
        """Until nothing is queued and nothing runs (or Ctrl-C and nothing runs)."""
        try:
            while True:
                self.react_to_ctrl_c()
                self.cache.tick()
                self.fill()
                if not self.in_flight:
                    return self.tally
                for finished in self.executor.collect(0.5):
                    self.handle(finished)
                self.display.update(self.runs, list(self.in_flight.values()), self.queued())
        finally:
            self.cache.close()


def run(config: Config, names: Sequence[str], make_executor: Callable[[], Executor], display: Display,
        stop: Stop, max_tests: int | None = None, seed: int | None = None) -> Tally:
    """One run over the sections ``names``: lock, read the sections, start the executor
    (``make_executor``, once the sections are read), loop, write summary.json.  A section
    whose archive cannot be read is skipped with its reason (the run's exit code says 3)."""
    with lock(config.db), Database(config.db) as db:
        run_id = db.start_run(os.getpid(), socket.gethostname(), __version__)
        stale = db.abandon_dead_runs(run_id)
        shutil.rmtree(config.logs / ".incoming", ignore_errors=True)  # logs of tests a dead run lost
        status = "interrupted"
        executor: Executor | None = None
        try:
            if stale:
                display.message(f"{len(stale)} tests left in flight by a run that died wait again: "
                                + ", ".join(f"{r['section']}/{r['package']}" for r in stale))
            unreadable: dict[str, str] = {}
            runs = prepare(config, names, db, unreadable)
            for name, reason in unreadable.items():
                display.message(f"[{name}] is not tested in this run: {reason}")
            for section_run in runs.values():
                section_run.seed = seed
                section_run.refresh(db, run_id)
            executor = make_executor()
            coordinator = Coordinator(config, runs, db, executor, run_id, display, stop, max_tests)
            coordinator.tally.requeued = len(stale)
            coordinator.tally.unreadable = dict(unreadable)
            tally = coordinator.loop()
            status = "done" if stop.presses == 0 else "interrupted"
        finally:
            try:
                if executor is not None:
                    if status == "interrupted":
                        executor.cancel()
                    executor.close()
                if status == "interrupted":
                    db.clear_run_in_flight(run_id)
                db.end_run(run_id, status)
            finally:
                display.close()
        report.write_summary(config.logs / "summary.json", runs)
        # The next status reads the states the run ended with instead of deriving them again.
        snapshot.store_all(config, {name: r for name, r in runs.items() if not r.stale}, db, host_arch())
        return tally


__all__ = ["Coordinator", "Display", "SectionRun", "Stop", "Tally", "lock", "ordered", "prepare", "run"]
