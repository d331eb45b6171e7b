"""Overlay instances over a read-only base directory.

Shared by every backend whose base is a directory on the host (debootstrap,
tarball, existing): the instance is an overlayfs whose lower layer is the
base and whose upper layer holds everything the test changes, so starting
one costs a few mounts and the changes can be read from the upper layer.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from piuparts import command, inroot, resources
from piuparts.backends import pids
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


#: Linux's capabilities by number (linux/capability.h), as capsh names them.
CAPABILITY_NAMES = (
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
    "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
    "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
    "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
    "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
    "checkpoint_restore")
#: The only capabilities a command inside keeps (an allow-list: one the
#: kernel adds later is dropped too).  What dpkg and maintainer scripts do as
#: root: give files to users and groups (chown, fowner, fsetid for setuid and
#: setgid bits dpkg-statoverride sets), write files whatever their mode
#: (dac_override), become another user (setuid, setgid: adduser, runuser,
#: su), end a daemon they started (kill), setcap(8) (setfcap), a service
#: bound to a port under 1024 in a postinst (net_bind_service), PAM and
#: login programs writing audit records (audit_write).
#:
#: Left out, with what each would open: dac_read_search (open_by_handle_at
#: reaches host files past the chroot), sys_chroot (a chroot(2) climb out),
#: sys_ptrace (the harness's own processes in the instance's namespaces,
#: and /proc/PID/root of any process), sys_admin (mounts, namespaces,
#: sethostname and most administration), sys_module, sys_rawio, mknod (a
#: disk of the host), sys_time, sys_boot, syslog, sys_pacct, sys_resource
#: (past the limits the harness sets), sys_nice, net_admin and net_raw (the
#: host's network configuration and raw packets, where the network is the
#: host's), linux_immutable (an immutable file the harness cannot remove
#: afterwards), setpcap (handing capabilities on), ipc_lock, ipc_owner,
#: lease, sys_tty_config, net_broadcast, the audit and MAC administration,
#: wake_alarm, block_suspend, perfmon, bpf and checkpoint_restore (kernel
#: interfaces no package needs to install).
ALLOWED_CAPABILITIES = ("chown", "dac_override", "fowner", "fsetid", "kill", "setuid", "setgid", "setfcap",
                        "net_bind_service", "audit_write")
#: The seccomp launcher: the first program of every command inside (see its docstring).
SECCOMP_EXEC = Path(__file__).with_name("seccomp_exec.py")
#: Debian's own Python, which has python3-seccomp (never a venv's).
SYSTEM_PYTHON = "/usr/bin/python3"


def _last_capability() -> int:
    try:
        return int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        return len(CAPABILITY_NAMES) - 1


def dropped_capabilities(keep: Sequence[str] = ALLOWED_CAPABILITIES) -> list[str]:
    """Every capability the running kernel has but ``keep``, as capsh takes
    them: by name, or by number for one newer than :data:`CAPABILITY_NAMES`."""
    names = [CAPABILITY_NAMES[n] if n < len(CAPABILITY_NAMES) else str(n) for n in range(_last_capability() + 1)]
    return [name if name.isdigit() else f"cap_{name}" for name in names if name not in keep]


def confined(root: Path, keep: Sequence[str] = ALLOWED_CAPABILITIES, cgroup: Path | None = None) -> list[str]:
    """The argv prefix that confines a command to ``root``: into the pids
    ``cgroup`` (its ``cgroup.procs``, when there is one) and the seccomp
    filter first (both inherited by everything after), then the host's capsh
    chroots into ``root``, drops every capability but ``keep`` from the
    bounding set and clears the inheritable and ambient ones, so nothing of
    the instance runs before that (``env`` then finds the command on PATH
    inside)."""
    joins = ["--cgroup", str(cgroup)] if cgroup is not None else []
    return [SYSTEM_PYTHON, "-I", "-S", str(SECCOMP_EXEC), *joins, "capsh", f"--chroot={root}",
            f"--drop={','.join(dropped_capabilities(keep))}", "--inh=", "--noamb", "--shell=/usr/bin/env", "--"]


_seccomp_checked = False


def check_confinement() -> None:
    """A one-line TestbedError when the confinement cannot be set up here
    (python3-seccomp or capsh missing); checked once a process."""
    global _seccomp_checked
    if _seccomp_checked:
        return
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        raise TestbedError(f"{SYSTEM_PYTHON} is missing: the instance's seccomp filter needs it "
                           "(apt-get install python3 python3-seccomp)")
    result = command.run([SYSTEM_PYTHON, "-I", "-S", str(SECCOMP_EXEC), "--check"], level=logging.DEBUG)
    if not result.ok:
        raise TestbedError(result.output.strip().splitlines()[-1] if result.output.strip() else
                           "the instance's seccomp filter cannot be loaded (apt-get install python3-seccomp)")
    _seccomp_checked = True


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
    #: The ``cgroup.procs`` of the instance's pids cgroup (None: the host has none).
    cgroup: Path | None = None

    def enter(self, network: bool = False) -> list[str]:
        """The argv prefix that runs a host command in them (with the host's
        network when ``network``, for downloads)."""
        kinds = ["pid", "mnt", "uts", "ipc"] + ([] if network or not self.network else ["net"])
        flag = {"mnt": "mount"}
        return ["nsenter", *(f"--{flag.get(k, k)}=/proc/{self.holder}/ns/{k}" for k in kinds), "--"]


def _start_namespaces(root: Path, network: bool, cgroup: Path | None = None) -> Namespaces:
    """PID, mount, UTS and IPC namespaces (and a network namespace when
    ``network``) for the instance, held by ``sleep infinity`` chrooted inside.

    The holder's root is inside the instance, so ending the processes rooted
    there ends the holder and with it (the PID namespace's init) every
    process in them; the mount namespace, and every mount made in it, goes
    when its last process does.
    """
    kinds = ["--pid", "--mount", "--uts", "--ipc"] + (["--net"] if network else [])
    # The holder is confined as the scripts are, without a single capability:
    # nothing in the instance can gain anything from it.
    unshare = command.spawn(["unshare", *kinds, "--propagation", "private", "--kill-child", "--",
                             *confined(root, keep=(), cgroup=cgroup), "sleep", "infinity"])
    deadline = time.monotonic() + 10
    children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children")
    holder: list[str] = []
    real = os.path.realpath(root)  # as /proc names it, a cache directory reached through a link too
    while not holder or _root_of(holder[0]) != real:  # in place: chrooted, capabilities gone
        if unshare.poll() is not None or time.monotonic() > deadline:
            if unshare.poll() is None:
                unshare.kill()
                unshare.wait()
            raise TestbedError("could not start the instance's namespaces with unshare (is the kernel's "
                               "PID, mount, UTS, IPC or network namespace support disabled?)")
        time.sleep(0.002)
        holder = children.read_text().split() if children.exists() else []
    return Namespaces(unshare, int(holder[0]), network, cgroup)


def _root_of(pid: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/root")
    except OSError:
        return None


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


def hosts_file(hostname: str) -> str:
    """The /etc/hosts an installed Debian system has (the installer's
    netcfg writes it so): the machine's own name on 127.0.1.1."""
    return (f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")


def _name_the_host(root: Path) -> None:
    """An /etc/hosts naming the instance's host name, when the base has none
    (debootstrap and mmdebstrap write none): without it ``hostname -f``
    fails whenever the name is not in the DNS, and so does a postinst
    that asks it (nova-common's), although it runs on any installed system."""
    if inroot.lstat(root, "/etc/hosts") is None:
        inroot.write_text(root, "/etc/hosts", hosts_file(socket.gethostname()))


def _inside(enter: list[str], root: Path, cgroup: Path | None = None) -> list[str]:
    """The argv prefix of a command inside: in the namespaces, then
    :func:`confined` to ``root`` (and its pids ``cgroup``)."""
    return [*enter, *confined(root, cgroup=cgroup)]


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
    host's resolv.conf (and an /etc/hosts naming the host when there is none).  Commands inside run :func:`confined`: the seccomp
    filter, the root, only :data:`ALLOWED_CAPABILITIES`, and a pids cgroup
    of the instance's own (:mod:`piuparts.backends.pids`).  At the end
    every process in it is ended, and the namespaces go with their mounts
    (the root itself is the caller's).
    """
    check_confinement()
    with pids.instance_cgroup() as cgroup:
        spaces: Namespaces | None = None
        try:
            with resources.signals_deferred():
                make_missing_nodes(root)  # in the instance (its upper layer), never in the base
                spaces = _start_namespaces(root, no_network, cgroup)
                _mount_api(root, spaces)
                if resolver:
                    _copy_resolv_conf(root)
                    _name_the_host(root)
            online = _inside(spaces.enter(network=True), root, cgroup) if no_network else None
            # The mounter enters the mount namespace alone: no process of the
            # harness with its privileges is ever visible in the instance's PID namespace.
            mounter = ("nsenter", f"--mount=/proc/{spaces.holder}/ns/mnt", "--")
            yield Chroot(root, _inside(spaces.enter(), root, cgroup), upper=upper, lower=lower,
                         helpers=(spaces.holder,), mounter=mounter, online_prefix=online,
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
        yield Chroot(view, tuple(confined(view)), upper=chroot.upper, lower=chroot.base, env=dict(chroot.env))
    finally:
        with resources.signals_deferred():
            command.run(["umount", str(view)], error=TestbedError, what="unmounting the base view",
                        level=logging.DEBUG)
            view.rmdir()
