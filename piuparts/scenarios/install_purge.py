"""install -> remove -> purge, then compare the system with how it was before.

The tested .debs are installed through apt, so their dependencies come
from the archive; removal and purge take the tested packages and every
package the install pulled in, and anything left, removed or changed is
a finding.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass, field

from piuparts.checks import Check, Context, make_checks
from piuparts.checks.purge_status import installed_packages
from piuparts.chroot import Chroot
from piuparts.command import Result, failure_message
from piuparts.errors import TestbedError, UsageError
from piuparts.findings import FAIL, Finding
from piuparts.inputs import TestSubject
from piuparts.scenarios import ScenarioResult, Step
from piuparts.state import Ignores

log = logging.getLogger("piuparts")

NAME = "install-purge"
DEBS_DIR = "/tmp/piuparts-debs"

_FETCH_FAILED = re.compile(r"^(E|W): (Failed to fetch|Unable to fetch|Some index files failed)|"
                           r"Temporary failure resolving|Could not connect to|Unable to connect to", re.M)
_NO_SUCH_PACKAGE = re.compile(r"^E: (Unable to locate package (?P<a>\S+)|Package '(?P<b>[^']+)' has no "
                              r"installation candidate|Version '[^']+' for '(?P<c>[^']+)' was not found)", re.M)
_UNMET = re.compile(r"unmet dependencies", re.I)
# dpkg's reason line: " installed foo package post-installation script subprocess returned error exit status 1"
_DPKG_REASONS = (re.compile(r"^ .*\bscript subprocess .*$", re.M), re.compile(r"^dpkg: error processing .*$", re.M))


@dataclass(frozen=True)
class Settings:
    """What the scenario needs beyond the chroot and the subject."""

    ignores: Ignores
    timeout: float = 1800.0
    #: Check name -> "fail", "warn" or "skip"; unnamed checks keep their default.
    severities: dict[str, str] = field(default_factory=dict)


def explain_failure(result: Result, what: str) -> str:
    """The most telling line of a failed apt/dpkg run."""
    for reason in _DPKG_REASONS:
        match = reason.search(result.output)
        if match:
            return f"{what} failed: {match[0].strip()}"
    return failure_message(result, what)


def classify_install_failure(result: Result, subject: TestSubject) -> str:
    """Raise for what is not the package's fault; return the message otherwise."""
    if _FETCH_FAILED.search(result.output):
        raise TestbedError(f"downloading packages failed (mirror or network): {result.tail(1).strip()}")
    missing = _NO_SUCH_PACKAGE.search(result.output)
    if missing and subject.apt_names:
        name = missing["a"] or missing["b"] or missing["c"]
        raise UsageError(f"--apt {name}: no repository in the chroot's apt sources has this package; "
                         "check the name, the distribution (-d) and the mirror (-m)")
    if _UNMET.search(result.output):
        return "install failed: the dependencies cannot be installed (unmet dependencies): " + \
            "; ".join(line.strip() for line in result.output.splitlines() if "Depends:" in line)[:500]
    return explain_failure(result, "install")


def _fail(outcome: ScenarioResult, step: Step, message: str, blame: str) -> ScenarioResult:
    step.ok, step.message = False, message
    outcome.findings.append(Finding("steps", FAIL, step.name, message, blame=blame))
    log.error("%s", message)
    return outcome


def _observe(outcome: ScenarioResult, checks: list[Check], point: str, ctx: Context) -> None:
    for check in checks:
        outcome.findings += getattr(check, point)(ctx)


def run(chroot: Chroot, subject: TestSubject, settings: Settings) -> ScenarioResult:
    """Install, remove and purge ``subject`` in ``chroot``; report what changed."""
    outcome = ScenarioResult(NAME)
    checks = make_checks(settings.severities)
    ctx = Context(chroot, subject.packages, settings.ignores, ", ".join(subject.packages), timings=outcome.timings)
    apt = ["eatmydata", "apt-get", "-y"]

    log.info("Scenario %s: %s", NAME, subject.label)
    for check in checks:
        check.before_install(ctx)
    ctx.installed_before = installed_packages(chroot)

    step = outcome.step("install")
    targets = [chroot.copy_in(deb.path, DEBS_DIR) for deb in subject.debs] + list(subject.apt_names)
    result = outcome.run(step, chroot, [*apt, "install", *targets], timeout=settings.timeout)
    if not result.ok:
        return _fail(outcome, step, classify_install_failure(result, subject), ctx.blame)
    ctx.installed = installed_packages(chroot)
    ctx.pulled_in = sorted(set(ctx.installed) - set(ctx.installed_before))
    log.info("Installed %d packages: %s", len(ctx.pulled_in), " ".join(ctx.pulled_in))
    _observe(outcome, checks, "after_install", ctx)

    step = outcome.step("remove")
    result = outcome.run(step, chroot, [*apt, "remove", *subject.packages], timeout=settings.timeout)
    if not result.ok:
        return _fail(outcome, step, explain_failure(result, "remove"), ctx.blame)
    _observe(outcome, checks, "after_remove", ctx)

    # The tested packages first (a removed local .deb has no apt candidate
    # left, so dpkg purges it), then what they pulled in, through apt.
    step = outcome.step("purge")
    commands = [["eatmydata", "dpkg", "--purge", *subject.packages]]
    dependencies = [p for p in ctx.pulled_in if p.split(":", 1)[0] not in subject.packages]
    if dependencies:
        commands.append([*apt, "purge", *dependencies])
    for argv in commands:
        result = outcome.run(step, chroot, argv, timeout=settings.timeout)
        if not result.ok:
            return _fail(outcome, step, explain_failure(result, "purge"), ctx.blame)
    shutil.rmtree(chroot.path(DEBS_DIR), ignore_errors=True)
    _observe(outcome, checks, "after_purge", ctx)
    return outcome
