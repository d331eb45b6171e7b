"""The record of everything a run makes, and the reaping of what dead runs left.

A run makes its instances under ``CACHE/instances/PID-TOKEN/``; the
directory and its ``owner`` file (PID and process start time) exist before
anything is mounted there, so the directory *is* the record.  Every mount a
run makes lies under it.  When its owner is dead, :func:`reap` ends the
processes rooted inside, unmounts everything below (deepest first, found
in /proc/self/mountinfo) and only then removes the directory, refusing to
cross a mount point.

Resources that do not live under the directory (a schroot session, an LVM
snapshot) are written down in it *before* they are made, as an undo record:
the command that removes the resource, and one that tells whether it still
exists.  :func:`remove_tree` runs them, newest first, after the processes
are ended and the mounts below the directory are gone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from piuparts import command
from piuparts.errors import TestbedError

log = logging.getLogger("piuparts")


def start_time(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot); None once it is dead,
    a zombie included (a killed run whose parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def make_owned_dir(parent: Path, prefix: str = "") -> Path:
    """A new directory under ``parent`` recorded as this process's.

    A signal that comes while it is made is held, and if it stops the
    run, the directory goes: the caller never had it to remove."""
    parent.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = parent / f"{prefix}{pid}-{os.urandom(3).hex()}"
    try:
        with signals_deferred():
            path.mkdir(mode=0o755)
            (path / "owner").write_text(f"{pid} {start_time(pid)}\n")
    except BaseException:
        with signals_deferred():
            shutil.rmtree(path, ignore_errors=True)
        raise
    return path


_NAMED_PID = re.compile(r"(\d+)-[0-9a-f]+$")


@contextmanager
def building(final: Path, replace: bool = True) -> Iterator[Path]:
    """A directory to build ``final`` in: an owned ``.build-*`` directory
    beside it, renamed to ``final`` when the block ends well and removed
    when it does not, so ``final`` is never seen half made.  An existing
    ``final`` is replaced, or, with ``replace`` false, kept (another run
    made the same thing first) and the new one dropped."""
    tmp = make_owned_dir(final.parent, prefix=".build-")
    try:
        yield tmp
        (tmp / "owner").unlink()
        with signals_deferred():
            if final.exists() and replace:
                remove_tree(final)
            try:
                os.rename(tmp, final)
            except OSError as err:  # another run renamed its own into place first
                if replace or err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                remove_tree(tmp)
    except BaseException:
        with signals_deferred():
            remove_tree(tmp)
        raise


def owner_alive(path: Path) -> bool:
    """True while the process that made ``path`` runs (PID reuse is told apart)."""
    try:
        pid_text, start = (path / "owner").read_text().split()
    except (OSError, ValueError):
        # No owner file (yet): a run is between mkdir and writing it, or was
        # killed there.  The name holds its PID: dead is dead; else wait a minute.
        named = _NAMED_PID.search(path.name)
        if named and start_time(int(named[1])) is None:
            return False
        try:
            return time.time() - path.stat().st_mtime < 60
        except OSError:
            return False
    return start_time(int(pid_text)) == start


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)


def _top(path: Path) -> str:
    """``path`` as the kernel names it in /proc (mountinfo, a process's root and
    files): every symbolic link resolved, so a cache directory reached through
    one is still found."""
    return os.path.realpath(path).rstrip("/") or "/"


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest (most recent) first."""
    top = _top(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = _unescape(line.split()[4])
        if target == top or target.startswith(top + "/"):
            found.append(target)
    return list(reversed(found))


def processes_under(root: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose root directory is in ``root``."""
    top = _top(root)
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


def _under(link: str, top: str) -> bool:
    return link == top or link.startswith(top + "/")


def processes_using(path: Path) -> list[int]:
    """PIDs (not this process) whose root, working directory or an open file
    is at or below ``path``, or whose arguments name a path there: those
    rooted inside, and host-side helpers of a dead run still writing there
    (debootstrap keeps its log open in its target, in every process it
    starts; mmdebstrap, between two files, holds none open but has its
    target in its arguments)."""
    top = _top(path)
    named = {top, str(path).rstrip("/") or "/"}
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            links = [os.readlink(f"/proc/{entry.name}/root")]
            fds = list(os.scandir(f"/proc/{entry.name}/fd"))
            args = Path(f"/proc/{entry.name}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone, or a kernel thread
            continue
        for link in [f"/proc/{entry.name}/cwd", *(fd.path for fd in fds)]:
            try:
                links.append(os.readlink(link))
            except OSError:
                pass  # closed since the listing: the process's other files still count
        if any(_under(link, top) for link in links) or any(_under(arg, name) for arg in args for name in named):
            found.append(int(entry.name))
    return found


def kill_processes_using(path: Path) -> None:
    """SIGKILL every process :func:`processes_using` finds, again until none
    is left (a shell may fork between two looks)."""
    deadline = time.monotonic() + 10
    while (victims := processes_using(path)) and time.monotonic() < deadline:
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


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


def record_undo(top: Path, argv: list[str], exists: list[str] | None = None,
                root: Path | None = None) -> Path:
    """Write down, in the owned directory ``top``, how to undo what is about to be made.

    ``argv`` removes the resource; ``exists`` (if given) exits 0 while it
    still exists, so a failing ``argv`` is fine once the resource is gone
    (say the run was killed before it was made); ``root`` is a directory
    outside ``top`` whose processes must be ended first (a schroot
    session's mount point).  Returns the record, for :func:`forget_undo`.
    """
    undo = top / "undo"
    undo.mkdir(exist_ok=True)
    record = undo / f"{time.time_ns():020d}.json"
    tmp = record.with_suffix(".tmp")
    tmp.write_text(json.dumps({"argv": argv, "exists": exists, "root": str(root) if root else None}))
    os.rename(tmp, record)
    return record


def forget_undo(record: Path) -> None:
    """Drop an undo record whose resource was removed by other means."""
    record.unlink(missing_ok=True)


def _undo_records(top: Path) -> list[tuple[Path, dict]]:
    records = []
    for record in sorted((top / "undo").glob("*.json"), reverse=True):  # newest first
        try:
            records.append((record, json.loads(record.read_text())))
        except (OSError, ValueError):
            log.warning("Ignoring the unreadable undo record %s", record)
    return records


def _run_undo(record: Path, data: dict) -> None:
    result = command.run(data["argv"], timeout=300, level=logging.DEBUG)
    if not result.ok and data.get("exists") and command.run(data["exists"], timeout=60,
                                                            level=logging.DEBUG).ok:
        raise TestbedError(f"could not undo {' '.join(data['argv'])}: {result.tail(1).strip()}; "
                           "run 'piuparts cleanup' again once it is no longer busy")
    record.unlink()


def remove_tree(path: Path) -> None:
    """Remove ``path`` and what its undo records name; never crosses a mount.

    Order: end the processes rooted in ``path`` or in a recorded root,
    unmount everything below ``path``, run the undo records newest first,
    then remove the directory.
    """
    if not path.exists():
        return
    records = _undo_records(path)
    kill_processes_under(path)
    for _, data in records:
        if data.get("root"):
            kill_processes_under(Path(data["root"]))
    unmount_all(path)
    for record, data in records:
        _run_undo(record, data)
    if mounts_under(path):  # re-checked right before removal
        raise TestbedError(f"refusing to remove {path}: something is mounted below it")
    # The owner file goes last: a run killed halfway through leaves a
    # directory that still says whose it was, for the next reap.
    for attempt in range(3):
        try:
            for entry in os.scandir(path):
                if entry.name != "owner":
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
            break
        except OSError as error:
            # A directory that filled again while it was emptied: something
            # a dead run started is still writing there.  End it, and again.
            if attempt == 2 or error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            kill_processes_using(path)
    (path / "owner").unlink(missing_ok=True)
    path.rmdir()


def reap(parent: Path, pattern: str = "*") -> list[Path]:
    """Remove what dead runs left under ``parent`` (entries matching
    ``pattern``); return what was removed.

    Runs that reap at once never reap the same directory twice: each first
    claims it with an exclusive, non-blocking lock on the directory itself,
    and looks again whether it is still there and still dead once it holds
    it (a reaper that dies lets go of its claim with its last breath)."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in sorted(parent.glob(pattern)):
        if path.is_dir() and not path.is_symlink() and not owner_alive(path):
            with _claimed(path) as mine:
                if not mine:
                    continue
                log.info("Removing %s, left by a run that is no longer running", path)
                kill_processes_using(path)  # what the dead run started on the host, too
                remove_tree(path)
                removed.append(path)
    return removed


@contextmanager
def _claimed(path: Path) -> Iterator[bool]:
    """True while this process holds the reaping claim on ``path`` (and it is still there, still dead)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        yield False  # gone already: another run reaped it
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False  # another run is reaping it now
            return
        yield path.is_dir() and not owner_alive(path)
    finally:
        os.close(fd)


@contextmanager
def pid_lock(path: Path, busy: Callable[[str], str]) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (made if missing), with this
    process's PID written in it, while the block runs.  When another process
    holds it, raise UsageError(``busy(its PID)``) at once: one coordinator a
    database, one CI run a codename."""
    from piuparts.errors import UsageError
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise UsageError(busy(handle.read().strip() or "?")) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


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
