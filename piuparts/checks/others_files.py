"""Files of installed packages that differ from what dpkg installed.

As piuparts does with ``debsums -ac`` after the install, every installed
package's files are checked against dpkg's md5sums (``info/*.md5sums``)
and its conffiles against the hashes in dpkg's status file: those of the
packages that were there before, those the install pulled in, and the
tested packages' own (a maintainer script must not change a file its
package ships, nor a conffile: Policy 10.7.3).  After the purge, what is
still installed is checked again.

Fast: with an overlay only the paths in the upper directory (changed,
whited out, or under a whited-out or opaque directory) can differ from
the base, so only those are hashed; without one every listed file is.
Exact: a file of a package that was installed before counts only when it
differs from dpkg's md5sum *and* from what it was before the install (so
a base that was already modified blames nobody); a package the test
installed has no earlier state, so its md5sums alone decide.  A file
counts only when its package still lists it (a file taken over with
Replaces is not the other package's any more), and when no ignore rule
matches it.  Diversions are followed (the package's file is where the
diversion put it) and so are usrmerge's directory symlinks: subjects are
the paths where the files live (``/usr/bin/foo`` for dpkg's ``/bin/foo``).
Each path is reported once, at the first point it is seen.

Blame: a file of a dependency that was already changed when the
dependencies were installed (the "dependencies" snapshot) was changed by
the dependency's own scripts and is blamed on it; anything else on the
tested packages.  ``--warn-on-debsums-errors`` of piuparts is
``--severity others-files=warn`` here.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from piuparts.checks.base import Check, Context
from piuparts import inroot
from piuparts.dpkgdb import (DIVERSIONS, INFO, STATUS, Resolver, ancestors, base_name, file_state,
                                        info_files, parse_diversions, parse_md5sums, parse_status_conffiles,
                                        read_text, timed)
from piuparts.dpkgdb import dpkg_owners, owner_of
from piuparts.findings import Finding
from piuparts.state import Entry, Ignores, UpperState, present_entry

log = logging.getLogger("piuparts")

NAME = "others-files"
States = dict[str, str | None]


@dataclass(frozen=True)
class Expected:
    """What dpkg says one file of another package should be, and where it lives."""

    package: str
    digest: str
    conffile: bool
    location: str


def _location(path: str, package: str, diversions: dict[str, tuple[str, str]]) -> str:
    """Where ``package``'s file ``path`` lives: moved by a diversion of another package, or in place."""
    diversion = diversions.get(path)
    if diversion is None or diversion[1] == base_name(package):
        return path
    return diversion[0]


def expected_files(root: Path, packages: set[str] | None) -> dict[str, Expected]:
    """dpkg path -> Expected for each file with an md5sum, and each conffile, of ``packages`` (all if None)."""
    found: dict[str, tuple[str, str, bool]] = {}
    for package, md5sums in info_files(inroot.host_path(root, INFO), "md5sums", packages).items():
        for path, digest in parse_md5sums(read_text(md5sums)).items():
            found[path] = (package, digest, False)
    for package, conffiles in parse_status_conffiles(inroot.read_text(root, STATUS)).items():
        if packages is None or base_name(package) in packages:
            for path, digest in conffiles.items():
                found[path] = (package, digest, True)
    diversions = parse_diversions(inroot.read_text(root, DIVERSIONS))
    return {path: Expected(package, digest, conffile, _location(path, package, diversions))
            for path, (package, digest, conffile) in found.items()}


def _opaque(host: str) -> bool:
    try:
        return os.getxattr(host, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def upper_changes(upper: Path, prune: Ignores | None = None) -> tuple[set[str], set[str]]:
    """Paths in an overlay's upper directory, and those hiding the lower layer below them.

    Whiteouts (character devices 0,0), opaque directories and anything not
    a directory hide what the lower layer has under their path.
    """
    top = str(upper).rstrip("/")
    changed: set[str] = set()
    hiding: set[str] = set()
    stack = [""]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(top + current if current else top)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone while the walk looked: something still runs inside
        with entries:
            for entry in entries:
                path = f"{current}/{entry.name}"
                changed.add(path)
                if not entry.is_dir(follow_symlinks=False):
                    hiding.add(path)
                    continue
                if _opaque(top + path):
                    hiding.add(path)
                if prune is None or not prune.prunes(path + "/"):
                    stack.append(path)
    return changed, hiding


def suspects(expected: dict[str, Expected], changed: set[str], hiding: set[str], resolver: Resolver) -> list[str]:
    """The dpkg paths whose files the upper directory changed, hid or removed."""
    found = []
    for path, exp in expected.items():
        physical = resolver.physical(exp.location)
        if physical is None or physical in changed or any(a in hiding for a in ancestors(physical)):
            found.append(path)
    return sorted(found)


def describe(state: str | None, exp: Expected, path: str, when: str) -> str:
    """``modified after install``, ``conffile removed after purge``, ``replaced by a symlink ...``."""
    if state is None:
        how = "removed"
    elif state.startswith("<"):
        how = f"replaced by a {state[1:-1]}"
    else:
        how = "modified"
    text = f"{'conffile ' if exp.conffile else ''}{how} {when}"
    return text if exp.location == path else f"{text} (diverted from {path})"


def _lower_layer(ctx: Context) -> Resolver | None:
    """The overlay's lower layer (the base as it was before the install), if there is one."""
    if ctx.chroot.upper is None or ctx.chroot.lower is None:
        return None
    return Resolver(ctx.chroot.lower)


class OthersFiles(Check, name=NAME):
    """Files and conffiles of packages installed before the test, against dpkg's md5sums."""

    claims_paths = True

    def before_install(self, ctx: Context) -> None:
        with timed(ctx.timings, NAME):
            self.reported: set[str] = set()
            self.before = self._states(ctx, expected_files(ctx.chroot.root, None))

    def after_install(self, ctx: Context) -> list[Finding]:
        return self._check(ctx, "after install")

    def after_purge(self, ctx: Context) -> list[Finding]:
        return self._check(ctx, "after purge")

    def _states(self, ctx: Context, expected: dict[str, Expected]) -> States:
        """The state of every file that may differ from the base (all of them without an overlay)."""
        resolver = Resolver(ctx.chroot.root)
        if ctx.chroot.upper is None:
            paths = sorted(expected)
        else:
            paths = suspects(expected, *upper_changes(ctx.chroot.upper, ctx.ignores), resolver)
        return {path: file_state(resolver, expected[path].location) for path in paths}

    def _earlier(self, path: str, exp: Expected, lower: Resolver | None) -> str | None:
        """The file's state before the install."""
        if path in self.before:
            return self.before[path]
        return file_state(lower, exp.location) if lower is not None else exp.digest

    def _check(self, ctx: Context, when: str) -> list[Finding]:
        with timed(ctx.timings, NAME):
            before = {base_name(p) for p in ctx.installed_before}
            expected = expected_files(ctx.chroot.root, None)
            lower = _lower_layer(ctx)
            changed = {}
            for path, state in self._states(ctx, expected).items():
                exp = expected[path]
                earlier = self._earlier(path, exp, lower) if base_name(exp.package) in before else exp.digest
                if path not in self.reported and state != exp.digest and state != earlier:
                    changed[path] = state
            return self._findings(ctx, expected, changed, when)

    def _findings(self, ctx: Context, expected: dict[str, Expected], changed: States, when: str) -> list[Finding]:
        if not changed:
            return []
        owners, resolver, findings = dpkg_owners(ctx.chroot), Resolver(ctx.chroot.root), []
        for path, state in sorted(changed.items()):
            exp = expected[path]
            shown = resolver.physical(exp.location) or exp.location
            if exp.package not in owners.get(path, []):
                log.debug("%s: no longer listed by %s (taken over?), not checked", path, exp.package)
            elif (rule := ctx.ignores.match(shown)) is not None:
                log.debug("ignored %s (rule %s from %s)", shown, rule.pattern, rule.source)
            else:
                self.reported.add(path)
                findings.append(self.finding(shown, describe(state, exp, path, when), owner_of(path, owners),
                                             _blame(ctx, exp, shown), ctx=ctx))
        return findings


def _snapshot_entry(snapshot: object, path: str) -> Entry | None | bool:
    """What a snapshot recorded at ``path``: its Entry, None (absent), or False (the snapshot
    does not know: an overlay's upper directory that did not change the path)."""
    snapshot = getattr(snapshot, "state", snapshot)  # the runner's Snapshot holds the tree's state
    if isinstance(snapshot, UpperState):
        return snapshot.entries.get(path, False)
    if isinstance(snapshot, dict):
        return snapshot.get(path)
    return False


def _blame(ctx: Context, exp: Expected, shown: str) -> tuple[str, ...] | None:
    """The dependency whose file it is, when the file was already as it is now once the
    dependencies were installed (their own scripts changed it); None (the tested packages) otherwise."""
    if base_name(exp.package) not in {base_name(p) for p in ctx.dependencies}:
        return None
    at_dependencies = ctx.snapshots.get("dependencies")
    before = ctx.snapshots.get("before")
    if at_dependencies is None or at_dependencies is before or \
            getattr(at_dependencies, "state", None) is getattr(before, "state", False):  # nothing installed apart
        return None
    recorded = _snapshot_entry(at_dependencies, shown)
    if recorded is False:
        return None
    now = present_entry(str(ctx.chroot.root) + shown)
    return (base_name(exp.package),) if (now[1] if now else None) == recorded else None
