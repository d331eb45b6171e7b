"""Findings: what a check found, as data.  Reporters format them; checks never print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

FAIL, WARN, INFO = "fail", "warn", "info"
SEVERITIES = (FAIL, WARN, INFO)


def names(packages: str | Iterable[str] | None) -> tuple[str, ...]:
    """Package names as a tuple: from a list, one name, or None (no one)."""
    if packages is None:
        return ()
    if isinstance(packages, str):
        return (packages,)
    return tuple(packages)


@dataclass(frozen=True)
class Finding:
    """One thing a check found.

    ``subject`` is a path or an object (a process, a diversion...).
    ``owners`` are the packages that own the path now: an empty tuple when
    none does ("not owned"), None when ownership means nothing for this
    finding (a process, a failed step).  ``blame`` names the packages the
    finding is blamed on (empty: nobody in particular).
    """

    check: str
    severity: str
    subject: str
    message: str
    owners: tuple[str, ...] | None = None
    blame: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Callers may hand lists; the finding stays hashable and frozen.
        if self.owners is not None and not isinstance(self.owners, tuple):
            object.__setattr__(self, "owners", names(self.owners))
        if not isinstance(self.blame, tuple):
            object.__setattr__(self, "blame", names(self.blame))

    @property
    def owner_text(self) -> str | None:
        """``not owned``, ``owned by a, b``, or None: as the text report shows it."""
        if self.owners is None:
            return None
        return "owned by " + ", ".join(self.owners) if self.owners else "not owned"

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the JSON report (owners and blame as lists of names)."""
        return {"check": self.check, "severity": self.severity, "subject": self.subject,
                "message": self.message, "owners": None if self.owners is None else list(self.owners),
                "blame": list(self.blame)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Finding":
        """The inverse of :meth:`to_json`."""
        owners = data.get("owners")
        return cls(str(data["check"]), str(data["severity"]), str(data["subject"]), str(data.get("message", "")),
                   None if owners is None else tuple(str(o) for o in owners),
                   tuple(str(b) for b in data.get("blame") or ()))

    def line(self) -> str:
        """One line for the text report."""
        text = f"{self.subject}"
        if self.owner_text is not None:
            text += f" ({self.owner_text})"
        return f"{text}: {self.message}" if self.message else text
