"""adequate(1), run as Debian's piuparts runs it: after the install (and
after an upgrade), over the tested packages, when the host has adequate.

adequate looks for what lintian cannot see on an installed system: missing
libraries and symbols, Python files not byte-compiled, a missing copyright
file, an alternative without its target...  Each line it prints
(``PACKAGE: TAG DETAILS``) is a finding blamed on that package: a warning
by default, a failure with ``--fail-if-inadequate``; ``--no-adequate``
skips it, as in piuparts.  The two tags piuparts calls "less interesting"
are judged by checks of our own that see the same thing better:
``broken-symlink`` (the symlinks check, which knows the links into /run and
/proc a running system has) and ``obsolete-conffile`` (obsolete-conffiles,
which names the fix).  adequate's word on them stays in the result as an
information (it never changes the verdict), so that the piuparts log lists
them as piuparts does ("less interesting tags found"), where the master's
``boring_*_inadequate_issue`` categories look for them.

adequate runs programs of the system it checks (dpkg-query, ldd on every
binary, update-alternatives), so it never runs on the host: it runs inside
the instance, confined as a maintainer script is, with the host's adequate
program fed to the instance's perl on its standard input (nothing is
written into the instance, and any backend can run it).  The pure-Perl
modules it loads that perl-base lacks (English, Attribute::Handlers) come
with it, served by an @INC hook placed after the instance's own library
directories.
"""

from __future__ import annotations

import functools
import logging
import shutil
from pathlib import Path

from piuparts import command
from piuparts.checks.base import Check, Context
from piuparts.dpkgdb import base_name, timed
from piuparts.findings import INFO, WARN, Finding

log = logging.getLogger("piuparts")

NAME = "adequate"
TIMEOUT = 600.0
#: adequate's tags that other checks report (see the module's docstring).
LEFT_TO_OTHERS = {"broken-symlink": "symlinks", "obsolete-conffile": "obsolete-conffiles"}


def parse_adequate(output: str, packages: set[str]) -> list[tuple[str, str]]:
    """(package, ``TAG DETAILS``) for each line adequate wrote about one of ``packages``."""
    found = []
    for line in output.splitlines():
        package, sep, rest = line.partition(": ")
        if sep and base_name(package.strip()) in packages and rest.strip():
            found.append((base_name(package.strip()), rest.strip()))
    return found


def left_to(what: str) -> str | None:
    """The check of ours that judges adequate's tag in ``what``, if one does."""
    return LEFT_TO_OTHERS.get(what.split()[0])


#: Where the Perl modules perl-base lacks live (perl-modules-5.x, and
#: packages' modules): those are the ones shipped with the program.
SHIPPED_MODULE_DIRS = ("/usr/share/perl/", "/usr/share/perl5/")
#: Prints, once the program is compiled and before it runs, every module it loaded.
_LIST_MODULES = 'CHECK { print "$_\\t$INC{$_}\\n" for sort keys %INC; exit 0 }\n'
#: Serves the shipped modules (name => hex of the source) when nothing on @INC
#: has them, a line at a time (an in-memory file handle would need PerlIO.pm,
#: which perl-base lacks).
_HOOK = ("BEGIN {{ my %piuparts_modules = ({table}); push @INC, sub {{ "
         "my $source = $piuparts_modules{{$_[1]}}; return unless defined $source; "
         "my @lines = split /^/, pack('H*', $source); "
         "return sub {{ return 0 unless @lines; $_ = shift @lines; return 1; }}; }}; }}\n")


@functools.cache
def adequate_program(path: str) -> bytes:
    """The program fed to perl inside: the hook that serves the modules
    (see the module's docstring), then the text of adequate at ``path``."""
    text = Path(path).read_text(encoding="utf-8")
    listing = command.run(["perl", "-c", "-"], stdin=(_LIST_MODULES + f'#line 1 "{path}"\n' + text).encode(),
                          timeout=60, level=logging.DEBUG)
    modules = {}
    for line in listing.output.splitlines():
        name, _, file = line.partition("\t")
        if file.startswith(SHIPPED_MODULE_DIRS) and name.endswith(".pm") and "'" not in name:
            modules[name] = Path(file).read_bytes().hex()
    table = ", ".join(f"'{name}' => '{source}'" for name, source in sorted(modules.items()))
    return (_HOOK.format(table=table) + f'#line 1 "{path}"\n' + text).encode()


class Adequate(Check, name=NAME):
    """adequate's tags for the tested packages, once they are installed."""

    default_severity = WARN

    def after_install(self, ctx: Context) -> list[Finding]:
        path = shutil.which("adequate")
        if path is None:
            log.debug("adequate is not installed on the host: not run (apt-get install adequate)")
            return []
        packages = sorted({base_name(p) for p in ctx.packages})
        with timed(ctx.timings, NAME):
            log.info("Running adequate (the host's %s, inside the instance) over %s", path, " ".join(packages))
            result = ctx.chroot.run(["perl", "-", *packages], stdin=adequate_program(path), timeout=TIMEOUT)
        if not result.ok and not result.output.strip():
            return [self.finding("adequate", f"adequate failed ({command.failure_message(result, 'adequate')})",
                                 ctx=ctx)]
        findings = []
        for package, what in parse_adequate(result.output, set(packages)):
            if (other := left_to(what)) is None:
                findings.append(self.finding(what, "reported by adequate", blame=(package,), ctx=ctx))
            else:
                findings.append(Finding(NAME, INFO, what, f"reported by adequate, judged by the {other} check",
                                        blame=(package,)))
        return findings
