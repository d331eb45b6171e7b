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

The obsolete-conffiles check (a warning, as lintian and adequate make it)
looks after an upgrade: a conffile that the new version no longer ships
stays on every upgraded system, flagged "obsolete" in dpkg's database,
until the package is purged.  The finding names the fix.
"""

from __future__ import annotations

import logging

from piuparts.checks.base import Check, Context
from piuparts import inroot
from piuparts.dpkgdb import (INFO, STATUS, Resolver, base_name, exists, info_files, parse_conffiles,
                                        parse_obsolete_conffiles, read_text, timed)
from piuparts.dpkgdb import NOT_OWNED, dpkg_owners
from piuparts.chroot import Chroot
from piuparts.findings import WARN, Finding

log = logging.getLogger("piuparts")

NAME = "conffiles"
MESSAGE = "conffile not removed by purge"
OBSOLETE = "obsolete-conffiles"


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


def obsolete_message(package: str, version: str, path: str) -> str:
    """What an obsolete conffile is, and the line that removes it on upgrade."""
    return (f"obsolete conffile after the upgrade to {version}: {package} no longer ships it, yet it stays "
            f"until the purge; remove it on upgrade with 'rm_conffile {path} {version}~' in "
            f"debian/{package}.maintscript (dpkg-maintscript-helper(1))")


class ObsoleteConffiles(Check, name=OBSOLETE):
    """A warning for each conffile of a tested package that dpkg flags obsolete after the install (or upgrade)."""

    default_severity = WARN

    def after_install(self, ctx: Context) -> list[Finding]:
        with timed(ctx.timings, NAME):
            tested = {base_name(p) for p in ctx.packages}
            obsolete = parse_obsolete_conffiles(read_text(ctx.chroot.path(STATUS)))
            return [self.finding(path, obsolete_message(package, version, path), (package,), (package,))
                    for package, (version, paths) in sorted(obsolete.items()) if package in tested
                    for path in paths]
