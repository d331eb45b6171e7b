"""Files and directories left, removed or changed after purge, with their owners.

The runner takes the snapshots (before the install, after the dependencies,
after the tested packages' purge, after the dependencies' purge) the fastest
way the backend allows (see :class:`piuparts.scenarios.TreeWatcher`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from piuparts.checks.base import Check, Context
from piuparts.dpkgdb import dpkg_owners, owner_of
from piuparts.findings import FAIL, WARN, Finding
from piuparts.state import Diff, display

NAME = "leftovers"
#: What happened to a path, as each finding's message starts (the -l file's headings follow them).
LEFT, REMOVED, MODIFIED = "left behind after purge", "removed (was there before the install)", "modified"


def check(changes: Diff, owners: dict[str, list[str]], blame: tuple[str, ...], severity: str = FAIL,
          changed_severity: str | None = None) -> list[Finding]:
    """A finding for every path added (at ``severity``), removed or modified
    (at ``changed_severity``, by default the same)."""
    changed_severity = changed_severity or severity
    findings = [Finding(NAME, severity, display(path, entry), LEFT, owner_of(path, owners),
                        blame) for path, entry in changes.added.items()]
    for path, entry in changes.removed.items():
        findings.append(Finding(NAME, changed_severity, display(path, entry), REMOVED, owner_of(path, owners),
                                blame))
    for path, (old, new) in changes.modified.items():
        detail = "content changed" if old.digest != new.digest else f"was {old.describe()}, now {new.describe()}"
        findings.append(Finding(NAME, changed_severity, display(path, new), f"{MODIFIED}: {detail}",
                                owner_of(path, owners), blame))
    return findings


def split_changes(ctx: Context) -> tuple[Diff, set[str]]:
    """All changes after the purge, and the paths the tested packages changed.

    The tested packages' scripts run between the "dependencies" snapshot
    (their dependencies installed) and the "removed" one (they are
    removed), and again after the "dependencies purged" one (their own
    purge, last).  What else stays changed was done by the dependencies:
    their install (in the run or in the layer), their removal and purge,
    or an upgrade.
    """
    assert ctx.compare is not None
    snapshots = ctx.snapshots
    changes = ctx.compare(snapshots["before"], snapshots["after"])
    if not ctx.dependencies:
        return changes, _paths(changes)
    mine = _paths(ctx.compare(snapshots["dependencies"], snapshots["removed"]))
    mine |= _paths(ctx.compare(snapshots["dependencies purged"], snapshots["after"]))
    return changes, mine | _holding(changes, mine)


def _holding(changes: Diff, mine: set[str]) -> set[str]:
    """The added directories left because the tested packages' files were
    inside them: the dependencies made them and, purged first (piuparts'
    order), could not remove them, not empty.  The files may be left too
    (python3-django-horizon's under /usr/lib/python3/) or gone with the
    tested packages' own purge (neutron-metadata-agent's ini file in
    neutron-common's /etc/neutron/).  They are the tested packages' leftovers,
    not a dependency's."""
    ancestors = set()
    for path in mine:
        parent = path.rstrip("/").rpartition("/")[0]
        while parent and parent not in ancestors:
            ancestors.add(parent)
            parent = parent.rpartition("/")[0]
    return {path for path in changes.added if path.rstrip("/") in ancestors}


def _paths(changes: Diff) -> set[str]:
    return set(changes.added) | set(changes.removed) | set(changes.modified)


def _only(changes: Diff, keep: Callable[[str], bool]) -> Diff:
    return Diff({p: e for p, e in changes.added.items() if keep(p)},
                {p: e for p, e in changes.removed.items() if keep(p)},
                {p: e for p, e in changes.modified.items() if keep(p)})


class Leftovers(Check, name=NAME):
    """The tree after the purge against the tree before the install: what the
    tested packages left, removed or changed."""

    order = 90  # after the checks that claim paths

    def after_purge(self, ctx: Context) -> list[Finding]:
        changes, mine = split_changes(ctx)
        ours = _only(changes, lambda p: p in mine)
        # A warning (--warn-on-leftovers-after-purge) covers what is left behind; as in
        # piuparts, a path the purge removed or changed still fails.
        changed = FAIL if self.severity == WARN else self.severity
        findings = check(ours, dpkg_owners(ctx.chroot), ctx.blame, self.severity, changed)
        return [f for f in findings if f.subject not in ctx.claimed]


class DependencyLeftovers(Check, name="dependency-leftovers"):
    """What the dependencies left, removed or changed: blamed on them (on
    the owners of a path among them, else on all of them).  As in piuparts
    it fails unless made a warning (``--warn-on-others``)."""

    order = 91

    def after_purge(self, ctx: Context) -> list[Finding]:
        if not ctx.dependencies:
            return []
        changes, mine = split_changes(ctx)
        theirs = _only(changes, lambda p: p not in mine)
        findings = check(theirs, dpkg_owners(ctx.chroot), (), self.severity)
        return [replace(f, check=self.name, message=f"{f.message}, by {self._by(f, ctx)}",
                        blame=self.blame_dependency(ctx, f.owners or ()))
                for f in findings if f.subject not in ctx.claimed]

    @staticmethod
    def _by(finding: Finding, ctx: Context) -> str:
        upgraded = [p for p in finding.owners or () if p in ctx.upgraded]
        if upgraded:
            name = upgraded[0]
            return f"the upgrade of {name} (from {ctx.installed_before[name][0]}, not brought back)"
        return "a dependency"
