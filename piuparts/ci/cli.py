"""``piuparts ci REPO --codename X``, ``piuparts ci notify ...``, ``piuparts ci run-pending``.

Exit codes (the project's one table): 0 every test passed, or nothing was
new; 1 a package failed; 2 bad usage (no such repository or codename, a
bad option, another run holds the codename, a remote worker refused the
tests); 3 a test-bed error (after the
retries; those packages are tested again at the next run); 4 an internal
error; 130 interrupted by Ctrl-C.  ``ci notify`` always exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Sequence

from piuparts import log as logsetup
from piuparts.api import require_root
from piuparts.batch import executor as executor_mod, executor_options
from piuparts.batch.engine import Stop
from piuparts.ci import notify, run as run_mod
from piuparts.ci.run import Options, Report
from piuparts.report import terminal

EPILOG = """\
exit codes:
  0    every test passed, or nothing was new
  1    a package failed (the JUnit failure and the log say how)
  2    bad usage: no such repository or codename, a bad option, a remote worker refused the tests
  3    a test-bed error (mirror, repository, backend) after the retries; tested again next run
  4    an internal error of piuparts-ng (a bug: report it)
  130  interrupted (Ctrl-C)

remote workers (piuparts worker on other machines, over a Redis broker):
  piuparts ci REPO --codename X --executor celery --broker redis://:PASSWORD@HOST:6379/0 [--repo-url URL]
  The workers test NAME=VERSION from the repository, which they reach as REPO (a directory they
  were started with --repo-dir over: the same path, e.g. an NFS mount) or at --repo-url (http(s));
  the versions to upgrade from are put in REPO/piuparts-upgrade-from/ for the run, reached the same way.

other commands:
  piuparts ci notify [--state-dir DIR] ARGS...   reprepro's Log: notifier (records; never fails)
  piuparts ci run-pending [--state-dir DIR] ...   test what the notifier recorded
"""


def _test_options(p: argparse.ArgumentParser) -> None:
    """The options ``ci`` and ``ci run-pending`` share."""
    p.add_argument("--component", action="append", metavar="NAME",
                   help="only this component (repeatable; default: all of the codename's)")
    p.add_argument("--arch", help="the architecture tested (default: the host's)")
    p.add_argument("--state-dir", default=str(notify.DEFAULT_STATE_DIR),
                   help="what the last runs tested, the kept .debs, the results and logs (default: %(default)s)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="tests at once (default: %(default)s)")
    p.add_argument("--by-source", action="store_true",
                   help="test the binaries of one source upload together (default: each binary on its own)")
    p.add_argument("--retries", type=int, default=1, metavar="N",
                   help="run a test again this many times after a test-bed error (default: %(default)s)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML (GitLab, Jenkins) to FILE")
    p.add_argument("--json", metavar="FILE", help="write the JSON report (results, changes) to FILE")
    p.add_argument("--html", metavar="DIR", help="write the report site of the codename's results (every run, "
                   "every package tested) into DIR; only what changed is rewritten")
    p.add_argument("-d", "--distribution", action="append", metavar="NAME",
                   help="the base distribution the tests run on (default: the host's)")
    p.add_argument("-m", "--mirror", metavar="'URL [COMPONENT...]'", help="its mirror (default: the host's)")
    p.add_argument("--extra-repo", action="append", metavar="LINE", help="another apt source line (repeatable)")
    p.add_argument("--cache-dir", help="where bases and instances live (piuparts' default)")
    executor_options.add_options(p)
    p.add_argument("-v", "--verbose", action="count", default=0)


def parser() -> argparse.ArgumentParser:
    """``piuparts ci``'s parser."""
    p = argparse.ArgumentParser(prog="piuparts ci", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Test what is new in a reprepro repository: install and purge each new "
                                "package, and upgrade each changed one from the version it replaced.")
    p.add_argument("repository", metavar="REPO",
                   help="the repository's base directory (reprepro -b), or its http:// URL")
    p.add_argument("--codename", required=True, help="the codename (distribution) of the repository to test")
    p.add_argument("--repo-url", metavar="URL",
                   help="with --executor celery: the http(s):// URL under which the workers reach REPO "
                        "(default: REPO itself, a directory they were started with --repo-dir over)")
    _test_options(p)
    return p


def pending_parser() -> argparse.ArgumentParser:
    """``piuparts ci run-pending``'s parser."""
    p = argparse.ArgumentParser(prog="piuparts ci run-pending",
                                description="Test what 'piuparts ci notify' recorded, codename by codename "
                                "(for reprepro's --endhook, a systemd timer or cron).")
    _test_options(p)
    return p


def _piuparts_argv(args: argparse.Namespace) -> tuple[str, ...]:
    argv: list[str] = []
    for distro in args.distribution or ():
        argv += ["-d", distro]
    if args.mirror:
        argv += ["-m", args.mirror]
    for line in args.extra_repo or ():
        argv += ["--extra-repo", line]
    if args.cache_dir:
        argv += ["--cache-dir", str(Path(args.cache_dir).absolute())]
    return tuple(argv)


def _options(args: argparse.Namespace, repository: str, codename: str) -> Options:
    from piuparts.errors import UsageError
    if args.workers < 1 or args.retries < 0:
        raise UsageError("--workers must be at least 1 and --retries not negative")
    repo_url = getattr(args, "repo_url", None)
    if repo_url and args.executor != "celery":
        raise UsageError("--repo-url is where remote workers reach the repository: it goes with --executor celery")
    if repo_url and not repo_url.startswith(("http://", "https://")):
        raise UsageError(f"--repo-url {repo_url}: an http:// or https:// URL expected (a directory the workers "
                         "share is REPO itself, with piuparts worker --repo-dir)")
    return Options(repository, codename, Path(args.state_dir).absolute(), tuple(args.component or ()), args.arch,
                   args.workers, args.by_source, _piuparts_argv(args), args.retries,
                   remote=args.executor == "celery", repo_url=repo_url)


def _executor(args: argparse.Namespace, options: Options) -> executor_mod.Factory:
    """The executor ``--executor`` chooses (a bad --broker says so now)."""
    from piuparts.ci.state import State
    return executor_options.factory(args, State(options.state_dir, options.codename).db)


def _say(text: str) -> None:
    print(text, flush=True)


class _Bar:
    """On a terminal: the pass's progress bar (rich), its lines printed above it."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
            TimeRemainingColumn
        self.progress = Progress(TextColumn("[bold]testing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 TimeRemainingColumn(), transient=True)
        self.task = self.progress.add_task("tests", total=None, visible=False)

    def say(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)

    def __call__(self, done: int, total: int) -> None:
        if not self.progress.live.is_started:
            self.progress.start()
        self.progress.update(self.task, completed=done, total=total, visible=True)

    def close(self) -> None:
        self.progress.stop()


def _one(options: Options, args: argparse.Namespace, suffix: str = "") -> int:
    """One pass and its reports; the exit code."""
    make = _executor(args, options)
    stop = Stop()
    previous = signal.signal(signal.SIGINT, stop.press)
    bar = _Bar() if terminal.wanted(sys.stdout) else None
    try:
        report = run_mod.run(options, stop, make, bar.say, bar) if bar else run_mod.run(options, stop, make, _say)
    finally:
        if bar is not None:
            bar.close()
        signal.signal(signal.SIGINT, previous)
    _reports(report, args, suffix)
    print(report.summary(), flush=True)
    return 130 if report.interrupted else report.exit_code()


def _reports(report: Report, args: argparse.Namespace, suffix: str) -> None:
    from piuparts.ci import junit, report as report_mod
    from piuparts.ci.state import State, write_json

    def named(path: str) -> Path:
        p = Path(path)
        return p.with_name(f"{p.stem}{suffix}{p.suffix}") if suffix else p
    state = State(Path(args.state_dir), report.codename)
    report_mod.record(report, state)  # first: the reports name the run it records
    write_json(state.dir / "last-run.json", report.to_json())
    if args.json:
        report_mod.write_json_report(named(args.json), report)
    if args.junit:
        junit.write(named(args.junit), report)
    if args.html:
        site = Path(args.html) / report.codename if suffix else Path(args.html)  # run-pending: a site a codename
        print(report_mod.write_html(site, report, state), flush=True)
    for outcome in report.outcomes:
        if outcome.result is not None and outcome.result.kind != "pass":
            print(f"  {outcome.result.verdict} {outcome.unit.name} {outcome.unit.version}: "
                  + (outcome.result.error or "; ".join(f"[{f.check}] {f.line()}" for f in outcome.result.findings
                                                       if f.severity == "fail")[:500])
                  + (f" (log: {outcome.log_file})" if outcome.log_file else ""), flush=True)


def run_pending(argv: Sequence[str]) -> int:
    """``piuparts ci run-pending``: each codename with events, one pass each; the worst exit code."""
    args = pending_parser().parse_args(list(argv))
    logsetup.setup(args.verbose, stream=sys.stderr)
    require_root()
    waiting = run_mod.pending_codenames(Path(args.state_dir).absolute())
    if not waiting:
        print("piuparts ci: nothing pending", flush=True)
        return 0
    codes = []
    for base_dir, codename in waiting:
        options = _options(args, base_dir, codename)
        codes.append(_one(options, args, f"-{codename}" if len(waiting) > 1 else ""))
    return max(codes, key=lambda c: (c == 130, c == 4, c == 3, c == 2, c == 1))


def main(argv: Sequence[str]) -> int:
    """``piuparts ci ...``; returns the exit code (errors are raised for cli.py to report)."""
    argv = list(argv)
    if argv[:1] == ["notify"]:
        return notify.main(argv[1:])
    try:
        if argv[:1] == ["run-pending"]:
            return run_pending(argv[1:])
        args = parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    logsetup.setup(args.verbose, stream=sys.stderr)
    options = _options(args, args.repository, args.codename)
    _executor(args, options)  # a bad --broker says so before root is asked for
    run_mod.prepare(options)  # so does a wrong repository or codename
    require_root()
    return _one(options, args)
