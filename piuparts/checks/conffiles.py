"""Conffiles of the tested packages that are still there after the purge.

After the install the conffiles each tested package declared are read
from dpkg's database (``info/PACKAGE.conffiles``, a copy of the package's
``DEBIAN/conffiles``); after the purge each must be gone.  dpkg deletes
conffiles itself on purge, so one that is left was put back by a
maintainer script (a ``postrm purge`` that regenerates it, say) or by
something the package set off.  A path another package owns by then is
not reported (it is that package's now), nor one an ignore rule matches.

The same path is also a leftover, so the leftovers check reports it too,
as "left behind after purge"; this check says why it matters.
"""

from __future__ import annotations

import logging

from piuparts.checks.base import Check, Context
from piuparts import inroot
from piuparts.checks.dpkg_files import INFO, Resolver, exists, info_files, parse_conffiles, read_text, timed
from piuparts.checks.leftovers import NOT_OWNED, dpkg_owners
from piuparts.chroot import Chroot
from piuparts.findings import Finding

log = logging.getLogger("piuparts")

NAME = "conffiles"
MESSAGE = "conffile not removed by purge"


def declared_conffiles(chroot: Chroot, packages: list[str]) -> dict[str, str]:
    """Conffile -> the tested package that declares it, from dpkg's database."""
    declared = {}
    for package, path in info_files(inroot.host_path(chroot.root, INFO), "conffiles", packages).items():
        for conffile in parse_conffiles(read_text(path)):
            declared[conffile] = package
    return declared


class Conffiles(Check, name=NAME):
    """A finding for each conffile of a tested package that exists after the purge."""

    claims_paths = True

    def before_install(self, ctx: Context) -> None:
        self.declared: dict[str, str] = {}

    def after_install(self, ctx: Context) -> list[Finding]:
        with timed(ctx.timings, NAME):
            self.declared = declared_conffiles(ctx.chroot, ctx.packages)
            log.debug("Conffiles of the tested packages: %s", " ".join(sorted(self.declared)) or "none")
        return []

    def after_purge(self, ctx: Context) -> list[Finding]:
        with timed(ctx.timings, NAME):
            resolver = Resolver(ctx.chroot.root)
            left = [path for path in sorted(self.declared) if exists(resolver, path)]
            return self._findings(ctx, left)

    def _findings(self, ctx: Context, left: list[str]) -> list[Finding]:
        owners = dpkg_owners(ctx.chroot) if left else {}
        findings = []
        for path in left:
            if owners.get(path):
                log.debug("%s: conffile now owned by %s, not reported", path, ", ".join(owners[path]))
            elif (rule := ctx.ignores.match(path)) is not None:
                log.debug("ignored %s (rule %s from %s)", path, rule.pattern, rule.source)
            else:
                findings.append(self.finding(path, MESSAGE, NOT_OWNED, (self.declared[path],)))
        return findings
