"""Overlay instances over a read-only base directory.

Shared by every backend whose base is a directory on the host (debootstrap,
tarball, existing): the instance is an overlayfs whose lower layer is the
base and whose upper layer holds everything the test changes, so starting
one costs a few mounts and the changes can be read from the upper layer.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from piuparts import command, inroot, resources
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


#: Capabilities no command inside keeps (dropped from the bounding set once
#: the command is chrooted, before anything of the instance runs):
#: chroot(2) (a root process could chroot its way back out to the host's
#: root), mounting, hostname and most other administration (sys_admin),
#: kernel modules, raw I/O and device nodes (a disk of the host), the
#: clock, reboot, the kernel log, network configuration (the host's, unless
#: --no-network), opening files by handle past the root (dac_read_search).
DROPPED_CAPABILITIES = ("sys_chroot", "sys_admin", "sys_module", "sys_rawio", "mknod", "sys_time", "sys_boot",
                        "syslog", "net_admin", "dac_read_search", "mac_admin", "mac_override", "sys_pacct",
                        "wake_alarm", "block_suspend", "audit_control")
#: Parts of the instance's /proc made read-only: sysctls (binfmt_misc among
#: them), the magic SysRq key and the kernel's interfaces to hardware.
READ_ONLY_PROC = ("sys", "sysrq-trigger", "bus", "fs", "irq")
#: Mounts the API filesystems in the instance's namespaces: $1 is the root.
_MOUNT_API = """set -e
mount -t proc proc "$1/proc"
for part in {read_only}; do
    if [ -e "$1/proc/$part" ]; then mount -o bind,ro "$1/proc/$part" "$1/proc/$part"; fi
done
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$1/dev/pts"
mount --bind "$1/dev/pts/ptmx" "$1/dev/ptmx"
mount -t tmpfs -o mode=1777,size=256m tmpfs "$1/dev/shm"
""".format(read_only=" ".join(READ_ONLY_PROC))


@contextmanager
def api_mounted(root: Path) -> Iterator[Chroot]:
    """``root`` itself (no overlay) with the API filesystems, for finishing a
    base: in namespaces of its own as an instance (the network is the host's);
    mount points and device nodes it lacks are there only meanwhile."""
    created: list[Path] = []
    try:
        with resources.signals_deferred():
            created = make_missing_nodes(root)
        with booted(root, resolver=False) as chroot:
            yield chroot
    finally:
        with resources.signals_deferred():
            _remove_nodes(created)


def _remove_nodes(created: list[Path]) -> None:
    """Remove what :func:`make_missing_nodes` created (a directory only when empty)."""
    for path in reversed(created):
        try:
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError:
            log.debug("Left %s in place: it is no longer empty", path)


@dataclass(frozen=True)
class Namespaces:
    """The namespaces of one instance, held open by a ``sleep`` chrooted inside."""

    #: The ``unshare`` that made them (reaped at the end).
    unshare: subprocess.Popen[bytes]
    #: The holder's host PID: the namespaces' init, whose end ends everything in them.
    holder: int
    network: bool

    def enter(self, network: bool = False) -> list[str]:
        """The argv prefix that runs a host command in them (with the host's
        network when ``network``, for downloads)."""
        kinds = ["pid", "mnt", "uts", "ipc"] + ([] if network or not self.network else ["net"])
        flag = {"mnt": "mount"}
        return ["nsenter", *(f"--{flag.get(k, k)}=/proc/{self.holder}/ns/{k}" for k in kinds), "--"]


def _start_namespaces(root: Path, network: bool) -> Namespaces:
    """PID, mount, UTS and IPC namespaces (and a network namespace when
    ``network``) for the instance, held by ``sleep infinity`` chrooted inside.

    The holder's root is inside the instance, so ending the processes rooted
    there ends the holder and with it (the PID namespace's init) every
    process in them; the mount namespace, and every mount made in it, goes
    when its last process does.
    """
    kinds = ["--pid", "--mount", "--uts", "--ipc"] + (["--net"] if network else [])
    unshare = command.spawn(["unshare", *kinds, "--propagation", "private", "--kill-child", "--",
                             "chroot", str(root), "sleep", "infinity"])
    deadline = time.monotonic() + 10
    children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
    while not (holder := children.read_text().split() if children.exists() else []):
        if unshare.poll() is not None or time.monotonic() > deadline:
            raise TestbedError("could not start the instance's namespaces with unshare (is the kernel's "
                               "PID, mount, UTS, IPC or network namespace support disabled?)")
        time.sleep(0.002)
    return Namespaces(unshare, int(holder[0]), network)


def _mount_api(root: Path, spaces: Namespaces) -> None:
    """proc (of the instance's PID namespace, parts read-only), a private devpts
    with its own ptmx, and /dev/shm; all in the instance's mount namespace."""
    ptmx = inroot.lstat(root, "/dev/ptmx")
    if ptmx is None or stat.S_ISLNK(ptmx.st_mode):  # a link to pts/ptmx, or missing: a file to mount over
        inroot.write_bytes(root, "/dev/ptmx", b"")
    command.run([*spaces.enter(), "sh", "-c", _MOUNT_API, "mount-api", str(root)], error=TestbedError,
                what="mounting proc, devpts and /dev/shm", level=logging.DEBUG)
    if spaces.network:
        command.run([*spaces.enter(), "ip", "link", "set", "lo", "up"], error=TestbedError,
                    what="bringing up the loopback of the instance's network namespace", level=logging.DEBUG)


def _copy_resolv_conf(root: Path) -> None:
    try:
        inroot.copy_file(Path("/etc/resolv.conf"), root, "/etc/resolv.conf", mode=0o644)
    except OSError:
        pass  # no resolver configured on the host: apt will say so


def _inside(enter: list[str], root: Path) -> list[str]:
    """The argv prefix of a command inside: in the namespaces, chrooted into
    ``root`` and without :data:`DROPPED_CAPABILITIES`.  capsh is the host's
    and does the chroot itself, so nothing of the instance runs before the
    capabilities are gone (``env`` then finds the command on PATH inside)."""
    drop = ",".join(f"cap_{cap}" for cap in DROPPED_CAPABILITIES)
    return [*enter, "capsh", f"--chroot={root}", f"--drop={drop}", "--shell=/usr/bin/env", "--"]


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


@contextmanager
def booted(root: Path, upper: Path | None = None, lower: Path | None = None,
           no_network: bool = False, resolver: bool = True, layers: Sequence[Path] = (),
           base: Path | None = None) -> Iterator[Chroot]:
    """Bring the mounted root filesystem ``root`` to life and yield its Chroot.

    It gets PID, mount, UTS and IPC namespaces of its own (and, with
    ``no_network``, a network namespace with only a loopback), the API
    filesystems mounted there (proc of that PID namespace with /proc/sys
    read-only, a private devpts, /dev/shm) and, with ``resolver``, the
    host's resolv.conf.  Commands inside run without the capabilities of
    :data:`DROPPED_CAPABILITIES`.  At the end every process in it is ended,
    and the namespaces go with their mounts (the root itself is the
    caller's).
    """
    spaces: Namespaces | None = None
    try:
        with resources.signals_deferred():
            make_missing_nodes(root)  # in the instance (its upper layer), never in the base
            spaces = _start_namespaces(root, no_network)
            _mount_api(root, spaces)
            if resolver:
                _copy_resolv_conf(root)
        online = _inside(spaces.enter(network=True), root) if no_network else None
        yield Chroot(root, _inside(spaces.enter(), root), upper=upper, lower=lower, helpers=(spaces.holder,),
                     mounter=tuple(spaces.enter(network=True)), online_prefix=online,
                     layers=tuple(layers), base=base if layers else None)
    finally:
        with resources.signals_deferred():
            resources.kill_processes_under(root)  # the holder too, so unshare exits and the namespaces go
            if spaces is not None:
                spaces.unshare.wait(timeout=10)


@contextmanager
def overlay_instance(lower: Path | Sequence[Path], cache_dir: Path,
                     tmpfs_size: str | None = "50%", no_network: bool = False) -> Iterator[Chroot]:
    """Mount an overlay over ``lower`` and yield a Chroot; remove it all afterwards.

    ``lower`` is one directory or several, topmost first (a cached layer
    over the base).  With ``tmpfs_size`` the upper layer lives in a tmpfs
    of that size (dpkg on an overlay whose upper layer is on disk is about
    30 % slower); with None, on disk under the cache directory.
    ``no_network``: see :func:`booted`.
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
        with booted(root, upper=upper, lower=merged, no_network=no_network, layers=lowers[:-1],
                    base=lowers[-1]) as chroot:
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
