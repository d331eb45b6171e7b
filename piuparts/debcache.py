"""A .deb cache that every run shares, so a second run downloads nothing.

apt keeps what it downloads in the instance's /var/cache/apt/archives,
which goes away with the instance.  Before an install, the files apt is
about to fetch (``apt-get install --print-uris``) are copied in from the
shared cache when their size and checksum match what apt expects; after
it, what apt fetched is copied out.  Each file is written under a
temporary name and renamed, so runs that go at once never see half a
file, and two runs storing the same file store the same bytes.

What the listing names and the cache lacks is downloaded first, by the
harness on the host (:func:`fetch`), when its URI is under one of the
run's own sources (the mirror, the extra repositories: an instance's
sources.list, which a dependency's script may have changed, never
chooses where the host connects): each file is checked against the size
and checksum apt gave, from the archive's signed indexes, as apt checks
it.  When the listing is then all in the instance, the ``--download-only``
pass before the install is not needed: one apt run (half a second of
resolving, for nothing to fetch) less a test.  What could not be fetched
so (another host, a proxy only apt knows) is left to apt as before.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from piuparts import inroot
from piuparts.chroot import Chroot, proxy_env
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


#: apt-get's words when it could not download what it was to unpack (nothing was unpacked then).
NOT_FETCHED = re.compile(r"^E: (Unable to fetch some archives|Failed to fetch )", re.M)


def download(chroot: Chroot, argv: Sequence[str], timeout: float | None) -> Result | None:
    """Run :func:`download_argv`'s command, if any; its result."""
    fetch = download_argv(chroot, argv)
    return None if fetch is None else chroot.run(fetch, timeout=timeout, network=True)


class Filled(NamedTuple):
    """What :func:`fill` did: how many .debs it copied in of how many the listing fetches."""

    copied: int
    listed: int

    @property
    def complete(self) -> bool:
        """Every .deb the install fetches is in the instance: nothing for apt to download."""
        return self.copied == self.listed


def fill(chroot: Chroot, cache: Path, apt: Sequence[str], targets: Sequence[str],
         listing: Sequence[Listed] | None = None, origins: "Origins | None" = None,
         action: str = "install") -> Filled:
    """Copy into the instance the cached .debs that ``apt-get ACTION TARGETS`` needs
    (``install``, or ``dist-upgrade`` with no targets).  ``listing``: apt's ``--print-uris``
    for them in this instance, as (URI, FILE, SIZE, KIND:HEX), when the caller has it
    already.  What the cache lacks is downloaded into it first from ``origins`` (:func:`fetch`)."""
    start = time.monotonic()
    if listing is None:
        out = chroot.run([*apt, action, "--print-uris", "-qq", *targets], level=logging.DEBUG)
        if not out.ok:
            return Filled(0, -1)  # the command itself will say what is wrong
        listing = [entry for entry in listed(out.output) if entry[3]]
    wanted = [entry for entry in listing if not entry[0].startswith("file:")]  # apt reads those in place
    # Each file is checked once: a cached one here, a downloaded one as it came.
    ready = {file for _, file, size, digest in wanted if _matches(cache / file, size, digest)}
    lacking = [entry for entry in wanted if entry[1] not in ready]
    fetched = _download(cache, lacking, origins) if origins and lacking else set()
    for file in ready | fetched:
        cached = cache / file
        inroot.copy_file(cached, chroot.root, f"{ARCHIVES}/{file}", mode=0o644)
        os.utime(cached)  # its last use, for pruning
    copied = sum(1 for entry in wanted if entry[1] in ready | fetched)
    log.info("Took %d of %d packages from the .deb cache in %.2f s%s", copied, len(wanted),
             time.monotonic() - start, f" ({len(fetched)} downloaded into it)" if fetched else "")
    return Filled(copied, len(wanted))


def _matches(path: Path, size: str, digest: str) -> bool:
    """``path`` is a file of ``size`` bytes with the checksum ``digest`` (KIND:HEX)."""
    kind, _, hex_digest = digest.partition(":")
    algorithm = _HASHES.get(kind)
    try:
        return path.stat().st_size == int(size) and algorithm is not None and _digest(path, algorithm) == hex_digest
    except (OSError, ValueError):
        return False


#: Parallel downloads of one :func:`fetch`, as apt's few connections to a mirror.
FETCHERS = 4
#: Seconds a download may wait for the mirror before apt is left to fetch the file.
FETCH_TIMEOUT = 30.0
#: Origins that failed in this process: apt fetches their files from then on.
_failed_origins: set[str] = set()
_failed_lock = threading.Lock()


@dataclass(frozen=True)
class Origins:
    """Where the harness itself downloads .debs from (:func:`fetch`): the URLs of
    the run's own sources (its mirror, its extra repositories), and its --proxy."""

    urls: tuple[str, ...] = ()
    proxy: str | None = None

    @classmethod
    def of(cls, lines: Sequence[str], proxy: str | None = None) -> "Origins":
        """Those of the apt source ``lines`` (or bare URLs) the harness can download from."""
        return cls(tuple(url for line in lines if (url := origin_of(line))), proxy)


def origin_of(line: str) -> str | None:
    """The URL of a one-line apt source (``deb [OPTIONS] URL SUITE COMPONENTS``), or of a bare URL."""
    words = re.sub(r"\[[^\]]*\]", " ", line).split()
    if words and words[0] in ("deb", "deb-src"):
        words = words[1:]
    return words[0] if words and urllib.parse.urlsplit(words[0]).scheme in ("http", "https") else None


def fetch(cache: Path, listing: Sequence[Listed], origins: Origins) -> int:
    """Download into ``cache`` the listed .debs it does not have whose URI is
    under one of the ``origins`` (http and https URLs: the run's mirror and
    extra repositories), each checked against the size and checksum of its
    entry before it is kept; return how many were stored.  Through the proxy
    the instance's apt uses: the run's --proxy, else the harness's own proxy
    variables.  A file that fails is left to apt."""
    return len(_download(cache, listing, origins))


def _download(cache: Path, listing: Sequence[Listed], origins: Origins) -> set[str]:
    """:func:`fetch`: the names of the files it stored."""
    prefixes = tuple(url.rstrip("/") + "/" for url in origins.urls
                     if urllib.parse.urlsplit(url).scheme in ("http", "https"))
    todo: dict[str, Listed] = {}
    for entry in listing:
        uri, file, size, digest = entry
        if not (digest and uri.startswith(prefixes) and "/" not in file) or file in todo:
            continue
        if uri.startswith(tuple(_failed_origins)) or _matches(cache / file, size, digest):
            continue
        todo[file] = entry
    if not todo:
        return set()
    cache.mkdir(parents=True, exist_ok=True)
    proxies = {name.split("_")[0]: value for name, value in proxy_env(origins.proxy).items()
               if name in ("http_proxy", "https_proxy")}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    start = time.monotonic()
    with ThreadPoolExecutor(min(FETCHERS, len(todo))) as pool:
        stored = {file for file, ok in zip(todo, pool.map(lambda entry: _fetch_one(opener, cache, entry, prefixes),
                                                          todo.values())) if ok}
    log.debug("Downloaded %d of %d packages into the .deb cache in %.2f s", len(stored), len(todo),
              time.monotonic() - start)
    return stored


def partial_name(file: str, pid: int | None = None) -> str:
    """The name a download of ``file`` has until it is checked: one per thread, and
    ``piuparts cleanup`` (prune.reap_temporaries) removes it once its process is gone."""
    return f".{file}-{threading.get_ident()}.{os.getpid() if pid is None else pid}.tmp"


def _fetch_one(opener: urllib.request.OpenerDirector, cache: Path, entry: Listed, prefixes: tuple[str, ...]) -> bool:
    uri, file, size, digest = entry
    kind, _, hex_digest = digest.partition(":")
    algorithm = _HASHES.get(kind)
    if algorithm is None:
        return False
    tmp = cache / partial_name(file)
    hasher, length = hashlib.new(algorithm), 0
    try:
        with opener.open(uri, timeout=FETCH_TIMEOUT) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 16):
                hasher.update(chunk)
                length += len(chunk)
                if length > int(size):
                    break
                out.write(chunk)
        if length != int(size) or hasher.hexdigest() != hex_digest:
            log.debug("%s: %d bytes that do not match apt's size and checksum; left to apt", uri, length)
            return False
        os.chmod(tmp, 0o644)
        os.rename(tmp, cache / file)
        return True
    except (OSError, ValueError, urllib.error.URLError) as err:
        log.debug("Could not download %s (%s); apt will", uri, err)
        if not isinstance(err, urllib.error.HTTPError):  # the origin does not answer: not again in this run
            with _failed_lock:
                _failed_origins.update(prefix for prefix in prefixes if uri.startswith(prefix))
        return False
    finally:
        tmp.unlink(missing_ok=True)


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
