"""A pids cgroup per instance: a fork bomb inside stops at its limit.

Root is exempt from RLIMIT_NPROC, so only the kernel's pids controller
bounds how many processes (and threads) a maintainer script can start: each
instance gets a cgroup of its own under ``piuparts-ng/`` in the pids
hierarchy (cgroup v1's pids controller, or cgroup v2 where it has one),
with ``pids.max`` set, and every command inside joins it before anything
of the instance runs (the seccomp launcher writes its own PID into
``cgroup.procs``); what they fork stays in it.

A cgroup is named after the run that made it (PID and start time), so a
run killed before it removed its own is found and removed by the next.
Where no pids controller is mounted (some containers), instances run
without the limit, said once in the log.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from piuparts import resources

log = logging.getLogger("piuparts")

#: Processes and threads an instance may hold at once: far above what a
#: package's scripts and daemons use, far below the host's pid_max.
DEFAULT_MAX = 4096
#: The directory of piuparts-ng's cgroups in the hierarchy.
TOP = "piuparts-ng"
_counter = itertools.count()
_warned = False


def _mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, super options) of each mount we see."""
    found = []
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) >= 5 and len(rest) >= 3:
            found.append((fields[4].replace("\\040", " "), rest[0], rest[2]))
    return found


def hierarchy() -> Path | None:
    """Where the pids controller is mounted, with ``piuparts-ng/`` made
    (its controller enabled there, on cgroup v2); None where there is none
    (``ip netns exec`` mounts a sysfs of its own over /sys, which hides the
    cgroup mounts: enter a network namespace with ``nsenter --net`` instead)."""
    return _find(_mountinfo(), Path("/"))


def _find(mounts: list[tuple[str, str, str]], prefix: Path) -> Path | None:
    for point, fstype, options in mounts:
        if fstype == "cgroup" and "pids" in options.split(","):
            top = prefix / point.lstrip("/") / TOP
            try:
                top.mkdir(exist_ok=True)
            except OSError as err:
                log.debug("pids cgroup at %s: cannot make %s (%s)", point, top, err)
                continue
            return top
    for point, fstype, _ in mounts:
        root = prefix / point.lstrip("/")
        if fstype == "cgroup2" and "pids" in _read(root / "cgroup.controllers").split():
            try:
                if "pids" not in _read(root / "cgroup.subtree_control").split():
                    (root / "cgroup.subtree_control").write_text("+pids")
                top = root / TOP
                top.mkdir(exist_ok=True)
                if "pids" not in _read(top / "cgroup.subtree_control").split():
                    (top / "cgroup.subtree_control").write_text("+pids")
                return top
            except OSError as err:
                log.debug("cgroup v2 at %s: cannot enable its pids controller (%s)", root, err)
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _members(group: Path) -> list[int]:
    return [int(pid) for pid in _read(group / "cgroup.procs").split()]


def _end(group: Path) -> None:
    """SIGKILL everything in ``group`` until it is empty (10 s at most), then remove it."""
    deadline = time.monotonic() + 10
    while (members := _members(group)) and time.monotonic() < deadline:
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    for _ in range(100):
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY while the last of them exit
            time.sleep(0.02)
    log.warning("Could not remove the cgroup %s: processes are still in it", group)


def dead_groups(top: Path | None = None) -> list[Path]:
    """The cgroups of runs that are no longer running (none where there is no pids controller)."""
    top = top or hierarchy()
    if top is None:
        return []
    dead = []
    for group in sorted(top.iterdir()):
        pid, _, rest = group.name.partition("-")
        if group.is_dir() and pid.isdigit() and resources.start_time(int(pid)) != rest.rpartition("-")[0]:
            dead.append(group)
    return dead


def reap(top: Path | None = None) -> list[Path]:
    """End what is left in the cgroups of runs that are no longer running, and remove them."""
    groups = dead_groups(top)
    for group in groups:
        log.info("Removing the cgroup %s, left by a run that is no longer running", group)
        _end(group)
    return groups


@contextmanager
def instance_cgroup(max_pids: int = DEFAULT_MAX) -> Iterator[Path | None]:
    """A new pids cgroup limited to ``max_pids``: its ``cgroup.procs`` (None
    where the host has no pids controller).  At the end, whatever is still
    in it is killed and it is removed."""
    global _warned
    top = hierarchy()
    if top is None:
        if not _warned:
            log.warning("No pids cgroup controller is mounted here (/proc/self/mountinfo): a fork bomb "
                        "inside an instance is not bounded")
            _warned = True
        yield None
        return
    reap(top)
    pid = os.getpid()
    group = top / f"{pid}-{resources.start_time(pid)}-{next(_counter)}"
    with resources.signals_deferred():
        group.mkdir()
        try:
            (group / "pids.max").write_text(str(max_pids))
        except BaseException:
            group.rmdir()
            raise
    try:
        yield group / "cgroup.procs"
    finally:
        with resources.signals_deferred():
            _end(group)
