"""What every check is: an observer of a scenario at fixed points.

A check registers by name (``class Foo(Check, name="foo")``), looks at the
chroot before the install, after the install, after the removal and after
the purge, and returns Findings.  Its severity (fail, warn) comes from the
options, or it is skipped; checks never print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from piuparts.chroot import Chroot
from piuparts.findings import FAIL, Finding
from piuparts.state import Diff, Ignores

SKIP = "skip"


@dataclass
class Context:
    """What a scenario knows, handed to every check at every point."""

    chroot: Chroot
    packages: list[str]
    ignores: Ignores
    #: Who the tested packages' findings are blamed on: their names.
    blame: tuple[str, ...]
    #: Package -> (version, dpkg status) before the test, and after the install.
    installed_before: dict[str, tuple[str, str]] = field(default_factory=dict)
    installed: dict[str, tuple[str, str]] = field(default_factory=dict)
    pulled_in: list[str] = field(default_factory=list)
    #: Packages installed (or upgraded) before the tested ones: in a step
    #: of their own, or from the dependency layer.
    dependencies: list[str] = field(default_factory=list)
    #: Those of ``dependencies`` that were there before the test, at another version.
    upgraded: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Tree snapshots the runner took: "before", "dependencies" (installed),
    #: "removed" (the tested packages), "dependencies purged", "after".
    snapshots: dict[str, Any] = field(default_factory=dict)
    #: Compares two snapshots (ignored paths left out); set by the runner.
    compare: Callable[[Any, Any], Diff] | None = None
    #: Paths (as displayed) a check already reported; the leftovers check skips them.
    claimed: set[str] = field(default_factory=set)
    #: The .deb cache every run shares (see piuparts.debcache), for a check that installs.
    deb_cache: Path | None = None


class Check:
    """Base of every check; subclasses override the points they care about."""

    registry: ClassVar[dict[str, type["Check"]]] = {}
    name: ClassVar[str]
    #: The severity when the options say nothing.
    default_severity: ClassVar[str] = FAIL
    #: Checks run (and report) in this order; equal ones in registration order.
    order: ClassVar[int] = 50
    #: When true, the paths this check reports are claimed: later checks
    #: (leftovers) do not report them again.
    claims_paths: ClassVar[bool] = False
    #: When true, the check's after_purge runs before the last snapshot,
    #: as it changes the system (the processes check ends what it finds).
    settles: ClassVar[bool] = False

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            cls.name = name
            Check.registry[name] = cls

    def __init__(self, severity: str | None = None) -> None:
        self.severity = severity or self.default_severity

    def configure(self, severities: dict[str, str]) -> None:
        """Read the other checks' severities, for a check some of whose findings
        are another's kind too (none by default)."""

    def blame_dependency(self, ctx: Context, packages: Sequence[str] = ()) -> tuple[str, ...]:
        """Who a finding caused by the dependencies is blamed on: those of
        ``packages`` that are dependencies, else every dependency."""
        named = tuple(p for p in packages if p in ctx.dependencies)
        return named or tuple(ctx.dependencies)

    def finding(self, subject: str, message: str, owners: Sequence[str] | None = None,
                blame: Sequence[str] | None = None, ctx: Context | None = None) -> Finding:
        """A Finding of this check at its configured severity; blamed on the
        tested packages (``ctx.blame``) unless ``blame`` names others."""
        return Finding(self.name, self.severity, subject, message, None if owners is None else tuple(owners),
                       tuple(blame) if blame is not None else (ctx.blame if ctx else ()))

    def before_install(self, ctx: Context) -> None:
        """Record what the check compares against later."""

    def after_dependencies(self, ctx: Context) -> list[Finding]:
        """Look once the dependencies are installed (before the tested packages)."""
        return []

    def after_install(self, ctx: Context) -> list[Finding]:
        """Findings with the packages installed."""
        return []

    def after_remove(self, ctx: Context) -> list[Finding]:
        """Findings with the packages removed but not purged."""
        return []

    def after_purge(self, ctx: Context) -> list[Finding]:
        """Findings once everything is purged."""
        return []


def make_checks(severities: dict[str, str]) -> list[Check]:
    """One instance of every registered check not skipped, in registration order."""
    unknown = set(severities) - set(Check.registry)
    if unknown:
        from piuparts.errors import UsageError
        raise UsageError(f"unknown check {sorted(unknown)[0]!r}; known checks: {', '.join(Check.registry)}")
    chosen = [cls for name, cls in Check.registry.items() if severities.get(name) != SKIP]
    checks = [cls(severities.get(cls.name)) for cls in sorted(chosen, key=lambda c: c.order)]
    for check in checks:
        check.configure(severities)
    return checks
