"""Packages the purge should have removed but dpkg still knows."""

from __future__ import annotations

from piuparts.checks.base import Check, Context
from piuparts.dpkgdb import installed_packages
from piuparts.findings import Finding


class PurgeStatus(Check, name="purge"):
    """A finding for each tested or pulled-in package still known to dpkg
    after the purge; a dependency's is blamed on it."""

    def after_purge(self, ctx: Context) -> list[Finding]:
        return [self.finding(package, f"still present after purge (status {status})", ctx=ctx,
                             blame=(package,) if package in ctx.dependencies else None)
                for package, status in sorted(installed_packages(ctx.chroot).items())
                if package in ctx.pulled_in]
