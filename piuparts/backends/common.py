"""What the backends with a cached base directory share (debootstrap, tarball).

Such a base lives in ``CACHE/bases/NAME/`` (``root/`` and ``meta.json``).
It is made under a temporary owned directory and renamed into place, under
an exclusive lock (``NAME.lock``), so two runs never make the same base at
once; a run that uses a base holds a shared lock on it until it closes, so
the base is never remade under a running test.  Once its files are in
place, every base is finished the same way (:func:`finish_base`), and its
apt lists are refreshed in place when older than ``lists_max_age``.
Instances are overlays over ``root/``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from abc import abstractmethod
from pathlib import Path
from typing import IO, Any, ContextManager, Sequence

from piuparts import command, inroot, resources
from piuparts.backends.base import Backend, BaseSpec, Capabilities
from piuparts.backends.overlay import api_mounted, overlay_instance
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError, UsageError

log = logging.getLogger("piuparts")

POLICY_RC_D = "#!/bin/sh\n# piuparts: no service may start in a test chroot\nexit 101\n"
APT_CONF = """\
// piuparts: unattended, no recommends, no translations
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::Assume-Yes "true";
Acquire::Languages "none";
Acquire::Retries "3";
Dpkg::Use-Pty "false";
"""
DPKG_CFG = "# piuparts: the chroot is thrown away, no need to fsync\nforce-unsafe-io\n"

#: The files every test system gets: path inside -> (content, mode).
HARNESS_FILES = {
    "usr/sbin/policy-rc.d": (POLICY_RC_D, 0o755),
    "etc/apt/apt.conf.d/99piuparts": (APT_CONF, 0o644),
    "etc/dpkg/dpkg.cfg.d/piuparts": (DPKG_CFG, 0o644),
}


def configure_base(root: Path) -> None:
    """Write policy-rc.d and the apt and dpkg settings every instance inherits
    (as new files, resolved inside ``root``)."""
    for inner, (text, mode) in HARNESS_FILES.items():
        inroot.write_text(root, inner, text, mode)


def copy_resolv_conf(root: Path) -> None:
    """The host's resolver, so that apt inside can reach the mirror."""
    try:
        inroot.copy_file(Path("/etc/resolv.conf"), root, "/etc/resolv.conf", mode=0o644)
    except OSError:
        pass  # no resolver on the host: apt will say so


def apt_update(chroot: Chroot) -> None:
    """``apt-get update`` inside; a failure is the test bed's."""
    chroot.run(["apt-get", "update"], timeout=900, error=TestbedError, what="apt-get update", network=True)
    _gencaches(chroot)


def _gencaches(chroot: Chroot) -> None:
    """Keep apt's binary package cache in the base: without it every apt
    command of every test rebuilds it (1-2 s each) and copies 70 MB into
    the instance's upper layer."""
    chroot.run(["apt-cache", "gencaches"], timeout=900, error=TestbedError, what="apt-cache gencaches",
               level=logging.DEBUG)


def _installed(chroot: Chroot, package: str) -> bool:
    result = chroot.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}", package], level=logging.DEBUG)
    return result.ok and result.output.startswith("ii")


def finish_base(root: Path, packages: Sequence[str] = ()) -> None:
    """Make the system in ``root`` fit for the harness: policy-rc.d, apt and
    dpkg settings, fresh apt lists, ``packages`` installed (eatmydata: the
    runner calls ``eatmydata apt-get``), the package cache emptied."""
    configure_base(root)
    copy_resolv_conf(root)
    with api_mounted(root) as chroot:
        apt_update(chroot)
        missing = [p for p in packages if not _installed(chroot, p)]
        if missing:
            chroot.run(["apt-get", "-y", "install", *missing], timeout=1800, error=TestbedError,
                       what=f"installing {' '.join(missing)} in the base")
        chroot.run(["apt-get", "clean"], level=logging.DEBUG)
        _gencaches(chroot)


def save_tree(root: Path, tarball: Path) -> None:
    """Write ``root`` as a gzip tarball that ``-b`` takes: numeric owners,
    permissions, device nodes and extended attributes kept; written under a
    temporary name and renamed, so ``tarball`` is never half written."""
    parent = tarball.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"-s {tarball}: cannot write in {parent} (no such directory, or not writable); "
                         "choose another place for the tarball")
    partial = parent / f".{tarball.name}.{os.getpid()}.partial"
    start = time.monotonic()
    try:
        command.run(["tar", "--create", "--gzip", f"--file={partial}", f"--directory={root}",
                     "--numeric-owner", "--xattrs", "--xattrs-include=*", "--one-file-system", "."],
                    timeout=3600, error=TestbedError, what=f"writing the base to {tarball}")
        os.rename(partial, tarball)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    log.info("Saved the base as %s in %.1f s", tarball, time.monotonic() - start)


class CachedBaseBackend(Backend):
    """A base directory made once under ``CACHE/bases/NAME`` and shared by
    overlay instances; subclasses say how its files come to be."""

    capabilities = Capabilities(host_root=True, upper_dir=True, layers=True)

    def __init__(self, spec: BaseSpec, cache_dir: Path, base_name: str, lists_max_age: float = 86400,
                 tmpfs_size: str | None = "50%") -> None:
        super().__init__(spec, cache_dir)
        self.lists_max_age = lists_max_age
        self.tmpfs_size = tmpfs_size
        self.base_dir = cache_dir / "bases" / base_name
        self._lock: IO[str] | None = None

    @property
    def root(self) -> Path:
        """The base's root directory (the overlays' lower layer)."""
        return self.base_dir / "root"

    # What subclasses provide.

    def _check(self) -> None:
        """Raise :class:`UsageError` when the base cannot be made (before any lock)."""

    @abstractmethod
    def _stale(self, meta: dict[str, Any]) -> str | None:
        """Why the cached base described by ``meta`` must be made again, or None."""

    @abstractmethod
    def _make_root(self, root: Path) -> dict[str, Any]:
        """Put a Debian system into the new directory ``root``; return what meta.json keeps of it."""

    def _packages(self) -> Sequence[str]:
        """Packages the base must have (installed when missing)."""
        return ("eatmydata", *self.spec.extra_packages)

    # The shared procedure.

    def _do_prepare(self) -> None:
        self._check()
        self.base_dir.parent.mkdir(parents=True, exist_ok=True)
        resources.reap(self.cache_dir / "instances")
        resources.reap(self.base_dir.parent, ".build-*")
        lock = open(self.base_dir.parent / f"{self.base_dir.name}.lock", "a+")
        try:
            # Shared while the base is fine, so runs on one base go at once;
            # exclusive (waiting for the runs that use it) only to remake it.
            fcntl.flock(lock, fcntl.LOCK_SH)
            if self._work(quiet=True) is not None:
                fcntl.flock(lock, fcntl.LOCK_EX)
                work = self._work(quiet=False)
                if work == "build":
                    self._build()
                elif work == "lists":
                    self._update_lists(json.loads((self.base_dir / "meta.json").read_text()))
                fcntl.flock(lock, fcntl.LOCK_SH)
        except BaseException:
            lock.close()
            raise
        self._lock = lock

    def _work(self, quiet: bool) -> str | None:
        """What the cached base needs: "build", "lists" (a refresh) or None."""
        try:
            meta = json.loads((self.base_dir / "meta.json").read_text())
        except (OSError, ValueError):
            return "build"
        why = self._stale(meta)
        if why is not None:
            if not quiet:
                log.info("%s; making the base %s again", why, self.base_dir)
            return "build"
        if time.time() - meta.get("lists_updated", meta["created"]) > self.lists_max_age \
                or not (self.root / "var/cache/apt/pkgcache.bin").exists():  # a base made before caches were kept
            return "lists"
        if quiet:
            log.info("Using cached base %s (%.1f hours old)", self.base_dir,
                     (time.time() - meta["created"]) / 3600)
        return None

    def _update_lists(self, meta: dict[str, Any]) -> None:
        """Refresh the base's apt lists in place (we hold the exclusive lock)."""
        log.info("Refreshing the apt lists of the base %s", self.base_dir)
        copy_resolv_conf(self.root)
        with api_mounted(self.root) as chroot:
            apt_update(chroot)
        meta["lists_updated"] = time.time()
        (self.base_dir / "meta.json").write_text(json.dumps(meta))

    def _build(self) -> None:
        start = time.monotonic()
        with resources.building(self.base_dir) as tmp:
            root = tmp / "root"
            meta = self._make_root(root)
            finish_base(root, self._packages())
            now = time.time()
            (tmp / "meta.json").write_text(json.dumps({"created": now, "lists_updated": now, **meta}))
        log.info("Made base %s in %.1f s", self.base_dir, time.monotonic() - start)

    def _do_instance(self, layers: Sequence[Path] = ()) -> ContextManager[Chroot]:
        return overlay_instance([*layers, self.root], self.cache_dir, self.tmpfs_size, self.no_network)

    def save(self, tarball: Path) -> None:
        if self._lock is None:
            self.prepare()
        save_tree(self.root, tarball)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def describe(self) -> dict[str, Any]:
        """What the report says about the base."""
        described: dict[str, Any] = {"backend": self.name, "base": str(self.base_dir), "key": self.base_dir.name,
                                     **self.spec.__dict__}
        try:
            meta = json.loads((self.base_dir / "meta.json").read_text())
            described["created"] = meta["created"]
            described["age_seconds"] = round(time.time() - meta["created"])
            described["lists_updated"] = meta.get("lists_updated", meta["created"])
        except (OSError, ValueError, KeyError):
            pass
        return described
