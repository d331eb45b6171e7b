"""Files and directories left, removed or changed after purge, with their owners."""

from __future__ import annotations

from pathlib import Path

from piuparts.chroot import Chroot
from piuparts.findings import FAIL, Finding
from piuparts.state import Diff, display

NAME = "leftovers"
NOT_OWNED = "not owned"


def dpkg_owners(chroot: Chroot) -> dict[str, list[str]]:
    """Path -> packages that list it, from dpkg's database in the chroot."""
    owners: dict[str, list[str]] = {}
    info = chroot.path("/var/lib/dpkg/info")
    for listing in sorted(info.glob("*.list")):
        package = listing.name[: -len(".list")]
        for line in listing.read_text(errors="replace").splitlines():
            owners.setdefault(line.rstrip("/") or "/", []).append(package)
    return owners


def owner_of(path: str, owners: dict[str, list[str]]) -> str:
    """``"owned by foo, bar"`` or ``"not owned"``; usrmerge aliases are tried too."""
    candidates = [path]
    for alias in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if path.startswith(alias + "/"):
            candidates.append("/usr" + path)
        elif path.startswith("/usr" + alias + "/"):
            candidates.append(path[len("/usr"):])
    for candidate in candidates:
        if candidate in owners:
            return "owned by " + ", ".join(owners[candidate])
    return NOT_OWNED


def check(changes: Diff, owners: dict[str, list[str]], blame: str) -> list[Finding]:
    """A FAIL finding for every path added, removed or modified."""
    findings = []
    for what, entries in (("left behind after purge", changes.added),
                          ("removed (was there before the install)", changes.removed)):
        for path, entry in entries.items():
            findings.append(Finding(NAME, FAIL, display(path, entry), what, owner_of(path, owners), blame))
    for path, (old, new) in changes.modified.items():
        detail = "content changed" if old.digest != new.digest else f"was {old.describe()}, now {new.describe()}"
        findings.append(Finding(NAME, FAIL, display(path, new), f"modified: {detail}", owner_of(path, owners), blame))
    return findings


def read_owners(root: Path) -> dict[str, list[str]]:
    """:func:`dpkg_owners` for a plain root directory (tests, tools)."""
    return dpkg_owners(Chroot(root, ("chroot", str(root))))
