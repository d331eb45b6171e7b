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


def installed_versions(chroot: Chroot) -> dict[str, tuple[str, str]]:
    """Package -> (version, dpkg status abbreviation), for every package not 'not-installed'."""
    result = chroot.run(["dpkg-query", "-W", "-f", "${binary:Package} ${Version} ${db:Status-Abbrev}\\n"],
                        error=TestbedError, what="listing installed packages", level=logging.DEBUG)
    packages = {}
    for line in result.output.splitlines():
        fields = line.split(" ", 2)
        if len(fields) == 3 and len(fields[2]) > 1 and fields[2][1] != "n":
            packages[fields[0]] = (fields[1], fields[2].strip())
    return packages


class PurgeStatus(Check, name="purge"):
    """A finding for each tested or pulled-in package still known to dpkg
    after the purge; a dependency's is blamed on it."""

    def after_purge(self, ctx: Context) -> list[Finding]:
        return [self.finding(package, f"still present after purge (status {status})", ctx=ctx,
                             blame=(package,) if package in ctx.dependencies else None)
                for package, status in sorted(installed_packages(ctx.chroot).items())
                if package in ctx.pulled_in]
