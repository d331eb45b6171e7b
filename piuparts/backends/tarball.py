"""Bases unpacked from a tarball: ``-b TARBALL`` (piuparts' or pbuilder's) and ``-p``.

The tarball is unpacked once into ``CACHE/bases/tarball-KEY``, KEY a hash
of its resolved path; meta.json keeps the tarball's identity (inode, size,
modification time), and a tarball that changed since is unpacked again in
the same place, so replaced tarballs leave no stale bases behind.  The
unpacked system is finished like a debootstrap base (policy-rc.d, apt and
dpkg settings, eatmydata, fresh lists); locking and the lists' refresh are
shared with it (:mod:`piuparts.backends.common`).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from piuparts import command
from piuparts.backends.base import BaseSpec, Option
from piuparts.backends.common import CachedBaseBackend
from piuparts.errors import TestbedError, UsageError

if TYPE_CHECKING:
    from piuparts.config import RunConfig

log = logging.getLogger("piuparts")

#: How a tarball starts: compressed with gzip, xz, zstd, bzip2, lzma or lzip.
COMPRESSED = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd", b"BZh", b"\x5d\x00\x00", b"LZIP")
#: tar's messages that are the host's fault, not the tarball's.
HOST_TROUBLE = ("No space left on device", "Disk quota exceeded", "Read-only file system", "Cannot mknod")
HOW_TO_FIX = "give a base tarball made by 'piuparts -s' or 'pbuilder create'"


def pbuilder_basetgz() -> Path:
    """pbuilder's BASETGZ: the last setting in /etc/pbuilderrc then ~/.pbuilderrc, else its default."""
    found = Path("/var/cache/pbuilder/base.tgz")
    for rc in (Path("/etc/pbuilderrc"), Path.home() / ".pbuilderrc"):
        try:
            text = rc.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            match = re.match(r"""^\s*(?:export\s+)?BASETGZ=["']?([^"'\s]+)["']?\s*$""", line)
            if match:
                found = Path(match[1])
    return found


class TarballBackend(CachedBaseBackend, name="tarball"):
    """A base tarball unpacked once, shared by overlay instances."""

    options = (
        Option(("-b", "--basetgz"), "basetgz", "a base tarball (piuparts' or pbuilder's)", kind="path",
               metavar="TARBALL"),
        Option(("-p", "--pbuilder"), "pbuilder", "pbuilder's base tarball (BASETGZ of pbuilderrc, default "
               "/var/cache/pbuilder/base.tgz)", kind="flag"),
    )

    def __init__(self, spec: BaseSpec, cache_dir: Path, tarball: Path, lists_max_age: float = 86400,
                 tmpfs_size: str | None = "50%") -> None:
        self.tarball = tarball.resolve()
        key = hashlib.sha256(str(self.tarball).encode()).hexdigest()[:12]
        super().__init__(spec, cache_dir, f"tarball-{key}", lists_max_age, tmpfs_size)

    @classmethod
    def settings_from_args(cls, args: argparse.Namespace) -> dict[str, Any]:
        """-p is pbuilder's tarball; either way the tarball must exist (it is what the run stores)."""
        tarball = Path(args.basetgz) if args.basetgz else pbuilder_basetgz()
        if not tarball.is_file():
            hint = " (make one with 'pbuilder create')" if args.pbuilder else ""
            raise UsageError(f"{'-p' if args.pbuilder else '-b'}: the base tarball {tarball} does not exist{hint}")
        return cls.check_settings({"basetgz": str(tarball.absolute())})

    @classmethod
    def from_options(cls, spec: BaseSpec, options: "RunConfig") -> "TarballBackend":
        tarball = cls.setting(options, "basetgz")
        if tarball is None:
            raise UsageError("the tarball backend needs a base tarball: give -b TARBALL or -p")
        return cls(spec, options.cache_dir, tarball, lists_max_age=options.lists_max_age,
                   tmpfs_size=options.tmpfs_size).isolated(options)

    @classmethod
    def unavailable(cls) -> str | None:
        if shutil.which("tar") is None:
            return "tar is not installed (apt-get install tar)"
        return None

    def _identity(self) -> dict[str, Any]:
        st = os.stat(self.tarball)
        return {"path": str(self.tarball), "inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    def _check(self) -> None:
        try:
            with open(self.tarball, "rb") as handle:
                head = handle.read(512)
        except OSError as err:
            raise UsageError(f"cannot read the base tarball {self.tarball} ({err.strerror})") from None
        if not (head.startswith(COMPRESSED) or head[257:262] == b"ustar"):
            raise UsageError(f"{self.tarball} is not a tar archive (neither plain nor compressed with gzip, xz, "
                             f"zstd, bzip2 or lzma); {HOW_TO_FIX}")

    def _stale(self, meta: dict[str, Any]) -> str | None:
        if meta.get("tarball") != self._identity():
            return f"the base tarball {self.tarball} changed since it was unpacked"
        return None

    def _make_root(self, root: Path) -> dict[str, Any]:
        identity = self._identity()  # before reading it: a change meanwhile is seen next time
        root.mkdir()
        log.info("Unpacking the base tarball %s", self.tarball)
        result = command.run(
            ["tar", "--extract", f"--file={self.tarball}", f"--directory={root}", "--numeric-owner",
             "--same-owner", "--same-permissions", "--xattrs", "--xattrs-include=*"], timeout=3600)
        if not result.ok:
            first = next((line for line in result.output.splitlines() if line.strip()), "").strip()
            if result.timed_out or any(trouble in result.output for trouble in HOST_TROUBLE):
                raise TestbedError(f"unpacking the base tarball {self.tarball} failed: {result.tail(1).strip()}")
            raise UsageError(f"the base tarball {self.tarball} cannot be unpacked ({first or 'tar failed'}); "
                             f"it is damaged or not a tarball; {HOW_TO_FIX}")
        if not (root / "var/lib/dpkg/status").is_file():
            raise UsageError(f"the base tarball {self.tarball} holds no Debian system (no var/lib/dpkg/status "
                             f"in it); {HOW_TO_FIX}")
        return {"tarball": identity}
