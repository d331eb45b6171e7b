"""The command line: argv -> RunConfig -> Session.test -> report; the only
place that exits and installs signal handlers.

Exit codes: 0 pass (warnings allowed), 1 the package failed, 2 bad usage or
configuration, 3 the test bed failed (mirror, backend, host), 4 an internal
error (a bug of ours), 128+N killed by signal N (130 for Ctrl-C).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from piuparts import __version__, api, log as logsetup, options as opts, prune, resources
from piuparts.api import require_root
from piuparts.backends import Backend
from piuparts.batch import cli as batch_cli
from piuparts.checks import Check
from piuparts.errors import Interrupted, PiupartsError, UsageError
from piuparts.report import json as json_report, junit as junit_report, text as text_report

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
    """The argument parser; option names follow Debian's piuparts."""
    p = argparse.ArgumentParser(
        prog="piuparts", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Install, remove and purge Debian packages in a throwaway chroot and report what they leave behind.")
    p.add_argument("packages", nargs="*", metavar="PACKAGE", help=".deb or .changes files; package names with --apt")
    p.add_argument("--apt", action="store_true", help="the PACKAGE arguments are names (NAME or NAME=VERSION) from the archive")
    p.add_argument("-d", "--distribution", action="append", metavar="NAME",
                   help="distribution codename (default: the host's, from its apt sources); given more than "
                        "once, only the distupgrade test runs: install in the first, dist-upgrade to each next one, "
                        "purge, and compare with the same dist-upgrades made without the packages")
    p.add_argument("-m", "--mirror", metavar="'URL [COMPONENT...]'",
                   help="Debian mirror (default: the one the host's apt sources name)")
    p.add_argument("--arch", help="architecture of the chroot (default: the host's)")
    p.add_argument("--extra-repo", action="append", metavar="LINE",
                   help="an extra apt source line, e.g. 'deb [trusted=yes] file:///srv/repo bookworm main' "
                        "(repeatable; file:// repositories are made visible inside)")
    p.add_argument("--bindmount", action="append", metavar="DIR", help="bind-mount DIR at the same path inside")
    p.add_argument("--scriptsdir", action="append", metavar="DIR",
                   help="hook scripts (post_setup_*, pre_install_*, ... as in piuparts; repeatable)")
    p.add_argument("--no-install-purge-test", action="store_true", help="skip the install -> purge scenario")
    p.add_argument("--no-upgrade-test", action="store_true",
                   help="skip the install -> upgrade -> purge scenario (run when apt knows an older version)")
    p.add_argument("--purge-dependencies", action="store_true",
                   help="install the dependencies in each test and purge them again, checking what they leave "
                        "(slower: by default they come from a cached layer and stay)")
    p.add_argument("--install-remove-install", action="store_true",
                   help="install, remove and install again before the final purge")
    p.add_argument("--install-purge-install", action="store_true",
                   help="install, purge and install again before the final purge")
    g = p.add_argument_group("where the chroot comes from (default: a cached debootstrap base)")
    g.add_argument("-b", "--basetgz", metavar="TARBALL", help="a base tarball (piuparts' or pbuilder's)")
    g.add_argument("-p", "--pbuilder", action="store_true",
                   help="pbuilder's base tarball (BASETGZ of pbuilderrc, default /var/cache/pbuilder/base.tgz)")
    g.add_argument("-s", "--save", metavar="TARBALL", help="write the prepared base to TARBALL, for -b")
    g.add_argument("--schroot", metavar="NAME", help="sessions of this schroot (with a union type; "
                   "see 'piuparts schroot-setup')")
    g.add_argument("--lvm-volume", metavar="VG/LV", help="snapshots of this LVM volume that holds a base")
    g.add_argument("--lvm-snapshot-size", default="1G", metavar="SIZE",
                   help="size of the LVM snapshots (default: %(default)s)")
    g.add_argument("-e", "--existing-chroot", metavar="DIR",
                   help="an existing Debian tree (never changed: instances are overlays over it)")
    g.add_argument("--hard-link", action="store_true",
                   help="with -e: copy the tree with hard links instead of an overlay, as piuparts does")
    g.add_argument("--list-backends", action="store_true",
                   help="list the backends, whether each can run here, and why not")
    p.add_argument("--cache-dir", default=str(opts.DEFAULT_CACHE_DIR),
                   help="where bases and instances live (default: %(default)s)")
    p.add_argument("--base-max-age", type=float, default=7.0, metavar="DAYS",
                   help="rebuild a cached base older than this (default: %(default)s)")
    p.add_argument("--lists-max-age", type=float, default=24.0, metavar="HOURS",
                   help="refresh the cached base's apt lists when older than this (default: %(default)s)")
    p.add_argument("--tmpfs-size", default="50%", metavar="SIZE",
                   help="size limit of the tmpfs that holds an instance's changes (default: %(default)s of memory)")
    p.add_argument("--no-tmpfs", action="store_true",
                   help="keep an instance's changes on disk under the cache directory (for very large packages)")
    p.add_argument("--max-command-runtime", type=float, default=1800.0, metavar="SECONDS",
                   help="time limit of each apt or dpkg step (default: %(default)s)")
    p.add_argument("--prompt-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="fail a step that waits this long for an answer on its terminal (default: %(default)s)")
    p.add_argument("-i", "--ignore", action="append", metavar="PATH", help="ignore this exact path (repeatable)")
    p.add_argument("-I", "--ignore-regex", action="append", metavar="REGEX",
                   help="ignore paths the anchored REGEX matches whole (repeatable)")
    p.add_argument("--no-ignores", action="store_true", help="do not use the default ignore lists")
    p.add_argument("--severity", action="append", metavar="CHECK=LEVEL",
                   help="make a check fail, warn or skip (repeatable); checks: " + ", ".join(Check.registry))
    for flag, meaning in opts.PIUPARTS_SEVERITY_OPTIONS.items():
        p.add_argument(*flag.split("|"), action="store_true",
                       help="as in piuparts: " + ", ".join(f"{c}={lvl}" for c, lvl in meaning))
    p.add_argument("--json", metavar="FILE", help="write the result as JSON to FILE")
    p.add_argument("--junit", metavar="FILE", help="write the result as JUnit XML to FILE (GitLab, Jenkins)")
    p.add_argument("-l", "--log-file", metavar="FILE", help="also write the log to FILE")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug output: command output, ignore rules")
    p.add_argument("--version", action="version", version=f"piuparts-ng {__version__}")
    return p


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
    temporaries = prune.reap_temporaries(cache)
    if temporaries:
        log.info("Removed %d temporary file%s of killed runs", len(temporaries), "" if len(temporaries) == 1 else "s")
    if args.prune:
        pruned = prune.prune(cache, max_size, args.max_age)
        log.info("Pruned %d item%s", len(pruned), "" if len(pruned) == 1 else "s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``piuparts`` command; returns the exit code."""
    owns_process = argv is None  # the command itself, not a caller in the same process
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _main(argv)
    finally:
        # A signal that comes once everything is done and said ends the
        # process the default way, not with a traceback from its teardown.
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if owns_process:
            signal.signal(signal.SIGINT, signal.SIG_DFL)


def _main(argv: list[str]) -> int:
    json_path: Path | None = None
    try:
        if argv[:1] == ["cleanup"]:
            return cleanup(argv[1:])
        if argv[:1] == ["batch"]:
            return batch_cli.main(argv[1:])
        if argv[:1] == ["worker"]:
            return _worker(argv[1:])
        if argv[:1] and argv[0] in Backend.subcommands:
            return Backend.subcommands[argv[0]](argv[1:])
        args = parser().parse_args(argv)
        if args.list_backends:
            print(list_backends())
            return 0
        logsetup.setup(args.verbose, logfile=args.log_file)
        json_path = Path(args.json) if args.json else None
        config = opts.from_args(args)
        subject = api.Subject.from_args(args.packages, args.apt)
        with api.Session(config) as session:
            result = session.test(subject)
        return _report(result, json_path, args.junit)
    except PiupartsError as err:
        return _error(str(err), err.exit_code, json_path)
    except KeyboardInterrupt:
        return _error("interrupted", 130, json_path)
    except Interrupted as err:
        return _error(str(err), err.exit_code, json_path)
    except Exception as err:  # a bug of ours: one line, the traceback with -v
        log.debug("internal error", exc_info=True)
        return _error(f"internal error: {type(err).__name__}: {err} (run with -v for the traceback "
                      "and report it)", api.KINDS["internal"], json_path)


def _worker(argv: list[str]) -> int:
    """``piuparts worker``: Celery is imported only here (and by ``--executor celery``)."""
    from piuparts.celery import worker
    return worker.main(argv)


def _report(result: api.RunResult, json_path: Path | None, junit: str | None) -> int:
    """The summary, the JSON and JUnit reports; the exit code of the verdict."""
    if json_path:
        json_report.write(json_path, result.to_json())
    if result.error is not None:
        hint = " (run with -v for the traceback and report it)" if result.kind == "internal" else ""
        return _error(result.error + hint, result.exit_code, None)
    scenarios = result.scenario_results()
    print(text_report.summary(scenarios, result.subject["label"]), flush=True)
    if junit:
        junit_report.write(Path(junit), scenarios, result.subject["packages"], f"piuparts {result.subject['label']}")
    return result.exit_code


def _error(message: str, code: int, json_path: Path | None) -> int:
    print(f"piuparts: error: {message}", file=sys.stderr, flush=True)
    if json_path:
        try:
            json_report.write(json_path, {"verdict": "ERROR", "exit_code": code, "error": message})
        except OSError:
            pass
    return code
