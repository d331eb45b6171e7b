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
import shutil
import time
from pathlib import Path
from typing import Sequence

from piuparts.chroot import Chroot

log = logging.getLogger("piuparts")

ARCHIVES = "/var/cache/apt/archives"
_URI = re.compile(r"^'(?P<uri>[^']+)' (?P<file>\S+\.deb) (?P<size>\d+) (?P<kind>[A-Za-z0-9]+):(?P<hex>[0-9a-f]+)$",
                  re.M)
_HASHES = {"MD5Sum": "md5", "SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def _digest(path: Path, algorithm: str) -> str:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def fill(chroot: Chroot, cache: Path, apt: Sequence[str], targets: Sequence[str]) -> int:
    """Copy into the instance the cached .debs that installing ``targets`` needs; return how many."""
    start = time.monotonic()
    listing = chroot.run([*apt, "install", "--print-uris", "-qq", *targets], level=logging.DEBUG)
    if not listing.ok:
        return 0  # the install itself will say what is wrong
    archives = chroot.path(ARCHIVES)
    copied = 0
    for match in _URI.finditer(listing.output):
        if match["uri"].startswith("file:"):
            continue  # apt reads those in place
        cached = cache / match["file"]
        algorithm = _HASHES.get(match["kind"])
        try:
            if cached.stat().st_size != int(match["size"]) or algorithm is None \
                    or _digest(cached, algorithm) != match["hex"]:
                continue
        except OSError:
            continue
        shutil.copyfile(cached, archives / match["file"])
        os.utime(cached)  # its last use, for pruning
        copied += 1
    log.info("Took %d of %d packages from the .deb cache in %.2f s", copied,
             len(_URI.findall(listing.output)), time.monotonic() - start)
    return copied


def keep(chroot: Chroot, cache: Path) -> int:
    """Store in the shared cache what apt downloaded into the instance; return how many."""
    cache.mkdir(parents=True, exist_ok=True)
    stored = 0
    for deb in chroot.path(ARCHIVES).glob("*.deb"):
        target = cache / deb.name
        if target.exists() and target.stat().st_size == deb.stat().st_size:
            continue
        tmp = cache / f".{deb.name}.{os.getpid()}.tmp"
        shutil.copyfile(deb, tmp)
        os.rename(tmp, target)
        stored += 1
    if stored:
        log.debug("Stored %d downloaded packages in the .deb cache %s", stored, cache)
    return stored
