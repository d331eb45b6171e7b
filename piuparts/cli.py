"""The command line: argv -> RunConfig -> Session.test -> report; the only
place that exits and installs signal handlers.

Exit codes: 0 pass (warnings allowed), 1 the package failed, 2 bad usage or
configuration, 3 the test bed failed (mirror, backend, host), 4 an internal
error (a bug of ours), 128+N killed by signal N (130 for Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

from piuparts import __version__, api, log as logsetup, options as opts, prune, resources
from piuparts.api import require_root
from piuparts.backends import Backend, pids
from piuparts.checks import Check
from piuparts.distros import DEFAULT_PATH as DISTROS_CONF
from piuparts.errors import Interrupted, PiupartsError, UsageError
from piuparts.report import json as json_report, junit as junit_report, pilog, terminal, text as text_report

log = logging.getLogger("piuparts")

EPILOG = """\
exit codes:
  0    the packages passed (warnings allowed)
  1    a package failed: a step failed or something was left behind
  2    bad usage or configuration (the message says what to fix)
  3    the test bed failed (mirror unreachable, debootstrap failed...); not the package's fault
  4    an internal error of piuparts-ng (a bug: run with -v for the traceback and report it)
  130  interrupted (Ctrl-C); 128+N for signal N

other commands:
  piuparts cleanup [--cache-dir DIR]       remove what killed runs left behind
  piuparts cleanup --prune [--max-size SIZE] [--max-age DAYS]
                                           also keep the cache in bounds (least recently used first)
  piuparts schroot-setup NAME [-d DIST]    make a schroot chroot for --schroot NAME
  piuparts lvm-setup VG/LV [-d DIST]       fill an LVM volume with a base for --lvm-volume
  piuparts report CONFIG OUTDIR            the report site of a batch state database
  piuparts worker --broker URL             run batch tests queued on a Redis broker (Celery)
"""


def list_backends() -> str:
    """One line a backend: its name and whether it can run on this machine."""
    lines = []
    for name, backend in sorted(Backend.registry.items()):
        why_not = backend.unavailable()
        lines.append(f"{name:12} {'yes' if why_not is None else 'no: ' + why_not}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The argument parser; option names follow Debian's piuparts, grouped as ``--help`` shows them."""
    p = argparse.ArgumentParser(
        prog="piuparts", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [OPTION...] PACKAGE...\n"
              "       %(prog)s ci|batch|report|worker|cleanup|lvm-setup|schroot-setup ... (each with --help)",
        description="Install, remove and purge Debian packages in a throwaway chroot and report what they leave behind.")
    g = p.add_argument_group("what to test")
    g.add_argument("packages", nargs="*", metavar="PACKAGE", help=".deb or .changes files; package names with --apt")
    g.add_argument("-a", "--apt", action="store_true",
                   help="the PACKAGE arguments are names (NAME or NAME=VERSION) from the archive")
    g.add_argument("-d", "--distribution", action="append", metavar="NAME",
                   help="distribution codename (default: the host's, from its apt sources); given more than "
                        "once, only the distupgrade test runs: install in the first, dist-upgrade to each next one, "
                        "purge, and compare with the same dist-upgrades made without the packages")
    g.add_argument("--distros-conf", metavar="FILE", default=str(DISTROS_CONF),
                   help="piuparts' distribution names that stand for several suites (a release with its "
                        "updates, backports), read for the first -d (default: %(default)s, when it exists)")
    g.add_argument("-m", "--mirror", metavar="'URL [COMPONENT...]'",
                   help="Debian mirror (default: the one the host's apt sources name)")
    g.add_argument("--arch", help="architecture of the chroot (default: the host's)")
    g.add_argument("--extra-repo", action="append", metavar="LINE",
                   help="an extra apt source line, e.g. 'deb [trusted=yes] file:///srv/repo bookworm main' "
                        "(repeatable; file:// repositories are made visible inside)")
    g = p.add_argument_group("the tests", "which scenarios run, and the hooks and mounts they run with")
    g.add_argument("--no-install-purge-test", action="store_true", help="skip the install -> purge scenario")
    g.add_argument("--no-upgrade-test", action="store_true",
                   help="skip the install -> upgrade -> purge scenario (run when apt knows an older version)")
    g.add_argument("--purge-dependencies", action="store_true",
                   help="install the dependencies in each test and purge them again, checking what they leave "
                        "(slower: by default they come from a cached layer and stay)")
    g.add_argument("--install-remove-install", action="store_true",
                   help="install, remove and install again before the final purge")
    g.add_argument("--install-purge-install", action="store_true",
                   help="install, purge and install again before the final purge")
    g.add_argument("--scriptsdir", action="append", metavar="DIR",
                   help="hook scripts (post_setup_*, pre_install_*, ... as in piuparts; repeatable)")
    g.add_argument("--bindmount", action="append", metavar="DIR", help="bind-mount DIR at the same path inside")
    g = p.add_argument_group("where the chroot comes from",
                             "default: a cached base, made once with mmdebstrap (or debootstrap)")
    for backend in Backend.registry.values():  # each backend's own options (piuparts.backends.Option)
        backend.add_arguments(g)
    g.add_argument("-s", "--save", metavar="TARBALL", help="write the prepared base to TARBALL, for -b")
    g.add_argument("--list-backends", action="store_true",
                   help="list the backends, whether each can run here, and why not")
    g = p.add_argument_group("checks and what they ignore")
    g.add_argument("-i", "--ignore", action="append", metavar="PATH", help="ignore this exact path (repeatable)")
    g.add_argument("-I", "--ignore-regex", "--ignore-regexp", action="append", metavar="REGEX",
                   help="ignore paths the anchored REGEX matches whole (repeatable)")
    g.add_argument("-n", "--no-ignores", action="store_true", help="do not use the default ignore lists")
    g.add_argument("--severity", action="append", metavar="CHECK=LEVEL",
                   help="make a check fail, warn or skip (repeatable); checks: " + ", ".join(Check.registry))
    g = p.add_argument_group("cache, limits and network")
    g.add_argument("--cache-dir", default=str(opts.DEFAULT_CACHE_DIR),
                   help="where bases and instances live (default: %(default)s)")
    g.add_argument("--base-max-age", type=float, default=7.0, metavar="DAYS",
                   help="rebuild a cached base older than this (default: %(default)s)")
    g.add_argument("--lists-max-age", type=float, default=24.0, metavar="HOURS",
                   help="refresh the cached base's apt lists when older than this (default: %(default)s)")
    g.add_argument("--tmpfs-size", default="50%", metavar="SIZE",
                   help="size limit of the tmpfs that holds an instance's changes (default: %(default)s of memory)")
    g.add_argument("--no-tmpfs", action="store_true",
                   help="keep an instance's changes on disk under the cache directory (for very large packages)")
    g.add_argument("--max-command-runtime", type=float, default=1800.0, metavar="SECONDS",
                   help="time limit of each apt or dpkg step (default: %(default)s)")
    g.add_argument("--prompt-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="fail a step that waits this long for an answer on its terminal (default: %(default)s)")
    g.add_argument("--no-network", action="store_true",
                   help="maintainer scripts and hooks run in a network namespace with only a loopback; "
                        "apt downloads what they need before they run (the default of batch run, ci "
                        "and worker)")
    g.add_argument("--scripts-network", action="store_true",
                   help="maintainer scripts and hooks use the host's network, its loopback services "
                        "included (the default of a single run; for a batch section or ci that needs it)")
    g = p.add_argument_group("output")
    g.add_argument("--json", metavar="FILE", help="write the result as JSON to FILE")
    g.add_argument("--junit", metavar="FILE", help="write the result as JUnit XML to FILE (GitLab, Jenkins)")
    g.add_argument("-l", "--log-file", "--logfile", metavar="FILE",
                   help="also write the log to FILE, with piuparts' lines for CI wrappers at its end (on a "
                        "terminal, without -l, the log goes to CACHE/logs/ and the terminal shows the steps)")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="debug output: every command whole, its output, ignore rules (on a terminal too)")
    g.add_argument("--version", action="version", version=version_line())
    _piuparts_options(p.add_argument_group(f"piuparts {PIUPARTS_COMPAT}'s options",
                                           "accepted for drop-in use (see the README's table)"))
    return p


#: The piuparts release whose options and log lines this one accepts and writes.
PIUPARTS_COMPAT = "1.1.7"


def config_from_argv(argv: Sequence[str], isolated: bool = False) -> tuple[api.RunConfig, api.Subject | None]:
    """piuparts' command-line options (and packages, if any) as a RunConfig and the subject they
    name (None when ``argv`` names no package); a UsageError where argparse would exit.  The one
    reader of piuparts' options: the command line, and the ``piuparts-flags`` of a batch section
    or a ``ci`` run, which are piuparts' own command-line options by definition (piuparts.conf).
    ``isolated``: maintainer scripts get no network of the host's unless ``--scripts-network``
    says so (the modes that test whole archives of untrusted packages)."""
    p = parser()

    def refuse(message: str) -> NoReturn:
        raise UsageError(message)
    p.error = refuse  # type: ignore[method-assign]
    args = p.parse_args(list(argv))
    config = opts.from_args(args, isolated=isolated)
    return config, (api.Subject.from_args(args.packages, args.apt) if args.packages else None)


def version_line() -> str:
    """What --version prints: piuparts' form (``piuparts VERSION``), with a
    version that compares with piuparts' as the release it stands in for."""
    return f"piuparts {PIUPARTS_COMPAT}+ng{__version__} (piuparts-ng {__version__})"


def _piuparts_options(g: argparse._ArgumentGroup) -> None:
    """The rest of piuparts 1.1.7's options: each works, or logs why it changes nothing here.
    Its check switches first: piuparts' spellings of ``--severity``."""
    for flag, meaning in opts.PIUPARTS_SEVERITY_OPTIONS.items():
        g.add_argument(*flag.split("|"), action="store_true",
                       help="as in piuparts: " + ", ".join(f"{c}={lvl}" for c, lvl in meaning))
    g.add_argument("-D", "--defaults", metavar="DEFAULTS",
                   help="debian (the default) or ubuntu: Ubuntu's mirror and components when -m does not say")
    g.add_argument("--install-recommends", action="store_true", help="install Recommends too")
    g.add_argument("--install-suggests", action="store_true", help="install Suggests too")
    g.add_argument("--no-eatmydata", action="store_true",
                   help="run apt and dpkg without libeatmydata (dpkg's fsyncs happen)")
    g.add_argument("--dpkg-noforce-unsafe-io", action="store_true",
                   help="dpkg without --force-unsafe-io (it syncs as on a real system)")
    g.add_argument("--dpkg-force-confdef", action="store_true",
                   help="dpkg takes the default action on a modified conffile (hides the problems piuparts "
                        "is for; see #466118)")
    g.add_argument("--do-not-verify-signatures", action="store_true",
                   help="apt inside accepts unsigned repositories")
    g.add_argument("--no-check-valid-until", action="store_true",
                   help="apt inside accepts expired Release files (Acquire::Check-Valid-Until=false)")
    g.add_argument("--allow-database", action="store_true",
                   help="let database servers (MariaDB, MySQL, PostgreSQL, Firebird) start (a process left "
                        "running after the purge still fails)")
    g.add_argument("--proxy", metavar="URL", help="apt inside goes through the HTTP proxy at URL")
    g.add_argument("--update-retries", type=int, metavar="N", help="try apt-get update inside N more times")
    g.add_argument("--fake-essential-packages", action="append", metavar="PKG[,PKG...]",
                   help="install these before the test and keep them (repeatable)")
    g.add_argument("--pedantic-purge-test", action="store_true",
                   help="files left in /tmp count as leftovers too")
    g.add_argument("--testdebs-repo", metavar="REPO",
                   help="an apt source line, URL or directory (a flat repository) with the packages to test")
    g.add_argument("--distupgrade-to-testdebs", action="store_true", help="accepted; see the README")
    g.add_argument("--distupgrade-to-testdebs-from", metavar="DIR",
                   help="--bindmount DIR --testdebs-repo DIR --distupgrade-to-testdebs")
    g.add_argument("--single-changes-list", action="store_true",
                   help="test the packages of all .changes files together (default: each .changes on its own)")
    g.add_argument("--single-packages", action="store_true",
                   help="test each package of the command line on its own (default: all together)")
    g.add_argument("-t", "--tmpdir", metavar="DIR",
                   help="accepted (checked to exist); instances live under --cache-dir, their changes in a tmpfs")
    g.add_argument("-K", "--keyring", metavar="FILE", help="accepted; bases use debootstrap's default keyring")
    g.add_argument("--docker-image", metavar="IMAGE", help="not supported: give an exported image with -b")
    g.add_argument("--log-level", choices=("error", "info", "dump", "debug"),
                   help="debug and dump show what -v shows; error and info the default")
    g.add_argument("--warn-on-usr-move", choices=("disabled", "warn", "fail"), help="accepted; no such check here")
    g.add_argument("--max-command-output-size", type=float, metavar="MB", help="accepted; see the README")
    for name in ("--debfoster-options",):
        g.add_argument(name, metavar="OPTIONS", help="accepted; bases are never minimized")
    g.add_argument("--extra-old-packages", action="append", metavar="PKG[,PKG...]", help="accepted; not supported")
    g.add_argument("-B", "--end-meta", metavar="FILE", help="accepted; the distupgrade test makes its own reference")
    g.add_argument("-S", "--save-end-meta", metavar="FILE", help="accepted; nothing is saved")
    for names, meaning in ((("-k", "--keep-env", "--keep-tmpdir"), "accepted; instances are always removed"),
                           (("--keep-sources-list",), "a base given with -b, -e, --schroot... keeps its apt "
                            "sources even when -d or -m name others"),
                           (("--list-installed-files",), "accepted; -v shows what each step did"),
                           (("--merged-usr",), "bases are merged-/usr already"),
                           (("--upgrade-before-dist-upgrade",), "accepted; one dist-upgrade a step"),
                           (("--skip-minimize",), "bases are never minimized"),
                           (("--minimize",), "accepted; bases are never minimized"),
                           (("--warn-on-install-over-symlink",), "accepted; no such check here"),
                           (("--shell-on-error",), "accepted; no shell is started")):
        g.add_argument(*names, action="store_true", help=meaning)


def cleanup_parser() -> argparse.ArgumentParser:
    """The parser of ``piuparts cleanup``."""
    p = argparse.ArgumentParser(prog="piuparts cleanup",
                                description="Remove the instances, mounts and half-built bases of runs that died; "
                                            "with --prune, also keep the cache in bounds.")
    p.add_argument("--cache-dir", default=str(opts.DEFAULT_CACHE_DIR))
    p.add_argument("--prune", action="store_true",
                   help="also remove base generations no run holds, and (with the limits below) the least "
                        "recently used dependency layers, cached .debs and distupgrade references")
    p.add_argument("--max-size", metavar="SIZE", help="with --prune: bring the cache under SIZE (500M, 20G...)")
    p.add_argument("--max-age", type=float, metavar="DAYS",
                   help="with --prune: remove what was not used in the last DAYS days")
    p.add_argument("-v", "--verbose", action="count", default=0)
    return p


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def cleanup(argv: Sequence[str]) -> int:
    """``piuparts cleanup``: reap what dead runs left in the cache directory."""
    args = cleanup_parser().parse_args(argv)
    logsetup.setup(args.verbose)
    if (args.max_size or args.max_age is not None) and not args.prune:
        raise UsageError("--max-size and --max-age go with --prune")
    if args.max_age is not None and args.max_age < 0:
        raise UsageError(f"--max-age {args.max_age:g}: a number of days, 0 or more")
    max_size = prune.parse_size(args.max_size) if args.max_size else None
    require_root()
    cache = Path(args.cache_dir).absolute()
    removed = resources.reap(cache / "instances")
    for parent in sorted(cache.iterdir()) if cache.is_dir() else ():  # bases, layers, references
        removed += resources.reap(parent, ".build-*")
    for base in sorted((cache / "bases").glob("*/")) if (cache / "bases").is_dir() else ():
        removed += resources.reap(base, ".build-*")  # a generation a killed run was making
    log.info("Removed %d leftover director%s", len(removed), "y" if len(removed) == 1 else "ies")
    groups = pids.reap()  # and the processes a killed run left in them
    if groups:
        log.info("Removed %d pids cgroup%s of killed runs", len(groups), "" if len(groups) == 1 else "s")
    temporaries = prune.reap_temporaries(cache)
    if temporaries:
        log.info("Removed %d temporary file%s of killed runs", len(temporaries), "" if len(temporaries) == 1 else "s")
    if args.prune:
        pruned = prune.prune(cache, max_size, args.max_age)
        log.info("Pruned %d item%s", len(pruned), "" if len(pruned) == 1 else "s")
    return 0


#: A mode of the command (``piuparts batch ...``): its own arguments in, the exit code out.
Mode = Callable[[list[str]], int]


def main(argv: Sequence[str] | None = None, modes: Mapping[str, Mode] | None = None) -> int:
    """The ``piuparts`` command; returns the exit code.  ``modes`` (batch, ci, report,
    worker: :data:`piuparts.main.MODES`) take over when argv starts with their name; they
    sit above this module, so it is handed them rather than importing them."""
    owns_process = argv is None  # the command itself, not a caller in the same process
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _main(argv, modes or {})
    finally:
        # A signal that comes once everything is done and said ends the
        # process the default way, not with a traceback from its teardown.
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if owns_process:
            signal.signal(signal.SIGINT, signal.SIG_DFL)


def _main(argv: list[str], modes: Mapping[str, Mode]) -> int:
    json_path: Path | None = None
    log_file: pilog.LogFile | None = None
    try:
        if argv[:1] == ["cleanup"]:
            return cleanup(argv[1:])
        if argv[:1] and argv[0] in modes:
            return modes[argv[0]](argv[1:])
        if argv[:1] and argv[0] in Backend.subcommands:
            return Backend.subcommands[argv[0]](argv[1:])
        args = parser().parse_args(argv)
        if args.list_backends:
            print(list_backends())
            return 0
        log_file = _setup_logging(args)
        json_path = Path(args.json) if args.json else None
        config = opts.from_args(args)
        subjects = test_subjects(args)
        with api.Session(config) as session:
            results = [session.test(subject) for subject in subjects]
        return _report(results, json_path, args.junit, log_file)
    except PiupartsError as err:
        return _error(str(err), err.exit_code, json_path, log_file)
    except KeyboardInterrupt:
        return _error("interrupted", 130, json_path, log_file)
    except Interrupted as err:
        return _error(str(err), err.exit_code, json_path, log_file)
    except Exception as err:  # a bug of ours: one line, the traceback with -v
        log.debug("internal error", exc_info=True)
        return _error(f"internal error: {type(err).__name__}: {err} (run with -v for the traceback "
                      "and report it)", api.KINDS["internal"], json_path, log_file)
    finally:
        _end_view()
        if log_file is not None:
            logging.getLogger("piuparts").removeHandler(log_file)
            log_file.close()


def _setup_logging(args: argparse.Namespace) -> pilog.LogFile | None:
    """The console log, and the ``-l`` file (the console's lines, then piuparts' at the end).

    On a terminal without -v, the console shows the steps (the terminal
    view), and the full log goes to the -l file or, without one, to a file
    of its own under the cache directory's logs/ (said at the end)."""
    verbosity = args.verbose or (1 if args.log_level in ("debug", "dump") else 0)
    view = terminal.StepView(sys.stdout) if verbosity == 0 and terminal.wanted(sys.stdout) else None
    logger = logsetup.setup(verbosity, view=view)
    path = Path(args.log_file) if args.log_file else terminal.log_path(Path(args.cache_dir)) if view else None
    if path is None:
        return None
    console = logger.handlers[0]
    assert isinstance(console.formatter, logsetup.ElapsedFormatter)
    try:  # the same clock as the console's, every command whole
        if not args.log_file:
            path.parent.mkdir(parents=True, exist_ok=True)
        log_file = pilog.LogFile(path, logsetup.ElapsedFormatter(console.formatter.start),
                                 logging.INFO if view else console.level)
    except OSError as err:
        if not args.log_file:  # the view's log is a convenience: the run goes on without it
            logger.warning("Cannot write the full log %s (%s); -l FILE writes it elsewhere", path, err.strerror)
            return None
        raise UsageError(f"-l {args.log_file}: cannot write the log file ({err.strerror})") from None
    logger.addHandler(log_file)
    return log_file


def _end_view() -> bool:
    """Stop the terminal view, if there is one (its last step line; the live
    line goes); whether there was one."""
    view = next((h for h in logging.getLogger("piuparts").handlers if isinstance(h, terminal.StepView)), None)
    if view is None:
        return False
    logging.getLogger("piuparts").removeHandler(view)
    view.close()
    return True


def test_subjects(args: argparse.Namespace) -> list[api.Subject]:
    """What the command line asks to test, one test each, grouped as piuparts groups them:
    each .changes file on its own (all together with --single-changes-list), the
    other packages together (each on its own with --single-packages)."""
    if not args.packages:
        return [api.Subject.from_args([], args.apt)]  # says that there is nothing to test
    changes = [] if args.apt else [arg for arg in args.packages if arg.endswith(".changes")]
    regular = [arg for arg in args.packages if arg not in changes]
    by_changes = [api.Subject.from_args([path]) for path in changes]
    pool = api.Subject.from_args(regular, args.apt) if regular else api.Subject()
    if args.single_changes_list:
        pool = api.Subject(debs=tuple(d for s in by_changes for d in s.debs) + pool.debs, apt_names=pool.apt_names)
        by_changes = []
    if args.single_packages:
        singles = [api.Subject(debs=(deb,)) for deb in pool.debs]
        return by_changes + singles + [api.Subject(apt_names=(name,)) for name in pool.apt_names]
    return by_changes + ([pool] if pool.debs or pool.apt_names else [])


def _report(results: list[api.RunResult], json_path: Path | None, junit: str | None,
            log_file: pilog.LogFile | None = None) -> int:
    """The summaries, the JSON and JUnit reports, the ``-l`` file's last lines;
    the exit code of the worst verdict."""
    if json_path:
        documents = [r.to_json() for r in results]
        json_report.write(json_path, documents[0] if len(documents) == 1 else documents)
    if log_file is not None:
        log_file.finish(results)
    viewed = _end_view()
    for result in results:
        if result.error is not None:
            hint = " (run with -v for the traceback and report it)" if result.kind == "internal" else ""
            print(f"piuparts: error: {result.error}{hint}", file=sys.stderr, flush=True)
            continue
        print(text_report.summary(result.scenario_results(), result.subject["label"]), flush=True)
    _end_as_piuparts(results)
    if junit:
        scenarios = [s for r in results for s in r.scenario_results()]
        packages = [p for r in results for p in r.subject["packages"]]
        junit_report.write(Path(junit), scenarios, packages,
                           f"piuparts {', '.join(r.subject['label'] for r in results)}")
    if viewed and log_file is not None:
        print(f"Full log: {log_file.baseFilename}", flush=True)
    return max(r.exit_code for r in results)


def _end_as_piuparts(results: list[api.RunResult]) -> None:
    """After the summaries, piuparts' own last lines on the standard output,
    ``piuparts run ends.`` the very last: piuparts-slave reads the output
    (it passes no -l) and files a run that ends otherwise as incomplete,
    and the master's known_problems patterns read the lines before it."""
    console = next((h for h in logging.getLogger("piuparts").handlers if type(h) is logging.StreamHandler), None)
    if console is not None:
        pilog.emit(console, pilog.result_lines(results), console.level)


def _error(message: str, code: int, json_path: Path | None, log_file: pilog.LogFile | None = None) -> int:
    viewed = _end_view()
    print(f"piuparts: error: {message}", file=sys.stderr, flush=True)
    if log_file is not None:
        log_file.finish([], error=message)
        if viewed:
            print(f"Full log: {log_file.baseFilename}", file=sys.stderr, flush=True)
    if json_path:
        try:
            json_report.write(json_path, {"verdict": "ERROR", "exit_code": code, "error": message})
        except OSError:
            pass
    return code
