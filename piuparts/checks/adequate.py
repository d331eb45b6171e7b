"""adequate(1), run as Debian's piuparts runs it: after the install (and
after an upgrade), over the tested packages, when the host has adequate.

adequate looks for what lintian cannot see on an installed system: missing
libraries and symbols, Python files not byte-compiled, a missing copyright
file, an alternative without its target...  Each line it prints
(``PACKAGE: TAG DETAILS``) is a finding blamed on that package: a warning
by default, a failure with ``--fail-if-inadequate``; ``--no-adequate``
skips it, as in piuparts.  The two tags piuparts calls boring are left
to the checks of our own that judge the same thing better: ``broken-symlink``
(the symlinks check, which knows the links into /run and /proc a running
system has) and ``obsolete-conffile`` (obsolete-conffiles, which names the
fix).  It runs on the host with ``--root`` into the instance, so it needs the
instance's root to be a host directory.
"""

from __future__ import annotations

import logging
import shutil

from piuparts import command
from piuparts.checks.base import Check, Context
from piuparts.dpkgdb import base_name, timed
from piuparts.findings import WARN, Finding

log = logging.getLogger("piuparts")

NAME = "adequate"
TIMEOUT = 600.0
#: adequate's tags that other checks report (see the module's docstring).
LEFT_TO_OTHERS = {"broken-symlink": "symlinks", "obsolete-conffile": "obsolete-conffiles"}


def parse_adequate(output: str, packages: set[str]) -> list[tuple[str, str]]:
    """(package, ``TAG DETAILS``) for each line adequate wrote about one of ``packages``,
    but for the tags :data:`LEFT_TO_OTHERS`."""
    found = []
    for line in output.splitlines():
        package, sep, rest = line.partition(": ")
        if not (sep and base_name(package.strip()) in packages and rest.strip()):
            continue
        tag = rest.split()[0]
        if tag in LEFT_TO_OTHERS:
            log.debug("adequate: %s (left to the %s check)", line.strip(), LEFT_TO_OTHERS[tag])
            continue
        found.append((base_name(package.strip()), rest.strip()))
    return found


class Adequate(Check, name=NAME):
    """adequate's tags for the tested packages, once they are installed."""

    default_severity = WARN

    def after_install(self, ctx: Context) -> list[Finding]:
        if shutil.which("adequate") is None:
            log.debug("adequate is not installed on the host: not run (apt-get install adequate)")
            return []
        if not ctx.chroot.host_root:
            log.info("adequate is not run: this backend's root is not a directory of the host")
            return []
        packages = sorted({base_name(p) for p in ctx.packages})
        with timed(ctx.timings, NAME):
            result = command.run(["adequate", "--root", str(ctx.chroot.root), *packages], timeout=TIMEOUT)
        if not result.ok and not result.output.strip():
            return [self.finding("adequate", f"adequate failed ({command.failure_message(result, 'adequate')})",
                                 ctx=ctx)]
        return [self.finding(what, "reported by adequate", blame=(package,), ctx=ctx)
                for package, what in parse_adequate(result.output, set(packages))]
