"""One CI pass: read the repository, find what changed, test it through the batch engine's
executor, record each result the moment it arrives.

The tests are batch :class:`~piuparts.batch.executor.Task` objects naming the
repository's .debs; the local executor's worker processes run them through
:mod:`piuparts.api` (each keeps a Session a RunConfig).  Two RunConfigs: new
packages get install -> purge; changed ones also install -> upgrade -> purge
from the version they replaced, which apt finds in a flat repository of the
kept .debs (:meth:`State.upgrade_repository`) or, failing that, in the base
distribution's archive.

For remote workers (``Options.remote``: the Celery executor) a task names
the packages as ``NAME=VERSION`` instead, from the repository as the
workers reach it (``Options.repo_url``, else the same path or URL), and
the flat repository of kept .debs is made inside a local repository's
directory (:data:`UPGRADE_FROM`), so that it is reached the same way; a
worker that cannot read them refuses the test, which ends the run with
its one-line reason (the configuration's fault, not the package's).

A test-bed failure is retried (``retries``), then reported, never recorded
as the package's: the package stays as untested and comes up again at the
next run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from piuparts import __version__
from piuparts.api import RunConfig, RunResult
from piuparts.cli import config_from_argv
from piuparts.config import replace_config
from piuparts.batch.db import Database, Record
from piuparts.batch.engine import Stop, host_arch
from piuparts.batch.executor import Executor, Finished, Task
from piuparts.ci import changes as ch
from piuparts.ci.notify import Event
from piuparts.ci.repository import Binary, Repository
from piuparts.ci.state import FROM_ARCHIVE, OldDeb, State
from piuparts.errors import UsageError

log = logging.getLogger("piuparts")

#: For remote workers: the versions to upgrade from, as a flat repository inside a local
#: repository's directory (``REPO/piuparts-upgrade-from/CODENAME/``, made afresh each run).
UPGRADE_FROM = "piuparts-upgrade-from"


@dataclass(frozen=True)
class Options:
    """What ``piuparts ci`` was asked to do."""

    repository: str
    codename: str
    state_dir: Path
    components: tuple[str, ...] = ()
    arch: str | None = None
    workers: int = 1
    by_source: bool = False
    #: Options for the tests (-d, -m, --cache-dir, ...), as piuparts takes them.
    piuparts_argv: tuple[str, ...] = ()
    #: Attempts after a test-bed failure.
    retries: int = 1
    #: The tests run on remote workers (the Celery executor): packages named, not .debs.
    remote: bool = False
    #: Where remote workers reach the repository (default: its path or URL as given).
    repo_url: str | None = None


@dataclass
class Outcome:
    """One unit's test: its result (None: not run, the run was stopped) and what it upgraded from."""

    unit: ch.Unit
    olds: list[OldDeb]
    result: RunResult | None = None
    log_file: str | None = None
    attempts: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain data for the JSON report."""
        return {"package": self.unit.name, "version": self.unit.version,
                "binaries": [b.name for b in self.unit.binaries],
                "changes": [c.to_json() for c in self.unit.changes],
                "upgrade_from": [{"package": o.name, "version": o.version, "from": o.source,
                                  "path": str(o.path) if o.path else None} for o in self.olds],
                "attempts": self.attempts, "log_file": self.log_file,
                "result": self.result.to_json() if self.result else None}


@dataclass
class Report:
    """What one pass did."""

    repository: str
    codename: str
    arch: str
    components: tuple[str, ...]
    changes: list[ch.Change] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    elapsed: float = 0.0
    interrupted: bool = False
    #: Its run in the results database (None: none recorded yet).
    run_id: int | None = None

    def count(self, *kinds: str) -> int:
        """Outcomes whose result is of one of ``kinds``."""
        return sum(1 for o in self.outcomes if o.result is not None and o.result.kind in kinds)

    @property
    def tested(self) -> int:
        """Units that came to a result."""
        return sum(1 for o in self.outcomes if o.result is not None)

    def exit_code(self) -> int:
        """4 an internal error, 3 a test-bed error, 1 a package failed, 0 all passed (or nothing new)."""
        if self.count("internal"):
            return 4
        if self.count("testbed", "usage"):
            return 3
        return 1 if self.count("fail") else 0

    def summary(self) -> str:
        """The closing line."""
        return (f"piuparts ci: {self.tested} tested, {self.count('pass')} passed, {self.count('fail')} failed, "
                f"{self.count('testbed', 'usage')} test-bed errors"
                + (f", {self.count('internal')} internal errors" if self.count("internal") else "")
                + (f", {len(self.outcomes) - self.tested} not run (interrupted)" if self.interrupted else ""))

    def to_json(self) -> dict[str, Any]:
        """The JSON report."""
        return {"version": 1, "repository": self.repository, "codename": self.codename, "architecture": self.arch,
                "components": list(self.components), "started": self.started, "elapsed": round(self.elapsed, 3),
                "interrupted": self.interrupted, "exit_code": self.exit_code(), "summary": self.summary(),
                "run": self.run_id,
                "changes": [c.to_json() for c in self.changes], "tests": [o.to_json() for o in self.outcomes]}


def _configs(argv: list[str]) -> RunConfig:
    """The RunConfig of these piuparts options; their mistakes as one-line UsageErrors."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            config, subject = config_from_argv(argv, isolated=True)  # --scripts-network to give them one
    except SystemExit:  # argparse's way of saying the options are wrong
        said = captured.getvalue().strip().splitlines()
        raise UsageError(f"piuparts options {' '.join(argv)}: {said[-1] if said else 'bad options'}") from None
    if subject is not None:
        raise UsageError(f"piuparts ci: the options name packages ({subject.label}); "
                         "the repository says what is tested")
    return config


def prepare(options: Options) -> tuple[Repository, State, tuple[str, ...], str]:
    """The repository, state, components and architecture; UsageError for a wrong one."""
    state = State(options.state_dir, options.codename)
    repo = Repository(options.repository, cache=state.dir / "http-cache")
    dist = repo.distribution(options.codename)
    components = options.components or dist.components
    unknown = [c for c in components if dist.components and c not in dist.components]
    if unknown or not components:
        raise UsageError(f"--component {', '.join(unknown) or '(none)'}: {options.codename} has the components "
                         f"{', '.join(dist.components) or '(none)'}")
    arch = options.arch or host_arch()
    if dist.architectures and arch not in dist.architectures:
        raise UsageError(f"--arch {arch}: {options.codename} has the architectures {', '.join(dist.architectures)}")
    return repo, state, tuple(components), arch


def run(options: Options, stop: Stop, executor_factory: Callable[[int, Path], Executor],
        say: Callable[[str], None] = print, progress: Callable[[int, int], None] = lambda done, total: None) -> Report:
    """One pass; the caller handles signals (``stop``) and reports.  ``say``
    gets a line per test ended; ``progress`` (a bar) the tests ended of all."""
    start = time.monotonic()
    repo, state, components, arch = prepare(options)
    report = Report(repo.url, options.codename, arch, components)
    with state.lock():
        current = repo.packages(options.codename, components, arch)
        tested = state.tested(arch)
        # this architecture's binary events (an Architecture: all package's come with each architecture)
        pending = [(p, e) for p, e in state.pending() if e.codename == options.codename
                   and e.type in ("deb", "udeb") and e.architecture in (arch, "all")]
        events = [e for _, e in pending]
        sources = [(p, e) for p, e in state.pending()
                   if e.codename == options.codename and e.type not in ("deb", "udeb")]
        state.consume(sources, {e.name for _, e in sources})  # nothing to test in a source package's event
        replaced = {e.name: (e.new_version or "", e.old_version or "") for e in events if e.action == "replace"}
        report.changes = ch.detect(tested, current, replaced)
        units = ch.units(report.changes, options.by_source)
        if not units:
            say(f"piuparts ci: nothing new in {options.codename} ({arch}): {len(current)} packages as last tested")
        else:
            say(f"piuparts ci: {len(units)} to test in {options.codename} ({arch}): "
                + ", ".join(f"{u.name} {u.version}" for u in units))
            _test(options, repo, state, units, report, events, stop, executor_factory, say, progress)
        _remember(state, arch, repo, tested, report, pending)
    report.elapsed = time.monotonic() - start
    return report


def _remember(state: State, arch: str, repo: Repository, tested: dict[str, Binary], report: Report,
              pending: list[tuple[Path, Event]]) -> None:
    """What is now tested (a verdict, or removed); the events nothing waits for any more are consumed."""
    waiting = set()
    for change in report.changes:
        if change.kind == ch.REMOVED:
            tested.pop(change.name, None)
    for outcome in report.outcomes:
        verdict = outcome.result is not None and outcome.result.kind in ("pass", "fail")
        for binary in outcome.unit.binaries:
            if verdict:
                tested[binary.name] = binary
            else:
                waiting.add(binary.name)
    state.save_tested(arch, tested, repo.url)
    state.consume(pending, {e.name for _, e in pending} - waiting)


def _test(options: Options, repo: Repository, state: State, units: list[ch.Unit], report: Report,
          events: list[Event], stop: Stop, executor_factory: Callable[[int, Path], Executor],
          say: Callable[[str], None], progress: Callable[[int, int], None]) -> None:
    """Fetch the .debs, make the configurations and run the tests."""
    debs = {b.name: repo.fetch(b, state.dir / "downloads") for u in units for b in u.binaries}
    outcomes = []
    for unit in units:
        olds = [state.old_deb(c.name, c.old_version, c.binary.architecture, events)
                for c in unit.changes if c.old_version and c.binary is not None]
        outcomes.append(Outcome(unit, olds))
    report.outcomes = outcomes
    for outcome in outcomes:
        for old in outcome.olds:
            say(f"  {old.name}: upgrade from {old.version} ({old.source}{': ' + str(old.path) if old.path else ''})")
    where = (options.repo_url or repo.url).rstrip("/") if options.remote else repo.url
    upgrade_line = _upgrade_repository(options, repo, state, where, [o for out in outcomes for o in out.olds])
    base = ["--arch", report.arch, "--extra-repo", repo.apt_line(options.codename, report.components, where),
            *options.piuparts_argv]
    plain = _configs([*base, "--no-upgrade-test"])
    upgrade = _configs([*base, *(["--extra-repo", upgrade_line] if upgrade_line else [])])
    if options.remote:  # the workers upgrade to NAME=VERSION from the repository
        upgrade = replace_config(upgrade, upgrade_named_versions=True)
    section = f"{options.codename}.{report.arch}"
    tasks = {}
    for outcome in outcomes:
        config = upgrade if outcome.unit.upgrade else plain
        paths = tuple(str(debs[b.name]) for b in outcome.unit.binaries)
        names = tuple(f"{b.name}={b.version}" for b in outcome.unit.binaries)
        task = Task(section, outcome.unit.name, outcome.unit.version, report.arch, config.to_json(),
                    str(state.logs / ".incoming"), *(((), names) if options.remote else (paths, ())))
        tasks[task.id] = (task, outcome)
    with Database(state.db) as db:
        run_id = report.run_id = db.start_run(os.getpid(), socket.gethostname(), __version__, kind="ci")
        status = "interrupted"
        try:
            _loop(options, db, run_id, tasks, stop, executor_factory(min(options.workers, len(tasks)), state.logs),
                  state, say, progress)
            status = "done" if stop.presses == 0 else "interrupted"
        finally:
            db.end_run(run_id, status)
            if options.remote and not repo.remote:  # the team's repository as it was
                shutil.rmtree(Path(repo.where) / UPGRADE_FROM / options.codename, ignore_errors=True)
                with contextlib.suppress(OSError):  # another codename's run may be using it
                    (Path(repo.where) / UPGRADE_FROM).rmdir()
    report.interrupted = stop.presses > 0
    for outcome in outcomes:
        if outcome.result is not None and outcome.result.kind in ("pass", "fail"):
            for binary in outcome.unit.binaries:
                state.keep_tested(debs[binary.name], binary)


def _upgrade_repository(options: Options, repo: Repository, state: State, where: str,
                        olds: list[OldDeb]) -> str | None:
    """The apt line of this run's flat repository of the versions to upgrade from (None: none kept):
    in the state directory, or for remote workers inside a local repository, reached as ``where`` is."""
    if not options.remote or repo.remote:
        return state.upgrade_repository(olds)
    directory = Path(repo.where) / UPGRADE_FROM / options.codename
    return state.upgrade_repository(olds, directory, f"{where}/{UPGRADE_FROM}/{options.codename}")


def _loop(options: Options, db: Database, run_id: int, tasks: dict[str, tuple[Task, Outcome]], stop: Stop,
          executor: Executor, state: State, say: Callable[[str], None],
          progress: Callable[[int, int], None]) -> None:
    """Keep the executor busy until every task has a result (or Ctrl-C)."""
    queue = list(tasks)
    in_flight: set[str] = set()
    announced = 0
    done = 0
    progress(done, len(tasks))
    with executor:
        while queue or in_flight:
            if stop.presses != announced:
                announced = stop.presses
                if stop.presses == 1:
                    say(f"Ctrl-C: no new tests; the {len(in_flight)} running finish (Ctrl-C again stops them)")
                else:
                    executor.cancel()
            while stop.presses == 0 and queue and executor.free_slots() > 0:
                task_id = queue.pop(0)
                task, outcome = tasks[task_id]
                outcome.attempts += 1
                db.mark_in_flight(task.section, task.key, run_id, "")
                executor.submit(task)
                in_flight.add(task_id)
            if stop.presses and not in_flight:
                return
            for finished in executor.collect(0.5):
                in_flight.discard(finished.task.id)
                if finished.refused:
                    _refused(db, executor, finished, [tasks[t][0] for t in in_flight])
                if _again(finished, tasks[finished.task.id][1], options.retries, stop):
                    db.clear_in_flight(finished.task.section, finished.task.key)
                    queue.append(finished.task.id)
                    continue
                _record(db, run_id, finished, tasks[finished.task.id][1], state, say)
                done += 1
                progress(done, len(tasks))


def _refused(db: Database, executor: Executor, finished: Finished, running: list[Task]) -> None:
    """A worker refused a test: every test would be (the same configuration), so the run ends
    with the worker's one-line reason as a usage error; nothing is recorded."""
    executor.cancel()
    for task in [finished.task, *running]:
        db.clear_in_flight(task.section, task.key)
    reason = finished.result.error if finished.result is not None else finished.reason
    raise UsageError(f"piuparts ci: {reason}")


def _again(finished: Finished, outcome: Outcome, retries: int, stop: Stop) -> bool:
    """Whether to run the task again: a lost worker, or a test-bed failure with attempts left."""
    if stop.presses:
        return False
    if finished.result is None:
        return outcome.attempts <= retries + 1
    return finished.result.kind == "testbed" and outcome.attempts <= retries


def _record(db: Database, run_id: int, finished: Finished, outcome: Outcome, state: State,
            say: Callable[[str], None]) -> None:
    """One result, written whole in its own transaction; its log filed under logs/."""
    task, result = finished.task, finished.result
    if result is None:
        db.clear_in_flight(task.section, task.key)
        say(f"  {task.package} {task.version}: not tested ({finished.reason or 'stopped'})")
        return
    outcome.result = result
    outcome.olds = upgraded_from(result, outcome.olds)
    outcome.log_file = _file_log(state.logs, task, result)
    data = result.to_json()
    data["log_file"] = outcome.log_file
    db.record(Record(task.section, task.package, task.version, task.architecture, result.kind, result.exit_code,
                     result.verdict, finished.started, finished.duration, result.tool_version or __version__, data,
                     run_id=run_id, error=result.error, worker=finished.worker,
                     flags=tuple(str(d) for d in task.debs or task.apt), log_path=outcome.log_file))
    why = f": {result.error}" if result.error else ""
    say(f"  {result.verdict} {task.package} {task.version} ({finished.duration:.0f} s){why}")


def upgraded_from(result: RunResult, olds: list[OldDeb]) -> list[OldDeb]:
    """What the upgrade really started from, by the "install old" step's ``NAME=VERSION`` arguments:
    apt takes the newest older version it knows, which may be the archive's and not our copy."""
    installed: dict[str, str] = {}
    for scenario in result.scenarios:
        for step in scenario.get("steps", []):
            if step.get("name") == "install old":
                for command in step.get("commands", []):
                    installed.update(a.split("=", 1) for a in command.get("argv", []) if "=" in a and "/" not in a)
    corrected = []
    for old in olds:
        version = installed.get(old.name, old.version)
        corrected.append(old if version == old.version else OldDeb(old.name, version, FROM_ARCHIVE, None))
    return corrected


def _file_log(logs: Path, task: Task, result: RunResult) -> str | None:
    """The test's log, moved to ``logs/PACKAGE_VERSION_ARCH.log``."""
    if not result.log_file or not Path(result.log_file).is_file():
        return None
    target = logs / f"{task.package}_{task.version.replace(':', '%3a')}_{task.architecture}.log"
    Path(result.log_file).replace(target)
    return str(target)


def pending_codenames(state_dir: Path) -> list[tuple[str, str]]:
    """(repository base directory, codename) of every codename with notifier events waiting."""
    found: dict[tuple[str, str], None] = {}
    if not state_dir.is_dir():
        return []
    for directory in sorted(p for p in state_dir.iterdir() if p.is_dir()):
        for _, event in State(state_dir, directory.name).pending():
            if event.base_dir:
                found[(event.base_dir, event.codename)] = None
    return list(found)


__all__: Sequence[str] = ["Options", "Outcome", "Report", "pending_codenames", "prepare", "run"]
