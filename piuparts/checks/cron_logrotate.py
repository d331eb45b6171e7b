"""Cron jobs and logrotate configs of the tested packages, run with the packages removed.

They are conffiles, so they stay after ``remove`` and keep being run by
cron and logrotate; they must cope with the package's programs being gone
(``[ -x /usr/bin/foo ] || exit 0``).  Which files a package ships is read
from dpkg's ``.list`` files after the install and kept, since the remove
may drop them.  After the remove, each file still there is exercised
inside the instance, each command with a time limit (:data:`TIME_LIMIT`):

* ``/etc/cron.{hourly,daily,weekly,monthly}/*``: executed directly, when
  run-parts would run them (executable, a name of letters, digits, ``_``
  and ``-``); a non-zero exit is a finding (run-parts reports it).
* ``/etc/cron.d/*``: each job's command runs with ``sh -c`` (or the file's
  ``SHELL``), with the file's variables, as the job's user (``runuser``);
  a finding when it exits non-zero *and* prints something, which cron
  would mail.  cron ignores the exit status itself, so the common
  ``test -x /usr/sbin/foo && foo`` that exits 1 silently is only logged.
* ``/etc/logrotate.d/*``: ``logrotate -f`` with a throwaway state file
  when logrotate was installed with the package (it is then installed
  again for the check, as piuparts does, and removed after it: the
  dependencies are gone by then); otherwise (it is not in a minbase, and
  installing it would change what the purge is compared with) the
  ``prerotate``/``postrotate``/``firstaction``/``lastaction``/``preremove``
  scripts are run the way logrotate runs them (``sh -c SCRIPT
  logrotate_script LOG``), which is where failures after a removal come
  from; the config's own directives (``missingok``) are not checked then.

piuparts' ``--skip-cronfiles-test`` and ``--skip-logrotatefiles-test``
together are ``--severity cron-logrotate=skip``.  Unlike piuparts, output
alone is not a finding: the test bed's policy-rc.d makes ``invoke-rc.d``
print refusals that a real system would not.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
from dataclasses import dataclass

from piuparts.checks.base import Check, Context
from piuparts import inroot
from piuparts.dpkgdb import INFO, Resolver, info_files, is_regular, read_inside, read_text, timed
from piuparts.chroot import Chroot
from piuparts.command import Result
from piuparts.findings import Finding

log = logging.getLogger("piuparts")

NAME = "cron-logrotate"
#: Seconds each cron job, script or logrotate run may take.
TIME_LIMIT = 60.0
CRON_D = "/etc/cron.d"
CRON_PERIODIC = ("/etc/cron.hourly", "/etc/cron.daily", "/etc/cron.weekly", "/etc/cron.monthly")
LOGROTATE_D = "/etc/logrotate.d"
LOGROTATE = "/usr/sbin/logrotate"
LOGROTATE_STATE = "/tmp/piuparts-ng-logrotate.state"
LOGROTATE_SCRIPTS = ("prerotate", "postrotate", "firstaction", "lastaction", "preremove")
#: Names run-parts runs (without --lsbsysinit, as cron calls it).
RUN_PARTS_NAME = re.compile(r"[A-Za-z0-9_-]+")
_ASSIGNMENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")
_SPECIAL = {"@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


@dataclass(frozen=True)
class CronJob:
    """One job of a cron.d file: its line number, user, command and the variables set above it."""

    line: int
    user: str
    command: str
    env: tuple[tuple[str, str], ...] = ()


def cron_command(text: str) -> str:
    """The command part of a crontab command: up to the first unescaped ``%`` (the rest is stdin)."""
    match = re.search(r"(?<!\\)%", text)
    command = text if match is None else text[: match.start()]
    return command.replace("\\%", "%").strip()


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def parse_cron_line(line: str) -> tuple[str, str] | None:
    """(user, command) of a system crontab line, or None for anything else."""
    words = line.split(None, 6 if not line.lstrip().startswith("@") else 2)
    if not words or words[0].startswith("#"):
        return None
    fields = 1 if words[0] in _SPECIAL else 5
    if words[0].startswith("@") and fields == 5 or len(words) < fields + 2:
        return None
    return words[fields], cron_command(words[fields + 1])


def parse_cron_d(text: str) -> list[CronJob]:
    """The jobs of a cron.d file, with the variable assignments that precede each."""
    jobs, env = [], []
    for number, line in enumerate(text.splitlines(), 1):
        assignment = _ASSIGNMENT.fullmatch(line)
        if assignment and not line.lstrip().startswith("#"):
            env.append((assignment[1], _unquote(assignment[2])))
        elif (job := parse_cron_line(line)) is not None and job[1]:
            jobs.append(CronJob(number, job[0], job[1], tuple(env)))
    return jobs


def cron_argv(job: CronJob) -> list[str]:
    """The argv that runs ``job`` inside the chroot as cron would (less the schedule)."""
    shell = dict(job.env).get("SHELL", "/bin/sh")
    argv = [shell, "-c", job.command]
    if job.env:
        argv = ["env", *(f"{name}={value}" for name, value in job.env), *argv]
    return argv if job.user == "root" else ["runuser", "-u", job.user, "--", *argv]


def _first_log_path(lines: list[str]) -> str:
    """The first absolute path among the words before a block's ``{`` (quotes dropped)."""
    paths = [word.strip("'\"") for line in lines for word in line.split()]
    return next((path for path in paths if path.startswith("/")), "")


def parse_logrotate_scripts(text: str) -> list[tuple[str, str, str]]:
    """(directive, first log path of its block, script) of every script of a logrotate config."""
    scripts: list[tuple[str, str, str]] = []
    pending: list[str] = []
    body: list[str] = []
    log_path, directive = "", ""
    for line in text.splitlines():
        word = line.strip()
        if directive:
            if word == "endscript":
                scripts.append((directive, log_path, "\n".join(body)))
                directive = ""
            else:
                body.append(line)
        elif word in LOGROTATE_SCRIPTS:
            directive, body = word, []
        elif "{" in word:
            log_path, pending = _first_log_path([*pending, word.split("{", 1)[0]]), []
        elif word and not word.startswith("#") and "}" not in word:
            pending.append(word)
    return scripts


def shipped_files(chroot: Chroot, packages: list[str]) -> dict[str, str]:
    """Cron and logrotate files the packages ship (path -> package), from dpkg's .list files."""
    watched = {CRON_D, LOGROTATE_D, *CRON_PERIODIC}
    found = {}
    for package, listing in info_files(inroot.host_path(chroot.root, INFO), "list", packages).items():
        for path in read_text(listing).splitlines():
            if posixpath.dirname(path) in watched:
                found[path] = package
    return found


def outcome(result: Result) -> str:
    """``exited 127: LAST LINE`` or ``did not finish within 60 s``."""
    how = f"did not finish within {result.timeout:g} s" if result.timed_out else f"exited {result.returncode}"
    last = result.tail(1).strip()
    return f"{how} with the package removed" + (f": {last}" if last else "")


class CronLogrotate(Check, name=NAME):
    """Runs the tested packages' cron jobs and logrotate scripts with the packages removed."""

    def before_install(self, ctx: Context) -> None:
        self.files: dict[str, str] = {}

    def after_install(self, ctx: Context) -> list[Finding]:
        with timed(ctx.timings, NAME):
            self.files = shipped_files(ctx.chroot, ctx.packages)
        return []

    def after_remove(self, ctx: Context) -> list[Finding]:
        with timed(ctx.timings, NAME):
            resolver = Resolver(ctx.chroot.root)
            present = [(path, package) for path, package in sorted(self.files.items())
                       if is_regular(resolver, path)]  # else not a conffile: removed with the package
            back = self._logrotate_back(ctx, resolver, present)
            try:
                return [finding for path, package in present for finding in self._exercise(ctx, resolver, path, package)]
            finally:
                if back:
                    ctx.chroot.run(["dpkg", "--remove", *back], timeout=TIME_LIMIT * 5, level=logging.DEBUG)

    def _logrotate_back(self, ctx: Context, resolver: Resolver, present: list[tuple[str, str]]) -> list[str]:
        """When logrotate came with the package and went with its dependencies,
        install it again for the check; return what that installed."""
        if not any(posixpath.dirname(path) == LOGROTATE_D for path, _ in present) \
                or "logrotate" not in ctx.installed or is_regular(resolver, LOGROTATE):
            return []
        from piuparts import debcache
        from piuparts.dpkgdb import installed_versions
        apt = ("apt-get", "-y")
        before = installed_versions(ctx.chroot)
        if ctx.deb_cache is not None:
            debcache.fill(ctx.chroot, ctx.deb_cache, apt, ["logrotate"])
        result = ctx.chroot.run([*apt, "install", "logrotate"], timeout=TIME_LIMIT * 5)
        added = sorted(name for name, (_, status) in installed_versions(ctx.chroot).items()
                       if status.startswith("ii") and not before.get(name, ("", ""))[1].startswith("ii"))
        if not result.ok:
            log.info("logrotate could not be installed again for the check: %s", result.tail(1).strip())
        return added

    def _exercise(self, ctx: Context, resolver: Resolver, path: str, package: str) -> list[Finding]:
        directory = posixpath.dirname(path)
        if directory == CRON_D:
            return self._cron_d(ctx, resolver, path, package)
        if directory == LOGROTATE_D:
            return self._logrotate(ctx, resolver, path, package)
        return self._periodic(ctx, resolver, path, package)

    def _failed(self, path: str, package: str, what: str, result: Result) -> Finding:
        return self.finding(path, f"{what} {outcome(result)}", (package,), (package,))

    def _periodic(self, ctx: Context, resolver: Resolver, path: str, package: str) -> list[Finding]:
        host = resolver.host(path)
        assert host is not None
        if not RUN_PARTS_NAME.fullmatch(posixpath.basename(path)) or not os.lstat(host).st_mode & 0o111:
            log.info("%s: run-parts would not run it (name or mode), not run", path)
            return []
        result = ctx.chroot.run([path], timeout=TIME_LIMIT)
        what = posixpath.basename(posixpath.dirname(path)) + " script"
        return [] if result.ok else [self._failed(path, package, what, result)]

    def _cron_d(self, ctx: Context, resolver: Resolver, path: str, package: str) -> list[Finding]:
        findings = []
        for job in parse_cron_d(read_inside(resolver, path)):
            result = ctx.chroot.run(cron_argv(job), timeout=TIME_LIMIT)
            if result.ok:
                continue
            if result.output.strip() or result.timed_out:
                findings.append(self._failed(path, package, f"line {job.line} ({job.user})", result))
            else:
                log.info("%s line %d exited %d without output (cron ignores the exit status)",
                         path, job.line, result.returncode)
        return findings

    def _logrotate(self, ctx: Context, resolver: Resolver, path: str, package: str) -> list[Finding]:
        logrotate = resolver.host(LOGROTATE)
        if logrotate is not None and is_regular(resolver, LOGROTATE) and os.access(logrotate, os.X_OK):
            result = ctx.chroot.run([LOGROTATE, "-f", "-s", LOGROTATE_STATE, path], timeout=TIME_LIMIT)
            _remove(resolver, LOGROTATE_STATE)
            return [] if result.ok else [self._failed(path, package, "logrotate -f", result)]
        log.info("%s: logrotate is not installed; running its scripts with sh -c", path)
        findings = []
        for directive, log_path, script in parse_logrotate_scripts(read_inside(resolver, path)):
            result = ctx.chroot.run(["sh", "-c", script, "logrotate_script", log_path], timeout=TIME_LIMIT)
            if not result.ok:
                findings.append(self._failed(path, package, f"{directive} script", result))
        return findings


def _remove(resolver: Resolver, path: str) -> None:
    """Delete the regular file at ``path`` inside the root, if there is one."""
    host = resolver.host(path)
    if host is not None and is_regular(resolver, path):
        os.unlink(host)
