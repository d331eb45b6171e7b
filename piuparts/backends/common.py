"""What the backends with a cached base directory share (debootstrap, tarball).

A base lives in generations: ``CACHE/bases/NAME/gen-N/`` (``root/`` and
``meta.json``), and ``CACHE/bases/NAME/current`` is a symbolic link to the
generation new runs use.  A generation is never changed once made: a run
holds a shared lock on it (``gen-N.lock``) for as long as it uses it, and
refreshing the apt lists makes the next generation (a copy, refreshed)
instead of changing the one in use.  Making a generation takes the builder
lock ``NAME.lock`` (exclusive, and only builders take it), so two runs
never make the same one at once, and no run ever upgrades a lock it holds:
a refresh never waits for the tests that use the old generation, which
goes once no run holds it.  Every generation is made under a temporary
owned directory and renamed into place; every base is finished the same way
(:func:`finish_base`).  Instances are overlays over ``gen-N/root/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from abc import abstractmethod
from pathlib import Path
from typing import IO, Any, ContextManager, Sequence

from piuparts import command, inroot, resources
from piuparts.backends.base import Backend, BaseSpec, Capabilities
from piuparts.backends.overlay import api_mounted, overlay_instance
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError, UsageError
from piuparts.log import HEADLINE

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


def dist_upgrade(chroot: Chroot) -> None:
    """``apt-get dist-upgrade`` of a base (keeping its configuration files), then
    its package cache emptied and apt's binary cache made again."""
    chroot.run(["apt-get", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
                "dist-upgrade"], timeout=1800, error=TestbedError, what="the dist-upgrade of the base")
    chroot.run(["apt-get", "clean"], level=logging.DEBUG)
    _gencaches(chroot)


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


def remove_unused_generations(base_dir: Path) -> list[Path]:
    """Remove every generation of the base ``base_dir`` but the current one
    that no run holds (an exclusive lock on it can be had at once); return them."""
    try:
        current = base_dir / os.readlink(base_dir / "current")
    except OSError:
        current = None
    removed = []
    for generation in sorted(base_dir.glob("gen-*")):
        if generation == current or not generation.is_dir():
            continue
        with open(generation.with_name(generation.name + ".lock"), "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a run still tests on it
            log.info("Removing the base generation %s: a newer one replaced it", generation)
            resources.remove_tree(generation)
            generation.with_name(generation.name + ".lock").unlink(missing_ok=True)
            removed.append(generation)
    return removed


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
        self._generation: Path | None = None

    @property
    def root(self) -> Path:
        """The root directory of the generation this backend holds (the overlays' lower layer)."""
        if self._generation is None:
            raise RuntimeError("the base is not prepared yet")
        return self._generation / "root"

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
        self.base_dir.mkdir(parents=True, exist_ok=True)
        resources.reap(self.cache_dir / "instances")
        resources.reap(self.base_dir.parent, ".build-*")
        resources.reap(self.base_dir, ".build-*")
        held = self._hold_current()
        if held is not None and self._work(held[0], quiet=True) is None:
            self._generation, self._lock = held
            return
        if held is not None:
            held[1].close()
        self._generation, self._lock = self._make_generation()
        self.remove_unused_generations()

    def _current(self) -> Path | None:
        """The generation new runs use, if there is one."""
        try:
            name = os.readlink(self.base_dir / "current")
        except OSError:
            return None
        return self.base_dir / name

    def _hold_current(self) -> tuple[Path, IO[str]] | None:
        """The current generation with a shared lock on it, or None if there is none.

        A generation can go between reading the pointer and taking the lock
        (a newer one replaced it and nobody held it): then look again."""
        for _ in range(100):
            generation = self._current()
            if generation is None:
                return None
            lock = open(generation.with_name(generation.name + ".lock"), "a+")
            fcntl.flock(lock, fcntl.LOCK_SH)
            if (generation / "meta.json").is_file():
                return generation, lock
            lock.close()
        raise TestbedError(f"the base {self.base_dir} keeps changing under this run; try again")

    def _make_generation(self) -> tuple[Path, IO[str]]:
        """Under the builder lock: make what the current generation lacks (a
        new base, or fresh lists in a copy) unless another run just did."""
        with open(self.base_dir.parent / f"{self.base_dir.name}.lock", "a+") as builder:
            fcntl.flock(builder, fcntl.LOCK_EX)
            self._forget_old_layout()
            current = self._current()
            work = "build" if current is None else self._work(current, quiet=False)
            if work is not None:
                try:
                    self._new_generation(current if work == "lists" else None)
                except BaseException:
                    with contextlib.suppress(OSError):
                        self.base_dir.rmdir()  # a first build that failed leaves no empty directory
                    raise
            held = self._hold_current()
            assert held is not None, "a generation was just made"
            return held

    def _new_generation(self, refresh: Path | None) -> None:
        """Make the next generation: a new base, or a copy of ``refresh`` with fresh apt lists."""
        numbers = [int(p.name[4:]) for p in self.base_dir.glob("gen-*") if p.name[4:].isdigit()]
        generation = self.base_dir / f"gen-{max(numbers, default=0) + 1}"
        if refresh is None:
            self._build(generation)
        else:
            self._refresh(refresh, generation)
        pointer = self.base_dir / f".current.{os.getpid()}"
        pointer.unlink(missing_ok=True)
        os.symlink(generation.name, pointer)
        os.rename(pointer, self.base_dir / "current")

    def _forget_old_layout(self) -> None:
        """A base of an older piuparts-ng (``NAME/root`` without generations):
        removed, as no run of that version holds it (they held ``NAME.lock``)."""
        if (self.base_dir / "root").is_dir():
            log.info("Removing the base %s made by an older piuparts-ng", self.base_dir / "root")
            resources.unmount_all(self.base_dir / "root")
            shutil.rmtree(self.base_dir / "root")
            (self.base_dir / "meta.json").unlink(missing_ok=True)

    def remove_unused_generations(self) -> list[Path]:
        """Remove every generation but the current one that no run holds; return them."""
        return remove_unused_generations(self.base_dir)

    def _work(self, generation: Path, quiet: bool) -> str | None:
        """What the generation needs: "build", "lists" (a refresh) or None."""
        try:
            meta = json.loads((generation / "meta.json").read_text())
        except (OSError, ValueError):
            return "build"
        why = self._stale(meta)
        if why is not None:
            if not quiet:
                log.info("%s; making the base %s again", why, self.base_dir)
            return "build"
        if time.time() - meta.get("lists_updated", meta["created"]) > self.lists_max_age \
                or not (generation / "root/var/cache/apt/pkgcache.bin").exists():  # a base made before caches were kept
            return "lists"
        if quiet:
            log.info("Using cached base %s (%.1f hours old)", generation,
                     (time.time() - meta["created"]) / 3600)
        return None

    def _refresh(self, old: Path, generation: Path) -> None:
        """The next generation: ``old`` copied, with its apt lists refreshed and
        the base brought up to date with them: a point release since the base
        was made is then not upgraded by every test, its changes blamed on
        the test."""
        log.info("Refreshing the apt lists of the base %s as %s", old, generation.name, extra=HEADLINE)
        meta = json.loads((old / "meta.json").read_text())
        with resources.building(generation) as tmp:
            command.run(["cp", "-a", "--one-file-system", "--", str(old / "root"), str(tmp / "root")],
                        timeout=1800, error=TestbedError, what="copying the base for its lists refresh",
                        level=logging.DEBUG)
            copy_resolv_conf(tmp / "root")
            with api_mounted(tmp / "root") as chroot:
                apt_update(chroot)
                dist_upgrade(chroot)
            meta["lists_updated"] = time.time()
            (tmp / "meta.json").write_text(json.dumps(meta))

    def _build(self, generation: Path) -> None:
        start = time.monotonic()
        with resources.building(generation) as tmp:
            root = tmp / "root"
            meta = self._make_root(root)
            finish_base(root, self._packages())
            now = time.time()
            (tmp / "meta.json").write_text(json.dumps({"created": now, "lists_updated": now, **meta}))
        log.info("Made base %s in %.1f s", generation, time.monotonic() - start)

    def _do_instance(self, layers: Sequence[Path] = ()) -> ContextManager[Chroot]:
        return overlay_instance([*layers, self.root], self.cache_dir, self.tmpfs_size, self.no_network)

    def save(self, tarball: Path) -> None:
        if self._lock is None:
            self.prepare()
        save_tree(self.root, tarball)

    def close(self) -> None:
        """Let go of the generation this run used; remove it if a newer one replaced it and no run holds it."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
            self.remove_unused_generations()

    def describe(self) -> dict[str, Any]:
        """What the report says about the base: which generation, made when, lists refreshed when."""
        described: dict[str, Any] = {"backend": self.name, "base": str(self.base_dir), "key": self.base_dir.name,
                                     **self.spec.__dict__}
        if self._generation is None:
            return described
        described["generation"] = self._generation.name
        try:
            meta = json.loads((self._generation / "meta.json").read_text())
        except (OSError, ValueError):
            return described
        described["created"] = meta.get("created")
        described["age_seconds"] = round(time.time() - meta.get("created", time.time()))
        described["lists_updated"] = meta.get("lists_updated", meta.get("created"))
        return described
