"""Extra apt repositories and bind mounts made visible inside an instance.

``--extra-repo "deb [trusted=yes] URI SUITE COMPONENTS"`` lines are written
to the instance's apt sources; a ``file://`` repository (a reprepro
repository, say) is bind-mounted read-only at the same path inside, so the
URI works unchanged.  Only the extra sources are fetched (the base's lists
are already there).  ``--bindmount DIR`` mounts a host directory at the
same path inside, as in piuparts.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from piuparts import aptsources
from piuparts.chroot import Chroot
from piuparts.command import failure_message
from piuparts.errors import TestbedError, UsageError

log = logging.getLogger("piuparts")

EXTRA_LIST = "/etc/apt/sources.list.d/piuparts-extra.list"
#: "E: Failed to fetch http://host/dists/x/InRelease  Could not connect to host:9 ..." (W: with older apt)
_FETCH_FAILED = re.compile(r"^[EW]: Failed to fetch (?P<url>\S+)\s+(?P<why>.*)$", re.M)


def parse_extra_repo(line: str) -> aptsources.SourceEntry:
    """One ``--extra-repo`` line; a one-line error when it is not a ``deb`` line."""
    entries = aptsources.parse_one_line(line)
    if len(entries) != 1 or entries[0].type != "deb":
        raise UsageError(f"--extra-repo {line!r}: expected a line such as "
                         "'deb [trusted=yes] file:///srv/repo bookworm main'")
    entry = entries[0]
    local = local_path(entry)
    if local is not None and not local.is_dir():
        raise UsageError(f"--extra-repo {line!r}: {local} is not a directory")
    return entry


def local_path(entry: aptsources.SourceEntry) -> Path | None:
    """The host directory of a ``file:`` repository, else None."""
    url = urlparse(entry.uris[0])
    return Path(unquote(url.path)) if url.scheme in ("file", "copy") else None


def check_bindmount(directory: str) -> Path:
    """A ``--bindmount`` argument: an existing absolute directory."""
    path = Path(directory)
    if not path.is_absolute() or not path.is_dir():
        raise UsageError(f"--bindmount {directory}: not an existing absolute directory")
    return path


def set_up(chroot: Chroot, repo_lines: tuple[str, ...], bindmounts: tuple[Path, ...], timeout: float) -> None:
    """Mount what is needed and fetch the extra repositories' lists."""
    for directory in bindmounts:
        chroot.bind_mount(directory, readonly=False)
    if not repo_lines:
        return
    for line in repo_lines:
        local = local_path(parse_extra_repo(line))
        if local is not None:
            chroot.bind_mount(local, readonly=True)
    chroot.write_text(EXTRA_LIST, "".join(line.strip() + "\n" for line in repo_lines))
    # Error-Mode=any: a source that cannot be fetched is an error, not a warning
    # (older apt ignores the option and still exits 0: the output says it).
    result = chroot.run(["apt-get", "update", "-o", f"Dir::Etc::SourceList={EXTRA_LIST}",
                         "-o", "Dir::Etc::SourceParts=-", "-o", "APT::Get::List-Cleanup=0",
                         "-o", "APT::Update::Error-Mode=any"], timeout=timeout, network=True)
    failed = _FETCH_FAILED.search(result.output)
    if failed:
        raise TestbedError(f"--extra-repo: cannot fetch {failed['url']} ({failed['why'].strip()}); "
                           "check that the repository's URL is right and reachable from this machine")
    if not result.ok:
        raise TestbedError(failure_message(result, "apt-get update of the extra repositories"))
