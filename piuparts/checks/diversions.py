"""Diversions (``dpkg-divert``) the purge left, and diversions of the base that went away.

``dpkg-divert --list`` before the install is compared with the same list
after the purge, as piuparts does (it fails on both unless given
``--no-diversions``).  dpkg's own file, /var/lib/dpkg/diversions, is in the
default ignore list so that the leftovers check does not report it again.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from piuparts.checks.base import Check, Context
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError
from piuparts.findings import Finding

# "diversion of /usr/bin/foo to /usr/bin/foo.real by pp-divert", "local diversion of /x to /x.orig"
_LINE = re.compile(r"^(?P<local>local )?diversion of (?P<path>.+) to (?P<divert>.+?)(?: by (?P<package>\S+))?$")


@dataclass(frozen=True)
class Diversion:
    """Where a path is diverted to, and by which package (``None``: a local diversion)."""

    divert: str
    package: str | None

    def describe(self) -> str:
        """``to /usr/bin/foo.real by pp-divert`` or ``to /x.orig (local)``."""
        return f"to {self.divert} " + (f"by {self.package}" if self.package else "(local)")


def parse_diversions(text: str) -> dict[str, Diversion]:
    """Diverted path -> :class:`Diversion`, from ``dpkg-divert --list`` output."""
    diversions = {}
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if match:
            package = None if match["local"] else match["package"]
            diversions[match["path"]] = Diversion(match["divert"], package)
    return diversions


def list_diversions(chroot: Chroot) -> dict[str, Diversion]:
    """Every diversion in the chroot."""
    result = chroot.run(["dpkg-divert", "--list"], error=TestbedError, what="listing diversions",
                        level=logging.DEBUG)
    return parse_diversions(result.output)


def compare(before: dict[str, Diversion], after: dict[str, Diversion]) -> list[tuple[str, str]]:
    """(diverted path, message) for every diversion added, removed or changed."""
    changes = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old is None and new is not None:
            changes.append((path, f"diverted {new.describe()}, not removed by the purge"))
        elif new is None and old is not None:
            changes.append((path, f"diversion {old.describe()} (there before the install) was removed"))
        elif old != new and old is not None and new is not None:
            changes.append((path, f"diversion changed: was {old.describe()}, now {new.describe()}"))
    return changes


class Diversions(Check, name="diversions"):
    """The diversions after the purge against those before the install."""

    def before_install(self, ctx: Context) -> None:
        self.before = list_diversions(ctx.chroot)
        self.dependencies = self.before

    def after_dependencies(self, ctx: Context) -> list[Finding]:
        self.dependencies = list_diversions(ctx.chroot)
        return []

    def after_purge(self, ctx: Context) -> list[Finding]:
        after = list_diversions(ctx.chroot)
        return [self.finding(path, message, ctx=ctx, blame=self._blame(ctx, path, after))
                for path, message in compare(self.before, after)]

    def _blame(self, ctx: Context, path: str, after: dict[str, Diversion]) -> tuple[str, ...] | None:
        """The dependency that made the diversion (by its name, or because it
        was there once they were installed); None: the tested packages."""
        diversion = after.get(path) or self.before.get(path)
        if diversion is not None and diversion.package in ctx.dependencies:
            return (diversion.package,)
        if self.before.get(path) != self.dependencies.get(path):
            return self.blame_dependency(ctx)
        return None
