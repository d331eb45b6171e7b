"""What the keys of cached things are made of: the content of apt's lists
(Release files and the indexes of sources without one), a base's build and
package database, hook scripts, and what a repository or a suite holds now
(its InRelease or Release file).  Never names: the same repository at
another path is the same, a rebuilt base is another one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from piuparts import aptsources

if TYPE_CHECKING:
    from piuparts.hooks import Hooks

#: apt's list of a source, and the Release file that names its indexes' hashes.
_RELEASE = re.compile(r"_(In)?Release$")


def _digest_file(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def lists_digests(lists: Path) -> list[str]:
    """The SHA256 digests (sorted) of what apt's lists in ``lists`` say about
    the sources' content: each Release or InRelease file (it holds the
    hashes of its indexes), and the index files of a source that has none.
    Not their names: the same repository at another path is the same."""
    try:
        names = sorted(entry.name for entry in os.scandir(lists) if entry.is_file())
    except OSError:
        return []
    releases = [name for name in names if _RELEASE.search(name)]
    prefixes = tuple(_RELEASE.sub("_", name) for name in releases)
    covered = [name for name in names if name in releases or
               (not name.startswith(prefixes) and ("_Packages" in name or "_Sources" in name))]
    return sorted(f"list {_digest_file(lists / name)}" for name in covered)


def base_digests(base: Path) -> list[str]:
    """What identifies a base's content: which build it is (a rebuilt base is
    another one), its package database and its sources' content."""
    return [_base_build(base), f"status {_digest_file(base / 'var/lib/dpkg/status')}",
            *lists_digests(base / "var/lib/apt/lists")]


def _base_build(base: Path) -> str:
    """The build a base root comes from.  A cached base's generations
    (``bases/KEY/gen-N/root``) are copies of one build whose lists were
    refreshed: they share its key and creation time, so a refresh that
    changed neither the package database nor the lists keeps the layers.
    Any other root is itself: its path and inode."""
    try:
        created = json.loads((base.parent / "meta.json").read_text())["created"]
        return f"base {base.parent.parent.name} built {created!r}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"base {base} {os.stat(base).st_ino}"


def hook_digests(hooks: "Hooks | None") -> list[str]:
    """``hook NAME SHA256`` of each hook script."""
    if hooks is None:
        return []
    return [f"hook {name} {_digest_file(path)}" for name, path in sorted(hooks.scripts.items())]


def _fetch(url: str) -> bytes | None:
    """The content at ``url`` (file: read in place, http(s) fetched), or None."""
    parsed = urllib.parse.urlparse(url)
    try:
        if parsed.scheme in ("file", "copy"):
            return Path(urllib.parse.unquote(parsed.path)).read_bytes()
        if parsed.scheme in ("http", "https"):
            with urllib.request.urlopen(url, timeout=10) as response:
                data: bytes = response.read()
                return data
    except (OSError, ValueError):
        return None
    return None


def source_digest(line: str) -> str | None:
    """What an ``--extra-repo`` line's repository holds now: the digest of its
    InRelease or Release file (of its Packages files when it has neither),
    None when it cannot be read from here."""
    entries = aptsources.parse_one_line(line)
    if len(entries) != 1:
        return None
    entry = entries[0]
    uri, suite = entry.uris[0].rstrip("/"), entry.suites[0] if entry.suites else "./"
    top = f"{uri}/{suite.rstrip('/')}" if suite.endswith("/") else f"{uri}/dists/{suite}"
    candidates = [f"{top}/InRelease", f"{top}/Release"]
    if suite.endswith("/"):
        candidates += [f"{top}/Packages", f"{top}/Packages.gz", f"{top}/Packages.xz"]
    for url in candidates:
        data = _fetch(url)
        if data is not None:
            return f"list {hashlib.sha256(data).hexdigest()}"
    return None


def suite_digest(mirror: str, suite: str) -> str | None:
    """The digest of ``suite``'s InRelease (or Release) file on ``mirror``
    (``URL`` or ``URL COMPONENTS...``), None when it cannot be read from here."""
    url = mirror.split()[0].rstrip("/")
    for name in ("InRelease", "Release"):
        data = _fetch(f"{url}/dists/{suite}/{name}")
        if data is not None:
            return hashlib.sha256(data).hexdigest()
    return None
