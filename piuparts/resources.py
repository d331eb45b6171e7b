"""The record of everything a run makes, and the reaping of what dead runs left.

A run makes its instances under ``CACHE/instances/PID-TOKEN/``; the
directory and its ``owner`` file (PID and process start time) exist before
anything is mounted there, so the directory *is* the record.  Every mount a
run makes lies under it.  When its owner is dead, :func:`reap` ends the
processes rooted inside, unmounts everything below (deepest first, found
in /proc/self/mountinfo) and only then removes the directory, refusing to
cross a mount point.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import time
from pathlib import Path

from piuparts import command
from piuparts.errors import TestbedError

log = logging.getLogger("piuparts")


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def make_owned_dir(parent: Path, prefix: str = "") -> Path:
    """A new directory under ``parent`` recorded as this process's."""
    parent.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = parent / f"{prefix}{pid}-{os.urandom(3).hex()}"
    path.mkdir(mode=0o755)
    (path / "owner").write_text(f"{pid} {_start_time(pid)}\n")
    return path


def owner_alive(path: Path) -> bool:
    """True while the process that made ``path`` runs (PID reuse is told apart)."""
    try:
        pid_text, start = (path / "owner").read_text().split()
    except (OSError, ValueError):
        # No owner file yet: a run is between mkdir and writing it, or died there.
        try:
            return time.time() - path.stat().st_mtime < 60
        except OSError:
            return False
    return _start_time(int(pid_text)) == start


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest (most recent) first."""
    top = str(path).rstrip("/")
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = _unescape(line.split()[4])
        if target == top or target.startswith(top + "/"):
            found.append(target)
    return list(reversed(found))


def processes_under(root: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose root directory is in ``root``."""
    top = str(root).rstrip("/")
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            proc_root = os.readlink(f"/proc/{entry.name}/root")
            if proc_root == top or proc_root.startswith(top + "/"):
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                found.append((int(entry.name), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()))
        except OSError:
            continue
    return found


def kill_processes_under(root: Path) -> list[tuple[int, str]]:
    """SIGKILL every process rooted in ``root``; return what was running."""
    victims = processes_under(root)
    for pid, _ in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while victims and processes_under(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    return victims


def unmount_all(path: Path) -> None:
    """Unmount everything at or below ``path``; raise if something stays."""
    for target in mounts_under(path):
        result = command.run(["umount", target], level=logging.DEBUG)
        if not result.ok:
            kill_processes_under(path)
            command.run(["umount", "--lazy", target], level=logging.DEBUG)
    left = mounts_under(path)
    if left:
        raise TestbedError(f"could not unmount {left[0]}; run 'piuparts cleanup' once it is no longer busy")


def remove_tree(path: Path) -> None:
    """Remove ``path`` after unmounting what is below it; never crosses a mount."""
    if not path.exists():
        return
    kill_processes_under(path)
    unmount_all(path)
    if mounts_under(path):  # re-checked right before removal
        raise TestbedError(f"refusing to remove {path}: something is mounted below it")
    shutil.rmtree(path)


def reap(parent: Path, pattern: str = "*") -> list[Path]:
    """Remove what dead runs left under ``parent`` (entries matching
    ``pattern``); return what was removed."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in sorted(parent.glob(pattern)):
        if path.is_dir() and not path.is_symlink() and not owner_alive(path):
            log.info("Removing %s, left by a run that is no longer running", path)
            remove_tree(path)
            removed.append(path)
    return removed


_DEFERRED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class signals_deferred:
    """Hold SIGINT, SIGTERM and SIGHUP while a setup or cleanup step runs.

    A signal that arrives meanwhile is delivered when the block ends, so a
    second Ctrl-C during cleanup cannot leave a mount behind.
    """

    def __enter__(self) -> None:
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)

    def __exit__(self, *exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
