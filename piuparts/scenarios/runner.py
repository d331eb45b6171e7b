"""The operations every scenario is made of: install, remove, purge, with
the checks looking on at fixed points.

A scenario is a short sequence of these calls; each call is one step of
the report, and returns False once the step failed (the scenario then
stops: the instance is thrown away anyway).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from piuparts.checks import Context, make_checks
from piuparts.checks.purge_status import installed_packages
from piuparts.chroot import Chroot
from piuparts.command import Result, failure_message
from piuparts.errors import TestbedError, UsageError
from piuparts import debcache, hooks
from piuparts.findings import FAIL, Finding
from piuparts.hooks import Hooks
from piuparts.inputs import TestSubject
from piuparts.scenarios import ScenarioResult, Step, TreeWatcher
from piuparts.state import Diff, Ignores

log = logging.getLogger("piuparts")

DEBS_DIR = "/tmp/piuparts-debs"
APT = ("eatmydata", "apt-get", "-y")

_FETCH_FAILED = re.compile(r"^(E|W): (Failed to fetch|Unable to fetch|Some index files failed)|"
                           r"Temporary failure resolving|Could not connect to|Unable to connect to", re.M)
_NO_SUCH_PACKAGE = re.compile(r"^E: (Unable to locate package (?P<a>\S+)|Package '(?P<b>[^']+)' has no "
                              r"installation candidate|Version '[^']+' for '(?P<c>[^']+)' was not found)", re.M)
_UNMET = re.compile(r"unmet dependencies", re.I)
_SIMULATED_INSTALL = re.compile(r"^Inst (\S+)", re.M)
_CONFFILE_PROMPT = re.compile(r"^Configuration file '([^']+)'", re.M)
# dpkg's reason line: " installed foo package post-installation script subprocess returned error exit status 1"
_DPKG_REASONS = (re.compile(r"^ .*\bscript subprocess .*$", re.M), re.compile(r"^dpkg: error processing .*$", re.M))


@dataclass(frozen=True)
class Settings:
    """What scenarios need beyond the chroot and the subject."""

    ignores: Ignores
    timeout: float = 1800.0
    #: Check name -> "fail", "warn" or "skip"; unnamed checks keep their default.
    severities: dict[str, str] = field(default_factory=dict)
    install_remove_install: bool = False
    install_purge_install: bool = False
    hooks: Hooks | None = None
    #: A step that waits this long for an answer on its terminal fails.
    prompt_timeout: float = 60.0
    #: The .deb cache shared by every run (see piuparts.debcache), if any.
    deb_cache: Path | None = None


def explain_failure(result: Result, what: str) -> str:
    """The most telling line of a failed apt/dpkg run."""
    prompt = _CONFFILE_PROMPT.search(result.output)
    if prompt:
        return f"{what} failed: dpkg asked about the conffile {prompt[1]} (a conffile prompt)"
    for reason in _DPKG_REASONS:
        match = reason.search(result.output)
        if match:
            return f"{what} failed: {match[0].strip()}"
    return failure_message(result, what)


def classify_install_failure(result: Result, subject: TestSubject, what: str) -> str:
    """Raise for what is not the package's fault; return the message otherwise."""
    if "No space left on device" in result.output:
        raise TestbedError(f"{what}: the instance ran out of space ({result.tail(1).strip()}); "
                           "give it more with --tmpfs-size or keep it on disk with --no-tmpfs")
    if _FETCH_FAILED.search(result.output):
        raise TestbedError(f"downloading packages failed (mirror or network): {result.tail(1).strip()}")
    missing = _NO_SUCH_PACKAGE.search(result.output)
    if missing and subject.apt_names:
        name = missing["a"] or missing["b"] or missing["c"]
        raise UsageError(f"--apt {name}: no repository in the chroot's apt sources has this package; "
                         "check the name, the distribution (-d) and the mirror (-m)")
    if _UNMET.search(result.output):
        return f"{what} failed: the dependencies cannot be installed (unmet dependencies): " + \
            "; ".join(line.strip() for line in result.output.splitlines() if "Depends:" in line)[:500]
    return explain_failure(result, what)


class Runner:
    """One scenario's steps over one chroot, and its result."""

    def __init__(self, name: str, chroot: Chroot, subject: TestSubject, settings: Settings,
                 test: str = "install") -> None:
        self.outcome = ScenarioResult(name)
        self.chroot = chroot
        self.subject = subject
        self.settings = settings
        self.checks = make_checks(settings.severities)
        self.ctx = Context(chroot, subject.packages, settings.ignores, tuple(subject.packages),
                           timings=self.outcome.timings, compare=self._compare)
        self.watcher = TreeWatcher(chroot, settings.ignores)
        self._diffs: dict[tuple[int, int], Diff] = {}
        #: PIUPARTS_TEST and PIUPARTS_PHASE for the hook scripts.
        self.test, self.phase = test, "install"

    def snapshot(self, name: str) -> None:
        """Take the tree snapshot ``name`` for the checks."""
        start = time.monotonic()
        self.ctx.snapshots[name] = self.watcher.take()
        self.outcome.timed("snapshot", start)

    def _compare(self, before: Any, after: Any) -> Diff:
        key = (id(before), id(after))
        if key not in self._diffs:
            start = time.monotonic()
            self._diffs[key] = self.watcher.compare(before, after)
            self.outcome.timed("diff", start)
        return self._diffs[key]

    def run_scripts(self, step: Step, argv: Sequence[str]) -> Result:
        """Run an apt or dpkg command that runs maintainer scripts, as part of
        ``step``: under a terminal that catches prompts, within the time limit
        (with --no-network, after downloading what it unpacks)."""
        fetch = debcache.download_argv(self.chroot, argv)
        if fetch is not None:
            fetched = self.outcome.run(step, self.chroot, fetch, timeout=self.settings.timeout, network=True)
            if not fetched.ok:
                return fetched
        return self.outcome.run(step, self.chroot, argv, timeout=self.settings.timeout, terminal=True,
                                prompt_timeout=self.settings.prompt_timeout)

    def hook(self, phase: str) -> bool:
        """Run the ``phase`` hook scripts; a failing one fails the scenario."""
        if self.settings.hooks is None:
            return True
        results = self.settings.hooks.run(self.chroot, phase, PIUPARTS_TEST=self.test, PIUPARTS_PHASE=self.phase)
        for (name, _), line in zip([r for r in results if not r[1].ok], hooks.failures(results)):
            self.outcome.findings.append(Finding("hooks", FAIL, name, line, blame=self.ctx.blame))
            log.error("%s", line)
        return all(result.ok for _, result in results)

    def start(self) -> bool:
        """pre_test and pre_install hooks, then the checks record the system."""
        log.info("Scenario %s: %s", self.outcome.name, self.subject.label)
        if not (self.hook("pre_test") and self.hook("pre_install")):
            return False
        self.snapshot("before")
        for check in self.checks:
            check.before_install(self.ctx)
        self.ctx.installed_before = installed_packages(self.chroot)
        return True

    def observe(self, point: str) -> None:
        """Collect the checks' findings at ``point`` (after_install, after_remove, after_purge)."""
        for check in self.checks:
            findings = getattr(check, point)(self.ctx)
            if check.claims_paths:
                self.ctx.claimed.update(f.subject for f in findings)
            self.outcome.findings += findings

    def install(self, step_name: str, targets: Sequence[str], first: bool = True) -> bool:
        """``apt-get install`` of ``targets`` (paths inside or NAME[=VERSION]),
        with the pre_install hooks (unless ``first``: start() ran them) and
        the post_install hooks."""
        if not first and not self.hook("pre_install"):
            return False
        if first and not self._install_dependencies(targets):
            return False
        step = self.outcome.step(step_name)
        result = self.run_scripts(step, [*APT, "install", *targets])
        self._keep_debs()
        if not result.ok:
            return self._fail(step_name, classify_install_failure(result, self.subject, step_name))
        self.ctx.installed = installed_packages(self.chroot)
        new = set(self.ctx.installed) - set(self.ctx.installed_before)
        self.ctx.pulled_in = sorted(new | set(self.ctx.pulled_in))
        log.info("Installed %d packages: %s", len(new), " ".join(sorted(new)))
        return self.hook("post_install")

    def _install_dependencies(self, targets: Sequence[str]) -> bool:
        """Install what ``targets`` need in a step of their own, then snapshot.

        What the tested packages' own scripts do is then told apart from
        what their dependencies' scripts do (see the leftovers checks).
        """
        simulated = self.chroot.run([*APT, "install", "--simulate", *targets], level=logging.DEBUG)
        needed = [name for name in _SIMULATED_INSTALL.findall(simulated.output)
                  if name.split(":", 1)[0] not in self.subject.packages]
        if self.settings.deb_cache is not None and (needed or self.subject.apt_names):
            debcache.fill(self.chroot, self.settings.deb_cache, APT, targets)  # else nothing to download
        if simulated.ok and needed:
            step = self.outcome.step("install dependencies")
            result = self.run_scripts(step, [*APT, "install", *needed])
            self._keep_debs()
            if not result.ok:
                return self._fail(step.name, classify_install_failure(result, self.subject, step.name))
            self.ctx.dependencies = sorted(set(installed_packages(self.chroot)) - set(self.ctx.installed_before))
            self.snapshot("dependencies")
        else:
            self.ctx.snapshots["dependencies"] = self.ctx.snapshots["before"]
        return True

    def install_debs(self, step_name: str, first: bool = True) -> bool:
        """Install the tested .debs and --apt names (copied in for the purpose)."""
        targets = [self.chroot.copy_in(deb.path, DEBS_DIR) for deb in self.subject.debs]
        return self.install(step_name, targets + list(self.subject.apt_names), first)

    def remove(self, step_name: str = "remove") -> bool:
        """``apt-get remove`` of the tested packages, between the pre_remove and post_remove hooks."""
        if not self.hook("pre_remove"):
            return False
        step = self.outcome.step(step_name)
        result = self.run_scripts(step, [*APT, "remove", *self.subject.packages])
        if not result.ok:
            return self._fail(step_name, explain_failure(result, step_name))
        return self.hook("post_remove")

    def purge(self, step_name: str = "purge") -> bool:
        """Purge the tested packages (dpkg: a removed local .deb has no apt
        candidate), then everything the installs pulled in (apt)."""
        step = self.outcome.step(step_name)
        result = self.run_scripts(step, ["eatmydata", "dpkg", "--purge", *self.subject.packages])
        if not result.ok:
            return self._fail(step_name, explain_failure(result, step_name))
        self.snapshot("tested purged")
        dependencies = [p for p in self.ctx.pulled_in if p.split(":", 1)[0] not in self.subject.packages]
        if dependencies:
            result = self.run_scripts(step, [*APT, "purge", *dependencies])
            if not result.ok:
                return self._fail(step_name, explain_failure(result, step_name))
        return self.hook("post_purge")

    def remove_and_purge(self) -> ScenarioResult:
        """The end every scenario shares: remove, purge, the checks' last look."""
        if self.remove():
            self.observe("after_remove")
            if self.purge():
                self.finish()
        return self.outcome

    def finish(self) -> ScenarioResult:
        """The post_test hooks, then the checks' last look; the scenario's result."""
        self.chroot.remove_tree(DEBS_DIR)
        if self.hook("post_test"):
            self.snapshot("after")
            self.observe("after_purge")
            timings = self.outcome.timings
            log.info("Snapshots took %.3f s, the diffs %.3f s", timings["snapshot"], timings.get("diff", 0.0))
        return self.outcome

    def _keep_debs(self) -> None:
        if self.settings.deb_cache is not None:
            debcache.keep(self.chroot, self.settings.deb_cache)

    def _fail(self, step_name: str, message: str) -> bool:
        step = self.outcome.steps[-1]
        step.ok, step.message = False, message
        self.outcome.findings.append(Finding("steps", FAIL, step_name, message, blame=self.ctx.blame))
        log.error("%s", message)
        return False
