"""The host's apt sources: where the default distribution and mirror come from.

Both formats apt reads are understood: deb822 ``*.sources`` files (parsed
with python-debian) and one-line ``sources.list`` entries.  No mirror is
ever written into this project; a user's default is whatever their host
already uses.
"""

from __future__ import annotations

import re
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from debian.deb822 import Deb822

from piuparts.errors import UsageError


@dataclass(frozen=True)
class SourceEntry:
    """One apt source: a type (``deb`` or ``deb-src``), URIs, suites, components."""

    type: str
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict, compare=False)


# apt reads Enabled: as a boolean; these are its words for "off".
_FALSE = {"no", "false", "off", "0", "disable", "without"}


def parse_deb822(text: str) -> list[SourceEntry]:
    """Entries of a deb822 ``.sources`` file (``Enabled: no`` ones left out)."""
    entries = []
    for para in Deb822.iter_paragraphs(text.splitlines(keepends=True)):
        if para.get("Enabled", "yes").strip().lower() in _FALSE:
            continue
        known = {"Types", "URIs", "Suites", "Components", "Enabled"}
        options = {k: v for k, v in para.items() if k not in known}
        for type_ in para.get("Types", "").split():
            entries.append(SourceEntry(
                type_, tuple(para.get("URIs", "").split()), tuple(para.get("Suites", "").split()),
                tuple(para.get("Components", "").split()), options))
    return entries


_ONE_LINE = re.compile(r"^(?P<type>deb(?:-src)?)\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<rest>.*)$")


def parse_one_line(text: str) -> list[SourceEntry]:
    """Entries of a one-line-format ``sources.list``."""
    entries = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        match = _ONE_LINE.match(line)
        if not match:
            continue
        words = match["rest"].split()
        if len(words) < 2:
            continue
        options = dict(o.split("=", 1) for o in (match["opts"] or "").split() if "=" in o)
        entries.append(SourceEntry(match["type"], (words[0],), (words[1],), tuple(words[2:]), options))
    return entries


def read_host_sources(etc_apt: Path = Path("/etc/apt")) -> list[SourceEntry]:
    """Every enabled entry of ``sources.list`` and ``sources.list.d``, in apt's order."""
    entries = []
    main = etc_apt / "sources.list"
    if main.is_file():
        entries += parse_one_line(main.read_text(errors="replace"))
    parts = etc_apt / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                entries += parse_one_line(path.read_text(errors="replace"))
            elif path.suffix == ".sources":
                entries += parse_deb822(path.read_text(errors="replace"))
    return entries


_POCKET = re.compile(r"-(updates|security|backports|proposed-updates|proposed)$|/updates$")


def host_codename(os_release: Path = Path("/etc/os-release")) -> str | None:
    """VERSION_CODENAME of the host, if it says one."""
    try:
        text = os_release.read_text()
    except OSError:
        return None
    match = re.search(r"^VERSION_CODENAME=(.*)$", text, re.M)
    value = match[1].strip().strip("\"'") if match else ""
    return value or None


def default_distribution_and_mirror(
    entries: list[SourceEntry], codename: str | None
) -> tuple[str, str]:
    """The host's distribution and the mirror it is fetched from.

    The distribution is the host's codename when a ``deb`` entry serves it,
    otherwise the first suite that is not a pocket (``-updates``,
    ``-security``, ...).  Raises :class:`UsageError` when nothing fits.
    """
    debs = [e for e in entries if e.type == "deb" and e.uris]
    for entry in debs:
        if codename and codename in entry.suites:
            return codename, entry.uris[0].rstrip("/")
    for entry in debs:
        for suite in entry.suites:
            if not _POCKET.search(suite) and "/" not in suite:
                return suite, entry.uris[0].rstrip("/")
    raise UsageError(
        "no Debian mirror found in the host's apt sources (/etc/apt/sources.list, "
        "/etc/apt/sources.list.d/); name one with -m URL and a distribution with -d NAME")


def unreachable(url: str, timeout: float = 10.0) -> str | None:
    """None when the server of ``url`` answers (any HTTP status will do), else
    why not, as a few words; the proxy settings of the environment apply.
    Other schemes than http and https are not probed (None)."""
    if not url.startswith(("http://", "https://")):
        return None
    try:
        urllib.request.urlopen(urllib.request.Request(url.rstrip("/") + "/", method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered
    except urllib.error.URLError as err:
        reason = err.reason
        return getattr(reason, "strerror", None) or str(reason)
    except OSError as err:  # a timeout, a reset connection
        return err.strerror or str(err) or type(err).__name__
    return None


#: Where bases, layers and .debs are kept unless --cache-dir says otherwise.
DEFAULT_CACHE_DIR = Path("/var/cache/piuparts-ng")


def host_architecture() -> str:
    """dpkg's architecture of the host."""
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise UsageError("cannot ask dpkg for the host's architecture; give one with --arch") from None


def mirror_and_components(value: str | None, default_components: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    """A -m value (URL, then components if any) as the mirror and its components."""
    if value is None:
        return None, default_components
    words = value.split()
    if not words or not re.match(r"^(https?|ftp|file)://", words[0]):
        raise UsageError(f"-m {value!r}: a mirror is a URL such as http://HOST/debian (components may follow)")
    return words[0].rstrip("/"), tuple(words[1:]) or default_components
