"""dpkg's stat overrides added and left after the purge.

/var/lib/dpkg/statoverride is compared entry by entry (by path) before the
install and after the purge, where a missing file has no entries.  The file
itself is in the default ignore list: ``dpkg-statoverride --remove`` of the
last entry leaves an empty file where there was none, which is no
package's leftover (dbus adds an override for its launch helper and
removes it again on purge, and every package that pulls dbus in would
otherwise fail).  An entry left behind is a failure: it names a path and an
owner of a package that is gone.  (Debian's piuparts ignores the file
entirely, so it misses such entries.)
"""

from __future__ import annotations

import logging

from piuparts.checks.base import Check, Context
from piuparts.dpkgdb import dpkg_owners, owner_of
from piuparts.errors import TestbedError
from piuparts.findings import Finding

STATOVERRIDE = "/var/lib/dpkg/statoverride"


def parse_overrides(text: str) -> dict[str, str]:
    """Path -> ``owner group mode`` of each line of dpkg's statoverride file."""
    entries = {}
    for line in text.splitlines():
        fields = line.split(maxsplit=3)
        if len(fields) == 4:
            entries[fields[3]] = " ".join(fields[:3])
    return entries


def compare(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, str]]:
    """(path, message) for every override added, removed or changed."""
    changes = []
    for path in sorted(before.keys() | after.keys()):
        old, new = before.get(path), after.get(path)
        if old is None and new is not None:
            changes.append((path, f"stat override added and left after purge ({new})"))
        elif new is None and old is not None:
            changes.append((path, f"stat override removed (was there before the install: {old})"))
        elif old != new:
            changes.append((path, f"stat override changed: was {old}, now {new}"))
    return changes


class StatOverrides(Check, name="statoverride"):
    """Stat overrides after the purge against those before the install."""

    def _read(self, ctx: Context) -> dict[str, str]:
        chroot = ctx.chroot
        if chroot.host_root:
            return parse_overrides(chroot.read_text(STATOVERRIDE))
        text = chroot.run(["sh", "-c", f"[ ! -e {STATOVERRIDE} ] || cat {STATOVERRIDE}"], error=TestbedError,
                          what=f"reading {STATOVERRIDE}", level=logging.DEBUG).output
        return parse_overrides(text)

    def before_install(self, ctx: Context) -> None:
        self.before = self._read(ctx)
        self.dependencies = self.before
        self.owners: dict[str, tuple[str, ...]] = {}

    def after_dependencies(self, ctx: Context) -> list[Finding]:
        self.dependencies = self._read(ctx)
        made = [path for path in self.dependencies if self.dependencies[path] != self.before.get(path)]
        if made and ctx.chroot.host_root:  # who owns those paths, while the dependencies are installed
            owners = dpkg_owners(ctx.chroot)
            self.owners = {path: owner_of(path, owners) for path in made}
        return []

    def after_purge(self, ctx: Context) -> list[Finding]:
        """An override the dependencies made is blamed on the dependency owning its path (all of
        them when none does); the rest on the tested packages."""
        after = self._read(ctx)
        return [self.finding(path, message, ctx=ctx,
                             blame=self.blame_dependency(ctx, self.owners.get(path, ()))
                             if self.before.get(path) != self.dependencies.get(path) else None)
                for path, message in compare(self.before, after)]
