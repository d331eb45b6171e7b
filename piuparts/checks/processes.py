"""Processes a maintainer script started and left running.

Every process whose root directory lies inside the instance belongs to the
test; after the purge none may be left.  (They are ended when the instance
is removed, whatever this check says.)
"""

from __future__ import annotations

from piuparts import resources
from piuparts.chroot import Chroot
from piuparts.findings import FAIL, Finding

NAME = "processes"


def check(chroot: Chroot, blame: str) -> list[Finding]:
    """A FAIL finding, with its command line, for each process still running."""
    return [Finding(NAME, FAIL, cmdline or f"pid {pid}", f"still running after purge (pid {pid})", blame=blame)
            for pid, cmdline in resources.processes_under(chroot.root) if pid not in chroot.helpers]
