"""A .deb cache that every run shares, so a second run downloads nothing.

apt keeps what it downloads in the instance's /var/cache/apt/archives,
which goes away with the instance.  Before an install, the files apt is
about to fetch (``apt-get install --print-uris``) are copied in from the
shared cache when their size and checksum match what apt expects; after
it, what apt fetched is copied out.  Each file is written under a
temporary name and renamed, so runs that go at once never see half a
file, and two runs storing the same file store the same bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import time
from pathlib import Path
from typing import Sequence

from piuparts import inroot
from piuparts.chroot import Chroot
from piuparts.command import Result

log = logging.getLogger("piuparts")

ARCHIVES = "/var/cache/apt/archives"
#: --print-uris: "'URI' FILE SIZE KIND:HEX"; a local .deb given by path has no KIND:HEX.
_URI = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+\.deb) (?P<size>\d+) ?(?P<hash>(?:[A-Za-z0-9]+:[0-9a-f]+)?)$",
                  re.M)
#: One package of that listing: (URI, FILE, SIZE, KIND:HEX or "").
Listed = tuple[str, str, str, str]


def listed(output: str) -> list[Listed]:
    """Every package of ``apt-get install --print-uris`` output, in its order."""
    return [(m["uri"], m["file"], m["size"], m["hash"]) for m in _URI.finditer(output)]

_HASHES = {"MD5Sum": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


#: apt-get actions that download what they then unpack.
_DOWNLOADING = ("install", "upgrade", "dist-upgrade", "full-upgrade", "reinstall")


def download_argv(chroot: Chroot, argv: Sequence[str]) -> list[str] | None:
    """With --no-network, the command that downloads beforehand (with the
    network: ``--download-only`` runs no maintainer script) what the apt-get
    command ``argv`` is about to unpack; None when nothing is to be done."""
    if not chroot.offline:
        return None
    action = next((word for word in argv if not word.startswith("-") and word not in ("eatmydata", "apt-get")),
                  None)
    return [*argv, "--download-only"] if "apt-get" in argv and action in _DOWNLOADING else None


def download(chroot: Chroot, argv: Sequence[str], timeout: float | None) -> Result | None:
    """Run :func:`download_argv`'s command, if any; its result."""
    fetch = download_argv(chroot, argv)
    return None if fetch is None else chroot.run(fetch, timeout=timeout, network=True)


def fill(chroot: Chroot, cache: Path, apt: Sequence[str], targets: Sequence[str],
         listing: Sequence[Listed] | None = None) -> int:
    """Copy into the instance the cached .debs that installing ``targets`` needs; return how many.
    ``listing``: apt's ``--print-uris`` for them in this instance, as (URI, FILE, SIZE, KIND:HEX),
    when the caller has it already."""
    start = time.monotonic()
    if listing is None:
        out = chroot.run([*apt, "install", "--print-uris", "-qq", *targets], level=logging.DEBUG)
        if not out.ok:
            return 0  # the install itself will say what is wrong
        listing = [entry for entry in listed(out.output) if entry[3]]
    copied = 0
    for uri, file, size, digest in listing:
        if uri.startswith("file:"):
            continue  # apt reads those in place
        cached = cache / file
        kind, _, hex_digest = digest.partition(":")
        algorithm = _HASHES.get(kind)
        try:
            if cached.stat().st_size != int(size) or algorithm is None or _digest(cached, algorithm) != hex_digest:
                continue
        except OSError:
            continue
        inroot.copy_file(cached, chroot.root, f"{ARCHIVES}/{file}", mode=0o644)
        os.utime(cached)  # its last use, for pruning
        copied += 1
    log.info("Took %d of %d packages from the .deb cache in %.2f s", copied, len(listing), time.monotonic() - start)
    return copied


def keep(chroot: Chroot, cache: Path) -> int:
    """Store in the shared cache what apt downloaded into the instance; return how many."""
    cache.mkdir(parents=True, exist_ok=True)
    stored = 0
    for name, info in inroot.listdir(chroot.root, ARCHIVES):
        if not name.endswith(".deb") or not stat.S_ISREG(info.st_mode):
            continue
        target = cache / name
        if target.exists() and target.stat().st_size == info.st_size:
            continue
        tmp = cache / f".{name}.{os.getpid()}.tmp"
        if inroot.copy_out(chroot.root, f"{ARCHIVES}/{name}", tmp):
            os.rename(tmp, target)
            stored += 1
    if stored:
        log.debug("Stored %d downloaded packages in the .deb cache %s", stored, cache)
    return stored
