"""What apt would install, read from one answer of apt's: ``apt-get install
--print-uris`` (every package, version and checksum, without ordering the
installs as ``--simulate`` does: half the time), ``--simulate`` where the
listing does not account for every package apt counts, and the dependency
cycles that lead back to the packages under test.  The cached layers
(:mod:`piuparts.layers`) and the runner's dependency step ask it.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Sequence

from piuparts import debcache
from piuparts.chroot import Chroot
from piuparts.debcache import Listed
from piuparts.dpkgdb import simulated_installs

log = logging.getLogger("piuparts")


@dataclass(frozen=True)
class Plan:
    """What ``apt-get install TARGETS`` would install: ``items`` (``NAME=VERSION:ARCH``,
    NAME qualified as apt names a package of another architecture than the
    instance's) and, when apt's listing gave them, each item's ``(URI, FILE, SIZE, HASH)``."""

    items: list[str]
    listed: dict[str, Listed] | None
    #: The listing's entries of the packages :func:`resolve` was told are tested (not in ``items``).
    tested: dict[str, Listed] = field(default_factory=dict)

    @property
    def checksums(self) -> list[str] | None:
        """``FILE SIZE HASH`` of each .deb to fetch (sorted), as :func:`deb_checksums` says them."""
        if self.listed is None:
            return None
        return sorted(f"{file} {size} {digest}" for _, file, size, digest in self.listed.values() if digest)

    @property
    def listing(self) -> list[Listed] | None:
        return None if self.listed is None else list(self.listed.values())


#: apt-get's summary line: "0 upgraded, 68 newly installed, 0 to remove and 0 not upgraded."
_SUMMARY = re.compile(r"^(\d+) upgraded, (\d+) newly installed, (?:(\d+) reinstalled, )?(?:(\d+) downgraded, )?"
                      r"\d+ to remove", re.M)


def plan(chroot: Chroot, apt: Sequence[str], targets: Sequence[str], native: str) -> Plan | None:
    """What installing ``targets`` would install, from one ``--print-uris``
    run (apt resolves, and does not order the installs as ``--simulate``
    does: half the time); None when apt cannot resolve them, or when its
    listing does not account for every package it counts (a .deb already
    in the instance's archives is not listed), and then :func:`resolve`
    asks ``--simulate``.  ``native``: the instance's architecture."""
    listing = chroot.run([*apt, "install", "--print-uris", *targets], level=logging.DEBUG)
    return parse_listing(listing.output, native) if listing.ok else None


def parse_listing(output: str, native: str) -> Plan | None:
    """The :class:`Plan` in ``apt-get install --print-uris`` output (see :func:`plan`)."""
    summary = _SUMMARY.search(output)
    if summary is None:
        return None
    listing = debcache.listed(output)
    if len(listing) != sum(int(n or 0) for n in summary.groups()):
        log.debug("apt's listing names %d packages of %s; asking --simulate", len(listing), summary[0])
        return None
    entries = {}
    for entry in listing:
        fields = urllib.parse.unquote(entry[1][:-len(".deb")]).split("_")
        if len(fields) != 3:
            return None  # not apt's NAME_VERSION_ARCH.deb
        name, version, arch = fields
        entries[f"{name if arch in ('all', native) else f'{name}:{arch}'}={version}:{arch}"] = entry
    return Plan(sorted(entries), entries)


def resolve(chroot: Chroot, apt: Sequence[str], targets: Sequence[str], tested: Sequence[str],
            native: str) -> Plan | None:
    """What installing ``targets`` pulls in besides the ``tested`` packages
    (see :class:`Plan`); None when apt cannot resolve it."""
    planned = plan(chroot, apt, targets, native)
    if planned is None:
        simulated = chroot.run([*apt, "install", "--simulate", *targets], level=logging.DEBUG)
        if not simulated.ok:
            return None
        planned = Plan(sorted(f"{name}={version}:{arch}" for name, version, arch
                              in simulated_installs(simulated.output)), None)
    items = [item for item in planned.items if item.split("=", 1)[0].split(":", 1)[0] not in tested]
    if planned.listed is None:
        return Plan(items, None)
    return Plan(items, {i: planned.listed[i] for i in items},
                {i: entry for i, entry in planned.listed.items() if i not in items})


#: apt's "unmet dependencies" lines: " python3-oslo.log : Depends: python3-oslo.config but it is not ..."
_UNMET = re.compile(r"^ (\S+) : (?:Pre-)?Depends: ", re.M)


def without_cycles(chroot: Chroot, apt: Sequence[str], dependencies: list[str],
                   tested: Sequence[str], native: str) -> list[str]:
    """``dependencies`` less those that need a tested package back (OpenStack
    has such cycles: python3-oslo.log depends on python3-oslo.config).  The
    layer (or the test's "install dependencies" step) must not hold the
    packages under test: what is left out here is installed together with
    the tested packages, from the given .debs.  Items are NAME or
    NAME=VERSION:ARCH; ``native``: the instance's architecture."""
    return split_cycles(chroot, apt, dependencies, tested, native)[0]


def split_cycles(chroot: Chroot, apt: Sequence[str], dependencies: list[str], tested: Sequence[str],
                  native: str) -> tuple[list[str], Plan | None]:
    """:func:`without_cycles`, and apt's plan for installing what it keeps
    (what the layer will hold; None when apt's listing did not give it)."""
    names = [dep.split("=", 1)[0] for dep in dependencies]
    alone = plan(chroot, apt, names, native)
    if alone is None:
        simulated = chroot.run([*apt, "install", "--simulate", *names], level=logging.DEBUG)
        ok, pulled = simulated.ok, {name for name, _, _ in simulated_installs(simulated.output)}
    else:
        ok, pulled = True, {item.split("=", 1)[0] for item in alone.items}
    back = {name.split(":", 1)[0] for name in pulled} & set(tested)
    if ok and not back:
        return dependencies, alone  # no cycle: the usual case
    kept, planned = list(dependencies), None
    for _ in range(20):
        names = [dep.split("=", 1)[0] for dep in kept]
        tried = chroot.run([*apt, "install", "--print-uris", *names, *(f"{name}-" for name in back)],
                           level=logging.DEBUG)
        if tried.ok:
            planned = parse_listing(tried.output, native)
            break
        broken = set(_UNMET.findall(tried.output))
        if not broken:
            return [], None  # apt fails for another reason: the install says why
        kept = [dep for dep in kept if dep.split("=", 1)[0] not in broken]
        if not kept:
            break
    log.info("Installing with the tested packages what needs them back: %s",
             " ".join(sorted(dep.split("=", 1)[0] for dep in set(dependencies) - set(kept))))
    return kept, planned


def deb_checksums(chroot: Chroot, apt: Sequence[str], names: Sequence[str]) -> list[str] | None:
    """``FILE SIZE HASH`` of every .deb installing ``names`` fetches (apt's
    own checksums, from the sources' indexes); None when apt cannot say."""
    listing = chroot.run([*apt, "install", "--print-uris", "-qq", *names], level=logging.DEBUG)
    if not listing.ok:
        return None
    return sorted(f"{file} {size} {digest}" for _, file, size, digest in debcache.listed(listing.output) if digest)
