"""install in the first distribution -> dist-upgrade to each next one -> purge.

With ``-d A -d B [-d C...]``: in an instance of A's base the tested
packages are installed (for .debs: the archive's version of the same
package names, as piuparts does; with no such version the scenario is
skipped).  Then, for each next distribution: the ``pre_distupgrade_``
hooks, the suites of ``/etc/apt/sources.list`` renamed to it (same mirror,
same components), ``apt-get update``, ``apt-get dist-upgrade``, the tested
packages installed again where it has them (as piuparts does, for a
dist-upgrade that kept them back), the ``post_distupgrade_`` hooks.  At the
end the .debs are installed (an upgrade), then the tested packages and
everything that is here and not in the reference are removed and purged.

The end state is compared not with the state before the install but with
a *reference*: the same base taken through the same dist-upgrades (same
setup, extra repositories and hooks) without the packages, then rid of the
packages the last distribution no longer has (so that it does not depend
on which upgrade path removed them, as Debian's base_cleanup hook does).
The reference is kept in the cache as an overlay layer: the upper
directory of the instance that made it, i.e. what the dist-upgrades
changed in the base.  Stored that way it is the exact counterpart of the
test instance's own upper directory over the same base, so the tree
comparison is the usual overlay diff of two upper directories; and stacked
over the base it is a live system again, where the checks that ask the
system (alternatives, diversions, users, other packages' files, symlinks)
take their "before" look.  A TreeState snapshot alone could not serve
those checks.  The layer is only valid over the base it was made on, so a
rebuilt base makes it stale; it is keyed on the target distributions'
InRelease files (and the extra repositories' content), so a change in the
archive since it was made means a new reference, never a difference
blamed on the package.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from piuparts import command, debcache, digests, resources
from piuparts.backends import Backend
from piuparts.dpkgdb import installed_versions
from piuparts.chroot import APT, Chroot
from piuparts.command import Result, failure_message
from piuparts.errors import TestbedError, UsageError
from piuparts.hooks import Hooks, distupgrade_env, failures
from piuparts.inputs import TestSubject
from piuparts.instance_setup import APT_CONF
from piuparts.scenarios import ScenarioResult, Snapshot
from piuparts.scenarios.install_upgrade_purge import parse_madison
from piuparts.scenarios.runner import Runner, Settings, classify_install_failure
from piuparts.state import snapshot_upper

if TYPE_CHECKING:
    from piuparts.config import RunConfig

log = logging.getLogger("piuparts")

NAME = "distupgrade"
SOURCES_LIST = "/etc/apt/sources.list"
#: Changes when the way a reference is made changes (a new key: old ones are not used).
#: 3: instances have an /etc/hosts naming the host when the base has none.
FORMAT = 3


def title(distributions: tuple[str, ...]) -> str:
    """The scenario's name in reports: ``distupgrade bookworm -> trixie``."""
    return f"{NAME} {' -> '.join(distributions)}"


@dataclass(frozen=True)
class Plan:
    """What the scenario needs from the run besides its instance."""

    options: "RunConfig"
    backend: Backend
    #: Sets up a new instance as the run does (hooks, extra repositories, bind mounts).
    setup: Callable[[Chroot], None]


def rewrite_sources(text: str, current: str, target: str) -> tuple[str, int]:
    """One-line apt sources with the suite ``current`` (and its pockets such as
    ``current-updates``) renamed to ``target``; and how many entries changed."""
    entry = re.compile(rf"^(\s*deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?\S+\s+){re.escape(current)}(?=-\S*\s|\s|$)", re.M)
    return entry.subn(lambda match: match[1] + target, text)


def switch_sources(chroot: Chroot, current: str, target: str, sources: str = "") -> None:
    """Point the instance's apt sources at ``target`` instead of ``current``:
    ``sources`` written whole when distros.conf gives them, else the suite renamed.
    No target release for the dist-upgrade itself: piuparts gives -t to installs alone."""
    set_release(chroot, "")
    if sources:
        chroot.write_text(SOURCES_LIST, sources)
        return
    text = chroot.read_text(SOURCES_LIST)
    new, count = rewrite_sources(text, current, target)
    if not count:
        raise TestbedError(f"{SOURCES_LIST} of the instance has no '{current}' entry to move to {target} "
                           "(the dist-upgrade renames the suite of the base's own entries)")
    chroot.write_text(SOURCES_LIST, new)


def set_release(chroot: Chroot, release: str) -> None:
    """APT::Default-Release in the instance's options file: ``release``, or none."""
    text = chroot.read_text(APT_CONF)
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith("APT::Default-Release ")]
    if release:
        lines.append(f'APT::Default-Release "{release}";\n')
    if text or release:
        chroot.write_text(APT_CONF, "".join(lines) if text else f"// piuparts-ng: distros.conf\n{lines[0]}")


def hooks_env(options: "RunConfig", index: int, done: bool) -> dict[str, str]:
    """The dist-upgrade hooks' environment around the upgrade to ``distributions[index]``."""
    return distupgrade_env(options.hooks_name(index - 1), options.hooks_name(index), done)


def check_update(result: Result, target: str) -> None:
    """Raise when ``apt-get update`` for ``target`` failed: a name the mirror
    does not have is a usage error, anything else the test bed's."""
    if result.ok:
        return
    if "does not have a Release file" in result.output:
        raise UsageError(f"-d {target}: the mirror has no distribution of that name "
                         "(apt-get update found no Release file for it)")
    raise TestbedError(failure_message(result, f"apt-get update for {target}"))


def skip_reason(chroot: Chroot, subject: TestSubject, distribution: str) -> str | None:
    """Why the .debs cannot be tested here: apt knows no version of a package to start from."""
    if not subject.debs:
        return None
    names = sorted({deb.package for deb in subject.debs})
    known = known_packages(chroot, names)
    missing = [name for name in names if name not in known]
    if missing:
        return f"apt knows no version of {', '.join(missing)} in {distribution} to install before the dist-upgrade"
    return None


def known_packages(chroot: Chroot, names: list[str]) -> list[str]:
    """Those of ``names`` that apt can install from its sources."""
    if not names:
        return []
    known = parse_madison(chroot.run(["apt-cache", "madison", *names], level=logging.DEBUG).output)
    return [name for name in names if name in known]


def obsolete_packages(chroot: Chroot) -> list[str]:
    """Installed packages (or their left configuration) that no source has any more."""
    listing = chroot.run(["apt", "list", "?or(?obsolete,?config-files)"], error=TestbedError,
                         what="listing obsolete packages", level=logging.DEBUG)
    return sorted(match[1] for match in re.finditer(r"^([a-z0-9][a-z0-9+.:-]*)/\S+ ", listing.output, re.M))


def base_signature(base: Path) -> str:
    """What changes when the base is rebuilt: the identity of its root and of its dpkg status."""
    root, status = os.stat(base), os.stat(base / "var/lib/dpkg/status")
    return f"{root.st_ino}:{status.st_ino}:{status.st_mtime_ns}"


def prune(parent: Path, max_age: float, keep: Path) -> None:
    """Remove the references no run uses that are older than ``max_age``
    (a run would make them again); their lock files stay, for runs that
    may be opening them."""
    for directory in sorted(parent.iterdir()):
        if directory == keep or not directory.is_dir() or directory.name.startswith("."):
            continue
        try:
            created = json.loads((directory / "meta.json").read_text())["created"]
        except (OSError, ValueError, KeyError):
            continue
        if time.time() - created <= max_age:
            continue
        with open(f"{directory}.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use
            log.info("Removing the reference %s, %.1f days old", directory, (time.time() - created) / 86400)
            with resources.signals_deferred():
                resources.remove_tree(directory)


class Reference:
    """The cached reference layer of one base and one chain of distributions.

    It lives in ``CACHE/references/KEY/layer`` with a ``meta.json``; it is
    built under a temporary name and renamed into place under an exclusive
    lock, and held under a shared lock while a test compares with it, as
    the debootstrap backend does with its bases.
    """

    def __init__(self, plan: Plan, settings: Settings, base: Path) -> None:
        self.plan, self.settings, self.base = plan, settings, base
        options = plan.options
        hooks = settings.hooks.scripts if settings.hooks else {}
        material = {
            "format": FORMAT, "backend": plan.backend.name, "base": plan.backend.spec.key(), "base_root": str(base),
            "distributions": list(options.distributions), "extra_repos": list(options.extra_repos),
            "bindmounts": [str(p) for p in options.bindmounts],
            "hooks": {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in sorted(hooks.items())},
            # The hooks see the tested packages (Debian's keep an obsolete base package when it is tested).
            "objects": settings.hooks.env.get("PIUPARTS_OBJECTS", "") if hooks and settings.hooks else "",
            # What the targets hold now: archive changes since the reference was made are not the package's.
            "releases": {target: digests.suite_digest(plan.backend.spec.mirror, target)
                         for index, target in enumerate(options.distributions[1:], 1) if not options.upgrade(index)[0]},
            "extra_repo_content": [digests.source_digest(line) for line in options.extra_repos],
        }
        if options.upgrades:  # distros.conf's: the sources written whole, and what each of their lines holds now
            material["upgrades"] = [[sources, release, [digests.source_digest(line) for line in sources.splitlines()]]
                                    for sources, release in options.upgrades]
        digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:12]
        self.material = material
        self.dir = options.cache_dir / "references" / (
            f"{'-'.join(options.distributions)}-{plan.backend.spec.architecture}-{digest}")

    @property
    def layer(self) -> Path:
        """The upper directory of the reference instance: what the dist-upgrades changed."""
        return self.dir / "layer"

    @contextlib.contextmanager
    def held(self) -> Iterator[Path]:
        """The layer, fresh (built if needed), kept from being rebuilt until the block ends.

        Runs that find it fresh share it (a shared lock); a rebuild takes the
        lock exclusively, so it waits for the runs that use the old one.
        """
        parent = self.dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        resources.reap(parent, ".build-*")
        prune(parent, self.plan.options.base_max_age, keep=self.dir)
        lock = open(f"{self.dir}.lock", "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_SH)
            if not self._fresh():
                fcntl.flock(lock, fcntl.LOCK_EX)
                if not self._fresh():  # another run may have made it meanwhile
                    self._build()
                fcntl.flock(lock, fcntl.LOCK_SH)
            yield self.layer
        finally:
            lock.close()

    def _fresh(self) -> bool:
        try:
            meta = json.loads((self.dir / "meta.json").read_text())
        except (OSError, ValueError):
            return False
        age = time.time() - meta["created"]
        if meta.get("base_signature") != base_signature(self.base):
            log.info("Reference %s was made on another build of the base", self.dir)
            return False
        if age > self.plan.options.base_max_age:
            log.info("Reference %s is %.1f days old", self.dir, age / 86400)
            return False
        log.info("Using cached reference %s (%.1f hours old)", self.dir, age / 3600)
        return True

    def _build(self) -> None:
        distributions = self.plan.options.distributions
        log.info("Building the reference: %s without the tested packages", " -> ".join(distributions))
        start = time.monotonic()
        with resources.building(self.dir) as tmp:
            with self.plan.backend.instance() as chroot:
                self.plan.setup(chroot)
                for index in range(1, len(distributions)):  # each dist-upgrade, by its target
                    self._upgrade(chroot, index)
                obsolete = obsolete_packages(chroot)
                if obsolete:  # as Debian's post_distupgrade_base_cleanup hook does
                    log.info("Purging from the reference what %s no longer has: %s", distributions[-1],
                             " ".join(obsolete))
                    chroot.run(["eatmydata", "dpkg", "--purge", *obsolete], error=TestbedError,
                               what="purging the obsolete packages of the reference")
                chroot.run(["apt-get", "clean"], level=logging.DEBUG)
                assert chroot.upper is not None, "checked by run()"
                command.run(["cp", "-a", str(chroot.upper), str(tmp / "layer")], error=TestbedError,
                            what="copying the reference layer", level=logging.DEBUG)
            meta = {**self.material, "created": time.time(), "base_signature": base_signature(self.base)}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        log.info("Built reference %s in %.1f s", self.dir, time.monotonic() - start)

    def _upgrade(self, chroot: Chroot, index: int) -> None:
        """One dist-upgrade of the reference; any failure is the test bed's, not the package's."""
        options = self.plan.options
        current, target = options.distributions[index - 1], options.distributions[index]
        sources, release = options.upgrade(index)
        self._hooks(chroot, "pre_distupgrade", hooks_env(options, index, done=False))
        switch_sources(chroot, current, target, sources)
        timeout = self.settings.timeout
        check_update(chroot.run(["apt-get", "update"], timeout=timeout, network=True), target)
        cache = self.settings.deb_cache
        if cache is None or not debcache.fill(chroot, cache, APT, [], origins=self.settings.origins,
                                              action="dist-upgrade").complete:
            debcache.download(chroot, [*APT, "dist-upgrade"], timeout)
        chroot.run([*APT, "dist-upgrade"], timeout=timeout, error=TestbedError, terminal=True,
                   prompt_timeout=self.settings.prompt_timeout,
                   what=f"the dist-upgrade of the reference to {target} (without the tested packages)")
        if cache is not None:
            debcache.keep(chroot, cache)  # every test's dist-upgrade takes them from there
        set_release(chroot, release)
        self._hooks(chroot, "post_distupgrade", hooks_env(options, index, done=True))

    def _hooks(self, chroot: Chroot, phase: str, env: dict[str, str]) -> None:
        if self.settings.hooks is None:
            return
        # As in piuparts, PIUPARTS_PHASE is empty while the reference is made.
        failed = failures(self.settings.hooks.run(chroot, phase, PIUPARTS_TEST=NAME, PIUPARTS_PHASE="", **env))
        if failed:
            raise TestbedError(f"a {phase} hook script failed while making the reference: {failed[0]}")


class DistupgradeRunner(Runner):
    """The runner's steps plus the dist-upgrades and the switch to the reference."""

    def __init__(self, chroot: Chroot, subject: TestSubject, settings: Settings, options: "RunConfig") -> None:
        # The hooks' environment follows the upgrades: this run gets a copy of its own.
        hooks = settings.hooks and Hooks(settings.hooks.scripts, dict(settings.hooks.env))
        super().__init__(title(options.distributions), chroot, subject, replace(settings, hooks=hooks), test=NAME)
        self.options = options
        #: The tested packages' names, without versions.
        self.names = [deb.package for deb in subject.debs] + [name.split("=", 1)[0] for name in subject.apt_names]

    def _hook_with(self, phase: str, env: dict[str, str]) -> bool:
        """The ``phase`` hooks with ``env`` added for them alone."""
        hooks = self.settings.hooks
        if hooks is None:
            return True
        saved = dict(hooks.env)
        hooks.env.update(env)
        try:
            return self.hook(phase)
        finally:
            hooks.env.clear()
            hooks.env.update(saved)

    def distupgrade(self, index: int) -> bool:
        """Hooks, sources switched to ``distributions[index]``, ``apt-get update`` and ``dist-upgrade``, hooks."""
        current, target = self.options.distributions[index - 1], self.options.distributions[index]
        sources, release = self.options.upgrade(index)
        if not self._hook_with("pre_distupgrade", hooks_env(self.options, index, done=False)):
            return False
        name = f"dist-upgrade to {target}"
        step = self.outcome.step(name)
        switch_sources(self.chroot, current, target, sources)
        check_update(self.outcome.run(step, self.chroot, ["apt-get", "update"], timeout=self.settings.timeout,
                                     network=True),
                     target)
        # The next release's .debs, the same for every test of the night, come from the .deb cache.
        cache = self.settings.deb_cache
        filled = cache is not None and debcache.fill(self.chroot, cache, APT, [], origins=self.settings.origins,
                                                     action="dist-upgrade").complete
        result = self.run_scripts(step, [*APT, "dist-upgrade"], prefetched=filled)
        self._keep_debs()
        if not result.ok:
            return self._fail(name, classify_install_failure(result, self.subject, name, self.chroot))
        set_release(self.chroot, release)  # as piuparts' -t for the installs once there
        if self.settings.hooks is not None:
            self.settings.hooks.env["PIUPARTS_DISTRIBUTION"] = self.options.hooks_name(index)
        # As piuparts: install them again where the new distribution has them,
        # for a dist-upgrade that kept them back (or removed them).
        self.phase = NAME
        self.ctx.installed_before = installed_versions(self.chroot)  # so the log counts what this install adds
        again = known_packages(self.chroot, self.names)
        if again and not self.install(f"install again in {target}", again, first=False):
            return False
        return self._hook_with("post_distupgrade", hooks_env(self.options, index, done=True))

    def compare_with(self, reference: Chroot) -> None:
        """Make the reference the "before" of every check: its tree, its
        packages, and each check's own first look, taken in ``reference``."""
        assert reference.upper is not None
        start = time.monotonic()
        self.ctx.snapshots["before"] = Snapshot(snapshot_upper(reference.upper, prune=self.settings.ignores))
        self.outcome.timed("snapshot", start)
        own, self.ctx.chroot = self.ctx.chroot, reference
        try:
            for check in self.checks:
                check.before_install(self.ctx)
            self.ctx.installed_before = installed_versions(reference)
        finally:
            self.ctx.chroot = own
        # From here on, "pulled in" is what is here and not in the reference.
        installed = installed_versions(self.chroot)
        self.ctx.pulled_in = sorted(set(installed) - set(self.ctx.installed_before))
        # The dist-upgrades renamed some (t64, a new python3.X): all but the tested ones are dependencies.
        self.ctx.dependencies = [name for name in self.ctx.pulled_in if name.split(":", 1)[0] not in self.names]

    def run_chain(self, layer: Path, backend: Backend) -> ScenarioResult:
        """The whole scenario, the reference ``layer`` made ready."""
        first = [deb.package for deb in self.subject.debs] + list(self.subject.apt_names)
        if not (self.start() and self.install("install", first)):
            return self.outcome
        for index in range(1, len(self.options.distributions)):
            if not self.distupgrade(index):
                return self.outcome
        base = self.chroot.lower
        assert base is not None
        with backend.instance([layer]) as reference:
            self.compare_with(replace(reference, upper=layer, lower=base))
        if self.subject.debs:
            self.phase = "upgrade"
            if not self.install_debs("upgrade", first=False):
                return self.outcome
        self.observe("after_install")
        return self.remove_and_purge()


def run(chroot: Chroot, subject: TestSubject, settings: Settings, plan: Plan) -> ScenarioResult:
    """Install in the first distribution, dist-upgrade, purge; compare with the reference."""
    distributions = plan.options.distributions
    name = title(distributions)
    if not plan.backend.capabilities.layers or chroot.upper is None or chroot.lower is None:
        raise UsageError(f"the distupgrade test (more than one -d) keeps its reference as an overlay layer "
                         f"over the base; the {plan.backend.name} backend cannot stack layers")
    reason = skip_reason(chroot, subject, distributions[0])
    if reason:
        log.info("Skipping %s: %s", name, reason)
        return ScenarioResult(name, skipped=reason)
    runner = DistupgradeRunner(chroot, subject, settings, plan.options)
    start = time.monotonic()
    with Reference(plan, settings, chroot.lower).held() as layer:
        runner.outcome.timed("reference", start)
        return runner.run_chain(layer, plan.backend)
