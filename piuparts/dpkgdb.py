"""What dpkg and apt know in a chroot, in one place: installed packages and
their versions, who owns which path, apt's ``--simulate`` answers, dpkg's
database files, and files inside a chroot looked up safely.

Used by the checks, the scenario runner, the dependency layers and the
distupgrade scenario alike.  The parsers are pure functions of a file's text.
:class:`Resolver` finds where a path lives inside a root directory,
following directory symlinks as the chroot sees them (an absolute target is
taken relative to the root, never to the host's ``/``), so usrmerge's
``/bin -> usr/bin`` is followed and nothing outside the root is read.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import posixpath
import re
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from piuparts.errors import TestbedError

if TYPE_CHECKING:
    from piuparts.chroot import Chroot

INFO = "/var/lib/dpkg/info"
STATUS = "/var/lib/dpkg/status"
DIVERSIONS = "/var/lib/dpkg/diversions"
#: Symlinks followed in one look-up before giving up, as the kernel does.
MAX_LINKS = 40
#: Conffile flags that may follow the hash in dpkg's status file.
CONFFILE_FLAGS = ("obsolete", "remove-on-upgrade")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_KINDS = {stat.S_IFDIR: "directory", stat.S_IFLNK: "symlink", stat.S_IFCHR: "character device",
          stat.S_IFBLK: "block device", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket"}


def base_name(package: str) -> str:
    """``libc6`` of ``libc6:amd64``."""
    return package.split(":", 1)[0]


def read_text(path: Path) -> str:
    """The file's text, or "" when it does not exist or is a symlink (a
    package's link may point out of the chroot: it is never followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    except OSError as err:
        if err.errno == errno.ELOOP:
            return ""
        raise
    with open(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            return ""
        return stream.read().decode("utf-8", "replace")


def info_files(info: Path, suffix: str, packages: Iterable[str] | None = None) -> dict[str, Path]:
    """Package (as dpkg names its files: ``foo`` or ``foo:amd64``) -> its ``info/PACKAGE.SUFFIX``.

    ``info`` is the host path of dpkg's info directory as resolved inside the
    root (:func:`piuparts.inroot.host_path`); symlinks in it are left out.

    Only ``packages`` (compared without architecture) when given.
    """
    wanted = None if packages is None else {base_name(p) for p in packages}
    found = {}
    for path in sorted(info.glob("*." + suffix)):
        if not path.is_file() or path.is_symlink():
            continue
        package = path.name[: -len(suffix) - 1]
        if wanted is None or base_name(package) in wanted:
            found[package] = path
    return found


def parse_md5sums(text: str) -> dict[str, str]:
    """Absolute path -> md5 from a ``.md5sums`` file (``HEX  relative/path`` lines)."""
    sums = {}
    for line in text.splitlines():
        digest, sep, rest = line.partition(" ")
        if sep and _HEX32.fullmatch(digest) and rest[:1] in (" ", "*") and rest[1:]:
            sums["/" + rest[1:].lstrip("/")] = digest
    return sums


def parse_conffiles(text: str) -> list[str]:
    """The paths of a ``.conffiles`` file; leading flags (``remove-on-upgrade``) are dropped."""
    paths = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("/"):
            line = line.partition(" ")[2].strip()
        if line.startswith("/"):
            paths.append(line)
    return paths


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 paragraphs as field -> value (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    key = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif line[0] in " \t" and key:
            fields[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    if fields:
        yield fields


def _status_conffiles(value: str) -> dict[str, str]:
    """Conffile -> md5 of a status ``Conffiles`` value; obsolete ones and placeholders left out."""
    conffiles = {}
    for line in value.splitlines():
        words = line.strip().split(" ")
        flags = []
        while words and words[-1] in CONFFILE_FLAGS:
            flags.append(words.pop())
        if len(words) >= 2 and _HEX32.fullmatch(words[-1]) and "obsolete" not in flags:
            conffiles[" ".join(words[:-1])] = words[-1]
    return conffiles


def parse_status_conffiles(text: str) -> dict[str, dict[str, str]]:
    """Installed package (named as its info files) -> {conffile: md5}, from dpkg's status file."""
    found = {}
    for fields in _paragraphs(text):
        if fields.get("Status", "").split()[-1:] != ["installed"] or "Conffiles" not in fields:
            continue
        name = fields.get("Package", "")
        if fields.get("Multi-Arch") == "same":
            name += ":" + fields.get("Architecture", "")
        conffiles = _status_conffiles(fields["Conffiles"])
        if conffiles:
            found[name] = conffiles
    return found


def parse_obsolete_conffiles(text: str) -> dict[str, tuple[str, list[str]]]:
    """Installed package -> (its version, its conffiles dpkg flags ``obsolete``), from dpkg's status file.

    dpkg flags a conffile obsolete when an upgrade brought a version that no
    longer ships it; it stays on disk, and in the package's list, until the purge."""
    found = {}
    for fields in _paragraphs(text):
        if fields.get("Status", "").split()[-1:] != ["installed"] or "Conffiles" not in fields:
            continue
        obsolete = [" ".join(words[:-2]) for line in fields["Conffiles"].splitlines()
                    if len(words := line.strip().split(" ")) >= 3 and words[-1] == "obsolete"]
        if obsolete:
            found[fields.get("Package", "")] = (fields.get("Version", ""), obsolete)
    return found


def parse_diversions(text: str) -> dict[str, tuple[str, str]]:
    """Diverted path -> (where it went, package that keeps the path, ``:`` when local).

    dpkg's ``diversions`` file holds three lines a diversion: from, to, package.
    """
    lines = text.splitlines()
    return {lines[i]: (lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)}


def ancestors(path: str) -> Iterator[str]:
    """``/a`` and ``/a/b`` of ``/a/b/c``."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        yield "/" + "/".join(parts[:i])


class Resolver:
    """Paths inside a root directory, resolved as the chroot sees them (cached per directory)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root).rstrip("/")
        self._dirs: dict[str, str | None] = {"/": "/"}

    def physical(self, path: str) -> str | None:
        """``path`` with its directories' symlinks followed; None when a directory is missing."""
        parent, _, name = path.rstrip("/").rpartition("/")
        directory = self._dir(parent or "/", 0)
        if directory is None or not name:
            return None
        return posixpath.join(directory, name)

    def host(self, path: str) -> str | None:
        """The host path of ``path``'s last component (itself not followed), or None."""
        physical = self.physical(path)
        return None if physical is None else self.root + physical

    def _dir(self, path: str, links: int) -> str | None:
        if path not in self._dirs:
            parent, _, name = path.rpartition("/")
            base = self._dir(parent or "/", links)
            self._dirs[path] = None if base is None else self._enter(base, name, links)
        return self._dirs[path]

    def _enter(self, base: str, name: str, links: int) -> str | None:
        candidate = posixpath.normpath(posixpath.join(base, name))
        try:
            mode = os.lstat(self.root + candidate).st_mode
        except OSError:
            return None
        if stat.S_ISDIR(mode):
            return candidate
        if not stat.S_ISLNK(mode) or links >= MAX_LINKS:
            return None
        target = posixpath.normpath(posixpath.join(base, os.readlink(self.root + candidate)))
        return self._dir("/" + target.lstrip("/"), links + 1)


def file_state(resolver: Resolver, path: str) -> str | None:
    """The md5 of the regular file at ``path``; ``<symlink>`` and so on for other types; None when absent."""
    host = resolver.host(path)
    if host is None:
        return None
    try:
        mode = os.lstat(host).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(mode):
        return f"<{_KINDS.get(stat.S_IFMT(mode), 'special file')}>"
    try:
        with open(host, "rb") as handle:
            return hashlib.file_digest(handle, "md5").hexdigest()
    except (FileNotFoundError, NotADirectoryError):
        return None  # gone since the lstat: something still runs inside


def exists(resolver: Resolver, path: str) -> bool:
    """True when something (even a dangling symlink) is at ``path`` inside the root."""
    host = resolver.host(path)
    return host is not None and os.path.lexists(host)


def is_regular(resolver: Resolver, path: str) -> bool:
    """True when ``path`` is a regular file inside the root (a symlink is not)."""
    host = resolver.host(path)
    try:
        return host is not None and stat.S_ISREG(os.lstat(host).st_mode)
    except OSError:
        return False


def read_inside(resolver: Resolver, path: str) -> str:
    """The text of the regular file at ``path`` inside the root, or "" when there is none."""
    host = resolver.host(path)
    return read_text(Path(host)) if host is not None and is_regular(resolver, path) else ""


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the time the block takes to ``timings[key]`` (seconds, rounded to ms)."""
    start = time.monotonic()
    try:
        yield
    finally:
        timings[key] = round(timings.get(key, 0.0) + time.monotonic() - start, 3)


# -- installed packages, owners, apt's answers ---------------------------------------------

def installed_packages(chroot: "Chroot") -> dict[str, str]:
    """Package -> dpkg status abbreviation, for every package not 'not-installed'."""
    result = chroot.run(["dpkg-query", "-W", "-f", "${binary:Package} ${db:Status-Abbrev}\\n"],
                        error=TestbedError, what="listing installed packages", level=logging.DEBUG)
    packages = {}
    for line in result.output.splitlines():
        name, _, status = line.partition(" ")
        if status and status[1] != "n":
            packages[name] = status.strip()
    return packages


def installed_versions(chroot: "Chroot") -> dict[str, tuple[str, str]]:
    """Package -> (version, dpkg status abbreviation), for every package not 'not-installed'."""
    result = chroot.run(["dpkg-query", "-W", "-f", "${binary:Package} ${Version} ${db:Status-Abbrev}\\n"],
                        error=TestbedError, what="listing installed packages", level=logging.DEBUG)
    packages = {}
    for line in result.output.splitlines():
        fields = line.split(" ", 2)
        if len(fields) == 3 and len(fields[2]) > 1 and fields[2][1] != "n":
            packages[fields[0]] = (fields[1], fields[2].strip())
    return packages


def native_architecture(chroot: "Chroot") -> str:
    """The architecture dpkg in the chroot is built for (its packages' own, unqualified)."""
    return chroot.run(["dpkg", "--print-architecture"], error=TestbedError, what="asking dpkg its architecture",
                      level=logging.DEBUG).output.strip()


#: No package owns the path.
NOT_OWNED: tuple[str, ...] = ()


def dpkg_owners(chroot: "Chroot") -> dict[str, list[str]]:
    """Path -> packages that list it, from dpkg's database in the chroot."""
    from piuparts import inroot
    owners: dict[str, list[str]] = {}
    for package, listing in info_files(inroot.host_path(chroot.root, INFO), "list").items():
        for line in read_text(listing).splitlines():
            owners.setdefault(line.rstrip("/") or "/", []).append(package)
    return owners


def owner_of(path: str, owners: dict[str, list[str]]) -> tuple[str, ...]:
    """The packages that own ``path`` (empty: not owned); usrmerge aliases are tried too."""
    candidates = [path]
    for alias in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if path.startswith(alias + "/"):
            candidates.append("/usr" + path)
        elif path.startswith("/usr" + alias + "/"):
            candidates.append(path[len("/usr"):])
    for candidate in candidates:
        if candidate in owners:
            return tuple(owners[candidate])
    return NOT_OWNED


#: apt-get --simulate: "Inst python3.11 (3.11.2-6+deb12u8 Debian:12.12/stable [amd64])"
_INST = re.compile(r"^Inst (?P<name>\S+) (?:\[[^]]*\] )?\((?P<version>\S+) .*?\[(?P<arch>[^]]+)\]\)", re.M)


def simulated_installs(output: str) -> list[tuple[str, str, str]]:
    """(name, version, architecture) of each package ``apt-get install --simulate`` would install."""
    return [(m["name"], m["version"], m["arch"]) for m in _INST.finditer(output)]
