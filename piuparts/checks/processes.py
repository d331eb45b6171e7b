"""Processes a maintainer script started and left running.

Every process whose root directory lies inside the instance belongs to the
test (each instance has its own PID namespace); after the purge none but
the backend's own helpers may be left.  The check records them and ends
them before the last tree snapshot (a daemon left running may still be
writing), so it runs first.  A process already running once the
dependencies were installed is theirs, and blamed on them.
"""

from __future__ import annotations

import os
import signal
import time

from piuparts import resources
from piuparts.checks.base import Check, Context
from piuparts.findings import Finding


def end_processes(pids: list[int], timeout: float = 5.0) -> None:
    """SIGKILL ``pids`` and wait (up to ``timeout``) until they are gone."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}/root") for pid in pids):
        time.sleep(0.02)


class Processes(Check, name="processes"):
    """A finding, with its command line, for each process still running
    after the purge; they are ended before the last snapshot."""

    settles = True

    def before_install(self, ctx: Context) -> None:
        self.dependencies: set[int] = set()

    def after_dependencies(self, ctx: Context) -> list[Finding]:
        self.dependencies = {pid for pid, _ in resources.processes_under(ctx.chroot.root)}
        return []

    def after_purge(self, ctx: Context) -> list[Finding]:
        chroot = ctx.chroot
        left = [(pid, cmdline) for pid, cmdline in resources.processes_under(chroot.root)
                if pid not in chroot.helpers]
        end_processes([pid for pid, _ in left])
        return [self.finding(cmdline or f"pid {pid}", f"still running after purge (pid {pid})", ctx=ctx,
                             blame=self.blame_dependency(ctx) if pid in self.dependencies else None)
                for pid, cmdline in left]
