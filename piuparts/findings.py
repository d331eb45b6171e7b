"""Findings: what a check found, as data.  Reporters format them; checks never print."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FAIL, WARN, INFO = "fail", "warn", "info"


@dataclass(frozen=True)
class Finding:
    """One thing a check found.

    ``subject`` is a path or an object (a process, a diversion...);
    ``owner`` the package that owns the path now ("not owned" when none
    does); ``blame`` the package the finding is blamed on.
    """

    check: str
    severity: str
    subject: str
    message: str
    owner: str | None = None
    blame: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the JSON report."""
        return asdict(self)

    def line(self) -> str:
        """One line for the text report."""
        text = f"{self.subject}"
        if self.owner is not None:
            text += f" ({self.owner})"
        return f"{text}: {self.message}" if self.message else text
