"""Alternatives (``update-alternatives``) the purge left, changed or removed.

The selections (``update-alternatives --get-selections``: name, auto or
manual, current value) and, where the instance is visible from the host,
the choices each alternative has (dpkg's files in
/var/lib/dpkg/alternatives/) are compared before the install and after the
purge.  Those files are in the default ignore list; the links an
alternative leaves (/etc/alternatives/NAME and the master link, such as
/usr/bin/NAME) are files left behind and stay leftovers.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from piuparts.checks.base import Check, Context
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError
from piuparts.findings import FAIL, WARN, Finding

DB_DIR = "/var/lib/dpkg/alternatives"


@dataclass(frozen=True)
class Alternative:
    """One alternative: its selection, master link and choices (path -> priority)."""

    status: str = ""
    value: str = ""
    link: str = ""
    choices: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """``/usr/bin/ppalt -> /usr/bin/true (auto; choices /usr/bin/true 10)``."""
        text = f"{self.link or '?'} -> {self.value or '?'} ({self.status or '?'}"
        if self.choices:
            text += "; choices " + ", ".join(f"{path} {priority}" for path, priority in self.choices)
        return text + ")"


def parse_selections(text: str) -> dict[str, tuple[str, str]]:
    """Name -> (auto or manual, current value), from ``--get-selections`` output.

    Other lines (warnings: the command's output includes its stderr) are skipped.
    """
    selections = {}
    for line in text.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3 and fields[1] in ("auto", "manual"):
            selections[fields[0]] = (fields[1], fields[2].strip())
    return selections


def parse_db(text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """(master link, choices as (path, priority)) from a file in /var/lib/dpkg/alternatives.

    The file holds the mode, the master link, slave name and link pairs up to
    an empty line, then each choice: its path, priority and one line per
    slave, up to an empty line.
    """
    lines = text.split("\n")
    if len(lines) < 3:
        return "", ()
    index, slaves = 2, 0
    while index < len(lines) and lines[index]:
        index, slaves = index + 2, slaves + 1
    index += 1
    choices = []
    while index + 1 < len(lines) and lines[index]:
        choices.append((lines[index], lines[index + 1]))
        index += 2 + slaves
    return lines[1], tuple(choices)


def list_alternatives(chroot: Chroot) -> dict[str, Alternative]:
    """Every alternative in the chroot (choices only where its files are visible from the host)."""
    result = chroot.run(["update-alternatives", "--get-selections"], error=TestbedError,
                        what="listing alternatives", level=logging.DEBUG)
    found = {}
    for name, (status, value) in parse_selections(result.output).items():
        link: str = ""
        choices: tuple[tuple[str, str], ...] = ()
        text = chroot.read_text(f"{DB_DIR}/{name}") if chroot.host_root else ""
        if text:
            link, choices = parse_db(text)
        found[name] = Alternative(status, value, link, choices)
    return found


#: The words of a message about an alternative or a choice the purge left.
LEFT = "left after purge"


def _changed(old: Alternative, new: Alternative) -> list[str]:
    messages = []
    old_choices, new_choices = dict(old.choices), dict(new.choices)
    for path in sorted(new_choices.keys() - old_choices.keys()):
        messages.append(f"choice {path} (priority {new_choices[path]}) {LEFT}")
    for path in sorted(old_choices.keys() - new_choices.keys()):
        messages.append(f"choice {path} (there before the install) was removed")
    if (old.status, old.value) != (new.status, new.value):
        messages.append(f"selection changed: was {old.status} {old.value}, now {new.status} {new.value}")
    elif not messages and old != new:
        messages.append(f"changed: was {old.describe()}, now {new.describe()}")
    return messages


def compare(before: dict[str, Alternative], after: dict[str, Alternative]) -> list[tuple[str, str]]:
    """(alternative name, message) for every alternative added, removed or changed."""
    changes = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None and new is not None:
            changes.append((name, f"alternative {LEFT}: {new.describe()}"))
        elif new is None and old is not None:
            changes.append((name, f"alternative (there before the install) was removed: {old.describe()}"))
        elif old is not None and new is not None:
            changes += [(name, message) for message in _changed(old, new)]
    return changes


class Alternatives(Check, name="alternatives"):
    """The alternatives after the purge against those before the install.

    An alternative or a choice left after the purge is a leftover too: when
    the leftovers only warn (piuparts' --warn-on-leftovers-after-purge, where
    piuparts lists /etc/alternatives/NAME among the files left), so does it.
    One removed or changed is still at this check's own severity."""

    def __init__(self, severity: str | None = None) -> None:
        super().__init__(severity)
        self.left_severity = self.severity

    def configure(self, severities: dict[str, str]) -> None:
        self.left_severity = WARN if severities.get("leftovers") == WARN and self.severity == FAIL else self.severity

    def before_install(self, ctx: Context) -> None:
        self.before = list_alternatives(ctx.chroot)
        self.dependencies = self.before

    def after_dependencies(self, ctx: Context) -> list[Finding]:
        self.dependencies = list_alternatives(ctx.chroot)
        return []

    def after_purge(self, ctx: Context) -> list[Finding]:
        found = []
        for name, message in compare(self.before, list_alternatives(ctx.chroot)):
            finding = self.finding(name, message, ctx=ctx, blame=self.blame_dependency(ctx)
                                   if self.before.get(name) != self.dependencies.get(name) else None)
            found.append(dataclasses.replace(finding, severity=self.left_severity) if LEFT in message else finding)
        return found
