"""Overlay instances over a read-only base directory.

Shared by every backend whose base is a directory on the host (debootstrap,
tarball, existing): the instance is an overlayfs whose lower layer is the
base and whose upper layer holds everything the test changes, so starting
one costs a few mounts and the changes can be read from the upper layer.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from piuparts import command, resources
from piuparts.chroot import Chroot
from piuparts.errors import TestbedError

log = logging.getLogger("piuparts")

#: Options that keep the upper directory self-describing (no redirects,
#: no metadata-only copies) so that it alone says what changed.
OVERLAY_OPTIONS = "redirect_dir=off,metacopy=off,index=off,xino=off"


def _mount(*args: str) -> None:
    command.run(["mount", *args], error=TestbedError, what=f"mounting {args[-1]}", level=logging.DEBUG)


#: Mount points and device nodes a system needs and a base may lack (a
#: tarball made without /dev): (path, major, minor); a directory without.
NEEDED_NODES: tuple[tuple[str, int | None, int | None], ...] = (
    ("proc", None, None), ("dev", None, None), ("dev/pts", None, None), ("dev/shm", None, None),
    ("dev/null", 1, 3), ("dev/zero", 1, 5), ("dev/full", 1, 7), ("dev/random", 1, 8), ("dev/urandom", 1, 9),
    ("dev/tty", 5, 0), ("dev/ptmx", 5, 2))


def make_missing_nodes(root: Path) -> list[Path]:
    """Create in ``root`` the mount points and device nodes of NEEDED_NODES it
    lacks; return what was created, in creation order."""
    created = []
    for inner, major, minor in NEEDED_NODES:
        path = root / inner
        if path.exists() or path.is_symlink():
            continue
        if major is None:
            path.mkdir(mode=0o755)
        else:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor or 0))
            path.chmod(0o666)
        created.append(path)
    return created


@contextmanager
def api_mounted(root: Path) -> Iterator[Chroot]:
    """``root`` itself (no overlay) with the API filesystems, for finishing a
    base; mount points and device nodes it lacks are there only meanwhile."""
    created: list[Path] = []
    try:
        with resources.signals_deferred():
            created = make_missing_nodes(root)
            _mount_api(root)
        yield Chroot(root, ("chroot", str(root)))
    finally:
        with resources.signals_deferred():
            resources.kill_processes_under(root)
            resources.unmount_all(root)
            _remove_nodes(created)


def _remove_nodes(created: list[Path]) -> None:
    """Remove what :func:`make_missing_nodes` created (a directory only when empty)."""
    for path in reversed(created):
        try:
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError:
            log.debug("Left %s in place: it is no longer empty", path)


def _start_pid_namespace(root: Path) -> tuple[list[str], int, subprocess.Popen[bytes]]:
    """A PID namespace for the instance, held by ``sleep infinity`` chrooted inside.

    Returns the argv prefix that runs a command in the namespace, the
    holder's host PID and the ``unshare`` process (to be reaped at the end).  The holder's root is inside the instance, so ending
    the processes rooted there ends the holder, and with it (it is the
    namespace's init) every process in the namespace.
    """
    unshare = command.spawn(["unshare", "--pid", "--kill-child", "--", "chroot", str(root), "sleep", "infinity"])
    deadline = time.monotonic() + 10
    children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
    while not (holder := children.read_text().split() if children.exists() else []):
        if unshare.poll() is not None or time.monotonic() > deadline:
            raise TestbedError("could not start a PID namespace with unshare --pid (is the kernel's "
                               "user and PID namespace support disabled?)")
        time.sleep(0.002)
    return ["nsenter", f"--pid=/proc/{unshare.pid}/ns/pid_for_children", "--"], int(holder[0]), unshare


def _mount_api(root: Path, enter: list[str] | None = None) -> None:
    """proc (of the instance's PID namespace), a private devpts with its own ptmx, and /dev/shm."""
    command.run([*(enter or []), "mount", "-t", "proc", "proc", str(root / "proc")],
                error=TestbedError, what="mounting proc", level=logging.DEBUG)
    _mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=0620,gid=5", "devpts", str(root / "dev/pts"))
    ptmx = root / "dev/ptmx"
    if ptmx.is_symlink() or not ptmx.exists():
        ptmx.unlink(missing_ok=True)
        ptmx.touch()
    _mount("--bind", str(root / "dev/pts/ptmx"), str(ptmx))
    _mount("-t", "tmpfs", "-o", "mode=1777,size=256m", "tmpfs", str(root / "dev/shm"))


def _copy_resolv_conf(root: Path) -> None:
    target = root / "etc/resolv.conf"
    if target.is_symlink():
        target.unlink()
    try:
        shutil.copyfile("/etc/resolv.conf", target)
    except OSError:
        pass  # no resolver configured on the host: apt will say so


@contextmanager
def owned_instance_dir(cache_dir: Path) -> Iterator[Path]:
    """A new instance directory under ``cache_dir/instances``, recorded as this
    run's; at the end it is removed with every mount and undo record in it."""
    top = resources.make_owned_dir(cache_dir / "instances")
    try:
        yield top
    finally:
        with resources.signals_deferred():
            stop = time.monotonic()
            resources.remove_tree(top)
            log.info("Instance removed in %.3f s", time.monotonic() - stop)


API_MOUNTS = ("dev/shm", "dev/ptmx", "dev/pts", "proc")


@contextmanager
def booted(root: Path, upper: Path | None = None, lower: Path | None = None,
           run: Sequence[str] | None = None, layers: Sequence[Path] = (),
           base: Path | None = None) -> Iterator[Chroot]:
    """Bring the mounted root filesystem ``root`` to life and yield its Chroot.

    It gets a PID namespace of its own, the API filesystems (proc of that
    namespace, a private devpts, /dev/shm) and the host's resolv.conf.  At
    the end every process in it is ended and those mounts are undone (the
    root itself is the caller's).  ``run`` is the argv prefix that enters
    the root, run inside the namespace (default ``chroot ROOT``; the schroot
    backend's is ``schroot --run-session ...``).
    """
    unshare: subprocess.Popen[bytes] | None = None
    try:
        with resources.signals_deferred():
            make_missing_nodes(root)  # in the instance (its upper layer), never in the base
            enter, holder, unshare = _start_pid_namespace(root)
            _mount_api(root, enter)
            _copy_resolv_conf(root)
        entering = tuple(run) if run is not None else ("chroot", str(root))
        yield Chroot(root, (*enter, *entering), upper=upper, lower=lower, helpers=(holder,),
                     layers=tuple(layers), base=base if layers else None)
    finally:
        with resources.signals_deferred():
            resources.kill_processes_under(root)  # the holder too, so unshare exits
            if unshare is not None:
                unshare.wait(timeout=10)
            mounted = set(resources.mounts_under(root))
            for inner in API_MOUNTS:
                if str(root / inner) in mounted:
                    command.run(["umount", str(root / inner)], error=TestbedError,
                                what=f"unmounting {inner}", level=logging.DEBUG)


@contextmanager
def overlay_instance(lower: Path | Sequence[Path], cache_dir: Path,
                     tmpfs_size: str | None = "50%") -> Iterator[Chroot]:
    """Mount an overlay over ``lower`` and yield a Chroot; remove it all afterwards.

    ``lower`` is one directory or several, topmost first (a cached layer
    over the base).  With ``tmpfs_size`` the upper layer lives in a tmpfs
    of that size (dpkg on an overlay whose upper layer is on disk is about
    30 % slower); with None, on disk under the cache directory.
    """
    start = time.monotonic()
    lowers = [lower] if isinstance(lower, Path) else list(lower)
    with owned_instance_dir(cache_dir) as top:
        with resources.signals_deferred():
            changes, root = top / "rw", top / "root"
            changes.mkdir()
            root.mkdir()
            if tmpfs_size:
                _mount("-t", "tmpfs", "-o", f"size={tmpfs_size},mode=0755", "tmpfs", str(changes))
            upper, work = changes / "upper", changes / "work"
            upper.mkdir()
            work.mkdir()
            lowerdir = ":".join(str(p) for p in lowers)
            _mount("-t", "overlay", "overlay", "-o",
                   f"lowerdir={lowerdir},upperdir={upper},workdir={work},{OVERLAY_OPTIONS}", str(root))
            merged = lowers[0]
            if len(lowers) > 1:  # the diff reads one lower tree: a read-only view of the layers
                merged = top / "lower"
                merged.mkdir()
                _mount("-t", "overlay", "overlay", "-o", f"lowerdir={lowerdir},{OVERLAY_OPTIONS}", str(merged))
        with booted(root, upper=upper, lower=merged, layers=lowers[:-1], base=lowers[-1]) as chroot:
            log.info("Instance %s started in %.3f s", root, time.monotonic() - start)
            yield chroot


@contextmanager
def base_view(chroot: Chroot) -> Iterator[Chroot]:
    """A read-only view of ``chroot`` without its dependency layers: the
    instance's upper directory over the base alone, mounted beside the
    instance's root for as long as the block lasts.

    What the system was before the test (without the layer's packages)
    is read there: the package list, users, alternatives, diversions.
    Only queries run in it (no maintainer script, no proc).
    """
    assert chroot.upper is not None and chroot.base is not None, "only layered overlay instances have a base view"
    view = chroot.root.parent / "view"
    with resources.signals_deferred():
        view.mkdir(exist_ok=True)
        _mount("-t", "overlay", "overlay", "-o", f"lowerdir={chroot.upper}:{chroot.base},{OVERLAY_OPTIONS}",
               str(view))
    try:
        # The same upper directory over the base alone: the checks' fast paths hold.
        yield Chroot(view, ("chroot", str(view)), upper=chroot.upper, lower=chroot.base, env=dict(chroot.env))
    finally:
        with resources.signals_deferred():
            command.run(["umount", str(view)], error=TestbedError, what="unmounting the base view",
                        level=logging.DEBUG)
            view.rmdir()
