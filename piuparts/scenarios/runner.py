"""The operations every scenario is made of: install, remove, purge, with
the checks looking on at fixed points.

A scenario is a short sequence of these calls; each call is one step of
the report, and returns False once the step failed (the scenario then
stops: the instance is thrown away anyway).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ContextManager, Sequence

from piuparts.backends import overlay
from piuparts.checks import Check, Context, make_checks
from piuparts.dpkgdb import installed_versions, native_architecture
from piuparts.chroot import APT, DEBS_DIR, Chroot
from piuparts.command import Result
from piuparts import aptplan, debcache, hooks
from piuparts.failures import classify_install_failure, explain_failure
from piuparts.findings import FAIL, WARN, Finding
from piuparts.hooks import Hooks
from piuparts.inputs import TestSubject
from piuparts.log import VIEW
from piuparts.scenarios import ScenarioResult, Snapshot, Step, TreeWatcher
from piuparts.state import Diff, Ignores

log = logging.getLogger("piuparts")



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
    #: piuparts' --warn-on-others: what is blamed on the dependencies alone
    #: (their leftovers, processes, alternatives...) warns instead of failing.
    warn_on_others: bool = False
    #: The instance's dependency layer holds every dependency of the subject
    #: but what needs the tested packages back (:func:`piuparts.layers.for_subject`
    #: keys it by content): the dependencies' step has nothing to install.
    layer_complete: bool = False
    #: With ``layer_complete``: apt's listing of what the test fetches over the layer, when
    #: known (:class:`piuparts.layers.Layered`); the .deb cache is filled from it.
    fetch: "list[debcache.Listed] | None" = None
    #: The upgrade scenario also upgrades to NAME=VERSION names (RunConfig.upgrade_named_versions).
    upgrade_named_versions: bool = False
    #: The run's own sources and --proxy: the .debs listed from them that the
    #: .deb cache lacks are downloaded into it by the harness (debcache.fetch).
    origins: "debcache.Origins | None" = None


#: The environment of the removals: sudo's prerm refuses to go without it
#: (it fears locking the administrator out; a throwaway instance has none).
REMOVE_ENV = {"SUDO_FORCE_REMOVE": "yes"}


def changed_packages(before: dict[str, tuple[str, str]], now: dict[str, tuple[str, str]],
                     tested: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(packages installed since ``before``, packages whose version changed
    since ``before``), leaving out the ``tested`` ones; maps are
    name -> (version, status) as :func:`installed_versions` gives them."""
    tested_names = set(tested)
    new, upgraded = [], []
    for name, (version, _) in sorted(now.items()):
        if name.split(":", 1)[0] in tested_names:
            continue
        if name not in before:
            new.append(name)
        elif before[name][0] != version:
            upgraded.append(name)
    return new, upgraded


def purge_order(pulled_in: Sequence[str], dependencies: Sequence[str],
                tested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(what goes with the tested packages, the dependencies), as removed
    and purged at the end: the tested packages and whatever came in with
    them (members of a dependency cycle), then what was installed before
    them (the dependencies' step, the layer).  Both groups are removed,
    then the dependencies purged, then the tested packages: a tested
    package's ``postrm purge`` runs with its dependencies gone, as in
    piuparts (Policy: it may rely on essential packages only)."""
    deps = set(dependencies)
    first = [name for name in tested if name not in deps]
    first += [name for name in pulled_in if name not in deps and name not in first
              and name.split(":", 1)[0] not in tested]
    return first, [name for name in pulled_in if name in deps and name.split(":", 1)[0] not in tested]


#: dpkg-query's view of what each package needs and provides.
_RELATIONS_FORMAT = "${binary:Package}\t${Package}\t${Pre-Depends}, ${Depends}\t${Provides}\n"


def relation_names(field: str) -> set[str]:
    """The package names a Depends-like field mentions (versions, architecture
    qualifiers and alternatives flattened)."""
    names = set()
    for part in field.replace("|", ",").split(","):
        words = part.split()
        if words:
            names.add(words[0].split(":", 1)[0])
    return names


def with_dependents(first: Sequence[str], rest: Sequence[str],
                    relations: dict[str, tuple[str, set[str], set[str]]]) -> tuple[list[str], list[str]]:
    """``first`` grown by the packages of ``rest`` that need one of it (its
    names or what it provides), until none does; and what is left of ``rest``.
    ``relations``: package -> (name without architecture, names it needs, names it provides).
    Removing ``first`` alone then breaks nothing that stays."""
    first, rest = list(first), list(rest)
    while True:
        gone = set()
        for name in first:
            plain, _, provides = relations.get(name, (name.split(":", 1)[0], set(), set()))
            gone |= {plain} | provides
        moving = [name for name in rest if relations.get(name, ("", set(), set()))[1] & gone]
        if not moving:
            return first, rest
        first += moving
        rest = [name for name in rest if name not in moving]


def tmpfs_used(chroot: Chroot) -> int | None:
    """Bytes the instance's changes take, when they live in a tmpfs of their own
    (the upper directory's parent is that mount); None otherwise."""
    if chroot.upper is None:
        return None
    try:
        mount = chroot.upper.parent
        if os.stat(mount).st_dev == os.stat(mount.parent).st_dev:
            return None  # on the cache's disk (--no-tmpfs), or a backend without one
        info = os.statvfs(mount)
    except OSError:
        return None
    return (info.f_blocks - info.f_bfree) * info.f_frsize


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
                           timings=self.outcome.timings, compare=self._compare, deb_cache=settings.deb_cache)
        self.watcher = TreeWatcher(chroot, settings.ignores)
        self._diffs: dict[tuple[int, int], Diff] = {}
        #: PIUPARTS_TEST and PIUPARTS_PHASE for the hook scripts.
        self.test, self.phase = test, "install"
        self._groups: tuple[list[str], list[str]] | None = None
        #: The .deb cache put in the instance all that the first install fetches (_install_dependencies).
        self._prefetched = False

    def snapshot(self, name: str, on_base: bool = False) -> None:
        """Take the tree snapshot ``name`` for the checks."""
        start = time.monotonic()
        self.ctx.snapshots[name] = self.watcher.take(on_base)
        self.outcome.timed("snapshot", start)

    def _compare(self, before: Snapshot, after: Snapshot) -> Diff:
        key = (id(before), id(after))
        if key not in self._diffs:
            start = time.monotonic()
            self._diffs[key] = self.watcher.compare(before, after)
            self.outcome.timed("diff", start)
        return self._diffs[key]

    def run_scripts(self, step: Step, argv: Sequence[str], env: dict[str, str] | None = None,
                    prefetched: bool = False) -> Result:
        """Run an apt or dpkg command that runs maintainer scripts, as part of
        ``step``: under a terminal that catches prompts, within the time limit
        (with --no-network, after downloading what it unpacks, unless
        ``prefetched``: the .deb cache put all of it in the instance; should
        apt want more after all, it stops before unpacking anything, and the
        download and the command are run again)."""
        fetch = debcache.download_argv(self.chroot, argv)
        if fetch is not None and not prefetched:
            fetched = self.outcome.run(step, self.chroot, fetch, timeout=self.settings.timeout, network=True)
            if not fetched.ok:
                return fetched
        result = self.outcome.run(step, self.chroot, argv, timeout=self.settings.timeout, terminal=True,
                                  prompt_timeout=self.settings.prompt_timeout, env=env)
        if fetch is not None and prefetched and not result.ok and debcache.NOT_FETCHED.search(result.output):
            log.info("apt wanted more than the .deb cache gave; downloading it")
            return self.run_scripts(step, argv, env)
        return result

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
        """The checks record the system, then the pre_test and pre_install hooks run.

        The record comes first, as piuparts takes its reference state
        before any hook of the test: a hook that undoes at post_install or
        post_purge what it did at pre_install (piuparts'
        scripts-log-alternatives divert update-alternatives and back)
        leaves no finding, and what a hook installs is purged with the
        dependencies.  With dependency layers, the system before the test
        is the base without them: what the checks record is read in a view
        of the instance over the base alone, and the tree snapshot is seen so.
        """
        log.info("Scenario %s: %s", self.outcome.name, self.subject.label, extra={VIEW: ("scenario", self.outcome)})
        self.snapshot("before", on_base=True)
        with self._before_view() as view:
            ctx = self.ctx if view is self.chroot else replace(self.ctx, chroot=view)
            for check in self.checks:
                check.before_install(ctx)
            self.ctx.installed_before = installed_versions(view)
        return self.hook("pre_test") and self.hook("pre_install")

    def _before_view(self) -> ContextManager[Chroot]:
        if self.chroot.layers and self.chroot.upper is not None:
            return overlay.base_view(self.chroot)
        return contextlib.nullcontext(self.chroot)

    def observe(self, point: str, checks: Sequence[Check] | None = None) -> None:
        """Collect the checks' findings at ``point`` (after_install, after_remove, after_purge)."""
        start, known = time.monotonic(), len(self.outcome.findings)
        used = tmpfs_used(self.chroot)
        if used is not None:
            self.outcome.space_used[point] = max(used, self.outcome.space_used.get(point, 0))
        for check in self.checks if checks is None else checks:
            findings = getattr(check, point)(self.ctx)
            if check.claims_paths:
                self.ctx.claimed.update(f.subject for f in findings)
            self.outcome.findings += [self._others(f) for f in findings]
        seconds = time.monotonic() - start
        failed = sum(f.severity == FAIL for f in self.outcome.findings[known:])
        log.debug("The checks at %s took %.3f s", point, seconds, extra={VIEW: ("checks", point, seconds, failed)})

    def _others(self, finding: Finding) -> Finding:
        """``finding``, a warning when it is the dependencies' alone and --warn-on-others says so."""
        if not (self.settings.warn_on_others and finding.severity == FAIL and finding.blame):
            return finding
        if set(finding.blame) <= set(self.ctx.dependencies) - set(self.ctx.blame):
            return replace(finding, severity=WARN)
        return finding

    def install(self, step_name: str, targets: Sequence[str], first: bool = True) -> bool:
        """``apt-get install`` of ``targets`` (paths inside or NAME[=VERSION]),
        with the pre_install hooks (unless ``first``: start() ran them) and
        the post_install hooks."""
        if not first and not self.hook("pre_install"):
            return False
        if first and not self._install_dependencies(targets):
            return False
        step = self.outcome.step(step_name)
        result = self.run_scripts(step, [*APT, "install", *targets], prefetched=first and self._prefetched)
        self._keep_debs()
        if not result.ok:
            return self._fail(step_name, classify_install_failure(result, self.subject, step_name, self.chroot))
        self.ctx.installed = installed_versions(self.chroot)
        new = set(self.ctx.installed) - set(self.ctx.installed_before)
        self.ctx.pulled_in = sorted(new | set(self.ctx.pulled_in))
        log.info("Installed %d packages: %s", len(new), " ".join(sorted(new)))
        return self.hook("post_install")

    def _install_dependencies(self, targets: Sequence[str]) -> bool:
        """Install what ``targets`` need in a step of their own, then snapshot.

        What the tested packages' own scripts do is then told apart from
        what their dependencies' scripts do (see the leftovers checks).
        The tested packages themselves are never part of it, nor what
        needs them back (a dependency cycle): those are installed with
        them, from the given .debs.
        """
        hooked = self.settings.hooks is not None and bool(self.settings.hooks.scripts)  # may change the sources
        complete = self.settings.layer_complete and bool(self.chroot.layers) and not hooked
        needed = [] if complete else self._needed(targets)
        if self.settings.deb_cache is not None and (needed or self.subject.apt_names or self.chroot.layers):
            filled = debcache.fill(self.chroot, self.settings.deb_cache, APT, targets,  # else nothing to download
                                   listing=self.settings.fetch if complete else None, origins=self.settings.origins)
            # Everything installing ``targets`` fetches is in the instance: the installs
            # of them and of what they need download nothing.
            self._prefetched = filled.complete
        if needed:
            step = self.outcome.step("install dependencies")
            result = self.run_scripts(step, [*APT, "install", *needed], prefetched=self._prefetched)
            self._keep_debs()
            if not result.ok:
                return self._fail(step.name, classify_install_failure(result, self.subject, step.name, self.chroot))
            self.snapshot("dependencies")
        else:
            self.ctx.snapshots["dependencies"] = Snapshot(self.ctx.snapshots["before"].state)  # over the layers
        new, upgraded = changed_packages(self.ctx.installed_before, installed_versions(self.chroot),
                                         self.subject.packages)
        self.ctx.dependencies, self.ctx.upgraded = new + upgraded, upgraded
        if upgraded:
            log.info("The dependencies upgrade %s", " ".join(upgraded))
        self.observe("after_dependencies")
        return True

    def _needed(self, targets: Sequence[str]) -> list[str]:
        """What installing ``targets`` pulls in that can be installed before
        them: not the tested packages, nor what needs them back."""
        native = native_architecture(self.chroot)
        resolved = aptplan.resolve(self.chroot, APT, targets, self.subject.packages, native)
        if not (resolved and resolved.items):
            return []
        return [item.split("=", 1)[0]
                for item in aptplan.without_cycles(self.chroot, APT, resolved.items, self.subject.packages, native)]

    def install_debs(self, step_name: str, first: bool = True) -> bool:
        """Install the tested .debs and --apt names (copied in for the purpose)."""
        targets = [self.chroot.copy_in(deb.path, DEBS_DIR) for deb in self.subject.debs]
        return self.install(step_name, targets + list(self.subject.apt_names), first)

    def remove(self, step_name: str = "remove") -> bool:
        """``apt-get remove`` of the tested packages, between the pre_remove
        and post_remove hooks (the middle of --install-remove-install)."""
        if not self.hook("pre_remove"):
            return False
        step = self.outcome.step(step_name)
        result = self.run_scripts(step, [*APT, "remove", *self.subject.packages], env=REMOVE_ENV)
        if not result.ok:
            return self._fail(step_name, explain_failure(result, step_name))
        return self.hook("post_remove")

    def purge(self, step_name: str = "purge") -> bool:
        """Purge the tested packages alone (the middle of --install-purge-install)."""
        step = self.outcome.step(step_name)
        result = self.run_scripts(step, ["eatmydata", "dpkg", "--purge", *self.subject.packages], env=REMOVE_ENV)
        if not result.ok:
            return self._fail(step_name, explain_failure(result, step_name))
        return self.hook("post_purge")

    def remove_all(self) -> bool:
        """Remove the tested packages (with what came in with them), then
        every dependency they pulled in (layer packages too), between the
        pre_remove and post_remove hooks."""
        if not self.hook("pre_remove"):
            return False
        tested, dependencies = self._removal_groups()
        step = self.outcome.step("remove")
        if not self._dpkg(step, "--remove", tested, self.ctx.blame):
            return False
        self.snapshot("removed")
        if dependencies and not self._dpkg(step, "--remove", dependencies, tuple(dependencies)):
            return False
        return self.hook("post_remove")

    def purge_all(self) -> bool:
        """Purge the dependencies, then the tested packages; bring what the
        dependencies upgraded back to the version before the test; the
        post_purge hooks."""
        tested, dependencies = self._removal_groups()
        step = self.outcome.step("purge")
        if dependencies and not self._dpkg(step, "--purge", dependencies, tuple(dependencies)):
            return False
        self._downgrade(step)
        self.snapshot("dependencies purged")
        if not self._dpkg(step, "--purge", tested, self.ctx.blame):
            return False
        return self.hook("post_purge")

    def _removal_groups(self) -> tuple[list[str], list[str]]:
        """(the tested packages with what needs them, the dependencies), as
        :func:`purge_order` and :func:`with_dependents` make them (read once)."""
        if self._groups is None:
            tested, dependencies = purge_order(self.ctx.pulled_in, self.ctx.dependencies, self.subject.packages)
            listing = self.chroot.run(["dpkg-query", "-W", "-f", _RELATIONS_FORMAT], level=logging.DEBUG)
            relations = {}
            for line in listing.output.splitlines():
                fields = line.split("\t")
                if len(fields) == 4:
                    relations[fields[0]] = (fields[1], relation_names(fields[2]), relation_names(fields[3]))
            self._groups = with_dependents(tested, dependencies, relations)
        return self._groups

    def _dpkg(self, step: Step, action: str, packages: Sequence[str], blame: tuple[str, ...]) -> bool:
        """One ``dpkg --remove`` or ``--purge`` over ``packages`` (dpkg orders
        them); a failure is blamed on ``blame``."""
        result = self.run_scripts(step, ["eatmydata", "dpkg", action, *packages], env=REMOVE_ENV)
        if result.ok:
            return True
        return self._fail(step.name, explain_failure(result, step.name), blame)

    def _downgrade(self, step: Step) -> None:
        """Reinstall the versions the dependencies' step upgraded, as piuparts does."""
        versions = [f"{name}={self.ctx.installed_before[name][0]}" for name in self.ctx.upgraded]
        if not versions:
            return
        result = self.run_scripts(step, [*APT, "install", "--allow-downgrades", *versions])
        if not result.ok:  # the archive no longer has them: their files show as the dependencies' changes
            log.info("Could not bring back %s: %s", " ".join(versions), result.tail(1).strip())

    def remove_and_purge(self) -> ScenarioResult:
        """The end every scenario shares, in piuparts' order: remove
        everything, run the checks of a removed package (cron, logrotate),
        purge the dependencies, purge the tested packages, the checks' last
        look at the system compared with how it was before the test."""
        if self.remove_all():
            self.observe("after_remove")
            if self.purge_all():
                self.finish()
        return self.outcome

    def finish(self) -> ScenarioResult:
        """The post_test hooks, then the checks' last look; the scenario's result.

        The checks that settle the system (the processes check ends what
        was left running) look first, so that the last snapshot is of a
        system nothing changes any more."""
        self.chroot.remove_tree(DEBS_DIR)
        if self.hook("post_test"):
            settling = [check for check in self.checks if check.settles]
            self.observe("after_purge", settling)
            self.snapshot("after")
            self.observe("after_purge", [check for check in self.checks if not check.settles])
            timings = self.outcome.timings
            log.info("Snapshots took %.3f s, the diffs %.3f s", timings["snapshot"], timings.get("diff", 0.0))
        return self.outcome

    def _keep_debs(self) -> None:
        if self.settings.deb_cache is not None:
            debcache.keep(self.chroot, self.settings.deb_cache)

    def _fail(self, step_name: str, message: str, blame: tuple[str, ...] | None = None) -> bool:
        step = self.outcome.steps[-1]
        step.ok, step.message = False, message
        self.outcome.findings.append(self._others(Finding("steps", FAIL, step_name, message,
                                                          blame=self.ctx.blame if blame is None else blame)))
        log.error("%s", message)
        return False
