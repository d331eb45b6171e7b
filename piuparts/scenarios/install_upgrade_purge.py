"""install (an older version from apt) -> upgrade (to the given .debs) -> purge.

When apt knows an older version of a tested package (the archive or an
extra repository), install that first, then upgrade to the .debs under
test, then remove and purge everything and compare with the system before
the first install.  With nothing to upgrade from, the scenario is skipped
with the reason logged and reported.  Archive names with a version
(``NAME=VERSION``) are upgraded to that version the same way when the
configuration says so (``upgrade_named_versions``: ``piuparts ci`` on
remote workers); otherwise names are not upgraded (as in piuparts).
"""

from __future__ import annotations

import logging

from debian.debian_support import Version

from piuparts.chroot import Chroot
from piuparts.inputs import Deb, TestSubject
from piuparts.scenarios import ScenarioResult
from piuparts.scenarios.runner import Runner, Settings

log = logging.getLogger("piuparts")

NAME = "install-upgrade-purge"
NO_DEBS = "packages named with --apt are not upgraded to anything"


def parse_madison(output: str) -> dict[str, list[str]]:
    """``apt-cache madison`` lines -> package -> versions apt knows (binary entries only)."""
    versions: dict[str, list[str]] = {}
    for line in output.splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 3 and "Sources" not in fields[2]:
            versions.setdefault(fields[0], []).append(fields[1])
    return versions


def targets(subject: TestSubject, named: bool = False) -> list[tuple[str, str]]:
    """(package, version) the upgrade goes to: the .debs' and, with ``named``, the NAME=VERSION names'."""
    found = [(deb.package, deb.version) for deb in subject.debs]
    if named:
        found += [(name, version) for name, _, version in (n.partition("=") for n in subject.apt_names) if version]
    return found


def upgradable(subject: TestSubject, named: bool = False) -> bool:
    """Whether the subject has something to upgrade to (else the scenario is skipped with :data:`NO_DEBS`)."""
    return bool(targets(subject, named))


def older_versions(chroot: Chroot, wanted: list[tuple[str, str]]) -> dict[str, str]:
    """For each (package, version), the newest version apt knows that is older than it."""
    names = sorted({package for package, _ in wanted})
    result = chroot.run(["apt-cache", "madison", *names], level=logging.DEBUG)
    known = parse_madison(result.output)
    older = {}
    for package, version in wanted:
        candidates = [v for v in known.get(package, []) if Version(v) < Version(version)]
        if candidates:
            older[package] = max(candidates, key=Version)
    return older


def skip_reason(chroot: Chroot, subject: TestSubject, named: bool = False) -> str | None:
    """Why there is no upgrade to test, if there is none."""
    wanted = targets(subject, named)
    if not wanted:
        return NO_DEBS
    if not older_versions(chroot, wanted):
        return "apt knows no older version of " + ", ".join(package for package, _ in wanted)
    return None


def run(chroot: Chroot, subject: TestSubject, settings: Settings) -> ScenarioResult:
    """Install the older versions, upgrade to the .debs (and NAME=VERSION names when
    ``settings.upgrade_named_versions``), purge; report what changed."""
    runner = Runner(NAME, chroot, subject, settings, test="upgrade")
    older = older_versions(chroot, targets(subject, settings.upgrade_named_versions))
    if not runner.start():
        return runner.outcome
    log.info("Upgrading from %s", ", ".join(f"{p} {v}" for p, v in sorted(older.items())))
    if not runner.install("install old", [f"{p}={v}" for p, v in sorted(older.items())]):
        return runner.outcome
    runner.phase = "upgrade"
    if not runner.install_debs("upgrade", first=False):
        return runner.outcome
    runner.observe("after_install")
    return runner.remove_and_purge()
