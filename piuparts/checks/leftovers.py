"""Files and directories left, removed or changed after purge, with their owners.

The snapshot before the install and the one after the purge are taken the
fastest way the backend allows (see :class:`piuparts.scenarios.TreeWatcher`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from piuparts.checks.base import Check, Context
from piuparts.chroot import Chroot
from piuparts.findings import FAIL, Finding
from piuparts.state import Diff, display

log = logging.getLogger("piuparts")

NAME = "leftovers"
NOT_OWNED = "not owned"


def dpkg_owners(chroot: Chroot) -> dict[str, list[str]]:
    """Path -> packages that list it, from dpkg's database in the chroot."""
    owners: dict[str, list[str]] = {}
    info = chroot.path("/var/lib/dpkg/info")
    for listing in sorted(info.glob("*.list")):
        package = listing.name[: -len(".list")]
        for line in listing.read_text(errors="replace").splitlines():
            owners.setdefault(line.rstrip("/") or "/", []).append(package)
    return owners


def owner_of(path: str, owners: dict[str, list[str]]) -> str:
    """``"owned by foo, bar"`` or ``"not owned"``; usrmerge aliases are tried too."""
    candidates = [path]
    for alias in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if path.startswith(alias + "/"):
            candidates.append("/usr" + path)
        elif path.startswith("/usr" + alias + "/"):
            candidates.append(path[len("/usr"):])
    for candidate in candidates:
        if candidate in owners:
            return "owned by " + ", ".join(owners[candidate])
    return NOT_OWNED


def check(changes: Diff, owners: dict[str, list[str]], blame: str, severity: str = FAIL) -> list[Finding]:
    """A finding for every path added, removed or modified."""
    findings = []
    for what, entries in (("left behind after purge", changes.added),
                          ("removed (was there before the install)", changes.removed)):
        for path, entry in entries.items():
            findings.append(Finding(NAME, severity, display(path, entry), what, owner_of(path, owners), blame))
    for path, (old, new) in changes.modified.items():
        detail = "content changed" if old.digest != new.digest else f"was {old.describe()}, now {new.describe()}"
        findings.append(Finding(NAME, severity, display(path, new), f"modified: {detail}",
                                owner_of(path, owners), blame))
    return findings


class Leftovers(Check, name=NAME):
    """The tree after the purge against the tree before the install."""

    def before_install(self, ctx: Context) -> None:
        from piuparts.scenarios import TreeWatcher  # scenarios import checks
        start = time.monotonic()
        self.watcher = TreeWatcher(ctx.chroot, ctx.ignores)
        self.before: Any = self.watcher.take()
        ctx.timings["snapshot"] = round(time.monotonic() - start, 3)

    def after_purge(self, ctx: Context) -> list[Finding]:
        start = time.monotonic()
        after = self.watcher.take()
        middle = time.monotonic()
        changes = self.watcher.compare(self.before, after)
        ctx.timings["snapshot"] = round(ctx.timings.get("snapshot", 0) + middle - start, 3)
        ctx.timings["diff"] = round(time.monotonic() - middle, 3)
        log.info("Snapshots took %.3f s, the diff %.3f s", ctx.timings["snapshot"], ctx.timings["diff"])
        return check(changes, dpkg_owners(ctx.chroot), ctx.blame, self.severity)


def read_owners(root: Path) -> dict[str, list[str]]:
    """:func:`dpkg_owners` for a plain root directory (tests, tools)."""
    return dpkg_owners(Chroot(root, ("chroot", str(root))))
