"""``piuparts batch run|status|reschedule CONFIG ...``: argument parsing and the one run.

Exit codes of ``run`` (the project's one table, the worst thing the run
saw): 0 every test passed (or nothing was due), 1 a package failed, 2 bad
configuration (or another run holds the database), 3 a test-bed failure
(those packages are retried), 4 an internal error (listed at the end), 130
interrupted by Ctrl-C.  ``status`` and ``reschedule`` exit 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from piuparts import log as logsetup
from piuparts.api import require_root
from piuparts.batch import config as config_mod, engine, executor_options, report, snapshot
from piuparts.batch.db import Database
from piuparts.batch.executor import Executor
from piuparts.errors import UsageError


def parser() -> argparse.ArgumentParser:
    """``piuparts batch``'s parser and its three commands."""
    p = argparse.ArgumentParser(prog="piuparts batch", description="Nightly runs over whole archive sections, "
                                "with a state database (piuparts.debian.org's states).")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="test what is new or due in the sections")
    status = commands.add_parser("status", help="the state of every package")
    again = commands.add_parser("reschedule", help="test packages again at the next run")
    for sub in (run, status, again):
        sub.add_argument("config", metavar="CONFIG", help="the batch configuration (see conf/batch.conf.example)")
        sub.add_argument("--section", action="append", metavar="NAME", help="only this section (repeatable)")
        sub.add_argument("-v", "--verbose", action="count", default=0)
    run.add_argument("--workers", type=int, metavar="N", help="tests at once (default: the configuration's workers)")
    run.add_argument("--max-tests", type=int, metavar="N", help="start at most N tests in this run")
    run.add_argument("--seed", type=int, metavar="S",
                     help="take the waiting packages in a random order fixed by S (a sample, with --max-tests)")
    run.add_argument("--report", metavar="OUTDIR", help="then write the report site into OUTDIR (piuparts report)")
    executor_options.add_options(run)
    status.add_argument("--json", action="store_true", help="print the states as JSON")
    again.add_argument("packages", nargs="*", metavar="PACKAGE")
    again.add_argument("--state", action="append", metavar="STATE",
                       help="every package in this state (failed-testing, cannot-be-tested...; repeatable)")
    return p


def _sections(conf: config_mod.Config, args: argparse.Namespace) -> list[str]:
    return list(args.section or conf.sections)


def _run(conf: config_mod.Config, args: argparse.Namespace) -> int:
    from piuparts.batch.progress import display_for
    require_root()
    workers = args.workers if args.workers is not None else conf.workers
    if workers < 1 or (args.max_tests is not None and args.max_tests < 0):
        raise UsageError("--workers must be at least 1 and --max-tests not negative")
    conf = dataclasses.replace(conf, workers=workers)  # the tests' share of memory follows it
    stop = engine.Stop()
    previous = signal.signal(signal.SIGINT, stop.press)
    start = time.monotonic()
    try:
        chosen = executor_options.factory(args, conf.db)  # a bad --broker is said before anything starts
        make: Callable[[], Executor] = lambda: chosen(workers, conf.logs)  # noqa: E731
        display = display_for()
        tally = engine.run(conf, _sections(conf, args), make, display, stop, args.max_tests, args.seed)
    finally:
        signal.signal(signal.SIGINT, previous)
    print(_summary_line(tally, time.monotonic() - start), flush=True)
    for line in tally.internal_errors:
        print(f"  internal error: {line}", flush=True)
    if args.report:
        from piuparts.report.html import cli as report_cli
        print(report_cli.write(conf, Path(args.report), args.section), flush=True)
    return 130 if stop.presses else tally.exit_code()


def _summary_line(tally: engine.Tally, seconds: float) -> str:
    kinds = tally.kinds
    parts = [f"{kinds['pass']} passed", f"{kinds['fail']} failed"]
    if kinds["testbed"] or kinds["usage"]:
        parts.append(f"{kinds['testbed'] + kinds['usage']} test-bed errors (retried later)")
    if kinds["internal"]:
        parts.append(f"{kinds['internal']} internal errors")
    if tally.cancelled:
        parts.append(f"{tally.cancelled} stopped (waiting again)")
    if tally.unreadable:
        parts.append(f"sections not read: {', '.join(tally.unreadable)}")
    if tally.stopped:
        parts.append("stopped early: a disk is full")
    return f"piuparts batch: {tally.tested} tests in {seconds:.0f} s: " + ", ".join(parts)


def _status(conf: config_mod.Config, args: argparse.Namespace) -> int:
    with Database(conf.db) as db:
        runs = _states(conf, _sections(conf, args), db)
    from piuparts.celery import seen  # the workers of the last --executor celery run
    workers = seen.read(conf.logs)
    if args.json:
        # Compact: at the size of an archive the indented form takes seconds to write (json's
        # C encoder does not indent).
        print(json.dumps({**report.status_json(runs), "workers": workers}, sort_keys=True, separators=(",", ":")))
    else:
        print(report.status_text(runs) + ("\n" + seen.text(workers) if workers else ""))
    return 0


def _states(conf: config_mod.Config, names: Sequence[str], db: Database) -> Mapping[str, report.SectionRun]:
    """The sections' states: kept ones when their key still holds (:mod:`.snapshot`), else
    derived again (with the sections they depend on) and kept."""
    arch = engine.host_arch()
    wanted = [section.name for section in engine.ordered(conf, names)]
    found = snapshot.keys(conf, wanted, db, arch)
    kept = {name: snapshot.load(db, name, found[name], time.time()) for name in names}
    if all(kept.values()):
        return {name: run for name, run in kept.items() if run is not None}
    marks = {name: db.results_mark(name) for name in wanted}  # before the derive: a night may be adding
    runs = engine.prepare(conf, wanted, db)
    snapshot.store_all(conf, runs, db, arch, marks)
    return {name: runs[name] for name in names}


def _reschedule(conf: config_mod.Config, args: argparse.Namespace) -> int:
    if not args.packages and not args.state:
        raise UsageError("reschedule: name the packages, or --state STATE")
    with Database(conf.db) as db:
        runs = engine.prepare(conf, _sections(conf, args), db)
        chosen = 0
        for name, run in runs.items():
            for package, (state, _) in run.computed.items():
                if package in args.packages or state in (args.state or ()):
                    db.request(name, package, "batch reschedule")
                    chosen += 1
        unknown = [p for p in args.packages if not any(p in r.computed for r in runs.values())]
    if unknown:
        raise UsageError(f"reschedule: {unknown[0]}: no such package in the sections")
    print(f"{chosen} packages will be tested again at the next run")
    return 0


def main(argv: Sequence[str]) -> int:
    """``piuparts batch ...``; returns the exit code (errors are raised for cli.py to report)."""
    try:
        args = parser().parse_args(list(argv))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logsetup.setup(args.verbose, stream=sys.stderr)
    conf = config_mod.load(Path(args.config))
    commands = {"run": _run, "status": _status, "reschedule": _reschedule}
    return commands[args.command](conf, args)
