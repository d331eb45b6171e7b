"""Users and groups added and left after the purge, or changed, or removed.

/etc/passwd and /etc/group are compared entry by entry (by name) before the
install and after the purge.  A warning by default: Debian policy advises
packages not to remove the system users they create (files may still
belong to them), and piuparts does not fail on them either (it ignores
these files).  The account files are in the default ignore list so that
the leftovers check does not report the same change again.
"""

from __future__ import annotations

import logging

from piuparts.checks.base import Check, Context
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError
from piuparts.findings import WARN, Finding

#: The account databases compared, and what their entries are called.
DATABASES = (("/etc/passwd", "user"), ("/etc/group", "group"))


def parse_entries(text: str) -> dict[str, list[str]]:
    """Name -> the colon-separated fields of each entry of a passwd or group file."""
    entries = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split(":")
            entries[fields[0]] = fields
    return entries


def describe(kind: str, fields: list[str]) -> str:
    """``uid 999, gid 999, home /nonexistent, shell /usr/sbin/nologin`` or ``gid 999, members a,b``."""
    if kind == "user" and len(fields) >= 7:
        return f"uid {fields[2]}, gid {fields[3]}, home {fields[5]}, shell {fields[6]}"
    if kind == "group" and len(fields) >= 4:
        return f"gid {fields[2]}" + (f", members {fields[3]}" if fields[3] else "")
    return ":".join(fields)


def read_file(chroot: Chroot, inner: str) -> str:
    """The text of ``inner`` in the chroot ("" when it does not exist)."""
    if chroot.host_root:
        return chroot.read_text(inner)
    return chroot.run(["cat", inner], error=TestbedError, what=f"reading {inner}", level=logging.DEBUG).output


def compare(kind: str, before: dict[str, list[str]], after: dict[str, list[str]]) -> list[tuple[str, str]]:
    """(``"user NAME"`` or ``"group NAME"``, message) for every entry added, removed or changed."""
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        subject = f"{kind} {name}"
        if old is None and new is not None:
            changes.append((subject, f"added and left after purge ({describe(kind, new)})"))
        elif new is None and old is not None:
            changes.append((subject, f"removed (was there before the install: {describe(kind, old)})"))
        elif old is not None and new is not None and old != new:
            was, now = describe(kind, old), describe(kind, new)
            if was == now:
                was, now = ":".join(old), ":".join(new)
            changes.append((subject, f"changed: was {was}, now {now}"))
    return changes


class Users(Check, name="users"):
    """Users and groups after the purge against those before the install."""

    default_severity = WARN

    def _read(self, ctx: Context) -> dict[str, dict[str, list[str]]]:
        return {inner: parse_entries(read_file(ctx.chroot, inner)) for inner, _ in DATABASES}

    def before_install(self, ctx: Context) -> None:
        self.before = self._read(ctx)
        self.dependencies = self.before

    def after_dependencies(self, ctx: Context) -> list[Finding]:
        self.dependencies = self._read(ctx)
        return []

    def after_purge(self, ctx: Context) -> list[Finding]:
        after = self._read(ctx)
        return [self.finding(subject, message, ctx=ctx, blame=self._blame(ctx, inner, subject))
                for inner, kind in DATABASES
                for subject, message in compare(kind, self.before[inner], after[inner])]

    def _blame(self, ctx: Context, inner: str, subject: str) -> tuple[str, ...] | None:
        """The dependencies, when their install made the change (None: the tested packages)."""
        name = subject.split(" ", 1)[1]
        if self.before[inner].get(name) != self.dependencies[inner].get(name):
            return self.blame_dependency(ctx)
        return None
