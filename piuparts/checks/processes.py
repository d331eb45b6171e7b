"""Processes a maintainer script started and left running.

Every process whose root directory lies inside the instance belongs to the
test (each instance has its own PID namespace); after the purge none but
the backend's own helpers may be left.  They are ended when the instance is
removed, whatever this check says.
"""

from __future__ import annotations

from piuparts import resources
from piuparts.checks.base import Check, Context
from piuparts.findings import Finding


class Processes(Check, name="processes"):
    """A finding, with its command line, for each process still running after the purge."""

    def after_purge(self, ctx: Context) -> list[Finding]:
        chroot = ctx.chroot
        return [self.finding(cmdline or f"pid {pid}", f"still running after purge (pid {pid})", ctx=ctx)
                for pid, cmdline in resources.processes_under(chroot.root) if pid not in chroot.helpers]
