"""Packages the purge should have removed but dpkg still knows."""

from __future__ import annotations

import logging

from piuparts.checks.base import Check, Context
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError
from piuparts.findings import Finding


def installed_packages(chroot: Chroot) -> dict[str, str]:
    """Package -> dpkg status abbreviation, for every package not 'not-installed'."""
    result = chroot.run(["dpkg-query", "-W", "-f", "${binary:Package} ${db:Status-Abbrev}\\n"],
                        error=TestbedError, what="listing installed packages", level=logging.DEBUG)
    packages = {}
    for line in result.output.splitlines():
        name, _, status = line.partition(" ")
        if status and status[1] != "n":
            packages[name] = status.strip()
    return packages


class PurgeStatus(Check, name="purge"):
    """A finding for each tested or pulled-in package still known to dpkg after the purge."""

    def after_purge(self, ctx: Context) -> list[Finding]:
        return [self.finding(package, f"still present after purge (status {status})", ctx=ctx)
                for package, status in sorted(installed_packages(ctx.chroot).items())
                if package in ctx.pulled_in]
