"""Whose fault a failed apt or dpkg step is, and the line that says why.

A step fails for one of three reasons, and each gets its own exit code
(see :mod:`piuparts.errors`): the package's (exit 1), the test bed's
(exit 3: a mirror that does not answer, an instance out of space) or the
user's (exit 2: an ``--apt`` name no source has).

Only what apt and dpkg say themselves decides it, never text a maintainer
script printed: apt downloads everything before it starts dpkg, so its
download errors (``Err:`` and ``E:`` lines) are looked for in the output
*before* dpkg's first line; once dpkg runs, what a script prints is the
package's business.  Running out of space is decided from the instance's
free space after the step, and from dpkg's own report of an unpack that
failed to write.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from piuparts.command import Result, failure_message
from piuparts.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from piuparts.chroot import Chroot
    from piuparts.inputs import TestSubject

#: The first line dpkg (run by apt) writes: what follows is dpkg's and the scripts' output.
_DPKG_STARTS = re.compile(r"^(?:Extracting templates from packages|Preconfiguring packages|\(Reading database|"
                          r"Selecting previously unselected package|Preparing to unpack|Unpacking |Setting up |"
                          r"Removing |Purging configuration files|Processing triggers for )", re.M)
#: apt's own download errors.
_FETCH_FAILED = re.compile(r"^(?:Err:\d+ |E: Failed to fetch |E: Unable to fetch |W: Failed to fetch |"
                           r"E: Some index files failed)", re.M)
#: apt's own words for a full disk.
_APT_NO_SPACE = re.compile(r"^E: (?:You don't have enough free space|.*No space left on device)", re.M)
#: dpkg's own reports of a full disk: an unpack that could not write (the error
#: line and its indented reason), and its database that could not be written.
_DPKG_NO_SPACE = re.compile(r"^dpkg: error processing archive .*\n .*\(No space left on device\)|"
                            r"^dpkg: error: failed to write (?:status|available) database .*: No space left on device$",
                            re.M)
_NO_SUCH_PACKAGE = re.compile(r"^E: (Unable to locate package (?P<a>\S+)|Package '(?P<b>[^']+)' has no "
                              r"installation candidate|Version '[^']+' for '(?P<c>[^']+)' was not found)", re.M)
_UNMET = re.compile(r"^E: Unable to correct problems, you have held broken packages|unmet dependencies", re.M)
_CONFFILE_PROMPT = re.compile(r"^Configuration file '([^']+)'", re.M)
# dpkg's reason line: " installed foo package post-installation script subprocess returned error exit status 1"
_DPKG_REASONS = (re.compile(r"^ .*\bscript subprocess .*$", re.M), re.compile(r"^dpkg: error processing .*$", re.M))

#: Free space below which a failed step is blamed on the instance's size:
#: this many bytes, or this fraction of the filesystem, whichever is more.
LOW_SPACE_BYTES = 8 * 1024 * 1024
LOW_SPACE_FRACTION = 0.01


def apt_part(output: str) -> str:
    """What apt itself wrote before it started dpkg (all of ``output`` if it never did)."""
    start = _DPKG_STARTS.search(output)
    return output if start is None else output[:start.start()]


def free_space(chroot: "Chroot") -> tuple[int, int] | None:
    """(free bytes, size in bytes) of where the instance writes, if the host can see it."""
    where: Path | None = chroot.upper if chroot.upper is not None else chroot.root if chroot.host_root else None
    if where is None:
        return None
    try:
        st = os.statvfs(where)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def space_is_low(space: tuple[int, int] | None) -> bool:
    """True when ``space`` (free, size) is below :data:`LOW_SPACE_BYTES` or :data:`LOW_SPACE_FRACTION`."""
    if space is None:
        return False
    free, size = space
    return free < max(LOW_SPACE_BYTES, int(size * LOW_SPACE_FRACTION))


def out_of_space(output: str, space: tuple[int, int] | None) -> bool:
    """True when the step failed because the instance is full, as apt, dpkg or the free space says."""
    return bool(_APT_NO_SPACE.search(apt_part(output)) or _DPKG_NO_SPACE.search(output)) or space_is_low(space)


def download_failed(output: str) -> str | None:
    """apt's first download error line, if apt failed to download before dpkg ran."""
    match = _FETCH_FAILED.search(apt_part(output))
    if match is None:
        return None
    return output[match.start():].splitlines()[0].strip()


#: How a conffile prompt is named in a step's failure (pilog finds it by this).
CONFFILE_PROMPT = "a conffile prompt"


def explain_failure(result: Result, what: str) -> str:
    """The most telling line of a failed apt/dpkg run."""
    prompt = _CONFFILE_PROMPT.search(result.output)
    if prompt:
        return f"{what} failed: dpkg asked about the conffile {prompt[1]} ({CONFFILE_PROMPT})"
    for reason in _DPKG_REASONS:
        match = reason.search(result.output)
        if match:
            return f"{what} failed: {match[0].strip()}"
    return failure_message(result, what)


def classify(result: Result, subject: "TestSubject", what: str, space: tuple[int, int] | None) -> str:
    """:func:`classify_install_failure` with the instance's free space given: raise for the test bed
    and the user, return the package's failure message otherwise."""
    if out_of_space(result.output, space):
        raise TestbedError(f"{what}: the instance ran out of space ({result.tail(1).strip()}); "
                           "give it more with --tmpfs-size or keep it on disk with --no-tmpfs")
    fetch = download_failed(result.output)
    if fetch is not None:
        raise TestbedError(f"downloading packages failed (mirror or network): {fetch}")
    apt_says = apt_part(result.output)
    missing = _NO_SUCH_PACKAGE.search(apt_says)
    if missing and subject.apt_names:
        name = missing["a"] or missing["b"] or missing["c"]
        raise UsageError(f"--apt {name}: no repository in the chroot's apt sources has this package; "
                         "check the name, the distribution (-d) and the mirror (-m)")
    if _UNMET.search(apt_says):
        return f"{what} failed: the dependencies cannot be installed (unmet dependencies): " + \
            "; ".join(line.strip() for line in apt_says.splitlines() if "Depends:" in line)[:500]
    return explain_failure(result, what)


def classify_install_failure(result: Result, subject: "TestSubject", what: str,
                             chroot: "Chroot | None" = None) -> str:
    """Raise for what is not the package's fault; return the message otherwise.

    With ``chroot``, the instance's free space after the step counts too.
    """
    return classify(result, subject, what, free_space(chroot) if chroot is not None else None)
